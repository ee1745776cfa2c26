/* rules_test.c - the Lua policy: default ruleset verdicts, sandbox escapes, limits, load errors */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "check.h"
#include "rules.h"

static char tmpdir[] = "/tmp/authscore-rules.XXXXXX";
static int logged;
static char last_log[512];

static void count_log(const char *line)
{
    logged++;
    snprintf(last_log, sizeof last_log, "%s", line);
}

static const char *write_rules(const char *name, const char *text)
{
    static char path[4][256];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

/* A verdict built by hand: the facts the C side would have computed. */
struct fixture {
    struct as_verdict v;
    struct as_dkim_sig sig;
    struct as_envelope env;
};

static void fixture(struct fixture *f, const char *ip, enum as_result spf, enum as_result dkim,
                    enum as_result dmarc, const char *policy, const char *disposition)
{
    memset(f, 0, sizeof *f);
    f->env.ip = ip;
    f->env.helo = "mx.example.com";
    f->env.mail_from = "alice@example.com";
    f->v.spf.result = spf;
    f->v.spf.domain = "example.com";
    if (dkim != AS_NONE) {
        f->sig.result = dkim;
        f->sig.domain = "example.com";
        f->sig.selector = "sel";
        f->sig.algorithm = "rsa-sha256";
        f->sig.key_bits = 2048;
        f->sig.body_length = -1;
        f->v.dkim.sigs = &f->sig;
        f->v.dkim.n = 1;
    }
    f->v.dmarc.result = dmarc;
    f->v.dmarc.from_domain = "example.com";
    f->v.dmarc.org_domain = "example.com";
    f->v.dmarc.policy = (char *)policy;
    f->v.dmarc.disposition = (char *)disposition;
    f->v.dmarc.pct = 100;
}

static const struct as_symbol *find_sym(const struct as_score *s, const char *name)
{
    for (size_t i = 0; i < s->nsym; i++) if (!strcmp(s->sym[i].name, name)) return &s->sym[i];
    return NULL;
}

static int eval(rules *r, struct fixture *f, struct as_score *out)
{
    struct rules_input in = { .env = &f->env, .verdict = &f->v };
    return rules_eval(r, &in, out);
}

static unsigned rule_ms = 50;

static rules *load(const char *file, char *err, size_t errlen)
{
    const char *files[] = { file, NULL };
    struct rules_config c = { .files = file ? files : NULL, .reject = 15, .quarantine = 8, .add_header = 4,
                              .rule_ms = rule_ms, .log = count_log };
    return rules_new(&c, err, errlen);
}

static void test_defaults(void)
{
    char err[512];
    rules *r = load(NULL, err, sizeof err);
    CHECK(r != NULL);
    if (!r) { fprintf(stderr, "%s\n", err); return; }
    struct fixture f;
    struct as_score s;

    fixture(&f, "192.0.2.10", AS_PASS, AS_PASS, AS_PASS, "reject", "none");
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_ACCEPT && !s.forced_by);
    CHECK(find_sym(&s, "R_SPF_ALLOW") && find_sym(&s, "R_DKIM_ALLOW") && find_sym(&s, "DMARC_POLICY_ALLOW"));
    CHECK(s.score < -0.89 && s.score > -0.91);
    as_score_clear(&s);

    fixture(&f, "203.0.113.66", AS_FAIL, AS_NONE, AS_FAIL, "reject", "reject");
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_REJECT);
    CHECK_STR(s.forced_by, "DMARC_POLICY_REJECT");
    CHECK(s.smtp_message && strstr(s.smtp_message, "DMARC policy of example.com is reject"));
    CHECK(find_sym(&s, "R_SPF_FAIL") && find_sym(&s, "R_DKIM_NA"));
    as_score_clear(&s);

    fixture(&f, "203.0.113.66", AS_FAIL, AS_NONE, AS_FAIL, "reject", "quarantine");   /* outside pct */
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_QUARANTINE);
    as_score_clear(&s);

    fixture(&f, "203.0.113.66", AS_NONE, AS_NONE, AS_FAIL, "none", "none");
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_ACCEPT && find_sym(&s, "DMARC_POLICY_SOFTFAIL"));
    as_score_clear(&s);

    fixture(&f, "198.51.100.7", AS_FAIL, AS_PASS, AS_PASS, "reject", "none");        /* forwarded */
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_ACCEPT);
    as_score_clear(&s);

    fixture(&f, "192.0.2.10", AS_TEMPERROR, AS_NONE, AS_TEMPERROR, NULL, NULL);
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_TEMPFAIL && s.smtp_message);
    as_score_clear(&s);

    fixture(&f, "192.0.2.10", AS_FAIL, AS_TEMPERROR, AS_FAIL, "reject", "reject");   /* key lookup failed */
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_TEMPFAIL);
    CHECK_STR(s.forced_by, "AUTH_TEMPFAIL");
    as_score_clear(&s);

    fixture(&f, "127.0.0.1", AS_FAIL, AS_NONE, AS_FAIL, "reject", "reject");         /* local sender */
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.action == AS_ACCEPT);
    CHECK_STR(s.forced_by, "ALLOWLIST_IP");
    as_score_clear(&s);
    rules_free(r);
}

/* Each escape attempt must error inside its rule (RULE_ERROR) or find nothing to use. */
static void test_sandbox(void)
{
    static const char *const escapes[] = {
        "return os.execute('touch /tmp/authscore-pwned')",
        "return io.open('/etc/passwd')",
        "return load(string.dump(function() end))",
        "return string.dump(function() end)",
        "return require('../../etc/passwd')",
        "return dofile('/etc/passwd')",
        "return loadfile('/etc/passwd')",
        "return collectgarbage('count') > 0",
        "getmetatable('').__index.upper = nil; return true",
        "string.upper = nil; return true",
        "rawset(string, 'upper', nil); return true",
        "setmetatable(m, {}); return true",
        "m.spf.result = 'pass'; return true",
        "leak = 1; return true",
        "print('to stdout'); return true",
        "return debug.getinfo(1)",
    };
    char text[8192] = "";
    size_t off = 0;
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++)
        off += (size_t)snprintf(text + off, sizeof text - off,
                                "symbol \"ESCAPE_%zu\" { score = 100, rule = function(m) %s end }\n", i, escapes[i]);
    snprintf(text + off, sizeof text - off,
             "symbol \"STILL_WORKS\" { score = 1, rule = function(m) return ('x'):upper() == 'X' and m.spf.result == 'fail' end }\n");
    char err[512];
    rules *r = load(write_rules("escape.lua", text), err, sizeof err);
    CHECK(r != NULL);
    if (!r) { fprintf(stderr, "%s\n", err); return; }
    struct fixture f;
    struct as_score s;
    for (int round = 0; round < 2; round++) {      /* the second message sees nothing the first changed */
        fixture(&f, "192.0.2.1", AS_FAIL, AS_NONE, AS_NONE, NULL, NULL);
        CHECK(eval(r, &f, &s) == 0);
        for (size_t i = 0; i < s.nsym; i++)
            if (strncmp(s.sym[i].name, "ESCAPE_", 7) == 0) {
                fprintf(stderr, "escape fired: %s\n", s.sym[i].name);
                CHECK(0);
            }
        CHECK(find_sym(&s, "STILL_WORKS") != NULL);
        CHECK(s.score == 1);
        as_score_clear(&s);
    }
    CHECK(access("/tmp/authscore-pwned", F_OK) != 0);
    rules_free(r);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_limits(void)
{
    const char *text =
        "symbol \"LOOP\" { score = 1, rule = function(m) while true do end end }\n"
        "symbol \"PCALL_LOOP\" { score = 1, rule = function(m) while true do pcall(function() while true do end end) end end }\n"
        "local keep = {}\n"
        "symbol \"MEMORY\" { score = 1, rule = function(m) local s = 'x' while true do s = s .. s; keep[#keep + 1] = s end end }\n"
        "symbol \"PATTERN\" { score = 1, rule = function(m) return (('a'):rep(4000)):find('.-.-.-.-.-.-.-b') end }\n"
        "symbol \"ERRORS\" { score = 1, rule = function(m) error('boom') end }\n"
        "symbol \"FINE\" { score = 2, rule = function(m) return true, 2.5, 'why' end }\n";
    char err[512];
    logged = 0;
    rule_ms = 200;      /* room for a sanitizer build on a slow machine: the mechanism is under test */
    rules *r = load(write_rules("limits.lua", text), err, sizeof err);
    rule_ms = 50;
    CHECK(r != NULL);
    if (!r) { fprintf(stderr, "%s\n", err); return; }
    struct fixture f;
    struct as_score s;
    for (int round = 0; round < 3; round++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fixture(&f, "192.0.2.1", AS_PASS, AS_NONE, AS_NONE, NULL, NULL);
        CHECK(eval(r, &f, &s) == 0);
        double ms = ms_since(&t0);
        printf("round %d: %.1f ms, %zu symbols\n", round, ms, s.nsym);
        CHECK(ms < 4 * 200);
        const struct as_symbol *fine = find_sym(&s, "FINE");
        CHECK(fine && fine->score == 5.0 && fine->reason && !strcmp(fine->reason, "why"));
        size_t errors = 0;
        for (size_t i = 0; i < s.nsym; i++)
            if (!strcmp(s.sym[i].name, "RULE_ERROR")) {
                errors++;
                CHECK(s.sym[i].reason && strstr(s.sym[i].reason, "limits.lua:"));
            }
        CHECK(errors == 5);
        as_score_clear(&s);
    }
    CHECK(logged == 5);                 /* once per rule per process, not per message */
    rules_free(r);
}

static void test_load_errors(void)
{
    char err[512];
    CHECK(load(write_rules("syntax.lua", "symbol \"A\" { score = 1,\n rule = function(m) return end end }\n"),
               err, sizeof err) == NULL);
    CHECK(strstr(err, "syntax.lua:2:") != NULL);
    CHECK(load(write_rules("dep.lua", "symbol \"A\" { rule = function() end }\nsymbol \"B\" { depends = {\"NOPE\"}, rule = function() end }\n"),
               err, sizeof err) == NULL);
    CHECK(strstr(err, "dep.lua:2:") && strstr(err, "NOPE"));
    CHECK(load(write_rules("cycle.lua", "symbol \"A\" { depends = {\"B\"}, rule = function() end }\nsymbol \"B\" { depends = {\"A\"}, rule = function() end }\n"),
               err, sizeof err) == NULL);
    CHECK(strstr(err, "cycle") != NULL);
    CHECK(load(write_rules("dup.lua", "symbol \"A\" { rule = function() end }\nsymbol \"A\" { rule = function() end }\n"),
               err, sizeof err) == NULL);
    CHECK(strstr(err, "dup.lua:2:") && strstr(err, "dup.lua:1"));
    CHECK(load(write_rules("action.lua", "symbol \"A\" { action = \"drop\", rule = function() end }\n"), err, sizeof err) == NULL);
    CHECK(strstr(err, "action.lua:1:") != NULL);
    CHECK(load(write_rules("hang.lua", "while true do end\n"), err, sizeof err) == NULL);
    CHECK(strstr(err, "limit exceeded") != NULL);
    CHECK(load("/nonexistent/rules.lua", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/rules.lua") != NULL);
}

static void test_depends_and_reload(void)
{
    char err[512];
    const char *path = write_rules("dep2.lua",
        "symbol \"SECOND\" { score = 1, depends = { \"FIRST\" }, rule = function(m) return m.symbols.FIRST ~= nil end }\n"
        "symbol \"FIRST\" { score = 1, rule = function(m) return true end }\n");
    rules *r = load(path, err, sizeof err);
    CHECK(r != NULL);
    if (!r) return;
    struct fixture f;
    struct as_score s;
    fixture(&f, "192.0.2.1", AS_PASS, AS_NONE, AS_NONE, NULL, NULL);
    CHECK(eval(r, &f, &s) == 0);
    CHECK(find_sym(&s, "SECOND") != NULL && s.score == 2);
    as_score_clear(&s);
    sleep(1);                           /* a new mtime */
    write_rules("dep2.lua", "symbol \"NEW\" { score = 7, rule = function(m) return true end }\n");
    CHECK(rules_reload_if_changed(r, err, sizeof err) == 0);
    CHECK(eval(r, &f, &s) == 0);
    CHECK(s.nsym == 1 && find_sym(&s, "NEW") && s.score == 7);
    as_score_clear(&s);
    sleep(1);
    write_rules("dep2.lua", "symbol \"BROKEN\" {\n");
    CHECK(rules_reload_if_changed(r, err, sizeof err) == -1);
    CHECK(eval(r, &f, &s) == 0);        /* the old rules stay */
    CHECK(find_sym(&s, "NEW") != NULL);
    as_score_clear(&s);
    rules_free(r);
}

/* m.reputation is made on demand, yet pairs(m) sees it; an m kept for later is dead. */
static void test_lazy_m(void)
{
    char err[512];
    const char *path = write_rules("lazy.lua",
        "local kept, count = nil, 0\n"
        "symbol \"STALE\" { score = 1, rule = function(m)\n"
        "  count = count + 1\n"
        "  if count == 1 then kept = m; return false end\n"
        "  local rep = pcall(function() return kept.reputation end)\n"
        "  local hdr = pcall(function() return kept:header(\"From\") end)\n"
        "  return not rep and not hdr and kept.spf.result == \"pass\" and #m:header(\"From\") == 0 end }\n"
        "symbol \"REP\" { score = 1, depends = { \"STALE\" }, rule = function(m)\n"
        "  if count < 2 then return false end\n"
        "  local seen = 0\n"
        "  for k in pairs(m) do if k == \"reputation\" then seen = seen + 1 end end\n"
        "  return seen == 1 and m.reputation.available == false and m.reputation.from_domain.dmarc_pass_30d == 0 end }\n");
    rules *r = load(path, err, sizeof err);
    CHECK(r != NULL);
    if (!r) { fprintf(stderr, "%s\n", err); return; }
    struct fixture f;
    struct as_score s;
    fixture(&f, "192.0.2.1", AS_PASS, AS_NONE, AS_NONE, NULL, NULL);
    CHECK(eval(r, &f, &s) == 0);
    CHECK(!find_sym(&s, "REP") && !find_sym(&s, "STALE") && !find_sym(&s, "RULE_ERROR"));
    as_score_clear(&s);
    CHECK(eval(r, &f, &s) == 0);
    CHECK(find_sym(&s, "REP") && find_sym(&s, "STALE") && !find_sym(&s, "RULE_ERROR"));
    as_score_clear(&s);
    rules_free(r);

    /* Without Redis the engine still names the identities, worked out when asked for. */
    path = write_rules("ids.lua",
        "symbol \"IDS\" { score = 1, rule = function(m)\n"
        "  local r = m.reputation\n"
        "  return not r.available, 1, tostring(r.ip.id) .. \" \" .. tostring(r.net.id) .. \" \" .. tostring(r.from_domain.id) end }\n");
    r = load(path, err, sizeof err);
    CHECK(r != NULL);
    if (!r) return;
    struct rules_input in = { .env = &f.env, .verdict = &f.v, .identities = 1 };
    CHECK(rules_eval(r, &in, &s) == 0);
    const struct as_symbol *ids = find_sym(&s, "IDS");
    CHECK(ids && ids->reason && !strcmp(ids->reason, "192.0.2.1 192.0.2.0/24 example.com"));
    as_score_clear(&s);
    rules_free(r);
}

/* The built-in ruleset's bytecode (made by luadump at build time) loads in this Lua
 * and is the same program as its text: same functions, same line numbers. */
extern const unsigned char rules_default_lua[], rules_default_luac[];
extern const unsigned long rules_default_lua_len, rules_default_luac_len;

/* Lines of the chunk on top of the stack that hold code, negative if it does not come
 * from default.lua (pops it). */
static int code_lines(lua_State *L)
{
    lua_Debug ar;
    int n = 0;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">SL", &ar);
    if (strcmp(ar.source, "@default.lua") != 0) n = -1000000;
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) n++;
    lua_pop(L, 2);
    return n;
}

static void test_builtin_bytecode(void)
{
    lua_State *L = luaL_newstate();
    CHECK(luaL_loadbufferx(L, (const char *)rules_default_luac, rules_default_luac_len, "=b", "b") == LUA_OK);
    int nb = code_lines(L);
    CHECK(luaL_loadbufferx(L, (const char *)rules_default_lua, rules_default_lua_len - 1, "@default.lua", "t") == LUA_OK);
    int nt = code_lines(L);
    CHECK(nb > 20 && nb == nt);
    lua_close(L);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) return 1;
    test_defaults();
    test_sandbox();
    test_limits();
    test_load_errors();
    test_depends_and_reload();
    test_lazy_m();
    test_builtin_bytecode();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return check_report();
}

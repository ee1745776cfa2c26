/* rules.c - Lua 5.4 rules in a sandbox: symbols, scores and the one place the action is decided */
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "lpattern.h"
#include "netaddr.h"
#include "rules.h"

#define MAX_RULE_FILES 64
#define MAX_HEADER_VALUE 8192      /* header text handed to rules is capped: patterns stay cheap */
#define HOOK_EVERY 1000            /* instructions between clock checks */
#define MAX_TICKS 20000UL          /* 20 million instructions for all rules of one message */
#define PATTERN_STEPS 1000000UL    /* pattern-matching steps for all rules of one message */

/* lua/default.lua, embedded at build time as text (NUL included in _len) and as bytecode (luadump.c) */
extern const unsigned char rules_default_lua[], rules_default_luac[];
extern const unsigned long rules_default_lua_len, rules_default_luac_len;

struct rsym {
    char *name, *where;             /* where = "file:line" of its definition */
    int fn;                         /* registry reference of the rule function */
    double score;
    int priority, forces;
    enum as_action action;          /* forced when fired, if forces */
    char *message;                  /* SMTP text when it forces reject/tempfail; NULL = its reason */
    size_t *deps, ndeps;
};

struct heap { size_t used, limit; int hit; };

struct lstate {
    lua_State *L;
    struct heap heap;
    struct rsym *sym;               /* in evaluation order: dependencies first */
    size_t nsym;
    int ro_mt;                      /* registry ref: metatable of read-only views */
    int m_mt;                       /* registry ref: metatable of m */
    const struct rules_input *in;   /* the message being scored, NULL between messages */
    unsigned long gen;              /* counts messages: an m is good for its own only */
    struct timespec deadline;
    unsigned long ticks;            /* hook calls this message: instructions / HOOK_EVERY */
    jmp_buf *panic;                 /* where l_panic returns to */
};

struct rules {
    struct rules_config cfg;
    char *files[MAX_RULE_FILES + 1];
    char *options_file;
    time_t mtimes[MAX_RULE_FILES + 1];
    struct lstate *st;
    char **logged;                  /* rule names whose error was logged in this process */
    size_t nlogged;
};

/* ---- actions ---- */

static const char *const action_words[] = { "accept", "add_header", "quarantine", "reject", "tempfail" };

const char *as_action_str(enum as_action a)
{
    return (unsigned)a < 5 ? action_words[a] : "tempfail";
}

int as_action_parse(const char *s, enum as_action *out)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, action_words[i]) == 0) { *out = (enum as_action)i; return 0; }
    return -1;
}

void as_score_clear(struct as_score *s)
{
    for (size_t i = 0; i < s->nsym; i++) { free(s->sym[i].name); free(s->sym[i].reason); }
    free(s->sym);
    free(s->forced_by);
    free(s->smtp_message);
    memset(s, 0, sizeof *s);
}

/* ---- the Lua state: heap limit, panic, clock ---- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct heap *h = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) { h->used -= old; free(ptr); return NULL; }
    if (nsize > old && h->used - old + nsize > h->limit) { h->hit = 1; return NULL; }
    void *p = realloc(ptr, nsize);
    if (p) h->used = h->used - old + nsize;
    return p;
}

static struct lstate *state_of(lua_State *L);

/* Reached only on a bug (every call is protected): jump back to the caller
 * instead of letting Lua abort() the host process. */
static int l_panic(lua_State *L)
{
    struct lstate *st = state_of(L);
    if (st->panic) longjmp(*st->panic, 1);
    return 0;
}

static void now(struct timespec *t) { clock_gettime(CLOCK_MONOTONIC, t); }

static int past(const struct timespec *d)
{
    struct timespec t;
    now(&t);
    return t.tv_sec > d->tv_sec || (t.tv_sec == d->tv_sec && t.tv_nsec >= d->tv_nsec);
}

static struct timespec after_ms(unsigned ms)
{
    struct timespec t;
    now(&t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) { t.tv_sec++; t.tv_nsec -= 1000000000L; }
    return t;
}

static struct lstate *state_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return (struct lstate *)((char *)ud - offsetof(struct lstate, heap));
}

static void l_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lstate *st = state_of(L);
    st->ticks++;
    int over = st->ticks > MAX_TICKS;
    if (over || past(&st->deadline)) {
        /* Fire at every instruction from now on, so a pcall loop in the rule cannot swallow it. */
        lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
        luaL_error(L, over ? "instruction limit exceeded" : "time limit exceeded");
    }
}

/* Text of the error object on top, without anything that could raise. */
static const char *error_text(lua_State *L, int status)
{
    if (status == LUA_ERRMEM) return "memory limit exceeded";
    return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object is not a string";
}

/* ---- read-only views ---- */

static int l_ro_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')", luaL_optstring(L, 2, "?"));
}

static int l_ro_index(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

static int l_ro_len(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    lua_pushinteger(L, luaL_len(L, -1));
    return 1;
}

static int l_ro_next(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    return lua_next(L, -2) ? 2 : 0;
}

static int l_ro_pairs(lua_State *L)
{
    lua_pushcfunction(L, l_ro_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replace the table at the top of the stack by a read-only view of it: a userdata,
 * so neither rawset nor setmetatable can reach the data behind it. */
static void make_ro(lua_State *L, int ro_mt)
{
    lua_newuserdatauv(L, 0, 1);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ro_mt);
    lua_setmetatable(L, -2);
}

static int new_ro_mt(lua_State *L)
{
    static const luaL_Reg mt[] = {
        {"__index", l_ro_index}, {"__newindex", l_ro_newindex}, {"__len", l_ro_len},
        {"__pairs", l_ro_pairs}, {NULL, NULL}
    };
    lua_createtable(L, 0, 5);
    luaL_setfuncs(L, mt, 0);
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Turn the table at the top into a read-only view, its sub-tables too. */
static void deep_ro(lua_State *L, int ro_mt, int depth)
{
    if (depth < 16) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_istable(L, -1)) {
                deep_ro(L, ro_mt, depth + 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            } else {
                lua_pop(L, 1);
            }
        }
    }
    make_ro(L, ro_mt);
}

/* ---- m: the message, a read-only view built lazily ----
 * m.reputation is made the first time a rule asks for it (the default rules do
 * only for a DMARC failure), and an m is good only while its message is scored:
 * a rule may keep it in a table of its own, but not read the next message's data
 * (or freed memory) through it. */

/* Whether argument 1 is the m of the message being scored. */
static int m_current(lua_State *L)
{
    struct lstate *st = state_of(L);
    if (!st->in || !lua_getmetatable(L, 1)) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->m_mt);
    int is_m = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    const unsigned long *gen = is_m ? lua_touserdata(L, 1) : NULL;
    return gen && *gen == st->gen;
}

static void m_reputation(lua_State *L)
{
    struct lstate *st = state_of(L);
    const struct rules_input *in = st->in;
    if (in->reputation || !in->identities) {
        reputation_push(L, in->reputation);
    } else {                                /* no Redis: the identities, every count 0 */
        struct reputation_view v;
        reputation_read(NULL, NULL, in->env, in->verdict, 0, &v);
        reputation_push(L, &v);
        reputation_view_clear(&v);
    }
    deep_ro(L, st->ro_mt, 0);
}

static int l_m_index(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    if (lua_gettable(L, -2) != LUA_TNIL || lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "reputation"))
        return 1;
    if (!m_current(L)) return luaL_error(L, "m is only valid while its message is scored");
    m_reputation(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "reputation");
    return 1;
}

static int l_m_pairs(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    if (lua_getfield(L, -1, "reputation") == LUA_TNIL && m_current(L)) {
        m_reputation(L);
        lua_setfield(L, -3, "reputation");
    }
    lua_settop(L, 1);
    return l_ro_pairs(L);
}

static int new_m_mt(lua_State *L)
{
    static const luaL_Reg mt[] = {
        {"__index", l_m_index}, {"__newindex", l_ro_newindex}, {"__len", l_ro_len}, {"__pairs", l_m_pairs},
        {NULL, NULL}
    };
    lua_createtable(L, 0, 5);
    luaL_setfuncs(L, mt, 0);
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ---- helpers offered to rules ---- */

/* authscore.ip_in(ip, "192.0.2.0/24" | {cidr, ...}) -> boolean */
static int l_authscore_ip_in(lua_State *L)
{
    struct netaddr ip;
    if (!lua_isstring(L, 1) || netaddr_parse(lua_tostring(L, 1), &ip) != 0) { lua_pushboolean(L, 0); return 1; }
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushboolean(L, netaddr_in_cidr(&ip, lua_tostring(L, 2)) == 1);
        return 1;
    }
    luaL_checkany(L, 2);
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 2, i);
        int in = lua_type(L, -1) == LUA_TSTRING && netaddr_in_cidr(&ip, lua_tostring(L, -1)) == 1;
        lua_pop(L, 1);
        if (in) { lua_pushboolean(L, 1); return 1; }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* ---- loading: the sandbox and symbol registration ---- */

static void where_of_caller(lua_State *L, char *buf, size_t len)
{
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar))
        snprintf(buf, len, "%s:%d", ar.short_src, ar.currentline);
    else
        snprintf(buf, len, "?");
}

static int valid_symbol_name(const char *s)
{
    if (!*s || strlen(s) > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

/* symbol "NAME" { rule = fn, score = n, group = s, description = s, depends = {..},
 *                  action = "reject", priority = n, message = s } */
static int l_symbol_define(lua_State *L)
{
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "rule");
    if (lua_type(L, -1) != LUA_TFUNCTION) return luaL_error(L, "symbol %s: 'rule' must be a function", name);
    lua_pop(L, 1);
    lua_getfield(L, 1, "score");
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1)) return luaL_error(L, "symbol %s: 'score' must be a number", name);
    lua_pop(L, 1);
    lua_getfield(L, 1, "action");
    enum as_action a;
    if (!lua_isnil(L, -1) && (!lua_isstring(L, -1) || as_action_parse(lua_tostring(L, -1), &a) != 0))
        return luaL_error(L, "symbol %s: 'action' must be one of accept, add_header, quarantine, reject, tempfail", name);
    lua_pop(L, 1);
    lua_getfield(L, 1, "depends");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1)) return luaL_error(L, "symbol %s: 'depends' must be a list of names", name);
    lua_pop(L, 1);
    for (const char *const *k = (const char *const[]){"group", "description", "message", NULL}; *k; k++) {
        lua_getfield(L, 1, *k);
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "symbol %s: '%s' must be a string", name, *k);
        lua_pop(L, 1);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.symbols");
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "where");
        return luaL_error(L, "symbol %s is already defined at %s", name, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    char where[256];
    where_of_caller(L, where, sizeof where);
    lua_pushstring(L, where);
    lua_setfield(L, 1, "where");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, name);
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.order");
    lua_pushstring(L, name);
    lua_seti(L, -2, luaL_len(L, -2) + 1);
    return 0;
}

static int l_symbol(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!valid_symbol_name(name)) return luaL_error(L, "symbol name '%s': use A-Z, 0-9 and _", name);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_symbol_define, 1);
    return 1;
}

static int l_frozen_newindex(lua_State *L)
{
    return luaL_error(L, "rules cannot set globals while scoring (global '%s')", luaL_optstring(L, 2, "?"));
}

/* Move a file's globals behind a read-only view once it has loaded, so a rule
 * running for one message cannot leave state in them for the next. */
static void freeze_env(lua_State *L, int env)
{
    lua_newtable(L);                        /* hidden */
    lua_pushnil(L);
    while (lua_next(L, env)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    for (;;) {                              /* empty env */
        lua_pushnil(L);
        if (!lua_next(L, env)) break;
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_settable(L, env);
    }
    lua_getmetatable(L, env);               /* chain: env -> hidden -> sandbox */
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 3);
    lua_insert(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_frozen_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);
}

/* A fresh global table for one chunk; reads fall through to the shared sandbox. */
static void push_env(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.sandbox");
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
}

/* Run the loaded chunk on top of the stack in its own environment; leaves the
 * chunk's results on the stack.  Errors propagate to the caller's pcall. */
static int run_loaded(lua_State *L, int nresults)
{
    push_env(L);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, -3, 1);
    lua_insert(L, -2);                      /* env below the function */
    int env = lua_gettop(L) - 1;
    lua_call(L, 0, nresults);
    freeze_env(L, env);
    lua_remove(L, env);
    return nresults;
}

/* Load text (never bytecode: rule files are untrusted) and run it as above. */
static int run_chunk(lua_State *L, const char *src, size_t len, const char *chunkname, int nresults)
{
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) return lua_error(L);
    return run_loaded(L, nresults);
}

/* The built-in ruleset: our own bytecode, made at build time from the same text,
 * saves compiling it in every fresh process; the text if this Lua cannot load it. */
static void run_builtin(lua_State *L)
{
    if (luaL_loadbufferx(L, (const char *)rules_default_luac, rules_default_luac_len, "@default.lua", "b") == LUA_OK) {
        run_loaded(L, 0);
        return;
    }
    lua_pop(L, 1);
    run_chunk(L, (const char *)rules_default_lua, rules_default_lua_len - 1, "@default.lua", 0);
}

/* Push the contents of a file as a Lua string.  The buffer is a userdata, so an
 * error raised on the way leaks nothing. */
static void push_file(lua_State *L, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) luaL_error(L, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size > (4 << 20)) luaL_error(L, "%s: not a regular file under 4 MiB", path);
    char *buf = lua_newuserdatauv(L, (size_t)st.st_size + 1, 0);
    FILE *f = fopen(path, "rb");
    if (!f) luaL_error(L, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    lua_pushlstring(L, buf, n);
    lua_remove(L, -2);
}

/* Run a file as a chunk in its own environment, with one result left on the stack. */
static void run_file(lua_State *L, const char *path)
{
    push_file(L, path);
    size_t len;
    const char *src = lua_tolstring(L, -1, &len);
    lua_pushfstring(L, "@%s", path);
    run_chunk(L, src, len, lua_tostring(L, -1), 1);
    lua_remove(L, -2);
    lua_remove(L, -2);
}

/* require "name": another file of the rules' own folder, run once. */
static int l_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return luaL_error(L, "require '%s': only plain names of files in the rules folder", name);
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.loaded");
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.dir");
    const char *path = lua_pushfstring(L, "%s/%s.lua", lua_tostring(L, -1), name);
    run_file(L, path);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushboolean(L, 1); }
    lua_pushvalue(L, -1);
    lua_setfield(L, -5, name);
    return 1;
}

static void open_sandbox(lua_State *L, int ro_mt)
{
    static const lua_CFunction libs[] = { luaopen_base, luaopen_string, luaopen_table, luaopen_math, luaopen_utf8 };
    static const char *const names[] = { "_G", LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME };
    for (int i = 0; i < 5; i++) { luaL_requiref(L, names[i], libs[i], 1); lua_pop(L, 1); }

    lua_getglobal(L, LUA_STRLIBNAME);
    lpattern_install(L, lua_gettop(L));
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");                 /* strings' metatable: unreachable from rules */
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* The sandbox: the safe functions of base, and read-only views of the libraries. */
    static const char *const base_ok[] = {
        "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
        "select", "setmetatable", "tonumber", "tostring", "type", "xpcall", "_VERSION", NULL
    };
    lua_newtable(L);
    for (const char *const *k = base_ok; *k; k++) {
        lua_getglobal(L, *k);
        lua_setfield(L, -2, *k);
    }
    for (int i = 1; i < 5; i++) {
        lua_getglobal(L, names[i]);
        make_ro(L, ro_mt);
        lua_setfield(L, -2, names[i]);
    }
    lua_pushcfunction(L, l_symbol);
    lua_setfield(L, -2, "symbol");
    lua_pushcfunction(L, l_require);
    lua_setfield(L, -2, "require");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_authscore_ip_in);
    lua_setfield(L, -2, "ip_in");
    reputation_store_open(L);
    make_ro(L, ro_mt);
    lua_setfield(L, -2, "store");
    make_ro(L, ro_mt);
    lua_setfield(L, -2, "authscore");
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.sandbox");
}

/* Protected: load every rule file (or the built-in set) and the options file. */
static int l_load_all(lua_State *L)
{
    struct rules *r = lua_touserdata(L, 1);
    struct lstate *st = state_of(L);
    lpattern_set_limits(L, PATTERN_STEPS, MAX_HEADER_VALUE * 8);
    st->ro_mt = new_ro_mt(L);
    st->m_mt = new_m_mt(L);
    open_sandbox(L, st->ro_mt);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.symbols");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.order");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.loaded");

    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.sandbox");
    if (r->options_file) {
        push_file(L, r->options_file);
        size_t len;
        const char *src = lua_tolstring(L, -1, &len);
        lua_pushfstring(L, "@%s", r->options_file);
        if (luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t") != LUA_OK) return lua_error(L);
        lua_newtable(L);                    /* data only: no functions at all */
        lua_pushvalue(L, -1);
        lua_setupvalue(L, -3, 1);
        lua_insert(L, -2);
        lua_call(L, 0, 0);
        deep_ro(L, state_of(L)->ro_mt, 0);
        lua_setfield(L, -4, "config");
        lua_pop(L, 2);
    } else {
        lua_newtable(L);
        make_ro(L, state_of(L)->ro_mt);
        lua_setfield(L, -2, "config");
    }
    lua_pop(L, 1);

    if (!r->files[0]) {
        lua_pushliteral(L, ".");
        lua_setfield(L, LUA_REGISTRYINDEX, "authscore.dir");
        run_builtin(L);
        return 0;
    }
    for (char **f = r->files; *f; f++) {
        const char *slash = strrchr(*f, '/');
        if (slash) lua_pushlstring(L, *f, (size_t)(slash - *f));
        else lua_pushliteral(L, ".");
        lua_setfield(L, LUA_REGISTRYINDEX, "authscore.dir");
        run_file(L, *f);
        lua_pop(L, 1);
    }
    return 0;
}

/* lua_pcall of fn(ud), with a panic (only a bug could cause one) caught instead
 * of aborting the host.  Returns the pcall status, or -1 after a panic. */
static int guarded_pcall(struct lstate *st, lua_CFunction fn, void *ud)
{
    struct lstate *volatile vst = st;
    jmp_buf jb;
    int status;
    st->panic = &jb;
    if (setjmp(jb) == 0) {
        lua_pushcfunction(st->L, fn);
        lua_pushlightuserdata(st->L, ud);
        status = lua_pcall(st->L, 1, 0, 0);
    } else {
        status = -1;
    }
    vst->panic = NULL;
    return status;
}

static void state_free(struct lstate *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->nsym; i++) {
        free(st->sym[i].name); free(st->sym[i].where); free(st->sym[i].message); free(st->sym[i].deps);
    }
    free(st->sym);
    if (st->L) lua_close(st->L);
    free(st);
}

static char *dup_field(lua_State *L, int t, const char *k)
{
    char *v = NULL;
    if (lua_getfield(L, t, k) == LUA_TSTRING) v = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Copy the registered symbols into C, ordered so each runs after what it
 * depends on.  Returns 0, or -1 with the reason (file:line) in err. */
static int resolve_symbols(struct lstate *st, char *err, size_t errlen)
{
    lua_State *L = st->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.symbols");
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.order");
    int defs = lua_gettop(L) - 1, order = lua_gettop(L);
    size_t n = (size_t)luaL_len(L, order);
    struct rsym *def = calloc(n ? n : 1, sizeof *def);
    unsigned char *mark = calloc(n ? n : 1, 1);       /* 0 new, 1 visiting, 2 placed */
    st->sym = calloc(n ? n : 1, sizeof *st->sym);
    if (!def || !mark || !st->sym) goto oom;
    for (size_t i = 0; i < n; i++) {
        lua_geti(L, order, (lua_Integer)i + 1);
        lua_gettable(L, defs);
        int t = lua_gettop(L);
        lua_geti(L, order, (lua_Integer)i + 1);
        def[i].name = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        def[i].where = dup_field(L, t, "where");
        def[i].message = dup_field(L, t, "message");
        lua_getfield(L, t, "score");
        def[i].score = lua_tonumber(L, -1);
        lua_getfield(L, t, "priority");
        def[i].priority = (int)lua_tointeger(L, -1);
        lua_getfield(L, t, "action");
        def[i].forces = lua_isstring(L, -1) && as_action_parse(lua_tostring(L, -1), &def[i].action) == 0;
        lua_pop(L, 3);
        lua_getfield(L, t, "rule");
        def[i].fn = luaL_ref(L, LUA_REGISTRYINDEX);
        if (!def[i].name || !def[i].where) goto oom;
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < n; i++) {                  /* dependencies by index */
        lua_geti(L, order, (lua_Integer)i + 1);
        lua_gettable(L, defs);
        lua_getfield(L, -1, "depends");
        size_t nd = lua_istable(L, -1) ? (size_t)luaL_len(L, -1) : 0;
        def[i].deps = calloc(nd ? nd : 1, sizeof *def[i].deps);
        if (!def[i].deps) goto oom;
        for (size_t k = 0; k < nd; k++) {
            lua_geti(L, -1, (lua_Integer)k + 1);
            const char *dn = lua_tostring(L, -1);
            size_t j = 0;
            while (j < n && (!dn || strcmp(def[j].name, dn) != 0)) j++;
            if (j == n) {
                snprintf(err, errlen, "%s: symbol %s depends on unknown symbol '%s'", def[i].where, def[i].name,
                         dn ? dn : "?");
                goto fail;
            }
            def[i].deps[def[i].ndeps++] = j;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    /* Depth-first placement; a symbol met again while being placed is a cycle. */
    size_t *stack = calloc(n ? n : 1, sizeof *stack), *next = calloc(n ? n : 1, sizeof *next);
    if (!stack || !next) { free(stack); free(next); goto oom; }
    for (size_t root = 0; root < n; root++) {
        if (mark[root]) continue;
        size_t sp = 0;
        stack[sp++] = root; mark[root] = 1; next[root] = 0;
        while (sp) {
            size_t cur = stack[sp - 1];
            if (next[cur] < def[cur].ndeps) {
                size_t d = def[cur].deps[next[cur]++];
                if (mark[d] == 1) {
                    snprintf(err, errlen, "%s: symbol %s: dependency cycle through %s", def[cur].where,
                             def[cur].name, def[d].name);
                    free(stack); free(next);
                    goto fail;
                }
                if (!mark[d]) { mark[d] = 1; next[d] = 0; stack[sp++] = d; }
            } else {
                mark[cur] = 2;
                st->sym[st->nsym++] = def[cur];
                sp--;
            }
        }
    }
    free(stack); free(next);
    /* deps now point into def order; remap to evaluation order for the fired check */
    for (size_t i = 0; i < st->nsym; i++)
        for (size_t k = 0; k < st->sym[i].ndeps; k++)
            for (size_t j = 0; j < st->nsym; j++)
                if (strcmp(st->sym[j].name, def[st->sym[i].deps[k]].name) == 0) { st->sym[i].deps[k] = j; break; }
    free(def); free(mark);
    lua_pop(L, 2);
    return 0;
oom:
    snprintf(err, errlen, "out of memory loading rules");
fail:
    if (def) {
        for (size_t i = 0; i < n; i++) { free(def[i].name); free(def[i].where); free(def[i].message); free(def[i].deps); }
    }
    free(def); free(mark);
    free(st->sym); st->sym = NULL; st->nsym = 0;
    lua_settop(L, 0);
    return -1;
}

static struct lstate *state_new(struct rules *r, char *err, size_t errlen)
{
    struct lstate *st = calloc(1, sizeof *st);
    if (!st) { snprintf(err, errlen, "out of memory"); return NULL; }
    st->heap.limit = (r->cfg.memory_kb ? r->cfg.memory_kb : 8192) * 1024;
    st->L = lua_newstate(l_alloc, &st->heap);
    if (!st->L) { snprintf(err, errlen, "cannot create a Lua state"); free(st); return NULL; }
    lua_State *L = st->L;
    lua_atpanic(L, l_panic);
    st->deadline = after_ms(1000);          /* loading gets a second, then the hook stops it */
    lua_sethook(L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
    int status = guarded_pcall(st, l_load_all, r);
    if (status != LUA_OK) {
        snprintf(err, errlen, "%s", status == -1 ? "Lua panic while loading rules" : error_text(L, status));
        state_free(st);
        return NULL;
    }
    if (resolve_symbols(st, err, errlen) != 0) { state_free(st); return NULL; }
    lua_gc(L, LUA_GCCOLLECT);
    return st;
}

static void stamp_mtimes(struct rules *r)
{
    struct stat sb;
    size_t i = 0;
    for (; r->files[i]; i++) r->mtimes[i] = stat(r->files[i], &sb) == 0 ? sb.st_mtime : 0;
    r->mtimes[i] = r->options_file && stat(r->options_file, &sb) == 0 ? sb.st_mtime : 0;
}

rules *rules_new(const struct rules_config *cfg, char *err, size_t errlen)
{
    rules *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return NULL; }
    r->cfg = *cfg;
    size_t n = 0;
    for (const char **f = cfg->files; f && *f; f++) {
        if (n == MAX_RULE_FILES) { snprintf(err, errlen, "too many rule files (limit %d)", MAX_RULE_FILES); goto fail; }
        if (!(r->files[n++] = strdup(*f))) { snprintf(err, errlen, "out of memory"); goto fail; }
    }
    if (cfg->options_file && !(r->options_file = strdup(cfg->options_file))) { snprintf(err, errlen, "out of memory"); goto fail; }
    r->cfg.files = NULL;
    r->cfg.options_file = NULL;
    stamp_mtimes(r);
    if (!(r->st = state_new(r, err, errlen))) goto fail;
    return r;
fail:
    rules_free(r);
    return NULL;
}

void rules_free(rules *r)
{
    if (!r) return;
    state_free(r->st);
    for (size_t i = 0; r->files[i]; i++) free(r->files[i]);
    free(r->options_file);
    for (size_t i = 0; i < r->nlogged; i++) free(r->logged[i]);
    free(r->logged);
    free(r);
}

int rules_reload_if_changed(rules *r, char *err, size_t errlen)
{
    time_t old[MAX_RULE_FILES + 1];
    memcpy(old, r->mtimes, sizeof old);
    stamp_mtimes(r);
    if (memcmp(old, r->mtimes, sizeof old) == 0) return 0;
    struct lstate *st = state_new(r, err, errlen);
    if (!st) return -1;
    state_free(r->st);
    r->st = st;
    return 0;
}

/* ---- one message ---- */

static void log_once(rules *r, const char *name, const char *line)
{
    for (size_t i = 0; i < r->nlogged; i++) if (strcmp(r->logged[i], name) == 0) return;
    char **nl = realloc(r->logged, (r->nlogged + 1) * sizeof *nl);
    if (nl) { r->logged = nl; if ((nl[r->nlogged] = strdup(name))) r->nlogged++; }
    if (r->cfg.log) r->cfg.log(line);
    else fprintf(stderr, "authscore: %s\n", line);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }
}

static void set_num(lua_State *L, const char *k, lua_Number v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, int v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

/* m:header(name) -> list of the values of every field of that name, unfolded, capped */
static int l_m_header(lua_State *L)
{
    const char *name = luaL_checkstring(L, 2);
    struct lstate *st = state_of(L);
    if (!st->in || (unsigned long)lua_tointeger(L, lua_upvalueindex(1)) != st->gen)
        return luaL_error(L, "m:header() is only valid while its message is scored");
    const struct message *msg = st->in->msg;
    lua_newtable(L);
    if (!msg) return 1;
    luaL_Buffer b;
    lua_Integer n = 0;
    for (size_t i = 0; ; i++) {
        const struct msg_header *h = message_header(msg, name, i);
        if (!h) break;
        luaL_buffinit(L, &b);
        const char *p = h->value, *e = h->value + h->value_len;
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        size_t out = 0;
        for (; p < e && out < MAX_HEADER_VALUE; p++) {
            if (*p == '\r' || *p == '\n') continue;
            luaL_addchar(&b, *p);
            out++;
        }
        luaL_pushresult(&b);
        lua_seti(L, -2, ++n);
    }
    return 1;
}

/* Protected: build the read-only message object m and leave it on the stack. */
static int l_build_m(lua_State *L)
{
    const struct rules_input *in = lua_touserdata(L, 1);
    int ro = (int)lua_tointeger(L, 2);
    const struct as_verdict *v = in->verdict;
    lua_createtable(L, 0, 12);
    set_str(L, "ip", in->env->ip);
    set_str(L, "helo", in->env->helo);
    set_str(L, "mail_from", in->env->mail_from ? in->env->mail_from : "");
    set_str(L, "from_domain", v->dmarc.from_domain);

    lua_createtable(L, 0, 4);
    set_str(L, "result", as_result_str(v->spf.result));
    set_str(L, "domain", v->spf.domain);
    set_str(L, "explanation", v->spf.explanation);
    set_str(L, "reason", v->spf.reason);
    set_bool(L, "helo", v->spf.helo);
    make_ro(L, ro);
    lua_setfield(L, -2, "spf");

    lua_createtable(L, (int)v->dkim.n, 0);
    for (size_t i = 0; i < v->dkim.n; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        lua_createtable(L, 0, 8);
        set_str(L, "result", as_result_str(s->result));
        set_str(L, "domain", s->domain);
        set_str(L, "selector", s->selector);
        set_str(L, "algorithm", s->algorithm);
        set_str(L, "identity", s->identity);
        set_num(L, "key_bits", s->key_bits);
        if (s->body_length >= 0) set_num(L, "body_length", (lua_Number)s->body_length);
        set_str(L, "reason", s->reason);
        make_ro(L, ro);
        lua_seti(L, -2, (lua_Integer)i + 1);
    }
    make_ro(L, ro);
    lua_setfield(L, -2, "dkim");

    const struct as_dmarc *d = &v->dmarc;
    lua_createtable(L, 0, 12);
    set_str(L, "result", as_result_str(d->result));
    set_str(L, "from_domain", d->from_domain);
    set_str(L, "org_domain", d->org_domain);
    set_str(L, "policy", d->policy);
    set_str(L, "disposition", d->disposition);
    set_bool(L, "spf_aligned", d->spf_aligned);
    set_bool(L, "dkim_aligned", d->dkim_aligned);
    set_num(L, "pct", d->pct);
    set_bool(L, "policy_is_sp", d->policy_is_sp);
    set_bool(L, "multiple_from", (d->flags & AS_DMARC_MULTI_FROM) != 0);
    set_bool(L, "no_from", (d->flags & AS_DMARC_NO_FROM) != 0);
    set_str(L, "reason", d->reason);
    make_ro(L, ro);
    lua_setfield(L, -2, "dmarc");

    lua_newtable(L);                        /* fired symbols: filled as rules fire */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.fired");
    make_ro(L, ro);
    lua_setfield(L, -2, "symbols");

    struct lstate *st = state_of(L);
    lua_pushinteger(L, (lua_Integer)st->gen);
    lua_pushcclosure(L, l_m_header, 1);
    lua_setfield(L, -2, "header");
    unsigned long *gen = lua_newuserdatauv(L, sizeof *gen, 1);   /* m.reputation: on demand, see l_m_index */
    *gen = st->gen;
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->m_mt);
    lua_setmetatable(L, -2);
    return 1;
}

static int add_symbol(struct as_score *out, size_t *cap, const char *name, double score, const char *reason)
{
    if (out->nsym == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct as_symbol *ns = realloc(out->sym, nc * sizeof *ns);
        if (!ns) return -1;
        out->sym = ns; *cap = nc;
    }
    struct as_symbol *s = &out->sym[out->nsym];
    s->name = strdup(name);
    s->reason = reason ? strdup(reason) : NULL;
    s->score = score;
    if (!s->name || (reason && !s->reason)) { free(s->name); free(s->reason); return -1; }
    out->nsym++;
    return 0;
}

/* The one place the action is decided: a forced action wins (highest priority,
 * then the most severe); otherwise the score against the thresholds. */
static void decide(const rules *r, const struct lstate *st, const unsigned char *fired,
                   const char *const *reasons, struct as_score *out)
{
    const struct rsym *win = NULL;
    for (size_t i = 0; i < st->nsym; i++) {
        const struct rsym *s = &st->sym[i];
        if (!fired[i] || !s->forces) continue;
        if (!win || s->priority > win->priority || (s->priority == win->priority && s->action > win->action))
            win = s;
    }
    if (win) {
        out->action = win->action;
        out->forced_by = strdup(win->name);
        if (win->action == AS_REJECT || win->action == AS_TEMPFAIL) {
            const char *why = win->message ? win->message : reasons[win - st->sym];
            out->smtp_message = strdup(why ? why : win->name);
        }
        return;
    }
    const struct rules_config *c = &r->cfg;
    out->action = out->score >= c->reject ? AS_REJECT : out->score >= c->quarantine ? AS_QUARANTINE
                : out->score >= c->add_header ? AS_ADD_HEADER : AS_ACCEPT;
    if (out->action == AS_REJECT) {
        char buf[128];
        snprintf(buf, sizeof buf, "Message refused: score %.2f reaches %.2f", out->score, c->reject);
        out->smtp_message = strdup(buf);
    }
}

struct eval {
    rules *r;
    const struct rules_input *in;
    struct as_score *out;
    size_t cap;
    unsigned char *fired;
    char **reasons;
    struct timespec msg_deadline;
    unsigned budget_ms;
    int oom;
};

static void rule_error(struct eval *ev, const struct rsym *s, const char *what)
{
    char line[512];
    snprintf(line, sizeof line, "%s (%s): %s", s->name, s->where, what);
    log_once(ev->r, s->name, line);
    if (add_symbol(ev->out, &ev->cap, "RULE_ERROR", 0, line) != 0) ev->oom = 1;
}

/* Protected: build m, then run every rule in its own pcall under its share of the clock. */
static int l_eval_all(lua_State *L)
{
    struct eval *ev = lua_touserdata(L, 1);
    struct lstate *st = ev->r->st;
    reputation_store_bind(L, ev->in->redis);
    lua_pushcfunction(L, l_build_m);
    lua_pushlightuserdata(L, (void *)ev->in);
    lua_pushinteger(L, st->ro_mt);
    lua_call(L, 2, 1);
    int m = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.fired");
    int firedtab = lua_gettop(L);

    for (size_t i = 0; i < st->nsym && !ev->oom; i++) {
        struct rsym *s = &st->sym[i];
        struct timespec t;
        now(&t);
        long left_ns = (ev->msg_deadline.tv_sec - t.tv_sec) * 1000000000L + (ev->msg_deadline.tv_nsec - t.tv_nsec);
        if (left_ns <= 0) {
            char why[128];
            snprintf(why, sizeof why, "not run: the rules' time budget of %u ms was spent", ev->budget_ms);
            rule_error(ev, s, why);
            continue;
        }
        /* A rule gets its fair share of what is left, or a quarter of the budget if
         * that is more: a runaway rule cannot starve the rules after it. */
        long share = left_ns / (long)(st->nsym - i), quarter = (long)ev->budget_ms * 250000L;
        if (share < quarter) share = quarter < left_ns ? quarter : left_ns;
        t.tv_nsec += share;
        t.tv_sec += t.tv_nsec / 1000000000L;
        t.tv_nsec %= 1000000000L;
        st->deadline = t;
        lua_sethook(L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn);
        lua_pushvalue(L, m);
        int status = lua_pcall(L, 1, 3, 0);
        lua_sethook(L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
        if (status != LUA_OK) {
            rule_error(ev, s, error_text(L, status));
            lua_settop(L, firedtab);
            if (status == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
            continue;
        }
        if (lua_toboolean(L, -3)) {
            double weight = lua_isnumber(L, -2) ? lua_tonumber(L, -2) : 1.0;
            const char *reason = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            double score = s->score * weight;
            ev->fired[i] = 1;
            if (reason && !(ev->reasons[i] = strdup(reason))) ev->oom = 1;
            ev->out->score += score;
            if (add_symbol(ev->out, &ev->cap, s->name, score, reason) != 0) ev->oom = 1;
            lua_createtable(L, 0, 2);
            lua_pushnumber(L, score);
            lua_setfield(L, -2, "score");
            if (reason) { lua_pushstring(L, reason); lua_setfield(L, -2, "reason"); }
            lua_setfield(L, firedtab, s->name);
        }
        lua_settop(L, firedtab);
    }
    return 0;
}

int rules_eval(rules *r, const struct rules_input *in, struct as_score *out)
{
    struct lstate *st = r->st;
    lua_State *L = st->L;
    memset(out, 0, sizeof *out);
    struct eval ev = { .r = r, .in = in, .out = out };
    ev.fired = calloc(st->nsym + 1, 1);
    ev.reasons = calloc(st->nsym + 1, sizeof *ev.reasons);
    if (!ev.fired || !ev.reasons) { free(ev.fired); free(ev.reasons); return -1; }
    ev.budget_ms = r->cfg.rule_ms ? r->cfg.rule_ms : 50;
    ev.msg_deadline = after_ms(ev.budget_ms);
    st->heap.hit = 0;
    st->ticks = 0;

    lua_settop(L, 0);
    lpattern_reset_budget(L, PATTERN_STEPS);
    st->in = in;
    st->gen++;
    int status = guarded_pcall(st, l_eval_all, &ev);
    st->in = NULL;
    if (status == -1) {                     /* a bug let an error escape: the state is not to be trusted */
        st->heap.hit = 1;
        st->heap.used = st->heap.limit;
    }
    if (status != LUA_OK) {
        char line[300];
        snprintf(line, sizeof line, "rules: %s", status == -1 ? "Lua panic" : error_text(L, status));
        log_once(r, "(rules)", line);
        if (add_symbol(out, &ev.cap, "RULE_ERROR", 0, line) != 0) ev.oom = 1;
    }
    if (!ev.oom) decide(r, st, ev.fired, (const char *const *)ev.reasons, out);
    for (size_t i = 0; i < st->nsym; i++) free(ev.reasons[i]);
    free(ev.reasons);
    free(ev.fired);
    if (status != -1) {
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, "authscore.fired");
    }
    /* A rule that filled the heap and kept the garbage reachable would starve every
     * later message: start over with a fresh state. */
    if (st->heap.hit) {
        if (status != -1) lua_gc(L, LUA_GCCOLLECT);
        if (st->heap.used > st->heap.limit / 2) {
            char err[256];
            struct lstate *fresh = state_new(r, err, sizeof err);
            if (fresh) { state_free(r->st); r->st = fresh; }
        }
    }
    if (ev.oom) { as_score_clear(out); return -1; }
    return 0;
}

/* cli.c - the authscore command: check, spf, batch, lint and test */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>
#include "authscore.h"
#include "config.h"
#include "dns.h"
#include "redis.h"
#include "report.h"

#define MAX_MESSAGE (64u << 20)   /* larger input is refused, not truncated */
#define MAX_LIST 32

static const char usage[] =
    "usage: authscore check --ip ADDR [--helo NAME] [--mail-from ADDR] [OPTIONS] [--json] [MESSAGE]\n"
    "       authscore spf   --ip ADDR [--helo NAME] [--mail-from ADDR] [OPTIONS] [--json]\n"
    "       authscore batch [OPTIONS] MANIFEST      (lines: ip TAB helo TAB mail_from TAB path)\n"
    "       authscore test  [OPTIONS] CASES         (lines: name TAB ip TAB helo TAB mail_from TAB path TAB action TAB symbols)\n"
    "       authscore lint  FILE...                 (authscore.conf or rule files)\n"
    "       authscore dmarc-report [--date YYYY-MM-DD] --org-name NAME --org-email ADDR --out DIR\n"
    "                       [--receiver DOMAIN] [--config FILE] [--redis URL] [--zone FILE | --dns HOST[:PORT]]\n"
    "options: --config FILE  --rules FILE...  --zone FILE...  --dns HOST[:PORT]...  --authserv-id ID\n"
    "         --timeout-ms N (per DNS query, 2000)  --budget-ms N (DNS per message, 8000)\n"
    "         --max-dkim-sigs N (10)  --redis URL (redis://[:password@]host:port/db, unix:/path, sentinel://h:p,h:p/name)\n"
    "         --record (check, batch, test: write reputation counters and DMARC report rows, as Exim does)\n";

struct opts {
    struct as_config cfg;
    struct as_envelope env;
    struct as_settings conf;
    const char *zones[MAX_LIST + 1], *servers[MAX_LIST + 1], *rules[MAX_LIST + 1];
    int nzones, nservers, nrules, json, have_conf;
    const char *config;
    int record;
    const char *date, *org_name, *org_email, *out, *receiver;   /* dmarc-report */
    char **args;               /* positional arguments */
    int nargs;
};

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "authscore: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 2;
}

static int parse_uint(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > 600000) return -1;
    *out = (unsigned)v;
    return 0;
}

static int add_to(const char **list, int *n, const char *v, const char *what)
{
    if (*n == MAX_LIST) return fail("too many %s options", what);
    list[(*n)++] = v;
    return 0;
}

/* Settings from --config first; every flag given overrides its key. */
static int apply_config(struct opts *o)
{
    struct as_config *c = &o->cfg;
    if (o->config) {
        char err[600];
        if (config_load(o->config, &o->conf, err, sizeof err) != 0) {
            fprintf(stderr, "authscore: %s\n", err);
            return 1;
        }
        o->have_conf = 1;
        struct as_settings *s = &o->conf;
        if (!c->authserv_id) c->authserv_id = s->authserv_id;
        if (!c->dns_servers) c->dns_servers = (const char **)s->dns_servers;
        if (!c->zones) c->zones = (const char **)s->zones;
        if (!c->dns_timeout_ms) c->dns_timeout_ms = s->dns_timeout_ms;
        if (!c->dns_budget_ms) c->dns_budget_ms = s->dns_budget_ms;
        if (!c->rules) c->rules = (const char **)s->rules;
        if (!c->redis_url) c->redis_url = s->redis;
        c->redis_prefix = s->redis_prefix;
        c->redis_connect_ms = s->redis_connect_ms;
        c->redis_io_ms = s->redis_io_ms;
        c->redis_backoff_ms = s->redis_backoff_ms;
        c->dns_ttl_max = s->dns_ttl_max;
        c->reputation_hours = s->reputation_hours;
        c->reputation_days = s->reputation_days;
        c->report_keep_days = s->report_keep_days;
        if (s->have_reject || s->have_quarantine || s->have_add_header) {
            c->reject = s->have_reject ? s->reject : 15;
            c->quarantine = s->have_quarantine ? s->quarantine : 8;
            c->add_header = s->have_add_header ? s->add_header : 4;
        }
        c->rule_ms = s->rule_ms;
        c->memory_kb = s->memory_kb;
        if (s->on_error_set) c->on_error = s->on_error;
        c->options_file = o->config;
    }
    if (!o->conf.on_error_set) c->on_error = AS_TEMPFAIL;
    return 0;
}

/* Returns 0, or the exit status for a usage error (message already printed). */
static int parse_opts(int argc, char **argv, struct opts *o, int need_ip)
{
    enum { O_IP = 1, O_HELO, O_FROM, O_ZONE, O_DNS, O_ID, O_JSON, O_TIMEOUT, O_BUDGET, O_MAXSIGS,
           O_CONFIG, O_RULES, O_REDIS, O_RECORD, O_DATE, O_ORG_NAME, O_ORG_EMAIL, O_OUT, O_RECEIVER };
    static const struct option longopts[] = {
        {"ip", required_argument, 0, O_IP}, {"helo", required_argument, 0, O_HELO},
        {"mail-from", required_argument, 0, O_FROM}, {"zone", required_argument, 0, O_ZONE},
        {"dns", required_argument, 0, O_DNS}, {"authserv-id", required_argument, 0, O_ID},
        {"json", no_argument, 0, O_JSON}, {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"budget-ms", required_argument, 0, O_BUDGET}, {"max-dkim-sigs", required_argument, 0, O_MAXSIGS},
        {"config", required_argument, 0, O_CONFIG}, {"rules", required_argument, 0, O_RULES},
        {"redis", required_argument, 0, O_REDIS}, {"record", no_argument, 0, O_RECORD},
        {"date", required_argument, 0, O_DATE}, {"org-name", required_argument, 0, O_ORG_NAME},
        {"org-email", required_argument, 0, O_ORG_EMAIL}, {"out", required_argument, 0, O_OUT},
        {"receiver", required_argument, 0, O_RECEIVER},
        {0, 0, 0, 0}
    };
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_IP: o->env.ip = optarg; break;
        case O_HELO: o->env.helo = optarg; break;
        case O_FROM: o->env.mail_from = optarg; break;
        case O_ZONE: if ((rc = add_to(o->zones, &o->nzones, optarg, "--zone"))) return rc; break;
        case O_DNS: if ((rc = add_to(o->servers, &o->nservers, optarg, "--dns"))) return rc; break;
        case O_RULES: if ((rc = add_to(o->rules, &o->nrules, optarg, "--rules"))) return rc; break;
        case O_ID: o->cfg.authserv_id = optarg; break;
        case O_CONFIG: o->config = optarg; break;
        case O_REDIS: o->cfg.redis_url = optarg; break;
        case O_RECORD: o->record = 1; break;
        case O_DATE: o->date = optarg; break;
        case O_ORG_NAME: o->org_name = optarg; break;
        case O_ORG_EMAIL: o->org_email = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_RECEIVER: o->receiver = optarg; break;
        case O_JSON: o->json = 1; break;
        case O_TIMEOUT:
            if (parse_uint(optarg, &o->cfg.dns_timeout_ms)) return fail("--timeout-ms: bad number \"%s\"", optarg);
            break;
        case O_BUDGET:
            if (parse_uint(optarg, &o->cfg.dns_budget_ms)) return fail("--budget-ms: bad number \"%s\"", optarg);
            break;
        case O_MAXSIGS:
            if (parse_uint(optarg, &o->cfg.max_dkim_sigs)) return fail("--max-dkim-sigs: bad number \"%s\"", optarg);
            break;
        default:
            fputs(usage, stderr);
            return fail("unknown or incomplete option %s", argv[optind - 1]);
        }
    }
    if (need_ip && !o->env.ip) { fputs(usage, stderr); return fail("%s", "--ip is required"); }
    o->args = argv + optind;
    o->nargs = argc - optind;
    if (o->nzones) o->cfg.zones = o->zones;
    if (o->nservers) o->cfg.dns_servers = o->servers;
    if (o->nrules) o->cfg.rules = o->rules;
    o->cfg.no_record = !o->record;   /* trying rules must not feed reputation nor send reports */
    return apply_config(o);
}

/* Read a whole message; NULL with the reason printed on failure.  A file is read in
 * one go into a buffer of its size (batch reads thousands). */
static char *read_message(const char *path, size_t *len)
{
    int fd = path && strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    struct stat st;
    if (fd < 0) { fprintf(stderr, "authscore: %s: %s\n", path, strerror(errno)); return NULL; }
    size_t cap = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < MAX_MESSAGE ? (size_t)st.st_size + 1 : 1 << 16;
    size_t n = 0;
    char *buf = malloc(cap);
    errno = 0;
    int bad = 0;
    while (buf) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { bad = r < 0; break; }
        n += (size_t)r;
        if (n == cap) {
            if (cap >= MAX_MESSAGE) { free(buf); buf = NULL; errno = EFBIG; break; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb; cap *= 2;
        }
    }
    int saved = errno;
    if (fd != STDIN_FILENO) close(fd);
    if (!buf || bad) {
        fprintf(stderr, "authscore: %s: %s\n", path ? path : "stdin", bad ? "read error" : strerror(saved ? saved : ENOMEM));
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

/* Message text may hold any bytes; JSON needs UTF-8, so invalid sequences become '?'. */
static json_t *jtext(const char *s)
{
    if (!s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = strdup(s);
    if (!copy) return json_null();
    for (char *p = copy; *p; p++) if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j ? j : json_null();
}

static json_t *spf_json(const struct as_spf *s)
{
    return json_pack("{s:s, s:o, s:o}", "result", as_result_str(s->result),
                     "domain", jtext(s->domain), "explanation", jtext(s->explanation));
}

static json_t *verdict_json(const struct as_verdict *v)
{
    json_t *sigs = json_array();
    for (size_t i = 0; i < v->dkim.n; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        json_array_append_new(sigs, json_pack("{s:s, s:o, s:o, s:o, s:I, s:o}",
            "result", as_result_str(s->result), "domain", jtext(s->domain), "selector", jtext(s->selector),
            "algorithm", jtext(s->algorithm), "key_bits", (json_int_t)s->key_bits, "reason", jtext(s->reason)));
    }
    const struct as_dmarc *d = &v->dmarc;
    json_t *dmarc = json_pack("{s:s, s:o, s:o, s:o, s:o, s:b, s:b}",
        "result", as_result_str(d->result), "from_domain", jtext(d->from_domain),
        "org_domain", jtext(d->org_domain), "policy", jstr(d->policy),
        "disposition", jstr(d->disposition), "spf_aligned", d->spf_aligned, "dkim_aligned", d->dkim_aligned);
    json_t *syms = json_array();
    for (size_t i = 0; i < v->score.nsym; i++) {
        const struct as_symbol *s = &v->score.sym[i];
        json_array_append_new(syms, json_pack("{s:s, s:f, s:o}", "name", s->name, "score", s->score,
                                              "reason", jtext(s->reason)));
    }
    return json_pack("{s:o, s:o, s:o, s:s, s:f, s:s, s:o, s:o}", "spf", spf_json(&v->spf), "dkim", sigs,
                     "dmarc", dmarc, "authentication_results", v->authentication_results,
                     "score", v->score.score, "action", as_action_str(v->score.action), "symbols", syms,
                     "smtp_message", jtext(v->score.smtp_message));
}

static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    puts(s ? s : "{}");
    free(s);
    json_decref(j);
}

static void print_spf_human(const struct as_spf *s)
{
    printf("spf:   %-9s %s%s%s\n", as_result_str(s->result), s->mail_from ? s->mail_from : "-",
           s->reason ? "  " : "", s->reason ? s->reason : "");
    if (s->explanation) printf("       explanation: %s\n", s->explanation);
}

static void print_human(const struct as_verdict *v)
{
    print_spf_human(&v->spf);
    if (!v->dkim.n) printf("dkim:  none      no signature\n");
    for (size_t i = 0; i < v->dkim.n; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        printf("dkim:  %-9s d=%s s=%s a=%s", as_result_str(s->result), s->domain ? s->domain : "-",
               s->selector ? s->selector : "-", s->algorithm ? s->algorithm : "-");
        if (s->key_bits) printf(" bits=%u", s->key_bits);
        if (s->body_length >= 0) printf(" l=%ld", s->body_length);
        printf("  %s\n", s->reason ? s->reason : "");
    }
    if (v->dkim.ignored) printf("dkim:  %zu more signatures ignored (limit)\n", v->dkim.ignored);
    const struct as_dmarc *d = &v->dmarc;
    printf("dmarc: %-9s from=%s policy=%s disposition=%s aligned: spf=%s dkim=%s  %s\n",
           as_result_str(d->result), d->from_domain ? d->from_domain : "-", d->policy ? d->policy : "-",
           d->disposition ? d->disposition : "-", d->spf_aligned ? "yes" : "no", d->dkim_aligned ? "yes" : "no",
           d->reason ? d->reason : "");
    printf("action: %s  score: %.2f%s%s\n", as_action_str(v->score.action), v->score.score,
           v->score.forced_by ? "  forced by " : "", v->score.forced_by ? v->score.forced_by : "");
    for (size_t i = 0; i < v->score.nsym; i++) {
        const struct as_symbol *s = &v->score.sym[i];
        printf("symbol: %-24s %6.2f  %s\n", s->name, s->score, s->reason ? s->reason : "");
    }
    if (v->score.smtp_message) printf("smtp:  %s\n", v->score.smtp_message);
    printf("Authentication-Results: %s\n", v->authentication_results);
}

static as_engine *engine(struct opts *o)
{
    char err[600];
    as_engine *e = as_engine_new(&o->cfg, err, sizeof err);
    if (!e) fprintf(stderr, "authscore: %s\n", err);
    return e;
}

static int cmd_check(struct opts *o, int spf_only)
{
    if (o->nargs > (spf_only ? 0 : 1)) return fail("unexpected argument \"%s\"", o->args[spf_only ? 0 : 1]);
    size_t len = 0;
    char *msg = NULL;
    if (!spf_only && !(msg = read_message(o->nargs ? o->args[0] : NULL, &len))) return 1;
    as_engine *e = engine(o);
    if (!e) { free(msg); return 1; }
    int rc = 0;
    if (spf_only) {
        struct as_spf s;
        if (as_check_spf(e, &o->env, &s) != 0) { fprintf(stderr, "authscore: out of memory\n"); rc = 1; }
        else {
            if (o->json) print_json(spf_json(&s));
            else print_spf_human(&s);
            as_spf_clear(&s);
        }
    } else {
        struct as_verdict v;
        if (as_check(e, &o->env, msg, len, &v) != 0) {
            fprintf(stderr, "authscore: internal error (out of memory or DKIM library set-up)\n");
            rc = 1;
        } else {
            if (o->json) print_json(verdict_json(&v));
            else print_human(&v);
            as_verdict_clear(&v);
        }
    }
    free(msg);
    as_engine_free(e);
    return rc;
}

/* Split a manifest line on tabs into at most max fields; returns the count. */
static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        f[n++] = line;
        char *t = strchr(line, '\t');
        if (!t) break;
        *t = '\0';
        line = t + 1;
    }
    return n;
}

/* A path in a manifest is relative to the manifest's folder. */
static void manifest_path(const char *manifest, const char *p, char *out, size_t outlen)
{
    const char *slash = strrchr(manifest, '/');
    if (p[0] == '/' || !slash) snprintf(out, outlen, "%s", p);
    else snprintf(out, outlen, "%.*s/%s", (int)(slash - manifest), manifest, p);
}

static int check_file(as_engine *e, const struct as_envelope *env, const char *path, struct as_verdict *v)
{
    size_t len;
    char *msg = read_message(path, &len);
    if (!msg) return -1;
    int rc = as_check(e, env, msg, len, v);
    free(msg);
    if (rc != 0) fprintf(stderr, "authscore: %s: internal error\n", path);
    return rc;
}

static int cmd_batch(struct opts *o)
{
    if (o->nargs != 1) return fail("%s", "batch takes one MANIFEST");
    FILE *f = strcmp(o->args[0], "-") ? fopen(o->args[0], "r") : stdin;
    if (!f) { fprintf(stderr, "authscore: %s: %s\n", o->args[0], strerror(errno)); return 1; }
    as_engine *e = engine(o);
    if (!e) { if (f != stdin) fclose(f); return 1; }
    json_t *actions = json_object(), *symbols = json_object();
    char line[8192];
    unsigned long lineno = 0, count = 0, errors = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *fld[4], path[4096];
        if (line[0] == '#' || line[0] == '\n') continue;
        if (split_tabs(line, fld, 4) != 4) {
            fprintf(stderr, "authscore: %s:%lu: expected ip<TAB>helo<TAB>mail_from<TAB>path\n", o->args[0], lineno);
            errors++;
            continue;
        }
        struct as_envelope env = { fld[0], fld[1][0] ? fld[1] : NULL, fld[2] };
        manifest_path(o->args[0], fld[3], path, sizeof path);
        struct as_verdict v;
        if (check_file(e, &env, path, &v) != 0) { errors++; continue; }
        json_t *j = verdict_json(&v);
        json_object_set_new(j, "path", json_string(fld[3]));
        print_json(j);
        const char *a = as_action_str(v.score.action);
        json_object_set_new(actions, a, json_integer(json_integer_value(json_object_get(actions, a)) + 1));
        for (size_t i = 0; i < v.score.nsym; i++) {
            const char *s = v.score.sym[i].name;
            json_object_set_new(symbols, s, json_integer(json_integer_value(json_object_get(symbols, s)) + 1));
        }
        count++;
        as_verdict_clear(&v);
    }
    if (f != stdin) fclose(f);
    as_engine_free(e);
    print_json(json_pack("{s:{s:I, s:I, s:o, s:o}}", "summary", "messages", (json_int_t)count,
                         "errors", (json_int_t)errors, "actions", actions, "symbols", symbols));
    return errors ? 1 : 0;
}

/* Rule test cases: each line names a message, its envelope, the action expected and
 * the symbols expected ("!NAME" = must not fire).  Prints a diff for each failure. */
static int cmd_test(struct opts *o)
{
    if (o->nargs != 1) return fail("%s", "test takes one CASES file");
    FILE *f = fopen(o->args[0], "r");
    if (!f) { fprintf(stderr, "authscore: %s: %s\n", o->args[0], strerror(errno)); return 1; }
    as_engine *e = engine(o);
    if (!e) { fclose(f); return 1; }
    char line[8192];
    unsigned long lineno = 0, passed = 0, failed = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *fld[7], path[4096];
        if (line[0] == '#' || line[0] == '\n') continue;
        int n = split_tabs(line, fld, 7);
        if (n < 6) {
            fprintf(stderr, "authscore: %s:%lu: expected name, ip, helo, mail_from, path, action[, symbols]\n",
                    o->args[0], lineno);
            failed++;
            continue;
        }
        struct as_envelope env = { fld[1], fld[2][0] ? fld[2] : NULL, fld[3] };
        manifest_path(o->args[0], fld[4], path, sizeof path);
        struct as_verdict v;
        if (check_file(e, &env, path, &v) != 0) { failed++; continue; }
        int ok = 1;
        char diff[4096] = "";
        size_t dl = 0;
        if (strcmp(as_action_str(v.score.action), fld[5]) != 0) {
            ok = 0;
            dl += (size_t)snprintf(diff + dl, sizeof diff - dl, "    action: expected %s, got %s\n", fld[5],
                                   as_action_str(v.score.action));
        }
        for (char *tok = n > 6 ? strtok(fld[6], ", ") : NULL; tok; tok = strtok(NULL, ", ")) {
            int absent = tok[0] == '!';
            const char *name = tok + absent;
            int fired = 0;
            for (size_t i = 0; i < v.score.nsym; i++) if (!strcmp(v.score.sym[i].name, name)) fired = 1;
            if (fired == absent && dl < sizeof diff) {
                ok = 0;
                dl += (size_t)snprintf(diff + dl, sizeof diff - dl, "    symbol %s: expected %s\n", name,
                                       absent ? "not to fire, it fired" : "to fire, it did not");
            }
        }
        if (ok) {
            passed++;
            printf("ok   %s\n", fld[0]);
        } else {
            failed++;
            printf("FAIL %s (%s:%lu)\n%s    fired:", fld[0], o->args[0], lineno, diff);
            for (size_t i = 0; i < v.score.nsym; i++) printf(" %s(%.2f)", v.score.sym[i].name, v.score.sym[i].score);
            printf("\n");
        }
        as_verdict_clear(&v);
    }
    fclose(f);
    as_engine_free(e);
    printf("%lu/%lu cases passed\n", passed, passed + failed);
    return failed ? 1 : 0;
}

static void quiet(const char *line) { (void)line; }

/* Load one rule set (and the config it came from, if any); print what is wrong. */
static int lint_set(const char **rules, const char *conf, const char *name)
{
    struct as_config cfg = { .authserv_id = "lint", .zones = (const char *[]){ NULL }, .log = quiet,
                             .rules = rules, .options_file = conf };
    char err[600];
    as_engine *e = as_engine_new(&cfg, err, sizeof err);
    const char *rerr = e ? as_engine_rules_error(e) : err;
    if (rerr) printf("%s\n", rerr);
    else printf("%s: ok\n", name);
    as_engine_free(e);
    return rerr ? 1 : 0;
}

/* *.conf files are checked with the rules they name; the other files form one rule set. */
static int cmd_lint(int argc, char **argv)
{
    int bad = 0, n = 0;
    const char *set[MAX_LIST + 1] = { NULL };
    if (argc < 1) return fail("%s", "lint takes FILE...");
    for (int i = 0; i < argc; i++) {
        const char *p = argv[i];
        size_t l = strlen(p);
        if (l <= 5 || strcmp(p + l - 5, ".conf") != 0) {
            if (n == MAX_LIST) return fail("too many rule files (%s)", p);
            set[n++] = p;
            continue;
        }
        struct as_settings s;
        char err[600];
        if (config_load(p, &s, err, sizeof err) != 0) { printf("%s\n", err); bad++; }
        else bad += lint_set((const char **)s.rules, p, p);
        config_free(&s);
    }
    if (n) bad += lint_set(set, NULL, n == 1 ? set[0] : "rule files");
    return bad ? 1 : 0;
}

/* One report per policy domain and day from the rows Exim recorded in Redis (RFC 7489 7.2). */
static int cmd_dmarc_report(struct opts *o)
{
    if (o->nargs) return fail("unexpected argument \"%s\"", o->args[0]);
    if (!o->org_name || !o->org_email || !o->out) return fail("%s", "dmarc-report needs --org-name, --org-email and --out");
    if (!o->cfg.redis_url) return fail("%s", "dmarc-report needs Redis: --redis URL or redis in --config");
    struct stat sb;
    if (stat(o->out, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "authscore: --out %s: not a directory\n", o->out);
        return 1;
    }
    char err[600];
    /* A batch job, not an SMTP session: patient timeouts, no back-off. */
    struct redis_config rc = { .url = o->cfg.redis_url, .prefix = o->cfg.redis_prefix,
                               .connect_ms = 2000, .io_ms = 10000, .backoff_ms = 1 };
    redis_conn *r = redis_new(&rc, err, sizeof err);
    if (!r) { fprintf(stderr, "authscore: %s\n", err); return 1; }
    struct dns_config dc = { .servers = o->cfg.dns_servers, .zones = o->cfg.zones,
                             .timeout_ms = o->cfg.dns_timeout_ms ? o->cfg.dns_timeout_ms : 2000,
                             .budget_ms = o->cfg.dns_budget_ms ? o->cfg.dns_budget_ms : 8000 };
    dns_ctx *dns = dns_new(&dc, err, sizeof err);
    if (!dns) { fprintf(stderr, "authscore: %s\n", err); redis_free(r); return 1; }
    struct report_opts ro = { .date = o->date, .org_name = o->org_name, .org_email = o->org_email,
                              .receiver = o->receiver, .out_dir = o->out, .keep_days = o->cfg.report_keep_days,
                              .redis = r, .dns = dns, .now = time(NULL) };
    struct report_stats st;
    int rc2 = report_run(&ro, &st, err, sizeof err);
    printf("dmarc-report: %u reports (%lu messages), %u mails, %u destinations skipped, %u bad rows\n",
           st.reports, st.messages, st.mails, st.skipped, st.bad_rows);
    if (rc2 != 0) fprintf(stderr, "authscore: dmarc-report: %s\n", err);
    dns_free(dns);
    redis_free(r);
    return rc2 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof o);
    if (argc < 2) { fputs(usage, stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "lint")) return cmd_lint(argc - 2, argv + 2);
    int is_check = !strcmp(cmd, "check"), is_spf = !strcmp(cmd, "spf"), is_report = !strcmp(cmd, "dmarc-report");
    if (!is_check && !is_spf && !is_report && strcmp(cmd, "batch") && strcmp(cmd, "test")) {
        fputs(usage, stderr);
        return fail("unknown command \"%s\"", cmd);
    }
    int rc = parse_opts(argc - 1, argv + 1, &o, is_check || is_spf);
    if (!rc) {
        if (is_check || is_spf) rc = cmd_check(&o, is_spf);
        else if (is_report) rc = cmd_dmarc_report(&o);
        else if (!strcmp(cmd, "batch")) rc = cmd_batch(&o);
        else rc = cmd_test(&o);
    }
    if (o.have_conf) config_free(&o.conf);
    return rc;
}

/* cli.c - the authscore command: check a message, or SPF alone, and print the verdict */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authscore.h"

#define MAX_MESSAGE (64u << 20)   /* larger input is refused, not truncated */
#define MAX_LIST 32

static const char usage[] =
    "usage: authscore check --ip ADDR [--helo NAME] [--mail-from ADDR] [--zone FILE]...\n"
    "                       [--dns HOST[:PORT]]... [--authserv-id ID] [--json] [MESSAGE]\n"
    "       authscore spf   --ip ADDR [--helo NAME] [--mail-from ADDR] [--zone FILE]...\n"
    "                       [--dns HOST[:PORT]]... [--json]\n"
    "options: --timeout-ms N (per DNS query, 2000)  --budget-ms N (DNS per message, 8000)\n"
    "         --max-dkim-sigs N (10)\n";

struct opts {
    struct as_config cfg;
    struct as_envelope env;
    const char *zones[MAX_LIST + 1], *servers[MAX_LIST + 1];
    int nzones, nservers, json;
    const char *message;
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

/* Returns 0, or the exit status for a usage error (message already printed). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum { O_IP = 1, O_HELO, O_FROM, O_ZONE, O_DNS, O_ID, O_JSON, O_TIMEOUT, O_BUDGET, O_MAXSIGS };
    static const struct option longopts[] = {
        {"ip", required_argument, 0, O_IP}, {"helo", required_argument, 0, O_HELO},
        {"mail-from", required_argument, 0, O_FROM}, {"zone", required_argument, 0, O_ZONE},
        {"dns", required_argument, 0, O_DNS}, {"authserv-id", required_argument, 0, O_ID},
        {"json", no_argument, 0, O_JSON}, {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"budget-ms", required_argument, 0, O_BUDGET}, {"max-dkim-sigs", required_argument, 0, O_MAXSIGS},
        {0, 0, 0, 0}
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_IP: o->env.ip = optarg; break;
        case O_HELO: o->env.helo = optarg; break;
        case O_FROM: o->env.mail_from = optarg; break;
        case O_ZONE:
            if (o->nzones == MAX_LIST) return fail("too many --zone options (%s)", optarg);
            o->zones[o->nzones++] = optarg; break;
        case O_DNS:
            if (o->nservers == MAX_LIST) return fail("too many --dns options (%s)", optarg);
            o->servers[o->nservers++] = optarg; break;
        case O_ID: o->cfg.authserv_id = optarg; break;
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
    if (!o->env.ip) { fputs(usage, stderr); return fail("%s", "--ip is required"); }
    if (optind < argc) o->message = argv[optind++];
    if (optind < argc) return fail("unexpected argument \"%s\"", argv[optind]);
    if (o->nzones) o->cfg.zones = o->zones;
    if (o->nservers) o->cfg.dns_servers = o->servers;
    return 0;
}

/* Read the whole message; NULL with errno-style text printed on failure. */
static char *read_message(const char *path, size_t *len)
{
    FILE *f = path && strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) { fprintf(stderr, "authscore: %s: %s\n", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            if (cap >= MAX_MESSAGE) { free(buf); buf = NULL; errno = EFBIG; break; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb; cap *= 2;
        }
    }
    int bad = buf && ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "authscore: %s: %s\n", path ? path : "stdin", bad ? "read error" : strerror(errno ? errno : ENOMEM));
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
                     "domain", jstr(s->domain), "explanation", jtext(s->explanation));
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
    return json_pack("{s:o, s:o, s:o, s:s}", "spf", spf_json(&v->spf), "dkim", sigs, "dmarc", dmarc,
                     "authentication_results", v->authentication_results);
}

static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
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
    printf("Authentication-Results: %s\n", v->authentication_results);
}

int main(int argc, char **argv)
{
    struct opts o;
    char err[512];
    memset(&o, 0, sizeof o);
    if (argc < 2 || (strcmp(argv[1], "check") && strcmp(argv[1], "spf"))) {
        fputs(usage, stderr);
        return 2;
    }
    int spf_only = strcmp(argv[1], "spf") == 0;
    int rc = parse_opts(argc - 1, argv + 1, &o);
    if (rc) return rc;
    if (spf_only && o.message) return fail("spf takes no MESSAGE (\"%s\")", o.message);

    size_t len = 0;
    char *msg = NULL;
    if (!spf_only && !(msg = read_message(o.message, &len))) return 1;
    as_engine *e = as_engine_new(&o.cfg, err, sizeof err);
    if (!e) { free(msg); fprintf(stderr, "authscore: %s\n", err); return 1; }

    rc = 0;
    if (spf_only) {
        struct as_spf s;
        if (as_check_spf(e, &o.env, &s) != 0) { fprintf(stderr, "authscore: out of memory\n"); rc = 1; }
        else {
            if (o.json) print_json(spf_json(&s));
            else print_spf_human(&s);
            as_spf_clear(&s);
        }
    } else {
        struct as_verdict v;
        if (as_check(e, &o.env, msg, len, &v) != 0) { fprintf(stderr, "authscore: internal error (out of memory or DKIM library set-up)\n"); rc = 1; }
        else {
            if (o.json) print_json(verdict_json(&v));
            else print_human(&v);
            as_verdict_clear(&v);
        }
    }
    free(msg);
    as_engine_free(e);
    return rc;
}

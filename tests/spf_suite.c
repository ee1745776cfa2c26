/* spf_suite.c - the RFC 7208 SPF conformance suite (and the historic RFC 4408 one): spf_check, and libspf2 for comparison */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authscore.h"
#include "dns.h"
#include "spf.h"

struct sbuf {
    char *s;
    size_t len, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        char *g = realloc(b->s, cap);
        if (!g) { fprintf(stderr, "spf_suite: out of memory\n"); exit(2); }
        b->s = g, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* An owner or target name in master-file form: absolute, odd octets as \DDD. */
static void sb_name(struct sbuf *b, const char *name)
{
    char esc[8];
    size_t n = strlen(name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '*') {
            sb_put(b, (const char *)&c, 1);
        } else {
            snprintf(esc, sizeof esc, "\\%03u", c);
            sb_str(b, esc);
        }
    }
    if (!n || name[n - 1] != '.') sb_str(b, ".");
}

/* One <character-string> per 255 octets; NUL, control, 8-bit, '"' and '\' as \DDD. */
static void sb_txt_string(struct sbuf *b, const char *s, size_t n)
{
    char esc[8];
    size_t i = 0;
    do {
        size_t end = n - i > 255 ? i + 255 : n;
        sb_str(b, " \"");
        for (; i < end; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                snprintf(esc, sizeof esc, "\\%03u", c);
                sb_str(b, esc);
            } else {
                sb_put(b, (const char *)&c, 1);
            }
        }
        sb_str(b, "\"");
    } while (i < n);
}

static int is_none(const json_t *v)
{
    return json_is_string(v) && strcmp(json_string_value(v), "NONE") == 0;
}

/* One zonedata item {TYPE: value} as a master-file line.  0, or -1 when not understood. */
static int zone_line(struct sbuf *z, const char *name, const char *type, const json_t *v)
{
    if (is_none(v)) return 0;
    sb_name(z, name);
    sb_str(z, " 300 IN ");
    sb_str(z, type);
    if (!strcmp(type, "TXT") || !strcmp(type, "SPF")) {
        size_t i;
        json_t *s;
        if (json_is_string(v)) {
            sb_txt_string(z, json_string_value(v), json_string_length(v));
        } else if (json_is_array(v)) {
            if (json_array_size(v) == 0) sb_str(z, " \"\"");   /* no strings: not legal, but seen */
            json_array_foreach(v, i, s) {
                if (!json_is_string(s)) return -1;
                sb_txt_string(z, json_string_value(s), json_string_length(s));
            }
        } else {
            return -1;
        }
    } else if (!strcmp(type, "MX")) {
        char pref[24];
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
            !json_is_string(json_array_get(v, 1)))
            return -1;
        snprintf(pref, sizeof pref, " %lld ", (long long)json_integer_value(json_array_get(v, 0)));
        sb_str(z, pref);
        sb_name(z, json_string_value(json_array_get(v, 1)));
    } else if (!strcmp(type, "PTR") || !strcmp(type, "CNAME")) {
        if (!json_is_string(v)) return -1;
        sb_str(z, " ");
        sb_name(z, json_string_value(v));
    } else if (!strcmp(type, "A") || !strcmp(type, "AAAA")) {
        if (!json_is_string(v) || strpbrk(json_string_value(v), " \t\r\n;\"")) return -1;
        sb_str(z, " ");
        sb_str(z, json_string_value(v));
    } else {
        return -1;
    }
    sb_str(z, "\n");
    return 0;
}

/* A zone backend holding a scenario's zonedata, by the pyspf driver's rules: SPF
 * records are served as TXT too unless the name lists TXT (even TXT: NONE); a bare
 * TIMEOUT makes the types without records listed before it time out. */
static dns_ctx *scenario_dns(const json_t *zonedata, char *err, size_t errlen)
{
    static const char *no_files[] = { NULL };
    struct dns_config cfg = { .zones = no_files };
    struct sbuf z = { 0 };
    const char *name;
    json_t *items;
    dns_ctx *d = dns_new(&cfg, err, errlen);
    if (!d) return NULL;
    json_object_foreach((json_t *)zonedata, name, items) {
        size_t i, upto = json_array_size(items);
        int has_txt = 0, timeout = 0;
        json_t *it;
        json_array_foreach(items, i, it)
            if (json_is_string(it) && !strcmp(json_string_value(it), "TIMEOUT")) {
                if (!timeout) upto = i;
                timeout = 1;
            } else if (json_object_get(it, "TXT")) {
                has_txt = 1;
            }
        for (i = 0; i < upto; i++) {
            const char *type;
            json_t *v;
            it = json_array_get(items, i);
            if (!json_is_object(it) || json_object_size(it) != 1) goto bad;
            json_object_foreach(it, type, v)
                if (zone_line(&z, name, type, v) < 0) goto bad;
        }
        if (!has_txt && !timeout)   /* generated TXT records come last: after a TIMEOUT, unseen */
            json_array_foreach(items, i, it)
                if (json_object_get(it, "SPF") && zone_line(&z, name, "TXT", json_object_get(it, "SPF")) < 0) goto bad;
        if (timeout) {
            struct sbuf n = { 0 };
            sb_name(&n, name);
            int rc = dns_zone_add_timeout(d, n.s);
            free(n.s);
            if (rc < 0) { snprintf(err, errlen, "cannot make %s time out", name); goto fail; }
        }
    }
    if (z.s && dns_zone_add_text(d, z.s, NULL, err, errlen) < 0) goto fail;
    free(z.s);
    return d;
bad:
    snprintf(err, errlen, "zonedata for \"%s\" not understood", name);
fail:
    free(z.s);
    dns_free(d);
    return NULL;
}

static json_t *load_yaml(const char *path)
{
    char cmd[1024];
    json_error_t jerr;
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import sys, yaml, json; "
             "json.dump(list(yaml.safe_load_all(open(sys.argv[1], \"rb\"))), sys.stdout)' '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p) { perror("popen"); return NULL; }
    json_t *j = json_loadf(p, JSON_ALLOW_NUL, &jerr);
    if (pclose(p) != 0 || !j) {
        fprintf(stderr, "spf_suite: cannot read %s (python3-yaml installed?)%s%s\n", path,
                j ? "" : ": ", j ? "" : jerr.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int result_ok(const json_t *want, enum as_result got)
{
    const char *g = as_result_str(got);
    size_t i;
    json_t *w;
    if (json_is_string(want)) return strcmp(json_string_value(want), g) == 0;
    json_array_foreach(want, i, w)
        if (json_is_string(w) && strcmp(json_string_value(w), g) == 0) return 1;
    return 0;
}

static const char *want_text(const json_t *want)
{
    return json_is_string(want) ? json_string_value(want) : json_string_value(json_array_get(want, 0));
}

/* Whether got answers test t; why (when not) in buf. */
static int verdict(const json_t *t, const struct as_spf *got, char *why, size_t n)
{
    const json_t *want = json_object_get(t, "result");
    const char *exp = json_string_value(json_object_get(t, "explanation"));
    if (!result_ok(want, got->result)) {
        snprintf(why, n, "expected %s, got %s (%s)", want_text(want), as_result_str(got->result),
                 got->reason ? got->reason : "");
        return 0;
    }
    if (exp && got->result == AS_FAIL && (!got->explanation || strcmp(exp, got->explanation))) {
        snprintf(why, n, "explanation \"%s\", expected \"%s\"", got->explanation ? got->explanation : "", exp);
        return 0;
    }
    return 1;
}

struct tally {
    int total, ours, lib;
};

/* Run one suite file.  known: names allowed to fail (NULL: none).  Returns the number
 * of failures not in known, or -1 when the file cannot be used. */
static int run_suite(const char *path, const char *label, int with_lib, const char *known, struct tally *t)
{
    json_t *docs = load_yaml(path);
    size_t i;
    json_t *doc;
    int unexpected = 0;
    if (!docs) return -1;
    memset(t, 0, sizeof *t);
    json_array_foreach(docs, i, doc) {
        char err[256];
        const char *name;
        json_t *test;
        dns_ctx *d = scenario_dns(json_object_get(doc, "zonedata"), err, sizeof err);
        if (!d) {
            fprintf(stderr, "%s: scenario \"%s\": %s\n", label, json_string_value(json_object_get(doc, "description")), err);
            json_decref(docs);
            return -1;
        }
        json_object_foreach(json_object_get(doc, "tests"), name, test) {
            struct spf_request req = {
                .ip = json_string_value(json_object_get(test, "host")),
                .helo = json_string_value(json_object_get(test, "helo")),
                .mail_from = json_string_value(json_object_get(test, "mailfrom")),
                .receiver = "unknown",
                .default_exp = "DEFAULT",
            };
            struct as_spf got;
            char why[700];
            t->total++;
            dns_budget_start(d);
            if (spf_check(d, &req, &got) != 0) { fprintf(stderr, "%s: %s: out of memory\n", label, name); exit(2); }
            if (verdict(test, &got, why, sizeof why)) {
                t->ours++;
            } else {
                char pat[200];
                snprintf(pat, sizeof pat, "\n%s\t", name);
                int listed = known && strstr(known, pat);
                printf("%s %s %s: %s\n", listed ? "known" : "FAIL ", label, name, why);
                unexpected += !listed;
            }
            as_spf_clear(&got);
            if (!with_lib) continue;
            dns_budget_start(d);
            if (spf_check_libspf2(d, &req, &got) != 0) { fprintf(stderr, "%s: %s: out of memory\n", label, name); exit(2); }
            if (verdict(test, &got, why, sizeof why)) t->lib++;
            else if (getenv("SPF_SUITE_VERBOSE")) printf("libspf2 %s %s: %s\n", label, name, why);
            as_spf_clear(&got);
        }
        dns_free(d);
    }
    json_decref(docs);
    return unexpected;
}

/* The names listed in the differences file, as "\nname\t" runs in one string. */
static char *read_known(const char *path, int *count)
{
    FILE *fp = fopen(path, "r");
    struct sbuf b = { 0 };
    char line[1024];
    *count = 0;
    sb_str(&b, "\n");
    if (!fp) return b.s;
    while (fgets(line, sizeof line, fp)) {
        size_t n = strcspn(line, " \t\r\n");
        if (line[0] == '#' || n == 0) continue;
        sb_put(&b, line, n);
        sb_str(&b, "\t\n");
        (*count)++;
    }
    fclose(fp);
    return b.s;
}

int main(void)
{
    const char *dir = getenv("TESTDATA") ? getenv("TESTDATA") : "tests/data";
    char p7208[512], p4408[512], pdiff[512];
    struct tally t7208, t4408;
    int known_n;
    snprintf(p7208, sizeof p7208, "%s/spf/rfc7208-tests.yml", dir);
    snprintf(p4408, sizeof p4408, "%s/spf/rfc4408-tests.yml", dir);
    snprintf(pdiff, sizeof pdiff, "%s/spf/rfc4408-differences.txt", dir);
    char *known = read_known(pdiff, &known_n);
    int bad7208 = run_suite(p7208, "rfc7208", 1, NULL, &t7208);
    int bad4408 = run_suite(p4408, "rfc4408", 0, known, &t4408);
    free(known);
    if (bad7208 < 0 || bad4408 < 0) return 1;
    printf("rfc7208: %d/%d (libspf2 via our DNS layer: %d/%d); rfc4408: %d/%d (%d listed in rfc4408-differences.txt)\n",
           t7208.ours, t7208.total, t7208.lib, t7208.total, t4408.ours, t4408.total, known_n);
    return t7208.ours == t7208.total && t7208.total == 203 && bad4408 == 0 ? 0 : 1;
}

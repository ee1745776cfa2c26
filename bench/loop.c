/* loop.c - the engine through its C API in one process: messages in memory, Redis round trips, DNS answer latency */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "authscore.h"
#include "dns.h"
#include "redis.h"

/*
 * loop check [--dns HOST:PORT] [--zone FILE] [--redis URL] [--record] [--fresh] [--passes N] MANIFEST
 *     Reads every message of MANIFEST into memory, then checks them all N times (default 2)
 *     with one engine, or with a new engine per message (--fresh: an empty per-process cache,
 *     as in a new Exim process, without the fork and the dlopen).  Counts the messages that
 *     do not pass SPF, DKIM and DMARC, and Redis round trips.
 * loop dns --dns HOST:PORT [--redis URL] [--reps N] NAMES
 *     NAMES: lines "name TYPE" (TXT, A, MX).  A first round warms Redis; then N rounds, each
 *     with a new resolver (empty per-process cache), ask every name one after another, then
 *     all at once (prefetched).  Time per answer, and Redis round trips.
 * One JSON object on standard output.
 */

struct msg {
    struct as_envelope env;
    char *data;
    size_t len;
};

static double now(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Manifest lines "ip TAB helo TAB mail_from TAB path", paths relative to the manifest. */
static struct msg *load(const char *manifest, size_t *count)
{
    FILE *f = fopen(manifest, "r");
    if (!f) { perror(manifest); return NULL; }
    const char *slash = strrchr(manifest, '/');
    int dirlen = slash ? (int)(slash - manifest) : 1;
    const char *dir = slash ? manifest : ".";
    struct msg *m = NULL;
    size_t n = 0, cap = 0;
    char line[8192], path[8192];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *fld[4], *p = line;
        int k = 0;
        for (; k < 4 && p; k++) {
            fld[k] = p;
            if ((p = strchr(p, '\t'))) *p++ = '\0';
        }
        if (k < 4) continue;
        if (n == cap && !(m = realloc(m, (cap = cap ? 2 * cap : 1024) * sizeof *m))) return NULL;
        snprintf(path, sizeof path, "%.*s/%s", dirlen, dir, fld[3]);
        m[n].env = (struct as_envelope){ strdup(fld[0]), *fld[1] ? strdup(fld[1]) : NULL, strdup(fld[2]) };
        if (!(m[n].data = slurp(path, &m[n].len))) return NULL;
        n++;
    }
    fclose(f);
    *count = n;
    return m;
}

static int passed(const struct as_verdict *v)
{
    return v->spf.result == AS_PASS && v->dkim.n > 0 && v->dkim.sigs[0].result == AS_PASS &&
           v->dmarc.result == AS_PASS;
}

struct opts {
    const char *servers[2], *zones[2], *redis, *file;
    int record, fresh, passes, reps;
};

static as_engine *engine(struct opts *o)
{
    char err[600];
    struct as_config cfg = {
        .authserv_id = "bench.test", .dns_servers = o->servers[0] ? o->servers : NULL,
        .zones = o->zones[0] ? o->zones : NULL, .redis_url = o->redis, .no_record = !o->record,
    };
    as_engine *e = as_engine_new(&cfg, err, sizeof err);
    if (!e) fprintf(stderr, "loop: %s\n", err);
    return e;
}

static int cmd_check(struct opts *o)
{
    size_t n;
    struct msg *m = load(o->file, &n);
    if (!m) return 1;
    as_engine *e = o->fresh ? NULL : engine(o);
    if (!o->fresh && !e) return 1;
    printf("{\"messages\": %zu, \"passes\": [", n);
    for (int p = 0; p < o->passes; p++) {
        unsigned long rt = 0, rt_max = 0, bad = 0;
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t i = 0; i < n; i++) {
            struct as_verdict v;
            if (o->fresh && !(e = engine(o))) return 1;
            unsigned long before = redis_stat_round_trips(as_engine_redis(e));
            if (as_check(e, &m[i].env, m[i].data, m[i].len, &v) != 0) { bad++; continue; }
            unsigned long trips = redis_stat_round_trips(as_engine_redis(e)) - before;
            rt += trips;
            if (trips > rt_max) rt_max = trips;
            if (!passed(&v)) bad++;
            as_verdict_clear(&v);
            if (o->fresh) as_engine_free(e);
        }
        printf("%s{\"wall_s\": %.6f, \"cpu_s\": %.6f, \"round_trips\": %lu, \"round_trips_max\": %lu, \"not_pass\": %lu}",
               p ? ", " : "", now(CLOCK_MONOTONIC) - t0, now(CLOCK_PROCESS_CPUTIME_ID) - c0, rt, rt_max, bad);
    }
    printf("]}\n");
    if (!o->fresh) as_engine_free(e);
    return 0;
}

struct name {
    char name[256];
    uint16_t type;
};

static int cmd_dns(struct opts *o)
{
    FILE *f = fopen(o->file, "r");
    if (!f) { perror(o->file); return 1; }
    struct name *q = NULL;
    size_t n = 0, cap = 0;
    char name[256], type[16];
    while (fscanf(f, "%255s %15s", name, type) == 2) {
        if (n == cap && !(q = realloc(q, (cap = cap ? 2 * cap : 256) * sizeof *q))) return 1;
        snprintf(q[n].name, sizeof q[n].name, "%s", name);
        q[n++].type = !strcmp(type, "A") ? DNS_T_A : !strcmp(type, "MX") ? DNS_T_MX : DNS_T_TXT;
    }
    fclose(f);
    char err[600];
    redis_conn *r = NULL;
    if (o->redis && !(r = redis_new(&(struct redis_config){ .url = o->redis }, err, sizeof err))) {
        fprintf(stderr, "loop: %s\n", err);
        return 1;
    }
    struct dns_config dc = { .servers = o->servers, .redis = r };
    double seq = 0, pre = 0;
    unsigned long rt_seq = 0, rt_pre = 0, bad = 0;
    for (int rep = 0; rep <= o->reps; rep++) {   /* round 0 warms Redis and the server */
        for (int prefetch = 0; prefetch < 2; prefetch++) {
            dns_ctx *d = dns_new(&dc, err, sizeof err);
            if (!d) { fprintf(stderr, "loop: %s\n", err); return 1; }
            unsigned long rt0 = redis_stat_round_trips(r);
            double t0 = now(CLOCK_MONOTONIC);
            if (prefetch)
                for (size_t i = 0; i < n; i++) dns_prefetch(d, q[i].name, q[i].type);
            for (size_t i = 0; i < n; i++) {
                struct dns_answer *a = dns_query(d, q[i].name, q[i].type);
                if (a->status != DNS_OK) bad++;
                dns_answer_release(a);
            }
            double t = now(CLOCK_MONOTONIC) - t0;
            dns_free(d);
            if (rep == 0) continue;
            *(prefetch ? &pre : &seq) += t;
            *(prefetch ? &rt_pre : &rt_seq) += redis_stat_round_trips(r) - rt0;
        }
    }
    double k = (double)n * o->reps;
    printf("{\"answers\": %zu, \"reps\": %d, \"us_per_answer_sequential\": %.2f, \"us_per_answer_prefetched\": %.2f, "
           "\"round_trips_per_answer_sequential\": %.3f, \"round_trips_per_round_prefetched\": %.2f, \"not_ok\": %lu}\n",
           n, o->reps, seq / k * 1e6, pre / k * 1e6, rt_seq / k, (double)rt_pre / o->reps, bad);
    redis_free(r);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = { .passes = 2, .reps = 5 };
    if (argc < 3) goto usage;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--record")) o.record = 1;
        else if (!strcmp(a, "--fresh")) o.fresh = 1;
        else if (!strcmp(a, "--dns") && v) o.servers[0] = v, i++;
        else if (!strcmp(a, "--zone") && v) o.zones[0] = v, i++;
        else if (!strcmp(a, "--redis") && v) o.redis = v, i++;
        else if (!strcmp(a, "--passes") && v) o.passes = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) o.reps = atoi(v), i++;
        else if (a[0] != '-' && !o.file) o.file = a;
        else goto usage;
    }
    if (!o.file || o.passes < 1 || o.reps < 1) goto usage;
    if (!strcmp(argv[1], "check")) return cmd_check(&o);
    if (!strcmp(argv[1], "dns") && o.servers[0]) return cmd_dns(&o);
usage:
    fprintf(stderr, "usage: loop check [--dns H:P] [--zone F] [--redis URL] [--record] [--fresh] [--passes N] MANIFEST\n"
                    "       loop dns --dns H:P [--redis URL] [--reps N] NAMES\n");
    return 2;
}

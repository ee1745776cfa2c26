/* dns.c - the per-process DNS cache and per-message time budget, above a zone or network backend */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dns_backend.h"

#define NAME_TEXT_MAX 1024       /* presentation form, \DDD escapes included */
#define TEMPFAIL_LIFE_MS 5000    /* a name that just timed out is not waited for again at once */
#define POS_TTL_MAX 86400        /* long-lived processes still notice changed records within a day */

/* One question: an answer until it expires, or a backend handle while in flight. */
struct entry {
    struct entry *hnext;         /* hash chain */
    struct entry *prev, *next;   /* LRU list, most recently used first */
    struct dns_answer *ans;      /* the cache's reference; NULL while pending */
    void *pending;
    uint64_t expires;            /* ms, on the context's clock */
    uint32_t hash;
    uint16_t type;
    char name[];                 /* lowercased, no trailing dot */
};

struct dns_ctx {
    struct dns_backend *be;
    struct dns_backend *zone;    /* == be when zones answer, else NULL */
    struct entry **buckets;
    size_t mask, count, max;
    struct entry *head, *tail;
    unsigned budget_ms;
    uint64_t budget_end;         /* 0 until dns_budget_start */
    unsigned long queries;
    uint64_t (*now)(void *);
    void *now_arg;
    char warning[256];
};

/* Static answers are never freed: refs < 0. */
struct dns_answer dns_answer_nomem = { .status = DNS_TEMPFAIL, .refs = -1, .errstr = "out of memory" };
static struct dns_answer answer_budget = { .status = DNS_TEMPFAIL, .refs = -1, .errstr = "budget" };
static struct dns_answer answer_badname = { .status = DNS_NXDOMAIN, .refs = -1 };

static uint64_t mono_ms(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void dns_set_clock(dns_ctx *d, uint64_t (*now_ms)(void *arg), void *arg)
{
    d->now = now_ms ? now_ms : mono_ms;
    d->now_arg = arg;
}

/* ---- answers ---- */

struct dns_answer *dns_answer_new(enum dns_status status, uint32_t ttl, const char *errstr)
{
    struct dns_answer *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->status = status;
    a->ttl = ttl;
    a->refs = 1;
    if (errstr) snprintf(a->errstr, sizeof a->errstr, "%s", errstr);
    return a;
}

char *dns_dname_str(const ldns_rdf *dname)
{
    char *s = ldns_rdf2str(dname);
    size_t n = s ? strlen(s) : 0;
    if (n && s[n - 1] == '.' && (n < 2 || s[n - 2] != '\\')) s[n - 1] = '\0';
    return s;
}

static void rr_clear(struct dns_rr *r)
{
    switch (r->type) {
    case DNS_T_MX: free(r->u.mx.host); break;
    case DNS_T_NS: case DNS_T_CNAME: case DNS_T_PTR: case DNS_T_SOA: free(r->u.name); break;
    case DNS_T_TXT: case LDNS_RR_TYPE_SPF: free(r->u.txt.data); break;
    }
}

/* TXT (and SPF) character-strings, joined into one buffer with a NUL after it. */
static int txt_join(struct dns_rr *r, const ldns_rr *rr)
{
    size_t len = 0, i;
    for (i = 0; i < ldns_rr_rd_count(rr); i++) {
        const ldns_rdf *f = ldns_rr_rdf(rr, i);
        if (ldns_rdf_size(f) > 0) len += ldns_rdf_size(f) - 1;
    }
    if (!(r->u.txt.data = malloc(len + 1))) return -1;
    r->u.txt.len = 0;
    for (i = 0; i < ldns_rr_rd_count(rr); i++) {
        const ldns_rdf *f = ldns_rr_rdf(rr, i);
        if (ldns_rdf_size(f) < 1) continue;
        memcpy(r->u.txt.data + r->u.txt.len, ldns_rdf_data(f) + 1, ldns_rdf_size(f) - 1);
        r->u.txt.len += ldns_rdf_size(f) - 1;
    }
    r->u.txt.data[len] = '\0';
    return 0;
}

int dns_answer_add(struct dns_answer *a, const ldns_rr *rr)
{
    size_t n = a->n;
    if ((n & (n - 1)) == 0) {   /* capacity doubles at each power of two */
        struct dns_rr *grown = realloc(a->rr, (n ? 2 * n : 1) * sizeof *grown);
        if (!grown) return -1;
        a->rr = grown;
    }
    struct dns_rr *r = &a->rr[n];
    const ldns_rdf *f0 = ldns_rr_rdf(rr, 0), *f1 = ldns_rr_rdf(rr, 1);
    memset(r, 0, sizeof *r);
    r->type = ldns_rr_get_type(rr);
    r->ttl = ldns_rr_ttl(rr);
    switch (r->type) {
    case DNS_T_A:
        if (!f0 || ldns_rdf_size(f0) != 4) return 0;   /* malformed: leave it out */
        memcpy(&r->u.a, ldns_rdf_data(f0), 4);
        break;
    case DNS_T_AAAA:
        if (!f0 || ldns_rdf_size(f0) != 16) return 0;
        memcpy(&r->u.aaaa, ldns_rdf_data(f0), 16);
        break;
    case DNS_T_MX:
        if (!f0 || !f1 || ldns_rdf_size(f0) != 2) return 0;
        r->u.mx.pref = ldns_rdf2native_int16(f0);
        if (!(r->u.mx.host = dns_dname_str(f1))) return -1;
        break;
    case DNS_T_NS: case DNS_T_CNAME: case DNS_T_PTR: case DNS_T_SOA:   /* SOA: the primary's name */
        if (!f0) return 0;
        if (!(r->u.name = dns_dname_str(f0))) return -1;
        break;
    case DNS_T_TXT: case LDNS_RR_TYPE_SPF:
        if (txt_join(r, rr) < 0) return -1;
        break;
    }
    a->n++;
    if (r->ttl < a->ttl) a->ttl = r->ttl;
    return 0;
}

void dns_answer_release(struct dns_answer *a)
{
    if (!a || a->refs < 0 || --a->refs > 0) return;
    for (size_t i = 0; i < a->n; i++) rr_clear(&a->rr[i]);
    free(a->rr);
    free(a);
}

uint32_t dns_neg_ttl(const ldns_rr *soa)
{
    if (!soa || ldns_rr_get_type(soa) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(soa) < 7 ||
        ldns_rdf_size(ldns_rr_rdf(soa, 6)) != 4)
        return DNS_NEG_TTL_DEFAULT;
    uint32_t ttl = ldns_rdf2native_int32(ldns_rr_rdf(soa, 6));
    if (ldns_rr_ttl(soa) < ttl) ttl = ldns_rr_ttl(soa);
    return ttl < DNS_NEG_TTL_MAX ? ttl : DNS_NEG_TTL_MAX;
}

/* ---- the cache ---- */

/* Copy name lowercased without its trailing dot into key.  Returns the length, or
 * -1 when it cannot be a DNS name (a label over 63 octets, an empty label, over 255). */
static int normalize(const char *s, char *key)
{
    size_t i = 0, label = 0, wire = 1;
    if (s[0] == '.' && s[1] == '\0') s++;                    /* the root */
    while (*s) {
        char c = *s++;
        if (c == '.') {
            if (label == 0 || label > 63) return -1;
            wire += label + 1;
            label = 0;
            if (*s) key[i++] = '.';
            continue;
        }
        if (i + 5 >= NAME_TEXT_MAX) return -1;
        key[i++] = c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c;
        if (c == '\\') {                                     /* \X or \DDD: one octet */
            if (s[0] >= '0' && s[0] <= '9') {
                if (!(s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9') ||
                    (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0') > 255)
                    return -1;
                memcpy(key + i, s, 3);
                i += 3, s += 3;
            } else if (*s) {
                c = *s++;
                key[i++] = c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c;
            } else {
                return -1;
            }
        }
        label++;
    }
    if (label > 63) return -1;
    if (label) wire += label + 1;
    key[i] = '\0';
    return wire <= 255 ? (int)i : -1;
}

static uint32_t hash(const char *key, size_t len, uint16_t type)
{
    uint32_t h = 2166136261u ^ type;   /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h;
}

static void lru_unlink(dns_ctx *d, struct entry *e)
{
    if (e->prev) e->prev->next = e->next; else d->head = e->next;
    if (e->next) e->next->prev = e->prev; else d->tail = e->prev;
}

static void lru_push(dns_ctx *d, struct entry *e)
{
    e->prev = NULL;
    e->next = d->head;
    if (d->head) d->head->prev = e; else d->tail = e;
    d->head = e;
}

static void entry_drop(dns_ctx *d, struct entry *e)
{
    struct entry **p = &d->buckets[e->hash & d->mask];
    while (*p != e) p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(d, e);
    if (e->pending) d->be->cancel(d->be, e->pending);
    dns_answer_release(e->ans);
    free(e);
    d->count--;
}

static void cache_flush(dns_ctx *d)
{
    while (d->head) entry_drop(d, d->head);
}

/* The entry for a question, started on the backend unless fresh or in flight.
 * NULL with *fail set when the question cannot be asked. */
static struct entry *lookup(dns_ctx *d, const char *name, uint16_t type, uint64_t now,
                            struct dns_answer **fail)
{
    char key[NAME_TEXT_MAX];
    int len = name ? normalize(name, key) : -1;
    if (len < 0) { *fail = &answer_badname; return NULL; }
    uint32_t h = hash(key, (size_t)len, type);
    struct entry *e = d->buckets[h & d->mask];
    while (e && !(e->hash == h && e->type == type && strcmp(e->name, key) == 0)) e = e->hnext;
    if (e) {
        lru_unlink(d, e);
        lru_push(d, e);
        if (e->pending || now < e->expires) return e;
        dns_answer_release(e->ans);
        e->ans = NULL;
    } else {
        if (d->count >= d->max) entry_drop(d, d->tail);
        if (!(e = malloc(sizeof *e + (size_t)len + 1))) { *fail = &dns_answer_nomem; return NULL; }
        memcpy(e->name, key, (size_t)len + 1);
        e->hash = h;
        e->type = type;
        e->ans = NULL;
        e->pending = NULL;
        e->hnext = d->buckets[h & d->mask];
        d->buckets[h & d->mask] = e;
        lru_push(d, e);
        d->count++;
    }
    if (!(e->pending = d->be->start(d->be, e->name, type))) {
        entry_drop(d, e);
        *fail = &dns_answer_nomem;
        return NULL;
    }
    d->queries++;
    return e;
}

/* ---- the public interface ---- */

/* A whole file in memory, NUL-terminated.  NULL with errno set on error. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (!fp) return NULL;
    for (;;) {
        if (cap - *len < 4096) {
            char *grown = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!grown) { free(buf); buf = NULL; errno = ENOMEM; break; }
            buf = grown;
        }
        size_t got = fread(buf + *len, 1, cap - *len - 1, fp);
        *len += got;
        if (got == 0) {
            if (ferror(fp)) { free(buf); buf = NULL; }   /* errno from fread */
            else buf[*len] = '\0';
            break;
        }
    }
    fclose(fp);
    return buf;
}

dns_ctx *dns_new(const struct dns_config *cfg, char *err, size_t errlen)
{
    dns_ctx *d = calloc(1, sizeof *d);
    size_t nb = 16;
    if (!d) goto oom;
    d->max = cfg->cache_max ? cfg->cache_max : 4096;
    while (nb < d->max && nb < ((size_t)1 << 24)) nb <<= 1;
    if (!(d->buckets = calloc(nb, sizeof *d->buckets))) goto oom;
    d->mask = nb - 1;
    d->budget_ms = cfg->budget_ms ? cfg->budget_ms : 8000;
    d->now = mono_ms;
    if (!cfg->zones) {
        if (!(d->be = dns_net_backend_new(cfg, err, errlen))) goto err;
        if (cfg->redis) {
            struct dns_backend *shared = dns_redis_backend_new(d->be, cfg->redis, cfg->redis_ttl_max,
                                                                cfg->timeout_ms ? cfg->timeout_ms : 2000, err, errlen);
            if (!shared) goto err;
            d->be = shared;
        }
        return d;
    }
    if (!(d->be = d->zone = dns_zone_backend_new(err, errlen))) goto err;
    unsigned skipped = 0;
    for (const char **z = cfg->zones; *z; z++) {
        char why[200] = "";
        unsigned bad = 0;
        size_t len;
        char *text = slurp(*z, &len);
        if (!text) { snprintf(err, errlen, "dns: %s: %s", *z, strerror(errno)); goto err; }
        int n = dns_zone_load(d->zone, text, len, *z, NULL, 0, &bad, why, sizeof why);
        free(text);
        if (n < 0) { snprintf(err, errlen, "dns: %s", why); goto err; }
        if (n == 0) { snprintf(err, errlen, "dns: %s: no records%s%s", *z, bad ? "; first error " : "", why); goto err; }
        if (bad && !skipped) snprintf(d->warning, sizeof d->warning, "%s", why);
        skipped += bad;
    }
    if (skipped) {
        size_t w = strlen(d->warning);
        snprintf(d->warning + w, sizeof d->warning - w, " (%u bad line%s skipped)", skipped, skipped > 1 ? "s" : "");
    }
    return d;
oom:
    snprintf(err, errlen, "dns: out of memory");
err:
    dns_free(d);
    return NULL;
}

void dns_free(dns_ctx *d)
{
    if (!d) return;
    if (d->buckets) cache_flush(d);
    if (d->be) d->be->free(d->be);
    free(d->buckets);
    free(d);
}

const char *dns_zone_warning(const dns_ctx *d)
{
    return d->warning[0] ? d->warning : NULL;
}

int dns_zone_add_text(dns_ctx *d, const char *text, const char *origin, char *err, size_t errlen)
{
    if (!d->zone) { snprintf(err, errlen, "dns: no zones configured"); return -1; }
    int n = dns_zone_load(d->zone, text, strlen(text), "zone text", origin, 1, NULL, err, errlen);
    cache_flush(d);
    return n < 0 ? -1 : 0;
}

int dns_zone_add_timeout(dns_ctx *d, const char *name)
{
    return dns_zone_add_timeout_type(d, name, 0);
}

int dns_zone_add_timeout_type(dns_ctx *d, const char *name, uint16_t type)
{
    if (!d->zone) return -1;
    cache_flush(d);
    return dns_zone_timeout(d->zone, name, type);
}

void dns_budget_start(dns_ctx *d)
{
    d->budget_end = d->now(d->now_arg) + d->budget_ms;
}

static int budget_spent(const dns_ctx *d, uint64_t now)
{
    return d->budget_end && now >= d->budget_end;
}

void dns_prefetch(dns_ctx *d, const char *name, uint16_t type)
{
    struct dns_answer *fail;
    uint64_t now = d->now(d->now_arg);
    if (!budget_spent(d, now)) lookup(d, name, type, now, &fail);
}

struct dns_answer *dns_query(dns_ctx *d, const char *name, uint16_t type)
{
    struct dns_answer *fail;
    uint64_t now = d->now(d->now_arg);
    if (budget_spent(d, now)) return &answer_budget;
    struct entry *e = lookup(d, name, type, now, &fail);
    if (!e) return fail;
    if (e->pending) {
        uint64_t left = d->budget_end ? d->budget_end - now : 0;
        struct dns_answer *a = d->be->wait(d->be, e->pending, d->budget_end ? (int)(left < INT_MAX ? left : INT_MAX) : -1);
        e->pending = a ? NULL : e->pending;
        if (!a || a->refs < 0) {   /* the budget ran out first, or OOM: nothing worth keeping */
            entry_drop(d, e);
            return a ? a : &answer_budget;
        }
        e->ans = a;
        if (a->status == DNS_TEMPFAIL) e->expires = d->now(d->now_arg) + TEMPFAIL_LIFE_MS;
        else e->expires = d->now(d->now_arg) + (uint64_t)(a->ttl < POS_TTL_MAX ? a->ttl : POS_TTL_MAX) * 1000;
    }
    if (e->ans->refs >= 0) e->ans->refs++;
    return e->ans;
}

unsigned long dns_stat_queries(const dns_ctx *d)
{
    return d->queries;
}

/* dns_redis.c - DNS backend sharing answers through Redis across processes and hosts, above the network backend */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dns_backend.h"
#include "redis.h"

#define VALUE_MAX 65536      /* a longer value is not ours: ignored, and replaced */
#define FORMAT 1
#define MAGIC 'd'
#define HEAD_LEN 20          /* magic, version, status, errlen, type, ttl, expiry, count */
#define SUM_LEN 8
#define RR_MAX 4096
#define NAME_MAX_TEXT 1024   /* presentation form with \DDD escapes */
#define TEMPFAIL_TTL 5       /* seconds: a server that just failed is not asked by every process */
#define TTL_MAX_DEFAULT 3600

/* A question.  Started questions wait in a batch until the first wait, so that
 * prefetched questions are looked up in Redis in one round trip. */
struct rq {
    struct rq *next, **pprev;    /* in the batch while Q_BATCH */
    enum { Q_BATCH, Q_PEER, Q_LOWER, Q_DONE } state;
    void *lower;                 /* Q_LOWER: the network question */
    struct dns_answer *ans;      /* Q_DONE */
    uint64_t peer_until;         /* Q_PEER: another process asks the network; wait for it until then */
    int holder;                  /* we hold the lock: release it after storing */
    uint16_t type;
    size_t keylen, locklen;
    const char *name;            /* in key: what the network is asked */
    char *lock;                  /* after key: prefix "dnslock:" TYPE ":" name */
    char key[];                  /* prefix "dns:" TYPE ":" name */
};

struct shared {
    struct dns_backend be;
    struct dns_backend *lower;
    redis_conn *redis;
    uint32_t ttl_max;
    unsigned lock_ms;            /* how long one process may hold a question for the others */
    struct rq *batch;
};

/* ---- the value: a small versioned binary record, checked before use ---- */

static uint64_t checksum(const char *key, size_t keylen, const unsigned char *v, size_t len)
{
    uint64_t h = 14695981039346656037ull;   /* FNV-1a 64 over the key, then the value */
    for (size_t i = 0; i < keylen; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    for (size_t i = 0; i < len; i++) h = (h ^ v[i]) * 1099511628211ull;
    return h;
}

struct buf {
    unsigned char *p;
    size_t len, cap;
    int failed;
};

static void put(struct buf *b, const void *data, size_t len)
{
    if (b->failed) return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len) cap *= 2;
        unsigned char *p = cap > VALUE_MAX ? NULL : realloc(b->p, cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void put_u8(struct buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put_u16(struct buf *b, unsigned v) { unsigned char c[2] = { (unsigned char)(v >> 8), (unsigned char)v }; put(b, c, 2); }
static void put_u32(struct buf *b, uint32_t v) { put_u16(b, v >> 16); put_u16(b, v & 0xffff); }
static void put_u64(struct buf *b, uint64_t v) { put_u32(b, (uint32_t)(v >> 32)); put_u32(b, (uint32_t)v); }

static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get_u32(const unsigned char *p) { return (uint32_t)get_u16(p) << 16 | get_u16(p + 2); }
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) << 32 | get_u32(p + 4); }

static int is_name_type(uint16_t t)
{
    return t == DNS_T_NS || t == DNS_T_CNAME || t == DNS_T_PTR || t == DNS_T_SOA;
}

static int is_txt_type(uint16_t t)
{
    return t == DNS_T_TXT || t == LDNS_RR_TYPE_SPF;
}

/* The record for answer a, kept ttl seconds.  0, or -1 when it cannot be encoded
 * (OOM, or larger than VALUE_MAX). */
static int encode(const struct rq *q, const struct dns_answer *a, uint32_t ttl, struct buf *b)
{
    size_t errlen = a->status == DNS_TEMPFAIL ? strnlen(a->errstr, sizeof a->errstr - 1) : 0;
    if (a->n > RR_MAX) return -1;
    put_u8(b, MAGIC);
    put_u8(b, FORMAT);
    put_u8(b, a->status);
    put_u8(b, (unsigned)errlen);
    put_u16(b, q->type);
    put_u32(b, a->ttl < ttl ? a->ttl : ttl);   /* the answer's own TTL; the key lives ttl */
    put_u64(b, (uint64_t)time(NULL) + ttl);
    put_u16(b, (unsigned)a->n);
    put(b, a->errstr, errlen);
    for (size_t i = 0; i < a->n; i++) {
        const struct dns_rr *r = &a->rr[i];
        const char *s = NULL;
        size_t len = 0;
        if (r->type != q->type) return -1;
        put_u16(b, r->type);
        put_u32(b, r->ttl);
        if (r->type == DNS_T_A) {
            put_u16(b, 4);
            put(b, &r->u.a, 4);
            continue;
        }
        if (r->type == DNS_T_AAAA) {
            put_u16(b, 16);
            put(b, &r->u.aaaa, 16);
            continue;
        }
        if (r->type == DNS_T_MX) {
            len = strlen(r->u.mx.host);
            if (len > NAME_MAX_TEXT) return -1;
            put_u16(b, (unsigned)len + 2);
            put_u16(b, r->u.mx.pref);
            put(b, r->u.mx.host, len);
            continue;
        }
        if (is_name_type(r->type)) s = r->u.name, len = strlen(s);
        else if (is_txt_type(r->type)) s = r->u.txt.data, len = r->u.txt.len;
        if (len > 65535 || (is_name_type(r->type) && len > NAME_MAX_TEXT)) return -1;
        put_u16(b, (unsigned)len);
        put(b, s, len);
    }
    put_u64(b, checksum(q->key, q->keylen, b->p, b->len));
    return b->failed ? -1 : 0;
}

static int add_rr(struct dns_answer *a, const struct dns_rr *r)
{
    if ((a->n & (a->n - 1)) == 0) {   /* capacity doubles at each power of two, as in dns.c */
        struct dns_rr *grown = realloc(a->rr, (a->n ? 2 * a->n : 1) * sizeof *grown);
        if (!grown) return -1;
        a->rr = grown;
    }
    a->rr[a->n++] = *r;
    return 0;
}

static char *text(const unsigned char *p, size_t len)
{
    if (memchr(p, '\0', len)) return NULL;
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* The answer in value v for question q, with the TTL left until the original
 * would expire.  NULL when v is malformed, foreign, expired, or on OOM. */
static struct dns_answer *decode(const struct rq *q, const unsigned char *v, size_t len)
{
    if (len < HEAD_LEN + SUM_LEN || len > VALUE_MAX || v[0] != MAGIC || v[1] != FORMAT) return NULL;
    len -= SUM_LEN;
    if (get_u64(v + len) != checksum(q->key, q->keylen, v, len)) return NULL;
    unsigned status = v[2], errlen = v[3];
    uint32_t ttl = get_u32(v + 6);
    uint64_t expires = get_u64(v + 10), now = (uint64_t)time(NULL);
    size_t n = get_u16(v + 18), at = HEAD_LEN;
    if (status > DNS_TEMPFAIL || errlen >= sizeof ((struct dns_answer *)0)->errstr || get_u16(v + 4) != q->type ||
        (status != DNS_OK && n) || n > RR_MAX || expires <= now || HEAD_LEN + errlen > len)
        return NULL;
    if (expires - now < ttl) ttl = (uint32_t)(expires - now);
    char why[64];
    memcpy(why, v + at, errlen);
    why[errlen] = '\0';
    at += errlen;
    struct dns_answer *a = dns_answer_new((enum dns_status)status, ttl, status == DNS_TEMPFAIL ? why : NULL);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        struct dns_rr r;
        memset(&r, 0, sizeof r);
        if (len - at < 8) goto bad;
        r.type = get_u16(v + at);
        r.ttl = get_u32(v + at + 2);
        size_t rdlen = get_u16(v + at + 6);
        const unsigned char *rd = v + at + 8;
        at += 8;
        if (r.type != q->type || len - at < rdlen) goto bad;
        at += rdlen;
        if (r.ttl > ttl) r.ttl = ttl;
        if (r.type == DNS_T_A) {
            if (rdlen != 4) goto bad;
            memcpy(&r.u.a, rd, 4);
        } else if (r.type == DNS_T_AAAA) {
            if (rdlen != 16) goto bad;
            memcpy(&r.u.aaaa, rd, 16);
        } else if (r.type == DNS_T_MX) {
            if (rdlen < 2 || rdlen - 2 > NAME_MAX_TEXT) goto bad;
            r.u.mx.pref = get_u16(rd);
            if (!(r.u.mx.host = text(rd + 2, rdlen - 2))) goto bad;
        } else if (is_name_type(r.type)) {
            if (rdlen > NAME_MAX_TEXT || !(r.u.name = text(rd, rdlen))) goto bad;
        } else if (is_txt_type(r.type)) {
            if (!(r.u.txt.data = malloc(rdlen + 1))) goto bad;
            memcpy(r.u.txt.data, rd, rdlen);
            r.u.txt.data[rdlen] = '\0';
            r.u.txt.len = rdlen;
        } else if (rdlen != 0) {
            goto bad;
        }
        if (add_rr(a, &r) < 0) {
            free(r.type == DNS_T_MX ? r.u.mx.host : is_name_type(r.type) ? r.u.name :
                 is_txt_type(r.type) ? r.u.txt.data : NULL);
            goto bad;
        }
    }
    if (at != len) goto bad;
    return a;
bad:
    dns_answer_release(a);
    return NULL;
}

/* ---- the backend ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *type_name(uint16_t t, char *buf, size_t len)
{
    switch (t) {
    case DNS_T_A: return "A";
    case DNS_T_NS: return "NS";
    case DNS_T_CNAME: return "CNAME";
    case DNS_T_SOA: return "SOA";
    case DNS_T_PTR: return "PTR";
    case DNS_T_MX: return "MX";
    case DNS_T_TXT: return "TXT";
    case DNS_T_AAAA: return "AAAA";
    case LDNS_RR_TYPE_SPF: return "SPF";
    }
    snprintf(buf, len, "TYPE%u", t);
    return buf;
}

static void *shared_start(struct dns_backend *be, const char *name, uint16_t type)
{
    struct shared *s = (struct shared *)be;
    char tn[16];
    const char *prefix = redis_prefix(s->redis), *t = type_name(type, tn, sizeof tn);
    size_t plen = strlen(prefix), tlen = strlen(t), nlen = strlen(name);
    size_t keylen = plen + 4 + tlen + 1 + nlen;
    struct rq *q = calloc(1, sizeof *q + 2 * keylen + 6);
    if (!q) return NULL;
    char *k = q->key;
    memcpy(k, prefix, plen);
    memcpy(k + plen, "dns:", 4);
    memcpy(k + plen + 4, t, tlen);
    k[plen + 4 + tlen] = ':';
    for (size_t i = 0; i < nlen; i++)
        k[plen + 5 + tlen + i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + 'a' - 'A') : name[i];
    k[keylen] = '\0';
    q->keylen = keylen;
    q->name = k + plen + 5 + tlen;
    q->lock = k + keylen + 1;   /* prefix "dnslock:" TYPE ":" name */
    memcpy(q->lock, k, plen);
    memcpy(q->lock + plen, "dnslock", 7);
    memcpy(q->lock + plen + 7, k + plen + 3, keylen - plen - 3 + 1);
    q->locklen = keylen + 4;
    q->type = type;
    q->state = Q_BATCH;
    q->next = s->batch;
    q->pprev = &s->batch;
    if (s->batch) s->batch->pprev = &q->next;
    s->batch = q;
    return q;
}

static void to_lower(struct shared *s, struct rq *q)
{
    q->state = Q_LOWER;
    if (!(q->lower = s->lower->start(s->lower, q->name, q->type))) {
        q->state = Q_DONE;
        q->ans = &dns_answer_nomem;
    }
}

static struct redis_cmd cmd4(const char **argv, size_t *argvlen, const char *a0, const char *a1, size_t l1,
                             const char *a2, const char *a3)
{
    argv[0] = a0, argvlen[0] = strlen(a0);
    argv[1] = a1, argvlen[1] = l1;
    argv[2] = a2, argvlen[2] = a2 ? strlen(a2) : 0;
    argv[3] = a3, argvlen[3] = a3 ? strlen(a3) : 0;
    return (struct redis_cmd){ a3 ? 4 : a2 ? 3 : 2, argv, argvlen };
}

/* GETRANGE: a hostile value costs at most VALUE_MAX + 1 bytes. */
#define GET_VALUE(argv, argvlen, q) cmd4(argv, argvlen, "GETRANGE", (q)->key, (q)->keylen, "0", "65536")

/* Look every batched question up in Redis in one round trip (which also carries
 * any read deferred on the connection: a check's reputation read).  For the misses,
 * one more round trip takes a lock per question: the process that gets it asks
 * the network; the others wait for its answer to appear (single flight across
 * processes).  Without Redis, every question goes to the network at once. */
static void flush(struct shared *s)
{
    size_t n = 0, i = 0, nmiss = 0;
    struct rq *q, *next, **qs;
    for (q = s->batch; q; q = q->next) n++;
    qs = malloc(n * sizeof *qs);
    struct redis_cmd *cmds = malloc(2 * n * sizeof *cmds);
    const char **argv = malloc(10 * n * sizeof *argv);
    size_t *argvlen = malloc(10 * n * sizeof *argvlen);
    redisReply **rep = calloc(2 * n, sizeof *rep);
    int ok = qs && cmds && argv && argvlen && rep;
    for (q = s->batch; q; q = next, i++) {   /* the batch empties: every question gets a state */
        next = q->next;
        q->next = NULL;
        q->pprev = NULL;
        q->state = Q_LOWER;
        if (ok) qs[i] = q;
        else to_lower(s, q);
    }
    s->batch = NULL;
    if (!ok) goto out;
    for (i = 0; i < n; i++) cmds[i] = GET_VALUE(argv + 4 * i, argvlen + 4 * i, qs[i]);
    if (redis_exec(s->redis, cmds, n, rep) == 0) {
        for (i = 0; i < n; i++) {
            redisReply *x = rep[i];
            q = qs[i];
            if (x->type == REDIS_REPLY_STRING && x->len > 0 && (q->ans = decode(q, (const unsigned char *)x->str, x->len)))
                q->state = Q_DONE;
            else
                qs[nmiss++] = q;
        }
        redis_replies_free(rep, n);
        char px[16];
        snprintf(px, sizeof px, "%u", s->lock_ms);
        for (i = 0; i < nmiss; i++) {   /* the value again: it may have come since the first look */
            const char **a = argv + 10 * i;
            size_t *al = argvlen + 10 * i;
            cmd4(a, al, "SET", qs[i]->lock, qs[i]->locklen, "1", "NX");
            a[4] = "PX", al[4] = 2;
            a[5] = px, al[5] = strlen(px);
            cmds[2 * i] = (struct redis_cmd){ 6, a, al };
            cmds[2 * i + 1] = GET_VALUE(a + 6, al + 6, qs[i]);
        }
        if (nmiss && redis_exec(s->redis, cmds, 2 * nmiss, rep) == 0) {
            uint64_t until = mono_ms() + s->lock_ms;
            size_t nrelease = 0;
            for (i = 0; i < nmiss; i++) {
                redisReply *lock = rep[2 * i], *x = rep[2 * i + 1];
                q = qs[i];
                q->holder = lock->type == REDIS_REPLY_STATUS;
                if (x->type == REDIS_REPLY_STRING && x->len > 0 && (q->ans = decode(q, (const unsigned char *)x->str, x->len))) {
                    q->state = Q_DONE;
                    if (q->holder) {   /* replies are read: their commands' slots are free */
                        cmds[nrelease] = cmd4(argv + 4 * nrelease, argvlen + 4 * nrelease, "DEL", q->lock, q->locklen, NULL, NULL);
                        nrelease++;
                    }
                    q->holder = 0;
                } else if (lock->type == REDIS_REPLY_NIL) {
                    q->state = Q_PEER;
                    q->peer_until = until;
                } else {
                    to_lower(s, q);
                }
            }
            redis_replies_free(rep, 2 * nmiss);
            if (nrelease && redis_exec(s->redis, cmds, nrelease, rep) == 0) redis_replies_free(rep, nrelease);
            goto out;
        }
    } else {
        nmiss = n;
    }
    for (i = 0; i < nmiss; i++) to_lower(s, qs[i]);
out:
    free(rep);
    free(argvlen);
    free(argv);
    free(cmds);
    free(qs);
}

/* Another process is asking the network: poll Redis for its answer until it
 * appears, the lock goes (that process gave up or had nothing to share) or
 * outlives lock_ms.  Returns 0 when q has an answer or went to the network,
 * -1 when timeout_ms ran out first. */
static int wait_peer(struct shared *s, struct rq *q, int timeout_ms)
{
    uint64_t now = mono_ms(), end = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms;
    unsigned pause = 1;
    for (;;) {
        const char *argv[8];
        size_t argvlen[8];
        struct redis_cmd cmds[2] = { GET_VALUE(argv, argvlen, q), cmd4(argv + 4, argvlen + 4, "EXISTS", q->lock, q->locklen, NULL, NULL) };
        redisReply *rep[2];
        if (redis_exec(s->redis, cmds, 2, rep) < 0) break;
        int locked = rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer > 0;
        if (rep[0]->type == REDIS_REPLY_STRING && rep[0]->len > 0)
            q->ans = decode(q, (const unsigned char *)rep[0]->str, rep[0]->len);
        redis_replies_free(rep, 2);
        if (q->ans) {
            q->state = Q_DONE;
            return 0;
        }
        now = mono_ms();
        if (!locked || now >= q->peer_until) break;
        if (now >= end) return -1;
        uint64_t left = (q->peer_until < end ? q->peer_until : end) - now;
        struct timespec ts = { 0, (long)(left < pause ? left : pause) * 1000000L };
        nanosleep(&ts, NULL);
        if (pause < 16) pause *= 2;
    }
    to_lower(s, q);
    return 0;
}

/* Share a fresh answer: positive answers for their TTL (capped), NXDOMAIN and
 * NODATA for theirs (the SOA minimum), trouble for a few seconds and never over
 * an answer another process stored meanwhile.  TTL 0 means "do not cache".
 * The lock, if ours, goes in the same round trip. */
static void store(struct shared *s, struct rq *q, const struct dns_answer *a)
{
    uint32_t ttl = a->status == DNS_TEMPFAIL ? TEMPFAIL_TTL : a->ttl < s->ttl_max ? a->ttl : s->ttl_max;
    struct buf b = { NULL, 0, 0, 0 };
    const char *argv[10];
    size_t argvlen[10];
    struct redis_cmd cmds[2];
    size_t n = 0;
    char ex[16];
    if (a->refs >= 0 && ttl > 0 && encode(q, a, ttl, &b) == 0) {
        snprintf(ex, sizeof ex, "%u", ttl);
        cmds[n] = cmd4(argv, argvlen, "SET", q->key, q->keylen, NULL, "EX");
        argv[2] = (const char *)b.p, argvlen[2] = b.len;
        argv[4] = ex, argvlen[4] = strlen(ex);
        argv[5] = "NX", argvlen[5] = 2;
        cmds[n++].argc = a->status == DNS_TEMPFAIL ? 6 : 5;
    }
    if (q->holder) cmds[n++] = cmd4(argv + 6, argvlen + 6, "DEL", q->lock, q->locklen, NULL, NULL);
    redisReply *rep[2];
    if (n && redis_exec(s->redis, cmds, n, rep) == 0) redis_replies_free(rep, n);
    q->holder = 0;
    free(b.p);
}

static struct dns_answer *shared_wait(struct dns_backend *be, void *h, int timeout_ms)
{
    struct shared *s = (struct shared *)be;
    struct rq *q = h;
    struct dns_answer *a;
    if (q->state == Q_BATCH) flush(s);
    if (q->state == Q_PEER && wait_peer(s, q, timeout_ms) < 0) return NULL;
    if (q->state == Q_DONE) {
        a = q->ans;
    } else {
        if (!(a = s->lower->wait(s->lower, q->lower, timeout_ms))) return NULL;
        store(s, q, a);
    }
    free(q);
    return a;
}

static void shared_cancel(struct dns_backend *be, void *h)
{
    struct shared *s = (struct shared *)be;
    struct rq *q = h;
    if (q->state == Q_BATCH) {
        *q->pprev = q->next;
        if (q->next) q->next->pprev = q->pprev;
    } else if (q->state == Q_LOWER) {
        s->lower->cancel(s->lower, q->lower);
        if (q->holder) {   /* let the processes waiting for our answer ask themselves */
            const char *argv[4];
            size_t argvlen[4];
            struct redis_cmd del = cmd4(argv, argvlen, "DEL", q->lock, q->locklen, NULL, NULL);
            redisReply *rep;
            if (redis_exec(s->redis, &del, 1, &rep) == 0) redis_replies_free(&rep, 1);
        }
    } else if (q->state == Q_DONE) {
        dns_answer_release(q->ans);
    }
    free(q);
}

static void shared_free(struct dns_backend *be)
{
    struct shared *s = (struct shared *)be;
    s->lower->free(s->lower);
    free(s);
}

struct dns_backend *dns_redis_backend_new(struct dns_backend *lower, struct redis_conn *redis, unsigned ttl_max,
                                          unsigned lock_ms, char *err, size_t errlen)
{
    struct shared *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    s->be.start = shared_start;
    s->be.wait = shared_wait;
    s->be.cancel = shared_cancel;
    s->be.free = shared_free;
    s->lower = lower;
    s->redis = redis;
    s->ttl_max = ttl_max ? ttl_max : TTL_MAX_DEFAULT;
    s->lock_ms = lock_ms ? lock_ms : 2000;
    return &s->be;
}

/* redis.c - one Redis connection per process: lazy, fail-open, backing off, following Sentinel */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "redis.h"

#define MAX_SENTINELS 16
#define HOST_MAX 256

enum kind { R_TCP, R_UNIX, R_SENTINEL };

struct endpoint {
    char host[HOST_MAX];
    int port;
};

struct redis_conn {
    enum kind kind;
    struct endpoint server;        /* R_TCP: configured; R_SENTINEL: the primary last discovered */
    char *path;                    /* R_UNIX */
    struct endpoint sentinels[MAX_SENTINELS];
    size_t nsentinels;
    char *master;                  /* Sentinel's name for the primary */
    char *user, *password;         /* for the server; NULL = no AUTH */
    char *sentinel_password;
    int db;
    char *prefix;
    unsigned connect_ms, io_ms, backoff_ms;
    void (*log)(const char *line);
    redisContext *c;
    pid_t pid;                     /* the process c belongs to */
    uint64_t retry_at;             /* monotonic ms: no Redis before this */
    int failing;                   /* a failure was logged and nothing has worked since */
    unsigned long round_trips;
    struct redis_deferred *deferred;   /* waiting to ride with the next round trip, in order */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static void say(const redis_conn *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const redis_conn *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->log) r->log(line);
    else fprintf(stderr, "authscore: %s\n", line);
}

/* ---- URL parsing ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A copy of s[0..len) with %XX decoded.  NULL on OOM or a bad escape (err says which). */
static char *decode(const char *s, size_t len, char *err, size_t errlen)
{
    char *out = malloc(len + 1), *o = out;
    if (!out) { snprintf(err, errlen, "redis: out of memory"); return NULL; }
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') { *o++ = s[i]; continue; }
        int a = i + 2 < len ? hexval(s[i + 1]) : -1, b = i + 2 < len ? hexval(s[i + 2]) : -1;
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            snprintf(err, errlen, "redis: bad %%-escape in URL");
            free(out);
            return NULL;
        }
        *o++ = (char)(a * 16 + b);
        i += 2;
    }
    *o = '\0';
    return out;
}

static int parse_int(const char *s, size_t len, long min, long max, long *out)
{
    char buf[16], *end;
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] < '0' || buf[0] > '9') return -1;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* "host[:port]" or "[v6][:port]" in s[0..len). */
static int parse_endpoint(const char *s, size_t len, struct endpoint *ep, char *err, size_t errlen)
{
    const char *host = s, *port = NULL;
    size_t hl = len;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) goto bad;
        host = s + 1;
        hl = (size_t)(close - s - 1);
        if (close + 1 < s + len) {
            if (close[1] != ':') goto bad;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon) {
            hl = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    long p = 6379;
    if (hl == 0 || hl >= HOST_MAX || (port && parse_int(port, (size_t)(s + len - port), 1, 65535, &p) < 0)) goto bad;
    memcpy(ep->host, host, hl);
    ep->host[hl] = '\0';
    ep->port = (int)p;
    return 0;
bad:
    snprintf(err, errlen, "redis: bad host:port \"%.*s\"", (int)(len < 200 ? len : 200), s);
    return -1;
}

/* "?db=N&password=P&sentinel_password=P" */
static int parse_query(redis_conn *r, const char *q, char *err, size_t errlen)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (!eq) goto bad;
        size_t kl = (size_t)(eq - q), vl = len - kl - 1;
        const char *v = eq + 1;
        if (kl == 2 && !strncmp(q, "db", 2)) {
            long db;
            if (parse_int(v, vl, 0, INT_MAX, &db) < 0) goto bad;
            r->db = (int)db;
        } else if (kl == 8 && !strncmp(q, "password", 8)) {
            free(r->password);
            if (!(r->password = decode(v, vl, err, errlen))) return -1;
        } else if (kl == 4 && !strncmp(q, "user", 4)) {
            free(r->user);
            if (!(r->user = decode(v, vl, err, errlen))) return -1;
        } else if (kl == 17 && !strncmp(q, "sentinel_password", 17)) {
            free(r->sentinel_password);
            if (!(r->sentinel_password = decode(v, vl, err, errlen))) return -1;
        } else {
            goto bad;
        }
        q += len + (q[len] == '&');
    }
    return 0;
bad:
    snprintf(err, errlen, "redis: bad URL parameter \"%.*s\" (known: db, password, user, sentinel_password)",
             (int)strcspn(q, "&") < 100 ? (int)strcspn(q, "&") : 100, q);
    return -1;
}

/* "[user]:password@" or "password@" at the front of s[0..len); returns the bytes used. */
static long parse_userinfo(redis_conn *r, const char *s, size_t len, char *err, size_t errlen)
{
    const char *at = memchr(s, '@', len);
    if (!at) return 0;
    size_t ul = (size_t)(at - s);
    const char *colon = memchr(s, ':', ul);
    if (colon) {
        if (colon > s && !(r->user = decode(s, (size_t)(colon - s), err, errlen))) return -1;
        if (!(r->password = decode(colon + 1, (size_t)(at - colon - 1), err, errlen))) return -1;
    } else if (!(r->password = decode(s, ul, err, errlen))) {
        return -1;
    }
    return (long)ul + 1;
}

static int parse_url(redis_conn *r, const char *url, char *err, size_t errlen)
{
    const char *q = strchr(url, '?');
    size_t len = q ? (size_t)(q - url) : strlen(url);
    if (!strncmp(url, "unix:", 5)) {
        const char *p = url + 5;
        while (len > 7 && p[0] == '/' && p[1] == '/') p++, len--;   /* unix:///path */
        if (p[0] != '/' || len - 5 < 2) {
            snprintf(err, errlen, "redis: \"%s\": want unix:/path/to/socket", url);
            return -1;
        }
        r->kind = R_UNIX;
        if (!(r->path = decode(p, len - (size_t)(p - url), err, errlen))) return -1;
        return q ? parse_query(r, q + 1, err, errlen) : 0;
    }
    int sentinel = !strncmp(url, "sentinel://", 11);
    if (!sentinel && strncmp(url, "redis://", 8)) {
        snprintf(err, errlen, "redis: \"%.200s\": want redis://, unix: or sentinel://", url);
        return -1;
    }
    const char *s = url + (sentinel ? 11 : 8);
    len -= (size_t)(s - url);
    const char *slash = memchr(s, '/', len);
    size_t auth_len = slash ? (size_t)(slash - s) : len;
    long used = parse_userinfo(r, s, auth_len, err, errlen);
    if (used < 0) return -1;
    s += used, len -= (size_t)used;
    slash = memchr(s, '/', len);
    size_t hosts = slash ? (size_t)(slash - s) : len;
    const char *tail = slash ? slash + 1 : NULL;
    size_t tail_len = slash ? len - hosts - 1 : 0;
    if (!sentinel) {
        r->kind = R_TCP;
        if (parse_endpoint(s, hosts, &r->server, err, errlen) < 0) return -1;
        if (tail_len) {
            long db;
            if (parse_int(tail, tail_len, 0, INT_MAX, &db) < 0) {
                snprintf(err, errlen, "redis: \"%.200s\": the database after / must be a number", url);
                return -1;
            }
            r->db = (int)db;
        }
    } else {
        r->kind = R_SENTINEL;
        while (hosts) {
            size_t one = strcspn(s, ",");
            if (one > hosts) one = hosts;
            if (r->nsentinels == MAX_SENTINELS) {
                snprintf(err, errlen, "redis: more than %d sentinels", MAX_SENTINELS);
                return -1;
            }
            if (parse_endpoint(s, one, &r->sentinels[r->nsentinels], err, errlen) < 0) return -1;
            if (r->sentinels[r->nsentinels].port == 6379 && !memchr(s, ':', one))
                r->sentinels[r->nsentinels].port = 26379;
            r->nsentinels++;
            s += one, hosts -= one;
            if (hosts) s++, hosts--;
        }
        if (!r->nsentinels || !tail_len) {
            snprintf(err, errlen, "redis: \"%.200s\": want sentinel://host:port,host:port/mastername", url);
            return -1;
        }
        if (!(r->master = decode(tail, tail_len, err, errlen))) return -1;
    }
    return q ? parse_query(r, q + 1, err, errlen) : 0;
}

redis_conn *redis_new(const struct redis_config *cfg, char *err, size_t errlen)
{
    redis_conn *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "redis: out of memory");
        return NULL;
    }
    if (!cfg->url || !*cfg->url) {
        snprintf(err, errlen, "redis: no URL");
        goto err;
    }
    if (parse_url(r, cfg->url, err, errlen) < 0) goto err;
    if (!(r->prefix = strdup(cfg->prefix ? cfg->prefix : "as:"))) {
        snprintf(err, errlen, "redis: out of memory");
        goto err;
    }
    r->connect_ms = cfg->connect_ms ? cfg->connect_ms : 50;
    r->io_ms = cfg->io_ms ? cfg->io_ms : 50;
    r->backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : 10000;
    r->log = cfg->log;
    r->pid = getpid();
    return r;
err:
    redis_free(r);
    return NULL;
}

void redis_free(redis_conn *r)
{
    if (!r) return;
    if (r->c) redisFree(r->c);   /* in a forked child too: closing sends nothing */
    free(r->path);
    free(r->master);
    free(r->user);
    free(r->password);
    free(r->sentinel_password);
    free(r->prefix);
    free(r);
}

const char *redis_prefix(const redis_conn *r)
{
    return r ? r->prefix : "as:";
}

unsigned long redis_stat_round_trips(const redis_conn *r)
{
    return r ? r->round_trips : 0;
}

/* ---- connection ---- */

static const char *where(const redis_conn *r, char *buf, size_t len)
{
    if (r->kind == R_UNIX) snprintf(buf, len, "%s", r->path);
    else if (r->kind == R_SENTINEL && !r->server.host[0]) snprintf(buf, len, "sentinel %s", r->master);
    else snprintf(buf, len, "%s:%d", r->server.host, r->server.port);
    return buf;
}

/* Drop the connection and stay away for backoff_ms; log once for this back-off. */
static void fail(redis_conn *r, const char *why)
{
    char w[HOST_MAX + 32];
    if (r->c) redisFree(r->c);
    r->c = NULL;
    r->retry_at = mono_ms() + r->backoff_ms;
    r->failing = 1;
    say(r, "redis: %s: %s; not using Redis for %u ms", where(r, w, sizeof w), why, r->backoff_ms);
}

/* A fresh context (or NULL) checked and given the I/O timeout; NULL with the reason in why. */
static redisContext *ready(const redis_conn *r, redisContext *c, char *why, size_t whylen)
{
    if (!c) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (c->err || redisSetTimeout(c, ms_tv(r->io_ms)) != REDIS_OK) {
        snprintf(why, whylen, "connect: %s", c->err ? c->errstr : "cannot set the I/O timeout");
        redisFree(c);
        return NULL;
    }
    return c;
}

static redisContext *open_tcp(const redis_conn *r, const struct endpoint *ep, char *why, size_t whylen)
{
    return ready(r, redisConnectWithTimeout(ep->host, ep->port, ms_tv(r->connect_ms)), why, whylen);
}

/* Append and read n commands on c with SIGPIPE held off: a peer that went away
 * must cost an error, not the process (a CLI, or an Exim that does not ignore it).
 * Returns 0, or -1 with the reason in why (replies read so far are freed). */
static int round_trip(redis_conn *r, redisContext *c, const struct redis_cmd *cmds, size_t n,
                      redisReply **replies, char *why, size_t whylen)
{
    sigset_t pipe, old, pending;
    struct timespec zero = { 0, 0 };
    int rc = 0;
    size_t got = 0;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    int had_pipe = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            snprintf(why, whylen, "%s", c->err ? c->errstr : "out of memory");
            rc = -1;
            goto out;
        }
    r->round_trips++;
    for (got = 0; got < n; got++) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK || !reply) {
            int timeout = c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable");
            snprintf(why, whylen, "%s", timeout ? "timeout" : c->err ? c->errstr : "no reply");
            rc = -1;
            goto out;
        }
        replies[got] = reply;
    }
out:
    if (!had_pipe)
        while (sigtimedwait(&pipe, NULL, &zero) > 0) {}
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) redis_replies_free(replies, got);
    return rc;
}

static int is_status(const redisReply *x, const char *s)
{
    return x && x->type == REDIS_REPLY_STATUS && !strcasecmp(x->str, s);
}

/* Ask the sentinels, in order, where the primary is; the first that answers moves
 * to the front (as the Sentinel client guidelines ask).  0, or -1 with why. */
static int discover(redis_conn *r, char *why, size_t whylen)
{
    snprintf(why, whylen, "no sentinel answered");
    for (size_t i = 0; i < r->nsentinels; i++) {
        struct endpoint s = r->sentinels[i];
        char one[200];
        redisContext *c = open_tcp(r, &s, one, sizeof one);
        if (!c) {
            snprintf(why, whylen, "sentinel %.100s:%d: %.150s", s.host, s.port, one);
            continue;
        }
        const char *auth[] = { "AUTH", r->sentinel_password };
        const char *get[] = { "SENTINEL", "get-master-addr-by-name", r->master };
        struct redis_cmd cmds[2];
        size_t n = 0;
        if (r->sentinel_password) cmds[n++] = (struct redis_cmd){ 2, auth, NULL };
        cmds[n++] = (struct redis_cmd){ 3, get, NULL };
        redisReply *rep[2] = { NULL, NULL };
        int ok = round_trip(r, c, cmds, n, rep, one, sizeof one) == 0;
        redisFree(c);
        redisReply *a = ok ? rep[n - 1] : NULL;
        if (a && a->type == REDIS_REPLY_ARRAY && a->elements == 2 && a->element[0]->type == REDIS_REPLY_STRING &&
            a->element[1]->type == REDIS_REPLY_STRING && a->element[0]->len < HOST_MAX) {
            struct endpoint p;
            long port;
            memcpy(p.host, a->element[0]->str, a->element[0]->len + 1);
            if (parse_int(a->element[1]->str, a->element[1]->len, 1, 65535, &port) == 0) {
                p.port = (int)port;
                r->server = p;
                memmove(&r->sentinels[1], &r->sentinels[0], i * sizeof s);
                r->sentinels[0] = s;
                redis_replies_free(rep, n);
                return 0;
            }
        }
        if (ok) snprintf(why, whylen, "sentinel %.100s:%d: %.150s", s.host, s.port,
                         a && a->type == REDIS_REPLY_ERROR ? a->str : "does not know the primary");
        else snprintf(why, whylen, "sentinel %.100s:%d: %.150s", s.host, s.port, one);
        redis_replies_free(rep, n);
    }
    return -1;
}

static redisContext *connect_server(redis_conn *r, char *why, size_t whylen)
{
    if (r->kind == R_UNIX)
        return ready(r, redisConnectUnixWithTimeout(r->path, ms_tv(r->connect_ms)), why, whylen);
    if (r->kind == R_SENTINEL && discover(r, why, whylen) < 0) return NULL;
    return open_tcp(r, &r->server, why, whylen);
}

/* One try: connect if need be, prepending AUTH, SELECT and (Sentinel) ROLE to the
 * first pipeline, so a new connection costs no round trip of its own.
 * Returns 0; -1 on a failure (why set); 1 when the server is no primary (any
 * longer): the caller rediscovers. */
static int attempt(redis_conn *r, const struct redis_cmd *cmds, size_t n, redisReply **replies, char *why, size_t whylen)
{
    struct redis_cmd pre[3];
    size_t npre = 0;
    char dbtext[16];
    const char *auth[] = { "AUTH", r->user ? r->user : r->password, r->password };
    const char *sel[] = { "SELECT", dbtext };
    const char *role[] = { "ROLE" };
    if (!r->c) {
        if (!(r->c = connect_server(r, why, whylen))) return -1;
        if (r->password) pre[npre++] = (struct redis_cmd){ r->user ? 3 : 2, auth, NULL };
        if (r->db) {
            snprintf(dbtext, sizeof dbtext, "%d", r->db);
            pre[npre++] = (struct redis_cmd){ 2, sel, NULL };
        }
        if (r->kind == R_SENTINEL) pre[npre++] = (struct redis_cmd){ 1, role, NULL };
    }
    size_t total = npre + n;
    struct redis_cmd *all = malloc(total * sizeof *all);
    redisReply **rep = calloc(total, sizeof *rep);
    int rc = -1;
    if (!all || !rep) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    memcpy(all, pre, npre * sizeof *pre);
    memcpy(all + npre, cmds, n * sizeof *cmds);
    if (round_trip(r, r->c, all, total, rep, why, whylen) < 0) goto out;
    for (size_t i = 0; i < npre; i++) {
        redisReply *x = rep[i];
        if (all[i].argv == role) {
            if (!x || x->type != REDIS_REPLY_ARRAY || x->elements < 1 || x->element[0]->type != REDIS_REPLY_STRING ||
                strcmp(x->element[0]->str, "master") != 0) {
                snprintf(why, whylen, "not the primary (failover?)");
                rc = 1;
                goto out;
            }
        } else if (!is_status(x, "OK")) {
            snprintf(why, whylen, "%s: %.200s", all[i].argv[0], x && x->type == REDIS_REPLY_ERROR ? x->str : "refused");
            goto out;
        }
    }
    rc = 0;
    for (size_t i = npre; i < total && rc == 0; i++) {
        const char *e = rep[i]->type == REDIS_REPLY_ERROR ? rep[i]->str : "";
        if (!strncmp(e, "NOAUTH", 6) || !strncmp(e, "LOADING", 7)) {   /* the server, not the command */
            snprintf(why, whylen, "%.200s", e);
            rc = -1;
        } else if (r->kind == R_SENTINEL && !strncmp(e, "READONLY", 8)) {
            snprintf(why, whylen, "the primary became a replica");
            rc = 1;
        }
    }
    if (rc == 0) {
        memcpy(replies, rep + npre, n * sizeof *rep);
        memset(rep + npre, 0, n * sizeof *rep);
    }
out:
    if (rep) redis_replies_free(rep, total);
    free(rep);
    free(all);
    return rc;
}

/* The caller's n commands followed by every deferred one, in *all, with room for
 * their replies in *rep (both the caller's to free).  Returns the number of
 * deferred commands taken; 0 when none wait, or on out-of-memory: they then wait
 * for the next round trip, or for redis_collect. */
static size_t ride_along(const redis_conn *r, const struct redis_cmd *cmds, size_t n,
                         struct redis_cmd **all, redisReply ***rep)
{
    size_t extra = 0;
    for (const struct redis_deferred *d = r->deferred; d; d = d->next) extra += d->n;
    if (!extra) return 0;
    struct redis_cmd *joined = malloc((n + extra) * sizeof *joined);
    redisReply **jrep = calloc(n + extra, sizeof *jrep);
    if (!joined || !jrep) {
        free(joined);
        free(jrep);
        return 0;
    }
    memcpy(joined, cmds, n * sizeof *cmds);
    size_t at = n;
    for (const struct redis_deferred *d = r->deferred; d; d = d->next) {
        memcpy(joined + at, d->cmds, d->n * sizeof *d->cmds);
        at += d->n;
    }
    *all = joined;
    *rep = jrep;
    return extra;
}

/* After the round trip that carried the deferred commands: hand out their replies
 * (rc 0) or their failure, and empty the queue. */
static void hand_out(redis_conn *r, int rc, redisReply **rep)
{
    struct redis_deferred *d, *next;
    for (d = r->deferred; d; d = next) {
        next = d->next;
        d->next = NULL;
        if (rc == 0) {
            memcpy(d->replies, rep, d->n * sizeof *rep);
            d->state = REDIS_DEFER_DONE;
        } else {
            d->state = REDIS_DEFER_FAILED;
        }
        rep += d->n;
    }
    r->deferred = NULL;
}

int redis_exec(redis_conn *r, const struct redis_cmd *cmds, size_t n, redisReply **replies)
{
    char why[300];
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (!r) return -1;
    if (r->pid != getpid()) {
        /* A forked child: the parent's socket is not ours to talk on. */
        if (r->c) redisFree(r->c);
        r->c = NULL;
        r->pid = getpid();
    }
    if (n == 0) return 0;
    if (r->retry_at && mono_ms() < r->retry_at) return -1;
    struct redis_cmd *joined = NULL;
    redisReply **jrep = NULL;
    size_t extra = ride_along(r, cmds, n, &joined, &jrep);
    const struct redis_cmd *all = extra ? joined : cmds;
    redisReply **rep = extra ? jrep : replies;
    int rc = attempt(r, all, n + extra, rep, why, sizeof why);
    if (rc == 1) {
        /* Sentinel: the server we knew is no primary now.  Ask the sentinels again,
         * once: replicas refuse writes, so nothing was applied twice. */
        redisFree(r->c);
        r->c = NULL;
        rc = attempt(r, all, n + extra, rep, why, sizeof why);
    }
    if (extra) {
        if (rc == 0) memcpy(replies, jrep, n * sizeof *jrep);
        hand_out(r, rc, jrep + n);
        free(joined);
        free(jrep);
    }
    if (rc != 0) {
        fail(r, why);
        return -1;
    }
    if (r->failing) {
        char w[HOST_MAX + 32];
        r->failing = 0;
        say(r, "redis: %s: working again", where(r, w, sizeof w));
    }
    r->retry_at = 0;
    return 0;
}

void redis_replies_free(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (replies[i]) freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
}

void redis_defer(redis_conn *r, struct redis_deferred *d)
{
    struct redis_deferred **tail = &r->deferred;
    while (*tail) tail = &(*tail)->next;
    for (size_t i = 0; i < d->n; i++) d->replies[i] = NULL;
    d->state = REDIS_DEFER_QUEUED;
    d->next = NULL;
    *tail = d;
}

void redis_withdraw(redis_conn *r, struct redis_deferred *d)
{
    for (struct redis_deferred **p = &r->deferred; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            d->next = NULL;
            return;
        }
}

int redis_collect(redis_conn *r, struct redis_deferred *d)
{
    if (d->state == REDIS_DEFER_QUEUED) {
        redis_withdraw(r, d);
        d->state = redis_exec(r, d->cmds, d->n, d->replies) == 0 ? REDIS_DEFER_DONE : REDIS_DEFER_FAILED;
    }
    return d->state == REDIS_DEFER_DONE ? 0 : -1;
}

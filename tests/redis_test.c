/* redis_test.c - redis.c and dns_redis.c against throwaway redis-server processes: URLs, AUTH and SELECT, back-off, stalls, fork, the value format, corrupted values, single flight, hit latency */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "dns.h"
#include "pipeline.h"
#include "redis.h"
#include "../plugin/dns_backend.h"

static char dir[64];
static char err[300];

/* ---- servers ---- */

struct server {
    pid_t pid;
    char sock[128];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static redisContext *admin(const struct server *s, const char *password)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (password) freeReplyObject(redisCommand(c, "AUTH %s", password));
    return c;
}

/* redis-server on a unix socket only (port 0), no persistence; extra: NULL-terminated. */
static int server_start(struct server *s, const char *name, const char *const *extra)
{
    const char *argv[32] = { "redis-server", "--port", "0", "--unixsocket", s->sock, "--save", "",
                             "--appendonly", "no", "--enable-debug-command", "local", "--dir", dir };
    int n = 13;
    snprintf(s->sock, sizeof s->sock, "%s/%s.sock", dir, name);
    for (; extra && *extra && n < 31; extra++) argv[n++] = *extra;
    argv[n] = NULL;
    unlink(s->sock);
    fflush(NULL);
    if ((s->pid = fork()) < 0) return -1;
    if (s->pid == 0) {
        char log[128];
        snprintf(log, sizeof log, "%s/%s.log", dir, name);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = admin(s, NULL);
        if (c) {
            redisFree(c);
            return 0;
        }
        pause_ms(50);
    }
    fprintf(stderr, "redis_test: redis-server did not start (is it installed? see %s/%s.log)\n", dir, name);
    return -1;
}

static void server_stop(struct server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static char *url_of(const struct server *s, const char *query)
{
    static char url[256];
    snprintf(url, sizeof url, "unix:%s%s%s", s->sock, query ? "?" : "", query ? query : "");
    return url;
}

/* ---- log capture ---- */

static int log_lines;
static char last_log[512];
static void capture(const char *line)
{
    log_lines++;
    snprintf(last_log, sizeof last_log, "%s", line);
}

static redis_conn *conn(const char *url, unsigned backoff_ms)
{
    struct redis_config cfg = { .url = url, .prefix = "t:", .connect_ms = 50, .io_ms = 50,
                                .backoff_ms = backoff_ms, .log = capture };
    redis_conn *r = redis_new(&cfg, err, sizeof err);
    if (!r) fprintf(stderr, "redis_new(%s): %s\n", url, err);
    return r;
}

static int cmd(redis_conn *r, redisReply **rep, int argc, const char **argv)
{
    struct redis_cmd c = { argc, argv, NULL };
    return redis_exec(r, &c, 1, rep);
}

/* ---- URLs ---- */

static void test_urls(void)
{
    static const char *good[] = {
        "redis://127.0.0.1:6379/0", "redis://:pw@127.0.0.1/3", "redis://user:p%40ss@[::1]:6380/2",
        "redis://localhost", "unix:/tmp/x.sock", "unix:///tmp/x.sock", "unix:/tmp/x.sock?db=5&password=a%40b",
        "sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster", "sentinel://h1,h2/m?password=x&db=2&sentinel_password=y",
        "redis://127.0.0.1:6379/0?password=x", NULL
    };
    static const char *bad[] = {
        "", "http://x", "redis://", "redis://host:0", "redis://host:99999", "redis://host:x", "redis://host/abc",
        "redis://host/-1", "unix:", "unix:relative.sock", "sentinel://h:1/", "sentinel:///m", "redis://h?foo=1",
        "redis://h?db=x", "redis://%zz@h", "redis://%00@h", "redis://[::1/0", "unix:/s?db", NULL
    };
    for (const char **u = good; *u; u++) {
        struct redis_config cfg = { .url = *u };
        redis_conn *r = redis_new(&cfg, err, sizeof err);
        if (!r) fprintf(stderr, "good URL refused: %s: %s\n", *u, err);
        CHECK(r != NULL);
        CHECK(redis_stat_round_trips(r) == 0);   /* lazy: nothing connects yet */
        redis_free(r);
    }
    for (const char **u = bad; *u; u++) {
        struct redis_config cfg = { .url = *u };
        err[0] = '\0';
        redis_conn *r = redis_new(&cfg, err, sizeof err);
        if (r) fprintf(stderr, "bad URL accepted: %s\n", *u);
        CHECK(r == NULL);
        CHECK(!strncmp(err, "redis: ", 7) && !strchr(err, '\n'));
        redis_free(r);
    }
    struct redis_config cfg = { .url = "redis://h" };
    redis_conn *r = redis_new(&cfg, err, sizeof err);
    CHECK_STR(redis_prefix(r), "as:");
    redis_free(r);
    CHECK(redis_exec(NULL, NULL, 0, NULL) == -1);
}

/* ---- the connection ---- */

static void test_pipeline(const struct server *s)
{
    redis_conn *r = conn(url_of(s, NULL), 300);
    const char *set[] = { "SET", "t:k", "v" }, *get[] = { "GET", "t:k" }, *incr[] = { "INCR", "t:n" };
    struct redis_cmd cmds[3] = { { 3, set, NULL }, { 2, get, NULL }, { 2, incr, NULL } };
    redisReply *rep[3];
    CHECK(redis_exec(r, cmds, 0, rep) == 0);
    CHECK(redis_stat_round_trips(r) == 0);
    CHECK(redis_exec(r, cmds, 3, rep) == 0);
    CHECK(redis_stat_round_trips(r) == 1);   /* three commands, one round trip */
    CHECK(rep[0]->type == REDIS_REPLY_STATUS);
    CHECK(rep[1]->type == REDIS_REPLY_STRING && !strcmp(rep[1]->str, "v"));
    CHECK(rep[2]->type == REDIS_REPLY_INTEGER && rep[2]->integer == 1);
    redis_replies_free(rep, 3);
    CHECK(rep[0] == NULL);
    const char *bogus[] = { "NOSUCHCOMMAND" };
    CHECK(cmd(r, rep, 1, bogus) == 0 && rep[0]->type == REDIS_REPLY_ERROR);   /* an error reply is a reply */
    redis_replies_free(rep, 1);
    CHECK(cmd(r, rep, 2, get) == 0);   /* and the connection stays usable */
    redis_replies_free(rep, 1);
    redis_free(r);
}

/* Deferred commands ride with the next round trip, or go alone when collected first. */
static void test_defer(const struct server *s)
{
    redis_conn *r = conn(url_of(s, NULL), 300);
    const char *set[] = { "SET", "t:d", "x" }, *get[] = { "GET", "t:d" }, *incr[] = { "INCR", "t:dn" };
    const char *ping[] = { "PING" };
    struct redis_cmd getc = { 2, get, NULL }, incrc = { 2, incr, NULL };
    redisReply *rep[1], *g[1], *i1[1], *i2[1];
    CHECK(cmd(r, rep, 3, set) == 0);
    redis_replies_free(rep, 1);

    unsigned long rt = redis_stat_round_trips(r);
    struct redis_deferred d1 = { &getc, 1, g, 0, NULL }, d2 = { &incrc, 1, i1, 0, NULL };
    redis_defer(r, &d1);
    redis_defer(r, &d2);
    CHECK(redis_stat_round_trips(r) == rt && d1.state == REDIS_DEFER_QUEUED);   /* nothing sent yet */
    CHECK(cmd(r, rep, 1, ping) == 0 && rep[0]->type == REDIS_REPLY_STATUS && !strcmp(rep[0]->str, "PONG"));
    redis_replies_free(rep, 1);
    CHECK(redis_stat_round_trips(r) == rt + 1);   /* the PING carried both */
    CHECK(d1.state == REDIS_DEFER_DONE && d2.state == REDIS_DEFER_DONE);
    CHECK(redis_collect(r, &d1) == 0 && redis_collect(r, &d2) == 0);
    CHECK(redis_stat_round_trips(r) == rt + 1);
    CHECK(g[0] && g[0]->type == REDIS_REPLY_STRING && !strcmp(g[0]->str, "x"));
    CHECK(i1[0] && i1[0]->type == REDIS_REPLY_INTEGER && i1[0]->integer == 1);
    redis_replies_free(g, 1);
    redis_replies_free(i1, 1);

    /* Nothing else went out: collecting sends it alone, once. */
    struct redis_deferred d3 = { &incrc, 1, i2, 0, NULL };
    redis_defer(r, &d3);
    CHECK(redis_collect(r, &d3) == 0 && i2[0]->integer == 2);
    CHECK(redis_collect(r, &d3) == 0 && redis_stat_round_trips(r) == rt + 2);
    redis_replies_free(i2, 1);

    /* Withdrawn: never sent. */
    redis_defer(r, &d3);
    redis_withdraw(r, &d3);
    CHECK(cmd(r, rep, 2, get) == 0);
    redis_replies_free(rep, 1);
    CHECK(d3.state == REDIS_DEFER_QUEUED && i2[0] == NULL);
    const char *getn[] = { "GET", "t:dn" };
    CHECK(cmd(r, rep, 2, getn) == 0 && rep[0]->type == REDIS_REPLY_STRING && !strcmp(rep[0]->str, "2"));
    redis_replies_free(rep, 1);

    /* A pipeline: deferred, carried, its replies read without a round trip of its own. */
    struct pipeline p, q;
    pipeline_init(&p);
    CHECK(pipeline_addl(&p, "INCR", "t:dn", (char *)NULL) == 0);
    CHECK(pipeline_addl(&p, "GET", "t:d", (char *)NULL) == 0);
    CHECK(pipeline_defer(&p, r) == 0);
    CHECK(pipeline_addl(&p, "GET", "t:d", (char *)NULL) == -1);   /* handed over: no more */
    rt = redis_stat_round_trips(r);
    CHECK(cmd(r, rep, 1, ping) == 0);
    redis_replies_free(rep, 1);
    CHECK(pipeline_exec(&p, r) == 0 && redis_stat_round_trips(r) == rt + 1);
    CHECK(pipeline_reply(&p, 0)->integer == 3 && !strcmp(pipeline_reply(&p, 1)->str, "x"));
    pipeline_free(&p);
    /* Freed while queued: withdrawn, so the next round trip does not touch freed memory. */
    pipeline_init(&q);
    pipeline_addl(&q, "INCR", "t:dn", (char *)NULL);
    CHECK(pipeline_defer(&q, r) == 0);
    pipeline_free(&q);
    CHECK(cmd(r, rep, 2, getn) == 0 && !strcmp(rep[0]->str, "3"));
    redis_replies_free(rep, 1);
    pipeline_init(&q);
    CHECK(pipeline_defer(&q, r) == 0 && pipeline_exec(&q, r) == 0);   /* empty: nothing queued nor sent */
    pipeline_free(&q);
    CHECK(pipeline_defer(&q, NULL) == -1);
    redis_free(r);

    /* Redis down: the carrying round trip fails for both; collecting then waits on nothing. */
    log_lines = 0;
    r = conn("unix:/nonexistent/redis.sock", 1000);
    struct redis_deferred d4 = { &getc, 1, g, 0, NULL };
    redis_defer(r, &d4);
    CHECK(cmd(r, rep, 1, ping) == -1 && d4.state == REDIS_DEFER_FAILED && g[0] == NULL);
    double t0 = now_ms();
    CHECK(redis_collect(r, &d4) == -1 && now_ms() - t0 < 5);
    redis_defer(r, &d4);   /* deferred while backing off: stays queued, then fails at once */
    CHECK(cmd(r, rep, 1, ping) == -1 && d4.state == REDIS_DEFER_QUEUED);
    CHECK(redis_collect(r, &d4) == -1 && d4.state == REDIS_DEFER_FAILED && now_ms() - t0 < 5);
    CHECK(log_lines == 1 && redis_stat_round_trips(r) == 0);
    redis_free(r);
}

static void test_auth_db(void)
{
    struct server s;
    const char *extra[] = { "--requirepass", "s3cret", NULL };
    if (server_start(&s, "auth", extra) < 0) { CHECK(0); return; }
    redis_conn *r = conn(url_of(&s, "db=5&password=s3cret"), 300);
    const char *set[] = { "SET", "t:k", "five" };
    redisReply *rep[1];
    CHECK(cmd(r, rep, 3, set) == 0 && rep[0]->type == REDIS_REPLY_STATUS);
    redis_replies_free(rep, 1);
    CHECK(redis_stat_round_trips(r) == 1);   /* AUTH and SELECT ride with the first command */
    redisContext *a = admin(&s, "s3cret");
    redisReply *x = redisCommand(a, "SELECT 5");
    freeReplyObject(x);
    x = redisCommand(a, "GET t:k");
    CHECK(x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "five"));
    freeReplyObject(x);
    freeReplyObject(redisCommand(a, "SELECT 0"));
    x = redisCommand(a, "EXISTS t:k");
    CHECK(x && x->type == REDIS_REPLY_INTEGER && x->integer == 0);
    freeReplyObject(x);
    redisFree(a);
    redis_free(r);

    log_lines = 0;
    r = conn(url_of(&s, "password=wrong"), 300);
    CHECK(cmd(r, rep, 3, set) == -1);
    CHECK(log_lines == 1 && strstr(last_log, "AUTH"));
    unsigned long rt = redis_stat_round_trips(r);
    CHECK(cmd(r, rep, 3, set) == -1);   /* backing off: not even tried */
    CHECK(redis_stat_round_trips(r) == rt && log_lines == 1);
    redis_free(r);

    log_lines = 0;
    r = conn(url_of(&s, NULL), 300);
    CHECK(cmd(r, rep, 3, set) == -1);   /* no password: NOAUTH */
    CHECK(log_lines == 1);
    redis_free(r);
    server_stop(&s);
}

static void test_kill_and_backoff(void)
{
    struct server s;
    if (server_start(&s, "kill", NULL) < 0) { CHECK(0); return; }
    redis_conn *r = conn(url_of(&s, NULL), 1000);
    const char *set[] = { "SET", "t:big", NULL };
    size_t big_len = 1 << 20;
    char *big = malloc(big_len);
    memset(big, 'x', big_len);
    set[2] = big;
    size_t lens[] = { 3, 5, big_len };
    struct redis_cmd bigset = { 3, set, lens };
    const char *ping[] = { "PING" };
    redisReply *rep[1];
    CHECK(cmd(r, rep, 1, ping) == 0);
    redis_replies_free(rep, 1);
    server_stop(&s);   /* SIGKILL: the socket we hold is dead */
    log_lines = 0;
    double t0 = now_ms();
    CHECK(redis_exec(r, &bigset, 1, rep) == -1);   /* writing to it raises SIGPIPE: held off */
    double spent = now_ms() - t0;
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    CHECK(spent < 200);
    CHECK(log_lines == 1);
    t0 = now_ms();
    CHECK(cmd(r, rep, 1, ping) == -1);   /* within the back-off: no attempt, no log */
    CHECK(now_ms() - t0 < 5 && log_lines == 1);
    if (server_start(&s, "kill", NULL) < 0) { CHECK(0); free(big); redis_free(r); return; }
    CHECK(cmd(r, rep, 1, ping) == -1);   /* Redis is back, but the back-off still runs */
    pause_ms(1050);
    CHECK(cmd(r, rep, 1, ping) == 0);
    redis_replies_free(rep, 1);
    CHECK(log_lines == 2 && strstr(last_log, "working again"));
    printf("redis killed: the first command failed in %.1f ms, then none tried for 1000 ms\n", spent);
    free(big);
    redis_free(r);
    server_stop(&s);
}

static void test_stall(void)
{
    struct server s;
    if (server_start(&s, "stall", NULL) < 0) { CHECK(0); return; }
    redis_conn *r = conn(url_of(&s, NULL), 200);
    const char *set[] = { "SET", "t:s", "1" }, *get[] = { "GET", "t:s" };
    redisReply *rep[1];
    CHECK(cmd(r, rep, 3, set) == 0);
    redis_replies_free(rep, 1);
    /* DEBUG SLEEP from another client: Redis stops answering anyone. */
    redisContext *a = admin(&s, NULL);
    int done = 0;
    redisAppendCommand(a, "DEBUG SLEEP 1");
    while (!done && redisBufferWrite(a, &done) == REDIS_OK) {}
    pause_ms(20);
    log_lines = 0;
    double t0 = now_ms();
    CHECK(cmd(r, rep, 2, get) == -1);
    double spent = now_ms() - t0;
    CHECK(spent >= 40 && spent < 300);   /* io_ms is 50 */
    CHECK(log_lines == 1 && strstr(last_log, "timeout"));
    t0 = now_ms();
    CHECK(cmd(r, rep, 2, get) == -1);   /* backing off: nothing waits */
    CHECK(now_ms() - t0 < 5);
    void *reply;
    redisGetReply(a, &reply);   /* the sleep is over */
    freeReplyObject(reply);
    redisFree(a);
    printf("redis stalled (DEBUG SLEEP): the command gave up after %.1f ms (io_ms 50)\n", spent);

    /* A stalled process (SIGSTOP) before the connection is made: connect succeeds
     * (the kernel queues it), the first read times out. */
    redis_free(r);
    r = conn(url_of(&s, NULL), 200);
    kill(s.pid, SIGSTOP);
    t0 = now_ms();
    CHECK(cmd(r, rep, 2, get) == -1);
    spent = now_ms() - t0;
    CHECK(spent < 300);
    kill(s.pid, SIGCONT);
    pause_ms(250);
    CHECK(cmd(r, rep, 2, get) == 0 && rep[0]->type == REDIS_REPLY_STRING && !strcmp(rep[0]->str, "1"));
    redis_replies_free(rep, 1);
    redis_free(r);
    server_stop(&s);
}

/* A forked child gets a connection of its own; the parent's is left alone. */
static void test_fork(const struct server *s)
{
    redis_conn *r = conn(url_of(s, NULL), 300);
    const char *id[] = { "CLIENT", "ID" };
    redisReply *rep[1];
    CHECK(cmd(r, rep, 2, id) == 0);
    long long parent = rep[0]->integer;
    redis_replies_free(rep, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = cmd(r, rep, 2, id) == 0 && rep[0]->integer != parent;
        if (ok) redis_replies_free(rep, 1);
        redis_free(r);
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(cmd(r, rep, 2, id) == 0 && rep[0]->integer == parent);
    redis_replies_free(rep, 1);
    redis_free(r);
}

/* ---- the DNS layer ---- */

static const char zone[] =
    "$ORIGIN example.com.\n"
    "$TTL 300\n"
    "@        IN SOA ns hostmaster 1 3600 600 86400 120\n"
    "@        IN NS  ns\n"
    "ns       IN A   192.0.2.53\n"
    "@        IN MX  10 mx\n"
    "@        IN MX  20 .\n"
    "mx       IN A   192.0.2.25\n"
    "mx       IN AAAA 2001:db8::25\n"
    "@        IN TXT \"v=spf1 \" \"mx -all\"\n"
    "nul      IN TXT \"a\\000b\" \"\\255\"\n"
    "long 86400 IN A 192.0.2.7\n"
    "zero 0   IN A   192.0.2.8\n"
    "25.2.0.192.in-addr.arpa. IN PTR mx.example.com.\n"
    "c1  60   IN CNAME c2\n"
    "c2       IN A   192.0.2.3\n"
    "x.sub    IN A   192.0.2.9\n"
    "many     IN A   192.0.2.101\n"
    "many     IN A   192.0.2.102\n"
    "many     IN A   192.0.2.103\n";

/* The zone backend, counting the questions that reach it. */
struct counter {
    struct dns_backend be;
    struct dns_backend *zone;
    unsigned long starts;
};

static void *c_start(struct dns_backend *be, const char *name, uint16_t type)
{
    struct counter *c = (struct counter *)be;
    c->starts++;
    return c->zone->start(c->zone, name, type);
}
static struct dns_answer *c_wait(struct dns_backend *be, void *h, int ms)
{
    return ((struct counter *)be)->zone->wait(((struct counter *)be)->zone, h, ms);
}
static void c_cancel(struct dns_backend *be, void *h)
{
    ((struct counter *)be)->zone->cancel(((struct counter *)be)->zone, h);
}
static void c_free(struct dns_backend *be) { (void)be; }

static struct counter lower;

static struct dns_backend *shared(redis_conn *r, unsigned ttl_max, unsigned lock_ms)
{
    struct dns_backend *b = dns_redis_backend_new(&lower.be, r, ttl_max, lock_ms, err, sizeof err);
    if (!b) fprintf(stderr, "dns_redis_backend_new: %s\n", err);
    return b;
}

static struct dns_answer *ask(struct dns_backend *b, const char *name, uint16_t type)
{
    void *h = b->start(b, name, type);
    return h ? b->wait(b, h, -1) : NULL;
}

static int same_answer(const struct dns_answer *a, const struct dns_answer *b)
{
    if (!a || !b || a->status != b->status || a->n != b->n) return 0;
    if (a->status == DNS_TEMPFAIL && strcmp(a->errstr, b->errstr)) return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct dns_rr *x = &a->rr[i], *y = &b->rr[i];
        if (x->type != y->type) return 0;
        switch (x->type) {
        case DNS_T_A: if (memcmp(&x->u.a, &y->u.a, 4)) return 0; break;
        case DNS_T_AAAA: if (memcmp(&x->u.aaaa, &y->u.aaaa, 16)) return 0; break;
        case DNS_T_MX: if (x->u.mx.pref != y->u.mx.pref || strcmp(x->u.mx.host, y->u.mx.host)) return 0; break;
        case DNS_T_TXT:
            if (x->u.txt.len != y->u.txt.len || memcmp(x->u.txt.data, y->u.txt.data, x->u.txt.len)) return 0;
            break;
        default: if (strcmp(x->u.name, y->u.name)) return 0;
        }
    }
    return 1;
}

static long long key_ttl(redisContext *a, const char *key)
{
    redisReply *x = redisCommand(a, "TTL %s", key);
    long long t = x && x->type == REDIS_REPLY_INTEGER ? x->integer : -3;
    freeReplyObject(x);
    return t;
}

static int key_exists(redisContext *a, const char *key)
{
    redisReply *x = redisCommand(a, "EXISTS %s", key);
    int e = x && x->type == REDIS_REPLY_INTEGER && x->integer == 1;
    freeReplyObject(x);
    return e;
}

/* Every type makes the trip through Redis unchanged; a fresh backend (a new
 * process) answers from Redis without asking DNS. */
static void test_roundtrip(redis_conn *r, redisContext *a)
{
    static const struct { const char *name; uint16_t type; enum dns_status st; } qs[] = {
        { "mx.example.com", DNS_T_A, DNS_OK }, { "mx.example.com", DNS_T_AAAA, DNS_OK },
        { "example.com", DNS_T_MX, DNS_OK }, { "example.com", DNS_T_TXT, DNS_OK },
        { "nul.example.com", DNS_T_TXT, DNS_OK }, { "25.2.0.192.in-addr.arpa", DNS_T_PTR, DNS_OK },
        { "example.com", DNS_T_NS, DNS_OK }, { "c1.example.com", DNS_T_A, DNS_OK },
        { "c1.example.com", DNS_T_CNAME, DNS_OK }, { "many.example.com", DNS_T_A, DNS_OK },
        { "nx.example.com", DNS_T_A, DNS_NXDOMAIN }, { "mx.example.com", DNS_T_TXT, DNS_NODATA },
        { "sub.example.com", DNS_T_A, DNS_NODATA }, { "slow.example.com", DNS_T_TXT, DNS_TEMPFAIL },
    };
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        struct dns_backend *b1 = shared(r, 0, 500), *b2 = shared(r, 0, 500);
        unsigned long before = lower.starts;
        struct dns_answer *x = ask(b1, qs[i].name, qs[i].type);
        CHECK(lower.starts == before + 1);
        struct dns_answer *y = ask(b2, qs[i].name, qs[i].type);
        if (lower.starts != before + 1 || !same_answer(x, y) || x->status != qs[i].st)
            fprintf(stderr, "round trip of %s/%u: status %d/%d, asked %lu times\n", qs[i].name, qs[i].type,
                    x ? (int)x->status : -1, y ? (int)y->status : -1, lower.starts - before);
        CHECK(lower.starts == before + 1);   /* the second came from Redis */
        CHECK(same_answer(x, y));
        CHECK(x->status == qs[i].st);
        CHECK(y->ttl <= x->ttl);
        dns_answer_release(x);
        dns_answer_release(y);
        b1->free(b1);
        b2->free(b2);
    }
    CHECK(key_exists(a, "t:dns:A:mx.example.com"));
    CHECK(key_exists(a, "t:dns:PTR:25.2.0.192.in-addr.arpa"));
    CHECK(!key_exists(a, "t:dnslock:A:mx.example.com"));   /* released after storing */
    long long t = key_ttl(a, "t:dns:A:nx.example.com");
    CHECK(t > 110 && t <= 120);              /* NXDOMAIN: the SOA minimum */
    t = key_ttl(a, "t:dns:TXT:mx.example.com");
    CHECK(t > 110 && t <= 120);              /* NODATA too */
    t = key_ttl(a, "t:dns:TXT:slow.example.com");
    CHECK(t > 0 && t <= 5);                  /* trouble: briefly */
    t = key_ttl(a, "t:dns:A:mx.example.com");
    CHECK(t > 290 && t <= 300);
    t = key_ttl(a, "t:dns:A:c1.example.com");
    CHECK(t > 50 && t <= 60);                /* the lowest TTL on the CNAME chain */

    /* TTLs are capped; a TTL of 0 means "do not cache"; names are keyed lowercase. */
    struct dns_backend *b = shared(r, 600, 500);
    dns_answer_release(ask(b, "LONG.Example.COM", DNS_T_A));
    t = key_ttl(a, "t:dns:A:long.example.com");
    CHECK(t > 590 && t <= 600);
    unsigned long before = lower.starts;
    dns_answer_release(ask(b, "zero.example.com", DNS_T_A));
    dns_answer_release(ask(b, "zero.example.com", DNS_T_A));
    CHECK(lower.starts == before + 2);
    CHECK(!key_exists(a, "t:dns:A:zero.example.com"));
    b->free(b);
}

/* Prefetched questions are looked up together: one round trip for all hits. */
static void test_batch(redis_conn *r)
{
    struct dns_backend *b = shared(r, 0, 500);
    unsigned long rt = redis_stat_round_trips(r), before = lower.starts;
    void *h1 = b->start(b, "mx.example.com", DNS_T_A);
    void *h2 = b->start(b, "mx.example.com", DNS_T_AAAA);
    void *h3 = b->start(b, "example.com", DNS_T_TXT);
    void *h4 = b->start(b, "example.com", DNS_T_MX);
    struct dns_answer *a3 = b->wait(b, h3, -1), *a1 = b->wait(b, h1, -1), *a2 = b->wait(b, h2, -1);
    b->cancel(b, h4);   /* answered, never collected */
    CHECK(redis_stat_round_trips(r) == rt + 1);
    CHECK(lower.starts == before);
    CHECK(a1->status == DNS_OK && a2->status == DNS_OK && a3->status == DNS_OK);
    dns_answer_release(a1);
    dns_answer_release(a2);
    dns_answer_release(a3);
    /* A read deferred by someone else (a check's reputation read) rides with the batch. */
    const char *hg[] = { "HGETALL", "t:rep:ip:192.0.2.1" };
    struct redis_cmd hgc = { 2, hg, NULL };
    redisReply *hrep[1];
    struct redis_deferred d = { &hgc, 1, hrep, 0, NULL };
    rt = redis_stat_round_trips(r);
    redis_defer(r, &d);
    h1 = b->start(b, "mx.example.com", DNS_T_A);
    h3 = b->start(b, "example.com", DNS_T_TXT);
    a1 = b->wait(b, h1, -1);
    a3 = b->wait(b, h3, -1);
    CHECK(redis_stat_round_trips(r) == rt + 1 && d.state == REDIS_DEFER_DONE);
    CHECK(redis_collect(r, &d) == 0 && hrep[0]->type == REDIS_REPLY_ARRAY && redis_stat_round_trips(r) == rt + 1);
    CHECK(a1->status == DNS_OK && a3->status == DNS_OK);
    redis_replies_free(hrep, 1);
    dns_answer_release(a1);
    dns_answer_release(a3);
    /* A miss costs: the batch read, the lock (with a second look), the store. */
    rt = redis_stat_round_trips(r);
    void *m1 = b->start(b, "fresh1.example.com", DNS_T_A);
    void *m2 = b->start(b, "fresh2.example.com", DNS_T_A);
    void *m3 = b->start(b, "fresh3.example.com", DNS_T_A);
    dns_answer_release(b->wait(b, m1, -1));
    CHECK(redis_stat_round_trips(r) == rt + 3);
    b->cancel(b, m2);   /* went to DNS holding the lock: the lock goes */
    dns_answer_release(b->wait(b, m3, -1));
    b->cancel(b, b->start(b, "fresh4.example.com", DNS_T_A));   /* never looked up */
    b->free(b);
}

static uint64_t fnv(const char *key, const unsigned char *v, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (; *key; key++) h = (h ^ (unsigned char)*key) * 1099511628211ull;
    for (size_t i = 0; i < len; i++) h = (h ^ v[i]) * 1099511628211ull;
    return h;
}

/* A value edited and re-summed, so that the checks behind the checksum are reached. */
static size_t resum(const char *key, unsigned char *v, size_t len)
{
    uint64_t h = fnv(key, v, len - 8);
    for (int i = 0; i < 8; i++) v[len - 8 + i] = (unsigned char)(h >> (56 - 8 * i));
    return len;
}

/* Whatever sits under our key, the answer is DNS's, and the bad value is replaced. */
static void test_corrupt(redis_conn *r, redisContext *a)
{
    const char *key = "t:dns:A:mx.example.com";
    struct dns_backend *b = shared(r, 0, 500);
    struct dns_answer *good = ask(b, "mx.example.com", DNS_T_A);
    b->free(b);
    redisReply *x = redisCommand(a, "GET %s", key);
    unsigned char orig[256];
    size_t olen = x && x->type == REDIS_REPLY_STRING && x->len <= sizeof orig ? x->len : 0;
    if (olen) memcpy(orig, x->str, olen);
    freeReplyObject(x);
    CHECK(olen > 28);
    x = redisCommand(a, "GET t:dns:A:ns.example.com");
    unsigned char other[256];
    size_t otherlen = x && x->type == REDIS_REPLY_STRING && x->len <= sizeof other ? x->len : 0;
    if (otherlen) memcpy(other, x->str, otherlen);
    freeReplyObject(x);
    if (!otherlen) {   /* not asked yet */
        b = shared(r, 0, 500);
        dns_answer_release(ask(b, "ns.example.com", DNS_T_A));
        b->free(b);
        x = redisCommand(a, "GET t:dns:A:ns.example.com");
        otherlen = x && x->type == REDIS_REPLY_STRING && x->len <= sizeof other ? x->len : 0;
        if (otherlen) memcpy(other, x->str, otherlen);
        freeReplyObject(x);
    }
    size_t bigl = 100000;
    unsigned char *big = malloc(bigl);
    memset(big, 'A', bigl);
    memcpy(big, orig, olen);
    int cases = 0, failed = 0;
    for (int k = 0;; k++) {
        unsigned char v[256];
        size_t len = olen;
        const unsigned char *val = v;
        int list = 0;
        memcpy(v, orig, olen);
        if (k < (int)olen) v[k] ^= 0x20;                                      /* every byte flipped in turn */
        else switch (k - (int)olen) {
        case 0: len = olen - 1; break;                                          /* truncated */
        case 1: len = olen - 9; break;
        case 2: len = 20; break;
        case 3: len = 1; break;
        case 4: val = other, len = otherlen; break;                             /* another key's value */
        case 5: val = big, len = bigl; break;                                   /* oversized */
        case 6: len = 0; break;                                                 /* empty */
        case 7: list = 1; break;                                                /* not a string */
        case 8: for (size_t i = 0; i < 200; i++) v[i] = (unsigned char)(i * 97 + 13); len = 200; break;
        case 9: v[2] = 7; resum(key, v, len); break;                            /* no such status */
        case 10: v[5] = 28; resum(key, v, len); break;                          /* another type */
        case 11: v[19] = 2; resum(key, v, len); break;                          /* more RRs than there are */
        case 12: v[19] = 0; resum(key, v, len); break;                          /* fewer */
        case 13: v[21] = 28; resum(key, v, len); break;                         /* RR of another type */
        case 14: v[27] = 5; resum(key, v, len); break;                          /* A with 5 octets */
        case 15: memset(v + 10, 0, 8); v[17] = 1; resum(key, v, len); break;    /* expired long ago */
        case 16: v[3] = 200; resum(key, v, len); break;                         /* error text too long */
        case 17: v[1] = 2; resum(key, v, len); break;                           /* a future format */
        case 18: memset(v + 10, 0xff, 8); resum(key, v, len); break;            /* expires never: ttl still capped */
        default: goto done;
        }
        if (k - (int)olen == 18) {   /* well-formed: answers from Redis, with no more than the stored TTL */
            freeReplyObject(redisCommand(a, "SET %s %b", key, v, len));
            b = shared(r, 0, 500);
            unsigned long before = lower.starts;
            struct dns_answer *got = ask(b, "mx.example.com", DNS_T_A);
            CHECK(lower.starts == before && same_answer(got, good) && got->ttl <= 300);
            dns_answer_release(got);
            b->free(b);
            cases++;
            continue;
        }
        freeReplyObject(redisCommand(a, "DEL %s", key));
        if (list) freeReplyObject(redisCommand(a, "RPUSH %s a b c", key));
        else freeReplyObject(redisCommand(a, "SET %s %b", key, val, len));
        b = shared(r, 0, 500);
        unsigned long before = lower.starts;
        struct dns_answer *got = ask(b, "mx.example.com", DNS_T_A);
        int ok = lower.starts == before + 1 && same_answer(got, good);
        dns_answer_release(got);
        b->free(b);
        b = shared(r, 0, 500);   /* replaced: the next process hits */
        got = ask(b, "mx.example.com", DNS_T_A);
        ok = ok && lower.starts == before + 1 && same_answer(got, good);
        dns_answer_release(got);
        b->free(b);
        if (!ok) {
            fprintf(stderr, "corrupt value case %d not handled\n", k);
            failed++;
        }
        cases++;
    }
done:
    CHECK(failed == 0);
    printf("%d corrupted values under a cache key: each ignored and replaced, same answers\n", cases);
    free(big);
    dns_answer_release(good);
}

/* Another process holds the question: wait for its answer instead of asking DNS. */
static void test_single_flight(redis_conn *r, const struct server *s, redisContext *a)
{
    const char *key = "t:dns:A:mx.example.com", *lock = "t:dnslock:A:mx.example.com";
    redisReply *x = redisCommand(a, "GET %s", key);
    CHECK(x && x->type == REDIS_REPLY_STRING);
    char *val = x && x->type == REDIS_REPLY_STRING ? malloc(x->len) : NULL;
    size_t vlen = val ? x->len : 0;
    if (val) memcpy(val, x->str, vlen);
    freeReplyObject(x);

    for (int scenario = 0; scenario < 3; scenario++) {
        freeReplyObject(redisCommand(a, "DEL %s", key));
        freeReplyObject(redisCommand(a, "SET %s 1 PX 10000", lock));
        fflush(NULL);
        pid_t pid = scenario < 2 ? fork() : -1;
        if (pid == 0) {   /* the other process: answers after 150 ms, or gives up without an answer */
            pause_ms(150);
            redisContext *c = admin(s, NULL);
            if (scenario == 0) freeReplyObject(redisCommand(c, "SET %s %b EX 300", key, val, vlen));
            freeReplyObject(redisCommand(c, "DEL %s", lock));
            redisFree(c);
            _exit(0);
        }
        struct dns_backend *b = shared(r, 0, 400);
        unsigned long before = lower.starts;
        double t0 = now_ms();
        struct dns_answer *got = ask(b, "mx.example.com", DNS_T_A);
        double spent = now_ms() - t0;
        CHECK(got && got->status == DNS_OK && got->n == 1);
        if (scenario == 0) CHECK(lower.starts == before && spent >= 100 && spent < 350);     /* its answer */
        if (scenario == 1) CHECK(lower.starts == before + 1 && spent >= 100 && spent < 350); /* it gave up */
        if (scenario == 2) CHECK(lower.starts == before + 1 && spent >= 380 && spent < 700); /* it died: lock_ms */
        dns_answer_release(got);
        b->free(b);
        if (pid > 0) waitpid(pid, NULL, 0);
    }
    freeReplyObject(redisCommand(a, "DEL %s", lock));
    free(val);
}

/* Without Redis (down, or backing off) every question goes to DNS: same answers. */
static void test_no_redis(void)
{
    char url[128];
    snprintf(url, sizeof url, "unix:%s/none.sock", dir);
    redis_conn *r = conn(url, 10000);
    log_lines = 0;
    struct dns_backend *b = shared(r, 0, 500);
    unsigned long before = lower.starts;
    struct dns_answer *x = ask(b, "mx.example.com", DNS_T_A), *y = ask(b, "example.com", DNS_T_MX);
    CHECK(x->status == DNS_OK && y->status == DNS_OK && lower.starts == before + 2);
    CHECK(log_lines == 1);   /* once per back-off */
    dns_answer_release(x);
    dns_answer_release(y);
    b->free(b);
    redis_free(r);
}

static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Figures: one cache hit (a fresh backend per lookup, like a fresh process) and one bare GET. */
static void test_latency(redis_conn *r, const char *how)
{
    enum { N = 2000 };
    struct dns_backend *b = shared(r, 0, 500);
    dns_answer_release(ask(b, "example.com", DNS_T_TXT));
    b->free(b);
    unsigned long rt = redis_stat_round_trips(r), before = lower.starts;
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        b = shared(r, 0, 500);
        dns_answer_release(ask(b, "example.com", DNS_T_TXT));
        b->free(b);
    }
    double hit = (now_ms() - t0) * 1000 / N;
    CHECK(lower.starts == before && redis_stat_round_trips(r) == rt + N);
    const char *get[] = { "GET", "t:dns:TXT:example.com" };
    redisReply *rep[1];
    t0 = now_ms();
    for (int i = 0; i < N; i++) {
        if (cmd(r, rep, 2, get) == 0) redis_replies_free(rep, 1);
    }
    double bare = (now_ms() - t0) * 1000 / N;
    printf("figure: Redis cache hit %.1f us per lookup (one GETRANGE round trip and decoding); bare GET %.1f us (%s)\n",
           hit, bare, how);
}

/* The same over TCP on loopback, with a password and a database: redis:// URLs. */
static void test_tcp(void)
{
    struct server s;
    char port[16], url[128];
    snprintf(port, sizeof port, "%d", free_port());
    const char *extra[] = { "--port", port, "--bind", "127.0.0.1", "--requirepass", "pw", NULL };
    if (server_start(&s, "tcp", extra) < 0) { CHECK(0); return; }
    snprintf(url, sizeof url, "redis://:pw@127.0.0.1:%s/2", port);
    redis_conn *r = conn(url, 300);
    test_latency(r, "TCP on loopback");
    redisContext *a = admin(&s, "pw");
    freeReplyObject(redisCommand(a, "SELECT 2"));
    CHECK(key_exists(a, "t:dns:TXT:example.com"));
    redisFree(a);
    redis_free(r);
    server_stop(&s);
}

static void test_remaining_ttl(redis_conn *r)
{
    struct dns_backend *b = shared(r, 0, 500);
    struct dns_answer *x = ask(b, "mx.example.com", DNS_T_AAAA);   /* stored by test_roundtrip */
    uint32_t first = x->ttl;
    dns_answer_release(x);
    b->free(b);
    pause_ms(1100);
    b = shared(r, 0, 500);
    x = ask(b, "mx.example.com", DNS_T_AAAA);
    CHECK(x->ttl < first && x->ttl >= first - 2);   /* counts down: never outlives the original */
    for (size_t i = 0; i < x->n; i++) CHECK(x->rr[i].ttl <= x->ttl);
    dns_answer_release(x);
    b->free(b);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/authscore-redis-test.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_urls();
    struct server s;
    if (server_start(&s, "main", NULL) < 0) return 1;
    test_pipeline(&s);
    test_defer(&s);
    test_fork(&s);
    test_auth_db();
    test_kill_and_backoff();
    test_stall();

    lower.be = (struct dns_backend){ c_start, c_wait, c_cancel, c_free };
    if (!(lower.zone = dns_zone_backend_new(err, sizeof err)) ||
        dns_zone_load(lower.zone, zone, strlen(zone), "zone", NULL, 1, NULL, err, sizeof err) < 0 ||
        dns_zone_timeout(lower.zone, "slow.example.com", 0) < 0) {
        fprintf(stderr, "zone: %s\n", err);
        return 1;
    }
    redis_conn *r = conn(url_of(&s, NULL), 300);
    redisContext *a = admin(&s, NULL);
    test_roundtrip(r, a);
    test_batch(r);
    test_corrupt(r, a);
    test_single_flight(r, &s, a);
    test_no_redis();
    test_latency(r, "unix socket");
    test_tcp();
    test_remaining_ttl(r);
    redisFree(a);
    redis_free(r);
    lower.zone->free(lower.zone);
    server_stop(&s);
    char cmdline[128];
    snprintf(cmdline, sizeof cmdline, "rm -rf %s", dir);
    if (system(cmdline) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_report();
}

/* reputation_test.c - reputation counters, their windows and clean-up, m.reputation and authscore.store, against a throwaway redis-server */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "message.h"
#include "redis_server.h"
#include "reputation.h"
#include "rules.h"

static struct test_redis srv;
static char err[300];
static const time_t T0 = 1796342400 + 12 * 3600;   /* noon UTC */

static int logged;
static void quiet(const char *line) { (void)line; logged++; }

static redis_conn *conn(const char *url)
{
    struct redis_config cfg = { .url = url, .prefix = "t:", .connect_ms = 200, .io_ms = 500, .backoff_ms = 1000,
                                .log = quiet };
    return redis_new(&cfg, err, sizeof err);
}

struct msg {
    struct as_envelope env;
    struct as_verdict v;
    struct as_dkim_sig sigs[2];
};

/* A verdict from literals (never cleared). */
static void msg_init(struct msg *m, const char *ip, const char *from, enum as_result spf, enum as_result dmarc)
{
    memset(m, 0, sizeof *m);
    m->env.ip = ip;
    m->env.mail_from = "bounce@shop.test";
    m->v.spf.result = spf;
    m->v.spf.domain = (char *)"shop.test";
    m->v.dmarc.result = dmarc;
    m->v.dmarc.from_domain = (char *)from;
}

static void add_sig(struct msg *m, const char *domain, enum as_result r)
{
    struct as_dkim_sig *s = &m->sigs[m->v.dkim.n];
    memset(s, 0, sizeof *s);
    s->domain = (char *)domain;
    s->result = r;
    m->v.dkim.sigs = m->sigs;
    m->v.dkim.n++;
}

/* What the engine does around the rules: read, then record with what the read saw. */
static void deliver(redis_conn *r, const struct reputation_config *cfg, struct msg *m, time_t now)
{
    struct reputation_view seen;
    struct pipeline p;
    reputation_read(r, cfg, &m->env, &m->v, now, &seen);
    pipeline_init(&p);
    CHECK(reputation_record(&p, redis_prefix(r), cfg, &m->env, &m->v, &seen, now) == 0);
    CHECK(pipeline_exec(&p, r) == 0);
    pipeline_free(&p);
    reputation_view_clear(&seen);
}

static long long hget(redisContext *c, const char *key, const char *field)
{
    redisReply *x = redisCommand(c, "HGET %s %s", key, field);
    long long v = x && x->type == REDIS_REPLY_STRING ? atoll(x->str) : -1;
    if (x) freeReplyObject(x);
    return v;
}

static long long hlen(redisContext *c, const char *key)
{
    redisReply *x = redisCommand(c, "HLEN %s", key);
    long long v = x && x->type == REDIS_REPLY_INTEGER ? x->integer : -1;
    if (x) freeReplyObject(x);
    return v;
}

static void test_identities(void)
{
    struct msg m;
    struct reputation_view v;
    msg_init(&m, "192.0.2.7", "shop.test", AS_PASS, AS_PASS);
    add_sig(&m, "Mail.Shop.Test", AS_PASS);
    add_sig(&m, "esp.test", AS_FAIL);
    reputation_read(NULL, NULL, &m.env, &m.v, T0, &v);
    CHECK(!v.available);
    CHECK_STR(v.one[REP_IP].id, "192.0.2.7");
    CHECK_STR(v.one[REP_NET].id, "192.0.2.0/24");
    CHECK_STR(v.one[REP_FROM].id, "shop.test");
    CHECK_STR(v.one[REP_SPF].id, "shop.test");
    CHECK_STR(v.one[REP_IP_FROM].id, "192.0.2.7|shop.test");
    CHECK_STR(v.one[REP_NET_FROM].id, "192.0.2.0/24|shop.test");
    CHECK(v.ndkim == 2);
    CHECK_STR(v.dkim[0].id, "mail.shop.test");
    CHECK(v.one[REP_FROM].count[REP_DMARC_PASS][REP_30D] == 0);
    reputation_view_clear(&v);

    msg_init(&m, "2001:DB8:5::25", NULL, AS_NONE, AS_NONE);
    reputation_read(NULL, NULL, &m.env, &m.v, T0, &v);
    CHECK_STR(v.one[REP_IP].id, "2001:db8:5::25");
    CHECK_STR(v.one[REP_NET].id, "2001:db8:5::/64");
    CHECK(!v.one[REP_FROM].present && !v.one[REP_IP_FROM].present);
    reputation_view_clear(&v);

    msg_init(&m, "::ffff:192.0.2.9", "shop.test", AS_NONE, AS_NONE);
    reputation_read(NULL, NULL, &m.env, &m.v, T0, &v);
    CHECK_STR(v.one[REP_IP].id, "192.0.2.9");
    reputation_view_clear(&v);

    msg_init(&m, "not an address", "shop.test", AS_NONE, AS_NONE);
    reputation_read(NULL, NULL, &m.env, &m.v, T0, &v);
    CHECK(!v.one[REP_IP].present && !v.one[REP_NET_FROM].present && v.one[REP_FROM].present);
    reputation_view_clear(&v);
}

/* Counts land in the right windows; expired buckets are deleted by the next write. */
static void test_windows(redis_conn *r, redisContext *adm)
{
    struct reputation_config cfg = { 48, 30 };
    struct msg m;
    msg_init(&m, "192.0.2.7", "shop.test", AS_PASS, AS_PASS);
    deliver(r, &cfg, &m, T0 - 25 * 3600);
    deliver(r, &cfg, &m, T0 - 2 * 3600);
    deliver(r, &cfg, &m, T0 - 2 * 3600);
    msg_init(&m, "203.0.113.66", "shop.test", AS_PASS, AS_FAIL);
    deliver(r, &cfg, &m, T0 - 3600);
    msg_init(&m, "192.0.2.7", "shop.test", AS_PASS, AS_PASS);
    deliver(r, &cfg, &m, T0);
    /* Buckets a host wrote long ago (a write would have deleted them by now). */
    char day40[32], hour40[32], day10[32], hour10[32];
    snprintf(day40, sizeof day40, "d%lld:mp", (long long)(T0 - 40 * 86400) / 86400);
    snprintf(hour40, sizeof hour40, "h%lld:mp", (long long)(T0 - 40 * 86400) / 3600);
    snprintf(day10, sizeof day10, "d%lld:mp", (long long)(T0 - 10 * 86400) / 86400);
    snprintf(hour10, sizeof hour10, "h%lld:n", (long long)(T0 - 10 * 86400) / 3600);
    freeReplyObject(redisCommand(adm, "HSET t:rep:from:shop.test %s 1 %s 1 %s 1 %s 1", day40, hour40, day10, hour10));

    struct reputation_view v;
    msg_init(&m, "192.0.2.7", "shop.test", AS_PASS, AS_PASS);
    reputation_read(r, &cfg, &m.env, &m.v, T0 + 60, &v);
    CHECK(v.available);
    const struct rep_entity *f = &v.one[REP_FROM];
    CHECK(f->count[REP_MESSAGES][REP_24H] == 4);         /* T0-2h twice, T0-1h, T0 */
    CHECK(f->count[REP_DMARC_PASS][REP_24H] == 3);
    CHECK(f->count[REP_DMARC_FAIL][REP_24H] == 1);
    CHECK(f->count[REP_DMARC_PASS][REP_30D] == 5);       /* 4 delivered, 10 days ago; not 40 days ago */
    CHECK(f->count[REP_DMARC_FAIL][REP_30D] == 1);
    CHECK(f->count[REP_SPF_PASS][REP_30D] == 5);
    CHECK(v.one[REP_IP_FROM].count[REP_DMARC_PASS][REP_30D] == 4);
    CHECK(v.one[REP_NET_FROM].count[REP_DMARC_FAIL][REP_30D] == 0);
    CHECK(v.one[REP_IP_FROM].present && !strcmp(v.one[REP_IP_FROM].id, "192.0.2.7|shop.test"));
    CHECK(f->nstale == 3);                                /* day and hour 40 days ago, hour 10 days ago */
    reputation_view_clear(&v);

    CHECK(hget(adm, "t:rep:from:shop.test", day40) == 1);
    CHECK(hget(adm, "t:rep:from:shop.test", hour10) == 1);
    deliver(r, &cfg, &m, T0 + 60);
    CHECK(hget(adm, "t:rep:from:shop.test", day40) == -1);
    CHECK(hget(adm, "t:rep:from:shop.test", hour40) == -1);
    CHECK(hget(adm, "t:rep:from:shop.test", hour10) == -1);
    CHECK(hget(adm, "t:rep:from:shop.test", day10) == 1);
    reputation_read(r, &cfg, &m.env, &m.v, T0 + 120, &v);
    CHECK(v.one[REP_FROM].nstale == 0);
    CHECK(v.one[REP_FROM].count[REP_DMARC_PASS][REP_30D] == 6);
    reputation_view_clear(&v);

    /* A shorter retention shortens the 30d window to what is kept. */
    struct reputation_config week = { 24, 7 };
    reputation_read(r, &week, &m.env, &m.v, T0 + 120, &v);
    CHECK(v.one[REP_FROM].count[REP_DMARC_PASS][REP_30D] == 5);   /* all but the one 10 days ago */
    reputation_view_clear(&v);

    redisReply *x = redisCommand(adm, "TTL t:rep:from:shop.test");
    CHECK(x && x->type == REDIS_REPLY_INTEGER && x->integer > 30 * 86400 && x->integer <= 31 * 86400);
    if (x) freeReplyObject(x);
}

static void test_dkim_and_rounds(redis_conn *r, redisContext *adm)
{
    struct reputation_config cfg = { 0, 0 };
    struct msg m;
    msg_init(&m, "198.51.100.9", "news.test", AS_FAIL, AS_PASS);
    add_sig(&m, "news.test", AS_PASS);
    add_sig(&m, "esp.test", AS_FAIL);
    unsigned long before = redis_stat_round_trips(r);
    deliver(r, &cfg, &m, T0);
    CHECK(redis_stat_round_trips(r) - before == 2);    /* one read, one write */
    char f[32];
    snprintf(f, sizeof f, "d%lld:kp", (long long)T0 / 86400);
    CHECK(hget(adm, "t:rep:dkim:news.test", f) == 1);
    CHECK(hget(adm, "t:rep:dkim:esp.test", f) == -1);
    CHECK(hget(adm, "t:rep:ip:198.51.100.9", f) == 1);   /* the message had a DKIM pass */
    snprintf(f, sizeof f, "d%lld:kf", (long long)T0 / 86400);
    CHECK(hget(adm, "t:rep:dkim:esp.test", f) == 1);
    CHECK(hget(adm, "t:rep:ip:198.51.100.9", f) == -1);
    snprintf(f, sizeof f, "d%lld:sf", (long long)T0 / 86400);
    CHECK(hget(adm, "t:rep:spf:shop.test", f) == 1);

    struct reputation_view v;
    reputation_read(r, &cfg, &m.env, &m.v, T0, &v);
    CHECK(v.ndkim == 2 && v.dkim[0].count[REP_DKIM_PASS][REP_24H] == 1 && v.dkim[1].count[REP_DKIM_FAIL][REP_24H] == 1);
    reputation_view_clear(&v);
}

/* Whatever is in Redis, reads never crash nor count garbage, and garbage is cleaned. */
static void test_corrupt(redis_conn *r, redisContext *adm)
{
    struct reputation_config cfg = { 0, 0 };
    long long d = (long long)T0 / 86400;
    char ok[32], neg[32], huge[32], future[32];
    snprintf(ok, sizeof ok, "d%lld:mp", d);
    snprintf(neg, sizeof neg, "d%lld:mf", d);
    snprintf(huge, sizeof huge, "d%lld:n", d);
    snprintf(future, sizeof future, "d%lld:mp", d + 40);
    freeReplyObject(redisCommand(adm, "DEL t:rep:from:bad.test"));
    freeReplyObject(redisCommand(adm, "HSET t:rep:from:bad.test %s 7 %s -5 %s 99999999999999999999999 "
                                      "%s 3 h12x:sp zz nonsense 1 d1:zz 4 %b 1",
                                 ok, neg, huge, future, "h\0x", (size_t)3));
    freeReplyObject(redisCommand(adm, "SET t:rep:ip:192.0.2.200 not-a-hash"));
    struct msg m;
    msg_init(&m, "192.0.2.200", "bad.test", AS_PASS, AS_PASS);
    struct reputation_view v;
    reputation_read(r, &cfg, &m.env, &m.v, T0, &v);
    CHECK(v.available);
    const struct rep_entity *f = &v.one[REP_FROM];
    CHECK(f->count[REP_DMARC_PASS][REP_30D] == 7);
    CHECK(f->count[REP_DMARC_FAIL][REP_30D] == 0);
    CHECK(f->count[REP_MESSAGES][REP_30D] == 0);
    CHECK(f->nstale == 4);           /* future, h12x:sp, nonsense, d1:zz (a field with a NUL byte is left alone) */
    CHECK(v.one[REP_IP].count[REP_MESSAGES][REP_30D] == 0);
    reputation_view_clear(&v);
    deliver(r, &cfg, &m, T0);
    CHECK(hlen(adm, "t:rep:from:bad.test") == 8);   /* ok, neg, huge, the NUL one; h n/sp/mp, d sp */
    reputation_read(r, &cfg, &m.env, &m.v, T0, &v);
    CHECK(v.one[REP_FROM].count[REP_DMARC_PASS][REP_30D] == 8);
    reputation_view_clear(&v);
}

static void test_unavailable(void)
{
    char url[200];
    snprintf(url, sizeof url, "unix:%s/none.sock", srv.dir);
    redis_conn *dead = conn(url);
    CHECK(dead != NULL);
    struct msg m;
    msg_init(&m, "192.0.2.7", "shop.test", AS_PASS, AS_PASS);
    struct reputation_view v;
    reputation_read(dead, NULL, &m.env, &m.v, T0, &v);
    CHECK(!v.available && v.one[REP_FROM].present && v.one[REP_FROM].count[REP_DMARC_PASS][REP_30D] == 0);
    CHECK(logged == 1);
    reputation_view_clear(&v);
    redis_free(dead);
}

static const char *reason_of(const struct as_score *s, const char *name)
{
    for (size_t i = 0; i < s->nsym; i++)
        if (!strcmp(s->sym[i].name, name)) return s->sym[i].reason;
    return NULL;
}

/* ---- the read started before the checks ---- */

static int same_entity(const struct rep_entity *a, const struct rep_entity *b)
{
    return a->present == b->present && !strcmp(a->id, b->id) && !memcmp(a->count, b->count, sizeof a->count) &&
           a->nstale == b->nstale;
}

/* The started read sees what a read after the checks sees. */
static int same_view(const struct reputation_view *a, const struct reputation_view *b)
{
    int same = a->available == b->available && a->ndkim == b->ndkim;
    for (size_t i = 0; i < REP_NKINDS; i++) same = same && same_entity(&a->one[i], &b->one[i]);
    for (size_t i = 0; same && i < a->ndkim; i++) same = same_entity(&a->dkim[i], &b->dkim[i]);
    return same;
}

static const char started_msg[] =
    "From: Shop News <news@Started.Test>\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; d=Mail.Started.Test;\r\n\ts=s1; h=from; bh=x; b=y\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; d = esp.test ; s=s2; h=from; bh=x; b=z\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; d=mail.started.test; s=s3; h=from; bh=x; b=w\r\n"
    "Subject: hello\r\n\r\nbody\r\n";

/* One round trip shared with the DNS questions (a PING stands in for them), the
 * same counts as reputation_read, and one more trip only for what the header did
 * not show. */
static void test_started(redis_conn *r)
{
    struct reputation_config cfg = { 0, 0 };
    struct message hdr;
    struct msg m;
    struct reputation_read rd;
    struct reputation_view want, got;
    const char *ping[] = { "PING" };
    struct redis_cmd pc = { 1, ping, NULL };
    redisReply *rep[1];
    CHECK(message_parse(&hdr, started_msg, strlen(started_msg)) == 0);
    msg_init(&m, "192.0.2.77", "started.test", AS_PASS, AS_PASS);
    m.env.mail_from = "bounce@Started.Test.";
    m.v.spf.domain = (char *)"Started.Test";
    add_sig(&m, "mail.started.test", AS_PASS);
    add_sig(&m, "esp.test", AS_FAIL);
    deliver(r, &cfg, &m, T0 - 3600);
    deliver(r, &cfg, &m, T0);
    reputation_read(r, &cfg, &m.env, &m.v, T0, &want);
    CHECK(want.available && want.one[REP_FROM].count[REP_MESSAGES][REP_24H] == 2);

    unsigned long rt = redis_stat_round_trips(r);
    reputation_read_start(r, &m.env, &hdr, &rd);
    CHECK(rd.n == 8);   /* ip, net, spf, from, ip|from, net|from, two DKIM domains */
    CHECK(redis_stat_round_trips(r) == rt);
    CHECK(redis_exec(r, &pc, 1, rep) == 0);
    redis_replies_free(rep, 1);
    reputation_read_finish(r, &rd, &cfg, &m.env, &m.v, T0, &got);
    CHECK(redis_stat_round_trips(r) == rt + 1);
    CHECK(same_view(&got, &want));
    reputation_view_clear(&got);

    /* Nothing else went out (every DNS answer was in the process's cache): alone, once. */
    rt = redis_stat_round_trips(r);
    reputation_read_start(r, &m.env, &hdr, &rd);
    reputation_read_finish(r, &rd, &cfg, &m.env, &m.v, T0, &got);
    CHECK(redis_stat_round_trips(r) == rt + 1 && same_view(&got, &want));
    reputation_view_clear(&got);

    /* The verdict names a DKIM domain the header did not (libopendkim read d= otherwise):
     * that one is read in one more trip, the rest came with the first. */
    struct msg other = m;
    other.v.dkim.sigs = other.sigs;
    other.sigs[1].domain = (char *)"elsewhere.test";
    struct reputation_view want2;
    reputation_read(r, &cfg, &other.env, &other.v, T0, &want2);
    rt = redis_stat_round_trips(r);
    reputation_read_start(r, &other.env, &hdr, &rd);
    CHECK(redis_exec(r, &pc, 1, rep) == 0);
    redis_replies_free(rep, 1);
    reputation_read_finish(r, &rd, &cfg, &other.env, &other.v, T0, &got);
    CHECK(redis_stat_round_trips(r) == rt + 2 && same_view(&got, &want2));
    reputation_view_clear(&got);
    reputation_view_clear(&want2);

    /* A check that fails drops its read: never sent, nothing left queued. */
    rt = redis_stat_round_trips(r);
    reputation_read_start(r, &m.env, &hdr, &rd);
    reputation_read_drop(&rd);
    reputation_read_drop(&rd);
    CHECK(redis_exec(r, &pc, 1, rep) == 0);
    redis_replies_free(rep, 1);
    CHECK(redis_stat_round_trips(r) == rt + 1);

    /* Redis down: nothing counted, nothing waits. */
    char url[200];
    snprintf(url, sizeof url, "unix:%s/none.sock", srv.dir);
    redis_conn *dead = conn(url);
    logged = 0;
    reputation_read_start(dead, &m.env, &hdr, &rd);
    CHECK(redis_exec(dead, &pc, 1, rep) == -1);
    reputation_read_finish(dead, &rd, &cfg, &m.env, &m.v, T0, &got);
    CHECK(!got.available && got.one[REP_FROM].present && got.one[REP_FROM].count[REP_MESSAGES][REP_24H] == 0);
    CHECK(logged == 1);
    reputation_view_clear(&got);
    redis_free(dead);

    /* No identity at all: nothing asked, nothing available (as before the split). */
    struct msg nobody;
    msg_init(&nobody, "not an address", NULL, AS_NONE, AS_NONE);
    nobody.v.spf.domain = NULL;
    rt = redis_stat_round_trips(r);
    reputation_read(r, &cfg, &nobody.env, &nobody.v, T0, &got);
    CHECK(!got.available && redis_stat_round_trips(r) == rt);
    reputation_view_clear(&got);

    /* Without Redis the start costs nothing. */
    reputation_read_start(NULL, &m.env, &hdr, &rd);
    CHECK(rd.n == 0);
    reputation_read_finish(NULL, &rd, &cfg, &m.env, &m.v, T0, &got);
    CHECK(!got.available && got.ndkim == 2);
    reputation_view_clear(&got);
    reputation_view_clear(&want);
    message_free(&hdr);
}

static const char engine_rules[] =
    "symbol \"REP\" { score = 1, rule = function(m)\n"
    "  local r = m.reputation\n"
    "  local d = r.dkim['example.net']\n"
    "  return true, 1, string.format('%s %d %d %d', tostring(r.available), r.from_domain.messages_24h,\n"
    "    r.net_from.messages_24h, d and d.messages_24h or -1)\n"
    "end }\n";

static const char engine_msg[] =
    "From: Alice <alice@example.net>\r\n"
    "To: bob@example.com\r\n"
    "Subject: one round trip\r\n"
    "Message-ID: <rt1@example.net>\r\n"
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.net; s=ed2026;\r\n"
    "\th=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n"
    "\r\n"
    "Hello.\r\n";

static as_engine *engine(const char *url, const char *rules_path, int record)
{
    static const char *servers[2];
    const char *files[] = { rules_path, NULL };
    servers[0] = getenv("AS_DNS");
    struct as_config cfg = { .authserv_id = "test", .dns_servers = servers, .redis_url = url, .redis_prefix = "e:",
                             .redis_io_ms = 1000, .rules = files, .no_record = !record, .log = quiet };
    as_engine *e = as_engine_new(&cfg, err, sizeof err);
    if (!e) fprintf(stderr, "as_engine_new: %s\n", err);
    return e;
}

/* One check as a new Exim process makes it: the result, its reputation as the rules saw
 * it, and the Redis round trips it took. */
static unsigned long check_once(as_engine *e, char *seen, size_t seenlen, struct as_verdict *v)
{
    struct as_envelope env = { "2001:db8:25::7", "mx.example.net", "alice@example.net" };
    unsigned long before = redis_stat_round_trips(as_engine_redis(e));
    seen[0] = '\0';
    if (as_check(e, &env, engine_msg, strlen(engine_msg), v) != 0) return 999;
    const char *why = reason_of(&v->score, "REP");
    snprintf(seen, seenlen, "%s", why ? why : "(no REP)");
    return redis_stat_round_trips(as_engine_redis(e)) - before;
}

/* The whole check, fresh engine, warm Redis: the DNS questions that wait on nothing
 * and the reputation read go in one round trip; the counters in one more. */
static void test_engine_round_trips(void)
{
    if (!getenv("AS_DNS")) {
        printf("reputation_test: engine round trips skipped: AS_DNS is not set (tests/run.sh starts NSD)\n");
        return;
    }
    char path[200], seen[200];
    snprintf(path, sizeof path, "%s/engine.lua", srv.dir);
    FILE *fp = fopen(path, "w");
    if (!fp) { CHECK(0); return; }
    fputs(engine_rules, fp);
    fclose(fp);
    struct as_verdict v;

    as_engine *e = engine(srv.url, path, 1);   /* a cold Redis: filled with answers and counters */
    if (!e) { CHECK(0); return; }
    CHECK(check_once(e, seen, sizeof seen, &v) < 999);
    CHECK(v.spf.result == AS_PASS && v.dmarc.result == AS_PASS && v.dkim.n == 1);
    CHECK_STR(seen, "true 0 0 0");
    as_verdict_clear(&v);
    as_engine_free(e);

    e = engine(srv.url, path, 0);              /* a new process, reading only */
    CHECK(check_once(e, seen, sizeof seen, &v) == 1);
    CHECK_STR(seen, "true 1 1 1");
    as_verdict_clear(&v);
    as_engine_free(e);

    e = engine(srv.url, path, 1);              /* a new process, as Exim runs it */
    CHECK(check_once(e, seen, sizeof seen, &v) == 2);   /* one read, one write */
    CHECK_STR(seen, "true 1 1 1");
    as_verdict_clear(&v);
    CHECK(check_once(e, seen, sizeof seen, &v) == 2);   /* DNS from the process's cache: the read goes alone */
    CHECK_STR(seen, "true 2 2 2");
    as_verdict_clear(&v);
    as_engine_free(e);

    /* Redis down: the same verdicts, no counts, one failure logged. */
    char url[200];
    snprintf(url, sizeof url, "unix:%s/none.sock", srv.dir);
    logged = 0;
    e = engine(url, path, 1);
    CHECK(check_once(e, seen, sizeof seen, &v) == 0);
    CHECK(v.spf.result == AS_PASS && v.dmarc.result == AS_PASS);
    CHECK_STR(seen, "false 0 0 0");
    CHECK(logged == 1);
    as_verdict_clear(&v);
    as_engine_free(e);
    unlink(path);
}

/* ---- the rules' side ---- */

static const char rule_file[] =
    "symbol \"REP\" { score = 1, rule = function(m)\n"
    "  local r = m.reputation\n"
    "  local wrote = pcall(function() r.from_domain.dmarc_pass_30d = 0 end)\n"
    "  local d = r.dkim['rules.test']\n"
    "  return true, 1, string.format('%s %d %d %d %s %s %s %s', tostring(r.available),\n"
    "    r.from_domain.dmarc_pass_30d, r.ip_from.dmarc_pass_30d, r.net.messages_24h,\n"
    "    tostring(r.net.id), tostring(wrote), d and tostring(d.dkim_pass_30d) or 'nodkim', tostring(r.spf_domain.spf_fail_24h))\n"
    "end }\n"
    "symbol \"STORE\" { score = 1, rule = function(m)\n"
    "  local a = authscore.store.incr('count:' .. m.ip, 600)\n"
    "  local b = authscore.store.incr('count:' .. m.ip, 600)\n"
    "  local s = authscore.store.set('note', 'hello world', 600)\n"
    "  return true, 1, string.format('%s %s %s %s %s', tostring(a), tostring(b), tostring(s),\n"
    "    tostring(authscore.store.get('note')), tostring(authscore.store.get('missing')))\n"
    "end }\n"
    "symbol \"STORE_BUDGET\" { score = 1, rule = function(m)\n"
    "  local n = 0\n"
    "  for i = 1, 40 do if authscore.store.set('k' .. i, i, 60) then n = n + 1 end end\n"
    "  return true, 1, tostring(n)\n"
    "end }\n"
    "symbol \"STORE_LIMITS\" { score = 1, rule = function(m)\n"
    "  local e1 = select(2, pcall(authscore.store.get, string.rep('k', 129)))\n"
    "  local e2 = select(2, pcall(authscore.store.set, 'v', string.rep('v', 1025), 60))\n"
    "  local e3 = select(2, pcall(authscore.store.incr, 'k', 0))\n"
    "  local e4 = select(2, pcall(authscore.store.get, 'has space'))\n"
    "  return true, 1, table.concat({ e1, e2, e3, e4 }, ' / ')\n"
    "end }\n";


static void test_rules(redis_conn *r, redisContext *adm)
{
    char path[200];
    snprintf(path, sizeof path, "%s/rep.lua", srv.dir);
    FILE *fp = fopen(path, "w");
    if (!fp) { CHECK(0); return; }
    fputs(rule_file, fp);
    fclose(fp);
    const char *files[] = { path, NULL };
    struct rules_config rc = { .files = files, .reject = 15, .quarantine = 8, .add_header = 4, .rule_ms = 2000 };
    rules *ru = rules_new(&rc, err, sizeof err);
    CHECK(ru != NULL);
    if (!ru) { fprintf(stderr, "%s\n", err); return; }

    struct reputation_config cfg = { 0, 0 };
    struct msg m;
    msg_init(&m, "100.64.7.50", "rules.test", AS_FAIL, AS_PASS);
    m.v.spf.domain = (char *)"rules.test";
    add_sig(&m, "rules.test", AS_PASS);
    time_t now = time(NULL);
    deliver(r, &cfg, &m, now);
    deliver(r, &cfg, &m, now);
    m.env.ip = "100.64.7.51";
    struct reputation_view v;
    reputation_read(r, &cfg, &m.env, &m.v, now, &v);
    struct rules_input in = { .env = &m.env, .verdict = &m.v, .reputation = &v, .redis = r };
    struct as_score s;
    CHECK(rules_eval(ru, &in, &s) == 0);
    CHECK_STR(reason_of(&s, "REP"), "true 2 0 2 100.64.7.0/24 false 2 2");
    CHECK_STR(reason_of(&s, "STORE"), "1 2 true hello world nil");
    CHECK_STR(reason_of(&s, "STORE_BUDGET"), "11");   /* 16 calls a message: 5 went to STORE */
    const char *lim = reason_of(&s, "STORE_LIMITS");
    CHECK(lim && strstr(lim, "key of 1 to 128 bytes") && strstr(lim, "at most 1024 bytes") &&
          strstr(lim, "ttl of 1 to") && strstr(lim, "without spaces"));
    as_score_clear(&s);
    reputation_view_clear(&v);
    redisReply *x = redisCommand(adm, "TTL t:store:count:100.64.7.51");
    CHECK(x && x->type == REDIS_REPLY_INTEGER && x->integer > 590 && x->integer <= 600);
    if (x) freeReplyObject(x);
    x = redisCommand(adm, "GET t:store:note");
    CHECK(x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "hello world"));
    if (x) freeReplyObject(x);

    /* No Redis: the same rules see zeros and nils, and nothing raises. */
    reputation_read(NULL, &cfg, &m.env, &m.v, now, &v);
    struct rules_input none = { .env = &m.env, .verdict = &m.v, .reputation = &v, .redis = NULL };
    CHECK(rules_eval(ru, &none, &s) == 0);
    CHECK_STR(reason_of(&s, "REP"), "false 0 0 0 100.64.7.0/24 false 0 0");
    CHECK_STR(reason_of(&s, "STORE"), "nil nil nil nil nil");
    CHECK_STR(reason_of(&s, "STORE_BUDGET"), "0");
    CHECK(reason_of(&s, "RULE_ERROR") == NULL);
    as_score_clear(&s);
    reputation_view_clear(&v);
    struct rules_input bare = { .env = &m.env, .verdict = &m.v };
    CHECK(rules_eval(ru, &bare, &s) == 0);
    CHECK_STR(reason_of(&s, "REP"), "false 0 0 0 nil false nodkim 0");
    as_score_clear(&s);
    rules_free(ru);
    unlink(path);
}

int main(void)
{
    test_identities();
    if (test_redis_start(&srv) != 0) return 1;
    redis_conn *r = conn(srv.url);
    redisContext *adm = test_redis_admin(&srv);
    CHECK(r && adm);
    if (r && adm) {
        test_windows(r, adm);
        test_dkim_and_rounds(r, adm);
        test_corrupt(r, adm);
        test_unavailable();
        test_started(r);
        test_engine_round_trips();
        test_rules(r, adm);
    }
    if (adm) redisFree(adm);
    redis_free(r);
    test_redis_stop(&srv);
    return check_report();
}

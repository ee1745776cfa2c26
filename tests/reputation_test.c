/* reputation_test.c - reputation counters, their windows and clean-up, m.reputation and authscore.store, against a throwaway redis-server */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
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

static const char *reason_of(const struct as_score *s, const char *name)
{
    for (size_t i = 0; i < s->nsym; i++)
        if (!strcmp(s->sym[i].name, name)) return s->sym[i].reason;
    return NULL;
}

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
        test_rules(r, adm);
    }
    if (adm) redisFree(adm);
    redis_free(r);
    test_redis_stop(&srv);
    return check_report();
}

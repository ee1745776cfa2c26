/* dns_test.c - unit tests of the DNS cache, budget and zone backend (no network) */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dns.h"
#include "../plugin/dns_backend.h"

static uint64_t fake_ms = 1000000;
static uint64_t fake_clock(void *arg) { (void)arg; return fake_ms; }

static const char *none[] = { NULL };
static char err[256];

static const char zone[] =
    "$ORIGIN example.com.\n"
    "$TTL 300\n"
    "@        IN SOA ns hostmaster 1 3600 600 86400 120\n"
    "@        IN NS  ns\n"
    "ns       IN A   192.0.2.53\n"
    "@        IN MX  10 mx\n"
    "@        IN MX  20 .\n"
    "mx   30  IN A   192.0.2.25\n"
    "mx       IN A   192.0.2.26\n"
    "         IN AAAA 2001:db8::25\n"                  /* the owner of the line before */
    "@        IN TXT \"v=spf1 \" \"mx -all\"\n"
    "nul      IN TXT \"a\\000b\" \"\\255\"\n"
    "empty    IN TXT \"\"\n"
    "25.2.0.192.in-addr.arpa. IN PTR mx.example.com.\n"
    "c1  60   IN CNAME c2\n"
    "c2  40   IN CNAME c3.example.com.\n"
    "c3  50   IN A   192.0.2.3\n"
    "cnx      IN CNAME gone\n"
    "loop1    IN CNAME loop2\n"
    "loop2    IN CNAME loop1\n"
    "a.b.ent  IN A   192.0.2.4\n"
    "*.w      IN A   192.0.2.5\n"
    "*.w      IN TXT \"wild\"\n"
    "x.w      IN TXT \"not wild\"\n"
    "c.ent2.w IN A   192.0.2.6\n"
    "UPPER    IN A   192.0.2.7\n";

static dns_ctx *zone_ctx(unsigned cache_max)
{
    struct dns_config c = { .zones = none, .cache_max = cache_max, .budget_ms = 100 };
    dns_ctx *d = dns_new(&c, err, sizeof err);
    if (!d) { fprintf(stderr, "dns_new: %s\n", err); exit(1); }
    dns_set_clock(d, fake_clock, NULL);
    if (dns_zone_add_text(d, zone, NULL, err, sizeof err) < 0) { fprintf(stderr, "zone: %s\n", err); exit(1); }
    return d;
}

/* Status of one question, the answer released. */
static enum dns_status status(dns_ctx *d, const char *name, uint16_t type)
{
    struct dns_answer *a = dns_query(d, name, type);
    enum dns_status s = a->status;
    dns_answer_release(a);
    return s;
}

static const char *ip4(const struct dns_rr *r, char *buf)
{
    return inet_ntop(AF_INET, &r->u.a, buf, INET_ADDRSTRLEN);
}

static void test_types(void)
{
    dns_ctx *d = zone_ctx(0);
    char b[64];
    struct dns_answer *a = dns_query(d, "mx.example.com", DNS_T_A);
    CHECK(a->status == DNS_OK && a->n == 2);
    CHECK_STR(ip4(&a->rr[0], b), "192.0.2.25");
    CHECK_STR(ip4(&a->rr[1], b), "192.0.2.26");
    CHECK(a->rr[0].ttl == 30 && a->rr[1].ttl == 300 && a->ttl == 30);   /* $TTL, and the lower TTL wins */
    dns_answer_release(a);

    a = dns_query(d, "mx.example.com", DNS_T_AAAA);
    CHECK(a->status == DNS_OK && a->n == 1 && a->rr[0].type == DNS_T_AAAA);
    CHECK_STR(inet_ntop(AF_INET6, &a->rr[0].u.aaaa, b, sizeof b), "2001:db8::25");
    dns_answer_release(a);

    a = dns_query(d, "example.com", DNS_T_MX);
    CHECK(a->status == DNS_OK && a->n == 2);
    CHECK(a->n == 2 && a->rr[0].u.mx.pref == 10 && a->rr[1].u.mx.pref == 20);
    CHECK_STR(a->n == 2 ? a->rr[0].u.mx.host : NULL, "mx.example.com");   /* relative to $ORIGIN */
    CHECK_STR(a->n == 2 ? a->rr[1].u.mx.host : NULL, "");                  /* null MX */
    dns_answer_release(a);

    a = dns_query(d, "example.com.", DNS_T_TXT);                              /* trailing dot */
    CHECK(a->status == DNS_OK && a->n == 1 && a->rr[0].u.txt.len == 14);
    CHECK_STR(a->n ? a->rr[0].u.txt.data : NULL, "v=spf1 mx -all");          /* strings joined */
    dns_answer_release(a);

    a = dns_query(d, "nul.example.com", DNS_T_TXT);
    CHECK(a->n == 1 && a->rr[0].u.txt.len == 4 && memcmp(a->rr[0].u.txt.data, "a\0b\xff", 4) == 0);
    dns_answer_release(a);
    a = dns_query(d, "empty.example.com", DNS_T_TXT);
    CHECK(a->status == DNS_OK && a->n == 1 && a->rr[0].u.txt.len == 0 && a->rr[0].u.txt.data[0] == '\0');
    dns_answer_release(a);

    a = dns_query(d, "25.2.0.192.in-addr.arpa", DNS_T_PTR);
    CHECK(a->n == 1);
    CHECK_STR(a->n ? a->rr[0].u.name : NULL, "mx.example.com");
    dns_answer_release(a);
    a = dns_query(d, "example.com", DNS_T_NS);
    CHECK_STR(a->n ? a->rr[0].u.name : NULL, "ns.example.com");
    dns_answer_release(a);
    a = dns_query(d, "example.com", DNS_T_SOA);
    CHECK(a->status == DNS_OK && a->n == 1 && a->rr[0].type == DNS_T_SOA);
    dns_answer_release(a);

    /* Names are case-insensitive both ways, and share one cache entry. */
    unsigned long q = dns_stat_queries(d);
    CHECK(status(d, "upper.EXAMPLE.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "UPPER.example.COM.", DNS_T_A) == DNS_OK);
    CHECK(dns_stat_queries(d) == q + 1);
    dns_free(d);
}

static void test_negative(void)
{
    dns_ctx *d = zone_ctx(0);
    struct dns_answer *a = dns_query(d, "nope.example.com", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN && a->n == 0 && a->ttl == 120);   /* SOA minimum (RFC 2308) */
    dns_answer_release(a);
    a = dns_query(d, "mx.example.com", DNS_T_TXT);
    CHECK(a->status == DNS_NODATA && a->ttl == 120);
    dns_answer_release(a);
    CHECK(status(d, "b.ent.example.com", DNS_T_A) == DNS_NODATA);    /* empty non-terminals exist */
    CHECK(status(d, "ent.example.com", DNS_T_TXT) == DNS_NODATA);
    CHECK(status(d, "c.b.ent.example.com", DNS_T_A) == DNS_NXDOMAIN);
    CHECK(status(d, "nowhere.test", DNS_T_A) == DNS_NXDOMAIN);       /* outside every zone */

    /* The SOA's own TTL bounds the negative TTL, 3600 caps it, 60 without an SOA. */
    CHECK(dns_zone_add_text(d, "$ORIGIN low.test.\n@ 30 IN SOA ns hm 1 2 3 4 600\n"
                               "$ORIGIN high.test.\n@ IN SOA ns hm 1 2 3 4 86400\n"
                               "only.soa-less.test. IN A 192.0.2.1\n", NULL, err, sizeof err) == 0);
    a = dns_query(d, "x.low.test", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN && a->ttl == 30);
    dns_answer_release(a);
    a = dns_query(d, "x.high.test", DNS_T_A);
    CHECK(a->ttl == 3600);
    dns_answer_release(a);
    a = dns_query(d, "x.soa-less.test", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN && a->ttl == 60);
    dns_answer_release(a);

    /* Names no server could be asked about do not exist; nothing is asked. */
    unsigned long q = dns_stat_queries(d);
    char longlabel[80];
    memset(longlabel, 'a', 64);
    strcpy(longlabel + 64, ".example.com");
    CHECK(status(d, longlabel, DNS_T_A) == DNS_NXDOMAIN);
    CHECK(status(d, "a..example.com", DNS_T_A) == DNS_NXDOMAIN);
    CHECK(status(d, ".example.com", DNS_T_A) == DNS_NXDOMAIN);
    CHECK(status(d, NULL, DNS_T_A) == DNS_NXDOMAIN);
    CHECK(dns_stat_queries(d) == q);
    longlabel[63] = '\0';                                            /* 63 octets is fine */
    CHECK(status(d, longlabel, DNS_T_A) == DNS_NXDOMAIN && dns_stat_queries(d) == q + 1);
    dns_free(d);
}

static void test_wildcard_cname(void)
{
    dns_ctx *d = zone_ctx(0);
    char b[64];
    struct dns_answer *a = dns_query(d, "anything.w.example.com", DNS_T_A);
    CHECK(a->status == DNS_OK && a->n == 1);
    CHECK_STR(a->n ? ip4(&a->rr[0], b) : NULL, "192.0.2.5");
    dns_answer_release(a);
    CHECK(status(d, "deep.er.w.example.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "x.w.example.com", DNS_T_A) == DNS_NODATA);      /* an existing name is never wild */
    a = dns_query(d, "x.w.example.com", DNS_T_TXT);
    CHECK_STR(a->n ? a->rr[0].u.txt.data : NULL, "not wild");
    dns_answer_release(a);
    CHECK(status(d, "ent2.w.example.com", DNS_T_A) == DNS_NODATA);   /* nor an empty non-terminal */
    CHECK(status(d, "w.example.com", DNS_T_A) == DNS_NODATA);

    a = dns_query(d, "c1.example.com", DNS_T_A);
    CHECK(a->status == DNS_OK && a->n == 1 && a->ttl == 40);         /* lowest TTL along the chain */
    CHECK_STR(a->n ? ip4(&a->rr[0], b) : NULL, "192.0.2.3");
    dns_answer_release(a);
    a = dns_query(d, "c1.example.com", DNS_T_CNAME);                   /* asking for the CNAME itself */
    CHECK(a->status == DNS_OK && a->n == 1);
    CHECK_STR(a->n ? a->rr[0].u.name : NULL, "c2.example.com");
    dns_answer_release(a);
    CHECK(status(d, "c1.example.com", DNS_T_TXT) == DNS_NODATA);
    CHECK(status(d, "cnx.example.com", DNS_T_A) == DNS_NXDOMAIN);     /* the target's fate */
    a = dns_query(d, "loop1.example.com", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "CNAME loop");
    dns_answer_release(a);

    /* Exactly 8 hops are followed, the 9th is too many. */
    char text[1024] = "$ORIGIN chain.test.\n";
    for (int i = 0; i < 9; i++) sprintf(text + strlen(text), "h%d IN CNAME h%d\n", i, i + 1);
    strcat(text, "h9 IN A 192.0.2.9\n");
    CHECK(dns_zone_add_text(d, text, NULL, err, sizeof err) == 0);
    CHECK(status(d, "h1.chain.test", DNS_T_A) == DNS_OK);
    CHECK(status(d, "h0.chain.test", DNS_T_A) == DNS_TEMPFAIL);
    dns_free(d);
}

static void test_cache(void)
{
    dns_ctx *d = zone_ctx(0);
    unsigned long q = dns_stat_queries(d);
    struct dns_answer *a = dns_query(d, "ns.example.com", DNS_T_A), *b;
    CHECK(a->refs == 2);                                  /* the cache's and ours */
    b = dns_query(d, "ns.example.com", DNS_T_A);
    CHECK(a == b && a->refs == 3 && dns_stat_queries(d) == q + 1);
    dns_answer_release(b);
    fake_ms += 299 * 1000;                                /* TTL 300 */
    b = dns_query(d, "ns.example.com", DNS_T_A);
    CHECK(a == b && dns_stat_queries(d) == q + 1);
    dns_answer_release(b);
    fake_ms += 1000;
    b = dns_query(d, "ns.example.com", DNS_T_A);
    CHECK(a != b && dns_stat_queries(d) == q + 2 && b->status == DNS_OK);
    CHECK(a->refs == 1 && a->n == 1);                     /* expired, still ours and intact */
    dns_answer_release(a);
    dns_answer_release(b);

    /* Negative answers live for the SOA minimum (120 s). */
    q = dns_stat_queries(d);
    CHECK(status(d, "gone.example.com", DNS_T_A) == DNS_NXDOMAIN);
    fake_ms += 119 * 1000;
    CHECK(status(d, "gone.example.com", DNS_T_A) == DNS_NXDOMAIN && dns_stat_queries(d) == q + 1);
    fake_ms += 1000;
    CHECK(status(d, "gone.example.com", DNS_T_A) == DNS_NXDOMAIN && dns_stat_queries(d) == q + 2);

    /* A timeout is remembered a few seconds only. */
    CHECK(dns_zone_add_timeout(d, "slow.example.com") == 0);
    q = dns_stat_queries(d);
    CHECK(status(d, "slow.example.com", DNS_T_TXT) == DNS_TEMPFAIL);
    CHECK(status(d, "slow.example.com", DNS_T_TXT) == DNS_TEMPFAIL && dns_stat_queries(d) == q + 1);
    fake_ms += 5000;
    CHECK(status(d, "slow.example.com", DNS_T_TXT) == DNS_TEMPFAIL && dns_stat_queries(d) == q + 2);

    /* Adding zone data flushes the cache; answers held survive it. */
    a = dns_query(d, "ns.example.com", DNS_T_A);
    CHECK(dns_zone_add_text(d, "new.example.com. IN A 192.0.2.99\n", NULL, err, sizeof err) == 0);
    CHECK(a->refs == 1 && a->n == 1 && a->status == DNS_OK);
    dns_answer_release(a);
    CHECK(status(d, "new.example.com", DNS_T_A) == DNS_OK);

    /* Prefetch asks once; the query that follows is a hit. */
    q = dns_stat_queries(d);
    dns_prefetch(d, "c3.example.com", DNS_T_A);
    dns_prefetch(d, "c3.example.com", DNS_T_A);
    CHECK(dns_stat_queries(d) == q + 1);
    CHECK(status(d, "c3.example.com", DNS_T_A) == DNS_OK && dns_stat_queries(d) == q + 1);
    dns_free(d);

    /* A bounded cache evicts the least recently used. */
    d = zone_ctx(3);
    q = dns_stat_queries(d);
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "mx.example.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "c3.example.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_OK);        /* ns is now the most recent */
    CHECK(status(d, "upper.example.com", DNS_T_A) == DNS_OK);     /* evicts mx */
    CHECK(dns_stat_queries(d) == q + 4);
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_OK && dns_stat_queries(d) == q + 4);
    CHECK(status(d, "mx.example.com", DNS_T_A) == DNS_OK && dns_stat_queries(d) == q + 5);
    a = dns_query(d, "mx.example.com", DNS_T_A);
    dns_free(d);
    CHECK(a->refs == 1 && a->n == 2);                     /* outlives the resolver */
    dns_answer_release(a);
}

static void test_budget(void)
{
    dns_ctx *d = zone_ctx(0);                              /* budget_ms = 100 */
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_OK);  /* no budget before dns_budget_start */
    dns_budget_start(d);
    fake_ms += 99;
    CHECK(status(d, "mx.example.com", DNS_T_A) == DNS_OK);
    fake_ms += 1;
    unsigned long q = dns_stat_queries(d);
    struct dns_answer *a = dns_query(d, "c3.example.com", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "budget");
    dns_answer_release(a);
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_TEMPFAIL);   /* cached, but the budget is spent */
    dns_prefetch(d, "c3.example.com", DNS_T_A);
    CHECK(dns_stat_queries(d) == q);
    dns_budget_start(d);                                   /* the next message */
    CHECK(status(d, "ns.example.com", DNS_T_A) == DNS_OK);
    CHECK(status(d, "c3.example.com", DNS_T_A) == DNS_OK);
    dns_free(d);
}

static void test_timeouts(void)
{
    dns_ctx *d = zone_ctx(0);
    /* RFC 7208 suite: records listed for the name answer, other types time out. */
    CHECK(dns_zone_add_text(d, "t.example.net. IN TXT \"v=spf1 -all\"\n", NULL, err, sizeof err) == 0);
    CHECK(dns_zone_add_timeout(d, "t.example.net") == 0);
    CHECK(dns_zone_add_timeout(d, "alltimeout.example.net.") == 0);
    CHECK(status(d, "t.example.net", DNS_T_TXT) == DNS_OK);
    struct dns_answer *a = dns_query(d, "t.example.net", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "timeout");
    dns_answer_release(a);
    CHECK(status(d, "ALLTIMEOUT.example.net", DNS_T_TXT) == DNS_TEMPFAIL);
    CHECK(status(d, "below.alltimeout.example.net", DNS_T_TXT) == DNS_NXDOMAIN);
    CHECK(status(d, "example.net", DNS_T_TXT) == DNS_NODATA);
    CHECK(dns_zone_add_timeout_type(d, "t.example.net", DNS_T_TXT) == 0);
    CHECK(status(d, "t.example.net", DNS_T_TXT) == DNS_TEMPFAIL);
    CHECK(dns_zone_add_timeout(d, "bad..name") == -1);
    dns_free(d);
}

static void test_loading(void)
{
    const char *dir = getenv("TESTDATA") ? getenv("TESTDATA") : "tests/data";
    char sloppy[512], junk[512], missing[512];
    snprintf(sloppy, sizeof sloppy, "%s/dns/sloppy.zone", dir);
    snprintf(junk, sizeof junk, "%s/dns/junk.zone", dir);
    snprintf(missing, sizeof missing, "%s/dns/missing.zone", dir);

    /* Third-party zones are sloppy: bad lines are skipped and reported. */
    const char *z1[] = { sloppy, NULL };
    struct dns_config c = { .zones = z1 };
    dns_ctx *d = dns_new(&c, err, sizeof err);
    CHECK(d != NULL);
    if (!d) { fprintf(stderr, "%s\n", err); return; }
    const char *w = dns_zone_warning(d);
    CHECK(w && strstr(w, "sloppy.zone:6:") && strstr(w, "(2 bad lines skipped)"));
    CHECK(status(d, "example.org", DNS_T_TXT) == DNS_OK);              /* owner without its dot */
    struct dns_answer *a = dns_query(d, "sel._domainkey.example.org", DNS_T_TXT);
    CHECK_STR(a->n ? a->rr[0].u.txt.data : NULL, "v=DKIM1; k=rsa; p=MIIBAQAB");
    dns_answer_release(a);
    CHECK(status(d, "mail.example.org", DNS_T_MX) == DNS_OK);
    CHECK(status(d, "bad.example.org", DNS_T_A) == DNS_NXDOMAIN);
    dns_free(d);

    const char *z2[] = { junk, NULL }, *z3[] = { missing, NULL };
    c.zones = z2;
    CHECK(dns_new(&c, err, sizeof err) == NULL && strstr(err, "junk.zone: no records") && strstr(err, "junk.zone:2:"));
    c.zones = z3;
    CHECK(dns_new(&c, err, sizeof err) == NULL && strstr(err, "missing.zone") && strstr(err, "No such file"));

    /* Text from tests is strict: one bad line refuses it all, naming the line. */
    d = zone_ctx(0);
    CHECK(dns_zone_add_text(d, "ok.test. IN A 192.0.2.1\nbroken.test. IN A 1.2.3\n", NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "zone text:2:") != NULL);
    CHECK(status(d, "ok.test", DNS_T_A) == DNS_NXDOMAIN);
    CHECK(dns_zone_add_text(d, "www IN A 192.0.2.80\n", "origin.test", err, sizeof err) == 0);
    CHECK(status(d, "www.origin.test", DNS_T_A) == DNS_OK);
    /* Duplicates collapse as in an RRset. */
    CHECK(dns_zone_add_text(d, "dup.test. 10 IN A 192.0.2.1\ndup.test. 20 IN A 192.0.2.1\n", NULL, err, sizeof err) == 0);
    a = dns_query(d, "dup.test", DNS_T_A);
    CHECK(a->n == 1);
    dns_answer_release(a);
    dns_free(d);

    /* The network backend takes no zone text. */
    struct dns_config n = { .servers = (const char *[]){ "127.0.0.1:1", NULL } };
    d = dns_new(&n, err, sizeof err);
    CHECK(d != NULL);
    if (d) CHECK(dns_zone_add_text(d, "x. IN A 192.0.2.1\n", NULL, err, sizeof err) == -1);
    if (d) CHECK(dns_zone_add_timeout(d, "x") == -1);
    dns_free(d);
    n.servers = (const char *[]){ "dns.example:53", NULL };
    CHECK(dns_new(&n, err, sizeof err) == NULL && strstr(err, "dns.example"));
    n.servers = (const char *[]){ "[::1]:5353", "::1", "192.0.2.1", NULL };
    d = dns_new(&n, err, sizeof err);
    CHECK(d != NULL);
    dns_free(d);
    n.servers = (const char *[]){ "192.0.2.1:99999", NULL };
    CHECK(dns_new(&n, err, sizeof err) == NULL);
}

int main(void)
{
    test_types();
    test_negative();
    test_wildcard_cname();
    test_cache();
    test_budget();
    test_timeouts();
    test_loading();
    return check_report();
}

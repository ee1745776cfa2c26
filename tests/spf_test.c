/* spf_test.c - spf_check against hostile records, macros and DNS; each case bounded in time */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "dns.h"
#include "spf.h"

struct sbuf {
    char *s;
    size_t len, cap;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap) cap *= 2;
        if (!(b->s = realloc(b->s, cap))) { fprintf(stderr, "out of memory\n"); exit(2); }
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(struct sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void repeat(struct sbuf *b, const char *s, int n)
{
    while (n-- > 0) puts_(b, s);
}

/* A TXT RR line, data cut into 255-octet strings, NUL and odd octets as \DDD. */
static void txt_rr(struct sbuf *z, const char *name, const char *data, size_t len)
{
    char esc[8];
    puts_(z, name);
    puts_(z, " 300 IN TXT");
    size_t i = 0;
    do {
        size_t end = len - i > 255 ? i + 255 : len;
        puts_(z, " \"");
        for (; i < end; i++) {
            unsigned char c = (unsigned char)data[i];
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                snprintf(esc, sizeof esc, "\\%03u", c);
                puts_(z, esc);
            } else {
                put(z, (const char *)&c, 1);
            }
        }
        puts_(z, "\"");
    } while (i < len);
    puts_(z, "\n");
}

static dns_ctx *zone(const char *text)
{
    static const char *none[] = { NULL };
    struct dns_config cfg = { .zones = none };
    char err[256];
    dns_ctx *d = dns_new(&cfg, err, sizeof err);
    if (!d || dns_zone_add_text(d, text, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "zone: %s\n", err);
        exit(2);
    }
    return d;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double last_elapsed;

static struct as_spf check(dns_ctx *d, const char *ip, const char *helo, const char *mail_from)
{
    struct spf_request req = { .ip = ip, .helo = helo, .mail_from = mail_from, .default_exp = "DEFAULT" };
    struct as_spf out;
    double t0 = now_s();
    dns_budget_start(d);
    if (spf_check(d, &req, &out) != 0) { fprintf(stderr, "spf_check: out of memory\n"); exit(2); }
    last_elapsed = now_s() - t0;
    return out;
}

static int has(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

static void test_basics(void)
{
    dns_ctx *d = zone(
        "ok.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all\"\n"
        "ok.test. 300 IN TXT \"unrelated text\"\n"
        "mx.ok.test. 300 IN A 192.0.2.10\n"
        "hard.test. 300 IN TXT \"v=spf1 -all\"\n"
        "two.test. 300 IN TXT \"v=spf1 +all\"\n"
        "two.test. 300 IN TXT \"V=SPF1 -all\"\n"
        "nul.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1\\000 -all\"\n"
        "tab.test. 300 IN TXT \"v=spf1\\009-all\"\n"
        "helo.test. 300 IN TXT \"v=spf1 a -all\"\n"
        "helo.test. 300 IN A 198.51.100.7\n");
    struct as_spf r = check(d, "192.0.2.9", "mx.ok.test", "alice@ok.test");
    CHECK(r.result == AS_PASS);
    CHECK_STR(r.domain, "ok.test");
    CHECK_STR(r.mail_from, "alice@ok.test");
    CHECK(r.helo == 0 && r.explanation == NULL);
    CHECK(has(r.reason, "ip4:192.0.2.0/24") && has(r.reason, "ok.test"));
    as_spf_clear(&r);

    r = check(d, "203.0.113.1", "mx.ok.test", "alice@ok.test");
    CHECK(r.result == AS_SOFTFAIL && r.explanation == NULL);
    as_spf_clear(&r);

    r = check(d, "203.0.113.1", NULL, "bob@hard.test");
    CHECK(r.result == AS_FAIL);
    CHECK_STR(r.explanation, "DEFAULT");
    CHECK_STR(r.reason, "mechanism -all matched in hard.test");
    as_spf_clear(&r);

    r = check(d, "203.0.113.1", NULL, "bob@two.test");   /* v=spf1 is case-insensitive: two records */
    CHECK(r.result == AS_PERMERROR && has(r.reason, "2 SPF records"));
    as_spf_clear(&r);

    r = check(d, "192.0.2.1", NULL, "x@nul.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "0x00"));
    as_spf_clear(&r);

    r = check(d, "192.0.2.1", NULL, "x@tab.test");        /* "v=spf1" then TAB: not an SPF record */
    CHECK(r.result == AS_NONE);
    as_spf_clear(&r);

    r = check(d, "192.0.2.1", NULL, "x@nothing.test");
    CHECK(r.result == AS_NONE && has(r.reason, "no SPF record"));
    as_spf_clear(&r);

    /* HELO identity: null sender checks postmaster@helo */
    r = check(d, "198.51.100.7", "helo.test", "");
    CHECK(r.result == AS_PASS && r.helo == 1);
    CHECK_STR(r.mail_from, "postmaster@helo.test");
    CHECK_STR(r.domain, "helo.test");
    as_spf_clear(&r);
    r = check(d, "198.51.100.8", "helo.test", NULL);
    CHECK(r.result == AS_FAIL && r.helo == 1);
    as_spf_clear(&r);
    r = check(d, "198.51.100.7", "localhost", "");        /* not a multi-label name */
    CHECK(r.result == AS_NONE && r.helo == 1);
    as_spf_clear(&r);
    r = check(d, "198.51.100.7", NULL, NULL);
    CHECK(r.result == AS_NONE && r.domain == NULL);
    as_spf_clear(&r);
    r = check(d, "198.51.100.7", "[198.51.100.7]", "");
    CHECK(r.result == AS_NONE);
    as_spf_clear(&r);

    /* no local part: postmaster; a bad client address is no check at all */
    r = check(d, "192.0.2.9", NULL, "@ok.test");
    CHECK(r.result == AS_PASS);
    CHECK_STR(r.mail_from, "postmaster@ok.test");
    as_spf_clear(&r);
    r = check(d, "not-an-ip", NULL, "a@ok.test");
    CHECK(r.result == AS_NONE);
    as_spf_clear(&r);

    /* the built-in explanation when the receiver gives none */
    struct spf_request req = { .ip = "203.0.113.1", .mail_from = "bob@hard.test" };
    CHECK(spf_check(d, &req, &r) == 0);
    CHECK(r.result == AS_FAIL && has(r.explanation, "hard.test") && has(r.explanation, "203.0.113.1"));
    as_spf_clear(&r);
    dns_free(d);
}

static void test_ipv6(void)
{
    dns_ctx *d = zone(
        "six.test. 300 IN TXT \"v=spf1 ip6:2001:db8:1::/48 a:host.six.test/24//64 -all\"\n"
        "host.six.test. 300 IN AAAA 2001:db8:2:3::1\n"
        "host.six.test. 300 IN A 198.51.100.1\n"
        "mapped.test. 300 IN TXT \"v=spf1 ip6:::ffff:192.0.2.1 ip4:192.0.2.1 -all\"\n"
        "nib.test. 300 IN TXT \"v=spf1 exists:%{ir}.%{v}.nib.test -all\"\n"
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.nib.test. 300 IN A 127.0.0.2\n"
        "exp6.test. 300 IN TXT \"v=spf1 -all exp=why.exp6.test\"\n"
        "why.exp6.test. 300 IN TXT \"%{c} via %{v} is refused for %{d}\"\n");
    struct as_spf r = check(d, "2001:db8:1:ffff::5", NULL, "a@six.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "2001:db8:2:3:ffff::1", NULL, "a@six.test");   /* a: with //64 */
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "2001:db8:2:4::1", NULL, "a@six.test");
    CHECK(r.result == AS_FAIL);
    as_spf_clear(&r);
    r = check(d, "198.51.100.200", NULL, "a@six.test");          /* a: with /24 for IPv4 */
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    /* an IPv4-mapped client is IPv4: ip6:::ffff:... does not match it, ip4: does */
    r = check(d, "::ffff:192.0.2.1", NULL, "a@mapped.test");
    CHECK(r.result == AS_PASS && has(r.reason, "ip4:192.0.2.1"));
    as_spf_clear(&r);
    r = check(d, "2001:db8::1", NULL, "a@nib.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "2001:DB8::CAFE", NULL, "a@exp6.test");
    CHECK_STR(r.explanation, "2001:db8::cafe via ip6 is refused for exp6.test");
    as_spf_clear(&r);
    dns_free(d);
}

static void test_lengths(void)
{
    struct sbuf z = { 0 }, rec = { 0 };
    char term[40];
    /* 600 bytes, over one 512-octet UDP answer and two TXT strings: still a record */
    puts_(&rec, "v=spf1");
    for (int i = 0; rec.len < 600; i++) {
        snprintf(term, sizeof term, " ip4:198.51.%d.%d", i / 200, i % 200);
        puts_(&rec, term);
    }
    puts_(&rec, " ip4:192.0.2.77 -all");
    txt_rr(&z, "long.test.", rec.s, rec.len);
    /* ip4 mechanisms past 4096 bytes */
    rec.len = 0;
    puts_(&rec, "v=spf1");
    for (int i = 0; rec.len < 5000; i++) {
        snprintf(term, sizeof term, " ip4:10.%d.%d.1", i / 250, i % 250);
        puts_(&rec, term);
    }
    txt_rr(&z, "huge.test.", rec.s, rec.len);
    /* 1000 "a" mechanisms fit in 2006 bytes: the 10-term limit stops them */
    rec.len = 0;
    puts_(&rec, "v=spf1");
    repeat(&rec, " a", 1000);
    txt_rr(&z, "many.test.", rec.s, rec.len);
    puts_(&z, "many.test. 300 IN A 203.0.113.99\n");
    /* 1000 mechanisms that ask no DNS: a record like any other */
    rec.len = 0;
    puts_(&rec, "v=spf1");
    repeat(&rec, " all", 1000);
    txt_rr(&z, "cheap.test.", rec.s, rec.len);
    /* a syntax error at the far end still counts (4.6) */
    rec.len = 0;
    puts_(&rec, "v=spf1 +all");
    repeat(&rec, " ?all", 300);
    puts_(&rec, " bogus");
    txt_rr(&z, "late.test.", rec.s, rec.len);
    /* 300 TXT records at one name, one of them SPF */
    for (int i = 0; i < 300; i++) {
        snprintf(term, sizeof term, "filler %d", i);
        txt_rr(&z, "crowd.test.", term, strlen(term));
    }
    txt_rr(&z, "crowd.test.", "v=spf1 -all", 11);

    dns_ctx *d = zone(z.s);
    struct as_spf r = check(d, "192.0.2.77", NULL, "a@long.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "10.0.0.1", NULL, "a@huge.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "longer than"));
    as_spf_clear(&r);
    unsigned long q0 = dns_stat_queries(d);
    r = check(d, "192.0.2.1", NULL, "a@many.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "DNS lookup limit"));
    CHECK(dns_stat_queries(d) - q0 <= 12);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@cheap.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@late.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "bogus"));
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@crowd.test");
    CHECK(r.result == AS_FAIL);
    as_spf_clear(&r);
    dns_free(d);
    free(z.s);
    free(rec.s);
}

static void test_includes(void)
{
    struct sbuf z = { 0 };
    char line[200];
    /* c0 -> c1 -> ... -> c9: nine includes, then a match; d0 -> ... -> d10: eleven */
    for (int i = 0; i < 9; i++) {
        snprintf(line, sizeof line, "c%d.test. 300 IN TXT \"v=spf1 include:c%d.test -all\"\n", i, i + 1);
        puts_(&z, line);
    }
    puts_(&z, "c9.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n");
    for (int i = 0; i < 11; i++) {
        snprintf(line, sizeof line, "d%d.test. 300 IN TXT \"v=spf1 include:d%d.test -all\"\n", i, i + 1);
        puts_(&z, line);
    }
    puts_(&z, "d11.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n");
    puts_(&z,
          "loop1.test. 300 IN TXT \"v=spf1 include:loop2.test -all\"\n"
          "loop2.test. 300 IN TXT \"v=spf1 include:loop1.test -all\"\n"
          "self.test. 300 IN TXT \"v=spf1 redirect=self.test\"\n"
          "r0.test. 300 IN TXT \"v=spf1 redirect=r1.test exp=no.test\"\n"
          "r1.test. 300 IN TXT \"v=spf1 -all exp=yes.test\"\n"
          "yes.test. 300 IN TXT \"redirected %{d} for %{o}\"\n"
          "no.test. 300 IN TXT \"wrong\"\n"
          "tmp.test. 300 IN TXT \"v=spf1 include:slow.test -all\"\n"
          "noinc.test. 300 IN TXT \"v=spf1 include:nowhere.test -all\"\n");
    dns_ctx *d = zone(z.s);
    dns_zone_add_timeout(d, "slow.test");
    struct as_spf r = check(d, "192.0.2.1", NULL, "a@c0.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@d0.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "DNS lookup limit"));
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@loop1.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "DNS lookup limit"));
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@self.test");
    CHECK(r.result == AS_PERMERROR);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@r0.test");
    CHECK(r.result == AS_FAIL);
    CHECK_STR(r.explanation, "redirected r1.test for r0.test");
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@tmp.test");
    CHECK(r.result == AS_TEMPERROR && has(r.reason, "timeout"));
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@noinc.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "no SPF record"));
    as_spf_clear(&r);
    dns_free(d);
    free(z.s);
}

static void test_limits(void)
{
    struct sbuf z = { 0 };
    char line[200];
    puts_(&z, "storm.test. 300 IN TXT \"v=spf1");
    for (int i = 0; i < 10; i++) {
        snprintf(line, sizeof line, " %s:n%d.nowhere.test", i % 2 ? "a" : "exists", i);
        puts_(&z, line);
    }
    puts_(&z, " -all\"\n");
    puts_(&z, "two.test. 300 IN TXT \"v=spf1 a:n1.nowhere.test mx:n2.nowhere.test -all\"\n");
    puts_(&z, "mx11.test. 300 IN TXT \"v=spf1 mx -all\"\n");
    for (int i = 0; i < 11; i++) {
        snprintf(line, sizeof line, "mx11.test. 300 IN MX %d m%d.mx11.test.\n", i, i);
        puts_(&z, line);
    }
    puts_(&z, "mx10.test. 300 IN TXT \"v=spf1 mx -all\"\n");
    for (int i = 0; i < 10; i++) {
        snprintf(line, sizeof line, "mx10.test. 300 IN MX %d m%d.mx10.test.\nm%d.mx10.test. 300 IN A 192.0.2.%d\n",
                 i, i, i, 10 + i);
        puts_(&z, line);
    }
    puts_(&z, "ptr.test. 300 IN TXT \"v=spf1 ptr -all\"\n");
    for (int i = 0; i < 12; i++) {   /* the 11th and 12th names would match: ignored */
        snprintf(line, sizeof line, "9.2.0.192.in-addr.arpa. 300 IN PTR h%d.%s.\n", i, i < 10 ? "other.test" : "ptr.test");
        puts_(&z, line);
        snprintf(line, sizeof line, "h%d.%s. 300 IN A 192.0.2.9\n", i, i < 10 ? "other.test" : "ptr.test");
        puts_(&z, line);
    }
    dns_ctx *d = zone(z.s);
    unsigned long q0 = dns_stat_queries(d);
    struct as_spf r = check(d, "192.0.2.1", NULL, "a@storm.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "void lookup limit"));
    CHECK(dns_stat_queries(d) - q0 == 4);   /* the record, then three void lookups */
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@two.test");
    CHECK(r.result == AS_FAIL);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@mx11.test");
    CHECK(r.result == AS_PERMERROR && has(r.reason, "MX"));
    as_spf_clear(&r);
    r = check(d, "192.0.2.19", NULL, "a@mx10.test");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "192.0.2.9", NULL, "a@ptr.test");
    CHECK(r.result == AS_FAIL);
    as_spf_clear(&r);
    dns_free(d);
    free(z.s);
}

/* 7.3 truncation done the plain way on the whole string, to check the bounded one. */
static void truncate_left(char *s)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '.') s[--n] = '\0';
    char *p = s;
    while (strlen(p) > 253) {
        char *dot = strchr(p, '.');
        p = dot ? dot + 1 : p + strlen(p);
    }
    memmove(s, p, strlen(p) + 1);
}

static void test_macros(void)
{
    struct sbuf z = { 0 }, rec = { 0 }, want = { 0 }, local = { 0 };
    /* 900 x %{d}: 9900 octets before truncation, far past the expansion buffer */
    puts_(&rec, "v=spf1 exists:");
    repeat(&rec, "%{d}", 900);
    puts_(&rec, ".end.test -all");
    txt_rr(&z, "x.bomb.test.", rec.s, rec.len);
    repeat(&want, "x.bomb.test", 900);
    puts_(&want, ".end.test");
    truncate_left(want.s);
    puts_(&z, want.s);
    puts_(&z, ". 300 IN A 127.0.0.2\n");
    /* %{l} many times with a 100 kB local part: the expansion budget ends it */
    rec.len = 0;
    puts_(&rec, "v=spf1 exists:");
    repeat(&rec, "%{l}", 800);
    puts_(&rec, ".t.test -all");
    txt_rr(&z, "lbomb.test.", rec.s, rec.len);
    puts_(&z,
          "lone.test. 300 IN TXT \"v=spf1 exists:%{l}.t.test exists:%{l1000r+}.t.test ?all\"\n"
          "lexp.test. 300 IN TXT \"v=spf1 -all exp=e.lexp.test\"\n"
          "e.lexp.test. 300 IN TXT \"%{l}%{l}%{l}\"\n"
          "url.test. 300 IN TXT \"v=spf1 -all exp=u.url.test\"\n"
          "u.url.test. 300 IN TXT \"%{L} %{S} %% %_%-\"\n"
          "zero.test. 300 IN TXT \"v=spf1 exists:%{d0}.x.test -all\"\n"
          "crt.test. 300 IN TXT \"v=spf1 exists:%{t}.x.test -all\"\n"
          "pmac.test. 300 IN TXT \"v=spf1 -all exp=p.pmac.test\"\n"
          "p.pmac.test. 300 IN TXT \"from %{p} at %{t} to %{r}\"\n"
          "7.2.0.192.in-addr.arpa. 300 IN PTR mail.pmac.test.\n"
          "mail.pmac.test. 300 IN A 192.0.2.7\n");
    dns_ctx *d = zone(z.s);

    struct as_spf r = check(d, "192.0.2.1", NULL, "a@x.bomb.test");
    CHECK(r.result == AS_PASS);
    CHECK(last_elapsed < 2.0);
    as_spf_clear(&r);

    repeat(&local, "ab.", 34000);
    puts_(&local, "@lbomb.test");
    r = check(d, "192.0.2.1", NULL, local.s);
    CHECK(r.result == AS_PERMERROR && has(r.reason, "expansion limit"));
    CHECK(last_elapsed < 2.0);
    as_spf_clear(&r);
    memcpy(local.s + local.len - 10, "lone.test", 10);
    local.len--;
    r = check(d, "192.0.2.1", NULL, local.s);
    CHECK(r.result == AS_NEUTRAL);                     /* the lookups just find nothing */
    as_spf_clear(&r);
    memcpy(local.s + local.len - 9, "lexp.test", 10);
    r = check(d, "192.0.2.1", NULL, local.s);
    CHECK(r.result == AS_FAIL && r.explanation && strlen(r.explanation) <= 512 && has(r.explanation, "ab.ab."));
    as_spf_clear(&r);

    r = check(d, "192.0.2.1", NULL, "a\r\nb@lexp.test");      /* the explanation may reach an SMTP reply */
    CHECK_STR(r.explanation, "a??ba??ba??b");
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "~ja ck&jill=up@url.test");
    CHECK_STR(r.explanation, "~ja%20ck%26jill%3Dup ~ja%20ck%26jill%3Dup%40url.test %  %20");
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@zero.test");
    CHECK(r.result == AS_PERMERROR);
    as_spf_clear(&r);
    r = check(d, "192.0.2.1", NULL, "a@crt.test");      /* %{t} only in explanations */
    CHECK(r.result == AS_PERMERROR);
    as_spf_clear(&r);
    struct spf_request req = { .ip = "192.0.2.7", .mail_from = "a@pmac.test", .receiver = "mx.example" };
    CHECK(spf_check(d, &req, &r) == 0);
    CHECK(r.result == AS_FAIL && has(r.explanation, "from mail.pmac.test at ") && has(r.explanation, " to mx.example"));
    as_spf_clear(&r);
    dns_free(d);

    /* transformers: split on the delimiters, reverse, keep the right-hand parts */
    free(z.s);
    z.s = NULL, z.len = z.cap = 0;
    puts_(&z,
          "email.example.com. 300 IN TXT \"v=spf1 exists:%{l2r-}.%{o1}.%{d2}.%{i1r}.%{lr=}.q.test -all\"\n"
          "y.x.com.example.com.192.x-y.q.test. 300 IN A 127.0.0.2\n"
          "a=b=c.com.example.com.192.c.b.a.q.test. 300 IN A 127.0.0.2\n");
    d = zone(z.s);
    r = check(d, "192.0.2.3", NULL, "x-y@email.example.com");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "192.0.2.3", NULL, "a=b=c@email.example.com");
    CHECK(r.result == AS_PASS);
    as_spf_clear(&r);
    r = check(d, "192.0.2.3", NULL, "a-b-c@email.example.com");
    CHECK(r.result == AS_FAIL);
    as_spf_clear(&r);
    dns_free(d);
    free(z.s);
    free(rec.s);
    free(want.s);
    free(local.s);
}

/* A server that never answers: queries time out, the result is temperror, in bounded time. */
static void test_silent_server(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    char server[64], err[256];
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("udp socket");
        CHECK(0);
        return;
    }
    snprintf(server, sizeof server, "127.0.0.1:%u", ntohs(sa.sin_port));
    const char *servers[] = { server, NULL };
    struct dns_config cfg = { .servers = servers, .timeout_ms = 300, .budget_ms = 1000 };
    dns_ctx *d = dns_new(&cfg, err, sizeof err);
    CHECK(d != NULL);
    if (d) {
        struct as_spf r = check(d, "192.0.2.1", NULL, "a@example.com");
        CHECK(r.result == AS_TEMPERROR);
        CHECK(last_elapsed < 3.0);
        as_spf_clear(&r);
        struct spf_request req = { .ip = "192.0.2.1", .mail_from = "a@example.org" };
        dns_budget_start(d);
        CHECK(spf_check_libspf2(d, &req, &r) == 0);
        CHECK(r.result == AS_TEMPERROR);               /* libspf2's INVALID + SPF_E_DNS_ERROR */
        as_spf_clear(&r);
        dns_free(d);
    }
    close(fd);
}

/* libspf2 through our layer: results, and nothing on stdout (the SMTP stream in exim -bh). */
static void test_libspf2(void)
{
    struct sbuf z = { 0 }, bomb = { 0 };
    puts_(&z,
          "lib.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
          "bad.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 foo:bar -all %{\"\n"
          "smash.test. 300 IN TXT \"v=spf1 -all exp=why.smash.test\"\n");
    repeat(&bomb, "%{i}.", 80);   /* 400 bytes: overflowed libspf2's compile buffer before get_exp */
    txt_rr(&z, "why.smash.test.", bomb.s, bomb.len);
    dns_ctx *d = zone(z.s);
    struct spf_request req = { .ip = "192.0.2.1", .helo = "h.lib.test", .mail_from = "a@lib.test", .default_exp = "DEFAULT" };
    struct as_spf r;
    FILE *tmp = tmpfile();
    fflush(stdout);
    int saved = dup(1);
    dup2(fileno(tmp), 1);
    int rc1 = spf_check_libspf2(d, &req, &r);
    int ok1 = rc1 == 0 && r.result == AS_PASS;
    as_spf_clear(&r);
    req.ip = "198.51.100.1";
    int rc2 = spf_check_libspf2(d, &req, &r);
    int ok2 = rc2 == 0 && r.result == AS_FAIL && r.explanation && !strcmp(r.mail_from, "a@lib.test");
    as_spf_clear(&r);
    req.mail_from = "a@bad.test";
    int rc3 = spf_check_libspf2(d, &req, &r);
    int ok3 = rc3 == 0 && r.result == AS_PERMERROR;
    as_spf_clear(&r);
    req.mail_from = "a@smash.test";
    int rc5 = spf_check_libspf2(d, &req, &r);
    int ok5 = rc5 == 0 && r.result == AS_FAIL && r.explanation && !strcmp(r.explanation, "DEFAULT");
    as_spf_clear(&r);
    req.mail_from = "";
    int rc4 = spf_check_libspf2(d, &req, &r);
    int ok4 = rc4 == 0 && r.helo == 1 && !strcmp(r.mail_from, "postmaster@h.lib.test");
    as_spf_clear(&r);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(ok1);
    CHECK(ok2);
    CHECK(ok3);
    CHECK(ok4);
    CHECK(ok5);
    CHECK(ftell(tmp) == 0);
    fclose(tmp);
    dns_free(d);
    req.mail_from = "a@smash.test";                      /* ours: the explanation is capped */
    d = zone(z.s);
    r = check(d, "198.51.100.1", NULL, "a@smash.test");
    CHECK(r.result == AS_FAIL && r.explanation && strlen(r.explanation) == 512);
    as_spf_clear(&r);
    dns_free(d);
    free(z.s);
    free(bomb.s);
}

int main(void)
{
    test_basics();
    test_ipv6();
    test_lengths();
    test_includes();
    test_limits();
    test_macros();
    test_silent_server();
    test_libspf2();
    return check_report();
}

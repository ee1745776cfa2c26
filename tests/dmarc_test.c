/* dmarc_test.c - DMARC: the PSL vectors, From parsing, record discovery, alignment, policy, pct, several authors */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authscore.h"
#include "check.h"
#include "dmarc.h"
#include "dns.h"
#include "message.h"

/* ---- the Public Suffix List vectors ---- */

static void test_psl(void)
{
    const char *dir = getenv("TESTDATA") ? getenv("TESTDATA") : "tests/data";
    char path[512], line[512];
    int n = 0, ok = 0;
    snprintf(path, sizeof path, "%s/psl/tests.txt", dir);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    if (!fp) return;
    while (fgets(line, sizeof line, fp)) {
        char in[256], want[256], got[256];
        if (line[0] == '/' || sscanf(line, "%255s %255s", in, want) != 2) continue;
        int rc = dmarc_org_domain(strcmp(in, "null") ? in : NULL, got, sizeof got);
        const char *res = rc == 0 ? got : "null";
        n++;
        if (strcmp(res, want) == 0) ok++;
        else fprintf(stderr, "psl: %s -> %s, expected %s\n", in, res, want);
    }
    fclose(fp);
    printf("psl: %d/%d\n", ok, n);
    CHECK(n == 78);
    CHECK(ok == n);

    char out[8];
    CHECK(dmarc_org_domain("a.b.example.com", out, sizeof out) == -1);   /* does not fit */
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char o2[300];
    CHECK(dmarc_org_domain(big, o2, sizeof o2) == -1);
    CHECK(dmarc_org_domain("a..example.com", o2, sizeof o2) == -1);
    CHECK(dmarc_org_domain("", o2, sizeof o2) == -1);
    CHECK(dmarc_org_domain("www.Example.COM.", o2, sizeof o2) == 0);
    CHECK_STR(o2, "example.com");
}

/* ---- From parsing ---- */

static struct dmarc_from from_of(const char *value)
{
    struct dmarc_from f;
    memset(&f, 0, sizeof f);
    f.fields = 1;
    dmarc_from_parse(value, strlen(value), &f);
    return f;
}

/* The From value parses to exactly the domains listed, comma-separated ("" for none). */
static int from_is(const char *value, const char *want)
{
    struct dmarc_from f = from_of(value);
    char got[2048] = "";
    for (size_t i = 0; i < f.n; i++) {
        if (i) strcat(got, ",");
        strcat(got, f.domain[i]);
    }
    if (strcmp(got, want) == 0) return 1;
    fprintf(stderr, "from: [%s] -> [%s], expected [%s]\n", value, got, want);
    return 0;
}

static void test_from(void)
{
    CHECK(from_is("test@goestheweasel.com", "goestheweasel.com"));
    CHECK(from_is("Marc Bradshaw <marc@ marcbradshaw.net>", "marcbradshaw.net"));
    CHECK(from_is("\"Smith, John @ bank.example\" <john@Example.COM.>", "example.com"));
    CHECK(from_is("\"a,b@c\"@d.example", "d.example"));
    CHECK(from_is("(comment <x@evil.example>) user@example.org (another (nested) one)", "example.org"));
    CHECK(from_is("=?utf-8?Q?evil@bank.example?= <x@attacker.example>", "attacker.example"));
    CHECK(from_is("=?UTF-8?B?w4TDpMO2?= =?utf-8?q?x?= <a@b.example>", "b.example"));
    CHECK(from_is("Team: a@one.example, b@two.example;", "one.example,two.example"));
    CHECK(from_is("undisclosed-recipients:;", ""));
    CHECK(from_is("<@route.example,@r2.example:user@real.example>", "real.example"));
    CHECK(from_is("<@route.example x@real.example>", "real.example"));
    CHECK(from_is("user@example . com", "example.com"));
    CHECK(from_is("user @ example.com", "example.com"));
    CHECK(from_is("a@b.example, c@B.EXAMPLE", "b.example"));
    CHECK(from_is("\"Dear Customer\r\n Happy new Year, items\r\n \",\r\n        <noreply@example.com>", "example.com"));
    CHECK(from_is("<>", ""));
    CHECK(from_is("a@b.example@c.example", "b.example,c.example"));
    CHECK(from_is("a@b.example <x@y.example>", "b.example,y.example"));   /* bare '@' in a display name counts */
    CHECK(from_is("Name <a@b.example", "b.example"));
    CHECK(from_is("a@b.example (unterminated comment", "b.example"));
    CHECK(from_is("\"unterminated <x@evil.example>", ""));
    CHECK(from_is("user@食狮.中国", "xn--85x722f.xn--fiqs8s"));
    CHECK(from_is("user@ÄBC.de", "xn--bc-uia.de"));
    CHECK(from_is("user@xn--85x722f.com.cn", "xn--85x722f.com.cn"));
    CHECK(from_is("John Doe <jdoe@machine.example>, Mary <mary@x.test>", "machine.example,x.test"));
    CHECK(from_is("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", "silly.test"));
    CHECK(from_is("\"Joe Q. Public\" <john.q.public@example.com>", "example.com"));
    CHECK(from_is("Joe Q. Public <john.q.public@example.com>", "example.com"));       /* obs-phrase */
    CHECK(from_is("Mary Smith <@node.test:mary@example.net>", "example.net"));       /* obs-route */
    CHECK(from_is("a@b.example; c@d.example", "b.example,d.example"));
    CHECK(from_is("user@exa mple.com", "exa"));              /* "mple.com" is junk after the domain */

    struct dmarc_from f = from_of("a@[192.0.2.1]");
    CHECK(f.n == 0 && f.addresses == 1 && f.unusable == 1);
    f = from_of("a@[192.0.2.1], b@ok.example");
    CHECK(f.n == 1 && f.addresses == 2 && f.unusable == 1);
    f = from_of("a@bad!domain.example");
    CHECK(f.n == 0 && f.unusable == 1);
    f = from_of("a@.example");
    CHECK(f.n == 0 && f.unusable == 1);
    f = from_of("a@example..com");
    CHECK(f.n == 0 && f.unusable == 1);
    f = from_of("a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example");   /* 64-octet label */
    CHECK(f.n == 0 && f.unusable == 1);
    f = from_of("a@1.example, b@2.example, c@3.example, d@4.example, e@5.example, f@6.example, "
                "g@7.example, h@8.example, i@9.example, j@10.example");
    CHECK(f.n == DMARC_MAX_FROM_DOMAINS && f.truncated && f.addresses == 10);
    f = from_of("just a phrase");
    CHECK(f.n == 0 && f.addresses == 0);

    /* Garbage: bounded, never a crash (the sanitizers watch). */
    const char *junk[] = {
        "", "@", "@@@@", "<<<<>>>>", "((((((((", "))))", "\"", "\\", "[", "]]]", "=?", "=?utf-8?Q?",
        "=?utf-8?Q?abc?", "a@", "a@<", "<@", "<@:", "<@a,@b,@c", ":;:;:;", "\xff\xfe@\xc3", "a@\xc3(",
        "a@\xe2\x82", "a@\xed\xa0\x80.example", "a@\xf4\x90\x80\x80.example",
    };
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        f = from_of(junk[i]);
        CHECK(f.n <= DMARC_MAX_FROM_DOMAINS);
    }
    char nul[] = "a@b.example\0c@d.example";
    memset(&f, 0, sizeof f);
    dmarc_from_parse(nul, sizeof nul - 1, &f);
    CHECK(f.n == 2);
    size_t big = 1 << 20;
    char *buf = malloc(big);
    CHECK(buf != NULL);
    if (buf) {
        const char *pats[] = { "(", "a@", "<@", "\"", "=?a?b?", "@x.", "a@b.example," };
        for (size_t k = 0; k < sizeof pats / sizeof *pats; k++) {
            size_t pl = strlen(pats[k]);
            for (size_t i = 0; i < big; i++) buf[i] = pats[k][i % pl];
            memset(&f, 0, sizeof f);
            dmarc_from_parse(buf, big, &f);
            CHECK(f.n <= DMARC_MAX_FROM_DOMAINS);
        }
        srand(7);
        for (int round = 0; round < 2000; round++) {
            size_t len = (size_t)(rand() % 200);
            for (size_t i = 0; i < len; i++) buf[i] = "a@.<>(),:;\"\\[] \r\n=?xQB\x80\xc3"[rand() % 24];
            memset(&f, 0, sizeof f);
            dmarc_from_parse(buf, len, &f);
            CHECK(f.n <= DMARC_MAX_FROM_DOMAINS);
        }
        free(buf);
    }
}

/* ---- dmarc_check over a zone ---- */

static const char zone[] =
    "_dmarc.example.com. 300 IN TXT \"v=DMARC1; p=reject; rua=mailto:d@example.com\"\n"
    "_dmarc.strict.example. 300 IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
    "_dmarc.example.net. 300 IN TXT \"v=DMARC1; p=reject; sp=quarantine; adkim=s\"\n"
    "_dmarc.example.org. 300 IN TXT \"v=DMARC1; p=reject; sp=none\"\n"
    "_dmarc.pct0.example. 300 IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
    "_dmarc.pct50.example. 300 IN TXT \"v=DMARC1; p=quarantine; pct=50\"\n"
    "_dmarc.two.example. 300 IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.two.example. 300 IN TXT \"v=DMARC1; p=none\"\n"
    "_dmarc.bad.example. 300 IN TXT \"v=DMARC1; p=bogus\"\n"
    "_dmarc.badrua.example. 300 IN TXT \"v=DMARC1; p=bogus; rua=mailto:x@badrua.example\"\n"
    "_dmarc.nop.example. 300 IN TXT \"v=DMARC1; rua=mailto:x@nop.example\"\n"
    "_dmarc.prefix.example. 300 IN TXT \"v=DMARC1; p=rej\"\n"
    "_dmarc.junk.example. 300 IN TXT \"v=DMARC1; p=quarantine; adkim=x; pct=abc; fo=zz; bogus; rf=?\"\n"
    "_dmarc.spf.example. 300 IN TXT \"v=spf1 -all\"\n"
    "_dmarc.ver.example. 300 IN TXT \"v=DMARC2; p=reject\"\n"
    "_dmarc.split.example. 300 IN TXT \"v=DMARC1; \" \"p=quarantine\"\n"
    "_dmarc.github.io. 300 IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.xn--85x722f.xn--fiqs8s. 300 IN TXT \"v=DMARC1; p=quarantine\"\n"
    "other.example. 300 IN A 192.0.2.1\n";

static dns_ctx *zone_dns(void)
{
    static const char *none[] = { NULL };
    struct dns_config cfg = { .zones = none, .timeout_ms = 200, .budget_ms = 2000 };
    char err[256];
    dns_ctx *d = dns_new(&cfg, err, sizeof err);
    if (!d) { fprintf(stderr, "dns_new: %s\n", err); return NULL; }
    if (dns_zone_add_text(d, zone, NULL, err, sizeof err) != 0) fprintf(stderr, "zone: %s\n", err);
    dns_zone_add_timeout(d, "_dmarc.temp.example");
    dns_zone_add_timeout(d, "_dmarc.example.tmp");    /* org domain of a.example.tmp */
    return d;
}

struct auth {
    enum as_result spf; const char *spf_domain;
    enum as_result dkim[3]; const char *dkim_d[3];
};

/* Run dmarc_check on a message with the given header block and SPF/DKIM results. */
static int run(dns_ctx *dns, const char *headers, const struct auth *a, struct as_dmarc *out)
{
    char raw[4096];
    struct message m;
    struct as_spf spf = { .result = a ? a->spf : AS_NONE, .domain = a ? (char *)a->spf_domain : NULL };
    struct as_dkim_sig sigs[3];
    struct as_dkim dkim = { .sigs = sigs, .n = 0 };
    memset(sigs, 0, sizeof sigs);
    for (size_t i = 0; a && i < 3 && a->dkim_d[i]; i++) {
        sigs[i].result = a->dkim[i];
        sigs[i].domain = (char *)a->dkim_d[i];
        dkim.n++;
    }
    snprintf(raw, sizeof raw, "%sSubject: test\r\n\r\nbody\r\n", headers);
    if (message_parse(&m, raw, strlen(raw)) != 0) return -1;
    int rc = dmarc_check(dns, &m, &spf, &dkim, out);
    message_free(&m);
    return rc;
}

static int has(const char *s, const char *part)
{
    if (s && strstr(s, part)) return 1;
    fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", s ? s : "(null)", part);
    return 0;
}

static void test_check(void)
{
    dns_ctx *dns = zone_dns();
    struct as_dmarc d;
    CHECK(dns != NULL);
    if (!dns) return;

    /* relaxed: a sub-domain signature aligns with its parent */
    struct auth a1 = { AS_NONE, NULL, { AS_PASS }, { "mail.example.com" } };
    CHECK(run(dns, "From: A <a@example.com>\r\n", &a1, &d) == 0);
    CHECK(d.result == AS_PASS && d.dkim_aligned && !d.spf_aligned);
    CHECK_STR(d.from_domain, "example.com");
    CHECK_STR(d.org_domain, "example.com");
    CHECK_STR(d.policy, "reject");
    CHECK_STR(d.disposition, "none");
    CHECK_STR(d.rua, "mailto:d@example.com");
    CHECK(d.pct == 100 && !d.policy_is_sp && d.flags == 0);
    CHECK(has(d.reason, "aligned DKIM pass (d=mail.example.com)"));
    as_dmarc_clear(&d);

    /* siblings align in relaxed mode, through the organizational domain's record */
    struct auth a2 = { AS_NONE, NULL, { AS_PASS }, { "b.example.com" } };
    CHECK(run(dns, "From: a@a.example.com\r\n", &a2, &d) == 0);
    CHECK(d.result == AS_PASS && d.dkim_aligned);
    CHECK_STR(d.from_domain, "a.example.com");
    CHECK_STR(d.org_domain, "example.com");
    CHECK(!d.policy_is_sp);                  /* no sp= published: p applies */
    as_dmarc_clear(&d);

    /* libopendmarc without a suffix list aligns example.com with x.com: we do not */
    struct auth a3 = { AS_PASS, "x.com", { AS_PASS }, { "x.com" } };
    CHECK(run(dns, "From: a@example.com\r\n", &a3, &d) == 0);
    CHECK(d.result == AS_FAIL && !d.dkim_aligned && !d.spf_aligned);
    CHECK_STR(d.disposition, "reject");
    CHECK(has(d.reason, "DKIM pass only for d=x.com, not aligned"));
    CHECK(has(d.reason, "SPF pass for x.com, not aligned"));
    CHECK(has(d.reason, "p=reject"));
    as_dmarc_clear(&d);

    /* a public suffix From domain aligns only with itself */
    struct auth a4 = { AS_NONE, NULL, { AS_PASS }, { "evil.github.io" } };
    CHECK(run(dns, "From: a@github.io\r\n", &a4, &d) == 0);
    CHECK(d.result == AS_FAIL && !d.dkim_aligned);
    CHECK_STR(d.org_domain, "github.io");
    as_dmarc_clear(&d);

    /* strict */
    struct auth a5 = { AS_PASS, "mail.strict.example", { AS_PASS }, { "mail.strict.example" } };
    CHECK(run(dns, "From: a@strict.example\r\n", &a5, &d) == 0);
    CHECK(d.result == AS_FAIL && !d.dkim_aligned && !d.spf_aligned);
    CHECK(has(d.reason, "(adkim=s)") && has(d.reason, "(aspf=s)"));
    as_dmarc_clear(&d);
    struct auth a6 = { AS_PASS, "Strict.Example.", { AS_FAIL, AS_PASS }, { "strict.example", "STRICT.example" } };
    CHECK(run(dns, "From: a@strict.example\r\n", &a6, &d) == 0);
    CHECK(d.result == AS_PASS && d.dkim_aligned && d.spf_aligned);
    as_dmarc_clear(&d);

    /* the trap: store_dmarc overwrites the From domain with its domain argument */
    struct auth a7 = { AS_NONE, NULL, { AS_PASS }, { "example.net" } };
    CHECK(run(dns, "From: a@evil.example.net\r\n", &a7, &d) == 0);
    CHECK(d.result == AS_FAIL && !d.dkim_aligned);
    CHECK_STR(d.from_domain, "evil.example.net");
    CHECK_STR(d.org_domain, "example.net");
    CHECK_STR(d.policy, "quarantine");
    CHECK(d.policy_is_sp);
    CHECK(has(d.reason, "sp=quarantine"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@example.net\r\n", &a7, &d) == 0);     /* the org domain itself: p */
    CHECK(d.result == AS_PASS && !d.policy_is_sp);
    CHECK_STR(d.policy, "reject");
    as_dmarc_clear(&d);

    /* sp=none for sub-domains of example.org */
    struct auth a8 = { AS_FAIL, "a.example.org", { AS_FAIL }, { "a.example.org" } };
    CHECK(run(dns, "From: x@a.example.org\r\n", &a8, &d) == 0);
    CHECK(d.result == AS_FAIL && d.policy_is_sp);
    CHECK_STR(d.policy, "none");
    CHECK_STR(d.disposition, "none");
    as_dmarc_clear(&d);

    /* SPF: aligned pass passes; aligned softfail does not; a failed or policy-refused DKIM does not */
    struct auth a9 = { AS_PASS, "bounce.example.com", { AS_FAIL, AS_POLICY }, { "example.com", "example.com" } };
    CHECK(run(dns, "From: a@example.com\r\n", &a9, &d) == 0);
    CHECK(d.result == AS_PASS && d.spf_aligned && !d.dkim_aligned);
    CHECK(has(d.reason, "aligned SPF pass (bounce.example.com)"));
    as_dmarc_clear(&d);
    a9.spf = AS_SOFTFAIL;
    CHECK(run(dns, "From: a@example.com\r\n", &a9, &d) == 0);
    CHECK(d.result == AS_FAIL && !d.spf_aligned);
    CHECK(has(d.reason, "SPF softfail for bounce.example.com"));
    as_dmarc_clear(&d);
    struct auth a10 = { AS_NONE, NULL, { AS_TEMPERROR }, { "example.com" } };
    CHECK(run(dns, "From: a@example.com\r\n", &a10, &d) == 0);
    CHECK(d.result == AS_FAIL);
    CHECK(has(d.reason, "temperror for d=example.com"));
    as_dmarc_clear(&d);

    /* pct: 0 never samples (reject lowered to quarantine), 50 samples about half */
    CHECK(run(dns, "From: a@pct0.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_FAIL && d.pct == 0);
    CHECK_STR(d.policy, "reject");
    CHECK_STR(d.disposition, "quarantine");
    CHECK(has(d.reason, "not sampled"));
    as_dmarc_clear(&d);
    int q = 0, none = 0;
    for (int i = 0; i < 400; i++) {
        if (run(dns, "From: a@pct50.example\r\n", NULL, &d) != 0) break;
        if (d.disposition && !strcmp(d.disposition, "quarantine")) q++;
        else if (d.disposition && !strcmp(d.disposition, "none")) none++;
        as_dmarc_clear(&d);
    }
    CHECK(q + none == 400 && q > 100 && none > 100);
    struct auth a11 = { AS_NONE, NULL, { AS_PASS }, { "pct0.example" } };
    CHECK(run(dns, "From: a@pct0.example\r\n", &a11, &d) == 0);
    CHECK(d.result == AS_PASS);
    CHECK_STR(d.disposition, "none");
    as_dmarc_clear(&d);

    /* record discovery */
    CHECK(run(dns, "From: a@two.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && !d.policy && !d.disposition);
    CHECK(has(d.reason, "2 DMARC records at _dmarc.two.example"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@x.two.example\r\n", NULL, &d) == 0);   /* org fallback finds two as well */
    CHECK(d.result == AS_NONE);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@bad.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_PERMERROR && !d.policy);
    CHECK(has(d.reason, "invalid p="));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@prefix.example\r\n", NULL, &d) == 0);   /* libopendmarc would read reject */
    CHECK(d.result == AS_PERMERROR && !d.policy);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@badrua.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_FAIL);
    CHECK_STR(d.policy, "none");
    CHECK(has(d.reason, "read as p=none"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@nop.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_FAIL);
    CHECK_STR(d.policy, "none");
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@junk.example\r\n", NULL, &d) == 0);      /* bad values: defaults */
    CHECK(d.result == AS_FAIL && d.pct == 100);
    CHECK_STR(d.policy, "quarantine");
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@split.example\r\n", NULL, &d) == 0);
    CHECK_STR(d.policy, "quarantine");
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@spf.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE);
    CHECK(has(d.reason, "no DMARC record at _dmarc.spf.example"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@ver.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@deep.sub.other.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == 0);
    CHECK_STR(d.org_domain, "other.example");
    CHECK(has(d.reason, "no DMARC record at _dmarc.deep.sub.other.example nor _dmarc.other.example"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@temp.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_TEMPERROR && !d.policy);
    CHECK(has(d.reason, "DNS error looking up _dmarc.temp.example"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@a.example.tmp\r\n", NULL, &d) == 0);      /* temperror at the org domain */
    CHECK(d.result == AS_TEMPERROR);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@食狮.中国\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_FAIL);
    CHECK_STR(d.from_domain, "xn--85x722f.xn--fiqs8s");
    CHECK_STR(d.policy, "quarantine");
    as_dmarc_clear(&d);

    /* no usable From */
    CHECK(run(dns, "To: x@example.com\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == AS_DMARC_NO_FROM && !d.from_domain);
    CHECK(has(d.reason, "no From field"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: undisclosed-recipients:;\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == AS_DMARC_NO_FROM);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@[192.0.2.1]\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == AS_DMARC_NO_FROM);
    CHECK(has(d.reason, "no usable domain"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a\r\nFrom: b\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == (AS_DMARC_NO_FROM | AS_DMARC_MULTI_FROM));
    as_dmarc_clear(&d);

    /* several authors: never a pass, the strictest policy */
    struct auth a12 = { AS_PASS, "example.com", { AS_PASS, AS_PASS }, { "example.com", "example.org" } };
    CHECK(run(dns, "From: a@example.com, b@a.example.org, c@other.example\r\n", &a12, &d) == 0);
    CHECK(d.result == AS_FAIL && d.flags == AS_DMARC_MULTI_FROM);
    CHECK_STR(d.from_domain, "example.com");
    CHECK_STR(d.policy, "reject");
    CHECK_STR(d.disposition, "reject");
    CHECK(has(d.reason, "never a pass"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@a.example.org\r\nFrom: b@pct50.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_FAIL && (d.flags & AS_DMARC_MULTI_FROM));
    CHECK_STR(d.from_domain, "pct50.example");                    /* quarantine beats sp=none */
    CHECK_STR(d.policy, "quarantine");
    as_dmarc_clear(&d);
    struct auth a13 = { AS_NONE, NULL, { AS_PASS }, { "example.com" } };
    CHECK(run(dns, "From: a@example.com\r\nFROM: b@Example.com\r\n", &a13, &d) == 0);   /* same domain twice */
    CHECK(d.result == AS_FAIL && d.flags == AS_DMARC_MULTI_FROM && d.dkim_aligned);
    CHECK(has(d.reason, "2 From fields"));
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@example.com, b@EXAMPLE.com\r\n", &a13, &d) == 0);   /* one author domain */
    CHECK(d.result == AS_PASS && d.flags == 0);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@one.invalid, b@two.invalid\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_NONE && d.flags == AS_DMARC_MULTI_FROM && !d.policy);
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@one.invalid, b@temp.example\r\n", NULL, &d) == 0);
    CHECK(d.result == AS_TEMPERROR && d.flags == AS_DMARC_MULTI_FROM);
    CHECK_STR(d.from_domain, "temp.example");
    as_dmarc_clear(&d);
    CHECK(run(dns, "From: a@example.com, b@[192.0.2.1]\r\n", &a13, &d) == 0);
    CHECK(d.result == AS_FAIL && d.flags == AS_DMARC_MULTI_FROM);
    as_dmarc_clear(&d);

    dns_free(dns);
}

int main(void)
{
    test_psl();
    test_from();
    test_check();
    return check_report();
}

/* dkim_test.c - DKIM verification: RFC 8463 and dkimpy vectors, the Mail::DKIM corpus, own fixtures */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "dkim_fixture.h"
#include "dkim.h"

#define DATA "tests/data/dkim/"


static void zone_txt_file(dns_ctx *d, const char *name, const char *path)
{
    size_t len;
    char *s = slurp(path, &len);
    if (!s) { CHECK(!"key file"); return; }
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) len--;
    zone_txt(d, name, s, len);
    free(s);
}

/* Verify a message file.  Returns 0, or -1 when it cannot be read or on OOM. */
static int verify_file(dkim_verifier *v, dns_ctx *dns, const char *path, struct as_dkim *out)
{
    size_t len;
    struct message m;
    char *raw = slurp(path, &len);
    memset(out, 0, sizeof *out);
    if (!raw) return -1;
    int rc = message_parse(&m, raw, len);
    free(raw);
    if (rc) return -1;
    dns_budget_start(dns);
    rc = dkim_check(v, dns, &m, out);
    message_free(&m);
    return rc;
}

static int verify_buf(dkim_verifier *v, dns_ctx *dns, const char *raw, size_t len, struct as_dkim *out)
{
    struct message m;
    memset(out, 0, sizeof *out);
    if (message_parse(&m, raw, len)) return -1;
    dns_budget_start(dns);
    int rc = dkim_check(v, dns, &m, out);
    message_free(&m);
    return rc;
}

static void show(const char *what, const struct as_dkim *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct as_dkim_sig *s = &r->sigs[i];
        printf("  %-34s [%zu] %-9s d=%s s=%s a=%s bits=%u l=%ld b=%s i=%s: %s\n", what, i,
               as_result_str(s->result), s->domain ? s->domain : "-", s->selector ? s->selector : "-",
               s->algorithm ? s->algorithm : "-", s->key_bits, s->body_length, s->b,
               s->identity ? s->identity : "-", s->reason ? s->reason : "-");
    }
    if (!r->n) printf("  %-34s no signature (%zu ignored)\n", what, r->ignored);
}

/* Expect n signatures with these results (and, for the first, a reason). */
#define EXPECT(r, count, ...) do { \
    enum as_result want_[] = { __VA_ARGS__ }; \
    CHECK((r)->n == (count)); \
    for (size_t i_ = 0; i_ < (r)->n && i_ < sizeof want_ / sizeof *want_; i_++) \
        CHECK_STR(as_result_str((r)->sigs[i_].result), as_result_str(want_[i_])); \
} while (0)

static void test_rfc8463(dkim_verifier *v)
{
    dns_ctx *dns = new_dns();
    struct as_dkim r;
    if (!dns) { CHECK(!"dns"); return; }
    zone_text(dns,
        "brisbane._domainkey.football.example.com. IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n"
        "test._domainkey.football.example.com. IN TXT \"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR\""
        " \"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC\""
        " \"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3\""
        " \"Ip3G+2kryOTIKT+l/K4w3QIDAQAB\"\n");
    CHECK(verify_file(v, dns, DATA "rfc8463/signed.eml", &r) == 0);
    show("rfc8463", &r);
    EXPECT(&r, 2, AS_PASS, AS_PASS);
    if (r.n == 2) {
        CHECK_STR(r.sigs[0].algorithm, "ed25519-sha256");
        CHECK(r.sigs[0].key_bits == 0);
        CHECK_STR(r.sigs[0].selector, "brisbane");
        CHECK_STR(r.sigs[0].domain, "football.example.com");
        CHECK_STR(r.sigs[0].identity, "@football.example.com");
        CHECK_STR(r.sigs[0].b, "/gCrinpc");
        CHECK_STR(r.sigs[0].reason, "signature verified");
        CHECK(r.sigs[0].body_length == -1);
        CHECK_STR(r.sigs[1].algorithm, "rsa-sha256");
        CHECK(r.sigs[1].key_bits == 1024);
        CHECK_STR(r.sigs[1].b, "F45dVWDf");
    }
    CHECK(r.ignored == 0);
    as_dkim_clear(&r);
    dns_free(dns);
}

static void test_dkimpy(dkim_verifier *v)
{
    dns_ctx *dns = new_dns();
    struct as_dkim r;
    if (!dns) { CHECK(!"dns"); return; }
    zone_text(dns, "brisbane._domainkey.football.example.com. IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n");
    zone_txt_file(dns, "test._domainkey.football.example.com", DATA "dkimpy/test.txt");
    zone_txt_file(dns, "sed._domainkey.test.ex", DATA "dkimpy/eximtest.dns");
    zone_txt(dns, "20120113._domainkey.gmail.com", "k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1Kd87/UeJjenpabgbFwh+eBCsSTrqmwIYYvywlbhbqoo2DymndFkbjOVIPIldNs/m40KF+yzMn1skyoxcTUGCQs8g3FgD2Ap3ZB5DekAo5wMmk4wimDO+U8QzI3SD07y2+07wlNWwIt8svnxgdxGkVbbhzY8i+RQ9DpSVpPbF7ykQxtKXkv/ahW3KjViiAH+ghvvIhkx4xYSIc9oSwVmAl5OctMEeWUwg8Istjqz8BZeTWbf41fbNhte7Y+YqZOwq1Sd0DbvYAD9NOZK9vlfuac0598HY+vtSBczUiKERHv1yRbcaQtZFh5wtiRrN04BLUTD21MycBX5jYchHjPY/wIDAQAB", strlen("k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1Kd87/UeJjenpabgbFwh+eBCsSTrqmwIYYvywlbhbqoo2DymndFkbjOVIPIldNs/m40KF+yzMn1skyoxcTUGCQs8g3FgD2Ap3ZB5DekAo5wMmk4wimDO+U8QzI3SD07y2+07wlNWwIt8svnxgdxGkVbbhzY8i+RQ9DpSVpPbF7ykQxtKXkv/ahW3KjViiAH+ghvvIhkx4xYSIc9oSwVmAl5OctMEeWUwg8Istjqz8BZeTWbf41fbNhte7Y+YqZOwq1Sd0DbvYAD9NOZK9vlfuac0598HY+vtSBczUiKERHv1yRbcaQtZFh5wtiRrN04BLUTD21MycBX5jYchHjPY/wIDAQAB"));

    CHECK(verify_file(v, dns, DATA "dkimpy/rfc6376.signed.msg", &r) == 0);
    show("dkimpy rfc6376.signed.msg", &r);
    EXPECT(&r, 2, AS_PASS, AS_PASS);
    as_dkim_clear(&r);

    CHECK(verify_file(v, dns, DATA "dkimpy/rfc6376.signed.rsa.msg", &r) == 0);
    show("dkimpy rfc6376.signed.rsa.msg", &r);
    EXPECT(&r, 1, AS_PASS);
    as_dkim_clear(&r);

    CHECK(verify_file(v, dns, DATA "dkimpy/ed25519test2.msg", &r) == 0);
    show("dkimpy ed25519test2.msg (Exim)", &r);
    EXPECT(&r, 1, AS_PASS);
    if (r.n) { CHECK_STR(r.sigs[0].domain, "test.ex"); CHECK_STR(r.sigs[0].algorithm, "ed25519-sha256"); }
    as_dkim_clear(&r);

    CHECK(verify_file(v, dns, DATA "dkimpy/test2.message", &r) == 0);
    show("dkimpy test2.message (gmail)", &r);
    EXPECT(&r, 1, AS_PASS);
    if (r.n) CHECK(r.sigs[0].key_bits == 2048);
    as_dkim_clear(&r);

    CHECK(verify_file(v, dns, DATA "dkimpy/test.message.baddomain", &r) == 0);
    show("dkimpy test.message.baddomain", &r);
    EXPECT(&r, 1, AS_PERMERROR);
    as_dkim_clear(&r);

    /* The same signed message against broken key records. */
    static const char *bad[] = { "badk.txt", "badversion.txt", "test_bad.txt", "test_tlsrpt.txt" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        dns_ctx *d2 = new_dns();
        if (!d2) { CHECK(!"dns"); continue; }
        snprintf(path, sizeof path, DATA "dkimpy/%s", bad[i]);
        zone_txt_file(d2, "test._domainkey.football.example.com", path);
        CHECK(verify_file(v, d2, DATA "dkimpy/rfc6376.signed.rsa.msg", &r) == 0);
        show(bad[i], &r);
        EXPECT(&r, 1, AS_PERMERROR);
        as_dkim_clear(&r);
        dns_free(d2);
    }
    /* test2.txt: no k= (rsa implied) still verifies. */
    dns_ctx *d3 = new_dns();
    if (d3) {
        zone_txt_file(d3, "test._domainkey.football.example.com", DATA "dkimpy/test2.txt");
        CHECK(verify_file(v, d3, DATA "dkimpy/rfc6376.signed.rsa.msg", &r) == 0);
        EXPECT(&r, 1, AS_PASS);
        as_dkim_clear(&r);
        dns_free(d3);
    }
    dns_free(dns);
}

/* Serve Mail::DKIM's FAKE_DNS.dat: "name rdata" lines; NXDOMAIN; DNS errors time out. */
static void load_fake_dns(dns_ctx *d, const char *path)
{
    size_t len;
    char *s = slurp(path, &len);
    if (!s) { CHECK(!"FAKE_DNS.dat"); return; }
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = '\0';
        if (!l || line[0] == '#' || line[0] == ';') continue;
        char *sp = strpbrk(line, " \t");
        if (!sp) continue;
        *sp++ = '\0';
        while (*sp == ' ' || *sp == '\t') sp++;
        if (!strcmp(sp, "NXDOMAIN")) continue;
        if (!strcmp(sp, "~~Query timed out~~") || !strcmp(sp, "~~SERVFAIL~~")) {
            CHECK(dns_zone_add_timeout(d, line) == 0);
            continue;
        }
        if (!strcmp(sp, "\"\"")) zone_txt(d, line, "", 0);
        else zone_txt(d, line, sp, strlen(sp));
    }
    free(s);
}

static void test_mail_dkim(dkim_verifier *v)
{
    static const struct { const char *file; size_t n; enum as_result r[4]; } cases[] = {
        { "goodkey_ed25519.txt", 1, { AS_PASS } },
        { "badkey1_ed25519.txt", 1, { AS_PERMERROR } },    /* key of the wrong length */
        { "badkey2_ed25519.txt", 1, { AS_FAIL } },         /* header modified */
        { "badkey3_ed25519.txt", 1, { AS_FAIL } },         /* body modified */
        { "badkey4_ed25519.txt", 1, { AS_PERMERROR } },    /* no key */
        { "badkey5_ed25519.txt", 1, { AS_PERMERROR } },    /* empty TXT */
        { "badkey_1.txt", 1, { AS_PERMERROR } },           /* v=0.5 */
        { "badkey_2.txt", 1, { AS_PERMERROR } },
        { "badkey_8.txt", 1, { AS_POLICY } },              /* rsa-sha1 */
        { "badkey_10.txt", 1, { AS_PERMERROR } },          /* key t=s, i= in a subdomain */
        { "badkey_11.txt", 1, { AS_PERMERROR } },          /* key h= does not allow sha256 */
        { "badkey_14.txt", 1, { AS_POLICY } },             /* rsa-sha1 outranks the timeout */
        { "ignore_1.txt", 1, { AS_PERMERROR } },           /* v=5 */
        { "ignore_2.txt", 1, { AS_PERMERROR } },           /* a=rsa-md5 */
        { "ignore_3.txt", 1, { AS_PERMERROR } },           /* a=dsa-sha1 */
        { "ignore_4.txt", 1, { AS_PERMERROR } },           /* c=future */
        { "ignore_5.txt", 1, { AS_PERMERROR } },           /* q=http */
        { "ignore_6.txt", 1, { AS_PERMERROR } },           /* q=dns/special */
        { "ignore_7.txt", 1, { AS_PERMERROR } },           /* expired */
        { "ignore_8.txt", 1, { AS_PERMERROR } },           /* i= outside d= */
        { "good_qp_1.txt", 1, { AS_POLICY } },             /* rsa-sha1, 512 bits */
        { "good_83176.txt", 1, { AS_POLICY } },            /* rsa-sha1 */
        { "bad_1878954.txt", 1, { AS_POLICY } },
        { "multiple_2.txt", 4, { AS_PERMERROR, AS_POLICY, AS_POLICY, AS_PERMERROR } },
    };
    dns_ctx *dns = new_dns();
    if (!dns) { CHECK(!"dns"); return; }
    load_fake_dns(dns, DATA "mail-dkim/FAKE_DNS.dat");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[128];
        struct as_dkim r;
        snprintf(path, sizeof path, DATA "mail-dkim/%s", cases[i].file);
        CHECK(verify_file(v, dns, path, &r) == 0);
        show(cases[i].file, &r);
        CHECK(r.n == cases[i].n);
        for (size_t k = 0; k < r.n && k < cases[i].n; k++)
            CHECK_STR(as_result_str(r.sigs[k].result), as_result_str(cases[i].r[k]));
        as_dkim_clear(&r);
    }
    dns_free(dns);
}

static void test_own(dkim_verifier *v)
{
    dns_ctx *dns = new_dns();
    struct as_dkim r;
    size_t len;
    if (!dns) { CHECK(!"dns"); return; }
    char *keys = slurp(DATA "own/keys.zone", &len);
    if (keys) zone_text(dns, keys);
    free(keys);
    CHECK(dns_zone_add_timeout(dns, "timeout._domainkey.dkim.test") == 0);

    static const struct { const char *file; enum as_result r; const char *reason; } one[] = {
        { "rsa2048-relaxed.eml", AS_PASS, "signature verified" },
        { "rsa2048-simple.eml", AS_PASS, "signature verified" },
        { "ed25519-relaxed.eml", AS_PASS, "signature verified" },
        { "lf-only.eml", AS_PASS, "signature verified" },
        { "lf-only-simple.eml", AS_PASS, "signature verified" },
        { "multi.eml", AS_PASS, "signature verified" },
        { "testing.eml", AS_PASS, "signature verified (key in testing mode, t=y)" },
        { "rsa-sha1.eml", AS_POLICY, "rsa-sha1 refused (RFC 8301)" },
        { "rsa512.eml", AS_POLICY, "RSA key 512 bits < 1024 (RFC 8301)" },
        { "tampered-body.eml", AS_FAIL, "body hash mismatch" },
        { "tampered-header.eml", AS_FAIL, "signature mismatch" },
        { "timeout.eml", AS_TEMPERROR, "DNS temporary failure (timeout)" },
        { "missing.eml", AS_PERMERROR, "key not found" },
        { "garbage.eml", AS_PERMERROR, NULL },
        { "long.eml", AS_PERMERROR, "key record too long" },
        { "multikey.eml", AS_PERMERROR, "several key records" },
        { "no-from-signed.eml", AS_PERMERROR, "From not signed (h=, RFC 6376 5.4)" },
        { "no-from-header.eml", AS_FAIL, "signature mismatch" },   /* From removed after signing */
    };
    for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
        char path[128];
        snprintf(path, sizeof path, DATA "own/%s", one[i].file);
        CHECK(verify_file(v, dns, path, &r) == 0);
        show(one[i].file, &r);
        CHECK(r.n == 1);
        if (r.n == 1) {
            CHECK_STR(as_result_str(r.sigs[0].result), as_result_str(one[i].r));
            if (one[i].reason) CHECK_STR(r.sigs[0].reason, one[i].reason);
            CHECK(r.sigs[0].reason && *r.sigs[0].reason);
            CHECK_STR(r.sigs[0].domain, "dkim.test");
        }
        as_dkim_clear(&r);
    }

    CHECK(verify_file(v, dns, DATA "own/rsa2048-relaxed.eml", &r) == 0);
    if (r.n == 1) {
        CHECK(r.sigs[0].key_bits == 2048);
        CHECK_STR(r.sigs[0].algorithm, "rsa-sha256");
        CHECK(strlen(r.sigs[0].b) == 8);
        CHECK(r.sigs[0].body_length == -1);
    }
    as_dkim_clear(&r);

    CHECK(verify_file(v, dns, DATA "own/rsa512.eml", &r) == 0);
    if (r.n == 1) CHECK(r.sigs[0].key_bits == 512);
    as_dkim_clear(&r);

    /* l= covers the body as signed; the appended footer is outside it. */
    CHECK(verify_file(v, dns, DATA "own/length.eml", &r) == 0);
    show("length.eml", &r);
    EXPECT(&r, 1, AS_PASS);
    if (r.n == 1) CHECK(r.sigs[0].body_length > 0 && r.sigs[0].body_length < 200);
    as_dkim_clear(&r);

    /* 12 signatures: the first 10 evaluated, 2 counted. */
    CHECK(verify_file(v, dns, DATA "own/twelve.eml", &r) == 0);
    CHECK(r.n == 10);
    CHECK(r.ignored == 2);
    for (size_t i = 0; i < r.n; i++) CHECK(r.sigs[i].result == AS_PASS);
    as_dkim_clear(&r);

    /* 3000 DKIM-Signature fields: bounded by max_sigs, fast, no crash. */
    char *good = slurp(DATA "own/rsa2048-relaxed.eml", &len);
    if (good) {
        const char *from = strstr(good, "\r\nFrom:");
        size_t siglen = from ? (size_t)(from - good) + 2 : 0;
        size_t big_len = siglen * 3000 + len;
        char *big = malloc(big_len), *o = big;
        if (big && siglen) {
            for (int i = 0; i < 3000; i++) { memcpy(o, good, siglen); o += siglen; }
            memcpy(o, good, len);
            clock_t t0 = clock();
            CHECK(verify_buf(v, dns, big, big_len, &r) == 0);
            double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
            printf("  3000 signatures: n=%zu ignored=%zu in %.3fs\n", r.n, r.ignored, secs);
            CHECK(r.n == 10);
            CHECK(r.n + r.ignored >= MSG_MAX_HEADERS - 10);   /* the parser keeps 1000 fields */
            CHECK(secs < 2.0);
            as_dkim_clear(&r);
        }
        free(big);
        free(good);
    }

    /* A key lookup timing out spoils only its own signature. */
    char *t = slurp(DATA "own/timeout.eml", &len), *g2 = slurp(DATA "own/rsa2048-relaxed.eml", &len);
    if (t && g2) {
        char *from = strstr(t, "\r\nFrom:");
        size_t tl = from ? (size_t)(from - t) + 2 : 0, gl = strlen(g2);
        char *two = malloc(tl + gl);
        if (two && tl) {
            memcpy(two, t, tl);
            memcpy(two + tl, g2, gl);
            CHECK(verify_buf(v, dns, two, tl + gl, &r) == 0);
            show("timeout + good", &r);
            EXPECT(&r, 2, AS_TEMPERROR, AS_PASS);
            as_dkim_clear(&r);
        }
        free(two);
    }
    free(t);
    free(g2);

    /* No signature at all. */
    static const char plain[] = "From: a@dkim.test\r\nSubject: hi\r\n\r\nbody\r\n";
    CHECK(verify_buf(v, dns, plain, sizeof plain - 1, &r) == 0);
    CHECK(r.n == 0 && r.ignored == 0 && r.sigs == NULL);
    as_dkim_clear(&r);

    /* Junk signatures: every one reported, none passes, nothing crashes. */
    static const char junk[] =
        "DKIM-Signature: \r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=dkim.test; s=rsa2048; h=from; bh=; b=\r\n"
        "DKIM-Signature: ;;;;====;;; d=\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=..; s=a.b; h=from; bh=AAAA; b=AAAA\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=dkim.test; s=rsa2048; l=99999999999999999999; h=from; bh=AAAA; b=AAAA\r\n"
        "From: a@dkim.test\r\n\r\nbody\r\n";
    CHECK(verify_buf(v, dns, junk, sizeof junk - 1, &r) == 0);
    show("junk", &r);
    CHECK(r.n == 5);
    for (size_t i = 0; i < r.n; i++) CHECK(r.sigs[i].result != AS_PASS && r.sigs[i].reason);
    as_dkim_clear(&r);

    dns_free(dns);
}

/* A limit of 1 and DNS budget exhaustion. */
static void test_limits(void)
{
    char err[256];
    dkim_verifier *v1 = dkim_verifier_new(1, err, sizeof err);
    dns_ctx *dns = new_dns();
    struct as_dkim r;
    size_t len;
    CHECK(v1 != NULL);
    if (!v1 || !dns) { dkim_verifier_free(v1); if (dns) dns_free(dns); return; }
    char *keys = slurp(DATA "own/keys.zone", &len);
    if (keys) zone_text(dns, keys);
    free(keys);
    unsigned long q0 = dns_stat_queries(dns);
    CHECK(verify_file(v1, dns, DATA "own/twelve.eml", &r) == 0);
    CHECK(r.n == 1 && r.ignored == 11);
    CHECK(dns_stat_queries(dns) - q0 == 1);   /* prefetched once, then answered from the cache */
    if (r.n) CHECK(r.sigs[0].result == AS_PASS);
    as_dkim_clear(&r);
    dkim_verifier_free(v1);
    dns_free(dns);
}

int main(void)
{
    char err[256];
    dkim_verifier *v = dkim_verifier_new(0, err, sizeof err);
    CHECK(v != NULL);
    if (!v) { fprintf(stderr, "dkim_verifier_new: %s\n", err); return check_report(); }
    test_rfc8463(v);
    test_dkimpy(v);
    test_mail_dkim(v);
    test_own(v);
    test_limits();
    dkim_verifier_free(v);
    return check_report();
}

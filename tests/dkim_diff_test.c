/* dkim_diff_test.c - authscore's own key and body handling against libopendkim verifying alone */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <opendkim/dkim.h>
#include "check.h"
#include "dkim_fixture.h"
#include "dkim.h"

#define DATA "tests/data/dkim/"

/* libopendkim's ed25519 signing, used here to make test messages (never by
 * authscore), does not free the key it loads: not authscore's leak to report.  The
 * full unwinder is needed to see through libcrypto to that frame. */
#define SANITIZER_HOOK __attribute__((visibility("default"), used))
SANITIZER_HOOK const char *__lsan_default_suppressions(void);
SANITIZER_HOOK const char *__lsan_default_suppressions(void) { return "leak:dkim_privkey_load\n"; }
SANITIZER_HOOK const char *__asan_default_options(void);
SANITIZER_HOOK const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

static dkim_verifier *fast, *ref;
static unsigned long compared, shown, results[8];

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Verify raw both ways and compare every reported field. */
static void compare(const char *what, dns_ctx *dns, const char *raw, size_t len)
{
    struct message m;
    struct as_dkim a, b;
    if (message_parse(&m, raw, len) != 0) { CHECK(!"parse"); return; }
    dns_budget_start(dns);
    int ra = dkim_check(fast, dns, &m, &a);
    dns_budget_start(dns);
    int rb = dkim_check(ref, dns, &m, &b);
    message_free(&m);
    CHECK(ra == 0 && rb == 0);
    if (ra || rb) return;
    compared++;
    int same = a.n == b.n && a.ignored == b.ignored;
    for (size_t i = 0; same && i < a.n; i++) {
        const struct as_dkim_sig *x = &a.sigs[i], *y = &b.sigs[i];
        same = x->result == y->result && same_str(x->reason, y->reason) && x->key_bits == y->key_bits &&
               same_str(x->domain, y->domain) && same_str(x->selector, y->selector) &&
               same_str(x->algorithm, y->algorithm) && same_str(x->identity, y->identity) &&
               x->body_length == y->body_length && !strcmp(x->b, y->b);
    }
    CHECK(same);
    for (size_t i = 0; i < a.n; i++) results[a.sigs[i].result & 7]++;
    if (!same && shown++ < 20) {
        fprintf(stderr, "  %s differs:\n", what);
        for (size_t i = 0; i < a.n || i < b.n; i++)
            fprintf(stderr, "    [%zu] ours %s bits=%u \"%s\" | libopendkim %s bits=%u \"%s\"\n", i,
                    i < a.n ? as_result_str(a.sigs[i].result) : "-", i < a.n ? a.sigs[i].key_bits : 0,
                    i < a.n && a.sigs[i].reason ? a.sigs[i].reason : "-",
                    i < b.n ? as_result_str(b.sigs[i].result) : "-", i < b.n ? b.sigs[i].key_bits : 0,
                    i < b.n && b.sigs[i].reason ? b.sigs[i].reason : "-");
    }
    as_dkim_clear(&a);
    as_dkim_clear(&b);
}

static void compare_file(const char *what, dns_ctx *dns, const char *path)
{
    size_t len;
    char *raw = slurp(path, &len);
    CHECK(raw != NULL);
    if (raw) compare(what, dns, raw, len);
    free(raw);
}

/* ---- the test corpora of dkim_test.c, every message ---- */

static void corpus_dir(dns_ctx *dns, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) { CHECK(!"corpus"); return; }
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || (l > 4 && (!strcmp(e->d_name + l - 4, ".pem") || !strcmp(e->d_name + l - 4, ".key") ||
                                              !strcmp(e->d_name + l - 4, ".dat") || !strcmp(e->d_name + l - 4, ".dns") ||
                                              !strcmp(e->d_name + l - 3, ".sh") || !strcmp(e->d_name + l - 5, ".zone"))))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        compare_file(path, dns, path);
    }
    closedir(d);
}

static void corpora(void)
{
    dns_ctx *dns = new_dns();
    size_t len;
    if (!dns) { CHECK(!"dns"); return; }
    char *keys = slurp(DATA "own/keys.zone", &len);
    if (keys) zone_text(dns, keys);
    free(keys);
    dns_zone_add_timeout(dns, "timeout._domainkey.dkim.test");
    zone_text(dns, "brisbane._domainkey.football.example.com. IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n");
    char *k = slurp(DATA "dkimpy/test.txt", &len);
    if (k) { while (len && (k[len - 1] == '\n' || k[len - 1] == '\r')) len--; zone_txt(dns, "test._domainkey.football.example.com", k, len); }
    free(k);
    char *fake = slurp(DATA "mail-dkim/FAKE_DNS.dat", &len);
    for (char *line = fake ? strtok(fake, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = '\0';
        if (!l || line[0] == '#' || line[0] == ';') continue;
        char *sp = strpbrk(line, " \t");
        if (!sp) continue;
        *sp++ = '\0';
        while (*sp == ' ' || *sp == '\t') sp++;
        if (!strcmp(sp, "NXDOMAIN")) continue;
        if (!strcmp(sp, "~~Query timed out~~") || !strcmp(sp, "~~SERVFAIL~~")) { dns_zone_add_timeout(dns, line); continue; }
        if (!strcmp(sp, "\"\"")) zone_txt(dns, line, "", 0);
        else zone_txt(dns, line, sp, strlen(sp));
    }
    free(fake);
    corpus_dir(dns, DATA "own");
    corpus_dir(dns, DATA "dkimpy");
    corpus_dir(dns, DATA "mail-dkim");
    corpus_dir(dns, DATA "rfc8463");
    dns_free(dns);

    /* The dkimpy message against its broken key records. */
    static const char *bad[] = { "badk.txt", "badversion.txt", "test_bad.txt", "test_tlsrpt.txt", "test2.txt" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        dns_ctx *d2 = new_dns();
        snprintf(path, sizeof path, DATA "dkimpy/%s", bad[i]);
        char *r = d2 ? slurp(path, &len) : NULL;
        if (r) {
            while (len && (r[len - 1] == '\n' || r[len - 1] == '\r')) len--;
            zone_txt(d2, "test._domainkey.football.example.com", r, len);
            compare_file(bad[i], d2, DATA "dkimpy/rfc6376.signed.rsa.msg");
        }
        free(r);
        dns_free(d2);
    }
}

/* ---- generated signatures and key records ---- */

struct key {
    EVP_PKEY *pk;
    char *priv;          /* PEM, for libopendkim's signer */
    char *pub;           /* p= value */
    int ed;
};

static char *b64(const unsigned char *d, size_t n)
{
    char *o = malloc(4 * (n / 3 + 1) + 1);
    if (o) EVP_EncodeBlock((unsigned char *)o, d, (int)n);
    return o;
}

static int make_key(struct key *k, int type, int bits)
{
    memset(k, 0, sizeof k[0]);
    k->ed = type == EVP_PKEY_ED25519;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(type, NULL);
    if (!c || EVP_PKEY_keygen_init(c) <= 0 || (!k->ed && EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) <= 0) ||
        EVP_PKEY_keygen(c, &k->pk) <= 0) {
        EVP_PKEY_CTX_free(c);
        return -1;
    }
    EVP_PKEY_CTX_free(c);
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    PEM_write_bio_PrivateKey(bio, k->pk, NULL, NULL, 0, NULL, NULL);
    long n = BIO_get_mem_data(bio, &p);
    k->priv = strndup(p, (size_t)n);
    BIO_free(bio);
    if (k->ed) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        EVP_PKEY_get_raw_public_key(k->pk, raw, &rl);
        k->pub = b64(raw, rl);
    } else {
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k->pk, &der);
        k->pub = b64(der, (size_t)dl);
        OPENSSL_free(der);
    }
    return k->priv && k->pub ? 0 : -1;
}

static DKIM_LIB *signer;

/* A message signed by libopendkim; NULL when it refused. */
static char *sign(const struct key *k, dkim_alg_t alg, dkim_canon_t hc, dkim_canon_t bc, ssize_t l,
                  const char *identity, const char *headers, const char *body)
{
    DKIM_STAT st;
    DKIM *d = dkim_sign(signer, (const u_char *)"t", NULL, (u_char *)k->priv, (const u_char *)"sel",
                        (const u_char *)"gen.test", hc, bc, alg, l, &st);
    if (!d) return NULL;
    if (identity) dkim_set_signer(d, (const u_char *)identity);
    size_t hl = strlen(headers), bl = strlen(body);
    char *msg = NULL;
    if (dkim_chunk(d, (u_char *)headers, hl) != DKIM_STAT_OK || dkim_chunk(d, (u_char *)"\r\n\r\n", 4) != DKIM_STAT_OK ||
        (bl && dkim_chunk(d, (u_char *)body, bl) != DKIM_STAT_OK) || dkim_chunk(d, NULL, 0) != DKIM_STAT_OK ||
        dkim_eom(d, NULL) != DKIM_STAT_OK)
        goto out;
    u_char *sig;
    size_t sl;
    if (dkim_getsighdr_d(d, strlen("DKIM-Signature: "), &sig, &sl) != DKIM_STAT_OK) goto out;
    if ((msg = malloc(sl + hl + bl + 32))) sprintf(msg, "DKIM-Signature: %.*s\r\n%s\r\n\r\n%s", (int)sl, sig, headers, body);
out:
    dkim_free(d);
    return msg;
}

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void with_record(const char *what, const char *record, const char *msg)
{
    dns_ctx *dns = new_dns();
    if (!dns) return;
    zone_txt(dns, "sel._domainkey.gen.test", record, strlen(record));
    compare(what, dns, msg, strlen(msg));
    dns_free(dns);
}

/* Key records around a good one: every check of libopendkim's dkim_get_key(). */
static void records(const struct key *k, const char *msg)
{
    const char *kt = k->ed ? "ed25519" : "rsa";
    static const char *forms[] = {
        "v=DKIM1; k=%K; p=%P", "k=%K; p=%P", "v=DKIM1; p=%P", "p=%P", "v=DKIM2; k=%K; p=%P", "V=DKIM1; k=%K; p=%P",
        "v=dkim1; k=%K; p=%P", "v=DKIM1; k=RSA; p=%P", "v=DKIM1; K=%K; p=%P", "v=DKIM1; k=ed25519; p=%P",
        "v=DKIM1; k=rsa; p=%P", "v=DKIM1; k=dsa; p=%P", "v=DKIM1; k=; p=%P", "v=DKIM1; k=%K; h=sha256; p=%P",
        "v=DKIM1; k=%K; h=sha1; p=%P", "v=DKIM1; k=%K; h=sha1:sha256; p=%P", "v=DKIM1; k=%K; h=md5; p=%P",
        "v=DKIM1; k=%K; h=md5:sha256; p=%P", "v=DKIM1; k=%K; h=SHA256; p=%P", "v=DKIM1; k=%K; h=; p=%P",
        "v=DKIM1; k=%K; h=sha256:; p=%P", "v=DKIM1; k=%K; h=:sha1; p=%P", "v=DKIM1; k=%K; s=email; p=%P",
        "v=DKIM1; k=%K; s=*; p=%P", "v=DKIM1; k=%K; s=other; p=%P", "v=DKIM1; k=%K; s=other:email; p=%P",
        "v=DKIM1; k=%K; s=EMAIL; p=%P", "v=DKIM1; k=%K; S=other; p=%P", "v=DKIM1; k=%K; s=; p=%P",
        "v=DKIM1; k=%K; t=y; p=%P", "v=DKIM1; k=%K; t=s; p=%P", "v=DKIM1; k=%K; t=y:s; p=%P",
        "v=DKIM1; k=%K; t=Y; p=%P", "v=DKIM1; k=%K; t=x:y; p=%P", "v=DKIM1; k=%K; p=", "v=DKIM1; k=%K; p= ;",
        "v=DKIM1; k=%K", "v=DKIM1; k=%K; P=%P", "v=DKIM1; k=%K; p=%P; p=", "v=DKIM1; k=%K; p=; p=%P",
        "v=DKIM1; k=%K; n=a note; p=%P", "v=DKIM1 ; k = %K ; p = %P ;", " v=DKIM1;k=%K;p=%P", ";v=DKIM1; k=%K; p=%P",
        "v=DKIM1; k=%K; p=%P;;", "v=DKIM1; k=%K; p=%P; x", "v=DKIM1; k=%K; p=%P; =x", "v=DKIM1; k=%K; p=%P; x=",
        "v=DKIM1;\tk=%K;\tp=%P", "v=DKIM1; k=%K; p=%P; g=*", "v=DKIM1; k=%K; p=%P; a-b=c", "v=DKIM1; k=%K; p=%P; a b=c",
        "v=DKIM1; k=%K; p=%P\x01", "v=DKIM1; k=%K; p=%P\xe9", "v=DKIM1; k=%K; p=!!%P", "v=DKIM1; k=%K; p=%P==",
        "v=DKIM1; k=%K; p=AAAA", "v=DKIM1; k=%K; p=A", "v=DKIM1; k=%K; p=AAAAA", "v=DKIM1; k=%K; p=MIIB", "",
        " ", ";", "v=DKIM1", "v=DKIM1; k=%K; k=dsa; p=%P", "v=DKIM1; k=dsa; k=%K; p=%P", "v=DKIM1; k=%K; Kk=x; p=%P",
        "v=DKIM1; k=%K; v=DKIM2; p=%P", "v=DKIM1; k=%K; p=%P; v=DKIM2", "v=DKIM1; k=%K; p=%P ; h=sha1",
        "v=DKIM1; h=sha1; s=other; p=%P", "v=DKIM2; h=md5; p=%P", "v=DKIM1; h=md5; s=other; p=%P",
        "v=DKIM1; s=other; k=dsa; p=%P", "v=DKIM1; k=dsa; p=", "v=DKIM1; k=%K; p=%P%P",
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char rec[4096], *o = rec;
        for (const char *f = forms[i]; *f && o < rec + sizeof rec - 1200; f++) {
            if (f[0] == '%' && f[1] == 'K') { o += sprintf(o, "%s", kt); f++; }
            else if (f[0] == '%' && f[1] == 'P') { o += sprintf(o, "%s", k->pub); f++; }
            else *o++ = *f;
        }
        *o = '\0';
        if (strlen(rec) < 1024) with_record(forms[i], rec, msg);
    }
    /* Random damage to the good record. */
    char good[2048];
    snprintf(good, sizeof good, "v=DKIM1; k=%s; t=y; p=%s", kt, k->pub);
    static const char junk[] = { ' ', ';', '=', ':', '\t', 'a', 'A', '/', '+', '\0', (char)0x80, 'k', 'p', 'v' };
    for (int r = 0; r < 60; r++) {
        char rec[2048];
        size_t n = strlen(good);
        memcpy(rec, good, n + 1);
        for (int c = 1 + (int)rnd(3); c > 0; c--) {
            size_t at = rnd((unsigned)n);
            switch (rnd(3)) {
            case 0: rec[at] = junk[rnd(sizeof junk)]; break;
            case 1: memmove(rec + at, rec + at + 1, n - at); n--; break;
            default: memmove(rec + at + 1, rec + at, n - at + 1); rec[at] = junk[rnd(sizeof junk)]; n++; break;
            }
        }
        rec[n] = '\0';
        n = strlen(rec);
        with_record("damaged record", rec, msg);
    }
}

static const char *HEADERS = "From: Someone <someone@gen.test>\r\nTo: you@example.com\r\nSubject: generated\r\n"
                             "Date: Thu, 03 Dec 2026 09:12:00 +0000\r\nMessage-ID: <gen@gen.test>";

static void generated(void)
{
    struct key rsa1024, rsa512, ed;
    CHECK(make_key(&rsa1024, EVP_PKEY_RSA, 1024) == 0);
    CHECK(make_key(&rsa512, EVP_PKEY_RSA, 512) == 0);
    CHECK(make_key(&ed, EVP_PKEY_ED25519, 0) == 0);
    signer = dkim_init(NULL, NULL);
    unsigned minbits = 1, flags = DKIM_LIBFLAGS_FIXCRLF;
    if (!signer || dkim_options(signer, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) != DKIM_STAT_OK || dkim_options(signer, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof minbits) != DKIM_STAT_OK || !rsa1024.pub || !rsa512.pub || !ed.pub) { CHECK(!"set-up"); return; }
    static const char *bodies[] = {
        "Hello,\r\n\r\nthe report.\r\n", "", "\r\n\r\n", "one line no end", "a  b\t c \r\n\r\n\r\n",
        "lf\nonly\n\n", "cr\ronly\r", "text\r\n\r\nlast line ", " lead\r\n",
    };
    static const struct { dkim_alg_t alg; dkim_canon_t hc, bc; } kinds[] = {
        { DKIM_SIGN_RSASHA256, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED },
        { DKIM_SIGN_RSASHA256, DKIM_CANON_SIMPLE, DKIM_CANON_SIMPLE },
        { DKIM_SIGN_RSASHA256, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE },
        { DKIM_SIGN_RSASHA1, DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED },
        { DKIM_SIGN_ED25519SHA256, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED },
    };
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        const struct key *keys[2] = { kinds[ki].alg == DKIM_SIGN_ED25519SHA256 ? &ed : &rsa1024, &rsa512 };
        for (int kk = 0; kk < (kinds[ki].alg == DKIM_SIGN_ED25519SHA256 ? 1 : 2); kk++) {
            const struct key *k = keys[kk];
            char rec[1200];
            snprintf(rec, sizeof rec, "v=DKIM1; k=%s; p=%s", k->ed ? "ed25519" : "rsa", k->pub);
            for (size_t bi = 0; bi < sizeof bodies / sizeof *bodies; bi++) {
                for (int variant = 0; variant < 4; variant++) {
                    ssize_t l = variant == 1 ? 3 : -1;
                    const char *id = variant == 2 ? "user@sub.gen.test" : variant == 3 ? "@gen.test" : NULL;
                    char *msg = sign(k, kinds[ki].alg, kinds[ki].hc, kinds[ki].bc, l, id, HEADERS, bodies[bi]);
                    if (!msg) continue;
                    with_record("generated", rec, msg);
                    if (variant == 2) {
                        char r2[1300];
                        snprintf(r2, sizeof r2, "v=DKIM1; k=%s; t=s; p=%s", k->ed ? "ed25519" : "rsa", k->pub);
                        with_record("t=s, i= in a subdomain", r2, msg);
                    }
                    /* After signing: the body grows, loses its end, the header changes. */
                    size_t n = strlen(msg);
                    char *more = malloc(n + 64);
                    if (more) {
                        sprintf(more, "%sappended\r\n", msg);
                        with_record("body appended", rec, more);
                        sprintf(more, "%s\r\n\r\n", msg);
                        with_record("blank lines appended", rec, more);
                        memcpy(more, msg, n + 1);
                        if (n > 2) more[n - 2] = '\0';
                        with_record("body cut", rec, more);
                        memcpy(more, msg, n + 1);
                        char *subj = strstr(more, "generated");
                        if (subj) subj[0] = 'G';
                        with_record("subject changed", rec, more);
                        memcpy(more, msg, n + 1);
                        char *bh = strstr(more, "bh=");
                        if (bh) bh[3] = bh[3] == 'A' ? 'B' : 'A';
                        with_record("bh= damaged", rec, more);
                        memcpy(more, msg, n + 1);
                        char *bb = strstr(more, " b=");
                        if (bb) bb[4] = bb[4] == 'A' ? 'B' : 'A';
                        with_record("b= damaged", rec, more);
                        free(more);
                    }
                    if (bi == 0 && variant == 0) records(k, msg);
                    free(msg);
                }
            }
        }
    }
    /* Keys in unusual DER: an ed25519 SubjectPublicKeyInfo for an RSA signature, and
     * the RSA key with its outer length in a longer form than needed (BER). */
    char *rsamsg = sign(&rsa1024, DKIM_SIGN_RSASHA256, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, -1, NULL, HEADERS, "x\r\n");
    if (rsamsg) {
        unsigned char *der = NULL, ber[600];
        int dl = i2d_PUBKEY(ed.pk, &der);
        char *p = dl > 0 ? b64(der, (size_t)dl) : NULL, rec[1400];
        OPENSSL_free(der);
        if (p) {
            snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%s", p);
            with_record("ed25519 SPKI for rsa", rec, rsamsg);
        }
        free(p);
        der = NULL;
        dl = i2d_PUBKEY(rsa1024.pk, &der);
        if (dl > 4 && dl < 500 && der[0] == 0x30 && der[1] == 0x81) {    /* 30 81 LL -> 30 82 00 LL */
            ber[0] = 0x30, ber[1] = 0x82, ber[2] = 0x00, ber[3] = der[2];
            memcpy(ber + 4, der + 3, (size_t)dl - 3);
            p = b64(ber, (size_t)dl + 1);
            if (p) {
                snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%s", p);
                with_record("RSA key, long length form", rec, rsamsg);
            }
            free(p);
        }
        OPENSSL_free(der);
        free(rsamsg);
    }
    /* l= beyond the body, in a signature that verifies otherwise. */
    char *msg = sign(&rsa1024, DKIM_SIGN_RSASHA256, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, 500, NULL, HEADERS, "short\r\n");
    if (msg) {
        char rec[1200];
        snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%s", rsa1024.pub);
        with_record("l= past the body", rec, msg);
        with_record("l= past the body, no key", "v=DKIM1; k=rsa; p=", msg);
        free(msg);
    }
    struct key *all[] = { &rsa1024, &rsa512, &ed };
    for (size_t i = 0; i < 3; i++) { EVP_PKEY_free(all[i]->pk); free(all[i]->priv); free(all[i]->pub); }
    dkim_close(signer);
}

int main(void)
{
    char err[256];
    fast = dkim_verifier_new(0, err, sizeof err);
    ref = dkim_verifier_new(0, err, sizeof err);
    CHECK(fast && ref && dkim_verifier_reference(ref, err, sizeof err) == 0);
    if (!fast || !ref) return check_report();
    corpora();
    generated();
    printf("signatures:");
    for (int r = 0; r < 8; r++)
        if (results[r]) printf(" %s %lu", as_result_str((enum as_result)r), results[r]);
    printf("\n%lu messages compared, %lu differ\n", compared, shown);
    dkim_verifier_free(fast);
    dkim_verifier_free(ref);
    return check_report();
}

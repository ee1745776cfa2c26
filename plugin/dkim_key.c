/* dkim_key.c - DKIM key records parsed, checked and decoded once per process, as libopendkim would */
#define OPENSSL_SUPPRESS_DEPRECATED   /* RSA_verify on an RSA key: libopendkim's own calls, see below */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <opendkim/dkim.h>
#include "dkim_key.h"

/* Why this exists: libopendkim decodes the key of every signature it verifies with
 * d2i_PUBKEY(), which in OpenSSL 3 builds a decoder chain each time (about a million
 * instructions, more than the RSA verification itself).  So authscore applies the
 * key record itself, following libopendkim 2.11's dkim_get_key() step by step (tag
 * list rules, the order of the checks, the error each one gives), decodes each key
 * once per process and verifies with the calls libopendkim makes (RSA_verify over
 * the header hash; EVP_DigestVerify for ed25519).  libopendkim still parses the
 * signatures and hashes the header fields.  tests/dkim_diff_test.c runs both ways
 * over every DKIM test message and many generated key records and compares. */

#define KEY_CACHE 512             /* direct-mapped: a colliding key replaces the older one */
#define BUFRSZ 1024               /* libopendkim's key record buffer */

struct tag { char *name, *value; };

struct key_rec {
    char *text;
    size_t len;
    uint32_t hash;
    int early;                    /* error before the hash check (syntax, v=, h=), or 0 */
    char *h;                      /* h= as parsed, NULL when absent */
    int late;                     /* error after it (s=, k=, p=), or 0 */
    unsigned flags;               /* t= */
    unsigned char *raw;           /* p= decoded */
    size_t rawlen;
    int rsa_state, ed_state;      /* 0 not tried, 1 decoded, -1 unusable */
    RSA *rsa;
    unsigned bits;
    EVP_PKEY *ed;
};

static struct key_rec *cache[KEY_CACHE];

/* libopendkim's base64 decoder, kept to the letter (its buffer test included), by
 * table: 0 for characters outside the alphabet, which it skips, else value + 1. */
static const unsigned char b64[256] = {
    ['A'] = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    ['a'] = 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52,
    ['0'] = 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, ['+'] = 63, ['/'] = 64,
};

int dkim_key_b64decode(const char *s, unsigned char *buf, size_t buflen)
{
    int n = 0, bits = 0, count = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c != '=' && *c != '\0'; c++) {
        int v = b64[*c];
        if (!v) continue;
        bits += v - 1;
        count++;
        if ((size_t)n + 3 > buflen) return -2;
        if (count == 4) {
            buf[n++] = (unsigned char)(bits >> 16);
            buf[n++] = (unsigned char)((bits >> 8) & 0xff);
            buf[n++] = (unsigned char)(bits & 0xff);
            bits = 0;
            count = 0;
        } else {
            bits <<= 6;
        }
    }
    switch (count) {
    case 1: return -1;
    case 2:
        if ((size_t)n + 1 > buflen) return -2;
        buf[n++] = (unsigned char)(bits >> 10);
        break;
    case 3:
        if ((size_t)n + 2 > buflen) return -2;
        buf[n++] = (unsigned char)(bits >> 16);
        buf[n++] = (unsigned char)((bits >> 8) & 0xff);
        break;
    }
    return n;
}

/* dkim_collapse(): white space out. */
static void collapse(char *s)
{
    char *r = s;
    for (char *q = s; *q; q++)
        if (!isspace((unsigned char)*q)) *r++ = *q;
    *r = '\0';
}

/* dkim_add_plist(): a name matches an entry that starts with the same character
 * and equals it ignoring case; a new value replaces the old when force is set. */
static int tag_add(struct tag *t, size_t *n, size_t cap, char *name, char *value, int force)
{
    for (size_t i = 0; i < *n; i++)
        if (t[i].name[0] == name[0] && strcasecmp(t[i].name, name) == 0) {
            if (force) t[i].value = value;
            return 0;
        }
    if (*n == cap) return -1;
    t[*n].name = name;
    t[*n].value = value;
    (*n)++;
    return 0;
}

/* dkim_param_get(): exact name. */
static const char *tag_get(const struct tag *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return t[i].value;
    return NULL;
}

/* dkim_process_set() for a key record, in place.  0, or -1 on a syntax error. */
static int tags_parse(char *s, struct tag *t, size_t *n, size_t cap)
{
    int state = 0, spaced = 0;
    char *param = NULL, *value = NULL;
    *n = 0;
    for (char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isascii(c) || (!isprint(c) && !isspace(c))) return -1;
        switch (state) {
        case 0:
            if (isspace(c)) continue;
            if (!isalnum(c)) return -1;
            param = p;
            state = 1;
            break;
        case 1:
            if (isspace(c)) spaced = 1;
            else if (c == '=') { *p = '\0'; state = 2; spaced = 0; }
            else if (c == ';' || spaced) return -1;
            break;
        case 2:
            if (isspace(c)) continue;
            if (c == ';') {
                *p = '\0';
                collapse(param);
                if (tag_add(t, n, cap, param, p, 1) < 0) return -1;
                param = value = NULL;
                state = 0;
            } else {
                value = p;
                state = 3;
            }
            break;
        case 3:
            if (c == ';') {
                *p = '\0';
                collapse(param);
                collapse(value);
                if (tag_add(t, n, cap, param, value, 1) < 0) return -1;
                param = value = NULL;
                state = 0;
            }
            break;
        }
    }
    switch (state) {
    case 3:
        collapse(param);
        collapse(value);
        return tag_add(t, n, cap, param, value, 1);
    case 2: {
        static char empty[] = "";
        return tag_add(t, n, cap, param, empty, 1);   /* as libopendkim: the name not collapsed */
    }
    case 1:
        return -1;
    }
    return 0;
}

static int hash_code(const char *s)
{
    if (strcasecmp(s, "sha1") == 0) return DKIM_KEY_SHA1;
    if (strcasecmp(s, "sha256") == 0) return DKIM_KEY_SHA256;
    return -1;
}

/* dkim_key_hashesok() (want < 0) and dkim_key_hashok(): colon-separated names. */
static int hashes_ok(const char *list, int want)
{
    char tmp[BUFRSZ + 1];
    if (!list) return 1;
    for (const char *x = NULL, *y = list;; y++) {
        if (*y == ':' || *y == '\0') {
            if (x) {
                size_t n = (size_t)(y - x) < BUFRSZ ? (size_t)(y - x) : BUFRSZ;
                memcpy(tmp, x, n);
                tmp[n] = '\0';
                int code = hash_code(tmp);
                if (want < 0 ? code != -1 : code == want) return 1;
            }
            x = NULL;
        } else if (!x) {
            x = y;
        }
        if (*y == '\0') return 0;
    }
}

/* dkim_key_smtp(): no s=, or an element "*" or "email". */
static int service_ok(const char *s)
{
    char buf[BUFRSZ + 1], *last;
    if (!s) return 1;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = strtok_r(buf, ":", &last); p; p = strtok_r(NULL, ":", &last))
        if (strcmp(p, "*") == 0 || strcasecmp(p, "email") == 0) return 1;
    return 0;
}

static void parse(struct key_rec *k)
{
    struct tag t[512];                          /* a 1024-byte record holds fewer tags */
    size_t n;
    char *s = malloc(k->len + 1);
    if (!s) { k->early = DKIM_SIGERROR_DNSSYNTAX; return; }
    memcpy(s, k->text, k->len);
    s[k->len] = '\0';
    if (s[0] == '\0' || tags_parse(s, t, &n, sizeof t / sizeof *t) != 0) {   /* empty, or not a tag list */
        k->early = DKIM_SIGERROR_DNSSYNTAX;
        goto out;
    }
    static char k_name[] = "k", k_default[] = "rsa";
    tag_add(t, &n, sizeof t / sizeof *t, k_name, k_default, 0);
    const char *v = tag_get(t, n, "v"), *h = tag_get(t, n, "h"), *kt = tag_get(t, n, "k"),
               *p = tag_get(t, n, "p"), *fl = tag_get(t, n, "t");
    if (v && strcmp(v, "DKIM1") != 0) { k->early = DKIM_SIGERROR_KEYVERSION; goto out; }
    if (!hashes_ok(h, -1)) { k->early = DKIM_SIGERROR_KEYUNKNOWNHASH; goto out; }
    if (h && !(k->h = strdup(h))) { k->early = DKIM_SIGERROR_DNSSYNTAX; goto out; }
    if (!service_ok(tag_get(t, n, "s"))) { k->late = DKIM_SIGERROR_NOTEMAILKEY; goto out; }
    if (!kt) { k->late = DKIM_SIGERROR_KEYTYPEMISSING; goto out; }
    if (strcasecmp(kt, "rsa") != 0 && strcasecmp(kt, "ed25519") != 0) { k->late = DKIM_SIGERROR_KEYTYPEUNKNOWN; goto out; }
    if (!p) { k->late = DKIM_SIGERROR_DNSSYNTAX; goto out; }
    if (!*p) { k->late = DKIM_SIGERROR_KEYREVOKED; goto out; }
    size_t plen = strlen(p);
    int got = (k->raw = malloc(plen)) ? dkim_key_b64decode(p, k->raw, plen) : -1;
    if (got < 0) { k->late = DKIM_SIGERROR_DNSSYNTAX; goto out; }
    k->rawlen = (size_t)got;
    if (fl) {
        char tmp[BUFRSZ + 1], *last;
        snprintf(tmp, sizeof tmp, "%s", fl);
        for (char *f = strtok_r(tmp, ":", &last); f; f = strtok_r(NULL, ":", &last)) {
            if (strcasecmp(f, "y") == 0) k->flags |= DKIM_SIGFLAG_TESTKEY;
            else if (strcasecmp(f, "s") == 0) k->flags |= DKIM_SIGFLAG_NOSUBDOMAIN;
        }
    }
out:
    free(s);
}

static size_t der_len(const unsigned char *p, const unsigned char *end, size_t *len)
{
    if (p >= end) return 0;
    if (p[0] < 0x80) { *len = p[0]; return 1; }
    if (p[0] == 0x81 && end - p >= 2 && p[1] >= 0x80) { *len = p[1]; return 2; }
    if (p[0] == 0x82 && end - p >= 3 && p[1] != 0) { *len = (size_t)p[1] << 8 | p[2]; return 3; }
    return 0;
}

/* The RSA key of a SubjectPublicKeyInfo in its usual form (DER, rsaEncryption, NULL
 * parameters), read without OpenSSL 3's decoder framework: d2i_PUBKEY() costs about
 * 5 million instructions in a fresh process (provider set-up) and a million after.
 * NULL for any other form, which then goes to d2i_PUBKEY() as libopendkim's did. */
static RSA *rsa_from_spki(const unsigned char *der, size_t n)
{
    static const unsigned char alg[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                         0x0d, 0x01, 0x01, 0x01, 0x05, 0x00 };
    const unsigned char *p = der, *end = der + n;
    size_t len, l;
    if (p >= end || *p++ != 0x30 || !(l = der_len(p, end, &len))) return NULL;
    p += l;
    if ((size_t)(end - p) < len) return NULL;
    end = p + len;
    if ((size_t)(end - p) < sizeof alg || memcmp(p, alg, sizeof alg) != 0) return NULL;
    p += sizeof alg;
    if (p >= end || *p++ != 0x03 || !(l = der_len(p, end, &len))) return NULL;
    p += l;
    if ((size_t)(end - p) != len || len < 2 || *p++ != 0x00) return NULL;
    return d2i_RSAPublicKey(NULL, &p, (long)(len - 1));
}

static void decode_rsa(struct key_rec *k)
{
    k->rsa_state = -1;
    RSA *rsa = rsa_from_spki(k->raw, k->rawlen);
    if (!rsa) {                                    /* as libopendkim reads it */
        BIO *bio = BIO_new_mem_buf(k->raw, (int)k->rawlen);
        EVP_PKEY *pk = bio ? d2i_PUBKEY_bio(bio, NULL) : NULL;
        if (pk) rsa = EVP_PKEY_get1_RSA(pk);
        EVP_PKEY_free(pk);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (!rsa) return;
    k->rsa = rsa;
    k->bits = 8 * (unsigned)RSA_size(rsa);
    k->rsa_state = 1;
}

static void decode_ed25519(struct key_rec *k)
{
    k->ed = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k->raw, k->rawlen);
    ERR_clear_error();
    k->ed_state = k->ed ? 1 : -1;
}

static void rec_free(struct key_rec *k)
{
    if (!k) return;
    free(k->text);
    free(k->h);
    free(k->raw);
    RSA_free(k->rsa);
    EVP_PKEY_free(k->ed);
    free(k);
}

void dkim_key_flush(void)
{
    for (size_t i = 0; i < KEY_CACHE; i++) {
        rec_free(cache[i]);
        cache[i] = NULL;
    }
}

static uint32_t fnv(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct key_rec *lookup(const char *rec, size_t len)
{
    uint32_t h = fnv(rec, len);
    struct key_rec **slot = &cache[h % KEY_CACHE], *k = *slot;
    if (k && k->hash == h && k->len == len && memcmp(k->text, rec, len) == 0) return k;
    if (!(k = calloc(1, sizeof *k)) || !(k->text = malloc(len + 1))) { free(k); return NULL; }
    memcpy(k->text, rec, len);
    k->text[len] = '\0';
    k->len = len;
    k->hash = h;
    parse(k);
    rec_free(*slot);
    *slot = k;
    return k;
}

void dkim_key_use(const char *rec, size_t len, int signalg, int hashtype, struct dkim_key_use *use)
{
    struct key_rec *k = lookup(rec, len);
    memset(use, 0, sizeof *use);
    use->error = DKIM_SIGERROR_UNKNOWN;
    if (!k) { use->error = DKIM_SIGERROR_KEYDECODE; return; }
    /* dkim_get_key()'s order: version and hashes, this signature's hash, the rest. */
    int err = k->early ? k->early : !hashes_ok(k->h, hashtype) ? DKIM_SIGERROR_KEYHASHMISMATCH : k->late;
    if (err) {
        use->error = err;
        use->flags = DKIM_SIGFLAG_PROCESSED;
        return;
    }
    use->flags = k->flags;                         /* t= applies once the record is accepted */
    if (signalg == DKIM_SIGN_ED25519SHA256) {
        if (!k->ed_state) decode_ed25519(k);
        use->ed25519 = k->ed;
    } else {
        if (!k->rsa_state) decode_rsa(k);
        use->rsa = k->rsa;
        use->bits = k->bits;
    }
    if (!use->rsa && !use->ed25519) use->error = DKIM_SIGERROR_KEYDECODE;   /* not PROCESSED, as libopendkim */
}

int dkim_key_verify(const struct dkim_key_use *use, int signalg, int hashtype, const unsigned char *digest,
                    size_t diglen, const unsigned char *sig, size_t siglen)
{
    int ok;
    if (signalg == DKIM_SIGN_ED25519SHA256) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestVerifyInit(md, NULL, NULL, NULL, use->ed25519) != 1) {
            EVP_MD_CTX_free(md);
            ERR_clear_error();
            return -1;
        }
        ok = EVP_DigestVerify(md, sig, siglen, digest, diglen) == 1;
        EVP_MD_CTX_free(md);
    } else {
        ok = RSA_verify(hashtype == DKIM_KEY_SHA256 ? NID_sha256 : NID_sha1, digest, (unsigned)diglen,
                        sig, (unsigned)siglen, use->rsa) == 1;
    }
    if (!ok) ERR_clear_error();
    return ok;
}

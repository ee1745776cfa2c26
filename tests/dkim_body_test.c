/* dkim_body_test.c - our DKIM body hash against libopendkim's on random and edge-case bodies */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <opendkim/dkim.h>
#include "check.h"
#include "dkim.h"

static DKIM_LIB *lib;

static DKIM_CBSTAT no_key(DKIM *d, DKIM_SIGINFO *s, u_char *buf, size_t len)
{
    (void)d; (void)s; (void)buf; (void)len;
    return DKIM_CBSTAT_NOTFOUND;
}

/* libopendkim's body hash and canonical length, as authscore used it (FIXCRLF, the
 * body in one dkim_body call).  0, or -1 when it could not tell. */
static int reference(const char *body, size_t len, int relaxed, int sha256, long long l,
                     unsigned char *digest, size_t *dlen, size_t *canonlen)
{
    char sig[300];
    char lt[40] = "";
    DKIM_STAT st;
    if (l >= 0) snprintf(lt, sizeof lt, " l=%lld;", l);
    snprintf(sig, sizeof sig, "DKIM-Signature: v=1; a=%s; c=simple/%s; d=example.com; s=x;%s"
             " h=from; bh=AAAA; b=AAAA", sha256 ? "rsa-sha256" : "rsa-sha1", relaxed ? "relaxed" : "simple", lt);
    DKIM *d = dkim_verify(lib, (const u_char *)"t", NULL, &st);
    if (!d) return -1;
    static const char from[] = "From: a@example.com";
    int rc = -1;
    if (dkim_header(d, (u_char *)sig, strlen(sig)) != DKIM_STAT_OK ||
        dkim_header(d, (u_char *)from, sizeof from - 1) != DKIM_STAT_OK || dkim_eoh(d) != DKIM_STAT_OK)
        goto out;
    if (len && dkim_body(d, (u_char *)body, len) != DKIM_STAT_OK) goto out;
    (void)dkim_eom(d, NULL);
    DKIM_SIGINFO **sigs;
    int n;
    void *hh, *bh;
    size_t hhlen, bhlen;
    ssize_t msglen, clen, slen;
    if (dkim_getsiglist(d, &sigs, &n) != DKIM_STAT_OK || n != 1 ||
        dkim_sig_gethashes(sigs[0], &hh, &hhlen, &bh, &bhlen) != DKIM_STAT_OK ||
        dkim_sig_getcanonlen(d, sigs[0], &msglen, &clen, &slen) != DKIM_STAT_OK)
        goto out;
    memcpy(digest, bh, bhlen);
    *dlen = bhlen;
    *canonlen = (size_t)clen;
    rc = 0;
out:
    dkim_free(d);
    return rc;
}

static void show(const char *body, size_t len)
{
    fprintf(stderr, "    body (%zu): \"", len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c == '\r') fputs("\\r", stderr);
        else if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c < 32 || c > 126) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

static int mismatches;

static void compare(const char *body, size_t len, int relaxed, int sha256, long long l)
{
    unsigned char want[64], got[64];
    size_t wl = 0, gl = 0, wc = 0, gc = 0;
    if (reference(body, len, relaxed, sha256, l, want, &wl, &wc) != 0) { CHECK(!"libopendkim reference"); return; }
    dkim_body_hash(body, len, relaxed, sha256, l, got, &gl, &gc);
    int same = wl == gl && !memcmp(want, got, wl) && wc == gc;
    CHECK(same);
    if (!same && mismatches++ < 10) {
        fprintf(stderr, "  differs: %s %s l=%lld canonlen ours %zu, libopendkim %zu\n",
                relaxed ? "relaxed" : "simple", sha256 ? "sha256" : "sha1", l, gc, wc);
        show(body, len);
    }
}

static void all_modes(const char *body, size_t len)
{
    for (int relaxed = 0; relaxed < 2; relaxed++) {
        compare(body, len, relaxed, 1, -1);
        compare(body, len, relaxed, 0, -1);
        compare(body, len, relaxed, 1, 0);
        compare(body, len, relaxed, 1, 3);
        compare(body, len, relaxed, 1, (long long)len / 2);
        compare(body, len, relaxed, 1, (long long)len + 10);
    }
}

static unsigned long long rng = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (unsigned)(rng % n);
}

int main(void)
{
    static const char *edge[] = {
        "", "\r\n", "\r\n\r\n", "\n", "\n\n", "\r", "\r\r", "a", "a\r", "a\r\n", "a\n", "a\r\n\r\n",
        " ", " \r\n", "\t\r\n", "a \r\n", "a \t b\r\n", " a\r\n", "\ta\r\n", "a  b", "a b ", "a b \r",
        "a\r\n\r\nb", "a\r\n\r\nb c", "a\r\n\r\n b", "a\r\n\r\nb ", "a\r\n \r\n\r\nb", "\r\n\r\na",
        "a\rb\r\n", "a\r\rb", "a\n\rb", "a\r\n\r\r\n", "x\r\n\r\n\r\n", "x\r\n \r\n\t\r\n", "a\x00 b\r\n",
        "\xff\xfe \r\n", "a\r\n\n\r\n", "a \r\n\r\n", "  \r\n  a  \r\n  ", "a\r\n\r\n\r", "a\r\n\r\n \r",
    };
    char err[64];
    unsigned flags = DKIM_LIBFLAGS_FIXCRLF | DKIM_LIBFLAGS_BADSIGHANDLES;
    lib = dkim_init(NULL, NULL);
    if (!lib || dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) != DKIM_STAT_OK ||
        dkim_set_key_lookup(lib, no_key) != DKIM_STAT_OK) {
        snprintf(err, sizeof err, "libopendkim set-up");
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) all_modes(edge[i], strlen(edge[i]));
    all_modes("a\x00 b\r\n", 6);

    /* Random bodies over the bytes that matter to canonicalization. */
    static const char alphabet[] = { 'a', 'b', ' ', ' ', '\t', '\r', '\n', '\r', '\n', 'x', '\0', (char)0xe9 };
    char body[300];
    for (int round = 0; round < 4000; round++) {
        size_t len = rnd(round < 2000 ? 24 : 300);
        for (size_t i = 0; i < len; i++) body[i] = alphabet[rnd(sizeof alphabet)];
        all_modes(body, len);
    }
    /* Realistic text: long lines of words, CRLF, a few trailing blank lines. */
    size_t cap = 70000, n = 0;
    char *big = malloc(cap);
    if (big) {
        while (n < cap - 200) {
            for (int w = 0; w < 12; w++) {
                size_t wl = 1 + rnd(8);
                for (size_t k = 0; k < wl; k++) big[n++] = (char)('a' + rnd(26));
                big[n++] = rnd(30) ? ' ' : '\t';
            }
            if (rnd(5) == 0) big[n++] = ' ';
            big[n++] = '\r', big[n++] = '\n';
            if (rnd(20) == 0) big[n++] = '\r', big[n++] = '\n';
        }
        memcpy(big + n, "\r\n\r\n", 4);
        n += 4;
        all_modes(big, n);
        all_modes(big, n - 3);
        free(big);
    }
    dkim_close(lib);
    return check_report();
}

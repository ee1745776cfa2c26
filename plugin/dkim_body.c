/* dkim_body.c - DKIM body hashes (RFC 6376 3.4.3, 3.4.4) in one pass, the same as libopendkim's */
#define OPENSSL_SUPPRESS_DEPRECATED   /* SHA*_Init: the calls libopendkim makes, without provider fetches */
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>
#include "dkim.h"

/* libopendkim (with FIXCRLF, the body given in one piece) is the reference, quirks
 * included, because a signature must verify here exactly when it verified there:
 *  - a bare LF, and a bare CR not at the very end, end a line as CRLF does;
 *  - simple: trailing empty lines are dropped; a last line without a line end gets
 *    one; an empty body is one CRLF;
 *  - relaxed: a last line without a line end gets one, unless it ends in white
 *    space, and the empty lines before it are dropped unless it holds white space.
 * tests/dkim_body_test.c compares both on random bodies.  The canonical text is
 * hashed straight from the message wherever it equals the message (most of a
 * body), so a body is read once and not copied. */

struct out {
    int sha256;
    SHA256_CTX c256;
    SHA_CTX c1;
    const char *pend;       /* message bytes that pass through unchanged, not hashed yet */
    size_t npend;
    size_t remain;          /* l= still to hash; SIZE_MAX without l= */
    size_t wrote;
};

static void hash(struct out *o, const char *p, size_t n)
{
    if (n > o->remain) n = o->remain;
    if (!n) return;
    if (o->sha256) SHA256_Update(&o->c256, p, n);
    else SHA1_Update(&o->c1, p, n);
    o->wrote += n;
    if (o->remain != SIZE_MAX) o->remain -= n;
}

static void flush(struct out *o)
{
    if (o->npend) hash(o, o->pend, o->npend);
    o->npend = 0;
}

/* Bytes of the message itself: joined to the pending run when they follow it. */
static void put(struct out *o, const char *p, size_t n)
{
    if (o->npend && o->pend + o->npend == p) { o->npend += n; return; }
    flush(o);
    o->pend = p;
    o->npend = n;
}

/* Bytes that are not in the message at this place (a space for a run, CRLF for LF). */
static void put_lit(struct out *o, const char *p, size_t n)
{
    flush(o);
    hash(o, p, n);
}

static const char CRLF[] = "\r\n";

static int is_wsp(char c) { return c == ' ' || c == '\t'; }

/* The line end at q (a CR or LF): its length in the message, 2 for CRLF, 1 for a
 * bare LF or CR, 0 for a CR that is the very last byte (no line end); *next after it. */
static size_t line_end(const char *q, const char *end, const char **next)
{
    if (*q == '\n') { *next = q + 1; return 1; }
    if (q + 1 < end && q[1] == '\n') { *next = q + 2; return 2; }
    *next = q + 1;
    return q + 1 < end ? 1 : 0;
}

/* One line of [p, end): its end *eol, and *next after its line end.  Returns the
 * length of the line end, 0 for the last line when it has none. */
static size_t line(const char *p, const char *end, const char **eol, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    const char *cr = memchr(p, '\r', (size_t)((lf ? lf : end) - p));
    const char *q = cr ? cr : lf;
    if (!q) { *eol = *next = end; return 0; }
    *eol = q;
    return line_end(q, end, next);
}

/* Pending empty lines, emitted before the next content: as the message's own bytes
 * when they are a run of bare CRLFs there. */
struct blanks { size_t n; const char *at; int plain; };

static void blanks_add(struct blanks *b, const char *line_start, size_t linelen, size_t eollen)
{
    int plain = linelen == 0 && eollen == 2;
    if (b->n == 0) { b->at = line_start; b->plain = plain; }
    else if (!plain || b->at + 2 * b->n != line_start) b->plain = 0;
    b->n++;
}

static void blanks_flush(struct out *o, struct blanks *b)
{
    if (b->n && b->plain) put(o, b->at, 2 * b->n);
    else
        for (size_t i = 0; i < b->n; i++) put_lit(o, CRLF, 2);
    b->n = 0;
}

static void eol_out(struct out *o, const char *eol, size_t eollen)
{
    if (eollen == 2) put(o, eol, 2);
    else put_lit(o, CRLF, 2);
}

static void simple(struct out *o, const char *p, const char *end)
{
    struct blanks b = {0};
    while (p < end) {
        const char *eol, *next;
        size_t el = line(p, end, &eol, &next);
        if (el == 0) {                             /* last line, no line end: given one */
            if (eol > p) { blanks_flush(o, &b); put(o, p, (size_t)(eol - p)); put_lit(o, CRLF, 2); }
            break;
        }
        if (eol == p) {
            blanks_add(&b, p, 0, el);
        } else {
            blanks_flush(o, &b);
            put(o, p, (size_t)(eol - p));
            eol_out(o, eol, el);
        }
        p = next;
    }
    flush(o);
    if (o->wrote == 0) hash(o, CRLF, 2);
}

/* The words of [p, e) joined by single spaces; a leading run of white space is kept
 * as one space (the caller drops trailing white space). */
static void words_out(struct out *o, const char *p, const char *e)
{
    while (p < e) {
        const char *r = p;
        while (r < e && is_wsp(*r)) r++;
        if (r == e) break;
        if (r > p) {                               /* a run, then a word: one space */
            if (r - p == 1 && *p == ' ') put(o, p, 1);
            else put_lit(o, " ", 1);
        }
        const char *w = r;
        while (w < e && !is_wsp(*w)) w++;
        put(o, r, (size_t)(w - r));
        p = w;
    }
}

static int has_word(const char *p, const char *e)
{
    for (; p < e; p++)
        if (!is_wsp(*p)) return 1;
    return 0;
}

/* Whether two spaces follow each other in p[0..n), eight bytes at a time.  May say
 * yes wrongly (a space before a '!'): the caller then takes the slow path,
 * which is exact anyway. */
static int double_space(const char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u, sp = 0x2020202020202020u;
    uint64_t carry = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        x ^= sp;
        uint64_t z = (x - ones) & ~x & highs;          /* the high bit of each space */
        if (z & (z << 8 | carry)) return 1;
        carry = z >> 56;
    }
    int prev = carry != 0;
    for (; i < n; i++) {
        if (p[i] == ' ' && prev) return 1;
        prev = p[i] == ' ';
    }
    return 0;
}

/* A line that relaxed canonicalization leaves as it is: no tab, no white space at
 * either end, no two spaces in a row (most lines of most messages). */
static int plain_line(const char *p, const char *e)
{
    size_t n = (size_t)(e - p);
    return n && !is_wsp(p[0]) && !is_wsp(e[-1]) && !memchr(p, '\t', n) && !double_space(p, n);
}

static void relaxed(struct out *o, const char *p, const char *end)
{
    struct blanks b = {0};
    while (p < end) {
        const char *eol, *next;
        size_t el = line(p, end, &eol, &next);
        const char *e = eol;
        if (el == 0) {                             /* the unfinished last line */
            if (!has_word(p, e)) break;
            /* Its empty lines before are written only at a word-space boundary. */
            int any_wsp = 0;
            for (const char *r = p; r < e; r++)
                if (is_wsp(*r)) { any_wsp = 1; break; }
            if (any_wsp) blanks_flush(o, &b);
            else b.n = 0;
            words_out(o, p, e);
            if (!is_wsp(e[-1])) put_lit(o, CRLF, 2);
            break;
        }
        if (plain_line(p, e)) {
            blanks_flush(o, &b);
            put(o, p, (size_t)(e - p));
            eol_out(o, eol, el);
        } else if (!has_word(p, e)) {
            blanks_add(&b, p, (size_t)(e - p), el);
        } else {
            blanks_flush(o, &b);
            while (is_wsp(e[-1])) e--;              /* trailing white space goes */
            words_out(o, p, e);
            if (e == eol) eol_out(o, eol, el);
            else put_lit(o, CRLF, 2);
        }
        p = next;
    }
    flush(o);
}

void dkim_body_hash(const char *body, size_t len, int relaxed_canon, int sha256, long long l,
                    unsigned char *digest, size_t *digestlen, size_t *canonlen)
{
    struct out o;
    memset(&o, 0, sizeof o);
    o.sha256 = sha256;
    o.remain = l >= 0 ? (size_t)l : SIZE_MAX;
    if (sha256) SHA256_Init(&o.c256);
    else SHA1_Init(&o.c1);
    if (relaxed_canon) relaxed(&o, body, body + len);
    else simple(&o, body, body + len);
    flush(&o);
    if (sha256) { SHA256_Final(digest, &o.c256); *digestlen = SHA256_DIGEST_LENGTH; }
    else { SHA1_Final(digest, &o.c1); *digestlen = SHA_DIGEST_LENGTH; }
    *canonlen = o.wrote;
}

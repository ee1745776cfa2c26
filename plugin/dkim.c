/* dkim.c - DKIM signature verification (RFC 6376, 8463, 8301): libopendkim, keys from our DNS layer */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <opendkim/dkim.h>      /* by path: include/dkim.h shadows <dkim.h> */
#include "dkim.h"
#include "dkim_key.h"

#define MIN_RSA_BITS 1024      /* RFC 8301 section 3.2 */
#define MAX_DNS_NAME 253
#define KEY_BUF      1025      /* libopendkim's key record buffer */

/* How a signature is verified.  libopendkim parses every DKIM-Signature and hashes
 * the header fields it signs; the rest (key record, body hash, the signature check)
 * is done here, because libopendkim decodes the public key again for every message
 * and canonicalizes the body byte by byte, together two thirds of the time of a
 * check (dkim_key.c, dkim_body.c).  Its results are reproduced exactly: the
 * reference mode, libopendkim doing everything as it did before, stays for
 * tests/dkim_diff_test.c to compare against.
 *
 * libopendkim is set up once per process and shared by every verifier: one handle
 * that leaves signatures to us (DELAYSIGPROC, then each one ignored), and one for
 * the reference mode, made only when a test asks for it. */
static DKIM_LIB *lib_fast, *lib_ref;
static unsigned lib_refs;

struct dkim_verifier {
    unsigned max_sigs;
    int reference;
};

/* What libopendkim would report for one signature after dkim_eom(). */
struct sig_state {
    int error;                  /* DKIM_SIGERROR_* */
    unsigned flags;             /* DKIM_SIGFLAG_* */
    int bh;                     /* DKIM_SIGBH_* */
    unsigned bits;              /* RSA key size, 0 when unknown */
};

/* What the key lookup learnt about one signature beyond libopendkim's own error:
 * every lookup trouble answers libopendkim "not found" (so the other signatures go
 * on being verified, see key_lookup) and is told apart here afterwards. */
enum key_state {
    KEY_UNASKED = 0, KEY_GIVEN, KEY_NOTFOUND, KEY_TEMPFAIL, KEY_BADNAME,
    KEY_TOOLONG, KEY_NUL, KEY_SEVERAL, KEY_NONE_AMONG
};

struct key_note {
    const DKIM_SIGINFO *sig;
    enum key_state state;
    size_t nrr;                 /* TXT RRs seen, for KEY_NONE_AMONG */
    char errstr[64];            /* DNS reason for KEY_TEMPFAIL */
};

/* One message's verification: handed to the key lookup through the user context. */
struct verify_run {
    dns_ctx *dns;
    struct key_note *notes;     /* one per signature given to libopendkim */
    size_t nnotes, cap;
};

/* The tags of one DKIM-Signature we read ourselves: for prefetching, and for
 * reporting signatures libopendkim could not parse. */
struct sig_tags {
    char *d, *s, *a, *b, *h, *l, *i, *q;
};

static void tags_free(struct sig_tags *t)
{
    free(t->d); free(t->s); free(t->a); free(t->b); free(t->h); free(t->l); free(t->i); free(t->q);
    memset(t, 0, sizeof *t);
}

static int is_wsp(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copy [p, e) without its white space: none belongs inside the values we keep,
 * and FWS may fold them anywhere.  NULL on out-of-memory. */
static char *copy_squeezed(const char *p, const char *e)
{
    char *s = malloc((size_t)(e - p) + 1), *o = s;
    if (!s) return NULL;
    for (; p < e; p++)
        if (!is_wsp((unsigned char)*p)) *o++ = *p;
    *o = '\0';
    return s;
}

/* Step through a tag list (RFC 6376 3.2): the next spec from *p, its value
 * [*val, *vend) and *name, the tag's one character (0 for a longer name or a
 * spec without '=').  Returns 0 at the end of the list. */
static int tag_next(const char **p, const char *end, char *name, const char **val, const char **vend)
{
    if (*p >= end) return 0;
    const char *semi = memchr(*p, ';', (size_t)(end - *p));
    const char *se = semi ? semi : end, *eq = memchr(*p, '=', (size_t)(se - *p));
    *name = 0;
    if (eq) {
        const char *n = *p, *ne = eq;
        while (n < ne && is_wsp((unsigned char)*n)) n++;
        while (ne > n && is_wsp((unsigned char)ne[-1])) ne--;
        if (ne - n == 1) *name = *n;
        *val = eq + 1, *vend = se;
    }
    *p = semi ? semi + 1 : end;
    return 1;
}

/* Parse the tag list of a DKIM-Signature value (RFC 6376 3.2), keeping the tags we
 * report.  Lenient: a malformed spec is skipped; libopendkim judges syntax.  A tag
 * given twice keeps its first value.  Returns 0, -1 on out-of-memory. */
static int tags_parse(const char *v, size_t len, struct sig_tags *t)
{
    const char *p = v, *end = v + len, *val = NULL, *vend = NULL;
    char name;
    memset(t, 0, sizeof *t);
    while (tag_next(&p, end, &name, &val, &vend)) {
        char **slot = NULL;
        switch (name) {
        case 'd': slot = &t->d; break;
        case 's': slot = &t->s; break;
        case 'a': slot = &t->a; break;
        case 'b': slot = &t->b; break;
        case 'h': slot = &t->h; break;
        case 'l': slot = &t->l; break;
        case 'i': slot = &t->i; break;
        case 'q': slot = &t->q; break;
        }
        if (slot && !*slot && !(*slot = copy_squeezed(val, vend))) { tags_free(t); return -1; }
    }
    return 0;
}

/* Is word (case-insensitive) an element of the colon-separated list?  Elements may
 * carry folding white space.  For h= (RFC 6376 5.4: From must be signed) and q=
 * (dns/txt is the one method defined; libopendkim skips that test when a key
 * lookup callback is installed). */
static int list_has(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ':'), *e = c ? c : p + strlen(p);
        while (p < e && is_wsp((unsigned char)*p)) p++;
        while (e > p && is_wsp((unsigned char)e[-1])) e--;
        if ((size_t)(e - p) == wl && strncasecmp(p, word, wl) == 0) return 1;
        p = c ? c + 1 : e;
    }
    return 0;
}

/* Build "selector._domainkey.domain" into buf, lower-cased.  Returns 0, or -1 when
 * the result is not a plausible DNS name (empty or long labels, characters outside
 * letters, digits, '-', '_'): such a signature is unusable, and the name must not
 * reach the resolver. */
static int key_name(char *buf, size_t buflen, const char *sel, const char *dom)
{
    if (!sel || !dom || !*sel || !*dom) return -1;
    int n = snprintf(buf, buflen, "%s._domainkey.%s", sel, dom);
    if (n < 0 || (size_t)n >= buflen || n > MAX_DNS_NAME) return -1;
    size_t label = 0;
    for (char *p = buf; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (label == 0) return -1;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_') return -1;
        if (++label > 63) return -1;
        *p = (char)tolower(c);
    }
    return label ? 0 : -1;
}

/* A TXT record that carries a p= tag is taken for a DKIM key record. */
static int looks_like_key(const char *s, size_t len)
{
    const char *p = s, *val, *vend;
    char name;
    while (tag_next(&p, s + len, &name, &val, &vend))
        if (name == 'p') return 1;
    return 0;
}

static struct key_note *note_for(struct verify_run *run, const DKIM_SIGINFO *sig)
{
    for (size_t i = 0; i < run->nnotes; i++)
        if (run->notes[i].sig == sig) return &run->notes[i];
    if (run->nnotes == run->cap) return NULL;
    struct key_note *k = &run->notes[run->nnotes++];
    memset(k, 0, sizeof *k);
    k->sig = sig;
    return k;
}

/* The key record of one signature, through our DNS layer: CONTINUE with the record
 * in buf, or NOTFOUND.  Only those two: TRYAGAIN or ERROR make libopendkim stop at
 * dkim_eoh() for the whole message, leaving the other signatures unverified.  So a
 * DNS timeout is noted and answered NOTFOUND, and turned into temperror afterwards
 * (verdict()).  Several TXT RRs: the one that carries p= is used; none or several
 * such -> permerror (RFC 6376 3.6.2.2 lets the verifier choose; the RRset order is
 * arbitrary, so a choice among several keys would not be repeatable).  A record that
 * does not fit libopendkim's buffer is refused rather than truncated. */
static DKIM_CBSTAT fetch_key(struct verify_run *run, DKIM_SIGINFO *sig, u_char *buf, size_t buflen, size_t *len)
{
    struct key_note *k = run ? note_for(run, sig) : NULL;
    char name[MAX_DNS_NAME + 2];

    if (!k) return DKIM_CBSTAT_NOTFOUND;
    if (key_name(name, sizeof name, (const char *)dkim_sig_getselector(sig),
                 (const char *)dkim_sig_getdomain(sig)) != 0) {
        k->state = KEY_BADNAME;
        return DKIM_CBSTAT_NOTFOUND;
    }
    struct dns_answer *a = dns_query(run->dns, name, DNS_T_TXT);
    const struct dns_rr *use = NULL;
    k->state = KEY_NOTFOUND;
    if (a->status == DNS_TEMPFAIL) {
        k->state = KEY_TEMPFAIL;
        snprintf(k->errstr, sizeof k->errstr, "%s", a->errstr[0] ? a->errstr : "error");
    } else if (a->status == DNS_OK && a->n) {
        size_t keys = 0, ntxt = 0;
        for (size_t i = 0; i < a->n; i++) {
            if (a->rr[i].type != DNS_T_TXT) continue;
            ntxt++;
            if (looks_like_key(a->rr[i].u.txt.data, a->rr[i].u.txt.len)) { keys++; use = &a->rr[i]; }
        }
        if (ntxt == 1 && !use) {
            for (size_t i = 0; i < a->n; i++)
                if (a->rr[i].type == DNS_T_TXT) use = &a->rr[i];
        } else if (keys != 1) {
            use = NULL;
            k->state = keys ? KEY_SEVERAL : KEY_NONE_AMONG;
            k->nrr = ntxt;
        }
    }
    if (use && use->u.txt.len >= buflen) {
        k->state = KEY_TOOLONG;
    } else if (use && memchr(use->u.txt.data, '\0', use->u.txt.len)) {
        k->state = KEY_NUL;
    } else if (use) {
        memcpy(buf, use->u.txt.data, use->u.txt.len);
        buf[use->u.txt.len] = '\0';
        *len = use->u.txt.len;
        k->state = KEY_GIVEN;
    }
    dns_answer_release(a);
    return k->state == KEY_GIVEN ? DKIM_CBSTAT_CONTINUE : DKIM_CBSTAT_NOTFOUND;
}

/* libopendkim asks for a key (reference mode). */
static DKIM_CBSTAT key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    size_t len;
    return fetch_key(dkim_get_user_context(d), sig, buf, buflen, &len);
}

/* A libopendkim handle: FIXCRLF (Exim's spool is LF) and BADSIGHANDLES (an
 * unparsable signature gets a handle with its error instead of failing the whole
 * message); with fast, DELAYSIGPROC.  Key size floor 1: small RSA keys are verified
 * and reported as policy (RFC 8301), with their size, rather than dropped unseen. */
static DKIM_LIB *library(int fast, char *err, size_t errlen)
{
    DKIM_LIB *l = dkim_init(NULL, NULL);
    if (!l) { snprintf(err, errlen, "dkim: libopendkim initialisation failed"); return NULL; }
    unsigned flags = DKIM_LIBFLAGS_FIXCRLF | DKIM_LIBFLAGS_BADSIGHANDLES | (fast ? DKIM_LIBFLAGS_DELAYSIGPROC : 0);
    unsigned minbits = 1;
    if (dkim_options(l, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) != DKIM_STAT_OK ||
        dkim_options(l, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof minbits) != DKIM_STAT_OK ||
        dkim_set_key_lookup(l, key_lookup) != DKIM_STAT_OK) {
        snprintf(err, errlen, "dkim: libopendkim refused its options");
        dkim_close(l);
        return NULL;
    }
    if (!dkim_libfeature(l, DKIM_FEATURE_ED25519)) {
        snprintf(err, errlen, "dkim: libopendkim built without ed25519 (RFC 8463)");
        dkim_close(l);
        return NULL;
    }
    return l;
}

dkim_verifier *dkim_verifier_new(unsigned max_sigs, char *err, size_t errlen)
{
    dkim_verifier *v = calloc(1, sizeof *v);
    if (!v) { snprintf(err, errlen, "dkim: out of memory"); return NULL; }
    v->max_sigs = max_sigs ? max_sigs : 10;
    if (!lib_fast && !(lib_fast = library(1, err, errlen))) { free(v); return NULL; }
    lib_refs++;
    return v;
}

int dkim_verifier_reference(dkim_verifier *v, char *err, size_t errlen)
{
    if (!lib_ref && !(lib_ref = library(0, err, errlen))) return -1;
    v->reference = 1;
    return 0;
}

void dkim_verifier_free(dkim_verifier *v)
{
    if (!v) return;
    free(v);
    if (lib_refs && --lib_refs == 0) {
        dkim_close(lib_fast);
        if (lib_ref) dkim_close(lib_ref);
        lib_fast = lib_ref = NULL;
        dkim_key_flush();
    }
}

static int is_sig_header(const struct msg_header *h)
{
    return h->name_len == 14 && strncasecmp(h->name, "DKIM-Signature", 14) == 0;
}

/* Set a result and its reason (formatted).  Returns 0, -1 on out-of-memory. */
__attribute__((format(printf, 3, 4)))
static int set_result(struct as_dkim_sig *s, enum as_result r, const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->result = r;
    free(s->reason);
    return (s->reason = strdup(buf)) ? 0 : -1;
}

static int is_syntax_error(int e)
{
    switch (e) {
    case DKIM_SIGERROR_VERSION: case DKIM_SIGERROR_DOMAIN: case DKIM_SIGERROR_TIMESTAMPS:
    case DKIM_SIGERROR_INVALID_HC: case DKIM_SIGERROR_INVALID_BC: case DKIM_SIGERROR_MISSING_A:
    case DKIM_SIGERROR_INVALID_A: case DKIM_SIGERROR_MISSING_H: case DKIM_SIGERROR_INVALID_L:
    case DKIM_SIGERROR_INVALID_Q: case DKIM_SIGERROR_INVALID_QO: case DKIM_SIGERROR_MISSING_D:
    case DKIM_SIGERROR_EMPTY_D: case DKIM_SIGERROR_MISSING_S: case DKIM_SIGERROR_EMPTY_S:
    case DKIM_SIGERROR_MISSING_B: case DKIM_SIGERROR_EMPTY_B: case DKIM_SIGERROR_CORRUPT_B:
    case DKIM_SIGERROR_MISSING_BH: case DKIM_SIGERROR_EMPTY_BH: case DKIM_SIGERROR_CORRUPT_BH:
    case DKIM_SIGERROR_SUBDOMAIN: case DKIM_SIGERROR_EMPTY_H: case DKIM_SIGERROR_INVALID_H:
    case DKIM_SIGERROR_MISSING_V: case DKIM_SIGERROR_EMPTY_V:
        return 1;
    }
    return 0;
}

static const char *sig_errstr(int e)
{
    const char *s = dkim_sig_geterrorstr(e);
    return s ? s : "unknown error";
}

/* The verdict on one signature, most decisive cause first. */
static int verdict(struct as_dkim_sig *s, DKIM_SIGINFO *sig, const struct sig_tags *t,
                   const struct key_note *k, const struct sig_state *st, const char *msg_error)
{
    if (msg_error) return set_result(s, AS_PERMERROR, "message not verifiable: %s", msg_error);
    if (!sig) return set_result(s, AS_PERMERROR, "syntax error in signature: not parsed");

    int e = st->error;
    unsigned flags = st->flags;
    dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
    (void)dkim_sig_getsignalg(sig, &alg);

    if (e == DKIM_SIGERROR_EXPIRED) return set_result(s, AS_PERMERROR, "signature expired (x=)");
    if (e == DKIM_SIGERROR_FUTURE) return set_result(s, AS_PERMERROR, "signature timestamp in the future (t=)");
    /* Tags as libopendkim read them, when it did. */
    const char *h = (const char *)dkim_sig_gettagvalue(sig, false, (u_char *)"h");
    const char *q = (const char *)dkim_sig_gettagvalue(sig, false, (u_char *)"q");
    if (!h) h = t->h;
    if (!q) q = t->q;
    if (h && !list_has(h, "from")) return set_result(s, AS_PERMERROR, "From not signed (h=, RFC 6376 5.4)");
    if (is_syntax_error(e)) return set_result(s, AS_PERMERROR, "syntax error in signature: %s", sig_errstr(e));
    if (!h) return set_result(s, AS_PERMERROR, "syntax error in signature: no h= tag");
    if (q && !list_has(q, "dns/txt"))
        return set_result(s, AS_PERMERROR, "syntax error in signature: no supported query method (q=)");
    if (alg == DKIM_SIGN_RSASHA1) return set_result(s, AS_POLICY, "rsa-sha1 refused (RFC 8301)");

    if (k) {
        switch (k->state) {
        case KEY_TEMPFAIL: return set_result(s, AS_TEMPERROR, "DNS temporary failure (%s)", k->errstr);
        case KEY_NOTFOUND: return set_result(s, AS_PERMERROR, "key not found");
        case KEY_BADNAME: return set_result(s, AS_PERMERROR, "invalid d= or s= for a DNS name");
        case KEY_TOOLONG: return set_result(s, AS_PERMERROR, "key record too long");
        case KEY_NUL: return set_result(s, AS_PERMERROR, "key record holds a NUL byte");
        case KEY_SEVERAL: return set_result(s, AS_PERMERROR, "several key records");
        case KEY_NONE_AMONG:
            return set_result(s, AS_PERMERROR, "no key record among %zu TXT record%s", k->nrr, k->nrr == 1 ? "" : "s");
        case KEY_UNASKED: case KEY_GIVEN: break;
        }
    }
    switch (e) {
    case DKIM_SIGERROR_KEYFAIL: return set_result(s, AS_TEMPERROR, "DNS temporary failure");
    case DKIM_SIGERROR_NOKEY: return set_result(s, AS_PERMERROR, "key not found");
    case DKIM_SIGERROR_KEYREVOKED: return set_result(s, AS_PERMERROR, "key revoked (empty p=)");
    case DKIM_SIGERROR_DNSSYNTAX: case DKIM_SIGERROR_MULTIREPLY: case DKIM_SIGERROR_KEYVERSION:
    case DKIM_SIGERROR_KEYUNKNOWNHASH: case DKIM_SIGERROR_KEYHASHMISMATCH: case DKIM_SIGERROR_NOTEMAILKEY:
    case DKIM_SIGERROR_KEYTYPEMISSING: case DKIM_SIGERROR_KEYTYPEUNKNOWN: case DKIM_SIGERROR_KEYDECODE:
        return set_result(s, AS_PERMERROR, "unusable key record: %s", sig_errstr(e));
    }
    if (alg == DKIM_SIGN_RSASHA256 && s->key_bits && s->key_bits < MIN_RSA_BITS)
        return set_result(s, AS_POLICY, "RSA key %u bits < %d (RFC 8301)", s->key_bits, MIN_RSA_BITS);
    if (e == DKIM_SIGERROR_TOOLARGE_L) return set_result(s, AS_FAIL, "body shorter than l=");
    if (!(flags & DKIM_SIGFLAG_PROCESSED) || (e != DKIM_SIGERROR_OK && e != DKIM_SIGERROR_UNKNOWN &&
                                              e != DKIM_SIGERROR_BADSIG))
        return set_result(s, AS_PERMERROR, "not verified: %s", e == DKIM_SIGERROR_UNKNOWN ? "not processed" : sig_errstr(e));
    /* A body hash mismatch leaves PASSED set (the header signature held): look at it first. */
    int bh = st->bh;
    /* RFC 6376 3.6.1: a t=y key is the signer testing; the rules may discount it. */
    const char *testing = (flags & DKIM_SIGFLAG_TESTKEY) ? " (key in testing mode, t=y)" : "";
    if (bh == DKIM_SIGBH_MISMATCH) return set_result(s, AS_FAIL, "body hash mismatch%s", testing);
    if (!(flags & DKIM_SIGFLAG_PASSED) || e == DKIM_SIGERROR_BADSIG)
        return set_result(s, AS_FAIL, "signature mismatch%s", testing);
    if (bh != DKIM_SIGBH_MATCH) return set_result(s, AS_PERMERROR, "not verified: body hash not computed");
    return set_result(s, AS_PASS, "signature verified%s", testing);
}

static char *dup_lower(const char *s)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++) *p = (char)tolower((unsigned char)*p);
    return d;
}

/* Fill the descriptive fields of one signature: d= and s= as libopendkim read them
 * (what was verified) when it could, else our own reading.  0, -1 on out-of-memory. */
static int describe(struct as_dkim_sig *s, DKIM *d, DKIM_SIGINFO *sig, const struct sig_tags *t,
                    const struct sig_state *st)
{
    const char *dom = t->d, *sel = t->s, *l = t->l;
    dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
    if (sig) {
        if (dkim_sig_getdomain(sig)) dom = (const char *)dkim_sig_getdomain(sig);
        if (dkim_sig_getselector(sig)) sel = (const char *)dkim_sig_getselector(sig);
        (void)dkim_sig_getsignalg(sig, &alg);
        const u_char *lv = dkim_sig_gettagvalue(sig, false, (u_char *)"l");
        if (lv) l = (const char *)lv;
    }
    s->body_length = -1;
    snprintf(s->b, sizeof s->b, "%.8s", t->b ? t->b : "");
    if ((dom && !(s->domain = dup_lower(dom))) || (sel && !(s->selector = strdup(sel))) ||
        (t->a && !(s->algorithm = dup_lower(t->a))))
        return -1;
    if (l) {
        char *end;
        errno = 0;
        long n = strtol(l, &end, 10);
        if (end != l && !*end && !errno && n >= 0) s->body_length = n;
    }
    if (t->i) {
        u_char id[256];
        if (sig && dkim_sig_getidentity(d, sig, id, sizeof id) == DKIM_STAT_OK) s->identity = strdup((char *)id);
        else s->identity = strdup(t->i);
        if (!s->identity) return -1;
    }
    if (sig && alg != DKIM_SIGN_ED25519SHA256) s->key_bits = st->bits;   /* 0 for ed25519 */
    return 0;
}

static const char *stat_str(DKIM *d, DKIM_STAT st)
{
    const char *e = d ? dkim_geterror(d) : NULL;
    if (e && *e) return e;
    e = dkim_getresultstr(st);
    return e ? e : "error";
}

void dkim_tag_copy(const char *v, size_t len, char c, char *out, size_t outlen)
{
    const char *p = v, *val, *vend;
    char name;
    out[0] = '\0';
    while (tag_next(&p, v + len, &name, &val, &vend)) {
        if (name != c) continue;
        size_t o = 0;
        for (const char *q = val; q < vend; q++)
            if (!is_wsp((unsigned char)*q)) {
                if (o + 1 >= outlen) { out[0] = '\0'; return; }
                out[o++] = *q;
            }
        out[o] = '\0';
        return;
    }
}

void dkim_prefetch(const dkim_verifier *v, dns_ctx *dns, const struct message *m)
{
    size_t seen = 0;
    for (size_t i = 0; i < m->nhdr && seen < v->max_sigs; i++) {
        const struct msg_header *h = &m->hdr[i];
        char d[MAX_DNS_NAME + 2], sel[MAX_DNS_NAME + 2], name[MAX_DNS_NAME + 2];
        if (!is_sig_header(h)) continue;
        seen++;
        dkim_tag_copy(h->value, h->value_len, 'd', d, sizeof d);
        dkim_tag_copy(h->value, h->value_len, 's', sel, sizeof sel);
        if (key_name(name, sizeof name, sel, d) == 0) dns_prefetch(dns, name, DNS_T_TXT);
    }
}

/* The body hashes of one message, one per (canonicalization, hash, l=). */
struct body_memo {
    int relaxed, sha256;
    long long l;
    unsigned char digest[32];
    size_t dlen, wrote;
};

static const struct body_memo *body_hash(struct body_memo *memo, size_t *n, const struct message *m,
                                         int relaxed, int sha256, long long l)
{
    for (size_t i = 0; i < *n; i++)
        if (memo[i].relaxed == relaxed && memo[i].sha256 == sha256 && memo[i].l == l) return &memo[i];
    struct body_memo *b = &memo[(*n)++];
    b->relaxed = relaxed, b->sha256 = sha256, b->l = l;
    dkim_body_hash(m->body, m->body_len, relaxed, sha256, l, b->digest, &b->dlen, &b->wrote);
    return b;
}

static void b64encode(const unsigned char *d, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (; n >= 3; d += 3, n -= 3) {
        *out++ = a[d[0] >> 2], *out++ = a[(d[0] & 3) << 4 | d[1] >> 4];
        *out++ = a[(d[1] & 15) << 2 | d[2] >> 6], *out++ = a[d[2] & 63];
    }
    if (n) {
        *out++ = a[d[0] >> 2];
        *out++ = a[(d[0] & 3) << 4 | (n > 1 ? d[1] >> 4 : 0)];
        *out++ = n > 1 ? a[(d[1] & 15) << 2] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

static const char *tag(DKIM_SIGINFO *sig, const char *name)
{
    return (const char *)dkim_sig_gettagvalue(sig, false, (u_char *)name);
}

/* libopendkim's dkim_sig_process() for a signature it left to us, in its order: at
 * the end of the header the key and the signature over the header hash, then t=s
 * (i= must be in d= itself); at the end of the message l= against the body, then
 * the body hash.  Returns 0, -1 on out-of-memory. */
static int verify_sig(struct verify_run *run, DKIM *d, DKIM_SIGINFO *sig, const struct message *m,
                      struct body_memo *memo, size_t *nmemo, struct sig_state *st)
{
    dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
    dkim_canon_t hc = DKIM_CANON_UNKNOWN, bc = DKIM_CANON_UNKNOWN;
    u_char rec[KEY_BUF];
    size_t reclen = 0;
    (void)dkim_sig_getsignalg(sig, &alg);
    (void)dkim_sig_getcanons(sig, &hc, &bc);
    int hashtype = alg == DKIM_SIGN_RSASHA1 ? DKIM_KEY_SHA1 : DKIM_KEY_SHA256;

    st->error = DKIM_SIGERROR_UNKNOWN;
    st->flags = 0;
    st->bh = DKIM_SIGBH_UNTESTED;
    st->bits = 0;
    if (fetch_key(run, sig, rec, sizeof rec, &reclen) != DKIM_CBSTAT_CONTINUE) {
        st->error = DKIM_SIGERROR_NOKEY;
        st->flags = DKIM_SIGFLAG_PROCESSED;
    } else {
        struct dkim_key_use use;
        dkim_key_use((const char *)rec, reclen, alg, hashtype, &use);
        st->error = use.error;
        st->flags = use.flags;
        st->bits = use.bits;
        if (use.error == DKIM_SIGERROR_UNKNOWN) {
            void *hh, *bh;
            size_t hhlen, bhlen;
            const char *b = tag(sig, "b");
            size_t blen = b ? strlen(b) : 0;
            unsigned char small[1024], *raw = blen <= sizeof small ? small : malloc(blen);
            if (!raw) return -1;
            int got = b ? dkim_key_b64decode(b, raw, blen) : -1;
            int ok = got >= 0 && dkim_sig_gethashes(sig, &hh, &hhlen, &bh, &bhlen) == DKIM_STAT_OK
                     ? dkim_key_verify(&use, alg, hashtype, hh, hhlen, raw, (size_t)got) : -1;
            if (raw != small) free(raw);
            if (ok < 0) {
                st->error = DKIM_SIGERROR_KEYDECODE;
            } else {
                st->flags |= DKIM_SIGFLAG_PROCESSED;
                if (ok) st->flags |= DKIM_SIGFLAG_PASSED;
                else st->error = DKIM_SIGERROR_BADSIG;
                const char *dom = tag(sig, "d"), *id = tag(sig, "i");
                if ((st->flags & DKIM_SIGFLAG_NOSUBDOMAIN) && dom && id) {
                    const char *at = strchr(id, '@');
                    if (strcasecmp(at ? at + 1 : id, dom) != 0) st->error = DKIM_SIGERROR_SUBDOMAIN;
                }
            }
        }
    }
    ssize_t signlen = -1;
    (void)dkim_sig_getcanonlen(d, sig, NULL, NULL, &signlen);
    const struct body_memo *body = body_hash(memo, nmemo, m, bc == DKIM_CANON_RELAXED,
                                             hashtype == DKIM_KEY_SHA256, signlen);
    if (signlen >= 0 && body->wrote < (size_t)signlen) st->error = DKIM_SIGERROR_TOOLARGE_L;
    if (st->error == DKIM_SIGERROR_UNKNOWN) {              /* the signature held */
        char b64[64];
        const char *want = tag(sig, "bh");
        b64encode(body->digest, body->dlen, b64);
        if (want && strcmp(want, b64) == 0) {
            st->bh = DKIM_SIGBH_MATCH;
            st->error = DKIM_SIGERROR_OK;
        } else {
            st->bh = DKIM_SIGBH_MISMATCH;
            st->error = DKIM_SIGERROR_BADSIG;
        }
    }
    return 0;
}

/* The state libopendkim left a signature in. */
static void library_state(DKIM_SIGINFO *sig, struct sig_state *st)
{
    dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
    unsigned bits = 0;
    (void)dkim_sig_getsignalg(sig, &alg);
    st->error = dkim_sig_geterror(sig);
    st->flags = dkim_sig_getflags(sig);
    st->bh = dkim_sig_getbh(sig);
    /* Known once the key was applied (DKIM_STAT_INVALID before). */
    st->bits = alg != DKIM_SIGN_ED25519SHA256 && dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK ? bits : 0;
}

int dkim_check(dkim_verifier *v, dns_ctx *dns, const struct message *m, struct as_dkim *out)
{
    struct sig_tags *tags = NULL;
    struct sig_state *state = NULL;
    struct body_memo *memo = NULL;
    unsigned char *mine = NULL;
    struct verify_run run = {0};
    DKIM *d = NULL;
    DKIM_SIGINFO **siglist = NULL;
    int nsiglist = 0;
    size_t nmemo = 0;
    const char *msg_error = NULL;
    char msg_err_buf[160];
    DKIM_STAT st;
    size_t total = message_header_count(m, "DKIM-Signature");

    memset(out, 0, sizeof *out);
    if (total == 0) return 0;
    size_t n = total < v->max_sigs ? total : v->max_sigs;
    out->ignored = total - n;
    if (!(out->sigs = calloc(n, sizeof *out->sigs)) || !(tags = calloc(n, sizeof *tags)) ||
        !(run.notes = calloc(n, sizeof *run.notes)) || !(state = calloc(n, sizeof *state)) ||
        !(memo = calloc(n, sizeof *memo)) || !(mine = calloc(n, 1)))
        goto oom;
    out->n = n;
    run.cap = n;
    run.dns = dns;

    /* Ask for every key at once; the lookups run while the message is hashed. */
    for (size_t i = 0; i < n; i++) {
        const struct msg_header *h = message_header(m, "DKIM-Signature", i);
        char name[MAX_DNS_NAME + 2];
        if (tags_parse(h->value, h->value_len, &tags[i]) != 0) goto oom;
        if (key_name(name, sizeof name, tags[i].s, tags[i].d) == 0) dns_prefetch(dns, name, DNS_T_TXT);
    }

    d = (dkim_verify)(v->reference ? lib_ref : lib_fast, (const u_char *)"authscore", NULL, &st);   /* libopendkim's, not the macro */
    if (!d) {
        if (st == DKIM_STAT_NORESOURCE) goto oom;
        snprintf(msg_err_buf, sizeof msg_err_buf, "%s", stat_str(NULL, st));
        msg_error = msg_err_buf;
        goto report;
    }
    dkim_set_user_context(d, &run);

    /* Signatures past the limit never reach libopendkim: bounded time and memory. */
    size_t seen = 0;
    for (size_t i = 0; i < m->nhdr && !msg_error; i++) {
        const struct msg_header *h = &m->hdr[i];
        int is_sig = is_sig_header(h);
        if (is_sig && seen++ >= n) continue;
        st = dkim_header(d, (u_char *)h->raw, h->raw_len);
        if (st == DKIM_STAT_NORESOURCE) goto oom;
        /* A malformed DKIM-Signature is refused here, yet kept with its error
         * (BADSIGHANDLES): only that signature is lost. */
        if (st != DKIM_STAT_OK && !is_sig) {
            snprintf(msg_err_buf, sizeof msg_err_buf, "header field %zu: %s", i + 1, stat_str(d, st));
            msg_error = msg_err_buf;
        }
    }
    if (!msg_error) {
        st = dkim_eoh(d);
        if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG) {
            if (st == DKIM_STAT_NORESOURCE) goto oom;
            snprintf(msg_err_buf, sizeof msg_err_buf, "%s", stat_str(d, st));
            msg_error = msg_err_buf;
        }
    }
    if (!msg_error && st == DKIM_STAT_OK) {
        if (v->reference) {
            if (m->body_len && (st = dkim_body(d, (u_char *)m->body, m->body_len)) != DKIM_STAT_OK) {
                if (st == DKIM_STAT_NORESOURCE) goto oom;
                snprintf(msg_err_buf, sizeof msg_err_buf, "%s", stat_str(d, st));
                msg_error = msg_err_buf;
            }
        } else if (dkim_getsiglist(d, &siglist, &nsiglist) == DKIM_STAT_OK && (size_t)nsiglist == n) {
            /* The signatures libopendkim parsed without error are ours from here; it
             * still finishes their header hashes in dkim_eom(), with no body given. */
            for (size_t i = 0; i < n; i++) {
                mine[i] = dkim_sig_geterror(siglist[i]) == DKIM_SIGERROR_UNKNOWN;
                dkim_sig_ignore(siglist[i]);
            }
        }
        if (!msg_error) {
            st = dkim_eom(d, NULL);
            if (st == DKIM_STAT_NORESOURCE) goto oom;
            /* Other statuses sum up the signature libopendkim picked: each
             * signature's own state below says more. */
        }
    }
    if (!msg_error && (dkim_getsiglist(d, &siglist, &nsiglist) != DKIM_STAT_OK || nsiglist < 0))
        nsiglist = 0, siglist = NULL;

report:
    for (size_t i = 0; i < n; i++) {
        /* libopendkim lists signatures in header order, one handle each (BADSIGHANDLES). */
        DKIM_SIGINFO *sig = (size_t)nsiglist == n ? siglist[i] : NULL;
        if (sig && mine[i] && verify_sig(&run, d, sig, m, memo, &nmemo, &state[i]) != 0) goto oom;
        else if (sig && !mine[i]) library_state(sig, &state[i]);
    }
    for (size_t i = 0; i < n; i++) {
        DKIM_SIGINFO *sig = (size_t)nsiglist == n ? siglist[i] : NULL;
        const struct key_note *k = NULL;
        for (size_t j = 0; sig && j < run.nnotes; j++)
            if (run.notes[j].sig == sig) k = &run.notes[j];
        if (describe(&out->sigs[i], d, sig, &tags[i], &state[i]) != 0 ||
            verdict(&out->sigs[i], sig, &tags[i], k, &state[i], msg_error) != 0)
            goto oom;
    }
    if (d) dkim_free(d);
    for (size_t i = 0; i < n; i++) tags_free(&tags[i]);
    free(tags);
    free(run.notes);
    free(state);
    free(memo);
    free(mine);
    return 0;
oom:
    if (d) dkim_free(d);
    for (size_t i = 0; tags && i < out->n; i++) tags_free(&tags[i]);
    free(tags);
    free(run.notes);
    free(state);
    free(memo);
    free(mine);
    as_dkim_clear(out);
    return -1;
}

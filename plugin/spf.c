/* spf.c - RFC 7208 check_host(): strict record parser, macro expander and evaluator over the DNS layer */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "netaddr.h"
#include "spf.h"

#define SPF_MAX_RECORD     4096         /* one record's bytes; RFC 7208 3.4 advises under 450 */
#define SPF_MAX_DNS_TERMS  10           /* 4.6.4: include a mx ptr exists redirect, whole check */
#define SPF_MAX_VOID       2            /* 4.6.4: lookups answering NXDOMAIN or nothing */
#define SPF_MAX_MX         10           /* 4.6.4: more MX names is permerror */
#define SPF_MAX_PTR        10           /* 4.6.4: PTR names past these are ignored */
#define SPF_MAX_DEPTH      16           /* include/redirect nesting; the term limit stops it first */
#define SPF_MAX_NAME       253
#define SPF_MAX_EXPLAIN    512          /* explanation text kept: it ends up in an SMTP reply */
#define SPF_EXPAND_BUDGET  (1u << 20)   /* macro value bytes transformed per check */
#define SPF_DEFAULT_EXP    "%{o} does not designate %{c} as a permitted sender"

#define XBUF_CAP 2048                   /* domain expansions keep the right end (7.3 truncation) */

enum mech { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };
static const char *const mech_names[] = { "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists" };

struct term {
    char qual;                 /* + - ~ ? */
    unsigned char mech;
    const char *dom;           /* domain-spec, NULL when absent */
    unsigned cidr4, cidr6;
    struct netaddr net;        /* ip4 / ip6 */
    size_t off, len;           /* the term as written, in record.text */
};

struct record {
    char *text;                /* as published, for reasons */
    char *buf;                 /* the same, cut into NUL-terminated pieces */
    struct term *t;
    size_t n;
    const char *redirect, *exp;
    /* Parsed once per process (record_get): shared, reference counted, read-only. */
    int refs;
    uint32_t hash;
    char *key;                 /* the record as published, also when it does not parse */
    size_t keylen;
    char *err;                 /* its syntax error, NULL when it parsed */
};

struct spf_eval {
    dns_ctx *dns;
    struct netaddr ip;
    char ip_text[INET6_ADDRSTRLEN];     /* %{c} */
    char ip_dots[80];                   /* %{i}: dotted quad, or 32 dotted nibbles */
    char rev_name[80];                  /* PTR question */
    char *sender;                       /* %{s} */
    const char *local, *sender_dom, *helo, *receiver, *default_exp;
    unsigned dns_terms, voids, depth;
    size_t budget;
    char **pnames;                      /* validated names of ip, for %{p}; NULL until asked */
    size_t npnames;
    int pdone, oom;
    int err;                            /* a mechanism's error result */
    char reason[300];
};

struct macro {
    char letter;                        /* lowercase; 0 for %% %_ %- */
    const char *lit;                    /* their expansion */
    int upper, reverse;
    unsigned digits;                    /* 0 = all parts */
    char delims[8];
};

struct xbuf {
    char s[XBUF_CAP + 1];
    size_t len, max;
    int tail;                           /* keep the right end when over max */
};

enum { NO_MATCH = 0, MATCH = 1, FAILED = 2 };

static void reason(struct spf_eval *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(struct spf_eval *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
    for (char *p = e->reason; *p; p++)   /* names come from mail and DNS: keep the line printable */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
}

static int fail_with(struct spf_eval *e, enum as_result r)
{
    e->err = r;
    return FAILED;
}

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c; }

/* ---- macros (RFC 7208 section 7) ---- */

/* Parse the macro at s[0] == '%'.  exp: the letters c, r, t are allowed.
 * Returns the bytes used, 0 on a syntax error. */
static size_t macro_parse(const char *s, size_t n, int exp, struct macro *m)
{
    memset(m, 0, sizeof *m);
    if (n < 2) return 0;
    switch (s[1]) {
    case '%': m->lit = "%"; return 2;
    case '_': m->lit = " "; return 2;
    case '-': m->lit = "%20"; return 2;
    case '{': break;
    default: return 0;
    }
    size_t i = 2;
    if (i >= n) return 0;
    char c = (char)lower(s[i]);
    if (!strchr(exp ? "slodipvhcrt" : "slodipvh", c) || !c) return 0;
    m->letter = c;
    m->upper = s[i] != c;
    i++;
    int digits = 0;
    while (i < n && is_digit(s[i])) {
        if (m->digits < 1000) m->digits = m->digits * 10 + (unsigned)(s[i] - '0');
        digits = 1;
        i++;
    }
    if (digits && m->digits == 0) return 0;            /* 7.3: the value MUST be nonzero */
    if (i < n && lower(s[i]) == 'r') { m->reverse = 1; i++; }
    size_t nd = 0;
    while (i < n && strchr(".-+,/_=", s[i]) && s[i]) {
        if (nd < sizeof m->delims - 1 && !strchr(m->delims, s[i])) m->delims[nd++] = s[i];
        i++;
    }
    if (i >= n || s[i] != '}') return 0;
    return i + 1;
}

/* Check s[0..n) as a macro-string (space_ok: an explain-string).  *lit_start is where
 * the literal text after the last macro begins (n when it ends with a macro).  0 or -1. */
static int macro_check(const char *s, size_t n, int exp, int space_ok, size_t *lit_start)
{
    size_t ls = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            struct macro m;
            size_t k = macro_parse(s + i, n - i, exp, &m);
            if (!k) return -1;
            i += k;
            ls = i;
        } else if ((c >= 0x21 && c <= 0x7e) || (c == ' ' && space_ok)) {
            i++;
        } else {
            return -1;
        }
    }
    if (lit_start) *lit_start = ls;
    return 0;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel_ok(const char *s, size_t n)
{
    int alpha = 0, dash = 0;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-') dash = 1;
        else if (is_alpha(s[i])) alpha = 1;
        else if (!is_digit(s[i])) return 0;
    }
    if (dash) return is_alnum(s[0]) && is_alnum(s[n - 1]);
    return alpha;
}

/* domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand */
static int domain_spec_ok(const char *s, size_t n)
{
    size_t ls;
    if (n == 0 || macro_check(s, n, 0, 0, &ls) < 0) return 0;
    if (ls == n) return 1;
    size_t end = n;
    if (s[end - 1] == '.') end--;
    size_t dot = end;
    while (dot > ls && s[dot - 1] != '.') dot--;
    if (dot == ls) return 0;            /* no "." before the toplabel in the literal tail */
    return toplabel_ok(s + dot, end - dot);
}

static void xput(struct xbuf *b, char c)
{
    if (b->len == b->max) {
        if (!b->tail) return;
        memmove(b->s, b->s + b->max / 2, b->max - b->max / 2);
        b->len = b->max - b->max / 2;
    }
    b->s[b->len++] = c;
}

static void xput_url(struct xbuf *b, char c, int escape)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!escape || is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        xput(b, c);
        return;
    }
    xput(b, '%');
    xput(b, hex[(unsigned char)c >> 4]);
    xput(b, hex[(unsigned char)c & 15]);
}

/* Split v at the delimiters, optionally reverse, keep the rightmost parts, join with "."
 * (7.3), in one pass and without allocating. */
static void put_value(struct xbuf *b, const char *v, const struct macro *m)
{
    const char *dl = m->delims[0] ? m->delims : ".";
    size_t n = strlen(v), parts = 1, i;
    for (i = 0; i < n; i++)
        if (strchr(dl, v[i])) parts++;
    size_t keep = m->digits && m->digits < parts ? m->digits : parts;
    if (!m->reverse) {
        size_t skip = parts - keep;
        for (i = 0; skip && i < n; i++)
            if (strchr(dl, v[i])) skip--;
        for (; i < n; i++) xput_url(b, strchr(dl, v[i]) ? '.' : v[i], m->upper);
        return;
    }
    /* reversed, the rightmost keep parts are the first keep parts, last one first */
    size_t end = 0, seen = 0;
    while (end < n && !(strchr(dl, v[end]) && ++seen == keep)) end++;
    for (size_t k = 0; k < keep; k++) {
        size_t start = end;
        while (start > 0 && !strchr(dl, v[start - 1])) start--;
        if (k) xput(b, '.');
        for (i = start; i < end; i++) xput_url(b, v[i], m->upper);
        if (start == 0) break;
        end = start - 1;
    }
}

static int ptr_validated(struct spf_eval *e);

static const char *p_value(struct spf_eval *e, const char *domain)
{
    if (ptr_validated(e) < 0 || !e->npnames) return "unknown";
    size_t dl = strlen(domain);
    for (size_t i = 0; i < e->npnames; i++)
        if (strcasecmp(e->pnames[i], domain) == 0) return e->pnames[i];
    for (size_t i = 0; i < e->npnames; i++) {
        size_t l = strlen(e->pnames[i]);
        if (l > dl && e->pnames[i][l - dl - 1] == '.' && strcasecmp(e->pnames[i] + l - dl, domain) == 0)
            return e->pnames[i];
    }
    return e->pnames[0];
}

/* Expand s[0..n) (already syntax-checked) into b, domain being %{d}.  0, or -1 when the
 * expansion budget is spent or memory ran out. */
static int expand(struct spf_eval *e, const char *s, size_t n, int exp, const char *domain, struct xbuf *b)
{
    char tbuf[24];
    for (size_t i = 0; i < n;) {
        if (s[i] != '%') { xput(b, s[i++]); continue; }
        struct macro m;
        size_t k = macro_parse(s + i, n - i, exp, &m);
        if (!k) return -1;
        i += k;
        if (m.lit) {
            for (const char *p = m.lit; *p; p++) xput(b, *p);
            continue;
        }
        const char *v = "";
        switch (m.letter) {
        case 's': v = e->sender; break;
        case 'l': v = e->local; break;
        case 'o': v = e->sender_dom; break;
        case 'd': v = domain; break;
        case 'i': v = e->ip_dots; break;
        case 'p': v = p_value(e, domain); if (e->oom) return -1; break;
        case 'v': v = e->ip.family == 4 ? "in-addr" : "ip6"; break;
        case 'h': v = e->helo; break;
        case 'c': v = e->ip_text; break;
        case 'r': v = e->receiver; break;
        case 't': snprintf(tbuf, sizeof tbuf, "%lld", (long long)time(NULL)); v = tbuf; break;
        }
        size_t vl = strlen(v) + 1;
        if (vl > e->budget) return -1;
        e->budget -= vl;
        put_value(b, v, &m);
    }
    return 0;
}

/* Expand a domain-spec to a name for a query: trailing dot dropped, then labels cut from
 * the left until it fits 253 octets (7.3).  out gets "" when nothing usable remains. */
static int expand_name(struct spf_eval *e, const char *spec, const char *domain, char out[SPF_MAX_NAME + 1])
{
    struct xbuf b;
    b.len = 0, b.max = XBUF_CAP, b.tail = 1;
    if (expand(e, spec, strlen(spec), 0, domain, &b) < 0) return -1;
    size_t len = b.len, start = 0;
    if (len && b.s[len - 1] == '.') len--;
    while (len - start > SPF_MAX_NAME) {
        const char *dot = memchr(b.s + start, '.', len - start);
        start = dot ? (size_t)(dot - b.s) + 1 : len;
    }
    memcpy(out, b.s + start, len - start);
    out[len - start] = '\0';
    return 0;
}

/* ---- names ---- */

/* Labels of 1..63 octets, 253 in all: something a query can carry. */
static int name_usable(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > SPF_MAX_NAME) return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (label == 0 || label > 63) return 0;
            label = 0;
        } else {
            label++;
        }
    }
    return 1;
}

/* Presentation form for the DNS layer: octets other than letters, digits, '-', '_' and
 * the label dots as \DDD (macro expansions can hold anything). */
static void name_escape(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 5 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_alnum(c) || c == '-' || c == '_' || c == '.') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, outlen - o, "\\%03u", c);
    }
    out[o] = '\0';
}

/* A name from the DNS layer (\X and \DDD escapes) back to octets; NUL octets become '?'. */
static void name_unescape(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    while (*s && o + 1 < outlen) {
        if (s[0] == '\\' && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3])) {
            int v = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
            out[o++] = v > 0 && v < 256 ? (char)v : '?';
            s += 4;
        } else if (s[0] == '\\' && s[1]) {
            out[o++] = s[1];
            s += 2;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
}

static struct dns_answer *query(struct spf_eval *e, const char *name, uint16_t type)
{
    char q[4 * SPF_MAX_NAME + 8];
    name_escape(name, q, sizeof q);
    return dns_query(e->dns, q, type);
}

static void prefetch(struct spf_eval *e, const char *name, uint16_t type)
{
    char q[4 * SPF_MAX_NAME + 8];
    name_escape(name, q, sizeof q);
    dns_prefetch(e->dns, q, type);
}

static const char *type_name(uint16_t t)
{
    switch (t) {
    case DNS_T_A: return "A";
    case DNS_T_AAAA: return "AAAA";
    case DNS_T_MX: return "MX";
    case DNS_T_PTR: return "PTR";
    default: return "TXT";
    }
}

static int dns_trouble(struct spf_eval *e, const struct dns_answer *a, const char *name, uint16_t type)
{
    reason(e, "DNS failure for %s %s: %s", type_name(type), name, a->errstr[0] ? a->errstr : "error");
    return fail_with(e, AS_TEMPERROR);
}

/* 4.6.4: a term whose lookup found nothing. */
static int void_lookup(struct spf_eval *e)
{
    if (++e->voids > SPF_MAX_VOID) {
        reason(e, "void lookup limit (%d) exceeded", SPF_MAX_VOID);
        return fail_with(e, AS_PERMERROR);
    }
    return NO_MATCH;
}

static int addr_match(const struct spf_eval *e, const struct dns_rr *rr, unsigned bits)
{
    struct netaddr a;
    memset(&a, 0, sizeof a);
    if (rr->type == DNS_T_A && e->ip.family == 4) {
        a.family = 4;
        memcpy(a.a, &rr->u.a, 4);
    } else if (rr->type == DNS_T_AAAA && e->ip.family == 6) {
        a.family = 6;
        memcpy(a.a, &rr->u.aaaa, 16);
    } else {
        return 0;
    }
    return netaddr_match(&e->ip, &a, bits);
}

/* Whether name has an address record matching the client.  1 yes, 0 no, -1 DNS
 * trouble (*ap then holds the answer for the caller to report and release). */
static int host_match(struct spf_eval *e, const char *name, unsigned bits, struct dns_answer **ap)
{
    uint16_t type = e->ip.family == 4 ? DNS_T_A : DNS_T_AAAA;
    struct dns_answer *a = query(e, name, type);
    *ap = a;
    if (a->status == DNS_TEMPFAIL) return -1;
    int hit = 0;
    for (size_t i = 0; a->status == DNS_OK && i < a->n && !hit; i++) hit = addr_match(e, &a->rr[i], bits);
    return hit;
}

/* The names of the first SPF_MAX_PTR PTR records of the client, unescaped ("" for one
 * that cannot be a name); the PTR answer's status in *st. */
static size_t ptr_names(struct spf_eval *e, char names[][SPF_MAX_NAME + 1], enum dns_status *st)
{
    struct dns_answer *a = dns_query(e->dns, e->rev_name, DNS_T_PTR);
    size_t n = 0;
    *st = a->status == DNS_OK && a->n == 0 ? DNS_NODATA : a->status;
    for (; a->status == DNS_OK && n < a->n && n < SPF_MAX_PTR; n++) {
        char raw[4 * SPF_MAX_NAME + 8];
        name_unescape(a->rr[n].u.name, raw, sizeof raw);
        names[n][0] = '\0';
        if (strlen(raw) <= SPF_MAX_NAME) memcpy(names[n], raw, strlen(raw) + 1);
    }
    dns_answer_release(a);
    return n;
}

static int name_within(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    if (n == d) return strcasecmp(name, domain) == 0;
    return n > d && name[n - d - 1] == '.' && strcasecmp(name + n - d, domain) == 0;
}

/* Which names map back to the client (5.5), their addresses asked together.  DNS
 * errors skip a name; "" entries are skipped. */
static void validate(struct spf_eval *e, char names[][SPF_MAX_NAME + 1], size_t n, int *ok)
{
    uint16_t type = e->ip.family == 4 ? DNS_T_A : DNS_T_AAAA;
    for (size_t i = 0; i < n; i++)
        if (name_usable(names[i])) prefetch(e, names[i], type);
    for (size_t i = 0; i < n; i++) {
        struct dns_answer *a;
        ok[i] = 0;
        if (!name_usable(names[i])) continue;
        ok[i] = host_match(e, names[i], e->ip.family == 4 ? 32 : 128, &a) == 1;
        dns_answer_release(a);
    }
}

/* The validated names for %{p}, computed once per check.  0, or -1 on OOM. */
static int ptr_validated(struct spf_eval *e)
{
    char names[SPF_MAX_PTR][SPF_MAX_NAME + 1];
    int ok[SPF_MAX_PTR];
    enum dns_status st;
    if (e->pdone) return e->oom ? -1 : 0;
    e->pdone = 1;
    size_t n = ptr_names(e, names, &st);
    validate(e, names, n, ok);
    if (!(e->pnames = calloc(n ? n : 1, sizeof *e->pnames))) { e->oom = 1; return -1; }
    for (size_t i = 0; i < n; i++)
        if (ok[i] && !(e->pnames[e->npnames++] = strdup(names[i]))) { e->oom = 1; return -1; }
    return 0;
}

/* ---- records ---- */

static void record_free(struct record *r)
{
    free(r->text);
    free(r->buf);
    free(r->t);
}

/* ---- records seen before ---- */

#define RECORD_CACHE 128       /* direct-mapped: a colliding record replaces the older one */

static struct record *record_cache[RECORD_CACHE];

static void record_release(struct record *r)
{
    if (r && --r->refs == 0) {
        record_free(r);
        free(r->key);
        free(r->err);
        free(r);
    }
}

static int record_parse(struct record *r, const char *txt, size_t len, char *err, size_t errlen);

/* The record txt[0..len) parsed, from the cache or parsed now and remembered; the
 * caller holds one reference (record_release).  NULL on out-of-memory. */
static struct record *record_get(const char *txt, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)txt[i]) * 16777619u;
    struct record **slot = &record_cache[h % RECORD_CACHE], *r = *slot;
    if (r && r->hash == h && r->keylen == len && memcmp(r->key, txt, len) == 0) {
        r->refs++;
        return r;
    }
    char err[160];
    if (!(r = calloc(1, sizeof *r))) return NULL;
    int rc = record_parse(r, txt, len, err, sizeof err);
    if (rc == -2 || !(r->key = malloc(len + 1)) || (rc < 0 && !(r->err = strdup(err)))) {
        record_free(r);
        free(r->key);
        free(r);
        return NULL;
    }
    memcpy(r->key, txt, len);
    r->key[len] = '\0';
    r->keylen = len;
    r->hash = h;
    r->refs = 2;                                   /* the cache's and the caller's */
    record_release(*slot);
    *slot = r;
    return r;
}

void spf_cache_flush(void)
{
    for (size_t i = 0; i < RECORD_CACHE; i++) {
        record_release(record_cache[i]);
        record_cache[i] = NULL;
    }
}

/* "/N" ending s[0..n): 1 found (*pos = the '/', *v = N), 0 none, -1 when N has a
 * leading zero or over 3 digits. */
static int cidr_at_end(const char *s, size_t n, size_t *pos, unsigned *v)
{
    size_t d = n;
    while (d > 0 && is_digit(s[d - 1])) d--;
    if (d == n || d == 0 || s[d - 1] != '/') return 0;
    if ((s[d] == '0' && n - d > 1) || n - d > 3) return -1;
    *v = 0;
    for (size_t i = d; i < n; i++) *v = *v * 10 + (unsigned)(s[i] - '0');
    *pos = d - 1;
    return 1;
}

/* One term, NUL-terminated at s[n].  1 a directive (t filled), 0 a modifier, -1 error. */
static int parse_term(struct record *r, char *s, size_t n, struct term *t, char *err, size_t errlen)
{
    /* modifier: name "=" ..., name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
    size_t k = 0;
    if (is_alpha(s[0]))
        for (k = 1; k < n && (is_alnum(s[k]) || s[k] == '-' || s[k] == '_' || s[k] == '.'); k++) continue;
    if (k && k < n && s[k] == '=') {
        const char *v = s + k + 1;
        size_t vn = n - k - 1;
        const char **slot = NULL;
        if (k == 8 && strncasecmp(s, "redirect", 8) == 0) slot = &r->redirect;
        else if (k == 3 && strncasecmp(s, "exp", 3) == 0) slot = &r->exp;
        if (!slot) {
            if (macro_check(v, vn, 1, 0, NULL) == 0) return 0;   /* unknown: ignored (6) */
            snprintf(err, errlen, "bad macro in modifier \"%.*s\"", (int)(k < 40 ? k : 40), s);
            return -1;
        }
        if (*slot) { snprintf(err, errlen, "%s= given twice", k == 3 ? "exp" : "redirect"); return -1; }
        if (!domain_spec_ok(v, vn)) { snprintf(err, errlen, "bad domain in %.*s=", (int)k, s); return -1; }
        *slot = v;
        return 0;
    }
    t->qual = '+';
    if (strchr("+-~?", s[0])) { t->qual = s[0]; s++; n--; }
    size_t m = 0;
    while (m < n && s[m] != ':' && s[m] != '/') m++;
    t->mech = 255;
    for (unsigned i = 0; i < sizeof mech_names / sizeof *mech_names; i++)
        if (strlen(mech_names[i]) == m && strncasecmp(s, mech_names[i], m) == 0) t->mech = (unsigned char)i;
    if (t->mech == 255) {
        snprintf(err, errlen, "unknown mechanism \"%.*s\"", (int)(m < 40 ? m : 40), s);
        return -1;
    }
    char *rest = s + m;
    size_t rn = n - m;
    t->cidr4 = 32, t->cidr6 = 128;
    switch (t->mech) {
    case M_ALL:
        if (rn) goto bad;
        return 1;
    case M_INCLUDE: case M_EXISTS:
        if (rn < 1 || rest[0] != ':' || !domain_spec_ok(rest + 1, rn - 1)) goto bad;
        t->dom = rest + 1;
        return 1;
    case M_A: case M_MX: {                                /* [ ":" domain-spec ] [ dual-cidr-length ] */
        size_t cut = rn, pos;
        unsigned v;
        int c = cidr_at_end(rest, cut, &pos, &v);
        if (c == 1 && pos > 0 && rest[pos - 1] == '/') {
            if (v > 128) goto bad;
            t->cidr6 = v;
            cut = pos - 1;
            c = cidr_at_end(rest, cut, &pos, &v);
        }
        if (c < 0 || (c == 1 && v > 32)) goto bad;
        if (c == 1) { t->cidr4 = v; cut = pos; }
        if (cut == 0) return 1;
        if (rest[0] != ':' || !domain_spec_ok(rest + 1, cut - 1)) goto bad;
        rest[cut] = '\0';
        t->dom = rest + 1;
        return 1;
    }
    case M_PTR:
        if (rn == 0) return 1;
        if (rest[0] != ':' || !domain_spec_ok(rest + 1, rn - 1)) goto bad;
        t->dom = rest + 1;
        return 1;
    case M_IP4: case M_IP6: {
        int v6 = t->mech == M_IP6;
        size_t cut = rn, pos;
        unsigned v;
        if (rn < 2 || rest[0] != ':') goto bad;
        int c = cidr_at_end(rest, cut, &pos, &v);
        if (c < 0 || (c == 1 && v > (v6 ? 128u : 32u))) goto bad;
        if (c == 1) {
            *(v6 ? &t->cidr6 : &t->cidr4) = v;
            cut = pos;
        }
        rest[cut] = '\0';
        memset(&t->net, 0, sizeof t->net);        /* ip6:::ffff:a.b.c.d stays IPv6: only v6 clients */
        t->net.family = v6 ? 6 : 4;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, rest + 1, t->net.a) != 1) goto bad;
        return 1;
    }
    }
bad:
    snprintf(err, errlen, "bad mechanism \"%.*s\"", (int)(t->len < 60 ? t->len : 60), r->text + t->off);
    return -1;
}

/* Parse a whole record (4.6: errors anywhere count).  0, -1 syntax error (err set), -2 OOM. */
static int record_parse(struct record *r, const char *txt, size_t len, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (len > SPF_MAX_RECORD) { snprintf(err, errlen, "record longer than %d bytes", SPF_MAX_RECORD); return -1; }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)txt[i] < 0x20 || (unsigned char)txt[i] > 0x7e) {
            snprintf(err, errlen, "byte 0x%02x in record", (unsigned char)txt[i]);
            return -1;
        }
    if (!(r->text = malloc(len + 1)) || !(r->buf = malloc(len + 1)) ||
        !(r->t = calloc(len / 2 + 1, sizeof *r->t)))
        return -2;
    memcpy(r->text, txt, len);
    memcpy(r->buf, txt, len);
    r->text[len] = r->buf[len] = '\0';
    for (size_t i = 6; i < len; i++) {      /* after "v=spf1"; terms are split at runs of SP */
        while (i < len && r->buf[i] == ' ') i++;
        if (i == len) break;
        size_t start = i;
        while (i < len && r->buf[i] != ' ') i++;
        r->buf[i] = '\0';
        struct term *t = &r->t[r->n];
        t->off = start;
        t->len = i - start;
        int rc = parse_term(r, r->buf + start, i - start, t, err, errlen);
        if (rc < 0) return -1;
        if (rc == 1) r->n++;
    }
    return 0;
}

/* ---- evaluation ---- */

static int check_host(struct spf_eval *e, const char *domain, int want_exp, char **exp_out);

/* The explanation for a fail (6.2): the exp= text when it can be had, else the default. */
static char *explain(struct spf_eval *e, const char *exp_spec, const char *domain)
{
    struct xbuf b;
    b.len = 0, b.max = SPF_MAX_EXPLAIN, b.tail = 0;
    char name[SPF_MAX_NAME + 1];
    if (exp_spec && expand_name(e, exp_spec, domain, name) == 0 && name_usable(name)) {
        struct dns_answer *a = query(e, name, DNS_T_TXT);
        if (a->status == DNS_OK && a->n == 1 &&
            macro_check(a->rr[0].u.txt.data, a->rr[0].u.txt.len, 1, 1, NULL) == 0 &&
            expand(e, a->rr[0].u.txt.data, a->rr[0].u.txt.len, 1, domain, &b) == 0) {
            dns_answer_release(a);
            goto done;
        }
        dns_answer_release(a);
    }
    if (e->oom) return NULL;
    b.len = 0;
    const char *def = e->default_exp;
    if (macro_check(def, strlen(def), 1, 1, NULL) < 0 || expand(e, def, strlen(def), 1, domain, &b) < 0) {
        b.len = 0;
        for (const char *p = def; *p; p++) xput(&b, *p);
    }
done:
    b.s[b.len] = '\0';
    for (char *p = b.s; *p; p++)    /* %{l} and friends are the sender's: keep an SMTP reply clean */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
    char *s = strdup(b.s);
    if (!s) e->oom = 1;
    return s;
}

static const char *target(struct spf_eval *e, const struct term *t, const char *domain, char buf[SPF_MAX_NAME + 1])
{
    if (!t->dom) return domain;
    if (expand_name(e, t->dom, domain, buf) < 0) return NULL;
    return buf;
}

static int match_include(struct spf_eval *e, const char *name)
{
    if (!name_usable(name)) {
        reason(e, "include:%s is not a usable domain", name);
        return fail_with(e, AS_PERMERROR);
    }
    switch (check_host(e, name, 0, NULL)) {
    case AS_PASS: return MATCH;
    case AS_FAIL: case AS_SOFTFAIL: case AS_NEUTRAL: return NO_MATCH;
    case AS_TEMPERROR: return fail_with(e, AS_TEMPERROR);
    case AS_NONE:
        reason(e, "include:%s has no SPF record", name);
        return fail_with(e, AS_PERMERROR);
    default: return fail_with(e, AS_PERMERROR);
    }
}

static int match_a(struct spf_eval *e, const char *name, unsigned bits)
{
    struct dns_answer *a;
    if (!name_usable(name)) return NO_MATCH;            /* no such name: 4.3, 5/10 */
    int hit = host_match(e, name, bits, &a);
    int r = hit > 0 ? MATCH : NO_MATCH;
    if (hit < 0) r = dns_trouble(e, a, name, e->ip.family == 4 ? DNS_T_A : DNS_T_AAAA);
    else if (a->status != DNS_OK || a->n == 0) r = void_lookup(e);
    dns_answer_release(a);
    return r;
}

static int match_mx(struct spf_eval *e, const char *name, unsigned bits)
{
    if (!name_usable(name)) return NO_MATCH;
    struct dns_answer *mx = query(e, name, DNS_T_MX);
    int r = NO_MATCH;
    if (mx->status == DNS_TEMPFAIL) {
        r = dns_trouble(e, mx, name, DNS_T_MX);
    } else if (mx->status != DNS_OK || mx->n == 0) {
        r = void_lookup(e);
    } else if (mx->n > SPF_MAX_MX) {
        reason(e, "more than %d MX records for %s", SPF_MAX_MX, name);
        r = fail_with(e, AS_PERMERROR);
    } else {
        uint16_t type = e->ip.family == 4 ? DNS_T_A : DNS_T_AAAA;
        char hosts[SPF_MAX_MX][SPF_MAX_NAME + 1];
        for (size_t i = 0; i < mx->n; i++) {
            char raw[4 * SPF_MAX_NAME + 8];
            name_unescape(mx->rr[i].u.mx.host, raw, sizeof raw);
            hosts[i][0] = '\0';
            if (name_usable(raw)) {                       /* "." (RFC 7505 null MX) is not */
                memcpy(hosts[i], raw, strlen(raw) + 1);
                prefetch(e, raw, type);
            }
        }
        for (size_t i = 0; i < mx->n && r == NO_MATCH; i++) {
            struct dns_answer *a;
            if (!hosts[i][0]) continue;
            int hit = host_match(e, hosts[i], bits, &a);
            if (hit < 0) r = dns_trouble(e, a, hosts[i], type);
            else if (hit) r = MATCH;
            dns_answer_release(a);
        }
    }
    dns_answer_release(mx);
    return r;
}

static int match_ptr(struct spf_eval *e, const char *name)
{
    char names[SPF_MAX_PTR][SPF_MAX_NAME + 1];
    int ok[SPF_MAX_PTR];
    enum dns_status st;
    size_t n = ptr_names(e, names, &st);
    if (st == DNS_TEMPFAIL) return NO_MATCH;             /* 5.5: a PTR lookup error is no match */
    if (st != DNS_OK) return void_lookup(e);
    for (size_t i = 0; i < n; i++)                       /* only names in the target can match */
        if (!name_within(names[i], name)) names[i][0] = '\0';
    validate(e, names, n, ok);
    for (size_t i = 0; i < n; i++)
        if (ok[i]) return MATCH;
    return NO_MATCH;
}

static int match_exists(struct spf_eval *e, const char *name)
{
    if (!name_usable(name)) return NO_MATCH;
    struct dns_answer *a = query(e, name, DNS_T_A);
    int r = MATCH;
    if (a->status == DNS_TEMPFAIL) r = dns_trouble(e, a, name, DNS_T_A);
    else if (a->status != DNS_OK || a->n == 0) r = void_lookup(e);
    dns_answer_release(a);
    return r;
}

static int dns_term(struct spf_eval *e)
{
    if (++e->dns_terms > SPF_MAX_DNS_TERMS) {
        reason(e, "DNS lookup limit (%d terms) exceeded", SPF_MAX_DNS_TERMS);
        return fail_with(e, AS_PERMERROR);
    }
    return NO_MATCH;
}

static int match(struct spf_eval *e, const struct term *t, const char *domain)
{
    char buf[SPF_MAX_NAME + 1];
    const char *name;
    unsigned bits = e->ip.family == 4 ? t->cidr4 : t->cidr6;
    switch (t->mech) {
    case M_ALL: return MATCH;
    case M_IP4: case M_IP6: return netaddr_match(&e->ip, &t->net, bits) ? MATCH : NO_MATCH;
    }
    if (dns_term(e) == FAILED) return FAILED;
    if (!(name = target(e, t, domain, buf))) {
        if (e->oom) return fail_with(e, AS_TEMPERROR);
        reason(e, "macro expansion limit reached in %s", domain);
        return fail_with(e, AS_PERMERROR);
    }
    switch (t->mech) {
    case M_INCLUDE: return match_include(e, name);
    case M_A: return match_a(e, name, bits);
    case M_MX: return match_mx(e, name, bits);
    case M_PTR: return match_ptr(e, name);
    default: return match_exists(e, name);
    }
}

static enum as_result qual_result(char q)
{
    switch (q) {
    case '-': return AS_FAIL;
    case '~': return AS_SOFTFAIL;
    case '?': return AS_NEUTRAL;
    default: return AS_PASS;
    }
}

/* The record at domain: 1 found (*r, released by the caller), 0 none (reason set),
 * or -1 with a result on error. */
static int find_record(struct spf_eval *e, const char *domain, struct record **r, enum as_result *res)
{
    struct dns_answer *a = query(e, domain, DNS_T_TXT);
    const struct dns_rr *spf = NULL;
    size_t count = 0;
    if (a->status == DNS_TEMPFAIL) {
        dns_trouble(e, a, domain, DNS_T_TXT);
        dns_answer_release(a);
        *res = AS_TEMPERROR;
        return -1;
    }
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
        const struct dns_rr *rr = &a->rr[i];
        if (rr->u.txt.len >= 6 && strncasecmp(rr->u.txt.data, "v=spf1", 6) == 0 &&
            (rr->u.txt.len == 6 || rr->u.txt.data[6] == ' ')) {
            spf = rr;
            count++;
        }
    }
    if (count == 0) {
        reason(e, "no SPF record at %s", domain);
        dns_answer_release(a);
        return 0;
    }
    if (count > 1) {
        reason(e, "%zu SPF records at %s", count, domain);
        dns_answer_release(a);
        *res = AS_PERMERROR;
        return -1;
    }
    *r = record_get(spf->u.txt.data, spf->u.txt.len);
    dns_answer_release(a);
    if (!*r) {
        e->oom = 1;
        *res = AS_TEMPERROR;
        return -1;
    }
    if ((*r)->err) {
        reason(e, "syntax error in SPF record of %s: %s", domain, (*r)->err);
        record_release(*r);
        *res = AS_PERMERROR;
        return -1;
    }
    return 1;
}

/* check_host() of RFC 7208 section 4.  want_exp: this record's exp= applies to a fail
 * (not inside include).  *exp_out gets the explanation of a fail when asked. */
static int check_host(struct spf_eval *e, const char *domain, int want_exp, char **exp_out)
{
    struct record *r;
    enum as_result res = AS_NEUTRAL;
    if (e->depth >= SPF_MAX_DEPTH) {
        reason(e, "include/redirect nesting deeper than %d", SPF_MAX_DEPTH);
        return AS_PERMERROR;
    }
    int found = find_record(e, domain, &r, &res);
    if (found <= 0) return found == 0 ? AS_NONE : (int)res;
    e->depth++;
    for (size_t i = 0; i < r->n; i++) {
        const struct term *t = &r->t[i];
        int m = match(e, t, domain);
        if (e->oom) { res = AS_TEMPERROR; goto out; }
        if (m == FAILED) { res = (enum as_result)e->err; goto out; }
        if (m == MATCH) {
            res = qual_result(t->qual);
            reason(e, "mechanism %.*s matched in %s", (int)(t->len < 80 ? t->len : 80), r->text + t->off, domain);
            if (res == AS_FAIL && want_exp) *exp_out = explain(e, r->exp, domain);
            goto out;
        }
    }
    if (r->redirect) {                                      /* 6.1; reached only without "all" (5.1) */
        char buf[SPF_MAX_NAME + 1];
        if (dns_term(e) == FAILED) { res = (enum as_result)e->err; goto out; }
        if (expand_name(e, r->redirect, domain, buf) < 0) {
            if (!e->oom) reason(e, "macro expansion limit reached in %s", domain);
            res = e->oom ? AS_TEMPERROR : AS_PERMERROR;
            goto out;
        }
        if (!name_usable(buf)) {
            reason(e, "redirect=%s is not a usable domain", buf);
            res = AS_PERMERROR;
            goto out;
        }
        res = (enum as_result)check_host(e, buf, want_exp, exp_out);
        if (res == AS_NONE) {
            reason(e, "redirect=%s has no SPF record", buf);
            res = AS_PERMERROR;
        }
        goto out;
    }
    res = AS_NEUTRAL;
    reason(e, "no mechanism matched in %s", domain);
out:
    e->depth--;
    record_release(r);
    return res;
}

/* ---- the identity ---- */

/* 4.3: a multi-label FQDN with labels of 1..63 octets, not an address literal. */
static int domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n && d[n - 1] == '.') n--;
    if (n == 0 || n > SPF_MAX_NAME || d[0] == '[' || !memchr(d, '.', n)) return 0;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || d[i] == '.') {
            if (label == 0 || label > 63) return 0;
            label = 0;
        } else if ((unsigned char)d[i] <= 0x20 || d[i] == 0x7f) {
            return 0;
        } else {
            label++;
        }
    }
    return 1;
}

static void ip_forms(struct spf_eval *e)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *a = e->ip.a;
    if (e->ip.family == 4) {
        inet_ntop(AF_INET, a, e->ip_text, sizeof e->ip_text);
        snprintf(e->ip_dots, sizeof e->ip_dots, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        snprintf(e->rev_name, sizeof e->rev_name, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return;
    }
    inet_ntop(AF_INET6, a, e->ip_text, sizeof e->ip_text);
    char *p = e->ip_dots, *q = e->rev_name;
    for (int i = 0; i < 16; i++) {
        *p++ = hex[a[i] >> 4], *p++ = '.', *p++ = hex[a[i] & 15], *p++ = '.';
        *q++ = hex[a[15 - i] & 15], *q++ = '.', *q++ = hex[a[15 - i] >> 4], *q++ = '.';
    }
    p[-1] = '\0';
    memcpy(q, "ip6.arpa", 9);
}

static char *dup_or(const char *s, size_t n, int *oom)
{
    char *d = strndup(s, n);
    if (!d) *oom = 1;
    return d;
}

int spf_check(dns_ctx *dns, const struct spf_request *req, struct as_spf *out)
{
    struct spf_eval e;
    char *local = NULL, *exp = NULL;
    const char *mf = req->mail_from, *dom;
    size_t domlen;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(&e, 0, sizeof e);
    e.dns = dns;
    e.helo = req->helo ? req->helo : "unknown";
    e.receiver = req->receiver ? req->receiver : "unknown";
    e.default_exp = req->default_exp ? req->default_exp : SPF_DEFAULT_EXP;
    e.budget = SPF_EXPAND_BUDGET;

    if (mf && *mf) {
        const char *at = strrchr(mf, '@');
        dom = at ? at + 1 : mf;
        local = at && at > mf ? dup_or(mf, (size_t)(at - mf), &e.oom) : dup_or("postmaster", 10, &e.oom);
    } else if (req->helo && *req->helo) {
        out->helo = 1;
        dom = req->helo;
        local = dup_or("postmaster", 10, &e.oom);
    } else {
        out->result = AS_NONE;
        out->reason = strdup("no MAIL FROM domain and no HELO name to check");
        return out->reason ? 0 : -1;
    }
    domlen = strlen(dom);
    if (domlen && dom[domlen - 1] == '.') domlen--;
    out->domain = dup_or(dom, domlen, &e.oom);
    if (e.oom) goto done;
    if ((e.sender = malloc(strlen(local) + domlen + 2)))
        sprintf(e.sender, "%s@%s", local, out->domain);
    if (!e.sender || !(out->mail_from = strdup(e.sender))) goto done;
    e.local = local;
    e.sender_dom = out->domain;

    if (!req->ip || netaddr_parse(req->ip, &e.ip) != 0) {
        out->result = AS_NONE;
        reason(&e, "client address \"%.60s\" does not parse", req->ip ? req->ip : "");
    } else if (!domain_ok(dom)) {
        out->result = AS_NONE;
        reason(&e, "\"%.80s\" is not a usable domain name", out->domain);
    } else {
        ip_forms(&e);
        out->result = (enum as_result)check_host(&e, out->domain, 1, &exp);
        if (e.oom) goto done;
        if (out->result == AS_FAIL) {
            out->explanation = exp ? exp : explain(&e, NULL, out->domain);
            exp = NULL;
            if (!out->explanation) goto done;
        }
    }
    if (!(out->reason = strdup(e.reason))) goto done;
    rc = 0;
done:
    free(exp);
    free(local);
    free(e.sender);
    for (size_t i = 0; i < e.npnames; i++) free(e.pnames[i]);
    free(e.pnames);
    if (rc) as_spf_clear(out);
    return rc;
}

void spf_prefetch(dns_ctx *dns, const struct spf_request *req)
{
    const char *mf = req->mail_from, *dom = NULL;
    char name[SPF_MAX_NAME + 2], q[4 * SPF_MAX_NAME + 8];
    struct netaddr ip;
    if (mf && *mf) {
        const char *at = strrchr(mf, '@');
        dom = at ? at + 1 : mf;
    } else if (req->helo && *req->helo) {
        dom = req->helo;
    }
    if (!dom || !req->ip || netaddr_parse(req->ip, &ip) != 0 || !domain_ok(dom)) return;
    size_t n = strlen(dom);
    if (dom[n - 1] == '.') n--;
    memcpy(name, dom, n);
    name[n] = '\0';
    name_escape(name, q, sizeof q);                 /* the very question check_host() asks first */
    dns_prefetch(dns, q, DNS_T_TXT);
}

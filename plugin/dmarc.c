/* dmarc.c - DMARC (RFC 7489): From domains, policy discovery over our DNS, alignment via libpsl, policy via libopendmarc */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <idn2.h>
#include <libpsl.h>
#include <opendmarc/dmarc.h>
#include "dmarc.h"

/* Why alignment is ours and not libopendmarc's: without a suffix list (whose
 * 7 ms load per process we refuse) its relaxed alignment compares reversed name
 * prefixes and, failing that, "organizational domains" it cannot compute: From
 * example.com aligns with d=x.com and From github.io with d=evil.github.io (both
 * measured on 1.4.2).  So alignment (RFC 7489 3.1) is computed here from libpsl's
 * registrable domain, and libopendmarc parses the record and picks the policy
 * (p or sp) that applies to a message that is not aligned.  It is never handed
 * the SPF or DKIM results, whose only use inside it is that broken alignment. */

#define PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dafsa"
#define DOMAIN_MAX 253
#define RUA_MAX 511

/* ---- organizational domain (libpsl) ---- */

static const psl_ctx_t *psl;
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

/* The list compiled into libpsl (Debian builds it from its publicsuffix package, the
 * list installed in /usr/share/publicsuffix): no file to read in each new process.
 * The installed file when libpsl has none.  Never freed: one per process. */
static void psl_init(void)
{
    psl = psl_builtin();
    if (!psl) psl = psl_load_file(PSL_FILE);
}

#define ORG_CACHE 128

static struct org_memo { char *domain, *org; } org_cache[ORG_CACHE];   /* org NULL: a public suffix */

static char lc(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 'a' - 'A') : c;
}

int dmarc_org_domain(const char *domain, char *out, size_t outlen)
{
    char buf[DOMAIN_MAX + 2];
    size_t len;
    int high = 0;

    if (!domain || !*domain || domain[0] == '.') return -1;
    len = strlen(domain);
    if (domain[len - 1] == '.') len--;                 /* absolute form */
    if (len == 0 || len > DOMAIN_MAX) return -1;
    for (size_t i = 0; i < len; i++) {
        if (domain[i] == '.' && (i + 1 == len || domain[i + 1] == '.')) return -1;
        if ((unsigned char)domain[i] >= 0x80) high = 1;
        buf[i] = lc(domain[i]);
    }
    buf[len] = '\0';
    if (high) {                                        /* lowercase the U-labels too */
        char *lower = NULL;
        if (psl_str_to_utf8lower(buf, "utf-8", NULL, &lower) != PSL_SUCCESS || !lower ||
            strlen(lower) > DOMAIN_MAX) {
            psl_free_string(lower);
            return -1;
        }
        strcpy(buf, lower);
        psl_free_string(lower);
    }
    /* A few names come back again and again (the From domain, its signers): remembered. */
    uint32_t h = 2166136261u;
    for (const char *p = buf; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    struct org_memo *m = &org_cache[h % ORG_CACHE];
    if (!m->domain || strcmp(m->domain, buf) != 0) {
        pthread_once(&psl_once, psl_init);
        if (!psl) return -1;
        const char *reg = psl_registrable_domain(psl, buf);
        char *d = strdup(buf), *o = reg ? strdup(reg) : NULL;
        if (!d || (reg && !o)) {
            free(d);
            free(o);
            if (!reg || strlen(reg) >= outlen) return -1;
            strcpy(out, reg);
            return 0;
        }
        free(m->domain);
        free(m->org);
        m->domain = d, m->org = o;
    }
    if (!m->org || strlen(m->org) >= outlen) return -1;
    strcpy(out, m->org);
    return 0;
}

/* The organizational domain, or the domain itself when it is a public suffix
 * (no fallback lookup then, and only an identical domain aligns with it). */
static void org_or_self(const char *domain, char *out, size_t outlen)
{
    if (dmarc_org_domain(domain, out, outlen) != 0) snprintf(out, outlen, "%s", domain);
}

/* ---- domain names: lowercase, IDN labels to A-labels (libidn2) ---- */

/* Normalise a domain as written (len bytes) into out[DOMAIN_MAX + 1]: one final
 * dot dropped, lowercased, non-ASCII labels turned into A-labels.  Host-name
 * characters and '_' only; every label 1..63 octets.  Returns 0, -1 if unusable. */
static int domain_normalize(const char *s, size_t len, char *out)
{
    char tmp[4 * DOMAIN_MAX + 2];
    int high = 0;

    if (len && s[len - 1] == '.') len--;
    if (len == 0 || len >= sizeof tmp) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) high = 1;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.'))
            return -1;
        tmp[i] = lc((char)c);
    }
    tmp[len] = '\0';
    char *ascii = NULL;
    const char *src = tmp;
    if (high) {
        if (idn2_to_ascii_8z(tmp, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK || !ascii) {
            idn2_free(ascii);
            return -1;
        }
        for (char *p = ascii; *p; p++) *p = lc(*p);
        src = ascii;
    }
    int rc = -1;
    size_t n = strlen(src);
    if (n > DOMAIN_MAX) goto out;
    for (const char *label = src;;) {
        const char *dot = strchr(label, '.');
        size_t llen = dot ? (size_t)(dot - label) : strlen(label);
        if (llen == 0 || llen > 63) goto out;
        if (!dot) break;
        label = dot + 1;
    }
    memcpy(out, src, n + 1);
    rc = 0;
out:
    idn2_free(ascii);
    return rc;
}

/* ---- From field parsing (RFC 5322 3.4, 4.4) ---- */

struct from_parser {
    struct dmarc_from *f;
    int in_angle;      /* inside <...> */
    int route;         /* inside an obsolete route "@a,@b:" of an angle-addr: its domains are not authors */
    int angle_fresh;   /* only CFWS since '<' (or since ',' in a route) */
    int collecting;    /* after '@': the domain is being read */
    int gap;           /* CFWS since the last token */
    int literal;       /* the domain is a [domain-literal] */
    int overflow;
    char dom[DOMAIN_MAX + 2];
    size_t dlen;
};

static void from_add(struct dmarc_from *f, const char *domain)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->domain[i], domain) == 0) return;
    if (f->n == DMARC_MAX_FROM_DOMAINS) { f->truncated = 1; return; }
    strcpy(f->domain[f->n++], domain);
}

/* The address whose domain was being read is complete. */
static void from_finish(struct from_parser *fp)
{
    char norm[DOMAIN_MAX + 1];
    if (!fp->collecting) return;
    fp->collecting = 0;
    if (fp->route) return;
    fp->f->addresses++;
    if (fp->literal || fp->overflow || domain_normalize(fp->dom, fp->dlen, norm) != 0)
        fp->f->unusable++;
    else
        from_add(fp->f, norm);
}

static void from_atom(struct from_parser *fp, const char *s, size_t n)
{
    if (fp->collecting) {
        /* obs-domain allows CFWS around the dots ("example . com"), not between atoms */
        if (fp->dlen == 0 || !fp->gap || fp->dom[fp->dlen - 1] == '.' || s[0] == '.') {
            if (fp->dlen + n > DOMAIN_MAX + 1) fp->overflow = 1;
            else { memcpy(fp->dom + fp->dlen, s, n); fp->dlen += n; }
        } else {
            from_finish(fp);
        }
    }
    fp->angle_fresh = 0;
    fp->gap = 0;
}

/* A token that cannot be part of a domain: quoted string, encoded word, stray special. */
static void from_word(struct from_parser *fp)
{
    from_finish(fp);
    fp->angle_fresh = 0;
    fp->gap = 0;
}

static int is_atext(unsigned char c)
{
    if (c >= 0x80) return 1;                               /* RFC 6532 UTF-8 */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Length of an RFC 2047 encoded word "=?charset?E?text?=" at p, or 0. */
static size_t encoded_word(const char *p, const char *end)
{
    const char *q = p + 2;
    if (end - p < 8 || p[0] != '=' || p[1] != '?') return 0;
    while (q < end && *q != '?' && (unsigned char)*q > ' ' && *q != 127) q++;
    if (q == p + 2 || end - q < 4 || *q != '?') return 0;
    q++;
    if (!(*q == 'B' || *q == 'b' || *q == 'Q' || *q == 'q') || q[1] != '?') return 0;
    q += 2;
    while (q < end && *q != '?' && (unsigned char)*q > ' ' && *q != 127) q++;
    if (end - q < 2 || q[0] != '?' || q[1] != '=') return 0;
    return (size_t)(q + 2 - p);
}

/* Skip a comment (nested, with quoted pairs) starting at '('; unterminated runs to end. */
static const char *skip_comment(const char *p, const char *end)
{
    unsigned depth = 0;
    for (; p < end; p++) {
        if (*p == '\\') { if (++p == end) break; continue; }
        if (*p == '(') depth++;
        else if (*p == ')' && --depth == 0) return p + 1;
    }
    return end;
}

/* Skip a quoted string starting at '"', or a domain literal at '['. */
static const char *skip_quoted(const char *p, const char *end, char close)
{
    for (p++; p < end; p++) {
        if (*p == '\\') { if (++p == end) break; continue; }
        if (*p == close) return p + 1;
    }
    return end;
}

void dmarc_from_parse(const char *value, size_t len, struct dmarc_from *f)
{
    struct from_parser fp = { .f = f };
    const char *p = value, *end = value + len;

    while (p < end) {
        char c = *p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') { p++; fp.gap = 1; continue; }
        if (c == '(') { p = skip_comment(p, end); fp.gap = 1; continue; }
        if (c == '"') { p = skip_quoted(p, end, '"'); from_word(&fp); continue; }
        if (c == '[') {
            p = skip_quoted(p, end, ']');
            if (fp.collecting && fp.dlen == 0) fp.literal = 1;
            from_word(&fp);
            continue;
        }
        size_t ew = encoded_word(p, end);
        if (ew) { p += ew; from_word(&fp); continue; }
        if (is_atext((unsigned char)c) || c == '.') {
            const char *s = p;
            while (p < end && (is_atext((unsigned char)*p) || *p == '.') && !encoded_word(p, end)) p++;
            from_atom(&fp, s, (size_t)(p - s));
            continue;
        }
        p++;
        switch (c) {
        case '@':
            from_finish(&fp);
            fp.route = fp.in_angle && fp.angle_fresh;   /* "<@a,@b:x@y>": a and b are a route */
            fp.collecting = 1;
            fp.dlen = 0;
            fp.literal = fp.overflow = 0;
            fp.gap = 0;
            fp.angle_fresh = 0;
            continue;               /* CFWS after '@' is fine: "marc@ example.com" */
        case '<':
            from_finish(&fp);
            fp.in_angle = 1;
            fp.route = 0;
            fp.angle_fresh = 1;
            fp.gap = 0;
            continue;
        case '>':
            from_word(&fp);
            fp.in_angle = fp.route = 0;
            continue;
        case ',':
            from_word(&fp);
            if (fp.in_angle && fp.route) fp.angle_fresh = 1;
            continue;
        case ':':
            from_word(&fp);
            fp.route = 0;           /* end of a route; outside <> a group's display name ends */
            continue;
        default:                    /* ';' ends a group; stray specials, NUL, controls */
            from_word(&fp);
            continue;
        }
    }
    from_finish(&fp);
}

void dmarc_from_collect(const struct message *m, struct dmarc_from *f)
{
    const struct msg_header *h;
    memset(f, 0, sizeof *f);
    for (size_t i = 0; (h = message_header(m, "From", i)) != NULL; i++) {
        f->fields++;
        dmarc_from_parse(h->value, h->value_len, f);
    }
}

/* ---- policy records ---- */

struct record {
    char p, sp;              /* 'n', 'q', 'r'; 0 absent; '?' invalid */
    char adkim, aspf;        /* 'r' or 's' */
    int pct;
    int rua_valid;           /* at least one syntactically valid URI */
    char rua[RUA_MAX + 1];
    char fo[16];             /* as published when it reads as fo (0, 1, d, s joined by ':'), else "0" */
};

static int tag_is(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);
    if (n != wl) return 0;
    for (size_t i = 0; i < n; i++)
        if (lc(s[i]) != word[i]) return 0;
    return 1;
}

static int is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether a TXT string is a DMARC record: "v=DMARC1" first (RFC 7489 6.6.3 step 5). */
static int is_dmarc_record(const char *s, size_t n)
{
    size_t i = 0;
    if (memchr(s, '\0', n)) return 0;
    while (i < n && is_wsp(s[i])) i++;
    if (i == n || lc(s[i]) != 'v') return 0;
    for (i++; i < n && is_wsp(s[i]); i++) ;
    if (i == n || s[i] != '=') return 0;
    for (i++; i < n && is_wsp(s[i]); i++) ;
    if (n - i < 6 || !tag_is(s + i, 6, "dmarc1")) return 0;
    i += 6;
    while (i < n && is_wsp(s[i])) i++;
    return i == n || s[i] == ';';
}

static char policy_word(const char *v, size_t n)
{
    if (tag_is(v, n, "none")) return 'n';
    if (tag_is(v, n, "quarantine")) return 'q';
    if (tag_is(v, n, "reject")) return 'r';
    return '?';
}

/* A reporting URI list with at least one "scheme:rest" element (RFC 3986 scheme). */
static int uri_list_valid(const char *v)
{
    for (const char *u = v; *u;) {
        while (*u == ' ' || *u == '\t' || *u == ',') u++;
        const char *s = u;
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) {
            while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                   *s == '+' || *s == '-' || *s == '.')
                s++;
            if (*s == ':' && s[1] && s[1] != ',' && !is_wsp(s[1])) return 1;
        }
        const char *comma = strchr(u, ',');
        if (!comma) break;
        u = comma + 1;
    }
    return 0;
}

/* Read the tags of a DMARC record.  Unknown tags and syntax errors are ignored,
 * bad adkim/aspf/pct values fall back to their defaults (RFC 7489 6.3); the
 * first occurrence of a tag wins. */
static void record_parse(const char *s, size_t n, struct record *r)
{
    int seen_adkim = 0, seen_aspf = 0, seen_pct = 0, seen_rua = 0, seen_fo = 0;
    memset(r, 0, sizeof *r);
    r->adkim = r->aspf = 'r';
    r->pct = 100;
    r->fo[0] = '0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != ';') j++;
        const char *eq = memchr(s + i, '=', j - i);
        if (eq) {
            const char *t = s + i, *te = eq, *v = eq + 1, *ve = s + j;
            while (t < te && is_wsp(*t)) t++;
            while (te > t && is_wsp(te[-1])) te--;
            while (v < ve && is_wsp(*v)) v++;
            while (ve > v && is_wsp(ve[-1])) ve--;
            size_t tl = (size_t)(te - t), vl = (size_t)(ve - v);
            if (tag_is(t, tl, "p") && !r->p) r->p = policy_word(v, vl);
            else if (tag_is(t, tl, "sp") && !r->sp) r->sp = policy_word(v, vl);
            else if (tag_is(t, tl, "adkim") && !seen_adkim++) r->adkim = tag_is(v, vl, "s") ? 's' : 'r';
            else if (tag_is(t, tl, "aspf") && !seen_aspf++) r->aspf = tag_is(v, vl, "s") ? 's' : 'r';
            else if (tag_is(t, tl, "pct") && !seen_pct++) {
                int pct = 0;
                size_t k = 0;
                while (k < vl && k < 4 && v[k] >= '0' && v[k] <= '9') pct = pct * 10 + (v[k++] - '0');
                if (k == vl && vl > 0 && pct <= 100) r->pct = pct;
            } else if (tag_is(t, tl, "rua") && !seen_rua++ && vl <= RUA_MAX) {
                memcpy(r->rua, v, vl);
                r->rua[vl] = '\0';
                r->rua_valid = uri_list_valid(r->rua);
            } else if (tag_is(t, tl, "fo") && !seen_fo++ && vl > 0 && vl < sizeof r->fo &&
                       strspn(v, "01ds:") >= vl) {
                memcpy(r->fo, v, vl);
                r->fo[vl] = '\0';
            }
        }
        i = j + 1;
    }
}

/* ---- one author domain ---- */

struct eval {
    const char *domain;
    char org[DOMAIN_MAX + 1];
    enum as_result result;     /* pass, fail (a record applies); none, temperror, permerror */
    char policy;               /* 'n', 'q', 'r' when a record applies */
    int is_sp, pct;
    char adkim, aspf;
    int spf_aligned, dkim_aligned;
    char rua[RUA_MAX + 1];
    char why[400];             /* the story of the record, for the reason line */
    int at_org;                /* the record is the organizational domain's */
    char p, sp;                /* as published (sp = p when absent), for reports */
    char fo[16];
};

static const char *policy_str(char p)
{
    return p == 'r' ? "reject" : p == 'q' ? "quarantine" : "none";
}

static void whyf(struct eval *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void whyf(struct eval *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->why, sizeof e->why, fmt, ap);
    va_end(ap);
}

enum lookup { L_FOUND, L_NONE, L_SEVERAL, L_TEMP };

/* Ask for _dmarc.<name>; on L_FOUND *rec is a malloc'd copy of the one record. */
static enum lookup lookup(dns_ctx *dns, const char *name, char **rec, char *err, size_t errlen)
{
    char q[DOMAIN_MAX + 8];
    *rec = NULL;
    if (snprintf(q, sizeof q, "_dmarc.%s", name) > DOMAIN_MAX) return L_NONE;   /* no such DNS name */
    struct dns_answer *a = dns_query(dns, q, DNS_T_TXT);
    enum lookup r = L_NONE;
    if (a->status == DNS_TEMPFAIL) {
        snprintf(err, errlen, "%s", a->errstr[0] ? a->errstr : "temporary DNS error");
        r = L_TEMP;
    } else if (a->status == DNS_OK) {
        size_t found = 0, idx = 0;
        for (size_t i = 0; i < a->n; i++)
            if (a->rr[i].type == DNS_T_TXT && is_dmarc_record(a->rr[i].u.txt.data, a->rr[i].u.txt.len)) {
                found++;
                idx = i;
            }
        if (found > 1) {
            snprintf(err, errlen, "%zu", found);
            r = L_SEVERAL;
        } else if (found == 1) {
            size_t n = a->rr[idx].u.txt.len;
            if ((*rec = malloc(n + 1)) != NULL) {
                memcpy(*rec, a->rr[idx].u.txt.data, n);
                (*rec)[n] = '\0';
            }
            r = L_FOUND;    /* with *rec NULL: out of memory */
        }
    }
    dns_answer_release(a);
    return r;
}

static void prefetch(dns_ctx *dns, const char *name)
{
    char q[DOMAIN_MAX + 8];
    if (snprintf(q, sizeof q, "_dmarc.%s", name) <= DOMAIN_MAX) dns_prefetch(dns, q, DNS_T_TXT);
}

void dmarc_prefetch(dns_ctx *dns, const struct message *m)
{
    struct dmarc_from f;
    char org[DOMAIN_MAX + 2];
    dmarc_from_collect(m, &f);
    for (size_t i = 0; i < f.n; i++) {
        org_or_self(f.domain[i], org, sizeof org);
        prefetch(dns, f.domain[i]);
        if (strcmp(org, f.domain[i]) != 0) prefetch(dns, org);
    }
}

/* Whether identity domain id aligns with the From domain (mode 's' strict, 'r' relaxed). */
static int aligned(const struct eval *e, const char *id, char mode)
{
    char norm[DOMAIN_MAX + 1], org[DOMAIN_MAX + 1];
    if (!id || domain_normalize(id, strlen(id), norm) != 0) return 0;
    if (strcmp(norm, e->domain) == 0) return 1;
    if (mode == 's') return 0;
    org_or_self(norm, org, sizeof org);
    return strcmp(org, e->org) == 0;
}

/* Hand the record, rebuilt from the tags record_parse kept, to libopendmarc: it
 * gives the policy for a message that does not align, whether sp= gave it, pct and
 * the alignment modes.  Rebuilt because libopendmarc refuses a whole record for one
 * bad value (adkim=x) where RFC 7489 6.3 asks for the default, and reads "p=rej" as
 * reject.  Returns 0, -1 on OOM, 1 when libopendmarc refused the record. */
static int policy_uncached(struct eval *e, const char *clean, int at_org)
{
    DMARC_POLICY_T *ctx = opendmarc_policy_connect_init((u_char *)"0.0.0.0", 0);
    if (!ctx) return -1;
    int rc = 1;
    /* store_dmarc's domain argument becomes the From domain: always the From domain here. */
    if (opendmarc_policy_store_from_domain(ctx, (u_char *)e->domain) != DMARC_PARSE_OKAY ||
        opendmarc_policy_store_dmarc(ctx, (u_char *)clean, (u_char *)e->domain,
                                     at_org ? (u_char *)e->org : NULL) != DMARC_PARSE_OKAY)
        goto out;
    int p, pct = 100, adkim = 'r', aspf = 'r';
    switch (opendmarc_get_policy_to_enforce(ctx)) {
    case DMARC_POLICY_REJECT: p = 'r'; break;
    case DMARC_POLICY_QUARANTINE: p = 'q'; break;
    case DMARC_POLICY_NONE: p = 'n'; break;
    default: goto out;
    }
    opendmarc_policy_fetch_pct(ctx, &pct);
    opendmarc_policy_fetch_adkim(ctx, &adkim);
    opendmarc_policy_fetch_aspf(ctx, &aspf);
    e->policy = (char)p;
    e->is_sp = opendmarc_get_policy_token_used(ctx) == DMARC_USED_POLICY_IS_SP;
    e->pct = pct < 0 || pct > 100 ? 100 : pct;
    e->adkim = adkim == DMARC_RECORD_A_STRICT ? 's' : 'r';
    e->aspf = aspf == DMARC_RECORD_A_STRICT ? 's' : 'r';
    u_char **rua = opendmarc_policy_fetch_rua(ctx, NULL, 0, 1);   /* no list buffer: no DNS */
    size_t o = 0;
    for (size_t i = 0; rua && rua[i]; i++) {
        int n = snprintf(e->rua + o, sizeof e->rua - o, "%s%s", o ? "," : "", (char *)rua[i]);
        if (n < 0 || (size_t)n >= sizeof e->rua - o) break;
        o += (size_t)n;
    }
    e->rua[o] = '\0';
    rc = 0;
out:
    opendmarc_policy_connect_shutdown(ctx);
    return rc;
}

/* libopendmarc's answers, per process: the same record for the same domains gets
 * the same policy, so a sender's record is handed to the library once (a record
 * that changes is another key). */
#define POLICY_CACHE 256

struct policy_memo {
    char *key;                 /* clean record, From domain, organizational domain or "" */
    int rc;
    char policy, adkim, aspf;
    int is_sp, pct;
    char rua[RUA_MAX + 1];
};

static struct policy_memo policy_cache[POLICY_CACHE];

static int policy_from_library(struct eval *e, const struct record *r, int at_org)
{
    char clean[RUA_MAX + 128], key[sizeof clean + 2 * DOMAIN_MAX + 4];
    int w = snprintf(clean, sizeof clean, "v=DMARC1; p=%s; adkim=%c; aspf=%c; pct=%d",
                     policy_str(r->p), r->adkim, r->aspf, r->pct);
    if (r->sp) w += snprintf(clean + w, sizeof clean - (size_t)w, "; sp=%s", policy_str(r->sp));
    if (r->rua[0]) snprintf(clean + w, sizeof clean - (size_t)w, "; rua=%s", r->rua);
    int kl = snprintf(key, sizeof key, "%s|%s|%s", clean, e->domain, at_org ? e->org : "");
    uint32_t h = 2166136261u;
    for (int i = 0; i < kl; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
    struct policy_memo *m = &policy_cache[h % POLICY_CACHE];
    if (!m->key || strcmp(m->key, key) != 0) {
        int rc = policy_uncached(e, clean, at_org);
        if (rc < 0) return rc;
        free(m->key);
        if (!(m->key = strdup(key))) return rc;     /* answered, just not remembered */
        m->rc = rc;
        m->policy = e->policy, m->adkim = e->adkim, m->aspf = e->aspf;
        m->is_sp = e->is_sp, m->pct = e->pct;
        memcpy(m->rua, e->rua, sizeof m->rua);
        return rc;
    }
    if (m->rc == 0) {
        e->policy = m->policy, e->adkim = m->adkim, e->aspf = m->aspf;
        e->is_sp = m->is_sp, e->pct = m->pct;
        memcpy(e->rua, m->rua, sizeof e->rua);
    }
    return m->rc;
}

void dmarc_cache_flush(void)
{
    for (size_t i = 0; i < ORG_CACHE; i++) {
        free(org_cache[i].domain);
        free(org_cache[i].org);
        org_cache[i].domain = org_cache[i].org = NULL;
    }
    for (size_t i = 0; i < POLICY_CACHE; i++) {
        free(policy_cache[i].key);
        policy_cache[i].key = NULL;
    }
}

/* Discover the record (RFC 7489 6.6.3), then align.  Returns 0, -1 on OOM. */
static int evaluate(dns_ctx *dns, struct eval *e, const struct as_spf *spf, const struct as_dkim *dkim)
{
    char err[80] = "", *text = NULL;
    int at_org = 0;
    e->result = AS_NONE;
    e->pct = 100;
    enum lookup l = lookup(dns, e->domain, &text, err, sizeof err);
    if (l == L_NONE && strcmp(e->org, e->domain) != 0) {
        at_org = 1;
        l = lookup(dns, e->org, &text, err, sizeof err);
    }
    const char *where = at_org ? e->org : e->domain;
    switch (l) {
    case L_TEMP:
        e->result = AS_TEMPERROR;
        whyf(e, "DNS error looking up _dmarc.%s (%s)", where, err);
        return 0;
    case L_SEVERAL:
        whyf(e, "%s DMARC records at _dmarc.%s: none applies (RFC 7489 6.6.3)", err, where);
        return 0;
    case L_NONE:
        if (strcmp(e->org, e->domain) != 0) whyf(e, "no DMARC record at _dmarc.%s nor _dmarc.%s", e->domain, e->org);
        else whyf(e, "no DMARC record at _dmarc.%s", e->domain);
        return 0;
    case L_FOUND:
        if (!text) return -1;
        break;
    }

    struct record r;
    record_parse(text, strlen(text), &r);
    free(text);
    const char *fallback = "";
    if (!r.p || r.p == '?' || r.sp == '?') {
        /* RFC 7489 6.6.3 step 6: with a valid rua, act as if p=none was published. */
        if (!r.rua_valid) {
            e->result = AS_PERMERROR;
            whyf(e, "DMARC record at _dmarc.%s has %s and no usable rua=", where,
                 r.sp == '?' && r.p && r.p != '?' ? "an invalid sp=" : r.p ? "an invalid p=" : "no p=");
            return 0;
        }
        r.p = 'n';
        r.sp = 0;
        fallback = " (record without a valid p=/sp=, read as p=none)";
    }
    int rc = policy_from_library(e, &r, at_org);
    if (rc < 0) return -1;
    if (rc > 0) {
        e->result = AS_PERMERROR;
        whyf(e, "DMARC record at _dmarc.%s refused by libopendmarc", where);
        return 0;
    }
    e->at_org = at_org;
    e->p = r.p;
    e->sp = r.sp ? r.sp : r.p;
    memcpy(e->fo, r.fo, sizeof e->fo);
    if (spf && spf->result == AS_PASS) e->spf_aligned = aligned(e, spf->domain, e->aspf);
    for (size_t i = 0; dkim && i < dkim->n && !e->dkim_aligned; i++)
        if (dkim->sigs[i].result == AS_PASS) e->dkim_aligned = aligned(e, dkim->sigs[i].domain, e->adkim);
    e->result = e->spf_aligned || e->dkim_aligned ? AS_PASS : AS_FAIL;
    whyf(e, "%s=%s%s%s", e->is_sp ? "sp" : "p", policy_str(e->policy),
         at_org ? " (record of the organizational domain)" : "", fallback);
    return 0;
}

/* ---- the verdict ---- */

struct sb { char s[1024]; size_t n; };

static void sbf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    if (b->n >= sizeof b->s - 1) return;
    va_start(ap, fmt);
    int w = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (w > 0) b->n = (size_t)w >= sizeof b->s - b->n ? sizeof b->s - 1 : b->n + (size_t)w;
}

/* What SPF and DKIM did for this From domain, in a few words. */
static void describe_auth(struct sb *b, const struct eval *e, const struct as_spf *spf, const struct as_dkim *dkim)
{
    const char *pass_d = NULL, *temp_d = NULL;
    for (size_t i = 0; dkim && i < dkim->n; i++) {
        const struct as_dkim_sig *s = &dkim->sigs[i];
        if (s->result == AS_PASS && !pass_d) pass_d = s->domain;
        if (s->result == AS_PASS && e->dkim_aligned && aligned(e, s->domain, e->adkim)) { pass_d = s->domain; break; }
        if (s->result == AS_TEMPERROR && !temp_d && aligned(e, s->domain, e->adkim)) temp_d = s->domain;
    }
    if (e->dkim_aligned) sbf(b, "aligned DKIM pass (d=%s)", pass_d ? pass_d : "?");
    else if (!dkim || dkim->n == 0) sbf(b, "no DKIM signature");
    else if (pass_d) sbf(b, "DKIM pass only for d=%s, not aligned%s", pass_d, e->adkim == 's' ? " (adkim=s)" : "");
    else sbf(b, "no DKIM pass");
    if (!e->dkim_aligned && temp_d) sbf(b, " (temperror for d=%s)", temp_d);

    const char *sd = spf ? spf->domain : NULL;
    if (e->spf_aligned) sbf(b, ", aligned SPF pass (%s)", sd);
    else if (!sd) sbf(b, ", no SPF identity");
    else if (spf->result == AS_PASS) sbf(b, ", SPF pass for %s, not aligned%s", sd, e->aspf == 's' ? " (aspf=s)" : "");
    else sbf(b, ", SPF %s for %s", as_result_str(spf->result), sd);
}

static char downgrade(char p)
{
    return p == 'r' ? 'q' : 'n';
}

/* RFC 7489 6.6.4: the policy applies to pct% of failing messages, picked at
 * random; the others get the next lower policy. */
static char disposition(char policy, int pct, int *sampled_out)
{
    *sampled_out = 0;
    if (pct >= 100 || policy == 'n') return policy;
    if (pct > 0 && arc4random_uniform(100) < (uint32_t)pct) return policy;
    *sampled_out = 1;
    return downgrade(policy);
}

static int rank(char p)
{
    return p == 'r' ? 3 : p == 'q' ? 2 : p == 'n' ? 1 : 0;
}

int dmarc_check(dns_ctx *dns, const struct message *m, const struct as_spf *spf,
                const struct as_dkim *dkim, struct as_dmarc *out)
{
    struct dmarc_from f;
    struct eval ev[DMARC_MAX_FROM_DOMAINS];
    struct sb b = { .n = 0 };
    const struct eval *sel = NULL;
    char dis = 0;
    int sampled_out = 0;

    memset(out, 0, sizeof *out);
    out->pct = 100;
    dmarc_from_collect(m, &f);
    int multi = f.fields > 1 || f.n > 1 || f.truncated || (f.n && f.unusable);
    if (multi) out->flags |= AS_DMARC_MULTI_FROM;

    if (f.n == 0) {
        out->result = AS_NONE;
        out->flags |= AS_DMARC_NO_FROM;
        if (!f.fields) sbf(&b, "no From field");
        else if (!f.addresses) sbf(&b, "From field%s without an address", f.fields > 1 ? "s" : "");
        else sbf(&b, "no usable domain in the From address%s", f.addresses > 1 ? "es" : "");
        goto strings;
    }

    memset(ev, 0, sizeof ev);
    for (size_t i = 0; i < f.n; i++) {               /* ask everything first: answers overlap */
        ev[i].domain = f.domain[i];
        org_or_self(ev[i].domain, ev[i].org, sizeof ev[i].org);
        prefetch(dns, ev[i].domain);
        if (strcmp(ev[i].org, ev[i].domain) != 0) prefetch(dns, ev[i].org);
    }
    for (size_t i = 0; i < f.n; i++)
        if (evaluate(dns, &ev[i], spf, dkim) != 0) return -1;

    if (!multi) {
        sel = &ev[0];
        out->result = sel->result;
        sbf(&b, "From %s: ", sel->domain);
        if (sel->policy) {
            describe_auth(&b, sel, spf, dkim);
            sbf(&b, "; %s", sel->why);
            dis = sel->result == AS_PASS ? 'n' : disposition(sel->policy, sel->pct, &sampled_out);
        } else {
            sbf(&b, "%s", sel->why);
        }
    } else {
        /* Several authors: never a pass.  The strictest published policy applies (RFC 7489
         * 6.6.1); with no record anywhere the result is what a retry could change
         * (temperror), else a broken record (permerror), else none. */
        for (size_t i = 0; i < f.n; i++)
            if (ev[i].policy && (!sel || rank(ev[i].policy) > rank(sel->policy))) sel = &ev[i];
        if (sel) {
            out->result = AS_FAIL;
            dis = disposition(sel->policy, sel->pct, &sampled_out);
        } else {
            for (size_t i = 0; i < f.n && !sel; i++) if (ev[i].result == AS_TEMPERROR) sel = &ev[i];
            for (size_t i = 0; i < f.n && !sel; i++) if (ev[i].result == AS_PERMERROR) sel = &ev[i];
            if (!sel) sel = &ev[0];
            out->result = sel->result;
        }
        if (f.fields > 1) sbf(&b, "%zu From fields", f.fields);
        else sbf(&b, "%zu From addresses", f.addresses);
        sbf(&b, ", never a pass:");
        for (size_t i = 0; i < f.n; i++) {
            sbf(&b, " %s %s", ev[i].domain, as_result_str(ev[i].result));
            if (ev[i].policy) sbf(&b, " %s=%s", ev[i].is_sp ? "sp" : "p", policy_str(ev[i].policy));
            sbf(&b, i + 1 < f.n ? "," : "");
        }
        if (f.unusable) sbf(&b, ", %zu address%s without a usable domain", f.unusable, f.unusable > 1 ? "es" : "");
        if (f.truncated) sbf(&b, ", more domains not evaluated");
        if (sel->policy) sbf(&b, "; strictest: %s %s=%s", sel->domain, sel->is_sp ? "sp" : "p", policy_str(sel->policy));
        else sbf(&b, "; %s: %s", sel->domain, sel->why);
    }
    if (sel->policy && out->result == AS_FAIL && sel->pct < 100)
        sbf(&b, ", pct=%d%s", sel->pct, sampled_out ? ": not sampled, policy lowered" : ": sampled");

    out->spf_aligned = sel->spf_aligned;
    out->dkim_aligned = sel->dkim_aligned;
    out->pct = sel->pct;
    out->policy_is_sp = sel->policy ? sel->is_sp : 0;
    if (!(out->from_domain = strdup(sel->domain)) || !(out->org_domain = strdup(sel->org))) goto oom;
    if (sel->policy) {
        if (!(out->policy = strdup(policy_str(sel->policy)))) goto oom;
        if (!(out->disposition = strdup(policy_str(dis)))) goto oom;
        if (sel->rua[0] && !(out->rua = strdup(sel->rua))) goto oom;
        if (!(out->policy_domain = strdup(sel->at_org ? sel->org : sel->domain))) goto oom;
        out->p = sel->p;
        out->sp = sel->sp;
        out->adkim = sel->adkim;
        out->aspf = sel->aspf;
        memcpy(out->fo, sel->fo, sizeof out->fo);
        if (sampled_out) out->flags |= AS_DMARC_SAMPLED_OUT;
    }
strings:
    if (!(out->reason = strdup(b.s))) goto oom;
    return 0;
oom:
    as_dmarc_clear(out);
    return -1;
}

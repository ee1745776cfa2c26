/* authres.c - the RFC 8601 Authentication-Results header value */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authres.h"

struct sbuf { char *s; size_t len, cap; int oom; };

static void sb_put(struct sbuf *b, const char *p, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s; b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* RFC 2045 token characters: printable ASCII except SP and tspecials. */
static int token_char(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* A property value: bare when it is a token or [local-part@]domain of token
 * characters (RFC 8601 2.2 pvalue), else a quoted-string. */
static void sb_value(struct sbuf *b, const char *v)
{
    int bare = *v != '\0', ats = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '@' && ++ats == 1) continue;
        if (!token_char(*p)) { bare = 0; break; }
    }
    if (bare) { sb_str(b, v); return; }
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\') sb_put(b, "\\", 1);
        if (*p >= 32 && *p < 127) sb_put(b, (const char *)p, 1);
        else sb_put(b, "?", 1);   /* header text must stay 7-bit and on one line */
    }
    sb_put(b, "\"", 1);
}

/* A comment: printable ASCII only, parentheses and backslashes escaped. */
static void sb_comment(struct sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, " (", 2);
    for (const unsigned char *p = (const unsigned char *)tmp; *p; p++) {
        if (*p == '(' || *p == ')' || *p == '\\') sb_put(b, "\\", 1);
        if (*p >= 32 && *p < 127) sb_put(b, (const char *)p, 1);
    }
    sb_put(b, ")", 1);
}

static void sb_prop(struct sbuf *b, const char *name, const char *value)
{
    if (!value || !*value) return;
    sb_put(b, " ", 1);
    sb_str(b, name);
    sb_put(b, "=", 1);
    sb_value(b, value);
}

static void sb_method(struct sbuf *b, const char *method, enum as_result r)
{
    sb_str(b, ";\n\t");
    sb_str(b, method);
    sb_put(b, "=", 1);
    sb_str(b, as_result_str(r));
}

char *authres_format(const char *authserv_id, const struct as_verdict *v)
{
    struct sbuf b = {0};
    sb_str(&b, authserv_id);

    const struct as_spf *spf = &v->spf;
    sb_method(&b, "spf", spf->result);
    if (spf->reason) sb_comment(&b, "%s", spf->reason);
    if (spf->helo) sb_prop(&b, "smtp.helo", spf->domain);
    else sb_prop(&b, "smtp.mailfrom", spf->mail_from ? spf->mail_from : spf->domain);

    if (v->dkim.n == 0) {
        sb_method(&b, "dkim", AS_NONE);
        if (v->dkim.ignored) sb_comment(&b, "%zu signatures not evaluated", v->dkim.ignored);
    }
    for (size_t i = 0; i < v->dkim.n; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        sb_method(&b, "dkim", s->result);
        if (s->reason) {
            if (s->key_bits) sb_comment(&b, "%u-bit key; %s", s->key_bits, s->reason);
            else sb_comment(&b, "%s", s->reason);
        }
        sb_prop(&b, "header.d", s->domain);
        sb_prop(&b, "header.i", s->identity);
        sb_prop(&b, "header.s", s->selector);
        sb_prop(&b, "header.a", s->algorithm);
        sb_prop(&b, "header.b", s->b);
    }

    const struct as_dmarc *d = &v->dmarc;
    sb_method(&b, "dmarc", d->result);
    if (d->policy)
        sb_comment(&b, "p=%s%s dis=%s", d->policy, d->policy_is_sp ? " (sp)" : "",
                   d->disposition ? d->disposition : "none");
    else if (d->flags & AS_DMARC_NO_FROM)
        sb_comment(&b, "no usable From");
    if (d->flags & AS_DMARC_MULTI_FROM) sb_comment(&b, "several From domains");
    sb_prop(&b, "header.from", d->from_domain);
    if (d->policy) sb_prop(&b, "policy.dmarc", d->policy);

    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}

/* message.c - split a raw RFC 5322 message into header fields and body, bounded and lenient */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "message.h"

/* Copy data with every bare LF turned into CRLF, as DKIM canonicalisation expects:
 * one block copy per line end to fix, so a message that is CRLF already is copied
 * in one go. */
static char *copy_crlf(const char *data, size_t len, size_t *outlen, unsigned *flags)
{
    const char *end = data + len;
    size_t extra = 0;
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        if (p == data || p[-1] != '\r') extra++;
    if (memchr(data, '\0', len)) *flags |= MSG_F_NUL;
    char *buf = malloc(len + extra + 1);
    if (!buf) return NULL;
    char *o = buf;
    const char *from = data;
    for (const char *p = data; extra && (p = memchr(p, '\n', (size_t)(end - p))); p++) {
        if (p > data && p[-1] == '\r') continue;
        memcpy(o, from, (size_t)(p - from));
        o += p - from;
        *o++ = '\r';
        from = p;
        extra--;
    }
    memcpy(o, from, (size_t)(end - from));
    o += end - from;
    *o = '\0';
    *outlen = (size_t)(o - buf);
    return buf;
}

/* Length of the field name at p (printable US-ASCII except ':'), or 0. */
static size_t field_name_len(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q > 32 && *q < 127 && *q != ':') q++;
    if (q == p) return 0;
    const char *c = q;
    while (c < end && (*c == ' ' || *c == '\t')) c++;   /* obsolete "Name :" */
    return (c < end && *c == ':') ? (size_t)(q - p) : 0;
}

int message_parse(struct message *m, const char *data, size_t len)
{
    memset(m, 0, sizeof *m);
    m->buf = copy_crlf(data, len, &m->len, &m->flags);
    if (!m->buf) return -1;
    char *p = m->buf, *end = m->buf + m->len;
    size_t cap = 0;

    if (m->len >= 5 && memcmp(p, "From ", 5) == 0) {        /* mbox separator line */
        char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        char *line_end = (eol && eol > p && eol[-1] == '\r') ? eol - 1 : (eol ? eol : end);
        if (line_end == p) {                                  /* blank line: body follows */
            m->body = next;
            m->body_len = (size_t)(end - next);
            return 0;
        }
        size_t nlen = field_name_len(p, line_end);
        if (!nlen) {                                          /* stray line: skip */
            m->flags |= MSG_F_MALFORMED_HEADER;
            p = next;
            continue;
        }
        /* The field runs on while following lines start with white space. */
        char *fend = line_end, *q = next;
        while (q < end && (*q == ' ' || *q == '\t')) {
            char *e2 = memchr(q, '\n', (size_t)(end - q));
            char *n2 = e2 ? e2 + 1 : end;
            fend = (e2 && e2 > q && e2[-1] == '\r') ? e2 - 1 : (e2 ? e2 : end);
            q = n2;
        }
        /* Past the limit only From fields are kept: DMARC must still see who claims to send. */
        int over = m->nhdr >= MSG_MAX_HEADERS;
        if (over) m->flags |= MSG_F_TOO_MANY_HEADERS;
        if (!over || (nlen == 4 && strncasecmp(p, "From", 4) == 0 && m->nhdr < MSG_MAX_HEADERS + 16)) {
            if (m->nhdr == cap) {
                size_t ncap = cap ? cap * 2 : 32;
                struct msg_header *h = realloc(m->hdr, ncap * sizeof *h);
                if (!h) { message_free(m); return -1; }
                m->hdr = h; cap = ncap;
            }
            struct msg_header *h = &m->hdr[m->nhdr++];
            h->name = p; h->name_len = nlen;
            h->raw = p; h->raw_len = (size_t)(fend - p);
            const char *v = memchr(p, ':', (size_t)(fend - p)) + 1;
            h->value = v; h->value_len = (size_t)(fend - v);
        }
        p = q;
    }
    m->flags |= MSG_F_NO_BODY_SEPARATOR;
    m->body = end;
    m->body_len = 0;
    return 0;
}

void message_free(struct message *m)
{
    free(m->buf);
    free(m->hdr);
    memset(m, 0, sizeof *m);
}

const struct msg_header *message_header(const struct message *m, const char *name, size_t idx)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < m->nhdr; i++)
        if (m->hdr[i].name_len == n && strncasecmp(m->hdr[i].name, name, n) == 0 && idx-- == 0)
            return &m->hdr[i];
    return NULL;
}

size_t message_header_count(const struct message *m, const char *name)
{
    size_t n = strlen(name), c = 0;
    for (size_t i = 0; i < m->nhdr; i++)
        if (m->hdr[i].name_len == n && strncasecmp(m->hdr[i].name, name, n) == 0) c++;
    return c;
}

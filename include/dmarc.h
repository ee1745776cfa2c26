/* dmarc.h - DMARC (RFC 7489) policy evaluation with libopendmarc and libpsl */
#ifndef AUTHSCORE_DMARC_H
#define AUTHSCORE_DMARC_H

#include "authscore.h"
#include "dns.h"
#include "message.h"

/* Organizational domain of domain (RFC 7489 3.2) from the public suffix list.
 * Writes it lowercased to out and returns 0; -1 when domain is itself a public
 * suffix or invalid. */
int dmarc_org_domain(const char *domain, char *out, size_t outlen);

/* Evaluate DMARC for m given the SPF and DKIM outcomes.  Fills out (caller
 * releases with as_dmarc_clear).  Returns 0, -1 on out-of-memory. */
int dmarc_check(dns_ctx *dns, const struct message *m, const struct as_spf *spf,
                const struct as_dkim *dkim, struct as_dmarc *out);

/* Ask for the records dmarc_check() will look up (_dmarc.<From domain> and
 * _dmarc.<organizational domain>), ahead of need. */
void dmarc_prefetch(dns_ctx *dns, const struct message *m);

/* Forget the policies remembered per record (see dmarc.c); for the end of a process. */
void dmarc_cache_flush(void);

#define DMARC_MAX_FROM_DOMAINS 8

/* The author domains of a message's From fields. */
struct dmarc_from {
    char domain[DMARC_MAX_FROM_DOMAINS][256]; /* distinct, lowercased, IDNs as A-labels, no final dot */
    size_t n;              /* distinct usable domains in domain[] */
    size_t fields;         /* From fields seen */
    size_t addresses;      /* addresses (something@something) seen */
    size_t unusable;       /* of which the domain is unusable: [literal], bad syntax, too long */
    int truncated;         /* more distinct domains than DMARC_MAX_FROM_DOMAINS */
};

/* Add the addresses of one From field value (an RFC 5322 mailbox-list, read
 * leniently: display names, quoted strings, comments, groups, RFC 2047 words,
 * obsolete routes and spacing) to f.  Linear in len, never fails. */
void dmarc_from_parse(const char *value, size_t len, struct dmarc_from *f);

/* Zero f and collect into it the addresses of every From field of m. */
void dmarc_from_collect(const struct message *m, struct dmarc_from *f);

#endif

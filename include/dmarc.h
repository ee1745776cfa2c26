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

#endif

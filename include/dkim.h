/* dkim.h - DKIM signature verification (RFC 6376, 8463, 8301) with libopendkim */
#ifndef AUTHSCORE_DKIM_H
#define AUTHSCORE_DKIM_H

#include "authscore.h"
#include "dns.h"
#include "message.h"

typedef struct dkim_verifier dkim_verifier;

/* Library handle, created once per process.  NULL with reason in err on failure. */
dkim_verifier *dkim_verifier_new(unsigned max_sigs, char *err, size_t errlen);
void dkim_verifier_free(dkim_verifier *v);

/* Verify every DKIM-Signature of m (up to max_sigs, the rest counted as ignored).
 * Fills out (caller releases with as_dkim_clear). Returns 0, or -1 on out-of-memory
 * (out is then empty).  Not dkim_verify: libopendkim exports that name. */
int dkim_check(dkim_verifier *v, dns_ctx *dns, const struct message *m, struct as_dkim *out);

#endif

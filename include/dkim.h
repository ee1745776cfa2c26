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

/* Switch v to libopendkim doing all of the verification itself, as authscore did
 * before the key cache and body hashing of its own: the reference the tests compare
 * with (tests/dkim_diff_test.c).  Slow.  0, or -1 with the reason in err. */
int dkim_verifier_reference(dkim_verifier *v, char *err, size_t errlen);

/* Verify every DKIM-Signature of m (up to max_sigs, the rest counted as ignored).
 * Fills out (caller releases with as_dkim_clear). Returns 0, or -1 on out-of-memory
 * (out is then empty).  Not dkim_verify: libopendkim exports that name. */
int dkim_check(dkim_verifier *v, dns_ctx *dns, const struct message *m, struct as_dkim *out);

/* Ask for the key of every signature dkim_check() would verify, ahead of need. */
void dkim_prefetch(const dkim_verifier *v, dns_ctx *dns, const struct message *m);

/* The first value of one-letter tag c in a DKIM-Signature value (tag list of RFC
 * 6376 3.2), white space removed, into out[outlen]; "" when absent or too long. */
void dkim_tag_copy(const char *v, size_t len, char c, char *out, size_t outlen);

/* The body hash of a DKIM signature: body (its line ends CRLF, LF or CR) under
 * relaxed (1) or simple (0) canonicalization, SHA-256 (1) or SHA-1 (0), the first
 * l canonical bytes (l < 0: all), the same as libopendkim computes it.  Writes the
 * digest (32 bytes at most) and the canonical length hashed.  Never fails. */
void dkim_body_hash(const char *body, size_t len, int relaxed, int sha256, long long l,
                    unsigned char *digest, size_t *digestlen, size_t *canonlen);

#endif

/* dkim_key.h - internal: DKIM key records parsed, checked and decoded once per process */
#ifndef AUTHSCORE_DKIM_KEY_H
#define AUTHSCORE_DKIM_KEY_H

#include <stddef.h>

enum { DKIM_KEY_SHA1 = 1, DKIM_KEY_SHA256 = 2 };   /* a signature's hash */

/* What a key record gives one signature, as libopendkim's dkim_get_key() and the
 * key half of dkim_sig_process() would leave it. */
struct dkim_key_use {
    int error;             /* DKIM_SIGERROR_* from the key, DKIM_SIGERROR_UNKNOWN when usable */
    unsigned flags;        /* DKIM_SIGFLAG_PROCESSED, _TESTKEY, _NOSUBDOMAIN */
    unsigned bits;         /* RSA: 8 x modulus bytes, once decoded; else 0 */
    void *rsa;             /* RSA *, for an RSA signature */
    void *ed25519;         /* EVP_PKEY *, for an ed25519 signature */
};

/* Look up (or parse and cache) the key record rec[0..len) for a signature of
 * algorithm signalg (dkim_alg_t) and hash hashtype (DKIM_KEY_SHA*).  The keys
 * in *use belong to the cache: valid until the next call.  Never fails: out of
 * memory reads as a key that cannot be applied. */
void dkim_key_use(const char *rec, size_t len, int signalg, int hashtype, struct dkim_key_use *use);

/* Verify sig over digest with the key in use: 1 good, 0 bad (OpenSSL's error
 * queue is cleared), -1 when the key cannot be applied (ed25519 set-up failed). */
int dkim_key_verify(const struct dkim_key_use *use, int signalg, int hashtype, const unsigned char *digest,
                    size_t diglen, const unsigned char *sig, size_t siglen);

/* Drop every cached key (process end, tests). */
void dkim_key_flush(void);

/* libopendkim's lenient base64 decoder (skips characters outside the alphabet,
 * stops at '='): the decoded length, -1 corrupt, -2 when buflen is too small. */
int dkim_key_b64decode(const char *s, unsigned char *buf, size_t buflen);

#endif

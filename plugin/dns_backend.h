/* dns_backend.h - internal: the ops table a DNS source implements beneath the per-process cache */
#ifndef AUTHSCORE_DNS_BACKEND_H
#define AUTHSCORE_DNS_BACKEND_H

#include <ldns/ldns.h>
#include "dns.h"

#define DNS_MAX_CNAME 8          /* CNAME hops followed before an answer is a loop */
#define DNS_NEG_TTL_DEFAULT 60   /* NXDOMAIN/NODATA without an SOA to say otherwise */
#define DNS_NEG_TTL_MAX 3600

/* A source of answers.  The cache (dns.c) sits above; a shared cache layer can be
 * another backend that wraps a lower one.  A handle is a question in flight. */
struct dns_backend {
    /* Start a question.  Returns a handle, or NULL on out-of-memory. */
    void *(*start)(struct dns_backend *be, const char *name, uint16_t type);
    /* Wait at most timeout_ms (-1: no limit) for the handle's answer.  Returns it,
     * handing over one reference and consuming the handle; NULL when time ran out
     * (the handle stays live: wait again or cancel it). */
    struct dns_answer *(*wait)(struct dns_backend *be, void *h, int timeout_ms);
    /* Give up a handle that wait did not consume. */
    void (*cancel)(struct dns_backend *be, void *h);
    /* Free the backend; live handles must have been cancelled. */
    void (*free)(struct dns_backend *be);
};

/* Backends.  Both return NULL with a one-line reason in err. */
struct dns_backend *dns_zone_backend_new(char *err, size_t errlen);
struct dns_backend *dns_net_backend_new(const struct dns_config *cfg, char *err, size_t errlen);
/* Answers shared through Redis above lower (dns_redis.c); lock_ms bounds how long
 * a process waits for another that is asking the same question.  Takes lower on
 * success only; redis stays the caller's.  NULL on OOM with the reason in err. */
struct dns_backend *dns_redis_backend_new(struct dns_backend *lower, struct redis_conn *redis, unsigned ttl_max,
                                          unsigned lock_ms, char *err, size_t errlen);

/* Load master-file text.  strict: the first bad line fails the load (and nothing is
 * added); otherwise bad lines are skipped, counted in *skipped, the first described
 * in err.  Returns the number of RRs read, or -1 with "where:line: why" in err. */
int dns_zone_load(struct dns_backend *be, const char *text, size_t len, const char *where,
                  const char *origin, int strict, unsigned *skipped, char *err, size_t errlen);
/* type 0: every type without records at name.  Returns 0, -1 on a bad name or OOM. */
int dns_zone_timeout(struct dns_backend *be, const char *name, uint16_t type);

/* Answers, for backends.  dns_answer_new returns one reference or NULL on OOM;
 * dns_answer_nomem is the static DNS_TEMPFAIL answer to hand back instead. */
extern struct dns_answer dns_answer_nomem;
struct dns_answer *dns_answer_new(enum dns_status status, uint32_t ttl, const char *errstr);
/* Append rr (converted to a struct dns_rr) and lower a->ttl to its TTL.  0, or -1 on OOM. */
int dns_answer_add(struct dns_answer *a, const ldns_rr *rr);
/* Negative-caching TTL from an authority SOA (RFC 2308), or the default for NULL. */
uint32_t dns_neg_ttl(const ldns_rr *soa);
/* A dname as text without the trailing dot ("" for the root); NULL on OOM.  Caller frees. */
char *dns_dname_str(const ldns_rdf *dname);

/* Tests: replace the millisecond clock behind TTLs and the budget. */
void dns_set_clock(dns_ctx *d, uint64_t (*now_ms)(void *arg), void *arg);

#endif

/* dns.h - one DNS interface for SPF, DKIM and DMARC: a per-process cache over swappable backends */
#ifndef AUTHSCORE_DNS_H
#define AUTHSCORE_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct redis_conn;

/* RR types we ask for (values are the IANA numbers). */
enum {
    DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12,
    DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28
};

/* Outcome of one question.  Every kind of trouble (timeout, SERVFAIL, REFUSED,
 * garbage, CNAME loop, budget exhausted) is DNS_TEMPFAIL: callers turn it into
 * temperror, never into a pass or a permanent failure. */
enum dns_status { DNS_OK = 0, DNS_NXDOMAIN, DNS_NODATA, DNS_TEMPFAIL };

struct dns_rr {
    uint16_t type;
    uint32_t ttl;
    union {
        struct in_addr a;
        struct in6_addr aaaa;
        struct { uint16_t pref; char *host; } mx;   /* host without trailing dot, "" for "." */
        char *name;                                 /* PTR, CNAME, NS target, no trailing dot */
        struct { char *data; size_t len; } txt;     /* one RR: its strings joined, may hold NUL */
    } u;
};

/* An answer holds the RRs of the asked type at the asked name, after CNAMEs were
 * followed (at most 8).  It is reference counted: dns_query() hands the caller one
 * reference, released with dns_answer_release(). */
struct dns_answer {
    enum dns_status status;
    uint32_t ttl;          /* how long it may be cached: min RR TTL, or SOA minimum for NXDOMAIN/NODATA */
    size_t n;
    struct dns_rr *rr;
    int refs;
    char errstr[64];       /* for DNS_TEMPFAIL: a short reason ("timeout", "SERVFAIL", "budget") */
};

struct dns_config {
    const char **servers;  /* "HOST[:PORT]", NULL-terminated; NULL or empty = /etc/resolv.conf */
    const char **zones;    /* master files, NULL-terminated; when set (even to an empty list),
                            * zones answer everything and names outside them are NXDOMAIN */
    unsigned timeout_ms;   /* per query, default 2000 */
    unsigned budget_ms;    /* per message, default 8000 */
    unsigned cache_max;    /* entries in the per-process cache, default 4096; 0 = default */
    struct redis_conn *redis;   /* a cache shared through Redis beneath the per-process one, for the
                                 * network backend (zones are local already); NULL = none.  Not owned. */
    unsigned redis_ttl_max;     /* seconds an answer is shared at most, default 3600 */
};

typedef struct dns_ctx dns_ctx;

/* Create a resolver.  Returns NULL on error with a one-line reason in err. */
dns_ctx *dns_new(const struct dns_config *cfg, char *err, size_t errlen);
/* Cancels questions in flight; answers callers still hold stay valid. */
void dns_free(dns_ctx *d);

/* Zone backend extras, for tests and the offline demo (d must have been created
 * with cfg->zones set).  dns_zone_add_text loads master-file text strictly (origin
 * may be NULL): a bad line fails it whole, naming the line in err.  Returns 0, or
 * -1 with a reason in err.  Every zone change flushes the cache. */
int dns_zone_add_text(dns_ctx *d, const char *text, const char *origin, char *err, size_t errlen);
/* Make name answer DNS_TEMPFAIL "timeout", as if its server timed out, for every
 * type that has no records there (the RFC 7208 suite's TIMEOUT: records listed for
 * the name still answer).  dns_zone_add_timeout_type times out one type even if it
 * has records.  Return 0, or -1 when d has no zones, the name is bad, or OOM. */
int dns_zone_add_timeout(dns_ctx *d, const char *name);
int dns_zone_add_timeout_type(dns_ctx *d, const char *name, uint16_t type);

/* Zone files are read leniently (third-party test zones are sloppy): bad lines are
 * skipped.  Returns NULL, or one line naming the first skipped line and the count. */
const char *dns_zone_warning(const dns_ctx *d);

/* Start the per-message time budget; questions asked once it is spent answer
 * DNS_TEMPFAIL with errstr "budget", cached or not.  Before the first call only
 * the per-query timeouts bound a question. */
void dns_budget_start(dns_ctx *d);

/* Ask a question ahead of need, so independent lookups run concurrently.
 * Harmless if the answer is cached or already pending. */
void dns_prefetch(dns_ctx *d, const char *name, uint16_t type);

/* Ask a question; blocks until answered, timed out or the budget is spent.
 * Never returns NULL: on out-of-memory a static DNS_TEMPFAIL answer comes back.
 * A name no query could carry (a label over 63 octets, an empty label, over 255
 * octets) is DNS_NXDOMAIN without asking.  The caller owns one reference. */
struct dns_answer *dns_query(dns_ctx *d, const char *name, uint16_t type);
void dns_answer_release(struct dns_answer *a);

/* Questions sent to a backend since dns_new (cache misses), for tests and bench. */
unsigned long dns_stat_queries(const dns_ctx *d);

#endif

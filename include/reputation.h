/* reputation.h - outcome counters per sender in Redis: read before the rules, written after them */
#ifndef AUTHSCORE_REPUTATION_H
#define AUTHSCORE_REPUTATION_H

#include <stddef.h>
#include <time.h>
#include <lua.h>
#include "authscore.h"
#include "message.h"
#include "pipeline.h"
#include "redis.h"

/* What is counted, per message: seen at all; SPF pass, SPF fail or softfail; a DKIM
 * signature passed, one failed and none passed; DMARC pass, DMARC fail. */
enum rep_counter {
    REP_MESSAGES, REP_SPF_PASS, REP_SPF_FAIL, REP_DKIM_PASS, REP_DKIM_FAIL,
    REP_DMARC_PASS, REP_DMARC_FAIL, REP_NCOUNTERS
};
enum rep_window { REP_24H, REP_30D, REP_NWINDOWS };   /* hourly buckets, daily buckets */

/* Who is counted.  The pairs count this address (network) sending as this From domain. */
enum rep_kind { REP_IP, REP_NET, REP_FROM, REP_SPF, REP_IP_FROM, REP_NET_FROM, REP_NKINDS };
#define REP_MAX_DKIM 4             /* distinct DKIM signing domains counted per message */
#define REP_ID_MAX 352

struct rep_entity {
    int present;                   /* the message has this identity (an IP, a From domain, ...) */
    char id[REP_ID_MAX];           /* "192.0.2.7", "192.0.2.0/24", "example.com", "192.0.2.7|example.com" */
    long long count[REP_NCOUNTERS][REP_NWINDOWS];
    char *stale;                   /* fields past retention the read saw, NUL-separated: the write deletes them */
    size_t stale_len, nstale;
};

struct reputation_view {
    int available;                 /* the read succeeded: counts are Redis's, else all 0 */
    struct rep_entity one[REP_NKINDS];
    struct rep_entity dkim[REP_MAX_DKIM];
    size_t ndkim;
};

struct reputation_config {
    unsigned hours;                /* hourly buckets kept, default 48, at least 24 */
    unsigned days;                 /* daily buckets kept, default 30; the 30d window is min(30, days) */
};

/* Fetch the counts of every identity of the message in one round trip (before
 * the rules run).  Never fails: without Redis (r NULL, down, backing off) or on
 * out-of-memory, out->available is 0 and the counts are 0.  Release with
 * reputation_view_clear. */
void reputation_read(redis_conn *r, const struct reputation_config *cfg, const struct as_envelope *env,
                     const struct as_verdict *v, time_t now, struct reputation_view *out);

/* The same read in two halves, so that it costs no round trip of its own: started
 * before the checks, it rides with their first DNS questions to Redis.  The start
 * asks for every identity the message can turn out to have, all known from the
 * envelope and the header: the address and its network, the SPF domain (MAIL FROM's,
 * else HELO's), each From domain (DMARC picks one only when there are several) with
 * its pairs, and the first REP_MAX_DKIM distinct d= of the DKIM signatures. */
#define REP_MAX_FROM 8             /* From domains asked for up front (DMARC evaluates as many) */
#define REP_MAX_STARTED (3 + 3 * REP_MAX_FROM + REP_MAX_DKIM)

struct reputation_read {
    struct pipeline p;             /* the HGETALLs, deferred on the connection */
    size_t n;
    struct { int slot; char id[REP_ID_MAX]; } asked[REP_MAX_STARTED];   /* slot: REP_* kind, or REP_NKINDS: DKIM */
};

/* Start the read (pipeline_defer).  Never fails; rd must stay where it is until
 * reputation_read_finish or reputation_read_drop.  r NULL: nothing is done. */
void reputation_read_start(redis_conn *r, const struct as_envelope *env, const struct message *m,
                           struct reputation_read *rd);

/* reputation_read for the identities of the verdict, with the counts the started
 * read brought (or it goes now, if no other round trip carried it); an identity
 * the start could not foresee is read in one more round trip (rd NULL: all are).
 * Same failure rule as reputation_read.  Releases rd. */
void reputation_read_finish(redis_conn *r, struct reputation_read *rd, const struct reputation_config *cfg,
                            const struct as_envelope *env, const struct as_verdict *v, time_t now,
                            struct reputation_view *out);

/* Abandon a started read (the check failed): its commands are withdrawn.  Safe
 * after reputation_read_finish. */
void reputation_read_drop(struct reputation_read *rd);
void reputation_view_clear(struct reputation_view *out);

/* Append this message's counter updates to p (HINCRBY of the hour's and the day's
 * bucket, EXPIRE, HDEL of the stale fields seen by the read that produced seen,
 * which may be NULL).  prefix is the Redis key namespace.  Returns 0, -1 on
 * out-of-memory (p is then failed as a whole). */
int reputation_record(struct pipeline *p, const char *prefix, const struct reputation_config *cfg,
                      const struct as_envelope *env, const struct as_verdict *v,
                      const struct reputation_view *seen, time_t now);

/* Lua: push m.reputation as plain tables (the caller makes them read-only);
 * v may be NULL (no Redis): then available is false and every count 0. */
void reputation_push(lua_State *L, const struct reputation_view *v);

/* Lua: push the authscore.store table {incr, get, set}, rules' own keys in Redis. */
void reputation_store_open(lua_State *L);

/* Lua, per message, inside a protected call: the connection the store functions
 * use for this message (NULL: they return nil), and a fresh call budget. */
void reputation_store_bind(lua_State *L, redis_conn *r);

#define REP_STORE_KEY_MAX 128
#define REP_STORE_VALUE_MAX 1024
#define REP_STORE_CALLS 16         /* store calls per message; more return nil */
#define REP_STORE_TTL_MAX (400 * 86400)

#endif

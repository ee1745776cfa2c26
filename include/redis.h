/* redis.h - one Redis connection per process: lazy, fail-open, backing off, following Sentinel */
#ifndef AUTHSCORE_REDIS_H
#define AUTHSCORE_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

struct redis_config {
    const char *url;        /* "redis://[:password@]host:port/db", "unix:/path[?db=N]",
                             * "sentinel://host:port,host:port/mastername[?password=..&db=N]" */
    const char *prefix;     /* key namespace, default "as:" */
    unsigned connect_ms;    /* default 50 */
    unsigned io_ms;         /* default 50 */
    unsigned backoff_ms;    /* after a failure, no Redis for this long; default 10000 */
    void (*log)(const char *line);   /* once per back-off period; NULL = stderr */
};

typedef struct redis_conn redis_conn;

/* Parse the configuration; no connection is made until the first command.
 * Returns NULL with one line in err when the URL does not parse. */
redis_conn *redis_new(const struct redis_config *cfg, char *err, size_t errlen);
void redis_free(redis_conn *r);

/* One command of a pipeline: argv/argvlen as for redisCommandArgv. */
struct redis_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
};

/* Send n commands in one round trip and read their n replies.  Returns 0 with
 * replies[i] filled (each may be an error reply; free with redis_replies_free),
 * or -1 when Redis is unavailable: not configured, backing off after an error,
 * timed out, or the pid changed and reconnecting failed.  Never blocks longer
 * than connect_ms + io_ms.  A failure starts the back-off and is logged once.
 * Commands deferred with redis_defer ride along in the same round trip. */
int redis_exec(redis_conn *r, const struct redis_cmd *cmds, size_t n, redisReply **replies);
void redis_replies_free(redisReply **replies, size_t n);

/* Commands whose replies are not needed yet: they go out with the next round trip
 * this process makes anyway (a check's first DNS questions, say), so independent
 * reads share one.  Everything here is the caller's, and must stay put and valid
 * until redis_collect or redis_withdraw. */
enum redis_defer_state { REDIS_DEFER_QUEUED, REDIS_DEFER_DONE, REDIS_DEFER_FAILED };
struct redis_deferred {
    const struct redis_cmd *cmds;
    size_t n;                      /* at least 1 */
    redisReply **replies;          /* n slots, NULL until DONE; the caller frees them */
    enum redis_defer_state state;
    struct redis_deferred *next;   /* redis.c's queue */
};

/* Queue d for the next redis_exec on r.  Never fails. */
void redis_defer(redis_conn *r, struct redis_deferred *d);

/* d's replies: the round trip that carried d brought them, or (still queued) d is
 * sent now on its own.  Returns 0 with d->replies filled, or -1 when Redis is
 * unavailable or the round trip that carried d failed (no second try: it backs off). */
int redis_collect(redis_conn *r, struct redis_deferred *d);

/* Take d off the queue if it is still waiting there; anything else is left alone. */
void redis_withdraw(redis_conn *r, struct redis_deferred *d);

/* The key prefix, e.g. "as:". */
const char *redis_prefix(const redis_conn *r);

/* Round trips made since redis_new, for tests and bench. */
unsigned long redis_stat_round_trips(const redis_conn *r);

#endif

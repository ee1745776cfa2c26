/* pipeline.h - Redis commands collected in memory, then sent in one round trip */
#ifndef AUTHSCORE_PIPELINE_H
#define AUTHSCORE_PIPELINE_H

#include <stddef.h>
#include "redis.h"

#define PIPELINE_MAX_ARGS 16

struct pipeline {
    struct pipeline_cmd *cmds;
    size_t n, cap;
    struct redis_cmd *sent;    /* the commands as handed to redis.c: no more appends after that */
    redisReply **replies;      /* after pipeline_exec: one per command */
    int oom;                   /* an append failed: pipeline_exec refuses to send a partial batch */
    struct redis_deferred deferred;
    redis_conn *deferred_on;   /* pipeline_defer queued the commands on this connection */
};

void pipeline_init(struct pipeline *p);

/* Append one command: argv[0..argc) are NUL-terminated strings, copied.
 * Returns 0, or -1 on out-of-memory, argc out of 1..PIPELINE_MAX_ARGS or once
 * the pipeline was sent or deferred (the pipeline is then marked failed as a whole). */
int pipeline_add(struct pipeline *p, int argc, const char *const *argv);

/* pipeline_add with the arguments listed, NULL-terminated. */
int pipeline_addl(struct pipeline *p, const char *arg0, ...) __attribute__((sentinel));

/* Send every command in one round trip, once per pipeline.  Returns 0 with the
 * replies readable through pipeline_reply (each may be an error reply), or -1
 * when Redis is unavailable, r is NULL, an append had failed or the pipeline was
 * sent already.  Nothing is sent when the pipeline is empty (returns 0).
 * A deferred pipeline is not sent again: its replies are those of the round trip
 * that carried it (redis_collect), or it goes now if none did. */
int pipeline_exec(struct pipeline *p, redis_conn *r);

/* Let the commands ride with the next round trip this process makes on r for
 * other reasons (redis_defer), rather than take one of their own; pipeline_exec
 * then collects the replies.  p must stay where it is until pipeline_free, which
 * withdraws the commands if they are still waiting, and r must outlive it.
 * Returns 0 (nothing is queued when p is empty), or -1 when r is NULL, an append
 * had failed, p was sent already, or on out-of-memory. */
int pipeline_defer(struct pipeline *p, redis_conn *r);

/* The reply to the i-th command after a successful pipeline_exec, else NULL. */
const redisReply *pipeline_reply(const struct pipeline *p, size_t i);

/* Release the commands and the replies; p can be reused after pipeline_init. */
void pipeline_free(struct pipeline *p);

#endif

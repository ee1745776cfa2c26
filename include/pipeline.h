/* pipeline.h - Redis commands collected in memory, then sent in one round trip */
#ifndef AUTHSCORE_PIPELINE_H
#define AUTHSCORE_PIPELINE_H

#include <stddef.h>
#include "redis.h"

#define PIPELINE_MAX_ARGS 16

struct pipeline {
    struct pipeline_cmd *cmds;
    size_t n, cap;
    redisReply **replies;      /* after pipeline_exec: one per command */
    int oom;                   /* an append failed: pipeline_exec refuses to send a partial batch */
};

void pipeline_init(struct pipeline *p);

/* Append one command: argv[0..argc) are NUL-terminated strings, copied.
 * Returns 0, or -1 on out-of-memory or argc out of 1..PIPELINE_MAX_ARGS
 * (the pipeline is then marked failed as a whole). */
int pipeline_add(struct pipeline *p, int argc, const char *const *argv);

/* pipeline_add with the arguments listed, NULL-terminated. */
int pipeline_addl(struct pipeline *p, const char *arg0, ...) __attribute__((sentinel));

/* Send every command in one round trip, once per pipeline.  Returns 0 with the
 * replies readable through pipeline_reply (each may be an error reply), or -1
 * when Redis is unavailable, r is NULL, an append had failed or the pipeline was
 * sent already.  Nothing is sent when the pipeline is empty (returns 0). */
int pipeline_exec(struct pipeline *p, redis_conn *r);

/* The reply to the i-th command after a successful pipeline_exec, else NULL. */
const redisReply *pipeline_reply(const struct pipeline *p, size_t i);

/* Release the commands and the replies; p can be reused after pipeline_init. */
void pipeline_free(struct pipeline *p);

#endif

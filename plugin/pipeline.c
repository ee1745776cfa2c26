/* pipeline.c - Redis commands collected in memory, then sent in one round trip */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "pipeline.h"

struct pipeline_cmd {
    int argc;
    const char *argv[PIPELINE_MAX_ARGS];
    size_t len[PIPELINE_MAX_ARGS];
    char *data;                /* the arguments, back to back, each NUL-terminated */
};

void pipeline_init(struct pipeline *p)
{
    memset(p, 0, sizeof *p);
}

int pipeline_add(struct pipeline *p, int argc, const char *const *argv)
{
    if (p->oom || p->sent || argc < 1 || argc > PIPELINE_MAX_ARGS) goto err;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 32;
        struct pipeline_cmd *nv = realloc(p->cmds, nc * sizeof *nv);
        if (!nv) goto err;
        p->cmds = nv;
        p->cap = nc;
    }
    struct pipeline_cmd *c = &p->cmds[p->n];
    size_t total = 0;
    for (int i = 0; i < argc; i++) total += (c->len[i] = strlen(argv[i])) + 1;
    if (!(c->data = malloc(total))) goto err;
    char *o = c->data;
    for (int i = 0; i < argc; i++) {
        memcpy(o, argv[i], c->len[i] + 1);
        c->argv[i] = o;
        o += c->len[i] + 1;
    }
    c->argc = argc;
    p->n++;
    return 0;
err:
    p->oom = 1;
    return -1;
}

int pipeline_addl(struct pipeline *p, const char *arg0, ...)
{
    const char *argv[PIPELINE_MAX_ARGS + 1];
    int argc = 0;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a; a = va_arg(ap, const char *)) {
        if (argc == PIPELINE_MAX_ARGS + 1) break;
        argv[argc++] = a;
    }
    va_end(ap);
    return pipeline_add(p, argc, argv);
}

/* The commands as redis.c takes them, and slots for their replies.  0, or -1 on
 * out-of-memory (the pipeline is then failed: nothing half-built goes out). */
static int hand_over(struct pipeline *p)
{
    p->sent = calloc(p->n, sizeof *p->sent);
    p->replies = calloc(p->n, sizeof *p->replies);
    if (!p->sent || !p->replies) {
        p->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        p->sent[i].argc = p->cmds[i].argc;
        p->sent[i].argv = p->cmds[i].argv;
        p->sent[i].argvlen = p->cmds[i].len;
    }
    return 0;
}

int pipeline_exec(struct pipeline *p, redis_conn *r)
{
    if (p->deferred_on) return r == p->deferred_on ? redis_collect(r, &p->deferred) : -1;
    if (p->oom || !r || p->sent) return -1;
    if (p->n == 0) return 0;
    if (hand_over(p) < 0) return -1;
    return redis_exec(r, p->sent, p->n, p->replies);
}

int pipeline_defer(struct pipeline *p, redis_conn *r)
{
    if (p->oom || !r || p->sent) return -1;
    if (p->n == 0) return 0;
    if (hand_over(p) < 0) return -1;
    p->deferred = (struct redis_deferred){ .cmds = p->sent, .n = p->n, .replies = p->replies };
    redis_defer(r, &p->deferred);
    p->deferred_on = r;
    return 0;
}

const redisReply *pipeline_reply(const struct pipeline *p, size_t i)
{
    return p->replies && i < p->n ? p->replies[i] : NULL;
}

void pipeline_free(struct pipeline *p)
{
    if (p->deferred_on) redis_withdraw(p->deferred_on, &p->deferred);
    if (p->replies) redis_replies_free(p->replies, p->n);
    free(p->replies);
    free(p->sent);
    for (size_t i = 0; i < p->n; i++) free(p->cmds[i].data);
    free(p->cmds);
    memset(p, 0, sizeof *p);
}

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
    if (p->oom || argc < 1 || argc > PIPELINE_MAX_ARGS) goto err;
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

int pipeline_exec(struct pipeline *p, redis_conn *r)
{
    if (p->oom || !r || p->replies) return -1;
    if (p->n == 0) return 0;
    struct redis_cmd *cmds = calloc(p->n, sizeof *cmds);
    p->replies = calloc(p->n, sizeof *p->replies);
    if (!cmds || !p->replies) {
        free(cmds);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        cmds[i].argc = p->cmds[i].argc;
        cmds[i].argv = p->cmds[i].argv;
        cmds[i].argvlen = p->cmds[i].len;
    }
    int rc = redis_exec(r, cmds, p->n, p->replies);
    free(cmds);
    return rc;
}

const redisReply *pipeline_reply(const struct pipeline *p, size_t i)
{
    return p->replies && i < p->n ? p->replies[i] : NULL;
}

void pipeline_free(struct pipeline *p)
{
    if (p->replies) redis_replies_free(p->replies, p->n);
    free(p->replies);
    for (size_t i = 0; i < p->n; i++) free(p->cmds[i].data);
    free(p->cmds);
    memset(p, 0, sizeof *p);
}

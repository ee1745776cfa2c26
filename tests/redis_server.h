/* redis_server.h - a throwaway redis-server on a unix socket for one test program */
#ifndef AUTHSCORE_REDIS_SERVER_H
#define AUTHSCORE_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

struct test_redis {
    pid_t pid;
    char dir[64];
    char sock[128];
    char url[160];
};

static void test_redis_pause(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* A direct connection for looking at what the code under test stored.  NULL if down. */
static redisContext *test_redis_admin(const struct test_redis *s)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectUnixWithTimeout(s->sock, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* Start redis-server (port 0, unix socket, no persistence) in a fresh temporary folder.
 * Returns 0, or -1 with a line on stderr (not installed, did not come up). */
static int test_redis_start(struct test_redis *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/authscore-redis.XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    snprintf(s->url, sizeof s->url, "unix:%s", s->sock);
    const char *argv[] = { "redis-server", "--port", "0", "--unixsocket", s->sock, "--save", "", "--appendonly", "no",
                           "--dir", s->dir, NULL };
    fflush(NULL);
    if ((s->pid = fork()) < 0) return -1;
    if (s->pid == 0) {
        char log[160];
        snprintf(log, sizeof log, "%s/redis.log", s->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = test_redis_admin(s);
        if (c) {
            redisFree(c);
            return 0;
        }
        test_redis_pause(50);
    }
    fprintf(stderr, "redis-server did not start (is it installed? see %s/redis.log)\n", s->dir);
    return -1;
}

static void test_redis_stop(struct test_redis *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    char path[200];
    snprintf(path, sizeof path, "%s/redis.log", s->dir);
    unlink(path);
    unlink(s->sock);
    rmdir(s->dir);
}

#endif

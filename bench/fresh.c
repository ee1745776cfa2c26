/* fresh.c - one message checked the way Exim's fork-per-connection does it: dlopen authscore.so, one authscore_check */
#define DLFUNC_IMPL
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <local_scan.h>

/*
 * fresh noop
 *     a process that does nothing: the baseline every figure is taken against
 * fresh exim SO CONFIG SPOOL MSGID IP HELO SENDER MESSAGE
 *     header_list from MESSAGE (its body waits as SPOOL/input/MSGID-D, written beforehand, as
 *     Exim's spool file would be), then dlopen(SO) and ${dlfunc{SO}{authscore_check}{CONFIG}...}.
 *     Prints "RESULT<TAB>dlopen CPU us<TAB>check CPU us<TAB>check wall us"; exit 0 on accept.
 * fresh rss FILE COMMAND [ARG...]
 *     runs COMMAND and writes its peak resident set (KiB) to FILE.  Linux carries a parent's
 *     peak over into its child's, so the parent that measures has to be this small one.
 *
 * The symbols authscore.so takes from Exim are defined here and exported (-rdynamic),
 * so the shared object loads and runs exactly as it does inside Exim.
 */
#define EXPORT __attribute__((visibility("default")))

EXPORT unsigned int debug_selector;
EXPORT header_line *header_list;
EXPORT uschar *message_id;
static char *spool_directory;

EXPORT void debug_printf(const char *fmt, ...)
{
    (void)fmt;
}

EXPORT void log_write(unsigned int selector, int flags, const char *fmt, ...)
{
    va_list ap;
    (void)selector; (void)flags;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

EXPORT uschar *expand_string(uschar *s)
{
    return strcmp((char *)s, "$spool_directory") ? NULL : (uschar *)spool_directory;
}

EXPORT uschar *string_copy_taint_function(const uschar *s, const void *proto_mem)
{
    (void)proto_mem;
    return (uschar *)strdup((const char *)s);
}

static long long us(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Exim's header_list: one entry per field, folded lines included, each ending in a bare
 * newline (Exim stores lines without CR). */
static int read_headers(const char *path)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    size_t len = fread(buf, 1, sizeof buf - 1, f), o = 0;
    fclose(f);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != '\r' || i + 1 == len || buf[i + 1] != '\n') buf[o++] = buf[i];
    buf[o] = '\0';
    header_line **tail = &header_list;
    char *p = buf;
    while (*p && *p != '\n') {
        char *end = p;
        do end = strchr(end, '\n') ? strchr(end, '\n') + 1 : end + strlen(end);
        while (*end == ' ' || *end == '\t');
        header_line *h = calloc(1, sizeof *h);
        if (!h) return -1;
        h->type = ' ';
        h->slen = (int)(end - p);
        h->text = (uschar *)p;
        *tail = h;
        tail = &h->next;
        p = end;
    }
    return 0;
}

static int rss(char **argv)
{
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 1; }
    FILE *f = fopen(argv[0], "w");
    if (!f || fprintf(f, "%ld\n", ru.ru_maxrss) < 0 || fclose(f) != 0) { perror(argv[0]); return 1; }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "noop")) return 0;
    if (argc >= 4 && !strcmp(argv[1], "rss")) return rss(argv + 2);
    if (argc != 10 || strcmp(argv[1], "exim")) {
        fprintf(stderr, "usage: fresh noop | fresh exim SO CONFIG SPOOL MSGID IP HELO SENDER MESSAGE | fresh rss FILE COMMAND...\n");
        return 2;
    }
    spool_directory = argv[4];
    message_id = (uschar *)argv[5];
    if (read_headers(argv[9]) != 0) return 1;
    long long c0 = us(CLOCK_PROCESS_CPUTIME_ID);
    void *so = dlopen(argv[2], RTLD_LAZY);   /* as Exim's ${dlfunc} does */
    if (!so) { fprintf(stderr, "fresh: %s\n", dlerror()); return 1; }
    exim_dlfunc_t *check = (exim_dlfunc_t *)dlsym(so, "authscore_check");
    if (!check) { fprintf(stderr, "fresh: %s\n", dlerror()); return 1; }
    long long c1 = us(CLOCK_PROCESS_CPUTIME_ID), w1 = us(CLOCK_MONOTONIC);
    uschar *args[] = { (uschar *)argv[3], (uschar *)argv[6], (uschar *)argv[7], (uschar *)argv[8] };
    uschar *yield = NULL;
    int rc = check(&yield, 4, args);
    long long c2 = us(CLOCK_PROCESS_CPUTIME_ID), w2 = us(CLOCK_MONOTONIC);
    printf("%s\t%lld\t%lld\t%lld\n", yield ? (char *)yield : "(null)", c1 - c0, c2 - c1, w2 - w1);
    return rc == OK && yield && !strncmp((char *)yield, "accept", 6) ? 0 : 3;
}

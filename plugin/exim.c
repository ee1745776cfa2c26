/* exim.c - the dlfunc glue: Exim's globals in, one "ACTION SCORE" string out */
#define DLFUNC_IMPL
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <local_scan.h>
#include "authscore.h"
#include "config.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_MESSAGE (64u << 20)   /* keep Exim's message_size_limit below this */

/* One engine per process: Exim forks per connection, so a changed pid means a
 * child that must not share the parent's sockets or Lua state.  The verdict is
 * the last check's, and authscore_field only answers for the message it was
 * made for (several messages travel over one connection). */
static struct {
    pid_t pid;
    char *config;
    struct as_settings conf;
    as_engine *engine;
    struct as_verdict last;
    int have_last;
    char msgid[64];
} g;

static void log_line(const char *line)
{
    log_write(0, LOG_MAIN, "authscore: %s", line);
}

#define DEBUG(...) do { if (debug_selector & D_local_scan) debug_printf(__VA_ARGS__); } while (0)

static void forget_last(void)
{
    if (g.have_last) as_verdict_clear(&g.last);
    g.have_last = 0;
    g.msgid[0] = '\0';
}

static void reset(void)
{
    forget_last();
    as_engine_free(g.engine);
    config_free(&g.conf);
    free(g.config);
    memset(&g, 0, sizeof g);
}

/* The engine for config, created on first use in this process.  NULL after
 * logging why (an unreadable or wrong configuration). */
static as_engine *engine_for(const char *config)
{
    pid_t pid = getpid();
    if (g.engine && g.pid == pid && g.config && !strcmp(g.config, config)) return g.engine;
    if (g.pid != pid) memset(&g, 0, sizeof g);   /* the parent's handles are not ours to free */
    else reset();
    g.pid = pid;
    char err[600];
    if (config_load(config, &g.conf, err, sizeof err) != 0) {
        log_line(err);
        config_free(&g.conf);
        return NULL;
    }
    struct as_settings *s = &g.conf;
    int thresholds = s->have_reject || s->have_quarantine || s->have_add_header;
    struct as_config cfg = {
        .authserv_id = s->authserv_id, .dns_servers = (const char **)s->dns_servers,
        .zones = (const char **)s->zones, .dns_timeout_ms = s->dns_timeout_ms, .dns_budget_ms = s->dns_budget_ms,
        .rules = (const char **)s->rules, .options_file = config,
        .reject = thresholds ? (s->have_reject ? s->reject : 15) : 0,
        .quarantine = thresholds ? (s->have_quarantine ? s->quarantine : 8) : 0,
        .add_header = thresholds ? (s->have_add_header ? s->add_header : 4) : 0,
        .rule_ms = s->rule_ms, .memory_kb = s->memory_kb,
        .on_error = s->on_error_set ? s->on_error : AS_TEMPFAIL, .log = log_line,
        .redis_url = s->redis, .redis_prefix = s->redis_prefix, .redis_connect_ms = s->redis_connect_ms,
        .redis_io_ms = s->redis_io_ms, .redis_backoff_ms = s->redis_backoff_ms, .dns_ttl_max = s->dns_ttl_max,
    };
    g.engine = as_engine_new(&cfg, err, sizeof err);
    if (!g.engine) { log_line(err); config_free(&g.conf); return NULL; }
    g.config = strdup(config);
    if (!g.config) { as_engine_free(g.engine); g.engine = NULL; config_free(&g.conf); return NULL; }
    DEBUG("authscore: engine ready for %s in pid %d\n", config, (int)pid);
    return g.engine;
}

static int answer(uschar **yield, const char *s)
{
    *yield = string_copy_taint(US s, GET_TAINTED);
    return OK;
}

/* The verdict when no check could run: on_error's action (tempfail unless the
 * configuration loaded and says accept), with a text for the client.  why is
 * logged, unless NULL (already logged). */
static int answer_trouble(uschar **yield, const char *why)
{
    if (why) log_line(why);
    forget_last();
    enum as_action a = g.engine && g.conf.on_error_set && g.conf.on_error == AS_ACCEPT ? AS_ACCEPT : AS_TEMPFAIL;
    g.last.score.action = a;
    if (a == AS_TEMPFAIL) g.last.score.smtp_message = strdup("Temporary local problem, please try again later");
    g.have_last = 1;
    snprintf(g.msgid, sizeof g.msgid, "%s", message_id ? (char *)message_id : "");
    return answer(yield, a == AS_ACCEPT ? "accept 0" : "tempfail 0");
}

static int is_received(const header_line *h)
{
    return h->type != '*' && h->slen >= 9 && !strncasecmp((char *)h->text, "Received:", 9);
}

/* Exim's own Received line tops header_list; it names the message id.  A signer
 * that over-signs Received would fail on it, so it is left out. */
static const header_line *first_header(void)
{
    const header_line *h = header_list;
    if (h && is_received(h) && message_id && *message_id && strstr((char *)h->text, (char *)message_id))
        return h->next;
    return h;
}

/* Headers from header_list (deleted ones skipped), a blank line, then the body
 * from the spool -D file after its first line (the file's own name).  NULL
 * with the reason in why. */
static char *build_message(size_t *len, char *why, size_t whylen)
{
    uschar *spool = expand_string(US"$spool_directory");
    if (!spool || !message_id || !*message_id) {
        snprintf(why, whylen, "no message to check (authscore_check belongs in acl_smtp_data)");
        return NULL;
    }
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/input/%s-D", (char *)spool, (char *)message_id);
    if (!(f = fopen(path, "rb")) && errno == ENOENT && strlen((char *)message_id) > 5) {   /* split_spool_directory */
        snprintf(path, sizeof path, "%s/input/%c/%s-D", (char *)spool, message_id[5], (char *)message_id);
        f = fopen(path, "rb");
    }
    if (!f) { snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') ;
    long start = ftell(f);
    if (fstat(fileno(f), &st) != 0 || start < 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    size_t blen = st.st_size > start ? (size_t)(st.st_size - start) : 0, hlen = 0;
    const header_line *first = first_header();
    for (const header_line *h = first; h; h = h->next)
        if (h->type != '*') hlen += (size_t)h->slen;
    if (hlen + blen > MAX_MESSAGE) {
        snprintf(why, whylen, "message of %zu bytes is over the %u MiB limit: set Exim's message_size_limit lower",
                 hlen + blen, MAX_MESSAGE >> 20);
        fclose(f);
        return NULL;
    }
    char *msg = malloc(hlen + 1 + blen + 1);
    if (!msg) { snprintf(why, whylen, "out of memory"); fclose(f); return NULL; }
    size_t o = 0;
    for (const header_line *h = first; h; h = h->next)
        if (h->type != '*') { memcpy(msg + o, h->text, (size_t)h->slen); o += (size_t)h->slen; }
    msg[o++] = '\n';
    size_t got = fread(msg + o, 1, blen, f);
    if (ferror(f)) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        fclose(f);
        free(msg);
        return NULL;
    }
    fclose(f);
    *len = o + got;
    return msg;
}

/* The authserv-id an Authentication-Results header claims: its first token
 * after the colon, comments and folding skipped, quotes removed. */
static int claims_id(const header_line *h, const char *id)
{
    static const char name[] = "Authentication-Results";
    const char *p = (const char *)h->text, *end = p + h->slen;
    size_t n = sizeof name - 1;
    if ((size_t)h->slen <= n || strncasecmp(p, name, n)) return 0;
    p += n;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p == end || *p++ != ':') return 0;
    for (int depth = 0; p < end; p++) {
        if (*p == '(') depth++;
        else if (*p == ')' && depth) depth--;
        else if (*p == '\\' && depth && p + 1 < end) p++;
        else if (!depth && !strchr(" \t\r\n", *p)) break;
    }
    const char *s = p;
    if (p < end && *p == '"') {
        s = ++p;
        while (p < end && *p != '"') p++;
    } else {
        while (p < end && !strchr(" \t\r\n;(", *p)) p++;
    }
    size_t idlen = strlen(id);
    return (size_t)(p - s) == idlen && !strncasecmp(s, id, idlen);
}

/* RFC 8601 section 5: a header that claims our authserv-id is a forgery from
 * outside; mark it deleted so the one the ACL adds is the only one. */
static void drop_forged_authres(const char *id)
{
    for (header_line *h = header_list; h; h = h->next)
        if (h->type != '*' && claims_id(h, id)) {
            h->type = '*';
            DEBUG("authscore: %s: removed a forged Authentication-Results header\n", message_id ? (char *)message_id : "-");
        }
}

static const char *arg(int argc, uschar *argv[], int i)
{
    return i < argc && argv[i] ? (const char *)argv[i] : "";
}

/* ${dlfunc{so}{authscore_check}{CONFIG}{IP}{HELO}{SENDER}} in acl_smtp_data. */
EXPORT int authscore_check(uschar **yield, int argc, uschar *argv[])
{
    forget_last();
    if (argc < 2) return answer_trouble(yield, "authscore_check: expected {CONFIG}{IP}{HELO}{SENDER}");
    as_engine *e = engine_for(arg(argc, argv, 0));
    if (!e) return answer_trouble(yield, NULL);
    struct as_envelope env = { arg(argc, argv, 1), *arg(argc, argv, 2) ? arg(argc, argv, 2) : NULL, arg(argc, argv, 3) };
    size_t len = 0;
    char why[4200];
    char *msg = build_message(&len, why, sizeof why);
    if (!msg) {
        drop_forged_authres(as_engine_authserv_id(e));
        return answer_trouble(yield, why);
    }
    int rc = as_check(e, &env, msg, len, &g.last);
    free(msg);
    drop_forged_authres(as_engine_authserv_id(e));
    if (rc != 0) return answer_trouble(yield, "internal error while checking (out of memory)");
    g.have_last = 1;
    snprintf(g.msgid, sizeof g.msgid, "%s", message_id ? (char *)message_id : "");
    char out[64];
    snprintf(out, sizeof out, "%s %.2f", as_action_str(g.last.score.action), g.last.score.score);
    DEBUG("authscore: %s: %s\n", g.msgid, out);
    return answer(yield, out);
}

/* ${dlfunc{so}{authscore_spf}{CONFIG}{IP}{HELO}{SENDER}} at MAIL or RCPT time. */
EXPORT int authscore_spf(uschar **yield, int argc, uschar *argv[])
{
    if (argc < 2) return answer(yield, "temperror");
    as_engine *e = engine_for(arg(argc, argv, 0));
    if (!e) return answer(yield, "temperror");
    struct as_envelope env = { arg(argc, argv, 1), *arg(argc, argv, 2) ? arg(argc, argv, 2) : NULL, arg(argc, argv, 3) };
    struct as_spf s;
    if (as_check_spf(e, &env, &s) != 0) return answer(yield, "temperror");
    DEBUG("authscore: spf %s: %s\n", as_result_str(s.result), s.reason ? s.reason : "");
    int r = answer(yield, as_result_str(s.result));
    as_spf_clear(&s);
    return r;
}

/* Append text to a growing buffer; on out-of-memory the buffer is dropped. */
static void cat(char **buf, size_t *len, const char *s)
{
    if (!*buf) return;
    size_t n = strlen(s);
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb) { free(*buf); *buf = NULL; return; }
    memcpy(nb + *len, s, n + 1);
    *buf = nb;
    *len += n;
}

/* ${dlfunc{so}{authscore_field}{NAME}}: empty for an unknown name, or when
 * this message was not checked in this process. */
EXPORT int authscore_field(uschar **yield, int argc, uschar *argv[])
{
    if (argc < 1 || !argv[0] || !g.have_last || g.pid != getpid() ||
        strcmp(g.msgid, message_id ? (char *)message_id : ""))
        return answer(yield, "");
    const char *name = (char *)argv[0];
    const struct as_verdict *v = &g.last;
    char num[160];
    if (!strcmp(name, "action")) return answer(yield, as_action_str(v->score.action));
    if (!strcmp(name, "score")) { snprintf(num, sizeof num, "%.2f", v->score.score); return answer(yield, num); }
    if (!v->authentication_results) {              /* no check ran: only the action and its text */
        if (!strcmp(name, "smtp_message") && v->score.smtp_message) return answer(yield, v->score.smtp_message);
        return answer(yield, "");
    }
    if (!strcmp(name, "spf")) return answer(yield, as_result_str(v->spf.result));
    if (!strcmp(name, "dmarc")) return answer(yield, as_result_str(v->dmarc.result));
    if (!strcmp(name, "authentication_results")) return answer(yield, v->authentication_results);
    if (!strcmp(name, "smtp_message")) return answer(yield, v->score.smtp_message ? v->score.smtp_message : "");
    size_t len = 0;
    char *buf = calloc(1, 1);
    if (!strcmp(name, "dkim")) {
        for (size_t i = 0; i < v->dkim.n; i++) {
            if (i) cat(&buf, &len, " ");
            cat(&buf, &len, as_result_str(v->dkim.sigs[i].result));
        }
        if (!v->dkim.n) cat(&buf, &len, "none");
    } else if (!strcmp(name, "symbols")) {
        for (size_t i = 0; i < v->score.nsym; i++) {
            snprintf(num, sizeof num, "%s%s(%.2f)", i ? ", " : "", v->score.sym[i].name, v->score.sym[i].score);
            cat(&buf, &len, num);
        }
    } else {
        free(buf);
        return answer(yield, "");
    }
    int r = answer(yield, buf ? buf : "");
    free(buf);
    return r;
}

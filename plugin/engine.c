/* engine.c - one check: SPF, DKIM and DMARC over a shared DNS context, and the result lifecycle */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "authscore.h"
#include "authres.h"
#include "dkim.h"
#include "dmarc.h"
#include "dns.h"
#include "message.h"
#include "pipeline.h"
#include "redis.h"
#include "report.h"
#include "reputation.h"
#include "rules.h"
#include "spf.h"

struct as_engine {
    dns_ctx *dns;
    redis_conn *redis;         /* NULL without Redis */
    struct reputation_config rep;
    unsigned report_keep_days;
    int no_record;
    dkim_verifier *dkim;       /* created on first message: libopendkim set-up is not free */
    unsigned max_dkim_sigs;
    rules *rules;              /* NULL when the rule files did not load: on_error applies */
    char rules_err[512];
    enum as_action on_error;
    void (*log)(const char *line);
    char authserv_id[256];
    char receiver[256];
};

const char *as_result_str(enum as_result r)
{
    static const char *const words[] = {
        "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror", "policy"
    };
    return (unsigned)r < sizeof words / sizeof *words ? words[r] : "permerror";
}

static void log_line(const as_engine *e, const char *line)
{
    if (e->log) e->log(line);
    else fprintf(stderr, "authscore: %s\n", line);
}

/* An authserv-id goes verbatim into a header: a dot-atom of host-name characters only. */
static int valid_authserv_id(const char *s)
{
    if (!*s || strlen(s) > 253) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

as_engine *as_engine_new(const struct as_config *cfg, char *err, size_t errlen)
{
    as_engine *e = calloc(1, sizeof *e);
    if (!e) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (cfg->authserv_id) {
        if (!valid_authserv_id(cfg->authserv_id)) {
            snprintf(err, errlen, "authserv-id \"%s\": only letters, digits, '.', '-' and '_' allowed",
                     cfg->authserv_id);
            goto err;
        }
        snprintf(e->authserv_id, sizeof e->authserv_id, "%s", cfg->authserv_id);
    } else if (gethostname(e->authserv_id, sizeof e->authserv_id - 1) != 0 ||
               !valid_authserv_id(e->authserv_id)) {
        snprintf(e->authserv_id, sizeof e->authserv_id, "localhost");
    }
    snprintf(e->receiver, sizeof e->receiver, "%s", cfg->receiver ? cfg->receiver : e->authserv_id);
    e->max_dkim_sigs = cfg->max_dkim_sigs ? cfg->max_dkim_sigs : 10;
    struct dns_config dc = {
        .servers = cfg->dns_servers, .zones = cfg->zones,
        .timeout_ms = cfg->dns_timeout_ms ? cfg->dns_timeout_ms : 2000,
        .budget_ms = cfg->dns_budget_ms ? cfg->dns_budget_ms : 8000,
        .redis_ttl_max = cfg->dns_ttl_max,
    };
    if (cfg->redis_url) {
        struct redis_config rc = {
            .url = cfg->redis_url, .prefix = cfg->redis_prefix, .connect_ms = cfg->redis_connect_ms,
            .io_ms = cfg->redis_io_ms, .backoff_ms = cfg->redis_backoff_ms, .log = cfg->log,
        };
        if (!(e->redis = dc.redis = redis_new(&rc, err, errlen))) goto err;
    }
    e->dns = dns_new(&dc, err, errlen);
    if (!e->dns) goto err;
    e->rep.hours = cfg->reputation_hours;
    e->rep.days = cfg->reputation_days;
    e->report_keep_days = cfg->report_keep_days;
    e->no_record = cfg->no_record;
    e->log = cfg->log;
    if (dns_zone_warning(e->dns)) log_line(e, dns_zone_warning(e->dns));
    e->on_error = cfg->on_error == AS_ACCEPT ? AS_ACCEPT : AS_TEMPFAIL;
    int thresholds = cfg->reject != 0 || cfg->quarantine != 0 || cfg->add_header != 0;
    struct rules_config rc = {
        .files = cfg->rules, .options_file = cfg->options_file,
        .reject = thresholds ? cfg->reject : 15, .quarantine = thresholds ? cfg->quarantine : 8,
        .add_header = thresholds ? cfg->add_header : 4,
        .rule_ms = cfg->rule_ms, .memory_kb = cfg->memory_kb, .log = cfg->log,
    };
    e->rules = rules_new(&rc, e->rules_err, sizeof e->rules_err);
    if (!e->rules) log_line(e, e->rules_err);
    return e;
err:
    redis_free(e->redis);
    free(e);
    return NULL;
}

void as_engine_free(as_engine *e)
{
    if (!e) return;
    if (e->dkim) dkim_verifier_free(e->dkim);
    dmarc_cache_flush();
    spf_cache_flush();
    rules_free(e->rules);
    dns_free(e->dns);
    redis_free(e->redis);
    free(e);
}

static void spf_request_from(const as_engine *e, const struct as_envelope *env, struct spf_request *r)
{
    memset(r, 0, sizeof *r);
    r->ip = env->ip;
    r->helo = env->helo;
    r->mail_from = env->mail_from;
    r->receiver = e->receiver;
}

int as_check_spf(as_engine *e, const struct as_envelope *env, struct as_spf *out)
{
    struct spf_request req;
    spf_request_from(e, env, &req);
    dns_budget_start(e->dns);
    return spf_check(e->dns, &req, out);
}

/* The rules decide; when they could not load, on_error decides, visibly. */
static int score(as_engine *e, const struct as_envelope *env, const struct message *m, struct as_verdict *v,
                 const struct reputation_view *rv)
{
    if (e->rules) {
        char err[400], line[512];
        if (rules_reload_if_changed(e->rules, err, sizeof err) != 0) {   /* once per change of the files */
            snprintf(line, sizeof line, "%s (the rules loaded before stay in force)", err);
            log_line(e, line);
        }
        struct rules_input in = { .env = env, .verdict = v, .msg = m, .reputation = rv, .identities = !rv,
                                  .redis = e->redis };
        return rules_eval(e->rules, &in, &v->score);
    }
    struct as_score *s = &v->score;
    s->action = e->on_error;
    s->sym = calloc(1, sizeof *s->sym);
    if (!s->sym) return -1;
    s->sym[0].name = strdup("RULE_ERROR");
    s->sym[0].reason = strdup(e->rules_err);
    s->nsym = 1;
    if (e->on_error == AS_TEMPFAIL) s->smtp_message = strdup("Temporary local problem, please try again later");
    return s->sym[0].name && s->sym[0].reason ? 0 : -1;
}

/* After the verdict: reputation counters and the DMARC report row, in one round trip.
 * A tempfailed message comes back later and is counted then. */
static void record(as_engine *e, const struct as_envelope *env, const struct as_verdict *v,
                   const struct reputation_view *rv, time_t now)
{
    struct pipeline p;
    if (!e->redis || e->no_record || v->score.action == AS_TEMPFAIL) return;
    pipeline_init(&p);
    const char *prefix = redis_prefix(e->redis);
    if (reputation_record(&p, prefix, &e->rep, env, v, rv, now) == 0 &&
        report_record(&p, prefix, e->report_keep_days, env, v, now) == 0)
        pipeline_exec(&p, e->redis);    /* a failure is logged by redis.c: verdicts never wait on it */
    pipeline_free(&p);
}

const char *as_engine_rules_error(const as_engine *e)
{
    return e->rules ? NULL : e->rules_err;
}

int as_check(as_engine *e, const struct as_envelope *env, const char *msg, size_t len, struct as_verdict *v)
{
    struct message m;
    struct spf_request req;
    struct reputation_read rr;
    char err[256];

    memset(v, 0, sizeof *v);
    if (message_parse(&m, msg, len) != 0) return -1;
    if (!e->dkim && !(e->dkim = dkim_verifier_new(e->max_dkim_sigs, err, sizeof err))) {
        message_free(&m);   /* without a verifier DMARC could fail good mail: report trouble */
        return -1;
    }
    dns_budget_start(e->dns);
    spf_request_from(e, env, &req);
    /* Every question that waits on no other goes out now, together: the SPF record,
     * each DKIM key, the DMARC records of the From domain and of its organizational
     * domain.  A cold check then waits for the longest chain, not for their sum. */
    spf_prefetch(e->dns, &req);
    dkim_prefetch(e->dkim, e->dns, &m);
    dmarc_prefetch(e->dns, &m);
    /* The reputation of every identity the message can have waits on no check
     * either: it rides with those questions' round trip to Redis (or goes alone
     * when the process had every answer cached). */
    reputation_read_start(e->redis, env, &m, &rr);
    if (spf_check(e->dns, &req, &v->spf) != 0) goto err;
    if (dkim_check(e->dkim, e->dns, &m, &v->dkim) != 0) goto err;
    if (dmarc_check(e->dns, &m, &v->spf, &v->dkim, &v->dmarc) != 0) goto err;
    v->authentication_results = authres_format(e->authserv_id, v);
    if (!v->authentication_results) goto err;
    time_t now = time(NULL);
    struct reputation_view rv;
    /* Without Redis there are no counts to read, and m.reputation's identities are
     * worked out only if a rule asks for them (rules.c). */
    if (e->redis) reputation_read_finish(e->redis, &rr, &e->rep, env, v, now, &rv);
    int rc = score(e, env, &m, v, e->redis ? &rv : NULL);
    if (rc == 0 && e->redis) record(e, env, v, &rv, now);
    if (e->redis) reputation_view_clear(&rv);
    if (rc != 0) goto err;
    message_free(&m);
    return 0;
err:
    reputation_read_drop(&rr);
    message_free(&m);
    as_verdict_clear(v);
    return -1;
}

const char *as_engine_authserv_id(const as_engine *e)
{
    return e->authserv_id;
}

redis_conn *as_engine_redis(as_engine *e)
{
    return e->redis;
}

void as_spf_clear(struct as_spf *s)
{
    free(s->domain); free(s->mail_from); free(s->explanation); free(s->reason);
    memset(s, 0, sizeof *s);
}

void as_dkim_clear(struct as_dkim *d)
{
    for (size_t i = 0; i < d->n; i++) {
        struct as_dkim_sig *s = &d->sigs[i];
        free(s->domain); free(s->selector); free(s->algorithm); free(s->identity); free(s->reason);
    }
    free(d->sigs);
    memset(d, 0, sizeof *d);
}

void as_dmarc_clear(struct as_dmarc *d)
{
    free(d->from_domain); free(d->org_domain); free(d->policy); free(d->disposition);
    free(d->rua); free(d->reason); free(d->policy_domain);
    memset(d, 0, sizeof *d);
}

void as_verdict_clear(struct as_verdict *v)
{
    as_spf_clear(&v->spf);
    as_dkim_clear(&v->dkim);
    as_dmarc_clear(&v->dmarc);
    free(v->authentication_results);
    as_score_clear(&v->score);
    memset(v, 0, sizeof *v);
}

/* authscore.h - public API: SPF, DKIM and DMARC verdicts for one SMTP transaction and message */
#ifndef AUTHSCORE_H
#define AUTHSCORE_H

#include <stddef.h>

/* RFC 8601 result words.  AS_POLICY: signed, but refused by local policy
 * (rsa-sha1, RSA key under 1024 bits, evaluation limit). */
enum as_result {
    AS_NONE = 0, AS_PASS, AS_FAIL, AS_SOFTFAIL, AS_NEUTRAL,
    AS_TEMPERROR, AS_PERMERROR, AS_POLICY
};
const char *as_result_str(enum as_result r);

struct as_spf {
    enum as_result result;
    char *domain;          /* the identity's domain checked, NULL if none */
    int helo;              /* 1 when the HELO identity was checked (null MAIL FROM) */
    char *mail_from;       /* the identity as checked: local@domain or postmaster@helo */
    char *explanation;     /* fail only: exp= text or the receiver's default */
    char *reason;          /* one short human line: why this result */
};

struct as_dkim_sig {
    enum as_result result;
    char *domain, *selector, *algorithm, *identity;
    unsigned key_bits;     /* 0 when unknown or ed25519 */
    long body_length;      /* the l= tag, -1 when absent */
    char b[9];             /* first 8 characters of b=, for header.b */
    char *reason;
};

struct as_dkim {
    struct as_dkim_sig *sigs;
    size_t n;              /* evaluated signatures */
    size_t ignored;        /* signatures beyond the limit, not evaluated */
};

struct as_dmarc {
    enum as_result result;
    char *from_domain;     /* RFC5322.From domain; NULL when there is no usable From */
    char *org_domain;      /* its organizational domain (libpsl) */
    char *policy;          /* published policy that applies: "none", "quarantine", "reject"; NULL if no record */
    char *disposition;     /* what the policy asks after pct: "none", "quarantine", "reject" */
    int spf_aligned, dkim_aligned;
    int pct;               /* published pct, 100 by default */
    int policy_is_sp;      /* the sp= tag applied */
    char *rua;             /* published rua, for reporting; NULL if none */
    char *reason;
    unsigned flags;        /* AS_DMARC_* */
    /* The record that applied, as published (aggregate reports, RFC 7489 7.2). */
    char *policy_domain;   /* where it was found: from_domain or org_domain; NULL without a record */
    char p, sp;            /* 'n', 'q', 'r'; sp is p when the record has no sp= */
    char adkim, aspf;      /* 'r' or 's' */
    char fo[16];           /* fo= as published, "0" by default */
};
#define AS_DMARC_NO_FROM      1u  /* no usable RFC5322.From */
#define AS_DMARC_MULTI_FROM   2u  /* several From headers or addresses */
#define AS_DMARC_SAMPLED_OUT  4u  /* pct= lowered the disposition */

/* The policy's answer: what to do with the message (decided by the Lua rules). */
enum as_action { AS_ACCEPT = 0, AS_ADD_HEADER, AS_QUARANTINE, AS_REJECT, AS_TEMPFAIL };
const char *as_action_str(enum as_action a);
/* Returns 0 and sets *out, or -1 when s is not an action word. */
int as_action_parse(const char *s, enum as_action *out);

struct as_symbol {
    char *name;
    double score;
    char *reason;          /* may be NULL */
};

struct as_score {
    double score;
    enum as_action action;
    char *forced_by;       /* the symbol whose forced action won, NULL when the score decided */
    char *smtp_message;    /* text for the SMTP client on reject or tempfail, NULL otherwise */
    struct as_symbol *sym;
    size_t nsym;
};
void as_score_clear(struct as_score *s);

struct as_envelope {
    const char *ip;        /* client address, IPv4 or IPv6 text */
    const char *helo;      /* may be NULL */
    const char *mail_from; /* may be NULL or "" (null sender) */
};

struct as_config {
    const char *authserv_id;     /* default: the host name */
    const char **dns_servers;    /* NULL-terminated "HOST[:PORT]" list; NULL = resolv.conf */
    const char **zones;          /* NULL-terminated master files: offline backend */
    unsigned dns_timeout_ms;     /* 0 = 2000 */
    unsigned dns_budget_ms;      /* 0 = 8000 */
    unsigned max_dkim_sigs;      /* 0 = 10 */
    const char *receiver;        /* SPF %{r}; default the authserv-id */
    /* policy (the Lua rules) */
    const char **rules;          /* NULL-terminated rule files; NULL = the built-in default ruleset */
    const char *options_file;    /* authscore.conf, whose tables the rules read as `config`; may be NULL */
    double reject, quarantine, add_header;   /* score thresholds; all 0 = defaults 15, 8, 4 */
    unsigned rule_ms;            /* 0 = 50 */
    unsigned memory_kb;          /* 0 = 8192 */
    enum as_action on_error;     /* when the rules do not load or fail as a whole: AS_TEMPFAIL or AS_ACCEPT */
    void (*log)(const char *line);   /* one line per problem, once per process; NULL = stderr */
    /* shared state (Redis); all optional */
    const char *redis_url;       /* "redis://[:password@]host:port/db", "unix:/path?db=N&password=P",
                                  * "sentinel://host:port,host:port/mastername"; NULL = no Redis */
    const char *redis_prefix;    /* key namespace, NULL = "as:" */
    unsigned redis_connect_ms;   /* 0 = 50 */
    unsigned redis_io_ms;        /* 0 = 50 */
    unsigned redis_backoff_ms;   /* no Redis for this long after a failure; 0 = 10000 */
    unsigned dns_ttl_max;        /* seconds a DNS answer is shared through Redis at most; 0 = 3600 */
    unsigned reputation_hours;   /* hourly reputation buckets kept; 0 = 48 (at least 24) */
    unsigned reputation_days;    /* daily reputation buckets kept; 0 = 30 */
    unsigned report_keep_days;   /* DMARC report rows kept until reported; 0 = 7 */
    int no_record;               /* 1: read reputation, but write no counters nor report rows */
};

struct as_verdict {
    struct as_spf spf;
    struct as_dkim dkim;
    struct as_dmarc dmarc;
    char *authentication_results;  /* header value, without the field name */
    struct as_score score;         /* the rules' symbols, score and action */
};

typedef struct as_engine as_engine;

/* Create an engine; cheap: libraries and the suffix list load on first use.
 * Returns NULL with a one-line reason in err on a configuration error. */
as_engine *as_engine_new(const struct as_config *cfg, char *err, size_t errlen);
void as_engine_free(as_engine *e);

/* Why the rule files did not load (the engine then answers on_error), or NULL. */
const char *as_engine_rules_error(const as_engine *e);

/* The authserv-id in use (configured, else the host name). */
const char *as_engine_authserv_id(const as_engine *e);

/* The engine's Redis connection (see redis.h), or NULL when none is configured.
 * Owned by the engine; shared by the DNS cache and whoever else keeps state. */
typedef struct redis_conn redis_conn;
redis_conn *as_engine_redis(as_engine *e);

/* Evaluate one message (raw RFC 5322 bytes, CRLF or LF).  Fills *v, which the
 * caller releases with as_verdict_clear().  Returns 0; -1 only on out-of-memory
 * (v is then cleared). */
int as_check(as_engine *e, const struct as_envelope *env, const char *msg, size_t len, struct as_verdict *v);

/* SPF alone (MAIL/RCPT time). Returns 0 or -1 as as_check. */
int as_check_spf(as_engine *e, const struct as_envelope *env, struct as_spf *out);

void as_verdict_clear(struct as_verdict *v);
void as_spf_clear(struct as_spf *s);
void as_dkim_clear(struct as_dkim *d);
void as_dmarc_clear(struct as_dmarc *d);

#endif

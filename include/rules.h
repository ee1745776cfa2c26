/* rules.h - Lua 5.4 policy: administrators' rules turn a verdict into symbols, a score and an action */
#ifndef AUTHSCORE_RULES_H
#define AUTHSCORE_RULES_H

#include <stddef.h>
#include "authscore.h"
#include "message.h"
#include "redis.h"
#include "reputation.h"

struct rules_config {
    const char **files;       /* NULL-terminated rule files; NULL or empty = the built-in default ruleset */
    const char *options_file; /* a config file whose table the rules see read-only as `config`; may be NULL */
    double reject, quarantine, add_header;   /* score thresholds */
    unsigned rule_ms;         /* wall clock for all rules of one message, default 50 */
    size_t memory_kb;         /* Lua heap limit, default 8192 */
    void (*log)(const char *line);   /* where rule errors go, once per rule per process; NULL = stderr */
};

struct rules_input {
    const struct as_envelope *env;
    const struct as_verdict *verdict;
    const struct message *msg;   /* may be NULL: headers are then empty */
    const struct reputation_view *reputation;   /* m.reputation; NULL = no Redis (all counts 0) */
    int identities;              /* with reputation NULL: m.reputation still names the identities,
                                  * worked out only if a rule asks (as reputation_read without Redis) */
    redis_conn *redis;           /* for authscore.store; NULL = its calls return nil */
};

typedef struct rules rules;

/* Load and compile the rule files once.  Returns NULL with one line naming
 * file:line in err when a file does not load. */
rules *rules_new(const struct rules_config *cfg, char *err, size_t errlen);
void rules_free(rules *r);

/* Reload when a rule file changed since it was loaded.  Returns 0 (also when
 * nothing changed), -1 with the reason in err when the new files do not load
 * (the old rules stay in force). */
int rules_reload_if_changed(rules *r, char *err, size_t errlen);

/* Run every rule on one message and decide the action.  Rule errors become
 * RULE_ERROR symbols; never raises.  Fills out (released with as_score_clear).
 * Returns 0, -1 on out-of-memory. */
int rules_eval(rules *r, const struct rules_input *in, struct as_score *out);

#endif

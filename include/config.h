/* config.h - authscore.conf: a Lua file of data, checked key by key */
#ifndef AUTHSCORE_CONFIG_H
#define AUTHSCORE_CONFIG_H

#include <stddef.h>
#include "authscore.h"

struct as_settings {
    char *path;
    char *authserv_id;
    char **dns_servers;        /* NULL-terminated, or NULL */
    unsigned dns_timeout_ms, dns_budget_ms;
    char **zones;              /* NULL-terminated, or NULL; relative paths resolved against the file */
    char *redis;
    char *redis_prefix;        /* redis_options = { prefix, connect_ms, io_ms, backoff_ms, dns_ttl_max } */
    unsigned redis_connect_ms, redis_io_ms, redis_backoff_ms, dns_ttl_max;
    unsigned reputation_hours, reputation_days;   /* reputation = { hours, days } */
    unsigned report_keep_days;                    /* dmarc_reports = { keep_days } */
    char **rules;              /* NULL-terminated, or NULL */
    double reject, quarantine, add_header;
    int have_reject, have_quarantine, have_add_header;
    unsigned rule_ms;
    unsigned memory_kb;
    int on_error_set;
    enum as_action on_error;
};

/* Load path.  Returns 0, or -1 with one line "file:line: key: problem" in err.
 * Release with config_free (also after a failure). */
int config_load(const char *path, struct as_settings *s, char *err, size_t errlen);
void config_free(struct as_settings *s);

#endif

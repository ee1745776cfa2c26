/* report.h - DMARC aggregate reports (RFC 7489 7.2): rows per message in Redis, one report per domain and day */
#ifndef AUTHSCORE_REPORT_H
#define AUTHSCORE_REPORT_H

#include <time.h>
#include "authscore.h"
#include "dns.h"
#include "pipeline.h"
#include "redis.h"

/* Append this message's aggregate row to p when a DMARC record with rua= applied
 * (result pass or fail): one HINCRBY on the day's rows of its policy domain, and
 * the domain in the day's list.  The disposition is the action the rules took.
 * Returns 0 (also when there is nothing to record), -1 on out-of-memory. */
int report_record(struct pipeline *p, const char *prefix, unsigned keep_days, const struct as_envelope *env,
                  const struct as_verdict *v, time_t now);

struct report_opts {
    const char *date;            /* "YYYY-MM-DD" (UTC): that day only; NULL = every kept day before today */
    const char *org_name;
    const char *org_email;       /* report_metadata email, and From: of the messages */
    const char *receiver;        /* domain in file names and Submitter:; NULL = the domain of org_email */
    const char *out_dir;
    unsigned keep_days;          /* how far back rows are kept (report_keep_days); 0 = 7 */
    redis_conn *redis;
    dns_ctx *dns;                /* checks external destinations (RFC 7489 7.1) */
    time_t now;
    void (*log)(const char *line);   /* one line per problem; NULL = stderr */
    /* Tests: called after a report's rows were claimed, before they are read. */
    void (*after_claim)(void *arg, const char *day, const char *domain);
    void *arg;
};

struct report_stats {
    unsigned reports;            /* report files written */
    unsigned mails;              /* messages written for mailto: destinations */
    unsigned long messages;      /* messages the reports count */
    unsigned skipped;            /* destinations skipped: unverified, over their size limit, not mailto */
    unsigned bad_rows;           /* rows in Redis that did not parse (ignored) */
};

/* Claim every unreported (day, policy domain) in Redis and write its report, gzipped
 * XML (RFC 7489 Appendix C), and one RFC 5322 message per verified mailto:
 * destination to out_dir.  Each row goes into exactly one report: a claim is an
 * atomic RENAME of the rows, so concurrent runs split the work and rows recorded
 * meanwhile wait for the next run.  Returns 0, or -1 with one line in err when
 * Redis or out_dir failed (what was written stays written, unfinished claims are
 * taken up again by a run an hour later).  *st is filled either way. */
int report_run(const struct report_opts *o, struct report_stats *st, char *err, size_t errlen);

#endif

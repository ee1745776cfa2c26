/* spf.h - RFC 7208 check_host() over the DNS layer */
#ifndef AUTHSCORE_SPF_H
#define AUTHSCORE_SPF_H

#include "authscore.h"
#include "dns.h"

struct spf_request {
    const char *ip;           /* client address text (v4, v6, v4-mapped v6) */
    const char *helo;         /* HELO/EHLO name, may be NULL */
    const char *mail_from;    /* MAIL FROM, NULL or "" = null sender: postmaster@helo is checked */
    const char *receiver;     /* %{r}; NULL = "unknown" */
    const char *default_exp;  /* explanation when none is published; NULL = a built-in text */
};

/* Evaluate SPF for the MAIL FROM identity (or HELO when MAIL FROM is null).
 * Fills out (caller releases with as_spf_clear).  Returns 0, -1 on out-of-memory. */
int spf_check(dns_ctx *dns, const struct spf_request *req, struct as_spf *out);

/* Ask for the record check_host() starts from, ahead of need (see dns_prefetch). */
void spf_prefetch(dns_ctx *dns, const struct spf_request *req);

/* Forget the records parsed so far (see spf.c); for the end of a process. */
void spf_cache_flush(void);

/* The same through libspf2 (our DNS layer beneath it), for comparison: its parser and
 * macro expander fail part of the RFC 7208 suite.  Same contract as spf_check. */
int spf_check_libspf2(dns_ctx *dns, const struct spf_request *req, struct as_spf *out);

#endif

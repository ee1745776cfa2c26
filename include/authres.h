/* authres.h - the RFC 8601 Authentication-Results header value */
#ifndef AUTHSCORE_AUTHRES_H
#define AUTHSCORE_AUTHRES_H

#include "authscore.h"

/* Build the header value (without "Authentication-Results:"), folded.
 * Returns a malloc'd string the caller frees, or NULL on out-of-memory. */
char *authres_format(const char *authserv_id, const struct as_verdict *v);

#endif

/* message.h - split a raw RFC 5322 message into header fields and body, bounded and lenient */
#ifndef AUTHSCORE_MESSAGE_H
#define AUTHSCORE_MESSAGE_H

#include <stddef.h>

struct msg_header {
    const char *name;  size_t name_len;   /* field name, as written */
    const char *raw;   size_t raw_len;    /* whole field "Name: value", folds kept (CRLF), no final CRLF */
    const char *value; size_t value_len;  /* after the colon, folds kept */
};

#define MSG_MAX_HEADERS 1000   /* fields beyond this are dropped and flagged */

struct message {
    char *buf;                 /* owned copy, line ends normalised to CRLF */
    size_t len;
    struct msg_header *hdr;    /* in message order */
    size_t nhdr;
    const char *body;          /* after the blank line; CRLF line ends */
    size_t body_len;
    unsigned flags;            /* MSG_F_* */
};
#define MSG_F_TOO_MANY_HEADERS 1u
#define MSG_F_NO_BODY_SEPARATOR 2u  /* no blank line: all header, empty body */
#define MSG_F_MALFORMED_HEADER 4u   /* a line that is neither field nor fold (skipped) */
#define MSG_F_NUL 8u                /* NUL bytes seen */

/* Parse len bytes.  Returns 0, or -1 on out-of-memory (m is then empty).
 * Release with message_free(). */
int message_parse(struct message *m, const char *data, size_t len);
void message_free(struct message *m);

/* The idx-th (0-based) field named name (case-insensitive), or NULL. */
const struct msg_header *message_header(const struct message *m, const char *name, size_t idx);

/* Number of fields named name. */
size_t message_header_count(const struct message *m, const char *name);

#endif

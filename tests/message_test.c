/* message_test.c - the message parser on well-formed, odd and hostile input */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "message.h"

static void test_basic(void)
{
    const char *raw = "From: a@example.com\r\nSubject: hi\r\n there\r\nTo: b@x\r\n\r\nbody\r\n";
    struct message m;
    CHECK(message_parse(&m, raw, strlen(raw)) == 0);
    CHECK(m.nhdr == 3);
    CHECK(m.hdr[1].raw_len == strlen("Subject: hi\r\n there"));
    CHECK(memcmp(m.hdr[1].raw, "Subject: hi\r\n there", m.hdr[1].raw_len) == 0);
    CHECK(m.hdr[1].value_len == strlen(" hi\r\n there"));
    CHECK(m.body_len == 6 && memcmp(m.body, "body\r\n", 6) == 0);
    CHECK(message_header(&m, "SUBJECT", 0) == &m.hdr[1]);
    CHECK(message_header(&m, "subject", 1) == NULL);
    CHECK(message_header_count(&m, "to") == 1);
    CHECK(m.flags == 0);
    message_free(&m);
}

static void test_line_ends(void)
{
    const char *raw = "From: a@example.com\nX: 1\n\tmore\n\nline1\nline2\n";
    struct message m;
    CHECK(message_parse(&m, raw, strlen(raw)) == 0);
    CHECK(m.nhdr == 2);
    CHECK(m.hdr[1].raw_len == strlen("X: 1\r\n\tmore"));
    CHECK(m.body_len == strlen("line1\r\nline2\r\n") && memcmp(m.body, "line1\r\nline2\r\n", m.body_len) == 0);
    message_free(&m);

    const char *cr = "From: a@b\rX: y\r\n\r\nbody\rbare\r\n";   /* bare CR stays inside its line */
    CHECK(message_parse(&m, cr, strlen(cr)) == 0);
    CHECK(m.nhdr == 1);
    CHECK(m.body_len == strlen("body\rbare\r\n"));
    message_free(&m);
}

static void test_odd(void)
{
    struct message m;
    const char *nosep = "From: a@b\r\nSubject: never ends";
    CHECK(message_parse(&m, nosep, strlen(nosep)) == 0);
    CHECK(m.nhdr == 2 && (m.flags & MSG_F_NO_BODY_SEPARATOR) && m.body_len == 0);
    CHECK(m.hdr[1].raw_len == strlen("Subject: never ends"));
    message_free(&m);

    const char *stray = "garbage line\r\nFrom : a@b\r\n\r\n";
    CHECK(message_parse(&m, stray, strlen(stray)) == 0);
    CHECK(m.nhdr == 1 && (m.flags & MSG_F_MALFORMED_HEADER));
    CHECK(m.hdr[0].name_len == 4);
    message_free(&m);

    const char nul[] = "From: a@b\r\nX: a\0b\r\n\r\nx\0y";
    CHECK(message_parse(&m, nul, sizeof nul - 1) == 0);
    CHECK(m.nhdr == 2 && (m.flags & MSG_F_NUL) && m.body_len == 3);
    message_free(&m);

    CHECK(message_parse(&m, "", 0) == 0);
    CHECK(m.nhdr == 0 && m.body_len == 0);
    message_free(&m);

    const char *mbox = "From sender Thu Dec  3 09:00:00 2026\nFrom: a@b\n\nx\n";
    CHECK(message_parse(&m, mbox, strlen(mbox)) == 0);
    CHECK(m.nhdr == 1 && m.hdr[0].name_len == 4);
    message_free(&m);

    const char *fold_first = " leading fold\r\nFrom: a@b\r\n\r\n";
    CHECK(message_parse(&m, fold_first, strlen(fold_first)) == 0);
    CHECK(m.nhdr == 1);
    message_free(&m);
}

static void test_bounds(void)
{
    size_t n = 5000, len = 0;
    char *big = malloc(n * 16 + 16);
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(big + len, "X-H%zu: v\r\n", i % 1000);
    len += (size_t)sprintf(big + len, "\r\nbody");
    struct message m;
    CHECK(message_parse(&m, big, len) == 0);
    CHECK(m.nhdr == MSG_MAX_HEADERS && (m.flags & MSG_F_TOO_MANY_HEADERS));
    CHECK(m.body_len == 4);
    message_free(&m);
    len -= 6;                                    /* a From after the limit is still kept */
    len += (size_t)sprintf(big + len, "From: late@example.com\r\n\r\nbody");
    CHECK(message_parse(&m, big, len) == 0);
    CHECK(m.nhdr == MSG_MAX_HEADERS + 1 && message_header(&m, "from", 0) != NULL);
    message_free(&m);
    free(big);

    size_t hl = 1 << 20;                          /* one 1 MiB folded header */
    char *huge = malloc(hl + 64);
    memcpy(huge, "Subject: ", 9);
    for (size_t i = 9; i < hl; i++) huge[i] = (i % 70 == 0) ? '\n' : (i % 70 == 1 ? ' ' : 'a');
    memcpy(huge + hl, "\n\nbody\n", 7);
    CHECK(message_parse(&m, huge, hl + 7) == 0);
    CHECK(m.nhdr == 1 && m.body_len == 6);
    message_free(&m);
    free(huge);
}

int main(void)
{
    test_basic();
    test_line_ends();
    test_odd();
    test_bounds();
    return check_report();
}

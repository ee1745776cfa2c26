/* check.h - a tiny assertion macro for the test programs */
#ifndef AUTHSCORE_CHECK_H
#define AUTHSCORE_CHECK_H
#include <stdio.h>
static int check_total, check_failed;
#define CHECK(cond) do { check_total++; if (!(cond)) { check_failed++; \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); check_total++; \
    if (!a_ || !b_ || strcmp(a_, b_)) { check_failed++; \
    fprintf(stderr, "%s:%d: %s = \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } } while (0)
static inline int check_report(void)
{
    printf("%d/%d checks passed\n", check_total - check_failed, check_total);
    return check_failed ? 1 : 0;
}
#endif

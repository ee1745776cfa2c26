/* netaddr.h - IP addresses and CIDR blocks, IPv4-mapped IPv6 treated as IPv4 */
#ifndef AUTHSCORE_NETADDR_H
#define AUTHSCORE_NETADDR_H

#include <stdint.h>

struct netaddr {
    int family;            /* 4 or 6 */
    uint8_t a[16];         /* IPv4 in the first 4 bytes */
};

/* Parse IPv4 or IPv6 text; ::ffff:a.b.c.d becomes IPv4.  Returns 0 or -1. */
int netaddr_parse(const char *s, struct netaddr *out);

/* Whether the first bits of a and b agree (bits clamped to the family's width). */
int netaddr_match(const struct netaddr *a, const struct netaddr *b, unsigned bits);

/* Whether ip lies in "addr[/len]": 1 yes, 0 no, -1 when cidr does not parse. */
int netaddr_in_cidr(const struct netaddr *ip, const char *cidr);

#endif

/* netaddr.c - IP addresses and CIDR blocks, IPv4-mapped IPv6 treated as IPv4 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include "netaddr.h"

int netaddr_parse(const char *s, struct netaddr *out)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->a) == 1) { out->family = 4; return 0; }
    if (inet_pton(AF_INET6, s, out->a) != 1) return -1;
    out->family = 6;
    if (memcmp(out->a, mapped, 12) == 0) {
        memmove(out->a, out->a + 12, 4);
        memset(out->a + 4, 0, 12);
        out->family = 4;
    }
    return 0;
}

int netaddr_match(const struct netaddr *a, const struct netaddr *b, unsigned bits)
{
    if (a->family != b->family) return 0;
    unsigned max = a->family == 4 ? 32 : 128;
    if (bits > max) bits = max;
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a->a, b->a, bytes) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a->a[bytes] & mask) == (b->a[bytes] & mask);
}

int netaddr_in_cidr(const struct netaddr *ip, const char *cidr)
{
    char buf[64];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (n >= sizeof buf) return -1;
    memcpy(buf, cidr, n);
    buf[n] = '\0';
    struct netaddr net;
    if (netaddr_parse(buf, &net) != 0) return -1;
    unsigned bits = net.family == 4 ? 32 : 128;
    if (slash) {
        char *end;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (end == slash + 1 || *end || v > bits) return -1;
        bits = (unsigned)v;
    }
    return netaddr_match(ip, &net, bits);
}

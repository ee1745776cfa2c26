/* dns_net.c - DNS backend asking real servers through c-ares, answers parsed with ldns */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dns_backend.h"

struct net {
    struct dns_backend be;
    ares_channel ch;
    int lib;                     /* ares_library_init succeeded */
};

/* A question in flight.  c-ares owns it until its callback runs; a question given
 * up (budget spent) is freed by that callback. */
struct netq {
    struct net *net;
    struct dns_answer *ans;      /* set when done */
    ldns_rdf *cur;               /* the name asked now: the query, or a CNAME target */
    uint32_t ttl;                /* lowest CNAME TTL on the way */
    int hops;
    int abandoned;
    uint16_t type;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void netq_free(struct netq *q)
{
    ldns_rdf_deep_free(q->cur);
    free(q);
}

static struct dns_answer *tempfail(const char *why)
{
    struct dns_answer *a = dns_answer_new(DNS_TEMPFAIL, 0, why);
    return a ? a : &dns_answer_nomem;
}

static const char *ares_reason(int status)
{
    switch (status) {
    case ARES_ETIMEOUT: return "timeout";
    case ARES_ESERVFAIL: return "SERVFAIL";
    case ARES_EREFUSED: return "REFUSED";
    case ARES_EFORMERR: return "FORMERR";
    case ARES_ENOTIMP: return "NOTIMP";
    case ARES_EBADRESP: return "bad response";
    case ARES_ECONNREFUSED: return "connection refused";
    case ARES_ENOMEM: return "out of memory";
    default: return ares_strerror(status);
    }
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void ask(struct netq *q)
{
    char *name = dns_dname_str(q->cur);
    if (!name) {
        q->ans = &dns_answer_nomem;
        return;
    }
    ares_query(q->net->ch, name, LDNS_RR_CLASS_IN, q->type, on_answer, q);
    free(name);
}

static struct dns_answer *negative(enum dns_status st, const struct netq *q, const ldns_rr *soa)
{
    uint32_t ttl = dns_neg_ttl(soa);
    struct dns_answer *a = dns_answer_new(st, q->ttl < ttl ? q->ttl : ttl, NULL);
    return a ? a : &dns_answer_nomem;
}

/* The answer in a response, following CNAMEs from q->cur.  NULL when the chain left
 * the response without an end (the final target was asked again). */
static struct dns_answer *parse(struct netq *q, const unsigned char *buf, int len)
{
    ldns_pkt *p = NULL;
    struct dns_answer *a = NULL;
    const ldns_rr *soa = NULL;
    int moved = 0;
    if (ldns_wire2pkt(&p, buf, (size_t)len) != LDNS_STATUS_OK) return tempfail("bad response");
    const ldns_rr *qq = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    if (ldns_pkt_qdcount(p) != 1 || !qq || ldns_rr_get_type(qq) != q->type ||
        ldns_dname_compare(ldns_rr_owner(qq), q->cur) != 0) {
        a = tempfail("wrong question");
        goto out;
    }
    ldns_pkt_rcode rc = ldns_pkt_get_rcode(p);
    if (rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN) {
        ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, rc);
        a = tempfail(t ? t->name : "bad rcode");
        goto out;
    }
    const ldns_rr_list *an = ldns_pkt_answer(p);
    for (;;) {
        const ldns_rr *cname = NULL;
        if (!(a = dns_answer_new(DNS_OK, q->ttl, NULL))) { a = &dns_answer_nomem; goto out; }
        for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
            const ldns_rr *rr = ldns_rr_list_rr(an, i);
            if (ldns_dname_compare(ldns_rr_owner(rr), q->cur) != 0) continue;
            if (ldns_rr_get_type(rr) == q->type) {
                if (dns_answer_add(a, rr) < 0) { dns_answer_release(a); a = &dns_answer_nomem; goto out; }
            } else if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && !cname && ldns_rr_rd_count(rr) == 1) {
                cname = rr;
            }
        }
        if (a->n) goto out;
        dns_answer_release(a);
        a = NULL;
        if (!cname) break;
        if (++q->hops > DNS_MAX_CNAME) { a = tempfail("CNAME loop"); goto out; }
        ldns_rdf *next = ldns_rdf_clone(ldns_rr_rdf(cname, 0));
        if (!next) { a = &dns_answer_nomem; goto out; }
        ldns_rdf_deep_free(q->cur);
        q->cur = next;
        if (ldns_rr_ttl(cname) < q->ttl) q->ttl = ldns_rr_ttl(cname);
        moved = 1;
    }
    for (size_t i = 0; i < ldns_rr_list_rr_count(ldns_pkt_authority(p)) && !soa; i++)
        if (ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_authority(p), i)) == LDNS_RR_TYPE_SOA)
            soa = ldns_rr_list_rr(ldns_pkt_authority(p), i);
    if (rc == LDNS_RCODE_NXDOMAIN) a = negative(DNS_NXDOMAIN, q, soa);
    else if (!moved || soa) a = negative(DNS_NODATA, q, soa);
out:
    ldns_pkt_free(p);
    return a;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct netq *q = arg;
    struct dns_answer *a;
    (void)timeouts;
    if (q->abandoned) {
        netq_free(q);
        return;
    }
    /* c-ares reports NXDOMAIN and NODATA as errors, but hands over the packet. */
    if (abuf && alen > 0 && (status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND))
        a = parse(q, abuf, alen);
    else
        a = tempfail(ares_reason(status));
    if (a) q->ans = a;
    else ask(q);   /* the CNAME chain's end was not in the response */
}

static void *net_start(struct dns_backend *be, const char *name, uint16_t type)
{
    struct netq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->net = (struct net *)be;
    q->type = type;
    q->ttl = UINT32_MAX;
    if (!(q->cur = ldns_dname_new_frm_str(name))) {
        q->ans = dns_answer_new(DNS_NXDOMAIN, DNS_NEG_TTL_DEFAULT, NULL);
        if (!q->ans) q->ans = &dns_answer_nomem;
        return q;
    }
    ares_query(q->net->ch, name, LDNS_RR_CLASS_IN, type, on_answer, q);
    return q;
}

/* Drive c-ares until this question is answered; any other answers arriving
 * meanwhile are kept in their own handles. */
static struct dns_answer *net_wait(struct dns_backend *be, void *h, int timeout_ms)
{
    struct net *n = (struct net *)be;
    struct netq *q = h;
    uint64_t end = timeout_ms < 0 ? UINT64_MAX : mono_ms() + (uint64_t)timeout_ms;
    while (!q->ans) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pf[ARES_GETSOCK_MAXNUM];
        struct timeval tv, *tvp;
        int np = 0, bits = ares_getsock(n->ch, socks, ARES_GETSOCK_MAXNUM);
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {   /* ARES_GETSOCK_WRITABLE shifts into the sign bit */
            short ev = (short)(((unsigned)bits & 1u << i ? POLLIN : 0) |
                               ((unsigned)bits & 1u << (i + ARES_GETSOCK_MAXNUM) ? POLLOUT : 0));
            if (ev) pf[np++] = (struct pollfd){ .fd = socks[i], .events = ev };
        }
        uint64_t now = mono_ms();
        if (now >= end) return NULL;
        uint64_t wait = end - now;
        if ((tvp = ares_timeout(n->ch, NULL, &tv))) {
            uint64_t t = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
            if (t < wait) wait = t;
        } else if (!np) {
            q->ans = tempfail("lost query");   /* c-ares has nothing in flight: never wait forever */
            break;
        }
        int r = poll(pf, (nfds_t)np, wait > INT_MAX ? INT_MAX : (int)wait);
        if (r < 0 && errno != EINTR) {
            q->ans = tempfail(strerror(errno));
            break;
        }
        if (r <= 0) {
            ares_process_fd(n->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (int i = 0; i < np; i++)
            if (pf[i].revents)
                ares_process_fd(n->ch, pf[i].revents & (POLLIN | POLLERR | POLLHUP) ? pf[i].fd : ARES_SOCKET_BAD,
                                pf[i].revents & POLLOUT ? pf[i].fd : ARES_SOCKET_BAD);
    }
    struct dns_answer *a = q->ans;
    netq_free(q);
    return a;
}

static void net_cancel(struct dns_backend *be, void *h)
{
    struct netq *q = h;
    (void)be;
    if (q->ans) {
        dns_answer_release(q->ans);
        netq_free(q);
    } else {
        q->abandoned = 1;
    }
}

static void net_free(struct dns_backend *be)
{
    struct net *n = (struct net *)be;
    if (n->ch) ares_destroy(n->ch);
    if (n->lib) ares_library_cleanup();
    free(n);
}

/* "HOST[:PORT]", HOST an IPv4 or IPv6 literal; "[v6]:PORT" when a port follows a v6 address. */
static int parse_server(const char *s, struct ares_addr_port_node *node)
{
    char host[INET6_ADDRSTRLEN];
    const char *port = NULL, *colon = strchr(s, ':');
    size_t hl;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':')) return -1;
        hl = (size_t)(close - s - 1);
        s++;
        if (close[1]) port = close + 2;
    } else if (colon && !strchr(colon + 1, ':')) {
        hl = (size_t)(colon - s);
        port = colon + 1;
    } else {
        hl = strlen(s);
    }
    if (hl == 0 || hl >= sizeof host) return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, &node->addr.addr4) == 1) node->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1) node->family = AF_INET6;
    else return -1;
    long p = 53;
    if (port) {
        char *end;
        errno = 0;
        p = strtol(port, &end, 10);
        if (errno || end == port || *end || p < 1 || p > 65535) return -1;
    }
    node->udp_port = node->tcp_port = (int)p;
    return 0;
}

struct dns_backend *dns_net_backend_new(const struct dns_config *cfg, char *err, size_t errlen)
{
    struct net *n = calloc(1, sizeof *n);
    struct ares_addr_port_node *list = NULL;
    size_t ns = 0;
    int rc;
    if (!n) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    n->be.start = net_start;
    n->be.wait = net_wait;
    n->be.cancel = net_cancel;
    n->be.free = net_free;
    if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) goto ares_err;
    n->lib = 1;
    /* Two tries in timeout_ms: c-ares doubles the wait for the second (t + 2t), and a
     * late answer to the first send still counts.  NOCHECKRESP: a SERVFAIL or REFUSED
     * comes back as such (c-ares would retry, then report "connection refused"). */
    unsigned total = cfg->timeout_ms ? cfg->timeout_ms : 2000;
    struct ares_options o = { .timeout = (int)(total / 3 ? total / 3 : 1), .tries = 2, .flags = ARES_FLAG_NOCHECKRESP };
    if ((rc = ares_init_options(&n->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS)) != ARES_SUCCESS) {
        n->ch = NULL;
        goto ares_err;
    }
    for (const char **s = cfg->servers; s && *s; s++) ns++;
    if (ns) {
        if (!(list = calloc(ns, sizeof *list))) {
            snprintf(err, errlen, "dns: out of memory");
            goto err;
        }
        for (size_t i = 0; i < ns; i++) {
            if (parse_server(cfg->servers[i], &list[i]) < 0) {
                snprintf(err, errlen, "dns: bad server \"%s\": want an IP address, optionally with :PORT ([v6]:PORT)",
                         cfg->servers[i]);
                goto err;
            }
            list[i].next = i + 1 < ns ? &list[i + 1] : NULL;
        }
        if ((rc = ares_set_servers_ports(n->ch, list)) != ARES_SUCCESS) goto ares_err;
        free(list);
    }
    return &n->be;
ares_err:
    snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
err:
    free(list);
    net_free(&n->be);
    return NULL;
}

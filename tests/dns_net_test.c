/* dns_net_test.c - the network backend against a real NSD (tests/run.sh), a silent server and a scripted one */
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "dns.h"

static char err[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static dns_ctx *resolver(const char *server, unsigned timeout_ms, unsigned budget_ms)
{
    const char *servers[] = { server, NULL };
    struct dns_config c = { .servers = servers, .timeout_ms = timeout_ms, .budget_ms = budget_ms };
    dns_ctx *d = dns_new(&c, err, sizeof err);
    if (!d) { fprintf(stderr, "dns_new: %s\n", err); exit(1); }
    dns_budget_start(d);
    return d;
}

static enum dns_status status(dns_ctx *d, const char *name, uint16_t type)
{
    struct dns_answer *a = dns_query(d, name, type);
    enum dns_status s = a->status;
    dns_answer_release(a);
    return s;
}

static const char *ip4(const struct dns_answer *a, size_t i, char *buf)
{
    if (i >= a->n || a->rr[i].type != DNS_T_A) return NULL;
    return inet_ntop(AF_INET, &a->rr[i].u.a, buf, INET_ADDRSTRLEN);
}

static void test_nsd(const char *server)
{
    dns_ctx *d = resolver(server, 2000, 8000);
    char b[INET6_ADDRSTRLEN];
    struct dns_answer *a = dns_query(d, "www.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_OK && a->n == 1 && a->ttl == 300);
    CHECK_STR(ip4(a, 0, b), "192.0.2.10");
    dns_answer_release(a);
    a = dns_query(d, "www.authscore.test", DNS_T_AAAA);
    CHECK(a->status == DNS_OK && a->n == 1);
    CHECK_STR(a->n ? inet_ntop(AF_INET6, &a->rr[0].u.aaaa, b, sizeof b) : NULL, "2001:db8::10");
    dns_answer_release(a);
    a = dns_query(d, "www.authscore.test", DNS_T_TXT);
    CHECK(a->status == DNS_OK && a->n == 1);
    CHECK_STR(a->n ? a->rr[0].u.txt.data : NULL, "v=spf1 -all");
    dns_answer_release(a);
    a = dns_query(d, "authscore.test", DNS_T_MX);
    CHECK(a->status == DNS_OK && a->n == 2);
    for (size_t i = 0; i < a->n; i++)
        CHECK(a->rr[i].type == DNS_T_MX &&
              ((a->rr[i].u.mx.pref == 10 && strcmp(a->rr[i].u.mx.host, "mx.authscore.test") == 0) ||
               (a->rr[i].u.mx.pref == 20 && strcmp(a->rr[i].u.mx.host, "mx2.authscore.test") == 0)));
    dns_answer_release(a);
    unsigned long q0 = dns_stat_queries(d);
    CHECK(status(d, "MIXED.Authscore.Test.", DNS_T_A) == DNS_OK);
    CHECK(status(d, "mixed.authscore.test", DNS_T_A) == DNS_OK && dns_stat_queries(d) == q0 + 1);
    a = dns_query(d, "x.y.wild.authscore.test", DNS_T_A);
    CHECK_STR(ip4(a, 0, b), "192.0.2.42");
    dns_answer_release(a);

    /* CNAMEs followed inside the answer; the chain's lowest TTL. */
    a = dns_query(d, "c1.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_OK && a->n == 1 && a->ttl == 30);
    CHECK_STR(ip4(a, 0, b), "192.0.2.3");
    dns_answer_release(a);
    a = dns_query(d, "cnx.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN && a->ttl == 42);
    dns_answer_release(a);

    /* 750 bytes of TXT: truncated over UDP, complete over TCP. */
    a = dns_query(d, "big.authscore.test", DNS_T_TXT);
    CHECK(a->status == DNS_OK && a->n == 1);
    if (a->n == 1) {
        CHECK(a->rr[0].u.txt.len == 750);
        CHECK(a->rr[0].u.txt.len == 750 && a->rr[0].u.txt.data[0] == 'a' && a->rr[0].u.txt.data[250] == 'b' &&
              a->rr[0].u.txt.data[749] == 'c');
    }
    dns_answer_release(a);

    /* NXDOMAIN, NODATA and an empty non-terminal; the SOA minimum is the negative TTL. */
    a = dns_query(d, "nope.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN && a->n == 0 && a->ttl == 42);
    dns_answer_release(a);
    a = dns_query(d, "mx.authscore.test", DNS_T_TXT);
    CHECK(a->status == DNS_NODATA && a->ttl == 42);
    dns_answer_release(a);
    CHECK(status(d, "ent.authscore.test", DNS_T_A) == DNS_NODATA);

    /* Ten questions in flight at once, then answered. */
    q0 = dns_stat_queries(d);
    char name[64];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "q%d.authscore.test", i);
        dns_prefetch(d, name, DNS_T_A);
    }
    CHECK(dns_stat_queries(d) == q0 + 10);
    int good = 0;
    for (int i = 9; i >= 0; i--) {
        char want[32];
        snprintf(name, sizeof name, "q%d.authscore.test", i);
        snprintf(want, sizeof want, "192.0.2.%d", 100 + i);
        a = dns_query(d, name, DNS_T_A);
        good += a->status == DNS_OK && ip4(a, 0, b) && strcmp(b, want) == 0;
        dns_answer_release(a);
    }
    CHECK(good == 10);
    CHECK(dns_stat_queries(d) == q0 + 10);
    dns_free(d);
}

/* A server that takes everything and answers nothing: a UDP socket, and a TCP
 * socket that listens on the same port but never accepts. */
static int silent_server(int *udp, int *tcp)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    *udp = socket(AF_INET, SOCK_DGRAM, 0);
    *tcp = socket(AF_INET, SOCK_STREAM, 0);
    if (*udp < 0 || *tcp < 0 || bind(*udp, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(*udp, (struct sockaddr *)&sa, &sl) < 0 || bind(*tcp, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(*tcp, 1) < 0)
        return -1;
    return ntohs(sa.sin_port);
}

static void test_silent(void)
{
    int udp, tcp, port = silent_server(&udp, &tcp);
    char server[64];
    CHECK(port > 0);
    if (port <= 0) return;
    snprintf(server, sizeof server, "127.0.0.1:%d", port);

    /* The per-query timeout fires first. */
    dns_ctx *d = resolver(server, 300, 1000);
    uint64_t t0 = now_ms();
    struct dns_answer *a = dns_query(d, "www.authscore.test", DNS_T_A);
    uint64_t ms = now_ms() - t0;
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "timeout");
    CHECK(ms >= 250 && ms < 900);
    fprintf(stderr, "silent server: timeout after %llu ms\n", (unsigned long long)ms);
    dns_answer_release(a);

    /* Many questions, each timing out, all within one budget. */
    t0 = now_ms();
    char name[64];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "p%d.authscore.test", i);
        dns_prefetch(d, name, DNS_T_A);
    }
    int tempfails = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "p%d.authscore.test", i);
        a = dns_query(d, name, DNS_T_A);
        tempfails += a->status == DNS_TEMPFAIL;
        dns_answer_release(a);
    }
    ms = now_ms() - t0;
    CHECK(tempfails == 5 && ms < 900);               /* concurrently, not 5 x 300 ms */
    dns_free(d);

    /* The budget ends a query whose own timeout is far away; later questions fail at once. */
    d = resolver(server, 5000, 1000);
    t0 = now_ms();
    a = dns_query(d, "www.authscore.test", DNS_T_A);
    ms = now_ms() - t0;
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "budget");
    CHECK(ms >= 950 && ms < 1500);
    fprintf(stderr, "silent server: budget spent after %llu ms\n", (unsigned long long)ms);
    dns_answer_release(a);
    t0 = now_ms();
    a = dns_query(d, "other.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL && now_ms() - t0 < 50);
    dns_answer_release(a);
    dns_free(d);
    close(udp);
    close(tcp);

    /* Nobody at the port: refused at once, not a wait. */
    d = resolver(server, 2000, 8000);
    t0 = now_ms();
    a = dns_query(d, "www.authscore.test", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL && now_ms() - t0 < 1000);
    fprintf(stderr, "closed port: %s after %llu ms\n", a->errstr, (unsigned long long)(now_ms() - t0));
    dns_answer_release(a);
    dns_free(d);
}

/* A scripted server (answers built with ldns), for what NSD will not do: the first
 * label of the question picks the answer. */
static void *scripted(void *arg)
{
    int fd = *(int *)arg;
    for (;;) {
        uint8_t buf[512];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        ldns_pkt *q = NULL, *r;
        if (n <= 0) break;
        if (ldns_wire2pkt(&q, buf, (size_t)n) != LDNS_STATUS_OK) continue;
        ldns_rr *qq = ldns_rr_list_rr(ldns_pkt_question(q), 0);
        char *name = ldns_rdf2str(ldns_rr_owner(qq));
        r = ldns_pkt_new();
        ldns_pkt_set_id(r, ldns_pkt_id(q));
        ldns_pkt_set_qr(r, true);
        ldns_pkt_set_rd(r, true);
        ldns_pkt_set_ra(r, true);
        ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, ldns_rr_clone(qq));
        const char *add[2] = { NULL };
        if (strncmp(name, "out.", 4) == 0) {            /* a CNAME whose target is not in the answer */
            add[0] = "out.scripted.test. 50 IN CNAME target.scripted.test.";
        } else if (strncmp(name, "target.", 7) == 0) {
            add[0] = "target.scripted.test. 70 IN A 192.0.2.77";
        } else if (strncmp(name, "servfail.", 9) == 0) {
            ldns_pkt_set_rcode(r, LDNS_RCODE_SERVFAIL);
        } else if (strncmp(name, "other.", 6) == 0) {   /* records of another name only */
            add[0] = "elsewhere.scripted.test. 50 IN A 192.0.2.1";
        } else if (strncmp(name, "loop.", 5) == 0) {
            add[0] = "loop.scripted.test. 50 IN CNAME loop.scripted.test.";
        } else {
            ldns_pkt_set_rcode(r, LDNS_RCODE_NXDOMAIN);
        }
        for (int i = 0; add[i]; i++) {
            ldns_rr *rr = NULL;
            if (ldns_rr_new_frm_str(&rr, add[i], 0, NULL, NULL) == LDNS_STATUS_OK)
                ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, rr);
        }
        uint8_t *wire = NULL;
        size_t wl = 0;
        if (ldns_pkt2wire(&wire, r, &wl) == LDNS_STATUS_OK)
            sendto(fd, wire, wl, 0, (struct sockaddr *)&from, fl);
        free(wire);
        free(name);
        ldns_pkt_free(q);
        ldns_pkt_free(r);
    }
    return NULL;
}

static void test_scripted(void)
{
    int udp, tcp, port = silent_server(&udp, &tcp);
    char server[64], b[INET_ADDRSTRLEN];
    pthread_t th;
    CHECK(port > 0 && pthread_create(&th, NULL, scripted, &udp) == 0);
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    dns_ctx *d = resolver(server, 1000, 4000);

    unsigned long q0 = dns_stat_queries(d);
    struct dns_answer *a = dns_query(d, "out.scripted.test", DNS_T_A);   /* asked again for the target */
    CHECK(a->status == DNS_OK && a->n == 1 && a->ttl == 50);
    CHECK_STR(ip4(a, 0, b), "192.0.2.77");
    CHECK(dns_stat_queries(d) == q0 + 1);
    dns_answer_release(a);
    a = dns_query(d, "servfail.scripted.test", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "SERVFAIL");
    dns_answer_release(a);
    a = dns_query(d, "other.scripted.test", DNS_T_A);
    CHECK(a->status == DNS_NODATA && a->ttl == 60);                       /* no SOA: the default */
    dns_answer_release(a);
    a = dns_query(d, "loop.scripted.test", DNS_T_A);
    CHECK(a->status == DNS_TEMPFAIL);
    CHECK_STR(a->errstr, "CNAME loop");
    dns_answer_release(a);
    a = dns_query(d, "nothing.scripted.test", DNS_T_A);
    CHECK(a->status == DNS_NXDOMAIN);
    dns_answer_release(a);
    dns_free(d);
    shutdown(udp, SHUT_RDWR);   /* ends the thread's recvfrom */
    pthread_join(th, NULL);
    close(udp);
    close(tcp);
}

int main(void)
{
    const char *server = getenv("AS_DNS");
    if (!server || !*server) {
        printf("dns_net_test: skipped: AS_DNS is not set (run it through tests/run.sh, which starts NSD)\n");
        return 1;
    }
    test_nsd(server);
    test_silent();
    test_scripted();
    return check_report();
}

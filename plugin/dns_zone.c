/* dns_zone.c - DNS backend answering from RFC 1035 master files (ldns), for tests and offline use */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dns_backend.h"

/* Every owner name and each of its ancestors has a node; an ancestor without
 * records is an empty non-terminal, which answers NODATA rather than NXDOMAIN. */
struct node {
    ldns_rbnode_t rb;            /* key: owner */
    ldns_rdf *owner;
    ldns_rr_list *rrs;           /* in file order */
    int timeout_all;             /* types without records here time out */
    uint16_t *timeout_types;     /* these time out even with records */
    size_t ntimeout;
};

struct zone {
    struct dns_backend be;
    ldns_rbtree_t *tree;
};

static int dname_cmp(const void *a, const void *b)
{
    return ldns_dname_compare(a, b);
}

static struct node *find(struct zone *z, const ldns_rdf *name)
{
    ldns_rbnode_t *n = ldns_rbtree_search(z->tree, name);
    return (struct node *)n;   /* rb is the first member */
}

static void node_free(struct node *n)
{
    ldns_rdf_deep_free(n->owner);
    ldns_rr_list_deep_free(n->rrs);
    free(n->timeout_types);
    free(n);
}

/* The node for name, created with its ancestors if missing.  NULL on OOM. */
static struct node *ensure(struct zone *z, const ldns_rdf *name)
{
    struct node *n = find(z, name);
    if (n) return n;
    if (ldns_dname_label_count(name) > 1) {
        ldns_rdf *up = ldns_dname_left_chop(name);
        struct node *p = up ? ensure(z, up) : NULL;
        ldns_rdf_deep_free(up);
        if (!p) return NULL;
    }
    if (!(n = calloc(1, sizeof *n))) return NULL;
    if (!(n->owner = ldns_rdf_clone(name)) || !(n->rrs = ldns_rr_list_new())) {
        node_free(n);
        return NULL;
    }
    n->rb.key = n->owner;
    ldns_rbtree_insert(z->tree, &n->rb);
    return n;
}

/* Takes rr.  Duplicates (same data, any TTL) collapse, as in an RRset.  0, or -1 on OOM. */
static int add_rr(struct zone *z, ldns_rr *rr)
{
    struct node *n = ensure(z, ldns_rr_owner(rr));
    if (!n) goto err;
    for (size_t i = 0; i < ldns_rr_list_rr_count(n->rrs); i++)
        if (ldns_rr_compare(ldns_rr_list_rr(n->rrs, i), rr) == 0) {
            ldns_rr_free(rr);
            return 0;
        }
    if (!ldns_rr_list_push_rr(n->rrs, rr)) goto err;
    return 0;
err:
    ldns_rr_free(rr);
    return -1;
}

int dns_zone_load(struct dns_backend *be, const char *text, size_t len, const char *where,
                  const char *origin, int strict, unsigned *skipped, char *err, size_t errlen)
{
    struct zone *z = (struct zone *)be;
    uint32_t ttl = 3600;
    ldns_rdf *orig = NULL, *prev = NULL;
    ldns_rr_list *got = ldns_rr_list_new();
    int line = 0, n = -1, bad = 0;
    FILE *fp = len ? fmemopen((void *)text, len, "r") : NULL;
    if (skipped) *skipped = 0;
    if (!len) return 0;
    if (!got || !fp) goto oom;
    if (origin && !(orig = ldns_dname_new_frm_str(origin))) {
        snprintf(err, errlen, "%s: bad origin \"%s\"", where, origin);
        goto out;
    }
    while (!feof(fp)) {
        ldns_rr *rr = NULL;
        ldns_status s = ldns_rr_new_frm_fp_l(&rr, fp, &ttl, &orig, &prev, &line);
        /* ldns counts the newlines read: the RR's last line, unless the text has no final one */
        int at = line + (feof(fp) && text[len - 1] != '\n');
        if (s == LDNS_STATUS_OK) {
            if (!ldns_rr_list_push_rr(got, rr)) { ldns_rr_free(rr); goto oom; }
        } else if (s == LDNS_STATUS_MEM_ERR) {
            goto oom;
        } else if (s != LDNS_STATUS_SYNTAX_EMPTY && s != LDNS_STATUS_SYNTAX_TTL &&
                   s != LDNS_STATUS_SYNTAX_ORIGIN) {
            if (!bad++)
                snprintf(err, errlen, "%s:%d: %s", where, at,
                         s == LDNS_STATUS_SYNTAX_INCLUDE ? "$INCLUDE is not supported" : ldns_get_errorstr_by_id(s));
            if (strict) goto out;
        }
    }
    n = (int)ldns_rr_list_rr_count(got);
    for (int i = 0; i < n; i++)
        if (add_rr(z, ldns_rr_list_rr(got, (size_t)i)) < 0) {
            for (int j = i + 1; j < n; j++) ldns_rr_free(ldns_rr_list_rr(got, (size_t)j));
            ldns_rr_list_free(got);
            got = NULL;
            goto oom;
        }
    ldns_rr_list_free(got);   /* the RRs now belong to the nodes */
    got = NULL;
    if (skipped) *skipped = (unsigned)bad;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", where);
    n = -1;
out:
    if (fp) fclose(fp);
    ldns_rr_list_deep_free(got);
    ldns_rdf_deep_free(orig);
    ldns_rdf_deep_free(prev);
    return n;
}

int dns_zone_timeout(struct dns_backend *be, const char *name, uint16_t type)
{
    struct zone *z = (struct zone *)be;
    ldns_rdf *dn = ldns_dname_new_frm_str(name);
    struct node *n = dn ? ensure(z, dn) : NULL;
    ldns_rdf_deep_free(dn);
    if (!n) return -1;
    if (!type) {
        n->timeout_all = 1;
        return 0;
    }
    uint16_t *t = realloc(n->timeout_types, (n->ntimeout + 1) * sizeof *t);
    if (!t) return -1;
    n->timeout_types = t;
    t[n->ntimeout++] = type;
    return 0;
}

/* RFC 4592: the wildcard at the closest encloser of a name that has no node. */
static struct node *wildcard(struct zone *z, const ldns_rdf *name)
{
    struct node *w = NULL;
    ldns_rdf *enc = ldns_dname_left_chop(name);
    while (enc && ldns_dname_label_count(enc) > 0 && !find(z, enc)) {
        ldns_rdf *up = ldns_dname_left_chop(enc);
        ldns_rdf_deep_free(enc);
        enc = up;
    }
    if (enc && ldns_dname_label_count(enc) > 0) {
        ldns_rdf *star = ldns_dname_new_frm_str("*");
        if (star && ldns_dname_cat(star, enc) == LDNS_STATUS_OK) w = find(z, star);
        ldns_rdf_deep_free(star);
    }
    ldns_rdf_deep_free(enc);
    return w;
}

static const ldns_rr *node_rr(const struct node *n, uint16_t type)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(n->rrs); i++)
        if (ldns_rr_get_type(ldns_rr_list_rr(n->rrs, i)) == type) return ldns_rr_list_rr(n->rrs, i);
    return NULL;
}

/* What an authority section would carry: the SOA of the closest enclosing zone. */
static uint32_t neg_ttl(struct zone *z, const ldns_rdf *name)
{
    const ldns_rr *soa = NULL;
    ldns_rdf *cur = ldns_rdf_clone(name);
    while (cur && ldns_dname_label_count(cur) > 0 && !soa) {
        struct node *n = find(z, cur);
        if (n) soa = node_rr(n, LDNS_RR_TYPE_SOA);
        ldns_rdf *up = ldns_dname_left_chop(cur);
        ldns_rdf_deep_free(cur);
        cur = up;
    }
    ldns_rdf_deep_free(cur);
    return dns_neg_ttl(soa);
}

static int times_out(const struct node *n, uint16_t type)
{
    for (size_t i = 0; i < n->ntimeout; i++)
        if (n->timeout_types[i] == type) return 1;
    return 0;
}

static struct dns_answer *resolve(struct zone *z, const char *qname, uint16_t type)
{
    struct dns_answer *a = NULL;
    uint32_t ttl = UINT32_MAX;
    ldns_rdf *cur = ldns_dname_new_frm_str(qname);
    if (!cur) return dns_answer_new(DNS_NXDOMAIN, DNS_NEG_TTL_DEFAULT, NULL);
    for (int hops = 0;; hops++) {
        struct node *n = find(z, cur);
        if (!n && !(n = wildcard(z, cur))) {
            a = dns_answer_new(DNS_NXDOMAIN, 0, NULL);
            if (a) a->ttl = ttl < neg_ttl(z, cur) ? ttl : neg_ttl(z, cur);
            break;
        }
        if (times_out(n, type)) {
            a = dns_answer_new(DNS_TEMPFAIL, 0, "timeout");
            break;
        }
        if (!(a = dns_answer_new(DNS_OK, ttl, NULL))) break;
        for (size_t i = 0; i < ldns_rr_list_rr_count(n->rrs); i++) {
            const ldns_rr *rr = ldns_rr_list_rr(n->rrs, i);
            if (ldns_rr_get_type(rr) == type && dns_answer_add(a, rr) < 0) {
                dns_answer_release(a);
                a = NULL;
                goto out;
            }
        }
        if (a->n) break;
        dns_answer_release(a);
        a = NULL;
        if (n->timeout_all) {
            a = dns_answer_new(DNS_TEMPFAIL, 0, "timeout");
            break;
        }
        const ldns_rr *cname = node_rr(n, LDNS_RR_TYPE_CNAME);
        if (!cname) {
            a = dns_answer_new(DNS_NODATA, 0, NULL);
            if (a) a->ttl = ttl < neg_ttl(z, cur) ? ttl : neg_ttl(z, cur);
            break;
        }
        if (hops == DNS_MAX_CNAME) {
            a = dns_answer_new(DNS_TEMPFAIL, 0, "CNAME loop");
            break;
        }
        if (ldns_rr_ttl(cname) < ttl) ttl = ldns_rr_ttl(cname);
        ldns_rdf_deep_free(cur);
        if (!(cur = ldns_rdf_clone(ldns_rr_rdf(cname, 0)))) break;
    }
out:
    ldns_rdf_deep_free(cur);
    return a;
}

/* Answers are ready at once: the handle is the answer. */
static void *zone_start(struct dns_backend *be, const char *name, uint16_t type)
{
    struct dns_answer *a = resolve((struct zone *)be, name, type);
    return a ? a : &dns_answer_nomem;
}

static struct dns_answer *zone_wait(struct dns_backend *be, void *h, int timeout_ms)
{
    (void)be, (void)timeout_ms;
    return h;
}

static void zone_cancel(struct dns_backend *be, void *h)
{
    (void)be;
    dns_answer_release(h);
}

static void free_node(ldns_rbnode_t *rb, void *arg)
{
    (void)arg;
    node_free((struct node *)rb);
}

static void zone_free(struct dns_backend *be)
{
    struct zone *z = (struct zone *)be;
    if (z->tree) {
        ldns_traverse_postorder(z->tree, free_node, NULL);
        ldns_rbtree_free(z->tree);
    }
    free(z);
}

struct dns_backend *dns_zone_backend_new(char *err, size_t errlen)
{
    struct zone *z = calloc(1, sizeof *z);
    if (!z || !(z->tree = ldns_rbtree_create(dname_cmp))) {
        free(z);
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    z->be.start = zone_start;
    z->be.wait = zone_wait;
    z->be.cancel = zone_cancel;
    z->be.free = zone_free;
    return &z->be;
}

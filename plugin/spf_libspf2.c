/* spf_libspf2.c - libspf2's check_host() over our DNS layer, kept for comparison with spf.c */
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spf2/spf.h>
#include "spf.h"

/* libspf2's handlers are process globals.  Warnings, info (printf to stdout: the SMTP
 * stream under exim -bh) and debug go nowhere.  The error handler is noreturn and
 * libspf2 calls abort() after it: inside our calls we jump back out instead (leaking
 * that request's objects); outside them libspf2 keeps its own, which cannot return. */
static void (*orig_error)(const char *, int, const char *) __attribute__((noreturn));
static sigjmp_buf *error_jump;
static int handlers_set;

static void quiet(const char *file, int line, const char *msg)
{
    (void)file, (void)line, (void)msg;
}

__attribute__((noreturn)) static void on_error(const char *file, int line, const char *msg)
{
    if (error_jump) siglongjmp(*error_jump, 1);
    orig_error(file, line, msg);
}

static void set_handlers(void)
{
    if (handlers_set) return;
    handlers_set = 1;
    orig_error = SPF_error_handler;
    if (!orig_error) orig_error = SPF_error_stdio;
    SPF_error_handler = on_error;
    SPF_warning_handler = quiet;
    SPF_info_handler = quiet;
    SPF_debug_handler = quiet;
}

/* libspf2 compiles an explanation into a 511-byte stack buffer, writing each macro node
 * before checking the length (SPF_c_parse_macro): an exp= text of ~300 bytes of "%{i}."
 * smashes its stack, a crash any sender domain can publish (found by fuzzing this layer).
 * So libspf2 gets exp= texts through get_exp below, and only ones short enough that their
 * compiled form (under 2 bytes per input byte) cannot reach the end of that buffer. */
#define EXP_SAFE_LEN 128

static SPF_request_t *cur_request;   /* the request being evaluated, for get_exp */

/* Presentation form for our DNS layer: libspf2 hands over names as plain text. */
static void name_escape(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 5 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\%03u", c);
    }
    out[o] = '\0';
}

static uint16_t our_type(ns_type t)
{
    switch (t) {
    case ns_t_a: return DNS_T_A;
    case ns_t_aaaa: return DNS_T_AAAA;
    case ns_t_mx: return DNS_T_MX;
    case ns_t_ptr: return DNS_T_PTR;
    case ns_t_txt: return DNS_T_TXT;
    default: return 0;           /* type SPF (99) and the rest: nothing published */
    }
}

/* An SPF_dns_rr_t from our cache.  libspf2 takes C strings: TXT stops at a NUL. */
static SPF_dns_rr_t *lookup(SPF_dns_server_t *srv, const char *domain, ns_type type, int should_cache)
{
    char q[1100];
    (void)should_cache;
    uint16_t t = our_type(type);
    if (!t) return SPF_dns_rr_new_init(srv, domain, type, 0, NO_DATA);
    name_escape(domain, q, sizeof q);
    struct dns_answer *a = dns_query(srv->hook, q, t);
    int herrno = NETDB_SUCCESS;
    switch (a->status) {
    case DNS_OK: herrno = a->n ? NETDB_SUCCESS : NO_DATA; break;
    case DNS_NXDOMAIN: herrno = HOST_NOT_FOUND; break;
    case DNS_NODATA: herrno = NO_DATA; break;
    case DNS_TEMPFAIL: herrno = TRY_AGAIN; break;
    }
    SPF_dns_rr_t *rr = SPF_dns_rr_new_init(srv, domain, type, (int)(a->ttl < 86400 ? a->ttl : 86400), herrno);
    for (size_t i = 0; rr && herrno == NETDB_SUCCESS && i < a->n && i < 1000; i++) {
        const struct dns_rr *r = &a->rr[i];
        const char *s = NULL;
        size_t len = sizeof(SPF_dns_rr_data_t);
        if (t == DNS_T_TXT) s = r->u.txt.data;
        else if (t == DNS_T_MX) s = r->u.mx.host;
        else if (t == DNS_T_PTR) s = r->u.name;
        if (s) len = strlen(s) + 1;
        if (SPF_dns_rr_buf_realloc(rr, (int)i, len) != SPF_E_SUCCESS) {
            SPF_dns_rr_free(rr);
            rr = NULL;
            break;
        }
        if (s) memcpy(rr->rr[i]->txt, s, len);   /* txt, mx and ptr share the storage */
        else if (t == DNS_T_A) rr->rr[i]->a = r->u.a;
        else rr->rr[i]->aaaa = r->u.aaaa;
        rr->num_rr = (int)i + 1;
    }
    dns_answer_release(a);
    return rr;
}

/* What SPF_request_get_exp does after its DNS lookup (first TXT RR, compiled and expanded;
 * the server's default explanation on any trouble), with the length limit above. */
static SPF_errcode_t get_exp(SPF_server_t *server, const char *domain, char **bufp, size_t *buflenp)
{
    char q[1100];
    SPF_macro_t *mac = NULL;
    const SPF_macro_t *use = server->explanation;
    SPF_response_t *scratch = SPF_response_new(cur_request);   /* its messages are not wanted */
    SPF_errcode_t err = SPF_E_NO_MEMORY;
    name_escape(domain, q, sizeof q);
    struct dns_answer *a = dns_query(server->resolver->hook, q, DNS_T_TXT);
    if (scratch && a->status == DNS_OK && a->n > 0 && strlen(a->rr[0].u.txt.data) <= EXP_SAFE_LEN &&
        SPF_record_compile_macro(server, scratch, &mac, a->rr[0].u.txt.data) == SPF_E_SUCCESS)
        use = mac;
    dns_answer_release(a);
    if (scratch && use)   /* the compiled data follows the SPF_macro_t header */
        err = SPF_record_expand_data(server, cur_request, scratch, (SPF_data_t *)(void *)((char *)(uintptr_t)use + sizeof *use),
                                     use->macro_len, bufp, buflenp);
    if (mac) SPF_macro_free(mac);
    if (scratch) SPF_response_free(scratch);
    return err;
}

static enum as_result map_result(SPF_result_t r, SPF_errcode_t err)
{
    switch (r) {
    case SPF_RESULT_PASS: return AS_PASS;
    case SPF_RESULT_FAIL: return AS_FAIL;
    case SPF_RESULT_SOFTFAIL: return AS_SOFTFAIL;
    case SPF_RESULT_NEUTRAL: return AS_NEUTRAL;
    case SPF_RESULT_NONE: return AS_NONE;
    case SPF_RESULT_TEMPERROR: return AS_TEMPERROR;
    case SPF_RESULT_PERMERROR: return AS_PERMERROR;
    default: return err == SPF_E_DNS_ERROR ? AS_TEMPERROR : AS_PERMERROR;   /* SPF_RESULT_INVALID */
    }
}

/* The identity as spf.c reports it: local@domain, postmaster@domain or postmaster@helo. */
static int identity(const struct spf_request *req, struct as_spf *out)
{
    const char *mf = req->mail_from, *at = mf ? strrchr(mf, '@') : NULL;
    const char *local = "postmaster", *dom = req->helo;
    int llen = 10;
    if (mf && *mf) {
        dom = at ? at + 1 : mf;
        if (at && at > mf) local = mf, llen = (int)(at - mf);
    } else {
        out->helo = 1;
    }
    size_t dlen = strlen(dom);
    if (dlen && dom[dlen - 1] == '.') dlen--;
    if (!(out->domain = strndup(dom, dlen)) || !(out->mail_from = malloc((size_t)llen + dlen + 2))) return -1;
    sprintf(out->mail_from, "%.*s@%s", llen, local, out->domain);
    return 0;
}

int spf_check_libspf2(dns_ctx *dns, const struct spf_request *req, struct as_spf *out)
{
    SPF_dns_server_t *volatile srv = NULL;
    SPF_server_t *volatile server = NULL;
    SPF_request_t *volatile sr = NULL;
    SPF_response_t *volatile resp = NULL;
    SPF_response_t *setup = NULL, *got = NULL;
    sigjmp_buf jb;
    char line[200];
    volatile int rc = -1;

    memset(out, 0, sizeof *out);
    set_handlers();
    if ((!req->mail_from || !*req->mail_from) && (!req->helo || !*req->helo)) {
        out->result = AS_NONE;
        return (out->reason = strdup("libspf2: no identity to check")) ? 0 : -1;
    }
    if (identity(req, out) < 0 || !(srv = calloc(1, sizeof *srv))) goto done;
    srv->lookup = lookup;
    srv->get_exp = get_exp;
    srv->name = "authscore";
    srv->hook = dns;

    error_jump = &jb;
    if (sigsetjmp(jb, 1)) {                /* libspf2 hit an internal error: its objects leak */
        error_jump = NULL;
        cur_request = NULL;
        free(srv);
        out->result = AS_TEMPERROR;
        if ((out->reason = strdup("libspf2: internal error"))) return 0;
        as_spf_clear(out);
        return -1;
    }
    if (!(server = SPF_server_new_dns(srv, 0))) goto done;
    SPF_server_set_rec_dom(server, req->receiver ? req->receiver : "unknown");
    if (req->default_exp && strlen(req->default_exp) <= EXP_SAFE_LEN) {   /* longer: libspf2's own default */
        SPF_server_set_explanation(server, req->default_exp, &setup);
        if (setup) SPF_response_free(setup);
    }
    if (!(sr = SPF_request_new(server))) goto done;
    const char *ip = req->ip ? req->ip : "";
    if ((strchr(ip, ':') ? SPF_request_set_ipv6_str(sr, ip) : SPF_request_set_ipv4_str(sr, ip)) != SPF_E_SUCCESS) {
        out->result = AS_NONE;
        snprintf(line, sizeof line, "libspf2: client address does not parse");
    } else {
        if (req->helo) SPF_request_set_helo_dom(sr, req->helo);   /* before env_from: null sender */
        if (SPF_request_set_env_from(sr, req->mail_from ? req->mail_from : "") != 0) {
            out->result = AS_NONE;
            snprintf(line, sizeof line, "libspf2: sender not usable");
        } else {
            cur_request = sr;
            SPF_errcode_t err = SPF_request_query_mailfrom(sr, &got);
            cur_request = NULL;
            resp = got;
            SPF_result_t r = got ? SPF_response_result(got) : SPF_RESULT_INVALID;
            if (got && SPF_response_errcode(got) != SPF_E_SUCCESS) err = SPF_response_errcode(got);
            out->result = map_result(r, err);
            snprintf(line, sizeof line, "libspf2: %s%s%s", SPF_strresult(r),
                     err != SPF_E_SUCCESS ? ", " : "", err != SPF_E_SUCCESS ? SPF_strerror(err) : "");
            const char *exp = got ? SPF_response_get_explanation(got) : NULL;
            if (out->result == AS_FAIL && exp && !(out->explanation = strdup(exp))) goto done;
        }
    }
    if ((out->reason = strdup(line))) rc = 0;
done:
    error_jump = NULL;
    if (resp) SPF_response_free(resp);
    if (sr) SPF_request_free(sr);
    if (server) SPF_server_free(server);
    free(srv);
    if (rc < 0) as_spf_clear(out);
    return rc;
}

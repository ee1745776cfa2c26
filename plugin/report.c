/* report.c - DMARC aggregate reports (RFC 7489 7.2): rows per message in Redis, one report per domain and day */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "dmarc.h"
#include "netaddr.h"
#include "report.h"

/* Keys (prefix "as:" by default; DAY is YYYY-MM-DD in UTC):
 *   dmarc:rows:DAY:DOMAIN     hash: row -> messages; the day's unreported rows of a policy domain
 *   dmarc:domains:DAY         hash: policy domain -> its rua= as last seen; the day's domains
 *   dmarc:claim:DAY:DOMAIN:T  rows renamed by the run (token T) that reports them
 *   dmarc:claims:DAY          hash: claim key -> claim time; an unfinished claim is taken up after an hour
 *   dmarc:seq:DAY:DOMAIN      reports made for the domain and day: the report number
 * A row is "1|ip|disposition|dkim|spf|reasons|header_from|envelope_from|policy|spf result|dkim results",
 * with disposition n/q/r, dkim and spf the aligned outcomes p/f, reasons "type=comment;...",
 * policy "p,sp,adkim,aspf,pct,fo", spf result "domain,scope,result", dkim results
 * "domain,selector,result;...".  Values never hold the separators |,;= (replaced by '?'). */

#define ROW_FIELDS 11
#define ROW_MAX 4096
#define MAX_SIGS 8
#define RECLAIM_AFTER 3600
#define SCAN_COUNT "1000"
#define MAX_DEST 8

static const char claim_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HDEL', KEYS[3], KEYS[1]) return 0 end\n"
    "redis.call('RENAME', KEYS[1], KEYS[2])\n"
    "redis.call('HDEL', KEYS[3], KEYS[1])\n"
    "redis.call('HSET', KEYS[3], KEYS[2], ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[2])\n"
    "return 1\n";

/* ---- recording ---- */

static const char *word_of(char c)
{
    return c == 'r' ? "reject" : c == 'q' ? "quarantine" : "none";
}

static char letter_of(const char *w)
{
    return w && !strcmp(w, "reject") ? 'r' : w && !strcmp(w, "quarantine") ? 'q' : 'n';
}

/* Append s to the row, lowercased when asked, with separators and anything
 * outside printable ASCII replaced by '?'. */
static void put(char *row, size_t *n, const char *s, int lower)
{
    for (; s && *s && *n < ROW_MAX - 1; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f || strchr("|,;=", c)) c = '?';
        else if (lower && c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        row[(*n)++] = (char)c;
    }
    row[*n] = '\0';
}

static void putf(char *row, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void putf(char *row, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(row + *n, ROW_MAX - *n, fmt, ap);
    va_end(ap);
    if (w > 0) *n = *n + (size_t)w >= ROW_MAX ? ROW_MAX - 1 : *n + (size_t)w;
}

static int domain_ok(const char *d)
{
    size_t n = d ? strlen(d) : 0;
    if (n == 0 || n > 253) return 0;
    for (; *d; d++)
        if (!((*d >= 'a' && *d <= 'z') || (*d >= '0' && *d <= '9') || *d == '.' || *d == '-' || *d == '_')) return 0;
    return 1;
}

static void day_of(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%d", &tm);
}

int report_record(struct pipeline *p, const char *prefix, unsigned keep_days, const struct as_envelope *env,
                  const struct as_verdict *v, time_t now)
{
    const struct as_dmarc *d = &v->dmarc;
    struct netaddr a;
    char ip[INET6_ADDRSTRLEN], row[ROW_MAX], day[16], key[400], ttl[24];
    size_t n = 0;
    if (!d->rua || !domain_ok(d->policy_domain) || !d->from_domain) return 0;
    if (d->result != AS_PASS && d->result != AS_FAIL) return 0;
    if (!env || !env->ip || netaddr_parse(env->ip, &a) != 0) return 0;
    inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.a, ip, sizeof ip);

    enum as_action act = v->score.action;
    char applied = act == AS_REJECT ? 'r' : act == AS_QUARANTINE ? 'q' : 'n';
    putf(row, &n, "1|%s|%c|%c|%c|", ip, applied, d->dkim_aligned ? 'p' : 'f', d->spf_aligned ? 'p' : 'f');
    int reasons = 0;
    if (d->flags & AS_DMARC_SAMPLED_OUT) { putf(row, &n, "sampled_out"); reasons++; }
    if (d->result == AS_FAIL ? applied != letter_of(d->disposition) : applied != 'n') {
        putf(row, &n, "%slocal_policy=", reasons++ ? ";" : "");
        put(row, &n, v->score.forced_by ? v->score.forced_by : "score", 0);
    }
    putf(row, &n, "|");
    put(row, &n, d->from_domain, 1);
    putf(row, &n, "|");
    const char *mf = env->mail_from ? strrchr(env->mail_from, '@') : NULL;
    if (mf) put(row, &n, mf + 1, 1);
    putf(row, &n, "|%c,%c,%c,%c,%d,", d->p ? d->p : 'n', d->sp ? d->sp : d->p ? d->p : 'n',
         d->adkim == 's' ? 's' : 'r', d->aspf == 's' ? 's' : 'r', d->pct);
    put(row, &n, d->fo[0] ? d->fo : "0", 0);
    putf(row, &n, "|");
    put(row, &n, v->spf.domain ? v->spf.domain : "", 1);
    putf(row, &n, ",%s,%s|", v->spf.helo ? "helo" : "mfrom", as_result_str(v->spf.result));
    for (size_t i = 0; i < v->dkim.n && i < MAX_SIGS; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        if (!s->domain) continue;
        if (i) putf(row, &n, ";");
        put(row, &n, s->domain, 1);
        putf(row, &n, ",");
        put(row, &n, s->selector, 0);
        putf(row, &n, ",%s", as_result_str(s->result));
    }

    day_of(now, day, sizeof day);
    snprintf(ttl, sizeof ttl, "%u", (keep_days ? keep_days : 7) * 86400u);
    snprintf(key, sizeof key, "%sdmarc:rows:%s:%s", prefix, day, d->policy_domain);
    pipeline_addl(p, "HINCRBY", key, row, "1", (char *)NULL);
    pipeline_addl(p, "EXPIRE", key, ttl, (char *)NULL);
    snprintf(key, sizeof key, "%sdmarc:domains:%s", prefix, day);
    pipeline_addl(p, "HSET", key, d->policy_domain, d->rua, (char *)NULL);
    pipeline_addl(p, "EXPIRE", key, ttl, (char *)NULL);
    return p->oom ? -1 : 0;
}

/* ---- a growing buffer ---- */

struct buf { char *s; size_t n, cap; int oom; };

static void bput(struct buf *b, const char *s, size_t len)
{
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + len + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    if ((size_t)w < sizeof tmp) { bput(b, tmp, (size_t)w); return; }
    char *big = malloc((size_t)w + 1);
    if (!big) { b->oom = 1; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)w + 1, fmt, ap);
    va_end(ap);
    bput(b, big, (size_t)w);
    free(big);
}

/* XML character data: markup escaped, control characters and invalid UTF-8 as '?'. */
static void bxml(struct buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (p && *p) {
        unsigned char c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int valid = len > 0 && (len == 1 ? c >= 0x20 || c == '\t' : c >= 0xc2);
        for (size_t i = 1; valid && i < len; i++) valid = (p[i] & 0xc0) == 0x80;
        if (!valid) { bput(b, "?", 1); p++; continue; }
        if (c == '&') bput(b, "&amp;", 5);
        else if (c == '<') bput(b, "&lt;", 4);
        else if (c == '>') bput(b, "&gt;", 4);
        else if (c == '"') bput(b, "&quot;", 6);
        else bput(b, (const char *)p, len);
        p += len;
    }
}

static void belem(struct buf *b, const char *indent, const char *name, const char *text)
{
    bprintf(b, "%s<%s>", indent, name);
    bxml(b, text);
    bprintf(b, "</%s>\n", name);
}

/* ---- a claimed report's rows ---- */

struct row {
    char *field;                 /* owned; split in place into f[] */
    char *f[ROW_FIELDS];
    long long count;
};

struct rows { struct row *v; size_t n, cap; };

static void rows_free(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++) free(r->v[i].field);
    free(r->v);
    memset(r, 0, sizeof *r);
}

static int valid_word(const char *s, const char *const *words)
{
    for (; *words; words++) if (!strcmp(s, *words)) return 1;
    return 0;
}

static const char *const pf_words[] = { "p", "f", NULL };
static const char *const spf_words[] = { "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror", NULL };
static const char *const dkim_words[] = { "none", "pass", "fail", "policy", "neutral", "temperror", "permerror", NULL };
static const char *const reason_words[] = {
    "forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "other", NULL
};

/* Split and check one row; 0 if it does not parse (Redis contents are untrusted). */
static int row_parse(struct row *r)
{
    char *s = r->field;
    for (int i = 0; i < ROW_FIELDS; i++) {
        r->f[i] = s;
        char *bar = strchr(s, '|');
        if (i < ROW_FIELDS - 1) {
            if (!bar) return 0;
            *bar = '\0';
            s = bar + 1;
        } else if (bar) {
            return 0;
        }
    }
    struct netaddr a;
    if (strcmp(r->f[0], "1") || netaddr_parse(r->f[1], &a) != 0) return 0;
    if (strlen(r->f[2]) != 1 || !strchr("nqr", r->f[2][0])) return 0;
    if (!valid_word(r->f[3], pf_words) || !valid_word(r->f[4], pf_words)) return 0;
    if (!r->f[6][0]) return 0;
    char p, sp, ak, as, fo[16];
    int pct;
    return sscanf(r->f[8], "%c,%c,%c,%c,%d,%15s", &p, &sp, &ak, &as, &pct, fo) == 6;
}

/* ---- the report ---- */

/* IPv6 written out in eight groups: the Appendix C schema's IPAddress type allows no "::". */
static void ip_text(const char *ip, char *out, size_t len)
{
    struct netaddr a;
    if (netaddr_parse(ip, &a) != 0 || a.family == 4) { snprintf(out, len, "%s", ip); return; }
    size_t o = 0;
    for (int i = 0; i < 8; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%x", i ? ":" : "", (unsigned)(a.a[2 * i] << 8 | a.a[2 * i + 1]));
}

static void policy_xml(struct buf *b, const char *domain, const char *policy)
{
    char p = 'n', sp = 'n', ak = 'r', as = 'r', fo[16] = "0";
    int pct = 100;
    sscanf(policy, "%c,%c,%c,%c,%d,%15s", &p, &sp, &ak, &as, &pct, fo);
    bprintf(b, "  <policy_published>\n");
    belem(b, "    ", "domain", domain);
    bprintf(b, "    <adkim>%c</adkim>\n    <aspf>%c</aspf>\n", ak == 's' ? 's' : 'r', as == 's' ? 's' : 'r');
    bprintf(b, "    <p>%s</p>\n    <sp>%s</sp>\n    <pct>%d</pct>\n", word_of(p), word_of(sp), pct < 0 || pct > 100 ? 100 : pct);
    belem(b, "    ", "fo", fo);
    bprintf(b, "  </policy_published>\n");
}

static void record_xml(struct buf *b, const struct row *r)
{
    char ip[64];
    ip_text(r->f[1], ip, sizeof ip);
    bprintf(b, "  <record>\n    <row>\n      <source_ip>%s</source_ip>\n      <count>%lld</count>\n", ip, r->count);
    bprintf(b, "      <policy_evaluated>\n        <disposition>%s</disposition>\n", word_of(r->f[2][0]));
    bprintf(b, "        <dkim>%s</dkim>\n        <spf>%s</spf>\n",
            r->f[3][0] == 'p' ? "pass" : "fail", r->f[4][0] == 'p' ? "pass" : "fail");
    char reasons[ROW_MAX];
    snprintf(reasons, sizeof reasons, "%s", r->f[5]);
    for (char *save = NULL, *t = strtok_r(reasons, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(t, '=');
        if (eq) *eq = '\0';
        if (!valid_word(t, reason_words)) continue;
        bprintf(b, "        <reason>\n          <type>%s</type>\n", t);
        if (eq && eq[1]) belem(b, "          ", "comment", eq + 1);
        bprintf(b, "        </reason>\n");
    }
    bprintf(b, "      </policy_evaluated>\n    </row>\n    <identifiers>\n");
    belem(b, "      ", "envelope_from", r->f[7]);
    belem(b, "      ", "header_from", r->f[6]);
    bprintf(b, "    </identifiers>\n    <auth_results>\n");
    char sigs[ROW_MAX];
    snprintf(sigs, sizeof sigs, "%s", r->f[10]);
    for (char *save = NULL, *t = strtok_r(sigs, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        char *sel = strchr(t, ','), *res = sel ? strchr(sel + 1, ',') : NULL;
        if (!res) continue;
        *sel++ = '\0';
        *res++ = '\0';
        if (!*t) continue;
        bprintf(b, "      <dkim>\n");
        belem(b, "        ", "domain", t);
        if (*sel) belem(b, "        ", "selector", sel);
        bprintf(b, "        <result>%s</result>\n      </dkim>\n", valid_word(res, dkim_words) ? res : "permerror");
    }
    char spf[ROW_MAX];
    snprintf(spf, sizeof spf, "%s", r->f[9]);
    char *scope = strchr(spf, ','), *res = scope ? strchr(scope + 1, ',') : NULL;
    if (res) { *scope++ = '\0'; *res++ = '\0'; }
    bprintf(b, "      <spf>\n");
    belem(b, "        ", "domain", res ? spf : "");
    bprintf(b, "        <scope>%s</scope>\n", res && !strcmp(scope, "helo") ? "helo" : "mfrom");
    bprintf(b, "        <result>%s</result>\n      </spf>\n", res && valid_word(res, spf_words) ? res : "permerror");
    bprintf(b, "    </auth_results>\n  </record>\n");
}

struct report {
    char day[16], domain[256], rua[600];
    long begin, end;
    long long seq;
    char id[400], base[800];     /* report_id; file name without extension */
    struct buf xml;
    unsigned char *gz;
    size_t gzlen;
    unsigned long messages;
};

static int cmp_rows(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->field, ((const struct row *)b)->field);
}

static void build_xml(struct report *rp, const struct report_opts *o, struct rows *rows)
{
    struct buf *b = &rp->xml;
    /* The policy most of the messages saw: a record can change during the day. */
    struct { const char *policy; long long sum; } seen[8];
    size_t nseen = 0, best = 0;
    for (size_t i = 0; i < rows->n; i++) {
        size_t j = 0;
        while (j < nseen && strcmp(seen[j].policy, rows->v[i].f[8]) != 0) j++;
        if (j == nseen) {
            if (nseen == sizeof seen / sizeof *seen) continue;
            seen[nseen].policy = rows->v[i].f[8];
            seen[nseen++].sum = 0;
        }
        seen[j].sum += rows->v[i].count;
        if (seen[j].sum > seen[best].sum) best = j;
    }
    const char *policy = nseen ? seen[best].policy : "n,n,r,r,100,0";
    bprintf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n  <version>1.0</version>\n");
    bprintf(b, "  <report_metadata>\n");
    belem(b, "    ", "org_name", o->org_name);
    belem(b, "    ", "email", o->org_email);
    belem(b, "    ", "report_id", rp->id);
    bprintf(b, "    <date_range>\n      <begin>%ld</begin>\n      <end>%ld</end>\n    </date_range>\n", rp->begin, rp->end);
    bprintf(b, "  </report_metadata>\n");
    policy_xml(b, rp->domain, policy);
    for (size_t i = 0; i < rows->n; i++) {
        record_xml(b, &rows->v[i]);
        rp->messages += (unsigned long)rows->v[i].count;
    }
    bprintf(b, "</feedback>\n");
}

static int gzip_xml(struct report *rp)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&z, (uLong)rp->xml.n) + 64;
    if (!(rp->gz = malloc(cap))) { deflateEnd(&z); return -1; }
    z.next_in = (Bytef *)rp->xml.s;
    z.avail_in = (uInt)rp->xml.n;
    z.next_out = rp->gz;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    rp->gzlen = cap - z.avail_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Write data to dir/name through a temporary file, so a reader never sees half a file. */
static int write_file(const char *dir, const char *name, const void *data, size_t len, char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { errf(err, errlen, "%s: %s", tmp, strerror(errno)); return -1; }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
    int bad = left != 0 || fsync(fd) != 0;
    int saved = errno;
    if (close(fd) != 0 && !bad) { bad = 1; saved = errno; }
    if (bad || rename(tmp, path) != 0) {
        if (!bad) saved = errno;
        errf(err, errlen, "%s: %s", path, strerror(saved ? saved : EIO));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- destinations (RFC 7489 6.2, 7.1) ---- */

struct dest {
    char addr[320];
    unsigned long long limit;    /* bytes, 0 = none */
};

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One URI of rua=: "mailto:addr[!size[kmgt]]".  0 if it is no usable mailto: URI. */
static int dest_parse(const char *uri, size_t len, struct dest *d)
{
    memset(d, 0, sizeof d[0]);
    while (len && (*uri == ' ' || *uri == '\t')) { uri++; len--; }
    while (len && (uri[len - 1] == ' ' || uri[len - 1] == '\t')) len--;
    if (len < 8 || strncasecmp(uri, "mailto:", 7) != 0) return 0;
    uri += 7;
    len -= 7;
    const char *bang = memchr(uri, '!', len);
    size_t alen = bang ? (size_t)(bang - uri) : len;
    if (bang) {
        const char *s = bang + 1, *e = uri + len;
        unsigned long long v = 0;
        if (s == e) return 0;
        for (; s < e && *s >= '0' && *s <= '9'; s++) {
            if (v > (1ULL << 40)) return 0;
            v = v * 10 + (unsigned long long)(*s - '0');
        }
        if (s < e) {
            int sh = *s == 'k' ? 10 : *s == 'm' ? 20 : *s == 'g' ? 30 : *s == 't' ? 40 : -1;
            if (sh < 0 || s + 1 != e) return 0;
            v <<= sh;
        }
        d->limit = v ? v : 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < alen; i++) {
        char c = uri[i];
        if (c == '%' && i + 2 < alen && hexval(uri[i + 1]) >= 0 && hexval(uri[i + 2]) >= 0) {
            c = (char)(hexval(uri[i + 1]) * 16 + hexval(uri[i + 2]));
            i += 2;
        }
        /* Anything that could end a header line or an address is refused. */
        if ((unsigned char)c <= ' ' || (unsigned char)c >= 0x7f || strchr("<>\",;()[]\\", c)) return 0;
        if (o + 1 >= sizeof d->addr) return 0;
        d->addr[o++] = c;
    }
    d->addr[o] = '\0';
    const char *at = strrchr(d->addr, '@');
    return at && at != d->addr && at[1] && !strchr(at + 1, '@') ? 1 : 0;
}

static void lower(char *s)
{
    for (; *s; s++) if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
}

/* RFC 7489 7.1: a destination outside the policy domain's organization must
 * publish <policy-domain>._report._dmarc.<destination> "v=DMARC1".
 * 1 authorized, 0 not, -1 DNS trouble. */
static int dest_verified(dns_ctx *dns, const char *policy_domain, const char *addr)
{
    char dest[256], org_p[256], org_d[256], q[600];
    snprintf(dest, sizeof dest, "%s", strrchr(addr, '@') + 1);
    lower(dest);
    if (dest[0] && dest[strlen(dest) - 1] == '.') dest[strlen(dest) - 1] = '\0';
    if (dmarc_org_domain(policy_domain, org_p, sizeof org_p) != 0) snprintf(org_p, sizeof org_p, "%s", policy_domain);
    if (dmarc_org_domain(dest, org_d, sizeof org_d) != 0) snprintf(org_d, sizeof org_d, "%s", dest);
    if (!strcmp(org_p, org_d)) return 1;
    if (!dns || (size_t)snprintf(q, sizeof q, "%s._report._dmarc.%s", policy_domain, dest) >= sizeof q) return 0;
    struct dns_answer *a = dns_query(dns, q, DNS_T_TXT);
    int ok = a->status == DNS_TEMPFAIL ? -1 : 0;
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
        const struct dns_rr *rr = &a->rr[i];
        if (rr->type != DNS_T_TXT || rr->u.txt.len < 8 || strncasecmp(rr->u.txt.data, "v=DMARC1", 8) != 0) continue;
        if (rr->u.txt.len == 8 || rr->u.txt.data[8] == ';' || rr->u.txt.data[8] == ' ' || rr->u.txt.data[8] == '\t')
            ok = 1;
    }
    dns_answer_release(a);
    return ok;
}

static void base64(struct buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char line[80];
    size_t l = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        line[l++] = tab[v >> 18 & 63];
        line[l++] = tab[v >> 12 & 63];
        line[l++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        line[l++] = i + 2 < n ? tab[v & 63] : '=';
        if (l == 76 || i + 3 >= n) {
            line[l++] = '\n';
            bput(b, line, l);
            l = 0;
        }
    }
}

/* An RFC 5322 message for `sendmail -t`, the report attached (RFC 7489 7.2.1.1). */
static void mail_text(struct buf *b, const struct report *rp, const struct report_opts *o, const char *receiver,
                      const char *to, unsigned n)
{
    char date[64];
    struct tm tm;
    gmtime_r(&o->now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    bprintf(b, "From: %s\nTo: %s\nDate: %s\n", o->org_email, to, date);
    bprintf(b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\n", rp->domain, receiver, rp->id);
    bprintf(b, "Message-ID: <%s.%u@%s>\nMIME-Version: 1.0\n", rp->id, n, receiver);
    bprintf(b, "Content-Type: multipart/mixed; boundary=\"=_dmarc_report\"\n\n");
    bprintf(b, "This is a DMARC aggregate report (RFC 7489) in MIME format.\n\n--=_dmarc_report\n");
    bprintf(b, "Content-Type: text/plain; charset=us-ascii\n\n");
    bprintf(b, "DMARC aggregate report for %s from %s: %lu messages between %ld and %ld (UTC seconds).\n\n",
            rp->domain, receiver, rp->messages, rp->begin, rp->end);
    bprintf(b, "--=_dmarc_report\nContent-Type: application/gzip; name=\"%s.xml.gz\"\n", rp->base);
    bprintf(b, "Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"%s.xml.gz\"\n\n", rp->base);
    base64(b, rp->gz, rp->gzlen);
    bprintf(b, "\n--=_dmarc_report--\n");
}

/* ---- a run ---- */

struct run {
    const struct report_opts *o;
    struct report_stats *st;
    char receiver[256];
    const char *prefix;
    char err[512];               /* the first error */
};

static void say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct run *r, const char *fmt, ...)
{
    char line[700];
    int n = snprintf(line, sizeof line, "dmarc-report: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (r->o->log) r->o->log(line);
    else fprintf(stderr, "authscore: %s\n", line);
}

/* One command, its reply kept for the caller (free with freeReplyObject); NULL when Redis failed. */
static redisReply *cmd(struct run *r, int argc, const char *const *argv)
{
    struct pipeline p;
    pipeline_init(&p);
    pipeline_add(&p, argc, argv);
    redisReply *rep = NULL;
    if (pipeline_exec(&p, r->o->redis) == 0) {
        rep = p.replies[0];
        p.replies[0] = NULL;
    }
    pipeline_free(&p);
    if (!rep && !r->err[0]) snprintf(r->err, sizeof r->err, "Redis unavailable");
    return rep;
}

/* Read every row of a claimed hash (HSCAN: no reply grows with the report). */
static int read_rows(struct run *r, const char *claim, struct rows *rows)
{
    char cursor[32] = "0";
    do {
        const char *argv[] = { "HSCAN", claim, cursor, "COUNT", SCAN_COUNT };
        redisReply *rep = cmd(r, 5, argv);
        if (!rep) return -1;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            snprintf(r->err, sizeof r->err, "unexpected HSCAN reply for %s", claim);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        const redisReply *kv = rep->element[1];
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            const redisReply *k = kv->element[i], *v = kv->element[i + 1];
            char *end;
            long long c = v->type == REDIS_REPLY_STRING ? strtoll(v->str, &end, 10) : 0;
            if (k->type != REDIS_REPLY_STRING || k->len >= ROW_MAX || memchr(k->str, '\0', k->len) || c <= 0 ||
                *end) {
                r->st->bad_rows++;
                continue;
            }
            if (rows->n == rows->cap) {
                size_t nc = rows->cap ? rows->cap * 2 : 64;
                struct row *nv = realloc(rows->v, nc * sizeof *nv);
                if (!nv) { freeReplyObject(rep); snprintf(r->err, sizeof r->err, "out of memory"); return -1; }
                rows->v = nv;
                rows->cap = nc;
            }
            struct row *row = &rows->v[rows->n];
            memset(row, 0, sizeof *row);
            if (!(row->field = strndup(k->str, k->len))) {
                freeReplyObject(rep);
                snprintf(r->err, sizeof r->err, "out of memory");
                return -1;
            }
            row->count = c;
            rows->n++;
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    /* HSCAN may repeat a field; sorted, repeats are neighbours. */
    qsort(rows->v, rows->n, sizeof *rows->v, cmp_rows);
    size_t o = 0;
    for (size_t i = 0; i < rows->n; i++) {
        if (o && !strcmp(rows->v[o - 1].field, rows->v[i].field)) { free(rows->v[i].field); continue; }
        rows->v[o++] = rows->v[i];
    }
    rows->n = o;
    o = 0;
    for (size_t i = 0; i < rows->n; i++) {
        if (!row_parse(&rows->v[i])) { r->st->bad_rows++; free(rows->v[i].field); continue; }
        rows->v[o++] = rows->v[i];
    }
    rows->n = o;
    return 0;
}

/* Send the report where rua= asks: mailto: only, checked and within size limits. */
static int destinations(struct run *r, struct report *rp)
{
    const struct report_opts *o = r->o;
    unsigned n = 0;
    for (const char *s = rp->rua; *s && n < MAX_DEST;) {
        size_t len = strcspn(s, ",");
        struct dest d;
        if (!dest_parse(s, len, &d)) {
            say(r, "%s: rua URI \"%.*s\" skipped: only mailto: is supported", rp->domain, (int)(len < 200 ? len : 200), s);
            r->st->skipped++;
        } else {
            int ok = dest_verified(o->dns, rp->domain, d.addr);
            struct buf mail = { 0 };
            if (ok == 1) mail_text(&mail, rp, o, r->receiver, d.addr, n + 1);
            if (ok != 1) {
                say(r, "%s: %s skipped: %s", rp->domain, d.addr, ok < 0 ? "DNS error checking _report._dmarc authorization"
                                                                        : "not authorized by a _report._dmarc record (RFC 7489 7.1)");
                r->st->skipped++;
            } else if (mail.oom) {
                snprintf(r->err, sizeof r->err, "out of memory");
                return -1;
            } else if (d.limit && mail.n > d.limit) {
                say(r, "%s: %s skipped: the report (%zu bytes) exceeds its size limit of %llu bytes", rp->domain,
                    d.addr, mail.n, d.limit);
                r->st->skipped++;
            } else {
                char name[900];
                snprintf(name, sizeof name, "%s.%u.eml", rp->base, ++n);
                if (write_file(o->out_dir, name, mail.s, mail.n, r->err, sizeof r->err) != 0) {
                    free(mail.s);
                    return -1;
                }
                r->st->mails++;
            }
            free(mail.s);
        }
        s += len;
        if (*s == ',') s++;
    }
    return 0;
}

/* Build, write and send the report of one claimed hash, then drop the claim. */
static int report_claimed(struct run *r, const char *day, const char *domain, const char *rua, const char *claim)
{
    const struct report_opts *o = r->o;
    struct report rp;
    struct rows rows = { 0 };
    int rc = -1;
    memset(&rp, 0, sizeof rp);
    snprintf(rp.day, sizeof rp.day, "%s", day);
    snprintf(rp.domain, sizeof rp.domain, "%s", domain);
    snprintf(rp.rua, sizeof rp.rua, "%s", rua ? rua : "");
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(day, "%d-%d-%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3) return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    rp.begin = (long)timegm(&tm);
    rp.end = rp.begin + 86399;

    char key[400];
    snprintf(key, sizeof key, "%sdmarc:seq:%s:%s", r->prefix, day, domain);
    const char *incr[] = { "INCR", key };
    redisReply *rep = cmd(r, 2, incr);
    if (!rep) goto out;
    rp.seq = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 1;
    freeReplyObject(rep);
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%u", (o->keep_days ? o->keep_days : 7) * 86400u + 86400u);
    const char *expire[] = { "EXPIRE", key, ttl };
    if ((rep = cmd(r, 3, expire))) freeReplyObject(rep);

    if (o->after_claim) o->after_claim(o->arg, day, domain);
    if (read_rows(r, claim, &rows) != 0) goto out;

    char compact[16];
    snprintf(compact, sizeof compact, "%.4s%.2s%.2s", day, day + 5, day + 8);
    snprintf(rp.id, sizeof rp.id, "%s.%lld.%s", compact, rp.seq, domain);
    if (rp.seq > 1) snprintf(rp.base, sizeof rp.base, "%s!%s!%ld!%ld!%lld", r->receiver, domain, rp.begin, rp.end, rp.seq);
    else snprintf(rp.base, sizeof rp.base, "%s!%s!%ld!%ld", r->receiver, domain, rp.begin, rp.end);

    if (rows.n > 0) {
        build_xml(&rp, o, &rows);
        if (rp.xml.oom || gzip_xml(&rp) != 0) { snprintf(r->err, sizeof r->err, "out of memory compressing"); goto out; }
        char name[900];
        snprintf(name, sizeof name, "%s.xml.gz", rp.base);
        if (write_file(o->out_dir, name, rp.gz, rp.gzlen, r->err, sizeof r->err) != 0) {
            goto out;
        }
        r->st->reports++;
        r->st->messages += rp.messages;
        if (destinations(r, &rp) != 0) goto out;
    }
    char claims[400];
    snprintf(claims, sizeof claims, "%sdmarc:claims:%s", r->prefix, day);
    const char *del[] = { "DEL", claim }, *hdel[] = { "HDEL", claims, claim };
    if ((rep = cmd(r, 2, del))) freeReplyObject(rep);
    if ((rep = cmd(r, 3, hdel))) freeReplyObject(rep);
    rc = 0;
out:
    rows_free(&rows);
    free(rp.xml.s);
    free(rp.gz);
    return rc;
}

/* Atomically move from (the rows, or an abandoned claim) to a fresh claim key; 1 if ours now. */
static int claim(struct run *r, const char *day, const char *domain, const char *from, char *to, size_t tolen)
{
    char host[128] = "host", claims[400], now[24], ttl[24];
    gethostname(host, sizeof host - 1);
    for (char *h = host; *h; h++) if (*h == ':' || *h <= ' ') *h = '_';
    snprintf(to, tolen, "%sdmarc:claim:%s:%s:%s.%ld.%08x", r->prefix, day, domain, host, (long)getpid(), arc4random());
    snprintf(claims, sizeof claims, "%sdmarc:claims:%s", r->prefix, day);
    snprintf(now, sizeof now, "%ld", (long)r->o->now);
    snprintf(ttl, sizeof ttl, "%u", (r->o->keep_days ? r->o->keep_days : 7) * 86400u + 86400u);
    const char *argv[] = { "EVAL", claim_script, "3", from, to, claims, now, ttl };
    redisReply *rep = cmd(r, 8, argv);
    if (!rep) return -1;
    int won = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (!r->err[0]) snprintf(r->err, sizeof r->err, "claim: %s", rep->str);
        won = -1;
    }
    freeReplyObject(rep);
    return won;
}

/* The domain a claim key names: "<prefix>dmarc:claim:DAY:DOMAIN:TOKEN". */
static int claim_domain(const struct run *r, const char *day, const char *key, char *out, size_t len)
{
    char head[300];
    snprintf(head, sizeof head, "%sdmarc:claim:%s:", r->prefix, day);
    if (strncmp(key, head, strlen(head)) != 0) return 0;
    const char *d = key + strlen(head), *colon = strchr(d, ':');
    if (!colon || (size_t)(colon - d) >= len) return 0;
    memcpy(out, d, (size_t)(colon - d));
    out[colon - d] = '\0';
    return domain_ok(out);
}

static int run_day(struct run *r, const char *day)
{
    char key[400], ckey[700], domain[256];
    int rc = 0;
    snprintf(key, sizeof key, "%sdmarc:domains:%s", r->prefix, day);
    const char *get_domains[] = { "HGETALL", key };
    redisReply *domains = cmd(r, 2, get_domains);
    if (!domains) return -1;

    /* Claims a run left behind (it died, or Redis went away before it finished). */
    snprintf(key, sizeof key, "%sdmarc:claims:%s", r->prefix, day);
    const char *get_claims[] = { "HGETALL", key };
    redisReply *claims = cmd(r, 2, get_claims);
    if (!claims) { freeReplyObject(domains); return -1; }
    for (size_t i = 0; claims->type == REDIS_REPLY_ARRAY && i + 1 < claims->elements; i += 2) {
        const redisReply *k = claims->element[i], *t = claims->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || t->type != REDIS_REPLY_STRING) continue;
        if (atol(t->str) > (long)r->o->now - RECLAIM_AFTER) continue;
        if (!claim_domain(r, day, k->str, domain, sizeof domain)) continue;
        int won = claim(r, day, domain, k->str, ckey, sizeof ckey);
        if (won < 0) { rc = -1; break; }
        if (!won) continue;
        say(r, "%s %s: taking up an unfinished claim", day, domain);
        const char *rua = NULL;
        for (size_t j = 0; domains->type == REDIS_REPLY_ARRAY && j + 1 < domains->elements; j += 2)
            if (domains->element[j]->type == REDIS_REPLY_STRING && !strcmp(domains->element[j]->str, domain))
                rua = domains->element[j + 1]->type == REDIS_REPLY_STRING ? domains->element[j + 1]->str : NULL;
        if (report_claimed(r, day, domain, rua, ckey) != 0) rc = -1;
    }
    freeReplyObject(claims);

    for (size_t i = 0; rc == 0 && domains->type == REDIS_REPLY_ARRAY && i + 1 < domains->elements; i += 2) {
        const redisReply *d = domains->element[i], *rua = domains->element[i + 1];
        if (d->type != REDIS_REPLY_STRING || rua->type != REDIS_REPLY_STRING || !domain_ok(d->str)) continue;
        snprintf(key, sizeof key, "%sdmarc:rows:%s:%s", r->prefix, day, d->str);
        int won = claim(r, day, d->str, key, ckey, sizeof ckey);
        if (won < 0) { rc = -1; break; }
        if (won && report_claimed(r, day, d->str, rua->str, ckey) != 0) rc = -1;
    }
    freeReplyObject(domains);
    return rc;
}

int report_run(const struct report_opts *o, struct report_stats *st, char *err, size_t errlen)
{
    struct run r;
    memset(&r, 0, sizeof r);
    memset(st, 0, sizeof *st);
    r.o = o;
    r.st = st;
    r.prefix = redis_prefix(o->redis);
    const char *at = o->org_email ? strrchr(o->org_email, '@') : NULL;
    snprintf(r.receiver, sizeof r.receiver, "%s", o->receiver ? o->receiver : at ? at + 1 : "");
    lower(r.receiver);
    if (!domain_ok(r.receiver)) {
        snprintf(err, errlen, "receiver \"%s\": not a domain name (give --receiver or an --org-email with a domain)",
                 r.receiver);
        return -1;
    }
    if (!o->org_email || !at || strpbrk(o->org_email, "\r\n<>\" ") || !o->org_name || strpbrk(o->org_name, "\r\n")) {
        snprintf(err, errlen, "--org-email must be an address and --org-name one line");
        return -1;
    }
    if (!o->redis) {
        snprintf(err, errlen, "no Redis configured: the rows are recorded there");
        return -1;
    }
    int rc = 0;
    if (o->date) {
        int y, m, d;
        char day[16];
        if (strlen(o->date) != 10 || sscanf(o->date, "%4d-%2d-%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31) {
            snprintf(err, errlen, "--date \"%s\": expected YYYY-MM-DD", o->date);
            return -1;
        }
        snprintf(day, sizeof day, "%04d-%02d-%02d", y, m, d);
        rc = run_day(&r, day);
    } else {
        unsigned keep = o->keep_days ? o->keep_days : 7;
        for (unsigned k = keep; k >= 1 && rc == 0; k--) {
            char day[16];
            day_of(o->now - (time_t)k * 86400, day, sizeof day);
            rc = run_day(&r, day);
        }
    }
    if (rc != 0) snprintf(err, errlen, "%s", r.err[0] ? r.err : "failed");
    return rc;
}

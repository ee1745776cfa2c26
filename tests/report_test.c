/* report_test.c - DMARC aggregate rows and reports against a throwaway redis-server: claims, rows during a build, abandoned claims, bad rows */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "check.h"
#include "redis_server.h"
#include "report.h"

#define DAY "2026-11-20"
static const time_t NOON = 1795176000;            /* 2026-11-20 12:00:00 UTC */
static const char *const RUA =
    "mailto:dmarc@shop.test,mailto:agg@reports.test!10m,mailto:nobody@unauth.test,mailto:tiny@reports.test!1k";

static struct test_redis srv;
static redis_conn *r;
static redisContext *adm;
static char out[200];
static char err[600];

struct msg {
    struct as_envelope env;
    struct as_verdict v;
    struct as_dkim_sig sig;
};

static void msg_init(struct msg *m, const char *ip, enum as_result dmarc, enum as_action action)
{
    memset(m, 0, sizeof *m);
    m->env.ip = ip;
    m->env.mail_from = "bounce@shop.test";
    m->v.spf.result = AS_PASS;
    m->v.spf.domain = (char *)"shop.test";
    m->v.dmarc.result = dmarc;
    m->v.dmarc.from_domain = (char *)"shop.test";
    m->v.dmarc.policy_domain = (char *)"shop.test";
    m->v.dmarc.rua = (char *)RUA;
    m->v.dmarc.disposition = (char *)"none";
    m->v.dmarc.spf_aligned = dmarc == AS_PASS;
    m->v.dmarc.p = m->v.dmarc.sp = 'n';
    m->v.dmarc.adkim = 'r';
    m->v.dmarc.aspf = 'r';
    m->v.dmarc.pct = 100;
    snprintf(m->v.dmarc.fo, sizeof m->v.dmarc.fo, "1");
    m->v.score.action = action;
}

static void record(struct msg *m, time_t when)
{
    struct pipeline p;
    pipeline_init(&p);
    CHECK(report_record(&p, redis_prefix(r), 7, &m->env, &m->v, when) == 0);
    CHECK(pipeline_exec(&p, r) == 0);
    pipeline_free(&p);
}

/* Messages counted by a report file, or -1 if it cannot be read. */
static long report_messages(const char *name, char *xml, size_t xmlsize)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", out, name);
    gzFile g = gzopen(path, "rb");
    if (!g) return -1;
    int n = gzread(g, xml, (unsigned)xmlsize - 1);
    gzclose(g);
    if (n <= 0) return -1;
    xml[n] = '\0';
    long sum = 0;
    for (const char *p = xml; (p = strstr(p, "<count>")); p += 7) sum += atol(p + 7);
    return sum;
}

static int exists(const char *name)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", out, name);
    return stat(path, &st) == 0;
}

static int files_in_out(void)
{
    int n = 0;
    DIR *d = opendir(out);
    for (struct dirent *e; d && (e = readdir(d));) if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static int key_exists(const char *key)
{
    redisReply *x = redisCommand(adm, "EXISTS %s", key);
    int v = x && x->type == REDIS_REPLY_INTEGER && x->integer == 1;
    if (x) freeReplyObject(x);
    return v;
}

static void quiet(const char *line) { (void)line; }

static int during;
static void record_during_build(void *arg, const char *day, const char *domain)
{
    (void)arg;
    CHECK_STR(day, DAY);
    CHECK_STR(domain, "shop.test");
    struct msg m;
    msg_init(&m, "192.0.2.99", AS_PASS, AS_ACCEPT);
    for (int i = 0; i < 2; i++) record(&m, NOON + 3600);
    during++;
}

static int validate(const char *xml)
{
    char path[300], cmd[1400];
    snprintf(path, sizeof path, "%s/.report.xml", srv.dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(xml, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "xmllint --noout --schema tests/data/dmarc-report/rfc7489.xsd %s 2>%s.log || "
             "{ cat %s.log >&2; exit 1; }", path, path, path);
    int rc = system(cmd);
    unlink(path);
    snprintf(cmd, sizeof cmd, "%s.log", path);
    unlink(cmd);
    return rc;
}

int main(void)
{
    static char xml[1 << 16];
    if (test_redis_start(&srv) != 0) return 1;
    struct redis_config rc = { .url = srv.url, .prefix = "t:", .connect_ms = 500, .io_ms = 2000, .backoff_ms = 1,
                               .log = quiet };
    r = redis_new(&rc, err, sizeof err);
    adm = test_redis_admin(&srv);
    snprintf(out, sizeof out, "%s/out", srv.dir);
    mkdir(out, 0755);
    const char *zones[] = { "tests/data/shop/zone.db", NULL };
    struct dns_config dc = { .zones = zones, .timeout_ms = 1000, .budget_ms = 5000 };
    dns_ctx *dns = dns_new(&dc, err, sizeof err);
    CHECK(r && adm && dns);
    if (!r || !adm || !dns) return 1;

    /* What is recorded: aligned passes, a spoof, a message the rules quarantined though the
     * policy asked for nothing, a pct sample, an IPv6 sender; not: no rua, no record. */
    struct msg m;
    msg_init(&m, "192.0.2.5", AS_PASS, AS_ACCEPT);
    for (int i = 0; i < 3; i++) record(&m, NOON);
    msg_init(&m, "203.0.113.66", AS_FAIL, AS_QUARANTINE);
    m.env.mail_from = "attacker@evil.test";
    m.v.spf.domain = (char *)"evil.test";
    m.v.score.forced_by = (char *)"DMARC_REPUTATION_SPOOF";
    m.sig.domain = (char *)"evil.test";
    m.sig.selector = (char *)"s1";
    m.sig.result = AS_PASS;
    m.v.dkim.sigs = &m.sig;
    m.v.dkim.n = 1;
    record(&m, NOON);
    msg_init(&m, "203.0.113.67", AS_FAIL, AS_ADD_HEADER);
    m.v.dmarc.p = 'q';
    m.v.dmarc.pct = 10;
    m.v.dmarc.flags = AS_DMARC_SAMPLED_OUT;
    m.v.dmarc.disposition = (char *)"none";
    record(&m, NOON);
    msg_init(&m, "2001:db8:5::25", AS_PASS, AS_ACCEPT);
    record(&m, NOON);
    msg_init(&m, "192.0.2.6", AS_PASS, AS_ACCEPT);
    m.v.dmarc.rua = NULL;
    record(&m, NOON);
    msg_init(&m, "192.0.2.7", AS_NONE, AS_ACCEPT);
    record(&m, NOON);
    freeReplyObject(redisCommand(adm, "HSET t:dmarc:rows:" DAY ":shop.test garbage 5 1|bad|x|p|p||a|b|c|d|e 2"));

    struct report_opts o = {
        .date = DAY, .org_name = "Receiver & Co <test>", .org_email = "dmarc@receiver.test", .out_dir = out,
        .keep_days = 7, .redis = r, .dns = dns, .now = NOON + 13 * 3600, .log = quiet,
        .after_claim = record_during_build,
    };
    struct report_stats st;
    const char *first = "receiver.test!shop.test!1795132800!1795219199.xml.gz";
    const char *second = "receiver.test!shop.test!1795132800!1795219199!2.xml.gz";
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(during == 1);
    CHECK(st.reports == 1 && st.messages == 6 && st.bad_rows == 2);
    CHECK(st.mails == 2 && st.skipped == 2);     /* unauth.test not authorized; 1k too small */
    CHECK(report_messages(first, xml, sizeof xml) == 6);
    CHECK(validate(xml) == 0);
    CHECK(strstr(xml, "<org_name>Receiver &amp; Co &lt;test&gt;</org_name>") != NULL);
    CHECK(strstr(xml, "<source_ip>2001:db8:5:0:0:0:0:25</source_ip>") != NULL);
    CHECK(strstr(xml, "<type>sampled_out</type>") != NULL);
    CHECK(strstr(xml, "<type>local_policy</type>\n          <comment>DMARC_REPUTATION_SPOOF</comment>") != NULL);
    CHECK(strstr(xml, "<disposition>quarantine</disposition>") != NULL);
    CHECK(strstr(xml, "<selector>s1</selector>") != NULL);
    CHECK(strstr(xml, "<p>none</p>") && strstr(xml, "<fo>1</fo>"));   /* the policy most messages saw */
    CHECK(strstr(xml, "192.0.2.99") == NULL);
    CHECK(exists("receiver.test!shop.test!1795132800!1795219199.1.eml"));
    CHECK(exists("receiver.test!shop.test!1795132800!1795219199.2.eml"));
    CHECK(files_in_out() == 3);
    CHECK(!key_exists("t:dmarc:claims:" DAY));

    /* The rows recorded while the first report was built make the next one. */
    o.after_claim = NULL;
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(st.reports == 1 && st.messages == 2 && st.bad_rows == 0);
    CHECK(report_messages(second, xml, sizeof xml) == 2);
    CHECK(strstr(xml, "<report_id>20261120.2.shop.test</report_id>") != NULL);
    CHECK(validate(xml) == 0);
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(st.reports == 0);

    /* A run that died after its claim: taken up an hour later, not before. */
    msg_init(&m, "192.0.2.5", AS_PASS, AS_ACCEPT);
    record(&m, NOON);
    freeReplyObject(redisCommand(adm, "RENAME t:dmarc:rows:" DAY ":shop.test t:dmarc:claim:" DAY ":shop.test:dead.1.0"));
    freeReplyObject(redisCommand(adm, "HSET t:dmarc:claims:" DAY " t:dmarc:claim:" DAY ":shop.test:dead.1.0 %ld",
                                 (long)o.now - 600));
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(st.reports == 0);
    o.now += 3600;
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(st.reports == 1 && st.messages == 1);
    CHECK(!key_exists("t:dmarc:claim:" DAY ":shop.test:dead.1.0"));
    CHECK(!key_exists("t:dmarc:claims:" DAY));

    /* Without --date: every kept day before today; today's rows wait. */
    msg_init(&m, "192.0.2.5", AS_PASS, AS_ACCEPT);
    record(&m, NOON - 86400);
    record(&m, NOON + 86400);
    o.date = NULL;
    o.now = NOON + 86400 + 60;
    CHECK(report_run(&o, &st, err, sizeof err) == 0);
    CHECK(st.reports == 1 && st.messages == 1);
    CHECK(exists("receiver.test!shop.test!1795046400!1795132799.xml.gz"));
    CHECK(key_exists("t:dmarc:rows:2026-11-21:shop.test"));

    /* Redis gone: an error, no file. */
    test_redis_stop(&srv);
    int before = files_in_out();
    o.date = "2026-11-21";
    CHECK(report_run(&o, &st, err, sizeof err) == -1);
    CHECK(strstr(err, "Redis") != NULL);
    CHECK(files_in_out() == before);

    DIR *d = opendir(out);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", out, e->d_name);
        if (e->d_name[0] != '.' || strlen(e->d_name) > 2) unlink(path);
    }
    if (d) closedir(d);
    rmdir(out);
    rmdir(srv.dir);
    dns_free(dns);
    redisFree(adm);
    redis_free(r);
    return check_report();
}

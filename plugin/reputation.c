/* reputation.c - outcome counters per sender in Redis: read before the rules, written after them */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <strings.h>
#include "dkim.h"
#include "dmarc.h"
#include "netaddr.h"
#include "reputation.h"

/* Layout: one hash per identity, <prefix>rep:<kind>:<id>, whose fields are
 * "<bucket>:<counter>" (bucket h<hours since the epoch> or d<days since the
 * epoch>, counter n sp sf kp kf mp mf), values the counts.  One HGETALL per
 * identity reads every bucket; the hash expires when the identity falls silent
 * for the daily retention, and buckets past retention that a read sees are
 * deleted by the next write.  Redis's contents are untrusted: anything that
 * does not parse is ignored (and deleted). */

#define MAX_FIELDS 4096        /* hash fields read per identity; more are ignored */
#define MAX_STALE 64           /* stale fields deleted per identity and message */
#define HDEL_CHUNK 14

static const char *const kind_key[REP_NKINDS] = { "ip", "net", "from", "spf", "ipfrom", "netfrom" };
static const char *const kind_lua[REP_NKINDS] = { "ip", "net", "from_domain", "spf_domain", "ip_from", "net_from" };
static const char *const counter_code[REP_NCOUNTERS] = { "n", "sp", "sf", "kp", "kf", "mp", "mf" };
/* m.reputation's fields, <counter>_<window>: constants, so Lua finds them in its string cache. */
static const char *const field_lua[REP_NCOUNTERS][REP_NWINDOWS] = {
    { "messages_24h", "messages_30d" }, { "spf_pass_24h", "spf_pass_30d" }, { "spf_fail_24h", "spf_fail_30d" },
    { "dkim_pass_24h", "dkim_pass_30d" }, { "dkim_fail_24h", "dkim_fail_30d" },
    { "dmarc_pass_24h", "dmarc_pass_30d" }, { "dmarc_fail_24h", "dmarc_fail_30d" },
};

static unsigned hours_of(const struct reputation_config *cfg)
{
    return !cfg || !cfg->hours ? 48 : cfg->hours < 24 ? 24 : cfg->hours;
}

static unsigned days_of(const struct reputation_config *cfg)
{
    return !cfg || !cfg->days ? 30 : cfg->days;
}

/* ---- identities ---- */

/* A domain as a key part: lowercased, printable ASCII without '|'; 0 if unusable. */
static int domain_id(const char *d, char *out, size_t outlen)
{
    size_t n = d ? strlen(d) : 0;
    if (n && d[n - 1] == '.') n--;
    if (n == 0 || n >= outlen || n > 253) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c <= ' ' || c >= 0x7f || c == '|') return 0;
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out[n] = '\0';
    return 1;
}

/* The address and its network (/24, /64) as text; 0 if ip does not parse. */
static int ip_ids(const char *ip, char *addr, char *net, size_t len)
{
    struct netaddr a;
    char buf[INET6_ADDRSTRLEN];
    if (!ip || netaddr_parse(ip, &a) != 0) return 0;
    int af = a.family == 4 ? AF_INET : AF_INET6;
    if (!inet_ntop(af, a.a, buf, sizeof buf)) return 0;
    snprintf(addr, len, "%s", buf);
    if (a.family == 4) a.a[3] = 0;
    else memset(a.a + 8, 0, 8);
    if (!inet_ntop(af, a.a, buf, sizeof buf)) return 0;
    snprintf(net, len, "%s/%d", buf, a.family == 4 ? 24 : 64);
    return 1;
}

static void set_id(struct rep_entity *e, const char *a, const char *b)
{
    e->present = 1;
    if (b) snprintf(e->id, sizeof e->id, "%s|%s", a, b);
    else snprintf(e->id, sizeof e->id, "%s", a);
}

/* Fill the identities of the message into v (counts zero). */
static void identities(const struct as_envelope *env, const struct as_verdict *v, struct reputation_view *out)
{
    char addr[64], net[80], from[256], dom[256];
    memset(out, 0, sizeof *out);
    int have_ip = ip_ids(env ? env->ip : NULL, addr, net, sizeof addr);
    int have_from = domain_id(v->dmarc.from_domain, from, sizeof from);
    if (have_ip) {
        set_id(&out->one[REP_IP], addr, NULL);
        set_id(&out->one[REP_NET], net, NULL);
    }
    if (have_from) set_id(&out->one[REP_FROM], from, NULL);
    if (domain_id(v->spf.domain, dom, sizeof dom)) set_id(&out->one[REP_SPF], dom, NULL);
    if (have_ip && have_from) {
        set_id(&out->one[REP_IP_FROM], addr, from);
        set_id(&out->one[REP_NET_FROM], net, from);
    }
    for (size_t i = 0; i < v->dkim.n && out->ndkim < REP_MAX_DKIM; i++) {
        if (!domain_id(v->dkim.sigs[i].domain, dom, sizeof dom)) continue;
        size_t j = 0;
        while (j < out->ndkim && strcmp(out->dkim[j].id, dom) != 0) j++;
        if (j == out->ndkim) set_id(&out->dkim[out->ndkim++], dom, NULL);
    }
}

static struct rep_entity *entity_at(struct reputation_view *v, size_t i, const char **kind)
{
    if (i < REP_NKINDS) {
        *kind = kind_key[i];
        return &v->one[i];
    }
    *kind = "dkim";
    return i - REP_NKINDS < v->ndkim ? &v->dkim[i - REP_NKINDS] : NULL;
}

static void key_of(const char *prefix, const char *kind, const struct rep_entity *e, char *out, size_t len)
{
    snprintf(out, len, "%srep:%s:%s", prefix ? prefix : "", kind, e->id);
}

/* ---- reading ---- */

struct clock { long long hour, day; unsigned hours, days, window_days; };

static struct clock clock_at(const struct reputation_config *cfg, time_t now)
{
    struct clock c = { (long long)now / 3600, (long long)now / 86400, hours_of(cfg), days_of(cfg), 0 };
    c.window_days = c.days < 30 ? c.days : 30;
    return c;
}

static void add_stale(struct rep_entity *e, const char *field, size_t len)
{
    if (e->nstale >= MAX_STALE || len == 0 || len > 64 || memchr(field, '\0', len)) return;
    char *n = realloc(e->stale, e->stale_len + len + 1);
    if (!n) return;
    memcpy(n + e->stale_len, field, len);
    n[e->stale_len + len] = '\0';
    e->stale = n;
    e->stale_len += len + 1;
    e->nstale++;
}

/* One "h123:sp" = "4" pair: add to the window it falls in, or note it as stale. */
static void take_field(struct rep_entity *e, const struct clock *c, const redisReply *f, const redisReply *val)
{
    if (f->type != REDIS_REPLY_STRING) return;
    const char *s = f->str, *end = f->str + f->len;
    char unit = s < end ? *s++ : 0;
    long long b = 0;
    const char *digits = s;
    while (s < end && *s >= '0' && *s <= '9' && s - digits < 12) b = b * 10 + (*s++ - '0');
    int ok = (unit == 'h' || unit == 'd') && s > digits && s < end && *s == ':';
    int ctr = -1;
    if (ok) {
        s++;
        for (int i = 0; i < REP_NCOUNTERS; i++)
            if ((size_t)(end - s) == strlen(counter_code[i]) && memcmp(s, counter_code[i], (size_t)(end - s)) == 0) ctr = i;
    }
    if (!ok || ctr < 0) { add_stale(e, f->str, f->len); return; }
    long long now_b = unit == 'h' ? c->hour : c->day;
    long long keep = unit == 'h' ? c->hours : c->days;
    if (b <= now_b - keep || b > now_b + 1) { add_stale(e, f->str, f->len); return; }   /* expired, or a skewed clock */
    long long span = unit == 'h' ? 24 : c->window_days;
    if (b <= now_b - span) return;
    long long n = 0;
    if (val->type == REDIS_REPLY_STRING && val->len > 0 && val->len < 19) {
        char buf[20], *stop;
        memcpy(buf, val->str, val->len);
        buf[val->len] = '\0';
        errno = 0;
        n = strtoll(buf, &stop, 10);
        if (errno || *stop || n < 0) n = 0;
    }
    long long *slot = &e->count[ctr][unit == 'h' ? REP_24H : REP_30D];
    *slot = *slot > (1LL << 62) - n ? (1LL << 62) : *slot + n;
}

/* Add an identity's HGETALL reply to its counts. */
static void take_reply(struct rep_entity *e, const struct clock *c, const redisReply *rep)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY) return;
    size_t pairs = rep->elements / 2;
    if (pairs > MAX_FIELDS) pairs = MAX_FIELDS;
    for (size_t j = 0; j < pairs; j++) take_field(e, c, rep->element[2 * j], rep->element[2 * j + 1]);
}

/* Note one identity for the started read (slot as in struct reputation_read), once. */
static void ask(struct reputation_read *rd, const char *prefix, int slot, const char *a, const char *b)
{
    char id[REP_ID_MAX], key[REP_ID_MAX + 64];
    if (rd->n == REP_MAX_STARTED) return;
    if (b) snprintf(id, sizeof id, "%s|%s", a, b);
    else snprintf(id, sizeof id, "%s", a);
    for (size_t i = 0; i < rd->n; i++)
        if (rd->asked[i].slot == slot && !strcmp(rd->asked[i].id, id)) return;
    rd->asked[rd->n].slot = slot;
    memcpy(rd->asked[rd->n].id, id, sizeof id);
    rd->n++;
    snprintf(key, sizeof key, "%srep:%s:%s", prefix, slot < REP_NKINDS ? kind_key[slot] : "dkim", id);
    pipeline_addl(&rd->p, "HGETALL", key, (char *)NULL);
}


void reputation_read_start(redis_conn *r, const struct as_envelope *env, const struct message *m,
                           struct reputation_read *rd)
{
    char addr[64], net[80], dom[256], d[256];
    pipeline_init(&rd->p);
    rd->n = 0;
    if (!r) return;
    const char *prefix = redis_prefix(r);
    int have_ip = ip_ids(env ? env->ip : NULL, addr, net, sizeof addr);
    if (have_ip) {
        ask(rd, prefix, REP_IP, addr, NULL);
        ask(rd, prefix, REP_NET, net, NULL);
    }
    /* spf_check's domain: MAIL FROM's after the last '@', else HELO, one final dot dropped. */
    const char *mf = env ? env->mail_from : NULL, *helo = env ? env->helo : NULL, *sd = NULL;
    if (mf && *mf) sd = strrchr(mf, '@') ? strrchr(mf, '@') + 1 : mf;
    else if (helo && *helo) sd = helo;
    if (sd && strlen(sd) < sizeof d) {
        size_t n = strlen(sd);
        memcpy(d, sd, n + 1);
        if (n && d[n - 1] == '.') d[n - 1] = '\0';
        if (domain_id(d, dom, sizeof dom)) ask(rd, prefix, REP_SPF, dom, NULL);
    }
    struct dmarc_from f;
    dmarc_from_collect(m, &f);
    for (size_t i = 0; i < f.n && i < REP_MAX_FROM; i++) {
        if (!domain_id(f.domain[i], dom, sizeof dom)) continue;
        ask(rd, prefix, REP_FROM, dom, NULL);
        if (have_ip) {
            ask(rd, prefix, REP_IP_FROM, addr, dom);
            ask(rd, prefix, REP_NET_FROM, net, dom);
        }
    }
    /* Distinct usable d= in header order, as identities() takes them from the verdict. */
    size_t ndkim = 0;
    for (size_t i = 0; i < m->nhdr && ndkim < REP_MAX_DKIM; i++) {
        const struct msg_header *h = &m->hdr[i];
        if (h->name_len != 14 || strncasecmp(h->name, "DKIM-Signature", 14) != 0) continue;
        dkim_tag_copy(h->value, h->value_len, 'd', d, sizeof d);
        if (!domain_id(d, dom, sizeof dom)) continue;
        size_t before = rd->n;
        ask(rd, prefix, REP_NKINDS, dom, NULL);
        ndkim += rd->n > before;
    }
    if (pipeline_defer(&rd->p, r) != 0) {   /* out of memory: finish reads on its own */
        pipeline_free(&rd->p);
        rd->n = 0;
    }
}

void reputation_read_drop(struct reputation_read *rd)
{
    pipeline_free(&rd->p);
    rd->n = 0;
}

void reputation_read_finish(redis_conn *r, struct reputation_read *rd, const struct reputation_config *cfg,
                            const struct as_envelope *env, const struct as_verdict *v, time_t now,
                            struct reputation_view *out)
{
    struct pipeline rest;
    size_t idx[REP_NKINDS + REP_MAX_DKIM], n = 0, asked = rd ? rd->n : 0;
    int any = 0;
    char key[REP_ID_MAX + 64];
    identities(env, v, out);
    pipeline_init(&rest);
    if (!r || (asked && pipeline_exec(&rd->p, r) != 0)) goto out;
    struct clock c = clock_at(cfg, now);
    for (size_t i = 0; i < REP_NKINDS + REP_MAX_DKIM; i++) {
        const char *kind;
        struct rep_entity *e = entity_at(out, i, &kind);
        int slot = i < REP_NKINDS ? (int)i : REP_NKINDS;
        size_t k = 0;
        if (!e || !e->present) continue;
        any = 1;
        while (k < asked && (rd->asked[k].slot != slot || strcmp(rd->asked[k].id, e->id) != 0)) k++;
        if (k < asked) {
            take_reply(e, &c, pipeline_reply(&rd->p, k));
            continue;
        }
        key_of(redis_prefix(r), kind, e, key, sizeof key);   /* not foreseen: read now */
        pipeline_addl(&rest, "HGETALL", key, (char *)NULL);
        idx[n++] = i;
    }
    if (n && pipeline_exec(&rest, r) != 0) {   /* all or nothing, as one read would be */
        reputation_view_clear(out);
        identities(env, v, out);
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        const char *kind;
        take_reply(entity_at(out, idx[k], &kind), &c, pipeline_reply(&rest, k));
    }
    out->available = any;   /* a message without identities asked Redis nothing */
out:
    pipeline_free(&rest);
    if (rd) reputation_read_drop(rd);
}

void reputation_read(redis_conn *r, const struct reputation_config *cfg, const struct as_envelope *env,
                     const struct as_verdict *v, time_t now, struct reputation_view *out)
{
    reputation_read_finish(r, NULL, cfg, env, v, now, out);
}

void reputation_view_clear(struct reputation_view *out)
{
    for (size_t i = 0; i < REP_NKINDS; i++) free(out->one[i].stale);
    for (size_t i = 0; i < REP_MAX_DKIM; i++) free(out->dkim[i].stale);
    memset(out, 0, sizeof *out);
}

/* ---- writing ---- */

struct outcome { int spf_pass, spf_fail, dkim_pass, dkim_fail, dmarc_pass, dmarc_fail; };

static struct outcome outcome_of(const struct as_verdict *v, const char *dkim_domain)
{
    struct outcome o = { 0, 0, 0, 0, 0, 0 };
    o.spf_pass = v->spf.result == AS_PASS;
    o.spf_fail = v->spf.result == AS_FAIL || v->spf.result == AS_SOFTFAIL;
    for (size_t i = 0; i < v->dkim.n; i++) {
        const struct as_dkim_sig *s = &v->dkim.sigs[i];
        char d[256];
        if (dkim_domain && (!domain_id(s->domain, d, sizeof d) || strcmp(d, dkim_domain) != 0)) continue;
        if (s->result == AS_PASS) o.dkim_pass = 1;
        if (s->result == AS_FAIL) o.dkim_fail = 1;
    }
    if (o.dkim_pass) o.dkim_fail = 0;
    o.dmarc_pass = v->dmarc.result == AS_PASS;
    o.dmarc_fail = v->dmarc.result == AS_FAIL;
    return o;
}

static int record_entity(struct pipeline *p, const char *key, const struct outcome *o, const struct clock *c,
                         const struct rep_entity *seen)
{
    const int on[REP_NCOUNTERS] = { 1, o->spf_pass, o->spf_fail, o->dkim_pass, o->dkim_fail, o->dmarc_pass, o->dmarc_fail };
    char field[48], ttl[24];
    for (int i = 0; i < REP_NCOUNTERS; i++) {
        if (!on[i]) continue;
        snprintf(field, sizeof field, "h%lld:%s", c->hour, counter_code[i]);
        pipeline_addl(p, "HINCRBY", key, field, "1", (char *)NULL);
        snprintf(field, sizeof field, "d%lld:%s", c->day, counter_code[i]);
        pipeline_addl(p, "HINCRBY", key, field, "1", (char *)NULL);
    }
    snprintf(ttl, sizeof ttl, "%u", (c->days + 1) * 86400u);
    pipeline_addl(p, "EXPIRE", key, ttl, (char *)NULL);
    const char *f = seen ? seen->stale : NULL;
    for (size_t left = seen ? seen->nstale : 0; left > 0;) {
        const char *argv[2 + HDEL_CHUNK] = { "HDEL", key };
        int argc = 2;
        for (; left > 0 && argc < 2 + HDEL_CHUNK; left--, f += strlen(f) + 1) argv[argc++] = f;
        pipeline_add(p, argc, argv);
    }
    return p->oom ? -1 : 0;
}

int reputation_record(struct pipeline *p, const char *prefix, const struct reputation_config *cfg,
                      const struct as_envelope *env, const struct as_verdict *v,
                      const struct reputation_view *seen, time_t now)
{
    struct reputation_view ids;
    struct clock c = clock_at(cfg, now);
    struct outcome msg = outcome_of(v, NULL);
    char key[REP_ID_MAX + 64];
    identities(env, v, &ids);
    for (size_t i = 0; i < REP_NKINDS + REP_MAX_DKIM; i++) {
        const char *kind;
        struct rep_entity *e = entity_at(&ids, i, &kind);
        if (!e || !e->present) continue;
        /* The read saw the same identities in the same order; its stale list is this key's. */
        const struct rep_entity *s = NULL;
        if (seen && seen->available) {
            const struct rep_entity *cand = i < REP_NKINDS ? &seen->one[i]
                                          : i - REP_NKINDS < seen->ndkim ? &seen->dkim[i - REP_NKINDS] : NULL;
            if (cand && cand->present && strcmp(cand->id, e->id) == 0) s = cand;
        }
        struct outcome own = i >= REP_NKINDS ? outcome_of(v, e->id) : msg;
        key_of(prefix, kind, e, key, sizeof key);
        if (record_entity(p, key, &own, &c, s) != 0) return -1;
    }
    return 0;
}

/* ---- Lua: m.reputation ---- */

static void push_entity(lua_State *L, const struct rep_entity *e)
{
    lua_createtable(L, 0, REP_NCOUNTERS * REP_NWINDOWS + 1);
    for (int i = 0; i < REP_NCOUNTERS; i++)
        for (int w = 0; w < REP_NWINDOWS; w++) {
            lua_pushinteger(L, e ? (lua_Integer)e->count[i][w] : 0);
            lua_setfield(L, -2, field_lua[i][w]);
        }
    if (e && e->present) {
        lua_pushstring(L, e->id);
        lua_setfield(L, -2, "id");
    }
}

void reputation_push(lua_State *L, const struct reputation_view *v)
{
    lua_createtable(L, 0, REP_NKINDS + 2);
    lua_pushboolean(L, v && v->available);
    lua_setfield(L, -2, "available");
    for (int k = 0; k < REP_NKINDS; k++) {
        push_entity(L, v ? &v->one[k] : NULL);
        lua_setfield(L, -2, kind_lua[k]);
    }
    lua_createtable(L, 0, v ? (int)v->ndkim : 0);
    for (size_t i = 0; v && i < v->ndkim; i++) {
        push_entity(L, &v->dkim[i]);
        lua_setfield(L, -2, v->dkim[i].id);
    }
    lua_setfield(L, -2, "dkim");
}

/* ---- Lua: authscore.store ---- */

struct store { redis_conn *r; unsigned calls; };

#define STORE_REGKEY "authscore.store"

void reputation_store_bind(lua_State *L, redis_conn *r)
{
    lua_getfield(L, LUA_REGISTRYINDEX, STORE_REGKEY);
    struct store *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!s) {
        s = lua_newuserdatauv(L, sizeof *s, 0);
        lua_setfield(L, LUA_REGISTRYINDEX, STORE_REGKEY);
    }
    s->r = r;
    s->calls = 0;
}

/* The store for this call, or NULL when there is no Redis or the budget is spent. */
static struct store *store_use(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, STORE_REGKEY);
    struct store *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!s || !s->r || s->calls >= REP_STORE_CALLS) return NULL;
    s->calls++;
    return s;
}

/* Check the key argument and build the Redis key into out[REP_STORE_KEY_MAX + 64]. */
static void store_key(lua_State *L, int arg, redis_conn *r, char *out, size_t outlen)
{
    size_t n;
    const char *k = luaL_checklstring(L, arg, &n);
    luaL_argcheck(L, n > 0 && n <= REP_STORE_KEY_MAX, arg, "key of 1 to 128 bytes expected");
    for (size_t i = 0; i < n; i++)
        luaL_argcheck(L, k[i] > ' ' && k[i] < 0x7f, arg, "key of printable ASCII without spaces expected");
    snprintf(out, outlen, "%sstore:%.*s", redis_prefix(r), (int)n, k);
}

static long store_ttl(lua_State *L, int arg)
{
    lua_Integer t = luaL_checkinteger(L, arg);
    luaL_argcheck(L, t >= 1 && t <= REP_STORE_TTL_MAX, arg, "ttl of 1 to 34560000 seconds expected");
    return (long)t;
}

/* authscore.store.incr(key, ttl) -> the new count, or nil when Redis is unavailable */
static int l_store_incr(lua_State *L)
{
    char key[REP_STORE_KEY_MAX + 64], ttl[24];
    store_key(L, 1, NULL, key, sizeof key);
    snprintf(ttl, sizeof ttl, "%ld", store_ttl(L, 2));
    struct store *s = store_use(L);
    if (!s) { lua_pushnil(L); return 1; }
    store_key(L, 1, s->r, key, sizeof key);
    const char *incr[] = { "INCR", key }, *expire[] = { "EXPIRE", key, ttl };
    size_t incr_len[] = { 4, strlen(key) }, expire_len[] = { 6, strlen(key), strlen(ttl) };
    struct redis_cmd cmds[2] = { { 2, incr, incr_len }, { 3, expire, expire_len } };
    redisReply *rep[2];
    long long n = 0;
    int ok = redis_exec(s->r, cmds, 2, rep) == 0 && rep[0]->type == REDIS_REPLY_INTEGER;
    if (ok) n = rep[0]->integer;
    if (rep[0]) redis_replies_free(rep, 2);
    if (ok) lua_pushinteger(L, (lua_Integer)n);
    else lua_pushnil(L);
    return 1;
}

/* authscore.store.get(key) -> string, or nil when absent or Redis is unavailable */
static int l_store_get(lua_State *L)
{
    char key[REP_STORE_KEY_MAX + 64], val[REP_STORE_VALUE_MAX];
    store_key(L, 1, NULL, key, sizeof key);
    struct store *s = store_use(L);
    if (!s) { lua_pushnil(L); return 1; }
    store_key(L, 1, s->r, key, sizeof key);
    const char *argv[] = { "GET", key };
    size_t lens[] = { 3, strlen(key) };
    struct redis_cmd cmd = { 2, argv, lens };
    redisReply *rep;
    size_t n = 0;
    int ok = redis_exec(s->r, &cmd, 1, &rep) == 0 && rep->type == REDIS_REPLY_STRING && rep->len <= sizeof val;
    if (ok) memcpy(val, rep->str, n = rep->len);
    if (rep) redis_replies_free(&rep, 1);
    if (ok) lua_pushlstring(L, val, n);
    else lua_pushnil(L);
    return 1;
}

/* authscore.store.set(key, value, ttl) -> true, or nil when Redis is unavailable */
static int l_store_set(lua_State *L)
{
    char key[REP_STORE_KEY_MAX + 64], ttl[24];
    size_t vlen;
    store_key(L, 1, NULL, key, sizeof key);
    luaL_argcheck(L, lua_type(L, 2) == LUA_TSTRING || lua_type(L, 2) == LUA_TNUMBER, 2, "string or number expected");
    const char *val = lua_tolstring(L, 2, &vlen);
    luaL_argcheck(L, vlen <= REP_STORE_VALUE_MAX, 2, "value of at most 1024 bytes expected");
    snprintf(ttl, sizeof ttl, "%ld", store_ttl(L, 3));
    struct store *s = store_use(L);
    if (!s) { lua_pushnil(L); return 1; }
    store_key(L, 1, s->r, key, sizeof key);
    const char *argv[] = { "SET", key, val, "EX", ttl };
    size_t lens[] = { 3, strlen(key), vlen, 2, strlen(ttl) };
    struct redis_cmd cmd = { 5, argv, lens };
    redisReply *rep;
    int ok = redis_exec(s->r, &cmd, 1, &rep) == 0 && rep->type == REDIS_REPLY_STATUS;
    if (rep) redis_replies_free(&rep, 1);
    if (ok) lua_pushboolean(L, 1);
    else lua_pushnil(L);
    return 1;
}

void reputation_store_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"incr", l_store_incr}, {"get", l_store_get}, {"set", l_store_set}, {NULL, NULL}
    };
    luaL_newlib(L, fns);
}

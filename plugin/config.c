/* config.c - authscore.conf: a Lua file of data, checked key by key */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <lua.h>
#include <lauxlib.h>
#include "config.h"
#include "redis.h"

#define MAX_LIST 64

struct loader {
    struct as_settings *s;
    char *err;
    size_t errlen;
    int failed;
};

/* Records the line of each top-level assignment, for messages about that key. */
static int l_conf_newindex(lua_State *L)
{
    lua_Debug ar;
    int line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) line = ar.currentline;
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.lines");
    lua_pushvalue(L, 2);
    lua_pushinteger(L, line);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_rawset(L, 1);
    return 0;
}

static int bad(struct loader *ld, lua_State *L, const char *key, const char *sub, const char *problem)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "authscore.lines");
    lua_getfield(L, -1, key);
    int line = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    snprintf(ld->err, ld->errlen, "%s:%d: %s%s%s: %s", ld->s->path, line, key, sub ? "." : "", sub ? sub : "", problem);
    ld->failed = 1;
    return -1;
}

static char *resolve(const char *base, const char *p)
{
    if (p[0] == '/' || !strchr(base, '/')) return strdup(p);
    size_t dir = (size_t)(strrchr(base, '/') - base);
    char *out = malloc(dir + strlen(p) + 2);
    if (out) sprintf(out, "%.*s/%s", (int)dir, base, p);
    return out;
}

/* A list of strings at the top of the stack. */
static char **string_list(struct loader *ld, lua_State *L, const char *key, const char *sub, int paths)
{
    if (!lua_istable(L, -1)) { bad(ld, L, key, sub, "expected a list of strings"); return NULL; }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n > MAX_LIST) { bad(ld, L, key, sub, "too many entries"); return NULL; }
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v) { bad(ld, L, key, sub, "out of memory"); return NULL; }
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
            lua_pop(L, 1);
            bad(ld, L, key, sub, "expected a list of strings");
            goto fail;
        }
        v[i - 1] = paths ? resolve(ld->s->path, lua_tostring(L, -1)) : strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!v[i - 1]) { bad(ld, L, key, sub, "out of memory"); goto fail; }
    }
    return v;
fail:
    for (lua_Integer i = 0; i < n; i++) free(v[i]);
    free(v);
    return NULL;
}

static int get_uint(struct loader *ld, lua_State *L, const char *key, const char *sub, unsigned max, unsigned *out)
{
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v <= 0 || (lua_Unsigned)v > max) {
        char why[64];
        snprintf(why, sizeof why, "expected a whole number from 1 to %u", max);
        return bad(ld, L, key, sub, why);
    }
    *out = (unsigned)v;
    return 0;
}

/* Check the fields of the sub-table at the top against the allowed names. */
static int only_fields(struct loader *ld, lua_State *L, const char *key, const char *const *allowed)
{
    if (!lua_istable(L, -1)) return bad(ld, L, key, NULL, "expected a table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        const char *const *a = allowed;
        if (lua_type(L, -1) == LUA_TSTRING)
            while (*a && strcmp(*a, lua_tostring(L, -1)) != 0) a++;
        if (lua_type(L, -1) != LUA_TSTRING || !*a) {
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
            char sub[96];
            snprintf(sub, sizeof sub, "%s", k);
            lua_pop(L, 1);
            return bad(ld, L, key, sub, "unknown key");
        }
    }
    return 0;
}

static int check_key(struct loader *ld, lua_State *L, const char *key)
{
    struct as_settings *s = ld->s;
    if (!strcmp(key, "authserv_id") || !strcmp(key, "redis") || !strcmp(key, "on_error")) {
        if (lua_type(L, -1) != LUA_TSTRING) return bad(ld, L, key, NULL, "expected a string");
        const char *v = lua_tostring(L, -1);
        if (!strcmp(key, "on_error")) {
            if (as_action_parse(v, &s->on_error) != 0 || (s->on_error != AS_TEMPFAIL && s->on_error != AS_ACCEPT))
                return bad(ld, L, key, NULL, "expected \"tempfail\" or \"accept\"");
            s->on_error_set = 1;
            return 0;
        }
        if (!strcmp(key, "redis")) {   /* the URL is checked here, to be reported with its line */
            char why[300];
            redis_conn *r = redis_new(&(struct redis_config){ .url = v }, why, sizeof why);
            if (!r) return bad(ld, L, key, NULL, strncmp(why, "redis: ", 7) ? why : why + 7);
            redis_free(r);
        }
        char **dst = !strcmp(key, "redis") ? &s->redis : &s->authserv_id;
        return (*dst = strdup(v)) ? 0 : bad(ld, L, key, NULL, "out of memory");
    }
    if (!strcmp(key, "zones")) return (s->zones = string_list(ld, L, key, NULL, 1)) ? 0 : -1;
    if (!strcmp(key, "rules")) return (s->rules = string_list(ld, L, key, NULL, 1)) ? 0 : -1;
    if (!strcmp(key, "dns")) {
        static const char *const f[] = { "servers", "timeout_ms", "budget_ms", NULL };
        if (only_fields(ld, L, key, f)) return -1;
        if (lua_getfield(L, -1, "servers") != LUA_TNIL && !(s->dns_servers = string_list(ld, L, key, "servers", 0)))
            return -1;
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "timeout_ms") != LUA_TNIL && get_uint(ld, L, key, "timeout_ms", 60000, &s->dns_timeout_ms))
            return -1;
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "budget_ms") != LUA_TNIL && get_uint(ld, L, key, "budget_ms", 600000, &s->dns_budget_ms))
            return -1;
        lua_pop(L, 1);
        return 0;
    }
    if (!strcmp(key, "redis_options")) {
        static const char *const f[] = { "prefix", "connect_ms", "io_ms", "backoff_ms", "dns_ttl_max", NULL };
        unsigned max[] = { 0, 60000, 60000, 3600000, 604800 };
        unsigned *dst[] = { NULL, &s->redis_connect_ms, &s->redis_io_ms, &s->redis_backoff_ms, &s->dns_ttl_max };
        if (only_fields(ld, L, key, f)) return -1;
        if (lua_getfield(L, -1, "prefix") != LUA_TNIL) {
            size_t len;
            const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
            if (!p || len > 64 || strlen(p) != len) return bad(ld, L, key, "prefix", "expected a string of at most 64 bytes");
            if (!(s->redis_prefix = strdup(p))) return bad(ld, L, key, "prefix", "out of memory");
        }
        lua_pop(L, 1);
        for (int i = 1; f[i]; i++) {
            if (lua_getfield(L, -1, f[i]) != LUA_TNIL && get_uint(ld, L, key, f[i], max[i], dst[i])) return -1;
            lua_pop(L, 1);
        }
        return 0;
    }
    if (!strcmp(key, "actions")) {
        static const char *const f[] = { "reject", "quarantine", "add_header", NULL };
        if (only_fields(ld, L, key, f)) return -1;
        double *dst[] = { &s->reject, &s->quarantine, &s->add_header };
        int *have[] = { &s->have_reject, &s->have_quarantine, &s->have_add_header };
        for (int i = 0; i < 3; i++) {
            if (lua_getfield(L, -1, f[i]) != LUA_TNIL) {
                if (!lua_isnumber(L, -1)) return bad(ld, L, key, f[i], "expected a number");
                *dst[i] = lua_tonumber(L, -1);
                *have[i] = 1;
            }
            lua_pop(L, 1);
        }
        return 0;
    }
    if (!strcmp(key, "reputation")) {
        static const char *const f[] = { "hours", "days", NULL };
        if (only_fields(ld, L, key, f)) return -1;
        if (lua_getfield(L, -1, "hours") != LUA_TNIL &&
            (get_uint(ld, L, key, "hours", 24 * 366, &s->reputation_hours) ||
             (s->reputation_hours < 24 && bad(ld, L, key, "hours", "expected a whole number from 24 to 8784"))))
            return -1;
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "days") != LUA_TNIL && get_uint(ld, L, key, "days", 366, &s->reputation_days)) return -1;
        lua_pop(L, 1);
        return 0;
    }
    if (!strcmp(key, "dmarc_reports")) {
        static const char *const f[] = { "keep_days", NULL };
        if (only_fields(ld, L, key, f)) return -1;
        if (lua_getfield(L, -1, "keep_days") != LUA_TNIL && get_uint(ld, L, key, "keep_days", 60, &s->report_keep_days))
            return -1;
        lua_pop(L, 1);
        return 0;
    }
    if (!strcmp(key, "limits")) {
        static const char *const f[] = { "rule_ms", "memory_kb", NULL };
        if (only_fields(ld, L, key, f)) return -1;
        if (lua_getfield(L, -1, "rule_ms") != LUA_TNIL && get_uint(ld, L, key, "rule_ms", 10000, &s->rule_ms)) return -1;
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "memory_kb") != LUA_TNIL && get_uint(ld, L, key, "memory_kb", 1 << 20, &s->memory_kb))
            return -1;
        lua_pop(L, 1);
        return 0;
    }
    if (!strcmp(key, "allowlist") || !strcmp(key, "options")) {   /* read by the rules themselves */
        return lua_istable(L, -1) ? 0 : bad(ld, L, key, NULL, "expected a table");
    }
    return bad(ld, L, key, NULL, "unknown key");
}

/* A configuration is data: ten million instructions mean a loop, not a setting. */
static void l_conf_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "configuration runs too long (a loop?)");
}

/* Protected: run the file with an environment of data only, then check every key. */
static int l_conf_load(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "authscore.lines");
    if (luaL_loadfilex(L, ld->s->path, "t") != LUA_OK) return lua_error(L);
    lua_newtable(L);                           /* env: no functions at all */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_conf_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, -3, 1);
    lua_insert(L, -2);
    lua_call(L, 0, 0);
    int env = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, env)) {
        if (lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 1); continue; }
        if (check_key(ld, L, lua_tostring(L, -2)) != 0) return 0;
        lua_settop(L, env + 1);
    }
    return 0;
}

int config_load(const char *path, struct as_settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    struct loader ld = { s, err, errlen, 0 };
    if (!(s->path = strdup(path))) { snprintf(err, errlen, "out of memory"); return -1; }
    struct stat st;
    if (stat(path, &st) != 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    lua_State *L = luaL_newstate();
    if (!L) { snprintf(err, errlen, "%s: cannot create a Lua state", path); return -1; }
    lua_sethook(L, l_conf_hook, LUA_MASKCOUNT, 10000000);
    lua_pushcfunction(L, l_conf_load);
    lua_pushlightuserdata(L, &ld);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error";
        /* Lua says "file:line: message" already, except for a missing file. */
        snprintf(err, errlen, "%s", m);
        ld.failed = 1;
    }
    lua_close(L);
    return ld.failed ? -1 : 0;
}

static void free_list(char **v)
{
    for (char **p = v; p && *p; p++) free(*p);
    free(v);
}

void config_free(struct as_settings *s)
{
    free(s->path); free(s->authserv_id); free(s->redis); free(s->redis_prefix);
    free_list(s->dns_servers); free_list(s->zones); free_list(s->rules);
    memset(s, 0, sizeof *s);
}

/* lpattern.c - Lua 5.4 pattern matching (find, match, gmatch, gsub) written to count its steps */
#define _GNU_SOURCE                 /* memmem */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "lpattern.h"

/* Lua's matcher runs inside one C call, where the count hook that bounds the
 * rules never fires.  This one follows the reference manual (section 6.4.1)
 * and Lua 5.4's observable behaviour (which errors are raised, and when), and
 * charges every item it tries against a budget instead. */

#define MAX_CAPTURES 32             /* as Lua: a 33rd capture is "too many captures" */
#define MAX_DEPTH 200               /* as Lua: the same nesting fails with "pattern too complex" */
#define CAP_OPEN ((size_t)-1)       /* capture length while its ')' is not reached yet */
#define CAP_POSITION ((size_t)-2)   /* "()": the capture is a position, not a string */
#define NO_MATCH ((size_t)-1)
#define SPECIALS "^$*+?.([%-"

/* One step is one item tried at one subject position, or four bytes of a
 * scan (a set, %b, a back-reference, a plain find): about the same time. */
#define SCAN_STEPS(n) (1 + ((unsigned long)(n) >> 2))

struct limits {
    unsigned long max_steps;
    size_t max_subject;
    unsigned long pool;             /* steps left for this message, if pool_on */
    int pool_on;
};

static const char limits_key = 0;   /* its address keys the limits in the registry */

struct capture {
    const char *start;
    size_t len;                     /* or CAP_OPEN, CAP_POSITION */
};

struct matcher {
    lua_State *L;
    const char *subj, *subj_end, *pat_end;
    int depth, ncap;
    struct capture cap[MAX_CAPTURES];
    unsigned long call_left;
    unsigned long *pool;            /* the message's pool, or no_pool */
    unsigned long no_pool;
};

/* ---- limits ---- */

/* Push the state's limits, creating them on first use. */
static struct limits *limits_push(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &limits_key) == LUA_TUSERDATA)
        return lua_touserdata(L, -1);
    lua_pop(L, 1);
    struct limits *lim = lua_newuserdatauv(L, sizeof *lim, 0);
    lim->max_steps = LPATTERN_STEPS;
    lim->max_subject = LPATTERN_SUBJECT;
    lim->pool = 0;
    lim->pool_on = 0;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &limits_key);
    return lim;
}

static void matcher_init(struct matcher *m, lua_State *L, struct limits *lim,
                         const char *s, size_t ls, const char *p, size_t lp)
{
    if (ls > lim->max_subject)
        luaL_error(L, "subject too long for pattern functions");
    m->L = L;
    m->subj = s;
    m->subj_end = s + ls;
    m->pat_end = p + lp;
    m->depth = 0;
    m->ncap = 0;
    m->call_left = lim->max_steps;
    m->no_pool = ULONG_MAX;
    m->pool = lim->pool_on ? &lim->pool : &m->no_pool;
}

/* Both counters go down together, so an error or a replacement function that
 * raises cannot leave steps uncounted in the message's pool. */
static void charge(struct matcher *m, unsigned long n)
{
    if (*m->pool < n) {
        *m->pool = 0;
        luaL_error(m->L, "pattern too complex (step limit for this message)");
    }
    if (m->call_left < n)
        luaL_error(m->L, "pattern too complex (step limit)");
    m->call_left -= n;
    *m->pool -= n;
}

/* ---- single characters, classes and sets ---- */

/* Does c belong to %cl?  A non-letter after '%' stands for itself. */
static int class_has(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a': in = isalpha(c); break;
    case 'c': in = iscntrl(c); break;
    case 'd': in = isdigit(c); break;
    case 'g': in = isgraph(c); break;
    case 'l': in = islower(c); break;
    case 'p': in = ispunct(c); break;
    case 's': in = isspace(c); break;
    case 'u': in = isupper(c); break;
    case 'w': in = isalnum(c); break;
    case 'x': in = isxdigit(c); break;
    case 'z': in = c == 0; break;  /* Lua 5.1's NUL class: 5.4 still accepts it */
    default: return cl == c;
    }
    return isupper(cl) ? !in : in != 0;
}

/* Where the single-character class starting at p ends.  Lua reports a
 * malformed class only when matching reaches it, so this does too. */
static const char *class_end(struct matcher *m, const char *p)
{
    const char *start = p;
    char c = *p++;
    if (c == '%') {
        if (p >= m->pat_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[')
        return p;
    if (p < m->pat_end && *p == '^')
        p++;
    do {                            /* the first member may be a ']' */
        if (p >= m->pat_end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        c = *p++;
        if (c == '%' && p < m->pat_end)
            p++;
    } while (p >= m->pat_end || *p != ']');
    charge(m, SCAN_STEPS(p - start));
    return p + 1;
}

/* Is c in the set from '[' at p to its ']' at close? */
static int set_has(struct matcher *m, int c, const char *p, const char *close)
{
    int want = 1;
    charge(m, SCAN_STEPS(close - p));
    if (*++p == '^') {
        want = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%') {
            p++;
            if (class_has(c, (unsigned char)*p))
                return want;
        } else if (p + 2 < close && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return want;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* Does the subject character at s match the class from p to ep? */
static int single(struct matcher *m, const char *s, const char *p, const char *ep)
{
    charge(m, 1);
    if (s >= m->subj_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(m, c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* ---- the matcher ---- */

static const char *match_here(struct matcher *m, const char *s, const char *p);

/* Try the rest of the pattern at s; NULL when it does not match there. */
static const char *match_at(struct matcher *m, const char *s, const char *p)
{
    if (m->depth >= MAX_DEPTH)
        luaL_error(m->L, "pattern too complex");
    m->depth++;
    charge(m, 1);
    const char *e = match_here(m, s, p);
    m->depth--;
    return e;
}

/* x*: take as many as possible, then give them back one by one. */
static const char *match_greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    size_t n = 0;
    while (single(m, s + n, p, ep))
        n++;
    for (;;) {
        const char *e = match_at(m, s + n, ep + 1);
        if (e || n == 0)
            return e;
        n--;
    }
}

/* x-: take as few as possible, one more at a time. */
static const char *match_lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *e = match_at(m, s, ep + 1);
        if (e)
            return e;
        if (!single(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *capture_open(struct matcher *m, const char *s, const char *p, size_t what)
{
    if (m->ncap >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->ncap].start = s;
    m->cap[m->ncap].len = what;
    m->ncap++;
    const char *e = match_at(m, s, p);
    if (!e)
        m->ncap--;
    return e;
}

static const char *capture_close(struct matcher *m, const char *s, const char *p)
{
    int i = m->ncap - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = (size_t)(s - m->cap[i].start);
    const char *e = match_at(m, s, p);
    if (!e)
        m->cap[i].len = CAP_OPEN;
    return e;
}

/* %bxy at p: from an x to the y that balances it. */
static const char *match_balance(struct matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pat_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->subj_end || *s != p[0])
        return NULL;
    const char *from = s;
    int depth = 1;
    const char *e = NULL;
    while (++s < m->subj_end) {
        if (*s == p[1]) {           /* the closer first: %b'' pairs quotes */
            if (--depth == 0) {
                e = s + 1;
                break;
            }
        } else if (*s == p[0]) {
            depth++;
        }
    }
    charge(m, SCAN_STEPS(s - from));
    return e;
}

/* %1-%9: the same text as a closed capture.  A position capture never matches. */
static const char *match_backref(struct matcher *m, const char *s, int digit)
{
    int i = digit - '1';
    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
    size_t len = m->cap[i].len;
    if (len == CAP_POSITION || (size_t)(m->subj_end - s) < len)
        return NULL;
    charge(m, SCAN_STEPS(len));
    return memcmp(m->cap[i].start, s, len) == 0 ? s + len : NULL;
}

/* %f[set] at p ('[' of the set): between a character outside and one inside;
 * the subject's edges count as '\0'. */
static const char *match_frontier(struct matcher *m, const char *s, const char *p, const char **next)
{
    if (p >= m->pat_end || *p != '[')
        luaL_error(m->L, "missing '[' after '%%f' in pattern");
    const char *ep = class_end(m, p);
    int before = s == m->subj ? 0 : (unsigned char)s[-1];
    int here = s < m->subj_end ? (unsigned char)*s : 0;
    *next = ep;
    if (!set_has(m, before, p, ep - 1) && set_has(m, here, p, ep - 1))
        return s;
    return NULL;
}

/* Items that consume without choices loop here; only captures, '?', '*', '+'
 * and '-' recurse, which is what the depth limit counts. */
static const char *match_here(struct matcher *m, const char *s, const char *p)
{
    for (;;) {
        if (p == m->pat_end)
            return s;
        switch (*p) {
        case '(':
            if (p + 1 < m->pat_end && p[1] == ')')
                return capture_open(m, s, p + 2, CAP_POSITION);
            return capture_open(m, s, p + 1, CAP_OPEN);
        case ')':
            return capture_close(m, s, p + 1);
        case '$':
            if (p + 1 == m->pat_end)
                return s == m->subj_end ? s : NULL;
            break;                  /* elsewhere '$' is an ordinary character */
        case '%':
            if (p + 1 >= m->pat_end)
                break;              /* class_end reports it */
            if (p[1] == 'b') {
                if (!(s = match_balance(m, s, p + 2)))
                    return NULL;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                const char *next;
                if (!match_frontier(m, s, p + 2, &next))
                    return NULL;
                p = next;
                continue;
            }
            if (isdigit((unsigned char)p[1])) {
                if (!(s = match_backref(m, s, (unsigned char)p[1])))
                    return NULL;
                p += 2;
                continue;
            }
            break;
        }

        const char *ep = class_end(m, p);
        char q = ep < m->pat_end ? *ep : '\0';
        if (!single(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') {     /* zero repetitions are fine */
                p = ep + 1;
                continue;
            }
            return NULL;
        }
        switch (q) {
        case '?': {
            const char *e = match_at(m, s + 1, ep + 1);
            if (e)
                return e;
            p = ep + 1;
            continue;
        }
        case '+': return match_greedy(m, s + 1, p, ep);
        case '*': return match_greedy(m, s, p, ep);
        case '-': return match_lazy(m, s, p, ep);
        default:
            s++;
            p = ep;
            continue;
        }
    }
}

/* One attempt at s: captures from an earlier attempt are forgotten. */
static const char *match_try(struct matcher *m, const char *s, const char *p)
{
    m->depth = 0;
    m->ncap = 0;
    return match_at(m, s, p);
}

/* ---- results ---- */

/* Push capture i of the match s..e; with no captures, %1 (i == 0) is the match. */
static void push_capture(struct matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->ncap) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    const struct capture *c = &m->cap[i];
    if (c->len == CAP_OPEN)
        luaL_error(m->L, "unfinished capture");
    if (c->len == CAP_POSITION)
        lua_pushinteger(m->L, c->start - m->subj + 1);
    else
        lua_pushlstring(m->L, c->start, c->len);
}

/* Push every capture, or the whole match when there is none and whole is set. */
static int push_captures(struct matcher *m, const char *s, const char *e, int whole)
{
    int n = m->ncap == 0 && whole ? 1 : m->ncap;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* A 1-based, possibly negative, start position as a 0-based offset; past the
 * end it stays past the end, for the caller to notice. */
static size_t start_offset(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 0;
    return len - (size_t)(-pos);
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] != '\0' && strchr(SPECIALS, p[i]))
            return 1;
    return 0;
}

/* ---- the bindings ---- */

static int find_or_match(lua_State *L, int find)
{
    struct limits *lim = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    struct matcher m;
    matcher_init(&m, L, lim, s, ls, p, lp);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }

    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = memmem(s + init, ls - init, p, lp);
        charge(&m, SCAN_STEPS((hit ? (size_t)(hit - s) : ls) - init));
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, hit - s + 1);
        lua_pushinteger(L, (lua_Integer)(hit - s + lp));
        return 2;
    }

    int anchor = lp > 0 && *p == '^';
    if (anchor)
        p++;
    for (const char *at = s + init;; at++) {
        const char *e = match_try(&m, at, p);
        if (e) {
            if (!find)
                return push_captures(&m, at, e, 1);
            lua_pushinteger(L, at - s + 1);
            lua_pushinteger(L, e - s);
            return 2 + push_captures(&m, NULL, NULL, 0);
        }
        if (anchor || at == m.subj_end)
            break;
    }
    luaL_pushfail(L);
    return 1;
}

static int l_pattern_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int l_pattern_match(lua_State *L)
{
    return find_or_match(L, 0);
}

struct gmatch_state {
    size_t next;                    /* offset where the next search starts */
    size_t last;                    /* end of the last match: an empty match may not end there too */
};

/* Upvalues: subject, pattern, gmatch_state, limits.  Each call has its own budget. */
static int l_pattern_gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    struct matcher m;
    matcher_init(&m, L, lua_touserdata(L, lua_upvalueindex(4)), s, ls, p, lp);
    for (size_t at = g->next; at <= ls; at++) {
        const char *e = match_try(&m, s + at, p);
        if (e && (size_t)(e - s) != g->last) {
            g->next = g->last = (size_t)(e - s);
            return push_captures(&m, s + at, e, 1);
        }
    }
    g->next = ls + 1;
    return 0;
}

static int l_pattern_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    struct limits *lim = lua_touserdata(L, lua_upvalueindex(1));
    if (ls > lim->max_subject)
        return luaL_error(L, "subject too long for pattern functions");
    lua_settop(L, 2);
    struct gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->next = init > ls ? ls + 1 : init;
    g->last = NO_MATCH;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, l_pattern_gmatch_next, 4);
    return 1;
}

/* Append the replacement string (argument 3) with its %0-%9 and %%. */
static void add_expansion(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t lr;
    const char *r = lua_tolstring(L, 3, &lr);
    const char *end = r + lr;
    charge(m, SCAN_STEPS(lr));
    while (r < end) {
        const char *pct = memchr(r, '%', (size_t)(end - r));
        if (!pct) {
            luaL_addlstring(b, r, (size_t)(end - r));
            return;
        }
        luaL_addlstring(b, r, (size_t)(pct - r));
        if (++pct == end)
            luaL_error(L, "invalid use of '%%' in replacement string");
        if (*pct == '%') {
            luaL_addchar(b, '%');
        } else if (*pct == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)*pct)) {
            push_capture(m, *pct - '1', s, e);
            luaL_addvalue(b);       /* a position capture is added as its number */
        } else {
            luaL_error(L, "invalid use of '%%' in replacement string");
        }
        r = pct + 1;
    }
}

/* Append the replacement of the match s..e.  Returns 0 when a table or
 * function said false or nil, which keeps the match as it was. */
static int add_replacement(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;
    if (type == LUA_TSTRING || type == LUA_TNUMBER) {
        add_expansion(m, b, s, e);
        return 1;
    }
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e, 1);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int l_pattern_gsub(lua_State *L)
{
    struct limits *lim = lua_touserdata(L, lua_upvalueindex(1));
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION
                     || type == LUA_TTABLE, 3, "string/function/table");
    struct matcher m;
    matcher_init(&m, L, lim, s, ls, p, lp);
    int anchor = lp > 0 && *p == '^';
    if (anchor)
        p++;

    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *at = s, *last = NULL;
    lua_Integer n = 0;
    int changed = 0;
    while (n < max_n) {
        const char *e = match_try(&m, at, p);
        if (e && e != last) {
            n++;
            changed |= add_replacement(&m, &b, at, e, type);
            at = last = e;
        } else if (at < m.subj_end) {
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (changed) {
        luaL_addlstring(&b, at, (size_t)(m.subj_end - at));
        luaL_pushresult(&b);
    } else {
        lua_pushvalue(L, 1);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- installation ---- */

void lpattern_install(lua_State *L, int t)
{
    static const luaL_Reg fns[] = {
        { "find", l_pattern_find },
        { "match", l_pattern_match },
        { "gmatch", l_pattern_gmatch },
        { "gsub", l_pattern_gsub },
        { NULL, NULL }
    };
    t = lua_absindex(L, t);
    limits_push(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, t, f->name);
    }
    lua_pop(L, 1);
}

void lpattern_set_limits(lua_State *L, unsigned long max_steps, size_t max_subject)
{
    struct limits *lim = limits_push(L);
    lim->max_steps = max_steps ? max_steps : LPATTERN_STEPS;
    lim->max_subject = max_subject ? max_subject : LPATTERN_SUBJECT;
    lua_pop(L, 1);
}

void lpattern_reset_budget(lua_State *L, unsigned long steps)
{
    struct limits *lim = limits_push(L);
    lim->pool = steps;
    lim->pool_on = steps != 0;
    lua_pop(L, 1);
}

/* lpattern_test.c - bounded pattern functions: conformance with Lua's own, step and subject limits */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "check.h"
#include "lpattern.h"

/* Each case is a Lua expression over S, a table holding find, match, gmatch
 * and gsub; it runs once with Lua's originals and once with ours, and every
 * return value (or the fact of an error) must be the same.  G(S, s, p, init)
 * flattens a gmatch loop: per iteration the count of values, then the values.
 * ALL holds the bytes 0-255. */
static const char *const cases[] = {
    /* find: plain, init, empty patterns, argument conversion */
    "S.find('hello world', 'o')",
    "S.find('hello world', 'o', 6)",
    "S.find('hello world', 'o', -3)",
    "S.find('hello world', 'o', -100)",
    "S.find('hello world', 'o', 0)",
    "S.find('hello world', 'xyz')",
    "S.find('hello world', '')",
    "S.find('hello world', '', 12)",
    "S.find('hello world', '', 13)",
    "S.find('hello world', '', 100)",
    "S.find('hello world', 'd', -1)",
    "S.find('', '')",
    "S.find('', 'a')",
    "S.find('', '.')",
    "S.find('a.b', '.', 1, true)",
    "S.find('a.b', '%.')",
    "S.find('a+b', '+', 1, true)",
    "S.find('a+b', 'a+b', 1, true)",
    "S.find('a+b', 'a+b')",
    "S.find('x[y', '[', 1, true)",
    "S.find('x[y', '[', 1, false)",
    "S.find('x%y', '%', 1, 1)",
    "S.find('abc', 'b', 1.0)",
    "S.find('abc', 'b', '2')",
    "S.find('abc', 'b', 1.5)",
    "S.find('abc', 'b', nil, true)",
    "S.find('abc', 'b', math.maxinteger)",
    "S.find('abc', 'b', math.mininteger)",
    "S.find('abc', '.', math.mininteger)",
    "S.find(12345, 34)",
    "S.find(1.5, '%.')",
    "S.find(nil, 'a')",
    "S.find('a', nil)",
    "S.find('a', {})",
    "S.find('a\\0b\\0c', '\\0c')",
    "S.find('a\\0b', '.\\0.')",
    "S.find('a\\0b', '[\\0]')",
    /* find with pattern items, anchors, captures */
    "S.find('hello', 'l+')",
    "S.find('hello', '(l+)(o)')",
    "S.find('hello', '()ll()')",
    "S.find('hello', '^h')",
    "S.find('hello', '^e')",
    "S.find('hello', '^e', 2)",
    "S.find('hello', '^l', -2)",
    "S.find('hello', 'o$')",
    "S.find('hello', 'l$')",
    "S.find('he$llo', 'e$l')",
    "S.find('hello', '$')",
    "S.find('hello', '^')",
    "S.find('hello', '^$')",
    "S.find('', '^$')",
    "S.find('a^b', 'a^b')",
    "S.find('a^b', '%^')",
    "S.find('^ab', '^^a')",
    "S.find('hello', '.-l')",
    "S.find('hello', '.*l')",
    "S.find('hello', 'x*')",
    "S.find('hello', 'l?l?l?o')",
    "S.find('a-b', '-')",
    "S.find('?a', '?')",
    "S.find('x*a', '*a')",
    "S.find('aa*', 'a**')",
    "S.find('a++', '++')",
    "S.find('a$b', '$b')",
    "S.find('abc', '$', 4)",
    /* classes and their complements, over every byte */
    "S.gsub(ALL, '%a', '')", "S.gsub(ALL, '%A', '')",
    "S.gsub(ALL, '%c', '')", "S.gsub(ALL, '%C', '')",
    "S.gsub(ALL, '%d', '')", "S.gsub(ALL, '%D', '')",
    "S.gsub(ALL, '%g', '')", "S.gsub(ALL, '%G', '')",
    "S.gsub(ALL, '%l', '')", "S.gsub(ALL, '%L', '')",
    "S.gsub(ALL, '%p', '')", "S.gsub(ALL, '%P', '')",
    "S.gsub(ALL, '%s', '')", "S.gsub(ALL, '%S', '')",
    "S.gsub(ALL, '%u', '')", "S.gsub(ALL, '%U', '')",
    "S.gsub(ALL, '%w', '')", "S.gsub(ALL, '%W', '')",
    "S.gsub(ALL, '%x', '')", "S.gsub(ALL, '%X', '')",
    "S.gsub(ALL, '.', '')",
    "S.match(ALL, '%d+')",
    "S.match(ALL, '%u+')",
    "S.find('a\\0b', '%z')",
    "S.gsub(ALL, '%z', '')", "S.gsub(ALL, '%Z', '')",
    "S.find('\\0', '[%z]')",
    "S.find('quick', '%q')",
    "S.find('Q', '%Q')",
    "S.find('50%', '%%')",
    "S.find('a-b', '%-')",
    "S.gsub('a.b.c', '%.', '/')",
    "S.find('x]y', '%]')",
    "S.find('\\200\\201', '%\\201')",
    /* sets */
    "S.gsub(ALL, '[a-f]', '')",
    "S.gsub(ALL, '[^a-f]', '')",
    "S.gsub(ALL, '[%a_]', '')",
    "S.gsub(ALL, '[^%a%d]', '')",
    "S.gsub(ALL, '[\\128-\\255]', '')",
    "S.gsub(ALL, '[%]%-^]', '')",
    "S.match('3.14x', '[%d%.]+')",
    "S.find('a]b', '[]]')",
    "S.find(']]a', '[^]]')",
    "S.find('-', '[a-]')",
    "S.find('-', '[-a]')",
    "S.find('-', '[%a-z]')",
    "S.find('m', '[z-a]')",
    "S.match('abc123_', '[a-z0-9]+')",
    "S.find('x]', '[%]]')",
    "S.find('x-', '[%-]')",
    "S.match('\\255\\254a', '[\\200-\\255]+')",
    "S.match('ab cd', '[^%s]+')",
    "S.find('a.b', '[.]')",
    "S.match('mail: joe.bloggs-x@example.org!', '[%w_%-%.]+@[%w%-%.]+')",
    "S.find('^', '[%^]')",
    "S.find('b^', '[b^]+')",
    "S.find('1', '[%1]')",
    "S.find('a', '[^]')",
    "S.find('a', '[a')",
    "S.find('a', '[]')",
    "S.find('a', '[%')",
    "S.find('a', '[a%]')",
    "S.find('a', '[^')",
    "S.find('x', 'y[a')",
    "S.find('y', 'y[a')",
    "S.find('', '[a')",
    /* quantifiers */
    "S.find('aaab', 'a*')",
    "S.find('baaa', 'a+')",
    "S.find('bbb', 'a+')",
    "S.find('aaab', 'a-b')",
    "S.find('ab', 'a?b')",
    "S.find('b', 'a?b')",
    "S.match('aaa', '^(a-)a*$')",
    "S.match('aaa', '^(a*)a-$')",
    "S.match('<a><b>', '<(.-)>')",
    "S.match('<a><b>', '<(.*)>')",
    "S.match('   x y  ', '^%s*(.-)%s*$')",
    "S.match('7', '^%d?%d?%d$')",
    "S.match('1234', '^%d?%d?%d$')",
    "S.match('abc', 'a.-')",
    "S.match('abc', '(.-)$')",
    "S.match('ab', 'a?ab')",
    "S.match('xyz', '[xyz]-z')",
    "S.match('aaa', '(a+)(a+)')",
    "S.match('aaa', '(a-)(a+)')",
    "S.match('a', 'a%')",
    "S.match('b', 'a%')",
    "S.match('a', '%')",
    /* captures */
    "S.match('key=value', '(%w+)=(%w+)')",
    "S.match('hello', '()')",
    "S.match('hello', '(h)(e)(l)(l)(o)')",
    "S.match('abcd', '((a)(b(c)))')",
    "S.match('hello', '()ll()')",
    "S.find('hello', '(l)(l)')",
    "S.match('', '()')",
    "S.match('abc', '()', 4)",
    "S.match('abc', '()', 5)",
    "S.match('abc', '(a')",
    "S.find('abc', '(a')",
    "S.match('abc', 'a)')",
    "S.find('abc', '(()')",
    "S.match('a', '(')",
    "S.match('a', ')')",
    "S.match('x', '%1')",
    "S.match('aa', '(a)%2')",
    "S.match('aa', '(a%1)')",
    "S.match('aa', '(a)%0')",
    "S.match(('a'):rep(40), ('(a)'):rep(32))",
    "S.match(('a'):rep(40), ('(a)'):rep(33))",
    "S.match('', ('()'):rep(32))",
    "S.match('', ('()'):rep(33))",
    "S.match('a', ('('):rep(32) .. 'a' .. (')'):rep(32))",
    "S.match('x', 'y' .. ('('):rep(40))",
    /* back-references */
    "S.match('abcabc', '(abc)%1')",
    "S.find('hello', '(l)%1')",
    "S.match([[say \"hi\" now]], '([\"\\'])(.-)%1')",
    "S.match(\"it's 'x'\", \"(['])(.-)%1\")",
    "S.match('aa', '()a%1')",
    "S.gsub('aaa bbb ccd', '(%w)%1%1', '<%1>')",
    "S.match('abab', '^(.-)%1$')",
    "S.match('xyzzy', '(.)%1')",
    "S.match('ab', '(a)(b)%2%1')",
    /* %b */
    "S.match('f(a(b)c)d', '%b()')",
    "S.find('((x)', '%b()')",
    "S.match('no parens', '%b()')",
    "S.gsub('a [b [c] d] e', '%b[]', '')",
    "S.match(\"'a' 'b'\", \"%b''\")",
    "S.find('x', '%b')",
    "S.find('x', '%bx')",
    "S.find('', '%b()')",
    "S.match('(()', '%b()')",
    "S.find('()*', '%b()*')",
    "S.match('if (a and (b or c)) then', 'if (%b())')",
    "S.match('((a)', '^%b()')",
    /* %f */
    "S.gsub('THE (quick) fox', '%f[%a]%a+', 'W')",
    "S.find('hello world', '%f[%w]%w+', 2)",
    "S.gsub('THE (quick) fox', '%f[%l]%a+', '#')",
    "S.find('abc', '%f[%c]')",
    "S.find('abc', '%f[^%c]')",
    "S.find('x', '%f')",
    "S.find('x', '%fa')",
    "S.find('x', '%f[a')",
    "S.gsub('hello world from lua', '%f[%w]%w+%f[%W]', string.upper)",
    "S.find('THE (quick) fox', '%f[%a]%a+%f[%A]', 5)",
    "S.gsub('a1b22c', '%f[%d]', '|')",
    "S.gsub('a1b22c', '%f[%D]', '|')",
    /* gmatch */
    "G(S, 'one two three', '%a+')",
    "G(S, 'k=v, a=b', '(%w+)=(%w+)')",
    "G(S, 'abc', '')",
    "G(S, 'abc', '.-')",
    "G(S, 'abc', 'x*')",
    "G(S, 'a,b,,c', '([^,]*)')",
    "G(S, 'hello', '()l')",
    "G(S, 'one two', '%a+', 4)",
    "G(S, 'one two', '%a+', -3)",
    "G(S, 'one two', '%a+', 100)",
    "G(S, 'one two', '%a+', 8)",
    "G(S, 'one two', '%a*', 8)",
    "G(S, 'one two', '%a+', 0)",
    "G(S, '^a^a', '^a')",
    "G(S, 'aaa', '^a')",
    "G(S, 'abc', '$')",
    "G(S, 'ab', '.?')",
    "G(S, '', '')",
    "G(S, 'a', '(a')",
    "G(S, 'x', '[')",
    "G(S, 'the quick fox', '%f[%w]%w+')",
    "G(S, 'a1b2c3', '(%a)(%d)')",
    "G(S, 'abc', 'b*')",
    "G(S, 'aXbXXc', 'X*')",
    "G(S, 12321, '2')",
    "G(S, 'x', '%')",
    /* gsub: string replacements and the count */
    "S.gsub('hello world', 'o', '0')",
    "S.gsub('hello world', 'o', '0', 1)",
    "S.gsub('hello world', 'o', '0', 0)",
    "S.gsub('hello world', 'o', '0', -1)",
    "S.gsub('hello world', 'o', '0', 100)",
    "S.gsub('hello world', 'o', '0', 1.5)",
    "S.gsub('hello world', 'o', '0', math.maxinteger)",
    "S.gsub('hello world', 'o', '0', math.mininteger)",
    "S.gsub('hello world', '(o)', '[%1]')",
    "S.gsub('hello world', 'o', '[%0]')",
    "S.gsub('hello world', 'o', '100%%')",
    "S.gsub('hello world', '(o)', '%2')",
    "S.gsub('abc', '%w', '%1')",
    "S.gsub('abc', '%w', '%2')",
    "S.gsub('abc', '%w', '%')",
    "S.gsub('abc', '%w', '%x')",
    "S.gsub('abc', '%w', '%%%0%%')",
    "S.gsub('abc', '()b', '%1')",
    "S.gsub('abc', '', '-')",
    "S.gsub('abc', '.-', '-')",
    "S.gsub('abc', 'x*', '-')",
    "S.gsub('', '', 'x')",
    "S.gsub('abc', '^', '>')",
    "S.gsub('abc', '$', '<')",
    "S.gsub('abc', '^a', '')",
    "S.gsub('aaa', '^a', '')",
    "S.gsub('abc', '^', '>', 0)",
    "S.gsub('  x  ', '^%s+', '')",
    "S.gsub('hello', 'l+', '%0%0')",
    "S.gsub('abc', '%w', '%0', 2)",
    "S.gsub('abc', 'b', 5)",
    "S.gsub('abc', 'b', 1.5)",
    "S.gsub(123, '2', 'x')",
    "S.gsub('abc', 'x', 'y')",
    "S.gsub('abc', '(a', 'x')",
    "S.gsub('abc', '(a', '%1')",
    "S.gsub('abc', '(a', function() end)",
    "S.gsub('a', 'a', true)",
    "S.gsub('a', 'a')",
    "S.gsub('hello world', '(%w+) (%w+)', '%2 %1')",
    "S.gsub('abc', '.', {a = 1, b = true})",
    "S.gsub('x = 1, y = 2', '(%w+) = (%w+)', '%2 = %1')",
    "S.gsub('one\\0two', '%z', ' ')",
    "S.gsub('aaa', 'a', 'b', 2)",
    "S.gsub('abc', '[', 'x')",
    "S.gsub('', '[', 'x')",
    /* gsub: tables */
    "S.gsub('$name is $age', '%$(%w+)', {name = 'bob', age = 42})",
    "S.gsub('$name is $age', '%$(%w+)', {name = 'x'})",
    "S.gsub('a b', '%w', {a = false})",
    "S.gsub('a b', '%w', {a = true})",
    "S.gsub('a b', '%w', {a = {}})",
    "S.gsub('a b', '%w', {a = 1.5})",
    "S.gsub('ab', '()', {[1] = 'x', [3] = 'z'})",
    "S.gsub('ab', '(a)(b)', {a = 'first'})",
    "S.gsub('ab', '.', setmetatable({}, {__index = function(_, k) return k .. k end}))",
    /* gsub: functions */
    "S.gsub('hello world', '%w+', function(w) return w:upper() end)",
    "S.gsub('hello world', '%w+', function() return nil end)",
    "S.gsub('hello world', '%w+', function() return false end)",
    "S.gsub('hello world', '%w+', function(w) return #w end)",
    "S.gsub('hello world', '%w+', function() return {} end)",
    "S.gsub('ab cd', '(%w)(%w)', function(a, b) return b .. a end)",
    "S.gsub('abc', '()', function(p) return '[' .. p .. ']' end)",
    "S.gsub('abc', '%w', function() error('boom') end)",
    "S.gsub('abc', '%w', function(c) return S.find('xbx', c) end)",
    "S.gsub('a,b', '[^,]+', function(w) return S.gsub(w, '.', '%0%0') end)",
    /* nesting limits */
    "S.match(('a'):rep(198), ('a?'):rep(198))",
    "S.match(('a'):rep(199), ('a?'):rep(199))",
    "S.match(('a'):rep(200), ('a?'):rep(200))",
    "S.match(('a'):rep(250), ('a?'):rep(250))",
    "S.match('', ('a?'):rep(250))",
    "S.find(('a'):rep(300), ('a*'):rep(300))",
    "S.find(('a'):rep(10), ('a*'):rep(199))",
    "S.find(('a'):rep(10), ('a*'):rep(200))",
    "S.match('abc', ('(%w)'):rep(3) .. ('()'):rep(29))",
    "S.gsub('abc', ('()'):rep(33), 'x')",
    "S.match(('x'):rep(100), ('x-'):rep(150) .. '$')",
    "S.match(('x'):rep(100), ('(x)'):rep(20) .. ('x?'):rep(150))",
};

static const char setup_lua[] =
    "local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end ALL = table.concat(t)\n"
    "function G(S, s, p, init)\n"
    "  local out, n, it = {}, 0, S.gmatch(s, p, init)\n"
    "  for _ = 1, 1000 do\n"
    "    local r = table.pack(it())\n"
    "    if r[1] == nil then break end\n"
    "    n = n + 1; out[n] = r.n\n"
    "    for j = 1, r.n do n = n + 1; out[n] = r[j] end\n"
    "  end\n"
    "  return table.unpack(out, 1, n)\n"
    "end\n";

static void show(lua_State *L, int from, int to)
{
    for (int i = from; i <= to; i++) {
        const char *s = luaL_tolstring(L, i, NULL);
        fprintf(stderr, " %s:%s", luaL_typename(L, i), s);
        lua_pop(L, 1);
    }
    fprintf(stderr, "\n");
}

static int same_value(lua_State *L, int a, int b)
{
    if (lua_type(L, a) != lua_type(L, b))
        return 0;
    if (lua_type(L, a) == LUA_TNUMBER && lua_isinteger(L, a) != lua_isinteger(L, b))
        return 0;
    return lua_rawequal(L, a, b);
}

/* The message without Lua's "chunk:line: " prefix. */
static const char *bare(const char *msg)
{
    const char *c = strstr(msg, "]:");
    if (c && (c = strchr(c + 2, ':')))
        return c + 2;
    return msg;
}

static int msgs_same, msgs_total;

static void conformance(lua_State *L)
{
    int ncases = (int)(sizeof cases / sizeof *cases), passed = 0;
    for (int i = 0; i < ncases; i++) {
        lua_settop(L, 0);
        char src[2048];
        snprintf(src, sizeof src, "return function(S) return %s end", cases[i]);
        if (luaL_loadstring(L, src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
            fprintf(stderr, "case does not compile: %s: %s\n", cases[i], lua_tostring(L, -1));
            CHECK(0);
            continue;
        }
        lua_pushvalue(L, 1);
        lua_getglobal(L, "ORIG");
        int ok1 = lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK;
        int top1 = lua_gettop(L);
        lua_pushvalue(L, 1);
        lua_getglobal(L, "OURS");
        int ok2 = lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK;
        int top2 = lua_gettop(L);
        int n1 = top1 - 1, n2 = top2 - top1;

        int same = ok1 == ok2 && (!ok1 || n1 == n2);
        for (int k = 1; same && ok1 && k <= n1; k++)
            same = same_value(L, 1 + k, top1 + k);
        if (same && !ok1) {
            msgs_total++;
            const char *m1 = lua_tostring(L, top1), *m2 = lua_tostring(L, top2);
            if (m1 && m2 && strcmp(bare(m1), bare(m2)) == 0)
                msgs_same++;
            else
                fprintf(stderr, "note: %s: messages differ: \"%s\" / \"%s\"\n", cases[i], m1, m2);
        }
        CHECK(same);
        if (same) {
            passed++;
        } else {
            fprintf(stderr, "case %d: %s\n  lua  (%s):", i, cases[i], ok1 ? "ok" : "error");
            show(L, 2, top1);
            fprintf(stderr, "  ours (%s):", ok2 ? "ok" : "error");
            show(L, top1 + 1, top2);
        }
    }
    printf("conformance: %d/%d cases identical to Lua's string functions; %d/%d error messages identical\n",
           passed, ncases, msgs_same, msgs_total);
    CHECK(ncases >= 150);
}

/* Random patterns and subjects from pieces that meet every feature, and
 * every error, of the matcher; results and error messages must agree. */
static const char differential_lua[] =
    "local O, N, iterations = ...\n"
    "math.randomseed(20240601)\n"
    "local atoms = {'a', 'b', '.', '%a', '%D', '%', '(', ')', '()', '[', '[^', ']', '-', '*', '+', '?', '^',\n"
    "  '$', '%b()', '%bab', '%f[a]', '%f[%W]', '%1', '%2', '%0', '[a-c]', 'x', '(a', '%%', '%z', '\\0', '%f'}\n"
    "local chars = {'a', 'b', 'c', '(', ')', 'x', ' ', '1', '\\0', '-', '^', '$', '%', ']'}\n"
    "local reps = {'%0', '%1', '<%2>', 'x', '%%', '%', 7,\n"
    "  function(...) return select('#', ...) .. tostring((...)) end, {a = 'A', [1] = 'one', b = false}}\n"
    "local function pick(t, n) local r = {} for i = 1, n do r[i] = t[math.random(#t)] end return table.concat(r) end\n"
    "local function G(S, s, p, init)\n"
    "  local out, n, it = {}, 0, S.gmatch(s, p, init)\n"
    "  for _ = 1, 50 do\n"
    "    local r = table.pack(it())\n"
    "    if r[1] == nil then break end\n"
    "    n = n + 1; out[n] = r.n\n"
    "    for j = 1, r.n do n = n + 1; out[n] = r[j] end\n"
    "  end\n"
    "  return table.unpack(out, 1, n)\n"
    "end\n"
    "local function same(a, b)\n"
    "  if a.n ~= b.n then return false end\n"
    "  for i = 1, a.n do if math.type(a[i]) ~= math.type(b[i]) or a[i] ~= b[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "local bad = 0\n"
    "for _ = 1, iterations do\n"
    "  local p, s, init = pick(atoms, math.random(0, 7)), pick(chars, math.random(0, 10)), math.random(-12, 12)\n"
    "  local r, max, which = reps[math.random(#reps)], math.random(-1, 4), math.random(5)\n"
    "  local function run(S)\n"
    "    if which == 1 then return table.pack(pcall(S.find, s, p, init)) end\n"
    "    if which == 2 then return table.pack(pcall(S.match, s, p, init)) end\n"
    "    if which == 3 then return table.pack(pcall(S.gsub, s, p, r)) end\n"
    "    if which == 4 then return table.pack(pcall(S.gsub, s, p, r, max)) end\n"
    "    return table.pack(pcall(G, S, s, p, init))\n"
    "  end\n"
    "  local a, b = run(O), run(N)\n"
    "  if not same(a, b) then\n"
    "    bad = bad + 1\n"
    "    if bad <= 10 then io.stderr:write(('differ: %d %q %q %d: %s %s / %s %s\\n'):format(which, s, p, init,\n"
    "      tostring(a[2]), tostring(a[3]), tostring(b[2]), tostring(b[3]))) end\n"
    "  end\n"
    "end\n"
    "return bad\n";

static void differential(lua_State *L, int iterations)
{
    lua_settop(L, 0);
    int ok = luaL_loadstring(L, differential_lua) == LUA_OK;
    if (ok) {
        lua_getglobal(L, "ORIG");
        lua_getglobal(L, "OURS");
        lua_pushinteger(L, iterations);
        ok = lua_pcall(L, 3, 1, 0) == LUA_OK;
    }
    if (!ok)
        fprintf(stderr, "differential: %s\n", lua_tostring(L, -1));
    CHECK(ok);
    int bad = ok ? (int)lua_tointeger(L, -1) : iterations;
    printf("differential: %d/%d random calls identical, error messages included\n", iterations - bad, iterations);
    CHECK(bad == 0);
    lua_settop(L, 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run chunk with S = our functions; returns 1 if it raised, with the message
 * copied to msg, and the wall time in *ms. */
static int run(lua_State *L, const char *chunk, char *msg, size_t msglen, double *ms)
{
    lua_settop(L, 0);
    msg[0] = '\0';
    if (luaL_loadstring(L, chunk) != LUA_OK) {
        snprintf(msg, msglen, "compile: %s", lua_tostring(L, -1));
        return 1;
    }
    double t0 = now_ms();
    int failed = lua_pcall(L, 0, 0, 0) != LUA_OK;
    if (ms)
        *ms = now_ms() - t0;
    if (failed)
        snprintf(msg, msglen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_settop(L, 0);
    return failed;
}

static void pathological(lua_State *L)
{
    static const struct { const char *name, *chunk, *expect; } slow[] = {
        { "find .-.-.-.-.-.-.-b on 25 a", "S.find(('a'):rep(25), '.-.-.-.-.-.-.-b')", "step limit" },
        { "method call through the string metatable",
          "local s = ('a'):rep(25) s:find('.-.-.-.-.-.-.-b')", "step limit" },
        { "find a*a*a*a*a*a*a*b on 64 a", "S.find(('a'):rep(64), 'a*a*a*a*a*a*a*b')", "step limit" },
        { "match (.-)(.-)(.-)x on 2000 a", "S.match(('a'):rep(2000), '(.-)(.-)(.-)x')", "step limit" },
        { "gsub .-.-.-x on 1000 a", "S.gsub(('a'):rep(1000), '.-.-.-x', '')", "step limit" },
        { "gmatch (.-)(.-)b on 5000 a",
          "for _ in S.gmatch(('a'):rep(5000), '(.-)(.-)b') do end", "step limit" },
        { "find %b() on 65536 (", "S.find(('('):rep(65536), '%b()')", "step limit" },
        { "find (.-)%1b on 65536 a", "S.find(('a'):rep(65536), '(.-)%1b')", "step limit" },
        { "find 30000-member set on 65536 b",
          "S.find(('b'):rep(65536), '[' .. ('a'):rep(30000) .. ']')", "step limit" },
        { "find %s+x on 65536 spaces", "S.find((' '):rep(65536), '%s+x')", "step limit" },
        { "1000 nested a? on 1000 a", "S.find(('a'):rep(1000), ('a?'):rep(1000))", "pattern too complex" },
        { "gsub with a function calling a slow find",
          "S.gsub('abc', '%w', function() S.find(('a'):rep(25), '.-.-.-.-.-.-.-b') end)", "step limit" },
    };
    for (size_t i = 0; i < sizeof slow / sizeof *slow; i++) {
        char msg[256];
        double ms = 0;
        int failed = run(L, slow[i].chunk, msg, sizeof msg, &ms);
        printf("pathological: %-42s %7.2f ms: %s\n", slow[i].name, ms, msg);
        CHECK(failed);
        CHECK(strstr(msg, slow[i].expect) != NULL);
        CHECK(ms < 100);
    }

    /* Legitimate work on the largest subject stays within the default budget. */
    static const char *const fine[] = {
        "assert(S.find(('a'):rep(65536), 'b', 1, true) == nil)",
        "assert(S.find(('a'):rep(65535) .. 'b', 'b') == 65536)",
        "assert(select(2, S.gsub(('word '):rep(13107), '%s+', ' ')) == 13107)",
        "local n = 0 for w in S.gmatch(('word '):rep(13107), '%a+') do n = n + 1 end assert(n == 13107)",
        "assert(S.match(('x'):rep(60000) .. '  ', '^(.-)%s*$') == ('x'):rep(60000))",
        "assert(S.find('()' .. ('('):rep(30000), '%b()') == 1)",
    };
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        char msg[256];
        double ms = 0;
        int failed = run(L, fine[i], msg, sizeof msg, &ms);
        if (failed)
            fprintf(stderr, "%s: %s\n", fine[i], msg);
        CHECK(!failed);
        CHECK(ms < 100);
    }

    /* The per-message pool: many cheap calls run out together. */
    char msg[256];
    const char *loop = "for i = 1, 1000 do COUNT = i S.find(('a'):rep(1000), 'x+') end";
    lpattern_reset_budget(L, 100000);
    double ms = 0;
    CHECK(run(L, loop, msg, sizeof msg, &ms) == 1);
    CHECK(strstr(msg, "step limit for this message") != NULL);
    lua_getglobal(L, "COUNT");
    lua_Integer count = lua_tointeger(L, -1);
    lua_pop(L, 1);
    printf("pool: 100000 steps stopped the loop at call %lld after %.2f ms: %s\n", (long long)count, ms, msg);
    CHECK(count > 10 && count < 1000);
    CHECK(run(L, "S.find('a', 'a')", msg, sizeof msg, NULL) == 1);      /* stays empty */
    lpattern_reset_budget(L, 100000);
    CHECK(run(L, "assert(S.find('a', 'a') == 1)", msg, sizeof msg, NULL) == 0);
    lpattern_reset_budget(L, 0);
    CHECK(run(L, loop, msg, sizeof msg, NULL) == 0);

    /* A smaller per-call budget. */
    lpattern_set_limits(L, 1000, 0);
    CHECK(run(L, "S.find(('a'):rep(2000), 'x+')", msg, sizeof msg, NULL) == 1);
    CHECK(strstr(msg, "pattern too complex (step limit)") != NULL);
    CHECK(run(L, "assert(S.find(('a'):rep(100), 'x+') == nil)", msg, sizeof msg, NULL) == 0);
    lpattern_set_limits(L, 0, 0);
    CHECK(run(L, "S.find(('a'):rep(2000), 'x+')", msg, sizeof msg, NULL) == 0);
}

static void long_subjects(lua_State *L)
{
    static const char *const refused[] = {
        "S.find(('a'):rep(65537), 'a')",
        "S.find(('a'):rep(65537), 'a', 1, true)",
        "S.match(('a'):rep(65537), 'a')",
        "S.gmatch(('a'):rep(65537), 'a')",
        "S.gsub(('a'):rep(65537), 'a', 'b')",
        "local s = ('a'):rep(100000) s:find('a')",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char msg[256];
        CHECK(run(L, refused[i], msg, sizeof msg, NULL) == 1);
        CHECK(strstr(msg, "subject too long for pattern functions") != NULL);
    }
    char msg[256];
    CHECK(run(L, "assert(S.find(('a'):rep(65536), 'a$') == 65536)", msg, sizeof msg, NULL) == 0);
    CHECK(run(L, "assert(select(2, S.gsub(('a'):rep(65536), 'a', 'b')) == 65536)", msg, sizeof msg, NULL) == 0);

    lpattern_set_limits(L, 0, 100);
    CHECK(run(L, "S.match(('a'):rep(101), 'a')", msg, sizeof msg, NULL) == 1);
    CHECK(strstr(msg, "subject too long") != NULL);
    CHECK(run(L, "assert(S.match(('a'):rep(100), 'a+') == ('a'):rep(100))", msg, sizeof msg, NULL) == 0);
    lpattern_set_limits(L, 0, 0);
    CHECK(run(L, "S.match(('a'):rep(65536), 'a')", msg, sizeof msg, NULL) == 0);
}

int main(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);

    /* Keep Lua's originals in ORIG before ours replace them in string. */
    static const char *const names[] = { "find", "match", "gmatch", "gsub" };
    lua_getglobal(L, "string");
    int str = lua_gettop(L);
    lua_newtable(L);
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, str, names[i]);
        lua_setfield(L, -2, names[i]);
    }
    lua_setglobal(L, "ORIG");
    lpattern_install(L, str);
    lua_newtable(L);
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, str, names[i]);
        CHECK(lua_tocfunction(L, -1) != NULL);
        lua_setfield(L, -2, names[i]);
    }
    lua_setglobal(L, "OURS");
    lua_getglobal(L, "OURS");
    lua_setglobal(L, "S");
    lua_settop(L, 0);
    CHECK(luaL_dostring(L, setup_lua) == LUA_OK);

    lua_getglobal(L, "ORIG");
    lua_getfield(L, 1, "gsub");
    lua_getglobal(L, "OURS");
    lua_getfield(L, 3, "gsub");
    CHECK(!lua_rawequal(L, 2, 4));      /* the originals were really replaced */
    lua_settop(L, 0);

    conformance(L);
    differential(L, 50000);
    pathological(L);
    long_subjects(L);

    lua_close(L);
    return check_report();
}

/* lpattern.h - Lua 5.4 pattern functions (find, match, gmatch, gsub) that stop after a step budget */
#ifndef AUTHSCORE_LPATTERN_H
#define AUTHSCORE_LPATTERN_H

#include <stddef.h>
#include <lua.h>

#define LPATTERN_STEPS   1000000UL   /* default budget of one call */
#define LPATTERN_SUBJECT 65536       /* default longest subject, in bytes */

/* Replace find, match, gmatch and gsub in the string library table at index
 * t (usually the table luaopen_string returned) with versions of the same
 * semantics that count their work.  A call that exceeds its budget, or the
 * per-message pool, raises "pattern too complex (step limit)"; a subject
 * longer than the limit raises "subject too long for pattern functions";
 * nesting deeper than Lua's own matcher allows raises "pattern too complex".
 * The other functions of the table are left alone.  May raise a memory
 * error: call it where Lua errors are caught (under lua_pcall). */
void lpattern_install(lua_State *L, int t);

/* Set the budget of one call (0 = LPATTERN_STEPS) and the longest subject
 * (0 = LPATTERN_SUBJECT) for every function installed in this state, before
 * or after lpattern_install.  Raises only on out-of-memory, and only the first
 * time the state's limits are created. */
void lpattern_set_limits(lua_State *L, unsigned long max_steps, size_t max_subject);

/* Start a per-message pool of steps that every later call draws from, on top
 * of its own budget; steps == 0 removes the pool (the default).  Does not
 * raise once lpattern_install or lpattern_set_limits has run in this state. */
void lpattern_reset_budget(lua_State *L, unsigned long steps);

#endif

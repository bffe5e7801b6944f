/*
 * lcore.h - what the C files of the module `sonde.core` share (private):
 * the engine's loop and callback path for files that put handles of their
 * own on it, and the functions each file registers in core.c's one
 * registration table.
 */
#ifndef SONDE_LCORE_H
#define SONDE_LCORE_H

#include <uv.h>

#include "lua.h"

typedef struct lengine lengine_t;

/*
 * A resource of another file that lives on an engine's loop (the terminal
 * reader). Attached when it is created; the engine calls close(o, L) when
 * it closes, before its loop, and runs the loop until the owner has
 * detached it (from its last close callback). close() may be called after
 * the owner started closing by itself: it must then do nothing.
 */
typedef struct lowned lowned_t;
struct lowned {
  lowned_t *next, *prev;
  void (*close)(lowned_t *o, lua_State *L);
};

/* The open engine at idx; raises a Lua error if it is not one or closed. */
lengine_t *sonde__lua_check_engine(lua_State *L, int idx);
uv_loop_t *sonde__lua_engine_loop(lengine_t *le);
void sonde__lua_engine_attach(lengine_t *le, lowned_t *o);
void sonde__lua_engine_detach(lowned_t *o);

/*
 * Callbacks into Lua: push the function of ref (with the message handler
 * below it) on the thread that runs the engine and return that thread, or
 * NULL when nothing may run (outside e:run(): garbage collection, close).
 * Then push the arguments and call sonde__lua_engine_call, which calls it
 * protected; its first error stops the loop and e:run() returns it.
 */
lua_State *sonde__lua_engine_callback(lengine_t *le, int ref);
void sonde__lua_engine_call(lengine_t *le, int nargs);

/* os.c: core.pid(), core.isatty(fd), core.listdir(path). */
int sonde__lua_pid(lua_State *L);
int sonde__lua_isatty(lua_State *L);
int sonde__lua_listdir(lua_State *L);

/* tty.c: e:tty(opts), and the metatable of the reader it returns. */
int sonde__lua_tty(lua_State *L);
void sonde__lua_tty_init(lua_State *L);

#endif /* SONDE_LCORE_H */

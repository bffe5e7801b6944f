/*
 * lcore.h - what the C files of the module `sonde.core` share (private):
 * the engine's loop and callback path for files that put handles of their
 * own on it, and the functions each file registers in core.c's one
 * registration table.
 */
#ifndef SONDE_LCORE_H
#define SONDE_LCORE_H

#include <uv.h>

#include "lauxlib.h"
#include "lua.h"
#include "sonde.h"

typedef struct lengine lengine_t;
typedef struct lreq lreq_t;

/* The longest wait for one probe's answer, in seconds: a probe's `wait`
 * (probe.c) and an engine's default one (engine.c). */
#define SONDE__LUA_WAIT_MAX 3600

/* Fields of the table on top of the stack, for the files that build
 * result tables. */
static inline void lcore_set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static inline void lcore_set_num(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static inline void lcore_set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

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

/*
 * The binding's lists of things in flight (an engine's requests, a
 * resolver's queries): doubly linked through an llink_t that is the first
 * member of each entry, the list's head an llink_t whose next and prev
 * point at itself when it is empty. list_init: an empty head. list_append:
 * l at the end of head's list. list_remove: l off its list (pointing at
 * itself: removing it again does nothing).
 */
typedef struct llink llink_t;
struct llink {
  llink_t *next, *prev;
};
void sonde__lua_list_init(llink_t *head);
void sonde__lua_list_append(llink_t *head, llink_t *l);
void sonde__lua_list_remove(llink_t *l);

/*
 * Something of the binding's own that holds a uv handle or request and a
 * Lua callback: a timer (timer.c), a signal watch (signal.c), a resolver
 * request (dns.c). The engine lists them and stops them when it closes.
 */
enum { REQ_TIMER, REQ_SIGNAL, REQ_GAI };

struct lreq {
  llink_t link; /* first: on its engine's list (lengine_t reqs) */
  lengine_t *le;
  int ref;     /* the Lua callback */
  int kind;    /* REQ_* */
  int done;    /* the callback ran, or the request was cancelled */
  uint64_t token;
  int signum;  /* REQ_SIGNAL: the signal watched */
  void (*closed)(lreq_t *q); /* a handle's close callback, before the free */
  union {
    uv_handle_t handle;
    uv_timer_t timer;
    uv_signal_t signal;
    uv_getaddrinfo_t gai;
  } u;
};

/* The engine object (engine.c). */
struct lengine {
  sonde_engine_t *eng; /* NULL once closed */
  uv_loop_t loop;
  int loop_init;
  lua_State *L;        /* the running thread, inside run()/close() only */
  int err_ref;         /* first callback error, LUA_NOREF if none */
  int engine_closed;   /* sonde_engine_close's callback ran */
  llink_t reqs;        /* list head: its lreq_t */
  lowned_t owned;      /* other files' resources on the loop */
  uint64_t next_token;
};

/* Requests (engine.c). req_new: a request of kind on le's list, holding a
 * reference to the function at fn_idx, with the next token. req_abort: it
 * failed to start (its handle never existed): released, and nil, msg, name
 * pushed. req_close: stop it for good (a handle is closed, a resolver
 * request cancelled). req_free: off the list and freed. */
lreq_t *sonde__lua_req_new(lua_State *L, lengine_t *le, int kind, int fn_idx);
int sonde__lua_req_abort(lua_State *L, lreq_t *q, int status);
void sonde__lua_req_close(lreq_t *q, lua_State *L);
void sonde__lua_req_free(lreq_t *q);
/* A handle's close callback: q->closed(q), then req_free. */
void sonde__lua_req_closed(uv_handle_t *h);
/* Release *ref (a registry reference) if it is held and L is given. */
void sonde__lua_unref(lua_State *L, int *ref);

/* Runtime failures as nil, "ENAME: message", "ENAME" (luv's convention):
 * for sonde's negative errnos, and for libuv's own (EAI_NONAME, ...). */
int sonde__lua_fail(lua_State *L, int err);
int sonde__lua_uv_fail(lua_State *L, int status);

/* The open engine at idx; raises a Lua error if it is not one or closed. */
lengine_t *sonde__lua_check_engine(lua_State *L, int idx);
/* The engine at idx, open or closed; raises if it is not one. */
lengine_t *sonde__lua_engine_arg(lua_State *L, int idx);
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

/* core.c: the metatable name of userdata: methods as __index, __gc and
 * __tostring if given (registered, not left on the stack). */
void sonde__lua_metatable(lua_State *L, const char *name,
                          const luaL_Reg *methods, lua_CFunction gc,
                          lua_CFunction tostring);

/* The functions of the registration table in core.c, by file. */

/* engine.c: core.engine(opts), core.now(), the engine's methods, and
 * sonde__lua_engine_init, which makes the engines' metatable with the
 * methods of core.c's table. */
int sonde__lua_engine_new(lua_State *L);
int sonde__lua_now(lua_State *L);
int sonde__lua_probe(lua_State *L);
int sonde__lua_set_wait(lua_State *L);
int sonde__lua_cancel(lua_State *L);
int sonde__lua_read_pending(lua_State *L);
int sonde__lua_stats(lua_State *L);
int sonde__lua_run(lua_State *L);
int sonde__lua_stop(lua_State *L);
int sonde__lua_close(lua_State *L);
int sonde__lua_privileged(lua_State *L);
int sonde__lua_tcp_mode(lua_State *L);
int sonde__lua_source(lua_State *L);
void sonde__lua_engine_init(lua_State *L, const luaL_Reg *methods);

/* timer.c: e:after(seconds, fn), e:unwatch(token). */
int sonde__lua_after(lua_State *L);
int sonde__lua_unwatch(lua_State *L);

/* signal.c: e:on_signal(name, fn). */
int sonde__lua_on_signal(lua_State *L);

/* dns.c: e:resolve(host, family, fn). */
int sonde__lua_resolve(lua_State *L);

/* ares.c: e:reverse(addr, fn), e:txt(name, fn), e:resolver{timeout, tries}
 * (c-ares on the engine's loop). */
int sonde__lua_reverse(lua_State *L);
int sonde__lua_txt(lua_State *L);
int sonde__lua_resolver(lua_State *L);

/* probe.c: the probe table at idx read into *spec (raises on misuse,
 * naming the field). Strings in the spec are the table's: valid while it
 * is on the stack. */
void sonde__lua_probe_spec(lua_State *L, int idx, sonde_probe_spec_t *spec);

/* result.c: a probe's result as a Lua table, pushed on the stack. */
void sonde__lua_push_result(lua_State *L, uint64_t id, const sonde_result_t *r);

/* core.probe_fields (probe.c) and core.engine_fields (engine.c): the
 * schemas as Lua lists (fields.h), pushed on the stack. */
void sonde__lua_push_probe_fields(lua_State *L);
void sonde__lua_push_engine_fields(lua_State *L);

/* os.c: core.pid(), core.uid(), core.isatty(fd), core.listdir(path),
 * core.time(). */
int sonde__lua_pid(lua_State *L);
int sonde__lua_uid(lua_State *L);
int sonde__lua_time(lua_State *L);
int sonde__lua_isatty(lua_State *L);
int sonde__lua_listdir(lua_State *L);

/* tty.c: e:tty(opts), and the metatable of the reader it returns. */
int sonde__lua_tty(lua_State *L);
void sonde__lua_tty_init(lua_State *L);

/* http.c: core.http_listen(host, port), and the metatable of the server
 * it returns (libmicrohttpd on its own thread; see http.c). */
int sonde__lua_http_listen(lua_State *L);
void sonde__lua_http_init(lua_State *L);

#endif /* SONDE_LCORE_H */

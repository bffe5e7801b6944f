/*
 * engine.c - the engine object of `sonde.core` (sonde.engine): a libuv loop
 * and a sonde engine on it, probes and their results, the loop run from
 * Lua, and the list of everything else on the loop (timers, signal
 * watches, resolver requests, other files' handles) that closing stops.
 *
 * Callbacks into Lua run only inside e:run() and e:close(), on the Lua
 * thread that called them, each through one protected call. An error in a
 * callback stops the loop and e:run() returns it (nil, message): it is never
 * swallowed. Misuse (a wrong type, an unknown field) raises a Lua error that
 * names the field; runtime failures return nil, "ENAME: message", "ENAME".
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#include "fields.h"
#include "lcore.h"
#include "privsep.h"
#include "sonde.h"

#define ENGINE_MT "sonde.engine"

/* --- errors ---------------------------------------------------------------- */

/* nil, "ENAME: message", "ENAME" (luv's convention). */
int sonde__lua_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", sonde_err_name(err), sonde_strerror(err));
  lua_pushstring(L, sonde_err_name(err));
  return 3;
}

/* The same, for libuv's own errors (resolver: EAI_NONAME, ...). */
int sonde__lua_uv_fail(lua_State *L, int status) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(status), uv_strerror(status));
  lua_pushstring(L, uv_err_name(status));
  return 3;
}

lengine_t *sonde__lua_engine_arg(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, ENGINE_MT);
}

static lengine_t *check_engine(lua_State *L, int idx) {
  lengine_t *le = luaL_checkudata(L, idx, ENGINE_MT);
  if (le->eng == NULL)
    luaL_error(L, "sonde engine is closed");
  return le;
}

/* --- calling back into Lua -------------------------------------------------- */

/* Message handler: a string error gets the traceback; any other error
 * object (a script's own error table) passes through unchanged. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL || lua_type(L, 1) != LUA_TSTRING)
    return 1;
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* Push the callback of ref (and release the ref) or return 0 if there is no
 * thread to call it on (garbage collection: nothing may run then). */
static int push_callback(lengine_t *le, int ref) {
  lua_State *L = le->L;
  if (L == NULL || ref == LUA_NOREF)
    return 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  return 1;
}

/* Call the function below nargs arguments on le->L, protected. The first
 * error stops the loop and is kept for run() to return. */
static void call_protected(lengine_t *le, int nargs) {
  lua_State *L = le->L;
  int base = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, 0, base) != 0) {
    if (le->err_ref == LUA_NOREF)
      le->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
    uv_stop(&le->loop);
  }
  lua_pop(L, 1); /* traceback */
}

/* The same path for the module's other files (lcore.h). */
lua_State *sonde__lua_engine_callback(lengine_t *le, int ref) {
  return push_callback(le, ref) ? le->L : NULL;
}

void sonde__lua_engine_call(lengine_t *le, int nargs) {
  call_protected(le, nargs);
}

void sonde__lua_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && L) {
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
  }
}

/* --- the engine ------------------------------------------------------------ */

#define OPT(member) LF_AT(sonde_engine_opts_t, member)

static const char *const privs[] = {"auto", "raw", "unprivileged", NULL};
static const char *const tcp_modes[] = {"auto", "syn", "connect", NULL};

/* The options of core.engine{...}. */
static const lfield_t engine_fields[] = {
    {LF_NAME("rate"), .type = LF_NUMBER, OPT(rate), .max = 1e9, .has_def = 1,
     .help = "probes per second, engine-wide (0: unlimited)"},
    {LF_NAME("window"), .type = LF_INT, OPT(window), .max = 1 << 20,
     .has_def = 1, .help = "probes in flight at most (0: 256)"},
    {LF_NAME("wait"), .type = LF_NUMBER, OPT(wait),
     .max = SONDE__LUA_WAIT_MAX, .has_def = 1, .help = "seconds a probe waits by default (0: 5)"},
    {LF_NAME("icmp_id"), .type = LF_INT, OPT(echo_id), .max = 65535,
     .has_def = 1, .help = "ICMP echo identifier (0: from the process id)"},
    {LF_NAME("privileged"), .type = LF_CHOICE, OPT(priv), .choices = privs,
     .base = SONDE_PRIV_AUTO, .has_def = 1, .def = SONDE_PRIV_AUTO,
     .help = "raw sockets if allowed, raw sockets or EPERM, or ICMP "
             "datagram sockets"},
    {LF_NAME("send_thread"), .type = LF_BOOL, OPT(send_thread), .vtrue = 1,
     .has_def = 1, .help = "plain ICMP echo probes sent by a thread of the "
                           "engine's own (sweeps)"},
    {LF_NAME("tcp_mode"), .type = LF_CHOICE, OPT(tcp_mode),
     .choices = tcp_modes, .base = SONDE_TCP_AUTO, .has_def = 1,
     .def = SONDE_TCP_AUTO,
     .help = "TCP probes: half-open SYN on a raw socket, connect(), or SYN "
             "when raw sockets are allowed (auto)"},
};

static sonde_engine_opts_t engine_defaults;

static lschema_t engine_schema = {
    .what = "engine",
    .fields = engine_fields,
    .n = (int)(sizeof(engine_fields) / sizeof(engine_fields[0])),
    .size = sizeof(sonde_engine_opts_t),
    .defaults = &engine_defaults};

void sonde__lua_push_engine_fields(lua_State *L) {
  sonde__lua_push_fields(L, &engine_schema);
}

static void engine_closed(sonde_engine_t *eng, void *data) {
  ((lengine_t *)data)->engine_closed = 1;
}

/* core.engine(opts) -> engine, or nil, msg, name. */
int sonde__lua_engine_new(lua_State *L) {
  sonde_engine_opts_t opts;
  lengine_t *le;
  int r;

  memset(&opts, 0, sizeof(opts));
  /* Nothing probes before the process has given up its privileges: the
   * CLI drops them once it has opened what the command line names. */
  if (sonde_privsep_pending()) {
    lua_pushnil(L);
    lua_pushliteral(L, "EPERM: no engine before sonde.core.drop_privileges()");
    lua_pushliteral(L, "EPERM");
    return 3;
  }
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    sonde__lua_read_fields(L, 1, &engine_schema, &opts);
  }
  /* Userdata first, every field invalid, metatable attached: only then is
   * anything acquired, so __gc always finds a consistent state. */
  le = lua_newuserdata(L, sizeof(*le));
  memset(le, 0, sizeof(*le));
  le->err_ref = LUA_NOREF;
  sonde__lua_list_init(&le->reqs);
  le->owned.next = le->owned.prev = &le->owned;
  luaL_getmetatable(L, ENGINE_MT);
  lua_setmetatable(L, -2);
  r = uv_loop_init(&le->loop);
  if (r < 0)
    return sonde__lua_uv_fail(L, r);
  le->loop_init = 1;
  /* Callbacks find their engine through the loop (userdata never moves). */
  uv_loop_set_data(&le->loop, le);
  r = sonde_engine_new(&le->loop, &opts, &le->eng);
  if (r < 0)
    return sonde__lua_fail(L, r);
  return 1;
}

static void on_result(sonde_engine_t *eng, uint64_t id,
                      const sonde_result_t *res, void *data) {
  lengine_t *le = uv_loop_get_data(sonde_engine_loop(eng));
  int ref = (int)(intptr_t)data;
  if (push_callback(le, ref)) {
    sonde__lua_unref(le->L, &ref);
    sonde__lua_push_result(le->L, id, res);
    call_protected(le, 1);
  }
}

/* e:probe({dst=, proto=, ttl=, ...}, function(result) end) -> id */
int sonde__lua_probe(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  sonde_probe_spec_t spec;
  int64_t id;
  int ref;

  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  sonde__lua_probe_spec(L, 2, &spec);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The engine copies payload and expect before this returns. */
  id = sonde_probe_start(le->eng, &spec, on_result, (void *)(intptr_t)ref);
  if (id < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return sonde__lua_fail(L, (int)id);
  }
  lua_pushnumber(L, (lua_Number)id);
  return 1;
}

static uint64_t check_id(lua_State *L, int idx) {
  lua_Number n = luaL_checknumber(L, idx);
  if (n < 1 || n != floor(n))
    luaL_argerror(L, idx, "not a probe id");
  return (uint64_t)n;
}

int sonde__lua_set_wait(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  int r = sonde_probe_set_wait(le->eng, check_id(L, 2), luaL_checknumber(L, 3));
  if (r < 0)
    return sonde__lua_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

int sonde__lua_cancel(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  lua_State *outer = le->L;
  int r;
  /* The cancelled probe's callback runs now, on this thread. */
  le->L = L;
  r = sonde_probe_cancel(le->eng, check_id(L, 2));
  le->L = outer;
  if (r < 0)
    return sonde__lua_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* e:read_pending() -> the number of packets read: the replies that have
 * arrived and wait unread end their probes now (sonde_engine_read_pending). */
int sonde__lua_read_pending(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  lua_State *outer = le->L;
  int n;
  /* The callbacks of the probes these replies end run now, on this thread. */
  le->L = L;
  n = sonde_engine_read_pending(le->eng);
  le->L = outer;
  lua_pushinteger(L, n);
  return 1;
}

int sonde__lua_stats(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  sonde_stats_t s;
  sonde_engine_stats(le->eng, &s);
  lua_createtable(L, 0, 12);
#define F(name)                                                               \
  lua_pushnumber(L, (lua_Number)s.name);                                     \
  lua_setfield(L, -2, #name);
  F(started) F(sent) F(replies) F(timeouts) F(skipped) F(failed) F(received)
  F(ignored) F(malformed) F(dropped) F(send_retries) F(in_flight) F(queued)
#undef F
  return 1;
}

/* e:tcp_mode(4|6) -> "syn" or "connect": how TCP probes without tcp_mode
 * (and without payload or expect) of that family go out; or nil, "ENAME:
 * message (call)", "ENAME" when the engine's tcp_mode is "syn" and it
 * cannot send SYNs (EPERM: no raw sockets). */
int sonde__lua_tcp_mode(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  int fam = (int)luaL_checkinteger(L, 2);
  const char *call = NULL;
  int r;
  if (fam != 4 && fam != 6)
    return luaL_argerror(L, 2, "family must be 4 or 6");
  r = sonde_engine_tcp_mode(le->eng, fam == 6 ? AF_INET6 : AF_INET, &call);
  if (r < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s (%s)", sonde_err_name(r), sonde_strerror(r),
                    call ? call : "tcp_mode");
    lua_pushstring(L, sonde_err_name(r));
    return 3;
  }
  lua_pushstring(L, r == SONDE_TCP_SYN ? "syn" : "connect");
  return 1;
}

/* e:privileged(4|6) -> true (raw sockets), false (unprivileged), or nil
 * (no probe of that family yet). */
int sonde__lua_privileged(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  int fam = (int)luaL_checkinteger(L, 2);
  int r;
  if (fam != 4 && fam != 6)
    return luaL_argerror(L, 2, "family must be 4 or 6");
  r = sonde_engine_privileged(le->eng, fam == 6 ? AF_INET6 : AF_INET);
  if (r < 0)
    return 0;
  lua_pushboolean(L, r);
  return 1;
}

/* e:source(addr [, iface [, src]]) -> the source address a probe to addr
 * would leave from (over the interface iface; src checked one of this
 * host's), or nil, msg, name. */
int sonde__lua_source(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  sonde_probe_spec_t spec;
  struct sockaddr_storage src;
  char buf[INET6_ADDRSTRLEN];
  size_t ilen = 0;
  const char *iface = luaL_optlstring(L, 3, "", &ilen);
  int r;
  memset(&spec, 0, sizeof(spec));
  if (sonde_addr_parse(luaL_checkstring(L, 2), 0, &spec.dst) < 0)
    return luaL_argerror(L, 2, "not a numeric IP address");
  if (ilen >= sizeof(spec.iface) || memchr(iface, '\0', ilen))
    return luaL_argerror(L, 3, "not an interface name (1 to 15 bytes)");
  memcpy(spec.iface, iface, ilen);
  if (!lua_isnoneornil(L, 4) &&
      (sonde_addr_parse(luaL_checkstring(L, 4), 0, &spec.src) < 0 ||
       spec.src.ss_family != spec.dst.ss_family))
    return luaL_argerror(L, 4, "not a numeric IP address of addr's family");
  r = sonde_probe_source(le->eng, &spec, &src);
  if (r < 0)
    return sonde__lua_fail(L, r);
  lua_pushstring(L, sonde_addr_format(&src, buf, sizeof(buf)));
  return 1;
}

/* Monotonic seconds (the clock RTTs are measured on). */
int sonde__lua_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* Push the first callback error as (nil, message) and clear it. */
static int take_error(lua_State *L, lengine_t *le) {
  lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, le->err_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, le->err_ref);
  le->err_ref = LUA_NOREF;
  return 2;
}

/* e:run(): run the loop until nothing is pending or a callback fails. */
int sonde__lua_run(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  if (le->L)
    return luaL_error(L, "engine:run() called from inside a callback");
  le->L = L;
  uv_run(&le->loop, UV_RUN_DEFAULT);
  le->L = NULL;
  if (le->err_ref != LUA_NOREF)
    return take_error(L, le);
  lua_pushboolean(L, 1);
  return 1;
}

lengine_t *sonde__lua_check_engine(lua_State *L, int idx) {
  return check_engine(L, idx);
}

uv_loop_t *sonde__lua_engine_loop(lengine_t *le) { return &le->loop; }

void sonde__lua_engine_attach(lengine_t *le, lowned_t *o) {
  o->next = &le->owned;
  o->prev = le->owned.prev;
  le->owned.prev->next = o;
  le->owned.prev = o;
}

void sonde__lua_engine_detach(lowned_t *o) {
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = o;
}

int sonde__lua_stop(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  uv_stop(&le->loop);
  return 0;
}

/* --- lists ------------------------------------------------------------------ */

void sonde__lua_list_init(llink_t *head) { head->next = head->prev = head; }

void sonde__lua_list_append(llink_t *head, llink_t *l) {
  l->next = head;
  l->prev = head->prev;
  head->prev->next = l;
  head->prev = l;
}

void sonde__lua_list_remove(llink_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}

/* --- requests: timers, signal watches, resolver lookups --------------------- */

lreq_t *sonde__lua_req_new(lua_State *L, lengine_t *le, int kind, int fn_idx) {
  lreq_t *q = calloc(1, sizeof(*q));
  if (q == NULL)
    luaL_error(L, "out of memory");
  q->le = le;
  q->kind = kind;
  q->token = ++le->next_token;
  lua_pushvalue(L, fn_idx);
  q->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sonde__lua_list_append(&le->reqs, &q->link);
  return q;
}

void sonde__lua_req_free(lreq_t *q) {
  sonde__lua_list_remove(&q->link);
  free(q);
}

/* A request failed to start: release it (its handle never existed). */
int sonde__lua_req_abort(lua_State *L, lreq_t *q, int status) {
  luaL_unref(L, LUA_REGISTRYINDEX, q->ref);
  sonde__lua_req_free(q);
  return sonde__lua_uv_fail(L, status);
}

void sonde__lua_req_closed(uv_handle_t *h) {
  lreq_t *q = h->data;
  if (q->closed)
    q->closed(q);
  sonde__lua_req_free(q);
}

/* Stop a timer or signal for good: drop its callback, close its handle.
 * A resolver request is cancelled: its callback frees it. */
void sonde__lua_req_close(lreq_t *q, lua_State *L) {
  if (q->done)
    return;
  q->done = 1;
  sonde__lua_unref(L, &q->ref);
  if (q->kind == REQ_TIMER || q->kind == REQ_SIGNAL)
    uv_close(&q->u.handle, sonde__lua_req_closed);
  else
    uv_cancel((uv_req_t *)&q->u.gai);
}

/* --- closing ----------------------------------------------------------------- */

static void walk_count(uv_handle_t *h, void *arg) { (*(int *)arg)++; }

/*
 * Close everything: probes end with ECANCELED (their callbacks run if L is
 * given, i.e. from e:close(); not from __gc), timers and signals stop,
 * resolver requests are cancelled; then the loop runs until every handle
 * is closed and is closed itself, with a check that nothing is left.
 * Returns the number of handles left (0 when all is well).
 */
static int engine_close(lengine_t *le, lua_State *L, int callbacks) {
  llink_t *l, *next;
  lowned_t *o, *onext;
  int left = 0;
  if (le->eng == NULL)
    return 0;
  le->L = callbacks ? L : NULL;
  sonde_engine_close(le->eng, engine_closed, le);
  le->L = NULL;
  for (l = le->reqs.next; l != &le->reqs; l = next) {
    next = l->next;
    sonde__lua_req_close((lreq_t *)l, L);
  }
  for (o = le->owned.next; o != &le->owned; o = onext) {
    onext = o->next;
    o->close(o, L);
  }
  while (!le->engine_closed || le->reqs.next != &le->reqs ||
         le->owned.next != &le->owned)
    if (uv_run(&le->loop, UV_RUN_ONCE) == 0 && !le->engine_closed)
      break;
  le->eng = NULL;
  uv_walk(&le->loop, walk_count, &left);
  if (le->loop_init && uv_loop_close(&le->loop) == 0)
    le->loop_init = 0;
  if (le->err_ref != LUA_NOREF)
    sonde__lua_unref(L, &le->err_ref);
  return left;
}

int sonde__lua_close(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  int left;
  if (le->eng == NULL) {
    /* Closing twice is a soft error (nmap's l_close), never a second close. */
    lua_pushnil(L);
    lua_pushliteral(L, "engine already closed");
    return 2;
  }
  if (le->L)
    return luaL_error(L, "engine:close() called from inside a callback");
  left = engine_close(le, L, 1);
  if (left)
    return luaL_error(L, "engine closed with %d libuv handle(s) left open",
                      left);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  engine_close(le, L, 0);
  if (le->loop_init) {
    uv_loop_close(&le->loop);
    le->loop_init = 0;
  }
  return 0;
}

static int l_tostring(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  lua_pushfstring(L, "sonde.engine (%s)", le->eng ? "open" : "closed");
  return 1;
}


/* The metatable of engines: methods (core.c's table) as __index. */
void sonde__lua_engine_init(lua_State *L, const luaL_Reg *methods) {
  sonde__lua_metatable(L, ENGINE_MT, methods, l_gc, l_tostring);
}

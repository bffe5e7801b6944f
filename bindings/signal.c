/*
 * signal.c - e:on_signal(name, fn): SIGINT, SIGTERM, SIGHUP and SIGQUIT
 * watched on the engine's loop, and the guard (guard.h) that keeps such a
 * signal while no engine watches it.
 */
#include <signal.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#include "guard.h"
#include "lcore.h"

/* Signals while no engine watches them (guard.h). libuv puts back the
 * default action when its last watcher of a signal stops; the guard takes
 * over again then (re_guard). */
static volatile sig_atomic_t guard_on, guard_sig;

static void guard_record(int sig) {
  if (guard_sig == 0)
    guard_sig = sig;
}

static void guard_install(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = guard_record;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(sig, &sa, NULL);
}

void sonde_guard_signals(void) {
  guard_on = 1;
  guard_install(SIGINT);
  guard_install(SIGTERM);
  guard_install(SIGHUP);
  guard_install(SIGQUIT);
}

int sonde_guard_pending(void) { return guard_sig; }

static void re_guard(int sig) {
  struct sigaction old;
  if (guard_on && sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
    guard_install(sig);
}


/* A watch's handle closed: the guard takes its signal back if libuv left
 * it at the default action. */
static void signal_closed(lreq_t *q) { re_guard(q->signum); }

static void on_signal(uv_signal_t *h, int signum) {
  lreq_t *q = h->data;
  lengine_t *le = q->le;
  if (sonde__lua_engine_callback(le, q->ref)) {
    lua_pushinteger(le->L, signum);
    sonde__lua_engine_call(le, 1);
  }
}

/* e:on_signal("SIGINT"|"SIGTERM"|"SIGHUP", fn) -> token. The watch does not
 * keep the loop running. */
int sonde__lua_on_signal(lua_State *L) {
  static const char *const names[] = {"SIGINT", "SIGTERM", "SIGHUP",
                                      "SIGQUIT", NULL};
  static const int nums[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  lengine_t *le = sonde__lua_check_engine(L, 1);
  int i = luaL_checkoption(L, 2, NULL, names), r;
  lreq_t *q;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  q = sonde__lua_req_new(L, le, REQ_SIGNAL, 3);
  q->closed = signal_closed;
  r = uv_signal_init(&le->loop, &q->u.signal);
  if (r < 0)
    return sonde__lua_req_abort(L, q, r);
  q->u.signal.data = q;
  q->signum = nums[i];
  r = uv_signal_start(&q->u.signal, on_signal, nums[i]);
  if (r < 0) {
    sonde__lua_req_close(q, L);
    return sonde__lua_uv_fail(L, r);
  }
  uv_unref(&q->u.handle);
  /* Kept while nothing watched it: delivered now, through the loop. */
  if (guard_sig == nums[i]) {
    guard_sig = 0;
    (void)raise(nums[i]);
  }
  lua_pushnumber(L, (lua_Number)q->token);
  return 1;
}

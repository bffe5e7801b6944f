/*
 * timer.c - e:after(seconds, fn): a one-shot timer on the engine's loop,
 * and e:unwatch(token) (e:cancel_timer), which stops a timer or a signal
 * watch by the token it was given.
 */
#include <math.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"

static void on_timer(uv_timer_t *t) {
  lreq_t *q = t->data;
  lengine_t *le = q->le;
  int ref = q->ref;
  q->ref = LUA_NOREF;
  q->done = 1;
  uv_close(&q->u.handle, sonde__lua_req_closed);
  if (sonde__lua_engine_callback(le, ref)) {
    sonde__lua_unref(le->L, &ref);
    sonde__lua_engine_call(le, 0);
  }
}

/* e:after(seconds, fn) -> token: call fn once after seconds. */
int sonde__lua_after(lua_State *L) {
  lengine_t *le = sonde__lua_check_engine(L, 1);
  double s = luaL_checknumber(L, 2);
  lreq_t *q;
  int r;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (isnan(s) || s < 0 || s > 1e7)
    return luaL_argerror(L, 2, "seconds must be from 0 to 1e7");
  q = sonde__lua_req_new(L, le, REQ_TIMER, 3);
  r = uv_timer_init(&le->loop, &q->u.timer);
  if (r < 0)
    return sonde__lua_req_abort(L, q, r);
  q->u.timer.data = q;
  /* libuv counts the delay from the loop's cached time, taken when the loop
   * last woke; the script may have run (or been preempted) for a while
   * since. Without a fresh time the timer fires early by that much. */
  uv_update_time(&le->loop);
  uv_timer_start(&q->u.timer, on_timer, (uint64_t)ceil(s * 1000), 0);
  lua_pushnumber(L, (lua_Number)q->token);
  return 1;
}

/* e:cancel_timer(token) / e:unwatch(token): stop a timer or signal watch. */
int sonde__lua_unwatch(lua_State *L) {
  lengine_t *le = sonde__lua_engine_arg(L, 1);
  uint64_t token = (uint64_t)luaL_checknumber(L, 2);
  llink_t *l;
  for (l = le->reqs.next; l != &le->reqs; l = l->next) {
    lreq_t *q = (lreq_t *)l;
    if (q->token == token && !q->done) {
      sonde__lua_req_close(q, L);
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

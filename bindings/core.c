/*
 * core.c - the Lua module `sonde.core`: its one registration table. Each
 * file converts one thing, and adds no policy:
 *   engine.c  the engine object: probes, the loop, closing
 *   probe.c   the probe table (its fields described once, fields.c reads)
 *   result.c  a probe's result as a table
 *   timer.c   e:after, e:unwatch       signal.c  e:on_signal
 *   dns.c     e:resolve                tty.c     e:tty
 *   ares.c    e:reverse, e:txt, e:resolver (c-ares)
 *   lpacket.c core.parse_icmp          os.c      core.pid, isatty, listdir
 *   output.c  core.output_open         privsep.c core.drop_privileges
 * The executable adds core.deadline (main.c: `sonde run --timeout`).
 */
#include <stdlib.h>

#include "lauxlib.h"
#include "lua.h"
#include "luajit.h"

#include "lcore.h"
#include "lpacket.h"
#include "output.h"
#include "privsep.h"
#include "sonde.h"

void sonde__lua_metatable(lua_State *L, const char *name,
                          const luaL_Reg *methods, lua_CFunction gc,
                          lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  if (tostring) {
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

static int l_version(lua_State *L) {
  lua_createtable(L, 0, 3);
  lcore_set_str(L, "sonde", SONDE_VERSION_STRING);
  lcore_set_str(L, "libuv", uv_version_string());
  lcore_set_str(L, "luajit", LUAJIT_VERSION);
  return 1;
}

/* core.strerror(name) -> message, status: the errno map for Lua. */
static int l_strerror(lua_State *L) {
  int err = lua_type(L, 1) == LUA_TNUMBER
                ? -abs((int)lua_tointeger(L, 1))
                : sonde_err_from_name(luaL_checkstring(L, 1));
  if (err == 0)
    return 0;
  lua_pushstring(L, sonde_strerror(err));
  lua_pushstring(L, sonde_status_name(sonde_err_status(err)));
  lua_pushstring(L, sonde_err_name(err));
  return 3;
}

/* core.errors: { EADDRINUSE = {errno = 98, message = ..., status = ...} } */
static void push_errors(lua_State *L) {
  static const int errs[] = {
#define XX(name, msg, st) SONDE_##name,
      SONDE_ERRNO_MAP(XX)
#undef XX
  };
  size_t i;
  lua_newtable(L);
  for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    lua_createtable(L, 0, 3);
    lcore_set_int(L, "errno", -errs[i]);
    lcore_set_str(L, "message", sonde_strerror(errs[i]));
    lcore_set_str(L, "status", sonde_status_name(sonde_err_status(errs[i])));
    lua_setfield(L, -2, sonde_err_name(errs[i]));
  }
}


int luaopen_sonde_core(lua_State *L);

int luaopen_sonde_core(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"probe", sonde__lua_probe},
      {"set_wait", sonde__lua_set_wait},
      {"cancel", sonde__lua_cancel},
      {"read_pending", sonde__lua_read_pending},
      {"stats", sonde__lua_stats},
      {"run", sonde__lua_run},
      {"stop", sonde__lua_stop},
      {"after", sonde__lua_after},
      {"unwatch", sonde__lua_unwatch},
      {"on_signal", sonde__lua_on_signal},
      {"resolve", sonde__lua_resolve},
      {"reverse", sonde__lua_reverse},
      {"txt", sonde__lua_txt},
      {"resolver", sonde__lua_resolver},
      {"close", sonde__lua_close},
      {"now", sonde__lua_now},
      {"privileged", sonde__lua_privileged},
      {"tcp_mode", sonde__lua_tcp_mode},
      {"source", sonde__lua_source},
      {"tty", sonde__lua_tty},
      {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"engine", sonde__lua_engine_new},
      {"version", l_version},
      {"strerror", l_strerror},
      {"now", sonde__lua_now},
      {"parse_icmp", sonde__lua_parse_icmp},
      {"drop_privileges", sonde__l_drop_privileges},
      {"pid", sonde__lua_pid},
      {"time", sonde__lua_time},
      {"uid", sonde__lua_uid},
      {"isatty", sonde__lua_isatty},
      {"listdir", sonde__lua_listdir},
      {"output_open", sonde__lua_output_open},
      {"http_listen", sonde__lua_http_listen},
      {NULL, NULL}};
  sonde__lua_engine_init(L, methods);
  sonde__lua_tty_init(L);
  sonde__output_init(L);
  sonde__lua_http_init(L);
  lua_newtable(L);
  luaL_register(L, NULL, funcs);
  push_errors(L);
  lua_setfield(L, -2, "errors");
  sonde__lua_push_probe_fields(L);
  lua_setfield(L, -2, "probe_fields");
  sonde__lua_push_engine_fields(L);
  lua_setfield(L, -2, "engine_fields");
  return 1;
}

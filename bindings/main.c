/*
 * main.c - the `sonde` executable: embeds LuaJIT, makes `sonde.core` and the
 * bundled scripts requirable, and hands the arguments to sonde.cli, whose
 * return value is the exit status.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#ifndef SONDE_SCRIPTS_DIR
#define SONDE_SCRIPTS_DIR "/usr/local/share/sonde/scripts"
#endif

int luaopen_sonde_core(lua_State *L);

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Where the bundled scripts are: $SONDE_SCRIPTS, else ../scripts next to the
 * executable (the build tree: build/sonde), else ../share/sonde/scripts (an
 * installed tree), else the compiled-in directory.
 */
static const char *scripts_dir(char *buf, size_t len) {
  const char *env = getenv("SONDE_SCRIPTS");
  char exe[PATH_MAX];
  ssize_t n;
  char *slash;

  if (env && *env)
    return env;
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(buf, len, "%s/../scripts", exe);
      if (is_dir(buf))
        return buf;
      snprintf(buf, len, "%s/../share/sonde/scripts", exe);
      if (is_dir(buf))
        return buf;
    }
  }
  return SONDE_SCRIPTS_DIR;
}

static int traceback(lua_State *L) {
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

int main(int argc, char **argv) {
  char dirbuf[PATH_MAX + 32];
  const char *dir;
  lua_State *L;
  int i, status = 3;

  /* sonde never dies of SIGPIPE: writes report EPIPE instead (SEEDS.md 002). */
  signal(SIGPIPE, SIG_IGN);
  L = luaL_newstate();
  if (L == NULL) {
    fputs("sonde: cannot create the Lua state (out of memory)\n", stderr);
    return 3;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_sonde_core);
  lua_setfield(L, -2, "sonde.core");
  lua_pop(L, 1);
  dir = scripts_dir(dirbuf, sizeof(dirbuf));
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushstring(L, dir);
  lua_setglobal(L, "SONDE_SCRIPTS_DIR");

  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sonde.cli");
  if (lua_pcall(L, 1, 1, -3) != 0) {
    fprintf(stderr, "sonde: cannot load the CLI from %s: %s\n", dir,
            lua_tostring(L, -1));
    lua_close(L);
    return 3;
  }
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushstring(L, dir);
  if (lua_pcall(L, 2, 1, 1) != 0)
    fprintf(stderr, "sonde: internal error: %s\n", lua_tostring(L, -1));
  else if (lua_isnumber(L, -1))
    status = (int)lua_tointeger(L, -1);
  /* Closing the state runs every finalizer: engines close their sockets. */
  lua_close(L);
  if (fflush(stdout) != 0 && errno != EPIPE && status == 0)
    status = 3;
  return status;
}

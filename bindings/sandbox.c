/*
 * sandbox.c - the Lua state in which the `sonde` executable runs scripts.
 *
 * The process holds raw sockets (opened while it still could) and, run
 * through sudo or a setcap binary, more privilege than the script's user.
 * A script must reach them only through the engine's probe API, which
 * refuses forged sources. Three doors of a stock LuaJIT state lead around
 * that API to arbitrary machine code, and this file shuts them:
 *
 *  - the `ffi` library: ffi.C.sendto(fd, ...) on any descriptor;
 *  - C modules: package.loadlib and the C searchers load any shared
 *    object, including one the script wrote to /tmp;
 *  - bytecode: load() of a crafted binary chunk breaks the VM's memory
 *    safety (LuaJIT does not verify bytecode), so every loader takes text
 *    only.
 *
 * What stays is the plain Lua libraries (io, os, string, table, math,
 * debug, jit, bit, coroutine) and sonde.core, which is preloaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "sandbox.h"

/* load(chunk [, chunkname [, mode [, env]]]): a string or a reader
 * function, text only whatever mode asks. */
static int l_load(lua_State *L) {
  const char *name = luaL_optstring(L, 2, "=(load)");
  int status;
  lua_settop(L, 4); /* the chunk lands at 5: 4 is env or nil */
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    status = luaL_loadbufferx(L, s, len, lua_isnoneornil(L, 2) ? s : name, "t");
  } else {
    /* A reader function: collect its pieces, then load them as one. */
    luaL_Buffer b;
    int i;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_buffinit(L, &b);
    for (i = 0; i < 1 << 24; i++) {
      size_t len;
      lua_pushvalue(L, 1);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      if (!lua_isstring(L, -1))
        return luaL_error(L, "reader function must return a string");
      lua_tolstring(L, -1, &len);
      if (len == 0) {
        lua_pop(L, 1);
        break;
      }
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      status = luaL_loadbufferx(L, s, len, name, "t");
    }
  }
  if (status != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (!lua_isnoneornil(L, 4)) {
    lua_pushvalue(L, 4);
    lua_setfenv(L, -2);
  }
  return 1;
}

/* loadfile([filename [, mode [, env]]]): text only. */
static int l_loadfile(lua_State *L) {
  const char *name = luaL_optstring(L, 1, NULL);
  lua_settop(L, 3); /* the chunk lands at 4: 3 is env or nil */
  if (luaL_loadfilex(L, name, "t") != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (!lua_isnoneornil(L, 3)) {
    lua_pushvalue(L, 3);
    lua_setfenv(L, -2);
  }
  return 1;
}

/* dofile([filename]): text only; errors propagate. */
static int l_dofile(lua_State *L) {
  const char *name = luaL_optstring(L, 1, NULL);
  int base = lua_gettop(L);
  if (luaL_loadfilex(L, name, "t") != 0)
    return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - base;
}

/* The Lua-file searcher of require: package.path, text only. */
static int l_search_lua(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *path, *p;
  luaL_Buffer tried;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  path = lua_tostring(L, -1);
  if (path == NULL)
    return luaL_error(L, "package.path must be a string");
  luaL_buffinit(L, &tried);
  /* Each ';'-separated template, '?' replaced by the name with '.' -> '/'. */
  for (p = path; *p;) {
    const char *end = strchr(p, ';');
    size_t tlen = end ? (size_t)(end - p) : strlen(p);
    char file[4096];
    size_t n = 0, i;
    FILE *f;
    for (i = 0; i < tlen && n < sizeof(file) - 1; i++) {
      if (p[i] == '?') {
        const char *c;
        for (c = name; *c && n < sizeof(file) - 1; c++)
          file[n++] = *c == '.' ? '/' : *c;
      } else {
        file[n++] = p[i];
      }
    }
    file[n] = '\0';
    p += tlen + (end ? 1 : 0);
    if (n == 0)
      continue;
    f = fopen(file, "r");
    if (f == NULL) {
      lua_pushfstring(L, "\n\tno file '%s'", file);
      luaL_addvalue(&tried);
      continue;
    }
    fclose(f);
    if (luaL_loadfilex(L, file, "t") != 0)
      return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                        name, file, lua_tostring(L, -1));
    return 1;
  }
  luaL_pushresult(&tried);
  return 1;
}

/* The bundled scripts' directory, opened while the process could enter it:
 * after the drop, a user such as nobody may not reach a clone in root's
 * home (mode 0700), but modules are still read relative to this
 * descriptor, which the state owns until the process ends. */
static int scripts_fd = -1;
static char scripts_path[4096];

/* Read rel (below the scripts directory) into a new buffer: its length in
 * *len, or NULL with errno set. */
static char *read_rel(const char *rel, size_t *len) {
  struct stat st;
  char *buf;
  size_t got = 0;
  int fd = openat(scripts_fd, rel, O_RDONLY | O_CLOEXEC), e;
  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
    e = errno ? errno : EINVAL;
    close(fd);
    errno = e;
    return NULL;
  }
  buf = malloc((size_t)st.st_size + 1);
  while (buf && got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  *len = got;
  return buf;
}

/* require's searcher for the bundled modules: NAME as a/b.lua or
 * a/b/init.lua below the scripts directory. */
static int l_search_scripts(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  static const char *const forms[] = {"%s.lua", "%s/init.lua"};
  char rel[512], mod[400];
  size_t i, k;
  if (scripts_fd == -1 || strlen(name) >= sizeof(mod) || name[0] == '.' ||
      strstr(name, "..") || strchr(name, '/'))
    return 0;
  for (i = 0; name[i]; i++)
    mod[i] = name[i] == '.' ? '/' : name[i];
  mod[i] = '\0';
  for (k = 0; k < 2; k++) {
    size_t len;
    char *buf;
    int status;
    snprintf(rel, sizeof(rel), forms[k], mod);
    buf = read_rel(rel, &len);
    if (buf == NULL)
      continue;
    lua_pushfstring(L, "@%s/%s", scripts_path, rel);
    status = luaL_loadbufferx(L, buf, len, lua_tostring(L, -1), "t");
    free(buf);
    if (status != 0)
      return luaL_error(L, "error loading module '%s' from file '%s/%s':\n\t%s",
                        name, scripts_path, rel, lua_tostring(L, -1));
    return 1;
  }
  lua_pushfstring(L, "\n\tno file '%s/%s.lua'", scripts_path, mod);
  return 1;
}

void sonde_sandbox_release(void) {
  if (scripts_fd != -1) {
    close(scripts_fd);
    scripts_fd = -1;
  }
}

int sonde_sandbox_scripts(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (scripts_fd != -1)
    close(scripts_fd);
  scripts_fd = fd;
  snprintf(scripts_path, sizeof(scripts_path), "%s", dir);
  return 0;
}

/* Searchers that stay: preload (sonde.core), the bundled scripts, and Lua
 * files on package.path, all as text. The
 * table is changed in place: require holds this very table. */
static void set_searchers(lua_State *L) {
  int i;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");
  if (lua_istable(L, -1)) {
    for (i = 2; i <= 4; i++) {
      lua_pushnil(L);
      lua_rawseti(L, -2, i);
    }
    lua_pushcfunction(L, l_search_scripts);
    lua_rawseti(L, -2, 2);
    lua_pushcfunction(L, l_search_lua);
    lua_rawseti(L, -2, 3);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setfield(L, -2, "loadlib");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

void sonde_sandbox(lua_State *L) {
  /* ffi: gone from package.preload (where luaL_openlibs puts it) and from
   * package.loaded, in case anything loaded it already. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushnil(L);
  lua_setfield(L, -2, LUA_FFILIBNAME);
  lua_pop(L, 1);
  lua_getfield(L, -1, "loaded");
  lua_pushnil(L);
  lua_setfield(L, -2, LUA_FFILIBNAME);
  lua_pop(L, 2);
  lua_pushnil(L);
  lua_setglobal(L, LUA_FFILIBNAME);
  set_searchers(L);
  lua_pushcfunction(L, l_load);
  lua_setglobal(L, "load");
  lua_pushcfunction(L, l_load);
  lua_setglobal(L, "loadstring");
  lua_pushcfunction(L, l_loadfile);
  lua_setglobal(L, "loadfile");
  lua_pushcfunction(L, l_dofile);
  lua_setglobal(L, "dofile");
}

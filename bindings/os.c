/*
 * os.c - the few services of the operating system that the bundled
 * scripts need, for a Lua state that has no FFI and starts no shell:
 * core.pid(), core.uid(), core.isatty(fd), core.listdir(path), core.time().
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"

/* core.pid() -> the process id. */
int sonde__lua_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core.uid() -> the real user id (getuid()): who ran sonde, which a
 * setuid or setcap executable does not change (iputils ping's test for
 * what only root may do). After sonde.core.drop_privileges() it is the
 * user sonde runs as. */
int sonde__lua_uid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getuid());
  return 1;
}

/* core.time() -> the wall-clock time, Unix seconds with their fraction
 * (CLOCK_REALTIME: what ping -D prints; it may step, so durations are
 * measured on core.now()). */
int sonde__lua_time(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return luaL_error(L, "clock_gettime(CLOCK_REALTIME): %s", strerror(errno));
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.isatty(fd) -> is standard input (0), output (1) or error (2) a
 * terminal? Any other number is misuse: no descriptor number of the process
 * is reachable from Lua. */
int sonde__lua_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  if (fd < 0 || fd > 2)
    return luaL_argerror(L, 1, "0, 1 or 2 (standard input, output, error)");
  lua_pushboolean(L, isatty((int)fd) == 1);
  return 1;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names read so far, released on every way out of listdir. */
typedef struct {
  DIR *dir;
  char **names;
  size_t n, cap;
} listing_t;

static void listing_free(listing_t *ls) {
  size_t i;
  if (ls->dir != NULL) {
    closedir(ls->dir);
    ls->dir = NULL;
  }
  for (i = 0; i < ls->n; i++)
    free(ls->names[i]);
  free(ls->names);
  ls->names = NULL;
  ls->n = ls->cap = 0;
}

/* Read every name of the directory but "." and "..". Returns 0 or a
 * positive errno (the names read so far stay in ls, for listing_free). */
static int listing_read(listing_t *ls, const char *path) {
  struct dirent *de;
  ls->dir = opendir(path); /* O_CLOEXEC: glibc opens directories so */
  if (ls->dir == NULL)
    return errno;
  for (;;) {
    errno = 0;
    de = readdir(ls->dir);
    if (de == NULL)
      return errno;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (ls->n == ls->cap) {
      size_t cap = ls->cap ? ls->cap * 2 : 32;
      char **grown = realloc(ls->names, cap * sizeof(*grown));
      if (grown == NULL)
        return ENOMEM;
      ls->names = grown;
      ls->cap = cap;
    }
    ls->names[ls->n] = strdup(de->d_name);
    if (ls->names[ls->n] == NULL)
      return ENOMEM;
    ls->n++;
  }
}

#define LISTING_KEY "sonde.core.listdir"

/* (protected) The names of the listing as a table, left in the registry. */
static int push_names(lua_State *L) {
  listing_t *ls = lua_touserdata(L, 1);
  size_t i;
  lua_createtable(L, (int)ls->n, 0);
  for (i = 0; i < ls->n; i++) {
    lua_pushstring(L, ls->names[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, LISTING_KEY);
  return 0;
}

/*
 * core.listdir(path) -> { name, ... } (every entry but "." and "..",
 * sorted bytewise), or nil, "ENAME: message: path", "ENAME" (ENOENT,
 * ENOTDIR, EACCES, ...). Nothing stays open afterwards.
 */
int sonde__lua_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  listing_t ls;
  int err;

  memset(&ls, 0, sizeof(ls));
  err = listing_read(&ls, path);
  if (err != 0) {
    listing_free(&ls);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s: %s", uv_err_name(-err), uv_strerror(-err),
                    path);
    lua_pushstring(L, uv_err_name(-err));
    return 3;
  }
  closedir(ls.dir);
  ls.dir = NULL;
  qsort(ls.names, ls.n, sizeof(*ls.names), cmp_names);
  /* Lua may raise a memory error while the table is built: build it in a
   * protected call, so that the names are freed on that way out too. */
  err = lua_cpcall(L, push_names, &ls);
  listing_free(&ls);
  if (err != 0)
    return lua_error(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LISTING_KEY);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, LISTING_KEY);
  listing_free(&ls);
  return 1;
}

/*
 * output.c - `-o FILE` for Lua: sonde.core.output_open(path) creates the
 * file while the process may still write where the user asked (before
 * sonde.core.drop_privileges()), and the object it returns writes, then
 * commits or aborts.
 *
 * A regular file (or a name not yet taken) is written atomically: the text
 * goes to ".FILE.sonde-<pid>-<n>.tmp" in the same directory, created
 * exclusively (O_EXCL, O_NOFOLLOW: never through a link someone left
 * there), and commit renames it over FILE; a reader sees the old FILE or
 * the whole new one. Started as root under sudo, the file is given to the
 * user who ran sudo. Anything else (/dev/null, a FIFO, a terminal,
 * /dev/stdout and whatever lies under /dev or /proc) is opened and written
 * in place.
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

#include "lcore.h"
#include "output.h"
#include "privsep.h"
#include "sonde.h"

#define OUTPUT_MT "sonde.output"
#define BUF_SIZE 65536

typedef struct {
  int fd;     /* -1 once closed */
  int index;  /* in privsep's table of outputs, -1 before */
  int err;    /* the first write error, negative errno */
  int done;   /* committed or aborted */
  size_t len; /* bytes in buf */
  char *buf;
} loutput_t;

/* nil, "ENAME: message", "ENAME": the system's message, which speaks of
 * files (the engine's map speaks of probes). */
static int push_err(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", sonde_err_name(err), strerror(-err));
  lua_pushstring(L, sonde_err_name(err));
  return 3;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int flush_buf(loutput_t *o) {
  int r;
  if (o->err)
    return o->err;
  r = write_all(o->fd, o->buf, o->len);
  o->len = 0;
  if (r < 0)
    o->err = r;
  return r;
}

static void close_fd(loutput_t *o) {
  if (o->fd != -1) {
    close(o->fd);
    o->fd = -1;
  }
}

/* Is path to be written in place rather than replaced? Whatever exists
 * and is not a regular file, and whatever exists under /dev or /proc
 * (/dev/stdout may lead to a regular file: the shell's redirection). */
static int in_place(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    return 0;
  return !S_ISREG(st.st_mode) || strncmp(path, "/dev/", 5) == 0 ||
         strncmp(path, "/proc/", 6) == 0;
}

/* Create the temporary file next to path: fd, and its name in tmp. */
static int create_tmp(const char *path, char *tmp, size_t len) {
  static unsigned counter;
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  int dlen = slash ? (int)(slash - path) : 1, i, fd = -EEXIST;
  const char *dir = slash ? path : ".";
  if (slash == path)
    dlen = 1; /* "/name": the root directory */
  for (i = 0; i < 20 && fd == -EEXIST; i++) {
    int n = snprintf(tmp, len, "%.*s/.%s.sonde-%ld-%u.tmp", dlen, dir, base,
                     (long)getpid(), ++counter);
    if (n < 0 || (size_t)n >= len)
      return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0666);
    if (fd < 0)
      fd = -errno;
  }
  return fd;
}

/* sonde.core.output_open(path) -> output, or nil, "ENAME: message", "ENAME"
 * (a third value "dir" when the temporary file could not be created). */
int sonde__lua_output_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char tmp[4096];
  loutput_t *o;
  uid_t uid;
  gid_t gid;
  int place = in_place(path), r;

  o = lua_newuserdata(L, sizeof(*o));
  memset(o, 0, sizeof(*o));
  o->fd = -1;
  o->index = -1;
  o->done = 1;
  luaL_getmetatable(L, OUTPUT_MT);
  lua_setmetatable(L, -2);
  o->buf = malloc(BUF_SIZE);
  if (o->buf == NULL)
    return push_err(L, -ENOMEM);
  if (place) {
    o->fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
    if (o->fd < 0)
      return push_err(L, -errno);
  } else {
    r = create_tmp(path, tmp, sizeof(tmp));
    if (r < 0) {
      push_err(L, r);
      lua_pushliteral(L, "dir");
      return 4;
    }
    o->fd = r;
    if (sonde_privsep_output_owner(&uid, &gid) && fchown(o->fd, uid, gid) != 0) {
      r = -errno;
      close_fd(o);
      (void)unlink(tmp);
      return push_err(L, r);
    }
  }
  r = sonde_privsep_add_output(place ? NULL : tmp, path);
  if (r < 0) {
    close_fd(o);
    if (!place)
      (void)unlink(tmp);
    return push_err(L, r);
  }
  o->index = r;
  o->done = 0;
  return 1;
}

static loutput_t *check_output(lua_State *L) {
  return luaL_checkudata(L, 1, OUTPUT_MT);
}

/* out:write(text) -> true, or nil, "ENAME: message", "ENAME" */
static int l_write(lua_State *L) {
  loutput_t *o = check_output(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int r;
  if (o->done)
    return luaL_error(L, "output already finished");
  if (o->err)
    return push_err(L, o->err);
  if (o->len + n > BUF_SIZE && (r = flush_buf(o)) < 0)
    return push_err(L, r);
  if (n >= BUF_SIZE) {
    r = write_all(o->fd, s, n);
    if (r < 0) {
      o->err = r;
      return push_err(L, r);
    }
  } else {
    memcpy(o->buf + o->len, s, n);
    o->len += n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* out:flush() -> true, or nil, "ENAME: message", "ENAME" */
static int l_flush(lua_State *L) {
  loutput_t *o = check_output(L);
  int r;
  if (o->done)
    return luaL_error(L, "output already finished");
  r = flush_buf(o);
  if (r < 0)
    return push_err(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* out:commit() -> true, or nil, "ENAME: message", "ENAME": the text is
 * written, the file closed and renamed over its path. On failure the
 * temporary file is removed and the old file stays. */
static int l_commit(lua_State *L) {
  loutput_t *o = check_output(L);
  int r;
  if (o->done)
    return luaL_error(L, "output already finished");
  o->done = 1;
  r = flush_buf(o);
  if (r == 0 && close(o->fd) != 0 && errno != EINTR)
    r = -errno;
  else if (r != 0)
    close(o->fd);
  o->fd = -1;
  if (r == 0)
    r = sonde_privsep_commit(o->index);
  if (r < 0) {
    sonde_privsep_discard(o->index);
    return push_err(L, r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* out:abort(): close and remove the temporary file; the old file stays.
 * A second call does nothing. */
static int l_abort(lua_State *L) {
  loutput_t *o = check_output(L);
  if (!o->done) {
    o->done = 1;
    close_fd(o);
    sonde_privsep_discard(o->index);
  }
  return 0;
}

/* A collected output that was never finished is aborted. */
static int l_gc(lua_State *L) {
  loutput_t *o = check_output(L);
  if (!o->done) {
    o->done = 1;
    close_fd(o);
    if (o->index >= 0)
      sonde_privsep_discard(o->index);
  }
  close_fd(o);
  free(o->buf);
  o->buf = NULL;
  return 0;
}

/* The state's hold on privsep's table of outputs (sonde_privsep_state),
 * let go when the state closes. */
static int l_state_gc(lua_State *L) {
  (void)L;
  sonde_privsep_state(0);
  return 0;
}

void sonde__output_init(lua_State *L) {
  static const luaL_Reg methods[] = {{"write", l_write},
                                     {"flush", l_flush},
                                     {"commit", l_commit},
                                     {"abort", l_abort},
                                     {NULL, NULL}};
  sonde__lua_metatable(L, OUTPUT_MT, methods, l_gc, NULL);
  /* a userdata kept in the registry: collected only when the state closes */
  lua_newuserdata(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "sonde.output.state");
  sonde_privsep_state(1);
}

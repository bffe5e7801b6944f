/*
 * tty.c - the terminal on standard input, for live views: raw mode, key
 * presses as callbacks, the window size and its changes (SIGWINCH), all
 * on the engine's loop through libuv's uv_tty_t. Lua never sees a
 * descriptor: the reader is the terminal of fd 0, or nothing.
 *
 * Ownership: the reader's handles live in one block that the engine lists
 * (lowned_t) and that is freed in the last close callback. Whoever closes
 * first - reader:close(), the reader's __gc, or the engine's close - puts
 * the terminal back in the mode it had and closes both handles, once; the
 * others then find nothing to do. The mode is also put back at process exit
 * for a way out that closes nothing (os.exit).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"

#define TTY_MT "sonde.tty"

typedef struct ltty ltty_t;

typedef struct tty tty_t;

struct tty {
  lowned_t owned;  /* the engine's list */
  tty_t *next_raw, *prev_raw; /* the readers in raw mode, for exit */
  lengine_t *le;
  ltty_t *holder;  /* the Lua userdata, NULL once it let go */
  uv_tty_t tty;
  uv_signal_t winch;
  int tty_init, winch_init; /* which handles exist (and must be closed) */
  int closing;     /* close callbacks still to come; -1 before closing */
  int raw;         /* raw mode set: to be put back */
  int fd_flags, fl_flags; /* fd 0's FD_ and O_ flags before, -1 unknown */
  int key_ref, resize_ref;
  char buf[256];
};

/* The Lua userdata: a pointer to the block while it holds it. */
struct ltty {
  tty_t *t;
};

/* Every reader whose terminal is in raw mode (list head). */
static tty_t raw_readers = {.next_raw = &raw_readers, .prev_raw = &raw_readers};

static void set_raw(tty_t *t) {
  t->raw = 1;
  t->next_raw = &raw_readers;
  t->prev_raw = raw_readers.prev_raw;
  raw_readers.prev_raw->next_raw = t;
  raw_readers.prev_raw = t;
}

static void set_normal(tty_t *t) {
  if (!t->raw)
    return;
  uv_tty_set_mode(&t->tty, UV_TTY_MODE_NORMAL);
  t->raw = 0;
  t->next_raw->prev_raw = t->prev_raw;
  t->prev_raw->next_raw = t->next_raw;
  t->next_raw = t->prev_raw = t;
}

static void tty_free_if_closed(tty_t *t) {
  if (t->closing == 0) {
    sonde__lua_engine_detach(&t->owned);
    free(t);
  }
}

static void on_closed(uv_handle_t *h) {
  tty_t *t = h->data;
  t->closing--;
  tty_free_if_closed(t);
}

/*
 * At exit, each reader still in raw mode puts its terminal back through
 * its own handle. Not uv_tty_reset_mode(): libuv remembers the descriptor
 * of the first handle it ever put in raw mode, which is closed once that
 * reader is, and whose number another file may have taken since.
 */
static void reset_at_exit(void) {
  while (raw_readers.next_raw != &raw_readers)
    set_normal(raw_readers.next_raw);
}

/*
 * uv_tty_init reopens the terminal (ttyname_r, then open) so that its
 * O_NONBLOCK stays private to this process, and dup2()s the new
 * description onto fd 0 with FD_CLOEXEC (libuv's uv__dup2_cloexec). After
 * the reader, standard input would stay non-blocking and would not reach
 * a child process: its flags are put back as they were.
 */
static void restore_stdin(tty_t *t) {
  if (t->fd_flags >= 0)
    fcntl(0, F_SETFD, t->fd_flags);
  if (t->fl_flags >= 0)
    fcntl(0, F_SETFL, t->fl_flags);
}

/* Put the mode back, drop the callbacks, close the handles: once. L may be
 * NULL only if no callback was ever referenced. */
static void tty_close(tty_t *t, lua_State *L) {
  if (t->closing >= 0)
    return;
  t->closing = 0;
  if (t->holder != NULL) {
    t->holder->t = NULL;
    t->holder = NULL;
  }
  if (L != NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, t->key_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->resize_ref);
  }
  t->key_ref = t->resize_ref = LUA_NOREF;
  set_normal(t);
  if (t->tty_init) {
    t->closing++;
    uv_close((uv_handle_t *)&t->tty, on_closed);
  }
  if (t->winch_init) {
    t->closing++;
    uv_close((uv_handle_t *)&t->winch, on_closed);
  }
  restore_stdin(t);
  tty_free_if_closed(t);
}

static void owned_close(lowned_t *o, lua_State *L) {
  tty_close((tty_t *)o, L);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tty_t *t = h->data;
  buf->base = t->buf;
  buf->len = sizeof(t->buf);
}

/* Keys: on_key(bytes); the end of input or a read error: on_key(nil,
 * "ENAME: message", "ENAME") once, and reading stops. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tty_t *t = s->data;
  lua_State *L;
  if (nread == 0)
    return;
  if (nread < 0)
    uv_read_stop(s);
  L = sonde__lua_engine_callback(t->le, t->key_ref);
  if (L == NULL)
    return;
  if (nread > 0) {
    lua_pushlstring(L, buf->base, (size_t)nread);
    sonde__lua_engine_call(t->le, 1);
    return;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name((int)nread),
                  uv_strerror((int)nread));
  lua_pushstring(L, uv_err_name((int)nread));
  sonde__lua_engine_call(t->le, 3);
}

/* Push columns, rows of the terminal; or nil, message, name. */
static int push_winsize(lua_State *L, tty_t *t) {
  int cols, rows, r = uv_tty_get_winsize(&t->tty, &cols, &rows);
  if (r < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", uv_err_name(r), uv_strerror(r));
    lua_pushstring(L, uv_err_name(r));
    return 3;
  }
  lua_pushinteger(L, cols);
  lua_pushinteger(L, rows);
  return 2;
}

static void on_winch(uv_signal_t *h, int signum) {
  tty_t *t = h->data;
  lua_State *L = sonde__lua_engine_callback(t->le, t->resize_ref);
  if (L != NULL)
    sonde__lua_engine_call(t->le, push_winsize(L, t));
}

/* A reference to the function in field k of the options (checked before),
 * or LUA_NOREF. */
static int opt_callback(lua_State *L, const char *k) {
  lua_getfield(L, 2, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int fail(lua_State *L, int status) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(status), uv_strerror(status));
  lua_pushstring(L, uv_err_name(status));
  return 3;
}

/*
 * e:tty{ on_key = fn(bytes), on_resize = fn(columns, rows) } -> reader:
 * puts the terminal on standard input in raw mode (no echo, no line
 * editing, and no signal keys: Ctrl-C arrives as the byte "\3") and calls
 * on_key with what is typed, on_resize when the window changes size. The
 * reader does not keep e:run() going. It ends with reader:close(), the
 * engine's close, or garbage collection; each puts the terminal back.
 * Returns nil, "ENOTTY: ...", "ENOTTY" when standard input is not a
 * terminal, or another libuv error the same way.
 */
int sonde__lua_tty(lua_State *L) {
  static const char *const fields[] = {"on_key", "on_resize", NULL};
  static int reset_registered;
  lengine_t *le = sonde__lua_check_engine(L, 1);
  ltty_t *ud;
  tty_t *t;
  int r;

  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, fields[0]) != 0 && strcmp(k, fields[1]) != 0)
      return luaL_error(L, "tty: unknown field '%s'",
                        *k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
  /* Every check that raises comes before anything is held. */
  lua_getfield(L, 2, "on_key");
  lua_getfield(L, 2, "on_resize");
  if (!lua_isnil(L, -2) && lua_type(L, -2) != LUA_TFUNCTION)
    return luaL_error(L, "tty: field 'on_key' must be a function (got %s)",
                      luaL_typename(L, -2));
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TFUNCTION)
    return luaL_error(L, "tty: field 'on_resize' must be a function (got %s)",
                      luaL_typename(L, -1));
  lua_pop(L, 2);

  /* The userdata first, holding nothing, its metatable attached: only then
   * is anything acquired. */
  ud = lua_newuserdata(L, sizeof(*ud));
  ud->t = NULL;
  luaL_getmetatable(L, TTY_MT);
  lua_setmetatable(L, -2);
  if (!isatty(0))
    return fail(L, UV_ENOTTY);
  t = calloc(1, sizeof(*t));
  if (t == NULL)
    return fail(L, UV_ENOMEM);
  t->le = le;
  t->closing = -1;
  t->fd_flags = fcntl(0, F_GETFD);
  t->fl_flags = fcntl(0, F_GETFL);
  t->key_ref = t->resize_ref = LUA_NOREF;
  t->owned.close = owned_close;
  sonde__lua_engine_attach(le, &t->owned);
  t->holder = ud;
  ud->t = t;
  t->key_ref = opt_callback(L, "on_key");
  t->resize_ref = opt_callback(L, "on_resize");

  r = uv_tty_init(sonde__lua_engine_loop(le), &t->tty, 0, 1);
  if (r < 0)
    goto failed;
  t->tty_init = 1;
  t->tty.data = t;
  r = uv_signal_init(sonde__lua_engine_loop(le), &t->winch);
  if (r < 0)
    goto failed;
  t->winch_init = 1;
  t->winch.data = t;
  if (!reset_registered && atexit(reset_at_exit) == 0)
    reset_registered = 1;
  r = uv_tty_set_mode(&t->tty, UV_TTY_MODE_RAW);
  if (r < 0)
    goto failed;
  set_raw(t);
  r = uv_read_start((uv_stream_t *)&t->tty, on_alloc, on_read);
  if (r < 0)
    goto failed;
  r = uv_signal_start(&t->winch, on_winch, SIGWINCH);
  if (r < 0)
    goto failed;
  /* Neither handle keeps the loop alive: the run ends with its work. */
  uv_unref((uv_handle_t *)&t->tty);
  uv_unref((uv_handle_t *)&t->winch);
  return 1;

failed:
  tty_close(t, L);
  return fail(L, r);
}

static ltty_t *check_tty(lua_State *L) {
  return luaL_checkudata(L, 1, TTY_MT);
}

/* reader:winsize() -> columns, rows; or nil, "ENAME: message", "ENAME". */
static int l_winsize(lua_State *L) {
  ltty_t *ud = check_tty(L);
  if (ud->t == NULL)
    return fail(L, UV_EBADF);
  return push_winsize(L, ud->t);
}

/* reader:close() -> true: the terminal back in its mode, the handles
 * closing. A second close is a soft error: nil, "tty already closed". */
static int l_close(lua_State *L) {
  ltty_t *ud = check_tty(L);
  if (ud->t == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "tty already closed");
    return 2;
  }
  tty_close(ud->t, L);
  lua_pushboolean(L, 1);
  return 1;
}

/* Only a reader that still holds its terminal lets it go. */
static int l_gc(lua_State *L) {
  ltty_t *ud = check_tty(L);
  if (ud->t != NULL)
    tty_close(ud->t, L);
  return 0;
}

static int l_tostring(lua_State *L) {
  ltty_t *ud = check_tty(L);
  lua_pushfstring(L, "sonde.tty (%s)", ud->t ? "open" : "closed");
  return 1;
}

/* The reader's metatable, made once when the module opens. */
void sonde__lua_tty_init(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"winsize", l_winsize}, {"close", l_close}, {NULL, NULL}};
  sonde__lua_metatable(L, TTY_MT, methods, l_gc, l_tostring);
}

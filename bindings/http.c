/*
 * http.c - core.http_listen(host, port): an HTTP server (libmicrohttpd)
 * that serves one text document, the Prometheus exposition that
 * `sonde watch` renders, at /metrics.
 *
 * How it meets the engine's loop: it does not. MHD runs its own thread
 * (MHD_USE_INTERNAL_POLLING_THREAD with poll()), and the loop hands it the
 * text through a snapshot behind a mutex: server:set(text) replaces the
 * snapshot (a reference-counted copy), a request takes a reference under
 * the mutex and MHD sends it and drops the reference when the response is
 * freed. The alternative, MHD in external-select mode driven by a
 * uv_poll_t per MHD socket and a uv_timer_t, would run request parsing
 * and the writes to slow readers on the loop that times the probes; here
 * the only work the loop does for HTTP is one copy per render, and a
 * client that sends garbage, sends one byte a minute or never reads its
 * answer costs the prober nothing. MHD's own limits bound what clients
 * can hold: a connection limit (MHD_OPTION_CONNECTION_LIMIT, beyond it a
 * new connection is closed at once), a per-address limit, an idle timeout
 * (MHD_OPTION_CONNECTION_TIMEOUT: a connection that sends or reads
 * nothing for that long is closed) and a memory limit per connection
 * (MHD_OPTION_CONNECTION_MEMORY_LIMIT: a request header beyond it is
 * answered 431 and closed).
 *
 * The listening socket is made here (SOCK_NONBLOCK | SOCK_CLOEXEC,
 * SO_REUSEADDR, bound, listening) before MHD exists, so that a command can
 * bind a port below 1024 while it still has the privileges to, and start
 * the server (a thread) once it has given them up. The socket belongs to
 * the server object until MHD_start_daemon succeeds, then to MHD, which
 * closes it in MHD_stop_daemon. No descriptor number reaches Lua.
 *
 *   local srv, err, name = core.http_listen("127.0.0.1", 9464)
 *   srv:address()          -> "127.0.0.1", 9464 (the port the kernel gave
 *                             for port 0)
 *   srv:start{ connection_limit = 64, per_ip_limit = 16, timeout = 10 }
 *                          -> true, or nil, "ENAME: message", "ENAME"
 *   srv:set(text)          -> the document served at /metrics from now on
 *   srv:stats()            -> { requests = n, served = n }
 *   srv:close()            -> true; a second close: nil, "server already
 *                             closed" (the thread is joined, every
 *                             connection closed)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"

#define HTTP_MT "sonde.http_server"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* One rendering of the document; freed when the last response that sends
 * it and the server have let it go. */
typedef struct snapshot {
  unsigned refs; /* under the server's mutex */
  size_t len;
  char data[];
} snapshot_t;

typedef struct server {
  int fd;                 /* the listening socket until MHD owns it; -1 */
  struct MHD_Daemon *mhd; /* NULL until started, and once stopped */
  int closed;
  pthread_mutex_t mu;
  snapshot_t *snap;       /* the current document, NULL before set() */
  unsigned long requests; /* every request MHD handed over */
  unsigned long served;   /* those answered with the document */
  struct sockaddr_storage addr;
  socklen_t addrlen;
} server_t;

static void snap_release(server_t *s, snapshot_t *p) {
  int last;
  if (!p)
    return;
  pthread_mutex_lock(&s->mu);
  last = --p->refs == 0;
  pthread_mutex_unlock(&s->mu);
  if (last)
    free(p);
}

/* A response's buffer is released by MHD (its thread) through this. The
 * server outlives every response: MHD_stop_daemon frees them first. */
typedef struct hold {
  server_t *s;
  snapshot_t *p;
} hold_t;

static void hold_free(void *cls) {
  hold_t *h = cls;
  snap_release(h->s, h->p);
  free(h);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code,
                                  const char *text) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret;
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; charset=utf-8");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

/* MHD's thread: GET or HEAD /metrics gets the current snapshot; / a line
 * that points there; anything else 404, other methods 405. A request body
 * is never read (GET and HEAD have none; other methods are refused before
 * it comes). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  server_t *s = cls;
  struct MHD_Response *r;
  hold_t *h;
  enum MHD_Result ret;
  pthread_mutex_lock(&s->mu);
  s->requests++;
  pthread_mutex_unlock(&s->mu);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
  if (strcmp(url, "/") == 0)
    return reply_text(c, MHD_HTTP_OK, "sonde watch: metrics at /metrics\n");
  if (strcmp(url, "/metrics") != 0)
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
  h = malloc(sizeof(*h));
  if (!h)
    return MHD_NO;
  h->s = s;
  pthread_mutex_lock(&s->mu);
  h->p = s->snap;
  if (h->p)
    h->p->refs++;
  s->served++;
  pthread_mutex_unlock(&s->mu);
  if (!h->p) {
    free(h);
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "no measurement yet\n");
  }
  r = MHD_create_response_from_buffer_with_free_callback_cls(
      h->p->len, h->p->data, hold_free, h);
  if (!r) {
    hold_free(h);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
  ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

static server_t *check_server(lua_State *L) {
  return luaL_checkudata(L, 1, HTTP_MT);
}

static server_t *open_server(lua_State *L) {
  server_t *s = check_server(L);
  if (s->closed)
    luaL_error(L, "http server already closed");
  return s;
}

/* core.http_listen(host, port) -> server, or nil, "ENAME: message",
 * "ENAME". host is a numeric IPv4 or IPv6 address (no lookup: this may run
 * before the privileges are dropped); port 0 lets the kernel choose. */
static int l_http_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct sockaddr_in *a4;
  struct sockaddr_in6 *a6;
  server_t *s;
  int fd, one = 1;
  if (port < 0 || port > 65535)
    return luaL_argerror(L, 2, "port must be 0 .. 65535");
  s = lua_newuserdata(L, sizeof(*s));
  memset(s, 0, sizeof(*s));
  s->fd = -1;
  s->closed = 1; /* until the mutex exists */
  luaL_getmetatable(L, HTTP_MT);
  lua_setmetatable(L, -2);
  a4 = (struct sockaddr_in *)&s->addr;
  a6 = (struct sockaddr_in6 *)&s->addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    s->addrlen = sizeof(*a4);
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    s->addrlen = sizeof(*a6);
  } else {
    return luaL_argerror(L, 1, "not a numeric IPv4 or IPv6 address");
  }
  if (pthread_mutex_init(&s->mu, NULL) != 0)
    return luaL_error(L, "http_listen: cannot make a mutex");
  s->closed = 0;
  fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sonde__lua_fail(L, -errno);
  s->fd = fd;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (s->addr.ss_family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&s->addr, s->addrlen) < 0 ||
      listen(fd, 64) < 0) {
    int err = errno;
    close(s->fd);
    s->fd = -1;
    return sonde__lua_fail(L, -err);
  }
  s->addrlen = sizeof(s->addr);
  (void)getsockname(fd, (struct sockaddr *)&s->addr, &s->addrlen);
  return 1;
}

/* server:address() -> host, port (the bound ones). */
static int l_address(lua_State *L) {
  server_t *s = open_server(L);
  char buf[INET6_ADDRSTRLEN];
  if (s->addr.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(a->sin_port));
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->addr;
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    lua_pushstring(L, buf);
    lua_pushinteger(L, ntohs(a->sin6_port));
  }
  return 2;
}

static unsigned opt_uint(lua_State *L, int idx, const char *k, unsigned dflt,
                         unsigned lo, unsigned hi) {
  lua_Number v;
  if (lua_isnoneornil(L, idx))
    return dflt;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  if (!lua_isnumber(L, -1))
    luaL_error(L, "http server: %s must be a number", k);
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (v < lo || v > hi || v != (unsigned)v)
    luaL_error(L, "http server: %s must be an integer from %u to %u", k, lo,
               hi);
  return (unsigned)v;
}

/* MHD's messages (a client that broke the protocol, a full connection
 * table) are the clients' business, not the prober's output. */
static void quiet_log(void *cls, const char *fmt, va_list ap) {}

/* server:start{ connection_limit, per_ip_limit, timeout } -> true, or nil,
 * "ENAME: message", "ENAME". */
static int l_start(lua_State *L) {
  server_t *s = open_server(L);
  unsigned limit = opt_uint(L, 2, "connection_limit", 64, 1, 4096);
  unsigned per_ip = opt_uint(L, 2, "per_ip_limit", 16, 1, 4096);
  unsigned timeout = opt_uint(L, 2, "timeout", 10, 1, 3600);
  int fd = s->fd;
  if (s->mhd)
    return luaL_error(L, "http server already started");
  if (fd == -1)
    return luaL_error(L, "http server has no listening socket");
  s->mhd = MHD_start_daemon(
      MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      on_request, s, MHD_OPTION_EXTERNAL_LOGGER, quiet_log, NULL,
      MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, limit,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
      MHD_OPTION_CONNECTION_TIMEOUT, timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
  if (!s->mhd) {
    /* MHD may or may not have closed the socket it was given on the way
     * out; nothing else runs that could have reused the number (no thread
     * exists: the start failed), so fcntl tells which. */
    if (fcntl(fd, F_GETFD) != -1)
      close(fd);
    s->fd = -1;
    return sonde__lua_fail(L, -EIO);
  }
  s->fd = -1; /* MHD's now: MHD_stop_daemon closes it */
  lua_pushboolean(L, 1);
  return 1;
}

/* server:set(text): the document /metrics serves from now on (copied). */
static int l_set(lua_State *L) {
  server_t *s = open_server(L);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  snapshot_t *p = malloc(sizeof(*p) + len), *old;
  if (!p)
    return sonde__lua_fail(L, -ENOMEM);
  p->refs = 1;
  p->len = len;
  memcpy(p->data, text, len);
  pthread_mutex_lock(&s->mu);
  old = s->snap;
  s->snap = p;
  pthread_mutex_unlock(&s->mu);
  snap_release(s, old);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stats(lua_State *L) {
  server_t *s = open_server(L);
  unsigned long req, served;
  pthread_mutex_lock(&s->mu);
  req = s->requests;
  served = s->served;
  pthread_mutex_unlock(&s->mu);
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, (lua_Number)req);
  lua_setfield(L, -2, "requests");
  lua_pushnumber(L, (lua_Number)served);
  lua_setfield(L, -2, "served");
  return 1;
}

/* Stops the thread (every connection closed, every response freed), then
 * the socket if MHD never took it, then the snapshot. */
static void server_close(server_t *s) {
  if (s->closed)
    return;
  s->closed = 1;
  if (s->mhd) {
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
  }
  if (s->fd != -1) {
    close(s->fd);
    s->fd = -1;
  }
  snap_release(s, s->snap);
  s->snap = NULL;
  pthread_mutex_destroy(&s->mu);
}

static int l_close(lua_State *L) {
  server_t *s = check_server(L);
  if (s->closed) {
    lua_pushnil(L);
    lua_pushstring(L, "server already closed");
    return 2;
  }
  server_close(s);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  server_close(check_server(L));
  return 0;
}

int sonde__lua_http_listen(lua_State *L) { return l_http_listen(L); }

void sonde__lua_http_init(lua_State *L) {
  static const luaL_Reg methods[] = {{"address", l_address},
                                     {"start", l_start},
                                     {"set", l_set},
                                     {"stats", l_stats},
                                     {"close", l_close},
                                     {NULL, NULL}};
  luaL_newmetatable(L, HTTP_MT);
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/*
 * dns.c - e:resolve(host, family, fn): the addresses of a host name, by
 * getaddrinfo on libuv's thread pool (nsswitch as the system has it), the
 * answer given to fn on the loop. Reverse and TXT lookups are c-ares'
 * (ares.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"
#include "sonde.h"

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lreq_t *q = req->data;
  lengine_t *le = q->le;
  if (!q->done && sonde__lua_engine_callback(le, q->ref)) {
    lua_State *L = le->L;
    sonde__lua_unref(L, &q->ref);
    if (status < 0) {
      sonde__lua_uv_fail(L, status);
      sonde__lua_engine_call(le, 3);
    } else {
      struct addrinfo *ai;
      int n = 0;
      lua_newtable(L);
      for (ai = res; ai; ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        struct sockaddr_storage ss;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
          continue;
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        lua_pushstring(L, sonde_addr_format(&ss, buf, sizeof(buf)));
        lua_rawseti(L, -2, ++n);
      }
      sonde__lua_engine_call(le, 1);
    }
  }
  uv_freeaddrinfo(res);
  sonde__lua_unref(le->L, &q->ref);
  sonde__lua_req_free(q);
}

/* e:resolve(host, family (0|4|6), fn(addrs | nil, msg, name)): addresses
 * in the resolver's order, de-duplicated by the caller. */
/*
 * Name resolution runs on libuv's thread pool, and libuv abort()s the
 * process when it cannot start those threads (UV_THREADPOOL_SIZE of them,
 * default 4, with 8 MiB stacks each: a low `ulimit -v` is enough). Before
 * the first lookup, start as many such threads ourselves and end them: a
 * failure then is an error (ENOMEM, EAGAIN) for the caller to report.
 * -> 0 or a negative errno, decided once.
 */
static void *pool_probe(void *arg) { return arg; }

static int pool_can_start(void) {
  static int decided, result;
  pthread_t t[64];
  pthread_attr_t attr;
  const char *env = getenv("UV_THREADPOOL_SIZE");
  int n = env && atoi(env) > 0 ? atoi(env) : 4, i, started = 0, r = 0;
  if (decided)
    return result;
  if (n > 64)
    n = 64; /* enough to see that stacks of this size can be had */
  if (pthread_attr_init(&attr) != 0)
    return -ENOMEM;
  (void)pthread_attr_setstacksize(&attr, 8u << 20);
  for (i = 0; i < n && r == 0; i++) {
    r = -pthread_create(&t[i], &attr, pool_probe, NULL);
    if (r == 0)
      started++;
  }
  for (i = 0; i < started; i++)
    (void)pthread_join(t[i], NULL);
  pthread_attr_destroy(&attr);
  decided = 1;
  result = r;
  return r;
}

static int push_pool_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: cannot start the resolver's threads (%s; is ulimit -v "
                  "too low?)", sonde_err_name(err), sonde_strerror(err));
  lua_pushstring(L, sonde_err_name(err));
  return 3;
}

int sonde__lua_resolve(lua_State *L) {
  lengine_t *le = sonde__lua_check_engine(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int fam = (int)luaL_optinteger(L, 3, 0), r;
  struct addrinfo hints;
  lreq_t *q;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  if (fam != 0 && fam != 4 && fam != 6)
    return luaL_argerror(L, 3, "family must be 0, 4 or 6");
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = fam == 4 ? AF_INET : fam == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  if ((r = pool_can_start()) < 0)
    return push_pool_fail(L, r);
  q = sonde__lua_req_new(L, le, REQ_GAI, 4);
  q->u.gai.data = q;
  r = uv_getaddrinfo(&le->loop, &q->u.gai, on_gai, host, NULL, &hints);
  if (r < 0)
    return sonde__lua_req_abort(L, q, r);
  lua_pushboolean(L, 1);
  return 1;
}

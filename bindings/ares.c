/*
 * ares.c - e:reverse(addr, fn) and e:txt(name, fn): DNS lookups through
 * c-ares on the engine's own loop, for names (PTR) and origin AS numbers
 * (TXT) that arrive while probes are in flight.
 *
 * Why not getnameinfo on libuv's thread pool: each lookup holds one of its
 * (default 4) threads for the whole of the system resolver's timeout, so
 * with a DNS server that takes a second or two to answer the lookups queue
 * behind one another, and even names that /etc/hosts holds wait behind
 * them. c-ares runs every query at once on sockets of its own, with its own
 * timeout per try and its own number of tries; /etc/hosts is read first
 * (lookups "fb": file, then bind) and a name found there is answered
 * without touching the network. resolv.conf is honoured (servers, search,
 * "options timeout: attempts:"), unless e:resolver{} sets timeout or tries.
 *
 * Integration with the loop, as c-ares documents for event loops: its
 * sock_state_cb tells which sockets to watch (one uv_poll_t each, never
 * closing the fd, which c-ares owns and closes), and one uv_timer_t fires
 * at ares_timeout() for retries and timeouts; both call ares_process_fd.
 *
 * Ownership: one resolver block per engine, created at the first lookup,
 * listed on the engine (lowned_t) and freed in the last close callback of
 * its handles. Answers are never delivered from inside the call that asked
 * (a /etc/hosts hit answers at once): they are queued and delivered from
 * a zero timer on the loop, as every other callback is.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"

/* c-ares statuses and the names Lua sees (nil, "ENAME: message", "ENAME"). */
#define ARES_STATUS_MAP(XX)                                                    \
  XX(ARES_ENODATA, "ENODATA")                                                  \
  XX(ARES_EFORMERR, "EFORMERR")                                                \
  XX(ARES_ESERVFAIL, "ESERVFAIL")                                              \
  XX(ARES_ENOTFOUND, "ENOTFOUND")                                              \
  XX(ARES_ENOTIMP, "ENOTIMP")                                                  \
  XX(ARES_EREFUSED, "EREFUSED")                                                \
  XX(ARES_EBADQUERY, "EBADQUERY")                                              \
  XX(ARES_EBADNAME, "EBADNAME")                                                \
  XX(ARES_EBADFAMILY, "EAFNOSUPPORT")                                          \
  XX(ARES_EBADRESP, "EBADRESP")                                                \
  XX(ARES_ECONNREFUSED, "ECONNREFUSED")                                        \
  XX(ARES_ETIMEOUT, "ETIMEDOUT")                                               \
  XX(ARES_EOF, "EOF")                                                          \
  XX(ARES_EFILE, "EFILE")                                                      \
  XX(ARES_ENOMEM, "ENOMEM")                                                    \
  XX(ARES_EDESTRUCTION, "ECANCELED")                                           \
  XX(ARES_ECANCELLED, "ECANCELED")

static const char *status_name(int status) {
  switch (status) {
#define XX(code, name)                                                         \
  case code:                                                                   \
    return name;
    ARES_STATUS_MAP(XX)
#undef XX
  default:
    return "EAI_FAIL";
  }
}

typedef struct resolver resolver_t;
typedef struct query query_t;
typedef struct watch watch_t;

/* One socket c-ares asked us to watch. */
struct watch {
  watch_t *next;
  resolver_t *r;
  ares_socket_t fd;
  uv_poll_t poll;
};

enum { Q_PTR, Q_TXT };

/* One lookup: the Lua callback, then (once answered) what to give it. */
struct query {
  llink_t link; /* first: on its resolver's list */
  resolver_t *r;
  int kind, ref;
  int answered, status;
  char *text;      /* Q_PTR: the name */
  char **strings;  /* Q_TXT: the TXT strings, n of them */
  int n;
};

struct resolver {
  lowned_t owned;
  lengine_t *le;
  ares_channel channel;
  int channel_init;
  uv_timer_t timer;   /* c-ares' timeouts and retries */
  uv_timer_t deliver; /* answers to Lua, from the loop */
  int handles;        /* handles still to close (timer, deliver, polls) */
  int closing;
  watch_t *watches;
  llink_t queries;    /* list head (query_t): asked, answer not yet given
                         to Lua */
};

static void query_free(query_t *q) {
  int i;
  sonde__lua_list_remove(&q->link);
  free(q->text);
  for (i = 0; i < q->n; i++)
    free(q->strings[i]);
  free(q->strings);
  free(q);
}

static void handle_closed(uv_handle_t *h) {
  resolver_t *r = h->data;
  if (--r->handles == 0) {
    sonde__lua_engine_detach(&r->owned);
    free(r);
  }
}

static void watch_closed(uv_handle_t *h) {
  watch_t *w = h->data;
  resolver_t *r = w->r;
  free(w);
  if (--r->handles == 0) {
    sonde__lua_engine_detach(&r->owned);
    free(r);
  }
}

/* The c-ares timer: the next timeout or retry, or nothing pending. */
static void on_timer(uv_timer_t *t);

static void arm_timer(resolver_t *r) {
  struct timeval tv, *tvp;
  if (r->closing || !r->channel_init)
    return;
  tvp = ares_timeout(r->channel, NULL, &tv);
  if (tvp == NULL) {
    uv_timer_stop(&r->timer);
    return;
  }
  uv_timer_start(&r->timer, on_timer,
                 (uint64_t)tvp->tv_sec * 1000 + (uint64_t)(tvp->tv_usec + 999) / 1000, 0);
}

static void on_timer(uv_timer_t *t) {
  resolver_t *r = t->data;
  ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  arm_timer(r);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  watch_t *w = p->data;
  resolver_t *r = w->r;
  ares_socket_t fd = w->fd;
  /* An error on the socket (POLLERR): let c-ares read it and see it. */
  if (status < 0)
    events = UV_READABLE | UV_WRITABLE;
  ares_process_fd(r->channel, (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                  (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
  arm_timer(r);
}

/* c-ares: watch fd for reading and/or writing, or (both 0) no longer;
 * called before c-ares closes the socket. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable) {
  resolver_t *r = data;
  watch_t *w, **pw;
  for (pw = &r->watches; (w = *pw) != NULL; pw = &w->next)
    if (w->fd == fd)
      break;
  if (!readable && !writable) {
    if (w) {
      *pw = w->next;
      uv_poll_stop(&w->poll);
      uv_close((uv_handle_t *)&w->poll, watch_closed);
    }
    return;
  }
  if (w == NULL) {
    w = calloc(1, sizeof(*w));
    if (w == NULL)
      return; /* the query then times out: ETIMEDOUT, named */
    w->r = r;
    w->fd = fd;
    if (uv_poll_init_socket(sonde__lua_engine_loop(r->le), &w->poll, fd) < 0) {
      free(w);
      return;
    }
    w->poll.data = w;
    w->next = r->watches;
    r->watches = w;
    r->handles++;
  }
  uv_poll_start(&w->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                on_poll);
}

/* Give every answered query's answer to its Lua callback:
 * Q_PTR fn(name) or fn(nil, msg, ENAME); Q_TXT fn({strings}) or the same. */
static void on_deliver(uv_timer_t *t) {
  resolver_t *r = t->data;
  lengine_t *le = r->le;
  llink_t *l, *next;
  for (l = r->queries.next; l != &r->queries; l = next) {
    query_t *q = (query_t *)l;
    lua_State *L;
    next = l->next;
    if (!q->answered)
      continue;
    if (q->ref != LUA_NOREF && (L = sonde__lua_engine_callback(le, q->ref))) {
      int nargs = 1, i;
      sonde__lua_unref(L, &q->ref);
      if (q->status != ARES_SUCCESS) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", status_name(q->status), ares_strerror(q->status));
        lua_pushstring(L, status_name(q->status));
        nargs = 3;
      } else if (q->kind == Q_PTR) {
        lua_pushstring(L, q->text);
      } else {
        lua_createtable(L, q->n, 0);
        for (i = 0; i < q->n; i++) {
          lua_pushstring(L, q->strings[i]);
          lua_rawseti(L, -2, i + 1);
        }
      }
      /* the answer leaves the list before the call: the callback may ask
       * again, or fail (which stops the loop) */
      next = l->next;
      query_free(q);
      sonde__lua_engine_call(le, nargs);
      continue;
    }
    if (le->L)
      sonde__lua_unref(le->L, &q->ref);
    query_free(q);
  }
}

static void answered(query_t *q, int status) {
  resolver_t *r = q->r;
  q->answered = 1;
  q->status = status;
  if (!r->closing)
    uv_timer_start(&r->deliver, on_deliver, 0, 0);
}

static void on_host(void *arg, int status, int timeouts, struct hostent *h) {
  query_t *q = arg;
  (void)timeouts;
  if (q->r->closing)
    return; /* ares_destroy: the resolver frees the query */
  if (status == ARES_SUCCESS && (h == NULL || h->h_name == NULL || !*h->h_name))
    status = ARES_ENODATA;
  if (status == ARES_SUCCESS && (q->text = strdup(h->h_name)) == NULL)
    status = ARES_ENOMEM;
  answered(q, status);
}

static void on_txt(void *arg, int status, int timeouts, unsigned char *abuf, int alen) {
  query_t *q = arg;
  struct ares_txt_ext *txt = NULL, *t;
  (void)timeouts;
  if (q->r->closing)
    return;
  if (status == ARES_SUCCESS)
    status = ares_parse_txt_reply_ext(abuf, alen, &txt);
  if (status == ARES_SUCCESS) {
    int n = 0;
    for (t = txt; t; t = t->next)
      n++;
    q->strings = calloc(n ? n : 1, sizeof(char *));
    if (q->strings == NULL)
      status = ARES_ENOMEM;
    /* a record of several character-strings is one string, joined */
    for (t = txt; t && status == ARES_SUCCESS; t = t->next) {
      size_t len = t->length;
      char *s;
      if (!t->record_start && q->n > 0) {
        char *prev = q->strings[q->n - 1];
        size_t pl = strlen(prev);
        s = realloc(prev, pl + len + 1);
        if (s == NULL) {
          status = ARES_ENOMEM;
          break;
        }
        memcpy(s + pl, t->txt, len);
        s[pl + len] = '\0';
        q->strings[q->n - 1] = s;
        continue;
      }
      s = malloc(len + 1);
      if (s == NULL) {
        status = ARES_ENOMEM;
        break;
      }
      memcpy(s, t->txt, len);
      s[len] = '\0';
      q->strings[q->n++] = s;
    }
  }
  if (txt)
    ares_free_data(txt);
  answered(q, status);
}

static void channel_close(resolver_t *r) {
  if (r->channel_init) {
    r->channel_init = 0;
    ares_destroy(r->channel); /* pending queries end with ARES_EDESTRUCTION */
  }
}

/* The engine closes: stop everything, once. Queries still pending are
 * dropped with their callbacks (as the engine's other requests are). */
static void resolver_close(lowned_t *o, lua_State *L) {
  resolver_t *r = (resolver_t *)o;
  llink_t *l;
  if (r->closing)
    return;
  r->closing = 1;
  for (l = r->queries.next; l != &r->queries; l = l->next)
    sonde__lua_unref(L, &((query_t *)l)->ref);
  channel_close(r); /* closes its sockets: sock_state closes their polls */
  while (r->queries.next != &r->queries)
    query_free((query_t *)r->queries.next);
  uv_close((uv_handle_t *)&r->timer, handle_closed);
  uv_close((uv_handle_t *)&r->deliver, handle_closed);
}

/* The engine's resolver, created (and its channel initialised from
 * resolv.conf) at the first lookup. -> NULL with an error pushed. */
static resolver_t *get_resolver(lua_State *L, lengine_t *le, int *nret) {
  static int lib_init; /* ares_library_init: once, never undone */
  lowned_t *o;
  resolver_t *r;
  struct ares_options opts;
  int st;
  for (o = le->owned.next; o != &le->owned; o = o->next)
    if (o->close == resolver_close && !((resolver_t *)o)->closing)
      return (resolver_t *)o;
  if (!lib_init) {
    if ((st = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
      goto fail;
    lib_init = 1;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return luaL_error(L, "out of memory"), NULL;
  r->le = le;
  sonde__lua_list_init(&r->queries);
  r->owned.close = resolver_close;
  memset(&opts, 0, sizeof(opts));
  opts.sock_state_cb = sock_state;
  opts.sock_state_cb_data = r;
  opts.lookups = (char *)"fb"; /* /etc/hosts first, then DNS */
  st = ares_init_options(&r->channel, &opts, ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS);
  if (st != ARES_SUCCESS) {
    free(r);
    goto fail;
  }
  r->channel_init = 1;
  uv_timer_init(sonde__lua_engine_loop(le), &r->timer);
  uv_timer_init(sonde__lua_engine_loop(le), &r->deliver);
  r->timer.data = r->deliver.data = r;
  r->handles = 2;
  sonde__lua_engine_attach(le, &r->owned);
  return r;
fail:
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", status_name(st), ares_strerror(st));
  lua_pushstring(L, status_name(st));
  *nret = 3;
  return NULL;
}

static query_t *query_new(lua_State *L, resolver_t *r, int kind, int fn_idx) {
  query_t *q = calloc(1, sizeof(*q));
  if (q == NULL)
    luaL_error(L, "out of memory");
  q->r = r;
  q->kind = kind;
  lua_pushvalue(L, fn_idx);
  q->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sonde__lua_list_append(&r->queries, &q->link);
  return q;
}

/* e:reverse(addr, fn(name | nil, msg, ENAME)): the name of a numeric
 * address, from /etc/hosts if it is there, else by a PTR query. No name
 * is an error (ENOTFOUND, ENODATA), not the address back. -> true, or
 * nil, msg, ENAME when the resolver cannot start. */
int sonde__lua_reverse(lua_State *L) {
  lengine_t *le = sonde__lua_check_engine(L, 1);
  const char *addr = luaL_checkstring(L, 2);
  unsigned char buf[16];
  int af, len, nret = 0;
  resolver_t *r;
  query_t *q;
  if (inet_pton(AF_INET, addr, buf) == 1)
    af = AF_INET, len = 4;
  else if (inet_pton(AF_INET6, addr, buf) == 1)
    af = AF_INET6, len = 16;
  else
    return luaL_argerror(L, 2, "not a numeric IP address");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if ((r = get_resolver(L, le, &nret)) == NULL)
    return nret;
  q = query_new(L, r, Q_PTR, 3);
  ares_gethostbyaddr(r->channel, buf, len, af, on_host, q);
  arm_timer(r);
  lua_pushboolean(L, 1);
  return 1;
}

/* e:txt(name, fn({strings} | nil, msg, ENAME)): the TXT records of name
 * (each record's character-strings joined), by a DNS query. */
int sonde__lua_txt(lua_State *L) {
  lengine_t *le = sonde__lua_check_engine(L, 1);
  const char *name = luaL_checkstring(L, 2);
  int nret = 0;
  resolver_t *r;
  query_t *q;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if ((r = get_resolver(L, le, &nret)) == NULL)
    return nret;
  q = query_new(L, r, Q_TXT, 3);
  ares_query(r->channel, name, 1 /* C_IN */, 16 /* T_TXT */, on_txt, q);
  arm_timer(r);
  lua_pushboolean(L, 1);
  return 1;
}

/* e:resolver{timeout = seconds, tries = n}: the per-try timeout and the
 * number of tries of the engine's DNS queries (otherwise resolv.conf's
 * "options timeout: attempts:", or c-ares' defaults). Before the first
 * lookup only: -> true, or nil, msg, ENAME. */
int sonde__lua_resolver(lua_State *L) {
  lengine_t *le = sonde__lua_check_engine(L, 1);
  lowned_t *o;
  resolver_t *r;
  struct ares_options opts;
  int mask = 0, st, nret = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  memset(&opts, 0, sizeof(opts));
  lua_getfield(L, 2, "timeout");
  if (!lua_isnil(L, -1)) {
    lua_Number t = luaL_checknumber(L, -1);
    if (!(t >= 0.001 && t <= 600))
      return luaL_error(L, "resolver: timeout must be from 0.001 to 600 seconds");
    opts.timeout = (int)(t * 1000 + 0.5);
    mask |= ARES_OPT_TIMEOUTMS;
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "tries");
  if (!lua_isnil(L, -1)) {
    lua_Integer n = luaL_checkinteger(L, -1);
    if (n < 1 || n > 20)
      return luaL_error(L, "resolver: tries must be from 1 to 20");
    opts.tries = (int)n;
    mask |= ARES_OPT_TRIES;
  }
  lua_pop(L, 1);
  for (o = le->owned.next; o != &le->owned; o = o->next)
    if (o->close == resolver_close && !((resolver_t *)o)->closing)
      return luaL_error(L, "resolver: set before the first lookup");
  if ((r = get_resolver(L, le, &nret)) == NULL)
    return nret;
  if (mask) {
    /* a channel with these options replaces the first (nothing is asked yet) */
    ares_channel ch;
    opts.sock_state_cb = sock_state;
    opts.sock_state_cb_data = r;
    opts.lookups = (char *)"fb";
    st = ares_init_options(&ch, &opts, mask | ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS);
    if (st != ARES_SUCCESS) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", status_name(st), ares_strerror(st));
      lua_pushstring(L, status_name(st));
      return 3;
    }
    ares_destroy(r->channel);
    r->channel = ch;
  }
  lua_pushboolean(L, 1);
  return 1;
}

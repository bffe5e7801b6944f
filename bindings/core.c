/*
 * core.c - the Lua module `sonde.core`: the engine, timers, name
 * resolution and signals for Lua. It converts; it adds no policy.
 *
 * Callbacks into Lua run only inside e:run() and e:close(), on the Lua
 * thread that called them, each through one protected call. An error in a
 * callback stops the loop and e:run() returns it (nil, message): it is never
 * swallowed. Misuse (a wrong type, an unknown field) raises a Lua error that
 * names the field; runtime failures return nil, "ENAME: message", "ENAME".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "luajit.h"

#include "lcore.h"
#include "lpacket.h"
#include "guard.h"
#include "output.h"
#include "privsep.h"
#include "sonde.h"

#define ENGINE_MT "sonde.engine"

/* Something of the binding's own that holds a uv handle or request and a
 * Lua callback: timers, signals, resolver requests. */
typedef struct lreq lreq_t;
typedef struct lengine lengine_t;

struct lreq {
  lreq_t *next, *prev;
  lengine_t *le;
  int ref;     /* the Lua callback */
  int kind;    /* REQ_* */
  int done;    /* the callback ran, or the request was cancelled */
  uint64_t token;
  int signum;  /* REQ_SIGNAL: the signal watched */
  union {
    uv_handle_t handle;
    uv_timer_t timer;
    uv_signal_t signal;
    uv_getaddrinfo_t gai;
    uv_getnameinfo_t gni;
  } u;
};

enum { REQ_TIMER, REQ_SIGNAL, REQ_GAI, REQ_GNI };

struct lengine {
  sonde_engine_t *eng; /* NULL once closed */
  uv_loop_t loop;
  int loop_init;
  lua_State *L;        /* the running thread, inside run()/close() only */
  int err_ref;         /* first callback error, LUA_NOREF if none */
  int engine_closed;   /* sonde_engine_close's callback ran */
  lreq_t reqs;         /* list head */
  lowned_t owned;      /* other files' resources on the loop (lcore.h) */
  uint64_t next_token;
};

/* --- errors ---------------------------------------------------------------- */

/* nil, "ENAME: message", "ENAME" (luv's convention). */
static int push_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", sonde_err_name(err), sonde_strerror(err));
  lua_pushstring(L, sonde_err_name(err));
  return 3;
}

/* The same, for libuv's own errors (resolver: EAI_NONAME, ...). */
static int push_uv_fail(lua_State *L, int status) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(status), uv_strerror(status));
  lua_pushstring(L, uv_err_name(status));
  return 3;
}

static lengine_t *check_engine(lua_State *L, int idx) {
  lengine_t *le = luaL_checkudata(L, idx, ENGINE_MT);
  if (le->eng == NULL)
    luaL_error(L, "sonde engine is closed");
  return le;
}

/* --- calling back into Lua -------------------------------------------------- */

/* Message handler: a string error gets the traceback; any other error
 * object (a script's own error table) passes through unchanged. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL || lua_type(L, 1) != LUA_TSTRING)
    return 1;
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* Push the callback of ref (and release the ref) or return 0 if there is no
 * thread to call it on (garbage collection: nothing may run then). */
static int push_callback(lengine_t *le, int ref) {
  lua_State *L = le->L;
  if (L == NULL || ref == LUA_NOREF)
    return 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  return 1;
}

/* Call the function below nargs arguments on le->L, protected. The first
 * error stops the loop and is kept for run() to return. */
static void call_protected(lengine_t *le, int nargs) {
  lua_State *L = le->L;
  int base = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, 0, base) != 0) {
    if (le->err_ref == LUA_NOREF)
      le->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
    uv_stop(&le->loop);
  }
  lua_pop(L, 1); /* traceback */
}

/* The same path for the module's other files (lcore.h). */
lua_State *sonde__lua_engine_callback(lengine_t *le, int ref) {
  return push_callback(le, ref) ? le->L : NULL;
}

void sonde__lua_engine_call(lengine_t *le, int nargs) {
  call_protected(le, nargs);
}

static void unref(lengine_t *le, lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && L) {
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
  }
}

/* --- results ------------------------------------------------------------------ */

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Dotted-quad text of an IPv4 address into buf (at least 16 bytes), as
 * inet_ntop writes it, without its sprintf (one per reply adds up).
 * Returns the length. */
static size_t format_v4(const struct sockaddr_in *sin, char *buf) {
  const uint8_t *b = (const uint8_t *)&sin->sin_addr;
  char *o = buf;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (i > 0)
      *o++ = '.';
    if (v >= 100)
      *o++ = (char)('0' + v / 100);
    if (v >= 10)
      *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
  }
  return (size_t)(o - buf);
}

/* Is the address known and specified (not 0.0.0.0 or ::)? A socket bound
 * to any address says nothing about the source. */
static int addr_known(const struct sockaddr_storage *ss) {
  static const uint8_t zero[16];
  if (ss->ss_family == AF_INET)
    return ((const struct sockaddr_in *)ss)->sin_addr.s_addr != 0;
  if (ss->ss_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) != 0;
  return 0;
}

/* An address field, left out when unknown or unspecified. */
static void set_addr(lua_State *L, const char *k,
                     const struct sockaddr_storage *ss) {
  char buf[INET6_ADDRSTRLEN];
  if (!addr_known(ss))
    return;
  if (ss->ss_family == AF_INET)
    lua_pushlstring(L, buf, format_v4((const struct sockaddr_in *)ss, buf));
  else
    lua_pushstring(L, sonde_addr_format(ss, buf, sizeof(buf)));
  lua_setfield(L, -2, k);
}

/* How many fields push_result sets: the table is made that size, not
 * larger (traces keep every result until they are written). */
static int result_fields(const sonde_result_t *r) {
  int n = 4; /* id, status, ttl, seq */
  if (r->status == SONDE_STATUS_REPLY)
    n += 1 + (r->kind == SONDE_KIND_DEST_UNREACHABLE);
  n += addr_known(&r->addr) + addr_known(&r->src);
  n += (r->rtt >= 0) + (r->reply_ttl >= 0) + 2 * (r->icmp_type >= 0) +
       (r->quoted_ttl >= 0) + (r->mtu > 0);
  n += 2 * (r->sport || r->dport) + 2 * (r->echo_id || r->echo_seq);
  n += (r->attempts > 1) + (r->connected != 0) + (r->response >= 0) +
       (r->received != 0) + (r->matched != 0) + (r->error != 0) +
       (r->n_mpls > 0);
  n += (r->ip_id != 0) + (r->df >= 0) + (r->flow_label >= 0);
  return n;
}

/* The result table: the outcome vocabulary of DESIGN.md. */
static void push_result(lua_State *L, uint64_t id, const sonde_result_t *r) {
  int i;
  lua_createtable(L, 0, result_fields(r));
  set_int(L, "id", (lua_Integer)id);
  set_str(L, "status", sonde_status_name(r->status));
  if (r->status == SONDE_STATUS_REPLY) {
    set_str(L, "kind", sonde_kind_name(r->kind));
    if (r->kind == SONDE_KIND_DEST_UNREACHABLE)
      set_str(L, "code", sonde_unreach_name(r->unreach));
  }
  set_addr(L, "addr", &r->addr);
  set_addr(L, "src", &r->src);
  if (r->rtt >= 0) {
    lua_pushnumber(L, r->rtt);
    lua_setfield(L, -2, "rtt");
  }
  set_int(L, "ttl", r->ttl);
  if (r->reply_ttl >= 0)
    set_int(L, "reply_ttl", r->reply_ttl);
  if (r->icmp_type >= 0) {
    set_int(L, "icmp_type", r->icmp_type);
    set_int(L, "icmp_code", r->icmp_code);
  }
  if (r->quoted_ttl >= 0)
    set_int(L, "quoted_ttl", r->quoted_ttl);
  if (r->mtu > 0)
    set_int(L, "mtu", r->mtu);
  set_int(L, "seq", r->seq);
  if (r->sport || r->dport) {
    set_int(L, "sport", r->sport);
    set_int(L, "dport", r->dport);
  }
  if (r->echo_id || r->echo_seq) {
    set_int(L, "icmp_id", r->echo_id);
    set_int(L, "icmp_seq", r->echo_seq);
  }
  if (r->attempts > 1)
    set_int(L, "attempts", r->attempts);
  if (r->connected) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "connected");
  }
  if (r->response >= 0) {
    lua_pushnumber(L, r->response);
    lua_setfield(L, -2, "response");
  }
  if (r->received)
    set_int(L, "received", (lua_Integer)r->received);
  if (r->matched) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "matched");
  }
  if (r->ip_id)
    set_int(L, "ip_id", r->ip_id);
  if (r->df >= 0) {
    lua_pushboolean(L, r->df);
    lua_setfield(L, -2, "df");
  }
  if (r->flow_label >= 0)
    set_int(L, "flow_label", r->flow_label);
  if (r->error) {
    lua_createtable(L, 0, 3);
    set_str(L, "name", sonde_err_name(r->error));
    set_str(L, "message", sonde_strerror(r->error));
    if (r->call)
      set_str(L, "call", r->call);
    lua_setfield(L, -2, "error");
  }
  if (r->n_mpls == 0)
    return;
  lua_createtable(L, r->n_mpls, 0);
  for (i = 0; i < r->n_mpls; i++) {
    lua_createtable(L, 0, 4);
    set_int(L, "label", r->mpls[i].label);
    set_int(L, "exp", r->mpls[i].exp);
    lua_pushboolean(L, r->mpls[i].s);
    lua_setfield(L, -2, "s");
    set_int(L, "ttl", r->mpls[i].ttl);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "mpls");
}

/* --- option tables --------------------------------------------------------- */

/* Every key of the table at idx must be in allowed (NULL-terminated). */
static void check_fields(lua_State *L, int idx, const char *what,
                         const char *const *allowed) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    const char *const *a = allowed;
    while (k && *a && strcmp(*a, k) != 0)
      a++;
    if (k == NULL || *a == NULL)
      luaL_error(L, "%s: unknown field '%s'", what,
                 k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

static double opt_number(lua_State *L, int idx, const char *what,
                         const char *k, double def, double min, double max) {
  double v;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "%s: field '%s' must be a number (got %s)", what, k,
               luaL_typename(L, -1));
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (isnan(v) || v < min || v > max)
    luaL_error(L, "%s: field '%s' must be from %f to %f (got %f)", what, k,
               min, max, v);
  return v;
}

static long opt_int(lua_State *L, int idx, const char *what, const char *k,
                    long def, long min, long max) {
  double v = opt_number(L, idx, what, k, (double)def, (double)min, (double)max);
  if (v != floor(v))
    luaL_error(L, "%s: field '%s' must be an integer (got %f)", what, k, v);
  return (long)v;
}

static int opt_choice(lua_State *L, int idx, const char *what, const char *k,
                      const char *const *names, int def) {
  int i;
  const char *s;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  s = lua_tostring(L, -1);
  for (i = 0; s && names[i]; i++)
    if (strcmp(names[i], s) == 0) {
      lua_pop(L, 1);
      return i;
    }
  return luaL_error(L, "%s: field '%s' has an invalid value '%s'", what, k,
                    s ? s : luaL_typename(L, -1));
}

/* --- the engine ------------------------------------------------------------ */

static void engine_closed(sonde_engine_t *eng, void *data) {
  ((lengine_t *)data)->engine_closed = 1;
}

static int l_engine(lua_State *L) {
  static const char *const fields[] = {"rate", "window", "wait", "icmp_id",
                                       "privileged", "send_thread", NULL};
  static const char *const privs[] = {"auto", "raw", "unprivileged", NULL};
  sonde_engine_opts_t opts;
  lengine_t *le;
  int r;

  memset(&opts, 0, sizeof(opts));
  /* Nothing probes before the process has given up its privileges: the
   * CLI drops them once it has opened what the command line names. */
  if (sonde_privsep_pending()) {
    lua_pushnil(L);
    lua_pushliteral(L, "EPERM: no engine before sonde.core.drop_privileges()");
    lua_pushliteral(L, "EPERM");
    return 3;
  }
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    check_fields(L, 1, "engine", fields);
    opts.rate = opt_number(L, 1, "engine", "rate", 0, 0, 1e9);
    opts.window = (int)opt_int(L, 1, "engine", "window", 0, 0, 1 << 20);
    opts.wait = opt_number(L, 1, "engine", "wait", 0, 0, 3600);
    opts.echo_id = (uint16_t)opt_int(L, 1, "engine", "icmp_id", 0, 0, 65535);
    opts.priv = (sonde_priv_t)opt_choice(L, 1, "engine", "privileged", privs,
                                         SONDE_PRIV_AUTO);
    lua_getfield(L, 1, "send_thread");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
      luaL_error(L, "engine: field 'send_thread' must be a boolean (got %s)",
                 luaL_typename(L, -1));
    opts.send_thread = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  /* Userdata first, every field invalid, metatable attached: only then is
   * anything acquired, so __gc always finds a consistent state. */
  le = lua_newuserdata(L, sizeof(*le));
  memset(le, 0, sizeof(*le));
  le->err_ref = LUA_NOREF;
  le->reqs.next = le->reqs.prev = &le->reqs;
  le->owned.next = le->owned.prev = &le->owned;
  luaL_getmetatable(L, ENGINE_MT);
  lua_setmetatable(L, -2);
  r = uv_loop_init(&le->loop);
  if (r < 0)
    return push_uv_fail(L, r);
  le->loop_init = 1;
  /* Callbacks find their engine through the loop (userdata never moves). */
  uv_loop_set_data(&le->loop, le);
  r = sonde_engine_new(&le->loop, &opts, &le->eng);
  if (r < 0)
    return push_fail(L, r);
  return 1;
}

static void on_result(sonde_engine_t *eng, uint64_t id,
                      const sonde_result_t *res, void *data) {
  lengine_t *le = uv_loop_get_data(sonde_engine_loop(eng));
  int ref = (int)(intptr_t)data;
  if (push_callback(le, ref)) {
    unref(le, le->L, &ref);
    push_result(le->L, id, res);
    call_protected(le, 1);
  }
}

/* A string field of the probe table (nil if absent); its bytes stay valid
 * while the table is on the stack. */
static const char *opt_string(lua_State *L, int idx, const char *k,
                              size_t *len) {
  const char *v;
  *len = 0;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "probe: field '%s' must be a string (got %s)", k,
               luaL_typename(L, -1));
  v = lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  return v;
}

static void spec_addr(lua_State *L, const char *k, struct sockaddr_storage *ss) {
  const char *s;
  lua_getfield(L, 2, k);
  s = lua_tostring(L, -1);
  if (s == NULL || lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "probe: field '%s' must be a numeric IP address string", k);
  if (sonde_addr_parse(s, 0, ss) < 0)
    luaL_error(L, "probe: field '%s' is not a numeric IPv4/IPv6 address: '%s'",
               k, s);
  lua_pop(L, 1);
}

/* The probe table read in one pass (lua_next), for the common case: every
 * field of the right type and in range. Returns 1 with *spec filled, or 0
 * (nothing raised, the stack as it was) for l_probe to read the table the
 * long way, which names the first problem exactly as it always has. */
enum {
  PF_DST, PF_PROTO, PF_TTL, PF_WAIT, PF_SPORT, PF_DPORT, PF_BIND, PF_SEQ,
  PF_SIZE, PF_ICMP_ID, PF_ICMP_SEQ, PF_PAYLOAD, PF_EXPECT, PF_TOS, PF_FILL,
  PF_CHECKSUM, PF_IP_ID, PF_DF, PF_FLOW_LABEL, PF_N
};

static int probe_field(const char *k, size_t n) {
#define IS(s) (n == sizeof(s) - 1 && memcmp(k, s, n) == 0)
  switch (n) {
  case 2:
    return IS("df") ? PF_DF : -1;
  case 3:
    return IS("dst") ? PF_DST : IS("ttl") ? PF_TTL : IS("seq") ? PF_SEQ
         : IS("tos") ? PF_TOS : -1;
  case 4:
    return IS("wait") ? PF_WAIT : IS("size") ? PF_SIZE : IS("bind") ? PF_BIND
         : IS("fill") ? PF_FILL : -1;
  case 5:
    return IS("proto") ? PF_PROTO : IS("sport") ? PF_SPORT
         : IS("dport") ? PF_DPORT : IS("ip_id") ? PF_IP_ID : -1;
  case 6:
    return IS("expect") ? PF_EXPECT : -1;
  case 7:
    return IS("icmp_id") ? PF_ICMP_ID : IS("payload") ? PF_PAYLOAD : -1;
  case 8:
    return IS("icmp_seq") ? PF_ICMP_SEQ : IS("checksum") ? PF_CHECKSUM : -1;
  case 10:
    return IS("flow_label") ? PF_FLOW_LABEL : -1;
  default:
    return -1;
  }
#undef IS
}

typedef struct {
  int type;          /* LUA_TNIL when absent */
  double num;        /* a number, or a boolean as 0/1 */
  const char *str;   /* anchored by the probe table, on the stack */
  size_t len;
} pfield_t;

/* An integer field in [min, max], or def when absent; -1 if it is not. */
static int fast_int(const pfield_t *f, double def, double min, double max,
                    double *out) {
  if (f->type == LUA_TNIL) {
    *out = def;
    return 0;
  }
  if (f->type != LUA_TNUMBER || isnan(f->num) || f->num < min ||
      f->num > max || f->num != floor(f->num))
    return -1;
  *out = f->num;
  return 0;
}

static int probe_spec_fast(lua_State *L, sonde_probe_spec_t *spec) {
  pfield_t f[PF_N];
  double v;
  int i;

  memset(f, 0, sizeof(f)); /* type 0 == LUA_TNIL */
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    size_t n = 0;
    const char *k = NULL;
    int t = lua_type(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING)
      k = lua_tolstring(L, -2, &n);
    if (k == NULL || (i = probe_field(k, n)) < 0 ||
        (t != LUA_TNUMBER && t != LUA_TSTRING && t != LUA_TBOOLEAN)) {
      lua_pop(L, 2);
      return 0;
    }
    f[i].type = t;
    if (t == LUA_TNUMBER)
      f[i].num = lua_tonumber(L, -1);
    else if (t == LUA_TBOOLEAN)
      f[i].num = lua_toboolean(L, -1);
    else
      f[i].str = lua_tolstring(L, -1, &f[i].len);
    lua_pop(L, 1);
  }
  memset(spec, 0, sizeof(*spec));
  if (f[PF_DST].type != LUA_TSTRING ||
      sonde_addr_parse(f[PF_DST].str, 0, &spec->dst) < 0)
    return 0;
  if (f[PF_PROTO].type != LUA_TSTRING)
    return 0;
  if (strcmp(f[PF_PROTO].str, "udp") == 0)
    spec->proto = SONDE_PROTO_UDP;
  else if (strcmp(f[PF_PROTO].str, "icmp") == 0)
    spec->proto = SONDE_PROTO_ICMP;
  else if (strcmp(f[PF_PROTO].str, "tcp") == 0)
    spec->proto = SONDE_PROTO_TCP;
  else
    return 0;
  if (fast_int(&f[PF_TTL], 64, 1, 255, &v) < 0)
    return 0;
  spec->ttl = (int)v;
  if (f[PF_WAIT].type != LUA_TNIL) {
    if (f[PF_WAIT].type != LUA_TNUMBER || isnan(f[PF_WAIT].num) ||
        f[PF_WAIT].num < 0 || f[PF_WAIT].num > 3600)
      return 0;
    spec->wait = f[PF_WAIT].num;
  }
  if (fast_int(&f[PF_SPORT], 0, 0, 65535, &v) < 0)
    return 0;
  spec->sport = (uint16_t)v;
  if (fast_int(&f[PF_DPORT], spec->proto == SONDE_PROTO_TCP ? 80 : 33434, 0,
               65535, &v) < 0)
    return 0;
  spec->dport = (uint16_t)v;
  if (f[PF_BIND].type == LUA_TSTRING) {
    if (strcmp(f[PF_BIND].str, "kernel") == 0)
      spec->bind = SONDE_BIND_KERNEL;
    else if (strcmp(f[PF_BIND].str, "sequence") == 0)
      spec->bind = SONDE_BIND_SEQUENCE;
    else if (strcmp(f[PF_BIND].str, "fixed") == 0)
      spec->bind = SONDE_BIND_FIXED;
    else
      return 0;
  } else if (f[PF_BIND].type != LUA_TNIL) {
    return 0;
  } else {
    spec->bind = SONDE_BIND_KERNEL;
  }
  if (fast_int(&f[PF_SEQ], 0, 0, 4294967295.0, &v) < 0)
    return 0;
  spec->seq = (uint32_t)v;
  if (fast_int(&f[PF_SIZE], 0, 0, 1400, &v) < 0)
    return 0;
  spec->size = (uint16_t)v;
  if (fast_int(&f[PF_ICMP_ID], 0, 0, 65535, &v) < 0)
    return 0;
  spec->echo_id = (uint16_t)v;
  if (fast_int(&f[PF_ICMP_SEQ], 0, 0, 65535, &v) < 0)
    return 0;
  spec->echo_seq = (uint16_t)v;
  if (fast_int(&f[PF_TOS], 0, 0, 255, &v) < 0)
    return 0;
  spec->tos = (uint8_t)v;
  if (fast_int(&f[PF_FILL], 0, 0, 255, &v) < 0)
    return 0;
  spec->fill = (uint8_t)v;
  if (f[PF_CHECKSUM].type != LUA_TNIL) {
    if (spec->proto == SONDE_PROTO_TCP ||
        fast_int(&f[PF_CHECKSUM], 1, 1, 65534, &v) < 0)
      return 0;
    spec->hold_checksum = 1;
    spec->checksum = (uint16_t)v;
  }
  if (fast_int(&f[PF_IP_ID], 0, 1, 65535, &v) < 0 ||
      (v != 0 && spec->dst.ss_family != AF_INET))
    return 0;
  spec->ip_id = (uint16_t)v;
  if (f[PF_DF].type == LUA_TBOOLEAN)
    spec->df = f[PF_DF].num != 0 ? SONDE_DF_SET : SONDE_DF_CLEAR;
  else if (f[PF_DF].type != LUA_TNIL)
    return 0;
  if (f[PF_FLOW_LABEL].type != LUA_TNIL) {
    if (spec->dst.ss_family != AF_INET6 ||
        fast_int(&f[PF_FLOW_LABEL], 0, 0, 0xfffff, &v) < 0)
      return 0;
    spec->has_flow_label = 1;
    spec->flow_label = (uint32_t)v;
  }
  for (i = PF_PAYLOAD; i <= PF_EXPECT; i++)
    if (f[i].type != LUA_TNIL &&
        (f[i].type != LUA_TSTRING || spec->proto != SONDE_PROTO_TCP))
      return 0;
  if (f[PF_PAYLOAD].str) {
    if (f[PF_PAYLOAD].len > 65536)
      return 0;
    spec->payload = (const uint8_t *)f[PF_PAYLOAD].str;
    spec->payload_len = f[PF_PAYLOAD].len;
  }
  if (f[PF_EXPECT].str) {
    if (f[PF_EXPECT].len > 2048)
      return 0;
    spec->expect = (const uint8_t *)f[PF_EXPECT].str;
    spec->expect_len = f[PF_EXPECT].len;
  }
  return 1;
}

/* The probe table read field by field, raising an error that names the
 * first field that is wrong. */
static void probe_spec_checked(lua_State *L, sonde_probe_spec_t *out) {
  static const char *const fields[] = {
      "dst", "proto", "ttl", "wait", "sport", "dport", "bind", "seq", "size",
      "icmp_id", "icmp_seq", "payload", "expect", "tos", "fill", "checksum",
      "ip_id", "df", "flow_label", NULL};
  static const char *const protos[] = {"", "icmp", "udp", "tcp", NULL};
  static const char *const binds[] = {"kernel", "sequence", "fixed", NULL};
  sonde_probe_spec_t spec;

  check_fields(L, 2, "probe", fields);
  memset(&spec, 0, sizeof(spec));
  spec_addr(L, "dst", &spec.dst);
  spec.proto = (sonde_proto_t)opt_choice(L, 2, "probe", "proto", protos, 0);
  if (spec.proto == 0)
    luaL_error(L, "probe: field 'proto' is required (icmp, udp or tcp)");
  spec.ttl = (int)opt_int(L, 2, "probe", "ttl", 64, 1, 255);
  spec.wait = opt_number(L, 2, "probe", "wait", 0, 0, 3600);
  spec.sport = (uint16_t)opt_int(L, 2, "probe", "sport", 0, 0, 65535);
  spec.dport = (uint16_t)opt_int(L, 2, "probe", "dport",
                                 spec.proto == SONDE_PROTO_TCP ? 80 : 33434, 0,
                                 65535);
  spec.bind = (sonde_bind_t)opt_choice(L, 2, "probe", "bind", binds,
                                       SONDE_BIND_KERNEL);
  spec.seq = (uint32_t)opt_int(L, 2, "probe", "seq", 0, 0, 4294967295.0);
  spec.size = (uint16_t)opt_int(L, 2, "probe", "size", 0, 0, 1400);
  spec.echo_id = (uint16_t)opt_int(L, 2, "probe", "icmp_id", 0, 0, 65535);
  spec.echo_seq = (uint16_t)opt_int(L, 2, "probe", "icmp_seq", 0, 0, 65535);
  spec.tos = (uint8_t)opt_int(L, 2, "probe", "tos", 0, 0, 255);
  spec.fill = (uint8_t)opt_int(L, 2, "probe", "fill", 0, 0, 255);
  lua_getfield(L, 2, "checksum");
  spec.hold_checksum = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (spec.hold_checksum) {
    if (spec.proto == SONDE_PROTO_TCP)
      luaL_error(L, "probe: field 'checksum' is for proto 'udp' and 'icmp'");
    spec.checksum = (uint16_t)opt_int(L, 2, "probe", "checksum", 1, 1, 65534);
  }
  /* ip_id 0 would be no choice: the kernel replaces a zero ID (raw(7)). */
  spec.ip_id = (uint16_t)opt_int(L, 2, "probe", "ip_id", 0, 1, 65535);
  if (spec.ip_id && spec.dst.ss_family != AF_INET)
    luaL_error(L, "probe: field 'ip_id' is for IPv4 destinations (dst is "
                  "IPv6: it has no identification field)");
  lua_getfield(L, 2, "df");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      luaL_error(L, "probe: field 'df' must be a boolean (got %s)",
                 luaL_typename(L, -1));
    spec.df = lua_toboolean(L, -1) ? SONDE_DF_SET : SONDE_DF_CLEAR;
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "flow_label");
  spec.has_flow_label = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (spec.has_flow_label) {
    if (spec.dst.ss_family != AF_INET6)
      luaL_error(L, "probe: field 'flow_label' is for IPv6 destinations (dst "
                    "is IPv4: it has no flow label)");
    spec.flow_label =
        (uint32_t)opt_int(L, 2, "probe", "flow_label", 0, 0, 0xfffff);
  }
  spec.payload = (const uint8_t *)opt_string(L, 2, "payload", &spec.payload_len);
  spec.expect = (const uint8_t *)opt_string(L, 2, "expect", &spec.expect_len);
  if ((spec.payload || spec.expect) && spec.proto != SONDE_PROTO_TCP)
    luaL_error(L, "probe: fields 'payload' and 'expect' are for proto 'tcp'");
  if (spec.expect_len > 2048)
    luaL_error(L, "probe: field 'expect' is longer than 2048 bytes");
  if (spec.payload_len > 65536)
    luaL_error(L, "probe: field 'payload' is longer than 65536 bytes");
  *out = spec;
}

/* e:probe{dst=, proto=, ttl=, ...}, function(result) end) -> id */
static int l_probe(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  sonde_probe_spec_t spec;
  int64_t id;
  int ref;

  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!probe_spec_fast(L, &spec))
    probe_spec_checked(L, &spec);
  lua_pushvalue(L, 3);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The engine copies payload and expect before this returns. */
  id = sonde_probe_start(le->eng, &spec, on_result, (void *)(intptr_t)ref);
  if (id < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return push_fail(L, (int)id);
  }
  lua_pushnumber(L, (lua_Number)id);
  return 1;
}

static uint64_t check_id(lua_State *L, int idx) {
  lua_Number n = luaL_checknumber(L, idx);
  if (n < 1 || n != floor(n))
    luaL_argerror(L, idx, "not a probe id");
  return (uint64_t)n;
}

static int l_set_wait(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  int r = sonde_probe_set_wait(le->eng, check_id(L, 2), luaL_checknumber(L, 3));
  if (r < 0)
    return push_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_cancel(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  lua_State *outer = le->L;
  int r;
  /* The cancelled probe's callback runs now, on this thread. */
  le->L = L;
  r = sonde_probe_cancel(le->eng, check_id(L, 2));
  le->L = outer;
  if (r < 0)
    return push_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stats(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  sonde_stats_t s;
  sonde_engine_stats(le->eng, &s);
  lua_createtable(L, 0, 12);
#define F(name)                                                               \
  lua_pushnumber(L, (lua_Number)s.name);                                     \
  lua_setfield(L, -2, #name);
  F(started) F(sent) F(replies) F(timeouts) F(skipped) F(failed) F(received)
  F(ignored) F(malformed) F(dropped) F(send_retries) F(in_flight) F(queued)
#undef F
  return 1;
}

/* e:privileged(4|6) -> true (raw sockets), false (unprivileged), or nil
 * (no probe of that family yet). */
static int l_privileged(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  int fam = (int)luaL_checkinteger(L, 2);
  int r;
  if (fam != 4 && fam != 6)
    return luaL_argerror(L, 2, "family must be 4 or 6");
  r = sonde_engine_privileged(le->eng, fam == 6 ? AF_INET6 : AF_INET);
  if (r < 0)
    return 0;
  lua_pushboolean(L, r);
  return 1;
}

/* e:source(addr) -> the source address towards addr, or nil, msg, name. */
static int l_source(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  struct sockaddr_storage dst, src;
  char buf[INET6_ADDRSTRLEN];
  int r;
  if (sonde_addr_parse(luaL_checkstring(L, 2), 0, &dst) < 0)
    return luaL_argerror(L, 2, "not a numeric IP address");
  r = sonde_route_source(le->eng, &dst, &src);
  if (r < 0)
    return push_fail(L, r);
  lua_pushstring(L, sonde_addr_format(&src, buf, sizeof(buf)));
  return 1;
}

/* Monotonic seconds (the clock RTTs are measured on). */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* Push the first callback error as (nil, message) and clear it. */
static int take_error(lua_State *L, lengine_t *le) {
  lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, le->err_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, le->err_ref);
  le->err_ref = LUA_NOREF;
  return 2;
}

/* e:run(): run the loop until nothing is pending or a callback fails. */
static int l_run(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  if (le->L)
    return luaL_error(L, "engine:run() called from inside a callback");
  le->L = L;
  uv_run(&le->loop, UV_RUN_DEFAULT);
  le->L = NULL;
  if (le->err_ref != LUA_NOREF)
    return take_error(L, le);
  lua_pushboolean(L, 1);
  return 1;
}

lengine_t *sonde__lua_check_engine(lua_State *L, int idx) {
  return check_engine(L, idx);
}

uv_loop_t *sonde__lua_engine_loop(lengine_t *le) { return &le->loop; }

void sonde__lua_engine_attach(lengine_t *le, lowned_t *o) {
  o->next = &le->owned;
  o->prev = le->owned.prev;
  le->owned.prev->next = o;
  le->owned.prev = o;
}

void sonde__lua_engine_detach(lowned_t *o) {
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = o;
}

static int l_stop(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  uv_stop(&le->loop);
  return 0;
}

/* --- timers, signals, resolver --------------------------------------------- */

static lreq_t *req_new(lua_State *L, lengine_t *le, int kind, int fn_idx) {
  lreq_t *q = calloc(1, sizeof(*q));
  if (q == NULL)
    luaL_error(L, "out of memory");
  q->le = le;
  q->kind = kind;
  q->token = ++le->next_token;
  lua_pushvalue(L, fn_idx);
  q->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  q->next = &le->reqs;
  q->prev = le->reqs.prev;
  le->reqs.prev->next = q;
  le->reqs.prev = q;
  return q;
}

static void req_free(lreq_t *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  free(q);
}

/* A request failed to start: release it (its handle never existed). */
static int req_abort(lua_State *L, lreq_t *q, int status) {
  luaL_unref(L, LUA_REGISTRYINDEX, q->ref);
  req_free(q);
  return push_uv_fail(L, status);
}

/* Signals while no engine watches them (guard.h). libuv puts back the
 * default action when its last watcher of a signal stops; the guard takes
 * over again then (re_guard). */
static volatile sig_atomic_t guard_on, guard_sig;

static void guard_record(int sig) {
  if (guard_sig == 0)
    guard_sig = sig;
}

static void guard_install(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = guard_record;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(sig, &sa, NULL);
}

void sonde_guard_signals(void) {
  guard_on = 1;
  guard_install(SIGINT);
  guard_install(SIGTERM);
  guard_install(SIGHUP);
  guard_install(SIGQUIT);
}

int sonde_guard_pending(void) { return guard_sig; }

static void re_guard(int sig) {
  struct sigaction old;
  if (guard_on && sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
    guard_install(sig);
}

static void handle_closed(uv_handle_t *h) {
  lreq_t *q = h->data;
  if (q->kind == REQ_SIGNAL)
    re_guard(q->signum);
  req_free(q);
}

/* Stop a timer or signal for good: drop its callback, close its handle. */
static void req_close(lreq_t *q, lua_State *L) {
  if (q->done)
    return;
  q->done = 1;
  unref(q->le, L, &q->ref);
  if (q->kind == REQ_TIMER || q->kind == REQ_SIGNAL)
    uv_close(&q->u.handle, handle_closed);
  else
    uv_cancel((uv_req_t *)&q->u.gai); /* its callback frees it */
}

static void on_timer(uv_timer_t *t) {
  lreq_t *q = t->data;
  lengine_t *le = q->le;
  int ref = q->ref;
  q->ref = LUA_NOREF;
  q->done = 1;
  uv_close(&q->u.handle, handle_closed);
  if (push_callback(le, ref)) {
    unref(le, le->L, &ref);
    call_protected(le, 0);
  }
}

/* e:after(seconds, fn) -> token: call fn once after seconds. */
static int l_after(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  double s = luaL_checknumber(L, 2);
  lreq_t *q;
  int r;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (isnan(s) || s < 0 || s > 1e7)
    return luaL_argerror(L, 2, "seconds must be from 0 to 1e7");
  q = req_new(L, le, REQ_TIMER, 3);
  r = uv_timer_init(&le->loop, &q->u.timer);
  if (r < 0)
    return req_abort(L, q, r);
  q->u.timer.data = q;
  uv_timer_start(&q->u.timer, on_timer, (uint64_t)ceil(s * 1000), 0);
  lua_pushnumber(L, (lua_Number)q->token);
  return 1;
}

/* e:cancel_timer(token) / e:unwatch(token): stop a timer or signal watch. */
static int l_unwatch(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  uint64_t token = (uint64_t)luaL_checknumber(L, 2);
  lreq_t *q;
  for (q = le->reqs.next; q != &le->reqs; q = q->next)
    if (q->token == token && !q->done) {
      req_close(q, L);
      lua_pushboolean(L, 1);
      return 1;
    }
  lua_pushboolean(L, 0);
  return 1;
}

static void on_signal(uv_signal_t *h, int signum) {
  lreq_t *q = h->data;
  lengine_t *le = q->le;
  if (push_callback(le, q->ref)) {
    lua_pushinteger(le->L, signum);
    call_protected(le, 1);
  }
}

/* e:on_signal("SIGINT"|"SIGTERM"|"SIGHUP", fn) -> token. The watch does not
 * keep the loop running. */
static int l_on_signal(lua_State *L) {
  static const char *const names[] = {"SIGINT", "SIGTERM", "SIGHUP",
                                      "SIGQUIT", NULL};
  static const int nums[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  lengine_t *le = check_engine(L, 1);
  int i = luaL_checkoption(L, 2, NULL, names), r;
  lreq_t *q;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  q = req_new(L, le, REQ_SIGNAL, 3);
  r = uv_signal_init(&le->loop, &q->u.signal);
  if (r < 0)
    return req_abort(L, q, r);
  q->u.signal.data = q;
  q->signum = nums[i];
  r = uv_signal_start(&q->u.signal, on_signal, nums[i]);
  if (r < 0) {
    req_close(q, L);
    return push_uv_fail(L, r);
  }
  uv_unref(&q->u.handle);
  /* Kept while nothing watched it: delivered now, through the loop. */
  if (guard_sig == nums[i]) {
    guard_sig = 0;
    (void)raise(nums[i]);
  }
  lua_pushnumber(L, (lua_Number)q->token);
  return 1;
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lreq_t *q = req->data;
  lengine_t *le = q->le;
  if (!q->done && push_callback(le, q->ref)) {
    lua_State *L = le->L;
    unref(le, L, &q->ref);
    if (status < 0) {
      push_uv_fail(L, status);
      call_protected(le, 3);
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
      call_protected(le, 1);
    }
  }
  uv_freeaddrinfo(res);
  unref(le, le->L, &q->ref);
  req_free(q);
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

static int l_resolve(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
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
  q = req_new(L, le, REQ_GAI, 4);
  q->u.gai.data = q;
  r = uv_getaddrinfo(&le->loop, &q->u.gai, on_gai, host, NULL, &hints);
  if (r < 0)
    return req_abort(L, q, r);
  lua_pushboolean(L, 1);
  return 1;
}

static void on_gni(uv_getnameinfo_t *req, int status, const char *host,
                   const char *service) {
  lreq_t *q = req->data;
  lengine_t *le = q->le;
  if (!q->done && push_callback(le, q->ref)) {
    unref(le, le->L, &q->ref);
    if (status < 0) {
      push_uv_fail(le->L, status);
      call_protected(le, 3);
    } else {
      lua_pushstring(le->L, host);
      call_protected(le, 1);
    }
  }
  unref(le, le->L, &q->ref);
  req_free(q);
}

/* e:reverse(addr, fn(name | nil, msg, name)): the name of a numeric
 * address (NI_NAMEREQD: no name is an error, not the address back). */
static int l_reverse(lua_State *L) {
  lengine_t *le = check_engine(L, 1);
  struct sockaddr_storage ss;
  lreq_t *q;
  int r;
  if (sonde_addr_parse(luaL_checkstring(L, 2), 0, &ss) < 0)
    return luaL_argerror(L, 2, "not a numeric IP address");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if ((r = pool_can_start()) < 0)
    return push_pool_fail(L, r);
  q = req_new(L, le, REQ_GNI, 3);
  q->u.gni.data = q;
  r = uv_getnameinfo(&le->loop, &q->u.gni, on_gni, (struct sockaddr *)&ss,
                     NI_NAMEREQD);
  if (r < 0)
    return req_abort(L, q, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* --- closing ----------------------------------------------------------------- */

static void walk_count(uv_handle_t *h, void *arg) { (*(int *)arg)++; }

/*
 * Close everything: probes end with ECANCELED (their callbacks run if L is
 * given, i.e. from e:close(); not from __gc), timers and signals stop,
 * resolver requests are cancelled; then the loop runs until every handle
 * is closed and is closed itself, with a check that nothing is left.
 * Returns the number of handles left (0 when all is well).
 */
static int engine_close(lengine_t *le, lua_State *L, int callbacks) {
  lreq_t *q, *next;
  lowned_t *o, *onext;
  int left = 0;
  if (le->eng == NULL)
    return 0;
  le->L = callbacks ? L : NULL;
  sonde_engine_close(le->eng, engine_closed, le);
  le->L = NULL;
  for (q = le->reqs.next; q != &le->reqs; q = next) {
    next = q->next;
    req_close(q, L);
  }
  for (o = le->owned.next; o != &le->owned; o = onext) {
    onext = o->next;
    o->close(o, L);
  }
  while (!le->engine_closed || le->reqs.next != &le->reqs ||
         le->owned.next != &le->owned)
    if (uv_run(&le->loop, UV_RUN_ONCE) == 0 && !le->engine_closed)
      break;
  le->eng = NULL;
  uv_walk(&le->loop, walk_count, &left);
  if (le->loop_init && uv_loop_close(&le->loop) == 0)
    le->loop_init = 0;
  if (le->err_ref != LUA_NOREF)
    unref(le, L, &le->err_ref);
  return left;
}

static int l_close(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  int left;
  if (le->eng == NULL) {
    /* Closing twice is a soft error (nmap's l_close), never a second close. */
    lua_pushnil(L);
    lua_pushliteral(L, "engine already closed");
    return 2;
  }
  if (le->L)
    return luaL_error(L, "engine:close() called from inside a callback");
  left = engine_close(le, L, 1);
  if (left)
    return luaL_error(L, "engine closed with %d libuv handle(s) left open",
                      left);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  engine_close(le, L, 0);
  if (le->loop_init) {
    uv_loop_close(&le->loop);
    le->loop_init = 0;
  }
  return 0;
}

static int l_tostring(lua_State *L) {
  lengine_t *le = luaL_checkudata(L, 1, ENGINE_MT);
  lua_pushfstring(L, "sonde.engine (%s)", le->eng ? "open" : "closed");
  return 1;
}

/* --- a deadline for user scripts (sonde run --timeout) -------------------- */

static lua_State *deadline_L;
static volatile sig_atomic_t deadline_hits;

static void deadline_hook(lua_State *L, lua_Debug *ar) {
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "script exceeded its time limit (--timeout)");
}

/*
 * SIGALRM at the deadline: a hook makes the running Lua code raise an
 * error, which ends the script the usual way (its engines close, exit 3).
 * Code that runs no more Lua (a compiled loop, or a wait in the loop with
 * nothing to come) is ended by a second alarm a second later, with a
 * message (write() and _exit() are async-signal-safe).
 */
static void on_deadline(int sig) {
  static const char msg[] =
      "sonde run: the script exceeded --timeout and did not stop: ended\n";
  (void)sig;
  if (deadline_hits++ == 0 && deadline_L) {
    lua_sethook(deadline_L, deadline_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    alarm(1);
    return;
  }
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(3);
}

/* core.deadline(seconds): arm the deadline (whole seconds, >= 1). */
static int l_deadline(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct sigaction sa;
  if (s < 1 || s > 86400 * 365 || s != floor(s))
    return luaL_argerror(L, 1, "whole seconds from 1");
  /* The hook is global in LuaJIT: any thread of this state will do. */
  deadline_L = L;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_deadline;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  alarm((unsigned)s);
  return 0;
}

/* --- module functions ----------------------------------------------------------- */

static int l_version(lua_State *L) {
  lua_createtable(L, 0, 3);
  set_str(L, "sonde", SONDE_VERSION_STRING);
  set_str(L, "libuv", uv_version_string());
  set_str(L, "luajit", LUAJIT_VERSION);
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
    set_int(L, "errno", -errs[i]);
    set_str(L, "message", sonde_strerror(errs[i]));
    set_str(L, "status", sonde_status_name(sonde_err_status(errs[i])));
    lua_setfield(L, -2, sonde_err_name(errs[i]));
  }
}

int luaopen_sonde_core(lua_State *L);

int luaopen_sonde_core(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"probe", l_probe},       {"set_wait", l_set_wait},
      {"cancel", l_cancel},     {"stats", l_stats},
      {"run", l_run},           {"stop", l_stop},
      {"after", l_after},       {"unwatch", l_unwatch},
      {"on_signal", l_on_signal}, {"resolve", l_resolve},
      {"reverse", l_reverse},   {"close", l_close},
      {"now", l_now},           {"privileged", l_privileged},
      {"source", l_source},     {"tty", sonde__lua_tty},
      {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"engine", l_engine},
                                   {"version", l_version},
                                   {"strerror", l_strerror},
                                   {"now", l_now},
                                   {"parse_icmp", sonde__lua_parse_icmp},
                                   {"deadline", l_deadline},
                                   {"drop_privileges",
                                    sonde__l_drop_privileges},
                                   {"pid", sonde__lua_pid},
                                   {"isatty", sonde__lua_isatty},
                                   {"listdir", sonde__lua_listdir},
                                   {NULL, NULL}};
  luaL_newmetatable(L, ENGINE_MT);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  sonde__lua_tty_init(L);
  lua_newtable(L);
  luaL_register(L, NULL, funcs);
  push_errors(L);
  lua_setfield(L, -2, "errors");
  sonde__output_register(L);
  return 1;
}

/*
 * result.c - a probe's result (sonde_result_t) as the Lua table its
 * callback receives: only the fields that apply are set.
 */
#include <arpa/inet.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"
#include "lpacket.h"
#include "sonde.h"

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

/* The error's message, naming what the probe asked for when that is what
 * failed: the source address (bind(src): EADDRNOTAVAIL, not one of this
 * host's) or the interface (ENODEV, EPERM at SO_BINDTODEVICE). */
static void push_message(lua_State *L, const sonde_result_t *r) {
  char buf[INET6_ADDRSTRLEN];
  const char *msg = sonde_strerror(r->error);
  if (r->call && strcmp(r->call, "bind(src)") == 0 && addr_known(&r->src))
    lua_pushfstring(L, "%s (source %s)", msg,
                    sonde_addr_format(&r->src, buf, sizeof(buf)));
  else if (r->call && r->iface[0] &&
           (strstr(r->call, "SO_BINDTODEVICE") ||
            strstr(r->call, "SIOCGIFINDEX")))
    lua_pushfstring(L, "%s (interface %s)", msg, r->iface);
  else
    lua_pushstring(L, msg);
}

/* How many fields sonde__lua_push_result sets: the table is made that size, not
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
  n += (r->mpls_truncated != 0) + (r->n_ext > 0) + (r->ext_truncated != 0) +
       (r->n_changes > 0) + (r->nat != 0) + addr_known(&r->quoted_src) +
       (r->iface[0] != 0);
  return n;
}

/* The result table: status ("reply", "timeout", "error", ...), and for a
 * reply its kind and the addresses, times and header fields it carried. */
void sonde__lua_push_result(lua_State *L, uint64_t id, const sonde_result_t *r) {
  int i;
  lua_createtable(L, 0, result_fields(r));
  lcore_set_int(L, "id", (lua_Integer)id);
  lcore_set_str(L, "status", sonde_status_name(r->status));
  if (r->status == SONDE_STATUS_REPLY) {
    lcore_set_str(L, "kind", sonde_kind_name(r->kind));
    if (r->kind == SONDE_KIND_DEST_UNREACHABLE)
      lcore_set_str(L, "code", sonde_unreach_name(r->unreach));
  }
  set_addr(L, "addr", &r->addr);
  set_addr(L, "src", &r->src);
  if (r->iface[0])
    lcore_set_str(L, "iface", r->iface);
  if (r->rtt >= 0) {
    lua_pushnumber(L, r->rtt);
    lua_setfield(L, -2, "rtt");
  }
  lcore_set_int(L, "ttl", r->ttl);
  if (r->reply_ttl >= 0)
    lcore_set_int(L, "reply_ttl", r->reply_ttl);
  if (r->icmp_type >= 0) {
    lcore_set_int(L, "icmp_type", r->icmp_type);
    lcore_set_int(L, "icmp_code", r->icmp_code);
  }
  if (r->quoted_ttl >= 0)
    lcore_set_int(L, "quoted_ttl", r->quoted_ttl);
  if (r->mtu > 0)
    lcore_set_int(L, "mtu", r->mtu);
  lcore_set_int(L, "seq", r->seq);
  if (r->sport || r->dport) {
    lcore_set_int(L, "sport", r->sport);
    lcore_set_int(L, "dport", r->dport);
  }
  if (r->echo_id || r->echo_seq) {
    lcore_set_int(L, "icmp_id", r->echo_id);
    lcore_set_int(L, "icmp_seq", r->echo_seq);
  }
  if (r->attempts > 1)
    lcore_set_int(L, "attempts", r->attempts);
  if (r->connected) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "connected");
  }
  if (r->response >= 0) {
    lua_pushnumber(L, r->response);
    lua_setfield(L, -2, "response");
  }
  if (r->received)
    lcore_set_int(L, "received", (lua_Integer)r->received);
  if (r->matched) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "matched");
  }
  if (r->ip_id)
    lcore_set_int(L, "ip_id", r->ip_id);
  if (r->df >= 0) {
    lua_pushboolean(L, r->df);
    lua_setfield(L, -2, "df");
  }
  if (r->flow_label >= 0)
    lcore_set_int(L, "flow_label", r->flow_label);
  if (r->error) {
    lua_createtable(L, 0, 3);
    lcore_set_str(L, "name", sonde_err_name(r->error));
    push_message(L, r);
    lua_setfield(L, -2, "message");
    if (r->call)
      lcore_set_str(L, "call", r->call);
    lua_setfield(L, -2, "error");
  }
  if (r->n_changes > 0) {
    sonde__lua_push_changes(L, r);
    lua_setfield(L, -2, "changes");
  }
  if (r->nat) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "nat");
    set_addr(L, "quoted_src", &r->quoted_src);
  }
  if (r->n_ext > 0) {
    sonde__lua_push_ext(L, r->ext, r->n_ext);
    lua_setfield(L, -2, "ext");
  }
  if (r->ext_truncated) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ext_truncated");
  }
  if (r->mpls_truncated) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "mpls_truncated");
  }
  if (r->n_mpls == 0)
    return;
  lua_createtable(L, r->n_mpls, 0);
  for (i = 0; i < r->n_mpls; i++) {
    lua_createtable(L, 0, 4);
    lcore_set_int(L, "label", r->mpls[i].label);
    lcore_set_int(L, "exp", r->mpls[i].exp);
    lua_pushboolean(L, r->mpls[i].s);
    lua_setfield(L, -2, "s");
    lcore_set_int(L, "ttl", r->mpls[i].ttl);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "mpls");
}


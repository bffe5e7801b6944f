/* lpacket.c - sonde.core.parse_icmp: the packet parser as Lua tables. */
#include <arpa/inet.h>

#include "lauxlib.h"
#include "lua.h"

#include "lcore.h"
#include "lpacket.h"
#include "packet.h"

static void set_addr(lua_State *L, const char *k, int af, const void *a) {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(af, a, buf, sizeof(buf)))
    lcore_set_str(L, k, buf);
}

static void push_quote(lua_State *L, const sonde__quote_t *q) {
  int v4 = q->af == AF_INET;
  const char *proto = NULL;

  lua_createtable(L, 0, 20);
  lcore_set_num(L, "af", v4 ? 4 : 6);
  if (q->proto == IPPROTO_UDP)
    proto = "udp";
  else if (q->proto == IPPROTO_TCP)
    proto = "tcp";
  else if (v4 && q->proto == IPPROTO_ICMP)
    proto = "icmp";
  else if (!v4 && q->proto == IPPROTO_ICMPV6)
    proto = "icmpv6";
  if (proto)
    lcore_set_str(L, "proto", proto);
  else
    lcore_set_num(L, "proto", q->proto);
  lcore_set_num(L, "ttl", q->ttl);
  lcore_set_num(L, "tos", q->tos);
  lcore_set_num(L, "ip_len", q->ip_total_len);
  if (v4) {
    lcore_set_num(L, "ip_id", q->ip_id);
    lua_pushboolean(L, q->df);
    lua_setfield(L, -2, "df");
    set_addr(L, "src", AF_INET, &q->src4);
    set_addr(L, "dst", AF_INET, &q->dst4);
  } else {
    lcore_set_num(L, "flow", q->flow);
    set_addr(L, "src", AF_INET6, &q->src6);
    set_addr(L, "dst", AF_INET6, &q->dst6);
  }
  lcore_set_num(L, "l4_len", (lua_Number)q->l4_len);
  if (q->has_ports) {
    lcore_set_num(L, "sport", q->sport);
    lcore_set_num(L, "dport", q->dport);
  }
  if (q->has_tcp_seq)
    lcore_set_num(L, "tcp_seq", q->tcp_seq);
  if (q->has_tcp_hdr) {
    lcore_set_num(L, "tcp_flags", q->tcp_flags);
    lcore_set_num(L, "tcp_window", q->tcp_window);
  }
  if (q->has_tcp_mss)
    lcore_set_num(L, "tcp_mss", q->tcp_mss);
  if (q->has_udp_csum) {
    lcore_set_num(L, "udp_len", q->udp_len);
    lcore_set_num(L, "udp_csum", q->udp_csum);
  }
  if (q->has_icmp_echo) {
    lcore_set_num(L, "icmp_id", q->icmp_id);
    lcore_set_num(L, "icmp_seq", q->icmp_seq);
    lcore_set_num(L, "icmp_csum", q->icmp_csum);
  }
}

static const char *const roles[4] = {"incoming", "incoming_sub_ip",
                                     "outgoing", "next_hop"};

/* See lpacket.h. */
void sonde__lua_push_ext(lua_State *L, const sonde_ext_t *x, int n) {
  static const char hex[] = "0123456789abcdef";
  int i;

  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++, x++) {
    lua_createtable(L, 0, 8);
    lcore_set_num(L, "class", x->class_num);
    lcore_set_num(L, "ctype", x->ctype);
    lcore_set_num(L, "len", x->len);
    if (x->class_num == SONDE_EXT_CLASS_IFINFO) {
      lcore_set_str(L, "role", roles[x->role & 3]);
      if (x->has & SONDE_IFINFO_IFINDEX)
        lcore_set_num(L, "ifindex", x->ifindex);
      if (x->has & SONDE_IFINFO_ADDR)
        set_addr(L, "addr", x->af, x->addr);
      if (x->has & SONDE_IFINFO_NAME)
        lcore_set_str(L, "name", x->name);
      if (x->has & SONDE_IFINFO_MTU)
        lcore_set_num(L, "mtu", x->mtu);
    } else {
      char buf[2 * SONDE_EXT_DATA_MAX];
      size_t k, kept = x->len < SONDE_EXT_DATA_MAX ? x->len
                                                   : SONDE_EXT_DATA_MAX;
      for (k = 0; k < kept; k++) {
        buf[2 * k] = hex[x->data[k] >> 4];
        buf[2 * k + 1] = hex[x->data[k] & 15];
      }
      lua_pushlstring(L, buf, 2 * kept);
      lua_setfield(L, -2, "data");
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/* See lpacket.h. */
void sonde__lua_push_changes(lua_State *L, const sonde_result_t *r) {
  int i;

  lua_createtable(L, r->n_changes, 0);
  for (i = 0; i < r->n_changes; i++) {
    const sonde_change_t *c = &r->changes[i];
    lua_createtable(L, 0, 3);
    lcore_set_str(L, "field", sonde_field_name(c->field));
    if (c->field == SONDE_FIELD_SRC) {
      char buf[INET6_ADDRSTRLEN];
      lcore_set_str(L, "sent", sonde_addr_format(&r->src, buf, sizeof(buf)));
      lcore_set_str(L, "seen",
                    sonde_addr_format(&r->quoted_src, buf, sizeof(buf)));
    } else {
      lcore_set_num(L, "sent", c->sent);
      lcore_set_num(L, "seen", c->seen);
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/*
 * parse_icmp(bytes, family): see lpacket.h. Fields are present only where
 * they mean something (echo_id for echo replies, mtu for frag needed and
 * packet too big, pointer for parameter problems, quote fields per has_*);
 * mpls is always a table.
 */
int sonde__lua_parse_icmp(lua_State *L) {
  size_t len;
  const char *bytes = luaL_checklstring(L, 1, &len);
  int family = luaL_checkint(L, 2);
  sonde__icmp_t m;
  int err, i;

  luaL_argcheck(L, family == 4 || family == 6, 2, "family must be 4 or 6");
  err = family == 4 ? sonde__parse_icmp4((const uint8_t *)bytes, len, &m)
                    : sonde__parse_icmp6((const uint8_t *)bytes, len, &m);
  if (err < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", sonde_err_name(err), sonde_strerror(err));
    lua_pushstring(L, sonde_err_name(err));
    return 3;
  }
  lua_createtable(L, 0, 16);
  lcore_set_num(L, "type", m.type);
  lcore_set_num(L, "code", m.code);
  lcore_set_str(L, "kind", sonde_kind_name(m.kind));
  if (m.kind == SONDE_KIND_DEST_UNREACHABLE)
    lcore_set_str(L, "unreach", sonde_unreach_name(m.unreach));
  if (m.reply_ttl >= 0)
    lcore_set_num(L, "reply_ttl", m.reply_ttl);
  if (family == 4) {
    set_addr(L, "from", AF_INET, &m.from4);
    set_addr(L, "to", AF_INET, &m.to4);
  }
  if (m.kind == SONDE_KIND_ECHO_REPLY) {
    lcore_set_num(L, "echo_id", m.echo_id);
    lcore_set_num(L, "echo_seq", m.echo_seq);
  }
  if (m.kind == SONDE_KIND_PACKET_TOO_BIG ||
      m.unreach == SONDE_UNREACH_FRAG_NEEDED)
    lcore_set_num(L, "mtu", m.mtu);
  if (m.kind == SONDE_KIND_PARAM_PROBLEM)
    lcore_set_num(L, "pointer", m.pointer);
  if (m.has_quote) {
    push_quote(L, &m.quote);
    lua_setfield(L, -2, "quote");
  }
  lua_pushboolean(L, m.has_ext);
  lua_setfield(L, -2, "has_ext");
  lua_createtable(L, m.n_mpls, 0);
  for (i = 0; i < m.n_mpls; i++) {
    lua_createtable(L, 0, 4);
    lcore_set_num(L, "label", m.mpls[i].label);
    lcore_set_num(L, "exp", m.mpls[i].exp);
    lua_pushboolean(L, m.mpls[i].s);
    lua_setfield(L, -2, "s");
    lcore_set_num(L, "ttl", m.mpls[i].ttl);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "mpls");
  if (m.mpls_truncated) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "mpls_truncated");
  }
  if (m.has_ext) {
    static const char *const forms[] = {"none", "rfc4884", "padded", "bytes"};
    lcore_set_str(L, "ext_form", forms[m.ext_form & 3]);
  }
  sonde__lua_push_ext(L, m.ext, m.n_ext);
  lua_setfield(L, -2, "ext");
  if (m.ext_truncated) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ext_truncated");
  }
  return 1;
}

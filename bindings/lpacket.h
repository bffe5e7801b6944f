/* lpacket.h - the packet parser for Lua (part of sonde.core). */
#ifndef SONDE_LPACKET_H
#define SONDE_LPACKET_H

#include "lua.h"
#include "sonde.h"

/*
 * parse_icmp(bytes, family) -> table | nil, "ENAME: message", "ENAME"
 * Parses an ICMP message as a raw socket reads it (family 4: IPv4 header
 * first; 6: ICMPv6 header first). Raises a Lua error on bad arguments.
 */
int sonde__lua_parse_icmp(lua_State *L);

/*
 * Push the list of extension objects (RFC 5837 interface information and
 * other classes) as a Lua array of tables: {class, ctype, len} always;
 * class 2 adds role ("incoming", "incoming_sub_ip", "outgoing",
 * "next_hop") and ifindex/addr/name/mtu as decoded; other classes their
 * first bytes as a hex string (data).
 */
void sonde__lua_push_ext(lua_State *L, const sonde_ext_t *x, int n);

/* Push the list of changed quote fields: {field, sent, seen}; the source
 * address (field "src") as address strings, sent from src. */
void sonde__lua_push_changes(lua_State *L, const sonde_result_t *r);

#endif /* SONDE_LPACKET_H */

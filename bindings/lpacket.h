/* lpacket.h - the packet parser for Lua (part of sonde.core). */
#ifndef SONDE_LPACKET_H
#define SONDE_LPACKET_H

#include "lua.h"

/*
 * parse_icmp(bytes, family) -> table | nil, "ENAME: message", "ENAME"
 * Parses an ICMP message as a raw socket reads it (family 4: IPv4 header
 * first; 6: ICMPv6 header first). Raises a Lua error on bad arguments.
 */
int sonde__lua_parse_icmp(lua_State *L);

#endif /* SONDE_LPACKET_H */

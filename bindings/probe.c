/*
 * probe.c - the probe table of e:probe{...}: its fields described once
 * (name, type, range, default, help), read by the schema's reader
 * (fields.c) and given to Lua as core.probe_fields. Limits are the
 * engine's (sonde.h); adding a field is one entry here and the engine's
 * own use of it.
 */
#include <sys/socket.h>

#include "lauxlib.h"
#include "lua.h"

#include "fields.h"
#include "lcore.h"
#include "sonde.h"

#define SPEC(member) LF_AT(sonde_probe_spec_t, member)

/* A probe's UDP and TCP destination ports by default: the first of
 * traceroute's UDP ports (33434, above the registered services), and HTTP
 * for TCP (a port that firewalls let through). */
#define DPORT_UDP 33434
#define DPORT_TCP 80

static int is_tcp(const void *out) {
  return ((const sonde_probe_spec_t *)out)->proto == SONDE_PROTO_TCP;
}

static int not_tcp(const void *out) { return !is_tcp(out); }

/* A pattern fills an ICMP/UDP payload; a fill byte leaves it no room. */
static int pattern_ok(const void *out) {
  return !is_tcp(out) && ((const sonde_probe_spec_t *)out)->fill == 0;
}

static int is_v4(const void *out) {
  return ((const sonde_probe_spec_t *)out)->dst.ss_family == AF_INET;
}

static int is_v6(const void *out) {
  return ((const sonde_probe_spec_t *)out)->dst.ss_family == AF_INET6;
}

/* src: of dst's family (checked once both are read). */
static int src_family_ok(const void *out) {
  const sonde_probe_spec_t *spec = out;
  return spec->src.ss_family == spec->dst.ss_family;
}

static const char *const protos[] = {
#define XX(NAME, name, value) #name,
    SONDE_PROTO_MAP(XX)
#undef XX
    NULL};
static const char *const binds[] = {"kernel", "sequence", "fixed", NULL};
static const char *const tcp_modes[] = {"auto", "syn", "connect", NULL};

/* In the order they are checked: dst and proto first, for the fields whose
 * default or use depends on them. */
static const char *const df_probe[] = {"probe", NULL};

static const lfield_t probe_fields[] = {
    {LF_NAME("dst"), .type = LF_ADDR, SPEC(dst), .required = 1,
     .help = "destination, a numeric IPv4 or IPv6 address"},
    {LF_NAME("proto"), .type = LF_CHOICE, SPEC(proto), .required = 1,
     .choices = protos, .base = SONDE_PROTO_ICMP,
     .help = "ICMP echo request, UDP datagram or TCP connect"},
    {LF_NAME("ttl"), .type = LF_INT, SPEC(ttl), .min = SONDE_TTL_MIN,
     .max = SONDE_TTL_MAX, .has_def = 1, .def = 64,
     .help = "IPv4 TTL / IPv6 hop limit of the probe"},
    {LF_NAME("wait"), .type = LF_NUMBER, SPEC(wait),
     .max = SONDE__LUA_WAIT_MAX, .has_def = 1,
     .help = "seconds to wait for the answer (0: the engine's wait)"},
    {LF_NAME("sport"), .type = LF_INT, SPEC(sport), .max = 65535,
     .has_def = 1, .help = "UDP/TCP source port (0: the kernel's choice)"},
    {LF_NAME("dport"), .type = LF_INT, SPEC(dport), .max = 65535,
     .has_def = 1, .def = DPORT_UDP, .def_alt = DPORT_TCP,
     .alt_when = is_tcp, .alt_name = "default_tcp",
     .help = "UDP/TCP destination port"},
    {LF_NAME("bind"), .type = LF_CHOICE, SPEC(bind), .choices = binds,
     .base = SONDE_BIND_KERNEL, .has_def = 1, .def = SONDE_BIND_KERNEL,
     .help = "source port: the kernel's, sport plus the sequence, or sport "
             "for every probe"},
    {LF_NAME("seq"), .type = LF_INT, SPEC(seq), .max = 4294967295.0,
     .has_def = 1, .help = "the caller's sequence number, reported back"},
    {LF_NAME("size"), .type = LF_INT, SPEC(size), .max = SONDE_SIZE_MAX,
     .has_def = 1, .help = "ICMP/UDP payload bytes (0: 32)"},
    {LF_NAME("icmp_id"), .type = LF_INT, SPEC(echo_id), .max = 65535,
     .has_def = 1, .help = "ICMP echo identifier (0: the engine's)"},
    {LF_NAME("icmp_seq"), .type = LF_INT, SPEC(echo_seq), .max = 65535,
     .has_def = 1, .help = "ICMP echo sequence number"},
    {LF_NAME("tos"), .type = LF_INT, SPEC(tos), .max = 255, .has_def = 1,
     .help = "IPv4 TOS / IPv6 traffic class"},
    {LF_NAME("fill"), .type = LF_INT, SPEC(fill), .max = 255, .has_def = 1,
     .help = "payload byte (0: a ramp)"},
    {LF_NAME("pattern"), .type = LF_HEX, SPEC(pattern),
     .len_off = offsetof(sonde_probe_spec_t, pattern_len),
     .max = SONDE_PATTERN_MAX, .allowed = pattern_ok, .only = "udp,icmp",
     .rule = "field 'pattern' is for proto 'udp' and 'icmp', without "
             "'fill'",
     .help = "hex digits of up to 16 bytes repeated over the payload, "
             "around the engine's nonce (iputils ping -p)"},
    {LF_NAME("checksum"), .type = LF_INT, SPEC(checksum), .min = 1,
     .max = 65534, .has_off = 1,
     .present_off = offsetof(sonde_probe_spec_t, hold_checksum),
     .allowed = not_tcp, .only = "udp,icmp",
     .rule = "field 'checksum' is for proto 'udp' and 'icmp'",
     .help = "the transport checksum to hold (2 payload bytes adjusted): "
             "names the probe within its flow"},
    /* ip_id 0 would be no choice: the kernel replaces a zero ID (raw(7)). */
    {LF_NAME("ip_id"), .type = LF_INT, SPEC(ip_id), .min = 1, .max = 65535,
     .allowed = is_v4, .only = "ipv4", .rule_last = 1,
     .rule = "field 'ip_id' is for IPv4 destinations (dst is IPv6: it has "
             "no identification field)",
     .help = "IPv4 identification (raw sockets)"},
    {LF_NAME("df"), .type = LF_BOOL, SPEC(df), .vtrue = SONDE_DF_SET,
     .vfalse = SONDE_DF_CLEAR, .choices = df_probe, .base = SONDE_DF_PROBE,
     .help = "don't fragment (absent: the kernel's choice); \"probe\": "
             "don't fragment, limited by the device MTU only, not by the "
             "path MTU the kernel learnt (path MTU discovery)"},
    {LF_NAME("flow_label"), .type = LF_INT, SPEC(flow_label),
     .max = SONDE_FLOW_LABEL_MAX, .has_off = 1,
     .present_off = offsetof(sonde_probe_spec_t, has_flow_label),
     .allowed = is_v6, .only = "ipv6",
     .rule = "field 'flow_label' is for IPv6 destinations (dst is IPv4: it "
             "has no flow label)",
     .help = "IPv6 flow label"},
    {LF_NAME("payload"), .type = LF_BYTES, SPEC(payload),
     .len_off = offsetof(sonde_probe_spec_t, payload_len),
     .max = SONDE_TCP_PAYLOAD_MAX, .allowed = is_tcp, .only = "tcp",
     .rule = "fields 'payload' and 'expect' are for proto 'tcp'",
     .help = "bytes written once connected"},
    {LF_NAME("tcp_mode"), .type = LF_CHOICE, SPEC(tcp_mode),
     .choices = tcp_modes, .base = SONDE_TCP_AUTO, .has_def = 1,
     .def = SONDE_TCP_AUTO, .allowed = is_tcp, .only = "tcp",
     .rule = "field 'tcp_mode' is for proto 'tcp'",
     .help = "a half-open SYN on a raw socket, a connect(), or the engine's "
             "choice (auto: SYN with raw sockets and no payload/expect)"},
    {LF_NAME("expect"), .type = LF_BYTES, SPEC(expect),
     .len_off = offsetof(sonde_probe_spec_t, expect_len),
     .max = SONDE_TCP_EXPECT_MAX, .allowed = is_tcp, .only = "tcp",
     .rule = "fields 'payload' and 'expect' are for proto 'tcp'",
     .help = "bytes to read before the probe ends (else the first bytes)"},
    {LF_NAME("src"), .type = LF_ADDR, SPEC(src), .allowed = src_family_ok,
     .rule_last = 1,
     .rule = "field 'src' must be of dst's family (IPv4 with IPv4, IPv6 "
             "with IPv6)",
     .help = "source address, one of this host's (else the probe fails "
             "with EADDRNOTAVAIL); absent: the route's"},
    {LF_NAME("iface"), .type = LF_TEXT, SPEC(iface),
     .max = SONDE_IFNAMSIZ - 1,
     .help = "interface to leave by (SO_BINDTODEVICE; a VRF's device routes "
             "by its table); unknown: the probe fails with ENODEV"},
};

static sonde_probe_spec_t probe_defaults;

static lschema_t probe_schema = {
    .what = "probe",
    .fields = probe_fields,
    .n = (int)(sizeof(probe_fields) / sizeof(probe_fields[0])),
    .size = sizeof(sonde_probe_spec_t),
    .defaults = &probe_defaults};

_Static_assert(sizeof(probe_fields) / sizeof(probe_fields[0]) <= LF_MAX,
               "LF_MAX is too small for the probe's fields");

void sonde__lua_probe_spec(lua_State *L, int idx, sonde_probe_spec_t *spec) {
  sonde__lua_read_fields(L, idx, &probe_schema, spec);
}

void sonde__lua_push_probe_fields(lua_State *L) {
  sonde__lua_push_fields(L, &probe_schema);
}

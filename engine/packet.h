/*
 * packet.h - building probe packets and parsing what comes back.
 *
 * Everything here is pure: no sockets, no loop, no allocation. Parsing reads
 * untrusted bytes from the network: every length is checked before it is
 * read, and a packet that does not parse is rejected with a negative errno
 * (-EBADMSG for malformed, -ENOMSG for well-formed ICMP that sonde has no use
 * for), never read out of bounds. Fuzzed by engine/fuzz/fuzz_packet.c.
 */
#ifndef SONDE_PACKET_H
#define SONDE_PACKET_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "sonde.h"

/* The transport header quoted inside an ICMP error, as far as it is there. */
typedef struct {
  int af;                     /* AF_INET / AF_INET6 */
  uint8_t proto;              /* IPPROTO_ICMP/ICMPV6/UDP/TCP (after v6 ext hdrs) */
  uint8_t ttl;                /* quoted TTL / hop limit (what reached the hop) */
  uint8_t tos;                /* TOS / traffic class */
  uint16_t ip_id;             /* IPv4 identification; 0 for IPv6 */
  uint32_t flow;              /* IPv6 flow label; 0 for IPv4 */
  uint16_t ip_total_len;      /* length field of the quoted IP header */
  struct in6_addr src6, dst6; /* for AF_INET6 */
  struct in_addr src4, dst4;  /* for AF_INET */
  size_t l4_len;              /* bytes of the transport header present */
  int has_ports;              /* UDP/TCP: sport/dport present (l4_len >= 4) */
  uint16_t sport, dport;
  int has_tcp_seq;            /* TCP: l4_len >= 8 */
  uint32_t tcp_seq;
  int has_udp_csum;           /* UDP: l4_len >= 8 */
  uint16_t udp_len, udp_csum;
  int has_icmp_echo;          /* quoted ICMP echo request, l4_len >= 8 */
  uint16_t icmp_id, icmp_seq, icmp_csum;
} sonde__quote_t;

/* A parsed ICMP/ICMPv6 message. */
typedef struct {
  int af;                /* family of the ICMP message itself */
  uint8_t type, code;
  int reply_ttl;         /* IPv4: from the outer header; IPv6: -1 (cmsg) */
  struct in_addr from4;  /* IPv4: outer source (IPv6: the caller knows it) */
  struct in_addr to4;    /* IPv4: outer destination */
  sonde_kind_t kind;     /* ECHO_REPLY, TIME_EXCEEDED, DEST_UNREACHABLE,
                            PACKET_TOO_BIG, PARAM_PROBLEM */
  sonde_unreach_t unreach;
  uint16_t echo_id, echo_seq;   /* echo reply */
  uint32_t mtu;                 /* frag needed (v4) / packet too big (v6) */
  uint32_t pointer;             /* parameter problem */
  int has_quote;
  sonde__quote_t quote;
  int has_ext;                  /* RFC 4884 extension structure found */
  int n_mpls;                   /* RFC 4950 label stack entries (capped) */
  sonde_mpls_t mpls[SONDE_MPLS_MAX];
} sonde__icmp_t;

/*
 * Parse an IPv4 datagram as read from a raw IPPROTO_ICMP socket (IPv4 header
 * first). Returns 0, -EBADMSG (malformed) or -ENOMSG (an ICMP type sonde does
 * not use, e.g. echo request). out is fully written on 0.
 */
int sonde__parse_icmp4(const uint8_t *buf, size_t len, sonde__icmp_t *out);

/*
 * Parse an ICMPv6 message as read from a raw IPPROTO_ICMPV6 socket (ICMPv6
 * header first; the kernel strips the IPv6 header). Same returns.
 */
int sonde__parse_icmp6(const uint8_t *buf, size_t len, sonde__icmp_t *out);

/*
 * Parse the quoted packet of an ICMP error (an IPv4 or IPv6 header, then as
 * much of the transport header as the router kept). af is the quote's family.
 * Used by the parsers above and by the error-queue path, where the kernel
 * hands over the offending packet. Returns 0, -EBADMSG, or -EAFNOSUPPORT for
 * an unknown family.
 */
int sonde__parse_quote(int af, const uint8_t *buf, size_t len,
                       sonde__quote_t *out);

/*
 * Kind and unreachable code of an ICMP (af AF_INET) or ICMPv6 type and code;
 * SONDE_KIND_NONE for a type sonde does not use. The one table, shared by
 * the parsers and the error-queue path.
 */
void sonde__icmp_classify(int af, int type, int code, sonde_kind_t *kind,
                          sonde_unreach_t *unreach);

/* Internet checksum (RFC 1071) of buf, starting from partial sum `sum`. */
uint16_t sonde__cksum(const void *buf, size_t len, uint32_t sum);

/*
 * Build an ICMP (af AF_INET) or ICMPv6 (AF_INET6) echo request into buf:
 * header + payload_len bytes of payload (a fixed pattern). For ICMPv6 the
 * checksum is left 0 (the kernel computes it on raw ICMPv6 sockets).
 * Returns the length written, -ENOBUFS if cap is too small, -EMSGSIZE for a
 * payload over 65527 bytes or -EAFNOSUPPORT for an unknown family.
 */
int sonde__build_echo(int af, uint8_t *buf, size_t cap, uint16_t id,
                      uint16_t seq, size_t payload_len);

#endif /* SONDE_PACKET_H */

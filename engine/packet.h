/*
 * packet.h - building probe packets and parsing what comes back.
 *
 * Everything here is pure: no sockets, no loop, no allocation. Parsing reads
 * untrusted bytes from the network: every length is checked before it is
 * read, and a packet that does not parse is rejected with a negative errno
 * (-EBADMSG for malformed, -ENOMSG for well-formed ICMP that sonde has no use
 * for), never read out of bounds. Fuzzed by spec/fuzz/fuzz_packet.c.
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
  uint8_t df;                 /* IPv4: the quoted DF bit; 0 for IPv6 */
  struct in6_addr src6, dst6; /* for AF_INET6 */
  struct in_addr src4, dst4;  /* for AF_INET */
  size_t l4_len;              /* bytes of the transport header present */
  int has_ports;              /* UDP/TCP: sport/dport present (l4_len >= 4) */
  uint16_t sport, dport;
  int has_tcp_seq;            /* TCP: l4_len >= 8 */
  uint32_t tcp_seq;
  int has_tcp_hdr;            /* TCP: l4_len >= 20: flags, window, offset */
  uint8_t tcp_flags;
  uint8_t tcp_doff;           /* header length in 32-bit words */
  uint16_t tcp_window;
  int has_tcp_mss;            /* an MSS option among the quoted options */
  uint16_t tcp_mss;
  int has_udp_csum;           /* UDP: l4_len >= 8 */
  uint16_t udp_len, udp_csum;
  int has_icmp_echo;          /* quoted ICMP echo request, l4_len >= 8 */
  uint16_t icmp_id, icmp_seq, icmp_csum;
  size_t data_len;            /* UDP, ICMP echo: payload bytes quoted (after
                                 the 8-byte header), padding included */
  uint8_t data[16];           /* the first of them (min(data_len, 16)) */
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
  size_t echo_data_len;         /* echo reply: its data, as the quote's */
  uint8_t echo_data[16];
  uint32_t mtu;                 /* frag needed (v4) / packet too big (v6) */
  uint32_t pointer;             /* parameter problem */
  int has_quote;
  sonde__quote_t quote;
  int has_ext;                  /* RFC 4884 extension structure found */
  int ext_form;                 /* SONDE__EXT_*: where it was found */
  int n_mpls;                   /* RFC 4950 label stack entries (capped) */
  sonde_mpls_t mpls[SONDE_MPLS_MAX];
  int mpls_truncated;           /* more entries than SONDE_MPLS_MAX */
  int n_ext;                    /* other objects (ext.c) */
  int ext_truncated;            /* more objects than SONDE_EXT_MAX */
  sonde_ext_t ext[SONDE_EXT_MAX];
} sonde__icmp_t;

/* ext.c: where an ICMP error's extension structure was found. */
enum {
  SONDE__EXT_NONE = 0,
  SONDE__EXT_RFC4884,   /* at the length attribute (RFC 4884 5) */
  SONDE__EXT_PADDED,    /* length attribute 0, at byte 128 (pre-RFC 4884) */
  SONDE__EXT_BYTES      /* length attribute past the end (a router that
                           wrote bytes instead of words), at byte 128 */
};

/*
 * ext.c: split the body of an ICMP error (data: everything after the
 * 8-byte ICMP header; rfc4884_len: the length attribute in bytes, 0 if
 * unset) into the original datagram and an RFC 4884 extension structure,
 * parse the structure's objects into out, and return the original
 * datagram's length. Every length checked.
 */
size_t sonde__ext_split(const uint8_t *data, size_t len, size_t rfc4884_len,
                        sonde__icmp_t *out);

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
 * Parse an ICMP or ICMPv6 message that starts with its ICMP header (ICMP
 * datagram "ping" sockets, either family). Same returns.
 */
int sonde__parse_icmp(int af, const uint8_t *buf, size_t len,
                      sonde__icmp_t *out);

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

/* A checksum (full) or offloaded partial sum (!full) after the words old
 * became new (len bytes, even): see checksum.c. */
uint16_t sonde__cksum_rewrite(uint16_t csum, int full, const uint8_t *old,
                              const uint8_t *new, size_t len);
/* The same for what a NAT rewrites: the source address (alen bytes, 4
 * or 16; 0 when the checksum does not sum it) and, with_port, the source
 * port or ICMP echo id. */
uint16_t sonde__cksum_nat(uint16_t csum, int full, const void *src_was,
                          const void *src_now, size_t alen, int with_port,
                          uint16_t port_was, uint16_t port_now);

/*
 * Build an ICMP (af AF_INET) or ICMPv6 (AF_INET6) echo request into buf:
 * header + payload_len bytes of payload (a fixed pattern). For ICMPv6 the
 * checksum is left 0 (the kernel computes it on raw ICMPv6 sockets).
 * Returns the length written, -ENOBUFS if cap is too small, -EMSGSIZE for a
 * payload over 65527 bytes or -EAFNOSUPPORT for an unknown family.
 */
int sonde__build_echo(int af, uint8_t *buf, size_t cap, uint16_t id,
                      uint16_t seq, size_t payload_len);

/*
 * The same for either echo message (reply 0: request, ICMP type 8 / ICMPv6
 * 128; reply 1: reply, type 0 / 129) with data_len bytes of data: copied
 * from data, or the fixed pattern when data is NULL. Same checksum rule
 * and returns.
 */
int sonde__build_echo_msg(int af, int reply, uint8_t *buf, size_t cap,
                          uint16_t id, uint16_t seq, const uint8_t *data,
                          size_t data_len);

/*
 * Checksum field value of a transport message: ICMPv4 over the message
 * alone; UDP/TCP (IPv4) and everything over IPv6 with the pseudo-header of
 * RFC 768/793 and RFC 8200 8.1. The message's own checksum field must be 0
 * (or the result is 0 when it already holds a valid checksum). af decides
 * the address length; proto is the transport protocol (IPPROTO_*).
 */
uint16_t sonde__l4_cksum(int af, const void *src, const void *dst,
                         uint8_t proto, const uint8_t *msg, size_t len);

/*
 * Write an IPv4 (20 bytes, no options, DF clear, header checksum filled) or
 * IPv6 (40 bytes, traffic class and flow label 0) header for a payload of
 * payload_len bytes of protocol proto, with the given TTL / hop limit. ip_id
 * is used for IPv4 only. Returns the header length (20 or 40), -ENOBUFS,
 * -EMSGSIZE (payload over 65515 bytes for IPv4, 65535 for IPv6) or
 * -EAFNOSUPPORT.
 */
int sonde__build_ip(int af, uint8_t *buf, size_t cap, const void *src,
                    const void *dst, uint8_t proto, uint8_t ttl,
                    uint16_t ip_id, size_t payload_len);

/* checksum.c: holding a transport checksum at a chosen value (Paris). */
uint16_t sonde__pseudo_sum(int af, const void *src, const void *dst,
                           uint8_t proto, uint32_t len);
void sonde__checksum_hold(uint8_t *msg, size_t len, size_t at,
                          uint16_t pseudo, uint16_t target);

/*
 * A TCP segment as read from a raw IPPROTO_TCP socket (syn.c: the answer
 * to a SYN probe): IPv4 sockets read the IP header first, IPv6 ones start
 * at the TCP header (raw(7), ipv6(7)).
 */
typedef struct {
  uint8_t dst[16];  /* IPv4: the header's destination; IPv6: left as it was
                       (the caller takes it from IPV6_PKTINFO) */
  uint16_t sport, dport;
  uint32_t ack;
  uint8_t flags;
  int ttl;          /* IPv4: the header's TTL; IPv6: left as it was
                       (IPV6_HOPLIMIT) */
} sonde__seg_t;

/*
 * Parse a segment of af read from a raw TCP socket into out: the ports,
 * flags and acknowledgment number of a TCP header whose data offset fits
 * the bytes read (IPv4: within the header's total length; a later
 * fragment, a non-TCP datagram or an IHL under 5 is malformed). Returns 0
 * or -EBADMSG. Fuzzed by spec/fuzz/fuzz_syn.c.
 */
int sonde__parse_seg(int af, const uint8_t *buf, size_t len,
                     sonde__seg_t *out);

/*
 * errmsg.c: the ancillary data of a message read with MSG_ERRQUEUE. Fills
 * res's kind, unreach, icmp_type, icmp_code, mtu and addr (the offender).
 * Returns 1 for an ICMP/ICMPv6 error sonde knows, 0 for anything else
 * (a local error, no IP_RECVERR cmsg). Every length checked: control is
 * read as untrusted bytes (fuzzed).
 */
int sonde__parse_errmsg(const void *control, size_t len, sonde_result_t *res);

#endif /* SONDE_PACKET_H */

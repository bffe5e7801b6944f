/*
 * replies.h - building what a router or a destination sends back: ICMP
 * errors (with RFC 4884 / RFC 4950 MPLS extensions), echo replies and bare
 * TCP segments. Only the simulator sends replies, so they live with it;
 * the checksums, the IP header and the parsers they are checked against
 * are the engine's own (engine/packet.h): what the simulator sends and
 * what sonde parses come from one packet library. All pure: they write
 * into the caller's buf (which stays the caller's) and return the length
 * written, or -ENOBUFS if cap is too small, -EMSGSIZE if the result cannot
 * fit an IP datagram, -EAFNOSUPPORT for an af other than AF_INET/AF_INET6,
 * -EINVAL for a meaningless combination. Addresses are raw bytes in network order: 4 for
 * AF_INET (struct in_addr), 16 for AF_INET6 (struct in6_addr).
 */
#ifndef SONDE_NETSIM_REPLIES_H
#define SONDE_NETSIM_REPLIES_H

#include <stddef.h>
#include <stdint.h>

#include "packet.h"

/* TCP flags for netsim_build_tcp. */
#define NETSIM_TCP_FIN 0x01
#define NETSIM_TCP_SYN 0x02
#define NETSIM_TCP_RST 0x04
#define NETSIM_TCP_ACK 0x10

/* Where an extension structure goes in an ICMP error. */
enum {
  NETSIM_EXT_NONE = 0,  /* no extension: the quote as given */
  NETSIM_EXT_RFC4884,   /* RFC 4884: quote zero-padded to at least 128 bytes
                           and a multiple of 4 (ICMPv4) or 8 (ICMPv6), its
                           length in the header's length attribute */
  NETSIM_EXT_PADDED,    /* the non-compliant form of pre-RFC 4884 MPLS
                           routers: quote cut or zero-padded to exactly 128
                           bytes, length attribute 0 */
  NETSIM_EXT_BYTES      /* the quote as for NETSIM_EXT_PADDED, the length
                           attribute 128: a router that counts bytes where
                           RFC 4884 counts 32- or 64-bit words */
};

/* An RFC 5837 interface information object (netsim_append_ifinfo). */
typedef struct {
  int role;             /* 0 incoming, 1 sub-IP, 2 outgoing, 3 next hop */
  int has_ifindex;
  uint32_t ifindex;
  int addr_af;          /* 0: no address sub-object */
  uint8_t addr[16];
  char name[64];        /* "": no name sub-object; at most 63 bytes */
  int has_mtu;
  uint32_t mtu;
} netsim_ifinfo_t;

/* An ICMP or ICMPv6 error to build (netsim_build_icmp_error). */
typedef struct {
  int af;                 /* AF_INET: ICMP; AF_INET6: ICMPv6 */
  uint8_t type, code;
  uint32_t info;          /* header bytes 4-7 (next-hop MTU, pointer, ...);
                             the builder sets the RFC 4884 length in it */
  const uint8_t *quote;   /* the offending datagram as far as quoted */
  size_t quote_len;
  const uint8_t *ext;     /* an extension structure (e.g. from
                             netsim_build_mpls_ext), or NULL */
  size_t ext_len;
  int ext_form;           /* NETSIM_EXT_RFC4884 or NETSIM_EXT_PADDED when
                             ext_len > 0 */
  const void *src, *dst;  /* AF_INET6: the reply's addresses, for the
                             checksum's pseudo-header; ignored for AF_INET */
} netsim_icmp_error_t;

/* A TCP segment without payload to build (netsim_build_tcp). */
typedef struct {
  int af;
  const void *src, *dst;  /* the segment's addresses (pseudo-header) */
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint8_t flags;          /* NETSIM_TCP_* */
  uint16_t window;
  uint16_t mss;           /* > 0: an MSS option (4 bytes) is added */
} netsim_tcp_seg_t;

/*
 * Write an RFC 4884 extension structure (version 2, checksum filled) holding
 * one RFC 4950 MPLS label stack object (class 1, c-type 1) with n entries;
 * with n == 0 the structure is the 4-byte header alone. Each entry keeps the
 * low 20 bits of label, 3 of exp, 1 of s. Returns 4 + (n ? 4 + 4n : 0),
 * -ENOBUFS, or -EINVAL for n < 0 or n > 255.
 */
int netsim_build_mpls_ext(uint8_t *buf, size_t cap, const sonde_mpls_t *mpls,
                          int n);

/*
 * Append an RFC 5837 interface information object (class 2; the c-type's
 * role and sub-object bits from x) to the extension structure of len
 * bytes in buf, and fill the structure's checksum again. Returns the new
 * length, -ENOBUFS, or -EINVAL for a role over 3 or a name over 63 bytes.
 */
int netsim_append_ifinfo(uint8_t *buf, size_t len, size_t cap,
                         const netsim_ifinfo_t *x);

/*
 * Write an ICMP (af AF_INET) or ICMPv6 error message, starting with its
 * type: the 8-byte header, the quote, then the extension structure in the
 * form e->ext_form asks (RFC 4884 length attribute in byte 5 for ICMPv4,
 * byte 4 for ICMPv6). The checksum is filled (ICMPv6: over the
 * pseudo-header of e->src, e->dst). An extension is only allowed on the
 * types RFC 4884 gives a length attribute to (ICMPv4 3, 11, 12; ICMPv6 1,
 * 3), else -EINVAL; with NETSIM_EXT_RFC4884 a quote longer than 1020
 * (ICMPv4) or 2040 (ICMPv6) bytes cannot be described: -EMSGSIZE. Returns
 * the length, -ENOBUFS, -EMSGSIZE, -EINVAL or -EAFNOSUPPORT.
 */
int netsim_build_icmp_error(uint8_t *buf, size_t cap,
                            const netsim_icmp_error_t *e);

/*
 * Write an ICMP (af AF_INET, type 0) or ICMPv6 (type 129) echo reply with id
 * and seq and data_len bytes of data (what the request carried). The
 * checksum is filled (ICMPv6: over the pseudo-header of src and dst; src
 * and dst are ignored for AF_INET and may be NULL there). Returns the
 * length, -ENOBUFS, -EMSGSIZE or -EAFNOSUPPORT.
 */
int netsim_build_echo_reply(int af, uint8_t *buf, size_t cap, uint16_t id,
                            uint16_t seq, const uint8_t *data,
                            size_t data_len, const void *src,
                            const void *dst);

/*
 * Write a TCP header without payload (a SYN-ACK answering a SYN, or a RST),
 * data offset 5 or 6 words (with the MSS option), urgent pointer 0, the
 * checksum filled over the pseudo-header. Returns 20 or 24, -ENOBUFS or
 * -EAFNOSUPPORT.
 */
int netsim_build_tcp(uint8_t *buf, size_t cap, const netsim_tcp_seg_t *t);

#endif /* SONDE_NETSIM_REPLIES_H */

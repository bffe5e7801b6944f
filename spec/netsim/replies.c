/*
 * replies.c - the reply builders of replies.h: header, quote, extension,
 * checksum, every length checked against the caller's buffer. Byte access
 * only (no casts of the buffer to header structs).
 */
#include <errno.h>
#include <string.h>

#include "replies.h"

/* RFC 4884: an extension structure follows at least 128 bytes of quote,
 * and the length attribute counts at most 255 words of it. */
#define RFC4884_MIN_QUOTE 128
#define RFC4884_MAX_WORDS 255
#define EXT_VERSION 2
#define EXT_CLASS_MPLS 1 /* RFC 4950 */
#define EXT_CTYPE_MPLS 1

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/*
 * RFC 4884 7 extension header (version 2, reserved 0, checksum over the
 * whole structure), then one RFC 4950 object: length, class 1, c-type 1,
 * one 32-bit entry per label (label:20, exp:3, s:1, ttl:8).
 */
int netsim_build_mpls_ext(uint8_t *buf, size_t cap, const sonde_mpls_t *mpls,
                          int n) {
  size_t len, i;

  if (n < 0 || n > 255)
    return -EINVAL;
  len = 4 + (n ? 4 + 4 * (size_t)n : 0);
  if (cap < len)
    return -ENOBUFS;
  buf[0] = EXT_VERSION << 4;
  buf[1] = 0;
  put16(buf + 2, 0);
  if (n) {
    put16(buf + 4, (uint16_t)(4 + 4 * n));
    buf[6] = EXT_CLASS_MPLS;
    buf[7] = EXT_CTYPE_MPLS;
    for (i = 0; i < (size_t)n; i++)
      put32(buf + 8 + 4 * i, (mpls[i].label & 0xfffffu) << 12 |
                                 (uint32_t)(mpls[i].exp & 7) << 9 |
                                 (uint32_t)(mpls[i].s & 1) << 8 |
                                 mpls[i].ttl);
  }
  put16(buf + 2, sonde__cksum(buf, len, 0));
  return (int)len;
}

/*
 * RFC 5837 4: c-type = role (2 bits), 2 reserved bits, then one bit per
 * sub-object present: ifIndex, IP address, name, MTU, written in that
 * order. The name sub-object is a length octet (counting itself, a
 * multiple of 4) and the name, zero-padded.
 */
int netsim_append_ifinfo(uint8_t *buf, size_t len, size_t cap,
                         const netsim_ifinfo_t *x) {
  size_t nlen = strlen(x->name), olen = 4, at = len;
  size_t alen = x->addr_af == AF_INET ? 4 : x->addr_af == AF_INET6 ? 16 : 0;
  size_t name_sub = nlen ? (1 + nlen + 3) / 4 * 4 : 0;
  uint8_t ctype;

  if (x->role < 0 || x->role > 3 || nlen > 63 || len < 4)
    return -EINVAL;
  ctype = (uint8_t)(x->role << 6);
  if (x->has_ifindex) {
    ctype |= 0x08;
    olen += 4;
  }
  if (alen) {
    ctype |= 0x04;
    olen += 4 + alen;
  }
  if (nlen) {
    ctype |= 0x02;
    olen += name_sub;
  }
  if (x->has_mtu) {
    ctype |= 0x01;
    olen += 4;
  }
  if (cap < len || cap - len < olen)
    return -ENOBUFS;
  memset(buf + at, 0, olen);
  put16(buf + at, (uint16_t)olen);
  buf[at + 2] = 2;
  buf[at + 3] = ctype;
  at += 4;
  if (x->has_ifindex) {
    put32(buf + at, x->ifindex);
    at += 4;
  }
  if (alen) {
    put16(buf + at, x->addr_af == AF_INET ? 1 : 2);
    memcpy(buf + at + 4, x->addr, alen);
    at += 4 + alen;
  }
  if (nlen) {
    buf[at] = (uint8_t)name_sub;
    memcpy(buf + at + 1, x->name, nlen);
    at += name_sub;
  }
  if (x->has_mtu)
    put32(buf + at, x->mtu);
  put16(buf + 2, 0);
  put16(buf + 2, sonde__cksum(buf, len + olen, 0));
  return (int)(len + olen);
}

/* The types that carry an RFC 4884 length attribute, and where it is. */
static int rfc4884_offset(int af, uint8_t type) {
  if (af == AF_INET)
    return type == 3 || type == 11 || type == 12 ? 5 : -1;
  return type == 1 || type == 3 ? 4 : -1;
}

/*
 * Header, quote (padded per the extension form), extension, checksum. The
 * padding is zeros, as RFC 4884 5.1 asks; the non-compliant form cuts a
 * longer quote at 128 bytes, as the routers that send it do.
 */
int netsim_build_icmp_error(uint8_t *buf, size_t cap,
                            const netsim_icmp_error_t *e) {
  int af = e->af, at;
  size_t qlen = e->quote_len, qcopy = e->quote_len, words = 0, total;
  size_t unit = af == AF_INET ? 4 : 8;

  if (af != AF_INET && af != AF_INET6)
    return -EAFNOSUPPORT;
  at = rfc4884_offset(af, e->type);
  if (e->ext_len > 0) {
    if (at < 0 || (e->ext_form != NETSIM_EXT_RFC4884 &&
                   e->ext_form != NETSIM_EXT_PADDED &&
                   e->ext_form != NETSIM_EXT_BYTES))
      return -EINVAL;
    if (e->ext_form != NETSIM_EXT_RFC4884) {
      qlen = RFC4884_MIN_QUOTE;
      if (qcopy > qlen)
        qcopy = qlen;
      if (e->ext_form == NETSIM_EXT_BYTES)
        words = RFC4884_MIN_QUOTE; /* bytes, where words belong */
    } else {
      if (qlen < RFC4884_MIN_QUOTE)
        qlen = RFC4884_MIN_QUOTE;
      qlen = (qlen + unit - 1) / unit * unit;
      words = qlen / unit;
      if (words > RFC4884_MAX_WORDS)
        return -EMSGSIZE;
    }
  }
  total = 8 + qlen + e->ext_len;
  if (total > 0xffff - (af == AF_INET ? 20 : 0))
    return -EMSGSIZE;
  if (cap < total)
    return -ENOBUFS;
  buf[0] = e->type;
  buf[1] = e->code;
  put16(buf + 2, 0);
  put32(buf + 4, e->info);
  if (words)
    buf[at] = (uint8_t)words;
  if (qcopy)
    memcpy(buf + 8, e->quote, qcopy);
  memset(buf + 8 + qcopy, 0, qlen - qcopy);
  if (e->ext_len)
    memcpy(buf + 8 + qlen, e->ext, e->ext_len);
  put16(buf + 2, sonde__l4_cksum(af, e->src, e->dst,
                                 af == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6,
                                 buf, total));
  return (int)total;
}

/*
 * Echo reply (ICMP type 0, ICMPv6 129): id, seq and the request's data as
 * they came (RFC 792, RFC 4443 4.2), checksum filled. Returns the length.
 */
int netsim_build_echo_reply(int af, uint8_t *buf, size_t cap, uint16_t id,
                            uint16_t seq, const uint8_t *data,
                            size_t data_len, const void *src,
                            const void *dst) {
  int n;

  if (af == AF_INET && data_len > 0xffff - 8 - 20)
    return -EMSGSIZE; /* the IPv4 header counts in its total length */
  n = sonde__build_echo_msg(af, 1, buf, cap, id, seq, data, data_len);
  if (n < 0)
    return n;
  /* ICMPv6's checksum covers the pseudo-header (RFC 4443 2.3): no kernel
   * fills it on the simulator's TUN device */
  if (af == AF_INET6)
    put16(buf + 2, sonde__l4_cksum(af, src, dst, IPPROTO_ICMPV6, buf,
                                   (size_t)n));
  return n;
}

/*
 * A bare TCP header: ports, seq, ack, flags, window, an optional MSS option
 * (kind 2, length 4), checksum over the pseudo-header. Returns 20 or 24.
 */
int netsim_build_tcp(uint8_t *buf, size_t cap, const netsim_tcp_seg_t *t) {
  size_t len = t->mss ? 24 : 20;

  if (t->af != AF_INET && t->af != AF_INET6)
    return -EAFNOSUPPORT;
  if (cap < len)
    return -ENOBUFS;
  put16(buf, t->sport);
  put16(buf + 2, t->dport);
  put32(buf + 4, t->seq);
  put32(buf + 8, t->ack);
  buf[12] = (uint8_t)((len / 4) << 4);
  buf[13] = t->flags;
  put16(buf + 14, t->window);
  put16(buf + 16, 0);
  put16(buf + 18, 0);
  if (t->mss) {
    buf[20] = 2; /* kind MSS, length 4 (RFC 793) */
    buf[21] = 4;
    put16(buf + 22, t->mss);
  }
  put16(buf + 16,
        sonde__l4_cksum(t->af, t->src, t->dst, IPPROTO_TCP, buf, len));
  return (int)len;
}

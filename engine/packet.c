/*
 * packet.c - building probe packets and parsing ICMP/ICMPv6 replies.
 *
 * Every byte comes from the network and is read through get16()/get32() or
 * plain byte access after a length check: no casts of the buffer to header
 * structs (the quote inside an ICMP error is not aligned).
 */
#include <errno.h>
#include <string.h>

#include "packet.h"

/* IPv6 extension headers the quote walker steps over (RFC 8200 4.1). */
#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_DSTOPTS 60
#define MAX_EXT_HDRS 8


static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/*
 * RFC 1071 one's complement sum, folded and complemented: the value to store
 * in a checksum field, or 0 when run over data that carries a valid checksum.
 * `sum` is a partial sum (e.g. a pseudo-header) of big-endian 16-bit words.
 */
uint16_t sonde__cksum(const void *buf, size_t len, uint32_t sum) {
  const uint8_t *p = buf;
  uint64_t acc = sum;
  size_t i;

  for (i = 0; i + 1 < len; i += 2)
    acc += get16(p + i);
  if (len & 1)
    acc += (uint32_t)p[len - 1] << 8;
  while (acc >> 16)
    acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)~acc;
}

/*
 * Write an echo request: type, code, checksum, id, seq, then payload_len bytes
 * of the pattern 0x00, 0x01, ... (mod 256). The ICMPv4 checksum is filled in;
 * the ICMPv6 one is left 0 because the kernel computes it on raw ICMPv6
 * sockets (RFC 3542 3.1). Returns the length, -ENOBUFS if cap is too small,
 * -EMSGSIZE if the message cannot fit an IP datagram, -EAFNOSUPPORT for an
 * af other than AF_INET/AF_INET6. buf stays the caller's.
 */
int sonde__build_echo_msg(int af, int reply, uint8_t *buf, size_t cap,
                          uint16_t id, uint16_t seq, const uint8_t *data,
                          size_t data_len) {
  size_t i;

  if (af != AF_INET && af != AF_INET6)
    return -EAFNOSUPPORT;
  if (data_len > 0xffff - 8)
    return -EMSGSIZE;
  if (cap < 8 + data_len)
    return -ENOBUFS;
  if (af == AF_INET)
    buf[0] = reply ? 0 : 8;
  else
    buf[0] = reply ? 129 : 128;
  buf[1] = 0;
  put16(buf + 2, 0);
  put16(buf + 4, id);
  put16(buf + 6, seq);
  if (data != NULL) {
    if (data_len)
      memcpy(buf + 8, data, data_len);
  } else {
    for (i = 0; i < data_len; i++)
      buf[8 + i] = (uint8_t)i;
  }
  if (af == AF_INET)
    put16(buf + 2, sonde__cksum(buf, 8 + data_len, 0));
  return (int)(8 + data_len);
}

int sonde__build_echo(int af, uint8_t *buf, size_t cap, uint16_t id,
                      uint16_t seq, size_t payload_len) {
  return sonde__build_echo_msg(af, 0, buf, cap, id, seq, NULL, payload_len);
}

/* TCP: flags, window, header length and the MSS option, as far as the
 * quote holds the options (RFC 9293 3.1: kind 0 ends them, kind 1 is one
 * byte, every other kind has a length byte of at least 2). */
static void parse_tcp(sonde__quote_t *q, const uint8_t *p, size_t n) {
  size_t off = 20, end;

  q->has_tcp_hdr = 1;
  q->tcp_doff = p[12] >> 4;
  q->tcp_flags = p[13];
  q->tcp_window = get16(p + 14);
  end = (size_t)q->tcp_doff * 4;
  if (end > n)
    end = n;
  while (off < end && p[off] != 0) {
    if (p[off] == 1) {
      off++;
      continue;
    }
    if (end - off < 2 || p[off + 1] < 2 || p[off + 1] > end - off)
      break;
    if (p[off] == 2 && p[off + 1] == 4) {
      q->has_tcp_mss = 1;
      q->tcp_mss = get16(p + off + 2);
    }
    off += p[off + 1];
  }
}

/* The transport header fields that identify a probe, as far as present. */
static void parse_l4(sonde__quote_t *q, const uint8_t *p, size_t n) {
  uint8_t echo_type = q->af == AF_INET ? 8 : 128;
  uint8_t icmp_proto = q->af == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;

  q->l4_len = n;
  if (q->proto == IPPROTO_UDP || q->proto == IPPROTO_TCP) {
    if (n >= 4) {
      q->has_ports = 1;
      q->sport = get16(p);
      q->dport = get16(p + 2);
    }
    if (n >= 8 && q->proto == IPPROTO_UDP) {
      q->has_udp_csum = 1;
      q->udp_len = get16(p + 4);
      q->udp_csum = get16(p + 6);
      q->data_len = n - 8;
      memcpy(q->data, p + 8, n - 8 < sizeof(q->data) ? n - 8 : sizeof(q->data));
    } else if (n >= 8) {
      q->has_tcp_seq = 1;
      q->tcp_seq = get32(p + 4);
      if (n >= 20)
        parse_tcp(q, p, n);
    }
  } else if (q->proto == icmp_proto && n >= 8 && p[0] == echo_type) {
    q->has_icmp_echo = 1;
    q->icmp_csum = get16(p + 2);
    q->icmp_id = get16(p + 4);
    q->icmp_seq = get16(p + 6);
    q->data_len = n - 8;
    memcpy(q->data, p + 8, n - 8 < sizeof(q->data) ? n - 8 : sizeof(q->data));
  }
}

static int parse_quote4(const uint8_t *b, size_t len, sonde__quote_t *q) {
  size_t ihl;

  if (len < 20 || b[0] >> 4 != 4)
    return -EBADMSG;
  ihl = (size_t)(b[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len)
    return -EBADMSG;
  q->tos = b[1];
  q->ip_total_len = get16(b + 2);
  q->ip_id = get16(b + 4);
  q->df = (b[6] & 0x40) != 0;
  q->ttl = b[8];
  q->proto = b[9];
  memcpy(&q->src4, b + 12, 4);
  memcpy(&q->dst4, b + 16, 4);
  /* A non-first fragment carries no transport header. Routers only send
   * errors about first fragments (RFC 1812 4.3.2.7), but do not rely on it. */
  if (get16(b + 6) & 0x1fff)
    return 0;
  parse_l4(q, b + ihl, len - ihl);
  return 0;
}

static int is_ext_hdr(uint8_t nh) {
  return nh == NH_HOPOPTS || nh == NH_ROUTING || nh == NH_DSTOPTS ||
         nh == NH_FRAGMENT;
}

static int parse_quote6(const uint8_t *b, size_t len, sonde__quote_t *q) {
  size_t off = 40, hl;
  uint8_t nh;
  int i;

  if (len < 40 || b[0] >> 4 != 6)
    return -EBADMSG;
  q->tos = (uint8_t)(((b[0] & 0x0f) << 4) | (b[1] >> 4));
  q->flow = get32(b) & 0xfffff;
  q->ip_total_len = get16(b + 4);
  nh = b[6];
  q->ttl = b[7];
  memcpy(&q->src6, b + 8, 16);
  memcpy(&q->dst6, b + 24, 16);
  /* Step over extension headers to the transport header. If one is cut off
   * (or there are too many), proto names it and l4_len stays 0: the quote is
   * valid, the ports are not there. */
  for (i = 0; is_ext_hdr(nh); i++) {
    if (i == MAX_EXT_HDRS || len - off < 8)
      break;
    if (nh == NH_FRAGMENT && (get16(b + off + 2) & 0xfff8)) {
      q->proto = b[off]; /* a non-first fragment: no transport header */
      return 0;
    }
    hl = nh == NH_FRAGMENT ? 8 : ((size_t)b[off + 1] + 1) * 8;
    if (hl > len - off)
      break;
    nh = b[off];
    off += hl;
  }
  q->proto = nh;
  if (is_ext_hdr(nh))
    return 0;
  parse_l4(q, b + off, len - off);
  return 0;
}

/*
 * Parse the packet quoted in an ICMP error: the IP header, IPv6 extension
 * headers, then the transport header fields that are present (routers may
 * keep only 8 bytes of it: RFC 792). A quote without a complete IP header is
 * -EBADMSG; a shorter transport header just leaves its has_* flags 0.
 * l4_len counts every byte after the IP (and extension) headers, padding
 * included: quoted length fields are not trusted, some routers rewrite them.
 * Returns 0, -EBADMSG, or -EAFNOSUPPORT for an af other than AF_INET/6.
 */
int sonde__parse_quote(int af, const uint8_t *buf, size_t len,
                       sonde__quote_t *out) {
  memset(out, 0, sizeof(*out));
  out->af = af;
  if (af == AF_INET)
    return parse_quote4(buf, len, out);
  if (af == AF_INET6)
    return parse_quote6(buf, len, out);
  return -EAFNOSUPPORT;
}

/*
 * The body of an ICMP error: data is everything after the 8-byte ICMP
 * header, rfc4884_len the original-datagram length in bytes (0 if unset).
 * Splits off an extension structure (ext.c), then parses the quote.
 */
static int parse_error_body(const uint8_t *data, size_t len,
                            size_t rfc4884_len, sonde__icmp_t *out) {
  size_t qlen = sonde__ext_split(data, len, rfc4884_len, out);

  if (sonde__parse_quote(out->af, data, qlen, &out->quote) != 0)
    return -EBADMSG;
  out->has_quote = 1;
  return 0;
}

static const uint8_t unreach4[16] = {
    SONDE_UNREACH_NET,         SONDE_UNREACH_HOST,
    SONDE_UNREACH_PROTOCOL,    SONDE_UNREACH_PORT,
    SONDE_UNREACH_FRAG_NEEDED, SONDE_UNREACH_SOURCE_ROUTE,
    SONDE_UNREACH_NET_UNKNOWN, SONDE_UNREACH_HOST_UNKNOWN,
    SONDE_UNREACH_OTHER,       /* 8: source host isolated (obsolete) */
    SONDE_UNREACH_PROHIBITED,  /* 9: network administratively prohibited */
    SONDE_UNREACH_PROHIBITED,  /* 10: host administratively prohibited */
    SONDE_UNREACH_NET,         /* 11: network unreachable for TOS */
    SONDE_UNREACH_HOST,        /* 12: host unreachable for TOS */
    SONDE_UNREACH_PROHIBITED,  /* 13: communication prohibited (RFC 1812) */
    SONDE_UNREACH_PRECEDENCE,  /* 14: host precedence violation */
    SONDE_UNREACH_PRECEDENCE,  /* 15: precedence cutoff in effect */
};

static const uint8_t unreach6[7] = {
    SONDE_UNREACH_NET, /* 0: no route to destination */
    SONDE_UNREACH_PROHIBITED,   SONDE_UNREACH_BEYOND_SCOPE,
    SONDE_UNREACH_ADDRESS,      SONDE_UNREACH_PORT,
    SONDE_UNREACH_POLICY,       SONDE_UNREACH_REJECT_ROUTE,
};

/* ICMPv6 types in the same switch as ICMPv4 ones. */
#define V6(type) (0x100 | (type))

/*
 * Kind and unreachable code of an ICMP (af AF_INET) or ICMPv6 type and code:
 * the one table, used by the parser and by the error-queue path (where the
 * kernel hands over type and code without the packet). SONDE_KIND_NONE for
 * a type sonde has no use for.
 */
void sonde__icmp_classify(int af, int type, int code, sonde_kind_t *kind,
                          sonde_unreach_t *unreach) {
  *kind = SONDE_KIND_NONE;
  *unreach = SONDE_UNREACH_NONE;
  switch (af == AF_INET6 ? V6(type) : type) {
  case 0:
  case V6(129):
    *kind = SONDE_KIND_ECHO_REPLY;
    break;
  case 3:
    *kind = SONDE_KIND_DEST_UNREACHABLE;
    *unreach = code >= 0 && code < 16 ? (sonde_unreach_t)unreach4[code]
                                      : SONDE_UNREACH_OTHER;
    break;
  case V6(1):
    *kind = SONDE_KIND_DEST_UNREACHABLE;
    *unreach = code >= 0 && code < 7 ? (sonde_unreach_t)unreach6[code]
                                     : SONDE_UNREACH_OTHER;
    break;
  case 11:
  case V6(3):
    /* Code 1 is fragment reassembly time exceeded (RFC 792, RFC 4443
     * 3.3): a host gave up reassembling a datagram, it says nothing about
     * the hop a TTL reached. Never a hop. */
    if (code != 1)
      *kind = SONDE_KIND_TIME_EXCEEDED;
    break;
  case 12:
  case V6(4):
    *kind = SONDE_KIND_PARAM_PROBLEM;
    break;
  case V6(2):
    *kind = SONDE_KIND_PACKET_TOO_BIG;
    break;
  }
}

/*
 * The ICMP message proper, either family. RFC 4884 puts the length
 * attribute in byte 5 (ICMPv4, 32-bit words) or byte 4 (ICMPv6, 64-bit
 * words) of the errors that have one.
 */
static int parse_icmp(const uint8_t *p, size_t len, sonde__icmp_t *out) {
  int v4 = out->af == AF_INET;
  size_t rfc4884_len = 0;

  if (len < 8)
    return -EBADMSG;
  out->type = p[0];
  out->code = p[1];
  sonde__icmp_classify(out->af, p[0], p[1], &out->kind, &out->unreach);
  switch (v4 ? p[0] : V6(p[0])) {
  case 0:
  case V6(129):
    out->echo_id = get16(p + 4);
    out->echo_seq = get16(p + 6);
    out->echo_data_len = len - 8;
    memcpy(out->echo_data, p + 8,
           len - 8 < sizeof(out->echo_data) ? len - 8 : sizeof(out->echo_data));
    return 0;
  case 3:
    if (p[1] == 4) /* RFC 1191: next-hop MTU, 0 from older routers */
      out->mtu = get16(p + 6);
    rfc4884_len = (size_t)p[5] * 4;
    break;
  case 11:
    if (out->kind == SONDE_KIND_NONE)
      return -ENOMSG; /* code 1: reassembly, see sonde__icmp_classify */
    rfc4884_len = (size_t)p[5] * 4;
    break;
  case V6(3):
    if (out->kind == SONDE_KIND_NONE)
      return -ENOMSG;
    /* fall through */
  case V6(1):
    rfc4884_len = (size_t)p[4] * 8;
    break;
  case 12:
    out->pointer = p[4];
    rfc4884_len = (size_t)p[5] * 4;
    break;
  case V6(4):
    out->pointer = get32(p + 4);
    break;
  case V6(2):
    out->mtu = get32(p + 4);
    break;
  default:
    return -ENOMSG; /* echo request, redirect, neighbour discovery, ... */
  }
  return parse_error_body(p + 8, len - 8, rfc4884_len, out);
}

/*
 * Parse an IPv4 datagram from a raw IPPROTO_ICMP socket. Linux hands over
 * the IP header as received (total length in network order, unlike the
 * BSDs). The datagram is cut to min(total length, len). The ICMP checksum is
 * checked here because the kernel does not check it for raw sockets; a
 * truncated read or a first fragment cannot be checked and is parsed as far
 * as it goes. Returns 0, -EBADMSG or -ENOMSG; out is fully written on 0.
 */
int sonde__parse_icmp4(const uint8_t *buf, size_t len, sonde__icmp_t *out) {
  size_t ihl, total;
  uint16_t frag;

  memset(out, 0, sizeof(*out));
  out->af = AF_INET;
  if (len < 20 || buf[0] >> 4 != 4)
    return -EBADMSG;
  ihl = (size_t)(buf[0] & 0x0f) * 4;
  total = get16(buf + 2);
  frag = get16(buf + 6);
  if (ihl < 20 || ihl > len || total < ihl || buf[9] != IPPROTO_ICMP)
    return -EBADMSG;
  if (frag & 0x1fff)
    return -EBADMSG; /* a later fragment: no ICMP header in it */
  if (total <= len && !(frag & 0x2000) &&
      sonde__cksum(buf + ihl, total - ihl, 0) != 0)
    return -EBADMSG;
  if (total > len)
    total = len;
  out->reply_ttl = buf[8];
  memcpy(&out->from4, buf + 12, 4);
  memcpy(&out->to4, buf + 16, 4);
  return parse_icmp(buf + ihl, total - ihl, out);
}

/*
 * Parse an ICMPv6 message from a raw IPPROTO_ICMPV6 socket (no IPv6 header;
 * the kernel has verified the checksum). reply_ttl is -1: the hop limit comes
 * in a cmsg. Returns 0, -EBADMSG or -ENOMSG; out is fully written on 0.
 */
int sonde__parse_icmp6(const uint8_t *buf, size_t len, sonde__icmp_t *out) {
  return sonde__parse_icmp(AF_INET6, buf, len, out);
}

/*
 * Parse an ICMP (af AF_INET) or ICMPv6 message that starts with its ICMP
 * header, as ICMP datagram ("ping") sockets of either family return it; the
 * kernel has checked the checksum. reply_ttl is -1 (it comes in a cmsg).
 * Returns 0, -EBADMSG or -ENOMSG; out is fully written on 0.
 */
int sonde__parse_icmp(int af, const uint8_t *buf, size_t len,
                      sonde__icmp_t *out) {
  memset(out, 0, sizeof(*out));
  out->af = af == AF_INET6 ? AF_INET6 : AF_INET;
  out->reply_ttl = -1;
  return parse_icmp(buf, len, out);
}

/* ---------------------------------------------------------------------------
 * Checksums and IP headers for the probes the engine writes itself. */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/*
 * Checksum field value of a transport message; ICMPv4 has no pseudo-header,
 * everything else does (RFC 768, RFC 793, RFC 8200 8.1), summed by
 * sonde__pseudo_sum. msg's checksum field must hold 0.
 */
uint16_t sonde__l4_cksum(int af, const void *src, const void *dst,
                         uint8_t proto, const uint8_t *msg, size_t len) {
  uint16_t pseudo = 0;

  if (af == AF_INET6 || (af == AF_INET && proto != IPPROTO_ICMP))
    pseudo = sonde__pseudo_sum(af, src, dst, proto, (uint32_t)len);
  return sonde__cksum(msg, len, pseudo);
}

/*
 * IPv4: version 4, IHL 5, TOS 0, flags/fragment 0, header checksum filled.
 * IPv6: version 6, traffic class 0, flow label 0. Returns the header length.
 */
int sonde__build_ip(int af, uint8_t *buf, size_t cap, const void *src,
                    const void *dst, uint8_t proto, uint8_t ttl,
                    uint16_t ip_id, size_t payload_len) {
  if (af == AF_INET) {
    if (payload_len > 0xffff - 20)
      return -EMSGSIZE;
    if (cap < 20)
      return -ENOBUFS;
    buf[0] = 0x45;
    buf[1] = 0;
    put16(buf + 2, (uint16_t)(20 + payload_len));
    put16(buf + 4, ip_id);
    put16(buf + 6, 0);
    buf[8] = ttl;
    buf[9] = proto;
    put16(buf + 10, 0);
    memcpy(buf + 12, src, 4);
    memcpy(buf + 16, dst, 4);
    put16(buf + 10, sonde__cksum(buf, 20, 0));
    return 20;
  }
  if (af == AF_INET6) {
    if (payload_len > 0xffff)
      return -EMSGSIZE;
    if (cap < 40)
      return -ENOBUFS;
    put32(buf, 0x60000000u);
    put16(buf + 4, (uint16_t)payload_len);
    buf[6] = proto;
    buf[7] = ttl;
    memcpy(buf + 8, src, 16);
    memcpy(buf + 24, dst, 16);
    return 40;
  }
  return -EAFNOSUPPORT;
}

int sonde__parse_seg(int af, const uint8_t *b, size_t n, sonde__seg_t *s) {
  size_t off = 0, doff;
  if (af == AF_INET) {
    size_t ihl, total;
    if (n < 20 || (b[0] >> 4) != 4 || b[9] != IPPROTO_TCP)
      return -EBADMSG;
    ihl = (size_t)(b[0] & 0x0f) * 4;
    total = get16(b + 2);
    if (ihl < 20 || total < ihl || total > n)
      return -EBADMSG;
    if ((get16(b + 6) & 0x1fff) != 0)
      return -EBADMSG; /* a later fragment has no TCP header */
    memcpy(s->dst, b + 16, 4);
    s->ttl = b[8];
    off = ihl;
    n = total;
  }
  if (n - off < 20)
    return -EBADMSG;
  b += off;
  doff = (size_t)(b[12] >> 4) * 4;
  if (doff < 20 || doff > n - off)
    return -EBADMSG;
  s->sport = get16(b);
  s->dport = get16(b + 2);
  s->ack = get32(b + 8);
  s->flags = b[13];
  return 0;
}

/*
 * ext.c - ICMP extension structures (RFC 4884): where they start, and the
 * objects in them: RFC 4950 MPLS label stacks, RFC 5837 interface
 * information, and any other class kept as bytes.
 *
 * Everything is read from an untrusted packet: every length is checked
 * before a byte is read. Fuzzed through the parsers by spec/fuzz.
 */
#include <string.h>

#include "packet.h"

/* RFC 4884: an extension structure follows at least 128 bytes of quote. */
#define RFC4884_MIN_QUOTE 128
#define EXT_VERSION 2
#define EXT_CLASS_MPLS 1 /* RFC 4950 */
#define EXT_CTYPE_MPLS 1
#define IFINFO_AFI_IPV4 1 /* RFC 5837 4.2: IANA address family numbers */
#define IFINFO_AFI_IPV6 2
#define IFINFO_NAME_MAX 64 /* RFC 5837 4.3: length octet included */

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

/* RFC 4950: one 32-bit entry per label (label:20, exp:3, s:1, ttl:8). */
static void parse_mpls(const uint8_t *p, size_t len, sonde__icmp_t *out) {
  size_t i;

  for (i = 0; i + 4 <= len; i += 4) {
    uint32_t e = get32(p + i);
    sonde_mpls_t *m;
    if (out->n_mpls == SONDE_MPLS_MAX) {
      out->mpls_truncated = 1;
      return;
    }
    m = &out->mpls[out->n_mpls++];
    m->label = e >> 12;
    m->exp = (e >> 9) & 7;
    m->s = (e >> 8) & 1;
    m->ttl = e & 0xff;
  }
}

/*
 * RFC 5837 4: the c-type says which sub-objects follow, in this order:
 * ifIndex (4 bytes), IP address (AFI, reserved, 4 or 16 bytes), name
 * (a length octet counting itself, a multiple of 4 up to 64, then the
 * name), MTU (4 bytes). A sub-object that does not fit, an unknown AFI or
 * a bad name length ends the decoding: what was decoded before it stays,
 * and `has` says what that is.
 */
static void parse_ifinfo(const uint8_t *p, size_t len, sonde_ext_t *x) {
  size_t off = 0, n;

  x->role = x->ctype >> 6;
  if (x->ctype & SONDE_IFINFO_IFINDEX) {
    if (len - off < 4)
      return;
    x->ifindex = get32(p + off);
    x->has |= SONDE_IFINFO_IFINDEX;
    off += 4;
  }
  if (x->ctype & SONDE_IFINFO_ADDR) {
    uint16_t afi;
    if (len - off < 4)
      return;
    afi = get16(p + off);
    n = afi == IFINFO_AFI_IPV4 ? 4 : afi == IFINFO_AFI_IPV6 ? 16 : 0;
    if (n == 0 || len - off - 4 < n)
      return;
    x->af = n == 4 ? AF_INET : AF_INET6;
    memcpy(x->addr, p + off + 4, n);
    x->has |= SONDE_IFINFO_ADDR;
    off += 4 + n;
  }
  if (x->ctype & SONDE_IFINFO_NAME) {
    if (len - off < 1)
      return;
    n = p[off];
    if (n < 4 || n > IFINFO_NAME_MAX || n % 4 != 0 || n > len - off)
      return;
    /* The name is UTF-8, padded with zeros to the length; keep it up to
     * its first NUL. */
    memcpy(x->name, p + off + 1, n - 1);
    x->name[n - 1] = '\0';
    x->has |= SONDE_IFINFO_NAME;
    off += n;
  }
  if (x->ctype & SONDE_IFINFO_MTU) {
    if (len - off < 4)
      return;
    x->mtu = get32(p + off);
    x->has |= SONDE_IFINFO_MTU;
  }
}

/* RFC 4884 7: extension header (version 2, checksum), then objects of
 * length (including their 4-byte header), class, c-type. */
static void parse_ext(const uint8_t *p, size_t len, sonde__icmp_t *out) {
  size_t off, olen;

  if (len < 4 || p[0] >> 4 != EXT_VERSION)
    return;
  /* A zero checksum means none was sent (RFC 4884 7). */
  if (get16(p + 2) != 0 && sonde__cksum(p, len, 0) != 0)
    return;
  out->has_ext = 1;
  for (off = 4; len - off >= 4; off += olen) {
    const uint8_t *body = p + off + 4;
    sonde_ext_t *x;

    olen = get16(p + off);
    if (olen < 4 || olen > len - off)
      break;
    if (p[off + 2] == EXT_CLASS_MPLS && p[off + 3] == EXT_CTYPE_MPLS) {
      parse_mpls(body, olen - 4, out);
      continue;
    }
    if (out->n_ext == SONDE_EXT_MAX) {
      out->ext_truncated = 1;
      continue;
    }
    x = &out->ext[out->n_ext++];
    memset(x, 0, sizeof(*x));
    x->class_num = p[off + 2];
    x->ctype = p[off + 3];
    x->len = (uint16_t)(olen - 4);
    memcpy(x->data, body,
           olen - 4 < sizeof(x->data) ? olen - 4 : sizeof(x->data));
    if (x->class_num == SONDE_EXT_CLASS_IFINFO)
      parse_ifinfo(body, olen - 4, x);
  }
}

/* A well-formed extension header at p: version 2, reserved 0, and a
 * checksum that is either absent (0) or right. */
static int looks_like_ext(const uint8_t *p, size_t len) {
  if (len < 8 || p[0] != EXT_VERSION << 4 || p[1] != 0)
    return 0;
  return get16(p + 2) == 0 || sonde__cksum(p, len, 0) == 0;
}

/*
 * Where the original datagram ends. RFC 4884 5: the length attribute
 * counts it (padded to 128 bytes at least), the extension follows.
 * - A length under 128 is a pre-RFC 4884 router's garbage in an unused
 *   byte: ignored, as Linux does (ip_icmp_error_rfc4884).
 * - Length 0 with more than 128 bytes: pre-RFC 4884 MPLS routers pad the
 *   quote to 128 bytes and append the extension without setting the
 *   length (mtr and Trippy accept it); taken only if a well-formed
 *   extension header sits at byte 128.
 * - A length past the end of the packet: some routers write the length in
 *   bytes instead of 32-bit words (128 becomes 512 bytes); the extension is
 *   then at byte 128, taken under the same condition.
 */
size_t sonde__ext_split(const uint8_t *data, size_t len, size_t rfc4884_len,
                        sonde__icmp_t *out) {
  int form = SONDE__EXT_NONE;
  size_t qlen = len;

  if (rfc4884_len >= RFC4884_MIN_QUOTE && rfc4884_len <= len) {
    form = SONDE__EXT_RFC4884;
    qlen = rfc4884_len;
  } else if (len > RFC4884_MIN_QUOTE &&
             looks_like_ext(data + RFC4884_MIN_QUOTE,
                            len - RFC4884_MIN_QUOTE)) {
    if (rfc4884_len < RFC4884_MIN_QUOTE)
      form = SONDE__EXT_PADDED;
    else
      form = SONDE__EXT_BYTES;
    qlen = RFC4884_MIN_QUOTE;
  }
  if (form != SONDE__EXT_NONE) {
    parse_ext(data + qlen, len - qlen, out);
    if (out->has_ext)
      out->ext_form = form;
  }
  return qlen;
}

/* checksum.c - holding a transport checksum at a chosen value (Paris
 * traceroute): load balancers hash the first bytes of the transport header,
 * which for ICMP include the checksum; so a flow keeps its checksum, and for
 * UDP the checksum (which nobody hashes) names the probe within its flow.
 * Two payload bytes compensate for whatever else changes. Pure functions. */
#include <string.h>

#include "packet.h"

/* The folded ones' complement sum of an IPv4/IPv6 pseudo-header (RFC 768,
 * RFC 8200 8.1) for a transport message of len bytes; src and dst are the
 * address bytes (4 or 16). */
uint16_t sonde__pseudo_sum(int af, const void *src, const void *dst,
                           uint8_t proto, uint32_t len) {
  uint8_t ph[40];
  size_t n;
  memset(ph, 0, sizeof(ph));
  if (af == AF_INET6) {
    memcpy(ph, src, 16);
    memcpy(ph + 16, dst, 16);
    ph[32] = (uint8_t)(len >> 24);
    ph[33] = (uint8_t)(len >> 16);
    ph[34] = (uint8_t)(len >> 8);
    ph[35] = (uint8_t)len;
    ph[39] = proto;
    n = 40;
  } else {
    memcpy(ph, src, 4);
    memcpy(ph + 4, dst, 4);
    ph[9] = proto;
    ph[10] = (uint8_t)(len >> 8);
    ph[11] = (uint8_t)len;
    n = 12;
  }
  return (uint16_t)~sonde__cksum(ph, n, 0);
}

/*
 * Write msg[at], msg[at + 1] (at even) so that the Internet checksum of
 * `pseudo` (a folded partial sum, 0 if none) followed by msg comes out as
 * `target` when computed with msg's checksum field zero. msg[at..at+1] must
 * be zero on entry. For the sum S of the rest and compensator X:
 * ~(S + X) = target, so X = ~target - S in ones' complement arithmetic.
 * target must be 1..0xfffe (ones' complement has two zeros).
 */
void sonde__checksum_hold(uint8_t *msg, size_t len, size_t at,
                          uint16_t pseudo, uint16_t target) {
  uint16_t s = (uint16_t)~sonde__cksum(msg, len, pseudo);
  uint32_t x = (uint32_t)(uint16_t)~target + (uint16_t)~s;
  x = (x & 0xffff) + (x >> 16);
  msg[at] = (uint8_t)(x >> 8);
  msg[at + 1] = (uint8_t)x;
}

/*
 * A transport checksum after a rewrite of some of the 16-bit words it
 * covers (old -> new, len bytes, len even): a NAT rewriting the source
 * address (a pseudo-header word) and the source port. full: csum is a
 * complete checksum field, adjusted as RFC 1624 eqn. 3 does (HC' = ~(~HC +
 * ~m + m')); else csum is the folded pseudo-header sum that a datagram sent
 * with checksum offload (CHECKSUM_PARTIAL) carries until a NIC completes
 * it, which Linux adjusts as a sum (S' = S + ~m + m') and only for the
 * pseudo-header (the header's own words are summed later).
 */
uint16_t sonde__cksum_rewrite(uint16_t csum, int full, const uint8_t *old,
                              const uint8_t *new, size_t len) {
  uint32_t acc = full ? (uint16_t)~csum : csum;
  size_t i;
  for (i = 0; i + 1 < len; i += 2) {
    acc += (uint16_t)~(old[i] << 8 | old[i + 1]);
    acc += (uint32_t)(new[i] << 8 | new[i + 1]);
  }
  while (acc >> 16)
    acc = (acc & 0xffff) + (acc >> 16);
  return full ? (uint16_t)~acc : (uint16_t)acc;
}

/* See packet.h. */
uint16_t sonde__cksum_nat(uint16_t csum, int full, const void *src_was,
                          const void *src_now, size_t alen, int with_port,
                          uint16_t port_was, uint16_t port_now) {
  uint8_t was[18], now[18];
  if (alen > 16)
    alen = 16;
  memcpy(was, src_was, alen);
  memcpy(now, src_now, alen);
  was[alen] = (uint8_t)(port_was >> 8);
  was[alen + 1] = (uint8_t)port_was;
  now[alen] = (uint8_t)(port_now >> 8);
  now[alen + 1] = (uint8_t)port_now;
  return sonde__cksum_rewrite(csum, full, was, now,
                              alen + (with_port ? 2 : 0));
}

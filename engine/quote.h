/* quote.h - comparing an ICMP error's quote with what the probe carried. */
#ifndef SONDE_QUOTE_H
#define SONDE_QUOTE_H

#include "packet.h"

struct sonde__probe;

/* The header fields of a sent probe the engine knows; known has bit
 * (1 << sonde_field_t) for each field that holds a value. */
typedef struct {
  int af;
  uint8_t proto;  /* IPPROTO_* */
  uint32_t known;
  uint8_t tos;
  uint8_t df;
  uint16_t ip_id;
  uint16_t ip_len; /* IPv4 total length, IPv6 payload length */
  uint32_t flow_label;
  uint8_t src[16];
  uint16_t sport, dport, udp_len, udp_csum, icmp_id, icmp_csum;
  uint32_t tcp_seq;
  uint8_t tcp_flags;
  uint16_t tcp_window, tcp_mss;
  /* A UDP checksum the kernel wrote: with checksum offload
   * (CHECKSUM_PARTIAL) the datagram leaves the stack holding only the
   * folded pseudo-header sum, and stays so where no NIC completes it (veth
   * pairs between namespaces, virtio): a router there quotes that value. */
  int udp_csum_kernel;
  uint16_t udp_csum_partial;
} sonde__sent_t;

/* sent.c: what p carried (its spec, source address and identity). */
void sonde__sent_from_probe(const struct sonde__probe *p, sonde__sent_t *s);

/* Append to res->changes the fields q shows different from s, and set
 * res->nat on NAT evidence. Pure: fuzzed by spec/fuzz/fuzz_quote.c. */
void sonde__quote_changes(const sonde__sent_t *s, const sonde__quote_t *q,
                          sonde_result_t *res);

/* sent.c: both, for a reply m matched to p (the quote's payload compared
 * too: a rewritten payload explains a checksum change). */
void sonde__quote_compare(const struct sonde__probe *p, const sonde__icmp_t *m,
                          sonde_result_t *res);

#endif /* SONDE_QUOTE_H */

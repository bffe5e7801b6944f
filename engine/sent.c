/*
 * sent.c - what a probe carried, from its in-flight record (spec, source
 * address, identity), for the quote comparison of quote.c.
 */
#include <string.h>

#include "internal.h"
#include "quote.h"

#define KNOW(s, f) ((s)->known |= 1u << (f))
#define KNOWN(s, f) (((s)->known >> (f)) & 1u)

/* The transport checksum of the probe as the kernel (or the engine) wrote
 * it: the pseudo-header, the header with its checksum field 0, and the
 * payload bytes sonde__payload_byte gives; a held checksum (Paris) is the
 * spec's. */
static uint16_t probe_cksum(const sonde__probe_t *p, uint8_t proto,
                            const uint8_t hdr[8], size_t payload) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family;
  int kind = proto == IPPROTO_UDP ? SONDE_PROTO_UDP : SONDE_PROTO_ICMP;
  uint64_t acc = 0;
  uint16_t c;
  size_t i;

  if (spec->hold_checksum)
    return spec->checksum;
  /* RFC 1071, one 16-bit word at a time: no copy of a payload that may
   * be 64 KiB. */
  if (proto != IPPROTO_ICMP)
    acc = sonde__pseudo_sum(af, sonde__addr_bytes(&p->local),
                            sonde__addr_bytes(&spec->dst), proto,
                            (uint32_t)(8 + payload));
  for (i = 0; i < 8; i += 2)
    acc += (uint32_t)hdr[i] << 8 | hdr[i + 1];
  for (i = 0; i < payload; i += 2) {
    uint32_t w = (uint32_t)sonde__payload_byte(p->eng, spec, kind, i) << 8;
    if (i + 1 < payload)
      w |= sonde__payload_byte(p->eng, spec, kind, i + 1);
    acc += w;
  }
  while (acc >> 16)
    acc = (acc & 0xffff) + (acc >> 16);
  c = (uint16_t)~acc;
  /* RFC 768: a computed UDP checksum of 0 is sent as all ones. */
  return proto == IPPROTO_UDP && c == 0 ? 0xffff : c;
}

/*
 * What p carried, as far as the engine knows it. TCP connect probes: the
 * kernel writes the SYN (its sequence number, window and options are the
 * kernel's), so only the addresses, ports and TOS are known (a half-open
 * SYN is all known); Linux clears
 * the ECN bits of IP_TOS on TCP sockets (they belong to the connection's
 * ECN state), so a SYN leaves with ECN 0.
 */
void sonde__sent_from_probe(const sonde__probe_t *p, sonde__sent_t *s) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family;
  size_t payload = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD;
  const void *src = sonde__addr_bytes(&p->local);
  uint8_t hdr[8];

  memset(s, 0, sizeof(*s));
  s->af = af;
  s->tos = spec->proto == SONDE_PROTO_TCP ? (uint8_t)(spec->tos & ~3u)
                                          : spec->tos;
  KNOW(s, SONDE_FIELD_DSCP);
  KNOW(s, SONDE_FIELD_ECN);
  if (src != NULL && p->local.ss_family == af) {
    memcpy(s->src, src, af == AF_INET6 ? 16 : 4);
    KNOW(s, SONDE_FIELD_SRC);
  }
  if (af == AF_INET6 && spec->has_flow_label) {
    s->flow_label = spec->flow_label;
    KNOW(s, SONDE_FIELD_FLOW_LABEL);
  }
  if (af == AF_INET && spec->ip_id) {
    s->ip_id = spec->ip_id;
    KNOW(s, SONDE_FIELD_IP_ID);
  }
  /* DF: what the probe asked for; the engine's own header (ip_id) sets it
   * unless asked not to. The kernel's default depends on sysctls and the
   * route: unknown. */
  if (af == AF_INET && (spec->df != SONDE_DF_DEFAULT || spec->ip_id)) {
    s->df = spec->df != SONDE_DF_CLEAR;
    KNOW(s, SONDE_FIELD_DF);
  }
  switch (spec->proto) {
  case SONDE_PROTO_UDP:
    s->proto = IPPROTO_UDP;
    s->sport = p->key.a;
    s->dport = p->key.b;
    s->udp_len = (uint16_t)(8 + payload);
    s->ip_len = (uint16_t)((af == AF_INET ? 20 : 0) + 8 + payload);
    KNOW(s, SONDE_FIELD_IP_LEN);
    KNOW(s, SONDE_FIELD_SPORT);
    KNOW(s, SONDE_FIELD_DPORT);
    KNOW(s, SONDE_FIELD_UDP_LEN);
    if (KNOWN(s, SONDE_FIELD_SRC) && payload <= SONDE__MAX_PAYLOAD) {
      hdr[0] = (uint8_t)(s->sport >> 8);
      hdr[1] = (uint8_t)s->sport;
      hdr[2] = (uint8_t)(s->dport >> 8);
      hdr[3] = (uint8_t)s->dport;
      hdr[4] = (uint8_t)(s->udp_len >> 8);
      hdr[5] = (uint8_t)s->udp_len;
      hdr[6] = hdr[7] = 0;
      s->udp_csum = probe_cksum(p, IPPROTO_UDP, hdr, payload);
      KNOW(s, SONDE_FIELD_UDP_CHECKSUM);
      /* The engine writes the checksum itself (raw socket) for a held
       * checksum or its own IP header; else the kernel does. */
      if (!spec->hold_checksum && !spec->ip_id) {
        s->udp_csum_kernel = 1;
        s->udp_csum_partial = sonde__pseudo_sum(
            af, src, sonde__addr_bytes(&spec->dst), IPPROTO_UDP,
            (uint32_t)s->udp_len);
      }
    }
    break;
  case SONDE_PROTO_ICMP:
    s->proto = af == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
    s->ip_len = (uint16_t)((af == AF_INET ? 20 : 0) + 8 + payload);
    KNOW(s, SONDE_FIELD_IP_LEN);
    /* An ICMP datagram socket writes its own id (the socket's "port"):
     * the checksum is the kernel's, over an id the key holds. */
    if (KNOWN(s, SONDE_FIELD_SRC) && payload <= SONDE__MAX_PAYLOAD) {
      hdr[0] = af == AF_INET ? 8 : 128;
      hdr[1] = 0;
      hdr[2] = hdr[3] = 0;
      hdr[4] = (uint8_t)(p->key.a >> 8);
      hdr[5] = (uint8_t)p->key.a;
      hdr[6] = (uint8_t)(p->key.b >> 8);
      hdr[7] = (uint8_t)p->key.b;
      s->icmp_csum = probe_cksum(p, s->proto, hdr, payload);
      KNOW(s, SONDE_FIELD_ICMP_CHECKSUM);
    }
    s->icmp_id = p->key.a;
    KNOW(s, SONDE_FIELD_ICMP_ID);
    break;
  case SONDE_PROTO_TCP:
    s->proto = IPPROTO_TCP;
    s->sport = p->key.a;
    s->dport = p->key.b;
    KNOW(s, SONDE_FIELD_SPORT);
    KNOW(s, SONDE_FIELD_DPORT);
    /* A half-open SYN is the engine's own (syn.c's build_syn): sequence
     * number, SYN alone, and the window and MSS of internal.h. */
    if (p->syn) {
      s->tcp_seq = p->isn;
      s->tcp_flags = 0x02;
      s->tcp_window = SONDE__SYN_WINDOW;
      s->tcp_mss = SONDE__SYN_MSS(af);
      s->ip_len = (uint16_t)((af == AF_INET ? 20 : 0) + SONDE__SYN_LEN);
      KNOW(s, SONDE_FIELD_TCP_SEQ);
      KNOW(s, SONDE_FIELD_TCP_FLAGS);
      KNOW(s, SONDE_FIELD_TCP_WINDOW);
      KNOW(s, SONDE_FIELD_TCP_MSS);
      KNOW(s, SONDE_FIELD_IP_LEN);
    }
    break;
  default:
    break;
  }
}

static void add_payload(sonde_result_t *res, uint32_t at, uint8_t seen) {
  sonde_change_t *c;
  if (res->n_changes == SONDE_CHANGES_MAX)
    return;
  c = &res->changes[res->n_changes++];
  c->field = SONDE_FIELD_PAYLOAD;
  c->sent = at;
  c->seen = seen;
}

/* See quote.h. */
void sonde__quote_compare(const sonde__probe_t *p, const sonde__icmp_t *m,
                          sonde_result_t *res) {
  sonde__sent_t s;

  if (!m->has_quote)
    return;
  sonde__sent_from_probe(p, &s);
  /* A quoted payload that is not the probe's (the nonce matched, a
   * middlebox rewrote other bytes) explains a checksum change by itself:
   * the checksum then says nothing of a NAT. */
  if (m->quote.data_len > 0 && p->spec.proto != SONDE_PROTO_TCP &&
      !p->spec.fill) {
    size_t i, n = m->quote.data_len < sizeof(m->quote.data)
                      ? m->quote.data_len
                      : sizeof(m->quote.data);
    size_t payload = p->spec.size ? p->spec.size : SONDE__DEFAULT_PAYLOAD;
    size_t from = p->spec.hold_checksum ? 2 : 0;
    for (i = from; i < n && i < payload; i++) {
      uint8_t want = sonde__payload_byte(
          p->eng, &p->spec,
          p->spec.proto == SONDE_PROTO_UDP ? SONDE_PROTO_UDP : SONDE_PROTO_ICMP,
          i);
      if (m->quote.data[i] != want) {
        add_payload(res, (uint32_t)i, m->quote.data[i]);
        s.known &= ~((1u << SONDE_FIELD_UDP_CHECKSUM) |
                     (1u << SONDE_FIELD_ICMP_CHECKSUM));
        break;
      }
    }
  }
  sonde__quote_changes(&s, &m->quote, res);
}

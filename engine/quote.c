/*
 * quote.c - what the quote inside an ICMP error tells about the path: the
 * fields a middlebox rewrote between us and the router that quoted the
 * probe (DSCP and ECN bleaching, IP ID and DF rewriting, length and
 * checksum changes), compared with what the probe carried.
 *
 * sent.c says what a probe carried (sonde__sent_t); sonde__quote_changes
 * compares it with a parsed quote, with no engine state (fuzzed by
 * spec/fuzz/fuzz_quote.c). Only fields
 * both known and quoted are compared: a field the router did not quote (an
 * 8-byte transport quote, RFC 792) or that the kernel chose (the IPv4
 * identification of a datagram socket, an IPv6 flow label Linux derives)
 * is unknown, never "unchanged" and never "changed".
 */
#include <string.h>

#include "quote.h"

static const char *const field_names[] = {
    "none",
#define XX(name, str) str,
    SONDE_FIELD_MAP(XX)
#undef XX
};

/* See sonde.h. */
const char *sonde_field_name(sonde_field_t field) {
  if ((unsigned)field >= sizeof(field_names) / sizeof(field_names[0]))
    return "unknown";
  return field_names[field];
}

#define KNOWN(s, f) (((s)->known >> (f)) & 1u)

static void add(sonde_result_t *res, sonde_field_t f, uint32_t sent,
                uint32_t seen) {
  sonde_change_t *c;
  if (res->n_changes == SONDE_CHANGES_MAX)
    return;
  c = &res->changes[res->n_changes++];
  c->field = f;
  c->sent = sent;
  c->seen = seen;
}

#define CMP(f, sent, seen)                                                    \
  do {                                                                        \
    if (KNOWN(s, f) && (uint32_t)(sent) != (uint32_t)(seen))                  \
      add(res, f, (uint32_t)(sent), (uint32_t)(seen));                        \
  } while (0)

/*
 * Is seen the transport checksum sent (full or, kernel-written, the
 * offloaded partial sum) after a NAT rewrote the source address (when the
 * checksum sums it: pseudo) and the source port or echo id (port_was ->
 * port_now) as the quote shows them, and adjusted the checksum for that?
 * The partial sum covers only the pseudo-header (the address): Linux
 * leaves it alone for a port rewrite, which the NIC's completion covers.
 */
static int csum_after_nat(const sonde__sent_t *s, const void *qsrc,
                          int pseudo, uint16_t port_was, uint16_t port_now,
                          uint16_t sent, uint16_t seen) {
  size_t alen = pseudo ? (s->af == AF_INET6 ? 16 : 4) : 0;
  if (sonde__cksum_nat(sent, 1, s->src, qsrc, alen, 1, port_was, port_now) ==
      seen)
    return 1;
  return s->udp_csum_kernel && pseudo &&
         sonde__cksum_nat(s->udp_csum_partial, 0, s->src, qsrc, alen, 0, 0,
                          0) == seen;
}

/*
 * Compare a quote with what was sent; append the differences to res's
 * changes, and set res->nat (with quoted_src) when the quote names another
 * source address than the probe's (a source NAT that did not translate the
 * ICMP error back). Fields of the transport header count only as far as
 * the quote holds them (has_* flags).
 *
 * A checksum that differs while the ports, addresses and quoted payload are
 * what was sent is the mark of a NAT that rewrote the packet and restored
 * all but the checksum on the way back (Dublin traceroute's NAT evidence):
 * reported as a change of the checksum, and as nat. A checksum that a
 * rewritten source address and port explain (the NAT adjusted it for
 * them: RFC 1624, RFC 3022 4.2) is no further change.
 */
void sonde__quote_changes(const sonde__sent_t *s, const sonde__quote_t *q,
                          sonde_result_t *res) {
  size_t alen = s->af == AF_INET6 ? 16 : 4;
  const void *qsrc = s->af == AF_INET6 ? (const void *)&q->src6
                                       : (const void *)&q->src4;
  int csum_changed = 0, nat_src = 0, nat_port = 0;

  if (q->af != s->af)
    return;
  CMP(SONDE_FIELD_DSCP, s->tos >> 2, q->tos >> 2);
  CMP(SONDE_FIELD_ECN, s->tos & 3, q->tos & 3);
  if (s->af == AF_INET6)
    CMP(SONDE_FIELD_FLOW_LABEL, s->flow_label, q->flow);
  else {
    CMP(SONDE_FIELD_IP_ID, s->ip_id, q->ip_id);
    CMP(SONDE_FIELD_DF, s->df, q->df);
  }
  if (q->proto == s->proto)
    CMP(SONDE_FIELD_IP_LEN, s->ip_len, q->ip_total_len);
  if (KNOWN(s, SONDE_FIELD_SRC) && memcmp(s->src, qsrc, alen) != 0) {
    struct sockaddr_storage *ss = &res->quoted_src;
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)s->af;
    if (s->af == AF_INET6)
      memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, qsrc, 16);
    else
      memcpy(&((struct sockaddr_in *)ss)->sin_addr, qsrc, 4);
    add(res, SONDE_FIELD_SRC, 0, 0);
    res->nat = 1;
    nat_src = 1;
  }
  if (q->proto != s->proto)
    return;
  if (q->has_ports) {
    CMP(SONDE_FIELD_SPORT, s->sport, q->sport);
    CMP(SONDE_FIELD_DPORT, s->dport, q->dport);
    if (KNOWN(s, SONDE_FIELD_SPORT) && s->sport != q->sport)
      res->nat = nat_port = 1;
  }
  if (q->has_udp_csum) {
    CMP(SONDE_FIELD_UDP_LEN, s->udp_len, q->udp_len);
    if (KNOWN(s, SONDE_FIELD_UDP_CHECKSUM) && s->udp_csum != q->udp_csum &&
        !(s->udp_csum_kernel && q->udp_csum == s->udp_csum_partial) &&
        !((nat_src || nat_port) &&
          csum_after_nat(s, nat_src ? qsrc : s->src, 1, s->sport, q->sport,
                         s->udp_csum, q->udp_csum))) {
      add(res, SONDE_FIELD_UDP_CHECKSUM, s->udp_csum, q->udp_csum);
      csum_changed = 1;
    }
  }
  if (q->has_tcp_seq)
    CMP(SONDE_FIELD_TCP_SEQ, s->tcp_seq, q->tcp_seq);
  if (q->has_tcp_hdr) {
    CMP(SONDE_FIELD_TCP_FLAGS, s->tcp_flags, q->tcp_flags);
    CMP(SONDE_FIELD_TCP_WINDOW, s->tcp_window, q->tcp_window);
    /* An MSS option the quote holds whole; one a middlebox removed shows
     * as a changed IP length (the options are part of the header). */
    if (q->has_tcp_mss)
      CMP(SONDE_FIELD_TCP_MSS, s->tcp_mss, q->tcp_mss);
  }
  /* The echo id is the port a NAPT rewrites in ICMP (RFC 3022 2.2). */
  if (q->has_icmp_echo && KNOWN(s, SONDE_FIELD_ICMP_ID) &&
      s->icmp_id != q->icmp_id) {
    add(res, SONDE_FIELD_ICMP_ID, s->icmp_id, q->icmp_id);
    res->nat = nat_port = 1;
  }
  /* ICMPv6 sums the pseudo-header (the address), ICMPv4 does not. */
  if (q->has_icmp_echo && KNOWN(s, SONDE_FIELD_ICMP_CHECKSUM) &&
      s->icmp_csum != q->icmp_csum &&
      !((nat_src || nat_port) &&
        csum_after_nat(s, nat_src ? qsrc : s->src, s->af == AF_INET6,
                       s->icmp_id, q->icmp_id, s->icmp_csum,
                       q->icmp_csum))) {
    add(res, SONDE_FIELD_ICMP_CHECKSUM, s->icmp_csum, q->icmp_csum);
    csum_changed = 1;
  }
  if (csum_changed && !res->nat)
    res->nat = 1;
}


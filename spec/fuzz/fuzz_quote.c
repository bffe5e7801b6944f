/*
 * fuzz_quote.c - libFuzzer target for the quote comparison (quote.c) and
 * the extension parser (ext.c) on their own.
 *
 * The input's first 48 bytes make up what a probe carried (sonde__sent_t:
 * family, protocol, which fields are known, their values); the rest is
 * parsed as a quote of that family and compared with it, and as an ICMP
 * error body (with an RFC 4884 length from the input) split by ext.c.
 * What they report is checked against the bounds they promise.
 * Build and run: make fuzz (spec/fuzz/fuzz.mk).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "quote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define SENT_BYTES 48

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static void sent_of(const uint8_t *d, sonde__sent_t *s) {
  static const uint8_t protos[] = {IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP,
                                   IPPROTO_ICMPV6};
  memset(s, 0, sizeof(*s));
  s->af = d[0] & 1 ? AF_INET6 : AF_INET;
  s->proto = protos[d[1] & 3];
  s->known = ((uint32_t)get16(d + 2) << 1 | (uint32_t)d[5] << 17) &
             ((1u << SONDE_FIELD_MAX) - 2);
  s->tos = d[4];
  s->df = d[5] & 1;
  s->ip_id = get16(d + 6);
  s->ip_len = get16(d + 8);
  s->flow_label = ((uint32_t)d[10] << 16 | get16(d + 11)) & 0xfffff;
  memcpy(s->src, d + 13, 16);
  s->sport = get16(d + 29);
  s->dport = get16(d + 31);
  s->udp_len = get16(d + 33);
  s->udp_csum = get16(d + 35);
  s->icmp_csum = get16(d + 37);
  s->icmp_id = get16(d + 39);
  s->udp_csum_kernel = d[41] & 1;
  s->udp_csum_partial = get16(d + 42);
  s->tcp_seq = (uint32_t)get16(d + 44) << 16 | get16(d + 46);
  s->tcp_flags = d[40];
  s->tcp_window = get16(d + 11);
  s->tcp_mss = get16(d + 35);
}

static void check_result(const sonde_result_t *r) {
  int i;
  CHECK(r->n_changes >= 0 && r->n_changes <= SONDE_CHANGES_MAX);
  for (i = 0; i < r->n_changes; i++) {
    CHECK(r->changes[i].field > SONDE_FIELD_NONE &&
          r->changes[i].field < SONDE_FIELD_MAX);
    CHECK(r->changes[i].field == SONDE_FIELD_SRC ||
          r->changes[i].sent != r->changes[i].seen);
    CHECK(sonde_field_name(r->changes[i].field)[0] != '\0');
  }
  CHECK(r->nat == 0 || r->nat == 1);
  /* a quoted source is given with nat alone */
  CHECK(r->quoted_src.ss_family == 0 || r->nat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sonde__sent_t s;
  sonde__quote_t q;
  sonde_result_t r;
  sonde__icmp_t m;
  size_t qlen, rest;
  int i;

  if (size < SENT_BYTES)
    return 0;
  sent_of(data, &s);
  rest = size - SENT_BYTES;
  memset(&r, 0, sizeof(r));
  if (sonde__parse_quote(s.af, data + SENT_BYTES, rest, &q) == 0) {
    sonde__quote_changes(&s, &q, &r);
    check_result(&r);
    /* Compared with itself field by field, a quote changes nothing but
     * what the sent record does not match. */
  }
  memset(&m, 0, sizeof(m));
  m.af = s.af;
  qlen = sonde__ext_split(data + SENT_BYTES, rest, (size_t)data[39] * 4, &m);
  CHECK(qlen <= rest);
  CHECK(m.n_mpls >= 0 && m.n_mpls <= SONDE_MPLS_MAX);
  CHECK(!m.mpls_truncated || m.n_mpls == SONDE_MPLS_MAX);
  CHECK(m.n_ext >= 0 && m.n_ext <= SONDE_EXT_MAX);
  CHECK(!m.ext_truncated || m.n_ext == SONDE_EXT_MAX);
  CHECK((m.n_mpls == 0 && m.n_ext == 0) || m.has_ext);
  CHECK(m.has_ext == (m.ext_form != SONDE__EXT_NONE));
  for (i = 0; i < m.n_ext; i++) {
    const sonde_ext_t *x = &m.ext[i];
    CHECK(x->len <= rest - qlen);
    CHECK(memchr(x->name, '\0', sizeof(x->name)) != NULL);
    CHECK(!(x->has & SONDE_IFINFO_ADDR) ||
          x->af == AF_INET || x->af == AF_INET6);
    CHECK((x->has & ~x->ctype & 0x0f) == 0);
  }
  return 0;
}

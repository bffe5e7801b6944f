/*
 * fuzz_packet.c - libFuzzer target for every entry point of packet.c.
 *
 * The input is parsed as an IPv4 datagram, an ICMPv6 message, an ICMPv4
 * message without its IP header (ping sockets), a quote of either family,
 * and the ancillary data of an error-queue read; what the parsers report is
 * checked against the input's length. It also drives sonde__build_echo,
 * sonde__cksum and the Paris checksum hold (whose result must be exact).
 * Build and run: make fuzz (spec/fuzz/fuzz.mk).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_quote(const sonde__quote_t *q, size_t avail) {
  CHECK(q->l4_len <= avail);
  CHECK(!q->has_ports || q->l4_len >= 4);
  CHECK(!q->has_tcp_seq || (q->has_ports && q->l4_len >= 8));
  CHECK(!q->has_udp_csum || (q->has_ports && q->l4_len >= 8));
  CHECK(!q->has_icmp_echo || q->l4_len >= 8);
  CHECK(!q->has_tcp_hdr || (q->has_tcp_seq && q->l4_len >= 20));
  CHECK(!q->has_tcp_mss || q->has_tcp_hdr);
}

static void check_icmp(int rc, const sonde__icmp_t *m, size_t size) {
  CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMSG);
  if (rc != 0)
    return;
  CHECK(m->n_mpls >= 0 && m->n_mpls <= SONDE_MPLS_MAX);
  CHECK(m->n_mpls == 0 || m->has_ext);
  CHECK(m->kind == SONDE_KIND_ECHO_REPLY || m->has_quote);
  if (m->has_quote)
    check_quote(&m->quote, size);
}

/* Echo requests built from the input's first bytes must carry a checksum
 * that verifies (IPv4), and sums must chain: cksum(a|b) from cksum(a). */
static void check_build(const uint8_t *data, size_t size) {
  static uint8_t buf[8 + 2048];
  uint16_t id, seq;
  size_t plen, half;
  int n;

  if (size < 6)
    return;
  id = (uint16_t)(data[0] << 8 | data[1]);
  seq = (uint16_t)(data[2] << 8 | data[3]);
  plen = (size_t)(data[4] << 8 | data[5]) % 2100;
  n = sonde__build_echo(AF_INET, buf, sizeof(buf), id, seq, plen);
  if (8 + plen > sizeof(buf)) {
    CHECK(n == -ENOBUFS);
  } else {
    CHECK(n == (int)(8 + plen) && sonde__cksum(buf, (size_t)n, 0) == 0);
    CHECK(sonde__build_echo(AF_INET6, buf, sizeof(buf), id, seq, plen) == n);
    CHECK(buf[0] == 128 && buf[2] == 0 && buf[3] == 0);
  }
  /* an echo reply carries the input's bytes as its data */
  n = sonde__build_echo_msg(AF_INET, 1, buf, sizeof(buf), id, seq, data,
                            size < 2048 ? size : 2048);
  CHECK(n == (int)(8 + (size < 2048 ? size : 2048)) && buf[0] == 0 &&
        sonde__cksum(buf, (size_t)n, 0) == 0 &&
        memcmp(buf + 8, data, (size_t)n - 8) == 0);
  half = (size / 2) & ~(size_t)1;
  CHECK(sonde__cksum(data, size, 0) ==
        sonde__cksum(data + half, size - half,
                     (uint16_t)~sonde__cksum(data, half, 0)));
}

/* A checksum held at a target (Paris) must come out as that target, for
 * any message and pseudo-header sum the input makes up. */
static void check_hold(const uint8_t *data, size_t size) {
  static uint8_t msg[2048];
  uint16_t target, pseudo;
  size_t len;

  if (size < 6)
    return;
  target = (uint16_t)(data[0] << 8 | data[1]);
  pseudo = (uint16_t)(data[2] << 8 | data[3]);
  if (target == 0 || target == 0xffff)
    return;
  len = size - 4 < sizeof(msg) ? size - 4 : sizeof(msg);
  if (len < 10)
    return;
  memcpy(msg, data + 4, len);
  msg[8] = msg[9] = 0;
  sonde__checksum_hold(msg, len, 8, pseudo, target);
  CHECK(sonde__cksum(msg, len, pseudo) == target);
}

/* The error queue's ancillary data, from an aligned copy (the kernel's
 * buffer is aligned; the parser must not trust its lengths). */
static void check_errmsg(const uint8_t *data, size_t size) {
  static union {
    uint8_t buf[1024];
    struct cmsghdr align;
  } control;
  sonde_result_t res;
  size_t len = size < sizeof(control.buf) ? size : sizeof(control.buf);
  int rc;

  memcpy(control.buf, data, len);
  memset(&res, 0, sizeof(res));
  rc = sonde__parse_errmsg(control.buf, len, &res);
  CHECK(rc == 0 || rc == 1);
  CHECK(rc == 0 || res.kind != SONDE_KIND_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sonde__icmp_t m;
  sonde__quote_t q;
  int rc;

  check_icmp(sonde__parse_icmp4(data, size, &m), &m, size);
  check_icmp(sonde__parse_icmp6(data, size, &m), &m, size);
  /* ICMP datagram sockets: an ICMPv4 message without its IP header. */
  check_icmp(sonde__parse_icmp(AF_INET, data, size, &m), &m, size);
  check_hold(data, size);
  check_errmsg(data, size);
  rc = sonde__parse_quote(AF_INET, data, size, &q);
  CHECK(rc == 0 || rc == -EBADMSG);
  if (rc == 0)
    check_quote(&q, size);
  rc = sonde__parse_quote(AF_INET6, data, size, &q);
  CHECK(rc == 0 || rc == -EBADMSG);
  if (rc == 0)
    check_quote(&q, size);
  check_build(data, size);
  return 0;
}

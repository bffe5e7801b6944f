/*
 * fuzz_syn.c - libFuzzer target for the parser of what a raw TCP socket
 * reads (sonde__parse_seg, packet.c): the SYN-ACK or RST answering a SYN
 * probe (syn.c), or anything else with the TCP protocol number.
 *
 * The input is parsed as IPv4 (IP header first) and as IPv6 (TCP header
 * first, as the kernel hands it over). What the parser reports is checked
 * against the input's own bytes, and a field it must not touch (IPv6: the
 * destination and hop limit, which come as ancillary data) stays as it was.
 * Build and run: make fuzz (spec/fuzz/fuzz.mk).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define UNTOUCHED 0xa5

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

/* The TCP header at tcp (avail bytes of it) is what s says. */
static void check_tcp(const sonde__seg_t *s, const uint8_t *tcp,
                      size_t avail) {
  size_t doff;
  CHECK(avail >= 20);
  doff = (size_t)(tcp[12] >> 4) * 4;
  CHECK(doff >= 20 && doff <= avail);
  CHECK(s->sport == get16(tcp) && s->dport == get16(tcp + 2));
  CHECK(s->ack == ((uint32_t)get16(tcp + 8) << 16 | get16(tcp + 10)));
  CHECK(s->flags == tcp[13]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t untouched[16] = {
      UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED,
      UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED,
      UNTOUCHED, UNTOUCHED, UNTOUCHED, UNTOUCHED};
  sonde__seg_t s;
  int rc;

  /* IPv4: the IP header, then TCP within the header's total length */
  memset(&s, UNTOUCHED, sizeof(s));
  s.ttl = -1;
  rc = sonde__parse_seg(AF_INET, data, size, &s);
  CHECK(rc == 0 || rc == -EBADMSG);
  if (rc == 0) {
    size_t ihl = (size_t)(data[0] & 0x0f) * 4, total;
    CHECK(size >= 20 && data[0] >> 4 == 4 && data[9] == IPPROTO_TCP);
    total = get16(data + 2);
    CHECK(ihl >= 20 && ihl <= total && total <= size);
    CHECK((get16(data + 6) & 0x1fff) == 0);
    CHECK(s.ttl == data[8] && memcmp(s.dst, data + 16, 4) == 0);
    check_tcp(&s, data + ihl, total - ihl);
  }

  /* IPv6: the TCP header alone */
  memset(&s, UNTOUCHED, sizeof(s));
  s.ttl = -1;
  rc = sonde__parse_seg(AF_INET6, data, size, &s);
  CHECK(rc == 0 || rc == -EBADMSG);
  CHECK(s.ttl == -1 && memcmp(s.dst, untouched, sizeof(untouched)) == 0);
  if (rc == 0)
    check_tcp(&s, data, size);
  return 0;
}

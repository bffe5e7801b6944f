/* icmp.c - ICMP / ICMPv6 echo probes with a per-packet TTL: on the engine's
 * raw socket, or unprivileged on an ICMP datagram ("ping") socket, whose
 * echo id the kernel sets to the socket's own. */
#include <string.h>

#include "internal.h"

/*
 * The payload's fill byte, and a checksum held at spec->checksum (Paris:
 * the flow's ICMP checksum stays the same while the sequence names the
 * probe). ICMPv4's checksum is ours to write; ICMPv6's the kernel computes
 * over the pseudo-header, so the compensator is computed for that sum.
 * Returns len or a negative errno.
 */
static int shape(sonde_engine_t *eng, sonde__probe_t *p, uint8_t *msg,
                 size_t len) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family;
  uint16_t pseudo = 0;

  if (spec->fill)
    memset(msg + 8, spec->fill, len - 8);
  msg[2] = msg[3] = 0;
  if (spec->hold_checksum) {
    if (len < 10 || spec->checksum == 0 || spec->checksum == 0xffff)
      return SONDE_EINVAL;
    if (af == AF_INET6) {
      struct sockaddr_storage src;
      int r = sonde__route_src(eng, &spec->dst, &src);
      if (r < 0)
        return r;
      pseudo = sonde__pseudo_sum(af, sonde__addr_bytes(&src),
                                 sonde__addr_bytes(&spec->dst), IPPROTO_ICMPV6,
                                 (uint32_t)len);
    }
    msg[8] = msg[9] = 0;
    sonde__checksum_hold(msg, len, 8, pseudo, spec->checksum);
  }
  if (af == AF_INET) {
    uint16_t c = sonde__cksum(msg, len, 0);
    msg[2] = (uint8_t)(c >> 8);
    msg[3] = (uint8_t)c;
  }
  return (int)len;
}

int sonde__icmp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, i = sonde__afi(af), r, len, fd;
  uint16_t id = spec->echo_id, seq = spec->echo_seq;

  r = sonde__recv_open(eng, af);
  if (r < 0) {
    p->call = "socket(SOCK_RAW)";
    return r;
  }
  if (eng->unpriv[i]) {
    r = sonde__ping_open(eng, af);
    if (r < 0) {
      p->call = af == AF_INET6 ? "socket(SOCK_DGRAM, IPPROTO_ICMPV6)"
                               : "socket(SOCK_DGRAM, IPPROTO_ICMP)";
      return r;
    }
    fd = eng->ping[i].fd;
    id = eng->ping[i].port;
    sonde__clear_pending_error(fd);
    if (spec->echo_id == 0)
      seq = ++eng->echo_seq ? eng->echo_seq : ++eng->echo_seq;
  } else {
    fd = eng->icmp[i].fd;
    if (id == 0) {
      /* The engine's id; sequence numbers run on, skipping 0. */
      id = eng->echo_id;
      seq = ++eng->echo_seq ? eng->echo_seq : ++eng->echo_seq;
    }
  }
  if (spec->ip_id && (r = sonde__rawip_open(eng, p)) < 0)
    return r;
  sonde__key_make(&p->key, SONDE_PROTO_ICMP, af,
                  sonde__addr_bytes(&spec->dst), id, seq);
  r = sonde__table_insert(eng, p);
  if (r < 0) {
    p->call = "match";
    return r;
  }
  len = sonde__build_echo(af, eng->sbuf, sizeof(eng->sbuf), id, seq,
                          spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD);
  if (len > 0 && (spec->fill || spec->hold_checksum))
    len = shape(eng, p, eng->sbuf, (size_t)len);
  p->sent_ns = sonde__now(); /* the send time: see send_one */
  if (len < 0)
    r = len;
  else if (spec->ip_id)
    r = sonde__send_hdrincl(eng, p, IPPROTO_ICMP, (size_t)len);
  else if (sonde__sender_queue(eng, p, fd, eng->sbuf, (size_t)len) == 0)
    r = 0;
  else
    r = sonde__sendto_probe(p, fd, eng->sbuf, (size_t)len, &spec->dst);
  if (r < 0) {
    sonde__table_remove(eng, p);
    if (p->call == NULL)
      p->call = "sendmsg";
    return r;
  }
  sonde__probe_sent(eng, p);
  return 0;
}

/* icmp.c - ICMP / ICMPv6 echo probes with a per-packet TTL: on the engine's
 * raw socket, or unprivileged on an ICMP datagram ("ping") socket, whose
 * echo id the kernel sets to the socket's own. */
#include "internal.h"

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
  sonde__key_make(&p->key, SONDE_PROTO_ICMP, af,
                  sonde__addr_bytes(&spec->dst), id, seq);
  r = sonde__table_insert(eng, p);
  if (r < 0) {
    p->call = "match";
    return r;
  }
  len = sonde__build_echo(af, eng->sbuf, sizeof(eng->sbuf), id, seq,
                          spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD);
  r = len < 0 ? len
              : sonde__sendto_ttl(fd, eng->sbuf, (size_t)len, &spec->dst,
                                  spec->ttl);
  if (r < 0) {
    sonde__table_remove(eng, p);
    p->call = "sendmsg";
    return r;
  }
  sonde__probe_sent(eng, p);
  return 0;
}

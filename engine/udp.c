/* udp.c - UDP probes: on the engine's shared socket (kernel-chosen source
 * port, the destination port names the probe: classic traceroute), or on a
 * socket of their own bound per the binding policy. */
#include <string.h>

#include "internal.h"

static void on_readable(uv_poll_t *h, int status, int events) {
  sonde__probe_t *p = h->data;
  uint16_t port = sonde__addr_port(&p->local);
  if (status < 0) {
    /* An ICMP error on the error queue (unprivileged mode). libuv stopped
     * the poll; the probe usually ends here, else poll again. */
    uint64_t id = p->id;
    sonde__errqueue_drain(p->eng, p->fd, SONDE_PROTO_UDP, port);
    if (p->id == id && p->state == SONDE__INFLIGHT && !p->poll_closing)
      (void)uv_poll_start(&p->poll, UV_READABLE, on_readable);
    return;
  }
  sonde__udp_read(p->eng, p->fd, port);
}

int sonde__udp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, r, fd;
  uint16_t sport;
  size_t i, len = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD;

  r = sonde__recv_open(eng, af);
  if (r < 0) {
    p->call = "socket(SOCK_RAW)";
    return r;
  }
  if (spec->bind == SONDE_BIND_KERNEL && spec->sport == 0) {
    r = sonde__udp_open(eng, af);
    if (r < 0) {
      p->call = "socket(SOCK_DGRAM)";
      return r;
    }
    fd = eng->udp[sonde__afi(af)].fd;
    sport = eng->udp[sonde__afi(af)].port;
    if (eng->unpriv[sonde__afi(af)])
      sonde__clear_pending_error(fd);
  } else {
    p->attempts++;
    r = sonde__bind_probe_socket(p, SOCK_DGRAM, IPPROTO_UDP);
    if (r == 0 && eng->unpriv[sonde__afi(af)] &&
        (r = sonde__recverr_enable(p->fd, af)) < 0)
      p->call = "setsockopt(IP_RECVERR)";
    if (r < 0)
      return r;
    fd = p->fd;
    sport = sonde__addr_port(&p->local);
  }
  sonde__key_make(&p->key, SONDE_PROTO_UDP, af, sonde__addr_bytes(&spec->dst),
                  sport, spec->dport);
  r = sonde__table_insert(eng, p);
  if (r < 0) {
    p->call = "match";
    return r;
  }
  if (fd == p->fd) {
    r = uv_poll_init(eng->loop, &p->poll, fd);
    if (r == 0) {
      p->poll_init = 1;
      p->poll.data = p;
      r = uv_poll_start(&p->poll, UV_READABLE, on_readable);
    }
    if (r < 0) {
      p->call = "uv_poll_start";
      return r;
    }
  }
  for (i = 0; i < len; i++)
    eng->sbuf[i] = (uint8_t)(0x40 + (i & 0x3f));
  {
    struct sockaddr_storage dst = spec->dst;
    if (af == AF_INET6)
      ((struct sockaddr_in6 *)&dst)->sin6_port = htons(spec->dport);
    else
      ((struct sockaddr_in *)&dst)->sin_port = htons(spec->dport);
    r = sonde__sendto_ttl(fd, eng->sbuf, len, &dst, spec->ttl);
  }
  if (r < 0) {
    sonde__table_remove(eng, p);
    p->call = "sendmsg";
    return r;
  }
  sonde__probe_sent(eng, p);
  return 0;
}

/* udp.c - UDP probes: on the engine's shared socket (kernel-chosen source
 * port, the destination port names the probe: classic traceroute), or on a
 * socket of their own bound per the binding policy. */
#include <stdlib.h>
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

/*
 * The payload: the fill byte or the default ramp, and with a held checksum
 * (Paris) two compensating bytes first. The kernel computes the UDP
 * checksum over the pseudo-header, the header it writes and the payload, so
 * the compensator is computed over exactly those. Returns 0 or -errno.
 */
static int payload(sonde_engine_t *eng, sonde__probe_t *p, uint16_t sport,
                   size_t len, int header, uint16_t *pseudo_out,
                   struct sockaddr_storage *src) {
  const sonde_probe_spec_t *spec = &p->spec;
  uint8_t *msg = eng->sbuf; /* header (ours to send, or for the sum only),
                               then payload */
  size_t i;

  for (i = 0; i < len; i++)
    msg[8 + i] = sonde__payload_byte(eng, spec, SONDE_PROTO_UDP, i);
  if (header) {
    uint16_t pseudo;
    int r;
    if (spec->hold_checksum &&
        (len < 2 || spec->checksum == 0 || spec->checksum == 0xffff))
      return SONDE_EINVAL;
    r = sonde__probe_src(eng, p, src);
    if (r < 0)
      return r;
    pseudo = sonde__pseudo_sum(spec->dst.ss_family, sonde__addr_bytes(src),
                               sonde__addr_bytes(&spec->dst), IPPROTO_UDP,
                               (uint32_t)(8 + len));
    msg[0] = (uint8_t)(sport >> 8);
    msg[1] = (uint8_t)sport;
    msg[2] = (uint8_t)(spec->dport >> 8);
    msg[3] = (uint8_t)spec->dport;
    msg[4] = (uint8_t)((8 + len) >> 8);
    msg[5] = (uint8_t)(8 + len);
    msg[6] = msg[7] = 0;
    if (spec->hold_checksum) {
      msg[8] = msg[9] = 0;
      sonde__checksum_hold(msg, 8 + len, 8, pseudo, spec->checksum);
    }
    *pseudo_out = pseudo;
  }
  return 0;
}

/* The shared socket of a flow: bound to the flow's source port, kept for
 * the engine's life (bind "fixed": every probe of a Paris or Dublin flow,
 * or of an MDA flow identifier, leaves from the same port). */
static int flow_socket(sonde_engine_t *eng, sonde__probe_t *p, int *fd) {
  int af = p->spec.dst.ss_family, r;
  sonde__flowsock_t *f;
  size_t i;

  struct sockaddr_storage src;

  /* Flows are bound to their source address (portbind.c): one per
   * address, port and family. */
  r = sonde__probe_src(eng, p, &src);
  if (r < 0)
    return r;
  for (i = 0; i < eng->n_flows; i++) {
    f = eng->flows[i];
    if (f->af == af && f->sock.port == p->spec.sport && f->sock.fd != -1 &&
        f->ifindex == p->ifindex && sonde__addr_equal(&f->local, &src, 0)) {
      *fd = f->sock.fd;
      p->local = f->local;
      return 0;
    }
  }
  if (eng->n_flows == eng->cap_flows) {
    size_t cap = eng->cap_flows ? eng->cap_flows * 2 : 16;
    sonde__flowsock_t **n = realloc(eng->flows, cap * sizeof(*n));
    if (n == NULL)
      return SONDE_ENOMEM;
    eng->flows = n;
    eng->cap_flows = cap;
  }
  /* The socket is made as a probe's own would be (the probe owns it, and
   * closes it if this fails), then handed over to the flow. */
  r = sonde__bind_probe_socket(p, SOCK_DGRAM, IPPROTO_UDP);
  if (r < 0)
    return r;
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return SONDE_ENOMEM;
  f->af = af;
  f->local = p->local;
  f->ifindex = p->ifindex;
  f->sock.fd = p->fd;
  p->fd = -1;
  eng->flows[eng->n_flows++] = f;
  f->sock.port = p->spec.sport;
  r = sonde__flow_watch(eng, f);
  if (r < 0) {
    p->call = "uv_poll_start";
    return r;
  }
  *fd = f->sock.fd;
  return 0;
}

/* The engine's send-only raw UDP socket of a family (Paris probes). */
static int raw_open(sonde_engine_t *eng, int af) {
  int i = sonde__afi(af), fd;
  if (eng->rawudp[i] != -1)
    return eng->rawudp[i];
  if (eng->rawudp_err[i])
    return eng->rawudp_err[i];
  fd = sonde__raw_udp_socket(af);
  if (fd < 0)
    return eng->rawudp_err[i] = fd == SONDE_EACCES ? SONDE_EPERM : fd;
  return eng->rawudp[i] = fd;
}

/*
 * The socket a UDP probe leaves from, and its source port:
 * - the engine's shared socket (kernel-chosen port; classic traceroute);
 * - a flow socket bound to spec->sport (bind "fixed");
 * - a socket of its own (bind "sequence": port = sport + seq).
 * A Paris probe (held checksum) is sent on the raw UDP socket instead,
 * with its header written here: the kernel would leave the checksum to
 * "offload" on lo and veth, and routers would quote a partial sum. A probe
 * with an ip_id goes out on the raw IPv4 socket, IP header and all. Either
 * way its port is still held by a shared or flow socket, so no one else
 * gets it.
 */
static int source(sonde_engine_t *eng, sonde__probe_t *p, int *fd,
                  uint16_t *sport) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, i = sonde__afi(af), r;

  if (spec->ip_id) {
    r = sonde__rawip_open(eng, p);
    if (r < 0)
      return r;
  } else if (spec->hold_checksum) {
    if (eng->unpriv[i]) {
      /* The error queue hands back the payload, not the UDP header: the
       * probes of one flow, told apart by their checksum, could not be. */
      p->call = "checksum (Paris UDP needs raw sockets)";
      return SONDE_ENOTSUP;
    }
    r = raw_open(eng, af);
    if (r < 0) {
      p->call = "socket(SOCK_RAW, IPPROTO_UDP)";
      return r;
    }
  }
  if (spec->bind == SONDE_BIND_KERNEL && spec->sport == 0 &&
      !eng->unpriv[i]) {
    r = sonde__udp_open(eng, af);
    if (r < 0) {
      p->call = "socket(SOCK_DGRAM)";
      return r;
    }
    /* Bound to every address: the probe leaves from the route's, which
     * its quote must name (recv.c). */
    r = sonde__probe_src(eng, p, &p->local);
    if (r < 0)
      return r;
    *fd = eng->udp[i].fd;
    *sport = eng->udp[i].port;
    sonde__addr_set_port(&p->local, *sport);
  } else if ((spec->bind != SONDE_BIND_SEQUENCE || spec->hold_checksum) &&
             !(spec->bind == SONDE_BIND_KERNEL && spec->sport == 0)) {
    r = flow_socket(eng, p, fd);
    if (r < 0)
      return r;
    *sport = spec->sport;
  } else {
    /* A socket of its own: bind "sequence", or, unprivileged, a
     * kernel-chosen port. The error queue of a socket bound to every
     * address would take errors quoting any source; one of its own is
     * bound to the probe's source address (portbind.c). */
    p->attempts++;
    r = sonde__bind_probe_socket(p, SOCK_DGRAM, IPPROTO_UDP);
    if (r == 0 && eng->unpriv[i] && (r = sonde__recverr_enable(p->fd, af)) < 0)
      p->call = "setsockopt(IP_RECVERR)";
    if (r < 0)
      return r;
    *fd = p->fd;
    *sport = sonde__addr_port(&p->local);
    return sonde__probe_poll(eng, p, UV_READABLE, on_readable);
  }
  if (eng->unpriv[i])
    sonde__clear_pending_error(*fd);
  return 0;
}

static int udp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, r, fd;
  uint16_t sport, pseudo = 0;
  size_t len = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD;
  /* we write the UDP header: a held checksum, or an IPv4 header too */
  int raw = spec->hold_checksum || spec->ip_id;
  struct sockaddr_storage dst = spec->dst, src;

  r = sonde__recv_open(eng, af);
  if (r < 0) {
    p->call = "socket(SOCK_RAW)";
    return r;
  }
  r = source(eng, p, &fd, &sport);
  if (r < 0)
    return r;
  sonde__key_make(&p->key, SONDE_PROTO_UDP, af, sonde__addr_bytes(&dst),
                  sport, spec->dport);
  if (spec->hold_checksum)
    p->key.c = spec->checksum;
  r = sonde__table_insert(eng, p);
  if (r < 0) {
    p->call = "match";
    return r;
  }
  r = payload(eng, p, sport, len, raw, &pseudo, &src);
  if (r == 0 && raw) {
    /* Sent from a raw socket: its source is the route's. */
    p->local = src;
    sonde__addr_set_port(&p->local, sport);
    /* Header and all; the address carries no port. A computed 0 goes out
     * as 0xffff: 0 would mean "no checksum" (RFC 768). */
    uint16_t c = sonde__cksum(eng->sbuf, 8 + len, pseudo);
    if (c == 0)
      c = 0xffff;
    eng->sbuf[6] = (uint8_t)(c >> 8);
    eng->sbuf[7] = (uint8_t)c;
    p->sent_ns = sonde__now(); /* the send time: see send_one */
    if (spec->ip_id)
      r = sonde__send_hdrincl(eng, p, IPPROTO_UDP, 8 + len);
    else
      r = sonde__sendto_probe(p, eng->rawudp[sonde__afi(af)], eng->sbuf,
                              8 + len, &dst);
  } else if (r == 0) {
    sonde__addr_set_port(&dst, spec->dport);
    p->sent_ns = sonde__now(); /* the send time: see send_one */
    r = sonde__send_datagram(eng, p, fd, eng->sbuf + 8, len, &dst);
  }
  return sonde__send_end(eng, p, r);
}

const sonde__proto_ops_t sonde__udp_ops = {
    .proto = SONDE_PROTO_UDP,
    .send = udp_send,
    .errq_quote_ok = sonde__udp_errq_quote_ok,
};

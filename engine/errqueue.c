/* errqueue.c - ICMP errors as the kernel hands them to the socket that sent
 * the probe (IP_RECVERR / IPV6_RECVERR, read with MSG_ERRQUEUE): the
 * unprivileged path, and the TCP probes' fallback when no raw socket saw the
 * error. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* Ask the kernel to queue ICMP errors on fd. */
int sonde__recverr_enable(int fd, int af) {
  int on = 1, r;
  if (af == AF_INET6)
    r = setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof(on));
  else
    r = setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof(on));
  return r < 0 ? -errno : 0;
}

/*
 * Send one probe datagram on a socket with IP_RECVERR (unprivileged mode).
 * An ICMP error about an earlier probe also sets the socket's pending
 * error, and Linux fails the next send with it (sock_alloc_send_skb checks
 * sk_err first): EHOSTUNREACH, ECONNREFUSED and the like at sendmsg() that
 * say nothing about this probe. The pending error is cleared before each
 * try (the error queue keeps the details for the probe it is about), and
 * such an error is tried again, twice at most: errors keep arriving while
 * other probes are in flight. Returns what sonde__sendto_probe returns.
 */
int sonde__send_recverr(sonde__probe_t *p, int fd, const void *buf,
                        size_t len, const struct sockaddr_storage *dst) {
  int r, k;
  for (k = 0;; k++) {
    sonde__clear_pending_error(fd);
    r = sonde__sendto_probe(p, fd, buf, len, dst);
    if (k == 2 || !(r == SONDE_EHOSTUNREACH || r == SONDE_ENETUNREACH ||
                    r == SONDE_ECONNREFUSED || r == SONDE_EHOSTDOWN ||
                    r == SONDE_EPROTO || r == SONDE_EACCES))
      return r;
  }
}

/* One message of the error queue: where the offending packet was going
 * (msg_name: address, and for UDP its destination port), its first bytes
 * (for ICMP datagram sockets, the echo request's header), and the error. */
typedef struct {
  struct sockaddr_storage name;
  uint8_t data[64];
  size_t len;
  int got; /* a message was read */
} errmsg_t;

/*
 * Read one message from fd's error queue and fill res's kind, unreach,
 * icmp_type, icmp_code, mtu and addr (the router or host that sent the
 * ICMP error: the offender; see sonde__parse_errmsg). Returns 1 if an ICMP
 * error was read, 0 if the queue is empty or the message was not an ICMP
 * error, or a negative errno.
 */
static int errmsg_read(int fd, errmsg_t *m, sonde_result_t *res) {
  union {
    char buf[512];
    struct cmsghdr align;
  } control;
  struct iovec iov = {m->data, sizeof(m->data)};
  struct msghdr msg;
  ssize_t n;

  m->len = 0;
  m->got = 0;
  res->icmp_type = -1; /* stays -1 unless the message is an ICMP error */
  memset(&msg, 0, sizeof(msg));
  memset(&m->name, 0, sizeof(m->name));
  msg.msg_name = &m->name;
  msg.msg_namelen = sizeof(m->name);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  do
    n = recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  m->len = (size_t)n;
  m->got = 1;
  return sonde__parse_errmsg(control.buf, msg.msg_controllen, res);
}

/*
 * What the error queue shows of the quote is p's probe. The kernel hands
 * over the quoted packet from its transport payload on (UDP: the payload;
 * TCP: the TCP header; ICMP datagram sockets: the echo request), and the
 * quoted destination as msg_name; it has found the socket by the quote's
 * addresses and ports (UDP and TCP sockets here are bound to their source
 * address, so a quote of another source finds none) but it checks neither
 * the quoted IP version nor the fragment offset (Linux's icmp_unreach and
 * icmpv6_notify). So whatever of the quote is visible is compared with what
 * the probe sent: the destination, the ports or the echo id and sequence,
 * and the payload's bytes as far as quoted, the engine's nonce among them
 * (a later fragment, another packet read at the wrong offset, or another
 * process's probe from the same port quotes other bytes). ICMPv6 echo
 * requests carry a checksum over the pseudo-header (RFC 4443 2.3), so that
 * the quoted source address is checked there too. 1 if p's, 0 if not.
 */
static int quote_ok(const sonde__probe_t *p, const errmsg_t *m) {
  const sonde_probe_spec_t *spec = &p->spec;

  if (m->name.ss_family != spec->dst.ss_family ||
      !sonde__addr_equal(&m->name, &spec->dst, 0))
    return 0;
  return p->ops->errq_quote_ok(p, m->data, m->len, &m->name);
}

/* The TCP header of our SYN: our ports (the kernel has checked the
 * sequence number), and as far as quoted a SYN without ACK, RST or FIN (a
 * later fragment has other bytes there). */
int sonde__tcp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                             size_t len, const struct sockaddr_storage *to) {
  if (len < 4 || (uint16_t)(data[0] << 8 | data[1]) != p->key.a ||
      (uint16_t)(data[2] << 8 | data[3]) != p->key.b)
    return 0;
  return len < 14 || (data[13] & 0x17) == 0x02;
}

/* Our destination port, and the payload's bytes as far as quoted. */
int sonde__udp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                             size_t len, const struct sockaddr_storage *to) {
  const sonde_probe_spec_t *spec = &p->spec;
  size_t size = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD, i;

  if (sonde__addr_port(to) != p->key.b)
    return 0;
  /* After the payload: RFC 4884 padding and extensions, not ours. */
  for (i = 0; i < len && i < size; i++)
    if (data[i] != sonde__payload_byte(p->eng, spec, SONDE_PROTO_UDP, i))
      return 0;
  return 1;
}

/* An echo request: type, id and sequence, payload, and for ICMPv6 the
 * checksum (the kernel's, over our source and the destination). */
int sonde__icmp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                              size_t len, const struct sockaddr_storage *to) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family;
  size_t size = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD, i;

  if (len < 8 || data[0] != (af == AF_INET6 ? 128 : 8) ||
      (uint16_t)(data[4] << 8 | data[5]) != p->key.a ||
      (uint16_t)(data[6] << 8 | data[7]) != p->key.b)
    return 0;
  for (i = 8; i < len && i < 8 + size; i++) {
    if (spec->hold_checksum && i < 10)
      continue; /* the compensating bytes */
    if (data[i] != sonde__payload_byte(p->eng, spec, SONDE_PROTO_ICMP, i - 8))
      return 0;
  }
  if (af == AF_INET6) {
    uint8_t msg[8 + SONDE__MAX_PAYLOAD];
    const void *src = sonde__addr_bytes(&p->local);
    uint16_t c;
    if (src == NULL || p->local.ss_family != AF_INET6 ||
        size > SONDE__MAX_PAYLOAD ||
        sonde__build_echo(AF_INET6, msg, sizeof(msg), p->key.a, p->key.b,
                          size) < 0)
      return 0;
    for (i = 0; i < size; i++)
      msg[8 + i] = sonde__payload_byte(p->eng, spec, SONDE_PROTO_ICMP, i);
    if (spec->hold_checksum) {
      if (len < 10)
        return 1; /* the sum cannot be rebuilt without the compensator */
      msg[8] = data[8];
      msg[9] = data[9];
    }
    c = sonde__l4_cksum(AF_INET6, src, sonde__addr_bytes(&spec->dst),
                        IPPROTO_ICMPV6, msg, 8 + size);
    if (c != (uint16_t)(data[2] << 8 | data[3]))
      return 0;
  }
  return 1;
}

/*
 * Read one ICMP error queued on p's own socket into res (kind, codes, mtu,
 * the offender as addr). Returns a SONDE__ERRQ_* value: REPLY only for an
 * ICMP error whose quote is p's (quote_ok) and that is a hop (not
 * fragment reassembly time exceeded).
 */
int sonde__errqueue_read(sonde__probe_t *p, sonde_result_t *res) {
  errmsg_t m;
  sonde_result_t info;
  int r;

  memset(&info, 0, sizeof(info));
  r = errmsg_read(p->fd, &m, &info);
  if (r < 0 || !m.got)
    return SONDE__ERRQ_EMPTY;
  if (r == 0)
    return info.icmp_type == -1 ? SONDE__ERRQ_LOCAL : SONDE__ERRQ_REFUSED;
  if (!quote_ok(p, &m))
    return SONDE__ERRQ_REFUSED;
  res->kind = info.kind;
  res->unreach = info.unreach;
  res->icmp_type = info.icmp_type;
  res->icmp_code = info.icmp_code;
  res->mtu = info.mtu;
  res->addr = info.addr;
  return SONDE__ERRQ_REPLY;
}

/*
 * Read every ICMP error queued on a shared socket and end the probe each one
 * is about. The queue names the probe: for UDP by where the datagram was
 * going (msg_name: address and destination port) and our port; for ICMP
 * datagram sockets by the echo request's own header (id and sequence).
 */
void sonde__errqueue_drain(sonde_engine_t *eng, int fd, int proto,
                           uint16_t local_port) {
  int i;
  for (i = 0; i < SONDE__RECV_BURST && fd != -1 && !eng->closing; i++) {
    sonde_result_t info;
    sonde__key_t key;
    sonde__probe_t *p;
    errmsg_t m;
    const void *dst;
    int r;

    memset(&info, 0, sizeof(info));
    r = errmsg_read(fd, &m, &info);
    if (r < 0 || !m.got)
      break;
    eng->stats.received++;
    dst = sonde__addr_bytes(&m.name);
    if (r == 0 || dst == NULL) {
      eng->stats.ignored++;
      continue;
    }
    if (proto == SONDE_PROTO_ICMP) {
      if (m.len < 8) {
        eng->stats.malformed++;
        continue;
      }
      sonde__key_make(&key, SONDE_PROTO_ICMP, m.name.ss_family, dst,
                      (uint16_t)(m.data[4] << 8 | m.data[5]),
                      (uint16_t)(m.data[6] << 8 | m.data[7]));
    } else {
      sonde__key_make(&key, SONDE_PROTO_UDP, m.name.ss_family, dst,
                      local_port, sonde__addr_port(&m.name));
    }
    p = sonde__table_find(eng, &key);
    if (p == NULL || !quote_ok(p, &m)) {
      eng->stats.ignored++;
      continue;
    }
    {
      sonde_result_t res;
      sonde__result_reply(p, &res, info.kind, &info.addr, sonde__now());
      res.unreach = info.unreach;
      res.icmp_type = info.icmp_type;
      res.icmp_code = info.icmp_code;
      res.mtu = info.mtu;
      sonde__probe_done(eng, p, &res);
    }
    /* A probe's own socket is closed once its probe ends. */
    if (fd != eng->udp[0].fd && fd != eng->udp[1].fd &&
        fd != eng->ping[0].fd && fd != eng->ping[1].fd)
      break;
  }
}

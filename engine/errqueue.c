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

/* One message of the error queue: where the offending packet was going
 * (msg_name: address, and for UDP its destination port), its first bytes
 * (for ICMP datagram sockets, the echo request's header), and the error. */
typedef struct {
  struct sockaddr_storage name;
  uint8_t data[64];
  size_t len;
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
  return sonde__parse_errmsg(control.buf, msg.msg_controllen, res);
}

/* Read one ICMP error queued on a probe's own socket into res. */
int sonde__errqueue_read(int fd, sonde_result_t *res) {
  errmsg_t m;
  return errmsg_read(fd, &m, res);
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
    if (r == 0 && m.len == 0)
      break;
    if (r < 0)
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
    if (p == NULL) {
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

/* tcp.c - TCP connect probes: a socket of their own per probe, bound per the
 * binding policy, a non-blocking connect() with the probe's TTL, and the
 * meaning of every error that connect reports (SEEDS.md 000, 002, 003). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

static void on_connect(uv_poll_t *h, int status, int events);

/*
 * Close without a FIN: SO_LINGER 0 sends RST and leaves no TIME_WAIT, so the
 * source port is free for the next probe that the sequence policy gives it.
 */
static void abort_close(sonde_engine_t *eng, sonde__probe_t *p,
                        sonde__restart_fn restart) {
  struct linger lg = {1, 0};
  if (p->fd != -1)
    (void)setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  sonde__probe_close_socket(eng, p, restart);
}

/*
 * One connect attempt: socket, SO_REUSEPORT, bind per policy, TTL,
 * IP_RECVERR, connect. EADDRINUSE may come from bind() or, for a port in
 * TIME_WAIT once SO_REUSEPORT is set, from connect(): both reach the caller,
 * which makes the probe skipped. With the kernel choosing the port, a
 * spurious EADDRNOTAVAIL is retried at most twice, as Go's dialTCP does
 * (SEEDS.md 003); with a port of our choosing it means the address is not
 * local or the ephemeral range is exhausted, and the probe fails.
 */
static int tcp_connect(sonde_engine_t *eng, sonde__probe_t *p) {
  int af = p->spec.dst.ss_family, r;
  struct sockaddr_storage dst = p->spec.dst;
  socklen_t len;

  if (af == AF_INET6)
    ((struct sockaddr_in6 *)&dst)->sin6_port = htons(p->spec.dport);
  else
    ((struct sockaddr_in *)&dst)->sin_port = htons(p->spec.dport);
  for (;;) {
    p->attempts++;
    r = sonde__bind_probe_socket(p, SOCK_STREAM, IPPROTO_TCP);
    if (r == 0 && (r = sonde__set_ttl(p->fd, af, p->spec.ttl)) < 0)
      p->call = af == AF_INET6 ? "setsockopt(IPV6_UNICAST_HOPS)"
                               : "setsockopt(IP_TTL)";
    if (r == 0 && (r = sonde__recverr_enable(p->fd, af)) < 0)
      p->call = af == AF_INET6 ? "setsockopt(IPV6_RECVERR)"
                               : "setsockopt(IP_RECVERR)";
    if (r == 0 && connect(p->fd, (struct sockaddr *)&dst,
                          sonde__addr_len(&dst)) < 0 &&
        errno != EINPROGRESS) {
      r = -errno;
      p->call = "connect";
    }
    if (r == 0 || r == SONDE_ECONNREFUSED)
      break;
    sonde__close_fd(&p->fd);
    if (r == SONDE_EADDRNOTAVAIL && p->spec.bind == SONDE_BIND_KERNEL &&
        p->attempts < SONDE__CONNECT_ATTEMPTS)
      continue;
    return r;
  }
  len = sizeof(p->local);
  (void)getsockname(p->fd, (struct sockaddr *)&p->local, &len);
  sonde__key_make(&p->key, SONDE_PROTO_TCP, af, sonde__addr_bytes(&dst),
                  sonde__addr_port(&p->local), p->spec.dport);
  if (sonde__table_insert(eng, p) < 0) {
    p->call = "match";
    sonde__close_fd(&p->fd);
    return SONDE_EEXIST;
  }
  if (r == SONDE_ECONNREFUSED)
    return r; /* refused at once (loopback): the caller reports it */
  r = uv_poll_init(eng->loop, &p->poll, p->fd);
  if (r == 0) {
    p->poll_init = 1;
    p->poll_closing = 0;
    p->poll.data = p;
    r = uv_poll_start(&p->poll, UV_WRITABLE, on_connect);
  }
  if (r < 0)
    p->call = "uv_poll_start";
  return r;
}

static void reply(sonde_engine_t *eng, sonde__probe_t *p, sonde_kind_t kind,
                  int err) {
  sonde_result_t res;
  sonde__result_init(p, &res);
  res.status = SONDE_STATUS_REPLY;
  res.kind = kind;
  res.error = err;
  res.addr = p->spec.dst;
  res.rtt = (double)(sonde__now() - p->sent_ns) / 1e9;
  if (kind == SONDE_KIND_SELF_CONNECT)
    res.call = "connect";
  abort_close(eng, p, NULL);
  sonde__probe_done(eng, p, &res);
}

static void restart(sonde_engine_t *eng, sonde__probe_t *p) {
  int r = tcp_connect(eng, p);
  if (r < 0)
    sonde__probe_fail(eng, p, r);
}

/*
 * connect() succeeded. If the socket is connected to itself (TCP
 * simultaneous open: the kernel chose the target port as our source port,
 * with no listener there; SEEDS.md 003), it is not an open port: close and
 * retry on a new socket, at most twice, then report self_connect.
 */
static void connected(sonde_engine_t *eng, sonde__probe_t *p) {
  struct sockaddr_storage local, peer;
  socklen_t ll = sizeof(local), pl = sizeof(peer);

  if (getsockname(p->fd, (struct sockaddr *)&local, &ll) == 0 &&
      getpeername(p->fd, (struct sockaddr *)&peer, &pl) == 0 &&
      sonde__addr_equal(&local, &peer, 1)) {
    if (p->attempts < SONDE__CONNECT_ATTEMPTS) {
      sonde__table_remove(eng, p);
      abort_close(eng, p, restart);
      return;
    }
    reply(eng, p, SONDE_KIND_SELF_CONNECT, 0);
    return;
  }
  reply(eng, p, SONDE_KIND_TCP_SYNACK, 0);
}

/*
 * An ICMP error ended the connect (EHOSTUNREACH for time exceeded and host
 * unreachable, ENETUNREACH, EACCES for prohibited, EPROTO...). The raw
 * socket already holds the ICMP packet (the kernel delivers to raw sockets
 * before TCP's error handler), so drain it first: it names the hop, the
 * quote and the MPLS labels. Else the socket's error queue names the hop;
 * else only the errno is known.
 */
static void icmp_error(sonde_engine_t *eng, sonde__probe_t *p, int err) {
  uint64_t id = p->id;
  sonde_result_t res;

  sonde__recv_drain(eng, p->spec.dst.ss_family);
  if (p->id != id || p->state != SONDE__INFLIGHT)
    return;
  sonde__result_init(p, &res);
  res.status = SONDE_STATUS_REPLY;
  res.error = err;
  res.rtt = (double)(sonde__now() - p->sent_ns) / 1e9;
  if (sonde__errqueue_read(p->fd, &res) <= 0) {
    res.kind = SONDE_KIND_DEST_UNREACHABLE;
    res.unreach = err == SONDE_ENETUNREACH ? SONDE_UNREACH_NET
                  : err == SONDE_EACCES    ? SONDE_UNREACH_PROHIBITED
                                           : SONDE_UNREACH_HOST;
  }
  abort_close(eng, p, NULL);
  sonde__probe_done(eng, p, &res);
}

/* What connect's outcome (SO_ERROR) means for the probe (SEEDS.md 002). */
static void outcome(sonde_engine_t *eng, sonde__probe_t *p, int err) {
  switch (err) {
  case 0:
    connected(eng, p);
    break;
  case SONDE_ECONNREFUSED: /* RST: the host is reached, the port closed */
    reply(eng, p, SONDE_KIND_TCP_RST, err);
    break;
  case SONDE_ECONNRESET:
    reply(eng, p, SONDE_KIND_RESET, err);
    break;
  case SONDE_EHOSTUNREACH:
  case SONDE_ENETUNREACH:
  case SONDE_EHOSTDOWN:
  case SONDE_EACCES:
  case SONDE_EPROTO:
  case SONDE_EMSGSIZE:
    icmp_error(eng, p, err);
    break;
  default: {
    /* ETIMEDOUT only if the kernel's SYN retries beat our own wait. */
    sonde_result_t res;
    sonde__result_init(p, &res);
    res.status = err == SONDE_ETIMEDOUT ? SONDE_STATUS_TIMEOUT
                                        : SONDE_STATUS_FAILED;
    res.error = err;
    res.call = "connect";
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
  }
  }
}

static void on_connect(uv_poll_t *h, int status, int events) {
  sonde__probe_t *p = h->data;
  int err = 0;
  socklen_t len = sizeof(err);

  if (p->state != SONDE__INFLIGHT || p->poll_closing)
    return;
  /* libuv reports EPOLLERR as status UV_EBADF (and stops the poll): the
   * socket's own error says what happened. */
  if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0 && status < 0) {
    /* An error without a socket error: an ICMP error that IP_RECVERR queued
     * as a soft error. */
    icmp_error(p->eng, p, SONDE_EHOSTUNREACH);
    return;
  }
  outcome(p->eng, p, -err);
}

int sonde__tcp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  int r;
  /* The raw socket names the hops; without it (no CAP_NET_RAW) the error
   * queue still does, so its failure is not the probe's. */
  (void)sonde__recv_open(eng, p->spec.dst.ss_family);
  r = tcp_connect(eng, p);
  if (r < 0 && r != SONDE_ECONNREFUSED)
    return r;
  sonde__probe_sent(eng, p);
  if (r == SONDE_ECONNREFUSED && p->state == SONDE__INFLIGHT)
    outcome(eng, p, r);
  return 0;
}

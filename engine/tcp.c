/* tcp.c - TCP connect probes: a socket of their own per probe, bound per the
 * binding policy, a non-blocking connect() with the probe's TTL, and the
 * meaning of every error that connect reports: EADDRINUSE (a busy port:
 * skipped) is not EADDRNOTAVAIL (exhaustion: failed), a refused connect is
 * a closed port, and a connect to itself is no open port. */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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
 * IP_RECVERR, the probe's IP header fields (TOS, DF, flow label: iphdr.c),
 * connect. EADDRINUSE may come from bind() or, for a port in TIME_WAIT once
 * SO_REUSEPORT is set, from connect(): both reach the caller, which makes
 * the probe skipped. With the kernel choosing the port, a
 * spurious EADDRNOTAVAIL is retried at most twice, as Go's dialTCP does;
 * with a port of our choosing it means the address is not local or the
 * ephemeral range is exhausted, and the probe fails.
 */
static int tcp_connect(sonde_engine_t *eng, sonde__probe_t *p) {
  int af = p->spec.dst.ss_family, r;
  struct sockaddr_storage dst = p->spec.dst;
  socklen_t len;

  sonde__addr_set_port(&dst, p->spec.dport);
  for (;;) {
    p->attempts++;
    r = sonde__bind_probe_socket(p, SOCK_STREAM, IPPROTO_TCP);
    if (r == 0 && (r = sonde__set_ttl(p->fd, af, p->spec.ttl)) < 0)
      p->call = af == AF_INET6 ? "setsockopt(IPV6_UNICAST_HOPS)"
                               : "setsockopt(IP_TTL)";
    if (r == 0 && (r = sonde__recverr_enable(p->fd, af)) < 0)
      p->call = af == AF_INET6 ? "setsockopt(IPV6_RECVERR)"
                               : "setsockopt(IP_RECVERR)";
    if (r == 0)
      r = sonde__tcp_fields(p);
    if (r == 0 && p->spec.has_flow_label) {
      r = sonde__connect_fields(p, &dst);
    } else if (r == 0 && connect(p->fd, (struct sockaddr *)&dst,
                                 sonde__addr_len(&dst)) < 0 &&
               errno != EINPROGRESS) {
      r = -errno;
      p->call = "connect";
    }
    if (r == 0 || r == SONDE_ECONNREFUSED)
      break;
    sonde__close_fd(&p->fd);
    /*
     * Linux: once bind() to a port of our choosing has succeeded, connect()
     * fails with EADDRNOTAVAIL, not EADDRINUSE, when the 4-tuple is held in
     * TIME_WAIT (SO_REUSEPORT moved the check from bind to connect, and
     * without TCP timestamps the TIME_WAIT cannot be reused). The port is
     * busy for this destination, exactly what EADDRINUSE means to a
     * prober: the probe is skipped, not failed. Only with
     * the kernel choosing the port does EADDRNOTAVAIL mean exhaustion.
     */
    if (r == SONDE_EADDRNOTAVAIL && p->spec.bind != SONDE_BIND_KERNEL &&
        p->call && strcmp(p->call, "connect") == 0)
      return SONDE_EADDRINUSE;
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
  return sonde__probe_poll(eng, p, UV_WRITABLE, on_connect);
}

/* net.ipv4.tcp_syn_linear_timeouts of this network namespace (Linux 6.5:
 * the first that many SYN retransmissions keep the initial RTO), 0 if the
 * kernel has none. */
static unsigned linear_timeouts(void) {
  char buf[16];
  ssize_t n;
  int fd = open("/proc/sys/net/ipv4/tcp_syn_linear_timeouts",
                O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  return (unsigned)strtoul(buf, NULL, 10);
}

/*
 * How long after the probe's SYN the kernel sent the SYN that was
 * answered, in ns: 0 when nothing was retransmitted. While a connect()
 * waits, Linux retransmits its SYN after its initial RTO (1 s,
 * TCP_TIMEOUT_INIT), the first tcp_syn_linear_timeouts times 1 s apart,
 * then doubling (RFC 6298 5.5); an answer after n retransmissions answers,
 * as far as anyone can tell (Karn), the last one. TCP_INFO counts them
 * (tcpi_total_retrans) on a socket that connected or was refused alike.
 * The timer fires late on a busy machine, which stays in the RTT. Without
 * TCP_INFO, 0.
 */
static uint64_t resent_ns(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  uint64_t at = 0, rto = 1;
  unsigned n, k, lin;

  memset(&ti, 0, sizeof(ti));
  if (fd == -1 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
    return 0;
  n = ti.tcpi_total_retrans;
  if (n == 0 || n > 16)
    return 0;
  lin = linear_timeouts();
  for (k = 1; k <= n; k++) {
    at += rto;
    if (k > lin)
      rto *= 2;
  }
  return at * 1000000000ull;
}

static void reply(sonde_engine_t *eng, sonde__probe_t *p, sonde_kind_t kind,
                  int err) {
  sonde_result_t res;
  /* timed from the SYN that was answered, not the first (resent_ns) */
  sonde__result_reply(p, &res, kind, &p->spec.dst,
                      sonde__now() - resent_ns(p->fd));
  res.error = err;
  if (kind == SONDE_KIND_SELF_CONNECT)
    res.call = "connect";
  abort_close(eng, p, NULL);
  sonde__probe_done(eng, p, &res);
}

/* --- the session after connect (tcping's --payload / --expect) ----------- */

static void on_session(uv_poll_t *h, int status, int events);

static void session_done(sonde_engine_t *eng, sonde__probe_t *p,
                         sonde_kind_t kind, int err, int matched) {
  sonde_result_t res;
  /* rtt: the connect's (SYN to SYN-ACK); `response` times the reply */
  sonde__result_reply(p, &res, kind, &p->spec.dst, p->connected_ns);
  res.error = err;
  if (kind == SONDE_KIND_TCP_SYNACK)
    res.response = (double)(sonde__now() - p->sent_ns) / 1e9;
  res.matched = matched;
  if (err)
    res.call = p->stage == SONDE__SESSION_RECV ? "recv" : "send";
  abort_close(eng, p, NULL);
  sonde__probe_done(eng, p, &res);
}

/* An error while writing or reading: RST (ECONNRESET), or EPIPE when we
 * wrote after the peer had closed and its RST came back (the first send
 * after a FIN succeeds; the peer's RST makes the next one fail). */
static void session_error(sonde_engine_t *eng, sonde__probe_t *p, int err) {
  if (err == SONDE_ECONNRESET || err == SONDE_EPIPE)
    session_done(eng, p, SONDE_KIND_RESET, err, 0);
  else if (err == SONDE_ETIMEDOUT) {
    sonde_result_t res;
    sonde__result_init(p, &res);
    res.status = SONDE_STATUS_TIMEOUT;
    res.error = err;
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
  } else {
    sonde_result_t res;
    sonde__result_init(p, &res);
    res.status = SONDE_STATUS_FAILED;
    res.error = err;
    res.call = p->stage == SONDE__SESSION_RECV ? "recv" : "send";
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
  }
}

static int session_poll(sonde__probe_t *p, int events) {
  int r = uv_poll_start(&p->poll, events, on_session);
  if (r < 0)
    session_error(p->eng, p, r);
  return r;
}

/* Write what is left of the payload; "sent" only means "in the local
 * buffer": delivery shows in the reply, never in send()'s return. */
static void session_write(sonde_engine_t *eng, sonde__probe_t *p) {
  while (p->sent < p->spec.payload_len) {
    ssize_t n = send(p->fd, p->spec.payload + p->sent,
                     p->spec.payload_len - p->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        session_poll(p, UV_WRITABLE);
        return;
      }
      session_error(eng, p, -errno);
      return;
    }
    p->sent += (size_t)n;
  }
  p->stage = SONDE__SESSION_RECV;
  session_poll(p, UV_READABLE);
}

static void session_read(sonde_engine_t *eng, sonde__probe_t *p) {
  const uint8_t *expect = p->spec.expect;
  size_t elen = p->spec.expect_len;
  uint8_t *buf = p->session + p->spec.payload_len + elen;
  ssize_t n;

  do
    n = recv(p->fd, buf + p->rlen, SONDE__SESSION_RBUF - p->rlen, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      session_error(eng, p, -errno);
    return;
  }
  if (n == 0) {
    /*
     * The peer closed (FIN). If it answered first, that is a server
     * that replied and closed as HTTP/1.0 or a banner does: the
     * session ends "closed" (the reply did not hold the expected
     * bytes), not a reset of our making. If it closed without a word,
     * write the payload again: the kernel accepts it (the first send
     * after a FIN succeeds), the peer answers with RST, and that RST
     * surfaces as EPIPE. Poll only for errors: the socket stays
     * readable (EOF) from now on.
     */
    if (p->spec.payload_len && p->stage == SONDE__SESSION_RECV &&
        p->received == 0) {
      if (send(p->fd, p->spec.payload, p->spec.payload_len,
               MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        session_error(eng, p, -errno);
        return;
      }
      p->stage = SONDE__SESSION_AFTER_FIN;
      session_poll(p, UV_PRIORITIZED);
      return;
    }
    session_done(eng, p, SONDE_KIND_CLOSED, 0, 0);
    return;
  }
  p->received += (size_t)n;
  p->rlen += (size_t)n;
  if (elen == 0) {
    session_done(eng, p, SONDE_KIND_TCP_SYNACK, 0, 0);
    return;
  }
  if (memmem(buf, p->rlen, expect, elen)) {
    session_done(eng, p, SONDE_KIND_TCP_SYNACK, 0, 1);
    return;
  }
  /* Keep the tail that could start a match; drop the rest. */
  if (p->rlen >= elen) {
    memmove(buf, buf + p->rlen - (elen - 1), elen - 1);
    p->rlen = elen - 1;
  }
}

static void on_session(uv_poll_t *h, int status, int events) {
  sonde__probe_t *p = h->data;
  sonde_engine_t *eng = p->eng;
  int err = 0;
  socklen_t len = sizeof(err);

  if (p->state != SONDE__INFLIGHT || p->poll_closing)
    return;
  if (status < 0 || p->stage == SONDE__SESSION_AFTER_FIN) {
    /* An error or a hang-up: the socket's error names it. */
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      err = errno;
    if (err == 0 && p->stage == SONDE__SESSION_AFTER_FIN &&
        send(p->fd, p->spec.payload, p->spec.payload_len,
             MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
      err = errno;
    if (err) {
      session_error(eng, p, -err);
      return;
    }
    if (p->stage == SONDE__SESSION_AFTER_FIN) {
      session_done(eng, p, SONDE_KIND_CLOSED, 0, 0);
      return;
    }
  }
  if (p->stage == SONDE__SESSION_SEND)
    session_write(eng, p);
  else
    session_read(eng, p);
}

static void session_start(sonde_engine_t *eng, sonde__probe_t *p) {
  p->connected_ns = sonde__now();
  p->stage = SONDE__SESSION_SEND;
  session_write(eng, p);
}

/* --- connect ------------------------------------------------------------- */

static void restart(sonde_engine_t *eng, sonde__probe_t *p) {
  int r = tcp_connect(eng, p);
  if (r < 0)
    sonde__probe_fail(eng, p, r);
}

/*
 * connect() succeeded. If the socket is connected to itself (TCP
 * simultaneous open: the kernel chose the target port as our source port,
 * with no listener there, inside ip_local_port_range), it is not an open
 * port: close and
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
  if (p->session) {
    session_start(eng, p);
    return;
  }
  p->connected_ns = sonde__now();
  reply(eng, p, SONDE_KIND_TCP_SYNACK, 0);
}

/*
 * An ICMP error ended the connect (EHOSTUNREACH for time exceeded and host
 * unreachable, ENETUNREACH, EACCES for prohibited, EPROTO...). Linux hands
 * an ICMP error to raw sockets before TCP's error handler runs, so with a
 * raw socket the packet is there to drain: it names the hop, the quote
 * and the MPLS labels, and the quote is checked in full (source address,
 * IP version, fragment offset, extension headers). Without one (no
 * CAP_NET_RAW) the socket's error queue names the hop.
 *
 * The kernel ends a connect in SYN-SENT on any ICMP error whose 4-tuple
 * and sequence number match, without looking at the rest of the quote
 * (Linux's icmp_unreach checks only that the quoted IPv4 header is at
 * least 20 bytes long; a later fragment or a wrong version field passes),
 * and on fragment reassembly time exceeded as on any time exceeded. An
 * error that the checks refuse is not this probe's answer: its socket is
 * closed and the probe stays in flight, for the raw socket to match its
 * real answer or for its wait to end it.
 */
static void icmp_error(sonde_engine_t *eng, sonde__probe_t *p, int err) {
  uint64_t id = p->id;
  sonde_result_t res;
  int r;

  p->icmp_wanted = 1;
  sonde__recv_drain(eng, p->spec.dst.ss_family);
  if (p->id != id || p->state != SONDE__INFLIGHT)
    return;
  p->icmp_wanted = 0;
  if (p->pending) {
    res = *p->pending;
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
    return;
  }
  sonde__result_reply(p, &res, SONDE_KIND_NONE, NULL, sonde__now());
  res.error = err;
  r = eng->icmp[sonde__afi(p->spec.dst.ss_family)].fd != -1
          ? SONDE__ERRQ_REFUSED
          : sonde__errqueue_read(p, &res);
  if (r == SONDE__ERRQ_REPLY) {
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
    return;
  }
  if (r == SONDE__ERRQ_LOCAL) {
    /* No ICMP error: the local stack refused. */
    sonde__result_init(p, &res);
    res.status = SONDE_STATUS_FAILED;
    res.error = err;
    res.call = "connect";
    abort_close(eng, p, NULL);
    sonde__probe_done(eng, p, &res);
    return;
  }
  /* Refused, or nothing queued to name a hop (the kernel drops what
   * would overflow the socket's receive buffer): no answer to take. */
  abort_close(eng, p, NULL);
}

/* What connect's outcome (SO_ERROR) means for the probe: ECONNREFUSED is
 * the peer's RST (a closed port, the host reached), EHOSTUNREACH and
 * ENETUNREACH an ICMP error from a hop, ETIMEDOUT the kernel giving up on
 * its SYN retransmissions (the probe's own wait is shorter). */
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

static int tcp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  int r = sonde__syn_mode(eng, p);
  if (r != 0)
    return r < 0 ? r : sonde__syn_send(eng, p);
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

const sonde__proto_ops_t sonde__tcp_ops = {
    .proto = SONDE_PROTO_TCP,
    .send = tcp_send,
    .errq_quote_ok = sonde__tcp_errq_quote_ok,
};

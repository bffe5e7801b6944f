/* recv.c - the engine's receive sockets (one raw ICMP and one raw ICMPv6,
 * opened lazily; one shared UDP socket per family) and the matching of what
 * they read to the probe that caused it. */
#include <errno.h>
#include <netinet/icmp6.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "quote.h"

static void on_icmp(uv_poll_t *h, int status, int events);
static void on_udp(uv_poll_t *h, int status, int events);
static void on_flow(uv_poll_t *h, int status, int events);

#define SOCK_OF(h) ((sonde__sock_t *)((char *)(h) - offsetof(sonde__sock_t, poll)))

void sonde__sock_close(sonde_engine_t *eng, sonde__sock_t *s) {
  if (s->poll_init) {
    uv_poll_stop(&s->poll);
    s->poll_init = 0;
    sonde__close_fd(&s->fd);
    sonde__handle_close(eng, (uv_handle_t *)&s->poll);
  } else {
    sonde__close_fd(&s->fd);
  }
}

/*
 * When a packet arrived: the kernel's receive timestamp (SO_TIMESTAMPNS),
 * on the engine's clock. RTTs end there, not when the engine gets round to
 * reading: with many probes in flight, replies wait in the socket's queue
 * while earlier ones are handled, and a read-time stamp would count that
 * wait in the RTT (and so in every adaptive wait derived from it).
 *
 * The kernel stamps with CLOCK_REALTIME; the engine's clock is uv_hrtime()
 * (CLOCK_MONOTONIC). The offset between them is taken once per burst read
 * (both run at the same rate; only a step of the wall clock moves it).
 */
typedef struct {
  int64_t offset; /* realtime - monotonic, in ns; 0: not taken yet */
} rx_clock_t;

static uint64_t rx_stamp(rx_clock_t *c, const struct timespec *ts,
                         uint64_t now) {
  int64_t real, stamp;
  if (c->offset == 0) {
    struct timespec rt;
    if (clock_gettime(CLOCK_REALTIME, &rt) < 0)
      return now;
    c->offset = ((int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec) -
                (int64_t)sonde__now();
  }
  real = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
  stamp = real - c->offset;
  /* Not later than now; and a stamp that makes no sense (no timestamp, or
   * a wall clock stepped since) falls back to the time of reading. */
  if (real == 0 || stamp <= 0 || (uint64_t)stamp > now)
    return now;
  return (uint64_t)stamp;
}

/* Poll an engine socket for reading. The poll handle is unreferenced: the
 * receive sockets alone do not keep the loop running; pending probes do,
 * through the timer. */
static int sock_watch(sonde_engine_t *eng, sonde__sock_t *s, uv_poll_cb cb) {
  int on = 1, r;
  /* Best effort: without it drops are not counted, nothing else changes. */
  (void)setsockopt(s->fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on));
  /* Best effort too: without receive timestamps, RTTs end at the read. */
  (void)setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
  r = uv_poll_init(eng->loop, &s->poll, s->fd);
  if (r < 0) {
    sonde__close_fd(&s->fd);
    return r;
  }
  s->poll_init = 1;
  s->poll.data = eng;
  uv_unref((uv_handle_t *)&s->poll);
  return uv_poll_start(&s->poll, UV_READABLE, cb);
}

/*
 * Decide how the engine hears ICMP for a family, once: through a raw socket
 * (taken from the pool opened before privileges were dropped, or new), or,
 * when raw sockets are not allowed (EPERM/EACCES) and the engine may run
 * unprivileged, through each sending socket's error queue (IP_RECVERR) and
 * ICMP datagram sockets. The raw ICMP socket also sends echo requests. A
 * failure is remembered so that every probe of that family fails with the
 * same named error without a socket() call per probe.
 */
int sonde__recv_open(sonde_engine_t *eng, int af) {
  int i = sonde__afi(af);
  sonde__sock_t *s = &eng->icmp[i];
  int fd, on = 1;

  if (s->fd != -1 || eng->unpriv[i])
    return 0;
  if (s->err)
    return s->err;
  if (eng->opts.priv == SONDE_PRIV_UNPRIV) {
    eng->unpriv[i] = 1;
    return 0;
  }
  fd = sonde__raw_socket(af);
  if (fd < 0) {
    fd = fd == SONDE_EACCES ? SONDE_EPERM : fd;
    if (fd == SONDE_EPERM && eng->opts.priv == SONDE_PRIV_AUTO) {
      eng->unpriv[i] = 1;
      return 0;
    }
    s->err = fd;
    return s->err;
  }
  s->fd = fd;
  if (af == AF_INET6) {
    struct icmp6_filter filt;
    ICMP6_FILTER_SETBLOCKALL(&filt);
    ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filt);
    ICMP6_FILTER_SETPASS(ICMP6_PACKET_TOO_BIG, &filt);
    ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &filt);
    ICMP6_FILTER_SETPASS(ICMP6_PARAM_PROB, &filt);
    ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filt);
    /* The filter and the hop limit of replies are best effort: without them
     * more packets are read and reply_ttl is unknown, nothing is wrong. */
    (void)setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filt, sizeof(filt));
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on));
  }
  return sock_watch(eng, s, on_icmp);
}

/*
 * A shared datagram socket of a family, bound to a kernel-chosen port (for
 * ICMP datagram sockets the kernel makes that port the echo id). In
 * unprivileged mode ICMP errors come back on its error queue (IP_RECVERR).
 */
static int dgram_open(sonde_engine_t *eng, sonde__sock_t *s, int af,
                      int proto, uv_poll_cb cb) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int fd, on = 1;

  if (s->fd != -1)
    return 0;
  if (s->err)
    return s->err;
  fd = sonde__socket(af, SOCK_DGRAM, proto);
  if (fd < 0) {
    /* ICMP datagram sockets: EACCES when the group is outside
     * net.ipv4.ping_group_range (the default range allows nobody). */
    if (proto != IPPROTO_UDP)
      s->err = fd;
    return fd;
  }
  s->fd = fd;
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = (sa_family_t)af;
  if (bind(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
    int err = -errno;
    sonde__close_fd(&s->fd);
    return err;
  }
  s->port = sonde__addr_port(&ss);
  if (eng->unpriv[sonde__afi(af)]) {
    int r = sonde__recverr_enable(fd, af);
    if (r < 0) {
      sonde__close_fd(&s->fd);
      return r;
    }
    /* The TTL of echo replies; best effort (reply_ttl unknown without). */
    if (af == AF_INET6)
      (void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on));
    else
      (void)setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof(on));
  }
  return sock_watch(eng, s, cb);
}

/* The shared UDP socket of a family: sends every UDP probe that does not
 * ask for its own source port. */
int sonde__udp_open(sonde_engine_t *eng, int af) {
  return dgram_open(eng, &eng->udp[sonde__afi(af)], af, IPPROTO_UDP, on_udp);
}

static void on_ping(uv_poll_t *h, int status, int events);

/* The ICMP datagram ("ping") socket of a family, for unprivileged mode. */
int sonde__ping_open(sonde_engine_t *eng, int af) {
  return dgram_open(eng, &eng->ping[sonde__afi(af)], af,
                    af == AF_INET6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, on_ping);
}

/* Start watching a flow socket (sonde__flowsock_t, see udp.c). */
int sonde__flow_watch(sonde_engine_t *eng, sonde__flowsock_t *f) {
  int r;
  if (eng->unpriv[sonde__afi(f->af)] &&
      (r = sonde__recverr_enable(f->sock.fd, f->af)) < 0)
    return r;
  return sock_watch(eng, &f->sock, on_flow);
}

/*
 * libuv reports EPOLLERR (an ICMP error queued by IP_RECVERR) as status
 * UV_EBADF and stops the poll: read the error queue, then poll again.
 */
static void after_error(sonde_engine_t *eng, sonde__sock_t *s, int proto,
                        uv_poll_cb cb) {
  sonde__errqueue_drain(eng, s->fd, proto, s->port);
  if (s->fd != -1 && !eng->closing)
    (void)uv_poll_start(&s->poll, UV_READABLE, cb);
}

/* The key under which the probe that caused this ICMP message is filed. */
static int icmp_key(const sonde__icmp_t *m, const struct sockaddr_storage *from,
                    sonde__key_t *k) {
  const sonde__quote_t *q = &m->quote;
  const void *dst;

  if (m->kind == SONDE_KIND_ECHO_REPLY) {
    sonde__key_make(k, SONDE_PROTO_ICMP, from->ss_family,
                    sonde__addr_bytes(from), m->echo_id, m->echo_seq);
    return 0;
  }
  if (!m->has_quote || q->af != m->af)
    return -1;
  dst = q->af == AF_INET6 ? (const void *)&q->dst6 : (const void *)&q->dst4;
  if ((q->proto == IPPROTO_ICMP || q->proto == IPPROTO_ICMPV6) &&
      q->has_icmp_echo) {
    sonde__key_make(k, SONDE_PROTO_ICMP, q->af, dst, q->icmp_id, q->icmp_seq);
    return 0;
  }
  if (q->proto == IPPROTO_UDP && q->has_ports) {
    sonde__key_make(k, SONDE_PROTO_UDP, q->af, dst, q->sport, q->dport);
    /* A held checksum names the probe among its flow's (Paris); the
     * caller looks up without it too. */
    if (q->has_udp_csum)
      k->c = q->udp_csum;
    return 0;
  }
  if (q->proto == IPPROTO_TCP && q->has_ports) {
    sonde__key_make(k, SONDE_PROTO_TCP, q->af, dst, q->sport, q->dport);
    /* A SYN probe's tag is the low half of its sequence number (syn.c);
     * the caller looks up without it too (connect probes). */
    if (q->has_tcp_seq)
      k->c = (uint16_t)q->tcp_seq;
    return 0;
  }
  return -1;
}

/*
 * The engine's nonce: 4 random bytes (getrandom; the process id and the
 * clock if the kernel has none to give yet), drawn once.
 */
static const uint8_t *nonce(sonde_engine_t *eng) {
  if (!eng->nonce_set) {
    if (getrandom(eng->nonce, sizeof(eng->nonce), GRND_NONBLOCK) !=
        (ssize_t)sizeof(eng->nonce)) {
      uint32_t v = (uint32_t)getpid() * 2654435761u ^ (uint32_t)sonde__now();
      memcpy(eng->nonce, &v, sizeof(eng->nonce));
    }
    eng->nonce_set = 1;
  }
  return eng->nonce;
}

/* Where the nonce sits in a payload: after the two compensating bytes of
 * a held checksum (Paris), else first. -1 if the payload has none (a fill
 * byte asked for, or too short). */
static int nonce_at(const sonde_probe_spec_t *spec) {
  size_t len = spec->size ? spec->size : SONDE__DEFAULT_PAYLOAD;
  size_t at = spec->hold_checksum ? 2 : 0;
  return spec->fill || len < at + SONDE__NONCE_LEN ? -1 : (int)at;
}

/*
 * Byte i of the payload of a UDP probe (after its header) or an ICMP echo
 * request (after the echo header): the fill byte, or the spec's pattern
 * (byte i mod its length) or else a ramp (UDP 0x40 + i mod 64, ICMP i mod
 * 256), with the engine's nonce in it. A process's
 * identity does not end with its socket: replies to its last probes can
 * arrive after it let a fixed port go and another process took it, with
 * the same ports, destination and checksum. Routers quote the payload
 * (RFC 1812 4.3.2.3: as much as fits in 576 bytes), and a quoted payload
 * without our nonce is not our probe. The bytes a held checksum
 * compensates with (the first two, Paris) are written over this.
 */
uint8_t sonde__payload_byte(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                            int proto, size_t i) {
  int at = nonce_at(spec);
  if (spec->fill)
    return spec->fill;
  if (at >= 0 && i >= (size_t)at && i < (size_t)at + SONDE__NONCE_LEN)
    return nonce(eng)[i - (size_t)at];
  if (spec->pattern_len)
    return spec->pattern[i % spec->pattern_len];
  return proto == SONDE_PROTO_UDP ? (uint8_t)(0x40 + (i & 0x3f)) : (uint8_t)i;
}

/* The quoted payload (len bytes of data, as far as kept) carries the
 * engine's nonce where spec's probe has it: 1 yes, 0 no, -1 too short to
 * tell or a payload without one. */
static int nonce_in(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                    const uint8_t *data, size_t len) {
  int at = nonce_at(spec);
  if (at < 0 || len < (size_t)at + SONDE__NONCE_LEN)
    return -1;
  return memcmp(data + at, nonce(eng), SONDE__NONCE_LEN) == 0;
}

/* The quoted payload carries the engine's nonce, or is too short to tell
 * (routers may quote 8 bytes of the transport header and nothing more:
 * RFC 792). 1 if it may be ours. */
int sonde__nonce_ok(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                    const uint8_t *data, size_t len) {
  return nonce_in(eng, spec, data, len) != 0;
}

/*
 * What the quote q holds of what only this engine knows of p's probe: 1
 * it proves the probe ours, 0 it proves it another's, -1 it cannot tell.
 * A SYN probe is named by its whole sequence number (its high half is the
 * engine's nonce, syn.c), which an 8-byte quote holds; a TCP connect
 * probe's sequence number is the kernel's (its error handler checks it,
 * tcp.c); UDP and ICMP echo probes carry the engine's nonce in their
 * payload, which a quote may be too short to hold.
 */
static int quote_proof(const sonde__probe_t *p, const sonde__quote_t *q) {
  if (p->syn)
    return q->has_tcp_seq && q->tcp_seq == p->isn;
  if (p->spec.proto == SONDE_PROTO_TCP)
    return -1;
  return nonce_in(p->eng, &p->spec, q->data, q->data_len);
}

/*
 * The addresses of an ICMP message are those of p's probe: a quote names
 * p's source address as well as its destination (the key holds that, the
 * protocol and the ports or ids), and an IPv4 echo reply is addressed to
 * that source; the quote's TTL is not above the probe's, and its payload
 * (as far as quoted) carries the engine's nonce. The raw socket sees every ICMP message the host receives:
 * an error about a packet another host sent (routers quote only what they
 * forwarded), or about one that left from another of our addresses, can
 * carry the same destination, ports and ids as a probe of ours and is not
 * about it. p->local is the source the probe was sent from: the spec's
 * src when it named one. A probe bound to an interface (iface) is still
 * matched whatever interface its answer arrives by, and that is right:
 * the raw socket is bound to no device, routing back to us is the
 * network's choice (asymmetric paths are common), and the quote's source,
 * destination and identity already say whose probe it was. 1 if it is
 * p's, 0 if not.
 */
int sonde__source_ok(const sonde__probe_t *p, const sonde__icmp_t *m) {
  const void *want = sonde__addr_bytes(&p->local), *got;

  if (want == NULL || p->local.ss_family != m->af)
    return 0;
  if (m->kind == SONDE_KIND_ECHO_REPLY) {
    /* The reply carries the request's data back (RFC 792, RFC 4443). */
    if (!sonde__nonce_ok(p->eng, &p->spec, m->echo_data, m->echo_data_len))
      return 0;
    /* An ICMPv6 message comes without its IPv6 header: the kernel has
     * delivered it to this host, and its source, id and sequence match. */
    if (m->af == AF_INET6)
      return 1;
    got = &m->to4;
  } else {
    if (!m->has_quote || m->quote.af != m->af)
      return 0;
    got = m->af == AF_INET6 ? (const void *)&m->quote.src6
                            : (const void *)&m->quote.src4;
  }
  if (memcmp(want, got, m->af == AF_INET6 ? 16 : 4) != 0)
    return 0;
  /*
   * The quoted TTL (hop limit) is what the packet had left where it was
   * quoted: never more than the probe left with. More is another packet
   * with the same identity: one that another process sent from the same
   * port and destination before it let the port go, still on its way when
   * this probe took the port (a 5-hop path would show its destination at
   * TTL 1).
   */
  if (m->quote.ttl > p->spec.ttl)
    return 0;
  return quote_proof(p, &m->quote) != 0;
}

/*
 * An ICMP error whose quote names another source than p's is p's probe,
 * rewritten on its way by a NAT that did not translate the error back
 * (stateless NAT, NAT64-like and carrier-grade boxes that rewrite only the
 * outer header, against RFC 5508 4.2; Linux conntrack's masquerade
 * translates the quote back and leaves nothing to see), only with proof
 * that no other host or process can give:
 * - the whole of what names the probe: a half-open SYN's 32-bit sequence
 *   number (its high half is the engine's nonce, syn.c), a UDP or ICMP
 *   echo probe's nonce present in full in the quoted payload (a quote too
 *   short to show it proves nothing: another host's packet to the same
 *   destination and ports may be behind it);
 * - a quoted TTL below the one the probe left with: the NAT that rewrote
 *   the source is itself a router and the one that quoted it is beyond it,
 *   so the packet was forwarded at least once. A quote of the probe as it
 *   left (TTL untouched, another source) is what any host on our link,
 *   seeing the probe pass, can make.
 * TCP connect probes never: the kernel's TCP error handler matches the
 * quote's 4-tuple to the socket and ignores one that names another
 * source, so the connect would never confirm it.
 */
static int nat_ok(const sonde__probe_t *p, const sonde__icmp_t *m) {
  const sonde__quote_t *q = &m->quote;

  if (m->kind == SONDE_KIND_ECHO_REPLY || !m->has_quote || q->af != m->af ||
      p->local.ss_family != m->af || q->ttl >= p->spec.ttl)
    return 0;
  return quote_proof(p, q) == 1;
}

/* Could the quote of m be of one of this engine's probes at all (its
 * nonce, or a SYN probe's high half of the sequence number)? A cheap test
 * before nat_find looks through every probe in flight. */
static int nat_maybe(sonde_engine_t *eng, const sonde__icmp_t *m) {
  const sonde__quote_t *q = &m->quote;
  size_t at;

  if (m->kind == SONDE_KIND_ECHO_REPLY || !m->has_quote || q->af != m->af)
    return 0;
  if (q->proto == IPPROTO_TCP)
    return q->has_tcp_seq && eng->syn_nonce != 0 &&
           (q->tcp_seq >> 16) == eng->syn_nonce;
  /* the nonce is first in the payload, or after a held checksum's two
   * compensating bytes (nonce_at) */
  for (at = 0; at <= 2; at += 2)
    if (q->data_len >= at + SONDE__NONCE_LEN &&
        memcmp(q->data + at, nonce(eng), SONDE__NONCE_LEN) == 0)
      return 1;
  return 0;
}

typedef struct {
  const sonde__icmp_t *m;
  int same_port; /* 1: the source port (echo id) is the probe's */
} nat_ctx_t;

/* nat_find's test of one probe in flight: the quote holds what a NAT that
 * rewrites the source address and port (NAPT, RFC 3022; the ICMP echo id
 * is its port) leaves of p's identity, and nat_ok's proof. */
static int nat_match(const sonde__probe_t *p, const void *arg) {
  const nat_ctx_t *ctx = arg;
  const sonde__icmp_t *m = ctx->m;
  const sonde__quote_t *q = &m->quote;
  uint16_t qport = q->proto == IPPROTO_UDP || q->proto == IPPROTO_TCP
                       ? q->sport
                       : q->icmp_id;
  const void *dst = q->af == AF_INET6 ? (const void *)&q->dst6
                                      : (const void *)&q->dst4;

  if (p->key.af != (q->af == AF_INET6 ? 6 : 4) ||
      memcmp(p->key.addr, dst, q->af == AF_INET6 ? 16 : 4) != 0 ||
      (p->key.a == qport) != ctx->same_port)
    return 0;
  switch (p->key.proto) {
  case SONDE_PROTO_UDP:
    if (q->proto != IPPROTO_UDP || !q->has_ports || q->dport != p->key.b)
      return 0;
    /* A held checksum names the probe among its flow's (Paris): the NAT
     * adjusted it for the address and port it wrote (RFC 1624). */
    if (p->key.c &&
        (!q->has_udp_csum || sonde__addr_bytes(&p->local) == NULL ||
         sonde__cksum_nat(p->key.c, 1, sonde__addr_bytes(&p->local),
                          q->af == AF_INET6 ? (const void *)&q->src6
                                            : (const void *)&q->src4,
                          q->af == AF_INET6 ? 16 : 4, 1, p->key.a,
                          q->sport) != q->udp_csum))
      return 0;
    break;
  case SONDE_PROTO_TCP:
    if (q->proto != IPPROTO_TCP || !q->has_ports || q->dport != p->key.b)
      return 0;
    break;
  case SONDE_PROTO_ICMP:
    if ((q->proto != IPPROTO_ICMP && q->proto != IPPROTO_ICMPV6) ||
        !q->has_icmp_echo || q->icmp_seq != p->key.b)
      return 0;
    break;
  default:
    return 0;
  }
  return sonde__addr_bytes(&p->local) != NULL && nat_ok(p, m);
}

/*
 * The probe of an ICMP error whose quote matches no key: one whose source
 * address, and maybe its source port (ICMP echo id), a NAT rewrote, found
 * by the rest of its identity and nat_ok's proof. The probes whose source
 * port the quote shows come first (a NAT that rewrote the address alone):
 * a held checksum adjusted for another port can be another flow's.
 * Only when exactly one probe in flight fits: two that fit (probes of one
 * flow whose checksum the quote does not hold, or a NAT that gave two of
 * our flows one port) cannot be told apart, and a reply given to the wrong
 * one would be a wrong hop.
 */
static sonde__probe_t *nat_find(sonde_engine_t *eng, const sonde__icmp_t *m) {
  nat_ctx_t ctx = {m, 1};
  sonde__probe_t *p;
  size_t n;

  if (!nat_maybe(eng, m))
    return NULL;
  p = sonde__table_only(eng, nat_match, &ctx, &n);
  if (n > 0)
    return p;
  ctx.same_port = 0;
  return sonde__table_only(eng, nat_match, &ctx, &n);
}

/* When the reply for p came: its kernel timestamp, unless that is before
 * the probe was sent (it cannot be: the stamp is not usable), then the time
 * it was read. */
static uint64_t reply_time(const sonde__probe_t *p, uint64_t stamp,
                           uint64_t now) {
  return stamp >= p->sent_ns ? stamp : now;
}

static void icmp_matched(sonde_engine_t *eng, sonde__probe_t *p,
                         const sonde__icmp_t *m,
                         const struct sockaddr_storage *from, int reply_ttl,
                         uint64_t stamp, uint64_t now) {
  sonde_result_t res;
  int i;

  sonde__result_reply(p, &res, m->kind, from, reply_time(p, stamp, now));
  res.unreach = m->unreach;
  res.reply_ttl = reply_ttl;
  res.icmp_type = m->type;
  res.icmp_code = m->code;
  res.quoted_ttl = m->has_quote ? m->quote.ttl : -1;
  res.mtu = (int)m->mtu;
  res.n_mpls = m->n_mpls;
  for (i = 0; i < m->n_mpls && i < SONDE_MPLS_MAX; i++)
    res.mpls[i] = m->mpls[i];
  res.mpls_truncated = m->mpls_truncated;
  res.n_ext = m->n_ext;
  res.ext_truncated = m->ext_truncated;
  for (i = 0; i < m->n_ext && i < SONDE_EXT_MAX; i++)
    res.ext[i] = m->ext[i];
  sonde__quote_compare(p, m, &res);
  /*
   * A TCP connect probe's socket is the kernel's: its TCP error handler
   * checks the quote's 4-tuple and that the quoted sequence number is the
   * connection's (RFC 5927 4.1), which no one else can see. An error that
   * passes ends the connect with a socket error (tcp.c), and the probe
   * takes this reply then; until then it is held. Another process may
   * have used the same ports towards the same destination a moment ago
   * (TCP sockets share ports under SO_REUSEPORT): its late errors match
   * the key and the addresses, never the sequence number.
   */
  if (p->spec.proto == SONDE_PROTO_TCP && p->fd != -1 && !p->icmp_wanted &&
      !p->syn) {
    if (p->pending == NULL && (p->pending = malloc(sizeof(res))) == NULL) {
      eng->stats.ignored++;
      return;
    }
    *p->pending = res;
    return;
  }
  sonde__probe_done(eng, p, &res);
}

/* The ancillary data a receive socket asks for: the TTL or hop limit, the
 * drop counter, the receive timestamp. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int)) * 3 + CMSG_SPACE(sizeof(struct timespec))];
  struct cmsghdr align;
} rx_control_t;

/* Read the ancillary data of one packet: the TTL (IPv6 hop limit, or IPv4
 * TTL from IP_RECVTTL) into *hoplimit when the kernel gives it (else -1),
 * the receive timestamp into *stamp (else now), and the socket's drop
 * count into the engine's stats (drops_seen: the socket's count last
 * seen; NULL: not counted). */
static void rx_ancillary(sonde_engine_t *eng, uint32_t *drops_seen,
                         struct msghdr *msg, rx_clock_t *clk, int *hoplimit,
                         uint64_t *stamp, uint64_t now) {
  struct cmsghdr *cm;

  *hoplimit = -1;
  *stamp = now;
  for (cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS &&
        cm->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
      *stamp = rx_stamp(clk, &ts, now);
      continue;
    }
    if (cm->cmsg_len < CMSG_LEN(sizeof(int)))
      continue;
    if ((cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_HOPLIMIT) ||
        (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TTL)) {
      memcpy(hoplimit, CMSG_DATA(cm), sizeof(int));
    } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL &&
               drops_seen) {
      /* The receive buffer overflowed: the kernel counts what it dropped
       * (cumulative, per socket). Lost replies become timeouts; the count
       * says why. */
      uint32_t drops;
      memcpy(&drops, CMSG_DATA(cm), sizeof(drops));
      eng->stats.dropped += (uint32_t)(drops - *drops_seen);
      *drops_seen = drops;
    }
  }
}

/* Read one packet from socket fd into eng->buf, with its ancillary data
 * (see rx_ancillary) and the time it was read (*now). Returns its length
 * (0 is a valid, empty, datagram), SONDE_EAGAIN when there is nothing more
 * to read, or another negative errno. */
static ssize_t read_packet(sonde_engine_t *eng, int fd, uint32_t *drops_seen,
                           rx_clock_t *clk, struct sockaddr_storage *from,
                           int *hoplimit, uint64_t *stamp, uint64_t *now) {
  rx_control_t control;
  struct iovec iov = {eng->buf, sizeof(eng->buf)};
  struct msghdr msg;
  ssize_t n;

  memset(&msg, 0, sizeof(msg));
  msg.msg_name = from;
  msg.msg_namelen = sizeof(*from);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  do
    n = recvmsg(fd, &msg, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EWOULDBLOCK ? SONDE_EAGAIN : -errno;
  *now = sonde__now();
  rx_ancillary(eng, drops_seen, &msg, clk, hoplimit, stamp, *now);
  return n;
}

/*
 * Read and match what is waiting on the raw socket of a family, at most a
 * burst (the poll is level-triggered and comes back for the rest). Also
 * called by a TCP probe whose socket reports an ICMP-caused error: the
 * kernel queues the ICMP packet to raw sockets before the TCP error handler
 * runs, so draining here attributes the error to its hop.
 */
void sonde__recv_drain(sonde_engine_t *eng, int af) {
  sonde__sock_t *s = &eng->icmp[sonde__afi(af)];
  rx_clock_t clk = {0};
  int i;

  for (i = 0; i < SONDE__RECV_BURST && s->fd != -1 && !eng->closing; i++) {
    struct sockaddr_storage from;
    sonde__icmp_t m;
    sonde__key_t key;
    sonde__probe_t *p;
    int hoplimit = -1, r;
    uint64_t stamp, now;
    ssize_t n = read_packet(eng, s->fd, &s->drops, &clk, &from, &hoplimit,
                            &stamp, &now);

    if (n == SONDE_EAGAIN)
      break;
    if (n <= 0) {
      /* ICMP errors about our own sends can surface here (e.g. EHOSTUNREACH
       * from a local route); they are not replies. */
      eng->stats.ignored++;
      continue;
    }
    eng->stats.received++;
    r = af == AF_INET6 ? sonde__parse_icmp6(eng->buf, (size_t)n, &m)
                       : sonde__parse_icmp4(eng->buf, (size_t)n, &m);
    if (r == SONDE_EBADMSG) {
      eng->stats.malformed++;
      continue;
    }
    if (r < 0 || icmp_key(&m, &from, &key) < 0) {
      eng->stats.ignored++;
      continue;
    }
    p = sonde__table_find(eng, &key);
    if (p == NULL && key.c) {
      key.c = 0;
      p = sonde__table_find(eng, &key);
    }
    /* A quote of another source: a NAT's, with proof (nat_ok), else
     * not ours. */
    if (p != NULL && !sonde__source_ok(p, &m) && !nat_ok(p, &m))
      p = NULL;
    if (p == NULL && (p = nat_find(eng, &m)) == NULL) {
      eng->stats.ignored++;
      continue;
    }
    icmp_matched(eng, p, &m, &from, af == AF_INET6 ? hoplimit : m.reply_ttl,
                 stamp, now);
  }
}

static void on_icmp(uv_poll_t *h, int status, int events) {
  sonde_engine_t *eng = h->data;
  sonde__recv_drain(eng, h == &eng->icmp[1].poll ? AF_INET6 : AF_INET);
}

/* Echo replies on a ping socket (the kernel has matched their id to it);
 * errors arrive on its error queue. */
static void on_ping(uv_poll_t *h, int status, int events) {
  sonde_engine_t *eng = h->data;
  int af = h == &eng->ping[1].poll ? AF_INET6 : AF_INET;
  sonde__sock_t *s = &eng->ping[sonde__afi(af)];

  if (status < 0) {
    after_error(eng, s, SONDE_PROTO_ICMP, on_ping);
    return;
  }
  sonde__ping_read(eng, &s->fd, &s->drops, af);
}

/* Read the echo replies waiting on the ping socket *fd (the engine's, or a
 * probe's own: then it is closed, *fd -1, once its probe has ended). */
void sonde__ping_read(sonde_engine_t *eng, int *fd, uint32_t *drops, int af) {
  rx_clock_t clk = {0};
  int i;
  for (i = 0; i < SONDE__RECV_BURST && *fd != -1 && !eng->closing; i++) {
    struct sockaddr_storage from;
    sonde__icmp_t m;
    sonde__key_t key;
    sonde__probe_t *p;
    int ttl = -1;
    uint64_t stamp, now;
    ssize_t n = read_packet(eng, *fd, drops, &clk, &from, &ttl, &stamp,
                            &now);

    if (n == SONDE_EAGAIN)
      break;
    if (n <= 0)
      continue;
    eng->stats.received++;
    if (sonde__parse_icmp(af, eng->buf, (size_t)n, &m) < 0 ||
        m.kind != SONDE_KIND_ECHO_REPLY ||
        icmp_key(&m, &from, &key) < 0 ||
        (p = sonde__table_find(eng, &key)) == NULL) {
      eng->stats.ignored++;
      continue;
    }
    icmp_matched(eng, p, &m, &from, ttl, stamp, now);
  }
}

/*
 * A UDP datagram from the destination answering a probe (a UDP service that
 * replied). Matched by the destination's address and port and our port.
 */
void sonde__udp_read(sonde_engine_t *eng, int fd, uint16_t local_port) {
  rx_clock_t clk = {0};
  int i;
  for (i = 0; i < SONDE__RECV_BURST && !eng->closing; i++) {
    struct sockaddr_storage from;
    sonde__key_t key;
    sonde__probe_t *p;
    int ttl;
    uint64_t stamp, now;
    ssize_t n = read_packet(eng, fd, NULL, &clk, &from, &ttl, &stamp, &now);

    /* EAGAIN ends the burst; other errors are ICMP errors that the raw
     * socket reports in full. */
    if (n < 0)
      break;
    eng->stats.received++;
    sonde__key_make(&key, SONDE_PROTO_UDP, from.ss_family,
                    sonde__addr_bytes(&from), local_port,
                    sonde__addr_port(&from));
    p = sonde__table_find(eng, &key);
    if (p == NULL) {
      eng->stats.ignored++;
      continue;
    }
    {
      sonde_result_t res;
      sonde__result_reply(p, &res, SONDE_KIND_UDP_REPLY, &from,
                          reply_time(p, stamp, now));
      sonde__probe_done(eng, p, &res);
    }
    /* A per-probe socket is closed once its probe ends. */
    if (fd != eng->udp[0].fd && fd != eng->udp[1].fd)
      break;
  }
}

static void on_flow(uv_poll_t *h, int status, int events) {
  sonde_engine_t *eng = h->data;
  sonde__sock_t *s = SOCK_OF(h);
  if (status < 0)
    after_error(eng, s, SONDE_PROTO_UDP, on_flow);
  else
    sonde__udp_read(eng, s->fd, s->port);
}

/*
 * Read what the engine's shared receive sockets hold now (raw ICMP and
 * ICMPv6, the ICMP datagram sockets, the shared UDP sockets), a burst each,
 * without waiting. libuv runs the timers that are due before it polls for
 * I/O: a process that the scheduler kept off the CPU past a probe's
 * deadline wakes up to its timer first, while the reply that arrived in
 * time waits unread in a socket's queue. Reading first lets that reply end
 * its probe (its RTT from the kernel's receive timestamp).
 */
void sonde__recv_pending(sonde_engine_t *eng) {
  int k;
  for (k = 0; k < 2 && !eng->closing; k++) {
    int af = k ? AF_INET6 : AF_INET;
    if (eng->icmp[k].fd != -1)
      sonde__recv_drain(eng, af);
    if (eng->ping[k].fd != -1 && !eng->closing)
      sonde__ping_read(eng, &eng->ping[k].fd, &eng->ping[k].drops, af);
    if (eng->udp[k].fd != -1 && !eng->closing)
      sonde__udp_read(eng, eng->udp[k].fd, eng->udp[k].port);
  }
}

static void on_udp(uv_poll_t *h, int status, int events) {
  sonde_engine_t *eng = h->data;
  sonde__sock_t *s = h == &eng->udp[1].poll ? &eng->udp[1] : &eng->udp[0];
  if (status < 0)
    after_error(eng, s, SONDE_PROTO_UDP, on_udp);
  else
    sonde__udp_read(eng, s->fd, s->port);
}

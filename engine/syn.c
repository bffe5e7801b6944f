/* syn.c - half-open TCP probes ("SYN mode"): one SYN that the engine builds
 * and sends on a raw IPPROTO_TCP socket, its answer (SYN-ACK or RST) read on
 * that socket, the source port held by a bound stream socket. No connection
 * ever reaches the peer's application; the kernel sends no retransmission.
 * Connect probes are in tcp.c; the choice between the two is made here. */
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static void on_tcp(uv_poll_t *h, int status, int events);

/*
 * A filter for the raw TCP receive socket, locked (SO_LOCK_FILTER): a raw
 * IPPROTO_TCP socket gets a copy of every TCP segment the host receives.
 * It keeps only what can answer a SYN: segments with RST, or with SYN and
 * ACK, and (IPv4) only first fragments. The rest never reaches this
 * process, and nothing in it can widen the filter later. IPv4 raw sockets
 * read the IP header; IPv6 ones start at the TCP header (raw(7), ipv6(7)).
 */
int sonde__raw_tcp_filter(int fd, int af) {
  struct sock_filter v4[] = {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),        /* flags, frag offset */
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 5, 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),       /* X = IP header length */
      BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),       /* TCP flags */
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, TCP_RST, 3, 0),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, TCP_SYN | TCP_ACK),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TCP_SYN | TCP_ACK, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
  };
  struct sock_filter v6[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, TCP_RST, 3, 0),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, TCP_SYN | TCP_ACK),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TCP_SYN | TCP_ACK, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
  };
  struct sock_fprog prog;
  int one = 1;

  if (af == AF_INET6) {
    prog.len = sizeof(v6) / sizeof(v6[0]);
    prog.filter = v6;
  } else {
    prog.len = sizeof(v4) / sizeof(v4[0]);
    prog.filter = v4;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0)
    return -errno;
  return 0;
}

/* A raw TCP socket of a family with its locked filter, or a negative errno
 * (EPERM/EACCES without CAP_NET_RAW). */
int sonde__raw_tcp_new(int af) {
  int fd = sonde__socket(af, SOCK_RAW, IPPROTO_TCP), r;
  if (fd < 0)
    return fd;
  r = sonde__raw_tcp_filter(fd, af);
  if (r < 0) {
    sonde__close_fd(&fd);
    return r;
  }
  return fd;
}

/* The engine's raw TCP socket of a family, opened and watched once; a
 * failure is remembered. */
static int raw_open(sonde_engine_t *eng, int af) {
  sonde__sock_t *s = &eng->rawtcp[sonde__afi(af)];
  int fd, on = 1, rcvbuf = 4 << 20;

  if (s->fd != -1)
    return 0;
  if (s->err)
    return s->err;
  fd = sonde__raw_tcp_socket(af);
  if (fd < 0)
    return s->err = fd == SONDE_EACCES ? SONDE_EPERM : fd;
  s->fd = fd;
  if (af == AF_INET6) {
    /* No IP header on IPv6 raw sockets: the reply's destination (which
     * must be our source) and hop limit come as ancillary data. */
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) < 0 ||
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on)) < 0) {
      int err = -errno;
      sonde__close_fd(&s->fd);
      return s->err = err;
    }
  }
  (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
  (void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on));
  /* A campaign's SYNs are answered in bursts; the pooled socket got a
   * large buffer while that could still be forced (priv.c). Best effort. */
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  if ((fd = uv_poll_init(eng->loop, &s->poll, s->fd)) < 0) {
    sonde__close_fd(&s->fd);
    return s->err = fd;
  }
  s->poll_init = 1;
  s->poll.data = eng;
  uv_unref((uv_handle_t *)&s->poll);
  return uv_poll_start(&s->poll, UV_READABLE, on_tcp);
}

/* --- the mode ------------------------------------------------------------ */

/*
 * How a TCP probe of family af with mode m goes out: 1 SYN, 0 connect, or
 * a negative errno with *call naming what failed. auto: SYN when the
 * engine has raw sockets and the probe needs no connection (conn: it has
 * a payload or expects bytes); syn: SYN, or the error that kept the raw
 * socket from opening (EPERM: no CAP_NET_RAW); connect: connect.
 */
static int resolve(sonde_engine_t *eng, int af, sonde_tcp_mode_t m, int conn,
                   const char **call) {
  int r;

  if (m == SONDE_TCP_AUTO)
    m = eng->opts.tcp_mode;
  if (m < SONDE_TCP_AUTO || m > SONDE_TCP_CONNECT) {
    *call = "tcp_mode";
    return SONDE_EINVAL;
  }
  if (m == SONDE_TCP_CONNECT)
    return 0;
  if (conn) {
    if (m == SONDE_TCP_AUTO)
      return 0;
    *call = "tcp_mode (payload and expect need a connection)";
    return SONDE_EINVAL;
  }
  r = sonde__recv_open(eng, af);
  if (r == 0 && eng->unpriv[sonde__afi(af)])
    r = SONDE_EPERM;
  if (r == 0)
    r = raw_open(eng, af);
  if (r == 0)
    return 1;
  if (m == SONDE_TCP_AUTO && r == SONDE_EPERM)
    return 0;
  *call = "socket(SOCK_RAW, IPPROTO_TCP)";
  return r;
}

int sonde__syn_mode(sonde_engine_t *eng, sonde__probe_t *p) {
  return resolve(eng, p->spec.dst.ss_family, p->spec.tcp_mode,
                 p->spec.payload_len || p->spec.expect_len, &p->call);
}

int sonde_engine_tcp_mode(sonde_engine_t *eng, int af, const char **call) {
  const char *c = NULL;
  int r;
  if (af != AF_INET && af != AF_INET6)
    return SONDE_EAFNOSUPPORT;
  r = resolve(eng, af, SONDE_TCP_AUTO, 0, &c);
  if (call)
    *call = c;
  return r < 0 ? r : r ? SONDE_TCP_SYN : SONDE_TCP_CONNECT;
}

/* --- source ports -------------------------------------------------------- */

/*
 * Hold a source port: a stream socket bound to the route's source address
 * and the port, without SO_REUSEADDR or SO_REUSEPORT and never listening.
 * While it is bound no other socket can bind the port or pick it for a
 * connect, so no connection of this host shares the 4-tuple of a SYN we
 * send (our SYN would disturb it). Such a socket is in no lookup table for
 * arriving segments: the peer's SYN-ACK finds no socket and the kernel
 * answers it with RST, which closes the half-open connection at the peer.
 *
 * port 0: the kernel chooses. Linux's bind() fails with EADDRINUSE when
 * no port of ip_local_port_range is free: that is the range exhausted,
 * EADDRNOTAVAIL as connect() names it, and the probe fails. A port of our
 * choosing that is taken (another socket, or TIME_WAIT) is EADDRINUSE and
 * the probe is skipped.
 */
static int hold_port(sonde__probe_t *p, const struct sockaddr_storage *src,
                     int port, int *out, struct sockaddr_storage *local) {
  struct sockaddr_storage ss = *src;
  socklen_t len = sizeof(*local);
  int fd = sonde__socket(src->ss_family, SOCK_STREAM, IPPROTO_TCP);

  if (fd < 0) {
    p->call = "socket(SOCK_STREAM)";
    return fd;
  }
  if (ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0) {
    int err = -errno;
    sonde__close_fd(&fd);
    p->call = "bind";
    return port == 0 && err == SONDE_EADDRINUSE ? SONDE_EADDRNOTAVAIL : err;
  }
  if (getsockname(fd, (struct sockaddr *)local, &len) < 0) {
    int err = -errno;
    sonde__close_fd(&fd);
    p->call = "getsockname";
    return err;
  }
  *out = fd;
  return 0;
}

/*
 * The probe's source port under its policy, held for as long as a probe
 * of this engine uses it. One held port serves every SYN probe of the
 * engine that asks for it (a Paris flow's, and the probes of concurrent
 * traces whose sequences give the same port): their 4-tuples or their
 * sequence numbers tell them apart, and what must not share the port is
 * another process's socket. The count of probes on it (refs) releases
 * it with the last one (sonde__syn_release).
 */
static int source_port(sonde_engine_t *eng, sonde__probe_t *p,
                       const struct sockaddr_storage *src) {
  const sonde_probe_spec_t *spec = &p->spec;
  sonde__synport_t *h;
  uint32_t port = 0;
  size_t i;
  int r, fd = -1;

  if (spec->bind == SONDE_BIND_SEQUENCE) {
    port = (uint32_t)spec->sport + spec->seq;
    if (port < 1 || port > 65535) {
      p->call = "bind";
      return SONDE_EINVAL;
    }
  } else if (spec->bind == SONDE_BIND_FIXED) {
    if (spec->sport == 0) {
      p->call = "bind";
      return SONDE_EINVAL;
    }
    port = spec->sport;
  } /* kernel: port 0, whatever sport says (as portbind.c's policy) */
  if (port != 0) {
    for (i = 0; i < eng->n_synports; i++) {
      h = &eng->synports[i];
      if (h->port == port && sonde__addr_equal(&h->local, src, 0)) {
        h->refs++;
        p->local = h->local;
        p->syn_held = 1;
        return 0;
      }
    }
  }
  if (eng->n_synports == eng->cap_synports) {
    size_t cap = eng->cap_synports ? eng->cap_synports * 2 : 8;
    sonde__synport_t *n = realloc(eng->synports, cap * sizeof(*n));
    if (n == NULL)
      return SONDE_ENOMEM;
    eng->synports = n;
    eng->cap_synports = cap;
  }
  p->attempts++;
  r = hold_port(p, src, (int)port, &fd, &p->local);
  if (r < 0)
    return r;
  h = &eng->synports[eng->n_synports++];
  h->fd = fd;
  h->port = sonde__addr_port(&p->local);
  h->refs = 1;
  h->local = p->local;
  p->syn_held = 1;
  return 0;
}

/* p no longer uses its source port: the last probe on it lets it go. */
void sonde__syn_release(sonde_engine_t *eng, sonde__probe_t *p) {
  size_t i;
  if (!p->syn_held)
    return;
  p->syn_held = 0;
  for (i = 0; i < eng->n_synports; i++) {
    sonde__synport_t *h = &eng->synports[i];
    if (h->port == sonde__addr_port(&p->local) &&
        sonde__addr_equal(&h->local, &p->local, 0)) {
      if (--h->refs == 0) {
        sonde__close_fd(&h->fd);
        *h = eng->synports[--eng->n_synports];
      }
      return;
    }
  }
}

/* --- sending ------------------------------------------------------------- */

/* This engine's half of every SYN's sequence number (random, drawn once):
 * answers carry it back (ICMP quotes the sequence number, SYN-ACK and RST
 * acknowledge it plus one), and one without it is not ours. */
static uint16_t seq_nonce(sonde_engine_t *eng) {
  if (eng->syn_nonce == 0) {
    uint16_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
      v = (uint16_t)((uint32_t)getpid() * 2654435761u ^ (uint32_t)sonde__now());
    eng->syn_nonce = v ? v : 1;
  }
  return eng->syn_nonce;
}

/* The SYN of p into eng->sbuf, its checksum over the pseudo-header. */
static void build_syn(sonde_engine_t *eng, const sonde__probe_t *p,
                      const struct sockaddr_storage *src) {
  uint8_t *b = eng->sbuf;
  uint16_t sport = sonde__addr_port(&p->local), c;
  int af = p->spec.dst.ss_family;
  uint16_t mss = SONDE__SYN_MSS(af);

  memset(b, 0, SONDE__SYN_LEN);
  b[0] = (uint8_t)(sport >> 8);
  b[1] = (uint8_t)sport;
  b[2] = (uint8_t)(p->spec.dport >> 8);
  b[3] = (uint8_t)p->spec.dport;
  b[4] = (uint8_t)(p->isn >> 24);
  b[5] = (uint8_t)(p->isn >> 16);
  b[6] = (uint8_t)(p->isn >> 8);
  b[7] = (uint8_t)p->isn;
  b[12] = (SONDE__SYN_LEN / 4) << 4;
  b[13] = TCP_SYN;
  b[14] = (uint8_t)(SONDE__SYN_WINDOW >> 8);
  b[15] = (uint8_t)SONDE__SYN_WINDOW;
  b[20] = 2; /* MSS (RFC 9293 3.7.1): middleboxes drop SYNs without it */
  b[21] = 4;
  b[22] = (uint8_t)(mss >> 8);
  b[23] = (uint8_t)mss;
  c = sonde__cksum(b, SONDE__SYN_LEN,
                   sonde__pseudo_sum(af, sonde__addr_bytes(src),
                                     sonde__addr_bytes(&p->spec.dst),
                                     IPPROTO_TCP, SONDE__SYN_LEN));
  b[16] = (uint8_t)(c >> 8);
  b[17] = (uint8_t)c;
}

/*
 * Send p as one SYN. Its identity: the ports and the sequence number,
 * (this engine's 16 bits << 16) | a tag of its own, which the table key
 * holds (key.c), so probes of one 4-tuple may be in flight together.
 * Returns 0 (in flight) or a negative errno with p->call set.
 */
int sonde__syn_send(sonde_engine_t *eng, sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, r, i;
  struct sockaddr_storage src, dst = spec->dst;

  /* the route's source, or the spec's (checked local: the port-holding
   * socket is bound to it and the SYN written with it) */
  r = sonde__probe_src(eng, p, &src);
  if (r < 0)
    return r;
  if (spec->ip_id && (r = sonde__rawip_open(eng, p)) < 0)
    return r;
  r = source_port(eng, p, &src);
  if (r < 0)
    return r;
  p->syn = 1;
  /* a tag no in-flight probe of this 4-tuple has (the table says EEXIST) */
  for (i = 0; i < 4; i++) {
    uint16_t tag = ++eng->syn_tag ? eng->syn_tag : ++eng->syn_tag;
    p->isn = (uint32_t)seq_nonce(eng) << 16 | tag;
    sonde__key_make(&p->key, SONDE_PROTO_TCP, af, sonde__addr_bytes(&dst),
                    sonde__addr_port(&p->local), spec->dport);
    p->key.c = tag;
    if ((r = sonde__table_insert(eng, p)) == 0)
      break;
  }
  if (r < 0) {
    p->call = "match";
    sonde__syn_release(eng, p);
    return SONDE_EEXIST;
  }
  build_syn(eng, p, &src);
  /* Raw IPv6 sockets take port 0 or their protocol in the address. */
  if (af == AF_INET6)
    ((struct sockaddr_in6 *)&dst)->sin6_port = 0;
  else
    ((struct sockaddr_in *)&dst)->sin_port = 0;
  p->sent_ns = sonde__now();
  if (spec->ip_id)
    r = sonde__send_hdrincl(eng, p, IPPROTO_TCP, SONDE__SYN_LEN);
  else
    r = sonde__sendto_probe(p, eng->rawtcp[sonde__afi(af)].fd, eng->sbuf,
                            SONDE__SYN_LEN, &dst);
  /*
   * EPERM from sendmsg() on a raw socket we hold is netfilter's verdict on
   * the SYN (an OUTPUT rule that drops or rejects it), not a privilege: the
   * SYN left as far as the local firewall, as a connect()'s does (Linux's
   * tcp_connect ignores that transmit error and retransmits). The probe
   * stays in flight: a reject's ICMP error (quoting the SYN) answers it,
   * a drop makes it time out. An EPERM with p->call set came before any
   * sendmsg(): the flow label's lease refused (another socket holds the
   * label exclusively), and the probe fails as a connect probe's does.
   */
  if (r == SONDE_EPERM && !spec->ip_id && p->call == NULL) {
    p->call = NULL;
    r = 0;
  }
  if (r < 0) {
    sonde__table_remove(eng, p);
    sonde__syn_release(eng, p); /* a resend holds its port again */
    if (p->call == NULL)
      p->call = "sendmsg";
    return r;
  }
  sonde__probe_sent(eng, p);
  return 0;
}

/* --- receiving ----------------------------------------------------------- */

typedef union {
  char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
           CMSG_SPACE(sizeof(int)) * 3 + CMSG_SPACE(sizeof(struct timespec))];
  struct cmsghdr align;
} rx_control_t;

/* The kernel's receive stamp on the engine's clock (see recv.c). */
static uint64_t stamp_of(const struct timespec *ts, uint64_t now) {
  struct timespec rt;
  int64_t off, stamp;
  if ((ts->tv_sec == 0 && ts->tv_nsec == 0) ||
      clock_gettime(CLOCK_REALTIME, &rt) < 0)
    return now;
  off = ((int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec) - (int64_t)sonde__now();
  stamp = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec - off;
  return stamp <= 0 || (uint64_t)stamp > now ? now : (uint64_t)stamp;
}

/* Match one segment to the probe whose SYN it answers, and end it. */
static void seg_matched(sonde_engine_t *eng, int af, const sonde__seg_t *s,
                        const struct sockaddr_storage *from, uint64_t stamp) {
  sonde__key_t key;
  sonde__probe_t *p;
  sonde_result_t res;
  uint32_t isn = s->ack - 1;
  sonde_kind_t kind;

  /* SYN-ACK: the port is open. RST (with the ACK of our SYN, RFC 9293
   * 3.10.7.1): closed. Anything else answers no SYN of ours. */
  if (!(s->flags & TCP_ACK) || (s->flags & TCP_FIN)) {
    eng->stats.ignored++;
    return;
  }
  if (s->flags & TCP_RST)
    kind = SONDE_KIND_TCP_RST;
  else if (s->flags & TCP_SYN)
    kind = SONDE_KIND_TCP_SYNACK;
  else {
    eng->stats.ignored++;
    return;
  }
  sonde__key_make(&key, SONDE_PROTO_TCP, af, sonde__addr_bytes(from),
                  s->dport, s->sport);
  key.c = (uint16_t)isn;
  p = (isn >> 16) == eng->syn_nonce ? sonde__table_find(eng, &key) : NULL;
  if (p == NULL || !p->syn || p->isn != isn ||
      memcmp(sonde__addr_bytes(&p->local), s->dst, af == AF_INET6 ? 16 : 4)) {
    eng->stats.ignored++;
    return;
  }
  sonde__result_reply(p, &res, kind, from, stamp >= p->sent_ns ? stamp
                                                                : sonde__now());
  res.reply_ttl = s->ttl;
  /* The same outcome as a refused connect(): the RST names the closed
   * port in both modes. */
  if (kind == SONDE_KIND_TCP_RST)
    res.error = SONDE_ECONNREFUSED;
  sonde__probe_done(eng, p, &res);
}

static void on_tcp(uv_poll_t *h, int status, int events) {
  sonde_engine_t *eng = h->data;
  int af = h == &eng->rawtcp[1].poll ? AF_INET6 : AF_INET, i;
  sonde__sock_t *s = &eng->rawtcp[sonde__afi(af)];

  (void)status;
  (void)events;
  for (i = 0; i < SONDE__RECV_BURST && s->fd != -1 && !eng->closing; i++) {
    struct sockaddr_storage from;
    rx_control_t control;
    struct iovec iov = {eng->buf, sizeof(eng->buf)};
    struct msghdr msg;
    struct cmsghdr *cm;
    struct timespec ts = {0, 0};
    uint64_t now;
    ssize_t n;
    sonde__seg_t seg;

    memset(&msg, 0, sizeof(msg));
    memset(&seg, 0, sizeof(seg));
    memset(&from, 0, sizeof(from));
    seg.ttl = -1;
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    do
      n = recvmsg(s->fd, &msg, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
      break; /* EAGAIN: nothing more; raw sockets report no other error */
    now = sonde__now();
    eng->stats.received++;
    if (from.ss_family != af ||
        sonde__parse_seg(af, eng->buf, (size_t)n, &seg) < 0) {
      eng->stats.malformed++;
      continue;
    }
    for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS &&
          cm->cmsg_len >= CMSG_LEN(sizeof(ts)))
        memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
      else if (cm->cmsg_level == IPPROTO_IPV6 &&
               cm->cmsg_type == IPV6_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo)))
        memcpy(seg.dst,
               &((const struct in6_pktinfo *)CMSG_DATA(cm))->ipi6_addr, 16);
      else if (cm->cmsg_level == IPPROTO_IPV6 &&
               cm->cmsg_type == IPV6_HOPLIMIT &&
               cm->cmsg_len >= CMSG_LEN(sizeof(int)))
        memcpy(&seg.ttl, CMSG_DATA(cm), sizeof(int));
      else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL &&
               cm->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
        /* answers the kernel dropped, the receive buffer being full
         * (cumulative): those probes time out, the count says why */
        uint32_t drops;
        memcpy(&drops, CMSG_DATA(cm), sizeof(drops));
        eng->stats.dropped += (uint32_t)(drops - s->drops);
        s->drops = drops;
      }
    }
    seg_matched(eng, af, &seg, &from, stamp_of(&ts, now));
  }
}

/* Close the raw TCP sockets and the held ports (sonde_engine_close). */
void sonde__syn_close(sonde_engine_t *eng) {
  size_t i;
  int k;
  for (k = 0; k < 2; k++)
    sonde__sock_close(eng, &eng->rawtcp[k]);
  for (i = 0; i < eng->n_synports; i++)
    sonde__close_fd(&eng->synports[i].fd);
  free(eng->synports);
  eng->synports = NULL;
  eng->n_synports = eng->cap_synports = 0;
}

/* icmp.c - ICMP / ICMPv6 echo probes with a per-packet TTL: on the engine's
 * raw socket, or unprivileged on an ICMP datagram ("ping") socket, whose
 * echo id the kernel sets to the socket's own. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"

/* How many ids echo_hold tries after the first before it gives up. */
#define ECHO_ID_TRIES 64

/*
 * The checksum, held at spec->checksum with a held checksum (Paris:
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

  msg[2] = msg[3] = 0;
  if (spec->hold_checksum) {
    if (len < 10 || spec->checksum == 0 || spec->checksum == 0xffff)
      return SONDE_EINVAL;
    if (af == AF_INET6) {
      /* p->local: the probe's source (icmp_send) */
      const struct sockaddr_storage *src = &p->local;
      pseudo = sonde__pseudo_sum(af, sonde__addr_bytes(src),
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

/* Close what holds the engine's echo id (at engine close). */
void sonde__echo_release(sonde_engine_t *eng) {
  int k;
  for (k = 0; k < 3; k++)
    sonde__close_fd(&eng->echo_hold[k]);
  eng->echo_held = 0;
}

/*
 * Hold id in this network namespace: 0 if it is ours now, SONDE_EADDRINUSE
 * if something else uses it. Two holds, each released by the kernel when
 * the engine closes them or the process ends:
 * - an abstract unix socket named after the id: abstract names are per
 *   network namespace and exclusive, so no two sonde engines (in one
 *   process or several) take the same id;
 * - an ICMP datagram socket of each family bound to the id where the
 *   system lets us open one (net.ipv4.ping_group_range): the kernel makes
 *   a ping socket's port its echo id and never chooses one in use, so
 *   ping (which lets the kernel choose) cannot be given it while we hold
 *   it. EACCES or EPERM (not in the group range) leaves that hold out:
 *   then no one unprivileged can use ping sockets either.
 * An id that a ping socket already has (ping_id_used) is not taken.
 * Raw-socket users (traceroute -I, mtr, ping with CAP_NET_RAW) pick their
 * id from their process id, as the engine's first candidate is, and
 * process ids are unique at any one time.
 */
/*
 * Whether an ICMP datagram socket of this network namespace has id as its
 * echo id (its local port in /proc/net/icmp or /proc/net/icmp6). Linux
 * lets a ping socket bind an id another one holds (ping_get_port only
 * keeps kernel-chosen ids apart), so binding one is no test; the table
 * is. 1 if so, 0 if not or unknown (no /proc).
 */
static int ping_id_used(uint16_t id) {
  static const char *const tables[2] = {"/proc/net/icmp", "/proc/net/icmp6"};
  char line[512];
  int k, used = 0;

  for (k = 0; k < 2 && !used; k++) {
    FILE *f = fopen(tables[k], "re");
    if (f == NULL)
      continue;
    while (!used && fgets(line, sizeof(line), f)) {
      /* "   11: 00000000:15B3 00000000:0000 07 ...": slot, local
       * address:port (hex), ... */
      char *local = strchr(line, ':'), *port;
      unsigned v;
      if (local == NULL)
        continue;
      local += strspn(local + 1, " ") + 1;
      port = strchr(local, ':');
      if (port && port < local + strcspn(local, " ") &&
          sscanf(port + 1, "%4x", &v) == 1 && v == id)
        used = 1;
    }
    fclose(f);
  }
  return used;
}

static int echo_try(sonde_engine_t *eng, uint16_t id) {
  struct sockaddr_un un;
  int fd, k, r;

  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  r = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "sonde/icmp-id/%u",
               (unsigned)id);
  fd = sonde__socket(AF_UNIX, SOCK_DGRAM, 0);
  if (fd < 0)
    return fd;
  eng->echo_hold[0] = fd;
  if (bind(fd, (struct sockaddr *)&un,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + r)) < 0) {
    r = -errno;
    sonde__echo_release(eng);
    return r;
  }
  if (ping_id_used(id)) {
    sonde__echo_release(eng);
    return SONDE_EADDRINUSE;
  }
  for (k = 0; k < 2; k++) {
    int af = k ? AF_INET6 : AF_INET;
    struct sockaddr_storage ss;
    fd = sonde__socket(af, SOCK_DGRAM, k ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
    if (fd < 0)
      continue; /* EACCES/EPERM: ping sockets are not allowed here */
    eng->echo_hold[1 + k] = fd;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)af;
    sonde__addr_set_port(&ss, id);
    if (bind(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0) {
      r = -errno;
      if (r == SONDE_EADDRINUSE) {
        sonde__echo_release(eng);
        return r;
      }
      /* EAFNOSUPPORT and the like: this family cannot hold it, and no
       * ping socket of that family can take it either. */
      sonde__close_fd(&eng->echo_hold[1 + k]);
    }
  }
  return 0;
}

/*
 * The engine's echo id for raw-socket echo requests, unique on this host
 * (its network namespace) while the engine lives: the first id that
 * echo_try can hold, from eng->echo_id on. An id given in the engine's
 * options (opts.echo_id) or a probe's spec is the caller's choice and is
 * not checked. Returns 0 or a negative errno (SONDE_EADDRINUSE: every id
 * tried is taken).
 */
static int echo_hold(sonde_engine_t *eng) {
  int k, r = SONDE_EADDRINUSE;
  if (eng->echo_held)
    return eng->echo_held < 0 ? eng->echo_held : 0;
  if (eng->opts.echo_id) {
    eng->echo_held = 1;
    return 0;
  }
  for (k = 0; k < ECHO_ID_TRIES; k++) {
    uint16_t id = (uint16_t)(eng->echo_id + k * 7919u);
    if (id == 0)
      continue;
    r = echo_try(eng, id);
    if (r == 0) {
      eng->echo_id = id;
      eng->echo_held = 1;
      return 0;
    }
    if (r != SONDE_EADDRINUSE)
      break;
  }
  eng->echo_held = r;
  return r;
}

static void on_own_ping(uv_poll_t *h, int status, int events) {
  sonde__probe_t *p = h->data;
  int af = p->spec.dst.ss_family;
  if (status < 0) {
    /* an ICMP error on its error queue: libuv stopped the poll */
    uint64_t id = p->id;
    sonde__errqueue_drain(p->eng, p->fd, SONDE_PROTO_ICMP,
                          sonde__addr_port(&p->local));
    if (p->id == id && p->state == SONDE__INFLIGHT && !p->poll_closing)
      (void)uv_poll_start(&p->poll, UV_READABLE, on_own_ping);
    return;
  }
  sonde__ping_read(p->eng, &p->fd, &p->drops, af);
}

/*
 * Unprivileged, with a source or interface of its own: an ICMP datagram
 * socket of the probe's own, bound to the device and to the source (the
 * kernel makes its port, chosen at bind(), the echo id). Linux's IPv6 ping
 * sockets take their source from the socket's bound address only
 * (ping_v6_sendmsg ignores IPV6_PKTINFO's), so the engine's shared socket
 * cannot carry one. *id gets the echo id.
 */
static int own_ping(sonde_engine_t *eng, sonde__probe_t *p, uint16_t *id) {
  int af = p->spec.dst.ss_family, on = 1, r;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);

  r = sonde__probe_src(eng, p, &ss);
  if (r < 0)
    return r;
  r = sonde__socket(af, SOCK_DGRAM,
                    af == AF_INET6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  if (r < 0) {
    p->call = af == AF_INET6 ? "socket(SOCK_DGRAM, IPPROTO_ICMPV6)"
                             : "socket(SOCK_DGRAM, IPPROTO_ICMP)";
    return r;
  }
  p->fd = r;
  if ((r = sonde__bind_device(p, p->fd)) < 0)
    return r;
  if (bind(p->fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0 ||
      getsockname(p->fd, (struct sockaddr *)&p->local, &len) < 0) {
    p->call = "bind";
    return -errno;
  }
  if ((r = sonde__recverr_enable(p->fd, af)) < 0) {
    p->call = "setsockopt(IP_RECVERR)";
    return r;
  }
  /* the TTL of echo replies; best effort, as on the shared socket */
  if (af == AF_INET6)
    (void)setsockopt(p->fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on));
  else
    (void)setsockopt(p->fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof(on));
  *id = sonde__addr_port(&p->local);
  return sonde__probe_poll(eng, p, UV_READABLE, on_own_ping);
}

static int icmp_send(sonde_engine_t *eng, sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int af = spec->dst.ss_family, i = sonde__afi(af), r, len, fd;
  uint16_t id = spec->echo_id, seq = spec->echo_seq;

  r = sonde__recv_open(eng, af);
  if (r < 0) {
    p->call = "socket(SOCK_RAW)";
    return r;
  }
  if (eng->unpriv[i] && (spec->src.ss_family || spec->iface[0])) {
    r = own_ping(eng, p, &id);
    if (r < 0)
      return r;
    fd = p->fd;
    if (spec->echo_id == 0)
      seq = ++eng->echo_seq ? eng->echo_seq : ++eng->echo_seq;
  } else if (eng->unpriv[i]) {
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
    if (id == 0 && (r = echo_hold(eng)) < 0) {
      p->call = "bind (ICMP echo id)";
      return r;
    }
    if (id == 0) {
      /* The engine's id; sequence numbers run on, skipping 0. */
      id = eng->echo_id;
      seq = ++eng->echo_seq ? eng->echo_seq : ++eng->echo_seq;
    }
  }
  if (spec->ip_id && (r = sonde__rawip_open(eng, p)) < 0)
    return r;
  /* The source the quote of an error about this probe must name, and the
   * destination of its echo reply (recv.c, errqueue.c). */
  if (p->fd == -1 && (r = sonde__probe_src(eng, p, &p->local)) < 0)
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
  if (len > 0) {
    size_t k;
    for (k = 8; k < (size_t)len; k++)
      eng->sbuf[k] = sonde__payload_byte(eng, spec, SONDE_PROTO_ICMP, k - 8);
    len = shape(eng, p, eng->sbuf, (size_t)len);
  }
  p->sent_ns = sonde__now(); /* the send time: see send_one */
  if (len < 0)
    r = len;
  else if (spec->ip_id)
    r = sonde__send_hdrincl(eng, p, IPPROTO_ICMP, (size_t)len);
  else if (sonde__sender_queue(eng, p, fd, eng->sbuf, (size_t)len) == 0)
    r = 0;
  else
    r = sonde__send_datagram(eng, p, fd, eng->sbuf, (size_t)len, &spec->dst);
  return sonde__send_end(eng, p, r);
}

const sonde__proto_ops_t sonde__icmp_ops = {
    .proto = SONDE_PROTO_ICMP,
    .send = icmp_send,
    .errq_quote_ok = sonde__icmp_errq_quote_ok,
};

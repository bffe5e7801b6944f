/* iphdr.c - the IP header fields a probe may set itself (README "Flows"):
 * the IPv4 identification (a header the engine writes, IP_HDRINCL), DF,
 * and the IPv6 flow label. Probes that set none of them never come here:
 * the common path stays one sendmsg() with TTL and TOS as ancillary data. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/in6.h> /* struct in6_flowlabel_req, IPV6_FLOWLABEL_MGR */

#include "internal.h"

/* connect(), in progress counting as done (non-blocking sockets). */
static int connect_once(int fd, const struct sockaddr_storage *dst) {
  if (connect(fd, (const struct sockaddr *)dst, sonde__addr_len(dst)) < 0 &&
      errno != EINPROGRESS)
    return -errno;
  return 0;
}

/* --- DF ------------------------------------------------------------------ */

/* The IP_MTU_DISCOVER value of an IPv4 probe's df. */
static int pmtudisc4(sonde_df_t df) {
  return df == SONDE_DF_PROBE ? IP_PMTUDISC_PROBE
         : df == SONDE_DF_SET ? IP_PMTUDISC_DO
                              : IP_PMTUDISC_DONT;
}

/*
 * IPv4 DF has no ancillary form: IP_MTU_DISCOVER is set for the send and
 * put back after it, because a shared socket (the engine's UDP or raw ICMP
 * socket, a flow's) also sends probes that leave DF to the kernel. IPv6's
 * DF is ancillary (IPV6_DONTFRAG), but whether the kernel's path MTU or
 * the device's limits the send is not: a SONDE_DF_PROBE send sets
 * IPV6_MTU_DISCOVER to IPV6_PMTUDISC_PROBE the same way.
 */
static int with_pmtudisc(sonde__probe_t *p, int fd, struct msghdr *msg,
                         int (*send_fn)(sonde__probe_t *, int,
                                        struct msghdr *)) {
  int v6 = ((const struct sockaddr *)msg->msg_name)->sa_family == AF_INET6;
  int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  int opt = v6 ? IPV6_MTU_DISCOVER : IP_MTU_DISCOVER;
  int want = v6 ? IPV6_PMTUDISC_PROBE : pmtudisc4(p->spec.df);
  int old, r;
  socklen_t len = sizeof(old);

  if (getsockopt(fd, level, opt, &old, &len) < 0 ||
      setsockopt(fd, level, opt, &want, sizeof(want)) < 0) {
    p->call = v6 ? "setsockopt(IPV6_MTU_DISCOVER)" : "setsockopt(IP_MTU_DISCOVER)";
    return -errno;
  }
  r = send_fn(p, fd, msg);
  (void)setsockopt(fd, level, opt, &old, sizeof(old));
  return r;
}

static int send_plain(sonde__probe_t *p, int fd, struct msghdr *msg) {
  (void)p;
  return sonde__sendmsg(fd, msg);
}

/* --- the IPv6 flow label ------------------------------------------------- */

/*
 * A shared lease (IPV6_FL_S_ANY) of label towards dst, taken (get) or
 * given back. Linux checks a label against the socket's leases only while
 * some socket of the network namespace holds an exclusive lease (since
 * 4.19; the flag then stays set): an unleased label fails sendmsg() and
 * connect() with EINVAL. A lease is bound to its destination (an
 * unspecified one is EINVAL); getting it fails with EPERM when another
 * socket holds the label exclusively, with EINVAL when a shared lease of
 * it towards another destination is still lingering (6 s after release),
 * with ENOBUFS past 32 leases of an unprivileged socket.
 */
static int lease(sonde__probe_t *p, int fd, const struct in6_addr *dst,
                 int get) {
  struct in6_flowlabel_req req;
  memset(&req, 0, sizeof(req));
  req.flr_dst = *dst;
  req.flr_label = htonl(p->spec.flow_label);
  req.flr_action = get ? IPV6_FL_A_GET : IPV6_FL_A_PUT;
  req.flr_flags = get ? IPV6_FL_F_CREATE : 0;
  req.flr_share = IPV6_FL_S_ANY;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &req, sizeof(req)) <
      0) {
    if (get)
      p->call = "setsockopt(IPV6_FLOWLABEL_MGR)";
    return -errno;
  }
  return 0;
}

/*
 * Make fd send the flow label of the destination address
 * (IPV6_FLOWINFO_SEND). Label 0 also needs the kernel's automatic label
 * off (IPV6_AUTOFLOWLABEL; its old value goes to *auto_old, else -1): with
 * net.ipv6.auto_flowlabels = 3 ("forced") the kernel labels anyway.
 */
static int label_on(sonde__probe_t *p, int fd, int *auto_old) {
  int on = 1, off = 0;
  socklen_t len = sizeof(*auto_old);

  *auto_old = -1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_FLOWINFO_SEND, &on, sizeof(on)) < 0) {
    p->call = "setsockopt(IPV6_FLOWINFO_SEND)";
    return -errno;
  }
  if (p->spec.flow_label == 0 &&
      (getsockopt(fd, IPPROTO_IPV6, IPV6_AUTOFLOWLABEL, auto_old, &len) < 0 ||
       setsockopt(fd, IPPROTO_IPV6, IPV6_AUTOFLOWLABEL, &off, sizeof(off)) <
           0)) {
    *auto_old = -1;
    p->call = "setsockopt(IPV6_AUTOFLOWLABEL)";
    return -errno;
  }
  return 0;
}

/* Undo label_on on a shared socket: probes that do not ask for a label get
 * the kernel's. */
static void label_off(int fd, int auto_old) {
  int off = 0;
  (void)setsockopt(fd, IPPROTO_IPV6, IPV6_FLOWINFO_SEND, &off, sizeof(off));
  if (auto_old != -1)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_AUTOFLOWLABEL, &auto_old,
                     sizeof(auto_old));
}

/* An IPv6 datagram with the probe's flow label. */
static int send_labelled(sonde__probe_t *p, int fd, struct msghdr *msg) {
  struct sockaddr_in6 to;
  void *name = msg->msg_name;
  int auto_old, r;

  memcpy(&to, name, sizeof(to));
  to.sin6_flowinfo = htonl(p->spec.flow_label);
  msg->msg_name = &to;
  r = label_on(p, fd, &auto_old);
  if (r == 0) {
    r = sonde__sendmsg(fd, msg);
    if (r == SONDE_EINVAL && p->spec.flow_label != 0 &&
        (r = lease(p, fd, &to.sin6_addr, 1)) == 0) {
      r = sonde__sendmsg(fd, msg);
      (void)lease(p, fd, &to.sin6_addr, 0);
    }
  }
  label_off(fd, auto_old);
  msg->msg_name = name;
  return r;
}

/*
 * Send msg (built by sonde__sendto_probe: destination, TTL, TOS, IPv6 df)
 * with what it cannot carry as ancillary data: the IPv4 DF bit and the
 * IPv6 flow label.
 */
int sonde__send_fields(sonde__probe_t *p, int fd, struct msghdr *msg) {
  if (((const struct sockaddr *)msg->msg_name)->sa_family == AF_INET6) {
    int (*fn)(sonde__probe_t *, int, struct msghdr *) =
        p->spec.has_flow_label ? send_labelled : send_plain;
    return p->spec.df == SONDE_DF_PROBE ? with_pmtudisc(p, fd, msg, fn)
                                        : fn(p, fd, msg);
  }
  return p->spec.df ? with_pmtudisc(p, fd, msg, send_plain)
                    : sonde__sendmsg(fd, msg);
}

/* --- the IPv4 identification: a header we write -------------------------- */

/*
 * The engine's IPv4 IPPROTO_RAW socket, for probes with an ip_id: pooled
 * before privileges were dropped (sonde_raw_preopen), else opened now.
 * Unprivileged it cannot help even where it could be opened: ICMP errors
 * then come back only on the error queue of the socket that sent the
 * probe, and a raw IPPROTO_RAW socket gets none (ENOTSUP).
 */
int sonde__rawip_open(sonde_engine_t *eng, sonde__probe_t *p) {
  int fd;
  if (eng->unpriv[0]) {
    p->call = "ip_id (needs raw sockets: IP_HDRINCL)";
    return SONDE_ENOTSUP;
  }
  if (eng->rawip != -1)
    return 0;
  if (eng->rawip_err == 0) {
    fd = sonde__raw_ip_socket();
    if (fd >= 0) {
      eng->rawip = fd;
      return 0;
    }
    eng->rawip_err = fd == SONDE_EACCES ? SONDE_EPERM : fd;
  }
  p->call = "socket(SOCK_RAW, IPPROTO_RAW)";
  return eng->rawip_err;
}

/*
 * Send the transport message of len bytes at eng->sbuf (ICMP or UDP, its
 * checksum filled) behind an IPv4 header written here: the probe's ip_id,
 * TTL and TOS, DF unless df says SONDE_DF_CLEAR (the kernel sets DF on
 * probes that fit the path, which is what a probe that does not ask gets),
 * and the route's source address (the one UDP's checksum was computed
 * with). The kernel fills in the header checksum and the total length
 * (raw(7)); it keeps a nonzero ID, and never fragments: over the device
 * MTU the send fails with EMSGSIZE.
 */
int sonde__send_hdrincl(sonde_engine_t *eng, sonde__probe_t *p, int proto,
                        size_t len) {
  const sonde_probe_spec_t *spec = &p->spec;
  struct sockaddr_storage src;
  uint8_t *b = eng->sbuf;
  sonde__cmsgbuf_t control;
  struct iovec iov;
  struct msghdr msg;
  int r;

  if (len + 20 > sizeof(eng->sbuf))
    return SONDE_EMSGSIZE;
  /* a source of the spec's was checked local (sonde__probe_src): the
   * kernel sends whatever source an IP_HDRINCL header carries */
  r = sonde__probe_src(eng, p, &src);
  if (r < 0)
    return r;
  memmove(b + 20, b, len);
  r = sonde__build_ip(AF_INET, b, 20, sonde__addr_bytes(&src),
                      sonde__addr_bytes(&spec->dst), (uint8_t)proto,
                      (uint8_t)spec->ttl, spec->ip_id, len);
  if (r < 0)
    return r;
  b[1] = spec->tos;
  if (spec->df != SONDE_DF_CLEAR)
    b[6] |= 0x40;
  b[10] = b[11] = 0;
  iov.iov_base = b;
  iov.iov_len = len + 20;
  memset(&msg, 0, sizeof(msg));
  msg.msg_name = (void *)&spec->dst;
  msg.msg_namelen = sizeof(struct sockaddr_in);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = 0;
  sonde__msg_pktinfo(p, &msg); /* the interface, with iface */
  if (msg.msg_controllen == 0)
    msg.msg_control = NULL;
  r = sonde__sendmsg(eng->rawip, &msg);
  if (r < 0)
    p->call = "sendto(SOCK_RAW, IPPROTO_RAW)";
  return r;
}

/* --- TCP: fields set on the probe's own socket ---------------------------- */

/*
 * Before a TCP probe's connect: TOS / traffic class and IPv4 DF on its
 * socket. The kernel writes every header of a connect, so an ip_id cannot
 * be honoured (ENOTSUP); nor can df on IPv6, which has no DF bit and whose
 * TCP never fragments (ENOTSUP).
 */
int sonde__tcp_fields(sonde__probe_t *p) {
  const sonde_probe_spec_t *spec = &p->spec;
  int v6 = spec->dst.ss_family == AF_INET6, v;

  if (spec->ip_id) {
    p->call = "ip_id (TCP: the kernel writes a connect's IP header)";
    return SONDE_ENOTSUP;
  }
  if (spec->df && v6) {
    p->call = "df (IPv6 TCP: no DF bit, and TCP never fragments)";
    return SONDE_ENOTSUP;
  }
  if (spec->tos) {
    v = spec->tos;
    if (setsockopt(p->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                   v6 ? IPV6_TCLASS : IP_TOS, &v, sizeof(v)) < 0) {
      p->call = v6 ? "setsockopt(IPV6_TCLASS)" : "setsockopt(IP_TOS)";
      return -errno;
    }
  }
  if (spec->df) {
    v = pmtudisc4(spec->df);
    if (setsockopt(p->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v)) < 0) {
      p->call = "setsockopt(IP_MTU_DISCOVER)";
      return -errno;
    }
  }
  return 0;
}

/*
 * connect() a TCP probe's socket to dst with the probe's flow label (the
 * SYN and every later segment carry it). Returns 0 (connected or in
 * progress) or a negative errno with p->call set.
 */
int sonde__connect_fields(sonde__probe_t *p, struct sockaddr_storage *dst) {
  struct sockaddr_in6 *to = (struct sockaddr_in6 *)dst;
  int auto_old, r;

  to->sin6_flowinfo = htonl(p->spec.flow_label);
  r = label_on(p, p->fd, &auto_old);
  if (r < 0)
    return r;
  r = connect_once(p->fd, dst);
  if (r == SONDE_EINVAL && p->spec.flow_label != 0) {
    r = lease(p, p->fd, &to->sin6_addr, 1);
    if (r < 0)
      return r;
    r = connect_once(p->fd, dst);
    (void)lease(p, p->fd, &to->sin6_addr, 0);
  }
  if (r < 0)
    p->call = "connect";
  return r;
}

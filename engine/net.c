/* net.c - small socket and address helpers. */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "internal.h"

/* A non-blocking, close-on-exec socket, or a negative errno. */
int sonde__socket(int af, int type, int proto) {
  int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  return fd < 0 ? -errno : fd;
}

/* Set the unicast TTL / hop limit of a socket. */
int sonde__set_ttl(int fd, int af, int ttl) {
  int r;
  if (af == AF_INET6)
    r = setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl));
  else
    r = setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
  return r < 0 ? -errno : 0;
}

static struct cmsghdr *put_int(struct msghdr *msg, struct cmsghdr *cm,
                               int level, int type, int value) {
  cm->cmsg_level = level;
  cm->cmsg_type = type;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &value, sizeof(int));
  return CMSG_NXTHDR(msg, cm);
}

/*
 * Send one probe datagram of p with its TTL (IP_TTL / IPV6_HOPLIMIT) and,
 * if set, its TOS / traffic class (IP_TOS / IPV6_TCLASS) as ancillary data,
 * so that one shared socket serves probes of every TTL and class; an IPv6
 * df too (IPV6_DONTFRAG). What has no ancillary form (IPv4 DF, the flow
 * label) goes through sonde__send_fields, only for probes that ask.
 * MSG_NOSIGNAL: sonde never raises SIGPIPE. Returns 0 or a negative errno,
 * with p->call set when something other than sendmsg() failed.
 */
void sonde__probe_msg(struct msghdr *msg, struct iovec *iov,
                      sonde__cmsgbuf_t *control, const void *buf, size_t len,
                      const struct sockaddr_storage *dst, int ttl, int tos,
                      sonde_df_t df) {
  struct cmsghdr *cm;
  int v6 = dst->ss_family == AF_INET6, n_cmsg = 1;

  memset(msg, 0, sizeof(*msg));
  memset(control, 0, sizeof(*control));
  iov->iov_base = (void *)buf;
  iov->iov_len = len;
  msg->msg_name = (void *)dst;
  msg->msg_namelen = sonde__addr_len(dst);
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
  msg->msg_control = control->buf;
  msg->msg_controllen = sizeof(control->buf);
  cm = CMSG_FIRSTHDR(msg);
  cm = put_int(msg, cm, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
               v6 ? IPV6_HOPLIMIT : IP_TTL, ttl);
  if (tos) {
    cm = put_int(msg, cm, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                 v6 ? IPV6_TCLASS : IP_TOS, tos);
    n_cmsg++;
  }
  if (v6 && df) {
    (void)put_int(msg, cm, IPPROTO_IPV6, IPV6_DONTFRAG, df != SONDE_DF_CLEAR);
    n_cmsg++;
  }
  msg->msg_controllen = (size_t)n_cmsg * CMSG_SPACE(sizeof(int));
}

int sonde__sendto_probe(sonde__probe_t *p, int fd, const void *buf,
                        size_t len, const struct sockaddr_storage *dst) {
  const sonde_probe_spec_t *spec = &p->spec;
  sonde__cmsgbuf_t control;
  struct iovec iov;
  struct msghdr msg;
  int v6 = dst->ss_family == AF_INET6;

  sonde__probe_msg(&msg, &iov, &control, buf, len, dst, spec->ttl, spec->tos,
                   spec->df);
  sonde__msg_pktinfo(p, &msg);
  if ((spec->df && !v6) || spec->df == SONDE_DF_PROBE || spec->has_flow_label)
    return sonde__send_fields(p, fd, &msg);
  return sonde__sendmsg(fd, &msg);
}

/*
 * With IP_RECVERR, an ICMP error about one datagram also sets the socket's
 * pending error, and the next sendmsg() on that socket fails with it
 * (EHOSTUNREACH, ECONNREFUSED, ...) although it concerns an earlier probe.
 * Reading SO_ERROR clears it; the error queue keeps the details for the
 * probe it belongs to.
 */
void sonde__clear_pending_error(int fd) {
  int err;
  socklen_t len = sizeof(err);
  (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
}

/*
 * The source address the kernel would use towards dst: the routing decision
 * of a connected UDP socket (connect() sends nothing). Needed to compute a
 * checksum over the pseudo-header before the kernel does. The answers are
 * kept, SONDE__ROUTES per family by a hash of the destination: a trace asks
 * for the same destination again and again, and a campaign interleaves
 * many traces (each lookup costs four system calls). Returns 0 or a
 * negative errno (ENETUNREACH without a route).
 */
int sonde__route_src(sonde_engine_t *eng, const struct sockaddr_storage *dst,
                     struct sockaddr_storage *src) {
  int i = sonde__afi(dst->ss_family), fd, r = 0;
  size_t alen = dst->ss_family == AF_INET6 ? 16 : 4, k;
  const uint8_t *a = sonde__addr_bytes(dst);
  uint32_t h = 2166136261u; /* FNV-1a */
  struct sockaddr_storage to = *dst;
  socklen_t len = sizeof(*src);

  /* A zoned destination (a link-local address with its scope id) is not
   * cached: the same address may live on several links, and the source
   * must carry the scope id that getsockname() gives it, or bind() fails
   * with EINVAL. */
  uint32_t scope = dst->ss_family == AF_INET6
                       ? ((const struct sockaddr_in6 *)dst)->sin6_scope_id
                       : 0;

  for (k = 0; k < alen; k++)
    h = (h ^ a[k]) * 16777619u;
  h %= SONDE__ROUTES;
  if (scope == 0 && eng->routes[i][h].used &&
      memcmp(eng->routes[i][h].dst, a, alen) == 0) {
    memset(src, 0, sizeof(*src));
    src->ss_family = dst->ss_family;
    memcpy((void *)sonde__addr_bytes(src), eng->routes[i][h].src, alen);
    return 0;
  }
  fd = sonde__socket(dst->ss_family, SOCK_DGRAM, IPPROTO_UDP);
  if (fd < 0)
    return fd;
  sonde__addr_set_port(&to, 9);
  if (connect(fd, (struct sockaddr *)&to, sonde__addr_len(&to)) < 0 ||
      getsockname(fd, (struct sockaddr *)src, &len) < 0)
    r = -errno;
  sonde__close_fd(&fd);
  if (r == 0 && scope != 0)
    sonde__addr_set_port(src, 0);
  else if (r == 0) {
    memcpy(eng->routes[i][h].dst, a, alen);
    memcpy(eng->routes[i][h].src, sonde__addr_bytes(src), alen);
    eng->routes[i][h].used = 1;
    /* the port the kernel chose is nobody's: only the address counts */
    sonde__addr_set_port(src, 0);
  }
  return r;
}

/*
 * The MTU of the device the route towards dst leaves by: the route's
 * output interface from rtnetlink (RTM_GETROUTE, as `ip route get` asks;
 * the kernel answers within the request's sendmsg), then SIOCGIFMTU on
 * it. 0 when it cannot say. The reply is untrusted bytes like any other:
 * every length is checked.
 */
static int device_mtu(int udp_fd, const struct sockaddr_storage *dst) {
  struct {
    struct nlmsghdr nh;
    struct rtmsg rt;
    char attrs[RTA_SPACE(16) + RTA_SPACE(sizeof(int))];
  } req;
  union {
    struct nlmsghdr nh;
    char buf[4096];
  } ans;
  struct rtattr *rta;
  struct ifreq ifr;
  int fd, v6 = dst->ss_family == AF_INET6, alen = v6 ? 16 : 4, oif = 0;
  ssize_t n;

  memset(&req, 0, sizeof(req));
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.rt)) + RTA_LENGTH(alen);
  req.nh.nlmsg_type = RTM_GETROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 1;
  req.rt.rtm_family = (unsigned char)dst->ss_family;
  req.rt.rtm_dst_len = (unsigned char)(alen * 8);
  rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(NLMSG_LENGTH(sizeof(req.rt))));
  rta->rta_type = RTA_DST;
  rta->rta_len = (unsigned short)RTA_LENGTH(alen);
  memcpy(RTA_DATA(rta), sonde__addr_bytes(dst), (size_t)alen);
  if (v6 && ((const struct sockaddr_in6 *)dst)->sin6_scope_id != 0) {
    /* a link-local destination's zone: the route on that link */
    int zone = (int)((const struct sockaddr_in6 *)dst)->sin6_scope_id;
    rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
    rta->rta_type = RTA_OIF;
    rta->rta_len = (unsigned short)RTA_LENGTH(sizeof(int));
    memcpy(RTA_DATA(rta), &zone, sizeof(int));
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_LENGTH(sizeof(int));
  }

  fd = sonde__socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (fd < 0)
    return 0;
  n = send(fd, &req, req.nh.nlmsg_len, 0);
  if (n >= 0)
    n = recv(fd, &ans, sizeof(ans), MSG_DONTWAIT);
  sonde__close_fd(&fd);
  if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct rtmsg)) ||
      !NLMSG_OK(&ans.nh, (unsigned)n) || ans.nh.nlmsg_type != RTM_NEWROUTE)
    return 0;
  {
    int left = (int)ans.nh.nlmsg_len - (int)NLMSG_LENGTH(sizeof(struct rtmsg));
    for (rta = RTM_RTA(NLMSG_DATA(&ans.nh)); RTA_OK(rta, left);
         rta = RTA_NEXT(rta, left))
      if (rta->rta_type == RTA_OIF && RTA_PAYLOAD(rta) >= sizeof(int))
        memcpy(&oif, RTA_DATA(rta), sizeof(int));
  }
  memset(&ifr, 0, sizeof(ifr));
  if (oif <= 0 || if_indextoname((unsigned)oif, ifr.ifr_name) == NULL ||
      ioctl(udp_fd, SIOCGIFMTU, &ifr) < 0)
    return 0;
  return ifr.ifr_mtu > 0 ? ifr.ifr_mtu : 0;
}

/*
 * SO_BINDTODEVICE of p's interface on fd: its packets leave by that device
 * and, where the device is enslaved to a VRF, are routed by the VRF's
 * table. ENODEV: no such interface. EPERM: a kernel before Linux 5.7 keeps
 * the option to CAP_NET_RAW. 0 without an interface.
 */
int sonde__bind_device(sonde__probe_t *p, int fd) {
  const char *dev = p->spec.iface;
  if (dev[0] == '\0')
    return 0;
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev,
                 (socklen_t)strlen(dev) + 1) < 0) {
    p->call = "setsockopt(SO_BINDTODEVICE)";
    return -errno;
  }
  return 0;
}

/* The last address own_address found on an interface, and when (this
 * thread's: an engine and its checks run on one thread). Addresses come
 * and go, so a finding is kept one second; a run that gives every probe
 * the same source reads the interfaces once a second, not per probe. */
#define OWN_ADDRESS_KEEP_NS 1000000000ull
static _Thread_local struct {
  struct sockaddr_storage addr;
  uint64_t at;
} own_seen;

/* 1 if an interface of this network namespace holds ss's address (as its
 * own address, not as a broadcast or peer address), 0 if not, negative
 * errno if the interfaces cannot be read. */
static int own_address(const struct sockaddr_storage *ss) {
  struct ifaddrs *list, *i;
  struct sockaddr_storage a;
  uint64_t now = sonde__now();
  int found = 0;

  if (own_seen.at != 0 && now - own_seen.at < OWN_ADDRESS_KEEP_NS &&
      sonde__addr_equal(&own_seen.addr, ss, 0))
    return 1;
  if (getifaddrs(&list) < 0)
    return -errno;
  for (i = list; i != NULL && !found; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != ss->ss_family)
      continue;
    memset(&a, 0, sizeof(a));
    memcpy(&a, i->ifa_addr, ss->ss_family == AF_INET6
                                ? sizeof(struct sockaddr_in6)
                                : sizeof(struct sockaddr_in));
    found = sonde__addr_equal(&a, ss, 0);
  }
  freeifaddrs(list);
  if (found) {
    own_seen.addr = *ss;
    own_seen.at = now;
  }
  return found;
}

/*
 * Check the source and interface that a spec names (once per probe):
 * a datagram socket of the family, bound to the device (SO_BINDTODEVICE:
 * ENODEV, EPERM), then either bound to the given source (bind(): Linux
 * says EADDRNOTAVAIL for an address that is not one of this network
 * namespace's) or connected towards dst (the route's source over that
 * device). The check is a real bind(), never a lookup of our own: the
 * kernel's answer is what every later socket of the probe gets, and the
 * raw paths (IP_HDRINCL writes whatever source we give it, and a raw
 * socket's route lookup accepts any source) rely on it to send no forged
 * source. bind() alone is not enough: Linux binds an IPv4 socket to a
 * multicast or broadcast address (a subnet's, or 255.255.255.255) to
 * receive on it, and to any address at all in a namespace that sets
 * net.ipv4.ip_nonlocal_bind or net.ipv6.ip_nonlocal_bind; IP_HDRINCL would
 * then send from it. So the address must also be one an interface holds
 * (own_address).
 */
static int src_check(const sonde_probe_spec_t *spec, const char **call,
                     unsigned *ifindex, struct sockaddr_storage *out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  struct ifreq ifr;
  int fd, r = 0;

  fd = sonde__socket(spec->dst.ss_family, SOCK_DGRAM, IPPROTO_UDP);
  if (fd < 0) {
    *call = "socket";
    return fd;
  }
  if (spec->iface[0]) {
    /* SO_BINDTODEVICE: ENODEV, EPERM (see sonde__bind_device) */
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, spec->iface,
                   (socklen_t)strnlen(spec->iface, sizeof(spec->iface)) +
                       1) < 0) {
      r = -errno;
      *call = "setsockopt(SO_BINDTODEVICE)";
    } else {
      memset(&ifr, 0, sizeof(ifr));
      memcpy(ifr.ifr_name, spec->iface, sizeof(spec->iface));
      ifr.ifr_name[IFNAMSIZ - 1] = '\0';
      if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
        r = -errno;
        *call = "ioctl(SIOCGIFINDEX)";
      } else {
        *ifindex = (unsigned)ifr.ifr_ifindex;
      }
    }
  }
  if (r == 0 && spec->src.ss_family) {
    ss = spec->src;
    sonde__addr_set_port(&ss, 0);
    if (bind(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0) {
      r = -errno;
      *call = "bind(src)";
    } else if ((r = own_address(&ss)) <= 0) {
      r = r < 0 ? r : SONDE_EADDRNOTAVAIL;
      *call = r == SONDE_EADDRNOTAVAIL ? "bind(src)" : "getifaddrs";
    } else {
      r = 0;
    }
  } else if (r == 0) {
    ss = spec->dst;
    sonde__addr_set_port(&ss, 9);
    if (connect(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
      r = -errno;
      *call = "connect"; /* the routing decision, as connect() takes it */
    }
  }
  sonde__close_fd(&fd);
  if (r < 0)
    return r;
  sonde__addr_set_port(&ss, 0);
  *out = ss;
  return 0;
}

/* src_check for a probe, once: its result is kept in the probe. */
static int check_src(sonde__probe_t *p) {
  int r = src_check(&p->spec, &p->call, &p->ifindex, &p->src);
  if (r == SONDE_EADDRNOTAVAIL && p->spec.src.ss_family) {
    p->local = p->spec.src; /* the result names the source refused */
    sonde__addr_set_port(&p->local, 0);
  }
  if (r == 0)
    p->src_checked = 1;
  return r;
}

int sonde_probe_source(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                       struct sockaddr_storage *src) {
  const char *call = NULL;
  unsigned ifindex = 0;
  int af = spec->dst.ss_family;
  if (af != AF_INET && af != AF_INET6)
    return SONDE_EAFNOSUPPORT;
  if ((spec->src.ss_family && spec->src.ss_family != af) ||
      memchr(spec->iface, '\0', sizeof(spec->iface)) == NULL)
    return SONDE_EINVAL;
  if (spec->src.ss_family == 0 && spec->iface[0] == '\0')
    return sonde__route_src(eng, &spec->dst, src);
  return src_check(spec, &call, &ifindex, src);
}

int sonde__probe_src(sonde_engine_t *eng, sonde__probe_t *p,
                     struct sockaddr_storage *src) {
  int r;
  if (p->spec.src.ss_family == 0 && p->spec.iface[0] == '\0') {
    r = sonde__route_src(eng, &p->spec.dst, src);
    if (r < 0)
      p->call = "connect"; /* the routing decision, as connect() takes it */
    return r;
  }
  if (!p->src_checked && (r = check_src(p)) < 0)
    return r;
  *src = p->src;
  return 0;
}

/*
 * A probe that names its source or interface sends with them on the
 * engine's shared sockets (raw ICMP, raw TCP, the shared UDP and ICMP
 * datagram sockets, IPPROTO_RAW), which serve every probe: IP_PKTINFO's
 * ipi_spec_dst and ipi_ifindex, IPV6_PKTINFO's address and index, per
 * packet (ip(7), ipv6(7)). On a socket of the probe's own they repeat its
 * bind. The source was checked local (check_src).
 */
_Static_assert(sizeof(struct in6_pktinfo) ==
                   sizeof(struct in6_addr) + sizeof(unsigned),
               "sonde__cmsgbuf_t has room for an in6_pktinfo");
void sonde__msg_pktinfo(const sonde__probe_t *p, struct msghdr *msg) {
  struct cmsghdr *cm;
  size_t used = msg->msg_controllen;

  if (!p->src_checked)
    return;
  msg->msg_controllen = used + (p->spec.dst.ss_family == AF_INET6
                                    ? CMSG_SPACE(sizeof(struct in6_pktinfo))
                                    : CMSG_SPACE(sizeof(struct in_pktinfo)));
  cm = (struct cmsghdr *)((char *)msg->msg_control + used);
  memset(cm, 0, msg->msg_controllen - used);
  if (p->spec.dst.ss_family == AF_INET6) {
    struct in6_pktinfo pi;
    memset(&pi, 0, sizeof(pi));
    memcpy(&pi.ipi6_addr, sonde__addr_bytes(&p->src), 16);
    pi.ipi6_ifindex = p->ifindex;
    cm->cmsg_level = IPPROTO_IPV6;
    cm->cmsg_type = IPV6_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
  } else {
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof(pi));
    memcpy(&pi.ipi_spec_dst, sonde__addr_bytes(&p->src), 4);
    pi.ipi_ifindex = (int)p->ifindex;
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
  }
}

/* The path MTU the kernel knows for dst: a connected UDP socket's IP_MTU
 * (IPv6: IPV6_MTU), the route's MTU lowered by what frag needed / packet
 * too big taught it; with device set, the MTU of the device the route
 * leaves by instead (what limits a SONDE_DF_PROBE send). 0 when it cannot
 * say. */
int sonde__path_mtu(const struct sockaddr_storage *dst, int device) {
  struct sockaddr_storage to = *dst;
  int fd, mtu = 0, v6 = dst->ss_family == AF_INET6;
  socklen_t len = sizeof(mtu);

  fd = sonde__socket(dst->ss_family, SOCK_DGRAM, IPPROTO_UDP);
  if (fd < 0)
    return 0;
  if (device)
    mtu = device_mtu(fd, dst);
  else {
    sonde__addr_set_port(&to, 9);
    if (connect(fd, (struct sockaddr *)&to, sonde__addr_len(&to)) < 0 ||
        getsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU,
                   &mtu, &len) < 0)
      mtu = 0;
  }
  sonde__close_fd(&fd);
  return mtu;
}

int sonde_route_source(sonde_engine_t *eng, const struct sockaddr_storage *dst,
                       struct sockaddr_storage *src) {
  if (dst->ss_family != AF_INET && dst->ss_family != AF_INET6)
    return SONDE_EAFNOSUPPORT;
  return sonde__route_src(eng, dst, src);
}

socklen_t sonde__addr_len(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

/* The address bytes (4 or 16) of an AF_INET/AF_INET6 address, else NULL. */
const void *sonde__addr_bytes(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return &((const struct sockaddr_in *)ss)->sin_addr;
  if (ss->ss_family == AF_INET6)
    return &((const struct sockaddr_in6 *)ss)->sin6_addr;
  return NULL;
}

uint16_t sonde__addr_port(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  if (ss->ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return 0;
}

/* Set the port of an IPv4 or IPv6 address (AF_INET6: sin6_port; else
 * sin_port, at the same offset on Linux). */
void sonde__addr_set_port(struct sockaddr_storage *ss, uint16_t port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

int sonde__addr_equal(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b, int with_port) {
  const void *x = sonde__addr_bytes(a), *y = sonde__addr_bytes(b);
  if (x == NULL || y == NULL || a->ss_family != b->ss_family)
    return 0;
  if (memcmp(x, y, a->ss_family == AF_INET6 ? 16 : 4) != 0)
    return 0;
  return !with_port || sonde__addr_port(a) == sonde__addr_port(b);
}

/*
 * tun.c - the simulator's TUN device: created on /dev/net/tun (IFF_TUN |
 * IFF_NO_PI: the fd reads and writes bare IP datagrams), brought up, given
 * the scenario's source address and a route for its prefix, over rtnetlink.
 *
 * The device is not persistent (no TUNSETPERSIST): the kernel deletes it,
 * with its address and routes, when its fd is closed, so whatever way the
 * process ends (even SIGKILL) nothing is left in the namespace.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "netsim.h"

#define NL_BUF 1024

typedef struct {
  struct nlmsghdr nh;
  union {
    struct ifinfomsg ifi;
    struct ifaddrmsg ifa;
    struct rtmsg rt;
  } u;
  char attrs[256];
} nlreq_t;

static void close_fd(int *fd) {
  if (*fd != -1) {
    close(*fd);
    *fd = -1;
  }
}

static int add_attr(nlreq_t *r, unsigned short type, const void *data,
                    size_t len) {
  size_t at = NLMSG_ALIGN(r->nh.nlmsg_len);
  struct rtattr *a = (struct rtattr *)((char *)r + at);

  if (at + RTA_SPACE(len) > sizeof(*r))
    return -ENOBUFS;
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  r->nh.nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
  return 0;
}

/* Send one request and read its acknowledgement: 0 or a negative errno. */
static int nl_talk(nlreq_t *r) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  union {
    char buf[NL_BUF];
    struct nlmsghdr align;
  } ans;
  int fd, i, err = -EPROTO;
  ssize_t n;

  fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0)
    return -errno;
  r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  r->nh.nlmsg_seq = 1;
  if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&kernel,
             sizeof(kernel)) < 0) {
    err = -errno;
    close_fd(&fd);
    return err;
  }
  /* The answer is one NLMSG_ERROR (error 0 is the ack). Bounded reads. */
  for (i = 0; i < 8; i++) {
    struct nlmsghdr *h;
    n = recv(fd, ans.buf, sizeof(ans.buf), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = -errno;
      break;
    }
    for (h = &ans.align; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR &&
          h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
        close_fd(&fd);
        return err;
      }
    }
  }
  close_fd(&fd);
  return err;
}

static void req_init(nlreq_t *r, uint16_t type, uint16_t flags, size_t len) {
  memset(r, 0, sizeof(*r));
  r->nh.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
  r->nh.nlmsg_type = type;
  r->nh.nlmsg_flags = flags;
}

static int link_up(int ifindex) {
  nlreq_t r;
  req_init(&r, RTM_NEWLINK, 0, sizeof(struct ifinfomsg));
  r.u.ifi.ifi_family = AF_UNSPEC;
  r.u.ifi.ifi_index = ifindex;
  r.u.ifi.ifi_flags = IFF_UP;
  r.u.ifi.ifi_change = IFF_UP;
  return nl_talk(&r);
}

/* The source address as a host address (/32, /128): no prefix route comes
 * with it; the prefix gets its own route below. No DAD for IPv6: the
 * address is usable at once. */
static int addr_add(int af, int ifindex, const uint8_t *a) {
  nlreq_t r;
  uint32_t flags = IFA_F_NODAD;
  size_t n = af == AF_INET ? 4 : 16;

  req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
           sizeof(struct ifaddrmsg));
  r.u.ifa.ifa_family = (uint8_t)af;
  r.u.ifa.ifa_prefixlen = (uint8_t)(n * 8);
  r.u.ifa.ifa_index = (uint32_t)ifindex;
  r.u.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  if (add_attr(&r, IFA_LOCAL, a, n) || add_attr(&r, IFA_ADDRESS, a, n) ||
      (af == AF_INET6 && add_attr(&r, IFA_FLAGS, &flags, sizeof(flags))))
    return -ENOBUFS;
  if (af == AF_INET6)
    r.u.ifa.ifa_flags = IFA_F_NODAD;
  return nl_talk(&r);
}

static int route_add(int af, int ifindex, const uint8_t *dst, int plen,
                     const uint8_t *src) {
  nlreq_t r;
  uint32_t oif = (uint32_t)ifindex;
  size_t n = af == AF_INET ? 4 : 16;

  req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
           sizeof(struct rtmsg));
  r.u.rt.rtm_family = (uint8_t)af;
  r.u.rt.rtm_dst_len = (uint8_t)plen;
  r.u.rt.rtm_table = RT_TABLE_MAIN;
  r.u.rt.rtm_protocol = RTPROT_STATIC;
  r.u.rt.rtm_scope = RT_SCOPE_LINK;
  r.u.rt.rtm_type = RTN_UNICAST;
  if (add_attr(&r, RTA_DST, dst, n) || add_attr(&r, RTA_OIF, &oif, 4) ||
      add_attr(&r, RTA_PREFSRC, src, n))
    return -ENOBUFS;
  return nl_talk(&r);
}

static int in_prefix(const uint8_t *a, const uint8_t *p, int plen) {
  int i;
  for (i = 0; i < plen; i++) {
    uint8_t m = (uint8_t)(0x80 >> (i % 8));
    if ((a[i / 8] & m) != (p[i / 8] & m))
      return 0;
  }
  return 1;
}

/*
 * Create and configure the device. Hop addresses outside the prefix get a
 * host route to the device too: probes to them reach the simulator, and a
 * reverse-path filter in the namespace accepts replies from them.
 */
int netsim_tun_open(const netsim_scenario_t *sc, const char *name,
                    char *dev_out, char *err, size_t errlen) {
  struct ifreq ifr;
  int fd, r, ifindex, i, hostlen = sc->af == AF_INET ? 32 : 128;
  char abuf[INET6_ADDRSTRLEN];

  if (strlen(name) >= IFNAMSIZ) {
    snprintf(err, errlen, "--dev: '%s' is longer than %d characters", name,
             IFNAMSIZ - 1);
    return -EINVAL;
  }
  fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    r = -errno;
    snprintf(err, errlen, "open /dev/net/tun: %s", strerror(-r));
    return r;
  }
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    r = -errno;
    snprintf(err, errlen, "TUNSETIFF %s: %s", name, strerror(-r));
    close_fd(&fd);
    return r;
  }
  snprintf(dev_out, IFNAMSIZ, "%s", ifr.ifr_name);
  ifindex = (int)if_nametoindex(ifr.ifr_name);
  r = ifindex > 0 ? 0 : -errno;
  if (r == 0 && (r = link_up(ifindex)) < 0)
    snprintf(err, errlen, "%s: set up: %s", dev_out, strerror(-r));
  if (r == 0 && (r = addr_add(sc->af, ifindex, sc->source)) < 0)
    snprintf(err, errlen, "%s: add address %s: %s", dev_out,
             netsim_ntop(sc->af, sc->source, abuf, sizeof(abuf)),
             strerror(-r));
  if (r == 0 &&
      (r = route_add(sc->af, ifindex, sc->prefix, sc->plen, sc->source)) < 0)
    snprintf(err, errlen, "%s: add route %s/%d: %s", dev_out,
             netsim_ntop(sc->af, sc->prefix, abuf, sizeof(abuf)), sc->plen,
             strerror(-r));
  for (i = 0; r == 0 && i < sc->n_hops; i++) {
    const netsim_hop_t *h = &sc->hops[i];
    int j, dup = 0;
    if (!h->has_addr || in_prefix(h->addr, sc->prefix, sc->plen))
      continue;
    for (j = 0; j < i; j++) /* one route per address */
      dup |= sc->hops[j].has_addr &&
             memcmp(sc->hops[j].addr, h->addr, 16) == 0;
    if (!dup && (r = route_add(sc->af, ifindex, h->addr, hostlen,
                               sc->source)) < 0)
      snprintf(err, errlen, "%s: add route %s: %s", dev_out,
               netsim_ntop(sc->af, h->addr, abuf, sizeof(abuf)),
               strerror(-r));
  }
  if (r < 0) {
    close_fd(&fd); /* the device goes with it */
    return r;
  }
  return fd;
}

/*
 * The lab's rule: the simulator's routes live only in a namespace made for
 * the purpose. `ip netns add` bind-mounts each such namespace on
 * /run/netns/NAME; compare our namespace with those (at most 4096 looked at).
 */
int netsim_in_named_netns(void) {
  struct stat self, st;
  DIR *d;
  struct dirent *e;
  int found = 0, n = 0;
  char path[300];

  if (stat("/proc/self/ns/net", &self) < 0)
    return 0;
  d = opendir("/run/netns");
  if (d == NULL)
    return 0;
  while (!found && n++ < 4096 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/run/netns/%s", e->d_name);
    if (stat(path, &st) == 0 && st.st_dev == self.st_dev &&
        st.st_ino == self.st_ino)
      found = 1;
  }
  closedir(d);
  return found;
}

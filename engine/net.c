/* net.c - small socket and address helpers. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/*
 * Send one datagram with a per-packet TTL given as ancillary data (IP_TTL /
 * IPV6_HOPLIMIT), so that one shared socket serves probes of every TTL.
 * MSG_NOSIGNAL: sonde never raises SIGPIPE. Returns 0 or a negative errno.
 */
int sonde__sendto_ttl(int fd, const void *buf, size_t len,
                      const struct sockaddr_storage *dst, int ttl) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov;
  struct msghdr msg;
  struct cmsghdr *cm;
  ssize_t n;

  memset(&msg, 0, sizeof(msg));
  memset(&control, 0, sizeof(control));
  iov.iov_base = (void *)buf;
  iov.iov_len = len;
  msg.msg_name = (void *)dst;
  msg.msg_namelen = sonde__addr_len(dst);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  if (dst->ss_family == AF_INET6) {
    cm->cmsg_level = IPPROTO_IPV6;
    cm->cmsg_type = IPV6_HOPLIMIT;
  } else {
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_TTL;
  }
  memcpy(CMSG_DATA(cm), &ttl, sizeof(int));
  do
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return -errno;
  return 0;
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

int sonde__addr_equal(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b, int with_port) {
  const void *x = sonde__addr_bytes(a), *y = sonde__addr_bytes(b);
  if (x == NULL || y == NULL || a->ss_family != b->ss_family)
    return 0;
  if (memcmp(x, y, a->ss_family == AF_INET6 ? 16 : 4) != 0)
    return 0;
  return !with_port || sonde__addr_port(a) == sonde__addr_port(b);
}

/* errqueue.c - ICMP errors as the kernel hands them to the socket that sent
 * the probe (IP_RECVERR / IPV6_RECVERR, read with MSG_ERRQUEUE): the TCP
 * probes' fallback when the raw socket did not see the error, and the
 * unprivileged path. */
#include <errno.h>
#include <time.h>
#include <linux/errqueue.h>
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

/*
 * Read one ICMP error from fd's error queue into res (kind, unreach, addr of
 * the router that sent it, type, code, mtu). Returns 1 if one was read, 0 if
 * the queue held no ICMP error, or a negative errno.
 */
int sonde__errqueue_read(int fd, sonde_result_t *res) {
  union {
    char buf[512];
    struct cmsghdr align;
  } control;
  char data[256];
  struct iovec iov = {data, sizeof(data)};
  struct sockaddr_storage name;
  struct msghdr msg;
  struct cmsghdr *cm;

  memset(&msg, 0, sizeof(msg));
  msg.msg_name = &name;
  msg.msg_namelen = sizeof(name);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    struct sock_extended_err ee;
    const struct sockaddr *off;
    int af;

    if (!((cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_RECVERR) ||
          (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
      continue;
    if (cm->cmsg_len < CMSG_LEN(sizeof(ee)))
      continue;
    memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
    if (ee.ee_origin == SO_EE_ORIGIN_ICMP)
      af = AF_INET;
    else if (ee.ee_origin == SO_EE_ORIGIN_ICMP6)
      af = AF_INET6;
    else
      continue;
    sonde__icmp_classify(af, ee.ee_type, ee.ee_code, &res->kind,
                         &res->unreach);
    res->icmp_type = ee.ee_type;
    res->icmp_code = ee.ee_code;
    if (res->kind == SONDE_KIND_PACKET_TOO_BIG ||
        res->unreach == SONDE_UNREACH_FRAG_NEEDED)
      res->mtu = (int)ee.ee_info;
    /* The offender follows the extended error inside the same cmsg. */
    off = SO_EE_OFFENDER((struct sock_extended_err *)CMSG_DATA(cm));
    if (cm->cmsg_len >= CMSG_LEN(sizeof(ee)) + sizeof(struct sockaddr_in) &&
        (off->sa_family == AF_INET || off->sa_family == AF_INET6)) {
      size_t n = off->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
      if (cm->cmsg_len >= CMSG_LEN(sizeof(ee)) + n)
        memcpy(&res->addr, off, n);
    }
    return 1;
  }
  return 0;
}

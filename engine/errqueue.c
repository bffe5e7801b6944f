/* errqueue.c - ICMP errors as the kernel hands them to the socket that sent
 * the probe (IP_RECVERR / IPV6_RECVERR, read with MSG_ERRQUEUE): the TCP
 * probes' fallback when the raw socket did not see the error, and the
 * unprivileged path. */
#include <errno.h>
#include <time.h>
#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <linux/icmp.h>
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

/* Kind and unreachable code of an ICMP/ICMPv6 type and code. */
void sonde__icmp_classify(int af, int type, int code, sonde_kind_t *kind,
                          sonde_unreach_t *unreach) {
  static const sonde_unreach_t v4[16] = {
      SONDE_UNREACH_NET,          SONDE_UNREACH_HOST,
      SONDE_UNREACH_PROTOCOL,     SONDE_UNREACH_PORT,
      SONDE_UNREACH_FRAG_NEEDED,  SONDE_UNREACH_SOURCE_ROUTE,
      SONDE_UNREACH_NET_UNKNOWN,  SONDE_UNREACH_HOST_UNKNOWN,
      SONDE_UNREACH_OTHER,        SONDE_UNREACH_PROHIBITED,
      SONDE_UNREACH_PROHIBITED,   SONDE_UNREACH_NET,
      SONDE_UNREACH_HOST,         SONDE_UNREACH_PROHIBITED,
      SONDE_UNREACH_PRECEDENCE,   SONDE_UNREACH_PRECEDENCE};
  static const sonde_unreach_t v6[7] = {
      SONDE_UNREACH_NET,         SONDE_UNREACH_PROHIBITED,
      SONDE_UNREACH_BEYOND_SCOPE, SONDE_UNREACH_ADDRESS,
      SONDE_UNREACH_PORT,        SONDE_UNREACH_POLICY,
      SONDE_UNREACH_REJECT_ROUTE};

  *kind = SONDE_KIND_NONE;
  *unreach = SONDE_UNREACH_NONE;
  if (af == AF_INET6) {
    switch (type) {
    case ICMP6_ECHO_REPLY: *kind = SONDE_KIND_ECHO_REPLY; break;
    case ICMP6_TIME_EXCEEDED: *kind = SONDE_KIND_TIME_EXCEEDED; break;
    case ICMP6_PACKET_TOO_BIG: *kind = SONDE_KIND_PACKET_TOO_BIG; break;
    case ICMP6_PARAM_PROB: *kind = SONDE_KIND_PARAM_PROBLEM; break;
    case ICMP6_DST_UNREACH:
      *kind = SONDE_KIND_DEST_UNREACHABLE;
      *unreach = code >= 0 && code < 7 ? v6[code] : SONDE_UNREACH_OTHER;
      break;
    }
    return;
  }
  switch (type) {
  case ICMP_ECHOREPLY: *kind = SONDE_KIND_ECHO_REPLY; break;
  case ICMP_TIME_EXCEEDED: *kind = SONDE_KIND_TIME_EXCEEDED; break;
  case ICMP_PARAMETERPROB: *kind = SONDE_KIND_PARAM_PROBLEM; break;
  case ICMP_DEST_UNREACH:
    *kind = SONDE_KIND_DEST_UNREACHABLE;
    *unreach = code >= 0 && code < 16 ? v4[code] : SONDE_UNREACH_OTHER;
    break;
  }
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

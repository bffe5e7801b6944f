/* errmsg.c - what the kernel says about an ICMP error in the ancillary data
 * of a MSG_ERRQUEUE read (IP_RECVERR / IPV6_RECVERR): a sock_extended_err
 * with the ICMP type and code, followed by the offender's address. Pure;
 * read as untrusted bytes like every packet (spec/fuzz/fuzz_packet.c). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/errqueue.h>

#include "packet.h"

int sonde__parse_errmsg(const void *control, size_t len, sonde_result_t *res) {
  const uint8_t *base = control, *end = base + len;
  struct msghdr msg;
  struct cmsghdr *cm;

  memset(&msg, 0, sizeof(msg));
  msg.msg_control = (void *)control;
  msg.msg_controllen = len;
  for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    struct sock_extended_err ee;
    struct sockaddr_storage off;
    const uint8_t *data = CMSG_DATA(cm);
    size_t have;
    int af;

    /* CMSG_FIRSTHDR checks only that a header fits: the length it claims
     * must fit too. */
    if (cm->cmsg_len < CMSG_LEN(0) || cm->cmsg_len > (size_t)(end - base) ||
        (const uint8_t *)cm + cm->cmsg_len > end)
      return 0;
    if (!((cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_RECVERR) ||
          (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
      continue;
    have = cm->cmsg_len - CMSG_LEN(0);
    if (have < sizeof(ee))
      continue;
    memcpy(&ee, data, sizeof(ee));
    if (ee.ee_origin == SO_EE_ORIGIN_ICMP)
      af = AF_INET;
    else if (ee.ee_origin == SO_EE_ORIGIN_ICMP6)
      af = AF_INET6;
    else
      return 0; /* a local error (e.g. EMSGSIZE): not a reply */
    sonde__icmp_classify(af, ee.ee_type, ee.ee_code, &res->kind,
                         &res->unreach);
    res->icmp_type = ee.ee_type;
    res->icmp_code = ee.ee_code;
    if (res->kind == SONDE_KIND_PACKET_TOO_BIG ||
        res->unreach == SONDE_UNREACH_FRAG_NEEDED)
      res->mtu = (int)ee.ee_info;
    /* The offender (SO_EE_OFFENDER) follows the extended error. */
    memset(&off, 0, sizeof(off));
    have -= sizeof(ee);
    if (have >= sizeof(sa_family_t)) {
      size_t n = have < sizeof(off) ? have : sizeof(off);
      memcpy(&off, data + sizeof(ee), n);
      if ((off.ss_family == AF_INET && n >= sizeof(struct sockaddr_in)) ||
          (off.ss_family == AF_INET6 && n >= sizeof(struct sockaddr_in6)))
        memcpy(&res->addr, &off, sizeof(off));
    }
    return res->kind != SONDE_KIND_NONE;
  }
  return 0;
}

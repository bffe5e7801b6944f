/* priv.c - raw sockets opened while the process still may, for engines
 * created after it has dropped its privileges (DESIGN.md: privileged mode
 * opens raw sockets, then drops what it no longer needs). */
#include <errno.h>
#include <fcntl.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define POOL 2 /* per family: engines that may take one */

static int pool[2][POOL] = {{-1, -1}, {-1, -1}};

/* Block every ICMP type: a pooled socket queues nothing until it is taken
 * and its engine sets the filter it wants. */
static void block_all(int fd, int af) {
  if (af == AF_INET6) {
    struct icmp6_filter f;
    ICMP6_FILTER_SETBLOCKALL(&f);
    (void)setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f));
  } else {
    struct icmp_filter f = {~0u};
    (void)setsockopt(fd, SOL_RAW, ICMP_FILTER, &f, sizeof(f));
  }
}

int sonde_raw_preopen(void) {
  int afs[2] = {AF_INET, AF_INET6}, i, k, opened = 0, err = 0;
  for (i = 0; i < 2; i++) {
    for (k = 0; k < POOL; k++) {
      int fd;
      if (pool[i][k] != -1) {
        opened++;
        continue;
      }
      fd = sonde__socket(afs[i], SOCK_RAW,
                         i ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
      if (fd < 0) {
        err = fd;
        break;
      }
      block_all(fd, afs[i]);
      pool[i][k] = fd;
      opened++;
    }
  }
  return opened ? opened : (err ? err : SONDE_EPERM);
}

void sonde_raw_release(void) {
  int i, k;
  for (i = 0; i < 2; i++)
    for (k = 0; k < POOL; k++)
      sonde__close_fd(&pool[i][k]);
}

/*
 * A raw ICMP socket of the family for an engine, which owns it from then on:
 * one from the pool if there is one left (ownership passes: the pool
 * forgets it), else a new one (EPERM/EACCES without CAP_NET_RAW).
 */
int sonde__raw_socket(int af) {
  int i = sonde__afi(af), k;
  struct icmp_filter none = {0};
  for (k = 0; k < POOL; k++) {
    int fd = pool[i][k];
    if (fd != -1) {
      pool[i][k] = -1;
      if (af == AF_INET)
        (void)setsockopt(fd, SOL_RAW, ICMP_FILTER, &none, sizeof(none));
      return fd;
    }
  }
  return sonde__socket(af, SOCK_RAW, af == AF_INET6 ? IPPROTO_ICMPV6
                                                     : IPPROTO_ICMP);
}

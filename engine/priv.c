/* priv.c - raw sockets opened while the process still may, for engines
 * created after it has dropped its privileges: a privileged start opens
 * them, then gives up what it no longer needs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define POOL 2 /* per family: engines that may take one */

static int pool[2][POOL] = {{-1, -1}, {-1, -1}};
/* Raw UDP sockets send Paris probes, whose checksum the kernel must not
 * touch; they are never read. One per family. */
#define POOL_UDP 1
static int pool_udp[2][POOL_UDP] = {{-1}, {-1}};
/* One IPv4 IPPROTO_RAW socket: probes that set their IP identification
 * are written header and all (IP_HDRINCL). Such a socket is send-only on
 * Linux (raw(7)): it never queues what arrives. */
static int pool_ip = -1;
/* Raw TCP sockets (half-open TCP probes, syn.c), one per family: they
 * queue nothing while pooled (a drop-all filter, not locked); the engine
 * that takes one sets its own filter and locks it. */
static int pool_tcp[2] = {-1, -1};

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

/* A socket filter that drops every packet: a send-only raw socket queues
 * nothing. The filter is locked (SO_LOCK_FILTER, Linux 3.9): nothing in
 * this process can detach or replace it to read other programs' UDP
 * traffic through this socket. */
static int drop_all(int fd) {
  struct sock_filter code = BPF_STMT(BPF_RET | BPF_K, 0);
  struct sock_fprog prog = {1, &code};
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0)
    return -errno;
  return 0;
}

/* A send-only raw UDP socket (Paris probes: we write the UDP header). */
static int raw_udp(int af) {
  int fd = sonde__socket(af, SOCK_RAW, IPPROTO_UDP), r;
  if (fd < 0)
    return fd;
  r = drop_all(fd);
  if (r < 0) {
    sonde__close_fd(&fd);
    return r;
  }
  return fd;
}

int sonde_raw_preopen(void) {
  int afs[2] = {AF_INET, AF_INET6}, i, k, opened = 0, err = 0;
  int rcvbuf = 4 << 20;
  for (i = 0; i < 2; i++) {
    for (k = 0; k < POOL; k++) {
      int fd;
      if (pool[i][k] == -1) {
        fd = sonde__socket(afs[i], SOCK_RAW,
                           i ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
        if (fd < 0) {
          err = fd;
          break;
        }
        block_all(fd, afs[i]);
        /* A large receive buffer while we may still force one (root):
         * replies from a fast sweep arrive in bursts. */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
                         sizeof(rcvbuf));
        pool[i][k] = fd;
      }
      if (k < POOL_UDP && pool_udp[i][k] == -1 && (fd = raw_udp(afs[i])) >= 0)
        pool_udp[i][k] = fd;
      opened++;
    }
  }
  if (pool_ip == -1 && (k = sonde__socket(AF_INET, SOCK_RAW, IPPROTO_RAW)) >= 0)
    pool_ip = k;
  for (i = 0; i < 2; i++) {
    struct sock_filter code = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog = {1, &code};
    if (pool_tcp[i] != -1 ||
        (k = sonde__socket(afs[i], SOCK_RAW, IPPROTO_TCP)) < 0)
      continue;
    pool_tcp[i] = k;
    /* as the ICMP sockets': a campaign's answers come in bursts */
    (void)setsockopt(k, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
    if (setsockopt(k, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
      sonde__close_fd(&pool_tcp[i]);
  }
  return opened ? opened : (err ? err : SONDE_EPERM);
}

void sonde_raw_release(void) {
  int i, k;
  for (i = 0; i < 2; i++)
    for (k = 0; k < POOL; k++) {
      sonde__close_fd(&pool[i][k]);
      if (k < POOL_UDP)
        sonde__close_fd(&pool_udp[i][k]);
    }
  sonde__close_fd(&pool_ip);
  sonde__close_fd(&pool_tcp[0]);
  sonde__close_fd(&pool_tcp[1]);
}

/* A raw TCP socket for an engine, which owns it from then on: the pooled
 * one (its drop-all filter replaced by the engine's, then locked), else
 * new (EPERM without CAP_NET_RAW). */
int sonde__raw_tcp_socket(int af) {
  int i = sonde__afi(af), fd = pool_tcp[i], r;
  if (fd == -1)
    return sonde__raw_tcp_new(af);
  pool_tcp[i] = -1;
  r = sonde__raw_tcp_filter(fd, af);
  if (r < 0) {
    sonde__close_fd(&fd);
    return r;
  }
  return fd;
}

/* The IPv4 IPPROTO_RAW socket for an engine, which owns it from then on:
 * the pooled one, else new (EPERM without CAP_NET_RAW). */
int sonde__raw_ip_socket(void) {
  int fd = pool_ip;
  if (fd != -1) {
    pool_ip = -1;
    return fd;
  }
  return sonde__socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
}

/* A send-only raw UDP socket for an engine, which owns it from then on:
 * from the pool, else new (EPERM without CAP_NET_RAW). */
int sonde__raw_udp_socket(int af) {
  int i = sonde__afi(af), k;
  for (k = 0; k < POOL_UDP; k++) {
    int fd = pool_udp[i][k];
    if (fd != -1) {
      pool_udp[i][k] = -1;
      return fd;
    }
  }
  return raw_udp(af);
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

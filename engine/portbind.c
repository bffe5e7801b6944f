/* portbind.c - the source-port binding policy for probes that own a socket
 * (TCP connect probes; UDP probes that ask for a source port). The decisions
 * that follow from bind's and connect's errors are in sonde_err_status()
 * (the errno map in sonde.h) and engine/tcp.c. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* The source port a probe asks for under its policy; -EINVAL if none fits. */
static int policy_port(const sonde_probe_spec_t *spec) {
  uint32_t port;
  switch (spec->bind) {
  case SONDE_BIND_KERNEL:
    return 0;
  case SONDE_BIND_SEQUENCE:
    /* source port = base + sequence: the port names the probe (Trippy). */
    port = (uint32_t)spec->sport + spec->seq;
    return port >= 1 && port <= 65535 ? (int)port : SONDE_EINVAL;
  default:
    return spec->sport ? spec->sport : SONDE_EINVAL;
  }
}

/*
 * Create p's own socket (stored in p->fd at once: the probe owns it from
 * here on and closes it when it ends) and bind it to the policy's port.
 * p->local gets the bound address. Returns 0 or a negative errno, with
 * p->call naming the call that failed.
 *
 * A UDP socket is bound without SO_REUSEPORT, to the source address the
 * route gives (the address its probes leave from): a port that another
 * socket holds, ours or another process's, is EADDRINUSE at bind() for
 * UDP as for TCP. With SO_REUSEPORT, two processes of one user would bind
 * the same port and the kernel would hand the ICMP errors about one
 * process's probes to the other's socket (Linux looks a UDP socket up by
 * the quote's addresses and ports; in a SO_REUSEPORT group it picks one
 * by hash). Bound to its source address, the socket is found only for
 * quotes that name that address: the kernel checks the quoted source for
 * errors read from the error queue.
 */
int sonde__bind_probe_socket(sonde__probe_t *p, int type, int proto) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int af = p->spec.dst.ss_family, on = 1, port, fd, r;

  port = policy_port(&p->spec);
  if (port < 0) {
    p->call = "bind";
    return port;
  }
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = (sa_family_t)af;
  /* UDP, and TCP whose spec names a source or interface: bound to the
   * source address (sonde__probe_src checked a given one is local). */
  if (type == SOCK_DGRAM || p->spec.src.ss_family || p->spec.iface[0]) {
    r = sonde__probe_src(p->eng, p, &ss);
    if (r < 0)
      return r;
  }
  fd = sonde__socket(af, type, proto);
  if (fd < 0) {
    p->call = "socket";
    return fd;
  }
  p->fd = fd;
  if ((r = sonde__bind_device(p, fd)) < 0)
    return r;
  /*
   * TCP: SO_REUSEPORT on Linux stream sockets avoids a spurious
   * EADDRNOTAVAIL when many probe sockets share a port range. Its price: a
   * port held in TIME_WAIT no longer fails bind() but connect() (on Linux
   * with EADDRNOTAVAIL; tcp.c makes that a skip). On macOS it affects UDP
   * only. A TCP socket's errors are found by their full 4-tuple and
   * sequence number, so sharing a port never shares its errors.
   * ENOPROTOOPT (no such option on this system) is not fatal: bind() then
   * reports a busy port itself.
   */
  if (type == SOCK_STREAM &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0 &&
      errno != ENOPROTOOPT) {
    p->call = "setsockopt(SO_REUSEPORT)";
    return -errno;
  }
  /*
   * TCP with a given source or interface and a kernel-chosen port: bound
   * to the address, and IP_BIND_ADDRESS_NO_PORT leaves the port to
   * connect(), which picks one free for the 4-tuple instead of taking one
   * of the ephemeral range for every destination at once (ip(7)). It is
   * an IPPROTO_IP option that Linux honours on IPv6 sockets too.
   */
  if (port != 0 || type == SOCK_DGRAM || p->src_checked) {
    if (type == SOCK_STREAM && port == 0)
      (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on,
                       sizeof(on));
    sonde__addr_set_port(&ss, port);
    if (bind(fd, (struct sockaddr *)&ss, sonde__addr_len(&ss)) < 0) {
      p->call = "bind";
      return -errno;
    }
  }
  if (getsockname(fd, (struct sockaddr *)&p->local, &len) < 0) {
    p->call = "getsockname";
    return -errno;
  }
  return 0;
}

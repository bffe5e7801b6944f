/*
 * forge - floods a lab host with forged and malformed ICMP errors, for the
 * spec that shows a trace's result does not change under such a flood.
 *
 *   forge [-6] -d VICTIM -t TARGET [-r PPS] [-s SECONDS] [-S SEED]
 *
 * VICTIM is where the packets go (the prober), TARGET the address the
 * prober traces (quotes name it, with ports and ids that are not the
 * prober's). Runs SECONDS (default 5) at PPS packets per second (default
 * 5000), then prints "sent N" and exits 0. Prints "ready" once its socket is
 * open. Lab use only: the spec gives it lab addresses.
 *
 * Variants, in turn: random garbage after an ICMP error header; quotes cut
 * to every length shorter than an IP header; a well-formed quote of another
 * destination; a quote of TARGET with ports/ids the prober never uses; an
 * RFC 4884 length pointing past the packet and extension objects of length
 * 0 or longer than the packet; (IPv4) a wrong ICMP checksum on an otherwise
 * plausible error; echo replies with random ids.
 *
 *   forge [-6] -d VICTIM -t TARGET -M MODE [-F FROM] [-r PPS] [-s SECONDS]
 *
 * Mirror mode (-M): reads the packets VICTIM sends to TARGET as they pass
 * (a packet socket on the router it runs on) and answers each at once with
 * a time exceeded error (ICMPv4 11/0, ICMPv6 3/0) whose quote is the
 * packet itself, altered per MODE, sent from FROM (an address of this
 * router that is no probe's hop) so that an attributed forgery shows:
 *   foreign  the quote's source address is another host's (and the
 *            transport checksum the one that host's packet would carry)
 *   frag     the quote is a later fragment (offset 8): its first 8 bytes
 *            are the packet's transport header, the rest what follows at
 *            that offset
 *   version  the quote's IP version field is wrong (IPv4 6, IPv6 4)
 *   exthdr   (IPv6) nine destination options headers before the transport
 *            header: a longer chain than a receiver walks
 *   te1      the exact quote, in a fragment reassembly time exceeded
 *            (code 1), which is no hop
 *   nonce    the exact quote but for what only the prober knows: the
 *            first 6 payload bytes (UDP, ICMP echo: where sonde's nonce
 *            is) or the high half of the TCP sequence number altered, the
 *            transport checksum made to fit; run beyond a NAT (-d the
 *            address it gives the prober), it is another process's packet
 *            as that NAT rewrote it
 * Each of these reaches a socket that Linux finds by the quote's addresses
 * and ports (the kernel checks neither version nor fragment offset), and
 * a raw ICMP socket. Runs SECONDS (at most PPS answers per second), then
 * prints "sent N" and exits 0.
 *
 * Exit: 0 done, 2 usage, 3 socket or send error (named on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint32_t rng = 12345;

static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static uint16_t cksum(const uint8_t *p, size_t n, uint32_t sum) {
  size_t i;
  for (i = 0; i + 1 < n; i += 2)
    sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1)
    sum += (uint32_t)(p[n - 1] << 8);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* A quoted IPv4 header + 8 bytes of UDP towards dst. */
static size_t quote4(uint8_t *q, const struct in_addr *src,
                     const struct in_addr *dst, uint16_t sport,
                     uint16_t dport) {
  memset(q, 0, 28);
  q[0] = 0x45;
  put16(q + 2, 60);
  q[8] = 1;
  q[9] = IPPROTO_UDP;
  memcpy(q + 12, src, 4);
  memcpy(q + 16, dst, 4);
  put16(q + 10, cksum(q, 20, 0));
  put16(q + 20, sport);
  put16(q + 22, dport);
  put16(q + 24, 40);
  return 28;
}

/* A quoted IPv6 header + 8 bytes of UDP towards dst. */
static size_t quote6(uint8_t *q, const struct in6_addr *src,
                     const struct in6_addr *dst, uint16_t sport,
                     uint16_t dport) {
  memset(q, 0, 48);
  q[0] = 0x60;
  put16(q + 4, 40);
  q[6] = IPPROTO_UDP;
  q[7] = 1;
  memcpy(q + 8, src, 16);
  memcpy(q + 24, dst, 16);
  put16(q + 40, sport);
  put16(q + 42, dport);
  put16(q + 44, 40);
  return 48;
}

/* One forged ICMP message (from its type on) of variant v; returns its
 * length. For IPv6 the kernel computes the checksum. */
static size_t forge(int v6, int v, uint8_t *b, const void *victim,
                    const void *target) {
  struct in_addr other4;
  struct in6_addr other6;
  size_t n, i;
  uint8_t *q = b + 8;

  memset(b, 0, 512);
  b[0] = v6 ? 3 : 11; /* time exceeded */
  inet_pton(AF_INET, "198.18.250.250", &other4);
  inet_pton(AF_INET6, "2001:db8:fa::fa", &other6);
  switch (v % 7) {
  case 0: /* garbage */
    n = 8 + rnd() % 200;
    for (i = 8; i < n; i++)
      b[i] = (uint8_t)rnd();
    break;
  case 1: /* a quote shorter than an IP header */
    n = 8 + rnd() % (v6 ? 40 : 20);
    for (i = 8; i < n; i++)
      b[i] = (uint8_t)rnd();
    if (n > 8)
      b[8] = v6 ? 0x60 : 0x45;
    break;
  case 2: /* a well-formed quote of another destination */
    n = 8 + (v6 ? quote6(q, victim, &other6, 33434, 33434 + rnd() % 64)
                : quote4(q, victim, &other4, 33434, 33434 + rnd() % 64));
    break;
  case 3: /* the target, but ports the prober never uses */
    n = 8 + (v6 ? quote6(q, victim, target, 7, (uint16_t)(1 + rnd() % 1000))
                : quote4(q, victim, target, 7, (uint16_t)(1 + rnd() % 1000)));
    break;
  case 4: /* RFC 4884 length past the end; extension object length 0 */
    n = 8 + (v6 ? quote6(q, victim, target, 9, 9) : quote4(q, victim, target, 9, 9));
    b[v6 ? 4 : 5] = 255;
    memset(b + n, 0, 140 - (n - 8));
    n = 8 + 128;
    b[n] = 0x20; /* extension version 2 */
    b[n + 4] = 0;
    b[n + 5] = 0; /* object length 0 */
    b[n + 6] = 1;
    b[n + 7] = 1;
    n += 8;
    break;
  case 5: /* padded form, object longer than the packet */
    n = 8 + (v6 ? quote6(q, victim, target, 9, 9) : quote4(q, victim, target, 9, 9));
    n = 8 + 128;
    b[n] = 0x20;
    b[n + 4] = 0xff;
    b[n + 5] = 0xf0;
    b[n + 6] = 1;
    b[n + 7] = 1;
    n += 12;
    break;
  default: /* an echo reply nobody asked for */
    b[0] = v6 ? 129 : 0;
    put16(b + 4, (uint16_t)rnd());
    put16(b + 6, (uint16_t)rnd());
    n = 8 + 32;
    break;
  }
  if (!v6) {
    put16(b + 2, 0);
    put16(b + 2, cksum(b, n, 0));
    if (v % 3 == 0)
      b[2] ^= 0x5a; /* and now and then, a wrong checksum */
  }
  return n;
}

enum { M_FOREIGN = 1, M_FRAG, M_VERSION, M_EXTHDR, M_TE1, M_NONCE };

/*
 * Rewrite the transport checksum of the datagram q (IP header hl bytes,
 * n bytes in all, the whole datagram) for its addresses as they now are:
 * the packet as the host that the quote names would have sent it. UDP and
 * TCP over both families, and ICMPv6, sum a pseudo-header with the
 * addresses; ICMPv4 does not, so it is left as it is.
 */
static void resum(int v6, uint8_t *q, size_t hl, size_t n) {
  uint8_t proto = v6 ? q[6] : q[9];
  size_t at, l4 = n - hl, i;
  uint32_t sum = 0;
  const uint8_t *src = v6 ? q + 8 : q + 12;
  size_t alen = v6 ? 16 : 4;

  if (proto == IPPROTO_UDP)
    at = 6;
  else if (proto == IPPROTO_TCP)
    at = 16;
  else if (v6 && proto == IPPROTO_ICMPV6)
    at = 2;
  else
    return;
  if (l4 < at + 2 || (proto == IPPROTO_UDP && q[hl + 6] == 0 && q[hl + 7] == 0))
    return;
  for (i = 0; i < 2 * alen; i += 2) /* source and destination */
    sum += (uint32_t)(src[i] << 8 | src[i + 1]);
  sum += proto + (uint32_t)l4;
  q[hl + at] = q[hl + at + 1] = 0;
  put16(q + hl + at, cksum(q + hl, l4, sum));
}

static int mode_of(const char *m) {
  if (strcmp(m, "foreign") == 0) return M_FOREIGN;
  if (strcmp(m, "frag") == 0) return M_FRAG;
  if (strcmp(m, "version") == 0) return M_VERSION;
  if (strcmp(m, "exthdr") == 0) return M_EXTHDR;
  if (strcmp(m, "te1") == 0) return M_TE1;
  if (strcmp(m, "nonce") == 0) return M_NONCE;
  return 0;
}

/* M_NONCE: alter what names the prober's own packet in datagram q (IP
 * header hl bytes, n bytes kept): UDP and ICMP payload bytes 0-5, the high
 * half of a TCP sequence number. */
static void unnonce(int v6, uint8_t *q, size_t hl, size_t n) {
  uint8_t proto = v6 ? q[6] : q[9];
  size_t i, from = hl + 8, to = hl + 14;
  if (proto == IPPROTO_TCP) {
    from = hl + 4;
    to = hl + 6;
  }
  for (i = from; i < to && i < n; i++)
    q[i] ^= 0x5a;
}

/*
 * The ICMP error (from its type on) answering packet pkt (n bytes, an IP
 * datagram from VICTIM to TARGET) under mode; 0 if pkt is not one to
 * answer. The quote is at most 200 bytes of the altered packet.
 */
static size_t mirror(int v6, int mode, const uint8_t *pkt, size_t n,
                     uint8_t *b) {
  uint8_t *q = b + 8;
  size_t hl, qn, i;

  memset(b, 0, 8);
  b[0] = v6 ? 3 : 11;
  b[1] = mode == M_TE1 ? 1 : 0;
  if (n > 200)
    n = 200;
  if (!v6) {
    if (n < 20 || pkt[0] >> 4 != 4)
      return 0;
    hl = (size_t)(pkt[0] & 0x0f) * 4;
    if (hl < 20 || hl + 8 > n)
      return 0;
    memcpy(q, pkt, n);
    qn = n;
    switch (mode) {
    case M_FOREIGN:
      inet_pton(AF_INET, "198.18.250.250", q + 12);
      if ((size_t)(q[2] << 8 | q[3]) == n)
        resum(0, q, hl, n);
      break;
    case M_FRAG:
      /* offset 1 (8 bytes): the transport header's first 8 bytes, then
       * what the packet holds from 16 bytes past it */
      put16(q + 6, (uint16_t)((q[6] << 8 | q[7]) & 0xe000) | 1);
      for (i = hl + 8; i + 8 < n; i++)
        q[i] = pkt[i + 8];
      qn = n - 8;
      break;
    case M_VERSION:
      q[0] = (uint8_t)(0x60 | (q[0] & 0x0f));
      break;
    case M_NONCE:
      unnonce(0, q, hl, n);
      if ((size_t)(q[2] << 8 | q[3]) == n)
        resum(0, q, hl, n);
      break;
    default:
      break;
    }
    put16(q + 10, 0);
    put16(q + 10, cksum(q, hl, 0));
    put16(b + 2, cksum(b, 8 + qn, 0));
    return 8 + qn;
  }
  if (n < 48 || pkt[0] >> 4 != 6)
    return 0;
  switch (mode) {
  case M_FRAG:
    /* a fragment header (offset 1) after the fixed header */
    memcpy(q, pkt, 40);
    q[6] = 44;
    q[40] = pkt[6];
    q[41] = 0;
    put16(q + 42, 1 << 3);
    q[44] = 0x5e; q[45] = 0x11; q[46] = 0x0d; q[47] = 0xe5;
    memcpy(q + 48, pkt + 40, 8);
    qn = 56;
    for (i = 48; i + 8 < n; i++)
      q[qn++] = pkt[i + 8];
    break;
  case M_EXTHDR: {
    int k;
    memcpy(q, pkt, 40);
    q[6] = 60;
    qn = 40;
    for (k = 0; k < 9; k++) {
      q[qn] = k == 8 ? pkt[6] : 60;
      q[qn + 1] = 0;
      q[qn + 2] = 1; /* PadN, 4 bytes */
      q[qn + 3] = 4;
      memset(q + qn + 4, 0, 4);
      qn += 8;
    }
    memcpy(q + qn, pkt + 40, n - 40);
    qn += n - 40;
    put16(q + 4, (uint16_t)((pkt[4] << 8 | pkt[5]) + 72));
    break;
  }
  default:
    memcpy(q, pkt, n);
    qn = n;
    if (mode == M_FOREIGN) {
      inet_pton(AF_INET6, "2001:db8:fa::fa", q + 8);
      if ((size_t)(q[4] << 8 | q[5]) + 40 == n)
        resum(1, q, 40, n);
    }
    else if (mode == M_VERSION)
      q[0] = (uint8_t)(0x40 | (q[0] & 0x0f));
    else if (mode == M_NONCE) {
      unnonce(1, q, 40, n);
      if ((size_t)(q[4] << 8 | q[5]) + 40 == n)
        resum(1, q, 40, n);
    }
    break;
  }
  return 8 + qn;
}

/* Mirror mode: answer VICTIM's packets to TARGET until seconds pass. */
static int run_mirror(int v6, int mode, const uint8_t *vic, const uint8_t *tgt,
                      const char *from, double pps, double seconds) {
  int ps, fd;
  uint8_t pkt[2048], buf[512];
  unsigned long sent = 0;
  struct timespec start, now;
  union {
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
  } to, me;
  size_t alen = v6 ? 16 : 4;

  ps = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC,
              htons(v6 ? ETH_P_IPV6 : ETH_P_IP));
  if (ps < 0) {
    fprintf(stderr, "forge: socket(AF_PACKET): %s\n", strerror(errno));
    return 3;
  }
  fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC,
              v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  if (fd < 0) {
    fprintf(stderr, "forge: socket: %s\n", strerror(errno));
    close(ps);
    return 3;
  }
  memset(&to, 0, sizeof(to));
  memset(&me, 0, sizeof(me));
  if (v6) {
    to.s6.sin6_family = me.s6.sin6_family = AF_INET6;
    memcpy(&to.s6.sin6_addr, vic, 16);
  } else {
    to.s4.sin_family = me.s4.sin_family = AF_INET;
    memcpy(&to.s4.sin_addr, vic, 4);
  }
  if (from && (inet_pton(v6 ? AF_INET6 : AF_INET, from,
                         v6 ? (void *)&me.s6.sin6_addr
                            : (void *)&me.s4.sin_addr) != 1 ||
               bind(fd, (struct sockaddr *)&me,
                    v6 ? sizeof(me.s6) : sizeof(me.s4)) < 0)) {
    fprintf(stderr, "forge: bind %s: %s\n", from, strerror(errno));
    close(fd);
    close(ps);
    return 3;
  }
  printf("ready\n");
  fflush(stdout);
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    struct pollfd pf = {ps, POLLIN, 0};
    struct sockaddr_ll ll;
    socklen_t ll_len = sizeof(ll);
    ssize_t n;
    size_t m;
    double t;

    clock_gettime(CLOCK_MONOTONIC, &now);
    t = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    if (t >= seconds)
      break;
    if (poll(&pf, 1, 50) <= 0)
      continue;
    n = recvfrom(ps, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&ll,
                 &ll_len);
    if (n <= 0 || ll.sll_pkttype == PACKET_OUTGOING)
      continue;
    /* from VICTIM to TARGET, and not ICMP errors (only probes) */
    if (v6 ? (n < 40 || memcmp(pkt + 8, vic, alen) || memcmp(pkt + 24, tgt, alen))
           : (n < 20 || memcmp(pkt + 12, vic, alen) || memcmp(pkt + 16, tgt, alen)))
      continue;
    if (sent >= (unsigned long)(t * pps) + 1)
      continue;
    m = mirror(v6, mode, pkt, (size_t)n, buf);
    if (m == 0)
      continue;
    if (sendto(fd, buf, m, 0, (struct sockaddr *)&to,
               v6 ? sizeof(to.s6) : sizeof(to.s4)) < 0 &&
        errno != ENOBUFS && errno != EAGAIN) {
      fprintf(stderr, "forge: sendto: %s\n", strerror(errno));
      close(fd);
      close(ps);
      return 3;
    }
    sent++;
  }
  printf("sent %lu\n", sent);
  fflush(stdout);
  close(fd);
  close(ps);
  return 0;
}

int main(int argc, char **argv) {
  int v6 = 0, opt, fd, v = 0;
  double pps = 5000, seconds = 5;
  const char *victim = NULL, *target = NULL, *from = NULL;
  int mode = 0;
  union {
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
  } to;
  uint8_t tgt[16], vic[16], buf[512];
  unsigned long sent = 0;
  struct timespec start, now;

  while ((opt = getopt(argc, argv, "6d:t:r:s:S:M:F:")) != -1) {
    switch (opt) {
    case '6': v6 = 1; break;
    case 'd': victim = optarg; break;
    case 't': target = optarg; break;
    case 'r': pps = atof(optarg); break;
    case 's': seconds = atof(optarg); break;
    case 'S': rng = (uint32_t)strtoul(optarg, NULL, 10) | 1; break;
    case 'M':
      mode = mode_of(optarg);
      if (mode == 0) {
        fprintf(stderr, "forge: -M foreign|frag|version|exthdr|te1|nonce\n");
        return 2;
      }
      break;
    case 'F': from = optarg; break;
    default:
      fprintf(stderr, "usage: forge [-6] -d VICTIM -t TARGET [-r PPS] [-s SECONDS] [-S SEED]\n"
                      "       forge [-6] -d VICTIM -t TARGET -M MODE [-F FROM] [-r PPS] [-s SECONDS]\n");
      return 2;
    }
  }
  if (!victim || !target || pps <= 0 || pps > 100000 || seconds <= 0 ||
      seconds > 60 ||
      inet_pton(v6 ? AF_INET6 : AF_INET, victim, vic) != 1 ||
      inet_pton(v6 ? AF_INET6 : AF_INET, target, tgt) != 1) {
    fprintf(stderr, "forge: -d and -t need addresses of the family; -r 1..100000, -s up to 60\n");
    return 2;
  }
  if (mode == M_EXTHDR && !v6) {
    fprintf(stderr, "forge: -M exthdr is IPv6 only (-6)\n");
    return 2;
  }
  if (mode)
    return run_mirror(v6, mode, vic, tgt, from, pps, seconds);
  fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC,
              v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  if (fd < 0) {
    fprintf(stderr, "forge: socket: %s\n", strerror(errno));
    return 3;
  }
  memset(&to, 0, sizeof(to));
  if (v6) {
    to.s6.sin6_family = AF_INET6;
    memcpy(&to.s6.sin6_addr, vic, 16);
  } else {
    to.s4.sin_family = AF_INET;
    memcpy(&to.s4.sin_addr, vic, 4);
  }
  printf("ready\n");
  fflush(stdout);
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    double t;
    size_t n;
    clock_gettime(CLOCK_MONOTONIC, &now);
    t = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    if (t >= seconds)
      break;
    if (sent >= (unsigned long)(t * pps)) {
      struct timespec d = {0, 200000};
      nanosleep(&d, NULL);
      continue;
    }
    n = forge(v6, v++, buf, vic, tgt);
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&to,
               v6 ? sizeof(to.s6) : sizeof(to.s4)) < 0 &&
        errno != ENOBUFS && errno != EAGAIN) {
      fprintf(stderr, "forge: sendto: %s\n", strerror(errno));
      close(fd);
      return 3;
    }
    sent++;
  }
  printf("sent %lu\n", sent);
  close(fd);
  return 0;
}

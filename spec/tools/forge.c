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
 * Exit: 0 done, 2 usage, 3 socket or send error (named on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
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

int main(int argc, char **argv) {
  int v6 = 0, opt, fd, v = 0;
  double pps = 5000, seconds = 5;
  const char *victim = NULL, *target = NULL;
  union {
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
  } to;
  uint8_t tgt[16], vic[16], buf[512];
  unsigned long sent = 0;
  struct timespec start, now;

  while ((opt = getopt(argc, argv, "6d:t:r:s:S:")) != -1) {
    switch (opt) {
    case '6': v6 = 1; break;
    case 'd': victim = optarg; break;
    case 't': target = optarg; break;
    case 'r': pps = atof(optarg); break;
    case 's': seconds = atof(optarg); break;
    case 'S': rng = (uint32_t)strtoul(optarg, NULL, 10) | 1; break;
    default:
      fprintf(stderr, "usage: forge [-6] -d VICTIM -t TARGET [-r PPS] [-s SECONDS] [-S SEED]\n");
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

/*
 * main.c - sonde-netsim: options, the loop, signals.
 *
 *   sonde-netsim --scenario FILE [--dev NAME] [--seed N] [--max-time S]
 *                [--check] [--coarse] [-v] [--validate]
 *
 * Exit status: 0 stopped by SIGINT/SIGTERM or --max-time (or --validate of
 * a valid file), 2 usage error or invalid scenario, 3 runtime error (no
 * TUN, netlink refused, not inside a named network namespace).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netsim.h"

#define EXIT_USAGE 2
#define EXIT_RUNTIME 3

static const char usage[] =
"Usage: sonde-netsim --scenario FILE [options]\n"
"\n"
"A network simulator for sonde's lab. Creates a TUN device in the current\n"
"network namespace (one made with `ip netns add`), routes the scenario's\n"
"prefix to it, and answers every probe that enters as the scenario's path\n"
"would: ICMP time exceeded from the hop at the probe's TTL (quoting the\n"
"probe, with an RFC 4884/4950 MPLS extension where the hop has labels),\n"
"and at the target an echo reply, a port unreachable, or a TCP SYN-ACK or\n"
"RST. Prints \"ready ...\" on stdout once the device is up; runs until\n"
"SIGINT/SIGTERM (or --max-time), then removes the device.\n"
"\n"
"Options:\n"
"  -s, --scenario FILE  the scenario (JSON, below); required\n"
"  -d, --dev NAME       device name, at most 15 characters; %d takes the\n"
"                       first free number (default: sondesim%d)\n"
"      --seed N         seed of loss, jitter, duplicate, reorder draws\n"
"                       (default: 1; the same probes in the same order get\n"
"                       the same answers)\n"
"      --max-time S     stop after S seconds (default 0: until a signal)\n"
"      --check          parse every reply back with sonde's parser and\n"
"                       report any that does not say what was meant\n"
"      --coarse         millisecond timer only (no sub-ms wait; compare)\n"
"      --validate       check the scenario, print a summary, exit\n"
"  -v, --verbose        one line per probe on stderr\n"
"  -h, --help           this help\n"
"\n"
"Scenario (every field but prefix, target, hops is optional):\n"
"  {\"prefix\": \"198.18.200.0/24\",   routed to the device; inside\n"
"                                   198.18.0.0/15 or 2001:db8::/32\n"
"   \"target\": \"198.18.200.50\",     the destination, inside the prefix\n"
"   \"source\": \"198.18.200.254\",    the device's address (default: the\n"
"                                   prefix's highest address but one)\n"
"   \"icmp\": \"reply\"|\"silent\",      echo requests at the target\n"
"   \"udp\": \"unreachable\"|\"silent\", UDP at the target (port unreachable)\n"
"   \"tcp\": \"open\"|\"closed\"|\"silent\", SYN at the target: SYN-ACK or RST\n"
"                                   (default closed)\n"
"   \"hops\": [{\"ttl\": 1, \"addr\": \"198.18.200.1\", \"delay_ms\": 7}, ...]}\n"
"  A hop: ttl (1-255; default the previous + 1, in increasing order), addr\n"
"  (required unless silent), delay_ms (reply time after the probe arrived,\n"
"  0-60000), jitter_ms (uniform +-), loss, duplicate, reorder\n"
"  (probabilities 0-1 or true/false), reorder_ms (extra delay of a\n"
"  reordered reply, default 10), silent, mpls ([{label, exp, s, ttl}];\n"
"  exp 0, ttl 1 and s set on the last entry unless given),\n"
"  rate_limit (ICMP per second) and rate_burst (default 1), reply_ttl\n"
"  (default 65 - ttl), quote_bytes (bytes of the probe quoted, IP header\n"
"  included), bad_checksum, padded_extension (non-compliant 128-byte\n"
"  RFC 4884 form), length_in_bytes (the RFC 4884 length written in bytes,\n"
"  128, instead of words, the quote padded to 128 bytes), interface (an\n"
"  RFC 5837 interface information object: {role: incoming|\n"
"  incoming_sub_ip|outgoing|next_hop, ifindex, addr, name, mtu}, each\n"
"  optional), comment.\n"
"  A TTL with no hop is silent. The hop whose addr is the target is the\n"
"  destination and must come last; without one, the target answers at the\n"
"  TTL after the last hop, with no delay. It answers every higher TTL.\n"
"  A probe to a hop's own address goes as far as that hop.\n";

static netsim_t ns_;
static int stop_signal;
static int failed; /* the device went away or failed: exit EXIT_RUNTIME */

static void close_all(netsim_t *ns);

static void on_readable(uv_poll_t *h, int status, int events) {
  netsim_t *ns = h->data;
  int i;

  if (status < 0) {
    fprintf(stderr, "sonde-netsim: %s failed or was deleted (poll: %s)\n",
            ns->dev, uv_strerror(status));
    failed = 1;
    close_all(ns);
    return;
  }
  for (i = 0; i < NETSIM_READ_BURST; i++) {
    ssize_t n = read(ns->tun_fd, ns->rbuf, sizeof(ns->rbuf));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        /* EBADFD: the device was deleted under us (ip link del). Polling
         * on would spin: stop. */
        fprintf(stderr, "sonde-netsim: read %s: %s\n", ns->dev,
                strerror(errno));
        failed = 1;
        close_all(ns);
        return;
      }
      break;
    }
    netsim_handle(ns, ns->rbuf, (size_t)n, uv_hrtime());
  }
  netsim_sched_kick(ns);
}

static void close_all(netsim_t *ns) {
  uv_handle_t *hs[] = {(uv_handle_t *)&ns->poll, (uv_handle_t *)&ns->timer,
                       (uv_handle_t *)&ns->idle, (uv_handle_t *)&ns->sigint,
                       (uv_handle_t *)&ns->sigterm,
                       (uv_handle_t *)&ns->lifetime};
  size_t i;
  for (i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
    if (hs[i]->type != UV_UNKNOWN_HANDLE && !uv_is_closing(hs[i]))
      uv_close(hs[i], NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  stop_signal = signum;
  close_all(s->data);
}

static void on_lifetime(uv_timer_t *t) { close_all(t->data); }

static int parse_num(const char *opt, const char *s, double min, double max,
                     double *out) {
  char *end;
  double d;
  errno = 0;
  d = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno || !(d >= min && d <= max)) {
    fprintf(stderr, "sonde-netsim: %s: invalid value '%s' (expected a number "
            "from %g to %g)\n", opt, s, min, max);
    return -1;
  }
  *out = d;
  return 0;
}

static void summary(const netsim_scenario_t *sc) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], c[INET6_ADDRSTRLEN];
  int i;
  printf("scenario: IPv%d prefix %s/%d target %s source %s\n",
         sc->af == AF_INET ? 4 : 6, netsim_ntop(sc->af, sc->prefix, a,
         sizeof(a)), sc->plen, netsim_ntop(sc->af, sc->target, b, sizeof(b)),
         netsim_ntop(sc->af, sc->source, c, sizeof(c)));
  for (i = 0; i < sc->n_hops; i++) {
    const netsim_hop_t *h = &sc->hops[i];
    printf("  ttl %3d  %s%s  delay %.3f ms%s%s\n", h->ttl,
           h->has_addr ? netsim_ntop(sc->af, h->addr, a, sizeof(a)) : "-",
           i == sc->dest ? " (target)" : "", h->delay_ms,
           h->silent ? "  silent" : "", h->n_mpls ? "  mpls" : "");
  }
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"scenario", required_argument, NULL, 's'},
      {"dev", required_argument, NULL, 'd'},
      {"seed", required_argument, NULL, 'S'},
      {"max-time", required_argument, NULL, 'T'},
      {"check", no_argument, NULL, 'c'},
      {"coarse", no_argument, NULL, 'C'},
      {"validate", no_argument, NULL, 'V'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static netsim_scenario_t sc;
  netsim_t *ns = &ns_;
  const char *file = NULL, *dev = "sondesim%d";
  unsigned long long seed = 1;
  double max_time = 0;
  int c, validate = 0, r, rc = 0;
  char err[512];
  char pfx[INET6_ADDRSTRLEN], tgt[INET6_ADDRSTRLEN], src[INET6_ADDRSTRLEN];
  uv_loop_t loop;

  ns->tun_fd = -1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":s:d:vh", opts, NULL)) != -1) {
    switch (c) {
    case 's': file = optarg; break;
    case 'd': dev = optarg; break;
    case 'S': {
      char *end;
      errno = 0;
      seed = strtoull(optarg, &end, 10);
      if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno) {
        fprintf(stderr, "sonde-netsim: --seed: invalid value '%s' (expected "
                "an integer from 0 to %llu)\n", optarg, ULLONG_MAX);
        return EXIT_USAGE;
      }
      break;
    }
    case 'T':
      if (parse_num("--max-time", optarg, 0, 86400 * 7, &max_time) < 0)
        return EXIT_USAGE;
      break;
    case 'c': ns->check = 1; break;
    case 'C': ns->coarse = 1; break;
    case 'V': validate = 1; break;
    case 'v': ns->verbose = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    case ':':
      fprintf(stderr, "sonde-netsim: %s: missing value\n", argv[optind - 1]);
      return EXIT_USAGE;
    default:
      fprintf(stderr, "sonde-netsim: unknown option '%s' (see --help)\n",
              argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "sonde-netsim: unexpected argument '%s'\n", argv[optind]);
    return EXIT_USAGE;
  }
  if (file == NULL) {
    fprintf(stderr, "sonde-netsim: --scenario FILE is required (see --help)\n");
    return EXIT_USAGE;
  }
  if (netsim_scenario_load(file, &sc, err, sizeof(err)) < 0) {
    fprintf(stderr, "sonde-netsim: %s: %s\n", file, err);
    return EXIT_USAGE;
  }
  if (validate) {
    summary(&sc);
    return 0;
  }
  if (!netsim_in_named_netns()) {
    fprintf(stderr, "sonde-netsim: refusing to run outside a network "
            "namespace made with `ip netns add` (it answers for a whole "
            "prefix, which only a lab namespace may route to it): run it as "
            "`ip netns exec NAME sonde-netsim ...`\n");
    return EXIT_RUNTIME;
  }
  signal(SIGPIPE, SIG_IGN);
  ns->sc = &sc;
  ns->rng = (uint64_t)seed;
  r = netsim_tun_open(&sc, dev, ns->dev, err, sizeof(err));
  if (r < 0) {
    fprintf(stderr, "sonde-netsim: %s\n", err);
    return EXIT_RUNTIME;
  }
  ns->tun_fd = r;
  r = uv_loop_init(&loop);
  if (r < 0) {
    fprintf(stderr, "sonde-netsim: uv_loop_init: %s\n", uv_strerror(r));
    close(ns->tun_fd);
    return EXIT_RUNTIME;
  }
  ns->loop = &loop;
  if ((r = netsim_sched_init(ns)) < 0 ||
      (r = uv_poll_init(&loop, &ns->poll, ns->tun_fd)) < 0 ||
      (r = uv_signal_init(&loop, &ns->sigint)) < 0 ||
      (r = uv_signal_init(&loop, &ns->sigterm)) < 0 ||
      (r = uv_timer_init(&loop, &ns->lifetime)) < 0) {
    fprintf(stderr, "sonde-netsim: libuv: %s\n", uv_strerror(r));
    rc = EXIT_RUNTIME;
    close_all(ns);
  } else {
    ns->poll.data = ns->sigint.data = ns->sigterm.data = ns;
    ns->lifetime.data = ns;
    if ((r = uv_poll_start(&ns->poll, UV_READABLE, on_readable)) < 0 ||
        (r = uv_signal_start(&ns->sigint, on_signal, SIGINT)) < 0 ||
        (r = uv_signal_start(&ns->sigterm, on_signal, SIGTERM)) < 0 ||
        (max_time > 0 &&
         (r = uv_timer_start(&ns->lifetime, on_lifetime,
                             (uint64_t)(max_time * 1000), 0)) < 0)) {
      fprintf(stderr, "sonde-netsim: libuv: %s\n", uv_strerror(r));
      rc = EXIT_RUNTIME;
      close_all(ns);
    } else {
      printf("ready dev=%s prefix=%s/%d target=%s source=%s\n", ns->dev,
             netsim_ntop(sc.af, sc.prefix, pfx, sizeof(pfx)), sc.plen,
             netsim_ntop(sc.af, sc.target, tgt, sizeof(tgt)),
             netsim_ntop(sc.af, sc.source, src, sizeof(src)));
      fflush(stdout);
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (failed)
    rc = EXIT_RUNTIME;
  /* Every handle is closed (close_all ran): the loop must be empty. */
  r = uv_loop_close(&loop);
  if (r != 0) {
    fprintf(stderr, "sonde-netsim: uv_loop_close: %s\n", uv_strerror(r));
    rc = EXIT_RUNTIME;
  }
  netsim_sched_free(ns);
  close(ns->tun_fd); /* removes the device, its address and routes */
  ns->tun_fd = -1;
  fprintf(stderr,
          "sonde-netsim: stopped (%s): probes %llu, replies %llu, lost "
          "%llu, silent %llu, rate-limited %llu, ignored %llu, overflow "
          "%llu, write errors %llu, build errors %llu, checked %llu, check "
          "failures %llu; replies left %.3f ms late on average, %.3f ms at "
          "most\n",
          stop_signal == SIGINT ? "SIGINT"
          : stop_signal == SIGTERM ? "SIGTERM"
          : rc ? "error" : "max-time",
          (unsigned long long)ns->stats.probes,
          (unsigned long long)ns->stats.replies,
          (unsigned long long)ns->stats.lost,
          (unsigned long long)ns->stats.silent,
          (unsigned long long)ns->stats.rate_limited,
          (unsigned long long)ns->stats.ignored,
          (unsigned long long)ns->stats.overflow,
          (unsigned long long)ns->stats.write_errors,
          (unsigned long long)ns->stats.build_errors,
          (unsigned long long)ns->stats.checked,
          (unsigned long long)ns->stats.check_failed,
          ns->stats.replies
              ? (double)ns->stats.late_sum_ns / 1e6 / (double)ns->stats.replies
              : 0.0,
          (double)ns->stats.late_max_ns / 1e6);
  return rc;
}

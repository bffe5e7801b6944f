/*
 * embed.c - sonde's engine inside a C program, on the program's own libuv
 * loop, without Lua.
 *
 * It sends three probes to TARGET at once and prints each outcome as it
 * comes:
 *   - an ICMP echo request (TTL 64): the target's echo reply;
 *   - a UDP datagram to port 33434 with TTL (default 1): the time exceeded
 *     of the router TTL hops away, or, when TTL reaches the target, its
 *     port unreachable;
 *   - a TCP connect to PORT (default 9, discard: usually closed): the
 *     target's RST (tcp_rst) or SYN-ACK (tcp_synack).
 * Then it closes the engine and checks that the loop has nothing left
 * (uv_loop_close() == 0), as every libuv program should end.
 *
 * Build it against an installed sonde (make install):
 *   cc -o embed examples/embed.c $(pkg-config --cflags --libs sonde)
 * (with PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a PREFIX pkg-config does
 * not search, and LD_LIBRARY_PATH=$PREFIX/lib to run it, or link with
 * -Wl,-rpath,$PREFIX/lib).
 *
 * Run it as root, or with CAP_NET_RAW, for raw sockets; otherwise the
 * engine runs unprivileged (SONDE_PRIV_AUTO): ICMP through an ICMP datagram
 * socket (the user's group must be in net.ipv4.ping_group_range) and the
 * errors of UDP and TCP probes from their sockets' error queues.
 *
 * usage: embed TARGET [TTL [PORT]]      TARGET: a numeric IPv4/IPv6 address
 * Output, one line per probe, in the order they end:
 *   udp  ttl=1  status=reply kind=time_exceeded addr=198.18.0.2 rtt=0.071 ms error=-
 *   icmp ttl=64 status=reply kind=echo_reply addr=198.18.1.2 rtt=0.094 ms error=-
 *   tcp  ttl=64 status=reply kind=tcp_rst addr=198.18.1.2 rtt=0.110 ms error=ECONNREFUSED
 *   engine: 3 sent, 3 replies, 0 timeouts, 0 failed; loop closed
 * Exit status: 0 when every probe ended with an outcome and the loop
 * closed cleanly; 2 on a usage error; 3 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sonde.h>
#include <uv.h>

/* What the program keeps about its probes. The engine calls back with a
 * `void *data` of our choosing: here a pointer to this, shared by all. */
typedef struct {
  int left;        /* probes started whose callback has not run yet */
  int outcomes;    /* callbacks that ran */
  int closed;      /* the engine's close callback ran */
  sonde_stats_t stats;
} app_t;

static const char *proto_name(uint32_t seq) {
  /* We numbered the probes ourselves (spec.seq); the result gives it back. */
  static const char *names[] = {"icmp", "udp", "tcp"};
  return seq < 3 ? names[seq] : "?";
}

/* Runs once the engine has released every socket and handle. The engine
 * is freed right after: do not touch it again. */
static void on_closed(sonde_engine_t *eng, void *data) {
  app_t *app = data;
  (void)eng;
  app->closed = 1;
}

/* Runs exactly once per probe that sonde_probe_start() accepted. The result
 * is valid only during the call: copy what you keep. */
static void on_probe(sonde_engine_t *eng, uint64_t id, const sonde_result_t *res,
                     void *data) {
  app_t *app = data;
  char addr[INET6_ADDRSTRLEN] = "-";
  char code[32] = "";
  char rtt[32] = "-";

  (void)id;
  if (res->addr.ss_family != 0)
    sonde_addr_format(&res->addr, addr, sizeof(addr));
  if (res->rtt >= 0)
    snprintf(rtt, sizeof(rtt), "%.3f ms", res->rtt * 1000);
  if (res->status == SONDE_STATUS_REPLY &&
      res->kind == SONDE_KIND_DEST_UNREACHABLE)
    snprintf(code, sizeof(code), " code=%s", sonde_unreach_name(res->unreach));
  printf("%-4s ttl=%-2d status=%s kind=%s%s addr=%s rtt=%s error=%s\n",
         proto_name(res->seq), res->ttl, sonde_status_name(res->status),
         res->status == SONDE_STATUS_REPLY ? sonde_kind_name(res->kind) : "-",
         code, addr, rtt, res->error ? sonde_err_name(res->error) : "-");
  fflush(stdout);
  app->outcomes++;
  /* The last outcome: keep the counters, then close the engine. Closing
   * from a callback is allowed; the engine finishes on the next loop
   * iterations and then calls on_closed. */
  if (--app->left == 0) {
    sonde_engine_stats(eng, &app->stats);
    sonde_engine_close(eng, on_closed, app);
  }
}

/* Start one probe; on refusal (a bad spec) say why. The engine copies the
 * spec: it may live on the stack. */
static int start(sonde_engine_t *eng, app_t *app, const char *target,
                 sonde_proto_t proto, int ttl, uint16_t dport, uint32_t seq) {
  sonde_probe_spec_t spec;
  int64_t id;
  int r;

  memset(&spec, 0, sizeof(spec)); /* zero = every default */
  r = sonde_addr_parse(target, 0, &spec.dst);
  if (r < 0)
    return r;
  spec.proto = proto;
  spec.ttl = ttl;
  spec.wait = 2.0;   /* seconds; then the probe ends as a timeout */
  spec.dport = dport;
  spec.seq = seq;    /* ours: comes back in the result */
  id = sonde_probe_start(eng, &spec, on_probe, app);
  if (id < 0) {
    fprintf(stderr, "embed: %s probe not started: %s: %s\n", proto_name(seq),
            sonde_err_name((int)id), sonde_strerror((int)id));
    return (int)id;
  }
  app->left++;
  return 0;
}

int main(int argc, char **argv) {
  uv_loop_t loop;             /* the program's own loop */
  sonde_engine_opts_t opts;
  sonde_engine_t *eng = NULL;
  struct sockaddr_storage check;
  app_t app;
  int ttl = 1, port = 9, r, status = 0;

  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: embed TARGET [TTL [PORT]]\n");
    return 2;
  }
  if (argc > 2)
    ttl = atoi(argv[2]);
  if (argc > 3)
    port = atoi(argv[3]);
  if (sonde_addr_parse(argv[1], 0, &check) < 0 || ttl < 1 || ttl > 255 ||
      port < 1 || port > 65535) {
    fprintf(stderr, "embed: TARGET must be a numeric address, TTL 1..255, "
                    "PORT 1..65535\n");
    return 2;
  }

  memset(&app, 0, sizeof(app));
  r = uv_loop_init(&loop);
  if (r < 0) {
    fprintf(stderr, "embed: uv_loop_init: %s\n", uv_strerror(r));
    return 3;
  }

  /* Zero options are the defaults: no rate limit, a window of 256 probes in
   * flight, 5 s per probe, raw sockets if allowed (SONDE_PRIV_AUTO). */
  memset(&opts, 0, sizeof(opts));
  opts.window = 16;
  r = sonde_engine_new(&loop, &opts, &eng);
  if (r < 0) {
    fprintf(stderr, "embed: sonde_engine_new: %s: %s\n", sonde_err_name(r),
            sonde_strerror(r));
    uv_loop_close(&loop);
    return 3;
  }

  /* The probes do not go out here: they are queued and sent from the loop,
   * as the rate and the window allow. */
  if (start(eng, &app, argv[1], SONDE_PROTO_ICMP, 64, 0, 0) < 0 ||
      start(eng, &app, argv[1], SONDE_PROTO_UDP, ttl, 33434, 1) < 0 ||
      start(eng, &app, argv[1], SONDE_PROTO_TCP, 64, (uint16_t)port, 2) < 0)
    status = 3;
  if (app.left == 0) /* nothing started: no callback will close the engine */
    sonde_engine_close(eng, on_closed, &app);

  /* Runs until nothing is left: every probe ended, the engine closed. */
  uv_run(&loop, UV_RUN_DEFAULT);

  if (!app.closed) {
    fprintf(stderr, "embed: the loop ended before the engine closed\n");
    return 3;
  }
  printf("engine: %llu sent, %llu replies, %llu timeouts, %llu failed; ",
         (unsigned long long)app.stats.sent, (unsigned long long)app.stats.replies,
         (unsigned long long)app.stats.timeouts,
         (unsigned long long)app.stats.failed);
  /* UV_EBUSY here would mean a handle was left open: a leak. */
  r = uv_loop_close(&loop);
  if (r != 0) {
    printf("loop NOT closed: %s\n", uv_strerror(r));
    return 3;
  }
  printf("loop closed\n");
  if (app.outcomes != 3)
    status = 3;
  return status;
}

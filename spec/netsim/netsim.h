/*
 * netsim.h - sonde-netsim, a TUN network simulator for sonde's lab.
 *
 * The lab's kernel has no netem (nor another delaying qdisc), so delays,
 * jitter, loss, MPLS label stacks and misbehaving routers come from this
 * program: it owns a TUN device whose prefix is routed to it, reads every
 * probe that enters, and answers per a scenario file, as the routers of a
 * path and its destination would. Replies are built by replies.c over the
 * engine's packet code (engine/packet.h).
 *
 *   scenario.c  loading and validating the scenario (JSON, jansson)
 *   sim.c       what a probe gets: which hop, which reply, when
 *   sched.c     delayed replies: a min-heap driven by one uv_timer
 *   tun.c       the TUN device, its address and route (rtnetlink)
 *   main.c      options, the loop, signals
 */
#ifndef NETSIM_H
#define NETSIM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sonde.h"
#include "replies.h"

#define NETSIM_MAX_HOPS 255      /* TTLs 1..255 */
#define NETSIM_MAX_MPLS 16       /* label stack entries per hop */
#define NETSIM_MAX_DELAY_MS 60000.0
#define NETSIM_MAX_PENDING 8192  /* replies waiting for their time */
#define NETSIM_MAX_FILE (1 << 20) /* scenario file size */
#define NETSIM_PKT_MAX 65536     /* read buffer: one IP datagram */
#define NETSIM_READ_BURST 64     /* packets read per poll callback */

/* What the destination does with each kind of probe. */
enum { NETSIM_ANSWER = 0, NETSIM_SILENT, NETSIM_OPEN };

/* One router (or the destination) of the path, and its misbehaviours. */
typedef struct {
  int ttl;              /* the probe TTL at which it answers, 1..255 */
  int silent;           /* never answers */
  int has_addr;
  uint8_t addr[16];     /* 4 bytes used for IPv4 */
  double delay_ms;      /* reply time after the probe arrived */
  double jitter_ms;     /* uniform in [-jitter, +jitter], result >= 0 */
  double loss;          /* probability that a reply is not sent */
  double duplicate;     /* probability that a reply is sent twice */
  double reorder;       /* probability that a reply is held back */
  double reorder_ms;    /* by this much */
  int n_mpls;
  sonde_mpls_t mpls[NETSIM_MAX_MPLS];
  double rate_limit;    /* ICMP messages per second; 0: no limit */
  double rate_burst;    /* bucket size, >= 1 */
  int reply_ttl;        /* TTL / hop limit of replies; -1: 65 - ttl */
  int quote_bytes;      /* bytes of the probe quoted; -1: all that fits */
  int bad_checksum;     /* ICMP / TCP checksum made invalid */
  int padded_extension; /* non-compliant 128-byte extension form */
  int length_in_bytes;  /* RFC 4884 length attribute written in bytes (128)
                           instead of words, as some routers do; the quote
                           padded to 128 bytes */
  int has_ifinfo;       /* an RFC 5837 interface information object */
  netsim_ifinfo_t ifinfo;
  /* rate limiter state */
  double tokens;
  uint64_t tokens_ns;
} netsim_hop_t;

typedef struct {
  int af;               /* AF_INET or AF_INET6 */
  uint8_t prefix[16];
  int plen;
  uint8_t target[16];
  uint8_t source[16];   /* the device's own address (prober's source) */
  int icmp, udp, tcp;   /* NETSIM_ANSWER / NETSIM_SILENT / NETSIM_OPEN */
  int n_hops;           /* entries of hops[], the destination included */
  netsim_hop_t hops[NETSIM_MAX_HOPS + 1];
  int dest;             /* index of the destination's entry in hops[] */
  int by_ttl[NETSIM_MAX_HOPS + 1]; /* TTL -> index in hops[], -1: none */
} netsim_scenario_t;

/* A reply waiting for its time. */
typedef struct {
  uint64_t due_ns;      /* uv_hrtime() clock */
  uint64_t order;       /* FIFO among equal due times */
  size_t len;
  uint8_t *pkt;         /* owned; freed when sent or dropped */
} netsim_reply_t;

typedef struct {
  uint64_t probes;      /* packets read that were probes of ours */
  uint64_t ignored;     /* other packets (RST/ACK of the prober, MLD, ...) */
  uint64_t replies;     /* replies written to the device */
  uint64_t lost;        /* dropped per `loss` */
  uint64_t silent;      /* probes to a silent hop or a TTL gap */
  uint64_t rate_limited;
  uint64_t overflow;    /* no room in the pending heap */
  uint64_t write_errors;
  uint64_t build_errors; /* a reply that could not be built (cannot happen
                            with a valid scenario; counted, not hidden) */
  uint64_t late_sum_ns; /* how late replies left, summed (precision) */
  uint64_t late_max_ns;
  uint64_t checked;     /* --check: replies parsed back */
  uint64_t check_failed;
} netsim_stats_t;

typedef struct {
  uv_loop_t *loop;
  netsim_scenario_t *sc;
  int tun_fd;           /* -1 when closed; owned here */
  char dev[16];
  uv_poll_t poll;
  uv_timer_t timer;
  uv_idle_t idle;       /* spins the loop for the last sub-millisecond */
  uv_signal_t sigint, sigterm;
  uv_timer_t lifetime;  /* --max-time */
  int coarse;           /* --coarse: no sub-millisecond spin */
  int verbose;
  int check;            /* --check: parse every reply back */
  uint64_t rng;         /* splitmix64 state (--seed) */
  uint16_t ip_id;
  uint64_t order;
  netsim_reply_t *heap;
  size_t heap_len, heap_cap;
  netsim_stats_t stats;
  uint8_t rbuf[NETSIM_PKT_MAX];
  uint8_t sbuf[NETSIM_PKT_MAX];
} netsim_t;

/* scenario.c: load and validate FILE into *sc. Returns 0, or -1 with a
 * message "PATH: what is wrong" in err. */
int netsim_scenario_load(const char *file, netsim_scenario_t *sc, char *err,
                         size_t errlen);

/* sim.c: a datagram that came out of the device at time now. */
void netsim_handle(netsim_t *ns, const uint8_t *pkt, size_t len,
                   uint64_t now);
double netsim_random(netsim_t *ns); /* uniform in [0, 1) */

/* sched.c: queue pkt (copied) for due_ns; deliver what is due. */
int netsim_sched(netsim_t *ns, const uint8_t *pkt, size_t len,
                 uint64_t due_ns);
int netsim_sched_init(netsim_t *ns);
void netsim_sched_free(netsim_t *ns);
void netsim_sched_kick(netsim_t *ns);

/* tun.c: create the device (name may hold %d), bring it up, give it the
 * scenario's source address and route its prefix to it. Returns the fd or a
 * negative errno with a message in err. */
int netsim_tun_open(const netsim_scenario_t *sc, const char *name,
                    char *dev_out, char *err, size_t errlen);
/* 1 if the current network namespace is one of /run/netns/ (made with
 * `ip netns add`), 0 if not. */
int netsim_in_named_netns(void);

/* The textual form of an address of the scenario's family. */
const char *netsim_ntop(int af, const uint8_t *a, char *buf, size_t len);

#endif /* NETSIM_H */

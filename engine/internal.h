/* internal.h - private declarations shared by the engine's files. */
#ifndef SONDE_INTERNAL_H
#define SONDE_INTERNAL_H

#include <errno.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "sonde.h"
#include "packet.h"

#define SONDE__DEFAULT_WINDOW 256
#define SONDE__DEFAULT_WAIT 5.0
#define SONDE__DEFAULT_PAYLOAD 32
#define SONDE__MAX_PAYLOAD SONDE_SIZE_MAX
#define SONDE__CONNECT_ATTEMPTS 3 /* one try and at most two retries (Go) */
#define SONDE__SEND_RETRIES 3     /* ENOBUFS/EAGAIN at send, then failed */
#define SONDE__RECV_BURST 64      /* packets read per poll callback */
#define SONDE__ROUTES 64          /* route sources kept per family */

/* What a reply carries back that names its probe. a/b: ports or ICMP id/seq. */
typedef struct {
  uint8_t proto; /* sonde_proto_t */
  uint8_t af;    /* 4 or 6 */
  uint16_t a, b;
  uint16_t c;    /* UDP with a held checksum: the checksum; else 0 */
  uint16_t pad_;
  uint8_t addr[16]; /* the probe's destination */
} sonde__key_t;

enum {
  SONDE__FREE = 0,
  SONDE__QUEUED,   /* accepted, waiting for rate/window */
  SONDE__INFLIGHT, /* sent (or connecting), waiting for an answer */
  SONDE__CLOSING   /* ended; its poll handle is closing */
};

typedef struct sonde__probe sonde__probe_t;
typedef struct sonde__sender sonde__sender_t;

/*
 * What differs between ICMP, UDP and TCP probes, behind one table per
 * protocol (icmp.c, udp.c, tcp.c), chosen once when the probe is accepted
 * (sonde__proto_ops).
 */
typedef struct {
  sonde_proto_t proto;
  /* Send p: 0 when it is in flight, or a negative errno (the caller ends
   * the probe per sonde_err_status()). */
  int (*send)(sonde_engine_t *eng, sonde__probe_t *p);
  /* The quote of an ICMP error read from a socket's error queue is p's
   * probe as far as the kernel shows it: data is the quoted packet from
   * its transport payload on (UDP: the payload; TCP: the TCP header; ICMP:
   * the echo request), len bytes, to is where it went (address and port).
   * The destination address is checked already. 1 if p's, 0 if not. */
  int (*errq_quote_ok)(const sonde__probe_t *p, const uint8_t *data,
                       size_t len, const struct sockaddr_storage *to);
} sonde__proto_ops_t;
/* Called when a probe's poll handle has closed and the probe goes on (a TCP
 * connect retried on a new socket). */
typedef void (*sonde__restart_fn)(sonde_engine_t *eng, sonde__probe_t *p);

struct sonde__probe {
  sonde_engine_t *eng;
  const sonde__proto_ops_t *ops; /* the probe's protocol */
  uint64_t id;
  int state;
  uint32_t slot;
  sonde_probe_spec_t spec;
  sonde_probe_cb cb;
  void *data;
  uint64_t sent_ns;
  uint64_t deadline_ns;
  double wait;
  size_t heap_idx;          /* SIZE_MAX when not in the heap */
  sonde__key_t key;
  int in_table;
  sonde__probe_t *hnext;    /* hash chain */
  sonde__probe_t *qnext;    /* send queue / free list */
  int send_tries;
  uint64_t send_job;        /* 1 + its sender job while the loop has not
                               taken the job's outcome; 0 otherwise */
  int attempts;             /* sockets tried */
  const char *call;         /* the call that failed, for the result */
  int fd;                   /* per-probe socket; -1 when none. Owned here. */
  int poll_init;            /* poll handle initialised (must be uv_close'd) */
  int poll_closing;         /* uv_close called, close callback pending */
  sonde__restart_fn restart;
  uv_poll_t poll;
  struct sockaddr_storage local; /* our source address (and port): the
                                    source that a reply's quote must name */
  sonde_result_t *pending;  /* TCP connect probe: a reply the raw socket
                               matched, held until the kernel's TCP error
                               handler confirms it (engine frees it) */
  int icmp_wanted;          /* TCP connect probe: its socket reported the
                               ICMP error; the raw socket's match ends it */
  /* TCP session (payload/expect): one allocation, freed at release */
  uint8_t *session;         /* payload, then expect, then the read buffer */
  size_t sent;              /* payload bytes written */
  size_t rlen;              /* bytes in the read buffer */
  size_t received;
  int stage;                /* SONDE__SESSION_* */
  uint64_t connected_ns;
  int syn;                  /* TCP sent as a SYN on the raw socket (syn.c) */
  int syn_held;             /* it counts in the hold of its source port */
  uint32_t isn;             /* its sequence number: names it in answers */
  /* The spec's src / iface, checked once (sonde__probe_src): */
  int src_checked;
  unsigned ifindex;         /* spec.iface's index; 0 without iface */
  struct sockaddr_storage src; /* the checked source, port 0 */
  uint32_t drops;           /* its own ping socket's SO_RXQ_OVFL count */
};

enum {
  SONDE__SESSION_NONE = 0,
  SONDE__SESSION_SEND,      /* writing the payload */
  SONDE__SESSION_RECV,      /* reading until expect */
  SONDE__SESSION_AFTER_FIN  /* peer closed, payload written again: wait for
                               its RST to surface as EPIPE */
};
#define SONDE__SESSION_RBUF 4096

/* One receive socket (raw ICMP/ICMPv6 or the shared UDP socket). */
typedef struct {
  int fd;        /* -1 when not open; owned here */
  int poll_init;
  int err;       /* negative errno of a failed open, remembered */
  uv_poll_t poll;
  uint16_t port; /* shared UDP socket: our source port */
  uint32_t drops; /* the kernel's drop counter, last seen (SO_RXQ_OVFL) */
} sonde__sock_t;

/* A source port held for SYN probes (syn.c): shared by the probes that
 * use it, released with the last. */
typedef struct {
  int fd; /* bound stream socket, never listening; owned here */
  uint16_t port;
  uint32_t refs; /* probes in flight on it */
  struct sockaddr_storage local;
} sonde__synport_t;

/* A UDP socket bound to one source port, shared by the probes of that flow
 * (bind "fixed": Paris, Dublin, MDA). */
typedef struct {
  sonde__sock_t sock;
  int af;
  struct sockaddr_storage local; /* the address and port it is bound to */
  unsigned ifindex;              /* and its device (SO_BINDTODEVICE), or 0 */
} sonde__flowsock_t;

struct sonde_engine {
  uv_loop_t *loop;
  sonde_engine_opts_t opts;
  uv_timer_t timer;     /* the one timer: deadlines and rate pacing */
  int closing;
  int finished;
  int in_timer;         /* inside the timer callback: it re-arms at its end */
  uint64_t retry_ns;    /* no send before this (ENOBUFS back-off) */
  int pending_closes;   /* handles whose close callback has not run */
  sonde_close_cb close_cb;
  void *close_data;
  /* probes: slabs of fixed-size chunks so pointers stay put */
  sonde__probe_t **slots;
  uint32_t n_slots, cap_slots;
  sonde__probe_t *free_list;
  uint32_t generation;
  /* send queue (FIFO) */
  sonde__probe_t *q_head, *q_tail;
  /* in-flight deadline heap */
  sonde__probe_t **heap;
  size_t heap_len, heap_cap;
  /* in-flight identity table */
  sonde__probe_t **buckets;
  size_t n_buckets, n_keys;
  /* rate */
  double tokens;
  uint64_t tokens_ns;
  /* sockets: [0] IPv4, [1] IPv6 */
  sonde__sock_t icmp[2];  /* raw ICMP/ICMPv6 (raw mode) */
  sonde__sock_t ping[2];  /* ICMP datagram sockets (unprivileged mode) */
  sonde__sock_t udp[2];
  int rawudp[2];          /* send-only raw UDP (Paris); -1 if not open */
  int rawudp_err[2];
  int rawip;              /* send-only IPPROTO_RAW, IPv4 (ip_id); -1 if not
                             open */
  int rawip_err;
  sonde__sender_t *sender; /* the sender thread (opts.send_thread), or NULL */
  int sender_failed;       /* it could not start: the loop sends */
  int unpriv[2];          /* the family runs unprivileged */
  struct {              /* sonde__route_src: a direct-mapped cache */
    uint8_t dst[16], src[16];
    uint8_t used;
  } routes[2][SONDE__ROUTES];
  sonde__flowsock_t **flows; /* UDP sockets by source port (bind fixed) */
  size_t n_flows, cap_flows;
  uint16_t echo_id;
  uint16_t echo_seq;
  uint8_t nonce[4];       /* random, this engine's: in every probe's
                             payload (sonde__payload_byte) */
  int nonce_set;
  int echo_held;          /* echo_id reserved (icmp.c): 1 held, <0 -errno */
  int echo_hold[3];       /* what reserves it: an abstract unix socket, and
                             ICMP datagram sockets of each family; -1 if
                             not open. Owned here. */
  sonde__sock_t rawtcp[2]; /* raw TCP: SYN probes out, answers in (syn.c) */
  sonde__synport_t *synports; /* source ports held for SYN probes */
  size_t n_synports, cap_synports;
  uint16_t syn_tag;       /* last SYN tag given (low half of the ISN) */
  uint16_t syn_nonce;     /* this engine's high half of every ISN; 0 unset */
  sonde_stats_t stats;
  /* receive buffer: the largest IP datagram, so that an echo reply to
   * the largest probe (-s 65507) is read whole, never cut */
  uint8_t buf[65536];
  uint8_t sbuf[SONDE__MAX_PAYLOAD + 64]; /* send buffer */
};

static inline int sonde__afi(int af) { return af == AF_INET6 ? 1 : 0; }

/* sendmsg() of one probe datagram, again when a signal interrupted it
 * (EINTR), never raising SIGPIPE. 0 or a negative errno. Inline: it is on
 * every probe's way out. */
static inline int sonde__sendmsg(int fd, const struct msghdr *msg) {
  ssize_t n;
  do
    n = sendmsg(fd, msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

/* engine.c */
uint64_t sonde__now(void);
void sonde__probe_sent(sonde_engine_t *eng, sonde__probe_t *p);
void sonde__probe_done(sonde_engine_t *eng, sonde__probe_t *p,
                       sonde_result_t *res);
void sonde__probe_fail(sonde_engine_t *eng, sonde__probe_t *p, int err);
void sonde__result_init(const sonde__probe_t *p, sonde_result_t *res);
void sonde__result_reply(const sonde__probe_t *p, sonde_result_t *res,
                         sonde_kind_t kind, const struct sockaddr_storage *addr,
                         uint64_t now);
void sonde__close_fd(int *fd);
/* uv_close an engine-owned handle; the engine finishes closing after it. */
void sonde__handle_close(sonde_engine_t *eng, uv_handle_t *h);
/* Close a probe's socket and poll handle; restart (may be NULL) runs once the
 * handle has closed if the probe is still in flight. */
/* Watch p's own socket (p->fd) for events with cb; on failure p->call is
 * "uv_poll_start". Undone by sonde__probe_close_socket. */
int sonde__probe_poll(sonde_engine_t *eng, sonde__probe_t *p, int events,
                      uv_poll_cb cb);
void sonde__probe_close_socket(sonde_engine_t *eng, sonde__probe_t *p,
                               sonde__restart_fn restart);

/* heap.c: the deadline heap */
int sonde__heap_push(sonde_engine_t *eng, sonde__probe_t *p);
void sonde__heap_remove(sonde_engine_t *eng, sonde__probe_t *p);
void sonde__heap_update(sonde_engine_t *eng, sonde__probe_t *p);
sonde__probe_t *sonde__heap_top(sonde_engine_t *eng);

/* table.c: in-flight probes by identity */
int sonde__table_insert(sonde_engine_t *eng, sonde__probe_t *p);
void sonde__table_remove(sonde_engine_t *eng, sonde__probe_t *p);
sonde__probe_t *sonde__table_find(sonde_engine_t *eng, const sonde__key_t *k);
void sonde__key_make(sonde__key_t *k, int proto, int af, const void *addr,
                     uint16_t a, uint16_t b);
void sonde__table_free(sonde_engine_t *eng);
/* The one probe in flight for which match(p, ctx) is 1; NULL when none
 * is or more than one is (*n: 0, 1, or 2 for more). Looks at every probe:
 * for the rare reply that no key names. */
sonde__probe_t *sonde__table_only(sonde_engine_t *eng,
                                  int (*match)(const sonde__probe_t *,
                                               const void *),
                                  const void *ctx, size_t *n);

/* net.c: socket helpers */
int sonde__socket(int af, int type, int proto);
int sonde__set_ttl(int fd, int af, int ttl);
/* Room for a probe's ancillary data: TTL, TOS, IPv6 DONTFRAG. */
typedef union {
  char buf[3 * CMSG_SPACE(sizeof(int)) +
           CMSG_SPACE(sizeof(struct in6_addr) + sizeof(unsigned))];
  /* the last: an IP_PKTINFO or IPV6_PKTINFO (struct in6_pktinfo, the
   * larger; net.c checks its size) */
  struct cmsghdr align;
} sonde__cmsgbuf_t;
/* The message of one probe datagram: buf to dst, with ttl, tos (if
 * nonzero) and an IPv6 df as ancillary data in control. */
void sonde__probe_msg(struct msghdr *msg, struct iovec *iov,
                      sonde__cmsgbuf_t *control, const void *buf, size_t len,
                      const struct sockaddr_storage *dst, int ttl, int tos,
                      sonde_df_t df);
int sonde__sendto_probe(sonde__probe_t *p, int fd, const void *buf,
                        size_t len, const struct sockaddr_storage *dst);
int sonde__route_src(sonde_engine_t *eng, const struct sockaddr_storage *dst,
                     struct sockaddr_storage *src);
/* The source p leaves from: its spec's src (checked local) or the route's
 * (over spec.iface if set). 0 or a negative errno with p->call set. */
int sonde__probe_src(sonde_engine_t *eng, sonde__probe_t *p,
                     struct sockaddr_storage *src);
/* SO_BINDTODEVICE of p's spec.iface on fd (nothing without iface). */
int sonde__bind_device(sonde__probe_t *p, int fd);
/* Add p's source and interface (IP_PKTINFO / IPV6_PKTINFO) to msg, whose
 * control is a sonde__cmsgbuf_t, when the spec names either. */
void sonde__msg_pktinfo(const sonde__probe_t *p, struct msghdr *msg);
/* The path MTU the kernel knows for dst (IP_MTU of a connected UDP socket),
 * or 0. */
int sonde__path_mtu(const struct sockaddr_storage *dst, int device);
void sonde__clear_pending_error(int fd);
socklen_t sonde__addr_len(const struct sockaddr_storage *ss);
const void *sonde__addr_bytes(const struct sockaddr_storage *ss);
uint16_t sonde__addr_port(const struct sockaddr_storage *ss);
void sonde__addr_set_port(struct sockaddr_storage *ss, uint16_t port);
int sonde__addr_equal(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b, int with_port);

/* recv.c: the payload of UDP and ICMP echo probes, and the check that a
 * quoted payload is this engine's */
#define SONDE__NONCE_LEN 4
uint8_t sonde__payload_byte(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                            int proto, size_t i);
int sonde__nonce_ok(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                    const uint8_t *data, size_t len);

/* portbind.c: the source-port binding policy */
int sonde__bind_probe_socket(sonde__probe_t *p, int type, int proto);

/* recv.c: receive sockets and reply matching */
int sonde__recv_open(sonde_engine_t *eng, int af);
int sonde__ping_open(sonde_engine_t *eng, int af);
void sonde__ping_read(sonde_engine_t *eng, int *fd, uint32_t *drops, int af);
int sonde__flow_watch(sonde_engine_t *eng, sonde__flowsock_t *f);
int sonde__udp_open(sonde_engine_t *eng, int af);
void sonde__recv_drain(sonde_engine_t *eng, int af);
/* The quote's (or an IPv4 echo reply's) addresses are p's: see recv.c. */
int sonde__source_ok(const sonde__probe_t *p, const sonde__icmp_t *m);
void sonde__sock_close(sonde_engine_t *eng, sonde__sock_t *s);
void sonde__udp_read(sonde_engine_t *eng, int fd, uint16_t local_port);
void sonde__recv_pending(sonde_engine_t *eng);

/* errqueue.c: ICMP errors from a socket's error queue (IP_RECVERR) */
int sonde__recverr_enable(int fd, int af);
/* sonde__errqueue_read returns: */
enum {
  SONDE__ERRQ_EMPTY = 0,   /* nothing queued */
  SONDE__ERRQ_REPLY = 1,   /* an ICMP error about p: res filled */
  SONDE__ERRQ_REFUSED = 2, /* an ICMP error whose quote is not p's probe,
                              or that is no hop (fragment reassembly time
                              exceeded) */
  SONDE__ERRQ_LOCAL = 3    /* a local error (no ICMP), res->error set */
};
int sonde__errqueue_read(sonde__probe_t *p, sonde_result_t *res);
int sonde__send_recverr(sonde__probe_t *p, int fd, const void *buf,
                        size_t len, const struct sockaddr_storage *dst);
void sonde__errqueue_drain(sonde_engine_t *eng, int fd, int proto,
                           uint16_t local_port);

/* priv.c: the raw sockets opened before privileges were dropped */
int sonde__raw_socket(int af);
int sonde__raw_udp_socket(int af);
int sonde__raw_ip_socket(void);

/* sender.c: the sender thread (sonde_engine_opts_t.send_thread) */
int sonde__sender_queue(sonde_engine_t *eng, sonde__probe_t *p, int fd,
                        const uint8_t *buf, size_t len);
void sonde__sender_drain(sonde_engine_t *eng);
void sonde__sender_kick(sonde_engine_t *eng);
int sonde__sender_full(sonde_engine_t *eng);
void sonde__arm(sonde_engine_t *eng);
void sonde__sender_stop(sonde_engine_t *eng);
uint64_t sonde__sent_ns(const sonde__probe_t *p);
sonde__probe_t *sonde__probe_find(sonde_engine_t *eng, uint64_t id);
void sonde__closed_one(sonde_engine_t *eng);

/* iphdr.c: the IP header fields a probe sets itself (ip_id, df, flow
 * label). Each returns 0 or a negative errno with p->call naming what
 * failed. */
int sonde__send_fields(sonde__probe_t *p, int fd, struct msghdr *msg);
int sonde__rawip_open(sonde_engine_t *eng, sonde__probe_t *p);
int sonde__send_hdrincl(sonde_engine_t *eng, sonde__probe_t *p, int proto,
                        size_t len);
int sonde__tcp_fields(sonde__probe_t *p);
int sonde__connect_fields(sonde__probe_t *p, struct sockaddr_storage *dst);

/* icmp.c, udp.c, tcp.c: each protocol's table (sonde__proto_ops_t),
 * sonde__icmp_ops etc., one per line of SONDE_PROTO_MAP. */
#define XX(NAME, name, value)                                                  \
  extern const sonde__proto_ops_t sonde__##name##_ops;
SONDE_PROTO_MAP(XX)
#undef XX
/* The table of a protocol; NULL for a value outside sonde_proto_t. */
const sonde__proto_ops_t *sonde__proto_ops(int proto);
void sonde__echo_release(sonde_engine_t *eng);

/* errqueue.c: each protocol's check of an error-queue quote
 * (sonde__proto_ops_t.errq_quote_ok). */
int sonde__icmp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                              size_t len, const struct sockaddr_storage *to);
int sonde__udp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                             size_t len, const struct sockaddr_storage *to);
int sonde__tcp_errq_quote_ok(const sonde__probe_t *p, const uint8_t *data,
                             size_t len, const struct sockaddr_storage *to);

/* The SYN of a half-open probe, as syn.c builds it and sent.c records what
 * it carried: a 24-byte header whose one option is the MSS (middleboxes
 * drop SYNs without it), with Linux's initial window. */
#define SONDE__SYN_LEN 24
#define SONDE__SYN_WINDOW 64240
#define SONDE__SYN_MSS(af) ((af) == AF_INET6 ? 1440 : 1460)

/* syn.c: half-open TCP probes. sonde__syn_mode: 1 SYN, 0 connect, or a
 * negative errno (p->call set); sonde__syn_send as the *_send above. */
int sonde__syn_mode(sonde_engine_t *eng, sonde__probe_t *p);
int sonde__syn_send(sonde_engine_t *eng, sonde__probe_t *p);
void sonde__syn_close(sonde_engine_t *eng);
void sonde__syn_release(sonde_engine_t *eng, sonde__probe_t *p);
int sonde__raw_tcp_new(int af);
int sonde__raw_tcp_filter(int fd, int af);
/* priv.c: a raw TCP socket for an engine (pooled or new), its filter
 * locked; EPERM/EACCES without CAP_NET_RAW. */
int sonde__raw_tcp_socket(int af);

/* A datagram probe's send on fd: through the error-queue path when the
 * family runs unprivileged (sonde__send_recverr), else plainly. */
static inline int sonde__send_datagram(sonde_engine_t *eng, sonde__probe_t *p,
                                       int fd, const void *buf, size_t len,
                                       const struct sockaddr_storage *dst) {
  return eng->unpriv[sonde__afi(dst->ss_family)]
             ? sonde__send_recverr(p, fd, buf, len, dst)
             : sonde__sendto_probe(p, fd, buf, len, dst);
}

/* The end of a probe's send with result r: in flight (0), or out of the
 * identity table with the call that failed named ("sendmsg" unless a
 * step before named its own) and r returned. */
static inline int sonde__send_end(sonde_engine_t *eng, sonde__probe_t *p,
                                  int r) {
  if (r < 0) {
    sonde__table_remove(eng, p);
    if (p->call == NULL)
      p->call = "sendmsg";
    return r;
  }
  sonde__probe_sent(eng, p);
  return 0;
}

#endif /* SONDE_INTERNAL_H */

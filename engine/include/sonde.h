/*
 * sonde.h - the embeddable sonde probing engine.
 *
 * One engine drives one libuv loop (its own or the embedder's). Probes are
 * started with sonde_probe_start(); each started probe ends in exactly one
 * call of its callback with a sonde_result_t. The engine never prints, never
 * exits and never raises SIGPIPE.
 *
 * Errors: functions return >= 0 on success and a negative errno on failure
 * (as libuv does). sonde_err_name() and sonde_strerror() name them.
 *
 * Threads: an engine is not thread-safe. Make every call for an engine on
 * the thread that runs its loop; callbacks run there, from uv_run(). Several
 * engines may share one loop. Only sonde_raw_preopen()/sonde_raw_release()
 * act on the whole process.
 *
 * Linking: pkg-config --cflags --libs sonde (libsonde.so.0 or libsonde.a;
 * both need libuv). examples/embed.c is a complete program.
 */
#ifndef SONDE_H
#define SONDE_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API: the engine is built with -fvisibility=hidden, and only what is
 * marked SONDE_EXTERN leaves libsonde.so (libuv's UV_EXTERN). */
#if defined(__GNUC__) && __GNUC__ >= 4
#define SONDE_EXTERN __attribute__((visibility("default")))
#else
#define SONDE_EXTERN /* nothing */
#endif

/*
 * The errno taxonomy: every errno that a probe can meet, with its message and
 * what it means for a probe (its status). Written once; the enum, the names,
 * the messages and the Lua/JSON names all come from this list.
 *
 *   XX(NAME, "message", STATUS)
 *
 * STATUS is what a probe becomes when a call the engine makes to send it
 * (socket, bind, connect, sendmsg) fails with this errno: SKIPPED (source port
 * busy: re-issue under another sequence), FAILED (a local error), TIMEOUT, or
 * REPLY (the errno is the peer's answer, e.g. ECONNREFUSED: the port is
 * closed). Errors that a TCP probe's socket reports after connect() are
 * mapped by engine/tcp.c (EHOSTUNREACH there is an ICMP error from a hop).
 */
#define SONDE_ERRNO_MAP(XX)                                                   \
  XX(EADDRINUSE, "address already in use (source port busy)", SKIPPED)        \
  XX(EADDRNOTAVAIL, "cannot assign requested address (address not local or "  \
                    "ephemeral ports exhausted)", FAILED)                     \
  XX(ECONNREFUSED, "connection refused (peer answered RST)", REPLY)           \
  XX(ECONNRESET, "connection reset by peer", REPLY)                           \
  XX(ECONNABORTED, "connection aborted", REPLY)                               \
  XX(EPIPE, "broken pipe (peer closed the connection)", REPLY)                \
  XX(ETIMEDOUT, "timed out", TIMEOUT)                                         \
  XX(EHOSTUNREACH, "no route to host", FAILED)                                \
  XX(ENETUNREACH, "network is unreachable", FAILED)                           \
  XX(EHOSTDOWN, "host is down", FAILED)                                       \
  XX(EPROTO, "protocol error", FAILED)                                        \
  XX(EMSGSIZE, "message too long for the path MTU", FAILED)                   \
  XX(EACCES, "permission denied (prohibited by a local firewall or policy)",  \
         FAILED)                                                              \
  XX(EPERM, "operation not permitted (raw sockets need root or "              \
            "CAP_NET_RAW; at send: a local firewall)", FAILED)                \
  XX(ENOBUFS, "no buffer space available", FAILED)                            \
  XX(EAGAIN, "resource temporarily unavailable", FAILED)                      \
  XX(ENOPROTOOPT, "protocol option not supported by this system", FAILED)     \
  XX(EPROTONOSUPPORT, "protocol not supported by this system", FAILED)        \
  XX(EAFNOSUPPORT, "address family not supported by this system", FAILED)     \
  XX(EINVAL, "invalid argument", FAILED)                                      \
  XX(ENOMEM, "out of memory", FAILED)                                         \
  XX(EMFILE, "too many open files", FAILED)                                   \
  XX(ENFILE, "too many open files in system", FAILED)                         \
  XX(EEXIST, "a probe with the same identity is already in flight", FAILED)   \
  XX(ECANCELED, "cancelled (engine closed or probe cancelled)", FAILED)       \
  XX(ENOENT, "no such probe", FAILED)                                         \
  XX(EBUSY, "engine busy", FAILED)                                            \
  XX(EINTR, "interrupted system call", FAILED)                                \
  XX(ENODEV, "no such device", FAILED)                                        \
  XX(ENOTSUP, "operation not supported", FAILED)                            \
  XX(EBADMSG, "malformed packet", FAILED)                                     \
  XX(ENOMSG, "packet of a type sonde does not use", FAILED)

/* Probe status: the one vocabulary from C to Lua and JSON. */
typedef enum {
  SONDE_STATUS_REPLY = 0,   /* something answered; kind says what */
  SONDE_STATUS_TIMEOUT,     /* nothing matched within the probe's wait */
  SONDE_STATUS_SKIPPED,     /* not sent: source port busy (EADDRINUSE) */
  SONDE_STATUS_FAILED       /* a local error prevented the probe */
} sonde_status_t;

/*
 * What answered: XX(NAME, "name"), SONDE_KIND_NAME and its name in Lua and
 * JSON (sonde_kind_name), in enum order from 0.
 */
#define SONDE_KIND_MAP(XX)                                                    \
  XX(NONE, "none")                                                            \
  XX(TIME_EXCEEDED, "time_exceeded")                                          \
  XX(DEST_UNREACHABLE, "dest_unreachable")                                    \
  XX(ECHO_REPLY, "echo_reply")                                                \
  XX(TCP_SYNACK, "tcp_synack")     /* connect succeeded: port open */         \
  XX(TCP_RST, "tcp_rst")           /* connect refused: port closed */         \
  XX(UDP_REPLY, "udp_reply")                                                  \
  XX(PACKET_TOO_BIG, "packet_too_big") /* ICMPv6 packet too big (IPv4's     \
                                frag needed is dest_unreachable, code       \
                                frag_needed) */                             \
  XX(PARAM_PROBLEM, "param_problem")                                          \
  XX(SELF_CONNECT, "self_connect") /* a TCP connect that connected to       \
                                      itself */                             \
  XX(RESET, "reset") /* peer reset an established connection (RST; error    \
                        ECONNRESET, or EPIPE when we wrote after the peer   \
                        had closed) */                                      \
  XX(CLOSED, "closed") /* peer closed (FIN) before the expected reply */

typedef enum {
#define XX(name, str) SONDE_KIND_##name,
  SONDE_KIND_MAP(XX)
#undef XX
  SONDE_KIND_MAX
} sonde_kind_t;

/*
 * Destination unreachable codes, one vocabulary for IPv4 and IPv6:
 * XX(NAME, "name") as the kinds. The ICMP and ICMPv6 codes they stand for
 * are in engine/packet.c (sonde__icmp_classify).
 */
#define SONDE_UNREACH_MAP(XX)                                                 \
  XX(NONE, "none")                                                            \
  XX(NET, "net")                                                              \
  XX(HOST, "host")                                                            \
  XX(PROTOCOL, "protocol")                                                    \
  XX(PORT, "port")                                                            \
  XX(FRAG_NEEDED, "frag_needed")                                              \
  XX(SOURCE_ROUTE, "source_route")                                            \
  XX(PROHIBITED, "prohibited") /* administratively prohibited (any          \
                                  flavour) */                               \
  XX(NET_UNKNOWN, "net_unknown")                                              \
  XX(HOST_UNKNOWN, "host_unknown")                                            \
  XX(PRECEDENCE, "precedence")                                                \
  XX(BEYOND_SCOPE, "beyond_scope") /* ICMPv6 code 2 */                        \
  XX(ADDRESS, "address")   /* ICMPv6 code 3: address unreachable */           \
  XX(POLICY, "policy")     /* ICMPv6 code 5: source address failed policy */  \
  XX(REJECT_ROUTE, "reject_route") /* ICMPv6 code 6 */                        \
  XX(OTHER, "other")

typedef enum {
#define XX(name, str) SONDE_UNREACH_##name,
  SONDE_UNREACH_MAP(XX)
#undef XX
  SONDE_UNREACH_MAX
} sonde_unreach_t;

/*
 * Probe protocols: XX(NAME, name, value), SONDE_PROTO_NAME = value, its
 * name in Lua and JSON ("name", sonde_proto_name) and the engine's table
 * of what the protocol does (sonde__name_ops, in engine/name.c). The
 * values run from 1 without a gap.
 *   ICMP  ICMP / ICMPv6 echo request
 *   UDP   a datagram to a port
 *   TCP   a non-blocking connect with the probe's TTL
 */
#define SONDE_PROTO_MAP(XX)                                                   \
  XX(ICMP, icmp, 1)                                                           \
  XX(UDP, udp, 2)                                                             \
  XX(TCP, tcp, 3)

typedef enum {
#define XX(NAME, name, value) SONDE_PROTO_##NAME = value,
  SONDE_PROTO_MAP(XX)
#undef XX
} sonde_proto_t;

/* The DF bit of a probe (sonde_probe_spec_t.df; README "Flows"). */
typedef enum {
  SONDE_DF_DEFAULT = 0, /* the kernel's choice (Linux: DF set on datagrams
                           that fit the path MTU; path MTU discovery) */
  SONDE_DF_SET,         /* do not fragment */
  SONDE_DF_CLEAR,       /* may be fragmented */
  SONDE_DF_PROBE        /* do not fragment, and ignore the path MTU the
                           kernel has learnt: only the device MTU limits
                           the send (path MTU discovery's own probes) */
} sonde_df_t;

/* Source-port binding policy for probes that own a socket (TCP, and UDP with
 * a source port). A busy port (EADDRINUSE, at bind or, under SO_REUSEPORT
 * with a TIME_WAIT connection, at connect) skips the probe; EADDRNOTAVAIL
 * (the address is not local, or the ephemeral range is exhausted) fails it. */
typedef enum {
  SONDE_BIND_KERNEL = 0, /* port 0: the kernel chooses */
  SONDE_BIND_SEQUENCE,   /* source port = sport (the caller adds the sequence) */
  SONDE_BIND_FIXED       /* one port for every probe */
} sonde_bind_t;

/* An errno of the map as a negative number, e.g. SONDE_EADDRINUSE. */
typedef enum {
#define XX(name, msg, st) SONDE_##name = -name,
  SONDE_ERRNO_MAP(XX)
#undef XX
  SONDE_ERRNO_END_ = 0
} sonde_errno_t;

/* Label stack entries kept from an RFC 4950 object; a deeper stack sets
 * sonde_result_t.mpls_truncated. */
#define SONDE_MPLS_MAX 16

typedef struct {
  uint32_t label; /* 20 bits */
  uint8_t exp;    /* traffic class, 3 bits */
  uint8_t s;      /* bottom of stack */
  uint8_t ttl;
} sonde_mpls_t;

/*
 * An RFC 4884 extension object other than the MPLS label stack. Class 2 is
 * RFC 5837 interface information, decoded: the role of the interface and
 * the sub-objects its c-type announces (has: SONDE_IFINFO_* bits). Any
 * other class keeps its class, c-type and first bytes.
 */
#define SONDE_EXT_MAX 4        /* objects kept; more sets ext_truncated */
#define SONDE_EXT_DATA_MAX 64  /* body bytes kept of an unknown object */
#define SONDE_EXT_CLASS_IFINFO 2
enum {
  SONDE_IFINFO_IFINDEX = 0x08, /* RFC 5837 4.1: the c-type's bits 4..7 */
  SONDE_IFINFO_ADDR = 0x04,
  SONDE_IFINFO_NAME = 0x02,
  SONDE_IFINFO_MTU = 0x01
};
typedef struct {
  uint8_t class_num;
  uint8_t ctype;
  uint8_t role;      /* class 2: 0 incoming, 1 sub-IP component of the
                        incoming interface, 2 outgoing, 3 IP next hop */
  uint8_t has;       /* class 2: SONDE_IFINFO_* sub-objects decoded */
  uint32_t ifindex;
  uint32_t mtu;
  int af;            /* has ADDR: AF_INET or AF_INET6 */
  uint8_t addr[16];
  char name[64];     /* has NAME: NUL-terminated (RFC 5837: at most 63) */
  uint16_t len;      /* the object's body length in bytes */
  uint8_t data[SONDE_EXT_DATA_MAX]; /* other classes: min(len, 64) bytes */
} sonde_ext_t;

/*
 * Quote fields that a probe's reply shows different from what the probe
 * carried: the one list of names (Lua and JSON see the second column).
 */
#define SONDE_FIELD_MAP(XX)                                                   \
  XX(DSCP, "dscp")                                                            \
  XX(ECN, "ecn")                                                              \
  XX(FLOW_LABEL, "flow_label")                                                \
  XX(IP_ID, "ip_id")                                                          \
  XX(DF, "df")                                                                \
  XX(IP_LEN, "ip_len")                                                        \
  XX(SRC, "src")                                                              \
  XX(SPORT, "sport")                                                          \
  XX(DPORT, "dport")                                                          \
  XX(UDP_LEN, "udp_len")                                                      \
  XX(UDP_CHECKSUM, "udp_checksum")                                            \
  XX(ICMP_CHECKSUM, "icmp_checksum")                                          \
  XX(TCP_SEQ, "tcp_seq")                                                      \
  XX(TCP_FLAGS, "tcp_flags")                                                  \
  XX(TCP_WINDOW, "tcp_window")                                                \
  XX(TCP_MSS, "tcp_mss")                                                      \
  XX(PAYLOAD, "payload")                                                      \
  XX(ICMP_ID, "icmp_id")

typedef enum {
  SONDE_FIELD_NONE = 0,
#define XX(name, str) SONDE_FIELD_##name,
  SONDE_FIELD_MAP(XX)
#undef XX
  SONDE_FIELD_MAX
} sonde_field_t;

/* One changed field: what the probe carried and what the quote shows
 * (SONDE_FIELD_SRC: see sonde_result_t.quoted_src instead). */
typedef struct {
  sonde_field_t field;
  uint32_t sent;
  uint32_t seen;
} sonde_change_t;
#define SONDE_CHANGES_MAX 16

/*
 * How a TCP probe goes out.
 *   AUTO     SYN when the engine has raw sockets and the probe needs no
 *            connection (no payload or expect), else CONNECT.
 *   SYN      one SYN built by the engine on a raw socket (half-open): the
 *            answer is the peer's SYN-ACK (tcp_synack) or RST (tcp_rst),
 *            the kernel answers a SYN-ACK with RST, no connection reaches
 *            the peer's application and nothing is retransmitted. Without
 *            CAP_NET_RAW the probe fails with EPERM.
 *   CONNECT  a non-blocking connect() on a socket of its own: works
 *            unprivileged, and the peer's application accepts a connection.
 */
typedef enum {
  SONDE_TCP_AUTO = 0,
  SONDE_TCP_SYN,
  SONDE_TCP_CONNECT
} sonde_tcp_mode_t;

/* Limits of a probe spec: sonde_probe_start() refuses a spec beyond them
 * (SONDE_EINVAL). */
#define SONDE_TTL_MIN 1
#define SONDE_TTL_MAX 255
/* ICMP/UDP payload bytes: the most an IPv4 datagram holds after its
 * header and the 8 bytes of ICMP or UDP (65535 - 20 - 8), as iputils ping
 * -s takes; a probe over the path MTU is fragmented, or with df fails
 * (EMSGSIZE, frag_needed, packet_too_big). */
#define SONDE_SIZE_MAX 65507
#define SONDE_TCP_PAYLOAD_MAX 65536    /* bytes written after a TCP connect */
#define SONDE_TCP_EXPECT_MAX 2048      /* bytes a TCP probe waits to read */
#define SONDE_FLOW_LABEL_MAX 0xfffff   /* 20 bits (RFC 8200) */
#define SONDE_PATTERN_MAX 16           /* payload pattern bytes (iputils -p) */

#define SONDE_IFNAMSIZ 16 /* an interface name and its NUL: Linux's IFNAMSIZ */

/* What to send. Zero-initialise, then set dst, proto and ttl at least.
 * sonde_probe_start() copies it (payload and expect included): it may be
 * reused or freed as soon as that returns. */
typedef struct {
  struct sockaddr_storage dst;  /* AF_INET or AF_INET6; port ignored */
  sonde_proto_t proto;
  int ttl;                      /* 1..255 */
  double wait;                  /* seconds; <= 0 means the engine default */
  /* ICMP echo identity; 0 id means the engine's id */
  uint16_t echo_id;
  uint16_t echo_seq;
  /* UDP/TCP ports. UDP with sport 0 uses the engine's shared UDP socket. */
  uint16_t sport;
  uint16_t dport;
  sonde_bind_t bind;
  uint32_t seq;                 /* caller's sequence number, reported back */
  uint16_t size;                /* ICMP/UDP payload bytes; 0 = default (32) */
  uint8_t fill;                 /* payload byte; 0 = the default ramp */
  /* ICMP/UDP: pattern_len (1..SONDE_PATTERN_MAX; 0: none) bytes of
   * pattern repeated over the payload, byte i being
   * pattern[i % pattern_len], as iputils ping -p fills its packets. The
   * engine's 4-byte nonce and the two compensating bytes of a held
   * checksum keep their places in it, so that replies and quotes are
   * still matched. EINVAL at start with fill, for TCP, or longer than
   * SONDE_PATTERN_MAX. */
  uint8_t pattern[SONDE_PATTERN_MAX];
  uint8_t pattern_len;
  /* Flow control (see README "Flows"): what load balancers hash, and what
   * names a probe inside one flow. */
  uint8_t tos;                  /* IPv4 TOS / IPv6 traffic class */
  int hold_checksum;            /* UDP/ICMP: make the transport checksum
                                   equal `checksum` by adjusting 2 payload
                                   bytes (Paris traceroute); the checksum
                                   then names the probe among the flow's */
  uint16_t checksum;
  /*
   * IP header fields (README "Flows"). Asking for one that a probe's
   * family cannot carry is EINVAL at sonde_probe_start(); one that its
   * protocol or privilege cannot honour fails the probe with a named errno
   * (its result's call names the field).
   *
   * ip_id: the IPv4 identification, 1..65535 (0: the kernel's). The
   * engine then writes the whole IPv4 header itself on a raw IPPROTO_RAW
   * socket (IP_HDRINCL), with ttl, tos and DF (set unless df says
   * SONDE_DF_CLEAR); the kernel never fragments such a datagram (over the
   * device MTU it fails with EMSGSIZE). ICMP and UDP with raw sockets;
   * unprivileged, and for TCP (the kernel writes a connect's headers),
   * the probe fails with ENOTSUP. IPv4 only.
   *
   * df: IPv4: IP_MTU_DISCOVER for this send (SET: IP_PMTUDISC_DO, a
   * datagram over the known path MTU fails locally with EMSGSIZE and a
   * router that cannot forward it answers frag_needed; CLEAR:
   * IP_PMTUDISC_DONT, fragmented where needed). IPv6 has no DF bit and
   * its routers never fragment: SET/CLEAR is IPV6_DONTFRAG, whether the
   * sender refuses (EMSGSIZE) or fragments a datagram over the path MTU.
   * TCP: IPv4 only (on IPv6 the probe fails with ENOTSUP: TCP never
   * fragments). PROBE: DF set as with SET, but under IP_PMTUDISC_PROBE /
   * IPV6_PMTUDISC_PROBE: the send is limited by the outgoing device's MTU
   * only, not by a smaller path MTU that an earlier frag_needed /
   * packet_too_big taught the kernel (with SET such a send fails locally
   * with EMSGSIZE, and the router that sent the ICMP is not found again);
   * a failed send's result names the device MTU in mtu.
   *
   * flow_label (when has_flow_label): the IPv6 flow label, 0..0xFFFFF,
   * instead of the one Linux derives from the flow (0: unlabelled).
   * IPV6_FLOWINFO_SEND; where the kernel wants a lease (someone in the
   * network namespace holds an exclusive one) the engine takes a shared
   * lease for the send (IPV6_FLOWLABEL_MGR), and a label leased
   * exclusively by another socket fails the probe with EPERM. Every
   * protocol, with or without privileges. IPv6 only.
   */
  uint16_t ip_id;
  sonde_df_t df;
  int has_flow_label;
  uint32_t flow_label;
  /* TCP only: after connect, write payload (if any), then read until expect
   * appears (if any; else until the first bytes). Copied at start. */
  const uint8_t *payload;
  size_t payload_len;
  const uint8_t *expect;
  size_t expect_len;
  /* TCP only: how the probe goes out (see sonde_tcp_mode_t). */
  sonde_tcp_mode_t tcp_mode;
  /*
   * Where the probe leaves from (README "Source address and interface").
   *
   * src (ss_family 0: the route's choice): the source address, of dst's
   * family (else EINVAL at start); its port is ignored. It must be one of
   * this host's addresses in the engine's network namespace: the engine
   * checks with a bind() of a datagram socket before anything is sent, and
   * a foreign address fails the probe with EADDRNOTAVAIL (call
   * "bind(src)"), on every path, raw IP_HDRINCL (ip_id) and SYN included:
   * a probe never leaves with a forged source. Every socket of the probe
   * is bound to it or sends with it (IP_PKTINFO / IPV6_PKTINFO on the
   * engine's shared sockets), and a reply's quote must name it.
   *
   * iface (empty: none): the interface the probe leaves by, NUL-terminated
   * (at most SONDE_IFNAMSIZ - 1 bytes, else EINVAL at start). Per-probe
   * sockets get SO_BINDTODEVICE, shared ones the interface's index per
   * packet; a device enslaved to a Linux VRF routes through the VRF's
   * table. The source is then the route's over that interface unless src
   * says. An unknown interface fails the probe with ENODEV, a kernel that
   * keeps SO_BINDTODEVICE to CAP_NET_RAW with EPERM (call
   * "setsockopt(SO_BINDTODEVICE)").
   */
  struct sockaddr_storage src;
  char iface[SONDE_IFNAMSIZ];
} sonde_probe_spec_t;

/* How a probe ended. Valid only during the callback: copy what you keep.
 * Fields that do not apply hold their "none" value (noted per field). */
typedef struct {
  sonde_status_t status;
  sonde_kind_t kind;             /* for SONDE_STATUS_REPLY */
  sonde_unreach_t unreach;       /* for SONDE_KIND_DEST_UNREACHABLE */
  int error;                     /* negative errno, 0 if none */
  struct sockaddr_storage addr;  /* who answered; ss_family 0 if unknown */
  struct sockaddr_storage src;   /* our source address, if known */
  double rtt;                    /* seconds, monotonic; < 0 if none */
  int ttl;                       /* the probe's TTL */
  int reply_ttl;                 /* TTL/hop limit of the reply; -1 unknown */
  int icmp_type;                 /* -1 if the reply was not ICMP */
  int icmp_code;
  int quoted_ttl;                /* TTL in the quoted header; -1 unknown */
  int mtu;                       /* next-hop MTU (frag needed / too big) */
  uint32_t seq;
  uint16_t sport;
  uint16_t dport;
  uint16_t echo_id;
  uint16_t echo_seq;
  int attempts;                  /* sockets tried (self-connect/EADDRNOTAVAIL retries) */
  int connected;                 /* TCP: the connection was established */
  double response;               /* TCP session: seconds from send to the
                                    reply data / match; < 0 if none */
  size_t received;               /* TCP session: bytes read */
  int matched;                   /* TCP session: expect was found */
  /* The header fields the probe asked for (see the spec): */
  uint16_t ip_id;                /* 0 if none */
  int df;                        /* 1 set, 0 clear, -1 the kernel's choice */
  int32_t flow_label;            /* -1 if none */
  const char *call;              /* with error: the call that failed ("bind",
                                    "connect", "sendmsg", ...); static string */
  int n_mpls;
  sonde_mpls_t mpls[SONDE_MPLS_MAX];
  int mpls_truncated;            /* the stack had more than SONDE_MPLS_MAX */
  /* RFC 4884 objects other than MPLS (RFC 5837 interface information,
   * unknown classes), in the order the router wrote them */
  int n_ext;
  int ext_truncated;             /* more than SONDE_EXT_MAX objects */
  sonde_ext_t ext[SONDE_EXT_MAX];
  /* The quote compared with what the probe carried (raw ICMP replies):
   * fields that differ; a field the router did not quote is not listed. */
  int n_changes;
  sonde_change_t changes[SONDE_CHANGES_MAX];
  int nat;                       /* 1: NAT evidence: the quote names
                                    another source address or port (ICMP
                                    echo id) than the probe's, or shows a
                                    checksum rewritten alone (Dublin) */
  struct sockaddr_storage quoted_src; /* with nat, when the source address
                                         changed: the quoted one (else
                                         AF_UNSPEC) */
  char iface[SONDE_IFNAMSIZ];    /* the spec's iface ("" without); src above
                                    is the spec's src when it was refused
                                    (EADDRNOTAVAIL, call "bind(src)") */
} sonde_result_t;

typedef struct sonde_engine sonde_engine_t;

/*
 * Called exactly once for every probe that sonde_probe_start() accepted,
 * with its id, its outcome and the data given to sonde_probe_start(). It
 * runs from the loop (never from inside sonde_probe_start()), or from
 * inside sonde_probe_cancel() / sonde_engine_close() for the probes they
 * end. It may start probes, cancel probes and close the engine. res is
 * valid only during the call.
 */
typedef void (*sonde_probe_cb)(sonde_engine_t *eng, uint64_t id,
                               const sonde_result_t *res, void *data);
/*
 * Called once, from the loop, when a closing engine has released every
 * socket and handle (see sonde_engine_close). The engine is freed right
 * after it returns: eng must not be used again.
 */
typedef void (*sonde_close_cb)(sonde_engine_t *eng, void *data);

/* How an engine hears ICMP (see README "Privileges"). */
typedef enum {
  SONDE_PRIV_AUTO = 0, /* raw sockets if allowed, else unprivileged */
  SONDE_PRIV_RAW,      /* raw sockets or EPERM */
  SONDE_PRIV_UNPRIV    /* ICMP datagram ("ping") sockets and IP_RECVERR */
} sonde_priv_t;

typedef struct {
  double rate;       /* probes per second, engine-wide; 0 = unlimited */
  int window;        /* probes in flight at most; 0 = default (256) */
  double wait;       /* default per-probe wait in seconds; 0 = 5.0 */
  uint16_t echo_id;  /* ICMP echo id; 0 = derived from the pid (raw mode;
                        ping sockets get theirs from the kernel) */
  sonde_priv_t priv;
  /* Nonzero: plain ICMP echo probes (no ip_id, df or flow label; at most
   * 256 bytes) are sent by a thread of the engine's own, so that the
   * loop's thread reads replies meanwhile; their send time is still taken
   * just before sendmsg(). For sweeps, where the kernel's work inside
   * sendmsg() and the work per reply are both large. The thread only calls
   * sendmsg() on the engine's sockets and ends before they are closed. */
  int send_thread;
  /* How TCP probes whose spec says SONDE_TCP_AUTO go out (their spec's
   * tcp_mode, when not AUTO, wins). */
  sonde_tcp_mode_t tcp_mode;
} sonde_engine_opts_t;

typedef struct {
  uint64_t started;      /* probes accepted */
  uint64_t sent;         /* probes put on the wire */
  uint64_t replies;      /* probes ended with a reply */
  uint64_t timeouts;
  uint64_t skipped;
  uint64_t failed;
  uint64_t received;     /* ICMP packets read from the receive sockets */
  uint64_t ignored;      /* packets read that matched no probe of ours */
  uint64_t malformed;    /* packets that failed to parse */
  uint64_t dropped;      /* packets the kernel dropped: receive buffer full */
  uint64_t send_retries; /* ENOBUFS/EAGAIN at send, retried */
  uint64_t in_flight;    /* now */
  uint64_t queued;       /* now: accepted, waiting for rate or window */
} sonde_stats_t;

/*
 * Create an engine on loop (which the caller owns and runs). opts may be NULL
 * (every option zero: the defaults). On success *out owns no socket yet:
 * receive sockets open with the first probe that needs them. The engine is
 * the caller's until sonde_engine_close(); the loop must outlive it (until
 * the close callback has run). Returns 0; or SONDE_EINVAL (a negative
 * rate, window or wait, a NaN rate or wait, an unknown priv, a NULL loop)
 * or SONDE_ENOMEM, and *out is NULL.
 */
SONDE_EXTERN int sonde_engine_new(uv_loop_t *loop,
                                  const sonde_engine_opts_t *opts,
                                  sonde_engine_t **out);

/*
 * Cancel every probe (their callbacks run before this returns, with status
 * FAILED, error ECANCELED), close every socket and handle, then, from the
 * loop, call cb (may be NULL) and free the engine. The caller keeps running
 * the loop until cb has run: the loop has no handle of the engine left then
 * (uv_loop_close() can succeed). May be called from a probe callback. From
 * the call on, sonde_probe_start() refuses new probes (SONDE_ECANCELED) and
 * a second sonde_engine_close() does nothing; after cb, eng is gone.
 */
SONDE_EXTERN void sonde_engine_close(sonde_engine_t *eng, sonde_close_cb cb,
                                     void *data);

/* The loop the engine runs on (the one given to sonde_engine_new(); the
 * engine never closes it). */
SONDE_EXTERN uv_loop_t *sonde_engine_loop(sonde_engine_t *eng);

/*
 * Start a probe. The spec is copied; the probe is queued, sent from the loop
 * as rate and window allow, and ends in exactly one call of cb(eng, id, res,
 * data). Returns the probe's id (> 0, below 2^53: exact in a double; unique
 * among the engine's live probes) or a negative errno for a spec that
 * cannot be sent at all, and then cb is never called: SONDE_EINVAL (ttl
 * outside 1..255, an unknown proto, bind or df, size over SONDE_SIZE_MAX, payload or
 * expect on a non-TCP probe, a pattern over SONDE_PATTERN_MAX bytes, with
 * fill or on a TCP probe, ip_id on IPv6, a flow label on IPv4 or over
 * 0xFFFFF, a NaN wait, cb NULL), SONDE_EAFNOSUPPORT (dst
 * is neither AF_INET nor AF_INET6), SONDE_ENOMEM, SONDE_ECANCELED (the
 * engine is closing). What goes wrong later (no route, no permission, a
 * busy source port, another probe in flight with the same identity:
 * EEXIST) is the probe's outcome, given to cb.
 */
SONDE_EXTERN int64_t sonde_probe_start(sonde_engine_t *eng,
                                       const sonde_probe_spec_t *spec,
                                       sonde_probe_cb cb, void *data);

/*
 * Change a probe's wait to `wait` seconds after it was sent (before it is
 * sent: after it will be sent). A wait already past ends the probe as a
 * timeout on the next loop iteration. Returns 0, SONDE_ENOENT if the probe
 * has already ended (or id was never one), or SONDE_EINVAL for a negative
 * or NaN wait.
 */
SONDE_EXTERN int sonde_probe_set_wait(sonde_engine_t *eng, uint64_t id,
                                      double wait);

/*
 * End a probe now, queued or in flight: its callback runs before this
 * returns, with status FAILED, error ECANCELED. Returns 0, or SONDE_ENOENT
 * if the probe has already ended (its callback has run).
 */
SONDE_EXTERN int sonde_probe_cancel(sonde_engine_t *eng, uint64_t id);

/*
 * Read the packets that have already arrived on the engine's shared
 * receive sockets (raw ICMP, ICMP datagram, shared UDP; not a probe's own
 * socket), without waiting, and end the probes they answer: their
 * callbacks run before this returns. For a timer of the caller's that is
 * about to give up on probes: libuv runs due timers before it polls for
 * I/O, so after the process was kept off the CPU a reply that arrived in
 * time may still be unread. Returns how many packets were read.
 */
SONDE_EXTERN int sonde_engine_read_pending(sonde_engine_t *eng);

/*
 * How the engine hears ICMP for a family: 1 raw sockets, 0 unprivileged
 * (ping sockets and socket error queues), -1 not decided yet (no probe of
 * that family has been sent).
 */
SONDE_EXTERN int sonde_engine_privileged(const sonde_engine_t *eng, int af);

/*
 * How the engine sends the TCP probes of family af (AF_INET, AF_INET6)
 * whose spec says SONDE_TCP_AUTO and that need no connection:
 * SONDE_TCP_SYN or SONDE_TCP_CONNECT, deciding it now (the raw sockets
 * open on the first call), or a negative errno (the engine option says
 * syn and the raw TCP socket cannot open: EPERM without CAP_NET_RAW) with
 * *call (if call is not NULL) naming the call that failed.
 */
SONDE_EXTERN int sonde_engine_tcp_mode(sonde_engine_t *eng, int af,
                                       const char **call);

/*
 * Open raw ICMP and ICMPv6 sockets now, while the process may, for engines
 * created later, after it has dropped its privileges: each engine takes
 * one (two per family are kept; ownership passes to the engine that takes
 * it, which closes it when it closes), and the send-only ones of the first
 * engine that needs them: raw UDP per family (Paris UDP) and one IPv4
 * IPPROTO_RAW (probes with an ip_id). Process-wide; call it from one
 * thread, before the engines exist. Returns how many are open, or a
 * negative errno (SONDE_EPERM without CAP_NET_RAW). Without it, an engine
 * opens its raw sockets itself when its first probe needs them.
 */
SONDE_EXTERN int sonde_raw_preopen(void);
/* Close the pre-opened raw sockets that no engine has taken (at exit, or
 * once every engine that needs one exists). Engines keep theirs. */
SONDE_EXTERN void sonde_raw_release(void);

/*
 * The source address a probe of this spec would leave from (nothing is
 * sent), into *src: its src, checked one of this host's (SONDE_
 * EADDRNOTAVAIL), or the route's towards dst over its iface (SONDE_ENODEV,
 * SONDE_EPERM), or without either what sonde_route_source says. Only dst,
 * src and iface are read. SONDE_EINVAL: src of another family than dst, or
 * an iface without its NUL.
 */
SONDE_EXTERN int sonde_probe_source(sonde_engine_t *eng,
                                    const sonde_probe_spec_t *spec,
                                    struct sockaddr_storage *src);

/*
 * The source address the kernel uses towards dst (a routing decision: no
 * packet is sent), into *src. Returns 0, or a negative errno (SONDE_
 * ENETUNREACH: no route; SONDE_EAFNOSUPPORT: dst is not IPv4/IPv6).
 */
SONDE_EXTERN int sonde_route_source(sonde_engine_t *eng,
                                    const struct sockaddr_storage *dst,
                                    struct sockaddr_storage *src);

/* Copy the engine's counters into *out (a snapshot: counts since the engine
 * was created, and what is in flight and queued now). */
SONDE_EXTERN void sonde_engine_stats(const sonde_engine_t *eng,
                                     sonde_stats_t *out);

/*
 * Names and messages of errnos (err negative, as returned; a positive errno
 * is taken as its negative). sonde_err_name() gives the map's name, else
 * the system's name of the errno (glibc's strerrorname_np), else "UNKNOWN";
 * sonde_strerror() the map's message, else strerror()'s, else "success"
 * for 0. Never NULL. The strings are static: do not free them (one from
 * strerror() may be overwritten by the next call).
 */
/* -EADDRINUSE -> "EADDRINUSE" */
SONDE_EXTERN const char *sonde_err_name(int err);
SONDE_EXTERN const char *sonde_strerror(int err); /* message of the map */
/* The status a probe takes when the engine meets err while sending (the
 * map's STATUS column; SONDE_STATUS_FAILED for an errno outside the map). */
SONDE_EXTERN sonde_status_t sonde_err_status(int err);
/* The name of a changed quote field ("dscp", "src", ...; "unknown"
 * outside the map). Static string. */
SONDE_EXTERN const char *sonde_field_name(sonde_field_t field);
/* Look up an errno by name ("EADDRINUSE" -> -EADDRINUSE); 0 if unknown. */
SONDE_EXTERN int sonde_err_from_name(const char *name);

/* The engine's version, "MAJOR.MINOR.PATCH" (static string). */
SONDE_EXTERN const char *sonde_version(void);

/* The names of the outcome vocabulary and of the protocols, as in Lua and
 * JSON (static strings; "unknown" for a value outside the enum;
 * SONDE_KIND_NONE and SONDE_UNREACH_NONE are "none"). */
/* "reply", "timeout", ... */
SONDE_EXTERN const char *sonde_status_name(sonde_status_t st);
/* "time_exceeded", ... */
SONDE_EXTERN const char *sonde_kind_name(sonde_kind_t kind);
/* "port", "host", ... */
SONDE_EXTERN const char *sonde_unreach_name(sonde_unreach_t code);
/* "icmp", ... */
SONDE_EXTERN const char *sonde_proto_name(sonde_proto_t proto);

/* Fill *out with addr:port parsed from a numeric IPv4/IPv6 string (no name
 * resolution; an IPv6 zone, "fe80::1%eth0" or "fe80::1%2", becomes the
 * scope id; *out is zeroed first). Returns 0, or SONDE_EINVAL when text is
 * NULL, not a numeric address, or names a zone this host has no interface
 * for. */
SONDE_EXTERN int sonde_addr_parse(const char *text, uint16_t port,
                                  struct sockaddr_storage *out);
/* Format an address (no port) into buf as inet_ntop() does (len >=
 * INET6_ADDRSTRLEN is always enough); returns buf, which holds "" when addr
 * is neither AF_INET nor AF_INET6 or buf is too short. */
SONDE_EXTERN const char *sonde_addr_format(const struct sockaddr_storage *addr,
                                           char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SONDE_H */

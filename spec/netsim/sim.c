/*
 * sim.c - what a probe that came out of the TUN device gets back.
 *
 * The probe is read with the engine's own quote parser (a probe and the
 * packet an ICMP error quotes have the same shape), its place on the path
 * found from its destination and TTL, and the reply built with the
 * builders of replies.c and the engine's IP header: time exceeded from the
 * hop at the probe's TTL, or at the destination an echo reply, a port
 * unreachable, a SYN-ACK or a RST. The reply is then queued for its time (sched.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "netsim.h"
#include "replies.h"

/* What the prober's kernel and sonde send that is a probe for us. */
enum { P_ECHO = 1, P_UDP, P_SYN };

/* Linux quotes as much of the offending datagram as fits in a 576-byte
 * (IPv4, RFC 1812 4.3.2.3) or 1280-byte (IPv6, RFC 4443 2.4) error. With an
 * extension, routers quote 128 bytes (RFC 4884 5.1). */
#define QUOTE_MAX4 (576 - 20 - 8)
#define QUOTE_MAX6 (1280 - 40 - 8)
#define QUOTE_EXT 128
#define EXT_MAX (4 + 4 + 4 * NETSIM_MAX_MPLS + 96) /* + RFC 5837: 4 + 4 + 20 + 64 + 4 */

typedef struct {
  int kind;                 /* P_* */
  sonde__quote_t q;         /* the probe, parsed as a quote */
  size_t l4_off;            /* where its transport header starts */
  const uint8_t *pkt;
  size_t len;
  uint8_t tcp_flags;
} probe_t;

/* splitmix64 (Vigna): small, seedable, good enough for loss and jitter. */
double netsim_random(netsim_t *ns) {
  uint64_t z = (ns->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0; /* 2^53 */
}

static int chance(netsim_t *ns, double p) {
  if (p <= 0)
    return 0;
  if (p >= 1)
    return 1;
  return netsim_random(ns) < p;
}

static int alen(int af) { return af == AF_INET ? 4 : 16; }

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static const uint8_t *q_src(const sonde__quote_t *q) {
  return q->af == AF_INET ? (const uint8_t *)&q->src4
                          : (const uint8_t *)&q->src6;
}

static const uint8_t *q_dst(const sonde__quote_t *q) {
  return q->af == AF_INET ? (const uint8_t *)&q->dst4
                          : (const uint8_t *)&q->dst6;
}

/* Is this a probe we answer? 0 and *p filled, or -1. */
static int classify(int af, const uint8_t *pkt, size_t len, probe_t *p) {
  int v = len ? pkt[0] >> 4 : 0;

  memset(p, 0, sizeof(*p));
  if ((af == AF_INET && v != 4) || (af == AF_INET6 && v != 6))
    return -1;
  if (sonde__parse_quote(af, pkt, len, &p->q) != 0 || p->q.l4_len == 0)
    return -1; /* malformed, or a later fragment */
  /* The device hands over whole datagrams. Fragments are not answered:
   * sonde's probes fit the device's MTU (1500). */
  if (af == AF_INET && (p->q.ip_total_len != len || (get16(pkt + 6) & 0x3fff)))
    return -1;
  if (af == AF_INET6 && pkt[6] == IPPROTO_FRAGMENT)
    return -1;
  p->pkt = pkt;
  p->len = len;
  p->l4_off = len - p->q.l4_len;
  if (p->q.has_icmp_echo) {
    p->kind = P_ECHO;
  } else if (p->q.proto == IPPROTO_UDP && p->q.has_ports) {
    p->kind = P_UDP;
  } else if (p->q.proto == IPPROTO_TCP && p->q.l4_len >= 20) {
    /* Only a SYN starts a probe; the prober's kernel answers our SYN-ACK
     * with an ACK, then sonde closes with a RST: not probes. */
    p->tcp_flags = pkt[p->l4_off + 13];
    if ((p->tcp_flags & (NETSIM_TCP_SYN | NETSIM_TCP_ACK | NETSIM_TCP_RST)) !=
        NETSIM_TCP_SYN)
      return -1;
    p->kind = P_SYN;
  } else {
    return -1;
  }
  return 0;
}

/* The hop that answers, and whether it answers as the destination. */
static netsim_hop_t *find_hop(netsim_scenario_t *sc, const probe_t *p,
                              int *as_dest) {
  const uint8_t *dst = q_dst(&p->q);
  int end = -1, i, t;

  if (memcmp(dst, sc->target, (size_t)alen(sc->af)) == 0) {
    end = sc->dest;
  } else {
    /* A probe to a router's own address goes that far on the same path. */
    for (i = 0; i < sc->n_hops && end < 0; i++)
      if (sc->hops[i].has_addr &&
          memcmp(dst, sc->hops[i].addr, (size_t)alen(sc->af)) == 0)
        end = i;
  }
  if (end < 0)
    return NULL;
  if (p->q.ttl >= sc->hops[end].ttl) {
    *as_dest = 1;
    return &sc->hops[end];
  }
  *as_dest = 0;
  t = sc->by_ttl[p->q.ttl];
  return t < 0 ? NULL : &sc->hops[t];
}

/* Token bucket of a hop's ICMP messages; 1 if one may be sent now. */
static int rate_ok(netsim_hop_t *h, uint64_t now) {
  if (h->rate_limit <= 0)
    return 1;
  if (h->tokens_ns == 0) {
    h->tokens = h->rate_burst;
  } else {
    h->tokens += (double)(now - h->tokens_ns) / 1e9 * h->rate_limit;
    if (h->tokens > h->rate_burst)
      h->tokens = h->rate_burst;
  }
  h->tokens_ns = now;
  if (h->tokens < 1)
    return 0;
  h->tokens -= 1;
  return 1;
}

/* The probe as the hop saw it: TTL decremented by the routers before it
 * (the IPv4 header checksum redone, as they do), then cut to qmax bytes.
 * Returns the quote's length. */
static size_t make_quote(const probe_t *p, int seen_ttl, size_t qmax,
                         uint8_t *out) {
  size_t n = p->len < qmax ? p->len : qmax;
  uint8_t hdr[60];
  size_t hl = p->q.af == AF_INET ? (size_t)(p->pkt[0] & 0x0f) * 4 : 40;

  memcpy(hdr, p->pkt, hl);
  if (p->q.af == AF_INET) {
    hdr[8] = (uint8_t)seen_ttl;
    hdr[10] = hdr[11] = 0;
    {
      uint16_t c = sonde__cksum(hdr, hl, 0);
      hdr[10] = (uint8_t)(c >> 8);
      hdr[11] = (uint8_t)c;
    }
  } else {
    hdr[7] = (uint8_t)seen_ttl;
  }
  memcpy(out, p->pkt, n);
  memcpy(out, hdr, n < hl ? n : hl);
  return n;
}

static uint32_t isn_of(const probe_t *p) {
  uint32_t h = 2166136261u; /* FNV-1a over the ports and the SYN's seq */
  uint32_t v[3] = {p->q.sport, p->q.dport, p->q.tcp_seq};
  int i;
  for (i = 0; i < 3; i++) {
    h = (h ^ (v[i] & 0xffff)) * 16777619u;
    h = (h ^ (v[i] >> 16)) * 16777619u;
  }
  return h;
}

typedef struct {
  const char *what;     /* for -v */
  int icmp;             /* an ICMP message (rate-limited, --check parses) */
  int error;            /* an ICMP error with a quote */
  sonde_kind_t kind;
  int seen_ttl;
  size_t qlen;          /* quote length */
  int has_ext;
} built_t;

/* Build the reply into ns->sbuf. Returns its length or a negative errno. */
static int build(netsim_t *ns, const probe_t *p, const netsim_hop_t *h,
                 int as_dest, built_t *b) {
  netsim_scenario_t *sc = ns->sc;
  int af = sc->af, r, n;
  size_t hl = af == AF_INET ? 20 : 40, cap = sizeof(ns->sbuf) - hl;
  uint8_t *l4 = ns->sbuf + hl;
  const uint8_t *src = h->addr, *dst = q_src(&p->q);
  uint8_t proto = af == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  int ttl = h->reply_ttl > 0 ? h->reply_ttl : (65 - h->ttl > 0 ? 65 - h->ttl : 1);

  memset(b, 0, sizeof(*b));
  b->seen_ttl = as_dest ? p->q.ttl - h->ttl + 1 : 1;
  if (as_dest && p->kind == P_ECHO) {
    b->what = "echo reply";
    b->icmp = 1;
    b->kind = SONDE_KIND_ECHO_REPLY;
    n = netsim_build_echo_reply(af, l4, cap, p->q.icmp_id, p->q.icmp_seq,
                                p->pkt + p->l4_off + 8,
                                p->q.l4_len - 8, src, dst);
  } else if (as_dest && p->kind == P_SYN) {
    netsim_tcp_seg_t t;
    memset(&t, 0, sizeof(t));
    t.af = af;
    t.src = src;
    t.dst = dst;
    t.sport = p->q.dport;
    t.dport = p->q.sport;
    t.ack = p->q.tcp_seq + 1;
    if (sc->tcp == NETSIM_OPEN) {
      b->what = "syn-ack";
      t.seq = isn_of(p);
      t.flags = NETSIM_TCP_SYN | NETSIM_TCP_ACK;
      t.window = 65535;
      t.mss = af == AF_INET ? 1460 : 1440;
    } else {
      b->what = "rst";
      t.flags = NETSIM_TCP_RST | NETSIM_TCP_ACK;
    }
    proto = IPPROTO_TCP;
    n = netsim_build_tcp(l4, cap, &t);
  } else {
    /* An ICMP error: time exceeded on the way, port unreachable at the
     * destination of a UDP probe. */
    uint8_t quote[QUOTE_MAX6], ext[EXT_MAX];
    netsim_icmp_error_t e;
    size_t qmax = af == AF_INET ? QUOTE_MAX4 : QUOTE_MAX6;
    int want_ext = h->n_mpls > 0 || h->padded_extension || h->has_ifinfo ||
                   h->length_in_bytes;

    memset(&e, 0, sizeof(e));
    e.af = af;
    e.src = src;
    e.dst = dst;
    if (as_dest) {
      b->what = "port unreachable";
      b->kind = SONDE_KIND_DEST_UNREACHABLE;
      e.type = af == AF_INET ? 3 : 1;
      e.code = af == AF_INET ? 3 : 4;
    } else {
      b->what = "time exceeded";
      b->kind = SONDE_KIND_TIME_EXCEEDED;
      e.type = af == AF_INET ? 11 : 3;
    }
    if (want_ext) {
      r = netsim_build_mpls_ext(ext, sizeof(ext), h->mpls, h->n_mpls);
      if (r >= 0 && h->has_ifinfo)
        r = netsim_append_ifinfo(ext, (size_t)r, sizeof(ext), &h->ifinfo);
      if (r < 0)
        return r;
      e.ext = ext;
      e.ext_len = (size_t)r;
      e.ext_form = h->length_in_bytes    ? NETSIM_EXT_BYTES
                   : h->padded_extension ? NETSIM_EXT_PADDED
                                         : NETSIM_EXT_RFC4884;
      qmax = QUOTE_EXT;
      b->has_ext = 1;
    }
    if (h->quote_bytes >= 0)
      qmax = (size_t)h->quote_bytes < sizeof(quote) ? (size_t)h->quote_bytes
                                                     : sizeof(quote);
    if (want_ext && !h->padded_extension && !h->length_in_bytes &&
        qmax > (af == AF_INET ? 1020u : 2040u))
      qmax = af == AF_INET ? 1020 : 2040;
    b->qlen = make_quote(p, b->seen_ttl, qmax, quote);
    e.quote = quote;
    e.quote_len = b->qlen;
    b->icmp = b->error = 1;
    n = netsim_build_icmp_error(l4, cap, &e);
  }
  if (n < 0)
    return n;
  r = sonde__build_ip(af, ns->sbuf, sizeof(ns->sbuf), src, dst, proto,
                      (uint8_t)ttl, ns->ip_id++, (size_t)n);
  if (r < 0)
    return r;
  if (h->bad_checksum) {
    /* Any change but 0x0000 <-> 0xffff (one's complement zeros) breaks it */
    size_t at = hl + (proto == IPPROTO_TCP ? 16 : 2);
    ns->sbuf[at] ^= 0x01;
    ns->sbuf[at + 1] ^= 0x01;
  }
  return (int)hl + n;
}

static int check_fail(netsim_t *ns, const char *what, const char *why) {
  ns->stats.check_failed++;
  fprintf(stderr, "sonde-netsim: check failed: %s: %s\n", what, why);
  return -1;
}

/*
 * --check: read the reply back with the engine's parser and compare it with
 * what was meant (a round trip through both halves of packet.c).
 */
static int check(netsim_t *ns, const probe_t *p, const netsim_hop_t *h,
                 const built_t *b, const uint8_t *pkt, size_t len) {
  int af = ns->sc->af, r, i, valid;
  size_t hl = af == AF_INET ? 20 : 40;
  const uint8_t *l4 = pkt + hl;
  uint8_t proto = pkt[af == AF_INET ? 9 : 6];
  sonde__icmp_t m;
  int n_mpls = h->n_mpls < SONDE_MPLS_MAX ? h->n_mpls : SONDE_MPLS_MAX;

  ns->stats.checked++;
  valid = sonde__l4_cksum(af, pkt + (af == AF_INET ? 12 : 8),
                          pkt + (af == AF_INET ? 16 : 24), proto, l4,
                          len - hl) == 0;
  if (valid == h->bad_checksum)
    return check_fail(ns, b->what, "checksum not as the scenario says");
  if (!b->icmp)
    return 0;
  r = af == AF_INET ? sonde__parse_icmp4(pkt, len, &m)
                    : sonde__parse_icmp6(l4, len - hl, &m);
  if (af == AF_INET && h->bad_checksum)
    return r == -EBADMSG ? 0
                         : check_fail(ns, b->what, "bad checksum accepted");
  if (b->error && b->qlen < (af == AF_INET ? (size_t)(p->pkt[0] & 0x0f) * 4
                                          : 40)) /* no whole IP header */
    return r == -EBADMSG ? 0
                         : check_fail(ns, b->what, "cut quote accepted");
  if (r != 0)
    return check_fail(ns, b->what, "does not parse");
  if (m.kind != b->kind)
    return check_fail(ns, b->what, "wrong kind");
  if (!b->error)
    return m.echo_id == p->q.icmp_id && m.echo_seq == p->q.icmp_seq
               ? 0
               : check_fail(ns, b->what, "wrong id/seq");
  /* Without an extension, a quote longer than 128 bytes whose byte 128
   * happens to read like an extension header is taken for the
   * non-compliant form, the quote cut there (as mtr and Trippy do):
   * sonde's own probe payloads never look like one, arbitrary ones may. */
  if (!b->has_ext && m.has_ext && b->qlen > 128)
    return 0;
  if (!m.has_quote ||
      (b->qlen >= p->l4_off && m.quote.proto != p->q.proto) ||
      m.quote.ttl != (uint8_t)b->seen_ttl ||
      memcmp(q_dst(&m.quote), q_dst(&p->q), (size_t)alen(af)) != 0)
    return check_fail(ns, b->what, "quote not the probe's");
  if (b->qlen >= p->l4_off + 8 &&
      ((p->kind == P_ECHO && (m.quote.icmp_id != p->q.icmp_id ||
                              m.quote.icmp_seq != p->q.icmp_seq)) ||
       (p->kind != P_ECHO && (m.quote.sport != p->q.sport ||
                              m.quote.dport != p->q.dport))))
    return check_fail(ns, b->what, "quoted identity differs");
  if (m.has_ext != b->has_ext || m.n_mpls != n_mpls)
    return check_fail(ns, b->what, "extension / MPLS stack not found");
  if (m.n_ext != h->has_ifinfo ||
      (h->has_ifinfo &&
       (m.ext[0].class_num != 2 || m.ext[0].role != h->ifinfo.role ||
        m.ext[0].ifindex != h->ifinfo.ifindex ||
        strcmp(m.ext[0].name, h->ifinfo.name) != 0 ||
        m.ext[0].mtu != h->ifinfo.mtu)))
    return check_fail(ns, b->what, "interface information differs");
  for (i = 0; i < n_mpls; i++)
    if (m.mpls[i].label != h->mpls[i].label ||
        m.mpls[i].exp != h->mpls[i].exp || m.mpls[i].s != h->mpls[i].s ||
        m.mpls[i].ttl != h->mpls[i].ttl)
      return check_fail(ns, b->what, "MPLS entry differs");
  return 0;
}

static const char *kind_name(int kind) {
  return kind == P_ECHO ? "icmp" : kind == P_UDP ? "udp" : "tcp";
}

void netsim_handle(netsim_t *ns, const uint8_t *pkt, size_t len,
                   uint64_t now) {
  netsim_scenario_t *sc = ns->sc;
  netsim_hop_t *h;
  probe_t p;
  built_t b;
  int as_dest = 0, n;
  double delay;
  char a1[INET6_ADDRSTRLEN], a2[INET6_ADDRSTRLEN];

  if (classify(sc->af, pkt, len, &p) < 0) {
    ns->stats.ignored++;
    return;
  }
  ns->stats.probes++;
  h = find_hop(sc, &p, &as_dest);
  if (h == NULL || h->silent ||
      (as_dest && ((p.kind == P_ECHO && sc->icmp == NETSIM_SILENT) ||
                   (p.kind == P_UDP && sc->udp == NETSIM_SILENT) ||
                   (p.kind == P_SYN && sc->tcp == NETSIM_SILENT)))) {
    ns->stats.silent++;
    if (ns->verbose)
      fprintf(stderr, "sonde-netsim: %s ttl %d to %s: no answer (silent)\n",
              kind_name(p.kind), p.q.ttl,
              netsim_ntop(sc->af, q_dst(&p.q), a1, sizeof(a1)));
    return;
  }
  /* The router's ICMP rate limit first, then loss on the way back. */
  if (!(as_dest && p.kind == P_SYN) && !rate_ok(h, now)) {
    ns->stats.rate_limited++;
    if (ns->verbose)
      fprintf(stderr, "sonde-netsim: %s ttl %d: rate-limited\n",
              kind_name(p.kind), p.q.ttl);
    return;
  }
  if (chance(ns, h->loss)) {
    ns->stats.lost++;
    if (ns->verbose)
      fprintf(stderr, "sonde-netsim: %s ttl %d: lost\n", kind_name(p.kind),
              p.q.ttl);
    return;
  }
  n = build(ns, &p, h, as_dest, &b);
  if (n < 0) {
    ns->stats.build_errors++;
    return;
  }
  if (ns->check)
    (void)check(ns, &p, h, &b, ns->sbuf, (size_t)n);
  delay = h->delay_ms;
  if (h->jitter_ms > 0)
    delay += (2 * netsim_random(ns) - 1) * h->jitter_ms;
  if (chance(ns, h->reorder))
    delay += h->reorder_ms;
  if (delay < 0)
    delay = 0;
  if (ns->verbose)
    fprintf(stderr, "sonde-netsim: %s ttl %d to %s: %s from %s in %.3f ms\n",
            kind_name(p.kind), p.q.ttl,
            netsim_ntop(sc->af, q_dst(&p.q), a1, sizeof(a1)), b.what,
            netsim_ntop(sc->af, h->addr, a2, sizeof(a2)), delay);
  netsim_sched(ns, ns->sbuf, (size_t)n, now + (uint64_t)llround(delay * 1e6));
  if (chance(ns, h->duplicate))
    netsim_sched(ns, ns->sbuf, (size_t)n,
                 now + (uint64_t)llround(delay * 1e6));
}

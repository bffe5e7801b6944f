/* engine.c - the engine: probe pool, send queue, rate and window, the one
 * deadline timer, completion, and closing. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK 256          /* probes allocated together; pointers stay put */
#define SLOT_BITS 20       /* id = generation << 20 | slot: exact in a double */
#define MAX_SLOTS (1u << SLOT_BITS)

static void arm(sonde_engine_t *eng);
static void maybe_finish(sonde_engine_t *eng);

uint64_t sonde__now(void) { return uv_hrtime(); }

void sonde__close_fd(int *fd) {
  if (*fd != -1) {
    close(*fd);
    *fd = -1;
  }
}

int sonde_engine_new(uv_loop_t *loop, const sonde_engine_opts_t *opts,
                     sonde_engine_t **out) {
  static uint16_t instances;
  sonde_engine_t *eng;
  int i;

  *out = NULL;
  if (loop == NULL)
    return SONDE_EINVAL;
  if (opts && (opts->rate < 0 || opts->window < 0 || opts->wait < 0 ||
               isnan(opts->rate) || isnan(opts->wait) ||
               opts->priv < SONDE_PRIV_AUTO || opts->priv > SONDE_PRIV_UNPRIV))
    return SONDE_EINVAL;
  eng = calloc(1, sizeof(*eng));
  if (eng == NULL)
    return SONDE_ENOMEM;
  if (opts)
    eng->opts = *opts;
  if (eng->opts.window == 0)
    eng->opts.window = SONDE__DEFAULT_WINDOW;
  if (eng->opts.wait == 0)
    eng->opts.wait = SONDE__DEFAULT_WAIT;
  eng->echo_id = eng->opts.echo_id
                     ? eng->opts.echo_id
                     : (uint16_t)(getpid() + 7919u * instances++);
  for (i = 0; i < 2; i++) {
    eng->icmp[i].fd = -1;
    eng->ping[i].fd = -1;
    eng->udp[i].fd = -1;
    eng->rawudp[i] = -1;
    eng->rawtcp[i].fd = -1;
  }
  eng->rawip = -1;
  for (i = 0; i < 3; i++)
    eng->echo_hold[i] = -1;
  eng->loop = loop;
  eng->generation = 1;
  eng->tokens = 1;
  eng->tokens_ns = sonde__now();
  uv_timer_init(loop, &eng->timer);
  eng->timer.data = eng;
  *out = eng;
  return 0;
}

uv_loop_t *sonde_engine_loop(sonde_engine_t *eng) { return eng->loop; }

void sonde_engine_stats(const sonde_engine_t *eng, sonde_stats_t *out) {
  *out = eng->stats;
}

int sonde_engine_privileged(const sonde_engine_t *eng, int af) {
  int i = sonde__afi(af);
  if (eng->unpriv[i])
    return 0;
  return eng->icmp[i].fd != -1 ? 1 : -1;
}

/* --- the probe pool ----------------------------------------------------- */

static int grow_pool(sonde_engine_t *eng) {
  sonde__probe_t *chunk;
  uint32_t i;
  if (eng->n_slots + CHUNK > MAX_SLOTS)
    return SONDE_ENOMEM;
  if (eng->n_slots + CHUNK > eng->cap_slots) {
    uint32_t cap = eng->cap_slots ? eng->cap_slots * 2 : 4 * CHUNK;
    sonde__probe_t **s = realloc(eng->slots, cap * sizeof(*s));
    if (s == NULL)
      return SONDE_ENOMEM;
    eng->slots = s;
    eng->cap_slots = cap;
  }
  chunk = calloc(CHUNK, sizeof(*chunk));
  if (chunk == NULL)
    return SONDE_ENOMEM;
  for (i = CHUNK; i-- > 0;) {
    sonde__probe_t *p = &chunk[i];
    p->slot = eng->n_slots + i;
    p->fd = -1;
    p->heap_idx = SIZE_MAX;
    p->eng = eng;
    eng->slots[p->slot] = p;
    p->qnext = eng->free_list;
    eng->free_list = p;
  }
  eng->n_slots += CHUNK;
  return 0;
}

static sonde__probe_t *probe_alloc(sonde_engine_t *eng) {
  sonde__probe_t *p;
  if (eng->free_list == NULL && grow_pool(eng) < 0)
    return NULL;
  p = eng->free_list;
  eng->free_list = p->qnext;
  if (++eng->generation >= (1u << 31))
    eng->generation = 1;
  p->id = ((uint64_t)eng->generation << SLOT_BITS) | p->slot;
  p->qnext = NULL;
  return p;
}

static void probe_release(sonde_engine_t *eng, sonde__probe_t *p) {
  uint32_t slot = p->slot;
  free(p->session);
  free(p->pending);
  memset(p, 0, sizeof(*p));
  p->slot = slot;
  p->fd = -1;
  p->heap_idx = SIZE_MAX;
  p->eng = eng;
  p->qnext = eng->free_list;
  eng->free_list = p;
}

sonde__probe_t *sonde__probe_find(sonde_engine_t *eng, uint64_t id) {
  uint32_t slot = (uint32_t)(id & (MAX_SLOTS - 1));
  sonde__probe_t *p;
  if (id == 0 || slot >= eng->n_slots)
    return NULL;
  p = eng->slots[slot];
  if (p->id != id || (p->state != SONDE__QUEUED && p->state != SONDE__INFLIGHT))
    return NULL;
  return p;
}

/* --- the send queue ------------------------------------------------------ */

static void enqueue(sonde_engine_t *eng, sonde__probe_t *p, int front) {
  p->state = SONDE__QUEUED;
  if (front) {
    p->qnext = eng->q_head;
    eng->q_head = p;
    if (eng->q_tail == NULL)
      eng->q_tail = p;
  } else {
    p->qnext = NULL;
    if (eng->q_tail)
      eng->q_tail->qnext = p;
    else
      eng->q_head = p;
    eng->q_tail = p;
  }
  eng->stats.queued++;
}

static void unqueue(sonde_engine_t *eng, sonde__probe_t *p) {
  sonde__probe_t **pp, *prev = NULL;
  for (pp = &eng->q_head; *pp; prev = *pp, pp = &(*pp)->qnext) {
    if (*pp == p) {
      *pp = p->qnext;
      if (eng->q_tail == p)
        eng->q_tail = prev;
      p->qnext = NULL;
      eng->stats.queued--;
      return;
    }
  }
}

int64_t sonde_probe_start(sonde_engine_t *eng, const sonde_probe_spec_t *spec,
                          sonde_probe_cb cb, void *data) {
  sonde__probe_t *p;
  int af = spec->dst.ss_family;

  if (eng->closing)
    return SONDE_ECANCELED;
  if (af != AF_INET && af != AF_INET6)
    return SONDE_EAFNOSUPPORT;
  if (cb == NULL || spec->ttl < 1 || spec->ttl > 255 ||
      sonde__proto_ops(spec->proto) == NULL ||
      spec->bind < SONDE_BIND_KERNEL || spec->bind > SONDE_BIND_FIXED ||
      isnan(spec->wait) || spec->size > SONDE__MAX_PAYLOAD ||
      spec->df < SONDE_DF_DEFAULT || spec->df > SONDE_DF_PROBE)
    return SONDE_EINVAL;
  /* Header fields the family has no room for (IPv6 has no identification
   * outside a fragment header, IPv4 no flow label). */
  if ((spec->ip_id && af != AF_INET) ||
      (spec->has_flow_label && (af != AF_INET6 || spec->flow_label > 0xfffff)))
    return SONDE_EINVAL;
  /* A source of the other family; an interface name without its NUL. */
  if ((spec->src.ss_family && spec->src.ss_family != af) ||
      memchr(spec->iface, '\0', sizeof(spec->iface)) == NULL)
    return SONDE_EINVAL;
  if (spec->pattern_len &&
      (spec->pattern_len > SONDE_PATTERN_MAX || spec->fill ||
       spec->proto == SONDE_PROTO_TCP))
    return SONDE_EINVAL;
  if ((spec->payload_len || spec->expect_len) &&
      (spec->proto != SONDE_PROTO_TCP || spec->payload_len > 65536 ||
       spec->expect_len > SONDE__SESSION_RBUF / 2))
    return SONDE_EINVAL;
  p = probe_alloc(eng);
  if (p == NULL)
    return SONDE_ENOMEM;
  p->spec = *spec;
  p->ops = sonde__proto_ops(spec->proto);
  if (spec->payload_len || spec->expect_len) {
    /* The session's own copy: payload, expect, then the read buffer. */
    p->session = malloc(spec->payload_len + spec->expect_len +
                        SONDE__SESSION_RBUF);
    if (p->session == NULL) {
      probe_release(eng, p);
      return SONDE_ENOMEM;
    }
    if (spec->payload_len)
      memcpy(p->session, spec->payload, spec->payload_len);
    if (spec->expect_len)
      memcpy(p->session + spec->payload_len, spec->expect, spec->expect_len);
    p->spec.payload = p->session;
    p->spec.expect = p->session + spec->payload_len;
  }
  p->cb = cb;
  p->data = data;
  p->wait = spec->wait > 0 ? spec->wait : eng->opts.wait;
  enqueue(eng, p, 0);
  eng->stats.started++;
  arm(eng);
  return (int64_t)p->id;
}

/* --- sending ------------------------------------------------------------- */

const sonde__proto_ops_t *sonde__proto_ops(int proto) {
  static const sonde__proto_ops_t *const ops[] = {
#define XX(NAME, name, value) [value] = &sonde__##name##_ops,
      SONDE_PROTO_MAP(XX)
#undef XX
  };
  return proto > 0 && (size_t)proto < sizeof(ops) / sizeof(ops[0])
             ? ops[proto]
             : NULL;
}

/* The probe is on its way: its wait runs from p->sent_ns, stamped just
 * before it was sent (see send_one). */
void sonde__probe_sent(sonde_engine_t *eng, sonde__probe_t *p) {
  if (p->sent_ns == 0)
    p->sent_ns = sonde__now();
  p->deadline_ns = p->sent_ns + (uint64_t)(p->wait * 1e9);
  if (sonde__heap_push(eng, p) < 0) {
    sonde__probe_fail(eng, p, SONDE_ENOMEM);
    return;
  }
  eng->stats.sent++;
}

static void send_one(sonde_engine_t *eng, sonde__probe_t *p) {
  int r;
  p->state = SONDE__INFLIGHT;
  eng->stats.in_flight++;
  /* The send time is taken before the send, not after: on veth and lo the
   * kernel may carry the packet across every hop, and queue the reply to
   * our receive socket with its receive timestamp, inside sendmsg()
   * itself. ICMP and UDP take it again immediately before sendmsg(), after
   * opening sockets; a TCP probe's runs from here (its socket, bind and
   * connect: some microseconds). */
  p->sent_ns = sonde__now();
  r = p->ops->send(eng, p);
  if (r == 0)
    return;
  if ((r == SONDE_ENOBUFS || r == SONDE_EAGAIN) && p->fd == -1 &&
      ++p->send_tries < SONDE__SEND_RETRIES) {
    /* A shared socket's buffer or the qdisc is full: back off and resend.
     * (A probe with a socket of its own fails instead, naming the errno.) */
    eng->stats.in_flight--;
    eng->stats.send_retries++;
    enqueue(eng, p, 1);
    eng->retry_ns = sonde__now() + 1000000ull * (uint64_t)p->send_tries;
    return;
  }
  sonde__probe_fail(eng, p, r);
}

static void refill(sonde_engine_t *eng, uint64_t now) {
  double burst;
  if (eng->opts.rate <= 0)
    return;
  burst = eng->opts.rate / 100.0 < 1 ? 1 : eng->opts.rate / 100.0;
  eng->tokens += (double)(now - eng->tokens_ns) * eng->opts.rate / 1e9;
  if (eng->tokens > burst)
    eng->tokens = burst;
  eng->tokens_ns = now;
}

static void pump(sonde_engine_t *eng) {
  uint64_t now = sonde__now();
  if (now < eng->retry_ns)
    return;
  refill(eng, now);
  while (eng->q_head && !eng->closing &&
         eng->stats.in_flight < (uint64_t)eng->opts.window &&
         now >= eng->retry_ns) {
    sonde__probe_t *p = eng->q_head;
    /* the sender thread's ring is full: wait for it (its outcomes re-arm
     * the timer), rather than send from here and compete with it */
    if (sonde__sender_full(eng))
      break;
    if (eng->opts.rate > 0) {
      if (eng->tokens < 1)
        break;
      eng->tokens -= 1;
    }
    eng->q_head = p->qnext;
    if (eng->q_head == NULL)
      eng->q_tail = NULL;
    p->qnext = NULL;
    eng->stats.queued--;
    send_one(eng, p);
  }
  sonde__sender_kick(eng);
}

/* --- the timer ------------------------------------------------------------ */

static void on_timer(uv_timer_t *t) {
  sonde_engine_t *eng = t->data;
  uint64_t now = sonde__now();
  sonde__probe_t *p;

  eng->in_timer = 1;
  /* A deadline is due: first the replies that arrived before it and wait
   * unread (sonde__recv_pending says why). */
  if ((p = sonde__heap_top(eng)) && p->deadline_ns <= now)
    sonde__recv_pending(eng);
  while (!eng->closing && (p = sonde__heap_top(eng)) && p->deadline_ns <= now) {
    sonde_result_t res;
    sonde__result_init(p, &res);
    res.status = SONDE_STATUS_TIMEOUT;
    sonde__probe_done(eng, p, &res);
  }
  if (!eng->closing)
    pump(eng);
  eng->in_timer = 0;
  arm(eng);
}

/* Arm the timer for whatever comes first: a deadline, a token, a resend. */
void sonde__arm(sonde_engine_t *eng) { arm(eng); }

static void arm(sonde_engine_t *eng) {
  uint64_t now, next = UINT64_MAX, delay;
  sonde__probe_t *top;

  if (eng->closing || eng->in_timer)
    return;
  now = sonde__now();
  if (eng->q_head && eng->stats.in_flight < (uint64_t)eng->opts.window &&
      !sonde__sender_full(eng)) {
    next = now;
    if (eng->retry_ns > now)
      next = eng->retry_ns;
    if (eng->opts.rate > 0) {
      refill(eng, now);
      if (eng->tokens < 1) {
        uint64_t t = now + (uint64_t)((1 - eng->tokens) * 1e9 / eng->opts.rate);
        if (t > next)
          next = t;
      }
    }
  }
  top = sonde__heap_top(eng);
  if (top && top->deadline_ns < next)
    next = top->deadline_ns;
  if (next == UINT64_MAX) {
    uv_timer_stop(&eng->timer);
    return;
  }
  delay = next > now ? (next - now + 999999) / 1000000 : 0;
  uv_timer_start(&eng->timer, on_timer, delay, 0);
}

/* --- ending probes ------------------------------------------------------- */

void sonde__result_init(const sonde__probe_t *p, sonde_result_t *res) {
  memset(res, 0, sizeof(*res));
  res->status = SONDE_STATUS_FAILED;
  res->rtt = -1;
  res->ttl = p->spec.ttl;
  res->reply_ttl = -1;
  res->icmp_type = -1;
  res->icmp_code = -1;
  res->quoted_ttl = -1;
  res->seq = p->spec.seq;
  res->attempts = p->attempts;
  res->call = p->call;
  res->connected = p->connected_ns != 0;
  res->response = -1;
  res->received = p->received;
  res->src = p->local;
  memcpy(res->iface, p->spec.iface, sizeof(res->iface));
  res->ip_id = p->spec.ip_id;
  res->df = p->spec.df ? p->spec.df != SONDE_DF_CLEAR : -1;
  res->flow_label = p->spec.has_flow_label ? (int32_t)p->spec.flow_label : -1;
  if (p->key.proto == SONDE_PROTO_ICMP) {
    res->echo_id = p->key.a;
    res->echo_seq = p->key.b;
  } else if (p->key.proto) {
    res->sport = p->key.a;
    res->dport = p->key.b;
  } else if (p->spec.proto == SONDE_PROTO_ICMP) {
    res->echo_id = p->spec.echo_id;
    res->echo_seq = p->spec.echo_seq;
  } else {
    /* Ended before it had a socket (e.g. skipped at bind): the port it
     * asked for under its policy. */
    uint32_t sport = p->spec.sport;
    if (p->spec.bind == SONDE_BIND_SEQUENCE && sport + p->spec.seq <= 65535)
      sport += p->spec.seq;
    res->sport = (uint16_t)sport;
    res->dport = p->spec.dport;
  }
}

/* A reply for p: status, kind, who answered (NULL: unknown), and the RTT
 * from p's send to `now`. */
void sonde__result_reply(const sonde__probe_t *p, sonde_result_t *res,
                         sonde_kind_t kind, const struct sockaddr_storage *addr,
                         uint64_t now) {
  sonde__result_init(p, res);
  res->status = SONDE_STATUS_REPLY;
  res->kind = kind;
  if (addr)
    res->addr = *addr;
  uint64_t sent = sonde__sent_ns(p);
  res->rtt = now > sent ? (double)(now - sent) / 1e9 : 0;
}

static void probe_poll_closed(uv_handle_t *h) {
  sonde__probe_t *p = h->data;
  sonde_engine_t *eng = p->eng;
  p->poll_init = 0;
  eng->pending_closes--;
  if (p->state == SONDE__CLOSING)
    probe_release(eng, p);
  else if (p->restart)
    p->restart(eng, p);
  maybe_finish(eng);
}

int sonde__probe_poll(sonde_engine_t *eng, sonde__probe_t *p, int events,
                      uv_poll_cb cb) {
  int r = uv_poll_init(eng->loop, &p->poll, p->fd);
  if (r == 0) {
    p->poll_init = 1;
    p->poll_closing = 0;
    p->poll.data = p;
    r = uv_poll_start(&p->poll, events, cb);
  }
  if (r < 0)
    p->call = "uv_poll_start";
  return r;
}

/*
 * Release a probe's own socket. Its poll handle is stopped before the fd is
 * closed (libuv must not poll a closed fd), and the handle's memory, inside
 * the probe, is reused only after its close callback.
 */
void sonde__probe_close_socket(sonde_engine_t *eng, sonde__probe_t *p,
                               sonde__restart_fn restart) {
  p->restart = restart;
  if (p->poll_init && !p->poll_closing) {
    uv_poll_stop(&p->poll);
    sonde__close_fd(&p->fd);
    p->poll_closing = 1;
    eng->pending_closes++;
    uv_close((uv_handle_t *)&p->poll, probe_poll_closed);
  } else {
    sonde__close_fd(&p->fd);
  }
}

void sonde__probe_done(sonde_engine_t *eng, sonde__probe_t *p,
                       sonde_result_t *res) {
  sonde_probe_cb cb = p->cb;
  void *data = p->data;
  uint64_t id = p->id;

  if (p->state == SONDE__QUEUED)
    unqueue(eng, p);
  else if (p->state == SONDE__INFLIGHT)
    eng->stats.in_flight--;
  else
    return;
  sonde__table_remove(eng, p);
  sonde__heap_remove(eng, p);
  sonde__syn_release(eng, p); /* a SYN probe's hold on its source port */
  switch (res->status) {
  case SONDE_STATUS_REPLY: eng->stats.replies++; break;
  case SONDE_STATUS_TIMEOUT: eng->stats.timeouts++; break;
  case SONDE_STATUS_SKIPPED: eng->stats.skipped++; break;
  default: eng->stats.failed++; break;
  }
  p->state = SONDE__CLOSING;
  p->id = 0;
  sonde__probe_close_socket(eng, p, NULL);
  if (!p->poll_closing)
    probe_release(eng, p);
  cb(eng, id, res, data);
  arm(eng);
}

void sonde__probe_fail(sonde_engine_t *eng, sonde__probe_t *p, int err) {
  sonde_result_t res;
  sonde__result_init(p, &res);
  res.status = sonde_err_status(err);
  if (res.status == SONDE_STATUS_REPLY)
    res.status = SONDE_STATUS_FAILED;
  res.error = err;
  /* over the path MTU the kernel knows (DF): name that MTU, as ping's
   * "message too long, mtu=1280"; a PROBE send is limited by the device's
   * MTU alone, which is then the one to name */
  if (err == SONDE_EMSGSIZE)
    res.mtu = sonde__path_mtu(&p->spec.dst, p->spec.df == SONDE_DF_PROBE);
  sonde__probe_done(eng, p, &res);
}

int sonde_probe_set_wait(sonde_engine_t *eng, uint64_t id, double wait) {
  sonde__probe_t *p = sonde__probe_find(eng, id);
  if (p == NULL)
    return SONDE_ENOENT;
  if (isnan(wait) || wait < 0)
    return SONDE_EINVAL;
  p->wait = wait;
  if (p->state == SONDE__INFLIGHT && p->heap_idx != SIZE_MAX) {
    p->deadline_ns = p->sent_ns + (uint64_t)(wait * 1e9);
    sonde__heap_update(eng, p);
    arm(eng);
  }
  return 0;
}

int sonde_engine_read_pending(sonde_engine_t *eng) {
  uint64_t before = eng->stats.received;
  if (eng->closing)
    return 0;
  eng->in_timer++; /* no re-arming for each probe that ends: once, below */
  sonde__recv_pending(eng);
  eng->in_timer--;
  arm(eng);
  return (int)(eng->stats.received - before);
}

int sonde_probe_cancel(sonde_engine_t *eng, uint64_t id) {
  sonde__probe_t *p = sonde__probe_find(eng, id);
  if (p == NULL)
    return SONDE_ENOENT;
  sonde__probe_fail(eng, p, SONDE_ECANCELED);
  return 0;
}

/* --- closing ---------------------------------------------------------------- */

/* One of the engine's handles is closed (the last one ends the engine). */
void sonde__closed_one(sonde_engine_t *eng) {
  eng->pending_closes--;
  maybe_finish(eng);
}

static void engine_handle_closed(uv_handle_t *h) {
  sonde__closed_one(h->data);
}

void sonde__handle_close(sonde_engine_t *eng, uv_handle_t *h) {
  h->data = eng;
  eng->pending_closes++;
  uv_close(h, engine_handle_closed);
}

static void maybe_finish(sonde_engine_t *eng) {
  uint32_t i;
  if (!eng->closing || eng->pending_closes > 0 || eng->finished)
    return;
  eng->finished = 1;
  if (eng->close_cb)
    eng->close_cb(eng, eng->close_data);
  for (i = 0; i < eng->n_slots; i += CHUNK)
    free(eng->slots[i]);
  for (i = 0; i < eng->n_flows; i++)
    free(eng->flows[i]);
  free(eng->flows);
  free(eng->slots);
  free(eng->heap);
  sonde__table_free(eng);
  free(eng);
}

void sonde_engine_close(sonde_engine_t *eng, sonde_close_cb cb, void *data) {
  uint32_t i;
  int k;
  if (eng->closing)
    return;
  /* Refuse new probes first, so that a callback cannot keep the engine open
   * by starting another probe from its cancellation. */
  eng->closing = 1;
  /* the sender thread is done with the sockets before they close */
  sonde__sender_stop(eng);
  while (eng->q_head)
    sonde__probe_fail(eng, eng->q_head, SONDE_ECANCELED);
  for (i = 0; i < eng->n_slots; i++) {
    sonde__probe_t *p = eng->slots[i];
    if (p->state == SONDE__INFLIGHT)
      sonde__probe_fail(eng, p, SONDE_ECANCELED);
  }
  eng->close_cb = cb;
  eng->close_data = data;
  for (i = 0; i < eng->n_flows; i++)
    sonde__sock_close(eng, &eng->flows[i]->sock);
  for (k = 0; k < 2; k++) {
    sonde__close_fd(&eng->rawudp[k]);
    sonde__sock_close(eng, &eng->icmp[k]);
    sonde__sock_close(eng, &eng->ping[k]);
    sonde__sock_close(eng, &eng->udp[k]);
  }
  sonde__close_fd(&eng->rawip);
  sonde__syn_close(eng);
  sonde__echo_release(eng);
  uv_timer_stop(&eng->timer);
  sonde__handle_close(eng, (uv_handle_t *)&eng->timer);
}

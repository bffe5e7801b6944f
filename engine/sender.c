/*
 * The sender thread (sonde_engine_opts_t.send_thread): plain ICMP echo
 * probes on the shared raw or ping socket are handed to a thread that
 * calls sendmsg() for them, so that the loop's thread goes on reading
 * replies and running callbacks meanwhile. It pays where the kernel does
 * much work inside sendmsg() (on veth, a probe's whole path through a lab
 * of namespaces) and the loop has much to do per reply (a sweep).
 *
 * One producer (the loop's thread) and one consumer (the sender) share a
 * ring of jobs: `head` counts the jobs queued, `sent` the jobs sent, `done`
 * (the loop's own) the jobs whose outcome the loop has taken. A job's slot
 * is reused only once done has passed it. The sender stamps each job just
 * before its sendmsg() (the probe's send time: a reply may be read before
 * the loop has taken the outcome, see sonde__sent_ns) and posts the
 * outcome through a uv_async_t. A job the ring cannot take, or a probe
 * that sets its own header fields, is sent by the loop as always.
 */

#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 1024          /* jobs; a power of two */
#define JOB_MAX 256        /* bytes of ICMP message a job carries */

typedef struct {
  uint64_t id;             /* the probe's */
  int fd;
  struct sockaddr_storage dst;
  int ttl, tos;
  size_t len;
  _Atomic uint64_t stamp;  /* sonde__now() just before sendmsg(); 0 before */
  int err;                 /* its outcome: 0 or a negative errno */
  uint8_t buf[JOB_MAX];
} job_t;

struct sonde__sender {
  sonde_engine_t *eng;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;                /* under mu */
  _Atomic uint64_t head, sent;
  uint64_t done;           /* the loop's thread only */
  int kick;                /* jobs queued since the last wake-up (loop's) */
  uv_async_t async;
  job_t ring[RING];
};

/* sendmsg() with the probe's TTL (and TOS) as ancillary data; ENOBUFS and
 * EAGAIN (the socket's buffer or the qdisc full) are waited out a few
 * times, as the loop's own sends retry them. */
static int send_job(job_t *j) {
  sonde__cmsgbuf_t control;
  struct iovec iov;
  struct msghdr msg;
  int tries;

  sonde__probe_msg(&msg, &iov, &control, j->buf, j->len, &j->dst, j->ttl,
                   j->tos, SONDE_DF_DEFAULT);
  for (tries = 1;; tries++) {
    if (sendmsg(j->fd, &msg, MSG_NOSIGNAL) >= 0)
      return 0;
    if (errno == EINTR)
      continue;
    if ((errno == ENOBUFS || errno == EAGAIN) && tries < SONDE__SEND_RETRIES) {
      struct timespec ts = {0, 1000000L * tries};
      nanosleep(&ts, NULL);
      continue;
    }
    return -errno;
  }
}

static void *sender_main(void *arg) {
  sonde__sender_t *s = arg;
  uint64_t sent = atomic_load(&s->sent);

  for (;;) {
    uint64_t head;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && atomic_load_explicit(&s->head, memory_order_acquire) == sent)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->stop) {
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    pthread_mutex_unlock(&s->mu);
    head = atomic_load_explicit(&s->head, memory_order_acquire);
    while (sent != head) {
      job_t *j = &s->ring[sent & (RING - 1)];
      atomic_store_explicit(&j->stamp, sonde__now(), memory_order_release);
      j->err = send_job(j);
      atomic_store_explicit(&s->sent, ++sent, memory_order_release);
    }
    uv_async_send(&s->async);
  }
}

/* The loop's side: take the outcomes of the jobs sent. A probe whose send
 * failed fails with that errno; the others keep their true send time. */
void sonde__sender_drain(sonde_engine_t *eng) {
  sonde__sender_t *s = eng->sender;
  uint64_t sent;
  if (s == NULL)
    return;
  sent = atomic_load_explicit(&s->sent, memory_order_acquire);
  while (s->done != sent) {
    job_t *j = &s->ring[s->done & (RING - 1)];
    sonde__probe_t *p = sonde__probe_find(eng, j->id);
    s->done++;
    if (p == NULL || p->send_job == 0)
      continue; /* ended meanwhile (a reply, its wait, a cancel) */
    p->send_job = 0;
    if (j->err < 0) {
      p->call = "sendmsg";
      sonde__probe_fail(eng, p, j->err);
    } else {
      p->sent_ns = atomic_load_explicit(&j->stamp, memory_order_acquire);
    }
  }
}

/* The thread has sent a batch: take the outcomes, and let the loop send
 * what waited for room in the ring. */
static void on_async(uv_async_t *a) {
  sonde__sender_drain(a->data);
  sonde__arm(a->data);
}

/* Is the ring full? The loop then stops sending until the thread has made
 * room (on_async takes the outcomes and re-arms the engine's timer). */
int sonde__sender_full(sonde_engine_t *eng) {
  const sonde__sender_t *s = eng->sender;
  return s && !eng->sender_failed &&
         atomic_load_explicit(&s->head, memory_order_relaxed) - s->done >= RING;
}

/* The send time of a probe: its job's stamp while the loop has not yet
 * taken the job's outcome (a reply can be read first: on veth it is
 * queued inside the sender's sendmsg()). */
uint64_t sonde__sent_ns(const sonde__probe_t *p) {
  const sonde__sender_t *s = p->eng->sender;
  if (p->send_job && s) {
    uint64_t t = atomic_load_explicit(
        &((job_t *)&s->ring[(p->send_job - 1) & (RING - 1)])->stamp,
        memory_order_acquire);
    if (t)
      return t;
  }
  return p->sent_ns;
}

static int start(sonde_engine_t *eng) {
  sonde__sender_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return SONDE_ENOMEM;
  s->eng = eng;
  if (uv_async_init(eng->loop, &s->async, on_async) != 0) {
    free(s);
    return SONDE_ENOMEM;
  }
  s->async.data = eng;
  /* it must not keep the loop alive: probes in flight have their timer */
  uv_unref((uv_handle_t *)&s->async);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->thread, NULL, sender_main, s) != 0) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    /* the async handle must be closed by the loop before s is freed */
    eng->sender = s;
    eng->sender_failed = 1;
    return SONDE_EAGAIN;
  }
  eng->sender = s;
  return 0;
}

/*
 * Queue p's ICMP message (len bytes in buf) for fd. Returns 0 when the
 * sender took it (then p->send_job names its job), or a negative errno
 * when the caller must send it itself: no sender wanted or possible, a
 * probe with header fields of its own, a large message, a full ring.
 */
int sonde__sender_queue(sonde_engine_t *eng, sonde__probe_t *p, int fd,
                        const uint8_t *buf, size_t len) {
  const sonde_probe_spec_t *spec = &p->spec;
  sonde__sender_t *s;
  uint64_t head;
  job_t *j;

  if (!eng->opts.send_thread || eng->sender_failed || len > JOB_MAX ||
      spec->ip_id || spec->df != SONDE_DF_DEFAULT || spec->has_flow_label ||
      p->src_checked)
    return SONDE_ENOTSUP;
  if (eng->sender == NULL && start(eng) < 0)
    return SONDE_ENOTSUP;
  s = eng->sender;
  head = atomic_load_explicit(&s->head, memory_order_relaxed);
  if (head - s->done >= RING) {
    sonde__sender_drain(eng);
    if (head - s->done >= RING)
      return SONDE_ENOBUFS;
  }
  j = &s->ring[head & (RING - 1)];
  j->id = p->id;
  j->fd = fd;
  j->dst = spec->dst;
  j->ttl = spec->ttl;
  j->tos = spec->tos;
  j->len = len;
  j->err = 0;
  atomic_store_explicit(&j->stamp, 0, memory_order_relaxed);
  memcpy(j->buf, buf, len);
  p->send_job = head + 1;
  atomic_store_explicit(&s->head, head + 1, memory_order_release);
  s->kick = 1;
  return 0;
}

/* Wake the thread for the jobs queued since the last call: once per batch
 * of sends (engine.c's pump), not once per job. */
void sonde__sender_kick(sonde_engine_t *eng) {
  sonde__sender_t *s = eng->sender;
  if (s == NULL || !s->kick || eng->sender_failed)
    return;
  s->kick = 0;
  pthread_mutex_lock(&s->mu);
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void async_closed(uv_handle_t *h) {
  sonde_engine_t *eng = h->data;
  free(eng->sender);
  eng->sender = NULL;
  sonde__closed_one(eng); /* may end the engine: last */
}

/* Stop the thread (it finishes the send it is in) before the engine's
 * sockets are closed; its handle is closed with the engine's. */
void sonde__sender_stop(sonde_engine_t *eng) {
  sonde__sender_t *s = eng->sender;
  if (s == NULL)
    return;
  if (!eng->sender_failed) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
  }
  s->async.data = eng;
  eng->pending_closes++;
  uv_close((uv_handle_t *)&s->async, async_closed);
}

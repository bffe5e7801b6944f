/*
 * sched.c - replies waiting for their time: one binary min-heap ordered by
 * due time (uv_hrtime clock, nanoseconds), driven by one uv_timer.
 *
 * uv_timer counts whole milliseconds on the loop's cached clock, so on its
 * own a reply can leave up to ~1 ms late. The timer is therefore armed for
 * the whole milliseconds before the earliest due time, and the rest (under
 * 1 ms) is waited out with a uv_idle handle, which makes the loop poll with
 * a zero timeout: the device is still read while waiting, and a reply
 * leaves within a few microseconds of its time. The spin lasts less than a
 * millisecond per distinct due time. --coarse turns it off (timer only).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netsim.h"

#define MS 1000000ull

static int before(const netsim_reply_t *a, const netsim_reply_t *b) {
  return a->due_ns < b->due_ns ||
         (a->due_ns == b->due_ns && a->order < b->order);
}

static void sift_up(netsim_reply_t *h, size_t i) {
  netsim_reply_t x = h[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&x, &h[parent]))
      break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = x;
}

static void sift_down(netsim_reply_t *h, size_t len, size_t i) {
  netsim_reply_t x = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= len)
      break;
    if (c + 1 < len && before(&h[c + 1], &h[c]))
      c++;
    if (!before(&h[c], &x))
      break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

static void send_one(netsim_t *ns, netsim_reply_t *r) {
  ssize_t n;
  int tries = 0;

  do
    n = write(ns->tun_fd, r->pkt, r->len);
  while (n < 0 && errno == EINTR && ++tries < 3);
  if (n == (ssize_t)r->len) {
    ns->stats.replies++;
  } else {
    ns->stats.write_errors++;
    if (ns->verbose)
      fprintf(stderr, "sonde-netsim: write to %s: %s\n", ns->dev,
              n < 0 ? strerror(errno) : "short write");
  }
}

static void on_due(netsim_t *ns);

static void on_timer(uv_timer_t *t) { on_due(t->data); }
static void on_idle(uv_idle_t *i) { on_due(i->data); }

/* Arm the timer (and the spin) for the earliest reply, or stop both. */
static void arm(netsim_t *ns) {
  uint64_t now, rem;

  if (ns->heap_len == 0) {
    uv_timer_stop(&ns->timer);
    uv_idle_stop(&ns->idle);
    return;
  }
  now = uv_hrtime();
  rem = ns->heap[0].due_ns > now ? ns->heap[0].due_ns - now : 0;
  if (!ns->coarse && rem < MS) {
    uv_timer_stop(&ns->timer);
    uv_idle_start(&ns->idle, on_idle);
    return;
  }
  uv_idle_stop(&ns->idle);
  /* The timer fires once the loop's ms clock (behind the real time by less
   * than 1 ms) has passed the timeout: floor never fires late. */
  uv_timer_start(&ns->timer, on_timer,
                 ns->coarse ? (rem + MS - 1) / MS : rem / MS, 0);
}

/* Send everything that is due (at most what was queued: bounded). */
static void on_due(netsim_t *ns) {
  uint64_t now = uv_hrtime();
  size_t budget = ns->heap_len;

  while (ns->heap_len > 0 && budget-- > 0 && ns->heap[0].due_ns <= now) {
    netsim_reply_t r = ns->heap[0];
    uint64_t late;
    ns->heap[0] = ns->heap[--ns->heap_len];
    if (ns->heap_len > 0)
      sift_down(ns->heap, ns->heap_len, 0);
    send_one(ns, &r);
    free(r.pkt);
    late = uv_hrtime() - r.due_ns;
    ns->stats.late_sum_ns += late;
    if (late > ns->stats.late_max_ns)
      ns->stats.late_max_ns = late;
  }
  arm(ns);
}

int netsim_sched_init(netsim_t *ns) {
  int r = uv_timer_init(ns->loop, &ns->timer);
  if (r < 0)
    return r;
  ns->timer.data = ns;
  r = uv_idle_init(ns->loop, &ns->idle);
  if (r < 0)
    return r;
  ns->idle.data = ns;
  return 0;
}

/*
 * Queue a copy of pkt to be written to the device at due_ns. Returns 0, or
 * -ENOBUFS when NETSIM_MAX_PENDING replies already wait (the reply is
 * dropped and counted), -ENOMEM.
 */
int netsim_sched(netsim_t *ns, const uint8_t *pkt, size_t len,
                 uint64_t due_ns) {
  netsim_reply_t r;

  if (ns->heap_len >= NETSIM_MAX_PENDING) {
    ns->stats.overflow++;
    return -ENOBUFS;
  }
  if (ns->heap_len == ns->heap_cap) {
    size_t cap = ns->heap_cap ? ns->heap_cap * 2 : 64;
    netsim_reply_t *h = realloc(ns->heap, cap * sizeof(*h));
    if (h == NULL) {
      ns->stats.overflow++;
      return -ENOMEM;
    }
    ns->heap = h;
    ns->heap_cap = cap;
  }
  r.pkt = malloc(len);
  if (r.pkt == NULL) {
    ns->stats.overflow++;
    return -ENOMEM;
  }
  memcpy(r.pkt, pkt, len);
  r.len = len;
  r.due_ns = due_ns;
  r.order = ns->order++;
  ns->heap[ns->heap_len] = r;
  sift_up(ns->heap, ns->heap_len++);
  if (ns->heap[0].order == r.order)
    on_due(ns); /* the new earliest: send now if due, else re-arm */
  return 0;
}

/* Drop what is still waiting (at exit); the handles are closed by main. */
void netsim_sched_free(netsim_t *ns) {
  size_t i;
  for (i = 0; i < ns->heap_len; i++)
    free(ns->heap[i].pkt);
  free(ns->heap);
  ns->heap = NULL;
  ns->heap_len = ns->heap_cap = 0;
}

/* Deliver what is due now (after a burst of reads). */
void netsim_sched_kick(netsim_t *ns) {
  if (ns->heap_len > 0 && ns->heap[0].due_ns <= uv_hrtime())
    on_due(ns);
}

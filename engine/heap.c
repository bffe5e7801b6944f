/* heap.c - in-flight probes ordered by deadline: one binary min-heap that the
 * engine's single timer drives (no timer per probe). */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static int before(const sonde__probe_t *a, const sonde__probe_t *b) {
  return a->deadline_ns < b->deadline_ns ||
         (a->deadline_ns == b->deadline_ns && a->id < b->id);
}

static void place(sonde_engine_t *eng, size_t i, sonde__probe_t *p) {
  eng->heap[i] = p;
  p->heap_idx = i;
}

static void sift_up(sonde_engine_t *eng, size_t i) {
  sonde__probe_t *p = eng->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(p, eng->heap[parent]))
      break;
    place(eng, i, eng->heap[parent]);
    i = parent;
  }
  place(eng, i, p);
}

static void sift_down(sonde_engine_t *eng, size_t i) {
  sonde__probe_t *p = eng->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= eng->heap_len)
      break;
    if (c + 1 < eng->heap_len && before(eng->heap[c + 1], eng->heap[c]))
      c++;
    if (!before(eng->heap[c], p))
      break;
    place(eng, i, eng->heap[c]);
    i = c;
  }
  place(eng, i, p);
}

/* Add p (its deadline_ns set). Returns 0 or -ENOMEM. */
int sonde__heap_push(sonde_engine_t *eng, sonde__probe_t *p) {
  if (eng->heap_len == eng->heap_cap) {
    size_t cap = eng->heap_cap ? eng->heap_cap * 2 : 64;
    sonde__probe_t **h = realloc(eng->heap, cap * sizeof(*h));
    if (h == NULL)
      return -ENOMEM;
    eng->heap = h;
    eng->heap_cap = cap;
  }
  place(eng, eng->heap_len++, p);
  sift_up(eng, p->heap_idx);
  return 0;
}

/* Remove p if it is in the heap. */
void sonde__heap_remove(sonde_engine_t *eng, sonde__probe_t *p) {
  size_t i = p->heap_idx;
  sonde__probe_t *last;
  if (i == SIZE_MAX)
    return;
  p->heap_idx = SIZE_MAX;
  last = eng->heap[--eng->heap_len];
  if (last == p)
    return;
  place(eng, i, last);
  sift_up(eng, i);
  sift_down(eng, last->heap_idx);
}

/* Restore order after p's deadline changed. */
void sonde__heap_update(sonde_engine_t *eng, sonde__probe_t *p) {
  if (p->heap_idx == SIZE_MAX)
    return;
  sift_up(eng, p->heap_idx);
  sift_down(eng, p->heap_idx);
}

sonde__probe_t *sonde__heap_top(sonde_engine_t *eng) {
  return eng->heap_len ? eng->heap[0] : NULL;
}

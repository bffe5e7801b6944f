/* table.c - in-flight probes by the identity a reply carries back (ICMP
 * id/seq or ports, protocol, destination). Chained hash table that doubles
 * when its load passes 1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void sonde__key_make(sonde__key_t *k, int proto, int af, const void *addr,
                     uint16_t a, uint16_t b) {
  memset(k, 0, sizeof(*k));
  k->proto = (uint8_t)proto;
  k->af = af == AF_INET6 ? 6 : 4;
  k->a = a;
  k->b = b;
  memcpy(k->addr, addr, af == AF_INET6 ? 16 : 4);
}

/* FNV-1a over the key bytes. */
static size_t hash(const sonde__key_t *k) {
  const uint8_t *b = (const uint8_t *)k;
  uint64_t h = 1469598103934665603ULL;
  size_t i;
  for (i = 0; i < sizeof(*k); i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return (size_t)(h ^ (h >> 29));
}

static int grow(sonde_engine_t *eng) {
  size_t n = eng->n_buckets ? eng->n_buckets * 2 : 256, i;
  sonde__probe_t **b = calloc(n, sizeof(*b));
  if (b == NULL)
    return -ENOMEM;
  for (i = 0; i < eng->n_buckets; i++) {
    sonde__probe_t *p = eng->buckets[i], *next;
    for (; p; p = next) {
      size_t h = hash(&p->key) & (n - 1);
      next = p->hnext;
      p->hnext = b[h];
      b[h] = p;
    }
  }
  free(eng->buckets);
  eng->buckets = b;
  eng->n_buckets = n;
  return 0;
}

/* Add p under p->key. Returns 0, -EEXIST if a probe with the same identity
 * is in flight (its reply could not be told apart), or -ENOMEM. */
int sonde__table_insert(sonde_engine_t *eng, sonde__probe_t *p) {
  size_t h;
  if (sonde__table_find(eng, &p->key))
    return -EEXIST;
  if (eng->n_keys >= eng->n_buckets) {
    int r = grow(eng);
    if (r < 0)
      return r;
  }
  h = hash(&p->key) & (eng->n_buckets - 1);
  p->hnext = eng->buckets[h];
  eng->buckets[h] = p;
  p->in_table = 1;
  eng->n_keys++;
  return 0;
}

void sonde__table_remove(sonde_engine_t *eng, sonde__probe_t *p) {
  sonde__probe_t **pp;
  if (!p->in_table)
    return;
  pp = &eng->buckets[hash(&p->key) & (eng->n_buckets - 1)];
  for (; *pp; pp = &(*pp)->hnext) {
    if (*pp == p) {
      *pp = p->hnext;
      break;
    }
  }
  p->hnext = NULL;
  p->in_table = 0;
  eng->n_keys--;
}

sonde__probe_t *sonde__table_find(sonde_engine_t *eng, const sonde__key_t *k) {
  sonde__probe_t *p;
  if (eng->n_buckets == 0)
    return NULL;
  for (p = eng->buckets[hash(k) & (eng->n_buckets - 1)]; p; p = p->hnext)
    if (memcmp(&p->key, k, sizeof(*k)) == 0)
      return p;
  return NULL;
}

/* See internal.h. */
sonde__probe_t *sonde__table_only(sonde_engine_t *eng,
                                  int (*match)(const sonde__probe_t *,
                                               const void *),
                                  const void *ctx, size_t *n) {
  sonde__probe_t *found = NULL, *p;
  size_t i;
  *n = 0;
  for (i = 0; i < eng->n_buckets; i++)
    for (p = eng->buckets[i]; p; p = p->hnext)
      if (match(p, ctx)) {
        if (++*n > 1)
          return NULL;
        found = p;
      }
  return found;
}

void sonde__table_free(sonde_engine_t *eng) {
  free(eng->buckets);
  eng->buckets = NULL;
  eng->n_buckets = eng->n_keys = 0;
}

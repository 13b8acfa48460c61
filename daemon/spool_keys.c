/* The key index: a table of 128-bit hashes in the manner of dedup.c. */
#include "spool_keys.h"

#include <stdlib.h>

int pm_keyidx_init(pm_keyidx_t *k, int64_t window_us) {
  k->cap = 1024;
  k->n = 0;
  k->window_us = window_us;
  k->slots = calloc(k->cap, sizeof(*k->slots));
  return k->slots ? 0 : -1;
}

void pm_keyidx_free(pm_keyidx_t *k) {
  free(k->slots);
  k->slots = NULL;
  k->cap = k->n = 0;
}

static int empty(const pm_keyent_t *e) {
  return e->h[0] == 0 && e->h[1] == 0;
}

static pm_keyent_t *probe(pm_keyent_t *slots, size_t cap, const uint64_t h[2]) {
  size_t i = (size_t)h[0] & (cap - 1);
  for (;; i = (i + 1) & (cap - 1))
    if ((slots[i].h[0] == h[0] && slots[i].h[1] == h[1]) || empty(&slots[i]))
      return &slots[i];
}

/* Rebuild at a size that keeps the load under a half, without the
 * expired entries. */
static int rebuild(pm_keyidx_t *k, int64_t now_us) {
  size_t live = 0, cap = 1024;
  pm_keyent_t *slots;

  for (size_t i = 0; i < k->cap; i++)
    if (!empty(&k->slots[i]) && !pm_keyent_expired(k, &k->slots[i], now_us))
      live++;
  while (cap < live * 4)
    cap *= 2;
  if (!(slots = calloc(cap, sizeof(*slots))))
    return -1;
  for (size_t i = 0; i < k->cap; i++) {
    pm_keyent_t *e = &k->slots[i];
    if (!empty(e) && !pm_keyent_expired(k, e, now_us))
      *probe(slots, cap, e->h) = *e;
  }
  free(k->slots);
  k->slots = slots;
  k->cap = cap;
  k->n = live;
  return 0;
}

pm_keyent_t *pm_keyidx_slot(pm_keyidx_t *k, const uint64_t h[2],
                            int64_t now_us) {
  pm_keyent_t *e;
  if ((k->n + 1) * 2 > k->cap && rebuild(k, now_us) != 0)
    return NULL;
  e = probe(k->slots, k->cap, h);
  if (empty(e)) {
    e->h[0] = h[0];
    e->h[1] = h[1];
    e->seen_us = INT64_MIN / 2; /* the caller fills it in */
    e->seq = 0;
    e->gen = 0;
    k->n++;
  }
  return e;
}

pm_keyent_t *pm_keyidx_find(pm_keyidx_t *k, const uint64_t h[2],
                            int64_t now_us) {
  pm_keyent_t *e = probe(k->slots, k->cap, h);
  return !empty(e) && !pm_keyent_expired(k, e, now_us) ? e : NULL;
}

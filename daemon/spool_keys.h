/*
 * The spool's index of idempotency keys: 128-bit keyed hashes, each with
 * when it was first seen, the seq of the emit it belongs to and the
 * segment holding its KEY record. Open addressing, linear probing, kept
 * at most half full; expired entries are dropped when it grows. Not
 * thread-safe (the spool's mutex guards it). Layer: writer and spool.
 */
#ifndef PM_SPOOL_KEYS_H
#define PM_SPOOL_KEYS_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_keyent {
  uint64_t h[2]; /* {0,0}: an empty slot */
  int64_t seen_us;
  uint64_t seq;
  uint32_t gen; /* segment generation holding the KEY record; 0: pending */
} pm_keyent_t;

typedef struct pm_keyidx {
  pm_keyent_t *slots;
  size_t cap, n; /* slots, slots used (expired ones included) */
  int64_t window_us;
} pm_keyidx_t;

/* 0, or -1 out of memory. */
int pm_keyidx_init(pm_keyidx_t *k, int64_t window_us);
void pm_keyidx_free(pm_keyidx_t *k);

/* 1 if an entry expired at now_us (forgotten ones are). */
static inline int pm_keyent_expired(const pm_keyidx_t *k, const pm_keyent_t *e,
                                    int64_t now_us) {
  return now_us - e->seen_us > k->window_us;
}

/* The slot of h (its entry, possibly expired, or the empty slot where it
 * would go), or NULL out of memory. May rebuild the table, so pointers
 * from earlier calls are then stale. */
pm_keyent_t *pm_keyidx_slot(pm_keyidx_t *k, const uint64_t h[2],
                            int64_t now_us);
/* The live entry of h, or NULL. Never rebuilds. */
pm_keyent_t *pm_keyidx_find(pm_keyidx_t *k, const uint64_t h[2],
                            int64_t now_us);

/* Forget an entry (it becomes long expired: emptying a slot would break
 * the probe chains after it). */
static inline void pm_keyent_forget(pm_keyent_t *e) {
  e->seen_us = INT64_MIN / 2;
}

#endif

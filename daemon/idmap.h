/*
 * Hash containers keyed by int64 (series ids, month numbers): a set and a
 * map to int64. Open addressing with linear probing, a power-of-two
 * table kept at most half full (64 slots to start, doubled as it fills).
 * Apart from the writer because they know nothing of it: plain containers
 * with no daemon dependencies. Not thread-safe. Bottom layer.
 *
 * Both types are plain structs, so they can be embedded; a zeroed one is
 * an empty one (what _init makes), and _free returns it to that state.
 * The fields are read-only outside idmap.c: `n` is how many keys there
 * are (a cheap "is it empty?" before probing).
 */
#ifndef PM_IDMAP_H
#define PM_IDMAP_H

#include <stddef.h>
#include <stdint.h>

/* The finalizer of MurmurHash3 (fmix64): every input bit flips about half
 * the output bits, so sequential ids spread over the table. Shared with
 * hash tables of other shapes (the writer's fold table). */
static inline uint64_t pm_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

/* A set of int64. */
typedef struct pm_idset {
  int64_t *keys;
  uint8_t *used; /* per slot: 1 if keys[slot] holds a key */
  size_t cap, n; /* slots, keys */
} pm_idset_t;

/* An int64 -> int64 map: a set of keys with a value beside each slot. */
typedef struct pm_idmap {
  pm_idset_t keys;
  int64_t *vals;
} pm_idmap_t;

/* Empty; allocates nothing (the first add does). */
void pm_idset_init(pm_idset_t *s);

/* 1 if k is in s, else 0. */
int pm_idset_has(const pm_idset_t *s, int64_t k);

/* 1 added, 0 already present, -1 out of memory (s unchanged). */
int pm_idset_add(pm_idset_t *s, int64_t k);

/* Remove every key; keeps the table for reuse. */
void pm_idset_clear(pm_idset_t *s);

/* Release the table; s is empty (and usable) afterwards. */
void pm_idset_free(pm_idset_t *s);

/* Empty; allocates nothing (the first put does). */
void pm_idmap_init(pm_idmap_t *m);

/* How many keys m holds. */
size_t pm_idmap_len(const pm_idmap_t *m);

/* 1 and *v if k is present, else 0 (*v untouched). */
int pm_idmap_get(const pm_idmap_t *m, int64_t k, int64_t *v);

/* Set k's value to v, adding k if absent. 0, or -1 out of memory (m
 * unchanged). Replacing the value of a present key never allocates. */
int pm_idmap_put(pm_idmap_t *m, int64_t k, int64_t v);

/* Remove every key; keeps the table for reuse. */
void pm_idmap_clear(pm_idmap_t *m);

/* Release the table; m is empty (and usable) afterwards. */
void pm_idmap_free(pm_idmap_t *m);

#endif

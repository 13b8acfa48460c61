/*
 * The int64 set and map: see idmap.h. The map is the set's table plus a
 * parallel array of values, so both share one probe and one rehash.
 */
#include "idmap.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 64

/* The slot holding k, or the empty slot where k would go. s->cap > 0,
 * and the table is never full (at most half), so the probe ends. */
static size_t slot_of(const pm_idset_t *s, int64_t k) {
  size_t mask = s->cap - 1;
  size_t i = pm_mix64((uint64_t)k) & mask;
  while (s->used[i] && s->keys[i] != k)
    i = (i + 1) & mask;
  return i;
}

/* Double s's table (FIRST_CAP slots if it has none), carrying *vals along
 * when vals is not NULL. -1 out of memory, with s and *vals unchanged. */
static int rehash(pm_idset_t *s, int64_t **vals) {
  pm_idset_t n = {0};
  int64_t *nv = NULL;
  n.cap = s->cap ? s->cap * 2 : FIRST_CAP;
  n.keys = malloc(n.cap * sizeof *n.keys);
  n.used = calloc(n.cap, 1);
  if (vals)
    nv = malloc(n.cap * sizeof *nv);
  if (!n.keys || !n.used || (vals && !nv)) {
    free(n.keys);
    free(n.used);
    free(nv);
    return -1;
  }
  for (size_t i = 0; i < s->cap; i++) {
    size_t j;
    if (!s->used[i])
      continue;
    j = slot_of(&n, s->keys[i]);
    n.used[j] = 1;
    n.keys[j] = s->keys[i];
    if (vals)
      nv[j] = (*vals)[i];
    n.n++;
  }
  free(s->keys);
  free(s->used);
  *s = n;
  if (vals) {
    free(*vals);
    *vals = nv;
  }
  return 0;
}

/* Find k's slot, growing the table first if adding a key would fill it
 * past half: 1 k is in *slot, 0 *slot is empty (k goes there), -1 out of
 * memory. */
static int slot_for_add(pm_idset_t *s, int64_t **vals, int64_t k,
                        size_t *slot) {
  if (s->cap) {
    *slot = slot_of(s, k);
    if (s->used[*slot])
      return 1;
  }
  if ((s->n + 1) * 2 > s->cap && rehash(s, vals) < 0)
    return -1;
  *slot = slot_of(s, k);
  return 0;
}

/* ------------------------------------------------------------------ */
/* the set */

void pm_idset_init(pm_idset_t *s) {
  memset(s, 0, sizeof *s);
}

int pm_idset_has(const pm_idset_t *s, int64_t k) {
  return s->cap && s->used[slot_of(s, k)];
}

int pm_idset_add(pm_idset_t *s, int64_t k) {
  size_t i;
  int rc = slot_for_add(s, NULL, k, &i);
  if (rc != 0)
    return rc < 0 ? -1 : 0;
  s->used[i] = 1;
  s->keys[i] = k;
  s->n++;
  return 1;
}

void pm_idset_clear(pm_idset_t *s) {
  if (s->cap && s->n)
    memset(s->used, 0, s->cap);
  s->n = 0;
}

void pm_idset_free(pm_idset_t *s) {
  free(s->keys);
  free(s->used);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ */
/* the map */

void pm_idmap_init(pm_idmap_t *m) {
  memset(m, 0, sizeof *m);
}

size_t pm_idmap_len(const pm_idmap_t *m) {
  return m->keys.n;
}

int pm_idmap_get(const pm_idmap_t *m, int64_t k, int64_t *v) {
  size_t i;
  if (!m->keys.cap)
    return 0;
  i = slot_of(&m->keys, k);
  if (!m->keys.used[i])
    return 0;
  *v = m->vals[i];
  return 1;
}

int pm_idmap_put(pm_idmap_t *m, int64_t k, int64_t v) {
  size_t i;
  int rc = slot_for_add(&m->keys, &m->vals, k, &i);
  if (rc < 0)
    return -1;
  if (rc == 0) {
    m->keys.used[i] = 1;
    m->keys.keys[i] = k;
    m->keys.n++;
  }
  m->vals[i] = v;
  return 0;
}

void pm_idmap_clear(pm_idmap_t *m) {
  pm_idset_clear(&m->keys);
}

void pm_idmap_free(pm_idmap_t *m) {
  pm_idset_free(&m->keys);
  free(m->vals);
  m->vals = NULL;
}

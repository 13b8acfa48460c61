/* The idempotency-key index: an open-addressing table of 128-bit keyed
 * hashes (HMAC-SHA-256 with a per-process random secret) with the time
 * each was seen, pruned of entries older than the window as it grows. */
#include "dedup.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <portalmetrics/plugin.h>
#include "keyhash.h"

typedef struct slot {
  uint64_t h[2]; /* {0,0}: empty */
  int64_t seen_us;
} slot_t;

struct pm_dedup {
  pthread_mutex_t mu;
  unsigned char secret[32];
  int64_t window_us;
  slot_t *slots;
  size_t cap, n;
};

pm_dedup_t *pm_dedup_new(int64_t window_us) {
  pm_dedup_t *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  d->cap = 1024;
  d->slots = calloc(d->cap, sizeof(*d->slots));
  if (!d->slots || RAND_bytes(d->secret, sizeof(d->secret)) != 1) {
    free(d->slots);
    free(d);
    return NULL;
  }
  d->window_us = window_us;
  pthread_mutex_init(&d->mu, NULL);
  return d;
}

void pm_dedup_free(pm_dedup_t *d) {
  if (!d)
    return;
  pthread_mutex_destroy(&d->mu);
  free(d->slots);
  free(d);
}

static slot_t *find(slot_t *slots, size_t cap, const uint64_t h[2]) {
  size_t i = (size_t)h[0] & (cap - 1);
  for (;; i = (i + 1) & (cap - 1))
    if ((slots[i].h[0] == h[0] && slots[i].h[1] == h[1]) ||
        (slots[i].h[0] == 0 && slots[i].h[1] == 0))
      return &slots[i];
}

/* Rebuild at a size that keeps the load under a half, dropping entries
 * past the window. */
static int rebuild(pm_dedup_t *d, int64_t now_us) {
  size_t live = 0, cap = 1024;
  slot_t *slots;

  for (size_t i = 0; i < d->cap; i++)
    if ((d->slots[i].h[0] || d->slots[i].h[1]) &&
        now_us - d->slots[i].seen_us <= d->window_us)
      live++;
  while (cap < live * 4)
    cap *= 2;
  slots = calloc(cap, sizeof(*slots));
  if (!slots)
    return PM_ENOMEM;
  for (size_t i = 0; i < d->cap; i++) {
    slot_t *s = &d->slots[i];
    if ((s->h[0] || s->h[1]) && now_us - s->seen_us <= d->window_us)
      *find(slots, cap, s->h) = *s;
  }
  free(d->slots);
  d->slots = slots;
  d->cap = cap;
  d->n = live;
  return 0;
}

int pm_dedup_reserve(pm_dedup_t *d, const char *scope, const void *key,
                     size_t len, int64_t now_us, uint64_t out[2]) {
  slot_t *s;
  int rc = pm_keyhash(d->secret, sizeof(d->secret), scope, key, len, out);

  if (rc != 0)
    return rc;
  pthread_mutex_lock(&d->mu);
  if ((d->n + 1) * 2 > d->cap && (rc = rebuild(d, now_us)) != 0)
    goto out;
  s = find(d->slots, d->cap, out);
  if (s->h[0] || s->h[1]) {
    if (now_us - s->seen_us <= d->window_us) {
      rc = 1;
      goto out;
    }
    s->seen_us = now_us; /* expired: counts as new */
    goto out;
  }
  s->h[0] = out[0];
  s->h[1] = out[1];
  s->seen_us = now_us;
  d->n++;
out:
  pthread_mutex_unlock(&d->mu);
  return rc;
}

void pm_dedup_cancel(pm_dedup_t *d, const uint64_t h[2]) {
  pthread_mutex_lock(&d->mu);
  slot_t *s = find(d->slots, d->cap, h);
  /* Mark as long expired rather than empty: emptying a slot would break
   * the probe chains of the entries after it. */
  if (s->h[0] || s->h[1])
    s->seen_us = INT64_MIN / 2;
  pthread_mutex_unlock(&d->mu);
}

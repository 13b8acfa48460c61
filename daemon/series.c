/* The series registry: one mutex around an id-keyed hash table. Emits of
 * known series (the common case) cost one lookup under the lock. */
#include "series.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

typedef struct entry {
  pm_series_t s;
  struct entry *next;
} entry_t;

typedef struct owner {
  char *collector;
  size_t count;
} owner_t;

struct pm_series_registry {
  pthread_mutex_t mu;
  entry_t **buckets;
  size_t nbuckets; /* power of two */
  size_t n;
  owner_t *owners;
  size_t nowners;
};

pm_series_registry_t *pm_series_registry_new(void) {
  pm_series_registry_t *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  r->nbuckets = 1024;
  r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
  if (!r->buckets) {
    free(r);
    return NULL;
  }
  pthread_mutex_init(&r->mu, NULL);
  return r;
}

void pm_series_registry_free(pm_series_registry_t *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nbuckets; i++) {
    entry_t *e = r->buckets[i], *next;
    for (; e; e = next) {
      next = e->next;
      free(e->s.metric);
      free(e->s.labels_json);
      free(e);
    }
  }
  for (size_t i = 0; i < r->nowners; i++)
    free(r->owners[i].collector);
  free(r->owners);
  free(r->buckets);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static size_t slot(const pm_series_registry_t *r, int64_t id) {
  /* Ids are already uniformly distributed (SHA-256 bits). */
  return (size_t)((uint64_t)id & (r->nbuckets - 1));
}

static void grow(pm_series_registry_t *r) {
  size_t n = r->nbuckets * 2;
  entry_t **b = calloc(n, sizeof(*b));
  if (!b)
    return; /* keep the longer chains; still correct */
  for (size_t i = 0; i < r->nbuckets; i++) {
    entry_t *e = r->buckets[i], *next;
    for (; e; e = next) {
      next = e->next;
      size_t j = (size_t)((uint64_t)e->s.id & (n - 1));
      e->next = b[j];
      b[j] = e;
    }
  }
  free(r->buckets);
  r->buckets = b;
  r->nbuckets = n;
}

static owner_t *owner_get(pm_series_registry_t *r, const char *collector,
                          int create) {
  for (size_t i = 0; i < r->nowners; i++)
    if (strcmp(r->owners[i].collector, collector) == 0)
      return &r->owners[i];
  if (!create)
    return NULL;
  owner_t *o = realloc(r->owners, (r->nowners + 1) * sizeof(*o));
  if (!o)
    return NULL;
  r->owners = o;
  o = &r->owners[r->nowners];
  o->collector = strdup(collector);
  if (!o->collector)
    return NULL;
  o->count = 0;
  r->nowners++;
  return o;
}

int pm_series_intern(pm_series_registry_t *r, const char *collector,
                     size_t max_series, const char *metric,
                     const pm_label_t *sorted, size_t n, pm_kind_t kind,
                     const pm_series_t **out) {
  int64_t id = pm_series_id(metric, sorted, n);
  char *json = NULL;
  entry_t *e;
  owner_t *o;
  int rc = 0;

  pthread_mutex_lock(&r->mu);
  for (e = r->buckets[slot(r, id)]; e; e = e->next) {
    if (e->s.id != id)
      continue;
    if (strcmp(e->s.metric, metric) != 0) {
      rc = PM_EINTERNAL; /* a 64-bit collision: refuse, never merge */
    } else if (e->s.kind != kind) {
      rc = PM_EKIND;
    } else {
      *out = &e->s;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
  }

  o = owner_get(r, collector, 1);
  if (!o) {
    rc = PM_ENOMEM;
    goto out;
  }
  if (o->count >= max_series) {
    rc = PM_ESERIES;
    goto out;
  }
  json = pm_labels_json(sorted, n);
  e = calloc(1, sizeof(*e));
  if (!json || !e || !(e->s.metric = strdup(metric))) {
    free(json);
    free(e);
    rc = PM_ENOMEM;
    goto out;
  }
  e->s.id = id;
  e->s.labels_json = json;
  e->s.kind = kind;
  if (r->n + 1 > r->nbuckets)
    grow(r);
  size_t j = slot(r, id);
  e->next = r->buckets[j];
  r->buckets[j] = e;
  r->n++;
  o->count++;
  *out = &e->s;
out:
  pthread_mutex_unlock(&r->mu);
  return rc;
}

size_t pm_series_count(pm_series_registry_t *r, const char *collector) {
  size_t n;
  pthread_mutex_lock(&r->mu);
  owner_t *o = owner_get(r, collector, 0);
  n = o ? o->count : 0;
  pthread_mutex_unlock(&r->mu);
  return n;
}

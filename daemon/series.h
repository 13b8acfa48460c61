/* The registry of series this daemon has seen: id -> metric, labels,
 * kind, owning collector. Enforces one kind per series and each
 * collector's max_series. Thread-safe. Bottom layer. */
#ifndef PM_SERIES_H
#define PM_SERIES_H

#include <stddef.h>
#include <stdint.h>
#include <portalmetrics/plugin.h>

/* Immutable once interned, and lives as long as the registry, so records
 * may point at it from any thread. */
typedef struct pm_series {
  int64_t id;
  char *metric;
  char *labels_json; /* sorted keys, compact */
  pm_kind_t kind;
} pm_series_t;

typedef struct pm_series_registry pm_series_registry_t;

pm_series_registry_t *pm_series_registry_new(void);
void pm_series_registry_free(pm_series_registry_t *reg);

/*
 * Find the series of (metric, labels), or add it for `collector`. Returns
 * 0 and *out; PM_EKIND if it exists with the other kind; PM_ESERIES if it
 * is new and the collector already owns max_series series; PM_EINTERNAL on
 * an id collision (same id, other metric or labels); PM_ENOMEM.
 */
int pm_series_intern(pm_series_registry_t *reg, const char *collector,
                     size_t max_series, const char *metric,
                     const pm_label_t *sorted, size_t n, pm_kind_t kind,
                     const pm_series_t **out);

/* How many series a collector owns. */
size_t pm_series_count(pm_series_registry_t *reg, const char *collector);

#endif

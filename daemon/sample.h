/* The data model's rules: metric names, labels, timestamps, and the
 * frozen series id. Bottom layer. */
#ifndef PM_SAMPLE_H
#define PM_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <portalmetrics/plugin.h>

#define PM_METRIC_MAX 128
#define PM_LABELS_MAX 16
#define PM_LABEL_KEY_MAX 64
#define PM_LABEL_VALUE_MAX 256
#define PM_LABELS_BYTES_MAX 2048
#define PM_TS_FUTURE_MAX_US (INT64_C(86400) * 1000000)

/* 1 if valid, 0 if not. */
int pm_metric_name_valid(const char *name);
int pm_label_key_valid(const char *key);
/* Printable UTF-8 (no control characters), 1..256 bytes. */
int pm_label_value_valid(const char *value);

/* 0, or PM_ETS when ts is older than now - max_age or later than
 * now + 1 day. */
int pm_ts_check(int64_t ts_us, int64_t now_us, int64_t max_age_us);

/*
 * A canonical label set: the collector's configured labels, the sample's
 * own labels and collector=<name>, sorted by key. Pointers borrow from
 * the inputs.
 */
typedef struct pm_labelset {
  size_t n;
  pm_label_t l[PM_LABELS_MAX];
} pm_labelset_t;

/*
 * Build the canonical set. Returns 0, or PM_ELABEL (invalid key or value,
 * a key given twice, a plugin setting "collector", more than 16 labels,
 * more than 2 KiB together).
 */
int pm_labelset_build(pm_labelset_t *out, const pm_label_t *base, size_t nbase,
                      const pm_label_t *own, size_t nown,
                      const char *collector);

/*
 * The series id, frozen in the first release (ids outlive binaries):
 *
 *   enc = be32(len(metric)) || metric
 *         || for each label, sorted by key (bytewise):
 *              be32(len(key)) || key || be32(len(value)) || value
 *   id  = first 8 bytes of SHA-256(enc), read big-endian, as int64
 *
 * In SQL (PostgreSQL 11+):
 *   ('x' || left(encode(sha256(enc), 'hex'), 16))::bit(64)::bigint
 * `labels` must be sorted by key (pm_labelset_build does).
 */
int64_t pm_series_id(const char *metric, const pm_label_t *labels, size_t n);

/* The labels as a JSON object with sorted keys, malloc'd; NULL on ENOMEM. */
char *pm_labels_json(const pm_label_t *labels, size_t n);

#endif

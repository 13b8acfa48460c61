/*
 * What the writer ships from: records in sequence order that can be read
 * again until acknowledged. The disk spool is the daemon's source; the
 * in-memory queue serves tests and --once. Layer: writer and spool.
 */
#ifndef PM_SOURCE_H
#define PM_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include "series.h"

typedef struct pm_rec {
  const pm_series_t *series; /* owned by the series registry or the spool */
  int64_t ts_us;
  double value;
  uint64_t seq; /* assigned when taken, strictly increasing from 1 */
} pm_rec_t;

typedef struct pm_source {
  void *ctx;
  /* Loop thread. Up to max records with seq > after_seq, in order. */
  size_t (*read)(void *ctx, uint64_t after_seq, pm_rec_t *out, size_t max);
  /* Loop thread. Every record with seq <= upto_seq is shipped. */
  void (*ack)(void *ctx, uint64_t upto_seq);
  /* Any thread. Records held; whether new ones are refused (busy). */
  size_t (*len)(void *ctx);
  int (*full)(void *ctx);
  /* Any thread. The newest seq taken so far (0: none). */
  uint64_t (*last_seq)(void *ctx);
} pm_source_t;

#endif

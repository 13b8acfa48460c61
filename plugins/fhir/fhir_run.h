/*
 * One collection run: every query's day buckets searched at once over
 * the HTTP engine, each counted from Bundle.total or by paging, failed
 * requests retried; what comes out is counts per bucket and the errors
 * by reason. No samples, no logging: fhir.c decides what to emit and say.
 */
#ifndef FHIR_RUN_H
#define FHIR_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "fhir_auth.h"
#include "fhir_bundle.h"
#include "fhir_conf.h"
#include "fhir_http.h"
#include "fhir_query.h"

/* Why a request failed; each failed attempt is counted under one. */
typedef enum fhir_reason {
  FHIR_R_TIMEOUT,
  FHIR_R_UNREACHABLE,
  FHIR_R_TLS,
  FHIR_R_TRUNCATED,
  FHIR_R_CONNECTION,
  FHIR_R_TOO_LARGE,
  FHIR_R_HTTP_3XX,
  FHIR_R_HTTP_4XX,
  FHIR_R_HTTP_5XX,
  FHIR_R_RATE_LIMITED,
  FHIR_R_AUTH,
  FHIR_R_JSON,
  FHIR_R_NOT_BUNDLE,
  FHIR_R_OUTCOME,
  FHIR_R_SHAPE,
  FHIR_R_NEXT_ORIGIN,
  FHIR_R_TOO_MANY_PAGES,
  FHIR_R_FAILED,
  FHIR_R_COUNT
} fhir_reason_t;

/* The label value of a reason ("rate_limited"). */
const char *fhir_reason_name(int reason);

/* Counts of match entries by class, summed over a bucket's pages. */
typedef struct fhir_classes {
  size_t n;
  fhir_class_count_t c[FHIR_CLASS_MAX];
  uint64_t none, other;
} fhir_classes_t;

typedef struct fhir_bucket_result {
  int ok;                  /* counted: the values below are the truth */
  int reason;              /* !ok: the last failure's fhir_reason_t */
  uint64_t matches;        /* Bundle.total, or match entries paged */
  fhir_classes_t *classes; /* classified queries only; owned */
  uint64_t pages;          /* search pages read */
} fhir_bucket_result_t;

typedef struct fhir_query_result {
  fhir_bucket_result_t *b; /* n_windows, or 1 for a gauge */
  size_t n;
  uint64_t errors[FHIR_R_COUNT]; /* failed attempts by reason */
  uint64_t failed;               /* buckets not counted */
  char detail[256]; /* the first failure, for the log: origin only */
} fhir_query_result_t;

typedef struct fhir_run_result {
  fhir_window_t *windows; /* the run's local days, oldest first */
  int n_windows;
  fhir_query_result_t *q; /* one per conf->queries */
  uint64_t errors[FHIR_R_COUNT];
  uint64_t requests;
  int auth_failed; /* credentials could not be had */
  char auth_err[FHIR_AUTH_ERR_MAX];
  int stopped; /* the deadline cut the run short */
} fhir_run_result_t;

/*
 * Run every query of c for the last c->backfill_days local days up to
 * now_us. auth may be NULL (no credentials). stop: as fhir_http_run's.
 * *out is always initialised (fhir_run_result_free is safe after any
 * return). Returns 0 when the run ended (with or without failed buckets:
 * see out), PM_ENOMEM, or PM_EINTERNAL (windows cannot be computed).
 */
int fhir_run(const fhir_conf_t *c, fhir_http_t *http, fhir_auth_t *auth,
             int64_t now_us, uint64_t seed, int (*stop)(void *), void *stop_arg,
             fhir_run_result_t *out);
void fhir_run_result_free(fhir_run_result_t *r, size_t n_queries);

/* A class's count in a bucket ("Patient", "none", "other"). */
uint64_t fhir_classes_get(const fhir_classes_t *c, const char *name);

/*
 * The delay before retry number `attempt` (1 for the first retry):
 * backoff * 2^(attempt-1), at most backoff_max, times a jitter factor in
 * [0.8, 1.2) from *rng. Pure (xorshift state in *rng).
 */
int64_t fhir_backoff_us(int attempt, int64_t backoff_us, int64_t backoff_max_us,
                        uint64_t *rng);

#endif

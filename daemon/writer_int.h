/*
 * The writer's insides, shared by the files that make it up and by no
 * one else: the pm_writer struct and the steps one file hands over to
 * another. writer.c is the connection's lifecycle and the shipping of
 * batches; writer_schema.c is what the writer keeps in the database's
 * schema (migrations, the metric catalog, the partitions). Part of the
 * writer module (layer: writer and spool); include writer.h for the API.
 */
#ifndef PM_WRITER_INT_H
#define PM_WRITER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "copybuf.h"
#include "idmap.h"
#include "log.h"
#include "migrations.h"
#include "pg_conn.h"
#include "series.h"
#include "writer.h"

#define US_PER_S INT64_C(1000000)

enum wstate {
  W_NEW,
  W_BACKOFF,
  W_CONNECTING,
  W_SETUP,
  W_IDLE,
  W_SHIPPING,
  W_MAINT,
  W_CLOSING,
  W_CLOSED
};

enum fail_kind {
  FAIL_CONN,  /* unreachable, or the connection broke */
  FAIL_SQL,   /* the server refused a statement */
  FAIL_SCHEMA /* the database's schema is newer than this binary */
};

/* A folded sample of a batch. */
typedef struct row {
  const pm_series_t *s;
  int64_t ts;
  double v;
} row_t;

/* A metric declaration, as upserted into portalmetrics.metrics. */
typedef struct metric {
  char *name, *unit, *desc;
  pm_metric_type_t type;
} metric_t;

struct pm_writer {
  uv_loop_t *loop;
  pm_writer_opts_t o; /* strings owned */
  pm_source_t src;
  pm_pg_t *pg;
  int state;
  int migrate_mode;
  int handles; /* timers initialised */
  uv_timer_t retry_timer, flush_timer, maint_timer, drain_timer;
  unsigned closing; /* close callbacks outstanding */

  /* the end: drain's or migrate's callback */
  void (*done_cb)(void *, int);
  void *done_arg;
  int done_status;
  int draining;
  uint64_t drain_target;

  metric_t *metrics;
  size_t nmetrics;
  int catalog_dirty, maint_due;

  /* shipping: a batch is recs[0 .. nrecs), read after acked_seq (the
   * position); the transaction in flight ships cur[0 .. ncur), the whole
   * batch or, when bisecting, a part of it */
  uint64_t acked_seq;
  int64_t first_wait_us; /* monotonic: oldest unshipped record seen, 0 none */
  size_t batch_max;
  pm_rec_t *recs;
  size_t nrecs;
  pm_rec_t *cur;
  size_t ncur;
  row_t *rows;
  size_t nrows;
  uint32_t *slots; /* fold table: row index + 1 */
  size_t nslots;
  const pm_series_t **newser;
  size_t nnew;
  pm_idset_t confirmed; /* series ids known to be in the database, as ours */
  pm_idset_t bad;       /* series ids the database has otherwise: refused */
  pm_idset_t batch_ids; /* scratch: ids of this batch's new series */
  pm_idset_t months;    /* partitions known to exist (year * 12 + month) */
  pm_idmap_t newest; /* series id -> newest ts committed (direct path hint) */
  /* series_ingest marks (nodata is judged by ingest time): series id ->
   * monotonic time of its last committed mark, and the ids this batch
   * marks, remembered only once it commits */
  pm_idmap_t marked;
  int64_t *mark_ids;
  size_t nmark;
  pm_buf_t stmt_buf; /* the ship transaction's statements */
  int direct;        /* this attempt of the batch takes the direct path */
  unsigned direct_skip, direct_penalty; /* merge-only batches after a
                                           fallback, and the next such run */
  int64_t *need_months;
  size_t nneed;
  pm_buf_t series_buf, samples_buf;
  int in_txn;
  int part_retries;
  uint64_t batch_last; /* seq of cur's last record */
  uint64_t batch_hi;   /* seq of the batch's last record */

  /* the position (portalmetrics.ingest_position) */
  char *spool_id;
  char *daemon_pos;             /* daemon_id as written there */
  char *spool_lit, *daemon_lit; /* as SQL literals */
  int pos_setup;                /* reading it at connect (else: resuming) */
  int pos_read; /* read once: acked_seq is what the database said */
  pm_ratelimit_t rl_conflict;

  /* bisection of a batch with bad data: index ranges [lo, hi) of recs
   * still to ship, the next on top */
  struct range {
    size_t lo, hi;
  } bis[72];
  size_t nbis;
  int bisecting;
  char bad_state[6]; /* the error of the range that failed */
  char bad_reason[512];
  size_t dl_episode; /* records dead-lettered from this batch */
  char dl_first_state[6], dl_first_reason[512];

  /* the dead-letter write (on libuv's threadpool) */
  uv_work_t dl_work;
  int dl_busy;
  unsigned epoch, dl_epoch; /* pm_writer__fail bumps epoch */
  uint64_t dl_seq;          /* the record being written */
  uint64_t dl_upto;         /* records up to it are in the file already */
  char *dl_line;            /* the JSON line, with its newline */
  char dl_path[4096];
  char dl_err[4096 + 512]; /* "": written and fsynced */

  /* a COMMIT whose answer was lost: settled by the position */
  int indoubt;
  uint64_t indoubt_last;
  size_t indoubt_shipped, indoubt_refused;
  int indoubt_direct;

  /* migrations */
  int schema_version;
  const pm_migration_t *mig; /* the one running */

  /* errors */
  unsigned fails;
  int64_t down_since_us; /* monotonic, 0: not in an outage */
  int ever_connected;
  pm_ratelimit_t rl_ship, rl_down, rl_maint;
  uint64_t rng;

  pm_writer_stats_t stats;
};

/* ------------------------------------------------------------------ */
/* clocks */

static inline int64_t pm_writer__mono_us(void) {
  return (int64_t)(uv_hrtime() / 1000);
}

static inline int64_t pm_writer__wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* writer.c: commands and failures */

/* Drop the connection and retry later (or, migrating, give up); logs as
 * the kind of failure and the episode call for. */
void pm_writer__fail(pm_writer_t *w, int kind, const char *what,
                     const char *error, const char *sqlstate);

/* Send a command, or fail the episode if it cannot be sent: 0 or -1. */
int pm_writer__query(pm_writer_t *w, const char *what, const char *sql,
                     int nparams, const char *const *params,
                     const pm_pg_copy_t *copies, size_t ncopies, pm_pg_cb cb);

/* A command's result: 1 if it is fine to go on; else the failure is
 * handled. */
int pm_writer__check(pm_writer_t *w, const char *what, const pm_pg_result_t *r);

/* The last result's first value, or NULL. */
const char *pm_writer__value(const pm_pg_result_t *r);

/* ------------------------------------------------------------------ */
/* writer.c: where the schema steps hand back */

/* The migrations are committed (w->schema_version is current). */
void pm_writer__schema_ready(pm_writer_t *w);

/* The catalog and the partitions are done: setup ends, or maintenance. */
void pm_writer__maint_done(pm_writer_t *w);

/* ------------------------------------------------------------------ */
/* writer_schema.c */

/* Bring the schema up to date: each migration in its own transaction
 * under the advisory lock; then pm_writer__schema_ready. */
void pm_writer__migrate_schema(pm_writer_t *w);

/* Upsert the metric catalog if it changed, ensure the partitions (and
 * drop those past retention) if due; then pm_writer__maint_done. */
void pm_writer__maintain(pm_writer_t *w);

/* Free n metric declarations and the array. */
void pm_writer__free_metrics(metric_t *m, size_t n);

/* Partitions are monthly: the month (year * 12 + month - 1, UTC) of a
 * Unix time in us, and its first day as "YYYY-MM-01". */
int pm_writer__month_of(int64_t ts_us);
void pm_writer__month_date(int m, char *out, size_t len);

#endif

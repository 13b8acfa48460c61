/*
 * The PostgreSQL writer. Runs on the loop thread with libpq in
 * non-blocking mode and never blocks the loop: host names are resolved
 * with uv_getaddrinfo and passed as hostaddr, the socket is watched with a
 * uv_poll_t (re-read after every PQconnectPoll, stopped before PQfinish).
 * On every connect it migrates the schema (advisory transaction lock),
 * refreshes the metric catalog and ensures partitions; then it ships the
 * queue's records in sequence order, in batches folded first (set
 * overwrites, add sums), each in one transaction. A batch of known series
 * whose every ts is newer than what this writer committed for its series
 * cannot conflict with its own rows: it goes by binary COPY straight into
 * samples (the direct path). Any other batch, or a direct one that hits a
 * unique violation (another daemon's rows), goes by COPY into temporary
 * tables and INSERT ... ON CONFLICT (the merge path).
 *
 * Exactly once: every ship transaction also advances the spool's row of
 * portalmetrics.ingest_position with a fenced update (WHERE spool_id = $1
 * AND last_seq = $expected). On every connect the writer reads that row
 * (creating it at 0 when missing), acks in the queue every record up to
 * it and resumes after it: a COMMIT whose answer was lost is settled that
 * way, and so is a daemon restarted on the same spool. A fenced update
 * that finds the row moved (another session shipped from this spool) rolls
 * back, logs, re-reads the row and resumes after it.
 *
 * Errors: a broken connection, or a libpq error without SQLSTATE, is a
 * connection error; SQLSTATE classes 22 and 23 raised by a ship
 * transaction are bad data, except 23514 raised by partition routing (the
 * partition is created and the batch retried). Bad data: the batch is
 * bisected (each half in its own transaction, recursively) down to the
 * records that fail alone; each goes as one JSON line to
 * <deadletter_dir>/deadletter-YYYYMMDD.jsonl, fsynced (the directory too
 * when the file is new) before the position moves past it in its own
 * transaction. Every other error is retried with capped backoff and
 * jitter, logged once per episode, never dead-lettered. Layer: writer
 * and spool.
 */
#ifndef PM_WRITER_H
#define PM_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <portalmetrics/plugin.h>
#include "source.h"

typedef struct pm_writer_opts {
  const char *conninfo;      /* libpq conninfo or URI */
  const char *password_file; /* NULL: none (libpq's passfile still works) */
  const char *daemon_id;     /* application_name, and later positions */
  int64_t flush_interval_us; /* ship at least this often when idle */
  size_t batch_max;          /* records per transaction */
  int64_t connect_timeout_us;
  int64_t statement_timeout_us;
  int64_t max_sample_age_us; /* partitions from now - this */
  int64_t retention_us;      /* 0: never drop partitions */
  /* The key of portalmetrics.ingest_position: the spool's id, printable
   * ASCII without spaces or quotes, at most 128 bytes. NULL: a random one
   * for this writer (nothing resumes across restarts). */
  const char *spool_id;
  /* Where dead-letter files go (created if missing, its parent must
   * exist). NULL: a dead-lettered record is only logged, as its line. */
  const char *deadletter_dir;
} pm_writer_opts_t;

typedef struct pm_writer_stats {
  uint64_t shipped; /* records committed */
  uint64_t batches; /* transactions committed */
  uint64_t errors;  /* failed attempts */
  uint64_t refused; /* records refused (kind/series conflict in db) */
  int connected;
  int64_t last_ship_us;        /* wall clock of the last commit, 0: never */
  uint64_t direct_batches;     /* batches committed by the direct path */
  uint64_t direct_fallbacks;   /* direct attempts that met a unique violation
                                  and went through the merge instead */
  uint64_t dead_lettered;      /* records written to the dead-letter file */
  uint64_t position_conflicts; /* fenced updates that found the position
                                  moved by another session */
  uint64_t position; /* last_seq of ingest_position, as last read or set */
} pm_writer_stats_t;

typedef struct pm_writer pm_writer_t;

/* Copies opts and src (what it ships from: the spool, or a queue; NULL
 * for pm_writer_migrate). Does not connect yet. NULL on ENOMEM, or when
 * opts->spool_id is not as above (logged). */
pm_writer_t *pm_writer_new(uv_loop_t *loop, const pm_writer_opts_t *opts,
                           const pm_source_t *src);

/* Metric declarations to upsert into portalmetrics.metrics on every
 * connect (and now, if connected): tables is an array of ntables
 * NULL-name-terminated tables; copied. */
int pm_writer_set_metrics(pm_writer_t *w, const pm_metric_decl_t *const *tables,
                          size_t ntables);

/* Start connecting and shipping. Returns 0; failures to connect are
 * retried, not returned. */
int pm_writer_start(pm_writer_t *w);

/* The source has records (its on_ready calls this). */
void pm_writer_kick(pm_writer_t *w);

/*
 * Ship what is queued, then stop: cb(arg, 0) once every record pushed
 * before the call is committed, cb(arg, PM_ETIMEOUT) if timeout_us passes
 * first (what is left stays queued). Either way the connection is closed
 * and every handle is closed before cb runs. Called once.
 */
void pm_writer_drain(pm_writer_t *w, int64_t timeout_us,
                     void (*cb)(void *arg, int status), void *arg);

/* --migrate: connect, run the migrations, close; cb(arg, 0 or error). The
 * writer must not have been started. Error messages are logged. */
int pm_writer_migrate(pm_writer_t *w, void (*cb)(void *arg, int status),
                      void *arg);

void pm_writer_get_stats(const pm_writer_t *w, pm_writer_stats_t *out);

/* After drain's or migrate's cb. */
void pm_writer_free(pm_writer_t *w);

#endif

/*
 * The PostgreSQL writer: see writer.h. The connection primitive (connect,
 * one command at a time, COPY payloads) is pg_conn.c; the schema steps
 * (migrations, metric catalog, partitions) are writer_schema.c, the COPY
 * encoding copybuf.c, the struct and the steps the two writer files share
 * writer_int.h. This file is the state machine on top of the connection,
 * and the batches:
 *
 *   NEW -> CONNECTING -> SETUP -> IDLE <-> SHIPPING / MAINT
 *                 ^                 |
 *                 +--- BACKOFF <----+ (any failure: the connection is
 *                                      dropped, nothing is acked)
 *
 * SETUP runs, in order: session settings; the fate of a commit left in
 * doubt by a lost connection (txid_status); the migrations, each in its
 * own transaction under the advisory lock; the temporary tables; the
 * metric catalog; the partitions (and retention).
 *
 * A batch: read up to batch_max records after the last acked seq, fold
 * them by (series, ts) in seq order, make sure the months' partitions
 * exist, then one transaction: new series (COPY + INSERT ... ON CONFLICT
 * DO NOTHING + a check that the stored row matches, else the series'
 * records are refused), the folded samples (binary COPY into a temporary
 * table, then INSERT ... ON CONFLICT: set overwrites, add sums),
 * txid_current(), and COMMIT as its own round trip so that a lost answer
 * to it can be settled after reconnecting. Only then are the records
 * acked in the queue.
 *
 * The direct path: the writer remembers, per series, the newest ts it has
 * committed (a bounded map; only a hint, kept across reconnects). A batch
 * whose series are all confirmed and whose every row is newer than its
 * series' remembered ts cannot meet a row this writer wrote, so it skips
 * the temporary table and the merge: BEGIN, binary COPY straight into
 * portalmetrics.samples, txid_current(), COMMIT (the same in-doubt
 * handling). A row written by someone else (an HA pair sharing a config,
 * or a hand-made INSERT) makes the COPY fail with unique_violation (23505):
 * nothing of it is applied, the transaction is rolled back and the same
 * batch goes through the merge. A plain insert where no row exists is what
 * the merge would have done, for set and add alike, so the two paths
 * store the same values. After a fallback the next batches take the merge
 * (1, 2, 4 ... up to 64 of them, reset by a direct success), so that a
 * writer that keeps colliding does not pay for every batch twice.
 */
#include "writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copybuf.h"
#include "idmap.h"
#include "log.h"
#include "pg_conn.h"
#include "secret.h"
#include "series.h"
#include "writer_int.h"

#define BACKOFF_MIN_US (INT64_C(100) * 1000)
#define BACKOFF_MAX_US (INT64_C(30) * US_PER_S)
#define BACKOFF_LONG_US (INT64_C(5) * 60 * US_PER_S)
#define MAINT_INTERVAL_MS (UINT64_C(24) * 3600 * 1000)
#define PART_RETRIES 3
#define DEFAULT_BATCH 10000
#define HINT_MAX (256 * 1024) /* series remembered for the direct path */
#define DIRECT_PENALTY_MAX 64 /* merge-only batches after a fallback */

static void w_connect(pm_writer_t *w);
static void w_idle_point(pm_writer_t *w);
static void w_maybe_ship(pm_writer_t *w, int force);
static void w_finish(pm_writer_t *w, int status);
static void w_setup_indoubt(pm_writer_t *w);
static void w_setup_temp(pm_writer_t *w);
static void w_ship_parts(pm_writer_t *w);
static void w_ship_series(pm_writer_t *w);
static void w_ship_samples(pm_writer_t *w);

/* ------------------------------------------------------------------ */
/* randomness, timeouts */

static uint64_t w_rand(pm_writer_t *w) {
  /* xorshift64* */
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * UINT64_C(2685821657736338717);
}

static uint64_t ms_ceil(int64_t us) {
  return us <= 0 ? 0 : (uint64_t)((us + 999) / 1000);
}

static int64_t w_op_timeout(const pm_writer_t *w) {
  return w->o.statement_timeout_us > 0
             ? w->o.statement_timeout_us + 30 * US_PER_S
             : 0;
}

/* ------------------------------------------------------------------ */
/* the direct path's hint and payload */

/* Remember, for the direct path, that this writer committed ts for
 * series id, if it is newer than what it remembers. A bounded hint: past
 * HINT_MAX series, or out of memory, it forgets them all (a forgotten
 * series only takes the merge once more); it never fails. */
static void w_hint_raise(pm_idmap_t *m, int64_t id, int64_t ts) {
  int64_t old;
  if (pm_idmap_get(m, id, &old)) {
    if (ts > old)
      pm_idmap_put(m, id, ts); /* present: cannot fail */
    return;
  }
  if (pm_idmap_len(m) >= HINT_MAX)
    pm_idmap_clear(m);
  if (pm_idmap_put(m, id, ts) < 0) {
    pm_idmap_clear(m);
    pm_idmap_put(m, id, ts); /* fits in the emptied table, if it has one */
  }
}

/*
 * The direct path's payload: rows (all but those of the series in skip)
 * as COPY portalmetrics.samples (series_id, ts, value) FROM STDIN WITH
 * (FORMAT binary): (bigint, timestamptz, float8) tuples, sized once for
 * all rows (copybuf.h). Returns the number of tuples; -1 and b->oom when
 * out of memory.
 */
static long w_encode_direct(pm_buf_t *b, const row_t *rows, size_t n,
                            const pm_idset_t *skip) {
  long k = 0;
  if (pm_copy_begin_i8_ts_f8(b, n) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (skip->n && pm_idset_has(skip, rows[i].s->id))
      continue;
    pm_copy_i8_ts_f8(b, rows[i].s->id, rows[i].ts, rows[i].v);
    k++;
  }
  pm_copy_trailer(b);
  return k;
}

/* ------------------------------------------------------------------ */
/* small helpers */

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static const char *kind_name(pm_kind_t k) {
  return k == PM_ADD ? "add" : "set";
}

static int sqlstate_class(const char *st, const char *cls) {
  return st && strncmp(st, cls, 2) == 0;
}

/* ------------------------------------------------------------------ */
/* lifecycle */

pm_writer_t *pm_writer_new(uv_loop_t *loop, const pm_writer_opts_t *opts,
                           pm_queue_t *queue) {
  pm_writer_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->loop = loop;
  w->q = queue;
  pm_idset_init(&w->confirmed);
  pm_idset_init(&w->bad);
  pm_idset_init(&w->batch_ids);
  pm_idset_init(&w->months);
  pm_idmap_init(&w->newest);
  w->o = *opts;
  w->o.conninfo = xstrdup(opts->conninfo ? opts->conninfo : "");
  w->o.password_file = xstrdup(opts->password_file);
  w->o.daemon_id = xstrdup(opts->daemon_id ? opts->daemon_id : "");
  w->batch_max = opts->batch_max ? opts->batch_max : DEFAULT_BATCH;
  if (w->batch_max > UINT32_MAX / 4)
    w->batch_max = UINT32_MAX / 4;
  for (w->nslots = 64; w->nslots < w->batch_max * 2; w->nslots *= 2)
    ;
  w->recs = malloc(w->batch_max * sizeof *w->recs);
  w->rows = malloc(w->batch_max * sizeof *w->rows);
  w->slots = malloc(w->nslots * sizeof *w->slots);
  w->newser = malloc(w->batch_max * sizeof *w->newser);
  w->need_months = malloc(w->batch_max * sizeof *w->need_months);
  if (!w->o.conninfo || !w->o.daemon_id ||
      (opts->password_file && !w->o.password_file) || !w->recs || !w->rows ||
      !w->slots || !w->newser || !w->need_months) {
    pm_writer_free(w);
    return NULL;
  }
  w->rl_ship.interval_us = 60 * US_PER_S;
  w->rl_down.interval_us = 300 * US_PER_S;
  w->rl_maint.interval_us = 3600 * US_PER_S;
  w->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)w;
  if (!w->rng)
    w->rng = 1;
  w->catalog_dirty = 1;
  w->state = W_NEW;
  return w;
}

static void w_on_retry(uv_timer_t *t) {
  pm_writer_t *w = t->data;
  if (w->state == W_BACKOFF)
    w_connect(w);
}

static void w_on_flush(uv_timer_t *t) {
  pm_writer_t *w = t->data;
  w_maybe_ship(w, 1);
}

static void w_on_maint(uv_timer_t *t) {
  pm_writer_t *w = t->data;
  w->maint_due = 1;
  if (w->state == W_IDLE)
    w_idle_point(w);
}

static void w_on_drain_timeout(uv_timer_t *t) {
  pm_writer_t *w = t->data;
  uint64_t left =
      w->drain_target > w->acked_seq ? w->drain_target - w->acked_seq : 0;
  pm_warn("database writer: shutdown deadline reached with %" PRIu64
          " records not shipped; they stay queued",
          left);
  w_finish(w, PM_ETIMEOUT);
}

static void w_on_broken(void *arg, const char *why) {
  pm_writer_t *w = arg;
  pm_writer__fail(w, FAIL_CONN, NULL, why, "");
}

static int w_init_handles(pm_writer_t *w) {
  if (w->handles)
    return 0;
  w->pg = pm_pg_new(w->loop);
  if (!w->pg)
    return PM_ENOMEM;
  pm_pg_set_on_broken(w->pg, w_on_broken, w);
  uv_timer_init(w->loop, &w->retry_timer);
  uv_timer_init(w->loop, &w->flush_timer);
  uv_timer_init(w->loop, &w->maint_timer);
  uv_timer_init(w->loop, &w->drain_timer);
  w->retry_timer.data = w->flush_timer.data = w->maint_timer.data =
      w->drain_timer.data = w;
  w->handles = 1;
  return 0;
}

int pm_writer_start(pm_writer_t *w) {
  int rc;
  if (w->state != W_NEW)
    return PM_EINVAL;
  rc = w_init_handles(w);
  if (rc < 0)
    return rc;
  w->acked_seq = 0;
  w_connect(w);
  return 0;
}

int pm_writer_migrate(pm_writer_t *w, void (*cb)(void *, int), void *arg) {
  int rc;
  if (w->state != W_NEW)
    return PM_EINVAL;
  rc = w_init_handles(w);
  if (rc < 0)
    return rc;
  w->migrate_mode = 1;
  w->done_cb = cb;
  w->done_arg = arg;
  w_connect(w);
  return 0;
}

void pm_writer_drain(pm_writer_t *w, int64_t timeout_us,
                     void (*cb)(void *, int), void *arg) {
  w->done_cb = cb;
  w->done_arg = arg;
  w->draining = 1;
  w->drain_target = pm_queue_last_seq(w->q);
  if (w->state >= W_CLOSING)
    return;
  if (w->state == W_NEW) {
    if (w_init_handles(w) < 0) {
      /* nothing was started: nothing to close */
      w->state = W_CLOSED;
      if (cb)
        cb(arg, PM_ENOMEM);
      return;
    }
    if (w->drain_target > w->acked_seq)
      w_connect(w);
  }
  if (w->acked_seq >= w->drain_target) {
    w_finish(w, 0);
    return;
  }
  uv_timer_start(&w->drain_timer, w_on_drain_timeout, ms_ceil(timeout_us), 0);
  if (w->state == W_IDLE)
    w_maybe_ship(w, 1);
}

static void w_on_closed(uv_handle_t *h) {
  pm_writer_t *w = h->data;
  if (--w->closing == 0) {
    void (*cb)(void *, int) = w->done_cb;
    w->state = W_CLOSED;
    if (cb)
      cb(w->done_arg, w->done_status);
  }
}

static void w_on_pg_closed(void *arg) {
  pm_writer_t *w = arg;
  if (--w->closing == 0) {
    void (*cb)(void *, int) = w->done_cb;
    w->state = W_CLOSED;
    if (cb)
      cb(w->done_arg, w->done_status);
  }
}

/* Close the connection and every handle, then done_cb(status). */
static void w_finish(pm_writer_t *w, int status) {
  if (w->state >= W_CLOSING)
    return;
  w->state = W_CLOSING;
  w->done_status = status;
  w->stats.connected = 0;
  w->closing = 5;
  uv_close((uv_handle_t *)&w->retry_timer, w_on_closed);
  uv_close((uv_handle_t *)&w->flush_timer, w_on_closed);
  uv_close((uv_handle_t *)&w->maint_timer, w_on_closed);
  uv_close((uv_handle_t *)&w->drain_timer, w_on_closed);
  pm_pg_close(w->pg, w_on_pg_closed, w);
}

void pm_writer_get_stats(const pm_writer_t *w, pm_writer_stats_t *out) {
  *out = w->stats;
}

void pm_writer_free(pm_writer_t *w) {
  if (!w)
    return;
  if (w->handles && w->state != W_CLOSED)
    pm_error("database writer freed with its handles open (a bug)");
  pm_pg_free(w->pg);
  free((char *)w->o.conninfo);
  free((char *)w->o.password_file);
  free((char *)w->o.daemon_id);
  pm_writer__free_metrics(w->metrics, w->nmetrics);
  free(w->recs);
  free(w->rows);
  free(w->slots);
  free(w->newser);
  free(w->need_months);
  pm_idset_free(&w->confirmed);
  pm_idset_free(&w->bad);
  pm_idset_free(&w->batch_ids);
  pm_idset_free(&w->months);
  pm_idmap_free(&w->newest);
  pm_buf_free(&w->series_buf);
  pm_buf_free(&w->samples_buf);
  free(w);
}

/* ------------------------------------------------------------------ */
/* failures and backoff */

void pm_writer__fail(pm_writer_t *w, int kind, const char *what,
                     const char *error, const char *sqlstate) {
  int64_t now = pm_writer__mono_us(), delay;
  uint64_t suppressed = 0;
  char sup[64] = "";

  if (w->state >= W_CLOSING)
    return;
  pm_pg_reset(w->pg);
  uv_timer_stop(&w->flush_timer);
  w->stats.errors++;
  w->stats.connected = 0;
  w->in_txn = 0;
  if (!sqlstate)
    sqlstate = "";

  if (w->migrate_mode) {
    if (kind == FAIL_CONN)
      pm_error("cannot migrate: database unreachable: %s", error);
    else if (kind == FAIL_SCHEMA)
      pm_error("cannot migrate: %s", error);
    else
      pm_error("cannot migrate: %s failed: %s%s%s%s",
               what ? what : "a statement", error,
               *sqlstate ? " (SQLSTATE " : "", sqlstate, *sqlstate ? ")" : "");
    w_finish(w, kind == FAIL_CONN ? PM_EUNREACHABLE : PM_EPEER);
    return;
  }

  if (kind == FAIL_SCHEMA) {
    delay = BACKOFF_LONG_US;
  } else {
    unsigned f = w->fails < 20 ? w->fails : 20;
    int64_t base = BACKOFF_MIN_US << f;
    if (base > BACKOFF_MAX_US || base <= 0)
      base = BACKOFF_MAX_US;
    /* jitter: between half and all of it */
    delay = base / 2 + (int64_t)(w_rand(w) % (uint64_t)(base / 2 + 1));
  }
  w->fails++;

  if (kind == FAIL_CONN) {
    if (w->down_since_us == 0) {
      w->down_since_us = now;
      w->rl_down.last_us = now;
      w->rl_down.suppressed = 0;
      pm_warn("database unreachable: %s; retrying", error);
    } else if (pm_ratelimit_ok(&w->rl_down, now, &suppressed)) {
      pm_warn("database still unreachable after %.0fs: %s; retrying",
              (double)(now - w->down_since_us) / 1e6, error);
    } else {
      pm_debug("database unreachable: %s; retrying in %.1fs", error,
               (double)delay / 1e6);
    }
  } else if (pm_ratelimit_ok(&w->rl_ship, now, &suppressed)) {
    if (suppressed)
      snprintf(sup, sizeof sup, " (%" PRIu64 " more failures since)",
               suppressed);
    if (kind == FAIL_SCHEMA)
      pm_error("%s; retrying in %.0fs%s", error, (double)delay / 1e6, sup);
    else if ((sqlstate_class(sqlstate, "22") || sqlstate_class(sqlstate, "23")))
      pm_error("%s failed with bad data: %s (SQLSTATE %s): this should not "
               "happen, please report it; retrying in %.1fs%s",
               what ? what : "a statement", error, sqlstate,
               (double)delay / 1e6, sup);
    else
      pm_warn("%s failed: %s%s%s%s; retrying in %.1fs%s",
              what ? what : "a statement", error,
              *sqlstate ? " (SQLSTATE " : "", sqlstate, *sqlstate ? ")" : "",
              (double)delay / 1e6, sup);
  } else {
    pm_debug("%s failed again: %s", what ? what : "a statement", error);
  }

  w->state = W_BACKOFF;
  uv_timer_start(&w->retry_timer, w_on_retry, ms_ceil(delay), 0);
}

/* Send a command, or fail the episode if it cannot be sent. */
int pm_writer__query(pm_writer_t *w, const char *what, const char *sql,
                     int nparams, const char *const *params,
                     const pm_pg_copy_t *copies, size_t ncopies, pm_pg_cb cb) {
  int rc = pm_pg_query(w->pg, sql, nparams, params, copies, ncopies,
                       w_op_timeout(w), cb, w);
  if (rc < 0) {
    char err[1100];
    snprintf(err, sizeof err, "%s", pm_pg_error(w->pg));
    pm_writer__fail(w, rc == PM_EUNREACHABLE ? FAIL_CONN : FAIL_SQL, what, err,
                    "");
    return -1;
  }
  return 0;
}

/* A command's result: 1 if it is fine to go on; else the failure is
 * handled. */
int pm_writer__check(pm_writer_t *w, const char *what,
                     const pm_pg_result_t *r) {
  if (r->ok)
    return 1;
  pm_writer__fail(w, r->broken || !*r->sqlstate ? FAIL_CONN : FAIL_SQL, what,
                  r->error, r->sqlstate);
  return 0;
}

/* The last result's first value, or NULL. */
const char *pm_writer__value(const pm_pg_result_t *r) {
  const PGresult *res;
  if (r->nres == 0)
    return NULL;
  res = r->res[r->nres - 1];
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 ||
      PQnfields(res) < 1 || PQgetisnull(res, 0, 0))
    return NULL;
  return PQgetvalue(res, 0, 0);
}

/* ------------------------------------------------------------------ */
/* connect and set up */

static void w_on_connected(void *arg, const pm_pg_result_t *r);

static void w_connect(pm_writer_t *w) {
  pm_pg_connect_opts_t co = {0};
  char appname[128], err[1100];
  char *password = NULL;
  int rc;

  w->state = W_CONNECTING;
  if (w->o.password_file) {
    password =
        pm_secret_read(w->o.password_file, "password_file", err, sizeof err);
    if (!password) {
      pm_writer__fail(w, FAIL_CONN, NULL, err, "");
      return;
    }
  }
  snprintf(appname, sizeof appname, "portalmetricsd/%s", w->o.daemon_id);
  co.conninfo = w->o.conninfo;
  co.password = password;
  co.application_name = appname;
  co.timeout_us =
      w->o.connect_timeout_us > 0 ? w->o.connect_timeout_us : 10 * US_PER_S;
  rc = pm_pg_connect(w->pg, &co, w_on_connected, w);
  pm_secret_free(password);
  if (rc < 0) {
    snprintf(err, sizeof err, "%s", pm_pg_error(w->pg));
    if (rc == PM_ECONFIG && w->migrate_mode) {
      pm_error("database.conninfo: %s", err);
      w_finish(w, PM_ECONFIG);
      return;
    }
    pm_writer__fail(w, FAIL_CONN, NULL, err, "");
  }
}

static void w_on_session(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "configuring the session", r))
    return;
  w_setup_indoubt(w);
}

static void w_on_connected(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  char sql[512];
  int64_t st = w->o.statement_timeout_us > 0 ? w->o.statement_timeout_us : 0;
  int64_t lock = st > 0 && st < 30 * US_PER_S ? st : 30 * US_PER_S;
  int64_t idle = st > 60 * US_PER_S ? st : 60 * US_PER_S;
  if (!r->ok) {
    pm_writer__fail(w, FAIL_CONN, NULL, r->error, "");
    return;
  }
  w->state = W_SETUP;
  pm_idset_clear(&w->bad); /* re-checked on this connection */
  pm_idset_clear(&w->months);
  snprintf(sql, sizeof sql,
           "SET idle_in_transaction_session_timeout = '%" PRId64 "ms'; "
           "SET lock_timeout = '%" PRId64 "ms'; "
           "SET statement_timeout = '%" PRId64 "ms'",
           idle / 1000, lock / 1000, st / 1000);
  pm_writer__query(w, "configuring the session", sql, 0, NULL, NULL, 0,
                   w_on_session);
}

/* A COMMIT whose answer was lost: did it happen? */
static void w_on_indoubt(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *st;
  if (!pm_writer__check(w, "checking the last commit", r))
    return;
  st = pm_writer__value(r);
  if (st && strcmp(st, "committed") == 0) {
    pm_info("the batch whose commit was cut off (records up to seq %" PRIu64
            ") was committed",
            w->indoubt_last);
    w->acked_seq = w->indoubt_last;
    pm_queue_ack(w->q, w->indoubt_last);
    w->stats.shipped += w->indoubt_shipped;
    w->stats.refused += w->indoubt_refused;
    w->stats.batches++;
    if (w->indoubt_direct)
      w->stats.direct_batches++;
    w->stats.last_ship_us = pm_writer__wall_us();
  } else if (st && strcmp(st, "in progress") == 0) {
    pm_writer__fail(w, FAIL_SQL, "checking the last commit",
                    "the previous session's commit is still in progress", "");
    return;
  } else {
    pm_info("the batch whose commit was cut off (records up to seq %" PRIu64
            ") was not committed; shipping it again",
            w->indoubt_last);
  }
  w->indoubt = 0;
  pm_writer__migrate_schema(w);
}

static void w_setup_indoubt(pm_writer_t *w) {
  const char *params[1];
  if (!w->indoubt || w->migrate_mode) {
    pm_writer__migrate_schema(w);
    return;
  }
  params[0] = w->indoubt_xid;
  pm_writer__query(w, "checking the last commit",
                   "SELECT txid_status($1::bigint)", 1, params, NULL, 0,
                   w_on_indoubt);
}

/* The migrations are done: --migrate ends here; else set up the session. */
void pm_writer__schema_ready(pm_writer_t *w) {
  if (w->migrate_mode) {
    pm_notice("database schema is at version %d", w->schema_version);
    w_finish(w, 0);
    return;
  }
  w_setup_temp(w);
}

/* The merge path's staging tables, for this session. */
static void w_on_temp(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "creating the temporary tables", r))
    return;
  w->catalog_dirty = 1;
  w->maint_due = 1;
  pm_writer__maintain(w);
}

static void w_setup_temp(pm_writer_t *w) {
  pm_writer__query(
      w, "creating the temporary tables",
      "CREATE TEMP TABLE IF NOT EXISTS pm_tmp_series (id bigint, metric "
      "text, labels jsonb, kind text) ON COMMIT DELETE ROWS; "
      "CREATE TEMP TABLE IF NOT EXISTS pm_tmp_samples (series_id bigint, "
      "ts timestamptz, value double precision, is_add boolean) "
      "ON COMMIT DELETE ROWS",
      0, NULL, NULL, 0, w_on_temp);
}

/* The catalog and the partitions are done (writer_schema.c): at setup,
 * the connection is up; later, back to idle. */
void pm_writer__maint_done(pm_writer_t *w) {
  if (w->state == W_SETUP) {
    int64_t now = pm_writer__mono_us();
    w->state = W_IDLE;
    w->stats.connected = 1;
    if (w->down_since_us) {
      pm_notice("database connection restored after %.1fs",
                (double)(now - w->down_since_us) / 1e6);
      w->down_since_us = 0;
    } else if (!w->ever_connected) {
      pm_info("connected to the database (schema version %d)",
              w->schema_version);
    }
    w->ever_connected = 1;
    if (pm_queue_last_seq(w->q) <= w->acked_seq)
      w->fails = 0;
    if (!uv_is_active((uv_handle_t *)&w->maint_timer))
      uv_timer_start(&w->maint_timer, w_on_maint, MAINT_INTERVAL_MS,
                     MAINT_INTERVAL_MS);
  } else {
    w->state = W_IDLE;
  }
  w_idle_point(w);
}

/* ------------------------------------------------------------------ */
/* when to ship */

static void w_idle_point(pm_writer_t *w) {
  if (w->state != W_IDLE)
    return;
  if (w->draining && w->acked_seq >= w->drain_target) {
    w_finish(w, 0);
    return;
  }
  if (w->catalog_dirty || w->maint_due) {
    w->state = W_MAINT;
    pm_writer__maintain(w);
    return;
  }
  w_maybe_ship(w, 0);
}

void pm_writer_kick(pm_writer_t *w) {
  uint64_t shipped_upto;
  if (w->state == W_NEW || w->state >= W_CLOSING)
    return;
  shipped_upto = w->state == W_SHIPPING ? w->batch_last : w->acked_seq;
  if (w->first_wait_us == 0 && pm_queue_last_seq(w->q) > shipped_upto)
    w->first_wait_us = pm_writer__mono_us();
  if (w->state == W_IDLE)
    w_maybe_ship(w, 0);
}

static void w_ship(pm_writer_t *w);

static void w_maybe_ship(pm_writer_t *w, int force) {
  int64_t now, due;
  if (w->state != W_IDLE)
    return;
  if (pm_queue_last_seq(w->q) <= w->acked_seq) {
    w->first_wait_us = 0;
    uv_timer_stop(&w->flush_timer);
    return;
  }
  now = pm_writer__mono_us();
  if (w->first_wait_us == 0)
    w->first_wait_us = now;
  due = w->first_wait_us + w->o.flush_interval_us;
  if (force || w->draining || now >= due ||
      pm_queue_len(w->q) >= w->batch_max) {
    w_ship(w);
    return;
  }
  uv_timer_start(&w->flush_timer, w_on_flush, ms_ceil(due - now), 0);
}

/* ------------------------------------------------------------------ */
/* a batch */

static int row_cmp(const void *a, const void *b) {
  const row_t *x = a, *y = b;
  if (x->s->id != y->s->id)
    return x->s->id < y->s->id ? -1 : 1;
  return (x->ts > y->ts) - (x->ts < y->ts);
}

/* Fold the records by (series, ts) in seq order: set keeps the last
 * value, add sums. Also list the series not yet confirmed. */
static int w_fold(pm_writer_t *w) {
  size_t mask = w->nslots - 1;
  memset(w->slots, 0, w->nslots * sizeof *w->slots);
  w->nrows = 0;
  for (size_t i = 0; i < w->nrecs; i++) {
    const pm_rec_t *r = &w->recs[i];
    uint64_t h = pm_mix64((uint64_t)r->series->id ^
                          ((uint64_t)r->ts_us * UINT64_C(0x9E3779B97F4A7C15)));
    size_t j = h & mask;
    for (;; j = (j + 1) & mask) {
      uint32_t k = w->slots[j];
      if (k == 0) {
        row_t *row = &w->rows[w->nrows];
        row->s = r->series;
        row->ts = r->ts_us;
        row->v = r->value;
        w->slots[j] = (uint32_t)++w->nrows;
        break;
      }
      row_t *row = &w->rows[k - 1];
      if (row->s->id == r->series->id && row->ts == r->ts_us) {
        if (r->series->kind == PM_ADD)
          row->v += r->value;
        else
          row->v = r->value;
        break;
      }
    }
  }
  pm_idset_clear(&w->batch_ids);
  w->nnew = 0;
  for (size_t i = 0; i < w->nrows; i++) {
    const pm_series_t *s = w->rows[i].s;
    if (pm_idset_has(&w->confirmed, s->id) || pm_idset_has(&w->bad, s->id))
      continue;
    int rc = pm_idset_add(&w->batch_ids, s->id);
    if (rc < 0)
      return -1;
    if (rc > 0)
      w->newser[w->nnew++] = s;
  }
  qsort(w->rows, w->nrows, sizeof *w->rows, row_cmp);
  return 0;
}

/* Can the folded batch take the direct path? No new series (so every one
 * is confirmed or refused), and every row newer than what this writer
 * committed for its series. Rows are sorted by (series, ts): the first
 * row of a series is its oldest. */
static int w_direct_ok(pm_writer_t *w) {
  size_t n = 0;
  if (w->direct_skip) {
    w->direct_skip--;
    return 0;
  }
  if (w->nnew)
    return 0;
  for (size_t i = 0; i < w->nrows; i++) {
    const row_t *r = &w->rows[i];
    int64_t newest;
    if (i && w->rows[i - 1].s->id == r->s->id)
      continue;
    if (w->bad.n && pm_idset_has(&w->bad, r->s->id))
      continue;
    if (!pm_idmap_get(&w->newest, r->s->id, &newest) || r->ts <= newest)
      return 0;
    n++;
  }
  return n > 0;
}

static void w_ship(pm_writer_t *w) {
  w->nrecs = pm_queue_read(w->q, w->acked_seq, w->recs, w->batch_max);
  if (w->nrecs == 0) {
    w->first_wait_us = 0;
    return;
  }
  uv_timer_stop(&w->flush_timer);
  w->state = W_SHIPPING;
  w->batch_last = w->recs[w->nrecs - 1].seq;
  w->first_wait_us =
      pm_queue_last_seq(w->q) > w->batch_last ? pm_writer__mono_us() : 0;
  w->in_txn = 0;
  w->part_retries = 0;
  if (w_fold(w) < 0) {
    pm_writer__fail(w, FAIL_SQL, "preparing a batch", "out of memory", "");
    return;
  }
  w->direct = w_direct_ok(w);
  w_ship_parts(w);
}

static void w_on_ship_parts(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "creating partitions", r))
    return;
  for (size_t i = 0; i < w->nneed; i++)
    pm_idset_add(&w->months, w->need_months[i]);
  w_ship_series(w);
}

/* Make sure the batch's months have partitions. */
static void w_ship_parts(pm_writer_t *w) {
  pm_buf_t b = {0};
  const char *params[1];
  int last = -1;
  w->nneed = 0;
  for (size_t i = 0; i < w->nrows; i++) {
    int m = pm_writer__month_of(w->rows[i].ts);
    int known = 0;
    if (m == last || pm_idset_has(&w->months, m))
      continue;
    last = m;
    for (size_t j = 0; j < w->nneed && !known; j++)
      known = w->need_months[j] == m;
    if (!known)
      w->need_months[w->nneed++] = m;
  }
  if (w->nneed == 0) {
    w_ship_series(w);
    return;
  }
  pm_buf_put(&b, "{", 1);
  for (size_t i = 0; i < w->nneed; i++) {
    char d[24];
    pm_writer__month_date((int)w->need_months[i], d, sizeof d);
    if (i)
      pm_buf_put(&b, ",", 1);
    pm_buf_put(&b, d, strlen(d));
  }
  pm_buf_put(&b, "}", 2);
  if (b.oom) {
    pm_buf_free(&b);
    pm_writer__fail(w, FAIL_SQL, "creating partitions", "out of memory", "");
    return;
  }
  params[0] = b.p;
  pm_writer__query(
      w, "creating partitions",
      "SELECT count(*) FILTER (WHERE portalmetrics.ensure_partition(m)) "
      "FROM unnest($1::date[]) AS m",
      1, params, NULL, 0, w_on_ship_parts);
  pm_buf_free(&b);
}

static void w_on_ship_series(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const PGresult *res;
  if (!pm_writer__check(w, "writing new series", r))
    return;
  w->in_txn = 1;
  res = r->nres ? r->res[r->nres - 1] : NULL;
  for (int i = 0; res && i < PQntuples(res); i++) {
    int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    for (size_t j = 0; j < w->nnew; j++) {
      const pm_series_t *s = w->newser[j];
      if (s->id != id)
        continue;
      if (pm_idset_add(&w->bad, id) > 0)
        pm_error("refusing series %" PRId64 " (metric %s, labels %s, kind "
                 "%s): the database has this id with another metric, labels "
                 "or kind; its samples are dropped and counted",
                 id, s->metric, s->labels_json, kind_name(s->kind));
      break;
    }
  }
  w_ship_samples(w);
}

static void w_ship_series(pm_writer_t *w) {
  pm_pg_copy_t copy;
  pm_buf_t *b = &w->series_buf;
  if (w->nnew == 0) {
    w_ship_samples(w);
    return;
  }
  pm_buf_reset(b);
  pm_copy_header(b);
  for (size_t i = 0; i < w->nnew; i++) {
    const pm_series_t *s = w->newser[i];
    pm_copy_tuple(b, 4);
    pm_copy_int8(b, s->id);
    pm_copy_text(b, s->metric);
    pm_copy_jsonb(b, s->labels_json);
    pm_copy_text(b, kind_name(s->kind));
  }
  pm_copy_trailer(b);
  if (b->oom) {
    pm_writer__fail(w, FAIL_SQL, "writing new series", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  pm_writer__query(
      w, "writing new series",
      "BEGIN; "
      "COPY pm_tmp_series (id, metric, labels, kind) FROM STDIN "
      "(FORMAT binary); "
      "INSERT INTO portalmetrics.series (id, metric, labels, kind) "
      "SELECT id, metric, labels, kind FROM pm_tmp_series "
      "ON CONFLICT DO NOTHING; "
      "SELECT n.id FROM pm_tmp_series n "
      "LEFT JOIN portalmetrics.series s ON s.id = n.id "
      "WHERE s.id IS NULL OR s.metric <> n.metric OR s.labels <> n.labels "
      "OR s.kind <> n.kind",
      0, NULL, &copy, 1, w_on_ship_series);
}

static void w_on_committed(pm_writer_t *w, size_t shipped, size_t refused) {
  for (size_t i = 0; i < w->nnew; i++)
    if (!pm_idset_has(&w->bad, w->newser[i]->id))
      pm_idset_add(&w->confirmed, w->newser[i]->id);
  /* remember each series' newest ts: the last row of its run */
  for (size_t i = 0; i < w->nrows; i++) {
    const row_t *r = &w->rows[i];
    if (i + 1 < w->nrows && w->rows[i + 1].s->id == r->s->id)
      continue;
    if (!w->bad.n || !pm_idset_has(&w->bad, r->s->id))
      w_hint_raise(&w->newest, r->s->id, r->ts);
  }
  if (w->direct) {
    w->stats.direct_batches++;
    w->direct_penalty = 0;
  }
  w->acked_seq = w->batch_last;
  pm_queue_ack(w->q, w->batch_last);
  w->stats.shipped += shipped;
  w->stats.refused += refused;
  w->stats.batches++;
  w->stats.last_ship_us = pm_writer__wall_us();
  w->fails = 0;
  w->in_txn = 0;
  w->state = W_IDLE;
  w_idle_point(w);
}

static size_t w_count_refused(const pm_writer_t *w) {
  size_t n = 0;
  if (w->bad.n == 0)
    return 0;
  for (size_t i = 0; i < w->nrecs; i++)
    n += pm_idset_has(&w->bad, w->recs[i].series->id);
  return n;
}

static void w_on_commit(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  size_t refused = w_count_refused(w);
  if (!r->ok) {
    if (r->broken) {
      /* the server may or may not have committed: settle it on reconnect */
      w->indoubt = 1;
      snprintf(w->indoubt_xid, sizeof w->indoubt_xid, "%s", w->xid);
      w->indoubt_last = w->batch_last;
      w->indoubt_shipped = w->nrecs - refused;
      w->indoubt_refused = refused;
      w->indoubt_direct = w->direct;
    }
    pm_writer__check(w, "committing a batch", r);
    return;
  }
  w_on_committed(w, w->nrecs - refused, refused);
}

static void w_on_ship_samples(void *arg, const pm_pg_result_t *r);

static void w_on_rollback(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "rolling back", r))
    return;
  w->in_txn = 0;
  w_ship_parts(w);
}

static void w_on_ship_samples(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *xid;
  if (!r->ok && !r->broken && w->direct && strcmp(r->sqlstate, "23505") == 0) {
    /* a row is there already (another writer, or a hand-made insert):
     * nothing of the COPY was applied; merge the same batch instead */
    w->stats.direct_fallbacks++;
    w->direct = 0;
    w->direct_penalty = w->direct_penalty ? w->direct_penalty * 2 : 1;
    if (w->direct_penalty > DIRECT_PENALTY_MAX)
      w->direct_penalty = DIRECT_PENALTY_MAX;
    w->direct_skip = w->direct_penalty;
    pm_debug("direct COPY of a batch (records up to seq %" PRIu64
             ") met a row already stored (%s); merging it instead",
             w->batch_last, r->error);
    pm_writer__query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0,
                     w_on_rollback);
    return;
  }
  if (!r->ok && !r->broken && strcmp(r->sqlstate, "23514") == 0 &&
      w->part_retries < PART_RETRIES) {
    /* no partition for a row: someone dropped one we thought existed */
    w->part_retries++;
    pm_info("a samples partition is missing (%s); creating it", r->error);
    pm_idset_clear(&w->months);
    pm_writer__query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0,
                     w_on_rollback);
    return;
  }
  if (!pm_writer__check(w, "writing samples", r))
    return;
  xid = pm_writer__value(r);
  snprintf(w->xid, sizeof w->xid, "%s", xid ? xid : "0");
  pm_writer__query(w, "committing a batch", "COMMIT", 0, NULL, NULL, 0,
                   w_on_commit);
}

/* The direct path: BEGIN, COPY straight into samples, txid_current(). */
static void w_ship_direct(pm_writer_t *w) {
  pm_buf_t *b = &w->samples_buf;
  pm_pg_copy_t copy;
  if (w_encode_direct(b, w->rows, w->nrows, &w->bad) < 0) {
    pm_writer__fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  w->in_txn = 1;
  pm_writer__query(
      w, "writing samples",
      "BEGIN; "
      "COPY portalmetrics.samples (series_id, ts, value) FROM STDIN "
      "WITH (FORMAT binary); "
      "SELECT txid_current()",
      0, NULL, &copy, 1, w_on_ship_samples);
}

static void w_ship_samples(pm_writer_t *w) {
  pm_buf_t *b = &w->samples_buf;
  size_t nset = 0, nadd = 0;
  char sql[1536];
  pm_pg_copy_t copy;
  if (w->direct && !w->in_txn) {
    w_ship_direct(w);
    return;
  }
  w->direct = 0;
  pm_buf_reset(b);
  pm_copy_header(b);
  for (size_t i = 0; i < w->nrows; i++) {
    const row_t *row = &w->rows[i];
    int add = row->s->kind == PM_ADD;
    if (w->bad.n && pm_idset_has(&w->bad, row->s->id))
      continue;
    pm_copy_tuple(b, 4);
    pm_copy_int8(b, row->s->id);
    pm_copy_timestamptz(b, row->ts);
    pm_copy_float8(b, row->v);
    pm_copy_bool(b, add);
    if (add)
      nadd++;
    else
      nset++;
  }
  pm_copy_trailer(b);
  if (b->oom) {
    pm_writer__fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  if (nset + nadd == 0 && !w->in_txn) {
    size_t refused = w_count_refused(w);
    w_on_committed(w, w->nrecs - refused, refused);
    return;
  }
  snprintf(
      sql, sizeof sql, "%s%s%s%sSELECT txid_current()",
      w->in_txn ? "" : "BEGIN; ",
      nset + nadd ? "COPY pm_tmp_samples (series_id, ts, value, is_add) FROM "
                    "STDIN (FORMAT binary); "
                  : "",
      nset ? "INSERT INTO portalmetrics.samples AS x (series_id, ts, value) "
             "SELECT series_id, ts, value FROM pm_tmp_samples WHERE NOT is_add "
             "ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value "
             "WHERE x.value IS DISTINCT FROM EXCLUDED.value; "
           : "",
      nadd ? "INSERT INTO portalmetrics.samples AS x (series_id, ts, value) "
             "SELECT series_id, ts, value FROM pm_tmp_samples WHERE is_add "
             "ON CONFLICT (series_id, ts) DO UPDATE SET value = x.value + "
             "EXCLUDED.value; "
           : "");
  copy.data = b->p;
  copy.len = b->len;
  w->in_txn = 1;
  pm_writer__query(w, "writing samples", sql, 0, NULL, &copy,
                   nset + nadd ? 1 : 0, w_on_ship_samples);
}

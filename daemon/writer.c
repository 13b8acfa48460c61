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
 * SETUP runs, in order: session settings; the migrations, each in its
 * own transaction under the advisory lock; the spool's position in
 * portalmetrics.ingest_position (created at 0 when missing, read with FOR
 * UPDATE so that the transaction of a connection that just broke has
 * ended first), which also settles a commit left in doubt by the lost
 * connection; the temporary tables; the metric catalog; the partitions
 * (and retention).
 *
 * A batch: read up to batch_max records after the last acked seq, fold
 * them by (series, ts) in seq order, make sure the months' partitions
 * exist, then one transaction: new series (COPY + INSERT ... ON CONFLICT
 * DO NOTHING + a check that the stored row matches, else the series'
 * records are refused), the folded samples (binary COPY into a temporary
 * table, then INSERT ... ON CONFLICT: set overwrites, add sums), the
 * fenced update of the position (UPDATE ... WHERE spool_id = '...' AND
 * last_seq = <expected> RETURNING: no row means another session moved it:
 * roll back, re-read, resume after it), and COMMIT as its own round trip.
 * Only then are the records acked in the queue. A lost answer to the
 * COMMIT is settled by the position read on reconnecting.
 *
 * Bad data (SQLSTATE class 22 or 23, not partition routing's 23514, not
 * the direct path's 23505): roll back and bisect, each half in its own
 * transaction, down to the single records that fail; each of those is
 * written to the dead-letter file (on libuv's threadpool, fsynced, the
 * directory too when the file is new), then the position moves past it in
 * its own statement. Any other error drops the connection and retries the
 * batch from the position, whole: never bisected, never dead-lettered.
 *
 * The direct path: the writer remembers, per series, the newest ts it has
 * committed (a bounded map; only a hint, kept across reconnects). A batch
 * whose series are all confirmed and whose every row is newer than its
 * series' remembered ts cannot meet a row this writer wrote, so it skips
 * the temporary table and the merge: BEGIN, binary COPY straight into
 * portalmetrics.samples, the position, COMMIT (the same in-doubt
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

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
static void w_setup_temp(pm_writer_t *w);
static void w_read_position(pm_writer_t *w, int setup);
static void w_ship_range(pm_writer_t *w, size_t lo, size_t hi);
static void w_episode_end(pm_writer_t *w);
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

/* s as an SQL literal E'...' (quotes and backslashes doubled). */
static char *sql_literal(const char *s) {
  char *o = malloc(2 * strlen(s) + 4), *p = o;
  if (!o)
    return NULL;
  *p++ = 'E';
  *p++ = '\'';
  for (; *s; s++) {
    if (*s == '\'' || *s == '\\')
      *p++ = *s;
    *p++ = *s;
  }
  *p++ = '\'';
  *p = '\0';
  return o;
}

/* A spool id: 1..128 bytes of printable ASCII, no space, no quote, no
 * backslash. */
static int spool_id_valid(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (s[n] <= ' ' || s[n] > '~' || strchr("'\"\\", s[n]))
      return 0;
  return n > 0 && n <= 128;
}

/* The daemon id as written into the position (informational): at most
 * 200 bytes, anything but printable ASCII as '?', so that it can never
 * make a ship transaction fail. */
static char *daemon_for_position(const char *id) {
  size_t n = strlen(id) > 200 ? 200 : strlen(id);
  char *o = malloc(n + 1);
  if (!o)
    return NULL;
  for (size_t i = 0; i < n; i++)
    o[i] = id[i] < ' ' || id[i] > '~' ? '?' : id[i];
  o[n] = '\0';
  return o;
}

/*
 * How a failed command is to be handled (DESIGN.md, "Flow", point 5). A
 * broken connection, or an error without SQLSTATE, is the connection's;
 * classes 22 (data) and 23 (integrity) are bad data, except 23514 raised
 * by partition routing ("no partition of relation ... found for row"),
 * which the writer repairs; everything else (resources, deadlock,
 * serialization, admin shutdown, privileges, read-only, ...) is retried.
 */
static int w_bad_data_error(const pm_pg_result_t *r) {
  if (r->ok || r->broken || !*r->sqlstate)
    return 0;
  if (!sqlstate_class(r->sqlstate, "22") && !sqlstate_class(r->sqlstate, "23"))
    return 0;
  return !(strcmp(r->sqlstate, "23514") == 0 &&
           strstr(r->error, "no partition of relation"));
}

/* 23514 raised by partition routing? Told apart from a CHECK violation
 * (the same SQLSTATE) by the message; a message neither (lc_messages not
 * English) is taken for a missing partition once, and for bad data if it
 * comes back once the batch's partitions were made sure of. */
static int w_partition_missing(const pm_pg_result_t *r, int tries) {
  if (r->ok || r->broken || strcmp(r->sqlstate, "23514") != 0)
    return 0;
  if (strstr(r->error, "no partition of relation"))
    return 1;
  if (strstr(r->error, "violates check constraint"))
    return 0;
  return tries == 0;
}

/* Cut s short of an incomplete UTF-8 sequence at its end (a truncated
 * message). */
static void utf8_trim(char *s) {
  size_t n = strlen(s), i = n;
  unsigned char lead;
  size_t want;
  while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
    i--;
  if (i == 0 || (lead = (unsigned char)s[i - 1]) < 0xC0)
    return;
  want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  if (n - (i - 1) < want)
    s[i - 1] = '\0';
}

static void iso_time(int64_t us, char *buf, size_t len) {
  int64_t sec = us >= 0 ? us / US_PER_S : -((-us + US_PER_S - 1) / US_PER_S);
  time_t t = (time_t)sec;
  struct tm tm;
  size_t n;
  gmtime_r(&t, &tm);
  n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%06" PRId64 "Z", us - sec * US_PER_S);
}

/* ------------------------------------------------------------------ */
/* lifecycle */

pm_writer_t *pm_writer_new(uv_loop_t *loop, const pm_writer_opts_t *opts,
                           const pm_source_t *src) {
  pm_writer_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->loop = loop;
  if (src)
    w->src = *src;
  pm_idset_init(&w->confirmed);
  pm_idset_init(&w->bad);
  pm_idset_init(&w->batch_ids);
  pm_idset_init(&w->months);
  pm_idmap_init(&w->newest);
  pm_idmap_init(&w->marked);
  w->o = *opts;
  w->o.conninfo = xstrdup(opts->conninfo ? opts->conninfo : "");
  w->o.password_file = xstrdup(opts->password_file);
  w->o.daemon_id = xstrdup(opts->daemon_id ? opts->daemon_id : "");
  w->o.spool_id = NULL; /* w->spool_id */
  w->o.deadletter_dir = xstrdup(opts->deadletter_dir);
  w->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)w;
  if (!w->rng)
    w->rng = 1;
  if (opts->spool_id) {
    if (!spool_id_valid(opts->spool_id)) {
      pm_error("database writer: invalid spool id \"%s\"", opts->spool_id);
      pm_writer_free(w);
      return NULL;
    }
    w->spool_id = strdup(opts->spool_id);
  } else {
    unsigned char rnd[16];
    char hex[33];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0)
      for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)w_rand(w);
    for (size_t i = 0; i < sizeof rnd; i++)
      snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    w->spool_id = strdup(hex);
  }
  w->daemon_pos = w->o.daemon_id ? daemon_for_position(w->o.daemon_id) : NULL;
  w->spool_lit = w->spool_id ? sql_literal(w->spool_id) : NULL;
  w->daemon_lit = w->daemon_pos ? sql_literal(w->daemon_pos) : NULL;
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
      (opts->password_file && !w->o.password_file) ||
      (opts->deadletter_dir && !w->o.deadletter_dir) || !w->spool_lit ||
      !w->daemon_lit || !w->recs || !w->rows || !w->slots || !w->newser ||
      !w->need_months) {
    pm_writer_free(w);
    return NULL;
  }
  w->rl_ship.interval_us = 60 * US_PER_S;
  w->rl_down.interval_us = 300 * US_PER_S;
  w->rl_maint.interval_us = 3600 * US_PER_S;
  w->rl_conflict.interval_us = 60 * US_PER_S;
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
  w->drain_target = w->src.last_seq(w->src.ctx);
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

/* One of the things w_finish waits for is closed (or done). */
static void w_closed_one(pm_writer_t *w) {
  if (--w->closing == 0) {
    void (*cb)(void *, int) = w->done_cb;
    w->state = W_CLOSED;
    if (cb)
      cb(w->done_arg, w->done_status);
  }
}

static void w_on_closed(uv_handle_t *h) {
  w_closed_one(h->data);
}

static void w_on_pg_closed(void *arg) {
  w_closed_one(arg);
}

/* Close the connection and every handle, then done_cb(status). */
static void w_finish(pm_writer_t *w, int status) {
  if (w->state >= W_CLOSING)
    return;
  w->state = W_CLOSING;
  w->done_status = status;
  w->stats.connected = 0;
  w->closing = 5 + (w->dl_busy ? 1 : 0); /* a dead-letter write finishes */
  w_episode_end(w);
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
  free((char *)w->o.deadletter_dir);
  free(w->spool_id);
  free(w->daemon_pos);
  free(w->spool_lit);
  free(w->daemon_lit);
  free(w->dl_line);
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
  pm_idmap_free(&w->marked);
  free(w->mark_ids);
  pm_buf_free(&w->stmt_buf);
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
  w->epoch++; /* a dead-letter write in flight is not followed up */
  w_episode_end(w);
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
  pm_writer__migrate_schema(w);
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

/* The migrations are done: --migrate ends here; else set up the session. */
void pm_writer__schema_ready(pm_writer_t *w) {
  if (w->migrate_mode) {
    pm_notice("database schema is at version %d", w->schema_version);
    w_finish(w, 0);
    return;
  }
  w_read_position(w, 1);
}

/* ------------------------------------------------------------------ */
/* the position */

/* The position p was read: settle a commit left in doubt, ack what is
 * shipped, resume after it. */
static void w_apply_position(pm_writer_t *w, uint64_t p) {
  if (w->indoubt) {
    if (p >= w->indoubt_last) {
      pm_info("the batch whose commit was cut off (records up to seq %" PRIu64
              ") was committed",
              w->indoubt_last);
      w->stats.shipped += w->indoubt_shipped;
      w->stats.refused += w->indoubt_refused;
      if (w->indoubt_shipped + w->indoubt_refused) {
        w->stats.batches++;
        if (w->indoubt_direct)
          w->stats.direct_batches++;
      }
      w->stats.last_ship_us = pm_writer__wall_us();
    } else {
      pm_info("the batch whose commit was cut off (records up to seq %" PRIu64
              ") was not committed; shipping it again",
              w->indoubt_last);
    }
    w->indoubt = 0;
  } else if (w->pos_read && p < w->acked_seq) {
    pm_warn("the ingest position of spool %s is %" PRIu64
            ", behind the %" PRIu64 " this writer shipped: it was moved back "
            "(a restored database?); resuming after %" PRIu64,
            w->spool_id, p, w->acked_seq, p);
  } else if (w->pos_read && p > w->acked_seq) {
    pm_warn("the ingest position of spool %s is %" PRIu64
            ": records after %" PRIu64 " up to it were shipped by another "
            "session; resuming after %" PRIu64,
            w->spool_id, p, w->acked_seq, p);
  } else if (!w->pos_read && p > 0) {
    pm_info("spool %s is shipped up to seq %" PRIu64 "; resuming after it",
            w->spool_id, p);
  }
  w->pos_read = 1;
  w->acked_seq = p;
  w->stats.position = p;
  w->src.ack(w->src.ctx, p);
}

static void w_on_pos_read(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  long long p;
  char msg[300];
  if (!pm_writer__check(w, "reading the ingest position", r))
    return;
  v = pm_writer__value(r);
  if (!v) {
    pm_writer__fail(w, FAIL_SQL, "reading the ingest position",
                    "the row of this spool vanished", "");
    return;
  }
  p = strtoll(v, NULL, 10);
  if (p < 0) {
    snprintf(msg, sizeof msg,
             "the ingest position of spool %s is negative (%lld): set it to "
             "what was shipped",
             w->spool_id, p);
    pm_writer__fail(w, FAIL_SQL, "reading the ingest position", msg, "");
    return;
  }
  w_apply_position(w, (uint64_t)p);
  if (w->pos_setup) {
    w_setup_temp(w);
    return;
  }
  w->state = W_IDLE;
  w_idle_point(w);
}

static void w_on_pos_insert(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *params[1] = {w->spool_id};
  if (!pm_writer__check(w, "reading the ingest position", r))
    return;
  /* FOR UPDATE: waits until a transaction that holds the row (the one of
   * a connection that just broke, its COMMIT maybe in flight) has ended */
  pm_writer__query(w, "reading the ingest position",
                   "SELECT last_seq FROM portalmetrics.ingest_position "
                   "WHERE spool_id = $1 FOR UPDATE",
                   1, params, NULL, 0, w_on_pos_read);
}

/* Read the spool's position (creating it at 0 when missing); then, at
 * setup, go on with it, else resume shipping. */
static void w_read_position(pm_writer_t *w, int setup) {
  const char *params[2] = {w->spool_id, w->daemon_pos};
  w->pos_setup = setup;
  pm_writer__query(w, "reading the ingest position",
                   "INSERT INTO portalmetrics.ingest_position (spool_id, "
                   "daemon_id, last_seq, updated_at) VALUES ($1, $2, 0, now()) "
                   "ON CONFLICT (spool_id) DO NOTHING",
                   2, params, NULL, 0, w_on_pos_insert);
}

/* The fenced update of a ship transaction: the position from acked_seq
 * to batch_last. 0, or -1 if it does not fit. */
static int w_position_sql(const pm_writer_t *w, char *buf, size_t len) {
  int n = snprintf(buf, len,
                   "UPDATE portalmetrics.ingest_position SET last_seq = "
                   "%" PRIu64 ", daemon_id = %s, updated_at = now() "
                   "WHERE spool_id = %s AND last_seq = %" PRIu64
                   " RETURNING last_seq",
                   w->batch_last, w->daemon_lit, w->spool_lit, w->acked_seq);
  return n > 0 && (size_t)n < len ? 0 : -1;
}

/*
 * The series_ingest marks of a ship transaction: last_ingest = now() for
 * the batch's series not marked in the last MARK_EVERY_US. Targets judge
 * nodata by ingest time (a day bucket's ts is midnight whatever the hour),
 * and marking each series at most every 10 s keeps that to a few rows per
 * batch; target_status allows for the lag. Appends to b; 0 or -1 (out of
 * memory).
 */
#define MARK_EVERY_US INT64_C(10000000)
static int w_marks_sql(pm_writer_t *w, pm_buf_t *b) {
  int64_t now = pm_writer__mono_us();
  char num[32];
  w->nmark = 0;
  for (size_t i = 0; i < w->nrows; i++) {
    int64_t id = w->rows[i].s->id, t;
    if (i + 1 < w->nrows && w->rows[i + 1].s->id == id)
      continue; /* rows are sorted by series: one mark per run */
    if (w->bad.n && pm_idset_has(&w->bad, id))
      continue;
    if (pm_idmap_get(&w->marked, id, &t) && now - t < MARK_EVERY_US)
      continue;
    if (w->nmark == 0 || (w->nmark & (w->nmark - 1)) == 0) {
      size_t cap = w->nmark ? w->nmark * 2 : 16;
      int64_t *p = realloc(w->mark_ids, cap * sizeof *p);
      if (!p)
        return -1;
      w->mark_ids = p;
    }
    w->mark_ids[w->nmark++] = id;
  }
  if (w->nmark == 0)
    return 0;
  static const char head[] = "INSERT INTO portalmetrics.series_ingest "
                             "(series_id, last_ingest) SELECT unnest('{";
  pm_buf_put(b, head, sizeof head - 1);
  for (size_t i = 0; i < w->nmark; i++) {
    int n =
        snprintf(num, sizeof num, "%s%" PRId64, i ? "," : "", w->mark_ids[i]);
    pm_buf_put(b, num, (size_t)n);
  }
  static const char tail[] =
      "}'::bigint[]), now() ON CONFLICT (series_id) DO UPDATE SET "
      "last_ingest = EXCLUDED.last_ingest; ";
  pm_buf_put(b, tail, sizeof tail - 1);
  return b->oom ? -1 : 0;
}

static void w_marks_committed(pm_writer_t *w) {
  int64_t now = pm_writer__mono_us();
  for (size_t i = 0; i < w->nmark; i++)
    if (pm_idmap_put(&w->marked, w->mark_ids[i], now) < 0)
      break; /* out of memory: the series is marked again next batch */
  w->nmark = 0;
}

static void w_on_conflict_rollback(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "rolling back", r))
    return;
  w->in_txn = 0;
  w_read_position(w, 0);
}

/* A fenced update found no row at acked_seq: another session moved the
 * position. Roll back, re-read it, resume after it. */
static void w_conflict(pm_writer_t *w) {
  uint64_t sup = 0;
  w->stats.position_conflicts++;
  if (pm_ratelimit_ok(&w->rl_conflict, pm_writer__mono_us(), &sup))
    pm_warn("the ingest position of spool %s is no longer at %" PRIu64
            ": another session moved it; rolling back the batch (records up "
            "to seq %" PRIu64 ") and reading the position again%s",
            w->spool_id, w->acked_seq, w->batch_last,
            sup ? " (this happened before, too)" : "");
  w_episode_end(w);
  if (w->in_txn)
    pm_writer__query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0,
                     w_on_conflict_rollback);
  else
    w_read_position(w, 0);
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
    if (w->src.last_seq(w->src.ctx) <= w->acked_seq)
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
  shipped_upto = w->state == W_SHIPPING ? w->batch_hi : w->acked_seq;
  if (w->first_wait_us == 0 && w->src.last_seq(w->src.ctx) > shipped_upto)
    w->first_wait_us = pm_writer__mono_us();
  if (w->state == W_IDLE)
    w_maybe_ship(w, 0);
}

static void w_ship(pm_writer_t *w);

static void w_maybe_ship(pm_writer_t *w, int force) {
  int64_t now, due;
  if (w->state != W_IDLE)
    return;
  /* records pushed after the position was read may be shipped already
   * (an earlier session of this spool shipped them) */
  w->src.ack(w->src.ctx, w->acked_seq);
  if (w->src.last_seq(w->src.ctx) <= w->acked_seq) {
    w->first_wait_us = 0;
    uv_timer_stop(&w->flush_timer);
    return;
  }
  now = pm_writer__mono_us();
  if (w->first_wait_us == 0)
    w->first_wait_us = now;
  due = w->first_wait_us + w->o.flush_interval_us;
  if (force || w->draining || now >= due ||
      w->src.len(w->src.ctx) >= w->batch_max) {
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
  for (size_t i = 0; i < w->ncur; i++) {
    const pm_rec_t *r = &w->cur[i];
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
  w->nrecs = w->src.read(w->src.ctx, w->acked_seq, w->recs, w->batch_max);
  if (w->nrecs == 0) {
    w->first_wait_us = 0;
    return;
  }
  uv_timer_stop(&w->flush_timer);
  w->state = W_SHIPPING;
  w->batch_hi = w->recs[w->nrecs - 1].seq;
  w->first_wait_us =
      w->src.last_seq(w->src.ctx) > w->batch_hi ? pm_writer__mono_us() : 0;
  w->nbis = 0;
  w_ship_range(w, 0, w->nrecs);
}

/* Ship recs[lo .. hi) in one transaction: the whole batch, or a part of
 * it when bisecting. */
static void w_ship_range(pm_writer_t *w, size_t lo, size_t hi) {
  w->cur = w->recs + lo;
  w->ncur = hi - lo;
  w->batch_last = w->cur[w->ncur - 1].seq;
  w->in_txn = 0;
  w->part_retries = 0;
  if (w_fold(w) < 0) {
    pm_writer__fail(w, FAIL_SQL, "preparing a batch", "out of memory", "");
    return;
  }
  w->direct = w_direct_ok(w);
  w_ship_parts(w);
}

/* The transaction of cur is committed: the next part of the batch, or
 * the batch is done. */
static void w_next(pm_writer_t *w) {
  if (w->nbis) {
    struct range rg = w->bis[--w->nbis];
    w_ship_range(w, rg.lo, rg.hi);
    return;
  }
  w_episode_end(w);
  w->state = W_IDLE;
  w_idle_point(w);
}

/* ------------------------------------------------------------------ */
/* bad data: bisection and the dead-letter file */

/* The end of a batch's bisection (done, or abandoned): say once what was
 * dead-lettered. */
static void w_episode_end(pm_writer_t *w) {
  if (w->dl_episode)
    pm_error("dead-lettered %zu record%s of a batch of %zu (up to seq "
             "%" PRIu64 ") %s%s: %s (SQLSTATE %s)",
             w->dl_episode, w->dl_episode == 1 ? "" : "s", w->nrecs,
             w->batch_hi, w->o.deadletter_dir ? "to " : "",
             w->o.deadletter_dir ? w->dl_path
                                 : "(logged above: no dead-letter directory)",
             w->dl_first_reason, w->dl_first_state);
  w->dl_episode = 0;
  w->bisecting = 0;
  w->nbis = 0;
}

/* The dead-letter line of rec (with its newline), or NULL. */
static char *w_dl_line(const pm_writer_t *w, const pm_rec_t *rec,
                       int64_t at_us) {
  const pm_series_t *s = rec->series;
  char ts[48], at[48], *text = NULL, *line = NULL;
  const char *reason = w->bad_reason;
  json_t *o = NULL;
  iso_time(rec->ts_us, ts, sizeof ts);
  iso_time(at_us, at, sizeof at);
  for (int attempt = 0; attempt < 2 && !o; attempt++) {
    json_t *labels = json_loads(s->labels_json, 0, NULL);
    o = json_pack("{s:I, s:s, s:o, s:s, s:o, s:s, s:s, s:s, s:s}", "seq",
                  (json_int_t)rec->seq, "metric", s->metric, "labels",
                  labels ? labels : json_object(), "ts", ts, "value",
                  isfinite(rec->value) ? json_real(rec->value) : json_null(),
                  "kind", kind_name(s->kind), "sqlstate", w->bad_state,
                  "reason", reason, "at", at);
    reason = "(the server's message is not valid UTF-8)";
  }
  if (o)
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (text && (line = malloc(strlen(text) + 2)))
    sprintf(line, "%s\n", text);
  free(text);
  return line;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, e;
  if (fd < 0)
    return -1;
  rc = fsync(fd);
  e = errno;
  close(fd);
  errno = e;
  return rc;
}

/* On libuv's threadpool: append dl_line to dl_path and make it durable
 * (the file; the directory when the file is new; its parent when the
 * directory is new). dl_err says what failed, "" if nothing. */
static void w_dl_work(uv_work_t *req) {
  pm_writer_t *w = req->data;
  const char *dir = w->o.deadletter_dir, *what = NULL;
  size_t len = strlen(w->dl_line), off = 0;
  int dir_new = 0, file_new = 0, fd;
  struct stat st;
  char last;

  w->dl_err[0] = '\0';
  if (mkdir(dir, 0750) == 0)
    dir_new = 1;
  else if (errno != EEXIST) {
    snprintf(w->dl_err, sizeof w->dl_err, "cannot create %s: %s", dir,
             strerror(errno));
    return;
  }
  fd = open(w->dl_path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
            0640);
  if (fd >= 0)
    file_new = 1;
  else if (errno == EEXIST)
    fd = open(w->dl_path, O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    snprintf(w->dl_err, sizeof w->dl_err, "cannot open %s: %s", w->dl_path,
             strerror(errno));
    return;
  }
  /* a line torn by a crash: end it, so that this one stands alone */
  if (!file_new && fstat(fd, &st) == 0 && st.st_size > 0 &&
      pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n' &&
      write(fd, "\n", 1) != 1)
    what = "write";
  while (!what && off < len) {
    ssize_t n = write(fd, w->dl_line + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      what = "write";
    else
      off += (size_t)n;
  }
  if (!what && fsync(fd) != 0)
    what = "fsync";
  if (close(fd) != 0 && !what)
    what = "close";
  if (!what && file_new && fsync_dir(dir) != 0)
    what = "fsync the directory of";
  if (!what && dir_new) {
    char parent[sizeof w->dl_path];
    char *slash;
    snprintf(parent, sizeof parent, "%s", dir);
    slash = strrchr(parent, '/');
    if (slash == parent)
      slash[1] = '\0';
    else if (slash)
      *slash = '\0';
    else
      snprintf(parent, sizeof parent, ".");
    if (fsync_dir(parent) != 0)
      what = "fsync the parent directory of";
  }
  if (what)
    snprintf(w->dl_err, sizeof w->dl_err, "cannot %s %s: %s", what, w->dl_path,
             strerror(errno));
}

static void w_on_dl_advanced(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!r->ok) {
    if (r->broken) {
      w->indoubt = 1;
      w->indoubt_last = w->batch_last;
      w->indoubt_shipped = w->indoubt_refused = 0;
      w->indoubt_direct = 0;
    }
    pm_writer__check(w, "moving the ingest position past a dead letter", r);
    return;
  }
  if (!pm_writer__value(r)) {
    w_conflict(w);
    return;
  }
  w_marks_committed(w);
  w->acked_seq = w->batch_last;
  w->stats.position = w->batch_last;
  w->src.ack(w->src.ctx, w->batch_last);
  w->fails = 0;
  w_next(w);
}

/* The dead-lettered record cur[0] is durable: move the position past it
 * in its own statement (a transaction of its own). */
static void w_dl_advance(pm_writer_t *w) {
  char nw[24], ex[24];
  const char *params[4] = {w->spool_id, w->daemon_pos, nw, ex};
  snprintf(nw, sizeof nw, "%" PRIu64, w->batch_last);
  snprintf(ex, sizeof ex, "%" PRIu64, w->acked_seq);
  pm_writer__query(w, "moving the ingest position past a dead letter",
                   "UPDATE portalmetrics.ingest_position SET last_seq = "
                   "$3::bigint, daemon_id = $2, updated_at = now() "
                   "WHERE spool_id = $1 AND last_seq = $4::bigint "
                   "RETURNING last_seq",
                   4, params, NULL, 0, w_on_dl_advanced);
}

/* A record is in the dead-letter file (or the log). */
static void w_dl_written(pm_writer_t *w, uint64_t seq) {
  if (seq > w->dl_upto)
    w->dl_upto = seq;
  w->stats.dead_lettered++;
  if (w->dl_episode++ == 0) {
    memcpy(w->dl_first_state, w->bad_state, sizeof w->dl_first_state);
    memcpy(w->dl_first_reason, w->bad_reason, sizeof w->dl_first_reason);
  }
}

static void w_dl_after(uv_work_t *req, int status) {
  pm_writer_t *w = req->data;
  int ok = status == 0 && !w->dl_err[0];
  w->dl_busy = 0;
  free(w->dl_line);
  w->dl_line = NULL;
  if (ok)
    w_dl_written(w, w->dl_seq);
  if (w->state >= W_CLOSING) {
    w_closed_one(w);
    return;
  }
  if (w->dl_epoch != w->epoch || w->state != W_SHIPPING)
    return; /* the connection failed meanwhile: the batch starts over */
  if (!ok) {
    pm_writer__fail(w, FAIL_SQL, "writing the dead-letter file",
                    status ? uv_strerror(status) : w->dl_err, "");
    return;
  }
  w_dl_advance(w);
}

/* cur is one record that fails alone with bad data: write it to the
 * dead-letter file, then move the position past it. */
static void w_deadletter(pm_writer_t *w) {
  const pm_rec_t *rec = &w->cur[0];
  int64_t now = pm_writer__wall_us();
  char day[16];
  struct tm tm;
  time_t t = (time_t)(now / US_PER_S);
  int rc;

  if (rec->seq <= w->dl_upto) { /* written by an earlier attempt */
    w_dl_advance(w);
    return;
  }
  if (w->dl_busy) {
    pm_writer__fail(w, FAIL_SQL, "writing the dead-letter file",
                    "the previous write is still running", "");
    return;
  }
  w->dl_line = w_dl_line(w, rec, now);
  if (!w->dl_line) {
    pm_writer__fail(w, FAIL_SQL, "writing the dead-letter file",
                    "out of memory", "");
    return;
  }
  if (!w->o.deadletter_dir) {
    pm_error("dead letter (no dead-letter directory): %.*s",
             (int)strlen(w->dl_line) - 1, w->dl_line);
    free(w->dl_line);
    w->dl_line = NULL;
    w_dl_written(w, rec->seq);
    w_dl_advance(w);
    return;
  }
  gmtime_r(&t, &tm);
  strftime(day, sizeof day, "%Y%m%d", &tm);
  snprintf(w->dl_path, sizeof w->dl_path, "%s/deadletter-%s.jsonl",
           w->o.deadletter_dir, day);
  w->dl_seq = rec->seq;
  w->dl_epoch = w->epoch;
  w->dl_work.data = w;
  w->dl_busy = 1;
  rc = uv_queue_work(w->loop, &w->dl_work, w_dl_work, w_dl_after);
  if (rc < 0) {
    w->dl_busy = 0;
    free(w->dl_line);
    w->dl_line = NULL;
    pm_writer__fail(w, FAIL_SQL, "writing the dead-letter file",
                    uv_strerror(rc), "");
  }
}

static void w_on_bad_rollback(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  size_t lo, hi;
  if (!pm_writer__check(w, "rolling back", r))
    return;
  w->in_txn = 0;
  lo = (size_t)(w->cur - w->recs);
  hi = lo + w->ncur;
  if (w->ncur > 1 && w->nbis < sizeof w->bis / sizeof w->bis[0]) {
    size_t mid = lo + w->ncur / 2;
    w->bis[w->nbis].lo = mid;
    w->bis[w->nbis].hi = hi;
    w->nbis++;
    w_ship_range(w, lo, mid);
    return;
  }
  w_deadletter(w);
}

/* The transaction of cur failed with bad data: roll back, then bisect it
 * or, if it is one record, dead-letter it. */
static void w_bad_data(pm_writer_t *w, const pm_pg_result_t *r) {
  snprintf(w->bad_state, sizeof w->bad_state, "%s", r->sqlstate);
  snprintf(w->bad_reason, sizeof w->bad_reason, "%s", r->error);
  utf8_trim(w->bad_reason);
  if (!w->bisecting) {
    w->bisecting = 1;
    pm_info("a batch of %zu records (up to seq %" PRIu64 ") has bad data: "
            "%s (SQLSTATE %s); bisecting it to find the bad records",
            w->nrecs, w->batch_hi, w->bad_reason, w->bad_state);
  }
  pm_writer__query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0,
                   w_on_bad_rollback);
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
  if (w_bad_data_error(r)) {
    w_bad_data(w, r);
    return;
  }
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
  w_marks_committed(w);
  w->acked_seq = w->batch_last;
  w->stats.position = w->batch_last;
  w->src.ack(w->src.ctx, w->batch_last);
  w->stats.shipped += shipped;
  w->stats.refused += refused;
  w->stats.batches++;
  w->stats.last_ship_us = pm_writer__wall_us();
  w->fails = 0;
  w->in_txn = 0;
  w_next(w);
}

static size_t w_count_refused(const pm_writer_t *w) {
  size_t n = 0;
  if (w->bad.n == 0)
    return 0;
  for (size_t i = 0; i < w->ncur; i++)
    n += pm_idset_has(&w->bad, w->cur[i].series->id);
  return n;
}

static void w_on_commit(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  size_t refused = w_count_refused(w);
  w->in_txn = 0;
  if (!r->ok) {
    if (r->broken) {
      /* the server may or may not have committed: the position read on
       * reconnecting says which */
      w->indoubt = 1;
      w->indoubt_last = w->batch_last;
      w->indoubt_shipped = w->ncur - refused;
      w->indoubt_refused = refused;
      w->indoubt_direct = w->direct;
    } else if (w_bad_data_error(r)) {
      w_bad_data(w, r);
      return;
    }
    pm_writer__check(w, "committing a batch", r);
    return;
  }
  w_on_committed(w, w->ncur - refused, refused);
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
  if (w_partition_missing(r, w->part_retries) &&
      w->part_retries < PART_RETRIES) {
    /* no partition for a row: someone dropped one we thought existed */
    w->part_retries++;
    pm_info("a samples partition is missing (%s); creating it", r->error);
    pm_idset_clear(&w->months);
    pm_writer__query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0,
                     w_on_rollback);
    return;
  }
  if (!w_partition_missing(r, w->part_retries) && w_bad_data_error(r)) {
    w_bad_data(w, r);
    return;
  }
  if (!pm_writer__check(w, "writing samples", r))
    return;
  if (!pm_writer__value(r)) { /* the fenced update found no row */
    w_conflict(w);
    return;
  }
  pm_writer__query(w, "committing a batch", "COMMIT", 0, NULL, NULL, 0,
                   w_on_commit);
}

/* The statements that close every ship transaction: the ingest marks,
 * then the fenced position update (its RETURNING is the last result).
 * Appended to b; 0 or -1. */
static int w_tail_sql(pm_writer_t *w, pm_buf_t *b) {
  char pos[1024];
  if (w_marks_sql(w, b) < 0 || w_position_sql(w, pos, sizeof pos) < 0)
    return -1;
  pm_buf_put(b, pos, strlen(pos) + 1); /* with its NUL: b is a C string */
  return b->oom ? -1 : 0;
}

/* The direct path: BEGIN, COPY straight into samples, the position. */
static void w_ship_direct(pm_writer_t *w) {
  pm_buf_t *b = &w->samples_buf, *q = &w->stmt_buf;
  pm_pg_copy_t copy;
  static const char head[] =
      "BEGIN; COPY portalmetrics.samples (series_id, ts, value) FROM STDIN "
      "WITH (FORMAT binary); ";
  if (w_encode_direct(b, w->rows, w->nrows, &w->bad) < 0) {
    pm_writer__fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  pm_buf_reset(q);
  pm_buf_put(q, head, sizeof head - 1);
  if (w_tail_sql(w, q) < 0) {
    pm_writer__fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  w->in_txn = 1;
  pm_writer__query(w, "writing samples", q->p, 0, NULL, &copy, 1,
                   w_on_ship_samples);
}

static void w_ship_samples(pm_writer_t *w) {
  pm_buf_t *b = &w->samples_buf, *q = &w->stmt_buf;
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
  /* nothing to write (every series refused): the position still moves */
  snprintf(
      sql, sizeof sql, "%s%s%s%s", w->in_txn ? "" : "BEGIN; ",
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
  pm_buf_reset(q);
  pm_buf_put(q, sql, strlen(sql));
  if (w_tail_sql(w, q) < 0) {
    pm_writer__fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  w->in_txn = 1;
  pm_writer__query(w, "writing samples", q->p, 0, NULL, &copy,
                   nset + nadd ? 1 : 0, w_on_ship_samples);
}

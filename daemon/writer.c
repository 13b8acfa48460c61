/*
 * The PostgreSQL writer: see writer.h. The connection primitive (connect,
 * one command at a time, COPY payloads) is pg_conn.c; this file is the
 * state machine on top of it:
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

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "migrations.h"
#include "pg_conn.h"
#include "series.h"

#define US_PER_S INT64_C(1000000)
#define BACKOFF_MIN_US (INT64_C(100) * 1000)
#define BACKOFF_MAX_US (INT64_C(30) * US_PER_S)
#define BACKOFF_LONG_US (INT64_C(5) * 60 * US_PER_S)
#define MAINT_INTERVAL_MS (UINT64_C(24) * 3600 * 1000)
#define PART_RETRIES 3
#define DEFAULT_BATCH 10000
#define PG_EPOCH_US INT64_C(946684800000000) /* 2000-01-01 in Unix us */
#define HINT_MAX (256 * 1024) /* series remembered for the direct path */
#define DIRECT_PENALTY_MAX 64 /* merge-only batches after a fallback */

/* pg_advisory_xact_lock key of the migrations ('pmschema'). */
#define MIGRATION_LOCK_KEY "8101258175499824481"

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

/* A set of int64 (series ids, months): open addressing. */
typedef struct iset {
  int64_t *keys;
  uint8_t *used;
  size_t cap, n;
} iset_t;

/* Series id -> newest ts committed by this writer (the direct path's
 * hint): open addressing, at most HINT_MAX entries (when full it starts
 * over: a forgotten series only takes the merge once more). */
typedef struct imap {
  int64_t *keys, *vals;
  uint8_t *used;
  size_t cap, n;
} imap_t;

typedef struct buf {
  char *p;
  size_t len, cap;
  int oom;
} buf_t;

typedef struct row {
  const pm_series_t *s;
  int64_t ts;
  double v;
} row_t;

typedef struct metric {
  char *name, *unit, *desc;
  pm_metric_type_t type;
} metric_t;

struct pm_writer {
  uv_loop_t *loop;
  pm_writer_opts_t o; /* strings owned */
  pm_queue_t *q;
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

  /* shipping */
  uint64_t acked_seq;
  int64_t first_wait_us; /* monotonic: oldest unshipped record seen, 0 none */
  size_t batch_max;
  pm_rec_t *recs;
  size_t nrecs;
  row_t *rows;
  size_t nrows;
  uint32_t *slots; /* fold table: row index + 1 */
  size_t nslots;
  const pm_series_t **newser;
  size_t nnew;
  iset_t confirmed; /* series ids known to be in the database, as ours */
  iset_t bad;       /* series ids the database has otherwise: refused */
  iset_t batch_ids; /* scratch: ids of this batch's new series */
  iset_t months;    /* partitions known to exist (year * 12 + month) */
  imap_t newest;    /* series id -> newest ts committed (direct path hint) */
  int direct;       /* this attempt of the batch takes the direct path */
  unsigned direct_skip, direct_penalty; /* merge-only batches after a
                                           fallback, and the next such run */
  int64_t *need_months;
  size_t nneed;
  buf_t series_buf, samples_buf;
  int in_txn;
  int part_retries;
  char xid[32];
  uint64_t batch_last;

  /* a COMMIT whose answer was lost */
  int indoubt;
  char indoubt_xid[32];
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

static void w_connect(pm_writer_t *w);
static void w_fail(pm_writer_t *w, int kind, const char *what,
                   const char *error, const char *sqlstate);
static void w_idle_point(pm_writer_t *w);
static void w_maybe_ship(pm_writer_t *w, int force);
static void w_finish(pm_writer_t *w, int status);
static void w_setup_indoubt(pm_writer_t *w);
static void w_mig_lock(pm_writer_t *w);
static void w_setup_temp(pm_writer_t *w);
static void w_catalog(pm_writer_t *w);
static void w_partitions(pm_writer_t *w);
static void w_ship_parts(pm_writer_t *w);
static void w_ship_series(pm_writer_t *w);
static void w_ship_samples(pm_writer_t *w);

/* ------------------------------------------------------------------ */
/* clocks, randomness */

static int64_t mono_us(void) {
  return (int64_t)(uv_hrtime() / 1000);
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

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
/* int64 set */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  x *= UINT64_C(0xc4ceb9fe1a85ec53);
  x ^= x >> 33;
  return x;
}

static int iset_has(const iset_t *s, int64_t k) {
  if (!s->cap)
    return 0;
  for (size_t i = mix64((uint64_t)k) & (s->cap - 1);;
       i = (i + 1) & (s->cap - 1)) {
    if (!s->used[i])
      return 0;
    if (s->keys[i] == k)
      return 1;
  }
}

static int iset_add(iset_t *s, int64_t k);

static int iset_grow(iset_t *s) {
  iset_t n = {0};
  n.cap = s->cap ? s->cap * 2 : 64;
  n.keys = malloc(n.cap * sizeof *n.keys);
  n.used = calloc(n.cap, 1);
  if (!n.keys || !n.used) {
    free(n.keys);
    free(n.used);
    return -1;
  }
  for (size_t i = 0; i < s->cap; i++)
    if (s->used[i])
      iset_add(&n, s->keys[i]);
  free(s->keys);
  free(s->used);
  *s = n;
  return 0;
}

/* 1 added, 0 present, -1 ENOMEM */
static int iset_add(iset_t *s, int64_t k) {
  if ((s->n + 1) * 2 > s->cap && iset_grow(s) < 0)
    return -1;
  for (size_t i = mix64((uint64_t)k) & (s->cap - 1);;
       i = (i + 1) & (s->cap - 1)) {
    if (!s->used[i]) {
      s->used[i] = 1;
      s->keys[i] = k;
      s->n++;
      return 1;
    }
    if (s->keys[i] == k)
      return 0;
  }
}

static void iset_clear(iset_t *s) {
  if (s->cap && s->n)
    memset(s->used, 0, s->cap);
  s->n = 0;
}

static void iset_free(iset_t *s) {
  free(s->keys);
  free(s->used);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ */
/* int64 -> int64 map (the direct path's hint) */

/* 1 and *v if k is present, else 0 */
static int imap_get(const imap_t *m, int64_t k, int64_t *v) {
  if (!m->cap)
    return 0;
  for (size_t i = mix64((uint64_t)k) & (m->cap - 1);;
       i = (i + 1) & (m->cap - 1)) {
    if (!m->used[i])
      return 0;
    if (m->keys[i] == k) {
      *v = m->vals[i];
      return 1;
    }
  }
}

static void imap_clear(imap_t *m) {
  if (m->cap && m->n)
    memset(m->used, 0, m->cap);
  m->n = 0;
}

static void imap_free(imap_t *m) {
  free(m->keys);
  free(m->vals);
  free(m->used);
  memset(m, 0, sizeof *m);
}

/* Insert into a table known to have room. */
static void imap_place(imap_t *m, int64_t k, int64_t v) {
  for (size_t i = mix64((uint64_t)k) & (m->cap - 1);;
       i = (i + 1) & (m->cap - 1)) {
    if (!m->used[i]) {
      m->used[i] = 1;
      m->keys[i] = k;
      m->vals[i] = v;
      m->n++;
      return;
    }
    if (m->keys[i] == k) {
      m->vals[i] = v;
      return;
    }
  }
}

/* Remember v for k if it is newer. Out of memory or full: forget (it is
 * only a hint), never fail. */
static void imap_raise(imap_t *m, int64_t k, int64_t v) {
  int64_t old;
  if (imap_get(m, k, &old)) {
    if (v > old)
      imap_place(m, k, v);
    return;
  }
  if (m->n >= HINT_MAX)
    imap_clear(m);
  if ((m->n + 1) * 2 > m->cap) {
    imap_t n = {0};
    n.cap = m->cap ? m->cap * 2 : 64;
    n.keys = malloc(n.cap * sizeof *n.keys);
    n.vals = malloc(n.cap * sizeof *n.vals);
    n.used = calloc(n.cap, 1);
    if (!n.keys || !n.vals || !n.used) {
      imap_free(&n);
      imap_clear(m);
      if (!m->cap)
        return;
    } else {
      for (size_t i = 0; i < m->cap; i++)
        if (m->used[i])
          imap_place(&n, m->keys[i], m->vals[i]);
      imap_free(m);
      *m = n;
    }
  }
  imap_place(m, k, v);
}

/* ------------------------------------------------------------------ */
/* buffers and binary COPY */

static int buf_reserve(buf_t *b, size_t more) {
  if (b->oom)
    return -1;
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return -1;
    }
    b->p = p;
    b->cap = cap;
  }
  return 0;
}

static void buf_put(buf_t *b, const void *p, size_t n) {
  if (buf_reserve(b, n) < 0)
    return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void buf_be16(buf_t *b, uint16_t v) {
  unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
  buf_put(b, x, 2);
}

static void buf_be32(buf_t *b, uint32_t v) {
  unsigned char x[4];
  for (int i = 0; i < 4; i++)
    x[i] = (unsigned char)(v >> (24 - 8 * i));
  buf_put(b, x, 4);
}

static void buf_be64(buf_t *b, uint64_t v) {
  unsigned char x[8];
  for (int i = 0; i < 8; i++)
    x[i] = (unsigned char)(v >> (56 - 8 * i));
  buf_put(b, x, 8);
}

static void buf_reset(buf_t *b) {
  b->len = 0;
  b->oom = 0;
}

static void copy_header(buf_t *b) {
  static const char sig[11] = "PGCOPY\n\377\r\n";
  buf_put(b, sig, 11);
  buf_be32(b, 0); /* flags */
  buf_be32(b, 0); /* header extension length */
}

static void copy_int8(buf_t *b, int64_t v) {
  buf_be32(b, 8);
  buf_be64(b, (uint64_t)v);
}

static void copy_float8(buf_t *b, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  buf_be32(b, 8);
  buf_be64(b, u);
}

static void copy_text(buf_t *b, const char *s) {
  size_t n = strlen(s);
  buf_be32(b, (uint32_t)n);
  buf_put(b, s, n);
}

static void copy_jsonb(buf_t *b, const char *json) {
  size_t n = strlen(json);
  unsigned char version = 1;
  buf_be32(b, (uint32_t)(n + 1));
  buf_put(b, &version, 1);
  buf_put(b, json, n);
}

static void copy_bool(buf_t *b, int v) {
  unsigned char c = v ? 1 : 0;
  buf_be32(b, 1);
  buf_put(b, &c, 1);
}

static unsigned char *put_be16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
  return p + 2;
}

static unsigned char *put_be32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (24 - 8 * i));
  return p + 4;
}

static unsigned char *put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
  return p + 8;
}

/*
 * The direct path's payload: rows (all but those of the series in skip)
 * as COPY portalmetrics.samples (series_id, ts, value) FROM STDIN WITH
 * (FORMAT binary). The format (PostgreSQL docs, "COPY", Binary Format),
 * every integer in network byte order:
 *   header:  the 11-byte signature "PGCOPY\n\377\r\n\0", int32 flags (0:
 *            no OIDs), int32 length of the header extension (0);
 *   a tuple: int16 field count (3), then per field int32 length (8) and
 *            the value in its type's binary send format:
 *              series_id  bigint       int64
 *              ts         timestamptz  int64 microseconds since
 *                                      2000-01-01 00:00 UTC
 *              value      float8       the IEEE 754 double's 64 bits;
 *   trailer: int16 -1.
 * Each tuple is 2 + 3 * 12 = 38 bytes, so the buffer is sized once and
 * filled through a pointer. Returns the number of tuples; -1 and b->oom
 * when out of memory.
 */
#define DIRECT_TUPLE_LEN (2 + 3 * (4 + 8))
static long copy_samples_direct(buf_t *b, const row_t *rows, size_t n,
                                const iset_t *skip) {
  static const char sig[11] = "PGCOPY\n\377\r\n"; /* with its NUL */
  unsigned char *p;
  long k = 0;
  buf_reset(b);
  if (buf_reserve(b, 11 + 8 + n * DIRECT_TUPLE_LEN + 2) < 0)
    return -1;
  p = (unsigned char *)b->p;
  memcpy(p, sig, 11);
  p = put_be32(p + 11, 0); /* flags */
  p = put_be32(p, 0);      /* header extension length */
  for (size_t i = 0; i < n; i++) {
    uint64_t v;
    if (skip->n && iset_has(skip, rows[i].s->id))
      continue;
    memcpy(&v, &rows[i].v, sizeof v);
    p = put_be16(p, 3);
    p = put_be32(p, 8);
    p = put_be64(p, (uint64_t)rows[i].s->id);
    p = put_be32(p, 8);
    p = put_be64(p, (uint64_t)(rows[i].ts - PG_EPOCH_US));
    p = put_be32(p, 8);
    p = put_be64(p, v);
    k++;
  }
  p = put_be16(p, 0xFFFF); /* trailer: -1 */
  b->len = (size_t)(p - (unsigned char *)b->p);
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

static int month_of(int64_t ts_us) {
  int64_t sec =
      ts_us >= 0 ? ts_us / US_PER_S : -((-ts_us + US_PER_S - 1) / US_PER_S);
  time_t t = (time_t)sec;
  struct tm tm;
  gmtime_r(&t, &tm);
  return (tm.tm_year + 1900) * 12 + tm.tm_mon;
}

static void month_date(int m, char *out, size_t len) {
  snprintf(out, len, "%04d-%02d-01", m / 12, m % 12 + 1);
}

static int sqlstate_class(const char *st, const char *cls) {
  return st && strncmp(st, cls, 2) == 0;
}

/* Read the password file: the first line, without its newline. */
static char *read_password(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  char *buf;
  size_t n;
  if (!f) {
    snprintf(err, errlen, "cannot read password_file %s: %s", path,
             strerror(errno));
    return NULL;
  }
  buf = calloc(1, 4096);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  n = fread(buf, 1, 4095, f);
  if (ferror(f)) {
    snprintf(err, errlen, "cannot read password_file %s: %s", path,
             strerror(errno));
    fclose(f);
    free(buf);
    return NULL;
  }
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

static void free_secret(char *s) {
  if (!s)
    return;
  volatile char *p = s;
  while (*p)
    *p++ = '\0';
  free(s);
}

/* Append s to b as an element of a PostgreSQL array literal. */
static void array_elem(buf_t *b, const char *s, int first) {
  if (!first)
    buf_put(b, ",", 1);
  if (!s) {
    buf_put(b, "NULL", 4);
    return;
  }
  buf_put(b, "\"", 1);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      buf_put(b, "\\", 1);
    buf_put(b, s, 1);
  }
  buf_put(b, "\"", 1);
}

static int newest_migration(void) {
  int v = 0;
  for (const pm_migration_t *m = pm_migrations; m->sql; m++)
    if (m->version > v)
      v = m->version;
  return v;
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

int pm_writer_set_metrics(pm_writer_t *w, const pm_metric_decl_t *const *tables,
                          size_t ntables) {
  size_t n = 0, k = 0;
  metric_t *m;
  for (size_t t = 0; t < ntables; t++)
    for (const pm_metric_decl_t *d = tables[t]; d && d->name; d++)
      n++;
  m = calloc(n ? n : 1, sizeof *m);
  if (!m)
    return PM_ENOMEM;
  for (size_t t = 0; t < ntables; t++) {
    for (const pm_metric_decl_t *d = tables[t]; d && d->name; d++) {
      int dup = 0;
      for (size_t i = 0; i < k && !dup; i++)
        dup = strcmp(m[i].name, d->name) == 0; /* the first declaration wins */
      if (dup)
        continue;
      m[k].name = strdup(d->name);
      m[k].unit = xstrdup(d->unit);
      m[k].desc = xstrdup(d->description);
      m[k].type = d->type;
      if (!m[k].name || (d->unit && !m[k].unit) ||
          (d->description && !m[k].desc)) {
        for (size_t i = 0; i <= k; i++) {
          free(m[i].name);
          free(m[i].unit);
          free(m[i].desc);
        }
        free(m);
        return PM_ENOMEM;
      }
      k++;
    }
  }
  for (size_t i = 0; i < w->nmetrics; i++) {
    free(w->metrics[i].name);
    free(w->metrics[i].unit);
    free(w->metrics[i].desc);
  }
  free(w->metrics);
  w->metrics = m;
  w->nmetrics = k;
  w->catalog_dirty = 1;
  if (w->state == W_IDLE && !w->draining) {
    w->state = W_MAINT;
    w_catalog(w);
  }
  return 0;
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
  w_fail(w, FAIL_CONN, NULL, why, "");
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
  for (size_t i = 0; i < w->nmetrics; i++) {
    free(w->metrics[i].name);
    free(w->metrics[i].unit);
    free(w->metrics[i].desc);
  }
  free(w->metrics);
  free(w->recs);
  free(w->rows);
  free(w->slots);
  free(w->newser);
  free(w->need_months);
  iset_free(&w->confirmed);
  iset_free(&w->bad);
  iset_free(&w->batch_ids);
  iset_free(&w->months);
  imap_free(&w->newest);
  free(w->series_buf.p);
  free(w->samples_buf.p);
  free(w);
}

/* ------------------------------------------------------------------ */
/* failures and backoff */

static void w_fail(pm_writer_t *w, int kind, const char *what,
                   const char *error, const char *sqlstate) {
  int64_t now = mono_us(), delay;
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
static int w_query(pm_writer_t *w, const char *what, const char *sql,
                   int nparams, const char *const *params,
                   const pm_pg_copy_t *copies, size_t ncopies, pm_pg_cb cb) {
  int rc = pm_pg_query(w->pg, sql, nparams, params, copies, ncopies,
                       w_op_timeout(w), cb, w);
  if (rc < 0) {
    char err[1100];
    snprintf(err, sizeof err, "%s", pm_pg_error(w->pg));
    w_fail(w, rc == PM_EUNREACHABLE ? FAIL_CONN : FAIL_SQL, what, err, "");
    return -1;
  }
  return 0;
}

/* A command's result: 1 if it is fine to go on; else the failure is
 * handled. */
static int w_check(pm_writer_t *w, const char *what, const pm_pg_result_t *r) {
  if (r->ok)
    return 1;
  w_fail(w, r->broken || !*r->sqlstate ? FAIL_CONN : FAIL_SQL, what, r->error,
         r->sqlstate);
  return 0;
}

/* The last result's first value, or NULL. */
static const char *w_value(const pm_pg_result_t *r) {
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
    password = read_password(w->o.password_file, err, sizeof err);
    if (!password) {
      w_fail(w, FAIL_CONN, NULL, err, "");
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
  free_secret(password);
  if (rc < 0) {
    snprintf(err, sizeof err, "%s", pm_pg_error(w->pg));
    if (rc == PM_ECONFIG && w->migrate_mode) {
      pm_error("database.conninfo: %s", err);
      w_finish(w, PM_ECONFIG);
      return;
    }
    w_fail(w, FAIL_CONN, NULL, err, "");
  }
}

static void w_on_session(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "configuring the session", r))
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
    w_fail(w, FAIL_CONN, NULL, r->error, "");
    return;
  }
  w->state = W_SETUP;
  iset_clear(&w->bad); /* re-checked on this connection */
  iset_clear(&w->months);
  snprintf(sql, sizeof sql,
           "SET idle_in_transaction_session_timeout = '%" PRId64 "ms'; "
           "SET lock_timeout = '%" PRId64 "ms'; "
           "SET statement_timeout = '%" PRId64 "ms'",
           idle / 1000, lock / 1000, st / 1000);
  w_query(w, "configuring the session", sql, 0, NULL, NULL, 0, w_on_session);
}

/* A COMMIT whose answer was lost: did it happen? */
static void w_on_indoubt(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *st;
  if (!w_check(w, "checking the last commit", r))
    return;
  st = w_value(r);
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
    w->stats.last_ship_us = wall_us();
  } else if (st && strcmp(st, "in progress") == 0) {
    w_fail(w, FAIL_SQL, "checking the last commit",
           "the previous session's commit is still in progress", "");
    return;
  } else {
    pm_info("the batch whose commit was cut off (records up to seq %" PRIu64
            ") was not committed; shipping it again",
            w->indoubt_last);
  }
  w->indoubt = 0;
  w_mig_lock(w);
}

static void w_setup_indoubt(pm_writer_t *w) {
  const char *params[1];
  if (!w->indoubt || w->migrate_mode) {
    w_mig_lock(w);
    return;
  }
  params[0] = w->indoubt_xid;
  w_query(w, "checking the last commit", "SELECT txid_status($1::bigint)", 1,
          params, NULL, 0, w_on_indoubt);
}

/* Migrations: each in its own transaction under the advisory lock. */

static void w_on_mig_commit(void *arg, const pm_pg_result_t *r);
static void w_on_mig_version(void *arg, const pm_pg_result_t *r);

static void w_mig_decide(pm_writer_t *w, int version);

static void w_on_mig_lock(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!w_check(w, "locking the schema", r))
    return;
  v = w_value(r);
  if (v && strcmp(v, "t") == 0)
    w_query(
        w, "reading the schema version",
        "SELECT coalesce(max(version), 0) FROM portalmetrics.schema_version", 0,
        NULL, NULL, 0, w_on_mig_version);
  else
    w_mig_decide(w, 0);
}

static void w_mig_lock(pm_writer_t *w) {
  w_query(w, "locking the schema",
          "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY "); "
          "SELECT to_regclass('portalmetrics.schema_version') IS NOT NULL",
          0, NULL, NULL, 0, w_on_mig_lock);
}

static void w_on_mig_version(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!w_check(w, "reading the schema version", r))
    return;
  v = w_value(r);
  w_mig_decide(w, v ? atoi(v) : 0);
}

static void w_on_mig_applied(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  char what[160];
  snprintf(what, sizeof what, "schema migration %s", w->mig->name);
  if (!w_check(w, what, r))
    return;
  pm_notice("applied schema migration %s", w->mig->name);
  w_mig_lock(w); /* next one, in a new transaction */
}

static void w_on_mig_ran(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const pm_migration_t *m = w->mig;
  char what[160], sql[256];
  snprintf(what, sizeof what, "schema migration %s", m->name);
  if (!w_check(w, what, r))
    return;
  /* names are file names: [0-9a-z_] */
  snprintf(sql, sizeof sql,
           "INSERT INTO portalmetrics.schema_version (version, name) "
           "VALUES (%d, '%s'); COMMIT",
           m->version, m->name);
  w_query(w, what, sql, 0, NULL, NULL, 0, w_on_mig_applied);
}

static void w_mig_decide(pm_writer_t *w, int version) {
  int newest = newest_migration();
  const pm_migration_t *next = NULL;
  if (version > newest) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "database schema version %d is newer than this portalmetricsd "
             "knows (%d): upgrade portalmetricsd",
             version, newest);
    w_fail(w, FAIL_SCHEMA, "checking the schema version", msg, "");
    return;
  }
  for (const pm_migration_t *m = pm_migrations; m->sql; m++)
    if (m->version > version && (!next || m->version < next->version))
      next = m;
  w->schema_version = version;
  if (!next) {
    w_query(w, "reading the schema version", "COMMIT", 0, NULL, NULL, 0,
            w_on_mig_commit);
    return;
  }
  for (const char *p = next->name; *p; p++) {
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '_')) {
      w_fail(w, FAIL_SCHEMA, "schema migration",
             "a migration file name has characters other than [0-9a-z_]", "");
      return;
    }
  }
  w->mig = next;
  pm_info("applying schema migration %s", next->name);
  w_query(w, "schema migration", next->sql, 0, NULL, NULL, 0, w_on_mig_ran);
}

static void w_on_mig_commit(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "reading the schema version", r))
    return;
  if (w->migrate_mode) {
    pm_notice("database schema is at version %d", w->schema_version);
    w_finish(w, 0);
    return;
  }
  w_setup_temp(w);
}

static void w_on_temp(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "creating the temporary tables", r))
    return;
  w->catalog_dirty = 1;
  w->maint_due = 1;
  w_catalog(w);
}

static void w_setup_temp(pm_writer_t *w) {
  w_query(w, "creating the temporary tables",
          "CREATE TEMP TABLE IF NOT EXISTS pm_tmp_series (id bigint, metric "
          "text, labels jsonb, kind text) ON COMMIT DELETE ROWS; "
          "CREATE TEMP TABLE IF NOT EXISTS pm_tmp_samples (series_id bigint, "
          "ts timestamptz, value double precision, is_add boolean) "
          "ON COMMIT DELETE ROWS",
          0, NULL, NULL, 0, w_on_temp);
}

/* The catalog and the partitions: at setup, and later when due. */

static void w_maint_done(pm_writer_t *w) {
  if (w->state == W_SETUP) {
    int64_t now = mono_us();
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

static void w_on_catalog(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "updating portalmetrics.metrics", r))
    return;
  w->catalog_dirty = 0;
  w_partitions(w);
}

static void w_catalog(pm_writer_t *w) {
  buf_t b[4] = {{0}};
  const char *params[4];
  if (!w->catalog_dirty || w->nmetrics == 0) {
    w->catalog_dirty = 0;
    w_partitions(w);
    return;
  }
  for (int i = 0; i < 4; i++)
    buf_put(&b[i], "{", 1);
  for (size_t i = 0; i < w->nmetrics; i++) {
    const metric_t *m = &w->metrics[i];
    array_elem(&b[0], m->name, i == 0);
    array_elem(&b[1], m->type == PM_COUNT ? "count" : "gauge", i == 0);
    array_elem(&b[2], m->unit, i == 0);
    array_elem(&b[3], m->desc, i == 0);
  }
  for (int i = 0; i < 4; i++) {
    buf_put(&b[i], "}", 2); /* with the terminating NUL */
    params[i] = b[i].p;
  }
  if (b[0].oom || b[1].oom || b[2].oom || b[3].oom) {
    for (int i = 0; i < 4; i++)
      free(b[i].p);
    w_fail(w, FAIL_SQL, "updating portalmetrics.metrics", "out of memory", "");
    return;
  }
  w_query(w, "updating portalmetrics.metrics",
          "INSERT INTO portalmetrics.metrics AS m (metric, kind, unit, "
          "description) SELECT * FROM unnest($1::text[], $2::text[], "
          "$3::text[], $4::text[]) "
          "ON CONFLICT (metric) DO UPDATE SET kind = EXCLUDED.kind, "
          "unit = EXCLUDED.unit, description = EXCLUDED.description "
          "WHERE (m.kind, m.unit, m.description) IS DISTINCT FROM "
          "(EXCLUDED.kind, EXCLUDED.unit, EXCLUDED.description)",
          4, params, NULL, 0, w_on_catalog);
  for (int i = 0; i < 4; i++)
    free(b[i].p);
}

/* The range of months the daemon keeps partitions for. */
static void w_part_range(const pm_writer_t *w, int *first, int *last) {
  int64_t now = wall_us();
  int64_t from =
      now - (w->o.max_sample_age_us > 0 ? w->o.max_sample_age_us
                                        : INT64_C(400) * 86400 * US_PER_S);
  if (w->o.retention_us > 0 && now - w->o.retention_us > from)
    from = now - w->o.retention_us;
  *first = month_of(from);
  *last = month_of(now) + 2;
}

static void w_on_retention(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!r->ok) {
    uint64_t sup = 0;
    if (r->broken || !*r->sqlstate) {
      w_fail(w, FAIL_CONN, NULL, r->error, r->sqlstate);
      return;
    }
    /* not fatal: samples still land; say so now and then */
    if (pm_ratelimit_ok(&w->rl_maint, mono_us(), &sup))
      pm_warn("cannot drop partitions past database.retention: %s "
              "(SQLSTATE %s)",
              r->error, r->sqlstate);
  } else if ((v = w_value(r)) && atoi(v) > 0) {
    pm_notice("dropped %s samples partition(s) older than database.retention",
              v);
    iset_clear(&w->months); /* re-learn what exists */
  }
  w_maint_done(w);
}

static void w_on_partitions(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  int first, last;
  const char *v;
  if (!w_check(w, "creating partitions", r))
    return;
  w->maint_due = 0;
  if ((v = w_value(r)) && atoi(v) > 0)
    pm_info("created %s samples partition(s)", v);
  w_part_range(w, &first, &last);
  for (int m = first; m <= last; m++)
    iset_add(&w->months, m);
  if (w->o.retention_us > 0) {
    char cutoff[32];
    const char *params[1] = {cutoff};
    int64_t c = wall_us() - w->o.retention_us;
    snprintf(cutoff, sizeof cutoff, "%" PRId64, c);
    w_query(w, "dropping old partitions",
            "SELECT portalmetrics.drop_partitions_before("
            "'epoch'::timestamptz + $1::bigint * interval '1 microsecond')",
            1, params, NULL, 0, w_on_retention);
    return;
  }
  w_maint_done(w);
}

static void w_partitions(pm_writer_t *w) {
  char a[24], b[24];
  const char *params[2] = {a, b};
  int first, last;
  if (!w->maint_due) {
    w_maint_done(w);
    return;
  }
  w_part_range(w, &first, &last);
  month_date(first, a, sizeof a);
  month_date(last, b, sizeof b);
  w_query(w, "creating partitions",
          "SELECT portalmetrics.ensure_partitions($1::date, $2::date)", 2,
          params, NULL, 0, w_on_partitions);
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
    w_catalog(w);
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
    w->first_wait_us = mono_us();
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
  now = mono_us();
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
    uint64_t h = mix64((uint64_t)r->series->id ^
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
  iset_clear(&w->batch_ids);
  w->nnew = 0;
  for (size_t i = 0; i < w->nrows; i++) {
    const pm_series_t *s = w->rows[i].s;
    if (iset_has(&w->confirmed, s->id) || iset_has(&w->bad, s->id))
      continue;
    int rc = iset_add(&w->batch_ids, s->id);
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
    if (w->bad.n && iset_has(&w->bad, r->s->id))
      continue;
    if (!imap_get(&w->newest, r->s->id, &newest) || r->ts <= newest)
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
  w->first_wait_us = pm_queue_last_seq(w->q) > w->batch_last ? mono_us() : 0;
  w->in_txn = 0;
  w->part_retries = 0;
  if (w_fold(w) < 0) {
    w_fail(w, FAIL_SQL, "preparing a batch", "out of memory", "");
    return;
  }
  w->direct = w_direct_ok(w);
  w_ship_parts(w);
}

static void w_on_ship_parts(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "creating partitions", r))
    return;
  for (size_t i = 0; i < w->nneed; i++)
    iset_add(&w->months, w->need_months[i]);
  w_ship_series(w);
}

/* Make sure the batch's months have partitions. */
static void w_ship_parts(pm_writer_t *w) {
  buf_t b = {0};
  const char *params[1];
  int last = -1;
  w->nneed = 0;
  for (size_t i = 0; i < w->nrows; i++) {
    int m = month_of(w->rows[i].ts);
    int known = 0;
    if (m == last || iset_has(&w->months, m))
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
  buf_put(&b, "{", 1);
  for (size_t i = 0; i < w->nneed; i++) {
    char d[24];
    month_date((int)w->need_months[i], d, sizeof d);
    if (i)
      buf_put(&b, ",", 1);
    buf_put(&b, d, strlen(d));
  }
  buf_put(&b, "}", 2);
  if (b.oom) {
    free(b.p);
    w_fail(w, FAIL_SQL, "creating partitions", "out of memory", "");
    return;
  }
  params[0] = b.p;
  w_query(w, "creating partitions",
          "SELECT count(*) FILTER (WHERE portalmetrics.ensure_partition(m)) "
          "FROM unnest($1::date[]) AS m",
          1, params, NULL, 0, w_on_ship_parts);
  free(b.p);
}

static void w_on_ship_series(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const PGresult *res;
  if (!w_check(w, "writing new series", r))
    return;
  w->in_txn = 1;
  res = r->nres ? r->res[r->nres - 1] : NULL;
  for (int i = 0; res && i < PQntuples(res); i++) {
    int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    for (size_t j = 0; j < w->nnew; j++) {
      const pm_series_t *s = w->newser[j];
      if (s->id != id)
        continue;
      if (iset_add(&w->bad, id) > 0)
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
  buf_t *b = &w->series_buf;
  if (w->nnew == 0) {
    w_ship_samples(w);
    return;
  }
  buf_reset(b);
  copy_header(b);
  for (size_t i = 0; i < w->nnew; i++) {
    const pm_series_t *s = w->newser[i];
    buf_be16(b, 4);
    copy_int8(b, s->id);
    copy_text(b, s->metric);
    copy_jsonb(b, s->labels_json);
    copy_text(b, kind_name(s->kind));
  }
  buf_be16(b, 0xFFFF);
  if (b->oom) {
    w_fail(w, FAIL_SQL, "writing new series", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  w_query(w, "writing new series",
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
    if (!iset_has(&w->bad, w->newser[i]->id))
      iset_add(&w->confirmed, w->newser[i]->id);
  /* remember each series' newest ts: the last row of its run */
  for (size_t i = 0; i < w->nrows; i++) {
    const row_t *r = &w->rows[i];
    if (i + 1 < w->nrows && w->rows[i + 1].s->id == r->s->id)
      continue;
    if (!w->bad.n || !iset_has(&w->bad, r->s->id))
      imap_raise(&w->newest, r->s->id, r->ts);
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
  w->stats.last_ship_us = wall_us();
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
    n += iset_has(&w->bad, w->recs[i].series->id);
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
    w_check(w, "committing a batch", r);
    return;
  }
  w_on_committed(w, w->nrecs - refused, refused);
}

static void w_on_ship_samples(void *arg, const pm_pg_result_t *r);

static void w_on_rollback(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!w_check(w, "rolling back", r))
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
    w_query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0, w_on_rollback);
    return;
  }
  if (!r->ok && !r->broken && strcmp(r->sqlstate, "23514") == 0 &&
      w->part_retries < PART_RETRIES) {
    /* no partition for a row: someone dropped one we thought existed */
    w->part_retries++;
    pm_info("a samples partition is missing (%s); creating it", r->error);
    iset_clear(&w->months);
    w_query(w, "rolling back", "ROLLBACK", 0, NULL, NULL, 0, w_on_rollback);
    return;
  }
  if (!w_check(w, "writing samples", r))
    return;
  xid = w_value(r);
  snprintf(w->xid, sizeof w->xid, "%s", xid ? xid : "0");
  w_query(w, "committing a batch", "COMMIT", 0, NULL, NULL, 0, w_on_commit);
}

/* The direct path: BEGIN, COPY straight into samples, txid_current(). */
static void w_ship_direct(pm_writer_t *w) {
  buf_t *b = &w->samples_buf;
  pm_pg_copy_t copy;
  if (copy_samples_direct(b, w->rows, w->nrows, &w->bad) < 0) {
    w_fail(w, FAIL_SQL, "writing samples", "out of memory", "");
    return;
  }
  copy.data = b->p;
  copy.len = b->len;
  w->in_txn = 1;
  w_query(w, "writing samples",
          "BEGIN; "
          "COPY portalmetrics.samples (series_id, ts, value) FROM STDIN "
          "WITH (FORMAT binary); "
          "SELECT txid_current()",
          0, NULL, &copy, 1, w_on_ship_samples);
}

static void w_ship_samples(pm_writer_t *w) {
  buf_t *b = &w->samples_buf;
  size_t nset = 0, nadd = 0;
  char sql[1536];
  pm_pg_copy_t copy;
  if (w->direct && !w->in_txn) {
    w_ship_direct(w);
    return;
  }
  w->direct = 0;
  buf_reset(b);
  copy_header(b);
  for (size_t i = 0; i < w->nrows; i++) {
    const row_t *row = &w->rows[i];
    int add = row->s->kind == PM_ADD;
    if (w->bad.n && iset_has(&w->bad, row->s->id))
      continue;
    buf_be16(b, 4);
    copy_int8(b, row->s->id);
    copy_int8(b, row->ts - PG_EPOCH_US);
    copy_float8(b, row->v);
    copy_bool(b, add);
    if (add)
      nadd++;
    else
      nset++;
  }
  buf_be16(b, 0xFFFF);
  if (b->oom) {
    w_fail(w, FAIL_SQL, "writing samples", "out of memory", "");
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
  w_query(w, "writing samples", sql, 0, NULL, &copy, nset + nadd ? 1 : 0,
          w_on_ship_samples);
}

/*
 * What the writer keeps in the database's schema, apart from shipping:
 *
 *   - the migrations (sql/NNN_*.sql, embedded), on every connect and for
 *     --migrate: each in its own transaction under a transaction-level
 *     advisory lock, so that daemons starting together apply each once; a
 *     schema newer than this binary knows stops the writer (FAIL_SCHEMA);
 *   - the metric catalog, portalmetrics.metrics: the plugins' metric
 *     declarations, upserted on every connect and when they change;
 *   - the monthly partitions of portalmetrics.samples: ensured for the
 *     months samples may fall in (at setup and daily), and dropped past
 *     database.retention.
 *
 * Separate from writer.c because none of it is the connection's state
 * machine or a batch: each step runs a command through writer.c's
 * pm_writer__query and hands back through pm_writer__schema_ready or
 * pm_writer__maint_done (writer_int.h).
 */
#include "writer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* pg_advisory_xact_lock key of the migrations ('pmschema'). */
#define MIGRATION_LOCK_KEY "8101258175499824481"

/* ------------------------------------------------------------------ */
/* months */

int pm_writer__month_of(int64_t ts_us) {
  int64_t sec =
      ts_us >= 0 ? ts_us / US_PER_S : -((-ts_us + US_PER_S - 1) / US_PER_S);
  time_t t = (time_t)sec;
  struct tm tm;
  gmtime_r(&t, &tm);
  return (tm.tm_year + 1900) * 12 + tm.tm_mon;
}

void pm_writer__month_date(int m, char *out, size_t len) {
  snprintf(out, len, "%04d-%02d-01", m / 12, m % 12 + 1);
}

/* ------------------------------------------------------------------ */
/* migrations */

static int newest_migration(void) {
  int v = 0;
  for (const pm_migration_t *m = pm_migrations; m->sql; m++)
    if (m->version > v)
      v = m->version;
  return v;
}

static void w_on_mig_commit(void *arg, const pm_pg_result_t *r);
static void w_on_mig_version(void *arg, const pm_pg_result_t *r);

static void w_mig_decide(pm_writer_t *w, int version);

static void w_on_mig_lock(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!pm_writer__check(w, "locking the schema", r))
    return;
  v = pm_writer__value(r);
  if (v && strcmp(v, "t") == 0)
    pm_writer__query(
        w, "reading the schema version",
        "SELECT coalesce(max(version), 0) FROM portalmetrics.schema_version", 0,
        NULL, NULL, 0, w_on_mig_version);
  else
    w_mig_decide(w, 0);
}

/* One round: take the lock, and read the version if the table exists yet
 * (w_mig_decide applies the next migration, or commits when none is
 * left). Each applied migration starts a new round. */
void pm_writer__migrate_schema(pm_writer_t *w) {
  pm_writer__query(
      w, "locking the schema",
      "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY "); "
      "SELECT to_regclass('portalmetrics.schema_version') IS NOT NULL",
      0, NULL, NULL, 0, w_on_mig_lock);
}

static void w_on_mig_version(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!pm_writer__check(w, "reading the schema version", r))
    return;
  v = pm_writer__value(r);
  w_mig_decide(w, v ? atoi(v) : 0);
}

static void w_on_mig_applied(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  char what[160];
  snprintf(what, sizeof what, "schema migration %s", w->mig->name);
  if (!pm_writer__check(w, what, r))
    return;
  pm_notice("applied schema migration %s", w->mig->name);
  pm_writer__migrate_schema(w); /* next one, in a new transaction */
}

static void w_on_mig_ran(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const pm_migration_t *m = w->mig;
  char what[160], sql[256];
  snprintf(what, sizeof what, "schema migration %s", m->name);
  if (!pm_writer__check(w, what, r))
    return;
  /* names are file names: [0-9a-z_] */
  snprintf(sql, sizeof sql,
           "INSERT INTO portalmetrics.schema_version (version, name) "
           "VALUES (%d, '%s'); COMMIT",
           m->version, m->name);
  pm_writer__query(w, what, sql, 0, NULL, NULL, 0, w_on_mig_applied);
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
    pm_writer__fail(w, FAIL_SCHEMA, "checking the schema version", msg, "");
    return;
  }
  for (const pm_migration_t *m = pm_migrations; m->sql; m++)
    if (m->version > version && (!next || m->version < next->version))
      next = m;
  w->schema_version = version;
  if (!next) {
    pm_writer__query(w, "reading the schema version", "COMMIT", 0, NULL, NULL,
                     0, w_on_mig_commit);
    return;
  }
  for (const char *p = next->name; *p; p++) {
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '_')) {
      pm_writer__fail(
          w, FAIL_SCHEMA, "schema migration",
          "a migration file name has characters other than [0-9a-z_]", "");
      return;
    }
  }
  w->mig = next;
  pm_info("applying schema migration %s", next->name);
  pm_writer__query(w, "schema migration", next->sql, 0, NULL, NULL, 0,
                   w_on_mig_ran);
}

static void w_on_mig_commit(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "reading the schema version", r))
    return;
  pm_writer__schema_ready(w);
}

/* ------------------------------------------------------------------ */
/* the metric catalog */

void pm_writer__free_metrics(metric_t *m, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(m[i].name);
    free(m[i].unit);
    free(m[i].desc);
  }
  free(m);
}

/* See writer.h. Upserted at once when idle, else at the next idle point
 * or connect. */
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
      m[k].unit = d->unit ? strdup(d->unit) : NULL;
      m[k].desc = d->description ? strdup(d->description) : NULL;
      m[k].type = d->type;
      if (!m[k].name || (d->unit && !m[k].unit) ||
          (d->description && !m[k].desc)) {
        pm_writer__free_metrics(m, k + 1);
        return PM_ENOMEM;
      }
      k++;
    }
  }
  pm_writer__free_metrics(w->metrics, w->nmetrics);
  w->metrics = m;
  w->nmetrics = k;
  w->catalog_dirty = 1;
  if (w->state == W_IDLE && !w->draining) {
    w->state = W_MAINT;
    pm_writer__maintain(w);
  }
  return 0;
}

/* Append s to b as an element of a PostgreSQL array literal. */
static void array_elem(pm_buf_t *b, const char *s, int first) {
  if (!first)
    pm_buf_put(b, ",", 1);
  if (!s) {
    pm_buf_put(b, "NULL", 4);
    return;
  }
  pm_buf_put(b, "\"", 1);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      pm_buf_put(b, "\\", 1);
    pm_buf_put(b, s, 1);
  }
  pm_buf_put(b, "\"", 1);
}

static void w_partitions(pm_writer_t *w);

static void w_on_catalog(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  if (!pm_writer__check(w, "updating portalmetrics.metrics", r))
    return;
  w->catalog_dirty = 0;
  w_partitions(w);
}

/* The catalog first, then the partitions: at setup, and later when due. */
void pm_writer__maintain(pm_writer_t *w) {
  pm_buf_t b[4] = {{0}};
  const char *params[4];
  if (!w->catalog_dirty || w->nmetrics == 0) {
    w->catalog_dirty = 0;
    w_partitions(w);
    return;
  }
  for (int i = 0; i < 4; i++)
    pm_buf_put(&b[i], "{", 1);
  for (size_t i = 0; i < w->nmetrics; i++) {
    const metric_t *m = &w->metrics[i];
    array_elem(&b[0], m->name, i == 0);
    array_elem(&b[1], m->type == PM_COUNT ? "count" : "gauge", i == 0);
    array_elem(&b[2], m->unit, i == 0);
    array_elem(&b[3], m->desc, i == 0);
  }
  for (int i = 0; i < 4; i++) {
    pm_buf_put(&b[i], "}", 2); /* with the terminating NUL */
    params[i] = b[i].p;
  }
  if (b[0].oom || b[1].oom || b[2].oom || b[3].oom) {
    for (int i = 0; i < 4; i++)
      pm_buf_free(&b[i]);
    pm_writer__fail(w, FAIL_SQL, "updating portalmetrics.metrics",
                    "out of memory", "");
    return;
  }
  pm_writer__query(
      w, "updating portalmetrics.metrics",
      "INSERT INTO portalmetrics.metrics AS m (metric, kind, unit, "
      "description) SELECT * FROM unnest($1::text[], $2::text[], "
      "$3::text[], $4::text[]) "
      "ON CONFLICT (metric) DO UPDATE SET kind = EXCLUDED.kind, "
      "unit = EXCLUDED.unit, description = EXCLUDED.description "
      "WHERE (m.kind, m.unit, m.description) IS DISTINCT FROM "
      "(EXCLUDED.kind, EXCLUDED.unit, EXCLUDED.description)",
      4, params, NULL, 0, w_on_catalog);
  for (int i = 0; i < 4; i++)
    pm_buf_free(&b[i]);
}

/* ------------------------------------------------------------------ */
/* partitions */

/* The range of months the daemon keeps partitions for. */
static void w_part_range(const pm_writer_t *w, int *first, int *last) {
  int64_t now = pm_writer__wall_us();
  int64_t from =
      now - (w->o.max_sample_age_us > 0 ? w->o.max_sample_age_us
                                        : INT64_C(400) * 86400 * US_PER_S);
  if (w->o.retention_us > 0 && now - w->o.retention_us > from)
    from = now - w->o.retention_us;
  *first = pm_writer__month_of(from);
  *last = pm_writer__month_of(now) + 2;
}

static void w_on_retention(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  const char *v;
  if (!r->ok) {
    uint64_t sup = 0;
    if (r->broken || !*r->sqlstate) {
      pm_writer__fail(w, FAIL_CONN, NULL, r->error, r->sqlstate);
      return;
    }
    /* not fatal: samples still land; say so now and then */
    if (pm_ratelimit_ok(&w->rl_maint, pm_writer__mono_us(), &sup))
      pm_warn("cannot drop partitions past database.retention: %s "
              "(SQLSTATE %s)",
              r->error, r->sqlstate);
  } else if ((v = pm_writer__value(r)) && atoi(v) > 0) {
    pm_notice("dropped %s samples partition(s) older than database.retention",
              v);
    pm_idset_clear(&w->months); /* re-learn what exists */
  }
  pm_writer__maint_done(w);
}

static void w_on_partitions(void *arg, const pm_pg_result_t *r) {
  pm_writer_t *w = arg;
  int first, last;
  const char *v;
  if (!pm_writer__check(w, "creating partitions", r))
    return;
  w->maint_due = 0;
  if ((v = pm_writer__value(r)) && atoi(v) > 0)
    pm_info("created %s samples partition(s)", v);
  w_part_range(w, &first, &last);
  for (int m = first; m <= last; m++)
    pm_idset_add(&w->months, m);
  if (w->o.retention_us > 0) {
    char cutoff[32];
    const char *params[1] = {cutoff};
    int64_t c = pm_writer__wall_us() - w->o.retention_us;
    snprintf(cutoff, sizeof cutoff, "%" PRId64, c);
    pm_writer__query(
        w, "dropping old partitions",
        "SELECT portalmetrics.drop_partitions_before("
        "'epoch'::timestamptz + $1::bigint * interval '1 microsecond')",
        1, params, NULL, 0, w_on_retention);
    return;
  }
  pm_writer__maint_done(w);
}

static void w_partitions(pm_writer_t *w) {
  char a[24], b[24];
  const char *params[2] = {a, b};
  int first, last;
  if (!w->maint_due) {
    pm_writer__maint_done(w);
    return;
  }
  w_part_range(w, &first, &last);
  pm_writer__month_date(first, a, sizeof a);
  pm_writer__month_date(last, b, sizeof b);
  pm_writer__query(w, "creating partitions",
                   "SELECT portalmetrics.ensure_partitions($1::date, $2::date)",
                   2, params, NULL, 0, w_on_partitions);
}

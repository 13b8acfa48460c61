/* Targets and alerts: declaration, leadership, evaluation, outbox. */
#include "alerter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "alert_event.h"
#include "alert_fsm.h"
#include "alert_text.h"
#include "log.h"
#include "notifier.h"
#include "pg_conn.h"
#include "secret.h"

#define US_PER_S INT64_C(1000000)
/* pg_advisory_lock key of the alert leader: 'pmalerts' as a bigint */
#define LEADER_KEY "8101247922346520179"
#define RECONNECT_MIN_US (1 * US_PER_S)
#define RECONNECT_MAX_US (30 * US_PER_S)
#define RETRY_MIN_US (1 * US_PER_S)
#define RETRY_MAX_US (300 * US_PER_S)
#define UNKNOWN_GIVE_UP_US (86400 * US_PER_S)

typedef struct op op_t;
typedef void (*op_cb)(pm_alerter_t *a, const pm_pg_result_t *r, void *arg);

/* One statement waiting for the connection: the alerter runs one at a
 * time, in order. */
struct op {
  op_t *next;
  const char *what; /* for messages: "declaring targets" */
  char *sql;
  int nparams;
  char **params; /* NULL entries are SQL NULLs */
  op_cb cb;      /* may be NULL */
  void *arg;     /* freed with the op (malloc'd) when own_arg */
  int own_arg;
};

typedef struct notif {
  pm_notifier_t *n;
  char *name;
  int64_t give_up_us;
  int busy;        /* a send in flight, or its outcome being recorded */
  int64_t marking; /* the event whose outcome is being recorded, 0: none */
  int64_t wait_us; /* monotonic: no attempt before this */
  pm_ratelimit_t rl;
  struct pm_alerter *a;
} notif_t;

/* A send in flight. */
typedef struct send {
  pm_alerter_t *a;
  uint64_t gen; /* the alerter's generation when it started */
  notif_t *nt;
  char *notifier;
  int64_t event_id;
  int attempts;
  int64_t age_us;
} send_t;

struct pm_alerter {
  uv_loop_t *loop;
  pm_pg_t *pg;
  uv_timer_t tick, reconnect, outbox_timer;
  char *conninfo, *password_file, *daemon_id;
  int64_t connect_timeout_us, statement_timeout_us;

  /* what this daemon declares */
  char *decl_collectors, *decl_targets; /* JSON arrays */
  int wants_lead;
  int64_t interval_us;
  notif_t **nots;
  size_t nnots;

  int started, closing, connecting, connected, leader;
  int dirty;     /* declare again */
  int in_cycle;  /* a tick's statements are queued or running */
  int in_outbox; /* the outbox query is queued or running */
  int outbox_again;
  int schema_wait; /* the schema is not migrated yet */
  uint64_t gen;    /* bumped when the connection or notifiers change */
  int64_t reconnect_us;
  op_t *head, *tail;
  int running; /* an op is on the connection */
  pm_ratelimit_t rl_db, rl_unknown;
  pm_alerter_stats_t st;

  int pending_close; /* handles and notifiers not yet closed */
  void (*done)(void *arg);
  void *done_arg;
};

static void a_run(pm_alerter_t *a);
static void a_connect(pm_alerter_t *a);
static void a_broken(pm_alerter_t *a, const char *why);
static void a_outbox(pm_alerter_t *a);
static void on_tick(uv_timer_t *t);

static int64_t mono_us(void) {
  return (int64_t)(uv_hrtime() / 1000);
}

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

/* ------------------------------------------------------------------ */
/* the statement queue */

static void op_free(op_t *o) {
  if (!o)
    return;
  for (int i = 0; i < o->nparams; i++)
    free(o->params[i]);
  free(o->params);
  free(o->sql);
  if (o->own_arg)
    free(o->arg);
  free(o);
}

static void ops_clear(pm_alerter_t *a) {
  while (a->head) {
    op_t *o = a->head;
    a->head = o->next;
    op_free(o);
  }
  a->tail = NULL;
}

/* Queue a statement; params are copied (NULL entries are NULLs). With
 * own_arg, arg (malloc'd) belongs to the op from now on, even on error.
 * 0 or PM_ENOMEM (nothing queued). */
static int a_queue_own(pm_alerter_t *a, const char *what, const char *sql,
                       int nparams, const char *const *params, op_cb cb,
                       void *arg, int own_arg) {
  op_t *o;
  if (!a->connected || a->closing) {
    /* the connection went while a callback was still queueing: what it
     * queued belongs to a session that is gone */
    if (own_arg)
      free(arg);
    return PM_ESTOPPED;
  }
  o = calloc(1, sizeof *o);
  if (!o) {
    if (own_arg)
      free(arg);
    return PM_ENOMEM;
  }
  o->own_arg = own_arg;
  o->what = what;
  o->sql = strdup(sql);
  o->nparams = nparams;
  o->cb = cb;
  o->arg = arg;
  if (nparams) {
    o->params = calloc((size_t)nparams, sizeof *o->params);
    if (!o->params)
      goto oom;
    for (int i = 0; i < nparams; i++)
      if (params[i] && !(o->params[i] = strdup(params[i])))
        goto oom;
  }
  if (!o->sql)
    goto oom;
  if (a->tail)
    a->tail->next = o;
  else
    a->head = o;
  a->tail = o;
  a_run(a);
  return 0;
oom:
  op_free(o);
  return PM_ENOMEM;
}

static int a_queue(pm_alerter_t *a, const char *what, const char *sql,
                   int nparams, const char *const *params, op_cb cb,
                   void *arg) {
  return a_queue_own(a, what, sql, nparams, params, cb, arg, 0);
}

static void a_on_result(void *arg, const pm_pg_result_t *r) {
  pm_alerter_t *a = arg;
  op_t *o = a->head;
  a->running = 0;
  a->head = o->next;
  if (!a->head)
    a->tail = NULL;
  if (r->broken) {
    char why[600];
    snprintf(why, sizeof why, "%s: %s", o->what, r->error ? r->error : "");
    op_free(o);
    a_broken(a, why);
    return;
  }
  if (!r->ok)
    a->st.errors++;
  if (o->cb)
    o->cb(a, r, o->arg);
  op_free(o);
  a_run(a);
}

static int64_t a_op_timeout(const pm_alerter_t *a) {
  return (a->statement_timeout_us > 0 ? a->statement_timeout_us
                                      : 60 * US_PER_S) +
         5 * US_PER_S;
}

static void a_run(pm_alerter_t *a) {
  op_t *o = a->head;
  int rc;
  if (!o || a->running || !a->connected || a->closing)
    return;
  rc = pm_pg_query(a->pg, o->sql, o->nparams, (const char *const *)o->params,
                   NULL, 0, a_op_timeout(a), a_on_result, a);
  if (rc == 0) {
    a->running = 1;
    return;
  }
  a_broken(a, pm_pg_error(a->pg));
}

/* Log a failed statement, once per episode; 1 if r failed. */
static int a_failed(pm_alerter_t *a, const char *what,
                    const pm_pg_result_t *r) {
  uint64_t sup = 0;
  if (r->ok)
    return 0;
  if (strcmp(r->sqlstate, "42883") == 0 || strcmp(r->sqlstate, "42P01") == 0 ||
      strcmp(r->sqlstate, "3F000") == 0) {
    /* the writer migrates the schema on its own connection: wait */
    if (!a->schema_wait)
      pm_info("alerts: waiting for the schema to be migrated (%s)", what);
    a->schema_wait = 1;
    return 1;
  }
  if (pm_ratelimit_ok(&a->rl_db, mono_us(), &sup))
    pm_error("alerts: %s failed: %s [%s]%s", what, r->error, r->sqlstate,
             sup ? " (repeated errors suppressed)" : "");
  return 1;
}

/* ------------------------------------------------------------------ */
/* connection */

static void a_on_session(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  (void)arg;
  if (a_failed(a, "configuring the session", r))
    return;
  a->reconnect_us = 0;
  pm_debug("alerts: connected");
}

static void a_on_connected(void *arg, const pm_pg_result_t *r) {
  pm_alerter_t *a = arg;
  char sql[512];
  int64_t st =
      a->statement_timeout_us > 0 ? a->statement_timeout_us : 60 * US_PER_S;
  a->connecting = 0;
  if (!r->ok) {
    a_broken(a, r->error);
    return;
  }
  a->connected = 1;
  a->st.connected = 1;
  a->dirty = 1;
  /* The keepalives make the server drop a dead leader's session, and its
   * lock, within about a minute (PQ keepalives only cover our side). */
  snprintf(sql, sizeof sql,
           "SET statement_timeout = %" PRId64 "; SET lock_timeout = 10000; "
           "SET idle_in_transaction_session_timeout = 60000; "
           "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
           "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000; "
           "SET TimeZone = 'UTC'",
           st / 1000);
  a_queue(a, "configuring the session", sql, 0, NULL, a_on_session, NULL);
  uv_timer_start(&a->tick, on_tick, 10, (uint64_t)(a->interval_us / 1000));
}

static void a_on_reconnect(uv_timer_t *t) {
  a_connect(t->data);
}

static void a_connect(pm_alerter_t *a) {
  pm_pg_connect_opts_t co = {0};
  char appname[160], err[1100];
  char *password = NULL;
  int rc;
  if (a->closing || a->connecting || a->connected)
    return;
  if (a->password_file) {
    password =
        pm_secret_read(a->password_file, "password_file", err, sizeof err);
    if (!password) {
      a_broken(a, err);
      return;
    }
  }
  snprintf(appname, sizeof appname, "portalmetricsd/%s/alerts", a->daemon_id);
  co.conninfo = a->conninfo;
  co.password = password;
  co.application_name = appname;
  co.timeout_us =
      a->connect_timeout_us > 0 ? a->connect_timeout_us : 10 * US_PER_S;
  a->connecting = 1;
  rc = pm_pg_connect(a->pg, &co, a_on_connected, a);
  pm_secret_free(password);
  if (rc < 0) {
    a->connecting = 0;
    snprintf(err, sizeof err, "%s", pm_pg_error(a->pg));
    a_broken(a, err);
  }
}

static void notifiers_cancel(notif_t **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    pm_notifier_cancel_all(v[i]->n);
}

/* The connection is gone (or could not be made): so is the lock. */
static void a_broken(pm_alerter_t *a, const char *why) {
  uint64_t sup = 0;
  int was_leader = a->leader;
  a->connected = a->connecting = a->running = 0;
  a->st.connected = 0;
  a->leader = a->st.leader = 0;
  a->in_cycle = a->in_outbox = a->outbox_again = 0;
  a->gen++;
  ops_clear(a);
  pm_pg_reset(a->pg);
  uv_timer_stop(&a->tick);
  notifiers_cancel(a->nots, a->nnots);
  for (size_t i = 0; i < a->nnots; i++)
    if (a->nots[i]->marking) { /* its record was dropped with the ops */
      a->nots[i]->marking = 0;
      a->nots[i]->busy = 0;
    }
  if (a->closing)
    return;
  if (was_leader)
    pm_warn("alerts: this daemon lost the alert leadership (%s); another "
            "daemon, or this one once it reconnects, takes over",
            why);
  else if (pm_ratelimit_ok(&a->rl_db, mono_us(), &sup))
    pm_warn("alerts: database connection lost or refused: %s", why);
  a->reconnect_us = a->reconnect_us ? a->reconnect_us * 2 : RECONNECT_MIN_US;
  if (a->reconnect_us > RECONNECT_MAX_US)
    a->reconnect_us = RECONNECT_MAX_US;
  uv_timer_start(&a->reconnect, a_on_reconnect,
                 (uint64_t)(a->reconnect_us / 1000), 0);
}

static void a_on_idle_broken(void *arg, const char *why) {
  a_broken(arg, why);
}

/* ------------------------------------------------------------------ */
/* one tick: declare, lead, evaluate, deliver */

static void cycle_end(pm_alerter_t *a) {
  a->in_cycle = 0;
}

static void step_lead(pm_alerter_t *a);

static void on_declared(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  const PGresult *res;
  (void)arg;
  if (a_failed(a, "declaring targets and collectors", r)) {
    cycle_end(a);
    return;
  }
  a->schema_wait = 0;
  a->dirty = 0;
  res = r->nres ? r->res[r->nres - 1] : NULL;
  a->st.refused_targets = res ? (size_t)PQntuples(res) : 0;
  for (int i = 0; res && i < PQntuples(res); i++)
    pm_error("target %s: refused: its definition here differs from the one "
             "daemon(s) %s declared in the database, and target names are "
             "one namespace per database; make the definitions equal or "
             "rename one (this daemon \"%s\" keeps collecting)",
             PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), a->daemon_id);
  step_lead(a);
}

static void step_declare(pm_alerter_t *a) {
  const char *p[3] = {a->daemon_id, a->decl_collectors, a->decl_targets};
  if (!a->dirty) {
    step_lead(a);
    return;
  }
  if (a_queue(a, "declaring targets and collectors",
              "SELECT target, conflict_with FROM portalmetrics.declare($1, "
              "$2::jsonb, $3::jsonb)",
              3, p, on_declared, NULL) < 0)
    cycle_end(a);
}

static void step_eval(pm_alerter_t *a);

static void on_lock(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  const PGresult *res;
  (void)arg;
  if (a_failed(a, "trying the alert leader lock", r)) {
    cycle_end(a);
    return;
  }
  res = r->res[r->nres - 1];
  if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
    a->leader = a->st.leader = 1;
    pm_info("alerts: this daemon (\"%s\") is now the alert leader: it "
            "evaluates every target and delivers notifications",
            a->daemon_id);
    step_eval(a);
    return;
  }
  cycle_end(a);
}

static void on_unlock(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  (void)arg;
  (void)r;
  pm_info("alerts: no targets or notifiers here any more: leadership "
          "released");
  cycle_end(a);
}

static void step_lead(pm_alerter_t *a) {
  if (!a->wants_lead) {
    if (a->leader) {
      a->leader = a->st.leader = 0;
      a->gen++;
      notifiers_cancel(a->nots, a->nnots);
      a_queue(a, "releasing the alert leader lock",
              "SELECT pg_advisory_unlock(" LEADER_KEY ")", 0, NULL, on_unlock,
              NULL);
      return;
    }
    cycle_end(a);
    return;
  }
  if (a->leader) {
    step_eval(a);
    return;
  }
  if (a_queue(a, "trying the alert leader lock",
              "SELECT pg_try_advisory_lock(" LEADER_KEY ")", 0, NULL, on_lock,
              NULL) < 0)
    cycle_end(a);
}

/* ---- evaluation ---- */

/* Times cross as microseconds since the epoch, dates as day numbers. */
static const char EVAL_SQL[] =
    "SELECT s.target, s.status, s.late, s.actual, s.expected, "
    "s.plan_date - DATE '1970-01-01', s.goal_value, "
    "s.due - DATE '1970-01-01', s.projected_date - DATE '1970-01-01', "
    "s.days_late, t.title, t.format, t.direction, t.severity, "
    "(extract(epoch FROM t.fire_for) * 1000000)::bigint, "
    "(extract(epoch FROM t.clear_for) * 1000000)::bigint, "
    "coalesce((extract(epoch FROM t.repeat) * 1000000)::bigint, 0), "
    "t.notify, a.state, "
    "(extract(epoch FROM a.since) * 1000000)::bigint, "
    "(extract(epoch FROM a.cond_since) * 1000000)::bigint, a.late, "
    "(extract(epoch FROM a.late_cond_since) * 1000000)::bigint, "
    "(extract(epoch FROM a.notified_at) * 1000000)::bigint, a.version, "
    "(extract(epoch FROM now()) * 1000000)::bigint "
    "FROM portalmetrics.target_status s "
    "JOIN portalmetrics.targets t ON t.name = s.target "
    "LEFT JOIN portalmetrics.alert_state a ON a.target = s.target "
    "ORDER BY s.target";

enum {
  C_TARGET,
  C_STATUS,
  C_LATE,
  C_ACTUAL,
  C_EXPECTED,
  C_PLAN,
  C_GOAL,
  C_DUE,
  C_PROJ,
  C_DAYS_LATE,
  C_TITLE,
  C_FORMAT,
  C_DIRECTION,
  C_SEVERITY,
  C_FOR,
  C_CLEAR,
  C_REPEAT,
  C_NOTIFY,
  C_A_STATE,
  C_A_SINCE,
  C_A_COND,
  C_A_LATE,
  C_A_LATE_COND,
  C_A_NOTIFIED,
  C_A_VERSION,
  C_NOW,
  C_N
};

/* The transition statement: the state (fenced on its version), the
 * events, their deliveries and the NOTIFY, in one implicit transaction. */
static const char STEP_SQL[] =
    "WITH st AS ("
    " INSERT INTO portalmetrics.alert_state AS a (target, state, since, "
    " cond_since, late, late_cond_since, notified_at, version, updated_at)"
    " VALUES ($1, $2, TIMESTAMPTZ 'epoch' + $3::bigint * INTERVAL '1 "
    "microsecond',"
    " TIMESTAMPTZ 'epoch' + $4::bigint * INTERVAL '1 microsecond', $5,"
    " TIMESTAMPTZ 'epoch' + $6::bigint * INTERVAL '1 microsecond',"
    " TIMESTAMPTZ 'epoch' + $7::bigint * INTERVAL '1 microsecond', 1, now())"
    " ON CONFLICT (target) DO UPDATE SET state = EXCLUDED.state,"
    " since = EXCLUDED.since, cond_since = EXCLUDED.cond_since,"
    " late = EXCLUDED.late, late_cond_since = EXCLUDED.late_cond_since,"
    " notified_at = EXCLUDED.notified_at, version = a.version + 1,"
    " updated_at = now()"
    " WHERE a.version = $8::bigint"
    " RETURNING target),"
    " ev AS ("
    " INSERT INTO portalmetrics.alert_events (target, kind, from_state,"
    " to_state, severity, status, actual, expected, projected_date, late,"
    " message, notify, daemon_id, body, delivered_at)"
    " SELECT st.target, e.kind, e.from_state, e.to_state, $10, $11,"
    " $12::float8, $13::float8, DATE '1970-01-01' + $14::integer, $15::boolean,"
    " e.message, e.notify, $16, e.body - 'event_id',"
    " CASE WHEN e.notify AND cardinality($17::text[]) > 0 THEN NULL"
    " ELSE now() END"
    " FROM st, ROWS FROM (jsonb_to_recordset($9::jsonb) AS (kind text,"
    " from_state text, to_state text, notify boolean, message text,"
    " body jsonb)) WITH ORDINALITY AS e(kind, from_state, to_state, notify,"
    " message, body, ord)"
    " ORDER BY e.ord"
    " RETURNING event_id, target, kind, from_state, to_state, notify),"
    " dl AS ("
    " INSERT INTO portalmetrics.alert_deliveries (event_id, notifier)"
    " SELECT ev.event_id, n FROM ev, unnest($17::text[]) AS n"
    " WHERE ev.notify)"
    " SELECT 'event', ev.event_id, pg_notify('portalmetrics_alerts',"
    " json_build_object('event_id', ev.event_id::text, 'target', ev.target,"
    " 'kind', ev.kind, 'from', ev.from_state, 'to', ev.to_state)::text)::text"
    " FROM ev"
    " UNION ALL SELECT 'state', 0, NULL FROM st";

typedef struct step_ctx {
  char target[128];
} step_ctx_t;

static void on_step(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  step_ctx_t *c = arg;
  const PGresult *res;
  int state = 0, events = 0;
  if (a_failed(a, "recording an alert state", r))
    return;
  res = r->res[r->nres - 1];
  for (int i = 0; i < PQntuples(res); i++) {
    if (strcmp(PQgetvalue(res, i, 0), "state") == 0)
      state = 1;
    else
      events++;
  }
  if (!state)
    pm_warn("alerts: target %s: its alert state changed under this leader "
            "(another daemon wrote it); judged again at the next tick",
            c->target);
  a->st.events += (uint64_t)events;
}

static const char *val(const PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int64_t val_i64(const PGresult *res, int row, int col) {
  const char *v = val(res, row, col);
  return v ? strtoll(v, NULL, 10) : 0;
}

static int32_t val_day(const PGresult *res, int row, int col) {
  const char *v = val(res, row, col);
  return v ? (int32_t)strtol(v, NULL, 10) : PM_ALERT_NO_DAY;
}

static int val_real(const PGresult *res, int row, int col, double *out) {
  const char *v = val(res, row, col);
  if (!v)
    return 0;
  *out = strtod(v, NULL);
  return 1;
}

/* An unknown status is judged as nodata: nothing to judge it by. */
static pm_target_status_t status_of(const char *s) {
  int st = pm_target_status_parse(s);
  return st < 0 ? PM_STATUS_NODATA : (pm_target_status_t)st;
}

static void num_param(char *buf, size_t len, int has, double v) {
  if (has)
    snprintf(buf, len, "%.17g", v);
  else
    buf[0] = 0;
}

/* Judge one row of the evaluation; queue its statement when it changed. */
static void eval_row(pm_alerter_t *a, const PGresult *res, int i) {
  pm_alert_mem_t m;
  pm_alert_rules_t rules;
  pm_alert_obs_t obs;
  pm_alert_ev_t ev[PM_ALERT_EV_MAX];
  pm_alert_event_t e = {0};
  int changed = 0, nev, fresh = PQgetisnull(res, i, C_A_STATE);
  const char *target = PQgetvalue(res, i, C_TARGET);
  char s_since[24], s_cond[24], s_late_cond[24], s_notified[24], s_ver[24];
  char s_actual[40], s_expected[40], s_proj[16], *evjson = NULL;
  const char *p[17];
  json_t *arr;
  step_ctx_t *c;

  obs.now_us = val_i64(res, i, C_NOW);
  obs.status = status_of(val(res, i, C_STATUS));
  obs.late = val(res, i, C_LATE) && PQgetvalue(res, i, C_LATE)[0] == 't';
  rules.for_us = val_i64(res, i, C_FOR);
  rules.clear_for_us = val_i64(res, i, C_CLEAR);
  rules.repeat_us = val_i64(res, i, C_REPEAT);
  if (fresh) {
    pm_alert_mem_init(&m, obs.now_us);
  } else {
    int st = pm_alert_state_parse(PQgetvalue(res, i, C_A_STATE));
    m.state = st < 0 ? PM_ALERT_OK : (pm_alert_state_t)st;
    m.since_us = val_i64(res, i, C_A_SINCE);
    m.cond_us = val_i64(res, i, C_A_COND);
    m.late = PQgetvalue(res, i, C_A_LATE)[0] == 't';
    m.late_cond_us = val_i64(res, i, C_A_LATE_COND);
    m.notified_us = val_i64(res, i, C_A_NOTIFIED);
  }
  nev = pm_alert_step(&m, &rules, &obs, ev, &changed);
  if (!changed && !fresh)
    return;

  e.target = target;
  e.title = PQgetvalue(res, i, C_TITLE);
  e.severity = PQgetvalue(res, i, C_SEVERITY);
  e.at_us = obs.now_us;
  e.status = obs.status;
  e.has_actual = val_real(res, i, C_ACTUAL, &e.actual);
  e.has_expected = val_real(res, i, C_EXPECTED, &e.expected);
  e.has_goal = val_real(res, i, C_GOAL, &e.goal_value);
  e.percent = strcmp(PQgetvalue(res, i, C_FORMAT), "percent") == 0;
  e.at_most = strcmp(PQgetvalue(res, i, C_DIRECTION), "at_most") == 0;
  e.plan_day = val_day(res, i, C_PLAN);
  e.due_day = val_day(res, i, C_DUE);
  e.projected_day = val_day(res, i, C_PROJ);
  e.late = obs.late;
  e.days_late = (int32_t)val_i64(res, i, C_DAYS_LATE);
  e.daemon = a->daemon_id;

  arr = json_array();
  for (int k = 0; arr && k < nev; k++) {
    char msg[1024];
    json_t *o, *b;
    e.kind = ev[k].kind;
    e.from = ev[k].from;
    e.to = ev[k].to;
    e.message = NULL;
    pm_alert_message(&e, msg, sizeof msg);
    e.message = msg;
    b = pm_alert_event_object(&e);
    /* "o" steals b, also when the pack fails; a NULL b fails it */
    o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:o}", "kind",
                  pm_alert_ev_kind_name(ev[k].kind), "from_state",
                  pm_alert_state_name(ev[k].from), "to_state",
                  pm_alert_state_name(ev[k].to), "notify", ev[k].notify,
                  "message", msg, "body", b);
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      arr = NULL;
    }
    pm_info("alerts: target %s: %s%s%s -> %s", target,
            ev[k].kind == PM_EV_STATE ? "" : pm_alert_ev_kind_name(ev[k].kind),
            ev[k].kind == PM_EV_STATE ? "" : ", ",
            pm_alert_state_name(ev[k].from), pm_alert_state_name(ev[k].to));
  }
  evjson = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  c = calloc(1, sizeof *c);
  if (!evjson || !c) {
    free(evjson);
    free(c);
    pm_error("alerts: target %s: out of memory recording its state", target);
    return;
  }
  snprintf(c->target, sizeof c->target, "%s", target);
  snprintf(s_since, sizeof s_since, "%" PRId64, m.since_us);
  snprintf(s_cond, sizeof s_cond, "%" PRId64, m.cond_us);
  snprintf(s_late_cond, sizeof s_late_cond, "%" PRId64, m.late_cond_us);
  snprintf(s_notified, sizeof s_notified, "%" PRId64, m.notified_us);
  snprintf(s_ver, sizeof s_ver, "%s",
           fresh ? "0" : PQgetvalue(res, i, C_A_VERSION));
  num_param(s_actual, sizeof s_actual, e.has_actual, e.actual);
  num_param(s_expected, sizeof s_expected, e.has_expected, e.expected);
  snprintf(s_proj, sizeof s_proj, "%" PRId32, e.projected_day);
  p[0] = target;
  p[1] = pm_alert_state_name(m.state);
  p[2] = s_since;
  p[3] = m.cond_us ? s_cond : NULL;
  p[4] = m.late ? "true" : "false";
  p[5] = m.late_cond_us ? s_late_cond : NULL;
  p[6] = m.notified_us ? s_notified : NULL;
  p[7] = s_ver;
  p[8] = evjson;
  p[9] = e.severity;
  p[10] = pm_target_status_name(obs.status);
  p[11] = e.has_actual ? s_actual : NULL;
  p[12] = e.has_expected ? s_expected : NULL;
  p[13] = e.projected_day != PM_ALERT_NO_DAY ? s_proj : NULL;
  p[14] = obs.late ? "true" : "false";
  p[15] = a->daemon_id;
  p[16] = PQgetvalue(res, i, C_NOTIFY);
  if (a_queue_own(a, "recording an alert state", STEP_SQL, 17, p, on_step, c,
                  1) == PM_ENOMEM)
    pm_error("alerts: target %s: out of memory recording its state", target);
  free(evjson);
}

static void on_outbox_done(pm_alerter_t *a, const pm_pg_result_t *r, void *arg);

static void on_eval(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  const PGresult *res;
  (void)arg;
  if (a_failed(a, "evaluating targets", r)) {
    cycle_end(a);
    return;
  }
  res = r->res[r->nres - 1];
  if (PQnfields(res) != C_N) {
    pm_error("alerts: target_status answered %d columns, expected %d",
             PQnfields(res), C_N);
    cycle_end(a);
    return;
  }
  a->st.evaluations++;
  for (int i = 0; i < PQntuples(res); i++)
    eval_row(a, res, i);
  /* the transitions are queued ahead of it: the outbox sees their events */
  cycle_end(a);
  a_outbox(a);
}

static void step_eval(pm_alerter_t *a) {
  if (a_queue(a, "evaluating targets", EVAL_SQL, 0, NULL, on_eval, NULL) < 0)
    cycle_end(a);
}

static void on_tick(uv_timer_t *t) {
  pm_alerter_t *a = t->data;
  if (!a->connected || a->in_cycle || a->closing)
    return;
  a->in_cycle = 1;
  step_declare(a);
}

/* ---- the outbox ---- */

static const char OUTBOX_SQL[] =
    "SELECT DISTINCT ON (d.notifier) d.event_id, d.notifier, d.attempts, "
    "(extract(epoch FROM now() - e.at) * 1000000)::bigint, e.target, "
    "coalesce(e.body->>'title', e.target), e.kind, e.from_state, e.to_state, "
    "e.severity, e.status, e.actual, e.expected, e.message, "
    "(e.body || jsonb_build_object('event_id', e.event_id::text))::text "
    "FROM portalmetrics.alert_deliveries d "
    "JOIN portalmetrics.alert_events e ON e.event_id = d.event_id "
    "WHERE d.delivered_at IS NULL AND d.abandoned_at IS NULL "
    "ORDER BY d.notifier, d.event_id";

static const char DELIVERED_SQL[] =
    "WITH d AS (UPDATE portalmetrics.alert_deliveries SET delivered_at = "
    "now(), attempts = attempts + 1, last_error = NULL WHERE event_id = "
    "$1::bigint AND notifier = $2 AND delivered_at IS NULL RETURNING "
    "event_id) "
    "UPDATE portalmetrics.alert_events e SET delivered_at = now() FROM d "
    "WHERE e.event_id = d.event_id AND NOT EXISTS (SELECT 1 FROM "
    "portalmetrics.alert_deliveries x WHERE x.event_id = d.event_id AND "
    "x.notifier <> $2 AND x.delivered_at IS NULL AND x.abandoned_at IS NULL)";

static const char FAILED_SQL[] =
    "UPDATE portalmetrics.alert_deliveries SET attempts = attempts + 1, "
    "last_error = $3, next_attempt_at = now() + $4::bigint * INTERVAL '1 "
    "microsecond', abandoned_at = CASE WHEN $5::boolean THEN now() END "
    "WHERE event_id = $1::bigint AND notifier = $2 AND delivered_at IS NULL";

static notif_t *notif_find(pm_alerter_t *a, const char *name) {
  for (size_t i = 0; i < a->nnots; i++)
    if (strcmp(a->nots[i]->name, name) == 0)
      return a->nots[i];
  return NULL;
}

/* A delivery's outcome being recorded: its notifier stays busy until the
 * row says so, or an outbox read queued meanwhile would send it again. */
typedef struct mark {
  char notifier[64];
  int64_t event_id;
} mark_t;

static void on_marked(pm_alerter_t *a, const pm_pg_result_t *r, void *arg) {
  mark_t *mk = arg;
  notif_t *nt = notif_find(a, mk->notifier);
  a_failed(a, "recording a delivery", r);
  if (nt && nt->marking == mk->event_id) {
    nt->marking = 0;
    nt->busy = 0;
  }
  a_outbox(a); /* the notifier's next event */
}

static void queue_mark(pm_alerter_t *a, notif_t *nt, const char *sql,
                       int nparams, const char *const *p, int64_t event_id) {
  mark_t *mk = calloc(1, sizeof *mk);
  if (mk) {
    snprintf(mk->notifier, sizeof mk->notifier, "%s", nt->name);
    mk->event_id = event_id;
  }
  nt->marking = event_id;
  if (!mk || a_queue_own(a, "recording a delivery", sql, nparams, p, on_marked,
                         mk, 1) < 0) {
    nt->marking = 0; /* not recorded: the outbox sends it again */
    nt->busy = 0;
  }
}

static void on_outbox_timer(uv_timer_t *t) {
  a_outbox(t->data);
}

static int64_t backoff_us(int attempts) {
  int64_t d = RETRY_MIN_US;
  for (int i = 1; i < attempts && d < RETRY_MAX_US; i++)
    d *= 2;
  if (d > RETRY_MAX_US)
    d = RETRY_MAX_US;
  /* +-20 % so that many events retried together spread out */
  return d - d / 5 + (int64_t)((uint64_t)rand() % (uint64_t)(d * 2 / 5 + 1));
}

static void mark_failed(pm_alerter_t *a, notif_t *nt, const char *notifier,
                        int64_t event_id, const char *error, int64_t wait_us,
                        int give_up) {
  char s_id[24], s_wait[24];
  const char *p[5];
  snprintf(s_id, sizeof s_id, "%" PRId64, event_id);
  snprintf(s_wait, sizeof s_wait, "%" PRId64, wait_us);
  p[0] = s_id;
  p[1] = notifier;
  p[2] = error;
  p[3] = s_wait;
  p[4] = give_up ? "true" : "false";
  if (nt)
    queue_mark(a, nt, FAILED_SQL, 5, p, event_id);
  else
    a_queue(a, "recording a delivery", FAILED_SQL, 5, p, NULL, NULL);
}

static void on_sent(void *arg, int status, const char *error) {
  send_t *s = arg;
  pm_alerter_t *a = s->a;
  notif_t *nt = s->nt;
  uint64_t sup = 0;
  if (s->gen != a->gen || a->closing || !a->leader) {
    nt->busy = 0;
    /* cancelled: leadership or notifiers changed; the outbox still has
     * it for whoever leads next */
    free(s->notifier);
    free(s);
    return;
  }
  if (status == 0) {
    char s_id[24];
    const char *p[2] = {s_id, s->notifier};
    snprintf(s_id, sizeof s_id, "%" PRId64, s->event_id);
    a->st.delivered++;
    if (nt->rl.last_us)
      pm_info("alerts: notifier %s delivers again (event %" PRId64 ")",
              s->notifier, s->event_id);
    nt->rl.last_us = 0;
    queue_mark(a, nt, DELIVERED_SQL, 2, p, s->event_id);
  } else {
    int64_t wait = backoff_us(s->attempts + 1);
    int give_up = s->age_us >= nt->give_up_us;
    a->st.delivery_errors++;
    if (give_up) {
      a->st.abandoned++;
      pm_error("alerts: notifier %s: gave up delivering event %" PRId64
               " after %d attempts: %s",
               s->notifier, s->event_id, s->attempts + 1, error);
    } else if (pm_ratelimit_ok(&nt->rl, mono_us(), &sup)) {
      pm_warn("alerts: notifier %s: delivering event %" PRId64
              " failed: %s; retrying with backoff%s",
              s->notifier, s->event_id, error,
              sup ? " (further failures of this notifier not logged)" : "");
    }
    nt->wait_us = mono_us() + wait;
    mark_failed(a, nt, s->notifier, s->event_id, error, wait, give_up);
    if (!uv_is_active((uv_handle_t *)&a->outbox_timer) ||
        uv_timer_get_due_in(&a->outbox_timer) > (uint64_t)(wait / 1000))
      uv_timer_start(&a->outbox_timer, on_outbox_timer,
                     (uint64_t)(wait / 1000) + 1, 0);
  }
  free(s->notifier);
  free(s);
}

static void outbox_row(pm_alerter_t *a, const PGresult *res, int i) {
  pm_alert_event_t e = {0};
  const char *name = PQgetvalue(res, i, 1);
  notif_t *nt = notif_find(a, name);
  send_t *s;
  int attempts = (int)val_i64(res, i, 2);
  int64_t age = val_i64(res, i, 3);
  uint64_t sup = 0;
  int st;

  e.event_id = val_i64(res, i, 0);
  if (!nt) {
    if (age >= UNKNOWN_GIVE_UP_US) {
      a->st.abandoned++;
      mark_failed(a, NULL, name, e.event_id,
                  "no such notifier in the leader's config", RETRY_MAX_US, 1);
    } else if (pm_ratelimit_ok(&a->rl_unknown, mono_us(), &sup)) {
      pm_error("alerts: event %" PRId64 " is for notifier \"%s\", which this "
               "daemon (the alert leader) does not define; it waits for a "
               "leader that does (every daemon that may lead should carry "
               "the notifiers its targets name)",
               e.event_id, name);
    }
    return;
  }
  if (nt->busy || nt->wait_us > mono_us())
    return;
  e.target = PQgetvalue(res, i, 4);
  e.title = PQgetvalue(res, i, 5);
  e.kind = PM_EV_STATE;
  for (int k = PM_EV_STATE; k <= PM_EV_REPEAT; k++)
    if (strcmp(pm_alert_ev_kind_name(k), PQgetvalue(res, i, 6)) == 0)
      e.kind = k;
  st = pm_alert_state_parse(PQgetvalue(res, i, 7));
  e.from = st < 0 ? PM_ALERT_OK : (pm_alert_state_t)st;
  st = pm_alert_state_parse(PQgetvalue(res, i, 8));
  e.to = st < 0 ? PM_ALERT_OK : (pm_alert_state_t)st;
  e.severity = PQgetvalue(res, i, 9);
  e.status = status_of(PQgetvalue(res, i, 10));
  e.has_actual = val_real(res, i, 11, &e.actual);
  e.has_expected = val_real(res, i, 12, &e.expected);
  e.message = PQgetvalue(res, i, 13);
  e.daemon = a->daemon_id;
  e.plan_day = e.due_day = e.projected_day = PM_ALERT_NO_DAY;

  s = calloc(1, sizeof *s);
  if (!s || !(s->notifier = strdup(name))) {
    free(s);
    return;
  }
  s->a = a;
  s->gen = a->gen;
  s->nt = nt;
  s->event_id = e.event_id;
  s->attempts = attempts;
  s->age_us = age;
  nt->busy = 1;
  if (pm_notifier_send(nt->n, &e, PQgetvalue(res, i, 14), on_sent, s) < 0) {
    nt->busy = 0;
    free(s->notifier);
    free(s);
  }
}

static void on_outbox_done(pm_alerter_t *a, const pm_pg_result_t *r,
                           void *arg) {
  const PGresult *res;
  (void)arg;
  a->in_outbox = 0;
  if (a_failed(a, "reading the notification outbox", r))
    return;
  res = r->res[r->nres - 1];
  if (a->leader)
    for (int i = 0; i < PQntuples(res); i++)
      outbox_row(a, res, i);
  if (a->outbox_again) {
    a->outbox_again = 0;
    a_outbox(a);
  }
}

static void a_outbox(pm_alerter_t *a) {
  if (!a->leader || a->closing)
    return;
  if (a->in_outbox) {
    a->outbox_again = 1;
    return;
  }
  a->in_outbox = 1;
  if (a_queue(a, "reading the notification outbox", OUTBOX_SQL, 0, NULL,
              on_outbox_done, NULL) < 0)
    a->in_outbox = 0;
}

/* ------------------------------------------------------------------ */
/* configuration */

static char *collectors_json(const pm_alerter_collector_t *c, size_t n) {
  json_t *arr = json_array();
  char *s;
  for (size_t i = 0; arr && i < n; i++) {
    json_t *o = json_pack("{s:s, s:s, s:o}", "name", c[i].name, "plugin",
                          c[i].plugin, "interval_s",
                          c[i].interval_us > 0
                              ? json_real((double)c[i].interval_us / 1e6)
                              : json_null());
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      return NULL;
    }
  }
  s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  return s;
}

static char *targets_json(const pm_config_t *cfg) {
  json_t *arr = json_array();
  char *s;
  for (size_t i = 0; arr && i < cfg->n_targets; i++) {
    const pm_target_conf_t *t = &cfg->targets[i];
    json_t *def = json_loads(t->definition, 0, NULL);
    json_t *o =
        def ? json_pack("{s:s, s:o}", "name", t->name, "definition", def)
            : NULL;
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      return NULL;
    }
  }
  s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  return s;
}

static void notif_closed(void *arg) {
  notif_t *nt = arg;
  pm_alerter_t *a = nt->a;
  pm_notifier_free(nt->n);
  free(nt->name);
  free(nt);
  if (a->pending_close && --a->pending_close == 0 && a->done)
    a->done(a->done_arg);
}

static void notifs_close(pm_alerter_t *a, notif_t **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    a->pending_close++;
    pm_notifier_close(v[i]->n, notif_closed, v[i]);
  }
  free(v);
}

int pm_alerter_configure(pm_alerter_t *a, const pm_config_t *cfg,
                         const pm_alerter_collector_t *cols, size_t ncols) {
  char *cj = collectors_json(cols, ncols), *tj = targets_json(cfg);
  notif_t **nots = calloc(cfg->n_notifiers + 1, sizeof *nots);
  size_t n = 0;
  if (!cj || !tj || !nots)
    goto oom;
  for (; n < cfg->n_notifiers; n++) {
    notif_t *nt = calloc(1, sizeof *nt);
    if (!nt)
      goto oom;
    nots[n] = nt;
    nt->a = a;
    nt->n = pm_notifier_new(a->loop, &cfg->notifiers[n]);
    nt->name = strdup(cfg->notifiers[n].name);
    nt->give_up_us = cfg->notifiers[n].give_up_us > 0
                         ? cfg->notifiers[n].give_up_us
                         : 86400 * US_PER_S;
    nt->rl.interval_us = 300 * US_PER_S;
    if (!nt->n || !nt->name) {
      n++;
      goto oom;
    }
  }
  free(a->decl_collectors);
  free(a->decl_targets);
  a->decl_collectors = cj;
  a->decl_targets = tj;
  a->wants_lead = cfg->n_targets > 0 || cfg->n_notifiers > 0;
  a->interval_us =
      cfg->alerts_interval_us > 0 ? cfg->alerts_interval_us : 30 * US_PER_S;
  a->dirty = 1;
  a->gen++;
  notifs_close(a, a->nots, a->nnots); /* their sends end as cancelled */
  a->nots = nots;
  a->nnots = n;
  if (a->connected)
    uv_timer_start(&a->tick, on_tick, 10, (uint64_t)(a->interval_us / 1000));
  return 0;
oom:
  for (size_t i = 0; i < n; i++) {
    if (nots[i]->n) {
      pm_notifier_free(nots[i]->n);
    }
    free(nots[i]->name);
    free(nots[i]);
  }
  free(nots);
  free(cj);
  free(tj);
  return PM_ENOMEM;
}

/* ------------------------------------------------------------------ */
/* life cycle */

pm_alerter_t *pm_alerter_new(uv_loop_t *loop, const pm_alerter_opts_t *o) {
  pm_alerter_t *a = calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->loop = loop;
  a->pg = pm_pg_new(loop);
  a->conninfo = xstrdup(o->conninfo);
  a->password_file = xstrdup(o->password_file);
  a->daemon_id = xstrdup(o->daemon_id);
  a->connect_timeout_us = o->connect_timeout_us;
  a->statement_timeout_us = o->statement_timeout_us;
  a->interval_us = 30 * US_PER_S;
  a->decl_collectors = strdup("[]");
  a->decl_targets = strdup("[]");
  a->rl_db.interval_us = 300 * US_PER_S;
  a->rl_unknown.interval_us = 3600 * US_PER_S;
  if (!a->pg || !a->conninfo || !a->daemon_id || !a->decl_collectors ||
      !a->decl_targets || (o->password_file && !a->password_file)) {
    if (a->pg)
      pm_pg_free(a->pg);
    free(a->conninfo);
    free(a->password_file);
    free(a->daemon_id);
    free(a->decl_collectors);
    free(a->decl_targets);
    free(a);
    return NULL;
  }
  uv_timer_init(loop, &a->tick);
  uv_timer_init(loop, &a->reconnect);
  uv_timer_init(loop, &a->outbox_timer);
  a->tick.data = a->reconnect.data = a->outbox_timer.data = a;
  pm_pg_set_on_broken(a->pg, a_on_idle_broken, a);
  return a;
}

int pm_alerter_start(pm_alerter_t *a) {
  if (a->started)
    return PM_EINVAL;
  a->started = 1;
  a_connect(a);
  return 0;
}

void pm_alerter_get_stats(const pm_alerter_t *a, pm_alerter_stats_t *out) {
  *out = a->st;
}

static void a_closed_one(pm_alerter_t *a) {
  if (--a->pending_close == 0 && a->done)
    a->done(a->done_arg);
}

static void on_handle_closed(uv_handle_t *h) {
  a_closed_one(h->data);
}

static void on_pg_closed(void *arg) {
  a_closed_one(arg);
}

void pm_alerter_close(pm_alerter_t *a, void (*done)(void *arg), void *arg) {
  a->closing = 1;
  a->done = done;
  a->done_arg = arg;
  a->pending_close++; /* held until every close below is started */
  ops_clear(a);
  a->gen++;
  notifs_close(a, a->nots, a->nnots);
  a->nots = NULL;
  a->nnots = 0;
  a->pending_close += 4;
  uv_close((uv_handle_t *)&a->tick, on_handle_closed);
  uv_close((uv_handle_t *)&a->reconnect, on_handle_closed);
  uv_close((uv_handle_t *)&a->outbox_timer, on_handle_closed);
  pm_pg_close(a->pg, on_pg_closed, a);
  a_closed_one(a);
}

void pm_alerter_free(pm_alerter_t *a) {
  if (!a)
    return;
  pm_pg_free(a->pg);
  free(a->conninfo);
  free(a->password_file);
  free(a->daemon_id);
  free(a->decl_collectors);
  free(a->decl_targets);
  free(a);
}

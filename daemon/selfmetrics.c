/* The daemon's own health series. */
#include "selfmetrics.h"

#include <stdlib.h>
#include <time.h>

#define TICK_MS 1000
#define REPORT_TICKS 10

struct pm_selfmetrics {
  uv_timer_t timer;
  pm_instance_t *inst;
  pm_writer_t *writer;
  pm_spool_t *spool;
  pm_source_t src;
  pm_writer_stats_t rep; /* what was reported already */
  pm_spool_stats_t rep_spool;
  pm_alerter_t *alerter; /* may be NULL */
  pm_alerter_stats_t rep_alert;
  pm_host_ctx_t *ctx;
  unsigned ticks;
  void (*stop_cb)(void *);
  void *stop_arg;
};

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void report(pm_selfmetrics_t *m) {
  pm_writer_stats_t st;
  pm_spool_stats_t sp = {0};
  pm_alerter_stats_t al = {0};
  pm_sample_t smp[20];
  size_t n = 0;
  int64_t now = wall_us(), minute = now - now % (60 * INT64_C(1000000));

#define GAUGE(name, v)                                                         \
  smp[n++] = (pm_sample_t){(name), NULL, 0, now, (double)(v), PM_SET}
#define COUNT(name, cur, rep)                                                  \
  do {                                                                         \
    if ((cur) > (rep))                                                         \
      smp[n++] = (pm_sample_t){                                                \
          (name), NULL, 0, minute, (double)((cur) - (rep)), PM_ADD};           \
  } while (0)

  pm_writer_get_stats(m->writer, &st);
  GAUGE("portalmetricsd.spool_records", m->src.len(m->src.ctx));
  GAUGE("portalmetricsd.db_connected", st.connected ? 1 : 0);
  COUNT("portalmetricsd.shipped", st.shipped, m->rep.shipped);
  COUNT("portalmetricsd.ship_retries", st.errors, m->rep.errors);
  COUNT("portalmetricsd.ship_refused", st.refused, m->rep.refused);
  COUNT("portalmetricsd.dead_lettered", st.dead_lettered, m->rep.dead_lettered);
  if (m->spool) {
    int64_t oldest = pm_spool_oldest_ts(m->spool);
    pm_spool_stats(m->spool, &sp);
    GAUGE("portalmetricsd.spool_bytes", pm_spool_bytes(m->spool));
    GAUGE("portalmetricsd.spool_oldest_age_seconds",
          oldest && now > oldest ? (double)(now - oldest) / 1e6 : 0);
    COUNT("portalmetricsd.spool_quarantined", sp.quarantined,
          m->rep_spool.quarantined);
    COUNT("portalmetricsd.spool_fsync_failures", sp.fsync_failures,
          m->rep_spool.fsync_failures);
  }
  if (m->alerter) {
    pm_alerter_get_stats(m->alerter, &al);
    GAUGE("portalmetricsd.alert_leader", al.leader);
    GAUGE("portalmetricsd.targets_refused", al.refused_targets);
    COUNT("portalmetricsd.alert_events", al.events, m->rep_alert.events);
    COUNT("portalmetricsd.alert_deliveries", al.delivered,
          m->rep_alert.delivered);
    COUNT("portalmetricsd.alert_delivery_errors", al.delivery_errors,
          m->rep_alert.delivery_errors);
    COUNT("portalmetricsd.alert_deliveries_abandoned", al.abandoned,
          m->rep_alert.abandoned);
  }
#undef GAUGE
#undef COUNT
  /* A busy spool keeps the deltas for the next report. */
  if (pm_instance_emit_internal(m->inst, smp, n) == 0) {
    m->rep = st;
    m->rep_spool = sp;
    m->rep_alert = al;
  }
}

/* Every second: end a backpressure episode promptly; every ten: report. */
static void on_timer(uv_timer_t *t) {
  pm_selfmetrics_t *m = t->data;
  pm_host_busy_check(m->ctx, m->src.full(m->src.ctx));
  if (++m->ticks % REPORT_TICKS == 0)
    report(m);
}

pm_selfmetrics_t *pm_selfmetrics_new(uv_loop_t *loop, pm_host_ctx_t *ctx,
                                     pm_writer_t *writer, pm_spool_t *spool,
                                     const pm_source_t *src) {
  pm_selfmetrics_t *m = calloc(1, sizeof(*m));
  pm_collector_conf_t conf = {.name = "portalmetricsd", .max_series = SIZE_MAX};

  if (!m)
    return NULL;
  m->inst = pm_instance_new_internal(ctx, &conf);
  if (!m->inst) {
    free(m);
    return NULL;
  }
  m->writer = writer;
  m->spool = spool;
  m->ctx = ctx;
  m->src = *src;
  uv_timer_init(loop, &m->timer);
  m->timer.data = m;
  uv_timer_start(&m->timer, on_timer, TICK_MS, TICK_MS);
  return m;
}

void pm_selfmetrics_set_alerter(pm_selfmetrics_t *m, pm_alerter_t *a) {
  m->alerter = a;
}

static void on_closed(uv_handle_t *h) {
  pm_selfmetrics_t *m = h->data;
  if (m->stop_cb)
    m->stop_cb(m->stop_arg);
}

void pm_selfmetrics_stop(pm_selfmetrics_t *m, void (*cb)(void *), void *arg) {
  report(m);
  m->stop_cb = cb;
  m->stop_arg = arg;
  uv_close((uv_handle_t *)&m->timer, on_closed);
}

void pm_selfmetrics_free(pm_selfmetrics_t *m) {
  if (!m)
    return;
  pm_instance_release(m->inst, NULL);
  free(m);
}

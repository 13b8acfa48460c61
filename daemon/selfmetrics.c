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
  pm_source_t src;
  pm_writer_stats_t rep; /* what was reported already */
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
  pm_sample_t smp[8];
  size_t n = 0;
  int64_t now = wall_us(), minute = now - now % (60 * INT64_C(1000000));

  pm_writer_get_stats(m->writer, &st);
  smp[n++] = (pm_sample_t){"portalmetricsd.spool_records", NULL,  0, now,
                           (double)m->src.len(m->src.ctx), PM_SET};
  smp[n++] = (pm_sample_t){"portalmetricsd.db_connected", NULL,  0, now,
                           st.connected ? 1 : 0,          PM_SET};
  if (st.shipped > m->rep.shipped)
    smp[n++] = (pm_sample_t){"portalmetricsd.shipped",
                             NULL,
                             0,
                             minute,
                             (double)(st.shipped - m->rep.shipped),
                             PM_ADD};
  if (st.errors > m->rep.errors)
    smp[n++] =
        (pm_sample_t){"portalmetricsd.ship_retries",       NULL,  0, minute,
                      (double)(st.errors - m->rep.errors), PM_ADD};
  if (st.refused > m->rep.refused)
    smp[n++] =
        (pm_sample_t){"portalmetricsd.ship_refused",         NULL,  0, minute,
                      (double)(st.refused - m->rep.refused), PM_ADD};
  /* A busy queue keeps the deltas for the next report. */
  if (pm_instance_emit_internal(m->inst, smp, n) == 0)
    m->rep = st;
}

/* Every second: end a backpressure episode promptly; every ten: report. */
static void on_timer(uv_timer_t *t) {
  pm_selfmetrics_t *m = t->data;
  pm_host_busy_check(m->ctx, m->src.full(m->src.ctx));
  if (++m->ticks % REPORT_TICKS == 0)
    report(m);
}

pm_selfmetrics_t *pm_selfmetrics_new(uv_loop_t *loop, pm_host_ctx_t *ctx,
                                     pm_writer_t *writer,
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
  m->ctx = ctx;
  m->src = *src;
  uv_timer_init(loop, &m->timer);
  m->timer.data = m;
  uv_timer_start(&m->timer, on_timer, TICK_MS, TICK_MS);
  return m;
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

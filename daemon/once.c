/* --once --stdout. The samples travel the daemon's own path (validation,
 * series registry, queue) and only the last step differs: the loop
 * prints them instead of shipping them. */
#include "once.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "host.h"
#include "log.h"
#include "pool.h"
#include "queue.h"

typedef struct once {
  uv_loop_t loop;
  pm_queue_t *queue;
  pm_pool_t *pool;
  uint64_t printed_seq;
  int running;
  int failed;
} once_t;

typedef struct run {
  once_t *o;
  pm_instance_t *inst;
  uv_timer_t deadline;
  int rc;
  int done;
} run_t;

static void print_ts(int64_t us, char *buf, size_t len) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%06" PRId64 "Z", us % 1000000);
}

static void on_ready(void *arg) {
  once_t *o = arg;
  pm_rec_t recs[256];
  size_t n;
  char ts[64];

  while ((n = pm_queue_read(o->queue, o->printed_seq, recs, 256)) > 0) {
    for (size_t i = 0; i < n; i++) {
      const pm_series_t *s = recs[i].series;
      json_t *labels = json_loads(s->labels_json, 0, NULL);
      print_ts(recs[i].ts_us, ts, sizeof(ts));
      json_t *line =
          json_pack("{s:s, s:o, s:s, s:f, s:s}", "metric", s->metric, "labels",
                    labels ? labels : json_object(), "ts", ts, "value",
                    recs[i].value, "kind", s->kind == PM_SET ? "set" : "add");
      char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
      if (text)
        printf("%s\n", text);
      free(text);
      json_decref(line);
    }
    o->printed_seq = recs[n - 1].seq;
    pm_queue_ack(o->queue, o->printed_seq);
  }
  fflush(stdout);
}

static void run_work(void *arg) {
  run_t *r = arg;
  r->rc = r->inst->lib->desc.collect(r->inst->self, r->inst);
}

static void on_timer_closed(uv_handle_t *h) {
  (void)h;
}

static void run_after(void *arg, int status) {
  run_t *r = arg;
  if (!r->done) {
    r->done = 1;
    r->o->running--;
    int rc = status ? status : r->rc;
    if (rc != 0) {
      pm_log(PM_LOG_ERROR, r->inst->name, r->inst->lib->name,
             "collect failed: %s", pm_strerror(rc));
      r->o->failed = 1;
    }
    uv_close((uv_handle_t *)&r->deadline, on_timer_closed);
  }
}

static void on_deadline(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->done)
    return;
  atomic_store(&r->inst->abandoned, 1);
  pm_log(PM_LOG_ERROR, r->inst->name, r->inst->lib->name,
         "collect passed its deadline: abandoned");
  r->done = -1; /* hung: its thread still holds r */
  r->o->running--;
  r->o->failed = 1;
  uv_close((uv_handle_t *)&r->deadline, on_timer_closed);
}

static int sink(void *ctx, pm_rec_t *recs, size_t n, const pm_sink_key_t *key,
                pm_done_cb done, void *arg) {
  (void)key; /* one run: no retransmissions to recognise */
  return pm_queue_push(ctx, recs, n, done, arg);
}

static void on_closed(void *arg) {
  (void)arg;
}

int pm_once_run(pm_plan_t *plan) {
  once_t o = {0};
  pm_host_ctx_t ctx = {0};
  run_t *runs = calloc(plan->n ? plan->n : 1, sizeof(*runs));
  int hung = 0;

  uv_loop_init(&o.loop);
  ctx.loop = &o.loop;
  ctx.series = pm_series_registry_new();
  o.queue = pm_queue_new(&o.loop, 1u << 20, on_ready, &o);
  o.pool = pm_pool_new(&o.loop, plan->n ? (unsigned)plan->n : 1);
  ctx.sink = sink;
  ctx.sink_ctx = o.queue;
  ctx.timezone = plan->cfg->timezone;
  ctx.max_sample_age_us = plan->cfg->max_sample_age_us;
  if (!runs || !ctx.series || !o.queue || !o.pool) {
    pm_error("out of memory");
    exit(1);
  }

  for (size_t i = 0; i < plan->n; i++) {
    pm_plan_item_t *it = &plan->items[i];
    run_t *r = &runs[i];
    if (it->lib->desc.mode != PM_POLL) {
      pm_log(PM_LOG_NOTICE, it->conf->name, it->lib->name,
             "listener collector skipped by --once");
      continue;
    }
    r->o = &o;
    r->inst = pm_instance_new(&ctx, it->conf, it->lib, it->settings);
    it->settings = NULL;
    if (!r->inst || pm_instance_create(r->inst) != 0) {
      o.failed = 1;
      continue;
    }
    atomic_store(&r->inst->deadline_mono_us,
                 (int64_t)(uv_hrtime() / 1000) + it->conf->timeout_us);
    uv_timer_init(&o.loop, &r->deadline);
    r->deadline.data = r;
    uv_timer_start(&r->deadline, on_deadline,
                   (uint64_t)(it->conf->timeout_us / 1000), 0);
    if (pm_pool_submit(o.pool, run_work, run_after, r) != 0) {
      o.failed = 1;
      r->done = 1;
      uv_close((uv_handle_t *)&r->deadline, on_timer_closed);
      continue;
    }
    o.running++;
  }
  while (o.running > 0 && uv_run(&o.loop, UV_RUN_ONCE))
    ;
  on_ready(&o);

  for (size_t i = 0; i < plan->n; i++) {
    if (runs[i].done == -1)
      hung = 1;
    else if (runs[i].inst)
      pm_instance_release(runs[i].inst, plan->loader);
  }
  pm_pool_shutdown(o.pool, on_closed, NULL);
  pm_queue_close(o.queue, on_closed, NULL);
  uv_run(&o.loop, UV_RUN_DEFAULT);
  on_ready(&o);
  if (hung) {
    /* A thread still runs plugin code: exit without unloading it. */
    fflush(stdout);
    _exit(1);
  }
  pm_pool_free(o.pool);
  pm_queue_free(o.queue);
  pm_series_registry_free(ctx.series);
  uv_loop_close(&o.loop);
  free(runs);
  pm_plan_free(plan);
  return o.failed ? 1 : 0;
}

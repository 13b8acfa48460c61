/* Collectors over time. Each collector owns two timers (next run,
 * deadline) and at most one run in flight on the pool. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "log.h"

#define HEALTH_INTERVAL_MS 10000
#define BACKOFF_CAP 4 /* failing collectors wait at most 4 intervals */

typedef struct collector {
  pm_scheduler_t *s;
  const pm_collector_conf_t *conf; /* in s->plan; NULL once stopping */
  char *name;
  int64_t interval_us, timeout_us;
  int listener;
  pm_instance_t *inst;
  pm_instance_t *health;
  uv_timer_t timer, deadline;
  int handles; /* open uv handles */

  int running;   /* a collect is on the pool */
  int started;   /* listener: start succeeded */
  int stopping;  /* stop requested */
  int lstopping; /* listener: waiting for stopped() */
  unsigned failures;
  uint64_t run_start_us; /* uv_hrtime based */
  int collect_rc;

  /* Health, loop thread. `rep_*` is what was reported already. */
  uint64_t runs, rep_runs;
  uint64_t errors[PM_REASONS], rep_errors[PM_REASONS];
  uint64_t skipped_overlap, rep_skipped_overlap;
  uint64_t skipped_busy, rep_skipped_busy;
  uint64_t rep_emitted, rep_late, rep_dups, rep_busy, rep_refused[PM_REASONS];
  double last_duration_s;
  int duration_fresh;
  int64_t last_success_us, rep_last_success_us;

  struct collector *next;
} collector_t;

struct pm_scheduler {
  uv_loop_t *loop;
  pm_host_ctx_t *ctx;
  pm_loader_t *loader;
  pm_pool_t *pool;
  pm_source_t src; /* ctx NULL: none */
  pm_plan_t *plan;
  collector_t *running;  /* live collectors */
  collector_t *retiring; /* stopping, waiting for their run or handles */
  uv_timer_t health_timer, grace_timer;
  uint64_t rng;
  int stopping;
  int handles;
  void (*stop_cb)(void *);
  void *stop_arg;
};

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: jitter needs spread, not secrecy. */
static uint64_t rnd(pm_scheduler_t *s) {
  uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A delay of d with +-frac random spread, in ms, at least 1. */
static uint64_t jittered_ms(pm_scheduler_t *s, int64_t d_us, double frac) {
  double f = 1.0 + frac * ((double)(rnd(s) % 2001) / 1000.0 - 1.0);
  double ms = (double)d_us / 1000.0 * f;
  return ms < 1 ? 1 : (uint64_t)ms;
}

static void check_stopped(pm_scheduler_t *s);
static void collector_try_free(collector_t *c);
static void schedule(collector_t *c, uint64_t delay_ms);

/* ------------------------------------------------------------------ */
/* Health */

static int64_t minute_floor(int64_t us) {
  return us - us % (60 * INT64_C(1000000));
}

static void report_health(collector_t *c) {
  pm_sample_t smp[4 + 3 * PM_REASONS];
  pm_label_t reason[3 * PM_REASONS];
  size_t n = 0, nr = 0;
  int64_t now = wall_us(), bucket = minute_floor(now);
  uint64_t emitted = atomic_load(&c->inst->emitted);
  uint64_t late = atomic_load(&c->inst->late);
  uint64_t dups = atomic_load(&c->inst->duplicates);
  uint64_t busy = atomic_load(&c->inst->busy);
  uint64_t refused[PM_REASONS];

  /* ADD evaluates `lab` once: REASON has a side effect. */
#define ADD(m, v, lab)                                                         \
  do {                                                                         \
    const pm_label_t *l_ = (lab);                                              \
    smp[n++] =                                                                 \
        (pm_sample_t){(m), l_, l_ ? 1 : 0, bucket, (double)(v), PM_ADD};       \
  } while (0)
#define REASON(name)                                                           \
  (reason[nr] = (pm_label_t){"reason", (name)}, &reason[nr++])

  if (c->runs > c->rep_runs)
    ADD("portalmetricsd.collect_runs", c->runs - c->rep_runs, NULL);
  if (emitted > c->rep_emitted)
    ADD("portalmetricsd.samples_emitted", emitted - c->rep_emitted, NULL);
  if (busy > c->rep_busy)
    ADD("portalmetricsd.emits_busy", busy - c->rep_busy, NULL);
  if (dups > c->rep_dups)
    ADD("portalmetricsd.emits_duplicate", dups - c->rep_dups, NULL);
  if (late > c->rep_late)
    ADD("portalmetricsd.samples_refused", late - c->rep_late, REASON("late"));
  for (int i = 1; i < PM_REASONS; i++) {
    refused[i] = atomic_load(&c->inst->refused[i]);
    if (refused[i] > c->rep_refused[i])
      ADD("portalmetricsd.samples_refused", refused[i] - c->rep_refused[i],
          REASON(pm_errname(-i)));
    if (c->errors[i] > c->rep_errors[i])
      ADD("portalmetricsd.collect_errors", c->errors[i] - c->rep_errors[i],
          REASON(pm_errname(-i)));
  }
  if (c->skipped_overlap > c->rep_skipped_overlap)
    ADD("portalmetricsd.runs_skipped",
        c->skipped_overlap - c->rep_skipped_overlap, REASON("overlap"));
  if (c->skipped_busy > c->rep_skipped_busy)
    ADD("portalmetricsd.runs_skipped", c->skipped_busy - c->rep_skipped_busy,
        REASON("busy"));
  if (c->duration_fresh)
    smp[n++] = (pm_sample_t){"portalmetricsd.collect_duration_seconds",
                             NULL,
                             0,
                             now,
                             c->last_duration_s,
                             PM_SET};
  /* Only when it moved: the series then reads as the list of successes. */
  if (c->last_success_us != c->rep_last_success_us)
    smp[n++] =
        (pm_sample_t){"portalmetricsd.collect_last_success", NULL,  0, now,
                      (double)c->last_success_us / 1e6,      PM_SET};
#undef ADD
#undef REASON

  if (n == 0)
    return;
  /* Only what was taken counts as reported: a busy queue keeps the
   * deltas for the next report. */
  if (pm_instance_emit_internal(c->health, smp, n) != 0)
    return;
  c->rep_runs = c->runs;
  c->rep_emitted = emitted;
  c->rep_late = late;
  c->rep_dups = dups;
  c->rep_busy = busy;
  for (int i = 1; i < PM_REASONS; i++) {
    c->rep_refused[i] = refused[i];
    c->rep_errors[i] = c->errors[i];
  }
  c->rep_skipped_overlap = c->skipped_overlap;
  c->rep_skipped_busy = c->skipped_busy;
  c->duration_fresh = 0;
  c->rep_last_success_us = c->last_success_us;
}

static void on_health(uv_timer_t *t) {
  pm_scheduler_t *s = t->data;
  for (collector_t *c = s->running; c; c = c->next)
    report_health(c);
}

/* ------------------------------------------------------------------ */
/* Poll runs */

static void run_work(void *arg) {
  collector_t *c = arg;
  c->collect_rc = c->inst->lib->desc.collect(c->inst->self, c->inst);
}

static void run_after(void *arg, int status) {
  collector_t *c = arg;
  pm_scheduler_t *s = c->s;
  uint64_t delay_ms;
  int rc = status ? status : c->collect_rc;
  int abandoned = atomic_load(&c->inst->abandoned);

  c->running = 0;
  atomic_store(&c->inst->deadline_mono_us, 0);
  atomic_store(&c->inst->abandoned, 0);
  if (c->handles > 1)
    uv_timer_stop(&c->deadline);
  if (c->stopping) {
    collector_try_free(c);
    check_stopped(s);
    return;
  }
  c->runs++;
  c->last_duration_s = (double)(uv_hrtime() - c->run_start_us) / 1e9;
  c->duration_fresh = 1;
  if (abandoned) {
    /* Counted as a timeout when the deadline passed; the schedule was
     * kept then too. Now the thread is free again. */
    pm_log(PM_LOG_NOTICE, c->name, c->inst->lib->name,
           "abandoned run returned after %.1f s", c->last_duration_s);
    return;
  }
  if (rc == 0) {
    if (c->failures)
      pm_log(PM_LOG_NOTICE, c->name, c->inst->lib->name,
             "collect succeeded again after %u failed runs", c->failures);
    c->failures = 0;
    c->last_success_us = wall_us();
    delay_ms = jittered_ms(s, c->interval_us, 0.02);
  } else {
    if (rc > 0 || rc < PM_ERR_LAST)
      rc = PM_EINTERNAL;
    c->errors[-rc]++;
    c->failures++;
    /* Back off: 1, 2, 4 intervals, capped; logged once per episode. */
    unsigned mult = c->failures >= 3 ? BACKOFF_CAP : 1u << (c->failures - 1);
    delay_ms = jittered_ms(s, c->interval_us * mult, 0.2);
    if (c->failures == 1)
      pm_log(PM_LOG_WARNING, c->name, c->inst->lib->name,
             "collect failed: %s; retrying with backoff", pm_strerror(rc));
  }
  schedule(c, delay_ms);
}

static void on_deadline(uv_timer_t *t) {
  collector_t *c = t->data;
  if (!c->running)
    return;
  /* The thread cannot be taken back, but its samples can be refused and
   * the schedule kept: the next run starts on time if a thread is free,
   * and is skipped as overlapping while this one still runs. */
  atomic_store(&c->inst->abandoned, 1);
  c->errors[-PM_ETIMEOUT]++;
  c->failures++;
  pm_log(PM_LOG_WARNING, c->name, c->inst->lib->name,
         "collect passed its %.1f s deadline: abandoned, its late samples "
         "are dropped",
         (double)c->timeout_us / 1e6);
  schedule(c, jittered_ms(c->s, c->interval_us, 0.02));
}

static void on_timer(uv_timer_t *t) {
  collector_t *c = t->data;
  pm_scheduler_t *s = c->s;
  int rc;

  if (c->stopping)
    return;
  if (c->running) {
    c->skipped_overlap++;
    schedule(c, jittered_ms(s, c->interval_us, 0.02));
    return;
  }
  if (s->src.ctx && s->src.full(s->src.ctx)) {
    c->skipped_busy++;
    pm_host_busy(s->ctx, 1);
    schedule(c, jittered_ms(s, c->interval_us, 0.02));
    return;
  }
  atomic_store(&c->inst->abandoned, 0);
  atomic_store(&c->inst->deadline_mono_us,
               (int64_t)(uv_hrtime() / 1000) + c->timeout_us);
  c->run_start_us = uv_hrtime();
  rc = pm_pool_submit(s->pool, run_work, run_after, c);
  if (rc != 0) {
    pm_log(PM_LOG_ERROR, c->name, NULL, "cannot start a run: %s",
           pm_strerror(rc));
    schedule(c, jittered_ms(s, c->interval_us, 0.2));
    return;
  }
  c->running = 1;
  uv_timer_start(&c->deadline, on_deadline, (uint64_t)(c->timeout_us / 1000),
                 0);
}

static void schedule(collector_t *c, uint64_t delay_ms) {
  uv_timer_start(&c->timer, on_timer, delay_ms, 0);
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

static void on_handle_closed(uv_handle_t *h) {
  collector_t *c = h->data;
  pm_scheduler_t *s = c->s; /* c may be freed below */
  c->handles--;
  collector_try_free(c);
  check_stopped(s);
}

static void unlink_from(collector_t **list, collector_t *c) {
  for (; *list; list = &(*list)->next) {
    if (*list == c) {
      *list = c->next;
      return;
    }
  }
}

/* Freed when nothing refers to it any more: no run in flight (a hung run
 * keeps it for ever), a listener stopped, its handles closed. */
static void collector_try_free(collector_t *c) {
  if (!c->stopping || c->running || c->lstopping || c->handles > 0)
    return;
  unlink_from(&c->s->retiring, c);
  /* The final report comes only now that no run is in flight: an emit
   * that passed its stop check before the stop is counted too. */
  if (c->inst && c->health)
    report_health(c);
  if (c->inst)
    pm_instance_release(c->inst, c->s->loader);
  if (c->health)
    pm_instance_release(c->health, c->s->loader);
  free(c->name);
  free(c);
}

static void on_listener_stopped(pm_instance_t *inst, void *arg) {
  collector_t *c = arg;
  pm_scheduler_t *s = c->s; /* c may be freed below */
  (void)inst;
  c->lstopping = 0;
  collector_try_free(c);
  check_stopped(s);
}

/* Move c from running to retiring and begin its stop. */
static void collector_stop(collector_t *c) {
  pm_scheduler_t *s = c->s;

  unlink_from(&s->running, c);
  c->next = s->retiring;
  s->retiring = c;
  c->stopping = 1;
  c->conf = NULL;
  atomic_store(&c->inst->stopping, 1);
  if (c->listener && c->started) {
    c->lstopping = 1;
    c->inst->on_stopped = on_listener_stopped;
    c->inst->on_stopped_arg = c;
    c->inst->lib->desc.stop(c->inst->self, c->inst);
  }
  if (c->handles >= 1 && !uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  if (c->handles >= 2 && !uv_is_closing((uv_handle_t *)&c->deadline))
    uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
  collector_try_free(c);
}

static collector_t *collector_start(pm_scheduler_t *s, pm_plan_item_t *it) {
  collector_t *c = calloc(1, sizeof(*c));
  const pm_collector_conf_t *conf = it->conf;
  int rc;

  if (!c || !(c->name = strdup(conf->name))) {
    free(c);
    pm_error("collector \"%s\": out of memory", conf->name);
    return NULL;
  }
  c->s = s;
  c->conf = conf;
  c->interval_us = conf->interval_us;
  c->timeout_us = conf->timeout_us;
  c->listener = it->lib->desc.mode == PM_LISTENER;
  c->inst = pm_instance_new(s->ctx, conf, it->lib, it->settings);
  it->settings = NULL; /* taken, even on failure */
  c->health = pm_instance_new_internal(s->ctx, conf);
  c->stopping = 1; /* until fully started: try_free may free it */
  if (!c->inst || !c->health) {
    pm_error("collector \"%s\": out of memory", conf->name);
    goto fail;
  }
  if ((rc = pm_instance_create(c->inst)) != 0)
    goto fail;
  if (c->listener) {
    rc = c->inst->lib->desc.start(c->inst->self, c->inst);
    if (rc != 0) {
      pm_log(PM_LOG_ERROR, c->name, it->lib->name,
             "listener could not start: %s", pm_strerror(rc));
      goto fail;
    }
    c->started = 1;
  } else {
    uv_timer_init(s->loop, &c->timer);
    uv_timer_init(s->loop, &c->deadline);
    c->timer.data = c->deadline.data = c;
    c->handles = 2;
    /* Spread first runs so collectors started together do not poll their
     * peers in lockstep. */
    int64_t spread = c->interval_us / 2;
    if (spread > 10 * INT64_C(1000000))
      spread = 10 * INT64_C(1000000);
    schedule(c, (uint64_t)(rnd(s) % (uint64_t)(spread / 1000 + 1)));
  }
  c->stopping = 0;
  c->next = s->running;
  s->running = c;
  pm_log(PM_LOG_INFO, c->name, it->lib->name, "started (%s)",
         c->listener ? "listener" : "poll");
  return c;
fail:
  if (c->inst)
    pm_instance_release(c->inst, s->loader);
  if (c->health)
    pm_instance_release(c->health, s->loader);
  free(c->name);
  free(c);
  return NULL;
}

pm_scheduler_t *pm_scheduler_new(uv_loop_t *loop, pm_host_ctx_t *ctx,
                                 pm_loader_t *loader, pm_pool_t *pool,
                                 const pm_source_t *src) {
  pm_scheduler_t *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->loop = loop;
  s->ctx = ctx;
  s->loader = loader;
  s->pool = pool;
  if (src)
    s->src = *src;
  s->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)s;
  uv_timer_init(loop, &s->health_timer);
  uv_timer_init(loop, &s->grace_timer);
  s->health_timer.data = s->grace_timer.data = s;
  s->handles = 2;
  uv_timer_start(&s->health_timer, on_health, HEALTH_INTERVAL_MS,
                 HEALTH_INTERVAL_MS);
  return s;
}

static collector_t *find(collector_t *list, const char *name) {
  for (; list; list = list->next)
    if (strcmp(list->name, name) == 0)
      return list;
  return NULL;
}

int pm_scheduler_apply(pm_scheduler_t *s, pm_plan_t *plan) {
  collector_t *c, *next;
  int failed = 0;

  /* Stop what went away or changed. A changed collector's old instance
   * may be hung; its new one starts anyway. */
  for (c = s->running; c; c = next) {
    next = c->next;
    const pm_collector_conf_t *nc = pm_config_collector(plan->cfg, c->name);
    if (!nc || !pm_collector_conf_equal(c->conf, nc)) {
      pm_log(PM_LOG_INFO, c->name, NULL, "%s",
             nc ? "changed: restarting" : "removed: stopping");
      collector_stop(c);
    } else {
      c->conf = nc; /* the old plan goes away below */
    }
  }
  for (size_t i = 0; i < plan->n; i++) {
    if (find(s->running, plan->items[i].conf->name))
      continue;
    if (!collector_start(s, &plan->items[i]))
      failed++;
  }
  pm_plan_free(s->plan);
  s->plan = plan;
  return failed;
}

size_t pm_scheduler_count(const pm_scheduler_t *s) {
  size_t n = 0;
  for (collector_t *c = s->running; c; c = c->next)
    n++;
  return n;
}

static void on_sched_closed(uv_handle_t *h) {
  pm_scheduler_t *s = h->data;
  s->handles--;
  if (s->handles == 0 && s->stop_cb) {
    void (*cb)(void *) = s->stop_cb;
    s->stop_cb = NULL;
    cb(s->stop_arg);
  }
}

static void finish_stop(pm_scheduler_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->health_timer)) {
    uv_close((uv_handle_t *)&s->health_timer, on_sched_closed);
    uv_close((uv_handle_t *)&s->grace_timer, on_sched_closed);
  }
}

static void check_stopped(pm_scheduler_t *s) {
  if (!s->stopping)
    return;
  /* Collectors whose run still hangs stay in retiring with running set;
   * the grace timer gives up on them. */
  for (collector_t *c = s->retiring; c; c = c->next)
    if (c->lstopping || c->handles > 0 || c->running)
      return;
  finish_stop(s);
}

static void on_grace(uv_timer_t *t) {
  pm_scheduler_t *s = t->data;
  for (collector_t *c = s->retiring; c; c = c->next)
    if (c->running)
      pm_log(PM_LOG_WARNING, c->name, NULL,
             "still running at shutdown: abandoned");
  finish_stop(s);
}

void pm_scheduler_stop(pm_scheduler_t *s, int64_t grace_us,
                       void (*cb)(void *arg), void *arg) {
  s->stopping = 1;
  s->stop_cb = cb;
  s->stop_arg = arg;
  uv_timer_stop(&s->health_timer);
  while (s->running)
    collector_stop(s->running);
  uv_timer_start(&s->grace_timer, on_grace, (uint64_t)(grace_us / 1000), 0);
  check_stopped(s);
}

void pm_scheduler_free(pm_scheduler_t *s) {
  if (!s)
    return;
  /* Hung collectors are left allocated: their thread may still use them. */
  pm_plan_free(s->plan);
  free(s);
}

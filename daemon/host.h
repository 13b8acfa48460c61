/*
 * Plugin instances and the host function table (pm_host_t): emit and its
 * validation, settings, log, time, state directory. Layer: scheduler and
 * loader.
 */
#ifndef PM_HOST_H
#define PM_HOST_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>
#include <portalmetrics/plugin.h>
#include "config.h"
#include "dedup.h"
#include "loader.h"
#include "log.h"
#include "queue.h"
#include "series.h"

/* An emit's idempotency key, as the sink sees it. */
typedef struct pm_sink_key {
  const void *key;
  size_t len;
  const char *scope; /* the collector's name: two collectors never share keys */
} pm_sink_key_t;

/*
 * Where accepted records go: the spool's append, or a queue's push (for
 * --once). Same contract as pm_queue_push, plus the key (NULL: none):
 * returns 1 for a duplicate (nothing taken; done fires after the
 * original's completion). A sink without a key index of its own gets
 * keys checked by the host against ctx->dedup instead (key then NULL).
 */
typedef int (*pm_sink_fn)(void *ctx, pm_rec_t *recs, size_t n,
                          const pm_sink_key_t *key, pm_done_cb done,
                          void *done_arg);

/* What every instance shares. Owned by main; outlives every instance. */
typedef struct pm_host_ctx {
  uv_loop_t *loop;
  pm_series_registry_t *series;
  pm_sink_fn sink;
  void *sink_ctx;
  const char *timezone;
  const char *state_dir; /* NULL: no state (--once) */
  /* Idempotency keys checked by the host, for sinks that keep no key
   * index; NULL: keys go to the sink. */
  pm_dedup_t *dedup;
  int64_t max_sample_age_us;

  /* A backpressure episode (the sink said busy): logged when it starts
   * and, with its totals, when it ends (pm_host_busy_check). */
  atomic_int busy_active;
  atomic_int_fast64_t busy_since_us;
  atomic_uint_fast64_t busy_emits; /* emits refused busy in the episode */
  atomic_uint_fast64_t busy_runs;  /* poll runs skipped in the episode */
} pm_host_ctx_t;

/* Any thread: the sink refused an emit (run = 0) or a poll run was
 * skipped (run = 1) because it is full. Logs the episode's start once. */
void pm_host_busy(pm_host_ctx_t *ctx, int run);
/* Loop thread, periodically: full says whether the sink is still full;
 * when it is not, an episode in progress ends and its totals are logged. */
void pm_host_busy_check(pm_host_ctx_t *ctx, int full);

/* Refusals by reason: index -code of the PM_E* error. */
#define PM_REASONS (-PM_ERR_LAST + 1)

struct pm_instance {
  pm_host_ctx_t *ctx;
  char *name;
  pm_plugin_lib_t *lib;
  pm_label_t *labels; /* the collector's labels, owned */
  size_t n_labels;
  size_t max_series;
  pm_setting_t *settings; /* owned */
  void *self;             /* the plugin's state, after create */
  int created;
  int internal; /* the daemon's own health emitter: may use portalmetricsd.* */

  atomic_int stopping;  /* set once: stop or release began */
  atomic_int abandoned; /* the running collect passed its deadline */
  atomic_int_fast64_t deadline_mono_us; /* 0: none */

  /* Counters, read and reset by the scheduler's health report. */
  atomic_uint_fast64_t emitted;
  atomic_uint_fast64_t late;       /* samples of abandoned runs, dropped */
  atomic_uint_fast64_t duplicates; /* emits recognised by their key */
  atomic_uint_fast64_t busy;       /* emits refused: the sink was full */
  atomic_uint_fast64_t refused[PM_REASONS];

  atomic_uint pending; /* completions not yet delivered */
  /* Loop thread only. */
  int released;        /* destroy as soon as pending reaches 0 */
  pm_loader_t *loader; /* to put lib back, set by release */
  void (*on_stopped)(pm_instance_t *inst, void *arg);
  void *on_stopped_arg;

  uv_mutex_t dir_mu; /* guards dir and refuse_rl */
  char *dir;         /* state_dir()'s answer, made on first use */
  pm_ratelimit_t
      refuse_rl; /* a plugin refused on every run logs once a minute */
};

extern const pm_host_t pm_host_table;

/* A new instance of lib for collector conf; takes a reference on lib and
 * ownership of settings (even on failure). Does not call create. */
pm_instance_t *pm_instance_new(pm_host_ctx_t *ctx,
                               const pm_collector_conf_t *conf,
                               pm_plugin_lib_t *lib, pm_setting_t *settings);

/* The daemon's own emitter for a collector's health series: same name and
 * labels, may emit portalmetricsd.*, no plugin. */
pm_instance_t *pm_instance_new_internal(pm_host_ctx_t *ctx,
                                        const pm_collector_conf_t *conf);

/* Call the plugin's create. Loop thread. */
int pm_instance_create(pm_instance_t *inst);

/* Loop thread. The owner is done with inst: no collect runs and a
 * listener has stopped. The plugin's destroy runs, and inst is freed,
 * once every completion it is owed has been delivered. The lib reference
 * is put back through loader. */
void pm_instance_release(pm_instance_t *inst, pm_loader_t *loader);

/* Emit as the daemon (health samples): like host->emit, never counted in
 * the instance's own counters. */
int pm_instance_emit_internal(pm_instance_t *inst, const pm_sample_t *samples,
                              size_t n);

#endif

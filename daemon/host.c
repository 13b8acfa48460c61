/* Plugin instances and what the host offers them. emit is the hot path:
 * validate, intern the series, push to the sink, all without touching
 * the loop thread. */
#include "host.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "catalog.h"
#include "errors.h"
#include "log.h"
#include "sample.h"
#include "settings.h"

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */

typedef struct completion {
  pm_instance_t *inst;
  pm_durable_cb cb;
  void *arg;
} completion_t;

static void instance_finish(pm_instance_t *inst);

static void on_done(void *arg, int status) {
  completion_t *c = arg;
  pm_instance_t *inst = c->inst;

  if (c->cb)
    c->cb(inst, c->arg, status);
  free(c);
  if (atomic_fetch_sub(&inst->pending, 1) == 1 && inst->released)
    instance_finish(inst);
}

/* The metric's declared type, or NULL if this instance may not emit it. */
static const pm_metric_decl_t *metric_decl(const pm_instance_t *inst,
                                           const char *name) {
  const pm_metric_decl_t *d = pm_catalog_find(pm_canonical_metrics, name);
  if (d)
    return d;
  if (inst->internal)
    return pm_catalog_find(pm_daemon_metrics, name);
  return inst->lib ? pm_catalog_find(inst->lib->desc.metrics, name) : NULL;
}

static void log_refusal(pm_instance_t *inst, size_t i, const pm_sample_t *s,
                        int rc) {
  uint64_t suppressed = 0;
  int ok;

  uv_mutex_lock(&inst->dir_mu);
  ok = pm_ratelimit_ok(&inst->refuse_rl, mono_us(), &suppressed);
  uv_mutex_unlock(&inst->dir_mu);
  if (!ok)
    return;
  if (suppressed)
    pm_log(PM_LOG_WARNING, inst->name, inst->lib ? inst->lib->name : NULL,
           "%" PRIu64 " more emits refused in the last minute (counted in "
           "portalmetricsd.samples_refused)",
           suppressed);
  /* Values of labels are not logged: a misbehaving plugin could have put
   * something there that must not reach a log. */
  pm_log(PM_LOG_WARNING, inst->name, inst->lib ? inst->lib->name : NULL,
         "emit refused at sample %zu (metric \"%.128s\"): %s", i,
         s && s->metric && pm_metric_name_valid(s->metric) ? s->metric
                                                           : "(invalid)",
         pm_strerror(rc));
}

/* Pure checks of one sample, nothing recorded: an emit is all or nothing,
 * so nothing may be interned before every sample passed. */
static int check_one(pm_instance_t *inst, const pm_sample_t *s, int64_t now,
                     pm_labelset_t *ls, int64_t *ts) {
  const pm_metric_decl_t *d;
  int rc;

  if (!s->metric || !pm_metric_name_valid(s->metric) ||
      !(d = metric_decl(inst, s->metric)))
    return PM_EMETRIC;
  if (s->kind != PM_SET && s->kind != PM_ADD)
    return PM_EINVAL;
  /* Summing increments of a level is meaningless. */
  if (d->type == PM_GAUGE && s->kind != PM_SET)
    return PM_EKIND;
  if (!isfinite(s->value))
    return PM_EVALUE;
  *ts = s->ts_us ? s->ts_us : now;
  if ((rc = pm_ts_check(*ts, now, inst->ctx->max_sample_age_us)) != 0)
    return rc;
  return pm_labelset_build(ls, inst->labels, inst->n_labels, s->labels,
                           s->n_labels, inst->name);
}

static int emit(pm_instance_t *inst, const pm_sample_t *samples, size_t n,
                const pm_emit_opts_t *opts, int internal) {
  pm_rec_t stackrecs[64], *recs = stackrecs;
  completion_t *c = NULL;
  int64_t now = wall_us();
  int rc = 0;
  size_t i;

  if (!inst || (n && !samples))
    return PM_EINVAL;
  if (!internal) {
    if (atomic_load(&inst->stopping) || atomic_load(&inst->abandoned)) {
      atomic_fetch_add(&inst->late, n);
      return PM_ESTOPPED;
    }
  }
  if (n > 64 && !(recs = malloc(n * sizeof(*recs))))
    return PM_ENOMEM;

  /* Check everything first, then intern: a refused emit leaves no series
   * behind to use up max_series or fix a kind. */
  for (i = 0; i < n; i++) {
    pm_labelset_t ls;
    if ((rc = check_one(inst, &samples[i], now, &ls, &recs[i].ts_us)) != 0)
      goto refused;
  }
  for (i = 0; i < n; i++) {
    pm_labelset_t ls;
    int64_t ts;
    check_one(inst, &samples[i], now, &ls, &ts);
    rc = pm_series_intern(inst->ctx->series, inst->name,
                          inst->internal ? SIZE_MAX : inst->max_series,
                          samples[i].metric, ls.l, ls.n, samples[i].kind,
                          &recs[i].series);
    if (rc != 0)
      goto refused;
    recs[i].value = samples[i].value;
  }

  pm_durable_cb cb = NULL;
  void *cbarg = NULL;
  const void *key = NULL;
  size_t keylen = 0;
  uint64_t keyhash[2];
  int dup = 0;
  if (opts && opts->size >= offsetof(pm_emit_opts_t, arg) + sizeof(opts->arg)) {
    cb = opts->on_durable;
    cbarg = opts->arg;
  }
  if (opts && opts->size >= offsetof(pm_emit_opts_t, idem_key_len) +
                                sizeof(opts->idem_key_len)) {
    key = opts->idem_key;
    keylen = opts->idem_key_len;
  }
  if (key && (keylen == 0 || keylen > 256)) {
    rc = PM_EINVAL;
    i = 0;
    goto refused;
  }
  if (key && inst->ctx->dedup) {
    dup = pm_dedup_reserve(inst->ctx->dedup, inst->name, key, keylen, now,
                           keyhash);
    if (dup < 0) {
      rc = dup;
      goto out;
    }
  }
  /* Every push carries a completion, even without a plugin callback, so
   * the instance is never freed while the sink still refers to it. */
  if (!(c = malloc(sizeof(*c)))) {
    rc = PM_ENOMEM;
    goto out;
  }
  *c = (completion_t){inst, cb, cbarg};
  /* Counted before the push: the completion may run on the loop thread
   * before push even returns here. */
  atomic_fetch_add(&inst->pending, 1);
  /* A duplicate pushes no records, only its completion: the queue
   * delivers completions in order, so it fires after the original's. */
  pm_sink_key_t sk = {key, keylen, inst->name};
  rc = inst->ctx->sink(inst->ctx->sink_ctx, recs, dup ? 0 : n,
                       key && !inst->ctx->dedup ? &sk : NULL, on_done, c);
  if (rc == 1) { /* the sink recognised the key */
    dup = 1;
    rc = 0;
  }
  if (rc != 0) {
    atomic_fetch_sub(&inst->pending, 1);
    free(c);
    if (key && inst->ctx->dedup && !dup)
      pm_dedup_cancel(inst->ctx->dedup, keyhash);
    if (rc == PM_EBUSY) {
      if (!internal) {
        atomic_fetch_add(&inst->busy, 1);
        pm_host_busy(inst->ctx, 0);
      }
    } else if (!internal) {
      atomic_fetch_add(&inst->refused[-rc], n);
    }
    goto out;
  }
  if (dup)
    atomic_fetch_add(&inst->duplicates, 1);
  else if (!internal)
    atomic_fetch_add(&inst->emitted, n);
out:
  if (recs != stackrecs)
    free(recs);
  return rc;
refused:
  if (!internal) {
    atomic_fetch_add(&inst->refused[-rc], n);
    log_refusal(inst, i, i < n ? &samples[i] : NULL, rc);
  }
  goto out;
}

void pm_host_busy(pm_host_ctx_t *ctx, int run) {
  int was = 0;

  atomic_fetch_add(run ? &ctx->busy_runs : &ctx->busy_emits, 1);
  if (atomic_compare_exchange_strong(&ctx->busy_active, &was, 1)) {
    atomic_store(&ctx->busy_since_us, mono_us());
    pm_warn("the spool is full: poll runs are skipped and listeners "
            "refused until the database takes samples again (counted in "
            "portalmetricsd.runs_skipped and portalmetricsd.emits_busy)");
  }
}

void pm_host_busy_check(pm_host_ctx_t *ctx, int full) {
  if (full || !atomic_load(&ctx->busy_active))
    return;
  int64_t secs = (mono_us() - atomic_load(&ctx->busy_since_us)) / 1000000;
  uint64_t emits = atomic_exchange(&ctx->busy_emits, 0);
  uint64_t runs = atomic_exchange(&ctx->busy_runs, 0);
  atomic_store(&ctx->busy_active, 0);
  pm_notice("the spool has room again after %" PRId64 " s: %" PRIu64
            " emits were refused busy and %" PRIu64
            " poll runs skipped in that time; nothing was dropped unseen",
            secs, emits, runs);
}

static int host_emit(pm_instance_t *inst, const pm_sample_t *samples, size_t n,
                     const pm_emit_opts_t *opts) {
  return emit(inst, samples, n, opts, 0);
}

int pm_instance_emit_internal(pm_instance_t *inst, const pm_sample_t *samples,
                              size_t n) {
  return emit(inst, samples, n, NULL, 1);
}

static void host_log(pm_instance_t *inst, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pm_logv(level, inst ? inst->name : NULL,
          inst && inst->lib ? inst->lib->name : NULL, fmt, ap);
  va_end(ap);
}

static int64_t host_now(pm_instance_t *inst) {
  (void)inst;
  return wall_us();
}

static const char *host_timezone(pm_instance_t *inst) {
  return inst->ctx->timezone;
}

static const char *host_state_dir(pm_instance_t *inst) {
  const char *dir;

  if (!inst->ctx->state_dir)
    return NULL;
  uv_mutex_lock(&inst->dir_mu);
  if (!inst->dir) {
    char *base = NULL, *path = NULL;
    if (asprintf(&base, "%s/collectors", inst->ctx->state_dir) >= 0 &&
        asprintf(&path, "%s/%s", base, inst->name) >= 0 &&
        (mkdir(base, 0750) == 0 || errno == EEXIST) &&
        (mkdir(path, 0750) == 0 || errno == EEXIST)) {
      inst->dir = path;
      path = NULL;
    } else {
      pm_log(PM_LOG_ERROR, inst->name, NULL,
             "cannot create the collector's state directory under %s: %s",
             inst->ctx->state_dir, strerror(errno));
    }
    free(base);
    free(path);
  }
  dir = inst->dir;
  uv_mutex_unlock(&inst->dir_mu);
  return dir;
}

static uv_loop_t *host_loop(pm_instance_t *inst) {
  return inst->lib && inst->lib->desc.mode == PM_LISTENER ? inst->ctx->loop
                                                          : NULL;
}

static int host_should_stop(pm_instance_t *inst) {
  int64_t dl;
  if (atomic_load(&inst->stopping) || atomic_load(&inst->abandoned))
    return 1;
  dl = atomic_load(&inst->deadline_mono_us);
  return dl != 0 && mono_us() >= dl;
}

static void host_stopped(pm_instance_t *inst) {
  if (inst->on_stopped) {
    void (*cb)(pm_instance_t *, void *) = inst->on_stopped;
    inst->on_stopped = NULL;
    cb(inst, inst->on_stopped_arg);
  }
}

static const pm_setting_t *host_settings(pm_instance_t *inst) {
  return inst->settings;
}

const pm_host_t pm_host_table = {
    .size = sizeof(pm_host_t),
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .emit = host_emit,
    .log = host_log,
    .now_us = host_now,
    .timezone = host_timezone,
    .state_dir = host_state_dir,
    .loop = host_loop,
    .should_stop = host_should_stop,
    .stopped = host_stopped,
    .strerror = pm_strerror,
    .settings = host_settings,
    .setting_get = pm_setting_get,
    .setting_count = pm_setting_count,
    .setting_at = pm_setting_at,
    .setting_key = pm_setting_key,
    .setting_string = pm_setting_string,
    .setting_int = pm_setting_int,
    .setting_float = pm_setting_float,
    .setting_bool = pm_setting_bool,
    .setting_duration = pm_setting_duration,
    .setting_size = pm_setting_size,
};

/* ------------------------------------------------------------------ */

static pm_instance_t *instance_alloc(pm_host_ctx_t *ctx,
                                     const pm_collector_conf_t *conf) {
  pm_instance_t *inst = calloc(1, sizeof(*inst));
  if (!inst)
    return NULL;
  inst->ctx = ctx;
  uv_mutex_init(&inst->dir_mu);
  inst->refuse_rl.interval_us = 60 * INT64_C(1000000);
  inst->max_series = conf->max_series;
  inst->name = strdup(conf->name);
  inst->labels =
      calloc(conf->n_labels ? conf->n_labels : 1, sizeof(*inst->labels));
  if (!inst->name || !inst->labels)
    goto fail;
  for (size_t i = 0; i < conf->n_labels; i++) {
    inst->labels[i].key = strdup(conf->labels[i].key);
    inst->labels[i].value = strdup(conf->labels[i].value);
    inst->n_labels++;
    if (!inst->labels[i].key || !inst->labels[i].value)
      goto fail;
  }
  return inst;
fail:
  inst->released = 1;
  instance_finish(inst);
  return NULL;
}

pm_instance_t *pm_instance_new(pm_host_ctx_t *ctx,
                               const pm_collector_conf_t *conf,
                               pm_plugin_lib_t *lib, pm_setting_t *settings) {
  pm_instance_t *inst = instance_alloc(ctx, conf);
  if (!inst) {
    pm_setting_free(settings);
    return NULL;
  }
  inst->lib = lib;
  lib->refs++;
  inst->settings = settings;
  return inst;
}

pm_instance_t *pm_instance_new_internal(pm_host_ctx_t *ctx,
                                        const pm_collector_conf_t *conf) {
  pm_instance_t *inst = instance_alloc(ctx, conf);
  if (inst)
    inst->internal = 1;
  return inst;
}

int pm_instance_create(pm_instance_t *inst) {
  int rc = inst->lib->desc.create(inst, &pm_host_table, &inst->self);
  if (rc == 0) {
    inst->created = 1;
  } else {
    pm_log(PM_LOG_ERROR, inst->name, inst->lib->name,
           "plugin \"%s\" could not create the collector: %s", inst->lib->name,
           pm_strerror(rc));
    if (rc > 0)
      rc = PM_EINTERNAL;
  }
  return rc;
}

static void instance_finish(pm_instance_t *inst) {
  if (inst->created)
    inst->lib->desc.destroy(inst->self, inst);
  if (inst->lib && inst->loader)
    pm_loader_put(inst->loader, inst->lib);
  pm_setting_free(inst->settings);
  for (size_t i = 0; i < inst->n_labels; i++) {
    free((char *)inst->labels[i].key);
    free((char *)inst->labels[i].value);
  }
  free(inst->labels);
  free(inst->dir);
  free(inst->name);
  uv_mutex_destroy(&inst->dir_mu);
  free(inst);
}

void pm_instance_release(pm_instance_t *inst, pm_loader_t *loader) {
  if (!inst)
    return;
  atomic_store(&inst->stopping, 1);
  inst->loader = loader;
  inst->released = 1;
  if (atomic_load(&inst->pending) == 0)
    instance_finish(inst);
}

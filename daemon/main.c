/*
 * portalmetricsd: command line, start-up, signals, reload, shutdown.
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or config.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "alerter.h"
#include "catalog.h"
#include "config.h"
#include "errors.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "notifier.h"
#include "check.h"
#include "once.h"
#include "plan.h"
#include "pool.h"
#include "spool.h"
#include "scheduler.h"
#include "selfmetrics.h"
#include "series.h"
#include "writer.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define POOL_MAX_THREADS 64
#define STOP_GRACE_US (2 * INT64_C(1000000))

typedef struct daemon_state {
  uv_loop_t *loop;
  const char *config_path;
  pm_plan_t *pending_plan; /* the plan to start with */
  pm_config_t *cfg;        /* the running config (owned by its plan) */
  pm_loader_t *loader;
  pm_series_registry_t *series;
  pm_spool_t *spool;
  pm_source_t src; /* what the writer ships from */
  pm_writer_t *writer;
  pm_pool_t *pool;
  pm_scheduler_t *sched;
  pm_selfmetrics_t *self;
  pm_alerter_t *alerter;
  pm_host_ctx_t ctx;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t watchdog;
  int watchdog_on;
  uint64_t wd_shipped;
  int lock_fd;
  int stopping;
  int exit_code;
} daemon_state_t;

static void usage(FILE *f) {
  fprintf(f, "usage: portalmetricsd -c FILE                 run (foreground)\n"
             "       portalmetricsd -c FILE --check-config  validate, load "
             "plugins, say what is wrong\n"
             "       portalmetricsd -c FILE --once --stdout run each poll "
             "collector once, print JSON Lines\n"
             "       portalmetricsd -c FILE --migrate       create or migrate "
             "the schema, then exit\n"
             "       portalmetricsd [-c FILE | --plugin-dir DIR] --plugin-info "
             "NAME\n"
             "       portalmetricsd --version\n");
}

/* ------------------------------------------------------------------ */

/* Every accepted sample goes through the spool; it keeps the keys too. */
static int sink_append(void *ctx, pm_rec_t *recs, size_t n,
                       const pm_sink_key_t *key, pm_done_cb done, void *arg) {
  return pm_spool_append(ctx, recs, n, key ? key->key : NULL,
                         key ? key->len : 0, key ? key->scope : NULL, done,
                         arg);
}

static void on_spool_ready(void *arg) {
  daemon_state_t *d = arg;
  if (d->writer)
    pm_writer_kick(d->writer);
}

/* The catalog the writer keeps in portalmetrics.metrics: the daemon's
 * own declarations and every loaded plugin's. */
static void set_catalog(daemon_state_t *d, const pm_plan_t *plan) {
  const pm_metric_decl_t *tables[2 + 64];
  size_t n = 0;

  tables[n++] = pm_canonical_metrics;
  tables[n++] = pm_daemon_metrics;
  for (size_t i = 0; i < plan->n && n < sizeof(tables) / sizeof(tables[0]);
       i++) {
    const pm_metric_decl_t *m = plan->items[i].lib->desc.metrics;
    int seen = 0;
    for (size_t j = 0; j < n; j++)
      seen |= tables[j] == m;
    if (m && !seen)
      tables[n++] = m;
  }
  pm_writer_set_metrics(d->writer, tables, n);
}

/* What the alerter declares: the plan's targets, notifiers and
 * collectors (a listener has no interval: nodata then needs a target's
 * own `stale`). */
static int configure_alerts(daemon_state_t *d, const pm_plan_t *plan) {
  pm_alerter_collector_t *cols = calloc(plan->n + 1, sizeof *cols);
  int rc;
  if (!cols)
    return PM_ENOMEM;
  for (size_t i = 0; i < plan->n; i++) {
    cols[i].name = plan->items[i].conf->name;
    cols[i].plugin = plan->items[i].conf->plugin;
    cols[i].interval_us =
        plan->items[i].lib->desc.collect ? plan->items[i].conf->interval_us : 0;
  }
  rc = pm_alerter_configure(d->alerter, plan->cfg, cols, plan->n);
  free(cols);
  return rc;
}

/* The writer's options from the database part of the config. */
static void writer_opts(const pm_config_t *cfg, pm_writer_opts_t *wo) {
  wo->conninfo = cfg->conninfo;
  wo->password_file = cfg->password_file;
  wo->daemon_id = cfg->id;
  wo->flush_interval_us = cfg->flush_interval_us;
  wo->batch_max = cfg->batch_max;
  wo->connect_timeout_us = cfg->connect_timeout_us;
  wo->statement_timeout_us = cfg->statement_timeout_us;
  wo->max_sample_age_us = cfg->max_sample_age_us;
  wo->retention_us = cfg->retention_us;
}

static int lock_state_dir(daemon_state_t *d, const char *dir) {
  char path[4096], pid[32];

  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    pm_error("cannot create state directory %s: %s", dir, strerror(errno));
    return -1;
  }
  snprintf(path, sizeof(path), "%s/lock", dir);
  d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (d->lock_fd < 0) {
    pm_error("cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ssize_t n = read(d->lock_fd, pid, sizeof(pid) - 1);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    pm_error("state directory %s is in use by another portalmetricsd (pid "
             "%s): two daemons must not share one",
             dir, *pid ? pid : "unknown");
    return -1;
  }
  if (ftruncate(d->lock_fd, 0) == 0) {
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (write(d->lock_fd, pid, (size_t)len) != len)
      pm_warn("cannot write pid to %s", path);
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Shutdown: collectors, then the writer drains, then the rest. */

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
}

static void on_spool_closed(void *arg) {
  daemon_state_t *d = arg;
  uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
  uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
  uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
  if (d->watchdog_on)
    uv_close((uv_handle_t *)&d->watchdog, on_handle_closed);
}

static void on_pool_closed(void *arg) {
  daemon_state_t *d = arg;
  pm_spool_close(d->spool, on_spool_closed, d);
}

static void on_drained(void *arg, int status) {
  daemon_state_t *d = arg;
  size_t left = pm_spool_len(d->spool);

  if (status == 0)
    pm_info("stopped: every sample was written to PostgreSQL");
  else
    pm_warn("stopped with %zu samples not yet written: the database did not "
            "take them within database.drain_timeout; they stay in the spool "
            "and are shipped first at the next start",
            left);
  pm_pool_shutdown(d->pool, on_pool_closed, d);
}

static void on_spool_synced(void *arg, int status) {
  daemon_state_t *d = arg;
  (void)status; /* a failed group stays unshipped: nothing to drain */
  pm_writer_drain(d->writer, d->cfg->drain_timeout_us, on_drained, d);
}

/* The collectors' last samples (and their final health) may still wait
 * for their group commit: an empty append completes after them, and the
 * drain then covers them. */
static void on_sched_stopped(void *arg) {
  daemon_state_t *d = arg;
  if (pm_spool_append(d->spool, NULL, 0, NULL, 0, NULL, on_spool_synced, d) !=
      0)
    on_spool_synced(d, 0);
}

static void begin_stop(daemon_state_t *d, const char *why) {
  if (d->stopping)
    return;
  d->stopping = 1;
  pm_info("%s: stopping", why);
  sd_notify(0, "STOPPING=1");
  /* Sends in flight are cancelled; the outbox keeps them for the next
   * leader (this daemon after a restart, or another). */
  pm_alerter_close(d->alerter, NULL, NULL);
  pm_selfmetrics_stop(d->self, NULL, NULL);
  pm_scheduler_stop(d->sched, STOP_GRACE_US, on_sched_stopped, d);
}

/* ------------------------------------------------------------------ */
/* Reload */

static void reload(daemon_state_t *d) {
  pm_config_t *cfg = NULL;
  pm_plan_t *plan = NULL;
  char err[2048];
  int failed;

  pm_info("SIGHUP: reloading %s", d->config_path);
  sd_notify(0, "RELOADING=1");
  if (pm_config_load(d->config_path, &cfg, err, sizeof(err)) != 0 ||
      pm_plan_build(d->loader, cfg, &plan, err, sizeof(err)) != 0) {
    pm_error("reload refused, the running config stays: %s", err);
    sd_notify(0, "READY=1");
    return;
  }
  /* These shape what is already on disk and in the database. */
  if (strcmp(cfg->id, d->cfg->id) != 0)
    pm_warn("reload: daemon.id changed to \"%s\": needs a restart; keeping "
            "\"%s\"",
            cfg->id, d->cfg->id);
  if (strcmp(cfg->state_dir, d->cfg->state_dir) != 0)
    pm_warn("reload: daemon.state_dir changed: needs a restart; keeping %s",
            d->cfg->state_dir);
  if (strcmp(cfg->timezone, d->cfg->timezone) != 0)
    pm_warn("reload: daemon.timezone changed: needs a restart; keeping %s",
            d->cfg->timezone);
  if (strcmp(cfg->conninfo, d->cfg->conninfo) != 0)
    pm_warn("reload: database.conninfo changed: needs a restart");
  pm_log_set_level(cfg->log_level);
  d->cfg = cfg;
  set_catalog(d, plan);
  if (configure_alerts(d, plan) != 0)
    pm_error("reload: out of memory configuring targets and notifiers; the "
             "previous ones stay");
  failed = pm_scheduler_apply(d->sched, plan);
  pm_info("reloaded: %zu collectors running%s", pm_scheduler_count(d->sched),
          failed ? " (some failed to start: see above)" : "");
  sd_notify(0, "READY=1");
}

static void on_signal(uv_signal_t *h, int signum) {
  daemon_state_t *d = h->data;
  if (signum == SIGHUP) {
    if (!d->stopping)
      reload(d);
    return;
  }
  begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Only while the loop turns and the writer makes progress or is knowingly
 * waiting (empty queue, or backing off from a database it cannot reach). */
static void on_watchdog(uv_timer_t *t) {
  daemon_state_t *d = t->data;
  pm_writer_stats_t st;

  pm_writer_get_stats(d->writer, &st);
  if (st.shipped != d->wd_shipped || pm_spool_len(d->spool) == 0 ||
      !st.connected)
    sd_notify(0, "WATCHDOG=1");
  d->wd_shipped = st.shipped;
}

/* ------------------------------------------------------------------ */

static int run_daemon(pm_plan_t *plan, const char *config_path) {
  daemon_state_t d = {0};
  pm_config_t *cfg = plan->cfg;
  pm_writer_opts_t wo = {0};
  uint64_t wd_usec = 0;
  pm_spool_opts_t so = {0};
  char spool_dir[4096], dl_dir[4096], err[1024];

  d.loop = uv_default_loop();
  d.config_path = config_path;
  d.cfg = cfg;
  d.loader = plan->loader;
  d.lock_fd = -1;
  if (lock_state_dir(&d, cfg->state_dir) != 0) {
    pm_plan_free(plan);
    return EXIT_RUNTIME;
  }

  d.series = pm_series_registry_new();
  snprintf(spool_dir, sizeof(spool_dir), "%s/spool", cfg->state_dir);
  so.dir = spool_dir;
  so.max_size = cfg->spool_max_size;
  so.segment_size = cfg->spool_segment_size;
  so.commit_delay_us =
      cfg->spool_commit_delay_us ? cfg->spool_commit_delay_us : -1;
  so.dedup_window_us = cfg->dedup_window_us;
  so.on_ready = on_spool_ready;
  so.ready_arg = &d;
  /* Recovery runs here, before the loop: what the last run left is
   * shipped first. Only an unusable folder stops the start. */
  if (pm_spool_open(d.loop, &so, &d.spool, err, sizeof(err)) != 0) {
    pm_error("cannot open the spool: %s", err);
    pm_plan_free(plan);
    return EXIT_RUNTIME;
  }
  d.pool = pm_pool_new(d.loop, POOL_MAX_THREADS);
  writer_opts(cfg, &wo);
  /* The position is keyed by the spool's identity, not the daemon's:
   * renaming the daemon never re-ships or skips anything. */
  snprintf(dl_dir, sizeof dl_dir, "%s/deadletter", cfg->state_dir);
  wo.spool_id = pm_spool_id(d.spool);
  wo.deadletter_dir = dl_dir;
  d.src = pm_spool_source(d.spool);
  d.writer = pm_writer_new(d.loop, &wo, &d.src);
  d.ctx = (pm_host_ctx_t){.loop = d.loop,
                          .series = d.series,
                          .sink = sink_append,
                          .sink_ctx = d.spool,
                          .timezone = cfg->timezone,
                          .state_dir = cfg->state_dir,
                          .max_sample_age_us = cfg->max_sample_age_us};
  d.sched = pm_scheduler_new(d.loop, &d.ctx, d.loader, d.pool, &d.src);
  d.self = d.writer
               ? pm_selfmetrics_new(d.loop, &d.ctx, d.writer, d.spool, &d.src)
               : NULL;
  {
    pm_alerter_opts_t ao = {.conninfo = cfg->conninfo,
                            .password_file = cfg->password_file,
                            .daemon_id = cfg->id,
                            .connect_timeout_us = cfg->connect_timeout_us,
                            .statement_timeout_us = cfg->statement_timeout_us};
    d.alerter = pm_alerter_new(d.loop, &ao);
  }
  if (!d.series || !d.pool || !d.writer || !d.sched || !d.self || !d.alerter ||
      configure_alerts(&d, plan) != 0) {
    pm_error("out of memory at start-up");
    return EXIT_RUNTIME;
  }

  uv_signal_init(d.loop, &d.sigterm);
  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sighup);
  d.sigterm.data = d.sigint.data = d.sighup.data = &d;
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_signal_start(&d.sighup, on_signal, SIGHUP);

  set_catalog(&d, plan);
  pm_selfmetrics_set_alerter(d.self, d.alerter);
  pm_writer_start(d.writer);
  pm_alerter_start(d.alerter);
  pm_scheduler_apply(d.sched, plan);
  pm_info("portalmetricsd %s started as \"%s\": %zu collectors, state in %s",
          PM_VERSION, cfg->id, pm_scheduler_count(d.sched), cfg->state_dir);

  if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
    uv_timer_init(d.loop, &d.watchdog);
    d.watchdog.data = &d;
    d.watchdog_on = 1;
    uv_timer_start(&d.watchdog, on_watchdog, wd_usec / 2000, wd_usec / 2000);
  }
  sd_notify(0, "READY=1");

  uv_run(d.loop, UV_RUN_DEFAULT);

  pm_writer_free(d.writer);
  if (pm_pool_free(d.pool) != 0) {
    /* A hung collect still runs plugin code: leave the plugin loaded and
     * its structures alone. */
    pm_warn("exiting with a collector still hung");
    _exit(0);
  }
  pm_scheduler_free(d.sched);
  pm_selfmetrics_free(d.self);
  pm_alerter_free(d.alerter);
  pm_spool_free(d.spool);
  pm_series_registry_free(d.series);
  uv_loop_close(d.loop);
  if (d.lock_fd >= 0)
    close(d.lock_fd);
  return d.exit_code;
}

static int plugin_info(const char *name, const char *dir) {
  pm_loader_t *l = pm_loader_new(dir);
  pm_plugin_lib_t *lib;
  char err[1024];

  if (!l)
    return EXIT_RUNTIME;
  if (pm_loader_get(l, name, &lib, err, sizeof(err)) != 0) {
    fprintf(stderr, "portalmetricsd: %s\n", err);
    pm_loader_free(l);
    return EXIT_USAGE;
  }
  pm_loader_print_info(lib);
  pm_loader_put(l, lib);
  pm_loader_free(l);
  return 0;
}

static void on_migrated(void *arg, int status) {
  *(int *)arg = status;
}

static int migrate(pm_config_t *cfg) {
  uv_loop_t *loop = uv_default_loop();
  pm_writer_opts_t wo = {0};
  int status = 1;

  writer_opts(cfg, &wo);
  pm_writer_t *w = pm_writer_new(loop, &wo, NULL);
  if (!w || pm_writer_migrate(w, on_migrated, &status) != 0)
    return EXIT_RUNTIME;
  uv_run(loop, UV_RUN_DEFAULT);
  pm_writer_free(w);
  uv_loop_close(loop);
  if (status == 0)
    pm_info("schema is up to date");
  return status == 0 ? 0 : EXIT_RUNTIME;
}

int main(int argc, char **argv) {
  enum { O_CHECK = 256, O_ONCE, O_STDOUT, O_MIGRATE, O_INFO, O_PDIR, O_VER };
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"check-config", no_argument, NULL, O_CHECK},
      {"once", no_argument, NULL, O_ONCE},
      {"stdout", no_argument, NULL, O_STDOUT},
      {"migrate", no_argument, NULL, O_MIGRATE},
      {"plugin-info", required_argument, NULL, O_INFO},
      {"plugin-dir", required_argument, NULL, O_PDIR},
      {"version", no_argument, NULL, O_VER},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config_path = NULL, *info = NULL, *pdir = NULL;
  int check = 0, once = 0, to_stdout = 0, do_migrate = 0, o;
  pm_config_t *cfg = NULL;
  pm_plan_t *plan = NULL;
  pm_loader_t *loader;
  char err[2048];
  int rc;

  while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    switch (o) {
    case 'c':
      config_path = optarg;
      break;
    case O_CHECK:
      check = 1;
      break;
    case O_ONCE:
      once = 1;
      break;
    case O_STDOUT:
      to_stdout = 1;
      break;
    case O_MIGRATE:
      do_migrate = 1;
      break;
    case O_INFO:
      info = optarg;
      break;
    case O_PDIR:
      pdir = optarg;
      break;
    case O_VER:
      printf("portalmetricsd %s (plugin ABI %d.%d)\n", PM_VERSION, PM_ABI_MAJOR,
             PM_ABI_MINOR);
      return 0;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind < argc || (once != to_stdout) || (check + once + do_migrate > 1) ||
      (!config_path && !info)) {
    if (once != to_stdout)
      fprintf(stderr, "portalmetricsd: --once needs --stdout (and the other "
                      "way round)\n");
    usage(stderr);
    return EXIT_USAGE;
  }

  signal(SIGPIPE, SIG_IGN);
  pm_log_init(PM_LOG_INFO, getenv("JOURNAL_STREAM") != NULL);
  /* libcurl's global state, before any thread starts */
  if (pm_notifier_global_init() != 0) {
    fprintf(stderr, "portalmetricsd: cannot initialise libcurl\n");
    return EXIT_RUNTIME;
  }
  atexit(pm_notifier_global_cleanup);

  if (config_path) {
    if (pm_config_load(config_path, &cfg, err, sizeof(err)) != 0) {
      fprintf(stderr, "portalmetricsd: %s\n", err);
      return EXIT_USAGE;
    }
    pm_log_set_level(cfg->log_level);
  }
  if (info) {
    rc = plugin_info(info, pdir ? pdir : cfg ? cfg->plugin_dir : PM_PLUGIN_DIR);
    pm_config_free(cfg);
    return rc;
  }
  /* Day buckets and every localtime_r in plugins follow the site's zone.
   * Set before any thread exists: TZ is process-global. */
  setenv("TZ", cfg->timezone, 1);
  tzset();

  if (do_migrate) {
    rc = migrate(cfg);
    pm_config_free(cfg);
    return rc;
  }

  loader = pm_loader_new(pdir ? pdir : cfg->plugin_dir);
  if (!loader)
    return EXIT_RUNTIME;
  if (pm_plan_build(loader, cfg, &plan, err, sizeof(err)) != 0) {
    fprintf(stderr, "portalmetricsd: %s\n", err);
    pm_loader_free(loader);
    return EXIT_USAGE;
  }
  if (check) {
    size_t refused = pm_check_create(plan);
    if (refused > 0) {
      fprintf(stderr,
              "portalmetricsd: %s: %zu collector(s) refused by their "
              "plugin (see above)\n",
              config_path, refused);
      pm_plan_free(plan);
      pm_loader_free(loader);
      return EXIT_USAGE;
    }
    printf("%s: OK (%zu collectors, %zu targets, %zu notifiers)\n", config_path,
           plan->n, plan->cfg->n_targets, plan->cfg->n_notifiers);
    pm_plan_free(plan);
    pm_loader_free(loader);
    return 0;
  }
  if (once) {
    rc = pm_once_run(plan);
  } else {
    rc = run_daemon(plan, config_path);
  }
  pm_loader_free(loader);
  return rc;
}

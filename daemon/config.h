/*
 * The daemon's config file (libconfig), loaded and checked. Every mistake
 * is one line naming file, line and setting. Bottom layer: knows nothing
 * of plugins (their settings blocks are checked by settings.c once the
 * plugin is loaded).
 */
#ifndef PM_CONFIG_H
#define PM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <libconfig.h>
#include <portalmetrics/plugin.h>

typedef struct pm_collector_conf {
  char *name;          /* [a-z0-9][a-z0-9_.-]*, unique */
  char *plugin;        /* plugin file name without .so */
  int64_t interval_us; /* poll plugins; default 60s */
  int64_t timeout_us;  /* poll plugins; default = interval, <= interval */
  pm_label_t *labels;  /* keys and values owned by this struct */
  size_t n_labels;
  size_t max_series;                /* default 10000 */
  const config_setting_t *settings; /* borrowed from pm_config's config_t;
                                       an empty group at the collector's
                                       line if absent, never NULL */
  int line;                         /* line of the collector's group */
  char *settings_path; /* "collectors.[0].settings", for messages */
} pm_collector_conf_t;

/* Targets and alerts (DESIGN.md "Targets and alerts"). */
typedef enum { PM_AT_LEAST = 0, PM_AT_MOST = 1 } pm_direction_t;
typedef enum {
  PM_GOAL_FIXED = 0,
  PM_GOAL_RAMP,
  PM_GOAL_MILESTONES
} pm_goal_kind_t;
#define PM_NO_DAY INT32_MIN
typedef struct pm_goal_point {
  int32_t day; /* a local calendar date as days since 1970-01-01;
                  PM_NO_DAY for a fixed goal's only point */
  double value;
} pm_goal_point_t;

typedef struct pm_target_conf {
  char *name;         /* [a-z0-9][a-z0-9_.-]*, at most 63 bytes, unique */
  char *title;        /* for messages; default: name */
  char *metric;       /* a metric name (sample.h rules) */
  char *per;          /* NULL, or the denominator metric (a rate) */
  pm_label_t *labels; /* series selector; owned; may be empty */
  size_t n_labels;
  int window_days;          /* counts: whole local days summed; default 7 */
  pm_direction_t direction; /* default at_least */
  pm_goal_kind_t goal_kind;
  pm_goal_point_t *goal; /* fixed: 1 point (day PM_NO_DAY); ramp: 2;
                            milestones: >= 1, days strictly increasing */
  size_t n_goal;
  double tolerance;     /* >= 0; default 0 */
  int64_t for_us;       /* behind this long before firing; default 0 */
  int64_t clear_for_us; /* on track this long before resolving; default 0 */
  int64_t stale_us;     /* 0: judge nodata by the collectors' intervals */
  int64_t repeat_us;    /* 0: never re-notify while firing */
  int lookback_days;    /* trend for projected_date; default 28, >= 2 */
  char *severity;       /* "info", "warning" (default) or "critical" */
  int percent;          /* values shown as percent; default: per != NULL */
  char **notify;        /* notifier names, each defined in `notifiers` */
  size_t n_notify;
  int line;
  /* Canonical JSON of the whole definition, name excluded, the daemon's
   * time zone included (compact, keys sorted, reals with 17 digits): what
   * is mirrored into portalmetrics.targets.definition and compared across
   * daemons. Keys: title, metric, per (string or null), labels (object),
   * window_days, direction ("at_least"/"at_most"), goal ({"kind":
   * "fixed"|"ramp"|"milestones", "points": [{"date": "YYYY-MM-DD" or null,
   * "value": x}, ...]}), tolerance, for_s, clear_for_s, stale_s (number
   * or null), repeat_s (number or null), lookback_days, severity, format
   * ("percent"/"number"), notify (array), timezone. Durations in seconds
   * (reals allowed). */
  char *definition;
} pm_target_conf_t;

typedef enum {
  PM_NOTIFIER_LOG = 0,
  PM_NOTIFIER_WEBHOOK,
  PM_NOTIFIER_EXEC
} pm_notifier_type_t;

typedef struct pm_notifier_conf {
  char *name; /* [a-z0-9][a-z0-9_.-]*, unique */
  pm_notifier_type_t type;
  /* webhook */
  char *url;      /* http:// or https:// */
  char **headers; /* "Name: value" lines; from `headers = { Name = "v"; }` */
  size_t n_headers;
  char *token_file; /* NULL, or a file holding a bearer token */
  char *ca_file;    /* NULL: the system's CA store */
  /* exec */
  char **command; /* argv, NULL-terminated; command[0] an absolute path */
  size_t n_command;
  int64_t timeout_us; /* one attempt; default 10s (webhook), 30s (exec) */
  int64_t give_up_us; /* stop retrying an event this old; default 1d */
  int line;
} pm_notifier_conf_t;

typedef struct pm_config {
  char *file; /* as given */
  config_t cfg;

  /* daemon */
  char *id;         /* required-ish: default is the host name */
  char *state_dir;  /* default /var/lib/portalmetrics */
  char *plugin_dir; /* default: PM_PLUGIN_DIR (the install directory) */
  char *timezone;   /* default "UTC"; must exist in the tz database */
  int log_level;    /* PM_LOG_*; default info */

  /* database */
  char *conninfo;               /* required */
  char *password_file;          /* optional; read at connect */
  int64_t flush_interval_us;    /* default 500ms */
  int64_t retention_us;         /* 0: keep forever */
  int64_t max_sample_age_us;    /* default 400d */
  int64_t connect_timeout_us;   /* default 10s */
  int64_t statement_timeout_us; /* default 60s */
  size_t batch_max;             /* records per transaction; default 50000 */
  int64_t drain_timeout_us;     /* on SIGTERM; default 10s */

  /* spool */
  uint64_t spool_max_size;       /* default 2GiB */
  uint64_t spool_segment_size;   /* default max_size/8, at most 64MiB */
  int64_t spool_commit_delay_us; /* group commit's bounded delay; 0: none */
  int64_t dedup_window_us;       /* idempotency keys remembered; 7d */

  pm_collector_conf_t *collectors;
  size_t n_collectors;

  /* alerts = { interval = "30s"; }: how often the leader evaluates
   * targets and retries leadership; default 30s */
  int64_t alerts_interval_us;
  pm_target_conf_t *targets;
  size_t n_targets;
  pm_notifier_conf_t *notifiers;
  size_t n_notifiers;
} pm_config_t;

/*
 * Load and check path. Returns 0 and *out (caller frees with
 * pm_config_free), or PM_ECONFIG / PM_EIO with one line in err:
 *   "conf/x.conf:7: database.flush_interval: invalid duration \"5 parsecs\""
 * Checks done here: syntax, unknown keys, types, values, required keys,
 * duplicate collector names, targets and notifiers (notify naming a
 * defined notifier), `isolate` (not supported yet), and the secrets rule (an
 * inline password in conninfo only if the file is readable by no one but its
 * owner and group root or the daemon's user: mode & 007 == 0). First of all the
 * file itself must pass pm_path_check_owner (fileperm.h): "FILE: writable by
 * group or others ..." with PM_ECONFIG. @include paths are relative to the
 * config file's directory; a mistake in an included file names that file.
 */
int pm_config_load(const char *path, pm_config_t **out, char *err,
                   size_t errlen);
/*
 * The same from text in memory; `name` stands for the file in messages.
 * No file to check: the ownership check is skipped, and an inline
 * password in conninfo is refused (no file mode vouches for it). For
 * tests and fuzzing.
 */
int pm_config_load_string(const char *text, const char *name, pm_config_t **out,
                          char *err, size_t errlen);
void pm_config_free(pm_config_t *cfg);

/* The collector named name, or NULL. */
const pm_collector_conf_t *pm_config_collector(const pm_config_t *cfg,
                                               const char *name);

/* The target or notifier named name, or NULL. */
const pm_target_conf_t *pm_config_target(const pm_config_t *cfg,
                                         const char *name);
const pm_notifier_conf_t *pm_config_notifier(const pm_config_t *cfg,
                                             const char *name);

/* 1 if two collector configs are the same (plugin, interval, timeout,
 * labels, max_series and settings text), so reload can keep it running. */
int pm_collector_conf_equal(const pm_collector_conf_t *a,
                            const pm_collector_conf_t *b);

#endif

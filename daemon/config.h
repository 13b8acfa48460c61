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
  int64_t spool_commit_delay_us; /* group commit's bounded delay; 2ms */
  int64_t dedup_window_us;       /* idempotency keys remembered; 7d */

  pm_collector_conf_t *collectors;
  size_t n_collectors;
} pm_config_t;

/*
 * Load and check path. Returns 0 and *out (caller frees with
 * pm_config_free), or PM_ECONFIG / PM_EIO with one line in err:
 *   "conf/x.conf:7: database.flush_interval: invalid duration \"5 parsecs\""
 * Checks done here: syntax, unknown keys, types, values, required keys,
 * duplicate collector names, `targets`/`notifiers`/`isolate` (not
 * supported yet), and the secrets rule (an inline password in conninfo
 * only if the file is readable by no one but its owner and group root or
 * the daemon's user: mode & 007 == 0). First of all the file itself must
 * pass pm_path_check_owner (fileperm.h): "FILE: writable by group or
 * others ..." with PM_ECONFIG. @include paths are relative to the
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

/* 1 if two collector configs are the same (plugin, interval, timeout,
 * labels, max_series and settings text), so reload can keep it running. */
int pm_collector_conf_equal(const pm_collector_conf_t *a,
                            const pm_collector_conf_t *b);

#endif

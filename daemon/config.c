/*
 * The config file: parsed by libconfig, then checked key by key against
 * DESIGN.md's "Config shape". The first mistake ends the load with one
 * line "FILE:LINE: setting.path: message", because an operator fixes
 * one thing at a time and a wall of follow-on errors hides the cause.
 * The readers below are shared (config_int.h) with config_alerts.c,
 * which checks `alerts`, `notifiers` and `targets`.
 */
#include "config.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "confmsg.h"
#include "fileperm.h"
#include "log.h"
#include "sample.h"
#include "units.h"

#ifndef PM_PLUGIN_DIR
#define PM_PLUGIN_DIR "/usr/local/lib/portalmetrics/plugins"
#endif

#define DEFAULT_STATE_DIR "/var/lib/portalmetrics"
#define DEFAULT_TIMEZONE "UTC"
#define DEFAULT_FLUSH_INTERVAL_US (500 * INT64_C(1000))
#define DEFAULT_MAX_SAMPLE_AGE_US (400 * INT64_C(86400) * PM_US_PER_SEC)
#define DEFAULT_CONNECT_TIMEOUT_US (10 * PM_US_PER_SEC)
#define DEFAULT_STATEMENT_TIMEOUT_US (60 * PM_US_PER_SEC)
#define DEFAULT_BATCH_MAX 50000
#define BATCH_MAX_LIMIT 10000000
#define DEFAULT_DRAIN_TIMEOUT_US (10 * PM_US_PER_SEC)
#define DEFAULT_SPOOL_MAX_SIZE (UINT64_C(2) << 30)
#define DEFAULT_INTERVAL_US (60 * PM_US_PER_SEC)
#define DEFAULT_MAX_SERIES 10000
#define NAME_MAX_LEN 64
#define PATH_LEN PM_CFG_PATH_LEN

static const char *const top_keys[] = {"daemon",     "database", "spool",
                                       "collectors", "alerts",   "targets",
                                       "notifiers",  NULL};
static const char *const daemon_keys[] = {"id",       "state_dir", "plugin_dir",
                                          "timezone", "log_level", NULL};
static const char *const database_keys[] = {
    "conninfo",          "password_file",
    "flush_interval",    "retention",
    "max_sample_age",    "connect_timeout",
    "statement_timeout", "batch_size",
    "drain_timeout",     NULL};
static const char *const spool_keys[] = {"max_size", "segment_size",
                                         "commit_delay", "dedup_window", NULL};
static const char *const collector_keys[] = {
    "name",       "plugin",   "interval", "timeout", "labels",
    "max_series", "settings", "isolate",  NULL};

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */

int pm_cfg_fail(pm_cfgctx_t *c, const config_setting_t *s, const char *path,
                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pm_confmsg_failv(c->err, c->errlen, c->file, s, path, fmt, ap);
  va_end(ap);
  return PM_ECONFIG;
}

int pm_cfg_oom(pm_cfgctx_t *c) {
  if (c->err && c->errlen)
    snprintf(c->err, c->errlen, "%s: out of memory", c->file);
  return PM_ENOMEM;
}

int pm_cfg_set_str(pm_cfgctx_t *c, char **dst, const char *v) {
  char *s = strdup(v);
  if (!s)
    return pm_cfg_oom(c);
  free(*dst);
  *dst = s;
  return 0;
}

/* ---------------------------------------------------------------------
 * Typed readers. Each leaves *out alone when the key is absent (the
 * default stays), and fails on a wrong type or bad value.
 * ------------------------------------------------------------------- */

static const config_setting_t *member(const config_setting_t *g,
                                      const char *key) {
  return g ? config_setting_get_member(g, key) : NULL;
}

/* Every member of g must be one of known: a typo must not silently
 * become a default. */
int pm_cfg_check_keys(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *const *known) {
  char path[PATH_LEN], list[256];
  size_t off = 0;

  for (int i = 0; g && i < config_setting_length(g); i++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
    const char *name = config_setting_name(m);
    int found = 0;

    for (int k = 0; known[k] && !found; k++)
      found = strcmp(known[k], name) == 0;
    if (found)
      continue;
    list[0] = '\0';
    for (int k = 0; known[k] && off < sizeof(list); k++) {
      int w = snprintf(list + off, sizeof(list) - off, "%s%s", k ? ", " : "",
                       known[k]);
      off += w > 0 ? (size_t)w : 0;
    }
    pm_confmsg_join(path, sizeof(path), gpath, name);
    return pm_cfg_fail(c, m, path, "unknown setting (expected one of: %s)",
                       list);
  }
  return 0;
}

/* The member key of g if it has type `type` (or is absent: *sp = NULL). */
int pm_cfg_typed(pm_cfgctx_t *c, const config_setting_t *g, const char *gpath,
                 const char *key, int type, const char *want,
                 const config_setting_t **sp, char *path, size_t pathlen) {
  const config_setting_t *s = member(g, key);
  int t;

  pm_confmsg_join(path, pathlen, gpath, key);
  *sp = s;
  if (!s)
    return 0;
  t = config_setting_type(s);
  if (t == type || (type == CONFIG_TYPE_INT && t == CONFIG_TYPE_INT64))
    return 0;
  return pm_cfg_fail(c, s, path, "expected %s, got %s", want,
                     pm_confmsg_type(t));
}

int pm_cfg_required_missing(pm_cfgctx_t *c, const config_setting_t *g,
                            const char *path) {
  return pm_cfg_fail(c, g, path, "required setting missing");
}

int pm_cfg_get_string(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *key, int required,
                      char **out, const config_setting_t **where) {
  char path[PATH_LEN];
  const config_setting_t *s;
  int rc;

  if ((rc = pm_cfg_typed(c, g, gpath, key, CONFIG_TYPE_STRING, "a string", &s,
                         path, sizeof(path))) != 0)
    return rc;
  if (where)
    *where = s;
  if (!s)
    return required ? pm_cfg_required_missing(c, g, path) : 0;
  if (config_setting_get_string(s)[0] == '\0')
    return pm_cfg_fail(c, s, path, "must not be empty");
  return pm_cfg_set_str(c, out, config_setting_get_string(s));
}

/* A duration >= min_us. */
int pm_cfg_get_duration(pm_cfgctx_t *c, const config_setting_t *g,
                        const char *gpath, const char *key, int64_t min_us,
                        int64_t *out, const config_setting_t **where) {
  char path[PATH_LEN], minbuf[32], vbuf[80];
  const config_setting_t *s;
  const char *text;
  int64_t v;
  int rc;

  if ((rc = pm_cfg_typed(c, g, gpath, key, CONFIG_TYPE_STRING,
                         "a duration string like \"15m\"", &s, path,
                         sizeof(path))) != 0)
    return rc;
  if (where)
    *where = s;
  if (!s)
    return 0;
  text = config_setting_get_string(s);
  if (pm_parse_duration(text, &v) != 0)
    return pm_cfg_fail(c, s, path,
                       "invalid duration \"%s\" (examples: \"500ms\", \"15m\", "
                       "\"1h30m\", \"2d\")",
                       pm_confmsg_show(text, vbuf, sizeof(vbuf)));
  if (v < min_us) {
    if (min_us == 1)
      return pm_cfg_fail(c, s, path, "must be greater than 0");
    pm_format_duration(min_us, minbuf, sizeof(minbuf));
    return pm_cfg_fail(c, s, path, "must be at least %s", minbuf);
  }
  *out = v;
  return 0;
}

static int get_size(pm_cfgctx_t *c, const config_setting_t *g,
                    const char *gpath, const char *key, uint64_t *out) {
  char path[PATH_LEN], vbuf[80];
  const config_setting_t *s;
  const char *text;
  uint64_t v;
  int rc;

  if ((rc = pm_cfg_typed(c, g, gpath, key, CONFIG_TYPE_STRING,
                         "a size string like \"2GiB\"", &s, path,
                         sizeof(path))) != 0)
    return rc;
  if (!s)
    return 0;
  text = config_setting_get_string(s);
  if (pm_parse_size(text, &v) != 0)
    return pm_cfg_fail(c, s, path,
                       "invalid size \"%s\" (examples: \"512MiB\", \"2GiB\", "
                       "\"10GB\")",
                       pm_confmsg_show(text, vbuf, sizeof(vbuf)));
  if (v == 0)
    return pm_cfg_fail(c, s, path, "must be greater than 0");
  *out = v;
  return 0;
}

static int get_int(pm_cfgctx_t *c, const config_setting_t *g, const char *gpath,
                   const char *key, long long min, long long max,
                   long long *out) {
  char path[PATH_LEN];
  const config_setting_t *s;
  long long v;
  int rc;

  if ((rc = pm_cfg_typed(c, g, gpath, key, CONFIG_TYPE_INT, "an integer", &s,
                         path, sizeof(path))) != 0)
    return rc;
  if (!s)
    return 0;
  v = config_setting_get_int64(s);
  if (v < min)
    return pm_cfg_fail(c, s, path, "must be at least %lld", min);
  if (v > max)
    return pm_cfg_fail(c, s, path, "must be at most %lld", max);
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------- */

static int is_lower_digit(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

int pm_cfg_name_valid(const char *s, const char *extra, size_t max) {
  size_t i;

  if (!is_lower_digit(s[0]))
    return 0;
  for (i = 1; s[i]; i++)
    if (!is_lower_digit(s[i]) && !strchr(extra, s[i]))
      return 0;
  return i <= max;
}

static int daemon_id_valid(const char *s) {
  size_t i;

  for (i = 0; s[i]; i++) {
    char ch = s[i];
    int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                (ch >= '0' && ch <= '9');
    if (!alnum && (i == 0 || !strchr("_.-", ch)))
      return 0;
  }
  return i > 0 && i <= NAME_MAX_LEN;
}

/* An IANA name the system's tz database has. The name becomes a path,
 * so nothing that could leave the zoneinfo directory is accepted. */
static int timezone_valid(const char *tz) {
  char path[PATH_LEN];
  const char *dir = getenv("TZDIR");
  struct stat st;

  if (strcmp(tz, "UTC") == 0)
    return 1; /* PostgreSQL and libc know it without tzdata */
  if (tz[0] == '/' || strstr(tz, ".."))
    return 0;
  for (const char *p = tz; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
      return 0;
  if (!dir || !*dir)
    dir = "/usr/share/zoneinfo";
  if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, tz) >= sizeof(path))
    return 0;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------- */

/* The member key of the root, which must be a group if present. */
static int top_group(pm_cfgctx_t *c, const char *key,
                     const config_setting_t **out) {
  char path[PATH_LEN];
  return pm_cfg_typed(c, config_root_setting(&c->cfg->cfg), "", key,
                      CONFIG_TYPE_GROUP, "a group { ... }", out, path,
                      sizeof(path));
}

static int load_daemon(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  const config_setting_t *g, *s;
  char *level = NULL, vbuf[80];
  int rc;

  if ((rc = top_group(c, "daemon", &g)) != 0 ||
      (rc = pm_cfg_check_keys(c, g, "daemon", daemon_keys)) != 0)
    return rc;

  if ((rc = pm_cfg_get_string(c, g, "daemon", "id", 0, &cfg->id, &s)) != 0)
    return rc;
  if (s && !daemon_id_valid(cfg->id))
    return pm_cfg_fail(c, s, "daemon.id",
                       "invalid id \"%s\" (expected letters, digits, '_', '.', "
                       "'-', at most %d bytes)",
                       pm_confmsg_show(cfg->id, vbuf, sizeof(vbuf)),
                       NAME_MAX_LEN);
  if ((rc = pm_cfg_get_string(c, g, "daemon", "state_dir", 0, &cfg->state_dir,
                              NULL)) != 0 ||
      (rc = pm_cfg_get_string(c, g, "daemon", "plugin_dir", 0, &cfg->plugin_dir,
                              NULL)) != 0)
    return rc;

  if ((rc = pm_cfg_get_string(c, g, "daemon", "timezone", 0, &cfg->timezone,
                              &s)) != 0)
    return rc;
  if (s && !timezone_valid(cfg->timezone))
    return pm_cfg_fail(
        c, s, "daemon.timezone",
        "unknown time zone \"%s\" (expected an IANA name like "
        "\"America/Denver\" that exists under /usr/share/zoneinfo)",
        pm_confmsg_show(cfg->timezone, vbuf, sizeof(vbuf)));

  if ((rc = pm_cfg_get_string(c, g, "daemon", "log_level", 0, &level, &s)) != 0)
    return rc;
  if (s) {
    cfg->log_level = pm_log_level_parse(level);
    if (cfg->log_level < 0) {
      rc = pm_cfg_fail(
          c, s, "daemon.log_level",
          "unknown log level \"%s\" (expected error, warning, notice, "
          "info or debug)",
          pm_confmsg_show(level, vbuf, sizeof(vbuf)));
      free(level);
      return rc;
    }
    free(level);
  }
  return 0;
}

/* The secrets rule of DESIGN.md: a password in conninfo only in a file
 * that others cannot read. libpq parses both the key=value and the URI
 * form, so "postgresql://u:secret@db/x" is caught too. */
static int check_conninfo(pm_cfgctx_t *c, const config_setting_t *s) {
  const char *path = "database.conninfo";
  const char *file;
  char *errmsg = NULL, ferr[512], fbuf[1024], ebuf[200];
  PQconninfoOption *opts, *o;
  int has_password = 0, priv;

  opts = PQconninfoParse(c->cfg->conninfo, &errmsg);
  if (!opts) {
    int rc;
    if (!errmsg)
      return pm_cfg_oom(c);
    errmsg[strcspn(errmsg, "\n")] = '\0';
    /* libpq quotes pieces of the string, which may be a password. */
    if (strcasestr(c->cfg->conninfo, "password") ||
        strchr(c->cfg->conninfo, '@'))
      rc = pm_cfg_fail(
          c, s, path,
          "invalid conninfo (libpq cannot parse it; see \"Connection "
          "Strings\" in the PostgreSQL manual)");
    else
      rc = pm_cfg_fail(c, s, path, "invalid conninfo: %s",
                       pm_confmsg_show(errmsg, ebuf, sizeof(ebuf)));
    PQfreemem(errmsg);
    return rc;
  }
  for (o = opts; o->keyword; o++)
    if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
      has_password = 1;
  PQconninfoFree(opts);
  if (!has_password)
    return 0;

  file = pm_confmsg_file(s, c->file, fbuf, sizeof(fbuf));
  priv = c->from_file ? pm_path_private(file, ferr, sizeof(ferr)) : 0;
  if (priv == 1)
    return 0;
  return pm_cfg_fail(c, s, path,
                     "a password written inline needs the config file to be "
                     "unreadable by others (chmod o-rwx %s), or use "
                     "database.password_file",
                     file);
}

static int load_database(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  const config_setting_t *g, *s, *ret;
  const char *gp = "database";
  char a[32], b[32];
  long long batch = (long long)cfg->batch_max;
  int rc;

  if ((rc = top_group(c, "database", &g)) != 0)
    return rc;
  if (!g)
    return pm_cfg_required_missing(c, config_root_setting(&cfg->cfg),
                                   "database");
  if ((rc = pm_cfg_check_keys(c, g, gp, database_keys)) != 0 ||
      (rc = pm_cfg_get_string(c, g, gp, "conninfo", 1, &cfg->conninfo, &s)) !=
          0 ||
      (rc = check_conninfo(c, s)) != 0 ||
      (rc = pm_cfg_get_string(c, g, gp, "password_file", 0, &cfg->password_file,
                              NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "flush_interval", 1,
                                &cfg->flush_interval_us, NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "retention", 1, &cfg->retention_us,
                                &ret)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "max_sample_age", 1,
                                &cfg->max_sample_age_us, NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "connect_timeout", 1,
                                &cfg->connect_timeout_us, NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "statement_timeout", 0,
                                &cfg->statement_timeout_us, NULL)) != 0 ||
      (rc = get_int(c, g, gp, "batch_size", 1, BATCH_MAX_LIMIT, &batch)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, gp, "drain_timeout", 0,
                                &cfg->drain_timeout_us, NULL)) != 0)
    return rc;
  cfg->batch_max = (size_t)batch;

  /* Partitions older than retention are dropped, so a shorter retention
   * would throw away samples the daemon just accepted. */
  if (ret && cfg->retention_us < cfg->max_sample_age_us) {
    pm_format_duration(cfg->retention_us, a, sizeof(a));
    pm_format_duration(cfg->max_sample_age_us, b, sizeof(b));
    return pm_cfg_fail(
        c, ret, "database.retention",
        "retention (%s) is shorter than max_sample_age (%s): lower "
        "max_sample_age too",
        a, b);
  }
  return 0;
}

static int load_spool(pm_cfgctx_t *c) {
  const config_setting_t *g;
  int rc;

  if ((rc = top_group(c, "spool", &g)) != 0 ||
      (rc = pm_cfg_check_keys(c, g, "spool", spool_keys)) != 0)
    return rc;
  pm_config_t *cfg = c->cfg;
  cfg->spool_segment_size = 0; /* 0: not given */
  if ((rc = get_size(c, g, "spool", "max_size", &cfg->spool_max_size)) != 0 ||
      (rc = get_size(c, g, "spool", "segment_size",
                     &cfg->spool_segment_size)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, "spool", "commit_delay", 0,
                                &cfg->spool_commit_delay_us, NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, "spool", "dedup_window", 1,
                                &cfg->dedup_window_us, NULL)) != 0)
    return rc;
  /* A segment is deleted whole once shipped: one larger than the cap
   * could never leave room. By default, an eighth of the cap. */
  if (cfg->spool_segment_size == 0) {
    cfg->spool_segment_size = cfg->spool_max_size / 8;
    if (cfg->spool_max_size == 0 || /* no cap */
        cfg->spool_segment_size > (UINT64_C(64) << 20))
      cfg->spool_segment_size = UINT64_C(64) << 20;
    if (cfg->spool_segment_size < 4096)
      cfg->spool_segment_size = 4096;
  } else if (cfg->spool_segment_size < 4096 ||
             (cfg->spool_max_size != 0 &&
              cfg->spool_segment_size > cfg->spool_max_size / 2))
    return pm_cfg_fail(
        c, config_setting_get_member(g, "segment_size"), "spool.segment_size",
        "must be at least 4KiB and at most half of spool.max_size");
  return 0;
}

static int load_labels(pm_cfgctx_t *c, pm_collector_conf_t *col,
                       const config_setting_t *g, const char *cpath) {
  char gpath[PATH_LEN], path[PATH_LEN];
  const config_setting_t *s;
  pm_labelset_t ls;
  int n, rc;

  if ((rc = pm_cfg_typed(c, g, cpath, "labels", CONFIG_TYPE_GROUP,
                         "a group { key = \"value\"; ... }", &s, gpath,
                         sizeof(gpath))) != 0)
    return rc;
  if (!s)
    return 0;
  n = config_setting_length(s);
  if (n == 0)
    return 0;
  col->labels = calloc((size_t)n, sizeof(*col->labels));
  if (!col->labels)
    return pm_cfg_oom(c);

  for (int i = 0; i < n; i++) {
    const config_setting_t *l = config_setting_get_elem(s, (unsigned)i);
    const char *key = config_setting_name(l);
    const char *value;

    pm_confmsg_join(path, sizeof(path), gpath, key);
    if (config_setting_type(l) != CONFIG_TYPE_STRING)
      return pm_cfg_fail(c, l, path, "expected a string, got %s",
                         pm_confmsg_type(config_setting_type(l)));
    value = config_setting_get_string(l);
    if (strcmp(key, "collector") == 0)
      return pm_cfg_fail(
          c, l, path,
          "label key \"collector\" is reserved (the daemon sets it "
          "to the collector's name)");
    if (!pm_label_key_valid(key))
      return pm_cfg_fail(
          c, l, path,
          "invalid label key \"%s\" (expected [a-z][a-z0-9_]*, at "
          "most %d bytes)",
          key, PM_LABEL_KEY_MAX);
    if (!pm_label_value_valid(value))
      return pm_cfg_fail(
          c, l, path,
          "invalid label value (expected printable UTF-8, 1 to %d "
          "bytes)",
          PM_LABEL_VALUE_MAX);
    if (i + 1 >= PM_LABELS_MAX)
      return pm_cfg_fail(c, l, path,
                         "too many labels (at most %d: the daemon adds "
                         "\"collector\")",
                         PM_LABELS_MAX - 1);
    col->labels[i].key = strdup(key);
    col->labels[i].value = strdup(value);
    col->n_labels++;
    if (!col->labels[i].key || !col->labels[i].value)
      return pm_cfg_oom(c);
  }
  /* The same rule emit applies, so a config never makes every sample of
   * a collector invalid. */
  if (pm_labelset_build(&ls, col->labels, col->n_labels, NULL, 0, col->name) !=
      0)
    return pm_cfg_fail(c, s, gpath,
                       "labels too long together (at most %d bytes of keys and "
                       "values, collector=\"%s\" included)",
                       PM_LABELS_BYTES_MAX, col->name);
  return 0;
}

static int load_collector(pm_cfgctx_t *c, const config_setting_t *g,
                          size_t idx) {
  pm_config_t *cfg = c->cfg;
  pm_collector_conf_t *col = &cfg->collectors[idx];
  char cpath[PATH_LEN], path[PATH_LEN], a[32], b[32], vbuf[80];
  const config_setting_t *s, *to;
  long long max_series = DEFAULT_MAX_SERIES;
  int rc;

  snprintf(cpath, sizeof(cpath), "collectors.[%zu]", idx);
  col->line = config_setting_source_line(g);
  col->interval_us = DEFAULT_INTERVAL_US;
  col->max_series = DEFAULT_MAX_SERIES;
  if (config_setting_type(g) != CONFIG_TYPE_GROUP)
    return pm_cfg_fail(c, g, cpath,
                       "expected a group { name = ...; ... }, got %s",
                       pm_confmsg_type(config_setting_type(g)));
  if ((rc = pm_cfg_check_keys(c, g, cpath, collector_keys)) != 0)
    return rc;

  if ((rc = pm_cfg_get_string(c, g, cpath, "name", 1, &col->name, &s)) != 0)
    return rc;
  pm_confmsg_join(path, sizeof(path), cpath, "name");
  if (!pm_cfg_name_valid(col->name, "_.-", NAME_MAX_LEN))
    return pm_cfg_fail(
        c, s, path,
        "invalid collector name \"%s\" (expected [a-z0-9][a-z0-9_.-]*, "
        "at most %d bytes)",
        pm_confmsg_show(col->name, vbuf, sizeof(vbuf)), NAME_MAX_LEN);
  /* The daemon reports its own health under this collector name. */
  if (strcmp(col->name, "portalmetricsd") == 0)
    return pm_cfg_fail(
        c, s, path,
        "the collector name \"portalmetricsd\" is reserved for the "
        "daemon's own metrics");
  for (size_t i = 0; i < idx; i++)
    if (strcmp(cfg->collectors[i].name, col->name) == 0)
      return pm_cfg_fail(c, s, path,
                         "duplicate collector name \"%s\" (first at line %d)",
                         col->name, cfg->collectors[i].line);

  if ((rc = pm_cfg_get_string(c, g, cpath, "plugin", 1, &col->plugin, &s)) != 0)
    return rc;
  pm_confmsg_join(path, sizeof(path), cpath, "plugin");
  /* It becomes a file name under plugin_dir: no '/', no "..". */
  if (!pm_cfg_name_valid(col->plugin, "_-", NAME_MAX_LEN))
    return pm_cfg_fail(
        c, s, path,
        "invalid plugin name \"%s\" (expected [a-z0-9][a-z0-9_-]*: "
        "the plugin's file name without .so)",
        pm_confmsg_show(col->plugin, vbuf, sizeof(vbuf)));

  if ((rc = pm_cfg_get_duration(c, g, cpath, "interval", 1, &col->interval_us,
                                NULL)) != 0)
    return rc;
  col->timeout_us = col->interval_us;
  if ((rc = pm_cfg_get_duration(c, g, cpath, "timeout", 1, &col->timeout_us,
                                &to)) != 0)
    return rc;
  /* Runs never overlap: a timeout past the interval would skip runs. */
  if (to && col->timeout_us > col->interval_us) {
    pm_confmsg_join(path, sizeof(path), cpath, "timeout");
    pm_format_duration(col->timeout_us, a, sizeof(a));
    pm_format_duration(col->interval_us, b, sizeof(b));
    return pm_cfg_fail(c, to, path, "timeout (%s) is longer than interval (%s)",
                       a, b);
  }

  if ((rc = load_labels(c, col, g, cpath)) != 0)
    return rc;
  if ((rc = get_int(c, g, cpath, "max_series", 1, INT64_MAX, &max_series)) != 0)
    return rc;
  col->max_series = (size_t)max_series;

  if ((rc = pm_cfg_typed(c, g, cpath, "settings", CONFIG_TYPE_GROUP,
                         "a group { ... }", &s, path, sizeof(path))) != 0)
    return rc;
  if (!s) {
    /* An empty block at the collector's line, so that a plugin's
     * "required setting missing" still names a line. */
    config_setting_t *e = config_setting_add((config_setting_t *)g, "settings",
                                             CONFIG_TYPE_GROUP);
    if (!e)
      return pm_cfg_oom(c);
    e->line = g->line;
    e->file = g->file;
    s = e;
  }
  col->settings = s;
  if (pm_cfg_set_str(c, &col->settings_path, path) != 0)
    return PM_ENOMEM;

  if ((rc = pm_cfg_typed(c, g, cpath, "isolate", CONFIG_TYPE_BOOL,
                         "a boolean (true or false)", &s, path,
                         sizeof(path))) != 0)
    return rc;
  if (s && config_setting_get_bool(s))
    return pm_cfg_fail(c, s, path,
                       "not supported yet (a later release runs a collector in "
                       "its own process)");
  return 0;
}

static int load_collectors(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  const config_setting_t *root = config_root_setting(&cfg->cfg);
  const config_setting_t *l = config_setting_get_member(root, "collectors");
  int n, t, rc;

  if (!l)
    return 0;
  t = config_setting_type(l);
  n = config_setting_length(l);
  /* Groups can only sit in a list ( ); an empty array [ ] is harmless. */
  if (t != CONFIG_TYPE_LIST && !(t == CONFIG_TYPE_ARRAY && n == 0))
    return pm_cfg_fail(c, l, "collectors",
                       "expected a list of groups ( { ... }, { ... } ), got %s",
                       pm_confmsg_type(t));
  if (n == 0)
    return 0;
  cfg->collectors = calloc((size_t)n, sizeof(*cfg->collectors));
  if (!cfg->collectors)
    return pm_cfg_oom(c);
  for (int i = 0; i < n; i++) {
    cfg->n_collectors++;
    if ((rc = load_collector(c, config_setting_get_elem(l, (unsigned)i),
                             (size_t)i)) != 0)
      return rc;
  }
  return 0;
}

static int set_defaults(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  char host[256];

  if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  if (pm_cfg_set_str(c, &cfg->id, host) ||
      pm_cfg_set_str(c, &cfg->state_dir, DEFAULT_STATE_DIR) ||
      pm_cfg_set_str(c, &cfg->plugin_dir, PM_PLUGIN_DIR) ||
      pm_cfg_set_str(c, &cfg->timezone, DEFAULT_TIMEZONE))
    return PM_ENOMEM;
  cfg->log_level = PM_LOG_INFO;
  cfg->flush_interval_us = DEFAULT_FLUSH_INTERVAL_US;
  cfg->retention_us = 0;
  cfg->max_sample_age_us = DEFAULT_MAX_SAMPLE_AGE_US;
  cfg->connect_timeout_us = DEFAULT_CONNECT_TIMEOUT_US;
  cfg->statement_timeout_us = DEFAULT_STATEMENT_TIMEOUT_US;
  cfg->batch_max = DEFAULT_BATCH_MAX;
  cfg->drain_timeout_us = DEFAULT_DRAIN_TIMEOUT_US;
  cfg->spool_max_size = DEFAULT_SPOOL_MAX_SIZE;
  /* No added wait: appends that arrive while a group is being written
   * share the next fsync anyway, and a listener that keeps one message in
   * flight (HL7) waited 2 ms more per message for nothing. */
  cfg->spool_commit_delay_us = 0;
  cfg->dedup_window_us = 7 * 86400 * INT64_C(1000000);
  return 0;
}

static int check(pm_cfgctx_t *c) {
  const config_setting_t *root = config_root_setting(&c->cfg->cfg);
  int rc;

  if ((rc = set_defaults(c)) != 0 ||
      (rc = pm_cfg_check_keys(c, root, "", top_keys)) != 0)
    return rc;
  if ((rc = load_daemon(c)) != 0 || (rc = load_database(c)) != 0 ||
      (rc = load_spool(c)) != 0 || (rc = load_collectors(c)) != 0 ||
      (rc = pm_cfg_load_alerts(c)) != 0)
    return rc;
  return 0;
}

/* A libconfig read failure as one line; PM_EIO if the file itself could
 * not be read. */
static int read_error(pm_cfgctx_t *c) {
  config_t *cfg = &c->cfg->cfg;
  const char *file = config_error_file(cfg) ? config_error_file(cfg) : c->file;

  if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
    if (c->err && c->errlen)
      snprintf(c->err, c->errlen, "%s: cannot read: %s", file,
               config_error_text(cfg));
    return PM_EIO;
  }
  if (c->err && c->errlen)
    snprintf(c->err, c->errlen, "%s:%d: %s", file,
             config_error_line(cfg) > 0 ? config_error_line(cfg) : 1,
             config_error_text(cfg));
  return PM_ECONFIG;
}

static int load(const char *path, const char *text, const char *name,
                pm_config_t **out, char *err, size_t errlen) {
  pm_cfgctx_t c = {
      .file = name, .from_file = text == NULL, .err = err, .errlen = errlen};
  pm_config_t *cfg;
  char *dir = NULL, *slash;
  int rc, ok;

  if (err && errlen)
    err[0] = '\0';
  *out = NULL;
  cfg = calloc(1, sizeof(*cfg));
  if (!cfg || !(cfg->file = strdup(name))) {
    free(cfg);
    return pm_cfg_oom(&c);
  }
  c.cfg = cfg;
  config_init(&cfg->cfg);
  if (path) {
    /* @include paths are relative to the config file, not to the
     * daemon's working directory. */
    if (!(dir = strdup(path))) {
      pm_config_free(cfg);
      return pm_cfg_oom(&c);
    }
    slash = strrchr(dir, '/');
    if (slash)
      *(slash == dir ? slash + 1 : slash) = '\0';
    config_set_include_dir(&cfg->cfg, slash ? dir : ".");
    ok = config_read_file(&cfg->cfg, path);
    free(dir);
  } else {
    ok = config_read_string(&cfg->cfg, text);
  }
  rc = ok ? check(&c) : read_error(&c);
  if (rc != 0) {
    pm_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

int pm_config_load(const char *path, pm_config_t **out, char *err,
                   size_t errlen) {
  int rc;

  if (!path || !out)
    return PM_EINVAL;
  /* Whoever can write the config decides which code the daemon loads. */
  if ((rc = pm_path_check_owner(path, err, errlen)) != 0)
    return rc;
  return load(path, NULL, path, out, err, errlen);
}

int pm_config_load_string(const char *text, const char *name, pm_config_t **out,
                          char *err, size_t errlen) {
  if (!text || !out)
    return PM_EINVAL;
  return load(NULL, text, name ? name : "(string)", out, err, errlen);
}

void pm_config_free(pm_config_t *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n_collectors; i++) {
    pm_collector_conf_t *col = &cfg->collectors[i];
    for (size_t j = 0; j < col->n_labels; j++) {
      free((char *)col->labels[j].key);
      free((char *)col->labels[j].value);
    }
    free(col->labels);
    free(col->name);
    free(col->plugin);
    free(col->settings_path);
  }
  free(cfg->collectors);
  pm_cfg_free_alerts(cfg);
  free(cfg->id);
  free(cfg->state_dir);
  free(cfg->plugin_dir);
  free(cfg->timezone);
  free(cfg->conninfo);
  free(cfg->password_file);
  free(cfg->file);
  config_destroy(&cfg->cfg);
  free(cfg);
}

const pm_collector_conf_t *pm_config_collector(const pm_config_t *cfg,
                                               const char *name) {
  for (size_t i = 0; cfg && name && i < cfg->n_collectors; i++)
    if (cfg->collectors[i].name && strcmp(cfg->collectors[i].name, name) == 0)
      return &cfg->collectors[i];
  return NULL;
}

static int is_int(int t) {
  return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

/* Same meaning, not same text: 1 and 1L are equal, and so are groups
 * whose members come in another order. */
static int setting_equal(const config_setting_t *a, const config_setting_t *b) {
  int ta, tb, n;

  if (!a || !b) {
    const config_setting_t *s = a ? a : b;
    /* Absent and empty both mean "no settings". */
    return !s || (config_setting_is_group(s) && config_setting_length(s) == 0);
  }
  ta = config_setting_type(a);
  tb = config_setting_type(b);
  if (is_int(ta) && is_int(tb))
    return config_setting_get_int64(a) == config_setting_get_int64(b);
  if (ta != tb)
    return 0;
  switch (ta) {
  case CONFIG_TYPE_FLOAT:
    return config_setting_get_float(a) == config_setting_get_float(b);
  case CONFIG_TYPE_STRING:
    return strcmp(config_setting_get_string(a), config_setting_get_string(b)) ==
           0;
  case CONFIG_TYPE_BOOL:
    return !config_setting_get_bool(a) == !config_setting_get_bool(b);
  case CONFIG_TYPE_GROUP:
    n = config_setting_length(a);
    if (n != config_setting_length(b))
      return 0;
    for (int i = 0; i < n; i++) {
      const config_setting_t *m = config_setting_get_elem(a, (unsigned)i);
      const config_setting_t *o =
          config_setting_get_member(b, config_setting_name(m));
      if (!o || !setting_equal(m, o))
        return 0;
    }
    return 1;
  case CONFIG_TYPE_ARRAY:
  case CONFIG_TYPE_LIST:
    n = config_setting_length(a);
    if (n != config_setting_length(b))
      return 0;
    for (int i = 0; i < n; i++)
      if (!setting_equal(config_setting_get_elem(a, (unsigned)i),
                         config_setting_get_elem(b, (unsigned)i)))
        return 0;
    return 1;
  default:
    return 1;
  }
}

int pm_collector_conf_equal(const pm_collector_conf_t *a,
                            const pm_collector_conf_t *b) {
  if (!a || !b)
    return a == b;
  if (strcmp(a->plugin, b->plugin) != 0 || a->interval_us != b->interval_us ||
      a->timeout_us != b->timeout_us || a->max_series != b->max_series ||
      a->n_labels != b->n_labels)
    return 0;
  /* Labels as a set: reordering them in the file changes nothing. */
  for (size_t i = 0; i < a->n_labels; i++) {
    size_t j;
    for (j = 0; j < b->n_labels; j++)
      if (strcmp(a->labels[i].key, b->labels[j].key) == 0)
        break;
    if (j == b->n_labels || strcmp(a->labels[i].value, b->labels[j].value))
      return 0;
  }
  return setting_equal(a->settings, b->settings);
}

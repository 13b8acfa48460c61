/*
 * The config file (daemon/config.h). Each mistake has its own fixture in
 * data/config/ with the offending line marked "# ERROR"; the test checks
 * the return code and that the one-line message names the file, that
 * line and the setting path. Fixtures are copied to a private directory
 * with a chosen mode, because the loader refuses files that others can
 * write and the checkout's umask is not ours to choose.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "fileperm.h"
#include "log.h"
#include "units.h"

/* The fixtures: PM_TEST_DATA/config when PM_TEST_DATA is tests/unit/data,
 * else data/config beside this source file (found once, in setup). */
static char fixtures[256];
#define FIXTURES fixtures
#define S INT64_C(1000000)

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  char *slash;
  (void)state;

  snprintf(fixtures, sizeof(fixtures), "%s/config", PM_TEST_DATA);
  if (access(fixtures, R_OK) != 0) {
    snprintf(fixtures, sizeof(fixtures), "%s", __FILE__);
    slash = strrchr(fixtures, '/');
    snprintf(slash ? slash + 1 : fixtures,
             sizeof(fixtures) - (size_t)(slash ? slash + 1 - fixtures : 0),
             "data/config");
  }
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/pm_test_config.XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Copies fixture `name` into tmpdir with `mode`; its new path in dst. */
static void copy_fixture(const char *name, mode_t mode, char *dst,
                         size_t dstlen) {
  char src[512], buf[4096];
  FILE *in, *out;
  size_t n;

  snprintf(src, sizeof(src), "%s/%s", FIXTURES, name);
  snprintf(dst, dstlen, "%s/%s", tmpdir, name);
  in = fopen(src, "r");
  if (!in)
    fail_msg("%s: %s", src, strerror(errno));
  out = fopen(dst, "w");
  assert_non_null(out);
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
  assert_int_equal(chmod(dst, mode), 0);
}

/* The line of fixture `name` that contains `marker`. */
static int marked_line(const char *name, const char *marker) {
  char path[512], line[1024];
  FILE *f;
  int n = 0;

  snprintf(path, sizeof(path), "%s/%s", FIXTURES, name);
  f = fopen(path, "r");
  assert_non_null(f);
  while (fgets(line, sizeof(line), f)) {
    n++;
    if (strstr(line, marker)) {
      fclose(f);
      return n;
    }
  }
  fclose(f);
  fail_msg("%s has no line marked \"%s\"", name, marker);
  return -1;
}

static int load(const char *name, mode_t mode, pm_config_t **cfg, char *err,
                size_t errlen, char *path, size_t pathlen) {
  copy_fixture(name, mode, path, pathlen);
  return pm_config_load(path, cfg, err, errlen);
}

/*
 * Loads `name` and expects rc with a message that starts with
 * "FILE:LINE: SETTING: " (FILE: the copy in tmpdir, or `msgfile` in it;
 * LINE: the "# ERROR" line) and contains `text`.
 */
static void expect_error_in(const char *name, const char *msgfile, int rc_want,
                            const char *setting, const char *text) {
  char path[512], err[1024], prefix[1024];
  pm_config_t *cfg = (pm_config_t *)0x1;
  int rc;

  err[0] = '\0';
  rc = load(name, 0640, &cfg, err, sizeof(err), path, sizeof(path));
  if (rc != rc_want)
    fail_msg("%s: rc %d, want %d (%s)", name, rc, rc_want, err);
  assert_null(cfg);
  if (msgfile)
    snprintf(path, sizeof(path), "%s/%s", tmpdir, msgfile);
  if (setting)
    snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", path,
             marked_line(msgfile ? msgfile : name, "# ERROR"), setting);
  else
    snprintf(prefix, sizeof(prefix), "%s:%d: ", path,
             marked_line(msgfile ? msgfile : name, "# ERROR"));
  if (strncmp(err, prefix, strlen(prefix)) != 0)
    fail_msg("%s: message\n  \"%s\"\ndoes not start with\n  \"%s\"", name, err,
             prefix);
  if (!strstr(err, text))
    fail_msg("%s: message \"%s\" does not say \"%s\"", name, err, text);
  if (strchr(err, '\n'))
    fail_msg("%s: message is not one line: \"%s\"", name, err);
}

static void expect_error(const char *name, const char *setting,
                         const char *text) {
  expect_error_in(name, NULL, PM_ECONFIG, setting, text);
}

#define ERROR_TEST(fn, fixture, setting, text)                                 \
  static void fn(void **state) {                                               \
    (void)state;                                                               \
    expect_error(fixture, setting, text);                                      \
  }

/* ---------------------------------------------------------------------
 * Good configs
 * ------------------------------------------------------------------- */

static void test_good_full(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  const pm_collector_conf_t *c;
  (void)state;

  if (load("good.conf", 0640, &cfg, err, sizeof(err), path, sizeof(path)))
    fail_msg("%s", err);
  assert_string_equal(cfg->file, path);
  assert_string_equal(cfg->id, "north-clinic-1");
  assert_string_equal(cfg->state_dir, "/var/lib/portalmetrics-test");
  assert_string_equal(cfg->plugin_dir, "/opt/pm/plugins");
  assert_string_equal(cfg->timezone, "America/Denver");
  assert_int_equal(cfg->log_level, PM_LOG_DEBUG);
  assert_string_equal(
      cfg->conninfo,
      "host=db dbname=portal user=portalmetrics sslmode=verify-full");
  assert_string_equal(cfg->password_file, "/etc/portalmetrics/db.password");
  assert_int_equal(cfg->flush_interval_us, 250000);
  assert_int_equal(cfg->retention_us, 3 * 365 * 86400 * S);
  assert_int_equal(cfg->max_sample_age_us, 400 * 86400 * S);
  assert_int_equal(cfg->connect_timeout_us, 5 * S);
  assert_int_equal(cfg->statement_timeout_us, 30 * S);
  assert_int_equal(cfg->batch_max, 20000);
  assert_int_equal(cfg->drain_timeout_us, 15 * S);
  assert_int_equal(cfg->spool_max_size, UINT64_C(512) << 20);

  assert_int_equal(cfg->n_collectors, 3);
  c = &cfg->collectors[0];
  assert_string_equal(c->name, "epic");
  assert_string_equal(c->plugin, "fhir");
  assert_int_equal(c->interval_us, 15 * 60 * S);
  assert_int_equal(c->timeout_us, 2 * 60 * S);
  assert_int_equal(c->n_labels, 2);
  assert_string_equal(c->labels[0].key, "clinic");
  assert_string_equal(c->labels[0].value, "north");
  assert_string_equal(c->labels[1].key, "site");
  assert_string_equal(c->labels[1].value, "main");
  assert_int_equal(c->max_series, 500);
  assert_int_equal(c->line, 22);
  assert_non_null(c->settings);
  assert_string_equal(c->settings_path, "collectors.[0].settings");
  assert_string_equal(config_setting_get_string(
                          config_setting_get_member(c->settings, "base_url")),
                      "https://fhir.example.org/R4");

  c = &cfg->collectors[1];
  assert_string_equal(c->name, "adt");
  assert_int_equal(c->interval_us, 60 * S); /* default */
  assert_int_equal(c->timeout_us, 60 * S);  /* default: the interval */
  assert_int_equal(c->max_series, 10000);
  assert_string_equal(c->settings_path, "collectors.[1].settings");

  c = &cfg->collectors[2];
  assert_string_equal(c->name, "demo.v2-b");
  assert_int_equal(c->n_labels, 0);
  assert_null(c->labels);

  assert_ptr_equal(pm_config_collector(cfg, "adt"), &cfg->collectors[1]);
  assert_null(pm_config_collector(cfg, "nope"));
  pm_config_free(cfg);
}

static void test_defaults(void **state) {
  char path[512], err[1024] = "", host[256] = "";
  pm_config_t *cfg = NULL;
  (void)state;

  if (load("minimal.conf", 0644, &cfg, err, sizeof(err), path, sizeof(path)))
    fail_msg("%s", err);
  gethostname(host, sizeof(host));
  assert_string_equal(cfg->id, host);
  assert_string_equal(cfg->state_dir, "/var/lib/portalmetrics");
  assert_string_equal(cfg->plugin_dir, PM_PLUGIN_DIR);
  assert_string_equal(cfg->timezone, "UTC");
  assert_int_equal(cfg->log_level, PM_LOG_INFO);
  assert_null(cfg->password_file);
  assert_int_equal(cfg->flush_interval_us, 500000);
  assert_int_equal(cfg->retention_us, 0);
  assert_int_equal(cfg->max_sample_age_us, 400 * 86400 * S);
  assert_int_equal(cfg->connect_timeout_us, 10 * S);
  assert_int_equal(cfg->statement_timeout_us, 60 * S);
  assert_int_equal(cfg->batch_max, 50000);
  assert_int_equal(cfg->drain_timeout_us, 10 * S);
  assert_int_equal(cfg->spool_max_size, UINT64_C(2) << 30);
  assert_int_equal(cfg->spool_segment_size, UINT64_C(64) << 20);
  assert_int_equal(cfg->spool_commit_delay_us, 0);
  assert_int_equal(cfg->dedup_window_us, 7 * 86400 * S);
  assert_int_equal(cfg->n_collectors, 0);
  assert_int_equal(cfg->alerts_interval_us, 30 * S);
  assert_int_equal(cfg->n_targets, 0);
  assert_null(cfg->targets);
  assert_int_equal(cfg->n_notifiers, 0);
  assert_null(cfg->notifiers);
  assert_null(pm_config_target(cfg, "enrollment"));
  assert_null(pm_config_notifier(cfg, "ops"));
  pm_config_free(cfg);
}

/* A collector without `settings` still gets a block, at its own line, so
 * a plugin's "required setting missing" names a line. */
static void test_settings_absent_is_empty_group(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  const config_setting_t *s;
  (void)state;

  if (load("settings_absent.conf", 0640, &cfg, err, sizeof(err), path,
           sizeof(path)))
    fail_msg("%s", err);
  s = cfg->collectors[1].settings;
  assert_non_null(s);
  assert_true(config_setting_is_group(s));
  assert_int_equal(config_setting_length(s), 0);
  assert_int_equal(config_setting_source_line(s),
                   marked_line("settings_absent.conf", "# ERROR"));
  assert_int_equal(cfg->collectors[1].line,
                   marked_line("settings_absent.conf", "# ERROR"));
  pm_config_free(cfg);
}

static void test_collector_conf_equal(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *a = NULL, *b = NULL;
  (void)state;

  if (load("equal_a.conf", 0640, &a, err, sizeof(err), path, sizeof(path)) ||
      load("equal_b.conf", 0640, &b, err, sizeof(err), path, sizeof(path)))
    fail_msg("%s", err);
  /* Reordered keys and labels, 1 vs 1L, "1m" vs "60s", absent vs empty
   * settings: the same collector. */
  assert_true(pm_collector_conf_equal(pm_config_collector(a, "a"),
                                      pm_config_collector(b, "a")));
  assert_true(pm_collector_conf_equal(pm_config_collector(a, "b"),
                                      pm_config_collector(b, "b")));
  /* A changed setting or label: restart it. */
  assert_false(pm_collector_conf_equal(pm_config_collector(a, "c"),
                                       pm_config_collector(b, "c")));
  assert_false(pm_collector_conf_equal(pm_config_collector(a, "d"),
                                       pm_config_collector(b, "d")));
  assert_false(pm_collector_conf_equal(pm_config_collector(a, "a"),
                                       pm_config_collector(a, "b")));
  pm_config_free(a);
  pm_config_free(b);
}

/* The segment size follows the cap: an eighth, within 4KiB..64MiB. */
static void test_segment_default(void **state) {
  static const struct {
    const char *max;
    uint64_t seg;
  } cases[] = {{"1GiB", UINT64_C(64) << 20},
               {"64MiB", UINT64_C(8) << 20},
               {"64KiB", 8192},
               {"16KiB", 4096}};
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[256], err[512] = "";
    pm_config_t *cfg = NULL;
    snprintf(text, sizeof(text),
             "database = { conninfo = \"dbname=x\"; };\n"
             "spool = { max_size = \"%s\"; };\n",
             cases[i].max);
    if (pm_config_load_string(text, "mem.conf", &cfg, err, sizeof(err)) != 0)
      fail_msg("%s: %s", cases[i].max, err);
    assert_int_equal(cfg->spool_segment_size, cases[i].seg);
    pm_config_free(cfg);
  }
}

static void test_isolate_false_is_fine(void **state) {
  pm_config_t *cfg = NULL;
  char err[512] = "";
  (void)state;
  assert_int_equal(
      pm_config_load_string("database = { conninfo = \"dbname=x\"; };\n"
                            "collectors = ( { name = \"a\"; plugin = \"demo\";"
                            " isolate = false; } );\n",
                            "mem.conf", &cfg, err, sizeof(err)),
      0);
  pm_config_free(cfg);
}

static void test_load_string(void **state) {
  pm_config_t *cfg = NULL;
  char err[512] = "";
  int rc;
  (void)state;

  rc = pm_config_load_string("database = { conninfo = \"dbname=x\"; };\n"
                             "daemon = { id = \"b\"; };",
                             "mem.conf", &cfg, err, sizeof(err));
  assert_int_equal(rc, 0);
  assert_string_equal(cfg->id, "b");
  assert_string_equal(cfg->file, "mem.conf");
  pm_config_free(cfg);

  rc = pm_config_load_string("database = { conninfo = \"dbname=x\"; };\n"
                             "daemon = { id = 7; };",
                             "mem.conf", &cfg, err, sizeof(err));
  assert_int_equal(rc, PM_ECONFIG);
  assert_null(cfg);
  assert_string_equal(err, "mem.conf:2: daemon.id: expected a string, got an "
                           "integer");

  /* No file mode vouches for an inline password. */
  rc = pm_config_load_string(
      "database = { conninfo = \"dbname=x password=y\"; };", "mem.conf", &cfg,
      err, sizeof(err));
  assert_int_equal(rc, PM_ECONFIG);
  assert_non_null(strstr(err, "mem.conf:1: database.conninfo: a password"));

  /* A short buffer truncates, never overflows. */
  rc = pm_config_load_string("x = 1;", "mem.conf", &cfg, err, 8);
  assert_int_equal(rc, PM_ECONFIG);
  assert_int_equal(strlen(err), 7);
  assert_int_equal(pm_config_load_string("x = 1;", "m", &cfg, NULL, 0),
                   PM_ECONFIG);
}

/* A value echoed in a message can neither break its line nor leak a
 * password that libpq would quote. */
static void test_messages_stay_one_line_and_secret(void **state) {
  pm_config_t *cfg = NULL;
  char err[1024] = "";
  (void)state;

  assert_int_equal(
      pm_config_load_string("database = { conninfo = \"dbname=x\";\n"
                            "  flush_interval = \"5\\nparsecs\"; };",
                            "mem.conf", &cfg, err, sizeof(err)),
      PM_ECONFIG);
  assert_string_equal(err, "mem.conf:2: database.flush_interval: invalid "
                           "duration \"5?parsecs\" (examples: \"500ms\", "
                           "\"15m\", \"1h30m\", \"2d\")");

  assert_int_equal(
      pm_config_load_string("database = { conninfo = \"host=db password=s3cr3t "
                            "x9z\"; };",
                            "mem.conf", &cfg, err, sizeof(err)),
      PM_ECONFIG);
  assert_non_null(strstr(err, "mem.conf:1: database.conninfo: invalid "
                              "conninfo"));
  assert_null(strstr(err, "x9z"));

  /* Without a secret in sight, libpq's own words help. */
  assert_int_equal(
      pm_config_load_string("database = { conninfo = \"host=db dbname\"; };",
                            "mem.conf", &cfg, err, sizeof(err)),
      PM_ECONFIG);
  assert_non_null(strstr(err, "missing \"=\" after \"dbname\""));
}

/* ---------------------------------------------------------------------
 * Mistakes: syntax, unknown keys, types, values, required keys
 * ------------------------------------------------------------------- */

static void test_syntax_error(void **state) {
  (void)state;
  expect_error("syntax.conf", NULL, "syntax error");
}

ERROR_TEST(test_unknown_top_level, "unknown_top.conf", "colectors",
           "unknown setting (expected one of: daemon, database")
ERROR_TEST(test_unknown_in_daemon, "unknown_daemon.conf", "daemon.loglevel",
           "unknown setting")
ERROR_TEST(test_unknown_in_database, "unknown_database.conf",
           "database.flush_intervall", "unknown setting")
ERROR_TEST(test_unknown_in_spool, "unknown_spool.conf", "spool.max",
           "unknown setting (expected one of: max_size, segment_size, "
           "commit_delay, dedup_window)")
ERROR_TEST(test_unknown_in_collector, "unknown_collector.conf",
           "collectors.[1].intervall", "unknown setting")

ERROR_TEST(test_type_string, "type_string.conf", "daemon.state_dir",
           "expected a string, got an integer")
ERROR_TEST(test_type_duration, "type_duration.conf", "database.flush_interval",
           "expected a duration string like \"15m\", got an integer")
ERROR_TEST(test_type_group, "type_group.conf", "daemon",
           "expected a group { ... }, got a string")
ERROR_TEST(test_type_collectors, "type_collectors.conf", "collectors",
           "expected a list of groups")
ERROR_TEST(test_type_label_value, "type_label.conf",
           "collectors.[0].labels.clinic", "expected a string, got an integer")
ERROR_TEST(test_type_max_series, "type_max_series.conf",
           "collectors.[0].max_series", "expected an integer, got a string")
ERROR_TEST(test_type_batch_size, "type_batch_size.conf", "database.batch_size",
           "expected an integer, got a float")

ERROR_TEST(test_bad_duration, "bad_duration.conf", "database.flush_interval",
           "invalid duration \"5 parsecs\"")
ERROR_TEST(test_bad_segment_size, "bad_segment_size.conf", "spool.segment_size",
           "at most half of spool.max_size")
ERROR_TEST(test_bad_size, "bad_size.conf", "spool.max_size",
           "invalid size \"2GB5\"")
ERROR_TEST(test_interval_zero, "interval_zero.conf", "collectors.[0].interval",
           "must be greater than 0")
ERROR_TEST(test_timeout_longer_than_interval, "timeout_gt_interval.conf",
           "collectors.[1].timeout",
           "timeout (5m) is longer than interval (1m)")
ERROR_TEST(test_unknown_log_level, "log_level.conf", "daemon.log_level",
           "unknown log level \"verbose\"")
ERROR_TEST(test_unknown_timezone, "timezone.conf", "daemon.timezone",
           "unknown time zone \"Mars/Olympus_Mons\"")
ERROR_TEST(test_timezone_path_escape, "timezone_dotdot.conf", "daemon.timezone",
           "unknown time zone")
ERROR_TEST(test_label_key_invalid, "label_key.conf",
           "collectors.[0].labels.Site", "invalid label key \"Site\"")
ERROR_TEST(test_label_key_reserved, "label_reserved.conf",
           "collectors.[0].labels.collector",
           "label key \"collector\" is reserved")
ERROR_TEST(test_label_value_invalid, "label_value.conf",
           "collectors.[0].labels.clinic", "invalid label value")
ERROR_TEST(test_label_too_many, "label_too_many.conf",
           "collectors.[0].labels.a16", "too many labels (at most 15")
ERROR_TEST(test_collector_name_invalid, "collector_name.conf",
           "collectors.[0].name", "invalid collector name \"Epic!\"")
ERROR_TEST(test_plugin_name_invalid, "plugin_name.conf",
           "collectors.[0].plugin", "invalid plugin name \"../../tmp/evil\"")
ERROR_TEST(test_max_series_zero, "max_series_zero.conf",
           "collectors.[0].max_series", "must be at least 1")
ERROR_TEST(test_batch_size_zero, "batch_size_zero.conf", "database.batch_size",
           "must be at least 1")
ERROR_TEST(test_retention_shorter_than_max_age, "retention_short.conf",
           "database.retention",
           "retention (30d) is shorter than max_sample_age (400d)")
ERROR_TEST(test_conninfo_unparsable, "conninfo_bad.conf", "database.conninfo",
           "invalid conninfo")

static void test_collector_name_duplicate(void **state) {
  char text[128];
  (void)state;
  snprintf(text, sizeof(text),
           "duplicate collector name \"epic\" (first at line %d)",
           marked_line("collector_duplicate.conf", "# FIRST"));
  expect_error("collector_duplicate.conf", "collectors.[2].name", text);
}

ERROR_TEST(test_missing_conninfo, "missing_conninfo.conf", "database.conninfo",
           "required setting missing")
ERROR_TEST(test_missing_database, "missing_database.conf", "database",
           "required setting missing")
ERROR_TEST(test_missing_collector_name, "missing_name.conf",
           "collectors.[1].name", "required setting missing")
ERROR_TEST(test_missing_collector_plugin, "missing_plugin.conf",
           "collectors.[0].plugin", "required setting missing")

ERROR_TEST(test_isolate_not_supported, "isolate.conf", "collectors.[0].isolate",
           "not supported yet")

/* ---------------------------------------------------------------------
 * Targets, notifiers and alerts
 * ------------------------------------------------------------------- */

/* Days since 1970-01-01 of a few dates used below. */
#define D_2026_09_01 20697
#define D_2026_12_31 20818
#define D_2027_06_30 20999

static void test_alerts_good(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  const pm_target_conf_t *t;
  const pm_notifier_conf_t *n;
  (void)state;

  if (load("alerts_good.conf", 0640, &cfg, err, sizeof(err), path,
           sizeof(path)))
    fail_msg("%s", err);
  assert_int_equal(cfg->alerts_interval_us, 15 * S);
  assert_int_equal(cfg->n_targets, 6);
  assert_int_equal(cfg->n_notifiers, 4);

  /* A ramp, every setting given. */
  t = pm_config_target(cfg, "enrollment");
  assert_ptr_equal(t, &cfg->targets[0]);
  assert_int_equal(t->line, marked_line("alerts_good.conf", "# ENROLLMENT"));
  assert_string_equal(t->title, "Portal enrollment at North Clinic");
  assert_string_equal(t->metric, "portal.patients_enrolled");
  assert_string_equal(t->per, "clinic.patients_seen");
  assert_int_equal(t->n_labels, 2);
  assert_string_equal(t->labels[0].key, "clinic");
  assert_string_equal(t->labels[0].value, "north");
  assert_string_equal(t->labels[1].key, "collector");
  assert_string_equal(t->labels[1].value, "north");
  assert_int_equal(t->window_days, 14);
  assert_int_equal(t->direction, PM_AT_LEAST);
  assert_int_equal(t->goal_kind, PM_GOAL_RAMP);
  assert_int_equal(t->n_goal, 2);
  assert_int_equal(t->goal[0].day, D_2026_09_01);
  assert_true(t->goal[0].value == 0.10);
  assert_int_equal(t->goal[1].day, D_2027_06_30);
  assert_true(t->goal[1].value == 0.60);
  assert_true(t->tolerance == 0.02);
  assert_int_equal(t->for_us, 2 * 86400 * S);
  assert_int_equal(t->clear_for_us, 86400 * S);
  assert_int_equal(t->stale_us, 2 * 3600 * S);
  assert_int_equal(t->repeat_us, 86400 * S);
  assert_int_equal(t->lookback_days, 56);
  assert_string_equal(t->severity, "critical");
  assert_int_equal(t->percent, 1);
  assert_int_equal(t->n_notify, 2);
  assert_string_equal(t->notify[0], "pager");
  assert_string_equal(t->notify[1], "ops");
  /* Keys sorted, reals with 17 digits, notify sorted (a set). */
  assert_string_equal(
      t->definition,
      "{\"clear_for_s\":86400,\"direction\":\"at_least\",\"for_s\":172800,"
      "\"format\":\"percent\",\"goal\":{\"kind\":\"ramp\",\"points\":["
      "{\"date\":\"2026-09-01\",\"value\":0.10000000000000001},"
      "{\"date\":\"2027-06-30\",\"value\":0.59999999999999998}]},"
      "\"labels\":{\"clinic\":\"north\",\"collector\":\"north\"},"
      "\"lookback_days\":56,\"metric\":\"portal.patients_enrolled\","
      "\"notify\":[\"ops\",\"pager\"],\"per\":\"clinic.patients_seen\","
      "\"repeat_s\":86400,\"severity\":\"critical\",\"stale_s\":7200,"
      "\"timezone\":\"America/Denver\",\"title\":\"Portal enrollment at "
      "North Clinic\",\"tolerance\":0.02,\"window_days\":14}");

  /* A fixed goal as a group; the defaults. */
  t = pm_config_target(cfg, "wait_time");
  assert_string_equal(t->title, "wait_time");
  assert_null(t->per);
  assert_int_equal(t->n_labels, 0);
  assert_int_equal(t->window_days, 7);
  assert_int_equal(t->direction, PM_AT_MOST);
  assert_int_equal(t->goal_kind, PM_GOAL_FIXED);
  assert_int_equal(t->n_goal, 1);
  assert_int_equal(t->goal[0].day, PM_NO_DAY);
  assert_true(t->goal[0].value == 30.0);
  assert_true(t->tolerance == 0.0);
  assert_int_equal(t->for_us, 1500000);
  assert_int_equal(t->clear_for_us, 0);
  assert_int_equal(t->stale_us, 0);
  assert_int_equal(t->repeat_us, 0);
  assert_int_equal(t->lookback_days, 28);
  assert_string_equal(t->severity, "warning");
  assert_int_equal(t->percent, 0); /* no per: a number */
  assert_int_equal(t->n_notify, 0);
  assert_string_equal(
      t->definition,
      "{\"clear_for_s\":0,\"direction\":\"at_most\",\"for_s\":1.5,"
      "\"format\":\"number\",\"goal\":{\"kind\":\"fixed\",\"points\":["
      "{\"date\":null,\"value\":30.0}]},\"labels\":{},\"lookback_days\":28,"
      "\"metric\":\"clinic.wait_minutes\",\"notify\":[],\"per\":null,"
      "\"repeat_s\":null,\"severity\":\"warning\",\"stale_s\":null,"
      "\"timezone\":\"America/Denver\",\"title\":\"wait_time\","
      "\"tolerance\":0.0,\"window_days\":7}");

  /* goal = 120; (an integer) */
  t = pm_config_target(cfg, "visits");
  assert_int_equal(t->goal_kind, PM_GOAL_FIXED);
  assert_int_equal(t->n_goal, 1);
  assert_int_equal(t->goal[0].day, PM_NO_DAY);
  assert_true(t->goal[0].value == 120.0);
  assert_string_equal(t->severity, "info");
  assert_int_equal(t->n_notify, 1);
  assert_string_equal(t->notify[0], "journal");

  /* goal = 0.25; a rate shown as a number; repeat = "0s" is never. */
  t = pm_config_target(cfg, "ratio.v2-b");
  assert_int_equal(t->goal_kind, PM_GOAL_FIXED);
  assert_true(t->goal[0].value == 0.25);
  assert_string_equal(t->per, "portal.patients_enrolled");
  assert_int_equal(t->percent, 0);
  assert_true(t->tolerance == 1.0);
  assert_int_equal(t->repeat_us, 0);

  /* Milestones; a rate is shown as percent by default. */
  t = pm_config_target(cfg, "milestones");
  assert_int_equal(t->goal_kind, PM_GOAL_MILESTONES);
  assert_int_equal(t->n_goal, 2);
  assert_int_equal(t->goal[0].day, D_2026_12_31);
  assert_true(t->goal[0].value == 0.25);
  assert_int_equal(t->goal[1].day, D_2027_06_30);
  assert_true(t->goal[1].value == 0.6);
  assert_int_equal(t->percent, 1);
  assert_non_null(strstr(t->definition,
                         "\"goal\":{\"kind\":\"milestones\",\"points\":["
                         "{\"date\":\"2026-12-31\",\"value\":0.25},"
                         "{\"date\":\"2027-06-30\",\"value\":"
                         "0.59999999999999998}]}"));
  t = pm_config_target(cfg, "one-milestone");
  assert_int_equal(t->goal_kind, PM_GOAL_MILESTONES);
  assert_int_equal(t->n_goal, 1);
  assert_int_equal(t->goal[0].day, 0);
  assert_non_null(strstr(t->definition, "\"date\":\"1970-01-01\""));
  assert_null(pm_config_target(cfg, "nope"));

  n = pm_config_notifier(cfg, "ops");
  assert_ptr_equal(n, &cfg->notifiers[0]);
  assert_int_equal(n->type, PM_NOTIFIER_WEBHOOK);
  assert_string_equal(n->url, "https://hooks.example.org/x");
  assert_int_equal(n->n_headers, 2);
  assert_string_equal(n->headers[0], "X-Team: portal");
  assert_string_equal(n->headers[1], "X-Env: prod");
  assert_string_equal(n->token_file, "/etc/portalmetrics/hook.token");
  assert_string_equal(n->ca_file, "/etc/ssl/x.pem");
  assert_null(n->command);
  assert_int_equal(n->timeout_us, 5 * S);
  assert_int_equal(n->give_up_us, 2 * 86400 * S);

  n = pm_config_notifier(cfg, "pager");
  assert_int_equal(n->type, PM_NOTIFIER_EXEC);
  assert_null(n->url);
  assert_int_equal(n->n_command, 3);
  assert_string_equal(n->command[0], "/usr/local/bin/page");
  assert_string_equal(n->command[1], "--team");
  assert_string_equal(n->command[2], "portal");
  assert_null(n->command[3]);
  assert_int_equal(n->timeout_us, 600 * S);
  assert_int_equal(n->give_up_us, 86400 * S);

  n = pm_config_notifier(cfg, "journal");
  assert_int_equal(n->type, PM_NOTIFIER_LOG);
  assert_int_equal(n->give_up_us, 3600 * S);

  n = pm_config_notifier(cfg, "hook2");
  assert_int_equal(n->type, PM_NOTIFIER_WEBHOOK);
  assert_string_equal(n->url, "http://127.0.0.1:8080/alerts");
  assert_int_equal(n->n_headers, 0);
  assert_null(n->headers);
  assert_null(n->token_file);
  assert_null(n->ca_file);
  assert_int_equal(n->timeout_us, 10 * S); /* webhook default */
  assert_int_equal(n->give_up_us, 86400 * S);
  assert_null(pm_config_notifier(cfg, "nope"));
  pm_config_free(cfg);
}

static void test_exec_timeout_default(void **state) {
  pm_config_t *cfg = NULL;
  char err[512] = "";
  (void)state;
  if (pm_config_load_string("database = { conninfo = \"dbname=x\"; };\n"
                            "notifiers = ( { name = \"p\"; type = \"exec\";"
                            " command = ( \"/bin/true\" ); } );\n",
                            "mem.conf", &cfg, err, sizeof(err)) != 0)
    fail_msg("%s", err);
  assert_int_equal(cfg->notifiers[0].timeout_us, 30 * S);
  assert_int_equal(cfg->notifiers[0].n_command, 1);
  pm_config_free(cfg);
}

/* The definition of the target in text (one target named "t"), with
 * `tz` as the daemon's time zone. */
static char *definition_of(const char *target, const char *tz) {
  char text[2048], err[512] = "";
  pm_config_t *cfg = NULL;
  char *def;

  snprintf(text, sizeof(text),
           "daemon = { timezone = \"%s\"; };\n"
           "database = { conninfo = \"dbname=x\"; };\n"
           "notifiers = ( { name = \"ops\"; type = \"log\"; },\n"
           "  { name = \"pager\"; type = \"log\"; } );\n"
           "targets = ( { name = \"t\"; %s } );\n",
           tz, target);
  if (pm_config_load_string(text, "mem.conf", &cfg, err, sizeof(err)) != 0)
    fail_msg("%s: %s", target, err);
  def = strdup(cfg->targets[0].definition);
  assert_non_null(def);
  pm_config_free(cfg);
  return def;
}

/* Same target, same bytes; any change, other bytes. */
static void test_definition_canonical(void **state) {
  /* One target, a setting a line. */
  static const char *const base[] = {
      "metric = \"m.a\";",
      "per = \"m.b\";",
      "labels = { a = \"1\"; b = \"2\"; };",
      ("goal = { start = \"2026-09-01\"; start_value = 0.1;"
       " due = \"2027-06-30\"; value = 0.6; };"),
      "tolerance = 0.02;",
      "for = \"2d\";",
      "clear_for = \"1d\";",
      "stale = \"2h\";",
      "notify = [ \"ops\", \"pager\" ];",
      "repeat = \"1d\";",
  };
  /* The same meaning in other words: defaults spelled out, durations in
   * other units, members, labels and notify in another order. */
  static const char same[] =
      "title = \"t\"; metric = \"m.a\"; per = \"m.b\";"
      " labels = { b = \"2\"; a = \"1\"; }; window = \"1w\";"
      " direction = \"at_least\"; goal = { due = \"2027-06-30\";"
      " value = 0.6; start = \"2026-09-01\"; start_value = 0.1; };"
      " tolerance = 0.02; for = \"48h\"; clear_for = \"86400s\";"
      " stale = \"120m\"; severity = \"warning\";"
      " notify = [ \"pager\", \"ops\" ]; repeat = \"24h\";"
      " lookback = \"4w\"; format = \"percent\";";
  /* Each differs from base in one setting (replaced, added or, with
   * an empty value, removed). */
  static const char *const changes[] = {
      "title = \"other\";",
      "metric = \"m.c\";",
      "per = \"m.c\";",
      "per",
      "labels = { a = \"1\"; };",
      "labels = { a = \"1\"; b = \"3\"; };",
      "labels",
      "window = \"8d\";",
      "direction = \"at_most\";",
      "goal = 0.6;",
      "goal = { start = \"2026-09-02\"; start_value = 0.1;"
      " due = \"2027-06-30\"; value = 0.6; };",
      "goal = { start = \"2026-09-01\"; start_value = 0.1;"
      " due = \"2027-06-30\"; value = 0.61; };",
      "goal = ( { date = \"2026-09-01\"; value = 0.1; },"
      " { date = \"2027-06-30\"; value = 0.6; } );",
      "tolerance = 0.03;",
      "for = \"2d1s\";",
      "clear_for = \"1d1ms\";",
      "stale = \"3h\";",
      "stale",
      "severity = \"critical\";",
      "notify = [ \"ops\" ];",
      "repeat = \"2d\";",
      "repeat",
      "lookback = \"29d\";",
      "format = \"number\";",
  };
  const size_t nbase = sizeof(base) / sizeof(base[0]);
  char text[2048], *a, *b, *c;
  (void)state;

  text[0] = '\0';
  for (size_t i = 0; i < nbase; i++) {
    strncat(text, base[i], sizeof(text) - strlen(text) - 1);
    strncat(text, " ", sizeof(text) - strlen(text) - 1);
  }
  a = definition_of(text, "UTC");
  b = definition_of(text, "UTC");
  assert_string_equal(a, b);
  free(b);
  b = definition_of(same, "UTC");
  assert_string_equal(a, b);
  free(b);
  b = definition_of(text, "America/Denver");
  assert_string_not_equal(a, b);
  free(b);
  /* A fixed goal, three ways. */
  b = definition_of("metric = \"m.a\"; goal = 1;", "UTC");
  c = definition_of("metric = \"m.a\"; goal = 1.0;", "UTC");
  assert_string_equal(b, c);
  free(c);
  c = definition_of("metric = \"m.a\"; goal = { value = 1; };", "UTC");
  assert_string_equal(b, c);
  free(c);
  free(b);

  for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
    size_t klen = strcspn(changes[i], " ");

    text[0] = '\0';
    for (size_t j = 0; j < nbase; j++) {
      if (strncmp(base[j], changes[i], klen) == 0 && base[j][klen] == ' ')
        continue;
      strncat(text, base[j], sizeof(text) - strlen(text) - 1);
      strncat(text, " ", sizeof(text) - strlen(text) - 1);
    }
    if (changes[i][klen] == ' ')
      strncat(text, changes[i], sizeof(text) - strlen(text) - 1);
    b = definition_of(text, "UTC");
    if (strcmp(a, b) == 0)
      fail_msg("changing \"%s\" kept the definition %s", changes[i], b);
    free(b);
  }
  free(a);
}

/* Loads `name` and expects exactly "FILE:LINE: SETTING: TEXT", LINE the
 * line marked "# ERROR". */
static void expect_exact(const char *name, const char *setting,
                         const char *text) {
  char path[512], err[1024], want[2048];
  pm_config_t *cfg = (pm_config_t *)0x1;
  int rc;

  err[0] = '\0';
  rc = load(name, 0640, &cfg, err, sizeof(err), path, sizeof(path));
  if (rc != PM_ECONFIG)
    fail_msg("%s: rc %d, want PM_ECONFIG (%s)", name, rc, err);
  assert_null(cfg);
  snprintf(want, sizeof(want), "%s:%d: %s: %s", path,
           marked_line(name, "# ERROR"), setting, text);
  if (strcmp(err, want) != 0)
    fail_msg("%s: message\n  \"%s\"\nwant\n  \"%s\"", name, err, want);
}

#define EXACT_TEST(fn, fixture, setting, text)                                 \
  static void fn(void **state) {                                               \
    (void)state;                                                               \
    expect_exact(fixture, setting, text);                                      \
  }

EXACT_TEST(test_target_unknown_key, "target_unknown_key.conf",
           "targets.[1].treshold",
           "unknown setting (expected one of: name, title, metric, per, "
           "labels, window, direction, goal, tolerance, for, clear_for, "
           "stale, severity, notify, repeat, lookback, format)")
EXACT_TEST(test_target_bad_date, "target_bad_date.conf",
           "targets.[0].goal.start",
           "\"2027-13-01\" is not a date (YYYY-MM-DD)")
EXACT_TEST(test_target_due_before_start, "target_due_before_start.conf",
           "targets.[0].goal.due",
           "due (2026-09-01) must be after start (2026-09-01)")
EXACT_TEST(test_target_milestones_order, "target_milestones_order.conf",
           "targets.[0].goal.[2].date",
           "milestone dates must increase: 2027-03-31 is not after 2027-06-30")
EXACT_TEST(test_target_milestones_empty, "target_milestones_empty.conf",
           "targets.[0].goal",
           "expected at least one milestone ( { date = \"YYYY-MM-DD\"; value "
           "= ...; }, ... )")
EXACT_TEST(test_target_direction, "target_direction.conf",
           "targets.[0].direction",
           "unknown direction \"above\" (expected at_least or at_most)")
EXACT_TEST(test_target_severity, "target_severity.conf", "targets.[0].severity",
           "unknown severity \"urgent\" (expected info, warning or critical)")
EXACT_TEST(test_target_notify_undefined, "target_notify_undefined.conf",
           "targets.[0].notify.[1]",
           "no notifier named \"pager\" (defined: ops, journal)")
EXACT_TEST(test_target_window_days, "target_window_days.conf",
           "targets.[0].window", "\"36h\" is not a whole number of days")
EXACT_TEST(test_target_lookback, "target_lookback.conf", "targets.[0].lookback",
           "must be at least 2d")
EXACT_TEST(test_webhook_no_url, "webhook_no_url.conf", "notifiers.[0].url",
           "required setting missing")
EXACT_TEST(test_webhook_url_scheme, "webhook_url_scheme.conf",
           "notifiers.[0].url",
           "invalid url \"ftp://hooks.example.org/x\" (expected http://... or "
           "https://...)")
EXACT_TEST(test_exec_relative, "exec_relative.conf",
           "notifiers.[0].command.[0]",
           "\"page\" is not an absolute path (the command runs without a "
           "shell or PATH search)")
EXACT_TEST(test_exec_empty, "exec_empty.conf", "notifiers.[0].command",
           "must not be empty (expected [ \"/absolute/path\", \"argument\", "
           "... ])")
EXACT_TEST(test_headers_authorization, "headers_authorization.conf",
           "notifiers.[0].headers.authorization",
           "not allowed here: put the token in token_file (sent as "
           "\"Authorization: Bearer TOKEN\"), so it stays out of the config")
EXACT_TEST(test_headers_crlf, "headers_crlf.conf",
           "notifiers.[0].headers.X-Team",
           "a header value must not contain CR or LF")
EXACT_TEST(test_notifier_type, "notifier_type.conf", "notifiers.[0].type",
           "unknown notifier type \"email\" (expected log, webhook or exec)")
EXACT_TEST(test_notifier_wrong_key, "notifier_wrong_key.conf",
           "notifiers.[0].command",
           "not a webhook setting (only exec notifiers take it)")
EXACT_TEST(test_target_goal_string, "target_goal_string.conf",
           "targets.[0].goal",
           "expected a number, a group { value = ...; } or { start = ...; "
           "start_value = ...; due = ...; value = ...; }, or a list of "
           "milestones ( { date = ...; value = ...; }, ... ), got a string")
EXACT_TEST(test_alerts_interval, "alerts_interval.conf", "alerts.interval",
           "must be at least 100ms")

static void test_target_duplicate(void **state) {
  char text[128];
  (void)state;
  snprintf(text, sizeof(text),
           "duplicate target name \"enrollment\" (first at line %d)",
           marked_line("target_duplicate.conf", "# FIRST"));
  expect_exact("target_duplicate.conf", "targets.[2].name", text);
}

static void test_notifier_duplicate(void **state) {
  char text[128];
  (void)state;
  snprintf(text, sizeof(text),
           "duplicate notifier name \"ops\" (first at line %d)",
           marked_line("notifier_duplicate.conf", "# FIRST"));
  expect_exact("notifier_duplicate.conf", "notifiers.[1].name", text);
}

/* The other mistakes, each in a few lines of text: exact messages. */
static void test_alert_mistakes(void **state) {
  static const struct {
    const char *text, *msg;
  } cases[] = {
      /* alerts */
      {"alerts = 5;", "mem.conf:2: alerts: expected a group { ... }, got an "
                      "integer"},
      {"alerts = { period = \"1s\"; };",
       "mem.conf:2: alerts.period: unknown setting (expected one of: "
       "interval)"},
      /* targets: shape, required settings, names */
      {"targets = { name = \"a\"; };",
       "mem.conf:2: targets: expected a list of groups ( { ... }, { ... } ), "
       "got a group"},
      {"targets = ( \"a\" );",
       "mem.conf:2: targets.[0]: expected a group { name = ...; ... }, got a "
       "string"},
      {"targets = ( { metric = \"m\"; goal = 1; } );",
       "mem.conf:2: targets.[0].name: required setting missing"},
      {"targets = ( { name = \"a\"; goal = 1; } );",
       "mem.conf:2: targets.[0].metric: required setting missing"},
      {"targets = ( { name = \"a\"; metric = \"m\"; } );",
       "mem.conf:2: targets.[0].goal: required setting missing"},
      {"targets = ( { name = \"Enrollment\"; metric = \"m\"; goal = 1; } );",
       "mem.conf:2: targets.[0].name: invalid target name \"Enrollment\" "
       "(expected [a-z0-9][a-z0-9_.-]*, at most 63 bytes)"},
      {"targets = ( { name = "
       "\"a234567890123456789012345678901234567890123456789012345678901234\";"
       " metric = \"m\"; goal = 1; } );",
       "mem.conf:2: targets.[0].name: invalid target name "
       "\"a234567890123456789012345678901234567890123456789012345678901234\" "
       "(expected [a-z0-9][a-z0-9_.-]*, at most 63 bytes)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " title = \"bell\\x07\"; } );",
       "mem.conf:2: targets.[0].title: invalid title (expected printable "
       "UTF-8, at most 200 bytes)"},
      {"targets = ( { name = \"a\"; metric = \"Portal.x\"; goal = 1; } );",
       "mem.conf:2: targets.[0].metric: invalid metric name \"Portal.x\" "
       "(expected [a-z][a-z0-9_]*(.[a-z0-9_]+)*, at most 128 bytes)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; per = \"m.\"; goal = 1; "
       "} );",
       "mem.conf:2: targets.[0].per: invalid metric name \"m.\" (expected "
       "[a-z][a-z0-9_]*(.[a-z0-9_]+)*, at most 128 bytes)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " labels = { Clinic = \"north\"; }; } );",
       "mem.conf:2: targets.[0].labels.Clinic: invalid label key \"Clinic\" "
       "(expected [a-z][a-z0-9_]*, at most 64 bytes)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " labels = { clinic = 1; }; } );",
       "mem.conf:2: targets.[0].labels.clinic: expected a string, got an "
       "integer"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1; labels = {"
       " a1 = \"x\"; a2 = \"x\"; a3 = \"x\"; a4 = \"x\"; a5 = \"x\";"
       " a6 = \"x\"; a7 = \"x\"; a8 = \"x\"; a9 = \"x\"; a10 = \"x\";"
       " a11 = \"x\"; a12 = \"x\"; a13 = \"x\"; a14 = \"x\"; a15 = \"x\";"
       " a16 = \"x\"; a17 = \"x\"; }; } );",
       "mem.conf:2: targets.[0].labels.a17: too many labels (at most 16)"},
      /* durations and numbers */
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " window = \"0d\"; } );",
       "mem.conf:2: targets.[0].window: must be at least 1d"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " window = \"367d\"; } );",
       "mem.conf:2: targets.[0].window: must be at most 366d"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " window = 7; } );",
       "mem.conf:2: targets.[0].window: expected a duration string like "
       "\"15m\", got an integer"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " tolerance = -0.1; } );",
       "mem.conf:2: targets.[0].tolerance: must not be negative"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " tolerance = \"2%\"; } );",
       "mem.conf:2: targets.[0].tolerance: expected a number, got a string"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1e999; } );",
       "mem.conf:2: targets.[0].goal: must be a finite number"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " stale = \"0s\"; } );",
       "mem.conf:2: targets.[0].stale: must be greater than 0"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " for = \"soon\"; } );",
       "mem.conf:2: targets.[0].for: invalid duration \"soon\" (examples: "
       "\"500ms\", \"15m\", \"1h30m\", \"2d\")"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " format = \"percentage\"; } );",
       "mem.conf:2: targets.[0].format: unknown format \"percentage\" "
       "(expected percent or number)"},
      /* goals */
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = true; } );",
       "mem.conf:2: targets.[0].goal: expected a number, a group { value = "
       "...; } or { start = ...; start_value = ...; due = ...; value = ...; "
       "}, or a list of milestones ( { date = ...; value = ...; }, ... ), "
       "got a boolean"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = { }; } );",
       "mem.conf:2: targets.[0].goal.value: required setting missing"},
      {"targets = ( { name = \"a\"; metric = \"m\";"
       " goal = { value = 1; target = 2; }; } );",
       "mem.conf:2: targets.[0].goal.target: unknown setting (expected one "
       "of: start, start_value, due, value)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = {"
       " start = \"2026-01-01\"; due = \"2027-01-01\"; value = 1; }; } );",
       "mem.conf:2: targets.[0].goal.start_value: required setting missing"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = {"
       " start = \"2026-02-29\"; start_value = 0; due = \"2027-01-01\";"
       " value = 1; }; } );",
       "mem.conf:2: targets.[0].goal.start: \"2026-02-29\" is not a date "
       "(YYYY-MM-DD)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = {"
       " start = \"2026-1-01\"; start_value = 0; due = \"2027-01-01\";"
       " value = 1; }; } );",
       "mem.conf:2: targets.[0].goal.start: \"2026-1-01\" is not a date "
       "(YYYY-MM-DD)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = {"
       " start = \"1969-12-31\"; start_value = 0; due = \"2027-01-01\";"
       " value = 1; }; } );",
       "mem.conf:2: targets.[0].goal.start: \"1969-12-31\" is out of range "
       "(years 1970 to 9999)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = {"
       " start = 20260101; start_value = 0; due = \"2027-01-01\";"
       " value = 1; }; } );",
       "mem.conf:2: targets.[0].goal.start: expected a date string like "
       "\"2027-06-30\", got an integer"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = [ 1, 2 ]; } );",
       "mem.conf:2: targets.[0].goal.[0]: expected a group { date = "
       "\"YYYY-MM-DD\"; value = ...; }, got an integer"},
      {"targets = ( { name = \"a\"; metric = \"m\";"
       " goal = ( { date = \"2026-12-31\"; } ); } );",
       "mem.conf:2: targets.[0].goal.[0].value: required setting missing"},
      {"targets = ( { name = \"a\"; metric = \"m\";"
       " goal = ( { date = \"2026-12-31\"; value = 1; when = 2; } ); } );",
       "mem.conf:2: targets.[0].goal.[0].when: unknown setting (expected one "
       "of: date, value)"},
      {"targets = ( { name = \"a\"; metric = \"m\";"
       " goal = ( { date = \"2026-12-31\"; value = 1; },"
       " { date = \"2026-12-31\"; value = 2; } ); } );",
       "mem.conf:2: targets.[0].goal.[1].date: milestone dates must "
       "increase: 2026-12-31 is not after 2026-12-31"},
      /* notify */
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " notify = [ \"ops\" ]; } );",
       "mem.conf:2: targets.[0].notify.[0]: no notifier named \"ops\" "
       "(`notifiers` defines none)"},
      {"targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " notify = \"ops\"; } );",
       "mem.conf:2: targets.[0].notify: expected an array of notifier names "
       "[ \"ops\", ... ], got a string"},
      {"notifiers = ( { name = \"ops\"; type = \"log\"; } );\n"
       "targets = ( { name = \"a\"; metric = \"m\"; goal = 1;"
       " notify = [ \"ops\", \"ops\" ]; } );",
       "mem.conf:3: targets.[0].notify.[1]: notifier \"ops\" named twice"},
      /* notifiers */
      {"notifiers = ( { type = \"log\"; } );",
       "mem.conf:2: notifiers.[0].name: required setting missing"},
      {"notifiers = ( { name = \"ops\"; } );",
       "mem.conf:2: notifiers.[0].type: required setting missing"},
      {"notifiers = ( { name = \"ops\"; type = \"log\"; colour = 1; } );",
       "mem.conf:2: notifiers.[0].colour: unknown setting (expected one of: "
       "name, type, url, headers, token_file, ca_file, command, timeout, "
       "give_up)"},
      {"notifiers = ( { name = \"Ops\"; type = \"log\"; } );",
       "mem.conf:2: notifiers.[0].name: invalid notifier name \"Ops\" "
       "(expected [a-z0-9][a-z0-9_.-]*, at most 63 bytes)"},
      {"notifiers = ( { name = \"ops\"; type = \"log\"; timeout = \"1s\"; } "
       ");",
       "mem.conf:2: notifiers.[0].timeout: not a log setting (only webhook "
       "or exec notifiers take it)"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\";"
       " command = [ \"/bin/true\" ]; url = \"https://x.example.org/\"; } );",
       "mem.conf:2: notifiers.[0].url: not an exec setting (only webhook "
       "notifiers take it)"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\"; } );",
       "mem.conf:2: notifiers.[0].command: required setting missing"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\";"
       " command = \"/bin/true\"; } );",
       "mem.conf:2: notifiers.[0].command: expected an array of strings [ "
       "\"/absolute/path\", \"argument\", ... ], got a string"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\";"
       " command = ( \"/bin/true\", 1 ); } );",
       "mem.conf:2: notifiers.[0].command.[1]: expected a string, got an "
       "integer"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\";"
       " command = [ \"/bin/true\" ]; timeout = \"11m\"; } );",
       "mem.conf:2: notifiers.[0].timeout: must be at most 10m"},
      {"notifiers = ( { name = \"ops\"; type = \"exec\";"
       " command = [ \"/bin/true\" ]; timeout = \"10ms\"; } );",
       "mem.conf:2: notifiers.[0].timeout: must be at least 100ms"},
      {"notifiers = ( { name = \"ops\"; type = \"log\"; give_up = \"59s\"; } "
       ");",
       "mem.conf:2: notifiers.[0].give_up: must be at least 1m"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://\"; } );",
       "mem.conf:2: notifiers.[0].url: invalid url (no host after \"//\")"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/a b\"; } );",
       "mem.conf:2: notifiers.[0].url: invalid url (spaces and control "
       "characters must be percent-encoded)"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"hooks.example.org\"; } );",
       "mem.conf:2: notifiers.[0].url: invalid url \"hooks.example.org\" "
       "(expected http://... or https://...)"},
      /* A password in the URL is neither echoed nor accepted without a
       * file mode that vouches for it. */
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"ftp://u:s3cr3t@x.example.org/\"; } );",
       "mem.conf:2: notifiers.[0].url: invalid url \"...\" (expected "
       "http://... or https://...)"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://u:s3cr3t@x.example.org/\"; } );",
       "mem.conf:2: notifiers.[0].url: a password written inline needs the "
       "config file to be unreadable by others (chmod o-rwx mem.conf), or "
       "use token_file"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/\"; headers = [ \"X-A: b\" ]; } );",
       "mem.conf:2: notifiers.[0].headers: expected a group { Header-Name = "
       "\"value\"; ... }, got an array"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/\"; headers = { X-A = \"\"; }; } );",
       "mem.conf:2: notifiers.[0].headers.X-A: must not be empty"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/\"; headers = { X-A = \"a\\x01\"; };"
       " } );",
       "mem.conf:2: notifiers.[0].headers.X-A: a header value must not "
       "contain control characters"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/\";"
       " headers = { X-A = \"a\"; x-a = \"b\"; }; } );",
       "mem.conf:2: notifiers.[0].headers.x-a: header given twice (names "
       "are case-insensitive)"},
      {"notifiers = ( { name = \"ops\"; type = \"webhook\";"
       " url = \"https://x.example.org/\"; token_file = \"\"; } );",
       "mem.conf:2: notifiers.[0].token_file: must not be empty"},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[2048], err[1024] = "";
    pm_config_t *cfg = (pm_config_t *)0x1;
    int rc;

    snprintf(text, sizeof(text),
             "database = { conninfo = \"dbname=x\"; };\n%s\n", cases[i].text);
    rc = pm_config_load_string(text, "mem.conf", &cfg, err, sizeof(err));
    if (rc != PM_ECONFIG || strcmp(err, cases[i].msg) != 0)
      fail_msg("case %zu: rc %d\n  got  \"%s\"\n  want \"%s\"", i, rc, err,
               cases[i].msg);
    assert_null(cfg);
  }
}

/* A password in a webhook's URL is accepted when the file is private,
 * like one in conninfo. */
static void test_url_password_private_file_ok(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  (void)state;

  if (load("url_password.conf", 0640, &cfg, err, sizeof(err), path,
           sizeof(path)))
    fail_msg("%s", err);
  assert_string_equal(cfg->notifiers[0].url,
                      "https://u:s3cr3t@hooks.example.org/x");
  pm_config_free(cfg);
  assert_int_equal(load("url_password.conf", 0644, &cfg, err, sizeof(err), path,
                        sizeof(path)),
                   PM_ECONFIG);
  assert_non_null(strstr(err, "notifiers.[0].url: a password written inline"));
}

/* A mistake in an @include'd file names that file, not the main one. */
static void test_include_names_its_file(void **state) {
  char part[512];
  (void)state;
  copy_fixture("include_part.conf", 0640, part, sizeof(part));
  expect_error_in("include_main.conf", "include_part.conf", PM_ECONFIG,
                  "database.retention", "invalid duration \"forever\"");
}

/* ---------------------------------------------------------------------
 * The secrets rule and file permissions
 * ------------------------------------------------------------------- */

static void test_inline_password_readable_by_others(void **state) {
  char path[512], err[1024] = "", want[2048];
  pm_config_t *cfg = NULL;
  (void)state;

  assert_int_equal(
      load("password.conf", 0644, &cfg, err, sizeof(err), path, sizeof(path)),
      PM_ECONFIG);
  snprintf(want, sizeof(want),
           "%s:%d: database.conninfo: a password written inline needs the "
           "config file to be unreadable by others (chmod o-rwx %s), or use "
           "database.password_file",
           path, marked_line("password.conf", "# ERROR"), path);
  assert_string_equal(err, want);
}

static void test_inline_password_uri_form(void **state) {
  (void)state;
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;

  assert_int_equal(load("password_uri.conf", 0604, &cfg, err, sizeof(err), path,
                        sizeof(path)),
                   PM_ECONFIG);
  assert_non_null(strstr(err, "database.conninfo: a password written inline"));
}

static void test_inline_password_private_file_ok(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  (void)state;

  /* Owner and group may read: the daemon's group reads its config. */
  if (load("password.conf", 0640, &cfg, err, sizeof(err), path, sizeof(path)))
    fail_msg("%s", err);
  pm_config_free(cfg);
  if (load("password_uri.conf", 0600, &cfg, err, sizeof(err), path,
           sizeof(path)))
    fail_msg("%s", err);
  pm_config_free(cfg);
}

static void test_no_password_readable_file_ok(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  (void)state;
  if (load("good.conf", 0644, &cfg, err, sizeof(err), path, sizeof(path)))
    fail_msg("%s", err);
  pm_config_free(cfg);
}

static void test_config_writable_by_others(void **state) {
  char path[512], err[1024] = "", want[2048];
  pm_config_t *cfg = NULL;
  (void)state;

  assert_int_equal(
      load("good.conf", 0664, &cfg, err, sizeof(err), path, sizeof(path)),
      PM_ECONFIG);
  snprintf(want, sizeof(want),
           "%s: writable by group or others (mode 0664): chmod go-w %s", path,
           path);
  assert_string_equal(err, want);
  assert_int_equal(
      load("good.conf", 0646, &cfg, err, sizeof(err), path, sizeof(path)),
      PM_ECONFIG);
  assert_non_null(strstr(err, "writable by group or others"));
}

static void test_config_owned_by_someone_else(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  (void)state;

  copy_fixture("good.conf", 0644, path, sizeof(path));
  if (chown(path, 4242, (gid_t)-1) != 0)
    skip(); /* only root can give a file away */
  assert_int_equal(pm_config_load(path, &cfg, err, sizeof(err)), PM_ECONFIG);
  assert_non_null(strstr(err, "owned by uid 4242"));
  /* The same check, on its own. */
  assert_int_equal(pm_path_check_owner(path, err, sizeof(err)), PM_ECONFIG);
}

static void test_config_missing_file(void **state) {
  char path[512], err[1024] = "";
  pm_config_t *cfg = NULL;
  (void)state;

  snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
  assert_int_equal(pm_config_load(path, &cfg, err, sizeof(err)), PM_EIO);
  assert_null(cfg);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "No such file"));
}

static void test_path_private(void **state) {
  char path[512], err[256];
  (void)state;
  copy_fixture("minimal.conf", 0640, path, sizeof(path));
  assert_int_equal(pm_path_private(path, err, sizeof(err)), 1);
  assert_int_equal(chmod(path, 0644), 0);
  assert_int_equal(pm_path_private(path, err, sizeof(err)), 0);
  assert_int_equal(pm_path_check_owner(path, err, sizeof(err)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_full),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_settings_absent_is_empty_group),
      cmocka_unit_test(test_collector_conf_equal),
      cmocka_unit_test(test_isolate_false_is_fine),
      cmocka_unit_test(test_load_string),
      cmocka_unit_test(test_messages_stay_one_line_and_secret),
      cmocka_unit_test(test_syntax_error),
      cmocka_unit_test(test_unknown_top_level),
      cmocka_unit_test(test_unknown_in_daemon),
      cmocka_unit_test(test_unknown_in_database),
      cmocka_unit_test(test_unknown_in_spool),
      cmocka_unit_test(test_unknown_in_collector),
      cmocka_unit_test(test_type_string),
      cmocka_unit_test(test_type_duration),
      cmocka_unit_test(test_type_group),
      cmocka_unit_test(test_type_collectors),
      cmocka_unit_test(test_type_label_value),
      cmocka_unit_test(test_type_max_series),
      cmocka_unit_test(test_type_batch_size),
      cmocka_unit_test(test_bad_duration),
      cmocka_unit_test(test_bad_size),
      cmocka_unit_test(test_bad_segment_size),
      cmocka_unit_test(test_segment_default),
      cmocka_unit_test(test_interval_zero),
      cmocka_unit_test(test_timeout_longer_than_interval),
      cmocka_unit_test(test_unknown_log_level),
      cmocka_unit_test(test_unknown_timezone),
      cmocka_unit_test(test_timezone_path_escape),
      cmocka_unit_test(test_label_key_invalid),
      cmocka_unit_test(test_label_key_reserved),
      cmocka_unit_test(test_label_value_invalid),
      cmocka_unit_test(test_label_too_many),
      cmocka_unit_test(test_collector_name_invalid),
      cmocka_unit_test(test_collector_name_duplicate),
      cmocka_unit_test(test_plugin_name_invalid),
      cmocka_unit_test(test_max_series_zero),
      cmocka_unit_test(test_batch_size_zero),
      cmocka_unit_test(test_retention_shorter_than_max_age),
      cmocka_unit_test(test_conninfo_unparsable),
      cmocka_unit_test(test_missing_conninfo),
      cmocka_unit_test(test_missing_database),
      cmocka_unit_test(test_missing_collector_name),
      cmocka_unit_test(test_missing_collector_plugin),
      cmocka_unit_test(test_isolate_not_supported),
      cmocka_unit_test(test_alerts_good),
      cmocka_unit_test(test_exec_timeout_default),
      cmocka_unit_test(test_definition_canonical),
      cmocka_unit_test(test_target_unknown_key),
      cmocka_unit_test(test_target_bad_date),
      cmocka_unit_test(test_target_due_before_start),
      cmocka_unit_test(test_target_milestones_order),
      cmocka_unit_test(test_target_milestones_empty),
      cmocka_unit_test(test_target_direction),
      cmocka_unit_test(test_target_severity),
      cmocka_unit_test(test_target_notify_undefined),
      cmocka_unit_test(test_target_duplicate),
      cmocka_unit_test(test_notifier_duplicate),
      cmocka_unit_test(test_target_window_days),
      cmocka_unit_test(test_target_lookback),
      cmocka_unit_test(test_webhook_no_url),
      cmocka_unit_test(test_webhook_url_scheme),
      cmocka_unit_test(test_exec_relative),
      cmocka_unit_test(test_exec_empty),
      cmocka_unit_test(test_headers_authorization),
      cmocka_unit_test(test_headers_crlf),
      cmocka_unit_test(test_notifier_type),
      cmocka_unit_test(test_notifier_wrong_key),
      cmocka_unit_test(test_target_goal_string),
      cmocka_unit_test(test_alerts_interval),
      cmocka_unit_test(test_alert_mistakes),
      cmocka_unit_test(test_url_password_private_file_ok),
      cmocka_unit_test(test_include_names_its_file),
      cmocka_unit_test(test_inline_password_readable_by_others),
      cmocka_unit_test(test_inline_password_uri_form),
      cmocka_unit_test(test_inline_password_private_file_ok),
      cmocka_unit_test(test_no_password_readable_file_ok),
      cmocka_unit_test(test_config_writable_by_others),
      cmocka_unit_test(test_config_owned_by_someone_else),
      cmocka_unit_test(test_config_missing_file),
      cmocka_unit_test(test_path_private),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

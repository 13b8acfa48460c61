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
  assert_int_equal(cfg->spool_commit_delay_us, 2000);
  assert_int_equal(cfg->dedup_window_us, 7 * 86400 * S);
  assert_int_equal(cfg->n_collectors, 0);
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

ERROR_TEST(test_targets_not_supported, "targets.conf", "targets",
           "not supported yet (targets and alerts come in a later release)")
ERROR_TEST(test_notifiers_not_supported, "notifiers.conf", "notifiers",
           "not supported yet (targets and alerts come in a later release)")
ERROR_TEST(test_isolate_not_supported, "isolate.conf", "collectors.[0].isolate",
           "not supported yet")

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
      cmocka_unit_test(test_targets_not_supported),
      cmocka_unit_test(test_notifiers_not_supported),
      cmocka_unit_test(test_isolate_not_supported),
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

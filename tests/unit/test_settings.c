/*
 * A plugin's settings table applied to a collector's settings block
 * (daemon/settings.h): nesting, defaults, every error kind, the readers'
 * contract of plugin.h, and the documentation table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "settings.h"

#define FILE_NAME "/etc/pm/test.conf"
#define PATH "collectors.[0].settings"

static const pm_setting_decl_t tag_elem[] = {
    {"tag", PM_T_STRING, NULL, 0, "a tag", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_members[] = {
    {"metric", PM_T_STRING, NULL, 1, "metric to emit", NULL},
    {"sql", PM_T_STRING, NULL, 1, "the query", NULL},
    {"every", PM_T_DURATION, "1h", 0, "how often it runs", NULL},
    {"weight", PM_T_FLOAT, "1.5", 0, "scale factor", NULL},
    {"tags", PM_T_LIST, NULL, 0, "free tags", tag_elem},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_elem[] = {
    {"query", PM_T_GROUP, NULL, 0, "one query", query_members},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t tls_members[] = {
    {"verify", PM_T_BOOL, "true", 0, "check the peer", NULL},
    {"ca_file", PM_T_STRING, NULL, 0, "CA bundle", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t auth_members[] = {
    {"token_file", PM_T_STRING, NULL, 1, "bearer token file", NULL},
    {"scope", PM_T_STRING, "system/*.read", 0, "SMART scope", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t decls[] = {
    {"base_url", PM_T_STRING, NULL, 1, "FHIR R4 base URL", NULL},
    {"pages", PM_T_INT, "10", 0, "pages per run", NULL},
    {"ratio", PM_T_FLOAT, "0.25", 0, "sampling ratio", NULL},
    {"enabled", PM_T_BOOL, "yes", 0, "on or off", NULL},
    {"timeout", PM_T_DURATION, "30s", 0, "per request", NULL},
    {"buffer", PM_T_SIZE, "64KiB", 0, "read buffer", NULL},
    {"queries", PM_T_LIST, NULL, 0, "queries to run", query_elem},
    {"tls", PM_T_GROUP, NULL, 0, "TLS options", tls_members},
    {"auth", PM_T_GROUP, NULL, 0, "authentication", auth_members},
    {"note", PM_T_STRING, NULL, 0, "no default: absent", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

/* Parses `text`, which has `settings = { ... }` somewhere, and builds. */
static int build(const char *text, const pm_setting_decl_t *d,
                 pm_setting_t **out, char *err, size_t errlen) {
  config_t cfg;
  int rc;

  config_init(&cfg);
  if (!config_read_string(&cfg, text))
    fail_msg("fixture does not parse: line %d: %s", config_error_line(&cfg),
             config_error_text(&cfg));
  rc = pm_settings_build(config_lookup(&cfg, "settings"), d, FILE_NAME, PATH,
                         out, err, errlen);
  /* The tree must not borrow from the config: destroy it first. */
  config_destroy(&cfg);
  return rc;
}

static void expect_error(const char *text, const pm_setting_decl_t *d,
                         const char *want) {
  pm_setting_t *root = (pm_setting_t *)0x1;
  char err[1024] = "";
  int rc = build(text, d, &root, err, sizeof(err));

  if (rc != PM_ECONFIG)
    fail_msg("rc %d, want PM_ECONFIG (%s)", rc, err);
  assert_null(root);
  if (strncmp(err, want, strlen(want)) != 0)
    fail_msg("message\n  \"%s\"\ndoes not start with\n  \"%s\"", err, want);
  assert_null(strchr(err, '\n'));
}

static const char *str(const pm_setting_t *n) {
  const char *s = NULL;
  assert_int_equal(pm_setting_string(n, &s), 0);
  return s;
}

static const char good[] =
    "settings = {\n"                                        /* 1 */
    "  base_url = \"https://fhir.example.org/R4\";\n"       /* 2 */
    "  pages = 5000000000L;\n"                              /* 3 */
    "  ratio = 2;\n"                                        /* 4 */
    "  queries = (\n"                                       /* 5 */
    "    { metric = \"portal.a\"; sql = \"select 1\"; },\n" /* 6 */
    "    { metric = \"portal.b\"; sql = \"select 2\";\n"    /* 7 */
    "      every = \"15m\"; weight = 3.5;\n"                /* 8 */
    "      tags = [ \"x\", \"y\" ]; }\n"                    /* 9 */
    "  );\n"                                                /* 10 */
    "};\n";

static void test_nested_with_defaults(void **state) {
  pm_setting_t *root = NULL;
  const pm_setting_t *q, *e, *tls;
  char err[1024] = "";
  int64_t i;
  uint64_t u;
  double f;
  int b;
  (void)state;

  if (build(good, decls, &root, err, sizeof(err)) != 0)
    fail_msg("%s", err);
  assert_null(pm_setting_key(root));
  assert_string_equal(str(pm_setting_get(root, "base_url")),
                      "https://fhir.example.org/R4");
  assert_int_equal(pm_setting_int(pm_setting_get(root, "pages"), &i), 0);
  assert_int_equal(i, INT64_C(5000000000)); /* int64 accepted */
  assert_int_equal(pm_setting_float(pm_setting_get(root, "ratio"), &f), 0);
  assert_true(f == 2.0); /* an integer where a float is declared */

  /* Scalar defaults. */
  assert_int_equal(pm_setting_bool(pm_setting_get(root, "enabled"), &b), 0);
  assert_int_equal(b, 1);
  assert_int_equal(pm_setting_duration(pm_setting_get(root, "timeout"), &i), 0);
  assert_int_equal(i, INT64_C(30000000));
  assert_int_equal(pm_setting_size(pm_setting_get(root, "buffer"), &u), 0);
  assert_int_equal(u, 65536);
  /* No default, not given: absent. */
  assert_null(pm_setting_get(root, "note"));
  assert_int_equal(pm_setting_string(pm_setting_get(root, "note"), NULL),
                   PM_ENOTFOUND);

  /* A list of groups, with defaults inside each element. */
  q = pm_setting_get(root, "queries");
  assert_int_equal(pm_setting_count(q), 2);
  e = pm_setting_at(q, 0);
  assert_null(pm_setting_key(e));
  assert_string_equal(str(pm_setting_get(e, "metric")), "portal.a");
  assert_int_equal(pm_setting_duration(pm_setting_get(e, "every"), &i), 0);
  assert_int_equal(i, INT64_C(3600000000));
  assert_int_equal(pm_setting_float(pm_setting_get(e, "weight"), &f), 0);
  assert_true(f == 1.5);
  assert_null(pm_setting_get(e, "tags"));
  e = pm_setting_at(q, 1);
  assert_int_equal(pm_setting_duration(pm_setting_get(e, "every"), &i), 0);
  assert_int_equal(i, INT64_C(900000000));
  assert_int_equal(pm_setting_float(pm_setting_get(e, "weight"), &f), 0);
  assert_true(f == 3.5);
  assert_int_equal(pm_setting_count(pm_setting_get(e, "tags")), 2);
  assert_string_equal(str(pm_setting_at(pm_setting_get(e, "tags"), 1)), "y");
  assert_null(pm_setting_at(q, 2));

  /* An absent group gets its members' defaults... */
  tls = pm_setting_get(root, "tls");
  assert_non_null(tls);
  assert_string_equal(pm_setting_key(tls), "tls");
  assert_int_equal(pm_setting_bool(pm_setting_get(tls, "verify"), &b), 0);
  assert_int_equal(b, 1);
  assert_null(pm_setting_get(tls, "ca_file"));
  /* ...unless one is required: then it is absent. */
  assert_null(pm_setting_get(root, "auth"));

  /* Members in table order. */
  assert_string_equal(pm_setting_key(pm_setting_at(root, 0)), "base_url");
  pm_setting_free(root);
}

static void test_readers_contract(void **state) {
  pm_setting_t *root = NULL;
  const pm_setting_t *url, *q;
  char err[512];
  const char *s;
  int64_t i;
  uint64_t u;
  double f;
  int b;
  (void)state;

  assert_int_equal(build(good, decls, &root, err, sizeof(err)), 0);
  url = pm_setting_get(root, "base_url");
  q = pm_setting_get(root, "queries");

  /* NULL node: PM_ENOTFOUND for every reader. */
  assert_int_equal(pm_setting_string(NULL, &s), PM_ENOTFOUND);
  assert_int_equal(pm_setting_int(NULL, &i), PM_ENOTFOUND);
  assert_int_equal(pm_setting_float(NULL, &f), PM_ENOTFOUND);
  assert_int_equal(pm_setting_bool(NULL, &b), PM_ENOTFOUND);
  assert_int_equal(pm_setting_duration(NULL, &i), PM_ENOTFOUND);
  assert_int_equal(pm_setting_size(NULL, &u), PM_ENOTFOUND);
  /* Another type: PM_ETYPE. */
  assert_int_equal(pm_setting_int(url, &i), PM_ETYPE);
  assert_int_equal(pm_setting_float(url, &f), PM_ETYPE);
  assert_int_equal(pm_setting_bool(url, &b), PM_ETYPE);
  assert_int_equal(pm_setting_duration(url, &i), PM_ETYPE);
  assert_int_equal(pm_setting_size(url, &u), PM_ETYPE);
  assert_int_equal(pm_setting_string(q, &s), PM_ETYPE);
  assert_int_equal(pm_setting_string(root, &s), PM_ETYPE);
  assert_int_equal(pm_setting_string(pm_setting_get(root, "timeout"), &s),
                   PM_ETYPE);
  /* Navigation on scalars and NULL. */
  assert_int_equal(pm_setting_count(url), 0);
  assert_int_equal(pm_setting_count(NULL), 0);
  assert_null(pm_setting_at(url, 0));
  assert_null(pm_setting_at(NULL, 0));
  assert_null(pm_setting_get(url, "x"));
  assert_null(pm_setting_get(NULL, "x"));
  assert_null(pm_setting_get(q, "metric")); /* a list is not a group */
  assert_null(pm_setting_get(root, "nope"));
  assert_null(pm_setting_key(NULL));
  pm_setting_free(root);
  pm_setting_free(NULL);
}

static void test_empty_and_absent_block(void **state) {
  static const pm_setting_decl_t opt[] = {{"n", PM_T_INT, "3", 0, "", NULL},
                                          {NULL, 0, NULL, 0, NULL, NULL}};
  pm_setting_t *root = NULL;
  char err[512];
  int64_t i;
  (void)state;

  assert_int_equal(
      pm_settings_build(NULL, opt, FILE_NAME, PATH, &root, err, sizeof(err)),
      0);
  assert_int_equal(pm_setting_int(pm_setting_get(root, "n"), &i), 0);
  assert_int_equal(i, 3);
  pm_setting_free(root);
  /* A plugin without a table takes an empty block. */
  assert_int_equal(build("settings = { };", NULL, &root, err, sizeof(err)), 0);
  assert_int_equal(pm_setting_count(root), 0);
  pm_setting_free(root);
}

/* ---------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------- */

static void test_wrong_type_nested(void **state) {
  (void)state;
  expect_error("settings = {\n"
               "  base_url = \"u\";\n"
               "  queries = (\n"
               "    { metric = \"a\"; sql = \"s\"; },\n"
               "    { metric = \"b\"; sql = \"s\"; },\n"
               "    { sql = \"s\";\n"
               "      metric = 7; }\n"
               "  );\n"
               "};\n",
               decls,
               FILE_NAME ":7: " PATH ".queries.[2].metric: expected a string, "
                         "got an integer");
}

static void test_wrong_type_scalars(void **state) {
  (void)state;
  expect_error("settings = {\n base_url = 1;\n};", decls,
               FILE_NAME ":2: " PATH ".base_url: expected a string, got an "
                         "integer");
  expect_error("settings = {\n base_url = \"u\";\n pages = 1.5;\n};", decls,
               FILE_NAME ":3: " PATH ".pages: expected an integer, got a "
                         "float");
  expect_error("settings = {\n base_url = \"u\"; ratio = \"x\";\n};", decls,
               FILE_NAME ":2: " PATH ".ratio: expected a number, got a "
                         "string");
  expect_error("settings = {\n base_url = \"u\"; enabled = \"yes\";\n};", decls,
               FILE_NAME ":2: " PATH ".enabled: expected a boolean (true or "
                         "false), got a string");
  expect_error("settings = {\n base_url = \"u\"; timeout = 30;\n};", decls,
               FILE_NAME ":2: " PATH ".timeout: expected a duration string "
                         "like \"15m\", got an integer");
  expect_error("settings = {\n base_url = \"u\"; buffer = 65536;\n};", decls,
               FILE_NAME ":2: " PATH ".buffer: expected a size string like "
                         "\"64MiB\", got an integer");
}

static void test_wrong_type_aggregates(void **state) {
  (void)state;
  expect_error("settings = {\n base_url = \"u\";\n queries = { };\n};", decls,
               FILE_NAME ":3: " PATH ".queries: expected a list ( ... ) or an "
                         "array [ ... ], got a group");
  expect_error("settings = {\n base_url = \"u\";\n tls = [ true ];\n};", decls,
               FILE_NAME ":3: " PATH ".tls: expected a group { ... }, got an "
                         "array");
  /* An element of the wrong type inside a list. */
  expect_error("settings = {\n base_url = \"u\";\n queries = ( { metric = "
               "\"a\"; sql = \"s\"; },\n \"oops\" );\n};",
               decls,
               FILE_NAME ":4: " PATH ".queries.[1]: expected a group { ... }, "
                         "got a string");
  expect_error("settings = {\n base_url = \"u\";\n queries = ( { metric = "
               "\"a\"; sql = \"s\";\n tags = [ 1, 2 ]; } );\n};",
               decls,
               FILE_NAME ":4: " PATH ".queries.[0].tags.[0]: expected a "
                         "string, got an integer");
  /* The block itself. */
  expect_error("settings = 5;", decls,
               FILE_NAME ":1: " PATH ": expected a group { ... }, got an "
                         "integer");
}

static void test_unknown_key(void **state) {
  (void)state;
  expect_error("settings = {\n base_url = \"u\";\n\n base_ulr = \"v\";\n};",
               decls,
               FILE_NAME ":4: " PATH ".base_ulr: unknown setting (expected "
                         "one of: base_url, pages,");
  expect_error("settings = {\n base_url = \"u\";\n queries = (\n { metric = "
               "\"a\"; sql = \"s\";\n  evry = \"1m\"; } );\n};",
               decls,
               FILE_NAME ":5: " PATH ".queries.[0].evry: unknown setting");
  expect_error("settings = {\n base_url = \"u\";\n tls = { verify = true;\n"
               " cafile = \"x\"; };\n};",
               decls, FILE_NAME ":4: " PATH ".tls.cafile: unknown setting");
  expect_error("settings = {\n x = 1;\n};", NULL,
               FILE_NAME ":2: " PATH ".x: unknown setting (this takes no "
                         "settings)");
}

static void test_required_missing(void **state) {
  (void)state;
  /* At the top: the line of the block. */
  expect_error("\nsettings = {\n pages = 3;\n};", decls,
               FILE_NAME ":2: " PATH ".base_url: required setting missing");
  /* In a list element: the line of the element. */
  expect_error("settings = {\n base_url = \"u\";\n queries = (\n { metric = "
               "\"a\"; sql = \"s\"; },\n { metric = \"b\"; } );\n};",
               decls,
               FILE_NAME ":5: " PATH ".queries.[1].sql: required setting "
                         "missing");
  /* A given group with a required member missing. */
  expect_error("settings = {\n base_url = \"u\";\n auth = {\n scope = \"x\"; "
               "};\n};",
               decls,
               FILE_NAME ":3: " PATH ".auth.token_file: required setting "
                         "missing");
  /* No block at all: no line to name but the first. */
  {
    pm_setting_t *root = NULL;
    char err[512];
    assert_int_equal(pm_settings_build(NULL, decls, FILE_NAME, PATH, &root, err,
                                       sizeof(err)),
                     PM_ECONFIG);
    assert_string_equal(err, FILE_NAME ":1: " PATH
                                       ".base_url: required setting missing");
  }
}

static void test_required_group_missing(void **state) {
  static const pm_setting_decl_t d[] = {
      {"tls", PM_T_GROUP, NULL, 1, "", tls_members},
      {NULL, 0, NULL, 0, NULL, NULL}};
  (void)state;
  expect_error("settings = {\n};", d,
               FILE_NAME ":1: " PATH ".tls: required setting missing");
}

static void test_bad_values(void **state) {
  (void)state;
  expect_error(
      "settings = {\n base_url = \"u\";\n timeout = \"5 parsecs\";\n};", decls,
      FILE_NAME ":3: " PATH ".timeout: invalid duration \"5 "
                "parsecs\"");
  expect_error("settings = {\n base_url = \"u\";\n buffer = \"-1MiB\";\n};",
               decls, FILE_NAME ":3: " PATH ".buffer: invalid size \"-1MiB\"");
  expect_error("settings = {\n base_url = \"u\";\n queries = ( { metric = "
               "\"a\"; sql = \"s\";\n every = \"1x\"; } );\n};",
               decls,
               FILE_NAME ":4: " PATH ".queries.[0].every: invalid duration");
}

static void test_bad_default_is_reported(void **state) {
  static const pm_setting_decl_t d[] = {{"n", PM_T_INT, "ten", 0, "", NULL},
                                        {NULL, 0, NULL, 0, NULL, NULL}};
  static const pm_setting_decl_t d2[] = {
      {"t", PM_T_DURATION, "soon", 0, "", NULL},
      {NULL, 0, NULL, 0, NULL, NULL}};
  (void)state;
  expect_error("settings = {\n};", d,
               FILE_NAME ":1: " PATH ".n: the plugin's default \"ten\" is not "
                         "a valid integer (a bug in the plugin)");
  expect_error("settings = {\n};", d2,
               FILE_NAME ":1: " PATH ".t: the plugin's default \"soon\"");
}

static void test_short_error_buffer(void **state) {
  pm_setting_t *root = NULL;
  char err[16];
  (void)state;
  assert_int_equal(
      build("settings = { x = 1; };", decls, &root, err, sizeof(err)),
      PM_ECONFIG);
  assert_int_equal(strlen(err), sizeof(err) - 1);
  assert_int_equal(build("settings = { x = 1; };", decls, &root, NULL, 0),
                   PM_ECONFIG);
}

/* ---------------------------------------------------------------------
 * Documentation
 * ------------------------------------------------------------------- */

static void test_print(void **state) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  (void)state;

  assert_non_null(f);
  pm_settings_print(f, decls, 2);
  fclose(f);
  /* A header, every key, nesting by indentation, types, defaults. */
  assert_non_null(strstr(buf, "SETTING"));
  assert_non_null(strstr(buf, "DESCRIPTION"));
  assert_non_null(strstr(buf, "\nbase_url "));
  assert_non_null(strstr(buf, "FHIR R4 base URL"));
  assert_non_null(strstr(buf, "list of group"));
  assert_non_null(strstr(buf, "\n  metric "));
  assert_non_null(strstr(buf, "\n  every "));
  assert_non_null(strstr(buf, "1h"));
  assert_non_null(strstr(buf, "\n  verify "));
  assert_non_null(strstr(buf, "list of string"));
  assert_non_null(strstr(buf, "64KiB"));
  assert_non_null(strstr(buf, " yes "));
  free(buf);

  f = open_memstream(&buf, &len);
  pm_settings_print(f, NULL, 2);
  fclose(f);
  assert_string_equal(buf, "(no settings)\n");
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nested_with_defaults),
      cmocka_unit_test(test_readers_contract),
      cmocka_unit_test(test_empty_and_absent_block),
      cmocka_unit_test(test_wrong_type_nested),
      cmocka_unit_test(test_wrong_type_scalars),
      cmocka_unit_test(test_wrong_type_aggregates),
      cmocka_unit_test(test_unknown_key),
      cmocka_unit_test(test_required_missing),
      cmocka_unit_test(test_required_group_missing),
      cmocka_unit_test(test_bad_values),
      cmocka_unit_test(test_bad_default_is_reported),
      cmocka_unit_test(test_short_error_buffer),
      cmocka_unit_test(test_print),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * A settings block (libconfig text, taken as the block itself) validated
 * against a fixed table with a nested list of groups, then every node
 * read through every reader. Oracles: an error is one line starting with
 * "fuzz.conf:"; a scalar answers exactly one typed reader; counts and
 * indexes agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

static const pm_setting_decl_t tag_elem[] = {
    {"tag", PM_T_STRING, NULL, 0, "", NULL}, {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_members[] = {
    {"metric", PM_T_STRING, NULL, 1, "", NULL},
    {"sql", PM_T_STRING, NULL, 0, "", NULL},
    {"every", PM_T_DURATION, "1h", 0, "", NULL},
    {"weight", PM_T_FLOAT, "1.5", 0, "", NULL},
    {"limit", PM_T_SIZE, "1MiB", 0, "", NULL},
    {"tags", PM_T_LIST, NULL, 0, "", tag_elem},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_elem[] = {
    {"query", PM_T_GROUP, NULL, 0, "", query_members},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t port_elem[] = {
    {"port", PM_T_INT, NULL, 0, "", NULL}, {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t tls_members[] = {
    {"verify", PM_T_BOOL, "true", 0, "", NULL},
    {"ca_file", PM_T_STRING, NULL, 0, "", NULL},
    {"inner", PM_T_GROUP, NULL, 0, "", query_members},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t decls[] = {
    {"base_url", PM_T_STRING, NULL, 1, "", NULL},
    {"pages", PM_T_INT, "10", 0, "", NULL},
    {"ratio", PM_T_FLOAT, "0.25", 0, "", NULL},
    {"enabled", PM_T_BOOL, "yes", 0, "", NULL},
    {"timeout", PM_T_DURATION, "30s", 0, "", NULL},
    {"buffer", PM_T_SIZE, "64KiB", 0, "", NULL},
    {"queries", PM_T_LIST, NULL, 0, "", query_elem},
    {"ports", PM_T_LIST, NULL, 0, "", port_elem},
    {"tls", PM_T_GROUP, NULL, 0, "", tls_members},
    {NULL, 0, NULL, 0, NULL, NULL}};

static void walk(const pm_setting_t *n, int depth) {
  const char *s;
  int64_t i;
  uint64_t u;
  double f;
  int b, ok;
  size_t count = pm_setting_count(n);

  ok = (pm_setting_string(n, &s) == 0) + (pm_setting_int(n, &i) == 0) +
       (pm_setting_float(n, &f) == 0) + (pm_setting_bool(n, &b) == 0) +
       (pm_setting_duration(n, &i) == 0) + (pm_setting_size(n, &u) == 0);
  if (ok > 1 || (ok == 1 && count != 0))
    abort();
  if (ok == 1 && pm_setting_string(n, &s) == 0 && !s)
    abort();
  for (size_t k = 0; k < count; k++) {
    const pm_setting_t *kid = pm_setting_at(n, k);
    const char *key = pm_setting_key(kid);
    if (!kid || depth > 64)
      abort();
    if (key && pm_setting_get(n, key) != kid)
      abort();
    walk(kid, depth + 1);
  }
  if (pm_setting_at(n, count) != NULL)
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  FILE *f = fopen("/dev/null", "w");
  (void)argc;
  (void)argv;
  if (f) {
    pm_settings_print(f, decls, 2);
    fclose(f);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text, err[512];
  config_t cfg;
  pm_setting_t *root = NULL;
  int rc;

  if (size > 65536)
    return 0;
  text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  /* @include would read files outside the input. */
  if (strcasestr(text, "@include")) {
    free(text);
    return 0;
  }
  config_init(&cfg);
  if (config_read_string(&cfg, text)) {
    rc = pm_settings_build(config_root_setting(&cfg), decls, "fuzz.conf",
                           "collectors.[0].settings", &root, err, sizeof(err));
    /* The tree owns its strings: read it after the config is gone. */
    config_destroy(&cfg);
    if (rc == 0) {
      if (!root)
        abort();
      walk(root, 0);
      pm_setting_free(root);
    } else if (rc != PM_ECONFIG || root ||
               strncmp(err, "fuzz.conf:", 10) != 0 || strchr(err, '\n')) {
      abort();
    }
  } else {
    config_destroy(&cfg);
  }
  free(text);
  return 0;
}

/*
 * The daemon's config text (libconfig) through pm_config_load_string.
 * Oracles: an error is one line starting with "fuzz.conf:"; a loaded
 * config finds each of its collectors by name and equals itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text, err[1024];
  pm_config_t *cfg = NULL;
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
  err[0] = '\0';
  rc = pm_config_load_string(text, "fuzz.conf", &cfg, err, sizeof(err));
  if (rc == 0) {
    if (!cfg || !cfg->conninfo || !cfg->id || !cfg->timezone)
      abort();
    for (size_t i = 0; i < cfg->n_collectors; i++) {
      const pm_collector_conf_t *c = &cfg->collectors[i];
      if (pm_config_collector(cfg, c->name) != c ||
          !pm_collector_conf_equal(c, c) || !c->settings ||
          c->timeout_us > c->interval_us || c->max_series == 0)
        abort();
    }
    pm_config_free(cfg);
  } else if (cfg || strncmp(err, "fuzz.conf:", 10) != 0 || strchr(err, '\n')) {
    abort();
  }
  free(text);
  return 0;
}

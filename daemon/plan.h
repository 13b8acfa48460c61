/*
 * A config checked against its plugins: each collector's plugin loaded
 * and its settings validated against the plugin's table. Built before a
 * config is used, so a reload with a broken config changes nothing.
 * Layer: scheduler and loader.
 */
#ifndef PM_PLAN_H
#define PM_PLAN_H

#include "config.h"
#include "loader.h"
#include "settings.h"

typedef struct pm_plan_item {
  const pm_collector_conf_t *conf; /* borrowed from the config */
  pm_plugin_lib_t *lib;            /* one reference, owned */
  pm_setting_t *settings;          /* owned until taken */
} pm_plan_item_t;

typedef struct pm_plan {
  pm_config_t *cfg; /* owned */
  pm_loader_t *loader;
  pm_plan_item_t *items;
  size_t n;
} pm_plan_t;

/* Takes ownership of cfg (even on failure). Returns 0 or an error with
 * one line in err naming file, line and setting. */
int pm_plan_build(pm_loader_t *loader, pm_config_t *cfg, pm_plan_t **out,
                  char *err, size_t errlen);
/* Frees the config, the settings not taken, and puts the libs back. */
void pm_plan_free(pm_plan_t *plan);

#endif

/* Checking a config against its plugins. */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>

int pm_plan_build(pm_loader_t *loader, pm_config_t *cfg, pm_plan_t **out,
                  char *err, size_t errlen) {
  pm_plan_t *plan = calloc(1, sizeof(*plan));
  char msg[1024];
  int rc = 0;

  if (!plan) {
    pm_config_free(cfg);
    return PM_ENOMEM;
  }
  plan->cfg = cfg;
  plan->loader = loader;
  plan->items =
      calloc(cfg->n_collectors ? cfg->n_collectors : 1, sizeof(*plan->items));
  if (!plan->items) {
    pm_plan_free(plan);
    return PM_ENOMEM;
  }
  for (size_t i = 0; i < cfg->n_collectors; i++) {
    const pm_collector_conf_t *c = &cfg->collectors[i];
    pm_plan_item_t *it = &plan->items[i];

    it->conf = c;
    rc = pm_loader_get(loader, c->plugin, &it->lib, msg, sizeof(msg));
    if (rc != 0) {
      snprintf(err, errlen, "%s:%d: collectors.[%zu].plugin: %s", cfg->file,
               c->line, i, msg);
      break;
    }
    plan->n = i + 1;
    rc = pm_settings_build(c->settings, it->lib->desc.settings, cfg->file,
                           c->settings_path, &it->settings, err, errlen);
    if (rc != 0)
      break;
  }
  if (rc != 0) {
    pm_plan_free(plan);
    return rc;
  }
  *out = plan;
  return 0;
}

void pm_plan_free(pm_plan_t *plan) {
  if (!plan)
    return;
  for (size_t i = 0; i < plan->n; i++) {
    pm_setting_free(plan->items[i].settings);
    pm_loader_put(plan->loader, plan->items[i].lib);
  }
  free(plan->items);
  pm_config_free(plan->cfg);
  free(plan);
}

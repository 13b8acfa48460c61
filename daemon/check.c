/* --check-config: each plugin's create, then its destroy, on a loop of
 * their own with a sink that takes nothing (create must not emit). A
 * plugin's create only reads and checks its settings and files; sockets
 * and timers come later (start), so this is safe beside a running
 * daemon. */
#include "check.h"

#include <stdlib.h>

#include "errors.h"
#include "host.h"
#include "log.h"

static int refuse(void *ctx, pm_rec_t *recs, size_t n, const pm_sink_key_t *key,
                  pm_done_cb done, void *arg) {
  (void)ctx, (void)recs, (void)n, (void)key, (void)done, (void)arg;
  return PM_EBUSY;
}

size_t pm_check_create(pm_plan_t *plan) {
  uv_loop_t loop;
  pm_host_ctx_t ctx = {0};
  size_t refused = 0;

  uv_loop_init(&loop);
  ctx.loop = &loop;
  ctx.series = pm_series_registry_new();
  ctx.sink = refuse;
  ctx.timezone = plan->cfg->timezone;
  ctx.max_sample_age_us = plan->cfg->max_sample_age_us;
  if (ctx.series == NULL) {
    pm_error("out of memory");
    exit(1);
  }
  for (size_t i = 0; i < plan->n; i++) {
    pm_plan_item_t *it = &plan->items[i];
    /* The instance takes the settings: the plan keeps nothing to free. */
    pm_instance_t *inst =
        pm_instance_new(&ctx, it->conf, it->lib, it->settings);
    it->settings = NULL;
    if (inst == NULL) {
      pm_error("out of memory");
      exit(1);
    }
    if (pm_instance_create(inst) != 0) /* it logs why */
      refused++;
    pm_instance_release(inst, plan->loader);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_series_registry_free(ctx.series);
  uv_loop_close(&loop);
  return refused;
}

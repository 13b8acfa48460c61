/* A plugin built for a future ABI major: the loader must refuse it. */
#include <portalmetrics/plugin.h>

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  return 0;
}
static int collect(void *self, pm_instance_t *inst) {
  return 0;
}
static void destroy(void *self, pm_instance_t *inst) {}

static const pm_plugin_t plugin = {
    .abi_major = PM_ABI_MAJOR + 1,
    .abi_minor = 3,
    .size = sizeof(pm_plugin_t),
    .name = "badabi",
    .version = "1",
    .description = "built for another ABI",
    .mode = PM_POLL,
    .create = create,
    .collect = collect,
    .destroy = destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &plugin;
}

/*
 * hello: the smallest collector plugin, built out of tree against an
 * installed portalmetrics with pkg-config (see Makefile). Each collect
 * emits one sample: portal.patients_enrolled = 42 (or the `value`
 * setting), now.
 */
#include <portalmetrics/plugin.h>

#include <stdlib.h>

typedef struct hello {
  const pm_host_t *host;
  int64_t value;
} hello_t;

static const pm_setting_decl_t hello_settings[] = {
    {"value", PM_T_INT, "42", 0, "the number of patients to report", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static int hello_create(pm_instance_t *inst, const pm_host_t *host,
                        void **self) {
  hello_t *h = calloc(1, sizeof *h);
  if (!h)
    return PM_ENOMEM;
  h->host = host;
  if (host->setting_int(host->setting_get(host->settings(inst), "value"),
                        &h->value) < 0) {
    free(h);
    return PM_ECONFIG;
  }
  *self = h;
  return 0;
}

static int hello_collect(void *self, pm_instance_t *inst) {
  hello_t *h = self;
  pm_label_t source = {"source", "hello"};
  pm_sample_t s = {.metric = "portal.patients_enrolled",
                   .labels = &source,
                   .n_labels = 1,
                   .ts_us = 0, /* now */
                   .value = (double)h->value,
                   .kind = PM_SET};
  return h->host->emit(inst, &s, 1, NULL);
}

static void hello_destroy(void *self, pm_instance_t *inst) {
  (void)inst;
  free(self);
}

static const pm_plugin_t hello_plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "hello",
    .version = "1.0",
    .description = "reports 42 enrolled patients",
    .mode = PM_POLL,
    .settings = hello_settings,
    .create = hello_create,
    .collect = hello_collect,
    .destroy = hello_destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &hello_plugin;
}

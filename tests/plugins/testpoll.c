/* A poll plugin for the daemon's tests: emits `count` samples of
 * `metric` per run, can sleep (to hang past its deadline) or fail. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <portalmetrics/plugin.h>

typedef struct state {
  const pm_host_t *host;
  const char *metric;
  pm_kind_t kind;
  double value;
  int64_t count, sleep_us, ts_us;
  int fail;
  const char *label;
  const char *key;
} state_t;

static const pm_setting_decl_t settings[] = {
    {"metric", PM_T_STRING, "portal.appointments_requested", 0,
     "metric to emit", NULL},
    {"kind", PM_T_STRING, "add", 0, "set or add", NULL},
    {"value", PM_T_FLOAT, "1", 0, "value of each sample", NULL},
    {"count", PM_T_INT, "1", 0, "samples per run", NULL},
    {"sleep", PM_T_DURATION, "0s", 0, "sleep this long in each collect", NULL},
    {"ts", PM_T_INT, "0", 0, "fixed ts in unix seconds (0: now)", NULL},
    {"fail", PM_T_BOOL, "false", 0, "return an error from every collect", NULL},
    {"label", PM_T_STRING, "", 0, "value of label `site` (empty: none)", NULL},
    {"key", PM_T_STRING, "", 0, "idempotency key of every emit (empty: none)",
     NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_metric_decl_t metrics[] = {
    {"test.gauge", PM_GAUGE, "1", "a test gauge"}, {NULL, 0, NULL, NULL}};

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  const pm_setting_t *root = host->settings(inst);
  state_t *s = calloc(1, sizeof(*s));
  const char *kind;
  int64_t ts;

  if (!s)
    return PM_ENOMEM;
  s->host = host;
  host->setting_string(host->setting_get(root, "metric"), &s->metric);
  host->setting_string(host->setting_get(root, "kind"), &kind);
  s->kind = strcmp(kind, "set") == 0 ? PM_SET : PM_ADD;
  host->setting_float(host->setting_get(root, "value"), &s->value);
  host->setting_int(host->setting_get(root, "count"), &s->count);
  host->setting_duration(host->setting_get(root, "sleep"), &s->sleep_us);
  host->setting_int(host->setting_get(root, "ts"), &ts);
  s->ts_us = ts * 1000000;
  host->setting_bool(host->setting_get(root, "fail"), &s->fail);
  host->setting_string(host->setting_get(root, "label"), &s->label);
  host->setting_string(host->setting_get(root, "key"), &s->key);
  *self = s;
  return 0;
}

static int collect(void *self, pm_instance_t *inst) {
  state_t *s = self;
  pm_label_t l = {"site", s->label};
  int rc = 0;

  if (s->sleep_us > 0) {
    struct timespec ts = {s->sleep_us / 1000000,
                          (s->sleep_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
  }
  if (s->fail)
    return PM_EPEER;
  for (int64_t i = 0; i < s->count && rc == 0; i++) {
    pm_sample_t smp = {s->metric, &l,       s->label[0] ? 1 : 0,
                       s->ts_us,  s->value, s->kind};
    pm_emit_opts_t o = {.size = sizeof(o)};
    if (s->key[0]) {
      o.idem_key = s->key;
      o.idem_key_len = strlen(s->key);
    }
    rc = s->host->emit(inst, &smp, 1, &o);
  }
  return rc;
}

static void destroy(void *self, pm_instance_t *inst) {
  (void)inst;
  free(self);
}

static const pm_plugin_t plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "testpoll",
    .version = "1",
    .description = "test plugin: emits, sleeps or fails on demand",
    .mode = PM_POLL,
    .metrics = metrics,
    .settings = settings,
    .create = create,
    .collect = collect,
    .destroy = destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &plugin;
}

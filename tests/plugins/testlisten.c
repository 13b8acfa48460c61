/* A listener plugin for the daemon's tests: a timer on the daemon's loop
 * emits one `add` sample every `every`, with a durable completion that it
 * counts; stop closes the timer, then reports stopped. */
#include <stdlib.h>

#include <portalmetrics/plugin.h>

typedef struct state {
  const pm_host_t *host;
  pm_instance_t *inst;
  uv_timer_t timer;
  int64_t every_us;
  unsigned long completed;
} state_t;

static const pm_setting_decl_t settings[] = {
    {"every", PM_T_DURATION, "100ms", 0, "emit period", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  state_t *s = calloc(1, sizeof(*s));
  if (!s)
    return PM_ENOMEM;
  s->host = host;
  s->inst = inst;
  host->setting_duration(host->setting_get(host->settings(inst), "every"),
                         &s->every_us);
  *self = s;
  return 0;
}

static void on_durable(pm_instance_t *inst, void *arg, int status) {
  state_t *s = arg;
  if (status == 0)
    s->completed++;
}

static void on_tick(uv_timer_t *t) {
  state_t *s = t->data;
  pm_sample_t smp = {"portal.secure_messages_sent", NULL, 0, 0, 1, PM_ADD};
  pm_emit_opts_t o = {.size = sizeof(o), .on_durable = on_durable, .arg = s};
  s->host->emit(s->inst, &smp, 1, &o);
}

static int start(void *self, pm_instance_t *inst) {
  state_t *s = self;
  uint64_t ms = (uint64_t)(s->every_us / 1000);
  uv_timer_init(s->host->loop(inst), &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, on_tick, ms ? ms : 1, ms ? ms : 1);
  return 0;
}

static void on_closed(uv_handle_t *h) {
  state_t *s = h->data;
  s->host->log(s->inst, PM_LOG_INFO, "listener stopped after %lu completions",
               s->completed);
  s->host->stopped(s->inst);
}

static void stop(void *self, pm_instance_t *inst) {
  state_t *s = self;
  uv_close((uv_handle_t *)&s->timer, on_closed);
}

static void destroy(void *self, pm_instance_t *inst) {
  free(self);
}

static const pm_plugin_t plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "testlisten",
    .version = "1",
    .description = "test listener: emits on a timer",
    .mode = PM_LISTENER,
    .settings = settings,
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &plugin;
}

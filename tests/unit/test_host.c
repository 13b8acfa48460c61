/* The host's emit path (pm_host_table.emit): validation and its error
 * codes, the instance's counters, the all-or-nothing rule, the queue as
 * the sink, completions on the loop, and idempotency keys. Each test gets
 * a private loop, a real queue, a series registry, a dedup index and an
 * instance of a fake plugin (no .so: the lib is filled in here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dedup.h"
#include "host.h"
#include "queue.h"
#include "series.h"

#define DAY_US (INT64_C(86400) * 1000000)
#define MAX_AGE_US (400 * DAY_US)

/* ------------------------------------------------------------------ */
/* The fake plugin. */

static const pm_metric_decl_t fake_metrics[] = {
    {"acme.queue_depth", PM_GAUGE, "messages", "a declared gauge"},
    {"acme.events", PM_COUNT, "events", "a declared count"},
    {NULL, 0, NULL, NULL}};

static int create_calls, destroy_calls;

static int fake_create(pm_instance_t *inst, const pm_host_t *host,
                       void **self) {
  (void)inst;
  (void)host;
  create_calls++;
  *self = &create_calls;
  return 0;
}

static void fake_destroy(void *self, pm_instance_t *inst) {
  (void)inst;
  assert_ptr_equal(self, &create_calls);
  destroy_calls++;
}

/* ------------------------------------------------------------------ */
/* Completions. */

typedef struct durable {
  int calls;
  int status;
  int order; /* global position of the (last) call, from 1 */
  pm_instance_t *inst;
} durable_t;

static int durable_seq;
/* Set by teardown: a test that failed part-way left durable_t's on its
 * dead stack, and the queue's close delivers their completions. */
static int tearing_down;

static void on_durable(pm_instance_t *inst, void *arg, int status) {
  durable_t *d = arg;
  if (tearing_down)
    return;
  d->calls++;
  d->status = status;
  d->order = ++durable_seq;
  d->inst = inst;
}

static pm_emit_opts_t opts_cb(durable_t *d) {
  pm_emit_opts_t o;
  memset(&o, 0, sizeof(o));
  o.size = sizeof(o);
  o.on_durable = on_durable;
  o.arg = d;
  return o;
}

static pm_emit_opts_t opts_key(durable_t *d, const void *key, size_t len) {
  pm_emit_opts_t o = opts_cb(d);
  o.idem_key = key;
  o.idem_key_len = len;
  return o;
}

/* ------------------------------------------------------------------ */
/* The fixture. */

typedef struct fx {
  uv_loop_t loop;
  pm_queue_t *q;
  pm_series_registry_t *reg;
  pm_dedup_t *dedup;
  pm_host_ctx_t ctx;
  pm_plugin_lib_t lib;
  pm_label_t conf_labels[1];
  pm_collector_conf_t conf;
  pm_instance_t *inst;     /* the plugin's instance, collector "c1" */
  pm_instance_t *internal; /* made by a test, released by teardown */
  pm_instance_t *other;    /* made by a test, released by teardown */
} fx_t;

static int sink_push(void *ctx, pm_rec_t *recs, size_t n,
                     const pm_sink_key_t *key, pm_done_cb done,
                     void *done_arg) {
  return pm_queue_push(ctx, recs, n, done, done_arg);
}

/* A sink with a key index of its own (as the spool has): it sees the key
 * and answers 1 for one it knows, taking only the completion. */
static pm_sink_key_t last_key;
static int sink_keyed(void *ctx, pm_rec_t *recs, size_t n,
                      const pm_sink_key_t *key, pm_done_cb done,
                      void *done_arg) {
  int dup = key && last_key.key && key->len == last_key.len &&
            memcmp(key->key, last_key.key, key->len) == 0;
  if (key)
    last_key = *key;
  int rc = pm_queue_push(ctx, recs, dup ? 0 : n, done, done_arg);
  return rc ? rc : dup;
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int fx_setup(void **state, size_t qcap, size_t max_series) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  create_calls = destroy_calls = durable_seq = tearing_down = 0;

  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->q = pm_queue_new(&f->loop, qcap, NULL, NULL);
  f->reg = pm_series_registry_new();
  f->dedup = pm_dedup_new(60 * INT64_C(1000000));
  assert_non_null(f->q);
  assert_non_null(f->reg);
  assert_non_null(f->dedup);
  f->ctx = (pm_host_ctx_t){.loop = &f->loop,
                           .series = f->reg,
                           .sink = sink_push,
                           .sink_ctx = f->q,
                           .timezone = "UTC",
                           .state_dir = NULL,
                           .dedup = f->dedup,
                           .max_sample_age_us = MAX_AGE_US};

  f->lib.name = "fake";
  f->lib.path = "/nonexistent/fake.so";
  f->lib.desc = (pm_plugin_t){.abi_major = PM_ABI_MAJOR,
                              .abi_minor = PM_ABI_MINOR,
                              .size = sizeof(pm_plugin_t),
                              .name = "fake",
                              .version = "0",
                              .description = "a fake plugin",
                              .mode = PM_LISTENER,
                              .metrics = fake_metrics,
                              .create = fake_create,
                              .destroy = fake_destroy};

  f->conf_labels[0] = (pm_label_t){"site", "north"};
  f->conf.name = "c1";
  f->conf.plugin = "fake";
  f->conf.labels = f->conf_labels;
  f->conf.n_labels = 1;
  f->conf.max_series = max_series;

  f->inst = pm_instance_new(&f->ctx, &f->conf, &f->lib, NULL);
  assert_non_null(f->inst);
  assert_int_equal(f->lib.refs, 1);
  assert_int_equal(pm_instance_create(f->inst), 0);
  assert_int_equal(create_calls, 1);
  *state = f;
  return 0;
}

static int setup(void **state) {
  return fx_setup(state, 256, 100);
}

static int setup_small_queue(void **state) {
  return fx_setup(state, 4, 100);
}

static int setup_few_series(void **state) {
  return fx_setup(state, 256, 2);
}

static int teardown(void **state) {
  fx_t *f = *state;

  tearing_down = 1;
  /* No real loader: the lib is not a dlopen()ed one, and with loader
   * NULL release does not put it back (refs stays as taken). */
  if (f->inst) {
    pm_instance_release(f->inst, NULL);
    f->inst = NULL;
  }
  pm_instance_release(f->internal, NULL);
  pm_instance_release(f->other, NULL);
  /* Completions still owed fire here, then the instances are freed. */
  pm_queue_close(f->q, NULL, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(destroy_calls, 1);
  pm_queue_free(f->q);
  pm_series_registry_free(f->reg);
  pm_dedup_free(f->dedup);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers. */

static int emit(pm_instance_t *inst, const pm_sample_t *s, size_t n,
                const pm_emit_opts_t *o) {
  return pm_host_table.emit(inst, s, n, o);
}

static pm_sample_t sample(const char *metric, pm_kind_t kind, double v) {
  return (pm_sample_t){metric, NULL, 0, 0, v, kind};
}

/* The counters, exactly: refused is zero for every reason but `code`. */
static void check_counters(pm_instance_t *inst, uint64_t emitted, uint64_t late,
                           uint64_t dups, int code, uint64_t refused) {
  assert_int_equal(atomic_load(&inst->emitted), emitted);
  assert_int_equal(atomic_load(&inst->late), late);
  assert_int_equal(atomic_load(&inst->duplicates), dups);
  for (int i = 0; i < PM_REASONS; i++) {
    uint64_t want = (code != 0 && i == -code) ? refused : 0;
    if (atomic_load(&inst->refused[i]) != want)
      fail_msg("refused[%d] (%s) is %llu, want %llu", i,
               pm_host_table.strerror(-i),
               (unsigned long long)atomic_load(&inst->refused[i]),
               (unsigned long long)want);
  }
}

static size_t queued(fx_t *f, pm_rec_t *out, size_t max) {
  return pm_queue_read(f->q, 0, out, max);
}

static void run_loop(fx_t *f) {
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ------------------------------------------------------------------ */
/* Accepted samples. */

static void test_valid_set_add(void **state) {
  fx_t *f = *state;
  pm_label_t own[] = {{"source", "hl7"}};
  int64_t ts = wall_us() - DAY_US;
  pm_sample_t s[2] = {
      {"portal.patients_enrolled", own, 1, ts, 42.5, PM_SET},
      {"portal.messages_sent", NULL, 0, ts, 3, PM_ADD},
  };
  pm_rec_t out[4];

  assert_int_equal(emit(f->inst, s, 2, NULL), 0);
  check_counters(f->inst, 2, 0, 0, 0, 0);

  assert_int_equal(queued(f, out, 4), 2);
  assert_int_equal(out[0].seq, 1);
  assert_int_equal(out[1].seq, 2);
  assert_string_equal(out[0].series->metric, "portal.patients_enrolled");
  assert_string_equal(out[0].series->labels_json,
                      "{\"collector\":\"c1\",\"site\":\"north\","
                      "\"source\":\"hl7\"}");
  assert_int_equal(out[0].series->kind, PM_SET);
  assert_true(out[0].value == 42.5);
  assert_int_equal(out[0].ts_us, ts);
  assert_string_equal(out[1].series->metric, "portal.messages_sent");
  assert_string_equal(out[1].series->labels_json,
                      "{\"collector\":\"c1\",\"site\":\"north\"}");
  assert_int_equal(out[1].series->kind, PM_ADD);
  assert_true(out[1].value == 3);

  /* The same series again: the same interned series. */
  assert_int_equal(emit(f->inst, &s[1], 1, NULL), 0);
  assert_int_equal(queued(f, out, 4), 3);
  assert_ptr_equal(out[2].series, out[1].series);
  check_counters(f->inst, 3, 0, 0, 0, 0);

  /* n == 0 takes nothing and is not an error... */
  assert_int_equal(emit(f->inst, NULL, 0, NULL), 0);
  assert_int_equal(pm_queue_len(f->q), 3);
  check_counters(f->inst, 3, 0, 0, 0, 0);
  /* ...and its completion still fires, once, on the loop: a listener
   * acknowledges a message that counted nothing through it. */
  durable_t d = {0};
  pm_emit_opts_t o = {.size = sizeof(o), .on_durable = on_durable, .arg = &d};
  assert_int_equal(emit(f->inst, NULL, 0, &o), 0);
  assert_int_equal(d.calls, 0);
  run_loop(f);
  assert_int_equal(d.calls, 1);
  assert_int_equal(d.status, 0);
}

/* More samples than emit's stack buffer holds. */
static void test_large_batch(void **state) {
  fx_t *f = *state;
  pm_sample_t s[200];
  pm_rec_t out[256];

  for (int i = 0; i < 200; i++)
    s[i] = sample("portal.messages_sent", PM_ADD, i);
  assert_int_equal(emit(f->inst, s, 200, NULL), 0);
  check_counters(f->inst, 200, 0, 0, 0, 0);
  assert_int_equal(queued(f, out, 256), 200);
  assert_true(out[199].value == 199);
  assert_int_equal(out[199].seq, 200);

  /* ... and an invalid one among them (in the malloc'd part). */
  s[150].value = NAN;
  assert_int_equal(emit(f->inst, s, 200, NULL), PM_EVALUE);
  assert_int_equal(pm_queue_len(f->q), 200);
  check_counters(f->inst, 200, 0, 0, PM_EVALUE, 200);
}

static void test_ts_zero_is_now(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portal.patients_enrolled", PM_SET, 1);
  pm_rec_t out[1];

  int64_t before = wall_us();
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  int64_t after = wall_us();
  assert_int_equal(queued(f, out, 1), 1);
  assert_true(out[0].ts_us >= before && out[0].ts_us <= after);
  check_counters(f->inst, 1, 0, 0, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Metrics. */

static void test_metric_name_invalid(void **state) {
  fx_t *f = *state;
  char longname[160];
  const char *bad[] = {"Portal.messages_sent",
                       "portal..messages_sent",
                       "portal.messages_sent.",
                       "1portal.x",
                       "",
                       longname,
                       NULL};
  size_t nbad = sizeof(bad) / sizeof(bad[0]);

  /* 129 bytes, otherwise well formed. */
  memset(longname, 'a', 129);
  longname[129] = '\0';
  for (size_t i = 0; i < nbad; i++) {
    pm_sample_t s = sample(bad[i], PM_SET, 1);
    assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EMETRIC);
  }
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_EMETRIC, nbad);
}

static void test_metric_undeclared(void **state) {
  fx_t *f = *state;
  pm_sample_t s[2] = {sample("acme.undeclared", PM_SET, 1),
                      sample("portal.patients_enrolled", PM_SET, 1)};

  assert_int_equal(emit(f->inst, &s[0], 1, NULL), PM_EMETRIC);
  /* A valid sample after it does not rescue the batch. */
  assert_int_equal(emit(f->inst, s, 2, NULL), PM_EMETRIC);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_EMETRIC, 3);
}

static void test_metric_plugin_declared(void **state) {
  fx_t *f = *state;
  pm_sample_t s[2] = {sample("acme.queue_depth", PM_SET, 7),
                      sample("acme.events", PM_ADD, 1)};
  pm_rec_t out[2];

  assert_int_equal(emit(f->inst, s, 2, NULL), 0);
  assert_int_equal(queued(f, out, 2), 2);
  assert_string_equal(out[0].series->metric, "acme.queue_depth");
  assert_string_equal(out[0].series->labels_json,
                      "{\"collector\":\"c1\",\"site\":\"north\"}");
  assert_string_equal(out[1].series->metric, "acme.events");
  check_counters(f->inst, 2, 0, 0, 0, 0);

  /* A declared gauge is still a gauge. */
  s[0].kind = PM_ADD;
  assert_int_equal(emit(f->inst, &s[0], 1, NULL), PM_EKIND);
  check_counters(f->inst, 2, 0, 0, PM_EKIND, 1);
}

static void test_daemon_metrics(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portalmetricsd.samples_emitted", PM_ADD, 5);
  pm_rec_t out[2];

  /* A plugin may not speak for the daemon. */
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EMETRIC);
  check_counters(f->inst, 0, 0, 0, PM_EMETRIC, 1);
  assert_int_equal(pm_queue_len(f->q), 0);

  /* The daemon's own emitter for the same collector may. */
  f->internal = pm_instance_new_internal(&f->ctx, &f->conf);
  assert_non_null(f->internal);
  assert_int_equal(emit(f->internal, &s, 1, NULL), 0);
  check_counters(f->internal, 1, 0, 0, 0, 0);
  assert_int_equal(queued(f, out, 2), 1);
  assert_string_equal(out[0].series->metric, "portalmetricsd.samples_emitted");
  assert_string_equal(out[0].series->labels_json,
                      "{\"collector\":\"c1\",\"site\":\"north\"}");

  /* It has no plugin: the plugin's declarations are not its own. */
  pm_sample_t p = sample("acme.events", PM_ADD, 1);
  assert_int_equal(emit(f->internal, &p, 1, NULL), PM_EMETRIC);
  check_counters(f->internal, 1, 0, 0, PM_EMETRIC, 1);
  /* The plugin instance's counters are untouched by all this. */
  check_counters(f->inst, 0, 0, 0, PM_EMETRIC, 1);
}

/* The daemon's own health samples are not counted as the collector's. */
static void test_emit_internal_uncounted(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portalmetricsd.collect_runs", PM_ADD, 1);

  f->internal = pm_instance_new_internal(&f->ctx, &f->conf);
  assert_non_null(f->internal);
  assert_int_equal(pm_instance_emit_internal(f->internal, &s, 1), 0);
  assert_int_equal(pm_queue_len(f->q), 1);
  check_counters(f->internal, 0, 0, 0, 0, 0);
  s.value = NAN;
  assert_int_equal(pm_instance_emit_internal(f->internal, &s, 1), PM_EVALUE);
  assert_int_equal(pm_queue_len(f->q), 1);
  check_counters(f->internal, 0, 0, 0, 0, 0);
  check_counters(f->inst, 0, 0, 0, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Kinds and values. */

static void test_gauge_as_add(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portal.patients_enrolled", PM_ADD, 1);

  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EKIND);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_EKIND, 1);
}

static void test_kind_invalid(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portal.messages_sent", (pm_kind_t)3, 1);

  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EINVAL);
  s.kind = (pm_kind_t)0;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EINVAL);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_EINVAL, 2);
}

static void test_value_not_finite(void **state) {
  fx_t *f = *state;
  double bad[] = {NAN, INFINITY, -INFINITY};

  for (size_t i = 0; i < 3; i++) {
    pm_sample_t s = sample("portal.messages_sent", PM_ADD, bad[i]);
    assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EVALUE);
  }
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_EVALUE, 3);
}

static void test_kind_conflict(void **state) {
  fx_t *f = *state;
  pm_label_t a[] = {{"source", "a"}}, b[] = {{"source", "b"}};
  pm_sample_t s = {"portal.messages_sent", a, 1, 0, 1, PM_SET};

  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  s.kind = PM_ADD;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_EKIND);
  /* Another series of the same metric may be the other kind. */
  s.labels = b;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  /* Both kinds of one series in one batch. */
  pm_sample_t two[2] = {{"portal.lab_reports_sent", a, 1, 0, 1, PM_SET},
                        {"portal.lab_reports_sent", a, 1, 0, 1, PM_ADD}};
  assert_int_equal(emit(f->inst, two, 2, NULL), PM_EKIND);
  assert_int_equal(pm_queue_len(f->q), 2);
  check_counters(f->inst, 2, 0, 0, PM_EKIND, 3);
}

/* ------------------------------------------------------------------ */
/* Timestamps. */

static void test_ts_limits(void **state) {
  fx_t *f = *state;
  pm_sample_t s = sample("portal.messages_sent", PM_SET, 1);
  int64_t now = wall_us();

  s.ts_us = now - MAX_AGE_US - DAY_US;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ETS);
  s.ts_us = now + DAY_US + 3600 * INT64_C(1000000);
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ETS);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_ETS, 2);

  /* Inside both limits. */
  s.ts_us = now - MAX_AGE_US + DAY_US;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  s.ts_us = now + DAY_US - 3600 * INT64_C(1000000);
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  assert_int_equal(pm_queue_len(f->q), 2);
  check_counters(f->inst, 2, 0, 0, PM_ETS, 2);
}

/* ------------------------------------------------------------------ */
/* Labels. */

static void test_label_collector_reserved(void **state) {
  fx_t *f = *state;
  pm_label_t own[] = {{"collector", "c2"}};
  pm_sample_t s = {"portal.messages_sent", own, 1, 0, 1, PM_ADD};

  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ELABEL);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_ELABEL, 1);
}

static void test_label_count(void **state) {
  fx_t *f = *state;
  char keys[17][8];
  pm_label_t own[17];
  pm_sample_t s = {"portal.messages_sent", own, 0, 0, 1, PM_ADD};
  pm_rec_t out[1];

  for (int i = 0; i < 17; i++) {
    snprintf(keys[i], sizeof(keys[i]), "k%02d", i);
    own[i] = (pm_label_t){keys[i], "v"};
  }
  /* 17 of the plugin's own. */
  s.n_labels = 17;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ELABEL);
  /* 15 own + site + collector = 17. */
  s.n_labels = 15;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ELABEL);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_ELABEL, 2);
  /* 14 own + site + collector = 16: the limit. */
  s.n_labels = 14;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  assert_int_equal(queued(f, out, 1), 1);
  assert_non_null(strstr(out[0].series->labels_json, "\"k13\":\"v\""));
  assert_non_null(strstr(out[0].series->labels_json, "\"collector\":\"c1\""));
  check_counters(f->inst, 1, 0, 0, PM_ELABEL, 2);
}

static void test_label_invalid(void **state) {
  fx_t *f = *state;
  pm_label_t bad[][1] = {
      {{"Source", "a"}}, {{"1source", "a"}},  {{"so-urce", "a"}},
      {{"", "a"}},       {{NULL, "a"}},       {{"source", "a\nb"}},
      {{"source", ""}},  {{"site", "south"}}, /* given twice */
  };
  size_t nbad = sizeof(bad) / sizeof(bad[0]);

  for (size_t i = 0; i < nbad; i++) {
    pm_sample_t s = {"portal.messages_sent", bad[i], 1, 0, 1, PM_ADD};
    if (emit(f->inst, &s, 1, NULL) != PM_ELABEL)
      fail_msg("label %zu not refused with PM_ELABEL", i);
  }
  /* Labels counted but not given. */
  pm_sample_t s = {"portal.messages_sent", NULL, 1, 0, 1, PM_ADD};
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ELABEL);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, PM_ELABEL, nbad + 1);
}

/* ------------------------------------------------------------------ */
/* All or nothing, series, the queue. */

static void test_all_or_nothing(void **state) {
  fx_t *f = *state;
  durable_t d = {0};
  pm_emit_opts_t o = opts_cb(&d);
  pm_sample_t s[3] = {sample("portal.messages_sent", PM_ADD, 1),
                      sample("portal.lab_reports_sent", PM_ADD, 1),
                      sample("portal.lab_reports_viewed", PM_ADD, 1)};

  s[1].metric = "portal.Bad";
  assert_int_equal(emit(f->inst, s, 3, &o), PM_EMETRIC);
  assert_int_equal(pm_queue_len(f->q), 0);
  assert_int_equal(pm_queue_last_seq(f->q), 0);
  /* All three are counted as refused. */
  check_counters(f->inst, 0, 0, 0, PM_EMETRIC, 3);
  run_loop(f);
  assert_int_equal(d.calls, 0);

  /* The last one bad. */
  s[1].metric = "portal.lab_reports_sent";
  s[2].value = NAN;
  assert_int_equal(emit(f->inst, s, 3, &o), PM_EVALUE);
  assert_int_equal(pm_queue_len(f->q), 0);
  run_loop(f);
  assert_int_equal(d.calls, 0);
  assert_int_equal(atomic_load(&f->inst->refused[-PM_EVALUE]), 3);
  assert_int_equal(atomic_load(&f->inst->emitted), 0);
}

static void test_max_series(void **state) {
  fx_t *f = *state;
  pm_label_t a[] = {{"source", "a"}}, b[] = {{"source", "b"}},
             c[] = {{"source", "c"}};
  pm_sample_t s = {"portal.messages_sent", a, 1, 0, 1, PM_ADD};

  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  s.labels = b;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  assert_int_equal(pm_series_count(f->reg, "c1"), 2);
  s.labels = c;
  assert_int_equal(emit(f->inst, &s, 1, NULL), PM_ESERIES);
  check_counters(f->inst, 2, 0, 0, PM_ESERIES, 1);
  /* Known series still pass at the cap. */
  s.labels = a;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  s.labels = b;
  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  assert_int_equal(pm_series_count(f->reg, "c1"), 2);
  assert_int_equal(pm_queue_len(f->q), 4);
  check_counters(f->inst, 4, 0, 0, PM_ESERIES, 1);
}

static void test_queue_full(void **state) { /* queue of 4 */
  fx_t *f = *state;
  durable_t d1 = {0}, d2 = {0}, d3 = {0};
  pm_emit_opts_t o1 = opts_cb(&d1), o2 = opts_cb(&d2), o3 = opts_cb(&d3);
  pm_sample_t s[2] = {sample("portal.messages_sent", PM_ADD, 1),
                      sample("portal.messages_sent", PM_ADD, 2)};

  assert_int_equal(emit(f->inst, s, 2, &o1), 0);
  assert_int_equal(emit(f->inst, s, 1, NULL), 0);
  /* One slot left: two do not fit, and nothing is taken. */
  assert_int_equal(emit(f->inst, s, 2, &o2), PM_EBUSY);
  assert_int_equal(pm_queue_len(f->q), 3);
  /* Busy is the daemon's state, not the samples' fault: not refused. */
  check_counters(f->inst, 3, 0, 0, 0, 0);
  run_loop(f);
  assert_int_equal(d1.calls, 1);
  assert_int_equal(d2.calls, 0);

  /* Drained, the retry is taken. */
  pm_queue_ack(f->q, pm_queue_last_seq(f->q));
  assert_int_equal(emit(f->inst, s, 2, &o3), 0);
  check_counters(f->inst, 5, 0, 0, 0, 0);
  run_loop(f);
  assert_int_equal(d2.calls, 0);
  assert_int_equal(d3.calls, 1);
  assert_int_equal(d3.status, 0);
}

/* ------------------------------------------------------------------ */
/* Stopping. */

static void test_stopping(void **state) {
  fx_t *f = *state;
  durable_t d = {0};
  pm_emit_opts_t o = opts_cb(&d);
  pm_sample_t s[2] = {sample("portal.messages_sent", PM_ADD, 1),
                      sample("portal.messages_sent", PM_ADD, 2)};

  atomic_store(&f->inst->stopping, 1);
  assert_int_equal(emit(f->inst, s, 2, &o), PM_ESTOPPED);
  /* Late, not refused: even an invalid sample is just late now. */
  s[1].value = NAN;
  assert_int_equal(emit(f->inst, s, 2, &o), PM_ESTOPPED);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 4, 0, 0, 0);
  run_loop(f);
  assert_int_equal(d.calls, 0);
}

static void test_abandoned(void **state) {
  fx_t *f = *state;
  durable_t d = {0};
  pm_emit_opts_t o = opts_cb(&d);
  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);

  assert_int_equal(emit(f->inst, &s, 1, NULL), 0);
  atomic_store(&f->inst->abandoned, 1);
  assert_int_equal(emit(f->inst, &s, 1, &o), PM_ESTOPPED);
  assert_int_equal(pm_queue_len(f->q), 1);
  check_counters(f->inst, 1, 1, 0, 0, 0);
  run_loop(f);
  assert_int_equal(d.calls, 0);
}

/* ------------------------------------------------------------------ */
/* Completions. */

static void test_completion(void **state) {
  fx_t *f = *state;
  durable_t d = {0}, bad = {0}, old = {0};
  pm_emit_opts_t o = opts_cb(&d), ob = opts_cb(&bad), oo = opts_cb(&old);
  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);

  assert_int_equal(emit(f->inst, &s, 1, &o), 0);
  /* Never from inside emit. */
  assert_int_equal(d.calls, 0);
  assert_int_equal(atomic_load(&f->inst->pending), 1);

  /* A failed emit never calls its callback. */
  s.value = NAN;
  assert_int_equal(emit(f->inst, &s, 1, &ob), PM_EVALUE);
  s.value = 1;

  /* An older plugin's opts, too short to hold a callback: ignored. */
  oo.size = offsetof(pm_emit_opts_t, on_durable);
  assert_int_equal(emit(f->inst, &s, 1, &oo), 0);

  run_loop(f);
  assert_int_equal(d.calls, 1);
  assert_int_equal(d.status, 0);
  assert_ptr_equal(d.inst, f->inst);
  assert_int_equal(bad.calls, 0);
  assert_int_equal(old.calls, 0);
  assert_int_equal(atomic_load(&f->inst->pending), 0);

  /* Exactly once. */
  run_loop(f);
  run_loop(f);
  assert_int_equal(d.calls, 1);
  assert_int_equal(bad.calls, 0);
  check_counters(f->inst, 2, 0, 0, PM_EVALUE, 1);
}

/* The instance outlives its release until its completions are delivered;
 * then the plugin's destroy runs and it is freed (ASan watches). */
static void test_release_with_pending(void **state) {
  fx_t *f = *state;
  durable_t d = {0};
  pm_emit_opts_t o = opts_cb(&d);
  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);
  pm_instance_t *inst = f->inst;

  assert_int_equal(emit(inst, &s, 1, &o), 0);
  f->inst = NULL;
  pm_instance_release(inst, NULL);
  assert_int_equal(destroy_calls, 0);
  assert_int_equal(d.calls, 0);
  run_loop(f);
  assert_int_equal(d.calls, 1);
  assert_int_equal(d.status, 0);
  assert_ptr_equal(d.inst, inst);
  assert_int_equal(destroy_calls, 1);
}

/* ------------------------------------------------------------------ */
/* Idempotency keys. */

static void test_idem_key(void **state) {
  fx_t *f = *state;
  durable_t d1 = {0}, d2 = {0}, d3 = {0}, d4 = {0};
  const char k1[] = "EPIC|NORTH|MSG0001", k2[] = "EPIC|NORTH|MSG0002";
  pm_emit_opts_t o1 = opts_key(&d1, k1, strlen(k1));
  pm_emit_opts_t o2 = opts_key(&d2, k1, strlen(k1));
  pm_emit_opts_t o3 = opts_key(&d3, k2, strlen(k2));
  pm_emit_opts_t o4 = opts_key(&d4, k1, strlen(k1));
  pm_sample_t s[2] = {sample("portal.messages_sent", PM_ADD, 1),
                      sample("portal.appointments_requested", PM_ADD, 1)};

  assert_int_equal(emit(f->inst, s, 2, &o1), 0);
  /* The retransmission: accepted, nothing queued, counted once. */
  assert_int_equal(emit(f->inst, s, 2, &o2), 0);
  assert_int_equal(pm_queue_len(f->q), 2);
  assert_int_equal(pm_queue_last_seq(f->q), 2);
  check_counters(f->inst, 2, 0, 1, 0, 0);
  /* Another key is another message. */
  assert_int_equal(emit(f->inst, s, 1, &o3), 0);
  assert_int_equal(pm_queue_len(f->q), 3);
  check_counters(f->inst, 3, 0, 1, 0, 0);

  /* The same key from another collector is not a duplicate. */
  pm_collector_conf_t conf2 = f->conf;
  conf2.name = "c2";
  f->other = pm_instance_new(&f->ctx, &conf2, &f->lib, NULL);
  assert_non_null(f->other);
  assert_int_equal(emit(f->other, s, 1, &o4), 0);
  check_counters(f->other, 1, 0, 0, 0, 0);
  assert_int_equal(pm_queue_len(f->q), 4);

  assert_int_equal(d1.calls + d2.calls + d3.calls + d4.calls, 0);
  run_loop(f);
  assert_int_equal(d1.calls, 1);
  assert_int_equal(d2.calls, 1);
  assert_int_equal(d3.calls, 1);
  assert_int_equal(d4.calls, 1);
  assert_int_equal(d1.status, 0);
  assert_int_equal(d2.status, 0);
  /* The duplicate's completion after the original's. */
  assert_true(d2.order > d1.order);

  /* Still a duplicate after the original is durable. */
  d2 = (durable_t){0};
  assert_int_equal(emit(f->inst, s, 2, &o2), 0);
  assert_int_equal(pm_queue_len(f->q), 4);
  check_counters(f->inst, 3, 0, 2, 0, 0);
  run_loop(f);
  assert_int_equal(d2.calls, 1);
  assert_int_equal(d2.status, 0);
}

static void test_idem_key_invalid(void **state) {
  fx_t *f = *state;
  durable_t d = {0};
  char big[257];
  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);

  memset(big, 'k', sizeof(big));
  pm_emit_opts_t o = opts_key(&d, big, 0);
  assert_int_equal(emit(f->inst, &s, 1, &o), PM_EINVAL);
  o.idem_key_len = 257;
  assert_int_equal(emit(f->inst, &s, 1, &o), PM_EINVAL);
  assert_int_equal(pm_queue_len(f->q), 0);
  /* Refused like any invalid emit: counted, and the plugin sees why. */
  check_counters(f->inst, 0, 0, 0, PM_EINVAL, 2);
  run_loop(f);
  assert_int_equal(d.calls, 0);

  /* 256 bytes is the limit, and no key at all is fine. */
  o.idem_key_len = 256;
  assert_int_equal(emit(f->inst, &s, 1, &o), 0);
  o.idem_key = NULL;
  o.idem_key_len = 0;
  assert_int_equal(emit(f->inst, &s, 1, &o), 0);
  check_counters(f->inst, 2, 0, 0, PM_EINVAL, 2);
  run_loop(f);
  assert_int_equal(d.calls, 2);
}

/* A sink that keeps keys itself gets them (with the collector as scope),
 * and its "duplicate" answer is counted and completed like the host's. */
static void test_idem_key_sink(void **state) {
  fx_t *f = *state;
  durable_t d1 = {0}, d2 = {0};
  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);

  f->ctx.dedup = NULL;
  f->ctx.sink = sink_keyed;
  last_key = (pm_sink_key_t){0};
  pm_emit_opts_t o1 = opts_key(&d1, "A|F|7", 5);
  pm_emit_opts_t o2 = opts_key(&d2, "A|F|7", 5);
  assert_int_equal(emit(f->inst, &s, 1, &o1), 0);
  assert_string_equal(last_key.scope, "c1");
  assert_int_equal(emit(f->inst, &s, 1, &o2), 0);
  assert_int_equal(pm_queue_len(f->q), 1);
  check_counters(f->inst, 1, 0, 1, 0, 0);
  run_loop(f);
  assert_int_equal(d1.calls, 1);
  assert_int_equal(d2.calls, 1);
  assert_true(d1.order < d2.order);
}

/* A key whose emit failed is not burnt: the sender's retry is taken. */
static void test_idem_key_not_burnt(void **state) { /* queue of 4 */
  fx_t *f = *state;
  durable_t d1 = {0}, d2 = {0}, d3 = {0}, d4 = {0};
  const char k[] = "EPIC|NORTH|MSG0042", kv[] = "EPIC|NORTH|MSG0043";
  pm_emit_opts_t o1 = opts_key(&d1, k, strlen(k));
  pm_emit_opts_t o2 = opts_key(&d2, k, strlen(k));
  pm_emit_opts_t o3 = opts_key(&d3, k, strlen(k));
  pm_sample_t s[4];

  for (int i = 0; i < 4; i++)
    s[i] = sample("portal.messages_sent", PM_ADD, i);
  assert_int_equal(emit(f->inst, s, 3, NULL), 0);
  assert_int_equal(emit(f->inst, s, 2, &o1), PM_EBUSY);
  check_counters(f->inst, 3, 0, 0, 0, 0);

  pm_queue_ack(f->q, pm_queue_last_seq(f->q));
  assert_int_equal(emit(f->inst, s, 2, &o2), 0);
  /* Taken, not a duplicate. */
  check_counters(f->inst, 5, 0, 0, 0, 0);
  assert_int_equal(pm_queue_len(f->q), 2);
  /* Now it is reserved. */
  assert_int_equal(emit(f->inst, s, 2, &o3), 0);
  check_counters(f->inst, 5, 0, 1, 0, 0);
  assert_int_equal(pm_queue_len(f->q), 2);

  /* A refused (invalid) emit does not burn its key either. */
  pm_emit_opts_t o4 = opts_key(&d4, kv, strlen(kv));
  s[0].value = NAN;
  assert_int_equal(emit(f->inst, s, 1, &o4), PM_EVALUE);
  s[0].value = 0;
  assert_int_equal(emit(f->inst, s, 1, &o4), 0);
  check_counters(f->inst, 6, 0, 1, PM_EVALUE, 1);

  run_loop(f);
  assert_int_equal(d1.calls, 0);
  assert_int_equal(d2.calls, 1);
  assert_int_equal(d3.calls, 1);
  assert_int_equal(d4.calls, 1);
  assert_true(d3.order > d2.order);
}

static void test_bad_args(void **state) {
  fx_t *f = *state;

  pm_sample_t s = sample("portal.messages_sent", PM_ADD, 1);
  assert_int_equal(emit(NULL, &s, 1, NULL), PM_EINVAL);
  assert_int_equal(emit(f->inst, NULL, 1, NULL), PM_EINVAL);
  assert_int_equal(pm_queue_len(f->q), 0);
  check_counters(f->inst, 0, 0, 0, 0, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_valid_set_add, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ts_zero_is_now, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metric_name_invalid, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_metric_undeclared, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metric_plugin_declared, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_daemon_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_emit_internal_uncounted, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_gauge_as_add, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kind_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_value_not_finite, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kind_conflict, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ts_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_label_collector_reserved, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_label_count, setup, teardown),
      cmocka_unit_test_setup_teardown(test_label_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_series, setup_few_series,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_queue_full, setup_small_queue,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stopping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_abandoned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_completion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_with_pending, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_idem_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idem_key_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idem_key_sink, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idem_key_not_burnt,
                                      setup_small_queue, teardown),
      cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

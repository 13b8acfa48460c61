/*
 * A listener for the durability tests. Every `every` it emits one batch
 * of `batch` distinguishable `add` samples: sample k (a global counter)
 * has ts = base + k microseconds and value 1, so a row in PostgreSQL names
 * the sample it came from. It records in its state directory:
 *   reserved    the next batch number, fsynced BEFORE a batch is emitted,
 *               so a batch number is never emitted for two contents;
 *   completed   one line per batch whose completion said durable.
 * With `keys`, each batch is emitted with the idempotency key
 * "batch-<b>", and on start every reserved batch without a completion is
 * emitted again (as an HL7 sender retransmits what it has no ACK for).
 * `batches` caps how many batches it makes in all (0: no cap).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <portalmetrics/plugin.h>

typedef struct state {
  const pm_host_t *host;
  pm_instance_t *inst;
  uv_timer_t timer;
  int64_t every_us, batch, base_s, cap;
  int keys;
  char path_reserved[4096], path_completed[4096];
  FILE *completed;
  int64_t next;  /* next new batch number */
  int64_t *redo; /* keys mode: batches to emit again */
  size_t nredo, iredo;
  uint8_t *done_map; /* keys mode: completed batches seen at start */
} state_t;

typedef struct pending {
  state_t *s;
  int64_t b;
} pending_t;

static const pm_setting_decl_t settings[] = {
    {"every", PM_T_DURATION, "5ms", 0, "batch period", NULL},
    {"batch", PM_T_INT, "10", 0, "samples per batch", NULL},
    {"base", PM_T_INT, NULL, 1, "ts of sample 0, unix seconds", NULL},
    {"keys", PM_T_BOOL, "false", 0,
     "emit with idempotency keys, re-emit "
     "batches without completion at start",
     NULL},
    {"batches", PM_T_INT, "0", 0, "stop after this many batches (0: never)",
     NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static int write_reserved(state_t *s, int64_t next) {
  char tmp[4200], buf[32];
  int fd, len = snprintf(buf, sizeof(buf), "%" PRId64 "\n", next);
  snprintf(tmp, sizeof(tmp), "%s.tmp", s->path_reserved);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) != 0) {
    if (fd >= 0)
      close(fd);
    return PM_EIO;
  }
  close(fd);
  return rename(tmp, s->path_reserved) == 0 ? 0 : PM_EIO;
}

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  const pm_setting_t *root = host->settings(inst);
  state_t *s = calloc(1, sizeof(*s));
  const char *dir = host->state_dir(inst);
  FILE *f;
  int64_t b;

  if (!s || !dir) {
    free(s);
    return PM_EIO;
  }
  s->host = host;
  s->inst = inst;
  host->setting_duration(host->setting_get(root, "every"), &s->every_us);
  host->setting_int(host->setting_get(root, "batch"), &s->batch);
  host->setting_int(host->setting_get(root, "base"), &s->base_s);
  host->setting_bool(host->setting_get(root, "keys"), &s->keys);
  host->setting_int(host->setting_get(root, "batches"), &s->cap);
  snprintf(s->path_reserved, sizeof(s->path_reserved), "%s/reserved", dir);
  snprintf(s->path_completed, sizeof(s->path_completed), "%s/completed", dir);

  if ((f = fopen(s->path_reserved, "r"))) {
    if (fscanf(f, "%" SCNd64, &s->next) != 1)
      s->next = 0;
    fclose(f);
  }
  if (s->keys && s->next > 0) {
    s->done_map = calloc((size_t)s->next, 1);
    s->redo = calloc((size_t)s->next, sizeof(*s->redo));
    if ((f = fopen(s->path_completed, "r"))) {
      while (fscanf(f, "%" SCNd64, &b) == 1)
        if (b >= 0 && b < s->next)
          s->done_map[b] = 1;
      fclose(f);
    }
    for (b = 0; b < s->next; b++)
      if (!s->done_map[b])
        s->redo[s->nredo++] = b;
    host->log(inst, PM_LOG_INFO, "re-emitting %zu batches without completion",
              s->nredo);
  }
  s->completed = fopen(s->path_completed, "a");
  if (!s->completed) {
    free(s->redo);
    free(s->done_map);
    free(s);
    return PM_EIO;
  }
  *self = s;
  return 0;
}

static void on_durable(pm_instance_t *inst, void *arg, int status) {
  pending_t *p = arg;
  if (status == 0) {
    fprintf(p->s->completed, "%" PRId64 "\n", p->b);
    fflush(p->s->completed);
  }
  free(p);
}

/* 0: emitted or to be retried later; <0: stop the timer. */
static int emit_batch(state_t *s, int64_t b) {
  pm_sample_t smp[256];
  char key[32];
  int64_t n = s->batch < 256 ? s->batch : 256;
  pending_t *p = malloc(sizeof(*p));
  pm_emit_opts_t o = {.size = sizeof(o), .on_durable = on_durable, .arg = p};
  int rc;

  if (!p)
    return PM_ENOMEM;
  p->s = s;
  p->b = b;
  for (int64_t i = 0; i < n; i++) {
    int64_t k = b * s->batch + i;
    smp[i] = (pm_sample_t){"portal.messages_sent",  NULL, 0,
                           s->base_s * 1000000 + k, 1,    PM_ADD};
  }
  if (s->keys) {
    int len = snprintf(key, sizeof(key), "batch-%" PRId64, b);
    o.idem_key = key;
    o.idem_key_len = (size_t)len;
  }
  rc = s->host->emit(s->inst, smp, (size_t)n, &o);
  if (rc != 0)
    free(p);
  return rc;
}

static void on_tick(uv_timer_t *t) {
  state_t *s = t->data;
  int rc;

  if (s->iredo < s->nredo) {
    if (emit_batch(s, s->redo[s->iredo]) == 0)
      s->iredo++;
    return;
  }
  if (s->cap > 0 && s->next >= s->cap)
    return;
  /* Reserve before emitting: a batch number never names two contents. */
  if (write_reserved(s, s->next + 1) != 0) {
    s->host->log(s->inst, PM_LOG_ERROR, "cannot write %s", s->path_reserved);
    return;
  }
  rc = emit_batch(s, s->next);
  if (rc == 0 || rc == PM_EBUSY || rc == PM_ESTOPPED) {
    /* Busy: this batch number stays reserved and is never emitted in the
     * plain mode; with keys it is re-emitted at the next start. */
    s->next++;
  }
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
  s->host->stopped(s->inst);
}

static void stop(void *self, pm_instance_t *inst) {
  state_t *s = self;
  (void)inst;
  uv_close((uv_handle_t *)&s->timer, on_closed);
}

static void destroy(void *self, pm_instance_t *inst) {
  state_t *s = self;
  (void)inst;
  fclose(s->completed);
  free(s->redo);
  free(s->done_map);
  free(s);
}

static const pm_plugin_t plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "testdurable",
    .version = "1",
    .description = "durability test listener: distinguishable add samples",
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

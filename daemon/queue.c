/* The in-memory hand-off: a ring of records under one mutex, and a list
 * of completions delivered on the loop thread through one uv_async_t
 * (uv_async_send is the only libuv call that is safe from other threads,
 * and it coalesces, so a burst of pushes wakes the loop once). */
#include "queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct done {
  pm_done_cb cb;
  void *arg;
} done_t;

struct pm_queue {
  pthread_mutex_t mu;
  uv_async_t async;
  pm_rec_t *ring;
  size_t size;           /* allocated slots; grows up to cap */
  size_t cap, head, len; /* ring[head] holds seq head_seq */
  uint64_t head_seq;     /* seq of ring[head] when len > 0 */
  uint64_t next_seq;
  done_t *dones;
  size_t ndones, capdones;
  int closing;
  pm_ready_cb on_ready;
  void *ready_arg;
  void (*close_cb)(void *);
  void *close_arg;
};

static void on_async(uv_async_t *h) {
  pm_queue_t *q = h->data;
  done_t *d;
  size_t n;

  pthread_mutex_lock(&q->mu);
  d = q->dones;
  n = q->ndones;
  q->dones = NULL;
  q->ndones = q->capdones = 0;
  pthread_mutex_unlock(&q->mu);

  for (size_t i = 0; i < n; i++)
    d[i].cb(d[i].arg, 0);
  free(d);
  if (q->on_ready && !q->closing)
    q->on_ready(q->ready_arg);
}

/* Memory follows use: the ring starts small and doubles up to cap, so a
 * large cap costs nothing until an outage fills it. Called locked. */
static int grow(pm_queue_t *q, size_t need) {
  size_t size = q->size;
  pm_rec_t *ring;

  while (size < need)
    size = size * 2 < q->cap ? size * 2 : q->cap;
  ring = malloc(size * sizeof(*ring));
  if (!ring)
    return PM_ENOMEM;
  for (size_t i = 0; i < q->len; i++)
    ring[i] = q->ring[(q->head + i) % q->size];
  free(q->ring);
  q->ring = ring;
  q->size = size;
  q->head = 0;
  return 0;
}

pm_queue_t *pm_queue_new(uv_loop_t *loop, size_t max_records,
                         pm_ready_cb on_ready, void *ready_arg) {
  pm_queue_t *q = calloc(1, sizeof(*q));
  if (!q)
    return NULL;
  q->cap = max_records ? max_records : 1;
  q->size = q->cap < 65536 ? q->cap : 65536;
  q->ring = malloc(q->size * sizeof(*q->ring));
  if (!q->ring || uv_async_init(loop, &q->async, on_async) != 0) {
    free(q->ring);
    free(q);
    return NULL;
  }
  pthread_mutex_init(&q->mu, NULL);
  q->async.data = q;
  q->next_seq = 1;
  q->head_seq = 1;
  q->on_ready = on_ready;
  q->ready_arg = ready_arg;
  return q;
}

int pm_queue_push(pm_queue_t *q, pm_rec_t *recs, size_t n, pm_done_cb done,
                  void *done_arg) {
  int rc = 0;

  pthread_mutex_lock(&q->mu);
  if (q->closing) {
    rc = PM_ESTOPPED;
    goto out;
  }
  if (n > q->cap - q->len) {
    rc = PM_EBUSY;
    goto out;
  }
  if (q->len + n > q->size && grow(q, q->len + n) != 0) {
    rc = PM_ENOMEM;
    goto out;
  }
  if (done && q->ndones == q->capdones) {
    size_t c = q->capdones ? q->capdones * 2 : 64;
    done_t *d = realloc(q->dones, c * sizeof(*d));
    if (!d) {
      rc = PM_ENOMEM;
      goto out;
    }
    q->dones = d;
    q->capdones = c;
  }
  if (q->len == 0)
    q->head_seq = q->next_seq;
  for (size_t i = 0; i < n; i++) {
    recs[i].seq = q->next_seq++;
    q->ring[(q->head + q->len) % q->size] = recs[i];
    q->len++;
  }
  if (done)
    q->dones[q->ndones++] = (done_t){done, done_arg};
out:
  pthread_mutex_unlock(&q->mu);
  if (rc == 0)
    uv_async_send(&q->async);
  return rc;
}

size_t pm_queue_read(pm_queue_t *q, uint64_t after_seq, pm_rec_t *out,
                     size_t max) {
  size_t n = 0, skip;

  pthread_mutex_lock(&q->mu);
  if (q->len > 0) {
    skip =
        after_seq + 1 > q->head_seq ? (size_t)(after_seq + 1 - q->head_seq) : 0;
    for (size_t i = skip; i < q->len && n < max; i++)
      out[n++] = q->ring[(q->head + i) % q->size];
  }
  pthread_mutex_unlock(&q->mu);
  return n;
}

void pm_queue_ack(pm_queue_t *q, uint64_t upto_seq) {
  pthread_mutex_lock(&q->mu);
  while (q->len > 0 && q->head_seq <= upto_seq) {
    q->head = (q->head + 1) % q->size;
    q->len--;
    q->head_seq++;
  }
  pthread_mutex_unlock(&q->mu);
}

size_t pm_queue_len(pm_queue_t *q) {
  size_t n;
  pthread_mutex_lock(&q->mu);
  n = q->len;
  pthread_mutex_unlock(&q->mu);
  return n;
}

int pm_queue_full(pm_queue_t *q) {
  int full;
  pthread_mutex_lock(&q->mu);
  full = q->len >= q->cap;
  pthread_mutex_unlock(&q->mu);
  return full;
}

uint64_t pm_queue_last_seq(pm_queue_t *q) {
  uint64_t s;
  pthread_mutex_lock(&q->mu);
  s = q->next_seq - 1;
  pthread_mutex_unlock(&q->mu);
  return s;
}

static void on_closed(uv_handle_t *h) {
  pm_queue_t *q = h->data;
  if (q->close_cb)
    q->close_cb(q->close_arg);
}

void pm_queue_close(pm_queue_t *q, void (*cb)(void *arg), void *arg) {
  pthread_mutex_lock(&q->mu);
  q->closing = 1;
  pthread_mutex_unlock(&q->mu);
  /* Records pushed before close are queued: their completions fire with
   * success, as they would have on the next async. */
  on_async(&q->async);
  q->close_cb = cb;
  q->close_arg = arg;
  uv_close((uv_handle_t *)&q->async, on_closed);
}

void pm_queue_free(pm_queue_t *q) {
  if (!q)
    return;
  free(q->dones);
  free(q->ring);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

static size_t src_read(void *q, uint64_t after, pm_rec_t *out, size_t max) {
  return pm_queue_read(q, after, out, max);
}
static void src_ack(void *q, uint64_t upto) {
  pm_queue_ack(q, upto);
}
static size_t src_len(void *q) {
  return pm_queue_len(q);
}
static int src_full(void *q) {
  return pm_queue_full(q);
}
static uint64_t src_last_seq(void *q) {
  return pm_queue_last_seq(q);
}

pm_source_t pm_queue_source(pm_queue_t *q) {
  return (pm_source_t){q, src_read, src_ack, src_len, src_full, src_last_seq};
}

/* A grow-on-demand thread pool. Threads are detached: a hung collect
 * must never hold up shutdown, so nobody ever joins one. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <portalmetrics/plugin.h>
#include "log.h"

#define IDLE_EXIT_SEC 30

typedef struct job {
  pm_work_fn work;
  pm_after_fn after;
  void *arg;
  int status;
  struct job *next;
} job_t;

struct pm_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uv_async_t async;
  job_t *todo_head, *todo_tail; /* waiting for a thread */
  job_t *done;                  /* finished, for the loop thread */
  unsigned nthreads, nidle, busy, max_threads;
  int stopping;
  pm_ratelimit_t busy_rl; /* under mu */
  void (*shutdown_cb)(void *);
  void *shutdown_arg;
};

static void *worker(void *arg) {
  pm_pool_t *p = arg;
  struct timespec until;

  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->todo_head && !p->stopping) {
      p->nidle++;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += IDLE_EXIT_SEC;
      int rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
      p->nidle--;
      if (rc == ETIMEDOUT && !p->todo_head)
        goto exit;
    }
    if (p->stopping)
      goto exit;
    job_t *j = p->todo_head;
    p->todo_head = j->next;
    if (!p->todo_head)
      p->todo_tail = NULL;
    p->busy++;
    pthread_mutex_unlock(&p->mu);

    j->work(j->arg);

    pthread_mutex_lock(&p->mu);
    p->busy--;
    if (p->stopping) {
      /* Nobody waits for it any more: the owner was told at shutdown. */
      free(j);
      goto exit;
    }
    j->status = 0;
    j->next = p->done;
    p->done = j;
    uv_async_send(&p->async);
  }
exit:
  p->nthreads--;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Run the `after`s in submission order of completion. */
static void run_afters(job_t *list) {
  job_t *rev = NULL, *next;
  for (; list; list = next) {
    next = list->next;
    list->next = rev;
    rev = list;
  }
  for (; rev; rev = next) {
    next = rev->next;
    rev->after(rev->arg, rev->status);
    free(rev);
  }
}

static void on_async(uv_async_t *h) {
  pm_pool_t *p = h->data;
  job_t *list;

  pthread_mutex_lock(&p->mu);
  list = p->done;
  p->done = NULL;
  pthread_mutex_unlock(&p->mu);
  run_afters(list);
}

pm_pool_t *pm_pool_new(uv_loop_t *loop, unsigned max_threads) {
  pm_pool_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  if (uv_async_init(loop, &p->async, on_async) != 0) {
    free(p);
    return NULL;
  }
  p->async.data = p;
  p->max_threads = max_threads ? max_threads : 1;
  p->busy_rl.interval_us = 60 * INT64_C(1000000);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  return p;
}

int pm_pool_submit(pm_pool_t *p, pm_work_fn work, pm_after_fn after,
                   void *arg) {
  job_t *j = calloc(1, sizeof(*j));
  pthread_t t;
  pthread_attr_t attr;
  int rc = 0;

  if (!j)
    return PM_ENOMEM;
  j->work = work;
  j->after = after;
  j->arg = arg;

  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    free(j);
    return PM_ESTOPPED;
  }
  if (p->todo_tail)
    p->todo_tail->next = j;
  else
    p->todo_head = j;
  p->todo_tail = j;

  /* A hung job holds its thread: start another while under the cap, so
   * the others keep their schedule. */
  if (p->nidle == 0 && p->nthreads < p->max_threads) {
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, worker, p) == 0)
      p->nthreads++;
    else if (p->nthreads == 0)
      rc = PM_ENOMEM;
    pthread_attr_destroy(&attr);
    if (rc) {
      p->todo_head = p->todo_tail = NULL;
      free(j);
    }
  } else if (p->nidle == 0 &&
             pm_ratelimit_ok(&p->busy_rl, (int64_t)(uv_hrtime() / 1000),
                             NULL)) {
    pm_warn("all %u collector threads are busy (hung collectors?): runs "
            "wait for a thread",
            p->max_threads);
  }
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

unsigned pm_pool_busy(pm_pool_t *p) {
  unsigned n;
  pthread_mutex_lock(&p->mu);
  n = p->busy;
  pthread_mutex_unlock(&p->mu);
  return n;
}

static void on_closed(uv_handle_t *h) {
  pm_pool_t *p = h->data;
  if (p->shutdown_cb)
    p->shutdown_cb(p->shutdown_arg);
}

void pm_pool_shutdown(pm_pool_t *p, void (*cb)(void *arg), void *arg) {
  job_t *todo, *done;

  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  todo = p->todo_head;
  p->todo_head = p->todo_tail = NULL;
  done = p->done;
  p->done = NULL;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);

  run_afters(done);
  for (job_t *j = todo; j; j = j->next)
    j->status = PM_ESTOPPED;
  /* todo is in submission order; run_afters reverses, so reverse first. */
  job_t *rev = NULL, *next;
  for (; todo; todo = next) {
    next = todo->next;
    todo->next = rev;
    rev = todo;
  }
  run_afters(rev);

  p->shutdown_cb = cb;
  p->shutdown_arg = arg;
  uv_close((uv_handle_t *)&p->async, on_closed);
}

int pm_pool_free(pm_pool_t *p) {
  struct timespec until;

  if (!p)
    return 0;
  pthread_mutex_lock(&p->mu);
  /* Idle threads leave promptly after the broadcast; give them a moment. */
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 1;
  while (p->nthreads > p->busy)
    if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
      break;
  if (p->nthreads > 0) {
    pthread_mutex_unlock(&p->mu);
    return PM_EBUSY; /* a hung job still runs on it: leak on purpose */
  }
  pthread_mutex_unlock(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
  return 0;
}

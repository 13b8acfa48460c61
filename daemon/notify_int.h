/*
 * Notifiers' private parts, shared by notifier.c (the dispatch, the
 * deferred callbacks, the log notifier) and the webhook and exec kinds
 * (notify_webhook.c, notify_exec.c). Does not include notifier.h (that
 * would make the modules notify and notifier include each other): the
 * types it needs are spelled out here. Layer: writer and spool.
 *
 * A send is an nf_req: started by the kind's start(), it stays on
 * n->active until the kind calls pm_notify_finish(), which moves it to
 * the done queue; the queue is drained by a 0 ms timer on the loop, which
 * runs the caller's callback and frees the request. So every callback
 * runs on a loop turn of its own, never inside pm_notifier_send or a
 * kind's handler, and a request needs no memory to finish.
 */
#ifndef PM_NOTIFY_INT_H
#define PM_NOTIFY_INT_H

#include <stddef.h>
#include <uv.h>
#include <portalmetrics/plugin.h> /* PM_PRINTF */
#include "alert_event.h"
#include "config.h"

typedef struct pm_notifier pm_notifier_t; /* as in notifier.h */

#define PM_NOTIFY_ERR_MAX 256

typedef struct nf_req {
  pm_notifier_t *n;
  struct nf_req *prev, *next; /* n->active, or n->done_* */
  void (*cb)(void *arg, int status, const char *error); /* pm_notify_cb */
  void *arg;
  int finished; /* on the done queue */
  int status;
  char error[PM_NOTIFY_ERR_MAX];
  /* log notifier: the line written when the request is delivered */
  int log_level;
  char *log_line;
  void *impl; /* the kind's state of this send */
} nf_req_t;

typedef struct nf_ops {
  const char *kind;
  /* Set up n->impl; 0 or PM_ENOMEM. Opens no uv handle that cannot be
   * closed by close() below. */
  int (*init)(pm_notifier_t *n);
  /* Start r (r->n set, on n->active): 0 and, later, exactly one
   * pm_notify_finish(r); or an error (PM_ENOMEM) having finished nothing
   * and kept nothing. e and json are the caller's: copy what outlives
   * the call. */
  int (*start)(nf_req_t *r, const pm_alert_event_t *e, const char *json);
  /* Abort r (still on n->active): it finishes soon with PM_ESTOPPED (may
   * be right away). */
  void (*cancel)(nf_req_t *r);
  /* Every request is finished: release the kind's handles, then call
   * done(n) (later). NULL: the kind has no handle of its own. */
  void (*close)(pm_notifier_t *n, void (*done)(pm_notifier_t *n));
  /* Free n->impl (after close's done, or when init failed); may be
   * NULL. */
  void (*free)(pm_notifier_t *n);
} nf_ops_t;

struct pm_notifier {
  uv_loop_t *loop;
  pm_notifier_conf_t conf; /* a deep copy */
  const nf_ops_t *ops;
  void *impl;
  uv_timer_t kick;                 /* drains the done queue */
  nf_req_t *active;                /* started, not finished */
  nf_req_t *done_head, *done_tail; /* finished, callback not yet run */
  size_t inflight;                 /* requests whose callback has not run */
  unsigned handles;                /* kick and the kind, open or closing */
  int closing, closed_kind, closing_kind, closing_kick;
  int draining;
  void (*close_cb)(void *);
  void *close_arg;
};

/* r is done: status 0 or PM_E*, and a one-line reason (printf format;
 * NULL for none). Moves r to the done queue. Only once per request. */
void pm_notify_finish(nf_req_t *r, int status, const char *fmt, ...)
    PM_PRINTF(3, 4);

/* "1.5" for 1500000 us: seconds for messages, without trailing zeros. */
void pm_notify_seconds(char *buf, size_t len, int64_t us);

extern const nf_ops_t pm_notify_webhook_ops;
extern const nf_ops_t pm_notify_exec_ops;

#endif

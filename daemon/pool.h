/*
 * The daemon's own worker pool for blocking collect calls. Not libuv's
 * threadpool: DNS and file operations use that one, and work running
 * there cannot be abandoned, so a few hung collectors would stall the
 * daemon. A job that hangs holds one thread; the pool starts another, up
 * to max_threads. Layer: scheduler.
 */
#ifndef PM_POOL_H
#define PM_POOL_H

#include <uv.h>

typedef struct pm_pool pm_pool_t;

/* work runs on a worker thread; after runs on the loop thread once work
 * has returned (status 0), or if the job was dropped at shutdown before
 * it started (status PM_ESTOPPED). */
typedef void (*pm_work_fn)(void *arg);
typedef void (*pm_after_fn)(void *arg, int status);

pm_pool_t *pm_pool_new(uv_loop_t *loop, unsigned max_threads);

/* Returns 0, PM_ENOMEM, or PM_ESTOPPED after shutdown began. after is
 * never called when submit fails. */
int pm_pool_submit(pm_pool_t *p, pm_work_fn work, pm_after_fn after, void *arg);

/* Threads busy with a job right now. */
unsigned pm_pool_busy(pm_pool_t *p);

/* Loop thread. Stop taking jobs; queued jobs that did not start are
 * dropped with their `after` called with PM_ESTOPPED, before this
 * returns. Running jobs are no longer reported. Then cb once the async
 * handle is closed. Jobs still running when the process exits are
 * abandoned. */
void pm_pool_shutdown(pm_pool_t *p, void (*cb)(void *arg), void *arg);
/* Free if no job runs any more; else leak on purpose (a hung thread may
 * still touch it) and return PM_EBUSY. */
int pm_pool_free(pm_pool_t *p);

#endif

/*
 * The scheduler: runs each poll collector on the worker pool every
 * interval (first run jittered, a deadline, no overlapping runs, failures
 * backed off with jitter up to a small multiple of the interval), starts
 * and stops listeners on the loop, applies reloads, and reports every
 * collector's health as portalmetricsd.* samples through the same
 * pipeline. Loop thread only. Layer: scheduler and loader.
 */
#ifndef PM_SCHEDULER_H
#define PM_SCHEDULER_H

#include <uv.h>
#include "host.h"
#include "plan.h"
#include "pool.h"
#include "source.h"

typedef struct pm_scheduler pm_scheduler_t;

/* queue (may be NULL) is asked whether it is full before each poll run. */
pm_scheduler_t *pm_scheduler_new(uv_loop_t *loop, pm_host_ctx_t *ctx,
                                 pm_loader_t *loader, pm_pool_t *pool,
                                 const pm_source_t *src);

/*
 * Make the running collectors those of plan, which the scheduler takes
 * (and frees with the next apply or with the scheduler): new collectors
 * start, removed ones stop, changed ones restart, unchanged ones keep
 * running untouched. A collector whose create or start fails is logged
 * and left out; the others run. Returns how many failed to start (0 is
 * all well).
 */
int pm_scheduler_apply(pm_scheduler_t *s, pm_plan_t *plan);

/* Stop every collector; cb once they are all stopped, or after grace_us
 * with some still hung (those are abandoned, never destroyed). */
void pm_scheduler_stop(pm_scheduler_t *s, int64_t grace_us,
                       void (*cb)(void *arg), void *arg);

/* After stop's cb. */
void pm_scheduler_free(pm_scheduler_t *s);

/* For tests and logs: collectors running now. */
size_t pm_scheduler_count(const pm_scheduler_t *s);

#endif

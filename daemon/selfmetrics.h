/*
 * The daemon's own health, beside each collector's: what waits to be
 * shipped and for how long, what was shipped, retried, refused,
 * dead-lettered, quarantined, and the alerter's figures, every 10 s as
 * portalmetricsd.* series with the label collector="portalmetricsd"
 * (a name the config reserves), through the same pipeline. Layer: main.
 */
#ifndef PM_SELFMETRICS_H
#define PM_SELFMETRICS_H

#include <uv.h>
#include "alerter.h"
#include "host.h"
#include "source.h"
#include "spool.h"
#include "writer.h"

typedef struct pm_selfmetrics pm_selfmetrics_t;

/* Reads from the writer, the spool (may be NULL) and the source; emits
 * through ctx. */
pm_selfmetrics_t *pm_selfmetrics_new(uv_loop_t *loop, pm_host_ctx_t *ctx,
                                     pm_writer_t *writer, pm_spool_t *spool,
                                     const pm_source_t *src);
/* Report the alerter's figures too (alert_leader, targets_refused,
 * alert_events, alert_deliveries, alert_delivery_errors,
 * alert_deliveries_abandoned). */
void pm_selfmetrics_set_alerter(pm_selfmetrics_t *m, pm_alerter_t *a);
/* Report once more, stop the timer; cb (may be NULL) once it is closed. */
void pm_selfmetrics_stop(pm_selfmetrics_t *m, void (*cb)(void *), void *arg);
/* After stop's cb. */
void pm_selfmetrics_free(pm_selfmetrics_t *m);

#endif

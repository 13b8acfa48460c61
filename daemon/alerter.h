/*
 * Targets and alerts (DESIGN.md "Targets and alerts"), on the loop thread,
 * over one libpq connection of its own.
 *
 * Every daemon declares its collectors and targets on that connection
 * (portalmetrics.declare(), at connect and after each reload): the
 * database keeps one namespace of target names, refuses a definition that
 * differs from another daemon's, and retires targets nobody declares.
 *
 * A daemon with targets or notifiers of its own also competes for the
 * session advisory lock 'pmalerts'; its holder, the leader, evaluates
 * portalmetrics.target_status every alerts.interval, runs each target's
 * state machine (alert_fsm.h) and writes the new state, its events, their
 * deliveries and the NOTIFY in one statement, fenced on the state's
 * version. Then it delivers the outbox (alert_deliveries not yet
 * delivered) through its own notifiers, one event at a time per notifier
 * in event order, with capped backoff on failure. When the connection
 * goes, the lock goes with it (the session sets TCP keepalives and
 * tcp_user_timeout so the server notices a dead peer within about a
 * minute), sends in flight are cancelled, and another daemon takes over
 * at its next tick. Layer: writer and spool.
 */
#ifndef PM_ALERTER_H
#define PM_ALERTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "config.h"

typedef struct pm_alerter pm_alerter_t;

typedef struct pm_alerter_opts {
  const char *conninfo;
  const char *password_file; /* NULL: none */
  const char *daemon_id;
  int64_t connect_timeout_us;
  int64_t statement_timeout_us;
} pm_alerter_opts_t;

/* A collector as declared in portalmetrics.collectors. */
typedef struct pm_alerter_collector {
  const char *name, *plugin;
  int64_t interval_us; /* 0: a listener (no interval) */
} pm_alerter_collector_t;

typedef struct pm_alerter_stats {
  int connected, leader;
  uint64_t evaluations;     /* target_status read and judged */
  uint64_t events;          /* alert events recorded */
  uint64_t delivered;       /* notifier deliveries done */
  uint64_t delivery_errors; /* failed attempts (retried) */
  uint64_t abandoned;       /* deliveries given up */
  uint64_t errors;          /* database errors of the alerter */
  size_t refused_targets;   /* this daemon's targets refused (conflict) */
} pm_alerter_stats_t;

/* Copies opts. NULL when out of memory. */
pm_alerter_t *pm_alerter_new(uv_loop_t *loop, const pm_alerter_opts_t *opts);

/*
 * What this daemon declares and how it notifies: cfg's targets, notifiers
 * and alerts.interval, and its collectors. Called before start and after
 * each reload. Everything is copied. Notifiers are rebuilt: sends in
 * flight are cancelled and retried by the outbox. Returns 0 or PM_ENOMEM
 * (the previous configuration stays).
 */
int pm_alerter_configure(pm_alerter_t *a, const pm_config_t *cfg,
                         const pm_alerter_collector_t *cols, size_t ncols);

/* Connect and start ticking. Returns 0 or PM_EINVAL (already started). */
int pm_alerter_start(pm_alerter_t *a);

void pm_alerter_get_stats(const pm_alerter_t *a, pm_alerter_stats_t *out);

/* Stop: cancel sends (the outbox keeps them for the next leader), drop
 * the connection (and the lock), close every handle; done (may be NULL)
 * runs once all is closed. Then pm_alerter_free. */
void pm_alerter_close(pm_alerter_t *a, void (*done)(void *arg), void *arg);
void pm_alerter_free(pm_alerter_t *a);

#endif

/*
 * The alert state machine of one target: pure, no I/O, no clock (DESIGN.md
 * "Targets and alerts"). The leader feeds it each evaluation's status from
 * portalmetrics.target_status together with what portalmetrics.alert_state
 * remembers, and writes back what it returns, with its events, in one
 * transaction.
 *
 *   ok/resolved --behind--> pending --behind for `for`--> firing
 *   pending --on track--> ok
 *   firing --on track for `clear_for`--> resolved
 *   any --nodata--> nodata --data again--> ok (on track) or pending (behind)
 *
 * With for = 0 a target that falls behind goes straight to firing (one
 * event); with clear_for = 0 one on-track evaluation resolves it. A
 * firing target is re-notified every `repeat` (0: never). `late` is a flag
 * beside the state with the same hysteresis: the trend must say late for
 * `for` before the flag turns on (a notified LATE event) and say not late
 * for `clear_for` before it turns off (a LATE_CLEARED event, not
 * notified); it is not judged while the status is nodata.
 *
 * Notified events: every transition into firing, resolved or nodata,
 * nodata -> ok, repeats and late. The others (into pending, pending -> ok,
 * nodata -> pending) are recorded but not sent to notifiers, so a value
 * hovering at the line makes rows, never messages. Bottom layer.
 */
#ifndef PM_ALERT_FSM_H
#define PM_ALERT_FSM_H

#include <stdint.h>

typedef enum {
  PM_ALERT_OK = 0,
  PM_ALERT_PENDING,
  PM_ALERT_FIRING,
  PM_ALERT_RESOLVED,
  PM_ALERT_NODATA
} pm_alert_state_t;

/* target_status.status */
typedef enum {
  PM_STATUS_ON_TRACK = 0,
  PM_STATUS_BEHIND,
  PM_STATUS_NODATA
} pm_target_status_t;

typedef enum {
  PM_EV_STATE = 0,    /* a state transition */
  PM_EV_LATE,         /* the late flag turned on */
  PM_EV_LATE_CLEARED, /* the late flag turned off */
  PM_EV_REPEAT        /* still firing, `repeat` after the last notice */
} pm_alert_ev_kind_t;

/* What portalmetrics.alert_state keeps per target. Times in microseconds
 * since the epoch; 0 means none. */
typedef struct pm_alert_mem {
  pm_alert_state_t state;
  int64_t since_us;     /* when the state was entered */
  int64_t cond_us;      /* pending: when behind began; firing: when on
                           track began (0 while still behind) */
  int late;             /* the late flag */
  int64_t late_cond_us; /* when the trend began to disagree with the
                           flag (0: it agrees) */
  int64_t notified_us;  /* firing: last notice (for repeat) */
} pm_alert_mem_t;

typedef struct pm_alert_rules {
  int64_t for_us, clear_for_us, repeat_us;
} pm_alert_rules_t;

typedef struct pm_alert_obs {
  pm_target_status_t status;
  int late; /* target_status.late (ignored when status is nodata) */
  int64_t now_us;
} pm_alert_obs_t;

typedef struct pm_alert_ev {
  pm_alert_ev_kind_t kind;
  pm_alert_state_t from, to; /* late/repeat events: from = to = state */
  int notify;                /* 1: notifiers send it */
} pm_alert_ev_t;

#define PM_ALERT_EV_MAX 3

/* A new target's memory: ok since now. */
void pm_alert_mem_init(pm_alert_mem_t *m, int64_t now_us);

/*
 * One evaluation. Updates *m, writes 0..PM_ALERT_EV_MAX events into ev
 * (state transitions first, then late, then repeat) and returns how many;
 * *changed is set to 1 when *m differs from before (so the caller writes
 * it back), else 0.
 */
int pm_alert_step(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                  const pm_alert_obs_t *o, pm_alert_ev_t ev[PM_ALERT_EV_MAX],
                  int *changed);

/* "ok", "pending", "firing", "resolved", "nodata"; parse returns -1 for an
 * unknown name. */
const char *pm_alert_state_name(pm_alert_state_t s);
int pm_alert_state_parse(const char *name);
/* target_status.status: "on_track", "behind", "nodata"; parse returns -1
 * for an unknown name. */
const char *pm_target_status_name(pm_target_status_t s);
int pm_target_status_parse(const char *name);
/* "state", "late", "late_cleared", "repeat" */
const char *pm_alert_ev_kind_name(pm_alert_ev_kind_t k);

#endif

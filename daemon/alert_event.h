/*
 * One alert event as notifiers see it: a row of portalmetrics.alert_events
 * with the target's definition beside it, and the JSON body every notifier
 * sends (webhook body, exec stdin). Bottom layer.
 *
 * JSON body (version 1), keys always present, null when unknown:
 *   {"version":1, "event_id":"123", "target":"enrollment",
 *    "title":"Portal enrollment at North Clinic", "kind":"state",
 *    "from":"pending", "to":"firing", "severity":"warning",
 *    "at":"2026-11-25T17:00:00.000000Z", "status":"behind",
 *    "actual":0.31, "expected":0.372, "gap":-0.062, "format":"percent",
 *    "direction":"at_least", "plan_date":"2026-11-25",
 *    "goal_value":0.6, "due":"2027-06-30",
 *    "projected_date":"2027-09-14", "late":true, "days_late":76,
 *    "message":"...", "daemon":"north-clinic-1"}
 * event_id is a string (a bigint does not fit a JSON double); receivers
 * drop a repeat by it.
 */
#ifndef PM_ALERT_EVENT_H
#define PM_ALERT_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "alert_fsm.h"

typedef struct pm_alert_event {
  int64_t event_id;
  const char *target; /* the target's name */
  const char *title;  /* its title (name if none) */
  pm_alert_ev_kind_t kind;
  pm_alert_state_t from, to;
  const char *severity; /* "info", "warning", "critical" */
  int64_t at_us;        /* when the event was recorded */
  pm_target_status_t status;
  int has_actual, has_expected, has_goal;
  double actual, expected, goal_value; /* gap = actual - expected */
  int percent;                         /* format: 1 percent, 0 number */
  int at_most;                         /* direction */
  int32_t plan_day;      /* the local date the plan was read for (days
                            since 1970-01-01); PM_ALERT_NO_DAY: none */
  int32_t due_day;       /* the goal's last date; PM_ALERT_NO_DAY: fixed */
  int32_t projected_day; /* PM_ALERT_NO_DAY: no projection */
  int late;
  int32_t days_late;   /* projected - due when both known and late */
  const char *message; /* pm_alert_message's text */
  const char *daemon;  /* daemon.id of the sender */
} pm_alert_event_t;

#define PM_ALERT_NO_DAY INT32_MIN

/* The JSON body above, compact, malloc'd (caller frees); NULL when out of
 * memory. */
char *pm_alert_event_json(const pm_alert_event_t *e);
/* The same as a jansson object (one reference, the caller's), for a
 * caller that embeds it in a larger document; NULL when out of memory. */
json_t *pm_alert_event_object(const pm_alert_event_t *e);

/* "YYYY-MM-DD" of a day number; buf at least 11 bytes. */
void pm_alert_day_str(int32_t day, char *buf, size_t len);

#endif

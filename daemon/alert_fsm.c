/* The alert state machine of one target (see alert_fsm.h). Pure: the
 * caller brings the clock, so a test can step through hours of
 * evaluations in microseconds and hit every boundary exactly. Times of 0
 * mean "none", so the clock must never read 0 (it never does: it is the
 * wall clock). */
#include "alert_fsm.h"

#include <string.h>

static const char *const state_names[] = {"ok", "pending", "firing", "resolved",
                                          "nodata"};
#define N_STATES (sizeof(state_names) / sizeof(state_names[0]))

static const char *const kind_names[] = {"state", "late", "late_cleared",
                                         "repeat"};
#define N_KINDS (sizeof(kind_names) / sizeof(kind_names[0]))

/* The events of one step, bounded by the array the caller gave. */
typedef struct evs {
  pm_alert_ev_t *ev;
  int n;
} evs_t;

static void push(evs_t *out, pm_alert_ev_kind_t kind, pm_alert_state_t from,
                 pm_alert_state_t to, int notify) {
  if (out->n >= PM_ALERT_EV_MAX)
    return; /* cannot happen: one of each phase at most */
  out->ev[out->n].kind = kind;
  out->ev[out->n].from = from;
  out->ev[out->n].to = to;
  out->ev[out->n].notify = notify;
  out->n++;
}

/* Into pending and out of it are recorded, not sent: only a condition
 * that lasted `for` is worth a message. */
static int notifies(pm_alert_state_t from, pm_alert_state_t to) {
  if (to == PM_ALERT_FIRING || to == PM_ALERT_RESOLVED || to == PM_ALERT_NODATA)
    return 1;
  return from == PM_ALERT_NODATA && to == PM_ALERT_OK;
}

static void go(pm_alert_mem_t *m, pm_alert_state_t to, int64_t now,
               evs_t *out) {
  pm_alert_state_t from = m->state;
  int notify = notifies(from, to);

  m->state = to;
  m->since_us = now;
  if (to == PM_ALERT_FIRING)
    m->notified_us = now; /* the repeat interval counts from here */
  push(out, PM_EV_STATE, from, to, notify);
}

/* Falling behind from a calm state (ok, resolved, nodata): `for` must
 * pass first, unless it is 0. */
static void fall_behind(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                        int64_t now, evs_t *out) {
  if (r->for_us <= 0) {
    m->cond_us = 0;
    go(m, PM_ALERT_FIRING, now, out);
  } else {
    m->cond_us = now;
    go(m, PM_ALERT_PENDING, now, out);
  }
}

static void step_pending(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                         int64_t now, int behind, evs_t *out) {
  if (!behind) {
    m->cond_us = 0;
    go(m, PM_ALERT_OK, now, out);
  } else if (now - m->cond_us >= r->for_us) {
    m->cond_us = 0;
    go(m, PM_ALERT_FIRING, now, out);
  }
}

/* While firing, cond_us is when the target came back on track; any
 * behind evaluation starts that count again, so flapping never
 * resolves. */
static void step_firing(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                        int64_t now, int behind, evs_t *out) {
  if (behind) {
    m->cond_us = 0;
    return;
  }
  if (m->cond_us == 0)
    m->cond_us = now;
  if (now - m->cond_us >= r->clear_for_us) {
    m->cond_us = 0;
    m->notified_us = 0;
    go(m, PM_ALERT_RESOLVED, now, out);
  }
}

static void step_state(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                       const pm_alert_obs_t *o, evs_t *out) {
  int behind = o->status == PM_STATUS_BEHIND;

  if (o->status == PM_STATUS_NODATA) {
    if (m->state != PM_ALERT_NODATA) {
      m->cond_us = 0;
      m->late_cond_us = 0; /* late is not judged without data */
      go(m, PM_ALERT_NODATA, o->now_us, out);
    }
    return;
  }
  switch (m->state) {
  case PM_ALERT_OK:
  case PM_ALERT_RESOLVED:
    if (behind)
      fall_behind(m, r, o->now_us, out);
    break;
  case PM_ALERT_NODATA:
    if (behind) {
      fall_behind(m, r, o->now_us, out);
    } else {
      m->cond_us = 0;
      go(m, PM_ALERT_OK, o->now_us, out);
    }
    break;
  case PM_ALERT_PENDING:
    step_pending(m, r, o->now_us, behind, out);
    break;
  case PM_ALERT_FIRING:
    step_firing(m, r, o->now_us, behind, out);
    break;
  }
}

/* The late flag follows the trend with the same hysteresis as the state:
 * `for` to turn on, `clear_for` to turn off; a trend that agrees with the
 * flag again forgets the count. */
static void step_late(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                      const pm_alert_obs_t *o, evs_t *out) {
  int want = o->late != 0;
  int64_t wait = want ? r->for_us : r->clear_for_us;

  if (want == (m->late != 0)) {
    m->late_cond_us = 0;
    return;
  }
  if (m->late_cond_us == 0)
    m->late_cond_us = o->now_us;
  if (o->now_us - m->late_cond_us < wait)
    return;
  m->late = want;
  m->late_cond_us = 0;
  push(out, want ? PM_EV_LATE : PM_EV_LATE_CLEARED, m->state, m->state, want);
}

/* Only a target still firing and behind repeats. The step that enters
 * firing set notified_us to now, so it cannot repeat at once. */
static void step_repeat(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                        const pm_alert_obs_t *o, evs_t *out) {
  if (m->state != PM_ALERT_FIRING || o->status != PM_STATUS_BEHIND ||
      r->repeat_us <= 0)
    return;
  if (o->now_us - m->notified_us < r->repeat_us)
    return;
  m->notified_us = o->now_us;
  push(out, PM_EV_REPEAT, m->state, m->state, 1);
}

/* Field by field: the struct may have padding, so no memcmp. */
static int mem_equal(const pm_alert_mem_t *a, const pm_alert_mem_t *b) {
  return a->state == b->state && a->since_us == b->since_us &&
         a->cond_us == b->cond_us && a->late == b->late &&
         a->late_cond_us == b->late_cond_us && a->notified_us == b->notified_us;
}

void pm_alert_mem_init(pm_alert_mem_t *m, int64_t now_us) {
  memset(m, 0, sizeof(*m));
  m->state = PM_ALERT_OK;
  m->since_us = now_us;
}

int pm_alert_step(pm_alert_mem_t *m, const pm_alert_rules_t *r,
                  const pm_alert_obs_t *o, pm_alert_ev_t ev[PM_ALERT_EV_MAX],
                  int *changed) {
  pm_alert_mem_t before = *m;
  evs_t out = {ev, 0};

  step_state(m, r, o, &out);
  if (o->status != PM_STATUS_NODATA)
    step_late(m, r, o, &out);
  step_repeat(m, r, o, &out);
  *changed = !mem_equal(&before, m);
  return out.n;
}

const char *pm_alert_state_name(pm_alert_state_t s) {
  if ((unsigned)s >= N_STATES)
    return "unknown";
  return state_names[s];
}

int pm_alert_state_parse(const char *name) {
  if (!name)
    return -1;
  for (size_t i = 0; i < N_STATES; i++) {
    if (strcmp(name, state_names[i]) == 0)
      return (int)i;
  }
  return -1;
}

const char *pm_target_status_name(pm_target_status_t s) {
  switch (s) {
  case PM_STATUS_ON_TRACK:
    return "on_track";
  case PM_STATUS_BEHIND:
    return "behind";
  case PM_STATUS_NODATA:
    return "nodata";
  }
  return "unknown";
}

int pm_target_status_parse(const char *name) {
  for (int s = PM_STATUS_ON_TRACK; s <= PM_STATUS_NODATA; s++)
    if (name && strcmp(name, pm_target_status_name(s)) == 0)
      return s;
  return -1;
}

const char *pm_alert_ev_kind_name(pm_alert_ev_kind_t k) {
  if ((unsigned)k >= N_KINDS)
    return "unknown";
  return kind_names[k];
}

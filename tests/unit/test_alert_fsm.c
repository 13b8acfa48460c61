/* The alert state machine (daemon/alert_fsm.h): every transition, the
 * hysteresis at its exact boundaries, flapping, repeats, nodata, the late
 * flag, and the changed flag the caller relies on to write nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alert_fsm.h"

#define US INT64_C(1)
#define SEC (INT64_C(1000000) * US)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
/* 2026-11-25T17:00:00Z: a real clock never reads 0, which means "none". */
#define T0 (INT64_C(1795626000) * SEC)

#define ON PM_STATUS_ON_TRACK
#define BEHIND PM_STATUS_BEHIND
#define NODATA PM_STATUS_NODATA

typedef struct fsm {
  pm_alert_mem_t m;
  pm_alert_rules_t r;
  pm_alert_ev_t ev[PM_ALERT_EV_MAX];
  int n, changed;
} fsm_t;

static void fsm_init(fsm_t *f, int64_t for_us, int64_t clear_for_us,
                     int64_t repeat_us) {
  memset(f, 0, sizeof(*f));
  pm_alert_mem_init(&f->m, T0 - HOUR);
  f->r.for_us = for_us;
  f->r.clear_for_us = clear_for_us;
  f->r.repeat_us = repeat_us;
}

/* One evaluation; poisons ev first so a stale event cannot pass. */
static int step_late(fsm_t *f, pm_target_status_t st, int late, int64_t now) {
  pm_alert_obs_t o = {st, late, now};

  memset(f->ev, 0x5a, sizeof(f->ev));
  f->changed = -1;
  f->n = pm_alert_step(&f->m, &f->r, &o, f->ev, &f->changed);
  assert_in_range(f->n, 0, PM_ALERT_EV_MAX);
  assert_true(f->changed == 0 || f->changed == 1);
  return f->n;
}

static int step(fsm_t *f, pm_target_status_t st, int64_t now) {
  return step_late(f, st, 0, now);
}

static void ev_is(const pm_alert_ev_t *e, pm_alert_ev_kind_t kind,
                  pm_alert_state_t from, pm_alert_state_t to, int notify) {
  if (e->kind != kind || e->from != from || e->to != to || e->notify != notify)
    fail_msg("event %s %s -> %s notify %d, want %s %s -> %s notify %d",
             pm_alert_ev_kind_name(e->kind), pm_alert_state_name(e->from),
             pm_alert_state_name(e->to), e->notify, pm_alert_ev_kind_name(kind),
             pm_alert_state_name(from), pm_alert_state_name(to), notify);
}

/* Exactly one state event, from -> to. */
static void one_transition(fsm_t *f, pm_alert_state_t from, pm_alert_state_t to,
                           int notify) {
  assert_int_equal(f->n, 1);
  assert_int_equal(f->changed, 1);
  ev_is(&f->ev[0], PM_EV_STATE, from, to, notify);
  assert_int_equal(f->m.state, to);
}

/* Nothing happened and nothing is to be written. */
static void quiet(const fsm_t *f) {
  assert_int_equal(f->n, 0);
  assert_int_equal(f->changed, 0);
}

/* A memory in a given state, as alert_state would hold it. */
static void put_in(fsm_t *f, pm_alert_state_t s, int64_t now) {
  f->m.state = s;
  f->m.since_us = now - HOUR;
  f->m.cond_us = s == PM_ALERT_PENDING ? now - MIN : 0;
  f->m.notified_us = s == PM_ALERT_FIRING ? now - HOUR : 0;
}

static void test_mem_init(void **state) {
  pm_alert_mem_t m;
  (void)state;

  memset(&m, 0x5a, sizeof(m));
  pm_alert_mem_init(&m, T0);
  assert_int_equal(m.state, PM_ALERT_OK);
  assert_int_equal(m.since_us, T0);
  assert_int_equal(m.cond_us, 0);
  assert_int_equal(m.late, 0);
  assert_int_equal(m.late_cond_us, 0);
  assert_int_equal(m.notified_us, 0);
}

static void test_full_cycle_at_boundaries(void **state) {
  fsm_t f;
  int64_t t1 = T0 + 10 * MIN, t2 = t1 + 3 * MIN;
  (void)state;

  fsm_init(&f, 10 * MIN, 5 * MIN, 0);
  step(&f, ON, T0 - MIN);
  quiet(&f);

  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_PENDING, 0);
  assert_int_equal(f.m.cond_us, T0);
  assert_int_equal(f.m.since_us, T0);
  assert_int_equal(f.m.notified_us, 0);

  step(&f, BEHIND, t1 - US); /* one microsecond short of `for` */
  quiet(&f);
  assert_int_equal(f.m.state, PM_ALERT_PENDING);

  step(&f, BEHIND, t1);
  one_transition(&f, PM_ALERT_PENDING, PM_ALERT_FIRING, 1);
  assert_int_equal(f.m.since_us, t1);
  assert_int_equal(f.m.cond_us, 0);
  assert_int_equal(f.m.notified_us, t1);

  step(&f, BEHIND, t1 + MIN);
  quiet(&f);

  /* Back on track: the clearing count starts, which is a change. */
  step(&f, ON, t2);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.changed, 1);
  assert_int_equal(f.m.state, PM_ALERT_FIRING);
  assert_int_equal(f.m.cond_us, t2);
  assert_int_equal(f.m.since_us, t1);

  step(&f, ON, t2 + 5 * MIN - US);
  quiet(&f);
  assert_int_equal(f.m.state, PM_ALERT_FIRING);

  step(&f, ON, t2 + 5 * MIN);
  one_transition(&f, PM_ALERT_FIRING, PM_ALERT_RESOLVED, 1);
  assert_int_equal(f.m.since_us, t2 + 5 * MIN);
  assert_int_equal(f.m.cond_us, 0);
  assert_int_equal(f.m.notified_us, 0);

  step(&f, ON, t2 + 6 * MIN);
  quiet(&f);
  assert_int_equal(f.m.state, PM_ALERT_RESOLVED);

  /* Resolved falls behind like ok does. */
  step(&f, BEHIND, t2 + HOUR);
  one_transition(&f, PM_ALERT_RESOLVED, PM_ALERT_PENDING, 0);
  assert_int_equal(f.m.cond_us, t2 + HOUR);
}

static void test_pending_back_to_ok(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 10 * MIN, 5 * MIN, 0);
  step(&f, BEHIND, T0);
  step(&f, ON, T0 + 9 * MIN);
  one_transition(&f, PM_ALERT_PENDING, PM_ALERT_OK, 0);
  assert_int_equal(f.m.cond_us, 0);
  assert_int_equal(f.m.since_us, T0 + 9 * MIN);

  /* A new behind spell counts from its own start, not the old one. */
  step(&f, BEHIND, T0 + 10 * MIN);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_PENDING, 0);
  step(&f, BEHIND, T0 + 20 * MIN - US);
  quiet(&f);
  step(&f, BEHIND, T0 + 20 * MIN);
  one_transition(&f, PM_ALERT_PENDING, PM_ALERT_FIRING, 1);
}

static void test_for_zero_fires_directly(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 0, 0, 0);
  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_FIRING, 1);
  assert_int_equal(f.m.since_us, T0);
  assert_int_equal(f.m.cond_us, 0);
  assert_int_equal(f.m.notified_us, T0);

  /* clear_for = 0: one on-track evaluation resolves. */
  step(&f, ON, T0 + MIN);
  one_transition(&f, PM_ALERT_FIRING, PM_ALERT_RESOLVED, 1);
  assert_int_equal(f.m.cond_us, 0);

  step(&f, BEHIND, T0 + 2 * MIN);
  one_transition(&f, PM_ALERT_RESOLVED, PM_ALERT_FIRING, 1);
  assert_int_equal(f.m.notified_us, T0 + 2 * MIN);
}

/* Counts the notified events of a run of evaluations. */
typedef struct tally {
  int events, notified, late, late_cleared, repeats;
} tally_t;

static void count(const fsm_t *f, tally_t *t) {
  for (int i = 0; i < f->n; i++) {
    t->events++;
    t->notified += f->ev[i].notify;
    t->late += f->ev[i].kind == PM_EV_LATE;
    t->late_cleared += f->ev[i].kind == PM_EV_LATE_CLEARED;
    t->repeats += f->ev[i].kind == PM_EV_REPEAT;
  }
}

static void test_flapping_never_notifies(void **state) {
  fsm_t f;
  tally_t t = {0};
  (void)state;

  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  for (int i = 0; i < 100; i++) {
    step(&f, i % 2 == 0 ? BEHIND : ON, T0 + i * MIN);
    count(&f, &t);
    assert_int_not_equal(f.m.state, PM_ALERT_FIRING);
  }
  assert_int_equal(t.notified, 0);
  assert_int_equal(t.events, 100); /* recorded: ok <-> pending each time */

  /* Nine minutes behind, one on track, over and over: never `for`. */
  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  memset(&t, 0, sizeof(t));
  for (int i = 0; i < 100; i++) {
    step(&f, i % 10 == 9 ? ON : BEHIND, T0 + i * MIN);
    count(&f, &t);
  }
  assert_int_equal(t.notified, 0);
  assert_int_not_equal(f.m.state, PM_ALERT_FIRING);
}

static void test_flapping_while_firing(void **state) {
  fsm_t f;
  tally_t t = {0};
  (void)state;

  fsm_init(&f, 0, 10 * MIN, 0);
  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_FIRING, 1);
  for (int i = 1; i <= 100; i++) {
    step(&f, i % 2 == 1 ? ON : BEHIND, T0 + i * MIN);
    count(&f, &t);
    assert_int_equal(f.m.state, PM_ALERT_FIRING);
    assert_int_equal(f.m.since_us, T0);
    /* The clearing count restarts at every on-track evaluation. */
    assert_int_equal(f.m.cond_us, i % 2 == 1 ? T0 + i * MIN : 0);
  }
  assert_int_equal(t.events, 0);
}

static void test_repeat_at_exact_interval(void **state) {
  fsm_t f;
  tally_t t = {0};
  int64_t fired = T0 + 10 * MIN;
  (void)state;

  fsm_init(&f, 10 * MIN, 0, HOUR);
  step(&f, BEHIND, T0);
  step(&f, BEHIND, fired);
  one_transition(&f, PM_ALERT_PENDING, PM_ALERT_FIRING, 1);

  step(&f, BEHIND, fired + HOUR - US);
  quiet(&f);
  step(&f, BEHIND, fired + HOUR);
  assert_int_equal(f.n, 1);
  assert_int_equal(f.changed, 1);
  ev_is(&f.ev[0], PM_EV_REPEAT, PM_ALERT_FIRING, PM_ALERT_FIRING, 1);
  assert_int_equal(f.m.notified_us, fired + HOUR);
  assert_int_equal(f.m.since_us, fired);

  /* The next one counts from the repeat, not from the firing. */
  step(&f, BEHIND, fired + 2 * HOUR - US);
  quiet(&f);
  step(&f, BEHIND, fired + 2 * HOUR);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_REPEAT, PM_ALERT_FIRING, PM_ALERT_FIRING, 1);

  /* Every minute for ten hours: one repeat an hour. */
  for (int i = 1; i <= 600; i++) {
    step(&f, BEHIND, fired + 2 * HOUR + i * MIN);
    count(&f, &t);
  }
  assert_int_equal(t.repeats, 10);
  assert_int_equal(t.events, 10);
}

static void test_repeat_only_while_behind(void **state) {
  fsm_t f;
  tally_t t = {0};
  (void)state;

  /* Clearing (on track, clear_for not yet over): no repeat. */
  fsm_init(&f, 0, 10 * HOUR, HOUR);
  step(&f, BEHIND, T0);
  step(&f, ON, T0 + 30 * MIN);
  step(&f, ON, T0 + 2 * HOUR);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.m.state, PM_ALERT_FIRING);

  /* repeat = 0: never. */
  fsm_init(&f, 0, 0, 0);
  step(&f, BEHIND, T0);
  for (int i = 1; i <= 1000; i++) {
    step(&f, BEHIND, T0 + i * HOUR);
    count(&f, &t);
  }
  assert_int_equal(t.events, 0);

  /* The step that enters firing has notified already: no repeat in it,
   * however short the interval. */
  fsm_init(&f, 0, 0, US);
  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_FIRING, 1);
  step(&f, BEHIND, T0 + US);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_REPEAT, PM_ALERT_FIRING, PM_ALERT_FIRING, 1);
}

static void test_nodata_from_every_state(void **state) {
  static const pm_alert_state_t from[] = {PM_ALERT_OK, PM_ALERT_PENDING,
                                          PM_ALERT_FIRING, PM_ALERT_RESOLVED};
  fsm_t f;
  (void)state;

  for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
    fsm_init(&f, 10 * MIN, 10 * MIN, HOUR);
    put_in(&f, from[i], T0);
    f.m.late = 1;
    f.m.late_cond_us = T0 - MIN;
    f.m.cond_us = T0 - MIN; /* firing: clearing had begun */
    step(&f, NODATA, T0);
    one_transition(&f, from[i], PM_ALERT_NODATA, 1);
    assert_int_equal(f.m.since_us, T0);
    assert_int_equal(f.m.cond_us, 0);
    assert_int_equal(f.m.late_cond_us, 0);
    assert_int_equal(f.m.late, 1); /* kept, not judged */

    /* Still no data, even for days: nothing, and no repeat. */
    step(&f, NODATA, T0 + MIN);
    quiet(&f);
    step(&f, NODATA, T0 + 48 * HOUR);
    quiet(&f);
  }
}

static void test_nodata_back(void **state) {
  fsm_t f;
  (void)state;

  /* On track again: ok, notified (the "no data" message needs its end). */
  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  put_in(&f, PM_ALERT_NODATA, T0);
  step(&f, ON, T0);
  one_transition(&f, PM_ALERT_NODATA, PM_ALERT_OK, 1);
  assert_int_equal(f.m.since_us, T0);
  assert_int_equal(f.m.cond_us, 0);

  /* Behind again: pending, counting from now, not notified. */
  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  put_in(&f, PM_ALERT_NODATA, T0);
  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_NODATA, PM_ALERT_PENDING, 0);
  assert_int_equal(f.m.cond_us, T0);
  step(&f, BEHIND, T0 + 10 * MIN - US);
  quiet(&f);
  step(&f, BEHIND, T0 + 10 * MIN);
  one_transition(&f, PM_ALERT_PENDING, PM_ALERT_FIRING, 1);

  /* Behind with for = 0: straight to firing. */
  fsm_init(&f, 0, 10 * MIN, 0);
  put_in(&f, PM_ALERT_NODATA, T0);
  step(&f, BEHIND, T0);
  one_transition(&f, PM_ALERT_NODATA, PM_ALERT_FIRING, 1);
  assert_int_equal(f.m.notified_us, T0);
  assert_int_equal(f.m.cond_us, 0);
}

static void test_late_hysteresis(void **state) {
  fsm_t f;
  tally_t t = {0};
  int64_t t1 = T0 + 100 * MIN;
  (void)state;

  fsm_init(&f, 10 * MIN, 30 * MIN, 0);
  /* A trend flapping around the due date: no LATE event. */
  for (int i = 0; i < 100; i++) {
    step_late(&f, ON, i % 2 == 0, T0 + i * MIN);
    count(&f, &t);
    assert_int_equal(f.m.late, 0);
  }
  assert_int_equal(t.events, 0);

  /* Sustained: one LATE at exactly `for`, then silence. */
  step_late(&f, ON, 1, t1);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.m.late_cond_us, t1);
  step_late(&f, ON, 1, t1 + 10 * MIN - US);
  quiet(&f);
  assert_int_equal(f.m.late, 0);
  step_late(&f, ON, 1, t1 + 10 * MIN);
  assert_int_equal(f.n, 1);
  assert_int_equal(f.changed, 1);
  ev_is(&f.ev[0], PM_EV_LATE, PM_ALERT_OK, PM_ALERT_OK, 1);
  assert_int_equal(f.m.late, 1);
  assert_int_equal(f.m.late_cond_us, 0);
  assert_int_equal(f.m.state, PM_ALERT_OK);
  memset(&t, 0, sizeof(t));
  for (int i = 1; i <= 100; i++) {
    step_late(&f, ON, 1, t1 + 10 * MIN + i * MIN);
    count(&f, &t);
  }
  assert_int_equal(t.events, 0);

  /* Clearing flaps: nothing. Then sustained for clear_for: one
   * LATE_CLEARED, not notified. */
  t1 += 200 * MIN;
  for (int i = 0; i < 100; i++) {
    step_late(&f, ON, i % 2 == 1, t1 + i * MIN);
    count(&f, &t);
    assert_int_equal(f.m.late, 1);
  }
  assert_int_equal(t.events, 0);
  t1 += 200 * MIN;
  step_late(&f, ON, 0, t1);
  step_late(&f, ON, 0, t1 + 30 * MIN - US);
  quiet(&f);
  step_late(&f, ON, 0, t1 + 30 * MIN);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_LATE_CLEARED, PM_ALERT_OK, PM_ALERT_OK, 0);
  assert_int_equal(f.m.late, 0);
  assert_int_equal(f.m.late_cond_us, 0);
}

static void test_late_agreeing_again_forgets(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  step_late(&f, ON, 1, T0);
  assert_int_equal(f.changed, 1);
  assert_int_equal(f.m.late_cond_us, T0);
  step_late(&f, ON, 0, T0 + MIN);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.changed, 1);
  assert_int_equal(f.m.late_cond_us, 0);
  /* The old start does not count: `for` from the new one. */
  step_late(&f, ON, 1, T0 + 5 * MIN);
  step_late(&f, ON, 1, T0 + 15 * MIN - US);
  quiet(&f);
  step_late(&f, ON, 1, T0 + 15 * MIN);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_LATE, PM_ALERT_OK, PM_ALERT_OK, 1);
}

static void test_late_zero_waits(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 0, 0, 0);
  step_late(&f, ON, 1, T0);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_LATE, PM_ALERT_OK, PM_ALERT_OK, 1);
  assert_int_equal(f.m.late_cond_us, 0);
  step_late(&f, ON, 0, T0 + MIN);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_LATE_CLEARED, PM_ALERT_OK, PM_ALERT_OK, 0);
}

static void test_late_not_judged_during_nodata(void **state) {
  fsm_t f;
  tally_t t = {0};
  (void)state;

  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  f.m.late = 1;
  step_late(&f, NODATA, 0, T0);
  one_transition(&f, PM_ALERT_OK, PM_ALERT_NODATA, 1);
  for (int i = 1; i <= 100; i++) {
    step_late(&f, NODATA, i % 3 == 0, T0 + i * MIN);
    count(&f, &t);
    assert_int_equal(f.m.late, 1);
    assert_int_equal(f.m.late_cond_us, 0);
  }
  assert_int_equal(t.events, 0);

  /* Data again, trend not late: the count starts only now. */
  step_late(&f, ON, 0, T0 + 200 * MIN);
  one_transition(&f, PM_ALERT_NODATA, PM_ALERT_OK, 1);
  assert_int_equal(f.m.late_cond_us, T0 + 200 * MIN);
  step_late(&f, ON, 0, T0 + 210 * MIN);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_LATE_CLEARED, PM_ALERT_OK, PM_ALERT_OK, 0);
}

/* Late and repeat events carry the state after this step's transition,
 * and come after it. */
static void test_event_order(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 10 * MIN, 10 * MIN, HOUR);
  step_late(&f, BEHIND, 1, T0);
  assert_int_equal(f.n, 1);
  ev_is(&f.ev[0], PM_EV_STATE, PM_ALERT_OK, PM_ALERT_PENDING, 0);
  step_late(&f, BEHIND, 1, T0 + 10 * MIN);
  assert_int_equal(f.n, 2);
  ev_is(&f.ev[0], PM_EV_STATE, PM_ALERT_PENDING, PM_ALERT_FIRING, 1);
  ev_is(&f.ev[1], PM_EV_LATE, PM_ALERT_FIRING, PM_ALERT_FIRING, 1);

  /* Late clearing and a repeat in one step: late first. */
  step_late(&f, BEHIND, 0, T0 + 60 * MIN);
  assert_int_equal(f.n, 0);
  step_late(&f, BEHIND, 0, T0 + 70 * MIN);
  assert_int_equal(f.n, 2);
  ev_is(&f.ev[0], PM_EV_LATE_CLEARED, PM_ALERT_FIRING, PM_ALERT_FIRING, 0);
  ev_is(&f.ev[1], PM_EV_REPEAT, PM_ALERT_FIRING, PM_ALERT_FIRING, 1);

  /* Resolving and turning late in one step. */
  fsm_init(&f, 0, 0, 0);
  step(&f, BEHIND, T0);
  step_late(&f, ON, 1, T0 + MIN);
  assert_int_equal(f.n, 2);
  ev_is(&f.ev[0], PM_EV_STATE, PM_ALERT_FIRING, PM_ALERT_RESOLVED, 1);
  ev_is(&f.ev[1], PM_EV_LATE, PM_ALERT_RESOLVED, PM_ALERT_RESOLVED, 1);
}

/* The caller writes alert_state only when changed says so: steady
 * states must say 0, every real change 1. */
static void test_changed_flag(void **state) {
  fsm_t f;
  (void)state;

  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  step(&f, ON, T0);
  quiet(&f); /* ok, on track */

  put_in(&f, PM_ALERT_PENDING, T0);
  step(&f, BEHIND, T0 + MIN);
  quiet(&f); /* pending, `for` not over */

  put_in(&f, PM_ALERT_FIRING, T0);
  step(&f, BEHIND, T0);
  quiet(&f); /* firing, still behind */
  f.m.cond_us = T0 - MIN;
  step(&f, ON, T0);
  quiet(&f); /* firing, clearing already counting */
  step(&f, BEHIND, T0 + MIN);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.changed, 1); /* the clearing count is dropped */
  assert_int_equal(f.m.cond_us, 0);

  put_in(&f, PM_ALERT_RESOLVED, T0);
  step(&f, ON, T0);
  quiet(&f);

  put_in(&f, PM_ALERT_NODATA, T0);
  step(&f, NODATA, T0);
  quiet(&f);

  /* Late: still disagreeing, count already started. */
  fsm_init(&f, 10 * MIN, 10 * MIN, 0);
  step_late(&f, ON, 1, T0);
  assert_int_equal(f.changed, 1);
  step_late(&f, ON, 1, T0 + MIN);
  quiet(&f);
  step_late(&f, ON, 0, T0 + 2 * MIN);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.changed, 1);
  step_late(&f, ON, 0, T0 + 3 * MIN);
  quiet(&f);

  /* A target.late of 2 (any true) is the same as 1. */
  f.m.late = 1;
  step_late(&f, ON, 2, T0 + 4 * MIN);
  quiet(&f);
}

static void test_names(void **state) {
  static const char *const names[] = {"ok", "pending", "firing", "resolved",
                                      "nodata"};
  (void)state;

  for (int s = PM_ALERT_OK; s <= PM_ALERT_NODATA; s++) {
    assert_string_equal(pm_alert_state_name((pm_alert_state_t)s), names[s]);
    assert_int_equal(pm_alert_state_parse(names[s]), s);
  }
  assert_int_equal(pm_alert_state_parse("OK"), -1);
  assert_int_equal(pm_alert_state_parse(""), -1);
  assert_int_equal(pm_alert_state_parse("fire"), -1);
  assert_int_equal(pm_alert_state_parse("firing "), -1);
  assert_int_equal(pm_alert_state_parse(NULL), -1);
  assert_string_equal(pm_alert_ev_kind_name(PM_EV_STATE), "state");
  assert_string_equal(pm_alert_ev_kind_name(PM_EV_LATE), "late");
  assert_string_equal(pm_alert_ev_kind_name(PM_EV_LATE_CLEARED),
                      "late_cleared");
  assert_string_equal(pm_alert_ev_kind_name(PM_EV_REPEAT), "repeat");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mem_init),
      cmocka_unit_test(test_full_cycle_at_boundaries),
      cmocka_unit_test(test_pending_back_to_ok),
      cmocka_unit_test(test_for_zero_fires_directly),
      cmocka_unit_test(test_flapping_never_notifies),
      cmocka_unit_test(test_flapping_while_firing),
      cmocka_unit_test(test_repeat_at_exact_interval),
      cmocka_unit_test(test_repeat_only_while_behind),
      cmocka_unit_test(test_nodata_from_every_state),
      cmocka_unit_test(test_nodata_back),
      cmocka_unit_test(test_late_hysteresis),
      cmocka_unit_test(test_late_agreeing_again_forgets),
      cmocka_unit_test(test_late_zero_waits),
      cmocka_unit_test(test_late_not_judged_during_nodata),
      cmocka_unit_test(test_event_order),
      cmocka_unit_test(test_changed_flag),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

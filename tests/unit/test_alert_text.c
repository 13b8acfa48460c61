/* Alert messages (daemon/alert_text.h) and the JSON body of an event
 * (daemon/alert_event.h): every sentence form, the number formats, the
 * snprintf-like truncation, every key of the body, and day numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>
#include <jansson.h>

#include "alert_event.h"
#include "alert_text.h"

/* Day numbers (days since 1970-01-01). */
#define D_2026_11_25 20782
#define D_2027_05_02 20940
#define D_2027_06_30 20999
#define D_2027_07_01 21000
#define D_2027_09_14 21075

#define US_PER_DAY (INT64_C(86400) * 1000000)

#define ENROLL "Portal enrollment at North Clinic"
#define CANCEL "Appointment cancellations at North Clinic"
#define MSGS "Secure messages at North Clinic"

/* The issue's example: enrollment firing, late by 76 days. */
static pm_alert_event_t enrollment(void) {
  pm_alert_event_t e;

  memset(&e, 0, sizeof(e));
  e.event_id = 123;
  e.target = "enrollment";
  e.title = ENROLL;
  e.kind = PM_EV_STATE;
  e.from = PM_ALERT_PENDING;
  e.to = PM_ALERT_FIRING;
  e.severity = "warning";
  e.at_us = D_2026_11_25 * US_PER_DAY + INT64_C(17) * 3600 * 1000000;
  e.status = PM_STATUS_BEHIND;
  e.has_actual = e.has_expected = e.has_goal = 1;
  e.actual = 0.31;
  e.expected = 0.372;
  e.goal_value = 0.60;
  e.percent = 1;
  e.at_most = 0;
  e.plan_day = D_2026_11_25;
  e.due_day = D_2027_06_30;
  e.projected_day = D_2027_09_14;
  e.late = 1;
  e.days_late = 76;
  e.message = "the message";
  e.daemon = "north-clinic-1";
  return e;
}

/* Cancellations, a ceiling with a fixed goal. */
static pm_alert_event_t cancellations(void) {
  pm_alert_event_t e = enrollment();

  e.target = "cancellations";
  e.title = CANCEL;
  e.at_most = 1;
  e.actual = 0.142;
  e.expected = 0.12;
  e.goal_value = 0.12;
  e.due_day = PM_ALERT_NO_DAY;
  e.projected_day = PM_ALERT_NO_DAY;
  e.late = 0;
  e.days_late = 0;
  return e;
}

static pm_alert_event_t on_track(pm_alert_event_t e) {
  e.status = PM_STATUS_ON_TRACK;
  e.from = PM_ALERT_FIRING;
  e.to = PM_ALERT_RESOLVED;
  e.actual = 0.38;
  return e;
}

static void says(const pm_alert_event_t *e, const char *want) {
  char buf[1024];
  int n;

  memset(buf, 'x', sizeof(buf));
  n = pm_alert_message(e, buf, sizeof(buf));
  if (strcmp(buf, want) != 0)
    fail_msg("message\n  got:  \"%s\"\n  want: \"%s\"", buf, want);
  assert_int_equal(n, (int)strlen(want));
}

/* 2027-09-14 is 76 days after 2027-06-30: July 31 + August 31 +
 * September 14. */
static void test_issue_sentence(void **state) {
  pm_alert_event_t e = enrollment();
  (void)state;

  assert_int_equal(D_2027_09_14 - D_2027_06_30, 76);
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
}

static void test_behind_forms(void **state) {
  pm_alert_event_t e = enrollment();
  (void)state;

  /* Pending, repeat, and a late event while behind read the same. */
  e.from = PM_ALERT_OK;
  e.to = PM_ALERT_PENDING;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
  e.kind = PM_EV_REPEAT;
  e.from = e.to = PM_ALERT_FIRING;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
  e.kind = PM_EV_LATE;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
  /* Repeat, pending and firing events are about being behind, whatever
   * the status beside them says. */
  e.status = PM_STATUS_ON_TRACK;
  e.kind = PM_EV_REPEAT;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
  e.kind = PM_EV_STATE;
  e.from = PM_ALERT_NODATA;
  e.to = PM_ALERT_PENDING;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");
  e.status = PM_STATUS_BEHIND;

  /* late_cleared while behind: behind, and the pace is now in time. */
  e.kind = PM_EV_LATE_CLEARED;
  e.late = 0;
  e.projected_day = D_2027_05_02;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-05-02, in time.");
}

static void test_behind_at_most(void **state) {
  pm_alert_event_t e = cancellations();
  (void)state;

  says(&e, CANCEL " is 14.2 %, 2.2 points above the ceiling of 12.0 % for "
                  "2026-11-25.");
  /* A ramp down with a due date: "brought down to". */
  e.due_day = D_2027_06_30;
  e.goal_value = 0.08;
  e.projected_day = D_2027_09_14;
  e.late = 1;
  e.days_late = 76;
  says(&e, CANCEL " is 14.2 %, 2.2 points above the ceiling of 12.0 % for "
                  "2026-11-25; at the current pace 8 % will be brought down "
                  "to on 2027-09-14, 76 days late.");
  e.projected_day = PM_ALERT_NO_DAY;
  says(&e, CANCEL " is 14.2 %, 2.2 points above the ceiling of 12.0 % for "
                  "2026-11-25; at the current pace 8 % will not be brought "
                  "down to.");
}

static void test_forecast_tails(void **state) {
  pm_alert_event_t e = enrollment();
  const char *head = ENROLL " is 31.0 %, 6.2 points behind the plan of "
                            "37.2 % for 2026-11-25";
  char want[512];
  (void)state;

  /* Late, no projection (the trend never gets there). */
  e.projected_day = PM_ALERT_NO_DAY;
  snprintf(want, sizeof(want),
           "%s; at the current pace 60 %% will not be "
           "reached.",
           head);
  says(&e, want);

  /* Not late, projected in time. */
  e.late = 0;
  e.projected_day = D_2027_05_02;
  snprintf(want, sizeof(want),
           "%s; at the current pace 60 %% will be "
           "reached on 2027-05-02, in time.",
           head);
  says(&e, want);

  /* Not late, no projection: nothing to add. */
  e.projected_day = PM_ALERT_NO_DAY;
  snprintf(want, sizeof(want), "%s.", head);
  says(&e, want);

  /* No due date (a fixed goal): no tail even with a projection. */
  e = enrollment();
  e.due_day = PM_ALERT_NO_DAY;
  says(&e, want);

  /* One day late: singular; goals print without forced decimals. */
  e = enrollment();
  e.projected_day = D_2027_07_01;
  e.days_late = 1;
  e.goal_value = 0.375;
  snprintf(want, sizeof(want),
           "%s; at the current pace 37.5 %% will be "
           "reached on 2027-07-01, 1 day late.",
           head);
  says(&e, want);
}

static void test_on_track_forms(void **state) {
  pm_alert_event_t e = on_track(enrollment());
  (void)state;

  says(&e, ENROLL " is back on track: 38.0 % against the plan of 37.2 % for "
                  "2026-11-25.");
  /* nodata -> ok, and pending -> ok, read the same. */
  e.from = PM_ALERT_NODATA;
  e.to = PM_ALERT_OK;
  says(&e, ENROLL " is back on track: 38.0 % against the plan of 37.2 % for "
                  "2026-11-25.");
  e.from = PM_ALERT_PENDING;
  says(&e, ENROLL " is back on track: 38.0 % against the plan of 37.2 % for "
                  "2026-11-25.");

  e = on_track(cancellations());
  e.actual = 0.101;
  says(&e, CANCEL " is back on track: 10.1 % against the ceiling of 12.0 % "
                  "for 2026-11-25.");

  /* A plan that has not begun has no expected value. */
  e = on_track(enrollment());
  e.has_expected = 0;
  says(&e, ENROLL " is 38.0 %; its plan has not begun.");
}

static void test_nodata(void **state) {
  pm_alert_event_t e = enrollment();
  (void)state;

  e.status = PM_STATUS_NODATA;
  e.from = PM_ALERT_FIRING;
  e.to = PM_ALERT_NODATA;
  e.has_actual = 0;
  says(&e, ENROLL " has no data: nothing new was ingested for it recently, "
                  "so it cannot be judged.");
}

static void test_late_on_track(void **state) {
  pm_alert_event_t e = on_track(enrollment());
  (void)state;

  e.kind = PM_EV_LATE;
  e.from = e.to = PM_ALERT_OK;
  says(&e, ENROLL " is on track for now (38.0 % against the plan of 37.2 % "
                  "for 2026-11-25), but at the current pace 60 % will be "
                  "reached on 2027-09-14, 76 days after the due date "
                  "2027-06-30.");
  e.projected_day = PM_ALERT_NO_DAY;
  says(&e, ENROLL " is on track for now (38.0 % against the plan of 37.2 % "
                  "for 2026-11-25), but at the current pace 60 % will not be "
                  "reached by the due date 2027-06-30.");
  e.projected_day = D_2027_07_01;
  e.days_late = 1;
  says(&e, ENROLL " is on track for now (38.0 % against the plan of 37.2 % "
                  "for 2026-11-25), but at the current pace 60 % will be "
                  "reached on 2027-07-01, 1 day after the due date "
                  "2027-06-30.");
}

static void test_late_cleared(void **state) {
  pm_alert_event_t e = on_track(enrollment());
  (void)state;

  e.kind = PM_EV_LATE_CLEARED;
  e.from = e.to = PM_ALERT_OK;
  e.late = 0;
  e.projected_day = D_2027_05_02;
  e.days_late = 0;
  says(&e, ENROLL " is back on pace: at the current pace 60 % will be "
                  "reached on 2027-05-02, before the due date 2027-06-30.");
}

static void test_number_format(void **state) {
  pm_alert_event_t e = enrollment();
  (void)state;

  e.title = MSGS;
  e.percent = 0;
  e.actual = 412;
  e.expected = 450;
  e.goal_value = 600;
  says(&e, MSGS " is 412, 38 below the plan of 450 for 2026-11-25; at the "
                "current pace 600 will be reached on 2027-09-14, 76 days "
                "late.");

  /* Rounded to tenths first, so the gap adds up with what is shown. */
  e.actual = 411.96;
  e.expected = 449.5;
  e.due_day = PM_ALERT_NO_DAY;
  says(&e, MSGS " is 412, 37.5 below the plan of 449.5 for 2026-11-25.");

  e.at_most = 1;
  e.actual = 45;
  e.expected = 40;
  says(&e, MSGS " is 45, 5 above the ceiling of 40 for 2026-11-25.");
  e.actual = 12.5;
  e.expected = 12;
  says(&e, MSGS " is 12.5, 0.5 above the ceiling of 12 for 2026-11-25.");

  /* No date to read the plan for: the clause goes. */
  e.plan_day = PM_ALERT_NO_DAY;
  says(&e, MSGS " is 12.5, 0.5 above the ceiling of 12.");

  e = on_track(enrollment());
  e.title = MSGS;
  e.percent = 0;
  e.actual = 1234.56;
  e.expected = 1000;
  says(&e, MSGS " is back on track: 1234.6 against the plan of 1000 for "
                "2026-11-25.");
}

/* Neither "-0", "nan" nor "inf" ever reaches a person. */
static void test_no_negative_zero_or_nan(void **state) {
  pm_alert_event_t e = on_track(enrollment());
  (void)state;

  e.actual = -0.0;
  e.expected = -0.0001;
  says(&e, ENROLL " is back on track: 0.0 % against the plan of 0.0 % for "
                  "2026-11-25.");
  e.percent = 0;
  e.title = MSGS;
  e.actual = -0.04;
  e.expected = -0.0;
  says(&e, MSGS " is back on track: 0 against the plan of 0 for "
                "2026-11-25.");

  e = enrollment();
  e.actual = 0.37201;
  says(&e, ENROLL " is 37.2 %, 0.0 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace 60 % will be reached on "
                  "2027-09-14, 76 days late.");

  /* NaN / inf are unknown. */
  e = on_track(enrollment());
  e.expected = NAN;
  says(&e, ENROLL " is 38.0 %; its plan has not begun.");
  e.actual = INFINITY;
  says(&e, ENROLL " is back on track.");

  e = enrollment();
  e.goal_value = NAN;
  says(&e, ENROLL " is 31.0 %, 6.2 points behind the plan of 37.2 % for "
                  "2026-11-25; at the current pace the goal will be reached "
                  "on 2027-09-14, 76 days late.");
  e.actual = -INFINITY;
  says(&e, ENROLL " is behind the plan of 37.2 % for 2026-11-25; at the "
                  "current pace the goal will be reached on 2027-09-14, 76 "
                  "days late.");
  e.actual = 0.31;
  e.expected = NAN;
  says(&e, ENROLL " is 31.0 %, behind its plan; at the current pace the "
                  "goal will be reached on 2027-09-14, 76 days late.");
}

/* Like snprintf: the full length is returned whatever len is, buf gets
 * the longest prefix that fits and a NUL, and nothing past len is
 * written. */
static void test_truncation(void **state) {
  pm_alert_event_t e = enrollment();
  char full[512], buf[512];
  int n;
  (void)state;

  n = pm_alert_message(&e, full, sizeof(full));
  assert_int_equal(n, (int)strlen(full));
  assert_int_equal(pm_alert_message(&e, NULL, 0), n);
  for (size_t len = 0; len <= (size_t)n + 2; len++) {
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(pm_alert_message(&e, buf, len), n);
    if (len > 0) {
      size_t k = len - 1 < (size_t)n ? len - 1 : (size_t)n;
      assert_int_equal(strlen(buf), k);
      assert_memory_equal(buf, full, k);
    }
    assert_int_equal(buf[len], 'x');
  }
}

/* ---- JSON body ---- */

static json_t *parse(const pm_alert_event_t *e) {
  json_error_t err;
  char *text = pm_alert_event_json(e);
  json_t *o;

  assert_non_null(text);
  assert_null(strchr(text, '\n')); /* compact: one line */
  o = json_loads(text, 0, &err);
  if (!o)
    fail_msg("not JSON (%s): %s", err.text, text);
  free(text);
  assert_true(json_is_object(o));
  return o;
}

static void str_is(json_t *o, const char *key, const char *want) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
    fail_msg("\"%s\" is not \"%s\"", key, want);
}

static void real_is(json_t *o, const char *key, double want) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v) || json_number_value(v) != want)
    fail_msg("\"%s\" is not %.17g", key, want);
}

static void null_is(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_null(v))
    fail_msg("\"%s\" is not null", key);
}

static const char *const keys[] = {"version",
                                   "event_id",
                                   "target",
                                   "title",
                                   "kind",
                                   "from",
                                   "to",
                                   "severity",
                                   "at",
                                   "status",
                                   "actual",
                                   "expected",
                                   "gap",
                                   "format",
                                   "direction",
                                   "plan_date",
                                   "goal_value",
                                   "due",
                                   "projected_date",
                                   "late",
                                   "days_late",
                                   "message",
                                   "daemon"};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static void test_json_full(void **state) {
  pm_alert_event_t e = enrollment();
  json_t *o;
  char *text;
  const char *prev;
  (void)state;

  o = parse(&e);
  assert_int_equal(json_object_size(o), N_KEYS);
  assert_true(json_is_integer(json_object_get(o, "version")));
  assert_int_equal(json_integer_value(json_object_get(o, "version")), 1);
  str_is(o, "event_id", "123");
  str_is(o, "target", "enrollment");
  str_is(o, "title", ENROLL);
  str_is(o, "kind", "state");
  str_is(o, "from", "pending");
  str_is(o, "to", "firing");
  str_is(o, "severity", "warning");
  str_is(o, "at", "2026-11-25T17:00:00.000000Z");
  str_is(o, "status", "behind");
  /* Every double comes back bit for bit. */
  real_is(o, "actual", 0.31);
  real_is(o, "expected", 0.372);
  real_is(o, "gap", 0.31 - 0.372);
  str_is(o, "format", "percent");
  str_is(o, "direction", "at_least");
  str_is(o, "plan_date", "2026-11-25");
  real_is(o, "goal_value", 0.6);
  str_is(o, "due", "2027-06-30");
  str_is(o, "projected_date", "2027-09-14");
  assert_true(json_is_true(json_object_get(o, "late")));
  assert_true(json_is_integer(json_object_get(o, "days_late")));
  assert_int_equal(json_integer_value(json_object_get(o, "days_late")), 76);
  str_is(o, "message", "the message");
  str_is(o, "daemon", "north-clinic-1");
  json_decref(o);

  /* Keys in the documented order. */
  text = pm_alert_event_json(&e);
  assert_non_null(text);
  prev = text;
  for (size_t i = 0; i < N_KEYS; i++) {
    char quoted[64];
    const char *at;
    snprintf(quoted, sizeof(quoted), "\"%s\":", keys[i]);
    at = strstr(text, quoted);
    if (!at || at < prev)
      fail_msg("key \"%s\" out of order in %s", keys[i], text);
    prev = at;
  }
  assert_int_equal(strncmp(text, "{\"version\":1,\"event_id\":\"123\",", 30),
                   0);
  free(text);
}

static void test_json_nulls(void **state) {
  pm_alert_event_t e = enrollment();
  json_t *o;
  (void)state;

  e.title = NULL; /* falls back to the name */
  e.severity = NULL;
  e.message = NULL;
  e.daemon = NULL;
  e.has_actual = 0;
  e.has_goal = 0;
  e.plan_day = PM_ALERT_NO_DAY;
  e.due_day = PM_ALERT_NO_DAY;
  e.projected_day = PM_ALERT_NO_DAY;
  e.late = 0;
  e.percent = 0;
  e.at_most = 1;
  e.status = PM_STATUS_NODATA;
  e.kind = PM_EV_LATE_CLEARED;
  e.from = e.to = PM_ALERT_NODATA;
  o = parse(&e);
  assert_int_equal(json_object_size(o), N_KEYS);
  str_is(o, "title", "enrollment");
  str_is(o, "kind", "late_cleared");
  str_is(o, "from", "nodata");
  str_is(o, "to", "nodata");
  str_is(o, "status", "nodata");
  str_is(o, "format", "number");
  str_is(o, "direction", "at_most");
  null_is(o, "severity");
  null_is(o, "actual");
  real_is(o, "expected", 0.372);
  null_is(o, "gap"); /* needs both */
  null_is(o, "plan_date");
  null_is(o, "goal_value");
  null_is(o, "due");
  null_is(o, "projected_date");
  assert_true(json_is_false(json_object_get(o, "late")));
  null_is(o, "days_late");
  null_is(o, "message");
  null_is(o, "daemon");
  json_decref(o);

  /* Non-finite numbers are unknown, not invalid JSON. */
  e = enrollment();
  e.actual = NAN;
  e.goal_value = INFINITY;
  o = parse(&e);
  null_is(o, "actual");
  null_is(o, "gap");
  null_is(o, "goal_value");
  real_is(o, "expected", 0.372);
  json_decref(o);

  /* Only one of the two known: no gap, even with a value beside the
   * flag. */
  e = enrollment();
  e.has_expected = 0;
  o = parse(&e);
  null_is(o, "expected");
  null_is(o, "gap");
  real_is(o, "actual", 0.31);
  json_decref(o);
  e = enrollment();
  e.has_actual = 0;
  o = parse(&e);
  null_is(o, "actual");
  null_is(o, "gap");
  json_decref(o);

  /* Not late: no days_late, though both days are known. */
  e = enrollment();
  e.late = 0;
  e.projected_day = D_2027_05_02;
  e.days_late = -59;
  o = parse(&e);
  assert_true(json_is_false(json_object_get(o, "late")));
  null_is(o, "days_late");
  str_is(o, "projected_date", "2027-05-02");
  json_decref(o);

  /* Late without a projection: no days_late. */
  e = enrollment();
  e.projected_day = PM_ALERT_NO_DAY;
  e.expected = NAN;
  o = parse(&e);
  assert_true(json_is_true(json_object_get(o, "late")));
  null_is(o, "days_late");
  null_is(o, "projected_date");
  null_is(o, "expected");
  null_is(o, "gap");
  real_is(o, "actual", 0.31);
  json_decref(o);
}

static void test_json_ids_and_times(void **state) {
  pm_alert_event_t e = enrollment();
  json_t *o;
  (void)state;

  /* 2^53 + 1 does not survive a double: hence the string. */
  e.event_id = INT64_C(9007199254740993);
  e.at_us = D_2026_11_25 * US_PER_DAY + INT64_C(86399999999);
  e.title = "Quote \" and \\ and caf\xc3\xa9";
  o = parse(&e);
  str_is(o, "event_id", "9007199254740993");
  str_is(o, "at", "2026-11-25T23:59:59.999999Z");
  str_is(o, "title", "Quote \" and \\ and caf\xc3\xa9");
  json_decref(o);

  e.event_id = INT64_MAX;
  e.at_us = -1; /* before the epoch: floor, not truncation */
  o = parse(&e);
  str_is(o, "event_id", "9223372036854775807");
  str_is(o, "at", "1969-12-31T23:59:59.999999Z");
  json_decref(o);

  /* Doubles that need all 17 digits to come back bit for bit. */
  e.actual = 0.1 + 0.2;
  e.expected = 1.0 / 3;
  e.goal_value = 2.0 / 3;
  o = parse(&e);
  real_is(o, "actual", 0.1 + 0.2);
  real_is(o, "expected", 1.0 / 3);
  real_is(o, "gap", (0.1 + 0.2) - 1.0 / 3);
  real_is(o, "goal_value", 2.0 / 3);
  json_decref(o);

  e.at_us = 0;
  o = parse(&e);
  str_is(o, "at", "1970-01-01T00:00:00.000000Z");
  json_decref(o);

  e.at_us = 11016 * US_PER_DAY + INT64_C(45296000123);
  o = parse(&e);
  str_is(o, "at", "2000-02-29T12:34:56.000123Z");
  json_decref(o);
}

/* ---- day numbers ---- */

static void day_is(int32_t day, const char *want) {
  char buf[16];
  pm_alert_day_str(day, buf, sizeof(buf));
  if (strcmp(buf, want) != 0)
    fail_msg("day %ld: got %s, want %s", (long)day, buf, want);
}

static void test_day_str(void **state) {
  char buf[11];
  (void)state;

  day_is(0, "1970-01-01");
  day_is(1, "1970-01-02");
  day_is(-1, "1969-12-31");
  day_is(11015, "2000-02-28");
  day_is(11016, "2000-02-29");
  day_is(11017, "2000-03-01");
  day_is(D_2026_11_25, "2026-11-25");
  day_is(D_2027_06_30, "2027-06-30");
  day_is(D_2027_09_14, "2027-09-14");
  day_is(-25508, "1900-03-01"); /* 1900 is not a leap year */
  day_is(-25509, "1900-02-28");
  day_is(-135081, "1600-02-29");
  day_is(-719162, "0001-01-01");

  /* Exactly 11 bytes is enough. */
  pm_alert_day_str(D_2026_11_25, buf, sizeof(buf));
  assert_string_equal(buf, "2026-11-25");
}

static int leap(long y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Every day from 1600 to 2400 follows the one before it: an independent
 * calendar walk, so no single table entry can hide an error. */
static void test_day_str_walk(void **state) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  long y = 1600, m = 1, d = 1;
  char buf[64], want[64];
  (void)state;

  for (int32_t day = -135140; day <= 157000; day++) {
    snprintf(want, sizeof(want), "%04ld-%02ld-%02ld", y, m, d);
    pm_alert_day_str(day, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
      fail_msg("day %ld: got %s, want %s", (long)day, buf, want);
    if (++d > mdays[m - 1] + (m == 2 && leap(y))) {
      d = 1;
      if (++m > 12) {
        m = 1;
        y++;
      }
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_issue_sentence),
      cmocka_unit_test(test_behind_forms),
      cmocka_unit_test(test_behind_at_most),
      cmocka_unit_test(test_forecast_tails),
      cmocka_unit_test(test_on_track_forms),
      cmocka_unit_test(test_nodata),
      cmocka_unit_test(test_late_on_track),
      cmocka_unit_test(test_late_cleared),
      cmocka_unit_test(test_number_format),
      cmocka_unit_test(test_no_negative_zero_or_nan),
      cmocka_unit_test(test_truncation),
      cmocka_unit_test(test_json_full),
      cmocka_unit_test(test_json_nulls),
      cmocka_unit_test(test_json_ids_and_times),
      cmocka_unit_test(test_day_str),
      cmocka_unit_test(test_day_str_walk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The sentence of an alert event (see alert_text.h). Values are rounded
 * to tenths once, and the gap is the difference of the rounded values, so
 * the three numbers a reader sees always add up. A value that is unknown,
 * NaN or infinite is left out of the sentence rather than printed. */
#include "alert_text.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#define NUM_MAX 40 /* a number: at most 17 digits, or exponent form */
#define VAL_MAX 64 /* a number with its unit */

/* Appends like snprintf: writes what fits, counts everything. */
typedef struct out {
  char *buf;
  size_t len, need;
} out_t;

__attribute__((format(printf, 2, 3))) static void add(out_t *o, const char *fmt,
                                                      ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  if (o->need < o->len)
    n = vsnprintf(o->buf + o->need, o->len - o->need, fmt, ap);
  else
    n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->need += (size_t)n;
}

static int known(int has, double v) {
  return has && isfinite(v);
}

/* v in tenths, a whole number; 0 for -0 so "-0.0" never shows. */
static double tenths(double v) {
  double t = round(v * 10);
  return t == 0 ? 0 : t;
}

/* Tenths as text: "12.5", and "412" for a whole number unless force
 * asks for the decimal ("31.0"). Values too large for a sentence are
 * printed in exponent form instead of hundreds of digits. */
static void tenths_str(double t, int force, char *s, size_t len) {
  if (fabs(t) >= 1e16)
    snprintf(s, len, "%.3g", t / 10);
  else if (!force && fmod(t, 10) == 0)
    snprintf(s, len, "%.0f", t / 10);
  else
    snprintf(s, len, "%.1f", t / 10);
}

/* v in the target's unit (percent: times 100), in tenths. */
static double scaled(const pm_alert_event_t *e, double v) {
  return tenths(e->percent ? v * 100 : v);
}

/* A value as the target shows it: percent with one decimal and " %",
 * numbers without decimals when whole. Goals drop the forced decimal
 * ("60 %"): a person wrote them that way. */
static void value_str(const pm_alert_event_t *e, double v, int goal, char *s,
                      size_t len) {
  char n[NUM_MAX];

  tenths_str(scaled(e, v), e->percent && !goal, n, sizeof(n));
  snprintf(s, len, "%s%s", n, e->percent ? " %" : "");
}

static void goal_str(const pm_alert_event_t *e, char *s, size_t len) {
  if (known(e->has_goal, e->goal_value))
    value_str(e, e->goal_value, 1, s, len);
  else
    snprintf(s, len, "the goal");
}

/* |actual - expected| of the rounded values: "6.2 points", "38". */
static void gap_str(const pm_alert_event_t *e, char *s, size_t len) {
  char n[NUM_MAX];
  double t = fabs(scaled(e, e->actual) - scaled(e, e->expected));

  tenths_str(t, e->percent, n, sizeof(n));
  snprintf(s, len, "%s%s", n, e->percent ? " points" : "");
}

static const char *title(const pm_alert_event_t *e) {
  if (e->title)
    return e->title;
  return e->target ? e->target : "the target";
}

static const char *verb(const pm_alert_event_t *e) {
  return e->at_most ? "brought down to" : "reached";
}

/* Which side of the line a behind target is on. */
static const char *gap_word(const pm_alert_event_t *e) {
  if (e->at_most)
    return "above";
  return e->percent ? "behind" : "below";
}

/* "the plan of 37.2 % for 2026-11-25" (no date when none is known). */
static void add_plan(out_t *o, const pm_alert_event_t *e) {
  char v[VAL_MAX], d[32];

  value_str(e, e->expected, 0, v, sizeof(v));
  add(o, "the %s of %s", e->at_most ? "ceiling" : "plan", v);
  if (e->plan_day != PM_ALERT_NO_DAY) {
    pm_alert_day_str(e->plan_day, d, sizeof(d));
    add(o, " for %s", d);
  }
}

static void add_days(out_t *o, int32_t n) {
  add(o, "%d day%s", (int)n, n == 1 || n == -1 ? "" : "s");
}

/* "; at the current pace 60 % will be reached on 2027-09-14, 76 days
 * late": only for goals with a due date, and only when there is
 * something to say. */
static void add_tail(out_t *o, const pm_alert_event_t *e) {
  char g[VAL_MAX], d[32];
  int projected = e->projected_day != PM_ALERT_NO_DAY;

  if (e->due_day == PM_ALERT_NO_DAY || (!projected && !e->late))
    return;
  goal_str(e, g, sizeof(g));
  if (!projected) {
    add(o, "; at the current pace %s will not be %s", g, verb(e));
    return;
  }
  pm_alert_day_str(e->projected_day, d, sizeof(d));
  add(o, "; at the current pace %s will be %s on %s, ", g, verb(e), d);
  if (e->late) {
    add_days(o, e->days_late);
    add(o, " late");
  } else {
    add(o, "in time");
  }
}

static void behind(out_t *o, const pm_alert_event_t *e) {
  char a[VAL_MAX], gap[VAL_MAX];
  int has_a = known(e->has_actual, e->actual);
  int has_e = known(e->has_expected, e->expected);

  add(o, "%s is ", title(e));
  if (has_a) {
    value_str(e, e->actual, 0, a, sizeof(a));
    add(o, "%s, ", a);
  }
  if (has_a && has_e) {
    gap_str(e, gap, sizeof(gap));
    add(o, "%s %s ", gap, gap_word(e));
    add_plan(o, e);
  } else if (has_e) {
    add(o, "%s ", gap_word(e));
    add_plan(o, e);
  } else {
    add(o, "%s its %s", gap_word(e), e->at_most ? "ceiling" : "plan");
  }
  add_tail(o, e);
  add(o, ".");
}

static void on_track(out_t *o, const pm_alert_event_t *e) {
  char a[VAL_MAX];
  int has_a = known(e->has_actual, e->actual);
  int has_e = known(e->has_expected, e->expected);

  if (has_a)
    value_str(e, e->actual, 0, a, sizeof(a));
  if (has_a && has_e) {
    add(o, "%s is back on track: %s against ", title(e), a);
    add_plan(o, e);
    add(o, ".");
  } else if (has_a) {
    add(o, "%s is %s; its plan has not begun.", title(e), a);
  } else {
    add(o, "%s is back on track.", title(e));
  }
}

static void nodata(out_t *o, const pm_alert_event_t *e) {
  add(o,
      "%s has no data: nothing new was ingested for it recently, so it "
      "cannot be judged.",
      title(e));
}

/* A late warning for a target on track today: "(38.0 % against the plan
 * of ...)" says why it is not behind, the rest when the goal comes. */
static void late_on_track(out_t *o, const pm_alert_event_t *e) {
  char a[VAL_MAX], g[VAL_MAX], d[32];
  int has_a = known(e->has_actual, e->actual);
  int has_e = known(e->has_expected, e->expected);
  int has_due = e->due_day != PM_ALERT_NO_DAY;

  add(o, "%s is on track for now", title(e));
  if (has_a) {
    value_str(e, e->actual, 0, a, sizeof(a));
    add(o, " (%s", a);
    if (has_e) {
      add(o, " against ");
      add_plan(o, e);
    }
    add(o, ")");
  }
  goal_str(e, g, sizeof(g));
  add(o, ", but at the current pace %s will ", g);
  if (e->projected_day != PM_ALERT_NO_DAY) {
    pm_alert_day_str(e->projected_day, d, sizeof(d));
    add(o, "be %s on %s", verb(e), d);
    if (has_due) {
      add(o, ", ");
      add_days(o, e->days_late);
      add(o, " after the due date");
    }
  } else {
    add(o, "not be %s", verb(e));
    if (has_due)
      add(o, " by the due date");
  }
  if (has_due) {
    pm_alert_day_str(e->due_day, d, sizeof(d));
    add(o, " %s", d);
  }
  add(o, ".");
}

static void back_on_pace(out_t *o, const pm_alert_event_t *e) {
  char g[VAL_MAX], d[32];

  add(o, "%s is back on pace", title(e));
  if (e->projected_day != PM_ALERT_NO_DAY) {
    goal_str(e, g, sizeof(g));
    pm_alert_day_str(e->projected_day, d, sizeof(d));
    add(o, ": at the current pace %s will be %s on %s", g, verb(e), d);
    if (e->due_day != PM_ALERT_NO_DAY) {
      pm_alert_day_str(e->due_day, d, sizeof(d));
      /* Reaching it on the day itself is in time, but not "before". */
      add(o, ", %s the due date %s",
          e->projected_day < e->due_day ? "before" : "by", d);
    }
  }
  add(o, ".");
}

/* The status decides first: a target without data or behind its plan is
 * described as such whatever the event, so every message tells where it
 * stands. The event's kind picks among the on-track sentences. */
static int is_behind(const pm_alert_event_t *e) {
  if (e->status == PM_STATUS_BEHIND || e->kind == PM_EV_REPEAT)
    return 1;
  return e->kind == PM_EV_STATE &&
         (e->to == PM_ALERT_PENDING || e->to == PM_ALERT_FIRING);
}

int pm_alert_message(const pm_alert_event_t *e, char *buf, size_t len) {
  out_t o = {buf, len, 0};

  if (len > 0)
    buf[0] = '\0';
  if (e->status == PM_STATUS_NODATA ||
      (e->kind == PM_EV_STATE && e->to == PM_ALERT_NODATA))
    nodata(&o, e);
  else if (is_behind(e))
    behind(&o, e);
  else if (e->kind == PM_EV_LATE)
    late_on_track(&o, e);
  else if (e->kind == PM_EV_LATE_CLEARED)
    back_on_pace(&o, e);
  else
    on_track(&o, e);
  return o.need > INT_MAX ? INT_MAX : (int)o.need;
}

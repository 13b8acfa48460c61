/* The JSON body of an alert event (see alert_event.h). Dates are computed
 * from day numbers with integer arithmetic, not the C library's time
 * zone functions: the day was already fixed in the target's zone by SQL,
 * and "at" is UTC by definition. */
#include "alert_event.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include <jansson.h>

#define US_PER_DAY (INT64_C(86400) * 1000000)

typedef struct civil {
  int64_t y;
  int m, d;
} civil_t;

/* Howard Hinnant's civil_from_days: proleptic Gregorian, any day number
 * (64 bits, so even INT32_MIN cannot overflow). */
static civil_t civil_from_days(int64_t z) {
  civil_t c;
  int64_t era, doe, yoe, doy, mp;

  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = z - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  c.d = (int)(doy - (153 * mp + 2) / 5 + 1);
  c.m = (int)(mp < 10 ? mp + 3 : mp - 9);
  c.y = yoe + era * 400 + (c.m <= 2);
  return c;
}

void pm_alert_day_str(int32_t day, char *buf, size_t len) {
  civil_t c = civil_from_days(day);

  snprintf(buf, len, "%04" PRId64 "-%02d-%02d", c.y, c.m, c.d);
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"; floor division so that times before the
 * epoch land on the right day. */
static void at_str(int64_t us, char *buf, size_t len) {
  int64_t day = us / US_PER_DAY, rem = us % US_PER_DAY;
  civil_t c;

  if (rem < 0) {
    rem += US_PER_DAY;
    day--;
  }
  c = civil_from_days(day);
  snprintf(buf, len, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06dZ", c.y, c.m,
           c.d, (int)(rem / 3600000000), (int)(rem / 60000000 % 60),
           (int)(rem / 1000000 % 60), (int)(rem % 1000000));
}

/* Building the object: the first failure is remembered, so the caller
 * checks once at the end instead of after every key. */
typedef struct body {
  json_t *o;
  int failed;
} body_t;

/* json_object_set_new takes v even when it fails, and a NULL v (out of
 * memory) is a failure. */
static void put(body_t *b, const char *key, json_t *v) {
  if (!v || json_object_set_new(b->o, key, v) != 0)
    b->failed = 1;
}

static void put_str(body_t *b, const char *key, const char *s) {
  put(b, key, s ? json_string(s) : json_null());
}

static void put_real(body_t *b, const char *key, int known, double v) {
  /* NaN and inf are not JSON: they are as good as unknown. */
  put(b, key, known && isfinite(v) ? json_real(v) : json_null());
}

static void put_day(body_t *b, const char *key, int32_t day) {
  char s[32];

  if (day == PM_ALERT_NO_DAY) {
    put(b, key, json_null());
    return;
  }
  pm_alert_day_str(day, s, sizeof(s));
  put(b, key, json_string(s));
}

static void put_head(body_t *b, const pm_alert_event_t *e) {
  char s[40];

  put(b, "version", json_integer(1));
  snprintf(s, sizeof(s), "%" PRId64, e->event_id);
  put(b, "event_id", json_string(s));
  put_str(b, "target", e->target);
  put_str(b, "title", e->title ? e->title : e->target);
  put_str(b, "kind", pm_alert_ev_kind_name(e->kind));
  put_str(b, "from", pm_alert_state_name(e->from));
  put_str(b, "to", pm_alert_state_name(e->to));
  put_str(b, "severity", e->severity);
  at_str(e->at_us, s, sizeof(s));
  put(b, "at", json_string(s));
  put_str(b, "status", pm_target_status_name(e->status));
}

static void put_values(body_t *b, const pm_alert_event_t *e) {
  int has_a = e->has_actual && isfinite(e->actual);
  int has_e = e->has_expected && isfinite(e->expected);
  int has_days = e->late && e->due_day != PM_ALERT_NO_DAY &&
                 e->projected_day != PM_ALERT_NO_DAY;

  put_real(b, "actual", has_a, e->actual);
  put_real(b, "expected", has_e, e->expected);
  put_real(b, "gap", has_a && has_e, e->actual - e->expected);
  put_str(b, "format", e->percent ? "percent" : "number");
  put_str(b, "direction", e->at_most ? "at_most" : "at_least");
  put_day(b, "plan_date", e->plan_day);
  put_real(b, "goal_value", e->has_goal, e->goal_value);
  put_day(b, "due", e->due_day);
  put_day(b, "projected_date", e->projected_day);
  put(b, "late", json_boolean(e->late));
  put(b, "days_late", has_days ? json_integer(e->days_late) : json_null());
}

json_t *pm_alert_event_object(const pm_alert_event_t *e) {
  body_t b = {json_object(), 0};

  if (!b.o)
    return NULL;
  /* jansson keeps insertion order: the keys go out as documented. */
  put_head(&b, e);
  put_values(&b, e);
  put_str(&b, "message", e->message);
  put_str(&b, "daemon", e->daemon);
  if (b.failed) {
    json_decref(b.o);
    return NULL;
  }
  return b.o;
}

char *pm_alert_event_json(const pm_alert_event_t *e) {
  json_t *o = pm_alert_event_object(e);
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(o);
  return text;
}

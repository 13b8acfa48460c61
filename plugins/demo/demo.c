/*
 * demo: a synthetic clinic whose patient portal goes live on `golive`.
 *
 * Every canonical portal metric, one value per local day, deterministic
 * for a seed: the value of a given day depends only on (seed, patients,
 * golive, date), so emitting a day again is idempotent (daily counts and
 * gauges are `set` samples whose ts is that day's local midnight).
 *
 *   - enrollment climbs along a logistic S-curve towards ~60 % of the
 *     patients seen (about 30 % at go-live + 3 months, 55 % at + 6);
 *   - use (logins in the trailing 30 days) follows enrollment at 40-60 %,
 *     rising as the portal matures;
 *   - visits, appointments, cancellations and no-shows follow the weekday
 *     (cancellation rates differ by weekday too), with noise.
 *
 * Time. With speed = 0 the first collect fills in every day from golive
 * to today, later ones recompute yesterday and today (today scaled by the
 * part of the day gone). With speed > 0 a simulated clock starts at golive
 * on the first collect and advances `speed` days per real second; each
 * collect emits the days reached since the last one, stamped with their
 * real past dates, and the clock stops at today. Days older than 399 days
 * are skipped (the daemon refuses samples past its max_sample_age).
 *
 * Day buckets are local days: the daemon sets the process time zone to
 * daemon.timezone at start, so localtime_r and mktime give the site's.
 *
 * Load mode. With rate > 0 the plugin emits nothing of the above: each
 * collect emits rate x (seconds since the previous collect) samples of
 * `demo.load`, spread round-robin over `series` series (label series =
 * "s<i>"), all `set`, each with its own ts so no two fold and every one is
 * a new row: the writer's real merge path, not a shortcut. Chunks of 1000;
 * PM_EBUSY is retried after a short sleep until the run must stop.
 */
#include <portalmetrics/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_US (INT64_C(86400) * 1000000)
#define MAX_AGE_DAYS 399
#define CHUNK 1000

static const pm_metric_decl_t demo_metrics[] = {
    {"demo.load", PM_COUNT, "1",
     "synthetic load samples of the demo plugin's rate mode"},
    {NULL, 0, NULL, NULL}};

static const pm_setting_decl_t demo_settings[] = {
    {"seed", PM_T_INT, "1", 0,
     "seed of the synthetic clinic: same seed, same numbers", NULL},
    {"patients", PM_T_INT, "12000", 0,
     "size of the clinic's patient panel (10 to 10000000)", NULL},
    {"golive", PM_T_STRING, NULL, 0,
     "portal go-live date YYYY-MM-DD (default: 90 days before now)", NULL},
    {"speed", PM_T_FLOAT, "0", 0,
     "simulated days per real second from golive, stopping at today "
     "(0: real time)",
     NULL},
    {"rate", PM_T_INT, "0", 0,
     "load mode when > 0: demo.load samples per second instead of the "
     "clinic",
     NULL},
    {"series", PM_T_INT, "1000", 0,
     "load mode: number of demo.load series (label series=\"s<i>\")", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

typedef struct demo {
  const pm_host_t *host;
  uint64_t seed;
  int64_t patients;
  int64_t golive_key; /* days since 1970-01-01 of the go-live date */
  double speed;

  /* clinic mode */
  int started;
  double sim_day;         /* speed > 0: simulated days since golive */
  int64_t next_day;       /* first day index (from golive) not yet final */
  int64_t last_us;        /* wall clock of the previous collect */
  double cap, mid, width; /* the S-curve of this seed */

  /* load mode */
  int64_t rate;
  int64_t nseries;
  char (*series_names)[24];
  uint64_t load_counter;
  int64_t load_t0_us;
} demo_t;

/* ---------------------------------------------------------------------
 * Determinism: splitmix64 keyed by seed, date and metric
 * ------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* Uniform in [0, 1) for (seed, day, stream). */
static double unif(const demo_t *d, int64_t day_key, unsigned stream) {
  uint64_t h = splitmix64(d->seed);
  h = splitmix64(h ^ (uint64_t)day_key);
  h = splitmix64(h ^ stream);
  return (double)(h >> 11) * 0x1.0p-53;
}

/* mean x (1 +- rel), rounded, never negative. */
static double noisy(const demo_t *d, int64_t day_key, unsigned stream,
                    double mean, double rel) {
  double v = mean * (1.0 + rel * (2.0 * unif(d, day_key, stream) - 1.0));
  return v < 0 ? 0 : floor(v + 0.5);
}

/* ---------------------------------------------------------------------
 * Calendar
 * ------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

/* Local midnight of the date day_key, microseconds since the epoch. */
static int64_t local_midnight_us(int64_t day_key) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  civil_from_days(day_key, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  time_t t = mktime(&tm);
  return (int64_t)t * 1000000;
}

/* The local date of a wall-clock time, as days since 1970-01-01. */
static int64_t local_day_key(int64_t us) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  localtime_r(&t, &tm);
  return days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
                         (unsigned)tm.tm_mday);
}

static int parse_date(const char *s, int64_t *key) {
  int y, m, d, n = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || s[n] != '\0' ||
      m < 1 || m > 12 || d < 1 || d > 31)
    return -1;
  int64_t k = days_from_civil(y, (unsigned)m, (unsigned)d);
  int yy, mm, dd;
  civil_from_days(k, &yy, &mm, &dd);
  if (yy != y || mm != m || dd != d)
    return -1; /* 2026-02-30 */
  *key = k;
  return 0;
}

/* ---------------------------------------------------------------------
 * The synthetic clinic
 * ------------------------------------------------------------------- */

enum {
  S_SEEN = 1,
  S_USED,
  S_VISITS,
  S_REG,
  S_REQ,
  S_CANCEL,
  S_NOSHOW,
  S_LABS,
  S_VIEWED,
  S_SMSENT,
  S_SMRECV,
  S_MSGS,
  S_INVITE,
  S_SEED = 100
};

/* Sunday = 0. Visits, secure messages, cancellation rate. */
static const double visit_wf[7] = {0.05, 1.15, 1.05, 1.0, 1.0, 0.9, 0.25};
static const double msg_wf[7] = {0.40, 1.25, 1.10, 1.05, 1.05, 0.95, 0.45};
static const double cancel_rate[7] = {0.05, 0.14,  0.11, 0.10,
                                      0.10, 0.125, 0.07};

/* Fraction of the patients seen who are enrolled, x days after go-live. */
static double enrolled_frac(const demo_t *d, double x) {
  if (x <= 0)
    return 0;
  double l0 = 1.0 / (1.0 + exp(d->mid / d->width));
  double l = 1.0 / (1.0 + exp(-(x - d->mid) / d->width));
  return d->cap * (l - l0) / (1.0 - l0);
}

static double patients_seen(const demo_t *d, double x) {
  /* the denominator grows slowly with new registrations */
  return (double)d->patients * (0.92 + 0.03 * x / 365.0);
}

#define N_METRICS 14

typedef struct day_values {
  const char *metric;
  double value;
} day_values_t;

/*
 * The values of day k (days since go-live), f in (0, 1] of it gone.
 * Gauges are the value at the end of the part of the day gone; counts
 * are the whole day's scaled by f.
 */
static void clinic_day(const demo_t *d, int64_t k, double f,
                       day_values_t out[N_METRICS]) {
  int64_t key = d->golive_key + k;
  int wday = (int)(((key % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
  double x = (double)k + f, x0 = (double)k, x1 = (double)k + 1;
  double maturity = x1 / (x1 + 60.0);

  /* gauges, at the end of the part of the day gone */
  double seen = noisy(d, key, S_SEEN, patients_seen(d, x), 0.002);
  double ef = enrolled_frac(d, x);
  double enrolled = floor(seen * ef + 0.5);
  double used =
      noisy(d, key, S_USED, enrolled * (0.40 + 0.20 * maturity), 0.02);
  if (used > enrolled)
    used = enrolled;

  /* whole-day counts */
  double ef1 = enrolled_frac(d, x1);
  double enrolled1 = patients_seen(d, x1) * ef1;
  double activated = floor(enrolled1 + 0.5) -
                     floor(patients_seen(d, x0) * enrolled_frac(d, x0) + 0.5);
  if (activated < 0)
    activated = 0;
  double invitations =
      noisy(d, key, S_INVITE, activated * 1.8 + 2.0 * visit_wf[wday], 0.15);
  double mean_visits =
      patients_seen(d, x1) * 3.2 / 365.0 * 7.0 / 5.4 * visit_wf[wday];
  double visits = noisy(d, key, S_VISITS, mean_visits, 0.08);
  double registered = noisy(
      d, key, S_REG,
      (double)d->patients * 0.12 / 365.0 * 7.0 / 5.4 * visit_wf[wday], 0.3);
  double requested = noisy(d, key, S_REQ, mean_visits * 1.08, 0.06);
  double canceled = noisy(d, key, S_CANCEL, requested * cancel_rate[wday], 0.2);
  double noshow =
      noisy(d, key, S_NOSHOW, visits * (0.075 - 0.025 * ef1 / 0.6), 0.25);
  /* results reach the portal of enrolled patients; frequent visitors
   * enrol first */
  double reach = 1.2 * ef1 > 1.0 ? 1.0 : 1.2 * ef1;
  double labs = noisy(d, key, S_LABS, visits * 0.35 * reach, 0.1);
  double viewed =
      noisy(d, key, S_VIEWED, labs * (0.45 + 0.25 * maturity), 0.08);
  if (viewed > labs)
    viewed = labs;
  double sm_sent =
      noisy(d, key, S_SMSENT, enrolled1 * 0.0035 * msg_wf[wday], 0.1);
  double sm_recv = noisy(d, key, S_SMRECV, sm_sent * 0.9, 0.1);
  double msgs = noisy(
      d, key, S_MSGS,
      sm_recv + labs * 0.9 + requested * 0.5 * reach + enrolled1 * 0.004, 0.05);

#define PART(v) floor((v)*f + 0.5)
  day_values_t v[N_METRICS] = {
      {"portal.patients_enrolled", enrolled},
      {"portal.patients_used", used},
      {"portal.messages_sent", PART(msgs)},
      {"portal.secure_messages_sent", PART(sm_sent)},
      {"portal.secure_messages_received", PART(sm_recv)},
      {"portal.lab_reports_sent", PART(labs)},
      {"portal.lab_reports_viewed", PART(viewed)},
      {"portal.appointments_requested", PART(requested)},
      {"portal.appointments_canceled", PART(canceled)},
      {"clinic.patients_seen", seen},
      {"portal.invitations_sent", PART(invitations)},
      {"portal.accounts_activated", PART(activated)},
      {"portal.appointments_noshow", PART(noshow)},
      {"clinic.patients_registered", PART(registered)},
  };
#undef PART
  memcpy(out, v, sizeof v);
}

static int emit_day(demo_t *d, pm_instance_t *inst, int64_t k, double f) {
  day_values_t v[N_METRICS];
  pm_sample_t s[N_METRICS];
  int64_t ts = local_midnight_us(d->golive_key + k);

  clinic_day(d, k, f, v);
  for (size_t i = 0; i < N_METRICS; i++) {
    s[i] = (pm_sample_t){.metric = v[i].metric,
                         .labels = NULL,
                         .n_labels = 0,
                         .ts_us = ts,
                         .value = v[i].value,
                         .kind = PM_SET};
  }
  for (;;) {
    int rc = d->host->emit(inst, s, N_METRICS, NULL);
    if (rc != PM_EBUSY)
      return rc;
    if (d->host->should_stop(inst))
      return PM_ETIMEOUT;
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
}

static int collect_clinic(demo_t *d, pm_instance_t *inst) {
  int64_t now = d->host->now_us(inst);
  int64_t today_key = local_day_key(now);
  int64_t today = today_key - d->golive_key; /* index of today */
  int64_t midnight = local_midnight_us(today_key);
  int64_t next_midnight = local_midnight_us(today_key + 1);
  double f_today =
      (double)(now - midnight) / (double)(next_midnight - midnight);
  if (f_today <= 0)
    f_today = 1e-6;

  if (today < 0)
    return 0; /* go-live is still ahead: nothing to show yet */

  if (!d->started) {
    /* the simulated clock starts at golive, or at the oldest day the
     * daemon still accepts */
    d->started = 1;
    d->next_day = today - MAX_AGE_DAYS > 0 ? today - MAX_AGE_DAYS : 0;
    d->sim_day = (double)d->next_day;
    d->last_us = now;
  } else if (d->speed > 0) {
    d->sim_day += d->speed * (double)(now - d->last_us) / 1e6;
    d->last_us = now;
  }
  if (d->next_day < today - MAX_AGE_DAYS)
    d->next_day = today - MAX_AGE_DAYS;

  /* emit days next_day..target; none when the simulated clock has not
   * reached the next day yet */
  int64_t target = today;
  if (d->speed > 0 && (int64_t)d->sim_day < today)
    target = (int64_t)d->sim_day;
  if (target < d->next_day)
    return 0;

  for (int64_t k = d->next_day; k <= target; k++) {
    if (d->host->should_stop(inst))
      return PM_ETIMEOUT;
    int rc = emit_day(d, inst, k, k == today ? f_today : 1.0);
    if (rc == PM_ETS) {
      continue; /* outside the daemon's accepted range: skip the day */
    }
    if (rc < 0) {
      d->host->log(inst, PM_LOG_WARNING, "emit of day %lld refused: %s",
                   (long long)k, d->host->strerror(rc));
      return rc;
    }
  }
  /* Today is recomputed on every collect until it is over; the first
   * collect after midnight then emits it once more, whole. */
  d->next_day = target < today ? target + 1 : today;
  return 0;
}

/* ---------------------------------------------------------------------
 * Load mode
 * ------------------------------------------------------------------- */

static int collect_load(demo_t *d, pm_instance_t *inst) {
  int64_t now = d->host->now_us(inst);
  double secs = 1.0;
  if (d->last_us > 0)
    secs = (double)(now - d->last_us) / 1e6;
  d->last_us = now;
  if (d->load_t0_us == 0)
    d->load_t0_us = now - 3600 * INT64_C(1000000);

  uint64_t total = (uint64_t)((double)d->rate * secs + 0.5);
  pm_sample_t s[CHUNK];
  pm_label_t l[CHUNK];

  while (total > 0) {
    size_t n = total < CHUNK ? (size_t)total : CHUNK;
    for (size_t i = 0; i < n; i++) {
      uint64_t c = d->load_counter + i;
      l[i] = (pm_label_t){"series", d->series_names[c % (uint64_t)d->nseries]};
      /* one microsecond per sample from an hour ago: every (series, ts)
       * is new, and ts stays behind the wall clock at up to 1e6/s */
      s[i] = (pm_sample_t){.metric = "demo.load",
                           .labels = &l[i],
                           .n_labels = 1,
                           .ts_us = d->load_t0_us + (int64_t)c,
                           .value = (double)(c % 1000),
                           .kind = PM_SET};
    }
    int rc = d->host->emit(inst, s, n, NULL);
    if (rc == PM_EBUSY) {
      if (d->host->should_stop(inst))
        return 0; /* the rest of this run's share is dropped */
      nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
      continue;
    }
    if (rc == PM_ESTOPPED)
      return 0;
    if (rc < 0) {
      d->host->log(inst, PM_LOG_WARNING, "load emit refused: %s",
                   d->host->strerror(rc));
      return rc;
    }
    d->load_counter += n;
    total -= n;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * The descriptor's callbacks
 * ------------------------------------------------------------------- */

static int get_int(const pm_host_t *h, pm_instance_t *inst, const char *key,
                   int64_t *out) {
  return h->setting_int(h->setting_get(h->settings(inst), key), out);
}

static int demo_create(pm_instance_t *inst, const pm_host_t *host,
                       void **self) {
  const pm_setting_t *root = host->settings(inst);
  int64_t seed = 1;
  const char *golive = NULL;
  demo_t *d = calloc(1, sizeof *d);
  if (!d)
    return PM_ENOMEM;
  d->host = host;

  if (get_int(host, inst, "seed", &seed) < 0 ||
      get_int(host, inst, "patients", &d->patients) < 0 ||
      host->setting_float(host->setting_get(root, "speed"), &d->speed) < 0 ||
      get_int(host, inst, "rate", &d->rate) < 0 ||
      get_int(host, inst, "series", &d->nseries) < 0) {
    host->log(inst, PM_LOG_ERROR, "cannot read settings");
    free(d);
    return PM_ECONFIG;
  }
  d->seed = (uint64_t)seed;
  if (d->patients < 10 || d->patients > 10000000) {
    host->log(inst, PM_LOG_ERROR, "patients must be 10 to 10000000, not %lld",
              (long long)d->patients);
    free(d);
    return PM_ECONFIG;
  }
  if (!(d->speed >= 0) || d->speed > 1e6) {
    host->log(inst, PM_LOG_ERROR, "speed must be 0 to 1000000");
    free(d);
    return PM_ECONFIG;
  }
  if (d->rate < 0 || d->rate > 100000000 || d->nseries < 1 ||
      d->nseries > 1000000) {
    host->log(inst, PM_LOG_ERROR,
              "rate must be 0 to 100000000 and series 1 to 1000000");
    free(d);
    return PM_ECONFIG;
  }

  const pm_setting_t *g = host->setting_get(root, "golive");
  if (g && host->setting_string(g, &golive) == 0 && golive && *golive) {
    if (parse_date(golive, &d->golive_key) < 0) {
      host->log(inst, PM_LOG_ERROR, "golive \"%s\" is not a date YYYY-MM-DD",
                golive);
      free(d);
      return PM_ECONFIG;
    }
  } else {
    d->golive_key = local_day_key(host->now_us(inst)) - 90;
  }

  /* this clinic's S-curve: cap 58-62 %, half-way at 75-95 days */
  d->cap = 0.58 + 0.04 * unif(d, 0, S_SEED);
  d->mid = 75.0 + 20.0 * unif(d, 0, S_SEED + 1);
  d->width = 22.0 + 8.0 * unif(d, 0, S_SEED + 2);

  if (d->rate > 0) {
    d->series_names = calloc((size_t)d->nseries, sizeof *d->series_names);
    if (!d->series_names) {
      free(d);
      return PM_ENOMEM;
    }
    for (int64_t i = 0; i < d->nseries; i++)
      snprintf(d->series_names[i], sizeof d->series_names[i], "s%lld",
               (long long)i);
  }
  *self = d;
  return 0;
}

static int demo_collect(void *self, pm_instance_t *inst) {
  demo_t *d = self;
  return d->rate > 0 ? collect_load(d, inst) : collect_clinic(d, inst);
}

static void demo_destroy(void *self, pm_instance_t *inst) {
  demo_t *d = self;
  (void)inst;
  free(d->series_names);
  free(d);
}

static const pm_plugin_t demo_plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "demo",
    .version = "1.0",
    .description = "a synthetic clinic's portal rollout (and a load generator)",
    .mode = PM_POLL,
    .metrics = demo_metrics,
    .settings = demo_settings,
    .create = demo_create,
    .collect = demo_collect,
    .destroy = demo_destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &demo_plugin;
}

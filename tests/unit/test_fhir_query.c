/*
 * plugins/fhir/fhir_query: local-day windows across DST changes and in
 * half-hour zones, search URLs and their separators, origins for logs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fhir_query.h"

#define US 1000000LL
#define HOUR (3600LL * US)

static void set_tz(const char *tz) {
  setenv("TZ", tz, 1);
  tzset();
}

static void test_denver_fall_back(void **state) {
  (void)state;
  set_tz("America/Denver");
  fhir_window_t w[3];
  /* 2026-11-02 12:00 local (-07:00) */
  assert_int_equal(fhir_day_windows(1793646000LL * US, 3, w, 3), 3);

  assert_string_equal(w[0].date, "2026-10-31");
  assert_string_equal(w[0].start, "2026-10-31T00:00:00-06:00");
  assert_string_equal(w[0].end, "2026-11-01T00:00:00-06:00");
  assert_int_equal(w[0].start_us, 1793426400LL * US);
  assert_int_equal(w[0].end_us - w[0].start_us, 24 * HOUR);

  /* The 25-hour day: -06:00 at its start, -07:00 at its end. */
  assert_string_equal(w[1].date, "2026-11-01");
  assert_string_equal(w[1].start, "2026-11-01T00:00:00-06:00");
  assert_string_equal(w[1].end, "2026-11-02T00:00:00-07:00");
  assert_string_equal(w[1].start_enc, "2026-11-01T00:00:00-06:00");
  assert_int_equal(w[1].start_us, 1793512800LL * US);
  assert_int_equal(w[1].end_us, 1793602800LL * US);
  assert_int_equal(w[1].end_us - w[1].start_us, 25 * HOUR);

  assert_string_equal(w[2].date, "2026-11-02");
  assert_string_equal(w[2].start, "2026-11-02T00:00:00-07:00");
  assert_string_equal(w[2].end, "2026-11-03T00:00:00-07:00");
  assert_int_equal(w[2].end_us - w[2].start_us, 24 * HOUR);
  for (int i = 0; i < 2; i++)
    assert_int_equal(w[i].end_us, w[i + 1].start_us);
}

static void test_denver_spring_forward(void **state) {
  (void)state;
  set_tz("America/Denver");
  fhir_window_t w[2];
  /* 2027-03-14 12:00 local (-06:00, after the change at 02:00) */
  assert_int_equal(fhir_day_windows(1805047200LL * US, 1, w, 2), 1);
  assert_string_equal(w[0].date, "2027-03-14");
  assert_string_equal(w[0].start, "2027-03-14T00:00:00-07:00");
  assert_string_equal(w[0].end, "2027-03-15T00:00:00-06:00");
  assert_int_equal(w[0].start_us, 1805007600LL * US);
  assert_int_equal(w[0].end_us, 1805090400LL * US);
  assert_int_equal(w[0].end_us - w[0].start_us, 23 * HOUR);
}

static void test_kolkata_plus(void **state) {
  (void)state;
  set_tz("Asia/Kolkata");
  fhir_window_t w[2];
  /* 2026-11-25 10:00 local (+05:30) */
  assert_int_equal(fhir_day_windows(1795581000LL * US + 123, 2, w, 2), 2);
  assert_string_equal(w[1].date, "2026-11-25");
  assert_string_equal(w[1].start, "2026-11-25T00:00:00+05:30");
  assert_string_equal(w[1].start_enc, "2026-11-25T00:00:00%2B05:30");
  assert_string_equal(w[1].end_enc, "2026-11-26T00:00:00%2B05:30");
  assert_int_equal(w[1].start_us, 1795545000LL * US);
  assert_int_equal(w[1].end_us, 1795631400LL * US);
  assert_string_equal(w[0].start, "2026-11-24T00:00:00+05:30");
  assert_null(strchr(w[0].start_enc, '+'));
}

static void test_utc_and_edges(void **state) {
  (void)state;
  set_tz("UTC");
  fhir_window_t w[4];
  /* Exactly at midnight: that day is today. */
  assert_int_equal(fhir_day_windows(1793491200LL * US, 1, w, 4), 1);
  assert_string_equal(w[0].start, "2026-11-01T00:00:00Z");
  assert_string_equal(w[0].end, "2026-11-02T00:00:00Z");
  /* One microsecond before: the day before. */
  assert_int_equal(fhir_day_windows(1793491200LL * US - 1, 1, w, 4), 1);
  assert_string_equal(w[0].date, "2026-10-31");
  /* Before the epoch: rounds down. */
  assert_int_equal(fhir_day_windows(-1, 1, w, 4), 1);
  assert_string_equal(w[0].start, "1969-12-31T00:00:00Z");
  /* Across a year end, oldest first. */
  assert_int_equal(fhir_day_windows(1798761600LL * US, 3, w, 4), 3);
  assert_string_equal(w[0].date, "2026-12-30");
  assert_string_equal(w[2].date, "2027-01-01");

  assert_int_equal(fhir_day_windows(0, 0, w, 4), -1);
  assert_int_equal(fhir_day_windows(0, -3, w, 4), -1);
  assert_int_equal(fhir_day_windows(0, 5, w, 4), -1);
  assert_int_equal(fhir_day_windows(0, 1, NULL, 4), -1);
}

static void test_long_backfill(void **state) {
  (void)state;
  set_tz("America/Denver");
  static fhir_window_t w[400];
  assert_int_equal(fhir_day_windows(1805047200LL * US, 400, w, 400), 400);
  int h23 = 0, h25 = 0;
  for (int i = 0; i < 400; i++) {
    int64_t d = w[i].end_us - w[i].start_us;
    assert_true(d == 23 * HOUR || d == 24 * HOUR || d == 25 * HOUR);
    h23 += d == 23 * HOUR;
    h25 += d == 25 * HOUR;
    if (i)
      assert_int_equal(w[i - 1].end_us, w[i].start_us);
    assert_memory_equal(w[i].start + 10, "T00:00:00-0", 11);
  }
  assert_int_equal(h23, 2); /* 2026-03-08 and 2027-03-14 */
  assert_int_equal(h25, 1); /* 2026-11-01 */
}

static fhir_window_t kolkata_day(void) {
  set_tz("Asia/Kolkata");
  fhir_window_t w;
  assert_int_equal(fhir_day_windows(1795581000LL * US, 1, &w, 1), 1);
  return w;
}

static void test_url_build(void **state) {
  (void)state;
  fhir_window_t w = kolkata_day();
  char url[512];
  int n = fhir_url_build(url, sizeof(url), "https://ehr.example.org/fhir/R4/",
                         "DiagnosticReport",
                         "category=LAB&status=final,amended,corrected",
                         "issued", &w, "_summary=count&_total=accurate");
  const char *want = "https://ehr.example.org/fhir/R4/DiagnosticReport?"
                     "category=LAB&status=final,amended,corrected"
                     "&issued=ge2026-11-25T00:00:00%2B05:30"
                     "&issued=lt2026-11-26T00:00:00%2B05:30"
                     "&_summary=count&_total=accurate";
  assert_string_equal(url, want);
  assert_int_equal(n, (int)strlen(want));

  /* No params: the date comes right after "?". */
  n = fhir_url_build(url, sizeof(url), "http://fhir.local:8080/R4",
                     "Appointment", "", "_lastUpdated", &w, "_count=200");
  assert_string_equal(url, "http://fhir.local:8080/R4/Appointment?"
                           "_lastUpdated=ge2026-11-25T00:00:00%2B05:30"
                           "&_lastUpdated=lt2026-11-26T00:00:00%2B05:30"
                           "&_count=200");
  /* NULL params, stray separators dropped. */
  fhir_url_build(url, sizeof(url), "https://e.org/fhir", "Appointment", NULL,
                 "date", &w, "&_count=10&");
  assert_string_equal(url, "https://e.org/fhir/Appointment?"
                           "date=ge2026-11-25T00:00:00%2B05:30"
                           "&date=lt2026-11-26T00:00:00%2B05:30&_count=10");
  fhir_url_build(url, sizeof(url), "https://e.org/fhir", "Appointment",
                 "?status=booked&", "date", &w, NULL);
  assert_string_equal(url, "https://e.org/fhir/Appointment?status=booked"
                           "&date=ge2026-11-25T00:00:00%2B05:30"
                           "&date=lt2026-11-26T00:00:00%2B05:30");
  /* No window: a gauge. */
  n = fhir_url_build(url, sizeof(url), "https://e.org/fhir", "Patient", "",
                     NULL, NULL, "_summary=count");
  assert_string_equal(url, "https://e.org/fhir/Patient?_summary=count");
  n = fhir_url_build(url, sizeof(url), "https://e.org/fhir", "Patient", NULL,
                     NULL, NULL, NULL);
  assert_string_equal(url, "https://e.org/fhir/Patient");
  assert_int_equal(n, 26);
}

static void test_url_refused(void **state) {
  (void)state;
  fhir_window_t w = kolkata_day();
  char url[512];
  const char *b = "https://e.org/fhir";
  /* resource */
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "patient", "", "date", &w, ""), -1);
  assert_string_equal(url, "");
  assert_int_equal(fhir_url_build(url, sizeof(url), b, "P", "", NULL, NULL, ""),
                   -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient/1", "", NULL, NULL, ""), -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Pat ient", "", NULL, NULL, ""), -1);
  assert_int_equal(fhir_url_build(url, sizeof(url), b, "", "", NULL, NULL, ""),
                   -1);
  /* base */
  assert_int_equal(fhir_url_build(url, sizeof(url), "ftp://e.org/fhir",
                                  "Patient", "", NULL, NULL, ""),
                   -1);
  assert_int_equal(fhir_url_build(url, sizeof(url), "e.org/fhir", "Patient", "",
                                  NULL, NULL, ""),
                   -1);
  assert_int_equal(fhir_url_build(url, sizeof(url), "https://", "Patient", "",
                                  NULL, NULL, ""),
                   -1);
  assert_int_equal(fhir_url_build(url, sizeof(url), "https://e.org/fhir?x=1",
                                  "Patient", "", NULL, NULL, ""),
                   -1);
  assert_int_equal(fhir_url_build(url, sizeof(url), "https://e.org/f hir",
                                  "Patient", "", NULL, NULL, ""),
                   -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), NULL, "Patient", "", NULL, NULL, ""),
      -1);
  /* params, date_param, window pairing */
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "a=b#c", NULL, NULL, ""),
      -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "a=b c", NULL, NULL, ""),
      -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "", "da te", &w, ""), -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "", "date", NULL, ""), -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "", NULL, &w, ""), -1);
  assert_int_equal(
      fhir_url_build(url, sizeof(url), b, "Patient", "", "", &w, ""), -1);
  /* Does not fit, by one byte; fits exactly. */
  const char *want = "https://e.org/fhir/Patient?_summary=count";
  size_t need = strlen(want) + 1;
  assert_int_equal(fhir_url_build(url, need - 1, b, "Patient", "", NULL, NULL,
                                  "_summary=count"),
                   -1);
  assert_string_equal(url, "");
  assert_int_equal(
      fhir_url_build(url, need, b, "Patient", "", NULL, NULL, "_summary=count"),
      (int)need - 1);
  assert_string_equal(url, want);
  assert_int_equal(
      fhir_url_build(url, 0, b, "Patient", "", NULL, NULL, "_summary=count"),
      -1);
}

static void test_url_origin(void **state) {
  (void)state;
  char o[64];
  assert_int_equal(
      fhir_url_origin("https://ehr.example.org/fhir/R4/Patient?name=DOE", o,
                      sizeof(o)),
      0);
  assert_string_equal(o, "https://ehr.example.org");
  assert_int_equal(fhir_url_origin("HTTP://fhir.local:8080", o, sizeof(o)), 0);
  assert_string_equal(o, "http://fhir.local:8080");
  assert_int_equal(fhir_url_origin("https://user:secret@ehr.example.org:8443/x",
                                   o, sizeof(o)),
                   0);
  assert_string_equal(o, "https://ehr.example.org:8443");
  assert_int_equal(fhir_url_origin("https://[::1]:9443/fhir", o, sizeof(o)), 0);
  assert_string_equal(o, "https://[::1]:9443");
  assert_int_equal(fhir_url_origin("https://e.org?_getpages=abc", o, sizeof(o)),
                   0);
  assert_string_equal(o, "https://e.org");

  assert_int_equal(fhir_url_origin("ftp://e.org/", o, sizeof(o)), -1);
  assert_string_equal(o, "");
  assert_int_equal(fhir_url_origin("https:///path", o, sizeof(o)), -1);
  assert_int_equal(fhir_url_origin("https://user@/path", o, sizeof(o)), -1);
  assert_int_equal(fhir_url_origin("https://e .org/", o, sizeof(o)), -1);
  assert_int_equal(fhir_url_origin(NULL, o, sizeof(o)), -1);
  assert_int_equal(fhir_url_origin("https://e.org", o, 13), -1);
  assert_int_equal(fhir_url_origin("https://e.org", o, 14), 0);
  assert_string_equal(o, "https://e.org");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_denver_fall_back),
      cmocka_unit_test(test_denver_spring_forward),
      cmocka_unit_test(test_kolkata_plus),
      cmocka_unit_test(test_utc_and_edges),
      cmocka_unit_test(test_long_backfill),
      cmocka_unit_test(test_url_build),
      cmocka_unit_test(test_url_refused),
      cmocka_unit_test(test_url_origin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

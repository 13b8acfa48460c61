/* Durations and sizes as the config writes them (daemon/units.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <portalmetrics/plugin.h>

#include "units.h"

#define S INT64_C(1000000)

static void duration_ok(const char *text, int64_t want) {
  int64_t us = -42;
  int rc = pm_parse_duration(text, &us);
  if (rc != 0 || us != want)
    fail_msg("\"%s\": rc %d, got %lld, want %lld", text, rc, (long long)us,
             (long long)want);
}

static void duration_bad(const char *text) {
  int64_t us = -42;
  if (pm_parse_duration(text, &us) != PM_EINVAL)
    fail_msg("\"%s\" was accepted as %lld us", text, (long long)us);
  assert_int_equal(us, -42); /* untouched on error */
}

static void size_ok(const char *text, uint64_t want) {
  uint64_t b = 42;
  int rc = pm_parse_size(text, &b);
  if (rc != 0 || b != want)
    fail_msg("\"%s\": rc %d, got %llu, want %llu", text, rc,
             (unsigned long long)b, (unsigned long long)want);
}

static void size_bad(const char *text) {
  uint64_t b = 42;
  if (pm_parse_size(text, &b) != PM_EINVAL)
    fail_msg("\"%s\" was accepted as %llu bytes", text, (unsigned long long)b);
  assert_int_equal(b, 42);
}

static void test_duration_units(void **state) {
  (void)state;
  duration_ok("7us", 7);
  duration_ok("500ms", 500000);
  duration_ok("30s", 30 * S);
  duration_ok("15m", 15 * 60 * S);
  duration_ok("2h", 2 * 3600 * S);
  duration_ok("2d", 2 * 86400 * S);
  duration_ok("1w", 7 * 86400 * S);
  duration_ok("3y", 3 * 365 * 86400 * S);
  duration_ok("400d", 400 * 86400 * S);
  duration_ok("0s", 0);
  duration_ok("0", 0);
}

static void test_duration_bare_number_is_seconds(void **state) {
  (void)state;
  duration_ok("90", 90 * S);
  duration_ok("007", 7 * S);
  duration_ok("1.5", 1500000);
}

static void test_duration_compound(void **state) {
  (void)state;
  duration_ok("1h30m", 90 * 60 * S);
  duration_ok("1d12h", 36 * 3600 * S);
  duration_ok("1m30s500ms", 90 * S + 500000);
  duration_ok("1y2w3d4h5m6s7ms8us",
              (365 + 14 + 3) * 86400 * S + (4 * 3600 + 5 * 60 + 6) * S + 7008);
}

static void test_duration_fractions(void **state) {
  (void)state;
  duration_ok("1.5h", 90 * 60 * S);
  duration_ok("0.25s", 250000);
  duration_ok("2.500ms", 2500);
  duration_ok("0.000001s", 1);
  duration_ok("1.000000000000000000000s", S); /* trailing zeros are free */
  duration_bad("0.0000001s");                 /* a tenth of a microsecond */
  duration_bad("1.5us");
  duration_bad("1.s");
  duration_bad(".5s");
  duration_bad("1.h");
}

static void test_duration_garbage(void **state) {
  (void)state;
  duration_bad("");
  duration_bad(" ");
  duration_bad("s");
  duration_bad("ms");
  duration_bad("5 parsecs");
  duration_bad("5parsecs");
  duration_bad("15 m");
  duration_bad(" 15m");
  duration_bad("15m ");
  duration_bad("15M");   /* units are case-sensitive */
  duration_bad("15mm");  /* not a unit */
  duration_bad("1h30");  /* a bare number only alone */
  duration_bad("30m1h"); /* largest unit first */
  duration_bad("1h1h");  /* each unit once */
  duration_bad("1e3s");
  duration_bad("0x10s");
  duration_bad("1,5s");
  duration_bad("1_000s");
}

static void test_duration_negative(void **state) {
  (void)state;
  duration_bad("-1s");
  duration_bad("-0");
  duration_bad("+1s");
  duration_bad("1h-30m");
}

static void test_duration_overflow(void **state) {
  (void)state;
  /* INT64_MAX us is about 292,471 years. */
  duration_ok("9223372036854775807us", INT64_MAX);
  duration_bad("9223372036854775808us");
  duration_ok("292471y", INT64_C(292471) * 365 * 86400 * S);
  duration_bad("292472y");
  duration_bad("18446744073709551616us"); /* past uint64 while reading */
  duration_bad("99999999999999999999999999s");
  duration_bad("292471y52w"); /* each term fits, the sum does not */
  duration_bad("9223372036854775807s");
}

static void test_duration_null(void **state) {
  int64_t us;
  (void)state;
  assert_int_equal(pm_parse_duration(NULL, &us), PM_EINVAL);
  assert_int_equal(pm_parse_duration("1s", NULL), PM_EINVAL);
}

static void test_size_units(void **state) {
  (void)state;
  size_ok("0", 0);
  size_ok("512", 512);
  size_ok("512B", 512);
  size_ok("10kB", 10000);
  size_ok("10KB", 10000);
  size_ok("10KiB", 10240);
  size_ok("64MB", 64000000);
  size_ok("64MiB", UINT64_C(64) << 20);
  size_ok("2GB", 2000000000);
  size_ok("2GiB", UINT64_C(2) << 30);
  size_ok("3TB", UINT64_C(3000000000000));
  size_ok("3TiB", UINT64_C(3) << 40);
}

static void test_size_fractions(void **state) {
  (void)state;
  size_ok("1.5GiB", UINT64_C(3) << 29);
  size_ok("0.5KiB", 512);
  size_ok("2.5kB", 2500);
  size_ok("1.000B", 1);
  size_bad("1.1KiB"); /* 1126.4 bytes */
  size_bad("0.5");
  size_bad("1.5B");
  size_bad("1.");
}

static void test_size_garbage(void **state) {
  (void)state;
  size_bad("");
  size_bad("GiB");
  size_bad("-1GiB");
  size_bad("+1GiB");
  size_bad("1 GiB");
  size_bad("1gib");
  size_bad("1kib");
  size_bad("1Kb");
  size_bad("1mb");
  size_bad("1PB");
  size_bad("1GiBB");
  size_bad("1GiB1MiB");
  size_bad("1k");
  size_bad("abc");
}

static void test_size_overflow(void **state) {
  (void)state;
  size_ok("18446744073709551615", UINT64_MAX);
  size_bad("18446744073709551616");
  size_ok("16777215TiB", UINT64_C(16777215) << 40);
  size_bad("16777216TiB"); /* 2^64 */
  size_bad("99999999999999999999GB");
}

static void format_is(int64_t us, const char *want) {
  char buf[64];
  int64_t back = -1;

  pm_format_duration(us, buf, sizeof(buf));
  if (strcmp(buf, want) != 0)
    fail_msg("%lld us: got \"%s\", want \"%s\"", (long long)us, buf, want);
  /* Exact: what is printed reads back as the same value. */
  if (us >= 0) {
    assert_int_equal(pm_parse_duration(buf, &back), 0);
    assert_int_equal(back, us);
  }
}

static void test_format(void **state) {
  (void)state;
  format_is(0, "0s");
  format_is(1, "1us");
  format_is(500000, "500ms");
  format_is(1500000, "1s500ms");
  format_is(60 * S, "1m");
  format_is(90 * 60 * S, "1h30m");
  format_is(86400 * S, "1d");
  format_is(14 * 86400 * S, "2w");
  format_is(730 * 86400 * S, "2y");
  format_is(400 * 86400 * S, "400d"); /* not "1y5w" */
  format_is(8 * 86400 * S, "8d");
  format_is(86400 * S + 1, "1d1us");
  format_is(INT64_MAX, "106751991d4h54s775ms807us");
  format_is(-90 * S, "-1m30s");
  format_is(INT64_MIN, "-106751991d4h54s775ms808us");
}

static void test_format_truncates(void **state) {
  char buf[4];
  (void)state;
  pm_format_duration(90 * 60 * S, buf, sizeof(buf));
  assert_string_equal(buf, "1h3");
  pm_format_duration(90 * 60 * S, buf, 1);
  assert_string_equal(buf, "");
}

static void test_format_roundtrip(void **state) {
  static const char *const texts[] = {"1h30m", "500ms", "3y",  "2d",  "15m",
                                      "1w1d",  "1y1d",  "36h", "1.5s"};
  (void)state;
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    int64_t a, b;
    char buf[64];
    assert_int_equal(pm_parse_duration(texts[i], &a), 0);
    pm_format_duration(a, buf, sizeof(buf));
    assert_int_equal(pm_parse_duration(buf, &b), 0);
    assert_int_equal(a, b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration_units),
      cmocka_unit_test(test_duration_bare_number_is_seconds),
      cmocka_unit_test(test_duration_compound),
      cmocka_unit_test(test_duration_fractions),
      cmocka_unit_test(test_duration_garbage),
      cmocka_unit_test(test_duration_negative),
      cmocka_unit_test(test_duration_overflow),
      cmocka_unit_test(test_duration_null),
      cmocka_unit_test(test_size_units),
      cmocka_unit_test(test_size_fractions),
      cmocka_unit_test(test_size_garbage),
      cmocka_unit_test(test_size_overflow),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_format_truncates),
      cmocka_unit_test(test_format_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

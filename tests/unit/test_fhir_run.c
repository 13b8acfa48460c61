/*
 * plugins/fhir/fhir_run: the retry delays (doubling, the cap, the jitter
 * band) and the class sums a classified bucket reports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fhir_run.h"

#define S 1000000LL

static void test_backoff_doubles_to_cap(void **state) {
  (void)state;
  uint64_t rng = 42;
  /* Without the cap: 1, 2, 4, 8, 16 s, each within +-20 %. */
  for (int a = 1; a <= 5; a++) {
    int64_t base = S << (a - 1);
    for (int i = 0; i < 200; i++) {
      int64_t d = fhir_backoff_us(a, S, 30 * S, &rng);
      assert_true(d >= base * 8 / 10);
      assert_true(d < base * 12 / 10);
    }
  }
  /* Capped at 30 s (+-20 %) however many attempts, without overflow. */
  for (int a = 6; a < 200; a += 7) {
    int64_t d = fhir_backoff_us(a, S, 30 * S, &rng);
    assert_true(d >= 24 * S);
    assert_true(d < 36 * S);
  }
}

static void test_backoff_jitter_spreads(void **state) {
  (void)state;
  /* Buckets that failed together must not all retry together: 100 draws
   * spread over most of the band. */
  uint64_t rng = 7;
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 100; i++) {
    int64_t d = fhir_backoff_us(1, 10 * S, 60 * S, &rng);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  assert_true(lo < 9 * S);
  assert_true(hi > 11 * S);
  /* A zero state still draws (xorshift would stick at 0). */
  rng = 0;
  int64_t a = fhir_backoff_us(1, 10 * S, 60 * S, &rng);
  int64_t b = fhir_backoff_us(1, 10 * S, 60 * S, &rng);
  assert_true(a != b);
}

static void test_classes_get(void **state) {
  (void)state;
  fhir_classes_t c = {.n = 2, .none = 3, .other = 4};
  strcpy(c.c[0].name, "Patient");
  c.c[0].count = 10;
  strcpy(c.c[1].name, "Practitioner");
  c.c[1].count = 5;
  assert_int_equal(fhir_classes_get(&c, "Patient"), 10);
  assert_int_equal(fhir_classes_get(&c, "Practitioner"), 5);
  assert_int_equal(fhir_classes_get(&c, "none"), 3);
  assert_int_equal(fhir_classes_get(&c, "other"), 4);
  assert_int_equal(fhir_classes_get(&c, "Device"), 0);
  assert_int_equal(fhir_classes_get(NULL, "Patient"), 0);
}

static void test_reason_names(void **state) {
  (void)state;
  /* Every reason has a distinct label value of [a-z0-9_]. */
  for (int r = 0; r < FHIR_R_COUNT; r++) {
    const char *n = fhir_reason_name(r);
    assert_non_null(n);
    assert_true(strlen(n) > 0);
    assert_int_equal(strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789_"),
                     strlen(n));
    for (int q = 0; q < r; q++)
      assert_string_not_equal(n, fhir_reason_name(q));
  }
  assert_string_equal(fhir_reason_name(-1), "failed");
  assert_string_equal(fhir_reason_name(FHIR_R_COUNT), "failed");
  assert_string_equal(fhir_reason_name(FHIR_R_RATE_LIMITED), "rate_limited");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff_doubles_to_cap),
      cmocka_unit_test(test_backoff_jitter_spreads),
      cmocka_unit_test(test_classes_get),
      cmocka_unit_test(test_reason_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Idempotency keys: a key seen within the window is a duplicate; scopes
 * (collectors) do not share keys; a cancelled reservation frees the key;
 * old keys expire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dedup.h"

#define SEC INT64_C(1000000)

static void test_dedup(void **state) {
  pm_dedup_t *d = pm_dedup_new(60 * SEC);
  uint64_t h[2];
  (void)state;

  assert_int_equal(pm_dedup_reserve(d, "hl7", "A|F|1", 5, 1000 * SEC, h), 0);
  assert_int_equal(pm_dedup_reserve(d, "hl7", "A|F|1", 5, 1001 * SEC, h), 1);
  assert_int_equal(pm_dedup_reserve(d, "other", "A|F|1", 5, 1001 * SEC, h), 0);
  assert_int_equal(pm_dedup_reserve(d, "hl7", "A|F|2", 5, 1001 * SEC, h), 0);
  pm_dedup_cancel(d, h);
  assert_int_equal(pm_dedup_reserve(d, "hl7", "A|F|2", 5, 1002 * SEC, h), 0);
  /* Past the window the key is new again. */
  assert_int_equal(pm_dedup_reserve(d, "hl7", "A|F|1", 5, 1100 * SEC, h), 0);
  pm_dedup_free(d);
}

static void test_many(void **state) {
  pm_dedup_t *d = pm_dedup_new(3600 * SEC);
  uint64_t h[2];
  char key[32];
  (void)state;

  for (int i = 0; i < 50000; i++) {
    int n = snprintf(key, sizeof(key), "k%d", i);
    assert_int_equal(pm_dedup_reserve(d, "c", key, (size_t)n, SEC + i, h), 0);
  }
  for (int i = 0; i < 50000; i += 997) {
    int n = snprintf(key, sizeof(key), "k%d", i);
    assert_int_equal(pm_dedup_reserve(d, "c", key, (size_t)n, 2 * SEC, h), 1);
  }
  pm_dedup_free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_dedup),
                                     cmocka_unit_test(test_many)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

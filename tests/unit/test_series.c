/* The series registry: one kind per series, max_series per collector,
 * the same pointer for the same series. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sample.h"
#include "series.h"

static void test_registry(void **state) {
  pm_series_registry_t *r = pm_series_registry_new();
  pm_label_t l[2] = {{"clinic", "north"}, {"collector", "epic"}};
  const pm_series_t *a, *b;
  (void)state;

  assert_int_equal(
      pm_series_intern(r, "epic", 2, "portal.messages_sent", l, 2, PM_ADD, &a),
      0);
  assert_int_equal(
      pm_series_intern(r, "epic", 2, "portal.messages_sent", l, 2, PM_ADD, &b),
      0);
  assert_ptr_equal(a, b);
  assert_int_equal(a->id, pm_series_id("portal.messages_sent", l, 2));
  assert_string_equal(a->labels_json,
                      "{\"clinic\":\"north\",\"collector\":\"epic\"}");
  assert_int_equal(
      pm_series_intern(r, "epic", 2, "portal.messages_sent", l, 2, PM_SET, &b),
      PM_EKIND);
  assert_int_equal(pm_series_intern(r, "epic", 2, "portal.lab_reports_sent", l,
                                    2, PM_SET, &b),
                   0);
  assert_int_equal(pm_series_count(r, "epic"), 2);
  assert_int_equal(pm_series_intern(r, "epic", 2, "portal.lab_reports_viewed",
                                    l, 2, PM_SET, &b),
                   PM_ESERIES);
  /* Known series still pass at the cap. */
  assert_int_equal(
      pm_series_intern(r, "epic", 2, "portal.messages_sent", l, 2, PM_ADD, &b),
      0);
  pm_series_registry_free(r);
}

static void test_growth(void **state) {
  pm_series_registry_t *r = pm_series_registry_new();
  char v[16];
  pm_label_t l[1] = {{"site", v}};
  const pm_series_t *s;
  (void)state;

  for (int i = 0; i < 20000; i++) {
    snprintf(v, sizeof(v), "s%d", i);
    assert_int_equal(pm_series_intern(r, "c", 100000, "m.x", l, 1, PM_SET, &s),
                     0);
  }
  snprintf(v, sizeof(v), "s%d", 12345);
  assert_int_equal(pm_series_intern(r, "c", 100000, "m.x", l, 1, PM_SET, &s),
                   0);
  assert_string_equal(s->labels_json, "{\"site\":\"s12345\"}");
  assert_int_equal(pm_series_count(r, "c"), 20000);
  pm_series_registry_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_registry),
                                     cmocka_unit_test(test_growth)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

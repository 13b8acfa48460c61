/* The HL7 counting rules: the defaults of DESIGN.md and the settings'
 * overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "hl7_map.h"

static hl7_msg_t msg(const char *type, const char *trigger, const char *st) {
  hl7_msg_t m;
  memset(&m, 0, sizeof m);
  strcpy(m.type, type);
  strcpy(m.trigger, trigger);
  for (const char *c = st; c && *c; c++)
    m.obr_status |= 1u << (*c - 'A');
  return m;
}

static const char *match(const hl7_map_t *map, const char *type,
                         const char *trigger, const char *st) {
  hl7_msg_t m = msg(type, trigger, st);
  return hl7_map_match(map, &m);
}

static void test_defaults(void **state) {
  hl7_map_t m;
  (void)state;
  assert_int_equal(hl7_map_init(&m), 0);
  assert_string_equal(match(&m, "SIU", "S12", NULL),
                      "portal.appointments_requested");
  assert_string_equal(match(&m, "SIU", "S15", NULL),
                      "portal.appointments_canceled");
  /* S17 is a deletion entered in error, not a cancellation */
  assert_null(match(&m, "SIU", "S17", NULL));
  assert_string_equal(match(&m, "SIU", "S26", NULL),
                      "portal.appointments_noshow");
  assert_string_equal(match(&m, "ADT", "A04", NULL),
                      "clinic.patients_registered");
  assert_null(match(&m, "ADT", "A08", NULL));
  /* results count when final or corrected, not preliminary */
  assert_string_equal(match(&m, "ORU", "R01", "F"), "portal.lab_reports_sent");
  assert_string_equal(match(&m, "ORU", "R01", "C"), "portal.lab_reports_sent");
  assert_string_equal(match(&m, "ORU", "R01", "PF"), "portal.lab_reports_sent");
  assert_null(match(&m, "ORU", "R01", "P"));
  assert_null(match(&m, "ORU", "R01", NULL));
  hl7_map_free(&m);
}

static void test_overrides(void **state) {
  hl7_map_t m;
  (void)state;
  assert_int_equal(hl7_map_init(&m), 0);
  /* replace, add, turn off */
  assert_int_equal(
      hl7_map_set(&m, "ORU", "R01", "portal.lab_reports_sent", "F"), 0);
  assert_null(match(&m, "ORU", "R01", "C"));
  assert_int_equal(
      hl7_map_set(&m, "SIU", "S14", "portal.appointments_requested", NULL), 0);
  assert_string_equal(match(&m, "SIU", "S14", NULL),
                      "portal.appointments_requested");
  assert_int_equal(hl7_map_set(&m, "SIU", "S12", "", NULL), 0);
  assert_null(match(&m, "SIU", "S12", NULL));
  /* bad codes and statuses */
  assert_int_equal(hl7_map_set(&m, "siu", "S12", "x", NULL), -2);
  assert_int_equal(hl7_map_set(&m, "SIU", "", "x", NULL), -2);
  assert_int_equal(hl7_map_set(&m, "TOOLONGTYPE", "S12", "x", NULL), -2);
  assert_int_equal(hl7_map_set(&m, "ORU", "R01", "x", "f"), -2);
  hl7_map_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_defaults),
                                     cmocka_unit_test(test_overrides)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The data model's rules (daemon/sample.h): metric names, labels,
 * timestamps, canonical label sets and the frozen series id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sample.h"

/* A string of n copies of c (static buffer per call site is enough). */
static char *repeat(char *buf, char c, size_t n) {
  memset(buf, c, n);
  buf[n] = '\0';
  return buf;
}

static void test_metric_names(void **state) {
  char buf[256];
  (void)state;

  assert_true(pm_metric_name_valid("portal.patients_enrolled"));
  assert_true(pm_metric_name_valid("a"));
  assert_true(pm_metric_name_valid("portalmetricsd.collect_duration"));
  assert_true(pm_metric_name_valid("acme.q2.depth_9"));
  assert_true(pm_metric_name_valid("a.1")); /* segments after a dot */
  assert_true(pm_metric_name_valid(repeat(buf, 'a', 128)));
  assert_false(pm_metric_name_valid(repeat(buf, 'a', 129)));

  assert_false(pm_metric_name_valid(NULL));
  assert_false(pm_metric_name_valid(""));
  assert_false(pm_metric_name_valid("Portal.enrolled")); /* uppercase */
  assert_false(pm_metric_name_valid("portal.Enrolled"));
  assert_false(pm_metric_name_valid("1portal")); /* leading digit */
  assert_false(pm_metric_name_valid("_portal"));
  assert_false(pm_metric_name_valid("portal..enrolled")); /* double dot */
  assert_false(pm_metric_name_valid("portal."));          /* trailing dot */
  assert_false(pm_metric_name_valid(".portal"));
  assert_false(pm_metric_name_valid("portal-enrolled"));
  assert_false(pm_metric_name_valid("portal enrolled"));
  assert_false(pm_metric_name_valid("portal.\xc3\xa9"));
}

static void test_label_keys(void **state) {
  char buf[128];
  (void)state;

  assert_true(pm_label_key_valid("clinic"));
  assert_true(pm_label_key_valid("a"));
  assert_true(pm_label_key_valid("site_2"));
  assert_true(pm_label_key_valid(repeat(buf, 'k', 64)));
  assert_false(pm_label_key_valid(repeat(buf, 'k', 65)));
  assert_false(pm_label_key_valid(NULL));
  assert_false(pm_label_key_valid(""));
  assert_false(pm_label_key_valid("Clinic"));
  assert_false(pm_label_key_valid("1clinic"));
  assert_false(pm_label_key_valid("_clinic"));
  assert_false(pm_label_key_valid("clinic.site")); /* no dots in keys */
  assert_false(pm_label_key_valid("clinic-site"));
  assert_false(pm_label_key_valid("clinic\n"));
}

static void test_label_values(void **state) {
  char buf[600];
  (void)state;

  assert_true(pm_label_value_valid("north"));
  assert_true(pm_label_value_valid("North Clinic #2 (main)"));
  assert_true(pm_label_value_valid("Z\xc3\xbcrich"));            /* ü */
  assert_true(pm_label_value_valid("\xe6\x97\xa5\xe6\x9c\xac")); /* 日本 */
  assert_true(pm_label_value_valid("\xf0\x9f\x8f\xa5"));         /* U+1F3E5 */

  assert_false(pm_label_value_valid(NULL));
  assert_false(pm_label_value_valid(""));
  /* Control characters, C0, DEL and C1. */
  assert_false(pm_label_value_valid("north\x01"));
  assert_false(pm_label_value_valid("north\n"));
  assert_false(pm_label_value_valid("a\tb"));
  assert_false(pm_label_value_valid("a\x7f"));
  assert_false(pm_label_value_valid("a\xc2\x85")); /* U+0085 NEL */
  /* Invalid UTF-8. */
  assert_false(pm_label_value_valid("\xff"));
  assert_false(pm_label_value_valid("a\xc3"));        /* truncated */
  assert_false(pm_label_value_valid("\xc3\x28"));     /* bad continuation */
  assert_false(pm_label_value_valid("\xc0\xaf"));     /* overlong '/' */
  assert_false(pm_label_value_valid("\xe0\x80\xaf")); /* overlong, 3 bytes */
  assert_false(pm_label_value_valid("\xed\xa0\x80")); /* surrogate */
  assert_false(pm_label_value_valid("\xf4\x90\x80\x80")); /* > U+10FFFF */
  assert_false(pm_label_value_valid("\x80")); /* lone continuation */

  /* 256 bytes, not 256 characters. */
  assert_true(pm_label_value_valid(repeat(buf, 'v', 256)));
  assert_false(pm_label_value_valid(repeat(buf, 'v', 257)));
  for (int i = 0; i < 128; i++)
    memcpy(buf + 2 * i, "\xc3\xa9", 2); /* é x 128 = 256 bytes */
  buf[256] = '\0';
  assert_true(pm_label_value_valid(buf));
  memcpy(buf + 256, "\xc3\xa9", 3); /* 258 bytes */
  assert_false(pm_label_value_valid(buf));
}

static void test_ts_range(void **state) {
  const int64_t now = INT64_C(1767225600000000); /* 2026-01-01 */
  const int64_t day = INT64_C(86400000000);
  const int64_t max_age = 400 * day;
  (void)state;

  assert_int_equal(pm_ts_check(now, now, max_age), 0);
  assert_int_equal(pm_ts_check(now - max_age, now, max_age), 0);
  assert_int_equal(pm_ts_check(now - max_age - 1, now, max_age), PM_ETS);
  assert_int_equal(pm_ts_check(now + day, now, max_age), 0);
  assert_int_equal(pm_ts_check(now + day + 1, now, max_age), PM_ETS);
  assert_int_equal(pm_ts_check(0, now, max_age), PM_ETS);
  assert_int_equal(pm_ts_check(-1, now, max_age), PM_ETS);
  assert_int_equal(pm_ts_check(INT64_MAX / 2, now, max_age), PM_ETS);
}

/* ---------------------------------------------------------------------
 * Label sets
 * ------------------------------------------------------------------- */

static void test_labelset_sorted(void **state) {
  const pm_label_t base[] = {{"site", "main"}, {"clinic", "north"}};
  const pm_label_t own[] = {{"source", "adt"}, {"bucket", "day"}};
  pm_labelset_t ls;
  (void)state;

  assert_int_equal(pm_labelset_build(&ls, base, 2, own, 2, "epic"), 0);
  assert_int_equal(ls.n, 5);
  assert_string_equal(ls.l[0].key, "bucket");
  assert_string_equal(ls.l[1].key, "clinic");
  assert_string_equal(ls.l[2].key, "collector");
  assert_string_equal(ls.l[2].value, "epic");
  assert_string_equal(ls.l[3].key, "site");
  assert_string_equal(ls.l[4].key, "source");

  /* Nothing but the collector. */
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, NULL, 0, "epic"), 0);
  assert_int_equal(ls.n, 1);
  assert_string_equal(ls.l[0].key, "collector");
}

static void test_labelset_collector_reserved(void **state) {
  const pm_label_t own[] = {{"collector", "other"}};
  pm_labelset_t ls;
  (void)state;

  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 1, "epic"), PM_ELABEL);
  assert_int_equal(pm_labelset_build(&ls, own, 1, NULL, 0, "epic"), PM_ELABEL);
}

static void test_labelset_duplicates(void **state) {
  const pm_label_t base[] = {{"clinic", "north"}};
  const pm_label_t own_dup[] = {{"clinic", "south"}};
  const pm_label_t own_twice[] = {{"site", "a"}, {"site", "a"}};
  pm_labelset_t ls;
  (void)state;

  /* A plugin cannot override a configured label... */
  assert_int_equal(pm_labelset_build(&ls, base, 1, own_dup, 1, "epic"),
                   PM_ELABEL);
  /* ...nor give one key twice, even with the same value. */
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own_twice, 2, "epic"),
                   PM_ELABEL);
}

static void test_labelset_invalid(void **state) {
  const pm_label_t bad_key[] = {{"Clinic", "north"}};
  const pm_label_t bad_value[] = {{"clinic", "no\nrth"}};
  const pm_label_t empty_value[] = {{"clinic", ""}};
  pm_labelset_t ls;
  (void)state;

  assert_int_equal(pm_labelset_build(&ls, NULL, 0, bad_key, 1, "epic"),
                   PM_ELABEL);
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, bad_value, 1, "epic"),
                   PM_ELABEL);
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, empty_value, 1, "epic"),
                   PM_ELABEL);
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, NULL, 1, "epic"), PM_ELABEL);
}

static void test_labelset_count_limit(void **state) {
  pm_label_t own[16];
  char keys[16][8];
  pm_labelset_t ls;
  (void)state;

  for (int i = 0; i < 16; i++) {
    snprintf(keys[i], sizeof(keys[i]), "k%02d", i);
    own[i].key = keys[i];
    own[i].value = "v";
  }
  /* 15 of the plugin's and collector: 16, the limit. */
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 15, "epic"), 0);
  assert_int_equal(ls.n, 16);
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 16, "epic"), PM_ELABEL);
  /* Configured and own labels count together. */
  assert_int_equal(pm_labelset_build(&ls, own, 8, own + 8, 8, "epic"),
                   PM_ELABEL);
}

static void test_labelset_bytes_limit(void **state) {
  /* Keys and values together, collector=demo included (9 + 4 bytes):
   * 13 + 9 keys of 2 bytes + 8 * 224 + 225 = 2048. */
  static char values[9][300];
  pm_label_t own[9];
  char keys[9][4];
  pm_labelset_t ls;
  (void)state;

  for (int i = 0; i < 9; i++) {
    snprintf(keys[i], sizeof(keys[i]), "k%d", i);
    own[i].key = keys[i];
    own[i].value = repeat(values[i], 'v', i == 8 ? 225 : 224);
  }
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 9, "demo"), 0);
  repeat(values[8], 'v', 226); /* 2049 */
  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 9, "demo"), PM_ELABEL);
}

/* ---------------------------------------------------------------------
 * Series id
 * ------------------------------------------------------------------- */

/*
 * The frozen algorithm of sample.h, computed independently:
 *   printf '\x00\x00\x00\x18portal.patients_enrolled'\
 *          '\x00\x00\x00\x06clinic\x00\x00\x00\x05north'\
 *          '\x00\x00\x00\x09collector\x00\x00\x00\x04demo' \
 *     | openssl dgst -sha256
 *   -> cdf5f2d18666f549 6cd6661cf547aadf...
 * first 8 bytes big-endian as int64: 0xcdf5f2d18666f549.
 * If this test fails, the ids of every stored series would change: do not
 * "fix" the constant.
 */
static void test_series_id_frozen(void **state) {
  const pm_label_t own[] = {{"clinic", "north"}};
  pm_labelset_t ls;
  (void)state;

  assert_int_equal(pm_labelset_build(&ls, NULL, 0, own, 1, "demo"), 0);
  assert_int_equal(pm_series_id("portal.patients_enrolled", ls.l, ls.n),
                   (int64_t)UINT64_C(0xcdf5f2d18666f549));
  assert_int_equal(pm_series_id("portal.patients_enrolled", ls.l, ls.n),
                   INT64_C(-3605708944923232951));
  /* No labels: printf '\x00\x00\x00\x18portal.patients_enrolled' | openssl
   * dgst -sha256 -> 7d3ae5dcff20c9d2... */
  assert_int_equal(pm_series_id("portal.patients_enrolled", NULL, 0),
                   INT64_C(0x7d3ae5dcff20c9d2));
}

static void test_series_id_label_order(void **state) {
  const pm_label_t a[] = {{"clinic", "north"}, {"site", "main"}};
  const pm_label_t b[] = {{"site", "main"}, {"clinic", "north"}};
  pm_labelset_t la, lb, lc;
  (void)state;

  assert_int_equal(pm_labelset_build(&la, a, 2, NULL, 0, "epic"), 0);
  assert_int_equal(pm_labelset_build(&lb, NULL, 0, b, 2, "epic"), 0);
  assert_int_equal(pm_labelset_build(&lc, a + 1, 1, a, 1, "epic"), 0);
  assert_int_equal(pm_series_id("portal.messages_sent", la.l, la.n),
                   pm_series_id("portal.messages_sent", lb.l, lb.n));
  assert_int_equal(pm_series_id("portal.messages_sent", la.l, la.n),
                   pm_series_id("portal.messages_sent", lc.l, lc.n));
}

static void test_series_id_distinct(void **state) {
  const pm_label_t base[] = {{"clinic", "north"}};
  const pm_label_t l_ab_c[] = {{"ab", "c"}};
  const pm_label_t l_a_bc[] = {{"a", "bc"}};
  const pm_label_t l_south[] = {{"clinic", "south"}};
  const pm_label_t l_site[] = {{"site", "north"}};
  int64_t ids[7];
  (void)state;

  ids[0] = pm_series_id("portal.messages_sent", base, 1);
  ids[1] = pm_series_id("portal.messages_sen", base, 1);
  ids[2] = pm_series_id("portal.messages_sent", l_south, 1);
  ids[3] = pm_series_id("portal.messages_sent", l_site, 1);
  ids[4] = pm_series_id("portal.messages_sent", NULL, 0);
  /* The length prefixes keep field boundaries apart. */
  ids[5] = pm_series_id("m", l_ab_c, 1);
  ids[6] = pm_series_id("m", l_a_bc, 1);
  for (int i = 0; i < 7; i++)
    for (int j = i + 1; j < 7; j++)
      if (ids[i] == ids[j])
        fail_msg("series %d and %d share id %lld", i, j, (long long)ids[i]);
}

static void test_labels_json(void **state) {
  const pm_label_t l[] = {{"clinic", "north \"A\""}, {"collector", "demo"}};
  char *s;
  (void)state;

  s = pm_labels_json(l, 2);
  assert_non_null(s);
  assert_string_equal(
      s, "{\"clinic\":\"north \\\"A\\\"\",\"collector\":\"demo\"}");
  free(s);
  s = pm_labels_json(NULL, 0);
  assert_string_equal(s, "{}");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metric_names),
      cmocka_unit_test(test_label_keys),
      cmocka_unit_test(test_label_values),
      cmocka_unit_test(test_ts_range),
      cmocka_unit_test(test_labelset_sorted),
      cmocka_unit_test(test_labelset_collector_reserved),
      cmocka_unit_test(test_labelset_duplicates),
      cmocka_unit_test(test_labelset_invalid),
      cmocka_unit_test(test_labelset_count_limit),
      cmocka_unit_test(test_labelset_bytes_limit),
      cmocka_unit_test(test_series_id_frozen),
      cmocka_unit_test(test_series_id_label_order),
      cmocka_unit_test(test_series_id_distinct),
      cmocka_unit_test(test_labels_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

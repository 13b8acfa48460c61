/*
 * plugins/fhir/fhir_bundle: search pages as servers send them (fake
 * patients), counting, classification, and every refusal, with err
 * holding nothing of the body it should not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fhir_bundle.h"

static int parse(const char *json, const char *path, fhir_page_t *p,
                 char *err) {
  fhir_classify_t cls = {path};
  return fhir_page_parse(json, strlen(json), path ? &cls : NULL, p, err,
                         FHIR_ERR_MAX + 1);
}

/* A searchset Bundle of the given entries (NULL-terminated), in buf. */
static const char *bundle(char *buf, size_t len, const char *const *entries) {
  size_t n =
      (size_t)snprintf(buf, len,
                       "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                       "\"entry\":[");
  for (size_t i = 0; entries[i]; i++)
    n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "", entries[i]);
  n += (size_t)snprintf(buf + n, len - n, "]}");
  assert_true(n < len);
  return buf;
}

static void test_total(void **state) {
  (void)state;
  const char *b = "{\"resourceType\":\"Bundle\",\"id\":\"c1\","
                  "\"meta\":{\"lastUpdated\":\"2026-11-25T10:00:00Z\"},"
                  "\"type\":\"searchset\",\"total\":1234,"
                  "\"link\":[{\"relation\":\"self\",\"url\":"
                  "\"https://e.org/fhir/Appointment?status=cancelled"
                  "&_summary=count\"}]}";
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, NULL, &p, err), FHIR_OK);
  assert_int_equal(p.has_total, 1);
  assert_int_equal(p.total, 1234);
  assert_null(p.next);
  assert_int_equal(p.matches, 0);
  assert_int_equal(p.includes, 0);
  assert_string_equal(err, "");
  fhir_page_free(&p);

  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"total\":0}",
                         NULL, &p, err),
                   FHIR_OK);
  assert_int_equal(p.has_total, 1);
  assert_int_equal(p.total, 0);
  fhir_page_free(&p);
}

#define ENTRY_MATCH(type, id)                                                  \
  "{\"fullUrl\":\"https://e.org/fhir/" type "/" id "\",\"resource\":"          \
  "{\"resourceType\":\"" type "\",\"id\":\"" id "\"},"                         \
  "\"search\":{\"mode\":\"match\"}}"

static void test_next_no_total(void **state) {
  (void)state;
  const char *next = "https://e.org/fhir?_getpages=a1b2&_getpagesoffset=2"
                     "&_count=2&_pretty=true&_bundletype=searchset";
  char b[2048];
  snprintf(b, sizeof(b),
           "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
           "\"link\":[{\"relation\":\"self\",\"url\":\"https://e.org/fhir/"
           "Appointment?_count=2\"},{\"relation\":\"next\",\"url\":\"%s\"},"
           "{\"relation\":\"next\",\"url\":\"https://elsewhere/2\"}],"
           "\"entry\":[" ENTRY_MATCH("Appointment", "a1") "," ENTRY_MATCH(
               "Appointment", "a2") "]}",
           next);
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, NULL, &p, err), FHIR_OK);
  assert_int_equal(p.has_total, 0);
  assert_int_equal(p.total, 0);
  assert_non_null(p.next);
  assert_string_equal(p.next, next); /* exactly as given, the first */
  assert_int_equal(p.matches, 2);
  fhir_page_free(&p);
  assert_null(p.next);
  fhir_page_free(&p); /* twice is fine */
  fhir_page_free(NULL);
}

static void test_modes(void **state) {
  (void)state;
  const char *b =
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":2,"
      "\"entry\":["
      "{\"resource\":{\"resourceType\":\"Appointment\",\"id\":\"a1\"},"
      "\"search\":{\"mode\":\"match\",\"score\":1}},"
      "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\"},"
      "\"search\":{\"mode\":\"include\"}},"
      "{\"resource\":{\"resourceType\":\"Appointment\",\"id\":\"a2\"}},"
      "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p2\"},"
      "\"search\":{\"mode\":\"include\"}},"
      "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{"
      "\"severity\":\"warning\",\"code\":\"informational\"}]},"
      "\"search\":{\"mode\":\"outcome\"}},"
      "{\"resource\":{\"resourceType\":\"Appointment\",\"id\":\"a3\"},"
      "\"search\":{}}"
      "]}";
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, NULL, &p, err), FHIR_OK);
  /* a1 match, a2 and a3 no mode: matches; two includes and an outcome */
  assert_int_equal(p.matches, 3);
  assert_int_equal(p.includes, 3);
  assert_int_equal(p.n_classes, 0);
  fhir_page_free(&p);

  /* An unknown mode is a shape error. */
  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"entry\":[{\"search\":{\"mode\":\"matches\"}}]}",
                         NULL, &p, err),
                   FHIR_E_SHAPE);
  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"entry\":[{\"search\":{\"mode\":1}}]}",
                         NULL, &p, err),
                   FHIR_E_SHAPE);
}

#define COMM(id, sender)                                                       \
  "{\"resource\":{\"resourceType\":\"Communication\",\"id\":\"" id "\","       \
  "\"status\":\"completed\"" sender "},\"search\":{\"mode\":\"match\"}}"
#define SENDER(ref) ",\"sender\":{\"reference\":\"" ref "\"}"

static void test_classify_sender(void **state) {
  (void)state;
  static const char *const entries[] = {
      COMM("c1", SENDER("Patient/p1")),
      COMM("c2", SENDER("Practitioner/d1")),
      COMM("c3", SENDER("https://ehr.example.org/fhir/R4/Patient/p2")),
      COMM("c4", ""),
      COMM("c5", SENDER("Patient/p3/_history/4")),
      COMM("c6", SENDER("#contained1")),
      COMM("c7", ",\"sender\":{\"display\":\"Dr. Nobody\"}"),
      COMM("c8", SENDER("urn:uuid:1b9e0f5c-0000-4000-8000-000000000000")),
      NULL};
  char buf[4096];
  const char *b = bundle(buf, sizeof(buf), entries);
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, "sender.reference", &p, err), FHIR_OK);
  assert_int_equal(p.matches, 8);
  assert_int_equal(p.n_classes, 2);
  assert_string_equal(p.classes[0].name, "Patient"); /* first seen first */
  assert_int_equal(fhir_page_class(&p, "Patient"), 3);
  assert_int_equal(fhir_page_class(&p, "Practitioner"), 1);
  assert_int_equal(fhir_page_class(&p, "none"), 2);  /* c4, c7 */
  assert_int_equal(fhir_page_class(&p, "other"), 2); /* c6, c8 */
  assert_int_equal(fhir_page_class(&p, "RelatedPerson"), 0);
  fhir_page_free(&p);

  /* Reference.type as the path: a bare type is its own class. */
  static const char *const typed[] = {
      COMM("c1", ",\"sender\":{\"type\":\"Patient\",\"identifier\":{"
                 "\"value\":\"x\"}}"),
      NULL};
  char tbuf[1024];
  const char *t = bundle(tbuf, sizeof(tbuf), typed);
  assert_int_equal(parse(t, "sender.type", &p, err), FHIR_OK);
  assert_int_equal(fhir_page_class(&p, "Patient"), 1);
  fhir_page_free(&p);

  /* Without a classification: no classes at all. */
  assert_int_equal(parse(b, NULL, &p, err), FHIR_OK);
  assert_int_equal(p.n_classes, 0);
  assert_int_equal(p.none + p.other, 0);
  fhir_page_free(&p);
}

static void test_classify_array(void **state) {
  (void)state;
  static const char *const entries[] = {
      COMM("c1", ",\"recipient\":[{\"reference\":\"Patient/p1\"}]"),
      COMM("c2", ",\"recipient\":[{\"reference\":\"Practitioner/d1\"},"
                 "{\"reference\":\"Patient/p2\"},"
                 "{\"reference\":\"Patient/p3\"}]"),
      COMM("c3", ",\"recipient\":[]"),
      COMM("c4", ",\"recipient\":{\"reference\":\"Patient/p4\"}"),
      COMM("c5", ",\"recipient\":[{\"display\":\"x\"},"
                 "{\"reference\":\"Group/g1\"}]"),
      NULL};
  char buf[4096];
  const char *b = bundle(buf, sizeof(buf), entries);
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, "recipient[].reference", &p, err), FHIR_OK);
  assert_int_equal(p.matches, 5);
  /* c2 counts once as Patient and once as Practitioner. */
  assert_int_equal(fhir_page_class(&p, "Patient"), 2);
  assert_int_equal(fhir_page_class(&p, "Practitioner"), 1);
  assert_int_equal(fhir_page_class(&p, "Group"), 1);
  /* c3 empty; c4 not an array where [] says one */
  assert_int_equal(fhir_page_class(&p, "none"), 2);
  assert_int_equal(p.other, 0);
  fhir_page_free(&p);

  /* Without [], an array finds nothing. */
  assert_int_equal(parse(b, "recipient.reference", &p, err), FHIR_OK);
  assert_int_equal(fhir_page_class(&p, "Patient"), 1); /* c4 */
  assert_int_equal(p.none, 4);
  fhir_page_free(&p);
}

static void test_classify_overflow(void **state) {
  (void)state;
  static const char *types[] = {
      "Patient",       "Practitioner", "RelatedPerson",    "Organization",
      "Device",        "Group",        "CareTeam",         "HealthcareService",
      "Location",      "Endpoint",     "PractitionerRole", "Person",
      "Substance",     "Medication",   "Specimen",         "Encounter",
      "EpisodeOfCare", "Account"};
  char b[8192];
  size_t n =
      (size_t)snprintf(b, sizeof(b),
                       "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                       "\"entry\":[");
  for (size_t i = 0; i < 18; i++)
    n += (size_t)snprintf(b + n, sizeof(b) - n,
                          "%s{\"resource\":{\"resourceType\":\"Communication\","
                          "\"sender\":{\"reference\":\"%s/x%zu\"}}}",
                          i ? "," : "", types[i], i);
  /* One more Patient: counted in its class, not in other. */
  n += (size_t)snprintf(b + n, sizeof(b) - n,
                        ",{\"resource\":{\"resourceType\":\"Communication\","
                        "\"sender\":{\"reference\":\"Patient/again\"}}}]}");
  assert_true(n < sizeof(b));
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, "sender.reference", &p, err), FHIR_OK);
  assert_int_equal(p.matches, 19);
  assert_int_equal(p.n_classes, FHIR_CLASS_MAX);
  assert_int_equal(fhir_page_class(&p, "Patient"), 2);
  assert_int_equal(fhir_page_class(&p, "Encounter"), 1);     /* the 16th */
  assert_int_equal(fhir_page_class(&p, "EpisodeOfCare"), 0); /* 17th */
  assert_int_equal(p.other, 2);
  assert_int_equal(p.none, 0);
  fhir_page_free(&p);
}

static void test_outcome(void **state) {
  (void)state;
  const char *b =
      "{\"resourceType\":\"OperationOutcome\",\"issue\":[{"
      "\"severity\":\"error\",\"code\":\"not-supported\","
      "\"details\":{\"text\":\"Unknown search parameter 'name' for "
      "Patient?name=TESTPATIENT&birthdate=1949-12-31\"},"
      "\"diagnostics\":\"GET /fhir/Patient?name=TESTPATIENT&birthdate="
      "1949-12-31 failed\"},{\"severity\":\"warning\",\"code\":\"x\"}]}";
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse(b, NULL, &p, err), FHIR_E_OUTCOME);
  assert_non_null(strstr(err, "error"));
  assert_non_null(strstr(err, "not-supported"));
  assert_null(strstr(err, "TESTPATIENT"));
  assert_null(strstr(err, "1949"));
  assert_null(strstr(err, "Patient?"));
  assert_null(p.next);
  assert_int_equal(p.matches, 0);
  fhir_page_free(&p);

  /* Odd severity/code are not echoed either. */
  assert_int_equal(parse("{\"resourceType\":\"OperationOutcome\",\"issue\":[{"
                         "\"severity\":\"Error\\nTESTPATIENT\",\"code\":7}]}",
                         NULL, &p, err),
                   FHIR_E_OUTCOME);
  assert_null(strstr(err, "TESTPATIENT"));
  assert_null(strchr(err, '\n'));
  assert_int_equal(
      parse("{\"resourceType\":\"OperationOutcome\"}", NULL, &p, err),
      FHIR_E_OUTCOME);
}

static void test_not_bundle(void **state) {
  (void)state;
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  assert_int_equal(parse("{\"resourceType\":\"Patient\",\"id\":\"p1\","
                         "\"name\":[{\"family\":\"TESTPATIENT\"}]}",
                         NULL, &p, err),
                   FHIR_E_NOT_BUNDLE);
  assert_non_null(strstr(err, "Patient"));
  assert_null(strstr(err, "TESTPATIENT"));
  assert_int_equal(
      parse("{\"resourceType\":\"<script>TESTPATIENT\"}", NULL, &p, err),
      FHIR_E_NOT_BUNDLE);
  assert_null(strstr(err, "TESTPATIENT"));
  assert_int_equal(parse("{\"total\":3}", NULL, &p, err), FHIR_E_NOT_BUNDLE);
  assert_non_null(strstr(err, "missing"));
  assert_int_equal(parse("[1,2,3]", NULL, &p, err), FHIR_E_NOT_BUNDLE);
  assert_int_equal(parse("{\"resourceType\":[\"Bundle\"]}", NULL, &p, err),
                   FHIR_E_NOT_BUNDLE);
}

static void test_bad_json(void **state) {
  (void)state;
  const char *b = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                  "\"total\":12,\"entry\":[{\"resource\":{\"name\":"
                  "\"TESTPATIENT";
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  /* Truncated at every length: never ok (a prefix that is itself valid
   * JSON cannot occur: the object closes only at the end). */
  for (size_t n = 0; n < strlen(b); n++) {
    fhir_page_t q;
    assert_int_equal(fhir_page_parse(b, n, NULL, &q, err, sizeof(err)),
                     FHIR_E_JSON);
    assert_null(strstr(err, "TESTPATIENT"));
  }
  assert_int_equal(
      parse("<html><body>502 Bad Gateway</body></html>", NULL, &p, err),
      FHIR_E_JSON);
  assert_null(strstr(err, "html"));
  assert_int_equal(parse("", NULL, &p, err), FHIR_E_JSON);
  assert_int_equal(parse("\"Bundle\"", NULL, &p, err), FHIR_E_JSON);
  /* Duplicate keys are ambiguous: refused. */
  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"total\":1,\"total\":2}",
                         NULL, &p, err),
                   FHIR_E_JSON);
  /* Not NUL-terminated: only len bytes are read. */
  const char ok[] = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"}XX";
  assert_int_equal(fhir_page_parse(ok, sizeof(ok) - 3, NULL, &p, err, 8),
                   FHIR_OK);
  assert_int_equal(fhir_page_parse(ok, sizeof(ok) - 1, NULL, &p, err, 8),
                   FHIR_E_JSON);
  assert_true(strlen(err) < 8); /* errlen honoured */
}

static void test_shape(void **state) {
  (void)state;
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  static const char *bad[] = {
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":-1}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":1.5}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":3.0}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":\"3\"}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":null}",
      "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\"}",
      "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":3}",
      "{\"resourceType\":\"Bundle\",\"total\":3}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":{}}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[3]}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[{"
      "\"resource\":[]}]}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[{"
      "\"search\":\"match\"}]}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":{}}",
      "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":[1]}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&p, 0x5a, sizeof(p));
    assert_int_equal(parse(bad[i], NULL, &p, err), FHIR_E_SHAPE);
    assert_null(p.next);
    assert_int_equal(p.has_total, 0);
    assert_true(err[0] != '\0');
  }
  assert_int_equal(parse(bad[6], NULL, &p, err), FHIR_E_SHAPE);
  assert_non_null(strstr(err, "history"));
}

static void test_next_refused(void **state) {
  (void)state;
  static const char *urls[] = {"ftp://e.org/fhir?page=2",
                               "javascript:alert(1)",
                               "/fhir?page=2",
                               "https://e.org/fhir?page=2 HTTP/1.1",
                               "https://e.org/\\r\\nX: y",
                               ""};
  char b[512];
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
    snprintf(b, sizeof(b),
             "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":"
             "[{\"relation\":\"next\",\"url\":\"%s\"}]}",
             urls[i]);
    assert_int_equal(parse(b, NULL, &p, err), FHIR_E_SHAPE);
    assert_null(p.next);
    assert_null(strstr(err, "e.org"));
  }
  /* A next link that is not a string. */
  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"link\":[{\"relation\":\"next\",\"url\":5}]}",
                         NULL, &p, err),
                   FHIR_E_SHAPE);
  /* Too long. */
  size_t big = FHIR_URL_MAX + 200;
  char *lb = malloc(big + 200);
  assert_non_null(lb);
  int n = snprintf(lb, big + 200,
                   "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                   "\"link\":[{\"relation\":\"next\",\"url\":\"https://e.org/");
  memset(lb + n, 'a', big - (size_t)n);
  strcpy(lb + big, "\"}]}");
  assert_int_equal(parse(lb, NULL, &p, err), FHIR_E_SHAPE);
  free(lb);
  /* Http, any case of scheme. */
  assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                         "\"link\":[{\"relation\":\"next\",\"url\":"
                         "\"HTTP://fhir.local/p2\"}]}",
                         NULL, &p, err),
                   FHIR_OK);
  assert_string_equal(p.next, "HTTP://fhir.local/p2");
  fhir_page_free(&p);
}

static void test_args_and_strings(void **state) {
  (void)state;
  fhir_page_t p;
  char err[FHIR_ERR_MAX + 1];
  const char *ok = "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"}";
  static const char *paths[] = {"",     ".a",  "a.",     "a..b",
                                "a[]]", "a b", "a[0].b", "a.b.c.d.e.f.g.h.i",
                                "[].a"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    assert_int_equal(parse(ok, paths[i], &p, err), FHIR_E_ARG);
  fhir_classify_t nopath = {NULL};
  assert_int_equal(fhir_page_parse(ok, strlen(ok), &nopath, &p, err, 10),
                   FHIR_E_ARG);
  assert_int_equal(fhir_page_parse(ok, strlen(ok), NULL, NULL, err, 10),
                   FHIR_E_ARG);
  assert_int_equal(fhir_page_parse(NULL, 3, NULL, &p, err, 10), FHIR_E_ARG);
  assert_int_equal(fhir_page_parse(ok, strlen(ok), NULL, &p, NULL, 0), FHIR_OK);
  assert_int_equal(parse(ok, "a.b.c.d.e.f.g.h", &p, err), FHIR_OK);

  int codes[] = {FHIR_OK,      FHIR_E_JSON, FHIR_E_NOT_BUNDLE, FHIR_E_OUTCOME,
                 FHIR_E_SHAPE, FHIR_E_ARG,  FHIR_E_NOMEM,      -99};
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    assert_non_null(fhir_err_str(codes[i]));
    assert_true(strlen(fhir_err_str(codes[i])) > 0);
  }
  assert_string_equal(fhir_err_str(FHIR_E_JSON), "malformed JSON");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_total),
      cmocka_unit_test(test_next_no_total),
      cmocka_unit_test(test_modes),
      cmocka_unit_test(test_classify_sender),
      cmocka_unit_test(test_classify_array),
      cmocka_unit_test(test_classify_overflow),
      cmocka_unit_test(test_outcome),
      cmocka_unit_test(test_not_bundle),
      cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_shape),
      cmocka_unit_test(test_next_refused),
      cmocka_unit_test(test_args_and_strings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * plugins/fhir/fhir_caps: CapabilityStatements as servers send them (the
 * test server's, tests/unit/data/fhir/caps_server.json, saved from
 * tests/fhir/server.js's /fhir/R4/metadata; a HAPI-like one,
 * caps_hapi.json), the queries of the default set against them, and the
 * refusals, with err and why holding nothing of the body or of parameter
 * values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fhir_caps.h"

#define WHY (FHIR_CAPS_ERR_MAX + 1)

static char *slurp(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof(path), "%s/fhir/%s", PM_TEST_DATA, name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n > 0);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static fhir_caps_t *load(const char *name) {
  size_t len;
  char *body = slurp(name, &len);
  fhir_caps_t *c = NULL;
  char err[WHY];
  assert_int_equal(fhir_caps_parse(body, len, &c, err, sizeof(err)), 0);
  assert_non_null(c);
  assert_string_equal(err, "");
  free(body);
  return c;
}

static int parse_str(const char *json, fhir_caps_t **c, char *err) {
  return fhir_caps_parse(json, strlen(json), c, err, WHY);
}

/* check(), asserting why is "" exactly when the answer is 0. */
static int check(const fhir_caps_t *c, const char *res, const char *params,
                 const char *date_param, char *why) {
  memset(why, 'x', WHY);
  int rc = fhir_caps_check(c, res, params, date_param, why, WHY);
  assert_non_null(memchr(why, '\0', WHY));
  if (rc == 0)
    assert_string_equal(why, "");
  else
    assert_true(why[0] != '\0');
  return rc;
}

/* The default set of the plugin (/tmp/fhir-spec.md) against the test
 * server, and what its MemoryRepository cannot do. */
static void test_server_default_set(void **state) {
  (void)state;
  fhir_caps_t *c = load("caps_server.json");
  char why[WHY];
  assert_string_equal(fhir_caps_version(c), "4.0.1");

  assert_int_equal(
      check(c, "Patient",
            "identifier=https://portal.example.org/fhir/account-id|", NULL,
            why),
      0);
  assert_int_equal(check(c, "Communication", "status=completed", "sent", why),
                   0);
  assert_int_equal(check(c, "DiagnosticReport",
                         "category=LAB&status=final,amended,corrected",
                         "issued", why),
                   0);
  assert_int_equal(check(c, "Appointment", NULL, "_lastUpdated", why), 0);
  assert_int_equal(check(c, "Appointment", "", "_lastUpdated", why), 0);
  assert_int_equal(
      check(c, "Appointment", "status=cancelled", "_lastUpdated", why), 0);
  assert_int_equal(check(c, "Appointment", "status=noshow", "date", why), 0);

  /* Appointment has no "created" search parameter in R4. */
  assert_int_equal(check(c, "Appointment", "status=booked", "created", why), 1);
  assert_string_equal(why, "parameter created is not declared for Appointment");

  /* Not listed: Binary (the server leaves it out) and a made-up type. */
  assert_int_equal(check(c, "Binary", NULL, NULL, why), 1);
  assert_string_equal(why, "resource Binary is not listed");
  assert_int_equal(check(c, "PortalMessage", "status=sent", "sent", why), 1);
  assert_string_equal(why, "resource PortalMessage is not listed");

  /* The matcher has no quantity parameters, and no _has. */
  assert_int_equal(check(c, "Observation", "value-quantity=gt5", NULL, why), 1);
  assert_string_equal(
      why, "parameter value-quantity is not declared for Observation");
  assert_int_equal(check(c, "Communication",
                         "_has:Observation:patient:code=1234-5", NULL, why),
                   1);
  assert_string_equal(why, "parameter _has is not declared for Communication");
  fhir_caps_free(c);
}

/* Modifiers and chains are cut off; result and common parameters need no
 * declaration. */
static void test_modifiers_chains(void **state) {
  (void)state;
  fhir_caps_t *c = load("caps_server.json");
  char why[WHY];
  assert_int_equal(check(c, "Communication",
                         "sender:missing=false&recipient:Patient=p1"
                         "&status:not=entered-in-error",
                         "sent", why),
                   0);
  assert_int_equal(check(c, "Communication",
                         "subject.identifier=urn:oid:1.2.3|42"
                         "&subject:Patient.name=x&sender:Patient.identifier=y",
                         NULL, why),
                   0);
  /* A value's ':' and '.' are no modifier or chain. */
  assert_int_equal(check(c, "DiagnosticReport",
                         "category=http://terminology.hl7.org/CodeSystem/"
                         "v2-0074|LAB&code:text=a.b:c",
                         "issued", why),
                   0);
  assert_int_equal(
      check(c, "Communication",
            "_count=100&_summary=count&_total=accurate"
            "&_sort=-sent&_elements=id,sent&_include=Communication:"
            "sender&_revinclude=Provenance:target&_contained=both"
            "&_containedType=container&_format=json&_pretty=true",
            "sent", why),
      0);
  assert_int_equal(check(c, "Appointment",
                         "_id=a1&_lastUpdated=ge2026-01-01&_tag=t&_profile=p"
                         "&_security=s&_source=src",
                         NULL, why),
                   0);
  /* Leading '?', empty pieces and a trailing '&' hold no parameter. */
  assert_int_equal(
      check(c, "Appointment", "?&status=booked&&date=ge2026&", NULL, why), 0);
  /* A name without a value. */
  assert_int_equal(check(c, "Appointment", "status", NULL, why), 0);
  /* Undeclared after the cut: the base name is what why names. */
  assert_int_equal(
      check(c, "Communication", "priority:not=routine", "sent", why), 1);
  assert_string_equal(why,
                      "parameter priority is not declared for Communication");
  assert_int_equal(
      check(c, "Communication", "status=completed", "occurrence.date", why), 1);
  assert_string_equal(why,
                      "parameter occurrence is not declared for Communication");
  /* Names are case-sensitive, as in FHIR. */
  assert_int_equal(check(c, "Appointment", "Status=booked", NULL, why), 1);
  assert_string_equal(why, "parameter Status is not declared for Appointment");
  fhir_caps_free(c);
}

/* A HAPI-like statement: a client rest entry first, interaction lists,
 * rest-level parameters. */
static void test_hapi(void **state) {
  (void)state;
  fhir_caps_t *c = load("caps_hapi.json");
  char why[WHY];
  assert_string_equal(fhir_caps_version(c), "4.0.1");
  assert_int_equal(check(c, "Appointment", "status=noshow", "date", why), 0);
  assert_int_equal(
      check(c, "Appointment", "status=cancelled", "_lastUpdated", why), 0);
  assert_int_equal(check(c, "Communication", "status=completed", "sent", why),
                   0);
  assert_int_equal(check(c, "DiagnosticReport",
                         "category=LAB&status=final,amended,corrected",
                         "issued", why),
                   0);
  assert_int_equal(
      check(c, "Patient", "identifier=https://p.example/id|", NULL, why), 0);
  assert_int_equal(check(c, "Appointment", NULL, "created", why), 1);
  assert_string_equal(why, "parameter created is not declared for Appointment");

  /* Rest-level parameters count for every resource. */
  assert_int_equal(
      check(c, "Appointment", "_text=annual&_content=x&_list=l1", NULL, why),
      0);
  assert_int_equal(check(c, "Communication",
                         "_has:Observation:patient:code=1234-5", NULL, why),
                   0);

  /* Observation lists interactions, without search-type. */
  assert_int_equal(check(c, "Observation", "code=1234-5", "date", why), 1);
  assert_string_equal(why, "no search-type interaction on Observation");
  assert_int_equal(check(c, "OperationDefinition", NULL, NULL, why), 1);
  assert_string_equal(why, "no search-type interaction on OperationDefinition");

  /* Practitioner lists no interaction at all: taken to allow search. */
  assert_int_equal(check(c, "Practitioner", "name=Smith", "_lastUpdated", why),
                   0);
  assert_int_equal(check(c, "Practitioner", "family=Smith", NULL, why), 1);

  /* Binary is only in the client rest entry, which is not read. */
  assert_int_equal(check(c, "Binary", NULL, NULL, why), 1);
  assert_string_equal(why, "resource Binary is not listed");
  fhir_caps_free(c);
}

/* Which rest entry is read; types listed twice; what is skipped. */
static void test_rest_choice(void **state) {
  (void)state;
  fhir_caps_t *c;
  char err[WHY], why[WHY];

  /* No mode "server": the first object entry. */
  assert_int_equal(
      parse_str("{\"resourceType\":\"CapabilityStatement\",\"rest\":[7,"
                "{\"mode\":\"client\",\"resource\":[{\"type\":\"Patient\"}]},"
                "{\"resource\":[{\"type\":\"Appointment\"}]}]}",
                &c, err),
      0);
  assert_string_equal(fhir_caps_version(c), "");
  assert_int_equal(check(c, "Patient", NULL, NULL, why), 0);
  assert_int_equal(check(c, "Appointment", NULL, NULL, why), 1);
  fhir_caps_free(c);

  /* Merged duplicates; invalid types and names ignored; an empty
   * interaction list allows search; no resource list: nothing listed. */
  assert_int_equal(
      parse_str(
          "{\"resourceType\":\"CapabilityStatement\",\"fhirVersion\":\"4.0.1"
          " <b>\",\"rest\":[{\"mode\":\"server\",\"resource\":["
          "{\"type\":\"Appointment\",\"interaction\":[{\"code\":\"read\"}],"
          "\"searchParam\":[{\"name\":\"status\"}]},"
          "{\"type\":\"Appointment\",\"interaction\":[{\"code\":\"search-type\""
          "}],\"searchParam\":[{\"name\":\"date\"},{\"name\":\"bad name\"},"
          "{\"name\":\"\"},{\"name\":7},{\"nom\":\"x\"},\"actor\",null]},"
          "{\"type\":\"appointment\"},{\"type\":\"Bad-Type\"},{\"type\":1},"
          "{\"type\":\"Slot\",\"interaction\":[]},"
          "{\"type\":\"Schedule\",\"interaction\":\"search-type\"},"
          "{\"type\":\"Task\",\"interaction\":[{\"code\":\"Search-Type\"},"
          "{\"code\":5},\"search-type\"]}],"
          "\"searchParam\":[{\"name\":\"_text\"},{\"name\":\"x y\"}]}]}",
          &c, err),
      0);
  assert_string_equal(fhir_caps_version(c), "");
  assert_int_equal(
      check(c, "Appointment", "status=booked&_text=x", "date", why), 0);
  assert_int_equal(check(c, "Appointment", "actor=a", NULL, why), 1);
  assert_int_equal(check(c, "Slot", NULL, "_lastUpdated", why), 0);
  assert_int_equal(check(c, "Schedule", "_text=y", NULL, why), 0);
  assert_int_equal(check(c, "Task", NULL, NULL, why), 1);
  assert_string_equal(why, "no search-type interaction on Task");
  fhir_caps_free(c);

  assert_int_equal(
      parse_str("{\"resourceType\":\"CapabilityStatement\",\"fhirVersion\":"
                "\"4.3.0\",\"rest\":[{\"mode\":\"server\"}]}",
                &c, err),
      0);
  assert_string_equal(fhir_caps_version(c), "4.3.0");
  assert_int_equal(check(c, "Patient", NULL, NULL, why), 1);
  assert_string_equal(why, "resource Patient is not listed");
  fhir_caps_free(c);
}

/* Malformed names: 1, and why never holds a value. */
static void test_malformed_names(void **state) {
  (void)state;
  fhir_caps_t *c = load("caps_server.json");
  char why[WHY];

  assert_int_equal(check(c, "Patient", "=Jane", NULL, why), 1);
  assert_string_equal(why, "parameter '' is malformed");
  assert_int_equal(
      check(c, "Patient", "identifier=MRN|4711&:missing=true", NULL, why), 1);
  assert_string_equal(why, "parameter ':missing' is malformed");
  assert_int_equal(check(c, "Patient", "name=Jane&.family=Doe", NULL, why), 1);
  assert_string_equal(why, "parameter '.family' is malformed");
  /* Not echoed: the name itself may be anything. */
  assert_int_equal(
      check(c, "Patient", "identifier=MRN|4711&family name=Doe", NULL, why), 1);
  assert_string_equal(why, "parameter #2 has a malformed name");
  assert_int_equal(
      check(c, "Patient", "name%3Aexact=Jane&identifier=MRN|4711", NULL, why),
      1);
  assert_string_equal(why, "parameter #1 has a malformed name");
  assert_int_equal(check(c, "Patient", "n\xc3\xa4me=J\n", NULL, why), 1);
  assert_string_equal(why, "parameter #1 has a malformed name");
  /* 64 bytes is a name; 65 is not. */
  char q[200];
  snprintf(q, sizeof(q), "%064d=1", 0);
  q[0] = 'a';
  assert_int_equal(check(c, "Patient", q, NULL, why), 1);
  assert_non_null(strstr(why, " is not declared for Patient"));
  snprintf(q, sizeof(q), "a%064d=1", 0);
  assert_int_equal(check(c, "Patient", q, NULL, why), 1);
  assert_string_equal(why, "parameter #1 has a malformed name");
  /* The date parameter, likewise. */
  assert_int_equal(check(c, "Communication", NULL, "sent date", why), 1);
  assert_string_equal(why, "the date parameter has a malformed name");
  assert_int_equal(check(c, "Communication", NULL, ":sent", why), 1);
  assert_string_equal(why, "parameter ':sent' is malformed");
  /* A malformed name is reported even for a resource that is fine. */
  assert_int_equal(
      check(c, "Communication", "status=completed&=x", "sent", why), 1);
  fhir_caps_free(c);
}

static void test_invalid_args(void **state) {
  (void)state;
  fhir_caps_t *c = load("caps_server.json");
  char why[WHY];
  assert_int_equal(fhir_caps_check(NULL, "Patient", NULL, NULL, why, WHY), -1);
  assert_string_equal(why, "invalid arguments");
  assert_int_equal(fhir_caps_check(c, NULL, NULL, NULL, why, WHY), -1);
  assert_int_equal(fhir_caps_check(c, "patient", NULL, NULL, why, WHY), -1);
  assert_int_equal(fhir_caps_check(c, "", NULL, NULL, why, WHY), -1);
  assert_int_equal(fhir_caps_check(c, "Pat ient", NULL, NULL, why, WHY), -1);
  assert_string_equal(why, "invalid resource type");
  /* No room for why is no error; a short why is cut, terminated. */
  assert_int_equal(fhir_caps_check(c, "Appointment", NULL, "created", NULL, 0),
                   1);
  char small[8];
  memset(small, 'x', sizeof(small));
  assert_int_equal(
      fhir_caps_check(c, "Appointment", NULL, "created", small, sizeof(small)),
      1);
  assert_string_equal(small, "paramet");
  assert_string_equal(fhir_caps_version(NULL), "");
  fhir_caps_free(NULL);
  fhir_caps_free(c);
}

/* Refusals: err names the reason, never body text beyond a resourceType. */
static void test_parse_errors(void **state) {
  (void)state;
  fhir_caps_t *c = (fhir_caps_t *)(uintptr_t)1;
  char err[WHY];

  assert_int_equal(
      parse_str("{\"resourceType\":\"CapabilityStatement\",\"rest\":[{\"mode\""
                ":\"server\",\"x\":\"Jane Doe MRN4711",
                &c, err),
      -1);
  assert_null(c);
  assert_non_null(strstr(err, "malformed JSON at byte "));
  assert_null(strstr(err, "Jane"));
  assert_null(strstr(err, "4711"));
  assert_null(strstr(err, "mode"));

  /* Only a position (where jansson stopped: after the bad token). */
  assert_int_equal(parse_str("{\"a\":SECRET}", &c, err), -1);
  int pos = -1, end = 0;
  assert_int_equal(sscanf(err, "malformed JSON at byte %d%n", &pos, &end), 1);
  assert_int_equal((size_t)end, strlen(err));
  assert_in_range(pos, 5, 12);
  assert_int_equal(fhir_caps_parse("", 0, &c, err, WHY), -1);
  assert_non_null(strstr(err, "malformed JSON at byte "));
  assert_int_equal(fhir_caps_parse(NULL, 0, &c, err, WHY), -1);
  assert_int_equal(fhir_caps_parse(NULL, 3, &c, err, WHY), -1);
  assert_int_equal(fhir_caps_parse("{}", 2, NULL, err, WHY), -1);
  /* Trailing garbage, and a NUL inside. */
  assert_int_equal(parse_str("{\"resourceType\":\"CapabilityStatement\","
                             "\"rest\":[{}]} x",
                             &c, err),
                   -1);
  assert_int_equal(fhir_caps_parse("{\"rest\":[{}]}\0{}", 15, &c, err, WHY),
                   -1);
  assert_null(c);

  /* A search Bundle, an OperationOutcome, a patient. */
  assert_int_equal(
      parse_str("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                "\"total\":0,\"rest\":[{\"mode\":\"server\"}]}",
                &c, err),
      -1);
  assert_string_equal(err, "not a CapabilityStatement (resourceType Bundle)");
  assert_int_equal(
      parse_str("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity"
                "\":\"error\",\"code\":\"security\"}]}",
                &c, err),
      -1);
  assert_string_equal(err, "not a CapabilityStatement (resourceType "
                           "OperationOutcome)");
  assert_int_equal(
      parse_str("{\"resourceType\":\"Jane Doe 1970-01-01\"}", &c, err), -1);
  assert_string_equal(err, "not a CapabilityStatement");
  assert_int_equal(
      parse_str("{\"resourceType\":\"Conformance\",\"rest\":[{}]}", &c, err),
      -1);
  assert_string_equal(err,
                      "not a CapabilityStatement (resourceType Conformance)");
  assert_int_equal(parse_str("{\"rest\":[{}]}", &c, err), -1);
  assert_string_equal(err, "not a CapabilityStatement");
  assert_int_equal(
      parse_str("[{\"resourceType\":\"CapabilityStatement\"}]", &c, err), -1);
  assert_string_equal(err, "not a CapabilityStatement (no JSON object)");
  assert_int_equal(parse_str("\"CapabilityStatement\"", &c, err), -1);
  assert_null(c);

  /* No rest entry to read. */
  static const char *const norest[] = {
      "{\"resourceType\":\"CapabilityStatement\",\"fhirVersion\":\"4.0.1\"}",
      "{\"resourceType\":\"CapabilityStatement\",\"rest\":[]}",
      "{\"resourceType\":\"CapabilityStatement\",\"rest\":{\"mode\":"
      "\"server\"}}",
      "{\"resourceType\":\"CapabilityStatement\",\"rest\":[1,\"server\",null,"
      "[]]}",
  };
  for (size_t i = 0; i < sizeof(norest) / sizeof(norest[0]); i++) {
    assert_int_equal(parse_str(norest[i], &c, err), -1);
    assert_string_equal(err, "CapabilityStatement has no rest entry");
    assert_null(c);
  }

  /* A short err is cut and terminated; none at all is fine. */
  char small[10];
  assert_int_equal(fhir_caps_parse("{\"resourceType\":\"Bundle\"}", 25, &c,
                                   small, sizeof(small)),
                   -1);
  assert_string_equal(small, "not a Cap");
  assert_int_equal(
      fhir_caps_parse("{\"resourceType\":\"Bundle\"}", 25, &c, NULL, 0), -1);
}

/* Resource type number i as [A-Z][a-z]+, distinct for each i. */
static void type_name(size_t i, char *out) {
  out[0] = 'T';
  size_t n = 1;
  do {
    out[n++] = (char)('a' + i % 26);
    i /= 26;
  } while (i);
  out[n] = '\0';
}

typedef struct gbuf {
  char *p;
  size_t used, cap;
} gbuf_t;

static void gput(gbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void gput(gbuf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->used, b->cap - b->used, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if ((size_t)n < b->cap - b->used) {
      b->used += (size_t)n;
      return;
    }
    b->cap = b->cap * 2 + (size_t)n;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
}

/* More than is kept: the first 256 types, 512 parameters each and at the
 * rest level; 64-byte names; all else ignored, no crash, no error. */
static void test_bounds(void **state) {
  (void)state;
  gbuf_t b = {malloc(1024), 0, 1024};
  assert_non_null(b.p);
  char t[16];
  gput(&b, "{\"resourceType\":\"CapabilityStatement\",\"fhirVersion\":\"");
  for (int i = 0; i < 1000; i++)
    gput(&b, "4");
  gput(&b, "\",\"rest\":[{\"mode\":\"server\",\"resource\":[");
  for (size_t i = 0; i < 1000; i++) {
    type_name(i, t);
    gput(&b, "%s{\"type\":\"%s\",\"searchParam\":[", i ? "," : "", t);
    size_t np = i == 0 || i == 255 ? 5000 : 2;
    for (size_t j = 0; j < np; j++)
      gput(&b, "%s{\"name\":\"p%zu\",\"type\":\"token\"}", j ? "," : "", j);
    if (i == 1)
      gput(&b, ",{\"name\":\"a%063d\"},{\"name\":\"b%064d\"}", 0, 0);
    gput(&b, "]}");
  }
  gput(&b, "],\"searchParam\":[");
  for (size_t j = 0; j < 3000; j++)
    gput(&b, "%s{\"name\":\"r%zu\"}", j ? "," : "", j);
  gput(&b, "]}]}");

  fhir_caps_t *c;
  char err[WHY], why[WHY];
  assert_int_equal(fhir_caps_parse(b.p, b.used, &c, err, WHY), 0);
  assert_string_equal(fhir_caps_version(c), "");

  type_name(0, t);
  assert_int_equal(check(c, t, "p0=1&p511=1&r0=1&r511=1", "p1", why), 0);
  assert_int_equal(check(c, t, "p512=1", NULL, why), 1);
  assert_non_null(strstr(why, "parameter p512 is not declared for Ta"));
  assert_int_equal(check(c, t, "r512=1", NULL, why), 1);
  type_name(255, t);
  assert_int_equal(check(c, t, "p511=x", NULL, why), 0);
  type_name(256, t);
  assert_int_equal(check(c, t, "p0=1", NULL, why), 1);
  assert_non_null(strstr(why, " is not listed"));
  type_name(999, t);
  assert_int_equal(check(c, t, NULL, NULL, why), 1);

  char q[200];
  type_name(1, t);
  snprintf(q, sizeof(q), "a%063d=1", 0);
  assert_int_equal(check(c, t, q, NULL, why), 0);
  snprintf(q, sizeof(q), "b%063d=1", 0); /* the 65-byte one, cut short */
  assert_int_equal(check(c, t, q, NULL, why), 1);
  fhir_caps_free(c);

  /* Deep nesting: jansson's depth limit, an error at a position. */
  b.used = 0;
  gput(&b, "{\"resourceType\":\"CapabilityStatement\",\"rest\":[");
  for (int i = 0; i < 100000; i++)
    gput(&b, "[");
  assert_int_equal(fhir_caps_parse(b.p, b.used, &c, err, WHY), -1);
  assert_non_null(strstr(err, "malformed JSON at byte "));

  /* Long names and strings everywhere: nothing of them kept or echoed. */
  b.used = 0;
  gput(&b, "{\"resourceType\":\"");
  for (int i = 0; i < 100000; i++)
    gput(&b, "B");
  gput(&b, "\"}");
  assert_int_equal(fhir_caps_parse(b.p, b.used, &c, err, WHY), -1);
  assert_string_equal(err, "not a CapabilityStatement");
  free(b.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_default_set),
      cmocka_unit_test(test_modifiers_chains),
      cmocka_unit_test(test_hapi),
      cmocka_unit_test(test_rest_choice),
      cmocka_unit_test(test_malformed_names),
      cmocka_unit_test(test_invalid_args),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

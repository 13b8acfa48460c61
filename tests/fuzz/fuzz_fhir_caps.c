/*
 * CapabilityStatements (plugins/fhir/fhir_caps.h). The input is a
 * /metadata body, optionally followed by a NUL and a query as
 * "Resource?params#date_param" ('?' and '#' parts optional). The body is
 * parsed; the default set of queries, and the query from the tail, are
 * checked against what was parsed. Oracles beyond "no crash, no leak":
 *  - parse returns 0 with a statement, or -1 with none; err is
 *    NUL-terminated within errlen and FHIR_CAPS_ERR_MAX, and holds only
 *    [A-Za-z0-9 ()] (a position, a resourceType, fixed words: no quoted
 *    body text);
 *  - the version is "" or [A-Za-z0-9.-]{1,32};
 *  - check returns 0 (why ""), 1 (why set) or, only for an invalid
 *    resource type, -1; why is NUL-terminated within whylen, and holds
 *    only [A-Za-z0-9_.:'# -] (names and fixed words, never a value: no
 *    '=', '&', '|', '%');
 *  - the same check twice gives the same answer; a result parameter
 *    (_count) changes nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir_caps.h"

#define TAIL_MAX 512

static void check_text(const char *s, size_t len, const char *extra) {
  const char *nul = memchr(s, '\0', len);
  if (!nul || (size_t)(nul - s) > FHIR_CAPS_ERR_MAX)
    abort();
  for (const char *c = s; c < nul; c++) {
    unsigned char u = (unsigned char)*c;
    if (!((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') ||
          (u >= '0' && u <= '9') || u == ' ' || strchr(extra, u)) ||
        u == '\0')
      abort();
  }
}

/* One check into a heap why of whylen bytes; the oracles above. */
static int check_one(const fhir_caps_t *c, const char *res, const char *params,
                     const char *date, size_t whylen) {
  char *why = malloc(whylen);
  if (!why)
    abort();
  memset(why, 'x', whylen);
  int rc = fhir_caps_check(c, res, params, date, why, whylen);
  check_text(why, whylen, "_.:'#-");
  if (rc < -1 || rc > 1)
    abort();
  /* why is "" exactly when the answer is yes (given room for a reason). */
  if (whylen > 1 && (rc == 0) != (why[0] == '\0'))
    abort();
  if (rc == -1) {
    /* Only an invalid resource type is an invalid argument here. */
    size_t n = strlen(res);
    int valid = n >= 1 && n <= 64 && res[0] >= 'A' && res[0] <= 'Z';
    for (size_t i = 0; valid && i < n; i++)
      valid =
          (res[i] >= 'A' && res[i] <= 'Z') || (res[i] >= 'a' && res[i] <= 'z');
    if (valid)
      abort();
  }
  if (fhir_caps_check(c, res, params, date, NULL, 0) != rc)
    abort();
  free(why);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const fixed[][3] = {
      {"Patient", "identifier=https://portal.example.org/fhir/account-id|",
       NULL},
      {"Communication", "status=completed", "sent"},
      {"DiagnosticReport", "category=LAB&status=final,amended,corrected",
       "issued"},
      {"Appointment", NULL, "_lastUpdated"},
      {"Appointment", "status=cancelled", "_lastUpdated"},
      {"Appointment", "status=noshow", "date"},
      {"Appointment", "sender:missing=true&subject.identifier=a|b", "created"},
  };
  const char *body = (const char *)data;
  const uint8_t *sep = memchr(data, '\0', size);
  size_t blen = sep ? (size_t)(sep - data) : size;

  size_t errlen = 1 + size % (FHIR_CAPS_ERR_MAX + 20);
  char *err = malloc(errlen);
  if (!err)
    abort();
  fhir_caps_t *c = (fhir_caps_t *)(uintptr_t)1;
  int rc = fhir_caps_parse(body, blen, &c, err, errlen);
  check_text(err, errlen, "()");
  free(err);
  if (rc == -1) {
    if (c)
      abort();
    return 0;
  }
  if (rc != 0 || !c)
    abort();

  const char *v = fhir_caps_version(c);
  size_t vl = strlen(v);
  if (vl > 32)
    abort();
  for (size_t i = 0; i < vl; i++)
    if (!((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') ||
          (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '-'))
      abort();

  size_t whylen = 1 + size % (FHIR_CAPS_ERR_MAX + 20);
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    int r = check_one(c, fixed[i][0], fixed[i][1], fixed[i][2], whylen);
    if (r == -1)
      abort();
    if (check_one(c, fixed[i][0], fixed[i][1], fixed[i][2],
                  FHIR_CAPS_ERR_MAX + 1) != r)
      abort();
  }

  /* The tail: "Resource?params#date_param", also as params of a fixed
   * resource so that the parameter parser sees it whatever the type. */
  if (sep) {
    char tail[TAIL_MAX + 1];
    size_t tl = size - blen - 1;
    if (tl > TAIL_MAX)
      tl = TAIL_MAX;
    memcpy(tail, sep + 1, tl);
    tail[tl] = '\0';
    char whole[TAIL_MAX + 1];
    memcpy(whole, tail, tl + 1);

    const char *params = NULL, *date = NULL;
    char *hash = strchr(tail, '#');
    if (hash) {
      *hash = '\0';
      date = hash + 1;
    }
    char *q = strchr(tail, '?');
    if (q) {
      *q = '\0';
      params = q + 1;
    }
    int r = check_one(c, tail, params, date, whylen);
    if (r == 0) {
      /* A result parameter needs no declaration. */
      char more[TAIL_MAX + 16];
      snprintf(more, sizeof(more), "%s&_count=5", params ? params : "");
      if (check_one(c, tail, more, date, whylen) != 0)
        abort();
    }
    check_one(c, "Appointment", whole, NULL, whylen);
    check_one(c, "Communication", params, whole, whylen);
  }
  fhir_caps_free(c);
  return 0;
}

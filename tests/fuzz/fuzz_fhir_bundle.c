/*
 * FHIR search pages (plugins/fhir/fhir_bundle.h), and the input as a URL
 * and as search parameters (fhir_query.h). The input is one response
 * body as received. Oracles beyond "no crash, no leak":
 *  - the code is FHIR_OK or a known FHIR_E_*; err is NUL-terminated
 *    within errlen and FHIR_ERR_MAX, printable ASCII only;
 *  - on error the page is zeroed (next NULL);
 *  - a classification changes nothing but the class counts: the same
 *    code, total, next, matches and includes as without;
 *  - class names are resource types ([A-Z][A-Za-z]*), distinct, at most
 *    FHIR_CLASS_MAX; each class count, none and other are at most
 *    matches, and every match is counted somewhere;
 *  - next is an http(s) URL of printable ASCII without spaces;
 *  - an origin is scheme://authority with no path, query or userinfo;
 *  - a built URL is as long as said, starts with the base and resource,
 *    holds the window, and no "#" or white space.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fhir_bundle.h"
#include "fhir_query.h"

static void check_err(const char *err, size_t errlen) {
  const char *nul = memchr(err, '\0', errlen);
  if (!nul || (size_t)(nul - err) > FHIR_ERR_MAX)
    abort();
  for (const char *c = err; c < nul; c++)
    if (*c < 0x20 || *c > 0x7e)
      abort();
}

static int is_http(const char *s) {
  return strncasecmp(s, "http://", 7) == 0 ||
         strncasecmp(s, "https://", 8) == 0;
}

static void check_page(int rc, const fhir_page_t *p, int classified) {
  if (rc > FHIR_OK || rc < FHIR_E_NOMEM || !fhir_err_str(rc))
    abort();
  if (rc != FHIR_OK) {
    if (p->next || p->has_total || p->matches || p->includes || p->n_classes ||
        p->none || p->other)
      abort();
    return;
  }
  if (p->has_total ? p->total < 0 : p->total != 0)
    abort();
  if (p->next) {
    size_t n = strlen(p->next);
    if (!is_http(p->next) || n > FHIR_URL_MAX)
      abort();
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)p->next[i] <= 0x20 ||
          (unsigned char)p->next[i] >= 0x7f)
        abort();
  }
  if (!classified) {
    if (p->n_classes || p->none || p->other)
      abort();
    return;
  }
  if (p->n_classes > FHIR_CLASS_MAX || p->none > p->matches ||
      p->other > p->matches)
    abort();
  uint64_t sum = p->none + p->other;
  for (size_t i = 0; i < p->n_classes; i++) {
    const fhir_class_count_t *c = &p->classes[i];
    if (!memchr(c->name, '\0', sizeof(c->name)) || c->count == 0 ||
        c->count > p->matches)
      abort();
    if (!(c->name[0] >= 'A' && c->name[0] <= 'Z'))
      abort();
    for (const char *s = c->name; *s; s++)
      if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        abort();
    for (size_t j = 0; j < i; j++)
      if (strcmp(p->classes[j].name, c->name) == 0)
        abort();
    if (fhir_page_class(p, c->name) != c->count)
      abort();
    sum += c->count;
  }
  if (sum < p->matches)
    abort();
}

static void check_origin(const char *s) {
  char o[128];
  if (fhir_url_origin(s, o, sizeof(o)) != 0) {
    if (o[0])
      abort();
    return;
  }
  const char *auth = strstr(o, "://");
  if (!auth || !is_http(o) || strncmp(o, "http", 4) != 0)
    abort();
  auth += 3;
  if (!*auth || strpbrk(auth, "/?#@ "))
    abort();
}

static void check_build(const char *s) {
  static fhir_window_t w;
  static int have;
  if (!have) {
    setenv("TZ", "Asia/Kolkata", 1);
    tzset();
    if (fhir_day_windows(1795581000LL * 1000000, 1, &w, 1) != 1)
      abort();
    have = 1;
  }
  char url[1024];
  const char *base = "https://e.org/fhir";
  int n =
      fhir_url_build(url, sizeof(url), base, "Communication", s, "sent", &w, s);
  if (n < 0) {
    if (url[0])
      abort();
    return;
  }
  const char *head = "https://e.org/fhir/Communication?";
  if ((size_t)n != strlen(url) || strncmp(url, head, strlen(head)) != 0 ||
      strpbrk(url, "# \t\r\n") ||
      !strstr(url, "sent=ge2026-11-25T00:00:00%2B05:30"
                   "&sent=lt2026-11-26T00:00:00%2B05:30"))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *paths[] = {"sender.reference", "recipient[].reference",
                                "subject.reference", "a[].b[].c",
                                "sender.type"};
  const char *body = (const char *)data;
  char err[FHIR_ERR_MAX + 1];
  fhir_page_t p, q;

  int rc = fhir_page_parse(body, size, NULL, &p, err, sizeof(err));
  check_err(err, sizeof(err));
  check_page(rc, &p, 0);

  /* Again with a classification, into a short heap buffer for err. */
  fhir_classify_t cls = {paths[size % (sizeof(paths) / sizeof(paths[0]))]};
  size_t errlen = 1 + size % 64;
  char *e2 = malloc(errlen);
  if (!e2)
    abort();
  int rc2 = fhir_page_parse(body, size, &cls, &q, e2, errlen);
  check_err(e2, errlen);
  free(e2);
  check_page(rc2, &q, 1);
  if (rc2 != rc || q.has_total != p.has_total || q.total != p.total ||
      q.matches != p.matches || q.includes != p.includes ||
      !q.next != !p.next || (p.next && strcmp(p.next, q.next) != 0))
    abort();
  fhir_page_free(&p);
  fhir_page_free(&q);
  if (p.next || q.next)
    abort();

  /* The input as a string: a URL, and search parameters. */
  if (size <= 4096) {
    char *s = malloc(size + 1);
    if (!s)
      abort();
    memcpy(s, data, size);
    s[size] = '\0';
    check_origin(s);
    check_build(s);
    free(s);
  }
  return 0;
}

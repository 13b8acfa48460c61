/*
 * A page of a FHIR search answer: see fhir_bundle.h.
 */
#include "fhir_bundle.h"
#include "fhir_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define PATH_STEPS 8

typedef struct step {
  char name[FHIR_PATH_MAX + 1];
  int array; /* "name[]" */
} step_t;

/* The classes one entry falls in: distinct names, bounded. */
typedef struct entry_classes {
  char names[FHIR_CLASS_MAX + 1][FHIR_CLASS_NAME_MAX + 1];
  size_t n;
  int other; /* reached a value that is not a resource type reference */
  int found; /* reached anything at all */
} entry_classes_t;

#define set_err(e, len, ...) fhir_err_set(e, len, FHIR_ERR_MAX, __VA_ARGS__)

/* s is [A-Z][A-Za-z]* (upper case first when upper, else any letter),
 * 1..FHIR_CLASS_NAME_MAX bytes. */
static int is_type_name(const char *s, size_t n, int upper) {
  if (n == 0 || n > FHIR_CLASS_NAME_MAX)
    return 0;
  if (upper && !(s[0] >= 'A' && s[0] <= 'Z'))
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
      return 0;
  }
  return 1;
}

/* A code as FHIR writes them: [a-z-]{1,32}. */
static int is_code(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'))
      return 0;
  return 1;
}

/* An id as FHIR allows: [A-Za-z0-9-.]{1,64}. */
static int is_id(const char *s, size_t n) {
  if (n == 0 || n > 64)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int parse_path(const char *path, step_t *steps, size_t *n) {
  size_t len = strlen(path);
  if (len == 0 || len > FHIR_PATH_MAX)
    return -1;
  *n = 0;
  const char *p = path;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t sl = dot ? (size_t)(dot - p) : strlen(p);
    int array = 0;
    if (sl >= 2 && p[sl - 2] == '[' && p[sl - 1] == ']') {
      array = 1;
      sl -= 2;
    }
    if (sl == 0 || *n == PATH_STEPS)
      return -1;
    for (size_t i = 0; i < sl; i++) {
      char c = p[i];
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '_'))
        return -1;
    }
    memcpy(steps[*n].name, p, sl);
    steps[*n].name[sl] = '\0';
    steps[*n].array = array;
    (*n)++;
    if (!dot)
      return 0;
    p = dot + 1;
  }
}

/*
 * The resource type a reference names, into type (FHIR_CLASS_NAME_MAX+1
 * bytes). Returns 0, or -1 when s is no reference to a resource type.
 */
static int reference_type(const char *s, char *type) {
  size_t n = strlen(s);
  if (is_type_name(s, n, 1)) { /* a bare type, as in Reference.type */
    memcpy(type, s, n + 1);
    return 0;
  }
  /* Drop a version: ".../Patient/123/_history/2". */
  const char *h = strstr(s, "/_history/");
  if (h)
    n = (size_t)(h - s);
  /* The last two segments: Type/id. */
  const char *end = s + n;
  const char *slash = NULL;
  for (const char *c = end; c > s; c--)
    if (c[-1] == '/') {
      slash = c - 1;
      break;
    }
  if (!slash || !is_id(slash + 1, (size_t)(end - slash - 1)))
    return -1;
  const char *tstart = s;
  for (const char *c = slash; c > s; c--)
    if (c[-1] == '/') {
      tstart = c;
      break;
    }
  size_t tl = (size_t)(slash - tstart);
  if (!is_type_name(tstart, tl, 1))
    return -1;
  memcpy(type, tstart, tl);
  type[tl] = '\0';
  return 0;
}

static void entry_add(entry_classes_t *ec, const json_t *v) {
  char type[FHIR_CLASS_NAME_MAX + 1];
  ec->found = 1;
  if (!json_is_string(v) || reference_type(json_string_value(v), type) != 0) {
    ec->other = 1;
    return;
  }
  for (size_t i = 0; i < ec->n; i++)
    if (strcmp(ec->names[i], type) == 0)
      return;
  if (ec->n == FHIR_CLASS_MAX + 1) { /* beyond any page's table anyway */
    ec->other = 1;
    return;
  }
  memcpy(ec->names[ec->n++], type, strlen(type) + 1);
}

/* Follow steps[i..n) from v, adding every value reached. */
static void walk(const json_t *v, const step_t *steps, size_t i, size_t n,
                 entry_classes_t *ec) {
  if (i == n) {
    entry_add(ec, v);
    return;
  }
  if (!json_is_object(v))
    return;
  const json_t *c = json_object_get(v, steps[i].name);
  if (!c)
    return;
  if (!steps[i].array) {
    if (!json_is_array(c))
      walk(c, steps, i + 1, n, ec);
    return;
  }
  if (!json_is_array(c))
    return;
  size_t k;
  const json_t *e;
  json_array_foreach(c, k, e) walk(e, steps, i + 1, n, ec);
}

/* Counts name in the page's table. Returns 0, or -1 when the table is
 * full and name not in it. */
static int page_count(fhir_page_t *p, const char *name) {
  for (size_t i = 0; i < p->n_classes; i++)
    if (strcmp(p->classes[i].name, name) == 0) {
      p->classes[i].count++;
      return 0;
    }
  if (p->n_classes == FHIR_CLASS_MAX)
    return -1;
  fhir_class_count_t *c = &p->classes[p->n_classes++];
  memcpy(c->name, name, strlen(name) + 1);
  c->count = 1;
  return 0;
}

static void classify(fhir_page_t *p, const json_t *resource,
                     const step_t *steps, size_t n) {
  entry_classes_t ec;
  ec.n = 0;
  ec.other = 0;
  ec.found = 0;
  if (resource)
    walk(resource, steps, 0, n, &ec);
  if (!ec.found) {
    p->none++;
    return;
  }
  /* Once per distinct class; other once, whichever way it came. */
  int other = ec.other;
  for (size_t i = 0; i < ec.n; i++)
    if (page_count(p, ec.names[i]) != 0)
      other = 1;
  if (other)
    p->other++;
}

/* An acceptable next link: http(s), printable non-space ASCII, bounded. */
static int next_ok(const char *url) {
  size_t n = strlen(url);
  if (n == 0 || n > FHIR_URL_MAX)
    return 0;
  if (strncasecmp(url, "http://", 7) != 0 &&
      strncasecmp(url, "https://", 8) != 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
      return 0;
  return 1;
}

static int outcome(const json_t *root, char *err, size_t errlen) {
  const json_t *issues = json_object_get(root, "issue");
  const json_t *first = json_is_array(issues) ? json_array_get(issues, 0) : 0;
  const char *sev = json_string_value(json_object_get(first, "severity"));
  const char *code = json_string_value(json_object_get(first, "code"));
  set_err(err, errlen, "OperationOutcome: severity %s, code %s",
          sev && is_code(sev) ? sev : "(none)",
          code && is_code(code) ? code : "(none)");
  return FHIR_E_OUTCOME;
}

static int shape(fhir_page_t *out, char *err, size_t errlen, const char *what) {
  fhir_page_free(out);
  set_err(err, errlen, "Bundle: %s", what);
  return FHIR_E_SHAPE;
}

static int parse_links(const json_t *root, fhir_page_t *out, char *err,
                       size_t errlen) {
  const json_t *links = json_object_get(root, "link");
  if (!links)
    return 0;
  if (!json_is_array(links))
    return shape(out, err, errlen, "link is not an array");
  size_t i;
  const json_t *l;
  json_array_foreach(links, i, l) {
    if (!json_is_object(l))
      return shape(out, err, errlen, "a link is not an object");
    const json_t *rel = json_object_get(l, "relation");
    if (!json_is_string(rel) || strcmp(json_string_value(rel), "next") != 0)
      continue;
    if (out->next)
      continue; /* the first next link counts */
    const json_t *url = json_object_get(l, "url");
    if (!json_is_string(url) || !next_ok(json_string_value(url)))
      return shape(out, err, errlen, "next link is not an http(s) URL");
    out->next = strdup(json_string_value(url));
    if (!out->next) {
      set_err(err, errlen, "out of memory");
      return FHIR_E_NOMEM;
    }
  }
  return 0;
}

static int parse_entries(const json_t *root, const step_t *steps, size_t nsteps,
                         fhir_page_t *out, char *err, size_t errlen) {
  const json_t *entries = json_object_get(root, "entry");
  if (!entries)
    return 0;
  if (!json_is_array(entries))
    return shape(out, err, errlen, "entry is not an array");
  size_t i;
  const json_t *e;
  json_array_foreach(entries, i, e) {
    if (!json_is_object(e))
      return shape(out, err, errlen, "an entry is not an object");
    const json_t *search = json_object_get(e, "search");
    const json_t *mode = NULL;
    if (search) {
      if (!json_is_object(search))
        return shape(out, err, errlen, "an entry.search is not an object");
      mode = json_object_get(search, "mode");
      if (mode && !json_is_string(mode))
        return shape(out, err, errlen, "an entry.search.mode is not a code");
    }
    const json_t *resource = json_object_get(e, "resource");
    if (resource && !json_is_object(resource))
      return shape(out, err, errlen, "an entry.resource is not an object");
    const char *m = mode ? json_string_value(mode) : "match";
    if (strcmp(m, "include") == 0 || strcmp(m, "outcome") == 0) {
      out->includes++;
      continue;
    }
    if (strcmp(m, "match") != 0)
      return shape(out, err, errlen, "an entry.search.mode is unknown");
    out->matches++;
    if (nsteps)
      classify(out, resource, steps, nsteps);
  }
  return 0;
}

int fhir_page_parse(const char *body, size_t len, const fhir_classify_t *cls,
                    fhir_page_t *out, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!out)
    return FHIR_E_ARG;
  memset(out, 0, sizeof(*out));
  if (!body && len) {
    set_err(err, errlen, "no body");
    return FHIR_E_ARG;
  }

  step_t steps[PATH_STEPS];
  size_t nsteps = 0;
  if (cls && (!cls->path || parse_path(cls->path, steps, &nsteps) != 0)) {
    set_err(err, errlen, "invalid classification path");
    return FHIR_E_ARG;
  }

  json_error_t je;
  json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    /* Not je.text: it quotes the input near the error. */
    set_err(err, errlen, "malformed JSON at byte %d of %zu", je.position, len);
    return FHIR_E_JSON;
  }

  int rc = FHIR_OK;
  const json_t *rt = json_object_get(root, "resourceType");
  const char *type = json_string_value(rt);
  if (!json_is_object(root)) {
    set_err(err, errlen, "not a Bundle: a JSON %s",
            json_is_array(root) ? "array" : "scalar");
    rc = FHIR_E_NOT_BUNDLE;
  } else if (type && strcmp(type, "OperationOutcome") == 0) {
    rc = outcome(root, err, errlen);
  } else if (!type || strcmp(type, "Bundle") != 0) {
    set_err(err, errlen, "not a Bundle: resourceType %s",
            !rt                                           ? "missing"
            : type && is_type_name(type, strlen(type), 0) ? type
                                                          : "invalid");
    rc = FHIR_E_NOT_BUNDLE;
  } else {
    const char *bt = json_string_value(json_object_get(root, "type"));
    const json_t *total = json_object_get(root, "total");
    if (!bt || strcmp(bt, "searchset") != 0) {
      set_err(err, errlen, "Bundle: type is %s, not searchset",
              !bt           ? "missing"
              : is_code(bt) ? bt
                            : "invalid");
      rc = FHIR_E_SHAPE;
    } else if (total &&
               (!json_is_integer(total) || json_integer_value(total) < 0)) {
      set_err(err, errlen, "Bundle: total is not an integer >= 0");
      rc = FHIR_E_SHAPE;
    } else {
      if (total) {
        out->has_total = 1;
        out->total = (int64_t)json_integer_value(total);
      }
      rc = parse_links(root, out, err, errlen);
      if (rc == FHIR_OK)
        rc = parse_entries(root, steps, nsteps, out, err, errlen);
    }
  }
  json_decref(root);
  if (rc != FHIR_OK)
    fhir_page_free(out);
  return rc;
}

void fhir_page_free(fhir_page_t *p) {
  if (!p)
    return;
  free(p->next);
  memset(p, 0, sizeof(*p));
}

uint64_t fhir_page_class(const fhir_page_t *p, const char *name) {
  if (!p || !name)
    return 0;
  if (strcmp(name, "none") == 0)
    return p->none;
  if (strcmp(name, "other") == 0)
    return p->other;
  for (size_t i = 0; i < p->n_classes; i++)
    if (strcmp(p->classes[i].name, name) == 0)
      return p->classes[i].count;
  return 0;
}

const char *fhir_err_str(int code) {
  switch (code) {
  case FHIR_OK:
    return "ok";
  case FHIR_E_JSON:
    return "malformed JSON";
  case FHIR_E_NOT_BUNDLE:
    return "not a Bundle";
  case FHIR_E_OUTCOME:
    return "OperationOutcome";
  case FHIR_E_SHAPE:
    return "Bundle of the wrong shape";
  case FHIR_E_ARG:
    return "invalid argument";
  case FHIR_E_NOMEM:
    return "out of memory";
  default:
    return "unknown error";
  }
}

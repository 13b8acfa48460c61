/*
 * A server's CapabilityStatement: see fhir_caps.h.
 *
 * Memory stays bounded whatever the server sends: at most CAPS_RES_MAX
 * resource types, CAPS_PARAM_MAX search parameters each (and at the rest
 * level), names of at most CAPS_NAME_MAX bytes; names that are no valid
 * resource type or search parameter name are ignored. R4 has 146 resource
 * types and none with more than a few dozen search parameters.
 */
#include "fhir_caps.h"
#include "fhir_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define CAPS_RES_MAX 256
#define CAPS_PARAM_MAX 512
#define CAPS_NAME_MAX 64
#define CAPS_VERSION_MAX 32

typedef char caps_name_t[CAPS_NAME_MAX + 1];

typedef struct caps_params {
  caps_name_t *names;
  size_t n;
} caps_params_t;

typedef struct caps_res {
  caps_name_t type;
  int search_ok; /* lists search-type, or lists no interaction at all */
  caps_params_t params;
} caps_res_t;

struct fhir_caps {
  char version[CAPS_VERSION_MAX + 1];
  caps_res_t *res;
  size_t n_res;
  caps_params_t rest_params;
};

#define set_msg(e, len, ...)                                                   \
  fhir_err_set(e, len, FHIR_CAPS_ERR_MAX, __VA_ARGS__)

static int is_alpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* A resource type: [A-Z][A-Za-z]{0,63}. */
static int is_type_name(const char *s, size_t n) {
  if (n == 0 || n > CAPS_NAME_MAX || !(s[0] >= 'A' && s[0] <= 'Z'))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_alpha(s[i]))
      return 0;
  return 1;
}

/* A search parameter's base name: [A-Za-z0-9_-]{1,64}. */
static int is_param_name(const char *s, size_t n) {
  if (n == 0 || n > CAPS_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_' || s[i] == '-'))
      return 0;
  return 1;
}

/* A name as written in a query, fit to repeat in why: [A-Za-z0-9_.:-]{0,64}
 * (config text, never a value, so no patient data). */
static int is_echoable(const char *s, size_t n) {
  if (n > CAPS_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_' || s[i] == '-' ||
          s[i] == '.' || s[i] == ':'))
      return 0;
  return 1;
}

/* A version as servers write it ("4.0.1"): [A-Za-z0-9.-]{1,32}. */
static int is_version(const char *s, size_t n) {
  if (n == 0 || n > CAPS_VERSION_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '.' || s[i] == '-'))
      return 0;
  return 1;
}

/* s names a JSON string member of o with a string value; its length. */
static const char *member_str(json_t *o, const char *key, size_t *n) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v))
    return NULL;
  *n = json_string_length(v);
  return json_string_value(v);
}

static void params_free(caps_params_t *p) {
  free(p->names);
  p->names = NULL;
  p->n = 0;
}

/*
 * Append the valid names of a searchParam array (of {"name": ...}) to p,
 * up to CAPS_PARAM_MAX in all. Returns 0 or -1 on allocation failure.
 */
static int params_add(caps_params_t *p, json_t *arr) {
  if (!json_is_array(arr))
    return 0;
  size_t want = p->n + json_array_size(arr);
  if (want > CAPS_PARAM_MAX)
    want = CAPS_PARAM_MAX;
  if (want == p->n)
    return 0;
  caps_name_t *grown = realloc(p->names, want * sizeof(*grown));
  if (!grown)
    return -1;
  p->names = grown;
  size_t i;
  json_t *sp;
  json_array_foreach(arr, i, sp) {
    if (p->n == want)
      break;
    size_t n;
    const char *name = member_str(sp, "name", &n);
    if (!name || !is_param_name(name, n))
      continue;
    memcpy(p->names[p->n], name, n);
    p->names[p->n][n] = '\0';
    p->n++;
  }
  return 0;
}

static int params_has(const caps_params_t *p, const char *name, size_t n) {
  for (size_t i = 0; i < p->n; i++)
    if (strncmp(p->names[i], name, n) == 0 && p->names[i][n] == '\0')
      return 1;
  return 0;
}

/* The interaction list allows a type search: it holds search-type, or it
 * is absent or empty (servers often leave it out). */
static int allows_search(json_t *res) {
  json_t *arr = json_object_get(res, "interaction");
  if (!json_is_array(arr) || json_array_size(arr) == 0)
    return 1;
  size_t i;
  json_t *it;
  json_array_foreach(arr, i, it) {
    size_t n;
    const char *code = member_str(it, "code", &n);
    if (code && n == 11 && memcmp(code, "search-type", 11) == 0)
      return 1;
  }
  return 0;
}

static caps_res_t *find_res(const fhir_caps_t *c, const char *type, size_t n) {
  for (size_t i = 0; i < c->n_res; i++)
    if (strncmp(c->res[i].type, type, n) == 0 && c->res[i].type[n] == '\0')
      return &c->res[i];
  return NULL;
}

/* Keep rest.resource[]. A type listed twice is merged: a server that says
 * it can is believed. Returns 0 or -1 on allocation failure. */
static int add_resources(fhir_caps_t *c, json_t *arr) {
  if (!json_is_array(arr))
    return 0;
  size_t cap = json_array_size(arr);
  if (cap > CAPS_RES_MAX)
    cap = CAPS_RES_MAX;
  if (cap == 0)
    return 0;
  c->res = calloc(cap, sizeof(*c->res));
  if (!c->res)
    return -1;
  size_t i;
  json_t *r;
  json_array_foreach(arr, i, r) {
    size_t n;
    const char *type = member_str(r, "type", &n);
    if (!type || !is_type_name(type, n))
      continue;
    caps_res_t *e = find_res(c, type, n);
    if (!e) {
      if (c->n_res == cap)
        continue; /* full; a later duplicate may still merge */
      e = &c->res[c->n_res++];
      memcpy(e->type, type, n);
      e->type[n] = '\0';
    }
    e->search_ok |= allows_search(r);
    if (params_add(&e->params, json_object_get(r, "searchParam")) != 0)
      return -1;
  }
  return 0;
}

/* The first rest entry with mode "server", else the first one. */
static json_t *pick_rest(json_t *root) {
  json_t *rest = json_object_get(root, "rest");
  if (!json_is_array(rest))
    return NULL;
  json_t *first = NULL;
  size_t i;
  json_t *r;
  json_array_foreach(rest, i, r) {
    if (!json_is_object(r))
      continue;
    if (!first)
      first = r;
    size_t n;
    const char *mode = member_str(r, "mode", &n);
    if (mode && n == 6 && memcmp(mode, "server", 6) == 0)
      return r;
  }
  return first;
}

int fhir_caps_parse(const char *body, size_t len, fhir_caps_t **out, char *err,
                    size_t errlen) {
  set_msg(err, errlen, "%s", "");
  if (!out) {
    set_msg(err, errlen, "invalid arguments");
    return -1;
  }
  *out = NULL;
  if (!body && len) {
    set_msg(err, errlen, "invalid arguments");
    return -1;
  }

  /* jansson's error text quotes the input: only its position is used. */
  json_error_t jerr;
  json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
  if (!root) {
    set_msg(err, errlen, "malformed JSON at byte %d", jerr.position);
    return -1;
  }
  if (!json_is_object(root)) {
    set_msg(err, errlen, "not a CapabilityStatement (no JSON object)");
    json_decref(root);
    return -1;
  }
  size_t n;
  const char *rt = member_str(root, "resourceType", &n);
  if (!rt || n != 19 || memcmp(rt, "CapabilityStatement", 19) != 0) {
    if (rt && is_type_name(rt, n))
      set_msg(err, errlen, "not a CapabilityStatement (resourceType %s)", rt);
    else
      set_msg(err, errlen, "not a CapabilityStatement");
    json_decref(root);
    return -1;
  }
  json_t *rest = pick_rest(root);
  if (!rest) {
    set_msg(err, errlen, "CapabilityStatement has no rest entry");
    json_decref(root);
    return -1;
  }

  fhir_caps_t *c = calloc(1, sizeof(*c));
  if (!c) {
    set_msg(err, errlen, "out of memory");
    json_decref(root);
    return -1;
  }
  const char *ver = member_str(root, "fhirVersion", &n);
  if (ver && is_version(ver, n)) {
    memcpy(c->version, ver, n);
    c->version[n] = '\0';
  }
  if (add_resources(c, json_object_get(rest, "resource")) != 0 ||
      params_add(&c->rest_params, json_object_get(rest, "searchParam")) != 0) {
    set_msg(err, errlen, "out of memory");
    fhir_caps_free(c);
    json_decref(root);
    return -1;
  }
  json_decref(root);
  *out = c;
  return 0;
}

void fhir_caps_free(fhir_caps_t *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->n_res; i++)
    params_free(&c->res[i].params);
  free(c->res);
  params_free(&c->rest_params);
  free(c);
}

const char *fhir_caps_version(const fhir_caps_t *c) {
  return c ? c->version : "";
}

/* Names any R4 server answers without declaring them. */
static int always_allowed(const char *name, size_t n) {
  static const char *const names[] = {
      "_count",    "_summary",    "_total",       "_sort",          "_elements",
      "_include",  "_revinclude", "_contained",   "_containedType", "_format",
      "_pretty",   "_id",         "_lastUpdated", "_tag",           "_profile",
      "_security", "_source"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
      return 1;
  return 0;
}

/*
 * One parameter name as written (s, n: before any '='), numbered idx from
 * 1 (0: the date parameter). Returns 0 when the server declares it, 1 (with
 * why) when not or when the name is malformed.
 */
static int check_name(const fhir_caps_t *c, const caps_res_t *r, const char *s,
                      size_t n, size_t idx, char *why, size_t whylen) {
  size_t base = 0;
  while (base < n && s[base] != ':' && s[base] != '.')
    base++;
  if (!is_param_name(s, base)) {
    if (is_echoable(s, n))
      set_msg(why, whylen, "parameter '%.*s' is malformed", (int)n, s);
    else if (idx == 0)
      set_msg(why, whylen, "the date parameter has a malformed name");
    else
      set_msg(why, whylen, "parameter #%zu has a malformed name", idx);
    return 1;
  }
  if (always_allowed(s, base) || params_has(&r->params, s, base) ||
      params_has(&c->rest_params, s, base))
    return 0;
  set_msg(why, whylen, "parameter %.*s is not declared for %s", (int)base, s,
          r->type);
  return 1;
}

int fhir_caps_check(const fhir_caps_t *c, const char *resource,
                    const char *params, const char *date_param, char *why,
                    size_t whylen) {
  set_msg(why, whylen, "%s", "");
  if (!c || !resource) {
    set_msg(why, whylen, "invalid arguments");
    return -1;
  }
  size_t rl = strlen(resource);
  if (!is_type_name(resource, rl)) {
    set_msg(why, whylen, "invalid resource type");
    return -1;
  }
  const caps_res_t *r = find_res(c, resource, rl);
  if (!r) {
    set_msg(why, whylen, "resource %s is not listed", resource);
    return 1;
  }
  if (!r->search_ok) {
    set_msg(why, whylen, "no search-type interaction on %s", resource);
    return 1;
  }

  /* "a=1&b:missing=false": each '&'-separated piece's name; empty pieces
   * ("a=1&&b=2", a leading '?' or a trailing '&') hold no parameter, as
   * fhir_url_build trims them. */
  size_t idx = 0;
  const char *p = params ? params : "";
  if (*p == '?')
    p++;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    if (seg) {
      idx++;
      const char *eq = memchr(p, '=', seg);
      size_t n = eq ? (size_t)(eq - p) : seg;
      if (check_name(c, r, p, n, idx, why, whylen) != 0)
        return 1;
    }
    p += seg;
    if (*p == '&')
      p++;
  }
  if (date_param && *date_param) {
    size_t dl = strlen(date_param);
    if (check_name(c, r, date_param, dl, 0, why, whylen) != 0)
      return 1;
  }
  return 0;
}

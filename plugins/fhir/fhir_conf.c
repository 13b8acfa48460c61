/*
 * The fhir collector's settings and the default query set.
 *
 * The default set is what a FHIR R4 server can answer for the canonical
 * metrics (tests/fhir/SUPPORT.md has the evidence for each choice):
 * Communication has no search parameter for "the sender is some Patient",
 * so messages are paged and classified by the sender's or recipients'
 * reference type; Appointment has no "created" parameter, so requested
 * and canceled appointments are bucketed by _lastUpdated (not an event
 * date: the README says so).
 */
#include "fhir_conf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir_query.h"

static const pm_setting_decl_t auth_settings[] = {
    {"type", PM_T_STRING, "none", 0, "none | basic | bearer | smart", NULL},
    {"username", PM_T_STRING, NULL, 0, "basic: the user name", NULL},
    {"password_file", PM_T_STRING, NULL, 0,
     "basic: a file holding the password", NULL},
    {"token_file", PM_T_STRING, NULL, 0,
     "bearer: a file holding the token (read at each run)", NULL},
    {"client_id", PM_T_STRING, NULL, 0, "smart: the registered client id",
     NULL},
    {"private_key_file", PM_T_STRING, NULL, 0,
     "smart: PEM private key, RSA (RS384) or EC P-384 (ES384)", NULL},
    {"key_id", PM_T_STRING, NULL, 0,
     "smart: the key's kid in the registered JWKS", NULL},
    {"alg", PM_T_STRING, NULL, 0, "smart: RS384 | ES384 (default: the key's)",
     NULL},
    {"scopes", PM_T_STRING, "system/*.read", 0, "smart: scopes requested",
     NULL},
    {"token_url", PM_T_STRING, NULL, 0,
     "smart: the token endpoint (default: from "
     ".well-known/smart-configuration)",
     NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_fields[] = {
    {"metric", PM_T_STRING, NULL, 1, "the metric it counts", NULL},
    {"resource", PM_T_STRING, NULL, 1, "the resource type searched", NULL},
    {"params", PM_T_STRING, "", 0,
     "search parameters, URL-encoded (\"status=cancelled\")", NULL},
    {"date_param", PM_T_STRING, NULL, 0,
     "the date parameter bucketing it by local day (none: a gauge)", NULL},
    {"classify", PM_T_STRING, NULL, 0,
     "count matches by the reference type at this path "
     "(\"sender.reference\", \"recipient[].reference\"): pages",
     NULL},
    {"class", PM_T_STRING, NULL, 0,
     "with classify: the class counted (\"Patient\"; \"!Patient\": the rest)",
     NULL},
    {"class_label", PM_T_STRING, "class", 0,
     "with classify and no class: the label of each class's series", NULL},
    {"name", PM_T_STRING, NULL, 0,
     "adds the label query=<name>, so two queries may feed one metric", NULL},
    {"total", PM_T_STRING, "auto", 0,
     "auto: Bundle.total when given, else page | page: always page", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t query_item[] = {
    {"query", PM_T_GROUP, NULL, 0, "one query", query_fields},
    {NULL, 0, NULL, 0, NULL, NULL}};

const pm_setting_decl_t fhir_settings[] = {
    {"base_url", PM_T_STRING, NULL, 1,
     "the FHIR R4 base URL, e.g. https://ehr.example.org/fhir/R4", NULL},
    {"backfill", PM_T_DURATION, "30d", 0,
     "local days recomputed at each run, today included", NULL},
    {"page_size", PM_T_INT, "100", 0, "_count when paging", NULL},
    {"max_pages", PM_T_INT, "1000", 0, "pages per bucket at most", NULL},
    {"timeout", PM_T_DURATION, "30s", 0, "each HTTP request", NULL},
    {"retries", PM_T_INT, "4", 0, "retries of a failed request", NULL},
    {"backoff", PM_T_DURATION, "1s", 0, "first retry delay (doubles)", NULL},
    {"backoff_max", PM_T_DURATION, "30s", 0, "longest retry delay", NULL},
    {"retry_after_max", PM_T_DURATION, "2m", 0,
     "a longer Retry-After fails the bucket for this run", NULL},
    {"max_connections", PM_T_INT, "8", 0, "connections to the server", NULL},
    {"max_streams", PM_T_INT, "32", 0,
     "requests in flight per connection over HTTP/2", NULL},
    {"http2", PM_T_BOOL, "true", 0, "offer HTTP/2 (https)", NULL},
    {"max_response", PM_T_SIZE, "64MiB", 0, "largest response body", NULL},
    {"ca_file", PM_T_STRING, NULL, 0,
     "PEM CA bundle to verify the server (default: the system's)", NULL},
    {"check_metadata", PM_T_BOOL, "true", 0,
     "read /metadata once and warn about queries it cannot answer", NULL},
    {"portal_identifier_system", PM_T_STRING, NULL, 0,
     "the identifier system of portal accounts: adds the default "
     "portal.patients_enrolled query",
     NULL},
    {"auth", PM_T_GROUP, NULL, 0, "credentials", auth_settings},
    {"queries", PM_T_LIST, NULL, 0,
     "the searches (default: the documented default set)", query_item},
    {NULL, 0, NULL, 0, NULL, NULL}};

/* The default set; see the file comment. patients_enrolled is added only
 * with portal_identifier_system: no R4 element says "has a portal
 * account", so the site must say which identifier does. */
static const struct {
  const char *metric, *resource, *params, *date_param, *classify, *cls;
} defaults[] = {
    {"portal.secure_messages_sent", "Communication", "status=completed", "sent",
     "sender.reference", "Patient"},
    {"portal.messages_sent", "Communication", "status=completed", "sent",
     "recipient[].reference", "Patient"},
    {"portal.lab_reports_sent", "DiagnosticReport",
     "category=LAB&status=final,amended,corrected", "issued", NULL, NULL},
    {"portal.appointments_requested", "Appointment", "", "_lastUpdated", NULL,
     NULL},
    {"portal.appointments_canceled", "Appointment", "status=cancelled",
     "_lastUpdated", NULL, NULL},
    {"portal.appointments_noshow", "Appointment", "status=noshow", "date", NULL,
     NULL},
};

/* The metrics a query may feed: the canonical ones (DESIGN.md), which the
 * daemon declares itself; anything else it would refuse at emit. The
 * daemon's list is not part of the plugin ABI, hence this copy. */
static int canonical(const char *metric) {
  static const char *const names[] = {"portal.patients_enrolled",
                                      "portal.patients_used",
                                      "portal.messages_sent",
                                      "portal.secure_messages_sent",
                                      "portal.secure_messages_received",
                                      "portal.lab_reports_sent",
                                      "portal.lab_reports_viewed",
                                      "portal.appointments_requested",
                                      "portal.appointments_canceled",
                                      "clinic.patients_seen",
                                      "portal.invitations_sent",
                                      "portal.accounts_activated",
                                      "portal.appointments_noshow",
                                      "clinic.patients_registered"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(metric, names[i]) == 0)
      return 1;
  return 0;
}

static int is_type_name(const char *s) {
  size_t n = strlen(s);
  if (n < 2 || n > 64 || !isupper((unsigned char)s[0]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalpha((unsigned char)s[i]))
      return 0;
  return 1;
}

static int is_label_key(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 64 || !islower((unsigned char)s[0]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) &&
        s[i] != '_')
      return 0;
  return strcmp(s, "collector") != 0 && strcmp(s, "query") != 0;
}

static int is_name(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 64)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
      return 0;
  return 1;
}

typedef struct reader {
  const pm_host_t *h;
  pm_instance_t *inst;
  int bad;
} reader_t;

static const char *str(reader_t *r, const pm_setting_t *g, const char *key) {
  const char *v = NULL;
  if (r->h->setting_string(r->h->setting_get(g, key), &v) != 0)
    return NULL;
  return v;
}

static int64_t num(reader_t *r, const pm_setting_t *g, const char *key,
                   int64_t lo, int64_t hi) {
  int64_t v = 0;
  r->h->setting_int(r->h->setting_get(g, key), &v);
  if (v < lo || v > hi) {
    r->h->log(r->inst, PM_LOG_ERROR,
              "settings.%s: %lld is out of range (%lld to %lld)", key,
              (long long)v, (long long)lo, (long long)hi);
    r->bad = 1;
  }
  return v;
}

static int64_t dur(reader_t *r, const pm_setting_t *g, const char *key,
                   int64_t lo_us) {
  int64_t v = 0;
  r->h->setting_duration(r->h->setting_get(g, key), &v);
  if (v < lo_us) {
    r->h->log(r->inst, PM_LOG_ERROR, "settings.%s: must be at least %lld ms",
              key, (long long)(lo_us / 1000));
    r->bad = 1;
  }
  return v;
}

static char *dup_or_null(const char *s, int *nomem) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *nomem = 1;
  return d;
}

/* Check one query's strings the way the run will use them, so a mistake
 * is a config error at start, not a failed request every run. */
static void check_query(reader_t *r, const fhir_conf_t *c, size_t i,
                        const fhir_query_t *q) {
  const char *where = "settings.queries";
#define BAD(...)                                                               \
  do {                                                                         \
    char m_[300];                                                              \
    snprintf(m_, sizeof(m_), __VA_ARGS__);                                     \
    r->h->log(r->inst, PM_LOG_ERROR, "%s.[%zu].%s", where, i, m_);             \
    r->bad = 1;                                                                \
  } while (0)
  if (!canonical(q->metric) && strncmp(q->metric, "fhir.", 5) != 0)
    BAD("metric: \"%s\" is not a canonical metric (see the README's list)",
        q->metric);
  if (strncmp(q->metric, "fhir.", 5) == 0)
    BAD("metric: \"%s\": fhir.* are the collector's own metrics", q->metric);
  if (!is_type_name(q->resource))
    BAD("resource: \"%s\" is not a resource type name", q->resource);
  fhir_window_t w[1];
  if (fhir_day_windows(0, 1, w, 1) != 1)
    BAD("date_param: cannot compute a day window");
  char url[FHIR_URL_MAX];
  if (is_type_name(q->resource) &&
      fhir_url_build(url, sizeof(url), c->base_url, q->resource, q->params,
                     q->date_param, q->date_param ? w : NULL, "_count=1") < 0)
    BAD("params/date_param: not usable in a search URL (params must be "
        "URL-encoded, without spaces or '#'; date_param a parameter name)");
  if (q->classify) {
    static const char empty[] = "{\"resourceType\":\"Bundle\","
                                "\"type\":\"searchset\"}";
    fhir_page_t p;
    fhir_classify_t cls = {q->classify};
    if (fhir_page_parse(empty, sizeof(empty) - 1, &cls, &p, NULL, 0) != 0)
      BAD("classify: \"%s\" is not a path like sender.reference or "
          "recipient[].reference",
          q->classify);
    fhir_page_free(&p);
  }
  if (q->class_name && !q->classify)
    BAD("class: needs classify");
  if (q->class_name && !is_type_name(q->class_name) &&
      strcmp(q->class_name, "none") != 0 && strcmp(q->class_name, "other") != 0)
    BAD("class: \"%s%s\" is not a resource type, none or other",
        q->negate ? "!" : "", q->class_name);
  if (!is_label_key(q->class_label))
    BAD("class_label: \"%s\" is not a label key ([a-z][a-z0-9_]*, not "
        "collector or query)",
        q->class_label);
  if (q->name && !is_name(q->name))
    BAD("name: must be 1 to 64 of [A-Za-z0-9_.-]");
  for (size_t j = 0; j < i; j++) {
    const fhir_query_t *o = &c->queries[j];
    if (strcmp(o->metric, q->metric) == 0 &&
        strcmp(o->name ? o->name : "", q->name ? q->name : "") == 0)
      BAD("metric: query %zu already writes %s%s%s: give one a name", j,
          q->metric, q->name ? " with name " : "", q->name ? q->name : "");
  }
#undef BAD
}

static int set_title(fhir_query_t *q) {
  char t[256];
  if (q->name)
    snprintf(t, sizeof(t), "%s", q->name);
  else
    snprintf(t, sizeof(t), "%s (%s%s%s)", q->metric, q->resource,
             q->date_param ? " by " : "", q->date_param ? q->date_param : "");
  q->title = strdup(t);
  return q->title ? 0 : PM_ENOMEM;
}

static int read_queries(reader_t *r, const pm_setting_t *root, fhir_conf_t *c) {
  const pm_host_t *h = r->h;
  const pm_setting_t *list = h->setting_get(root, "queries");
  size_t n = list ? h->setting_count(list) : 0;
  const char *idsys = str(r, root, "portal_identifier_system");
  size_t n_def = sizeof(defaults) / sizeof(defaults[0]);
  size_t total = n ? n : n_def + (idsys ? 1 : 0);
  c->queries = calloc(total, sizeof(*c->queries));
  if (c->queries == NULL)
    return PM_ENOMEM;
  int nomem = 0;
  if (n == 0) {
    size_t k = 0;
    if (idsys) {
      fhir_query_t *q = &c->queries[k++];
      /* A token search on the system alone: "system|". The system is a
       * URI; only characters a query value may carry unencoded pass. */
      char params[600];
      snprintf(params, sizeof(params), "identifier=%s%%7C", idsys);
      q->metric = dup_or_null("portal.patients_enrolled", &nomem);
      q->resource = dup_or_null("Patient", &nomem);
      q->params = dup_or_null(params, &nomem);
      q->class_label = dup_or_null("class", &nomem);
    }
    for (size_t i = 0; i < n_def; i++) {
      fhir_query_t *q = &c->queries[k++];
      q->metric = dup_or_null(defaults[i].metric, &nomem);
      q->resource = dup_or_null(defaults[i].resource, &nomem);
      q->params = dup_or_null(defaults[i].params, &nomem);
      q->date_param = dup_or_null(defaults[i].date_param, &nomem);
      q->classify = dup_or_null(defaults[i].classify, &nomem);
      q->class_name = dup_or_null(defaults[i].cls, &nomem);
      q->class_label = dup_or_null("class", &nomem);
    }
    c->n_queries = k;
  } else {
    for (size_t i = 0; i < n; i++) {
      const pm_setting_t *g = h->setting_at(list, i);
      fhir_query_t *q = &c->queries[i];
      q->metric = dup_or_null(str(r, g, "metric"), &nomem);
      q->resource = dup_or_null(str(r, g, "resource"), &nomem);
      q->params = dup_or_null(str(r, g, "params"), &nomem);
      q->date_param = dup_or_null(str(r, g, "date_param"), &nomem);
      q->classify = dup_or_null(str(r, g, "classify"), &nomem);
      const char *cls = str(r, g, "class");
      if (cls && cls[0] == '!') {
        q->negate = 1;
        cls++;
      }
      q->class_name = dup_or_null(cls, &nomem);
      q->class_label = dup_or_null(str(r, g, "class_label"), &nomem);
      q->name = dup_or_null(str(r, g, "name"), &nomem);
      const char *tot = str(r, g, "total");
      if (tot && strcmp(tot, "page") == 0)
        q->always_page = 1;
      else if (tot && strcmp(tot, "auto") != 0) {
        h->log(r->inst, PM_LOG_ERROR,
               "settings.queries.[%zu].total: \"%s\" is not auto or page", i,
               tot);
        r->bad = 1;
      }
    }
    c->n_queries = n;
  }
  for (size_t i = 0; i < c->n_queries && !nomem; i++) {
    fhir_query_t *q = &c->queries[i];
    if (q->metric == NULL || q->resource == NULL || q->params == NULL ||
        q->class_label == NULL)
      return PM_ENOMEM;
    if (set_title(q) != 0)
      return PM_ENOMEM;
    check_query(r, c, i, q);
  }
  return nomem ? PM_ENOMEM : 0;
}

static int read_auth(reader_t *r, const pm_setting_t *root, fhir_conf_t *c) {
  const pm_setting_t *g = r->h->setting_get(root, "auth");
  fhir_auth_conf_t *a = &c->auth;
  a->base_url = c->base_url;
  a->ca_file = c->ca_file;
  a->timeout_us = c->timeout_us;
  const char *type = g ? str(r, g, "type") : "none";
  if (type == NULL || strcmp(type, "none") == 0)
    a->type = FHIR_AUTH_NONE;
  else if (strcmp(type, "basic") == 0)
    a->type = FHIR_AUTH_BASIC;
  else if (strcmp(type, "bearer") == 0)
    a->type = FHIR_AUTH_BEARER;
  else if (strcmp(type, "smart") == 0)
    a->type = FHIR_AUTH_SMART;
  else {
    r->h->log(r->inst, PM_LOG_ERROR,
              "settings.auth.type: \"%s\" is not none, basic, bearer or smart",
              type);
    r->bad = 1;
    return 0;
  }
  if (g == NULL)
    return 0;
  a->username = str(r, g, "username");
  a->password_file = str(r, g, "password_file");
  a->token_file = str(r, g, "token_file");
  a->client_id = str(r, g, "client_id");
  a->private_key_file = str(r, g, "private_key_file");
  a->key_id = str(r, g, "key_id");
  a->alg = str(r, g, "alg");
  a->scopes = str(r, g, "scopes");
  a->token_url = str(r, g, "token_url");
  return 0;
}

int fhir_conf_read(const pm_host_t *h, pm_instance_t *inst, fhir_conf_t *out) {
  memset(out, 0, sizeof(*out));
  reader_t r = {h, inst, 0};
  const pm_setting_t *root = h->settings(inst);
  const char *base = str(&r, root, "base_url");
  char probe[FHIR_URL_MAX];
  if (base == NULL ||
      fhir_url_build(probe, sizeof(probe), base, "Patient", NULL, NULL, NULL,
                     NULL) < 0 ||
      fhir_url_origin(base, out->origin, sizeof(out->origin)) != 0) {
    h->log(inst, PM_LOG_ERROR,
           "settings.base_url: not an http(s) URL without query, fragment "
           "or spaces");
    return PM_ECONFIG;
  }
  out->base_url = strdup(base);
  /* fhir_url_build drops trailing slashes; keep the base the same way, so
   * discovery and /metadata URLs come out right. */
  if (out->base_url == NULL)
    return PM_ENOMEM;
  for (size_t n = strlen(out->base_url); n > 0 && out->base_url[n - 1] == '/';
       n--)
    out->base_url[n - 1] = '\0';

  int64_t backfill = dur(&r, root, "backfill", 1);
  int64_t day = 86400LL * 1000000;
  out->backfill_days = (int)((backfill + day - 1) / day);
  if (backfill > 366 * day) {
    h->log(inst, PM_LOG_ERROR, "settings.backfill: at most 366d");
    r.bad = 1;
  }
  out->page_size = num(&r, root, "page_size", 1, 10000);
  out->max_pages = num(&r, root, "max_pages", 1, 1000000);
  out->timeout_us = dur(&r, root, "timeout", 100000);
  out->retries = num(&r, root, "retries", 0, 100);
  out->backoff_us = dur(&r, root, "backoff", 1000);
  out->backoff_max_us = dur(&r, root, "backoff_max", 1000);
  out->retry_after_max_us = dur(&r, root, "retry_after_max", 0);
  out->max_connections = num(&r, root, "max_connections", 1, 256);
  out->max_streams = num(&r, root, "max_streams", 1, 1000);
  h->setting_bool(h->setting_get(root, "http2"), &out->http2);
  h->setting_bool(h->setting_get(root, "check_metadata"), &out->check_metadata);
  h->setting_size(h->setting_get(root, "max_response"), &out->max_response);
  if (out->max_response < 1024) {
    h->log(inst, PM_LOG_ERROR, "settings.max_response: at least 1KiB");
    r.bad = 1;
  }
  const char *ca = str(&r, root, "ca_file");
  if (ca) {
    out->ca_file = strdup(ca);
    if (out->ca_file == NULL)
      return PM_ENOMEM;
  }
  int rc = read_auth(&r, root, out);
  if (rc == 0)
    rc = read_queries(&r, root, out);
  if (rc != 0)
    return rc;
  return r.bad ? PM_ECONFIG : 0;
}

void fhir_conf_free(fhir_conf_t *c) {
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n_queries; i++) {
    fhir_query_t *q = &c->queries[i];
    free(q->name);
    free(q->metric);
    free(q->resource);
    free(q->params);
    free(q->date_param);
    free(q->classify);
    free(q->class_name);
    free(q->class_label);
    free(q->title);
  }
  free(c->queries);
  free(c->base_url);
  free(c->ca_file);
  memset(c, 0, sizeof(*c));
}

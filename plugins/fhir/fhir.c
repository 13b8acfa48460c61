/*
 * The FHIR R4 poll collector: counts the canonical portal metrics with
 * FHIR searches, one local day at a time (fhir_run.c), and emits them as
 * `set` samples at each day's start, so every run recomputes the backfill
 * window and a late-arriving resource corrects its day.
 *
 * Logging is per episode: a query's failure reasons are logged when they
 * first appear and again when they clear, not at every run, and a log
 * line names a query and the server's origin, never a URL (its query
 * string may hold a patient identifier), a body or a credential.
 */
#include <portalmetrics/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fhir_auth.h"
#include "fhir_caps.h"
#include "fhir_conf.h"
#include "fhir_http.h"
#include "fhir_run.h"

#define FHIR_PLUGIN_VERSION "1.0.0"

static const pm_metric_decl_t fhir_metrics[] = {
    {"fhir.requests", PM_COUNT, "requests", "FHIR HTTP requests made"},
    {"fhir.errors", PM_COUNT, "events",
     "failed FHIR requests and refused answers, by reason"},
    {NULL, 0, NULL, NULL}};

typedef struct fhir {
  const pm_host_t *host;
  pm_instance_t *inst;
  fhir_conf_t conf;
  fhir_http_t *http;
  fhir_auth_t *auth;    /* NULL without credentials */
  int metadata_done;    /* read and checked once */
  int metadata_failing; /* the last try failed (logged once) */
  uint32_t *episode;    /* per query: reasons that failed last run */
  int auth_failing;     /* credentials failed last run (logged once) */
  int stop_failing;     /* the last run was cut short (logged once) */
  uint64_t seed;
} fhir_t;

static int should_stop(void *arg) {
  fhir_t *f = arg;
  return f->host->should_stop(f->inst);
}

static void destroy(void *self, pm_instance_t *inst) {
  (void)inst;
  fhir_t *f = self;
  if (f == NULL)
    return;
  fhir_http_free(f->http);
  fhir_auth_free(f->auth);
  fhir_conf_free(&f->conf);
  free(f->episode);
  free(f);
}

static int is_loopback_origin(const char *origin) {
  const char *h = strstr(origin, "://");
  h = h ? h + 3 : origin;
  return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0 ||
         strncmp(h, "[::1]", 5) == 0;
}

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  fhir_t *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return PM_ENOMEM;
  f->host = host;
  f->inst = inst;
  int rc = fhir_conf_read(host, inst, &f->conf);
  if (rc != 0) {
    destroy(f, inst);
    return rc;
  }
  const fhir_conf_t *c = &f->conf;
  f->episode = calloc(c->n_queries ? c->n_queries : 1, sizeof(uint32_t));
  if (f->episode == NULL) {
    destroy(f, inst);
    return PM_ENOMEM;
  }
  if (c->auth.type != FHIR_AUTH_NONE) {
    char err[FHIR_AUTH_ERR_MAX];
    rc = fhir_auth_new(&c->auth, &f->auth, err, sizeof(err));
    if (rc != 0) {
      host->log(inst, PM_LOG_ERROR, "settings.auth: %s", err);
      destroy(f, inst);
      return rc;
    }
    if (strncmp(c->origin, "http://", 7) == 0 && !is_loopback_origin(c->origin))
      host->log(inst, PM_LOG_WARNING,
                "base_url %s is plain http: credentials and counts cross the "
                "network unencrypted; use https",
                c->origin);
  }
  fhir_http_opts_t o = {.max_connections = (int)c->max_connections,
                        .max_streams = (int)c->max_streams,
                        .http2 = c->http2,
                        .timeout_us = c->timeout_us,
                        .max_response = c->max_response,
                        .ca_file = c->ca_file,
                        .user_agent =
                            "portalmetrics-fhir/" FHIR_PLUGIN_VERSION};
  rc = fhir_http_new(&o, &f->http);
  if (rc != 0) {
    destroy(f, inst);
    return rc;
  }
  f->seed = (uint64_t)host->now_us(inst) ^ (uint64_t)(uintptr_t)f;
  host->log(inst, PM_LOG_INFO, "%zu queries against %s, %d days each run",
            c->n_queries, c->origin, c->backfill_days);
  *self = f;
  return 0;
}

/* ---- /metadata: which queries the server says it cannot answer ---- */

typedef struct meta_req {
  fhir_t *f;
  int done;
  char err[FHIR_CAPS_ERR_MAX + 64];
} meta_req_t;

static void on_metadata(const fhir_http_result_t *r, void *arg) {
  meta_req_t *m = arg;
  fhir_t *f = m->f;
  const fhir_conf_t *c = &f->conf;
  if (r->code != FHIR_HTTP_OK) {
    snprintf(m->err, sizeof(m->err), "%s%s%s%s", fhir_http_code_str(r->code),
             r->detail[0] ? " (" : "", r->detail, r->detail[0] ? ")" : "");
    return;
  }
  if (r->status != 200) {
    snprintf(m->err, sizeof(m->err), "HTTP %ld", r->status);
    return;
  }
  fhir_caps_t *caps = NULL;
  char err[FHIR_CAPS_ERR_MAX + 1];
  if (fhir_caps_parse(r->body, r->len, &caps, err, sizeof(err)) != 0) {
    snprintf(m->err, sizeof(m->err), "%s", err);
    return;
  }
  m->done = 1;
  const char *v = fhir_caps_version(caps);
  if (v[0] && strncmp(v, "4.0", 3) != 0)
    f->host->log(f->inst, PM_LOG_WARNING,
                 "the server at %s says FHIR %s; this collector speaks R4 "
                 "(4.0.x)",
                 c->origin, v);
  size_t bad = 0;
  for (size_t i = 0; i < c->n_queries; i++) {
    const fhir_query_t *q = &c->queries[i];
    char why[200];
    if (fhir_caps_check(caps, q->resource, q->params, q->date_param, why,
                        sizeof(why)) == 1) {
      bad++;
      f->host->log(f->inst, PM_LOG_WARNING,
                   "query %s: the server's CapabilityStatement says it cannot "
                   "answer it (%s); a server may answer an unknown "
                   "parameter with zero matches, so its counts may be "
                   "silently zero",
                   q->title, why);
    }
  }
  f->host->log(f->inst, PM_LOG_INFO,
               "%s: CapabilityStatement read, %zu of %zu queries answerable",
               c->origin, c->n_queries - bad, c->n_queries);
  fhir_caps_free(caps);
}

static void check_metadata(fhir_t *f) {
  const fhir_conf_t *c = &f->conf;
  char url[FHIR_URL_MAX];
  snprintf(url, sizeof(url), "%s/metadata", c->base_url);
  char *hdr = NULL;
  char err[FHIR_AUTH_ERR_MAX];
  if (f->auth && fhir_auth_header(f->auth, f->host->now_us(f->inst), &hdr, err,
                                  sizeof(err)) != 0)
    return; /* the run reports credentials */
  meta_req_t m = {f, 0, ""};
  int rc = fhir_http_get(f->http, url, hdr, 0, on_metadata, &m);
  if (hdr) {
    OPENSSL_cleanse(hdr, strlen(hdr));
    free(hdr);
  }
  if (rc != 0)
    return;
  fhir_http_run(f->http, should_stop, f);
  if (m.done) {
    f->metadata_done = 1;
    f->metadata_failing = 0;
  } else if (!f->metadata_failing) {
    f->metadata_failing = 1;
    f->host->log(f->inst, PM_LOG_WARNING,
                 "%s/metadata: %s; queries are not checked against the "
                 "server's CapabilityStatement yet (tried again each run)",
                 c->origin, m.err[0] ? m.err : "stopped");
  }
}

/* ---- samples ---- */

/* A classified bucket's value for a class, or its complement. */
static uint64_t class_value(const fhir_query_t *q,
                            const fhir_bucket_result_t *b) {
  uint64_t n = fhir_classes_get(b->classes, q->class_name);
  return q->negate ? b->matches - (n < b->matches ? n : b->matches) : n;
}

static int emit_query(fhir_t *f, const fhir_run_result_t *res, size_t qi) {
  const pm_host_t *h = f->host;
  const fhir_query_t *q = &f->conf.queries[qi];
  const fhir_query_result_t *qr = &res->q[qi];
  int per_class = q->classify && !q->class_name;

  /* Per-class series: every class seen on any day of the run, with a 0
   * on the days it is absent, so a `set` overwrites a stale count. */
  const char *names[FHIR_CLASS_MAX + 2];
  size_t n_names = 1;
  if (per_class) {
    n_names = 0;
    for (size_t k = 0; k < qr->n; k++) {
      const fhir_classes_t *cl = qr->b[k].classes;
      if (!qr->b[k].ok || cl == NULL)
        continue;
      for (size_t j = 0; j < cl->n + 2; j++) {
        const char *nm = j < cl->n    ? cl->c[j].name
                         : j == cl->n ? "none"
                                      : "other";
        if (j >= cl->n && fhir_classes_get(cl, nm) == 0)
          continue;
        size_t x = 0;
        while (x < n_names && strcmp(names[x], nm) != 0)
          x++;
        if (x == n_names && n_names < FHIR_CLASS_MAX + 2)
          names[n_names++] = nm;
      }
    }
    if (n_names == 0)
      return 0;
  }
  size_t cap = qr->n * n_names;
  pm_sample_t *s = calloc(cap, sizeof(*s));
  pm_label_t *l = calloc(cap * 2, sizeof(*l));
  if (s == NULL || l == NULL) {
    free(s);
    free(l);
    return PM_ENOMEM;
  }
  size_t n = 0;
  for (size_t k = 0; k < qr->n; k++) {
    const fhir_bucket_result_t *b = &qr->b[k];
    if (!b->ok)
      continue;
    int64_t ts = q->date_param ? res->windows[k].start_us : 0;
    for (size_t j = 0; j < n_names; j++) {
      pm_label_t *ls = &l[n * 2];
      size_t nl = 0;
      if (q->name)
        ls[nl++] = (pm_label_t){"query", q->name};
      double v;
      if (per_class) {
        ls[nl++] = (pm_label_t){q->class_label, names[j]};
        v = (double)fhir_classes_get(b->classes, names[j]);
      } else {
        v = (double)(q->classify ? class_value(q, b) : b->matches);
      }
      s[n++] = (pm_sample_t){q->metric, ls, nl, ts, v, PM_SET};
    }
  }
  int rc = n ? h->emit(f->inst, s, n, NULL) : 0;
  /* PM_ESTOPPED: the run passed its deadline or the daemon is stopping;
   * collect reports that once. */
  if (rc != 0 && rc != PM_ESTOPPED)
    h->log(f->inst, PM_LOG_ERROR, "query %s: %zu samples refused: %s", q->title,
           n, h->strerror(rc));
  free(s);
  free(l);
  return rc;
}

static int emit_stats(fhir_t *f, const fhir_run_result_t *res) {
  pm_sample_t s[FHIR_R_COUNT + 1];
  pm_label_t l[FHIR_R_COUNT];
  size_t n = 0;
  s[n++] =
      (pm_sample_t){"fhir.requests", NULL, 0, 0, (double)res->requests, PM_ADD};
  for (int r = 0; r < FHIR_R_COUNT; r++) {
    if (res->errors[r] == 0)
      continue;
    l[n - 1] = (pm_label_t){"reason", fhir_reason_name(r)};
    s[n] = (pm_sample_t){"fhir.errors",          &l[n - 1], 1, 0,
                         (double)res->errors[r], PM_ADD};
    n++;
  }
  return f->host->emit(f->inst, s, n, NULL);
}

/* ---- logging per episode ---- */

static void log_episodes(fhir_t *f, const fhir_run_result_t *res) {
  const pm_host_t *h = f->host;
  const fhir_conf_t *c = &f->conf;
  if (res->auth_failed && !f->auth_failing)
    h->log(f->inst, PM_LOG_ERROR, "credentials: %s", res->auth_err);
  else if (!res->auth_failed && f->auth_failing)
    h->log(f->inst, PM_LOG_NOTICE, "credentials: working again");
  f->auth_failing = res->auth_failed;
  if (res->stopped) {
    uint64_t failed = 0, all = 0;
    for (size_t i = 0; i < c->n_queries; i++) {
      failed += res->q[i].failed;
      all += res->q[i].n;
    }
    if (!f->stop_failing)
      h->log(f->inst, PM_LOG_WARNING,
             "run stopped before it finished (its timeout passed, or the "
             "daemon is stopping): %llu of %llu buckets not counted; if "
             "this repeats, raise the collector's timeout or lower backfill",
             (unsigned long long)failed, (unsigned long long)all);
  } else if (f->stop_failing) {
    h->log(f->inst, PM_LOG_NOTICE, "run finished within its timeout again");
  }
  f->stop_failing = res->stopped;
  for (size_t i = 0; i < c->n_queries; i++) {
    const fhir_query_result_t *qr = &res->q[i];
    uint32_t mask = 0;
    for (int r = 0; r < FHIR_R_COUNT; r++)
      if (qr->errors[r])
        mask |= 1u << r;
    /* A run cut short says nothing about a query that had no error. */
    if (res->stopped && mask == 0)
      continue;
    uint32_t fresh = mask & ~f->episode[i];
    if (fresh) {
      char counts[400] = "";
      size_t off = 0;
      for (int r = 0; r < FHIR_R_COUNT && off < sizeof(counts); r++)
        if (qr->errors[r])
          off += (size_t)snprintf(
              counts + off, sizeof(counts) - off, "%s%s x%llu", off ? ", " : "",
              fhir_reason_name(r), (unsigned long long)qr->errors[r]);
      h->log(f->inst, qr->failed ? PM_LOG_ERROR : PM_LOG_WARNING,
             "query %s: %llu of %zu buckets not counted this run%s; "
             "failed requests: %s; first: %s",
             c->queries[i].title, (unsigned long long)qr->failed, qr->n,
             qr->failed ? " (their previous values stay)" : "",
             counts[0] ? counts : "none", qr->detail[0] ? qr->detail : "-");
    } else if (mask == 0 && f->episode[i] != 0) {
      h->log(f->inst, PM_LOG_NOTICE, "query %s: counted again, no errors",
             c->queries[i].title);
    }
    f->episode[i] = mask;
  }
}

static int collect(void *self, pm_instance_t *inst) {
  fhir_t *f = self;
  (void)inst;
  const fhir_conf_t *c = &f->conf;
  if (c->check_metadata && !f->metadata_done)
    check_metadata(f);

  fhir_run_result_t res;
  f->seed = f->seed * 6364136223846793005ULL + 1442695040888963407ULL;
  int rc = fhir_run(c, f->http, f->auth, f->host->now_us(f->inst), f->seed,
                    should_stop, f, &res);
  if (rc != 0) {
    f->host->log(f->inst, PM_LOG_ERROR, "run not started: %s",
                 f->host->strerror(rc));
    fhir_run_result_free(&res, c->n_queries);
    return rc;
  }
  int emit_rc = 0;
  uint64_t failed = 0;
  for (size_t i = 0; i < c->n_queries; i++) {
    int e = emit_query(f, &res, i);
    if (e != 0 && emit_rc == 0)
      emit_rc = e;
    failed += res.q[i].failed;
  }
  int e = emit_stats(f, &res);
  if (e != 0 && emit_rc == 0)
    emit_rc = e;
  log_episodes(f, &res);

  /* The run's outcome for the daemon's counters and backoff. */
  if (res.stopped)
    rc = PM_ETIMEOUT;
  else if (res.auth_failed || (failed && res.errors[FHIR_R_AUTH]))
    rc = PM_EAUTH;
  else if (failed) {
    rc = PM_EPEER;
    if (res.errors[FHIR_R_UNREACHABLE] || res.errors[FHIR_R_CONNECTION])
      rc = PM_EUNREACHABLE;
    else if (res.errors[FHIR_R_TIMEOUT])
      rc = PM_ETIMEOUT;
  } else
    rc = emit_rc;
  fhir_run_result_free(&res, c->n_queries);
  return rc;
}

static const pm_plugin_t fhir_plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "fhir",
    .version = FHIR_PLUGIN_VERSION,
    .description = "counts portal metrics with FHIR R4 searches, per local "
                   "day (SMART Backend Services, basic or bearer auth)",
    .mode = PM_POLL,
    .metrics = fhir_metrics,
    .settings = fhir_settings,
    .create = create,
    .collect = collect,
    .destroy = destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &fhir_plugin;
}

/*
 * One collection run. Each bucket (a query and a local day, or a gauge)
 * is a little state machine driven by the HTTP engine's completions:
 *
 *   COUNT: GET ...&_summary=count&_total=accurate. A Bundle.total ends
 *          the bucket; a server that gives none sends it to PAGE.
 *   PAGE:  GET ...&_count=page_size, then link[next] exactly as given,
 *          adding the match entries (and their classes) of each page.
 *          Classified and total = "page" queries start here.
 *
 * Paging queries that search the same thing (resource, parameters, date
 * parameter) and differ only in how they classify share one bucket per
 * day: the default set's two message queries page the day's
 * Communications once, and each page is classified once per query.
 *
 * A failed request is retried (same URL: counts are added only from
 * pages that were read whole, so a retry never counts twice) after
 * Retry-After or an exponential backoff with jitter; what cannot succeed
 * by retrying (a 400, an OperationOutcome, a body over max_response, a
 * next link to another origin) fails the bucket at once. A failed bucket
 * is never reported as a count: its previous value stays in the database.
 */
#include "fhir_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <strings.h>
#include <time.h>

#include <portalmetrics/plugin.h>

static const char *const reason_names[FHIR_R_COUNT] = {
    [FHIR_R_TIMEOUT] = "timeout",
    [FHIR_R_UNREACHABLE] = "unreachable",
    [FHIR_R_TLS] = "tls",
    [FHIR_R_TRUNCATED] = "truncated",
    [FHIR_R_CONNECTION] = "connection",
    [FHIR_R_TOO_LARGE] = "too_large",
    [FHIR_R_HTTP_3XX] = "http_3xx",
    [FHIR_R_HTTP_4XX] = "http_4xx",
    [FHIR_R_HTTP_5XX] = "http_5xx",
    [FHIR_R_RATE_LIMITED] = "rate_limited",
    [FHIR_R_AUTH] = "auth",
    [FHIR_R_JSON] = "json",
    [FHIR_R_NOT_BUNDLE] = "not_bundle",
    [FHIR_R_OUTCOME] = "outcome",
    [FHIR_R_SHAPE] = "shape",
    [FHIR_R_NEXT_ORIGIN] = "next_origin",
    [FHIR_R_TOO_MANY_PAGES] = "too_many_pages",
    [FHIR_R_FAILED] = "failed"};

const char *fhir_reason_name(int reason) {
  return reason >= 0 && reason < FHIR_R_COUNT ? reason_names[reason] : "failed";
}

enum { PHASE_COUNT, PHASE_PAGE };

typedef struct run run_t;

#define SHARE_MAX 8 /* queries sharing one bucket at most */

typedef struct bucket {
  run_t *run;
  size_t qi;              /* the first query: its URL */
  const fhir_window_t *w; /* NULL: a gauge */
  fhir_bucket_result_t *res;
  /* Every query the bucket counts for, qi first, and its result. */
  size_t nq;
  size_t qis[SHARE_MAX];
  fhir_bucket_result_t *ress[SHARE_MAX];
  int phase;
  char *url; /* the request in flight or waiting */
  int attempts;
  int reauthed;
} bucket_t;

struct run {
  const fhir_conf_t *c;
  fhir_http_t *http;
  fhir_auth_t *auth;
  fhir_run_result_t *out;
  uint64_t rng;
  int auth_dead; /* credentials failed this run: fail fast */
  /* The Authorization header, kept for HDR_KEEP_US: basic and bearer
   * read their secret file to make it, and a run sends hundreds of
   * requests. A SMART token is valid a minute past any fetch. */
  char *hdr;
  int64_t hdr_at_us;
};

#define HDR_KEEP_US (30 * 1000000LL)

static void drop_header(run_t *run) {
  if (run->hdr) {
    OPENSSL_cleanse(run->hdr, strlen(run->hdr));
    free(run->hdr);
    run->hdr = NULL;
  }
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

int64_t fhir_backoff_us(int attempt, int64_t backoff_us, int64_t backoff_max_us,
                        uint64_t *rng) {
  int64_t d = backoff_us;
  for (int i = 1; i < attempt && d < backoff_max_us; i++)
    d *= 2;
  if (d > backoff_max_us)
    d = backoff_max_us;
  /* +-20 %: buckets that failed together do not retry together. */
  double f = 0.8 + 0.4 * (double)(xorshift(rng) >> 11) / (double)(1ULL << 53);
  return (int64_t)((double)d * f);
}

uint64_t fhir_classes_get(const fhir_classes_t *c, const char *name) {
  if (c == NULL)
    return 0;
  if (strcmp(name, "none") == 0)
    return c->none;
  if (strcmp(name, "other") == 0)
    return c->other;
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->c[i].name, name) == 0)
      return c->c[i].count;
  return 0;
}

static void classes_add(fhir_classes_t *acc, const fhir_page_t *p) {
  acc->none += p->none;
  acc->other += p->other;
  for (size_t i = 0; i < p->n_classes; i++) {
    size_t j = 0;
    while (j < acc->n && strcmp(acc->c[j].name, p->classes[i].name) != 0)
      j++;
    if (j == acc->n) {
      if (acc->n == FHIR_CLASS_MAX) {
        acc->other += p->classes[i].count;
        continue;
      }
      acc->c[acc->n++] = p->classes[i];
      continue;
    }
    acc->c[j].count += p->classes[i].count;
  }
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_done(const fhir_http_result_t *r, void *arg);

static void bucket_fail(bucket_t *b, int reason) {
  for (size_t m = 0; m < b->nq; m++) {
    b->ress[m]->ok = 0;
    b->ress[m]->reason = reason;
    b->run->out->q[b->qis[m]].failed++;
  }
  free(b->url);
  b->url = NULL;
}

static void bucket_done(bucket_t *b) {
  for (size_t m = 0; m < b->nq; m++)
    b->ress[m]->ok = 1;
  free(b->url);
  b->url = NULL;
}

/* A failed attempt: once in fhir.errors (global), and against every query
 * the bucket counts for (their log lines and episodes). */
static void note_error(bucket_t *b, int reason, const char *detail) {
  fhir_run_result_t *o = b->run->out;
  o->errors[reason]++;
  for (size_t m = 0; m < b->nq; m++) {
    fhir_query_result_t *qr = &o->q[b->qis[m]];
    qr->errors[reason]++;
    if (qr->detail[0] == '\0')
      snprintf(qr->detail, sizeof(qr->detail), "%.16s: %.90s from %.100s",
               fhir_reason_name(reason), detail, b->run->c->origin);
  }
}

/* Queue the bucket's current URL after delay_us. On failure to queue
 * (out of memory, or the run is stopping) the bucket fails. */
static void submit(bucket_t *b, int64_t delay_us) {
  run_t *run = b->run;
  if (run->auth && run->hdr && wall_us() - run->hdr_at_us > HDR_KEEP_US)
    drop_header(run);
  if (run->auth && run->hdr == NULL) {
    if (run->auth_dead) {
      /* Counted against the query (its log line and episode), not again
       * in fhir.errors: the one failure to get credentials was. */
      for (size_t m = 0; m < b->nq; m++)
        run->out->q[b->qis[m]].errors[FHIR_R_AUTH]++;
      bucket_fail(b, FHIR_R_AUTH);
      return;
    }
    char err[FHIR_AUTH_ERR_MAX];
    run->hdr_at_us = wall_us();
    int rc = fhir_auth_header(run->auth, run->hdr_at_us, &run->hdr, err,
                              sizeof(err));
    if (rc != 0) {
      run->auth_dead = 1;
      run->out->auth_failed = 1;
      snprintf(run->out->auth_err, sizeof(run->out->auth_err), "%s", err);
      note_error(b, FHIR_R_AUTH, "no credentials");
      bucket_fail(b, FHIR_R_AUTH);
      return;
    }
  }
  int rc = fhir_http_get(run->http, b->url, run->hdr, delay_us, on_done, b);
  if (rc != 0)
    bucket_fail(b, rc == PM_ESTOPPED ? FHIR_R_TIMEOUT : FHIR_R_FAILED);
}

/* Set the bucket's URL for its phase (the first page or the count). */
static int first_url(bucket_t *b) {
  const fhir_conf_t *c = b->run->c;
  const fhir_query_t *q = &c->queries[b->qi];
  char extra[64];
  if (b->phase == PHASE_COUNT)
    snprintf(extra, sizeof(extra), "_summary=count&_total=accurate");
  else
    snprintf(extra, sizeof(extra), "_count=%lld", (long long)c->page_size);
  char *url = malloc(FHIR_URL_MAX);
  if (url == NULL)
    return PM_ENOMEM;
  if (fhir_url_build(url, FHIR_URL_MAX, c->base_url, q->resource, q->params,
                     b->w ? q->date_param : NULL, b->w, extra) < 0) {
    free(url);
    return PM_EINVAL; /* fhir_conf_read checked this: not expected */
  }
  free(b->url);
  b->url = url;
  return 0;
}

/* A failed attempt: retry when it may help and attempts are left. */
static void retry_or_fail(bucket_t *b, int reason, int retryable,
                          int64_t delay_us, const char *detail) {
  const fhir_conf_t *c = b->run->c;
  note_error(b, reason, detail);
  if (!retryable || b->attempts >= c->retries) {
    bucket_fail(b, reason);
    return;
  }
  b->attempts++;
  if (delay_us < 0)
    delay_us = fhir_backoff_us(b->attempts, c->backoff_us, c->backoff_max_us,
                               &b->run->rng);
  submit(b, delay_us);
}

static void on_page(bucket_t *b, const fhir_http_result_t *r) {
  const fhir_conf_t *c = b->run->c;
  const fhir_query_t *q = &c->queries[b->qi];
  fhir_classify_t cls = {q->classify};
  int classify = q->classify != NULL && b->phase == PHASE_PAGE;
  fhir_page_t page;
  char err[FHIR_ERR_MAX + 1];
  int rc = fhir_page_parse(r->body, r->len, classify ? &cls : NULL, &page, err,
                           sizeof(err));
  switch (rc) {
  case FHIR_OK:
    break;
  case FHIR_E_JSON:
    /* Often a proxy's page or a cut connection: worth another try. */
    retry_or_fail(b, FHIR_R_JSON, 1, -1, err);
    return;
  case FHIR_E_NOT_BUNDLE:
    retry_or_fail(b, FHIR_R_NOT_BUNDLE, 0, -1, err);
    return;
  case FHIR_E_OUTCOME:
    retry_or_fail(b, FHIR_R_OUTCOME, 0, -1, err);
    return;
  case FHIR_E_SHAPE:
    retry_or_fail(b, FHIR_R_SHAPE, 0, -1, err);
    return;
  default:
    retry_or_fail(b, FHIR_R_FAILED, 1, -1, fhir_err_str(rc));
    return;
  }
  b->attempts = 0;
  for (size_t m = 0; m < b->nq; m++)
    b->ress[m]->pages++;
  if (b->phase == PHASE_COUNT) {
    int has_total = page.has_total;
    int64_t total = page.total;
    fhir_page_free(&page);
    if (has_total) {
      for (size_t m = 0; m < b->nq; m++)
        b->ress[m]->matches = (uint64_t)total;
      bucket_done(b);
      return;
    }
    /* No total: count the entries themselves. */
    b->phase = PHASE_PAGE;
    if (first_url(b) != 0) {
      bucket_fail(b, FHIR_R_FAILED);
      return;
    }
    submit(b, 0);
    return;
  }
  for (size_t m = 0; m < b->nq; m++) {
    const fhir_query_t *qm = &c->queries[b->qis[m]];
    fhir_bucket_result_t *res = b->ress[m];
    res->matches += page.matches;
    if (res->classes == NULL)
      continue;
    if (m == 0 || (q->classify && strcmp(qm->classify, q->classify) == 0)) {
      classes_add(res->classes, &page);
      continue;
    }
    /* Another path through the same page. The body parsed once, so only
     * running out of memory can fail here. */
    fhir_classify_t clm = {qm->classify};
    fhir_page_t pm;
    int rcm = fhir_page_parse(r->body, r->len, &clm, &pm, NULL, 0);
    if (rcm == FHIR_OK)
      classes_add(res->classes, &pm);
    fhir_page_free(&pm);
    if (rcm != FHIR_OK) {
      fhir_page_free(&page);
      retry_or_fail(b, FHIR_R_FAILED, 1, -1, fhir_err_str(rcm));
      return;
    }
  }
  if (page.next == NULL) {
    fhir_page_free(&page);
    bucket_done(b);
    return;
  }
  /* The next link goes where the server says, exactly as given, but our
   * credentials go only to the origin they were configured for. */
  char origin[512];
  if (fhir_url_origin(page.next, origin, sizeof(origin)) != 0 ||
      strcasecmp(origin, c->origin) != 0) {
    retry_or_fail(b, FHIR_R_NEXT_ORIGIN, 0, -1,
                  "a next link to another origin, not followed");
  } else if (b->res->pages >= (uint64_t)c->max_pages) {
    retry_or_fail(b, FHIR_R_TOO_MANY_PAGES, 0, -1, "max_pages reached");
  } else if (strcmp(page.next, b->url) == 0) {
    retry_or_fail(b, FHIR_R_SHAPE, 0, -1, "the next link repeats the page");
  } else {
    free(b->url);
    b->url = page.next;
    page.next = NULL;
    submit(b, 0);
  }
  fhir_page_free(&page);
}

static int transport_reason(fhir_http_code_t code, int *retryable) {
  *retryable = 1;
  switch (code) {
  case FHIR_HTTP_TIMEOUT:
    return FHIR_R_TIMEOUT;
  case FHIR_HTTP_UNREACHABLE:
    return FHIR_R_UNREACHABLE;
  case FHIR_HTTP_TRUNCATED:
    return FHIR_R_TRUNCATED;
  case FHIR_HTTP_CONNECTION:
    return FHIR_R_CONNECTION;
  case FHIR_HTTP_TLS:
    *retryable = 0;
    return FHIR_R_TLS;
  case FHIR_HTTP_TOO_LARGE:
    *retryable = 0;
    return FHIR_R_TOO_LARGE;
  default:
    return FHIR_R_FAILED;
  }
}

static void on_done(const fhir_http_result_t *r, void *arg) {
  bucket_t *b = arg;
  run_t *run = b->run;
  const fhir_conf_t *c = run->c;
  char detail[160];
  if (r->code == FHIR_HTTP_STOPPED) {
    run->out->stopped = 1;
    bucket_fail(b, FHIR_R_TIMEOUT);
    return;
  }
  if (r->code != FHIR_HTTP_OK) {
    int retryable;
    int reason = transport_reason(r->code, &retryable);
    snprintf(detail, sizeof(detail), "%s", r->detail);
    retry_or_fail(b, reason, retryable, -1, detail);
    return;
  }
  long st = r->status;
  snprintf(detail, sizeof(detail), "HTTP %ld", st);
  if (st == 200) {
    on_page(b, r);
  } else if (st == 401 || st == 403) {
    /* A token the server no longer takes: one more try with a new one. */
    int again = run->auth && !b->reauthed;
    if (again) {
      fhir_auth_invalidate(run->auth);
      drop_header(run); /* the retry asks for a new one */
      b->reauthed = 1;
    }
    retry_or_fail(b, FHIR_R_AUTH, again, 0, detail);
  } else if (st == 429 || st == 503) {
    int64_t d = r->retry_after_us;
    if (d > c->retry_after_max_us) {
      snprintf(detail, sizeof(detail),
               "HTTP %ld with Retry-After %llds, over retry_after_max", st,
               (long long)(d / 1000000));
      retry_or_fail(b, FHIR_R_RATE_LIMITED, 0, -1, detail);
    } else {
      retry_or_fail(b, FHIR_R_RATE_LIMITED, 1, d, detail);
    }
  } else if (st == 408 || st >= 500) {
    retry_or_fail(b, st == 408 ? FHIR_R_TIMEOUT : FHIR_R_HTTP_5XX, 1, -1,
                  detail);
  } else if (st >= 400) {
    /* An error with an OperationOutcome says more than its status. */
    fhir_page_t p;
    char err[FHIR_ERR_MAX + 1];
    if (fhir_page_parse(r->body, r->len, NULL, &p, err, sizeof(err)) ==
        FHIR_E_OUTCOME) {
      snprintf(detail, sizeof(detail), "HTTP %ld, %.120s", st, err);
      retry_or_fail(b, FHIR_R_OUTCOME, 0, -1, detail);
    } else {
      retry_or_fail(b, FHIR_R_HTTP_4XX, 0, -1, detail);
    }
    fhir_page_free(&p);
  } else {
    retry_or_fail(b, st >= 300 && st < 400 ? FHIR_R_HTTP_3XX : FHIR_R_SHAPE, 0,
                  -1, detail);
  }
}

static int same_str(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Two paging queries that would send the same requests. */
static int same_search(const fhir_query_t *a, const fhir_query_t *b) {
  return (a->classify || a->always_page) && (b->classify || b->always_page) &&
         strcmp(a->resource, b->resource) == 0 &&
         strcmp(a->params, b->params) == 0 &&
         same_str(a->date_param, b->date_param);
}

int fhir_run(const fhir_conf_t *c, fhir_http_t *http, fhir_auth_t *auth,
             int64_t now_us, uint64_t seed, int (*stop)(void *), void *stop_arg,
             fhir_run_result_t *out) {
  memset(out, 0, sizeof(*out));
  int nw = c->backfill_days;
  out->windows = calloc((size_t)nw, sizeof(*out->windows));
  out->q = calloc(c->n_queries, sizeof(*out->q));
  if (out->windows == NULL || out->q == NULL)
    return PM_ENOMEM;
  if (fhir_day_windows(now_us, nw, out->windows, (size_t)nw) != nw)
    return PM_EINTERNAL;
  out->n_windows = nw;

  size_t nb = 0;
  for (size_t i = 0; i < c->n_queries; i++) {
    fhir_query_result_t *qr = &out->q[i];
    qr->n = c->queries[i].date_param ? (size_t)nw : 1;
    qr->b = calloc(qr->n, sizeof(*qr->b));
    if (qr->b == NULL)
      return PM_ENOMEM;
    if (c->queries[i].classify)
      for (size_t k = 0; k < qr->n; k++)
        if ((qr->b[k].classes = calloc(1, sizeof(fhir_classes_t))) == NULL)
          return PM_ENOMEM;
    nb += qr->n;
  }
  bucket_t *bs = calloc(nb ? nb : 1, sizeof(*bs));
  if (bs == NULL)
    return PM_ENOMEM;
  run_t run = {
      .c = c, .http = http, .auth = auth, .out = out, .rng = seed ? seed : 1};
  fhir_http_stats_t before;
  fhir_http_stats(http, &before);

  /* Newest day first: the engine starts requests in this order, so when
   * a run is cut short, what it leaves out are the oldest days, which
   * earlier runs counted and which rarely change, not today's. */
  size_t k = 0;
  for (int d = nw - 1; d >= 0; d--) {
    size_t day_first = k;
    for (size_t i = 0; i < c->n_queries; i++) {
      const fhir_query_t *q = &c->queries[i];
      if (!q->date_param && d != nw - 1)
        continue;
      fhir_bucket_result_t *res = &out->q[i].b[q->date_param ? (size_t)d : 0];
      int pages = q->classify || q->always_page;
      bucket_t *b = NULL;
      for (size_t j = day_first; pages && j < k && b == NULL; j++)
        if (bs[j].phase == PHASE_PAGE && bs[j].nq < SHARE_MAX &&
            same_search(&c->queries[bs[j].qi], q))
          b = &bs[j];
      if (b == NULL) {
        b = &bs[k++];
        b->run = &run;
        b->qi = i;
        b->w = q->date_param ? &out->windows[d] : NULL;
        b->res = res;
        b->phase = pages ? PHASE_PAGE : PHASE_COUNT;
      }
      b->qis[b->nq] = i;
      b->ress[b->nq++] = res;
    }
    for (size_t j = day_first; j < k; j++) {
      if (first_url(&bs[j]) != 0) {
        bucket_fail(&bs[j], FHIR_R_FAILED);
        continue;
      }
      submit(&bs[j], 0);
    }
  }
  int rc = fhir_http_run(http, stop, stop_arg);
  drop_header(&run);
  if (rc == PM_ETIMEOUT)
    out->stopped = 1;
  fhir_http_stats_t after;
  fhir_http_stats(http, &after);
  out->requests = after.requests - before.requests;
  for (size_t i = 0; i < k; i++)
    free(bs[i].url);
  free(bs);
  return 0;
}

void fhir_run_result_free(fhir_run_result_t *r, size_t n_queries) {
  if (r == NULL)
    return;
  if (r->q)
    for (size_t i = 0; i < n_queries; i++) {
      for (size_t k = 0; k < r->q[i].n && r->q[i].b; k++)
        free(r->q[i].b[k].classes);
      free(r->q[i].b);
    }
  free(r->q);
  free(r->windows);
  memset(r, 0, sizeof(*r));
}

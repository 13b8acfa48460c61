/*
 * HTTP GETs on a libcurl multi handle, with a queue of our own in front
 * (see fhir_http.h for why).
 */
#include "fhir_http.h"

#include <curl/curl.h>
#include <portalmetrics/plugin.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <time.h>

typedef struct req {
  struct req *next;          /* the queue */
  struct req *anext, *aprev; /* in flight */
  fhir_http_t *h;
  char *url;
  char *header;
  int64_t due_us; /* monotonic */
  fhir_http_cb cb;
  void *arg;
  CURL *easy;
  struct curl_slist *headers;
  char *body;
  size_t len, cap;
  int too_large;
} req_t;

struct fhir_http {
  CURLM *multi;
  fhir_http_opts_t o;
  char *ca_file;
  char *user_agent;
  req_t *queue;  /* not yet handed to curl, in submission order */
  req_t *active; /* handed to curl */
  size_t inflight;
  int stopping;
  fhir_http_stats_t stats;
};

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *fhir_http_code_str(fhir_http_code_t code) {
  switch (code) {
  case FHIR_HTTP_OK:
    return "ok";
  case FHIR_HTTP_TIMEOUT:
    return "timeout";
  case FHIR_HTTP_UNREACHABLE:
    return "unreachable";
  case FHIR_HTTP_TLS:
    return "tls";
  case FHIR_HTTP_TRUNCATED:
    return "truncated";
  case FHIR_HTTP_CONNECTION:
    return "connection";
  case FHIR_HTTP_TOO_LARGE:
    return "too_large";
  case FHIR_HTTP_STOPPED:
    return "stopped";
  case FHIR_HTTP_FAILED:
    return "failed";
  }
  return "failed";
}

int fhir_http_new(const fhir_http_opts_t *opts, fhir_http_t **out) {
  *out = NULL;
  fhir_http_t *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return PM_ENOMEM;
  h->o = *opts;
  if (h->o.max_connections < 1)
    h->o.max_connections = 1;
  if (h->o.max_streams < 1)
    h->o.max_streams = 1;
  h->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
  h->user_agent = strdup(opts->user_agent ? opts->user_agent : "portalmetrics");
  h->multi = curl_multi_init();
  if (h->multi == NULL || h->user_agent == NULL ||
      (opts->ca_file && h->ca_file == NULL)) {
    fhir_http_free(h);
    return PM_ENOMEM;
  }
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                    (long)h->o.max_connections);
  curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                    (long)h->o.max_streams);
  *out = h;
  return 0;
}

static void req_free(req_t *r) {
  if (r == NULL)
    return;
  if (r->easy)
    curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  /* The header may carry a credential. */
  if (r->header) {
    OPENSSL_cleanse(r->header, strlen(r->header));
    free(r->header);
  }
  free(r->url);
  free(r->body);
  free(r);
}

void fhir_http_free(fhir_http_t *h) {
  if (h == NULL)
    return;
  while (h->active) {
    req_t *r = h->active;
    h->active = r->anext;
    curl_multi_remove_handle(h->multi, r->easy);
    req_free(r);
  }
  while (h->queue) {
    req_t *r = h->queue;
    h->queue = r->next;
    req_free(r);
  }
  if (h->multi)
    curl_multi_cleanup(h->multi);
  free(h->ca_file);
  free(h->user_agent);
  free(h);
}

int fhir_http_get(fhir_http_t *h, const char *url, const char *header,
                  int64_t delay_us, fhir_http_cb cb, void *arg) {
  if (h->stopping)
    return PM_ESTOPPED;
  req_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return PM_ENOMEM;
  r->h = h;
  r->url = strdup(url);
  r->header = header ? strdup(header) : NULL;
  if (r->url == NULL || (header && r->header == NULL)) {
    req_free(r);
    return PM_ENOMEM;
  }
  r->due_us = mono_us() + (delay_us > 0 ? delay_us : 0);
  r->cb = cb;
  r->arg = arg;
  req_t **p = &h->queue;
  while (*p)
    p = &(*p)->next;
  *p = r;
  return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  req_t *r = userp;
  size_t add = size * n;
  if (add > r->h->o.max_response - r->len) {
    r->too_large = 1;
    return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
  }
  if (r->len + add + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 16384;
    while (cap < r->len + add + 1)
      cap *= 2;
    char *b = realloc(r->body, cap);
    if (b == NULL)
      return 0;
    r->body = b;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, add);
  r->len += add;
  r->body[r->len] = '\0';
  return add;
}

/* Hand r to curl. Returns 0 or PM_ENOMEM. */
static int start(fhir_http_t *h, req_t *r) {
  CURL *e = curl_easy_init();
  if (e == NULL)
    return PM_ENOMEM;
  r->easy = e;
  r->headers = curl_slist_append(NULL, "Accept: application/fhir+json");
  if (r->headers && r->header) {
    struct curl_slist *l = curl_slist_append(r->headers, r->header);
    if (l == NULL)
      return PM_ENOMEM;
    r->headers = l;
  }
  if (r->headers == NULL)
    return PM_ENOMEM;
  long timeout_ms = (long)(h->o.timeout_us / 1000);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  /* Redirects are not followed: they would carry the credentials to
   * wherever the server points. */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
  curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
  /* Any encoding curl can decode; the limit applies to what it decodes. */
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->o.max_response);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   h->o.http2 ? (long)CURL_HTTP_VERSION_2TLS
                              : (long)CURL_HTTP_VERSION_1_1);
  /* Wait for a multiplexed connection rather than open another one, but
   * only once the server has shown it multiplexes: before the first
   * answer curl cannot know, and every request would wait on the first
   * one (a hung first request would take the whole run with it). */
  if (h->o.http2 && h->stats.http2_seen)
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
    return PM_ENOMEM;
  r->anext = h->active;
  if (h->active)
    h->active->aprev = r;
  h->active = r;
  h->inflight++;
  h->stats.requests++;
  if (h->inflight > h->stats.max_inflight)
    h->stats.max_inflight = h->inflight;
  return 0;
}

static fhir_http_code_t map_curl(CURLcode rc, const req_t *r) {
  switch (rc) {
  case CURLE_OK:
    return FHIR_HTTP_OK;
  case CURLE_OPERATION_TIMEDOUT:
    return FHIR_HTTP_TIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    return FHIR_HTTP_UNREACHABLE;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
    return FHIR_HTTP_TLS;
  case CURLE_PARTIAL_FILE:
    return FHIR_HTTP_TRUNCATED;
  case CURLE_FILESIZE_EXCEEDED:
    return FHIR_HTTP_TOO_LARGE;
  case CURLE_WRITE_ERROR:
    return r->too_large ? FHIR_HTTP_TOO_LARGE : FHIR_HTTP_FAILED;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_HTTP3:
    return FHIR_HTTP_CONNECTION;
  default:
    return FHIR_HTTP_FAILED;
  }
}

static void unlink_active(fhir_http_t *h, req_t *r) {
  if (r->aprev)
    r->aprev->anext = r->anext;
  else
    h->active = r->anext;
  if (r->anext)
    r->anext->aprev = r->aprev;
  r->anext = r->aprev = NULL;
  curl_multi_remove_handle(h->multi, r->easy);
  h->inflight--;
}

static void finish(fhir_http_t *h, req_t *r, CURLcode rc) {
  fhir_http_result_t res = {.code = map_curl(rc, r),
                            .body = r->body ? r->body : "",
                            .len = r->len,
                            .retry_after_us = -1,
                            .detail =
                                rc == CURLE_OK ? "" : curl_easy_strerror(rc)};
  if (res.code == FHIR_HTTP_OK) {
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
    /* curl reads both forms of Retry-After (seconds, HTTP-date). */
    curl_off_t ra = 0;
    if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK &&
        ra > 0)
      res.retry_after_us =
          ra > INT64_MAX / 2000000 ? INT64_MAX / 2 : (int64_t)ra * 1000000;
    long ver = 0;
    curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &ver);
    res.http2 = ver == CURL_HTTP_VERSION_2_0;
    if (res.http2)
      h->stats.http2_seen = 1;
  }
  unlink_active(h, r);
  r->cb(&res, r->arg);
  req_free(r);
}

static void fail_req(req_t *r, fhir_http_code_t code) {
  fhir_http_result_t res = {
      .code = code, .body = "", .retry_after_us = -1, .detail = ""};
  r->cb(&res, r->arg);
  req_free(r);
}

/* How many may be in flight: a connection each, or its streams once the
 * server has shown it multiplexes. */
static size_t cap(const fhir_http_t *h) {
  size_t n = (size_t)h->o.max_connections;
  return h->stats.http2_seen ? n * (size_t)h->o.max_streams : n;
}

/* Hand due requests to curl, oldest first; *next_due_us gets the
 * earliest due time of those left waiting for their time. */
static void start_due(fhir_http_t *h, int64_t now, int64_t *next_due_us) {
  *next_due_us = INT64_MAX;
  req_t **p = &h->queue;
  while (*p) {
    req_t *r = *p;
    if (r->due_us > now) {
      if (r->due_us < *next_due_us)
        *next_due_us = r->due_us;
      p = &r->next;
      continue;
    }
    if (h->inflight >= cap(h))
      return;
    *p = r->next;
    r->next = NULL;
    if (start(h, r) != 0)
      fail_req(r, FHIR_HTTP_FAILED); /* never added: nothing to unlink */
  }
}

static void abort_all(fhir_http_t *h) {
  h->stopping = 1; /* callbacks may not queue more */
  while (h->active) {
    req_t *r = h->active;
    unlink_active(h, r);
    fail_req(r, FHIR_HTTP_STOPPED);
  }
  while (h->queue) {
    req_t *r = h->queue;
    h->queue = r->next;
    fail_req(r, FHIR_HTTP_STOPPED);
  }
  h->stopping = 0;
}

int fhir_http_run(fhir_http_t *h, int (*stop)(void *), void *stop_arg) {
  for (;;) {
    if (stop && stop(stop_arg)) {
      abort_all(h);
      return PM_ETIMEOUT;
    }
    int64_t next_due;
    start_due(h, mono_us(), &next_due);
    if (h->inflight == 0 && h->queue == NULL)
      return 0;
    int running = 0;
    curl_multi_perform(h->multi, &running);
    int left = 0;
    CURLMsg *m;
    int done = 0;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      req_t *r = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
      finish(h, r, m->data.result);
      done = 1;
    }
    if (done)
      continue; /* callbacks may have queued work that can start now */
    int64_t wait_ms = 100;
    if (next_due != INT64_MAX) {
      int64_t d = (next_due - mono_us() + 999) / 1000;
      if (d < wait_ms)
        wait_ms = d < 0 ? 0 : d;
    }
    if (h->inflight == 0) {
      /* Only delayed requests: sleep until the first is due. */
      struct timespec ts = {.tv_sec = wait_ms / 1000,
                            .tv_nsec = (wait_ms % 1000) * 1000000};
      nanosleep(&ts, NULL);
      continue;
    }
    curl_multi_poll(h->multi, NULL, 0, (int)wait_ms, NULL);
  }
}

void fhir_http_stats(const fhir_http_t *h, fhir_http_stats_t *out) {
  *out = h->stats;
}

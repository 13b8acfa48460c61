/*
 * The webhook notifier: one HTTP POST of the event's JSON per send, on
 * the loop through curl_loop.h. See notifier.h.
 *
 * Secrets: the URL's user, password, path and query (a token often sits
 * in the path), the configured headers' values and the bearer token are
 * never logged nor put in an error; messages name the URL as
 * scheme://host:port only, and a curl error text that contains any of
 * them is replaced by curl's generic text for the code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include <portalmetrics/plugin.h>

#include "curl_loop.h"
#include "log.h"
#include "notify_int.h"
#include "secret.h"

#define WH_DEFAULT_TIMEOUT_US (INT64_C(10) * 1000000)
#define WH_MAX_CONNECT_MS 10000L
#define WH_MAX_NEEDLES 16

typedef struct wh {
  pm_curl_loop_t *cl;
  char *origin;                  /* "https://host:443", for messages */
  char *needles[WH_MAX_NEEDLES]; /* secret parts of the URL and headers */
  size_t nneedles;
  long timeout_ms, connect_ms;
  void (*closed)(pm_notifier_t *n);
} wh_t;

typedef struct wh_send {
  nf_req_t *r;
  CURL *easy;
  struct curl_slist *hdrs; /* the Authorization line is wiped at the end */
  char *token;
  char errbuf[CURL_ERROR_SIZE];
} wh_send_t;

/* ------------------------------------------------------------------ */
/* set-up */

static void wh_needle(wh_t *w, const char *s, size_t len) {
  while (len > 0 && (*s == ' ' || *s == '\t')) {
    s++;
    len--;
  }
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  if (len < 2 || w->nneedles >= WH_MAX_NEEDLES)
    return;
  w->needles[w->nneedles] = strndup(s, len);
  if (w->needles[w->nneedles])
    w->nneedles++;
}

/* origin and needles from the URL (nothing when curl cannot parse it: the
 * send then fails with curl's own words, which cannot quote a URL it did
 * not understand -- and are checked against the whole URL anyway) */
static int wh_parse_url(wh_t *w, const char *url) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *part;
  static const CURLUPart secret[] = {CURLUPART_USER,    CURLUPART_PASSWORD,
                                     CURLUPART_OPTIONS, CURLUPART_PATH,
                                     CURLUPART_QUERY,   CURLUPART_FRAGMENT};
  if (!u)
    return PM_ENOMEM;
  wh_needle(w, url, strlen(url));
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++) {
      part = NULL;
      if (curl_url_get(u, secret[i], &part, 0) == CURLUE_OK && part &&
          strcmp(part, "/") != 0)
        wh_needle(w, part, strlen(part));
      curl_free(part);
      /* and as it is written in the URL */
      part = NULL;
      if (curl_url_get(u, secret[i], &part, CURLU_URLDECODE) == CURLUE_OK &&
          part && strcmp(part, "/") != 0)
        wh_needle(w, part, strlen(part));
      curl_free(part);
    }
  }
  if (asprintf(&w->origin, "%s://%s%s%s", scheme ? scheme : "?",
               host ? host : "?", port ? ":" : "", port ? port : "") < 0)
    w->origin = NULL;
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return w->origin ? 0 : PM_ENOMEM;
}

static void wh_free(pm_notifier_t *n) {
  wh_t *w = n->impl;
  if (!w)
    return;
  pm_curl_loop_free(w->cl);
  free(w->origin);
  for (size_t i = 0; i < w->nneedles; i++) {
    explicit_bzero(w->needles[i], strlen(w->needles[i]));
    free(w->needles[i]);
  }
  free(w);
  n->impl = NULL;
}

static int wh_init(pm_notifier_t *n) {
  wh_t *w = calloc(1, sizeof *w);
  int64_t us =
      n->conf.timeout_us > 0 ? n->conf.timeout_us : WH_DEFAULT_TIMEOUT_US;
  if (!w)
    return PM_ENOMEM;
  n->impl = w;
  w->timeout_ms = (long)(us / 1000);
  if (w->timeout_ms < 1)
    w->timeout_ms = 1;
  w->connect_ms =
      w->timeout_ms < WH_MAX_CONNECT_MS ? w->timeout_ms : WH_MAX_CONNECT_MS;
  if (wh_parse_url(w, n->conf.url ? n->conf.url : "") != 0)
    return PM_ENOMEM;
  for (size_t i = 0; i < n->conf.n_headers; i++) {
    const char *h = n->conf.headers[i], *colon = strchr(h, ':');
    if (colon)
      wh_needle(w, colon + 1, strlen(colon + 1));
  }
  /* last: it opens a uv handle, which only close() can release */
  w->cl = pm_curl_loop_new(n->loop);
  return w->cl ? 0 : PM_ENOMEM;
}

/* ------------------------------------------------------------------ */
/* one send */

static size_t wh_discard(char *ptr, size_t size, size_t nmemb, void *ud) {
  (void)ptr;
  (void)ud;
  return size * nmemb;
}

static void wh_send_free(wh_send_t *s) {
  if (!s)
    return;
  if (s->easy)
    curl_easy_cleanup(s->easy);
  for (struct curl_slist *l = s->hdrs; l; l = l->next)
    if (strncasecmp(l->data, "Authorization:", 14) == 0)
      explicit_bzero(l->data, strlen(l->data));
  curl_slist_free_all(s->hdrs);
  pm_secret_free(s->token);
  free(s);
}

/* Is name (up to its colon) the name of header line h? */
static int wh_same_header(const char *h, const char *name) {
  size_t l = strlen(name);
  return strncasecmp(h, name, l) == 0 && h[l] == ':';
}

static int wh_user_has(const pm_notifier_t *n, const char *name) {
  for (size_t i = 0; i < n->conf.n_headers; i++)
    if (wh_same_header(n->conf.headers[i], name))
      return 1;
  return 0;
}

static int wh_add(struct curl_slist **l, const char *line) {
  struct curl_slist *nl = curl_slist_append(*l, line);
  if (!nl)
    return -1;
  *l = nl;
  return 0;
}

/* The header list: the configured headers (but ours win for the event id
 * and, with token_file, Authorization), our defaults where the user set
 * none. */
static int wh_headers(const pm_notifier_t *n, const pm_alert_event_t *e,
                      const char *token, struct curl_slist **out) {
  struct curl_slist *l = NULL;
  char line[128];
  char *auth = NULL;
  int bad = 0;
  for (size_t i = 0; i < n->conf.n_headers && !bad; i++) {
    const char *h = n->conf.headers[i];
    if (wh_same_header(h, "X-Portalmetrics-Event") ||
        (token && wh_same_header(h, "Authorization")))
      continue;
    bad = wh_add(&l, h);
  }
  if (!bad && !wh_user_has(n, "Content-Type"))
    bad = wh_add(&l, "Content-Type: application/json");
  if (!bad && !wh_user_has(n, "User-Agent"))
    bad = wh_add(&l, "User-Agent: portalmetricsd/" PM_VERSION);
  if (!bad) {
    snprintf(line, sizeof line, "X-Portalmetrics-Event: %lld",
             (long long)e->event_id);
    bad = wh_add(&l, line);
  }
  if (!bad && !wh_user_has(n, "Expect"))
    bad = wh_add(&l, "Expect:"); /* no 100-continue round trip */
  if (!bad && token) {
    if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
      auth = NULL;
      bad = -1;
    } else {
      bad = wh_add(&l, auth);
      explicit_bzero(auth, strlen(auth));
      free(auth);
    }
  }
  if (bad) {
    for (struct curl_slist *p = l; p; p = p->next)
      if (strncasecmp(p->data, "Authorization:", 14) == 0)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
    return PM_ENOMEM;
  }
  *out = l;
  return 0;
}

/* curl's words for the error, unless they quote a secret */
static const char *wh_detail(const wh_t *w, const wh_send_t *s, CURLcode rc) {
  const char *d = s->errbuf;
  if (!d[0])
    return curl_easy_strerror(rc);
  for (size_t i = 0; i < w->nneedles; i++)
    if (strstr(d, w->needles[i]))
      return curl_easy_strerror(rc);
  if (s->token && s->token[0] && strstr(d, s->token))
    return curl_easy_strerror(rc);
  return d;
}

static void wh_finish(wh_send_t *s, CURLcode rc, long http) {
  nf_req_t *r = s->r;
  pm_notifier_t *n = r->n;
  wh_t *w = n->impl;
  char secs[32], detail[CURL_ERROR_SIZE];
  long os_errno = 0;
  curl_off_t connected = 0;
  size_t l;

  snprintf(detail, sizeof detail, "%s", wh_detail(w, s, rc));
  l = strlen(detail);
  while (l > 0 && (detail[l - 1] == '\n' || detail[l - 1] == ' ' ||
                   detail[l - 1] == '.'))
    detail[--l] = '\0';
  switch (rc) {
  case CURLE_OK:
    if (http >= 200 && http <= 299)
      pm_notify_finish(r, 0, NULL);
    else
      pm_notify_finish(r, PM_EPEER, "HTTP %ld", http);
    break;
  case CURLE_OPERATION_TIMEDOUT:
    curl_easy_getinfo(s->easy, CURLINFO_CONNECT_TIME_T, &connected);
    if (connected == 0 && w->connect_ms < w->timeout_ms) {
      pm_notify_seconds(secs, sizeof secs, (int64_t)w->connect_ms * 1000);
      pm_notify_finish(r, PM_ETIMEOUT, "connect timed out after %s s", secs);
    } else {
      pm_notify_seconds(secs, sizeof secs, (int64_t)w->timeout_ms * 1000);
      pm_notify_finish(r, PM_ETIMEOUT, "timed out after %s s", secs);
    }
    break;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    pm_notify_finish(r, PM_EUNREACHABLE, "cannot resolve host (curl: %s)",
                     detail);
    break;
  case CURLE_COULDNT_CONNECT:
    curl_easy_getinfo(s->easy, CURLINFO_OS_ERRNO, &os_errno);
    if (os_errno == ECONNREFUSED)
      pm_notify_finish(r, PM_EUNREACHABLE, "connection refused (curl: %s)",
                       detail);
    else
      pm_notify_finish(r, PM_EUNREACHABLE, "cannot connect (curl: %s)", detail);
    break;
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CRL_BADFILE:
    pm_notify_finish(r, PM_EIO, "cannot use the TLS files (curl: %s)", detail);
    break;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
    pm_notify_finish(r, PM_EPEER, "TLS failed (curl: %s)", detail);
    break;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    pm_notify_finish(r, PM_ECONFIG, "unusable URL (curl: %s)", detail);
    break;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    pm_notify_finish(r, PM_EPEER, "connection broken (curl: %s)", detail);
    break;
  case CURLE_OUT_OF_MEMORY:
    pm_notify_finish(r, PM_ENOMEM, "out of memory (curl)");
    break;
  default:
    pm_notify_finish(r, PM_EIO, "curl: %s", detail);
    break;
  }
  pm_debug("webhook %s: POST %s: %s", n->conf.name, w->origin,
           r->status == 0 ? "delivered" : r->error);
  wh_send_free(s);
}

static void wh_on_done(void *arg, CURLcode rc, long http_status) {
  wh_send_t *s = arg;
  s->r->impl = NULL;
  wh_finish(s, rc, http_status);
}

#define WH_SET(opt, val)                                                       \
  do {                                                                         \
    if (curl_easy_setopt(s->easy, opt, val) != CURLE_OK)                       \
      failed_opt = #opt;                                                       \
  } while (0)

static int wh_start(nf_req_t *r, const pm_alert_event_t *e, const char *json) {
  pm_notifier_t *n = r->n;
  wh_t *w = n->impl;
  wh_send_t *s = calloc(1, sizeof *s);
  char err[512];
  const char *failed_opt = NULL;
  int rc;
  if (!s)
    return PM_ENOMEM;
  s->r = r;
  if (n->conf.token_file) {
    /* read at each send: a rotated token is picked up */
    s->token =
        pm_secret_read(n->conf.token_file, "token_file", err, sizeof err);
    if (!s->token) {
      if (strcmp(err, "out of memory") == 0) {
        wh_send_free(s);
        return PM_ENOMEM;
      }
      pm_notify_finish(r, PM_EIO, "%s", err);
      wh_send_free(s);
      return 0;
    }
    size_t l = strlen(s->token);
    while (l > 0 && (s->token[l - 1] == ' ' || s->token[l - 1] == '\t'))
      s->token[--l] = '\0';
    if (l == 0) {
      pm_notify_finish(r, PM_EIO, "token_file %s is empty", n->conf.token_file);
      wh_send_free(s);
      return 0;
    }
  }
  s->easy = curl_easy_init();
  if (!s->easy || wh_headers(n, e, s->token, &s->hdrs) != 0) {
    wh_send_free(s);
    return PM_ENOMEM;
  }
  WH_SET(CURLOPT_URL, n->conf.url ? n->conf.url : "");
  WH_SET(CURLOPT_PROTOCOLS_STR, "http,https");
  WH_SET(CURLOPT_FOLLOWLOCATION, 0L);
  WH_SET(CURLOPT_HTTPHEADER, s->hdrs);
  WH_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
  WH_SET(CURLOPT_COPYPOSTFIELDS, json);
  WH_SET(CURLOPT_TIMEOUT_MS, w->timeout_ms);
  WH_SET(CURLOPT_CONNECTTIMEOUT_MS, w->connect_ms);
  WH_SET(CURLOPT_WRITEFUNCTION, wh_discard);
  WH_SET(CURLOPT_ERRORBUFFER, s->errbuf);
  WH_SET(CURLOPT_SSL_VERIFYPEER, 1L);
  WH_SET(CURLOPT_SSL_VERIFYHOST, 2L);
  if (n->conf.ca_file)
    WH_SET(CURLOPT_CAINFO, n->conf.ca_file);
  if (failed_opt) {
    /* the URL is never quoted: it may hold a token */
    pm_notify_finish(r, PM_EINTERNAL, "libcurl refused %s", failed_opt);
    wh_send_free(s);
    return 0;
  }
  rc = pm_curl_loop_add(w->cl, s->easy, wh_on_done, s);
  if (rc == PM_ENOMEM) {
    wh_send_free(s);
    return PM_ENOMEM;
  }
  if (rc != 0) {
    pm_notify_finish(r, rc, "cannot start the transfer");
    wh_send_free(s);
    return 0;
  }
  r->impl = s;
  return 0;
}

static void wh_cancel(nf_req_t *r) {
  wh_send_t *s = r->impl;
  wh_t *w = r->n->impl;
  if (!s)
    return;
  pm_curl_loop_remove(w->cl, s->easy);
  r->impl = NULL;
  pm_notify_finish(r, PM_ESTOPPED, "cancelled");
  wh_send_free(s);
}

static void wh_on_loop_closed(void *arg) {
  pm_notifier_t *n = arg;
  wh_t *w = n->impl;
  w->closed(n);
}

static void wh_close(pm_notifier_t *n, void (*done)(pm_notifier_t *n)) {
  wh_t *w = n->impl;
  w->closed = done;
  pm_curl_loop_close(w->cl, wh_on_loop_closed, n);
}

const nf_ops_t pm_notify_webhook_ops = {
    .kind = "webhook",
    .init = wh_init,
    .start = wh_start,
    .cancel = wh_cancel,
    .close = wh_close,
    .free = wh_free,
};

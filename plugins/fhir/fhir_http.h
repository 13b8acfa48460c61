/*
 * HTTP GETs for the FHIR collector: many at once on one libcurl multi
 * handle, run to completion by the collect thread (fhir_http_run blocks).
 *
 * Why a queue of our own in front of curl's: curl counts a transfer's
 * CURLOPT_TIMEOUT from the moment it is added, including the time it
 * waits for one of the max_connections, so hundreds of added transfers
 * would time out in the queue. Here a request is handed to curl only
 * when a connection (or, once the server has spoken HTTP/2, a stream)
 * is free, so the timeout measures the request itself; and a retry can
 * wait for its time (Retry-After, backoff) without a thread or a timer.
 *
 * Transport only: the caller decides what a status or body means.
 */
#ifndef FHIR_HTTP_H
#define FHIR_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef enum fhir_http_code {
  FHIR_HTTP_OK = 0,           /* a response arrived (any HTTP status) */
  FHIR_HTTP_TIMEOUT = -1,     /* the request took longer than timeout */
  FHIR_HTTP_UNREACHABLE = -2, /* name not resolved, connection refused */
  FHIR_HTTP_TLS = -3,         /* handshake or certificate verification */
  FHIR_HTTP_TRUNCATED = -4,   /* closed before the announced length */
  FHIR_HTTP_CONNECTION = -5,  /* reset, nothing received, HTTP/2 error */
  FHIR_HTTP_TOO_LARGE = -6,   /* the body would exceed max_response */
  FHIR_HTTP_STOPPED = -7,     /* fhir_http_run was told to stop */
  FHIR_HTTP_FAILED = -8       /* anything else (out of memory, ...) */
} fhir_http_code_t;

typedef struct fhir_http_opts {
  int max_connections;    /* per host (CURLMOPT_MAX_HOST_CONNECTIONS) */
  int max_streams;        /* in flight per connection over HTTP/2 */
  int http2;              /* offer HTTP/2 (ALPN on https) */
  int64_t timeout_us;     /* each request, from when curl gets it */
  uint64_t max_response;  /* bytes of (decoded) body */
  const char *ca_file;    /* NULL: the system's CAs; copied */
  const char *user_agent; /* copied */
} fhir_http_opts_t;

typedef struct fhir_http_result {
  fhir_http_code_t code;
  long status;      /* the HTTP status when code is OK */
  const char *body; /* the body (NUL-terminated), owned by the
                       engine, valid during the callback only */
  size_t len;
  int64_t retry_after_us; /* Retry-After as a delay, -1 when none */
  int http2;              /* the response came over HTTP/2 */
  const char *detail;     /* a static line from curl (no URL), or "" */
} fhir_http_result_t;

/* Called from inside fhir_http_run, once per request. May call
 * fhir_http_get (a next page, a retry). */
typedef void (*fhir_http_cb)(const fhir_http_result_t *r, void *arg);

typedef struct fhir_http fhir_http_t;

int fhir_http_new(const fhir_http_opts_t *opts, fhir_http_t **out);
/* Only outside fhir_http_run. */
void fhir_http_free(fhir_http_t *h);

/*
 * Queue a GET of url (copied), started no sooner than delay_us from now,
 * with one extra header line (e.g. "Authorization: Bearer ...", copied;
 * NULL for none) besides Accept: application/fhir+json. cb fires once,
 * from fhir_http_run. Returns 0, PM_ESTOPPED while a run is stopping, or
 * PM_ENOMEM (cb then never fires).
 */
int fhir_http_get(fhir_http_t *h, const char *url, const char *header,
                  int64_t delay_us, fhir_http_cb cb, void *arg);

/*
 * Run until nothing is queued or in flight. stop (may be NULL) is asked
 * at least every 100 ms; once it says nonzero, every request left ends
 * with FHIR_HTTP_STOPPED and PM_ETIMEOUT is returned. Returns 0 or
 * PM_ETIMEOUT.
 */
int fhir_http_run(fhir_http_t *h, int (*stop)(void *), void *stop_arg);

typedef struct fhir_http_stats {
  uint64_t requests;     /* handed to curl */
  uint64_t max_inflight; /* the most in flight at once */
  int http2_seen;        /* some response came over HTTP/2 */
} fhir_http_stats_t;
void fhir_http_stats(const fhir_http_t *h, fhir_http_stats_t *out);

/* A short static name of a code ("timeout", ...). */
const char *fhir_http_code_str(fhir_http_code_t code);

#endif

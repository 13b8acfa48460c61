/*
 * Notifiers: the dispatch common to every kind, the deferred callbacks,
 * and the log notifier. See notifier.h; the webhook and exec kinds are in
 * notify_webhook.c and notify_exec.c, their shared parts in notify_int.h.
 */
#include "notifier.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include <portalmetrics/plugin.h>

#include "errors.h"
#include "log.h"
#include "notify_int.h"

/* ------------------------------------------------------------------ */
/* the configuration, copied */

static char *nf_strdup(const char *s, int *oom) {
  char *d;
  if (!s)
    return NULL;
  d = strdup(s);
  if (!d)
    *oom = 1;
  return d;
}

/* A NULL-terminated copy of n strings (NULL when v is NULL). */
static char **nf_strvdup(char *const *v, size_t n, int *oom) {
  char **d;
  if (!v)
    return NULL;
  d = calloc(n + 1, sizeof *d);
  if (!d) {
    *oom = 1;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    d[i] = nf_strdup(v[i], oom);
  return d;
}

static void nf_strvfree(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void nf_conf_free(pm_notifier_conf_t *c) {
  free(c->name);
  free(c->url);
  nf_strvfree(c->headers, c->n_headers);
  free(c->token_file);
  free(c->ca_file);
  nf_strvfree(c->command, c->n_command);
  memset(c, 0, sizeof *c);
}

static int nf_conf_copy(pm_notifier_conf_t *d, const pm_notifier_conf_t *s) {
  int oom = 0;
  *d = *s;
  d->name = nf_strdup(s->name ? s->name : "", &oom);
  d->url = nf_strdup(s->url, &oom);
  d->headers = nf_strvdup(s->headers, s->n_headers, &oom);
  d->token_file = nf_strdup(s->token_file, &oom);
  d->ca_file = nf_strdup(s->ca_file, &oom);
  d->command = nf_strvdup(s->command, s->n_command, &oom);
  if (!d->headers)
    d->n_headers = 0;
  if (!d->command)
    d->n_command = 0;
  if (oom) {
    nf_conf_free(d);
    return PM_ENOMEM;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* requests and their callbacks */

static void nf_check_closed(pm_notifier_t *n);

static void nf_unlink_active(nf_req_t *r) {
  pm_notifier_t *n = r->n;
  if (r->prev)
    r->prev->next = r->next;
  else
    n->active = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void nf_req_free(nf_req_t *r) {
  free(r->log_line);
  free(r);
}

static void nf_on_kick(uv_timer_t *t) {
  pm_notifier_t *n = t->data;
  size_t todo = 0;
  /* only those finished before this turn: a callback that sends again
   * gets its answer on a later turn */
  for (nf_req_t *r = n->done_head; r; r = r->next)
    todo++;
  n->draining = 1;
  while (todo-- > 0 && n->done_head) {
    nf_req_t *r = n->done_head;
    n->done_head = r->next;
    if (!n->done_head)
      n->done_tail = NULL;
    if (r->log_line && r->status == 0)
      pm_log(r->log_level, NULL, NULL, "%s", r->log_line);
    n->inflight--;
    r->cb(r->arg, r->status, r->error); /* "" when delivered */
    nf_req_free(r);
  }
  n->draining = 0;
  if (n->done_head && !n->closing_kick)
    uv_timer_start(&n->kick, nf_on_kick, 0, 0);
  nf_check_closed(n);
}

void pm_notify_finish(nf_req_t *r, int status, const char *fmt, ...) {
  pm_notifier_t *n = r->n;
  if (r->finished)
    return;
  r->finished = 1;
  nf_unlink_active(r);
  r->status = status;
  r->error[0] = '\0';
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
  }
  if (status != 0 && !r->error[0])
    snprintf(r->error, sizeof r->error, "%s", pm_strerror(status));
  /* one line, whatever the kinds put in */
  for (char *p = r->error; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t')
      *p = ' ';
  if (n->done_tail)
    n->done_tail->next = r;
  else
    n->done_head = r;
  n->done_tail = r;
  if (!n->draining && !uv_is_active((uv_handle_t *)&n->kick))
    uv_timer_start(&n->kick, nf_on_kick, 0, 0);
}

void pm_notify_seconds(char *buf, size_t len, int64_t us) {
  size_t l;
  snprintf(buf, len, "%.3f", (double)us / 1e6);
  l = strlen(buf);
  while (l > 0 && buf[l - 1] == '0')
    buf[--l] = '\0';
  if (l > 0 && buf[l - 1] == '.')
    buf[--l] = '\0';
}

/* ------------------------------------------------------------------ */
/* the log notifier */

static int nf_log_init(pm_notifier_t *n) {
  return 0;
}

static int nf_log_start(nf_req_t *r, const pm_alert_event_t *e,
                        const char *json) {
  char what[64];
  const char *msg = e->message && e->message[0] ? e->message : NULL;
  (void)json;
  switch (e->kind) {
  case PM_EV_STATE:
    snprintf(what, sizeof what, "%s -> %s", pm_alert_state_name(e->from),
             pm_alert_state_name(e->to));
    break;
  case PM_EV_LATE:
    snprintf(what, sizeof what, "projected late (%s)",
             pm_alert_state_name(e->to));
    break;
  case PM_EV_LATE_CLEARED:
    snprintf(what, sizeof what, "no longer projected late (%s)",
             pm_alert_state_name(e->to));
    break;
  case PM_EV_REPEAT:
    snprintf(what, sizeof what, "still %s", pm_alert_state_name(e->to));
    break;
  default:
    snprintf(what, sizeof what, "%s -> %s", pm_alert_state_name(e->from),
             pm_alert_state_name(e->to));
    break;
  }
  r->log_level = (e->to == PM_ALERT_FIRING || e->to == PM_ALERT_NODATA ||
                  e->kind == PM_EV_LATE || e->kind == PM_EV_REPEAT)
                     ? PM_LOG_WARNING
                     : PM_LOG_INFO;
  if (asprintf(&r->log_line, "alert: target %s: %s (event %lld)%s%s",
               e->target ? e->target : "?", what, (long long)e->event_id,
               msg ? ": " : "", msg ? msg : "") < 0) {
    r->log_line = NULL;
    return PM_ENOMEM;
  }
  /* written when the callback runs (unless cancelled before) */
  pm_notify_finish(r, 0, NULL);
  return 0;
}

static void nf_log_cancel(nf_req_t *r) {
  /* never on n->active: finished at start */
  pm_notify_finish(r, PM_ESTOPPED, "cancelled");
}

static const nf_ops_t nf_log_ops = {
    .kind = "log",
    .init = nf_log_init,
    .start = nf_log_start,
    .cancel = nf_log_cancel,
    .close = NULL,
    .free = NULL,
};

/* ------------------------------------------------------------------ */
/* public */

pm_notifier_t *pm_notifier_new(uv_loop_t *loop,
                               const pm_notifier_conf_t *conf) {
  pm_notifier_t *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->loop = loop;
  if (nf_conf_copy(&n->conf, conf) != 0) {
    free(n);
    return NULL;
  }
  switch (conf->type) {
  case PM_NOTIFIER_WEBHOOK:
    n->ops = &pm_notify_webhook_ops;
    break;
  case PM_NOTIFIER_EXEC:
    n->ops = &pm_notify_exec_ops;
    break;
  default:
    n->ops = &nf_log_ops;
    break;
  }
  if (n->ops->init(n) != 0) {
    if (n->ops->free)
      n->ops->free(n);
    nf_conf_free(&n->conf);
    free(n);
    return NULL;
  }
  uv_timer_init(loop, &n->kick); /* cannot fail on a live loop */
  n->kick.data = n;
  n->handles = 1;
  return n;
}

const char *pm_notifier_name(const pm_notifier_t *n) {
  return n->conf.name;
}

int pm_notifier_send(pm_notifier_t *n, const pm_alert_event_t *e,
                     const char *json, pm_notify_cb cb, void *arg) {
  nf_req_t *r;
  int rc;
  if (n->closing)
    return PM_ESTOPPED;
  if (!e || !json || !cb)
    return PM_EINVAL;
  r = calloc(1, sizeof *r);
  if (!r)
    return PM_ENOMEM;
  r->n = n;
  r->cb = cb;
  r->arg = arg;
  r->next = n->active;
  if (n->active)
    n->active->prev = r;
  n->active = r;
  n->inflight++;
  rc = n->ops->start(r, e, json);
  if (rc != 0) {
    /* the kind finished nothing and kept nothing */
    nf_unlink_active(r);
    n->inflight--;
    nf_req_free(r);
    return rc;
  }
  return 0;
}

void pm_notifier_cancel_all(pm_notifier_t *n) {
  nf_req_t *r, *next;
  for (r = n->active; r; r = next) {
    next = r->next; /* cancel may finish r at once (not the others) */
    n->ops->cancel(r);
  }
  /* log lines not written yet are not written */
  for (r = n->done_head; r; r = r->next)
    if (r->log_line && r->status == 0) {
      r->status = PM_ESTOPPED;
      snprintf(r->error, sizeof r->error, "cancelled");
    }
}

static void nf_on_kick_closed(uv_handle_t *h) {
  pm_notifier_t *n = h->data;
  n->handles--;
  nf_check_closed(n);
}

static void nf_on_kind_closed(pm_notifier_t *n) {
  n->closed_kind = 1;
  n->handles--;
  nf_check_closed(n);
}

/* Once closing and every callback has run: close the kind, then the
 * kick timer; done last. Never inside a drain (the callbacks). */
static void nf_check_closed(pm_notifier_t *n) {
  if (!n->closing || n->draining || n->inflight > 0)
    return;
  if (!n->closing_kind) {
    n->closing_kind = 1;
    if (n->ops->close) {
      n->handles++;
      n->ops->close(n, nf_on_kind_closed);
    } else {
      n->closed_kind = 1;
    }
  }
  if (!n->closing_kick) {
    n->closing_kick = 1;
    uv_timer_stop(&n->kick);
    uv_close((uv_handle_t *)&n->kick, nf_on_kick_closed);
  }
  if (n->handles == 0 && n->closed_kind && n->close_cb) {
    void (*cb)(void *) = n->close_cb;
    n->close_cb = NULL;
    cb(n->close_arg); /* may free n */
  }
}

static void nf_noop_done(void *arg) {
  (void)arg;
}

void pm_notifier_close(pm_notifier_t *n, void (*done)(void *arg), void *arg) {
  if (n->closing)
    return;
  n->closing = 1;
  n->close_cb = done ? done : nf_noop_done;
  n->close_arg = arg;
  pm_notifier_cancel_all(n);
  nf_check_closed(n);
}

void pm_notifier_free(pm_notifier_t *n) {
  if (!n)
    return;
  if (n->ops && n->ops->free)
    n->ops->free(n);
  nf_conf_free(&n->conf);
  free(n);
}

int pm_notifier_global_init(void) {
  const curl_version_info_data *v;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return PM_EINTERNAL;
  v = curl_version_info(CURLVERSION_NOW);
  if (v && !(v->features & CURL_VERSION_ASYNCHDNS))
    pm_warn("webhook: libcurl %s resolves host names synchronously: a slow "
            "DNS server would block the daemon's loop",
            v->version);
  return 0;
}

void pm_notifier_global_cleanup(void) {
  curl_global_cleanup();
}

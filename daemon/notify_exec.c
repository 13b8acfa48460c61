/*
 * The exec notifier: one child per send, run with uv_spawn (no shell) in
 * a session of its own, the event's JSON on its stdin. See notifier.h.
 *
 * A send owns three handles: the process, the stdin pipe and a timer. The
 * JSON is written with uv_write, so a child that never reads its stdin
 * stalls nothing (the write is cancelled when the child exits; EPIPE is
 * ignored, and the daemon ignores SIGPIPE). At the timeout, or when
 * cancelled, the child's process group gets SIGKILL -- only while the
 * child is not reaped yet, so the group id cannot have been reused. The
 * send finishes once the three handles are closed.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <portalmetrics/plugin.h>

#include "log.h"
#include "notify_int.h"

#define EX_DEFAULT_TIMEOUT_US (INT64_C(30) * 1000000)
#define EX_NENV 14

typedef struct ex_send {
  nf_req_t *r;
  uv_process_t proc;
  uv_pipe_t in;
  uv_timer_t timer;
  uv_write_t wreq;
  char *json;
  size_t len;
  char *env[EX_NENV + 1];
  int open; /* handles not closed yet */
  int spawn_err;
  int pid;
  int exited, timed_out, cancelled, in_closing;
  int64_t exit_status;
  int term_signal;
} ex_send_t;

typedef struct ex {
  int64_t timeout_us;
} ex_t;

/* ------------------------------------------------------------------ */

static int ex_init(pm_notifier_t *n) {
  ex_t *x = calloc(1, sizeof *x);
  if (!x)
    return PM_ENOMEM;
  x->timeout_us =
      n->conf.timeout_us > 0 ? n->conf.timeout_us : EX_DEFAULT_TIMEOUT_US;
  n->impl = x;
  return 0;
}

static void ex_free(pm_notifier_t *n) {
  free(n->impl);
  n->impl = NULL;
}

/* ------------------------------------------------------------------ */
/* the environment */

/* The shortest text that reads back as v; "" when unknown. */
static void ex_number(char *buf, size_t len, int known, double v) {
  if (!known || !isfinite(v)) {
    buf[0] = '\0';
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      return;
  }
}

static int ex_env(ex_send_t *s, const pm_alert_event_t *e) {
  char actual[32], expected[32];
  int i = 0, bad = 0;
#define ENV(...)                                                               \
  do {                                                                         \
    if (!bad && asprintf(&s->env[i++], __VA_ARGS__) < 0) {                     \
      s->env[--i] = NULL;                                                      \
      bad = 1;                                                                 \
    }                                                                          \
  } while (0)
#define S(x) ((x) ? (x) : "")
  ex_number(actual, sizeof actual, e->has_actual, e->actual);
  ex_number(expected, sizeof expected, e->has_expected, e->expected);
  ENV("PATH=/usr/local/bin:/usr/bin:/bin");
  ENV("LANG=C.UTF-8");
  ENV("PM_EVENT_ID=%lld", (long long)e->event_id);
  ENV("PM_TARGET=%s", S(e->target));
  ENV("PM_TITLE=%s", S(e->title));
  ENV("PM_KIND=%s", pm_alert_ev_kind_name(e->kind));
  ENV("PM_FROM=%s", pm_alert_state_name(e->from));
  ENV("PM_TO=%s", pm_alert_state_name(e->to));
  ENV("PM_SEVERITY=%s", S(e->severity));
  ENV("PM_STATUS=%s", pm_target_status_name(e->status));
  ENV("PM_ACTUAL=%s", actual);
  ENV("PM_EXPECTED=%s", expected);
  ENV("PM_MESSAGE=%s", S(e->message));
  ENV("PM_DAEMON=%s", S(e->daemon));
#undef S
#undef ENV
  return bad ? PM_ENOMEM : 0;
}

static void ex_send_free(ex_send_t *s) {
  for (size_t i = 0; i < EX_NENV; i++)
    free(s->env[i]);
  free(s->json);
  free(s);
}

/* ------------------------------------------------------------------ */
/* one send */

static void ex_done(ex_send_t *s) {
  nf_req_t *r = s->r;
  pm_notifier_t *n = r->n;
  ex_t *x = n->impl;
  const char *file = n->conf.command[0];
  char secs[32];
  r->impl = NULL;
  if (s->spawn_err) {
    pm_notify_finish(r, PM_EIO, "cannot run %s: %s", file,
                     strerror(-s->spawn_err));
  } else if (s->exit_status == 0 && s->term_signal == 0) {
    /* done before a kill (at the timeout or cancel) could land */
    pm_notify_finish(r, 0, NULL);
  } else if (s->cancelled) {
    pm_notify_finish(r, PM_ESTOPPED, "cancelled");
  } else if (s->timed_out) {
    pm_notify_seconds(secs, sizeof secs, x->timeout_us);
    pm_notify_finish(r, PM_ETIMEOUT, "timed out after %s s", secs);
  } else if (s->term_signal) {
    pm_notify_finish(r, PM_EPEER, "killed by signal %d", s->term_signal);
  } else {
    pm_notify_finish(r, PM_EPEER, "exited with status %lld",
                     (long long)s->exit_status);
  }
  pm_debug("exec %s: pid %d: %s", n->conf.name, s->pid,
           r->status == 0 ? "delivered" : r->error);
  ex_send_free(s);
}

static void ex_on_closed(uv_handle_t *h) {
  ex_send_t *s = h->data;
  if (--s->open == 0)
    ex_done(s);
}

static void ex_close_in(ex_send_t *s) {
  if (s->in_closing)
    return;
  s->in_closing = 1;
  uv_close((uv_handle_t *)&s->in, ex_on_closed); /* cancels a write */
}

static void ex_on_write(uv_write_t *req, int status) {
  ex_send_t *s = req->data;
  (void)status;   /* EPIPE: the child did not read; ECANCELED: it exited */
  ex_close_in(s); /* the child sees end of file */
}

static void ex_kill(ex_send_t *s) {
  if (s->pid > 0 && !s->exited)
    kill(-s->pid, SIGKILL); /* its session's process group */
}

static void ex_on_timeout(uv_timer_t *t) {
  ex_send_t *s = t->data;
  s->timed_out = 1;
  ex_kill(s);
}

static void ex_on_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  ex_send_t *s = p->data;
  s->exited = 1;
  s->exit_status = exit_status;
  s->term_signal = term_signal;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, ex_on_closed);
  uv_close((uv_handle_t *)&s->proc, ex_on_closed);
  ex_close_in(s);
}

static int ex_start(nf_req_t *r, const pm_alert_event_t *e, const char *json) {
  pm_notifier_t *n = r->n;
  ex_t *x = n->impl;
  ex_send_t *s = calloc(1, sizeof *s);
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  uv_buf_t buf;
  int rc;
  if (!s)
    return PM_ENOMEM;
  if (!n->conf.command || !n->conf.command[0]) {
    free(s);
    pm_notify_finish(r, PM_ECONFIG, "no command to run");
    return 0;
  }
  s->r = r;
  s->len = strlen(json);
  s->json = malloc(s->len + 1);
  if (!s->json || ex_env(s, e) != 0) {
    ex_send_free(s);
    return PM_ENOMEM;
  }
  memcpy(s->json, json, s->len + 1);
  r->impl = s;

  uv_pipe_init(n->loop, &s->in, 0);
  s->in.data = s;
  uv_timer_init(n->loop, &s->timer);
  s->timer.data = s;
  s->open = 2;

  memset(&o, 0, sizeof o);
  memset(stdio, 0, sizeof stdio);
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&s->in;
  stdio[1].flags = UV_IGNORE; /* /dev/null */
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  o.exit_cb = ex_on_exit;
  o.file = n->conf.command[0];
  o.args = n->conf.command;
  o.env = s->env;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group */
  s->proc.data = s;
  rc = uv_spawn(n->loop, &s->proc, &o);
  s->open++; /* the process handle is to be closed even when spawn failed */
  if (rc < 0) {
    s->spawn_err = rc;
    uv_close((uv_handle_t *)&s->proc, ex_on_closed);
    uv_close((uv_handle_t *)&s->timer, ex_on_closed);
    ex_close_in(s);
    return 0;
  }
  s->pid = s->proc.pid;
  uv_timer_start(&s->timer, ex_on_timeout, (uint64_t)(x->timeout_us / 1000), 0);
  buf = uv_buf_init(s->json, (unsigned)s->len);
  s->wreq.data = s;
  if (s->len == 0 ||
      uv_write(&s->wreq, (uv_stream_t *)&s->in, &buf, 1, ex_on_write) < 0)
    ex_close_in(s);
  return 0;
}

static void ex_cancel(nf_req_t *r) {
  ex_send_t *s = r->impl;
  if (!s || s->exited || s->spawn_err)
    return; /* finishing already, with its real outcome */
  s->cancelled = 1;
  ex_kill(s);
}

const nf_ops_t pm_notify_exec_ops = {
    .kind = "exec",
    .init = ex_init,
    .start = ex_start,
    .cancel = ex_cancel,
    .close = NULL, /* no handle of its own: each send closes its handles
                      before it finishes */
    .free = ex_free,
};

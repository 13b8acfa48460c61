/*
 * Notifiers: deliver one alert event to the outside (DESIGN.md "Targets
 * and alerts"), on the loop thread, never blocking it.
 *
 *   log      pm_log: warn for firing, nodata, late and repeat events,
 *            info for the others; the event's message and id.
 *   webhook  HTTP POST of the event's JSON body (libcurl multi driven by
 *            the loop, curl_loop.h): Content-Type application/json,
 *            User-Agent portalmetricsd/VERSION, X-Portalmetrics-Event: ID,
 *            the configured headers, and "Authorization: Bearer TOKEN"
 *            when token_file is set (read at each send, so a rotated
 *            token is picked up; never logged). TLS verification on
 *            (ca_file overrides the CA store), redirects not followed,
 *            http and https only, the timeout covers the whole attempt.
 *            A 2xx answer is delivered; anything else is a failure.
 *   exec     uv_spawn of command[] (no shell), in its own session, the
 *            JSON body on stdin, stdout to /dev/null, stderr inherited,
 *            and an environment of only PATH=/usr/local/bin:/usr/bin:/bin,
 *            LANG=C.UTF-8 and PM_EVENT_ID, PM_TARGET, PM_TITLE, PM_KIND,
 *            PM_FROM, PM_TO, PM_SEVERITY, PM_STATUS, PM_ACTUAL,
 *            PM_EXPECTED (empty when unknown), PM_MESSAGE, PM_DAEMON.
 *            Exit status 0 is delivered. At the timeout the whole process
 *            group gets SIGKILL and the attempt fails.
 *
 * Retries are the caller's (the alerter's outbox keeps a delivery per
 * event and notifier, with backoff): a notifier makes one attempt per
 * send. Layer: writer and spool (beside the writer, used by the alerter).
 */
#ifndef PM_NOTIFIER_H
#define PM_NOTIFIER_H

#include <uv.h>
#include "alert_event.h"
#include "config.h"

typedef struct pm_notifier pm_notifier_t;

/* status 0: delivered; < 0 (PM_ETIMEOUT, PM_EPEER, PM_EUNREACHABLE,
 * PM_EIO, PM_ESTOPPED when cancelled...) with a one-line reason such as
 * "HTTP 500", "timed out after 10 s", "exited with status 3" (no token,
 * no body). */
typedef void (*pm_notify_cb)(void *arg, int status, const char *error);

/* A notifier for conf (copied: conf may be freed afterwards). NULL when
 * out of memory. daemon_id goes into the log lines. */
pm_notifier_t *pm_notifier_new(uv_loop_t *loop, const pm_notifier_conf_t *conf);

const char *pm_notifier_name(const pm_notifier_t *n);

/*
 * Deliver one event: e (for the log line and exec's environment) and its
 * JSON body, both copied before return. Several sends may run at once.
 * cb runs exactly once, later, on the loop thread (for `log` too: on the
 * next loop turn) -- unless this returns an error, and then never.
 * Returns 0, PM_ENOMEM, or PM_ESTOPPED after pm_notifier_close.
 */
int pm_notifier_send(pm_notifier_t *n, const pm_alert_event_t *e,
                     const char *json, pm_notify_cb cb, void *arg);

/* Abort every send in flight: each cb runs (soon, on the loop) with
 * PM_ESTOPPED. Exec children are killed. */
void pm_notifier_cancel_all(pm_notifier_t *n);

/* Cancel all, then release handles; done (may be NULL) runs once
 * everything is closed and every cb has run. Then pm_notifier_free. */
void pm_notifier_close(pm_notifier_t *n, void (*done)(void *arg), void *arg);
void pm_notifier_free(pm_notifier_t *n);

/* Once per process, before any thread starts: curl_global_init. Returns
 * 0 or PM_EINTERNAL. */
int pm_notifier_global_init(void);
void pm_notifier_global_cleanup(void);

#endif

/*
 * libcurl's multi interface driven by the libuv loop: a uv_poll_t per
 * socket curl asks to watch (CURLMOPT_SOCKETFUNCTION), a uv_timer_t for
 * curl's timeout (CURLMOPT_TIMERFUNCTION), curl_multi_socket_action on
 * every event, finished transfers collected with curl_multi_info_read.
 * Never blocks the loop (Debian's libcurl resolves names on a thread).
 * Loop thread only. Layer: writer and spool (for the webhook notifier).
 *
 * The easy handles stay the caller's: the loop only adds them to its
 * multi handle and takes them out again; the caller sets them up before
 * pm_curl_loop_add and cleans them up after the done callback (or after
 * pm_curl_loop_remove).
 */
#ifndef PM_CURL_LOOP_H
#define PM_CURL_LOOP_H

#include <curl/curl.h>
#include <uv.h>

typedef struct pm_curl_loop pm_curl_loop_t;

/* A finished transfer: rc is curl's result, http_status the response
 * code (0 when no response came). The easy handle is already out of the
 * loop: the callback may clean it up, or add it (or another) again. */
typedef void (*pm_curl_done_cb)(void *arg, CURLcode rc, long http_status);

/* NULL when out of memory (or curl_multi_init fails). */
pm_curl_loop_t *pm_curl_loop_new(uv_loop_t *loop);

/*
 * Start a transfer. Sets CURLOPT_NOSIGNAL=1, CURLOPT_OPENSOCKETFUNCTION (a
 * close-on-exec socket, so an exec notifier's children inherit none) and
 * CURLOPT_PRIVATE on easy: the caller must not use those. done runs
 * exactly once, later, on the loop -- unless this returns an error (then
 * never), or pm_curl_loop_remove or pm_curl_loop_close comes first.
 * Returns 0, PM_ENOMEM, PM_EINVAL (easy already in a loop), PM_ESTOPPED
 * (closing) or PM_EINTERNAL (curl refused it).
 */
int pm_curl_loop_add(pm_curl_loop_t *cl, CURL *easy, pm_curl_done_cb done,
                     void *arg);

/* Cancel a transfer added and not yet done: it leaves the loop at once
 * and its callback never runs. Unknown handles are ignored. */
void pm_curl_loop_remove(pm_curl_loop_t *cl, CURL *easy);

/* Number of transfers in the loop. */
size_t pm_curl_loop_count(const pm_curl_loop_t *cl);

/*
 * Remove every transfer still in the loop (without callbacks: the caller
 * should have finished or removed its own), clean up the multi handle
 * (closing its cached connections) and close the uv handles; done (may be
 * NULL) runs, later, once all of them are closed. Then pm_curl_loop_free.
 */
void pm_curl_loop_close(pm_curl_loop_t *cl, void (*done)(void *arg), void *arg);
/* Only after close's done callback. NULL is fine. */
void pm_curl_loop_free(pm_curl_loop_t *cl);

#endif

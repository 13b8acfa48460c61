/* libcurl's multi interface on the libuv loop: see curl_loop.h. */
#include "curl_loop.h"

#include <stdlib.h>
#include <sys/socket.h>

#include <portalmetrics/plugin.h>

#include "log.h"

/* A socket curl asked us to watch. Freed when its poll handle closes. */
typedef struct cl_sock {
  uv_poll_t poll;
  pm_curl_loop_t *cl;
  curl_socket_t fd;
  struct cl_sock *prev, *next; /* cl->socks: open (not closing) ones */
} cl_sock_t;

/* A transfer in the loop. */
typedef struct cl_xfer {
  CURL *easy;
  pm_curl_done_cb done;
  void *arg;
  struct cl_xfer *prev, *next;
} cl_xfer_t;

struct pm_curl_loop {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  cl_sock_t *socks;
  cl_xfer_t *xfers;
  size_t nxfers;
  unsigned handles; /* uv handles open or closing */
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
};

static void cl_check_multi(pm_curl_loop_t *cl);

/* ------------------------------------------------------------------ */
/* handles */

static void cl_check_closed(pm_curl_loop_t *cl) {
  if (cl->closing && cl->handles == 0 && cl->close_cb) {
    void (*cb)(void *) = cl->close_cb;
    cl->close_cb = NULL;
    cb(cl->close_arg);
  }
}

static void cl_on_sock_closed(uv_handle_t *h) {
  cl_sock_t *s = h->data;
  pm_curl_loop_t *cl = s->cl;
  free(s);
  cl->handles--;
  cl_check_closed(cl);
}

static void cl_on_timer_closed(uv_handle_t *h) {
  pm_curl_loop_t *cl = h->data;
  cl->handles--;
  cl_check_closed(cl);
}

/* Stop watching s and close its handle now: curl closes the descriptor
 * right after telling us (CURL_POLL_REMOVE), and the number may come back
 * at once for another socket, which gets a handle of its own. uv_close
 * takes the descriptor out of epoll synchronously. */
static void cl_sock_drop(cl_sock_t *s) {
  pm_curl_loop_t *cl = s->cl;
  if (s->prev)
    s->prev->next = s->next;
  else
    cl->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, cl_on_sock_closed);
}

static void cl_on_poll(uv_poll_t *h, int status, int events) {
  cl_sock_t *s = h->data;
  pm_curl_loop_t *cl = s->cl;
  int flags = 0, running = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  /* s may be dropped inside (its memory stays until the close callback) */
  curl_multi_socket_action(cl->multi, s->fd, flags, &running);
  cl_check_multi(cl);
}

static int cl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                        void *socketp) {
  pm_curl_loop_t *cl = userp;
  cl_sock_t *s = socketp;
  int events = 0, rc;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (!cl->closing) /* not inside curl_multi_cleanup */
        curl_multi_assign(cl->multi, fd, NULL);
      cl_sock_drop(s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) {
      pm_error("webhook: out of memory watching a socket");
      return -1; /* curl fails the transfer */
    }
    s->cl = cl;
    s->fd = fd;
    rc = uv_poll_init_socket(cl->loop, &s->poll, fd);
    if (rc < 0) {
      pm_error("webhook: cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
      free(s);
      return -1;
    }
    s->poll.data = s;
    cl->handles++;
    s->next = cl->socks;
    if (cl->socks)
      cl->socks->prev = s;
    cl->socks = s;
    curl_multi_assign(cl->multi, fd, s);
  }
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    events |= UV_WRITABLE;
  rc = uv_poll_start(&s->poll, events, cl_on_poll);
  if (rc < 0) {
    pm_error("webhook: cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
    curl_multi_assign(cl->multi, fd, NULL);
    cl_sock_drop(s);
    return -1;
  }
  return 0;
}

static void cl_on_timer(uv_timer_t *t) {
  pm_curl_loop_t *cl = t->data;
  int running = 0;
  curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  cl_check_multi(cl);
}

static int cl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  pm_curl_loop_t *cl = userp;
  (void)multi;
  if (timeout_ms < 0 || cl->closing) {
    uv_timer_stop(&cl->timer);
    return 0;
  }
  /* 0 ms too goes through the loop: curl must not be re-entered from
   * inside its own callback */
  uv_timer_start(&cl->timer, cl_on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static curl_socket_t cl_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *a) {
  (void)clientp;
  (void)purpose;
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ------------------------------------------------------------------ */
/* transfers */

static void cl_xfer_unlink(pm_curl_loop_t *cl, cl_xfer_t *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    cl->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  cl->nxfers--;
}

static void cl_check_multi(pm_curl_loop_t *cl) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
    CURL *easy;
    CURLcode rc;
    cl_xfer_t *x = NULL;
    long status = 0;
    pm_curl_done_cb done;
    void *arg;
    if (msg->msg != CURLMSG_DONE)
      continue;
    easy = msg->easy_handle;
    rc = msg->data.result;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(cl->multi, easy);
    if (!x)
      continue;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    done = x->done;
    arg = x->arg;
    cl_xfer_unlink(cl, x);
    free(x);
    /* may add or remove transfers, or close the loop */
    done(arg, rc, status);
    if (cl->closing)
      return;
  }
}

/* ------------------------------------------------------------------ */
/* public */

pm_curl_loop_t *pm_curl_loop_new(uv_loop_t *loop) {
  pm_curl_loop_t *cl = calloc(1, sizeof *cl);
  if (!cl)
    return NULL;
  cl->loop = loop;
  cl->multi = curl_multi_init();
  if (!cl->multi) {
    free(cl);
    return NULL;
  }
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, cl_socket_cb);
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, cl_timer_cb);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
  uv_timer_init(loop, &cl->timer); /* cannot fail on a live loop */
  cl->timer.data = cl;
  cl->handles = 1;
  return cl;
}

int pm_curl_loop_add(pm_curl_loop_t *cl, CURL *easy, pm_curl_done_cb done,
                     void *arg) {
  cl_xfer_t *x = NULL;
  CURLMcode mrc;
  if (cl->closing)
    return PM_ESTOPPED;
  if (!easy || !done)
    return PM_EINVAL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
  if (x)
    return PM_EINVAL;
  x = calloc(1, sizeof *x);
  if (!x)
    return PM_ENOMEM;
  x->easy = easy;
  x->done = done;
  x->arg = arg;
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, cl_open_socket);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)x);
  /* calls the timer callback (a 0 ms kick): the transfer starts on the
   * loop, never inside this call */
  mrc = curl_multi_add_handle(cl->multi, easy);
  if (mrc != CURLM_OK) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(x);
    pm_error("webhook: cannot start a transfer: %s", curl_multi_strerror(mrc));
    return mrc == CURLM_OUT_OF_MEMORY ? PM_ENOMEM : PM_EINTERNAL;
  }
  x->next = cl->xfers;
  if (cl->xfers)
    cl->xfers->prev = x;
  cl->xfers = x;
  cl->nxfers++;
  return 0;
}

void pm_curl_loop_remove(pm_curl_loop_t *cl, CURL *easy) {
  cl_xfer_t *x = NULL;
  if (!easy)
    return;
  for (x = cl->xfers; x && x->easy != easy; x = x->next)
    ;
  if (!x)
    return;
  /* curl tells the socket callback to drop sockets no longer needed (and
   * forgets the handle's pending CURLMSG_DONE, if any) */
  curl_multi_remove_handle(cl->multi, easy);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  cl_xfer_unlink(cl, x);
  free(x);
}

size_t pm_curl_loop_count(const pm_curl_loop_t *cl) {
  return cl->nxfers;
}

void pm_curl_loop_close(pm_curl_loop_t *cl, void (*done)(void *arg),
                        void *arg) {
  if (cl->closing)
    return;
  while (cl->xfers)
    pm_curl_loop_remove(cl, cl->xfers->easy);
  cl->closing = 1;
  cl->close_cb = done;
  cl->close_arg = arg;
  /* closes the cached connections: their sockets, if watched, come back
   * through the socket callback as CURL_POLL_REMOVE */
  curl_multi_cleanup(cl->multi);
  cl->multi = NULL;
  while (cl->socks)
    cl_sock_drop(cl->socks);
  uv_timer_stop(&cl->timer);
  uv_close((uv_handle_t *)&cl->timer, cl_on_timer_closed);
  if (!done)
    cl->close_cb = NULL;
}

void pm_curl_loop_free(pm_curl_loop_t *cl) {
  free(cl);
}

/* One asynchronous libpq connection on the loop: see pg_conn.h. */
#include "pg_conn.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <portalmetrics/plugin.h>

#include "log.h"

#define PG_COPY_CHUNK (256 * 1024)
#define PG_ADDRS_PER_HOST 4
#define PG_DEFAULT_TIMEOUT_US (INT64_C(30) * 1000000)

enum pg_state {
  PG_DOWN = 0,   /* no connection */
  PG_RESOLVING,  /* uv_getaddrinfo in flight */
  PG_CONNECTING, /* PQconnectPoll */
  PG_READY,      /* connected, idle */
  PG_BUSY,       /* a command runs */
  PG_CLOSED      /* pm_pg_close was called */
};

enum op_phase { OP_FLUSH, OP_COPY, OP_READ };

struct gai_req {
  uv_getaddrinfo_t req;
  pm_pg_t *pg;
  unsigned gen;
};

/* One element of the host list, and the addresses it stands for. */
typedef struct pg_host {
  char *host;  /* as written ("" for the default socket) */
  char *port;  /* this host's port, or NULL */
  int resolve; /* a name: resolve it */
  size_t naddr;
  char addr[PG_ADDRS_PER_HOST][INET6_ADDRSTRLEN];
} pg_host_t;

struct pm_pg {
  uv_loop_t *loop;
  int state;
  unsigned gen; /* bumped by every teardown: stale callbacks see it */
  PGconn *conn;
  uv_poll_t *poll; /* heap: re-created during connect; freed when closed */
  int poll_fd;
  int poll_events;
  uv_timer_t timer; /* connect or command timeout */
  unsigned pending; /* handles closing and resolutions in flight */
  int closing;
  void (*close_cb)(void *);
  void *close_arg;

  pm_pg_cb cb;
  void *arg;
  void (*on_broken)(void *, const char *);
  void *broken_arg;

  /* connect */
  char **kw, **val; /* NULL-terminated, owned */
  size_t nkw, capkw;
  pg_host_t *hosts;
  size_t nhosts;
  size_t resolving;    /* index of the host being resolved */
  struct gai_req *gai; /* the resolution in flight, or NULL */
  int kick;            /* the timer fires once at 0 ms to start connecting */
  int64_t timeout_us;

  /* command */
  int phase, after_flush;
  pm_pg_copy_t *copies;
  size_t ncopies, copy_i, copy_off;
  int copy_active, copy_end;
  PGresult **res;
  size_t nres, capres;
  int failed;
  char sqlstate[6];
  char err[1024];
};

static void pg_fail_connect(pm_pg_t *pg, const char *msg);
static void pg_connect_step(pm_pg_t *pg);
static void pg_op_progress(pm_pg_t *pg, int events);
static void pg_check_closed(pm_pg_t *pg);

/* ------------------------------------------------------------------ */
/* small helpers */

/* Copy a libpq message into buf as one line: newlines become "; ",
 * trailing blanks go. */
static void pg_oneline(char *buf, size_t len, const char *msg) {
  size_t o = 0;
  if (!msg)
    msg = "unknown error";
  for (const char *p = msg; *p && o + 3 < len; p++) {
    if (*p == '\n' || *p == '\r') {
      while (p[1] == ' ' || p[1] == '\t' || p[1] == '\n' || p[1] == '\r')
        p++;
      if (o > 0 && p[1] && buf[o - 1] != ';') {
        if (buf[o - 1] == '.')
          o--;
        buf[o++] = ';';
        buf[o++] = ' ';
      }
    } else if (*p == '\t') {
      buf[o++] = ' ';
    } else {
      buf[o++] = *p;
    }
  }
  while (o > 0 && (buf[o - 1] == ' ' || buf[o - 1] == ';' || buf[o - 1] == '.'))
    o--;
  buf[o] = '\0';
}

static void pg_notice(void *arg, const char *message) {
  char line[512];
  (void)arg;
  pg_oneline(line, sizeof line, message);
  pm_debug("postgresql: %s", line);
}

static void pg_free_kw(pm_pg_t *pg) {
  for (size_t i = 0; i < pg->nkw; i++) {
    free(pg->kw[i]);
    free(pg->val[i]);
  }
  free(pg->kw);
  free(pg->val);
  pg->kw = pg->val = NULL;
  pg->nkw = pg->capkw = 0;
  for (size_t i = 0; i < pg->nhosts; i++) {
    free(pg->hosts[i].host);
    free(pg->hosts[i].port);
  }
  free(pg->hosts);
  pg->hosts = NULL;
  pg->nhosts = 0;
}

static int pg_kw_find(const pm_pg_t *pg, const char *key) {
  for (size_t i = 0; i < pg->nkw; i++)
    if (strcmp(pg->kw[i], key) == 0)
      return (int)i;
  return -1;
}

/* Set key to value (replacing it if present); replace=0 keeps a value the
 * user gave. */
static int pg_kw_set(pm_pg_t *pg, const char *key, const char *value,
                     int replace) {
  int i = pg_kw_find(pg, key);
  char *v;
  if (i >= 0 && !replace)
    return 0;
  v = strdup(value);
  if (!v)
    return -1;
  if (i >= 0) {
    free(pg->val[i]);
    pg->val[i] = v;
    return 0;
  }
  if (pg->nkw + 2 > pg->capkw) {
    size_t cap = pg->capkw ? pg->capkw * 2 : 32;
    char **k = realloc(pg->kw, cap * sizeof *k);
    if (!k) {
      free(v);
      return -1;
    }
    pg->kw = k;
    char **vv = realloc(pg->val, cap * sizeof *vv);
    if (!vv) {
      free(v);
      return -1;
    }
    pg->val = vv;
    pg->capkw = cap;
  }
  pg->kw[pg->nkw] = strdup(key);
  if (!pg->kw[pg->nkw]) {
    free(v);
    return -1;
  }
  pg->val[pg->nkw] = v;
  pg->nkw++;
  pg->kw[pg->nkw] = NULL;
  pg->val[pg->nkw] = NULL;
  return 0;
}

static const char *pg_kw_get(const pm_pg_t *pg, const char *key) {
  int i = pg_kw_find(pg, key);
  return i >= 0 ? pg->val[i] : NULL;
}

/* Split s at commas into n malloc'd strings. */
static char **pg_split(const char *s, size_t *n) {
  size_t cnt = 1, i = 0;
  char **out;
  for (const char *p = s; *p; p++)
    cnt += *p == ',';
  out = calloc(cnt, sizeof *out);
  if (!out)
    return NULL;
  for (const char *p = s;; i++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    out[i] = strndup(p, len);
    if (!out[i]) {
      while (i > 0)
        free(out[--i]);
      free(out);
      return NULL;
    }
    if (!e)
      break;
    p = e + 1;
  }
  *n = cnt;
  return out;
}

static void pg_free_split(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static int pg_is_numeric_addr(const char *h) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* ------------------------------------------------------------------ */
/* the poll handle */

static void pg_on_handle_closed(uv_handle_t *h) {
  pm_pg_t *pg = h->data;
  if (h != (uv_handle_t *)&pg->timer)
    free(h);
  pg->pending--;
  pg_check_closed(pg);
}

static void pg_drop_poll(pm_pg_t *pg) {
  if (!pg->poll)
    return;
  uv_poll_stop(pg->poll);
  uv_close((uv_handle_t *)pg->poll, pg_on_handle_closed);
  pg->pending++;
  pg->poll = NULL;
  pg->poll_events = 0;
  pg->poll_fd = -1;
}

static void pg_on_poll(uv_poll_t *h, int status, int events);

/*
 * Watch the connection's socket for events. fresh: close the handle and
 * make a new one even if the descriptor number is the same. During
 * connect libpq may close its socket and open another that gets the same
 * number (next address, SSL retry); an old registration would then be
 * stale, so every PQconnectPoll step re-reads PQsocket and starts over.
 */
static int pg_watch(pm_pg_t *pg, int events, int fresh) {
  int fd = PQsocket(pg->conn);
  int rc;
  if (fd < 0) {
    pg_drop_poll(pg);
    return -1;
  }
  if (pg->poll && (fresh || fd != pg->poll_fd))
    pg_drop_poll(pg);
  if (!pg->poll) {
    pg->poll = malloc(sizeof *pg->poll);
    if (!pg->poll)
      return -1;
    rc = uv_poll_init(pg->loop, pg->poll, fd);
    if (rc < 0) {
      pm_error("postgresql: cannot watch socket %d: %s", fd, uv_strerror(rc));
      free(pg->poll);
      pg->poll = NULL;
      return -1;
    }
    pg->poll->data = pg;
    pg->poll_fd = fd;
    pg->poll_events = 0;
  }
  if (events == pg->poll_events)
    return 0;
  rc = uv_poll_start(pg->poll, events, pg_on_poll);
  if (rc < 0) {
    pm_error("postgresql: cannot watch socket %d: %s", fd, uv_strerror(rc));
    return -1;
  }
  pg->poll_events = events;
  return 0;
}

/* Stop watching (poll handle first), then PQfinish. */
static void pg_teardown(pm_pg_t *pg) {
  pg_drop_poll(pg);
  if (pg->conn) {
    PQfinish(pg->conn);
    pg->conn = NULL;
  }
  if (pg->state != PG_CLOSED && uv_is_active((uv_handle_t *)&pg->timer))
    uv_timer_stop(&pg->timer);
  for (size_t i = 0; i < pg->nres; i++)
    PQclear(pg->res[i]);
  free(pg->res);
  pg->res = NULL;
  pg->nres = pg->capres = 0;
  free(pg->copies);
  pg->copies = NULL;
  pg->ncopies = 0;
  pg_free_kw(pg);
  if (pg->gai) {
    uv_cancel((uv_req_t *)&pg->gai->req); /* its callback still runs */
    pg->gai = NULL;
  }
  pg->kick = 0;
  pg->gen++;
  if (pg->state != PG_CLOSED)
    pg->state = PG_DOWN;
}

/* ------------------------------------------------------------------ */
/* public basics */

pm_pg_t *pm_pg_new(uv_loop_t *loop) {
  pm_pg_t *pg = calloc(1, sizeof *pg);
  if (!pg)
    return NULL;
  pg->loop = loop;
  pg->poll_fd = -1;
  if (uv_timer_init(loop, &pg->timer) < 0) {
    free(pg);
    return NULL;
  }
  pg->timer.data = pg;
  return pg;
}

const char *pm_pg_error(const pm_pg_t *pg) {
  return pg->err;
}

int pm_pg_idle(const pm_pg_t *pg) {
  return pg->state == PG_READY;
}

int pm_pg_connected(const pm_pg_t *pg) {
  return pg->state == PG_READY || pg->state == PG_BUSY;
}

void pm_pg_set_on_broken(pm_pg_t *pg, void (*cb)(void *, const char *),
                         void *arg) {
  pg->on_broken = cb;
  pg->broken_arg = arg;
}

void pm_pg_reset(pm_pg_t *pg) {
  pg->cb = NULL;
  pg->arg = NULL;
  pg_teardown(pg);
}

static void pg_check_closed(pm_pg_t *pg) {
  if (pg->closing && pg->pending == 0) {
    void (*cb)(void *) = pg->close_cb;
    pg->closing = 0;
    if (cb)
      cb(pg->close_arg);
  }
}

void pm_pg_close(pm_pg_t *pg, void (*cb)(void *), void *arg) {
  pm_pg_reset(pg);
  pg->state = PG_CLOSED;
  pg->closing = 1;
  pg->close_cb = cb;
  pg->close_arg = arg;
  uv_close((uv_handle_t *)&pg->timer, pg_on_handle_closed);
  pg->pending++;
  /* A resolution in flight is cancelled if it has not started; its
   * callback runs either way and sees the new generation. */
}

void pm_pg_free(pm_pg_t *pg) {
  if (!pg)
    return;
  pg_free_kw(pg);
  free(pg);
}

/* ------------------------------------------------------------------ */
/* connect */

static void pg_resolve_next(pm_pg_t *pg);

static void pg_on_timeout(uv_timer_t *t) {
  pm_pg_t *pg = t->data;
  char msg[128];
  if (pg->kick) {
    pg->kick = 0;
    uv_timer_start(&pg->timer, pg_on_timeout,
                   (uint64_t)((pg->timeout_us + 999) / 1000), 0);
    pg_resolve_next(pg);
    return;
  }
  if (pg->state == PG_RESOLVING || pg->state == PG_CONNECTING) {
    snprintf(msg, sizeof msg, "timeout expired after %.1fs connecting",
             (double)pg->timeout_us / 1e6);
    pg_fail_connect(pg, msg);
  } else if (pg->state == PG_BUSY) {
    pm_pg_cb cb = pg->cb;
    void *arg = pg->arg;
    pm_pg_result_t r = {0};
    char err[128];
    snprintf(err, sizeof err,
             "no answer from the database within %.1fs; connection closed",
             (double)pg->timeout_us / 1e6);
    pg->cb = NULL;
    pg_teardown(pg);
    r.broken = 1;
    r.error = err;
    r.sqlstate = "";
    if (cb)
      cb(arg, &r);
  }
}

static void pg_fail_connect(pm_pg_t *pg, const char *msg) {
  pm_pg_cb cb = pg->cb;
  void *arg = pg->arg;
  pm_pg_result_t r = {0};
  char err[sizeof pg->err];
  pg_oneline(err, sizeof err, msg);
  pg->cb = NULL;
  pg_teardown(pg);
  r.broken = 1;
  r.error = err;
  r.sqlstate = "";
  if (cb)
    cb(arg, &r);
}

/* All names resolved: rewrite host/hostaddr/port and start libpq. */
static void pg_start_libpq(pm_pg_t *pg) {
  if (pg->nhosts > 0) {
    size_t cap = 64, n = 0;
    int any = 0, port_list = 0;
    for (size_t i = 0; i < pg->nhosts; i++) {
      any |= pg->hosts[i].resolve || pg->hosts[i].naddr > 0;
      port_list |= pg->hosts[i].port != NULL;
      cap += strlen(pg->hosts[i].host) * PG_ADDRS_PER_HOST +
             (INET6_ADDRSTRLEN + 16) * PG_ADDRS_PER_HOST;
    }
    if (any) {
      char *h = malloc(cap), *a = malloc(cap), *p = malloc(cap);
      size_t ho = 0, ao = 0, po = 0;
      int bad = !h || !a || !p;
      for (size_t i = 0; !bad && i < pg->nhosts; i++) {
        const pg_host_t *e = &pg->hosts[i];
        size_t k = e->naddr ? e->naddr : 1;
        for (size_t j = 0; j < k; j++, n++) {
          const char *sep = n ? "," : "";
          ho += (size_t)snprintf(h + ho, cap - ho, "%s%s", sep, e->host);
          ao += (size_t)snprintf(a + ao, cap - ao, "%s%s", sep,
                                 e->naddr ? e->addr[j] : "");
          if (port_list)
            po += (size_t)snprintf(p + po, cap - po, "%s%s", sep,
                                   e->port ? e->port : "");
        }
      }
      if (bad || pg_kw_set(pg, "host", h, 1) < 0 ||
          pg_kw_set(pg, "hostaddr", a, 1) < 0 ||
          (port_list && pg_kw_set(pg, "port", p, 1) < 0)) {
        free(h);
        free(a);
        free(p);
        pg_fail_connect(pg, "out of memory");
        return;
      }
      free(h);
      free(a);
      free(p);
    }
  }
  pg->conn = PQconnectStartParams((const char *const *)pg->kw,
                                  (const char *const *)pg->val, 0);
  pg_free_kw(pg); /* libpq keeps its own copies; the password goes too */
  if (!pg->conn) {
    pg_fail_connect(pg, "out of memory");
    return;
  }
  if (PQstatus(pg->conn) == CONNECTION_BAD) {
    pg_fail_connect(pg, PQerrorMessage(pg->conn));
    return;
  }
  PQsetNoticeProcessor(pg->conn, pg_notice, pg);
  pg->state = PG_CONNECTING;
  /* PQconnectStart acts as if PQconnectPoll returned PGRES_POLLING_WRITING */
  if (pg_watch(pg, UV_WRITABLE, 1) < 0)
    pg_fail_connect(pg, "cannot watch the database socket");
}

static void pg_on_resolved(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  struct gai_req *g = (struct gai_req *)req;
  pm_pg_t *pg = g->pg;
  unsigned gen = g->gen;
  free(g);
  pg->pending--;
  if (pg->gai == g)
    pg->gai = NULL;
  if (pg->closing || gen != pg->gen || pg->state != PG_RESOLVING) {
    uv_freeaddrinfo(res);
    pg_check_closed(pg);
    return;
  }
  pg_host_t *e = &pg->hosts[pg->resolving];
  if (status < 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "could not translate host name \"%s\": %s",
             e->host, uv_strerror(status));
    uv_freeaddrinfo(res);
    pg_fail_connect(pg, msg);
    return;
  }
  for (struct addrinfo *ai = res; ai && e->naddr < PG_ADDRS_PER_HOST;
       ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN];
    int dup = 0;
    if (ai->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, buf, sizeof buf);
    else
      continue;
    for (size_t j = 0; j < e->naddr; j++)
      dup |= strcmp(e->addr[j], buf) == 0;
    if (!dup)
      memcpy(e->addr[e->naddr++], buf, sizeof buf);
  }
  uv_freeaddrinfo(res);
  if (e->naddr == 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "could not translate host name \"%s\"", e->host);
    pg_fail_connect(pg, msg);
    return;
  }
  pg->resolving++;
  pg_resolve_next(pg);
}

/* Resolve the next host that is a name, off the loop; or start libpq. */
static void pg_resolve_next(pm_pg_t *pg) {
  while (pg->resolving < pg->nhosts && !pg->hosts[pg->resolving].resolve)
    pg->resolving++;
  if (pg->resolving >= pg->nhosts) {
    pg_start_libpq(pg);
    return;
  }
  struct gai_req *g = calloc(1, sizeof *g);
  struct addrinfo hints;
  int rc;
  if (!g) {
    pg_fail_connect(pg, "out of memory");
    return;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  g->pg = pg;
  g->gen = pg->gen;
  rc = uv_getaddrinfo(pg->loop, &g->req, pg_on_resolved,
                      pg->hosts[pg->resolving].host, NULL, &hints);
  if (rc < 0) {
    char msg[512];
    free(g);
    snprintf(msg, sizeof msg, "could not translate host name \"%s\": %s",
             pg->hosts[pg->resolving].host, uv_strerror(rc));
    pg_fail_connect(pg, msg);
    return;
  }
  pg->gai = g;
  pg->pending++;
}

/* Fill pg->hosts from the conninfo's host list, unless hostaddr is set. */
static int pg_plan_hosts(pm_pg_t *pg) {
  const char *host = pg_kw_get(pg, "host");
  const char *port = pg_kw_get(pg, "port");
  const char *hostaddr = pg_kw_get(pg, "hostaddr");
  char **hv = NULL, **pv = NULL;
  size_t nh = 0, np = 0;
  int need = 0;
  if (!host || !*host) {
    host = getenv("PGHOST");
    if (!host || !*host)
      return 0; /* libpq's default socket */
  }
  if (!hostaddr || !*hostaddr)
    hostaddr = getenv("PGHOSTADDR");
  if (hostaddr && *hostaddr)
    return 0; /* the user gave addresses: libpq resolves nothing */
  hv = pg_split(host, &nh);
  if (!hv)
    return -1;
  if (port && *port) {
    pv = pg_split(port, &np);
    if (!pv) {
      pg_free_split(hv, nh);
      return -1;
    }
  }
  pg->hosts = calloc(nh, sizeof *pg->hosts);
  if (!pg->hosts) {
    pg_free_split(hv, nh);
    pg_free_split(pv, np);
    return -1;
  }
  pg->nhosts = nh;
  for (size_t i = 0; i < nh; i++) {
    pg_host_t *e = &pg->hosts[i];
    e->host = hv[i];
    hv[i] = NULL;
    if (np > 1 && np == nh) {
      e->port = pv[i];
      pv[i] = NULL;
    } else if (np > 1) {
      e->port = NULL; /* a list of another length: libpq will say so */
    }
    if (e->host[0] == '\0' || e->host[0] == '/' || e->host[0] == '@') {
      /* a socket directory or the default: nothing to resolve */
    } else if (pg_is_numeric_addr(e->host)) {
      snprintf(e->addr[0], sizeof e->addr[0], "%s", e->host);
      e->naddr = 1;
    } else {
      e->resolve = 1;
      need = 1;
    }
  }
  pg_free_split(hv, nh);
  pg_free_split(pv, np);
  if (np > 1 && np != nh) {
    /* leave host and port as written: libpq reports the mismatch */
    for (size_t i = 0; i < pg->nhosts; i++)
      pg->hosts[i].resolve = 0, pg->hosts[i].naddr = 0;
    need = 0;
  }
  (void)need;
  return 0;
}

int pm_pg_connect(pm_pg_t *pg, const pm_pg_connect_opts_t *o, pm_pg_cb cb,
                  void *arg) {
  PQconninfoOption *opts, *opt;
  char *perr = NULL;
  if (pg->state != PG_DOWN)
    return PM_EINVAL;
  pg->err[0] = '\0';
  opts = PQconninfoParse(o->conninfo ? o->conninfo : "", &perr);
  if (!opts) {
    pg_oneline(pg->err, sizeof pg->err,
               perr ? perr : "out of memory parsing conninfo");
    int rc = perr ? PM_ECONFIG : PM_ENOMEM;
    PQfreemem(perr);
    return rc;
  }
  for (opt = opts; opt->keyword; opt++) {
    if (opt->val && pg_kw_set(pg, opt->keyword, opt->val, 1) < 0)
      goto nomem;
  }
  PQconninfoFree(opts);
  opts = NULL;
  /* TCP liveness: defaults unless the conninfo says otherwise. */
  if (pg_kw_set(pg, "keepalives", "1", 0) < 0 ||
      pg_kw_set(pg, "keepalives_idle", "30", 0) < 0 ||
      pg_kw_set(pg, "keepalives_interval", "10", 0) < 0 ||
      pg_kw_set(pg, "keepalives_count", "3", 0) < 0 ||
      pg_kw_set(pg, "tcp_user_timeout", "60000", 0) < 0 ||
      /* GSSAPI encryption ("prefer" by default) would talk to the KDC
       * from inside PQconnectPoll, blocking the loop: only on request */
      pg_kw_set(pg, "gssencmode", "disable", 0) < 0 ||
      pg_kw_set(pg, "client_encoding", "UTF8", 1) < 0)
    goto nomem;
  if (o->application_name &&
      pg_kw_set(pg, "application_name", o->application_name, 0) < 0)
    goto nomem;
  if (o->password && pg_kw_set(pg, "password", o->password, 1) < 0)
    goto nomem;
  if (pg_plan_hosts(pg) < 0)
    goto nomem;
  pg->cb = cb;
  pg->arg = arg;
  pg->timeout_us = o->timeout_us > 0 ? o->timeout_us : PG_DEFAULT_TIMEOUT_US;
  pg->state = PG_RESOLVING;
  pg->resolving = 0;
  pg->gen++;
  /* Start from the loop (a 0 ms timer that then becomes the timeout), so
   * that cb never runs inside this call. */
  pg->kick = 1;
  uv_timer_start(&pg->timer, pg_on_timeout, 0, 0);
  return 0;
nomem:
  if (opts)
    PQconninfoFree(opts);
  pg_free_kw(pg);
  snprintf(pg->err, sizeof pg->err, "out of memory");
  return PM_ENOMEM;
}

static void pg_connect_step(pm_pg_t *pg) {
  PostgresPollingStatusType st = PQconnectPoll(pg->conn);
  switch (st) {
  case PGRES_POLLING_FAILED:
    pg_fail_connect(pg, PQerrorMessage(pg->conn));
    return;
  case PGRES_POLLING_OK: {
    pm_pg_cb cb = pg->cb;
    void *arg = pg->arg;
    pm_pg_result_t r = {0};
    uv_timer_stop(&pg->timer);
    if (PQsetnonblocking(pg->conn, 1) != 0) {
      pg_fail_connect(pg, PQerrorMessage(pg->conn));
      return;
    }
    pg->state = PG_READY;
    if (pg_watch(pg, UV_READABLE, 1) < 0) {
      pg_fail_connect(pg, "cannot watch the database socket");
      return;
    }
    pg->cb = NULL;
    r.ok = 1;
    r.sqlstate = "";
    if (cb)
      cb(arg, &r);
    return;
  }
  case PGRES_POLLING_READING:
    if (pg_watch(pg, UV_READABLE, 1) < 0)
      pg_fail_connect(pg, "cannot watch the database socket");
    return;
  case PGRES_POLLING_WRITING:
  default:
    if (pg_watch(pg, UV_WRITABLE, 1) < 0)
      pg_fail_connect(pg, "cannot watch the database socket");
    return;
  }
}

/* ------------------------------------------------------------------ */
/* commands */

static void pg_finish_op(pm_pg_t *pg) {
  pm_pg_cb cb = pg->cb;
  void *arg = pg->arg;
  PGresult **res = pg->res;
  size_t nres = pg->nres;
  pm_pg_result_t r = {0};
  int broken = !pg->conn || PQstatus(pg->conn) == CONNECTION_BAD;
  char err[sizeof pg->err], state[sizeof pg->sqlstate];

  uv_timer_stop(&pg->timer);
  pg->res = NULL;
  pg->nres = pg->capres = 0;
  free(pg->copies);
  pg->copies = NULL;
  pg->ncopies = 0;
  pg->cb = NULL;
  r.ok = !pg->failed && !broken;
  r.broken = broken;
  if (broken && !pg->failed) {
    pg_oneline(pg->err, sizeof pg->err,
               pg->conn ? PQerrorMessage(pg->conn) : "connection lost");
    pg->sqlstate[0] = '\0';
  }
  memcpy(err, pg->err, sizeof err);
  memcpy(state, pg->sqlstate, sizeof state);
  r.error = err;
  r.sqlstate = state;
  if (broken) {
    pg_teardown(pg);
  } else {
    pg->state = PG_READY;
    if (pg_watch(pg, UV_READABLE, 0) < 0) {
      pg_teardown(pg);
      r.ok = 0;
      r.broken = 1;
    }
  }
  r.res = res;
  r.nres = nres;
  if (cb)
    cb(arg, &r);
  for (size_t i = 0; i < nres; i++)
    PQclear(res[i]);
  free(res);
}

static void pg_fail_broken(pm_pg_t *pg, const char *msg) {
  if (!pg->failed) {
    pg_oneline(pg->err, sizeof pg->err, msg);
    pg->sqlstate[0] = '\0';
    pg->failed = 1;
  }
  /* make sure finish sees it as broken */
  pg_drop_poll(pg);
  if (pg->conn) {
    PQfinish(pg->conn);
    pg->conn = NULL;
  }
  pg_finish_op(pg);
}

static void pg_record_error(pm_pg_t *pg, const PGresult *r) {
  const char *primary, *detail, *state;
  char line[768];
  if (pg->failed)
    return;
  pg->failed = 1;
  primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (!primary)
    primary = PQresultErrorMessage(r);
  if (detail)
    snprintf(line, sizeof line, "%s (%s)", primary, detail);
  else
    snprintf(line, sizeof line, "%s", primary);
  pg_oneline(pg->err, sizeof pg->err, line);
  snprintf(pg->sqlstate, sizeof pg->sqlstate, "%s", state ? state : "");
}

static int pg_keep_result(pm_pg_t *pg, PGresult *r) {
  if (pg->nres == pg->capres) {
    size_t cap = pg->capres ? pg->capres * 2 : 8;
    PGresult **n = realloc(pg->res, cap * sizeof *n);
    if (!n)
      return -1;
    pg->res = n;
    pg->capres = cap;
  }
  pg->res[pg->nres++] = r;
  return 0;
}

/* Drive the running command as far as it goes without blocking. */
static void pg_op_progress(pm_pg_t *pg, int events) {
  for (;;) {
    switch (pg->phase) {
    case OP_FLUSH: {
      int rc;
      if ((events & UV_READABLE) && !PQconsumeInput(pg->conn) &&
          PQstatus(pg->conn) == CONNECTION_BAD) {
        pg_fail_broken(pg, PQerrorMessage(pg->conn));
        return;
      }
      events = 0;
      rc = PQflush(pg->conn);
      if (rc < 0) {
        pg_fail_broken(pg, PQerrorMessage(pg->conn));
        return;
      }
      if (rc > 0) {
        /* libpq: wait for read-ready or write-ready while a flush is
         * pending, and consume input when readable */
        if (pg_watch(pg, UV_READABLE | UV_WRITABLE, 0) < 0)
          pg_fail_broken(pg, "cannot watch the database socket");
        return;
      }
      pg->phase = pg->after_flush;
      break;
    }
    case OP_COPY: {
      if (events & UV_READABLE)
        PQconsumeInput(pg->conn);
      events = 0;
      while (pg->copy_off < pg->copies[pg->copy_i].len) {
        const pm_pg_copy_t *c = &pg->copies[pg->copy_i];
        size_t n = c->len - pg->copy_off;
        int rc;
        if (n > PG_COPY_CHUNK)
          n = PG_COPY_CHUNK;
        rc = PQputCopyData(pg->conn, c->data + pg->copy_off, (int)n);
        if (rc == 0) {
          if (pg_watch(pg, UV_READABLE | UV_WRITABLE, 0) < 0)
            pg_fail_broken(pg, "cannot watch the database socket");
          return;
        }
        if (rc < 0)
          goto copy_failed;
        pg->copy_off += n;
      }
      {
        int rc = PQputCopyEnd(pg->conn, NULL);
        if (rc == 0) {
          if (pg_watch(pg, UV_READABLE | UV_WRITABLE, 0) < 0)
            pg_fail_broken(pg, "cannot watch the database socket");
          return;
        }
        if (rc < 0)
          goto copy_failed;
      }
      pg->copy_i++;
      pg->phase = OP_FLUSH;
      pg->after_flush = OP_READ;
      break;
    copy_failed:
      if (PQstatus(pg->conn) == CONNECTION_BAD) {
        pg_fail_broken(pg, PQerrorMessage(pg->conn));
        return;
      }
      /* the server ended the COPY (an error): read what it said */
      pg->copy_i++;
      pg->phase = OP_READ;
      break;
    }
    case OP_READ: {
      if (!PQconsumeInput(pg->conn) && PQstatus(pg->conn) == CONNECTION_BAD) {
        /* collect what libpq made of it (an error result), then finish */
      }
      events = 0;
      while (!PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
          pg_finish_op(pg);
          return;
        }
        switch (PQresultStatus(r)) {
        case PGRES_COPY_IN:
          PQclear(r);
          if (pg->copy_i < pg->ncopies) {
            pg->copy_off = 0;
            pg->phase = OP_COPY;
          } else {
            if (PQputCopyEnd(pg->conn, "no data for this COPY") < 0 &&
                PQstatus(pg->conn) == CONNECTION_BAD) {
              pg_fail_broken(pg, PQerrorMessage(pg->conn));
              return;
            }
            pg->phase = OP_FLUSH;
            pg->after_flush = OP_READ;
          }
          goto next_phase;
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
          PQclear(r);
          pg_fail_broken(pg, "unexpected COPY TO STDOUT");
          return;
        case PGRES_FATAL_ERROR:
          pg_record_error(pg, r);
          PQclear(r);
          break;
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
          if (pg_keep_result(pg, r) < 0) {
            PQclear(r);
            if (!pg->failed) {
              pg->failed = 1;
              snprintf(pg->err, sizeof pg->err, "out of memory");
              pg->sqlstate[0] = '\0';
            }
          }
          break;
        default:
          PQclear(r);
          break;
        }
      }
      if (PQstatus(pg->conn) == CONNECTION_BAD) {
        pg_fail_broken(pg, PQerrorMessage(pg->conn));
        return;
      }
      if (pg_watch(pg, UV_READABLE, 0) < 0)
        pg_fail_broken(pg, "cannot watch the database socket");
      return;
    }
    }
  next_phase:;
  }
}

int pm_pg_query(pm_pg_t *pg, const char *sql, int nparams,
                const char *const *params, const pm_pg_copy_t *copies,
                size_t ncopies, int64_t timeout_us, pm_pg_cb cb, void *arg) {
  int ok, rc;
  if (pg->state != PG_READY)
    return PM_EINVAL;
  pg->copies = NULL;
  pg->ncopies = 0;
  if (ncopies > 0) {
    pg->copies = malloc(ncopies * sizeof *pg->copies);
    if (!pg->copies)
      return PM_ENOMEM;
    memcpy(pg->copies, copies, ncopies * sizeof *copies);
    pg->ncopies = ncopies;
  }
  pg->copy_i = pg->copy_off = 0;
  pg->failed = 0;
  pg->err[0] = '\0';
  pg->sqlstate[0] = '\0';
  if (nparams > 0)
    ok = PQsendQueryParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
  else
    ok = PQsendQuery(pg->conn, sql);
  if (!ok) {
    pg_oneline(pg->err, sizeof pg->err, PQerrorMessage(pg->conn));
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
      pg->cb = NULL;
      pg_teardown(pg);
      return PM_EUNREACHABLE;
    }
    free(pg->copies);
    pg->copies = NULL;
    pg->ncopies = 0;
    return PM_EINVAL;
  }
  pg->cb = cb;
  pg->arg = arg;
  pg->state = PG_BUSY;
  pg->phase = OP_READ;
  pg->timeout_us = timeout_us;
  if (timeout_us > 0)
    uv_timer_start(&pg->timer, pg_on_timeout,
                   (uint64_t)((timeout_us + 999) / 1000), 0);
  /* Flush now, but read only from the poll callback, so cb never runs
   * inside this call. */
  rc = PQflush(pg->conn);
  if (rc < 0) {
    pg_oneline(pg->err, sizeof pg->err, PQerrorMessage(pg->conn));
    pg->cb = NULL;
    pg_teardown(pg);
    return PM_EUNREACHABLE;
  }
  if (rc > 0) {
    pg->phase = OP_FLUSH;
    pg->after_flush = OP_READ;
    rc = pg_watch(pg, UV_READABLE | UV_WRITABLE, 0);
  } else {
    rc = pg_watch(pg, UV_READABLE, 0);
  }
  if (rc < 0) {
    snprintf(pg->err, sizeof pg->err, "cannot watch the database socket");
    pg->cb = NULL;
    pg_teardown(pg);
    return PM_EUNREACHABLE;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* events */

static void pg_idle_input(pm_pg_t *pg) {
  PGnotify *n;
  if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
    void (*cb)(void *, const char *) = pg->on_broken;
    void *arg = pg->broken_arg;
    char why[1024];
    pg_oneline(why, sizeof why, PQerrorMessage(pg->conn));
    pg_teardown(pg);
    if (cb)
      cb(arg, why);
    return;
  }
  while ((n = PQnotifies(pg->conn)) != NULL)
    PQfreemem(n);
}

static void pg_on_poll(uv_poll_t *h, int status, int events) {
  pm_pg_t *pg = h->data;
  if (h != pg->poll)
    return; /* a handle being replaced */
  if (status < 0)
    events = UV_READABLE | UV_WRITABLE; /* let libpq find the error */
  switch (pg->state) {
  case PG_CONNECTING:
    pg_connect_step(pg);
    break;
  case PG_BUSY:
    pg_op_progress(pg, events);
    break;
  case PG_READY:
    if (events & UV_READABLE)
      pg_idle_input(pg);
    break;
  default:
    break;
  }
}

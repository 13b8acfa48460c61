/*
 * One asynchronous libpq connection on the libuv loop, for the writer:
 * connect (host names resolved with uv_getaddrinfo and passed as hostaddr,
 * PQconnectPoll driven by a uv_poll_t that is re-created after every poll
 * step, a uv_timer for the timeout) and run one command string at a time
 * (PQsendQuery or PQsendQueryParams, flushed while writable, COPY FROM
 * STDIN payloads fed with PQputCopyData in non-blocking mode). Never
 * blocks the loop. Loop thread only. Internal to the writer. Layer:
 * writer and spool.
 *
 * Connection defaults, each unless the conninfo sets it: keepalives=1,
 * keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
 * tcp_user_timeout=60000, gssencmode=disable (GSSAPI negotiation talks to
 * the KDC from inside PQconnectPoll); always client_encoding=UTF8. Host
 * names in `host` (or PGHOST) are resolved here, up to 4 addresses each,
 * and passed as `hostaddr` with `host` kept for TLS verification; a host
 * that only a service file names is resolved by libpq itself, blocking:
 * put it in the conninfo instead.
 */
#ifndef PM_PG_CONN_H
#define PM_PG_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include <uv.h>

typedef struct pm_pg pm_pg_t;

/* What a connect or a command produced. Valid only inside the callback. */
typedef struct pm_pg_result {
  int ok;               /* 1: connected / every statement succeeded */
  int broken;           /* the connection is gone (already closed) */
  const char *error;    /* !ok: one line, never a password */
  const char *sqlstate; /* !ok: five characters, or "" (no SQLSTATE) */
  PGresult *const *res; /* the statements' results in order (tuples or
                           command ok; COPY_IN results are not kept) */
  size_t nres;
} pm_pg_result_t;

typedef void (*pm_pg_cb)(void *arg, const pm_pg_result_t *r);

/* A COPY FROM STDIN payload: fed to the n-th COPY of a command string. */
typedef struct pm_pg_copy {
  const char *data;
  size_t len;
} pm_pg_copy_t;

typedef struct pm_pg_connect_opts {
  const char *conninfo;         /* key=value or URI */
  const char *password;         /* NULL: none (overrides conninfo's) */
  const char *application_name; /* used unless conninfo sets one */
  int64_t timeout_us;           /* whole connect, DNS included; 0: 30 s */
} pm_pg_connect_opts_t;

pm_pg_t *pm_pg_new(uv_loop_t *loop);

/*
 * Connect. cb runs once, later, with ok or the reason (r->broken is set
 * on failure), unless pm_pg_reset or pm_pg_close comes first. Returns 0;
 * PM_EINVAL when a connection exists or is being made; PM_ECONFIG when
 * the conninfo does not parse (pm_pg_error says why); PM_ENOMEM. When it
 * returns an error, cb is never called.
 */
int pm_pg_connect(pm_pg_t *pg, const pm_pg_connect_opts_t *o, pm_pg_cb cb,
                  void *arg);

/*
 * Send one command string: PQsendQuery when nparams == 0 (several
 * statements allowed), else PQsendQueryParams (text parameters, one
 * statement). The i-th COPY ... FROM STDIN met gets copies[i]. cb runs
 * once when the server is done (r->ok: no statement failed), unless
 * pm_pg_reset or pm_pg_close comes first. A command still running after
 * timeout_us (0: none) breaks the connection. Returns 0, PM_EINVAL (not
 * connected or busy) or PM_EUNREACHABLE (the send failed: the connection
 * is closed, cb is not called).
 */
int pm_pg_query(pm_pg_t *pg, const char *sql, int nparams,
                const char *const *params, const pm_pg_copy_t *copies,
                size_t ncopies, int64_t timeout_us, pm_pg_cb cb, void *arg);

/* Called when an idle connection is found dead (server shutdown, network):
 * the connection is already closed. */
void pm_pg_set_on_broken(pm_pg_t *pg, void (*cb)(void *arg, const char *why),
                         void *arg);

/* The reason of the last synchronous failure, one line. */
const char *pm_pg_error(const pm_pg_t *pg);

/* 1 when connected and no command runs. */
int pm_pg_idle(const pm_pg_t *pg);
/* 1 when connected (maybe busy). */
int pm_pg_connected(const pm_pg_t *pg);

/* Drop the connection and whatever runs on it, without callbacks. The
 * poll handle is stopped before PQfinish. */
void pm_pg_reset(pm_pg_t *pg);

/* Reset, then close every handle; cb (may be NULL) once all are closed.
 * Nothing may be called afterwards but pm_pg_free. */
void pm_pg_close(pm_pg_t *pg, void (*cb)(void *arg), void *arg);
/* After close's cb (or if pm_pg_connect was never called). */
void pm_pg_free(pm_pg_t *pg);

#endif

/*
 * The HL7 listener's insides, shared by hl7.c (the instance: settings,
 * the listening socket, counting) and hl7_conn.c (one connection:
 * reading, TLS, framing, timeouts, ACKs in arrival order).
 */
#ifndef HL7_INT_H
#define HL7_INT_H

#include <stddef.h>
#include <stdint.h>
#include <portalmetrics/plugin.h>
#include <uv.h>

#include "hl7_ack.h"
#include "hl7_frame.h"
#include "hl7_map.h"
#include "hl7_msg.h"
#include "hl7_tls.h"

/* Why a message or a connection was refused: hl7.errors{reason}. */
typedef enum {
  R_NO_MSH,
  R_ENCODING,
  R_REQUIRED,
  R_CHARS,
  R_TOO_LONG,
  R_OVERSIZE,
  R_JUNK,
  R_VERSION,
  R_NOT_ALLOWED,
  R_TOO_MANY,
  R_FRAME_TIMEOUT,
  R_IDLE_TIMEOUT,
  R_TLS,
  R_BUSY,
  R_REFUSED, /* the daemon refused the samples (e.g. max_series) */
  R_CLOSED_MID_FRAME,
  R_N
} hl7_reason_t;

typedef struct hl7_net {
  int family; /* AF_INET, AF_INET6 */
  unsigned char addr[16];
  int bits;
} hl7_net_t;

typedef struct hl7_conn hl7_conn_t;

typedef struct hl7 {
  pm_instance_t *inst;
  const pm_host_t *host;
  uv_loop_t *loop;

  /* settings */
  char listen_host[64];
  int listen_port;
  size_t max_message;
  int64_t idle_timeout_us, frame_timeout_us;
  size_t max_connections;
  hl7_net_t *allow;
  size_t nallow;
  hl7_tls_ctx_t *tls; /* NULL: plaintext */
  int busy_ar;        /* busy: send AR (else close without ACK) */
  int count_non_production;
  int bucket_received;  /* bucket by arrival, not the message's time */
  size_t max_in_flight; /* messages awaiting their ACK per connection */
  hl7_map_t map;

  uv_tcp_t server;
  int listening, stopping;
  hl7_conn_t *conns; /* doubly linked */
  size_t nconns;
  uint64_t next_conn_id;
  uint64_t ack_seq;          /* our ACKs' control ids */
  uint64_t errors[R_N];      /* counted, to emit */
  uint64_t errors_sent[R_N]; /* already emitted */
  uv_timer_t report;         /* emits the error counts */
  int64_t log_window_us;     /* hl7_log_limited: this minute's start */
  unsigned log_count, log_suppressed;
  int closing_handles;
} hl7_t;

/* hl7.c, for the connections */
const char *hl7_reason_name(hl7_reason_t r);
void hl7_count_error(hl7_t *h, hl7_reason_t r);
/* Count msg (already parsed, version checked) and emit it with its
 * idempotency key; on_durable(arg) fires as for emit. Returns emit's
 * result. */
int hl7_emit_message(hl7_t *h, const hl7_msg_t *msg, int64_t received_us,
                     pm_durable_cb on_durable, void *arg);
void hl7_conn_gone(hl7_t *h, hl7_conn_t *c); /* unlink; maybe stopped() */
/* Log a line about one message or connection: at most 20 a minute, so a
 * flood of bad input cannot flood the journal (the rest are counted). */
void hl7_log_limited(hl7_t *h, int level, const char *fmt, ...) PM_PRINTF(3, 4);

/* hl7_conn.c */
/* Take a new connection from h->server. */
void hl7_conn_accept(hl7_t *h);
/* Close every connection (on stop). */
void hl7_conn_close_all(hl7_t *h);

#endif

/*
 * One MLLP connection of the HL7 listener: bytes in (through TLS when
 * configured), frames out of them, each message parsed and emitted, and
 * its ACK sent -- in arrival order, one frame in one write -- once its
 * samples are durable. A message whose emit is still pending when the
 * connection goes keeps its own memory until its completion fires: the
 * sender never got that ACK and sends the message again.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hl7_int.h"

#define READ_CHUNK 65536
#define TLS_OUT_CHUNK 16384

typedef enum { M_WAIT, M_READY, M_CLOSE } msg_state_t;

/* A message awaiting its ACK. */
typedef struct msg {
  struct msg *next;
  hl7_conn_t *c; /* NULL once the connection is gone */
  msg_state_t state;
  hl7_msg_t m;
  char *ack;
  int ack_len;
} msg_t;

struct hl7_conn {
  hl7_conn_t *prev, *next;
  hl7_t *h;
  uint64_t id;
  uv_tcp_t tcp;
  uv_timer_t timer; /* idle or frame timeout */
  char peer[64];
  hl7_framer_t fr;
  hl7_tls_t *tls;
  msg_t *head, *tail;
  size_t inflight;
  int closing, paused, timer_frame;
  int stop_reading;      /* a close is queued behind pending ACKs */
  uint64_t frames;       /* frames seen: a new one gets a new deadline */
  uint64_t armed_frames; /* frames when the frame timer was armed */
  int handles;           /* open handles */
  char *rbuf;            /* read buffer (TLS: ciphertext) */
  char *pbuf;            /* TLS plaintext */
};

static void conn_close(hl7_conn_t *c, const char *why);
static void conn_flush(hl7_conn_t *c);

/* ------------------------------------------------------------------ */
/* writing */

typedef struct wreq {
  uv_write_t req;
  hl7_conn_t *c;
  char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  hl7_conn_t *c = w->c;
  free(w);
  if (status < 0 && status != UV_ECANCELED && !c->closing)
    conn_close(c, uv_strerror(status));
}

/* One write of len bytes (plaintext: encrypted first under TLS). */
static int conn_write(hl7_conn_t *c, const char *p, size_t len) {
  wreq_t *w;
  uv_buf_t b;
  size_t n = len;
  if (c->tls) {
    char tmp[TLS_OUT_CHUNK];
    size_t got, total = 0, cap = len + 1024;
    if (p && hl7_tls_write(c->tls, p, len) != 0)
      return -1;
    w = malloc(sizeof *w + cap);
    if (!w)
      return -1;
    /* gather every record so the ACK leaves in one write */
    while ((got = hl7_tls_take_output(c->tls, tmp, sizeof tmp)) > 0) {
      if (total + got > cap) {
        wreq_t *nw;
        cap = (total + got) * 2;
        nw = realloc(w, sizeof *w + cap);
        if (!nw) {
          free(w);
          return -1;
        }
        w = nw;
      }
      memcpy(w->data + total, tmp, got);
      total += got;
    }
    if (total == 0) {
      free(w);
      return 0;
    }
    n = total;
  } else {
    w = malloc(sizeof *w + len);
    if (!w)
      return -1;
    memcpy(w->data, p, len);
  }
  w->c = c;
  b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(w);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* timers */

static void on_timeout(uv_timer_t *t) {
  hl7_conn_t *c = t->data;
  if (c->timer_frame) {
    hl7_count_error(c->h, R_FRAME_TIMEOUT);
    hl7_log_limited(c->h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): a message did not arrive "
                    "whole within frame_timeout; closed",
                    c->id, c->peer);
    conn_close(c, NULL);
  } else {
    hl7_count_error(c->h, R_IDLE_TIMEOUT);
    hl7_log_limited(c->h, PM_LOG_INFO,
                    "connection %" PRIu64 " (%s): idle for idle_timeout; "
                    "closed",
                    c->id, c->peer);
    conn_close(c, NULL);
  }
}

/* The frame timer while a frame is open; the idle timer while nothing
 * is open or awaited; none while ACKs are pending (the sender waits on
 * us then). */
static void conn_arm(hl7_conn_t *c) {
  int64_t us;
  if (c->closing)
    return;
  if (c->paused || c->stop_reading) {
    /* not reading: the wait is ours, not the sender's */
    uv_timer_stop(&c->timer);
    return;
  }
  if (hl7_framer_in_frame(&c->fr) ||
      (c->tls && !hl7_tls_handshake_done(c->tls))) {
    /* each message (and the handshake) gets frame_timeout from its start */
    if (c->timer_frame && uv_is_active((uv_handle_t *)&c->timer) &&
        c->armed_frames == c->frames)
      return;
    c->timer_frame = 1;
    c->armed_frames = c->frames;
    us = c->h->frame_timeout_us;
  } else if (c->inflight == 0) {
    c->timer_frame = 0;
    us = c->h->idle_timeout_us;
  } else {
    uv_timer_stop(&c->timer);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, (uint64_t)(us / 1000) + 1, 0);
}

/* ------------------------------------------------------------------ */
/* messages */

static void msg_free(msg_t *m) {
  free(m->ack);
  free(m);
}

static int msg_ack(hl7_conn_t *c, msg_t *m, hl7_ack_kind_t k, int err,
                   const char *text) {
  char buf[HL7_ACK_MAX], id[32];
  int n;
  snprintf(id, sizeof id, "PM%" PRIu64, ++c->h->ack_seq);
  n = hl7_ack_build(&m->m, k, err, text, id,
                    (long long)(c->h->host->now_us(c->h->inst) / 1000000), buf,
                    sizeof buf);
  if (n < 0 || !(m->ack = malloc((size_t)n)))
    return -1;
  memcpy(m->ack, buf, (size_t)n);
  m->ack_len = n;
  m->state = M_READY;
  return 0;
}

static void on_durable(pm_instance_t *inst, void *arg, int status) {
  msg_t *m = arg;
  hl7_conn_t *c = m->c;
  (void)inst;
  if (!c) { /* the connection went: the sender resends it */
    msg_free(m);
    return;
  }
  if (status == 0) {
    if (msg_ack(c, m, HL7_ACK_ACCEPT, 0, NULL) != 0)
      m->state = M_CLOSE;
  } else if (status == PM_ESTOPPED) {
    m->state = M_CLOSE; /* shutting down: no ACK, the sender retries */
  } else {
    hl7_count_error(c->h, R_REFUSED);
    hl7_log_limited(c->h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): message \"%s\": the daemon "
                    "could not store it (%s); AR sent",
                    c->id, c->peer, m->m.control_id,
                    c->h->host->strerror(status));
    if (msg_ack(c, m, HL7_ACK_REJECT, HL7_ERR_APPLICATION,
                "could not store the message; send it again") != 0)
      m->state = M_CLOSE;
  }
  conn_flush(c);
}

static void enqueue(hl7_conn_t *c, msg_t *m) {
  m->c = c;
  if (c->tail)
    c->tail->next = m;
  else
    c->head = m;
  c->tail = m;
  c->inflight++;
  if (c->inflight >= c->h->max_in_flight && !c->paused) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->paused = 1;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf);

/* Send the ACKs that are ready, in arrival order. */
static void conn_flush(hl7_conn_t *c) {
  while (c->head && c->head->state != M_WAIT && !c->closing) {
    msg_t *m = c->head;
    c->head = m->next;
    if (!c->head)
      c->tail = NULL;
    c->inflight--;
    if (m->state == M_CLOSE) {
      msg_free(m);
      conn_close(c, NULL);
      return;
    }
    if (conn_write(c, m->ack, (size_t)m->ack_len) != 0) {
      msg_free(m);
      conn_close(c, "cannot send an ACK");
      return;
    }
    msg_free(m);
  }
  if (c->paused && c->inflight < c->h->max_in_flight && !c->closing &&
      !c->stop_reading) {
    c->paused = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
  conn_arm(c);
}

static hl7_reason_t reason_of(hl7_err_t e) {
  switch (e) {
  case HL7_E_NOMSH:
    return R_NO_MSH;
  case HL7_E_ENCODING:
    return R_ENCODING;
  case HL7_E_REQUIRED:
    return R_REQUIRED;
  case HL7_E_CHARS:
    return R_CHARS;
  default:
    return R_TOO_LONG;
  }
}

/* One framed message. Returns nonzero to stop reading this feed. */
static int on_message(hl7_conn_t *c, const char *data, size_t len) {
  hl7_t *h = c->h;
  msg_t *m = calloc(1, sizeof *m);
  hl7_err_t e;
  int rc;
  if (!m) {
    conn_close(c, "out of memory");
    return 1;
  }
  e = hl7_msg_parse(data, len, &m->m);
  if (e != HL7_OK) {
    hl7_count_error(h, reason_of(e));
    hl7_log_limited(h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): message \"%s\": %s; AE sent",
                    c->id, c->peer, m->m.control_id, hl7_err_str(e));
    enqueue(c, m);
    if (msg_ack(c, m, HL7_ACK_ERROR,
                e == HL7_E_REQUIRED ? HL7_ERR_REQUIRED_FIELD
                : e == HL7_E_NOMSH  ? HL7_ERR_SEGMENT_SEQUENCE
                                    : HL7_ERR_DATA_TYPE,
                hl7_err_str(e)) != 0)
      m->state = M_CLOSE;
    conn_flush(c);
    return c->closing;
  }
  if (strncmp(m->m.version, "2.", 2) != 0) {
    hl7_count_error(h, R_VERSION);
    hl7_log_limited(h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): message \"%s\": its HL7 "
                    "version (MSH-12) is not 2.x; AR sent",
                    c->id, c->peer, m->m.control_id);
    enqueue(c, m);
    if (msg_ack(c, m, HL7_ACK_REJECT, HL7_ERR_UNSUPPORTED_VERSION,
                "unsupported version: this listener speaks HL7 v2.x") != 0)
      m->state = M_CLOSE;
    conn_flush(c);
    return c->closing;
  }
  enqueue(c, m);
  rc = hl7_emit_message(h, &m->m, h->host->now_us(h->inst), on_durable, m);
  if (rc == 0)
    return 0; /* on_durable sends the ACK */
  if (rc == PM_EBUSY) {
    hl7_count_error(h, R_BUSY);
    if (h->busy_ar) {
      if (msg_ack(c, m, HL7_ACK_REJECT, HL7_ERR_APPLICATION,
                  "busy: send it again later") != 0)
        m->state = M_CLOSE;
    } else {
      hl7_log_limited(h, PM_LOG_WARNING,
                      "connection %" PRIu64 " (%s): the daemon cannot take "
                      "messages now (its spool is full); closing without "
                      "ACK so the sender retries",
                      c->id, c->peer);
      m->state = M_CLOSE;
    }
  } else if (rc == PM_ESTOPPED) {
    m->state = M_CLOSE;
  } else {
    hl7_count_error(h, R_REFUSED);
    hl7_log_limited(h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): message \"%s\": the daemon "
                    "refused its samples (%s); AR sent",
                    c->id, c->peer, m->m.control_id, h->host->strerror(rc));
    if (msg_ack(c, m, HL7_ACK_REJECT, HL7_ERR_APPLICATION,
                "the message could not be counted") != 0)
      m->state = M_CLOSE;
  }
  if (m->state == M_CLOSE && !c->closing) {
    /* the connection ends at this message: read nothing more, whose ACK
     * could never be sent */
    c->stop_reading = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  conn_flush(c);
  return c->closing || c->stop_reading;
}

static int on_frame(void *arg, hl7_frame_event_t ev, const char *data,
                    size_t len) {
  hl7_conn_t *c = arg;
  switch (ev) {
  case HL7_FRAME:
    c->frames++;
    return on_message(c, data, len);
  case HL7_JUNK:
    hl7_count_error(c->h, R_JUNK);
    hl7_log_limited(c->h, PM_LOG_INFO,
                    "connection %" PRIu64 " (%s): %zu bytes outside a "
                    "message skipped",
                    c->id, c->peer, len);
    return 0;
  case HL7_OVERSIZE:
    hl7_count_error(c->h, R_OVERSIZE);
    hl7_log_limited(c->h, PM_LOG_WARNING,
                    "connection %" PRIu64 " (%s): a message over "
                    "max_message (%zu bytes); closed",
                    c->id, c->peer, c->h->max_message);
    conn_close(c, NULL);
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* reading */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
  hl7_conn_t *c = hd->data;
  (void)suggested;
  *buf = uv_buf_init(c->rbuf, READ_CHUNK);
}

static void feed(hl7_conn_t *c, const char *p, size_t n) {
  if (hl7_framer_feed(&c->fr, p, n, on_frame, c) < 0 && !c->closing)
    conn_close(c, "out of memory");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  hl7_conn_t *c = s->data;
  (void)buf;
  if (c->closing)
    return;
  if (nread < 0) {
    if (hl7_framer_in_frame(&c->fr)) {
      hl7_count_error(c->h, R_CLOSED_MID_FRAME);
      hl7_log_limited(c->h, PM_LOG_WARNING,
                      "connection %" PRIu64 " (%s): closed in the middle "
                      "of a message",
                      c->id, c->peer);
    }
    conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
    return;
  }
  if (nread == 0)
    return;
  if (!c->tls) {
    feed(c, c->rbuf, (size_t)nread);
  } else {
    long got = 0;
    if (hl7_tls_feed(c->tls, c->rbuf, (size_t)nread) != 0) {
      hl7_count_error(c->h, R_TLS);
      hl7_log_limited(c->h, PM_LOG_WARNING,
                      "connection %" PRIu64 " (%s): TLS: %s; closed", c->id,
                      c->peer, hl7_tls_error(c->tls));
      conn_write(c, NULL, 0); /* the alert, if any */
      conn_close(c, NULL);
      return;
    }
    while (!c->closing && (got = hl7_tls_read(c->tls, c->pbuf, READ_CHUNK)) > 0)
      feed(c, c->pbuf, (size_t)got);
    if (!c->closing)
      conn_write(c, NULL, 0); /* handshake records */
    if (got == -1 && !c->closing) {
      hl7_count_error(c->h, R_TLS);
      hl7_log_limited(c->h, PM_LOG_WARNING,
                      "connection %" PRIu64 " (%s): TLS: %s; closed", c->id,
                      c->peer, hl7_tls_error(c->tls));
      conn_close(c, NULL);
      return;
    }
    if (got == -2 && !c->closing) {
      conn_close(c, NULL);
      return;
    }
  }
  if (!c->closing)
    conn_arm(c);
}

/* ------------------------------------------------------------------ */
/* life cycle */

static void on_conn_closed(uv_handle_t *hd) {
  hl7_conn_t *c = hd->data;
  hl7_t *h = c->h;
  if (--c->handles > 0)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  hl7_framer_free(&c->fr);
  if (c->tls)
    hl7_tls_free(c->tls);
  free(c->rbuf);
  free(c->pbuf);
  free(c);
  hl7_conn_gone(h, NULL);
}

static void conn_close(hl7_conn_t *c, const char *why) {
  msg_t *m, *next;
  if (c->closing)
    return;
  c->closing = 1;
  if (why)
    hl7_log_limited(c->h, PM_LOG_INFO, "connection %" PRIu64 " (%s): %s", c->id,
                    c->peer, why);
  /* ACKs not sent: the sender resends those messages */
  for (m = c->head; m; m = next) {
    next = m->next;
    if (m->state == M_WAIT)
      m->c = NULL; /* freed by its completion */
    else
      msg_free(m);
  }
  c->head = c->tail = NULL;
  c->inflight = 0;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static int allowed(const hl7_t *h, const struct sockaddr_storage *ss) {
  const unsigned char *a;
  int fam = ss->ss_family;
  unsigned char mapped[4];
  if (h->nallow == 0)
    return 1;
  if (fam == AF_INET) {
    a = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
  } else {
    a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
    /* an IPv4 peer on a dual-stack socket */
    static const unsigned char v4map[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, v4map, 12) == 0) {
      memcpy(mapped, a + 12, 4);
      a = mapped;
      fam = AF_INET;
    }
  }
  for (size_t i = 0; i < h->nallow; i++) {
    const hl7_net_t *n = &h->allow[i];
    int full = n->bits / 8, rest = n->bits % 8;
    if (n->family != fam)
      continue;
    if (memcmp(a, n->addr, (size_t)full) != 0)
      continue;
    if (rest && ((a[full] ^ n->addr[full]) & (0xff << (8 - rest)) & 0xff))
      continue;
    return 1;
  }
  return 0;
}

static void peer_name(const struct sockaddr_storage *ss, char *out,
                      size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    port = ntohs(s4->sin_port);
    snprintf(out, len, "%s:%d", ip, port);
  } else {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    port = ntohs(s6->sin6_port);
    snprintf(out, len, "[%s]:%d", ip, port);
  }
}

static void on_refused_closed(uv_handle_t *hd) {
  free(hd);
}

void hl7_conn_accept(hl7_t *h) {
  hl7_conn_t *c;
  struct sockaddr_storage ss;
  int sslen = sizeof ss;

  if (h->stopping || h->nconns >= h->max_connections) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t)
      return;
    uv_tcp_init(h->loop, t);
    if (uv_accept((uv_stream_t *)&h->server, (uv_stream_t *)t) == 0 &&
        !h->stopping) {
      hl7_count_error(h, R_TOO_MANY);
      hl7_log_limited(h, PM_LOG_WARNING,
                      "refusing a connection: max_connections (%zu) reached",
                      h->max_connections);
    }
    uv_close((uv_handle_t *)t, on_refused_closed);
    return;
  }
  c = calloc(1, sizeof *c);
  if (!c || !(c->rbuf = malloc(READ_CHUNK)) ||
      (h->tls && !(c->pbuf = malloc(READ_CHUNK))) ||
      hl7_framer_init(&c->fr, h->max_message) != 0) {
    if (c) {
      free(c->rbuf);
      free(c->pbuf);
      free(c);
    }
    h->host->log(h->inst, PM_LOG_ERROR, "out of memory accepting a connection");
    return;
  }
  c->h = h;
  c->id = ++h->next_conn_id;
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->next = h->conns;
  if (h->conns)
    h->conns->prev = c;
  h->conns = c;
  h->nconns++;
  if (uv_accept((uv_stream_t *)&h->server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c, NULL);
    return;
  }
  snprintf(c->peer, sizeof c->peer, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0)
    peer_name(&ss, c->peer, sizeof c->peer);
  else
    memset(&ss, 0, sizeof ss);
  if (!allowed(h, &ss)) {
    hl7_count_error(h, R_NOT_ALLOWED);
    hl7_log_limited(h, PM_LOG_WARNING,
                    "refusing a connection from %s: not in settings.allow",
                    c->peer);
    conn_close(c, NULL);
    return;
  }
  if (h->tls && !(c->tls = hl7_tls_new(h->tls))) {
    conn_close(c, "out of memory");
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  hl7_log_limited(h, PM_LOG_DEBUG, "connection %" PRIu64 " from %s", c->id,
                  c->peer);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  conn_arm(c);
}

void hl7_conn_close_all(hl7_t *h) {
  for (hl7_conn_t *c = h->conns; c; c = c->next)
    conn_close(c, NULL);
}

/*
 * hl7: a listener that counts HL7 v2 messages from MLLP feeds
 * (scheduling, results, registration) and acknowledges each one only once
 * its samples are durable in the daemon's spool.
 *
 * This file is the instance: settings, the listening socket, and what a
 * message counts. hl7_conn.c runs the connections. Nothing of a message
 * but MSH-3/4/9/10 (and the times and statuses that bucket and filter it)
 * leaves the parser, so nothing else can reach a log, a sample or a file.
 */
#include <arpa/inet.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hl7_int.h"

#define DAY_US (INT64_C(86400) * 1000000)
#define REPORT_MS 1000 /* retries error counts a full spool refused */

static const pm_metric_decl_t hl7_metrics[] = {
    {"hl7.messages", PM_COUNT, "messages",
     "HL7 messages received and accepted, by type, trigger and sending "
     "facility, per local day of the message's event time"},
    {"hl7.errors", PM_COUNT, "events",
     "messages or connections refused by the HL7 listener, by reason, per "
     "local day"},
    {NULL, 0, NULL, NULL}};

static const pm_setting_decl_t tls_settings[] = {
    {"cert_file", PM_T_STRING, NULL, 1, "PEM certificate chain", NULL},
    {"key_file", PM_T_STRING, NULL, 1, "PEM private key of the certificate",
     NULL},
    {"ca_file", PM_T_STRING, NULL, 0,
     "CAs that client certificates must chain to", NULL},
    {"verify_client", PM_T_BOOL, "false", 0,
     "require a client certificate signed by ca_file", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t map_rule[] = {
    {"type", PM_T_STRING, NULL, 1, "message type (MSH-9.1), e.g. SIU", NULL},
    {"trigger", PM_T_STRING, NULL, 1, "trigger event (MSH-9.2), e.g. S12",
     NULL},
    {"metric", PM_T_STRING, NULL, 1,
     "metric it counts (\"\": count nothing for it)", NULL},
    {"result_status", PM_T_STRING, "", 0,
     "ORU: OBR-25 statuses that count, e.g. \"FC\" (empty: any)", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t map_item[] = {
    {"rule", PM_T_GROUP, NULL, 0, "one rule", map_rule},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t allow_item[] = {
    {"addr", PM_T_STRING, NULL, 0, "an address or CIDR", NULL},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const pm_setting_decl_t hl7_settings[] = {
    {"listen", PM_T_STRING, "127.0.0.1:2575", 0,
     "address:port to listen on ([v6]:port for IPv6)", NULL},
    {"max_message", PM_T_SIZE, "1MiB", 0, "largest message accepted", NULL},
    {"idle_timeout", PM_T_DURATION, "5m", 0,
     "close a connection silent this long between messages", NULL},
    {"frame_timeout", PM_T_DURATION, "30s", 0,
     "a started message must arrive whole within this (slow senders are "
     "cut off)",
     NULL},
    {"max_connections", PM_T_INT, "64", 0, "connections at once", NULL},
    {"allow", PM_T_LIST, NULL, 0,
     "peer addresses or CIDRs allowed to connect (absent: any)", allow_item},
    {"tls", PM_T_GROUP, NULL, 0, "TLS (OpenSSL) for every connection",
     tls_settings},
    {"allow_plaintext", PM_T_BOOL, "false", 0,
     "allow a non-loopback address without TLS (HL7 carries patient data)",
     NULL},
    {"busy_ack", PM_T_STRING, "close", 0,
     "when the daemon cannot take messages: \"close\" (no ACK, the sender "
     "retries) or \"AR\"",
     NULL},
    {"count_non_production", PM_T_BOOL, "false", 0,
     "count messages whose MSH-11 is not P in the portal metrics too", NULL},
    {"bucket_by", PM_T_STRING, "event", 0,
     "\"event\": the day of EVN-2 or MSH-7; \"received\": the day it arrived",
     NULL},
    {"max_in_flight", PM_T_INT, "64", 0,
     "messages a connection may have awaiting their ACK before reading "
     "pauses",
     NULL},
    {"map", PM_T_LIST, NULL, 0,
     "counting rules replacing or adding to the defaults", map_item},
    {NULL, 0, NULL, 0, NULL, NULL}};

static const char *const reason_names[R_N] = {
    [R_NO_MSH] = "no_msh",
    [R_ENCODING] = "encoding",
    [R_REQUIRED] = "required_field",
    [R_CHARS] = "control_chars",
    [R_TOO_LONG] = "field_too_long",
    [R_OVERSIZE] = "oversize",
    [R_JUNK] = "junk",
    [R_VERSION] = "version",
    [R_NOT_ALLOWED] = "not_allowed",
    [R_TOO_MANY] = "too_many_connections",
    [R_FRAME_TIMEOUT] = "frame_timeout",
    [R_IDLE_TIMEOUT] = "idle_timeout",
    [R_TLS] = "tls",
    [R_BUSY] = "busy",
    [R_REFUSED] = "refused",
    [R_CLOSED_MID_FRAME] = "closed_mid_frame",
};

const char *hl7_reason_name(hl7_reason_t r) {
  return r < R_N ? reason_names[r] : "unknown";
}

static void report_errors(hl7_t *h);

/* Counted at once (a spool that is full keeps the count for the timer's
 * next try), so a stop right after loses nothing. */
void hl7_count_error(hl7_t *h, hl7_reason_t r) {
  if (r < R_N) {
    h->errors[r]++;
    report_errors(h);
  }
}

void hl7_log_limited(hl7_t *h, int level, const char *fmt, ...) {
  char line[512];
  va_list ap;
  int64_t now = h->host->now_us(h->inst);
  if (now - h->log_window_us >= 60 * INT64_C(1000000)) {
    if (h->log_suppressed)
      h->host->log(h->inst, PM_LOG_WARNING,
                   "%u more lines about messages and connections were not "
                   "logged in the last minute (see hl7.errors)",
                   h->log_suppressed);
    h->log_window_us = now;
    h->log_count = h->log_suppressed = 0;
  }
  if (++h->log_count > 20) {
    h->log_suppressed++;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  h->host->log(h->inst, level, "%s", line);
}

/* ------------------------------------------------------------------ */
/* settings */

static const pm_setting_t *get(hl7_t *h, const pm_setting_t *g,
                               const char *key) {
  return h->host->setting_get(g, key);
}

static const char *str(hl7_t *h, const pm_setting_t *g, const char *key) {
  const char *s = NULL;
  h->host->setting_string(get(h, g, key), &s);
  return s;
}

static int parse_listen(hl7_t *h, const char *spec) {
  size_t len = strlen(spec), hl, off = 0;
  const char *colon = strrchr(spec, ':');
  long port;
  char *end;
  if (!colon || len >= 128)
    return -1;
  hl = (size_t)(colon - spec);
  if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
    off = 1;
    hl -= 2;
  }
  if (hl == 0 || hl >= sizeof h->listen_host)
    return -1;
  memcpy(h->listen_host, spec + off, hl);
  h->listen_host[hl] = 0;
  port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535 || end == colon + 1)
    return -1;
  h->listen_port = (int)port;
  return 0;
}

static int parse_net(const char *s, hl7_net_t *n) {
  char buf[64];
  const char *slash = strchr(s, '/');
  size_t len = slash ? (size_t)(slash - s) : strlen(s);
  int max;
  if (len == 0 || len >= sizeof buf)
    return -1;
  memcpy(buf, s, len);
  buf[len] = 0;
  if (inet_pton(AF_INET, buf, n->addr) == 1) {
    n->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
    n->family = AF_INET6;
    max = 128;
  } else {
    return -1;
  }
  n->bits = max;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (*end || end == slash + 1 || b < 0 || b > max)
      return -1;
    n->bits = (int)b;
  }
  return 0;
}

static int is_loopback(const char *host) {
  return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
         strcmp(host, "::1") == 0;
}

/* The metrics a rule may count: the canonical ones (DESIGN.md), which
 * the daemon declares itself; anything else it would refuse at emit. */
static int canonical(const char *metric) {
  static const char *const names[] = {"portal.patients_enrolled",
                                      "portal.patients_used",
                                      "portal.messages_sent",
                                      "portal.secure_messages_sent",
                                      "portal.secure_messages_received",
                                      "portal.lab_reports_sent",
                                      "portal.lab_reports_viewed",
                                      "portal.appointments_requested",
                                      "portal.appointments_canceled",
                                      "clinic.patients_seen",
                                      "portal.invitations_sent",
                                      "portal.accounts_activated",
                                      "portal.appointments_noshow",
                                      "clinic.patients_registered"};
  if (!metric || !metric[0])
    return 1;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(metric, names[i]) == 0)
      return 1;
  return 0;
}

static int read_settings(hl7_t *h) {
  const pm_host_t *H = h->host;
  const pm_setting_t *root = H->settings(h->inst), *n;
  int64_t v;
  uint64_t sz;
  int b;
  const char *s;

  s = NULL;
  H->setting_string(get(h, root, "listen"), &s);
  if (!s || parse_listen(h, s) != 0) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.listen: \"%s\" is not address:port (e.g. "
           "\"127.0.0.1:2575\" or \"[::1]:2575\")",
           s ? s : "");
    return PM_ECONFIG;
  }
  H->setting_size(get(h, root, "max_message"), &sz);
  if (sz < 64 || sz > 64 * 1024 * 1024) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.max_message: must be between 64 B and 64 MiB");
    return PM_ECONFIG;
  }
  h->max_message = (size_t)sz;
  H->setting_duration(get(h, root, "idle_timeout"), &h->idle_timeout_us);
  H->setting_duration(get(h, root, "frame_timeout"), &h->frame_timeout_us);
  if (h->idle_timeout_us < 1000 || h->frame_timeout_us < 1000) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.idle_timeout and frame_timeout: at least 1ms");
    return PM_ECONFIG;
  }
  H->setting_int(get(h, root, "max_connections"), &v);
  if (v < 1 || v > 100000) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.max_connections: must be between 1 and 100000");
    return PM_ECONFIG;
  }
  h->max_connections = (size_t)v;
  H->setting_int(get(h, root, "max_in_flight"), &v);
  if (v < 1 || v > 10000) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.max_in_flight: must be between 1 and 10000");
    return PM_ECONFIG;
  }
  h->max_in_flight = (size_t)v;

  n = get(h, root, "allow");
  h->nallow = H->setting_count(n);
  if (h->nallow) {
    h->allow = calloc(h->nallow, sizeof *h->allow);
    if (!h->allow)
      return PM_ENOMEM;
    for (size_t i = 0; i < h->nallow; i++) {
      const char *a = NULL;
      H->setting_string(H->setting_at(n, i), &a);
      if (!a || parse_net(a, &h->allow[i]) != 0) {
        H->log(h->inst, PM_LOG_ERROR,
               "settings.allow.[%zu]: \"%s\" is not an address or CIDR", i,
               a ? a : "");
        return PM_ECONFIG;
      }
    }
  }

  s = str(h, root, "busy_ack");
  if (strcmp(s, "close") != 0 && strcmp(s, "AR") != 0) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.busy_ack: \"%s\": must be \"close\" or \"AR\"", s);
    return PM_ECONFIG;
  }
  h->busy_ar = strcmp(s, "AR") == 0;
  s = str(h, root, "bucket_by");
  if (strcmp(s, "event") != 0 && strcmp(s, "received") != 0) {
    H->log(h->inst, PM_LOG_ERROR,
           "settings.bucket_by: \"%s\": must be \"event\" or \"received\"", s);
    return PM_ECONFIG;
  }
  h->bucket_received = strcmp(s, "received") == 0;
  H->setting_bool(get(h, root, "count_non_production"), &b);
  h->count_non_production = b;

  if (hl7_map_init(&h->map) != 0)
    return PM_ENOMEM;
  n = get(h, root, "map");
  for (size_t i = 0; i < H->setting_count(n); i++) {
    const pm_setting_t *g = H->setting_at(n, i);
    int rc = hl7_map_set(&h->map, str(h, g, "type"), str(h, g, "trigger"),
                         str(h, g, "metric"), str(h, g, "result_status"));
    if (rc == 0 && !canonical(str(h, g, "metric"))) {
      H->log(h->inst, PM_LOG_ERROR,
             "settings.map.[%zu].metric: \"%s\" is not a canonical portal "
             "metric (the daemon would refuse its samples); see the README's "
             "list, or \"\" to count nothing",
             i, str(h, g, "metric"));
      return PM_ECONFIG;
    }
    if (rc == -1)
      return PM_ENOMEM;
    if (rc < 0) {
      H->log(h->inst, PM_LOG_ERROR,
             "settings.map.[%zu]: type and trigger must be upper-case codes "
             "(e.g. SIU, S12), result_status letters A-Z, metric at most "
             "128 bytes",
             i);
      return PM_ECONFIG;
    }
  }

  n = get(h, root, "tls");
  if (n) {
    char err[512];
    const char *ca = str(h, n, "ca_file");
    H->setting_bool(get(h, n, "verify_client"), &b);
    if (b && !ca) {
      H->log(h->inst, PM_LOG_ERROR,
             "settings.tls.verify_client: needs tls.ca_file");
      return PM_ECONFIG;
    }
    if (hl7_tls_ctx_new(str(h, n, "cert_file"), str(h, n, "key_file"), ca, b,
                        &h->tls, err, sizeof err) != 0) {
      H->log(h->inst, PM_LOG_ERROR, "settings.tls: %s", err);
      return PM_ECONFIG;
    }
  }
  H->setting_bool(get(h, root, "allow_plaintext"), &b);
  if (!h->tls && !is_loopback(h->listen_host)) {
    if (!b) {
      H->log(h->inst, PM_LOG_ERROR,
             "settings.listen: %s is not a loopback address and there is no "
             "tls: HL7 carries patient data; set tls, or allow_plaintext = "
             "true on a network you trust",
             h->listen_host);
      return PM_ECONFIG;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* counting */

/* Local midnight of day (days since 1970-01-01 in the site's zone: the
 * daemon sets TZ to it). */
static int64_t local_midnight_us(int32_t day) {
  time_t t = (time_t)day * 86400;
  struct tm tm;
  gmtime_r(&t, &tm); /* the civil date of day */
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (int64_t)mktime(&tm) * 1000000;
}

static int32_t local_day(int64_t us) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  localtime_r(&t, &tm);
  /* the civil date as a day number */
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return (int32_t)(timegm(&tm) / 86400);
}

/* A label value from a sending facility: printable ASCII (others become
 * '?'), never empty. */
static void facility_label(const char *in, char *out, size_t len) {
  size_t j = 0;
  for (size_t i = 0; in[i] && j + 1 < len; i++) {
    unsigned char c = (unsigned char)in[i];
    out[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  out[j] = 0;
  if (j == 0)
    snprintf(out, len, "unknown");
}

int hl7_emit_message(hl7_t *h, const hl7_msg_t *m, int64_t received_us,
                     pm_durable_cb on_durable, void *arg) {
  char fac[HL7_FIELD_MAX + 1], key[3 * HL7_FIELD_MAX + 4];
  pm_label_t l_fac = {"facility", fac};
  pm_label_t l_msg[3] = {
      {"facility", fac}, {"trigger", m->trigger}, {"type", m->type}};
  pm_sample_t smp[2];
  size_t n = 0;
  int32_t day = local_day(received_us);
  int64_t ts;
  const char *metric;
  pm_emit_opts_t o = {.size = sizeof o, .on_durable = on_durable, .arg = arg};
  int klen;

  if (!h->bucket_received) {
    int32_t d;
    if ((m->event_time[0] && hl7_dtm_day(m->event_time, &d) == 0) ||
        (m->datetime[0] && hl7_dtm_day(m->datetime, &d) == 0)) {
      /* within what the daemon accepts: a year back, a day ahead */
      if (d <= day + 1 && d >= day - 365)
        day = d;
    }
  }
  ts = local_midnight_us(day);
  facility_label(m->sending_facility, fac, sizeof fac);
  smp[n++] = (pm_sample_t){"hl7.messages", l_msg, 3, ts, 1, PM_ADD};
  metric = hl7_map_match(&h->map, m);
  if (metric && (strcmp(m->processing_id, "P") == 0 || h->count_non_production))
    smp[n++] = (pm_sample_t){metric, &l_fac, 1, ts, 1, PM_ADD};
  /* a retransmission (same sender and control id) is counted once */
  klen = snprintf(key, sizeof key, "%s|%s|%s", m->sending_app,
                  m->sending_facility, m->control_id);
  if (klen > 256) {
    /* past the host's limit: a digest of the whole key, so the control id
     * never falls off the end */
    unsigned char d[32];
    SHA256((const unsigned char *)key, (size_t)klen, d);
    klen = snprintf(key, sizeof key, "sha256:");
    for (int i = 0; i < 32; i++)
      klen += snprintf(key + klen, sizeof key - (size_t)klen, "%02x", d[i]);
  }
  o.idem_key = key;
  o.idem_key_len = (size_t)klen;
  return h->host->emit(h->inst, smp, n, &o);
}

/* The error counts as hl7.errors{reason}: at once, retried every second
 * while the spool refuses them. */
static void report_errors(hl7_t *h) {
  pm_sample_t smp[R_N];
  pm_label_t lab[R_N];
  size_t n = 0;
  int64_t now = h->host->now_us(h->inst);
  int64_t ts = local_midnight_us(local_day(now));
  for (int r = 0; r < R_N; r++) {
    if (h->errors[r] == h->errors_sent[r])
      continue;
    lab[n] = (pm_label_t){"reason", reason_names[r]};
    smp[n] = (pm_sample_t){"hl7.errors",
                           &lab[n],
                           1,
                           ts,
                           (double)(h->errors[r] - h->errors_sent[r]),
                           PM_ADD};
    n++;
  }
  if (n && h->host->emit(h->inst, smp, n, NULL) == 0)
    memcpy(h->errors_sent, h->errors, sizeof h->errors);
}

static void on_report(uv_timer_t *t) {
  report_errors(t->data);
}

/* ------------------------------------------------------------------ */
/* the instance */

static void hl7_free(hl7_t *h) {
  if (!h)
    return;
  hl7_map_free(&h->map);
  if (h->tls)
    hl7_tls_ctx_free(h->tls);
  free(h->allow);
  free(h);
}

static int create(pm_instance_t *inst, const pm_host_t *host, void **self) {
  hl7_t *h = calloc(1, sizeof *h);
  int rc;
  if (!h)
    return PM_ENOMEM;
  h->inst = inst;
  h->host = host;
  if ((rc = read_settings(h)) != 0) {
    hl7_free(h);
    return rc;
  }
  *self = h;
  return 0;
}

static void on_connection(uv_stream_t *server, int status) {
  hl7_t *h = server->data;
  if (status < 0) {
    h->host->log(h->inst, PM_LOG_WARNING, "accepting a connection: %s",
                 uv_strerror(status));
    return;
  }
  hl7_conn_accept(h);
}

static int start(void *self, pm_instance_t *inst) {
  hl7_t *h = self;
  struct sockaddr_storage ss;
  int rc;
  h->loop = h->host->loop(inst);
  if (uv_ip4_addr(h->listen_host, h->listen_port, (struct sockaddr_in *)&ss) !=
          0 &&
      uv_ip6_addr(h->listen_host, h->listen_port, (struct sockaddr_in6 *)&ss) !=
          0) {
    h->host->log(inst, PM_LOG_ERROR,
                 "settings.listen: %s is not a numeric IPv4 or IPv6 address",
                 h->listen_host);
    return PM_ECONFIG;
  }
  uv_tcp_init(h->loop, &h->server);
  h->server.data = h;
  rc = uv_tcp_bind(&h->server, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&h->server, 128, on_connection);
  if (rc != 0) {
    h->host->log(inst, PM_LOG_ERROR, "cannot listen on %s:%d: %s",
                 h->listen_host, h->listen_port, uv_strerror(rc));
    uv_close((uv_handle_t *)&h->server, NULL);
    return PM_EIO;
  }
  h->listening = 1;
  uv_timer_init(h->loop, &h->report);
  h->report.data = h;
  uv_timer_start(&h->report, on_report, REPORT_MS, REPORT_MS);
  if (!h->tls && !is_loopback(h->listen_host))
    h->host->log(inst, PM_LOG_WARNING,
                 "listening on %s:%d WITHOUT TLS (allow_plaintext = true): "
                 "HL7 messages carry patient data in clear text on this "
                 "network",
                 h->listen_host, h->listen_port);
  else
    h->host->log(inst, PM_LOG_INFO, "listening on %s:%d%s", h->listen_host,
                 h->listen_port, h->tls ? " (TLS)" : "");
  return 0;
}

/* stopped() once the server, the timer and every connection are closed */
static void maybe_stopped(hl7_t *h) {
  if (h->stopping && h->closing_handles == 0 && h->nconns == 0) {
    h->stopping = 0;
    h->host->stopped(h->inst);
  }
}

static void on_handle_closed(uv_handle_t *hd) {
  hl7_t *h = hd->data;
  h->closing_handles--;
  maybe_stopped(h);
}

void hl7_conn_gone(hl7_t *h, hl7_conn_t *c) {
  (void)c;
  h->nconns--;
  maybe_stopped(h);
}

static void stop(void *self, pm_instance_t *inst) {
  hl7_t *h = self;
  (void)inst;
  h->stopping = 1;
  report_errors(h);
  if (h->listening) {
    h->listening = 0;
    h->closing_handles += 2;
    uv_close((uv_handle_t *)&h->server, on_handle_closed);
    uv_close((uv_handle_t *)&h->report, on_handle_closed);
  }
  hl7_conn_close_all(h);
  maybe_stopped(h);
}

static void destroy(void *self, pm_instance_t *inst) {
  (void)inst;
  hl7_free(self);
}

static const pm_plugin_t plugin = {
    .abi_major = PM_ABI_MAJOR,
    .abi_minor = PM_ABI_MINOR,
    .size = sizeof(pm_plugin_t),
    .name = "hl7",
    .version = "1",
    .description = "HL7 v2 MLLP listener: counts scheduling, result and "
                   "registration messages, ACKs each once durable",
    .mode = PM_LISTENER,
    .metrics = hl7_metrics,
    .settings = hl7_settings,
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &plugin;
}

/*
 * notify_driver: sends one alert event through one notifier of pm_core,
 * for test_notifiers.sh.
 *
 *   notify_driver [options] webhook URL
 *   notify_driver [options] exec -- /path/to/program [args...]
 *   notify_driver [options] log
 *
 * Options:
 *   --json TEXT       the JSON body (default: a fixed small object)
 *   --json-file F     the JSON body read from F (byte for byte)
 *   --token-file F    webhook: token_file
 *   --ca-file F       webhook: ca_file
 *   --header 'N: v'   webhook: a configured header (repeatable)
 *   --timeout-ms N    timeout (default: the notifier's, 10 s / 30 s)
 *   --cancel-ms N     pm_notifier_cancel_all after N ms
 *   --close-ms N      pm_notifier_close after N ms, the sends still in
 *                     flight (close's callback must come after theirs)
 *   --count N         send the event N times at once (default 1)
 *   -v                debug logging
 *
 * The event: id 12, target "enrollment", title "Portal enrollment",
 * state pending -> firing, severity warning, status behind, actual 0.31,
 * expected 0.372, message "enrollment is behind", daemon "driver-1".
 *
 * Prints "status=N error=TEXT" per callback (N the PM_E* code, TEXT the
 * reason, empty when delivered), then closes the notifier, runs the loop
 * until every handle is closed, and exits 0; 2 on bad usage, 3 when the
 * send itself failed, 4 when the loop is left with handles open.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "notifier.h"

#define MAX_HEADERS 16

static int callbacks, closed, callbacks_at_close = -1;
static const pm_alert_event_t *event;
static const char *body;

static void on_sent(void *arg, int status, const char *error) {
  (void)arg;
  printf("status=%d error=%s\n", status, error ? error : "(null)");
  fflush(stdout);
  callbacks++;
}

static void on_closed(void *arg) {
  (void)arg;
  closed = 1;
  callbacks_at_close = callbacks;
}

/* close, then check a send is refused */
static int close_and_send(pm_notifier_t *n) {
  pm_notifier_close(n, on_closed, NULL);
  if (pm_notifier_send(n, event, body, on_sent, NULL) != PM_ESTOPPED) {
    fprintf(stderr, "notify_driver: a send after close was not refused\n");
    return 3;
  }
  return 0;
}

static int close_rc;
static uv_timer_t cancel_timer;
static int cancel_armed;

static void stop_cancel_timer(void) {
  if (cancel_armed) {
    cancel_armed = 0;
    uv_close((uv_handle_t *)&cancel_timer, NULL);
  }
}

static void on_close_timer(uv_timer_t *t) {
  close_rc = close_and_send(t->data);
  uv_close((uv_handle_t *)t, NULL);
  stop_cancel_timer();
}

static void on_cancel(uv_timer_t *t) {
  pm_notifier_cancel_all(t->data);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  if (!f)
    return NULL;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *b = realloc(buf, cap);
      if (!b) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = b;
    }
    n = fread(buf + len, 1, 4096, f);
    len += n;
    if (n < 4096)
      break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

static void usage(void) {
  fprintf(stderr,
          "usage: notify_driver [options] webhook URL | exec -- PROG [ARGS] "
          "| log\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"json", required_argument, NULL, 'j'},
      {"json-file", required_argument, NULL, 'J'},
      {"token-file", required_argument, NULL, 't'},
      {"ca-file", required_argument, NULL, 'c'},
      {"header", required_argument, NULL, 'H'},
      {"timeout-ms", required_argument, NULL, 'T'},
      {"cancel-ms", required_argument, NULL, 'C'},
      {"close-ms", required_argument, NULL, 'X'},
      {"count", required_argument, NULL, 'n'},
      {NULL, 0, NULL, 0}};
  pm_notifier_conf_t conf;
  char *headers[MAX_HEADERS];
  char *json = NULL, *json_owned = NULL;
  long cancel_ms = -1, close_ms = -1, count = 1;
  int opt, verbose = 0, rc = 0;
  uv_loop_t loop;
  uv_timer_t close_timer;
  pm_notifier_t *n;

  memset(&conf, 0, sizeof conf);
  conf.name = "driver";
  conf.headers = headers;
  while ((opt = getopt_long(argc, argv, "+v", longopts, NULL)) != -1) {
    switch (opt) {
    case 'j':
      json = optarg;
      break;
    case 'J':
      json = json_owned = read_file(optarg);
      if (!json) {
        perror(optarg);
        return 2;
      }
      break;
    case 't':
      conf.token_file = optarg;
      break;
    case 'c':
      conf.ca_file = optarg;
      break;
    case 'H':
      if (conf.n_headers >= MAX_HEADERS)
        usage();
      headers[conf.n_headers++] = optarg;
      break;
    case 'T':
      conf.timeout_us = strtoll(optarg, NULL, 10) * 1000;
      break;
    case 'C':
      cancel_ms = strtol(optarg, NULL, 10);
      break;
    case 'X':
      close_ms = strtol(optarg, NULL, 10);
      break;
    case 'n':
      count = strtol(optarg, NULL, 10);
      break;
    case 'v':
      verbose = 1;
      break;
    default:
      usage();
    }
  }
  if (optind >= argc)
    usage();
  if (strcmp(argv[optind], "webhook") == 0) {
    if (optind + 2 != argc)
      usage();
    conf.type = PM_NOTIFIER_WEBHOOK;
    conf.url = argv[optind + 1];
  } else if (strcmp(argv[optind], "exec") == 0) {
    int i = optind + 1;
    if (i < argc && strcmp(argv[i], "--") == 0)
      i++;
    if (i >= argc)
      usage();
    conf.type = PM_NOTIFIER_EXEC;
    conf.command = argv + i; /* NULL-terminated, as argv is */
    conf.n_command = (size_t)(argc - i);
  } else if (strcmp(argv[optind], "log") == 0) {
    if (optind + 1 != argc)
      usage();
    conf.type = PM_NOTIFIER_LOG;
  } else {
    usage();
  }
  if (!json)
    json = "{\"version\":1,\"event_id\":\"12\",\"target\":\"enrollment\"}";

  signal(SIGPIPE, SIG_IGN); /* as the daemon does */
  pm_log_init(verbose ? PM_LOG_DEBUG : PM_LOG_INFO, 0);
  if (pm_notifier_global_init() != 0) {
    fprintf(stderr, "notify_driver: pm_notifier_global_init failed\n");
    return 3;
  }
  uv_loop_init(&loop);
  n = pm_notifier_new(&loop, &conf);
  if (!n) {
    fprintf(stderr, "notify_driver: pm_notifier_new failed\n");
    return 3;
  }

  pm_alert_event_t e = {
      .event_id = 12,
      .target = "enrollment",
      .title = "Portal enrollment",
      .kind = PM_EV_STATE,
      .from = PM_ALERT_PENDING,
      .to = PM_ALERT_FIRING,
      .severity = "warning",
      .at_us = INT64_C(1795626000000000),
      .status = PM_STATUS_BEHIND,
      .has_actual = 1,
      .has_expected = 1,
      .actual = 0.31,
      .expected = 0.372,
      .percent = 1,
      .plan_day = PM_ALERT_NO_DAY,
      .due_day = PM_ALERT_NO_DAY,
      .projected_day = PM_ALERT_NO_DAY,
      .message = "enrollment is behind",
      .daemon = "driver-1",
  };
  event = &e;
  body = json;
  for (long i = 0; i < count; i++) {
    int src = pm_notifier_send(n, &e, json, on_sent, NULL);
    if (src != 0) {
      fprintf(stderr, "notify_driver: pm_notifier_send: %d\n", src);
      rc = 3;
      count = i;
      break;
    }
  }
  /* the body and event were copied: scribble over ours */
  if (json_owned)
    memset(json_owned, 'x', strlen(json_owned));

  if (cancel_ms >= 0) {
    uv_timer_init(&loop, &cancel_timer);
    cancel_timer.data = n;
    uv_timer_start(&cancel_timer, on_cancel, (uint64_t)cancel_ms, 0);
    cancel_armed = 1;
  }
  if (close_ms >= 0) {
    uv_timer_init(&loop, &close_timer);
    close_timer.data = n;
    uv_timer_start(&close_timer, on_close_timer, (uint64_t)close_ms, 0);
  } else {
    while (callbacks < count) {
      if (uv_run(&loop, UV_RUN_ONCE) == 0 && callbacks < count) {
        fprintf(stderr, "notify_driver: the loop ran dry before the "
                        "callback\n");
        return 4;
      }
    }
    stop_cancel_timer();
    close_rc = close_and_send(n);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (close_rc)
    rc = close_rc;
  if (closed && callbacks_at_close != count) {
    fprintf(stderr,
            "notify_driver: close's callback came after %d of %ld "
            "callbacks\n",
            callbacks_at_close, count);
    rc = 4;
  }
  if (!closed) {
    fprintf(stderr, "notify_driver: close's callback did not run\n");
    rc = 4;
  }
  pm_notifier_free(n);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "notify_driver: handles left open\n");
    rc = 4;
  }
  pm_notifier_global_cleanup();
  free(json_owned);
  return rc;
}

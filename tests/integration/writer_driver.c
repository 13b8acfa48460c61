/*
 * writer_driver: drives the PostgreSQL writer (queue + series registry +
 * writer of pm_core) against a real database, for the test_writer_*.sh
 * scripts.
 *
 *   writer_driver [options] CONNINFO < script
 *
 * Options:
 *   --migrate            run the migrations (pm_writer_migrate) and exit
 *   --batch N            batch_max (default 1000)
 *   --flush MS           flush_interval (default 100)
 *   --queue N            queue capacity in records (default 100000)
 *   --max-age DAYS       max_sample_age (default 400)
 *   --retention DAYS     retention (default 0: none)
 *   --stmt-timeout S     statement_timeout (default 60)
 *   --connect-timeout S  connect timeout (default 5)
 *   --drain-timeout S    bound of the final drain (default 60)
 *   --password-file F    database.password_file
 *   --id ID              daemon id (default "driver")
 *   --spool-id ID        the position's key (default: a random one per run)
 *   --deadletter DIR     dead-letter directory (default: none, logged only)
 *   --metrics            declare the canonical and daemon metrics
 *   -v                   debug logging
 *
 * Script commands, one per line (# starts a comment):
 *   push METRIC set|add TS VALUE [key=value ...]
 *   gen METRIC set|add NSERIES NTS TS0 STEP_S VALUE [RATE]
 *        push NTS rounds of NSERIES series (labels series=sN), ts of
 *        round t = TS0 + t * STEP_S, at RATE records/s (0: as fast as the
 *        queue takes them)
 *   sleep MS
 *   wait [SECONDS]       until every record pushed so far is shipped
 *                        (exit 3 if it takes longer; default 60)
 *   waitfile PATH [S]    until PATH exists (exit 3 after S, default 60)
 *   mark TEXT            print "mark TEXT" on stdout (flushed)
 *   stats                print the writer's counters on stdout
 *   position             print "position SPOOL_ID LAST_SEQ DAEMON_ID" as the
 *                        database has it (a blocking query of its own;
 *                        "position SPOOL_ID none" when there is no row)
 *   clock TEXT           print "clock TEXT SECONDS" (monotonic, for timing)
 * TS: unix seconds, "now" (the driver's start time, the same for the
 * whole script), or now[+-]N[smhd] (e.g. now-300d).
 *
 * At the end of the script: drain, print
 *   pushed=N shipped=S refused=R batches=B errors=E connected=C
 *   deadlettered=L conflicts=K position=P direct=D fallbacks=F
 * (L: records dead-lettered, K: fenced position updates that found the
 * position moved, P: the position as the writer last saw it, D: batches
 * committed by the direct path, F: direct attempts that fell back to the
 * merge on a unique violation)
 * and exit 0 if the drain shipped everything, 1 if not, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <libpq-fe.h>
#include <uv.h>

#include "catalog.h"
#include "log.h"
#include "queue.h"
#include "source.h"
#include "sample.h"
#include "series.h"
#include "writer.h"

#define MAX_ARGS 24

typedef struct cmd {
  int line;
  int argc;
  char *argv[MAX_ARGS];
} cmd_t;

typedef struct driver {
  uv_loop_t *loop;
  pm_queue_t *q;
  pm_writer_t *w;
  pm_series_registry_t *reg;
  uv_timer_t timer;
  cmd_t *cmds;
  size_t ncmds, pc;
  /* the running gen */
  int gen_active;
  const pm_series_t **gen_series;
  size_t gen_nseries, gen_nts, gen_i;
  int64_t gen_ts0, gen_step_us, gen_t0_us;
  double gen_value, gen_rate;
  /* wait / waitfile */
  int64_t deadline_us;
  uint64_t pushed;
  int64_t drain_timeout_us;
  int exit_code;
  int drain_status;
  const char *conninfo;
  const char *spool_id;
} driver_t;

static void run(driver_t *d);

static int64_t mono_us(void) {
  return (int64_t)(uv_hrtime() / 1000);
}

static int64_t start_us; /* "now" in scripts */

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die_line(const cmd_t *c, const char *msg) {
  fprintf(stderr, "writer_driver: script line %d: %s\n", c->line, msg);
  exit(2);
}

static int parse_ts(const char *s, int64_t *out) {
  char *end;
  if (strncmp(s, "now", 3) == 0) {
    int64_t now = start_us, n = 0, mul = 1000000;
    s += 3;
    if (*s == '\0') {
      *out = now;
      return 0;
    }
    if (*s != '+' && *s != '-')
      return -1;
    n = strtoll(s + 1, &end, 10);
    switch (*end) {
    case 's':
    case '\0':
      break;
    case 'm':
      mul *= 60;
      break;
    case 'h':
      mul *= 3600;
      break;
    case 'd':
      mul *= 86400;
      break;
    default:
      return -1;
    }
    if (*end && end[1])
      return -1;
    *out = *s == '+' ? now + n * mul : now - n * mul;
    return 0;
  }
  *out = strtoll(s, &end, 10) * 1000000;
  return *end ? -1 : 0;
}

static int parse_kind(const char *s, pm_kind_t *k) {
  if (strcmp(s, "set") == 0)
    *k = PM_SET;
  else if (strcmp(s, "add") == 0)
    *k = PM_ADD;
  else
    return -1;
  return 0;
}

static const pm_series_t *intern(driver_t *d, const cmd_t *c,
                                 const char *metric, pm_kind_t kind,
                                 const pm_label_t *own, size_t nown) {
  pm_labelset_t ls;
  const pm_series_t *s = NULL;
  int rc;
  if (!pm_metric_name_valid(metric))
    die_line(c, "invalid metric name");
  rc = pm_labelset_build(&ls, NULL, 0, own, nown, "driver");
  if (rc != 0)
    die_line(c, "invalid labels");
  rc = pm_series_intern(d->reg, "driver", SIZE_MAX, metric, ls.l, ls.n, kind,
                        &s);
  if (rc != 0) {
    fprintf(stderr, "writer_driver: script line %d: series refused: %d\n",
            c->line, rc);
    exit(2);
  }
  return s;
}

/* Push one record; 0 or PM_EBUSY (queue full: try again later). */
static int push(driver_t *d, const pm_series_t *s, int64_t ts, double v) {
  pm_rec_t r = {0};
  int rc;
  r.series = s;
  r.ts_us = ts;
  r.value = v;
  rc = pm_queue_push(d->q, &r, 1, NULL, NULL);
  if (rc == 0)
    d->pushed++;
  else if (rc != PM_EBUSY) {
    fprintf(stderr, "writer_driver: push failed: %d\n", rc);
    exit(1);
  }
  return rc;
}

static void on_timer(uv_timer_t *t) {
  run(t->data);
}

static void later(driver_t *d, uint64_t ms) {
  uv_timer_start(&d->timer, on_timer, ms, 0);
}

static void print_stats(driver_t *d, const char *prefix) {
  pm_writer_stats_t st;
  pm_writer_get_stats(d->w, &st);
  printf("%spushed=%" PRIu64 " shipped=%" PRIu64 " refused=%" PRIu64
         " batches=%" PRIu64 " errors=%" PRIu64
         " connected=%d deadlettered=%" PRIu64 " conflicts=%" PRIu64
         " position=%" PRIu64 " direct=%" PRIu64 " fallbacks=%" PRIu64 "\n",
         prefix, d->pushed, st.shipped, st.refused, st.batches, st.errors,
         st.connected, st.dead_lettered, st.position_conflicts, st.position,
         st.direct_batches, st.direct_fallbacks);
  fflush(stdout);
}

/* The position as the database has it: a blocking query of its own (a
 * test driver may block its loop). */
static void print_position(driver_t *d) {
  PGconn *c = PQconnectdb(d->conninfo);
  const char *params[1] = {d->spool_id};
  PGresult *r;
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "writer_driver: position: %s", PQerrorMessage(c));
    PQfinish(c);
    exit(1);
  }
  r = PQexecParams(c,
                   "SELECT last_seq, daemon_id FROM "
                   "portalmetrics.ingest_position WHERE spool_id = $1",
                   1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "writer_driver: position: %s", PQerrorMessage(c));
    exit(1);
  }
  if (PQntuples(r) == 0)
    printf("position %s none\n", d->spool_id);
  else
    printf("position %s %s %s\n", d->spool_id, PQgetvalue(r, 0, 0),
           PQgetvalue(r, 0, 1));
  fflush(stdout);
  PQclear(r);
  PQfinish(c);
}

/* Continue the running gen; 1 when it is done. */
static int gen_step(driver_t *d) {
  size_t total = d->gen_nseries * d->gen_nts;
  size_t allowed = total;
  if (d->gen_rate > 0) {
    double el = (double)(mono_us() - d->gen_t0_us) / 1e6;
    double a = el * d->gen_rate + 1;
    allowed = a >= (double)total ? total : (size_t)a;
  }
  while (d->gen_i < allowed) {
    size_t t = d->gen_i / d->gen_nseries, s = d->gen_i % d->gen_nseries;
    if (push(d, d->gen_series[s], d->gen_ts0 + (int64_t)t * d->gen_step_us,
             d->gen_value) == PM_EBUSY) {
      later(d, 10);
      return 0;
    }
    d->gen_i++;
  }
  if (d->gen_i >= total) {
    free(d->gen_series);
    d->gen_series = NULL;
    d->gen_active = 0;
    return 1;
  }
  later(d, 10);
  return 0;
}

static void on_queue_closed(void *arg) {
  (void)arg;
}

static void on_drained(void *arg, int status) {
  driver_t *d = arg;
  d->drain_status = status;
  uv_close((uv_handle_t *)&d->timer, NULL);
  pm_queue_close(d->q, on_queue_closed, d);
}

static void finish(driver_t *d) {
  pm_writer_drain(d->w, d->drain_timeout_us, on_drained, d);
}

/* Run commands until one has to wait. */
static void run(driver_t *d) {
  if (d->gen_active && !gen_step(d))
    return;
  while (d->pc < d->ncmds) {
    const cmd_t *c = &d->cmds[d->pc];
    const char *op = c->argv[0];
    if (strcmp(op, "push") == 0) {
      pm_label_t labels[PM_LABELS_MAX];
      size_t nl = 0;
      pm_kind_t kind;
      int64_t ts;
      const pm_series_t *s;
      if (c->argc < 5 || parse_kind(c->argv[2], &kind) < 0 ||
          parse_ts(c->argv[3], &ts) < 0)
        die_line(c, "usage: push METRIC set|add TS VALUE [key=value ...]");
      for (int i = 5; i < c->argc && nl < PM_LABELS_MAX; i++) {
        char *eq = strchr(c->argv[i], '=');
        if (!eq)
          die_line(c, "labels are key=value");
        *eq = '\0';
        labels[nl].key = c->argv[i];
        labels[nl].value = eq + 1;
        nl++;
      }
      s = intern(d, c, c->argv[1], kind, labels, nl);
      /* restore the '=' so that a retry parses the same line */
      for (size_t i = 0; i < nl; i++)
        ((char *)labels[i].key)[strlen(labels[i].key)] = '=';
      if (push(d, s, ts, strtod(c->argv[4], NULL)) == PM_EBUSY) {
        later(d, 10);
        return;
      }
    } else if (strcmp(op, "gen") == 0) {
      pm_kind_t kind;
      int64_t ts0 = 0;
      char name[32];
      pm_label_t l = {"series", name};
      if (c->argc < 8 || parse_kind(c->argv[2], &kind) < 0 ||
          parse_ts(c->argv[5], &ts0) < 0)
        die_line(c, "usage: gen METRIC set|add NSERIES NTS TS0 STEP_S VALUE "
                    "[RATE]");
      d->gen_nseries = strtoull(c->argv[3], NULL, 10);
      d->gen_nts = strtoull(c->argv[4], NULL, 10);
      if (d->gen_nseries == 0 || d->gen_nts == 0)
        die_line(c, "NSERIES and NTS must be positive");
      d->gen_ts0 = ts0;
      d->gen_step_us = strtoll(c->argv[6], NULL, 10) * 1000000;
      d->gen_value = strtod(c->argv[7], NULL);
      d->gen_rate = c->argc > 8 ? strtod(c->argv[8], NULL) : 0;
      d->gen_series = calloc(d->gen_nseries, sizeof *d->gen_series);
      if (!d->gen_series)
        die_line(c, "out of memory");
      for (size_t i = 0; i < d->gen_nseries; i++) {
        snprintf(name, sizeof name, "s%zu", i);
        d->gen_series[i] = intern(d, c, c->argv[1], kind, &l, 1);
      }
      d->gen_i = 0;
      d->gen_t0_us = mono_us();
      d->gen_active = 1;
      d->pc++;
      if (!gen_step(d))
        return;
      continue;
    } else if (strcmp(op, "sleep") == 0) {
      if (c->argc != 2)
        die_line(c, "usage: sleep MS");
      d->pc++;
      later(d, strtoull(c->argv[1], NULL, 10));
      return;
    } else if (strcmp(op, "wait") == 0) {
      if (d->deadline_us == 0)
        d->deadline_us =
            mono_us() + (c->argc > 1 ? atoll(c->argv[1]) : 60) * 1000000;
      if (pm_queue_len(d->q) > 0) {
        if (mono_us() > d->deadline_us) {
          print_stats(d, "wait timed out: ");
          fprintf(stderr, "writer_driver: script line %d: wait timed out\n",
                  c->line);
          exit(3);
        }
        later(d, 10);
        return;
      }
      d->deadline_us = 0;
    } else if (strcmp(op, "waitfile") == 0) {
      struct stat st;
      if (c->argc < 2)
        die_line(c, "usage: waitfile PATH [SECONDS]");
      if (d->deadline_us == 0)
        d->deadline_us =
            mono_us() + (c->argc > 2 ? atoll(c->argv[2]) : 60) * 1000000;
      if (stat(c->argv[1], &st) != 0) {
        if (mono_us() > d->deadline_us) {
          fprintf(stderr, "writer_driver: script line %d: no %s\n", c->line,
                  c->argv[1]);
          exit(3);
        }
        later(d, 10);
        return;
      }
      d->deadline_us = 0;
    } else if (strcmp(op, "mark") == 0) {
      printf("mark %s\n", c->argc > 1 ? c->argv[1] : "");
      fflush(stdout);
    } else if (strcmp(op, "clock") == 0) {
      printf("clock %s %.6f\n", c->argc > 1 ? c->argv[1] : "",
             (double)mono_us() / 1e6);
      fflush(stdout);
    } else if (strcmp(op, "stats") == 0) {
      print_stats(d, "stats ");
    } else if (strcmp(op, "position") == 0) {
      print_position(d);
    } else {
      die_line(c, "unknown command");
    }
    d->pc++;
  }
  finish(d);
}

static void read_script(driver_t *d, FILE *f) {
  char line[4096];
  int lineno = 0;
  while (fgets(line, sizeof line, f)) {
    cmd_t c = {0};
    char *save = NULL, *tok;
    lineno++;
    line[strcspn(line, "#\r\n")] = '\0';
    for (tok = strtok_r(line, " \t", &save); tok && c.argc < MAX_ARGS;
         tok = strtok_r(NULL, " \t", &save))
      c.argv[c.argc++] = strdup(tok);
    if (c.argc == 0)
      continue;
    c.line = lineno;
    d->cmds = realloc(d->cmds, (d->ncmds + 1) * sizeof *d->cmds);
    if (!d->cmds) {
      fprintf(stderr, "writer_driver: out of memory\n");
      exit(1);
    }
    d->cmds[d->ncmds++] = c;
  }
}

static void on_ready(void *arg) {
  driver_t *d = arg;
  if (d->w)
    pm_writer_kick(d->w);
}

static void on_migrated(void *arg, int status) {
  *(int *)arg = status;
}

static void usage(void) {
  fprintf(stderr,
          "usage: writer_driver [--migrate] [--batch N] [--flush MS] "
          "[--queue N] [--max-age DAYS] [--retention DAYS] [--stmt-timeout "
          "S] [--connect-timeout S] [--drain-timeout S] [--password-file F] "
          "[--id ID] [--spool-id ID] [--deadletter DIR] [--metrics] [-v] "
          "CONNINFO < script\n");
  exit(2);
}

int main(int argc, char **argv) {
  enum {
    O_MIGRATE = 256,
    O_BATCH,
    O_FLUSH,
    O_QUEUE,
    O_AGE,
    O_RET,
    O_STMT,
    O_CONN,
    O_DRAIN,
    O_PWF,
    O_ID,
    O_METRICS,
    O_SPOOL,
    O_DL
  };
  static const struct option opts[] = {
      {"migrate", no_argument, NULL, O_MIGRATE},
      {"batch", required_argument, NULL, O_BATCH},
      {"flush", required_argument, NULL, O_FLUSH},
      {"queue", required_argument, NULL, O_QUEUE},
      {"max-age", required_argument, NULL, O_AGE},
      {"retention", required_argument, NULL, O_RET},
      {"stmt-timeout", required_argument, NULL, O_STMT},
      {"connect-timeout", required_argument, NULL, O_CONN},
      {"drain-timeout", required_argument, NULL, O_DRAIN},
      {"password-file", required_argument, NULL, O_PWF},
      {"id", required_argument, NULL, O_ID},
      {"metrics", no_argument, NULL, O_METRICS},
      {"spool-id", required_argument, NULL, O_SPOOL},
      {"deadletter", required_argument, NULL, O_DL},
      {NULL, 0, NULL, 0}};
  const int64_t S = 1000000, DAY = 86400 * S;
  pm_writer_opts_t wo = {0};
  driver_t d = {0};
  size_t queue_cap = 100000;
  int migrate = 0, metrics = 0, verbose = 0, c;
  char spool_hex[33];
  unsigned char rnd[16];

  wo.batch_max = 1000;
  wo.flush_interval_us = 100 * 1000;
  wo.max_sample_age_us = 400 * DAY;
  wo.statement_timeout_us = 60 * S;
  wo.connect_timeout_us = 5 * S;
  wo.daemon_id = "driver";
  d.drain_timeout_us = 60 * S;
  while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
    switch (c) {
    case O_MIGRATE:
      migrate = 1;
      break;
    case O_BATCH:
      wo.batch_max = strtoull(optarg, NULL, 10);
      break;
    case O_FLUSH:
      wo.flush_interval_us = strtoll(optarg, NULL, 10) * 1000;
      break;
    case O_QUEUE:
      queue_cap = strtoull(optarg, NULL, 10);
      break;
    case O_AGE:
      wo.max_sample_age_us = strtoll(optarg, NULL, 10) * DAY;
      break;
    case O_RET:
      wo.retention_us = strtoll(optarg, NULL, 10) * DAY;
      break;
    case O_STMT:
      wo.statement_timeout_us = strtoll(optarg, NULL, 10) * S;
      break;
    case O_CONN:
      wo.connect_timeout_us = strtoll(optarg, NULL, 10) * S;
      break;
    case O_DRAIN:
      d.drain_timeout_us = strtoll(optarg, NULL, 10) * S;
      break;
    case O_PWF:
      wo.password_file = optarg;
      break;
    case O_ID:
      wo.daemon_id = optarg;
      break;
    case O_METRICS:
      metrics = 1;
      break;
    case O_SPOOL:
      wo.spool_id = optarg;
      break;
    case O_DL:
      wo.deadletter_dir = optarg;
      break;
    case 'v':
      verbose = 1;
      break;
    default:
      usage();
    }
  }
  if (optind + 1 != argc)
    usage();
  wo.conninfo = argv[optind];
  if (!wo.spool_id) {
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
      fprintf(stderr, "writer_driver: no randomness\n");
      return 1;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
      snprintf(spool_hex + 2 * i, 3, "%02x", rnd[i]);
    wo.spool_id = spool_hex;
  }
  d.conninfo = wo.conninfo;
  d.spool_id = wo.spool_id;
  pm_log_init(verbose ? PM_LOG_DEBUG : PM_LOG_INFO, 0);
  start_us = wall_us();
  d.loop = uv_default_loop();

  if (migrate) {
    int status = 1;
    pm_writer_t *w = pm_writer_new(d.loop, &wo, NULL);
    if (!w || pm_writer_migrate(w, on_migrated, &status) != 0)
      return 1;
    uv_run(d.loop, UV_RUN_DEFAULT);
    pm_writer_free(w);
    uv_loop_close(d.loop);
    printf("migrate status=%d\n", status);
    return status == 0 ? 0 : 1;
  }

  read_script(&d, stdin);
  d.reg = pm_series_registry_new();
  d.q = pm_queue_new(d.loop, queue_cap, on_ready, &d);
  pm_source_t src = d.q ? pm_queue_source(d.q) : (pm_source_t){0};
  d.w = d.q ? pm_writer_new(d.loop, &wo, &src) : NULL;
  if (!d.reg || !d.w) {
    fprintf(stderr, "writer_driver: out of memory\n");
    return 1;
  }
  if (metrics) {
    const pm_metric_decl_t *tables[2] = {pm_canonical_metrics,
                                         pm_daemon_metrics};
    pm_writer_set_metrics(d.w, tables, 2);
  }
  uv_timer_init(d.loop, &d.timer);
  d.timer.data = &d;
  pm_writer_start(d.w);
  later(&d, 0);
  uv_run(d.loop, UV_RUN_DEFAULT);

  print_stats(&d, "");
  pm_writer_free(d.w);
  pm_queue_free(d.q);
  pm_series_registry_free(d.reg);
  for (size_t i = 0; i < d.ncmds; i++)
    for (int j = 0; j < d.cmds[i].argc; j++)
      free(d.cmds[i].argv[j]);
  free(d.cmds);
  free(d.gen_series);
  if (uv_loop_close(d.loop) != 0)
    fprintf(stderr, "writer_driver: handles left open on the loop\n");
  return d.drain_status == 0 ? 0 : 1;
}

/* The spool's speed, fsync on: 1M records appended in emits of 1000
 * (appenders never wait; the flusher group-commits), then read back (the
 * drain side), and emits that each wait for their own fsync. Prints the
 * figures; fails only if something is far off (a loaded CI machine must
 * not flake). PM_SPOOL_BENCH_DIR picks the file system (default /tmp;
 * /dev/shm is also measured when present). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "spool.h"

#define EMITS 1000
#define PER_EMIT 1000

static pm_series_t series[16];
static int ndone, nfail;

static void on_done(void *arg, int status) {
  (void)arg;
  ndone++;
  nfail += status != 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void rm_spool(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void bench(const char *base) {
  static pm_rec_t recs[PER_EMIT], out[10000];
  char dir[256], err[256];
  uv_loop_t loop;
  pm_spool_t *s;
  pm_spool_stats_t st;
  uint64_t after = 0, nread = 0;
  double t0, c0, t_app, t_dur, c_all, t_read;
  size_t n;

  snprintf(dir, sizeof(dir), "%s/pm-spool-bench-%d", base, (int)getpid());
  rm_spool(dir);
  uv_loop_init(&loop);
  pm_spool_opts_t o = {.dir = dir};
  assert_int_equal(pm_spool_open(&loop, &o, &s, err, sizeof(err)), 0);
  ndone = nfail = 0;

  t0 = now_s();
  c0 = cpu_s();
  for (int e = 0; e < EMITS; e++) {
    for (int i = 0; i < PER_EMIT; i++)
      recs[i] = (pm_rec_t){&series[i % 16], 1700000000000000 + e, i, 0};
    assert_int_equal(
        pm_spool_append(s, recs, PER_EMIT, NULL, 0, NULL, on_done, NULL), 0);
  }
  t_app = now_s() - t0;
  while (ndone < EMITS) {
    uv_run(&loop, UV_RUN_ONCE);
  }
  t_dur = now_s() - t0;
  c_all = cpu_s() - c0;
  assert_int_equal(nfail, 0);
  pm_spool_stats(s, &st);

  t0 = now_s();
  while ((n = pm_spool_read(s, after, out, 10000)) > 0) {
    after = out[n - 1].seq;
    nread += n;
  }
  t_read = now_s() - t0;
  assert_int_equal(nread, (uint64_t)EMITS * PER_EMIT);

  printf("spool bench (%s): %d records in emits of %d: appends returned in "
         "%.3f s, all durable in %.3f s (%.0f records/s durable, %.2f s CPU "
         "in all threads), %" PRIu64 " group commits, %.1f MB on disk; "
         "read back in %.3f s (%.0f records/s)\n",
         base, EMITS * PER_EMIT, PER_EMIT, t_app, t_dur,
         EMITS * PER_EMIT / t_dur, c_all, st.groups, (double)st.bytes / 1e6,
         t_read, nread / t_read);

  /* Each emit waiting for its own fsync: the latency a listener sees. */
  ndone = 0;
  t0 = now_s();
  for (int e = 0; e < 200; e++) {
    recs[0] = (pm_rec_t){&series[0], 1, e, 0};
    assert_int_equal(pm_spool_append(s, recs, 1, NULL, 0, NULL, on_done, NULL),
                     0);
    while (ndone <= e)
      uv_run(&loop, UV_RUN_ONCE);
  }
  printf("spool bench (%s): one emit at a time, each awaited: %.2f ms per "
         "durable emit\n",
         base, (now_s() - t0) / 200 * 1e3);
  fflush(stdout);

  pm_spool_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_spool_free(s);
  uv_loop_close(&loop);
  rm_spool(dir);
  assert_true(t_dur < 30);
  assert_true(c_all < 10);
}

static void test_bench(void **state) {
  const char *dir = getenv("PM_SPOOL_BENCH_DIR");
  struct stat st;
  (void)state;
  bench(dir && *dir ? dir : "/tmp");
  if (!dir && stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0)
    bench("/dev/shm");
}

int main(void) {
  static char names[16][32];
  pm_log_init(PM_LOG_WARNING, 0);
  for (int i = 0; i < 16; i++) {
    snprintf(names[i], sizeof(names[i]), "{\"site\":\"s%02d\"}", i);
    series[i] =
        (pm_series_t){1000 + i, "portal.messages_sent", names[i], PM_ADD};
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_bench)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

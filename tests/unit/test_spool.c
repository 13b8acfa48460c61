/* The spool: round trip across restarts, group commit and completions,
 * rotation and ack, the size cap, recovery (torn tails, flipped bytes,
 * bad headers), idempotency keys, and a failing fsync. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "crc32c.h"
#include "log.h"
#include "spool.h"

static pm_series_t ser_a = {101, "portal.messages_sent", "{\"site\":\"a\"}",
                            PM_ADD};
static pm_series_t ser_b = {-202, "portal.patients_enrolled",
                            "{\"site\":\"b\"}", PM_SET};

static uv_loop_t loop;
static char dir[64];
static pthread_t main_thread;

/* Completions, in the order they fired. */
static int ndone, done_arg[4096], done_status[4096], done_off_loop;

static void on_done(void *arg, int status) {
  if (!pthread_equal(pthread_self(), main_thread))
    done_off_loop++;
  done_arg[ndone] = (int)(intptr_t)arg;
  done_status[ndone] = status;
  ndone++;
}

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/pm_spool_XXXXXX");
  assert_non_null(mkdtemp(dir));
  strcat(dir, "/spool"); /* open creates it */
  uv_loop_init(&loop);
  main_thread = pthread_self();
  ndone = done_off_loop = 0;
  return 0;
}

static int teardown(void **state) {
  char top[64];
  (void)state;
  snprintf(top, sizeof(top), "%s", dir);
  *strrchr(top, '/') = 0;
  nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  assert_int_equal(uv_loop_close(&loop), 0);
  return 0;
}

static pm_spool_t *open_opts(pm_spool_opts_t o) {
  pm_spool_t *s = NULL;
  char err[256] = "";
  o.dir = dir;
  if (pm_spool_open(&loop, &o, &s, err, sizeof(err)) != 0)
    fail_msg("open: %s", err);
  return s;
}

static pm_spool_t *open_default(void) {
  return open_opts((pm_spool_opts_t){.commit_delay_us = 500});
}

static void close_spool(pm_spool_t *s) {
  pm_spool_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_spool_free(s);
}

/* Run the loop until `*v >= want` (or fail after ~5 s). */
static void wait_for(int *v, int want) {
  for (int i = 0; i < 5000 && *v < want; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (*v < want)
      usleep(1000);
  }
  assert_true(*v >= want);
}

static int count_segments(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  assert_non_null(d);
  while ((e = readdir(d)))
    n += strncmp(e->d_name, "seg-", 4) == 0;
  closedir(d);
  return n;
}

/* Wait until the folder holds `want` segment files. */
static void wait_segments(int want) {
  for (int i = 0; i < 5000 && count_segments() != want; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(count_segments(), want);
}

/* The name of the i-th segment file (sorted). */
static void segment_path(int i, char *out, size_t len) {
  assert_true(len >= 320);
  struct dirent **names;
  int n = scandir(dir, &names, NULL, alphasort), k = 0;
  out[0] = 0;
  for (int j = 0; j < n; j++) {
    if (strncmp(names[j]->d_name, "seg-", 4) == 0 && k++ == i)
      snprintf(out, len, "%s/%s", dir, names[j]->d_name);
    free(names[j]);
  }
  free(names);
  assert_true(out[0] != 0);
}

static int count_quarantine(void) {
  char q[96];
  DIR *d;
  struct dirent *e;
  int n = 0;
  snprintf(q, sizeof(q), "%s/quarantine", dir);
  if (!(d = opendir(q)))
    return 0;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static off_t file_size(const char *p) {
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  return st.st_size;
}

/* Append n records (values base, base + 1, ...) and wait until durable. */
static uint64_t append_wait(pm_spool_t *s, int n, double base) {
  pm_rec_t r[64];
  int before = ndone;
  assert_true(n <= 64);
  for (int i = 0; i < n; i++)
    r[i] =
        (pm_rec_t){i % 2 ? &ser_b : &ser_a, 1700000000000000 + i, base + i, 0};
  assert_int_equal(
      pm_spool_append(s, r, (size_t)n, NULL, 0, NULL, on_done, (void *)1), 0);
  wait_for(&ndone, before + 1);
  assert_int_equal(done_status[ndone - 1], 0);
  return r[0].seq;
}

/* Read everything after `after` into out; returns how many. */
static size_t read_all(pm_spool_t *s, uint64_t after, pm_rec_t *out,
                       size_t max) {
  size_t n = 0, k;
  while (n < max && (k = pm_spool_read(s, after, out + n, 3)) > 0) {
    after = out[n + k - 1].seq;
    n += k;
  }
  return n;
}

static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(pm_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(pm_crc32c(pm_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  assert_int_equal(pm_crc32c(0, "", 0), 0);
}

static void test_roundtrip_restart(void **state) {
  pm_rec_t out[32];
  char id[33];
  (void)state;

  pm_spool_t *s = open_default();
  assert_int_equal(strlen(pm_spool_id(s)), 32);
  snprintf(id, sizeof(id), "%s", pm_spool_id(s));
  assert_int_equal(append_wait(s, 3, 10), 1);
  assert_int_equal(append_wait(s, 2, 20), 4);
  assert_int_equal(pm_spool_last_seq(s), 5);
  assert_int_equal(read_all(s, 0, out, 32), 5);
  assert_true(out[0].value == 10 && out[2].value == 12 && out[4].value == 21);
  assert_ptr_not_equal(out[0].series, &ser_a); /* the spool's own copy */
  assert_int_equal(out[0].series->id, 101);
  assert_string_equal(out[1].series->metric, "portal.patients_enrolled");
  assert_string_equal(out[1].series->labels_json, "{\"site\":\"b\"}");
  assert_int_equal(out[1].series->kind, PM_SET);
  assert_int_equal(out[1].ts_us, 1700000000000001);
  assert_int_equal(pm_spool_len(s), 5);
  close_spool(s);

  s = open_default();
  assert_string_equal(pm_spool_id(s), id);
  assert_int_equal(pm_spool_last_seq(s), 5);
  assert_int_equal(read_all(s, 0, out, 32), 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(out[i].seq, i + 1);
  assert_true(out[3].value == 20 && out[3].series->id == 101);
  assert_int_equal(read_all(s, 3, out, 32), 2);
  assert_int_equal(out[0].seq, 4);
  /* seqs continue */
  assert_int_equal(append_wait(s, 1, 30), 6);
  pm_spool_stats_t st;
  pm_spool_stats(s, &st);
  assert_int_equal(st.records, 6);
  assert_int_equal(st.quarantined, 0);
  close_spool(s);
}

typedef struct th {
  pm_spool_t *s;
  int base;
} th_t;

static void *appender(void *arg) {
  th_t *t = arg;
  for (int i = 0; i < 100; i++) {
    pm_rec_t r = {&ser_a, 1, (double)(t->base + i), 0};
    assert_int_equal(pm_spool_append(t->s, &r, 1, NULL, 0, NULL, on_done,
                                     (void *)(intptr_t)(t->base + i)),
                     0);
  }
  return NULL;
}

static void test_group_commit(void **state) {
  pm_rec_t out[512];
  pm_spool_stats_t st;
  (void)state;

  pm_spool_t *s = open_opts((pm_spool_opts_t){.commit_delay_us = 50000});
  for (int i = 0; i < 10; i++) {
    pm_rec_t r = {&ser_a, 1, i, 0};
    assert_int_equal(
        pm_spool_append(s, &r, 1, NULL, 0, NULL, on_done, (void *)(intptr_t)i),
        0);
  }
  /* never inside append, nor before durable */
  assert_int_equal(ndone, 0);
  assert_int_equal(pm_spool_read(s, 0, out, 10), 0);
  wait_for(&ndone, 10);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(done_arg[i], i);
    assert_int_equal(done_status[i], 0);
  }
  pm_spool_stats(s, &st);
  assert_int_equal(st.groups, 1); /* one write, one fsync */
  assert_int_equal(pm_spool_read(s, 0, out, 10), 10);

  /* Four threads: each completion once, each thread's in order. */
  th_t t[4];
  pthread_t tid[4];
  ndone = 0;
  for (int i = 0; i < 4; i++) {
    t[i] = (th_t){s, 1000 * (i + 1)};
    pthread_create(&tid[i], NULL, appender, &t[i]);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(tid[i], NULL);
  wait_for(&ndone, 400);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(ndone, 400);
  int last[4] = {-1, -1, -1, -1};
  for (int i = 0; i < 400; i++) {
    int th = done_arg[i] / 1000 - 1, k = done_arg[i] % 1000;
    assert_int_equal(k, last[th] + 1);
    last[th] = k;
  }
  assert_int_equal(done_off_loop, 0);
  assert_int_equal(read_all(s, 10, out, 512), 400);
  for (int i = 0; i < 400; i++)
    assert_int_equal(out[i].seq, 11 + i);
  close_spool(s);
}

static void test_rotation_and_ack(void **state) {
  static pm_rec_t out[1100];
  pm_spool_stats_t st;
  int segs;
  (void)state;

  pm_spool_t *s =
      open_opts((pm_spool_opts_t){.commit_delay_us = -1, .segment_size = 4096});
  for (int i = 0; i < 100; i++)
    append_wait(s, 10, i * 10);
  segs = count_segments();
  assert_true(segs >= 5);
  pm_spool_stats(s, &st);
  assert_int_equal(st.segments, (uint64_t)segs);
  assert_int_equal(read_all(s, 0, out, 1100), 1000);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(out[i].seq, i + 1);
    assert_true(out[i].value == i);
  }
  /* A partial read, then on from the cursor; the same batch again (a
   * retry); from elsewhere. */
  assert_int_equal(pm_spool_read(s, 0, out, 7), 7);
  assert_int_equal(pm_spool_read(s, 7, out, 7), 7);
  assert_int_equal(out[0].seq, 8);
  assert_int_equal(pm_spool_read(s, 7, out, 7), 7);
  assert_int_equal(out[0].seq, 8);
  assert_int_equal(pm_spool_read(s, 3, out, 7), 7);
  assert_int_equal(out[0].seq, 4);
  assert_int_equal(pm_spool_read(s, 998, out, 7), 2);
  assert_int_equal(out[1].seq, 1000);
  assert_int_equal(pm_spool_read(s, 1000, out, 7), 0);
  assert_int_equal(pm_spool_read(s, 2, out, 1), 1);
  assert_int_equal(out[0].seq, 3);

  uint64_t before = pm_spool_bytes(s);
  pm_spool_ack(s, 500);
  assert_true(pm_spool_bytes(s) < before);
  assert_int_equal(pm_spool_len(s), 500);
  for (int i = 0; i < 2000 && count_segments() == segs; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_true(count_segments() < segs);
  assert_int_equal(read_all(s, 500, out, 1100), 500);
  assert_int_equal(out[0].seq, 501);
  /* acked segments are no longer read */
  size_t k = read_all(s, 0, out, 1100);
  assert_true(k >= 500 && k < 1000);
  pm_spool_ack(s, 1000);
  wait_segments(1); /* the newest stays */
  assert_int_equal(pm_spool_len(s), 0);
  assert_int_equal(pm_spool_oldest_ts(s), 0);
  close_spool(s);

  s = open_default();
  assert_int_equal(append_wait(s, 1, 0), 1001);
  close_spool(s);
}

static void test_max_size(void **state) {
  pm_rec_t r = {&ser_a, 1, 1, 0};
  int ok = 0, rc;
  (void)state;

  pm_spool_t *s = open_opts((pm_spool_opts_t){
      .commit_delay_us = -1, .segment_size = 1000, .max_size = 4000});
  while ((rc = pm_spool_append(s, &r, 1, NULL, 0, NULL, on_done, NULL)) == 0) {
    ok++;
    wait_for(&ndone, ok);
  }
  assert_int_equal(rc, PM_EBUSY);
  assert_true(ok > 20);
  assert_int_equal(pm_spool_full(s), 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(ndone, ok); /* never for the refused append */
  assert_true(pm_spool_bytes(s) <= 4000);
  pm_spool_ack(s, pm_spool_last_seq(s));
  assert_int_equal(pm_spool_full(s), 0);
  assert_int_equal(pm_spool_append(s, &r, 1, NULL, 0, NULL, on_done, NULL), 0);
  wait_for(&ndone, ok + 1);
  close_spool(s);
}

/* Three groups of three records in one segment; returns its path and the
 * size of each SAMPLES record. */
static void make_three(char *path, size_t len, pm_spool_opts_t o) {
  pm_spool_t *s = open_opts(o);
  append_wait(s, 3, 0);
  append_wait(s, 3, 3);
  append_wait(s, 3, 6);
  close_spool(s);
  segment_path(0, path, len);
}

#define SAMPLES3 (9 + 20 + 3 * 24)

static void test_torn_tail(void **state) {
  static const int cuts[] = {1, 4, 8, 9, 30, SAMPLES3 - 1};
  char path[320];
  pm_rec_t out[16];
  pm_spool_stats_t st;
  (void)state;

  for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
    off_t full;
    make_three(path, sizeof(path), (pm_spool_opts_t){.commit_delay_us = -1});
    full = file_size(path);
    assert_int_equal(truncate(path, full - SAMPLES3 + cuts[c]), 0);

    pm_spool_t *s = open_default();
    pm_spool_stats(s, &st);
    assert_int_equal(st.truncated_bytes, (uint64_t)cuts[c]);
    assert_int_equal(st.recovered, 6);
    assert_int_equal(st.quarantined, 0);
    assert_int_equal(file_size(path), full - SAMPLES3);
    assert_int_equal(read_all(s, 0, out, 16), 6);
    assert_int_equal(out[5].seq, 6);
    /* the lost seqs are never handed out again */
    assert_int_equal(append_wait(s, 1, 0), 10);
    close_spool(s);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  }

  /* A complete last record with a bad CRC: a torn tail too. */
  make_three(path, sizeof(path), (pm_spool_opts_t){.commit_delay_us = -1});
  int fd = open(path, O_RDWR);
  unsigned char b;
  off_t at = file_size(path) - 5;
  assert_int_equal(pread(fd, &b, 1, at), 1);
  b ^= 0x40;
  assert_int_equal(pwrite(fd, &b, 1, at), 1);
  close(fd);
  pm_spool_t *s = open_default();
  pm_spool_stats(s, &st);
  assert_int_equal(st.truncated_bytes, SAMPLES3);
  assert_int_equal(read_all(s, 0, out, 16), 6);
  close_spool(s);
}

static void test_flipped_middle(void **state) {
  char path[320];
  pm_rec_t out[16];
  pm_spool_stats_t st;
  unsigned char b;
  (void)state;

  make_three(path, sizeof(path), (pm_spool_opts_t){.commit_delay_us = -1});
  off_t full = file_size(path), at = full - 2 * SAMPLES3 + 40;
  int fd = open(path, O_RDWR);
  assert_int_equal(pread(fd, &b, 1, at), 1);
  b ^= 0xff;
  assert_int_equal(pwrite(fd, &b, 1, at), 1);
  close(fd);

  pm_spool_t *s = open_default();
  pm_spool_stats(s, &st);
  assert_int_equal(st.quarantined, 1);
  assert_int_equal(st.quarantined_bytes, SAMPLES3);
  assert_int_equal(st.truncated_bytes, 0);
  assert_int_equal(count_quarantine(), 1);
  assert_int_equal(read_all(s, 0, out, 16), 6);
  int want[] = {1, 2, 3, 7, 8, 9};
  for (int i = 0; i < 6; i++) {
    assert_int_equal(out[i].seq, want[i]);
    assert_true(out[i].value == want[i] - 1);
  }
  /* from a seq inside the hole, and after it */
  assert_int_equal(read_all(s, 4, out, 16), 3);
  assert_int_equal(out[0].seq, 7);
  assert_int_equal(append_wait(s, 1, 0), 10);
  close_spool(s);

  /* Reported again at the next start, copied once. */
  s = open_default();
  pm_spool_stats(s, &st);
  assert_int_equal(st.quarantined, 1);
  assert_int_equal(count_quarantine(), 1);
  assert_int_equal(read_all(s, 0, out, 16), 7);
  close_spool(s);
}

static void test_bad_header(void **state) {
  char path[320];
  pm_rec_t out[16];
  pm_spool_stats_t st;
  (void)state;

  /* segment_size 1: every group gets its own segment */
  make_three(path, sizeof(path),
             (pm_spool_opts_t){.commit_delay_us = -1, .segment_size = 1});
  assert_int_equal(count_segments(), 3);
  int fd = open(path, O_RDWR);
  assert_int_equal(pwrite(fd, "X", 1, 10), 1);
  close(fd);

  pm_spool_t *s = open_default();
  pm_spool_stats(s, &st);
  assert_int_equal(st.quarantined, 1);
  assert_int_equal(count_segments(), 2);
  assert_int_equal(count_quarantine(), 1);
  assert_int_equal(read_all(s, 0, out, 16), 6);
  assert_int_equal(out[0].seq, 4);
  close_spool(s);

  /* The newest segment's header, and spool.meta lost: the id comes back
   * from the other segment, and the seqs of the damaged one are still
   * never reused. */
  char id[33], meta[128];
  s = open_default();
  snprintf(id, sizeof(id), "%s", pm_spool_id(s));
  close_spool(s);
  segment_path(1, path, sizeof(path));
  fd = open(path, O_RDWR);
  assert_int_equal(pwrite(fd, "\0\0\0\0", 4, 0), 4);
  close(fd);
  snprintf(meta, sizeof(meta), "%s/spool.meta", dir);
  assert_int_equal(unlink(meta), 0);
  s = open_default();
  assert_string_equal(pm_spool_id(s), id);
  assert_int_equal(read_all(s, 0, out, 16), 3);
  assert_int_equal(out[0].seq, 4);
  assert_int_equal(append_wait(s, 1, 0), 10);
  close_spool(s);
}

static int keyed(pm_spool_t *s, const char *key, const char *scope, int arg) {
  pm_rec_t r = {&ser_a, 5, arg, 0};
  return pm_spool_append(s, &r, 1, key, strlen(key), scope, on_done,
                         (void *)(intptr_t)arg);
}

static void test_keys(void **state) {
  pm_rec_t out[16];
  pm_spool_stats_t st;
  (void)state;

  pm_spool_t *s = open_opts((pm_spool_opts_t){.commit_delay_us = 20000});
  assert_int_equal(keyed(s, "MSG1", "hl7", 1), 0);
  assert_int_equal(keyed(s, "MSG1", "hl7", 2), 1);   /* pending original */
  assert_int_equal(keyed(s, "MSG1", "other", 3), 0); /* another scope */
  assert_int_equal(ndone, 0);
  wait_for(&ndone, 3);
  assert_int_equal(done_arg[0], 1);
  assert_int_equal(done_arg[1], 2); /* after the original's */
  assert_int_equal(done_arg[2], 3);
  assert_int_equal(done_status[1], 0);
  assert_int_equal(keyed(s, "MSG1", "hl7", 4), 1); /* durable original */
  wait_for(&ndone, 4);
  assert_int_equal(read_all(s, 0, out, 16), 2);
  pm_spool_stats(s, &st);
  assert_int_equal(st.duplicates, 2);
  close_spool(s);

  /* across a restart */
  s = open_opts((pm_spool_opts_t){.commit_delay_us = -1, .segment_size = 1});
  assert_int_equal(keyed(s, "MSG1", "hl7", 5), 1);
  wait_for(&ndone, 5);
  assert_int_equal(done_status[4], 0);
  /* across the deletion of its segment: more groups, then ack them all */
  assert_int_equal(keyed(s, "MSG2", "hl7", 6), 0);
  wait_for(&ndone, 6);
  append_wait(s, 2, 0);
  append_wait(s, 2, 0);
  assert_true(count_segments() >= 3);
  pm_spool_ack(s, pm_spool_last_seq(s));
  /* the newest stays, and the keys carried forward got a new one */
  wait_segments(2);
  assert_int_equal(keyed(s, "MSG1", "hl7", 7), 1);
  assert_int_equal(keyed(s, "MSG2", "hl7", 8), 1);
  wait_for(&ndone, 10);
  close_spool(s);
  s = open_default();
  assert_int_equal(keyed(s, "MSG1", "hl7", 9), 1);
  assert_int_equal(keyed(s, "MSG2", "hl7", 10), 1);
  assert_int_equal(keyed(s, "MSG3", "hl7", 11), 0);
  wait_for(&ndone, 13);
  close_spool(s);
}

static void test_key_expiry(void **state) {
  (void)state;
  pm_spool_t *s = open_opts(
      (pm_spool_opts_t){.commit_delay_us = -1, .dedup_window_us = 200000});
  assert_int_equal(keyed(s, "K", "c", 1), 0);
  assert_int_equal(keyed(s, "K", "c", 2), 1);
  wait_for(&ndone, 2);
  usleep(300000);
  assert_int_equal(keyed(s, "K", "c", 3), 0); /* expired: new again */
  wait_for(&ndone, 3);
  close_spool(s);
  /* and not brought back by recovery once expired */
  usleep(300000);
  s = open_opts(
      (pm_spool_opts_t){.commit_delay_us = -1, .dedup_window_us = 200000});
  assert_int_equal(keyed(s, "K", "c", 4), 0);
  wait_for(&ndone, 4);
  close_spool(s);
}

static void test_fsync_failure(void **state) {
  pm_rec_t out[16], r[2] = {{&ser_a, 1, 100, 0}, {&ser_b, 1, 101, 0}};
  pm_spool_stats_t st;
  (void)state;

  pm_spool_t *s = open_opts((pm_spool_opts_t){.commit_delay_us = 20000});
  append_wait(s, 2, 0); /* seqs 1, 2 */
  assert_int_equal(count_segments(), 1);
  pm_spool__fail_fsyncs(s, 1);
  assert_int_equal(pm_spool_append(s, r, 2, "KEY", 3, "c", on_done, (void *)7),
                   0);
  assert_int_equal(keyed(s, "KEY", "c", 8), 1); /* dup of a doomed one */
  assert_int_equal(pm_spool_append(s, r, 1, NULL, 0, NULL, on_done, (void *)9),
                   0);
  wait_for(&ndone, 4);
  for (int i = 1; i < 4; i++)
    assert_int_equal(done_status[i], PM_EIO);
  assert_int_equal(done_arg[1], 7);
  assert_int_equal(done_arg[2], 8);
  assert_int_equal(pm_spool_last_seq(s), 2);
  assert_int_equal(read_all(s, 0, out, 16), 2);
  pm_spool_stats(s, &st);
  assert_int_equal(st.fsync_failures, 1);

  /* Later appends work, on a new segment; the key is not a duplicate. */
  assert_int_equal(keyed(s, "KEY", "c", 10), 0);
  wait_for(&ndone, 5);
  assert_int_equal(done_status[4], 0);
  assert_int_equal(count_segments(), 2);
  assert_int_equal(read_all(s, 0, out, 16), 3);
  assert_int_equal(out[2].seq, 6);
  assert_true(out[2].value == 10);
  close_spool(s);

  s = open_default();
  assert_int_equal(read_all(s, 0, out, 16), 3);
  assert_int_equal(out[2].seq, 6);
  pm_spool_stats(s, &st);
  assert_int_equal(st.quarantined + st.truncated_bytes, 0);
  assert_int_equal(keyed(s, "KEY", "c", 11), 1);
  wait_for(&ndone, 6);
  close_spool(s);

  /* A failing segment creation fails the group too. */
  s = open_opts((pm_spool_opts_t){.commit_delay_us = -1});
  pm_spool__fail_fsyncs(s, 1);
  assert_int_equal(pm_spool_append(s, r, 1, NULL, 0, NULL, on_done, (void *)12),
                   0);
  wait_for(&ndone, 7);
  assert_int_equal(done_status[6], PM_EIO);
  append_wait(s, 1, 0);
  close_spool(s);
}

static void test_closed(void **state) {
  pm_rec_t r = {&ser_a, 1, 1, 0};
  (void)state;
  pm_spool_t *s = open_opts((pm_spool_opts_t){.commit_delay_us = 100000});
  assert_int_equal(pm_spool_append(s, &r, 1, NULL, 0, NULL, on_done, NULL), 0);
  pm_spool_close(s, NULL, NULL);
  /* close flushed it and fired the completion */
  assert_int_equal(ndone, 1);
  assert_int_equal(done_status[0], 0);
  assert_int_equal(pm_spool_append(s, &r, 1, NULL, 0, NULL, on_done, NULL),
                   PM_ESTOPPED);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_spool_free(s);
  assert_int_equal(ndone, 1);
  s = open_default();
  assert_int_equal(pm_spool_last_seq(s), 1);
  close_spool(s);
}

int main(void) {
  pm_log_init(PM_LOG_ERROR, 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test_setup_teardown(test_roundtrip_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_and_ack, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flipped_middle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fsync_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

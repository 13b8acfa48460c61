/*
 * Spool recovery over arbitrary segment bytes (daemon/spool_recover.c,
 * spool_format.c). The first input byte picks the layout:
 *   0, 1  a valid header, then the rest of the input as records
 *   2     the rest of the input as the whole file (header included)
 *   3     two segments with valid headers, the rest split in two
 * No spool.meta is written, so recovery takes the id from the headers.
 * Oracles beyond "no crash, no leak": read returns strictly increasing
 * seqs, each with its series, never more than recovery counted; and
 * recovery is idempotent: a second open finds the same records and
 * nothing left to truncate.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "spool_format.h"

static char dir[64];

static void rm_tree(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  char p[512];
  if (!d)
    return;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
    if (unlink(p) != 0)
      rm_tree(p);
  }
  closedir(d);
  rmdir(path);
}

static void write_seg(uint64_t first_seq, int with_header, const uint8_t *data,
                      size_t size) {
  static const unsigned char id[16] = "fuzz-spool-id-01";
  unsigned char hdr[PM_SEG_HDR];
  pm_seg_hdr_t h;
  char name[32], path[128];
  int fd;

  pm_seg_name(name, first_seq);
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
  if (fd < 0)
    abort();
  if (with_header) {
    memcpy(h.id, id, 16);
    h.first_seq = first_seq;
    h.created_us = 1;
    pm_seg_hdr_encode(hdr, &h);
    if (write(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
      abort();
  }
  if (size && write(fd, data, size) != (ssize_t)size)
    abort();
  close(fd);
}

/* Open, read everything, close. Returns records read; *st the stats. */
static uint64_t recover_and_read(pm_spool_stats_t *st) {
  uv_loop_t loop;
  pm_spool_t *s = NULL;
  pm_spool_opts_t o = {.dir = dir, .commit_delay_us = -1};
  pm_rec_t out[64];
  uint64_t after = 0, total = 0;
  size_t n;
  char err[256];

  uv_loop_init(&loop);
  if (pm_spool_open(&loop, &o, &s, err, sizeof(err)) != 0)
    abort(); /* bad content must never make open fail */
  while ((n = pm_spool_read(s, after, out, 64)) > 0) {
    for (size_t i = 0; i < n; i++) {
      if (out[i].seq <= after || !out[i].series || !out[i].series->metric)
        abort();
      after = out[i].seq;
    }
    total += n;
  }
  if (after > pm_spool_last_seq(s))
    abort();
  pm_spool_stats(s, st);
  if (total > st->recovered)
    abort();
  pm_spool_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_spool_free(s);
  uv_loop_close(&loop);
  return total;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  pm_log_init(PM_LOG_ERROR - 1, 0); /* quiet: damage is expected */
  snprintf(dir, sizeof(dir), "/tmp/pm-fuzz-spool-XXXXXX");
  if (!mkdtemp(dir))
    abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pm_spool_stats_t a, b;
  uint64_t n1, n2;

  if (size < 1 || size > (1u << 20))
    return 0;
  rm_tree(dir);
  if (mkdir(dir, 0750) != 0)
    abort();
  switch (data[0] % 4) {
  case 2:
    write_seg(1, 0, data + 1, size - 1);
    break;
  case 3: {
    size_t half = (size - 1) / 2;
    write_seg(1, 1, data + 1, half);
    write_seg(1000000, 1, data + 1 + half, size - 1 - half);
    break;
  }
  default:
    write_seg(1, 1, data + 1, size - 1);
  }
  n1 = recover_and_read(&a);
  n2 = recover_and_read(&b);
  if (n1 != n2 || b.recovered != a.recovered || b.truncated_bytes != 0)
    abort();
  return 0;
}

/*
 * The spool's private state, shared by spool.c (appends, the flusher,
 * reads, acks) and spool_recover.c (open-time recovery and spool.meta).
 * Layer: writer and spool.
 */
#ifndef PM_SPOOL_INT_H
#define PM_SPOOL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "copybuf.h"
#include "idmap.h"
#include "spool.h"
#include "spool_format.h"
#include "spool_keys.h"

/* A byte range of a segment that recovery quarantined: read skips it. */
typedef struct pm_spool_range {
  uint64_t a, b;
} pm_spool_range_t;

/* One segment file. Created by recovery or the flusher, freed only by
 * the loop thread (after the flusher unlinked it and set `gone`), so the
 * loop may hold a pointer across unlocks. Fields that change are guarded
 * by the spool's mu. */
typedef struct pm_spool_seg {
  char name[32];
  uint64_t first_seq; /* from the header */
  uint64_t last_seq;  /* newest durable seq in it; first_seq - 1: none */
  uint64_t nrecs;     /* durable records in it */
  uint64_t end;       /* durable, valid bytes: read stops here */
  uint32_t gen;       /* in-memory generation (key index), from 1 */
  int wfd;            /* the flusher's, while active; else -1 */
  int rfd;            /* the reader's (loop thread); else -1 */
  int doomed;         /* acked: the flusher deletes it */
  int gone;           /* unlinked: the loop frees it */
  uint64_t del_after; /* delete once this group number is durable */
  pm_spool_range_t *bad;
  size_t nbad;
} pm_spool_seg_t;

/* A completion. wait_seq (duplicates only, else 0): the original's seq,
 * whose group's fate it shares. */
typedef struct pm_spool_comp {
  pm_done_cb cb;
  void *arg;
  uint64_t wait_seq;
} pm_spool_comp_t;

typedef struct pm_spool_done {
  pm_done_cb cb;
  void *arg;
  int status;
} pm_spool_done_t;

/* A key written in a group: its own (carried 0) or carried forward. */
typedef struct pm_spool_gkey {
  uint64_t h[2];
  int64_t seen_us;
  uint64_t seq;
  int carried;
} pm_spool_gkey_t;

/* A group commit: what appends gathered, written by the flusher at once. */
typedef struct pm_spool_group {
  pm_buf_t data;              /* framed KEY and SAMPLES records */
  const pm_series_t **series; /* the spool's, used by the samples */
  size_t nseries, capseries;
  pm_idset_t seen; /* ids in series[] */
  pm_spool_comp_t *comps;
  size_t ncomps, capcomps;
  pm_spool_gkey_t *keys;
  size_t nkeys, capkeys;
  uint64_t first_seq, last_seq; /* seqs assigned in it; 0 0: none */
  uint64_t nrecs;
  int64_t start_us;      /* monotonic time of its first entry; 0: empty */
  int64_t start_wall_us; /* the same, wall clock */
  uint64_t no;           /* group number */
} pm_spool_group_t;

/* The append time of a seq: the oldest unacked record's age. */
typedef struct pm_spool_ckpt {
  uint64_t seq;
  int64_t us;
} pm_spool_ckpt_t;

#define PM_SPOOL_CKPT_MAX 4096
#define PM_SPOOL_FAILED_MAX 16

struct pm_spool {
  uv_loop_t *loop;
  uv_async_t async;
  char *dir;
  uint64_t max_size, segment_size, commit_bytes;
  int64_t commit_delay_us;
  pm_ready_cb on_ready;
  void *ready_arg;
  int dirfd;
  char id[33];
  unsigned char idraw[16];
  unsigned char secret[32];

  pthread_mutex_t mu; /* everything below up to the flusher's part */
  pthread_cond_t cv;  /* wakes the flusher */
  uint64_t next_seq, durable_seq, acked_seq;
  pm_spool_group_t pend;
  uint64_t inflight_bytes; /* being written by the flusher */
  uint64_t disk_bytes;     /* live (not doomed) segments' valid bytes */
  pm_spool_seg_t **segs;   /* by first_seq */
  size_t nsegs, capsegs;
  pm_keyidx_t keys;
  pm_spool_done_t *done; /* completions for the loop */
  size_t ndone, capdone;
  int ready, reap; /* for the async: records readable, segments gone */
  int stop, closing;
  int doomed_waiting; /* segments wait for the flusher to delete them */
  struct {
    uint64_t a, b;
  } failed[PM_SPOOL_FAILED_MAX]; /* seq ranges of failed groups */
  size_t nfailed;
  pm_spool_ckpt_t ckpt[PM_SPOOL_CKPT_MAX];
  size_t nckpt;
  int64_t ckpt_step_us; /* at least this far apart (doubles when full) */
  pm_spool_stats_t st;

  /* The flusher's own. */
  pthread_t thr;
  int thr_started;
  pm_spool_seg_t *active;
  int rotate;
  pm_idset_t seg_series; /* series with a SERIES record in active */
  pm_buf_t prefix;
  pm_spool_group_t out; /* the group being written */
  uint32_t next_gen;
  atomic_int fail_syncs; /* tests */

  /* The series table: guarded by smu; entries live until free. */
  pthread_mutex_t smu;
  pm_series_t **ser;
  size_t nser, capser;
  pm_idmap_t ser_idx; /* id -> index in ser */

  /* The reader's (loop thread). */
  pm_rbuf_t rb;
  pm_spool_seg_t *cur_seg;
  uint64_t cur_off, cur_after;
  /* Where the last read started: a retry of the same batch (the writer
   * after a failed transaction) resumes there without a rescan. */
  pm_spool_seg_t *mark_seg;
  uint64_t mark_off, mark_after;

  void (*close_cb)(void *);
  void *close_arg;
};

/* spool_recover.c: read or create spool.meta, scan every segment, and
 * fill in segs, keys, the series table, next_seq and the stats. 0, or
 * PM_EIO (err filled) only if spool.meta cannot be written. */
int pm_spool__recover(pm_spool_t *s, char *err, size_t errlen);
/* Write spool.meta (temp file, fsync, rename, directory fsync). */
int pm_spool__write_meta(pm_spool_t *s, uint64_t next_seq);

/* spool.c, shared with recovery. */
const pm_series_t *pm_spool__intern(pm_spool_t *s, int64_t id, int kind,
                                    const char *metric, size_t mlen,
                                    const char *labels, size_t llen);
const pm_series_t *pm_spool__series(pm_spool_t *s, int64_t id);
int pm_spool__add_seg(pm_spool_t *s, pm_spool_seg_t *g);
void pm_spool__ckpt(pm_spool_t *s, uint64_t seq, int64_t us);
int64_t pm_spool__now_us(void);
int pm_spool__fsync_dir(int fd);

#endif

/*
 * The spool: the local write-ahead log every accepted sample goes
 * through before the writer ships it (DESIGN.md, "Flow, and the
 * durability contract", points 2, 3, 6 and 7). It replaces the in-memory
 * queue behind the same contract (read, ack, len, full, last_seq, close,
 * free), adds durable completions and idempotency keys, and survives
 * crashes. Layer: writer and spool.
 *
 * Threads. Appends come from any thread into a pending group under a
 * mutex. One dedicated flusher thread (not libuv's threadpool) writes a
 * group to the active segment with one write and one fdatasync, after
 * at most commit_delay_us from the group's first append (or at once past
 * commit_bytes), and hands the group's completions to the loop through
 * one uv_async_t. Completions fire on the loop thread, in append order,
 * never inside append. Records become readable only once durable.
 * Everything else (read, ack, close) is on the loop thread.
 *
 * Failure. A write or fsync error fails the whole group: every
 * completion in it gets PM_EIO, none of its records ever becomes
 * readable, the segment is truncated back to its last durable offset (if
 * the disk still lets us) and never written again, and the next group
 * goes to a new segment. Its seqs are simply never used. (If the disk
 * refuses the truncate too, a restart may find that group's records
 * again: reported failed, yet shipped once; a keyed emit's retry is then
 * recognised as a duplicate.)
 *
 * ---------------------------------------------------------------------
 * On-disk format, version 1 (PMSEG001). All integers little-endian.
 *
 * <dir>/spool.meta   text, 0600, replaced atomically (temp file, fsync,
 *                    rename, directory fsync):
 *                      portalmetrics-spool 1
 *                      id <32 hex: the spool id, random at creation>
 *                      secret <64 hex: 32 random bytes, the HMAC key>
 *                      next_seq <decimal: a floor for the next seq>
 *                      crc <8 hex: CRC32C of the lines above>
 *                    Written at creation, after every open's recovery and
 *                    at close. If it is lost, the id is taken back from a
 *                    segment header (keys recorded so far then no longer
 *                    match: a new secret).
 * <dir>/seg-<first seq, 20 digits>.log
 *   header, 48 bytes:
 *     0  magic "PMSEG001"
 *     8  spool id (16 bytes)
 *    24  u64 first seq (every SAMPLES seq in the file is >= it)
 *    32  i64 created_us (wall clock)
 *    40  u32 reserved (0)
 *    44  u32 CRC32C of bytes 0..43
 *   then records, back to back:
 *     u32 payload_len | u32 crc32c(type || payload) | u8 type | payload
 *   types:
 *     1 SERIES  i64 id | u8 kind | u16 metric_len | metric |
 *               u32 labels_len | labels_json   (no NUL bytes)
 *               Written the first time a series appears in a segment,
 *               before the samples that use it: a segment is
 *               self-contained.
 *     2 SAMPLES u64 first_seq | i64 append_us | u32 n |
 *               n x { i64 series_id | i64 ts_us | f64 value }
 *               One per emit (all or nothing); seqs first_seq ..
 *               first_seq + n - 1, strictly increasing across the spool.
 *     3 KEY     16-byte keyed hash | i64 seen_us | u64 seq
 *               An idempotency key: HMAC-SHA-256(secret, scope || 0 ||
 *               key), truncated to 16 bytes; seq is the first seq of the
 *               emit it belongs to. In the same group as its samples;
 *               re-appended ("carried forward") when its segment is
 *               deleted while the key is still within the window.
 *   A payload is at most 64 MiB.
 * <dir>/quarantine/  what recovery set aside: a whole segment with a bad
 *                    header (same name), or a bad byte range copied to
 *                    <segment name>.<start>-<end>.
 *
 * Recovery (at open, before the loop runs; blocking). Segments are
 * scanned in order, every record's CRC and structure checked, and seqs
 * must increase. A bad record with nothing valid after it at the end of
 * the last segment is a torn tail: truncated away (ftruncate + fsync). A
 * bad range followed by a valid record (the next offset where a record
 * parses with a valid CRC) is copied to quarantine/ and skipped; the seqs
 * it held are simply absent. A bad tail of an older segment is
 * quarantined then truncated. A segment with a bad header (or another
 * spool's id) is moved to quarantine/ whole. Open never fails because of
 * what it finds; only an I/O error on the folder itself fails it.
 *
 * Sizes. Records are not kept in memory: read uses pread with a cursor,
 * so memory stays bounded however much the spool holds; what stays in
 * memory is the series table, the key index (keys within the window) and
 * a bounded list of append-time checkpoints.
 */
#ifndef PM_SPOOL_H
#define PM_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "queue.h" /* pm_rec_t, pm_done_cb, pm_ready_cb */

typedef struct pm_spool pm_spool_t;

typedef struct pm_spool_opts {
  const char *dir;         /* the spool folder (created 0750 if absent) */
  uint64_t max_size;       /* bytes on disk; appends past it: PM_EBUSY.
                              0: no cap */
  uint64_t segment_size;   /* rotate past it; 0: 64 MiB */
  int64_t commit_delay_us; /* group commit delay; 0: 2 ms; < 0: none */
  size_t commit_bytes;     /* flush a group early past it; 0: 1 MiB */
  int64_t dedup_window_us; /* keys are remembered this long; 0: 7 days */
  pm_ready_cb on_ready;    /* loop thread, coalesced: records became
                              readable (also once after open if the
                              spool holds records) */
  void *ready_arg;
} pm_spool_opts_t;

typedef struct pm_spool_stats {
  uint64_t records;     /* held: not yet acked (pending included) */
  uint64_t bytes;       /* on disk, plus what is pending */
  uint64_t segments;    /* segment files */
  uint64_t recovered;   /* records found at open */
  uint64_t quarantined; /* ranges and whole segments set aside at open */
  uint64_t quarantined_bytes;
  uint64_t truncated_bytes; /* torn tails cut at open */
  uint64_t fsync_failures;  /* groups failed by a write or fsync error */
  uint64_t duplicates;      /* appends recognised by their key */
  uint64_t groups;          /* group commits written */
  uint64_t orphans;         /* records skipped by read: series lost */
} pm_spool_stats_t;

/*
 * Open (or create) the spool in o->dir and recover it (see above), then
 * start the flusher thread. Call before the loop runs. Returns 0 and
 * *out; PM_EIO (with a message in err) if the folder cannot be created or
 * opened or spool.meta cannot be written; PM_ENOMEM; PM_EINVAL. Logs what
 * recovery found.
 */
int pm_spool_open(uv_loop_t *loop, const pm_spool_opts_t *o, pm_spool_t **out,
                  char *err, size_t errlen);

/* The spool's identity: 32 lower-case hex characters, stable for the
 * spool's life (the key of portalmetrics.ingest_position). */
const char *pm_spool_id(const pm_spool_t *s);

/*
 * Any thread. Append n records (their seq fields are set here) as one
 * SAMPLES record: all or nothing. rec->series must stay valid until the
 * call returns (the spool copies what it needs into its own table).
 *
 * key (keylen bytes, may be NULL) is an idempotency key within scope (the
 * collector's name). If the same (scope, key) was appended within the
 * dedup window (durable, or still pending), nothing is appended, 1 is
 * returned, and done fires once the original is durable (with the
 * original's status). Otherwise the key is recorded in the same group
 * commit as the samples.
 *
 * Returns 0 (done, if not NULL, fires later on the loop thread: 0 once
 * the group is fsynced, PM_EIO if it failed), 1 (a duplicate), PM_EBUSY
 * (the spool is at max_size), PM_ESTOPPED (closing), PM_ENOMEM,
 * PM_EINVAL. done is never called when append returns an error.
 *
 * Example (an HL7 listener, through the host):
 *     rc = pm_spool_append(s, recs, n, "SENDAPP|FAC|MSG00042", 20,
 *                          "hl7_main", on_durable, conn);
 *     // 0 or 1: ACK upstream in on_durable; PM_EBUSY: refuse, close
 */
int pm_spool_append(pm_spool_t *s, pm_rec_t *recs, size_t n, const void *key,
                    size_t keylen, const char *scope, pm_done_cb done,
                    void *arg);

/*
 * Loop thread. Copy up to max durable records with seq > after_seq, in
 * order, into out; returns how many. rec->series points into the spool's
 * own series table (valid until pm_spool_free). Reading on from the last
 * seq returned continues from a cursor; another after_seq rescans from
 * the start of its segment.
 */
size_t pm_spool_read(pm_spool_t *s, uint64_t after_seq, pm_rec_t *out,
                     size_t max);

/*
 * Loop thread. Everything with seq <= upto_seq is shipped: every segment
 * whose records all are is deleted (unlink, directory fsync: done by the
 * flusher within a commit delay), except the newest. Keys of a deleted
 * segment still within the window are carried forward into the active
 * segment first, so de-duplication survives deletion and restarts.
 */
void pm_spool_ack(pm_spool_t *s, uint64_t upto_seq);

/* Any thread. Records held (not acked, pending included; approximate
 * when ranges were quarantined), and whether an append of one record
 * would get PM_EBUSY. */
size_t pm_spool_len(pm_spool_t *s);
int pm_spool_full(pm_spool_t *s);
/* Seq of the newest durable record (0: none): what read can reach. */
uint64_t pm_spool_last_seq(pm_spool_t *s);
/* Bytes on disk plus pending. */
uint64_t pm_spool_bytes(pm_spool_t *s);
/* Wall-clock time (Unix us) at which the oldest record not yet acked was
 * appended, to within the checkpoints' resolution (one per second at
 * best); 0 if none is held. */
int64_t pm_spool_oldest_ts(pm_spool_t *s);
void pm_spool_stats(pm_spool_t *s, pm_spool_stats_t *out);

/*
 * Loop thread. Refuse further appends (PM_ESTOPPED), write and fsync what
 * is pending, stop the flusher (this waits for its last fsync), fire the
 * remaining completions, close the async handle; cb (may be NULL) after
 * the handle is closed.
 */
void pm_spool_close(pm_spool_t *s, void (*cb)(void *arg), void *arg);
/* After close's cb: free. */
void pm_spool_free(pm_spool_t *s);

/* Tests only: make the next `n` fsyncs of segment data fail (EIO). */
void pm_spool__fail_fsyncs(pm_spool_t *s, int n);

/* The spool as the writer's source. */
pm_source_t pm_spool_source(pm_spool_t *s);

#endif

/*
 * The hand-off between emitters and the writer: a bounded, ordered,
 * in-memory queue of records, each with a sequence number. Emit pushes
 * from any thread; the loop thread reads batches in order and acks what
 * PostgreSQL committed. The spool of the durability issue replaces it
 * behind the same interface. Layer: writer and spool.
 */
#ifndef PM_QUEUE_H
#define PM_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "series.h"
#include "source.h" /* pm_rec_t */

/* Loop thread: status 0 when queued (durable, once there is a spool),
 * negative when it never will be. */
typedef void (*pm_done_cb)(void *arg, int status);
/* Loop thread: records are waiting. */
typedef void (*pm_ready_cb)(void *arg);

typedef struct pm_queue pm_queue_t;

/* max_records bounds memory; on_ready fires (coalesced) after pushes. */
pm_queue_t *pm_queue_new(uv_loop_t *loop, size_t max_records,
                         pm_ready_cb on_ready, void *ready_arg);

/*
 * Any thread. Append n records (their seq fields are set here) as one
 * unit. done (may be NULL) is called later on the loop thread, never from
 * inside push, and never when push fails. PM_EBUSY: no room for n more.
 * PM_ESTOPPED: the queue is closing.
 */
int pm_queue_push(pm_queue_t *q, pm_rec_t *recs, size_t n, pm_done_cb done,
                  void *done_arg);

/* Loop thread. Copy up to max records with seq > after_seq, in order, into
 * out; returns how many. */
size_t pm_queue_read(pm_queue_t *q, uint64_t after_seq, pm_rec_t *out,
                     size_t max);

/* Loop thread. Forget every record with seq <= upto_seq: it is shipped. */
void pm_queue_ack(pm_queue_t *q, uint64_t upto_seq);

/* Any thread. Records held, and whether a push of one would fail. */
size_t pm_queue_len(pm_queue_t *q);
int pm_queue_full(pm_queue_t *q);
/* Seq of the newest record pushed (0: none yet). */
uint64_t pm_queue_last_seq(pm_queue_t *q);

/* Loop thread. Refuse further pushes, fire the pending completions (their
 * records are queued, so with 0), close the async handle; cb (may be
 * NULL) after the handle is closed. */
void pm_queue_close(pm_queue_t *q, void (*cb)(void *arg), void *arg);
/* The queue as the writer's source. */
pm_source_t pm_queue_source(pm_queue_t *q);

/* After close's cb: free. Records not acked are lost with it (in-memory
 * queue only: the spool keeps them). */
void pm_queue_free(pm_queue_t *q);

#endif

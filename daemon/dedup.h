/*
 * Idempotency keys seen within a window, so a retransmitted emit (an HL7
 * sender that lost our ACK) is counted once. Keys are kept as 128-bit
 * keyed hashes, never raw. In memory for now: the durable spool will
 * write the index in the same group commit as the samples. Thread-safe.
 * Bottom layer.
 */
#ifndef PM_DEDUP_H
#define PM_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_dedup pm_dedup_t;

pm_dedup_t *pm_dedup_new(int64_t window_us);
void pm_dedup_free(pm_dedup_t *d);

/*
 * Reserve key for scope (the collector's name). Returns 1 if it was seen
 * within the window (a duplicate: nothing reserved), 0 if it is now
 * reserved, or a negative error. A reservation stands once the samples
 * are taken; if they were not, undo it with pm_dedup_cancel so the
 * sender's retry is not mistaken for a duplicate.
 */
int pm_dedup_reserve(pm_dedup_t *d, const char *scope, const void *key,
                     size_t len, int64_t now_us, uint64_t out_hash[2]);
void pm_dedup_cancel(pm_dedup_t *d, const uint64_t hash[2]);

#endif

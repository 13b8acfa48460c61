/* Idempotency keys as keyed hashes: never stored raw. Shared by the
 * spool's durable key index and the in-memory one of --once. Bottom
 * layer. */
#ifndef PM_KEYHASH_H
#define PM_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

/* out = the first 16 bytes of HMAC-SHA-256(secret, scope || 0 || key),
 * never all zero (zero marks an empty slot in the indexes). scope (the
 * collector's name) keeps two collectors' keys apart. Returns 0,
 * PM_ENOMEM or PM_EINTERNAL. */
int pm_keyhash(const unsigned char *secret, size_t secretlen, const char *scope,
               const void *key, size_t len, uint64_t out[2]);

#endif

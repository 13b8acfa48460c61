/*
 * CRC32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected), the
 * checksum of the spool's records. A thin wrapper over ISA-L's
 * crc32_iscsi (SSE4.2 / PCLMUL where the CPU has them), giving it the
 * usual convention: the initial value 0 starts a new checksum, and the
 * result of one call is the `crc` of the next, so
 *   pm_crc32c(pm_crc32c(0, a, na), b, nb) == pm_crc32c(0, a||b, na + nb).
 * The check value: pm_crc32c(0, "123456789", 9) == 0xE3069283. Bottom
 * layer.
 */
#ifndef PM_CRC32C_H
#define PM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t pm_crc32c(uint32_t crc, const void *p, size_t n);

#endif

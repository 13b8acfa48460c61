/* ISA-L's crc32_iscsi takes and returns the raw register (no final
 * inversion, and an int length): invert on the way in and out, and feed
 * long buffers in pieces. */
#include "crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

uint32_t pm_crc32c(uint32_t crc, const void *p, size_t n) {
  unsigned char *b = (unsigned char *)p; /* ISA-L's prototype lacks const */
  unsigned int c = ~crc;

  while (n > 0) {
    size_t k = n > (size_t)(INT_MAX / 2) ? (size_t)(INT_MAX / 2) : n;
    c = crc32_iscsi(b, (int)k, c);
    b += k;
    n -= k;
  }
  return ~c;
}

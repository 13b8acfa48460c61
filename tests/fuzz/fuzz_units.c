/*
 * Durations and sizes (daemon/units.h). Oracles beyond "no crash": every
 * duration that parses prints back to a string that parses to the same
 * value, and any int64 prints to a string that reads back exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <portalmetrics/plugin.h>

#include "units.h"

static void check_roundtrip(int64_t us) {
  char out[64];
  int64_t back = -1;

  pm_format_duration(us, out, sizeof(out));
  if (us >= 0 && (pm_parse_duration(out, &back) != 0 || back != us))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char text[256], small[8];
  int64_t us, v;
  uint64_t bytes;

  if (size >= sizeof(text))
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  if (pm_parse_duration(text, &us) == 0) {
    if (us < 0)
      abort();
    check_roundtrip(us);
  }
  (void)pm_parse_size(text, &bytes);

  /* Raw bytes as a value to print, into a full and a short buffer. */
  if (size >= sizeof(v)) {
    memcpy(&v, data, sizeof(v));
    check_roundtrip(v);
    pm_format_duration(v, small, (size_t)data[0] % sizeof(small));
  }
  return 0;
}

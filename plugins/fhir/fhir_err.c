/* One printable line for every fhir_* error text (see fhir_err.h). */
#include "fhir_err.h"

#include <stdarg.h>
#include <stdio.h>

void fhir_err_set(char *err, size_t errlen, size_t max, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  size_t cap = errlen < max + 1 ? errlen : max + 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  for (char *c = err; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
      *c = '?';
}

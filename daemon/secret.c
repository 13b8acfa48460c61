/*
 * Secrets read from files: see secret.h.
 */
#include "secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MAX 4096 /* with the NUL */

char *pm_secret_read(const char *path, const char *what, char *err,
                     size_t errlen) {
  FILE *f = fopen(path, "r");
  char *buf;
  size_t n;
  if (!f) {
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    return NULL;
  }
  buf = calloc(1, SECRET_MAX);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  n = fread(buf, 1, SECRET_MAX - 1, f);
  if (ferror(f)) {
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    fclose(f);
    pm_secret_free(buf);
    return NULL;
  }
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

void pm_secret_free(char *s) {
  if (!s)
    return;
  /* volatile: a plain memset before free may be optimised away */
  volatile char *p = s;
  while (*p)
    *p++ = '\0';
  free(s);
}

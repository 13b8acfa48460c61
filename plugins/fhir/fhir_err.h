/*
 * The error texts of the fhir_* parsers and clients: one printable ASCII
 * line in the caller's buffer, whatever an argument held (a server's
 * bytes must not reach a log as control characters).
 */
#ifndef FHIR_ERR_H
#define FHIR_ERR_H

#include <stddef.h>

/* Format into err (errlen bytes; err may be NULL or errlen 0: nothing),
 * cut to at most max bytes plus the NUL, every byte outside 0x20..0x7e
 * replaced by '?'. */
void fhir_err_set(char *err, size_t errlen, size_t max, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

/*
 * Secrets read from files (the database password_file): read the first
 * line, and wipe it from memory when done. Apart from the writer because
 * it is generic file handling with no daemon dependencies, and so that a
 * secret is read and wiped in one reviewed place. Bottom layer.
 */
#ifndef PM_SECRET_H
#define PM_SECRET_H

#include <stddef.h>

/*
 * The first line of the file at path (at most 4095 bytes), without its
 * newline: a new string, to release with pm_secret_free. NULL on failure,
 * with a message in err: "cannot read WHAT PATH: REASON", where what
 * names the setting the path came from (e.g. "password_file").
 */
char *pm_secret_read(const char *path, const char *what, char *err,
                     size_t errlen);

/* Overwrite s with zeros, then free it. NULL is fine. */
void pm_secret_free(char *s);

#endif

/* File ownership and mode checks for trusted files (see fileperm.h). */
#include "fileperm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <portalmetrics/plugin.h>

static int stat_path(const char *path, struct stat *st, char *err,
                     size_t errlen) {
  if (!path || !*path) {
    if (err && errlen)
      snprintf(err, errlen, "(empty path): invalid path");
    return PM_EINVAL;
  }
  if (stat(path, st) != 0) {
    if (err && errlen)
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return PM_EIO;
  }
  return 0;
}

int pm_path_check_owner(const char *path, char *err, size_t errlen) {
  struct stat st;
  uid_t me = geteuid();
  int rc;

  if ((rc = stat_path(path, &st, err, errlen)) != 0)
    return rc;
  /* Whoever can write a trusted file can run code as the daemon (a
   * plugin) or redirect its data (a config): only root and the daemon's
   * own user may. */
  if (st.st_uid != 0 && st.st_uid != me) {
    if (err && errlen)
      snprintf(err, errlen,
               "%s: owned by uid %lu, which is neither root nor the daemon's "
               "user (uid %lu)",
               path, (unsigned long)st.st_uid, (unsigned long)me);
    return PM_ECONFIG;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    if (err && errlen)
      snprintf(err, errlen,
               "%s: writable by group or others (mode %04o): chmod go-w %s",
               path, (unsigned)(st.st_mode & 07777), path);
    return PM_ECONFIG;
  }
  return 0;
}

int pm_path_private(const char *path, char *err, size_t errlen) {
  struct stat st;
  int rc;

  if ((rc = stat_path(path, &st, err, errlen)) != 0)
    return rc;
  return (st.st_mode & S_IRWXO) == 0;
}

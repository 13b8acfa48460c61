/* Who may change the files the daemon trusts (DESIGN.md "Operations": the
 * daemon refuses a config file, plugin directory or plugin file that users
 * other than root and its own user can write). Bottom layer. */
#ifndef PM_FILEPERM_H
#define PM_FILEPERM_H

#include <stddef.h>

/*
 * Checks path (following symlinks) is owned by root or the effective
 * user, and is writable neither by its group nor by others. Returns 0,
 * PM_ECONFIG with one line in err, e.g.
 *   "/etc/x.conf: writable by group or others (mode 0664): chmod go-w
 *    /etc/x.conf"
 * or PM_EIO when path cannot be examined ("/etc/x.conf: No such file or
 * directory").
 */
int pm_path_check_owner(const char *path, char *err, size_t errlen);

/*
 * 1 if path's mode gives others no access at all (mode & 0007 == 0), 0
 * if it does, PM_EIO (with err) if path cannot be examined. For the
 * secrets rule: an inline secret only in a file others cannot read.
 */
int pm_path_private(const char *path, char *err, size_t errlen);

#endif

/*
 * Messages about libconfig settings, shared by the daemon's own config
 * (config.c) and plugins' settings blocks (settings.c): where a setting
 * is ("FILE:LINE: path.to.key: ..."), and how a value or type is named
 * in one line. Bottom layer.
 */
#ifndef PM_CONFMSG_H
#define PM_CONFMSG_H

#include <stdarg.h>
#include <stddef.h>
#include <libconfig.h>
#include <portalmetrics/plugin.h>

/* Write "FILE:LINE: PATH: message" into err (if err and errlen): FILE is
 * the file s was read from (its own when it came from an @include; dflt
 * when s is NULL or names none), LINE is s's (1 when unknown). Returns
 * PM_ECONFIG, so callers can `return pm_confmsg_fail(...)`. */
int pm_confmsg_fail(char *err, size_t errlen, const char *dflt,
                    const config_setting_t *s, const char *path,
                    const char *fmt, ...) PM_PRINTF(6, 7);
int pm_confmsg_failv(char *err, size_t errlen, const char *dflt,
                     const config_setting_t *s, const char *path,
                     const char *fmt, va_list ap);

/* The file s was read from, or dflt. libconfig records an @include'd
 * file by the name written in the directive; the include directory makes
 * it a path the operator can open (written into buf when needed). */
const char *pm_confmsg_file(const config_setting_t *s, const char *dflt,
                            char *buf, size_t len);

/* "an integer", "a string", ... for a CONFIG_TYPE_*. */
const char *pm_confmsg_type(int config_type);

/* s as it may appear in a one-line message: control characters become
 * '?', and a long value is cut with "...", so a value can neither break
 * the line nor flood the log. Returns buf. */
const char *pm_confmsg_show(const char *s, char *buf, size_t len);

/* dst = "parent.key" (or "key" when parent is empty); a path too long is
 * cut, which only shortens a message. */
void pm_confmsg_join(char *dst, size_t n, const char *parent, const char *key);

#endif

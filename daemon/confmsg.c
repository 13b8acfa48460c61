/* One-line messages about libconfig settings. */
#include "confmsg.h"

#include <stdio.h>
#include <string.h>

const char *pm_confmsg_type(int type) {
  switch (type) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64:
    return "an integer";
  case CONFIG_TYPE_FLOAT:
    return "a float";
  case CONFIG_TYPE_STRING:
    return "a string";
  case CONFIG_TYPE_BOOL:
    return "a boolean";
  case CONFIG_TYPE_GROUP:
    return "a group";
  case CONFIG_TYPE_ARRAY:
    return "an array";
  case CONFIG_TYPE_LIST:
    return "a list";
  default:
    return "nothing";
  }
}

const char *pm_confmsg_file(const config_setting_t *s, const char *dflt,
                            char *buf, size_t len) {
  const char *f = config_setting_source_file(s);
  const char *dir = s->config ? config_get_include_dir(s->config) : NULL;
  int w;

  if (!f)
    return dflt;
  if (f[0] == '/' || strcmp(f, dflt) == 0 || !dir || !*dir ||
      strcmp(dir, ".") == 0)
    return f;
  w = snprintf(buf, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/",
               f);
  return w > 0 && (size_t)w < len ? buf : f;
}

int pm_confmsg_failv(char *err, size_t errlen, const char *dflt,
                     const config_setting_t *s, const char *path,
                     const char *fmt, va_list ap) {
  char msg[512], fbuf[1024];
  const char *file = dflt;
  unsigned line = 1; /* the root group has no line of its own */

  if (!err || errlen == 0)
    return PM_ECONFIG;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  if (s) {
    file = pm_confmsg_file(s, dflt, fbuf, sizeof(fbuf));
    if (config_setting_source_line(s) > 0)
      line = config_setting_source_line(s);
  }
  snprintf(err, errlen, "%s:%u: %s: %s", file, line, path, msg);
  return PM_ECONFIG;
}

int pm_confmsg_fail(char *err, size_t errlen, const char *dflt,
                    const config_setting_t *s, const char *path,
                    const char *fmt, ...) {
  va_list ap;
  int rc;
  va_start(ap, fmt);
  rc = pm_confmsg_failv(err, errlen, dflt, s, path, fmt, ap);
  va_end(ap);
  return rc;
}

const char *pm_confmsg_show(const char *s, char *buf, size_t len) {
  size_t i = 0, max = len > 64 ? 64 : len - 1;

  for (; s[i] && i < max; i++)
    buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[i] = '\0';
  if (s[i] && i >= 3)
    memcpy(buf + i - 3, "...", 4);
  return buf;
}

void pm_confmsg_join(char *dst, size_t n, const char *parent, const char *key) {
  int w = parent && *parent ? snprintf(dst, n, "%s.%s", parent, key)
                            : snprintf(dst, n, "%s", key);
  if (w < 0)
    dst[0] = '\0';
}

/*
 * The config loader's private helpers, shared by config.c (daemon,
 * database, spool, collectors) and config_alerts.c (alerts, targets,
 * notifiers). Every mistake is one line "FILE:LINE: path.to.key: message"
 * with PM_ECONFIG; each reader leaves *out alone when the key is absent.
 * Bottom layer.
 */
#ifndef PM_CONFIG_INT_H
#define PM_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <libconfig.h>
#include "config.h"

#define PM_CFG_PATH_LEN 512

typedef struct pm_cfgctx {
  const char *file; /* for messages when a setting names no file */
  int from_file;    /* 0: loaded from a string, no file to vouch */
  char *err;
  size_t errlen;
  pm_config_t *cfg;
} pm_cfgctx_t;

/* "FILE:LINE: path: message" into c->err; returns PM_ECONFIG. */
int pm_cfg_fail(pm_cfgctx_t *c, const config_setting_t *s, const char *path,
                const char *fmt, ...) PM_PRINTF(4, 5);
/* "FILE: out of memory"; returns PM_ENOMEM. */
int pm_cfg_oom(pm_cfgctx_t *c);
/* *dst = strdup(v) (the old value freed); 0 or PM_ENOMEM. */
int pm_cfg_set_str(pm_cfgctx_t *c, char **dst, const char *v);

/* Every member of g must be one of known (NULL-terminated). */
int pm_cfg_check_keys(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *const *known);
/* The member key of g in *sp (NULL when absent) and its path in path;
 * fails "expected WANT, got ..." unless it has type `type` (INT takes
 * INT64 too). */
int pm_cfg_typed(pm_cfgctx_t *c, const config_setting_t *g, const char *gpath,
                 const char *key, int type, const char *want,
                 const config_setting_t **sp, char *path, size_t pathlen);
int pm_cfg_required_missing(pm_cfgctx_t *c, const config_setting_t *g,
                            const char *path);
/* A non-empty string; *where (if not NULL) is the setting or NULL. */
int pm_cfg_get_string(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *key, int required,
                      char **out, const config_setting_t **where);
/* A duration >= min_us. */
int pm_cfg_get_duration(pm_cfgctx_t *c, const config_setting_t *g,
                        const char *gpath, const char *key, int64_t min_us,
                        int64_t *out, const config_setting_t **where);

/* [a-z0-9][a-z0-9<extra>]*, 1..max bytes. */
int pm_cfg_name_valid(const char *s, const char *extra, size_t max);

/* config_alerts.c: `alerts`, `notifiers` and `targets` (in that order:
 * a target's notify names notifiers), after `daemon` (a target's
 * definition carries the time zone). */
int pm_cfg_load_alerts(pm_cfgctx_t *c);
/* Frees what pm_cfg_load_alerts stored in cfg, complete or not. */
void pm_cfg_free_alerts(pm_config_t *cfg);

#endif

/*
 * A plugin instance's settings: the collector's `settings` block checked
 * against the plugin's table (pm_setting_decl_t), defaults filled in, as a
 * tree the host's setting_* functions read. Bottom layer (config level).
 */
#ifndef PM_SETTINGS_H
#define PM_SETTINGS_H

#include <stdint.h>
#include <stdio.h>
#include <libconfig.h>
#include <portalmetrics/plugin.h>

/*
 * Validate `block` (a libconfig group; NULL means an empty one) against
 * decls and build the tree. `file` and `path` name where the block is for
 * messages, e.g. ("/etc/x.conf", "collectors.[0].settings"). On error
 * returns PM_ECONFIG and writes one line to err:
 *   "/etc/x.conf:12: collectors.[0].settings.base_url: required setting
 * missing" (the line is the block's when the offending setting is absent). The
 * caller owns *out and frees it with pm_setting_free. The tree owns
 * copies of all strings: it does not need the config_t afterwards.
 *
 * Rules: PM_T_INT takes a libconfig int or int64 (1L); PM_T_FLOAT also
 * takes an integer; PM_T_DURATION and PM_T_SIZE take strings (units.h);
 * PM_T_LIST takes ( ) or [ ], each element checked against children[0].
 * default_value is parsed as the type (booleans: true/false, yes/no,
 * on/off, 1/0); a bad default is reported as a config error naming the
 * setting. Lists and groups take no default_value; an absent optional
 * group is built from its members' defaults, unless one of its members
 * is required, in which case it stays absent.
 */
int pm_settings_build(const config_setting_t *block,
                      const pm_setting_decl_t *decls, const char *file,
                      const char *path, pm_setting_t **out, char *err,
                      size_t errlen);
void pm_setting_free(pm_setting_t *root);

/* The host table's readers (see plugin.h for their contracts). */
const pm_setting_t *pm_setting_get(const pm_setting_t *group, const char *key);
size_t pm_setting_count(const pm_setting_t *node);
const pm_setting_t *pm_setting_at(const pm_setting_t *node, size_t i);
const char *pm_setting_key(const pm_setting_t *node);
int pm_setting_string(const pm_setting_t *node, const char **out);
int pm_setting_int(const pm_setting_t *node, int64_t *out);
int pm_setting_float(const pm_setting_t *node, double *out);
int pm_setting_bool(const pm_setting_t *node, int *out);
int pm_setting_duration(const pm_setting_t *node, int64_t *out_us);
int pm_setting_size(const pm_setting_t *node, uint64_t *out_bytes);

/* Print a settings table as documentation (for --plugin-info), indented
 * by `indent` spaces per nesting level. */
void pm_settings_print(FILE *f, const pm_setting_decl_t *decls, int indent);

#endif

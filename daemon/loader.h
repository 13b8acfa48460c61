/*
 * The plugin loader: dlopen()s <plugin_dir>/<name>.so, checks its
 * descriptor (ABI major, size, callbacks, declarations) and keeps it
 * loaded while anything uses it. Layer: scheduler and loader.
 */
#ifndef PM_LOADER_H
#define PM_LOADER_H

#include <stddef.h>
#include <portalmetrics/plugin.h>

typedef struct pm_plugin_lib {
  char *name;
  char *path;
  void *dl;
  /* The plugin's descriptor copied into the daemon's layout: fields past
   * the plugin's own `size` (an older minor) read as zero. */
  pm_plugin_t desc;
  unsigned refs; /* loop thread only */
} pm_plugin_lib_t;

typedef struct pm_loader pm_loader_t;

/* plugin_dir is copied. */
pm_loader_t *pm_loader_new(const char *plugin_dir);
/* Every lib must have been put back. */
void pm_loader_free(pm_loader_t *l);

/*
 * Load (or find loaded) plugin `name` and take a reference. Returns 0, or
 * PM_ECONFIG/PM_EABI/PM_EIO with one line in err, e.g.
 *   plugin "fhir" (/usr/lib/.../fhir.so) was built for plugin ABI 2.0;
 *   this portalmetricsd speaks ABI 1.0 (the major versions must match)
 */
int pm_loader_get(pm_loader_t *l, const char *name, pm_plugin_lib_t **out,
                  char *err, size_t errlen);
/* Drop a reference; the .so is unloaded only when none remain, so never
 * while an instance or a thread of it remains (hung threads keep their
 * instance's reference for ever). */
void pm_loader_put(pm_loader_t *l, pm_plugin_lib_t *lib);

/* Print a plugin's description, settings table and metrics. */
void pm_loader_print_info(const pm_plugin_lib_t *lib);

#endif

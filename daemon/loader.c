/* Loading plugins. Everything a plugin declares is checked here, once,
 * so the rest of the daemon can trust the descriptor. */
#include "loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "fileperm.h"
#include "sample.h"
#include "settings.h"

struct pm_loader {
  char *dir;
  pm_plugin_lib_t **libs;
  size_t nlibs;
};

pm_loader_t *pm_loader_new(const char *plugin_dir) {
  pm_loader_t *l = calloc(1, sizeof(*l));
  if (!l || !(l->dir = strdup(plugin_dir))) {
    free(l);
    return NULL;
  }
  return l;
}

static void lib_free(pm_plugin_lib_t *lib) {
  /* dlclose only when nothing of the plugin may still run. */
  if (lib->dl)
    dlclose(lib->dl);
  free(lib->name);
  free(lib->path);
  free(lib);
}

void pm_loader_free(pm_loader_t *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->nlibs; i++)
    lib_free(l->libs[i]);
  free(l->libs);
  free(l->dir);
  free(l);
}

static int name_valid(const char *name) {
  if (!*name || strlen(name) > 64)
    return 0;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
          *p == '-'))
      return 0;
  return 1;
}

static int check_settings(const pm_setting_decl_t *d, const char *where,
                          char *err, size_t errlen) {
  for (; d && d->key; d++) {
    if (d->type < PM_T_STRING || d->type > PM_T_GROUP) {
      snprintf(err, errlen, "%s: setting \"%s\" has unknown type %d", where,
               d->key, (int)d->type);
      return PM_EABI;
    }
    if ((d->type == PM_T_LIST || d->type == PM_T_GROUP) && !d->children) {
      snprintf(err, errlen,
               "%s: setting \"%s\" is a list/group without children", where,
               d->key);
      return PM_EABI;
    }
    if (d->type == PM_T_LIST && d->children->type == PM_T_LIST) {
      snprintf(err, errlen,
               "%s: setting \"%s\": lists of lists are not supported", where,
               d->key);
      return PM_EABI;
    }
    if (d->type == PM_T_GROUP &&
        check_settings(d->children, where, err, errlen) != 0)
      return PM_EABI;
    if (d->type == PM_T_LIST && d->children->type == PM_T_GROUP &&
        check_settings(d->children->children, where, err, errlen) != 0)
      return PM_EABI;
  }
  return 0;
}

static int check_desc(const pm_plugin_lib_t *lib, char *err, size_t errlen) {
  const pm_plugin_t *d = &lib->desc;
  char where[512];

  snprintf(where, sizeof(where), "plugin \"%s\" (%s)", lib->name, lib->path);
  if (!d->name || strcmp(d->name, lib->name) != 0) {
    snprintf(err, errlen,
             "%s: calls itself \"%s\"; the file must be named after the plugin",
             where, d->name ? d->name : "(null)");
    return PM_EABI;
  }
  if (!d->create || !d->destroy) {
    snprintf(err, errlen, "%s: has no create or destroy callback", where);
    return PM_EABI;
  }
  if (d->mode == PM_POLL       ? !d->collect
      : d->mode == PM_LISTENER ? !d->start || !d->stop
                               : 1) {
    snprintf(err, errlen,
             "%s: mode %d lacks its callbacks (poll: collect; listener: start "
             "and stop)",
             where, (int)d->mode);
    return PM_EABI;
  }
  for (const pm_metric_decl_t *m = d->metrics; m && m->name; m++) {
    if (!pm_metric_name_valid(m->name) ||
        (m->type != PM_GAUGE && m->type != PM_COUNT)) {
      snprintf(err, errlen, "%s: declares an invalid metric \"%s\"", where,
               m->name);
      return PM_EABI;
    }
    if (pm_catalog_find(pm_canonical_metrics, m->name) ||
        strncmp(m->name, "portalmetricsd.", 15) == 0) {
      snprintf(err, errlen,
               "%s: declares \"%s\", which belongs to the daemon's catalog",
               where, m->name);
      return PM_EABI;
    }
  }
  return check_settings(d->settings, where, err, errlen);
}

static int lib_open(pm_loader_t *l, const char *name, pm_plugin_lib_t *lib,
                    char *err, size_t errlen) {
  pm_plugin_entry_fn entry;
  const pm_plugin_t *d;
  size_t n;

  if (asprintf(&lib->path, "%s/%s.so", l->dir, name) < 0) {
    lib->path = NULL;
    return PM_ENOMEM;
  }
  if (access(lib->path, F_OK) != 0) {
    snprintf(err, errlen, "unknown plugin \"%s\": no %s", name, lib->path);
    return PM_ECONFIG;
  }
  /* Code that runs as the daemon must be writable only by root or the
   * daemon's own user. */
  if (pm_path_check_owner(l->dir, err, errlen) != 0 ||
      pm_path_check_owner(lib->path, err, errlen) != 0)
    return PM_ECONFIG;
  lib->dl = dlopen(lib->path, RTLD_NOW | RTLD_LOCAL);
  if (!lib->dl) {
    snprintf(err, errlen, "plugin \"%s\": cannot load: %s", name, dlerror());
    return PM_EIO;
  }
  *(void **)&entry = dlsym(lib->dl, PM_PLUGIN_ENTRY_SYMBOL);
  if (!entry) {
    snprintf(err, errlen,
             "plugin \"%s\" (%s): no %s symbol: not a portalmetrics plugin",
             name, lib->path, PM_PLUGIN_ENTRY_SYMBOL);
    return PM_EABI;
  }
  d = entry();
  if (!d) {
    snprintf(err, errlen, "plugin \"%s\" (%s): %s returned NULL", name,
             lib->path, PM_PLUGIN_ENTRY_SYMBOL);
    return PM_EABI;
  }
  if (d->abi_major != PM_ABI_MAJOR) {
    snprintf(err, errlen,
             "plugin \"%s\" (%s) was built for plugin ABI %u.%u; this "
             "portalmetricsd speaks ABI %d.%d (the major versions must match: "
             "rebuild the plugin against this version's header)",
             name, lib->path, d->abi_major, d->abi_minor, PM_ABI_MAJOR,
             PM_ABI_MINOR);
    return PM_EABI;
  }
  if (d->size < offsetof(pm_plugin_t, destroy) + sizeof(d->destroy)) {
    snprintf(
        err, errlen,
        "plugin \"%s\" (%s): descriptor of %zu bytes is too small for ABI %u",
        name, lib->path, d->size, d->abi_major);
    return PM_EABI;
  }
  /* A newer minor's descriptor is larger: read the part we know. */
  n = d->size < sizeof(pm_plugin_t) ? d->size : sizeof(pm_plugin_t);
  memset(&lib->desc, 0, sizeof(lib->desc));
  memcpy(&lib->desc, d, n);
  return check_desc(lib, err, errlen);
}

int pm_loader_get(pm_loader_t *l, const char *name, pm_plugin_lib_t **out,
                  char *err, size_t errlen) {
  pm_plugin_lib_t *lib, **libs;
  int rc;

  for (size_t i = 0; i < l->nlibs; i++) {
    if (strcmp(l->libs[i]->name, name) == 0) {
      l->libs[i]->refs++;
      *out = l->libs[i];
      return 0;
    }
  }
  if (!name_valid(name)) {
    snprintf(err, errlen, "invalid plugin name \"%s\" (use [a-z0-9_-])", name);
    return PM_ECONFIG;
  }
  lib = calloc(1, sizeof(*lib));
  if (!lib || !(lib->name = strdup(name))) {
    free(lib);
    return PM_ENOMEM;
  }
  rc = lib_open(l, name, lib, err, errlen);
  if (rc == 0) {
    libs = realloc(l->libs, (l->nlibs + 1) * sizeof(*libs));
    if (!libs)
      rc = PM_ENOMEM;
    else
      l->libs = libs;
  }
  if (rc != 0) {
    lib_free(lib);
    return rc;
  }
  l->libs[l->nlibs++] = lib;
  lib->refs = 1;
  *out = lib;
  return 0;
}

void pm_loader_put(pm_loader_t *l, pm_plugin_lib_t *lib) {
  if (!lib || --lib->refs > 0)
    return;
  for (size_t i = 0; i < l->nlibs; i++) {
    if (l->libs[i] == lib) {
      l->libs[i] = l->libs[--l->nlibs];
      break;
    }
  }
  lib_free(lib);
}

void pm_loader_print_info(const pm_plugin_lib_t *lib) {
  const pm_plugin_t *d = &lib->desc;

  printf("plugin:      %s %s (%s)\n", d->name, d->version ? d->version : "",
         lib->path);
  printf("description: %s\n", d->description ? d->description : "");
  printf("mode:        %s\n", d->mode == PM_POLL ? "poll" : "listener");
  printf("ABI:         %u.%u\n\nsettings:\n", d->abi_major, d->abi_minor);
  if (d->settings && d->settings->key)
    pm_settings_print(stdout, d->settings, 2);
  else
    printf("  (none)\n");
  printf("\nmetrics it may emit beyond the canonical ones:\n");
  if (!d->metrics || !d->metrics->name)
    printf("  (none)\n");
  for (const pm_metric_decl_t *m = d->metrics; m && m->name; m++)
    printf("  %-36s %-6s %-10s %s\n", m->name,
           m->type == PM_GAUGE ? "gauge" : "count", m->unit ? m->unit : "",
           m->description ? m->description : "");
}

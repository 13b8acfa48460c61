/*
 * A collector's `settings` block checked against its plugin's table and
 * turned into a tree the plugin reads through the host table. The tree
 * owns copies of every string, so it outlives the config_t it came from
 * (a reload frees the old config while instances still run).
 */
#include "settings.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confmsg.h"
#include "units.h"

#define PATH_LEN 512

struct pm_setting {
  char *key; /* NULL for the root and for list elements */
  pm_setting_type_t type;
  union {
    char *s;
    int64_t i; /* PM_T_INT, PM_T_DURATION (microseconds) */
    double f;
    int b;
    uint64_t size;
  } v;
  size_t n; /* LIST, GROUP: children in use */
  struct pm_setting *kids;
};

typedef struct bctx {
  const char *file;
  char *err;
  size_t errlen;
} bctx_t;

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */

/* What a setting of type t must look like, for "expected X, got Y". */
static const char *want_name(pm_setting_type_t t) {
  switch (t) {
  case PM_T_STRING:
    return "a string";
  case PM_T_INT:
    return "an integer";
  case PM_T_FLOAT:
    return "a number";
  case PM_T_BOOL:
    return "a boolean (true or false)";
  case PM_T_DURATION:
    return "a duration string like \"15m\"";
  case PM_T_SIZE:
    return "a size string like \"64MiB\"";
  case PM_T_LIST:
    return "a list ( ... ) or an array [ ... ]";
  case PM_T_GROUP:
    return "a group { ... }";
  default:
    return "a valid type";
  }
}

static const char *decl_type_name(pm_setting_type_t t) {
  static const char *const names[] = {"?",     "string",  "integer",
                                      "float", "boolean", "duration",
                                      "size",  "list",    "group"};
  return t >= PM_T_STRING && t <= PM_T_GROUP ? names[t] : "?";
}

static int fail(bctx_t *c, const config_setting_t *s, const char *path,
                const char *fmt, ...) PM_PRINTF(4, 5);
static int fail(bctx_t *c, const config_setting_t *s, const char *path,
                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pm_confmsg_failv(c->err, c->errlen, c->file, s, path, fmt, ap);
  va_end(ap);
  return PM_ECONFIG;
}

static int oom(bctx_t *c) {
  if (c->err && c->errlen)
    snprintf(c->err, c->errlen, "%s: out of memory", c->file);
  return PM_ENOMEM;
}

/* ---------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------- */

static void node_clear(struct pm_setting *n) {
  free(n->key);
  if (n->type == PM_T_STRING)
    free(n->v.s);
  if (n->type == PM_T_LIST || n->type == PM_T_GROUP) {
    for (size_t i = 0; i < n->n; i++)
      node_clear(&n->kids[i]);
    free(n->kids);
  }
  memset(n, 0, sizeof(*n));
}

static int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1", NULL};
  static const char *const no[] = {"false", "no", "off", "0", NULL};

  for (int i = 0; yes[i]; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return PM_EINVAL;
}

/* A scalar from the table's default text. A bad default is the plugin
 * author's bug, but it is reported like a config error so the daemon
 * does not start with a value nobody chose. */
static int from_default(bctx_t *c, const config_setting_t *where,
                        const char *path, const pm_setting_decl_t *d,
                        struct pm_setting *n) {
  const char *text = d->default_value;
  char *end, vbuf[80];
  int ok = 1;

  n->type = d->type;
  switch (d->type) {
  case PM_T_STRING:
    if (!(n->v.s = strdup(text)))
      return oom(c);
    return 0;
  case PM_T_INT:
    n->v.i = strtoll(text, &end, 10);
    ok = end != text && *end == '\0';
    break;
  case PM_T_FLOAT:
    n->v.f = strtod(text, &end);
    ok = end != text && *end == '\0' && isfinite(n->v.f);
    break;
  case PM_T_BOOL:
    ok = parse_bool(text, &n->v.b) == 0;
    break;
  case PM_T_DURATION:
    ok = pm_parse_duration(text, &n->v.i) == 0;
    break;
  case PM_T_SIZE:
    ok = pm_parse_size(text, &n->v.size) == 0;
    break;
  default:
    ok = 0;
    break;
  }
  if (!ok) {
    n->type = 0;
    return fail(c, where, path,
                "the plugin's default \"%s\" is not a valid %s (a bug in "
                "the plugin)",
                pm_confmsg_show(text, vbuf, sizeof(vbuf)),
                decl_type_name(d->type));
  }
  return 0;
}

static int build_node(bctx_t *c, const config_setting_t *s,
                      const pm_setting_decl_t *d, const char *path,
                      struct pm_setting *n);

/* A group's members against decls (NULL-key terminated, may be NULL).
 * s may be NULL (absent): defaults only; `where` then gives the line. */
static int build_group(bctx_t *c, const config_setting_t *s,
                       const config_setting_t *where,
                       const pm_setting_decl_t *decls, const char *path,
                       struct pm_setting *n) {
  char mpath[PATH_LEN], list[256];
  size_t ndecl = 0, off = 0;
  int rc;

  n->type = PM_T_GROUP;
  for (const pm_setting_decl_t *d = decls; d && d->key; d++)
    ndecl++;

  /* Unknown keys first: a misspelt key would otherwise show up as a
   * "required setting missing" for the right spelling. */
  for (int i = 0; s && i < config_setting_length(s); i++) {
    const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
    const char *name = config_setting_name(m);
    size_t k;

    for (k = 0; k < ndecl; k++)
      if (strcmp(decls[k].key, name) == 0)
        break;
    if (k < ndecl)
      continue;
    snprintf(mpath, sizeof(mpath), "%s.%s", path, name);
    if (ndecl == 0)
      return fail(c, m, mpath, "unknown setting (this takes no settings)");
    list[0] = '\0';
    for (k = 0; k < ndecl && off < sizeof(list); k++) {
      int w = snprintf(list + off, sizeof(list) - off, "%s%s", k ? ", " : "",
                       decls[k].key);
      off += w > 0 ? (size_t)w : 0;
    }
    return fail(c, m, mpath, "unknown setting (expected one of: %s)", list);
  }

  if (ndecl && !(n->kids = calloc(ndecl, sizeof(*n->kids))))
    return oom(c);
  for (size_t k = 0; k < ndecl; k++) {
    const pm_setting_decl_t *d = &decls[k];
    const config_setting_t *m = s ? config_setting_get_member(s, d->key) : NULL;
    struct pm_setting *kid = &n->kids[n->n];

    snprintf(mpath, sizeof(mpath), "%s.%s", path, d->key);
    if (m) {
      rc = build_node(c, m, d, mpath, kid);
    } else if (d->required) {
      return fail(c, s ? s : where, mpath, "required setting missing");
    } else if (d->type == PM_T_GROUP) {
      /* An absent group still yields its members' defaults, so a plugin
       * reads every defaulted scalar without checking for absence; one
       * with a required member stays absent. */
      int has_required = 0;
      for (const pm_setting_decl_t *e = d->children; e && e->key; e++)
        has_required |= e->required;
      if (has_required)
        continue;
      rc = build_group(c, NULL, s ? s : where, d->children, mpath, kid);
    } else if (d->default_value && d->type != PM_T_LIST) {
      rc = from_default(c, s ? s : where, mpath, d, kid);
    } else {
      continue; /* optional, no default: absent */
    }
    if (rc != 0) {
      node_clear(kid);
      return rc;
    }
    if (!(kid->key = strdup(d->key))) {
      node_clear(kid);
      return oom(c);
    }
    n->n++;
  }
  return 0;
}

static int build_list(bctx_t *c, const config_setting_t *s,
                      const pm_setting_decl_t *d, const char *path,
                      struct pm_setting *n) {
  const pm_setting_decl_t *elem = d->children;
  char epath[PATH_LEN];
  int len = config_setting_length(s), rc;

  n->type = PM_T_LIST;
  if (!elem || !elem->type)
    return fail(c, s, path,
                "the plugin declares no element type (a bug "
                "in the plugin)");
  if (len > 0 && !(n->kids = calloc((size_t)len, sizeof(*n->kids))))
    return oom(c);
  for (int i = 0; i < len; i++) {
    snprintf(epath, sizeof(epath), "%s.[%d]", path, i);
    rc = build_node(c, config_setting_get_elem(s, (unsigned)i), elem, epath,
                    &n->kids[i]);
    if (rc != 0) {
      node_clear(&n->kids[i]);
      return rc;
    }
    n->n++;
  }
  return 0;
}

/* One present setting s of declared type d->type. */
static int build_node(bctx_t *c, const config_setting_t *s,
                      const pm_setting_decl_t *d, const char *path,
                      struct pm_setting *n) {
  int t = config_setting_type(s);
  int is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
  const char *text;
  char vbuf[80];

  switch (d->type) {
  case PM_T_STRING:
    if (t != CONFIG_TYPE_STRING)
      break;
    n->type = PM_T_STRING;
    if (!(n->v.s = strdup(config_setting_get_string(s))))
      return oom(c);
    return 0;
  case PM_T_INT:
    if (!is_int)
      break;
    n->type = PM_T_INT;
    n->v.i = config_setting_get_int64(s);
    return 0;
  case PM_T_FLOAT:
    if (!is_int && t != CONFIG_TYPE_FLOAT)
      break;
    n->type = PM_T_FLOAT;
    n->v.f = is_int ? (double)config_setting_get_int64(s)
                    : config_setting_get_float(s);
    return 0;
  case PM_T_BOOL:
    if (t != CONFIG_TYPE_BOOL)
      break;
    n->type = PM_T_BOOL;
    n->v.b = config_setting_get_bool(s) != 0;
    return 0;
  case PM_T_DURATION:
    if (t != CONFIG_TYPE_STRING)
      break;
    text = config_setting_get_string(s);
    if (pm_parse_duration(text, &n->v.i) != 0)
      return fail(c, s, path,
                  "invalid duration \"%s\" (examples: \"500ms\", \"15m\", "
                  "\"1h30m\", \"2d\")",
                  pm_confmsg_show(text, vbuf, sizeof(vbuf)));
    n->type = PM_T_DURATION;
    return 0;
  case PM_T_SIZE:
    if (t != CONFIG_TYPE_STRING)
      break;
    text = config_setting_get_string(s);
    if (pm_parse_size(text, &n->v.size) != 0)
      return fail(c, s, path,
                  "invalid size \"%s\" (examples: \"512kB\", \"64MiB\", "
                  "\"2GiB\")",
                  pm_confmsg_show(text, vbuf, sizeof(vbuf)));
    n->type = PM_T_SIZE;
    return 0;
  case PM_T_LIST:
    if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
      break;
    return build_list(c, s, d, path, n);
  case PM_T_GROUP:
    if (t != CONFIG_TYPE_GROUP)
      break;
    return build_group(c, s, s, d->children, path, n);
  default:
    return fail(c, s, path,
                "the plugin declares unknown type %d (a bug in "
                "the plugin)",
                (int)d->type);
  }
  return fail(c, s, path, "expected %s, got %s", want_name(d->type),
              pm_confmsg_type(t));
}

int pm_settings_build(const config_setting_t *block,
                      const pm_setting_decl_t *decls, const char *file,
                      const char *path, pm_setting_t **out, char *err,
                      size_t errlen) {
  bctx_t c = {.file = file ? file : "(config)", .err = err, .errlen = errlen};
  struct pm_setting *root;
  int rc;

  if (!out)
    return PM_EINVAL;
  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (!path)
    path = "settings";
  if (block && config_setting_type(block) != CONFIG_TYPE_GROUP)
    return fail(&c, block, path, "expected a group { ... }, got %s",
                pm_confmsg_type(config_setting_type(block)));
  if (!(root = calloc(1, sizeof(*root))))
    return oom(&c);
  rc = build_group(&c, block, block, decls, path, root);
  if (rc != 0) {
    pm_setting_free(root);
    return rc;
  }
  *out = root;
  return 0;
}

void pm_setting_free(pm_setting_t *root) {
  if (!root)
    return;
  node_clear(root);
  free(root);
}

/* ---------------------------------------------------------------------
 * Readers (contracts in plugin.h)
 * ------------------------------------------------------------------- */

const pm_setting_t *pm_setting_get(const pm_setting_t *group, const char *key) {
  if (!group || !key || group->type != PM_T_GROUP)
    return NULL;
  for (size_t i = 0; i < group->n; i++)
    if (strcmp(group->kids[i].key, key) == 0)
      return &group->kids[i];
  return NULL;
}

size_t pm_setting_count(const pm_setting_t *node) {
  if (!node || (node->type != PM_T_LIST && node->type != PM_T_GROUP))
    return 0;
  return node->n;
}

const pm_setting_t *pm_setting_at(const pm_setting_t *node, size_t i) {
  if (i >= pm_setting_count(node))
    return NULL;
  return &node->kids[i];
}

const char *pm_setting_key(const pm_setting_t *node) {
  return node ? node->key : NULL;
}

static int want(const pm_setting_t *node, pm_setting_type_t type,
                const void *out) {
  if (!node)
    return PM_ENOTFOUND;
  if (!out)
    return PM_EINVAL;
  return node->type == type ? 0 : PM_ETYPE;
}

int pm_setting_string(const pm_setting_t *node, const char **out) {
  int rc = want(node, PM_T_STRING, out);
  if (rc == 0)
    *out = node->v.s;
  return rc;
}

int pm_setting_int(const pm_setting_t *node, int64_t *out) {
  int rc = want(node, PM_T_INT, out);
  if (rc == 0)
    *out = node->v.i;
  return rc;
}

int pm_setting_float(const pm_setting_t *node, double *out) {
  int rc = want(node, PM_T_FLOAT, out);
  if (rc == 0)
    *out = node->v.f;
  return rc;
}

int pm_setting_bool(const pm_setting_t *node, int *out) {
  int rc = want(node, PM_T_BOOL, out);
  if (rc == 0)
    *out = node->v.b;
  return rc;
}

int pm_setting_duration(const pm_setting_t *node, int64_t *out_us) {
  int rc = want(node, PM_T_DURATION, out_us);
  if (rc == 0)
    *out_us = node->v.i;
  return rc;
}

int pm_setting_size(const pm_setting_t *node, uint64_t *out_bytes) {
  int rc = want(node, PM_T_SIZE, out_bytes);
  if (rc == 0)
    *out_bytes = node->v.size;
  return rc;
}

/* ---------------------------------------------------------------------
 * Documentation
 * ------------------------------------------------------------------- */

#define TYPE_COL 18
#define DEFAULT_COL 12

/* The members a nested row shows under d: a group's, or a list's
 * element group's. */
static const pm_setting_decl_t *nested(const pm_setting_decl_t *d) {
  if (d->type == PM_T_GROUP)
    return d->children;
  if (d->type == PM_T_LIST && d->children && d->children->type == PM_T_GROUP)
    return d->children->children;
  return NULL;
}

static int key_width(const pm_setting_decl_t *decls, int indent, int level) {
  int w = 0;

  for (const pm_setting_decl_t *d = decls; d && d->key; d++) {
    int kw = level * indent + (int)strlen(d->key);
    const pm_setting_decl_t *sub = nested(d);
    if (kw > w)
      w = kw;
    if (sub && level < 16) {
      kw = key_width(sub, indent, level + 1);
      if (kw > w)
        w = kw;
    }
  }
  return w;
}

static void print_rows(FILE *f, const pm_setting_decl_t *decls, int indent,
                       int level, int kw) {
  for (const pm_setting_decl_t *d = decls; d && d->key; d++) {
    char type[32];
    const pm_setting_decl_t *sub = nested(d);
    int pad = level * indent;

    if (d->type == PM_T_LIST && d->children)
      snprintf(type, sizeof(type), "list of %s",
               decl_type_name(d->children->type));
    else
      snprintf(type, sizeof(type), "%s", decl_type_name(d->type));
    fprintf(f, "%*s%-*s  %-*s  %-*s  %-8s  %s\n", pad, "", kw - pad, d->key,
            TYPE_COL, type, DEFAULT_COL,
            d->default_value ? d->default_value : "-",
            d->required ? "yes" : "no", d->doc ? d->doc : "");
    if (sub && level < 16)
      print_rows(f, sub, indent, level + 1, kw);
  }
}

void pm_settings_print(FILE *f, const pm_setting_decl_t *decls, int indent) {
  int kw;

  if (!f)
    return;
  if (!decls || !decls->key) {
    fprintf(f, "(no settings)\n");
    return;
  }
  if (indent < 0)
    indent = 0;
  kw = key_width(decls, indent, 0);
  if (kw < 7)
    kw = 7;
  fprintf(f, "%-*s  %-*s  %-*s  %-8s  %s\n", kw, "SETTING", TYPE_COL, "TYPE",
          DEFAULT_COL, "DEFAULT", "REQUIRED", "DESCRIPTION");
  print_rows(f, decls, indent, 0, kw);
}

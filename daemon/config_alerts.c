/*
 * The config's alerting sections (DESIGN.md "Targets and alerts"):
 * `alerts`, `notifiers` and `targets`, checked key by key like the rest
 * of the file (config.c), plus each target's canonical definition, the
 * JSON that daemons sharing a database compare.
 */
#include "config_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confmsg.h"
#include "fileperm.h"
#include "sample.h"
#include "units.h"

#define PATH_LEN PM_CFG_PATH_LEN
#define DAY_US (INT64_C(86400) * PM_US_PER_SEC)
#define NAME_MAX_LEN 63 /* targets and notifiers */
#define TITLE_MAX 200
#define DEFAULT_ALERTS_INTERVAL_US (30 * PM_US_PER_SEC)
#define MIN_ALERTS_INTERVAL_US (100 * INT64_C(1000))
#define DEFAULT_WINDOW_DAYS 7
#define MAX_WINDOW_DAYS 366
#define DEFAULT_LOOKBACK_DAYS 28
#define MIN_LOOKBACK_DAYS 2
#define MAX_LOOKBACK_DAYS 366
#define WEBHOOK_TIMEOUT_US (10 * PM_US_PER_SEC)
#define EXEC_TIMEOUT_US (30 * PM_US_PER_SEC)
#define MIN_TIMEOUT_US (100 * INT64_C(1000))
#define MAX_TIMEOUT_US (10 * 60 * PM_US_PER_SEC)
#define DEFAULT_GIVE_UP_US DAY_US
#define MIN_GIVE_UP_US (60 * PM_US_PER_SEC)
#define FIRST_DAY_YEAR 1970
#define LAST_DAY_YEAR 9999

static const char *const alerts_keys[] = {"interval", NULL};
static const char *const target_keys[] = {
    "name",      "title",  "metric",    "per",      "labels",    "window",
    "direction", "goal",   "tolerance", "for",      "clear_for", "stale",
    "severity",  "notify", "repeat",    "lookback", "format",    NULL};
static const char *const goal_keys[] = {"start", "start_value", "due", "value",
                                        NULL};
static const char *const milestone_keys[] = {"date", "value", NULL};
static const char *const notifier_keys[] = {
    "name",    "type",    "url",     "headers", "token_file",
    "ca_file", "command", "timeout", "give_up", NULL};

static const char *const directions[] = {"at_least", "at_most", NULL};
static const char *const severities[] = {"info", "warning", "critical", NULL};
static const char *const formats[] = {"percent", "number", NULL};
static const char *const goal_kinds[] = {"fixed", "ramp", "milestones"};
/* In pm_notifier_type_t's order. */
static const char *const notifier_types[] = {"log", "webhook", "exec", NULL};

#define T_WEBHOOK (1u << PM_NOTIFIER_WEBHOOK)
#define T_EXEC (1u << PM_NOTIFIER_EXEC)

/* The settings that only some types of notifier take. */
static const struct {
  const char *key;
  unsigned types;
} notifier_key_types[] = {
    {"url", T_WEBHOOK},        {"headers", T_WEBHOOK},
    {"token_file", T_WEBHOOK}, {"ca_file", T_WEBHOOK},
    {"command", T_EXEC},       {"timeout", T_WEBHOOK | T_EXEC},
};

/* ---------------------------------------------------------------------
 * Calendar dates: civil days since 1970-01-01, no time zone (Howard
 * Hinnant, "chrono-Compatible Low-Level Date Algorithms").
 * ------------------------------------------------------------------- */

static int32_t days_from_civil(int y, unsigned m, unsigned d) {
  int era;
  unsigned yoe, doy, doe;

  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return (int32_t)(era * 146097 + (int)doe - 719468);
}

static void civil_from_days(int32_t days, int *y, unsigned *m, unsigned *d) {
  int z = days + 719468;
  int era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;

  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int)yoe + era * 400 + (*m <= 2);
}

static void day_str(int32_t day, char *buf, size_t len) {
  int y;
  unsigned m, d;

  civil_from_days(day, &y, &m, &d);
  if (snprintf(buf, len, "%04d-%02u-%02u", y, m, d) < 0)
    buf[0] = '\0';
}

static unsigned days_in_month(int y, unsigned m) {
  static const unsigned n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : n[m - 1];
}

/* Strictly "YYYY-MM-DD", a real date. 0, -1 (not a date) or -2 (a date
 * outside FIRST_DAY_YEAR..LAST_DAY_YEAR). */
static int parse_date(const char *s, int32_t *day) {
  int v[3] = {0, 0, 0}, f = 0;

  if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
    return -1;
  for (int i = 0; i < 10; i++) {
    if (i == 4 || i == 7) {
      f++;
      continue;
    }
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v[f] = v[f] * 10 + (s[i] - '0');
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 ||
      (unsigned)v[2] > days_in_month(v[0], (unsigned)v[1]))
    return -1;
  if (v[0] < FIRST_DAY_YEAR || v[0] > LAST_DAY_YEAR)
    return -2;
  *day = days_from_civil(v[0], (unsigned)v[1], (unsigned)v[2]);
  return 0;
}

/* dst = "parent.[i]", the path of a list's element. */
static void elem_path(char *dst, size_t n, const char *parent, int i) {
  if (snprintf(dst, n, "%s.[%d]", parent, i) < 0)
    dst[0] = '\0';
}

/* ---------------------------------------------------------------------
 * Typed readers (config_int.h has the shared ones)
 * ------------------------------------------------------------------- */

static int is_number(int t) {
  return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 ||
         t == CONFIG_TYPE_FLOAT;
}

static double number_of(const config_setting_t *s) {
  return config_setting_type(s) == CONFIG_TYPE_FLOAT
             ? config_setting_get_float(s)
             : (double)config_setting_get_int64(s);
}

/* A number (integer or float) that is finite; s is the setting itself. */
static int number_value(pm_cfgctx_t *c, const config_setting_t *s,
                        const char *path, double *out) {
  int t = config_setting_type(s);

  if (!is_number(t))
    return pm_cfg_fail(c, s, path, "expected a number, got %s",
                       pm_confmsg_type(t));
  *out = number_of(s);
  if (!isfinite(*out))
    return pm_cfg_fail(c, s, path, "must be a finite number");
  return 0;
}

static int get_number(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *key, int required,
                      double *out) {
  char path[PATH_LEN];
  const config_setting_t *s = config_setting_get_member(g, key);

  pm_confmsg_join(path, sizeof(path), gpath, key);
  if (!s)
    return required ? pm_cfg_required_missing(c, g, path) : 0;
  return number_value(c, s, path, out);
}

/* A date "YYYY-MM-DD"; s is the setting itself. */
static int date_value(pm_cfgctx_t *c, const config_setting_t *s,
                      const char *path, int32_t *out) {
  char vbuf[80];
  const char *text;
  int t = config_setting_type(s);

  if (t != CONFIG_TYPE_STRING)
    return pm_cfg_fail(c, s, path,
                       "expected a date string like "
                       "\"2027-06-30\", got %s",
                       pm_confmsg_type(t));
  text = config_setting_get_string(s);
  switch (parse_date(text, out)) {
  case 0:
    return 0;
  case -2:
    return pm_cfg_fail(c, s, path, "\"%s\" is out of range (years %d to %d)",
                       text, FIRST_DAY_YEAR, LAST_DAY_YEAR);
  default:
    return pm_cfg_fail(c, s, path, "\"%s\" is not a date (YYYY-MM-DD)",
                       pm_confmsg_show(text, vbuf, sizeof(vbuf)));
  }
}

static int get_date(pm_cfgctx_t *c, const config_setting_t *g,
                    const char *gpath, const char *key, int32_t *out,
                    const config_setting_t **where) {
  char path[PATH_LEN];
  const config_setting_t *s = config_setting_get_member(g, key);

  pm_confmsg_join(path, sizeof(path), gpath, key);
  *where = s;
  if (!s)
    return pm_cfg_required_missing(c, g, path);
  return date_value(c, s, path, out);
}

/* A duration of whole days, min_days..max_days. */
static int get_days(pm_cfgctx_t *c, const config_setting_t *g,
                    const char *gpath, const char *key, int min_days,
                    int max_days, int *out) {
  char path[PATH_LEN], vbuf[80];
  const config_setting_t *s;
  int64_t us = 0;
  int rc;

  if ((rc = pm_cfg_get_duration(c, g, gpath, key, 0, &us, &s)) != 0)
    return rc;
  if (!s)
    return 0;
  pm_confmsg_join(path, sizeof(path), gpath, key);
  if (us % DAY_US != 0)
    return pm_cfg_fail(
        c, s, path, "\"%s\" is not a whole number of days",
        pm_confmsg_show(config_setting_get_string(s), vbuf, sizeof(vbuf)));
  if (us < min_days * DAY_US)
    return pm_cfg_fail(c, s, path, "must be at least %dd", min_days);
  if (us > max_days * DAY_US)
    return pm_cfg_fail(c, s, path, "must be at most %dd", max_days);
  *out = (int)(us / DAY_US);
  return 0;
}

/* "a, b or c" of a NULL-terminated list. */
static void choice_list(const char *const *choices, char *buf, size_t len) {
  size_t off = 0;

  buf[0] = '\0';
  for (int i = 0; choices[i] && off < len; i++) {
    const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";
    int w = snprintf(buf + off, len - off, "%s%s", sep, choices[i]);
    off += w > 0 ? (size_t)w : 0;
  }
}

/* One of choices, its index in *out; what names the value in messages
 * ("severity"). */
static int get_choice(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *key, int required,
                      const char *what, const char *const *choices, int *out) {
  char path[PATH_LEN], list[128], vbuf[80];
  const config_setting_t *s;
  const char *v;
  int rc;

  if ((rc = pm_cfg_typed(c, g, gpath, key, CONFIG_TYPE_STRING, "a string", &s,
                         path, sizeof(path))) != 0)
    return rc;
  if (!s)
    return required ? pm_cfg_required_missing(c, g, path) : 0;
  v = config_setting_get_string(s);
  for (int i = 0; choices[i]; i++)
    if (strcmp(choices[i], v) == 0) {
      *out = i;
      return 0;
    }
  choice_list(choices, list, sizeof(list));
  return pm_cfg_fail(c, s, path, "unknown %s \"%s\" (expected %s)", what,
                     pm_confmsg_show(v, vbuf, sizeof(vbuf)), list);
}

/* A list ( ) or array [ ] of strings: the setting in *sp (NULL when
 * absent) and its length. */
static int string_list(pm_cfgctx_t *c, const config_setting_t *g,
                       const char *gpath, const char *key, const char *want,
                       const config_setting_t **sp, int *n, char *path,
                       size_t pathlen) {
  const config_setting_t *s = config_setting_get_member(g, key);
  char epath[PATH_LEN];
  int t;

  pm_confmsg_join(path, pathlen, gpath, key);
  *sp = s;
  *n = 0;
  if (!s)
    return 0;
  t = config_setting_type(s);
  if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
    return pm_cfg_fail(c, s, path, "expected %s, got %s", want,
                       pm_confmsg_type(t));
  *n = config_setting_length(s);
  for (int i = 0; i < *n; i++) {
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    elem_path(epath, sizeof(epath), path, i);
    if (config_setting_type(e) != CONFIG_TYPE_STRING)
      return pm_cfg_fail(c, e, epath, "expected a string, got %s",
                         pm_confmsg_type(config_setting_type(e)));
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * alerts = { interval = "30s"; }
 * ------------------------------------------------------------------- */

static int load_alerts_group(pm_cfgctx_t *c) {
  const config_setting_t *g;
  char path[PATH_LEN];
  int rc;

  c->cfg->alerts_interval_us = DEFAULT_ALERTS_INTERVAL_US;
  if ((rc = pm_cfg_typed(c, config_root_setting(&c->cfg->cfg), "", "alerts",
                         CONFIG_TYPE_GROUP, "a group { ... }", &g, path,
                         sizeof(path))) != 0 ||
      !g)
    return rc;
  if ((rc = pm_cfg_check_keys(c, g, "alerts", alerts_keys)) != 0)
    return rc;
  return pm_cfg_get_duration(c, g, "alerts", "interval", MIN_ALERTS_INTERVAL_US,
                             &c->cfg->alerts_interval_us, NULL);
}

/* The root's list `key` of groups: its length in *n (0 when absent). */
static int top_list(pm_cfgctx_t *c, const char *key,
                    const config_setting_t **out, int *n) {
  const config_setting_t *root = config_root_setting(&c->cfg->cfg);
  const config_setting_t *l = config_setting_get_member(root, key);
  int t;

  *out = l;
  *n = 0;
  if (!l)
    return 0;
  t = config_setting_type(l);
  *n = config_setting_length(l);
  /* Groups can only sit in a list ( ); an empty array [ ] is harmless. */
  if (t != CONFIG_TYPE_LIST && !(t == CONFIG_TYPE_ARRAY && *n == 0))
    return pm_cfg_fail(c, l, key,
                       "expected a list of groups ( { ... }, { ... } ), got %s",
                       pm_confmsg_type(t));
  return 0;
}

/* An element of a top list: a group, whose keys are all known. */
static int list_group(pm_cfgctx_t *c, const config_setting_t *g,
                      const char *gpath, const char *const *known) {
  if (config_setting_type(g) != CONFIG_TYPE_GROUP)
    return pm_cfg_fail(c, g, gpath,
                       "expected a group { name = ...; ... }, got %s",
                       pm_confmsg_type(config_setting_type(g)));
  return pm_cfg_check_keys(c, g, gpath, known);
}

/* name: required, [a-z0-9][a-z0-9_.-]*, at most NAME_MAX_LEN bytes. */
static int get_name(pm_cfgctx_t *c, const config_setting_t *g,
                    const char *gpath, const char *what, char **out,
                    const config_setting_t **where) {
  char path[PATH_LEN], vbuf[80];
  int rc;

  if ((rc = pm_cfg_get_string(c, g, gpath, "name", 1, out, where)) != 0)
    return rc;
  pm_confmsg_join(path, sizeof(path), gpath, "name");
  if (!pm_cfg_name_valid(*out, "_.-", NAME_MAX_LEN))
    return pm_cfg_fail(c, *where, path,
                       "invalid %s name \"%s\" (expected "
                       "[a-z0-9][a-z0-9_.-]*, at most %d bytes)",
                       what, pm_confmsg_show(*out, vbuf, sizeof(vbuf)),
                       NAME_MAX_LEN);
  return 0;
}

/* ---------------------------------------------------------------------
 * notifiers = ( { name = ...; type = ...; ... }, ... )
 * ------------------------------------------------------------------- */

static const char *article(const char *type) {
  return strchr("aeiou", type[0]) ? "an" : "a";
}

/* A key another type of notifier takes: "not a webhook setting". */
static int check_type_keys(pm_cfgctx_t *c, const config_setting_t *g,
                           const char *gpath, pm_notifier_type_t type) {
  char path[PATH_LEN], owners[64];
  const char *tname = notifier_types[type];

  for (size_t k = 0;
       k < sizeof(notifier_key_types) / sizeof(notifier_key_types[0]); k++) {
    const config_setting_t *s =
        config_setting_get_member(g, notifier_key_types[k].key);
    const char *own[4];
    int n = 0;

    if (!s || (notifier_key_types[k].types & (1u << type)))
      continue;
    for (int t = 0; notifier_types[t]; t++)
      if (notifier_key_types[k].types & (1u << t))
        own[n++] = notifier_types[t];
    own[n] = NULL;
    choice_list(own, owners, sizeof(owners));
    pm_confmsg_join(path, sizeof(path), gpath, notifier_key_types[k].key);
    return pm_cfg_fail(c, s, path,
                       "not %s %s setting (only %s notifiers take it)",
                       article(tname), tname, owners);
  }
  return 0;
}

/* The secrets rule of DESIGN.md for a password in a URL's userinfo:
 * only in a file that others cannot read. */
static int check_url_secret(pm_cfgctx_t *c, const config_setting_t *s,
                            const char *path, const char *authority) {
  size_t alen = strcspn(authority, "/?#");
  const char *at = memchr(authority, '@', alen);
  char fbuf[1024], ferr[512];
  const char *file;

  if (!at || !memchr(authority, ':', (size_t)(at - authority)))
    return 0;
  file = pm_confmsg_file(s, c->file, fbuf, sizeof(fbuf));
  if (c->from_file && pm_path_private(file, ferr, sizeof(ferr)) == 1)
    return 0;
  return pm_cfg_fail(c, s, path,
                     "a password written inline needs the config file to be "
                     "unreadable by others (chmod o-rwx %s), or use "
                     "token_file",
                     file);
}

static int load_url(pm_cfgctx_t *c, pm_notifier_conf_t *n,
                    const config_setting_t *g, const char *npath) {
  char path[PATH_LEN], vbuf[80];
  const config_setting_t *s;
  const char *u, *rest;
  int rc;

  if ((rc = pm_cfg_get_string(c, g, npath, "url", 1, &n->url, &s)) != 0)
    return rc;
  pm_confmsg_join(path, sizeof(path), npath, "url");
  u = n->url;
  /* The URL is echoed only without userinfo: it may hold a password. */
  if (strncasecmp(u, "http://", 7) == 0)
    rest = u + 7;
  else if (strncasecmp(u, "https://", 8) == 0)
    rest = u + 8;
  else
    return pm_cfg_fail(
        c, s, path, "invalid url \"%s\" (expected http://... or https://...)",
        strchr(u, '@') ? "..." : pm_confmsg_show(u, vbuf, sizeof(vbuf)));
  for (const char *p = u; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return pm_cfg_fail(c, s, path,
                         "invalid url (spaces and control characters must be "
                         "percent-encoded)");
  if (rest[0] == '\0' || strchr("/?#@", rest[0]))
    return pm_cfg_fail(c, s, path, "invalid url (no host after \"//\")");
  return check_url_secret(c, s, path, rest);
}

/* An HTTP header name: a token (RFC 9110). */
static int header_name_valid(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
      return 0;
  return 1;
}

static int load_headers(pm_cfgctx_t *c, pm_notifier_conf_t *n,
                        const config_setting_t *g, const char *npath) {
  char gpath[PATH_LEN], path[PATH_LEN];
  const config_setting_t *s;
  int len, rc;

  if ((rc = pm_cfg_typed(c, g, npath, "headers", CONFIG_TYPE_GROUP,
                         "a group { Header-Name = \"value\"; ... }", &s, gpath,
                         sizeof(gpath))) != 0 ||
      !s)
    return rc;
  len = config_setting_length(s);
  if (len == 0)
    return 0;
  n->headers = calloc((size_t)len, sizeof(*n->headers));
  if (!n->headers)
    return pm_cfg_oom(c);
  for (int i = 0; i < len; i++) {
    const config_setting_t *h = config_setting_get_elem(s, (unsigned)i);
    const char *name = config_setting_name(h), *value;
    size_t nlen = strlen(name), vlen;

    pm_confmsg_join(path, sizeof(path), gpath, name);
    if (config_setting_type(h) != CONFIG_TYPE_STRING)
      return pm_cfg_fail(c, h, path, "expected a string, got %s",
                         pm_confmsg_type(config_setting_type(h)));
    value = config_setting_get_string(h);
    vlen = strlen(value);
    if (!header_name_valid(name))
      return pm_cfg_fail(c, h, path, "invalid header name \"%s\"", name);
    if (strcasecmp(name, "Authorization") == 0)
      return pm_cfg_fail(c, h, path,
                         "not allowed here: put the token in token_file (sent "
                         "as \"Authorization: Bearer TOKEN\"), so it stays "
                         "out of the config");
    for (size_t j = 0; j < (size_t)i; j++)
      if (strncasecmp(n->headers[j], name, nlen) == 0 &&
          n->headers[j][nlen] == ':')
        return pm_cfg_fail(c, h, path,
                           "header given twice (names are case-insensitive)");
    if (vlen == 0)
      return pm_cfg_fail(c, h, path, "must not be empty");
    for (const char *p = value; *p; p++)
      if (*p == '\r' || *p == '\n')
        return pm_cfg_fail(c, h, path,
                           "a header value must not contain CR or LF");
      else if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
        return pm_cfg_fail(c, h, path,
                           "a header value must not contain control "
                           "characters");
    n->headers[i] = malloc(nlen + 2 + vlen + 1);
    if (!n->headers[i])
      return pm_cfg_oom(c);
    n->n_headers++;
    snprintf(n->headers[i], nlen + 2 + vlen + 1, "%s: %s", name, value);
  }
  return 0;
}

static int load_command(pm_cfgctx_t *c, pm_notifier_conf_t *n,
                        const config_setting_t *g, const char *npath) {
  char path[PATH_LEN], epath[PATH_LEN], vbuf[80];
  const config_setting_t *s;
  int len, rc;

  if ((rc = string_list(c, g, npath, "command",
                        "an array of strings [ \"/absolute/path\", "
                        "\"argument\", ... ]",
                        &s, &len, path, sizeof(path))) != 0)
    return rc;
  if (!s)
    return pm_cfg_required_missing(c, g, path);
  if (len == 0)
    return pm_cfg_fail(c, s, path,
                       "must not be empty (expected [ \"/absolute/path\", "
                       "\"argument\", ... ])");
  n->command = calloc((size_t)len + 1, sizeof(*n->command));
  if (!n->command)
    return pm_cfg_oom(c);
  for (int i = 0; i < len; i++) {
    const char *arg = config_setting_get_string_elem(s, i);
    if (i == 0 && arg[0] != '/') {
      elem_path(epath, sizeof(epath), path, 0);
      return pm_cfg_fail(c, config_setting_get_elem(s, 0), epath,
                         "\"%s\" is not an absolute path (the command runs "
                         "without a shell or PATH search)",
                         pm_confmsg_show(arg, vbuf, sizeof(vbuf)));
    }
    if (!(n->command[i] = strdup(arg)))
      return pm_cfg_oom(c);
    n->n_command++;
  }
  return 0;
}

static int load_notifier(pm_cfgctx_t *c, const config_setting_t *g,
                         size_t idx) {
  pm_config_t *cfg = c->cfg;
  pm_notifier_conf_t *n = &cfg->notifiers[idx];
  char npath[PATH_LEN], path[PATH_LEN], a[32];
  const config_setting_t *s;
  int type = -1, rc;

  snprintf(npath, sizeof(npath), "notifiers.[%zu]", idx);
  n->line = config_setting_source_line(g);
  n->give_up_us = DEFAULT_GIVE_UP_US;
  if ((rc = list_group(c, g, npath, notifier_keys)) != 0 ||
      (rc = get_name(c, g, npath, "notifier", &n->name, &s)) != 0)
    return rc;
  for (size_t i = 0; i < idx; i++)
    if (strcmp(cfg->notifiers[i].name, n->name) == 0) {
      pm_confmsg_join(path, sizeof(path), npath, "name");
      return pm_cfg_fail(c, s, path,
                         "duplicate notifier name \"%s\" (first at line %d)",
                         n->name, cfg->notifiers[i].line);
    }
  if ((rc = get_choice(c, g, npath, "type", 1, "notifier type", notifier_types,
                       &type)) != 0)
    return rc;
  n->type = (pm_notifier_type_t)type;
  if ((rc = check_type_keys(c, g, npath, n->type)) != 0)
    return rc;

  switch (n->type) {
  case PM_NOTIFIER_WEBHOOK:
    n->timeout_us = WEBHOOK_TIMEOUT_US;
    if ((rc = load_url(c, n, g, npath)) != 0 ||
        (rc = load_headers(c, n, g, npath)) != 0 ||
        (rc = pm_cfg_get_string(c, g, npath, "token_file", 0, &n->token_file,
                                NULL)) != 0 ||
        (rc = pm_cfg_get_string(c, g, npath, "ca_file", 0, &n->ca_file,
                                NULL)) != 0)
      return rc;
    break;
  case PM_NOTIFIER_EXEC:
    n->timeout_us = EXEC_TIMEOUT_US;
    if ((rc = load_command(c, n, g, npath)) != 0)
      return rc;
    break;
  case PM_NOTIFIER_LOG:
    n->timeout_us = WEBHOOK_TIMEOUT_US; /* not used */
    break;
  }
  if ((rc = pm_cfg_get_duration(c, g, npath, "timeout", MIN_TIMEOUT_US,
                                &n->timeout_us, &s)) != 0)
    return rc;
  if (s && n->timeout_us > MAX_TIMEOUT_US) {
    pm_confmsg_join(path, sizeof(path), npath, "timeout");
    pm_format_duration(MAX_TIMEOUT_US, a, sizeof(a));
    return pm_cfg_fail(c, s, path, "must be at most %s", a);
  }
  return pm_cfg_get_duration(c, g, npath, "give_up", MIN_GIVE_UP_US,
                             &n->give_up_us, NULL);
}

static int load_notifiers(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  const config_setting_t *l;
  int n, rc;

  if ((rc = top_list(c, "notifiers", &l, &n)) != 0 || n == 0)
    return rc;
  cfg->notifiers = calloc((size_t)n, sizeof(*cfg->notifiers));
  if (!cfg->notifiers)
    return pm_cfg_oom(c);
  for (int i = 0; i < n; i++) {
    cfg->n_notifiers++;
    if ((rc = load_notifier(c, config_setting_get_elem(l, (unsigned)i),
                            (size_t)i)) != 0)
      return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * targets = ( { name = ...; metric = ...; goal = ...; ... }, ... )
 * ------------------------------------------------------------------- */

static int load_target_labels(pm_cfgctx_t *c, pm_target_conf_t *t,
                              const config_setting_t *g, const char *tpath) {
  char gpath[PATH_LEN], path[PATH_LEN];
  const config_setting_t *s;
  int n, rc;

  if ((rc = pm_cfg_typed(c, g, tpath, "labels", CONFIG_TYPE_GROUP,
                         "a group { key = \"value\"; ... }", &s, gpath,
                         sizeof(gpath))) != 0 ||
      !s)
    return rc;
  n = config_setting_length(s);
  if (n == 0)
    return 0;
  t->labels = calloc((size_t)n, sizeof(*t->labels));
  if (!t->labels)
    return pm_cfg_oom(c);
  for (int i = 0; i < n; i++) {
    const config_setting_t *l = config_setting_get_elem(s, (unsigned)i);
    const char *key = config_setting_name(l), *value;

    pm_confmsg_join(path, sizeof(path), gpath, key);
    if (config_setting_type(l) != CONFIG_TYPE_STRING)
      return pm_cfg_fail(c, l, path, "expected a string, got %s",
                         pm_confmsg_type(config_setting_type(l)));
    value = config_setting_get_string(l);
    if (!pm_label_key_valid(key))
      return pm_cfg_fail(c, l, path,
                         "invalid label key \"%s\" (expected [a-z][a-z0-9_]*, "
                         "at most %d bytes)",
                         key, PM_LABEL_KEY_MAX);
    if (!pm_label_value_valid(value))
      return pm_cfg_fail(c, l, path,
                         "invalid label value (expected printable UTF-8, 1 to "
                         "%d bytes)",
                         PM_LABEL_VALUE_MAX);
    if (i >= PM_LABELS_MAX)
      return pm_cfg_fail(c, l, path, "too many labels (at most %d)",
                         PM_LABELS_MAX);
    t->labels[i].key = strdup(key);
    t->labels[i].value = strdup(value);
    t->n_labels++;
    if (!t->labels[i].key || !t->labels[i].value)
      return pm_cfg_oom(c);
  }
  return 0;
}

/* A milestone: { date = "YYYY-MM-DD"; value = x; }, after prev. */
static int load_milestone(pm_cfgctx_t *c, const config_setting_t *m,
                          const char *mpath, const pm_goal_point_t *prev,
                          pm_goal_point_t *out) {
  char path[PATH_LEN], a[16], b[16];
  const config_setting_t *d;
  int rc;

  if (config_setting_type(m) != CONFIG_TYPE_GROUP)
    return pm_cfg_fail(c, m, mpath,
                       "expected a group { date = \"YYYY-MM-DD\"; value = "
                       "...; }, got %s",
                       pm_confmsg_type(config_setting_type(m)));
  if ((rc = pm_cfg_check_keys(c, m, mpath, milestone_keys)) != 0 ||
      (rc = get_date(c, m, mpath, "date", &out->day, &d)) != 0)
    return rc;
  if (prev && out->day <= prev->day) {
    pm_confmsg_join(path, sizeof(path), mpath, "date");
    day_str(out->day, a, sizeof(a));
    day_str(prev->day, b, sizeof(b));
    return pm_cfg_fail(
        c, d, path, "milestone dates must increase: %s is not after %s", a, b);
  }
  return get_number(c, m, mpath, "value", 1, &out->value);
}

/* goal = 0.5;  goal = { value = 0.5; };  goal = { start = ...;
 * start_value = ...; due = ...; value = ...; };  goal = ( { date = ...;
 * value = ...; }, ... ); */
static int load_goal(pm_cfgctx_t *c, pm_target_conf_t *t,
                     const config_setting_t *g, const char *tpath) {
  char path[PATH_LEN], mpath[PATH_LEN], a[16], b[16];
  const config_setting_t *s = config_setting_get_member(g, "goal"), *sd, *dd;
  int type, n, rc;

  pm_confmsg_join(path, sizeof(path), tpath, "goal");
  if (!s)
    return pm_cfg_required_missing(c, g, path);
  type = config_setting_type(s);
  if (is_number(type) || type == CONFIG_TYPE_GROUP)
    n = 2; /* fixed or ramp */
  else if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY)
    n = config_setting_length(s);
  else
    n = 0;
  if (n > 0 && !(t->goal = calloc((size_t)n, sizeof(*t->goal))))
    return pm_cfg_oom(c);

  if (is_number(type)) {
    t->goal_kind = PM_GOAL_FIXED;
    t->goal[0].day = PM_NO_DAY;
    t->n_goal = 1;
    return number_value(c, s, path, &t->goal[0].value);
  }
  if (type == CONFIG_TYPE_GROUP) {
    if ((rc = pm_cfg_check_keys(c, s, path, goal_keys)) != 0)
      return rc;
    if (!config_setting_get_member(s, "start") &&
        !config_setting_get_member(s, "start_value") &&
        !config_setting_get_member(s, "due")) {
      t->goal_kind = PM_GOAL_FIXED;
      t->goal[0].day = PM_NO_DAY;
      t->n_goal = 1;
      return get_number(c, s, path, "value", 1, &t->goal[0].value);
    }
    t->goal_kind = PM_GOAL_RAMP;
    t->n_goal = 2;
    if ((rc = get_date(c, s, path, "start", &t->goal[0].day, &sd)) != 0 ||
        (rc = get_number(c, s, path, "start_value", 1, &t->goal[0].value)) !=
            0 ||
        (rc = get_date(c, s, path, "due", &t->goal[1].day, &dd)) != 0 ||
        (rc = get_number(c, s, path, "value", 1, &t->goal[1].value)) != 0)
      return rc;
    if (t->goal[1].day <= t->goal[0].day) {
      pm_confmsg_join(mpath, sizeof(mpath), path, "due");
      day_str(t->goal[1].day, a, sizeof(a));
      day_str(t->goal[0].day, b, sizeof(b));
      return pm_cfg_fail(c, dd, mpath, "due (%s) must be after start (%s)", a,
                         b);
    }
    return 0;
  }
  if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY) {
    if (n == 0)
      return pm_cfg_fail(c, s, path,
                         "expected at least one milestone ( { date = "
                         "\"YYYY-MM-DD\"; value = ...; }, ... )");
    t->goal_kind = PM_GOAL_MILESTONES;
    for (int i = 0; i < n; i++) {
      elem_path(mpath, sizeof(mpath), path, i);
      if ((rc =
               load_milestone(c, config_setting_get_elem(s, (unsigned)i), mpath,
                              i ? &t->goal[i - 1] : NULL, &t->goal[i])) != 0)
        return rc;
      t->n_goal++;
    }
    return 0;
  }
  return pm_cfg_fail(c, s, path,
                     "expected a number, a group { value = ...; } or { start "
                     "= ...; start_value = ...; due = ...; value = ...; }, or "
                     "a list of milestones ( { date = ...; value = ...; }, "
                     "... ), got %s",
                     pm_confmsg_type(type));
}

static int load_notify(pm_cfgctx_t *c, pm_target_conf_t *t,
                       const config_setting_t *g, const char *tpath) {
  const pm_config_t *cfg = c->cfg;
  char path[PATH_LEN], epath[PATH_LEN], vbuf[80], names[256];
  const config_setting_t *s;
  int n, rc;

  if ((rc = string_list(c, g, tpath, "notify",
                        "an array of notifier names [ \"ops\", ... ]", &s, &n,
                        path, sizeof(path))) != 0 ||
      n == 0)
    return rc;
  t->notify = calloc((size_t)n, sizeof(*t->notify));
  if (!t->notify)
    return pm_cfg_oom(c);
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    const char *name = config_setting_get_string(e);

    elem_path(epath, sizeof(epath), path, i);
    if (!pm_config_notifier(cfg, name)) {
      size_t off = 0;
      names[0] = '\0';
      for (size_t j = 0; j < cfg->n_notifiers && off < sizeof(names); j++) {
        int w = snprintf(names + off, sizeof(names) - off, "%s%s",
                         j ? ", " : "", cfg->notifiers[j].name);
        off += w > 0 ? (size_t)w : 0;
      }
      if (cfg->n_notifiers == 0)
        return pm_cfg_fail(c, e, epath,
                           "no notifier named \"%s\" (`notifiers` defines "
                           "none)",
                           pm_confmsg_show(name, vbuf, sizeof(vbuf)));
      return pm_cfg_fail(c, e, epath, "no notifier named \"%s\" (defined: %s)",
                         pm_confmsg_show(name, vbuf, sizeof(vbuf)), names);
    }
    for (size_t j = 0; j < t->n_notify; j++)
      if (strcmp(t->notify[j], name) == 0)
        return pm_cfg_fail(c, e, epath, "notifier \"%s\" named twice", name);
    if (!(t->notify[i] = strdup(name)))
      return pm_cfg_oom(c);
    t->n_notify++;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * The canonical definition
 * ------------------------------------------------------------------- */

/* Seconds: an integer when whole. */
static json_t *seconds(int64_t us) {
  if (us % PM_US_PER_SEC == 0)
    return json_integer(us / PM_US_PER_SEC);
  return json_real((double)us / (double)PM_US_PER_SEC);
}

static json_t *seconds_or_null(int64_t us) {
  return us ? seconds(us) : json_null();
}

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *goal_json(const pm_target_conf_t *t) {
  json_t *goal = json_object(), *points = json_array();
  int bad = !goal || !points;

  for (size_t i = 0; !bad && i < t->n_goal; i++) {
    json_t *p = json_object();
    char date[16];

    if (t->goal[i].day != PM_NO_DAY)
      day_str(t->goal[i].day, date, sizeof(date));
    bad |= !p;
    bad |= json_object_set_new(p, "date",
                               t->goal[i].day == PM_NO_DAY
                                   ? json_null()
                                   : json_string(date)) != 0;
    bad |= json_object_set_new(p, "value", json_real(t->goal[i].value)) != 0;
    bad |= json_array_append_new(points, p) != 0;
  }
  bad |= json_object_set_new(goal, "kind",
                             json_string(goal_kinds[t->goal_kind])) != 0;
  bad |= json_object_set_new(goal, "points", points) != 0;
  if (bad) {
    json_decref(goal);
    return NULL;
  }
  return goal;
}

/* pm_target_conf_t.definition: see config.h. Labels are an object and
 * notify is sorted, as both are sets. */
static char *definition(const pm_target_conf_t *t, const char *tz) {
  json_t *o = json_object(), *labels = json_object(), *notify = json_array();
  char **sorted = NULL, *out = NULL;
  int bad = !o || !labels || !notify;

  for (size_t i = 0; !bad && i < t->n_labels; i++)
    bad |= json_object_set_new(labels, t->labels[i].key,
                               json_string(t->labels[i].value)) != 0;
  if (t->n_notify && !(sorted = malloc(t->n_notify * sizeof(*sorted))))
    bad = 1;
  if (sorted) {
    memcpy(sorted, t->notify, t->n_notify * sizeof(*sorted));
    qsort(sorted, t->n_notify, sizeof(*sorted), str_cmp);
    for (size_t i = 0; i < t->n_notify; i++)
      bad |= json_array_append_new(notify, json_string(sorted[i])) != 0;
    free(sorted);
  }
  bad |= json_object_set_new(o, "title", json_string(t->title)) != 0;
  bad |= json_object_set_new(o, "metric", json_string(t->metric)) != 0;
  bad |= json_object_set_new(o, "per", str_or_null(t->per)) != 0;
  bad |= json_object_set_new(o, "labels", labels) != 0;
  bad |=
      json_object_set_new(o, "window_days", json_integer(t->window_days)) != 0;
  bad |= json_object_set_new(o, "direction",
                             json_string(directions[t->direction])) != 0;
  bad |= json_object_set_new(o, "goal", goal_json(t)) != 0;
  bad |= json_object_set_new(o, "tolerance", json_real(t->tolerance)) != 0;
  bad |= json_object_set_new(o, "for_s", seconds(t->for_us)) != 0;
  bad |= json_object_set_new(o, "clear_for_s", seconds(t->clear_for_us)) != 0;
  bad |= json_object_set_new(o, "stale_s", seconds_or_null(t->stale_us)) != 0;
  bad |= json_object_set_new(o, "repeat_s", seconds_or_null(t->repeat_us)) != 0;
  bad |= json_object_set_new(o, "lookback_days",
                             json_integer(t->lookback_days)) != 0;
  bad |= json_object_set_new(o, "severity", json_string(t->severity)) != 0;
  bad |=
      json_object_set_new(o, "format", json_string(formats[!t->percent])) != 0;
  bad |= json_object_set_new(o, "notify", notify) != 0;
  bad |= json_object_set_new(o, "timezone", json_string(tz)) != 0;
  if (!bad)
    out =
        json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
  json_decref(o);
  return out;
}

/* ---------------------------------------------------------------------
 * One target
 * ------------------------------------------------------------------- */

static int load_target(pm_cfgctx_t *c, const config_setting_t *g, size_t idx) {
  pm_config_t *cfg = c->cfg;
  pm_target_conf_t *t = &cfg->targets[idx];
  char tpath[PATH_LEN], path[PATH_LEN], vbuf[80];
  const config_setting_t *s;
  int direction = PM_AT_LEAST, severity = 1, format = -1, rc;

  snprintf(tpath, sizeof(tpath), "targets.[%zu]", idx);
  t->line = config_setting_source_line(g);
  t->window_days = DEFAULT_WINDOW_DAYS;
  t->lookback_days = DEFAULT_LOOKBACK_DAYS;
  if ((rc = list_group(c, g, tpath, target_keys)) != 0 ||
      (rc = get_name(c, g, tpath, "target", &t->name, &s)) != 0)
    return rc;
  for (size_t i = 0; i < idx; i++)
    if (strcmp(cfg->targets[i].name, t->name) == 0) {
      pm_confmsg_join(path, sizeof(path), tpath, "name");
      return pm_cfg_fail(c, s, path,
                         "duplicate target name \"%s\" (first at line %d)",
                         t->name, cfg->targets[i].line);
    }

  if ((rc = pm_cfg_get_string(c, g, tpath, "title", 0, &t->title, &s)) != 0)
    return rc;
  if (s && (strlen(t->title) > TITLE_MAX || !pm_label_value_valid(t->title))) {
    pm_confmsg_join(path, sizeof(path), tpath, "title");
    return pm_cfg_fail(c, s, path,
                       "invalid title (expected printable UTF-8, at most %d "
                       "bytes)",
                       TITLE_MAX);
  }
  if (!s && pm_cfg_set_str(c, &t->title, t->name) != 0)
    return PM_ENOMEM;

  for (int k = 0; k < 2; k++) {
    const char *key = k ? "per" : "metric";
    char **dst = k ? &t->per : &t->metric;
    if ((rc = pm_cfg_get_string(c, g, tpath, key, !k, dst, &s)) != 0)
      return rc;
    if (s && !pm_metric_name_valid(*dst)) {
      pm_confmsg_join(path, sizeof(path), tpath, key);
      return pm_cfg_fail(c, s, path,
                         "invalid metric name \"%s\" (expected "
                         "[a-z][a-z0-9_]*(.[a-z0-9_]+)*, at most %d bytes)",
                         pm_confmsg_show(*dst, vbuf, sizeof(vbuf)),
                         PM_METRIC_MAX);
    }
  }

  if ((rc = load_target_labels(c, t, g, tpath)) != 0 ||
      (rc = get_days(c, g, tpath, "window", 1, MAX_WINDOW_DAYS,
                     &t->window_days)) != 0 ||
      (rc = get_choice(c, g, tpath, "direction", 0, "direction", directions,
                       &direction)) != 0 ||
      (rc = load_goal(c, t, g, tpath)) != 0 ||
      (rc = get_number(c, g, tpath, "tolerance", 0, &t->tolerance)) != 0)
    return rc;
  t->direction = (pm_direction_t)direction;
  if (t->tolerance < 0) {
    pm_confmsg_join(path, sizeof(path), tpath, "tolerance");
    return pm_cfg_fail(c, config_setting_get_member(g, "tolerance"), path,
                       "must not be negative");
  }
  if ((rc = pm_cfg_get_duration(c, g, tpath, "for", 0, &t->for_us, NULL)) !=
          0 ||
      (rc = pm_cfg_get_duration(c, g, tpath, "clear_for", 0, &t->clear_for_us,
                                NULL)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, tpath, "stale", 1, &t->stale_us, NULL)) !=
          0 ||
      (rc = get_choice(c, g, tpath, "severity", 0, "severity", severities,
                       &severity)) != 0 ||
      (rc = pm_cfg_set_str(c, &t->severity, severities[severity])) != 0 ||
      (rc = load_notify(c, t, g, tpath)) != 0 ||
      (rc = pm_cfg_get_duration(c, g, tpath, "repeat", 0, &t->repeat_us,
                                NULL)) != 0 ||
      (rc = get_days(c, g, tpath, "lookback", MIN_LOOKBACK_DAYS,
                     MAX_LOOKBACK_DAYS, &t->lookback_days)) != 0 ||
      (rc = get_choice(c, g, tpath, "format", 0, "format", formats, &format)) !=
          0)
    return rc;
  t->percent = format < 0 ? t->per != NULL : format == 0;

  if (!(t->definition = definition(t, cfg->timezone)))
    return pm_cfg_oom(c);
  return 0;
}

static int load_targets(pm_cfgctx_t *c) {
  pm_config_t *cfg = c->cfg;
  const config_setting_t *l;
  int n, rc;

  if ((rc = top_list(c, "targets", &l, &n)) != 0 || n == 0)
    return rc;
  cfg->targets = calloc((size_t)n, sizeof(*cfg->targets));
  if (!cfg->targets)
    return pm_cfg_oom(c);
  for (int i = 0; i < n; i++) {
    cfg->n_targets++;
    if ((rc = load_target(c, config_setting_get_elem(l, (unsigned)i),
                          (size_t)i)) != 0)
      return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------- */

int pm_cfg_load_alerts(pm_cfgctx_t *c) {
  int rc;

  if ((rc = load_alerts_group(c)) != 0 || (rc = load_notifiers(c)) != 0 ||
      (rc = load_targets(c)) != 0)
    return rc;
  return 0;
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void pm_cfg_free_alerts(pm_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_targets; i++) {
    pm_target_conf_t *t = &cfg->targets[i];
    for (size_t j = 0; j < t->n_labels; j++) {
      free((char *)t->labels[j].key);
      free((char *)t->labels[j].value);
    }
    free(t->labels);
    free(t->name);
    free(t->title);
    free(t->metric);
    free(t->per);
    free(t->goal);
    free(t->severity);
    free_strv(t->notify, t->n_notify);
    free(t->definition);
  }
  free(cfg->targets);
  cfg->targets = NULL;
  cfg->n_targets = 0;
  for (size_t i = 0; i < cfg->n_notifiers; i++) {
    pm_notifier_conf_t *n = &cfg->notifiers[i];
    free(n->name);
    free(n->url);
    free_strv(n->headers, n->n_headers);
    free(n->token_file);
    free(n->ca_file);
    free_strv(n->command, n->n_command);
  }
  free(cfg->notifiers);
  cfg->notifiers = NULL;
  cfg->n_notifiers = 0;
}

const pm_target_conf_t *pm_config_target(const pm_config_t *cfg,
                                         const char *name) {
  for (size_t i = 0; cfg && name && i < cfg->n_targets; i++)
    if (cfg->targets[i].name && strcmp(cfg->targets[i].name, name) == 0)
      return &cfg->targets[i];
  return NULL;
}

const pm_notifier_conf_t *pm_config_notifier(const pm_config_t *cfg,
                                             const char *name) {
  for (size_t i = 0; cfg && name && i < cfg->n_notifiers; i++)
    if (cfg->notifiers[i].name && strcmp(cfg->notifiers[i].name, name) == 0)
      return &cfg->notifiers[i];
  return NULL;
}

/* The data model's rules (DESIGN.md "Data model"). */
#include "sample.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static int is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
static int is_word(char c) {
  return is_lower(c) || (c >= '0' && c <= '9') || c == '_';
}

int pm_metric_name_valid(const char *name) {
  size_t len;
  const char *p;

  if (!name || !is_lower(name[0]))
    return 0;
  len = strlen(name);
  if (len > PM_METRIC_MAX)
    return 0;
  /* [a-z][a-z0-9_]*(\.[a-z0-9_]+)* */
  for (p = name + 1; *p; p++) {
    if (*p == '.') {
      if (!is_word(p[1]))
        return 0;
    } else if (!is_word(*p)) {
      return 0;
    }
  }
  return 1;
}

int pm_label_key_valid(const char *key) {
  size_t i;
  if (!key || !is_lower(key[0]))
    return 0;
  for (i = 1; key[i]; i++)
    if (!is_word(key[i]))
      return 0;
  return i <= PM_LABEL_KEY_MAX;
}

/* Length of the UTF-8 sequence at s if it is well formed and printable
 * (no C0/C1 controls, no DEL, no surrogates, no overlongs), else 0. */
static size_t utf8_printable(const unsigned char *s) {
  unsigned c = s[0];
  unsigned cp;
  size_t n, i;

  if (c < 0x20 || c == 0x7f)
    return 0;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  if (cp >= 0xd800 && cp <= 0xdfff)
    return 0;
  if (cp >= 0x80 && cp <= 0x9f)
    return 0;
  return n;
}

int pm_label_value_valid(const char *value) {
  const unsigned char *p = (const unsigned char *)value;
  size_t len = 0, n;

  if (!value || !*value)
    return 0;
  while (*p) {
    n = utf8_printable(p);
    if (n == 0)
      return 0;
    p += n;
    len += n;
    if (len > PM_LABEL_VALUE_MAX)
      return 0;
  }
  return 1;
}

int pm_ts_check(int64_t ts_us, int64_t now_us, int64_t max_age_us) {
  if (ts_us < now_us - max_age_us || ts_us > now_us + PM_TS_FUTURE_MAX_US)
    return PM_ETS;
  return 0;
}

static int label_cmp(const void *a, const void *b) {
  return strcmp(((const pm_label_t *)a)->key, ((const pm_label_t *)b)->key);
}

static int labelset_add(pm_labelset_t *out, const pm_label_t *l,
                        size_t *bytes) {
  if (out->n == PM_LABELS_MAX)
    return PM_ELABEL;
  if (!pm_label_key_valid(l->key) || !pm_label_value_valid(l->value))
    return PM_ELABEL;
  *bytes += strlen(l->key) + strlen(l->value);
  if (*bytes > PM_LABELS_BYTES_MAX)
    return PM_ELABEL;
  out->l[out->n++] = *l;
  return 0;
}

int pm_labelset_build(pm_labelset_t *out, const pm_label_t *base, size_t nbase,
                      const pm_label_t *own, size_t nown,
                      const char *collector) {
  size_t bytes = 0, i;
  pm_label_t c = {"collector", collector};
  int rc;

  out->n = 0;
  if (nbase + nown + 1 > PM_LABELS_MAX || (nown && !own))
    return PM_ELABEL;
  for (i = 0; i < nbase; i++)
    if ((rc = labelset_add(out, &base[i], &bytes)) != 0)
      return rc;
  for (i = 0; i < nown; i++)
    if ((rc = labelset_add(out, &own[i], &bytes)) != 0)
      return rc;
  /* `collector` is the daemon's: two collectors never share a series. */
  for (i = 0; i < out->n; i++)
    if (strcmp(out->l[i].key, "collector") == 0)
      return PM_ELABEL;
  if ((rc = labelset_add(out, &c, &bytes)) != 0)
    return rc;
  qsort(out->l, out->n, sizeof(out->l[0]), label_cmp);
  for (i = 1; i < out->n; i++)
    if (strcmp(out->l[i - 1].key, out->l[i].key) == 0)
      return PM_ELABEL;
  return 0;
}

static void put_field(EVP_MD_CTX *ctx, const char *s) {
  size_t len = strlen(s);
  unsigned char be[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                         (unsigned char)(len >> 8), (unsigned char)len};
  EVP_DigestUpdate(ctx, be, 4);
  EVP_DigestUpdate(ctx, s, len);
}

int64_t pm_series_id(const char *metric, const pm_label_t *labels, size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  uint64_t id = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();

  if (!ctx)
    abort(); /* OpenSSL out of memory: nothing sane to return */
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  put_field(ctx, metric);
  for (size_t i = 0; i < n; i++) {
    put_field(ctx, labels[i].key);
    put_field(ctx, labels[i].value);
  }
  EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  for (int i = 0; i < 8; i++)
    id = (id << 8) | md[i];
  return (int64_t)id;
}

char *pm_labels_json(const pm_label_t *labels, size_t n) {
  json_t *obj = json_object();
  char *s;

  if (!obj)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (json_object_set_new(obj, labels[i].key, json_string(labels[i].value)) !=
        0) {
      json_decref(obj);
      return NULL;
    }
  }
  s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
  json_decref(obj);
  return s;
}

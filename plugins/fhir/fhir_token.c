/*
 * SMART discovery and token endpoint answers: see fhir_token.h.
 */
#include "fhir_token.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "fhir_err.h"
#include "fhir_query.h"

#define URL_MAX 2048
#define TOKEN_MAX 16384
#define SCOPE_MAX 4096
#define ERROR_CODE_MAX 64
#define DESCRIPTION_MAX 150

#define set_err(e, len, ...)                                                   \
  fhir_err_set(e, len, FHIR_TOKEN_ERR_MAX, __VA_ARGS__)

/* n bytes of printable ASCII without spaces (what a URL or a token may
 * hold and still be safe in a header line or a log). */
static int is_graph(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
      return 0;
  return 1;
}

static int is_print(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
      return 0;
  return 1;
}

static json_t *load_object(const char *body, size_t len, const char *what,
                           char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_loadb(body ? body : "", body ? len : 0,
                            JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  if (!root) {
    set_err(err, errlen, "%s: malformed JSON at byte %d", what, je.position);
    return NULL;
  }
  if (!json_is_object(root)) {
    set_err(err, errlen, "%s: not a JSON object", what);
    json_decref(root);
    return NULL;
  }
  return root;
}

int fhir_smart_config_parse(const char *body, size_t len, char **token_url,
                            int *has_private_key_jwt, char *err,
                            size_t errlen) {
  static const char what[] = "smart-configuration";
  if (err && errlen)
    err[0] = '\0';
  if (token_url)
    *token_url = NULL;
  if (has_private_key_jwt)
    *has_private_key_jwt = 0;
  if (!token_url || !has_private_key_jwt) {
    set_err(err, errlen, "%s: invalid argument", what);
    return -1;
  }
  json_t *root = load_object(body, len, what, err, errlen);
  if (!root)
    return -1;
  int rc = -1;
  json_t *te = json_object_get(root, "token_endpoint");
  if (!te) {
    set_err(err, errlen, "%s: no token_endpoint", what);
    goto out;
  }
  if (!json_is_string(te)) {
    set_err(err, errlen, "%s: token_endpoint is not a string", what);
    goto out;
  }
  const char *url = json_string_value(te);
  size_t n = json_string_length(te);
  if (n > URL_MAX) {
    set_err(err, errlen, "%s: token_endpoint is longer than %d bytes", what,
            URL_MAX);
    goto out;
  }
  if (n != strlen(url) || !is_graph(url, n)) {
    set_err(err, errlen,
            "%s: token_endpoint holds spaces or non-printable characters",
            what);
    goto out;
  }
  if (strncasecmp(url, "http://", 7) != 0 &&
      strncasecmp(url, "https://", 8) != 0) {
    set_err(err, errlen, "%s: token_endpoint is not an http(s) URL", what);
    goto out;
  }
  {
    /* There is a host: the origin fits, as the whole URL does. */
    char origin[URL_MAX + 16];
    if (fhir_url_origin(url, origin, sizeof(origin)) != 0) {
      set_err(err, errlen, "%s: token_endpoint has no valid host", what);
      goto out;
    }
  }
  json_t *methods =
      json_object_get(root, "token_endpoint_auth_methods_supported");
  int pkj = 1;
  if (methods) {
    pkj = 0;
    size_t i;
    json_t *m;
    if (json_is_array(methods))
      json_array_foreach(methods, i, m) {
        if (json_is_string(m) &&
            strcmp(json_string_value(m), "private_key_jwt") == 0)
          pkj = 1;
      }
  }
  char *copy = strdup(url);
  if (!copy) {
    set_err(err, errlen, "%s: out of memory", what);
    goto out;
  }
  *token_url = copy;
  *has_private_key_jwt = pkj;
  rc = 0;
out:
  json_decref(root);
  return rc;
}

void fhir_token_free(fhir_token_t *t) {
  if (!t)
    return;
  if (t->access_token) {
    /* The token is a credential: wipe it before the heap reuses it. A
     * volatile walk, as fhir_core does not link OpenSSL. */
    volatile char *p = t->access_token;
    while (*p)
      *p++ = 0;
    free(t->access_token);
  }
  free(t->scope);
  t->access_token = NULL;
  t->scope = NULL;
  t->expires_in = 0;
}

/* Overwrite a jansson string (a copy of the token) before it is freed. */
static void wipe_json_string(json_t *s) {
  if (!json_is_string(s))
    return;
  volatile char *p = (volatile char *)json_string_value(s);
  size_t n = json_string_length(s);
  for (size_t i = 0; i < n; i++)
    p[i] = 0;
}

int fhir_token_parse(const char *body, size_t len, fhir_token_t *out, char *err,
                     size_t errlen) {
  static const char what[] = "token answer";
  if (err && errlen)
    err[0] = '\0';
  if (!out) {
    set_err(err, errlen, "%s: invalid argument", what);
    return -1;
  }
  memset(out, 0, sizeof(*out));
  json_t *root = load_object(body, len, what, err, errlen);
  if (!root)
    return -1;
  int rc = -1;
  json_t *at = json_object_get(root, "access_token");
  if (!at) {
    set_err(err, errlen, "%s: no access_token", what);
    goto out;
  }
  if (!json_is_string(at)) {
    set_err(err, errlen, "%s: access_token is not a string", what);
    goto out;
  }
  size_t n = json_string_length(at);
  const char *tok = json_string_value(at);
  if (n == 0 || n > TOKEN_MAX) {
    set_err(err, errlen, "%s: access_token is %s", what,
            n == 0 ? "empty" : "longer than 16384 bytes");
    goto out;
  }
  if (n != strlen(tok) || !is_graph(tok, n)) {
    set_err(err, errlen,
            "%s: access_token holds spaces or non-printable characters", what);
    goto out;
  }
  json_t *tt = json_object_get(root, "token_type");
  if (tt &&
      (!json_is_string(tt) || strcasecmp(json_string_value(tt), "bearer"))) {
    set_err(err, errlen, "%s: token_type is not bearer", what);
    goto out;
  }
  json_t *ei = json_object_get(root, "expires_in");
  int64_t expires = 0;
  if (ei) {
    if (!json_is_integer(ei) || json_integer_value(ei) < 0) {
      set_err(err, errlen, "%s: expires_in is not a non-negative integer",
              what);
      goto out;
    }
    expires = (int64_t)json_integer_value(ei);
  }
  /* scope is informational: one that is not a printable string is
   * dropped rather than costing the token. */
  json_t *sc = json_object_get(root, "scope");
  if (json_is_string(sc) && json_string_length(sc) <= SCOPE_MAX &&
      json_string_length(sc) == strlen(json_string_value(sc)) &&
      is_print(json_string_value(sc), json_string_length(sc))) {
    out->scope = strdup(json_string_value(sc));
    if (!out->scope) {
      set_err(err, errlen, "%s: out of memory", what);
      goto out;
    }
  }
  out->access_token = strdup(tok);
  if (!out->access_token) {
    free(out->scope);
    out->scope = NULL;
    set_err(err, errlen, "%s: out of memory", what);
    goto out;
  }
  out->expires_in = expires;
  rc = 0;
out:
  wipe_json_string(at);
  json_decref(root);
  return rc;
}

/* s (n bytes) with everything but printable ASCII dropped, at most max
 * bytes, appended to out (cap bytes, NUL included) at *pos. */
static void append_clean(char *out, size_t cap, size_t *pos, const char *s,
                         size_t n, size_t max) {
  size_t taken = 0;
  for (size_t i = 0; i < n && taken < max && *pos + 1 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e)
      continue;
    out[(*pos)++] = (char)c;
    taken++;
  }
  out[*pos] = '\0';
}

static void append(char *out, size_t cap, size_t *pos, const char *s) {
  append_clean(out, cap, pos, s, strlen(s), (size_t)-1);
}

void fhir_token_error_text(const char *body, size_t len, char *out,
                           size_t outlen) {
  if (!out || outlen == 0)
    return;
  out[0] = '\0';
  size_t pos = 0;
  json_error_t je;
  json_t *root = body ? json_loadb(body, len, 0, &je) : NULL;
  json_t *code = json_object_get(root, "error"); /* NULL-safe */
  json_t *desc = json_object_get(root, "error_description");
  if (json_is_string(code))
    append_clean(out, outlen, &pos, json_string_value(code),
                 json_string_length(code), ERROR_CODE_MAX);
  if (pos == 0)
    append(out, outlen, &pos, "(no error code)");
  if (json_is_string(desc)) {
    /* Only when something printable is left of it. */
    char d[DESCRIPTION_MAX + 1];
    size_t dl = 0;
    append_clean(d, sizeof(d), &dl, json_string_value(desc),
                 json_string_length(desc), DESCRIPTION_MAX);
    if (dl > 0) {
      append(out, outlen, &pos, ": ");
      append(out, outlen, &pos, d);
    }
  }
  json_decref(root);
}

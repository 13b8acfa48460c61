/*
 * plugins/fhir/fhir_token (SMART discovery and token answers, error
 * lines) and fhir_auth's configuration checks, with keys made here by
 * OpenSSL in a temporary folder. Nothing here needs a network, except
 * one token URL on a closed local port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fhir_auth.h"
#include "fhir_token.h"
#include "portalmetrics/plugin.h"

/* ---- fixtures ------------------------------------------------------------ */

static char dir[64];
static char rsa2048[128], rsa1024[128], p256[128], p384[128], ed25519[128],
    encrypted[128], garbage[128], missing[128], password[128], token[128];

static void path(char *out, const char *name) {
  snprintf(out, 128, "%s/%s", dir, name);
}

static void write_text(const char *file, const char *text) {
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void write_key(const char *file, EVP_PKEY *k, int encrypt) {
  assert_non_null(k);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  unsigned char pass[] = "secret-pass";
  assert_int_equal(
      PEM_write_PrivateKey(f, k, encrypt ? EVP_aes_128_cbc() : NULL,
                           encrypt ? pass : NULL, encrypt ? 11 : 0, NULL, NULL),
      1);
  assert_int_equal(fclose(f), 0);
  EVP_PKEY_free(k);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/pm-fhir-token.XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  path(rsa2048, "rsa2048.pem");
  path(rsa1024, "rsa1024.pem");
  path(p256, "p256.pem");
  path(p384, "p384.pem");
  path(ed25519, "ed25519.pem");
  path(encrypted, "encrypted.pem");
  path(garbage, "garbage.pem");
  path(missing, "no-such-key.pem");
  path(password, "password");
  path(token, "token");
  write_key(rsa2048, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), 0);
  write_key(rsa1024, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), 0);
  write_key(p256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), 0);
  write_key(p384, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), 0);
  write_key(ed25519, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), 0);
  write_key(encrypted, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), 1);
  write_text(garbage, "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n"
                      "-----END PRIVATE KEY-----\n");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  const char *files[] = {rsa2048,   rsa1024, p256,     p384, ed25519,
                         encrypted, garbage, password, token};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    unlink(files[i]);
  rmdir(dir);
  return 0;
}

/* err is one printable line of at most max bytes. */
static void assert_line(const char *err, size_t max) {
  assert_true(strlen(err) <= max);
  for (const char *c = err; *c; c++)
    assert_true(*c >= 0x20 && *c <= 0x7e);
}

/* ---- smart-configuration ------------------------------------------------- */

static int smart(const char *json, char **url, int *pkj, char *err) {
  return fhir_smart_config_parse(json, strlen(json), url, pkj, err,
                                 FHIR_TOKEN_ERR_MAX + 1);
}

static void test_smart_good(void **state) {
  (void)state;
  char err[FHIR_TOKEN_ERR_MAX + 1];
  char *url = NULL;
  int pkj = -1;
  const char *epic =
      "{\"issuer\":\"https://ehr.example.org\","
      "\"token_endpoint\":\"https://ehr.example.org/oauth2/token\","
      "\"token_endpoint_auth_methods_supported\":[\"client_secret_basic\","
      "\"private_key_jwt\"],"
      "\"grant_types_supported\":[\"client_credentials\"],"
      "\"scopes_supported\":[\"system/*.read\"],"
      "\"capabilities\":[\"client-confidential-asymmetric\"]}";
  assert_int_equal(smart(epic, &url, &pkj, err), 0);
  assert_string_equal(url, "https://ehr.example.org/oauth2/token");
  assert_int_equal(pkj, 1);
  free(url);

  /* No list of methods: assume private_key_jwt. */
  assert_int_equal(
      smart("{\"token_endpoint\":\"HTTP://127.0.0.1:8080/auth/token?x=1\"}",
            &url, &pkj, err),
      0);
  assert_string_equal(url, "HTTP://127.0.0.1:8080/auth/token?x=1");
  assert_int_equal(pkj, 1);
  free(url);

  /* A list without it, an empty list, a list that is no list. */
  const char *without[] = {
      "{\"token_endpoint\":\"https://a.org/t\","
      "\"token_endpoint_auth_methods_supported\":[\"client_secret_basic\","
      "7,null,\"PRIVATE_KEY_JWT\"]}",
      "{\"token_endpoint\":\"https://a.org/t\","
      "\"token_endpoint_auth_methods_supported\":[]}",
      "{\"token_endpoint\":\"https://a.org/t\","
      "\"token_endpoint_auth_methods_supported\":\"private_key_jwt\"}",
  };
  for (size_t i = 0; i < sizeof(without) / sizeof(without[0]); i++) {
    pkj = -1;
    assert_int_equal(smart(without[i], &url, &pkj, err), 0);
    assert_int_equal(pkj, 0);
    assert_string_equal(url, "https://a.org/t");
    free(url);
  }
}

static void test_smart_refused(void **state) {
  (void)state;
  char err[FHIR_TOKEN_ERR_MAX + 1];
  char *url = (char *)"x";
  int pkj = 7;
  struct {
    const char *json, *want;
  } cases[] = {
      {"{\"issuer\":\"https://a.org\"}", "no token_endpoint"},
      {"{\"token_endpoint\":null}", "not a string"},
      {"{\"token_endpoint\":42}", "not a string"},
      {"{\"token_endpoint\":\"ftp://a.org/token\"}", "not an http(s) URL"},
      {"{\"token_endpoint\":\"/auth/token\"}", "not an http(s) URL"},
      {"{\"token_endpoint\":\"javascript:alert(1)\"}", "not an http(s) URL"},
      {"{\"token_endpoint\":\"https:///token\"}", "no valid host"},
      {"{\"token_endpoint\":\"https://a.org/to ken\"}", "spaces"},
      {"{\"token_endpoint\":\"https://a.org/token\\n\"}", "spaces"},
      {"{\"token_endpoint\":\"https://a.org/t\\u00e9\"}", "spaces"},
      {"{\"token_endpoint\":\"https://a.org/t\",\"token_endpoint\":"
       "\"https://evil.org/t\"}",
       "malformed JSON"},
      {"{\"token_endpoint\":\"https://a.org/t\"", "malformed JSON at byte"},
      {"<html>502 Bad Gateway</html>", "malformed JSON at byte 1"},
      {"", "malformed JSON"},
      {"[{\"token_endpoint\":\"https://a.org/t\"}]", "not a JSON object"},
      {"\"https://a.org/t\"", "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    url = (char *)"x";
    pkj = 7;
    assert_int_equal(smart(cases[i].json, &url, &pkj, err), -1);
    assert_null(url);
    assert_int_equal(pkj, 0);
    if (!strstr(err, cases[i].want))
      fail_msg("case %zu: err \"%s\" lacks \"%s\"", i, err, cases[i].want);
    assert_line(err, FHIR_TOKEN_ERR_MAX);
    /* Nothing of the body is quoted. */
    assert_null(strstr(err, "a.org"));
    assert_null(strstr(err, "502"));
  }

  /* Too long: 2048 bytes pass, 2049 do not. */
  char json[4096];
  char u[2100];
  memset(u, 'a', sizeof(u));
  memcpy(u, "https://a.org/", 14);
  u[2048] = '\0';
  snprintf(json, sizeof(json), "{\"token_endpoint\":\"%s\"}", u);
  assert_int_equal(smart(json, &url, &pkj, err), 0);
  assert_int_equal(strlen(url), 2048);
  free(url);
  u[2048] = 'a';
  u[2049] = '\0';
  snprintf(json, sizeof(json), "{\"token_endpoint\":\"%s\"}", u);
  assert_int_equal(smart(json, &url, &pkj, err), -1);
  assert_non_null(strstr(err, "longer than 2048"));

  /* NULL body, NULL outputs, a tiny err buffer. */
  assert_int_equal(fhir_smart_config_parse(NULL, 5, &url, &pkj, err, 64), -1);
  assert_int_equal(fhir_smart_config_parse("{}", 2, NULL, &pkj, err, 64), -1);
  char tiny[5];
  assert_int_equal(fhir_smart_config_parse("{}", 2, &url, &pkj, tiny, 5), -1);
  assert_int_equal(strlen(tiny), 4);
  /* The length is obeyed: the same text without its closing brace. */
  const char *good = "{\"token_endpoint\":\"https://a.org/t\"}";
  assert_int_equal(
      fhir_smart_config_parse(good, strlen(good) - 1, &url, &pkj, err, 64), -1);
}

/* ---- token answers ------------------------------------------------------- */

static int tok(const char *json, fhir_token_t *t, char *err) {
  return fhir_token_parse(json, strlen(json), t, err, FHIR_TOKEN_ERR_MAX + 1);
}

static void test_token_good(void **state) {
  (void)state;
  char err[FHIR_TOKEN_ERR_MAX + 1];
  fhir_token_t t;
  assert_int_equal(tok("{\"access_token\":\"eyJhbGciOi.abc-_~+/=\","
                       "\"token_type\":\"Bearer\",\"expires_in\":3600,"
                       "\"scope\":\"system/Patient.read system/*.read\"}",
                       &t, err),
                   0);
  assert_string_equal(t.access_token, "eyJhbGciOi.abc-_~+/=");
  assert_int_equal(t.expires_in, 3600);
  assert_string_equal(t.scope, "system/Patient.read system/*.read");
  assert_string_equal(err, "");
  fhir_token_free(&t);
  assert_null(t.access_token);
  assert_null(t.scope);
  fhir_token_free(&t); /* twice is harmless */

  /* Minimal: no token_type, expires_in, scope; expires_in 0. */
  assert_int_equal(tok("{\"access_token\":\"x\"}", &t, err), 0);
  assert_string_equal(t.access_token, "x");
  assert_int_equal(t.expires_in, 0);
  assert_null(t.scope);
  fhir_token_free(&t);
  assert_int_equal(
      tok("{\"access_token\":\"x\",\"token_type\":\"BEARER\",\"expires_in\":0}",
          &t, err),
      0);
  fhir_token_free(&t);

  /* A huge expires_in is given as is (fhir_auth caps the cache). */
  assert_int_equal(tok("{\"access_token\":\"x\","
                       "\"expires_in\":9223372036854775807}",
                       &t, err),
                   0);
  assert_int_equal(t.expires_in, INT64_MAX);
  fhir_token_free(&t);

  /* A scope that is no printable string is dropped, not fatal. */
  assert_int_equal(tok("{\"access_token\":\"x\",\"scope\":[\"a\"]}", &t, err),
                   0);
  assert_null(t.scope);
  fhir_token_free(&t);
  assert_int_equal(
      tok("{\"access_token\":\"x\",\"scope\":\"a\\u001b[2J\"}", &t, err), 0);
  assert_null(t.scope);
  fhir_token_free(&t);

  /* 16384 bytes pass, 16385 do not. */
  static char json[20000];
  int n = snprintf(json, sizeof(json), "{\"access_token\":\"");
  memset(json + n, 'k', 16384);
  snprintf(json + n + 16384, sizeof(json) - (size_t)n - 16384, "\"}");
  assert_int_equal(tok(json, &t, err), 0);
  assert_int_equal(strlen(t.access_token), 16384);
  fhir_token_free(&t);
  memset(json + n, 'k', 16385);
  snprintf(json + n + 16385, sizeof(json) - (size_t)n - 16385, "\"}");
  assert_int_equal(tok(json, &t, err), -1);
  assert_non_null(strstr(err, "longer than 16384"));
  fhir_token_free(&t);
}

static void test_token_refused(void **state) {
  (void)state;
  char err[FHIR_TOKEN_ERR_MAX + 1];
  fhir_token_t t;
  struct {
    const char *json, *want;
  } cases[] = {
      {"{\"token_type\":\"bearer\",\"expires_in\":300}", "no access_token"},
      {"{\"access_token\":null}", "not a string"},
      {"{\"access_token\":12345}", "not a string"},
      {"{\"access_token\":\"\"}", "empty"},
      {"{\"access_token\":\"SECRET TOKEN\"}", "spaces"},
      {"{\"access_token\":\"SECRET\\r\\nX-Evil: 1\"}", "non-printable"},
      {"{\"access_token\":\"SECRET\\u00ff\"}", "non-printable"},
      {"{\"access_token\":\"SECRET\",\"token_type\":\"mac\"}",
       "token_type is not bearer"},
      {"{\"access_token\":\"SECRET\",\"token_type\":\"DPoP\"}",
       "token_type is not bearer"},
      {"{\"access_token\":\"SECRET\",\"token_type\":null}",
       "token_type is not bearer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":-1}",
       "expires_in is not a non-negative integer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":\"3600\"}",
       "expires_in is not a non-negative integer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":3600.5}",
       "expires_in is not a non-negative integer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":1e300}",
       "expires_in is not a non-negative integer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":true}",
       "expires_in is not a non-negative integer"},
      {"{\"access_token\":\"SECRET\",\"expires_in\":99999999999999999999}",
       "malformed JSON"},
      {"{\"access_token\":\"SECRET\",\"access_token\":\"OTHER\"}",
       "malformed JSON"},
      {"{\"access_token\":\"SECRET\"", "malformed JSON at byte"},
      {"[\"SECRET\"]", "not a JSON object"},
      {"null", "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(&t, 0x5a, sizeof(t));
    assert_int_equal(tok(cases[i].json, &t, err), -1);
    assert_null(t.access_token);
    assert_null(t.scope);
    assert_int_equal(t.expires_in, 0);
    if (!strstr(err, cases[i].want))
      fail_msg("case %zu: err \"%s\" lacks \"%s\"", i, err, cases[i].want);
    assert_null(strstr(err, "SECRET"));
    assert_line(err, FHIR_TOKEN_ERR_MAX);
    fhir_token_free(&t);
  }
  /* NULL output; NULL body. */
  assert_int_equal(fhir_token_parse("{}", 2, NULL, err, sizeof(err)), -1);
  assert_int_equal(fhir_token_parse(NULL, 3, &t, err, sizeof(err)), -1);
  assert_null(t.access_token);
}

/* ---- error lines --------------------------------------------------------- */

static void etext(const char *body, char *out, size_t outlen) {
  fhir_token_error_text(body, strlen(body), out, outlen);
}

static void test_error_text(void **state) {
  (void)state;
  char out[FHIR_TOKEN_ERR_MAX + 1];
  etext(
      "{\"error\":\"invalid_client\",\"error_description\":\"client_assertion "
      "signature does not verify\"}",
      out, sizeof(out));
  assert_string_equal(out, "invalid_client: client_assertion signature does "
                           "not verify");
  etext("{\"error\":\"invalid_grant\"}", out, sizeof(out));
  assert_string_equal(out, "invalid_grant");

  /* Control characters and non-ASCII are dropped. */
  etext("{\"error\":\"invalid\\u001b[31m_scope\",\"error_description\":"
        "\"line\\r\\nX-Injected: 1\\t\\u00e9t\\u00e9\"}",
        out, sizeof(out));
  assert_string_equal(out, "invalid[31m_scope: lineX-Injected: 1t");

  /* A long description is cut at 150 bytes, a long code at 64. */
  char body[2048], want[600];
  char desc[400];
  memset(desc, 'd', 300);
  desc[300] = '\0';
  snprintf(body, sizeof(body),
           "{\"error\":\"invalid_request\",\"error_description\":\"%s\"}",
           desc);
  etext(body, out, sizeof(out));
  desc[150] = '\0';
  snprintf(want, sizeof(want), "invalid_request: %s", desc);
  assert_string_equal(out, want);
  char code[200];
  memset(code, 'c', 100);
  code[100] = '\0';
  snprintf(body, sizeof(body), "{\"error\":\"%s\"}", code);
  etext(body, out, sizeof(out));
  assert_int_equal(strlen(out), 64);

  /* No error code. */
  etext("{\"error_description\":\"something\"}", out, sizeof(out));
  assert_string_equal(out, "(no error code): something");
  etext("{\"error\":42,\"error_description\":\"x\"}", out, sizeof(out));
  assert_string_equal(out, "(no error code): x");
  etext("{\"error\":\"\\u0001\\u0002\"}", out, sizeof(out));
  assert_string_equal(out, "(no error code)");
  etext("<html><body>502 Bad Gateway</body></html>", out, sizeof(out));
  assert_string_equal(out, "(no error code)");
  etext("", out, sizeof(out));
  assert_string_equal(out, "(no error code)");
  etext("[\"invalid_client\"]", out, sizeof(out));
  assert_string_equal(out, "(no error code)");
  fhir_token_error_text(NULL, 10, out, sizeof(out));
  assert_string_equal(out, "(no error code)");
  /* A description with nothing printable adds nothing. */
  etext("{\"error\":\"invalid_client\",\"error_description\":\"\\n\\n\"}", out,
        sizeof(out));
  assert_string_equal(out, "invalid_client");

  /* A short buffer is filled and terminated; a zero one left alone. */
  char small[10];
  etext("{\"error\":\"invalid_client\"}", small, sizeof(small));
  assert_string_equal(small, "invalid_c");
  small[0] = 'Z';
  fhir_token_error_text("{}", 2, small, 0);
  assert_int_equal(small[0], 'Z');
}

/* ---- fhir_auth configuration --------------------------------------------- */

static fhir_auth_conf_t smart_conf(const char *key, const char *alg) {
  fhir_auth_conf_t c = {0};
  c.type = FHIR_AUTH_SMART;
  c.base_url = "https://ehr.example.org/fhir/R4/";
  c.client_id = "portalmetrics";
  c.private_key_file = key;
  c.key_id = "kid-1";
  c.alg = alg;
  c.timeout_us = 2000000;
  return c;
}

static int auth_new(const fhir_auth_conf_t *c, char *err) {
  fhir_auth_t *a = (fhir_auth_t *)0x1;
  int rc = fhir_auth_new(c, &a, err, FHIR_AUTH_ERR_MAX + 1);
  assert_line(err, FHIR_AUTH_ERR_MAX);
  assert_null(strstr(err, "BEGIN"));
  if (rc == 0) {
    assert_non_null(a);
    fhir_auth_stats_t st;
    fhir_auth_stats(a, &st);
    assert_int_equal(st.tokens_minted + st.token_failures + st.discoveries, 0);
    fhir_auth_free(a);
  } else {
    assert_null(a);
  }
  return rc;
}

static void test_auth_smart_keys(void **state) {
  (void)state;
  char err[FHIR_AUTH_ERR_MAX + 1];
  fhir_auth_conf_t c;

  c = smart_conf(rsa2048, "RS384");
  assert_int_equal(auth_new(&c, err), 0);
  c = smart_conf(rsa2048, NULL); /* alg from the key */
  assert_int_equal(auth_new(&c, err), 0);
  c = smart_conf(p384, "ES384");
  assert_int_equal(auth_new(&c, err), 0);
  c = smart_conf(p384, NULL);
  c.key_id = NULL;
  c.scopes = "system/Patient.read system/Communication.read";
  assert_int_equal(auth_new(&c, err), 0);
  /* A token URL instead of discovery: no base_url needed. */
  c = smart_conf(p384, "ES384");
  c.base_url = NULL;
  c.token_url = "https://auth.example.org/oauth2/token";
  assert_int_equal(auth_new(&c, err), 0);

  struct {
    const char *key, *alg, *want;
  } bad[] = {
      {rsa1024, "RS384", "RSA key of 1024 bits"},
      {rsa1024, NULL, "RSA key of 1024 bits"},
      {p256, "ES384", "curve prime256v1 (ES384 needs P-384)"},
      {p256, NULL, "curve prime256v1"},
      {p384, "RS384", "an EC key, but auth.alg is RS384"},
      {rsa2048, "ES384", "an RSA key, but auth.alg is ES384"},
      {ed25519, NULL, "ED25519 key"},
      {encrypted, "ES384", "not a PEM private key"},
      {garbage, "RS384", "not a PEM private key"},
      {missing, "RS384", "No such file or directory"},
      {dir, "RS384", "not a regular file"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    c = smart_conf(bad[i].key, bad[i].alg);
    assert_int_equal(auth_new(&c, err), PM_ECONFIG);
    if (!strstr(err, bad[i].want) || !strstr(err, bad[i].key) ||
        !strstr(err, "auth.private_key_file"))
      fail_msg("case %zu: err \"%s\"", i, err);
  }

  struct {
    const char *what, *want;
  } cfg[] = {
      {"client_id", "auth.client_id"},
      {"client_id_ctl", "auth.client_id"},
      {"alg", "auth.alg must be RS384"},
      {"key", "auth.private_key_file"},
      {"no_url", "base_url is needed"},
      {"base_query", "base_url must"},
      {"base_ftp", "base_url must"},
      {"token_url", "auth.token_url"},
      {"kid", "auth.key_id"},
      {"scopes", "auth.scopes"},
      {"ca_file", "ca_file /nonexistent"},
  };
  for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
    c = smart_conf(rsa2048, "RS384");
    const char *w = cfg[i].what;
    if (!strcmp(w, "client_id"))
      c.client_id = NULL;
    else if (!strcmp(w, "client_id_ctl"))
      c.client_id = "a\nb";
    else if (!strcmp(w, "alg"))
      c.alg = "HS256";
    else if (!strcmp(w, "key"))
      c.private_key_file = "";
    else if (!strcmp(w, "no_url"))
      c.base_url = NULL;
    else if (!strcmp(w, "base_query"))
      c.base_url = "https://e.org/fhir?x=1";
    else if (!strcmp(w, "base_ftp"))
      c.base_url = "ftp://e.org/fhir";
    else if (!strcmp(w, "token_url"))
      c.token_url = "https://a.org/to ken";
    else if (!strcmp(w, "kid"))
      c.key_id = "";
    else if (!strcmp(w, "scopes"))
      c.scopes = "system/*.read\n";
    else if (!strcmp(w, "ca_file"))
      c.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(auth_new(&c, err), PM_ECONFIG);
    if (!strstr(err, cfg[i].want))
      fail_msg("case %s: err \"%s\"", w, err);
  }

  /* Arguments. */
  fhir_auth_t *a;
  assert_int_equal(fhir_auth_new(NULL, &a, err, sizeof(err)), PM_EINVAL);
  c = smart_conf(rsa2048, "RS384");
  assert_int_equal(fhir_auth_new(&c, NULL, err, sizeof(err)), PM_EINVAL);
  c.type = (fhir_auth_type_t)9;
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), PM_EINVAL);
  fhir_auth_free(NULL);
  fhir_auth_invalidate(NULL);
}

static void test_auth_basic_bearer(void **state) {
  (void)state;
  char err[FHIR_AUTH_ERR_MAX + 1];
  fhir_auth_t *a;
  char *h;
  fhir_auth_conf_t c = {0};

  /* none: no header. */
  c.type = FHIR_AUTH_NONE;
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), 0);
  h = (char *)0x1;
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), 0);
  assert_null(h);
  fhir_auth_free(a);

  /* basic */
  write_text(password, "pass\n");
  c.type = FHIR_AUTH_BASIC;
  c.username = "user";
  c.password_file = password;
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), 0);
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), 0);
  assert_string_equal(h, "Authorization: Basic dXNlcjpwYXNz");
  free(h);
  /* A rotated password is read at the next use. */
  write_text(password, "p\xc3\xa4ss:w\r\n");
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), 0);
  assert_string_equal(h, "Authorization: Basic dXNlcjpww6Rzczp3");
  free(h);
  unlink(password);
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), PM_EIO);
  assert_null(h);
  assert_non_null(strstr(err, password));
  assert_non_null(strstr(err, "auth.password_file"));
  write_text(password, "\n");
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), PM_EIO);
  assert_non_null(strstr(err, "empty"));
  fhir_auth_invalidate(a); /* no effect */
  fhir_auth_free(a);

  write_text(password, "pass\n");
  fhir_auth_conf_t b = c;
  b.username = NULL;
  assert_int_equal(auth_new(&b, err), PM_ECONFIG);
  assert_non_null(strstr(err, "auth.username"));
  b.username = "us:er";
  assert_int_equal(auth_new(&b, err), PM_ECONFIG);
  assert_non_null(strstr(err, "auth.username"));
  b.username = "us\ner";
  assert_int_equal(auth_new(&b, err), PM_ECONFIG);
  b = c;
  b.password_file = NULL;
  assert_int_equal(auth_new(&b, err), PM_ECONFIG);
  assert_non_null(strstr(err, "auth.password_file"));
  b.password_file = missing;
  assert_int_equal(auth_new(&b, err), PM_ECONFIG);
  assert_non_null(strstr(err, missing));
  write_text(password, "two\nlines\n");
  assert_int_equal(auth_new(&c, err), PM_ECONFIG);
  assert_null(strstr(err, "two"));

  /* bearer */
  memset(&c, 0, sizeof(c));
  c.type = FHIR_AUTH_BEARER;
  c.token_file = token;
  write_text(token, "static-TOKEN.123\n");
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), 0);
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), 0);
  assert_string_equal(h, "Authorization: Bearer static-TOKEN.123");
  free(h);
  write_text(token, "rotated");
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), 0);
  assert_string_equal(h, "Authorization: Bearer rotated");
  free(h);
  write_text(token, "two words\n");
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), PM_EIO);
  assert_null(h);
  assert_null(strstr(err, "words"));
  unlink(token);
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)), PM_EIO);
  assert_non_null(strstr(err, token));
  fhir_auth_stats_t st;
  fhir_auth_stats(a, &st);
  assert_int_equal(st.tokens_minted + st.token_failures, 0);
  fhir_auth_free(a);
  c.token_file = NULL;
  assert_int_equal(auth_new(&c, err), PM_ECONFIG);
  assert_non_null(strstr(err, "auth.token_file"));
  c.token_file = token;
  assert_int_equal(auth_new(&c, err), PM_ECONFIG); /* gone */
  write_text(token, "a\r\nX-Injected: 1\n");
  assert_int_equal(auth_new(&c, err), PM_ECONFIG);

  assert_int_equal(fhir_auth_header(NULL, 0, &h, err, sizeof(err)), PM_EINVAL);
  fhir_auth_stats(NULL, &st);
  assert_int_equal(st.discoveries, 0);
}

/* A token URL on a closed port: unreachable, told by origin only. */
static void test_auth_unreachable(void **state) {
  (void)state;
  char err[FHIR_AUTH_ERR_MAX + 1];
  fhir_auth_conf_t c = smart_conf(p384, "ES384");
  c.token_url = "http://127.0.0.1:1/oauth2/token?tenant=secret";
  fhir_auth_t *a;
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), 0);
  char *h = (char *)0x1;
  assert_int_equal(
      fhir_auth_header(a, 1700000000LL * 1000000, &h, err, sizeof(err)),
      PM_EUNREACHABLE);
  assert_null(h);
  assert_non_null(strstr(err, "token endpoint http://127.0.0.1:1 unreachable"));
  assert_null(strstr(err, "oauth2"));
  assert_null(strstr(err, "secret"));
  fhir_auth_stats_t st;
  fhir_auth_stats(a, &st);
  assert_int_equal(st.tokens_minted, 0);
  assert_int_equal(st.token_failures, 1);
  assert_int_equal(st.discoveries, 0);
  fhir_auth_free(a);

  /* Discovery on a closed port. */
  c = smart_conf(rsa2048, "RS384");
  c.base_url = "http://127.0.0.1:1/fhir/R4";
  assert_int_equal(fhir_auth_new(&c, &a, err, sizeof(err)), 0);
  assert_int_equal(fhir_auth_header(a, 0, &h, err, sizeof(err)),
                   PM_EUNREACHABLE);
  assert_non_null(strstr(err, "SMART discovery at http://127.0.0.1:1 "));
  assert_null(strstr(err, "fhir/R4"));
  fhir_auth_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_smart_good),
      cmocka_unit_test(test_smart_refused),
      cmocka_unit_test(test_token_good),
      cmocka_unit_test(test_token_refused),
      cmocka_unit_test(test_error_text),
      cmocka_unit_test(test_auth_smart_keys),
      cmocka_unit_test(test_auth_basic_bearer),
      cmocka_unit_test(test_auth_unreachable),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * SMART Backend Services answers (plugins/fhir/fhir_token.h). The first
 * input byte picks the parser (its value mod 3): 0 the smart-
 * configuration, 1 a token answer, 2 an error answer's log line; its
 * high bits size the err/out buffer. The rest is one body as received.
 * Oracles beyond "no crash, no leak":
 *  - err/out is NUL-terminated within its length and FHIR_TOKEN_ERR_MAX,
 *    printable ASCII only;
 *  - smart-configuration: on success an http(s) URL of 1..2048 bytes of
 *    printable ASCII without spaces, and a 0/1 flag; on failure NULL, 0;
 *  - token: on success an access_token of 1..16384 printable bytes
 *    without spaces, expires_in >= 0, scope NULL or printable (spaces
 *    allowed), err empty; on failure every member zero; the token never
 *    appears in err;
 *  - error line: at most "<64-byte code>: <150-byte description>", the
 *    line in a short buffer is the start of the line in a long one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fhir_token.h"

static void check_text(const char *s, size_t len, size_t max, int spaces) {
  const char *nul = memchr(s, '\0', len);
  if (!nul || (size_t)(nul - s) > max)
    abort();
  for (const char *c = s; c < nul; c++)
    if ((unsigned char)*c < (spaces ? 0x20 : 0x21) || (unsigned char)*c > 0x7e)
      abort();
}

static void smart(const char *body, size_t size, size_t errlen) {
  char *err = malloc(errlen);
  if (!err)
    abort();
  char *url = (char *)"sentinel";
  int pkj = 7;
  int rc = fhir_smart_config_parse(body, size, &url, &pkj, err, errlen);
  check_text(err, errlen, FHIR_TOKEN_ERR_MAX, 1);
  if (rc == 0) {
    size_t n = strlen(url);
    if (n == 0 || n > 2048 || (pkj != 0 && pkj != 1))
      abort();
    if (strncasecmp(url, "http://", 7) != 0 &&
        strncasecmp(url, "https://", 8) != 0)
      abort();
    check_text(url, n + 1, 2048, 0);
    free(url);
  } else if (rc != -1 || url != NULL || pkj != 0) {
    abort();
  }
  free(err);
}

static void token(const char *body, size_t size, size_t errlen) {
  char *err = malloc(errlen);
  if (!err)
    abort();
  fhir_token_t t;
  memset(&t, 0xa5, sizeof(t));
  int rc = fhir_token_parse(body, size, &t, err, errlen);
  check_text(err, errlen, FHIR_TOKEN_ERR_MAX, 1);
  if (rc == 0) {
    size_t n = strlen(t.access_token);
    if (n == 0 || n > 16384 || t.expires_in < 0 || err[0])
      abort();
    check_text(t.access_token, n + 1, 16384, 0);
    if (t.scope)
      check_text(t.scope, strlen(t.scope) + 1, (size_t)-1, 1);
  } else {
    if (rc != -1 || t.access_token || t.scope || t.expires_in)
      abort();
  }
  fhir_token_free(&t);
  if (t.access_token || t.scope)
    abort();
  free(err);
}

static void error_text(const char *body, size_t size, size_t outlen) {
  char big[FHIR_TOKEN_ERR_MAX + 1];
  fhir_token_error_text(body, size, big, sizeof(big));
  check_text(big, sizeof(big), 64 + 2 + 150, 1);
  char *small = malloc(outlen);
  if (!small)
    abort();
  fhir_token_error_text(body, size, small, outlen);
  check_text(small, outlen, outlen - 1, 1);
  if (strncmp(small, big, strlen(small)) != 0)
    abort();
  free(small);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  unsigned sel = data[0] % 3;
  /* 1..64 bytes from the high bits, or the full size. */
  size_t len = data[0] >= 3 * 64 ? FHIR_TOKEN_ERR_MAX + 1 : 1u + data[0] / 3;
  /* A heap copy, so reading past size trips ASan. */
  size_t n = size - 1;
  char *body = malloc(n ? n : 1);
  if (!body)
    abort();
  memcpy(body, data + 1, n);
  switch (sel) {
  case 0:
    smart(body, n, len);
    break;
  case 1:
    token(body, n, len);
    break;
  default:
    error_text(body, n, len);
    break;
  }
  free(body);
  return 0;
}

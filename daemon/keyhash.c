/* Keyed hashes of idempotency keys. */
#include "keyhash.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include <portalmetrics/plugin.h>

int pm_keyhash(const unsigned char *secret, size_t secretlen, const char *scope,
               const void *key, size_t len, uint64_t out[2]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  size_t slen = strlen(scope);
  unsigned char *buf = malloc(slen + 1 + len);

  if (!buf)
    return PM_ENOMEM;
  memcpy(buf, scope, slen + 1);
  memcpy(buf + slen + 1, key, len);
  if (!HMAC(EVP_sha256(), secret, (int)secretlen, buf, slen + 1 + len, md,
            &mdlen)) {
    free(buf);
    return PM_EINTERNAL;
  }
  free(buf);
  memcpy(&out[0], md, 8);
  memcpy(&out[1], md + 8, 8);
  if (out[0] == 0 && out[1] == 0)
    out[1] = 1;
  return 0;
}

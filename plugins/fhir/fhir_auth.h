/*
 * Credentials for FHIR requests: none, HTTP basic, a static bearer token,
 * or SMART Backend Services (client_credentials with a private_key_jwt
 * client assertion, RFC 7523, signed RS384 or ES384 with libjwt).
 *
 * Blocking, for the collect thread: discovery and token requests use their
 * own libcurl easy handles with the configured timeout and TLS settings.
 * Secrets come only from files, read when needed (a rotated password or
 * token file is picked up without a restart). Nothing secret is ever put
 * in err: no token, password, key, assertion, or token-endpoint body
 * beyond its RFC 6749 error code and description (fhir_token_error_text).
 */
#ifndef FHIR_AUTH_H
#define FHIR_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define FHIR_AUTH_ERR_MAX 300

typedef enum fhir_auth_type {
  FHIR_AUTH_NONE = 0,
  FHIR_AUTH_BASIC = 1,
  FHIR_AUTH_BEARER = 2,
  FHIR_AUTH_SMART = 3
} fhir_auth_type_t;

/* Every string is the caller's and need only live during fhir_auth_new
 * (which copies what it keeps). Unused members are NULL/0. */
typedef struct fhir_auth_conf {
  fhir_auth_type_t type;
  const char *base_url; /* the FHIR base: discovery is
                           base_url + "/.well-known/smart-configuration" */
  const char *ca_file;  /* NULL: the system's CAs */
  int64_t timeout_us;   /* each discovery/token request */
  /* basic */
  const char *username;
  const char *password_file; /* the password, trailing newline ignored */
  /* bearer */
  const char *token_file; /* the token, trailing newline ignored */
  /* smart */
  const char *client_id;
  const char *private_key_file; /* PEM: RSA (RS384) or EC P-384 (ES384) */
  const char *key_id;           /* the JWT header's kid; NULL: none */
  const char *alg;              /* "RS384" | "ES384" | NULL: from the key */
  const char *scopes;           /* e.g. "system/Patient.read system/...";
                                   NULL: read access to all (system/ *.read) */
  const char *token_url;        /* NULL: discover */
} fhir_auth_conf_t;

typedef struct fhir_auth fhir_auth_t;

/*
 * Check the configuration and make the state. Reads nothing from the
 * network. SMART: the key file must exist, parse, and suit alg (RSA >=
 * 2048 bits for RS384, EC P-384 for ES384); client_id set. Basic: username
 * and password_file set; bearer: token_file set. Files must be readable
 * now (read again at each use). Returns 0 and *out, or PM_ECONFIG /
 * PM_EINVAL / PM_ENOMEM with a one-line reason in err that names the
 * setting and the file (not its content).
 */
int fhir_auth_new(const fhir_auth_conf_t *conf, fhir_auth_t **out, char *err,
                  size_t errlen);
void fhir_auth_free(fhir_auth_t *a);

/*
 * The Authorization header for the next requests, as a full header line
 * ("Authorization: Bearer abc", "Authorization: Basic dXNlcjpwdw=="),
 * malloc'd into *header (caller frees, after OPENSSL_cleanse: it is a
 * secret); *header = NULL for FHIR_AUTH_NONE.
 *
 * SMART: returns the cached access token while it is valid for at least
 * 60 s more at now_us (a token without expires_in is kept 5 min, one
 * with expires_in over 24 h is kept 24 h); else
 * discovers the token URL (once; again after a failure), builds a client
 * assertion (iss = sub = client_id, aud = token URL, iat = now, exp = now
 * + 240 s, jti = 128 random bits in hex, kid when set), posts
 * grant_type=client_credentials, scope, client_assertion_type,
 * client_assertion (form-encoded with curl_easy_escape), and caches the
 * answer. now_us is the clock used for the JWT's iat/exp and for the
 * cache (tests pass a skewed one).
 *
 * Returns 0, or:
 *   PM_EAUTH        the token endpoint refused with HTTP 400, 401 or
 *                   403 (err: "token endpoint
 *                   https://host:port refused the client assertion (HTTP
 *                   401): invalid_client: <description>")
 *   PM_EUNREACHABLE discovery or token endpoint unreachable or timed out
 *   PM_EPEER        a malformed discovery or token answer, or another
 *                   HTTP status (a redirect is not followed; err says which)
 *   PM_EIO          a secret file cannot be read now (err names the file)
 *   PM_ENOMEM
 * err names endpoints by origin only (fhir_url_origin).
 */
int fhir_auth_header(fhir_auth_t *a, int64_t now_us, char **header, char *err,
                     size_t errlen);

/* A request was refused with 401: forget the cached token, so the next
 * fhir_auth_header mints a new one. No effect for other types. */
void fhir_auth_invalidate(fhir_auth_t *a);

/* Counters for the plugin's metrics and tests. */
typedef struct fhir_auth_stats {
  uint64_t tokens_minted;  /* successful token requests */
  uint64_t token_failures; /* failed attempts to get a token, a failed
                              discovery or unreadable key included */
  uint64_t discoveries;    /* smart-configuration fetched */
} fhir_auth_stats_t;
void fhir_auth_stats(const fhir_auth_t *a, fhir_auth_stats_t *out);

#endif

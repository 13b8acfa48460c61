/*
 * What a SMART Backend Services exchange answers, read with jansson. Pure:
 * parses a buffer, keeps only the fields below. Never puts a token, a
 * secret or any text of the body into err, except what each error lists.
 */
#ifndef FHIR_TOKEN_H
#define FHIR_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define FHIR_TOKEN_ERR_MAX 200

/*
 * .well-known/smart-configuration: token_endpoint (an http(s) URL of
 * printable ASCII without spaces, at most 2048 bytes), malloc'd into
 * *token_url (caller frees). Also reports whether
 * token_endpoint_auth_methods_supported (when present) lists
 * "private_key_jwt" in *has_private_key_jwt (1 when the list is absent).
 * Returns 0, or -1 with a reason in err (missing/invalid token_endpoint,
 * malformed JSON at byte N -- duplicate keys included --, not an object).
 */
int fhir_smart_config_parse(const char *body, size_t len, char **token_url,
                            int *has_private_key_jwt, char *err, size_t errlen);

typedef struct fhir_token {
  char *access_token; /* malloc'd; printable ASCII without spaces */
  int64_t expires_in; /* seconds; 0 when the server gave none */
  char *scope;        /* malloc'd, NULL when absent */
} fhir_token_t;

/*
 * A token endpoint's 200 answer: access_token (required, a string of
 * printable ASCII without spaces, 1..16384 bytes), token_type (must be
 * "bearer", any case, when present), expires_in (a non-negative integer,
 * optional), scope (optional; kept only when a string of printable ASCII
 * of at most 4096 bytes, else NULL). Duplicate keys are malformed JSON.
 * *out is always initialised, so fhir_token_free (which wipes the token)
 * is safe after any return. Returns 0 or -1 with a reason.
 */
int fhir_token_parse(const char *body, size_t len, fhir_token_t *out, char *err,
                     size_t errlen);
void fhir_token_free(fhir_token_t *t);

/*
 * A token endpoint's error answer (RFC 6749 5.2: {"error",
 * "error_description"}) as one printable line for the log: "invalid_client:
 * <description>", description cut to 150 bytes and stripped of anything but
 * printable ASCII; "(no error code)" (then ": <description>" when there is one)
 * when the body has no error code. The code is cut to 64 bytes. Always
 * writes out (cut to outlen).
 */
void fhir_token_error_text(const char *body, size_t len, char *out,
                           size_t outlen);

#endif

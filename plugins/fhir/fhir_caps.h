/*
 * A server's CapabilityStatement (GET [base]/metadata), read just enough to
 * tell the operator which queries the server says it cannot answer. Pure:
 * parses a buffer with jansson; keeps the names of the resource types of
 * the first rest entry with mode "server" (or the first rest entry), each
 * with its declared search parameter names, whether it declares the
 * search-type interaction, and the rest-level (all resources) searchParam
 * names.
 */
#ifndef FHIR_CAPS_H
#define FHIR_CAPS_H

#include <stddef.h>

#define FHIR_CAPS_ERR_MAX 200

typedef struct fhir_caps fhir_caps_t;

/*
 * Parse body[0..len). On success *out is a new fhir_caps_t (free with
 * fhir_caps_free) and 0 is returned. On error *out is NULL, -1 is
 * returned and err names the reason (malformed JSON at byte N, not a
 * CapabilityStatement (its resourceType when plausible), no rest entry),
 * never text of the body beyond that.
 */
int fhir_caps_parse(const char *body, size_t len, fhir_caps_t **out, char *err,
                    size_t errlen);
void fhir_caps_free(fhir_caps_t *c);

/* CapabilityStatement.fhirVersion ("4.0.1"), "" when absent. Owned by c. */
const char *fhir_caps_version(const fhir_caps_t *c);

/*
 * Can the server answer a search of `resource` with these parameters?
 * params: a query string as written in the config ("a=1&b:missing=false"),
 * may be NULL or ""; date_param: may be NULL. For each parameter name the
 * modifier (":..."), and a chain (".…") are cut off, giving the base name.
 * Names the server need not declare are always accepted: the result
 * parameters (_count, _summary, _total, _sort, _elements, _include,
 * _revinclude, _contained, _containedType, _format, _pretty) and the
 * common ones every R4 server has (_id, _lastUpdated, _tag, _profile,
 * _security, _source). Everything else must be listed in the resource's
 * searchParam or the rest-level searchParam.
 *
 * Returns 0 when the server says it can, 1 when not, with a short reason
 * in why ("resource Appointment is not listed", "no search-type
 * interaction on Appointment", "parameter created is not declared for
 * Appointment"); -1 for invalid arguments (c or resource NULL, resource
 * not [A-Z][A-Za-z]{0,63}). A resource that lists no interaction at all
 * is taken to allow search (servers often omit it). A base name that is
 * not [A-Za-z0-9_-]{1,64} also gives 1 ("parameter '' is malformed"); why
 * never holds a parameter value, and a name only when it is
 * [A-Za-z0-9_.:-]{0,64}. Empty pieces ("a=1&&b=2", a trailing '&') and a
 * leading '?' are skipped, as fhir_url_build does. why may be NULL
 * (whylen 0); it is "" on 0.
 */
int fhir_caps_check(const fhir_caps_t *c, const char *resource,
                    const char *params, const char *date_param, char *why,
                    size_t whylen);

#endif

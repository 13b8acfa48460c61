/*
 * One page of a FHIR R4 search answer (a Bundle of type searchset), read
 * just enough to count it. Pure: parses a buffer with jansson, keeps
 * nothing of any resource but the counts below and the next link.
 *
 * What is kept:
 *  - Bundle.total (an integer >= 0), when the server gave one;
 *  - the url of the link with relation "next", exactly as given (only
 *    http:// or https://, no control characters or spaces, at most
 *    FHIR_URL_MAX bytes; the first such link when there are several);
 *  - the number of entries whose search.mode is "match", or that have no
 *    search.mode (R4 makes it optional, and servers that omit it list only
 *    matches): these are what a query counts;
 *  - the number of entries whose search.mode is "include" or "outcome"
 *    (never counted as matches);
 *  - with a classification, per-class counts of the match entries.
 *
 * Nothing read from the body goes into err but what is listed for each
 * error below, sanitised: no diagnostics, no JSON error text (jansson
 * quotes the input near the error), no URL.
 *
 * The caller must not follow `next` blindly with its credentials: compare
 * its origin (fhir_url_origin) with the base URL's first.
 */
#ifndef FHIR_BUNDLE_H
#define FHIR_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#define FHIR_CLASS_MAX 16      /* classes kept per page, the rest: other */
#define FHIR_CLASS_NAME_MAX 64 /* longest resource type name kept */
#define FHIR_URL_MAX 8192      /* longest next link accepted (bytes) */
#define FHIR_PATH_MAX 128      /* longest classification path */
#define FHIR_ERR_MAX 200       /* err is cut to this many bytes (+ NUL) */

enum {
  FHIR_OK = 0,
  FHIR_E_JSON = -1,       /* malformed or truncated JSON */
  FHIR_E_NOT_BUNDLE = -2, /* valid JSON, not a Bundle (err: its type) */
  FHIR_E_OUTCOME = -3,    /* an OperationOutcome (err: severity, code) */
  FHIR_E_SHAPE = -4,      /* a Bundle, but not a searchset, or a total,
                             link or entry of the wrong shape */
  FHIR_E_ARG = -5,        /* bad arguments (a NULL, an invalid path) */
  FHIR_E_NOMEM = -6       /* out of memory */
};

/*
 * How to classify match entries. path is a dotted path into each entry's
 * resource, each step an element name ([A-Za-z0-9_]+); a step ending in
 * "[]" means "any element of this array" (e.g. "sender.reference",
 * "recipient[].reference"). Steps are strict: a step without [] that
 * meets an array, or one with [] that meets a non-array, finds nothing.
 * At most 8 steps and FHIR_PATH_MAX bytes. The caller owns the string.
 *
 * Each string the path reaches is read as a reference: "Patient/123",
 * "Patient/123/_history/2" or an absolute ".../fhir/Patient/123" give the
 * class "Patient"; a bare resource type ("Patient", as in Reference.type)
 * is its own class. Anything else (a contained "#id", "urn:uuid:...", a
 * non-string) counts as other. An entry whose path reaches nothing (no
 * resource, element missing, empty array) counts as none.
 *
 * With [], an entry is counted once in each distinct class its elements
 * have (a Communication to a Patient and a Practitioner counts in both),
 * so the class counts may add up to more than matches.
 */
typedef struct fhir_classify {
  const char *path;
} fhir_classify_t;

typedef struct fhir_class_count {
  char name[FHIR_CLASS_NAME_MAX + 1]; /* a resource type, [A-Z][A-Za-z]* */
  uint64_t count;
} fhir_class_count_t;

typedef struct fhir_page {
  int has_total;     /* 1 when Bundle.total was given */
  int64_t total;     /* Bundle.total (>= 0) when has_total, else 0 */
  char *next;        /* the next link's url, malloc'd, owned by the page
                        (fhir_page_free); NULL when there is none */
  uint64_t matches;  /* entries with search.mode match or none */
  uint64_t includes; /* entries with search.mode include or outcome */
  /* Classification (all 0 without one): the first FHIR_CLASS_MAX
   * distinct classes in order of first appearance, then none and other. */
  size_t n_classes;
  fhir_class_count_t classes[FHIR_CLASS_MAX];
  uint64_t none;  /* match entries whose path reached nothing */
  uint64_t other; /* not a reference to a resource type, or a class
                     beyond the first FHIR_CLASS_MAX */
} fhir_page_t;

/*
 * Parse body[0..len) (need not be NUL-terminated; never read past len).
 * cls: NULL for no classification. Returns FHIR_OK or a FHIR_E_* code.
 *
 * *out is always initialised (zeroed on error, next NULL), so
 * fhir_page_free is safe after any return. err (errlen bytes, may be
 * NULL/0) gets a one-line reason on error, at most FHIR_ERR_MAX bytes,
 * printable ASCII only:
 *  - FHIR_E_JSON: the byte position of the error, nothing of the input;
 *  - FHIR_E_NOT_BUNDLE: the resourceType when it is a plausible type name
 *    ([A-Za-z]{1,64}), else that it is missing or invalid;
 *  - FHIR_E_OUTCOME: the first issue's severity and code (each when it is
 *    [a-z-]{1,32}). Never details or diagnostics: servers echo the request
 *    there, and the request's parameters may name a patient;
 *  - FHIR_E_SHAPE: which element is wrong (Bundle.type when it is a
 *    plausible code), never a value from an entry or a URL.
 */
int fhir_page_parse(const char *body, size_t len, const fhir_classify_t *cls,
                    fhir_page_t *out, char *err, size_t errlen);

/* Frees what the page owns (next) and zeroes it; p may be NULL. */
void fhir_page_free(fhir_page_t *p);

/* Per-class count of a page (0 when absent), "none" and "other" included. */
uint64_t fhir_page_class(const fhir_page_t *p, const char *name);

/* A short static description of a FHIR_* code ("malformed JSON", ...). */
const char *fhir_err_str(int code);

#endif

/*
 * The fhir collector's settings: the declaration table the daemon
 * validates against, and their reading into plain structs, with the
 * default query set when the config lists none.
 */
#ifndef FHIR_CONF_H
#define FHIR_CONF_H

#include <portalmetrics/plugin.h>
#include <stdint.h>

#include "fhir_auth.h"
#include "fhir_bundle.h"

/* One configured search. Strings are malloc'd, owned by the conf. */
typedef struct fhir_query {
  char *name;        /* label query=<name> when set; NULL: none */
  char *metric;      /* canonical or fhir.* */
  char *resource;    /* "Communication" */
  char *params;      /* "status=completed" or "" */
  char *date_param;  /* "sent"; NULL: a gauge, one count at now */
  char *classify;    /* a fhir_classify_t path; NULL: none */
  char *class_name;  /* the class counted; NULL: one series per class */
  int negate;        /* class "!X": the entries without class X */
  char *class_label; /* the label key of per-class series */
  int always_page;   /* total = "page": never trust Bundle.total */
  char *title;       /* for the log: name, or metric (resource by date) */
} fhir_query_t;

typedef struct fhir_conf {
  char *base_url;
  char origin[512]; /* scheme://host[:port], for the log and next links */
  int backfill_days;
  int64_t page_size, max_pages;
  int64_t timeout_us;
  int64_t retries;
  int64_t backoff_us, backoff_max_us, retry_after_max_us;
  int64_t max_connections, max_streams;
  int http2, check_metadata;
  uint64_t max_response;
  char *ca_file;
  fhir_auth_conf_t auth; /* strings owned by the host's settings */
  fhir_query_t *queries;
  size_t n_queries;
} fhir_conf_t;

extern const pm_setting_decl_t fhir_settings[];

/*
 * Read and check inst's settings into *out (zeroed first; fhir_conf_free
 * is safe after any return). Every problem is logged, naming the setting
 * ("queries.[2].class: ..."); returns 0, PM_ECONFIG or PM_ENOMEM.
 */
int fhir_conf_read(const pm_host_t *host, pm_instance_t *inst,
                   fhir_conf_t *out);
void fhir_conf_free(fhir_conf_t *c);

#endif

/*
 * fhir_auth_driver: builds a fhir_auth_t (plugins/fhir/fhir_auth.h) from
 * its options and asks it for the Authorization header COUNT times, for
 * test_fhir_smart.sh.
 *
 *   fhir_auth_driver --type none|basic|bearer|smart [options]
 *
 * Options:
 *   --base URL            base_url (SMART discovery: URL/.well-known/...)
 *   --ca-file F           ca_file
 *   --timeout-ms N        each discovery/token request (default 5000)
 *   --username U          basic
 *   --password-file F     basic
 *   --token-file F        bearer
 *   --client-id ID        smart
 *   --key PEM             smart: private_key_file
 *   --kid K               smart: key_id
 *   --alg A               smart: RS384 | ES384 (default: from the key)
 *   --scopes S            smart
 *   --token-url URL       smart: no discovery
 *   --skew-s N            the clock given to fhir_auth_header is the real
 *                         one + N s (negative: in the past)
 *   --step-s N            and N s more at each call (call i: + i*N)
 *   --count N             calls (default 1)
 *   --sleep-ms N          sleep between calls
 *   --invalidate          fhir_auth_invalidate after each call
 *   --get PATH            after each header: GET base + PATH with it
 *
 * Prints one line per call: "ok <first 16 hex of SHA-256(header)>" ("ok
 * none" without a header) or "error <code> <err>"; with --get also
 * "get <HTTP status>" (or "get error <curl's reason>"); then "stats
 * minted=M failures=F discoveries=D". Never prints a header, token or
 * secret. Exits 0 once the calls are made (whatever they returned); 2 on
 * bad usage; 3 when fhir_auth_new fails (its "error" line printed).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "fhir_auth.h"

static void usage(void) {
  fprintf(stderr, "usage: fhir_auth_driver --type none|basic|bearer|smart "
                  "[--base URL] [options] (see the source)\n");
  exit(2);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

/* GET base + path with header (NULL: none); prints the status. */
static void get(const char *base, const char *path, const char *header,
                long timeout_ms) {
  size_t n = strlen(base) + strlen(path) + 1;
  char *url = malloc(n);
  CURL *h = curl_easy_init();
  struct curl_slist *hdrs = header ? curl_slist_append(NULL, header) : NULL;
  if (!url || !h || (header && !hdrs)) {
    printf("get error out of memory\n");
    goto out;
  }
  snprintf(url, n, "%s%s", base, path);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  if (hdrs)
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  CURLcode c = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (c != CURLE_OK)
    printf("get error %s\n", curl_easy_strerror(c));
  else
    printf("get %ld\n", status);
out:
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  free(url);
}

int main(int argc, char **argv) {
  enum {
    O_TYPE = 1,
    O_BASE,
    O_CA,
    O_TIMEOUT,
    O_USER,
    O_PASSWORD,
    O_TOKEN,
    O_CLIENT,
    O_KEY,
    O_KID,
    O_ALG,
    O_SCOPES,
    O_TOKEN_URL,
    O_SKEW,
    O_STEP,
    O_COUNT,
    O_SLEEP,
    O_INVALIDATE,
    O_GET
  };
  static const struct option opts[] = {
      {"type", required_argument, NULL, O_TYPE},
      {"base", required_argument, NULL, O_BASE},
      {"ca-file", required_argument, NULL, O_CA},
      {"timeout-ms", required_argument, NULL, O_TIMEOUT},
      {"username", required_argument, NULL, O_USER},
      {"password-file", required_argument, NULL, O_PASSWORD},
      {"token-file", required_argument, NULL, O_TOKEN},
      {"client-id", required_argument, NULL, O_CLIENT},
      {"key", required_argument, NULL, O_KEY},
      {"kid", required_argument, NULL, O_KID},
      {"alg", required_argument, NULL, O_ALG},
      {"scopes", required_argument, NULL, O_SCOPES},
      {"token-url", required_argument, NULL, O_TOKEN_URL},
      {"skew-s", required_argument, NULL, O_SKEW},
      {"step-s", required_argument, NULL, O_STEP},
      {"count", required_argument, NULL, O_COUNT},
      {"sleep-ms", required_argument, NULL, O_SLEEP},
      {"invalidate", no_argument, NULL, O_INVALIDATE},
      {"get", required_argument, NULL, O_GET},
      {NULL, 0, NULL, 0},
  };
  fhir_auth_conf_t c = {0};
  const char *type = NULL, *get_path = NULL;
  long timeout_ms = 5000, skew_s = 0, step_s = 0, count = 1, sleep_between = 0;
  int invalidate = 0, o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case O_TYPE:
      type = optarg;
      break;
    case O_BASE:
      c.base_url = optarg;
      break;
    case O_CA:
      c.ca_file = optarg;
      break;
    case O_TIMEOUT:
      timeout_ms = atol(optarg);
      break;
    case O_USER:
      c.username = optarg;
      break;
    case O_PASSWORD:
      c.password_file = optarg;
      break;
    case O_TOKEN:
      c.token_file = optarg;
      break;
    case O_CLIENT:
      c.client_id = optarg;
      break;
    case O_KEY:
      c.private_key_file = optarg;
      break;
    case O_KID:
      c.key_id = optarg;
      break;
    case O_ALG:
      c.alg = optarg;
      break;
    case O_SCOPES:
      c.scopes = optarg;
      break;
    case O_TOKEN_URL:
      c.token_url = optarg;
      break;
    case O_SKEW:
      skew_s = atol(optarg);
      break;
    case O_STEP:
      step_s = atol(optarg);
      break;
    case O_COUNT:
      count = atol(optarg);
      break;
    case O_SLEEP:
      sleep_between = atol(optarg);
      break;
    case O_INVALIDATE:
      invalidate = 1;
      break;
    case O_GET:
      get_path = optarg;
      break;
    default:
      usage();
    }
  }
  if (optind != argc || !type || count < 0 || (get_path && !c.base_url))
    usage();
  if (!strcmp(type, "none"))
    c.type = FHIR_AUTH_NONE;
  else if (!strcmp(type, "basic"))
    c.type = FHIR_AUTH_BASIC;
  else if (!strcmp(type, "bearer"))
    c.type = FHIR_AUTH_BEARER;
  else if (!strcmp(type, "smart"))
    c.type = FHIR_AUTH_SMART;
  else
    usage();
  c.timeout_us = (int64_t)timeout_ms * 1000;
  setvbuf(stdout, NULL, _IOLBF, 0);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  char err[FHIR_AUTH_ERR_MAX + 1];
  fhir_auth_t *a;
  int rc = fhir_auth_new(&c, &a, err, sizeof(err));
  if (rc) {
    printf("error %d %s\n", rc, err);
    curl_global_cleanup();
    return 3;
  }
  for (long i = 0; i < count; i++) {
    if (i > 0 && sleep_between > 0)
      sleep_ms(sleep_between);
    int64_t t = now_us() + (int64_t)(skew_s + i * step_s) * 1000000;
    char *h = NULL;
    rc = fhir_auth_header(a, t, &h, err, sizeof(err));
    if (rc) {
      printf("error %d %s\n", rc, err);
    } else if (!h) {
      printf("ok none\n");
    } else {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int mdlen = 0;
      EVP_Digest(h, strlen(h), md, &mdlen, EVP_sha256(), NULL);
      printf("ok ");
      for (int j = 0; j < 8; j++)
        printf("%02x", md[j]);
      printf("\n");
    }
    if (get_path && rc == 0)
      get(c.base_url, get_path, h, timeout_ms);
    if (h) {
      OPENSSL_cleanse(h, strlen(h));
      free(h);
    }
    if (invalidate)
      fhir_auth_invalidate(a);
  }
  fhir_auth_stats_t st;
  fhir_auth_stats(a, &st);
  printf("stats minted=%llu failures=%llu discoveries=%llu\n",
         (unsigned long long)st.tokens_minted,
         (unsigned long long)st.token_failures,
         (unsigned long long)st.discoveries);
  fhir_auth_free(a);
  curl_global_cleanup();
  return 0;
}

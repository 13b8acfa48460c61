/*
 * Credentials for FHIR requests: see fhir_auth.h.
 *
 * Secrets (passwords, static tokens, private keys, client assertions,
 * access tokens, token endpoint answers) live only in buffers that are
 * wiped with OPENSSL_cleanse before they are freed. Copies made inside
 * libjwt (it scrubs its key copy on jwt_free, not its intermediate
 * strings) and libcurl (its send buffer) are out of our reach; the
 * assertion is single-use (jti) and short-lived, which bounds that.
 */
#include "fhir_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "fhir_err.h"
#include "fhir_query.h"
#include "fhir_token.h"
#include "portalmetrics/plugin.h"

#define US 1000000LL
#define SECRET_MAX (64 * 1024)      /* a password, token or key file */
#define BODY_MAX (1024 * 1024)      /* a discovery or token answer */
#define URL_MAX 2048                /* base_url, token_url */
#define TEXT_MAX 256                /* client_id, key_id */
#define SCOPES_MAX 4096             /* scopes */
#define TOKEN_MAX 16384             /* a static bearer token */
#define REFRESH_MARGIN_US (60 * US) /* mint when less is left */
#define DEFAULT_LIFE_S 300          /* a token without expires_in */
#define MAX_LIFE_S                                                             \
  86400 /* longer lives are cut: no overflow,                                  \
           and a revoked key shows within a day */
#define ASSERTION_LIFE_S 240
#define DEFAULT_TIMEOUT_US (30 * US)
#define DEFAULT_SCOPES "system/*.read"
#define WELL_KNOWN "/.well-known/smart-configuration"
#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

struct fhir_auth {
  fhir_auth_type_t type;
  char *base_url; /* trailing "/" dropped */
  char *ca_file;
  long timeout_ms;
  /* basic */
  char *username;
  char *password_file;
  /* bearer */
  char *token_file;
  /* smart */
  char *client_id;
  char *key_file;
  char *key_id;
  jwt_alg_t alg;
  char *scopes;
  char *token_url; /* configured, or NULL */
  char *found_url; /* discovered, or NULL: discover again */
  int found_pkj;   /* the discovery listed private_key_jwt */
  char *token;     /* the cached access token (a secret) */
  int64_t token_expiry_us;
  /* counters, read by fhir_auth_stats from any thread */
  uint64_t minted, failures, discoveries;
};

#define set_err(e, len, ...)                                                   \
  fhir_err_set(e, len, FHIR_AUTH_ERR_MAX, __VA_ARGS__)

static void count(uint64_t *c) {
  __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* Free a string that held a secret. */
static void free_secret(char *s, size_t n) {
  if (!s)
    return;
  OPENSSL_cleanse(s, n);
  free(s);
}

static void free_secret_str(char *s) {
  if (s)
    free_secret(s, strlen(s));
}

static int dup_opt(const char *s, char **out) {
  *out = NULL;
  if (!s)
    return 0;
  *out = strdup(s);
  return *out ? 0 : PM_ENOMEM;
}

/* Bytes that are all in [lo, 0x7e]; lo 0x21: no spaces, 0x20: spaces. */
static int ascii_range(const char *s, size_t n, unsigned char lo) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < lo || (unsigned char)s[i] > 0x7e)
      return 0;
  return 1;
}

/* An http(s) URL as the SMART code accepts it: printable ASCII without
 * spaces, at most URL_MAX bytes, with a host. no_query: nor "?" or "#"
 * (a base URL that paths are appended to). */
static int url_ok(const char *url, int no_query) {
  size_t n = strlen(url);
  char origin[URL_MAX + 16];
  if (n == 0 || n > URL_MAX || !ascii_range(url, n, 0x21))
    return 0;
  if (no_query && strpbrk(url, "?#"))
    return 0;
  return fhir_url_origin(url, origin, sizeof(origin)) == 0;
}

/* The origin of url for a message: never its path, query or userinfo. */
static void origin_of(const char *url, char *out, size_t len) {
  if (fhir_url_origin(url, out, len) != 0)
    snprintf(out, len, "(invalid URL)");
}

/* ---- secret files ------------------------------------------------------ */

typedef struct secret {
  char *p;    /* NUL-terminated */
  size_t n;   /* bytes used, without the NUL */
  size_t cap; /* bytes allocated */
} secret_t;

static void secret_free(secret_t *s) {
  free_secret(s->p, s->cap);
  s->p = NULL;
  s->n = s->cap = 0;
}

/*
 * The whole file at path into s, at most SECRET_MAX bytes. Returns 0, or
 * -1 with "<setting> <path>: <reason>" in err (the content is never
 * quoted).
 */
static int secret_read(const char *setting, const char *path, secret_t *s,
                       char *err, size_t errlen) {
  memset(s, 0, sizeof(*s));
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    set_err(err, errlen, "%s %s: %s", setting, path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    set_err(err, errlen, "%s %s: %s", setting, path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s %s: not a regular file", setting, path);
    close(fd);
    return -1;
  }
  if (st.st_size > SECRET_MAX) {
    set_err(err, errlen, "%s %s: larger than %d bytes", setting, path,
            SECRET_MAX);
    close(fd);
    return -1;
  }
  s->cap = (size_t)st.st_size + 1;
  s->p = malloc(s->cap);
  if (!s->p) {
    s->cap = 0;
    set_err(err, errlen, "%s %s: out of memory", setting, path);
    close(fd);
    return -1;
  }
  /* Read what fstat said; a file growing meanwhile is cut there. */
  while (s->n + 1 < s->cap) {
    ssize_t r = read(fd, s->p + s->n, s->cap - 1 - s->n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      set_err(err, errlen, "%s %s: %s", setting, path, strerror(errno));
      close(fd);
      secret_free(s);
      return -1;
    }
    if (r == 0)
      break;
    s->n += (size_t)r;
  }
  s->p[s->n] = '\0';
  close(fd);
  return 0;
}

/* Drop trailing line ends ("\n", "\r\n"): a file written by an editor. */
static void secret_chomp(secret_t *s) {
  while (s->n > 0 && (s->p[s->n - 1] == '\n' || s->p[s->n - 1] == '\r'))
    s->p[--s->n] = '\0';
}

/* The password of password_file (one line; any bytes but NUL, CR, LF). */
static int read_password(const fhir_auth_t *a, secret_t *s, char *err,
                         size_t errlen) {
  if (secret_read("auth.password_file", a->password_file, s, err, errlen))
    return -1;
  secret_chomp(s);
  if (s->n == 0 || memchr(s->p, '\0', s->n) || memchr(s->p, '\n', s->n) ||
      memchr(s->p, '\r', s->n)) {
    set_err(err, errlen, "auth.password_file %s: %s", a->password_file,
            s->n == 0 ? "empty" : "not one line (NUL or a line break inside)");
    secret_free(s);
    return -1;
  }
  return 0;
}

/* The token of token_file: it goes into a header line as is. */
static int read_bearer(const fhir_auth_t *a, secret_t *s, char *err,
                       size_t errlen) {
  if (secret_read("auth.token_file", a->token_file, s, err, errlen))
    return -1;
  secret_chomp(s);
  if (s->n == 0 || s->n > TOKEN_MAX || !ascii_range(s->p, s->n, 0x21)) {
    set_err(err, errlen,
            "auth.token_file %s: not a token (1 to %d printable characters "
            "without spaces, on one line)",
            a->token_file, TOKEN_MAX);
    secret_free(s);
    return -1;
  }
  return 0;
}

/* ---- keys -------------------------------------------------------------- */

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return -1;
}

/*
 * The PEM private key in pem suits want (JWT_ALG_RS384 / JWT_ALG_ES384,
 * or JWT_ALG_NONE: either, told by the key), into *alg. Returns 0, or -1
 * with the reason (after "auth.private_key_file <path>: ") in why.
 */
static int check_key(const secret_t *pem, jwt_alg_t want, jwt_alg_t *alg,
                     char *why, size_t whylen) {
  int rc = -1;
  BIO *bio = BIO_new_mem_buf(pem->p, (int)pem->n);
  EVP_PKEY *pkey =
      bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
  if (!pkey) {
    snprintf(why, whylen, "not a PEM private key (or an encrypted one)");
    goto out;
  }
  int id = EVP_PKEY_get_base_id(pkey);
  if (id == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(pkey);
    if (want == JWT_ALG_ES384) {
      snprintf(why, whylen, "an RSA key, but auth.alg is ES384");
      goto out;
    }
    if (bits < 2048) {
      snprintf(why, whylen, "an RSA key of %d bits (RS384 needs 2048 or more)",
               bits);
      goto out;
    }
    *alg = JWT_ALG_RS384;
  } else if (id == EVP_PKEY_EC) {
    char group[64] = "";
    size_t gl = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &gl) != 1)
      snprintf(group, sizeof(group), "(unnamed)");
    if (want == JWT_ALG_RS384) {
      snprintf(why, whylen, "an EC key, but auth.alg is RS384");
      goto out;
    }
    if (strcmp(group, "secp384r1") != 0) {
      snprintf(why, whylen, "an EC key on curve %s (ES384 needs P-384)", group);
      goto out;
    }
    *alg = JWT_ALG_ES384;
  } else {
    const char *name = EVP_PKEY_get0_type_name(pkey);
    snprintf(why, whylen, "a %s key (RS384 needs RSA, ES384 EC P-384)",
             name ? name : "non-RSA, non-EC");
    goto out;
  }
  rc = 0;
out:
  EVP_PKEY_free(pkey);
  BIO_free(bio);
  /* OpenSSL's error queue is per thread and shared with libcurl's TLS. */
  ERR_clear_error();
  return rc;
}

/* ---- client assertion -------------------------------------------------- */

static int jwt_rc(int e) {
  return e == ENOMEM ? PM_ENOMEM : PM_EIO;
}

/*
 * A signed client assertion for aud into *out (a secret: free_secret_str).
 * Reads and checks the key file. Returns 0, PM_EIO (key file unreadable
 * or unusable now, or signing failed) or PM_ENOMEM.
 */
static int make_assertion(const fhir_auth_t *a, const char *aud, int64_t now_us,
                          char **out, char *err, size_t errlen) {
  *out = NULL;
  secret_t key;
  if (secret_read("auth.private_key_file", a->key_file, &key, err, errlen))
    return PM_EIO;
  char why[160];
  jwt_alg_t alg = JWT_ALG_NONE;
  if (check_key(&key, a->alg, &alg, why, sizeof(why)) != 0) {
    set_err(err, errlen, "auth.private_key_file %s: %s", a->key_file, why);
    secret_free(&key);
    return PM_EIO;
  }
  unsigned char rnd[16];
  char jti[2 * sizeof(rnd) + 1];
  if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
    ERR_clear_error();
    set_err(err, errlen, "no random bytes for the assertion's jti");
    secret_free(&key);
    return PM_EIO;
  }
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(jti + 2 * i, 3, "%02x", rnd[i]);

  long now_s = (long)(now_us / US);
  jwt_t *jwt = NULL;
  int e = jwt_new(&jwt);
  if (!e)
    e = jwt_add_grant(jwt, "iss", a->client_id);
  if (!e)
    e = jwt_add_grant(jwt, "sub", a->client_id);
  if (!e)
    e = jwt_add_grant(jwt, "aud", aud);
  if (!e)
    e = jwt_add_grant(jwt, "jti", jti);
  if (!e)
    e = jwt_add_grant_int(jwt, "iat", now_s);
  if (!e)
    e = jwt_add_grant_int(jwt, "exp", now_s + ASSERTION_LIFE_S);
  if (!e && a->key_id)
    e = jwt_add_header(jwt, "kid", a->key_id);
  /* libjwt copies the key and scrubs its copy in jwt_free. */
  if (!e)
    e = jwt_set_alg(jwt, alg, (const unsigned char *)key.p, (int)key.n);
  secret_free(&key);
  if (e) {
    set_err(err, errlen, "auth.private_key_file %s: cannot make a JWT: %s",
            a->key_file, strerror(e));
    jwt_free(jwt);
    return jwt_rc(e);
  }
  errno = 0;
  char *s = jwt_encode_str(jwt);
  e = errno ? errno : EINVAL;
  jwt_free(jwt);
  ERR_clear_error(); /* libjwt signs with OpenSSL */
  if (!s) {
    set_err(err, errlen, "auth.private_key_file %s: signing failed: %s",
            a->key_file, strerror(e));
    return jwt_rc(e);
  }
  *out = s;
  return 0;
}

/* ---- HTTP -------------------------------------------------------------- */

typedef struct body {
  char *p;
  size_t n, cap;
  int too_big;
} body_t;

static void body_free(body_t *b) {
  free_secret(b->p, b->cap);
  memset(b, 0, sizeof(*b));
}

/* Grows by copying, wiping the old buffer: a token answer is a secret,
 * and realloc would leave copies of it behind. */
static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  body_t *b = ud;
  size_t len = size * nmemb;
  if (len > BODY_MAX - b->n) {
    b->too_big = 1;
    return 0;
  }
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + len + 1)
      cap *= 2;
    if (cap > BODY_MAX + 1)
      cap = BODY_MAX + 1;
    char *p = malloc(cap);
    if (!p)
      return 0;
    if (b->n)
      memcpy(p, b->p, b->n);
    free_secret(b->p, b->cap);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, ptr, len);
  b->n += len;
  b->p[b->n] = '\0';
  return len;
}

/*
 * One request: a GET, or a form POST of post (post_len bytes). Returns 0
 * with the HTTP status in *status and the answer in b (body_free), or
 * PM_EUNREACHABLE / PM_EPEER / PM_ENOMEM with "<what> <origin> <reason>"
 * in err.
 */
static int http_call(const fhir_auth_t *a, const char *what, const char *url,
                     const char *post, size_t post_len, long *status, body_t *b,
                     char *err, size_t errlen) {
  char origin[URL_MAX + 16];
  origin_of(url, origin, sizeof(origin));
  memset(b, 0, sizeof(*b));
  *status = 0;
  const char *lines[3];
  size_t nl = 0;
  lines[nl++] = "Accept: application/json";
  if (post) {
    lines[nl++] = "Content-Type: application/x-www-form-urlencoded";
    lines[nl++] = "Expect:";
  }
  CURL *h = curl_easy_init();
  struct curl_slist *hdrs = NULL;
  for (size_t i = 0; h && i < nl; i++) {
    struct curl_slist *t = curl_slist_append(hdrs, lines[i]);
    if (!t) {
      curl_easy_cleanup(h);
      h = NULL;
      break;
    }
    hdrs = t;
  }
  if (!h) {
    curl_slist_free_all(hdrs);
    set_err(err, errlen, "%s %s: out of memory", what, origin);
    return PM_ENOMEM;
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  /* A redirect is an answer like any other (an error here): following it
   * would send the assertion wherever the Location points. */
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, a->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, a->timeout_ms);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (a->ca_file)
    curl_easy_setopt(h, CURLOPT_CAINFO, a->ca_file);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)BODY_MAX);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "portalmetrics-fhir");
  if (post) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    /* Not COPYPOSTFIELDS: curl would keep a copy we cannot wipe. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
  }
  CURLcode c = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  int rc = 0;
  switch (c) {
  case CURLE_OK:
    return 0;
  case CURLE_OUT_OF_MEMORY:
    set_err(err, errlen, "%s %s: out of memory", what, origin);
    rc = PM_ENOMEM;
    break;
  case CURLE_WRITE_ERROR:
  case CURLE_FILESIZE_EXCEEDED:
    if (c == CURLE_FILESIZE_EXCEEDED || b->too_big) {
      set_err(err, errlen, "%s %s answered more than %d bytes", what, origin,
              BODY_MAX);
      rc = PM_EPEER;
    } else {
      set_err(err, errlen, "%s %s: out of memory", what, origin);
      rc = PM_ENOMEM;
    }
    break;
  case CURLE_PARTIAL_FILE:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    set_err(err, errlen, "%s %s answered badly: %s", what, origin,
            curl_easy_strerror(c));
    rc = PM_EPEER;
    break;
  default:
    /* Connecting, TLS, timeouts, resets: the peer was not reached. */
    set_err(err, errlen, "%s %s unreachable: %s", what, origin,
            curl_easy_strerror(c));
    rc = PM_EUNREACHABLE;
    break;
  }
  body_free(b);
  return rc;
}

/* ---- SMART ------------------------------------------------------------- */

/* The token URL into *url (not to be freed): the configured one, else
 * the discovered one, discovering it now when needed. */
static int token_url(fhir_auth_t *a, const char **url, char *err,
                     size_t errlen) {
  if (a->token_url) {
    *url = a->token_url;
    return 0;
  }
  if (a->found_url) {
    *url = a->found_url;
    return 0;
  }
  size_t n = strlen(a->base_url) + sizeof(WELL_KNOWN);
  char *disc = malloc(n);
  if (!disc) {
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  snprintf(disc, n, "%s%s", a->base_url, WELL_KNOWN);
  char origin[URL_MAX + 16];
  origin_of(disc, origin, sizeof(origin));
  long status;
  body_t b;
  int rc = http_call(a, "SMART discovery at", disc, NULL, 0, &status, &b, err,
                     errlen);
  free(disc);
  if (rc)
    return rc;
  if (status != 200) {
    set_err(err, errlen,
            "SMART discovery at %s answered HTTP %ld (no "
            ".well-known/smart-configuration under base_url?)",
            origin, status);
    body_free(&b);
    return PM_EPEER;
  }
  char why[FHIR_TOKEN_ERR_MAX + 1];
  char *found = NULL;
  int pkj = 0;
  if (fhir_smart_config_parse(b.p, b.n, &found, &pkj, why, sizeof(why)) != 0) {
    set_err(err, errlen, "SMART discovery at %s: %s", origin, why);
    body_free(&b);
    return PM_EPEER;
  }
  body_free(&b);
  a->found_url = found;
  a->found_pkj = pkj;
  count(&a->discoveries);
  *url = found;
  return 0;
}

/* Build the form body: every value through curl_easy_escape. */
static char *token_form(const fhir_auth_t *a, const char *assertion,
                        size_t *len) {
  CURL *h = curl_easy_init();
  if (!h)
    return NULL;
  char *scope = curl_easy_escape(h, a->scopes, 0);
  char *type = curl_easy_escape(h, ASSERTION_TYPE, 0);
  char *jwt = curl_easy_escape(h, assertion, 0);
  char *form = NULL;
  if (scope && type && jwt) {
    static const char f[] = "grant_type=client_credentials&scope=%s"
                            "&client_assertion_type=%s&client_assertion=%s";
    size_t n = sizeof(f) + strlen(scope) + strlen(type) + strlen(jwt);
    form = malloc(n);
    if (form) {
      int w = snprintf(form, n, f, scope, type, jwt);
      *len = (size_t)w;
    }
  }
  if (jwt) {
    OPENSSL_cleanse(jwt, strlen(jwt));
    curl_free(jwt);
  }
  curl_free(type);
  curl_free(scope);
  curl_easy_cleanup(h);
  return form;
}

static int mint(fhir_auth_t *a, int64_t now_us, char *err, size_t errlen) {
  const char *url;
  int rc = token_url(a, &url, err, errlen);
  if (rc)
    return rc;
  char origin[URL_MAX + 16];
  origin_of(url, origin, sizeof(origin));
  char *assertion;
  rc = make_assertion(a, url, now_us, &assertion, err, errlen);
  if (rc)
    return rc;
  size_t form_len = 0;
  char *form = token_form(a, assertion, &form_len);
  free_secret_str(assertion);
  if (!form) {
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  long status;
  body_t b;
  rc = http_call(a, "token endpoint", url, form, form_len, &status, &b, err,
                 errlen);
  free_secret(form, form_len);
  if (rc)
    return rc;
  if (status != 200) {
    char text[FHIR_TOKEN_ERR_MAX + 1];
    fhir_token_error_text(b.p, b.n, text, sizeof(text));
    body_free(&b);
    int refused = status == 400 || status == 401 || status == 403;
    /* A server that does not list private_key_jwt may not take it. */
    const char *hint = refused && !a->token_url && !a->found_pkj
                           ? " (its smart-configuration does not list "
                             "private_key_jwt)"
                           : "";
    set_err(err, errlen, "token endpoint %s %s (HTTP %ld): %s%s", origin,
            refused ? "refused the client assertion" : "failed", status, text,
            hint);
    return refused ? PM_EAUTH : PM_EPEER;
  }
  fhir_token_t tok;
  char why[FHIR_TOKEN_ERR_MAX + 1];
  int prc = fhir_token_parse(b.p, b.n, &tok, why, sizeof(why));
  body_free(&b);
  if (prc != 0) {
    fhir_token_free(&tok);
    set_err(err, errlen, "token endpoint %s: %s", origin, why);
    return PM_EPEER;
  }
  int64_t life_s = tok.expires_in > 0 ? tok.expires_in : DEFAULT_LIFE_S;
  if (life_s > MAX_LIFE_S)
    life_s = MAX_LIFE_S;
  free_secret_str(a->token);
  a->token = tok.access_token; /* taken over: fhir_token_free skips it */
  tok.access_token = NULL;
  fhir_token_free(&tok);
  a->token_expiry_us =
      now_us > INT64_MAX - life_s * US ? INT64_MAX : now_us + life_s * US;
  count(&a->minted);
  return 0;
}

static int smart_header(fhir_auth_t *a, int64_t now_us, char **header,
                        char *err, size_t errlen) {
  /* Kept while valid for at least REFRESH_MARGIN_US more. */
  int fresh = a->token && a->token_expiry_us >= INT64_MIN + REFRESH_MARGIN_US &&
              now_us <= a->token_expiry_us - REFRESH_MARGIN_US;
  if (!fresh) {
    free_secret_str(a->token);
    a->token = NULL;
    int rc = mint(a, now_us, err, errlen);
    if (rc) {
      count(&a->failures);
      /* Discover again next time: the token URL may have moved. */
      free(a->found_url);
      a->found_url = NULL;
      return rc;
    }
  }
  static const char pre[] = "Authorization: Bearer ";
  size_t n = sizeof(pre) + strlen(a->token);
  char *h = malloc(n);
  if (!h) {
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  snprintf(h, n, "%s%s", pre, a->token);
  *header = h;
  return 0;
}

/* ---- basic, bearer ----------------------------------------------------- */

static int basic_header(const fhir_auth_t *a, char **header, char *err,
                        size_t errlen) {
  secret_t pw;
  if (read_password(a, &pw, err, errlen))
    return PM_EIO;
  size_t ul = strlen(a->username);
  size_t cl = ul + 1 + pw.n;
  char *cred = malloc(cl + 1);
  static const char pre[] = "Authorization: Basic ";
  size_t hl = sizeof(pre) + 4 * ((cl + 2) / 3);
  char *h = cred ? malloc(hl) : NULL;
  if (!h) {
    free(cred);
    secret_free(&pw);
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  memcpy(cred, a->username, ul);
  cred[ul] = ':';
  memcpy(cred + ul + 1, pw.p, pw.n);
  secret_free(&pw);
  memcpy(h, pre, sizeof(pre) - 1);
  EVP_EncodeBlock((unsigned char *)h + sizeof(pre) - 1,
                  (const unsigned char *)cred, (int)cl);
  free_secret(cred, cl + 1);
  *header = h;
  return 0;
}

static int bearer_header(const fhir_auth_t *a, char **header, char *err,
                         size_t errlen) {
  secret_t tok;
  if (read_bearer(a, &tok, err, errlen))
    return PM_EIO;
  static const char pre[] = "Authorization: Bearer ";
  size_t n = sizeof(pre) + tok.n;
  char *h = malloc(n);
  if (!h) {
    secret_free(&tok);
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  snprintf(h, n, "%s%s", pre, tok.p);
  secret_free(&tok);
  *header = h;
  return 0;
}

/* ---- public ------------------------------------------------------------ */

void fhir_auth_free(fhir_auth_t *a) {
  if (!a)
    return;
  free_secret_str(a->token);
  free(a->base_url);
  free(a->ca_file);
  free(a->username);
  free(a->password_file);
  free(a->token_file);
  free(a->client_id);
  free(a->key_file);
  free(a->key_id);
  free(a->scopes);
  free(a->token_url);
  free(a->found_url);
  free(a);
}

static int empty(const char *s) {
  return !s || !*s;
}

static int check_smart(const fhir_auth_conf_t *c, fhir_auth_t *a, char *err,
                       size_t errlen) {
  if (empty(c->client_id)) {
    set_err(err, errlen, "auth.client_id is needed for auth.type smart");
    return PM_ECONFIG;
  }
  if (strlen(c->client_id) > TEXT_MAX ||
      !ascii_range(c->client_id, strlen(c->client_id), 0x20)) {
    set_err(err, errlen,
            "auth.client_id must be 1 to %d printable ASCII characters",
            TEXT_MAX);
    return PM_ECONFIG;
  }
  if (c->key_id && (empty(c->key_id) || strlen(c->key_id) > TEXT_MAX ||
                    !ascii_range(c->key_id, strlen(c->key_id), 0x21))) {
    set_err(err, errlen,
            "auth.key_id must be 1 to %d printable ASCII characters without "
            "spaces",
            TEXT_MAX);
    return PM_ECONFIG;
  }
  if (c->scopes && (empty(c->scopes) || strlen(c->scopes) > SCOPES_MAX ||
                    !ascii_range(c->scopes, strlen(c->scopes), 0x20))) {
    set_err(err, errlen,
            "auth.scopes must be 1 to %d printable ASCII characters",
            SCOPES_MAX);
    return PM_ECONFIG;
  }
  if (c->token_url && !url_ok(c->token_url, 0)) {
    set_err(err, errlen,
            "auth.token_url must be an http(s) URL of at most %d printable "
            "characters without spaces",
            URL_MAX);
    return PM_ECONFIG;
  }
  if (!c->token_url && empty(c->base_url)) {
    set_err(err, errlen,
            "base_url is needed to discover the token URL (or set "
            "auth.token_url)");
    return PM_ECONFIG;
  }
  jwt_alg_t want = JWT_ALG_NONE;
  if (c->alg) {
    if (strcmp(c->alg, "RS384") == 0)
      want = JWT_ALG_RS384;
    else if (strcmp(c->alg, "ES384") == 0)
      want = JWT_ALG_ES384;
    else {
      set_err(err, errlen, "auth.alg must be RS384 or ES384");
      return PM_ECONFIG;
    }
  }
  if (empty(c->private_key_file)) {
    set_err(err, errlen, "auth.private_key_file is needed for auth.type smart");
    return PM_ECONFIG;
  }
  secret_t key;
  if (secret_read("auth.private_key_file", c->private_key_file, &key, err,
                  errlen))
    return PM_ECONFIG;
  char why[160];
  int krc = check_key(&key, want, &a->alg, why, sizeof(why));
  secret_free(&key);
  if (krc) {
    set_err(err, errlen, "auth.private_key_file %s: %s", c->private_key_file,
            why);
    return PM_ECONFIG;
  }
  if (dup_opt(c->client_id, &a->client_id) ||
      dup_opt(c->private_key_file, &a->key_file) ||
      dup_opt(c->key_id, &a->key_id) ||
      dup_opt(c->scopes ? c->scopes : DEFAULT_SCOPES, &a->scopes) ||
      dup_opt(c->token_url, &a->token_url)) {
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  /* Sign once now, so a key libjwt cannot use fails at startup. */
  char *probe;
  int rc = make_assertion(a, "urn:portalmetrics:probe", 0, &probe, err, errlen);
  if (rc)
    return rc == PM_ENOMEM ? rc : PM_ECONFIG;
  free_secret_str(probe);
  return 0;
}

int fhir_auth_new(const fhir_auth_conf_t *c, fhir_auth_t **out, char *err,
                  size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!out) {
    set_err(err, errlen, "fhir_auth_new: no output");
    return PM_EINVAL;
  }
  *out = NULL;
  if (!c) {
    set_err(err, errlen, "fhir_auth_new: no configuration");
    return PM_EINVAL;
  }
  if ((int)c->type < (int)FHIR_AUTH_NONE ||
      (int)c->type > (int)FHIR_AUTH_SMART) {
    set_err(err, errlen, "auth.type must be none, basic, bearer or smart");
    return PM_EINVAL;
  }
  fhir_auth_t *a = calloc(1, sizeof(*a));
  if (!a) {
    set_err(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  a->type = c->type;
  int64_t t = c->timeout_us > 0 ? c->timeout_us : DEFAULT_TIMEOUT_US;
  a->timeout_ms = t / 1000 > LONG_MAX ? LONG_MAX : (long)((t + 999) / 1000);
  int rc = 0;
  if (c->base_url && c->type == FHIR_AUTH_SMART && !url_ok(c->base_url, 1)) {
    set_err(err, errlen,
            "base_url must be an http(s) URL of at most %d printable "
            "characters, without spaces, \"?\" or \"#\"",
            URL_MAX);
    rc = PM_ECONFIG;
    goto fail;
  }
  if (dup_opt(c->base_url, &a->base_url) || dup_opt(c->ca_file, &a->ca_file)) {
    set_err(err, errlen, "out of memory");
    rc = PM_ENOMEM;
    goto fail;
  }
  if (a->base_url) {
    size_t n = strlen(a->base_url);
    while (n > 0 && a->base_url[n - 1] == '/')
      a->base_url[--n] = '\0';
  }
  if (c->ca_file && access(c->ca_file, R_OK) != 0) {
    set_err(err, errlen, "ca_file %s: %s", c->ca_file, strerror(errno));
    rc = PM_ECONFIG;
    goto fail;
  }
  secret_t s;
  switch (c->type) {
  case FHIR_AUTH_NONE:
    break;
  case FHIR_AUTH_BASIC:
    if (empty(c->username) || strchr(c->username, ':')) {
      set_err(err, errlen,
              "auth.username is needed for auth.type basic, without \":\"");
      rc = PM_ECONFIG;
      goto fail;
    }
    for (const char *p = c->username; *p; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f) {
        set_err(err, errlen, "auth.username holds control characters");
        rc = PM_ECONFIG;
        goto fail;
      }
    if (empty(c->password_file)) {
      set_err(err, errlen, "auth.password_file is needed for auth.type basic");
      rc = PM_ECONFIG;
      goto fail;
    }
    if (dup_opt(c->username, &a->username) ||
        dup_opt(c->password_file, &a->password_file)) {
      set_err(err, errlen, "out of memory");
      rc = PM_ENOMEM;
      goto fail;
    }
    if (read_password(a, &s, err, errlen)) {
      rc = PM_ECONFIG;
      goto fail;
    }
    secret_free(&s);
    break;
  case FHIR_AUTH_BEARER:
    if (empty(c->token_file)) {
      set_err(err, errlen, "auth.token_file is needed for auth.type bearer");
      rc = PM_ECONFIG;
      goto fail;
    }
    if (dup_opt(c->token_file, &a->token_file)) {
      set_err(err, errlen, "out of memory");
      rc = PM_ENOMEM;
      goto fail;
    }
    if (read_bearer(a, &s, err, errlen)) {
      rc = PM_ECONFIG;
      goto fail;
    }
    secret_free(&s);
    break;
  case FHIR_AUTH_SMART:
    rc = check_smart(c, a, err, errlen);
    if (rc)
      goto fail;
    break;
  }
  *out = a;
  return 0;
fail:
  fhir_auth_free(a);
  return rc;
}

int fhir_auth_header(fhir_auth_t *a, int64_t now_us, char **header, char *err,
                     size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!header) {
    set_err(err, errlen, "fhir_auth_header: no output");
    return PM_EINVAL;
  }
  *header = NULL;
  if (!a) {
    set_err(err, errlen, "fhir_auth_header: no state");
    return PM_EINVAL;
  }
  switch (a->type) {
  case FHIR_AUTH_BASIC:
    return basic_header(a, header, err, errlen);
  case FHIR_AUTH_BEARER:
    return bearer_header(a, header, err, errlen);
  case FHIR_AUTH_SMART:
    return smart_header(a, now_us, header, err, errlen);
  case FHIR_AUTH_NONE:
  default:
    return 0;
  }
}

void fhir_auth_invalidate(fhir_auth_t *a) {
  if (!a || a->type != FHIR_AUTH_SMART)
    return;
  free_secret_str(a->token);
  a->token = NULL;
  a->token_expiry_us = 0;
}

void fhir_auth_stats(const fhir_auth_t *a, fhir_auth_stats_t *out) {
  if (!out)
    return;
  memset(out, 0, sizeof(*out));
  if (!a)
    return;
  out->tokens_minted = __atomic_load_n(&a->minted, __ATOMIC_RELAXED);
  out->token_failures = __atomic_load_n(&a->failures, __ATOMIC_RELAXED);
  out->discoveries = __atomic_load_n(&a->discoveries, __ATOMIC_RELAXED);
}

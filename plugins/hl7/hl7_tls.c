/* TLS over memory BIOs for the MLLP listener: see hl7_tls.h. */
#include "hl7_tls.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 keeps its defaults). */
#define HL7_TLS12_CIPHERS                                                      \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                 \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                 \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                 \
  "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"                       \
  "DHE-RSA-CHACHA20-POLY1305"

/* Largest chunk handed to one BIO/SSL call (their lengths are int). */
#define CHUNK_MAX ((size_t)1 << 30)

struct hl7_tls_ctx {
  SSL_CTX *ssl_ctx;
};

struct hl7_tls {
  SSL *ssl;
  BIO *in;             /* ciphertext from the peer (owned by ssl) */
  BIO *out;            /* ciphertext to the peer (owned by ssl) */
  int done;            /* handshake completed */
  int failed;          /* a fatal error: everything but output refused */
  int sent_close;      /* hl7_tls_shutdown called */
  int peer_closed;     /* close_notify received */
  int cn_looked;       /* cn holds the answer of hl7_tls_peer_cn */
  int first;           /* the first byte received, -1 before it */
  unsigned char *pend; /* plaintext written before it could be encrypted */
  size_t pend_off, pend_len, pend_cap;
  char err[192];
  char cn[256];
};

/* ---- errors ---- */

/* The reason of OpenSSL's earliest queued error ("" when none), then the
 * queue is emptied. Returns the packed error code (0: none). */
static unsigned long take_reason(char *buf, size_t len) {
  unsigned long e = ERR_get_error();
  const char *r = NULL;
  if (e != 0)
    r = ERR_reason_error_string(e);
  if (len > 0) {
    if (r != NULL)
      snprintf(buf, len, "%s", r);
    else if (e != 0)
      snprintf(buf, len, "error %lu:%d", (unsigned long)ERR_GET_LIB(e),
               ERR_GET_REASON(e));
    else
      buf[0] = '\0';
  }
  ERR_clear_error();
  return e;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- the listener's context ---- */

/* The file can be opened for reading and is not a directory; else err. */
static int file_readable(const char *what, const char *path, char *err,
                         size_t errlen) {
  struct stat st;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    set_err(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return -1;
  }
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    set_err(err, errlen, "%s %s: %s", what, path, strerror(EISDIR));
    return -1;
  }
  fclose(f);
  return 0;
}

/* Fails the OpenSSL error for a file: "what path: reason". */
static void file_err(const char *what, const char *path, const char *missing,
                     char *err, size_t errlen) {
  char r[128];
  unsigned long e = take_reason(r, sizeof r);
  /* "no start line" (PEM), "unsupported" (the key decoders): nothing of
   * the kind expected is in the file. */
  if ((ERR_GET_LIB(e) == ERR_LIB_PEM &&
       ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ||
      (ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER &&
       ERR_GET_REASON(e) == ERR_R_UNSUPPORTED))
    set_err(err, errlen, "%s %s: %s", what, path, missing);
  else if (e == 0)
    set_err(err, errlen, "%s %s: %s", what, path, missing);
  else
    set_err(err, errlen, "%s %s: %s", what, path, r);
}

/* A key's passphrase is never asked for: a daemon has no terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  if (u != NULL)
    *(int *)u = 1;
  return -1;
}

static int load_key(SSL_CTX *sc, const char *key_file, char *err,
                    size_t errlen) {
  int asked = 0;
  EVP_PKEY *key;
  X509 *cert;
  BIO *b;

  if (file_readable("key_file", key_file, err, errlen) != 0)
    return -1;
  b = BIO_new_file(key_file, "r");
  if (b == NULL) {
    file_err("key_file", key_file, "cannot open", err, errlen);
    return -1;
  }
  key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked);
  BIO_free(b);
  if (key == NULL) {
    if (asked) {
      ERR_clear_error();
      set_err(err, errlen,
              "key_file %s: the key is encrypted (a passphrase is not "
              "supported)",
              key_file);
    } else {
      file_err("key_file", key_file, "no PEM private key found", err, errlen);
    }
    return -1;
  }
  cert = SSL_CTX_get0_certificate(sc);
  if (cert == NULL || !X509_check_private_key(cert, key)) {
    ERR_clear_error();
    EVP_PKEY_free(key);
    set_err(err, errlen, "key_file %s: key does not match the certificate",
            key_file);
    return -1;
  }
  if (SSL_CTX_use_PrivateKey(sc, key) != 1 ||
      SSL_CTX_check_private_key(sc) != 1) {
    EVP_PKEY_free(key);
    file_err("key_file", key_file, "cannot use the key", err, errlen);
    return -1;
  }
  EVP_PKEY_free(key); /* the SSL_CTX holds its own reference */
  return 0;
}

static int load_cas(SSL_CTX *sc, const char *ca_file, int verify_client,
                    char *err, size_t errlen) {
  STACK_OF(X509_NAME) * names;

  if (file_readable("ca_file", ca_file, err, errlen) != 0)
    return -1;
  if (SSL_CTX_load_verify_locations(sc, ca_file, NULL) != 1) {
    file_err("ca_file", ca_file, "no PEM certificate found", err, errlen);
    return -1;
  }
  /* The CA names sent in the CertificateRequest, for the client to pick
   * its certificate. */
  names = SSL_load_client_CA_file(ca_file);
  if (names == NULL) {
    file_err("ca_file", ca_file, "no PEM certificate found", err, errlen);
    return -1;
  }
  SSL_CTX_set_client_CA_list(sc, names); /* takes names */
  SSL_CTX_set_verify(sc,
                     verify_client
                         ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                         : SSL_VERIFY_PEER,
                     NULL);
  return 0;
}

int hl7_tls_ctx_new(const char *cert_file, const char *key_file,
                    const char *ca_file, int verify_client, hl7_tls_ctx_t **out,
                    char *err, size_t errlen) {
  static const unsigned char sid_ctx[] = "portalmetrics-hl7";
  hl7_tls_ctx_t *c;
  SSL_CTX *sc;

  *out = NULL;
  set_err(err, errlen, "%s", "");
  if (cert_file == NULL || *cert_file == '\0') {
    set_err(err, errlen, "cert_file: not set");
    return -1;
  }
  if (key_file == NULL || *key_file == '\0') {
    set_err(err, errlen, "key_file: not set");
    return -1;
  }
  if (ca_file != NULL && *ca_file == '\0')
    ca_file = NULL;
  if (verify_client && ca_file == NULL) {
    set_err(err, errlen,
            "verify_client: needs ca_file (the CAs to verify client "
            "certificates against)");
    return -1;
  }

  ERR_clear_error();
  c = calloc(1, sizeof *c);
  sc = SSL_CTX_new(TLS_server_method());
  if (c == NULL || sc == NULL) {
    free(c);
    SSL_CTX_free(sc);
    ERR_clear_error();
    set_err(err, errlen, "TLS: out of memory");
    return -1;
  }
  c->ssl_ctx = sc;

  if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(sc, HL7_TLS12_CIPHERS) != 1) {
    char r[128];
    take_reason(r, sizeof r);
    set_err(err, errlen, "TLS settings: %s", r);
    goto fail;
  }
  SSL_CTX_set_options(sc, SSL_OP_CIPHER_SERVER_PREFERENCE |
                              SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                              SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(sc, 0); /* TLS 1.3: no tickets at all */
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_session_id_context(sc, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_dh_auto(sc, 1);
  /* Partial writes: hl7_tls_write keeps the rest itself. Buffers are
   * released while a connection is idle. */
  SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE |
                           SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                           SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
  SSL_CTX_set_default_passwd_cb_userdata(sc, NULL);

  if (file_readable("cert_file", cert_file, err, errlen) != 0)
    goto fail;
  if (SSL_CTX_use_certificate_chain_file(sc, cert_file) != 1) {
    file_err("cert_file", cert_file, "no PEM certificate found", err, errlen);
    goto fail;
  }
  if (load_key(sc, key_file, err, errlen) != 0)
    goto fail;
  if (ca_file != NULL && load_cas(sc, ca_file, verify_client, err, errlen) != 0)
    goto fail;

  ERR_clear_error();
  *out = c;
  return 0;

fail:
  ERR_clear_error();
  SSL_CTX_free(sc);
  free(c);
  return -1;
}

void hl7_tls_ctx_free(hl7_tls_ctx_t *c) {
  if (c == NULL)
    return;
  SSL_CTX_free(c->ssl_ctx); /* connections keep their own references */
  free(c);
}

/* ---- a connection ---- */

hl7_tls_t *hl7_tls_new(hl7_tls_ctx_t *c) {
  hl7_tls_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->first = -1;
  ERR_clear_error();
  t->ssl = SSL_new(c->ssl_ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  /* An empty input BIO means "retry later", not end of file. */
  BIO_set_mem_eof_return(t->in, -1);
  BIO_set_mem_eof_return(t->out, -1);
  SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both now */
  SSL_set_accept_state(t->ssl);
  return t;
}

void hl7_tls_free(hl7_tls_t *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl);
  free(t->pend);
  free(t);
  ERR_clear_error();
}

/* Marks t failed after an SSL call returned rc; the reason into t->err. */
static void fail_ssl(hl7_tls_t *t, int rc) {
  int e = SSL_get_error(t->ssl, rc);
  const char *what = t->done ? "TLS error" : "handshake failed";
  char r[128];
  unsigned long code;

  t->failed = 1;
  code = take_reason(r, sizeof r);
  if (e == SSL_ERROR_SSL && ERR_GET_LIB(code) == ERR_LIB_SSL &&
      ERR_GET_REASON(code) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    snprintf(t->err, sizeof t->err, "%s: no client certificate", what);
  } else if (e == SSL_ERROR_SSL && ERR_GET_LIB(code) == ERR_LIB_SSL &&
             ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(t->ssl);
    snprintf(t->err, sizeof t->err, "%s: certificate verify failed (%s)", what,
             X509_verify_cert_error_string(v));
  } else if (r[0] != '\0') {
    /* A client speaking MLLP without TLS is a common misconfiguration. */
    snprintf(t->err, sizeof t->err, "%s: %s%s", what, r,
             !t->done && t->first == 0x0B
                 ? " (plain MLLP from the client, not TLS)"
                 : "");
  } else {
    snprintf(t->err, sizeof t->err, "%s: unexpected error (SSL error %d)", what,
             e);
  }
}

/* Encrypts queued plaintext as far as possible. 0, or -1 (t failed). */
static int flush_pending(hl7_tls_t *t) {
  while (t->pend_off < t->pend_len) {
    size_t n = t->pend_len - t->pend_off, w = 0;
    int rc;
    if (n > CHUNK_MAX)
      n = CHUNK_MAX;
    ERR_clear_error();
    rc = SSL_write_ex(t->ssl, t->pend + t->pend_off, n, &w);
    if (rc != 1) {
      int e = SSL_get_error(t->ssl, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
      }
      fail_ssl(t, rc);
      return -1;
    }
    t->pend_off += w;
  }
  /* All sent: give the memory back (a 1 MiB burst is not kept around). */
  free(t->pend);
  t->pend = NULL;
  t->pend_off = t->pend_len = t->pend_cap = 0;
  return 0;
}

/* Advances the handshake; once done, encrypts what was queued. 0 or -1. */
static int drive(hl7_tls_t *t) {
  if (t->failed)
    return -1;
  if (!t->done) {
    int rc;
    if (t->sent_close)
      return 0;
    ERR_clear_error();
    rc = SSL_do_handshake(t->ssl);
    if (rc != 1) {
      int e = SSL_get_error(t->ssl, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
      }
      fail_ssl(t, rc);
      return -1;
    }
    t->done = 1;
  }
  if (t->pend_len > t->pend_off && !t->peer_closed)
    return flush_pending(t);
  return 0;
}

int hl7_tls_feed(hl7_tls_t *t, const void *p, size_t n) {
  const unsigned char *b = p;
  if (t->failed)
    return -1;
  if (t->peer_closed)
    return 0;
  if (t->first < 0 && n > 0)
    t->first = b[0];
  while (n > 0) {
    int c = (int)(n > CHUNK_MAX ? CHUNK_MAX : n);
    int w;
    ERR_clear_error();
    w = BIO_write(t->in, b, c);
    if (w <= 0) {
      ERR_clear_error();
      t->failed = 1;
      snprintf(t->err, sizeof t->err, "out of memory");
      return -1;
    }
    b += w;
    n -= (size_t)w;
  }
  return drive(t);
}

long hl7_tls_read(hl7_tls_t *t, void *buf, size_t len) {
  size_t got = 0;
  int rc;
  if (t->failed)
    return -1;
  if (t->peer_closed)
    return -2;
  if (drive(t) != 0)
    return -1;
  if (!t->done || len == 0)
    return 0;
  if (len > CHUNK_MAX)
    len = CHUNK_MAX;
  ERR_clear_error();
  rc = SSL_read_ex(t->ssl, buf, len, &got);
  if (rc == 1)
    return (long)got;
  switch (SSL_get_error(t->ssl, rc)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    ERR_clear_error();
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    ERR_clear_error();
    t->peer_closed = 1;
    return -2;
  default:
    fail_ssl(t, rc);
    return -1;
  }
}

int hl7_tls_write(hl7_tls_t *t, const void *p, size_t n) {
  if (t->failed || t->sent_close)
    return -1;
  if (n == 0)
    return 0;
  /* Straight to SSL when nothing waits before it. */
  if (t->done && t->pend_off == t->pend_len) {
    while (n > 0) {
      size_t c = n > CHUNK_MAX ? CHUNK_MAX : n, w = 0;
      int rc;
      ERR_clear_error();
      rc = SSL_write_ex(t->ssl, p, c, &w);
      if (rc != 1) {
        int e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
          ERR_clear_error();
          break; /* the rest is queued below */
        }
        fail_ssl(t, rc);
        return -1;
      }
      p = (const unsigned char *)p + w;
      n -= w;
    }
    if (n == 0)
      return 0;
  }
  if (t->pend_cap - t->pend_len < n) {
    size_t live = t->pend_len - t->pend_off, cap;
    unsigned char *nb;
    /* Drop what was sent before growing. */
    if (t->pend_off > 0) {
      memmove(t->pend, t->pend + t->pend_off, live);
      t->pend_off = 0;
      t->pend_len = live;
    }
    if (t->pend_cap - t->pend_len < n) {
      if (n > SIZE_MAX / 2 - live) {
        t->failed = 1;
        snprintf(t->err, sizeof t->err, "out of memory");
        return -1;
      }
      cap = t->pend_cap ? t->pend_cap : 4096;
      while (cap - live < n)
        cap *= 2;
      nb = realloc(t->pend, cap);
      if (nb == NULL) {
        t->failed = 1;
        snprintf(t->err, sizeof t->err, "out of memory");
        return -1;
      }
      t->pend = nb;
      t->pend_cap = cap;
    }
  }
  memcpy(t->pend + t->pend_len, p, n);
  t->pend_len += n;
  return drive(t);
}

size_t hl7_tls_take_output(hl7_tls_t *t, void *buf, size_t len) {
  int n;
  if (len == 0)
    return 0;
  if (len > CHUNK_MAX)
    len = CHUNK_MAX;
  n = BIO_read(t->out, buf, (int)len);
  ERR_clear_error();
  return n > 0 ? (size_t)n : 0;
}

size_t hl7_tls_output_pending(const hl7_tls_t *t) {
  return BIO_ctrl_pending(t->out);
}

void hl7_tls_shutdown(hl7_tls_t *t) {
  if (t->sent_close)
    return;
  if (t->done && !t->failed) {
    if (!t->peer_closed)
      flush_pending(t);
    if (!t->failed) {
      ERR_clear_error();
      (void)SSL_shutdown(t->ssl); /* queues our close_notify */
      ERR_clear_error();
    }
  }
  t->sent_close = 1;
}

int hl7_tls_handshake_done(const hl7_tls_t *t) {
  return t->done && !t->failed;
}

const char *hl7_tls_error(const hl7_tls_t *t) {
  return t->err;
}

/* The last CN of the subject, as UTF-8, control characters replaced. */
static void subject_cn(X509 *x, char *buf, size_t len) {
  X509_NAME *name = X509_get_subject_name(x);
  int i = -1, last = -1;
  unsigned char *utf8 = NULL;
  int n;
  size_t j;

  buf[0] = '\0';
  while ((i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0)
    last = i;
  if (last < 0)
    return;
  n = ASN1_STRING_to_UTF8(
      &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last)));
  if (n < 0) {
    ERR_clear_error();
    return;
  }
  for (j = 0; j < (size_t)n && j + 1 < len; j++) {
    unsigned char ch = utf8[j];
    buf[j] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
  }
  if (j < (size_t)n) /* cut: not inside a UTF-8 sequence */
    while (j > 0 && ((unsigned char)utf8[j] & 0xc0) == 0x80)
      j--;
  buf[j] = '\0';
  OPENSSL_free(utf8);
}

const char *hl7_tls_peer_cn(hl7_tls_t *t) {
  if (!t->done || t->failed)
    return NULL;
  if (!t->cn_looked) {
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    t->cn[0] = '\0';
    if (peer != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK)
      subject_cn(peer, t->cn, sizeof t->cn);
    t->cn_looked = 1;
  }
  return t->cn[0] != '\0' ? t->cn : NULL;
}

/*
 * plugins/hl7/hl7_tls: TLS over memory BIOs, against an OpenSSL client
 * (memory BIOs too) written here. The keys and certificates are made at
 * start with the OpenSSL API into a mkdtemp folder: a CA, a server and a
 * client certificate signed by it, a client certificate of another CA.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hl7_tls.h"

/* ---- keys and certificates ---- */

static char g_dir[64];
static char g_path[16][320];
static int g_npath;

static const char *path_of(const char *name) {
  static char buf[320];
  snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
  return buf;
}

/* Remembers a file made in g_dir, for the teardown. */
static const char *remember(const char *name) {
  assert_true(g_npath < 16);
  snprintf(g_path[g_npath], sizeof g_path[0], "%s/%s", g_dir, name);
  return g_path[g_npath++];
}

static EVP_PKEY *keygen(void) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  assert_non_null(k);
  return k;
}

static void add_ext(X509 *x, X509V3_CTX *v, int nid, const char *value) {
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v, nid, value);
  assert_non_null(e);
  assert_int_equal(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (NULL: self-signed CA). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key, const char *eku, long serial) {
  X509 *x = X509_new();
  X509_NAME *name;
  X509V3_CTX v;

  assert_non_null(x);
  assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
  assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
  assert_int_equal(X509_set_pubkey(x, key), 1);
  name = X509_get_subject_name(x);
  assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                              (const unsigned char *)"Test", -1,
                                              -1, 0),
                   1);
  assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                              (const unsigned char *)cn, -1, -1,
                                              0),
                   1);
  assert_int_equal(
      X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name),
      1);
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
  add_ext(x, &v, NID_subject_key_identifier, "hash");
  add_ext(x, &v, NID_authority_key_identifier, "keyid:always");
  if (issuer == NULL) {
    add_ext(x, &v, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, &v, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, &v, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, &v, NID_key_usage, "critical,digitalSignature");
    add_ext(x, &v, NID_ext_key_usage, eku);
  }
  assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

static void write_cert(const char *name, X509 *x) {
  FILE *f = fopen(remember(name), "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, x), 1);
  assert_int_equal(fclose(f), 0);
}

static void write_key(const char *name, EVP_PKEY *k, const char *pass) {
  FILE *f = fopen(remember(name), "w");
  assert_non_null(f);
  if (pass != NULL)
    assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(),
                                          (const unsigned char *)pass,
                                          (int)strlen(pass), NULL, NULL),
                     1);
  else
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  assert_int_equal(fclose(f), 0);
}

/* One file with the chain and the key, as some sites keep them. */
static void write_bundle(const char *name, X509 *leaf, X509 *ca, EVP_PKEY *k) {
  FILE *f = fopen(remember(name), "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, leaf), 1);
  assert_int_equal(PEM_write_X509(f, ca), 1);
  assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  assert_int_equal(fclose(f), 0);
}

static void write_text(const char *name, const char *text) {
  FILE *f = fopen(remember(name), "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static int group_setup(void **state) {
  EVP_PKEY *ca_key, *srv_key, *cli_key, *other_ca_key, *other_key, *stray;
  X509 *ca, *srv, *cli, *other_ca, *other, *cli_utf8;

  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/test_hl7_tls.XXXXXX");
  if (mkdtemp(g_dir) == NULL)
    return -1;

  ca_key = keygen();
  srv_key = keygen();
  cli_key = keygen();
  other_ca_key = keygen();
  other_key = keygen();
  stray = keygen();
  ca = make_cert("Test CA", ca_key, NULL, NULL, NULL, 1);
  srv = make_cert("hl7.test", srv_key, ca, ca_key, "serverAuth", 2);
  cli = make_cert("lab-interface-01", cli_key, ca, ca_key, "clientAuth", 3);
  cli_utf8 =
      make_cert("Mirth \xc3\xa9\x01line", cli_key, ca, ca_key, "clientAuth", 4);
  other_ca = make_cert("Other CA", other_ca_key, NULL, NULL, NULL, 1);
  other = make_cert("lab-interface-01", other_key, other_ca, other_ca_key,
                    "clientAuth", 2);

  write_cert("ca.pem", ca);
  write_cert("server.pem", srv);
  write_key("server.key", srv_key, NULL);
  write_cert("client.pem", cli);
  write_key("client.key", cli_key, NULL);
  write_cert("client-utf8.pem", cli_utf8);
  write_cert("other.pem", other);
  write_key("other.key", other_key, NULL);
  write_key("stray.key", stray, NULL);
  write_key("encrypted.key", srv_key, "secret");
  write_text("garbage.pem", "this is not PEM\n");
  write_bundle("bundle.pem", srv, ca, srv_key);

  X509_free(ca);
  X509_free(srv);
  X509_free(cli);
  X509_free(cli_utf8);
  X509_free(other_ca);
  X509_free(other);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(srv_key);
  EVP_PKEY_free(cli_key);
  EVP_PKEY_free(other_ca_key);
  EVP_PKEY_free(other_key);
  EVP_PKEY_free(stray);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  for (int i = 0; i < g_npath; i++)
    unlink(g_path[i]);
  rmdir(g_dir);
  return 0;
}

/* ---- the server context ---- */

static hl7_tls_ctx_t *server_ctx(const char *ca, int verify_client) {
  hl7_tls_ctx_t *c = NULL;
  char err[256];
  char cert[320], key[320], cafile[320];
  snprintf(cert, sizeof cert, "%s", path_of("server.pem"));
  snprintf(key, sizeof key, "%s", path_of("server.key"));
  if (ca != NULL)
    snprintf(cafile, sizeof cafile, "%s", path_of(ca));
  if (hl7_tls_ctx_new(cert, key, ca ? cafile : NULL, verify_client, &c, err,
                      sizeof err) != 0)
    fail_msg("hl7_tls_ctx_new: %s", err);
  assert_non_null(c);
  return c;
}

/* ---- the client, and the wire between them ---- */

typedef struct buf {
  unsigned char *p;
  size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

typedef struct session {
  SSL_CTX *cctx;
  SSL *cssl;
  BIO *cin, *cout; /* the client's network side */
  hl7_tls_ctx_t *sctx;
  hl7_tls_t *srv;
  buf_t at_server, at_client; /* plaintext each side received */
  int server_rc;              /* last failure of the server: -1, -2, 0 */
  int client_failed;
  int client_closed;     /* the client read close_notify */
  size_t feed_chunk;     /* bytes per hl7_tls_feed (0: all at once) */
  size_t read_len;       /* buffer of hl7_tls_read */
  unsigned long cli_err; /* the client's OpenSSL error */
} session_t;

enum { CLI_DEFAULT = 0, CLI_TLS12 = 1, CLI_TLS10 = 2 };

static void client_init(session_t *s, const char *cert, const char *key,
                        int mode) {
  s->cctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(s->cctx);
  if (mode == CLI_TLS12) {
    SSL_CTX_set_min_proto_version(s->cctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(s->cctx, TLS1_2_VERSION);
  } else if (mode == CLI_TLS10) {
    SSL_CTX_set_security_level(s->cctx, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(s->cctx, "DEFAULT:@SECLEVEL=0"),
                     1);
    SSL_CTX_set_min_proto_version(s->cctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(s->cctx, TLS1_VERSION);
  }
  /* The client checks the server's certificate against the CA. */
  assert_int_equal(
      SSL_CTX_load_verify_locations(s->cctx, path_of("ca.pem"), NULL), 1);
  SSL_CTX_set_verify(s->cctx, SSL_VERIFY_PEER, NULL);
  if (cert != NULL) {
    assert_int_equal(SSL_CTX_use_certificate_chain_file(s->cctx, path_of(cert)),
                     1);
    assert_int_equal(
        SSL_CTX_use_PrivateKey_file(s->cctx, path_of(key), SSL_FILETYPE_PEM),
        1);
  }
  s->cssl = SSL_new(s->cctx);
  assert_non_null(s->cssl);
  s->cin = BIO_new(BIO_s_mem());
  s->cout = BIO_new(BIO_s_mem());
  assert_non_null(s->cin);
  assert_non_null(s->cout);
  BIO_set_mem_eof_return(s->cin, -1);
  SSL_set_bio(s->cssl, s->cin, s->cout);
  SSL_set_connect_state(s->cssl);
}

static void session_open(session_t *s, const char *ca, int verify_client,
                         const char *cert, const char *key, int mode) {
  memset(s, 0, sizeof *s);
  s->read_len = 16384;
  client_init(s, cert, key, mode);
  s->sctx = server_ctx(ca, verify_client);
  s->srv = hl7_tls_new(s->sctx);
  assert_non_null(s->srv);
}

static void session_close(session_t *s) {
  hl7_tls_free(s->srv);
  hl7_tls_ctx_free(s->sctx);
  SSL_free(s->cssl);
  SSL_CTX_free(s->cctx);
  free(s->at_server.p);
  free(s->at_client.p);
  ERR_clear_error();
}

/* Server side: reads all the plaintext ready. */
static int server_read_all(session_t *s) {
  unsigned char *rb = malloc(s->read_len);
  int moved = 0;
  long r;
  assert_non_null(rb);
  while ((r = hl7_tls_read(s->srv, rb, s->read_len)) > 0) {
    assert_true((size_t)r <= s->read_len);
    buf_add(&s->at_server, rb, (size_t)r);
    moved = 1;
  }
  if (r < 0)
    s->server_rc = (int)r;
  free(rb);
  return moved;
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(session_t *s) {
  unsigned char b[4096];
  int progress = 1, rounds = 0;

  while (progress) {
    int n;
    size_t m;
    progress = 0;
    assert_true(++rounds < 100000);

    /* client -> server */
    while ((n = BIO_read(s->cout, b, sizeof b)) > 0) {
      size_t chunk = s->feed_chunk ? s->feed_chunk : (size_t)n;
      progress = 1;
      for (size_t off = 0; off < (size_t)n; off += chunk) {
        size_t k = (size_t)n - off < chunk ? (size_t)n - off : chunk;
        if (hl7_tls_feed(s->srv, b + off, k) != 0) {
          s->server_rc = -1;
          break;
        }
        if (s->feed_chunk)
          server_read_all(s);
      }
    }
    if (server_read_all(s))
      progress = 1;

    /* server -> client */
    while ((m = hl7_tls_take_output(s->srv, b, sizeof b)) > 0) {
      assert_true(m <= sizeof b);
      assert_int_equal(BIO_write(s->cin, b, (int)m), (int)m);
      progress = 1;
    }
    assert_int_equal(hl7_tls_output_pending(s->srv), 0);

    /* the client */
    if (!s->client_failed && !s->client_closed) {
      if (!SSL_is_init_finished(s->cssl)) {
        int rc = SSL_do_handshake(s->cssl);
        if (rc != 1) {
          int e = SSL_get_error(s->cssl, rc);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            s->client_failed = 1;
            s->cli_err = ERR_peek_last_error();
            ERR_clear_error();
          }
        }
      }
      if (SSL_is_init_finished(s->cssl) && !s->client_failed) {
        for (;;) {
          size_t got = 0;
          int rc = SSL_read_ex(s->cssl, b, sizeof b, &got);
          if (rc == 1) {
            buf_add(&s->at_client, b, got);
            progress = 1;
            continue;
          }
          int e = SSL_get_error(s->cssl, rc);
          if (e == SSL_ERROR_ZERO_RETURN) {
            s->client_closed = 1;
          } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            s->client_failed = 1;
            s->cli_err = ERR_peek_last_error();
            ERR_clear_error();
          }
          break;
        }
      }
    }
    if (BIO_ctrl_pending(s->cout) > 0)
      progress = 1;
  }
}

static void client_send(session_t *s, const void *p, size_t n) {
  size_t w = 0;
  assert_int_equal(SSL_write_ex(s->cssl, p, n, &w), 1);
  assert_int_equal(w, n);
}

static void handshake_ok(session_t *s) {
  pump(s);
  if (s->server_rc != 0)
    fail_msg("server failed: %s", hl7_tls_error(s->srv));
  assert_false(s->client_failed);
  assert_true(SSL_is_init_finished(s->cssl));
  assert_int_equal(hl7_tls_handshake_done(s->srv), 1);
  assert_string_equal(hl7_tls_error(s->srv), "");
}

static const char HL7_MSG[] =
    "\x0bMSH|^~\\&|LAB|NORTH|PORTAL|HOSP|20240501120000||ORU^R01^ORU_R01|"
    "MSG00001|P|2.5.1\rPID|1||123456^^^HOSP^MR||DOE^JANE\r"
    "OBR|1||LAB1|CBC|||20240501115500||||||||||||||||F\r"
    "OBX|1|NM|WBC||7.2|10*9/L|4.0-11.0|N|||F\r\x1c\x0d";
static const char HL7_ACK[] = "\x0bMSH|^~\\&|PORTAL|HOSP|LAB|NORTH|"
                              "20240501120001||ACK^R01|A1|P|2.5.1\r"
                              "MSA|AA|MSG00001\r\x1c\x0d";

static void exchange_message(session_t *s) {
  size_t before_srv = s->at_server.len, before_cli = s->at_client.len;
  client_send(s, HL7_MSG, sizeof HL7_MSG - 1);
  pump(s);
  assert_int_equal(s->server_rc, 0);
  assert_int_equal(s->at_server.len - before_srv, sizeof HL7_MSG - 1);
  assert_memory_equal(s->at_server.p + before_srv, HL7_MSG, sizeof HL7_MSG - 1);

  assert_int_equal(hl7_tls_write(s->srv, HL7_ACK, sizeof HL7_ACK - 1), 0);
  pump(s);
  assert_false(s->client_failed);
  assert_int_equal(s->at_client.len - before_cli, sizeof HL7_ACK - 1);
  assert_memory_equal(s->at_client.p + before_cli, HL7_ACK, sizeof HL7_ACK - 1);
}

/* ---- tests ---- */

static void test_handshake_and_message(void **state) {
  session_t s;
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  assert_int_equal(hl7_tls_handshake_done(s.srv), 0);
  assert_null(hl7_tls_peer_cn(s.srv));
  assert_int_equal(hl7_tls_read(s.srv, (char[8]){0}, 8), 0); /* no data */
  handshake_ok(&s);
  assert_int_equal(SSL_version(s.cssl), TLS1_3_VERSION);
  assert_null(hl7_tls_peer_cn(s.srv)); /* no client certificate asked */
  exchange_message(&s);
  exchange_message(&s);
  /* No session tickets were issued. */
  assert_int_equal(SSL_SESSION_has_ticket(SSL_get0_session(s.cssl)), 0);
  session_close(&s);
}

static void test_tls12(void **state) {
  session_t s;
  (void)state;
  session_open(&s, "ca.pem", 1, "client.pem", "client.key", CLI_TLS12);
  handshake_ok(&s);
  assert_int_equal(SSL_version(s.cssl), TLS1_2_VERSION);
  assert_string_equal(hl7_tls_peer_cn(s.srv), "lab-interface-01");
  /* An ECDHE AEAD suite, no compression, no ticket. */
  const char *cipher = SSL_get_cipher_name(s.cssl);
  assert_non_null(strstr(cipher, "ECDHE"));
  assert_true(strstr(cipher, "GCM") || strstr(cipher, "CHACHA20"));
  assert_null(SSL_get_current_compression(s.cssl));
  exchange_message(&s);
  assert_int_equal(SSL_SESSION_has_ticket(SSL_get0_session(s.cssl)), 0);

  /* The client asks to renegotiate: the server answers no_renegotiation
   * (the client then gives up the connection); no second handshake. */
  assert_int_equal(SSL_renegotiate(s.cssl), 1);
  pump(&s);
  assert_true(s.client_failed);
  assert_int_equal(ERR_GET_REASON(s.cli_err), SSL_R_NO_RENEGOTIATION);
  assert_int_equal(s.server_rc, -1);
  assert_non_null(strstr(hl7_tls_error(s.srv), "TLS error: "));
  session_close(&s);
}

static void test_byte_by_byte(void **state) {
  session_t s;
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  s.feed_chunk = 1;
  s.read_len = 1;
  handshake_ok(&s);
  exchange_message(&s);
  s.read_len = 7;
  exchange_message(&s);
  session_close(&s);
}

static void test_write_before_handshake(void **state) {
  session_t s;
  long r;
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  /* Queued: nothing to send yet (no ClientHello came). */
  assert_int_equal(hl7_tls_write(s.srv, HL7_ACK, sizeof HL7_ACK - 1), 0);
  assert_int_equal(hl7_tls_output_pending(s.srv), 0);
  r = hl7_tls_read(s.srv, (char[8]){0}, 8);
  assert_int_equal(r, 0);
  handshake_ok(&s);
  assert_int_equal(s.at_client.len, sizeof HL7_ACK - 1);
  assert_memory_equal(s.at_client.p, HL7_ACK, sizeof HL7_ACK - 1);
  session_close(&s);
}

static void test_one_mib(void **state) {
  session_t s;
  size_t n = 1024 * 1024;
  unsigned char *big = malloc(n);
  (void)state;
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (unsigned char)(i * 131 + (i >> 9));
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  handshake_ok(&s);

  client_send(&s, big, n);
  pump(&s);
  assert_int_equal(s.server_rc, 0);
  assert_int_equal(s.at_server.len, n);
  assert_memory_equal(s.at_server.p, big, n);

  assert_int_equal(hl7_tls_write(s.srv, big, n), 0);
  assert_true(hl7_tls_output_pending(s.srv) > n);
  pump(&s);
  assert_false(s.client_failed);
  assert_int_equal(s.at_client.len, n);
  assert_memory_equal(s.at_client.p, big, n);
  free(big);
  session_close(&s);
}

static void test_client_cert_good(void **state) {
  session_t s;
  const char *cn;
  (void)state;
  session_open(&s, "ca.pem", 1, "client.pem", "client.key", CLI_DEFAULT);
  handshake_ok(&s);
  cn = hl7_tls_peer_cn(s.srv);
  assert_non_null(cn);
  assert_string_equal(cn, "lab-interface-01");
  assert_ptr_equal(hl7_tls_peer_cn(s.srv), cn); /* cached */
  exchange_message(&s);
  session_close(&s);
}

static void test_client_cn_sanitized(void **state) {
  session_t s;
  (void)state;
  session_open(&s, "ca.pem", 1, "client-utf8.pem", "client.key", CLI_DEFAULT);
  handshake_ok(&s);
  assert_string_equal(hl7_tls_peer_cn(s.srv), "Mirth \xc3\xa9?line");
  session_close(&s);
}

static void test_client_cert_optional(void **state) {
  session_t s;
  (void)state;
  /* ca_file without verify_client: no certificate is fine... */
  session_open(&s, "ca.pem", 0, NULL, NULL, CLI_DEFAULT);
  handshake_ok(&s);
  assert_null(hl7_tls_peer_cn(s.srv));
  exchange_message(&s);
  session_close(&s);
  /* ...a good one is verified and named... */
  session_open(&s, "ca.pem", 0, "client.pem", "client.key", CLI_DEFAULT);
  handshake_ok(&s);
  assert_string_equal(hl7_tls_peer_cn(s.srv), "lab-interface-01");
  session_close(&s);
  /* ...a bad one is refused. */
  session_open(&s, "ca.pem", 0, "other.pem", "other.key", CLI_DEFAULT);
  pump(&s);
  assert_int_equal(s.server_rc, -1);
  assert_non_null(strstr(hl7_tls_error(s.srv), "certificate verify failed"));
  session_close(&s);
}

static void expect_server_failure(session_t *s, const char *needle) {
  const char *e = hl7_tls_error(s->srv);
  unsigned char b[64];
  assert_int_equal(s->server_rc, -1);
  assert_int_equal(hl7_tls_handshake_done(s->srv), 0);
  assert_null(hl7_tls_peer_cn(s->srv));
  print_message("server: %s\n", e);
  if (strstr(e, needle) == NULL)
    fail_msg("error \"%s\" does not mention \"%s\"", e, needle);
  assert_null(strchr(e, '\n'));
  /* Failed for good; the alert was taken by pump. */
  assert_int_equal(hl7_tls_feed(s->srv, "x", 1), -1);
  assert_int_equal(hl7_tls_read(s->srv, b, sizeof b), -1);
  assert_int_equal(hl7_tls_write(s->srv, "x", 1), -1);
  assert_int_equal(hl7_tls_take_output(s->srv, b, sizeof b), 0);
  hl7_tls_shutdown(s->srv);
  assert_int_equal(hl7_tls_take_output(s->srv, b, sizeof b), 0);
}

static void test_client_cert_missing(void **state) {
  session_t s;
  (void)state;
  session_open(&s, "ca.pem", 1, NULL, NULL, CLI_DEFAULT);
  pump(&s);
  expect_server_failure(&s, "certificate");
  assert_string_equal(hl7_tls_error(s.srv),
                      "handshake failed: no client certificate");
  /* The client learned it through the alert. */
  assert_true(s.client_failed);
  session_close(&s);

  /* TLS 1.2 too. */
  session_open(&s, "ca.pem", 1, NULL, NULL, CLI_TLS12);
  pump(&s);
  expect_server_failure(&s, "no client certificate");
  assert_true(s.client_failed);
  session_close(&s);
}

static void test_client_cert_other_ca(void **state) {
  session_t s;
  (void)state;
  session_open(&s, "ca.pem", 1, "other.pem", "other.key", CLI_DEFAULT);
  pump(&s);
  expect_server_failure(&s, "certificate verify failed");
  assert_true(s.client_failed);
  session_close(&s);
}

static void test_garbage(void **state) {
  static const char *junk[] = {
      HL7_MSG, /* a plain MLLP client on the TLS port */
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "\x16\x03\x01\xff\xff\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
      "\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00",
  };
  (void)state;
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    hl7_tls_ctx_t *c = server_ctx(NULL, 0);
    hl7_tls_t *t = hl7_tls_new(c);
    unsigned char b[256];
    int rc;
    assert_non_null(t);
    rc = hl7_tls_feed(t, junk[i], strlen(junk[i]));
    print_message("junk %zu: %d %s\n", i, rc, hl7_tls_error(t));
    if (rc == 0) /* not enough to judge yet: then the socket closes */
      assert_int_equal(hl7_tls_read(t, b, sizeof b), 0);
    else {
      assert_int_equal(rc, -1);
      assert_true(strncmp(hl7_tls_error(t), "handshake failed: ", 18) == 0);
      assert_true(strlen(hl7_tls_error(t)) > 18);
      assert_int_equal(hl7_tls_read(t, b, sizeof b), -1);
    }
    while (hl7_tls_take_output(t, b, sizeof b) > 0)
      ;
    hl7_tls_free(t);
    hl7_tls_ctx_free(c);
  }

  /* Random bytes, fed in pieces: refused, never accepted. */
  {
    hl7_tls_ctx_t *c = server_ctx(NULL, 0);
    hl7_tls_t *t = hl7_tls_new(c);
    unsigned char b[4096];
    unsigned x = 12345;
    int rc = 0;
    for (size_t i = 0; i < sizeof b; i++) {
      x = x * 1103515245u + 12345u;
      b[i] = (unsigned char)(x >> 16);
    }
    for (size_t off = 0; off < sizeof b && rc == 0; off += 100)
      rc = hl7_tls_feed(t, b + off, 100);
    assert_int_equal(rc, -1);
    print_message("random: %s\n", hl7_tls_error(t));
    assert_true(strlen(hl7_tls_error(t)) > 0);
    while (hl7_tls_take_output(t, b, sizeof b) > 0)
      ;
    hl7_tls_free(t);
    hl7_tls_ctx_free(c);
  }
}

static void test_plain_mllp_error(void **state) {
  hl7_tls_ctx_t *c;
  hl7_tls_t *t;
  (void)state;
  c = server_ctx(NULL, 0);
  t = hl7_tls_new(c);
  assert_int_equal(hl7_tls_feed(t, HL7_MSG, sizeof HL7_MSG - 1), -1);
  assert_string_equal(hl7_tls_error(t),
                      "handshake failed: wrong version number (plain MLLP "
                      "from the client, not TLS)");
  /* Says why, never repeats what was sent. */
  assert_null(strstr(hl7_tls_error(t), "MSH"));
  assert_null(strstr(hl7_tls_error(t), "DOE"));
  hl7_tls_free(t);
  hl7_tls_ctx_free(c);
}

static void test_tampered_record(void **state) {
  session_t s;
  unsigned char b[1024];
  size_t n, m;
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  handshake_ok(&s);
  client_send(&s, HL7_MSG, sizeof HL7_MSG - 1);
  n = (size_t)BIO_read(s.cout, b, sizeof b);
  assert_true(n > 40);
  b[n - 20] ^= 0x40; /* inside the ciphertext */
  assert_int_equal(hl7_tls_feed(s.srv, b, n), 0);
  assert_int_equal(hl7_tls_read(s.srv, b, sizeof b), -1);
  print_message("tampered: %s\n", hl7_tls_error(s.srv));
  assert_true(strncmp(hl7_tls_error(s.srv), "TLS error: ", 11) == 0);
  assert_int_equal(hl7_tls_handshake_done(s.srv), 0);
  m = hl7_tls_take_output(s.srv, b, sizeof b); /* the alert */
  assert_true(m > 0);
  assert_int_equal(BIO_write(s.cin, b, (int)m), (int)m);
  assert_true(SSL_read(s.cssl, b, sizeof b) <= 0); /* refused too */
  ERR_clear_error();
  session_close(&s);
}

static void test_tls10_refused(void **state) {
  session_t s;
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_TLS10);
  pump(&s);
  expect_server_failure(&s, "handshake failed: ");
  assert_non_null(strstr(hl7_tls_error(s.srv), "protocol"));
  assert_true(s.client_failed);
  session_close(&s);
}

static void test_client_closes(void **state) {
  session_t s;
  unsigned char b[64];
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  handshake_ok(&s);
  client_send(&s, HL7_MSG, sizeof HL7_MSG - 1);
  assert_int_equal(SSL_shutdown(s.cssl), 0); /* close_notify sent */
  pump(&s);
  /* The data before the close_notify, then -2. */
  assert_int_equal(s.at_server.len, sizeof HL7_MSG - 1);
  assert_int_equal(s.server_rc, -2);
  assert_int_equal(hl7_tls_read(s.srv, b, sizeof b), -2);
  assert_int_equal(hl7_tls_feed(s.srv, "junk", 4), 0); /* ignored */
  assert_int_equal(hl7_tls_read(s.srv, b, sizeof b), -2);
  assert_string_equal(hl7_tls_error(s.srv), "");
  /* We answer with ours. */
  hl7_tls_shutdown(s.srv);
  pump(&s);
  assert_int_equal(SSL_get_shutdown(s.cssl) & SSL_RECEIVED_SHUTDOWN,
                   SSL_RECEIVED_SHUTDOWN);
  session_close(&s);
}

static void test_server_closes(void **state) {
  session_t s;
  unsigned char b[64];
  (void)state;
  session_open(&s, NULL, 0, NULL, NULL, CLI_DEFAULT);
  handshake_ok(&s);
  assert_int_equal(hl7_tls_write(s.srv, HL7_ACK, sizeof HL7_ACK - 1), 0);
  hl7_tls_shutdown(s.srv);
  hl7_tls_shutdown(s.srv); /* idempotent */
  assert_int_equal(hl7_tls_write(s.srv, "x", 1), -1);
  pump(&s);
  assert_int_equal(s.at_client.len, sizeof HL7_ACK - 1);
  assert_true(s.client_closed);
  /* The client answers: the server reads -2. */
  assert_int_equal(SSL_shutdown(s.cssl), 1);
  pump(&s);
  assert_int_equal(s.server_rc, -2);
  assert_int_equal(hl7_tls_read(s.srv, b, sizeof b), -2);
  session_close(&s);
}

static void test_shutdown_before_handshake(void **state) {
  hl7_tls_ctx_t *c = server_ctx(NULL, 0);
  hl7_tls_t *t = hl7_tls_new(c);
  unsigned char b[64];
  (void)state;
  hl7_tls_shutdown(t);
  assert_int_equal(hl7_tls_take_output(t, b, sizeof b), 0);
  assert_int_equal(hl7_tls_write(t, "x", 1), -1);
  hl7_tls_free(t);
  hl7_tls_free(NULL);
  hl7_tls_ctx_free(c);
  hl7_tls_ctx_free(NULL);
}

static void test_ctx_bundle(void **state) {
  hl7_tls_ctx_t *c = NULL;
  char err[256], p[320];
  (void)state;
  snprintf(p, sizeof p, "%s", path_of("bundle.pem"));
  if (hl7_tls_ctx_new(p, p, NULL, 0, &c, err, sizeof err) != 0)
    fail_msg("bundle: %s", err);
  hl7_tls_ctx_free(c);
}

static void test_ctx_freed_first(void **state) {
  session_t s;
  (void)state;
  /* The listener's context freed while a connection lives. */
  session_open(&s, "ca.pem", 1, "client.pem", "client.key", CLI_DEFAULT);
  hl7_tls_ctx_free(s.sctx);
  s.sctx = NULL;
  handshake_ok(&s);
  exchange_message(&s);
  session_close(&s);
}

/* ---- context errors ---- */

static void ctx_fails(const char *cert, const char *key, const char *ca,
                      int verify, const char *want1, const char *want2) {
  static int not_null;
  hl7_tls_ctx_t *c = (hl7_tls_ctx_t *)&not_null; /* must become NULL */
  char err[256], p1[320], p2[320], p3[320];
  snprintf(p1, sizeof p1, "%s", cert ? path_of(cert) : "");
  snprintf(p2, sizeof p2, "%s", key ? path_of(key) : "");
  snprintf(p3, sizeof p3, "%s", ca ? path_of(ca) : "");
  memset(err, 'x', sizeof err);
  assert_int_equal(hl7_tls_ctx_new(cert ? p1 : NULL, key ? p2 : NULL,
                                   ca ? p3 : NULL, verify, &c, err, sizeof err),
                   -1);
  assert_null(c);
  assert_non_null(memchr(err, '\0', sizeof err));
  print_message("ctx: %s\n", err);
  assert_null(strchr(err, '\n'));
  if (strstr(err, want1) == NULL || strstr(err, want2) == NULL)
    fail_msg("error \"%s\": want \"%s\" and \"%s\"", err, want1, want2);
  assert_int_equal(ERR_peek_error(), 0); /* the queue is left empty */
}

static void test_ctx_errors(void **state) {
  char want[400];
  (void)state;

  snprintf(want, sizeof want, "cert_file %s: ", path_of("missing.pem"));
  ctx_fails("missing.pem", "server.key", NULL, 0, want,
            "No such file or directory");
  snprintf(want, sizeof want, "cert_file %s: ", path_of("garbage.pem"));
  ctx_fails("garbage.pem", "server.key", NULL, 0, want, "no PEM certificate");
  snprintf(want, sizeof want, "cert_file %s: ", path_of("server.key"));
  ctx_fails("server.key", "server.key", NULL, 0, want, "no PEM certificate");
  snprintf(want, sizeof want, "cert_file %s: ", path_of(""));
  ctx_fails("", "server.key", NULL, 0, want, "Is a directory");

  snprintf(want, sizeof want, "key_file %s: ", path_of("stray.key"));
  ctx_fails("server.pem", "stray.key", NULL, 0, want,
            "key does not match the certificate");
  snprintf(want, sizeof want, "key_file %s: ", path_of("client.key"));
  ctx_fails("server.pem", "client.key", NULL, 0, want,
            "key does not match the certificate");
  snprintf(want, sizeof want, "key_file %s: ", path_of("missing.key"));
  ctx_fails("server.pem", "missing.key", NULL, 0, want,
            "No such file or directory");
  snprintf(want, sizeof want, "key_file %s: ", path_of("server.pem"));
  ctx_fails("server.pem", "server.pem", NULL, 0, want, "no PEM private key");
  snprintf(want, sizeof want, "key_file %s: ", path_of("encrypted.key"));
  ctx_fails("server.pem", "encrypted.key", NULL, 0, want, "encrypted");

  snprintf(want, sizeof want, "ca_file %s: ", path_of("missing-ca.pem"));
  ctx_fails("server.pem", "server.key", "missing-ca.pem", 1, want,
            "No such file or directory");
  snprintf(want, sizeof want, "ca_file %s: ", path_of("garbage.pem"));
  ctx_fails("server.pem", "server.key", "garbage.pem", 1, want, "found");
  snprintf(want, sizeof want, "ca_file %s: ", path_of("server.key"));
  ctx_fails("server.pem", "server.key", "server.key", 0, want, "found");

  snprintf(want, sizeof want, "ca_file %s: ", path_of("ca.pem/x"));
  ctx_fails("server.pem", "server.key", "ca.pem/x", 1, want, "Not a directory");

  ctx_fails("server.pem", "server.key", NULL, 1, "verify_client", "ca_file");
  ctx_fails(NULL, "server.key", NULL, 0, "cert_file", "not set");
  ctx_fails("server.pem", NULL, NULL, 0, "key_file", "not set");

  /* errlen 0: no message, no crash. */
  {
    hl7_tls_ctx_t *c = NULL;
    assert_int_equal(
        hl7_tls_ctx_new(path_of("missing.pem"), "k", NULL, 0, &c, NULL, 0), -1);
  }
}

static void test_ctx_unreadable_ca(void **state) {
  const char *p;
  FILE *f;
  char want[400];
  (void)state;
  if (geteuid() == 0)
    skip(); /* root reads anything */
  p = remember("noread.pem");
  f = fopen(p, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(chmod(p, 0), 0);
  snprintf(want, sizeof want, "ca_file %s: ", p);
  ctx_fails("server.pem", "server.key", "noread.pem", 1, want,
            "Permission denied");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_and_message),
      cmocka_unit_test(test_tls12),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_write_before_handshake),
      cmocka_unit_test(test_one_mib),
      cmocka_unit_test(test_client_cert_good),
      cmocka_unit_test(test_client_cn_sanitized),
      cmocka_unit_test(test_client_cert_optional),
      cmocka_unit_test(test_client_cert_missing),
      cmocka_unit_test(test_client_cert_other_ca),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_plain_mllp_error),
      cmocka_unit_test(test_tampered_record),
      cmocka_unit_test(test_tls10_refused),
      cmocka_unit_test(test_client_closes),
      cmocka_unit_test(test_server_closes),
      cmocka_unit_test(test_shutdown_before_handshake),
      cmocka_unit_test(test_ctx_freed_first),
      cmocka_unit_test(test_ctx_bundle),
      cmocka_unit_test(test_ctx_errors),
      cmocka_unit_test(test_ctx_unreadable_ca),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

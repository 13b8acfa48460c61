/*
 * TLS for the MLLP listener, server side only, with OpenSSL 3 over memory
 * BIOs: this code never touches a socket. The connection code keeps the
 * libuv TCP handle and moves bytes in and out:
 *
 *   socket -> hl7_tls_feed (ciphertext) -> hl7_tls_read (plaintext)
 *   hl7_tls_write (plaintext) -> hl7_tls_take_output (ciphertext) -> socket
 *
 * Ownership: an hl7_tls_ctx_t (one per listener) owns its SSL_CTX; an
 * hl7_tls_t (one per connection) owns its SSL and both memory BIOs, and
 * holds a reference on the SSL_CTX, so hl7_tls_ctx_free may come before
 * the connections' hl7_tls_free (each frees what it owns; the SSL_CTX goes
 * with the last of them). No call keeps a pointer to the caller's buffers;
 * strings returned point into the handle and live as long as it does.
 *
 * Everything runs on one thread (the loop's). Each OpenSSL operation here
 * starts with OpenSSL's per-thread error queue cleared and leaves none of
 * its errors in it (other OpenSSL users on the thread are not confused).
 *
 * Call order for a connection:
 *   t = hl7_tls_new(ctx)                              (on accept)
 *   on each read from the socket:
 *     hl7_tls_feed(t, data, n)                        (-1: send output, close)
 *     while ((r = hl7_tls_read(t, buf, sizeof buf)) > 0)
 *       give buf[0..r) to the MLLP framer
 *     r == 0: need more data from the socket (or the handshake goes on);
 *     r == -1: failure: send output, close; r == -2: peer sent close_notify
 *   to send an ACK: hl7_tls_write(t, ack, len)     (queued until handshake)
 *   after every feed / read / write / shutdown, and also after a failure
 *   (it may hold an alert): drain hl7_tls_take_output until it returns 0
 *   (or size one buffer with hl7_tls_output_pending) and uv_write it.
 *   to close: hl7_tls_shutdown(t), drain output, uv_write, then close.
 *   hl7_tls_free(t)                                  (on close)
 *
 * Memory: both BIOs grow as needed. Input waits only until hl7_tls_read
 * takes it (at most one partial TLS record stays when the caller reads
 * after every feed); output waits until hl7_tls_take_output takes it. A
 * TLS record carries at most 16 KiB of plaintext: a 16 KiB read buffer
 * gets a record per call; any size works.
 */
#ifndef HL7_TLS_H
#define HL7_TLS_H

#include <stddef.h>

/* One per listener: the certificate, key, client CAs and settings. */
typedef struct hl7_tls_ctx hl7_tls_ctx_t;

/*
 * cert_file: PEM, the server certificate first, then any intermediates.
 * key_file: PEM private key matching it (unencrypted: a passphrase is
 * never prompted for). ca_file: NULL, or PEM CA certificates to verify
 * client certificates against. verify_client: require a client
 * certificate that verifies against ca_file (needs ca_file). With ca_file
 * and not verify_client, a client certificate is asked for but optional;
 * one that is sent must verify.
 *
 * Settings: TLS 1.2 minimum (1.3 preferred), the TLS 1.2 cipher suites of
 * Mozilla's "intermediate" profile (ECDHE/DHE with AES-GCM or
 * ChaCha20-Poly1305), server cipher preference, no compression, no
 * renegotiation, no session tickets nor session cache (every connection
 * does a full handshake).
 *
 * Returns 0 and *out, or -1 with one line in err (errlen bytes, NUL
 * terminated, may be 0) naming the setting, the file and the reason:
 * "cert_file /x.pem: No such file or directory", "key_file /k.pem: key
 * does not match the certificate", "ca_file /ca.pem: no certificate or
 * crl found".
 */
int hl7_tls_ctx_new(const char *cert_file, const char *key_file,
                    const char *ca_file, int verify_client, hl7_tls_ctx_t **out,
                    char *err, size_t errlen);
/* NULL is a no-op. Connections made from it stay valid. */
void hl7_tls_ctx_free(hl7_tls_ctx_t *c);

/* One per connection. */
typedef struct hl7_tls hl7_tls_t;

/* A new server-side connection, waiting for the ClientHello. NULL: out of
 * memory. */
hl7_tls_t *hl7_tls_new(hl7_tls_ctx_t *c);
/* NULL is a no-op. Sends nothing: call hl7_tls_shutdown first for a
 * clean close. */
void hl7_tls_free(hl7_tls_t *t);

/*
 * Ciphertext received from the socket (n may be 0). Drives the handshake:
 * afterwards there may be output to take and, once the handshake is done,
 * queued writes are encrypted. Returns 0, or -1 on a TLS failure (bad
 * handshake, refused certificate, garbage): take the output (an alert),
 * send it and close; hl7_tls_error says why. Bytes after the peer's
 * close_notify are ignored.
 */
int hl7_tls_feed(hl7_tls_t *t, const void *p, size_t n);

/*
 * Plaintext received: copies up to len bytes into buf. Returns > 0 bytes
 * copied (call again: more may be ready), 0 nothing yet (need more data
 * from the socket, or the handshake is still going on), -1 a TLS failure
 * (as hl7_tls_feed), -2 the peer closed TLS cleanly (close_notify: answer
 * with hl7_tls_shutdown, or just close). Drives the handshake too.
 */
long hl7_tls_read(hl7_tls_t *t, void *buf, size_t len);

/*
 * Plaintext to send: copied and encrypted now, or queued until the
 * handshake is done (then encrypted by the hl7_tls_feed or hl7_tls_read
 * that finishes it). Take the output afterwards. Returns 0, or -1 when
 * the connection failed, is shut down, or memory ran out.
 */
int hl7_tls_write(hl7_tls_t *t, const void *p, size_t n);

/*
 * Ciphertext to put on the socket now (handshake records, encrypted data,
 * alerts): copies up to len bytes into buf, returns how many (0: none).
 * Works in every state, after a failure too.
 */
size_t hl7_tls_take_output(hl7_tls_t *t, void *buf, size_t len);

/* Bytes hl7_tls_take_output has ready now (to size one buffer). */
size_t hl7_tls_output_pending(const hl7_tls_t *t);

/*
 * Start a clean close: encrypts anything queued, then a close_notify (when
 * the handshake is done; before it, nothing is sent). Take the output,
 * send it, close. Reads still work (a -2 when the peer's close_notify
 * comes); writes fail. Idempotent.
 */
void hl7_tls_shutdown(hl7_tls_t *t);

/* 1 once the handshake has completed (and no failure since), else 0. */
int hl7_tls_handshake_done(const hl7_tls_t *t);

/*
 * The last failure, one line without any application data, "" when none:
 * "handshake failed: no client certificate", "handshake failed:
 * certificate verify failed (unable to get local issuer certificate)",
 * "handshake failed: wrong version number", "handshake failed:
 * unsupported protocol" (TLS 1.0/1.1), "TLS error: decryption failed or
 * bad record mac", "out of memory". A client that sent plain MLLP (0x0B
 * first) gets " (plain MLLP from the client, not TLS)" appended.
 */
const char *hl7_tls_error(const hl7_tls_t *t);

/*
 * The verified client certificate's subject CN (the last CN, as UTF-8,
 * control characters replaced by '?', at most 255 bytes; for logs), or
 * NULL: no handshake yet, no client certificate, or no CN.
 */
const char *hl7_tls_peer_cn(hl7_tls_t *t);

#endif

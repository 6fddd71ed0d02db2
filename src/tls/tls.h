#pragma once
/*
 * The TLS seam: every wolfSSL call of the project sits behind this header
 * (and tls.c), so no other file includes wolfSSL.
 *
 * A server context holds the certificate chain and key of the listeners
 * and the ALPN protocols they accept.  It is shared by all workers; a
 * reload builds a new wolfSSL context and swaps it in for new connections,
 * while established ones keep the one they started with.  Session tickets
 * are encrypted with process-wide keys (ChaCha20-Poly1305) that all workers
 * share and that rotate on a schedule (the previous key still decrypts), so
 * a returning client resumes whichever worker its new connection lands on;
 * or, with tls.ticket-key-file, with keys from a file that every replica
 * shares (src/tls/keyfile.h), rotated when the file changes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "src/core/errors.h"

typedef struct dv_tls_ctx dv_tls_ctx_t;
typedef struct dv_tls dv_tls_t;
typedef struct WOLFSSL_SESSION dv_tls_session_t;
typedef struct dv_keyfile dv_keyfile_t;

/* Results of the I/O calls besides byte counts and negative errors:
 * DV_TLS_WANT_READ, DV_TLS_WANT_WRITE and DV_TLS_EOF, in the project's error
 * list (src/core/errors.h).  Wanting to read or write is a state, not an
 * error. */

/* Once per process. */
int dv_tls_init(unsigned ticket_rotation_s);
/* Session tickets from now on use the keys of `kf` (tls.ticket-key-file,
 * src/tls/keyfile.h), which every replica shares, and rotate when the file
 * changes; NULL goes back to random keys on ticket_rotation_s.  `kf` must
 * outlive the TLS contexts (or this is called again with NULL). */
void dv_tls_ticket_keyfile(dv_keyfile_t *kf);
/* Free what the TLS library keeps per thread; call as a thread ends. */
void dv_tls_thread_exit(void);
/* Once per process, at exit, after every context is freed. */
void dv_tls_cleanup(void);

/*
 * Server context from a PEM chain (leaf first; sent whole) and a PEM key.
 * `alpn` is a NULL-terminated list in preference order; a client that
 * offers ALPN without any of them still connects (no ALPN is chosen).
 * TLS 1.2 and 1.3 only.  Returns NULL with a message in `err`.
 */
dv_tls_ctx_t *dv_tls_server_new(const char *cert, const char *key,
				const char *const *alpn, char *err,
				size_t err_len);
/*
 * Ask the clients of `ctx` for a certificate that chains to the PEM bundle
 * `ca_file` (tls.client-ca); with `require` a handshake without one that
 * verifies fails, otherwise such a client connects without a certificate
 * ID (dv_tls_cert_id()).  A context that asks issues and honours no
 * session tickets and keeps no session cache: a resumed session would
 * carry no certificate, so every connection shows one.  Reloads
 * (dv_tls_server_reload) read `ca_file` again.  Call before the first
 * connection.  0, or DV_ECONFIG with a message in `err`.
 */
int dv_tls_server_client_ca(dv_tls_ctx_t *ctx, const char *ca_file,
			    bool require, char *err, size_t err_len);
/* Load the files again; on failure the old certificate stays in service
 * and the message says why.  Returns 0 or a negative error. */
int dv_tls_server_reload(dv_tls_ctx_t *ctx, const char *cert,
			 const char *key, char *err, size_t err_len);
void dv_tls_ctx_free(dv_tls_ctx_t *ctx); /* NULL is a no-op */

/*
 * Client context for tls:// and https:// upstreams: TLS 1.2+, the peer's certificate
 * must verify against `ca_file` (PEM bundle) or, when it is "", the
 * system trust store.  Returns NULL with a message in `err`.
 */
dv_tls_ctx_t *dv_tls_client_new(const char *ca_file, char *err,
				size_t err_len);
/* A client-side TLS connection on a connected non-blocking socket: sends
 * `name` as SNI, offers ALPN `alpn` ("dot" for DoT, "h2" for DoH; whether
 * the server chose it is the caller's to check with dv_tls_alpn()) and
 * requires the certificate to carry `name`.  `session` (may be NULL) is
 * offered for resumption.  NULL on allocation failure. */
dv_tls_t *dv_tls_connect_new(dv_tls_ctx_t *ctx, int fd, const char *name,
			     const char *alpn, dv_tls_session_t *session);
/* Drive the client handshake: 0 when done, DV_TLS_WANT_*, or a negative
 * error (dv_tls_error() says why; dv_tls_cert_error() whether the peer's
 * certificate was the reason). */
int dv_tls_connect(dv_tls_t *t);
bool dv_tls_cert_error(int ret);
/* The session of an established connection, for resumption by the next
 * one (the caller owns it: dv_tls_session_free()); NULL if none. */
dv_tls_session_t *dv_tls_session_get(dv_tls_t *t);
void dv_tls_session_free(dv_tls_session_t *s); /* NULL is a no-op */

/* A server-side TLS connection on a connected non-blocking socket. */
dv_tls_t *dv_tls_new(dv_tls_ctx_t *ctx, int fd);
void dv_tls_free(dv_tls_t *t); /* NULL is a no-op; does not close fd */

/* Drive the handshake: 0 when done, DV_TLS_WANT_*, or a negative error. */
int dv_tls_handshake(dv_tls_t *t);
/* Read decrypted bytes: > 0, DV_TLS_WANT_*, DV_TLS_EOF or an error. */
ssize_t dv_tls_read(dv_tls_t *t, void *buf, size_t len);
/* Write: bytes taken (> 0), DV_TLS_WANT_*, or an error.  After a WANT the
 * same buffer must be offered again. */
ssize_t dv_tls_write(dv_tls_t *t, const void *buf, size_t len);
/* Bytes waiting inside the TLS object: decrypted, or read from the socket
 * and not decrypted yet. */
size_t dv_tls_pending(dv_tls_t *t);
/*
 * Server connections read the socket at most once per call, as much as
 * has arrived, and decrypt every whole record of it; their records leave
 * in one send per call (src/tls/tls_io.c).  dv_tls_drained(): the last
 * read found the socket empty, so the next bytes come with the next
 * readable event.  dv_tls_flush(): send the records the socket did not
 * take yet: 0 when all is out, DV_TLS_WANT_WRITE, or a negative error.
 * dv_tls_unsent(): their size.  (Upstream connections keep wolfSSL's own
 * I/O: never drained, nothing unsent.)
 */
bool dv_tls_drained(dv_tls_t *t);
int dv_tls_flush(dv_tls_t *t);
size_t dv_tls_unsent(dv_tls_t *t);
/* Send close_notify (best effort). */
void dv_tls_shutdown(dv_tls_t *t);

/* After the handshake: the SNI host name (or NULL: none, or one that is
 * not a host name, src/tls/sni.h), the ALPN protocol chosen (or NULL),
 * whether the session was resumed, the version text. */
const char *dv_tls_sni(dv_tls_t *t);
/* After the handshake: the client ID of the client's verified certificate
 * (src/tls/cert_names.h dv_tls_cert_der_id()), or NULL.  Lives as long as
 * `t`. */
const char *dv_tls_cert_id(dv_tls_t *t);
const char *dv_tls_alpn(dv_tls_t *t);
bool dv_tls_resumed(dv_tls_t *t);
const char *dv_tls_version(dv_tls_t *t);
/* Last error text for logs. */
const char *dv_tls_error(dv_tls_t *t, int ret);

#pragma once
/*
 * The QUIC TLS seam: the only place that knows which TLS library runs
 * QUIC's handshake.  On Debian 12 that is GnuTLS through ngtcp2's
 * ngtcp2_crypto_gnutls helper (quic_tls_gnutls.c), because Debian's
 * wolfSSL is built without QUIC.  A platform with a QUIC-enabled wolfSSL
 * implements this header with ngtcp2_crypto_wolfssl instead; nothing else
 * changes, since everything outside sees opaque contexts and ngtcp2's
 * generic ngtcp2_crypto_* callbacks.
 *
 * QUIC always uses TLS 1.3.  Sessions keep a pointer to the caller's
 * ngtcp2_crypto_conn_ref, through which the crypto helper finds the
 * ngtcp2_conn.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ngtcp2/ngtcp2_crypto.h>

typedef struct dv_quic_tls_ctx dv_quic_tls_ctx_t;
typedef struct dv_quic_tls dv_quic_tls_t;
typedef struct dv_keyfile dv_keyfile_t;

#define DV_QUIC_SESSION_MAX 4096 /* a saved client session (ticket) */

/*
 * Server context: PEM chain (leaf first) and key, the one ALPN protocol
 * a client must offer (e.g. "doq"; a client without it fails the
 * handshake with no_application_protocol), and whether 0-RTT is offered
 * in tickets and accepted.  Tickets are encrypted with a key shared by
 * every session of the context (all workers), so resumption works on any
 * worker.  NULL with a message in `err`.
 */
dv_quic_tls_ctx_t *dv_quic_tls_server_ctx_new(const char *cert,
					      const char *key,
					      const char *alpn,
					      bool early_data, char *err,
					      size_t err_len);
/*
 * Client context: the peer certificate is verified against `ca_file`
 * (PEM), or the system trust store when it is NULL or "".  `alpn` is the
 * one protocol offered.  NULL with a message in `err`.
 */
dv_quic_tls_ctx_t *dv_quic_tls_client_ctx_new(const char *ca_file,
					      const char *alpn, char *err,
					      size_t err_len);
/*
 * Client: present the PEM chain `cert` and key `key` to a server that asks
 * for a client certificate (mTLS).  0, or DV_ECONFIG with `err`.
 */
int dv_quic_tls_client_cert(dv_quic_tls_ctx_t *ctx, const char *cert,
			    const char *key, char *err, size_t err_len);
/*
 * Server: load the certificate chain and key again (GnuTLS checks that
 * they match) for the connections that start from now on; established
 * ones keep the pair they began with until they end.  On failure the old
 * pair stays in service and `err` says why.  0 or DV_ECONFIG.
 */
int dv_quic_tls_server_reload(dv_quic_tls_ctx_t *ctx, const char *cert,
			      const char *key, char *err, size_t err_len);
void dv_quic_tls_ctx_free(dv_quic_tls_ctx_t *ctx); /* NULL is a no-op */
/*
 * Server: session tickets of sessions started from now on are encrypted
 * with the current key of `kf` (tls.ticket-key-file, shared by replicas)
 * instead of the context's random one.  GnuTLS takes one key per session,
 * so a ticket issued before the file changed no longer resumes after it.
 * `kf` must outlive the context.
 */
void dv_quic_tls_ctx_keyfile(dv_quic_tls_ctx_t *ctx, dv_keyfile_t *kf);
/*
 * Server: ask clients for a certificate that chains to the PEM bundle
 * `ca_file` (tls.client-ca); with `require` a handshake without one that
 * verifies fails, otherwise the client connects without a certificate ID
 * (dv_quic_tls_cert_id()).  Such a context sends and accepts no session
 * tickets (so no 0-RTT either): a resumed session would show no
 * certificate.  Reloads read `ca_file` again.  Call before the first
 * session.  0, or DV_ECONFIG with a message in `err`.
 */
int dv_quic_tls_server_client_ca(dv_quic_tls_ctx_t *ctx, const char *ca_file,
				 bool require, char *err, size_t err_len);

/* A server session for one connection.  NULL on failure. */
dv_quic_tls_t *dv_quic_tls_server_new(dv_quic_tls_ctx_t *ctx,
				      ngtcp2_crypto_conn_ref *ref);
/*
 * A client session: `name` is sent as SNI and the certificate must be
 * valid for it (NULL: no SNI and no verification, for testing a server
 * by address only).  `session`/`session_len` (may be NULL/0) is a
 * session saved by dv_quic_tls_session_save() to resume, with 0-RTT when
 * the ticket allows it.  NULL with a message in `err`.
 */
dv_quic_tls_t *dv_quic_tls_client_new(dv_quic_tls_ctx_t *ctx,
				      ngtcp2_crypto_conn_ref *ref,
				      const char *name, const uint8_t *session,
				      size_t session_len, char *err,
				      size_t err_len);
void dv_quic_tls_free(dv_quic_tls_t *t); /* NULL is a no-op */

/* The library's own session handle, for ngtcp2_conn_set_tls_native_handle. */
void *dv_quic_tls_native(dv_quic_tls_t *t);

/*
 * Server, once the handshake is complete and its ticket sent: free the
 * TLS library's session, keeping what the calls below report (resumed,
 * 0-RTT accepted, SNI, the client certificate's ID).  Afterwards
 * dv_quic_tls_native() is NULL: the caller first detaches it from
 * ngtcp2 (dv_quic_conn_shed_tls() in src/proto/quic.h does both) and no
 * more handshake data can be read.  A no-op the second time.
 */
void dv_quic_tls_shed(dv_quic_tls_t *t);
/* Server: send a session ticket (after the handshake completed).
 * Returns 0 or a negative error. */
int dv_quic_tls_send_ticket(dv_quic_tls_t *t);

/* Client: copy the session (with the ticket the server sent, if any) to
 * `buf`.  Returns its length, 0 when there is none yet, or a negative
 * error when it does not fit. */
int dv_quic_tls_session_save(dv_quic_tls_t *t, uint8_t *buf, size_t cap);

bool dv_quic_tls_resumed(dv_quic_tls_t *t);
/* Whether the peer accepted (server: this session received) 0-RTT data. */
bool dv_quic_tls_early_data_accepted(dv_quic_tls_t *t);
/* A description of the last handshake failure, for logs. */
const char *dv_quic_tls_error(dv_quic_tls_t *t);
/* The name of TLS alert `alert` ("no_application_protocol"...), for logs. */
const char *dv_quic_tls_alert_name(uint8_t alert);

/* Client: whether the server has sent a session ticket on this
 * connection (so dv_quic_tls_session_save() has something to resume). */
bool dv_quic_tls_ticket_received(dv_quic_tls_t *t);

/* Server: the SNI host name the client sent, or NULL when it sent none or
 * one that is not a host name (an IP literal...: src/tls/sni.h).  Known
 * once the ClientHello is in, so also for 0-RTT queries. */
const char *dv_quic_tls_sni(dv_quic_tls_t *t);
/* Server, once the handshake is complete: the client ID of the client's
 * verified certificate (dv_tls_cert_der_id() in src/tls/cert_names.h), or
 * NULL.  Lives as long as `t`. */
const char *dv_quic_tls_cert_id(dv_quic_tls_t *t);
/* Server: the name (its first 64 bytes) when the client sent one that the
 * TLS library refuses outright, failing the handshake: GnuTLS does so with
 * illegal_parameter for a name with a byte other than a letter, digit,
 * '-' or '.', such as the IPv6 literal "::1".  NULL otherwise.  For the
 * log line of the failure. */
const char *dv_quic_tls_sni_refused(dv_quic_tls_t *t);

#pragma once
/*
 * Inside the TLS seam: the connection struct that tls.c (wolfSSL
 * sessions) and tls_io.c (the socket I/O of server connections) share.
 * Not for callers: they see only tls.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "src/core/ident.h"
#include "src/tls/tls.h"

typedef struct WOLFSSL WOLFSSL;
typedef struct dv_tls13_rec dv_tls13_rec_t;

struct dv_tls {
	WOLFSSL *ssl; /* NULL once `rec` has taken over */
	/* after a server's TLS 1.3 handshake: our own record layer
	 * (tls13_rec.h) and the plaintext of a record the caller had no room
	 * for yet */
	dv_tls13_rec_t *rec;
	uint8_t *pt_keep;
	size_t pt_keep_off, pt_keep_len;
	bool resumed; /* of a connection whose `ssl` is gone */
	int fd;
	/* our own socket I/O (server connections, tls_io.c); upstream
	 * connections keep wolfSSL's */
	bool own_io;
	bool hs_done; /* the handshake has succeeded */
	bool may_recv; /* this call may still read the socket */
	size_t rx_max; /* and at most this much */
	bool drained; /* this call's read found the socket empty */
	bool in_call; /* records go to the worker's send buffer */
	int sticky; /* an EOF or error met after bytes were returned */
	/* ciphertext being fed to wolfSSL during a call: in the worker's
	 * receive buffer, or rx_keep */
	uint8_t *rx;
	size_t rx_len;
	/* ciphertext read but not fed to wolfSSL yet, kept between calls
	 * (the caller's buffer filled up first) */
	uint8_t *rx_keep;
	size_t rx_keep_len;
	/* records written during a call, in the worker's send buffer */
	size_t tx_len;
	/* records the socket did not take; they go before anything newer */
	uint8_t *tx_keep;
	size_t tx_keep_off, tx_keep_len;
	char sni[256];
	char alpn[32];
	bool sni_read;
	/* client certificates (tls.client-ca): a certificate failed to
	 * verify (and may not refuse the handshake: optional), and the
	 * client ID of one that verified ("" none) */
	bool cert_require;
	bool cert_bad;
	char cert_id[DV_IDENT_MAX + 1];
};

/* wolfSSL's result `ret` of a call on `t` as DV_TLS_WANT_*, DV_TLS_EOF or
 * a negative error. */
int dv_tls_map_error(dv_tls_t *t, int ret);

/* tls_io.c: the I/O of a connection with own_io (see there). */
void dv_tls_io_attach(dv_tls_t *t);
int dv_tls_io_handshake(dv_tls_t *t);
/* A server handshake has completed: what it no longer needs is returned
 * (tls.c). */
void dv_tls_handshake_done(dv_tls_t *t);
/* tls13_detach.c: after a server's TLS 1.3 handshake with a suite of
 * tls13_rec.h, `rec` takes over and `ssl` is freed (and NULL); anything
 * else keeps `ssl`. */
void dv_tls_detach(dv_tls_t *t);
/* tls_io.c, for a connection with `rec`: the bytes dv_tls_pending()
 * counts (opened plaintext, and whole records kept). */
size_t dv_tls_io_rec_pending(dv_tls_t *t);
ssize_t dv_tls_io_read(dv_tls_t *t, void *buf, size_t len);
ssize_t dv_tls_io_write(dv_tls_t *t, const void *buf, size_t len);
int dv_tls_io_flush(dv_tls_t *t);
void dv_tls_io_shutdown(dv_tls_t *t);
/* Free the calling thread's I/O buffers. */
void dv_tls_io_thread_exit(void);

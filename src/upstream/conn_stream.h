#pragma once
/*
 * Stream connections (src/upstream/ only): tcp:// and tls:// carry DNS
 * messages with the 2-byte length of RFC 7766 (pipelined, answered out of
 * order); https:// (conn_h2.c) is the same TLS connection with HTTP/2 on
 * it, plugged in as a framing.  The socket, the connect, the TLS
 * handshake and the byte I/O are here; the framing decides what the bytes
 * mean.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/upstream/uconn.h"

typedef struct dv_ustream dv_ustream_t;
typedef struct dv_tls dv_tls_t;

/* A framing other than DNS's 2-byte length (HTTP/2).  Every hook that
 * returns false has closed the connection. */
typedef struct dv_ustream_framing {
	const char *alpn; /* offered in the TLS handshake */
	/* The socket is made (connect in progress): start the engine. */
	int (*start)(dv_ustream_t *sc);
	/* Closing (after the TLS object is gone): end the engine. */
	void (*stop)(dv_ustream_t *sc);
	/* TLS is up: accept the connection (the ALPN chosen). */
	bool (*opened)(dv_ustream_t *sc);
	/* The output buffer has been written: render the next bytes into
	 * it; true when there is something to write. */
	bool (*fill)(dv_ustream_t *sc);
	/* Bytes were read into sc->in: consume them. */
	bool (*input)(dv_ustream_t *sc);
} dv_ustream_framing_t;

struct dv_ustream {
	dv_uconn_t c; /* first */
	const dv_ustream_framing_t *fr; /* NULL: 2-byte DNS framing */
	bool use_tls;
	/* output not yet written */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	/* input: 2-byte length + message, or the framing's bytes */
	uint8_t *in;
	size_t in_len;
	dv_tls_t *tls;    /* from HANDSHAKE on */
	size_t tls_retry; /* bytes of the write that returned WANT_* */
	bool tls_saved;   /* session kept for the server's next connection */
};

/* Set up `sc` (zeroed) as a CLOSED connection of `s` speaking over
 * TLS or not, with framing `fr` (NULL: DNS).  -ENOMEM. */
int dv_ustream_init(dv_ustream_t *sc, const dv_uconn_ops_t *ops,
		    dv_server_t *s, unsigned max, bool tls,
		    const dv_ustream_framing_t *fr);
/* The ops a framing shares with tcp:// and tls:// connections. */
void dv_ustream_destroy(dv_uconn_t *c);
int dv_ustream_connect(dv_uconn_t *c);
void dv_ustream_stop(dv_uconn_t *c, bool was_open);
bool dv_ustream_writing(const dv_uconn_t *c);
int dv_ustream_tls_pool_init(dv_pool_t *p);
void dv_ustream_tls_pool_deinit(dv_pool_t *p);
void dv_ustream_tls_server_deinit(dv_server_t *s);
/* Write what is queued (and what the framing renders); closes the
 * connection on a write error. */
void dv_ustream_flush(dv_ustream_t *sc);
/* A query was queued: write it from the write watcher once OPEN (which
 * also batches the queries of one loop iteration into one send). */
void dv_ustream_queued(dv_ustream_t *sc);

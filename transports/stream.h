#pragma once
/*
 * DNS over a byte stream (RFC 1035 4.2.2, RFC 7766, RFC 7858): the
 * connection machinery shared by Do53 TCP and DoT.  A stream transport is an
 * I/O ops table (plain socket or TLS) plus a registration; framing, the
 * in-flight bound, backpressure, timeouts (handshake, read, idle), EDNS
 * keepalive (RFC 7828) and padding (RFC 8467, encrypted transports only)
 * live here once.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "src/config.h"
#include "src/tls.h" /* DV_TLS_WANT_READ/WRITE, DV_TLS_EOF: the I/O states */

typedef struct dv_worker dv_worker_t;
typedef struct dv_stream_conn dv_stream_conn_t;
typedef struct dv_stream_listener dv_stream_listener_t;

typedef struct {
	dv_scheme_t scheme;
	bool encrypted; /* pad answers to padded queries */
	/* Set up a newly accepted connection (c->fd, c->peer are set).  A
	 * negative return refuses it (closed at once, counted). */
	int (*open)(dv_stream_listener_t *l, dv_stream_conn_t *c);
	/* Drive the handshake: 0 done, DV_TLS_WANT_*, or an error.  NULL when
	 * the transport has none. */
	int (*handshake)(dv_stream_conn_t *c);
	/* > 0 bytes, DV_TLS_WANT_*, DV_TLS_EOF, or an error. */
	ssize_t (*read)(dv_stream_conn_t *c, void *buf, size_t len);
	/* > 0 bytes taken, DV_TLS_WANT_*, or an error. */
	ssize_t (*write)(dv_stream_conn_t *c, const void *buf, size_t len);
	/* bytes buffered inside the I/O layer (TLS records already read) */
	size_t (*pending)(dv_stream_conn_t *c);
	/* free the I/O state (the fd is closed by the caller) */
	void (*close)(dv_stream_conn_t *c);
} dv_stream_io_t;

typedef enum { SC_HANDSHAKE, SC_OPEN, SC_CLOSED } dv_stream_state_t;

struct dv_stream_conn {
	dv_stream_listener_t *l;
	dv_stream_state_t state;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	void *io_state;  /* the transport's (e.g. dv_tls_t) */
	char sni[256]; /* set by the transport after its handshake */
};

struct dv_stream_listener {
	dv_worker_t *w;
	const dv_stream_io_t *io;
	void *io_ctx; /* the transport's listener state */
};

int dv_stream_listen(dv_worker_t *w, const dv_url_t *url,
		     const dv_stream_io_t *io, void *io_ctx, void **state);
void dv_stream_stop(dv_worker_t *w, void *state);
void dv_stream_close(dv_worker_t *w, void *state);
/* The transport's io_ctx of a listener state from dv_stream_listen. */
void *dv_stream_io_ctx(void *state);

#pragma once
/*
 * Requests over a byte stream: the connection machinery shared by Do53
 * TCP, DoT and DoH.  A stream transport is an I/O ops table (plain socket
 * or TLS) with an application on top (DNS length-prefixed framing, RFC 1035
 * 4.2.2, RFC 7766, RFC 7858, or DoH's HTTP) plus a registration;
 * backpressure, timeouts (handshake, read, write, idle) and the listener's
 * limits live here once (stream.c, stream_listen.c), DNS framing, the
 * in-flight bound, EDNS keepalive (RFC 7828) and padding (RFC 8467,
 * encrypted transports only) in stream_dns.c.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "src/config/config.h"
#include "src/tls/tls.h" /* DV_TLS_WANT_READ/WRITE, DV_TLS_EOF: the I/O states */

typedef struct dv_worker dv_worker_t;
typedef struct dv_stream_conn dv_stream_conn_t;
typedef struct dv_stream_listener dv_stream_listener_t;

/*
 * An application protocol on top of the stream: DNS messages with a 2-byte
 * length prefix (dv_stream_dns_app, transports/stream_dns.c) for Do53 TCP
 * and DoT, DoH's HTTP engine for DoH.  The application submits queries
 * with dv_stream_query()/dv_stream_submit() and frames their answers
 * itself; its reply hooks bracket their work with
 * dv_stream_reply_begin()/dv_stream_reply_end().  Fields marked optional
 * may be NULL (false for `linger`).
 */
typedef struct {
	/* after the handshake (or at accept): set up c->app_state, which
	 * must be non-NULL once this succeeds */
	int (*open)(dv_stream_conn_t *c);
	/* consume read bytes: how many were taken (the rest is offered again
	 * when want_input), or a negative error: read no more, flush, and
	 * close when want_close */
	ssize_t (*input)(dv_stream_conn_t *c, const uint8_t *data, size_t len);
	/* bytes to send now into buf: > 0, 0 (nothing), or an error.
	 * Optional: an application may instead write into the output buffer
	 * (dv_stream_out_reserve) when its answers come. */
	ssize_t (*output)(dv_stream_conn_t *c, uint8_t *buf, size_t cap);
	/* input may be offered now.  Optional (always). */
	bool (*want_input)(dv_stream_conn_t *c);
	/* Optional: the application is done with the connection. */
	bool (*want_close)(dv_stream_conn_t *c);
	/* Optional: the listener drains (answer what is in flight, take no
	 * new requests). */
	void (*drain)(dv_stream_conn_t *c);
	/* Optional: free c->app_state. */
	void (*close)(dv_stream_conn_t *c);
	/* a request has started and is not complete (its bytes may sit inside
	 * the application): limits.tcp-read-timeout-ms runs.  Optional. */
	bool (*receiving)(dv_stream_conn_t *c);
	/* Whether the socket should be read: `reading` says whether it is
	 * now (so a bound can stop at a high mark and resume lower).
	 * Optional: want_input, and unsent output under
	 * limits.tcp-max-output-bytes (under half of it to resume). */
	bool (*want_read)(dv_stream_conn_t *c, bool reading);
	/* The unread input `in` holds a request that can be taken as soon
	 * as the connection is under its limits, without more bytes.
	 * Optional: unless the last input() took nothing of it. */
	bool (*input_ready)(dv_stream_conn_t *c, const uint8_t *in,
			    size_t len);
	/* How many bytes the input buffer must hold for the request at the
	 * front of `in` to be whole (a read buffer is sized to that, at most
	 * the largest DNS frame).  Optional: no more than a read. */
	size_t (*input_need)(dv_stream_conn_t *c, const uint8_t *in,
			     size_t len);
	/* Answer bytes the application holds and has not output yet
	 * (counted in the worker's limits.worker-max-output).  Optional:
	 * none. */
	size_t (*unsent)(dv_stream_conn_t *c);
	/* Whether the application has output to give without more input
	 * from the client (while the worker is over its budget, such a
	 * connection takes no more input).  Optional: none. */
	bool (*output_ready)(dv_stream_conn_t *c);
	/* Finished while the client may still be sending (an HTTP error that
	 * closes the connection, a request body refused): shut our side down
	 * and read and drop for a moment before closing, so that the client
	 * is not reset before it has read our last response.  Else the
	 * connection closes at once. */
	bool linger;
} dv_stream_app_t;

/* DNS length-prefixed framing (RFC 1035 4.2.2, RFC 7766, RFC 7858). */
extern const dv_stream_app_t dv_stream_dns_app;

typedef struct {
	dv_scheme_t scheme;
	bool encrypted; /* pad answers to padded queries */
	const dv_stream_app_t *app; /* e.g. &dv_stream_dns_app */
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
	/* Optional: send what the I/O layer holds of earlier writes (TLS
	 * records the socket did not take): 0 when all is out,
	 * DV_TLS_WANT_WRITE, or an error; and how many bytes that is (they
	 * count as unsent output: backpressure, the write timeout). */
	int (*flush)(dv_stream_conn_t *c);
	size_t (*unsent)(dv_stream_conn_t *c);
	/* free the I/O state (the fd is closed by the caller) */
	void (*close)(dv_stream_conn_t *c);
} dv_stream_io_t;

/* SC_LINGER: the application has finished (its last response is out) but
 * the client may still be sending; our side is shut down and its bytes are
 * read and dropped for a moment so that closing does not reset the
 * connection before the client has read that response. */
/* SC_PROXY: a ?proxy-protocol listener's connection whose PROXY v2 header
 * has not been read yet (no I/O layer, no application). */
typedef enum {
	SC_PROXY,
	SC_HANDSHAKE,
	SC_OPEN,
	SC_LINGER,
	SC_CLOSED
} dv_stream_state_t;

struct dv_stream_conn {
	dv_stream_listener_t *l;
	dv_stream_state_t state;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	void *io_state;  /* the transport's (e.g. dv_tls_t) */
	char sni[256]; /* set by the transport after its handshake */
	/* the client ID of a verified client certificate (q->cert_id), NULL
	 * if none; the transport's, set after its handshake */
	const char *cert_id;
	/* the policy's memo of who this connection is (q->ident_memo) */
	uint16_t ident_memo;
	void *app_state;
	/* set by the transport's read: it emptied the socket (a short read),
	 * so the next bytes come with the next readable event and the
	 * stream does not read again before it */
	bool rx_drained;
	/* closed because the peer misbehaved or stopped reading: no goodbye
	 * (a TLS close_notify) is owed, and none could be sent behind a write
	 * that is still blocked */
	bool aborted;
};

struct dv_stream_listener {
	dv_worker_t *w;
	const dv_stream_io_t *io;
	void *io_ctx; /* the transport's listener state */
	uint8_t listener; /* its queries' q->listener (dv_worker_listener) */
};

typedef struct dv_query dv_query_t;
typedef void (*dv_stream_reply_fn)(dv_query_t *q, const uint8_t *wire,
				   size_t len);

/* A query object for a message read on `c`, its peer and SNI filled in.
 * NULL when memory is short. */
dv_query_t *dv_stream_query(dv_stream_conn_t *c, const uint8_t *wire,
			    size_t len, dv_stream_reply_fn reply);
/* Hand `q` to the core, counted in flight on `c`.  Returns 0, or the core's
 * drop code (no answer will come; q is freed). */
int dv_stream_submit(dv_stream_conn_t *c, dv_query_t *q);
/* In a reply hook: the query is no longer in flight; true when the
 * connection is open (the answer may be written), false when it is gone. */
bool dv_stream_reply_begin(dv_stream_conn_t *c);
/* At the end of a reply hook: write what is ready, resume reading, free a
 * closed connection.  `c` must not be used afterwards. */
void dv_stream_reply_end(dv_stream_conn_t *c);

/* The application completed a request on `c`: the read timeout starts
 * again with the next one. */
void dv_stream_progress(dv_stream_conn_t *c);

/* `c` is open, its listener is not draining, fewer than `inflight` of its
 * queries are in flight and fewer than `out` bytes of its output unsent
 * (and, while the worker's buffers are over limits.worker-max-output,
 * none, the application's included). */
bool dv_stream_under(const dv_stream_conn_t *c, unsigned inflight,
		     size_t out);
/* The peer broke the protocol (or memory is short): close `c` at once,
 * counted as a stream error; `why` is logged (debug). */
void dv_stream_abort(dv_stream_conn_t *c, const char *why);
/*
 * For an application that writes its output itself: where to write
 * `room` more bytes at the end of c's output buffer (a new buffer is
 * `first` bytes or more), to be committed with dv_stream_out_commit().
 * NULL when memory is short: `c` has been aborted.
 */
uint8_t *dv_stream_out_reserve(dv_stream_conn_t *c, size_t room,
			       size_t first);
void dv_stream_out_commit(dv_stream_conn_t *c, size_t len);

/* The io functions of a plain (unencrypted) socket. */
ssize_t dv_stream_plain_read(dv_stream_conn_t *c, void *buf, size_t len);
ssize_t dv_stream_plain_write(dv_stream_conn_t *c, const void *buf,
			      size_t len);

int dv_stream_listen(dv_worker_t *w, const dv_url_t *url,
		     const dv_stream_io_t *io, void *io_ctx, void **state);
void dv_stream_stop(dv_worker_t *w, void *state);
/* Connections of the listener not yet closed (lingering ones count). */
unsigned dv_stream_open_conns(dv_worker_t *w, void *state);
/* The transport's update op (a reload kept the listener): its index. */
void dv_stream_update(dv_worker_t *w, void *state, const dv_url_t *url);
void dv_stream_close(dv_worker_t *w, void *state);
/* The transport's io_ctx of a listener state from dv_stream_listen. */
void *dv_stream_io_ctx(void *state);

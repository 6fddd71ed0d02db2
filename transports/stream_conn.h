#pragma once
/*
 * Inside the stream machinery: the connection and listener structs that
 * transports/stream.c (a connection: reading, input to the application,
 * output, timers) and transports/stream_listen.c (a listener: accepting,
 * eviction at tcp-max-connections, backoff, stop and close) share.  Not
 * for transports: they see only stream.h.
 */
#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transports/stream.h"

typedef struct listener listener_t;

typedef struct conn {
	dv_stream_conn_t pub; /* first: the transport sees only this */
	ev_io rio, wio;
	ev_timer timer;
	unsigned inflight;
	unsigned busy;      /* inside one of our callbacks */
	bool reading;       /* read watcher should run */
	bool eof;           /* client closed its side */
	bool write_blocked; /* the I/O layer wants to write first */
	bool app_failed;    /* the application refused more input */
	bool again;         /* on the listener's again list */
	bool app_stuck;     /* the application took none of a non-empty
			       buffer: wait for more bytes */
	uint64_t accepted_ms, last_ms, msg_start_ms, linger_until_ms;
	uint64_t out_moved_ms; /* unsent output last started or moved */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	size_t io_held; /* the I/O layer's unsent bytes, counted in the
			   worker's budget */
	size_t app_held; /* the application's, likewise (DoH answers) */
	struct conn *prev, *next; /* most recently active first */
	struct conn *again_next;
} conn_t;

struct listener {
	dv_stream_listener_t pub;
	int fd;
	ev_io io;
	bool stopped;
	unsigned n_conns;
	conn_t *conns, *tail;
	/* connections with buffered work: `again` waits for the next loop
	 * iteration, `again_run` is the batch being run */
	conn_t *again, *again_run;
	ev_timer again_timer;
	/* accept() out of file descriptors: paused, retried after backoff */
	ev_timer accept_timer;
	unsigned backoff_ms;
	uint64_t accept_logged_ms;
	bool proxy; /* ?proxy-protocol: connections start in SC_PROXY */
};

/* Set up a connection for `fd`, accepted from `peer` (the listener has
 * room for it); the fd is closed when that fails or the transport refuses
 * it (counted). */
void dv_stream_conn_start(listener_t *l, int fd,
			  const struct sockaddr_storage *peer,
			  socklen_t peer_len);
/* Open, with nothing in flight, unsent, buffered or being received. */
bool dv_stream_conn_idle(const conn_t *c);
/* Close `c` for a new connection (not counted as an error). */
void dv_stream_conn_evict(conn_t *c);
/* The listener stops: close `c` now if idle, else once its answers are
 * out (the application drains). */
void dv_stream_conn_drain(conn_t *c);
/* The listener closes: every query has been answered; free `c`. */
void dv_stream_conn_destroy(conn_t *c);
/*
 * transports/stream_proxy.c: read the PROXY v2 header of `c` (SC_PROXY)
 * from the socket, never a byte past it.  0 while more bytes are needed,
 * 1 when it is read (c->pub.peer is the client it names, or still the
 * socket's peer for LOCAL), or a negative error (garbage, too long, EOF
 * inside it, a read error) with *why set for the log.
 */
int dv_stream_proxy_read(conn_t *c, const char **why);
/* Whether `peer` may send PROXY headers (proxy-protocol.from). */
bool dv_stream_proxy_allowed(const dv_config_t *cfg,
			     const struct sockaddr_storage *peer);

/* transports/stream_buf.c: a buffer of `cap` bytes for a connection's input
 * or output, from the thread's cache when it has one of that size (NULL
 * when memory is short), and one given back (NULL is fine). */
uint8_t *dv_stream_buf_take(size_t cap);
void dv_stream_buf_give(uint8_t *buf, size_t cap);
/* Give the input buffer of `c` back when it holds nothing. */
void dv_stream_in_idle(conn_t *c);

/*
 * transports/stream_budget.c: a connection's unsent output and the
 * worker's budget for all of them (limits.worker-max-output).
 */
/* Output in our buffer, not yet handed to the I/O layer. */
static inline size_t dv_stream_out_buffered(const conn_t *c)
{
	return c->out_len - c->out_off;
}
/* Set the output buffer (its capacity counts against the budget). */
void dv_stream_out_set_cap(conn_t *c, uint8_t *out, size_t cap);
/* Count again what the I/O layer and the application hold unsent. */
void dv_stream_held_update(conn_t *c);
/* Unsent output: in our buffer, or held by the I/O layer. */
size_t dv_stream_out_pending(const conn_t *c);
/* No more output for now: `cap` bytes are pending, or the worker is over
 * its budget and some of this connection's output is pending. */
bool dv_stream_out_full(const conn_t *c, size_t cap);
/* No more input for now: the worker is over its budget and this
 * connection has output pending, or output its application can give
 * without more input (app->output_ready). */
bool dv_stream_input_held(const conn_t *c);

/* The listener's `again` timer: run the connections with buffered work. */
void dv_stream_again_cb(struct ev_loop *loop, ev_timer *t, int revents);

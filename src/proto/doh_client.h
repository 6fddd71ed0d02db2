#pragma once
/*
 * DNS over HTTPS client (RFC 8484): the HTTP/2 engine of one upstream
 * connection.
 *
 * A pure engine like src/proto/doh_engine.c, its server-side twin: it consumes the bytes
 * the connection read (already decrypted) and renders the bytes to write
 * into the caller's buffer; it owns no socket, no timer and no clock (the
 * pool's attempt timers are the timeouts).  HTTP/2 runs on nghttp2's client
 * session; one connection carries many requests at once, one stream each.
 *
 * A request is an RFC 8484 POST to `path` with `:authority` = the server's
 * name, content-type and accept application/dns-message, and the DNS
 * message with its id set to 0 (RFC 8484 4.1: the answer is matched to its
 * request by stream, not by DNS id).  Each request ends exactly once, by a
 * callback: `answer` with the body of a 200 response whose content-type is
 * application/dns-message (parameters tolerated) and whose body is a DNS
 * header's worth to 65535 bytes; or `failed` for anything else: a non-200
 * status, another content-type, a body over 65535 bytes (the stream is
 * reset as soon as it is exceeded or announced), RST_STREAM from the
 * server, a stream refused by GOAWAY, the connection failing.  `failed`
 * says `retry` when the server promised it did not process the request
 * (REFUSED_STREAM, or above the last-stream-id of its GOAWAY) and this
 * connection takes no new requests: the caller may send it again on
 * another connection.  A request cancelled with dv_doh_client_cancel()
 * ends without a callback.
 *
 * Concurrency: the server's SETTINGS_MAX_CONCURRENT_STREAMS is honoured by
 * nghttp2, which holds requests beyond it until a stream closes;
 * dv_doh_client_max_streams() tells the caller the limit, so it can open
 * another connection instead of queueing.  The caller bounds how many
 * requests it submits (its id slots); the engine holds at most one answer
 * (<= 65535 bytes) per request and a 1 MiB connection receive window.
 *
 * GOAWAY from the server: streams up to its last-stream-id finish
 * normally, the others fail with `retry`; no new request is accepted
 * (dv_doh_client_draining()), and once nothing is in flight the
 * connection is finished (dv_doh_client_want_close()).
 *
 * Callbacks run inside dv_doh_client_input() and dv_doh_client_output(),
 * after nghttp2 has processed the bytes, never inside nghttp2 itself.  They
 * may call dv_doh_client_submit() and dv_doh_client_cancel() on the same
 * engine, but not dv_doh_client_input(), dv_doh_client_output() or
 * dv_doh_client_free().  One connection, one thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct dv_doh_client dv_doh_client_t;

#define DV_DOH_CLIENT_MAX_BODY 65535 /* an answer; more fails the request */

typedef struct {
	/* Request `tag` (dv_doh_client_submit's) was answered: `msg` is the
	 * body (a DNS message of len 12..65535; the engine's buffer, writable,
	 * valid during the call only). */
	void (*answer)(void *user, uint32_t tag, uint8_t *msg, size_t len);
	/* Request `tag` failed; `why` is a short text for logs ("HTTP status
	 * 404", "stream reset: PROTOCOL_ERROR", ...). */
	void (*failed)(void *user, uint32_t tag, bool retry, const char *why);
} dv_doh_client_cb_t;

/*
 * A new engine for one connection to the server called `authority` (the
 * upstream's #NAME), posting to `path` (e.g. "/dns-query").  Both strings
 * are copied; `cb` and `user` are kept.  The client preface and SETTINGS
 * are ready in dv_doh_client_output() at once.  NULL when memory is short
 * or a string is empty or too long (255 bytes).
 */
dv_doh_client_t *dv_doh_client_new(const char *authority, const char *path,
				   const dv_doh_client_cb_t *cb, void *user);

/* Free the engine; requests still in flight end without callbacks.  NULL
 * is a no-op. */
void dv_doh_client_free(dv_doh_client_t *cl);

/*
 * Submit DNS message `msg` (copied; its id is sent as 0) as a new request
 * identified by `tag` in the callbacks.  Returns the stream id (> 0, for
 * dv_doh_client_cancel), DV_ECLOSED when the connection takes no new
 * requests (draining or broken), -EINVAL for a message shorter than a DNS
 * header or over 65535 bytes, -ENOMEM.
 */
int32_t dv_doh_client_submit(dv_doh_client_t *cl, uint32_t tag,
			     const uint8_t *msg, size_t len);

/* Give up request `stream` (RST_STREAM CANCEL): it ends without a
 * callback.  Unknown or finished streams are ignored. */
void dv_doh_client_cancel(dv_doh_client_t *cl, int32_t stream);

/*
 * Consume bytes read from the connection (all of them).  Returns `len`, or
 * a negative error after which the connection is broken (-EPROTO, -ENOMEM:
 * nghttp2 failed fatally).  A connection error in what the server sent
 * (bad frames) is answered with a GOAWAY that dv_doh_client_output()
 * renders; as it does, the connection becomes broken.  Either way every
 * request still in flight fails (not `retry`) and dv_doh_client_want_close()
 * is true.
 */
ssize_t dv_doh_client_input(dv_doh_client_t *cl, const uint8_t *data,
			    size_t len);

/* Render what may be sent now into `buf` (capacity `cap`).  Returns the
 * number of bytes (0: nothing now) or a negative error (broken). */
ssize_t dv_doh_client_output(dv_doh_client_t *cl, uint8_t *buf, size_t cap);

/* dv_doh_client_output() has something to render. */
bool dv_doh_client_want_write(const dv_doh_client_t *cl);

/* No new requests are accepted: GOAWAY received, or the connection is
 * broken. */
bool dv_doh_client_draining(const dv_doh_client_t *cl);

/* The connection is finished (draining and nothing left in flight, or
 * broken): close it once the output is flushed. */
bool dv_doh_client_want_close(const dv_doh_client_t *cl);

/* The connection is broken (a connection error, either side's): unlike a
 * graceful GOAWAY, a failure of the server. */
bool dv_doh_client_broken(const dv_doh_client_t *cl);

/* The server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS
 * arrive; at most UINT32_MAX). */
uint32_t dv_doh_client_max_streams(const dv_doh_client_t *cl);

/* Requests submitted whose callback has not run yet (queued, on the wire,
 * or ended with the callback pending; cancelled ones not counted). */
unsigned dv_doh_client_inflight(const dv_doh_client_t *cl);

#pragma once
/*
 * DNS over HTTPS (RFC 8484): the protocol engine of one connection.
 *
 * A pure engine, built like nghttp2 itself: it consumes the bytes the
 * connection read (already decrypted) and produces the bytes to write into
 * the caller's buffer.  It owns no socket, no timer and no clock (timeouts
 * are the transport's), and calls back only to hand over complete, valid
 * DNS queries.  HTTP/2 runs on nghttp2's server session (h2 over TLS and
 * h2c with prior knowledge are the same thing here: the client preface);
 * HTTP/1.1 runs on http-parser.  No HTTP parsing is done by hand.
 *
 * What the engine answers by itself (short text/plain body, e.g.
 * "400 bad request: dns parameter is not valid base64url\n"):
 *   400  no/empty/invalid `dns` parameter (base64url, padding optional),
 *        a DNS message shorter than 12 bytes, with QR set or QDCOUNT != 1,
 *        an unparsable request target, HTTP/1.1 without Host, broken HTTP/1
 *        (which includes, RFC 9112 5.1, 5.2 and 2.2: whitespace between a
 *        field name and its colon or inside the name, obs-fold, a line of
 *        the head not ended by CRLF)
 *   404  path not one of opts->paths (exact match, query string excluded),
 *        nor one of them + "/" + a client ID (one DNS label)
 *   405  any method but GET and POST, HEAD (no body) and OPTIONS too
 *        (with "allow: GET, POST")
 *   413  a body (POST or not) over 65535 bytes, as soon as it is exceeded
 *        or announced by content-length; nothing more of it is buffered
 *   415  POST without content-type application/dns-message (parameters
 *        such as "; charset=..." are tolerated)
 *   431  more than opts->max_header_bytes of request target + header
 *        names + values (HTTP/2: when more fields follow the one that
 *        went over, the stream is reset with ENHANCE_YOUR_CALM at once
 *        instead, so an HPACK bomb is not decoded to its end)
 *   505  HTTP/1 request line with a major version other than 1 (also a
 *        "PRI * HTTP/2.0" preface on the HTTP/1 path)
 * A DNS message with a readable header that is otherwise malformed is
 * passed on: the core answers it FORMERR.  On HTTP/1.1, broken HTTP, a
 * method token http-parser does not know (405), 413, 431 and 505 end the
 * connection (the byte stream cannot be trusted or is not read further);
 * the others keep it alive.  On HTTP/2 every one of them ends only its
 * stream: an answer given before the request has ended is followed by
 * RST_STREAM(NO_ERROR).
 *
 * Everything else is the transport's: it answers each query exactly once,
 * with dv_doh_answer() (200, content-type application/dns-message,
 * content-length, cache-control max-age) or dv_doh_error() (e.g. 503).
 *
 * Backpressure: dv_doh_input() returns how many bytes it consumed, and
 * stops consuming (returns less than it was given) once opts->max_streams
 * queries are waiting for dv_doh_answer()/dv_doh_error() (HTTP/2: checked
 * between frames; HTTP/1.1: between requests, counting every request whose
 * response has not been fully handed to dv_doh_output(), since responses
 * leave strictly in request order).  The caller keeps the rest and offers it
 * again once dv_doh_want_input() is true: that changes only in
 * dv_doh_answer(), dv_doh_error() and dv_doh_output().  So a connection
 * costs at most max_streams queries, their answers (each <= 64 KiB) and the
 * bytes the caller holds.  HTTP/2 streams beyond max_streams are refused
 * by nghttp2 (SETTINGS_MAX_CONCURRENT_STREAMS, REFUSED_STREAM), and a
 * client that resets its streams (rapid reset) still cannot get more than
 * max_streams queries in flight: a query whose stream is gone counts until
 * it is answered (that answer is dropped).
 *
 * Output: nothing is rendered ahead; dv_doh_output() renders into the
 * caller's buffer what may be sent now (HTTP/2 flow control honoured: a
 * large answer to a client with a small window goes out as the window
 * opens).  dv_doh_unsent() tells how many response bytes the engine holds.
 *
 * Closing: dv_doh_want_close() says the connection is finished once the
 * output has been flushed: after "Connection: close", an HTTP/1.0 request,
 * an HTTP/1 error that ends the connection, the end of a drain, a GOAWAY
 * exchanged, or a fatal HTTP/2 error.  A negative dv_doh_input() means the
 * same: read no more, keep calling dv_doh_output() (earlier HTTP/1.1
 * requests still get their answers, then the error response), and close
 * when dv_doh_want_close().
 *
 * Threading and reentrancy: one connection, one thread.  The query callback
 * runs inside dv_doh_input(); it may call dv_doh_answer(), dv_doh_error()
 * and dv_doh_drain() on the same engine (a cache hit answered at once) but
 * must not call dv_doh_input(), dv_doh_output() or dv_doh_free().
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct dv_doh dv_doh_t;

typedef enum { DV_DOH_H2, DV_DOH_HTTP1 } dv_doh_proto_t;

#define DV_DOH_DEFAULT_MAX_STREAMS 100
#define DV_DOH_DEFAULT_MAX_HEADER_BYTES 8192
#define DV_DOH_MAX_BODY 65535 /* a DNS message; more is 413 */

typedef struct {
	/* e.g. "/dns-query", "/dns-query/kids": exact match, query string
	 * excluded.  The strings must outlive the engine: the query callback
	 * reports the matching one by pointer. */
	const char *const *paths;
	unsigned n_paths;
	/* HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS; HTTP/1.1: pipelined
	 * requests held.  Both: queries in flight.  0: the default (100). */
	unsigned max_streams;
	/* request target + header names + values; more is 431.  0: 8192;
	 * at most 65535.  HTTP/2 advertises it (plus HPACK's 32 bytes a
	 * field) as SETTINGS_MAX_HEADER_LIST_SIZE. */
	size_t max_header_bytes;
	/* The peer is a trusted proxy: report the right-most address of
	 * X-Forwarded-For / the last for= of Forwarded.  When both headers
	 * are present they must name the same address, else none is
	 * reported (a client could add the one the proxy does not write). */
	bool trust_forwarded;
} dv_doh_opts_t;

typedef struct {
	/*
	 * One complete, valid DoH request.  `msg` is the DNS message (GET:
	 * the decoded dns parameter, POST: the body), `path` is the matching
	 * opts->paths entry, `client_id` the client ID the request path
	 * carried after it ("/dns-query/{id}": one DNS label, lowercased) or
	 * NULL, `forwarded_for` the client address the trusted
	 * proxy reported (canonical inet_ntop text), or NULL.  All of them
	 * are valid only during the call: the engine owns nothing after it.
	 * `stream` identifies the request for dv_doh_answer/dv_doh_error
	 * (HTTP/2 stream id; HTTP/1 request number, from 1).
	 */
	void (*query)(void *user, uint32_t stream, const char *path,
		      const char *client_id, const uint8_t *msg, size_t len,
		      const char *forwarded_for);
} dv_doh_cb_t;

/*
 * A new engine for one connection.  `opts` is copied (the path strings are
 * not), `cb` and `user` are kept.  An HTTP/2 engine has its SETTINGS ready
 * in dv_doh_output() at once.  Returns NULL when memory is short or the
 * options are unusable (no paths).
 */
dv_doh_t *dv_doh_new(dv_doh_proto_t proto, const dv_doh_opts_t *opts,
		     const dv_doh_cb_t *cb, void *user);

/* Free the engine and everything it holds; NULL is a no-op.  Queries still
 * in flight may be answered no more. */
void dv_doh_free(dv_doh_t *d);

/*
 * Consume bytes read from the connection.  Returns how many were consumed
 * (fewer than `len` when the engine is at its limit, see above; bytes after
 * the end of the connection's last request are consumed and dropped), or a
 * negative error after which the connection must close once the output is
 * flushed (see dv_doh_want_close):
 *   -EPROTO    not HTTP/2 (bad preface: no GOAWAY, RFC 9113 3.4) /
 *              malformed HTTP/1, an HTTP/2 connection error, 505
 *   DV_ELIMIT  431, or a 413 that ends an HTTP/1 connection; an HTTP/2
 *              flood (PING or SETTINGS ACKs piling up, more than 8
 *              CONTINUATION frames), header fields out of proportion to
 *              the bytes received (more than 4 x max_header_bytes + 32 x
 *              them: an HPACK bomb) or a fifth request over
 *              max_header_bytes
 *   -ENOMEM    memory is short
 * After an HTTP/2 connection error the output holds a GOAWAY with its code
 * (ENHANCE_YOUR_CALM for the floods); dv_doh_want_close() waits for it.
 */
ssize_t dv_doh_input(dv_doh_t *d, const uint8_t *data, size_t len);

/*
 * Answer query `stream` (from the query callback) with DNS message `msg`
 * (copied): 200, application/dns-message, content-length, cache-control
 * max-age=`max_age`.  Returns 0 (also when the client has gone away in
 * between: the answer is dropped), DV_ENOTFOUND for a stream with no query
 * waiting, -EINVAL for a message over 65535 bytes (the query is then
 * answered 500), -ENOMEM.
 */
int dv_doh_answer(dv_doh_t *d, uint32_t stream, const uint8_t *msg,
		  size_t len, uint32_t max_age);

/* Answer query `stream` with HTTP `status` (400..599) and a short text
 * body, for the transport's own failures (e.g. 503).  Returns as
 * dv_doh_answer, -EINVAL for a status outside 400..599. */
int dv_doh_error(dv_doh_t *d, uint32_t stream, unsigned status);

/*
 * Render what may be sent now into `buf` (capacity `cap`).  Returns the
 * number of bytes (0: nothing to send now), or a negative error (the
 * connection is broken: close it).
 */
ssize_t dv_doh_output(dv_doh_t *d, uint8_t *buf, size_t cap);

/* The engine is finished: close the connection once the output returned
 * so far has been written. */
bool dv_doh_want_close(const dv_doh_t *d);

/* dv_doh_input() would consume bytes now (not at its limit, not done). */
bool dv_doh_want_input(const dv_doh_t *d);

/*
 * Stop taking requests.  HTTP/2: GOAWAY (NO_ERROR) naming the last stream
 * seen; streams up to it are answered, later ones refused.  HTTP/1.1: the
 * request being received, or else the last one in flight, is answered with
 * "Connection: close"; when nothing is in flight the connection is done.
 */
void dv_doh_drain(dv_doh_t *d);

/*
 * A request has started to arrive and is not complete (HTTP/1.1: a request
 * line, headers or body; HTTP/2: a stream whose request has not ended, or
 * a frame cut short).  The bytes are inside the engine, not in the
 * caller's buffer, so this is how the transport knows when its read
 * timeout applies (slow-loris clients, streams that never end, even while
 * the client keeps the connection busy with PINGs).  False between
 * requests, whatever is in flight.
 */
bool dv_doh_receiving(const dv_doh_t *d);

/* Queries handed to the callback and not yet answered (including those
 * whose client has gone away). */
unsigned dv_doh_inflight(const dv_doh_t *d);

/* Response bytes the engine holds that dv_doh_output() has not returned
 * yet (answers waiting for their turn or for flow-control window). */
size_t dv_doh_unsent(const dv_doh_t *d);

/* Whether dv_doh_output() has something to return without more input
 * from the client: HTTP/1.1, any response held (they leave as fast as the
 * caller sends); HTTP/2, frames nghttp2 may send now (not answers stalled
 * by the client's flow-control window, which only its WINDOW_UPDATE, that
 * is more input, releases). */
bool dv_doh_output_ready(const dv_doh_t *d);

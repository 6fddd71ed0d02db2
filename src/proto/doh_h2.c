/*
 * DoH over HTTP/2, through nghttp2's server session (the engine: doh_engine.c).
 *
 * Design notes.
 *
 * nghttp2 does the protocol: HPACK, flow control, stream states,
 * SETTINGS, refusing streams over MAX_CONCURRENT_STREAMS, GOAWAY on
 * connection errors.  We feed it with nghttp2_session_mem_recv() and let
 * nghttp2_session_send() write through the send callback straight into
 * the caller's buffer (partial writes are part of that callback's
 * contract), so the engine renders nothing ahead and holds no output
 * buffer: a response body stays in its stream until the data provider
 * copies it out, window permitting.  For backpressure the input is handed
 * to nghttp2 one frame at a time (only the 9-byte frame header's length is
 * looked at, to know where frames end) and stops between frames while
 * max_streams queries are in flight.  A stream that goes away while its
 * query is in flight becomes an "orphan": it keeps counting until the
 * transport answers it, so resetting streams does not buy more queries.
 * An error response sent before the request ended (405, 413, 415, 404...)
 * does not reset the stream at once, although RFC 9113 8.1 allows
 * RST_STREAM(NO_ERROR) there: curl (7.88, as Debian 12 ships it) then
 * drops the response it has just read and fails with error 92.  The rest
 * of the body is read and dropped instead, up to DISCARD_MAX bytes (a
 * whole stream window and as much again); past that the stream is reset.
 * A client that stalls in the middle of that body is held to the read
 * timeout like one that stalls in a request.
 * Floods of CONTINUATION frames and of stream resets are bounded by
 * nghttp2's own defaults (Debian's 1.52 has both fixes backported).  Every
 * connection error ends with a GOAWAY written before the close: nghttp2
 * queues its own for protocol errors, and h2_fatal() one for what it hands
 * back to us (floods of ACKs or CONTINUATIONs, our callbacks' failures).
 * HPACK bombs are bounded per request and per connection (see
 * h2_header_cb).
 *
 * This file touches the request only through doh_request.c's checks, and
 * the engine only through the HTTP/2 fields of struct dv_doh and
 * dv_doh_h2_ops (doh_engine.h).
 */
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/proto/doh_engine.h"

enum { S_RECV, S_QUERY, S_RESP, S_ORPHAN };

struct h2s {
	struct h2s *prev, *next; /* live or orphan list */
	int32_t id;
	uint8_t state; /* S_* */
	req_t req;
	const uint8_t *resp; /* response body: owned answer or text */
	uint8_t *owned;
	size_t resp_len, resp_off;
	char text[48]; /* generic error text */
	/* answered before the request ended: the body bytes still taken and
	 * dropped before the stream is reset (discarding) */
	bool discarding;
	uint32_t discard_left;
};

#define DISCARD_MAX (2 * (DV_DOH_MAX_BODY + 1))

static void list_add(h2s_t **head, h2s_t *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

static void list_del(h2s_t **head, h2s_t *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void h2s_free(dv_doh_t *d, h2s_t *s)
{
	if (s->owned)
		d->unsent -= s->resp_len - s->resp_off;
	dv_doh_pool_free(&d->pool, s->owned);
	dv_doh_req_free(&s->req);
	dv_doh_pool_free(&d->pool, s);
}

static h2s_t *h2_stream(dv_doh_t *d, int32_t id)
{
	return nghttp2_session_get_stream_user_data(d->h2, id);
}

static ssize_t h2_send_cb(nghttp2_session *session, const uint8_t *data,
			  size_t length, int flags, void *user)
{
	dv_doh_t *d = user;
	size_t n = d->obuf ? d->ocap - d->olen : 0;
	if (n == 0)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n > length)
		n = length;
	memcpy(d->obuf + d->olen, data, n);
	d->olen += n;
	return (ssize_t)n;
}

static ssize_t h2_read_cb(nghttp2_session *session, int32_t stream_id,
			  uint8_t *buf, size_t length, uint32_t *data_flags,
			  nghttp2_data_source *source, void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = source->ptr;
	size_t n = s->resp_len - s->resp_off;
	size_t room = d->obuf ? d->ocap - d->olen : 0;
	if (n > length)
		n = length;
	if (room >= 9 + n) {
		/* the whole frame fits the caller's buffer: h2_send_data_cb
		 * writes the body there, nghttp2 never copies it */
		*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	} else {
		memcpy(buf, s->resp + s->resp_off, n);
	}
	s->resp_off += n;
	if (s->owned)
		d->unsent -= n;
	if (s->resp_off == s->resp_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* A DATA frame whose body h2_read_cb left in the stream (NO_COPY): its
 * header and body straight into the caller's buffer, which h2_read_cb
 * saw had room for both (nothing is written between the two calls). */
static int h2_send_data_cb(nghttp2_session *session, nghttp2_frame *frame,
			   const uint8_t *framehd, size_t length,
			   nghttp2_data_source *source, void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = source->ptr;
	if (!d->obuf || d->ocap - d->olen < 9 + length ||
	    frame->data.padlen > 0 || length > s->resp_off)
		return NGHTTP2_ERR_CALLBACK_FAILURE; /* cannot happen */
	memcpy(d->obuf + d->olen, framehd, 9);
	memcpy(d->obuf + d->olen + 9, s->resp + s->resp_off - length, length);
	d->olen += 9 + length;
	return 0;
}

#define NV(n, v, vl)                                                         \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),  \
		      NGHTTP2_NV_FLAG_NO_COPY_NAME})

/* Submit the response held in `s` (resp/resp_len): status 200 with the
 * DNS headers, or an error with a text body. */
static int h2_submit(dv_doh_t *d, h2s_t *s, unsigned status, uint32_t max_age,
		     bool body)
{
	char st[20], cl[20], cc[8 + 20] = "max-age=";
	nghttp2_nv nv[6];
	size_t n = 0;
	size_t stl = dv_doh_utoa(st, status);
	size_t cll = dv_doh_utoa(cl, s->resp_len);
	nv[n++] = NV(":status", st, stl);
	if (status == 200) {
		size_t ccl = 8 + dv_doh_utoa(cc + 8, max_age);
		nv[n++] = NV("content-type", "application/dns-message", 23);
		nv[n++] = NV("content-length", cl, cll);
		nv[n++] = NV("cache-control", cc, ccl);
	} else {
		nv[n++] = NV("content-type", "text/plain; charset=utf-8", 25);
		if (body)
			nv[n++] = NV("content-length", cl, cll);
		nv[n++] = NV("cache-control", "no-store", 8);
		if (status == 405)
			nv[n++] = NV("allow", "GET, POST", 9);
	}
	nghttp2_data_provider prd = {.source.ptr = s,
				     .read_callback = h2_read_cb};
	s->state = S_RESP;
	int rv = nghttp2_submit_response(d->h2, s->id, nv, n,
					 body ? &prd : NULL);
	if (rv != 0) {
		nghttp2_submit_rst_stream(d->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
		return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	return 0;
}

static int h2_error(dv_doh_t *d, h2s_t *s, unsigned status, const char *why)
{
	const char *t =
		dv_doh_error_text(status, why, s->text, sizeof(s->text));
	s->resp = (const uint8_t *)t;
	s->resp_len = strlen(t);
	s->resp_off = 0;
	return h2_submit(d, s, status, 0, s->req.method != M_HEAD);
}

/* The request on `s` has ended (END_STREAM). */
static void h2_request_end(dv_doh_t *d, h2s_t *s)
{
	if (s->state != S_RECV)
		return;
	if (d->draining && s->id > d->goaway_last) {
		/* came after our GOAWAY named the last stream: the client
		 * retries it elsewhere */
		s->state = S_RESP;
		nghttp2_submit_rst_stream(d->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_REFUSED_STREAM);
		return;
	}
	const uint8_t *msg = NULL;
	size_t len = 0;
	int rv = dv_doh_req_finish(&s->req, &msg, &len);
	if (rv < 0) {
		h2_error(d, s, 500, T_500);
		return;
	}
	if (rv > 0) {
		h2_error(d, s, (unsigned)rv, s->req.why);
		return;
	}
	char fbuf[ADDR_TEXT];
	const char *fwd = dv_doh_forwarded_for(d, &s->req, fbuf);
	s->state = S_QUERY;
	d->outstanding++;
	d->cb.query(d->user, (uint32_t)s->id, s->req.path,
		    s->req.client_id[0] ? s->req.client_id : NULL, msg, len,
		    fwd);
	/* the request is no longer needed, whatever the callback did */
	dv_doh_req_free(&s->req);
}

static int h2_begin_headers_cb(nghttp2_session *session,
			       const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	h2s_t *s = dv_doh_pool_calloc(&d->pool, 1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* stream reset */
	s->id = frame->hd.stream_id;
	s->req.pool = &d->pool;
	if (nghttp2_session_set_stream_user_data(session, s->id, s) != 0) {
		dv_doh_pool_free(&d->pool, s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	list_add(&d->live, s);
	return 0;
}

/*
 * What a connection may make us decode.  HPACK lets one byte stand for a
 * whole dynamic-table entry (up to 4064 bytes with the default 4096-byte
 * table), and nghttp2 validates every field it hands us byte by byte: a
 * 12 KB header block of references to one 4 KB entry is 48 MB of work.
 * Three bounds, each checked as a field arrives, before the next one is
 * decoded for us:
 *  - a request: no field after the one that took it over
 *    max_header_bytes (that one decides the 431; if more follow, the
 *    stream is reset, see h2_header_cb);
 *  - a connection: header bytes handed to us at most HDR_SLACK +
 *    HDR_RATIO x the bytes it sent (measured on real clients: curl,
 *    h2load, kdig, httpx stay under 3x, since a request's path or body
 *    is sent literally; python3-h2 repeating one GET, every field
 *    indexed, reaches 11x);
 *  - a connection: at most MAX_OVERSIZED requests over max_header_bytes
 *    (each is decoded up to the limit; a client whose requests keep
 *    going over it gets nothing from the connection anyway).
 * Over either connection bound: GOAWAY(ENHANCE_YOUR_CALM), the code RFC
 * 9113 5.4.1/10.5 gives for a peer "exhibiting a behavior that might be
 * generating excessive load".  COMPRESSION_ERROR would be wrong: the
 * compression context is intact, the HPACK is valid.
 *
 * A smaller SETTINGS_HEADER_TABLE_SIZE would only change how many bytes
 * the attacker needs to reach these bounds, not the bounds, and it would
 * cost every client its compression (and the table is 4096 bytes until
 * our SETTINGS are acknowledged anyway), so we keep the default.
 */
#define HDR_RATIO 32
#define HDR_SLACK(d) (4 * (uint64_t)(d)->opts.max_header_bytes)
#define MAX_OVERSIZED 4

/* End the connection from inside a callback: nghttp2 stops at once and
 * h2_input() sends GOAWAY(code). */
static int h2_fail(dv_doh_t *d, uint32_t code)
{
	d->fail_code = code;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	dv_doh_t *d = user;
	size_t len = namelen + valuelen;
	d->hdr_fields += len;
	if (d->hdr_fields > HDR_SLACK(d) + HDR_RATIO * d->rx)
		return h2_fail(d, NGHTTP2_ENHANCE_YOUR_CALM);
	h2s_t *s = h2_stream(d, frame->hd.stream_id);
	if (!s)
		return 0;
	req_t *r = &s->req;
	if (r->hdr_bytes > d->opts.max_header_bytes) {
		/*
		 * More fields after the one that took the request over the
		 * limit.  Every one of them would be decoded and validated
		 * for nothing, so nghttp2 must stop handing them over: that
		 * is TEMPORAL_CALLBACK_FAILURE, which resets the stream
		 * (nghttp2 1.52 then drops any response queued on it, so
		 * the 431 cannot be sent).  Our RST_STREAM goes first to
		 * carry ENHANCE_YOUR_CALM instead of nghttp2's
		 * INTERNAL_ERROR: the request was too large, nothing broke
		 * here, and REFUSED_STREAM would invite a retry.
		 */
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_ENHANCE_YOUR_CALM);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	/* trailers count against the limit too, and are otherwise ignored */
	if (!dv_doh_req_count(d, r, len)) {
		if (++d->oversized > MAX_OVERSIZED)
			return h2_fail(d, NGHTTP2_ENHANCE_YOUR_CALM);
		return 0; /* 431, unless more fields follow (above) */
	}
	if (s->state != S_RECV || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	const char *n = (const char *)name, *v = (const char *)value;
	if (namelen && n[0] == ':') {
		if (name_is(n, namelen, ":method"))
			r->method = dv_doh_req_method(v, valuelen);
		else if (name_is(n, namelen, ":path") &&
			 dv_doh_req_target(r, v, valuelen) < 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (name_is(n, namelen, "content-length")) {
		/* nghttp2 checked it is digits and matches the DATA sent */
		r->cl_known = true;
		r->cl = 0;
		for (size_t i = 0; i < valuelen && r->cl <= DV_DOH_MAX_BODY;
		     i++)
			r->cl = r->cl * 10 + (uint64_t)(v[i] - '0');
		return 0;
	}
	dv_doh_req_header(d, r, n, namelen, v, valuelen);
	return 0;
}

static int h2_frame_recv_cb(nghttp2_session *session,
			    const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	h2s_t *s = h2_stream(d, frame->hd.stream_id);
	if (!s)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST && s->state == S_RECV) {
		dv_doh_req_head_done(d, &s->req, s->req.cl_known, s->req.cl);
		if (s->req.status) {
			/* answer now; the rest of the request is ignored */
			h2_error(d, s, s->req.status, s->req.why);
			dv_doh_req_free(&s->req);
			return 0;
		}
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		h2_request_end(d, s);
	return 0;
}

static int h2_data_cb(nghttp2_session *session, uint8_t flags,
		      int32_t stream_id, const uint8_t *data, size_t len,
		      void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = h2_stream(d, stream_id);
	if (s && s->discarding) {
		if (len > s->discard_left) {
			/* more than the bound: stop the upload after all */
			s->discarding = false;
			nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
						  stream_id, NGHTTP2_NO_ERROR);
		} else {
			s->discard_left -= (uint32_t)len;
		}
		return 0;
	}
	if (!s || s->state != S_RECV)
		return 0;
	int rv = dv_doh_req_body(&s->req, (const char *)data, len);
	if (rv == DV_ELIMIT) {
		/* 413 at once; nothing more of it is kept */
		h2_error(d, s, 413, T_413);
		dv_doh_req_free(&s->req);
	} else if (rv < 0) {
		h2_error(d, s, 500, T_500);
		dv_doh_req_free(&s->req);
	}
	return 0;
}

static int h2_frame_send_cb(nghttp2_session *session,
			    const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code != NGHTTP2_NO_ERROR && !d->err)
		d->err = -EPROTO; /* nghttp2 ended the connection */
	if ((frame->hd.type == NGHTTP2_HEADERS ||
	     frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    !nghttp2_session_get_stream_remote_close(session,
						     frame->hd.stream_id)) {
		/* answered before the request ended: read and drop the rest
		 * of the body, within bounds (see the design note) */
		h2s_t *s = h2_stream(d, frame->hd.stream_id);
		if (s) {
			s->discarding = true;
			s->discard_left = DISCARD_MAX;
		} else {
			nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
						  frame->hd.stream_id,
						  NGHTTP2_NO_ERROR);
		}
	}
	return 0;
}

static int h2_stream_close_cb(nghttp2_session *session, int32_t stream_id,
			      uint32_t error_code, void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = h2_stream(d, stream_id);
	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	list_del(&d->live, s);
	if (s->state == S_QUERY) {
		/* its query is in flight: it counts until answered */
		s->state = S_ORPHAN;
		dv_doh_req_free(&s->req);
		list_add(&d->orphans, s);
		return 0;
	}
	h2s_free(d, s);
	return 0;
}

/* nghttp2 allocates through the connection's pool (doh_pool.c) */
static void *h2_mem_malloc(size_t size, void *user)
{
	return dv_doh_pool_alloc(&((dv_doh_t *)user)->pool, size);
}

static void h2_mem_free(void *ptr, void *user)
{
	dv_doh_pool_free(&((dv_doh_t *)user)->pool, ptr);
}

static void *h2_mem_calloc(size_t nmemb, size_t size, void *user)
{
	return dv_doh_pool_calloc(&((dv_doh_t *)user)->pool, nmemb, size);
}

static void *h2_mem_realloc(void *ptr, size_t size, void *user)
{
	return dv_doh_pool_realloc(&((dv_doh_t *)user)->pool, ptr, size);
}

static int h2_init(dv_doh_t *d)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int ret = -ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	if (nghttp2_option_new(&opt) != 0)
		goto fail_opt;
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cbs, h2_send_data_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
		cbs, h2_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
							     h2_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
								  h2_data_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
							     h2_frame_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
		cbs, h2_stream_close_cb);
	/* closed streams are only kept for priorities, which we ignore */
	nghttp2_option_set_no_closed_streams(opt, 1);
	nghttp2_mem mem = {.mem_user_data = d,
			   .malloc = h2_mem_malloc,
			   .free = h2_mem_free,
			   .calloc = h2_mem_calloc,
			   .realloc = h2_mem_realloc};
	/* nghttp2 keeps its own copy of `mem` */
	if (nghttp2_session_server_new3(&d->h2, cbs, d, opt, &mem) != 0)
		goto fail_session;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, d->opts.max_streams},
		/* a whole DNS message per stream without waiting */
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, DV_DOH_MAX_BODY},
		/* advisory; HPACK counts 32 bytes per field on top */
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		 (uint32_t)d->opts.max_header_bytes + 32 * 32},
	};
	if (nghttp2_submit_settings(d->h2, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(d->h2, NGHTTP2_FLAG_NONE, 0,
						  4 * (DV_DOH_MAX_BODY + 1)) !=
		    0) {
		nghttp2_session_del(d->h2);
		d->h2 = NULL;
		goto fail_session;
	}
	d->preface_left = NGHTTP2_CLIENT_MAGIC_LEN;
	ret = 0;
fail_session:
	nghttp2_option_del(opt);
fail_opt:
	nghttp2_session_callbacks_del(cbs);
	return ret;
}

static bool h2_at_limit(const dv_doh_t *d)
{
	return d->preface_left == 0 && d->fh_len == 0 &&
	       d->outstanding >= d->opts.max_streams;
}

/*
 * nghttp2_session_mem_recv() failed fatally.  For the errors nghttp2
 * detects while parsing (a frame on the wrong stream, a bad SETTINGS
 * value...) it has queued its own GOAWAY and returned normally; what
 * lands here is what it leaves to the application: floods (PING or
 * SETTINGS acknowledgements piling up, CONTINUATION after CONTINUATION)
 * and our own callbacks' failures.  RFC 9113 5.4.1: a connection error
 * is a GOAWAY, then the close, so queue one and let dv_doh_output() send
 * it; dv_doh_want_close() holds until it has.  Returns the error for
 * dv_doh_input().
 */
static ssize_t h2_fatal(dv_doh_t *d, int lib_err)
{
	uint32_t code = NGHTTP2_INTERNAL_ERROR;
	d->err = -EPROTO;
	switch (lib_err) {
	case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
		/* not HTTP/2: a GOAWAY means nothing to it, and RFC 9113 3.4
		 * lets us leave it out */
		d->dead = true;
		return d->err;
	case NGHTTP2_ERR_FLOODED:
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		d->err = DV_ELIMIT;
		break;
	case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		d->err = DV_ELIMIT;
		break;
	case NGHTTP2_ERR_CALLBACK_FAILURE:
		if (d->fail_code) {
			code = d->fail_code;
			d->err = code == NGHTTP2_ENHANCE_YOUR_CALM ? DV_ELIMIT
								   : -EPROTO;
		}
		break;
	case NGHTTP2_ERR_NOMEM:
		d->err = -ENOMEM;
		break;
	default:
		break;
	}
	/* naming the last stream we took: the client may retry the rest */
	if (nghttp2_session_terminate_session(d->h2, code) != 0)
		d->dead = true; /* no memory even for that: just close */
	return d->err;
}

static ssize_t h2_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (d->err)
		return d->err;
	size_t off = 0;
	while (off < len && !h2_at_limit(d)) {
		/* up to the end of the preface, frame header or payload */
		size_t chunk = len - off, want;
		if (d->preface_left)
			want = d->preface_left;
		else if (d->fh_len < 9)
			want = 9u - d->fh_len;
		else
			want = d->payload_left;
		if (chunk > want)
			chunk = want;
		d->rx += chunk; /* before: the header budget counts it */
		ssize_t n = nghttp2_session_mem_recv(d->h2, data + off, chunk);
		if (n < 0)
			return h2_fatal(d, (int)n);
		if (n == 0)
			break;
		size_t got = (size_t)n;
		if (d->preface_left) {
			d->preface_left -= got;
		} else if (d->fh_len < 9) {
			memcpy(d->fh + d->fh_len, data + off, got);
			d->fh_len = (uint8_t)(d->fh_len + got);
			if (d->fh_len == 9) {
				d->payload_left = (uint32_t)d->fh[0] << 16 |
						  (uint32_t)d->fh[1] << 8 |
						  d->fh[2];
				if (d->payload_left == 0)
					d->fh_len = 0;
			}
		} else {
			d->payload_left -= (uint32_t)got;
			if (d->payload_left == 0)
				d->fh_len = 0;
		}
		off += got;
		if (d->err)
			return d->err;
	}
	return (ssize_t)off;
}

static ssize_t h2_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	if (d->dead)
		return 0;
	d->obuf = buf;
	d->ocap = cap;
	d->olen = 0;
	int rv = nghttp2_session_send(d->h2);
	d->obuf = NULL;
	if (rv != 0) {
		d->dead = true;
		if (!d->err)
			d->err = -EPROTO;
		return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	return (ssize_t)d->olen;
}

static h2s_t *h2_find_query(dv_doh_t *d, uint32_t stream)
{
	if (stream == 0 || stream > INT32_MAX)
		return NULL;
	h2s_t *s = h2_stream(d, (int32_t)stream);
	if (s)
		return s->state == S_QUERY ? s : NULL;
	for (s = d->orphans; s; s = s->next)
		if (s->id == (int32_t)stream)
			return s;
	return NULL;
}

/* ---- what doh_engine.c calls: dv_doh_h2_ops (doh_engine.h) ---- */

static int h2_answer(dv_doh_t *d, uint32_t stream, unsigned status,
		     const uint8_t *msg, size_t len, uint32_t max_age)
{
	h2s_t *s = h2_find_query(d, stream);
	if (!s)
		return DV_ENOTFOUND;
	d->outstanding--;
	if (s->state == S_ORPHAN) { /* the client is gone */
		list_del(&d->orphans, s);
		h2s_free(d, s);
		return 0;
	}
	if (status != 200)
		return h2_error(d, s, status, status == 500 ? T_500 : NULL);
	s->owned = dv_doh_pool_alloc(&d->pool, len ? len : 1);
	if (!s->owned) {
		h2_error(d, s, 500, T_500);
		return -ENOMEM;
	}
	memcpy(s->owned, msg, len);
	s->resp = s->owned;
	s->resp_len = len;
	s->resp_off = 0;
	d->unsent += len;
	return h2_submit(d, s, 200, max_age, true);
}

static void h2_deinit(dv_doh_t *d)
{
	nghttp2_session_del(d->h2); /* calls no callbacks */
	while (d->live) {
		h2s_t *s = d->live;
		list_del(&d->live, s);
		h2s_free(d, s);
	}
	while (d->orphans) {
		h2s_t *s = d->orphans;
		list_del(&d->orphans, s);
		h2s_free(d, s);
	}
	dv_doh_pool_trim(&d->pool);
}

static bool h2_want_close(const dv_doh_t *d)
{
	return d->dead || (!nghttp2_session_want_read(d->h2) &&
			   !nghttp2_session_want_write(d->h2));
}

static bool h2_want_input(const dv_doh_t *d)
{
	return !d->dead && nghttp2_session_want_read(d->h2) &&
	       !h2_at_limit(d);
}

static bool h2_output_ready(const dv_doh_t *d)
{
	return !d->dead && nghttp2_session_want_write(d->h2);
}

static void h2_drain(dv_doh_t *d)
{
	if (d->dead)
		return;
	d->goaway_last = nghttp2_session_get_last_proc_stream_id(d->h2);
	nghttp2_submit_goaway(d->h2, NGHTTP2_FLAG_NONE, d->goaway_last,
			      NGHTTP2_NO_ERROR, NULL, 0);
}

static bool h2_receiving(const dv_doh_t *d)
{
	if (d->dead || d->err)
		return false;
	if ((d->preface_left && d->preface_left < NGHTTP2_CLIENT_MAGIC_LEN) ||
	    d->fh_len)
		return true; /* a frame cut short */
	for (const h2s_t *s = d->live; s; s = s->next)
		if (s->state == S_RECV || s->discarding)
			return true;
	return false;
}

const dv_doh_ops_t dv_doh_h2_ops = {
	.init = h2_init,
	.deinit = h2_deinit,
	.input = h2_input,
	.output = h2_output,
	.answer = h2_answer,
	.want_close = h2_want_close,
	.want_input = h2_want_input,
	.drain = h2_drain,
	.receiving = h2_receiving,
	.output_ready = h2_output_ready,
};

/*
 * DoH over HTTP/1.1, through http-parser (the engine: doh_engine.c).
 *
 * Design notes.
 *
 * http-parser does the parsing, including chunked bodies; the
 * head of each request passes h1_scan_head() first, which refuses what
 * http-parser 2.9 would let through and RFC 9112 does not (whitespace
 * before a field's colon, obs-fold, bare LF).
 * Responses leave strictly in request order: each request takes a slot in
 * a FIFO (a ring holding at most max_streams + 1); a slot becomes
 * ready when its answer (or the engine's own error) is there, and output
 * renders the head slot only.  The parser is paused after every request
 * (the next head is scanned before it is parsed) and stays paused while
 * the FIFO is full; dv_doh_input() then returns what it consumed.  Errors
 * that leave the byte stream unusable (broken HTTP, 505, 431, 413) end the
 * connection after their response; so do "Connection: close" and HTTP/1.0.
 * The response header is rendered only when the slot reaches the head, so
 * "Connection: close" can still be added by a drain.
 *
 * This file touches the request only through doh_request.c's checks, and
 * the engine only through the HTTP/1.1 fields of struct dv_doh and
 * dv_doh_h1_ops (doh_engine.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/proto/doh_engine.h"

enum { SL_WAIT, SL_READY };
enum { HS_LINE, HS_NAME, HS_REST, HS_CR }; /* see h1_scan_head() */

/* One response to send, in request order. */
struct slot {
	uint32_t id;
	uint8_t state; /* SL_* */
	bool close;    /* the connection ends after this response */
	bool head;     /* HEAD request: no body */
	uint16_t status;
	uint32_t max_age;
	const char *why;
	uint8_t *body; /* answer (status 200) */
	size_t body_len;
};

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static slot_t *q_at(const dv_doh_t *d, unsigned i)
{
	return &d->q[(d->q_head + i) % d->q_cap];
}

static slot_t *q_push(dv_doh_t *d)
{
	if (d->q_len == d->q_cap) {
		unsigned cap = d->q_cap ? d->q_cap * 2 : 4;
		slot_t *q = malloc(cap * sizeof(*q));
		if (!q)
			return NULL;
		for (unsigned i = 0; i < d->q_len; i++)
			q[i] = *q_at(d, i);
		free(d->q);
		d->q = q;
		d->q_cap = cap;
		d->q_head = 0;
	}
	slot_t *s = q_at(d, d->q_len++);
	memset(s, 0, sizeof(*s));
	s->id = d->next_id++;
	if (d->next_id == 0)
		d->next_id = 1;
	return s;
}

static void q_pop(dv_doh_t *d)
{
	slot_t *s = q_at(d, 0);
	dv_doh_pool_free(&d->pool, s->body);
	d->q_head = (d->q_head + 1) % d->q_cap;
	d->q_len--;
}

static slot_t *h1_find_query(dv_doh_t *d, uint32_t stream)
{
	for (unsigned i = 0; i < d->q_len; i++) {
		slot_t *s = q_at(d, i);
		if (s->id == stream)
			return s->state == SL_WAIT ? s : NULL;
	}
	return NULL;
}

/* An error that ends the connection after its response. */
static int h1_fatal(dv_doh_t *d, uint16_t status, const char *why, int err)
{
	d->in_message = false;
	d->stopped = true;
	d->err = err;
	slot_t *s = q_push(d);
	if (!s) {
		d->err = -ENOMEM;
		return -1;
	}
	s->state = SL_READY;
	s->status = status;
	s->why = why;
	s->close = true;
	s->head = d->req.method == M_HEAD;
	return -1; /* stops http-parser */
}

static int h1_431(dv_doh_t *d)
{
	return h1_fatal(d, 431, T_431, DV_ELIMIT);
}

static int h1_on_message_begin(http_parser *p)
{
	dv_doh_t *d = p->data;
	d->in_message = true;
	d->in_value = false;
	d->hname_len = 0;
	d->hval_len = 0;
	dv_doh_req_clear(&d->req);
	return 0;
}

static int h1_on_url(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (!dv_doh_req_count(d, &d->req, len))
		return h1_431(d);
	if (dv_doh_req_target(&d->req, at, len) < 0)
		return h1_fatal(d, 500, T_500, -ENOMEM);
	return 0;
}

static void h1_header_done(dv_doh_t *d)
{
	if (d->in_value && d->keep_value)
		dv_doh_req_header(d, &d->req, d->hname, d->hname_len,
				  d->hval, d->hval_len);
	d->in_value = false;
	d->hname_len = 0;
	d->hval_len = 0;
}

static int h1_on_header_field(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (d->in_value)
		h1_header_done(d);
	if (!dv_doh_req_count(d, &d->req, len))
		return h1_431(d);
	size_t room = sizeof(d->hname) - 1;
	if (d->hname_len < room)
		memcpy(d->hname + d->hname_len, at,
		       len < room - d->hname_len ? len : room - d->hname_len);
	d->hname_len += len; /* > room: not a name we read */
	return 0;
}

static int h1_on_header_value(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (!d->in_value) {
		d->in_value = true;
		d->keep_value = d->hname_len < sizeof(d->hname) &&
				dv_doh_req_wants(d->hname, d->hname_len);
	}
	if (!dv_doh_req_count(d, &d->req, len))
		return h1_431(d);
	if (!d->keep_value)
		return 0;
	/* + 1: an empty value still has a buffer to point at */
	if (dv_doh_grow(&d->hval, &d->hval_cap, d->hval_len + len + 1, 1))
		return h1_fatal(d, 500, T_500, -ENOMEM);
	if (len)
		memcpy(d->hval + d->hval_len, at, len);
	d->hval_len += len;
	return 0;
}

static int h1_on_headers_complete(http_parser *p)
{
	dv_doh_t *d = p->data;
	req_t *r = &d->req;
	h1_header_done(d);
	r->method = p->method == HTTP_GET    ? M_GET
		    : p->method == HTTP_POST ? M_POST
		    : p->method == HTTP_HEAD ? M_HEAD
					     : M_OTHER;
	if (p->http_major != 1)
		return h1_fatal(d, 505, T_505, -EPROTO);
	bool cl_known = !(p->flags & F_CHUNKED) && p->content_length != 0 &&
			p->content_length != UINT64_MAX;
	if (cl_known && p->content_length > DV_DOH_MAX_BODY)
		return h1_fatal(d, 413, T_413, DV_ELIMIT); /* don't read it */
	if (p->http_minor >= 1 && !r->host_seen)
		dv_doh_req_fail(r, 400, T_HOST);
	dv_doh_req_head_done(d, r, cl_known, p->content_length);
	if (r->expect_continue && !r->status && r->method == M_POST &&
	    p->http_minor >= 1 && d->q_len == 0) {
		/* nothing queued before it, so it can go out now */
		d->interim = true;
		d->interim_off = 0;
	}
	return 0;
}

static int h1_on_body(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	int rv = dv_doh_req_body(&d->req, at, len);
	if (rv == DV_ELIMIT)
		return h1_fatal(d, 413, T_413, DV_ELIMIT);
	if (rv < 0)
		return h1_fatal(d, 500, T_500, -ENOMEM);
	return 0;
}

static int h1_on_message_complete(http_parser *p)
{
	dv_doh_t *d = p->data;
	req_t *r = &d->req;
	d->in_message = false;
	bool close = !http_should_keep_alive(p) || p->http_minor == 0 ||
		     p->method == HTTP_CONNECT || d->draining;
	slot_t *s = q_push(d);
	if (!s) {
		d->err = -ENOMEM;
		d->stopped = true;
		return -1;
	}
	uint32_t id = s->id;
	s->close = close;
	s->head = r->method == M_HEAD;
	if (close)
		d->stopped = true;
	const uint8_t *msg = NULL;
	size_t len = 0;
	int rv = dv_doh_req_finish(r, &msg, &len);
	if (rv != 0) {
		s->state = SL_READY;
		s->status = rv < 0 ? 500 : (uint16_t)rv;
		s->why = rv < 0 ? T_500 : r->why;
	} else {
		char fbuf[ADDR_TEXT];
		const char *fwd = dv_doh_forwarded_for(d, r, fbuf);
		s->state = SL_WAIT;
		d->outstanding++;
		/* may answer at once (or drain): `s` is not used after */
		d->cb.query(d->user, id, r->path,
			    r->client_id[0] ? r->client_id : NULL, msg, len,
			    fwd);
	}
	if (r->body_cap > 4096) { /* a large POST: don't keep its buffer */
		free(r->body);
		r->body = NULL;
		r->body_cap = 0;
	}
	/* always: the next request's head goes through h1_scan_head()
	 * before http-parser sees it */
	d->h1_body = false;
	d->hs = HS_LINE;
	d->hs_started = false;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings h1_settings = {
	.on_message_begin = h1_on_message_begin,
	.on_url = h1_on_url,
	.on_header_field = h1_on_header_field,
	.on_header_value = h1_on_header_value,
	.on_headers_complete = h1_on_headers_complete,
	.on_body = h1_on_body,
	.on_message_complete = h1_on_message_complete,
};

/*
 * RFC 9112 strictness that http-parser 2.9 lacks: it takes "Content-Length
 * : 5" as a content-length (and any name with spaces in it), folds obs-fold
 * lines into the value before, and ends lines at a bare LF.  Each is a way
 * to make two HTTP parsers (a proxy in front of us and http-parser) read
 * different requests out of the same bytes, so each is 400 here:
 *   5.1  no whitespace between a field name and its colon (we refuse any
 *        whitespace in the name: it cannot be a token);
 *   5.2  obs-fold: a line of the header section that starts with SP/HTAB
 *        (we choose 400 over replacing it with spaces; 2.2 asks the same
 *        of whitespace before the first field line);
 *   2.2  lines end with CRLF: a bare LF (which 2.2 would let us accept)
 *        or a bare CR is 400.
 * The head is scanned here, in front of http-parser, which is only ever
 * given bytes that passed; from the end of the head to the end of the
 * message (h1_on_message_complete pauses the parser there) the body is
 * http-parser's alone.  No byte is buffered: the state is a few flags, and
 * the head is bounded by http-parser's own limit (HPE_HEADER_OVERFLOW)
 * and max_header_bytes.  Empty lines before the request line are let
 * through, as http-parser skips them (RFC 9112 2.2 allows it).  Chunked
 * trailers are not scanned: we read nothing in them.
 *
 * Returns how many of the `len` bytes may go to http-parser: all, up to
 * and including the end of the head (d->h1_body is then set), or up to the
 * first offending byte, with *why set to the 400 text.
 */
static size_t h1_scan_head(dv_doh_t *d, const uint8_t *p, size_t len,
			   const char **why)
{
	for (size_t i = 0; i < len; i++) {
		char c = (char)p[i];
		switch (d->hs) {
		case HS_LINE: /* the first byte of a line */
			d->hs_empty = c == '\r';
			if (c == '\r') {
				d->hs = HS_CR;
			} else if (c == '\n') {
				*why = T_LF;
				return i;
			} else if (d->hs_started && ows(c)) {
				*why = T_FOLD;
				return i;
			} else {
				/* request line: http-parser judges it */
				d->hs = d->hs_started ? HS_NAME : HS_REST;
			}
			break;
		case HS_NAME: /* a field line, before the colon */
			if (c == ':') {
				d->hs = HS_REST;
			} else if (ows(c)) {
				*why = T_NAME_WS;
				return i;
			} else if (c == '\n') {
				*why = T_LF;
				return i;
			} else if (c == '\r') {
				d->hs = HS_CR; /* no colon: http-parser's 400 */
			}
			break;
		case HS_REST:
			if (c == '\n') {
				*why = T_LF;
				return i;
			}
			if (c == '\r')
				d->hs = HS_CR;
			break;
		case HS_CR:
			if (c != '\n') {
				*why = T_CR;
				return i;
			}
			d->hs = HS_LINE;
			if (!d->hs_empty) {
				d->hs_started = true;
			} else if (d->hs_started) {
				d->h1_body = true; /* the empty line: head done */
				return i + 1;
			}
			break;
		}
	}
	return len;
}

static ssize_t h1_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (d->err)
		return d->err;
	if (d->stopped)
		return (ssize_t)len; /* after the last request: dropped */
	if (!d->started && len) {
		d->started = true;
		/* HTTP/2 prior knowledge on the HTTP/1 path: http-parser
		 * knows no PRI method, but the version is what is wrong */
		if (len >= 4 && memcmp(data, "PRI ", 4) == 0) {
			h1_fatal(d, 505, T_505, -EPROTO);
			return d->err;
		}
	}
	size_t off = 0;
	while (off < len) {
		if (HTTP_PARSER_ERRNO(&d->hp) == HPE_PAUSED) {
			if (d->q_len >= d->opts.max_streams)
				break;
			http_parser_pause(&d->hp, 0);
		}
		size_t chunk = len - off;
		if (!d->h1_body) {
			const char *why = NULL;
			chunk = h1_scan_head(d, data + off, chunk, &why);
			if (chunk == 0 && why) {
				if (!d->in_message) /* not the last one's */
					d->req.method = M_NONE;
				h1_fatal(d, 400, why, -EPROTO);
				return d->err;
			}
		}
		size_t n = http_parser_execute(&d->hp, &h1_settings,
					       (const char *)data + off, chunk);
		off += n;
		enum http_errno e = HTTP_PARSER_ERRNO(&d->hp);
		if (d->err)
			return d->err;
		if (d->stopped)
			return (ssize_t)len;
		if (e == HPE_PAUSED)
			continue;
		if (e != HPE_OK) {
			if (e == HPE_HEADER_OVERFLOW)
				h1_fatal(d, 431, T_431, DV_ELIMIT);
			else if (e == HPE_INVALID_VERSION)
				h1_fatal(d, 505, T_505, -EPROTO);
			else if (e == HPE_INVALID_METHOD && off < len &&
				 data[off] >= 'A' && data[off] <= 'Z')
				/* a method token http-parser does not know;
				 * it stopped at the byte it could not take */
				h1_fatal(d, 405, T_405, -EPROTO);
			else
				h1_fatal(d, 400, T_HTTP, -EPROTO);
			return d->err;
		}
		/* no progress and no error: http-parser broke its promise on
		 * bytes a client chose; log it and end this connection only */
		if (dv_fails(n != 0)) {
			h1_fatal(d, 400, T_HTTP, -EPROTO);
			return d->err;
		}
	}
	return (ssize_t)off;
}

/* Render the head slot's status line and headers (and an error's body). */
static void h1_render(dv_doh_t *d, const slot_t *s)
{
	bool close = s->close || (d->stopped && d->q_len == 1);
	const char *conn = close ? "Connection: close\r\n" : "";
	int n;
	if (s->status == 200) {
		/* the hot path: put together without printf (under 170
		 * bytes of H1_HDR_MAX) */
		static const char a[] = "HTTP/1.1 200 OK\r\n"
					"Content-Type: application/dns-message\r\n"
					"Content-Length: ";
		static const char b[] = "\r\nCache-Control: max-age=";
		char *h = d->hdr;
		memcpy(h, a, sizeof(a) - 1);
		h += sizeof(a) - 1;
		h += dv_doh_utoa(h, s->body_len);
		memcpy(h, b, sizeof(b) - 1);
		h += sizeof(b) - 1;
		h += dv_doh_utoa(h, s->max_age);
		*h++ = '\r';
		*h++ = '\n';
		size_t cl = strlen(conn);
		memcpy(h, conn, cl);
		h += cl;
		*h++ = '\r';
		*h++ = '\n';
		n = (int)(h - d->hdr);
	} else {
		char tbuf[48];
		const char *t = dv_doh_error_text(s->status, s->why, tbuf,
						  sizeof(tbuf));
		n = snprintf(d->hdr, sizeof(d->hdr),
			     "HTTP/1.1 %u %s\r\n"
			     "Content-Type: text/plain; charset=utf-8\r\n"
			     "Content-Length: %zu\r\n"
			     "Cache-Control: no-store\r\n"
			     "%s%s\r\n%s",
			     s->status, dv_doh_reason(s->status), strlen(t),
			     s->status == 405 ? "Allow: GET, POST\r\n" : "",
			     conn, s->head ? "" : t);
	}
	d->hdr_len = n > 0 && (size_t)n < sizeof(d->hdr) ? (size_t)n : 0;
	d->hdr_off = 0;
	d->body_off = 0;
}

static ssize_t h1_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	while (n < cap) {
		if (d->interim) {
			size_t k = sizeof(CONTINUE_100) - 1 - d->interim_off;
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, CONTINUE_100 + d->interim_off, k);
			n += k;
			d->interim_off += k;
			if (d->interim_off == sizeof(CONTINUE_100) - 1)
				d->interim = false;
			continue;
		}
		if (!d->emitting) {
			if (d->q_len == 0 || q_at(d, 0)->state != SL_READY)
				break;
			h1_render(d, q_at(d, 0));
			d->emitting = true;
		}
		slot_t *s = q_at(d, 0);
		size_t k = d->hdr_len - d->hdr_off;
		if (k) {
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, d->hdr + d->hdr_off, k);
			d->hdr_off += k;
			n += k;
			continue;
		}
		size_t blen = s->head ? 0 : s->body_len;
		k = blen - d->body_off;
		if (k) {
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, s->body + d->body_off, k);
			d->body_off += k;
			d->unsent -= k;
			n += k;
			continue;
		}
		q_pop(d);
		d->emitting = false;
	}
	return (ssize_t)n;
}

/* ---- what doh_engine.c calls: dv_doh_h1_ops (doh_engine.h) ---- */

static int h1_init(dv_doh_t *d)
{
	http_parser_init(&d->hp, HTTP_REQUEST);
	d->hp.data = d;
	d->next_id = 1;
	return 0;
}

static void h1_deinit(dv_doh_t *d)
{
	while (d->q_len)
		q_pop(d);
	free(d->q);
	free(d->hval);
	dv_doh_req_free(&d->req);
	dv_doh_pool_trim(&d->pool);
}

static int h1_answer(dv_doh_t *d, uint32_t stream, unsigned status,
		     const uint8_t *msg, size_t len, uint32_t max_age)
{
	slot_t *s = h1_find_query(d, stream);
	if (!s)
		return DV_ENOTFOUND;
	d->outstanding--;
	s->state = SL_READY;
	s->status = (uint16_t)status;
	if (status != 200) {
		s->why = status == 500 ? T_500 : NULL;
		return 0;
	}
	s->body = dv_doh_pool_alloc(&d->pool, len ? len : 1);
	if (!s->body) {
		s->status = 500;
		s->why = T_500;
		return -ENOMEM;
	}
	memcpy(s->body, msg, len);
	s->body_len = len;
	s->max_age = max_age;
	d->unsent += len;
	return 0;
}

static bool h1_want_close(const dv_doh_t *d)
{
	return d->stopped && d->q_len == 0 && !d->interim;
}

static bool h1_want_input(const dv_doh_t *d)
{
	return !d->stopped && d->q_len < d->opts.max_streams;
}

static void h1_drain(dv_doh_t *d)
{
	/* a request being received is answered and is the last one; else
	 * the last one queued goes out with "Connection: close" */
	if (!d->in_message)
		d->stopped = true;
}

static bool h1_receiving(const dv_doh_t *d)
{
	return d->in_message && !d->stopped;
}

static bool h1_output_ready(const dv_doh_t *d)
{
	return d->unsent || d->interim;
}

const dv_doh_ops_t dv_doh_h1_ops = {
	.init = h1_init,
	.deinit = h1_deinit,
	.input = h1_input,
	.output = h1_output,
	.answer = h1_answer,
	.want_close = h1_want_close,
	.want_input = h1_want_input,
	.drain = h1_drain,
	.receiving = h1_receiving,
	.output_ready = h1_output_ready,
};

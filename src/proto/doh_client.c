/*
 * DoH client engine: RFC 8484 POST requests over one nghttp2 client
 * session.  See doh_client.h for the contract.
 *
 * Each request is a req_t, the stream's user data from submit on, kept on
 * the `live` list until nghttp2 closes its stream (or, queued and never
 * sent, refuses it).  The outcome is judged when the stream closes and the
 * request moves to the `done` list; the callbacks run from there once
 * nghttp2 has returned, so no callback ever runs inside nghttp2 and the
 * caller may submit or cancel from them.
 *
 * Frame order: a request's HEADERS and its DATA (the query, END_STREAM)
 * are rendered together, into the `stage` buffer, as it is submitted; so
 * the server has each request whole before the next one begins.  Left to
 * itself nghttp2 sends every pending HEADERS before any DATA, and a
 * server that assembles one request at a time (Knot Resolver 5) answers
 * the streams that open while another is incomplete with REFUSED_STREAM.
 */
#include "src/proto/doh_client.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/core/errors.h"
#include "src/core/wire.h"

/* The connection receive window: room for several answers of the largest
 * size at once (each stream keeps the default 64 KiB window). */
#define CONN_WINDOW (1 << 20)
/* Header list a response may carry (SETTINGS_MAX_HEADER_LIST_SIZE). */
#define MAX_HEADER_LIST 16384
/* Bytes rendered ahead of dv_doh_client_output() (see Frame order): a
 * burst of queries; beyond it nghttp2 keeps the frames and orders them. */
#define STAGE_CAP (64 * 1024)
/* Stream ids are 31 bits and never reused: near the end, drain. */
#define LAST_STREAM_ID (INT32_MAX - 2)

typedef struct req req_t;
struct req {
	req_t *prev, *next;
	int32_t stream;
	uint32_t tag;
	unsigned status;   /* :status of the last header block */
	bool ct_ok;        /* content-type application/dns-message */
	bool ended;        /* END_STREAM received */
	bool cancelled;    /* by the caller: end without a callback */
	bool retry;        /* failed unprocessed, may be sent elsewhere */
	bool live;         /* on the live list */
	const char *why;   /* set when this side judged it failed */
	char why_buf[64];
	uint8_t *body;
	size_t body_len, body_cap;
	size_t q_len, q_off;
	uint8_t q[]; /* the DNS message sent */
};

struct dv_doh_client {
	nghttp2_session *h2;
	dv_doh_client_cb_t cb;
	void *user;
	req_t *live;                /* submitted, stream not closed yet */
	req_t *done, *done_tail;    /* closed, callback pending (FIFO) */
	unsigned inflight;          /* not cancelled, callback not run yet */
	bool goaway;                /* GOAWAY received */
	bool ids_out;               /* no stream id left */
	bool dead;                  /* connection error */
	char why_dead[64];
	uint8_t *stage;             /* rendered, not yet output */
	size_t stage_len;
	int send_rv;                /* nghttp2_session_send() failed */
	bool in_submit;             /* rendering inside dv_doh_client_submit */
	bool fail_pending;          /* broken there: failed at the next output */
	size_t alen, plen;
	char authority[256];
	char path[256];
};

static void list_add(req_t **head, req_t *r)
{
	r->live = true;
	r->prev = NULL;
	r->next = *head;
	if (*head)
		(*head)->prev = r;
	*head = r;
}

static void list_del(req_t **head, req_t *r)
{
	r->live = false;
	if (r->prev)
		r->prev->next = r->next;
	else
		*head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static void req_free(req_t *r)
{
	free(r->body);
	free(r);
}

static void done_push(dv_doh_client_t *cl, req_t *r)
{
	r->prev = r->next = NULL;
	if (cl->done_tail)
		cl->done_tail->next = r;
	else
		cl->done = r;
	cl->done_tail = r;
}

/* Judge a request this side has given up on (too large, malformed): it
 * is reset and fails when its stream closes. */
static void req_reject(dv_doh_client_t *cl, req_t *r, const char *why)
{
	if (r->why)
		return;
	r->why = why;
	nghttp2_submit_rst_stream(cl->h2, NGHTTP2_FLAG_NONE, r->stream,
				  NGHTTP2_CANCEL);
}

/* Run the callbacks of every request that has ended. */
static void deliver(dv_doh_client_t *cl)
{
	while (cl->done) {
		req_t *r = cl->done;
		cl->done = r->next;
		if (!cl->done)
			cl->done_tail = NULL;
		if (!r->cancelled) {
			cl->inflight--;
			if (r->why)
				cl->cb.failed(cl->user, r->tag, r->retry,
					      r->why);
			else
				cl->cb.answer(cl->user, r->tag, r->body,
					      r->body_len);
		}
		req_free(r);
	}
}

/* The connection is broken: every request still in flight fails. */
static void fail_all(dv_doh_client_t *cl, const char *why)
{
	cl->dead = true;
	while (cl->live) {
		req_t *r = cl->live;
		list_del(&cl->live, r);
		if (!r->cancelled) {
			r->why = why;
		}
		/* nghttp2 may still hold it as user data; it is never
		 * called again once the session is dead */
		nghttp2_session_set_stream_user_data(cl->h2, r->stream, NULL);
		done_push(cl, r);
	}
}

/* ---- nghttp2 callbacks ---- */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data,
		       size_t length, int flags, void *user)
{
	dv_doh_client_t *cl = user;
	size_t n = STAGE_CAP - cl->stage_len;
	if (n == 0)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n > length)
		n = length;
	memcpy(cl->stage + cl->stage_len, data, n);
	cl->stage_len += n;
	return (ssize_t)n;
}

/* Render what nghttp2 has to send into the stage (as much as fits).  A
 * fatal nghttp2 error is kept for dv_doh_client_output() to report. */
static void render(dv_doh_client_t *cl)
{
	if (cl->dead || cl->send_rv)
		return;
	cl->send_rv = nghttp2_session_send(cl->h2);
}

static ssize_t body_read_cb(nghttp2_session *session, int32_t stream_id,
			    uint8_t *buf, size_t length, uint32_t *data_flags,
			    nghttp2_data_source *source, void *user)
{
	req_t *r = source->ptr;
	size_t n = r->q_len - r->q_off;
	if (n > length)
		n = length;
	memcpy(buf, r->q + r->q_off, n);
	r->q_off += n;
	if (r->q_off == r->q_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static bool is_dns_message_type(const uint8_t *v, size_t len)
{
	static const char want[] = "application/dns-message";
	size_t n = sizeof(want) - 1;
	if (len < n || strncasecmp((const char *)v, want, n) != 0)
		return false;
	/* parameters are tolerated, another type sharing the prefix not */
	for (size_t i = n; i < len; i++) {
		if (v[i] == ';')
			return true;
		if (v[i] != ' ' && v[i] != '\t')
			return false;
	}
	return true;
}

static int header_cb(nghttp2_session *session, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	dv_doh_client_t *cl = user;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	req_t *r = nghttp2_session_get_stream_user_data(session,
							frame->hd.stream_id);
	if (!r || r->cancelled || r->why)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		/* nghttp2 checked it is 3 digits (HTTP messaging rules) */
		unsigned st = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			st = st * 10 + (unsigned)(value[i] - '0');
		r->status = st;
		/* a final response replaces what an informational one said */
		r->ct_ok = false;
	} else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		r->ct_ok = is_dns_message_type(value, valuelen);
	} else if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
		/* nghttp2 checked it is a number; refuse a large answer
		 * before any of it arrives */
		unsigned long n = 0;
		for (size_t i = 0; i < valuelen && n <= DV_DOH_CLIENT_MAX_BODY;
		     i++)
			n = n * 10 + (unsigned long)(value[i] - '0');
		if (n > DV_DOH_CLIENT_MAX_BODY) {
			snprintf(r->why_buf, sizeof(r->why_buf),
				 "answer announced over %u bytes",
				 DV_DOH_CLIENT_MAX_BODY);
			req_reject(cl, r, r->why_buf);
		}
	}
	return 0;
}

static int data_chunk_cb(nghttp2_session *session, uint8_t flags,
			 int32_t stream_id, const uint8_t *data, size_t len,
			 void *user)
{
	dv_doh_client_t *cl = user;
	req_t *r = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!r || r->cancelled || r->why)
		return 0;
	if (len > DV_DOH_CLIENT_MAX_BODY - r->body_len) {
		snprintf(r->why_buf, sizeof(r->why_buf),
			 "answer over %u bytes", DV_DOH_CLIENT_MAX_BODY);
		req_reject(cl, r, r->why_buf);
		return 0;
	}
	size_t need = r->body_len + len;
	if (need > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 512;
		while (cap < need)
			cap *= 2;
		if (cap > DV_DOH_CLIENT_MAX_BODY)
			cap = DV_DOH_CLIENT_MAX_BODY;
		uint8_t *b = realloc(r->body, cap);
		if (!b) {
			req_reject(cl, r, "out of memory");
			return 0;
		}
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	return 0;
}

static int frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame,
			 void *user)
{
	dv_doh_client_t *cl = user;
	switch (frame->hd.type) {
	case NGHTTP2_GOAWAY:
		/* streams above last-stream-id are closed by nghttp2 right
		 * after this, with REFUSED_STREAM */
		cl->goaway = true;
		break;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			req_t *r = nghttp2_session_get_stream_user_data(
				session, frame->hd.stream_id);
			if (r)
				r->ended = true;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* A connection error found by nghttp2 (bad frames from the server) ends in
 * a GOAWAY it sends: then the connection is broken. */
static int frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame,
			 void *user)
{
	dv_doh_client_t *cl = user;
	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code != NGHTTP2_NO_ERROR && !cl->dead) {
		snprintf(cl->why_dead, sizeof(cl->why_dead),
			 "HTTP/2 connection error: %s",
			 nghttp2_http2_strerror(frame->goaway.error_code));
		/* submit runs no callback: its caller holds other requests */
		if (cl->in_submit)
			cl->fail_pending = true;
		else
			fail_all(cl, cl->why_dead);
	}
	return 0;
}

static int stream_close_cb(nghttp2_session *session, int32_t stream_id,
			   uint32_t error_code, void *user)
{
	dv_doh_client_t *cl = user;
	req_t *r = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!r)
		return 0;
	list_del(&cl->live, r);
	if (r->cancelled) {
		req_free(r);
		return 0;
	}
	if (r->why) {
		/* judged here already */
	} else if (error_code == NGHTTP2_REFUSED_STREAM) {
		/* not processed by the server (RFC 9113 8.7): worth sending
		 * again, on another connection if this one takes nothing
		 * more (on this one it would likely be refused again) */
		r->retry = cl->goaway || cl->ids_out;
		r->why = r->retry ? "stream refused (GOAWAY)"
				  : "stream refused by the server";
	} else if (error_code != NGHTTP2_NO_ERROR) {
		snprintf(r->why_buf, sizeof(r->why_buf), "stream reset: %s",
			 nghttp2_http2_strerror(error_code));
		r->why = r->why_buf;
	} else if (!r->ended) {
		r->why = "stream closed before the answer ended";
	} else if (r->status != 200) {
		snprintf(r->why_buf, sizeof(r->why_buf), "HTTP status %u",
			 r->status);
		r->why = r->why_buf;
	} else if (!r->ct_ok) {
		r->why = "content-type is not application/dns-message";
	} else if (r->body_len < DV_DNS_HDR) {
		r->why = "answer shorter than a DNS header";
	}
	done_push(cl, r);
	return 0;
}

/* ---- the engine ---- */

dv_doh_client_t *dv_doh_client_new(const char *authority, const char *path,
				   const dv_doh_client_cb_t *cb, void *user)
{
	size_t alen = authority ? strlen(authority) : 0;
	size_t plen = path ? strlen(path) : 0;
	if (!alen || alen > 255 || !plen || plen > 255 || !cb->answer ||
	    !cb->failed)
		return NULL;
	dv_doh_client_t *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->stage = malloc(STAGE_CAP);
	if (!cl->stage)
		goto fail;
	memcpy(cl->authority, authority, alen + 1);
	memcpy(cl->path, path, plen + 1);
	cl->alen = alen;
	cl->plen = plen;
	cl->cb = *cb;
	cl->user = user;

	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
		cbs, data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
							     frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
		cbs, stream_close_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
							     frame_send_cb);
	int rv = nghttp2_session_client_new(&cl->h2, cbs, cl);
	nghttp2_session_callbacks_del(cbs);
	if (rv != 0)
		goto fail;
	/* no server push; a bounded header list; our window for answers */
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
	};
	if (nghttp2_submit_settings(cl->h2, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(cl->h2, NGHTTP2_FLAG_NONE,
						  0, CONN_WINDOW) != 0)
		goto fail;
	return cl;
fail:
	dv_doh_client_free(cl);
	return NULL;
}

void dv_doh_client_free(dv_doh_client_t *cl)
{
	if (!cl)
		return;
	/* nghttp2_session_del() runs no callback */
	nghttp2_session_del(cl->h2);
	while (cl->live) {
		req_t *r = cl->live;
		list_del(&cl->live, r);
		req_free(r);
	}
	while (cl->done) {
		req_t *r = cl->done;
		cl->done = r->next;
		req_free(r);
	}
	free(cl->stage);
	free(cl);
}

#define NV(n, v, vl)                                                         \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),  \
		      NGHTTP2_NV_FLAG_NO_COPY_NAME})

int32_t dv_doh_client_submit(dv_doh_client_t *cl, uint32_t tag,
			     const uint8_t *msg, size_t len)
{
	if (len < DV_DNS_HDR || len > DV_DOH_CLIENT_MAX_BODY)
		return -EINVAL;
	if (dv_doh_client_draining(cl))
		return DV_ECLOSED;
	req_t *r = calloc(1, sizeof(*r) + len);
	if (!r)
		return -ENOMEM;
	r->tag = tag;
	memcpy(r->q, msg, len);
	dv_put16(r->q, 0); /* RFC 8484 4.1 */
	r->q_len = len;
	char cls[8];
	int cll = snprintf(cls, sizeof(cls), "%zu", len);
	nghttp2_nv nv[] = {
		NV(":method", "POST", 4),
		NV(":scheme", "https", 5),
		NV(":authority", cl->authority, cl->alen),
		NV(":path", cl->path, cl->plen),
		NV("content-type", "application/dns-message", 23),
		NV("accept", "application/dns-message", 23),
		NV("content-length", cls, (size_t)cll),
	};
	nghttp2_data_provider prd = {.source.ptr = r,
				     .read_callback = body_read_cb};
	int32_t id = nghttp2_submit_request(cl->h2, NULL, nv,
					    sizeof(nv) / sizeof(nv[0]), &prd,
					    r);
	if (id < 0) {
		free(r);
		if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
			cl->ids_out = true;
			return DV_ECLOSED;
		}
		return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	r->stream = id;
	if (id >= LAST_STREAM_ID)
		cl->ids_out = true;
	list_add(&cl->live, r);
	cl->inflight++;
	/* its HEADERS and DATA now, before the next request's HEADERS */
	cl->in_submit = true;
	render(cl);
	cl->in_submit = false;
	return id;
}

void dv_doh_client_cancel(dv_doh_client_t *cl, int32_t stream)
{
	if (stream <= 0)
		return;
	/* an open stream is found at once; a queued one, or one that has
	 * ended with its callback pending, by a walk */
	req_t *r = nghttp2_session_get_stream_user_data(cl->h2, stream);
	if (!r)
		for (r = cl->live; r && r->stream != stream; r = r->next)
			;
	if (!r)
		for (r = cl->done; r && r->stream != stream; r = r->next)
			;
	if (!r || r->cancelled)
		return;
	r->cancelled = true;
	cl->inflight--;
	if (!r->live)
		return; /* ended, callback pending: now it has none */
	/* a queued request is dropped unsent; an open stream is reset and
	 * its req_t freed when nghttp2 closes it */
	if (!cl->dead)
		nghttp2_submit_rst_stream(cl->h2, NGHTTP2_FLAG_NONE, stream,
					  NGHTTP2_CANCEL);
}

ssize_t dv_doh_client_input(dv_doh_client_t *cl, const uint8_t *data,
			    size_t len)
{
	if (cl->dead)
		return -EPROTO;
	ssize_t n = nghttp2_session_mem_recv(cl->h2, data, len);
	if (n < 0) {
		fail_all(cl, "HTTP/2 connection error");
		deliver(cl);
		return n == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	deliver(cl);
	return (ssize_t)len;
}

ssize_t dv_doh_client_output(dv_doh_client_t *cl, uint8_t *buf, size_t cap)
{
	if (cl->dead)
		return 0;
	render(cl);
	int rv = cl->send_rv;
	if (rv != 0) {
		fail_all(cl, "HTTP/2 connection error");
		deliver(cl);
		return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	if (cl->fail_pending && !cl->dead)
		fail_all(cl, cl->why_dead); /* its GOAWAY still goes out */
	size_t n = cl->stage_len < cap ? cl->stage_len : cap;
	memcpy(buf, cl->stage, n);
	memmove(cl->stage, cl->stage + n, cl->stage_len - n);
	cl->stage_len -= n;
	/* requests refused as they were about to be sent (after GOAWAY) */
	deliver(cl);
	return (ssize_t)n;
}

bool dv_doh_client_want_write(const dv_doh_client_t *cl)
{
	return !cl->dead && (cl->stage_len || cl->send_rv ||
			     nghttp2_session_want_write(cl->h2));
}

bool dv_doh_client_draining(const dv_doh_client_t *cl)
{
	return cl->dead || cl->fail_pending || cl->goaway || cl->ids_out;
}

bool dv_doh_client_want_close(const dv_doh_client_t *cl)
{
	if (cl->dead)
		return true;
	if (cl->stage_len || nghttp2_session_want_write(cl->h2))
		return false;
	if (!nghttp2_session_want_read(cl->h2))
		return true;
	return cl->ids_out && !cl->live;
}

bool dv_doh_client_broken(const dv_doh_client_t *cl)
{
	return cl->dead;
}

uint32_t dv_doh_client_max_streams(const dv_doh_client_t *cl)
{
	return nghttp2_session_get_remote_settings(
		cl->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

unsigned dv_doh_client_inflight(const dv_doh_client_t *cl)
{
	return cl->inflight;
}

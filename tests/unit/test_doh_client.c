/*
 * Unit tests for the DoH client engine (src/proto/doh_client.c), driven with
 * bytes only.  Two real HTTP/2 servers talk to it through memory:
 *  - dnsveil's own DoH server engine (src/proto/doh_engine.c): requests, answers out of
 *    order, SETTINGS_MAX_CONCURRENT_STREAMS, HTTP errors, GOAWAY (drain),
 *    cancellation;
 *  - nghttp2's server session, scripted per test, for what src/proto/doh_engine.c never
 *    does: wrong content-type, oversized or short bodies, RST_STREAM,
 *    REFUSED_STREAM, request headers as sent.
 * Output is moved in small pieces so partial writes happen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>
#include <nghttp2/nghttp2.h>

#include "src/proto/doh.h"
#include "src/proto/doh_client.c" /* internals: the nghttp2 session */
#include "src/core/errors.h"
#include "src/core/wire.h"

/* ---- the client and what its callbacks saw ---- */

typedef struct {
	uint32_t tag;
	bool ok, retry;
	char why[80];
	uint8_t msg[2048];
	size_t len;
} outcome_t;

typedef struct {
	dv_doh_client_t *cl;
	outcome_t o[512];
	unsigned n;
	/* from inside the answer callback: submit one more / cancel one */
	bool submit_in_cb;
	int32_t cancel_in_cb;
} cli_t;

static uint8_t qbuf[512];
static size_t qlen;

static void on_answer(void *user, uint32_t tag, uint8_t *msg, size_t len)
{
	cli_t *c = user;
	assert_true(c->n < sizeof(c->o) / sizeof(c->o[0]));
	outcome_t *o = &c->o[c->n++];
	o->tag = tag;
	o->ok = true;
	o->len = len < sizeof(o->msg) ? len : sizeof(o->msg);
	memcpy(o->msg, msg, o->len);
	o->len = len;
	if (c->submit_in_cb) {
		c->submit_in_cb = false;
		assert_true(dv_doh_client_submit(c->cl, 999, qbuf, qlen) > 0);
	}
	if (c->cancel_in_cb) {
		dv_doh_client_cancel(c->cl, c->cancel_in_cb);
		c->cancel_in_cb = 0;
	}
}

static void on_failed(void *user, uint32_t tag, bool retry, const char *why)
{
	cli_t *c = user;
	assert_true(c->n < sizeof(c->o) / sizeof(c->o[0]));
	outcome_t *o = &c->o[c->n++];
	o->tag = tag;
	o->ok = false;
	o->retry = retry;
	snprintf(o->why, sizeof(o->why), "%s", why);
}

static const dv_doh_client_cb_t client_cb = {.answer = on_answer,
					     .failed = on_failed};

static cli_t *cli_new(const char *path)
{
	cli_t *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->cl = dv_doh_client_new("dns.test", path, &client_cb, c);
	assert_non_null(c->cl);
	return c;
}

static void cli_free(cli_t *c)
{
	dv_doh_client_free(c->cl);
	free(c);
}

static const outcome_t *find(const cli_t *c, uint32_t tag)
{
	const outcome_t *r = NULL;
	for (unsigned i = 0; i < c->n; i++)
		if (c->o[i].tag == tag) {
			assert_null(r); /* exactly once */
			r = &c->o[i];
		}
	return r;
}

static size_t make_query(uint8_t *buf, size_t cap, uint16_t id,
			 const char *name)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, LDNS_RR_TYPE_A,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	uint8_t *w = NULL;
	size_t n = 0;
	assert_int_equal(ldns_pkt2wire(&w, p, &n), LDNS_STATUS_OK);
	assert_true(n <= cap);
	memcpy(buf, w, n);
	free(w);
	ldns_pkt_free(p);
	return n;
}

static int setup(void **state)
{
	qlen = make_query(qbuf, sizeof(qbuf), 0x4242, "www.example.com.");
	return 0;
}

/* ---- peer 1: dnsveil's DoH server engine ---- */

typedef struct {
	dv_doh_t *d;
	uint32_t streams[512];
	uint8_t first_ids[512][2];
	unsigned n, answered;
	unsigned max_inflight; /* most queries it held at once */
	uint8_t *pending; /* client bytes not consumed yet */
	size_t pending_len;
} dsrv_t;

static const char *const dpaths[] = {"/dns-query"};

static void on_query(void *user, uint32_t stream, const char *path,
		     const char *client_id, const uint8_t *msg, size_t len,
		     const char *fwd)
{
	(void)client_id;
	dsrv_t *s = user;
	assert_true(s->n < 512);
	assert_int_equal(len, qlen);
	/* the id is 0 on the wire, the rest as given */
	s->first_ids[s->n][0] = msg[0];
	s->first_ids[s->n][1] = msg[1];
	assert_memory_equal(msg + 2, qbuf + 2, len - 2);
	s->streams[s->n++] = stream;
	if (dv_doh_inflight(s->d) > s->max_inflight)
		s->max_inflight = dv_doh_inflight(s->d);
}

static const dv_doh_cb_t dsrv_cb = {.query = on_query};

static dsrv_t *dsrv_new(unsigned max_streams)
{
	dsrv_t *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	dv_doh_opts_t o = {.paths = dpaths, .n_paths = 1,
			   .max_streams = max_streams};
	s->d = dv_doh_new(DV_DOH_H2, &o, &dsrv_cb, s);
	assert_non_null(s->d);
	return s;
}

static void dsrv_free(dsrv_t *s)
{
	dv_doh_free(s->d);
	free(s->pending);
	free(s);
}

/* Move bytes both ways until neither side has anything to say. */
static void pump(cli_t *c, dsrv_t *s)
{
	uint8_t buf[700];
	for (int rounds = 0; rounds < 100000; rounds++) {
		bool moved = false;
		/* client -> server (the server may take less: its limit) */
		if (s->pending_len && dv_doh_want_input(s->d)) {
			ssize_t n = dv_doh_input(s->d, s->pending,
						 s->pending_len);
			assert_true(n >= 0);
			if (n > 0) {
				memmove(s->pending, s->pending + n,
					s->pending_len - (size_t)n);
				s->pending_len -= (size_t)n;
				moved = true;
			}
		}
		ssize_t n = dv_doh_client_output(c->cl, buf, sizeof(buf));
		assert_true(n >= 0);
		if (n > 0) {
			s->pending = realloc(s->pending,
					     s->pending_len + (size_t)n);
			assert_non_null(s->pending);
			memcpy(s->pending + s->pending_len, buf, (size_t)n);
			s->pending_len += (size_t)n;
			moved = true;
		}
		/* server -> client */
		n = dv_doh_output(s->d, buf, 333);
		assert_true(n >= 0);
		if (n > 0) {
			assert_int_equal(dv_doh_client_input(c->cl, buf,
							     (size_t)n),
					 n);
			moved = true;
		}
		if (!moved)
			return;
	}
	fail_msg("the two engines never went quiet");
}

/* The server answers its query #i with the query turned into a response
 * (QR set, id as the server saw it, i.e. 0). */
static void dsrv_answer(dsrv_t *s, unsigned i)
{
	uint8_t a[512];
	memcpy(a, qbuf, qlen);
	a[0] = s->first_ids[i][0];
	a[1] = s->first_ids[i][1];
	dv_put16(a + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	assert_int_equal(dv_doh_answer(s->d, s->streams[i], a, qlen, 60), 0);
	s->answered++;
}

static void test_basic(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	assert_true(dv_doh_client_want_write(c->cl)); /* preface, SETTINGS */
	int32_t st = dv_doh_client_submit(c->cl, 7, qbuf, qlen);
	assert_int_equal(st, 1);
	assert_int_equal(dv_doh_client_inflight(c->cl), 1);
	pump(c, s);
	assert_int_equal(s->n, 1);
	assert_int_equal(s->first_ids[0][0], 0);
	assert_int_equal(s->first_ids[0][1], 0);
	assert_int_equal(c->n, 0);
	dsrv_answer(s, 0);
	pump(c, s);
	assert_int_equal(c->n, 1);
	const outcome_t *o = find(c, 7);
	assert_non_null(o);
	assert_true(o->ok);
	assert_int_equal(o->len, qlen);
	assert_int_equal(dv_get16(o->msg), 0);
	assert_true(dv_get16(o->msg + 2) & DV_FLAG_QR);
	assert_memory_equal(o->msg + 4, qbuf + 4, qlen - 4);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	assert_false(dv_doh_client_draining(c->cl));
	assert_false(dv_doh_client_want_close(c->cl));
	/* the server's SETTINGS said 100 streams */
	assert_int_equal(dv_doh_client_max_streams(c->cl), 100);
	/* the message is copied at submit: the caller's buffer may change */
	assert_int_equal(qbuf[0], 0x42);
	dsrv_free(s);
	cli_free(c);
}

static void test_bad_submit(void **state)
{
	cli_t *c = cli_new("/dns-query");
	assert_int_equal(dv_doh_client_submit(c->cl, 1, qbuf, 11), -EINVAL);
	static uint8_t big[65536];
	assert_int_equal(dv_doh_client_submit(c->cl, 1, big, sizeof(big)),
			 -EINVAL);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	cli_free(c);
	assert_null(dv_doh_client_new("", "/q", &client_cb, NULL));
	assert_null(dv_doh_client_new("dns.test", "", &client_cb, NULL));
	dv_doh_client_free(NULL);
}

/* Many streams on one connection, answered in reverse order, each to its
 * own request. */
static void test_many_out_of_order(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	const unsigned n = 60;
	for (unsigned i = 0; i < n; i++)
		assert_true(dv_doh_client_submit(c->cl, 1000 + i, qbuf, qlen) >
			    0);
	pump(c, s);
	assert_int_equal(s->n, n);
	for (unsigned i = n; i-- > 0;)
		dsrv_answer(s, i);
	pump(c, s);
	assert_int_equal(c->n, n);
	for (unsigned i = 0; i < n; i++) {
		const outcome_t *o = find(c, 1000 + i);
		assert_non_null(o);
		assert_true(o->ok);
	}
	/* answers came in the order the server gave them */
	assert_int_equal(c->o[0].tag, 1000 + n - 1);
	dsrv_free(s);
	cli_free(c);
}

/* The server allows 3 streams: the client never has more open; the rest
 * wait inside nghttp2 and go out as streams close. */
static void test_max_concurrent_streams(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(3);
	pump(c, s); /* SETTINGS exchanged */
	assert_int_equal(dv_doh_client_max_streams(c->cl), 3);
	const unsigned n = 20;
	for (unsigned i = 0; i < n; i++)
		assert_true(dv_doh_client_submit(c->cl, i, qbuf, qlen) > 0);
	assert_int_equal(dv_doh_client_inflight(c->cl), n);
	while (s->answered < n) {
		pump(c, s);
		assert_true(s->n > s->answered);
		assert_true(s->n - s->answered <= 3);
		while (s->answered < s->n)
			dsrv_answer(s, s->answered);
	}
	pump(c, s);
	assert_int_equal(c->n, n);
	for (unsigned i = 0; i < n; i++)
		assert_true(find(c, i)->ok);
	assert_true(s->max_inflight <= 3);
	dsrv_free(s);
	cli_free(c);
}

static void test_http_errors(void **state)
{
	/* a path the server does not serve: 404 */
	cli_t *c = cli_new("/elsewhere");
	dsrv_t *s = dsrv_new(0);
	dv_doh_client_submit(c->cl, 1, qbuf, qlen);
	pump(c, s);
	assert_int_equal(c->n, 1);
	assert_false(c->o[0].ok);
	assert_false(c->o[0].retry);
	assert_string_equal(c->o[0].why, "HTTP status 404");
	dsrv_free(s);
	cli_free(c);

	/* the server's own failure: 503 */
	c = cli_new("/dns-query");
	s = dsrv_new(0);
	dv_doh_client_submit(c->cl, 2, qbuf, qlen);
	dv_doh_client_submit(c->cl, 3, qbuf, qlen);
	pump(c, s);
	assert_int_equal(dv_doh_error(s->d, s->streams[0], 503), 0);
	dsrv_answer(s, 1);
	pump(c, s);
	assert_int_equal(c->n, 2);
	assert_false(find(c, 2)->ok);
	assert_string_equal(find(c, 2)->why, "HTTP status 503");
	assert_true(find(c, 3)->ok);
	/* the connection goes on */
	assert_false(dv_doh_client_draining(c->cl));
	dsrv_free(s);
	cli_free(c);
}

/* GOAWAY: what the server took is answered; what it did not fails with
 * retry; nothing new is taken; the connection is then finished. */
static void test_goaway(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	for (unsigned i = 0; i < 3; i++)
		dv_doh_client_submit(c->cl, i, qbuf, qlen);
	pump(c, s);
	assert_int_equal(s->n, 3);
	/* two more wait in the client while the server goes away */
	dv_doh_client_submit(c->cl, 10, qbuf, qlen);
	dv_doh_client_submit(c->cl, 11, qbuf, qlen);
	dv_doh_drain(s->d);
	uint8_t buf[4096];
	ssize_t n = dv_doh_output(s->d, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(dv_doh_client_input(c->cl, buf, (size_t)n), n);
	assert_true(dv_doh_client_draining(c->cl));
	assert_int_equal(dv_doh_client_submit(c->cl, 12, qbuf, qlen),
			 DV_ECLOSED);
	pump(c, s);
	/* the two unsent ones failed, retryable */
	assert_non_null(find(c, 10));
	assert_false(find(c, 10)->ok);
	assert_true(find(c, 10)->retry);
	assert_true(find(c, 11)->retry);
	assert_null(find(c, 12));
	assert_false(dv_doh_client_want_close(c->cl));
	for (unsigned i = 0; i < 3; i++)
		dsrv_answer(s, i);
	pump(c, s);
	for (unsigned i = 0; i < 3; i++)
		assert_true(find(c, i)->ok);
	assert_int_equal(c->n, 5);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	assert_true(dv_doh_client_want_close(c->cl));
	dsrv_free(s);
	cli_free(c);
}

/* Cancelled requests end without a callback, queued or open, and from
 * inside another request's callback. */
static void test_cancel(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	int32_t a = dv_doh_client_submit(c->cl, 1, qbuf, qlen);
	int32_t b = dv_doh_client_submit(c->cl, 2, qbuf, qlen);
	/* a request is rendered whole as it is submitted (HEADERS and DATA
	 * before the next request's HEADERS): cancelled before any output,
	 * it still reaches the server, then its RST_STREAM; no callback */
	dv_doh_client_cancel(c->cl, a);
	assert_int_equal(dv_doh_client_inflight(c->cl), 1);
	pump(c, s);
	assert_int_equal(s->n, 2);
	int32_t d = dv_doh_client_submit(c->cl, 3, qbuf, qlen);
	int32_t e = dv_doh_client_submit(c->cl, 4, qbuf, qlen);
	pump(c, s);
	assert_int_equal(s->n, 4);
	dv_doh_client_cancel(c->cl, d); /* open: RST_STREAM */
	dv_doh_client_cancel(c->cl, d); /* twice: ignored */
	dv_doh_client_cancel(c->cl, 12345); /* unknown: ignored */
	pump(c, s);
	/* the server answers all it saw; the cancelled one is dropped */
	c->cancel_in_cb = e; /* e's answer is pending when b's arrives */
	for (unsigned i = 0; i < s->n; i++)
		dv_doh_answer(s->d, s->streams[i], qbuf, qlen, 0);
	pump(c, s);
	(void)b;
	assert_null(find(c, 1));
	assert_null(find(c, 3));
	assert_non_null(find(c, 2));
	/* b and e were answered in the same read: e's callback was
	 * cancelled from b's */
	assert_null(find(c, 4));
	assert_int_equal(c->n, 1);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	dsrv_free(s);
	cli_free(c);
}

/* A callback may submit: the request goes out with the next output. */
static void test_submit_in_callback(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	dv_doh_client_submit(c->cl, 1, qbuf, qlen);
	pump(c, s);
	c->submit_in_cb = true;
	dsrv_answer(s, 0);
	pump(c, s);
	assert_int_equal(s->n, 2);
	dsrv_answer(s, 1);
	pump(c, s);
	assert_true(find(c, 999)->ok);
	dsrv_free(s);
	cli_free(c);
}

/* Bytes that are not HTTP/2: every request fails, not retryable, and the
 * connection is finished. */
static void test_garbage(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dv_doh_client_submit(c->cl, 1, qbuf, qlen);
	dv_doh_client_submit(c->cl, 2, qbuf, qlen);
	uint8_t buf[4096];
	assert_true(dv_doh_client_output(c->cl, buf, sizeof(buf)) > 0);
	static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
	ssize_t n = dv_doh_client_input(c->cl, (const uint8_t *)junk,
					sizeof(junk) - 1);
	if (n >= 0) {
		/* nghttp2 answers with GOAWAY; as it goes out, the
		 * connection is broken */
		assert_int_equal(n, sizeof(junk) - 1);
		assert_int_equal(c->n, 0);
		n = dv_doh_client_output(c->cl, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(buf[3], NGHTTP2_GOAWAY);
	}
	assert_int_equal(c->n, 2);
	assert_non_null(strstr(c->o[0].why, "connection error"));
	assert_false(c->o[0].ok);
	assert_false(c->o[0].retry);
	assert_false(c->o[1].ok);
	assert_true(dv_doh_client_want_close(c->cl));
	assert_true(dv_doh_client_draining(c->cl));
	assert_int_equal(dv_doh_client_submit(c->cl, 3, qbuf, qlen),
			 DV_ECLOSED);
	assert_true(dv_doh_client_input(c->cl, buf, 1) < 0);
	assert_int_equal(dv_doh_client_output(c->cl, buf, sizeof(buf)), 0);
	assert_false(dv_doh_client_want_write(c->cl));
	cli_free(c);
}

/* Stream ids run out: the connection drains and then is finished. */
static void test_stream_ids_exhausted(void **state)
{
	cli_t *c = cli_new("/dns-query");
	dsrv_t *s = dsrv_new(0);
	pump(c, s);
	/* the next id near the end of the space */
	assert_int_equal(
		nghttp2_session_set_next_stream_id(c->cl->h2, INT32_MAX - 4), 0);
	assert_true(dv_doh_client_submit(c->cl, 1, qbuf, qlen) > 0);
	assert_true(dv_doh_client_submit(c->cl, 2, qbuf, qlen) > 0);
	assert_true(dv_doh_client_draining(c->cl));
	assert_int_equal(dv_doh_client_submit(c->cl, 3, qbuf, qlen),
			 DV_ECLOSED);
	assert_false(dv_doh_client_want_close(c->cl));
	pump(c, s);
	dsrv_answer(s, 0);
	dsrv_answer(s, 1);
	pump(c, s);
	assert_true(find(c, 1)->ok);
	assert_true(find(c, 2)->ok);
	assert_true(dv_doh_client_want_close(c->cl));
	dsrv_free(s);
	cli_free(c);
}

/* ---- peer 2: nghttp2's server session, scripted ---- */

enum {
	RS_OK,          /* 200 application/dns-message, the query echoed */
	RS_CT_PARAM,    /* same with "; charset=binary" and odd case */
	RS_CT_TEXT,     /* 200 text/plain */
	RS_CT_NONE,     /* 200 without content-type */
	RS_CT_PREFIX,   /* 200 application/dns-messagex */
	RS_BIG,         /* 200, 65536 bytes of body, no content-length */
	RS_BIG_CL,      /* 200, content-length 65536 announced */
	RS_MAX,         /* 200, exactly 65535 bytes */
	RS_SHORT,       /* 200, 5 bytes */
	RS_RST,         /* RST_STREAM INTERNAL_ERROR */
	RS_REFUSED,     /* RST_STREAM REFUSED_STREAM, no GOAWAY */
	RS_INFO,        /* 103 first, then 200 */
	RS_SERIAL,      /* 200, but one request assembled at a time: a stream
			 * opened while another is incomplete is refused
			 * (what Knot Resolver 5's DoH does) */
};

typedef struct {
	size_t off, len;
} resp_t;

typedef struct {
	nghttp2_session *h2;
	int mode;
	resp_t resp[16]; /* one per request */
	unsigned n_resp;
	size_t body_len;
	unsigned requests;
	/* the last request's headers */
	char method[16], scheme[16], authority[64], path[64], ctype[64],
		accept[64], clen[16];
	uint8_t body[512];
	size_t body_got;
	uint8_t *pending;
	size_t pending_len;
	int32_t incomplete; /* RS_SERIAL: the request being assembled */
	unsigned refused;   /* RS_SERIAL: streams it refused */
} nsrv_t;

static uint8_t big_body[70000];

static void copy_hdr(char *dst, size_t cap, const uint8_t *v, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, v, len);
	dst[len] = 0;
}

static int n_header(nghttp2_session *session, const nghttp2_frame *frame,
		    const uint8_t *name, size_t namelen, const uint8_t *value,
		    size_t valuelen, uint8_t flags, void *user)
{
	nsrv_t *s = user;
	struct {
		const char *n;
		char *dst;
		size_t cap;
	} map[] = {
		{":method", s->method, sizeof(s->method)},
		{":scheme", s->scheme, sizeof(s->scheme)},
		{":authority", s->authority, sizeof(s->authority)},
		{":path", s->path, sizeof(s->path)},
		{"content-type", s->ctype, sizeof(s->ctype)},
		{"accept", s->accept, sizeof(s->accept)},
		{"content-length", s->clen, sizeof(s->clen)},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strlen(map[i].n) == namelen &&
		    memcmp(map[i].n, name, namelen) == 0)
			copy_hdr(map[i].dst, map[i].cap, value, valuelen);
	return 0;
}

static int n_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
		  const uint8_t *data, size_t len, void *user)
{
	nsrv_t *s = user;
	if (s->body_got + len <= sizeof(s->body))
		memcpy(s->body + s->body_got, data, len);
	s->body_got += len;
	return 0;
}

static ssize_t n_read(nghttp2_session *session, int32_t stream_id,
		      uint8_t *buf, size_t length, uint32_t *data_flags,
		      nghttp2_data_source *source, void *user)
{
	resp_t *r = source->ptr;
	size_t n = r->len - r->off;
	if (n > length)
		n = length;
	memcpy(buf, big_body + r->off, n);
	r->off += n;
	if (r->off == r->len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NVS(n, v)                                                            \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v),  \
		      NGHTTP2_NV_FLAG_NONE})

static void n_respond(nsrv_t *s, int32_t id)
{
	const char *ct = "application/dns-message";
	size_t len = s->body_got;
	char cl[16] = "";
	switch (s->mode) {
	case RS_RST:
		nghttp2_submit_rst_stream(s->h2, 0, id, NGHTTP2_INTERNAL_ERROR);
		return;
	case RS_REFUSED:
		nghttp2_submit_rst_stream(s->h2, 0, id, NGHTTP2_REFUSED_STREAM);
		return;
	case RS_CT_PARAM:
		ct = "Application/DNS-Message; charset=binary";
		break;
	case RS_CT_TEXT:
		ct = "text/plain";
		break;
	case RS_CT_NONE:
		ct = NULL;
		break;
	case RS_CT_PREFIX:
		ct = "application/dns-messagex";
		break;
	case RS_BIG:
		len = 65536;
		break;
	case RS_BIG_CL:
		len = 65536;
		snprintf(cl, sizeof(cl), "%zu", len);
		break;
	case RS_MAX:
		len = 65535;
		break;
	case RS_SHORT:
		len = 5;
		break;
	case RS_INFO: {
		nghttp2_nv info[] = {NVS(":status", "103")};
		nghttp2_submit_headers(s->h2, 0, id, NULL, info, 1, NULL);
		break;
	}
	default:
		break;
	}
	/* the body: the query as a response, then filler */
	memcpy(big_body, s->body, s->body_got < len ? s->body_got : len);
	if (len >= 4)
		dv_put16(big_body + 2, DV_FLAG_QR | DV_FLAG_RA);
	nghttp2_nv nv[3];
	size_t n = 0;
	nv[n++] = NVS(":status", "200");
	if (ct)
		nv[n++] = NVS("content-type", ct);
	if (cl[0])
		nv[n++] = NVS("content-length", cl);
	assert_true(s->n_resp < sizeof(s->resp) / sizeof(s->resp[0]));
	resp_t *r = &s->resp[s->n_resp++];
	r->len = len;
	nghttp2_data_provider prd = {.source.ptr = r, .read_callback = n_read};
	assert_int_equal(nghttp2_submit_response(s->h2, id, nv, n, &prd), 0);
}

static int n_frame(nghttp2_session *session, const nghttp2_frame *frame,
		   void *user)
{
	nsrv_t *s = user;
	if (s->mode == RS_SERIAL && frame->hd.type == NGHTTP2_HEADERS &&
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		if (s->incomplete) {
			s->refused++;
			nghttp2_submit_rst_stream(s->h2, 0, frame->hd.stream_id,
						  NGHTTP2_REFUSED_STREAM);
			return 0;
		}
		s->incomplete = frame->hd.stream_id;
	}
	if (frame->hd.stream_id == s->incomplete &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		s->incomplete = 0;
	if ((frame->hd.type == NGHTTP2_DATA ||
	     frame->hd.type == NGHTTP2_HEADERS) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		s->requests++;
		n_respond(s, frame->hd.stream_id);
	}
	return 0;
}

static nsrv_t *nsrv_new(int mode)
{
	nsrv_t *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->mode = mode;
	nghttp2_session_callbacks *cbs;
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, n_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, n_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, n_frame);
	assert_int_equal(nghttp2_session_server_new(&s->h2, cbs, s), 0);
	nghttp2_session_callbacks_del(cbs);
	/* room for a 64 KiB answer in one go */
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10}};
	assert_int_equal(nghttp2_submit_settings(s->h2, 0, iv, 1), 0);
	return s;
}

static void nsrv_free(nsrv_t *s)
{
	nghttp2_session_del(s->h2);
	free(s);
}

static void npump(cli_t *c, nsrv_t *s)
{
	uint8_t buf[900];
	for (int rounds = 0; rounds < 100000; rounds++) {
		bool moved = false;
		ssize_t n = dv_doh_client_output(c->cl, buf, sizeof(buf));
		assert_true(n >= 0);
		if (n > 0) {
			assert_int_equal(nghttp2_session_mem_recv(s->h2, buf,
								  (size_t)n),
					 n);
			moved = true;
		}
		const uint8_t *out;
		n = nghttp2_session_mem_send(s->h2, &out);
		assert_true(n >= 0);
		if (n > 0) {
			assert_int_equal(dv_doh_client_input(c->cl, out,
							     (size_t)n),
					 n);
			moved = true;
		}
		if (!moved)
			return;
	}
	fail_msg("the two sessions never went quiet");
}

/* One request against a scripted server; returns its outcome. */
static outcome_t run_mode(int mode, nsrv_t **keep)
{
	cli_t *c = cli_new("/dns-query");
	nsrv_t *s = nsrv_new(mode);
	assert_true(dv_doh_client_submit(c->cl, 5, qbuf, qlen) > 0);
	npump(c, s);
	assert_int_equal(c->n, 1);
	outcome_t o = c->o[0];
	assert_int_equal(o.tag, 5);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	/* a failed stream leaves the connection usable */
	assert_false(dv_doh_client_draining(c->cl));
	cli_free(c);
	if (keep)
		*keep = s;
	else
		nsrv_free(s);
	return o;
}

static void test_request_headers(void **state)
{
	nsrv_t *s;
	outcome_t o = run_mode(RS_OK, &s);
	assert_true(o.ok);
	assert_string_equal(s->method, "POST");
	assert_string_equal(s->scheme, "https");
	assert_string_equal(s->authority, "dns.test");
	assert_string_equal(s->path, "/dns-query");
	assert_string_equal(s->ctype, "application/dns-message");
	assert_string_equal(s->accept, "application/dns-message");
	char cl[16];
	snprintf(cl, sizeof(cl), "%zu", qlen);
	assert_string_equal(s->clen, cl);
	assert_int_equal(s->body_got, qlen);
	assert_int_equal(dv_get16(s->body), 0);
	assert_memory_equal(s->body + 2, qbuf + 2, qlen - 2);
	assert_int_equal(o.len, qlen);
	nsrv_free(s);
}

static void test_content_type(void **state)
{
	assert_true(run_mode(RS_CT_PARAM, NULL).ok);
	outcome_t o = run_mode(RS_CT_TEXT, NULL);
	assert_false(o.ok);
	assert_false(o.retry);
	assert_non_null(strstr(o.why, "content-type"));
	assert_false(run_mode(RS_CT_NONE, NULL).ok);
	assert_false(run_mode(RS_CT_PREFIX, NULL).ok);
}

static void test_body_bounds(void **state)
{
	outcome_t o = run_mode(RS_MAX, NULL);
	assert_true(o.ok);
	assert_int_equal(o.len, 65535);
	o = run_mode(RS_BIG, NULL);
	assert_false(o.ok);
	assert_non_null(strstr(o.why, "65535"));
	o = run_mode(RS_BIG_CL, NULL);
	assert_false(o.ok);
	assert_non_null(strstr(o.why, "announced"));
	o = run_mode(RS_SHORT, NULL);
	assert_false(o.ok);
	assert_non_null(strstr(o.why, "shorter"));
}

static void test_resets(void **state)
{
	outcome_t o = run_mode(RS_RST, NULL);
	assert_false(o.ok);
	assert_false(o.retry);
	assert_non_null(strstr(o.why, "reset"));
	/* refused without GOAWAY: not retried here (it would be refused
	 * again on this connection), a failure of the attempt */
	o = run_mode(RS_REFUSED, NULL);
	assert_false(o.ok);
	assert_false(o.retry);
	assert_non_null(strstr(o.why, "refused"));
	/* an informational response before the real one */
	assert_true(run_mode(RS_INFO, NULL).ok);
}

/* A burst of requests sent at once reaches the server one whole request
 * after another (HEADERS, then its DATA), so a server that assembles one
 * request at a time refuses none of them. */
static void test_burst_requests_whole(void **state)
{
	cli_t *c = cli_new("/dns-query");
	nsrv_t *s = nsrv_new(RS_SERIAL);
	for (uint32_t t = 1; t <= 8; t++)
		assert_true(dv_doh_client_submit(c->cl, t, qbuf, qlen) > 0);
	npump(c, s);
	assert_int_equal(s->refused, 0);
	assert_int_equal(s->requests, 8);
	assert_int_equal(c->n, 8);
	for (uint32_t t = 1; t <= 8; t++) {
		const outcome_t *o = find(c, t);
		assert_non_null(o);
		assert_true(o->ok);
	}
	/* and again once the connection is up (SETTINGS exchanged) */
	for (uint32_t t = 11; t <= 18; t++)
		assert_true(dv_doh_client_submit(c->cl, t, qbuf, qlen) > 0);
	npump(c, s);
	assert_int_equal(s->refused, 0);
	assert_int_equal(c->n, 16);
	assert_int_equal(dv_doh_client_inflight(c->cl), 0);
	cli_free(c);
	nsrv_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_basic, setup),
		cmocka_unit_test_setup(test_bad_submit, setup),
		cmocka_unit_test_setup(test_many_out_of_order, setup),
		cmocka_unit_test_setup(test_max_concurrent_streams, setup),
		cmocka_unit_test_setup(test_http_errors, setup),
		cmocka_unit_test_setup(test_goaway, setup),
		cmocka_unit_test_setup(test_cancel, setup),
		cmocka_unit_test_setup(test_submit_in_callback, setup),
		cmocka_unit_test_setup(test_garbage, setup),
		cmocka_unit_test_setup(test_stream_ids_exhausted, setup),
		cmocka_unit_test_setup(test_request_headers, setup),
		cmocka_unit_test_setup(test_content_type, setup),
		cmocka_unit_test_setup(test_body_bounds, setup),
		cmocka_unit_test_setup(test_resets, setup),
		cmocka_unit_test_setup(test_burst_requests_whole, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

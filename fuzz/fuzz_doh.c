/*
 * DoH engine: arbitrary bytes as what a client sends, over HTTP/2 or
 * HTTP/1.1, cut into reads of some size, with the queries answered inside
 * the callback, later in order, later in reverse, or with transport errors,
 * and the output taken in pieces of some size.  Besides memory errors it
 * checks what the engine promises:
 *  - a query handed over is a plausible DNS query on a configured path,
 *    with a forwarded address only when trusted, and a valid one;
 *  - never more than max_streams queries in flight; a short read means the
 *    engine is at its limit (it does not want input);
 *  - every query can be answered exactly once, and then none is in flight;
 *  - HTTP/2 output is a sequence of whole frames starting with SETTINGS;
 *    HTTP/1.1 output is a sequence of whole HTTP/1.1 responses (read back
 *    with http-parser) with the statuses the engine uses.
 *
 * Input: byte 0 = bit 0 protocol (0 HTTP/2, 1 HTTP/1.1), bit 1 trust
 * forwarded headers, bits 2-3 answer mode, bits 4-7 read size; byte 1 =
 * bits 0-1 answer size, bits 2-4 output piece size, bit 5 drain half-way,
 * bit 6 take output after every read; the rest is the client's bytes.
 */
#include <arpa/inet.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/ident.h"
#include "src/proto/doh.h"
#include "src/core/errors.h"
#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

#define MAX_STREAMS 4
#define OUT_KEEP (1u << 20) /* output kept for the checks */

static const char *const paths[] = {"/dns-query", "/q"};

enum { A_NOW, A_FIFO, A_LIFO, A_MIXED };

typedef struct {
	dv_doh_t *d;
	bool trust;
	unsigned mode;
	size_t ans_len; /* 0: as long as the query */
	size_t ocap;
	uint32_t pending[64];
	unsigned n_pending;
	unsigned answered;
	uint8_t *out;
	size_t out_len;
	bool out_cut; /* more output than kept */
} fz_t;

static uint8_t ans[40000];

static void answer(fz_t *f, uint32_t stream, size_t qlen)
{
	size_t n = f->ans_len ? f->ans_len : qlen;
	memset(ans, 0x5a, n);
	dv_put16(ans, (uint16_t)stream);
	dv_put16(ans + 2, DV_FLAG_QR | DV_FLAG_RA);
	int rv = (f->mode == A_MIXED && stream % 3 == 0)
			 ? dv_doh_error(f->d, stream, 503)
			 : dv_doh_answer(f->d, stream, ans, n, 60);
	CHECK(rv == 0);
	/* exactly once */
	CHECK(dv_doh_answer(f->d, stream, ans, n, 60) == DV_ENOTFOUND);
	f->answered++;
}

static void answer_pending(fz_t *f)
{
	while (f->n_pending) {
		uint32_t s;
		if (f->mode == A_LIFO) {
			s = f->pending[--f->n_pending];
		} else {
			s = f->pending[0];
			memmove(f->pending, f->pending + 1,
				--f->n_pending * sizeof(f->pending[0]));
		}
		answer(f, s, 12);
	}
	CHECK(dv_doh_inflight(f->d) == 0);
}

static void on_query(void *user, uint32_t stream, const char *path,
		     const char *client_id, const uint8_t *msg, size_t len, const char *fwd)
{
	fz_t *f = user;
	CHECK(path == paths[0] || path == paths[1]);
	CHECK(!client_id || dv_ident_label_ok(client_id, strlen(client_id)));
	CHECK(len >= DV_DNS_HDR && len <= DV_DNS_MAX_MSG);
	CHECK(!(dv_get16(msg + 2) & DV_FLAG_QR));
	CHECK(dv_get16(msg + 4) == 1);
	if (fwd) {
		uint8_t a[16];
		CHECK(f->trust);
		CHECK(inet_pton(AF_INET, fwd, a) == 1 ||
		      inet_pton(AF_INET6, fwd, a) == 1);
	}
	CHECK(dv_doh_inflight(f->d) <= MAX_STREAMS);
	if (f->mode == A_NOW) {
		answer(f, stream, len);
		return;
	}
	CHECK(f->n_pending < sizeof(f->pending) / sizeof(f->pending[0]));
	f->pending[f->n_pending++] = stream;
}

static void take_output(fz_t *f)
{
	static uint8_t buf[2048];
	for (;;) {
		ssize_t n = dv_doh_output(f->d, buf, f->ocap);
		CHECK(n >= 0 && (size_t)n <= f->ocap);
		if (n == 0)
			return;
		if (f->out_len + (size_t)n > OUT_KEEP) {
			f->out_cut = true;
			continue;
		}
		memcpy(f->out + f->out_len, buf, (size_t)n);
		f->out_len += (size_t)n;
	}
}

/* HTTP/2: whole frames, SETTINGS first. */
static void check_h2(const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	CHECK(len >= 9 && p[3] == 4 /* SETTINGS */);
	size_t off = 0;
	while (off < len) {
		CHECK(len - off >= 9);
		size_t plen = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 |
			      p[off + 2];
		CHECK(plen <= 16384);
		off += 9 + plen;
	}
	CHECK(off == len);
}

/* HTTP/1.1: whole responses. */
typedef struct {
	const char *base;
	const char *hdr_end; /* just after the last header value */
	bool in_msg;
	unsigned n;
} h1chk_t;

static int c_begin(http_parser *p)
{
	h1chk_t *c = p->data;
	c->in_msg = true;
	c->hdr_end = NULL;
	return 0;
}

static int c_value(http_parser *p, const char *at, size_t len)
{
	h1chk_t *c = p->data;
	c->hdr_end = at + len;
	return 0;
}

static int c_headers(http_parser *p)
{
	h1chk_t *c = p->data;
	static const unsigned ok[] = {100, 200, 400, 404, 405, 413,
				      415, 431, 500, 503, 505};
	bool known = false;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		known |= p->status_code == ok[i];
	CHECK(known);
	CHECK(p->http_major == 1 && p->http_minor == 1);
	if (p->status_code < 200 || p->status_code == 200)
		return 0;
	/* an error response to HEAD carries no body; otherwise the body
	 * starts with the status, right after the blank line */
	char st[16];
	snprintf(st, sizeof(st), "\r\n\r\n%u ", p->status_code);
	CHECK(c->hdr_end);
	return strncmp(c->hdr_end, st, strlen(st)) != 0;
}

static int c_complete(http_parser *p)
{
	h1chk_t *c = p->data;
	c->in_msg = false;
	c->n++;
	return 0;
}

static void check_h1(const uint8_t *p, size_t len, unsigned answered)
{
	static const http_parser_settings s = {
		.on_message_begin = c_begin,
		.on_header_value = c_value,
		.on_headers_complete = c_headers,
		.on_message_complete = c_complete,
	};
	/* terminated, so the peek after a header block stays inside */
	char *text = malloc(len + 8);
	CHECK(text);
	memcpy(text, p, len);
	memset(text + len, 0, 8);
	h1chk_t c = {.base = text};
	http_parser hp;
	http_parser_init(&hp, HTTP_RESPONSE);
	hp.data = &c;
	size_t n = http_parser_execute(&hp, &s, text, len);
	CHECK(HTTP_PARSER_ERRNO(&hp) == HPE_OK);
	CHECK(n == len);
	CHECK(!c.in_msg);
	CHECK(c.n >= answered);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t f0 = data[0], f1 = data[1];
	data += 2;
	size -= 2;

	static const size_t ans_lens[] = {0, DV_DNS_HDR, 3000, 40000};
	fz_t f = {
		.trust = f0 & 2,
		.mode = (f0 >> 2) & 3,
		.ans_len = ans_lens[f1 & 3],
		.ocap = (size_t)16 << ((f1 >> 2) & 7),
	};
	static uint8_t out[OUT_KEEP];
	f.out = out;
	size_t chunk = f0 >> 4 ? (size_t)1 << ((f0 >> 4) - 1) : size;
	if (chunk == 0)
		chunk = 1;
	bool proto_h1 = f0 & 1;
	dv_doh_opts_t o = {.paths = paths,
			   .n_paths = 2,
			   .max_streams = MAX_STREAMS,
			   .max_header_bytes = 1024,
			   .trust_forwarded = f.trust};
	static const dv_doh_cb_t cb = {.query = on_query};
	f.d = dv_doh_new(proto_h1 ? DV_DOH_HTTP1 : DV_DOH_H2, &o, &cb, &f);
	CHECK(f.d);

	size_t off = 0;
	bool drained = false;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		ssize_t r = dv_doh_input(f.d, data + off, n);
		if (r < 0) {
			CHECK(!dv_doh_want_input(f.d));
			break;
		}
		CHECK((size_t)r <= n);
		off += (size_t)r;
		(void)dv_doh_receiving(f.d);
		CHECK(dv_doh_inflight(f.d) <= MAX_STREAMS);
		if ((size_t)r < n) {
			/* at its limit: the core and the client catch up */
			CHECK(!dv_doh_want_input(f.d));
			answer_pending(&f);
			take_output(&f);
			if (!dv_doh_want_input(f.d))
				break;
		}
		if ((f1 & 0x20) && !drained && off >= size / 2) {
			dv_doh_drain(f.d);
			drained = true;
		}
		if (f1 & 0x40)
			take_output(&f);
	}
	answer_pending(&f);
	take_output(&f);
	CHECK(dv_doh_inflight(f.d) == 0);
	if (!f.out_cut) {
		if (proto_h1)
			check_h1(f.out, f.out_len, f.answered);
		else
			check_h2(f.out, f.out_len);
	}
	if (proto_h1)
		CHECK(dv_doh_unsent(f.d) == 0);
	dv_doh_free(f.d);
	return 0;
}

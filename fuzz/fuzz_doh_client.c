/*
 * DoH client engine: arbitrary bytes as what an upstream DoH server sends,
 * cut into reads of some size, to a client that submits requests before
 * and while reading (also from inside its callbacks) and cancels some.
 * Besides memory errors and leaks it checks what the engine promises:
 *  - every request ends at most once, a cancelled one never; an answer is
 *    12..65535 bytes;
 *  - dv_doh_client_inflight() is exactly the requests submitted and not
 *    ended or cancelled;
 *  - a broken or finished connection takes no request; a broken one has
 *    nothing in flight;
 *  - the output is the client preface followed by whole HTTP/2 frames,
 *    whatever the size of the caller's buffer.
 *
 * Input: byte 0 = bits 0-3 requests submitted up front, bits 4-5 cancel
 * mode (none, every third up front, from inside callbacks, both), bit 6
 * submit one more from each answer, bit 7 take output after every read;
 * byte 1 = bits 0-2 read size, bits 3-4 output buffer size; the rest is
 * the server's bytes.  fuzz/corpus/make_fuzz_corpus.py writes the seeds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/proto/doh_client.h"
#include "src/core/errors.h"
#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

#define MAX_REQ 64

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct {
	dv_doh_client_t *cl;
	int32_t stream[MAX_REQ];
	bool ended[MAX_REQ], cancelled[MAX_REQ];
	unsigned n_req, live;
	bool cancel_in_cb, submit_in_cb;
	/* output checking: preface, then frames */
	size_t preface_seen;
	uint8_t fh[9];
	size_t fh_len, payload_left;
} fz_t;

static const uint8_t query[] = {
	0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x03, 'w',  'w',  'w',  0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01,
	0x00, 0x01,
};

static void submit(fz_t *f)
{
	if (f->n_req >= MAX_REQ)
		return;
	uint32_t tag = f->n_req;
	int32_t st = dv_doh_client_submit(f->cl, tag, query, sizeof(query));
	if (st == DV_ECLOSED) {
		CHECK(dv_doh_client_draining(f->cl));
		return;
	}
	CHECK(st > 0);
	f->stream[tag] = st;
	f->n_req++;
	f->live++;
}

static void cancel(fz_t *f, uint32_t tag)
{
	if (tag >= f->n_req || f->ended[tag] || f->cancelled[tag])
		return;
	dv_doh_client_cancel(f->cl, f->stream[tag]);
	f->cancelled[tag] = true;
	f->live--;
}

static void ended(fz_t *f, uint32_t tag)
{
	CHECK(tag < f->n_req);
	CHECK(!f->ended[tag] && !f->cancelled[tag]);
	f->ended[tag] = true;
	f->live--;
	if (f->cancel_in_cb)
		cancel(f, tag + 1);
}

static void on_answer(void *user, uint32_t tag, uint8_t *msg, size_t len)
{
	fz_t *f = user;
	CHECK(len >= DV_DNS_HDR && len <= DV_DOH_CLIENT_MAX_BODY);
	msg[0] = msg[len - 1]; /* writable, all of it */
	ended(f, tag);
	if (f->submit_in_cb)
		submit(f);
}

static void on_failed(void *user, uint32_t tag, bool retry, const char *why)
{
	fz_t *f = user;
	CHECK(why && why[0]);
	ended(f, tag);
}

static const dv_doh_client_cb_t cbs = {.answer = on_answer,
				       .failed = on_failed};

static void check_state(fz_t *f)
{
	CHECK(dv_doh_client_inflight(f->cl) == f->live);
	if (dv_doh_client_broken(f->cl)) {
		CHECK(f->live == 0);
		CHECK(dv_doh_client_want_close(f->cl));
		CHECK(dv_doh_client_draining(f->cl));
	}
}

/* The output so far: the preface, then whole frames. */
static void check_output(fz_t *f, const uint8_t *p, size_t n)
{
	while (n) {
		if (f->preface_seen < sizeof(preface) - 1) {
			CHECK(*p == (uint8_t)preface[f->preface_seen]);
			f->preface_seen++;
			p++;
			n--;
			continue;
		}
		if (f->fh_len < 9) {
			f->fh[f->fh_len++] = *p++;
			n--;
			if (f->fh_len == 9) {
				f->payload_left = (size_t)f->fh[0] << 16 |
						  (size_t)f->fh[1] << 8 |
						  f->fh[2];
				CHECK(f->payload_left <= 16384);
				if (f->payload_left == 0)
					f->fh_len = 0;
			}
			continue;
		}
		size_t k = n < f->payload_left ? n : f->payload_left;
		p += k;
		n -= k;
		f->payload_left -= k;
		if (f->payload_left == 0)
			f->fh_len = 0;
	}
}

static void take_output(fz_t *f, size_t cap)
{
	static uint8_t buf[16384];
	for (int i = 0; i < 10000; i++) {
		ssize_t n = dv_doh_client_output(f->cl, buf, cap);
		CHECK(n >= 0 && (size_t)n <= cap);
		check_state(f);
		if (n == 0)
			return;
		check_output(f, buf, (size_t)n);
	}
	abort(); /* output never ends */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t reads[] = {1, 7, 9, 64, 512, 4096, 16384, 1 << 20};
	static const size_t caps[] = {16, 100, 1000, 16384};
	if (size < 2)
		return 0;
	fz_t f;
	memset(&f, 0, sizeof(f));
	unsigned upfront = data[0] & 15;
	unsigned cmode = (data[0] >> 4) & 3;
	f.submit_in_cb = data[0] & 0x40;
	bool out_each = data[0] & 0x80;
	f.cancel_in_cb = cmode >= 2;
	size_t rsize = reads[data[1] & 7];
	size_t cap = caps[(data[1] >> 3) & 3];
	data += 2;
	size -= 2;

	f.cl = dv_doh_client_new("dns.test", "/dns-query", &cbs, &f);
	if (!f.cl)
		return 0;
	for (unsigned i = 0; i < upfront; i++)
		submit(&f);
	if (cmode == 1 || cmode == 3)
		for (unsigned i = 0; i < f.n_req; i += 3)
			cancel(&f, i);
	check_state(&f);
	take_output(&f, cap);

	size_t off = 0;
	while (off < size) {
		size_t n = size - off < rsize ? size - off : rsize;
		ssize_t r = dv_doh_client_input(f.cl, data + off, n);
		check_state(&f);
		if (r < 0) {
			CHECK(dv_doh_client_broken(f.cl));
			break;
		}
		CHECK((size_t)r == n);
		off += n;
		if (out_each || off == size)
			take_output(&f, cap);
		/* keep asking while the connection takes requests */
		if (!dv_doh_client_draining(f.cl) && (off / rsize) % 4 == 1)
			submit(&f);
		check_state(&f);
		if (dv_doh_client_want_close(f.cl))
			break;
	}
	take_output(&f, cap);
	check_state(&f);
	if (dv_doh_client_draining(f.cl)) {
		unsigned before = f.n_req;
		submit(&f);
		CHECK(f.n_req == before);
	}
	dv_doh_client_free(f.cl);
	return 0;
}

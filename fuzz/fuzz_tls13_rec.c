/*
 * The TLS 1.3 record layer (src/tls/tls13_rec.c) as a server's reader:
 * a stream of records from a client with fixed traffic secrets, made of
 * raw bytes and of records the client side (a second record layer with
 * the secrets swapped) sealed, so that the input reaches past the AEAD
 * into the inner content: application data, alerts, handshake messages
 * and KeyUpdate with and without update_requested.  Records are taken
 * from the stream as tls_io.c takes them (dv_tls13_rec_len, then open in
 * place) until one fails; the server's answers, with any KeyUpdate it
 * owes, go back to the client side, which must open them.  Besides memory
 * errors it checks:
 *  - while the stream holds only sealed records, each opens as sealed:
 *    application data gives back exactly the bytes sealed, a lone
 *    KeyUpdate is accepted, and nothing fails that a model calls good;
 *  - a record over 2^14 + 256 bytes of body is never taken;
 *  - what the server seals always opens on the client side, and the
 *    server owes no KeyUpdate after a seal.
 *
 * Input: byte 0 picks the suite; then operations, each a byte (low 2 bits
 * the kind):
 *   0  raw: 2-byte length, then that many bytes appended to the stream;
 *   1  sealed: a content-type byte, 2-byte length (at most 16384 + 64),
 *      then that many bytes sealed by the client side (over 16384 bytes
 *      only as raw bytes would);
 *   2  client KeyUpdate: next byte's low bit is update_requested;
 *   3  the server answers: 1-byte length of application data.
 * After each operation the server reads what the stream holds.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/tls/tls13_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static const uint8_t sec_c[48] = "fuzz client application traffic secret 0 .....";
static const uint8_t sec_s[48] = "fuzz server application traffic secret 0 .....";
static const unsigned suites[3] = { DV_TLS13_AES_128_GCM_SHA256,
				    DV_TLS13_AES_256_GCM_SHA384,
				    DV_TLS13_CHACHA20_POLY1305_SHA256 };

#define STREAM_MAX (4 * (DV_TLS13_MAX_BODY + 5))

typedef struct {
	dv_tls13_rec_t *srv, *cli;
	uint8_t stream[STREAM_MAX];
	size_t len;
	bool clean;   /* only sealed records so far */
	bool over;    /* the server failed or saw close_notify */
	/* what the sealed records in the stream must open as, in order */
	struct {
		uint8_t type;
		size_t len;
		uint8_t pt[64]; /* the first bytes of application data */
		bool good;	/* the model's view: opens without error */
	} want[64];
	size_t n_want, next_want;
} fz_t;

static uint8_t out_buf[2 * (DV_TLS13_MAX_PLAIN + 64)];

/* Is `pt` (sealed as `type`) good inner content for the model? */
static bool model_good(uint8_t type, const uint8_t *pt, size_t len)
{
	/* the type is the last non-zero byte of pt || type */
	size_t n = len;
	uint8_t t = type;
	if (t == 0) {
		while (n > 0 && pt[n - 1] == 0)
			n--;
		if (n == 0)
			return false;
		t = pt[--n];
	}
	if (t == DV_TLS13_APPDATA)
		return true;
	if (t == DV_TLS13_HANDSHAKE)
		return n == 5 && pt[0] == 24 && pt[1] == 0 && pt[2] == 0 &&
		       pt[3] == 1 && pt[4] <= 1;
	return false; /* alerts end the stream (close_notify too) */
}

static void server_reads(fz_t *f)
{
	size_t off = 0;
	while (!f->over) {
		ssize_t w = dv_tls13_rec_len(f->stream + off, f->len - off);
		if (w == 0)
			break;
		uint8_t *pt;
		size_t n;
		int ret;
		if (w < 0) {
			CHECK(!f->clean);
			ret = dv_tls13_rec_open(f->srv, f->stream + off,
						f->len - off, &pt, &n);
			CHECK(ret < 0);
			f->over = true;
			break;
		}
		CHECK((size_t)w <= 5 + DV_TLS13_MAX_BODY);
		ret = dv_tls13_rec_open(f->srv, f->stream + off, (size_t)w, &pt,
					&n);
		off += (size_t)w;
		if (f->clean && f->next_want < f->n_want) {
			size_t i = f->next_want++;
			if (f->want[i].good) {
				CHECK(ret == 0);
				if (f->want[i].type == DV_TLS13_APPDATA) {
					CHECK(n == f->want[i].len);
					size_t c = n < 64 ? n : 64;
					CHECK(memcmp(pt, f->want[i].pt, c) == 0);
				}
			}
		}
		if (ret != 0) {
			CHECK(ret == DV_TLS_EOF || ret < 0);
			f->over = true;
		}
	}
	memmove(f->stream, f->stream + off, f->len - off);
	f->len -= off;
}

static void stream_add(fz_t *f, const uint8_t *p, size_t n)
{
	if (n > STREAM_MAX - f->len)
		n = STREAM_MAX - f->len;
	memcpy(f->stream + f->len, p, n);
	f->len += n;
}

/* The client side seals; the record joins the stream. */
static void client_seals(fz_t *f, uint8_t type, const uint8_t *pt, size_t n)
{
	ssize_t w = dv_tls13_rec_seal(f->cli, type, pt, n, out_buf,
				      sizeof(out_buf));
	if (w <= 0)
		return;
	if ((size_t)w > STREAM_MAX - f->len) {
		f->clean = false;
		return;
	}
	/* a KeyUpdate sealed as content moves the server's read keys but
	 * not the client side's write keys: nothing after it opens */
	bool desync = model_good(type, pt, n) &&
		      !(type == DV_TLS13_APPDATA ||
			(type == 0 && n && pt[n - 1] == DV_TLS13_APPDATA));
	if (f->n_want < 64) {
		f->want[f->n_want].type = type;
		f->want[f->n_want].len = n;
		memcpy(f->want[f->n_want].pt, pt, n < 64 ? n : 64);
		f->want[f->n_want].good = model_good(type, pt, n);
		f->n_want++;
	} else {
		f->clean = false;
	}
	stream_add(f, out_buf, (size_t)w);
	if (desync)
		f->clean = false;
}

/* The server answers; the client side opens every record of it. */
static void server_answers(fz_t *f, size_t n)
{
	uint8_t pt[255];
	memset(pt, 0x5a, n);
	ssize_t w = dv_tls13_rec_seal(f->srv, DV_TLS13_APPDATA, pt, n, out_buf,
				      sizeof(out_buf));
	CHECK(w > 0);
	CHECK(!dv_tls13_rec_owes(f->srv));
	size_t off = 0;
	bool got = false;
	while (off < (size_t)w) {
		ssize_t k = dv_tls13_rec_len(out_buf + off, (size_t)w - off);
		CHECK(k > 0);
		uint8_t *p;
		size_t m;
		CHECK(dv_tls13_rec_open(f->cli, out_buf + off, (size_t)k, &p,
					&m) == 0);
		if (m) {
			CHECK(m == n && memcmp(p, pt, n) == 0);
			got = true;
		}
		off += (size_t)k;
	}
	CHECK(got || n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static fz_t f;
	memset(&f, 0, offsetof(fz_t, stream));
	f.len = 0;
	f.clean = true;
	f.over = false;
	f.n_want = f.next_want = 0;
	unsigned suite = suites[data[0] % 3];
	f.srv = dv_tls13_rec_new(suite, sec_c, 0, sec_s, 0);
	f.cli = dv_tls13_rec_new(suite, sec_s, 0, sec_c, 0);
	CHECK(f.srv && f.cli);
	size_t i = 1;
	while (i < size && !f.over) {
		uint8_t op = data[i++];
		switch (op & 3) {
		case 0: {
			if (size - i < 2)
				goto done;
			size_t n = (size_t)data[i] << 8 | data[i + 1];
			i += 2;
			if (n > size - i)
				n = size - i;
			stream_add(&f, data + i, n);
			i += n;
			f.clean = false;
			break;
		}
		case 1: {
			if (size - i < 3)
				goto done;
			uint8_t type = data[i];
			size_t n = (size_t)data[i + 1] << 8 | data[i + 2];
			i += 3;
			if (n > size - i)
				n = size - i;
			if (n > DV_TLS13_MAX_PLAIN)
				n = DV_TLS13_MAX_PLAIN;
			client_seals(&f, type, data + i, n);
			i += n;
			break;
		}
		case 2: {
			bool request = i < size && (data[i++] & 1);
			uint8_t ku[5] = { 24, 0, 0, 1, request };
			/* sealed by the client side, which moves on after it */
			ssize_t w = dv_tls13_rec_update(f.cli, request, out_buf,
							sizeof(out_buf));
			CHECK(w > 0);
			if (f.n_want < 64) {
				f.want[f.n_want].type = DV_TLS13_HANDSHAKE;
				f.want[f.n_want].len = 5;
				memcpy(f.want[f.n_want].pt, ku, 5);
				f.want[f.n_want].good = true;
				f.n_want++;
			} else {
				f.clean = false;
			}
			if ((size_t)w > STREAM_MAX - f.len)
				f.clean = false;
			stream_add(&f, out_buf, (size_t)w);
			break;
		}
		case 3: {
			size_t n = i < size ? data[i++] : 0;
			server_reads(&f);
			if (!f.over)
				server_answers(&f, n);
			break;
		}
		}
		server_reads(&f);
	}
done:
	dv_tls13_rec_free(f.srv);
	dv_tls13_rec_free(f.cli);
	return 0;
}

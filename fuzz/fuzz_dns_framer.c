/*
 * DNS stream framing (src/proto/dns_framer.c): arbitrary stream bytes read
 * in arbitrary pieces into a buffer sized the way the listeners size it
 * (dv_dns_framer_need), messages taken from its front while a simulated
 * in-flight bound lets them, the rest moved to the front.  Besides memory
 * errors it checks the framer against a model computed from the whole
 * stream at once:
 *  - the messages come in order, each exactly once, in place in the
 *    buffer, with the bytes the stream has at their offsets;
 *  - a refused length (under min_len, over max_len) is reported exactly
 *    when the model reaches that prefix, and nothing after it is taken;
 *  - the size a buffer needs is that of the frame at its front;
 *  - a frame written with dv_dns_frame_write reads back the same.
 *
 * Input: byte 0 = limits (bits 0-1 min_len 0, 1, 12 or 300; bit 2 max_len
 * 512, else 65535), byte 1 = split seed; the rest is the stream.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/proto/dns_framer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

#define READ_MAX 700

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const uint16_t mins[] = {0, 1, 12, 300};
	const dv_dns_framer_t f = {
		.min_len = mins[data[0] & 3],
		.max_len = data[0] & 4 ? 512 : 65535,
	};
	uint32_t rng = data[1] * 2654435761u + 1;
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	/* the model: frame offsets in the whole stream, and how it ends */
	size_t n_model = 0, bad_at = SIZE_MAX;
	int bad = 0;
	for (size_t o = 0; n - o >= 2;) {
		size_t mlen = (size_t)s[o] << 8 | s[o + 1];
		if (mlen < f.min_len || mlen > f.max_len) {
			bad = mlen < f.min_len ? -EBADMSG : -EMSGSIZE;
			bad_at = o;
			break;
		}
		if (n - o - 2 < mlen)
			break;
		o += 2 + mlen;
		n_model++;
	}

	/* the reader: a buffer its reads append to, as a listener's */
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, fed = 0, base = 0; /* base: stream offset
						       of buf[0] */
	size_t got = 0;
	int err = 0;
	while (!err) {
		rng = rng * 1103515245u + 12345u;
		size_t piece = (rng >> 16) % READ_MAX + 1;
		if (piece > n - fed)
			piece = n - fed;
		size_t need = dv_dns_framer_need(buf, len);
		CHECK(need >= 2 && need <= DV_DNS_FRAME_MAX);
		if (len >= 2)
			CHECK(need == 2u + ((size_t)buf[0] << 8 | buf[1]));
		if (need < len + piece)
			need = len + piece;
		if (need > cap) {
			uint8_t *b = realloc(buf, need);
			CHECK(b);
			buf = b;
			cap = need;
		}
		if (piece)
			memcpy(buf + len, s + fed, piece);
		len += piece;
		fed += piece;
		/* a bound on the messages taken per turn: the rest waits */
		size_t turn = (rng >> 8) % 4 ? SIZE_MAX : (rng >> 4) % 3;
		size_t off = 0;
		dv_dns_msg_t m;
		int r = 0;
		while (turn-- && (r = dv_dns_framer_next(&f, buf, len, &off,
							 &m)) > 0) {
			size_t at = base + (size_t)(m.msg - buf) - 2;
			CHECK(m.msg >= buf + 2 && m.msg + m.len <= buf + len);
			CHECK(got < n_model);
			CHECK(at < bad_at && at + 2 + m.len <= n);
			CHECK(((size_t)s[at] << 8 | s[at + 1]) == m.len);
			CHECK(memcmp(m.msg, s + at + 2, m.len) == 0);
			CHECK(m.len >= f.min_len && m.len <= f.max_len);
			got++;
		}
		if (r < 0) {
			CHECK(r == bad && base + off == bad_at);
			/* and again: the stream stays broken */
			size_t o2 = off;
			CHECK(dv_dns_framer_next(&f, buf, len, &o2, &m) == r);
			CHECK(o2 == off);
			err = r;
		}
		memmove(buf, buf + off, len - off);
		len -= off;
		base += off;
		if (fed == n && !err) {
			/* the end: take everything the bound left */
			off = 0;
			while ((r = dv_dns_framer_next(&f, buf, len, &off,
						       &m)) > 0)
				got++;
			if (r < 0) {
				CHECK(r == bad && base + off == bad_at);
				err = r;
			}
			base += off;
			break;
		}
	}
	CHECK(got == n_model);
	CHECK(err == bad);

	/* writing: what is written reads back, in place too */
	if (n <= 65535) {
		size_t wcap = n + 2 + (rng & 1);
		uint8_t *w = malloc(wcap);
		CHECK(w);
		CHECK(dv_dns_frame_write(w, wcap, s, n) == (ssize_t)(n + 2));
		CHECK(dv_dns_frame_write(w, n + 1, s, n) == DV_ESPACE);
		const dv_dns_framer_t any = {0, 65535};
		size_t off = 0;
		dv_dns_msg_t m;
		CHECK(dv_dns_framer_next(&any, w, n + 2, &off, &m) == 1);
		CHECK(off == n + 2 && m.len == n);
		CHECK(n == 0 || memcmp(m.msg, s, n) == 0);
		free(w);
	}
	free(buf);
	return 0;
}

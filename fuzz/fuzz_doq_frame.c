/*
 * DoQ stream framing: arbitrary stream bytes cut into arbitrary pieces,
 * FIN on the last piece or not, followed or not by more data after FIN.
 * Besides memory errors it checks the framer against a model computed
 * from the whole stream at once:
 *  - COMPLETE exactly when the bytes reach 2 + length, and the message is
 *    those bytes;
 *  - a protocol error exactly when the stream has more than one message,
 *    ends (FIN) inside one, or carries anything after FIN;
 *  - the query checks (id 0, QUERY-only 0-RTT, no keepalive) never accept
 *    a non-zero id.
 *
 * Input: byte 0 = split seed, byte 1 = bit 0 FIN at the end, bit 1 0-RTT,
 * bit 2 one more piece after FIN; the rest is the stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/proto/doq_frame.h"
#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t rng = data[0] * 2654435761u + 1;
	bool fin = data[1] & 1, early = data[1] & 2, after = data[1] & 4;
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	/* the model: the whole stream T (s, plus s[0] again when a piece
	 * follows), ending with FIN when asked; data after FIN is an error */
	size_t tn = n + (after && n ? 1 : 0);
	size_t want = SIZE_MAX;
	if (n >= 2)
		want = 2u + dv_get16(s);
	else if (n == 1 && after)
		want = 2u + (size_t)(s[0] << 8 | s[0]);
	bool model_error = (fin && after) || tn > want ||
			   ((fin || after) && tn < want);
	bool model_complete = !model_error && tn == want;

	dv_doq_frame_t f = {0};
	const char *why = NULL;
	size_t off = 0;
	int completes = 0, errors = 0;
	for (;;) {
		rng = rng * 1103515245u + 12345u;
		size_t piece = (rng >> 16) % 9 == 0 ? 0 : (rng >> 16) % 700 + 1;
		if (piece > n - off)
			piece = n - off;
		bool last = off + piece == n;
		int r = dv_doq_frame_feed(&f, s + off, piece, last && fin, &why);
		CHECK(r != DV_DOQ_ENOMEM);
		off += piece;
		if (r == DV_DOQ_EPROTO) {
			CHECK(why != NULL);
			errors++;
			break;
		}
		if (r == DV_DOQ_COMPLETE) {
			completes++;
			CHECK(f.len == want && want <= n);
			CHECK(memcmp(f.buf, s, want) == 0);
			CHECK(dv_doq_frame_msg_len(&f) == want - 2);
			const uint8_t *m = dv_doq_frame_msg(&f);
			size_t ml = dv_doq_frame_msg_len(&f);
			if (dv_doq_check_query(m, ml, early, &why) == 0 &&
			    ml >= DV_DNS_HDR)
				CHECK(m[0] == 0 && m[1] == 0);
		}
		if (last) {
			if (after) {
				r = dv_doq_frame_feed(&f, s, n ? 1 : 0, true,
						      &why);
				CHECK(r != DV_DOQ_ENOMEM);
				if (r == DV_DOQ_EPROTO)
					errors++;
				else if (r == DV_DOQ_COMPLETE)
					completes++;
			}
			break;
		}
	}
	CHECK(completes <= 1);
	CHECK(errors == (model_error ? 1 : 0));
	if (!model_error)
		CHECK(completes == (model_complete ? 1 : 0));
	dv_doq_frame_free(&f);
	return 0;
}

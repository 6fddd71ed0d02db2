/*
 * DoQ stream framing.  See doq_frame.h.
 */
#include "src/proto/doq_frame.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/wire.h"

const char *dv_doq_error_name(uint64_t code)
{
	switch (code) {
#define DV_DOQ_ERR_CASE(name, val)                                           \
	case val:                                                            \
		return #name;
		DV_DOQ_ERRORS(DV_DOQ_ERR_CASE)
#undef DV_DOQ_ERR_CASE
	}
	return NULL;
}

uint64_t dv_doq_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t expected(const dv_doq_frame_t *f)
{
	return f->len >= 2 ? 2u + dv_get16(f->buf) : DV_DOQ_MSG_MAX;
}

int dv_doq_frame_feed(dv_doq_frame_t *f, const uint8_t *data, size_t len,
		      bool fin, const char **why)
{
	if (f->fin && (len || !fin)) {
		*why = "data after the end of the stream";
		return DV_DOQ_EPROTO;
	}
	if (f->complete) {
		if (len) {
			*why = "data after the query";
			return DV_DOQ_EPROTO;
		}
		f->fin = f->fin || fin;
		return DV_DOQ_DONE;
	}
	if (len) {
		/* never more than one message: the length, once known, caps
		 * the stream (before it is known, the largest message does) */
		size_t need = f->len + len;
		size_t want = DV_DOQ_MSG_MAX;
		if (f->len >= 2) {
			want = expected(f);
		} else if (need >= 2) {
			uint8_t hi = f->len ? f->buf[0] : data[0];
			uint8_t lo = f->len ? data[0] : data[1];
			want = 2u + (size_t)(hi << 8 | lo);
		}
		if (need > want) {
			*why = "more than one message on a stream";
			return DV_DOQ_EPROTO;
		}
		if (need > f->cap) {
			size_t cap = f->cap ? f->cap : 512;
			while (cap < need)
				cap *= 2;
			if (cap > DV_DOQ_MSG_MAX)
				cap = DV_DOQ_MSG_MAX;
			uint8_t *p = realloc(f->buf, cap);
			if (!p)
				return DV_DOQ_ENOMEM;
			f->buf = p;
			f->cap = cap;
		}
		memcpy(f->buf + f->len, data, len);
		f->len += len;
	}
	f->fin = fin;
	if (f->len >= 2 && f->len == expected(f)) {
		f->complete = true;
		return DV_DOQ_COMPLETE;
	}
	if (fin) {
		*why = "stream ended inside a message";
		return DV_DOQ_EPROTO;
	}
	return DV_DOQ_MORE;
}

void dv_doq_frame_release(dv_doq_frame_t *f)
{
	free(f->buf);
	f->buf = NULL;
	f->cap = 0;
}

void dv_doq_frame_free(dv_doq_frame_t *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

int dv_doq_check_query(const uint8_t *msg, size_t len, bool early,
		       const char **why)
{
	if (len < DV_DNS_HDR)
		return 0; /* not DNS: the core drops or answers it */
	if (msg[0] | msg[1]) {
		*why = "message id not 0";
		return DV_DOQ_EPROTO;
	}
	if (early && ((msg[2] >> 3) & 0xf) != 0) {
		*why = "non-QUERY message in 0-RTT";
		return DV_DOQ_EPROTO;
	}
	dv_wire_query_t view;
	if (dv_wire_parse_query(msg, len, &view) == 0 && view.edns_keepalive) {
		*why = "edns-tcp-keepalive over QUIC";
		return DV_DOQ_EPROTO;
	}
	return 0;
}

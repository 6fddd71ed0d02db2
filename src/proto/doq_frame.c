/*
 * DoQ stream framing.  See doq_frame.h.
 */
#include "src/proto/doq_frame.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/wire.h"
#include "src/proto/dns_framer.h"

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

/* Room for `need` bytes in f->buf: doubling from 512, at most a frame. */
static int reserve(dv_doq_frame_t *f, size_t need)
{
	if (need <= f->cap)
		return 0;
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
	return 0;
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
		/* never more than one message: the length, once its prefix
		 * is in, caps the stream (before, the largest frame does) */
		uint8_t prefix[DV_DNS_FRAME_PREFIX];
		size_t have = 0;
		for (; have < DV_DNS_FRAME_PREFIX && have < f->len + len; have++)
			prefix[have] = have < f->len ? f->buf[have]
						     : data[have - f->len];
		size_t want = have < DV_DNS_FRAME_PREFIX
				      ? DV_DOQ_MSG_MAX
				      : dv_dns_framer_need(prefix, have);
		if (f->len + len > want) {
			*why = "more than one message on a stream";
			return DV_DOQ_EPROTO;
		}
		if (reserve(f, f->len + len) < 0)
			return DV_DOQ_ENOMEM;
		memcpy(f->buf + f->len, data, len);
		f->len += len;
	}
	f->fin = fin;
	if (f->len >= DV_DNS_FRAME_PREFIX &&
	    f->len == dv_dns_framer_need(f->buf, f->len)) {
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

#pragma once
/*
 * What both ends of DoQ (RFC 9250) share: the error codes, the clock ngtcp2
 * is driven with, and the stream framing (§4.2): what one client-initiated stream may
 * carry, checked as its bytes arrive in any pieces.  A stream carries
 * exactly one 2-byte length and that many bytes of DNS message, then FIN.
 * The length prefix is read by the DNS stream framer (dns_framer.h).
 * Pure: no sockets, no QUIC; transports/doq.c feeds it ngtcp2's stream
 * data, the fuzz target feeds it arbitrary splits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_DOQ_MSG_MAX (2 + 65535)

/* DoQ application error codes (RFC 9250 §4.3): X(name, value) */
#define DV_DOQ_ERRORS(X)                                                     \
	X(DOQ_NO_ERROR, 0x0)                                                 \
	X(DOQ_INTERNAL_ERROR, 0x1)                                           \
	X(DOQ_PROTOCOL_ERROR, 0x2)                                           \
	X(DOQ_REQUEST_CANCELLED, 0x3)                                        \
	X(DOQ_EXCESSIVE_LOAD, 0x4)                                           \
	X(DOQ_UNSPECIFIED_ERROR, 0x5)

enum {
#define DV_DOQ_ERR_ENUM(name, val) DV_##name = val,
	DV_DOQ_ERRORS(DV_DOQ_ERR_ENUM)
#undef DV_DOQ_ERR_ENUM
};

/* "DOQ_PROTOCOL_ERROR", or NULL for a code RFC 9250 does not name */
const char *dv_doq_error_name(uint64_t code);

/* CLOCK_MONOTONIC in nanoseconds: ngtcp2's timestamps on both ends. */
uint64_t dv_doq_now(void);

typedef struct {
	uint8_t *buf; /* 2-byte length + message so far (malloc) */
	size_t len, cap;
	bool complete; /* the whole message is in buf */
	bool fin;      /* the stream ended */
} dv_doq_frame_t;

enum {
	DV_DOQ_MORE = 0,     /* wait for more bytes */
	DV_DOQ_COMPLETE = 1, /* the message is whole (returned once) */
	DV_DOQ_DONE = 2,     /* nothing new: FIN after a whole message */
	DV_DOQ_EPROTO = -EPROTO, /* protocol error, *why says which */
	DV_DOQ_ENOMEM = -ENOMEM,
};

/* Feed `len` bytes (possibly 0) and whether the stream ended with them. */
int dv_doq_frame_feed(dv_doq_frame_t *f, const uint8_t *data, size_t len,
		      bool fin, const char **why);
/* The message (valid once complete). */
static inline const uint8_t *dv_doq_frame_msg(const dv_doq_frame_t *f)
{
	return f->buf + 2;
}
static inline size_t dv_doq_frame_msg_len(const dv_doq_frame_t *f)
{
	return f->len - 2;
}
void dv_doq_frame_free(dv_doq_frame_t *f);
/* Free the bytes of a complete message (copied elsewhere) but remember
 * the stream's state, so that what follows is still checked. */
void dv_doq_frame_release(dv_doq_frame_t *f);

/*
 * What RFC 9250 asks of a query that arrived whole: message id 0 (§4.2.1),
 * no edns-tcp-keepalive (§5.5.2), and only QUERY in 0-RTT (§4.5) when
 * `early`.  0, or DV_DOQ_EPROTO with the reason in *why.  Other defects
 * (not DNS, FORMERR material) are the core's to answer.
 */
int dv_doq_check_query(const uint8_t *msg, size_t len, bool early,
		       const char **why);

#pragma once
/*
 * DNS messages on a byte stream (RFC 1035 4.2.2, RFC 7766 8, RFC 7858 3.3,
 * RFC 9250 4.2): each message follows its length, 2 bytes in network
 * order.  One framer for every stream that carries them: the listeners'
 * TCP and DoT connections (transports/stream_dns.c), the upstream TCP and
 * TLS connections, and DoQ streams (src/proto/doq_frame.c).
 *
 * Pure: no sockets, no allocation, no copies.  The caller owns the buffer
 * its reads append to, however the bytes were cut (a prefix split in two,
 * a message over many reads, many messages in one read); the framer finds
 * the whole messages at its front and points into it, says how many bytes
 * the message being received needs (to size the buffer), and reports a
 * length the caller refuses as soon as its prefix is in.  What was taken
 * is dropped by the caller (one memmove per read, not one per message).
 *
 *	size_t off = 0;
 *	dv_dns_msg_t m;
 *	int r;
 *	while ((r = dv_dns_framer_next(&f, buf, len, &off, &m)) > 0)
 *		handle(m.msg, m.len);
 *	if (r < 0)
 *		... broken framing: close ...
 *	memmove(buf, buf + off, len - off);
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DV_DNS_FRAME_PREFIX 2
/* the largest frame: a prefix and a 65535-byte message */
#define DV_DNS_FRAME_MAX (DV_DNS_FRAME_PREFIX + 65535)

/* What a reader accepts: messages of min_len..max_len bytes.  {0, 65535}
 * takes whatever the prefix can say. */
typedef struct {
	uint16_t min_len;
	uint16_t max_len;
} dv_dns_framer_t;

/* A message inside the caller's buffer (no copy). */
typedef struct {
	const uint8_t *msg;
	size_t len;
} dv_dns_msg_t;

/*
 * The message at buf + *off (buf holds len bytes).
 *   1          it is whole: *m points at it, *off moves past it
 *   0          not yet (or nothing left): *off and *m unchanged
 *   -EBADMSG   its prefix announces fewer than min_len bytes
 *   -EMSGSIZE  its prefix announces more than max_len bytes
 * The errors come as soon as the prefix is in, and again on every call
 * (*off unchanged): the stream cannot be resynchronized.
 */
int dv_dns_framer_next(const dv_dns_framer_t *f, const uint8_t *buf,
		       size_t len, size_t *off, dv_dns_msg_t *m);

/*
 * How many bytes the frame at the front of buf (len bytes so far) needs in
 * all: prefix and message once the prefix is in, else the prefix alone.
 * For sizing the buffer the next read goes into; the limits of a framer do
 * not enter (a refused length is reported by dv_dns_framer_next).
 */
size_t dv_dns_framer_need(const uint8_t *buf, size_t len);

/* Write the prefix of a message of len (<= 65535) bytes at dst; the
 * message follows it (written before or after). */
static inline void dv_dns_frame_prefix(uint8_t *dst, size_t len)
{
	dst[0] = (uint8_t)(len >> 8);
	dst[1] = (uint8_t)len;
}

/*
 * Write the frame of msg (len bytes) into buf (cap bytes): prefix and a
 * copy of the message.  Its size (2 + len), -EMSGSIZE for a message over
 * 65535 bytes, or DV_ESPACE when cap is too small.
 */
ssize_t dv_dns_frame_write(uint8_t *buf, size_t cap, const uint8_t *msg,
			   size_t len);

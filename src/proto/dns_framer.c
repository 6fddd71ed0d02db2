/*
 * DNS stream framing.  See dns_framer.h.
 */
#include "src/proto/dns_framer.h"

#include <errno.h>
#include <string.h>

#include "src/core/errors.h"

int dv_dns_framer_next(const dv_dns_framer_t *f, const uint8_t *buf,
		       size_t len, size_t *off, dv_dns_msg_t *m)
{
	size_t o = *off;
	if (o > len || len - o < DV_DNS_FRAME_PREFIX)
		return 0;
	size_t mlen = (size_t)buf[o] << 8 | buf[o + 1];
	/* refused before the message is whole: a reader need not buffer
	 * (or wait for) bytes it will never take */
	if (mlen < f->min_len)
		return -EBADMSG;
	if (mlen > f->max_len)
		return -EMSGSIZE;
	if (len - o - DV_DNS_FRAME_PREFIX < mlen)
		return 0;
	m->msg = buf + o + DV_DNS_FRAME_PREFIX;
	m->len = mlen;
	*off = o + DV_DNS_FRAME_PREFIX + mlen;
	return 1;
}

size_t dv_dns_framer_need(const uint8_t *buf, size_t len)
{
	if (len < DV_DNS_FRAME_PREFIX)
		return DV_DNS_FRAME_PREFIX;
	return DV_DNS_FRAME_PREFIX + ((size_t)buf[0] << 8 | buf[1]);
}

ssize_t dv_dns_frame_write(uint8_t *buf, size_t cap, const uint8_t *msg,
			   size_t len)
{
	if (len > DV_DNS_FRAME_MAX - DV_DNS_FRAME_PREFIX)
		return -EMSGSIZE;
	if (cap < DV_DNS_FRAME_PREFIX + len)
		return DV_ESPACE;
	dv_dns_frame_prefix(buf, len);
	memmove(buf + DV_DNS_FRAME_PREFIX, msg, len);
	return (ssize_t)(DV_DNS_FRAME_PREFIX + len);
}

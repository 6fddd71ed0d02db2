/*
 * PROXY protocol v2 headers (haproxy's doc/proxy-protocol.txt, section
 * 2.2): a 12-byte signature, version and command, family and transport,
 * a 16-bit length, then the addresses and TLVs.
 */
#include "src/proto/proxy.h"

#include <netinet/in.h>
#include <string.h>

#include "src/core/errors.h"

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

#define CMD_LOCAL 0x0
#define CMD_PROXY 0x1
#define FAM_INET 0x1
#define FAM_INET6 0x2

bool dv_proxy_v2_is_signature(const uint8_t *buf, size_t len)
{
	return len >= sizeof(sig) && memcmp(buf, sig, sizeof(sig)) == 0;
}

int dv_proxy_v2_need(const uint8_t *buf, size_t len)
{
	size_t n = len < sizeof(sig) ? len : sizeof(sig);
	if (n && memcmp(buf, sig, n) != 0)
		return DV_EMALFORMED;
	if (len > 12 && (buf[12] >> 4) != 2)
		return DV_EMALFORMED; /* version 2 only */
	if (len < DV_PROXY_V2_PREFIX)
		return DV_PROXY_V2_PREFIX;
	size_t body = (size_t)buf[14] << 8 | buf[15];
	if (body > DV_PROXY_V2_MAX_BODY)
		return DV_ELIMIT;
	return (int)(DV_PROXY_V2_PREFIX + body);
}

/* TLVs are not used, but they must tile the rest of the header. */
static int check_tlvs(const uint8_t *p, size_t len)
{
	while (len) {
		if (len < 3)
			return DV_EMALFORMED;
		size_t l = (size_t)p[1] << 8 | p[2];
		if (len - 3 < l)
			return DV_EMALFORMED;
		p += 3 + l;
		len -= 3 + l;
	}
	return 0;
}

int dv_proxy_v2_parse(const uint8_t *buf, size_t len, dv_proxy_hdr_t *out)
{
	memset(out, 0, sizeof(*out));
	int need = dv_proxy_v2_need(buf, len);
	if (need < 0)
		return need;
	if ((size_t)need != len)
		return DV_EMALFORMED;
	unsigned cmd = buf[12] & 0x0f, fam = buf[13] >> 4;
	const uint8_t *p = buf + DV_PROXY_V2_PREFIX;
	size_t body = len - DV_PROXY_V2_PREFIX, alen;
	if (cmd != CMD_LOCAL && cmd != CMD_PROXY)
		return DV_EMALFORMED;
	if (cmd == CMD_LOCAL || (fam != FAM_INET && fam != FAM_INET6)) {
		/* the receiver must skip the address block and the TLVs
		 * without looking at them (2.2) */
		out->local = true;
		return 0;
	}
	if (fam == FAM_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		alen = 12;
		if (body < alen)
			return DV_EMALFORMED;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p, 4);
		memcpy(&d->sin_addr, p + 4, 4);
		memcpy(&s->sin_port, p + 8, 2);
		memcpy(&d->sin_port, p + 10, 2);
		out->src_len = out->dst_len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		alen = 36;
		if (body < alen)
			return DV_EMALFORMED;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p, 16);
		memcpy(&d->sin6_addr, p + 16, 16);
		memcpy(&s->sin6_port, p + 32, 2);
		memcpy(&d->sin6_port, p + 34, 2);
		out->src_len = out->dst_len = sizeof(*s);
	}
	if (check_tlvs(p + alen, body - alen) < 0) {
		memset(out, 0, sizeof(*out));
		return DV_EMALFORMED;
	}
	return 0;
}

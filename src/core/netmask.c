/*
 * IP address prefixes (see netmask.h).
 */
#include "src/core/netmask.h"
#include "src/core/errors.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Clear every bit of addr[] below the first `bits`. */
static void clear_host_bits(uint8_t *addr, size_t len, unsigned bits)
{
	for (size_t i = 0; i < len; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		addr[i] &= (uint8_t)(0xff00u >> bits);
		bits = 0;
	}
}

/* The first `bits` bits of a and b are equal. */
static bool same_prefix(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	size_t whole = bits / 8;
	unsigned rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}

int dv_netmask_parse(const char *text, dv_netmask_t *m, char *why,
		     size_t why_len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t host_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
	dv_netmask_t r;
	unsigned max, bits;

	memset(&r, 0, sizeof(r));
	if (host_len == 0 || host_len >= sizeof(host))
		goto not_an_address;
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	if (inet_pton(AF_INET, host, r.addr) == 1) {
		r.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, r.addr) == 1) {
		r.family = AF_INET6;
		max = 128;
	} else {
		goto not_an_address;
	}

	bits = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		size_t n = strlen(p);

		/* decimal digits only: no sign, no spaces, no hex */
		if (n == 0 || strspn(p, "0123456789") != n)
			goto not_an_address;
		bits = 0;
		for (; *p != '\0' && bits <= max; p++)
			bits = bits * 10 + (unsigned)(*p - '0');
		if (bits > max) {
			if (why != NULL && why_len > 0)
				snprintf(why, why_len,
					 "prefix length must be 0..%u", max);
			return DV_ECONFIG;
		}
	}
	r.bits = (uint8_t)bits;
	clear_host_bits(r.addr, r.family == AF_INET ? 4 : 16, bits);
	*m = r;
	return 0;

not_an_address:
	if (why != NULL && why_len > 0)
		snprintf(why, why_len, "not an IP address or prefix");
	return DV_ECONFIG;
}

bool dv_netmask_match(const dv_netmask_t *m, const struct sockaddr *sa)
{
	uint8_t v6[16];
	const uint8_t *v4 = NULL;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		v4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		memcpy(v6, v4mapped, sizeof(v4mapped));
		memcpy(v6 + 12, v4, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(v6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		if (memcmp(v6, v4mapped, sizeof(v4mapped)) == 0)
			v4 = v6 + 12;
	} else {
		return false;
	}
	if (m->family == AF_INET)
		return v4 != NULL && same_prefix(v4, m->addr, m->bits);
	if (m->family != AF_INET6)
		return false;
	/* An IPv4 peer is inside an IPv6 prefix only when the prefix lies
	 * within ::ffff:0:0/96: "::/0" means every IPv6 client, not all. */
	if (v4 != NULL && m->bits < 96)
		return false;
	return same_prefix(v6, m->addr, m->bits);
}

bool dv_netmask_match_any(const dv_netmask_t *list, unsigned n,
			  const struct sockaddr *sa)
{
	for (unsigned i = 0; i < n; i++) {
		if (dv_netmask_match(&list[i], sa))
			return true;
	}
	return false;
}

void dv_netmask_format(const dv_netmask_t *m, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (buf == NULL || len == 0)
		return;
	if ((m->family != AF_INET && m->family != AF_INET6) ||
	    inet_ntop(m->family, m->addr, host, sizeof(host)) == NULL) {
		snprintf(buf, len, "(none)");
		return;
	}
	snprintf(buf, len, "%s/%u", host, (unsigned)m->bits);
}

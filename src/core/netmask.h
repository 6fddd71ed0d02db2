#pragma once
/*
 * IP address prefixes: "192.0.2.0/24", "2001:db8::/32", or a single address
 * ("127.0.0.1" = /32, "::1" = /128), and whether a socket address falls
 * inside one.  Used for doh.trusted-proxies.  No allocation, no I/O.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text dv_netmask_format() writes, NUL included. */
#define DV_NETMASK_TEXT_MAX 64

typedef struct {
	uint8_t family;   /* AF_INET or AF_INET6 */
	uint8_t bits;     /* prefix length: 0..32 or 0..128 */
	uint8_t addr[16]; /* network address, host bits zero (IPv4: the first
			     4 bytes, the rest zero) */
} dv_netmask_t;

/*
 * Parse "ADDRESS" or "ADDRESS/LEN" (inet_pton syntax, LEN decimal 0..32 for
 * IPv4, 0..128 for IPv6).  Host bits below the prefix are cleared, so
 * "192.0.2.1/24" is 192.0.2.0/24 and equal prefixes are byte-for-byte equal.
 * Returns 0, or DV_ECONFIG with a reason in `why` ("not an IP address or
 * prefix", "prefix length must be 0..32").
 */
int dv_netmask_parse(const char *text, dv_netmask_t *m, char *why,
		     size_t why_len);

/*
 * Whether `sa` (AF_INET or AF_INET6; anything else never matches) is inside
 * `m`.  An IPv4-mapped IPv6 address (::ffff:192.0.2.1, what a dual-stack
 * socket reports for an IPv4 client) counts as the IPv4 address it carries:
 * it matches IPv4 prefixes, and IPv6 prefixes only within ::ffff:0:0/96
 * (as an IPv4 address does), so "::/0" does not take in IPv4 clients.
 */
bool dv_netmask_match(const dv_netmask_t *m, const struct sockaddr *sa);

/* Whether `sa` is inside any of the `n` prefixes of `list`. */
bool dv_netmask_match_any(const dv_netmask_t *list, unsigned n,
			  const struct sockaddr *sa);

/* "192.0.2.0/24", "2001:db8::/32" (always with the length). */
void dv_netmask_format(const dv_netmask_t *m, char *buf, size_t len);

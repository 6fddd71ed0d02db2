/*
 * PROXY protocol v2 headers (src/proto/proxy.c), fed as the stream code
 * feeds them: the length dv_proxy_v2_need asks for, then a parse of
 * exactly that.  Besides memory errors it checks that the length asked for
 * never shrinks as more bytes are known, stays within DV_PROXY_V2_MAX, and
 * that an accepted PROXY header names an IPv4 or IPv6 address.
 *
 * Input: the first bytes of a connection.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "src/proto/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int last = 0;
	size_t have = 0;
	for (;;) {
		int need = dv_proxy_v2_need(data, have);
		if (need < 0)
			return 0;
		CHECK(need >= last && need <= DV_PROXY_V2_MAX);
		CHECK((size_t)need > have || have == (size_t)need);
		last = need;
		if ((size_t)need <= have)
			break;
		if ((size_t)need > size)
			return 0;
		have = (size_t)need;
	}
	dv_proxy_hdr_t p;
	if (dv_proxy_v2_parse(data, have, &p) == 0 && !p.local) {
		CHECK(p.src.ss_family == AF_INET ||
		      p.src.ss_family == AF_INET6);
		CHECK(p.src_len > 0);
	}
	return 0;
}

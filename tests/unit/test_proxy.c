/*
 * Unit tests for src/proto/proxy.c: PROXY protocol v2 headers as haproxy
 * sends them (send-proxy-v2), LOCAL, and what is refused (v1 text,
 * garbage, oversized and truncated headers, TLVs that do not fit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "src/core/errors.h"
#include "src/proto/proxy.h"

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A header: version/command, family, then `body` of `blen` bytes. */
static size_t make(uint8_t *out, uint8_t vc, uint8_t fam, const uint8_t *body,
		   size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = vc;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

static void test_inet(void **state)
{
	(void)state;
	/* 192.0.2.7:40000 -> 198.51.100.1:853, then an ALPN TLV "h2" */
	const uint8_t body[] = { 192,  0,    2,	   7,	 198,  51,
				 100,  1,    0x9c, 0x40, 0x03, 0x55,
				 0x01, 0x00, 0x02, 'h',	 '2' };
	uint8_t h[64];
	size_t n = make(h, 0x21, 0x11, body, sizeof(body));
	assert_int_equal(dv_proxy_v2_need(h, 5), DV_PROXY_V2_PREFIX);
	assert_int_equal(dv_proxy_v2_need(h, 16), (int)n);
	dv_proxy_hdr_t p;
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), 0);
	assert_false(p.local);
	const struct sockaddr_in *s = (const struct sockaddr_in *)&p.src;
	assert_int_equal(s->sin_family, AF_INET);
	assert_int_equal(ntohl(s->sin_addr.s_addr), 0xc0000207);
	assert_int_equal(ntohs(s->sin_port), 40000);
	assert_int_equal(p.src_len, sizeof(struct sockaddr_in));
	const struct sockaddr_in *d = (const struct sockaddr_in *)&p.dst;
	assert_int_equal(ntohs(d->sin_port), 853);
}

static void test_inet6(void **state)
{
	(void)state;
	uint8_t body[36] = { 0x20, 0x01, 0x0d, 0xb8 };
	body[15] = 1;
	body[16] = 0x20, body[17] = 0x01, body[18] = 0x0d, body[19] = 0xb8;
	body[32] = 0x30, body[33] = 0x39; /* 12345 */
	uint8_t h[64];
	size_t n = make(h, 0x21, 0x21, body, sizeof(body));
	dv_proxy_hdr_t p;
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), 0);
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&p.src;
	assert_int_equal(s->sin6_family, AF_INET6);
	assert_memory_equal(&s->sin6_addr, body, 16);
	assert_int_equal(ntohs(s->sin6_port), 12345);
}

static void test_local(void **state)
{
	(void)state;
	uint8_t h[64];
	dv_proxy_hdr_t p;
	/* LOCAL with no addresses (haproxy's health checks) */
	size_t n = make(h, 0x20, 0x00, NULL, 0);
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), 0);
	assert_true(p.local);
	/* PROXY over AF_UNIX: the socket's addresses are kept */
	uint8_t unix_body[216] = { 0 };
	n = make(h, 0x21, 0x31, unix_body, 0);
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), 0);
	assert_true(p.local);
}

static void test_refused(void **state)
{
	(void)state;
	uint8_t h[DV_PROXY_V2_MAX + 64];
	dv_proxy_hdr_t p;
	/* v1 text, a DNS query, a TLS ClientHello: refused on the first
	 * byte that differs */
	assert_int_equal(dv_proxy_v2_need((const uint8_t *)"PROXY TCP4 ", 11),
			 DV_EMALFORMED);
	const uint8_t dns[] = { 0x00, 0x1d, 0x12, 0x34 };
	assert_int_equal(dv_proxy_v2_need(dns, sizeof(dns)), DV_EMALFORMED);
	const uint8_t hello[] = { 0x16, 0x03, 0x01 };
	assert_int_equal(dv_proxy_v2_need(hello, 1), DV_EMALFORMED);
	/* version 1 in the binary form */
	size_t n = make(h, 0x11, 0x11, (const uint8_t[12]){ 0 }, 12);
	assert_int_equal(dv_proxy_v2_need(h, n), DV_EMALFORMED);
	/* unknown command */
	n = make(h, 0x22, 0x11, (const uint8_t[12]){ 0 }, 12);
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), DV_EMALFORMED);
	/* addresses shorter than the family needs */
	n = make(h, 0x21, 0x11, (const uint8_t[8]){ 0 }, 8);
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), DV_EMALFORMED);
	n = make(h, 0x21, 0x21, (const uint8_t[12]){ 0 }, 12);
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), DV_EMALFORMED);
	/* a TLV running past the end, a stray byte after the last one */
	const uint8_t tlv_long[] = { 1, 2, 3, 4, 5,    6,    7,	   8,
				     0, 1, 0, 2, 0x01, 0x00, 0x05, 'h' };
	n = make(h, 0x21, 0x11, tlv_long, sizeof(tlv_long));
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), DV_EMALFORMED);
	const uint8_t tlv_stray[] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04 };
	n = make(h, 0x21, 0x11, tlv_stray, sizeof(tlv_stray));
	assert_int_equal(dv_proxy_v2_parse(h, n, &p), DV_EMALFORMED);
	/* longer than the cap: refused from the prefix alone */
	memset(h + 16, 0, DV_PROXY_V2_MAX_BODY + 1);
	n = make(h, 0x21, 0x11, h + 16, DV_PROXY_V2_MAX_BODY + 1);
	assert_int_equal(dv_proxy_v2_need(h, 16), DV_ELIMIT);
	/* truncated: parse wants exactly the length the header says */
	n = make(h, 0x21, 0x11, (const uint8_t[12]){ 0 }, 12);
	assert_int_equal(dv_proxy_v2_parse(h, n - 1, &p), DV_EMALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inet),
		cmocka_unit_test(test_inet6),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

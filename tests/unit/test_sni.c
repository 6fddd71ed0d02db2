/*
 * Unit tests for src/tls/sni.c: which SNI names every TLS listener records
 * (host names) and which it treats as absent (IP literals, anything else),
 * and the ServerNameList parser of the DoQ listener.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/tls/sni.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static bool host(const char *s)
{
	return dv_sni_host_name(s, strlen(s));
}

static void test_host_names(void **state)
{
	(void)state;
	static const char *const good[] = {
		"dns.test",
		"DNS.Test",
		"localhost",
		"laptop-42.dns.test",
		"a",
		"1e100.example",
		"xn--bcher-kva.example",
		"h0.example.test",
		"192.0.2.1.example", /* numeric labels, not the last */
		"2001.db8.example",
		"a-b.c",
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		if (!host(good[i])) {
			print_error("'%s' should be a host name\n", good[i]);
			fail();
		}
	}
	/* the longest: 253 characters, labels of 63 */
	char buf[300];
	memset(buf, 'a', 253);
	buf[63] = buf[127] = buf[191] = '.';
	buf[253] = 0;
	assert_true(host(buf));
	buf[253] = 'a';
	buf[254] = 0;
	assert_false(host(buf)); /* 254 */
}

static void test_not_host_names(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"::1",
		"[::1]",
		"2001:db8::1",
		"::ffff:192.0.2.1",
		"fe80::1%eth0",
		"127.0.0.1",
		"192.0.2.1",
		"198.51.100.7",
		"127.1", /* inet_aton forms too */
		"3221225985",
		"0x7f.1",
		"dns.test.",
		".dns.test",
		"dns..test",
		".",
		"-dns.test",
		"dns-.test",
		"dns.-test",
		"dns_test.example",
		"dns test",
		"dns.test:853",
		"dns.t\xc3\xa9st",
		"dns.test/",
		"*.dns.test",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		if (host(bad[i])) {
			print_error("'%s' should not be a host name\n", bad[i]);
			fail();
		}
	}
	/* a NUL inside, the length saying where the name ends */
	assert_false(dv_sni_host_name("dns.test\0x", 10));
	assert_true(dv_sni_host_name("dns.test\0x", 8));
	assert_false(dv_sni_host_name(NULL, 0));
	/* a label of 64 */
	char buf[80];
	memset(buf, 'a', 64);
	memcpy(buf + 64, ".test", 6);
	assert_false(host(buf));
	memcpy(buf + 63, ".test", 6); /* a label of 63 */
	assert_true(host(buf));
}

/* A ServerNameList of one host_name entry. */
static size_t list1(uint8_t *out, uint8_t type, const char *name)
{
	size_t n = strlen(name);
	out[0] = (uint8_t)((n + 3) >> 8);
	out[1] = (uint8_t)(n + 3);
	out[2] = type;
	out[3] = (uint8_t)(n >> 8);
	out[4] = (uint8_t)n;
	memcpy(out + 5, name, n);
	return n + 5;
}

static void test_parse(void **state)
{
	(void)state;
	uint8_t b[400];
	const char *name;
	size_t len;

	size_t n = list1(b, 0, "dns.test");
	assert_int_equal(dv_sni_parse(b, n, &name, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(name, "dns.test", 8);
	assert_true(dv_sni_host_name(name, len));

	/* an IP literal parses; the caller ignores it */
	n = list1(b, 0, "::1");
	assert_int_equal(dv_sni_parse(b, n, &name, &len), 0);
	assert_int_equal(len, 3);
	assert_false(dv_sni_host_name(name, len));

	/* another name type only: no host name */
	n = list1(b, 7, "whatever");
	assert_int_equal(dv_sni_parse(b, n, &name, &len), 0);
	assert_null(name);
	assert_int_equal(len, 0);

	/* another type, then a host_name */
	static const uint8_t two[] = { 0, 11, 9,   0,	1,   'x', 0,
				       0, 4,  'a', '.', 'b', 'c' };
	assert_int_equal(dv_sni_parse(two, sizeof(two), &name, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(name, "a.bc", 4);

	/* the longest name the wire allows parses (and is no host name) */
	char big[300];
	memset(big, 'a', 299);
	big[299] = 0;
	n = list1(b, 0, big);
	assert_int_equal(dv_sni_parse(b, n, &name, &len), 0);
	assert_int_equal(len, 299);
	assert_false(dv_sni_host_name(name, len));
}

static void test_parse_malformed(void **state)
{
	(void)state;
	const char *name = "x";
	size_t len = 9;
	static const struct {
		const char *what;
		uint8_t b[16];
		size_t n;
	} bad[] = {
		{ "nothing", { 0 }, 0 },
		{ "one byte", { 0 }, 1 },
		{ "empty list", { 0, 0 }, 2 },
		{ "list longer than the data",
		  { 0, 9, 0, 0, 3, 'a', 'b', 'c' },
		  8 },
		{ "list shorter than the data",
		  { 0, 5, 0, 0, 3, 'a', 'b', 'c' },
		  8 },
		{ "entry without its length", { 0, 2, 0, 0 }, 4 },
		{ "name beyond the list", { 0, 4, 0, 0, 9, 'a' }, 6 },
		{ "empty host_name", { 0, 3, 0, 0, 0 }, 5 },
		{ "two host_names", { 0, 8, 0, 0, 1, 'a', 0, 0, 1, 'b' }, 10 },
		{ "trailing byte", { 0, 5, 0, 0, 1, 'a', 7 }, 7 },
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		if (dv_sni_parse(bad[i].b, bad[i].n, &name, &len) !=
		    DV_EMALFORMED) {
			print_error("%s: not refused\n", bad[i].what);
			fail();
		}
		assert_null(name);
		assert_int_equal(len, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_names),
		cmocka_unit_test(test_not_host_names),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

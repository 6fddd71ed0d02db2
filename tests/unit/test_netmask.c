/*
 * Unit tests for src/core/netmask.c: parsing IP prefixes and matching socket
 * addresses (IPv4, IPv6, IPv4-mapped IPv6) against them.  Only
 * documentation ranges (RFC 5737, RFC 3849, RFC 9637) and loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/core/netmask.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static dv_netmask_t mask(const char *text)
{
	dv_netmask_t m;
	char why[128];

	if (dv_netmask_parse(text, &m, why, sizeof(why)) != 0) {
		print_error("'%s': %s\n", text, why);
		fail();
	}
	return m;
}

/* A socket address from text: IPv4 if it parses as such, else IPv6. */
static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(443);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(443);
	}
	return ss;
}

static bool matches(const char *prefix, const char *peer)
{
	dv_netmask_t m = mask(prefix);
	struct sockaddr_storage ss = addr(peer);

	return dv_netmask_match(&m, (const struct sockaddr *)&ss);
}

static void test_parse_good(void **state)
{
	static const struct {
		const char *text, *canon;
		int family;
		unsigned bits;
	} cases[] = {
		{ "127.0.0.1", "127.0.0.1/32", AF_INET, 32 },
		{ "192.0.2.0/24", "192.0.2.0/24", AF_INET, 24 },
		{ "192.0.2.77/24", "192.0.2.0/24", AF_INET, 24 }, /* host bits */
		{ "192.0.2.255/25", "192.0.2.128/25", AF_INET, 25 },
		{ "198.51.100.7/31", "198.51.100.6/31", AF_INET, 31 },
		{ "203.0.113.9/32", "203.0.113.9/32", AF_INET, 32 },
		{ "192.0.2.1/0", "0.0.0.0/0", AF_INET, 0 },
		{ "::1", "::1/128", AF_INET6, 128 },
		{ "2001:db8::/32", "2001:db8::/32", AF_INET6, 32 },
		{ "2001:DB8:0:0::/32", "2001:db8::/32", AF_INET6, 32 },
		{ "2001:db8:1:2::3/48", "2001:db8:1::/48", AF_INET6, 48 },
		{ "2001:db8::ff/127", "2001:db8::fe/127", AF_INET6, 127 },
		{ "3fff::/20", "3fff::/20", AF_INET6, 20 },
		{ "2001:db8::1/0", "::/0", AF_INET6, 0 },
		{ "::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120", AF_INET6, 120 },
	};
	char buf[DV_NETMASK_TEXT_MAX];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		dv_netmask_t m = mask(cases[i].text);

		assert_int_equal(m.family, cases[i].family);
		assert_int_equal(m.bits, cases[i].bits);
		dv_netmask_format(&m, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].canon);
		/* the canonical form parses to the same bytes */
		dv_netmask_t again = mask(buf);
		assert_memory_equal(&again, &m, sizeof(m));
	}
	/* equal prefixes written differently are equal bytes */
	dv_netmask_t a = mask("192.0.2.1/24"), b = mask("192.0.2.200/24");
	assert_memory_equal(&a, &b, sizeof(a));
}

static void test_parse_bad(void **state)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "", "not an IP address or prefix" },
		{ "300.1.2.3", "not an IP address or prefix" },
		{ "192.0.2", "not an IP address or prefix" },
		{ "192.0.2.1.5", "not an IP address or prefix" },
		{ "localhost", "not an IP address or prefix" },
		{ " 192.0.2.1", "not an IP address or prefix" },
		{ "192.0.2.1 ", "not an IP address or prefix" },
		{ "192.0.2.0/", "not an IP address or prefix" },
		{ "/24", "not an IP address or prefix" },
		{ "192.0.2.0/-1", "not an IP address or prefix" },
		{ "192.0.2.0/+8", "not an IP address or prefix" },
		{ "192.0.2.0/ 24", "not an IP address or prefix" },
		{ "192.0.2.0/24/8", "not an IP address or prefix" },
		{ "192.0.2.0/0x8", "not an IP address or prefix" },
		{ "192.0.2.0/1000", "prefix length must be 0..32" },
		{ "192.0.2.0/99999999999999999999", "prefix length must be 0..32" },
		{ "192.0.2.0/33", "prefix length must be 0..32" },
		{ "192.0.2.0/128", "prefix length must be 0..32" },
		{ "2001:db8::/129", "prefix length must be 0..128" },
		{ "2001:db8::/999", "prefix length must be 0..128" },
		{ "2001:db8:::1", "not an IP address or prefix" },
		{ "[2001:db8::1]", "not an IP address or prefix" },
		{ "2001:db8::1%lo", "not an IP address or prefix" },
		{ "2001:0db8:0000:0000:0000:0000:0000:0000:0001",
		  "not an IP address or prefix" },
	};
	dv_netmask_t m, before;
	char why[128];

	memset(&before, 0xa5, sizeof(before));
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		m = before;
		why[0] = '\0';
		if (dv_netmask_parse(cases[i].text, &m, why, sizeof(why)) !=
		    DV_ECONFIG) {
			print_error("'%s' was accepted\n", cases[i].text);
			fail();
		}
		assert_string_equal(why, cases[i].why);
		assert_memory_equal(&m, &before, sizeof(m)); /* untouched */
	}
	/* no room for a reason is fine */
	assert_int_equal(dv_netmask_parse("300.1.2.3", &m, NULL, 0),
			 DV_ECONFIG);
}

static void test_match_ipv4(void **state)
{
	assert_true(matches("127.0.0.1", "127.0.0.1"));
	assert_false(matches("127.0.0.1", "127.0.0.2"));
	assert_true(matches("192.0.2.0/24", "192.0.2.0"));
	assert_true(matches("192.0.2.0/24", "192.0.2.255"));
	assert_false(matches("192.0.2.0/24", "198.51.100.1"));
	assert_true(matches("192.0.2.128/25", "192.0.2.200"));
	assert_false(matches("192.0.2.128/25", "192.0.2.127"));
	assert_true(matches("198.51.100.6/31", "198.51.100.7"));
	assert_false(matches("198.51.100.6/31", "198.51.100.8"));
	assert_true(matches("203.0.113.0/29", "203.0.113.7"));
	assert_false(matches("203.0.113.0/29", "203.0.113.8"));
	assert_true(matches("127.0.0.0/8", "127.255.0.1"));
	assert_true(matches("192.0.2.1/0", "198.51.100.1"));
	assert_true(matches("192.0.2.1/0", "127.0.0.1"));
	/* IPv4 prefixes never take in IPv6 clients */
	assert_false(matches("192.0.2.1/0", "::1"));
	assert_false(matches("192.0.2.1/0", "2001:db8::1"));
}

static void test_match_ipv6(void **state)
{
	assert_true(matches("::1", "::1"));
	assert_false(matches("::1", "2001:db8::1"));
	assert_true(matches("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(matches("2001:db8::/32", "3fff::1"));
	assert_true(matches("2001:db8:1::/48", "2001:db8:1:ffff::1"));
	assert_false(matches("2001:db8:1::/48", "2001:db8:2::1"));
	assert_true(matches("2001:db8::fe/127", "2001:db8::ff"));
	assert_false(matches("2001:db8::fe/127", "2001:db8::100"));
	assert_true(matches("3fff::/20", "3fff:fff::1"));
	assert_true(matches("3fff:0:1::/48", "3fff:0:1::5"));
	assert_false(matches("3fff:0:1::/48", "3fff:0:2::5"));
	assert_true(matches("2001:db8::1/0", "::1"));
	/* IPv6 prefixes outside ::ffff:0:0/96 never take in IPv4 clients */
	assert_false(matches("2001:db8::1/0", "192.0.2.1"));
	assert_false(matches("2001:db8::1/0", "::ffff:192.0.2.1"));
	assert_false(matches("2001:db8::/32", "192.0.2.1"));
}

/* What a dual-stack [::] socket reports for IPv4 clients. */
static void test_match_mapped(void **state)
{
	assert_true(matches("127.0.0.1", "::ffff:127.0.0.1"));
	assert_true(matches("192.0.2.0/24", "::ffff:192.0.2.33"));
	assert_false(matches("192.0.2.0/24", "::ffff:198.51.100.33"));
	assert_true(matches("192.0.2.1/0", "::ffff:203.0.113.1"));
	/* not mapped: ::192.0.2.1 (deprecated compatible form) is IPv6 */
	assert_false(matches("192.0.2.0/24", "::192.0.2.1"));
	/* a mapped IPv6 prefix takes in IPv4 clients either way */
	assert_true(matches("::ffff:192.0.2.0/120", "192.0.2.44"));
	assert_true(matches("::ffff:192.0.2.0/120", "::ffff:192.0.2.44"));
	assert_false(matches("::ffff:192.0.2.0/120", "198.51.100.44"));
}

static void test_match_any_and_others(void **state)
{
	dv_netmask_t list[] = { mask("192.0.2.0/24"), mask("2001:db8::/32"),
				mask("127.0.0.1") };
	struct sockaddr_storage ss;
	struct sockaddr_un un;
	char buf[DV_NETMASK_TEXT_MAX];

	ss = addr("192.0.2.9");
	assert_true(dv_netmask_match_any(list, 3,
					 (const struct sockaddr *)&ss));
	ss = addr("2001:db8::9");
	assert_true(dv_netmask_match_any(list, 3,
					 (const struct sockaddr *)&ss));
	ss = addr("::ffff:127.0.0.1");
	assert_true(dv_netmask_match_any(list, 3,
					 (const struct sockaddr *)&ss));
	assert_false(dv_netmask_match_any(list, 2,
					  (const struct sockaddr *)&ss));
	ss = addr("198.51.100.9");
	assert_false(dv_netmask_match_any(list, 3,
					  (const struct sockaddr *)&ss));
	assert_false(dv_netmask_match_any(list, 0,
					  (const struct sockaddr *)&ss));
	assert_false(dv_netmask_match_any(NULL, 0,
					  (const struct sockaddr *)&ss));

	/* other families and NULL never match */
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_false(dv_netmask_match(&list[0], (const struct sockaddr *)&un));
	assert_false(dv_netmask_match(&list[0], NULL));

	/* a zeroed mask (no family) matches nothing and formats safely */
	dv_netmask_t none;
	memset(&none, 0, sizeof(none));
	ss = addr("192.0.2.9");
	assert_false(dv_netmask_match(&none, (const struct sockaddr *)&ss));
	dv_netmask_format(&none, buf, sizeof(buf));
	assert_string_equal(buf, "(none)");
	/* a short buffer truncates */
	dv_netmask_format(&list[1], buf, 6);
	assert_string_equal(buf, "2001:");
	/* a long text fits */
	dv_netmask_t longest =
		mask("2001:db8:ffff:ffff:ffff:ffff:255.255.255.255/128");
	dv_netmask_format(&longest, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/128");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_match_ipv4),
		cmocka_unit_test(test_match_ipv6),
		cmocka_unit_test(test_match_mapped),
		cmocka_unit_test(test_match_any_and_others),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

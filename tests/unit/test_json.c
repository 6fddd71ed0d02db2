/*
 * Unit tests for src/core/json.c: JSON string escaping for the logs
 * (RFC 8259 section 7): what must be escaped is, valid UTF-8 passes,
 * bytes that are not UTF-8 become \u00XX, and a short buffer never cuts
 * an escape in two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/json.h"

static void check(const char *in, size_t len, const char *want)
{
	char out[256];
	size_t n = dv_json_escape(out, sizeof(out), in, len);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

#define CHECK(in, want) check(in, sizeof(in) - 1, want)

static void test_escapes(void **state)
{
	(void)state;
	CHECK("", "");
	CHECK("plain text 123", "plain text 123");
	CHECK("a \"quoted\" \\ back", "a \\\"quoted\\\" \\\\ back");
	CHECK("line\nnext\ttab\rcr", "line\\nnext\\ttab\\rcr");
	CHECK("\x01\x1f\x7f", "\\u0001\\u001f\\u007f");
	CHECK("nul\0inside", "nul\\u0000inside");
	/* a slash needs no escape */
	CHECK("/dns-query/kid-1", "/dns-query/kid-1");
}

static void test_utf8(void **state)
{
	(void)state;
	/* valid: 2, 3 and 4 bytes pass as they are */
	CHECK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 "
							   "\xe2\x82\xac "
							   "\xf0\x9f\x98\x80");
	/* not UTF-8: each byte as \u00XX */
	CHECK("\x80", "\\u0080");
	CHECK("\xff\xfe", "\\u00ff\\u00fe");
	CHECK("\xc0\x80", "\\u00c0\\u0080"); /* overlong NUL */
	CHECK("\xe0\x80\xaf", "\\u00e0\\u0080\\u00af"); /* overlong '/' */
	CHECK("\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"); /* a surrogate */
	CHECK("\xf4\x90\x80\x80",
	      "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
	CHECK("\xe2\x82", "\\u00e2\\u0082"); /* cut short */
	CHECK("\xc3"
	      "A",
	      "\\u00c3A"); /* no continuation */
}

static void test_truncation(void **state)
{
	(void)state;
	char out[16];
	/* cap 0 writes nothing; cap 1 only the NUL */
	memset(out, 'x', sizeof(out));
	assert_int_equal(dv_json_escape(out, 0, "abc", 3), 0);
	assert_int_equal(out[0], 'x');
	assert_int_equal(dv_json_escape(out, 1, "abc", 3), 0);
	assert_string_equal(out, "");
	/* an escape that does not fit is left out whole */
	assert_int_equal(dv_json_escape(out, 7, "abcde\"f", 7), 5);
	assert_string_equal(out, "abcde");
	assert_int_equal(dv_json_escape(out, 8, "abcde\"f", 7), 7);
	assert_string_equal(out, "abcde\\\"");
	assert_int_equal(dv_json_escape(out, 6, "a\x01", 2), 1);
	assert_string_equal(out, "a");
	/* ... and so is a UTF-8 sequence */
	assert_int_equal(dv_json_escape(out, 4, "ab\xe2\x82\xac", 5), 2);
	assert_string_equal(out, "ab");
	/* every prefix of every cap is well formed: no lone backslash */
	const char *in = "q\"u\\o\x01t\xff\xe2\x82\xac!";
	for (size_t cap = 1; cap < sizeof(out); cap++) {
		size_t n = dv_json_escape(out, cap, in, strlen(in));
		assert_true(n < cap);
		assert_int_equal(strlen(out), n);
		size_t bs = 0;
		for (size_t i = n; i > 0 && out[i - 1] == '\\'; i--)
			bs++;
		assert_int_equal(bs % 2, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

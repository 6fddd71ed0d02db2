/*
 * Unit tests for src/proto/admin_http.c: the admin listener's request head
 * parser (method, path without its query string, the head's end; garbage
 * refused as soon as it shows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/proto/admin_http.h"

static int parse(const char *s, dv_admin_req_t *r)
{
	return dv_admin_http_parse((const uint8_t *)s, strlen(s), r);
}

static void test_complete_heads(void **state)
{
	(void)state;
	dv_admin_req_t r;
	const char *scrape = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9153\r\n"
			     "Accept: text/plain;version=0.0.4\r\n\r\n";
	assert_int_equal(parse(scrape, &r), (int)strlen(scrape));
	assert_int_equal(r.method, DV_ADMIN_GET);
	assert_string_equal(r.path, "/metrics");

	assert_int_equal(parse("HEAD /readyz?verbose=1 HTTP/1.0\n\n", &r), 33);
	assert_int_equal(r.method, DV_ADMIN_HEAD);
	assert_string_equal(r.path, "/readyz");

	/* bytes after the head (a body) are not the head's */
	const char *post = "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab";
	assert_int_equal(parse(post, &r), (int)strlen(post) - 2);
	assert_int_equal(r.method, DV_ADMIN_POST);
	assert_int_equal(parse("PUT /reload HTTP/1.1\r\n\r\n", &r), 24);
	assert_int_equal(r.method, DV_ADMIN_OTHER);

	char lng[200] = "GET /";
	memset(lng + 5, 'a', 100);
	strcpy(lng + 105, " HTTP/1.1\r\n\r\n");
	assert_true(parse(lng, &r) > 0);
	assert_true(r.path_too_long);
	assert_string_equal(r.path, "");
}

static void test_incomplete_heads(void **state)
{
	(void)state;
	dv_admin_req_t r;
	assert_int_equal(parse("", &r), 0);
	assert_int_equal(parse("GE", &r), 0);
	assert_int_equal(parse("GET /metr", &r), 0);
	assert_int_equal(parse("GET /metrics HTTP/1.1\r", &r), 0);
	assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &r), 0);
	assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r", &r), 0);
}

static void test_garbage(void **state)
{
	(void)state;
	dv_admin_req_t r;
	static const char *const bad[] = {
		"\x16\x03\x01",          /* a TLS ClientHello, at once */
		"get / HTTP/1.1\r\n\r\n", /* methods are upper case */
		"GETTINGVERYLONGMETHODNAME",
		"GET http://x/ HTTP/1.1\r\n\r\n", /* origin-form only */
		"GET  /metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
		"GET /metrics\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n folded\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
		"GET /met\x01rics",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &r), DV_EMALFORMED);
	const uint8_t nul[] = "GET /metrics HTTP/1.1\r\nX\0Y: 1\r\n\r\n";
	assert_int_equal(dv_admin_http_parse(nul, sizeof(nul) - 1, &r),
			 DV_EMALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_heads),
		cmocka_unit_test(test_incomplete_heads),
		cmocka_unit_test(test_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

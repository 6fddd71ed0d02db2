/*
 * The admin listener's request head parser (src/proto/admin_http.c), fed
 * the bytes a client sends, as the listener hands them in: the whole
 * input, and its prefixes (the bytes read so far).  Besides memory errors
 * it checks:
 *  - the result is a head length inside the input, 0 or DV_EMALFORMED;
 *  - a head ends with an empty line ("\n\n" or "\n\r\n") and its request
 *    line reads "METHOD /TARGET HTTP/1.d";
 *  - the path is NUL-terminated, starts with '/' (or is empty when it was
 *    too long), holds no '?' and no byte outside 0x21..0x7e;
 *  - reading on never undoes a verdict: every prefix shorter than a
 *    complete head is "need more" (0), and a prefix that is already a
 *    complete head gives the same head as the whole input.
 *
 * Input: the bytes of one connection (at most DV_ADMIN_HEAD_MAX are used,
 * as the listener reads no more).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/proto/admin_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static void check_req(const uint8_t *data, int head, const dv_admin_req_t *r)
{
	CHECK(head >= 2 && data[head - 1] == '\n');
	CHECK(data[head - 2] == '\n' ||
	      (head >= 3 && data[head - 2] == '\r' && data[head - 3] == '\n'));
	const uint8_t *sp = memchr(data, ' ', (size_t)head);
	CHECK(sp && sp[1] == '/');
	size_t n = strnlen(r->path, sizeof(r->path));
	CHECK(n < sizeof(r->path));
	CHECK(r->path_too_long ? n == 0 : (n >= 1 && r->path[0] == '/'));
	for (size_t i = 0; i < n; i++)
		CHECK(r->path[i] > 0x20 && r->path[i] < 0x7f &&
		      r->path[i] != '?');
	CHECK(r->method == DV_ADMIN_GET || r->method == DV_ADMIN_HEAD ||
	      r->method == DV_ADMIN_POST || r->method == DV_ADMIN_OTHER);
	if (r->method == DV_ADMIN_POST)
		CHECK(memcmp(data, "POST ", 5) == 0);
	if (r->method == DV_ADMIN_GET)
		CHECK(memcmp(data, "GET ", 4) == 0);
	if (r->method == DV_ADMIN_HEAD)
		CHECK(memcmp(data, "HEAD ", 5) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > DV_ADMIN_HEAD_MAX)
		size = DV_ADMIN_HEAD_MAX;
	/* the listener's buffer: no byte after the input to lean on */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	dv_admin_req_t req;
	int full = dv_admin_http_parse(buf, size, &req);
	CHECK(full == 0 || full == DV_EMALFORMED ||
	      (full > 0 && (size_t)full <= size));
	if (full > 0)
		check_req(buf, full, &req);
	/* prefixes: all of them for short inputs, a spread for long ones */
	size_t step = size <= 256 ? 1 : size / 128;
	for (size_t k = 0; k < size; k += step) {
		dv_admin_req_t pr;
		int ret = dv_admin_http_parse(buf, k, &pr);
		CHECK(ret == 0 || ret == DV_EMALFORMED ||
		      (ret > 0 && (size_t)ret <= k));
		if (full > 0 && k < (size_t)full)
			CHECK(ret == 0);
		if (ret > 0) {
			CHECK(ret == full);
			CHECK(memcmp(&pr, &req, sizeof(pr)) == 0);
		}
	}
	free(buf);
	return 0;
}

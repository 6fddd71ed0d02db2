/*
 * Unit tests for src/proto/dns_framer.c: messages found in place however
 * the stream was cut (a split prefix, a message over many reads, many
 * messages in one read), empty messages taken or refused, lengths refused
 * as soon as their prefix is in, the size a buffer needs, and writing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/proto/dns_framer.h"

static const dv_dns_framer_t any = {0, 65535};

/* A stream of frames of the given lengths, message i filled with byte i. */
static size_t stream(uint8_t *buf, const size_t *lens, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		dv_dns_frame_prefix(buf + o, lens[i]);
		memset(buf + o + 2, (int)i + 1, lens[i]);
		o += 2 + lens[i];
	}
	return o;
}

static void test_nothing(void **state)
{
	(void)state;
	uint8_t b[2] = {0, 5};
	size_t off = 0;
	dv_dns_msg_t m = {NULL, 77};
	assert_int_equal(dv_dns_framer_next(&any, b, 0, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&any, b, 1, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&any, b, 2, &off, &m), 0);
	assert_int_equal(off, 0);
	assert_null(m.msg);
	assert_int_equal(m.len, 77);
	/* an offset past the end finds nothing, never reads there */
	off = 5;
	assert_int_equal(dv_dns_framer_next(&any, b, 2, &off, &m), 0);
	assert_int_equal(off, 5);
}

static void test_many_in_one_read(void **state)
{
	(void)state;
	static const size_t lens[] = {12, 300, 1, 65535, 40};
	static uint8_t buf[70000];
	size_t len = stream(buf, lens, 5);
	size_t off = 0, pos = 0;
	dv_dns_msg_t m;
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(dv_dns_framer_next(&any, buf, len, &off, &m),
				 1);
		/* in place: no copy */
		assert_ptr_equal(m.msg, buf + pos + 2);
		assert_int_equal(m.len, lens[i]);
		assert_int_equal(m.msg[0], i + 1);
		assert_int_equal(m.msg[m.len - 1], i + 1);
		pos += 2 + lens[i];
		assert_int_equal(off, pos);
	}
	assert_int_equal(off, len);
	assert_int_equal(dv_dns_framer_next(&any, buf, len, &off, &m), 0);
}

/* Fed a byte at a time as a listener reads: each message comes exactly
 * when its last byte does, the rest of the stream is untouched. */
static void test_byte_by_byte(void **state)
{
	(void)state;
	static const size_t lens[] = {3, 0, 258, 12};
	uint8_t buf[512];
	size_t len = stream(buf, lens, 4);
	size_t off = 0, got = 0, ends[4], pos = 0;
	for (size_t i = 0; i < 4; i++) {
		pos += 2 + lens[i];
		ends[i] = pos;
	}
	for (size_t have = 0; have <= len; have++) {
		dv_dns_msg_t m;
		int r;
		while ((r = dv_dns_framer_next(&any, buf, have, &off, &m)) > 0) {
			assert_int_equal(have, ends[got]);
			assert_int_equal(m.len, lens[got]);
			got++;
		}
		assert_int_equal(r, 0);
	}
	assert_int_equal(got, 4);
	assert_int_equal(off, len);
}

static void test_split_prefix(void **state)
{
	(void)state;
	/* a message of 0x0102 bytes: the prefix cut between its bytes */
	static uint8_t buf[2 + 0x102];
	dv_dns_frame_prefix(buf, 0x102);
	size_t off = 0;
	dv_dns_msg_t m;
	assert_int_equal(dv_dns_framer_need(buf, 0), 2);
	assert_int_equal(dv_dns_framer_need(buf, 1), 2);
	assert_int_equal(dv_dns_framer_next(&any, buf, 1, &off, &m), 0);
	assert_int_equal(dv_dns_framer_need(buf, 2), 2 + 0x102);
	assert_int_equal(dv_dns_framer_next(&any, buf, 2, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&any, buf, 0x103, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&any, buf, sizeof(buf), &off, &m),
			 1);
	assert_int_equal(m.len, 0x102);
	assert_int_equal(off, sizeof(buf));
}

static void test_empty_message(void **state)
{
	(void)state;
	uint8_t buf[] = {0, 0, 0, 0, 0, 1, 9};
	size_t off = 0;
	dv_dns_msg_t m;
	/* Do53 TCP takes it (the core drops what is not DNS) */
	assert_int_equal(dv_dns_framer_next(&any, buf, 7, &off, &m), 1);
	assert_int_equal(m.len, 0);
	assert_int_equal(off, 2);
	assert_int_equal(dv_dns_framer_next(&any, buf, 7, &off, &m), 1);
	assert_int_equal(m.len, 0);
	assert_int_equal(dv_dns_framer_next(&any, buf, 7, &off, &m), 1);
	assert_int_equal(m.len, 1);
	assert_int_equal(m.msg[0], 9);
	/* DoT refuses it: no DNS message is empty */
	const dv_dns_framer_t dot = {1, 65535};
	off = 0;
	assert_int_equal(dv_dns_framer_next(&dot, buf, 7, &off, &m), -EBADMSG);
	assert_int_equal(off, 0);
	/* and keeps refusing: the stream cannot be resynchronized */
	assert_int_equal(dv_dns_framer_next(&dot, buf, 7, &off, &m), -EBADMSG);
	assert_int_equal(dv_dns_framer_need(buf, 7), 2);
}

/* An upstream refuses a message shorter than a header as soon as its
 * prefix is in, without waiting for its bytes. */
static void test_too_short_before_whole(void **state)
{
	(void)state;
	const dv_dns_framer_t up = {12, 65535};
	uint8_t buf[2 + 12 + 2] = {0, 12};
	dv_dns_frame_prefix(buf + 14, 11);
	size_t off = 0;
	dv_dns_msg_t m;
	assert_int_equal(dv_dns_framer_next(&up, buf, 13, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&up, buf, 14, &off, &m), 1);
	assert_int_equal(m.len, 12);
	assert_int_equal(dv_dns_framer_next(&up, buf, 15, &off, &m), 0);
	assert_int_equal(dv_dns_framer_next(&up, buf, 16, &off, &m), -EBADMSG);
	assert_int_equal(off, 14);
}

static void test_too_long(void **state)
{
	(void)state;
	const dv_dns_framer_t small = {0, 512};
	uint8_t buf[4];
	size_t off = 0;
	dv_dns_msg_t m;
	dv_dns_frame_prefix(buf, 512);
	assert_int_equal(dv_dns_framer_next(&small, buf, 2, &off, &m), 0);
	dv_dns_frame_prefix(buf, 513);
	assert_int_equal(dv_dns_framer_next(&small, buf, 2, &off, &m),
			 -EMSGSIZE);
	dv_dns_frame_prefix(buf, 65535);
	assert_int_equal(dv_dns_framer_next(&small, buf, 2, &off, &m),
			 -EMSGSIZE);
	assert_int_equal(dv_dns_framer_next(&any, buf, 2, &off, &m), 0);
	assert_int_equal(dv_dns_framer_need(buf, 2), DV_DNS_FRAME_MAX);
	assert_int_equal(off, 0);
}

static void test_write(void **state)
{
	(void)state;
	uint8_t msg[300], out[400];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	assert_int_equal(dv_dns_frame_write(out, sizeof(out), msg, 300), 302);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 44);
	assert_memory_equal(out + 2, msg, 300);
	assert_int_equal(dv_dns_frame_write(out, 301, msg, 300), DV_ESPACE);
	assert_int_equal(dv_dns_frame_write(out, 2, msg, 0), 2);
	assert_int_equal(out[0] | out[1], 0);
	assert_int_equal(dv_dns_frame_write(out, 1, msg, 0), DV_ESPACE);
	static uint8_t big[70000];
	assert_int_equal(dv_dns_frame_write(big, sizeof(big), big, 65535),
			 65537);
	assert_int_equal(dv_dns_frame_write(big, sizeof(big), big, 65536),
			 -EMSGSIZE);
	/* in place: the message already sits after room for its prefix */
	memcpy(out + 2, msg, 10);
	assert_int_equal(dv_dns_frame_write(out, 12, out + 2, 10), 12);
	assert_memory_equal(out + 2, msg, 10);
	/* what is written reads back */
	size_t off = 0;
	dv_dns_msg_t m;
	assert_int_equal(dv_dns_frame_write(out, sizeof(out), msg, 77), 79);
	assert_int_equal(dv_dns_framer_next(&any, out, 79, &off, &m), 1);
	assert_int_equal(m.len, 77);
	assert_memory_equal(m.msg, msg, 77);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing),
		cmocka_unit_test(test_many_in_one_read),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_split_prefix),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_too_short_before_whole),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for src/core/rand.c: the ChaCha20 block function against
 * RFC 8439's test vector, and the generator built on it (deterministic for
 * a seed, different for another seed, no short cycles, all bits used).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/rand.h"

/* RFC 8439 2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00,
 * block counter 1. */
static void test_chacha20_rfc8439(void **state)
{
	(void)state;
	uint8_t key[32], out[64];
	static const uint8_t nonce[12] = {0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0};
	static const uint8_t want[64] = {
		0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd,
		0x1f, 0xa3, 0x20, 0x71, 0xc4, 0xc7, 0xd1, 0xf4, 0xc7, 0x33, 0xc0,
		0x68, 0x03, 0x04, 0x22, 0xaa, 0x9a, 0xc3, 0xd4, 0x6c, 0x4e, 0xd2,
		0x82, 0x64, 0x46, 0x07, 0x9f, 0xaa, 0x09, 0x14, 0xc2, 0xd7, 0x05,
		0xd9, 0x8b, 0x02, 0xa2, 0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e,
		0xb9, 0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e};
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	dv_chacha20_block(key, 1, nonce, out);
	assert_memory_equal(out, want, sizeof(want));
}

/* The same seed gives the same stream, another seed another one; the key
 * moves on at every refill (fast key erasure), so the stream does not
 * repeat with the buffer's period. */
static void test_rand_stream(void **state)
{
	(void)state;
	static dv_rand_t a, b, c;
	uint8_t seed[DV_RAND_SEED] = {1, 2, 3};
	dv_rand_seed(&a, seed);
	dv_rand_seed(&b, seed);
	seed[31] = 1;
	dv_rand_seed(&c, seed);
	uint8_t key0[DV_RAND_SEED];
	memcpy(key0, a.key, sizeof(key0));
	unsigned same_c = 0, ones = 0;
	uint32_t first[120];
	unsigned per_refill = (DV_RAND_BUF - DV_RAND_SEED) / 4;
	for (unsigned k = 0; k < 10000; k++) {
		uint32_t x = dv_rand_u32(&a);
		assert_int_equal(x, dv_rand_u32(&b));
		same_c += x == dv_rand_u32(&c);
		ones += (unsigned)__builtin_popcount(x);
		if (k < per_refill)
			first[k] = x;
		else if (k < 2 * per_refill)
			assert_int_not_equal(x, first[k - per_refill]);
	}
	assert_true(same_c < 3);
	assert_memory_not_equal(a.key, key0, sizeof(key0));
	/* 320,000 bits: half of them set, within a few standard deviations
	 * (sd ~283) */
	assert_in_range(ones, 160000 - 2000, 160000 + 2000);
	/* what was handed out is wiped from the state */
	for (unsigned i = DV_RAND_SEED; i < a.pos; i++)
		assert_int_equal(a.buf[i], 0);
}

/* 16-bit values cover the whole range: each of the 65,536 ids shows up
 * about as often as the others. */
static void test_rand_u16_spread(void **state)
{
	(void)state;
	static dv_rand_t r;
	static uint16_t count[65536];
	uint8_t seed[DV_RAND_SEED] = {42};
	dv_rand_seed(&r, seed);
	for (unsigned k = 0; k < 65536 * 16; k++)
		count[dv_rand_u16(&r)]++;
	unsigned zero = 0, high = 0;
	for (unsigned i = 0; i < 65536; i++) {
		zero += count[i] == 0;
		high += count[i] > 48;
	}
	/* Poisson(16): P(0) ~ 1e-7, P(>48) ~ 1e-11 */
	assert_int_equal(zero, 0);
	assert_int_equal(high, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chacha20_rfc8439),
		cmocka_unit_test(test_rand_stream),
		cmocka_unit_test(test_rand_u16_spread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

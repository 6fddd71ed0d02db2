/*
 * Unit tests for src/policy/ratelimit.c: token buckets on a fake clock
 * (milliseconds passed in, as the core's clock would give them): a new
 * client's burst, the refill rate (fractions of a token kept between
 * queries), the cap at the burst after a long idle time, keys kept
 * apart, and eviction from a full set (the least recently used bucket
 * goes, and comes back full) with the table's size bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "src/policy/ratelimit.h"

/* How many of `n` queries at `now_ms` the bucket lets through. */
static unsigned take_n(dv_ratelimit_t *rl, uint64_t key, uint32_t qps,
		       uint32_t burst, uint64_t now_ms, unsigned n)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++)
		ok += dv_ratelimit_take(rl, key, qps, burst, now_ms);
	return ok;
}

static void test_burst_and_refill(void **state)
{
	(void)state;
	dv_ratelimit_t *rl = dv_ratelimit_new(64);
	assert_non_null(rl);
	uint64_t t = 1000000, k = 0x1234567890abcdefULL;
	/* a new client gets its burst at once, then nothing */
	assert_int_equal(take_n(rl, k, 10, 20, t, 25), 20);
	assert_false(dv_ratelimit_take(rl, k, 10, 20, t));
	/* 10 qps: one token every 100 ms, not before */
	assert_false(dv_ratelimit_take(rl, k, 10, 20, t + 99));
	assert_true(dv_ratelimit_take(rl, k, 10, 20, t + 100));
	assert_false(dv_ratelimit_take(rl, k, 10, 20, t + 100));
	/* fractions add up across queries: 3 x 40 ms = 1.2 tokens */
	assert_false(dv_ratelimit_take(rl, k, 10, 20, t + 140));
	assert_false(dv_ratelimit_take(rl, k, 10, 20, t + 180));
	assert_true(dv_ratelimit_take(rl, k, 10, 20, t + 220));
	/* over one second of steady load: exactly the rate */
	unsigned ok = 0;
	for (uint64_t ms = 1; ms <= 1000; ms++)
		ok += take_n(rl, k, 10, 20, t + 220 + ms, 5);
	assert_int_equal(ok, 10);
	/* a long idle time fills the bucket to its burst, no more */
	t += 3600 * 1000;
	assert_int_equal(take_n(rl, k, 10, 20, t, 100), 20);
	/* another key has its own bucket */
	assert_int_equal(take_n(rl, k ^ 1ULL << 40, 10, 20, t, 100), 20);
	/* the largest rate and burst do not overflow */
	uint64_t big = 0xfeedULL << 32;
	assert_int_equal(take_n(rl, big, DV_RATELIMIT_MAX_QPS,
				DV_RATELIMIT_MAX_QPS, t, 10),
			 10);
	assert_true(dv_ratelimit_take(rl, big, DV_RATELIMIT_MAX_QPS,
				      DV_RATELIMIT_MAX_QPS,
				      t + 365ULL * 86400 * 1000));
	assert_int_equal(dv_ratelimit_evictions(rl), 0);
	dv_ratelimit_free(rl);
}

static void test_eviction(void **state)
{
	(void)state;
	/* one set: every key competes for the same ways */
	dv_ratelimit_t *rl = dv_ratelimit_new(1);
	assert_int_equal(dv_ratelimit_size(rl), DV_RATELIMIT_WAYS);
	uint64_t t = 5000;
	/* keys differ in their low 32 bits only: the same set */
	for (uint64_t k = 1; k <= DV_RATELIMIT_WAYS; k++)
		assert_int_equal(take_n(rl, k << 1, 1, 2, t + k, 3), 2);
	assert_int_equal(dv_ratelimit_evictions(rl), 0);
	/* key 1 is used again: key 2 is now the least recently used */
	assert_false(dv_ratelimit_take(rl, 1 << 1, 1, 2, t + 100));
	assert_int_equal(take_n(rl, 100 << 1, 1, 2, t + 101, 3), 2);
	assert_int_equal(dv_ratelimit_evictions(rl), 1);
	/* key 1 was kept (still empty), key 2 comes back with a full
	 * bucket, evicting key 3 */
	assert_false(dv_ratelimit_take(rl, 1 << 1, 1, 2, t + 102));
	assert_int_equal(take_n(rl, 2 << 1, 1, 2, t + 103, 3), 2);
	assert_int_equal(dv_ratelimit_evictions(rl), 2);
	/* many more clients than buckets: the table never grows */
	for (uint64_t k = 1000; k < 11000; k++)
		assert_true(dv_ratelimit_take(rl, k << 1, 1, 1, t + 200));
	assert_int_equal(dv_ratelimit_size(rl), DV_RATELIMIT_WAYS);
	assert_int_equal(dv_ratelimit_evictions(rl), 2 + 10000);
	dv_ratelimit_free(rl);

	/* a larger table rounds up to whole sets */
	rl = dv_ratelimit_new(1000);
	assert_int_equal(dv_ratelimit_size(rl), 1024);
	dv_ratelimit_free(rl);
	dv_ratelimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_and_refill),
		cmocka_unit_test(test_eviction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

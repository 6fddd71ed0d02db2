/*
 * Unit tests for src/core/health.c: the p95 and EWMA estimators, the
 * up / degraded / down state machine and the server choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/core/health.h"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The definition: rank ceil(0.95 n) of the sorted values. */
static uint32_t p95_by_sort(const uint32_t *v, unsigned n)
{
	uint32_t tmp[160];
	memcpy(tmp, v, n * sizeof(*v));
	qsort(tmp, n, sizeof(*tmp), cmp_u32);
	unsigned rank = (95 * n + 99) / 100;
	return tmp[rank - 1];
}

static void test_p95_small(void **state)
{
	(void)state;
	uint32_t v[] = {5, 1, 9, 3};
	assert_int_equal(dv_health_p95(v, 0), 0);
	assert_int_equal(dv_health_p95(v, 1), 5);
	/* below 20 samples the p95 is the largest */
	assert_int_equal(dv_health_p95(v, 4), 9);
	uint32_t w[20];
	for (unsigned i = 0; i < 20; i++)
		w[i] = i + 1;
	assert_int_equal(dv_health_p95(w, 19), 19);
	assert_int_equal(dv_health_p95(w, 20), 19);
	/* 64 samples: the 4th largest */
	uint32_t x[64];
	for (unsigned i = 0; i < 64; i++)
		x[i] = 1000 - i;
	assert_int_equal(dv_health_p95(x, 64), 997);
}

static void test_p95_matches_sort(void **state)
{
	(void)state;
	uint32_t v[160];
	uint32_t seed = 12345;
	for (unsigned round = 0; round < 2000; round++) {
		unsigned n = 1 + round % 160;
		for (unsigned i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			/* many duplicates in some rounds, wide values in others */
			v[i] = round % 3 ? (seed >> 16) % 7 : seed >> 8;
		}
		uint32_t before[160];
		memcpy(before, v, sizeof(before));
		assert_int_equal(dv_health_p95(v, n), p95_by_sort(v, n));
		assert_memory_equal(before, v, sizeof(before));
	}
}

static const dv_health_conf_t conf = {
	.down_after = 3, .degraded_failures = 4, .slow_p95_ms = 50};

static void test_ewma(void **state)
{
	(void)state;
	dv_health_t h;
	dv_health_init(&h);
	assert_int_equal(h.ewma_us, 0);
	dv_health_answer(&h, 80, &conf);
	assert_int_equal(h.ewma_us, 80000); /* the first sample */
	dv_health_answer(&h, 0, &conf);
	assert_int_equal(h.ewma_us, 70000); /* 7/8 of it */
	for (int i = 0; i < 200; i++)
		dv_health_answer(&h, 0, &conf);
	/* converges to 0 (to within 1/8 of the last step: integer
	 * arithmetic), and 0 stays the "no sample" mark */
	assert_in_range(h.ewma_us, 1, 8);
	for (int i = 0; i < 200; i++)
		dv_health_answer(&h, 10, &conf);
	assert_in_range(h.ewma_us, 9990, 10000);
}

static void test_down_after_consecutive_failures(void **state)
{
	(void)state;
	dv_health_t h;
	dv_health_init(&h);
	assert_int_equal(h.state, DV_HEALTH_UP);
	assert_int_equal(dv_health_failure(&h, &conf), DV_HEALTH_UP);
	assert_int_equal(dv_health_failure(&h, &conf), DV_HEALTH_UP);
	/* an answer in between: the count starts again (but the window
	 * of the last 16 remembers: 4 failures make it degraded) */
	dv_health_answer(&h, 1, &conf);
	assert_int_equal(dv_health_failure(&h, &conf), DV_HEALTH_UP);
	assert_int_equal(dv_health_failure(&h, &conf), DV_HEALTH_DEGRADED);
	assert_int_equal(dv_health_failure(&h, &conf), DV_HEALTH_DOWN);
	/* answers (late ones) do not bring it back: only a probe does */
	assert_int_equal(dv_health_answer(&h, 1, &conf), DV_HEALTH_DOWN);
	assert_int_equal(dv_health_up(&h, &conf), DV_HEALTH_UP);
	assert_int_equal(h.consecutive, 0);
	assert_int_equal(h.window, 0);
	/* a refused connection: down at once */
	assert_int_equal(dv_health_down(&h), DV_HEALTH_DOWN);
	assert_int_equal(dv_health_up(&h, &conf), DV_HEALTH_UP);
	/* 0 = never down by count */
	dv_health_conf_t never = conf;
	never.down_after = 0;
	for (int i = 0; i < 100; i++)
		assert_int_not_equal(dv_health_failure(&h, &never),
				     DV_HEALTH_DOWN);
}

static void test_degraded_by_failures_window(void **state)
{
	(void)state;
	dv_health_t h;
	dv_health_init(&h);
	/* 4 failures spread among answers: degraded, never down */
	for (int i = 0; i < 4; i++) {
		dv_health_answer(&h, 1, &conf);
		dv_health_failure(&h, &conf);
	}
	assert_int_equal(h.state, DV_HEALTH_DEGRADED);
	/* the failures leave the 16-attempt window: up again */
	for (int i = 0; i < 9; i++)
		assert_int_equal(dv_health_answer(&h, 1, &conf),
				 DV_HEALTH_DEGRADED);
	assert_int_equal(dv_health_answer(&h, 1, &conf), DV_HEALTH_UP);
	dv_health_conf_t off = conf;
	off.degraded_failures = 0;
	off.down_after = 0;
	for (int i = 0; i < 16; i++)
		dv_health_failure(&h, &off);
	assert_int_equal(h.state, DV_HEALTH_UP);
}

static void test_slow_p95(void **state)
{
	(void)state;
	dv_health_t h;
	dv_health_init(&h);
	/* fewer than DV_HEALTH_MIN_SAMPLES: never slow */
	for (int i = 0; i < DV_HEALTH_MIN_SAMPLES - 1; i++)
		assert_int_equal(dv_health_answer(&h, 150, &conf),
				 DV_HEALTH_UP);
	assert_int_equal(dv_health_answer(&h, 150, &conf), DV_HEALTH_DEGRADED);
	assert_true(h.slow);
	assert_int_equal(h.p95_ms, 150);
	/* fast again: slow until fewer than 4 of the last 64 are slow */
	int n = 0;
	while (dv_health_answer(&h, 2, &conf) == DV_HEALTH_DEGRADED)
		n++;
	assert_int_equal(n, DV_HEALTH_SAMPLES - 4);
	assert_false(h.slow);
	assert_int_equal(h.p95_ms, 2);
	/* slow_p95_ms 0 (fallback servers): never slow */
	dv_health_conf_t off = conf;
	off.slow_p95_ms = 0;
	for (int i = 0; i < 64; i++)
		assert_int_equal(dv_health_answer(&h, 5000, &off),
				 DV_HEALTH_UP);
	/* a probe answer on a slow server: back, but degraded */
	dv_health_down(&h);
	assert_int_equal(dv_health_up(&h, &conf), DV_HEALTH_DEGRADED);
}

static void test_pick(void **state)
{
	(void)state;
	dv_health_t s[4];
	const dv_health_t *hs[4];
	for (int i = 0; i < 4; i++) {
		dv_health_init(&s[i]);
		hs[i] = &s[i];
	}
	/* nothing measured: config order */
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 0);
	assert_int_equal(dv_health_pick(hs, 4, 1, false, 0), 1);
	assert_int_equal(dv_health_pick(hs, 4, 0xf, false, 0), -1);
	/* lowest EWMA; an unmeasured server goes first (to measure it) */
	s[0].ewma_us = 30000;
	s[1].ewma_us = 2000;
	s[2].ewma_us = 9000;
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 3);
	s[3].ewma_us = 5000;
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 1);
	/* UP before DEGRADED, DOWN never */
	s[1].state = DV_HEALTH_DEGRADED;
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 3);
	s[3].state = DV_HEALTH_DOWN;
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 2);
	s[0].state = s[2].state = DV_HEALTH_DOWN;
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 1);
	assert_int_equal(dv_health_pick(hs, 4, 2, false, 0), -1);
	/* exploring: the others in turn, never the best, never DOWN */
	s[0].state = s[2].state = s[3].state = DV_HEALTH_UP;
	s[1].state = DV_HEALTH_UP; /* best: 1 (2 ms) */
	assert_int_equal(dv_health_pick(hs, 4, 0, false, 0), 1);
	assert_int_equal(dv_health_pick(hs, 4, 0, true, 0), 0);
	assert_int_equal(dv_health_pick(hs, 4, 0, true, 1), 2);
	assert_int_equal(dv_health_pick(hs, 4, 0, true, 2), 3);
	assert_int_equal(dv_health_pick(hs, 4, 0, true, 3), 0);
	s[2].state = DV_HEALTH_DOWN;
	assert_int_equal(dv_health_pick(hs, 4, 0, true, 1), 3);
	/* one candidate: nothing to explore */
	assert_int_equal(dv_health_pick(hs, 4, 0x9, true, 5), 1);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(dv_health_state_name(DV_HEALTH_UP), "up");
	assert_string_equal(dv_health_state_name(DV_HEALTH_DEGRADED),
			    "degraded");
	assert_string_equal(dv_health_state_name(DV_HEALTH_DOWN), "down");
	assert_string_equal(dv_health_state_name(DV_HEALTH_STATE_COUNT), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_p95_small),
		cmocka_unit_test(test_p95_matches_sort),
		cmocka_unit_test(test_ewma),
		cmocka_unit_test(test_down_after_consecutive_failures),
		cmocka_unit_test(test_degraded_by_failures_window),
		cmocka_unit_test(test_slow_p95),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_state_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

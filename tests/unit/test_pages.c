/*
 * Unit tests for page runs (src/core/pages.c), what ngtcp2 allocates
 * from: blocks over a page get a page-aligned run whose untouched pages
 * are not resident (checked with mincore), a freed run is given back to
 * the kernel and handed out again for a block of the same length (as
 * zeros, so calloc needs no memset) unless it is among the most recent
 * ones kept warm (resident, within a bound, zeroed by calloc), small
 * blocks are malloc'd, realloc
 * keeps the contents between the two kinds, and the counts add up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "src/core/pages.h"

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* How many of the `n` pages from the one holding `p` are resident. */
static unsigned resident(void *p, unsigned n)
{
	uint8_t *base = (uint8_t *)((uintptr_t)p & ~(uintptr_t)(page() - 1));
	unsigned char vec[16];
	assert_true(n <= sizeof(vec));
	assert_int_equal(mincore(base, n * page(), vec), 0);
	unsigned r = 0;
	for (unsigned i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

static void test_untouched_pages_cost_nothing(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(0);
	assert_non_null(p);
	size_t n = 3 * page() - 64; /* like ngtcp2's 12 KiB pool blocks */
	uint8_t *b = dv_pages_malloc(p, n);
	assert_non_null(b);
	assert_int_equal((uintptr_t)b % 16, 0);
	b[0] = 1; /* the first page only */
	assert_int_equal(resident(b, 3), 1);
	b[n - 1] = 2;
	assert_int_equal(resident(b, 3), 2);
	dv_pages_stats_t st;
	dv_pages_stats(p, &st);
	assert_int_equal(st.runs, 1);
	assert_int_equal(st.run_pages, 3);
	dv_pages_release(p, b);
	dv_pages_stats(p, &st);
	assert_int_equal(st.runs, 0);
	assert_int_equal(st.free_runs, 1);
	dv_pages_free(p);
}

static void test_freed_run_reused_as_zeros(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(0);
	size_t n = 2 * page();
	uint8_t *a = dv_pages_malloc(p, n);
	memset(a, 0xa5, n);
	dv_pages_release(p, a);
	/* given back: nothing of it resident, and the same run comes back
	 * for a block of the same length, reading as zeros */
	assert_int_equal(resident(a, 3), 0);
	uint8_t *b = dv_pages_calloc(p, 1, n);
	assert_ptr_equal(a, b);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(b[i], 0);
	/* a block of another length gets another run */
	uint8_t *c = dv_pages_malloc(p, 5 * page());
	assert_ptr_not_equal(c, b);
	dv_pages_release(p, b);
	dv_pages_release(p, c);
	dv_pages_free(p);
}

static void test_small_and_huge_blocks_malloced(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(0);
	void *s = dv_pages_malloc(p, 100);
	void *z = dv_pages_calloc(p, 10, 100);
	void *h = dv_pages_malloc(p, (DV_PAGES_MAX_RUN + 1) * page());
	assert_non_null(s);
	assert_non_null(z);
	assert_non_null(h);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(((uint8_t *)z)[i], 0);
	dv_pages_stats_t st;
	dv_pages_stats(p, &st);
	assert_int_equal(st.runs, 0);
	assert_int_equal(st.mapped, 0);
	assert_null(dv_pages_calloc(p, SIZE_MAX / 2, 4));
	dv_pages_release(p, s);
	dv_pages_release(p, z);
	dv_pages_release(p, h);
	dv_pages_release(p, NULL);
	dv_pages_free(p);
	dv_pages_free(NULL);
}

static void test_realloc_keeps_contents(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(0);
	/* small -> small -> run -> bigger run -> same run -> small */
	uint8_t *b = dv_pages_realloc(p, NULL, 64);
	for (int i = 0; i < 64; i++)
		b[i] = (uint8_t)i;
	b = dv_pages_realloc(p, b, 1000);
	for (int i = 0; i < 64; i++)
		assert_int_equal(b[i], i);
	for (int i = 0; i < 1000; i++)
		b[i] = (uint8_t)(i * 7);
	b = dv_pages_realloc(p, b, 2 * page());
	for (int i = 0; i < 1000; i++)
		assert_int_equal(b[i], (uint8_t)(i * 7));
	memset(b + 1000, 0x3c, 2 * page() - 1000);
	b = dv_pages_realloc(p, b, 4 * page());
	for (int i = 0; i < 1000; i++)
		assert_int_equal(b[i], (uint8_t)(i * 7));
	assert_int_equal(b[2 * page() - 1], 0x3c);
	uint8_t *same = dv_pages_realloc(p, b, 4 * page() - 8);
	assert_ptr_equal(same, b);
	b = dv_pages_realloc(p, b, 500);
	for (int i = 0; i < 500; i++)
		assert_int_equal(b[i], (uint8_t)(i * 7));
	dv_pages_stats_t st;
	dv_pages_stats(p, &st);
	assert_int_equal(st.runs, 0);
	dv_pages_release(p, b);
	dv_pages_free(p);
}

static void test_many_runs(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(0);
	enum { N = 600 }; /* more than one mapping */
	static uint8_t *v[N];
	for (int i = 0; i < N; i++) {
		size_t n = page() + 1 + (size_t)(i % 7) * page();
		v[i] = dv_pages_malloc(p, n);
		assert_non_null(v[i]);
		v[i][0] = (uint8_t)i;
		v[i][n - 1] = (uint8_t)i;
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(v[i][0], (uint8_t)i);
	dv_pages_stats_t st;
	dv_pages_stats(p, &st);
	assert_int_equal(st.runs, N);
	assert_true(st.mapped >= st.run_pages * page());
	for (int i = 0; i < N; i += 2)
		dv_pages_release(p, v[i]);
	for (int i = 0; i < N; i += 2) {
		size_t n = page() + 1 + (size_t)(i % 7) * page();
		v[i] = dv_pages_malloc(p, n);
		assert_non_null(v[i]);
	}
	size_t mapped = st.mapped;
	dv_pages_stats(p, &st);
	assert_int_equal(st.mapped, mapped); /* the freed runs served */
	assert_int_equal(st.free_runs, 0);
	for (int i = 0; i < N; i++)
		dv_pages_release(p, v[i]);
	dv_pages_free(p);
}

static void test_warm_runs_kept_within_bound(void **state)
{
	(void)state;
	dv_pages_t *p = dv_pages_new(4 * page()); /* two runs of 2 pages */
	size_t n = page() + 100;
	uint8_t *v[3];
	for (int i = 0; i < 3; i++) {
		v[i] = dv_pages_malloc(p, n);
		memset(v[i], 0x5a, n);
	}
	for (int i = 0; i < 3; i++)
		dv_pages_release(p, v[i]);
	dv_pages_stats_t st;
	dv_pages_stats(p, &st);
	assert_int_equal(st.free_runs, 3);
	assert_int_equal(st.warm_pages, 4);
	/* the first two stay resident, the third went back to the kernel */
	assert_int_equal(resident(v[0], 2), 2);
	assert_int_equal(resident(v[1], 2), 2);
	assert_int_equal(resident(v[2], 2), 0);
	/* the last warm one comes back first; calloc zeroes a warm run */
	uint8_t *a = dv_pages_calloc(p, 1, n);
	assert_ptr_equal(a, v[1]);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(a[i], 0);
	uint8_t *b = dv_pages_malloc(p, n);
	assert_ptr_equal(b, v[0]);
	uint8_t *c = dv_pages_calloc(p, 1, n);
	assert_ptr_equal(c, v[2]);
	assert_int_equal(c[0], 0);
	dv_pages_stats(p, &st);
	assert_int_equal(st.warm_pages, 0);
	assert_int_equal(st.free_runs, 0);
	dv_pages_release(p, a);
	dv_pages_release(p, b);
	dv_pages_release(p, c);
	dv_pages_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_untouched_pages_cost_nothing),
		cmocka_unit_test(test_freed_run_reused_as_zeros),
		cmocka_unit_test(test_small_and_huge_blocks_malloced),
		cmocka_unit_test(test_realloc_keeps_contents),
		cmocka_unit_test(test_many_runs),
		cmocka_unit_test(test_warm_runs_kept_within_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

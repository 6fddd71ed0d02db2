/*
 * Unit tests for a DoH connection's pool of freed blocks
 * (src/proto/doh_pool.c): what nghttp2, the HTTP/2 streams and the answer
 * copies allocate from.  They check that the blocks kept stay within
 * DV_DOH_POOL_KEEP however many are freed, that a freed block is handed
 * out again (not with DV_NOPOOL: then nothing is kept), that realloc keeps
 * the contents across classes and into and out of large blocks, that
 * calloc zeroes and refuses an overflowing size, that every block is
 * 16-byte aligned, and that trim gives everything back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/proto/doh_engine.h"

#ifdef DV_NOPOOL
#define KEEP 0
#else
#define KEEP DV_DOH_POOL_KEEP
#endif

static void test_bounded(void **state)
{
	(void)state;
	dv_doh_pool_t p = { 0 };
	enum { N = 2000 };
	static void *v[N];
	/* every class and some large blocks, many times the bound */
	for (size_t i = 0; i < N; i++) {
		size_t n = 1 + (i * 37) % 5000;
		v[i] = dv_doh_pool_alloc(&p, n);
		assert_non_null(v[i]);
		assert_int_equal((uintptr_t)v[i] % 16, 0);
		memset(v[i], 0xa5, n);
	}
	for (size_t i = 0; i < N; i++) {
		dv_doh_pool_free(&p, v[i]);
		assert_true(p.kept <= KEEP);
	}
	/* the bound is used, not just respected */
	if (KEEP)
		assert_true(p.kept > KEEP / 2);
	else
		assert_int_equal(p.kept, 0);
	/* and stays the bound through more traffic */
	for (size_t round = 0; round < 50; round++) {
		for (size_t i = 0; i < 64; i++)
			v[i] = dv_doh_pool_alloc(&p, 16 + i * 60);
		for (size_t i = 0; i < 64; i++) {
			assert_non_null(v[i]);
			dv_doh_pool_free(&p, v[i]);
			assert_true(p.kept <= KEEP);
		}
	}
	dv_doh_pool_trim(&p);
	assert_int_equal(p.kept, 0);
	for (unsigned c = 0; c < DV_DOH_POOL_CLASSES; c++)
		assert_null(p.free[c]);
}

static void test_reuse(void **state)
{
	(void)state;
	dv_doh_pool_t p = { 0 };
	void *a = dv_doh_pool_alloc(&p, 100);
	assert_non_null(a);
	dv_doh_pool_free(&p, a);
	void *b = dv_doh_pool_alloc(&p, 120); /* the same class (128) */
	assert_non_null(b);
	if (KEEP)
		assert_ptr_equal(a, b);
	assert_int_equal(p.kept, 0);
	dv_doh_pool_free(&p, b);
	dv_doh_pool_free(&p, NULL);
	dv_doh_pool_trim(&p);
	assert_int_equal(p.kept, 0);
}

/* what byte i of the block in test_realloc_calloc holds */
static uint8_t expect(size_t i)
{
	return i < 10 ? (uint8_t)i : (uint8_t)(i * 7 + 3);
}

static void test_realloc_calloc(void **state)
{
	(void)state;
	dv_doh_pool_t p = { 0 };
	uint8_t *a = dv_doh_pool_realloc(&p, NULL, 10);
	assert_non_null(a);
	for (int i = 0; i < 10; i++)
		a[i] = (uint8_t)i;
	/* grow through the classes into a large block, and back */
	size_t sizes[] = { 30, 64, 65, 1000, 4096, 4097, 70000, 5000, 200, 12 };
	size_t have = 10;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		a = dv_doh_pool_realloc(&p, a, sizes[k]);
		assert_non_null(a);
		size_t keep = have < sizes[k] ? have : sizes[k];
		for (size_t i = 0; i < keep; i++)
			assert_int_equal(a[i], expect(i));
		for (size_t i = 10; i < sizes[k]; i++)
			a[i] = (uint8_t)(i * 7 + 3);
		have = sizes[k];
		assert_true(p.kept <= KEEP);
	}
	dv_doh_pool_free(&p, a);
	uint8_t *z = dv_doh_pool_calloc(&p, 3, 100);
	assert_non_null(z);
	for (int i = 0; i < 300; i++)
		assert_int_equal(z[i], 0);
	dv_doh_pool_free(&p, z);
	assert_null(dv_doh_pool_calloc(&p, SIZE_MAX / 2, 3));
	assert_null(dv_doh_pool_alloc(&p, SIZE_MAX - 4));
	dv_doh_pool_trim(&p);
	assert_int_equal(p.kept, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_realloc_calloc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for src/core/ring.h: the single-producer single-consumer ring
 * the query log uses: capacity, order, full means NULL (the producer
 * drops), wrap-around, and a producer and a consumer on two threads where
 * every entry arrives whole, in order, or is counted as dropped.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "src/core/ring.h"

typedef struct {
	uint64_t seq;
	uint8_t fill[48]; /* every byte (seq & 0xff): a torn slot shows */
	uint64_t check;
} slot_t;

static void put(dv_ring_t *r, uint64_t seq)
{
	slot_t *s = dv_ring_reserve(r);
	assert_non_null(s);
	s->seq = seq;
	memset(s->fill, (int)(seq & 0xff), sizeof(s->fill));
	s->check = ~seq;
	dv_ring_commit(r);
}

static uint64_t get(dv_ring_t *r)
{
	const slot_t *s = dv_ring_peek(r);
	assert_non_null(s);
	uint64_t seq = s->seq;
	assert_int_equal(s->check, ~seq);
	for (size_t i = 0; i < sizeof(s->fill); i++)
		assert_int_equal(s->fill[i], seq & 0xff);
	dv_ring_release(r);
	return seq;
}

static void test_init(void **state)
{
	(void)state;
	dv_ring_t r;
	assert_int_equal(dv_ring_init(&r, 0, sizeof(slot_t)), -EINVAL);
	assert_int_equal(dv_ring_init(&r, 16, 0), -EINVAL);
	assert_int_equal(dv_ring_init(&r, (1u << 24) + 1, 8), -EINVAL);
	assert_int_equal(dv_ring_init(&r, 1, sizeof(slot_t)), 0);
	assert_int_equal(dv_ring_capacity(&r), 1);
	dv_ring_deinit(&r);
	assert_int_equal(dv_ring_init(&r, 100, sizeof(slot_t)), 0);
	assert_int_equal(dv_ring_capacity(&r), 128);
	dv_ring_deinit(&r);
	dv_ring_deinit(&r); /* twice, and on a zeroed ring: no-op */
	dv_ring_t z;
	memset(&z, 0, sizeof(z));
	dv_ring_deinit(&z);
}

static void test_full_and_order(void **state)
{
	(void)state;
	dv_ring_t r;
	assert_int_equal(dv_ring_init(&r, 8, sizeof(slot_t)), 0);
	assert_null(dv_ring_peek(&r));
	for (uint64_t i = 0; i < 8; i++)
		put(&r, i);
	/* full: the producer gets NULL, nothing is overwritten */
	assert_null(dv_ring_reserve(&r));
	assert_null(dv_ring_reserve(&r));
	assert_int_equal(get(&r), 0);
	assert_int_equal(get(&r), 1);
	/* room again for exactly two */
	put(&r, 8);
	put(&r, 9);
	assert_null(dv_ring_reserve(&r));
	for (uint64_t i = 2; i < 10; i++)
		assert_int_equal(get(&r), i);
	assert_null(dv_ring_peek(&r));
	dv_ring_deinit(&r);
}

static void test_wrap(void **state)
{
	(void)state;
	dv_ring_t r;
	assert_int_equal(dv_ring_init(&r, 4, sizeof(slot_t)), 0);
	/* many times round, with head and tail far past the capacity; a
	 * reserve that is not committed publishes nothing */
	uint64_t next = 0, want = 0;
	for (int round = 0; round < 10000; round++) {
		int n = 1 + round % 4;
		for (int i = 0; i < n; i++)
			put(&r, next++);
		for (int i = 0; i < n; i++)
			assert_int_equal(get(&r), want++);
		assert_non_null(dv_ring_reserve(&r));
		assert_null(dv_ring_peek(&r));
	}
	dv_ring_deinit(&r);
}

/* ---- two threads ---- */

#define TOTAL 2000000u

typedef struct {
	dv_ring_t ring;
	uint64_t dropped;
	int done; /* atomic */
} shared_t;

static void *producer(void *arg)
{
	shared_t *sh = arg;
	for (uint64_t seq = 0; seq < TOTAL; seq++) {
		slot_t *s = dv_ring_reserve(&sh->ring);
		if (!s) {
			sh->dropped++;
			continue;
		}
		s->seq = seq;
		memset(s->fill, (int)(seq & 0xff), sizeof(s->fill));
		s->check = ~seq;
		dv_ring_commit(&sh->ring);
	}
	__atomic_store_n(&sh->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	shared_t sh;
	memset(&sh, 0, sizeof(sh));
	assert_int_equal(dv_ring_init(&sh.ring, 64, sizeof(slot_t)), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, producer, &sh), 0);
	uint64_t got = 0, last = 0;
	bool first = true;
	for (;;) {
		const slot_t *s = dv_ring_peek(&sh.ring);
		if (!s) {
			if (__atomic_load_n(&sh.done, __ATOMIC_ACQUIRE) &&
			    !dv_ring_peek(&sh.ring))
				break;
			continue;
		}
		uint64_t seq = s->seq;
		/* whole, and later than the last one */
		assert_int_equal(s->check, ~seq);
		for (size_t i = 0; i < sizeof(s->fill); i++)
			assert_int_equal(s->fill[i], seq & 0xff);
		if (!first)
			assert_true(seq > last);
		first = false;
		last = seq;
		got++;
		dv_ring_release(&sh.ring);
	}
	pthread_join(t, NULL);
	assert_int_equal(got + sh.dropped, TOTAL);
	assert_true(got > 0);
	print_message("ring of 64: %llu received, %llu dropped\n",
		      (unsigned long long)got, (unsigned long long)sh.dropped);
	dv_ring_deinit(&sh.ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_full_and_order),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

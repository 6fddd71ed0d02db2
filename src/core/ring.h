#pragma once
/*
 * A bounded single-producer single-consumer ring of fixed-size slots: a
 * worker (the producer) hands entries to one other thread (the consumer)
 * without a lock or a system call, and learns at once when the ring is
 * full, so that it drops rather than waits.  The query log keeps one ring
 * per worker.
 *
 * The producer calls dv_ring_reserve() and, after filling the slot,
 * dv_ring_commit(); the consumer dv_ring_peek() and, after reading the
 * slot, dv_ring_release().  Head and tail are free-running counters on
 * their own cache lines; the release/acquire pairs make a committed slot's
 * contents visible to the consumer, and a released slot free for reuse.
 */
#include <stddef.h>
#include <stdint.h>

typedef struct dv_ring {
	/* written by the producer */
	uint32_t head __attribute__((aligned(64)));
	uint32_t tail_cache; /* the last tail the producer read */
	/* written by the consumer */
	uint32_t tail __attribute__((aligned(64)));
	/* fixed */
	uint32_t mask __attribute__((aligned(64)));
	size_t slot_size;
	unsigned char *slots;
} dv_ring_t;

/* Set up `r` with room for `n` slots of `slot_size` bytes (`n` is rounded
 * up to a power of two, at most 2^24).  0 or -ENOMEM / -EINVAL. */
int dv_ring_init(dv_ring_t *r, unsigned n, size_t slot_size);
void dv_ring_deinit(dv_ring_t *r); /* safe on a zeroed ring */

/* The capacity in slots. */
static inline unsigned dv_ring_capacity(const dv_ring_t *r)
{
	return r->mask + 1;
}

/* Producer: the next free slot, or NULL when the ring is full. */
static inline void *dv_ring_reserve(dv_ring_t *r)
{
	uint32_t h = r->head;
	if (h - r->tail_cache > r->mask) {
		r->tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		if (h - r->tail_cache > r->mask)
			return NULL;
	}
	return r->slots + (size_t)(h & r->mask) * r->slot_size;
}

/* Producer: publish the slot dv_ring_reserve() gave. */
static inline void dv_ring_commit(dv_ring_t *r)
{
	__atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
}

/* Consumer: the oldest published slot, or NULL when there is none. */
static inline const void *dv_ring_peek(dv_ring_t *r)
{
	uint32_t t = r->tail;
	if (t == __atomic_load_n(&r->head, __ATOMIC_ACQUIRE))
		return NULL;
	return r->slots + (size_t)(t & r->mask) * r->slot_size;
}

/* Consumer: give the slot dv_ring_peek() gave back to the producer. */
static inline void dv_ring_release(dv_ring_t *r)
{
	__atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
}

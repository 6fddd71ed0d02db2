/*
 * DoH: a connection's pool of freed memory blocks (doh_engine.h).
 *
 * Design notes.
 *
 * An HTTP/2 cache hit used to cost a handful of malloc/free pairs: our
 * stream object, the request target or body, the copy of the answer, and
 * nghttp2's own (its stream, the outbound items for HEADERS and DATA, the
 * copied header list, HPACK buffers).  Every one of them has a short life
 * and one of a few sizes, and the next request on the connection wants
 * the same sizes again.  So a connection keeps the blocks it frees, by
 * size class (powers of two, 32 to 4096 bytes), and hands them out again;
 * nghttp2 allocates through it (nghttp2_mem, doh_h2.c), and so do our
 * streams.
 *
 * Each block carries a 16-byte header before what the caller sees: its
 * class, or POOL_LARGE for a block over 4096 bytes, which is malloc'd and
 * freed as it is (a large POST body, nghttp2's HPACK table growing).  The
 * blocks kept are bounded: at most DV_DOH_POOL_KEEP bytes (headers
 * included) per connection; a block freed past that goes back to libc.
 * dv_doh_pool_trim() gives everything back (when the connection ends).
 * Built with DV_NOPOOL nothing is kept, so ASan sees every block.
 */
#include <stdlib.h>
#include <string.h>

#include "src/proto/doh_engine.h"

#define POOL_MIN_SHIFT 5 /* 32 bytes */
#define POOL_LARGE 0xff
#define POOL_HDR 16 /* keeps the caller's pointer 16-byte aligned */

#ifdef DV_NOPOOL
#define POOL_KEEP 0
#else
#define POOL_KEEP DV_DOH_POOL_KEEP
#endif

typedef union blk {
	union blk *next; /* on a free list */
	struct {
		uint8_t cls; /* class index, or POOL_LARGE */
	} h;
} blk_t;

_Static_assert(sizeof(blk_t) <= POOL_HDR, "pool header too large");

static size_t class_size(unsigned c)
{
	return (size_t)1 << (c + POOL_MIN_SHIFT);
}

/* The smallest class that holds n bytes, or POOL_LARGE. */
static unsigned class_of(size_t n)
{
	unsigned c = 0;
	while (c < DV_DOH_POOL_CLASSES && class_size(c) < n)
		c++;
	return c < DV_DOH_POOL_CLASSES ? c : POOL_LARGE;
}

static blk_t *hdr_of(void *p)
{
	return (blk_t *)((uint8_t *)p - POOL_HDR);
}

void *dv_doh_pool_alloc(dv_doh_pool_t *p, size_t n)
{
	unsigned c = class_of(n);
	blk_t *b;
	if (c == POOL_LARGE) {
		if (n > SIZE_MAX - POOL_HDR)
			return NULL;
		b = malloc(POOL_HDR + n);
	} else if (p->free[c]) {
		b = p->free[c];
		p->free[c] = b->next;
		p->kept -= POOL_HDR + class_size(c);
	} else {
		b = malloc(POOL_HDR + class_size(c));
	}
	if (!b)
		return NULL;
	b->h.cls = (uint8_t)c;
	return (uint8_t *)b + POOL_HDR;
}

void *dv_doh_pool_calloc(dv_doh_pool_t *p, size_t nmemb, size_t size)
{
	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	void *r = dv_doh_pool_alloc(p, nmemb * size);
	if (r)
		memset(r, 0, nmemb * size);
	return r;
}

void dv_doh_pool_free(dv_doh_pool_t *p, void *ptr)
{
	if (!ptr)
		return;
	blk_t *b = hdr_of(ptr);
	unsigned c = b->h.cls;
	if (c == POOL_LARGE || p->kept + POOL_HDR + class_size(c) > POOL_KEEP) {
		free(b);
		return;
	}
	b->next = p->free[c];
	p->free[c] = b;
	p->kept += POOL_HDR + class_size(c);
}

void *dv_doh_pool_realloc(dv_doh_pool_t *p, void *ptr, size_t n)
{
	if (!ptr)
		return dv_doh_pool_alloc(p, n);
	blk_t *b = hdr_of(ptr);
	unsigned c = b->h.cls;
	if (c != POOL_LARGE && n <= class_size(c))
		return ptr; /* still fits its block */
	if (c == POOL_LARGE && class_of(n) == POOL_LARGE) {
		if (n > SIZE_MAX - POOL_HDR)
			return NULL;
		blk_t *nb = realloc(b, POOL_HDR + n);
		return nb ? (uint8_t *)nb + POOL_HDR : NULL;
	}
	/* the old size: a class, or a large block only ever shrinks here
	 * (into a class), so n bytes of it are enough */
	size_t old = c == POOL_LARGE ? n : class_size(c);
	void *r = dv_doh_pool_alloc(p, n);
	if (!r)
		return NULL;
	memcpy(r, ptr, old < n ? old : n);
	dv_doh_pool_free(p, ptr);
	return r;
}

void dv_doh_pool_trim(dv_doh_pool_t *p)
{
	for (unsigned c = 0; c < DV_DOH_POOL_CLASSES; c++) {
		while (p->free[c]) {
			blk_t *b = p->free[c];
			p->free[c] = b->next;
			free(b);
		}
	}
	p->kept = 0;
}

#pragma once
/*
 * Page runs: where a connection's large, long-lived blocks live, so that
 * the pages of them that are never written cost no memory.
 *
 * ngtcp2 keeps, for the life of every QUIC connection, a dozen blocks of
 * 4 to 12 KiB (its object pools, 64 objects each, and the blocks of its
 * skip lists, 8 nodes each) of which an idle connection has written only
 * the first few hundred bytes.  From malloc's heap those blocks are
 * resident in full: the heap's pages were written before, and the next
 * block's header sits on each block's last page.  Here a block of more
 * than a page gets a run of whole pages of its own, taken from large
 * anonymous mappings: a page of it nobody writes stays unmapped, so costs
 * no RSS.  A freed run is kept, by its length in pages, for the next
 * block of that length: the most recently freed ones as they are, up to
 * a bound in bytes ("warm": a busy connection frees and takes blocks of
 * the same lengths for every stream, without a system call each time),
 * the rest handed to the kernel (MADV_DONTNEED: they read as zeros again,
 * and calloc needs no memset for them).  The mappings are kept until
 * dv_pages_free(): what a crowd of connections leaves behind is address
 * space and at most the warm bound, not memory.
 *
 * Smaller blocks (and those over DV_PAGES_MAX_RUN pages) are malloc'd.
 * Every block carries a 16-byte header (its size, and its run length or 0
 * for a malloc'd one).  One dv_pages_t serves one thread; it is not
 * locked.  Whether a caller uses it or plain malloc under DV_NOPOOL (so
 * that ASan sees every block) is the caller's choice.
 */
#include <stddef.h>

/* runs of more pages are malloc'd */
#define DV_PAGES_MAX_RUN 8

typedef struct dv_pages dv_pages_t;

typedef struct {
	size_t runs;        /* page runs handed out now */
	size_t run_pages;   /* ... their pages */
	size_t free_runs;   /* runs kept for reuse */
	size_t warm_pages;  /* ... of them not given back to the kernel */
	size_t mapped;      /* bytes of address space mapped */
} dv_pages_stats_t;

/* A new allocator that keeps up to `warm_bytes` of freed runs resident
 * (rounded down to pages), or NULL (-ENOMEM). */
dv_pages_t *dv_pages_new(size_t warm_bytes);
/* Unmaps everything: every block must have been freed.  NULL: no-op. */
void dv_pages_free(dv_pages_t *p);

/* malloc/calloc/realloc/free on `p`; blocks are 16-byte aligned.  NULL
 * when out of memory (or on an overflowing calloc). */
void *dv_pages_malloc(dv_pages_t *p, size_t n);
void *dv_pages_calloc(dv_pages_t *p, size_t nmemb, size_t size);
void *dv_pages_realloc(dv_pages_t *p, void *ptr, size_t n);
void dv_pages_release(dv_pages_t *p, void *ptr);

void dv_pages_stats(const dv_pages_t *p, dv_pages_stats_t *st);

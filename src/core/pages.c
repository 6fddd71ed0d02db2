/*
 * Page runs for large, long-lived blocks (pages.h).
 */
#include "src/core/pages.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HDR 16
#define CHUNK_PAGES 256 /* one mapping: 1 MiB of 4 KiB pages */

typedef struct {
	size_t size;     /* what the caller asked for */
	uint32_t pages;  /* run length, or 0: malloc'd */
	uint32_t unused;
} hdr_t;

_Static_assert(sizeof(hdr_t) == HDR, "block header is 16 bytes");

typedef struct {
	void **v;
	size_t n, cap;
} ptrs_t;

struct dv_pages {
	size_t page;
	size_t hot_max, hot; /* pages in `warm` runs: at most, now */
	uint8_t *cur;    /* the rest of the newest mapping */
	size_t cur_left; /* ... in pages */
	ptrs_t chunks;  /* every mapping, for dv_pages_free */
	/* freed runs, by length: given back to the kernel (zeros, not
	 * resident), and the most recently freed ones kept as they are */
	ptrs_t free[DV_PAGES_MAX_RUN + 1];
	ptrs_t warm[DV_PAGES_MAX_RUN + 1];
	size_t runs, run_pages;
};

static int push(ptrs_t *s, void *x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		void **v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	return 0;
}

dv_pages_t *dv_pages_new(size_t warm_bytes)
{
	dv_pages_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	long ps = sysconf(_SC_PAGESIZE);
	p->page = ps > 0 ? (size_t)ps : 4096;
	p->hot_max = warm_bytes / p->page;
	return p;
}

void dv_pages_free(dv_pages_t *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->chunks.n; i++)
		munmap(p->chunks.v[i], CHUNK_PAGES * p->page);
	free(p->chunks.v);
	for (unsigned k = 0; k <= DV_PAGES_MAX_RUN; k++) {
		free(p->free[k].v);
		free(p->warm[k].v);
	}
	free(p);
}

/* Pages for a block of n bytes plus its header, or 0: malloc it. */
static size_t run_len(const dv_pages_t *p, size_t n)
{
	if (n > DV_PAGES_MAX_RUN * p->page - HDR || n + HDR <= p->page)
		return 0;
	return (n + HDR + p->page - 1) / p->page;
}

/* A run of `len` pages, or NULL.  *zero says whether it is all zeros (a
 * new one, or one given back to the kernel when it was freed: none of its
 * pages resident) or a warm one (as its last user left it). */
static uint8_t *run_get(dv_pages_t *p, size_t len, int *zero)
{
	ptrs_t *ws = &p->warm[len];
	*zero = !ws->n;
	if (ws->n) {
		p->hot -= len;
		return ws->v[--ws->n];
	}
	ptrs_t *fs = &p->free[len];
	if (fs->n)
		return fs->v[--fs->n];
	if (p->cur_left < len) {
		/* the old mapping's tail stays unused: address space only */
		void *m = mmap(NULL, CHUNK_PAGES * p->page,
			       PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		if (push(&p->chunks, m) != 0) {
			munmap(m, CHUNK_PAGES * p->page);
			return NULL;
		}
		p->cur = m;
		p->cur_left = CHUNK_PAGES;
	}
	uint8_t *r = p->cur;
	p->cur += len * p->page;
	p->cur_left -= len;
	return r;
}

static void *alloc(dv_pages_t *p, size_t n, int zero)
{
	size_t len = run_len(p, n);
	hdr_t *h;
	if (len) {
		int fresh;
		h = (hdr_t *)run_get(p, len, &fresh);
		if (!h)
			return NULL;
		if (zero && !fresh)
			memset((uint8_t *)h + HDR, 0, n);
		p->runs++;
		p->run_pages += len;
	} else {
		if (n > SIZE_MAX - HDR)
			return NULL;
		h = zero ? calloc(1, HDR + n) : malloc(HDR + n);
		if (!h)
			return NULL;
	}
	h->size = n;
	h->pages = (uint32_t)len;
	return (uint8_t *)h + HDR;
}

void *dv_pages_malloc(dv_pages_t *p, size_t n)
{
	return alloc(p, n, 0);
}

void *dv_pages_calloc(dv_pages_t *p, size_t nmemb, size_t size)
{
	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	return alloc(p, nmemb * size, 1); /* a run is zeros already */
}

void dv_pages_release(dv_pages_t *p, void *ptr)
{
	if (!ptr)
		return;
	hdr_t *h = (hdr_t *)((uint8_t *)ptr - HDR);
	size_t len = h->pages;
	if (!len) {
		free(h);
		return;
	}
	p->runs--;
	p->run_pages -= len;
	/* kept warm while few are: a busy connection frees and takes blocks
	 * of the same lengths again and again (a stream's skip lists) and
	 * should not pay a system call and page faults for each */
	if (p->hot + len <= p->hot_max && push(&p->warm[len], h) == 0) {
		p->hot += len;
		return;
	}
	/* the pages go back to the kernel and read as zeros when next
	 * written; if the run cannot be kept, it is lost address space */
	madvise(h, len * p->page, MADV_DONTNEED);
	(void)push(&p->free[len], h);
}

void *dv_pages_realloc(dv_pages_t *p, void *ptr, size_t n)
{
	if (!ptr)
		return alloc(p, n, 0);
	hdr_t *h = (hdr_t *)((uint8_t *)ptr - HDR);
	size_t len = run_len(p, n);
	if (!h->pages && !len) {
		if (n > SIZE_MAX - HDR)
			return NULL;
		hdr_t *nh = realloc(h, HDR + n);
		if (!nh)
			return NULL;
		nh->size = n;
		return (uint8_t *)nh + HDR;
	}
	if (h->pages && len == h->pages) {
		h->size = n; /* still fits its run */
		return ptr;
	}
	void *r = alloc(p, n, 0);
	if (!r)
		return NULL;
	memcpy(r, ptr, h->size < n ? h->size : n);
	dv_pages_release(p, ptr);
	return r;
}

void dv_pages_stats(const dv_pages_t *p, dv_pages_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	st->runs = p->runs;
	st->run_pages = p->run_pages;
	for (unsigned k = 0; k <= DV_PAGES_MAX_RUN; k++)
		st->free_runs += p->free[k].n + p->warm[k].n;
	st->warm_pages = p->hot;
	st->mapped = p->chunks.n * CHUNK_PAGES * p->page;
}

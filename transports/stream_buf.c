/*
 * The input and output buffers of stream connections (Do53 TCP, DoT, DoH),
 * lent by the worker thread while bytes are being received or sent.
 *
 * An idle connection holds neither: the input buffer goes back when every
 * byte read has been taken by the application, the output buffer when
 * everything written has left (transports/stream.c).  So ten thousand idle
 * DoT clients cost no buffer memory, and a busy connection takes a buffer
 * from the thread's cache, where the last one given back is still warm,
 * instead of asking malloc for it on every query.
 *
 * The cache keeps a few buffers of each power-of-two size from 1 KiB to
 * 64 KiB (what the stream allocates: input from 2 KiB, DNS output from
 * 1 KiB, DoH output from 32 KiB, each doubling); any other size is freed
 * at once.  It belongs to the thread and is freed when the thread ends.
 * Built with DV_NOPOOL nothing is kept, so ASan sees every buffer.
 */
#include "transports/stream_conn.h"

#include <pthread.h>
#include <stdlib.h>

#define CLASS_MIN_SHIFT 10 /* 1 KiB */
#define N_CLASSES 7	   /* up to 64 KiB */
/* buffers kept per size: the connections of one loop iteration that are
 * receiving or sending at once rarely need more */
#define KEEP_PER_CLASS 16

#ifndef DV_NOPOOL
typedef struct {
	void *buf[N_CLASSES][KEEP_PER_CLASS];
	unsigned n[N_CLASSES];
} buf_cache_t;

static __thread buf_cache_t *cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static bool cache_key_ok;

static void cache_destroy(void *arg)
{
	buf_cache_t *bc = arg;
	for (unsigned c = 0; c < N_CLASSES; c++)
		for (unsigned i = 0; i < bc->n[c]; i++)
			free(bc->buf[c][i]);
	free(bc);
	cache = NULL;
}

static void cache_key_make(void)
{
	cache_key_ok = pthread_key_create(&cache_key, cache_destroy) == 0;
}

/* The size class of `cap`, or -1 when buffers of that size are not kept. */
static int size_class(size_t cap)
{
	for (int c = 0; c < N_CLASSES; c++)
		if (cap == (size_t)1 << (CLASS_MIN_SHIFT + c))
			return c;
	return -1;
}

static buf_cache_t *cache_get(void)
{
	if (cache)
		return cache;
	pthread_once(&cache_once, cache_key_make);
	if (!cache_key_ok)
		return NULL;
	buf_cache_t *bc = calloc(1, sizeof(*bc));
	if (bc && pthread_setspecific(cache_key, bc) != 0) {
		free(bc);
		bc = NULL;
	}
	return cache = bc;
}
#endif

uint8_t *dv_stream_buf_take(size_t cap)
{
#ifndef DV_NOPOOL
	int c = size_class(cap);
	buf_cache_t *bc = c >= 0 ? cache_get() : NULL;
	if (bc && bc->n[c])
		return bc->buf[c][--bc->n[c]];
#endif
	return malloc(cap);
}

void dv_stream_buf_give(uint8_t *buf, size_t cap)
{
	if (!buf)
		return;
#ifndef DV_NOPOOL
	int c = size_class(cap);
	buf_cache_t *bc = c >= 0 ? cache_get() : NULL;
	if (bc && bc->n[c] < KEEP_PER_CLASS) {
		bc->buf[c][bc->n[c]++] = buf;
		return;
	}
#else
	(void)cap;
#endif
	free(buf);
}

void dv_stream_in_idle(conn_t *c)
{
	if (c->in_len || !c->in)
		return;
	dv_stream_buf_give(c->in, c->in_cap);
	c->in = NULL;
	c->in_cap = 0;
}

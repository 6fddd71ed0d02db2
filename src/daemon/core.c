/*
 * The query lifecycle: validate, answer from the cache, coalesce identical
 * questions, hand the rest to the upstream pool, and deliver exactly one
 * answer per accepted query.
 */
#include "src/daemon/core.h"

#include <ev.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "src/core/cache.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"

#define QUERY_POOL_MAX 4096 /* free objects kept per worker */

uint64_t dv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint32_t dv_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

/* ---- query objects ---- */

dv_query_t *dv_query_new(dv_worker_t *w, const uint8_t *wire, size_t len)
{
	if (len > DV_DNS_MAX_MSG)
		return NULL;
	dv_query_t *q = NULL;
#ifndef DV_NOPOOL
	if (w->free_queries) {
		q = w->free_queries;
		w->free_queries = q->next;
		w->n_free_queries--;
	}
#endif
	if (!q) {
		q = malloc(sizeof(*q));
		if (!q)
			return NULL;
	}
	memset(q, 0, offsetof(dv_query_t, inline_buf));
	q->worker = w;
	if (len <= DV_QUERY_INLINE) {
		q->wire = q->inline_buf;
	} else {
		q->wire = malloc(len);
		if (!q->wire) {
			free(q);
			return NULL;
		}
	}
	memcpy(q->wire, wire, len);
	q->len = (uint16_t)len;
	w->inflight++;
	return q;
}

void dv_query_free(dv_query_t *q)
{
	if (!q)
		return;
	dv_worker_t *w = q->worker;
	if (q->wire != q->inline_buf)
		free(q->wire);
	w->inflight--;
#ifndef DV_NOPOOL
	if (w->n_free_queries < QUERY_POOL_MAX) {
		q->next = w->free_queries;
		w->free_queries = q;
		w->n_free_queries++;
		return;
	}
#endif
	free(q);
}

/* ---- answering ---- */

static void finish(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_worker_t *w = q->worker;
	DV_STAT_INC(&w->stats, answers);
	if (q->udp && len >= 4 && (wire[2] & 0x02))
		DV_STAT_INC(&w->stats, truncated);
	q->reply(q, wire, len);
	dv_query_free(q);
}

static unsigned pad_for(const dv_query_t *q)
{
	return q->view.edns_padding ? q->pad_block : 0;
}

static void reply_error(dv_query_t *q, uint8_t rcode, uint16_t ede,
			const char *text)
{
	dv_worker_t *w = q->worker;
	int len = dv_wire_error(w->scratch, sizeof(w->scratch), q->wire,
				&q->view, rcode, ede, text, pad_for(q));
	dv_require(len > 0); /* the scratch buffer fits any error answer */
	switch (rcode) {
	case DV_RCODE_FORMERR:
		DV_STAT_INC(&w->stats, formerr);
		break;
	case DV_RCODE_NOTIMP:
		DV_STAT_INC(&w->stats, notimp);
		break;
	case DV_RCODE_SERVFAIL:
		DV_STAT_INC(&w->stats, servfail);
		break;
	case DV_RCODE_REFUSED:
		DV_STAT_INC(&w->stats, refused);
		break;
	default:
		DV_STAT_INC(&w->stats, badvers);
		break;
	}
	finish(q, w->scratch, (size_t)len);
}

/* ---- coalescing table ---- */

/* Seeded per process so a client cannot aim many questions at one chain
 * of the coalescing table. */
static uint64_t hash_seed;

__attribute__((constructor)) static void hash_seed_init(void)
{
	if (getrandom(&hash_seed, sizeof(hash_seed), 0) != sizeof(hash_seed))
		hash_seed = dv_now_ms();
}

static uint64_t key_hash(const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed;
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static dv_fetch_t **fetch_slot(dv_worker_t *w, uint64_t hash,
			       const uint8_t *key, size_t key_len)
{
	dv_fetch_t **pp = &w->fetches[hash & w->fetch_mask];
	while (*pp) {
		dv_fetch_t *f = *pp;
		if (f->hash == hash && f->key_len == key_len &&
		    memcmp(f->key, key, key_len) == 0)
			break;
		pp = &f->hnext;
	}
	return pp;
}

static void fetch_unlink(dv_fetch_t *f)
{
	dv_worker_t *w = f->worker;
	dv_fetch_t **pp = fetch_slot(w, f->hash, f->key, f->key_len);
	dv_require(*pp == f);
	*pp = f->hnext;
	w->n_fetches--;
}

/* ---- waiters ---- */

static void waiter_append(dv_fetch_t *f, dv_query_t *q)
{
	q->next = NULL;
	if (f->waiters)
		f->waiters_tail->next = q;
	else
		f->waiters = q;
	f->waiters_tail = q;
	f->n_waiters++;
}

/* Take the whole waiter list off `f` (f may get new waiters meanwhile). */
static dv_query_t *waiters_take(dv_fetch_t *f)
{
	dv_query_t *q = f->waiters;
	f->waiters = f->waiters_tail = NULL;
	f->n_waiters = 0;
	return q;
}

/* ---- serve-stale (RFC 8767) ---- */

static dv_cache_policy_t cache_policy(const dv_config_t *cfg)
{
	return (dv_cache_policy_t){
		.stale_max_age = cfg->cache_stale_max_age_s,
		.prefetch_hits = cfg->cache_prefetch_hits,
		.prefetch_window_pct = cfg->cache_prefetch_window_pct,
	};
}

/*
 * Answer `q` with the stale answer for the fetch's key, if the cache has
 * one inside the window.  Returns true when `q` was answered (and freed).
 */
static bool serve_stale(dv_query_t *q, const uint8_t *key, size_t key_len)
{
	dv_worker_t *w = q->worker;
	unsigned flags = 0;
	if (!w->cache || !w->cfg || w->cfg->cache_stale_max_age_s == 0)
		return false;
	int n = dv_cache_lookup_stale(w->cache, key, key_len, dv_now_s(),
				      w->cfg->cache_stale_max_age_s,
				      w->scratch, sizeof(w->scratch), q->wire,
				      &q->view, q->answer_limit, pad_for(q),
				      &flags);
	if (n <= 0)
		return false;
	if (flags & DV_CACHE_STALE)
		DV_STAT_INC(&w->stats, stale_served);
	else
		DV_STAT_INC(&w->stats, cache_hits); /* refreshed meanwhile */
	finish(q, w->scratch, (size_t)n);
	return true;
}

/*
 * The client response timer (RFC 8767 5): when a fetch whose key has a
 * stale answer has not completed within cache.stale-answer-timeout-ms,
 * its waiters get the stale answer and the fetch goes on to refresh the
 * cache.
 *
 * Design note: dv_fetch_t belongs to upstream.h, and fetches are also
 * made outside the core (the pool's unit tests allocate bare ones), so the
 * timer cannot live in the fetch or in a larger struct around it.  It
 * lives in a small side object, made only for fetches whose key has a
 * stale answer, found by the fetch's address in one process-wide table
 * (process-wide because a stopped worker's leftover fetches are freed
 * from the main thread).  Its lock is taken only while such objects
 * exist, so other fetches never touch it.  This is the
 * one place the core arms a libev timer, because worker.c and upstream.c
 * are not the core's to change here; what the timer decides is plain
 * code (stale_timer_cb() only serves waiters from the cache).
 */
struct stale_timer {
	ev_timer timer;
	dv_fetch_t *fetch;
	struct stale_timer *next;
	bool fired; /* later waiters get the stale answer at once */
};

#define STALE_TAB_SIZE 256 /* power of two */
static struct stale_timer *stale_tab[STALE_TAB_SIZE];
static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned stale_live; /* objects in the table; atomic reads */

static struct stale_timer **stale_slot(const dv_fetch_t *f)
{
	uintptr_t h = (uintptr_t)f;
	h ^= h >> 7;
	h ^= h >> 13;
	struct stale_timer **pp = &stale_tab[h & (STALE_TAB_SIZE - 1)];
	while (*pp && (*pp)->fetch != f)
		pp = &(*pp)->next;
	return pp;
}

static void stale_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct stale_timer *st = t->data;
	dv_fetch_t *f = st->fetch;
	pthread_mutex_lock(&stale_lock);
	st->fired = true;
	pthread_mutex_unlock(&stale_lock);
	dv_query_t *q = waiters_take(f);
	while (q) {
		dv_query_t *next = q->next;
		if (!serve_stale(q, f->key, f->key_len))
			waiter_append(f, q); /* no stale answer after all */
		q = next;
	}
}

/* Start the timer for `f` unless it has one.  Memory short: no timer,
 * the fetch just runs its course. */
static void stale_arm(dv_fetch_t *f)
{
	dv_worker_t *w = f->worker;
	const dv_config_t *cfg = w->cfg;
	if (!cfg || cfg->cache_stale_answer_timeout_ms == 0 ||
	    cfg->cache_stale_max_age_s == 0 || !w->loop)
		return;
	pthread_mutex_lock(&stale_lock);
	struct stale_timer **pp = stale_slot(f);
	struct stale_timer *st = NULL;
	if (!*pp && (st = calloc(1, sizeof(*st))) != NULL) {
		st->fetch = f;
		*pp = st;
		__atomic_add_fetch(&stale_live, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&stale_lock);
	if (!st)
		return;
	ev_timer_init(&st->timer, stale_timer_cb,
		      cfg->cache_stale_answer_timeout_ms / 1000.0, 0.);
	st->timer.data = st;
	ev_timer_start(w->loop, &st->timer);
}

static bool stale_fired(const dv_fetch_t *f)
{
	if (__atomic_load_n(&stale_live, __ATOMIC_ACQUIRE) == 0)
		return false;
	pthread_mutex_lock(&stale_lock);
	struct stale_timer *st = *stale_slot(f);
	bool fired = st && st->fired;
	pthread_mutex_unlock(&stale_lock);
	return fired;
}

static void stale_disarm(dv_fetch_t *f)
{
	/* only the fetch's own thread adds its object: a 0 seen here means
	 * this fetch has none */
	if (__atomic_load_n(&stale_live, __ATOMIC_ACQUIRE) == 0)
		return;
	pthread_mutex_lock(&stale_lock);
	struct stale_timer **pp = stale_slot(f);
	struct stale_timer *st = *pp;
	if (st) {
		*pp = st->next;
		__atomic_sub_fetch(&stale_live, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&stale_lock);
	if (!st)
		return;
	ev_timer_stop(f->worker->loop, &st->timer);
	free(st);
}

static void fetch_free(dv_fetch_t *f)
{
	stale_disarm(f);
	dv_pool_fetch_cancel(f->worker->pool, f);
	free(f);
}

void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r)
{
	dv_worker_t *w = f->worker;
	fetch_unlink(f);
	if (w->cache)
		(void)dv_cache_store(w->cache, f->key, f->key_len, wire, len,
				     r, dv_now_s());
	dv_query_t *q = f->waiters;
	while (q) {
		dv_query_t *next = q->next;
		int n = dv_wire_answer(w->scratch, sizeof(w->scratch), wire,
				       len, r, q->wire, &q->view, 0,
				       q->answer_limit, 0xffff, NULL,
				       pad_for(q));
		if (n > 0)
			finish(q, w->scratch, (size_t)n);
		else
			reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
				    "unusable upstream answer");
		q = next;
	}
	fetch_free(f);
}

void dv_core_fetch_fail(dv_fetch_t *f, uint16_t ede, const char *text)
{
	dv_worker_t *w = f->worker;
	fetch_unlink(f);
	/*
	 * Remember the failure briefly so a broken name does not hammer the
	 * upstreams (a stale answer, if any, is kept and still wins).  Before
	 * answering: a client that asks again at once may reach another
	 * worker, which must find the mark.
	 */
	if (w->cache && w->cfg && w->cfg->cache_servfail_ttl_s && !w->draining)
		(void)dv_cache_store_servfail(w->cache, f->key, f->key_len, ede,
					      w->cfg->cache_servfail_ttl_s,
					      dv_now_s());
	/* serve-stale first (RFC 8767), SERVFAIL for the rest */
	dv_query_t *q = waiters_take(f);
	while (q) {
		dv_query_t *next = q->next;
		if (!serve_stale(q, f->key, f->key_len))
			reply_error(q, DV_RCODE_SERVFAIL, ede, text);
		q = next;
	}
	fetch_free(f);
}

/*
 * Prefetch: refresh a popular answer before it expires, through the
 * normal fetch path with no waiters (a fetch already in flight for the key
 * does it; queries that miss meanwhile join this one).  `q` supplies the
 * question; it is not kept.
 */
static void prefetch_start(dv_worker_t *w, const uint8_t *key,
			   size_t key_len, const dv_query_t *q)
{
	if (w->n_fetches >= w->cfg->max_inflight)
		return; /* busy: the entry just expires */
	uint64_t hash = key_hash(key, key_len);
	dv_fetch_t **pp = fetch_slot(w, hash, key, key_len);
	if (*pp)
		return;
	dv_fetch_t *f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->worker = w;
	f->hash = hash;
	memcpy(f->key, key, key_len);
	f->key_len = (uint16_t)key_len;
	int ret = dv_wire_upstream_query(f->qwire, sizeof(f->qwire), 0,
					 q->wire, &q->view);
	dv_require(ret > 0);
	f->qlen = (uint16_t)ret;
	f->ede = 0xffff;
	*pp = f;
	w->n_fetches++;
	DV_STAT_INC(&w->stats, prefetches);
	dv_pool_fetch_start(w->pool, f);
}

/* ---- submit ---- */

int dv_core_submit(dv_query_t *q)
{
	dv_worker_t *w = q->worker;
	int ret = dv_wire_parse_query(q->wire, q->len, &q->view);
	switch (ret) {
	case 0:
		break;
	case DV_ESHORT:
		DV_STAT_INC(&w->stats, dropped_short);
		dv_query_free(q);
		return ret;
	case DV_ENOTQUERY:
		DV_STAT_INC(&w->stats, dropped_response);
		dv_query_free(q);
		return ret;
	default: /* DV_EQDCOUNT, DV_EMALFORMED: the header is readable */
		DV_STAT_INC(&w->stats, queries);
		reply_error(q, DV_RCODE_FORMERR, 0xffff, NULL);
		return 0;
	}
	DV_STAT_INC(&w->stats, queries);
	const dv_config_t *cfg = w->cfg;
	q->start_ms = dv_worker_now_ms(w);
	q->deadline_ms = q->start_ms + cfg->query_timeout_ms;
	q->answer_limit = q->udp ? dv_wire_udp_limit(&q->view) : DV_DNS_MAX_MSG;

	if (DV_OPCODE(q->view.flags) != 0) {
		reply_error(q, DV_RCODE_NOTIMP, 0xffff, NULL);
		return 0;
	}
	if (q->view.has_opt && q->view.edns_version != 0) {
		reply_error(q, DV_RCODE_BADVERS, 0xffff, NULL);
		return 0;
	}

	uint8_t key[DV_WIRE_KEY_MAX];
	size_t key_len = dv_wire_key(key, q->wire, &q->view);
	bool has_stale = false;
	if (w->cache) {
		dv_cache_policy_t pol = cache_policy(cfg);
		unsigned cflags = 0;
		int n = dv_cache_lookup_ex(w->cache, key, key_len, dv_now_s(),
					   &pol, w->scratch,
					   sizeof(w->scratch), q->wire,
					   &q->view, q->answer_limit,
					   pad_for(q), &cflags);
		if (n > 0) {
			if (cflags & DV_CACHE_STALE) {
				DV_STAT_INC(&w->stats, stale_served);
			} else if (cflags & DV_CACHE_SERVFAIL) {
				DV_STAT_INC(&w->stats, servfail_cached);
				DV_STAT_INC(&w->stats, servfail);
			} else {
				DV_STAT_INC(&w->stats, cache_hits);
			}
			/* before finish() frees q; a fetch with no waiters
			 * never writes the scratch buffer holding the answer */
			if (cflags & DV_CACHE_PREFETCH)
				prefetch_start(w, key, key_len, q);
			finish(q, w->scratch, (size_t)n);
			return 0;
		}
		has_stale = cflags & DV_CACHE_HAS_STALE;
		DV_STAT_INC(&w->stats, cache_misses);
	}
	if (w->inflight > cfg->max_inflight) {
		DV_STAT_INC(&w->stats, overload);
		if (has_stale && serve_stale(q, key, key_len))
			return 0;
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
			    "dnsveil overloaded");
		return 0;
	}

	uint64_t hash = key_hash(key, key_len);
	dv_fetch_t **pp = fetch_slot(w, hash, key, key_len);
	if (*pp) {
		dv_fetch_t *f = *pp;
		/* the upstreams are already late for this key: stale now */
		if (has_stale && stale_fired(f) &&
		    serve_stale(q, key, key_len))
			return 0;
		DV_STAT_INC(&w->stats, coalesced);
		waiter_append(f, q);
		if (has_stale)
			stale_arm(f);
		return 0;
	}
	dv_fetch_t *f = calloc(1, sizeof(*f));
	if (!f) {
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER, "out of memory");
		return 0;
	}
	f->worker = w;
	f->hash = hash;
	memcpy(f->key, key, key_len);
	f->key_len = (uint16_t)key_len;
	ret = dv_wire_upstream_query(f->qwire, sizeof(f->qwire), 0, q->wire,
				     &q->view);
	dv_require(ret > 0);
	f->qlen = (uint16_t)ret;
	f->ede = 0xffff;
	waiter_append(f, q);
	*pp = f;
	w->n_fetches++;
	/* before the start: the pool may finish (and free) f within it */
	if (has_stale)
		stale_arm(f);
	dv_pool_fetch_start(w->pool, f);
	return 0;
}

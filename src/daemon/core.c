/*
 * The query lifecycle: validate, answer from the cache, coalesce identical
 * questions, hand the rest to the upstream pool, and deliver exactly one
 * answer per accepted query.
 */
#include "src/daemon/core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "src/core/cache.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"

#define QUERY_POOL_MAX 4096 /* free objects kept per worker */

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
	int n = dv_cache_lookup_stale(w->cache, key, key_len,
				      dv_timers_now_s(&w->timers),
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
 * cache.  The timer is the fetch's own (f->stale), armed through the
 * worker's runtime (src/core/timer.h); a fetch made without it (the
 * pool's health probes, the pool's unit tests) never arms it.
 */
static void stale_timer_cb(dv_timer_t *t)
{
	dv_fetch_t *f = t->data;
	f->stale_fired = true; /* later waiters get the stale answer at once */
	dv_query_t *q = waiters_take(f);
	while (q) {
		dv_query_t *next = q->next;
		if (!serve_stale(q, f->key, f->key_len))
			waiter_append(f, q); /* no stale answer after all */
		q = next;
	}
}

/* Start the timer for `f` unless it has one (running or fired).  Memory
 * short: no timer, the fetch just runs its course. */
static void stale_arm(dv_fetch_t *f)
{
	dv_worker_t *w = f->worker;
	const dv_config_t *cfg = w->cfg;
	if (!cfg || cfg->cache_stale_answer_timeout_ms == 0 ||
	    cfg->cache_stale_max_age_s == 0 || !w->timers.ops)
		return;
	if (f->stale.cb)
		return;
	dv_timer_init(&f->stale, stale_timer_cb, f);
	if (dv_timer_arm(&w->timers, &f->stale,
			 cfg->cache_stale_answer_timeout_ms) < 0) {
		dv_timer_cancel(&w->timers, &f->stale);
		f->stale.cb = NULL;
	}
}

static void fetch_free(dv_fetch_t *f)
{
	dv_worker_t *w = f->worker;
	dv_timer_cancel(&w->timers, &f->stale);
	w->pool_ops->fetch_cancel(w->pool, f);
	free(f);
}

void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r)
{
	dv_worker_t *w = f->worker;
	fetch_unlink(f);
	if (w->cache)
		(void)dv_cache_store(w->cache, f->key, f->key_len, wire, len,
				     r, dv_timers_now_s(&w->timers));
	dv_query_t *q = f->waiters;
	while (q) {
		dv_query_t *next = q->next;
		int n = dv_wire_answer(w->scratch, sizeof(w->scratch), wire,
				       len, r, q->wire, &q->view, 0,
				       q->answer_limit, 0xffff, NULL,
				       pad_for(q));
		/* the TTLs later hits will give (and DoH's max-age with them) */
		if (n > 0 && w->cache)
			(void)dv_cache_clamp_answer(w->cache, w->scratch,
						    (size_t)n);
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
					      dv_timers_now_s(&w->timers));
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

/* A new fetch for `key` (hash `hash`) asking `q`'s question, linked into
 * the coalescing table at `pp` (its empty slot), not started.  NULL when
 * memory is short. */
static dv_fetch_t *fetch_new(dv_worker_t *w, dv_fetch_t **pp, uint64_t hash,
			     const uint8_t *key, size_t key_len,
			     const dv_query_t *q)
{
	dv_fetch_t *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->worker = w;
	f->hash = hash;
	memcpy(f->key, key, key_len);
	f->key_len = (uint16_t)key_len;
	int ret = dv_wire_upstream_query(f->qwire, sizeof(f->qwire), 0,
					 q->wire, &q->view);
	dv_require(ret > 0);
	f->qlen = (uint16_t)ret;
	*pp = f;
	w->n_fetches++;
	return f;
}

/* Hand `f` to the pool, which answers through dv_core_fetch_answer() or
 * dv_core_fetch_fail(), possibly before this returns (and frees f). */
static void fetch_start(dv_worker_t *w, dv_fetch_t *f)
{
	w->pool_ops->fetch_start(w->pool, f);
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
	dv_fetch_t *f = fetch_new(w, pp, hash, key, key_len, q);
	if (!f)
		return;
	DV_STAT_INC(&w->stats, prefetches);
	fetch_start(w, f);
}

/* ---- the pipeline ----
 *
 * A query goes through the stages in order; each either answers it (and
 * so frees it) and returns DONE, or passes it on with what it learnt in
 * the pipe_t.  identity -> policy -> cache -> coalescing -> upstream.
 */

typedef enum { STAGE_NEXT, STAGE_DONE } stage_t;

typedef struct {
	uint8_t key[DV_WIRE_KEY_MAX]; /* the question's cache key */
	size_t key_len;
	bool has_stale;   /* the cache holds a stale answer for the key */
	uint64_t hash;    /* of the key, in the coalescing table */
	dv_fetch_t **pp;  /* the key's place in the coalescing table */
} pipe_t;

/*
 * Identity: what is asked, and (round 2) by whom.  Parses the message
 * (dropping what is not a query, FORMERR/NOTIMP/BADVERS for what cannot
 * be served), fixes the query's deadline and answer size and its cache
 * key.  Returns DV_ESHORT or DV_ENOTQUERY when `q` was dropped (and
 * freed), else 0 with *st saying whether `q` was answered.
 */
static int stage_identity(dv_query_t *q, pipe_t *p, stage_t *st)
{
	dv_worker_t *w = q->worker;
	*st = STAGE_DONE;
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
	q->start_ms = dv_timers_now_ms(&w->timers);
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
	p->key_len = dv_wire_key(p->key, q->wire, &q->view);
	*st = STAGE_NEXT;
	return 0;
}

/* Policy: refuse, block, rate-limit or answer locally.  Nothing yet: every
 * query passes (src/policy/ comes in round 2). */
static stage_t stage_policy(dv_query_t *q, pipe_t *p)
{
	(void)q;
	(void)p;
	return STAGE_NEXT;
}

/* The cache: a fresh (or stale-by-policy, or SERVFAIL-marked) answer
 * ends the query; a popular one about to expire is also prefetched. */
static stage_t stage_cache(dv_query_t *q, pipe_t *p)
{
	dv_worker_t *w = q->worker;
	if (!w->cache)
		return STAGE_NEXT;
	dv_cache_policy_t pol = cache_policy(w->cfg);
	unsigned cflags = 0;
	int n = dv_cache_lookup_ex(w->cache, p->key, p->key_len,
				   dv_timers_now_s(&w->timers), &pol,
				   w->scratch, sizeof(w->scratch), q->wire,
				   &q->view, q->answer_limit, pad_for(q),
				   &cflags);
	if (n > 0) {
		if (cflags & DV_CACHE_STALE) {
			DV_STAT_INC(&w->stats, stale_served);
		} else if (cflags & DV_CACHE_SERVFAIL) {
			DV_STAT_INC(&w->stats, servfail_cached);
			DV_STAT_INC(&w->stats, servfail);
		} else {
			DV_STAT_INC(&w->stats, cache_hits);
		}
		/* before finish() frees q; a fetch with no waiters never
		 * writes the scratch buffer holding the answer */
		if (cflags & DV_CACHE_PREFETCH)
			prefetch_start(w, p->key, p->key_len, q);
		finish(q, w->scratch, (size_t)n);
		return STAGE_DONE;
	}
	p->has_stale = cflags & DV_CACHE_HAS_STALE;
	DV_STAT_INC(&w->stats, cache_misses);
	return STAGE_NEXT;
}

/* Coalescing: past the worker's in-flight limit the query is refused
 * (stale if there is one); a fetch already in flight for the key takes it
 * as a waiter (or, when that fetch is already late, the stale answer). */
static stage_t stage_coalesce(dv_query_t *q, pipe_t *p)
{
	dv_worker_t *w = q->worker;
	if (w->inflight > w->cfg->max_inflight) {
		DV_STAT_INC(&w->stats, overload);
		if (p->has_stale && serve_stale(q, p->key, p->key_len))
			return STAGE_DONE;
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
			    "dnsveil overloaded");
		return STAGE_DONE;
	}
	p->hash = key_hash(p->key, p->key_len);
	p->pp = fetch_slot(w, p->hash, p->key, p->key_len);
	dv_fetch_t *f = *p->pp;
	if (!f)
		return STAGE_NEXT;
	/* the upstreams are already late for this key: stale now */
	if (p->has_stale && f->stale_fired &&
	    serve_stale(q, p->key, p->key_len))
		return STAGE_DONE;
	DV_STAT_INC(&w->stats, coalesced);
	waiter_append(f, q);
	if (p->has_stale)
		stale_arm(f);
	return STAGE_DONE;
}

/* Upstream: a new fetch with `q` its first waiter, handed to the pool. */
static void stage_upstream(dv_query_t *q, pipe_t *p)
{
	dv_worker_t *w = q->worker;
	dv_fetch_t *f = fetch_new(w, p->pp, p->hash, p->key, p->key_len, q);
	if (!f) {
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER, "out of memory");
		return;
	}
	waiter_append(f, q);
	/* before the start: the pool may finish (and free) f within it */
	if (p->has_stale)
		stale_arm(f);
	fetch_start(w, f);
}

int dv_core_submit(dv_query_t *q)
{
	pipe_t p;
	p.has_stale = false;
	stage_t st;
	int ret = stage_identity(q, &p, &st);
	if (ret < 0 || st == STAGE_DONE)
		return ret;
	if (stage_policy(q, &p) == STAGE_DONE ||
	    stage_cache(q, &p) == STAGE_DONE ||
	    stage_coalesce(q, &p) == STAGE_DONE)
		return 0;
	stage_upstream(q, &p);
	return 0;
}

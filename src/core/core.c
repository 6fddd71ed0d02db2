/*
 * The query core: the query lifecycle as a pipeline of stages (see "the
 * pipeline" below: identity, policy, cache, coalescing, upstream), the
 * fetches the upstream pool resolves for it, serve-stale, and exactly
 * one answer per accepted query.  No I/O: time and timers come through
 * c->timers, the pool through c->pool_ops, answers leave through each
 * query's reply hook.
 */
#include "src/core/core.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/cache.h"
#include "src/core/errors.h"
#include "src/core/log.h"

#define QUERY_POOL_MAX 4096 /* free objects kept per core */

/* ---- query objects ---- */

dv_query_t *dv_core_query_new(dv_core_t *c, const uint8_t *wire, size_t len)
{
	if (len > DV_DNS_MAX_MSG)
		return NULL;
	dv_query_t *q = NULL;
#ifndef DV_NOPOOL
	if (c->free_queries) {
		q = c->free_queries;
		c->free_queries = q->next;
		c->n_free_queries--;
	}
#endif
	if (!q) {
		q = malloc(sizeof(*q));
		if (!q)
			return NULL;
	}
	memset(q, 0, offsetof(dv_query_t, inline_buf));
	q->core = c;
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
	q->ident[0] = '\0';
	c->inflight++;
	return q;
}

void dv_query_free(dv_query_t *q)
{
	if (!q)
		return;
	dv_core_t *c = q->core;
	if (q->wire != q->inline_buf)
		free(q->wire);
	c->inflight--;
#ifndef DV_NOPOOL
	if (c->n_free_queries < QUERY_POOL_MAX) {
		q->next = c->free_queries;
		c->free_queries = q;
		c->n_free_queries++;
		return;
	}
#endif
	free(q);
}

/* ---- the core object ---- */

int dv_core_init(dv_core_t *c, const dv_core_conf_t *conf,
		 const dv_timers_t *timers, dv_cache_t *cache,
		 dv_stats_t *stats)
{
	memset(c, 0, offsetof(dv_core_t, scratch));
	c->conf = *conf;
	c->timers = *timers;
	c->cache = cache;
	c->stats = stats;
	/* about one bucket per query the core may hold */
	unsigned buckets = 64;
	while (buckets < conf->max_inflight && buckets < (1u << 20))
		buckets <<= 1;
	c->fetches = calloc(buckets, sizeof(*c->fetches));
	if (!c->fetches)
		return -ENOMEM;
	c->fetch_mask = buckets - 1;
	return 0;
}

void dv_core_set_pool(dv_core_t *c, void *pool,
		      const dv_core_pool_ops_t *ops)
{
	dv_core_set_pools(c, &pool, 1, ops);
}

void dv_core_set_pools(dv_core_t *c, void *const *pools, unsigned n,
		       const dv_core_pool_ops_t *ops)
{
	dv_require(n >= 1 && n <= DV_CORE_MAX_SETS);
	memcpy(c->pools, pools, n * sizeof(*pools));
	c->n_pools = n;
	c->pool_ops = ops;
}

void dv_core_set_policy(dv_core_t *c, void *policy,
			const dv_core_policy_ops_t *ops)
{
	c->policy = policy;
	c->policy_ops = ops;
}

void dv_core_set_log(dv_core_t *c, void *log, const dv_core_log_ops_t *ops)
{
	c->log = log;
	c->log_ops = ops;
}

void dv_core_fail_all(dv_core_t *c, uint16_t ede, const char *text)
{
	for (unsigned i = 0; c->fetches && i <= c->fetch_mask; i++)
		while (c->fetches[i])
			dv_core_fetch_fail(c->fetches[i], ede, text);
}

void dv_core_deinit(dv_core_t *c)
{
	dv_require(c->n_fetches == 0);
	free(c->fetches);
	c->fetches = NULL;
	while (c->free_queries) {
		dv_query_t *q = c->free_queries;
		c->free_queries = q->next;
		free(q);
	}
	c->n_free_queries = 0;
}

/* ---- answering ---- */

/* The answer's metrics: by transport and rcode `rc`, and its latency by
 * where it came from.  Returns the time it took (now, in µs). */
static uint64_t count_answer(dv_query_t *q, dv_rc_t rc)
{
	dv_core_t *c = q->core;
	dv_metrics_t *m = &c->metrics;
	unsigned t = q->transport < DV_SCHEME_COUNT ? q->transport : 0;
	unsigned src = q->source < DV_SRC_COUNT ? q->source : DV_SRC_LOCAL;
	DV_METRIC_INC(&m->answers[t][rc]);
	uint64_t now = dv_timers_now_us(&c->timers);
	dv_lat_observe(&m->latency[t][src],
		       now > q->start_us ? now - q->start_us : 0);
	return now;
}

static void finish_rc(dv_query_t *q, const uint8_t *wire, size_t len,
		      dv_rc_t rc)
{
	dv_core_t *c = q->core;
	uint64_t now = count_answer(q, rc);
	DV_STAT_INC(c->stats, answers);
	if (q->udp && len >= 4 && (wire[2] & 0x02))
		DV_STAT_INC(c->stats, truncated);
	if (c->log_ops)
		c->log_ops->answered(c->log, q, wire, len, now);
	q->reply(q, wire, len);
	dv_query_free(q);
}

static void finish(dv_query_t *q, const uint8_t *wire, size_t len)
{
	finish_rc(q, wire, len, len >= 4 ? dv_rc_of(wire[3] & 0x0f) : DV_RC_OTHER);
}

/*
 * RFC 8484 5.1: the freshness of the answer `r` describes: its smallest
 * TTL, a negative answer's no longer than its SOA (RFC 2308: min(SOA TTL,
 * SOA MINIMUM)); 0 for other rcodes and for an answer without records.
 */
static uint32_t resp_ttl(const dv_wire_resp_t *r)
{
	uint8_t rcode = DV_RCODE(r->flags);
	if (rcode != DV_RCODE_NOERROR && rcode != DV_RCODE_NXDOMAIN)
		return 0;
	uint32_t ttl = r->min_ttl;
	if (r->negative && r->neg_ttl < ttl)
		ttl = r->neg_ttl;
	return ttl == UINT32_MAX ? 0 : ttl;
}

/* The same for an answer the core did not build itself (the policy's):
 * parsed, and only for a query whose transport wants it (DoH). */
static void set_ttl_parsed(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_wire_resp_t r;
	q->answer_ttl = 0;
	if (!q->want_ttl)
		return;
	int ret = dv_wire_parse_response(wire, len, &r);
	if ((ret == 0 || ret == DV_ELIMIT) && !(r.flags & DV_FLAG_TC))
		q->answer_ttl = resp_ttl(&r);
}

static unsigned pad_for(const dv_query_t *q)
{
	return q->view.edns_padding ? q->pad_block : 0;
}

static void reply_error(dv_query_t *q, uint8_t rcode, uint16_t ede,
			const char *text)
{
	dv_core_t *c = q->core;
	int len = dv_wire_error(c->scratch, sizeof(c->scratch), q->wire,
				&q->view, rcode, ede, text, pad_for(q));
	dv_require(len > 0); /* the scratch buffer fits any error answer */
	q->answer_ttl = 0;
	switch (rcode) {
	case DV_RCODE_FORMERR:
		DV_STAT_INC(c->stats, formerr);
		break;
	case DV_RCODE_NOTIMP:
		DV_STAT_INC(c->stats, notimp);
		break;
	case DV_RCODE_SERVFAIL:
		DV_STAT_INC(c->stats, servfail);
		break;
	case DV_RCODE_REFUSED:
		DV_STAT_INC(c->stats, refused);
		break;
	default:
		DV_STAT_INC(c->stats, badvers);
		finish_rc(q, c->scratch, (size_t)len, DV_RC_BADVERS);
		return;
	}
	finish(q, c->scratch, (size_t)len);
}

/* ---- coalescing table ---- */

/* FNV-1a, seeded (conf.hash_seed, random in the daemon) so a client
 * cannot aim many questions at one chain of the coalescing table. */
static uint64_t key_hash(const dv_core_t *c, const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ c->conf.hash_seed;
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static dv_fetch_t **fetch_slot(dv_core_t *c, uint64_t hash,
			       const uint8_t *key, size_t key_len)
{
	dv_fetch_t **pp = &c->fetches[hash & c->fetch_mask];
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
	dv_core_t *c = f->core;
	dv_fetch_t **pp = fetch_slot(c, f->hash, f->key, f->key_len);
	dv_require(*pp == f);
	*pp = f->hnext;
	c->n_fetches--;
}

/* ---- waiters ---- */

static void waiter_append(dv_fetch_t *f, dv_query_t *q)
{
	q->source = DV_SRC_UPSTREAM;
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

static dv_cache_policy_t cache_policy(const dv_core_conf_t *conf)
{
	return (dv_cache_policy_t){
		.stale_max_age = conf->stale_max_age_s,
		.prefetch_hits = conf->prefetch_hits,
		.prefetch_window_pct = conf->prefetch_window_pct,
	};
}

/*
 * Answer `q` with the stale answer for the fetch's key, if the cache has
 * one inside the window.  Returns true when `q` was answered (and freed).
 */
static bool serve_stale(dv_query_t *q, const uint8_t *key, size_t key_len)
{
	dv_core_t *c = q->core;
	unsigned flags = 0;
	if (!c->cache || c->conf.stale_max_age_s == 0)
		return false;
	int n = dv_cache_lookup_stale(c->cache, key, key_len,
				      dv_timers_now_s(&c->timers),
				      c->conf.stale_max_age_s,
				      c->scratch, sizeof(c->scratch), q->wire,
				      &q->view, q->answer_limit, pad_for(q),
				      &flags, &q->answer_ttl);
	if (n <= 0)
		return false;
	if (q->source == DV_SRC_LOCAL)
		q->source = DV_SRC_CACHE;
	if (flags & DV_CACHE_STALE) {
		q->stale = true;
		DV_STAT_INC(c->stats, stale_served);
	} else {
		DV_STAT_INC(c->stats, cache_hits); /* refreshed meanwhile */
	}
	finish(q, c->scratch, (size_t)n);
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
	dv_core_t *c = f->core;
	const dv_core_conf_t *conf = &c->conf;
	if (conf->stale_answer_timeout_ms == 0 ||
	    conf->stale_max_age_s == 0 || !c->timers.ops)
		return;
	if (f->stale.cb)
		return;
	dv_timer_init(&f->stale, stale_timer_cb, f);
	if (dv_timer_arm(&c->timers, &f->stale,
			 conf->stale_answer_timeout_ms) < 0) {
		dv_timer_cancel(&c->timers, &f->stale);
		f->stale.cb = NULL;
	}
}

static void fetch_free(dv_fetch_t *f)
{
	dv_core_t *c = f->core;
	dv_timer_cancel(&c->timers, &f->stale);
	c->pool_ops->fetch_cancel(c->pools[f->upstream_set], f);
	free(f);
}

void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r)
{
	dv_core_t *c = f->core;
	fetch_unlink(f);
	if (c->cache)
		(void)dv_cache_store(c->cache, f->key, f->key_len, wire, len,
				     r, dv_timers_now_s(&c->timers));
	dv_query_t *q = f->waiters;
	while (q) {
		dv_query_t *next = q->next;
		q->upstream = f->upstream;
		int n = dv_wire_answer(c->scratch, sizeof(c->scratch), wire,
				       len, r, q->wire, &q->view, 0,
				       q->answer_limit, 0xffff, NULL,
				       pad_for(q));
		/* the TTLs later hits will give (and DoH's max-age with
		 * them); unclamped (no cache, other rcodes, too many
		 * records): the upstream's own */
		q->answer_ttl = resp_ttl(r);
		if (n > 0 && c->cache)
			(void)dv_cache_clamp_answer(c->cache, c->scratch,
						    (size_t)n, &q->answer_ttl);
		if (n > 0 && (dv_get16(c->scratch + 2) & DV_FLAG_TC))
			q->answer_ttl = 0;
		if (n > 0)
			finish(q, c->scratch, (size_t)n);
		else
			reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
				    "unusable upstream answer");
		q = next;
	}
	fetch_free(f);
}

void dv_core_fetch_fail(dv_fetch_t *f, uint16_t ede, const char *text)
{
	dv_core_t *c = f->core;
	fetch_unlink(f);
	/*
	 * Remember the failure briefly so a broken name does not hammer the
	 * upstreams (a stale answer, if any, is kept and still wins).  Before
	 * answering: a client that asks again at once may reach another
	 * worker, which must find the mark.
	 */
	if (c->cache && c->conf.servfail_ttl_s && !c->draining)
		(void)dv_cache_store_servfail(c->cache, f->key, f->key_len, ede,
					      c->conf.servfail_ttl_s,
					      dv_timers_now_s(&c->timers));
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
static dv_fetch_t *fetch_new(dv_core_t *c, dv_fetch_t **pp, uint64_t hash,
			     const uint8_t *key, size_t key_len,
			     const dv_query_t *q)
{
	dv_fetch_t *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->core = c;
	f->hash = hash;
	memcpy(f->key, key, key_len);
	f->key_len = (uint16_t)key_len;
	int ret = dv_wire_upstream_query(f->qwire, sizeof(f->qwire), 0,
					 q->wire, &q->view);
	dv_require(ret > 0);
	f->qlen = (uint16_t)ret;
	f->local_only = c->policy_ops && c->policy_ops->local_only &&
			c->policy_ops->local_only(c->policy, q);
	f->upstream_set = q->upstream_set; /* < c->n_pools: stage_policy */
	*pp = f;
	c->n_fetches++;
	return f;
}

/* Hand `f` to the pool, which answers through dv_core_fetch_answer() or
 * dv_core_fetch_fail(), possibly before this returns (and frees f). */
static void fetch_start(dv_core_t *c, dv_fetch_t *f)
{
	c->pool_ops->fetch_start(c->pools[f->upstream_set], f);
}

/*
 * Prefetch: refresh a popular answer before it expires, through the
 * normal fetch path with no waiters (a fetch already in flight for the key
 * does it; queries that miss meanwhile join this one).  `q` supplies the
 * question; it is not kept.
 */
static void prefetch_start(dv_core_t *c, const uint8_t *key,
			   size_t key_len, const dv_query_t *q)
{
	if (c->n_fetches >= c->conf.max_inflight)
		return; /* busy: the entry just expires */
	uint64_t hash = key_hash(c, key, key_len);
	dv_fetch_t **pp = fetch_slot(c, hash, key, key_len);
	if (*pp)
		return;
	dv_fetch_t *f = fetch_new(c, pp, hash, key, key_len, q);
	if (!f)
		return;
	DV_STAT_INC(c->stats, prefetches);
	fetch_start(c, f);
}

/* ---- the pipeline ----
 *
 * A query goes through the stages of `stages` below, in order:
 *
 *   identity    parse and validate; who asks (round 2: the client's group)
 *   policy      refuse, block (src/policy/ through an ops table); later
 *               rate-limit, answer locally
 *   cache       fresh, stale-by-policy or SERVFAIL-marked answers; prefetch
 *   coalescing  the in-flight limit; join a fetch in flight for the key
 *   upstream    a new fetch for the key, handed to the pool
 *
 * Each stage answers the query (and so frees it) or makes it the waiter
 * of a fetch and returns STAGE_DONE, drops it (freed, unanswered: only
 * identity, for what is not a DNS query, and policy, for a UDP query
 * over a rate limit that drops) and returns STAGE_DROP with the
 * reason in p->drop, or passes it on with what it learnt in the pipe_t
 * (STAGE_NEXT).  The last stage takes every query.
 */

typedef enum { STAGE_NEXT, STAGE_DONE, STAGE_DROP } stage_t;

typedef struct {
	uint8_t key[DV_WIRE_KEY_MAX]; /* the question's cache key */
	size_t key_len;
	bool has_stale;   /* the cache holds a stale answer for the key */
	uint64_t hash;    /* of the key, in the coalescing table */
	dv_fetch_t **pp;  /* the key's place in the coalescing table */
	int drop;         /* STAGE_DROP: DV_ESHORT, DV_ENOTQUERY, DV_ELIMIT */
} pipe_t;

typedef stage_t (*stage_fn)(dv_query_t *q, pipe_t *p);

/*
 * Identity: what is asked, and (round 2) by whom.  Parses the message
 * (dropping what is not a query, FORMERR/NOTIMP/BADVERS for what cannot
 * be served), fixes the query's deadline and answer size and its cache
 * key.
 */
static stage_t stage_identity(dv_query_t *q, pipe_t *p)
{
	dv_core_t *c = q->core;
	dv_metrics_t *m = &c->metrics;
	unsigned t = q->transport < DV_SCHEME_COUNT ? q->transport : 0;
	q->start_us = dv_timers_now_us(&c->timers);
	int ret = dv_wire_parse_query(q->wire, q->len, &q->view);
	switch (ret) {
	case 0:
		break;
	case DV_ESHORT:
		DV_STAT_INC(c->stats, dropped_short);
		dv_query_free(q);
		p->drop = ret;
		return STAGE_DROP;
	case DV_ENOTQUERY:
		DV_STAT_INC(c->stats, dropped_response);
		dv_query_free(q);
		p->drop = ret;
		return STAGE_DROP;
	default: /* DV_EQDCOUNT, DV_EMALFORMED: the header is readable */
		DV_STAT_INC(c->stats, queries);
		DV_METRIC_INC(&m->queries[t]);
		reply_error(q, DV_RCODE_FORMERR, 0xffff, NULL);
		return STAGE_DONE;
	}
	DV_STAT_INC(c->stats, queries);
	DV_METRIC_INC(&m->queries[t]);
	if (q->view.has_opt)
		dv_edns_observe(&m->edns_size, q->view.edns_udp_size);
	else
		DV_METRIC_INC(&m->no_edns);
	if (c->log_ops) {
		/* the DoH and certificate client IDs live only as long
		 * as the submit */
		q->log_ident = true;
		const char *id = q->cert_id ? q->cert_id : q->client_id;
		if (id)
			snprintf(q->ident, sizeof(q->ident), "%s", id);
	}
	q->start_ms = q->start_us / 1000;
	q->deadline_ms = q->start_ms + c->conf.query_timeout_ms;
	q->answer_limit = q->udp ? dv_wire_udp_limit(&q->view) : DV_DNS_MAX_MSG;

	if (DV_OPCODE(q->view.flags) != 0) {
		reply_error(q, DV_RCODE_NOTIMP, 0xffff, NULL);
		return STAGE_DONE;
	}
	if (q->view.has_opt && q->view.edns_version != 0) {
		reply_error(q, DV_RCODE_BADVERS, 0xffff, NULL);
		return STAGE_DONE;
	}
	p->key_len = dv_wire_key(p->key, q->wire, &q->view);
	return STAGE_NEXT;
}
/* Policy: refuse or block (src/policy/, through c->policy_ops), before
 * the cache: a blocked answer is made here for this client and never
 * stored in the shared cache.  A query that passes carries its group's
 * upstream set (q->upstream_set), which ends its cache key: answers
 * from different resolver sets never meet in the cache or in one
 * coalesced fetch, and set 0 keeps the plain key. */
static stage_t stage_policy(dv_query_t *q, pipe_t *p)
{
	dv_core_t *c = q->core;
	if (!c->policy_ops)
		return STAGE_NEXT;
	int n = c->policy_ops->decide(c->policy, q, c->scratch,
				      sizeof(c->scratch), pad_for(q));
	if (n == DV_ELIMIT) { /* over a rate limit: no answer at all */
		dv_query_free(q);
		p->drop = n;
		return STAGE_DROP;
	}
	if (n <= 0) {
		if (q->upstream_set >= c->n_pools) /* no pool: cannot be */
			q->upstream_set = 0;
		if (q->upstream_set)
			p->key[p->key_len++] = q->upstream_set;
		return STAGE_NEXT;
	}
	if (DV_RCODE(dv_get16(c->scratch + 2)) == DV_RCODE_REFUSED)
		DV_STAT_INC(c->stats, refused);
	set_ttl_parsed(q, c->scratch, (size_t)n);
	finish(q, c->scratch, (size_t)n);
	return STAGE_DONE;
}

/* The cache: a fresh (or stale-by-policy, or SERVFAIL-marked) answer
 * ends the query; a popular one about to expire is also prefetched. */
static stage_t stage_cache(dv_query_t *q, pipe_t *p)
{
	dv_core_t *c = q->core;
	if (!c->cache)
		return STAGE_NEXT;
	dv_cache_policy_t pol = cache_policy(&c->conf);
	unsigned cflags = 0;
	int n = dv_cache_lookup_ex(c->cache, p->key, p->key_len,
				   dv_timers_now_s(&c->timers), &pol,
				   c->scratch, sizeof(c->scratch), q->wire,
				   &q->view, q->answer_limit, pad_for(q),
				   &cflags, &q->answer_ttl);
	if (n > 0) {
		if (cflags & DV_CACHE_STALE) {
			q->stale = true;
			DV_STAT_INC(c->stats, stale_served);
		} else if (cflags & DV_CACHE_SERVFAIL) {
			DV_STAT_INC(c->stats, servfail_cached);
			DV_STAT_INC(c->stats, servfail);
		} else {
			DV_STAT_INC(c->stats, cache_hits);
		}
		q->source = DV_SRC_CACHE;
		/* before finish() frees q; a fetch with no waiters never
		 * writes the scratch buffer holding the answer */
		if (cflags & DV_CACHE_PREFETCH)
			prefetch_start(c, p->key, p->key_len, q);
		finish(q, c->scratch, (size_t)n);
		return STAGE_DONE;
	}
	p->has_stale = cflags & DV_CACHE_HAS_STALE;
	DV_STAT_INC(c->stats, cache_misses);
	return STAGE_NEXT;
}

/* Coalescing: past the core's in-flight limit the query is refused
 * (stale if there is one); a fetch already in flight for the key takes it
 * as a waiter (or, when that fetch is already late, the stale answer). */
static stage_t stage_coalesce(dv_query_t *q, pipe_t *p)
{
	dv_core_t *c = q->core;
	if (c->inflight > c->conf.max_inflight) {
		DV_STAT_INC(c->stats, overload);
		if (p->has_stale && serve_stale(q, p->key, p->key_len))
			return STAGE_DONE;
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
			    "dnsveil overloaded");
		return STAGE_DONE;
	}
	p->hash = key_hash(c, p->key, p->key_len);
	p->pp = fetch_slot(c, p->hash, p->key, p->key_len);
	dv_fetch_t *f = *p->pp;
	if (!f)
		return STAGE_NEXT;
	/* the upstreams are already late for this key: stale now */
	if (p->has_stale && f->stale_fired &&
	    serve_stale(q, p->key, p->key_len))
		return STAGE_DONE;
	DV_STAT_INC(c->stats, coalesced);
	waiter_append(f, q);
	if (p->has_stale)
		stale_arm(f);
	return STAGE_DONE;
}

/* Upstream: a new fetch with `q` its first waiter, handed to the pool. */
static stage_t stage_upstream(dv_query_t *q, pipe_t *p)
{
	dv_core_t *c = q->core;
	dv_fetch_t *f = fetch_new(c, p->pp, p->hash, p->key, p->key_len, q);
	if (!f) {
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER, "out of memory");
		return STAGE_DONE;
	}
	waiter_append(f, q);
	/* before the start: the pool may finish (and free) f within it */
	if (p->has_stale)
		stale_arm(f);
	fetch_start(c, f);
	return STAGE_DONE;
}

/* The pipeline, in order (see its note above). */
static const stage_fn stages[] = {
	stage_identity, stage_policy, stage_cache, stage_coalesce,
	stage_upstream,
};

int dv_core_submit(dv_query_t *q)
{
	pipe_t p;
	p.has_stale = false;
	p.drop = 0;
	stage_t st = STAGE_NEXT;
	for (size_t i = 0; st == STAGE_NEXT; i++) {
		/* the last stage takes every query */
		dv_require(i < sizeof(stages) / sizeof(stages[0]));
		st = stages[i](q, &p);
	}
	return st == STAGE_DROP ? p.drop : 0;
}

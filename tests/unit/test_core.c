/*
 * The query core's lifecycle on a fake clock, fake timers and a fake
 * upstream pool: no loop, no socket, no worker and no config (this test
 * links only dv_core).  The core is set up as a worker sets it up
 * (dv_core_init, dv_core_set_pool) with the runtime of src/core/timer.h
 * and the pool table of core.h replaced by the fakes below; the test
 * plays the pool by calling dv_core_fetch_answer() and
 * dv_core_fetch_fail() on the fetches the core started (or, in "at once"
 * mode, from inside fetch_start, as a pool that fails before it sends).
 *
 * Every test checks that each accepted query got exactly one reply and
 * that nothing is left at the end: no query in flight, no fetch, no timer
 * armed or holding runtime memory (and, in the ASan build, no leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/cache.h"
#include "src/core/core.h"
#include "src/core/errors.h"
#include "src/core/stats.h"
#include "src/core/timer.h"
#include "src/core/wire.h"

/* ---- fake clock and timers ---- */

#define MAX_TIMERS 8

typedef struct {
	uint64_t now_ms;
	dv_timer_t *t[MAX_TIMERS]; /* holding runtime state (impl) */
	uint64_t due[MAX_TIMERS];
} fake_rt_t;

static uint64_t fake_now_ms(void *ctx)
{
	return ((fake_rt_t *)ctx)->now_ms;
}

static uint32_t fake_now_s(void *ctx)
{
	return (uint32_t)(((fake_rt_t *)ctx)->now_ms / 1000);
}

static int fake_slot(fake_rt_t *rt, const dv_timer_t *t)
{
	for (int i = 0; i < MAX_TIMERS; i++)
		if (rt->t[i] == t)
			return i;
	return -1;
}

static int fake_arm(void *ctx, dv_timer_t *t, uint64_t after_ms)
{
	fake_rt_t *rt = ctx;
	int i = fake_slot(rt, t);
	if (i < 0)
		i = fake_slot(rt, NULL);
	assert_true(i >= 0);
	rt->t[i] = t;
	rt->due[i] = rt->now_ms + after_ms;
	t->impl = rt;
	t->armed = true;
	return 0;
}

static void fake_cancel(void *ctx, dv_timer_t *t)
{
	fake_rt_t *rt = ctx;
	int i = fake_slot(rt, t);
	if (i >= 0)
		rt->t[i] = NULL;
	t->impl = NULL;
	t->armed = false;
}

static const dv_timer_ops_t fake_timer_ops = {
	.now_ms = fake_now_ms,
	.now_s = fake_now_s,
	.arm = fake_arm,
	.cancel = fake_cancel,
};

static unsigned timers_held(const fake_rt_t *rt)
{
	unsigned n = 0;
	for (int i = 0; i < MAX_TIMERS; i++)
		n += rt->t[i] != NULL;
	return n;
}

static unsigned timers_armed(const fake_rt_t *rt)
{
	unsigned n = 0;
	for (int i = 0; i < MAX_TIMERS; i++)
		n += rt->t[i] && rt->t[i]->armed;
	return n;
}

/* Move the clock on by `ms`, firing what falls due, in order. */
static void advance(fake_rt_t *rt, uint64_t ms)
{
	uint64_t end = rt->now_ms + ms;
	for (;;) {
		int next = -1;
		for (int i = 0; i < MAX_TIMERS; i++)
			if (rt->t[i] && rt->t[i]->armed && rt->due[i] <= end &&
			    (next < 0 || rt->due[i] < rt->due[next]))
				next = i;
		if (next < 0)
			break;
		rt->now_ms = rt->due[next];
		dv_timer_t *t = rt->t[next];
		t->armed = false; /* one-shot; the runtime part stays */
		t->cb(t);
	}
	rt->now_ms = end;
}

/* ---- fake pool ---- */

#define MAX_FETCHES 8

/* What the fake pool does inside fetch_start: keep the fetch for the
 * test to answer, or end it before fetch_start returns. */
typedef enum { POOL_KEEP, POOL_FAIL_AT_ONCE, POOL_ANSWER_AT_ONCE } pool_mode_t;

typedef struct {
	dv_fetch_t *live[MAX_FETCHES];
	unsigned started, cancelled;
	pool_mode_t mode;
} fake_pool_t;

static void pool_answers(dv_fetch_t *f, uint8_t rcode, uint32_t ttl,
			 uint32_t minimum);

static void fake_fetch_start(void *pool, dv_fetch_t *f)
{
	fake_pool_t *p = pool;
	for (int i = 0; i < MAX_FETCHES; i++) {
		if (!p->live[i]) {
			p->live[i] = f;
			p->started++;
			if (p->mode == POOL_FAIL_AT_ONCE)
				dv_core_fetch_fail(f, DV_EDE_NETWORK_ERROR,
						   "no upstream reachable");
			else if (p->mode == POOL_ANSWER_AT_ONCE)
				pool_answers(f, DV_RCODE_NOERROR, 60, 0);
			return;
		}
	}
	fail_msg("too many fetches");
}

static void fake_fetch_cancel(void *pool, dv_fetch_t *f)
{
	fake_pool_t *p = pool;
	for (int i = 0; i < MAX_FETCHES; i++) {
		if (p->live[i] == f) {
			p->live[i] = NULL;
			p->cancelled++;
			return;
		}
	}
	fail_msg("cancel of a fetch the pool does not have");
}

static const dv_core_pool_ops_t fake_pool_ops = {
	.fetch_start = fake_fetch_start,
	.fetch_cancel = fake_fetch_cancel,
};

static unsigned fetches_live(const fake_pool_t *p)
{
	unsigned n = 0;
	for (int i = 0; i < MAX_FETCHES; i++)
		n += p->live[i] != NULL;
	return n;
}

/* The one fetch in flight. */
static dv_fetch_t *the_fetch(const fake_pool_t *p)
{
	dv_fetch_t *f = NULL;
	for (int i = 0; i < MAX_FETCHES; i++) {
		if (p->live[i]) {
			assert_null(f);
			f = p->live[i];
		}
	}
	assert_non_null(f);
	return f;
}

/* ---- clients ---- */

#define MAX_CLIENTS 8

typedef struct {
	unsigned replies;
	bool dropped; /* the core dropped its query: no reply */
	uint8_t wire[1024];
	size_t len;
} client_t;

typedef struct {
	dv_core_t *c; /* on the heap: the scratch buffer is 64 KiB */
	dv_stats_t stats;
	dv_cache_t *cache;
	fake_rt_t rt;
	fake_pool_t pool;
	client_t cl[MAX_CLIENTS];
	unsigned n_cl;
} fixture_t;

static void on_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	client_t *cl = q->conn;
	assert_int_equal(cl->replies, 0); /* exactly one reply */
	cl->replies++;
	assert_true(len <= sizeof(cl->wire));
	memcpy(cl->wire, wire, len);
	cl->len = len;
}

/* Hand `wire` to the core as client `cl`'s query; what submit says. */
static int submit(fixture_t *fx, client_t *cl, const uint8_t *wire,
		  size_t len)
{
	dv_query_t *q = dv_core_query_new(fx->c, wire, len);
	assert_non_null(q);
	q->reply = on_reply;
	q->conn = cl;
	q->transport = DV_SCHEME_TLS;
	return dv_core_submit(q);
}

static client_t *new_client(fixture_t *fx)
{
	assert_true(fx->n_cl < MAX_CLIENTS);
	return &fx->cl[fx->n_cl++];
}

/* A query for `name` (wire form) / `type`, id `id`, with an EDNS OPT when
 * `edns`, into `w`; its length. */
static size_t make_query(uint8_t *w, const char *name, size_t name_len,
			 uint16_t type, uint16_t id, bool edns)
{
	memset(w, 0, DV_DNS_HDR);
	dv_put16(w, id);
	dv_put16(w + 2, DV_FLAG_RD);
	dv_put16(w + 4, 1);
	dv_put16(w + 10, edns ? 1 : 0);
	size_t pos = DV_DNS_HDR;
	memcpy(w + pos, name, name_len);
	pos += name_len;
	dv_put16(w + pos, type);
	dv_put16(w + pos + 2, DV_CLASS_IN);
	pos += 4;
	if (edns) {
		w[pos] = 0;
		dv_put16(w + pos + 1, DV_TYPE_OPT);
		dv_put16(w + pos + 3, 1232);
		dv_put32(w + pos + 5, 0); /* version 0, no DO */
		dv_put16(w + pos + 9, 0); /* no options */
		pos += 11;
	}
	return pos;
}

/* That query, asked by a new client.  Returns the client. */
static client_t *ask(fixture_t *fx, const char *name, size_t name_len,
		     uint16_t type, uint16_t id, bool edns)
{
	uint8_t w[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11] = {0};
	size_t len = make_query(w, name, name_len, type, id, edns);
	client_t *cl = new_client(fx);
	assert_int_equal(submit(fx, cl, w, len), 0);
	return cl;
}

#define WWW "\3www\7example\4test" /* + the root label */
#define WWW_LEN 18
#define NX "\2nx\7example\4test"
#define NX_LEN 17

/* The upstream's answer to fetch `f`: its question, then (rcode NOERROR)
 * one A record with `ttl`, or (NXDOMAIN) a SOA in the authority section
 * with TTL `ttl` and MINIMUM `minimum`. */
static size_t upstream_answer(uint8_t *a, const dv_fetch_t *f,
			      uint8_t rcode, uint32_t ttl, uint32_t minimum)
{
	dv_wire_query_t v;
	assert_int_equal(dv_wire_parse_query(f->qwire, f->qlen, &v), 0);
	size_t pos = v.question_end;
	memcpy(a, f->qwire, pos);
	dv_put16(a + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA | rcode);
	dv_put16(a + 6, rcode == DV_RCODE_NOERROR ? 1 : 0);
	dv_put16(a + 8, rcode == DV_RCODE_NOERROR ? 0 : 1);
	dv_put16(a + 10, 0);
	dv_put16(a + pos, 0xc00c);
	dv_put16(a + pos + 2,
		 rcode == DV_RCODE_NOERROR ? DV_TYPE_A : DV_TYPE_SOA);
	dv_put16(a + pos + 4, DV_CLASS_IN);
	dv_put32(a + pos + 6, ttl);
	pos += 10;
	if (rcode == DV_RCODE_NOERROR) {
		dv_put16(a + pos, 4);
		memcpy(a + pos + 2, "\xc0\x00\x02\x01", 4);
		return pos + 6;
	}
	/* ". . serial refresh retry expire minimum" */
	dv_put16(a + pos, 22);
	memset(a + pos + 2, 0, 22);
	dv_put32(a + pos + 2 + 18, minimum);
	return pos + 24;
}

static void pool_answers(dv_fetch_t *f, uint8_t rcode, uint32_t ttl,
			 uint32_t minimum)
{
	uint8_t a[512];
	size_t len = upstream_answer(a, f, rcode, ttl, minimum);
	dv_wire_resp_t r;
	assert_int_equal(dv_wire_parse_response(a, len, &r), 0);
	dv_core_fetch_answer(f, a, len, &r);
}

/* What a client got. */
static dv_wire_resp_t reply_of(const client_t *cl)
{
	dv_wire_resp_t r;
	assert_int_equal(cl->replies, 1);
	int ret = dv_wire_parse_response(cl->wire, cl->len, &r);
	assert_true(ret == 0 || ret == DV_ELIMIT);
	return r;
}

static uint32_t first_ttl(const client_t *cl)
{
	dv_wire_resp_t r = reply_of(cl);
	assert_true(r.n_ttl >= 1);
	return dv_get32(cl->wire + r.ttl_off[0]);
}

/* ---- set-up ---- */

static int setup(void **state)
{
	fixture_t *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->rt.now_ms = 5000000; /* the cache's clock in s: not near 0 */
	dv_cache_opts_t co = {.size_bytes = 1 << 20,
			      .shards = 1,
			      .min_ttl = 0,
			      .max_ttl = 86400,
			      .negative_max_ttl = 3600};
	fx->cache = dv_cache_new(&co);
	assert_non_null(fx->cache);
	/* as the worker fills it from the config defaults, with serve-stale
	 * on and no prefetch */
	dv_core_conf_t conf = {
		.max_inflight = 64,
		.query_timeout_ms = 3000,
		.stale_max_age_s = 3600,
		.stale_answer_timeout_ms = 1800,
		.servfail_ttl_s = 0,
		.prefetch_hits = 0,
		.prefetch_window_pct = 10,
		.hash_seed = 0x5eed,
	};
	dv_timers_t rt = {.ops = &fake_timer_ops, .ctx = &fx->rt};
	fx->c = malloc(sizeof(*fx->c));
	assert_non_null(fx->c);
	assert_int_equal(dv_core_init(fx->c, &conf, &rt, fx->cache,
				      &fx->stats),
			 0);
	dv_core_set_pool(fx->c, &fx->pool, &fake_pool_ops);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *fx = *state;
	dv_core_t *c = fx->c;
	/* nothing left behind */
	assert_int_equal(c->inflight, 0);
	assert_int_equal(c->n_fetches, 0);
	assert_int_equal(fetches_live(&fx->pool), 0);
	assert_int_equal(fx->pool.started, fx->pool.cancelled);
	assert_int_equal(timers_held(&fx->rt), 0);
	for (unsigned i = 0; i < fx->n_cl; i++)
		assert_int_equal(fx->cl[i].replies, fx->cl[i].dropped ? 0 : 1);
	/* every query the core answered was counted as an answer */
	unsigned answered = 0;
	for (unsigned i = 0; i < fx->n_cl; i++)
		answered += fx->cl[i].replies;
	assert_int_equal(fx->stats.answers, answered);
	dv_core_deinit(c);
	free(c);
	dv_cache_free(fx->cache);
	free(fx);
	return 0;
}

/* ---- tests ---- */

/* A miss goes upstream; the same question later is a hit, answered at
 * once without a fetch, its TTL lowered by the entry's age. */
static void test_cache_hit_ttl_aged(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 0x1111, false);
	assert_int_equal(a->replies, 0);
	assert_int_equal(fx->pool.started, 1);
	assert_int_equal(fx->stats.cache_misses, 1);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 300, 0);
	assert_int_equal(dv_get16(a->wire), 0x1111);
	assert_int_equal(first_ttl(a), 300);

	advance(&fx->rt, 100 * 1000);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 0x2222, false);
	assert_int_equal(b->replies, 1); /* at once */
	assert_int_equal(fx->pool.started, 1);
	assert_int_equal(dv_get16(b->wire), 0x2222);
	assert_int_equal(DV_RCODE(reply_of(b).flags), DV_RCODE_NOERROR);
	assert_int_equal(first_ttl(b), 200);
	assert_int_equal(fx->stats.cache_hits, 1);
	assert_int_equal(fx->stats.answers, 2);
}

/* The metrics (src/core/metrics.h): queries and answers by transport and
 * rcode, answer latency by source on the runtime's clock, EDNS sizes. */
static void test_metrics(void **state)
{
	fixture_t *fx = *state;
	const dv_metrics_t *m = &fx->c->metrics;
	const unsigned T = DV_SCHEME_TLS; /* what submit() says */
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 0x1111, true);
	advance(&fx->rt, 30); /* the upstream takes 30 ms */
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 300, 0);
	assert_int_equal(a->replies, 1);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 0x2222, false);
	assert_int_equal(b->replies, 1);
	client_t *n = ask(fx, NX, NX_LEN, DV_TYPE_A, 0x3333, true);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NXDOMAIN, 300, 0);
	assert_int_equal(n->replies, 1);

	assert_int_equal(m->queries[T], 3);
	assert_int_equal(m->queries[DV_SCHEME_UDP], 0);
	assert_int_equal(m->answers[T][DV_RC_NOERROR], 2);
	assert_int_equal(m->answers[T][DV_RC_NXDOMAIN], 1);
	/* 30 ms: above the 25 ms bound, inside the 50 ms one */
	const dv_lat_hist_t *up = &m->latency[T][DV_SRC_UPSTREAM];
	assert_int_equal(dv_lat_hist_count(up), 2);
	assert_int_equal(dv_lat_bounds_us[8], 50000);
	assert_int_equal(up->bucket[8], 1);
	assert_int_equal(up->bucket[0], 1);
	assert_int_equal(up->sum, 30000);
	const dv_lat_hist_t *hit = &m->latency[T][DV_SRC_CACHE];
	assert_int_equal(dv_lat_hist_count(hit), 1);
	assert_int_equal(hit->bucket[0], 1);
	assert_int_equal(dv_lat_hist_count(&m->latency[T][DV_SRC_LOCAL]), 0);
	assert_int_equal(m->no_edns, 1);
	uint64_t edns = 0;
	for (unsigned i = 0; i <= DV_EDNS_NBOUNDS; i++)
		edns += m->edns_size.bucket[i];
	assert_int_equal(edns, 2);

	/* summing two workers' metrics */
	dv_metrics_t sum;
	memset(&sum, 0, sizeof(sum));
	dv_metrics_sum(&sum, m);
	dv_metrics_sum(&sum, m);
	assert_int_equal(sum.answers[T][DV_RC_NOERROR], 4);
	assert_int_equal(sum.latency[T][DV_SRC_UPSTREAM].sum, 60000);
}

/* NXDOMAIN is cached for min(SOA TTL, MINIMUM) (RFC 2308) and served from
 * the cache, aged, while that lasts; then it goes upstream again. */
static void test_negative_answer(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, NX, NX_LEN, DV_TYPE_A, 1, false);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NXDOMAIN, 3600, 60);
	assert_int_equal(DV_RCODE(reply_of(a).flags), DV_RCODE_NXDOMAIN);

	advance(&fx->rt, 10 * 1000);
	client_t *b = ask(fx, NX, NX_LEN, DV_TYPE_A, 2, false);
	assert_int_equal(fx->pool.started, 1);
	assert_int_equal(DV_RCODE(reply_of(b).flags), DV_RCODE_NXDOMAIN);
	assert_int_equal(first_ttl(b), 50);

	advance(&fx->rt, 51 * 1000 + 3600 * 1000); /* past the stale window */
	client_t *c = ask(fx, NX, NX_LEN, DV_TYPE_A, 3, false);
	assert_int_equal(c->replies, 0);
	assert_int_equal(fx->pool.started, 2);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NXDOMAIN, 3600, 60);
	assert_int_equal(DV_RCODE(reply_of(c).flags), DV_RCODE_NXDOMAIN);
}

/* Two identical questions (ids and letter case differ) while the first is
 * in flight share one fetch; each gets its own answer, once. */
static void test_coalescing(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 0xaaaa, false);
	client_t *b = ask(fx, "\3WwW\7example\4TEST", WWW_LEN, DV_TYPE_A,
			  0xbbbb, false);
	assert_int_equal(fx->pool.started, 1);
	assert_int_equal(fx->stats.coalesced, 1);
	dv_fetch_t *f = the_fetch(&fx->pool);
	assert_int_equal(f->n_waiters, 2);
	assert_int_equal(fx->c->inflight, 2);
	pool_answers(f, DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(dv_get16(a->wire), 0xaaaa);
	assert_int_equal(dv_get16(b->wire), 0xbbbb);
	assert_memory_equal(b->wire + DV_DNS_HDR, "\3WwW", 4);
	assert_int_equal(first_ttl(a), 60);
	assert_int_equal(first_ttl(b), 60);
	/* a different type is another question */
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_AAAA, 0xcccc, false);
	assert_int_equal(fx->pool.started, 2);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(c->replies, 1);
}

/* The query deadline (the pool's timer) fails the fetch: every waiter gets
 * SERVFAIL with EDE 22 (no reachable authority), and the failure is
 * remembered for cache.servfail-ttl. */
static void test_deadline_servfail_ede(void **state)
{
	fixture_t *fx = *state;
	fx->c->conf.servfail_ttl_s = 5;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 7, true);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 8, false);
	advance(&fx->rt, fx->c->conf.query_timeout_ms);
	dv_core_fetch_fail(the_fetch(&fx->pool),
			   DV_EDE_NO_REACHABLE_AUTHORITY,
			   "upstreams did not answer in time");
	dv_wire_resp_t r = reply_of(a);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_true(r.has_opt);
	assert_int_equal(r.ede_code, DV_EDE_NO_REACHABLE_AUTHORITY);
	r = reply_of(b); /* no EDNS: no OPT to carry the EDE */
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_false(r.has_opt);
	assert_int_equal(fx->stats.servfail, 2);

	/* the same question at once: the remembered SERVFAIL, no fetch */
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 9, true);
	assert_int_equal(fx->pool.started, 1);
	assert_int_equal(DV_RCODE(reply_of(c).flags), DV_RCODE_SERVFAIL);
	assert_int_equal(fx->stats.servfail_cached, 1);
}

/* RFC 8767: an expired answer inside the stale window; the refresh is
 * slow, so when the client response timer fires the waiter gets the stale
 * answer (TTL 30, EDE 3), a later asker gets it at once, and the fetch
 * goes on to refresh the cache, answering nobody. */
static void test_stale_timer(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(first_ttl(a), 60);

	advance(&fx->rt, 120 * 1000); /* expired a minute ago */
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, true);
	assert_int_equal(b->replies, 0);
	assert_int_equal(fx->pool.started, 2);
	dv_fetch_t *f = the_fetch(&fx->pool);
	assert_int_equal(timers_armed(&fx->rt), 1);

	advance(&fx->rt, fx->c->conf.stale_answer_timeout_ms - 1);
	assert_int_equal(b->replies, 0);
	advance(&fx->rt, 1);
	dv_wire_resp_t r = reply_of(b);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_NOERROR);
	assert_int_equal(r.ede_code, DV_EDE_STALE);
	assert_int_equal(first_ttl(b), DV_CACHE_STALE_TTL);
	assert_int_equal(f->n_waiters, 0);
	assert_int_equal(timers_armed(&fx->rt), 0);

	/* the upstreams are late for this key: stale at once, no new fetch
	 * and no new timer */
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 3, true);
	assert_int_equal(c->replies, 1);
	assert_int_equal(reply_of(c).ede_code, DV_EDE_STALE);
	assert_int_equal(fx->pool.started, 2);
	assert_int_equal(timers_armed(&fx->rt), 0);
	assert_int_equal(fx->stats.stale_served, 2);

	/* the refresh lands: the cache is fresh again, nobody is answered
	 * twice, and the fetch's timer goes with it */
	pool_answers(f, DV_RCODE_NOERROR, 300, 0);
	client_t *d = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 4, true);
	assert_int_equal(first_ttl(d), 300);
	assert_int_equal(reply_of(d).ede_code, 0xffff);
}

/* An answer before the client response timer: the timer is cancelled
 * with its fetch and never fires. */
static void test_stale_timer_cancelled(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, false);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(a->replies, 1);
	advance(&fx->rt, 120 * 1000);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, false);
	assert_int_equal(timers_armed(&fx->rt), 1);
	advance(&fx->rt, 100);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(first_ttl(b), 60);
	assert_int_equal(timers_held(&fx->rt), 0);
	advance(&fx->rt, 10 * 1000);
	assert_int_equal(b->replies, 1);
}

/* The rcode of the one reply `cl` got (the header's four bits). */
static unsigned rcode_of(const client_t *cl)
{
	assert_int_equal(cl->replies, 1);
	assert_true(cl->len >= DV_DNS_HDR);
	return cl->wire[3] & 0xfu;
}

/* Identity: what is not a query is dropped without an answer (and
 * counted); what cannot be served gets its one error answer at once.
 * Nothing of this reaches the pool. */
static void test_identity_errors(void **state)
{
	fixture_t *fx = *state;
	uint8_t q[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11];
	uint8_t m[sizeof(q)];
	size_t len = make_query(q, WWW, WWW_LEN, DV_TYPE_A, 0x4242, true);

	client_t *cl = new_client(fx);
	cl->dropped = true;
	assert_int_equal(submit(fx, cl, q, DV_DNS_HDR - 1), DV_ESHORT);
	assert_int_equal(fx->stats.dropped_short, 1);

	memcpy(m, q, len); /* a response */
	dv_put16(m + 2, DV_FLAG_QR | DV_FLAG_RD);
	cl = new_client(fx);
	cl->dropped = true;
	assert_int_equal(submit(fx, cl, m, len), DV_ENOTQUERY);
	assert_int_equal(fx->stats.dropped_response, 1);

	memcpy(m, q, len); /* two questions announced, one there */
	dv_put16(m + 4, 2);
	cl = new_client(fx);
	assert_int_equal(submit(fx, cl, m, len), 0);
	assert_int_equal(rcode_of(cl), DV_RCODE_FORMERR);
	assert_int_equal(dv_get16(cl->wire), 0x4242);
	assert_int_equal(fx->stats.formerr, 1);

	memcpy(m, q, len); /* opcode STATUS */
	dv_put16(m + 2, (2u << 11) | DV_FLAG_RD);
	cl = new_client(fx);
	assert_int_equal(submit(fx, cl, m, len), 0);
	assert_int_equal(rcode_of(cl), DV_RCODE_NOTIMP);
	assert_int_equal(fx->stats.notimp, 1);

	memcpy(m, q, len); /* EDNS version 1 (the OPT's TTL, second byte) */
	m[len - 11 + 6] = 1;
	cl = new_client(fx);
	assert_int_equal(submit(fx, cl, m, len), 0);
	dv_wire_resp_t r = reply_of(cl);
	assert_true(r.has_opt);
	assert_int_equal(fx->stats.badvers, 1);

	assert_int_equal(fx->stats.queries, 3);
	assert_int_equal(fx->pool.started, 0);
	assert_int_equal(fx->c->inflight, 0);
	/* answered at once, each under its rcode */
	const dv_metrics_t *mt = &fx->c->metrics;
	assert_int_equal(mt->queries[DV_SCHEME_TLS], 3);
	assert_int_equal(mt->answers[DV_SCHEME_TLS][DV_RC_FORMERR], 1);
	assert_int_equal(mt->answers[DV_SCHEME_TLS][DV_RC_NOTIMP], 1);
	assert_int_equal(mt->answers[DV_SCHEME_TLS][DV_RC_BADVERS], 1);
	assert_int_equal(
		dv_lat_hist_count(&mt->latency[DV_SCHEME_TLS][DV_SRC_LOCAL]), 3);
}

/* A pool that ends a fetch inside fetch_start (it has no path to send
 * on, or answers at once): the query still gets exactly one reply, and
 * the fetch is gone before submit returns. */
static void test_pool_ends_fetch_at_once(void **state)
{
	fixture_t *fx = *state;
	fx->pool.mode = POOL_FAIL_AT_ONCE;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	dv_wire_resp_t r = reply_of(a);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_int_equal(r.ede_code, DV_EDE_NETWORK_ERROR);
	assert_int_equal(fx->c->n_fetches, 0);
	assert_int_equal(fx->c->inflight, 0);

	fx->pool.mode = POOL_ANSWER_AT_ONCE;
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, false);
	assert_int_equal(first_ttl(b), 60);
	assert_int_equal(fx->c->n_fetches, 0);
	fx->pool.mode = POOL_KEEP;
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 3, false);
	assert_int_equal(first_ttl(c), 60); /* from the cache */
	assert_int_equal(fx->pool.started, 2);
}

/* RFC 8767 without the client response timer: when the upstreams fail,
 * a waiter whose answer is stale (inside the window) gets it (EDE 3, TTL
 * 30) instead of SERVFAIL; one without gets SERVFAIL. */
static void test_failure_serves_stale(void **state)
{
	fixture_t *fx = *state;
	fx->c->conf.stale_answer_timeout_ms = 0;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(a->replies, 1);

	advance(&fx->rt, 120 * 1000);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, true);
	assert_int_equal(b->replies, 0);
	assert_int_equal(timers_held(&fx->rt), 0); /* no timer: it is off */
	dv_core_fetch_fail(the_fetch(&fx->pool), DV_EDE_NO_REACHABLE_AUTHORITY,
			   "upstreams did not answer in time");
	dv_wire_resp_t r = reply_of(b);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_NOERROR);
	assert_int_equal(r.ede_code, DV_EDE_STALE);
	assert_int_equal(first_ttl(b), DV_CACHE_STALE_TTL);
	assert_int_equal(fx->stats.stale_served, 1);

	client_t *c = ask(fx, NX, NX_LEN, DV_TYPE_A, 3, true);
	dv_core_fetch_fail(the_fetch(&fx->pool), DV_EDE_NO_REACHABLE_AUTHORITY,
			   "upstreams did not answer in time");
	r = reply_of(c);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_int_equal(r.ede_code, DV_EDE_NO_REACHABLE_AUTHORITY);
}

/* Past the core's in-flight limit a query is answered at once: with its
 * stale answer if it has one, else SERVFAIL ("dnsveil overloaded"); the
 * query in flight is not disturbed. */
static void test_overload(void **state)
{
	fixture_t *fx = *state;
	fx->c->conf.max_inflight = 1;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(a->replies, 1);
	advance(&fx->rt, 120 * 1000);

	client_t *b = ask(fx, NX, NX_LEN, DV_TYPE_A, 2, true);
	assert_int_equal(b->replies, 0);
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 3, true);
	assert_int_equal(reply_of(c).ede_code, DV_EDE_STALE);
	client_t *d = ask(fx, NX, NX_LEN, DV_TYPE_AAAA, 4, true);
	dv_wire_resp_t r = reply_of(d);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_int_equal(r.ede_code, DV_EDE_OTHER);
	assert_int_equal(fx->stats.overload, 2);
	assert_int_equal(fx->pool.started, 2);

	pool_answers(the_fetch(&fx->pool), DV_RCODE_NXDOMAIN, 300, 300);
	assert_int_equal(DV_RCODE(reply_of(b).flags), DV_RCODE_NXDOMAIN);
}

/* Prefetch: a popular answer in the last part of its life is served from
 * the cache and refreshed, once, by a fetch nobody waits for; the
 * refresh lands in the cache. */
static void test_prefetch(void **state)
{
	fixture_t *fx = *state;
	fx->c->conf.prefetch_hits = 1;
	fx->c->conf.prefetch_window_pct = 10;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, false);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 100, 0);
	assert_int_equal(a->replies, 1);

	advance(&fx->rt, 50 * 1000); /* popular, but not late in its life */
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, false);
	assert_int_equal(first_ttl(b), 50);
	assert_int_equal(fx->pool.started, 1);

	advance(&fx->rt, 45 * 1000); /* in its last 10 % */
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 3, false);
	assert_int_equal(first_ttl(c), 5);
	assert_int_equal(fx->pool.started, 2);
	assert_int_equal(fx->stats.prefetches, 1);
	dv_fetch_t *f = the_fetch(&fx->pool);
	assert_int_equal(f->n_waiters, 0);

	client_t *d = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 4, false);
	assert_int_equal(first_ttl(d), 5); /* handed out for prefetch once */
	assert_int_equal(fx->pool.started, 2);

	pool_answers(f, DV_RCODE_NOERROR, 300, 0);
	client_t *e = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 5, false);
	assert_int_equal(first_ttl(e), 300);
	assert_int_equal(fx->stats.cache_hits, 4);
}

/* Shutdown: dv_core_fail_all() gives every waiting query its one reply
 * (SERVFAIL, EDE 0), and while the core drains failures are not
 * remembered, so the same question goes upstream again. */
static void test_fail_all_draining(void **state)
{
	fixture_t *fx = *state;
	fx->c->conf.servfail_ttl_s = 5;
	fx->c->draining = true;
	client_t *a = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	client_t *b = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, false);
	client_t *c = ask(fx, NX, NX_LEN, DV_TYPE_A, 3, true);
	assert_int_equal(fx->pool.started, 2);
	dv_core_fail_all(fx->c, DV_EDE_OTHER, "dnsveil is shutting down");
	dv_wire_resp_t r = reply_of(a);
	assert_int_equal(DV_RCODE(r.flags), DV_RCODE_SERVFAIL);
	assert_int_equal(r.ede_code, DV_EDE_OTHER);
	assert_int_equal(rcode_of(b), DV_RCODE_SERVFAIL);
	assert_int_equal(rcode_of(c), DV_RCODE_SERVFAIL);
	assert_int_equal(fx->c->n_fetches, 0);
	assert_int_equal(fx->stats.servfail, 3);

	client_t *d = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 4, false);
	assert_int_equal(d->replies, 0);
	assert_int_equal(fx->pool.started, 3);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(first_ttl(d), 60);
}

/* ---- the log hook (dv_core_set_log) ---- */

typedef struct {
	unsigned calls;
	unsigned replies_before; /* the client's replies when it was called */
	uint8_t source, rcode;
	bool stale, log_ident;
	const char *upstream;
	char ident[DV_IDENT_MAX + 1];
	uint64_t took_us;
} log_rec_t;

static void log_answered(void *log, const dv_query_t *q, const uint8_t *wire,
			 size_t len, uint64_t now_us)
{
	log_rec_t *r = log;
	const client_t *cl = q->conn;
	r->calls++;
	r->replies_before = cl->replies;
	r->source = q->source;
	r->stale = q->stale;
	r->log_ident = q->log_ident;
	r->upstream = q->upstream;
	snprintf(r->ident, sizeof(r->ident), "%s", q->ident);
	r->rcode = len >= 4 ? wire[3] & 0x0f : 0xff;
	r->took_us = now_us - q->start_us;
}

static const dv_core_log_ops_t log_ops = {.answered = log_answered};

/* The hook sees every answer once, before its reply, with where it came
 * from (cache, stale, upstream and which one), the client ID copied while
 * the transport's buffer was still there, and the time it took. */
static void test_log_hook(void **state)
{
	fixture_t *fx = *state;
	log_rec_t rec;
	memset(&rec, 0, sizeof(rec));
	dv_core_set_log(fx->c, &rec, &log_ops);

	/* upstream, with a DoH client ID whose buffer dies with the submit */
	uint8_t w[128];
	size_t len = make_query(w, WWW, WWW_LEN, DV_TYPE_A, 1, true);
	client_t *a = new_client(fx);
	char path_id[16] = "kid-1";
	dv_query_t *q = dv_core_query_new(fx->c, w, len);
	assert_non_null(q);
	q->reply = on_reply;
	q->conn = a;
	q->client_id = path_id;
	assert_int_equal(dv_core_submit(q), 0);
	memset(path_id, 'x', sizeof(path_id) - 1);
	assert_int_equal(rec.calls, 0);
	dv_fetch_t *f = the_fetch(&fx->pool);
	f->upstream = "tcp://192.0.2.1:53";
	advance(&fx->rt, 5);
	pool_answers(f, DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.replies_before, 0);
	assert_int_equal(a->replies, 1);
	assert_int_equal(rec.source, DV_SRC_UPSTREAM);
	assert_false(rec.stale);
	assert_true(rec.log_ident);
	assert_string_equal(rec.upstream, "tcp://192.0.2.1:53");
	assert_string_equal(rec.ident, "kid-1");
	assert_int_equal(rec.rcode, DV_RCODE_NOERROR);
	assert_int_equal(rec.took_us, 5000);

	/* a cache hit: no upstream, no ID */
	ask(fx, WWW, WWW_LEN, DV_TYPE_A, 2, true);
	assert_int_equal(rec.calls, 2);
	assert_int_equal(rec.source, DV_SRC_CACHE);
	assert_null(rec.upstream);
	assert_string_equal(rec.ident, "");
	assert_int_equal(rec.took_us, 0);

	/* stale: the client response timer answers from the cache */
	advance(&fx->rt, 120 * 1000);
	client_t *c = ask(fx, WWW, WWW_LEN, DV_TYPE_A, 3, true);
	assert_int_equal(rec.calls, 2);
	advance(&fx->rt, fx->c->conf.stale_answer_timeout_ms);
	assert_int_equal(c->replies, 1);
	assert_int_equal(rec.calls, 3);
	assert_true(rec.stale);
	/* it waited for the fetch (the metrics' latency class), and the
	 * stale flag says where the answer came from */
	assert_int_equal(rec.source, DV_SRC_UPSTREAM);
	assert_null(rec.upstream);
	pool_answers(the_fetch(&fx->pool), DV_RCODE_NOERROR, 60, 0);
	assert_int_equal(rec.calls, 3); /* the refresh answers nobody */

	/* FORMERR (two questions) is an answer too */
	len = make_query(w, WWW, WWW_LEN, DV_TYPE_A, 4, false);
	dv_put16(w + 4, 2);
	client_t *d = new_client(fx);
	assert_int_equal(submit(fx, d, w, len), 0);
	assert_int_equal(rec.calls, 4);
	assert_int_equal(rec.rcode, DV_RCODE_FORMERR);
	assert_int_equal(rec.source, DV_SRC_LOCAL);
	assert_int_equal(fx->stats.answers, rec.calls);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_hit_ttl_aged, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_negative_answer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_coalescing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_deadline_servfail_ede,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_timer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_timer_cancelled,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pool_ends_fetch_at_once,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_serves_stale,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_overload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_all_draining, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The query core with several upstream sets (groups.NAME.upstream): a
 * fake policy puts each query in the set its test says (as the real one
 * puts a group's clients in the group's set), a fake pool per set records
 * the fetches it is given.  The same question asked in two sets is two
 * fetches, each to its own pool, never coalesced; each set's answer is
 * cached under its own key, so neither is served to the other set, in
 * either order; a failure in one set serves that set's stale answer; set
 * 0 keeps the plain key (dv_wire_key).  No timers: the client response
 * timer is off here (test_core.c covers it).
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

/* ---- fake clock (no timer is ever armed) ---- */

static uint64_t now_ms = 5000000;

static uint64_t fake_now_ms(void *ctx)
{
	(void)ctx;
	return now_ms;
}

static uint32_t fake_now_s(void *ctx)
{
	(void)ctx;
	return (uint32_t)(now_ms / 1000);
}

static int fake_arm(void *ctx, dv_timer_t *t, uint64_t after_ms)
{
	(void)ctx;
	(void)t;
	(void)after_ms;
	fail_msg("no timer is armed with the client response timer off");
	return -1;
}

static void fake_cancel(void *ctx, dv_timer_t *t)
{
	(void)ctx;
	(void)t;
}

static const dv_timer_ops_t fake_timer_ops = {
	.now_ms = fake_now_ms,
	.now_s = fake_now_s,
	.arm = fake_arm,
	.cancel = fake_cancel,
};

/* ---- a fake pool per set ---- */

#define N_SETS 3

typedef struct {
	unsigned set;
	dv_fetch_t *live; /* one fetch at a time is enough here */
	unsigned started, cancelled;
} fake_pool_t;

static void fake_fetch_start(void *pool, dv_fetch_t *f)
{
	fake_pool_t *p = pool;
	assert_null(p->live);
	assert_int_equal(f->upstream_set, p->set);
	p->live = f;
	p->started++;
}

static void fake_fetch_cancel(void *pool, dv_fetch_t *f)
{
	fake_pool_t *p = pool;
	assert_ptr_equal(p->live, f);
	p->live = NULL;
	p->cancelled++;
}

static const dv_core_pool_ops_t fake_pool_ops = {
	.fetch_start = fake_fetch_start,
	.fetch_cancel = fake_fetch_cancel,
};

/* ---- a fake policy: the query's set is what the test put in
 * q->conn_tag ---- */

static int fake_decide(void *policy, dv_query_t *q, uint8_t *buf, size_t cap,
		       unsigned pad_block)
{
	(void)policy;
	(void)buf;
	(void)cap;
	(void)pad_block;
	q->upstream_set = (uint8_t)q->conn_tag;
	return 0;
}

static const dv_core_policy_ops_t fake_policy_ops = {
	.decide = fake_decide,
};

/* ---- clients ---- */

typedef struct {
	unsigned replies;
	uint8_t wire[512];
	size_t len;
} client_t;

#define MAX_CLIENTS 16

typedef struct {
	dv_core_t *c;
	dv_stats_t stats;
	dv_cache_t *cache;
	fake_pool_t pool[N_SETS];
	client_t cl[MAX_CLIENTS];
	unsigned n_cl;
} fixture_t;

static void on_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	client_t *cl = q->conn;
	assert_int_equal(cl->replies, 0);
	assert_true(len <= sizeof(cl->wire));
	cl->replies++;
	memcpy(cl->wire, wire, len);
	cl->len = len;
}

#define WWW "\3www\7example\4test"
#define WWW_LEN 18

/* www.example.test A asked by a new client in upstream set `set`. */
static client_t *ask(fixture_t *fx, unsigned set, uint16_t id)
{
	uint8_t w[DV_DNS_HDR + WWW_LEN + 4] = { 0 };
	dv_put16(w, id);
	dv_put16(w + 2, DV_FLAG_RD);
	dv_put16(w + 4, 1);
	memcpy(w + DV_DNS_HDR, WWW, WWW_LEN);
	dv_put16(w + DV_DNS_HDR + WWW_LEN, DV_TYPE_A);
	dv_put16(w + DV_DNS_HDR + WWW_LEN + 2, DV_CLASS_IN);
	assert_true(fx->n_cl < MAX_CLIENTS);
	client_t *cl = &fx->cl[fx->n_cl++];
	dv_query_t *q = dv_core_query_new(fx->c, w, sizeof(w));
	assert_non_null(q);
	q->reply = on_reply;
	q->conn = cl;
	q->conn_tag = set;
	q->transport = DV_SCHEME_UDP;
	q->udp = true;
	assert_int_equal(dv_core_submit(q), 0);
	return cl;
}

/* The upstream's answer to `f`: www.example.test A 192.0.2.`octet`, TTL
 * `ttl`. */
static void pool_answers(dv_fetch_t *f, uint8_t octet, uint32_t ttl)
{
	uint8_t a[256];
	dv_wire_query_t v;
	assert_int_equal(dv_wire_parse_query(f->qwire, f->qlen, &v), 0);
	size_t pos = v.question_end;
	memcpy(a, f->qwire, pos);
	dv_put16(a + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	dv_put16(a + 6, 1);
	dv_put16(a + 8, 0);
	dv_put16(a + 10, 0);
	dv_put16(a + pos, 0xc00c);
	dv_put16(a + pos + 2, DV_TYPE_A);
	dv_put16(a + pos + 4, DV_CLASS_IN);
	dv_put32(a + pos + 6, ttl);
	dv_put16(a + pos + 10, 4);
	memcpy(a + pos + 12, "\xc0\x00\x02", 3);
	a[pos + 15] = octet;
	dv_wire_resp_t r;
	assert_int_equal(dv_wire_parse_response(a, pos + 16, &r), 0);
	dv_core_fetch_answer(f, a, pos + 16, &r);
}

/* The last octet of the one A record a client got (0: none). */
static uint8_t octet_of(const client_t *cl)
{
	dv_wire_resp_t r;
	assert_int_equal(cl->replies, 1);
	assert_int_equal(dv_wire_parse_response(cl->wire, cl->len, &r), 0);
	if (dv_get16(cl->wire + 6) != 1)
		return 0;
	return cl->wire[cl->len - 1];
}

static int setup(void **state)
{
	fixture_t *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	dv_cache_opts_t co = { .size_bytes = 1 << 20,
			       .shards = 1,
			       .max_ttl = 86400,
			       .negative_max_ttl = 3600 };
	fx->cache = dv_cache_new(&co);
	assert_non_null(fx->cache);
	dv_core_conf_t conf = {
		.max_inflight = 64,
		.query_timeout_ms = 3000,
		.stale_max_age_s = 3600,
		.hash_seed = 0x5eed,
	};
	dv_timers_t rt = { .ops = &fake_timer_ops };
	fx->c = malloc(sizeof(*fx->c));
	assert_non_null(fx->c);
	assert_int_equal(dv_core_init(fx->c, &conf, &rt, fx->cache, &fx->stats),
			 0);
	void *pools[N_SETS];
	for (unsigned i = 0; i < N_SETS; i++) {
		fx->pool[i].set = i;
		pools[i] = &fx->pool[i];
	}
	dv_core_set_pools(fx->c, pools, N_SETS, &fake_pool_ops);
	dv_core_set_policy(fx->c, NULL, &fake_policy_ops);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *fx = *state;
	assert_int_equal(fx->c->inflight, 0);
	assert_int_equal(fx->c->n_fetches, 0);
	for (unsigned i = 0; i < N_SETS; i++) {
		assert_null(fx->pool[i].live);
		assert_int_equal(fx->pool[i].started, fx->pool[i].cancelled);
	}
	for (unsigned i = 0; i < fx->n_cl; i++)
		assert_int_equal(fx->cl[i].replies, 1);
	dv_core_deinit(fx->c);
	free(fx->c);
	dv_cache_free(fx->cache);
	free(fx);
	return 0;
}

/* One question in sets 0 and 1 at once: two fetches, one per pool, not
 * coalesced; set 0's key is dv_wire_key()'s, set 1's the same plus the
 * set's byte. */
static void test_sets_not_coalesced(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, 0, 1);
	client_t *b = ask(fx, 1, 2);
	client_t *c = ask(fx, 1, 3); /* joins set 1's fetch */
	assert_int_equal(fx->pool[0].started, 1);
	assert_int_equal(fx->pool[1].started, 1);
	assert_int_equal(fx->pool[2].started, 0);
	assert_int_equal(fx->stats.coalesced, 1);
	dv_fetch_t *f0 = fx->pool[0].live, *f1 = fx->pool[1].live;
	assert_int_equal(f1->n_waiters, 2);
	assert_int_equal(f1->key_len, f0->key_len + 1);
	assert_memory_equal(f1->key, f0->key, f0->key_len);
	assert_int_equal(f1->key[f0->key_len], 1);
	assert_int_equal(f0->key_len, WWW_LEN + 5);
	pool_answers(f1, 2, 300);
	pool_answers(f0, 1, 300);
	assert_int_equal(octet_of(a), 1);
	assert_int_equal(octet_of(b), 2);
	assert_int_equal(octet_of(c), 2);
}

/* Each set's answer is cached apart: set 1 asked first then set 0, then
 * set 2 (its own miss), and the hits in every order get their own set's
 * answer. */
static void test_cache_kept_apart(void **state)
{
	fixture_t *fx = *state;
	client_t *k = ask(fx, 1, 1);
	pool_answers(fx->pool[1].live, 2, 300);
	assert_int_equal(octet_of(k), 2);
	client_t *d = ask(fx, 0, 2); /* not set 1's answer: a miss */
	assert_int_equal(d->replies, 0);
	assert_int_equal(fx->pool[0].started, 1);
	pool_answers(fx->pool[0].live, 1, 300);
	assert_int_equal(octet_of(d), 1);
	client_t *e = ask(fx, 2, 3);
	assert_int_equal(fx->pool[2].started, 1);
	pool_answers(fx->pool[2].live, 3, 300);
	assert_int_equal(octet_of(e), 3);
	static const unsigned order[] = { 0, 1, 2, 1, 0, 2, 2, 0, 1 };
	for (unsigned i = 0; i < sizeof(order) / sizeof(*order); i++) {
		client_t *h = ask(fx, order[i], (uint16_t)(10 + i));
		assert_int_equal(h->replies, 1); /* a hit, at once */
		assert_int_equal(octet_of(h), order[i] + 1);
	}
	assert_int_equal(fx->stats.cache_hits, 9);
	for (unsigned s = 0; s < N_SETS; s++)
		assert_int_equal(fx->pool[s].started, 1);
}

/* Expired in both sets; set 1's upstreams fail: set 1's client gets set
 * 1's stale answer, and set 0 is refreshed by its own pool. */
static void test_stale_from_own_set(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, 0, 1);
	pool_answers(fx->pool[0].live, 1, 60);
	client_t *b = ask(fx, 1, 2);
	pool_answers(fx->pool[1].live, 2, 60);
	assert_int_equal(octet_of(a), 1);
	assert_int_equal(octet_of(b), 2);
	now_ms += 120 * 1000;
	client_t *c = ask(fx, 1, 3);
	assert_int_equal(fx->pool[1].started, 2);
	assert_int_equal(fx->pool[0].started, 1);
	dv_core_fetch_fail(fx->pool[1].live, DV_EDE_NO_REACHABLE_AUTHORITY,
			   "upstreams did not answer");
	assert_int_equal(octet_of(c), 2);
	assert_int_equal(fx->stats.stale_served, 1);
	client_t *d = ask(fx, 0, 4);
	assert_int_equal(fx->pool[0].started, 2);
	pool_answers(fx->pool[0].live, 7, 60);
	assert_int_equal(octet_of(d), 7);
}

/* A set the worker made no pool for (cannot happen: the config numbers
 * the sets) is taken as set 0, never an index past the pools. */
static void test_unknown_set_is_set_0(void **state)
{
	fixture_t *fx = *state;
	client_t *a = ask(fx, 9, 1);
	assert_int_equal(fx->pool[0].started, 1);
	assert_int_equal(fx->pool[0].live->key_len, WWW_LEN + 5);
	pool_answers(fx->pool[0].live, 1, 60);
	assert_int_equal(octet_of(a), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sets_not_coalesced, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_kept_apart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_from_own_set, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unknown_set_is_set_0,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for the upstream pool's id rewriting (src/upstream/server.c
 * and pool.c): the slot table of a connection, the ids it hands out and
 * how answers find their slot.  The two .c files are included to reach
 * their statics; since this file then defines every public symbol of
 * server.o and pool.o itself, the linker never pulls them out of the
 * dv_upstream archive (the connection modules come from it).  No socket
 * is opened and no event loop runs: dv_uconn_init only records the server
 * pointer, and dv_uconn_answer does not touch the worker for answers it
 * ignores.
 */
#include "src/upstream/server.c"
#include "src/upstream/pool.c"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"
#include "src/tls/tls.h"
#include "src/upstream/conn_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* What a test allocates lives here, so that teardown frees it even when
 * an assertion ends the test early. */
typedef struct {
	dv_pool_t *pool;
	dv_server_t *server;
	dv_uconn_t c;
	dv_uconn_t *made; /* by a module's create, destroyed by teardown */
	dv_stats_t stats; /* the pool's counters */
	void *scratch[2];
	/* for the tests that run a fetch through the real core */
	struct ev_loop *loop;
	dv_worker_t *w;
	dv_config_t *cfg;
} fixture_t;

/* Where fetches end, as the worker gives it to the pool: the core. */
static const dv_pool_report_t core_report = {
	.answer = dv_core_fetch_answer,
	.fail = dv_core_fetch_fail,
};

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->pool = calloc(1, sizeof(*f->pool));
	f->server = calloc(1, sizeof(*f->server));
	assert_non_null(f->pool);
	assert_non_null(f->server);
	f->server->pool = f->pool;
	f->pool->stats = &f->stats;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	dv_uconn_deinit(&f->c);
	if (f->made)
		f->made->ops->destroy(f->made);
	free(f->scratch[0]);
	free(f->scratch[1]);
	if (f->w)
		dv_core_deinit(&f->w->core);
	free(f->w);
	free(f->cfg);
	if (f->loop)
		ev_loop_destroy(f->loop);
	free(f->server);
	free(f->pool);
	free(f);
	return 0;
}

/* Every free slot is on the free list exactly once, linked both ways. */
static void check_free_list(const dv_uconn_t *c, uint32_t want_free)
{
	uint8_t *seen = calloc(c->n_slots, 1);
	assert_non_null(seen);
	uint32_t n = 0, prev = NO_SLOT;
	for (uint32_t i = c->free_head; i != NO_SLOT;
	     i = c->slots[i].next_free) {
		assert_true(i < c->n_slots);
		assert_false(seen[i]);
		assert_false(c->slots[i].busy);
		assert_int_equal(c->slots[i].prev_free, prev);
		seen[i] = 1;
		prev = i;
		n++;
	}
	assert_int_equal(n + c->busy, c->n_slots);
	assert_int_equal(n, want_free);
	free(seen);
}

static void test_conn_init_sizes(void **state)
{
	fixture_t *f = *state;
	static const struct {
		unsigned max;
		uint32_t slots;
	} cases[] = {{0, 1},	   {1, 1},	 {2, 2},	 {3, 4},
		     {4, 4},	   {5, 8},	 {63, 64},	 {64, 64},
		     {65, 128},	   {100, 128},	 {1000, 1024},	 {1024, 1024},
		     {32768, 32768}, {32769, 65536}, {65536, 65536},
		     {70000, 65536}, {UINT32_MAX, 65536}};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		dv_uconn_t c;
		memset(&c, 0xa5, sizeof(c)); /* dv_uconn_init must set what
						counts */
		assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops,
					       f->server, cases[k].max),
				 0);
		assert_ptr_equal(c.server, f->server);
		assert_ptr_equal(c.ops, &dv_uconn_tcp_ops);
		assert_int_equal(c.state, UC_CLOSED);
		assert_int_equal(c.fd, -1);
		assert_int_equal(c.n_slots, cases[k].slots);
		assert_int_equal(c.mask, cases[k].slots - 1);
		assert_int_equal(c.n_slots & c.mask, 0); /* a power of two */
		assert_int_equal(c.free_head, 0);
		c.busy = 0; /* callers hand dv_uconn_init zeroed memory */
		check_free_list(&c, c.n_slots);
		dv_uconn_deinit(&c);
	}

	/* TCP, made by its module: an input buffer for the framing */
	dv_uconn_t *t = dv_uconn_tcp_ops.create(f->server, 100);
	assert_non_null(t);
	assert_false(t->ops->lossy);
	assert_non_null(((dv_ustream_t *)t)->in);
	assert_int_equal(t->n_slots, 128);
	check_free_list(t, 128);
	t->ops->destroy(t);

	/* UDP: lossy, no input buffer of its own */
	dv_uconn_t *u = dv_uconn_udp_ops.create(f->server, 65536);
	assert_non_null(u);
	assert_true(u->ops->lossy);
	assert_int_equal(u->n_slots, 65536);
	assert_int_equal(u->mask, 0xffff);
	u->ops->destroy(u);
}

static void test_slot_take_all(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t c;
	dv_attempt_t att[64];
	memset(&c, 0, sizeof(c));
	assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops, f->server, 64), 0);
	assert_int_equal(c.mask, 63);

	uint8_t seen_slot[64] = {0};
	uint8_t *seen_id = calloc(65536, 1);
	assert_non_null(seen_id);
	for (unsigned k = 0; k < 64; k++) {
		uint32_t i = dv_uslot_take(&c, &att[k], 1000 + k);
		assert_true(i < 64);
		assert_false(seen_slot[i]);
		seen_slot[i] = 1;
		uslot_t *s = &c.slots[i];
		assert_int_equal(s->id & c.mask, i);
		assert_false(seen_id[s->id]);
		seen_id[s->id] = 1;
		assert_true(s->busy);
		assert_ptr_equal(s->att, &att[k]);
		assert_int_equal(s->sent_ms, 1000 + k);
		assert_int_equal(c.busy, k + 1);
	}
	/* the table is full */
	assert_int_equal(c.free_head, NO_SLOT);
	assert_int_equal(dv_uslot_take(&c, &att[0], 0), NO_SLOT);
	assert_int_equal(dv_uslot_take(&c, &att[0], 0), NO_SLOT);
	assert_int_equal(c.busy, 64);

	/* release one, the next take reuses it (with a fresh id) */
	dv_uslot_release(&c, 17);
	assert_false(c.slots[17].busy);
	assert_null(c.slots[17].att);
	assert_int_equal(c.busy, 63);
	uint32_t i = dv_uslot_take(&c, &att[1], 5);
	assert_int_equal(i, 17);
	assert_int_equal(c.slots[17].id & 63, 17);
	assert_ptr_equal(c.slots[17].att, &att[1]);
	assert_int_equal(dv_uslot_take(&c, &att[0], 0), NO_SLOT);

	/* release everything: all back on the free list */
	for (uint32_t k = 0; k < 64; k++)
		dv_uslot_release(&c, k);
	assert_int_equal(c.busy, 0);
	check_free_list(&c, 64);
	free(seen_id);
	dv_uconn_deinit(&c);
}

/* A tiny deterministic PRNG for the access pattern (not for ids). */
static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static void test_slot_ids_distinct_in_flight(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t c;
	dv_attempt_t a;
	memset(&c, 0, sizeof(c));
	assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops, f->server, 1000), 0);
	assert_int_equal(c.n_slots, 1024);

	uint32_t *inflight = calloc(c.n_slots, sizeof(*inflight));
	uint32_t *id_users = calloc(65536, sizeof(*id_users));
	assert_non_null(inflight);
	assert_non_null(id_users);
	uint32_t n = 0, rng = 12345;
	for (unsigned step = 0; step < 200000; step++) {
		bool take = n == 0 || (n < c.n_slots && xorshift(&rng) % 3 != 0);
		if (take) {
			uint32_t i = dv_uslot_take(&c, &a, step);
			assert_int_not_equal(i, NO_SLOT);
			uint16_t id = c.slots[i].id;
			assert_int_equal(id & c.mask, i);
			/* no other query in flight has this id */
			assert_int_equal(id_users[id], 0);
			id_users[id]++;
			inflight[n++] = i;
		} else {
			uint32_t k = xorshift(&rng) % n;
			uint32_t i = inflight[k];
			inflight[k] = inflight[--n];
			id_users[c.slots[i].id]--;
			dv_uslot_release(&c, i);
		}
		assert_int_equal(c.busy, n);
	}
	/* fill up to the limit: exactly n_slots distinct ids at once */
	while (n < c.n_slots) {
		uint32_t i = dv_uslot_take(&c, &a, 0);
		assert_int_not_equal(i, NO_SLOT);
		assert_int_equal(id_users[c.slots[i].id], 0);
		id_users[c.slots[i].id]++;
		inflight[n++] = i;
	}
	assert_int_equal(dv_uslot_take(&c, &a, 0), NO_SLOT);
	free(inflight);
	free(id_users);
	dv_uconn_deinit(&c);
}

static void test_slot_random_high_bits(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t c;
	dv_attempt_t a;
	memset(&c, 0, sizeof(c));
	assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops, f->server, 64), 0);

	uint8_t *seen_high = calloc(1024, 1); /* 16 - 6 bits */
	assert_non_null(seen_high);
	unsigned distinct = 0;
	uint16_t prev = 0;
	unsigned same_as_prev = 0;
	for (unsigned k = 0; k < 1000; k++) {
		uint32_t i = dv_uslot_take(&c, &a, 42); /* same "now" every time */
		assert_int_not_equal(i, NO_SLOT);
		uint16_t id = c.slots[i].id;
		assert_int_equal(id & 63, i);
		if (!seen_high[id >> 6]++)
			distinct++;
		same_as_prev += k > 0 && id == prev;
		prev = id;
		dv_uslot_release(&c, i);
	}
	assert_true(distinct > 1);
	/* 10 random bits over 1000 draws: expect ~630 distinct values; a
	 * working random source never comes near this bound */
	assert_true(distinct > 300);
	assert_true(same_as_prev < 50);
	free(seen_high);
	dv_uconn_deinit(&c);
}

/*
 * A udp:// query may be answered by anyone who can send a datagram to
 * dnsveil's port with the right id: every one of the 16 id bits must be
 * random, not the slot index (which a burst of queries fills in a
 * predictable order).  The connection's id table finds the slot of an
 * answer (random_ids), so the id need not name it: even a small table
 * hands out ids spread over all 65,536 values, and a burst gets no
 * consecutive or repeated ids.
 */
static void test_udp_ids_unpredictable(void **state)
{
	fixture_t *f = *state;
	dv_attempt_t a;
	dv_uconn_t *c = f->made = dv_uconn_udp_ops.create(f->server, 8);
	assert_non_null(c);
	assert_true(c->ops->random_ids);

	uint8_t *seen = f->scratch[0] = calloc(65536, 1);
	assert_non_null(seen);
	unsigned distinct = 0, high = 0, low_is_slot = 0;
	for (unsigned k = 0; k < 1000; k++) {
		uint32_t i = dv_uslot_take(c, &a, 42);
		assert_int_not_equal(i, NO_SLOT);
		uint16_t id = c->slots[i].id;
		if (!seen[id]++)
			distinct++;
		high += id >= 0x8000;
		low_is_slot += (id & c->mask) == i;
		dv_uslot_release(c, i);
	}
	/* one query at a time, 1000 times: ~992 distinct of 65,536 */
	assert_true(distinct > 980);
	/* the top bit set about half the time (sd ~16) */
	assert_in_range(high, 400, 600);
	/* the low bits do not name the slot (1 in 8 by chance: ~125) */
	assert_true(low_is_slot < 250);

	/* nor may a burst of queries get consecutive or repeated ids */
	uint16_t ids[8];
	unsigned close_ids = 0;
	for (unsigned k = 0; k < 8; k++) {
		uint32_t i = dv_uslot_take(c, &a, 42);
		assert_int_not_equal(i, NO_SLOT);
		ids[k] = c->slots[i].id;
		for (unsigned j = 0; j < k; j++)
			close_ids += (uint16_t)(ids[k] - ids[j] + 16) < 32;
	}
	assert_true(close_ids < 2);
}

/*
 * The id table of a connection with random ids: the ids in flight are
 * unique (a drawn id another query has is drawn again), and each busy
 * slot is found by its id, a free one never, through any order of takes
 * and releases (a removal moves the entries after it back, so a lookup
 * that stops at the first empty entry misses nothing).  With the table
 * full of 16 queries, 20,000 rounds release one at random and take one.
 */
static void test_udp_id_table(void **state)
{
	fixture_t *f = *state;
	dv_attempt_t a;
	dv_uconn_t *c = f->made = dv_uconn_udp_ops.create(f->server, 16);
	assert_non_null(c);
	assert_int_equal(c->n_slots, 16);
	uint32_t rng = 7;
	for (unsigned round = 0; round < 20000; round++) {
		while (c->free_head != NO_SLOT)
			assert_int_not_equal(dv_uslot_take(c, &a, round),
					     NO_SLOT);
		for (uint32_t i = 0; i < 16; i++) {
			assert_int_equal(dv_uconn_slot_of(c, c->slots[i].id),
					 i);
			for (uint32_t j = 0; j < i; j++)
				assert_int_not_equal(c->slots[i].id,
						     c->slots[j].id);
		}
		uint32_t k = xorshift(&rng) % 16;
		uint16_t gone = c->slots[k].id;
		dv_uslot_release(c, k);
		assert_int_equal(dv_uconn_slot_of(c, gone), NO_SLOT);
	}
	/* ids nobody holds */
	unsigned found = 0;
	for (uint32_t id = 0; id < 65536; id++)
		found += dv_uconn_slot_of(c, (uint16_t)id) != NO_SLOT;
	assert_int_equal(found, 15);
}

/* The slot itself is drawn at random while the table has room, so that
 * even the low bits of consecutive ids are not predictable. */
static void test_slot_random_index(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t *c = &f->c;
	dv_attempt_t a;
	assert_int_equal(dv_uconn_init(c, &dv_uconn_tcp_ops, f->server, 64), 0);
	uint8_t seen[64] = {0};
	unsigned distinct = 0;
	for (unsigned k = 0; k < 1000; k++) {
		uint32_t i = dv_uslot_take(c, &a, 42);
		assert_true(i < 64);
		if (!seen[i]++)
			distinct++;
		dv_uslot_release(c, i);
		check_free_list(c, 64);
	}
	assert_true(distinct > 32);

	/* half full, taken and released in a scrambled order: the free list
	 * stays consistent in both directions */
	uint32_t held[32], rng = 99;
	for (unsigned k = 0; k < 32; k++)
		held[k] = dv_uslot_take(c, &a, k);
	check_free_list(c, 32);
	for (unsigned round = 0; round < 2000; round++) {
		uint32_t k = xorshift(&rng) % 32;
		dv_uslot_release(c, held[k]);
		held[k] = dv_uslot_take(c, &a, round);
		assert_int_not_equal(held[k], NO_SLOT);
	}
	check_free_list(c, 32);
}

/*
 * An attempt that times out on UDP is detached, but its id stays reserved
 * ("its answer may still arrive") until that answer comes or the socket
 * closes.  On UDP the answer was usually lost, and the connected socket is
 * never closed while the upstream is reachable, so every lost datagram
 * leaks a slot for good: after pool.max-inflight lost answers (1024 by
 * default, over the life of a worker) the udp:// server has no free id
 * and pick_conn() refuses every further query to it.  An id reserved for
 * a late answer must come back once that answer cannot matter any more.
 *
 * The fetch here runs through the real timeout path (attempt_timeout_cb ->
 * attempt_fail -> fetch_continue -> dv_core_fetch_fail, which frees it);
 * the only server is already tried and there is no fallback, so nothing is
 * sent.  Queries are a minute apart, far past any upstream timeout.
 */
static void test_udp_lost_answers_release_ids(void **state)
{
	fixture_t *f = *state;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	f->w = calloc(1, sizeof(*f->w));
	f->cfg = calloc(1, sizeof(*f->cfg));
	assert_non_null(f->loop);
	assert_non_null(f->w);
	assert_non_null(f->cfg);
	dv_worker_t *w = f->w;
	f->cfg->upstream_timeout_ms = 1500;
	f->cfg->query_timeout_ms = 5000;
	w->loop = f->loop;
	w->cfg = f->cfg;
	w->pools[0] = f->pool;
	w->n_pools = 1;
	/* the core as dv_worker_new sets it up, without timers */
	dv_core_conf_t conf = {.max_inflight = 1,
			       .query_timeout_ms = f->cfg->query_timeout_ms};
	dv_timers_t no_timers = {0};
	assert_int_equal(
		dv_core_init(&w->core, &conf, &no_timers, NULL, &w->stats), 0);
	dv_core_set_pool(&w->core, f->pool, &dv_pool_core_ops);
	f->pool->loop = w->loop;
	f->pool->stats = &w->stats;
	f->pool->cfg = f->cfg;
	f->pool->report = &core_report;
	f->pool->servers = f->server;
	f->pool->n_local = 1;
	f->pool->n_fallback = 0;
	dv_uconn_t *c = f->made = dv_uconn_udp_ops.create(f->server, 4);
	assert_non_null(c);
	f->server->front = c;
	c->state = UC_OPEN; /* fd stays -1: nothing is sent */

	for (unsigned k = 0; k < 3 * c->n_slots; k++) {
		uint64_t now = 1000 + (uint64_t)k * 60000;
		dv_fetch_t *fe = calloc(1, sizeof(*fe));
		assert_non_null(fe);
		fe->core = &w->core;
		dv_job_t *j = calloc(1, sizeof(*j));
		assert_non_null(j);
		j->pool = f->pool;
		j->fetch = fe;
		fe->pool_job = j;
		j->ede = 0xffff;
		j->tried_local = 1; /* the one local server: this attempt */
		fe->hash = 0; /* bucket 0 of the core's table */
		w->core.fetches[0] = fe;
		w->core.n_fetches = 1;
		dv_attempt_t *a = &j->att[0];
		uint32_t i = dv_uslot_take(c, a, now);
		if (i == NO_SLOT) {
			free(j);
			free(fe);
		}
		assert_int_not_equal(i, NO_SLOT);
		a->job = j;
		a->conn = c;
		a->slot = i;
		ev_timer_init(&a->timer, attempt_timeout_cb, 1.5, 0.);
		a->timer.data = a;
		/* no answer: the attempt times out, the fetch fails */
		attempt_timeout_cb(f->loop, &a->timer, EV_TIMER);
		assert_null(w->core.fetches[0]);
		assert_int_equal(w->stats.upstream_timeouts, k + 1);
	}
}

/* An answer whose id names a slot: only the exact id is accepted. */
static void test_handle_answer_ids(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops, f->server, 64), 0);

	/* the slot of an abandoned attempt (its fetch finished elsewhere) */
	dv_attempt_t a;
	uint32_t i = dv_uslot_take(&c, &a, 1);
	uint16_t id = c.slots[i].id;
	c.slots[i].att = NULL; /* what attempt_detach() does */

	uint8_t ans[DV_DNS_HDR + 17 + 4] = {0};
	dv_put16(ans, (uint16_t)(id ^ 0x8000 ^ (c.mask + 1))); /* same slot,
								 other high
								 bits */
	dv_put16(ans + 2, DV_FLAG_QR);
	dv_put16(ans + 4, 1);
	memcpy(ans + 12, "\3www\7example\3com\0\0\1\0\1", 21);
	dv_uconn_answer(&c, ans, sizeof(ans));
	assert_true(c.slots[i].busy); /* wrong id: dropped, counted */
	assert_int_equal(c.busy, 1);
	assert_int_equal(f->stats.upstream_dropped, 1);
	assert_int_equal(f->server->st.dropped, 1);

	dv_uconn_answer(&c, ans, DV_DNS_HDR - 1); /* too short: ignored */
	dv_put16(ans, id);
	dv_uconn_answer(&c, ans, DV_DNS_HDR - 1);
	assert_true(c.slots[i].busy);

	dv_uconn_answer(&c, ans, sizeof(ans)); /* the late answer: id freed */
	assert_false(c.slots[i].busy);
	assert_int_equal(c.busy, 0);
	check_free_list(&c, 64);

	/* a second copy of it finds the slot free: ignored */
	dv_uconn_answer(&c, ans, sizeof(ans));
	assert_int_equal(c.busy, 0);
	check_free_list(&c, 64);

	/* an id whose slot was never taken */
	dv_put16(ans, 5);
	dv_uconn_answer(&c, ans, sizeof(ans));
	assert_int_equal(c.busy, 0);
	dv_uconn_deinit(&c);
}

/* An answer with the right id but another question keeps the slot. */
static void test_handle_answer_question(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(dv_uconn_init(&c, &dv_uconn_tcp_ops, f->server, 8), 0);

	dv_job_t *fe = calloc(1, sizeof(*fe));
	assert_non_null(fe);
	static const uint8_t q[] = {0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
				    3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm',
				    'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1,
				    0, 1};
	memcpy(fe->qwire, q, sizeof(q));
	fe->qlen = sizeof(q);
	dv_attempt_t *a = &fe->att[0];
	a->job = fe;
	uint32_t i = dv_uslot_take(&c, a, 1);
	a->conn = &c;
	a->slot = i;
	uint16_t id = c.slots[i].id;
	dv_put16(fe->qwire, id);

	uint8_t ans[sizeof(q)];
	memcpy(ans, q, sizeof(q));
	dv_put16(ans, id);
	dv_put16(ans + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	ans[sizeof(ans) - 3] = 28; /* AAAA instead of A */
	dv_uconn_answer(&c, ans, sizeof(ans));
	assert_true(c.slots[i].busy);
	assert_ptr_equal(c.slots[i].att, a);
	assert_ptr_equal(a->conn, &c);
	assert_int_equal(f->stats.upstream_dropped, 1);

	ans[sizeof(ans) - 3] = 1;
	ans[14] = 'x'; /* "wxw.example.com" */
	dv_uconn_answer(&c, ans, sizeof(ans));
	assert_true(c.slots[i].busy);
	assert_ptr_equal(a->conn, &c);
	assert_int_equal(f->stats.upstream_dropped, 2);
	assert_int_equal(f->server->st.dropped, 2);

	free(fe);
	dv_uconn_deinit(&c);
}

/*
 * udp://: an answer is read on the socket its query went on and handed
 * over with the slot (dv_uslot_answer); the id must be the slot's whole
 * random id and the question the one asked (letter case aside), else it
 * is dropped and counted and the query keeps waiting for the real answer.
 */
static void test_udp_slot_answer(void **state)
{
	fixture_t *f = *state;
	dv_uconn_t *c = f->made = dv_uconn_udp_ops.create(f->server, 8);
	assert_non_null(c);
	dv_job_t *j = f->scratch[0] = calloc(1, sizeof(*j));
	assert_non_null(j);
	static const uint8_t q[] = {0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
				    3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm',
				    'p', 'l', 'e', 4, 't', 'e', 's', 't', 0,
				    0, 1, 0, 1};
	memcpy(j->qwire, q, sizeof(q));
	j->qlen = sizeof(q);
	dv_attempt_t *a = &j->att[0];
	a->job = j;
	uint32_t i = dv_uslot_take(c, a, 1);
	assert_int_not_equal(i, NO_SLOT);
	a->conn = c;
	a->slot = i;
	uint16_t id = c->slots[i].id;
	dv_put16(j->qwire, id);

	uint8_t ans[sizeof(q)];
	memcpy(ans, q, sizeof(q));
	dv_put16(ans + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	unsigned dropped = 0;
	/* every other id, on the right socket */
	for (uint32_t k = 1; k < 65536; k += 257) {
		dv_put16(ans, (uint16_t)(id ^ k));
		dv_uslot_answer(c, i, ans, sizeof(ans));
		dropped++;
		assert_true(c->slots[i].busy);
		assert_ptr_equal(c->slots[i].att, a);
	}
	assert_int_equal(f->stats.upstream_dropped, dropped);
	/* the right id on another slot's socket (that slot is free) */
	dv_put16(ans, id);
	dv_uslot_answer(c, (i + 1) & c->mask, ans, sizeof(ans));
	assert_int_equal(f->stats.upstream_dropped, ++dropped);
	/* the right id and socket, another name or type */
	ans[14] = 'x';
	dv_uslot_answer(c, i, ans, sizeof(ans));
	assert_int_equal(f->stats.upstream_dropped, ++dropped);
	ans[14] = 'w';
	ans[sizeof(ans) - 3] = 28;
	dv_uslot_answer(c, i, ans, sizeof(ans));
	assert_int_equal(f->stats.upstream_dropped, ++dropped);
	ans[sizeof(ans) - 3] = 1;
	assert_true(c->slots[i].busy);
	assert_ptr_equal(a->conn, c);
	assert_int_equal(f->server->st.dropped, dropped);
	/* letter case does not matter: "WwW.example.test" is the question */
	ans[13] = 'W';
	ans[15] = 'W';
	assert_true(dv_uslot_asks(c, i, ans, sizeof(ans)));
	dv_uslot_release(c, i);
	assert_false(c->slots[i].busy);
}

/* dv_worker_pools_new builds every server's connections from the config. */
static void test_pool_new(void **state)
{
	static dv_config_t cfg;
	char err[256];
	dv_config_defaults(&cfg);
	cfg.upstream_connections = 3;
	cfg.upstream_max_inflight = 100;
	cfg.udp_max_inflight = 100;
	assert_int_equal(dv_url_parse("tcp://127.0.0.1:5335", DV_URL_UPSTREAM,
				      &cfg.upstream[0], err, sizeof(err)),
			 0);
	assert_int_equal(dv_url_parse("udp://127.0.0.1:5336", DV_URL_UPSTREAM,
				      &cfg.upstream[1], err, sizeof(err)),
			 0);
	assert_int_equal(dv_url_parse("tcp://192.0.2.1:53", DV_URL_UPSTREAM,
				      &cfg.fallback[0], err, sizeof(err)),
			 0);
	cfg.n_upstream = 2;
	cfg.n_fallback = 1;

	dv_worker_t *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	assert_int_equal(dv_worker_pools_new(w, &cfg, &core_report), 0);
	dv_pool_t *p = w->pools[0];
	assert_int_equal(w->n_pools, 1);
	assert_int_equal(p->n_local, 2);
	assert_int_equal(p->n_fallback, 1);
	for (unsigned k = 0; k < 3; k++) {
		dv_server_t *s = &p->servers[k];
		assert_ptr_equal(s->pool, p);
		assert_int_equal(s->fallback, k == 2);
		assert_int_equal(s->n_conns, 3);
		for (unsigned j = 0; j < s->n_conns; j++) {
			assert_ptr_equal(s->conns[j]->ops, &dv_uconn_tcp_ops);
			assert_int_equal(s->conns[j]->n_slots, 128);
			assert_int_equal(s->conns[j]->state, UC_CLOSED);
			assert_ptr_equal(s->conns[j]->server, s);
			check_free_list(s->conns[j], 128);
		}
		assert_null(s->priv);
		if (k < 2) {
			/* udp://, and the loopback tcp:// upstream for its
			 * UDP clients (pool.loopback-udp): UDP, a table as
			 * big as pool.udp-max-inflight, a socket and a random
			 * 16-bit id per slot */
			assert_non_null(s->front);
			assert_true(s->front->ops->lossy);
			assert_int_equal(s->front_all, k == 1);
			assert_int_equal(s->front->n_slots, 128);
			/* loopback: a socket carries several queries */
			assert_int_equal(dv_uconn_udp_reuse(s),
					 cfg.udp_socket_queries);
		} else {
			/* a tcp:// fallback off loopback: TCP only */
			assert_null(s->front);
		}
	}
	assert_null(p->tls); /* no tls:// server, no TLS context */
	dv_worker_pools_free(w);
	/* pool.loopback-udp off: the loopback tcp:// upstream is TCP only */
	cfg.loopback_udp = 0;
	assert_int_equal(dv_worker_pools_new(w, &cfg, &core_report), 0);
	p = w->pools[0];
	assert_null(p->servers[0].front);
	assert_non_null(p->servers[1].front);
	dv_worker_pools_free(w);
	/* a udp:// server outside loopback: a socket per query, whatever
	 * pool.udp-socket-queries says */
	assert_int_equal(dv_url_parse("udp://192.0.2.1:53", DV_URL_UPSTREAM,
				      &cfg.upstream[1], err, sizeof(err)),
			 0);
	cfg.udp_socket_queries = 1000;
	assert_int_equal(dv_worker_pools_new(w, &cfg, &core_report), 0);
	p = w->pools[0];
	assert_non_null(p->servers[1].front);
	assert_int_equal(dv_uconn_udp_reuse(&p->servers[1]), 1);
	dv_worker_pools_free(w);
	dv_pool_free(NULL);
	free(w);
}

/* A throw-away self-signed CA (EC P-256, no key kept): any certificate
 * will do as a trust anchor for building a client context. */
static const char test_ca_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBlDCCATugAwIBAgIUHqyxXdXIwBFGLbCunfrku01m/7QwCgYIKoZIzj0EAwIw\n"
	"HzEdMBsGA1UECgwUZG5zdmVpbCB1bml0IHRlc3QgQ0EwIBcNMjYxMTIyMjExNzIw\n"
	"WhgPMjEyNjEwMjkyMTE3MjBaMB8xHTAbBgNVBAoMFGRuc3ZlaWwgdW5pdCB0ZXN0\n"
	"IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUkOEIDOENkmLagUvglpJLftW\n"
	"Gr7+KZzOjoP9F8VyRfHf4aMtbWAib/1JPHfOhzjxRILbE+vS9eA2Nsc971azhKNT\n"
	"MFEwHQYDVR0OBBYEFMENrKkVfq7zTcON2adoYu7BTtp7MB8GA1UdIwQYMBaAFMEN\n"
	"rKkVfq7zTcON2adoYu7BTtp7MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID\n"
	"RwAwRAIgHK9F54RxpnM9oXWwWOU9DYczdW+eHX6EnL8PFQqvYyACIBRMLY6qSQXh\n"
	"D7GIM+jP6xGlxPAZVZlfgeYMHFl/Jv07\n"
	"-----END CERTIFICATE-----\n";

static void write_tmp(char *path, const char *text)
{
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* A tls:// server makes the pool build a client context from tls.ca; its
 * connections start CLOSED like TCP ones, with no TLS object and no
 * session yet.  A CA file that does not load fails dv_worker_pools_new cleanly. */
static void test_pool_new_tls(void **state)
{
	static dv_config_t cfg;
	char err[256];
	char ca[] = "/tmp/dv-test-ca-XXXXXX";
	char bad[] = "/tmp/dv-test-bad-XXXXXX";
	write_tmp(ca, test_ca_pem);
	write_tmp(bad, "not a certificate\n");
	assert_int_equal(dv_tls_init(3600), 0);

	dv_config_defaults(&cfg);
	cfg.upstream_connections = 2;
	cfg.upstream_max_inflight = 64;
	assert_int_equal(dv_url_parse("tcp://127.0.0.1:5335", DV_URL_UPSTREAM,
				      &cfg.upstream[0], err, sizeof(err)),
			 0);
	assert_int_equal(dv_url_parse("tls://127.0.0.1:8853#dns.test",
				      DV_URL_UPSTREAM, &cfg.fallback[0], err,
				      sizeof(err)),
			 0);
	cfg.n_upstream = 1;
	cfg.n_fallback = 1;
	snprintf(cfg.tls_ca, sizeof(cfg.tls_ca), "%s", ca);

	dv_worker_t *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	assert_int_equal(dv_worker_pools_new(w, &cfg, &core_report), 0);
	dv_pool_t *p = w->pools[0];
	assert_int_equal(w->n_pools, 1);
	assert_non_null(p->tls);
	dv_server_t *s = &p->servers[1];
	assert_int_equal(s->url.scheme, DV_SCHEME_TLS);
	assert_string_equal(s->url.name, "dns.test");
	assert_null(s->front);
	assert_null(s->priv);
	for (unsigned j = 0; j < s->n_conns; j++) {
		dv_ustream_t *sc = (dv_ustream_t *)s->conns[j];
		assert_ptr_equal(sc->c.ops, &dv_uconn_tls_ops);
		assert_true(sc->use_tls);
		assert_int_equal(sc->c.state, UC_CLOSED);
		assert_null(sc->tls);
		assert_int_equal(sc->tls_retry, 0);
		check_free_list(&sc->c, 64);
	}
	dv_worker_pools_free(w);

	snprintf(cfg.tls_ca, sizeof(cfg.tls_ca), "%s", bad);
	assert_int_equal(dv_worker_pools_new(w, &cfg, &core_report), -ENOMEM);
	assert_int_equal(w->n_pools, 0);

	free(w);
	unlink(ca);
	unlink(bad);
	dv_tls_cleanup();
}

/* Only a certificate problem is reported as "did not verify". */
static void test_tls_cert_errors(void **state)
{
	(void)state;
	assert_true(dv_tls_cert_error(-322));  /* DOMAIN_NAME_MISMATCH */
	assert_true(dv_tls_cert_error(-188));  /* ASN_NO_SIGNER_E */
	assert_true(dv_tls_cert_error(-151));  /* ASN_AFTER_DATE_E */
	assert_false(dv_tls_cert_error(-308)); /* SOCKET_ERROR_E */
	assert_false(dv_tls_cert_error(DV_TLS_WANT_READ));
	assert_false(dv_tls_cert_error(-EPIPE));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_conn_init_sizes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_slot_take_all, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_slot_ids_distinct_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_random_high_bits,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp_ids_unpredictable,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp_id_table, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_udp_slot_answer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_slot_random_index, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_udp_lost_answers_release_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handle_answer_ids, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_handle_answer_question,
						setup, teardown),
		cmocka_unit_test(test_pool_new),
		cmocka_unit_test(test_pool_new_tls),
		cmocka_unit_test(test_tls_cert_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The upstream pool's servers: the id slots of their connections, the
 * closing of a connection, the health of each server (health.h), the
 * pool's tick (idle connections, orphaned ids), the pool's making and
 * freeing, and the per-server counters for the stats.  Which module
 * handles a server comes from the registry (registry.c) by its scheme.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/core/rand.h"
#include "src/upstream/uconn.h"

/* ---- slots: id rewriting ---- */

int dv_uconn_init(dv_uconn_t *c, const dv_uconn_ops_t *ops, dv_server_t *s,
		  unsigned max)
{
	uint32_t n = 1;
	unsigned bits = 0;
	while (n < max && bits < 16) {
		n <<= 1;
		bits++;
	}
	c->ops = ops;
	c->server = s;
	c->state = UC_CLOSED;
	c->fd = -1;
	c->n_slots = n;
	c->mask = n - 1;
	c->slots = calloc(n, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		c->slots[i].next_free = i + 1 < n ? i + 1 : NO_SLOT;
		c->slots[i].prev_free = i ? i - 1 : NO_SLOT;
	}
	c->free_head = 0;
	c->id_table = NULL;
	c->flush_queued = false;
	c->flush_next = NULL;
	if (ops->random_ids) {
		c->id_mask = 2 * n - 1;
		c->id_table = malloc(2 * n * sizeof(*c->id_table));
		if (!c->id_table) {
			dv_uconn_deinit(c);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i <= c->id_mask; i++)
			c->id_table[i] = NO_SLOT;
	}
	return 0;
}

void dv_uconn_deinit(dv_uconn_t *c)
{
	free(c->slots);
	c->slots = NULL;
	free(c->id_table);
	c->id_table = NULL;
}

void dv_uconn_connects(dv_uconn_t *c)
{
	DV_STAT_INC(c->server->pool->stats, upstream_connects);
	USTAT_INC(c->server, connects);
}

static void free_unlink(dv_uconn_t *c, uint32_t i)
{
	uslot_t *s = &c->slots[i];
	if (s->prev_free != NO_SLOT)
		c->slots[s->prev_free].next_free = s->next_free;
	else
		c->free_head = s->next_free;
	if (s->next_free != NO_SLOT)
		c->slots[s->next_free].prev_free = s->prev_free;
}

uint32_t dv_upool_rand(dv_pool_t *p)
{
	if (!p->rng.seeded) {
		uint8_t seed[DV_RAND_SEED];
		ssize_t n;
		do
			n = getrandom(seed, sizeof(seed), 0);
		while (n < 0 && errno == EINTR);
		dv_require(n == (ssize_t)sizeof(seed));
		dv_rand_seed(&p->rng, seed);
		memset(seed, 0, sizeof(seed));
	}
	return dv_rand_u32(&p->rng);
}

/*
 * The id table of a connection with random ids: open addressing over
 * 2 x n_slots entries (at most half full), each a busy slot's index or
 * NO_SLOT, probed linearly from the id's hash; a removal shifts the
 * entries after it back, so a lookup stops at the first empty entry.
 */
static uint32_t id_home(const dv_uconn_t *c, uint16_t id)
{
	return ((uint32_t)id * 0x9e3779b1u >> 15) & c->id_mask;
}

uint32_t dv_uconn_slot_of(const dv_uconn_t *c, uint16_t id)
{
	if (!c->id_table) {
		uint32_t i = id & c->mask;
		return c->slots[i].busy && c->slots[i].id == id ? i : NO_SLOT;
	}
	for (uint32_t h = id_home(c, id);; h = (h + 1) & c->id_mask) {
		uint32_t i = c->id_table[h];
		if (i == NO_SLOT || c->slots[i].id == id)
			return i;
	}
}

static void id_insert(dv_uconn_t *c, uint32_t slot)
{
	uint32_t h = id_home(c, c->slots[slot].id);
	while (c->id_table[h] != NO_SLOT)
		h = (h + 1) & c->id_mask;
	c->id_table[h] = slot;
}

static void id_remove(dv_uconn_t *c, uint32_t slot)
{
	uint32_t h = id_home(c, c->slots[slot].id);
	while (c->id_table[h] != slot)
		h = (h + 1) & c->id_mask;
	/* move back each later entry of the run whose home is not in
	 * (h, j]: a lookup from its home must not stop at the hole */
	for (uint32_t j = (h + 1) & c->id_mask;; j = (j + 1) & c->id_mask) {
		uint32_t e = c->id_table[j];
		if (e == NO_SLOT)
			break;
		uint32_t home = id_home(c, c->slots[e].id);
		if (((j - home) & c->id_mask) >= ((j - h) & c->id_mask)) {
			c->id_table[h] = e;
			h = j;
		}
	}
	c->id_table[h] = NO_SLOT;
}

/*
 * Reserve an id.  On a connection with random ids (udp://, where a
 * datagram could be spoofed), all 16 bits of the id are random and
 * independent of the slot, drawn again while another query of the
 * connection has it, so an off-path attacker must guess the whole id and
 * the socket's port; the id table finds the slot.  Elsewhere (TCP, TLS,
 * HTTP/2, QUIC, where nobody off-path can inject) the id finds its slot
 * in O(1): the slot is chosen at random when that one is free (the usual
 * case: tables are mostly empty), else the head of the free list, and the
 * bits above the slot index are random.
 */
uint32_t dv_uslot_take(dv_uconn_t *c, dv_attempt_t *a, uint64_t now)
{
	if (c->free_head == NO_SLOT)
		return NO_SLOT;
	uint32_t rnd = dv_upool_rand(c->server->pool);
	uint32_t i;
	uint16_t id;
	if (c->id_table) {
		i = c->free_head;
		id = (uint16_t)rnd;
		while (dv_uconn_slot_of(c, id) != NO_SLOT)
			id = (uint16_t)dv_upool_rand(c->server->pool);
	} else {
		i = (rnd >> 16) & c->mask;
		if (c->slots[i].busy)
			i = c->free_head;
		id = (uint16_t)((rnd & ~c->mask) | i);
	}
	free_unlink(c, i);
	uslot_t *s = &c->slots[i];
	s->id = id;
	s->att = a;
	s->busy = true;
	s->sent_ms = now;
	c->busy++;
	if (c->id_table)
		id_insert(c, i);
	return i;
}

void dv_uslot_release(dv_uconn_t *c, uint32_t i)
{
	uslot_t *s = &c->slots[i];
	if (c->ops->release)
		c->ops->release(c, i);
	if (c->id_table)
		id_remove(c, i);
	if (s->orphan) {
		s->orphan = false;
		c->orphans--;
	}
	s->att = NULL;
	s->busy = false;
	s->next_free = c->free_head;
	s->prev_free = NO_SLOT;
	if (c->free_head != NO_SLOT)
		c->slots[c->free_head].prev_free = i;
	c->free_head = i;
	c->busy--;
}



/* ---- health ---- */

static void server_publish(dv_server_t *s)
{
	__atomic_store_n(&s->pub_state, (unsigned)s->health.state,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_ewma_us, s->health.ewma_us, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_p95_ms, s->health.p95_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_samples, s->health.n, __ATOMIC_RELAXED);
}

static const dv_health_conf_t *server_hconf(const dv_server_t *s)
{
	return &s->pool->hconf[s->fallback];
}

/* After the health of `s` changed from `old`: say so, count it, and
 * start probing a server that went down. */
static void server_state(dv_server_t *s, dv_health_state_t old)
{
	dv_pool_t *p = s->pool;
	const dv_health_t *h = &s->health;
	server_publish(s);
	if (h->state == old)
		return;
	switch (h->state) {
	case DV_HEALTH_DOWN:
		USTAT_INC(s, went_down);
		s->backoff_ms = p->cfg->reconnect_min_ms;
		dv_log_warn("worker %u: upstream %s%s is down, probing it in "
			    "%u ms",
			    p->index, s->url.text, p->set_note, s->backoff_ms);
		dv_uprobe_schedule(s);
		break;
	case DV_HEALTH_DEGRADED:
		USTAT_INC(s, went_degraded);
		dv_log_info("worker %u: upstream %s%s is degraded (p95 %u "
			    "ms, %u of the last 16 attempts failed)",
			    p->index, s->url.text, p->set_note, h->p95_ms,
			    (unsigned)__builtin_popcount(h->window));
		break;
	default:
		if (old == DV_HEALTH_DOWN)
			dv_log_info("worker %u: upstream %s%s is back",
				    p->index, s->url.text, p->set_note);
		else
			dv_log_info("worker %u: upstream %s%s is up again (p95 "
				    "%u ms)",
				    p->index, s->url.text, p->set_note,
				    h->p95_ms);
		break;
	}
}

/* A connection to `s` could not be opened (refused, unreachable, TLS
 * handshake failed): the server is down. */
void dv_userver_refused(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	USTAT_INC(s, connect_failures);
	dv_health_down(&s->health);
	server_state(s, old);
}

/* An attempt on `s` failed or timed out (an established connection lost
 * counts once, not once per query it carried). */
void dv_userver_failure(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	dv_health_failure(&s->health, server_hconf(s));
	server_state(s, old);
}

/* `s` answered a query `ms` after it went out. */
void dv_userver_answered(dv_server_t *s, uint64_t ms)
{
	dv_health_state_t old = s->health.state;
	USTAT_INC(s, answers);
	dv_lat_observe(&s->latency, ms * 1000);
	dv_health_answer(&s->health, ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms,
			 server_hconf(s));
	server_state(s, old);
}

void dv_userver_up(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	dv_health_up(&s->health, server_hconf(s));
	server_state(s, old);
}

bool dv_userver_usable(const dv_server_t *s)
{
	return s->health.state != DV_HEALTH_DOWN;
}


/* Fail every attempt this connection carries and release all ids. */
static void conn_fail_slots(dv_uconn_t *c)
{
	for (uint32_t i = 0; i < c->n_slots && c->busy; i++) {
		uslot_t *s = &c->slots[i];
		if (!s->busy)
			continue;
		dv_attempt_t *a = s->att;
		dv_uslot_release(c, i);
		if (a) {
			a->conn = NULL;
			if (a->job && !a->job->probe)
				USTAT_INC(c->server, failures);
			dv_uattempt_fail(a, false);
		}
	}
}



/* ---- connections ---- */

void dv_uconn_close(dv_uconn_t *c, bool failure, const char *why)
{
	dv_pool_t *p = c->server->pool;
	if (c->state == UC_CLOSED)
		return;
	bool was_open = c->state == UC_OPEN;
	ev_io_stop(p->loop, &c->rio);
	ev_io_stop(p->loop, &c->wio);
	c->ops->stop(c, was_open);
	if (c->fd >= 0) /* udp:// has sockets per slot only */
		close(c->fd);
	c->fd = -1;
	c->state = UC_CLOSED;
	if (failure || c->busy) {
		dv_log_debug("worker %u: upstream %s: connection closed: %s",
			     p->index, c->server->url.text, why);
		/* a UDP socket fails on ICMP unreachable: nobody there */
		if (!was_open || c->ops->lossy)
			dv_userver_refused(c->server);
		else if (failure)
			dv_userver_failure(c->server);
	}
	conn_fail_slots(c);
}



void dv_uconn_close_retry(dv_uconn_t *c, const char *why)
{
	if (c->state == UC_CLOSED)
		return;
	dv_server_t *srv = c->server;
	/* take the attempts off first: the retries may reopen `c` itself */
	unsigned n = 0, cap = c->busy;
	dv_attempt_t **v = cap ? calloc(cap, sizeof(*v)) : NULL;
	for (uint32_t i = 0; i < c->n_slots && c->busy; i++) {
		uslot_t *s = &c->slots[i];
		if (!s->busy)
			continue;
		dv_attempt_t *a = s->att;
		dv_uslot_release(c, i);
		if (!a)
			continue;
		a->conn = NULL;
		if (v && n < cap)
			v[n++] = a;
		else
			dv_uattempt_fail(a, false); /* no memory to keep it */
	}
	dv_uconn_close(c, false, why);
	for (unsigned i = 0; i < n; i++)
		dv_uattempt_retry(v[i], srv);
	free(v);
}

/* The UDP port of tcp:// server `s`'s front was unreachable (ICMP, or
 * a refused send): the questions it took go over TCP for
 * pool.reconnect-max-ms, then UDP is tried again.  The server itself is
 * not charged: it may well listen on TCP only. */
void dv_userver_front_off(dv_server_t *s)
{
	uint64_t now = now_ms();
	if (now >= s->front_off_until_ms)
		dv_log_info("worker %u: upstream %s: its UDP port is closed: "
			    "queries go over TCP for %u ms",
			    s->pool->index, s->url.text,
			    s->pool->cfg->reconnect_max_ms);
	s->front_off_until_ms = now + s->pool->cfg->reconnect_max_ms;
}

/* ---- the pool ---- */

/* Release the orphaned ids of `c` older than `max_age_ms`: their answers
 * are not coming (the server dropped the queries). */
static void conn_reclaim_orphans(dv_uconn_t *c, uint64_t now,
				 uint64_t max_age_ms)
{
	for (uint32_t i = 0; i < c->n_slots && c->orphans; i++) {
		uslot_t *sl = &c->slots[i];
		if (sl->orphan && now - sl->sent_ms >= max_age_ms)
			dv_uslot_release(c, i);
	}
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_pool_t *p = t->data;
	const dv_config_t *cfg = p->cfg;
	uint64_t now = now_ms();
	uint64_t orphan_age = 2 * (uint64_t)cfg->query_timeout_ms;
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		dv_server_t *s = &p->servers[i];
		/* the UDP front too (it has no socket of its own; its
		 * connect and idle close are counted like a TCP one's) */
		for (unsigned j = 0; j < s->n_conns + (s->front != NULL); j++) {
			dv_uconn_t *c = j < s->n_conns ? s->conns[j] : s->front;
			if (c->orphans)
				conn_reclaim_orphans(c, now, orphan_age);
			if (cfg->upstream_idle_timeout_ms &&
			    c->state == UC_OPEN && c->busy == 0 &&
			    !(c->ops->writing && c->ops->writing(c)) &&
			    now - c->last_rx_ms >= cfg->upstream_idle_timeout_ms) {
				USTAT_INC(s, idle_closed);
				dv_uconn_close(c, false, "idle");
			}
		}
	}
}

static int server_init(dv_pool_t *p, dv_server_t *s, const dv_url_t *url,
		       bool fallback)
{
	const dv_config_t *cfg = p->cfg;
	s->pool = p;
	s->url = *url;
	s->fallback = fallback;
	dv_health_init(&s->health);
	server_publish(s);
	ev_init(&s->probe_timer, dv_uprobe_timer_cb);
	s->probe_timer.data = s;
	s->probe = calloc(1, sizeof(*s->probe));
	if (!s->probe)
		return -ENOMEM;
	s->probe->pool = p;
	s->probe->probe = s;
	s->probe->ede = 0xffff;
	/* the config only holds schemes of the registry (main checks) */
	s->proto = dv_uproto_find(url->scheme);
	if (!s->proto)
		return -EINVAL;
	const dv_uconn_ops_t *ops = s->proto->conn;
	s->n_conns = ops->conns ? ops->conns : cfg->upstream_connections;
	s->conns = calloc(s->n_conns, sizeof(*s->conns));
	if (!s->conns)
		return -ENOMEM;
	for (unsigned i = 0; i < s->n_conns; i++)
		if (!(s->conns[i] = ops->create(s, cfg->upstream_max_inflight)))
			return -ENOMEM;
	/* the UDP front: a udp:// server's, or a local loopback tcp://
	 * server's for every question but probes (pool.loopback-udp) */
	const dv_uconn_ops_t *front = s->proto->front;
	s->front_all = front != NULL;
	if (!front && !fallback && dv_url_has_udp_front(cfg, url))
		front = &dv_uconn_udp_ops;
	if (front && !(s->front = front->create(s, cfg->udp_max_inflight)))
		return -ENOMEM;
	return 0;
}

/* Whether a server of `p` uses the protocol `pr`. */
static bool pool_uses(const dv_pool_t *p, const dv_uproto_t *pr)
{
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++)
		if (p->servers[i].proto == pr)
			return true;
	return false;
}

dv_pool_t *dv_pool_create(const dv_pool_env_t *env, const dv_config_t *cfg,
			  const dv_pool_report_t *report)
{
	dv_pool_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = env->loop;
	p->stats = env->stats;
	p->index = env->index;
	p->cfg = cfg;
	p->report = report;
	p->observe = env->observe;
	p->observe_arg = env->observe_arg;
	dv_upstream_set_t set = env->set;
	if (!set.upstream)
		dv_config_upstream_set(cfg, 0, &set);
	p->n_local = set.n_upstream;
	p->n_fallback = set.n_fallback;
	if (set.name) {
		snprintf(p->set_name_buf, sizeof(p->set_name_buf), "%s",
			 set.name);
		p->set_name = p->set_name_buf;
	}
	if (set.name) /* the logs tell the sets' servers apart */
		snprintf(p->set_note, sizeof(p->set_note), " (set %s)",
			 set.name);
	for (int fb = 0; fb < 2; fb++)
		p->hconf[fb] = (dv_health_conf_t){
			.down_after = cfg->down_after_failures,
			.degraded_failures = cfg->degraded_failures,
			.slow_p95_ms = fb ? 0 : cfg->slow_p95_ms,
		};
	/* the probe: PROBE-NAME NS, RD, no EDNS (id patched per attempt) */
	int n = dv_wire_name_from_text(p->probe_qwire + DV_DNS_HDR,
				       sizeof(p->probe_qwire) - DV_DNS_HDR - 4,
				       cfg->probe_name);
	if (n < 0) /* the config loader checked it */
		n = dv_wire_name_from_text(p->probe_qwire + DV_DNS_HDR, 1, ".");
	dv_put16(p->probe_qwire + 2, DV_FLAG_RD);
	dv_put16(p->probe_qwire + 4, 1);
	dv_put16(p->probe_qwire + DV_DNS_HDR + n, DV_TYPE_NS);
	dv_put16(p->probe_qwire + DV_DNS_HDR + n + 2, DV_CLASS_IN);
	p->probe_qlen = (uint16_t)(DV_DNS_HDR + n + 4);
	ev_init(&p->tick, tick_cb);
	p->tick.data = p;
	dv_upool_drain_init(p);
	p->servers = calloc(p->n_local + p->n_fallback, sizeof(*p->servers));
	if (!p->servers)
		goto fail;
	for (unsigned i = 0; i < p->n_local; i++)
		if (server_init(p, &p->servers[i], &set.upstream[i], false))
			goto fail;
	for (unsigned i = 0; i < p->n_fallback; i++)
		if (server_init(p, &p->servers[p->n_local + i],
				&set.fallback[i], true))
			goto fail;
	/* what the protocols in use share per pool (client TLS contexts), in
	 * registry order */
	const dv_uproto_t *pr;
	for (unsigned i = 0; (pr = dv_uproto_at(i)); i++) {
		if (!pool_uses(p, pr))
			continue;
		if (pr->front && pr->front->pool_init &&
		    pr->front->pool_init(p) < 0)
			goto fail;
		if (pr->conn->pool_init && pr->conn->pool_init(p) < 0)
			goto fail;
	}
	return p;
fail:
	dv_pool_free(p);
	return NULL;
}

void dv_pool_start(dv_pool_t *p)
{
	/* the tick: idle connections and orphaned ids */
	unsigned idle = p->cfg->upstream_idle_timeout_ms;
	double every = idle && idle < 4000 ? idle / 4000.0 : 1.0;
	if (every < 0.05)
		every = 0.05;
	p->tick.repeat = every;
	ev_timer_again(p->loop, &p->tick);

	/* warm the local resolver connections (one HTTP/2 connection carries
	 * many streams: the others open when its streams are full) */
	for (unsigned i = 0; i < p->n_local; i++) {
		dv_server_t *s = &p->servers[i];
		unsigned warm = s->proto->conn->warm;
		unsigned n = warm && warm < s->n_conns ? warm : s->n_conns;
		for (unsigned j = 0; j < n; j++)
			if (s->conns[j]->state == UC_CLOSED &&
			    s->conns[j]->ops->connect(s->conns[j]) < 0)
				break;
	}
}

/* Stop the probe of `s` and free it (the pool is going). */
static void probe_destroy(dv_pool_t *p, dv_server_t *s)
{
	ev_timer_stop(p->loop, &s->probe_timer);
	if (!s->probe)
		return;
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (s->probe->att[i].job)
			dv_uattempt_detach(&s->probe->att[i]);
	free(s->probe);
	s->probe = NULL;
}

void dv_pool_free(dv_pool_t *p)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->tick);
	ev_prepare_stop(p->loop, &p->drain);
	/* probes first: detaching an attempt touches its connection */
	for (unsigned i = 0; p->servers && i < p->n_local + p->n_fallback;
	     i++)
		probe_destroy(p, &p->servers[i]);
	for (unsigned i = 0; p->servers && i < p->n_local + p->n_fallback;
	     i++) {
		dv_server_t *s = &p->servers[i];
		for (unsigned j = 0; s->conns && j < s->n_conns; j++)
			if (s->conns[j])
				s->conns[j]->ops->destroy(s->conns[j]);
		free(s->conns);
		if (s->front)
			s->front->ops->destroy(s->front);
		if (s->proto && s->proto->conn->server_deinit)
			s->proto->conn->server_deinit(s);
	}
	free(p->servers);
	const dv_uproto_t *pr;
	for (unsigned i = 0; (pr = dv_uproto_at(i)); i++) {
		if (pr->front && pr->front->pool_deinit)
			pr->front->pool_deinit(p);
		if (pr->conn->pool_deinit)
			pr->conn->pool_deinit(p);
	}
	free(p);
}

/* ---- stats ---- */

unsigned dv_pool_n_servers(const dv_pool_t *p)
{
	return p->n_local + p->n_fallback;
}

void dv_pool_stats_add(const dv_pool_t *p, unsigned i,
		       dv_upstream_stats_t *u)
{
	const dv_server_t *s = &p->servers[i];
	u->url = s->url.text;
	u->fallback = s->fallback;
	u->set = p->set_name;
	dv_stats_sum_upstream(&u->st, &s->st);
	dv_lat_hist_sum(&u->latency, &s->latency);
	unsigned state = __atomic_load_n(&s->pub_state, __ATOMIC_RELAXED);
	if (state >= DV_HEALTH_STATE_COUNT)
		state = DV_HEALTH_UP;
	u->n_state[state]++;
	if (state > (unsigned)u->state)
		u->state = (dv_health_state_t)state;
	uint64_t ewma = __atomic_load_n(&s->pub_ewma_us, __ATOMIC_RELAXED);
	if (ewma) {
		u->ewma_us += ewma;
		u->ewma_n++;
	}
	uint32_t p95 = __atomic_load_n(&s->pub_p95_ms, __ATOMIC_RELAXED);
	if (p95 > u->p95_ms)
		u->p95_ms = p95;
	u->samples += __atomic_load_n(&s->pub_samples, __ATOMIC_RELAXED);
}

void dv_pool_stats_finish(dv_upstream_stats_t *u)
{
	if (u->ewma_n)
		u->ewma_us /= u->ewma_n;
	u->ewma_n = 0;
}

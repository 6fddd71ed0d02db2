/*
 * The upstream pool's fetch path: a job per fetch (or probe), sent to the
 * best server of the local group, hedged to the fallback group, retried on
 * the next server when an attempt fails, failed when every path has or
 * the deadline passes; answers matched to their attempt; health probes.
 * See pool.h for the model, uconn.h for the connections.  Nothing here
 * knows which protocol a connection speaks: its ops say whether it is
 * lossy (udp://), and then a timeout or a truncated answer is asked again
 * on the same server's stream connections.
 *
 * Health (health.h) is kept per server and per worker (server.c).  Every
 * answer is a latency sample, also the late answer to an attempt whose
 * fetch was answered elsewhere: on connections that are not lossy such an
 * attempt leaves its id reserved as an orphan until the answer comes (or
 * the pool's tick reclaims it), so a slow local server that always loses
 * the race to the fallback is still measured and is seen when it is fast
 * again.  A DOWN server gets only probes (pool.probe-name NS, on its own
 * connections), after reconnect-min-ms and then doubling up to
 * reconnect-max-ms; the first answer to one brings it back, and since the
 * local group is always asked first, its traffic comes back at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/log.h"
/* the core's fetch (f->qwire, f->pool_job) and dv_core_pool_ops_t */
#include "src/core/core.h"
#include "src/upstream/uconn.h"

_Static_assert(DV_FETCH_QWIRE_MAX <= DV_UQUERY_MAX,
	       "a job holds the core's question");

static void fetch_continue(dv_job_t *j, bool was_fallback);
static void probe_failed(dv_server_t *s);

/* ---- attempts ---- */

static dv_attempt_t *attempt_alloc(dv_job_t *j)
{
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (!j->att[i].job)
			return &j->att[i];
	return NULL;
}

static unsigned attempts_active(dv_job_t *j)
{
	unsigned n = 0;
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		n += j->att[i].job != NULL;
	return n;
}

/* Take waiting attempt `a` off its server's queue. */
static void wait_unlink(dv_attempt_t *a)
{
	dv_server_t *s = a->waiting;
	if (a->wprev)
		a->wprev->wnext = a->wnext;
	else
		s->wait_head = a->wnext;
	if (a->wnext)
		a->wnext->wprev = a->wprev;
	else
		s->wait_tail = a->wprev;
	a->waiting = NULL;
	a->wnext = a->wprev = NULL;
	if (--s->pool->n_waiting == 0 && !s->pool->flush_head)
		ev_prepare_stop(s->pool->loop, &s->pool->drain);
}

void dv_uattempt_detach(dv_attempt_t *a)
{
	dv_pool_t *p = a->job->pool;
	ev_timer_stop(p->loop, &a->timer);
	if (a->waiting)
		wait_unlink(a);
	if (a->conn && !a->conn->ops->lossy) {
		/* TCP, TLS, HTTP/2, QUIC: the answer will come unless the
		 * connection dies (which releases every id) or the server
		 * dropped the query (the pool's tick reclaims old orphans):
		 * keep the id, so that the late answer is still a latency
		 * sample of the server. */
		dv_uconn_t *c = a->conn;
		c->slots[a->slot].att = NULL;
		c->slots[a->slot].orphan = true;
		c->orphans++;
		a->conn = NULL;
	} else if (a->conn) {
		/* UDP (lossy): free the id now: an abandoned answer may
		 * never come (lost datagram), and a reserved id would leak.
		 * A late answer then finds a free slot or a new random id and
		 * is ignored; only an answer to the very same question could
		 * be taken, and that one is correct. */
		dv_uslot_release(a->conn, a->slot);
		a->conn = NULL;
	}
	a->job = NULL;
}

static void attempt_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_attempt_t *a = t->data;
	dv_uconn_t *c = a->conn;
	DV_STAT_INC(a->job->pool->stats, upstream_timeouts);
	if (c)
		USTAT_INC(c->server, timeouts);
	/* A TCP connection that has received nothing since this query went
	 * out is stuck (a dead peer without a RST): close it, which fails
	 * this attempt and the others it carries. */
	if (c && !c->ops->lossy &&
	    c->last_rx_ms <= c->slots[a->slot].sent_ms) {
		dv_uconn_close(c, true, "no answer within the upstream timeout");
		return;
	}
	/* A UDP query whose socket's connection has had answers since it
	 * went out: the server is there, this datagram (or its answer) was
	 * lost, e.g. in a full receive buffer of a busy resolver.  It is
	 * asked again over TCP (dv_uattempt_fail), and the server's health
	 * is not charged: counting such losses as failures marks a busy
	 * resolver down and turns the queries of every client into
	 * SERVFAIL. */
	if (c && !(c->ops->lossy && c->last_rx_ms > c->slots[a->slot].sent_ms))
		dv_userver_failure(c->server);
	dv_uattempt_fail(a, true);
}

/* Whether `j` goes to the UDP front connection of `s` (unless
 * `stream_only`): every query of a udp:// server; on a tcp:// server with
 * a front (pool.loopback-udp), every question but the probes (they test
 * the stream connections), unless its UDP port was found closed lately. */
static bool use_front(const dv_server_t *s, const dv_job_t *j,
		      bool stream_only)
{
	if (!s->front || stream_only)
		return false;
	if (s->front_all)
		return true;
	return !j->probe && now_ms() >= s->front_off_until_ms;
}

/* Choose a connection of server `s` with a free id, connecting one if
 * needed: the least busy of its pooled (stream) ones.  NULL when the
 * server cannot take a query now. */
static dv_uconn_t *pick_conn(dv_server_t *s)
{
	dv_uconn_t *best = NULL, *closed = NULL;
	for (unsigned i = 0; i < s->n_conns; i++) {
		dv_uconn_t *c = s->conns[i];
		if (c->state == UC_CLOSED) {
			if (!closed)
				closed = c;
			continue;
		}
		if (c->free_head == NO_SLOT ||
		    (c->ops->draining && c->ops->draining(c)))
			continue;
		if (!best || c->busy < best->busy)
			best = c;
	}
	/* open another connection before piling onto a crowded one (a
	 * pipelined TCP connection as soon as it carries a query) */
	if (closed && (!best || (best->ops->crowded ? best->ops->crowded(best)
						    : best->busy > 0))) {
		if (closed->ops->connect(closed) == 0)
			return closed;
	}
	return best;
}

static void attempt_timeout_start(dv_attempt_t *a)
{
	dv_pool_t *p = a->job->pool;
	ev_timer_init(&a->timer, attempt_timeout_cb,
		      p->cfg->upstream_timeout_ms / 1000.0, 0.);
	a->timer.data = a;
	ev_timer_start(p->loop, &a->timer);
}

/*
 * Put attempt `a` of `j` (free) on connection `c` of server `s`: an id,
 * the question sent.  0, or an error with `a` free again (DV_ELIMIT: no
 * free id; DV_EUPSTREAM: nobody there, counted).  The timer is not
 * started.
 */
static int attempt_send(dv_attempt_t *a, dv_job_t *j, dv_server_t *s,
			dv_uconn_t *c)
{
	dv_pool_t *p = s->pool;
	uint32_t slot = dv_uslot_take(c, a, now_ms());
	if (slot == NO_SLOT)
		return DV_ELIMIT;
	a->job = j;
	a->conn = c;
	a->slot = slot;
	a->fallback = s->fallback;
	dv_put16(j->qwire, c->slots[slot].id);
	/* Nothing here may fail other attempts synchronously: callers hold
	 * the fetch. */
	int ret = c->ops->submit(c, slot, j->qwire, j->qlen);
	if (ret < 0) {
		dv_uslot_release(c, slot);
		a->job = NULL;
		a->conn = NULL;
		if (ret == -ECONNREFUSED) { /* nobody there */
			if (c == s->front && !s->front_all)
				dv_userver_front_off(s);
			else
				dv_userver_refused(s);
			return DV_EUPSTREAM;
		}
		return ret;
	}
	if (!j->probe && p->observe)
		p->observe(p->observe_arg,
			   &(dv_pool_msg_t){.server = &s->url,
					    .query = j->qwire,
					    .query_len = j->qlen});
	if (j->probe)
		USTAT_INC(s, probes);
	else if (s->fallback)
		DV_STAT_INC(p->stats, fallback_queries);
	else
		DV_STAT_INC(p->stats, upstream_queries);
	if (!j->probe)
		USTAT_INC(s, queries);
	return 0;
}

/*
 * Attempt `a` of `j` waits for an id of the UDP front of `s`, at the end
 * of its queue; its timer runs meanwhile (a query that waits the whole
 * pool.timeout-ms goes on to the next server, as a timeout would).
 */
static void attempt_wait(dv_attempt_t *a, dv_job_t *j, dv_server_t *s)
{
	dv_pool_t *p = s->pool;
	a->job = j;
	a->conn = NULL;
	a->slot = NO_SLOT;
	a->fallback = s->fallback;
	a->waiting = s;
	a->wnext = NULL;
	a->wprev = s->wait_tail;
	if (s->wait_tail)
		s->wait_tail->wnext = a;
	else
		s->wait_head = a;
	s->wait_tail = a;
	p->n_waiting++;
	ev_prepare_start(p->loop, &p->drain);
	attempt_timeout_start(a);
}

/* Send `j` on server `s` (stream_only: not on its lossy front
 * connection).  Returns 0 when an attempt is in flight. */
static int attempt_start(dv_job_t *j, dv_server_t *s, bool stream_only)
{
	dv_attempt_t *a = attempt_alloc(j);
	if (!a)
		return DV_ELIMIT;
	/* a down server gets probes only */
	if (!j->probe && !dv_userver_usable(s))
		return DV_EUPSTREAM;
	dv_uconn_t *c;
	if (use_front(s, j, stream_only)) {
		c = s->front;
		if (c->state == UC_CLOSED && c->ops->connect(c) < 0)
			return DV_EUPSTREAM;
		/* at pool.udp-max-inflight: wait for an id (in order) rather
		 * than overflow the resolver's receive buffer */
		if (c->free_head == NO_SLOT || s->wait_head) {
			attempt_wait(a, j, s);
			return 0;
		}
	} else if (!(c = pick_conn(s))) {
		return DV_EUPSTREAM;
	}
	int ret = attempt_send(a, j, s, c);
	if (ret < 0 && c == s->front && !s->front_all &&
	    ret == DV_EUPSTREAM && !stream_only)
		/* the port is closed: TCP, as before the front */
		return attempt_start(j, s, true);
	if (ret < 0)
		return ret;
	attempt_timeout_start(a);
	return 0;
}

void dv_uconn_want_flush(dv_uconn_t *c)
{
	dv_pool_t *p = c->server->pool;
	if (c->flush_queued)
		return;
	c->flush_queued = true;
	c->flush_next = p->flush_head;
	p->flush_head = c;
	ev_prepare_start(p->loop, &p->drain);
}

/* The queued output of every connection that has some; one that a flush
 * closes may queue again (its attempts retried): the list is taken until
 * it stays empty. */
static void flush_all(dv_pool_t *p)
{
	while (p->flush_head) {
		dv_uconn_t *c = p->flush_head;
		p->flush_head = c->flush_next;
		c->flush_next = NULL;
		c->flush_queued = false;
		c->ops->flush(c);
	}
}

static void drain_waiting(dv_pool_t *p)
{
	struct ev_loop *loop = p->loop;
	for (unsigned i = 0; i < p->n_local + p->n_fallback && p->n_waiting;
	     i++) {
		dv_server_t *s = &p->servers[i];
		dv_uconn_t *c = s->front;
		while (s->wait_head && c->free_head != NO_SLOT) {
			dv_attempt_t *a = s->wait_head;
			dv_job_t *j = a->job;
			ev_timer_stop(loop, &a->timer);
			wait_unlink(a);
			a->job = NULL;
			if (!use_front(s, j, false)) {
				/* its UDP port was found closed meanwhile */
				if (attempt_start(j, s, true) != 0)
					fetch_continue(j, s->fallback);
				continue;
			}
			if (c->state == UC_CLOSED && c->ops->connect(c) < 0) {
				/* the attempt is over: the next path */
				fetch_continue(j, s->fallback);
				continue;
			}
			int ret = attempt_send(a, j, s, c);
			if (ret == 0) {
				attempt_timeout_start(a);
			} else if (!s->front_all && ret == DV_EUPSTREAM &&
				   attempt_start(j, s, true) == 0) {
				/* the port is closed: asked over TCP */
			} else {
				fetch_continue(j, s->fallback);
			}
		}
	}
}

/* The pool's drain (an ev_prepare, once per loop turn while attempts
 * wait or output is queued).  Sends the waiting attempts of every server,
 * oldest first, on the ids its front connection has free now; then every
 * connection's queued output, theirs included (a watcher started in the
 * prepare phase would not run before the worker sleeps). */
static void drain_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	dv_pool_t *p = w->data;
	drain_waiting(p);
	flush_all(p);
	if (!p->n_waiting)
		ev_prepare_stop(loop, w);
}

void dv_upool_drain_init(dv_pool_t *p)
{
	ev_prepare_init(&p->drain, drain_cb);
	p->drain.data = p;
}

/*
 * Send `j` to the best usable server of a group it has not tried yet
 * (dv_health_pick: health, then latency); the group's first try of a
 * fetch is, for pool.explore-pct of the fetches, sent to another server
 * instead.  Returns the server that took it, or NULL.
 */
static dv_server_t *group_next(dv_job_t *j, bool fallback)
{
	dv_pool_t *p = j->pool;
	unsigned base = fallback ? p->n_local : 0;
	unsigned n = fallback ? p->n_fallback : p->n_local;
	uint32_t *tried = fallback ? &j->tried_fallback : &j->tried_local;
	const dv_health_t *hs[DV_MAX_URLS];
	if (n > DV_MAX_URLS)
		n = DV_MAX_URLS;
	for (unsigned i = 0; i < n; i++)
		hs[i] = &p->servers[base + i].health;
	bool explore = false;
	unsigned pct = p->cfg->explore_pct;
	if (*tried == 0 && pct && n > 1) {
		uint64_t k = ++p->explore_n[fallback];
		explore = k * pct / 100 != (k - 1) * pct / 100;
	}
	for (;;) {
		int i = dv_health_pick(hs, n, *tried, explore,
				       p->explore_rot[fallback]);
		if (i < 0)
			return NULL;
		*tried |= UINT32_C(1) << i;
		dv_server_t *s = &p->servers[base + (unsigned)i];
		if (attempt_start(j, s, false) == 0) {
			if (explore) {
				DV_STAT_INC(p->stats, explored);
				p->explore_rot[fallback]++;
			}
			return s;
		}
		explore = false;
	}
}

static void start_fallback(dv_job_t *j)
{
	if (j->fallback_started)
		return;
	j->fallback_started = true;
	ev_timer_stop(j->pool->loop, &j->hedge);
	if (j->local_only) {
		/* an internal name: the local group's answer or SERVFAIL */
		if (j->pool->n_fallback && !j->kept) {
			j->kept = true;
			DV_STAT_INC(j->pool->stats, internal_kept);
		}
		return;
	}
	group_next(j, true);
}

/* Every path of `j` has failed: SERVFAIL with the EDE. */
static void fetch_failed(dv_job_t *j)
{
	if (j->local_only)
		j->pool->report->fail(j->fetch,
				      j->ede != 0xffff
					      ? j->ede
					      : DV_EDE_NO_REACHABLE_AUTHORITY,
				      "internal name: no local upstream could "
				      "answer (the fallback is not asked)");
	else
		j->pool->report->fail(j->fetch,
				      j->ede != 0xffff ? j->ede
						       : DV_EDE_NETWORK_ERROR,
				      "no upstream could answer");
}

/* After an attempt ended without a good answer: the next path, or fail. */
static void fetch_continue(dv_job_t *j, bool was_fallback)
{
	dv_pool_t *p = j->pool;
	if (j->probe) { /* a probe is for its one server only */
		probe_failed(j->probe);
		return;
	}
	if (!was_fallback) {
		if (!group_next(j, false))
			start_fallback(j);
	} else {
		group_next(j, true);
	}
	if (attempts_active(j))
		return;
	/* nothing in flight and nothing left to try */
	if (!j->fallback_started && p->n_fallback) {
		start_fallback(j);
		if (attempts_active(j))
			return;
	}
	fetch_failed(j);
}

void dv_uattempt_fail(dv_attempt_t *a, bool timeout)
{
	dv_job_t *j = a->job;
	if (!j)
		return;
	if (j->probe) {
		dv_server_t *s = j->probe;
		dv_uattempt_detach(a);
		probe_failed(s);
		return;
	}
	bool fb = a->fallback;
	dv_server_t *srv = a->conn ? a->conn->server : NULL;
	bool lost_datagram = timeout && a->conn && a->conn->ops->lossy;
	DV_STAT_INC(j->pool->stats, upstream_failures);
	dv_uattempt_detach(a);
	/* a UDP query or its answer may just have been lost: ask the same
	 * server again on its stream connections (TCP) before giving up on
	 * it */
	if (lost_datagram && attempt_start(j, srv, true) == 0)
		return;
	fetch_continue(j, fb);
}

static void hedge_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_job_t *j = t->data;
	DV_STAT_INC(j->pool->stats, hedged);
	start_fallback(j);
	if (!attempts_active(j))
		fetch_failed(j);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_job_t *j = t->data;
	DV_STAT_INC(j->pool->stats, deadline_expired);
	const char *why = j->local_only ? "internal name: the local upstreams "
					  "did not answer in time (the "
					  "fallback is not asked)"
					: "upstreams did not answer in time";
	j->pool->report->fail(j->fetch, DV_EDE_NO_REACHABLE_AUTHORITY, why);
}

/* ---- health probes ---- */

static bool probe_in_flight(dv_server_t *s)
{
	return s->probe && attempts_active(s->probe) > 0;
}

/* A probe got no answer: the next one later, after a longer pause. */
static void probe_failed(dv_server_t *s)
{
	const dv_config_t *cfg = s->pool->cfg;
	if (s->backoff_ms == 0)
		s->backoff_ms = cfg->reconnect_min_ms;
	else if (s->backoff_ms < cfg->reconnect_max_ms / 2)
		s->backoff_ms *= 2;
	else
		s->backoff_ms = cfg->reconnect_max_ms;
	dv_uprobe_schedule(s);
}

/* A DOWN server: the next probe after backoff_ms (unless one is in
 * flight or due already). */
void dv_uprobe_schedule(dv_server_t *s)
{
	struct ev_loop *loop = s->pool->loop;
	if (s->health.state != DV_HEALTH_DOWN || !s->probe || !loop ||
	    probe_in_flight(s) || ev_is_active(&s->probe_timer))
		return;
	ev_timer_set(&s->probe_timer, s->backoff_ms / 1000.0, 0.);
	ev_timer_start(loop, &s->probe_timer);
}

void dv_uprobe_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_server_t *s = t->data;
	dv_pool_t *p = s->pool;
	dv_job_t *j = s->probe;
	if (s->health.state != DV_HEALTH_DOWN || probe_in_flight(s))
		return;
	memcpy(j->qwire, p->probe_qwire, p->probe_qlen);
	j->qlen = p->probe_qlen;
	/* not even sent (connect refused at once): a failed probe */
	if (attempt_start(j, s, false) != 0)
		probe_failed(s);
}

/* A probe was answered (any rcode): the server is back. */
static void probe_answered(dv_server_t *s)
{
	USTAT_INC(s, probe_answers);
	ev_timer_stop(s->pool->loop, &s->probe_timer);
	s->backoff_ms = 0;
	dv_userver_up(s);
}

/* ---- answers ---- */

/* An answer that is for no query in flight (a late answer to an id since
 * released, a spoofing attempt, a confused server): dropped, counted. */
static void answer_dropped(dv_uconn_t *c)
{
	DV_STAT_INC(c->server->pool->stats, upstream_dropped);
	USTAT_INC(c->server, dropped);
}

void dv_uconn_answer(dv_uconn_t *c, const uint8_t *wire, size_t len)
{
	if (len < DV_DNS_HDR)
		return;
	dv_uslot_answer(c, dv_get16(wire) & c->mask, wire, len);
}

bool dv_uslot_answer(dv_uconn_t *c, uint32_t i, const uint8_t *wire,
		     size_t len)
{
	dv_pool_t *p = c->server->pool;
	if (len < DV_DNS_HDR)
		return false;
	uslot_t *s = i < c->n_slots ? &c->slots[i] : NULL;
	if (!s || !s->busy || s->id != dv_get16(wire)) {
		answer_dropped(c);
		return false;
	}
	uint64_t sent_ms = s->sent_ms;
	dv_attempt_t *a = s->att;
	if (!a) { /* abandoned (the fetch finished elsewhere) */
		dv_uslot_release(c, i);
		USTAT_INC(c->server, late);
		dv_userver_answered(c->server, now_ms() - sent_ms);
		return true;
	}
	dv_job_t *j = a->job;
	if (!dv_wire_question_matches(wire, len, j->qwire, j->qlen)) {
		/* not ours: keep waiting for the real answer */
		answer_dropped(c);
		return false;
	}
	dv_uslot_release(c, i);
	a->conn = NULL;
	/* any answer says the server is there, and how fast */
	dv_server_t *srv = c->server;
	dv_userver_answered(srv, now_ms() - sent_ms);
	if (j->probe) {
		dv_uattempt_detach(a);
		probe_answered(srv);
		return true;
	}

	if (p->observe)
		p->observe(p->observe_arg,
			   &(dv_pool_msg_t){.server = &srv->url,
					    .query = j->qwire,
					    .query_len = j->qlen,
					    .answer = wire,
					    .answer_len = len,
					    .rtt_us = (now_ms() - sent_ms) *
						      1000});
	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(wire, len, &r);
	if (ret != 0 && ret != DV_ELIMIT) {
		dv_uattempt_fail(a, false);
		return true;
	}
	/* truncated: the pool asks the same server again on its stream
	 * connections */
	if (c->ops->lossy && (r.flags & DV_FLAG_TC)) {
		DV_STAT_INC(p->stats, upstream_tc_retries);
		dv_uattempt_detach(a);
		if (attempt_start(j, srv, true) == 0)
			return true;
		fetch_continue(j, srv->fallback);
		return true;
	}
	uint8_t rcode = DV_RCODE(r.flags);
	/* the local resolver's REFUSED is its policy: final, unless
	 * pool.refused-is-final is off */
	bool final = rcode == DV_RCODE_REFUSED && !srv->fallback &&
		     p->cfg->refused_is_final;
	if (final)
		DV_STAT_INC(p->stats, upstream_refused_final);
	if (rcode != DV_RCODE_NOERROR && rcode != DV_RCODE_NXDOMAIN && !final) {
		USTAT_INC(srv, errors);
		if (r.ede_code != 0xffff)
			j->ede = r.ede_code;
		dv_uattempt_fail(a, false);
		return true;
	}
	DV_STAT_INC(p->stats, upstream_answers);
	USTAT_INC(srv, won);
	/* the fetch is freed (and every attempt detached) by its owner */
	j->fetch->upstream = srv->url.text;
	p->report->answer(j->fetch, wire, len, &r);
	return true;
}


/* ---- for the modules: how a query without an answer ends ---- */

void dv_uslot_fail(dv_uconn_t *c, uint32_t i, bool timeout)
{
	dv_attempt_t *a = c->slots[i].att;
	dv_uslot_release(c, i);
	if (!a)
		return; /* an orphan: its fetch ended elsewhere */
	a->conn = NULL;
	dv_uattempt_fail(a, timeout);
}

void dv_uslot_retry(dv_uconn_t *c, uint32_t i)
{
	dv_attempt_t *a = c->slots[i].att;
	dv_server_t *srv = c->server;
	dv_uslot_release(c, i);
	if (!a)
		return;
	a->conn = NULL;
	dv_job_t *j = a->job;
	dv_uattempt_detach(a);
	if (attempt_start(j, srv, true) == 0)
		return;
	fetch_continue(j, srv->fallback);
}

#define JOB_MAX_RETRIES 8

void dv_uattempt_retry(dv_attempt_t *a, dv_server_t *srv)
{
	dv_job_t *j = a->job;
	if (!j)
		return;
	dv_pool_t *p = j->pool;
	double left = j->probe ? 0. : ev_timer_remaining(p->loop, &j->deadline);
	/* time for at least a quarter of an attempt (and its handshake) */
	if (j->probe || j->retries >= JOB_MAX_RETRIES ||
	    left * 4000. < p->cfg->upstream_timeout_ms) {
		dv_uattempt_fail(a, false);
		return;
	}
	j->retries++;
	DV_STAT_INC(p->stats, upstream_retries);
	dv_uattempt_detach(a);
	if (attempt_start(j, srv, true) == 0)
		return;
	fetch_continue(j, srv->fallback);
}

bool dv_uslot_asks(const dv_uconn_t *c, uint32_t i, const uint8_t *msg,
		   size_t len)
{
	const dv_attempt_t *a = c->slots[i].att;
	if (!a)
		return true;
	return dv_wire_question_matches(msg, len, a->job->qwire,
					a->job->qlen);
}

/* ---- fetches ---- */

void dv_pool_fetch_start(dv_pool_t *p, dv_fetch_t *f)
{
	struct ev_loop *loop = p->loop;
	const dv_config_t *cfg = p->cfg;
	dv_job_t *j = calloc(1, sizeof(*j));
	f->pool_job = j;
	if (!j) {
		p->report->fail(f, DV_EDE_OTHER, "out of memory");
		return;
	}
	j->pool = p;
	p->n_jobs++;
	j->fetch = f;
	j->ede = 0xffff;
	j->local_only = f->local_only;
	memcpy(j->qwire, f->qwire, f->qlen);
	j->qlen = f->qlen;
	ev_timer_init(&j->deadline, deadline_cb, cfg->query_timeout_ms / 1000.0,
		      0.);
	j->deadline.data = j;
	ev_timer_start(loop, &j->deadline);
	ev_timer_init(&j->hedge, hedge_cb, cfg->hedge_delay_ms / 1000.0, 0.);
	j->hedge.data = j;
	/* (an internal name goes the same way: start_fallback() keeps it
	 * from the fallback group and counts it) */
	dv_server_t *local = group_next(j, false);
	if (local && p->n_fallback && cfg->hedge_delay_ms &&
	    local->health.state == DV_HEALTH_DEGRADED) {
		/* slow or flaky: no point waiting for the hedge delay */
		DV_STAT_INC(p->stats, fallback_degraded);
		start_fallback(j);
	} else if (!local || (p->n_fallback && cfg->hedge_delay_ms == 0)) {
		if (p->n_fallback) {
			start_fallback(j);
		}
		if (!attempts_active(j)) {
			fetch_failed(j);
			return;
		}
	} else if (p->n_fallback) {
		ev_timer_start(loop, &j->hedge);
	}
}

/* Stop the timers and attempts of `j`, and free it. */
static void job_free(dv_job_t *j)
{
	dv_pool_t *p = j->pool;
	ev_timer_stop(p->loop, &j->deadline);
	ev_timer_stop(p->loop, &j->hedge);
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (j->att[i].job)
			dv_uattempt_detach(&j->att[i]);
	p->n_jobs--;
	free(j);
}

unsigned dv_pool_jobs(const dv_pool_t *p)
{
	return p->n_jobs;
}

void dv_pool_set_config(dv_pool_t *p, const dv_config_t *cfg)
{
	p->cfg = cfg;
}

void dv_pool_fetch_cancel(dv_pool_t *p, dv_fetch_t *f)
{
	(void)p;
	dv_job_t *j = f->pool_job;
	f->pool_job = NULL;
	if (j)
		job_free(j);
}

static void core_fetch_start(void *pool, dv_fetch_t *f)
{
	dv_pool_fetch_start(pool, f);
}

static void core_fetch_cancel(void *pool, dv_fetch_t *f)
{
	dv_pool_fetch_cancel(pool, f);
}

const struct dv_core_pool_ops dv_pool_core_ops = {
	.fetch_start = core_fetch_start,
	.fetch_cancel = core_fetch_cancel,
};


/*
 * Unit tests for how the DoQ client engine (src/proto/doq_client.c) copes
 * with servers' stream limits, against the DoQ server engine with the
 * switches that imitate them (max_unfinished, max_streams_total:
 * src/proto/doq_server_limits.c): knotd (Knot DNS 3.4) drops a connection
 * without a word when a stream is 10 past its oldest unfinished one, and
 * never raises its first credit of 1,024 streams.
 *
 * Client and server engines talk in memory on a fake clock, through a
 * fake network that delays every datagram by LAT one way and can drop
 * everything from a moment on.  The clock jumps from event to event (the
 * engines' expiries, datagrams' arrivals, answers the server holds), so
 * the times the tests check are exact.  They check:
 *  - the credit: a query beyond a credit that is never raised is not sent,
 *    and ends NO_CREDIT two probe timeouts (PTO) after the last stream
 *    ended;
 *  - the client's stream window (max_window): within it, a server with a
 *    larger max_unfinished answers everything (it counts a stream until
 *    the ACK of its answer arrives, as knotd does); past it, the server falls
 *    silent and the client gives the connection up after silent_ptos
 *    PTOs, its queries ending CONN_CLOSED with close info `silent` (what
 *    conn_quic retries on a fresh connection);
 *  - what dv_doq_client_load reports;
 *  - the server's limits at 0 (the daemon's) limit nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "fuzz/quic_test.h"
#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/proto/doq_client.h"
#include "src/proto/doq_server.h"
/* the server's own streams: which are unfinished (knotd's count) */
#include "src/proto/doq_server_int.h"

#define MSEC 1000000ull
#define LAT (5 * MSEC) /* one way */
#define WALL0 1700000000000000000ull
#define NQ 64 /* queries in a test, at most */
#define NDG 512 /* datagrams in flight one way, at most */
#define STEPS 20000 /* events in a run, at most */

typedef struct {
	uint8_t data[DV_DOQ_SERVER_RX_MAX];
	size_t len;
	uint64_t at; /* arrives */
} dgram_t;

typedef struct {
	dgram_t d[NDG];
	unsigned head, n; /* a ring, in order of arrival */
	unsigned dropped;
} wire_t;

typedef struct {
	dv_doq_sstream_t *s;
	int64_t id;
	uint64_t at; /* the query arrived */
	uint8_t msg[512];
	size_t len;
} held_t;

typedef struct {
	bool ended;
	dv_doq_end_t how;
	int64_t id;
	uint64_t at; /* ended */
	unsigned messages;
} qres_t;

typedef struct net net_t;
struct net {
	uint64_t now;
	/* the server */
	dv_doq_server_t *srv;
	dv_stats_t st;
	uint8_t txbuf[DV_DOQ_SERVER_TX_MAX];
	dv_doq_sconn_t *sconn;
	uint64_t stimer;
	held_t held[NQ];
	unsigned n_held, n_queries;
	bool at_once;
	/* how long the server holds the answer to stream `id` */
	uint64_t (*hold)(int64_t id);
	char failure[160];
	uint64_t sconn_ended; /* when the server ended its connection */
	bool silenced;
	uint64_t silenced_at;
	unsigned tx_after_silence; /* datagrams the server sent since */
	/* the network */
	wire_t to_server, to_client;
	bool drop; /* from the server's silence on, nothing gets through */
	bool reach_server; /* ... except to the server, if set */
	dv_quic_path_t spath, cpath;
	/* the client */
	dv_doq_client_t *c;
	unsigned nq, ends;
	qres_t q[NQ];
	uint64_t last_fin; /* when the latest answer ended its stream */
	uint64_t last_tx; /* when the client last sent */
	/* the most seen after any event */
	uint64_t max_window; /* the client's (dv_doq_load_t.window) */
	int64_t max_span; /* the server's: oldest unfinished to newest */
};

static char cert_dir[256], cert_file[256], key_file[256];
static dv_quic_tls_ctx_t *server_tls, *client_tls;
static const uint8_t secret[32] = { 7, 7, 7 };

/* ---- the network ---- */

static void wire_push(wire_t *w, bool drop, const uint8_t *d, size_t len,
		      uint64_t at)
{
	if (drop) {
		w->dropped++;
		return;
	}
	assert_true(w->n < NDG && len <= sizeof(w->d[0].data));
	dgram_t *g = &w->d[(w->head + w->n++) % NDG];
	memcpy(g->data, d, len);
	g->len = len;
	g->at = at;
}

static dgram_t *wire_due(wire_t *w, uint64_t now)
{
	if (!w->n || w->d[w->head].at > now)
		return NULL;
	dgram_t *g = &w->d[w->head];
	w->head = (w->head + 1) % NDG;
	w->n--;
	return g;
}

static uint64_t wire_next(const wire_t *w)
{
	return w->n ? w->d[w->head].at : UINT64_MAX;
}

/* ---- the server's callbacks ---- */

static uint8_t *s_tx_buf(void *app)
{
	return ((net_t *)app)->txbuf;
}

static void s_tx_send(void *app, size_t len, const struct sockaddr *peer,
		      socklen_t peer_len, const struct sockaddr *local)
{
	(void)peer;
	(void)peer_len;
	(void)local;
	net_t *n = app;
	if (n->silenced)
		n->tx_after_silence++;
	wire_push(&n->to_client, n->drop, n->txbuf, len, n->now + LAT);
}

/* The answer: the query with QR set. */
static void answer(net_t *n, dv_doq_sstream_t *s, const uint8_t *msg,
		   size_t len)
{
	uint8_t a[512];
	memcpy(a, msg, len);
	a[2] |= 0x80;
	dv_doq_server_answer(s, a, len, n->now);
}

static int s_query(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
		   int64_t stream_id, const uint8_t *msg, size_t len)
{
	net_t *n = app;
	n->sconn = c;
	n->n_queries++;
	if (n->at_once) {
		answer(n, s, msg, len);
		return 0;
	}
	assert_true(n->n_held < NQ && len <= sizeof(n->held[0].msg));
	held_t *h = &n->held[n->n_held++];
	h->s = s;
	h->id = stream_id;
	h->at = n->now;
	memcpy(h->msg, msg, len);
	h->len = len;
	return 0;
}

static void s_timer(void *app, dv_doq_sconn_t *c, uint64_t at)
{
	net_t *n = app;
	n->sconn = c;
	n->stimer = at;
}

static void s_conn_end(void *app, dv_doq_sconn_t *c)
{
	net_t *n = app;
	if (n->sconn == c) {
		n->sconn = NULL;
		n->stimer = UINT64_MAX;
	}
	n->sconn_ended = n->now;
}

static void s_failure(void *app, dv_doq_sconn_t *c, const char *what,
		      const char *why)
{
	(void)c;
	net_t *n = app;
	snprintf(n->failure, sizeof(n->failure), "%s: %s", what, why);
	if (strcmp(what, "silenced") == 0 && !n->silenced) {
		/* knotd forgot the connection: nothing more gets through */
		n->silenced = true;
		n->silenced_at = n->now;
		n->drop = true;
	}
}

static const dv_doq_server_callbacks_t server_cb = {
	.tx_buf = s_tx_buf,
	.tx_send = s_tx_send,
	.on_query = s_query,
	.on_timer = s_timer,
	.on_conn_end = s_conn_end,
	.on_failure = s_failure,
};

/* ---- the client's callbacks ---- */

static qres_t *q_of(net_t *n, void *query)
{
	uintptr_t i = (uintptr_t)query;
	assert_true(i >= 1 && i <= n->nq);
	return &n->q[i - 1];
}

static void c_message(void *app, void *query, int64_t stream_id,
		      const uint8_t *msg, size_t len, uint64_t sent_at,
		      uint64_t now)
{
	(void)stream_id;
	(void)sent_at;
	(void)now;
	net_t *n = app;
	qres_t *q = q_of(n, query);
	assert_true(len > DV_DNS_HDR);
	assert_true(msg[2] & 0x80);
	q->messages++;
}

static void c_end(void *app, void *query, int64_t stream_id,
		  const dv_doq_result_t *res, uint64_t now)
{
	net_t *n = app;
	qres_t *q = q_of(n, query);
	assert_false(q->ended); /* one end per query */
	q->ended = true;
	q->how = res->how;
	q->id = stream_id;
	q->at = now;
	n->ends++;
	if (res->how == DV_DOQ_END_FIN)
		n->last_fin = now;
}

static const dv_doq_callbacks_t client_cb = {
	.on_message = c_message,
	.on_end = c_end,
};

/* ---- the pair ---- */

typedef struct {
	unsigned max_streams; /* the server's credit at a time */
	uint64_t max_streams_total; /* the server's switches */
	unsigned max_unfinished;
	unsigned max_window; /* the client's */
	unsigned silent_ptos;
	uint64_t query_timeout;
	bool reach_server; /* net_t.reach_server */
} setup_t;

static void net_init(net_t *n, const setup_t *su)
{
	memset(n, 0, sizeof(*n));
	n->reach_server = su->reach_server;
	n->now = 1000 * MSEC;
	n->stimer = UINT64_MAX;
	dv_test_server_path(&n->spath, false);
	n->cpath.local = n->spath.remote;
	n->cpath.local_len = n->spath.remote_len;
	n->cpath.remote = n->spath.local;
	n->cpath.remote_len = n->spath.local_len;
	dv_doq_server_config_t cfg;
	dv_test_server_config(&cfg, server_tls, &n->st, secret, sizeof(secret),
			      16, DV_DOQ_SERVER_RETRY_NEVER);
	cfg.max_streams = su->max_streams;
	cfg.max_streams_total = su->max_streams_total;
	cfg.max_unfinished = su->max_unfinished;
	cfg.read_timeout_ms = 10000; /* held answers are not slow queries */
	n->srv = dv_doq_server_new(&cfg, &server_cb, n);
	assert_non_null(n->srv);
	dv_doq_config_t ccfg = {
		.tls = client_tls,
		.name = DV_TEST_CERT_NAME,
		.query_timeout = su->query_timeout ? su->query_timeout
						   : 5000 * MSEC,
		.handshake_timeout = 5000 * MSEC,
		.max_window = su->max_window,
		.silent_ptos = su->silent_ptos,
	};
	char err[256];
	n->c = dv_doq_client_new(&ccfg, &client_cb, n, &n->cpath, n->now, err,
				 sizeof(err));
	assert_non_null(n->c);
}

static void net_free(net_t *n)
{
	dv_doq_client_free(n->c);
	dv_doq_server_free(n->srv);
}

static int submit(net_t *n)
{
	uint8_t q[512];
	int len = dv_doq_build_query(q, sizeof(q), "www.example.test", 1, 0,
				     false);
	assert_true(len > 0 && n->nq < NQ);
	n->nq++;
	int rv = dv_doq_client_submit(n->c, q, (size_t)len, 0, 0,
				      (void *)(uintptr_t)n->nq, n->now);
	if (rv != 0)
		n->nq--;
	return rv;
}

static void submit_n(net_t *n, unsigned k)
{
	for (unsigned i = 0; i < k; i++)
		assert_int_equal(submit(n), 0);
}

/* The server's streams from the oldest unfinished one to the newest
 * (knotd's count), 0 if none. */
static int64_t server_span(net_t *n)
{
	if (!n->sconn)
		return 0;
	int64_t lo = INT64_MAX, hi = -1;
	for (const doq_stream_t *s = n->sconn->streams; s; s = s->all_next) {
		if (s->closed)
			continue;
		if (s->out.id < lo)
			lo = s->out.id;
		if (s->out.id > hi)
			hi = s->out.id;
	}
	return hi < 0 ? 0 : (hi - lo) / 4 + 1;
}

static void measure(net_t *n)
{
	dv_doq_load_t ld;
	dv_doq_client_load(n->c, &ld);
	if (ld.window > n->max_window)
		n->max_window = ld.window;
	int64_t span = server_span(n);
	if (span > n->max_span)
		n->max_span = span;
}

static void client_flush(net_t *n)
{
	uint8_t buf[2048];
	void *ctx;
	int len;
	while ((len = dv_doq_client_write(n->c, buf, sizeof(buf), &ctx,
					  n->now)) > 0) {
		n->last_tx = n->now;
		wire_push(&n->to_server, n->drop && !n->reach_server, buf,
			  (size_t)len, n->now + LAT);
	}
}

/* The server answers what it has held long enough; when the next one is
 * due, or UINT64_MAX. */
static uint64_t answer_due(net_t *n)
{
	uint64_t next = UINT64_MAX;
	unsigned k = 0;
	if (n->silenced) { /* knotd forgot them with the connection */
		n->n_held = 0;
		return next;
	}
	for (unsigned i = 0; i < n->n_held; i++) {
		held_t *h = &n->held[i];
		uint64_t due = h->at + (n->hold ? n->hold(h->id) : 0);
		if (due <= n->now) {
			answer(n, h->s, h->msg, h->len);
			continue;
		}
		if (due < next)
			next = due;
		n->held[k++] = *h;
	}
	n->n_held = k;
	return next;
}

/* One event: the clock moves to the earliest of the engines' timers,
 * the datagrams' arrivals and the held answers, and it happens.  False
 * when nothing is left to happen. */
static bool step(net_t *n)
{
	client_flush(n);
	measure(n);
	uint64_t next = dv_doq_client_expiry(n->c);
	uint64_t t[] = { n->stimer, wire_next(&n->to_server),
			 wire_next(&n->to_client), answer_due(n) };
	client_flush(n); /* answers given now went out */
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i] < next)
			next = t[i];
	if (next == UINT64_MAX)
		return false;
	if (next > n->now)
		n->now = next;
	dgram_t *g;
	while ((g = wire_due(&n->to_server, n->now)))
		dv_doq_server_read(n->srv, &n->spath, g->data, g->len, n->now,
				   WALL0 + n->now);
	while ((g = wire_due(&n->to_client, n->now)))
		(void)dv_doq_client_read(n->c, &n->cpath, g->data, g->len,
					 n->now);
	if (n->stimer <= n->now && n->sconn) {
		n->stimer = UINT64_MAX;
		dv_doq_server_expire(n->srv, n->sconn, n->now);
	}
	if (dv_doq_client_expiry(n->c) <= n->now)
		(void)dv_doq_client_expire(n->c, n->now);
	answer_due(n);
	client_flush(n);
	measure(n);
	return true;
}

/* Run until done(n) or `until`; returns done(n). */
static bool run(net_t *n, bool (*done)(net_t *n), uint64_t until)
{
	for (unsigned i = 0; i < STEPS && !done(n) && n->now < until; i++)
		if (!step(n))
			break;
	return done(n);
}

static bool all_ended(net_t *n)
{
	return n->ends == n->nq;
}

static bool server_ended(net_t *n)
{
	return n->sconn_ended != 0;
}

static void check_answered(net_t *n, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		assert_true(n->q[i].ended);
		assert_int_equal(n->q[i].how, DV_DOQ_END_FIN);
		assert_int_equal(n->q[i].messages, 1);
	}
}

/* ---- the credit ---- */

/* The server holds the answer on the 8th stream (id 28) 300 ms. */
static uint64_t hold_8th(int64_t id)
{
	return id == 28 ? 300 * MSEC : 0;
}

static bool q8_ended(net_t *n)
{
	return n->q[7].ended;
}

static bool q9_ended(net_t *n)
{
	return n->q[8].ended;
}

static void test_credit_spent(void **state)
{
	(void)state;
	net_t n;
	/* 4 streams at a time, 8 in the connection's life */
	setup_t su = { .max_streams = 4,
		       .max_streams_total = 8,
		       .silent_ptos = 3 };
	net_init(&n, &su);
	n.hold = hold_8th;
	submit_n(&n, 9);
	/* the 8th answer ends the last stream; the 9th query waits */
	assert_true(run(&n, q8_ended, n.now + 5000 * MSEC));
	assert_false(n.q[8].ended);
	dv_doq_load_t ld;
	dv_doq_client_load(n.c, &ld);
	uint64_t pto = ld.pto;
	assert_true(pto > 2 * LAT && pto < 200 * MSEC);
	assert_int_equal(ld.pending, 1);
	assert_int_equal(ld.active, 0);
	assert_int_equal(ld.opened, 8);
	assert_int_equal(ld.credit, 8);
	assert_true(ld.grown); /* from 4 to 8, then never again */
	assert_false(ld.spent);
	/* the 7th ended 300 ms before: the wait runs from the last one */
	assert_true(n.q[7].at - n.q[6].at >= 290 * MSEC);
	assert_true(run(&n, q9_ended, n.now + 5000 * MSEC));
	/* ... ended NO_CREDIT two PTOs after the last stream ended, never
	 * sent: the server saw 8 queries */
	assert_int_equal(n.q[8].how, DV_DOQ_END_NO_CREDIT);
	assert_int_equal(n.q[8].id, -1);
	assert_int_equal(n.q[8].messages, 0);
	assert_int_equal(n.q[8].at, n.q[7].at + 2 * pto);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.pto, pto);
	assert_true(ld.spent);
	assert_int_equal(ld.pending, 0);
	assert_int_equal(ld.opened, 8);
	check_answered(&n, 0, 8);
	assert_int_equal(n.n_queries, 8);
	assert_int_equal(n.st.doq_streams, 8);
	/* spent: no more queries, but the connection is not closed */
	assert_int_equal(submit(&n), DV_ECLOSED);
	assert_false(dv_doq_client_is_closed(n.c));
	dv_doq_stats_t cs;
	dv_doq_client_stats(n.c, &cs);
	assert_true(cs.credit_waits);
	assert_int_equal(cs.max_streams_seen, 8);
	assert_string_equal(n.failure, "");
	net_free(&n);
}

/* The server holds the answer on the first stream 100 ms. */
static uint64_t hold_first(int64_t id)
{
	return id == 0 ? 100 * MSEC : 0;
}

static bool q5_ended(net_t *n)
{
	return n->q[4].ended;
}

static bool q6_ended(net_t *n)
{
	return n->q[5].ended;
}

static bool q7_ended(net_t *n)
{
	return n->q[6].ended;
}

static void test_load(void **state)
{
	(void)state;
	net_t n;
	setup_t su = { .max_streams = 4, .max_streams_total = 6 };
	net_init(&n, &su);
	n.hold = hold_first;
	dv_doq_load_t ld;
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.pending, 0);
	assert_int_equal(ld.opened, 0);
	uint64_t t0 = n.now;
	submit_n(&n, 5);
	/* before the handshake: all waiting, nothing known of the server */
	assert_true(step(&n));
	assert_true(n.now > t0);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.pending, 5);
	assert_int_equal(ld.active, 0);
	assert_int_equal(ld.window, 0);
	assert_int_equal(ld.opened, 0);
	assert_int_equal(ld.credit, 0);
	assert_false(ld.grown);
	assert_int_equal(ld.waiting, n.now - t0);
	assert_int_equal(ld.pto, 0);
	assert_false(ld.spent);

	/* 4 streams, then a 5th on the credit given back as 3 of them
	 * ended (capped at 6); the first is still unanswered */
	assert_true(run(&n, q5_ended, t0 + 5000 * MSEC));
	assert_false(n.q[0].ended);
	check_answered(&n, 1, 5);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.pending, 0);
	assert_int_equal(ld.active, 1);
	assert_int_equal(ld.window, 5); /* from stream 0 to stream 16 */
	assert_int_equal(ld.opened, 5);
	assert_int_equal(ld.credit, 6);
	assert_true(ld.grown);
	assert_int_equal(ld.waiting, 0);
	assert_true(ld.pto > 2 * LAT && ld.pto < 200 * MSEC);
	assert_false(ld.spent);

	/* two more: the 6th stream, and a query that waits for credit */
	uint64_t t1 = n.now;
	submit_n(&n, 2);
	assert_true(run(&n, q6_ended, t0 + 5000 * MSEC));
	assert_false(n.q[0].ended);
	assert_int_equal(n.q[5].how, DV_DOQ_END_FIN);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.pending, 1);
	assert_int_equal(ld.active, 1);
	assert_int_equal(ld.window, 6);
	assert_int_equal(ld.opened, 6);
	assert_int_equal(ld.credit, 6);
	assert_true(n.now > t1);
	assert_int_equal(ld.waiting, n.now - t1);
	assert_false(ld.spent);

	/* the first answer ends the last stream; two PTOs later the
	 * waiting query ends and the connection is spent */
	assert_true(run(&n, q7_ended, t0 + 5000 * MSEC));
	check_answered(&n, 0, 6);
	assert_int_equal(n.q[6].how, DV_DOQ_END_NO_CREDIT);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(n.q[6].at, n.q[0].at + 2 * ld.pto);
	assert_true(ld.spent);
	assert_int_equal(ld.pending, 0);
	assert_int_equal(ld.active, 0);
	assert_int_equal(ld.window, 0);
	assert_int_equal(ld.waiting, 0);
	assert_int_equal(ld.opened, 6);
	assert_int_equal(ld.credit, 6);

	/* closed: what is left is what it opened */
	uint8_t buf[2048];
	void *ctx;
	(void)dv_doq_client_close(n.c, DV_DOQ_NO_ERROR, buf, sizeof(buf), &ctx,
				  n.now);
	dv_doq_client_load(n.c, &ld);
	assert_int_equal(ld.opened, 6);
	assert_int_equal(ld.pending + ld.active, 0);
	assert_int_equal(ld.credit, 0);
	assert_int_equal(ld.pto, 0);
	assert_int_equal(n.n_queries, 6);
	net_free(&n);
}

/* ---- the window ---- */

/* The server holds every 5th stream's answer 20 ms: the oldest stream
 * is often unanswered while newer ones are done. */
static uint64_t hold_every_5th(int64_t id)
{
	return (id / 4) % 5 == 0 ? 20 * MSEC : 0;
}

/* Within the window the server's limit is never reached: the server
 * counts a stream until the ACK of its answer arrives, so the client
 * must not let a new stream out ahead of that ACK. */
static void test_window_within_limit(void **state)
{
	(void)state;
	net_t n;
	setup_t su = { .max_streams = 64,
		       .max_unfinished = 5,
		       .max_window = 4,
		       .silent_ptos = 3 };
	net_init(&n, &su);
	n.hold = hold_every_5th;
	submit_n(&n, 40);
	assert_true(run(&n, all_ended, n.now + 5000 * MSEC));
	assert_string_equal(n.failure, "");
	assert_false(n.silenced);
	check_answered(&n, 0, 40);
	assert_int_equal(n.n_queries, 40);
	/* the window was full, never more */
	assert_int_equal(n.max_window, 4);
	assert_true(n.max_span >= 2 && n.max_span <= 4);
	dv_doq_stats_t cs;
	dv_doq_client_stats(n.c, &cs);
	assert_true(cs.window_waits);
	assert_false(cs.credit_waits);
	assert_int_equal(cs.streams_opened, 40);
	net_free(&n);
}

/* A window past the server's limit (8 against 4): two queries first
 * (the handshake is confirmed, the RTT known), then 16 at once; the 5th
 * stream silences the server, and from then on nothing gets through.
 * Runs until every query ended; the probe timeout as the server fell
 * silent goes to `pto`, when the client last sent before to `sent`. */
static void past_limit(net_t *n, unsigned silent_ptos, bool reach_server,
		       uint64_t *pto, uint64_t *sent)
{
	setup_t su = { .reach_server = reach_server,
		       .max_streams = 64,
		       .max_unfinished = 4,
		       .max_window = 8,
		       .silent_ptos = silent_ptos,
		       .query_timeout = 2000 * MSEC };
	net_init(n, &su);
	n->hold = hold_every_5th;
	submit_n(n, 2);
	assert_true(run(n, all_ended, n->now + 1000 * MSEC));
	check_answered(n, 0, 2);
	submit_n(n, 16);
	for (unsigned i = 0; i < STEPS && !n->silenced; i++)
		assert_true(step(n));
	assert_true(n->silenced);
	assert_non_null(strstr(n->failure, "silenced"));
	*sent = n->last_tx;
	assert_true(n->silenced_at == *sent + LAT);
	dv_doq_load_t ld;
	dv_doq_client_load(n->c, &ld);
	*pto = ld.pto; /* nothing comes back now to change it */
	assert_true(*pto > 2 * LAT && *pto < 200 * MSEC);
	assert_true(run(n, all_ended, n->now + 10000 * MSEC));
	dv_doq_client_load(n->c, &ld);
	assert_true(ld.opened == 10); /* the window, no more */
	/* the server sent nothing since: knotd forgot the connection */
	assert_int_equal(n->tx_after_silence, 0);
	assert_int_equal(n->to_client.dropped, 0);
	assert_int_equal(n->n_queries, 2 + 4);
}

static void test_window_past_limit_silent(void **state)
{
	(void)state;
	net_t n;
	uint64_t pto, sent;
	past_limit(&n, 3, false, &pto, &sent);
	/* the 16 end with the connection, none answered, none timed out
	 * (conn_quic sends them again on a fresh connection for that): at
	 * the third probe timeout, each twice as long as the one before */
	uint64_t at = sent + (1 + 2 + 4) * pto;
	for (unsigned i = 2; i < 18; i++) {
		assert_int_equal(n.q[i].how, DV_DOQ_END_CONN_CLOSED);
		assert_int_equal(n.q[i].messages, 0);
		assert_int_equal(n.q[i].at, at);
	}
	assert_true(dv_doq_client_is_closed(n.c));
	dv_doq_close_t ci;
	dv_doq_client_close_info(n.c, &ci);
	assert_true(ci.closed && ci.silent);
	assert_false(ci.by_peer || ci.idle);
	assert_non_null(strstr(ci.local_error, "silent"));
	assert_int_equal(submit(&n), DV_ECLOSED);
	/* a probe at each of the first two timeouts, lost */
	assert_true(n.to_server.dropped >= 2);
	net_free(&n);

	/* silent_ptos counts them: with 2, sooner */
	past_limit(&n, 2, false, &pto, &sent);
	for (unsigned i = 2; i < 18; i++) {
		assert_int_equal(n.q[i].how, DV_DOQ_END_CONN_CLOSED);
		assert_int_equal(n.q[i].at, sent + (1 + 2) * pto);
	}
	net_free(&n);

	/* a silenced connection reads nothing more: the client's probes
	 * (delivered this time) do not keep it, it idles out 30 s after
	 * the last datagram it took */
	past_limit(&n, 3, true, &pto, &sent);
	assert_true(n.to_server.dropped == 0 && n.sconn);
	uint64_t silenced_at = n.silenced_at;
	assert_true(run(&n, server_ended, n.now + 60000 * MSEC));
	assert_int_equal(n.sconn_ended, silenced_at + 30000 * MSEC);
	net_free(&n);

	/* and with 0 the queries wait for their deadline */
	past_limit(&n, 0, false, &pto, &sent);
	for (unsigned i = 2; i < 18; i++) {
		assert_int_equal(n.q[i].how, DV_DOQ_END_TIMEOUT);
		assert_true(n.q[i].at > sent + 1900 * MSEC);
	}
	assert_false(dv_doq_client_is_closed(n.c));
	dv_doq_client_close_info(n.c, &ci);
	assert_false(ci.silent);
	net_free(&n);
}

/* ---- the server's limits off ---- */

/* The server holds the answer on the first stream 200 ms. */
static uint64_t hold_first_200(int64_t id)
{
	return id == 0 ? 200 * MSEC : 0;
}

static void limits_run(net_t *n, uint64_t total, unsigned unfinished)
{
	setup_t su = { .max_streams = 8,
		       .max_streams_total = total,
		       .max_unfinished = unfinished,
		       .silent_ptos = 3 };
	net_init(n, &su);
	n->hold = hold_first_200;
	submit_n(n, 48);
	assert_true(run(n, all_ended, n->now + 10000 * MSEC));
}

static void test_limits_off(void **state)
{
	(void)state;
	net_t n;
	/* the daemon's: both 0 */
	limits_run(&n, 0, 0);
	assert_string_equal(n.failure, "");
	check_answered(&n, 0, 48);
	assert_int_equal(n.st.doq_streams, 48);
	/* stream 0 unfinished while 47 newer came and went, 8 at a time */
	assert_true(n.max_span >= 40);
	dv_doq_load_t ld;
	dv_doq_client_load(n.c, &ld);
	assert_true(ld.grown);
	assert_true(ld.credit >= 48);
	assert_false(ld.spent);
	net_free(&n);

	/* the same queries with knotd's limits */
	limits_run(&n, 0, 10);
	assert_true(n.silenced);
	net_free(&n);
	/* a total under max_streams (8) is the first credit too */
	limits_run(&n, 6, 0);
	check_answered(&n, 0, 6);
	for (unsigned i = 6; i < 48; i++)
		assert_int_equal(n.q[i].how, DV_DOQ_END_NO_CREDIT);
	assert_int_equal(n.n_queries, 6);
	net_free(&n);
}

static int setup(void **state)
{
	(void)state;
	char err[256];
	if (dv_test_cert(cert_dir, cert_file, key_file, sizeof(cert_dir)))
		return -1;
	server_tls = dv_quic_tls_server_ctx_new(cert_file, key_file, "doq",
						false, err, sizeof(err));
	client_tls =
		dv_quic_tls_client_ctx_new(cert_file, "doq", err, sizeof(err));
	if (!server_tls || !client_tls) {
		fprintf(stderr, "TLS contexts: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dv_quic_tls_ctx_free(server_tls);
	dv_quic_tls_ctx_free(client_tls);
	dv_test_cert_remove(cert_dir, cert_file, key_file);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_credit_spent),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_window_within_limit),
		cmocka_unit_test(test_window_past_limit_silent),
		cmocka_unit_test(test_limits_off),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * quic:// upstreams (DoQ, RFC 9250).
 *
 * One connection per server normally (DoQ gives each query its own stream,
 * so one connection carries them all; the engine queues what the server's
 * stream credit does not allow yet), up to QUIC_CONNS when servers limit
 * their streams: knotd (Knot DNS 3.4) drops a connection, without a word,
 * as soon as a stream is 10 past its oldest unfinished one, and never
 * raises its first credit of 1,024 streams.  So a connection is crowded
 * (the pool opens another for new queries) when its streams reach the
 * window (pool.doq-max-streams, or the one learnt below), or when queries
 * have waited four probe timeouts for credit the server has never
 * raised; and it is spent (draining, closed once its last answer is in)
 * when the engine finds the credit stopped: its waiting queries, which
 * the server never saw, go to another connection at once.
 *
 * A connection whose server acknowledges nothing for three probe
 * timeouts while queries are out went silent (the engine ends it): its
 * queries are sent again at once on a fresh connection while their
 * deadline allows, and no health failure is counted for it (the retries
 * find out whether the server is there).  As such a silence is what a
 * server's stream limit looks like, the worker then keeps its connections
 * to that server under half the window that went silent, and lets the
 * window grow back by one after every 8 windows answered, never to the
 * size that went silent.  quic_connect makes the connected UDP
 * socket and the engine at once and starts the handshake (HANDSHAKE);
 * queries submitted meanwhile wait inside the engine, which opens their
 * streams once the handshake completes (OPEN, from on_handshake).  Every
 * call into the engine is followed by quic_flush: the datagrams it has
 * to send, then the timer set to its next expiry.
 *
 * Each query goes out with id 0 (RFC 9250 §4.2.1) on its own stream; the
 * submission's tag (a per-connection sequence number above the slot's id)
 * names the slot in the callbacks, so an answer finds its fetch by stream
 * even when the slot has been reused meanwhile.  The answer gets its
 * slot's id and then goes through dv_uconn_answer like any other (the
 * question is checked there).  A stream that ends without an answer
 * fails its attempt; an abandoned attempt leaves its slot an orphan until
 * the stream ends (the engine's deadline is pool.query-timeout-ms).
 *
 * When the engine ends the connection (handshake failure, idle timeout,
 * the server's CONNECTION_CLOSE), its queries are failed by the close
 * through the slots, so the health accounting is the one of tls://
 * connections: a handshake that fails is a refused connection.  Calls
 * into the engine mark it in q_in; a close meanwhile only detaches it
 * (its callbacks are then ignored) and the driver frees it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/proto/doq_client.h"
#include "src/tls/quic_tls.h"
#include "src/upstream/uconn.h"

#define QUIC_PKT_MAX 1500 /* >= ngtcp2's largest UDP payload (1452) */
#define QUIC_CONNS 4      /* connections per server and worker, at most */
#define QUIC_SILENT_PTOS 3

typedef struct {
	dv_uconn_t c; /* first */
	uint8_t *out; /* the datagram being written */
	size_t out_len, out_cap;
	dv_doq_client_t *q;    /* from connect on */
	dv_doq_client_t *q_in; /* the engine being driven: a close inside
				* it leaves the free to the caller */
	dv_doq_path_t qpath;
	ev_timer qtimer; /* the engine's expiry */
	uint64_t qseq;   /* submissions, for the slots' tags */
	uint64_t *tag;   /* per slot: its submission's tag, 0 when none */
	bool saved;      /* session kept for the server's next connection */
	unsigned gen;    /* connections made: tells a new engine from the old */
	unsigned window; /* the engine's max_window (0: none) */
	uint64_t win_max; /* the widest its streams have been */
} quic_conn_t;

/* What a worker keeps of a quic:// server (s->priv): the last DoQ session,
 * for resumption, and the stream window it has learnt. */
typedef struct {
	size_t len;
	uint8_t buf[DV_DOQ_SESSION_MAX];
	unsigned window;    /* 0: none learnt */
	uint64_t silent_at; /* the window that last went silent */
	uint64_t answered;  /* answers since the window last changed */
} quic_session_t;

static quic_session_t *quic_priv(dv_server_t *s)
{
	if (!s->priv)
		s->priv = calloc(1, sizeof(quic_session_t));
	return s->priv;
}

static uint64_t quic_now(void)
{
	return dv_doq_now();
}

/* The slot the submission `tag` belongs to, if it is still waiting and the
 * engine calling is the connection's. */
static uslot_t *quic_slot(quic_conn_t *c, void *query)
{
	uint64_t tag = (uint64_t)(uintptr_t)query;
	uint32_t i = (uint32_t)(tag & c->c.mask);
	uslot_t *s = &c->c.slots[i];
	if (!c->q || c->q != c->q_in || !s->busy || c->tag[i] != tag)
		return NULL;
	return s;
}

static void quic_message_cb(void *app, void *query, int64_t stream_id,
			    const uint8_t *msg, size_t len, uint64_t sent_at,
			    uint64_t now)
{
	(void)stream_id;
	(void)sent_at;
	(void)now;
	quic_conn_t *c = app;
	uslot_t *s = quic_slot(c, query);
	if (!s || len < DV_DNS_HDR || len > DV_DNS_MAX_MSG)
		return;
	/* the id on the wire is 0: give the answer its slot's, and match it
	 * like any other (a wrong question is left to on_end) */
	dv_pool_t *p = c->c.server->pool;
	quic_session_t *qs = c->c.server->priv;
	if (qs && qs->window && ++qs->answered >= 8u * qs->window) {
		qs->answered = 0;
		if (qs->window + 1 < qs->silent_at)
			qs->window++;
	}
	memcpy(p->answer, msg, len);
	dv_put16(p->answer, s->id);
	dv_uconn_answer(&c->c, p->answer, len);
}

static void quic_end_cb(void *app, void *query, int64_t stream_id,
			const dv_doq_result_t *res, uint64_t now)
{
	(void)now;
	quic_conn_t *c = app;
	/* the connection is over: its close fails its queries (and counts
	 * the loss once for the server's health) */
	if (res->how == DV_DOQ_END_CONN_CLOSED)
		return;
	uslot_t *s = quic_slot(c, query);
	if (!s)
		return; /* answered (or released) already */
	dv_server_t *srv = c->c.server;
	if (res->how == DV_DOQ_END_NO_CREDIT) { /* never seen by the server */
		dv_uslot_retry(&c->c, (uint32_t)(s - c->c.slots));
		return;
	}
	if (s->att) /* not an orphan (whose fetch ended elsewhere) */
		dv_log_debug("worker %u: upstream %s: stream %lld ended "
			     "without an answer (%s, code %llu)",
			     srv->pool->index, srv->url.text,
			     (long long)stream_id, dv_doq_end_name(res->how),
			     (unsigned long long)res->app_code);
	dv_uslot_fail(&c->c, (uint32_t)(s - c->c.slots),
		      res->how == DV_DOQ_END_TIMEOUT);
}

static void quic_handshake_cb(void *app, uint64_t now)
{
	(void)now;
	quic_conn_t *c = app;
	if (!c->q || c->q != c->q_in)
		return;
	dv_pool_t *p = c->c.server->pool;
	dv_doq_stats_t st;
	dv_doq_client_stats(c->q, &st);
	DV_STAT_INC(p->stats, doq_handshakes);
	if (st.resumed)
		DV_STAT_INC(p->stats, doq_resumed);
	c->c.state = UC_OPEN;
	c->c.last_rx_ms = now_ms();
}

static const dv_doq_callbacks_t quic_callbacks = {
	.on_message = quic_message_cb,
	.on_end = quic_end_cb,
	.on_handshake = quic_handshake_cb,
};

/* Before driving the engine of `c`. */
static dv_doq_client_t *quic_enter(quic_conn_t *c)
{
	c->q_in = c->q;
	return c->q;
}

/* After driving engine `q`: true (and `q` freed) if the connection was
 * closed meanwhile. */
static bool quic_closed_inside(quic_conn_t *c, dv_doq_client_t *q)
{
	c->q_in = NULL;
	if (c->q == q)
		return false;
	dv_doq_client_free(q);
	return true;
}

/* Keep the session of the connection (once the server has sent a ticket)
 * for the server's next connection. */
static void quic_keep_session(quic_conn_t *c)
{
	dv_server_t *s = c->c.server;
	if (!dv_doq_client_has_ticket(c->q))
		return;
	quic_session_t *qs = quic_priv(s);
	if (!qs)
		return; /* resumption is an optimization */
	int n = dv_doq_client_session_save(c->q, qs->buf, sizeof(qs->buf));
	if (n > 0) {
		qs->len = (size_t)n;
		c->saved = true;
	}
}

/* The connection went silent with its streams win_max wide: keep the
 * server's next connections under half that. */
static void quic_learn(quic_conn_t *c)
{
	dv_server_t *s = c->c.server;
	quic_session_t *qs = quic_priv(s);
	if (!qs || c->win_max < 2)
		return;
	unsigned w = (unsigned)(c->win_max / 2);
	if (qs->window && qs->window <= w)
		w = qs->window > 1 ? qs->window - 1 : 1;
	qs->window = w;
	qs->silent_at = c->win_max;
	qs->answered = 0;
	dv_log_info("worker %u: upstream %s: a QUIC connection went silent "
		    "with %llu streams open; at most %u per connection now",
		    s->pool->index, s->url.text,
		    (unsigned long long)c->win_max, w);
}

/* The engine ended the connection by itself: say why and close. */
static void quic_ended(quic_conn_t *c)
{
	dv_server_t *s = c->c.server;
	dv_doq_close_t ci;
	dv_doq_client_close_info(c->q, &ci);
	char detail[sizeof(ci.local_error) + sizeof(ci.reason) + 64];
	char code[64];
	if (ci.local_error[0])
		snprintf(detail, sizeof(detail), "%s", ci.local_error);
	else if (ci.idle)
		snprintf(detail, sizeof(detail), "QUIC idle timeout");
	else
		snprintf(detail, sizeof(detail), "closed by the server: %s%s%s",
			 ci.application
				 ? (dv_doq_error_name(ci.code)
					    ? dv_doq_error_name(ci.code)
					    : "application error")
				 : dv_doq_transport_error_name(ci.code, code,
							       sizeof(code)),
			 ci.reason[0] ? ": " : "", ci.reason);
	char why[sizeof(detail) + DV_URL_NAME_MAX + 64];
	if (c->c.state == UC_OPEN && ci.silent) {
		quic_learn(c);
		dv_uconn_close_retry(&c->c, detail);
		return;
	}
	if (c->c.state == UC_OPEN) {
		bool clean = ci.idle || (ci.by_peer && ci.application &&
					 ci.code == DV_DOQ_NO_ERROR);
		snprintf(why, sizeof(why), "%s", detail);
		dv_uconn_close(&c->c, !clean || c->c.busy > 0, why);
		return;
	}
	/* the handshake failed: 42..46 and 48 are the alerts of a
	 * certificate we refused */
	uint8_t al = ci.tls_alert;
	if ((al >= 42 && al <= 46) || al == 48)
		snprintf(why, sizeof(why),
			 "QUIC handshake failed: the certificate did not verify "
			 "for %s (%s)",
			 s->url.name, detail);
	else
		snprintf(why, sizeof(why), "QUIC handshake failed: %s", detail);
	/* once per outage, not once per connection attempt */
	if (dv_userver_usable(s))
		dv_log_warn("worker %u: upstream %s: %s", s->pool->index,
			    s->url.text, why);
	/* a session the server no longer likes must not be offered again */
	if (s->priv)
		((quic_session_t *)s->priv)->len = 0;
	dv_uconn_close(&c->c, true, why);
}

/* Send the datagram in c->out: 1 when sent, 0 when the socket is full
 * (it stays in c->out, and the write watcher waits for room), or -1 when
 * the connection was closed (the socket failed: nobody there). */
static int quic_send(quic_conn_t *c)
{
	for (;;) {
		if (send(c->c.fd, c->out, c->out_len, 0) >= 0) {
			c->out_len = 0;
			return 1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ev_io_start(c->c.server->pool->loop, &c->c.wio);
			return 0;
		}
		/* ENOBUFS and the like: a lost datagram, QUIC retransmits */
		if (errno == ENOBUFS || errno == ENOMEM) {
			c->out_len = 0;
			return 1;
		}
		dv_uconn_close(&c->c, true, strerror(errno));
		return -1;
	}
}

/* Write what the engine has to send, then set the timer to its next
 * expiry.  Closes the connection when the engine has ended it. */
static void quic_flush(quic_conn_t *c)
{
	struct ev_loop *loop = c->c.server->pool->loop;
	ev_io_stop(loop, &c->c.wio);
	/* a datagram held back by a full socket buffer goes first */
	int sent = c->out_len ? quic_send(c) : 1;
	for (unsigned budget = 64; sent > 0 && c->q; budget--) {
		if (!budget) {
			ev_io_start(loop, &c->c.wio); /* more next iteration */
			break;
		}
		void *ctx = NULL;
		dv_doq_client_t *q = quic_enter(c);
		int n = dv_doq_client_write(q, c->out, c->out_cap, &ctx,
					    quic_now());
		if (quic_closed_inside(c, q))
			return;
		if (n == 0)
			break;
		if (n < 0) {
			quic_ended(c);
			return;
		}
		c->out_len = (size_t)n;
		sent = quic_send(c);
	}
	if (sent < 0 || !c->q)
		return;
	dv_doq_load_t ld;
	dv_doq_client_load(c->q, &ld);
	if (ld.window > c->win_max)
		c->win_max = ld.window;
	if (ld.spent && c->c.busy == 0) {
		dv_uconn_close(&c->c, false, "stream credit used up");
		return;
	}
	uint64_t t = dv_doq_client_expiry(c->q), now = quic_now();
	ev_timer_stop(loop, &c->qtimer);
	if (t == UINT64_MAX)
		return;
	ev_timer_set(&c->qtimer, t > now ? (t - now) / 1e9 : 0., 0.);
	ev_timer_start(loop, &c->qtimer);
}

static void quic_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	quic_conn_t *c = w->data;
	dv_pool_t *p = c->c.server->pool;
	for (int budget = 64; budget > 0 && c->q; budget--) {
		ssize_t n = recv(c->c.fd, p->rxbuf, sizeof(p->rxbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* ICMP unreachable: the server is not there */
			dv_uconn_close(&c->c, true, strerror(errno));
			return;
		}
		c->c.last_rx_ms = now_ms();
		dv_doq_client_t *q = quic_enter(c);
		int ret = dv_doq_client_read(q, &c->qpath, p->rxbuf, (size_t)n,
					     quic_now());
		if (quic_closed_inside(c, q))
			return;
		if (ret < 0) {
			/* the CONNECTION_CLOSE it may want to send first */
			unsigned gen = c->gen;
			quic_flush(c);
			if (c->q && c->gen == gen)
				quic_ended(c);
			return;
		}
	}
	if (!c->q)
		return;
	if (c->c.state == UC_OPEN && !c->saved)
		quic_keep_session(c);
	quic_flush(c);
}

static void quic_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	quic_flush(w->data);
}

static void quic_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	quic_conn_t *c = t->data;
	if (!c->q)
		return;
	dv_doq_client_t *q = quic_enter(c);
	int ret = dv_doq_client_expire(q, quic_now());
	if (quic_closed_inside(c, q))
		return;
	unsigned gen = c->gen;
	quic_flush(c);
	if (ret < 0 && c->q && c->gen == gen)
		quic_ended(c);
}

/* Open the QUIC connection of `c`: socket, engine, first Initial.  0, or
 * a negative error with the connection CLOSED (a refused one counted). */
static int quic_connect(quic_conn_t *c)
{
	dv_server_t *s = c->c.server;
	dv_pool_t *p = s->pool;
	const dv_config_t *cfg = p->cfg;
	const quic_session_t *qs = s->priv;
	int ret;
	unsigned window = cfg->upstream_doq_max_streams;
	if (qs && qs->window && (!window || qs->window < window))
		window = qs->window;
	int fd = socket(s->url.addr.ss_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&s->url.addr, s->url.addr_len) < 0)
		goto fail_refused;
	dv_doq_path_t *path = &c->qpath;
	memset(path, 0, sizeof(*path));
	path->local_len = sizeof(path->local);
	if (getsockname(fd, (struct sockaddr *)&path->local,
			&path->local_len) < 0)
		goto fail_refused;
	memcpy(&path->remote, &s->url.addr, s->url.addr_len);
	path->remote_len = s->url.addr_len;
	path->ctx = c;
	dv_doq_config_t qc = {
		.tls = p->quic_tls,
		.name = s->url.name,
		.session = qs && qs->len ? qs->buf : NULL,
		.session_len = qs ? qs->len : 0,
		.query_timeout = (uint64_t)cfg->query_timeout_ms * 1000000u,
		.handshake_timeout = (uint64_t)cfg->query_timeout_ms * 1000000u,
		/* past the pool's own idle close, which counts it */
		.idle_timeout = cfg->upstream_idle_timeout_ms
					? ((uint64_t)cfg->upstream_idle_timeout_ms +
					   1000) * 1000000u
					: 0,
		.max_window = window,
		.silent_ptos = QUIC_SILENT_PTOS,
	};
	char err[256];
	c->q = dv_doq_client_new(&qc, &quic_callbacks, c, path, quic_now(),
				 err, sizeof(err));
	if (!c->q) {
		dv_log_warn("worker %u: upstream %s: %s", p->index,
			    s->url.text, err);
		if (s->priv) /* maybe it did not like the session */
			((quic_session_t *)s->priv)->len = 0;
		ret = -ENOMEM;
		goto fail;
	}
	c->gen++;
	c->window = window;
	c->win_max = 0;
	c->c.fd = fd;
	ev_io_set(&c->c.rio, fd, EV_READ);
	ev_io_set(&c->c.wio, fd, EV_WRITE);
	dv_uconn_connects(&c->c);
	c->c.state = UC_HANDSHAKE;
	c->saved = false;
	c->c.last_rx_ms = now_ms();
	ev_io_start(p->loop, &c->c.rio);
	quic_flush(c); /* the Initial */
	return c->c.state == UC_CLOSED ? DV_EUPSTREAM : 0;

fail_refused:
	ret = -errno;
	dv_userver_refused(s);
fail:
	close(fd);
	return ret;
}

/* Closing: end the engine (a CONNECTION_CLOSE to the server unless it
 * is over already) and keep the session of a connection that was open. */
static void quic_stop(quic_conn_t *c, bool was_open)
{
	dv_doq_client_t *q = c->q;
	if (!q)
		return;
	ev_timer_stop(c->c.server->pool->loop, &c->qtimer);
	if (was_open)
		quic_keep_session(c);
	c->q = NULL; /* its callbacks are ignored from now on */
	if (c->q_in == q)
		return; /* being driven: the driver frees it */
	c->q_in = q;
	void *ctx = NULL;
	int n = dv_doq_client_close(q, DV_DOQ_NO_ERROR, c->out, c->out_cap,
				    &ctx, quic_now());
	if (n > 0)
		(void)send(c->c.fd, c->out, (size_t)n, 0);
	c->q_in = NULL;
	dv_doq_client_free(q);
}

/* Queue `msg` for slot `slot` as a new stream, with id 0. */
static int quic_send_query(quic_conn_t *c, uint32_t slot, const uint8_t *msg,
			   size_t len)
{
	uint8_t buf[DV_UQUERY_MAX];
	if (!c->q)
		return DV_ECLOSED;
	if (len > sizeof(buf) || len < DV_DNS_HDR)
		return -EINVAL;
	memcpy(buf, msg, len);
	dv_put16(buf, 0);
	uslot_t *s = &c->c.slots[slot];
	uint64_t tag = (++c->qseq << 16) | s->id;
	int ret = dv_doq_client_submit(c->q, buf, len, 0, 0,
				       (void *)(uintptr_t)tag, quic_now());
	if (ret < 0)
		return ret;
	c->tag[slot] = tag;
	if (c->c.state == UC_OPEN)
		ev_io_start(c->c.server->pool->loop, &c->c.wio);
	return 0;
}


/* ---- the ops ---- */

static quic_conn_t *quic_of(dv_uconn_t *c)
{
	return (quic_conn_t *)c;
}

static int quic_op_connect(dv_uconn_t *c)
{
	return quic_connect(quic_of(c));
}

static int quic_op_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			  size_t len)
{
	return quic_send_query(quic_of(c), slot, msg, len);
}

static void quic_op_release(dv_uconn_t *c, uint32_t slot)
{
	quic_of(c)->tag[slot] = 0;
}

static void quic_op_stop(dv_uconn_t *c, bool was_open)
{
	quic_conn_t *qc = quic_of(c);
	quic_stop(qc, was_open);
	qc->out_len = 0;
}

static bool quic_op_writing(const dv_uconn_t *c)
{
	return ((const quic_conn_t *)c)->out_len != 0;
}

/* Another connection would serve new queries sooner (see the top). */
static bool quic_op_crowded(dv_uconn_t *c)
{
	quic_conn_t *qc = quic_of(c);
	if (!qc->q)
		return false;
	dv_doq_load_t ld;
	dv_doq_client_load(qc->q, &ld);
	if (qc->window && ld.window + ld.pending >= qc->window)
		return true;
	return ld.pending && !ld.grown && ld.credit &&
	       ld.opened >= ld.credit && ld.waiting >= 4 * ld.pto;
}

/* Spent: its server gives no more streams. */
static bool quic_op_draining(dv_uconn_t *c)
{
	quic_conn_t *qc = quic_of(c);
	if (!qc->q)
		return false;
	dv_doq_load_t ld;
	dv_doq_client_load(qc->q, &ld);
	return ld.spent;
}

static void quic_op_destroy(dv_uconn_t *c)
{
	quic_conn_t *qc = quic_of(c);
	quic_stop(qc, false); /* a CONNECTION_CLOSE: the server may forget us */
	if (c->fd >= 0) {
		ev_io_stop(c->server->pool->loop, &c->rio);
		ev_io_stop(c->server->pool->loop, &c->wio);
		close(c->fd);
	}
	dv_uconn_deinit(c);
	free(qc->tag);
	free(qc->out);
	free(qc);
}

static int quic_pool_init(dv_pool_t *p)
{
	char err[600];
	p->quic_tls = dv_quic_tls_client_ctx_new(p->cfg->tls_ca, "doq", err,
						 sizeof(err));
	if (!p->quic_tls) {
		dv_log_error("quic:// upstreams: %s", err);
		return DV_ECONFIG;
	}
	return 0;
}

static void quic_pool_deinit(dv_pool_t *p)
{
	dv_quic_tls_ctx_free(p->quic_tls);
	p->quic_tls = NULL;
}

static void quic_server_deinit(dv_server_t *s)
{
	free(s->priv);
	s->priv = NULL;
}

static dv_uconn_t *quic_create(dv_server_t *s, unsigned max);

const dv_uconn_ops_t dv_uconn_quic_ops = {
	/* one connection carries every query as its own stream, unless the
	 * server limits them (crowded) */
	.conns = QUIC_CONNS,
	.warm = 1,
	.pool_init = quic_pool_init,
	.pool_deinit = quic_pool_deinit,
	.server_deinit = quic_server_deinit,
	.create = quic_create,
	.destroy = quic_op_destroy,
	.connect = quic_op_connect,
	.submit = quic_op_submit,
	.release = quic_op_release,
	.stop = quic_op_stop,
	.crowded = quic_op_crowded,
	.draining = quic_op_draining,
	.writing = quic_op_writing,
};

static dv_uconn_t *quic_create(dv_server_t *s, unsigned max)
{
	quic_conn_t *qc = calloc(1, sizeof(*qc));
	if (!qc)
		return NULL;
	dv_uconn_t *c = &qc->c;
	if (dv_uconn_init(c, &dv_uconn_quic_ops, s, max) < 0)
		goto fail;
	ev_init(&c->rio, quic_read_cb);
	ev_init(&c->wio, quic_write_cb);
	c->rio.data = c->wio.data = qc;
	ev_init(&qc->qtimer, quic_timer_cb);
	qc->qtimer.data = qc;
	/* datagrams are read into the pool's rxbuf */
	qc->out = malloc(QUIC_PKT_MAX); /* the datagram being written */
	qc->tag = calloc(c->n_slots, sizeof(*qc->tag));
	if (!qc->out || !qc->tag)
		goto fail;
	qc->out_cap = QUIC_PKT_MAX;
	return c;
fail:
	dv_uconn_deinit(c);
	free(qc->tag);
	free(qc->out);
	free(qc);
	return NULL;
}

/*
 * DNS-over-QUIC server engine: connections, streams and ngtcp2's
 * callbacks.  See doq_server.h; the connection-ID table, the half-open
 * bound and accepting are in doq_server_accept.c.
 *
 * One query per client-initiated bidirectional stream: a 2-byte length, a
 * message with id 0, FIN; the answer goes back on the same stream with
 * FIN.  Anything else is DOQ_PROTOCOL_ERROR for the connection (RFC 9250
 * §4.3.3).  A stream the client resets cancels its query (the answer, when
 * it comes, is dropped).  Stream credit (doq.max-streams) is given back as
 * streams close, so one connection carries any number of queries.
 *
 * Lifetime: a stream lives until ngtcp2 closes it and its query (if any)
 * has been answered; a connection until ngtcp2 is done with it (closed,
 * drained, idle) and no query of it is still out.
 */
#include "src/proto/doq_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/proto/doq_server_int.h"

_Static_assert(DV_DOQ_SERVER_TX_MAX == NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE,
	       "the largest datagram is ngtcp2's PMTUD maximum");

#define TX_SIZE DV_DOQ_SERVER_TX_MAX
#define MAX_PKTS_PER_WRITE 64 /* then yield to other connections */

static void conn_write(doq_conn_t *c);
static void stream_maybe_free(doq_stream_t *s);

/* ---- entering and leaving the engine ---- */

static void reap(dv_doq_server_t *srv)
{
	while (srv->graveyard) {
		doq_conn_t *c = srv->graveyard;
		srv->graveyard = c->next;
		free(c);
	}
}

void dv_doq_server_enter(dv_doq_server_t *srv, uint64_t now)
{
	/* never backwards: ngtcp2 wants its timestamps monotonic, and an
	 * answer may come (with its own time) inside a read */
	srv->depth++;
	if (now > srv->now)
		srv->now = now;
}

void dv_doq_server_leave(dv_doq_server_t *srv)
{
	if (--srv->depth == 0)
		reap(srv);
}

/* ---- streams ---- */

static void tx_link(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (s->in_tx)
		return;
	s->in_tx = true;
	s->tx_next = NULL;
	s->tx_prev = c->tx_tail;
	if (c->tx_tail)
		c->tx_tail->tx_next = s;
	else
		c->tx_head = s;
	c->tx_tail = s;
}

static void tx_unlink(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (!s->in_tx)
		return;
	s->in_tx = false;
	if (s->tx_prev)
		s->tx_prev->tx_next = s->tx_next;
	else
		c->tx_head = s->tx_next;
	if (s->tx_next)
		s->tx_next->tx_prev = s->tx_prev;
	else
		c->tx_tail = s->tx_prev;
}

static void rd_unlink(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (!s->in_rd)
		return;
	s->in_rd = false;
	if (s->rd_prev)
		s->rd_prev->rd_next = s->rd_next;
	else
		c->rd_head = s->rd_next;
	if (s->rd_next)
		s->rd_next->rd_prev = s->rd_prev;
	else
		c->rd_tail = s->rd_prev;
}

static doq_stream_t *stream_new(doq_conn_t *c, int64_t id)
{
	doq_stream_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->c = c;
	s->out.id = id;
	s->out.fin = true;
	s->start = c->srv->now;
	/* unfinished queries, oldest first, for the read timeout */
	s->in_rd = true;
	s->rd_prev = c->rd_tail;
	if (c->rd_tail)
		c->rd_tail->rd_next = s;
	else
		c->rd_head = s;
	c->rd_tail = s;
	if (ngtcp2_conn_set_stream_user_data(c->q.conn, id, s) != 0) {
		rd_unlink(s);
		free(s);
		return NULL;
	}
	s->all_next = c->streams;
	if (c->streams)
		c->streams->all_prev = s;
	c->streams = s;
	return s;
}

/* Bytes received on `s` are buffered until its query is copied out or the
 * stream ends; only then does the connection's flow-control credit grow
 * again, so initial_max_data bounds what one connection can make us hold. */
static void stream_credit(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (c->q.conn && s->in.len > s->credited)
		ngtcp2_conn_extend_max_offset(c->q.conn,
					      s->in.len - s->credited);
	s->credited = s->in.len;
}

static void stream_free(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	stream_credit(s);
	tx_unlink(s);
	rd_unlink(s);
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else
		c->streams = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	dv_doq_frame_free(&s->in);
	free((uint8_t *)s->out.data);
	free(s);
}

static void stream_maybe_free(doq_stream_t *s)
{
	if (s->closed && !(s->submitted && !s->answered))
		stream_free(s);
}

/* ---- closing ---- */

/* Close the connection with an application (DoQ) error code. */
void dv_doq_sconn_app_error(doq_conn_t *c, uint64_t code, const char *reason)
{
	if (c->have_ccerr)
		return;
	c->have_ccerr = true;
	ngtcp2_connection_close_error_set_application_error(
		&c->ccerr, code, (const uint8_t *)reason,
		reason ? strlen(reason) : 0);
}

/* Ask the caller for the connection's timer: ngtcp2's expiry, the oldest
 * unfinished query's read deadline, or the end of the closing period. */
static void conn_timer_update(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	uint64_t at;
	if (c->state == QC_CLOSING || c->state == QC_DRAINING) {
		at = srv->now + c->close_after;
	} else {
		if (!c->q.conn)
			return;
		at = ngtcp2_conn_get_expiry(c->q.conn);
		if (c->rd_head) {
			uint64_t dl = c->rd_head->start +
				      srv->cfg.read_timeout_ms * 1000000u;
			if (dl < at)
				at = dl;
		}
	}
	srv->cb.on_timer(srv->app, c, at);
}

/*
 * Free ngtcp2's state and the TLS session (~90 KB, nearly all of a
 * connection) while the struct, its connection IDs and c->close_pkt stay.
 * Closing and draining need nothing else, and a peer that makes
 * handshakes fail (a wrong ALPN, say) at a thousand a second would
 * otherwise hold all of it for three PTOs each, uncounted.
 */
static void conn_release(doq_conn_t *c)
{
	if (!c->q.conn)
		return;
	dv_doq_ho_remove(c, false);
	/* streams still waiting for an answer stay until it comes */
	while (c->tx_head)
		tx_unlink(c->tx_head);
	/* closes every stream: stream_close cb not called here;
	 * dv_doq_sconn_maybe_free frees them */
	dv_quic_conn_release(&c->q);
}

/* The connection takes no more work: closing (we sent CONNECTION_CLOSE)
 * or draining (the peer did).  Only the CONNECTION_CLOSE is kept. */
static void conn_set_ending(doq_conn_t *c, qc_state_t state)
{
	c->state = state;
	if (c->q.conn)
		c->close_after = 3 * ngtcp2_conn_get_pto(c->q.conn);
	conn_release(c);
	if (!c->closing) {
		c->closing = true;
		c->srv->n_closing++;
	}
}

/* Stop using the connection for anything but answering its remaining
 * packets with the CONNECTION_CLOSE, for three PTOs (RFC 9000 §10.2). */
void dv_doq_sconn_close(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	if (c->state != QC_OPEN)
		return;
	if (!c->have_ccerr)
		dv_doq_sconn_app_error(c, DV_DOQ_NO_ERROR, NULL);
	if (ngtcp2_conn_is_in_closing_period(c->q.conn) ||
	    ngtcp2_conn_is_in_draining_period(c->q.conn)) {
		conn_set_ending(c, QC_DRAINING);
		conn_timer_update(c);
		return;
	}
	ngtcp2_path_storage ps;
	uint8_t *buf = srv->cb.tx_buf(srv->app);
	ngtcp2_ssize n = dv_quic_write_close(c->q.conn, &ps, buf, TX_SIZE,
					     &c->ccerr, srv->now);
	conn_set_ending(c, QC_CLOSING);
	if (n > 0) {
		c->close_pkt = malloc((size_t)n);
		if (c->close_pkt) {
			memcpy(c->close_pkt, buf, (size_t)n);
			c->close_len = (size_t)n;
		}
		srv->cb.tx_send(srv->app, (size_t)n,
				(struct sockaddr *)&c->peer, c->peer_len,
				(struct sockaddr *)&c->local);
	} else {
		c->state = QC_DEAD;
	}
	conn_timer_update(c);
	dv_doq_sconn_maybe_free(c);
}

/* Close for a library error (ngtcp2's own transport error code). */
static void conn_close_liberr(doq_conn_t *c, int rv)
{
	dv_doq_server_t *srv = c->srv;
	if (!c->have_ccerr) {
		c->have_ccerr = true;
		uint8_t alert = dv_quic_liberr(c->q.conn, rv, &c->ccerr);
		if (rv == NGTCP2_ERR_CRYPTO) {
			char why[128];
			snprintf(why, sizeof(why), "TLS alert %u (%s)", alert,
				 dv_quic_tls_alert_name(alert));
			srv->cb.on_failure(srv->app, c,
					   c->handshake_done
						   ? "failed"
						   : "failed its handshake",
					   why);
		} else {
			srv->cb.on_failure(srv->app, c,
					   "closed on a QUIC error",
					   ngtcp2_strerror(rv));
		}
	}
	DV_STAT_INC(srv->st, doq_closed_error);
	dv_doq_sconn_close(c);
}

static void conn_protocol_error(doq_conn_t *c, const char *why)
{
	dv_doq_server_t *srv = c->srv;
	if (!c->have_ccerr) {
		DV_STAT_INC(srv->st, doq_protocol_errors);
		srv->cb.on_failure(srv->app, c,
				   "closed with DOQ_PROTOCOL_ERROR", why);
	}
	dv_doq_sconn_app_error(c, DV_DOQ_PROTOCOL_ERROR, why);
}

static void conn_unlink(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else if (srv->conns == c)
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (srv->conns_tail == c)
		srv->conns_tail = c->prev;
	c->next = c->prev = NULL;
}

void dv_doq_sconn_link_head(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	c->prev = NULL;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	else
		srv->conns_tail = c;
	srv->conns = c;
}

/* A packet arrived: the connection becomes the most recently active. */
void dv_doq_sconn_touch(doq_conn_t *c)
{
	if (c->srv->conns != c) {
		conn_unlink(c);
		dv_doq_sconn_link_head(c);
	}
}

/*
 * End a half-open connection at once: one CONNECTION_CLOSE with transport
 * error `code`, then its state is freed (when the outermost call
 * returns), without a closing period: a half-open connection being
 * evicted or refused most likely has nobody at the other end, and
 * evictions at the rate of a flood must not pile up closing connections.
 */
void dv_doq_sconn_abort(doq_conn_t *c, uint64_t code, const char *reason)
{
	dv_doq_server_t *srv = c->srv;
	ngtcp2_connection_close_error ccerr;
	ngtcp2_connection_close_error_set_transport_error(
		&ccerr, code, (const uint8_t *)reason, strlen(reason));
	ngtcp2_path_storage ps;
	uint8_t *buf = srv->cb.tx_buf(srv->app);
	ngtcp2_ssize n = dv_quic_write_close(c->q.conn, &ps, buf, TX_SIZE,
					     &ccerr, srv->now);
	if (n > 0)
		srv->cb.tx_send(srv->app, (size_t)n,
				(struct sockaddr *)&c->peer, c->peer_len,
				(struct sockaddr *)&c->local);
	c->state = QC_DEAD;
	dv_doq_sconn_maybe_free(c);
}

/* The connection is over for QUIC: forget its IDs and ngtcp2 state; the
 * struct stays while queries of it are out. */
static void conn_end(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	if (c->ended)
		return;
	c->ended = true;
	c->state = QC_DEAD;
	srv->cb.on_conn_end(srv->app, c);
	dv_doq_cid_remove_all(c);
	conn_release(c);
	free(c->close_pkt);
	c->close_pkt = NULL;
	srv->n_conns--;
	if (c->closing) {
		c->closing = false;
		srv->n_closing--;
	}
}

void dv_doq_sconn_maybe_free(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	if (c->state != QC_DEAD)
		return;
	conn_end(c);
	/* streams without a pending query are freed now; the rest when the
	 * answer comes (dv_doq_server_answer sees the connection is gone) */
	for (doq_stream_t *s = c->streams, *next; s; s = next) {
		next = s->all_next;
		s->closed = true;
		if (c->pending == 0)
			stream_free(s);
		else
			stream_maybe_free(s);
	}
	if (c->pending == 0 && !c->buried) {
		conn_unlink(c);
		c->buried = true;
		c->next = srv->graveyard;
		srv->graveyard = c;
	}
}

/* ---- timers ---- */

/* Streams that started a query and did not finish it in time. */
static void reap_slow_streams(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	uint64_t timeout = srv->cfg.read_timeout_ms * 1000000u;
	while (c->rd_head && c->rd_head->start + timeout <= srv->now) {
		doq_stream_t *s = c->rd_head;
		rd_unlink(s);
		DV_STAT_INC(srv->st, doq_stream_timeouts);
		/* the client never finished its query: stop both
		 * directions; its credit comes back when the stream closes */
		ngtcp2_conn_shutdown_stream(c->q.conn, s->out.id,
					    DV_DOQ_REQUEST_CANCELLED);
	}
}

void dv_doq_server_expire(dv_doq_server_t *srv, doq_conn_t *c, uint64_t now)
{
	dv_doq_server_enter(srv, now);
	if (c->state == QC_CLOSING || c->state == QC_DRAINING) {
		c->state = QC_DEAD;
		dv_doq_sconn_maybe_free(c);
		goto out;
	}
	reap_slow_streams(c);
	int rv = ngtcp2_conn_handle_expiry(c->q.conn, now);
	if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
		/* silence on the other side: end without a word (and without
		 * a closing period) */
		if (rv == NGTCP2_ERR_IDLE_CLOSE) {
			DV_STAT_INC(srv->st, doq_idle_closed);
		} else {
			DV_STAT_INC(srv->st, doq_handshake_timeouts);
			srv->cb.on_failure(srv->app, c, "dropped",
					   "handshake timeout");
		}
		c->state = QC_DEAD;
		dv_doq_sconn_maybe_free(c);
		goto out;
	}
	if (rv != 0) {
		conn_close_liberr(c, rv);
		goto out;
	}
	conn_write(c);
out:
	dv_doq_server_leave(srv);
}

/* ---- writing ---- */

#define OUT_STREAM(o)                                                        \
	((doq_stream_t *)((char *)(o) - offsetof(doq_stream_t, out)))

static dv_quic_out_t *txq_next(void *arg, dv_quic_out_t *o)
{
	doq_conn_t *c = arg;
	doq_stream_t *s = o ? OUT_STREAM(o)->tx_next : c->tx_head;
	return s ? &s->out : NULL;
}

static void txq_done(void *arg, dv_quic_out_t *o)
{
	(void)arg;
	tx_unlink(OUT_STREAM(o));
}

/* flow control (extend_max_stream_data relinks it) or the stream is
 * gone */
static void txq_blocked(void *arg, dv_quic_out_t *o, bool gone)
{
	(void)arg;
	(void)gone;
	tx_unlink(OUT_STREAM(o));
}

static const dv_quic_sendq_t txq = {
	.next = txq_next,
	.done = txq_done,
	.blocked = txq_blocked,
};

static void conn_write(doq_conn_t *c)
{
	dv_doq_server_t *srv = c->srv;
	if (c->state != QC_OPEN)
		return;
	if (c->mute) /* until it idles out */
		conn_timer_update(c);
	if (c->mute)
		return;
	if (c->have_ccerr) {
		dv_doq_sconn_close(c);
		return;
	}
	uint64_t ts = srv->now;
	ngtcp2_path_storage ps;
	size_t max = ngtcp2_conn_get_max_tx_udp_payload_size(c->q.conn);
	if (max > TX_SIZE)
		max = TX_SIZE;
	for (unsigned pkts = 0; pkts < MAX_PKTS_PER_WRITE; pkts++) {
		uint8_t *buf = srv->cb.tx_buf(srv->app);
		ngtcp2_ssize n =
			dv_quic_write(c->q.conn, &ps, buf, max, ts, &txq, c);
		if (n < 0) {
			conn_close_liberr(c, (int)n);
			return;
		}
		if (n == 0)
			break; /* nothing more to send now */
		srv->cb.tx_send(srv->app, (size_t)n,
				(struct sockaddr *)ps.path.remote.addr,
				ps.path.remote.addrlen,
				(struct sockaddr *)ps.path.local.addr);
		c->tx_pkts++;
	}
	dv_quic_update_tx_time(c->q.conn, ts);
	conn_timer_update(c);
}

/* ---- queries ---- */

void dv_doq_server_answer(doq_stream_t *s, const uint8_t *wire, size_t len,
			  uint64_t now)
{
	doq_conn_t *c = s->c;
	dv_doq_server_t *srv = c->srv;
	dv_doq_server_enter(srv, now);
	s->answered = true;
	c->pending--;
	if (c->state != QC_OPEN)
		s->closed = true;
	if (c->state != QC_OPEN || s->closed) {
		/* cancelled by the client, or the connection is gone */
		stream_maybe_free(s);
		dv_doq_sconn_maybe_free(c);
		goto out;
	}
	uint8_t *out = malloc(2 + len);
	if (!out) {
		ngtcp2_conn_shutdown_stream(c->q.conn, s->out.id,
					    DV_DOQ_INTERNAL_ERROR);
	} else {
		dv_put16(out, (uint16_t)len);
		memcpy(out + 2, wire, len);
		s->out.data = out;
		s->out.len = 2 + len;
		tx_link(s);
	}
	if (c->in_callback)
		goto out; /* dv_doq_sconn_read writes once ngtcp2 returns */
	conn_write(c);
	if (srv->draining && c->pending == 0)
		dv_doq_sconn_close(c); /* its last answer is out */
out:
	dv_doq_server_leave(srv);
}

/* A complete query on stream `s`: check it and hand it up. */
static int stream_query(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	dv_doq_server_t *srv = c->srv;
	const uint8_t *msg = dv_doq_frame_msg(&s->in);
	size_t len = dv_doq_frame_msg_len(&s->in);
	const char *why;
	rd_unlink(s);
	if (dv_doq_check_query(msg, len, s->early, &why) != 0) {
		conn_protocol_error(c, why);
		return -1;
	}
	/* the answer may come from inside on_query */
	s->submitted = true;
	c->pending++;
	int rv = srv->cb.on_query(srv->app, c, s, s->out.id, msg, len);
	if (rv == -ENOMEM) {
		s->submitted = false;
		c->pending--;
		ngtcp2_conn_shutdown_stream(c->q.conn, s->out.id,
					    DV_DOQ_INTERNAL_ERROR);
		return 0;
	}
	stream_credit(s);
	dv_doq_frame_release(&s->in);
	DV_STAT_INC(srv->st, doq_streams);
	if (rv < 0) {
		/* not DNS (too short / a response): no answer will come */
		s->submitted = false;
		c->pending--;
		conn_protocol_error(c, "not a DNS query");
		return -1;
	}
	return 0;
}

/* ---- ngtcp2 callbacks ---- */

static int recv_stream_data_cb(ngtcp2_conn *qc, uint32_t flags,
			       int64_t stream_id, uint64_t offset,
			       const uint8_t *data, size_t datalen,
			       void *user_data, void *stream_user_data)
{
	(void)offset;
	doq_conn_t *c = user_data;
	doq_stream_t *s = stream_user_data;
	if (!ngtcp2_is_bidi_stream(stream_id) ||
	    ngtcp2_conn_is_local_stream(qc, stream_id)) {
		conn_protocol_error(c, "query on a non-client bidi stream");
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (!s && dv_doq_sconn_over_limit(c, stream_id))
		return 0; /* cfg.max_unfinished: silenced */
	if (!s) {
		s = stream_new(c, stream_id);
		if (!s) {
			dv_doq_sconn_app_error(c, DV_DOQ_INTERNAL_ERROR, NULL);
			return NGTCP2_ERR_CALLBACK_FAILURE;
		}
	}
	if (flags & NGTCP2_STREAM_DATA_FLAG_EARLY)
		s->early = true;
	const char *why = NULL;
	switch (dv_doq_frame_feed(&s->in, data, datalen,
				  flags & NGTCP2_STREAM_DATA_FLAG_FIN, &why)) {
	case DV_DOQ_MORE:
	case DV_DOQ_DONE:
		return 0;
	case DV_DOQ_COMPLETE:
		/* answered as soon as it is whole (some clients FIN late) */
		return stream_query(s) < 0 ? NGTCP2_ERR_CALLBACK_FAILURE : 0;
	case DV_DOQ_EPROTO:
		conn_protocol_error(c, why);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	default:
		dv_doq_sconn_app_error(c, DV_DOQ_INTERNAL_ERROR, NULL);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
}

static int acked_stream_data_offset_cb(ngtcp2_conn *qc, int64_t stream_id,
				       uint64_t offset, uint64_t datalen,
				       void *user_data, void *stream_user_data)
{
	(void)qc;
	(void)stream_id;
	(void)offset;
	(void)datalen;
	(void)user_data;
	(void)stream_user_data;
	return 0; /* answers are freed with their stream */
}

static int stream_close_cb(ngtcp2_conn *qc, uint32_t flags,
			   int64_t stream_id, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)flags;
	(void)app_error_code;
	doq_conn_t *c = user_data;
	doq_stream_t *s = stream_user_data;
	if (ngtcp2_is_bidi_stream(stream_id) &&
	    !ngtcp2_conn_is_local_stream(qc, stream_id))
		dv_doq_sconn_credit_back(c);
	if (!s)
		return 0;
	if (s->submitted && !s->answered)
		DV_STAT_INC(c->srv->st, doq_cancelled);
	s->closed = true;
	tx_unlink(s);
	rd_unlink(s);
	stream_maybe_free(s);
	return 0;
}

static int stream_reset_cb(ngtcp2_conn *qc, int64_t stream_id,
			   uint64_t final_size, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)final_size;
	(void)app_error_code;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	/* the client cancelled: no answer goes back (the stream closes
	 * once our side is shut too) */
	if (s) {
		rd_unlink(s);
		tx_unlink(s);
	}
	ngtcp2_conn_shutdown_stream_write(qc, stream_id,
					  DV_DOQ_REQUEST_CANCELLED);
	return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *qc, int64_t stream_id,
				  uint64_t app_error_code, void *user_data,
				  void *stream_user_data)
{
	(void)app_error_code;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	if (s)
		tx_unlink(s);
	ngtcp2_conn_shutdown_stream_read(qc, stream_id,
					 DV_DOQ_REQUEST_CANCELLED);
	return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *qc, int64_t stream_id,
				     uint64_t max_data, void *user_data,
				     void *stream_user_data)
{
	(void)qc;
	(void)stream_id;
	(void)max_data;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	if (s && s->out.data && s->out.sent < s->out.len && !s->closed)
		tx_link(s);
	return 0;
}

static int handshake_completed_cb(ngtcp2_conn *qc, void *user_data)
{
	doq_conn_t *c = user_data;
	dv_doq_server_t *srv = c->srv;
	c->handshake_done = true;
	bool resumed = dv_quic_tls_resumed(c->q.tls);
	dv_doq_ho_remove(c, resumed);
	DV_STAT_INC(srv->st, doq_handshakes);
	if (resumed)
		DV_STAT_INC(srv->st, doq_resumed);
	if (dv_quic_tls_early_data_accepted(c->q.tls))
		DV_STAT_INC(srv->st, doq_early_data);
	if (srv->cb.on_handshake)
		srv->cb.on_handshake(srv->app, c, resumed);
	(void)dv_quic_tls_send_ticket(c->q.tls);
	/* a token for the client's next connection: it skips Retry */
	uint8_t tok[NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN];
	ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
		tok, srv->cfg.secret, srv->cfg.secret_len,
		(struct sockaddr *)&c->peer, c->peer_len, srv->wall);
	if (n > 0)
		(void)ngtcp2_conn_submit_new_token(qc, tok, (size_t)n);
	return 0;
}

static int get_new_connection_id_cb(ngtcp2_conn *qc, ngtcp2_cid *cid,
				    uint8_t *token, size_t cidlen,
				    void *user_data)
{
	(void)qc;
	(void)cidlen; /* always ours: ngtcp2 asks for our own length */
	doq_conn_t *c = user_data;
	dv_doq_server_t *srv = c->srv;
	for (int tries = 0;; tries++) {
		dv_quic_cid_new(cid, DV_DOQ_SERVER_CID_LEN, (int)srv->cfg.worker);
		if (dv_doq_cid_add(c, cid->data, cid->datalen) == 0)
			break;
		if (tries == 3)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    token, srv->cfg.secret, srv->cfg.secret_len, cid) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int remove_connection_id_cb(ngtcp2_conn *qc, const ngtcp2_cid *cid,
				   void *user_data)
{
	(void)qc;
	dv_doq_cid_remove(user_data, cid->data, cid->datalen);
	return 0;
}

static int path_validation_cb(ngtcp2_conn *qc, uint32_t flags,
			      const ngtcp2_path *path,
			      ngtcp2_path_validation_result res,
			      void *user_data)
{
	(void)qc;
	(void)flags;
	doq_conn_t *c = user_data;
	if (res != NGTCP2_PATH_VALIDATION_RESULT_SUCCESS)
		return 0;
	/* the client moved: answer it where it is now */
	memcpy(&c->peer, path->remote.addr, path->remote.addrlen);
	c->peer_len = path->remote.addrlen;
	DV_STAT_INC(c->srv->st, doq_migrations);
	return 0;
}

static void server_callbacks(ngtcp2_callbacks *cb)
{
	dv_quic_callbacks_init(cb);
	cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
	cb->handshake_completed = handshake_completed_cb;
	cb->recv_stream_data = recv_stream_data_cb;
	cb->acked_stream_data_offset = acked_stream_data_offset_cb;
	cb->stream_close = stream_close_cb;
	cb->get_new_connection_id = get_new_connection_id_cb;
	cb->remove_connection_id = remove_connection_id_cb;
	cb->path_validation = path_validation_cb;
	cb->stream_reset = stream_reset_cb;
	cb->extend_max_stream_data = extend_max_stream_data_cb;
	cb->stream_stop_sending = stream_stop_sending_cb;
}

/* ---- connections ---- */

doq_conn_t *dv_doq_sconn_new(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
			     const ngtcp2_cid *odcid, const uint8_t key[9],
			     const dv_quic_path_t *path)
{
	const dv_doq_server_config_t *cfg = &srv->cfg;
	doq_conn_t *c = calloc(1, sizeof(*c) + cfg->conn_user_size);
	if (!c)
		return NULL;
	c->srv = srv;
	memcpy(&c->peer, &path->remote, path->remote_len);
	c->peer_len = path->remote_len;
	memcpy(&c->local, &path->local, path->local_len);
	c->local_len = path->local_len;
	dv_quic_conn_init(&c->q, c);

	ngtcp2_cid scid;
	dv_quic_cid_new(&scid, DV_DOQ_SERVER_CID_LEN, (int)cfg->worker);
	ngtcp2_settings settings;
	dv_quic_settings_init(&settings, srv->now,
			      cfg->handshake_timeout_ms * NGTCP2_MILLISECONDS);
	settings.token = hd->token;
	settings.max_tx_udp_payload_size = TX_SIZE;

	ngtcp2_transport_params params;
	dv_quic_params_init(&params,
			    cfg->idle_timeout_ms * NGTCP2_MILLISECONDS);
	c->credit = cfg->max_streams;
	if (cfg->max_streams_total && c->credit > cfg->max_streams_total)
		c->credit = cfg->max_streams_total;
	params.initial_max_streams_bidi = c->credit;
	params.initial_max_stream_data_bidi_remote = DV_DOQ_MSG_MAX;
	params.initial_max_stream_data_bidi_local = 0;
	params.initial_max_stream_data_uni = 0;
	params.initial_max_data =
		(uint64_t)cfg->max_streams * 4096 + DV_DOQ_MSG_MAX;
	params.max_udp_payload_size = DV_DOQ_SERVER_RX_MAX;
	params.stateless_reset_token_present = 1;
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    params.stateless_reset_token, cfg->secret,
		    cfg->secret_len, &scid) != 0)
		goto fail;
	if (odcid) {
		params.original_dcid = *odcid;
		params.retry_scid = hd->dcid;
		params.retry_scid_present = 1;
	} else {
		params.original_dcid = hd->dcid;
	}
	ngtcp2_path np;
	dv_quic_path_to_ngtcp2(&np, path); /* ngtcp2 copies it */
	ngtcp2_callbacks callbacks;
	server_callbacks(&callbacks);
	if (ngtcp2_conn_server_new(&c->q.conn, &hd->scid, &scid, &np,
				   hd->version, &callbacks, &settings,
				   &params, srv->mem, c) != 0)
		goto fail;
	if (dv_quic_conn_set_tls(&c->q,
				 dv_quic_tls_server_new(cfg->tls, &c->q.ref)))
		goto fail_conn;
	/* our first ID and the one the client chose both reach us */
	if (dv_doq_cid_add(c, scid.data, scid.datalen) != 0 ||
	    dv_doq_cid_add(c, hd->dcid.data, hd->dcid.datalen) != 0 ||
	    dv_doq_ho_add(c, key) != 0) {
		dv_doq_cid_remove_all(c);
		goto fail_conn;
	}
	c->state = QC_OPEN;
	srv->n_conns++;
	dv_doq_sconn_link_head(c);
	DV_STAT_INC(srv->st, doq_connections);
	return c;
fail_conn:
	dv_quic_conn_release(&c->q);
fail:
	free(c);
	return NULL;
}

void dv_doq_sconn_read(doq_conn_t *c, const dv_quic_path_t *path,
		       const uint8_t *data, size_t len)
{
	if (c->mute)
		return; /* as if it were gone (max_unfinished) */
	ngtcp2_path np;
	dv_quic_path_to_ngtcp2(&np, path);
	ngtcp2_pkt_info pi = {0};
	c->in_callback = true;
	int rv = ngtcp2_conn_read_pkt(c->q.conn, &np, &pi, data, len,
				      c->srv->now);
	c->in_callback = false;
	if (rv == 0 && c->handshake_done)
		dv_quic_conn_shed_tls(&c->q); /* ~10 KiB less per connection */
	if (rv != 0) {
		switch (rv) {
		case NGTCP2_ERR_DRAINING:
			conn_set_ending(c, QC_DRAINING);
			conn_timer_update(c);
			return;
		case NGTCP2_ERR_DROP_CONN:
			c->state = QC_DEAD;
			dv_doq_sconn_maybe_free(c);
			return;
		case NGTCP2_ERR_CALLBACK_FAILURE:
			if (c->have_ccerr) {
				dv_doq_sconn_close(c);
				return;
			}
			/* fall through */
		default:
			conn_close_liberr(c, rv);
			return;
		}
	}
	conn_write(c);
}

/* ---- the server ---- */

void dv_doq_server_drain(dv_doq_server_t *srv, uint64_t now)
{
	dv_doq_server_enter(srv, now);
	srv->draining = true;
	for (doq_conn_t *c = srv->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == QC_OPEN && c->pending == 0)
			dv_doq_sconn_close(c);
	}
	dv_doq_server_leave(srv);
}

dv_doq_server_t *dv_doq_server_of(const doq_stream_t *s)
{
	return s->c->srv;
}

void *dv_doq_server_app(const dv_doq_server_t *srv)
{
	return srv->app;
}

void *dv_doq_sconn_user(doq_conn_t *c)
{
	return c->user;
}

void dv_doq_server_free(dv_doq_server_t *srv)
{
	if (!srv)
		return;
	srv->depth++;
	while (srv->conns) {
		doq_conn_t *c = srv->conns;
		c->state = QC_DEAD;
		c->pending = 0; /* no answer will come */
		dv_doq_sconn_maybe_free(c);
	}
	reap(srv);
	dv_pages_free(srv->pages); /* every connection's blocks are back */
	free(srv->ho_level);
	free(srv->ho_buckets);
	free(srv->buckets);
	free(srv);
}

/*
 * DNS-over-QUIC client engine.  See doq_client.h.
 *
 * Streams live on one of three lists: `pending` (submitted, waiting for
 * stream credit or the handshake), `active` (opened, not ended) and
 * `ended` (the caller was told, but ngtcp2 still holds the stream, and
 * with it a pointer to our send buffer, until its stream_close).  Both
 * `pending` and `active` are in submission order and every query has the
 * same timeout, so the earliest deadline is always at a list head.
 * Opened streams with bytes (or a FIN) left to send are also on `sendq`.
 */
#include "src/proto/doq_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/proto/quic.h"
#include "src/tls/quic_tls.h"

#include "src/proto/doq_client_int.h"

/* ---- lists ---- */

static void list_push(list_t *l, stream_t *s, list_id_t id)
{
	s->prev = l->tail;
	s->next = NULL;
	if (l->tail)
		l->tail->next = s;
	else
		l->head = s;
	l->tail = s;
	l->n++;
	s->list = id;
}

static void list_push_front(list_t *l, stream_t *s, list_id_t id)
{
	s->prev = NULL;
	s->next = l->head;
	if (l->head)
		l->head->prev = s;
	else
		l->tail = s;
	l->head = s;
	l->n++;
	s->list = id;
}

static list_t *list_of(dv_doq_client_t *c, stream_t *s)
{
	switch (s->list) {
	case L_PENDING:
		return &c->pending;
	case L_ACTIVE:
		return &c->active;
	case L_ENDED:
		return &c->ended;
	default:
		return NULL;
	}
}

static void list_remove(dv_doq_client_t *c, stream_t *s)
{
	list_t *l = list_of(c, s);
	if (!l)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	l->n--;
	s->prev = s->next = NULL;
	s->list = L_NONE;
}

static void sendq_add(dv_doq_client_t *c, stream_t *s)
{
	if (s->on_sendq)
		return;
	s->sprev = c->sq_tail;
	s->snext = NULL;
	if (c->sq_tail)
		c->sq_tail->snext = s;
	else
		c->sq_head = s;
	c->sq_tail = s;
	s->on_sendq = true;
}

static void sendq_remove(dv_doq_client_t *c, stream_t *s)
{
	if (!s->on_sendq)
		return;
	if (s->sprev)
		s->sprev->snext = s->snext;
	else
		c->sq_head = s->snext;
	if (s->snext)
		s->snext->sprev = s->sprev;
	else
		c->sq_tail = s->sprev;
	s->sprev = s->snext = NULL;
	s->on_sendq = false;
}

static void stream_free(stream_t *s)
{
	free((uint8_t *)s->out.data);
	free(s->rx);
	free(s);
}

/* Tell the caller the query is over; the stream goes to `ended` (ngtcp2
 * still has it) or is freed (it has no stream, or ngtcp2 closed it). */
static void stream_end(dv_doq_client_t *c, stream_t *s, dv_doq_end_t how,
		       bool ngtcp2_done, uint64_t now)
{
	if (s->list == L_ENDED) {
		if (ngtcp2_done) {
			list_remove(c, s);
			stream_free(s);
		}
		return;
	}
	if (s->list == L_ACTIVE && s->reset_at)
		c->n_reset--;
	if (s->list == L_ACTIVE && c->active.n == 1)
		c->last_end = now;
	list_remove(c, s);
	sendq_remove(c, s);
	s->res.how = how;
	s->res.trailing = s->rx_len;
	if (c->cb.on_end)
		c->cb.on_end(c->app, s->query, s->out.id, &s->res, now);
	if (s->out.id < 0 || ngtcp2_done)
		stream_free(s);
	else
		list_push(&c->ended, s, L_ENDED);
}

/* The connection is over: end every query still going. */
static void end_all(dv_doq_client_t *c, uint64_t now)
{
	while (c->pending.head)
		stream_end(c, c->pending.head, DV_DOQ_END_CONN_CLOSED, true,
			   now);
	while (c->active.head)
		stream_end(c, c->active.head, DV_DOQ_END_CONN_CLOSED, true,
			   now);
	while (c->ended.head)
		stream_end(c, c->ended.head, DV_DOQ_END_CONN_CLOSED, true,
			   now);
}

/* ---- ngtcp2 callbacks ---- */

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
			  size_t cidlen, void *user_data)
{
	(void)conn;
	(void)user_data;
	dv_quic_cid_new(cid, cidlen, -1);
	dv_quic_rand(token, NGTCP2_STATELESS_RESET_TOKENLEN);
	return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user_data)
{
	dv_doq_client_t *c = user_data;
	uint64_t now = c->now;
	c->state = C_OPEN;
	c->st.handshake_done = true;
	c->credit0 = ngtcp2_conn_get_streams_bidi_left(conn) +
		     c->st.streams_opened;
	c->st.handshake_ns = now - c->start;
	c->st.resumed = dv_quic_tls_resumed(c->q.tls);
	c->st.early_accepted =
		c->early_tp_set && dv_quic_tls_early_data_accepted(c->q.tls);
	/* GnuTLS tells about a rejected 0-RTT only now: ngtcp2 then drops
	 * the early streams and early_data_rejected_cb queues them again */
	if (c->early_tp_set && !c->st.early_accepted) {
		c->st.early_rejected = c->st.early_queries > 0;
		if (ngtcp2_conn_early_data_rejected(conn) != 0)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (c->cb.on_handshake)
		c->cb.on_handshake(c->app, now);
	return 0;
}

static int early_data_rejected_cb(ngtcp2_conn *conn, void *user_data)
{
	(void)conn;
	dv_doq_client_t *c = user_data;
	/* ngtcp2 forgot the streams (without stream_close): back to the
	 * front of the queue, in order, to be sent again */
	while (c->active.tail) {
		stream_t *s = c->active.tail;
		if (s->reset_at)
			c->n_reset--;
		list_remove(c, s);
		sendq_remove(c, s);
		s->out.id = -1;
		s->out.sent = 0;
		s->fin_sent = false;
		s->reset_at = 0;
		s->rx_len = 0;
		list_push_front(&c->pending, s, L_PENDING);
	}
	while (c->ended.head) {
		stream_t *s = c->ended.head;
		list_remove(c, s);
		stream_free(s);
	}
	return 0;
}

static int recv_tx_key_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level,
			  void *user_data)
{
	(void)conn;
	dv_doq_client_t *c = user_data;
	if (level == NGTCP2_CRYPTO_LEVEL_EARLY) {
		c->early_key = true;
		c->st.early_attempted = c->early_tp_set;
	}
	return 0;
}

static void deliver(dv_doq_client_t *c, stream_t *s, uint64_t now)
{
	size_t off = 0;
	while (s->rx_len - off >= 2) {
		size_t n = dv_get16(s->rx + off);
		if (s->rx_len - off - 2 < n)
			break;
		s->res.messages++;
		if (c->cb.on_message)
			c->cb.on_message(c->app, s->query, s->out.id,
					 s->rx + off + 2, n, s->opened, now);
		off += 2 + n;
	}
	if (off) {
		memmove(s->rx, s->rx + off, s->rx_len - off);
		s->rx_len -= off;
	}
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags,
			       int64_t stream_id, uint64_t offset,
			       const uint8_t *data, size_t len,
			       void *user_data, void *stream_user_data)
{
	(void)offset;
	dv_doq_client_t *c = user_data;
	stream_t *s = stream_user_data;
	ngtcp2_conn_extend_max_stream_offset(conn, stream_id, len);
	ngtcp2_conn_extend_max_offset(conn, len);
	if (!s || s->list != L_ACTIVE)
		return 0;
	uint64_t now = c->now;
	if (len) {
		if (s->rx_len + len > s->rx_cap) {
			size_t cap = s->rx_cap ? s->rx_cap : 512;
			while (cap < s->rx_len + len && cap < RX_MAX)
				cap *= 2;
			if (cap > RX_MAX)
				cap = RX_MAX;
			uint8_t *p = realloc(s->rx, cap);
			if (!p)
				return NGTCP2_ERR_CALLBACK_FAILURE;
			s->rx = p;
			s->rx_cap = cap;
		}
		size_t take = len;
		if (take > s->rx_cap - s->rx_len)
			take = s->rx_cap - s->rx_len; /* a flood: drop it */
		memcpy(s->rx + s->rx_len, data, take);
		s->rx_len += take;
		deliver(c, s, now);
	}
	if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
		stream_end(c, s, DV_DOQ_END_FIN, false, now);
	return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t stream_id,
			   uint64_t final_size, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)conn;
	(void)stream_id;
	(void)final_size;
	dv_doq_client_t *c = user_data;
	stream_t *s = stream_user_data;
	if (!s || s->list != L_ACTIVE)
		return 0;
	s->res.app_code = app_error_code;
	stream_end(c, s, DV_DOQ_END_RESET, false, c->now);
	return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags,
			   int64_t stream_id, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)conn;
	(void)stream_id;
	dv_doq_client_t *c = user_data;
	stream_t *s = stream_user_data;
	if (!s)
		return 0;
	if (s->list == L_ACTIVE) {
		/* closed without our seeing a FIN or RESET_STREAM first */
		if (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)
			s->res.app_code = app_error_code;
		stream_end(c, s,
			   (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)
				   ? DV_DOQ_END_RESET
				   : DV_DOQ_END_FIN,
			   true, c->now);
		return 0;
	}
	stream_end(c, s, DV_DOQ_END_FIN, true, 0); /* frees an ended one */
	return 0;
}

static int extend_max_streams_cb(ngtcp2_conn *conn, uint64_t max_streams,
				 void *user_data)
{
	(void)conn;
	dv_doq_client_t *c = user_data;
	if (max_streams > c->st.max_streams_seen)
		c->st.max_streams_seen = max_streams;
	/* streams are opened by the next dv_doq_client_write */
	return 0;
}

static int recv_retry_cb(ngtcp2_conn *conn, const ngtcp2_pkt_hd *hd,
			 void *user_data)
{
	dv_doq_client_t *c = user_data;
	c->st.retry_received = true;
	return ngtcp2_crypto_recv_retry_cb(conn, hd, user_data);
}

static int recv_new_token_cb(ngtcp2_conn *conn, const ngtcp2_vec *token,
			     void *user_data)
{
	(void)conn;
	dv_doq_client_t *c = user_data;
	uint8_t *p = malloc(token->len ? token->len : 1);
	if (!p)
		return 0; /* a token is an optimization */
	memcpy(p, token->base, token->len);
	free(c->token);
	c->token = p;
	c->token_len = token->len;
	c->st.new_token_received = true;
	return 0;
}

static int path_validation_cb(ngtcp2_conn *conn, uint32_t flags,
			      const ngtcp2_path *path,
			      ngtcp2_path_validation_result res,
			      void *user_data)
{
	(void)conn;
	(void)flags;
	dv_doq_client_t *c = user_data;
	if (!c->st.migrated || path->user_data != c->path2.ctx)
		return 0;
	if (res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS)
		c->st.path_validated = true;
	else
		c->st.path_failed = true;
	return 0;
}

/* ngtcp2's debug log (--debug): its format strings are its own */
__attribute__((format(printf, 2, 3)))
static void log_cb(void *user_data, const char *fmt, ...)
{
	(void)user_data;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- the connection ---- */

static void set_early_params(ngtcp2_transport_params *tp,
			     const dv_doq_early_params_t *p)
{
	memset(tp, 0, sizeof(*tp));
	tp->initial_max_streams_bidi = p->max_streams_bidi;
	tp->initial_max_streams_uni = p->max_streams_uni;
	tp->initial_max_stream_data_bidi_local = p->max_stream_data_bidi_local;
	tp->initial_max_stream_data_bidi_remote =
		p->max_stream_data_bidi_remote;
	tp->initial_max_stream_data_uni = p->max_stream_data_uni;
	tp->initial_max_data = p->max_data;
	tp->active_connection_id_limit = p->active_connection_id_limit;
	tp->max_datagram_frame_size = p->max_datagram_frame_size;
}

dv_doq_client_t *dv_doq_client_new(const dv_doq_config_t *cfg,
				   const dv_doq_callbacks_t *cb, void *app,
				   const dv_doq_path_t *path, uint64_t now,
				   char *err, size_t err_len)
{
	ngtcp2_callbacks callbacks;
	dv_quic_callbacks_init(&callbacks);
	callbacks.client_initial = ngtcp2_crypto_client_initial_cb;
	callbacks.handshake_completed = handshake_completed_cb;
	callbacks.recv_stream_data = recv_stream_data_cb;
	callbacks.stream_close = stream_close_cb;
	callbacks.recv_retry = recv_retry_cb;
	callbacks.extend_max_local_streams_bidi = extend_max_streams_cb;
	callbacks.get_new_connection_id = get_new_cid_cb;
	callbacks.stream_reset = stream_reset_cb;
	callbacks.path_validation = path_validation_cb;
	callbacks.recv_new_token = recv_new_token_cb;
	callbacks.recv_tx_key = recv_tx_key_cb;
	callbacks.early_data_rejected = early_data_rejected_cb;
	const uint8_t *tls_sess = NULL;
	size_t tls_sess_len = 0;
	dv_doq_early_params_t early;
	bool have_early = false;
	if (cfg->session && cfg->session_len) {
		if (dv_doq_session_decode(cfg->session, cfg->session_len,
					  &tls_sess, &tls_sess_len,
					  &early) != 0) {
			snprintf(err, err_len, "saved session is malformed");
			return NULL;
		}
		have_early = cfg->early;
	}

	dv_doq_client_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	c->cb = *cb;
	c->app = app;
	c->start = now;
	c->now = now;
	c->timeout = cfg->query_timeout ? cfg->query_timeout
					: 5 * NGTCP2_SECONDS;
	c->max_window = cfg->max_window;
	c->silent_ptos = cfg->silent_ptos;
	c->credit0 = UINT64_MAX;
	c->path = *path;
	dv_quic_conn_init(&c->q, c);
	c->debug = cfg->debug;
	ngtcp2_connection_close_error_default(&c->lerr);

	ngtcp2_cid dcid, scid;
	dv_quic_cid_new(&dcid, 16, -1);
	dv_quic_cid_new(&scid, 16, -1);

	ngtcp2_settings settings;
	dv_quic_settings_init(&settings, now,
			      cfg->handshake_timeout ? cfg->handshake_timeout
						     : 10 * NGTCP2_SECONDS);
	settings.log_printf = cfg->debug ? log_cb : NULL;
	if (cfg->token && cfg->token_len) {
		settings.token.base = (uint8_t *)cfg->token; /* ngtcp2 copies */
		settings.token.len = cfg->token_len;
	}

	ngtcp2_transport_params params;
	dv_quic_params_init(&params, cfg->idle_timeout ? cfg->idle_timeout
						       : 30 * NGTCP2_SECONDS);
	/* DoQ servers open no streams; answers are at most 64 KiB each */
	params.initial_max_streams_bidi = 0;
	params.initial_max_stream_data_bidi_local = 128 * 1024;
	params.initial_max_data = 4 * 1024 * 1024;
	/* A server such as knotd counts a stream until the ACK of its answer
	 * arrives, and max_window opens the next stream as soon as the
	 * answer is in: ngtcp2 would send that ACK up to max_ack_delay
	 * later (min(it, smoothed RTT / 8)), after the new stream.  With 0
	 * the ACK leads the very packet that opens it. */
	if (cfg->max_window)
		params.max_ack_delay = 0;

	ngtcp2_path np;
	dv_quic_path_to_ngtcp2(&np, &c->path);
	int rv = ngtcp2_conn_client_new(&c->q.conn, &dcid, &scid, &np,
					NGTCP2_PROTO_VER_V1, &callbacks,
					&settings, &params, NULL, c);
	if (rv != 0) {
		snprintf(err, err_len, "ngtcp2_conn_client_new: %s",
			 ngtcp2_strerror(rv));
		goto fail;
	}
	if (dv_quic_conn_set_tls(&c->q, dv_quic_tls_client_new(
						cfg->tls, &c->q.ref, cfg->name,
						tls_sess, tls_sess_len, err,
						err_len)) != 0)
		goto fail;
	if (have_early) {
		ngtcp2_transport_params tp;
		set_early_params(&tp, &early);
		ngtcp2_conn_set_early_remote_transport_params(c->q.conn, &tp);
		c->early_tp_set = true;
	}
	return c;
fail:
	dv_doq_client_free(c);
	return NULL;
}

void dv_doq_client_free(dv_doq_client_t *c)
{
	if (!c)
		return;
	list_t *lists[] = {&c->pending, &c->active, &c->ended};
	for (unsigned i = 0; i < 3; i++) {
		while (lists[i]->head) {
			stream_t *s = lists[i]->head;
			list_remove(c, s);
			stream_free(s);
		}
	}
	dv_quic_conn_release(&c->q);
	free(c->token);
	free(c);
}

int dv_doq_client_submit(dv_doq_client_t *c, const uint8_t *data,
			 size_t len, unsigned flags, uint64_t reset_after,
			 void *query, uint64_t now)
{
	c->now = now;
	if (c->state >= C_CLOSING || c->spent)
		return DV_ECLOSED;
	if (!(flags & DV_DOQ_RAW) && len > DV_DNS_MAX_MSG)
		return -EINVAL;
	stream_t *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	size_t n = flags & DV_DOQ_RAW ? len : len + 2;
	uint8_t *out = malloc(n ? n : 1);
	if (!out) {
		free(s);
		return -ENOMEM;
	}
	if (flags & DV_DOQ_RAW) {
		memcpy(out, data, len);
	} else {
		dv_put16(out, (uint16_t)len);
		memcpy(out + 2, data, len);
	}
	s->out.data = out;
	s->out.len = n;
	s->out.fin = !(flags & DV_DOQ_NO_FIN);
	s->out.id = -1;
	s->query = query;
	s->reset_after = reset_after;
	s->deadline = now + c->timeout;
	s->submitted = now;
	list_push(&c->pending, s, L_PENDING);
	return 0;
}

/* Put pending queries on streams while the server's credit lasts. */
static int open_streams(dv_doq_client_t *c, uint64_t now)
{
	if (!c->st.handshake_done && !c->early_tp_set)
		return 0;
	while (c->pending.head) {
		if (ngtcp2_conn_get_streams_bidi_left(c->q.conn) == 0) {
			c->st.credit_waits = true;
			return 0;
		}
		if (c->max_window && c->active.head &&
		    c->st.streams_opened - c->active.head->seq >= c->max_window) {
			c->st.window_waits = true;
			return 0;
		}
		stream_t *s = c->pending.head;
		int64_t id;
		int rv = ngtcp2_conn_open_bidi_stream(c->q.conn, &id, s);
		if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
			c->st.credit_waits = true;
			return 0;
		}
		if (rv != 0)
			return rv;
		list_remove(c, s);
		s->out.id = id;
		s->opened = now;
		s->early = !c->st.handshake_done;
		if (s->early)
			c->st.early_queries++;
		s->seq = c->st.streams_opened++;
		list_push(&c->active, s, L_ACTIVE);
		sendq_add(c, s);
	}
	return 0;
}

static void set_closed_from_ngtcp2(dv_doq_client_t *c)
{
	ngtcp2_connection_close_error ce;
	ngtcp2_conn_get_connection_close_error(c->q.conn, &ce);
	c->ci.closed = true;
	c->ci.code = ce.error_code;
	c->ci.application =
		ce.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
	c->ci.idle =
		ce.type ==
		NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE;
	size_t n = ce.reasonlen < sizeof(c->ci.reason) - 1
			   ? ce.reasonlen
			   : sizeof(c->ci.reason) - 1;
	if (ce.reason && n)
		memcpy(c->ci.reason, ce.reason, n);
	c->ci.reason[n] = '\0';
}

/* A fatal ngtcp2 result: note why, end the queries, maybe send a close. */
static int fail_conn(dv_doq_client_t *c, int rv, uint64_t now)
{
	if (c->state == C_CLOSED)
		return DV_ECLOSED;
	if (rv == NGTCP2_ERR_DRAINING) {
		set_closed_from_ngtcp2(c);
		c->ci.by_peer = true;
	} else if (rv == NGTCP2_ERR_IDLE_CLOSE) {
		c->ci.closed = true;
		c->ci.idle = true;
	} else {
		c->ci.closed = true;
		uint8_t alert = dv_quic_liberr(c->q.conn, rv, &c->lerr);
		if (rv == NGTCP2_ERR_CRYPTO) {
			c->ci.tls_alert = alert;
			snprintf(c->ci.local_error, sizeof(c->ci.local_error),
				 "TLS handshake failed: %s (alert %u)",
				 dv_doq_alert_name(alert), alert);
		} else {
			snprintf(c->ci.local_error, sizeof(c->ci.local_error),
				 "%s", ngtcp2_strerror(rv));
		}
		/* a peer's CONNECTION_CLOSE seen before (in the closing
		 * period), otherwise ours goes out with the next write */
		c->want_close_pkt = rv != NGTCP2_ERR_HANDSHAKE_TIMEOUT &&
				    rv != NGTCP2_ERR_CLOSING;
	}
	c->state = C_CLOSED;
	end_all(c, now);
	return DV_ECLOSED;
}

/* Queries wait for credit the server may never give: every stream has
 * ended and the credit is used up.  When that has lasted two probe
 * timeouts (our ACKs reached the server; a server that gives credit back
 * would have), returns the time it does, else 0. */
static uint64_t spent_at(dv_doq_client_t *c)
{
	if (!c->pending.head || c->active.head || !c->st.handshake_done ||
	    c->spent || ngtcp2_conn_get_streams_bidi_left(c->q.conn) > 0)
		return 0;
	uint64_t t = c->last_end ? c->last_end : c->pending.head->submitted;
	return t + 2 * ngtcp2_conn_get_pto(c->q.conn);
}

/* The server acknowledged nothing through `ptos` probe timeouts while
 * queries were on streams: it is gone, or it dropped the connection
 * without a word (knotd does, past its stream limit).  End the
 * connection now, without a CONNECTION_CLOSE (nobody would read it). */
static int fail_silent(dv_doq_client_t *c, unsigned ptos, uint64_t now)
{
	c->ci.closed = true;
	c->ci.silent = true;
	snprintf(c->ci.local_error, sizeof(c->ci.local_error),
		 "the server went silent (%u probe timeouts unacknowledged)",
		 ptos);
	c->state = C_CLOSED;
	end_all(c, now);
	return DV_ECLOSED;
}

int dv_doq_client_read(dv_doq_client_t *c, const dv_doq_path_t *path,
		       const uint8_t *pkt, size_t len, uint64_t now)
{
	c->now = now;
	if (c->state == C_CLOSED)
		return DV_ECLOSED;
	ngtcp2_path np;
	dv_quic_path_to_ngtcp2(&np, path);
	ngtcp2_pkt_info pi = {0};
	int rv = ngtcp2_conn_read_pkt(c->q.conn, &np, &pi, pkt, len, now);
	if (rv == 0 || rv == NGTCP2_ERR_DISCARD_PKT)
		return 0;
	return fail_conn(c, rv, now);
}

int dv_doq_client_expire(dv_doq_client_t *c, uint64_t now)
{
	c->now = now;
	if (c->state == C_CLOSED)
		return DV_ECLOSED;
	int rv = ngtcp2_conn_handle_expiry(c->q.conn, now);
	if (rv != 0)
		return fail_conn(c, rv, now);
	if (c->silent_ptos && c->active.head && c->st.handshake_done) {
		ngtcp2_conn_stat cs;
		ngtcp2_conn_get_conn_stat(c->q.conn, &cs);
		if (cs.pto_count >= c->silent_ptos)
			return fail_silent(c, (unsigned)cs.pto_count, now);
	}
	while (c->pending.head && c->pending.head->deadline <= now)
		stream_end(c, c->pending.head, DV_DOQ_END_TIMEOUT, true, now);
	uint64_t spent = spent_at(c);
	if (spent && spent <= now) {
		c->spent = true;
		while (c->pending.head)
			stream_end(c, c->pending.head, DV_DOQ_END_NO_CREDIT,
				   true, now);
	}
	while (c->active.head && c->active.head->deadline <= now) {
		stream_t *s = c->active.head;
		ngtcp2_conn_shutdown_stream(c->q.conn, s->out.id,
					    DV_DOQ_REQUEST_CANCELLED);
		stream_end(c, s, DV_DOQ_END_TIMEOUT, false, now);
	}
	if (c->n_reset) {
		/* reset, then wait for the server's reaction */
		for (stream_t *s = c->active.head; s; s = s->next) {
			if (!s->reset_at || s->reset_at > now)
				continue;
			ngtcp2_conn_shutdown_stream(c->q.conn, s->out.id,
						    DV_DOQ_REQUEST_CANCELLED);
			s->res.cancelled = true;
			s->reset_at = 0;
			c->n_reset--;
		}
	}
	return 0;
}

uint64_t dv_doq_client_expiry(dv_doq_client_t *c)
{
	if (c->state == C_CLOSED)
		return c->want_close_pkt ? 0 : UINT64_MAX;
	uint64_t t = ngtcp2_conn_get_expiry(c->q.conn);
	if (c->pending.head && c->pending.head->deadline < t)
		t = c->pending.head->deadline;
	uint64_t spent = spent_at(c);
	if (spent && spent < t)
		t = spent;
	if (c->active.head && c->active.head->deadline < t)
		t = c->active.head->deadline;
	if (c->n_reset) {
		for (stream_t *s = c->active.head; s; s = s->next)
			if (s->reset_at && s->reset_at < t)
				t = s->reset_at;
	}
	return t;
}

#define OUT_STREAM(o) ((stream_t *)((char *)(o) - offsetof(stream_t, out)))

static dv_quic_out_t *sendq_next(void *arg, dv_quic_out_t *o)
{
	dv_doq_client_t *c = arg;
	stream_t *s = o ? OUT_STREAM(o)->snext : c->sq_head;
	return s ? &s->out : NULL;
}

static void sendq_done(void *arg, dv_quic_out_t *o)
{
	dv_doq_client_t *c = arg;
	stream_t *s = OUT_STREAM(o);
	s->fin_sent = s->out.fin;
	if (s->reset_after && !s->res.cancelled && !s->reset_at) {
		/* counted from the query's sending */
		s->reset_at = c->now + s->reset_after;
		c->n_reset++;
	}
	sendq_remove(c, s);
}

/* flow control keeps it queued; a shut or unknown stream leaves */
static void sendq_blocked(void *arg, dv_quic_out_t *o, bool gone)
{
	if (gone)
		sendq_remove(arg, OUT_STREAM(o));
}

static const dv_quic_sendq_t sendq = {
	.next = sendq_next,
	.done = sendq_done,
	.blocked = sendq_blocked,
};

int dv_doq_client_write(dv_doq_client_t *c, uint8_t *buf, size_t cap,
			void **path_ctx, uint64_t now)
{
	ngtcp2_path_storage ps;
	if (c->state == C_CLOSED) {
		if (!c->want_close_pkt)
			return DV_ECLOSED;
		c->want_close_pkt = false;
		ngtcp2_ssize n = dv_quic_write_close(c->q.conn, &ps, buf, cap,
						     &c->lerr, now);
		if (n <= 0)
			return DV_ECLOSED;
		*path_ctx = ps.path.user_data;
		return (int)n;
	}
	int rv = open_streams(c, now);
	if (rv != 0)
		return fail_conn(c, rv, now);
	c->now = now; /* for sendq_done */

	ngtcp2_ssize n = dv_quic_write(c->q.conn, &ps, buf, cap, now, &sendq, c);
	if (n < 0)
		return fail_conn(c, (int)n, now);
	if (n == 0) {
		dv_quic_update_tx_time(c->q.conn, now);
		return 0;
	}
	*path_ctx = ps.path.user_data;
	return (int)n;
}

int dv_doq_client_close(dv_doq_client_t *c, uint64_t app_code, uint8_t *buf,
			size_t cap, void **path_ctx, uint64_t now)
{
	c->now = now;
	if (c->state == C_CLOSED)
		return 0;
	c->state = C_CLOSED;
	end_all(c, now);
	c->ci.closed = true;
	if (ngtcp2_conn_is_in_closing_period(c->q.conn) ||
	    ngtcp2_conn_is_in_draining_period(c->q.conn))
		return 0;
	ngtcp2_connection_close_error ce;
	ngtcp2_connection_close_error_set_application_error(&ce, app_code,
							   NULL, 0);
	ngtcp2_path_storage ps;
	ngtcp2_ssize n = dv_quic_write_close(c->q.conn, &ps, buf, cap, &ce, now);
	if (n <= 0)
		return 0;
	*path_ctx = ps.path.user_data;
	return (int)n;
}

int dv_doq_client_migrate(dv_doq_client_t *c, const dv_doq_path_t *path,
			  uint64_t now)
{
	c->now = now;
	if (c->state != C_OPEN)
		return -EINVAL;
	c->path2 = *path;
	ngtcp2_path np;
	dv_quic_path_to_ngtcp2(&np, &c->path2);
	int rv = ngtcp2_conn_initiate_immediate_migration(c->q.conn, &np, now);
	if (rv == NGTCP2_ERR_INVALID_STATE)
		return DV_ENOTIMPL;
	if (rv == NGTCP2_ERR_CONN_ID_BLOCKED)
		return -EAGAIN;
	if (rv != 0)
		return -EINVAL;
	c->st.migrated = true;
	return 0;
}

bool dv_doq_client_handshake_done(const dv_doq_client_t *c)
{
	return c->st.handshake_done;
}

bool dv_doq_client_is_closed(const dv_doq_client_t *c)
{
	return c->state == C_CLOSED && !c->want_close_pkt;
}

unsigned dv_doq_client_outstanding(const dv_doq_client_t *c)
{
	return c->pending.n + c->active.n;
}

void dv_doq_client_stats(const dv_doq_client_t *c, dv_doq_stats_t *st)
{
	*st = c->st;
}

void dv_doq_client_load(dv_doq_client_t *c, dv_doq_load_t *ld)
{
	memset(ld, 0, sizeof(*ld));
	ld->pending = c->pending.n;
	ld->active = c->active.n;
	ld->opened = c->st.streams_opened;
	if (c->active.head)
		ld->window = c->st.streams_opened - c->active.head->seq;
	if (c->pending.head && c->now > c->pending.head->submitted)
		ld->waiting = c->now - c->pending.head->submitted;
	if (c->state == C_CLOSED || !c->st.handshake_done)
		return;
	ld->credit = ngtcp2_conn_get_streams_bidi_left(c->q.conn) +
		     c->st.streams_opened;
	ld->grown = ld->credit > c->credit0;
	ld->pto = ngtcp2_conn_get_pto(c->q.conn);
	ld->spent = c->spent;
}

void dv_doq_client_close_info(const dv_doq_client_t *c, dv_doq_close_t *ci)
{
	*ci = c->ci;
}

bool dv_doq_client_has_ticket(dv_doq_client_t *c)
{
	return dv_quic_tls_ticket_received(c->q.tls);
}

const uint8_t *dv_doq_client_token(const dv_doq_client_t *c, size_t *len)
{
	*len = c->token_len;
	return c->token;
}

int dv_doq_client_session_save(dv_doq_client_t *c, uint8_t *buf, size_t cap)
{
	const ngtcp2_transport_params *tp =
		ngtcp2_conn_get_remote_transport_params(c->q.conn);
	if (!tp || !c->st.handshake_done)
		return 0;
	uint8_t tls[DV_QUIC_SESSION_MAX];
	int n = dv_quic_tls_session_save(c->q.tls, tls, sizeof(tls));
	if (n <= 0)
		return n < 0 ? DV_ESPACE : 0;
	dv_doq_early_params_t p = {
		.max_streams_bidi = tp->initial_max_streams_bidi,
		.max_streams_uni = tp->initial_max_streams_uni,
		.max_stream_data_bidi_local =
			tp->initial_max_stream_data_bidi_local,
		.max_stream_data_bidi_remote =
			tp->initial_max_stream_data_bidi_remote,
		.max_stream_data_uni = tp->initial_max_stream_data_uni,
		.max_data = tp->initial_max_data,
		.active_connection_id_limit = tp->active_connection_id_limit,
		.max_datagram_frame_size = tp->max_datagram_frame_size,
	};
	return dv_doq_session_encode(buf, cap, tls, (size_t)n, &p);
}

/*
 * A byte stream connection: the machinery of Do53 TCP, DoT and DoH, under
 * an application that makes requests of the bytes (DNS length-prefixed
 * framing, transports/stream_dns.c, or DoH's HTTP engine).  Accepting and
 * the listener's limits are in stream_listen.c.
 *
 * Each answer is written as soon as the core has it (so out of order,
 * RFC 7766 6.2.1.1).  Under DNS framing, reading stops while a connection
 * has limits.tcp-max-inflight queries in flight or more than
 * limits.tcp-max-output-bytes unsent, and resumes at half of each: a
 * client that never reads costs at most its in-flight answers plus that
 * cap (the DNS application checks before every message, dv_stream_under(),
 * because a cache hit is answered at once and never counts as in flight).
 * All connections of a worker together may buffer
 * limits.worker-max-output; over it, a connection that has unsent output
 * takes no more input until that is sent (one that has none still may, so
 * a client that reads is never stopped by the others).  Whenever a connection can take input
 * again, what is already buffered (in our buffer or inside TLS) is
 * processed without waiting for new bytes.
 *
 * One timer per connection enforces, by state: the handshake timeout, the
 * read timeout of a message that has started to arrive, the write timeout
 * (unsent output that has not moved) and the idle timeout (only when
 * nothing is in flight or unsent).
 *
 * Fairness: one callback reads at most READ_ROUNDS times; a connection
 * with more to do goes on the listener's `again` list, run from a zero
 * timer on the next loop iteration, after the loop has polled every other
 * socket and timer.
 *
 * Lifetime: a closed connection keeps its struct until its last in-flight
 * query has been answered (that answer is discarded), and it is never freed
 * inside its own callbacks (`busy` guards them).
 */
#include "transports/stream_conn.h"

#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/core.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/worker.h"

#define IN_INITIAL 2048
#define READ_ROUNDS 16

static void conn_close(conn_t *c);
static void process_input(conn_t *c);
static void flush_out(conn_t *c);
static void conn_read(conn_t *c);

static listener_t *L(conn_t *c)
{
	return (listener_t *)c->pub.l;
}

static dv_worker_t *W(conn_t *c)
{
	return c->pub.l->w;
}

/* The application on top of the stream (DNS framing, DoH's HTTP). */
static const dv_stream_app_t *APP(const conn_t *c)
{
	return c->pub.l->io->app;
}

static void list_unlink(listener_t *l, conn_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

static void list_push_front(listener_t *l, conn_t *c)
{
	c->prev = NULL;
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	else
		l->tail = c;
	l->conns = c;
}

/* The client did something: it is the most recently active. */
static void conn_touch(conn_t *c)
{
	listener_t *l = L(c);
	if (l->conns != c) {
		list_unlink(l, c);
		list_push_front(l, c);
	}
}

static void again_remove(conn_t **head, conn_t *c)
{
	for (conn_t **p = head; *p; p = &(*p)->again_next)
		if (*p == c) {
			*p = c->again_next;
			return;
		}
}

static void conn_free(conn_t *c)
{
	listener_t *l = L(c);
	list_unlink(l, c);
	if (c->again) {
		again_remove(&l->again, c);
		again_remove(&l->again_run, c);
	}
	l->n_conns--;
	DV_METRIC_INC(&W(c)->core.metrics.conn_closed[l->pub.io->scheme]);
	dv_stream_buf_give(c->in, c->in_cap);
	dv_stream_buf_give(c->out, c->out_cap);
	dv_stream_out_set_cap(c, NULL, 0);
	free(c);
}

/* Free a closed connection once nothing refers to it any more. */
static void conn_maybe_free(conn_t *c)
{
	if (c->pub.state == SC_CLOSED && c->inflight == 0 && c->busy == 0)
		conn_free(c);
}

static void conn_close(conn_t *c)
{
	if (c->pub.state == SC_CLOSED)
		return;
	struct ev_loop *loop = W(c)->loop;
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->timer);
	const dv_stream_app_t *app = APP(c);
	if (app->close && c->pub.app_state)
		app->close(&c->pub);
	c->pub.app_state = NULL;
	if (c->pub.l->io->close)
		c->pub.l->io->close(&c->pub);
	dv_stream_held_update(c);
	close(c->pub.fd);
	c->pub.fd = -1;
	c->pub.state = SC_CLOSED;
}

/* A peer misbehaved or the connection broke: close and count. */
static void conn_abort(conn_t *c, const char *why)
{
	dv_log_debug("stream connection closed: %s", why);
	DV_STAT_INC(&W(c)->stats, tcp_errors);
	c->pub.aborted = true;
	conn_close(c);
}

/* Complete input not handed on yet (it waits for in-flight room). */
static bool input_waiting(const conn_t *c)
{
	const dv_stream_app_t *app = APP(c);
	if (!c->in_len || c->app_failed || L((conn_t *)c)->stopped)
		return false;
	if (app->input_ready)
		return app->input_ready((dv_stream_conn_t *)&c->pub, c->in,
					c->in_len);
	return !c->app_stuck;
}

/* Run the connection again on the next loop iteration. */
static void schedule_again(conn_t *c)
{
	listener_t *l = L(c);
	if (c->again)
		return;
	c->again = true;
	c->again_next = l->again;
	l->again = c;
	if (!ev_is_active(&l->again_timer))
		ev_timer_start(W(c)->loop, &l->again_timer);
}

/* Done: client gone or draining (or the application finished), and
 * nothing left to answer or send. */
static bool conn_finished(const conn_t *c)
{
	const dv_stream_app_t *app = APP(c);
	if (dv_stream_out_pending(c) || input_waiting(c))
		return false;
	if (app->want_close && c->pub.app_state &&
	    app->want_close((dv_stream_conn_t *)&c->pub))
		return true;
	return (c->eof || L((conn_t *)c)->stopped || c->app_failed) &&
	       c->inflight == 0;
}

#define LINGER_MS 2000

/*
 * The connection is done.  When the application ended it while the client
 * may still be sending (an HTTP error that closes the connection, a
 * request body we refused), shut our side down and drop what still comes
 * for a moment: closing a socket with unread bytes makes the kernel reset
 * the connection, and the client would lose the response we just sent.
 */
static void conn_finish(conn_t *c)
{
	struct ev_loop *loop = W(c)->loop;
	if (!APP(c)->linger || c->eof) {
		conn_close(c);
		return;
	}
	if (c->pub.l->io->close)
		c->pub.l->io->close(&c->pub); /* TLS: close_notify */
	if (shutdown(c->pub.fd, SHUT_WR) < 0) {
		conn_close(c);
		return;
	}
	c->pub.state = SC_LINGER;
	c->reading = false;
	ev_io_stop(loop, &c->wio);
	ev_io_start(loop, &c->rio);
	c->linger_until_ms = dv_now_ms() + LINGER_MS;
	c->timer.repeat = LINGER_MS / 1000.0;
	ev_timer_again(loop, &c->timer);
}

/* Read and drop; close at EOF, on an error, or when lingering is over. */
static void linger_read(conn_t *c)
{
	uint8_t buf[4096];
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(c->pub.fd, buf, sizeof(buf), 0);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	conn_close(c);
}

static void update_reading(conn_t *c)
{
	const dv_config_t *cfg = W(c)->cfg;
	struct ev_loop *loop = W(c)->loop;
	if (c->pub.state != SC_OPEN)
		return;
	/* queries the client sent before closing its side still count */
	if (c->eof && c->in_len) {
		process_input(c);
		if (c->pub.state == SC_OPEN && !ev_is_active(&c->wio))
			flush_out(c);
		if (c->pub.state != SC_OPEN)
			return;
	}
	bool want;
	const dv_stream_app_t *app = APP(c);
	/* stop at the high marks, resume at half */
	size_t out_cap = c->reading ? cfg->tcp_max_output_bytes
				    : cfg->tcp_max_output_bytes / 2;
	if (c->eof || L(c)->stopped || c->app_failed || !c->pub.app_state)
		want = false;
	else if (app->want_read)
		want = app->want_read(&c->pub, c->reading);
	else
		want = (!app->want_input || app->want_input(&c->pub)) &&
		       !dv_stream_out_full(c, out_cap) &&
		       !dv_stream_input_held(c);
	if (want && !c->reading) {
		c->reading = true;
		ev_io_start(loop, &c->rio);
	} else if (!want && c->reading) {
		c->reading = false;
		ev_io_stop(loop, &c->rio);
		if (dv_stream_input_held(c))
			DV_STAT_INC(&W(c)->stats, tcp_output_paused);
	}
	/* complete queries may wait in our buffer, and decrypted bytes
	 * inside the TLS layer that the socket will not signal: whenever
	 * the connection can take them, they are processed without waiting
	 * for the client to send more */
	if (want && (input_waiting(c) ||
		     (c->pub.l->io->pending && c->pub.l->io->pending(&c->pub))))
		schedule_again(c);
}

/*
 * Room for `room` more bytes after the output buffer's contents: what was
 * sent already is dropped first, then the buffer doubles (starting at
 * `first`) until it fits.  False when memory is short: the connection has
 * been aborted.
 */
static bool out_reserve(conn_t *c, size_t room, size_t first)
{
	if (c->out_cap - c->out_len >= room)
		return true;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, dv_stream_out_buffered(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_cap - c->out_len >= room)
			return true;
	}
	size_t cap = c->out_cap ? c->out_cap * 2 : first;
	while (cap - c->out_len < room)
		cap *= 2;
	uint8_t *o = c->out ? realloc(c->out, cap) : dv_stream_buf_take(cap);
	if (!o) {
		conn_abort(c, "out of memory");
		return false;
	}
	dv_stream_out_set_cap(c, o, cap);
	return true;
}

uint8_t *dv_stream_out_reserve(dv_stream_conn_t *pc, size_t room,
			       size_t first)
{
	conn_t *c = (conn_t *)pc;
	if (!out_reserve(c, room, first))
		return NULL;
	if (!dv_stream_out_pending(c))
		c->out_moved_ms = dv_now_ms();
	return c->out + c->out_len;
}

void dv_stream_out_commit(dv_stream_conn_t *pc, size_t len)
{
	((conn_t *)pc)->out_len += len;
}

/* Move what the application has to send into the output buffer, up to the
 * output cap. */
static void pump_app_run(conn_t *c)
{
	const dv_stream_app_t *app = APP(c);
	size_t cap_bytes = W(c)->cfg->tcp_max_output_bytes;
	if (!app->output || !c->pub.app_state)
		return;
	while (c->pub.state == SC_OPEN && !dv_stream_out_full(c, cap_bytes)) {
		if (c->out_off && c->out_off == c->out_len)
			c->out_off = c->out_len = 0;
		if (!out_reserve(c, 16384, 32768))
			return;
		if (!dv_stream_out_pending(c))
			c->out_moved_ms = dv_now_ms();
		ssize_t n = app->output(&c->pub, c->out + c->out_len,
					c->out_cap - c->out_len);
		if (n < 0) {
			conn_abort(c, "application output failed");
			return;
		}
		if (n == 0)
			return;
		c->out_len += (size_t)n;
	}
}

/* pump_app_run(), and what the application still holds counted. */
static void pump_app(conn_t *c)
{
	pump_app_run(c);
	dv_stream_held_update(c);
}

static void flush_out(conn_t *c)
{
	struct ev_loop *loop = W(c)->loop;
	const dv_stream_io_t *io = c->pub.l->io;
	pump_app(c);
	while (c->pub.state == SC_OPEN && dv_stream_out_buffered(c)) {
		ssize_t n = io->write(&c->pub, c->out + c->out_off,
				      dv_stream_out_buffered(c));
		if (n == DV_TLS_WANT_WRITE || n == DV_TLS_WANT_READ) {
			dv_stream_held_update(c);
			ev_io_start(loop, &c->wio);
			return;
		}
		if (n <= 0) {
			conn_abort(c, "write failed");
			return;
		}
		c->out_off += (size_t)n;
		c->out_moved_ms = dv_now_ms();
		if (!dv_stream_out_buffered(c))
			pump_app(c);
	}
	if (c->pub.state == SC_OPEN && io->flush) {
		/* what the I/O layer still holds (TLS records) */
		size_t held = io->unsent(&c->pub);
		int ret = held ? io->flush(&c->pub) : 0;
		if (io->unsent(&c->pub) < held)
			c->out_moved_ms = dv_now_ms();
		dv_stream_held_update(c);
		if (ret == DV_TLS_WANT_WRITE || ret == DV_TLS_WANT_READ) {
			ev_io_start(loop, &c->wio);
			return;
		}
		if (ret < 0) {
			conn_abort(c, "write failed");
			return;
		}
	}
	/* all is out: an idle connection holds no output buffer */
	c->out_off = c->out_len = 0;
	dv_stream_buf_give(c->out, c->out_cap);
	dv_stream_out_set_cap(c, NULL, 0);
	ev_io_stop(loop, &c->wio);
	if (c->pub.state == SC_OPEN && conn_finished(c))
		conn_finish(c);
}

bool dv_stream_reply_begin(dv_stream_conn_t *pc)
{
	conn_t *c = (conn_t *)pc;
	c->inflight--;
	return c->pub.state == SC_OPEN;
}

void dv_stream_reply_end(dv_stream_conn_t *pc)
{
	conn_t *c = (conn_t *)pc;
	if (c->pub.state == SC_OPEN) {
		c->last_ms = dv_now_ms();
		dv_stream_held_update(c); /* an answer the application keeps */
		if (c->busy)
			return; /* the running callback flushes at its end */
		c->busy++;
		if (!ev_is_active(&c->wio))
			flush_out(c);
		update_reading(c);
		if (c->pub.state == SC_OPEN && conn_finished(c))
			conn_finish(c);
		c->busy--;
	}
	conn_maybe_free(c);
}

void dv_stream_progress(dv_stream_conn_t *pc)
{
	((conn_t *)pc)->msg_start_ms = 0;
}

dv_query_t *dv_stream_query(dv_stream_conn_t *pc, const uint8_t *wire,
			    size_t len, dv_stream_reply_fn reply)
{
	conn_t *c = (conn_t *)pc;
	const dv_stream_io_t *io = c->pub.l->io;
	dv_query_t *q = dv_query_new(W(c), wire, len);
	if (!q)
		return NULL;
	q->reply = reply;
	q->conn = c;
	q->transport = io->scheme;
	q->listener = c->pub.l->listener;
	q->ident_memo = &c->pub.ident_memo;
	q->sni = c->pub.sni[0] ? c->pub.sni : NULL;
	q->cert_id = c->pub.cert_id;
	q->pad_block = io->encrypted ? DV_PAD_BLOCK : 0;
	memcpy(&q->peer, &c->pub.peer, c->pub.peer_len);
	q->peer_len = c->pub.peer_len;
	return q;
}

int dv_stream_submit(dv_stream_conn_t *pc, dv_query_t *q)
{
	conn_t *c = (conn_t *)pc;
	c->inflight++;
	int ret = dv_core_submit(q);
	if (ret < 0)
		c->inflight--; /* dropped: no answer will come */
	return ret;
}

bool dv_stream_under(const dv_stream_conn_t *pc, unsigned inflight,
		     size_t out)
{
	const conn_t *c = (const conn_t *)pc;
	return c->pub.state == SC_OPEN && !L((conn_t *)c)->stopped &&
	       c->inflight < inflight && !dv_stream_out_full(c, out);
}

void dv_stream_abort(dv_stream_conn_t *pc, const char *why)
{
	conn_abort((conn_t *)pc, why);
}

/*
 * Hand c->in to the application; how much it took, or its error
 * (*held: it was not offered all of it because of the budget).  An
 * application that does not check the worker's output budget itself
 * between requests (no want_read: DoH) gets it in pieces of BUDGET_PIECE
 * while the worker is over budget, and no more once the connection has
 * output it could send (transports/stream_budget.c).
 */
#define BUDGET_PIECE 1024
static ssize_t input_pieces(conn_t *c, bool *held)
{
	const dv_stream_app_t *app = APP(c);
	size_t off = 0;
	*held = false;
	while (off < c->in_len) {
		if (!app->want_read && dv_stream_input_held(c)) {
			*held = true;
			break;
		}
		size_t give = c->in_len - off;
		bool piece = !app->want_read && W(c)->stream_out_over &&
			     give > BUDGET_PIECE;
		if (piece)
			give = BUDGET_PIECE;
		ssize_t n = app->input(&c->pub, c->in + off, give);
		if (n < 0 || c->pub.state != SC_OPEN)
			return n;
		off += (size_t)n;
		if (!piece || n == 0)
			break;
		dv_stream_held_update(c);
		if (app->want_input && !app->want_input(&c->pub))
			break;
	}
	return (ssize_t)off;
}

/* Offer what was read to the application (as long as it wants input). */
static void process_input(conn_t *c)
{
	const dv_stream_app_t *app = APP(c);
	if (c->pub.state != SC_OPEN || c->app_failed || !c->in_len ||
	    !c->pub.app_state || (app->want_input && !app->want_input(&c->pub)))
		return;
	bool held;
	ssize_t n = input_pieces(c, &held);
	if (c->pub.state != SC_OPEN)
		return;
	if (n < 0) {
		/* answer what is in flight, send the error, close */
		c->app_failed = true;
		c->in_len = 0;
		c->msg_start_ms = 0;
		update_reading(c);
		return;
	}
	if (n > 0) {
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
	}
	/* nothing taken although it wanted input: only more bytes can help
	 * (never spin on the same buffer) */
	c->app_stuck = n == 0 && c->in_len && !held;
	/* the read timeout runs from the first byte of a request that is not
	 * complete, wherever its bytes are buffered */
	bool partial = c->in_len || (app->receiving && app->receiving(&c->pub));
	if (!partial)
		c->msg_start_ms = 0;
	else if (!c->msg_start_ms)
		c->msg_start_ms = dv_now_ms();
}

/* Arm the one timer for the state the connection is in. */
static void timer_arm(conn_t *c)
{
	const dv_config_t *cfg = W(c)->cfg;
	uint64_t now = dv_now_ms(), due;
	if (c->pub.state == SC_HANDSHAKE || c->pub.state == SC_PROXY)
		due = c->accepted_ms + cfg->tls_handshake_timeout_ms;
	else if (c->msg_start_ms)
		due = c->msg_start_ms + cfg->tcp_read_timeout_ms;
	else
		due = c->last_ms + cfg->tcp_idle_timeout_ms;
	if (c->pub.state == SC_OPEN && dv_stream_out_pending(c) &&
	    c->out_moved_ms + cfg->tcp_write_timeout_ms < due)
		due = c->out_moved_ms + cfg->tcp_write_timeout_ms;
	c->timer.repeat = due > now ? (double)(due - now) / 1000.0 : 0.001;
	ev_timer_again(W(c)->loop, &c->timer);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	conn_t *c = t->data;
	const dv_config_t *cfg = W(c)->cfg;
	uint64_t now = dv_now_ms();
	if (c->pub.state == SC_LINGER) {
		conn_close(c);
		conn_maybe_free(c);
		return;
	}
	if (c->pub.state == SC_OPEN && dv_stream_out_pending(c) &&
	    now >= c->out_moved_ms + cfg->tcp_write_timeout_ms) {
		/* the client stopped reading: what it was sent is lost
		 * either way, and holding it costs memory */
		DV_STAT_INC(&W(c)->stats, tcp_write_timeouts);
		conn_abort(c, "write timeout");
		conn_maybe_free(c);
		return;
	}
	if (c->pub.state == SC_HANDSHAKE || c->pub.state == SC_PROXY) {
		if (now >= c->accepted_ms + cfg->tls_handshake_timeout_ms) {
			if (c->pub.state == SC_PROXY)
				DV_STAT_INC(&W(c)->stats, proxy_header_errors);
			else
				DV_STAT_INC(&W(c)->stats, tls_failed);
			conn_abort(c, "handshake timeout");
			conn_maybe_free(c);
			return;
		}
	} else if (c->msg_start_ms) {
		if (now >= c->msg_start_ms + cfg->tcp_read_timeout_ms &&
		    c->reading) {
			conn_abort(c, "read timeout");
			conn_maybe_free(c);
			return;
		}
	} else if (c->inflight == 0 && dv_stream_out_pending(c) == 0 &&
		   now >= c->last_ms + cfg->tcp_idle_timeout_ms) {
		DV_STAT_INC(&W(c)->stats, tcp_idle_closed);
		conn_close(c);
		conn_maybe_free(c);
		return;
	}
	if (c->inflight || dv_stream_out_pending(c))
		c->last_ms = now; /* busy is not idle */
	timer_arm(c);
}

static bool app_open(conn_t *c)
{
	if (APP(c)->open(&c->pub) < 0) {
		conn_abort(c, "cannot start the application protocol");
		return false;
	}
	return true;
}

static bool do_handshake(conn_t *c)
{
	struct ev_loop *loop = W(c)->loop;
	int ret = c->pub.l->io->handshake(&c->pub);
	if (ret == DV_TLS_WANT_READ) {
		ev_io_stop(loop, &c->wio);
		ev_io_start(loop, &c->rio);
		return false;
	}
	if (ret == DV_TLS_WANT_WRITE) {
		ev_io_stop(loop, &c->rio);
		ev_io_start(loop, &c->wio);
		return false;
	}
	if (ret < 0) {
		conn_abort(c, "handshake failed");
		return false;
	}
	c->pub.state = SC_OPEN;
	c->last_ms = dv_now_ms();
	c->reading = true;
	if (!app_open(c))
		return false;
	ev_io_stop(loop, &c->wio);
	ev_io_start(loop, &c->rio);
	timer_arm(c);
	return true;
}

static void conn_read(conn_t *c)
{
	const dv_stream_io_t *io = c->pub.l->io;
	const dv_stream_app_t *app = APP(c);
	int rounds;
	for (rounds = 0; rounds < READ_ROUNDS && c->pub.state == SC_OPEN &&
			 c->reading;
	     rounds++) {
		/* room for at least the message being received */
		size_t need = c->in_len + 2048;
		if (app->input_need) {
			size_t n = app->input_need(&c->pub, c->in, c->in_len);
			if (n > need)
				need = n;
		}
		if (need > 2 + DV_DNS_MAX_MSG)
			need = 2 + DV_DNS_MAX_MSG;
		if (c->in_cap < need) {
			size_t cap = c->in_cap ? c->in_cap : IN_INITIAL;
			while (cap < need)
				cap *= 2;
			uint8_t *in = c->in ? realloc(c->in, cap)
					    : dv_stream_buf_take(cap);
			if (!in) {
				conn_abort(c, "out of memory");
				return;
			}
			c->in = in;
			c->in_cap = cap;
		}
		size_t room = c->in_cap - c->in_len;
		if (room == 0) {
			/* full of complete queries waiting for in-flight room:
			 * read again when some are answered */
			c->reading = false;
			ev_io_stop(W(c)->loop, &c->rio);
			return;
		}
		c->pub.rx_drained = false;
		ssize_t n = io->read(&c->pub, c->in + c->in_len, room);
		if (n == DV_TLS_WANT_READ)
			return;
		if (n == DV_TLS_WANT_WRITE) {
			ev_io_start(W(c)->loop, &c->wio);
			return;
		}
		if (n == DV_TLS_EOF) {
			c->eof = true;
			if (c->in_len) /* a message cut short */
				DV_STAT_INC(&W(c)->stats, tcp_errors);
			return;
		}
		if (n <= 0) {
			conn_abort(c, "read failed");
			return;
		}
		c->in_len += (size_t)n;
		c->app_stuck = false;
		c->last_ms = dv_now_ms();
		conn_touch(c);
		process_input(c);
		/* the socket is empty: asking again would only say so (a
		 * system call); the next bytes come with the next readable
		 * event */
		if (c->pub.state != SC_OPEN ||
		    (c->pub.rx_drained &&
		     !(io->pending && io->pending(&c->pub))))
			return;
	}
	/* The round budget ran out with data possibly still buffered (in
	 * the socket the loop will see it; inside TLS it would not): the
	 * others get their turn first.  ev_feed_event would run us again in
	 * this same pass of the loop, before any other watcher. */
	if (rounds == READ_ROUNDS && c->pub.state == SC_OPEN && c->reading)
		schedule_again(c);
}

static void after_io(conn_t *c)
{
	dv_stream_in_idle(c); /* all input taken: the buffer goes back */
	if (c->pub.state == SC_OPEN) {
		flush_out(c);
		update_reading(c);
		if (c->pub.state == SC_OPEN && conn_finished(c))
			conn_finish(c);
		else if (c->pub.state == SC_OPEN)
			timer_arm(c);
	}
	c->busy--;
	conn_maybe_free(c);
}

/* Connections that had more to do than one turn allowed, or that can take
 * input again with some already buffered. */
void dv_stream_again_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	listener_t *l = t->data;
	(void)loop;
	(void)revents;
	l->again_run = l->again;
	l->again = NULL;
	conn_t *c;
	while ((c = l->again_run)) {
		l->again_run = c->again_next;
		c->again = false;
		c->again_next = NULL;
		c->busy++;
		if (c->pub.state == SC_OPEN) {
			process_input(c);
			conn_read(c);
		}
		after_io(c);
	}
}

/* SC_PROXY: read the header; once it is whole, the client it names is the
 * peer, and the connection goes on as if just accepted from it (the
 * transport's open, e.g. the per-address TLS handshake cap, sees that
 * client).  True when the connection is open and may read. */
static bool proxy_header(conn_t *c)
{
	const dv_stream_io_t *sio = c->pub.l->io;
	const char *why = NULL;
	int ret = dv_stream_proxy_read(c, &why);
	if (ret == 0)
		return false;
	if (ret < 0) {
		DV_STAT_INC(&W(c)->stats, proxy_header_errors);
		conn_abort(c, why);
		return false;
	}
	if (sio->open && sio->open(c->pub.l, &c->pub) < 0) {
		DV_STAT_INC(&W(c)->stats, tcp_refused);
		conn_abort(c, "refused by the transport");
		return false;
	}
	if (sio->handshake) {
		c->pub.state = SC_HANDSHAKE;
		return do_handshake(c); /* the ClientHello may be here */
	}
	c->pub.state = SC_OPEN;
	c->reading = true;
	if (!app_open(c))
		return false;
	timer_arm(c);
	return true;
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	conn_t *c = io->data;
	c->busy++;
	if (c->pub.state == SC_LINGER) {
		linger_read(c);
		c->busy--;
		conn_maybe_free(c);
		return;
	}
	if ((c->pub.state == SC_PROXY && !proxy_header(c)) ||
	    (c->pub.state == SC_HANDSHAKE && !do_handshake(c))) {
		c->busy--;
		conn_maybe_free(c);
		return;
	}
	conn_read(c);
	after_io(c);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	conn_t *c = io->data;
	c->busy++;
	if (c->pub.state == SC_HANDSHAKE) {
		if (!do_handshake(c)) {
			c->busy--;
			conn_maybe_free(c);
			return;
		}
		conn_read(c);
	}
	flush_out(c);
	if (c->pub.state == SC_OPEN && c->reading && !dv_stream_out_pending(c))
		conn_read(c); /* a read that wanted to write first */
	after_io(c);
}

void dv_stream_conn_start(listener_t *l, int fd,
			  const struct sockaddr_storage *peer,
			  socklen_t plen)
{
	dv_worker_t *w = l->pub.w;
	struct ev_loop *loop = w->loop;
	const dv_stream_io_t *sio = l->pub.io;
	conn_t *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->pub.l = &l->pub;
	c->pub.fd = fd;
	c->pub.peer = *peer;
	c->pub.peer_len = plen;
	if (l->proxy && !dv_stream_proxy_allowed(w->cfg, peer)) {
		DV_STAT_INC(&w->stats, proxy_refused);
		dv_log_debug("stream connection refused: not from "
			     "proxy-protocol.from");
		close(fd);
		free(c);
		return;
	}
	if (!l->proxy && sio->open && sio->open(&l->pub, &c->pub) < 0) {
		DV_STAT_INC(&w->stats, tcp_refused);
		close(fd);
		free(c);
		return;
	}
	c->pub.state = l->proxy	       ? SC_PROXY
		       : sio->handshake ? SC_HANDSHAKE
					: SC_OPEN;
	c->accepted_ms = c->last_ms = dv_now_ms();
	list_push_front(l, c);
	l->n_conns++;
	DV_STAT_INC(&w->stats, tcp_connections);
	DV_METRIC_INC(&w->core.metrics.conn_accepted[sio->scheme]);
	ev_io_init(&c->rio, read_cb, fd, EV_READ);
	ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	ev_init(&c->timer, timer_cb);
	c->timer.data = c;
	timer_arm(c);
	c->reading = c->pub.state == SC_OPEN;
	ev_io_start(loop, &c->rio);
	if (c->pub.state == SC_OPEN) {
		c->busy++;
		if (app_open(c))
			flush_out(c); /* e.g. the HTTP/2 SETTINGS */
		c->busy--;
		conn_maybe_free(c);
	}
}

bool dv_stream_conn_idle(const conn_t *c)
{
	return c->pub.state == SC_OPEN && !c->busy && !c->inflight &&
	       !dv_stream_out_pending(c) && !c->in_len && !c->msg_start_ms;
}


void dv_stream_conn_evict(conn_t *c)
{
	conn_close(c);
	conn_maybe_free(c);
}

void dv_stream_conn_drain(conn_t *c)
{
	if (c->pub.state == SC_HANDSHAKE || c->pub.state == SC_PROXY)
		conn_close(c);
	const dv_stream_app_t *app = APP(c);
	/* busy: answers given synchronously below must not free the
	 * connection (or its application state) under us */
	c->busy++;
	if (c->pub.state == SC_OPEN && app->drain && c->pub.app_state)
		app->drain(&c->pub);
	update_reading(c);
	flush_out(c);
	if (c->pub.state == SC_OPEN && conn_finished(c))
		conn_finish(c);
	c->busy--;
	conn_maybe_free(c);
}

void dv_stream_conn_destroy(conn_t *c)
{
	conn_close(c);
	c->inflight = 0; /* every query was answered before this */
	c->busy = 0;
	conn_free(c);
}

ssize_t dv_stream_plain_read(dv_stream_conn_t *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			c->rx_drained = (size_t)n < len;
			return n;
		}
		if (n == 0)
			return DV_TLS_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return DV_TLS_WANT_READ;
		return -errno;
	}
}

ssize_t dv_stream_plain_write(dv_stream_conn_t *c, const void *buf,
			      size_t len)
{
	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return DV_TLS_WANT_WRITE;
		return -errno;
	}
}


/*
 * Do53 over TCP (RFC 1035 4.2.2, RFC 7766): 2-byte length framing, many
 * queries in flight per connection, each answer written as soon as it is
 * ready (so out of order), an idle timeout, and backpressure: reading stops
 * while a connection has tcp-max-inflight queries in flight or more than
 * tcp-max-output-bytes unsent, and resumes at half of each.  A client that
 * never reads therefore costs at most its in-flight answers plus the
 * output cap.
 *
 * Lifetime: a connection that is closed keeps its struct until its last
 * in-flight query has been answered (the answer is then discarded), and it
 * is never freed inside its own callbacks (`busy` guards them).
 */
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core.h"
#include "src/errors.h"
#include "src/log.h"
#include "src/transport.h"
#include "src/worker.h"
#include "transports/sock.h"

typedef enum { TC_OPEN, TC_CLOSED } tc_state_t;

typedef struct tcp_listener tcp_listener_t;

typedef struct tcp_conn {
	tcp_listener_t *l;
	tc_state_t state;
	int fd;
	ev_io rio, wio;
	ev_timer idle;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	unsigned inflight;
	unsigned busy; /* inside one of our callbacks */
	bool reading;  /* read watcher should run */
	bool eof;      /* client closed its side */
	uint64_t last_ms;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	struct tcp_conn *prev, *next;
} tcp_conn_t;

struct tcp_listener {
	dv_worker_t *w;
	int fd;
	ev_io io;
	bool stopped;
	unsigned n_conns;
	tcp_conn_t *conns;
};

#define IN_INITIAL 2048

static void conn_close(tcp_conn_t *c);
static void process_input(tcp_conn_t *c);
static void flush_out(tcp_conn_t *c);

static void conn_free(tcp_conn_t *c)
{
	tcp_listener_t *l = c->l;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	l->n_conns--;
	free(c->in);
	free(c->out);
	free(c);
}

/* Free a closed connection once nothing refers to it any more. */
static void conn_maybe_free(tcp_conn_t *c)
{
	if (c->state == TC_CLOSED && c->inflight == 0 && c->busy == 0)
		conn_free(c);
}

static void conn_close(tcp_conn_t *c)
{
	if (c->state == TC_CLOSED)
		return;
	struct ev_loop *loop = c->l->w->loop;
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->idle);
	close(c->fd);
	c->fd = -1;
	c->state = TC_CLOSED;
}

static size_t out_pending(const tcp_conn_t *c)
{
	return c->out_len - c->out_off;
}

/* Is the connection done (client gone or draining, nothing left)? */
static bool conn_finished(const tcp_conn_t *c)
{
	return (c->eof || c->l->stopped) && c->inflight == 0 &&
	       out_pending(c) == 0;
}

static void update_reading(tcp_conn_t *c)
{
	const dv_config_t *cfg = c->l->w->cfg;
	struct ev_loop *loop = c->l->w->loop;
	if (c->state != TC_OPEN)
		return;
	bool want;
	if (c->eof || c->l->stopped)
		want = false;
	else if (c->reading)
		want = c->inflight < cfg->tcp_max_inflight &&
		       out_pending(c) < cfg->tcp_max_output_bytes;
	else /* resume at half */
		want = c->inflight <= cfg->tcp_max_inflight / 2 &&
		       out_pending(c) <= cfg->tcp_max_output_bytes / 2;
	if (want && !c->reading) {
		c->reading = true;
		ev_io_start(loop, &c->rio);
		/* complete queries may already wait in the buffer */
		process_input(c);
		if (!ev_is_active(&c->wio))
			flush_out(c);
	} else if (!want && c->reading) {
		c->reading = false;
		ev_io_stop(loop, &c->rio);
	}
}

static void flush_out(tcp_conn_t *c)
{
	struct ev_loop *loop = c->l->w->loop;
	while (c->state == TC_OPEN && out_pending(c)) {
		ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c),
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(loop, &c->wio);
				return;
			}
			DV_STAT_INC(&c->l->w->stats, tcp_errors);
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(loop, &c->wio);
	if (c->state == TC_OPEN && conn_finished(c))
		conn_close(c);
}

static void tcp_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	tcp_conn_t *c = q->conn;
	c->inflight--;
	if (c->state != TC_OPEN) {
		conn_maybe_free(c);
		return;
	}
	size_t need = c->out_len + 2 + len;
	if (need > c->out_cap) {
		if (c->out_off) {
			memmove(c->out, c->out + c->out_off, out_pending(c));
			c->out_len -= c->out_off;
			c->out_off = 0;
			need = c->out_len + 2 + len;
		}
		if (need > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 1024;
			while (cap < need)
				cap *= 2;
			uint8_t *o = realloc(c->out, cap);
			if (!o) {
				conn_close(c);
				conn_maybe_free(c);
				return;
			}
			c->out = o;
			c->out_cap = cap;
		}
	}
	dv_put16(c->out + c->out_len, (uint16_t)len);
	memcpy(c->out + c->out_len + 2, wire, len);
	c->out_len += 2 + len;
	c->last_ms = dv_now_ms();
	if (c->busy)
		return; /* the running callback flushes once at its end */
	c->busy++;
	if (!ev_is_active(&c->wio))
		flush_out(c);
	update_reading(c);
	c->busy--;
	conn_maybe_free(c);
}

/* Hand every complete message in the input buffer to the core, as long as
 * the connection is under its limits. */
static void process_input(tcp_conn_t *c)
{
	dv_worker_t *w = c->l->w;
	const dv_config_t *cfg = w->cfg;
	size_t off = 0;
	while (c->state == TC_OPEN && !c->l->stopped &&
	       c->inflight < cfg->tcp_max_inflight && c->in_len - off >= 2) {
		size_t mlen = dv_get16(c->in + off);
		if (c->in_len - off < 2 + mlen)
			break;
		dv_query_t *q = dv_query_new(w, c->in + off + 2, mlen);
		off += 2 + mlen;
		if (!q) {
			DV_STAT_INC(&w->stats, tcp_errors);
			conn_close(c);
			break;
		}
		q->reply = tcp_reply;
		q->conn = c;
		q->transport = DV_SCHEME_TCP;
		memcpy(&q->peer, &c->peer, c->peer_len);
		q->peer_len = c->peer_len;
		c->inflight++;
		if (dv_core_submit(q) < 0)
			c->inflight--; /* dropped: no answer will come */
	}
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

static void tcp_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	tcp_conn_t *c = io->data;
	c->busy++;
	for (int rounds = 0; rounds < 4 && c->state == TC_OPEN && c->reading;
	     rounds++) {
		/* room for at least the message being received */
		size_t need = 2 + DV_DNS_MAX_MSG;
		if (c->in_len >= 2)
			need = 2 + (size_t)dv_get16(c->in);
		if (need < c->in_len + 512)
			need = c->in_len + 512;
		if (need > 2 + DV_DNS_MAX_MSG)
			need = 2 + DV_DNS_MAX_MSG;
		if (c->in_cap < need) {
			size_t cap = c->in_cap ? c->in_cap : IN_INITIAL;
			while (cap < need)
				cap *= 2;
			uint8_t *in = realloc(c->in, cap);
			if (!in) {
				conn_close(c);
				break;
			}
			c->in = in;
			c->in_cap = cap;
		}
		size_t room = c->in_cap - c->in_len;
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n == 0) {
			c->eof = true;
			if (c->in_len)
				DV_STAT_INC(&c->l->w->stats, tcp_errors);
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				DV_STAT_INC(&c->l->w->stats, tcp_errors);
				conn_close(c);
			}
			break;
		}
		c->in_len += (size_t)n;
		c->last_ms = dv_now_ms();
		process_input(c);
		if ((size_t)n < room)
			break; /* socket drained */
	}
	if (c->state == TC_OPEN) {
		flush_out(c);
		update_reading(c);
		if (c->state == TC_OPEN && conn_finished(c))
			conn_close(c);
	}
	c->busy--;
	conn_maybe_free(c);
}

static void tcp_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	tcp_conn_t *c = io->data;
	c->busy++;
	flush_out(c);
	update_reading(c);
	c->busy--;
	conn_maybe_free(c);
}

static void idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	tcp_conn_t *c = t->data;
	const dv_config_t *cfg = c->l->w->cfg;
	uint64_t now = dv_now_ms();
	uint64_t idle_ms = cfg->tcp_idle_timeout_ms;
	if (c->inflight == 0 && out_pending(c) == 0 &&
	    now - c->last_ms >= idle_ms) {
		DV_STAT_INC(&c->l->w->stats, tcp_idle_closed);
		conn_close(c);
		conn_maybe_free(c);
		return;
	}
	uint64_t left = idle_ms - (now - c->last_ms < idle_ms
					   ? now - c->last_ms
					   : idle_ms - 1);
	t->repeat = (double)left / 1000.0;
	ev_timer_again(loop, t);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	tcp_listener_t *l = io->data;
	dv_worker_t *w = l->w;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or a connection that vanished */
		if (l->n_conns >= w->cfg->tcp_max_connections) {
			DV_STAT_INC(&w->stats, tcp_refused);
			close(fd);
			continue;
		}
		tcp_conn_t *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->l = l;
		c->fd = fd;
		c->state = TC_OPEN;
		c->peer = peer;
		c->peer_len = plen;
		c->last_ms = dv_now_ms();
		c->next = l->conns;
		if (l->conns)
			l->conns->prev = c;
		l->conns = c;
		l->n_conns++;
		DV_STAT_INC(&w->stats, tcp_connections);
		ev_io_init(&c->rio, tcp_read_cb, fd, EV_READ);
		ev_io_init(&c->wio, tcp_write_cb, fd, EV_WRITE);
		c->rio.data = c->wio.data = c;
		ev_init(&c->idle, idle_cb);
		c->idle.repeat = w->cfg->tcp_idle_timeout_ms / 1000.0;
		c->idle.data = c;
		ev_timer_again(loop, &c->idle);
		c->reading = true;
		ev_io_start(loop, &c->rio);
	}
}

static int tcp_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	tcp_listener_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	int fd = dv_sock_listen(url, SOCK_STREAM, 1024);
	if (fd < 0) {
		free(l);
		return fd;
	}
	l->w = w;
	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	l->io.data = l;
	ev_io_start(w->loop, &l->io);
	*state = l;
	return 0;
}

static void tcp_stop(dv_worker_t *w, void *state)
{
	tcp_listener_t *l = state;
	if (l->stopped)
		return;
	l->stopped = true;
	ev_io_stop(w->loop, &l->io);
	close(l->fd);
	l->fd = -1;
	/* idle connections go now, busy ones when their answers are out */
	tcp_conn_t *c = l->conns;
	while (c) {
		tcp_conn_t *next = c->next;
		update_reading(c);
		if (c->state == TC_OPEN && conn_finished(c))
			conn_close(c);
		conn_maybe_free(c);
		c = next;
	}
}

static void tcp_close(dv_worker_t *w, void *state)
{
	tcp_listener_t *l = state;
	if (l->fd >= 0) {
		ev_io_stop(w->loop, &l->io);
		close(l->fd);
	}
	while (l->conns) {
		tcp_conn_t *c = l->conns;
		conn_close(c);
		c->inflight = 0; /* every query was answered before this */
		c->busy = 0;
		conn_free(c);
	}
	free(l);
}

static const dv_transport_t do53_tcp = {
	.name = "do53-tcp",
	.schemes = (1u << DV_SCHEME_TCP) | (1u << DV_SCHEME_DNS),
	.listen = tcp_listen,
	.stop = tcp_stop,
	.close = tcp_close,
};
DV_TRANSPORT_REGISTER(do53_tcp)

/*
 * A stream listener (see stream.c for the connections): accepting, making
 * room at limits.tcp-max-connections, backing off when accept() finds no
 * file descriptor, stopping (drain) and closing.
 *
 * At tcp-max-connections the least recently active idle connection
 * (preferring an address that holds many) is closed for a new one.  When
 * accept() finds no file descriptor, accepting pauses and backs off
 * instead of spinning on a readable listener.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/clock.h"
#include "src/core/log.h"
#include "src/daemon/worker.h"
#include "transports/sock.h"
#include "transports/stream_conn.h"

/* idle connections looked at, from the least recently active, to evict */
#define EVICT_SCAN 64
#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000
#define ACCEPT_LOG_EVERY_MS 10000

static bool same_addr(const struct sockaddr_storage *a,
		      const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      16) == 0;
	return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
	       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

/*
 * The listener is full: close the least recently active idle connection
 * to make room.  Of the EVICT_SCAN idle connections least recently active,
 * the one whose address holds the most of them goes (so a host parking
 * many idle connections loses them first), the oldest on a tie.  False
 * when none is idle.
 */
static bool evict_idle(listener_t *l)
{
	conn_t *cand[EVICT_SCAN];
	unsigned n = 0, seen = 0;
	for (conn_t *c = l->tail; c && n < EVICT_SCAN && seen < 4 * EVICT_SCAN;
	     c = c->prev, seen++)
		if (dv_stream_conn_idle(c))
			cand[n++] = c;
	if (!n)
		return false;
	unsigned best = 0, best_same = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned same = 0;
		for (unsigned j = 0; j < n; j++)
			same += same_addr(&cand[i]->pub.peer, &cand[j]->pub.peer);
		if (same > best_same) {
			best = i;
			best_same = same;
		}
	}
	conn_t *c = cand[best];
	DV_STAT_INC(&l->pub.w->stats, tcp_evicted);
	dv_log_debug("stream connection evicted: idle at "
		     "tcp-max-connections");
	dv_stream_conn_evict(c);
	return true;
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	listener_t *l = t->data;
	(void)revents;
	if (!l->stopped)
		ev_io_start(loop, &l->io);
}

/* accept() found no file descriptor.  The connection stays in the kernel's
 * backlog and the listener stays readable, so retrying at once would spin:
 * pause accepting, retry after a backoff that doubles while it lasts. */
static void accept_pause(listener_t *l, int err)
{
	dv_worker_t *w = l->pub.w;
	struct ev_loop *loop = w->loop;
	uint64_t now = dv_now_ms();
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2
				      : ACCEPT_BACKOFF_MIN_MS;
	if (l->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
		l->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
	DV_STAT_INC(&w->stats, tcp_accept_paused);
	if (!l->accept_logged_ms ||
	    now >= l->accept_logged_ms + ACCEPT_LOG_EVERY_MS) {
		l->accept_logged_ms = now;
		dv_log_warn("worker %u: cannot accept a connection: %s (%u "
			    "open on this listener); accepting pauses for %u "
			    "ms (raise the open-files limit, or lower "
			    "limits.tcp-max-connections)",
			    w->index, strerror(err), l->n_conns,
			    l->backoff_ms);
	}
	ev_io_stop(loop, &l->io);
	ev_timer_set(&l->accept_timer, l->backoff_ms / 1000.0, 0.);
	ev_timer_start(loop, &l->accept_timer);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	listener_t *l = io->data;
	dv_worker_t *w = l->pub.w;
	(void)loop;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(l, errno);
			return; /* EAGAIN, or a connection that vanished */
		}
		l->backoff_ms = 0;
		if (l->n_conns >= w->cfg->tcp_max_connections &&
		    !evict_idle(l)) {
			DV_STAT_INC(&w->stats, tcp_refused);
			close(fd);
			continue;
		}
		dv_stream_conn_start(l, fd, &peer, plen);
	}
}

int dv_stream_listen(dv_worker_t *w, const dv_url_t *url,
		     const dv_stream_io_t *io, void *io_ctx, void **state)
{
	if (!io->app)
		return -EINVAL; /* every stream carries an application */
	listener_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	int fd = dv_sock_listen(url, SOCK_STREAM, 1024);
	if (fd < 0) {
		free(l);
		return fd;
	}
	l->pub.w = w;
	l->pub.io = io;
	l->pub.io_ctx = io_ctx;
	l->pub.listener = dv_worker_listener(w, url);
	l->proxy = url->proxy_protocol;
	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	l->io.data = l;
	ev_timer_init(&l->again_timer, dv_stream_again_cb, 0., 0.);
	l->again_timer.data = l;
	ev_timer_init(&l->accept_timer, accept_resume_cb, 0., 0.);
	l->accept_timer.data = l;
	ev_io_start(w->loop, &l->io);
	*state = l;
	return 0;
}

void *dv_stream_io_ctx(void *state)
{
	return ((listener_t *)state)->pub.io_ctx;
}

void dv_stream_stop(dv_worker_t *w, void *state)
{
	listener_t *l = state;
	if (l->stopped)
		return;
	l->stopped = true;
	ev_io_stop(w->loop, &l->io);
	ev_timer_stop(w->loop, &l->accept_timer);
	close(l->fd);
	l->fd = -1;
	/* idle connections go now, busy ones when their answers are out */
	conn_t *c = l->conns;
	while (c) {
		conn_t *next = c->next;
		dv_stream_conn_drain(c);
		c = next;
	}
}

void dv_stream_update(dv_worker_t *w, void *state, const dv_url_t *url)
{
	((listener_t *)state)->pub.listener = dv_worker_listener(w, url);
}

unsigned dv_stream_open_conns(dv_worker_t *w, void *state)
{
	(void)w;
	return ((listener_t *)state)->n_conns;
}

void dv_stream_close(dv_worker_t *w, void *state)
{
	listener_t *l = state;
	if (l->fd >= 0) {
		ev_io_stop(w->loop, &l->io);
		close(l->fd);
	}
	ev_timer_stop(w->loop, &l->accept_timer);
	ev_timer_stop(w->loop, &l->again_timer);
	while (l->conns)
		dv_stream_conn_destroy(l->conns);
	free(l);
}

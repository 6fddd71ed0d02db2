/*
 * udp:// upstreams: the server's "front" connection (registry.c), tried
 * before its TCP connections.  It is lossy (uconn.h): the pool frees an
 * abandoned id at once, and asks the same server again over TCP when an
 * answer is truncated (TC) or a query times out; nothing here decides that.
 *
 * Each slot (id in flight) has a socket of its own (slot_sockets), as
 * Unbound does: a socket connected to the server, so the kernel binds it
 * to a port it draws at random from the ephemeral range
 * (net.ipv4.ip_local_port_range) and drops datagrams from any other
 * address or port.  The query's 16-bit id is random and independent of
 * the slot (server.c), so an off-path attacker has to hit the port and the
 * id at once, and then the question (pool.c): about 2^31 guesses with the
 * default port range instead of 2^16 on one long-lived socket.
 *
 * To a server on another host every query gets a fresh socket, closed when
 * the slot is released (answer, timeout, abandon): a socket() and a
 * connect() per query, the price of that defence.  To a loopback server
 * (127.0.0.0/8, ::1) a slot's socket stays open after its query and
 * carries the slot's next ones, its watcher kept (no socket, connect,
 * epoll_ctl and close per query), each query with a new random id, until
 * it has carried pool.udp-socket-queries of them; then it is closed and
 * the next query opens a new one, on a new random port.  This is safe
 * enough because a connected socket takes datagrams only from the
 * resolver's own address and port, and a datagram from outside the host
 * cannot carry a loopback source (the kernel drops it on any other
 * interface, as a martian): only a process on this host could try to
 * guess the id, and one that can bind the resolver's port or use raw
 * sockets owns the resolver's answers anyway.  A datagram that is not the
 * awaited answer (an unknown id, another question, or any datagram while
 * no query is in flight: a late answer or a spoof) is read, dropped,
 * counted, and retires the socket: at once when idle, else when its query
 * ends, so it never carries another.  The descriptors stay bounded as
 * before: at most one per slot, pool.udp-max-inflight (rounded up to a
 * power of two) per server and worker, all closed with the connection
 * (idle timeout).
 *
 * The connection itself has no socket: "open" only means it takes
 * queries.  An ICMP error on a socket whose query is in flight (port
 * unreachable: nobody is there) closes it, which fails every query it
 * carries and counts the server refused, as a lost TCP connection would.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/upstream/uconn.h"

/* One slot's socket. */
typedef struct {
	ev_io rio;     /* data: the connection */
	int fd;        /* -1: none */
	uint32_t sent; /* queries sent on it */
	bool retire;   /* an unexpected datagram came: closed at release */
} udp_sock_t;

typedef struct {
	dv_uconn_t c;
	udp_sock_t *socks; /* one per slot */
	uint32_t reuse;    /* queries per socket (1: a socket per query) */
} udp_conn_t;

static void sock_close(dv_uconn_t *c, udp_sock_t *k)
{
	if (k->fd < 0)
		return;
	ev_io_stop(c->server->pool->loop, &k->rio);
	close(k->fd);
	k->fd = -1;
}

/* A datagram on slot `slot`'s socket was not its answer: the socket
 * carries no further query (closed now if no query waits on it). */
static void sock_retire(dv_uconn_t *c, udp_sock_t *k, uint32_t slot)
{
	if (k->retire)
		return;
	DV_STAT_INC(c->server->pool->stats, upstream_udp_retired);
	if (c->slots[slot].busy)
		k->retire = true;
	else
		sock_close(c, k);
}

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	udp_conn_t *u = (udp_conn_t *)c;
	udp_sock_t *k = (udp_sock_t *)w;
	uint32_t slot = (uint32_t)(k - u->socks);
	dv_pool_t *p = c->server->pool;
	/* a few datagrams at most: a spoofed one may come before the answer */
	for (int budget = 8; budget > 0; budget--) {
		ssize_t n = recv(k->fd, p->rxbuf, sizeof(p->rxbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* an error for a query that is over (it timed out
			 * and went on over TCP): that socket only goes */
			if (!c->slots[slot].busy) {
				sock_close(c, k);
				return;
			}
			/* ICMP unreachable: the server is not there, or
			 * (a tcp:// server's front) not on UDP: its
			 * queries go over TCP */
			if (!c->server->front_all) {
				dv_userver_front_off(c->server);
				dv_uconn_close_retry(c, strerror(errno));
				return;
			}
			dv_uconn_close(c, true, strerror(errno));
			return;
		}
		c->last_rx_ms = now_ms();
		if (!dv_uslot_answer(c, slot, p->rxbuf, (size_t)n)) {
			sock_retire(c, k, slot);
			if (k->fd < 0)
				return;
			continue;
		}
		/* answered (the slot released, maybe taken again by a new
		 * query), or the connection closed: anything more on the
		 * socket wakes the watcher again (no recv that would only
		 * say EAGAIN) */
		return;
	}
}

unsigned dv_uconn_udp_reuse(const dv_server_t *s)
{
	if (!dv_url_is_loopback(&s->url))
		return 1;
	unsigned k = s->pool->cfg->udp_socket_queries;
	return k > 1 ? k : 1;
}

static dv_uconn_t *udp_create(dv_server_t *s, unsigned max);

static void udp_destroy(dv_uconn_t *c)
{
	udp_conn_t *u = (udp_conn_t *)c;
	for (uint32_t i = 0; u->socks && i < c->n_slots; i++)
		sock_close(c, &u->socks[i]);
	free(u->socks);
	dv_uconn_deinit(c);
	free(u);
}

/* Nothing to open: the slots make their sockets (udp_submit). */
static int udp_connect(dv_uconn_t *c)
{
	dv_uconn_connects(c);
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms();
	return 0;
}

/*
 * The query sent on the slot's socket: the one it kept (udp_release keeps
 * only a socket that may carry more), else a new socket connected to the
 * server.  A connect or send error (no route, ICMP seen) is nobody
 * there (-ECONNREFUSED); running out of descriptors or buffers is not the
 * server's fault and is returned as it is.
 */
static int udp_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		      size_t len)
{
	udp_conn_t *u = (udp_conn_t *)c;
	udp_sock_t *k = &u->socks[slot];
	dv_server_t *s = c->server;
	int ret;
	if (k->fd < 0) {
		int fd = socket(s->url.addr.ss_family,
				SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&s->url.addr,
			    s->url.addr_len) < 0) {
			ret = errno;
			close(fd);
			goto fail;
		}
		DV_STAT_INC(s->pool->stats, upstream_udp_sockets);
		k->fd = fd;
		k->sent = 0;
		k->retire = false;
		ev_io_set(&k->rio, fd, EV_READ);
		ev_io_start(s->pool->loop, &k->rio);
	}
	k->sent++;
	if (send(k->fd, msg, len, 0) < 0 && errno != EAGAIN) {
		ret = errno;
		sock_close(c, k);
		goto fail;
	}
	return 0;
fail:
	if (ret == EMFILE || ret == ENFILE || ret == ENOBUFS || ret == ENOMEM)
		return -ret;
	return -ECONNREFUSED;
}

/* The slot is done: its socket goes (a late answer then meets a closed
 * port) unless it may carry the slot's next query (a loopback server). */
static void udp_release(dv_uconn_t *c, uint32_t slot)
{
	udp_conn_t *u = (udp_conn_t *)c;
	udp_sock_t *k = &u->socks[slot];
	if (k->retire || k->sent >= u->reuse)
		sock_close(c, k);
}

static void udp_stop(dv_uconn_t *c, bool was_open)
{
	udp_conn_t *u = (udp_conn_t *)c;
	for (uint32_t i = 0; i < c->n_slots; i++)
		sock_close(c, &u->socks[i]);
}

const dv_uconn_ops_t dv_uconn_udp_ops = {
	.lossy = true,
	.slot_sockets = true,
	.create = udp_create,
	.destroy = udp_destroy,
	.connect = udp_connect,
	.submit = udp_submit,
	.release = udp_release,
	.stop = udp_stop,
};

static dv_uconn_t *udp_create(dv_server_t *s, unsigned max)
{
	udp_conn_t *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	dv_uconn_t *c = &u->c;
	if (dv_uconn_init(c, &dv_uconn_udp_ops, s, max) < 0)
		goto fail;
	u->socks = calloc(c->n_slots, sizeof(*u->socks));
	if (!u->socks)
		goto fail;
	u->reuse = dv_uconn_udp_reuse(s);
	for (uint32_t i = 0; i < c->n_slots; i++) {
		u->socks[i].fd = -1;
		ev_init(&u->socks[i].rio, udp_read_cb);
		u->socks[i].rio.data = c;
	}
	return c;
fail:
	dv_uconn_deinit(c);
	free(u);
	return NULL;
}

/*
 * udp:// upstreams: the server's "front" connection (registry.c), tried
 * before its TCP connections.  It is lossy (uconn.h): the pool frees an
 * abandoned id at once, and asks the same server again over TCP when an
 * answer is truncated (TC) or a query times out; nothing here decides that.
 *
 * Every query goes out on a socket of its own (slot_sockets), as Unbound
 * does: a fresh socket, connected to the server, so the kernel binds it to
 * a port it draws at random from the ephemeral range
 * (net.ipv4.ip_local_port_range) and drops datagrams from any other
 * address or port; the socket is closed when the slot is released (answer,
 * timeout, abandon).  The query's 16-bit id is random and independent of
 * the slot (server.c), so an off-path attacker has to hit the port and the
 * id at once, and then the question (pool.c): about 2^31 guesses with the
 * default port range instead of 2^16 on one long-lived socket.  The cost is
 * a socket() and a connect() per query, and one descriptor per query in
 * flight: at most pool.max-inflight (rounded up to a power of two) per
 * udp:// server and worker.
 *
 * The connection itself has no socket: "open" only means it takes
 * queries.  An ICMP error on any of its sockets (port unreachable: nobody
 * is there) closes it, which fails every query it carries and counts the
 * server refused, as a lost TCP connection would.
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
	ev_io rio;    /* data: the connection */
	int fd;       /* -1: none */
	uint32_t gen; /* bumped at every open: the socket is still the one
			 being read */
} udp_sock_t;

typedef struct {
	dv_uconn_t c;
	udp_sock_t *socks; /* one per slot */
} udp_conn_t;

static void sock_close(dv_uconn_t *c, udp_sock_t *k)
{
	if (k->fd < 0)
		return;
	ev_io_stop(c->server->pool->loop, &k->rio);
	close(k->fd);
	k->fd = -1;
}

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	udp_conn_t *u = (udp_conn_t *)c;
	udp_sock_t *k = (udp_sock_t *)w;
	uint32_t slot = (uint32_t)(k - u->socks);
	uint32_t gen = k->gen;
	dv_pool_t *p = c->server->pool;
	/* a few datagrams at most: a spoofed one may come before the answer */
	for (int budget = 8; budget > 0; budget--) {
		ssize_t n = recv(k->fd, p->rxbuf, sizeof(p->rxbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
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
		dv_uslot_answer(c, slot, p->rxbuf, (size_t)n);
		/* answered (the slot released, maybe taken again by a new
		 * query with a new socket), or the connection closed */
		if (k->gen != gen || k->fd < 0)
			return;
	}
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

/* Nothing to open: each query makes its own socket. */
static int udp_connect(dv_uconn_t *c)
{
	dv_uconn_connects(c);
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms();
	return 0;
}

/*
 * A new socket connected to the server, and the query sent on it.  A
 * connect or send error (no route, ICMP seen) is nobody there
 * (-ECONNREFUSED); running out of descriptors or buffers is not the
 * server's fault and is returned as it is.
 */
static int udp_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		      size_t len)
{
	udp_sock_t *k = &((udp_conn_t *)c)->socks[slot];
	dv_server_t *s = c->server;
	int ret;
	sock_close(c, k);
	int fd = socket(s->url.addr.ss_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&s->url.addr, s->url.addr_len) <
	    0) {
		ret = errno;
		goto fail;
	}
	if (send(fd, msg, len, 0) < 0 && errno != EAGAIN) {
		ret = errno;
		goto fail;
	}
	k->fd = fd;
	k->gen++;
	ev_io_set(&k->rio, fd, EV_READ);
	ev_io_start(s->pool->loop, &k->rio);
	return 0;
fail:
	close(fd);
	if (ret == EMFILE || ret == ENFILE || ret == ENOBUFS || ret == ENOMEM)
		return -ret;
	return -ECONNREFUSED;
}

/* The slot is done: its socket goes (a late answer then meets a closed
 * port). */
static void udp_release(dv_uconn_t *c, uint32_t slot)
{
	sock_close(c, &((udp_conn_t *)c)->socks[slot]);
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

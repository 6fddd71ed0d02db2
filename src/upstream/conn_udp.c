/*
 * udp:// upstreams: one connected UDP socket per server and worker, the
 * server's "front" connection (registry.c), tried before its TCP
 * connections.  It is lossy (uconn.h): the pool frees an abandoned id at
 * once, and asks the same server again over TCP when an answer is
 * truncated (TC) or a query times out; nothing here decides that.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/upstream/uconn.h"

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	dv_pool_t *p = c->server->pool;
	for (int budget = 64; budget > 0 && c->state == UC_OPEN; budget--) {
		ssize_t n = recv(c->fd, p->rxbuf, sizeof(p->rxbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* ICMP unreachable: the server is not there */
			dv_uconn_close(c, true, strerror(errno));
			return;
		}
		c->last_rx_ms = now_ms();
		dv_uconn_answer(c, p->rxbuf, (size_t)n);
	}
}

static dv_uconn_t *udp_create(dv_server_t *s, unsigned max);

static void udp_destroy(dv_uconn_t *c)
{
	if (c->fd >= 0) {
		ev_io_stop(c->server->pool->loop, &c->rio);
		close(c->fd);
	}
	dv_uconn_deinit(c);
	free(c);
}

/* A connected socket is open at once; a refused connect is counted. */
static int udp_connect(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	int fd = socket(s->url.addr.ss_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&s->url.addr, s->url.addr_len) <
	    0) {
		int ret = -errno;
		close(fd);
		dv_userver_refused(s);
		return ret;
	}
	c->fd = fd;
	ev_io_set(&c->rio, fd, EV_READ);
	dv_uconn_connects(c);
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms();
	ev_io_start(s->pool->loop, &c->rio);
	return 0;
}

/* Sent at once; a socket error (ICMP unreachable seen) is nobody there. */
static int udp_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		      size_t len)
{
	if (send(c->fd, msg, len, 0) < 0 && errno != EAGAIN)
		return -ECONNREFUSED;
	return 0;
}

static void udp_stop(dv_uconn_t *c, bool was_open)
{
}

const dv_uconn_ops_t dv_uconn_udp_ops = {
	.lossy = true,
	.create = udp_create,
	.destroy = udp_destroy,
	.connect = udp_connect,
	.submit = udp_submit,
	.stop = udp_stop,
};

static dv_uconn_t *udp_create(dv_server_t *s, unsigned max)
{
	dv_uconn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (dv_uconn_init(c, &dv_uconn_udp_ops, s, max) < 0) {
		free(c);
		return NULL;
	}
	ev_init(&c->rio, udp_read_cb);
	c->rio.data = c;
	return c;
}

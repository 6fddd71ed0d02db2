/*
 * udp:// upstreams: the server's "front" connection (registry.c), tried
 * before its TCP connections.  It is lossy (uconn.h): the pool frees an
 * abandoned id at once, and asks the same server again over TCP when an
 * answer is truncated (TC) or a query times out; nothing here decides that.
 *
 * Queries go out on sockets connected to the server, so the kernel binds
 * each to a port it draws at random from the ephemeral range
 * (net.ipv4.ip_local_port_range) and drops datagrams from any other
 * address or port.  The query's 16-bit id is random and independent of
 * the slot, and unique among the connection's queries in flight (its id
 * table, server.c), so an off-path attacker has to hit the port and the
 * id at once, and then the question (pool.c): about 2^31 guesses with the
 * default port range instead of 2^16 on one long-lived socket.
 *
 * To a server on another host every query gets a fresh socket, closed when
 * its query ends (answer, timeout, abandon): a socket() and a connect()
 * per query, the price of that defence, as Unbound pays it.  To a
 * loopback server (127.0.0.0/8, ::1) one socket carries the queries of
 * many slots, in flight together, each with its own random id, until it
 * has carried pool.udp-socket-queries of them; then new queries open a new
 * socket, on a new random port, and the old one closes when its last
 * query ends.  This is safe enough because a connected socket takes
 * datagrams only from the resolver's own address and port, and a datagram
 * from outside the host cannot carry a loopback source (the kernel drops
 * it on any other interface, as a martian): only a process on this host
 * could try to guess an id, and one that can bind the resolver's port or
 * use raw sockets owns the resolver's answers anyway.  A datagram that is
 * not an awaited answer (an unknown id, the id of a query sent on another
 * socket, another question, or any datagram while no query is in flight:
 * a late answer or a spoof) is read, dropped, counted, and retires its
 * socket: it takes no new query and closes when its queries have ended.
 *
 * Sharing a socket is what lets the queries of a loop turn leave in one
 * sendmmsg and their answers come back in recvmmsg batches: submit only
 * queues the slot, and the pool calls udp_flush once at the end of the
 * turn (dv_uconn_want_flush).  Nothing is copied for that: the queued
 * slot's question is its job's (its id written into it again at the
 * flush, since another attempt of the job may have written its own).
 *
 * The descriptors stay bounded: every open socket but the one taking new
 * queries carries at least one query in flight, so a connection has at
 * most pool.udp-max-inflight (rounded up to a power of two) of them, per
 * server and worker, all closed with the connection (idle timeout).  The
 * connection itself has no socket: "open" only means it takes queries.  An
 * ICMP error on a socket that carries queries (port unreachable: nobody is
 * there) closes the connection, which fails every query it carries and
 * counts the server refused, as a lost TCP connection would.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/upstream/uconn.h"

#define NO_SOCK UINT32_MAX
#define TX_BATCH 64 /* datagrams per sendmmsg */
#define RX_BATCH 16 /* datagrams per recvmmsg, in slices of p->rxbuf */
#define RX_SIZE 4096 /* a slice: an answer to our questions (EDNS size
			1232, or 512 without EDNS) always fits */
_Static_assert(RX_BATCH * RX_SIZE <= sizeof(((dv_pool_t *)0)->rxbuf),
	       "the receive slices fit the pool's datagram buffer");

typedef struct {
	ev_io rio;         /* data: the connection */
	int fd;            /* -1: closed (on the free stack) */
	uint32_t gen;      /* opens of this entry (a reader's check) */
	uint32_t sent;     /* queries sent on it */
	uint32_t inflight; /* busy slots whose query went on it */
	bool retire;       /* an unexpected datagram came: no new query */
} udp_sock_t;

typedef struct {
	uint32_t sock;  /* the socket its query went on, or NO_SOCK */
	uint32_t txpos; /* its place in the send queue, or NO_SLOT */
} udp_slot_t;

typedef struct {
	dv_uconn_t c;
	udp_sock_t *socks;  /* n_slots entries: always enough (above) */
	uint32_t *free_socks, n_free; /* closed entries, a stack */
	uint32_t cur;       /* the socket taking new queries, or NO_SOCK */
	udp_slot_t *uslots; /* per slot */
	uint32_t *txq, n_tx; /* slots whose query waits for udp_flush */
	uint32_t reuse;     /* queries per socket (1: a socket per query) */
} udp_conn_t;

static void sock_close(udp_conn_t *u, uint32_t ki)
{
	udp_sock_t *k = &u->socks[ki];
	if (k->fd < 0)
		return;
	ev_io_stop(u->c.server->pool->loop, &k->rio);
	close(k->fd);
	k->fd = -1;
	k->gen++;
	u->free_socks[u->n_free++] = ki;
	if (u->cur == ki)
		u->cur = NO_SOCK;
}

/* A datagram on socket `ki` was not an awaited answer: it takes no
 * further query (closed now if none is in flight on it). */
static void sock_retire(udp_conn_t *u, uint32_t ki)
{
	udp_sock_t *k = &u->socks[ki];
	if (k->retire)
		return;
	DV_STAT_INC(u->c.server->pool->stats, upstream_udp_retired);
	k->retire = true;
	if (u->cur == ki)
		u->cur = NO_SOCK;
	if (!k->inflight)
		sock_close(u, ki);
}

/* Nothing waits in the send queue any more. */
static void txq_clear(udp_conn_t *u)
{
	for (uint32_t i = 0; i < u->n_tx; i++)
		u->uslots[u->txq[i]].txpos = NO_SLOT;
	u->n_tx = 0;
}

/* An error read or sent on socket `ki` (an ICMP error the kernel kept). */
static void sock_error(udp_conn_t *u, uint32_t ki, int err)
{
	dv_uconn_t *c = &u->c;
	/* for queries that are over (they timed out and went on over
	 * TCP): that socket only goes */
	if (!u->socks[ki].inflight) {
		sock_close(u, ki);
		return;
	}
	/* ICMP unreachable: the server is not there, or (a tcp:// server's
	 * front) not on UDP: its queries go over TCP */
	if (!c->server->front_all) {
		dv_userver_front_off(c->server);
		dv_uconn_close_retry(c, strerror(err));
		return;
	}
	dv_uconn_close(c, true, strerror(err));
}

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	udp_conn_t *u = (udp_conn_t *)c;
	udp_sock_t *k = (udp_sock_t *)w;
	uint32_t ki = (uint32_t)(k - u->socks);
	uint32_t gen = k->gen;
	dv_pool_t *p = c->server->pool;
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	for (int i = 0; i < RX_BATCH; i++) {
		iov[i] = (struct iovec){p->rxbuf + i * RX_SIZE, RX_SIZE};
		msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i],
						  .msg_iovlen = 1};
	}
	for (int round = 0; round < 4; round++) {
		int n = recvmmsg(k->fd, msgs, RX_BATCH, 0, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				sock_error(u, ki, errno);
			return;
		}
		c->last_rx_ms = now_ms();
		for (int i = 0; i < n; i++) {
			uint8_t *msg = iov[i].iov_base;
			size_t len = msgs[i].msg_len;
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				/* larger than asked for: over TCP */
				len = dv_wire_cut_truncated(
					msg, len < RX_SIZE ? len : RX_SIZE);
			uint32_t slot = len >= DV_DNS_HDR
						? dv_uconn_slot_of(c, dv_get16(msg))
						: NO_SLOT;
			if (slot != NO_SLOT && u->uslots[slot].sock != ki)
				slot = NO_SLOT; /* sent on another socket */
			if (!dv_uslot_answer(c, slot, msg, len))
				sock_retire(u, ki);
			/* the socket closed (its last query ended), or the
			 * connection: the rest was for nobody */
			if (k->gen != gen || c->state != UC_OPEN)
				return;
		}
		if (n < RX_BATCH)
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

/* Frees `u` and its tables (its sockets closed, or never opened). */
static void udp_free(udp_conn_t *u)
{
	free(u->socks);
	free(u->free_socks);
	free(u->uslots);
	free(u->txq);
	dv_uconn_deinit(&u->c);
	free(u);
}

static void udp_destroy(dv_uconn_t *c)
{
	udp_conn_t *u = (udp_conn_t *)c;
	for (uint32_t i = 0; u->socks && i < c->n_slots; i++)
		sock_close(u, i);
	udp_free(u);
}

/* Nothing to open: the queries make their sockets (udp_submit). */
static int udp_connect(dv_uconn_t *c)
{
	dv_uconn_connects(c);
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms();
	return 0;
}

/* A new socket connected to the server, as the one taking new queries:
 * 0, or a negative errno. */
static int sock_open(udp_conn_t *u)
{
	dv_server_t *s = u->c.server;
	int fd = socket(s->url.addr.ss_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&s->url.addr, s->url.addr_len) <
	    0) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	DV_STAT_INC(s->pool->stats, upstream_udp_sockets);
	uint32_t ki = u->free_socks[--u->n_free];
	udp_sock_t *k = &u->socks[ki];
	k->fd = fd;
	k->sent = 0;
	k->inflight = 0;
	k->retire = false;
	ev_io_set(&k->rio, fd, EV_READ);
	ev_io_start(s->pool->loop, &k->rio);
	u->cur = ki;
	return 0;
}

/*
 * The slot's query goes on the socket taking new queries (a new one when
 * there is none, or it has carried its share) and waits in the send queue
 * for the end of the turn.  There is always a free socket entry for a new
 * one: the other open sockets carry a query each, and this slot's is not
 * on any yet.  A connect error (no route) is nobody there (-ECONNREFUSED);
 * running out of descriptors or buffers is not the server's fault and is
 * returned as it is.
 */
static int udp_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		      size_t len)
{
	udp_conn_t *u = (udp_conn_t *)c;
	(void)msg; /* the slot's job's question: sent from there */
	(void)len;
	/* it has carried its share: it closes with its last query */
	if (u->cur != NO_SOCK && u->socks[u->cur].sent >= u->reuse)
		u->cur = NO_SOCK;
	if (u->cur == NO_SOCK) {
		int ret = sock_open(u);
		if (ret == -EMFILE || ret == -ENFILE || ret == -ENOBUFS ||
		    ret == -ENOMEM)
			return ret;
		if (ret < 0)
			return -ECONNREFUSED;
	}
	udp_sock_t *k = &u->socks[u->cur];
	k->sent++;
	k->inflight++;
	u->uslots[slot].sock = u->cur;
	u->uslots[slot].txpos = u->n_tx;
	u->txq[u->n_tx++] = slot;
	dv_uconn_want_flush(c);
	return 0;
}

/* Sends the queued queries: one sendmmsg per run of queries on the same
 * socket, in the queue's order (submission order, but for the place of a
 * query released before it left, which the queue's last one takes).  A full send buffer loses the
 * rest of the run (the queries time out and go over TCP); an error the
 * socket kept (ICMP) is the server's (sock_error). */
static void udp_flush(dv_uconn_t *c)
{
	udp_conn_t *u = (udp_conn_t *)c;
	struct mmsghdr msgs[TX_BATCH];
	struct iovec iov[TX_BATCH];
	uint32_t q = 0;
	while (q < u->n_tx) {
		uint32_t ki = u->uslots[u->txq[q]].sock;
		unsigned n = 0;
		for (; q < u->n_tx && n < TX_BATCH; q++, n++) {
			uint32_t slot = u->txq[q];
			if (u->uslots[slot].sock != ki)
				break;
			dv_job_t *j = c->slots[slot].att->job;
			dv_put16(j->qwire, c->slots[slot].id);
			iov[n] = (struct iovec){j->qwire, j->qlen};
			msgs[n].msg_hdr = (struct msghdr){.msg_iov = &iov[n],
							  .msg_iovlen = 1};
		}
		unsigned off = 0;
		while (off < n) {
			int sent = sendmmsg(u->socks[ki].fd, msgs + off,
					    n - off, 0);
			if (sent > 0) {
				off += (unsigned)sent;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS || errno == ENOMEM)
				break;
			int err = errno;
			txq_clear(u);
			sock_error(u, ki, err);
			return;
		}
	}
	txq_clear(u);
}

/* The slot is done: off the send queue if its query never left; its
 * socket closes with its last query unless it may still take new ones (a
 * late answer then meets a closed port). */
static void udp_release(dv_uconn_t *c, uint32_t slot)
{
	udp_conn_t *u = (udp_conn_t *)c;
	udp_slot_t *us = &u->uslots[slot];
	if (us->txpos != NO_SLOT) {
		uint32_t last = u->txq[--u->n_tx];
		u->txq[us->txpos] = last;
		u->uslots[last].txpos = us->txpos;
		us->txpos = NO_SLOT;
	}
	uint32_t ki = us->sock;
	if (ki == NO_SOCK)
		return;
	us->sock = NO_SOCK;
	udp_sock_t *k = &u->socks[ki];
	if (--k->inflight == 0 && (ki != u->cur || k->sent >= u->reuse))
		sock_close(u, ki);
}

static void udp_stop(dv_uconn_t *c, bool was_open)
{
	udp_conn_t *u = (udp_conn_t *)c;
	for (uint32_t i = 0; i < c->n_slots; i++) {
		sock_close(u, i);
		u->socks[i].inflight = 0;
		u->uslots[i] = (udp_slot_t){NO_SOCK, NO_SLOT};
	}
	u->n_tx = 0; /* the slots' txpos just cleared */
}

const dv_uconn_ops_t dv_uconn_udp_ops = {
	.lossy = true,
	.random_ids = true,
	.create = udp_create,
	.destroy = udp_destroy,
	.connect = udp_connect,
	.submit = udp_submit,
	.release = udp_release,
	.stop = udp_stop,
	.flush = udp_flush,
};

static dv_uconn_t *udp_create(dv_server_t *s, unsigned max)
{
	udp_conn_t *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	dv_uconn_t *c = &u->c;
	if (dv_uconn_init(c, &dv_uconn_udp_ops, s, max) < 0)
		goto fail;
	uint32_t n = c->n_slots;
	u->socks = calloc(n, sizeof(*u->socks));
	u->free_socks = calloc(n, sizeof(*u->free_socks));
	u->uslots = calloc(n, sizeof(*u->uslots));
	u->txq = calloc(n, sizeof(*u->txq));
	if (!u->socks || !u->free_socks || !u->uslots || !u->txq)
		goto fail;
	u->reuse = dv_uconn_udp_reuse(s);
	u->cur = NO_SOCK;
	for (uint32_t i = 0; i < n; i++) {
		u->socks[i].fd = -1;
		ev_init(&u->socks[i].rio, udp_read_cb);
		u->socks[i].rio.data = c;
		u->free_socks[n - 1 - i] = i;
		u->uslots[i] = (udp_slot_t){NO_SOCK, NO_SLOT};
	}
	u->n_free = n;
	return c;
fail:
	udp_free(u);
	return NULL;
}

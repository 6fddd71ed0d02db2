/*
 * Do53 over UDP.  Each worker has its own SO_REUSEPORT socket per listener.
 * Datagrams are read in batches with recvmmsg (up to BATCH per call, a few
 * calls per readable event).  Every answer goes into the listener's output
 * queue and the queue is sent with one sendmmsg:
 *  - answers the core gives synchronously (cache hits, errors, local data)
 *    at the end of the batch that asked them;
 *  - answers that come later (from an upstream) when the loop turn that
 *    produced them ends (an ev_prepare watcher, run before the loop polls
 *    again), so the answers of many upstream replies read in one turn share
 *    one syscall and a lone answer waits for nothing: it leaves in the same
 *    turn, before the worker sleeps.
 * When the socket's send buffer is full (EAGAIN, ENOBUFS) the unsent
 * answers stay queued, the write watcher is armed and reading stops until
 * the queue has drained: the kernel then drops new queries at the receive
 * buffer, as it would for any overloaded UDP server, instead of dnsveil
 * dropping answers it has already paid for.  Only an answer that arrives
 * while the queue is full and blocked is dropped (dropped_send).  An error
 * that belongs to one destination (EPERM from a firewall, ENETUNREACH,
 * EINVAL) drops that answer only.  The queue is fixed-size and nothing is
 * allocated per datagram beyond the core's query object.  Answers never
 * exceed the client's limit (the core truncates).
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/core.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/transport.h"
#include "src/daemon/worker.h"
#include "transports/sock.h"

#define BATCH 32 /* datagrams per recvmmsg */
#define TXQ 64 /* answers queued for one sendmmsg */
#define RX_SIZE 4096 /* larger queries are not DNS over UDP in practice */
#define TX_SIZE DV_EDNS_DEFAULT_UDP

typedef struct {
	dv_worker_t *w;
	int fd;
	ev_io io;
	ev_io wio; /* armed only while the send buffer is full */
	ev_prepare flush; /* sends later answers at the end of the turn */
	bool batching;
	bool blocked; /* EAGAIN: queue kept, reading paused */
	bool stopped; /* drain: no longer read */
	uint8_t listener; /* q->listener of its queries */
	unsigned n_tx;
	struct mmsghdr rx[BATCH];
	struct iovec rx_iov[BATCH];
	struct sockaddr_storage rx_addr[BATCH];
	uint8_t rx_buf[BATCH][RX_SIZE];
	struct mmsghdr tx[TXQ];
	struct iovec tx_iov[TXQ];
	struct sockaddr_storage tx_addr[TXQ];
	uint8_t tx_buf[TXQ][TX_SIZE];
} udp_listener_t;

static bool send_would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS ||
	       err == ENOMEM;
}

/* Moves queue entry src to dst (the unsent tail to the front). */
static void tx_move(udp_listener_t *l, unsigned dst, unsigned src)
{
	size_t len = l->tx_iov[src].iov_len;
	memcpy(l->tx_buf[dst], l->tx_buf[src], len);
	memcpy(&l->tx_addr[dst], &l->tx_addr[src],
	       l->tx[src].msg_hdr.msg_namelen);
	l->tx_iov[dst].iov_len = len;
	l->tx[dst].msg_hdr.msg_namelen = l->tx[src].msg_hdr.msg_namelen;
}

static void set_blocked(udp_listener_t *l, bool blocked)
{
	if (l->blocked == blocked)
		return;
	l->blocked = blocked;
	if (blocked) {
		ev_io_stop(l->w->loop, &l->io);
		ev_io_start(l->w->loop, &l->wio);
	} else {
		ev_io_stop(l->w->loop, &l->wio);
		if (!l->stopped)
			ev_io_start(l->w->loop, &l->io);
	}
}

/*
 * Sends the queue.  Returns 0 when it is empty, -EAGAIN when the socket's
 * buffer is full (the rest stays queued and the write watcher is armed).
 */
static int flush_tx(udp_listener_t *l)
{
	unsigned off = 0;
	int ret = 0;
	while (off < l->n_tx) {
		int n = sendmmsg(l->fd, l->tx + off, l->n_tx - off, 0);
		if (n > 0) {
			off += (unsigned)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && send_would_block(errno)) {
			ret = -EAGAIN;
			break;
		}
		/* this destination's error: drop its answer only */
		DV_STAT_INC(&l->w->stats, dropped_send);
		off++;
	}
	unsigned left = l->n_tx - off;
	for (unsigned i = 0; off && i < left; i++)
		tx_move(l, i, off + i);
	l->n_tx = left;
	set_blocked(l, left > 0);
	return ret;
}

static void udp_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	udp_listener_t *l = q->conn;
	if (len > TX_SIZE) {
		/* not from the core's truncation (it keeps to the
		 * client's size): send it as it is */
		if (sendto(l->fd, wire, len, 0, (struct sockaddr *)&q->peer,
			   q->peer_len) < 0)
			DV_STAT_INC(&l->w->stats, dropped_send);
		return;
	}
	if (l->n_tx == TXQ && !l->blocked)
		(void)flush_tx(l); /* may send only part of it */
	if (l->n_tx == TXQ) {
		DV_STAT_INC(&l->w->stats, dropped_send);
		return;
	}
	unsigned i = l->n_tx++;
	memcpy(l->tx_buf[i], wire, len);
	memcpy(&l->tx_addr[i], &q->peer, q->peer_len);
	l->tx_iov[i].iov_len = len;
	l->tx[i].msg_hdr.msg_namelen = q->peer_len;
	if (!l->batching && !l->blocked)
		ev_prepare_start(l->w->loop, &l->flush);
}

static void udp_flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	udp_listener_t *l = p->data;
	ev_prepare_stop(loop, p);
	if (!l->blocked)
		(void)flush_tx(l);
}

static void udp_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)flush_tx(io->data);
}

static void udp_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	udp_listener_t *l = io->data;
	dv_worker_t *w = l->w;
	for (int rounds = 0; rounds < 8 && !l->blocked; rounds++) {
		for (unsigned i = 0; i < BATCH; i++)
			l->rx[i].msg_hdr.msg_namelen = sizeof(l->rx_addr[i]);
		int n = recvmmsg(l->fd, l->rx, BATCH, 0, NULL);
		if (rounds == 0)
			dv_worker_datagrams(w, n > 0 ? (unsigned)n : 0);
		if (n <= 0)
			return; /* EAGAIN, or an error for a past send */
		l->batching = true;
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &l->rx[i].msg_hdr;
			size_t len = l->rx[i].msg_len;
			if (h->msg_flags & MSG_TRUNC)
				len = RX_SIZE; /* parse fails: FORMERR */
			dv_query_t *q = dv_query_new(w, l->rx_buf[i], len);
			if (!q) {
				DV_STAT_INC(&w->stats, dropped_send);
				continue;
			}
			q->reply = udp_reply;
			q->conn = l;
			q->transport = DV_SCHEME_UDP;
			q->listener = l->listener;
			q->udp = true;
			memcpy(&q->peer, &l->rx_addr[i], h->msg_namelen);
			q->peer_len = h->msg_namelen;
			(void)dv_core_submit(q);
		}
		l->batching = false;
		if (l->n_tx && !l->blocked)
			(void)flush_tx(l);
		if (n < BATCH)
			return;
	}
}

static int udp_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	udp_listener_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	int fd = dv_sock_listen(url, SOCK_DGRAM, 0);
	if (fd < 0) {
		free(l);
		return fd;
	}
	l->w = w;
	l->fd = fd;
	l->listener = dv_worker_listener(w, url);
	for (unsigned i = 0; i < BATCH; i++) {
		l->rx_iov[i].iov_base = l->rx_buf[i];
		l->rx_iov[i].iov_len = RX_SIZE;
		l->rx[i].msg_hdr.msg_iov = &l->rx_iov[i];
		l->rx[i].msg_hdr.msg_iovlen = 1;
		l->rx[i].msg_hdr.msg_name = &l->rx_addr[i];
	}
	for (unsigned i = 0; i < TXQ; i++) {
		l->tx_iov[i].iov_base = l->tx_buf[i];
		l->tx[i].msg_hdr.msg_iov = &l->tx_iov[i];
		l->tx[i].msg_hdr.msg_iovlen = 1;
		l->tx[i].msg_hdr.msg_name = &l->tx_addr[i];
	}
	ev_io_init(&l->io, udp_read_cb, fd, EV_READ);
	l->io.data = l;
	ev_io_init(&l->wio, udp_write_cb, fd, EV_WRITE);
	l->wio.data = l;
	ev_prepare_init(&l->flush, udp_flush_cb);
	l->flush.data = l;
	ev_io_start(w->loop, &l->io);
	*state = l;
	return 0;
}

/*
 * Drain: the datagrams already in the socket's queue reached dnsveil
 * before it stopped, so they are read and answered (up to 4 x 256 of
 * them); then reading stops.  The socket stays open for the answers of
 * the queries in flight and closes when the worker's drain ends: from
 * then on a query gets an ICMP port unreachable (once every worker has
 * closed its socket of the SO_REUSEPORT group).  What arrives in between
 * is counted at close (drain_udp_unanswered), not answered.
 */
static void udp_stop(dv_worker_t *w, void *state)
{
	udp_listener_t *l = state;
	for (int i = 0; i < 4; i++)
		udp_read_cb(w->loop, &l->io, EV_READ);
	ev_io_stop(w->loop, &l->io);
	l->stopped = true;
}

static void udp_close(dv_worker_t *w, void *state)
{
	udp_listener_t *l = state;
	if (l->n_tx && !l->blocked)
		(void)flush_tx(l); /* last chance for queued answers */
	DV_STAT_ADD(&w->stats, dropped_send, l->n_tx);
	ev_io_stop(w->loop, &l->io);
	ev_io_stop(w->loop, &l->wio);
	ev_prepare_stop(w->loop, &l->flush);
	if (l->stopped) {
		uint8_t buf[1];
		while (recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
			DV_STAT_INC(&w->stats, drain_udp_unanswered);
	}
	close(l->fd);
	free(l);
}

static void udp_update(dv_worker_t *w, void *state, const dv_url_t *url)
{
	((udp_listener_t *)state)->listener = dv_worker_listener(w, url);
}

static const dv_transport_t do53_udp = {
	.name = "do53-udp",
	.schemes = (1u << DV_SCHEME_UDP) | (1u << DV_SCHEME_DNS),
	.listen = udp_listen,
	.stop = udp_stop,
	.update = udp_update,
	.close = udp_close,
};
DV_TRANSPORT_REGISTER(do53_udp)

/*
 * DNS over QUIC (RFC 9250): the quic:// listener.  The protocol -- QUIC
 * connections, streams, DoQ framing, tokens, the half-open bound -- is the
 * server engine's (src/proto/doq_server.h); this file owns what the engine
 * must not: the socket, datagram batches, timers on the worker's loop,
 * and the way to the query core.
 *
 * Each worker has its own SO_REUSEPORT UDP socket and its own engine.  The
 * kernel spreads new connections (long-header packets) by address hash;
 * every connection ID a worker's engine issues starts with the worker's
 * index, and a classic BPF program on the socket group sends short-header
 * packets to the socket of the worker named by that byte, so a client that
 * changes address (NAT rebinding, a phone moving networks) still reaches
 * the worker that owns its connection.
 *
 * Datagrams go out in sendmmsg batches: the engine writes each into the
 * next batch slot (tx_buf/tx_send), and the batch is flushed when full and
 * at the end of every loop callback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "src/core/clock.h"
#include "src/core/core.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/transport.h"
#include "src/daemon/worker.h"
#include "src/proto/doq_server.h"
#include "transports/sock.h"
#include "transports/tls_stream.h" /* dv_conn_log_t */

#define BATCH 32 /* datagrams per recvmmsg / sendmmsg */
#define RX_SIZE DV_DOQ_SERVER_RX_MAX
#define TX_SIZE DV_DOQ_SERVER_TX_MAX
#define FAIL_LOG_PER_SECOND 10

typedef struct doq_listener doq_listener_t;

/* What the transport keeps with each of the engine's connections */
typedef struct {
	doq_listener_t *l;
	ev_timer timer;
} conn_user_t;

struct doq_listener {
	dv_worker_t *w;
	dv_doq_server_t *srv;
	int fd;
	ev_io rio;
	uint8_t listener; /* q->listener of its queries */
	bool wildcard; /* bound to 0.0.0.0 / ::: local address per packet */
	struct sockaddr_storage local;
	socklen_t local_len;
	/* failed connections logged (debug): this second, and left out */
	uint64_t fail_log_second;
	unsigned fail_log_n, fail_log_dropped;
	dv_conn_log_t hs_log; /* completed handshakes logged (debug) */
	unsigned batch; /* callbacks going on: flush_tx when the last ends */
	unsigned n_tx;
	struct mmsghdr tx[BATCH];
	struct iovec tx_iov[BATCH];
	struct sockaddr_storage tx_addr[BATCH];
	uint8_t tx_ctrl[BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))];
	uint8_t tx_buf[BATCH][TX_SIZE];
	struct mmsghdr rx[BATCH];
	struct iovec rx_iov[BATCH];
	struct sockaddr_storage rx_addr[BATCH];
	uint8_t rx_ctrl[BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))];
	uint8_t rx_buf[BATCH][RX_SIZE];
};

/* ---- clocks ---- */

/* tokens carry wall-clock time (they outlive a connection) */
static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- sending ---- */

static void flush_tx(doq_listener_t *l)
{
	unsigned off = 0;
	while (off < l->n_tx) {
		int n = sendmmsg(l->fd, l->tx + off, l->n_tx - off, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* a full socket buffer loses these the way the
			 * network would; QUIC retransmits */
			DV_STAT_ADD(&l->w->stats, dropped_send, l->n_tx - off);
			break;
		}
		off += (unsigned)n;
	}
	l->n_tx = 0;
}

/* The next transmit slot's buffer (flushing when the batch is full). */
static uint8_t *tx_slot(doq_listener_t *l)
{
	if (l->n_tx == BATCH)
		flush_tx(l);
	return l->tx_buf[l->n_tx];
}

/* Queue the datagram built in tx_slot() for `peer`, from `local` when the
 * socket is bound to a wildcard address. */
static void tx_commit(doq_listener_t *l, size_t len, const struct sockaddr *peer,
		      socklen_t peer_len, const struct sockaddr *local)
{
	unsigned i = l->n_tx++;
	struct msghdr *h = &l->tx[i].msg_hdr;
	memcpy(&l->tx_addr[i], peer, peer_len);
	h->msg_namelen = peer_len;
	l->tx_iov[i].iov_len = len;
	h->msg_control = NULL;
	h->msg_controllen = 0;
	if (l->wildcard && local) {
		h->msg_control = l->tx_ctrl[i];
		if (local->sa_family == AF_INET) {
			h->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
			struct cmsghdr *cm = CMSG_FIRSTHDR(h);
			cm->cmsg_level = IPPROTO_IP;
			cm->cmsg_type = IP_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
			struct in_pktinfo pi = {
				.ipi_spec_dst =
					((const struct sockaddr_in *)local)
						->sin_addr};
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		} else {
			h->msg_controllen =
				CMSG_SPACE(sizeof(struct in6_pktinfo));
			struct cmsghdr *cm = CMSG_FIRSTHDR(h);
			cm->cmsg_level = IPPROTO_IPV6;
			cm->cmsg_type = IPV6_PKTINFO;
			cm->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
			struct in6_pktinfo pi = {
				.ipi6_addr =
					((const struct sockaddr_in6 *)local)
						->sin6_addr};
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		}
	}
	if (!l->batch)
		flush_tx(l);
}

static void batch_begin(doq_listener_t *l)
{
	l->batch++;
}

static void batch_end(doq_listener_t *l)
{
	if (--l->batch == 0)
		flush_tx(l);
}

/* ---- the engine's callbacks ---- */

static uint8_t *eng_tx_buf(void *app)
{
	return tx_slot(app);
}

static void eng_tx_send(void *app, size_t len, const struct sockaddr *peer,
			socklen_t peer_len, const struct sockaddr *local)
{
	tx_commit(app, len, peer, peer_len, local);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dv_doq_sconn_t *c = t->data;
	conn_user_t *u = dv_doq_sconn_user(c);
	doq_listener_t *l = u->l;
	batch_begin(l);
	dv_doq_server_expire(l->srv, c, dv_doq_now());
	batch_end(l);
}

static void eng_timer(void *app, dv_doq_sconn_t *c, uint64_t at)
{
	doq_listener_t *l = app;
	conn_user_t *u = dv_doq_sconn_user(c);
	if (!u->l) {
		u->l = l;
		ev_timer_init(&u->timer, timer_cb, 0.0, 0.0);
		u->timer.data = c;
	}
	uint64_t now = dv_doq_now();
	double after = at <= now ? 0.0 : (double)(at - now) / 1e9;
	ev_timer_stop(l->w->loop, &u->timer);
	ev_timer_set(&u->timer, after, 0.0);
	ev_timer_start(l->w->loop, &u->timer);
}

static void eng_conn_end(void *app, dv_doq_sconn_t *c)
{
	doq_listener_t *l = app;
	conn_user_t *u = dv_doq_sconn_user(c);
	if (u->l)
		ev_timer_stop(l->w->loop, &u->timer);
	/* every connection the engine counted in doq_connections ends here */
	DV_METRIC_INC(&l->w->core.metrics.conn_closed[DV_SCHEME_QUIC]);
}

/*
 * One debug line for a connection that failed (a handshake, a protocol
 * error): at most FAIL_LOG_PER_SECOND a second per listener, so a flood of
 * bad clients cannot flood the log; the next line says how many were left
 * out.
 */
static void eng_failure(void *app, dv_doq_sconn_t *c, const char *what,
			const char *why)
{
	doq_listener_t *l = app;
	if (dv_log_level < DV_LOG_DEBUG)
		return;
	uint64_t second = dv_now_ms() / 1000;
	if (second != l->fail_log_second) {
		l->fail_log_second = second;
		l->fail_log_n = 0;
	}
	if (l->fail_log_n >= FAIL_LOG_PER_SECOND) {
		l->fail_log_dropped++;
		return;
	}
	l->fail_log_n++;
	char peer[64];
	socklen_t peer_len;
	dv_addr_format(dv_doq_sconn_peer(c, &peer_len), peer, sizeof(peer));
	if (l->fail_log_dropped)
		dv_log_debug("quic: worker %u: %u more failed connections were "
			     "not logged",
			     l->w->index, l->fail_log_dropped);
	const char *refused = dv_doq_sconn_sni_refused(c);
	dv_log_debug("quic: worker %u: connection from %s %s: %s%s%s%s",
		     l->w->index, peer, what, why,
		     refused ? " (SNI '" : "", refused ? refused : "",
		     refused ? "' is not a host name, and GnuTLS refuses it)"
			     : "");
	l->fail_log_dropped = 0;
}

/*
 * One debug line per completed handshake, as the TLS listeners write
 * (transports/tls_stream.c): who, the SNI host name ("-" for none, or one
 * that is not a host name), the ALPN protocol (always doq: the handshake
 * requires it), whether the session was resumed and the client ID of a
 * verified client certificate.  The SNI and that ID are what the core's
 * identity stage reads (q->sni, q->cert_id).
 */
static void eng_handshake(void *app, dv_doq_sconn_t *c, bool resumed)
{
	doq_listener_t *l = app;
	unsigned dropped;
	if (dv_log_level < DV_LOG_DEBUG || !dv_conn_log_take(&l->hs_log, &dropped))
		return;
	char peer[64];
	socklen_t peer_len;
	dv_addr_format(dv_doq_sconn_peer(c, &peer_len), peer, sizeof(peer));
	const char *sni = dv_doq_sconn_sni(c);
	if (dropped)
		dv_log_debug("quic: worker %u: %u more handshakes were not "
			     "logged",
			     l->w->index, dropped);
	const char *cert = dv_doq_sconn_cert_id(c);
	dv_log_debug("quic: worker %u: connection from %s: sni %s, alpn "
		     "doq%s%s%s",
		     l->w->index, peer, sni ? sni : "-",
		     resumed ? ", resumed" : "", cert ? ", cert " : "",
		     cert ? cert : "");
}

/* ---- queries ---- */

static void doq_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_doq_sstream_t *s = q->conn;
	doq_listener_t *l = dv_doq_server_app(dv_doq_server_of(s));
	batch_begin(l);
	dv_doq_server_answer(s, wire, len, dv_doq_now());
	batch_end(l);
}

/* A whole query from the engine: to the core. */
static int eng_query(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
		     int64_t stream_id, const uint8_t *msg, size_t len)
{
	doq_listener_t *l = app;
	dv_query_t *q = dv_query_new(l->w, msg, len);
	if (!q)
		return -ENOMEM;
	q->reply = doq_reply;
	q->conn = s;
	q->conn_tag = (uint64_t)stream_id;
	q->transport = DV_SCHEME_QUIC;
	q->pad_block = DV_PAD_BLOCK;
	socklen_t peer_len;
	const struct sockaddr *peer = dv_doq_sconn_peer(c, &peer_len);
	memcpy(&q->peer, peer, peer_len);
	q->peer_len = peer_len;
	q->sni = dv_doq_sconn_sni(c);
	q->cert_id = dv_doq_sconn_cert_id(c);
	q->listener = l->listener;
	/* < 0: not DNS (too short / a response): no answer will come */
	return dv_core_submit(q) < 0 ? DV_EMALFORMED : 0;
}

static const dv_doq_server_callbacks_t engine_callbacks = {
	.tx_buf = eng_tx_buf,
	.tx_send = eng_tx_send,
	.on_query = eng_query,
	.on_timer = eng_timer,
	.on_conn_end = eng_conn_end,
	.on_handshake = eng_handshake,
	.on_failure = eng_failure,
};

/* ---- receiving ---- */

/* The local address a datagram was sent to (wildcard sockets). */
static socklen_t rx_local(doq_listener_t *l, struct msghdr *h,
			  struct sockaddr_storage *out)
{
	memcpy(out, &l->local, l->local_len);
	if (!l->wildcard)
		return l->local_len;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm;
	     cm = CMSG_NXTHDR(h, cm)) {
		if (cm->cmsg_level == IPPROTO_IP &&
		    cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			((struct sockaddr_in *)out)->sin_addr = pi.ipi_addr;
		} else if (cm->cmsg_level == IPPROTO_IPV6 &&
			   cm->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			((struct sockaddr_in6 *)out)->sin6_addr = pi.ipi6_addr;
		}
	}
	return l->local_len;
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	doq_listener_t *l = io->data;
	batch_begin(l);
	for (int rounds = 0; rounds < 8; rounds++) {
		for (unsigned i = 0; i < BATCH; i++) {
			l->rx[i].msg_hdr.msg_namelen = sizeof(l->rx_addr[i]);
			l->rx[i].msg_hdr.msg_controllen = sizeof(l->rx_ctrl[i]);
		}
		int n = recvmmsg(l->fd, l->rx, BATCH, 0, NULL);
		if (n <= 0)
			break;
		uint64_t wall = wall_ns();
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &l->rx[i].msg_hdr;
			if ((h->msg_flags & MSG_TRUNC) || l->rx[i].msg_len == 0) {
				DV_STAT_INC(&l->w->stats, doq_bad_packets);
				continue;
			}
			dv_quic_path_t path;
			path.local_len = rx_local(l, h, &path.local);
			memcpy(&path.remote, &l->rx_addr[i], h->msg_namelen);
			path.remote_len = h->msg_namelen;
			path.ctx = NULL;
			dv_doq_server_read(l->srv, &path, l->rx_buf[i],
					   l->rx[i].msg_len, dv_doq_now(), wall);
		}
		flush_tx(l);
		if (n < BATCH)
			break;
	}
	batch_end(l);
}

/* ---- the listener ---- */

/*
 * Steer short-header packets to the socket whose index in the
 * SO_REUSEPORT group is the first byte of their destination connection
 * ID (the worker that issued it; workers bind in index order).  Long
 * headers (new connections, handshakes) return an out-of-range index,
 * which makes the kernel fall back to its address hash.
 */
static void attach_steering(int fd, unsigned n_workers)
{
	struct sock_filter code[] = {
		/* A = first byte of the UDP payload */
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 3, 0),
		/* short header: A = DCID[0] % n */
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),
		BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n_workers),
		BPF_STMT(BPF_RET | BPF_A, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]),
				  .filter = code};
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
		       sizeof(prog)) < 0)
		dv_log_warn("quic: connection-ID steering unavailable (%s): "
			    "a client that changes address may lose its "
			    "connection",
			    strerror(errno));
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(
		&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The engine's settings from the worker's config (at creation and on a
 * reload). */
static dv_doq_server_config_t server_config(dv_worker_t *w)
{
	const dv_config_t *cfg = w->cfg;
	static const dv_doq_server_retry_t retry[] = {
		[DV_DOQ_RETRY_ALWAYS] = DV_DOQ_SERVER_RETRY_ALWAYS,
		[DV_DOQ_RETRY_UNDER_LOAD] = DV_DOQ_SERVER_RETRY_UNDER_LOAD,
		[DV_DOQ_RETRY_NEVER] = DV_DOQ_SERVER_RETRY_NEVER,
	};
	return (dv_doq_server_config_t){
		.tls = w->shared->tls_doq,
		.secret = w->shared->quic_secret,
		.secret_len = sizeof(w->shared->quic_secret),
		.keyfile = w->shared->keyfile,
		.worker = w->index,
		.max_connections = cfg->doq_max_connections,
		.max_handshakes = cfg->doq_max_handshakes,
		.max_handshakes_per_address =
			cfg->doq_max_handshakes_per_address,
		.max_streams = cfg->doq_max_streams,
		.idle_timeout_ms = cfg->doq_idle_timeout_ms,
		.handshake_timeout_ms = cfg->tls_handshake_timeout_ms,
		.read_timeout_ms = cfg->tcp_read_timeout_ms,
		.token_lifetime_s = cfg->doq_token_lifetime_s,
		.retry = retry[cfg->doq_retry],
		.hs_limit = w->hs_limit,
		.stats = &w->stats,
		.conn_user_size = sizeof(conn_user_t),
	};
}

static int doq_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	if (!w->shared->tls_doq)
		return -EINVAL;
	doq_listener_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	dv_doq_server_config_t sc = server_config(w);
	l->srv = dv_doq_server_new(&sc, &engine_callbacks, l);
	int fd = l->srv ? dv_sock_listen(url, SOCK_DGRAM, 0) : -ENOMEM;
	if (fd < 0) {
		dv_doq_server_free(l->srv);
		free(l);
		return fd;
	}
	l->w = w;
	l->fd = fd;
	l->listener = dv_worker_listener(w, url);
	memcpy(&l->local, &url->addr, url->addr_len);
	l->local_len = url->addr_len;
	l->wildcard = is_wildcard(&url->addr);
	if (l->wildcard) {
		int one = 1;
		if (url->addr.ss_family == AF_INET)
			(void)setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one,
					 sizeof(one));
		else
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO,
					 &one, sizeof(one));
	}
	if (w->shared->n_workers > 1)
		attach_steering(fd, w->shared->n_workers);
	for (unsigned i = 0; i < BATCH; i++) {
		l->rx_iov[i].iov_base = l->rx_buf[i];
		l->rx_iov[i].iov_len = RX_SIZE;
		l->rx[i].msg_hdr.msg_iov = &l->rx_iov[i];
		l->rx[i].msg_hdr.msg_iovlen = 1;
		l->rx[i].msg_hdr.msg_name = &l->rx_addr[i];
		l->rx[i].msg_hdr.msg_control = l->rx_ctrl[i];
		l->tx_iov[i].iov_base = l->tx_buf[i];
		l->tx[i].msg_hdr.msg_iov = &l->tx_iov[i];
		l->tx[i].msg_hdr.msg_iovlen = 1;
		l->tx[i].msg_hdr.msg_name = &l->tx_addr[i];
	}
	ev_io_init(&l->rio, read_cb, fd, EV_READ);
	l->rio.data = l;
	ev_io_start(w->loop, &l->rio);
	*state = l;
	return 0;
}

/* Drain: refuse new connections, and close the established ones with
 * DOQ_NO_ERROR as soon as their queries are answered. */
static void doq_stop(dv_worker_t *w, void *state)
{
	(void)w;
	doq_listener_t *l = state;
	batch_begin(l);
	dv_doq_server_drain(l->srv, dv_doq_now());
	batch_end(l);
}

static unsigned doq_open_conns(dv_worker_t *w, void *state)
{
	(void)w;
	return dv_doq_server_open_conns(((doq_listener_t *)state)->srv);
}

/* A reload kept the listener: its index, and the settings of the
 * connections to come (dv_doq_server_set_limits). */
static void doq_update(dv_worker_t *w, void *state, const dv_url_t *url)
{
	doq_listener_t *l = state;
	dv_doq_server_config_t sc = server_config(w);
	l->listener = dv_worker_listener(w, url);
	dv_doq_server_set_limits(l->srv, &sc);
}

static void doq_close(dv_worker_t *w, void *state)
{
	doq_listener_t *l = state;
	ev_io_stop(w->loop, &l->rio);
	/* the loop has ended: no answer will come */
	dv_doq_server_free(l->srv);
	close(l->fd);
	free(l);
}

static const dv_transport_t doq = {
	.name = "doq",
	.schemes = 1u << DV_SCHEME_QUIC,
	.listen = doq_listen,
	.stop = doq_stop,
	.open_conns = doq_open_conns,
	.update = doq_update,
	.close = doq_close,
};
DV_TRANSPORT_REGISTER(doq)

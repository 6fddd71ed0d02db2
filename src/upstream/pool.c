/*
 * Upstream pool: persistent, pipelined connections to the local resolver
 * group and the fallback group.  See upstream.h for the model.
 *
 * Connection states: CLOSED (no socket; may connect unless the server is
 * in back-off), CONNECTING (queries queue in the output buffer), HANDSHAKE
 * (tls:// servers: TCP is up, TLS is not yet; queries keep queueing),
 * OPEN.  tls:// connections use the same slots and framing; only the
 * byte I/O goes through the TLS seam, and a certificate that does not
 * verify for #NAME fails the connection like a refused connect.
 * https:// connections are the same TLS connections (ALPN h2 required)
 * carrying HTTP/2: the engine of src/proto/doh_client.c turns each query into a
 * stream and each answer back into a message; the slots keep their ids
 * (the answer gets its slot's id before the usual matching) and remember
 * the stream, which is reset when the attempt is given up.
 * quic:// connections (one per server) are a connected UDP socket driven
 * by the DoQ engine of src/proto/doq_client.c, with the same slots: HANDSHAKE
 * until QUIC's handshake completes, see "QUIC connections" below.
 * A connection is never freed while the pool lives: closing it stops its
 * watchers, fails the attempts it carried and keeps its buffers, so a
 * close in the middle of a read or write callback is always safe.
 *
 * Health (health.h) is kept per server and per worker.  Every answer is a
 * latency sample, also the late answer to an attempt whose fetch was
 * answered elsewhere: on TCP connections such an attempt leaves its id
 * reserved as an orphan until the answer comes (or the pool's tick
 * reclaims it), so a slow local server that always loses the race to the
 * fallback is still measured and is seen when it is fast again.  A DOWN
 * server gets only probes (pool.probe-name NS, on its own connections),
 * after reconnect-min-ms and then doubling up to reconnect-max-ms; the
 * first answer to one brings it back, and since the local group is always
 * asked first, its traffic comes back at once.  The tick also closes
 * connections idle for pool.idle-timeout-ms; they reopen on demand.
 */
#include "src/upstream/pool.h"

#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/clock.h"
#include "src/daemon/core.h"
#include "src/proto/doh_client.h"
#include "src/proto/doq_client.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/tls/quic_tls.h"
#include "src/tls/tls.h"

typedef enum { UC_CLOSED, UC_CONNECTING, UC_HANDSHAKE, UC_OPEN } uc_state_t;

typedef struct dv_job dv_job_t;
typedef struct dv_uconn dv_uconn_t;
typedef struct dv_server dv_server_t;

#define DV_JOB_MAX_ATTEMPTS 4

/* One try of a job on one connection. */
typedef struct {
	dv_job_t *job; /* NULL when free */
	dv_uconn_t *conn;
	uint32_t slot;
	ev_timer timer; /* per-attempt timeout */
	bool fallback;
} dv_attempt_t;

/*
 * The pool's side of one upstream question: a core fetch (the pool's
 * dv_pool_fetch_start) or a health probe of one server.  Its own copy of
 * the question, whose id each attempt patches; the paths tried, and the
 * fetch's hedge and deadline timers.
 */
struct dv_job {
	dv_pool_t *pool;
	dv_fetch_t *fetch;  /* the core's fetch it answers; NULL for a probe */
	dv_server_t *probe; /* the server a probe is for; NULL for a fetch */
	uint8_t qwire[DV_FETCH_QWIRE_MAX];
	uint16_t qlen;
	bool fallback_started;
	uint32_t tried_local, tried_fallback; /* servers tried (bit = index) */
	uint16_t ede; /* best EDE seen from an upstream */
	ev_timer hedge;
	ev_timer deadline;
	dv_attempt_t att[DV_JOB_MAX_ATTEMPTS];
};

typedef struct {
	dv_attempt_t *att; /* NULL when free or abandoned */
	uint16_t id;
	bool busy; /* id reserved until answered or the connection closes */
	bool orphan; /* busy, its attempt gone: kept for the latency */
	uint32_t next_free, prev_free; /* doubly linked free list */
	uint64_t sent_ms;
	int32_t stream; /* https:// connections: the query's HTTP/2 stream */
	uint64_t qtag;  /* quic:// connections: the query's DoQ stream (its
			   submission's tag), 0 when none */
} uslot_t;

struct dv_uconn {
	dv_server_t *server;
	bool udp;
	uc_state_t state;
	int fd;
	ev_io rio, wio;
	uslot_t *slots;
	uint32_t n_slots, mask, free_head, busy;
	uint32_t orphans; /* busy slots whose attempt has ended */
	/* output not yet written (TCP) */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	/* input (TCP): 2-byte length + message */
	uint8_t *in;
	size_t in_len;
	uint64_t last_rx_ms;
	dv_tls_t *tls; /* tls:// servers, from HANDSHAKE on */
	size_t tls_retry; /* bytes of the write that returned WANT_* */
	bool tls_saved; /* session kept for the server's next connection */
	dv_doh_client_t *h2;    /* https:// servers, from connect on */
	dv_doh_client_t *h2_in; /* the engine being driven: a close inside
				 * it leaves the free to the caller */
	dv_doq_client_t *q;    /* quic:// servers, from connect on */
	dv_doq_client_t *q_in; /* as h2_in */
	dv_doq_path_t qpath;
	ev_timer qtimer;       /* the engine's expiry */
	uint64_t qseq;         /* submissions, for the slots' qtag */
};

struct dv_server {
	dv_pool_t *pool;
	dv_url_t url;
	bool fallback;
	dv_uconn_t *tcp;
	unsigned n_tcp;
	dv_uconn_t *udp; /* udp:// servers only */
	unsigned backoff_ms; /* DOWN: delay before the next probe */
	dv_tls_session_t *session; /* last TLS session, for resumption */
	uint8_t *qsession; /* quic://: the last DoQ session (for resumption) */
	size_t qsession_len;
	dv_health_t health;
	ev_timer probe_timer;
	dv_job_t *probe; /* the probe query, at most one in flight */
	dv_ustats_t st;    /* written by the worker, read by the stats */
	/* health.state, EWMA, p95, samples for other threads */
	unsigned pub_state;
	uint64_t pub_ewma_us;
	uint32_t pub_p95_ms, pub_samples;
};

struct dv_pool {
	struct ev_loop *loop;
	dv_stats_t *stats; /* the worker's */
	unsigned index;    /* the worker's, for the logs */
	const dv_config_t *cfg;
	const dv_pool_report_t *report; /* where fetches end */
	dv_server_t *servers; /* local first, then fallback */
	unsigned n_local, n_fallback;
	dv_tls_ctx_t *tls; /* client context; NULL without tls:// servers */
	dv_quic_tls_ctx_t *quic_tls; /* NULL without quic:// servers */
	dv_health_conf_t hconf[2]; /* [fallback]: slow-p95 is local only */
	unsigned explore_n[2], explore_rot[2]; /* per group [fallback] */
	ev_timer tick; /* idle connections, orphaned ids */
	uint8_t probe_qwire[DV_DNS_HDR + DV_DNS_MAX_NAME + 4];
	uint16_t probe_qlen;
	uint8_t rxbuf[DV_DNS_MAX_MSG + 1]; /* UDP answers, QUIC datagrams */
	uint8_t qanswer[DV_DNS_MAX_MSG];   /* a DoQ answer, its id patched */
};

#define NO_SLOT UINT32_MAX

#define USTAT_INC(s, name) DV_STAT_INC(&(s)->st, name)

static void conn_close(dv_uconn_t *c, bool failure, const char *why);
static void attempt_fail(dv_attempt_t *a, bool timeout);
/* https:// connections, see "HTTP/2 connections" below */
static int h2_start(dv_uconn_t *c);
static void h2_stop(dv_uconn_t *c);
static bool h2_fill(dv_uconn_t *c);
static bool h2_input(dv_uconn_t *c);
static void h2_cancel(dv_uconn_t *c, int32_t stream);
static bool h2_alpn_ok(dv_uconn_t *c);
/* quic:// connections, see "QUIC connections" below */
static int quic_connect(dv_uconn_t *c);
static void quic_stop(dv_uconn_t *c, bool was_open);
static int quic_send_query(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			   size_t len);
static bool conn_draining(dv_uconn_t *c);
static bool conn_crowded(dv_uconn_t *c);
static int conn_send_query(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			   size_t len);
static void probe_schedule(dv_server_t *s);
static void probe_failed(dv_server_t *s);

static uint64_t now_ms(dv_pool_t *p)
{
	return dv_now_ms();
}

/* ---- slots: id rewriting ---- */

static int conn_init(dv_uconn_t *c, dv_server_t *s, bool udp, unsigned max)
{
	uint32_t n = 1;
	unsigned bits = 0;
	while (n < max && bits < 16) {
		n <<= 1;
		bits++;
	}
	c->server = s;
	c->udp = udp;
	c->state = UC_CLOSED;
	c->fd = -1;
	c->n_slots = n;
	c->mask = n - 1;
	c->slots = calloc(n, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		c->slots[i].next_free = i + 1 < n ? i + 1 : NO_SLOT;
		c->slots[i].prev_free = i ? i - 1 : NO_SLOT;
	}
	c->free_head = 0;
	if (!udp) {
		c->in = malloc(2 + DV_DNS_MAX_MSG);
		if (!c->in)
			return -ENOMEM;
	}
	return 0;
}

static void conn_deinit(dv_uconn_t *c)
{
	free(c->slots);
	free(c->in);
	free(c->out);
}

static void free_unlink(dv_uconn_t *c, uint32_t i)
{
	uslot_t *s = &c->slots[i];
	if (s->prev_free != NO_SLOT)
		c->slots[s->prev_free].next_free = s->next_free;
	else
		c->free_head = s->next_free;
	if (s->next_free != NO_SLOT)
		c->slots[s->next_free].prev_free = s->prev_free;
}

/*
 * Reserve an id.  The slot is chosen at random when that one is free (the
 * usual case: tables are mostly empty), else the head of the free list, and
 * the bits above the slot index are random: so every id bit is random while
 * the table has room, and an answer still finds its slot in O(1).
 */
static uint32_t slot_take(dv_uconn_t *c, dv_attempt_t *a, uint64_t now)
{
	if (c->free_head == NO_SLOT)
		return NO_SLOT;
	uint16_t rnd;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint16_t)(now * 2654435761u);
	uint32_t i = rnd & c->mask;
	if (c->slots[i].busy)
		i = c->free_head;
	free_unlink(c, i);
	uslot_t *s = &c->slots[i];
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint16_t)(now * 40503u);
	s->id = (uint16_t)((rnd & ~c->mask) | i);
	s->att = a;
	s->busy = true;
	s->sent_ms = now;
	c->busy++;
	return i;
}

static void slot_release(dv_uconn_t *c, uint32_t i)
{
	uslot_t *s = &c->slots[i];
	if (s->stream) {
		h2_cancel(c, s->stream);
		s->stream = 0;
	}
	if (s->orphan) {
		s->orphan = false;
		c->orphans--;
	}
	s->qtag = 0;
	s->att = NULL;
	s->busy = false;
	s->next_free = c->free_head;
	s->prev_free = NO_SLOT;
	if (c->free_head != NO_SLOT)
		c->slots[c->free_head].prev_free = i;
	c->free_head = i;
	c->busy--;
}

/* ---- sockets ---- */

static void conn_flush(dv_uconn_t *c);

/* TLS output: wolfSSL wants the very same bytes again after a WANT, so
 * the length of that write is kept in tls_retry. */
static void conn_flush_tls(dv_uconn_t *c)
{
	struct ev_loop *loop = c->server->pool->loop;
	while (c->out_off < c->out_len || h2_fill(c)) {
		size_t len = c->tls_retry ? c->tls_retry
					  : c->out_len - c->out_off;
		ssize_t n = dv_tls_write(c->tls, c->out + c->out_off, len);
		if (n == DV_TLS_WANT_WRITE || n == DV_TLS_WANT_READ) {
			c->tls_retry = len;
			/* WANT_READ: the read watcher, always on while OPEN,
			 * retries; a write watcher would only spin */
			if (n == DV_TLS_WANT_WRITE)
				ev_io_start(loop, &c->wio);
			else
				ev_io_stop(loop, &c->wio);
			return;
		}
		if (n < 0) {
			conn_close(c, true, dv_tls_error(c->tls, (int)n));
			return;
		}
		c->tls_retry = 0;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(loop, &c->wio);
}

static void conn_flush(dv_uconn_t *c)
{
	if (c->tls) {
		conn_flush_tls(c);
		return;
	}
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(c->server->pool->loop, &c->wio);
				return;
			}
			conn_close(c, true, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(c->server->pool->loop, &c->wio);
}

static int conn_queue(dv_uconn_t *c, const uint8_t *msg, size_t len)
{
	size_t need = c->out_len + 2 + len;
	if (need > c->out_cap) {
		if (c->out_off) {
			memmove(c->out, c->out + c->out_off,
				c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
			need = c->out_len + 2 + len;
		}
		if (need > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
			while (cap < need)
				cap *= 2;
			uint8_t *o = realloc(c->out, cap);
			if (!o)
				return -ENOMEM;
			c->out = o;
			c->out_cap = cap;
		}
	}
	dv_put16(c->out + c->out_len, (uint16_t)len);
	memcpy(c->out + c->out_len + 2, msg, len);
	c->out_len += 2 + len;
	return 0;
}

static void server_publish(dv_server_t *s)
{
	__atomic_store_n(&s->pub_state, (unsigned)s->health.state,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_ewma_us, s->health.ewma_us, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_p95_ms, s->health.p95_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pub_samples, s->health.n, __ATOMIC_RELAXED);
}

static const dv_health_conf_t *server_hconf(dv_server_t *s)
{
	return &s->pool->hconf[s->fallback];
}

/* After the health of `s` changed from `old`: say so, count it, and
 * start probing a server that went down. */
static void server_state(dv_server_t *s, dv_health_state_t old)
{
	dv_pool_t *p = s->pool;
	const dv_health_t *h = &s->health;
	server_publish(s);
	if (h->state == old)
		return;
	switch (h->state) {
	case DV_HEALTH_DOWN:
		USTAT_INC(s, went_down);
		s->backoff_ms = p->cfg->reconnect_min_ms;
		dv_log_warn("worker %u: upstream %s is down, probing it in "
			    "%u ms",
			    p->index, s->url.text, s->backoff_ms);
		probe_schedule(s);
		break;
	case DV_HEALTH_DEGRADED:
		USTAT_INC(s, went_degraded);
		dv_log_info("worker %u: upstream %s is degraded (p95 %u ms, "
			    "%u of the last 16 attempts failed)",
			    p->index, s->url.text, h->p95_ms,
			    (unsigned)__builtin_popcount(h->window));
		break;
	default:
		if (old == DV_HEALTH_DOWN)
			dv_log_info("worker %u: upstream %s is back",
				    p->index, s->url.text);
		else
			dv_log_info("worker %u: upstream %s is up again (p95 "
				    "%u ms)",
				    p->index, s->url.text, h->p95_ms);
		break;
	}
}

/* A connection to `s` could not be opened (refused, unreachable, TLS
 * handshake failed): the server is down. */
static void server_refused(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	USTAT_INC(s, connect_failures);
	dv_health_down(&s->health);
	server_state(s, old);
}

/* An attempt on `s` failed or timed out (an established connection lost
 * counts once, not once per query it carried). */
static void server_failure(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	dv_health_failure(&s->health, server_hconf(s));
	server_state(s, old);
}

/* `s` answered a query `ms` after it went out. */
static void server_answered(dv_server_t *s, uint64_t ms)
{
	dv_health_state_t old = s->health.state;
	USTAT_INC(s, answers);
	dv_health_answer(&s->health, ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms,
			 server_hconf(s));
	server_state(s, old);
}

static bool server_usable(dv_server_t *s)
{
	return s->health.state != DV_HEALTH_DOWN;
}

/* Fail every attempt this connection carries and release all ids. */
static void conn_fail_slots(dv_uconn_t *c)
{
	for (uint32_t i = 0; i < c->n_slots && c->busy; i++) {
		uslot_t *s = &c->slots[i];
		if (!s->busy)
			continue;
		dv_attempt_t *a = s->att;
		slot_release(c, i);
		if (a) {
			a->conn = NULL;
			if (a->job && !a->job->probe)
				USTAT_INC(c->server, failures);
			attempt_fail(a, false);
		}
	}
}

/* Keep the session of `c` for the server's next connection.  TLS 1.3
 * tickets arrive after the handshake, so this runs once the first answer
 * has been read, and again at close. */
static void tls_keep_session(dv_uconn_t *c)
{
	dv_tls_session_t *sess = dv_tls_session_get(c->tls);
	c->tls_saved = true;
	if (sess) {
		dv_tls_session_free(c->server->session);
		c->server->session = sess;
	}
}

static void conn_close(dv_uconn_t *c, bool failure, const char *why)
{
	dv_pool_t *p = c->server->pool;
	if (c->state == UC_CLOSED)
		return;
	bool was_open = c->state == UC_OPEN;
	ev_io_stop(p->loop, &c->rio);
	ev_io_stop(p->loop, &c->wio);
	if (c->tls) {
		if (was_open)
			tls_keep_session(c);
		dv_tls_free(c->tls);
		c->tls = NULL;
	}
	c->tls_retry = 0;
	h2_stop(c);
	quic_stop(c, was_open);
	close(c->fd);
	c->fd = -1;
	c->state = UC_CLOSED;
	c->out_len = c->out_off = 0;
	c->in_len = 0;
	if (failure || c->busy) {
		dv_log_debug("worker %u: upstream %s: connection closed: %s",
			     p->index, c->server->url.text, why);
		/* a UDP socket fails on ICMP unreachable: nobody there */
		if (!was_open || c->udp)
			server_refused(c->server);
		else if (failure)
			server_failure(c->server);
	}
	conn_fail_slots(c);
}

static void handle_answer(dv_uconn_t *c, const uint8_t *wire, size_t len);

static void handshake_step(dv_uconn_t *c);

/* Read from the connection: bytes, 0 at EOF, -EAGAIN when there is
 * nothing now, or another negative error (`why` says what). */
static ssize_t conn_recv(dv_uconn_t *c, size_t room, const char **why)
{
	if (c->tls) {
		ssize_t n = dv_tls_read(c->tls, c->in + c->in_len, room);
		if (n > 0)
			return n;
		if (n == DV_TLS_WANT_READ)
			return -EAGAIN;
		if (n == DV_TLS_WANT_WRITE) {
			ev_io_start(c->server->pool->loop, &c->wio);
			return -EAGAIN;
		}
		if (n == DV_TLS_EOF)
			return 0;
		*why = dv_tls_error(c->tls, (int)n);
		return n < 0 ? n : -EPROTO;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		*why = strerror(errno);
		return -errno;
	}
}

static void tcp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	if (c->state == UC_HANDSHAKE) {
		handshake_step(c);
		return;
	}
	/* a TLS write that wanted to read first */
	if (c->tls && c->tls_retry) {
		conn_flush(c);
		if (c->state != UC_OPEN)
			return;
	}
	for (;;) {
		size_t room = 2 + DV_DNS_MAX_MSG - c->in_len;
		const char *why = "read error";
		ssize_t n = conn_recv(c, room, &why);
		if (n == 0) {
			conn_close(c, c->busy > 0, "closed by upstream");
			return;
		}
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			conn_close(c, true, why);
			return;
		}
		c->in_len += (size_t)n;
		c->last_rx_ms = now_ms(c->server->pool);
		if (c->tls && !c->tls_saved)
			tls_keep_session(c);
		if (c->h2) {
			if (!h2_input(c))
				return;
			continue; /* TLS: until WANT_READ, as below */
		}
		size_t off = 0;
		while (c->state == UC_OPEN && c->in_len - off >= 2) {
			size_t mlen = dv_get16(c->in + off);
			if (mlen < DV_DNS_HDR) {
				conn_close(c, true, "bad framing");
				return;
			}
			if (c->in_len - off < 2 + mlen)
				break;
			handle_answer(c, c->in + off + 2, mlen);
			off += 2 + mlen;
		}
		if (c->state != UC_OPEN)
			return;
		if (off) {
			memmove(c->in, c->in + off, c->in_len - off);
			c->in_len -= off;
		}
		/* TLS: go on until WANT_READ, the library may hold
		 * decrypted bytes the socket no longer signals */
		if (!c->tls && (size_t)n < room)
			return; /* drained the socket */
	}
}

/* The connection is usable: queries queued meanwhile go out now. */
static void conn_opened(dv_uconn_t *c)
{
	struct ev_loop *loop = c->server->pool->loop;
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms(c->server->pool);
	ev_io_start(loop, &c->rio);
	if (c->out_len > c->out_off || c->h2)
		conn_flush(c);
	else
		ev_io_stop(loop, &c->wio);
}

static void handshake_step(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	struct ev_loop *loop = s->pool->loop;
	int ret = dv_tls_connect(c->tls);
	if (ret == 0) {
		DV_STAT_INC(s->pool->stats, tls_handshakes);
		if (dv_tls_resumed(c->tls))
			DV_STAT_INC(s->pool->stats, tls_resumed);
		if (!h2_alpn_ok(c))
			return;
		conn_opened(c);
		return;
	}
	if (ret == DV_TLS_WANT_READ) {
		ev_io_stop(loop, &c->wio);
		ev_io_start(loop, &c->rio);
		return;
	}
	if (ret == DV_TLS_WANT_WRITE) {
		ev_io_stop(loop, &c->rio);
		ev_io_start(loop, &c->wio);
		return;
	}
	DV_STAT_INC(s->pool->stats, tls_failed);
	char why[DV_URL_NAME_MAX + 256];
	if (dv_tls_cert_error(ret))
		snprintf(why, sizeof(why),
			 "TLS handshake failed: the certificate did not verify "
			 "for %s (%s)",
			 s->url.name, dv_tls_error(c->tls, ret));
	else
		snprintf(why, sizeof(why), "TLS handshake failed: %s",
			 dv_tls_error(c->tls, ret));
	/* once per outage, not once per connection attempt */
	if (server_usable(s))
		dv_log_warn("worker %u: upstream %s: %s", s->pool->index,
			    s->url.text, why);
	/* a session the server no longer likes must not be offered again */
	dv_tls_session_free(s->session);
	s->session = NULL;
	conn_close(c, true, why);
}

/* TCP is up: plain connections are open, TLS ones start the handshake. */
static void conn_tcp_up(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	if (s->url.scheme != DV_SCHEME_TLS && s->url.scheme != DV_SCHEME_HTTPS) {
		conn_opened(c);
		return;
	}
	c->tls = dv_tls_connect_new(s->pool->tls, c->fd, s->url.name,
				    c->h2 ? "h2" : "dot", s->session);
	if (!c->tls) {
		conn_close(c, true, "cannot create a TLS connection");
		return;
	}
	c->tls_retry = 0;
	c->tls_saved = false;
	c->state = UC_HANDSHAKE;
	handshake_step(c);
}

static void tcp_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_uconn_t *c = w->data;
	if (c->state == UC_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_close(c, true, strerror(err));
			return;
		}
		conn_tcp_up(c);
		return;
	}
	if (c->state == UC_HANDSHAKE) {
		handshake_step(c);
		return;
	}
	conn_flush(c);
}

static int conn_connect(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	dv_pool_t *p = s->pool;
	if (s->url.scheme == DV_SCHEME_QUIC)
		return quic_connect(c);
	int type = (c->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK |
		   SOCK_CLOEXEC;
	int fd = socket(s->url.addr.ss_family, type, 0);
	if (fd < 0)
		return -errno;
	if (!c->udp) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	int ret = connect(fd, (struct sockaddr *)&s->url.addr,
			  s->url.addr_len);
	if (ret < 0 && errno != EINPROGRESS) {
		ret = -errno;
		close(fd);
		server_refused(s);
		return ret;
	}
	if (s->url.scheme == DV_SCHEME_HTTPS && h2_start(c) < 0) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	ev_io_set(&c->rio, fd, EV_READ);
	ev_io_set(&c->wio, fd, EV_WRITE);
	DV_STAT_INC(p->stats, upstream_connects);
	USTAT_INC(s, connects);
	if (c->udp) {
		c->state = UC_OPEN;
		c->last_rx_ms = now_ms(p);
		ev_io_start(p->loop, &c->rio);
	} else if (ret == 0) {
		/* connected at once (loopback): a TLS handshake starts now; a
		 * failure closes the connection, which the caller sees as
		 * CLOSED */
		c->state = UC_CONNECTING;
		conn_tcp_up(c);
		if (c->state == UC_CLOSED)
			return DV_EUPSTREAM;
	} else {
		c->state = UC_CONNECTING;
		ev_io_start(p->loop, &c->wio);
	}
	return 0;
}

/* ---- attempts ---- */

static dv_attempt_t *attempt_alloc(dv_job_t *j)
{
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (!j->att[i].job)
			return &j->att[i];
	return NULL;
}

static unsigned attempts_active(dv_job_t *j)
{
	unsigned n = 0;
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		n += j->att[i].job != NULL;
	return n;
}

static void attempt_detach(dv_attempt_t *a)
{
	dv_pool_t *p = a->job->pool;
	ev_timer_stop(p->loop, &a->timer);
	if (a->conn && !a->conn->udp) {
		/* TCP: the answer will come unless the connection dies (which
		 * releases every id) or the server dropped the query (the
		 * pool's tick reclaims old orphans): keep the id, so that the
		 * late answer is still a latency sample of the server. */
		dv_uconn_t *c = a->conn;
		c->slots[a->slot].att = NULL;
		c->slots[a->slot].orphan = true;
		c->orphans++;
		a->conn = NULL;
	} else if (a->conn) {
		/* UDP: free the id now: an abandoned answer may never come
		 * (lost datagram), and a reserved id would leak.
		 * A late answer then finds a free slot or a new random id and is
		 * ignored; only an answer to the very same question could be
		 * taken, and that one is correct. */
		slot_release(a->conn, a->slot);
		a->conn = NULL;
	}
	a->job = NULL;
}

static void attempt_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_attempt_t *a = t->data;
	dv_uconn_t *c = a->conn;
	DV_STAT_INC(a->job->pool->stats, upstream_timeouts);
	if (c)
		USTAT_INC(c->server, timeouts);
	/* A TCP connection that has received nothing since this query went
	 * out is stuck (a dead peer without a RST): close it, which fails
	 * this attempt and the others it carries. */
	if (c && !c->udp && c->last_rx_ms <= c->slots[a->slot].sent_ms) {
		conn_close(c, true, "no answer within the upstream timeout");
		return;
	}
	if (c)
		server_failure(c->server);
	attempt_fail(a, true);
}

/* Choose a connection of server `s` with a free id, connecting one if
 * needed.  NULL when the server cannot take a query now. */
static dv_uconn_t *pick_conn(dv_server_t *s, bool tcp_only)
{
	if (s->udp && !tcp_only) {
		dv_uconn_t *c = s->udp;
		if (c->state == UC_CLOSED && conn_connect(c) < 0)
			return NULL;
		return c->free_head == NO_SLOT ? NULL : c;
	}
	dv_uconn_t *best = NULL, *closed = NULL;
	for (unsigned i = 0; i < s->n_tcp; i++) {
		dv_uconn_t *c = &s->tcp[i];
		if (c->state == UC_CLOSED) {
			if (!closed)
				closed = c;
			continue;
		}
		if (c->free_head == NO_SLOT || conn_draining(c))
			continue;
		if (!best || c->busy < best->busy)
			best = c;
	}
	/* open another connection before piling onto a busy one */
	if (closed && (!best || conn_crowded(best))) {
		if (conn_connect(closed) == 0)
			return closed;
	}
	return best;
}

/* Send `j` on server `s`.  Returns 0 when an attempt is in flight. */
static int attempt_start(dv_job_t *j, dv_server_t *s, bool tcp_only)
{
	dv_pool_t *p = s->pool;
	dv_attempt_t *a = attempt_alloc(j);
	if (!a)
		return DV_ELIMIT;
	/* a down server gets probes only */
	if (!j->probe && !server_usable(s))
		return DV_EUPSTREAM;
	dv_uconn_t *c = pick_conn(s, tcp_only);
	if (!c)
		return DV_EUPSTREAM;
	uint64_t now = now_ms(p);
	uint32_t slot = slot_take(c, a, now);
	if (slot == NO_SLOT)
		return DV_ELIMIT;
	a->job = j;
	a->conn = c;
	a->slot = slot;
	a->fallback = s->fallback;
	dv_put16(j->qwire, c->slots[slot].id);
	/* Nothing here may fail other attempts synchronously: callers hold
	 * the fetch.  TCP output is written from the write watcher, which
	 * also batches the queries of one loop iteration into one send. */
	if (c->udp) {
		if (send(c->fd, j->qwire, j->qlen, 0) < 0 && errno != EAGAIN) {
			slot_release(c, slot);
			a->job = NULL;
			a->conn = NULL;
			server_refused(s);
			return DV_EUPSTREAM;
		}
	} else {
		if (conn_send_query(c, slot, j->qwire, j->qlen) < 0) {
			slot_release(c, slot);
			a->job = NULL;
			a->conn = NULL;
			return -ENOMEM;
		}
		if (c->state == UC_OPEN)
			ev_io_start(p->loop, &c->wio);
	}
	if (j->probe)
		USTAT_INC(s, probes);
	else if (s->fallback)
		DV_STAT_INC(p->stats, fallback_queries);
	else
		DV_STAT_INC(p->stats, upstream_queries);
	if (!j->probe)
		USTAT_INC(s, queries);
	ev_timer_init(&a->timer, attempt_timeout_cb,
		      p->cfg->upstream_timeout_ms / 1000.0, 0.);
	a->timer.data = a;
	ev_timer_start(p->loop, &a->timer);
	return 0;
}

/*
 * Send `j` to the best usable server of a group it has not tried yet
 * (dv_health_pick: health, then latency); the group's first try of a
 * fetch is, for pool.explore-pct of the fetches, sent to another server
 * instead.  Returns the server that took it, or NULL.
 */
static dv_server_t *group_next(dv_job_t *j, bool fallback)
{
	dv_pool_t *p = j->pool;
	unsigned base = fallback ? p->n_local : 0;
	unsigned n = fallback ? p->n_fallback : p->n_local;
	uint32_t *tried = fallback ? &j->tried_fallback : &j->tried_local;
	const dv_health_t *hs[DV_MAX_URLS];
	if (n > DV_MAX_URLS)
		n = DV_MAX_URLS;
	for (unsigned i = 0; i < n; i++)
		hs[i] = &p->servers[base + i].health;
	bool explore = false;
	unsigned pct = p->cfg->explore_pct;
	if (*tried == 0 && pct && n > 1) {
		uint64_t k = ++p->explore_n[fallback];
		explore = k * pct / 100 != (k - 1) * pct / 100;
	}
	for (;;) {
		int i = dv_health_pick(hs, n, *tried, explore,
				       p->explore_rot[fallback]);
		if (i < 0)
			return NULL;
		*tried |= UINT32_C(1) << i;
		dv_server_t *s = &p->servers[base + (unsigned)i];
		if (attempt_start(j, s, false) == 0) {
			if (explore) {
				DV_STAT_INC(p->stats, explored);
				p->explore_rot[fallback]++;
			}
			return s;
		}
		explore = false;
	}
}

static void start_fallback(dv_job_t *j)
{
	if (j->fallback_started)
		return;
	j->fallback_started = true;
	ev_timer_stop(j->pool->loop, &j->hedge);
	group_next(j, true);
}

/* After an attempt ended without a good answer: the next path, or fail. */
static void fetch_continue(dv_job_t *j, bool was_fallback)
{
	dv_pool_t *p = j->pool;
	if (j->probe) { /* a probe is for its one server only */
		probe_failed(j->probe);
		return;
	}
	if (!was_fallback) {
		if (!group_next(j, false))
			start_fallback(j);
	} else {
		group_next(j, true);
	}
	if (attempts_active(j))
		return;
	/* nothing in flight and nothing left to try */
	if (!j->fallback_started && p->n_fallback) {
		start_fallback(j);
		if (attempts_active(j))
			return;
	}
	p->report->fail(j->fetch,
			j->ede != 0xffff ? j->ede : DV_EDE_NETWORK_ERROR,
			"no upstream could answer");
}

static void attempt_fail(dv_attempt_t *a, bool timeout)
{
	dv_job_t *j = a->job;
	if (!j)
		return;
	if (j->probe) {
		dv_server_t *s = j->probe;
		attempt_detach(a);
		probe_failed(s);
		return;
	}
	bool fb = a->fallback;
	dv_server_t *srv = a->conn ? a->conn->server : NULL;
	bool lost_datagram = timeout && a->conn && a->conn->udp;
	DV_STAT_INC(j->pool->stats, upstream_failures);
	attempt_detach(a);
	/* a UDP query or its answer may just have been lost: ask the same
	 * server again over TCP before giving up on it */
	if (lost_datagram && attempt_start(j, srv, true) == 0)
		return;
	fetch_continue(j, fb);
}

static void hedge_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_job_t *j = t->data;
	DV_STAT_INC(j->pool->stats, hedged);
	start_fallback(j);
	if (!attempts_active(j))
		j->pool->report->fail(j->fetch, DV_EDE_NETWORK_ERROR,
					      "no upstream could answer");
}

static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_job_t *j = t->data;
	DV_STAT_INC(j->pool->stats, deadline_expired);
	j->pool->report->fail(j->fetch, DV_EDE_NO_REACHABLE_AUTHORITY,
				      "upstreams did not answer in time");
}

/* ---- health probes ---- */

static bool probe_in_flight(dv_server_t *s)
{
	return s->probe && attempts_active(s->probe) > 0;
}

/* A probe got no answer: the next one later, after a longer pause. */
static void probe_failed(dv_server_t *s)
{
	const dv_config_t *cfg = s->pool->cfg;
	if (s->backoff_ms == 0)
		s->backoff_ms = cfg->reconnect_min_ms;
	else if (s->backoff_ms < cfg->reconnect_max_ms / 2)
		s->backoff_ms *= 2;
	else
		s->backoff_ms = cfg->reconnect_max_ms;
	probe_schedule(s);
}

/* A DOWN server: the next probe after backoff_ms (unless one is in
 * flight or due already). */
static void probe_schedule(dv_server_t *s)
{
	struct ev_loop *loop = s->pool->loop;
	if (s->health.state != DV_HEALTH_DOWN || !s->probe || !loop ||
	    probe_in_flight(s) || ev_is_active(&s->probe_timer))
		return;
	ev_timer_set(&s->probe_timer, s->backoff_ms / 1000.0, 0.);
	ev_timer_start(loop, &s->probe_timer);
}

static void probe_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_server_t *s = t->data;
	dv_pool_t *p = s->pool;
	dv_job_t *j = s->probe;
	if (s->health.state != DV_HEALTH_DOWN || probe_in_flight(s))
		return;
	memcpy(j->qwire, p->probe_qwire, p->probe_qlen);
	j->qlen = p->probe_qlen;
	/* not even sent (connect refused at once): a failed probe */
	if (attempt_start(j, s, false) != 0)
		probe_failed(s);
}

/* A probe was answered (any rcode): the server is back. */
static void probe_answered(dv_server_t *s)
{
	dv_health_state_t old = s->health.state;
	USTAT_INC(s, probe_answers);
	ev_timer_stop(s->pool->loop, &s->probe_timer);
	s->backoff_ms = 0;
	dv_health_up(&s->health, server_hconf(s));
	server_state(s, old);
}

/* ---- answers ---- */

static void handle_answer(dv_uconn_t *c, const uint8_t *wire, size_t len)
{
	dv_pool_t *p = c->server->pool;
	if (len < DV_DNS_HDR)
		return;
	uint16_t id = dv_get16(wire);
	uint32_t i = id & c->mask;
	uslot_t *s = &c->slots[i];
	if (!s->busy || s->id != id)
		return; /* late or unknown: ignored */
	uint64_t sent_ms = s->sent_ms;
	dv_attempt_t *a = s->att;
	if (!a) { /* abandoned (the fetch finished elsewhere) */
		slot_release(c, i);
		USTAT_INC(c->server, late);
		server_answered(c->server, now_ms(p) - sent_ms);
		return;
	}
	dv_job_t *j = a->job;
	if (!dv_wire_question_matches(wire, len, j->qwire, j->qlen))
		return; /* not ours: keep waiting for the real answer */
	slot_release(c, i);
	a->conn = NULL;
	/* any answer says the server is there, and how fast */
	dv_server_t *srv = c->server;
	server_answered(srv, now_ms(p) - sent_ms);
	if (j->probe) {
		attempt_detach(a);
		probe_answered(srv);
		return;
	}

	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(wire, len, &r);
	if (ret != 0 && ret != DV_ELIMIT) {
		attempt_fail(a, false);
		return;
	}
	if (c->udp && (r.flags & DV_FLAG_TC)) {
		DV_STAT_INC(p->stats, upstream_tc_retries);
		attempt_detach(a);
		if (attempt_start(j, srv, true) == 0)
			return;
		fetch_continue(j, srv->fallback);
		return;
	}
	uint8_t rcode = DV_RCODE(r.flags);
	if (rcode != DV_RCODE_NOERROR && rcode != DV_RCODE_NXDOMAIN) {
		USTAT_INC(srv, errors);
		if (r.ede_code != 0xffff)
			j->ede = r.ede_code;
		attempt_fail(a, false);
		return;
	}
	DV_STAT_INC(p->stats, upstream_answers);
	USTAT_INC(srv, won);
	/* the fetch is freed (and every attempt detached) by its owner */
	p->report->answer(j->fetch, wire, len, &r);
}

/* ---- HTTP/2 connections (https:// servers) ----
 *
 * The engine (src/proto/doh_client.c) is created with the socket, so queries
 * submitted while connecting queue inside it; its output is rendered into
 * the output buffer whenever that is empty (conn_flush_tls), and what the
 * connection reads goes to it whole.  Answers and failures come back
 * through the two callbacks below, by slot id (the tag of each request).
 * A close while the engine is being driven (c->h2_in) only detaches it;
 * the driver frees it once the engine has returned.
 */

#define H2_OUT_CAP 16384

/* A request of slot `i` failed: fail its attempt, or send it again on
 * another connection when the server did not process it (GOAWAY). */
static void h2_slot_failed(dv_uconn_t *c, uint32_t i, bool retry,
			   const char *why)
{
	uslot_t *s = &c->slots[i];
	dv_attempt_t *a = s->att;
	dv_server_t *srv = c->server;
	s->stream = 0; /* ended: nothing to reset */
	slot_release(c, i);
	if (!a)
		return;
	a->conn = NULL;
	dv_log_debug("worker %u: upstream %s: %s", srv->pool->index,
		     srv->url.text, why);
	if (retry) {
		dv_job_t *j = a->job;
		attempt_detach(a);
		if (attempt_start(j, srv, true) == 0)
			return;
		fetch_continue(j, srv->fallback);
		return;
	}
	attempt_fail(a, false);
}

/* The slot request `tag` belongs to, if it is still waiting. */
static uslot_t *h2_slot(dv_uconn_t *c, uint32_t tag)
{
	uslot_t *s = &c->slots[tag & c->mask];
	if (c->h2 != c->h2_in || !s->busy || s->id != tag)
		return NULL; /* closed meanwhile, or given up */
	return s;
}

static void h2_answer_cb(void *user, uint32_t tag, uint8_t *msg, size_t len)
{
	dv_uconn_t *c = user;
	uslot_t *s = h2_slot(c, tag);
	if (!s)
		return;
	uint32_t i = tag & c->mask;
	if (s->att) {
		dv_job_t *j = s->att->job;
		/* the stream says which query this answers; the question
		 * must still be the one asked */
		if (!dv_wire_question_matches(msg, len, j->qwire, j->qlen)) {
			h2_slot_failed(c, i, false,
				       "answer to another question");
			return;
		}
	}
	s->stream = 0;
	/* the id on the wire is 0 (RFC 8484): give the answer its slot's,
	 * and match it like any other */
	dv_put16(msg, (uint16_t)tag);
	handle_answer(c, msg, len);
}

static void h2_failed_cb(void *user, uint32_t tag, bool retry,
			 const char *why)
{
	dv_uconn_t *c = user;
	if (h2_slot(c, tag))
		h2_slot_failed(c, tag & c->mask, retry, why);
}

static const dv_doh_client_cb_t h2_callbacks = {
	.answer = h2_answer_cb,
	.failed = h2_failed_cb,
};

static int h2_start(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	if (!c->out) {
		c->out = malloc(H2_OUT_CAP);
		if (!c->out)
			return -ENOMEM;
		c->out_cap = H2_OUT_CAP;
	}
	c->h2 = dv_doh_client_new(s->url.name, s->url.path, &h2_callbacks, c);
	return c->h2 ? 0 : -ENOMEM;
}

/* Detach the engine at close (its requests fail with the slots). */
static void h2_stop(dv_uconn_t *c)
{
	if (c->h2 && c->h2 != c->h2_in)
		dv_doh_client_free(c->h2);
	c->h2 = NULL;
}

/* After driving engine `h2`: true (and `h2` freed) if the connection was
 * closed meanwhile. */
static bool h2_closed_inside(dv_uconn_t *c, dv_doh_client_t *h2)
{
	c->h2_in = NULL;
	if (c->h2 == h2)
		return false;
	dv_doh_client_free(h2);
	return true;
}

/* The output buffer has been written: render the engine's next bytes
 * into it.  True when there is something to write. */
static bool h2_fill(dv_uconn_t *c)
{
	dv_doh_client_t *h2 = c->h2;
	if (!h2 || c->state != UC_OPEN)
		return false;
	c->out_off = c->out_len = 0;
	c->h2_in = h2;
	ssize_t n = dv_doh_client_output(h2, c->out, c->out_cap);
	if (h2_closed_inside(c, h2))
		return false;
	if (n < 0) {
		conn_close(c, true, "HTTP/2 connection error");
		return false;
	}
	if (n == 0 && dv_doh_client_want_close(h2)) {
		bool broken = dv_doh_client_broken(h2);
		conn_close(c, c->busy > 0 || broken,
			   broken ? "HTTP/2 connection error"
				  : "HTTP/2 connection ended (GOAWAY)");
		return false;
	}
	c->out_len = (size_t)n;
	return n > 0;
}

/* Hand what was read (c->in) to the engine, which delivers the answers.
 * False when the connection is closed. */
static bool h2_input(dv_uconn_t *c)
{
	dv_doh_client_t *h2 = c->h2;
	c->h2_in = h2;
	ssize_t n = dv_doh_client_input(h2, c->in, c->in_len);
	c->in_len = 0;
	if (h2_closed_inside(c, h2))
		return false;
	if (n < 0) {
		conn_close(c, true, "HTTP/2 protocol error from the upstream");
		return false;
	}
	if (dv_doh_client_want_write(h2))
		conn_flush(c); /* SETTINGS ACK, WINDOW_UPDATE, PING ACK */
	else if (dv_doh_client_want_close(h2))
		conn_close(c, c->busy > 0, "HTTP/2 connection ended (GOAWAY)");
	return c->state == UC_OPEN;
}

/* Give up the request on `stream` (the attempt ended elsewhere). */
static void h2_cancel(dv_uconn_t *c, int32_t stream)
{
	if (!c->h2)
		return;
	dv_doh_client_cancel(c->h2, stream);
	if (c->state == UC_OPEN && !c->h2_in)
		ev_io_start(c->server->pool->loop, &c->wio);
}

/* TLS is up: an https:// server must have chosen h2.  False (and the
 * connection closed) if not. */
static bool h2_alpn_ok(dv_uconn_t *c)
{
	if (!c->h2)
		return true;
	const char *alpn = dv_tls_alpn(c->tls);
	if (alpn && strcmp(alpn, "h2") == 0)
		return true;
	dv_server_t *s = c->server;
	if (s->health.state != DV_HEALTH_DOWN)
		dv_log_warn("worker %u: upstream %s: the server did not accept "
			    "HTTP/2 (ALPN h2)",
			    s->pool->index, s->url.text);
	conn_close(c, true, "no ALPN h2");
	return false;
}

/* The connection takes no new queries (HTTP/2 GOAWAY received). */
static bool conn_draining(dv_uconn_t *c)
{
	return c->h2 && dv_doh_client_draining(c->h2);
}

/* Worth opening another connection rather than adding to this one: a
 * pipelined TCP connection as soon as it carries a query, an HTTP/2 one
 * when its streams are at the server's limit. */
static bool conn_crowded(dv_uconn_t *c)
{
	if (!c->h2)
		return c->busy > 0;
	return c->busy >= dv_doh_client_max_streams(c->h2);
}

/* Queue `msg` for slot `slot` of stream connection `c`: framed into the
 * output buffer, or as an HTTP/2 request. */
static int conn_send_query(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			   size_t len)
{
	if (c->server->url.scheme == DV_SCHEME_QUIC)
		return quic_send_query(c, slot, msg, len);
	if (!c->h2)
		return conn_queue(c, msg, len);
	int32_t stream = dv_doh_client_submit(c->h2, c->slots[slot].id, msg,
					      len);
	if (stream < 0)
		return stream;
	c->slots[slot].stream = stream;
	return 0;
}

/* ---- QUIC connections (quic:// servers) ----
 *
 * One connection per server (DoQ gives each query its own stream, so one
 * connection carries them all; the engine queues what the server's stream
 * credit does not allow yet).  conn_connect makes the connected UDP
 * socket and the engine at once and starts the handshake (HANDSHAKE);
 * queries submitted meanwhile wait inside the engine, which opens their
 * streams once the handshake completes (OPEN, from on_handshake).  Every
 * call into the engine is followed by quic_flush: the datagrams it has
 * to send, then the timer set to its next expiry.
 *
 * Each query goes out with id 0 (RFC 9250 §4.2.1) on its own stream; the
 * submission's tag (a per-connection sequence number above the slot's id)
 * names the slot in the callbacks, so an answer finds its fetch by stream
 * even when the slot has been reused meanwhile.  The answer gets its
 * slot's id and then goes through handle_answer like any other (the
 * question is checked there).  A stream that ends without an answer
 * fails its attempt; an abandoned attempt leaves its slot an orphan until
 * the stream ends (the engine's deadline is pool.query-timeout-ms).
 *
 * When the engine ends the connection (handshake failure, idle timeout,
 * the server's CONNECTION_CLOSE), its queries are failed by conn_close
 * through the slots, so the health accounting is the one of tls://
 * connections: a handshake that fails is a refused connection.  Calls
 * into the engine mark it in c->q_in; a close meanwhile only detaches it
 * (its callbacks are then ignored) and the driver frees it.
 */

#define QUIC_PKT_MAX 1500 /* >= ngtcp2's largest UDP payload (1452) */

static uint64_t quic_now(void)
{
	return dv_doq_now();
}

/* The slot the submission `tag` belongs to, if it is still waiting and the
 * engine calling is the connection's. */
static uslot_t *quic_slot(dv_uconn_t *c, void *query)
{
	uint64_t tag = (uint64_t)(uintptr_t)query;
	uslot_t *s = &c->slots[tag & c->mask];
	if (!c->q || c->q != c->q_in || !s->busy || s->qtag != tag)
		return NULL;
	return s;
}

static void quic_message_cb(void *app, void *query, int64_t stream_id,
			    const uint8_t *msg, size_t len, uint64_t sent_at,
			    uint64_t now)
{
	(void)stream_id;
	(void)sent_at;
	(void)now;
	dv_uconn_t *c = app;
	uslot_t *s = quic_slot(c, query);
	if (!s || len < DV_DNS_HDR || len > DV_DNS_MAX_MSG)
		return;
	/* the id on the wire is 0: give the answer its slot's, and match it
	 * like any other (a wrong question is left to on_end) */
	dv_pool_t *p = c->server->pool;
	memcpy(p->qanswer, msg, len);
	dv_put16(p->qanswer, s->id);
	handle_answer(c, p->qanswer, len);
}

static void quic_end_cb(void *app, void *query, int64_t stream_id,
			const dv_doq_result_t *res, uint64_t now)
{
	(void)now;
	dv_uconn_t *c = app;
	/* the connection is over: conn_close fails its queries (and counts
	 * the loss once for the server's health) */
	if (res->how == DV_DOQ_END_CONN_CLOSED)
		return;
	uslot_t *s = quic_slot(c, query);
	if (!s)
		return; /* answered (or released) already */
	dv_attempt_t *a = s->att;
	slot_release(c, (uint32_t)(s - c->slots));
	if (!a)
		return; /* an orphan: its fetch ended elsewhere */
	a->conn = NULL;
	dv_server_t *srv = c->server;
	dv_log_debug("worker %u: upstream %s: stream %lld ended without an "
		     "answer (%s, code %llu)",
		     srv->pool->index, srv->url.text, (long long)stream_id,
		     dv_doq_end_name(res->how),
		     (unsigned long long)res->app_code);
	attempt_fail(a, res->how == DV_DOQ_END_TIMEOUT);
}

static void quic_handshake_cb(void *app, uint64_t now)
{
	(void)now;
	dv_uconn_t *c = app;
	if (!c->q || c->q != c->q_in)
		return;
	dv_pool_t *p = c->server->pool;
	dv_doq_stats_t st;
	dv_doq_client_stats(c->q, &st);
	DV_STAT_INC(p->stats, doq_handshakes);
	if (st.resumed)
		DV_STAT_INC(p->stats, doq_resumed);
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms(p);
}

static const dv_doq_callbacks_t quic_callbacks = {
	.on_message = quic_message_cb,
	.on_end = quic_end_cb,
	.on_handshake = quic_handshake_cb,
};

/* Before driving the engine of `c`. */
static dv_doq_client_t *quic_enter(dv_uconn_t *c)
{
	c->q_in = c->q;
	return c->q;
}

/* After driving engine `q`: true (and `q` freed) if the connection was
 * closed meanwhile. */
static bool quic_closed_inside(dv_uconn_t *c, dv_doq_client_t *q)
{
	c->q_in = NULL;
	if (c->q == q)
		return false;
	dv_doq_client_free(q);
	return true;
}

/* Keep the session of the connection (once the server has sent a ticket)
 * for the server's next connection. */
static void quic_keep_session(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	if (!dv_doq_client_has_ticket(c->q))
		return;
	if (!s->qsession && !(s->qsession = malloc(DV_DOQ_SESSION_MAX)))
		return; /* resumption is an optimization */
	int n = dv_doq_client_session_save(c->q, s->qsession,
					   DV_DOQ_SESSION_MAX);
	if (n > 0) {
		s->qsession_len = (size_t)n;
		c->tls_saved = true;
	}
}

/* The engine ended the connection by itself: say why and close. */
static void quic_ended(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	dv_doq_close_t ci;
	dv_doq_client_close_info(c->q, &ci);
	char detail[sizeof(ci.local_error) + sizeof(ci.reason) + 64];
	char code[64];
	if (ci.local_error[0])
		snprintf(detail, sizeof(detail), "%s", ci.local_error);
	else if (ci.idle)
		snprintf(detail, sizeof(detail), "QUIC idle timeout");
	else
		snprintf(detail, sizeof(detail), "closed by the server: %s%s%s",
			 ci.application
				 ? (dv_doq_error_name(ci.code)
					    ? dv_doq_error_name(ci.code)
					    : "application error")
				 : dv_doq_transport_error_name(ci.code, code,
							       sizeof(code)),
			 ci.reason[0] ? ": " : "", ci.reason);
	char why[sizeof(detail) + DV_URL_NAME_MAX + 64];
	if (c->state == UC_OPEN) {
		bool clean = ci.idle || (ci.by_peer && ci.application &&
					 ci.code == DV_DOQ_NO_ERROR);
		snprintf(why, sizeof(why), "%s", detail);
		conn_close(c, !clean || c->busy > 0, why);
		return;
	}
	/* the handshake failed: 42..46 and 48 are the alerts of a
	 * certificate we refused */
	uint8_t al = ci.tls_alert;
	if ((al >= 42 && al <= 46) || al == 48)
		snprintf(why, sizeof(why),
			 "QUIC handshake failed: the certificate did not verify "
			 "for %s (%s)",
			 s->url.name, detail);
	else
		snprintf(why, sizeof(why), "QUIC handshake failed: %s", detail);
	/* once per outage, not once per connection attempt */
	if (server_usable(s))
		dv_log_warn("worker %u: upstream %s: %s", s->pool->index,
			    s->url.text, why);
	/* a session the server no longer likes must not be offered again */
	s->qsession_len = 0;
	conn_close(c, true, why);
}

/* Send the datagram in c->out: 1 when sent, 0 when the socket is full
 * (it stays in c->out, and the write watcher waits for room), or -1 when
 * the connection was closed (the socket failed: nobody there). */
static int quic_send(dv_uconn_t *c)
{
	for (;;) {
		if (send(c->fd, c->out, c->out_len, 0) >= 0) {
			c->out_len = 0;
			return 1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ev_io_start(c->server->pool->loop, &c->wio);
			return 0;
		}
		/* ENOBUFS and the like: a lost datagram, QUIC retransmits */
		if (errno == ENOBUFS || errno == ENOMEM) {
			c->out_len = 0;
			return 1;
		}
		conn_close(c, true, strerror(errno));
		return -1;
	}
}

/* Write what the engine has to send, then set the timer to its next
 * expiry.  Closes the connection when the engine has ended it. */
static void quic_flush(dv_uconn_t *c)
{
	struct ev_loop *loop = c->server->pool->loop;
	ev_io_stop(loop, &c->wio);
	/* a datagram held back by a full socket buffer goes first */
	int sent = c->out_len ? quic_send(c) : 1;
	for (unsigned budget = 64; sent > 0 && c->q; budget--) {
		if (!budget) {
			ev_io_start(loop, &c->wio); /* more next iteration */
			break;
		}
		void *ctx = NULL;
		dv_doq_client_t *q = quic_enter(c);
		int n = dv_doq_client_write(q, c->out, c->out_cap, &ctx,
					    quic_now());
		if (quic_closed_inside(c, q))
			return;
		if (n == 0)
			break;
		if (n < 0) {
			quic_ended(c);
			return;
		}
		c->out_len = (size_t)n;
		sent = quic_send(c);
	}
	if (sent < 0 || !c->q)
		return;
	uint64_t t = dv_doq_client_expiry(c->q), now = quic_now();
	ev_timer_stop(loop, &c->qtimer);
	if (t == UINT64_MAX)
		return;
	ev_timer_set(&c->qtimer, t > now ? (t - now) / 1e9 : 0., 0.);
	ev_timer_start(loop, &c->qtimer);
}

static void quic_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	dv_uconn_t *c = w->data;
	dv_pool_t *p = c->server->pool;
	for (int budget = 64; budget > 0 && c->q; budget--) {
		ssize_t n = recv(c->fd, p->rxbuf, sizeof(p->rxbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* ICMP unreachable: the server is not there */
			conn_close(c, true, strerror(errno));
			return;
		}
		c->last_rx_ms = now_ms(p);
		dv_doq_client_t *q = quic_enter(c);
		int ret = dv_doq_client_read(q, &c->qpath, p->rxbuf, (size_t)n,
					     quic_now());
		if (quic_closed_inside(c, q))
			return;
		if (ret < 0) {
			/* the CONNECTION_CLOSE it may want to send first */
			quic_flush(c);
			if (c->q)
				quic_ended(c);
			return;
		}
	}
	if (!c->q)
		return;
	if (c->state == UC_OPEN && !c->tls_saved)
		quic_keep_session(c);
	quic_flush(c);
}

static void quic_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	quic_flush(w->data);
}

static void quic_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dv_uconn_t *c = t->data;
	if (!c->q)
		return;
	dv_doq_client_t *q = quic_enter(c);
	int ret = dv_doq_client_expire(q, quic_now());
	if (quic_closed_inside(c, q))
		return;
	quic_flush(c);
	if (ret < 0 && c->q)
		quic_ended(c);
}

/* Open the QUIC connection of `c`: socket, engine, first Initial.  0, or
 * a negative error with the connection CLOSED (a refused one counted). */
static int quic_connect(dv_uconn_t *c)
{
	dv_server_t *s = c->server;
	dv_pool_t *p = s->pool;
	const dv_config_t *cfg = p->cfg;
	int ret;
	int fd = socket(s->url.addr.ss_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&s->url.addr, s->url.addr_len) < 0)
		goto fail_refused;
	dv_doq_path_t *path = &c->qpath;
	memset(path, 0, sizeof(*path));
	path->local_len = sizeof(path->local);
	if (getsockname(fd, (struct sockaddr *)&path->local,
			&path->local_len) < 0)
		goto fail_refused;
	memcpy(&path->remote, &s->url.addr, s->url.addr_len);
	path->remote_len = s->url.addr_len;
	path->ctx = c;
	dv_doq_config_t qc = {
		.tls = p->quic_tls,
		.name = s->url.name,
		.session = s->qsession_len ? s->qsession : NULL,
		.session_len = s->qsession_len,
		.query_timeout = (uint64_t)cfg->query_timeout_ms * 1000000u,
		.handshake_timeout = (uint64_t)cfg->query_timeout_ms * 1000000u,
		/* past the pool's own idle close, which counts it */
		.idle_timeout = cfg->upstream_idle_timeout_ms
					? ((uint64_t)cfg->upstream_idle_timeout_ms +
					   1000) * 1000000u
					: 0,
	};
	char err[256];
	c->q = dv_doq_client_new(&qc, &quic_callbacks, c, path, quic_now(),
				 err, sizeof(err));
	if (!c->q) {
		dv_log_warn("worker %u: upstream %s: %s", p->index,
			    s->url.text, err);
		s->qsession_len = 0; /* maybe it did not like the session */
		ret = -ENOMEM;
		goto fail;
	}
	c->fd = fd;
	ev_io_set(&c->rio, fd, EV_READ);
	ev_io_set(&c->wio, fd, EV_WRITE);
	DV_STAT_INC(p->stats, upstream_connects);
	USTAT_INC(s, connects);
	c->state = UC_HANDSHAKE;
	c->tls_saved = false;
	c->last_rx_ms = now_ms(p);
	ev_io_start(p->loop, &c->rio);
	quic_flush(c); /* the Initial */
	return c->state == UC_CLOSED ? DV_EUPSTREAM : 0;

fail_refused:
	ret = -errno;
	server_refused(s);
fail:
	close(fd);
	return ret;
}

/* conn_close: end the engine (a CONNECTION_CLOSE to the server unless it
 * is over already) and keep the session of a connection that was open. */
static void quic_stop(dv_uconn_t *c, bool was_open)
{
	dv_doq_client_t *q = c->q;
	if (!q)
		return;
	ev_timer_stop(c->server->pool->loop, &c->qtimer);
	if (was_open)
		quic_keep_session(c);
	c->q = NULL; /* its callbacks are ignored from now on */
	if (c->q_in == q)
		return; /* being driven: the driver frees it */
	c->q_in = q;
	void *ctx = NULL;
	int n = dv_doq_client_close(q, DV_DOQ_NO_ERROR, c->out, c->out_cap,
				    &ctx, quic_now());
	if (n > 0)
		(void)send(c->fd, c->out, (size_t)n, 0);
	c->q_in = NULL;
	dv_doq_client_free(q);
}

/* Queue `msg` for slot `slot` as a new stream, with id 0. */
static int quic_send_query(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			   size_t len)
{
	uint8_t buf[DV_FETCH_QWIRE_MAX];
	if (!c->q)
		return DV_ECLOSED;
	if (len > sizeof(buf) || len < DV_DNS_HDR)
		return -EINVAL;
	memcpy(buf, msg, len);
	dv_put16(buf, 0);
	uslot_t *s = &c->slots[slot];
	uint64_t tag = (++c->qseq << 16) | s->id;
	int ret = dv_doq_client_submit(c->q, buf, len, 0, 0,
				       (void *)(uintptr_t)tag);
	if (ret < 0)
		return ret;
	s->qtag = tag;
	return 0;
}

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
			conn_close(c, true, strerror(errno));
			return;
		}
		c->last_rx_ms = now_ms(p);
		handle_answer(c, p->rxbuf, (size_t)n);
	}
}

/* ---- the pool ---- */

/* Release the orphaned ids of `c` older than `max_age_ms`: their answers
 * are not coming (the server dropped the queries). */
static void conn_reclaim_orphans(dv_uconn_t *c, uint64_t now,
				 uint64_t max_age_ms)
{
	for (uint32_t i = 0; i < c->n_slots && c->orphans; i++) {
		uslot_t *sl = &c->slots[i];
		if (sl->orphan && now - sl->sent_ms >= max_age_ms)
			slot_release(c, i);
	}
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_pool_t *p = t->data;
	const dv_config_t *cfg = p->cfg;
	uint64_t now = now_ms(p);
	uint64_t orphan_age = 2 * (uint64_t)cfg->query_timeout_ms;
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		dv_server_t *s = &p->servers[i];
		for (unsigned j = 0; j < s->n_tcp; j++) {
			dv_uconn_t *c = &s->tcp[j];
			if (c->orphans)
				conn_reclaim_orphans(c, now, orphan_age);
			if (cfg->upstream_idle_timeout_ms &&
			    c->state == UC_OPEN && c->busy == 0 &&
			    c->out_len == c->out_off &&
			    now - c->last_rx_ms >= cfg->upstream_idle_timeout_ms) {
				USTAT_INC(s, idle_closed);
				conn_close(c, false, "idle");
			}
		}
	}
}

static int server_init(dv_pool_t *p, dv_server_t *s, const dv_url_t *url,
		       bool fallback)
{
	const dv_config_t *cfg = p->cfg;
	s->pool = p;
	s->url = *url;
	s->fallback = fallback;
	dv_health_init(&s->health);
	server_publish(s);
	ev_init(&s->probe_timer, probe_cb);
	s->probe_timer.data = s;
	s->probe = calloc(1, sizeof(*s->probe));
	if (!s->probe)
		return -ENOMEM;
	s->probe->pool = p;
	s->probe->probe = s;
	s->probe->ede = 0xffff;
	/* QUIC: one connection carries every query as its own stream */
	bool quic = url->scheme == DV_SCHEME_QUIC;
	s->n_tcp = quic ? 1 : cfg->upstream_connections;
	s->tcp = calloc(s->n_tcp, sizeof(*s->tcp));
	if (!s->tcp)
		return -ENOMEM;
	for (unsigned i = 0; i < s->n_tcp; i++) {
		dv_uconn_t *c = &s->tcp[i];
		if (conn_init(c, s, false, cfg->upstream_max_inflight))
			return -ENOMEM;
		ev_init(&c->rio, quic ? quic_read_cb : tcp_read_cb);
		ev_init(&c->wio, quic ? quic_write_cb : tcp_write_cb);
		c->rio.data = c->wio.data = c;
		if (!quic)
			continue;
		ev_init(&c->qtimer, quic_timer_cb);
		c->qtimer.data = c;
		free(c->in); /* datagrams are read into the pool's rxbuf */
		c->in = NULL;
		c->out = malloc(QUIC_PKT_MAX); /* the datagram being written */
		if (!c->out)
			return -ENOMEM;
		c->out_cap = QUIC_PKT_MAX;
	}
	if (url->scheme == DV_SCHEME_UDP) {
		s->udp = calloc(1, sizeof(*s->udp));
		if (!s->udp ||
		    conn_init(s->udp, s, true, cfg->upstream_max_inflight))
			return -ENOMEM;
		ev_init(&s->udp->rio, udp_read_cb);
		s->udp->rio.data = s->udp;
	}
	return 0;
}

dv_pool_t *dv_pool_create(const dv_pool_env_t *env, const dv_config_t *cfg,
			  const dv_pool_report_t *report)
{
	dv_pool_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = env->loop;
	p->stats = env->stats;
	p->index = env->index;
	p->cfg = cfg;
	p->report = report;
	p->n_local = cfg->n_upstream;
	p->n_fallback = cfg->n_fallback;
	for (int fb = 0; fb < 2; fb++)
		p->hconf[fb] = (dv_health_conf_t){
			.down_after = cfg->down_after_failures,
			.degraded_failures = cfg->degraded_failures,
			.slow_p95_ms = fb ? 0 : cfg->slow_p95_ms,
		};
	/* the probe: PROBE-NAME NS, RD, no EDNS (id patched per attempt) */
	int n = dv_wire_name_from_text(p->probe_qwire + DV_DNS_HDR,
				       sizeof(p->probe_qwire) - DV_DNS_HDR - 4,
				       cfg->probe_name);
	if (n < 0) /* the config loader checked it */
		n = dv_wire_name_from_text(p->probe_qwire + DV_DNS_HDR, 1, ".");
	dv_put16(p->probe_qwire + 2, DV_FLAG_RD);
	dv_put16(p->probe_qwire + 4, 1);
	dv_put16(p->probe_qwire + DV_DNS_HDR + n, DV_TYPE_NS);
	dv_put16(p->probe_qwire + DV_DNS_HDR + n + 2, DV_CLASS_IN);
	p->probe_qlen = (uint16_t)(DV_DNS_HDR + n + 4);
	ev_init(&p->tick, tick_cb);
	p->tick.data = p;
	p->servers = calloc(p->n_local + p->n_fallback, sizeof(*p->servers));
	if (!p->servers)
		goto fail;
	for (unsigned i = 0; i < p->n_local; i++)
		if (server_init(p, &p->servers[i], &cfg->upstream[i], false))
			goto fail;
	for (unsigned i = 0; i < p->n_fallback; i++)
		if (server_init(p, &p->servers[p->n_local + i],
				&cfg->fallback[i], true))
			goto fail;
	/* one client context per worker: no lock is shared between workers,
	 * and each keeps its own sessions (per server) */
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		if (p->servers[i].url.scheme != DV_SCHEME_TLS &&
		    p->servers[i].url.scheme != DV_SCHEME_HTTPS)
			continue;
		char err[600];
		p->tls = dv_tls_client_new(cfg->tls_ca, err, sizeof(err));
		if (!p->tls) {
			dv_log_error("tls:// and https:// upstreams: %s", err);
			goto fail;
		}
		break;
	}
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		if (p->servers[i].url.scheme != DV_SCHEME_QUIC)
			continue;
		char err[600];
		p->quic_tls = dv_quic_tls_client_ctx_new(cfg->tls_ca, "doq", err,
							 sizeof(err));
		if (!p->quic_tls) {
			dv_log_error("quic:// upstreams: %s", err);
			goto fail;
		}
		break;
	}
	return p;
fail:
	dv_pool_free(p);
	return NULL;
}

void dv_pool_start(dv_pool_t *p)
{
	/* the tick: idle connections and orphaned ids */
	unsigned idle = p->cfg->upstream_idle_timeout_ms;
	double every = idle && idle < 4000 ? idle / 4000.0 : 1.0;
	if (every < 0.05)
		every = 0.05;
	p->tick.repeat = every;
	ev_timer_again(p->loop, &p->tick);

	/* warm the local resolver connections */
	for (unsigned i = 0; i < p->n_local; i++) {
		dv_server_t *s = &p->servers[i];
		/* one HTTP/2 connection carries many streams: the others
		 * open when its streams are full (pick_conn) */
		unsigned n = s->url.scheme == DV_SCHEME_HTTPS ? 1 : s->n_tcp;
		for (unsigned j = 0; j < n; j++)
			if (s->tcp[j].state == UC_CLOSED &&
			    conn_connect(&s->tcp[j]) < 0)
				break;
	}
}

/* Stop the probe of `s` and free it (the pool is going). */
static void probe_destroy(dv_pool_t *p, dv_server_t *s)
{
	ev_timer_stop(p->loop, &s->probe_timer);
	if (!s->probe)
		return;
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (s->probe->att[i].job)
			attempt_detach(&s->probe->att[i]);
	free(s->probe);
	s->probe = NULL;
}

static void conn_destroy(dv_pool_t *p, dv_uconn_t *c)
{
	quic_stop(c, false); /* a CONNECTION_CLOSE: the server may forget us */
	dv_doh_client_free(c->h2);
	c->h2 = NULL;
	dv_tls_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0) {
		ev_io_stop(p->loop, &c->rio);
		ev_io_stop(p->loop, &c->wio);
		close(c->fd);
	}
	conn_deinit(c);
}

void dv_pool_free(dv_pool_t *p)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->tick);
	/* probes first: detaching an attempt touches its connection */
	for (unsigned i = 0; p->servers && i < p->n_local + p->n_fallback;
	     i++)
		probe_destroy(p, &p->servers[i]);
	for (unsigned i = 0; p->servers && i < p->n_local + p->n_fallback;
	     i++) {
		dv_server_t *s = &p->servers[i];
		for (unsigned j = 0; s->tcp && j < s->n_tcp; j++)
			conn_destroy(p, &s->tcp[j]);
		free(s->tcp);
		if (s->udp)
			conn_destroy(p, s->udp);
		free(s->udp);
		dv_tls_session_free(s->session);
		free(s->qsession);
	}
	free(p->servers);
	dv_tls_ctx_free(p->tls);
	dv_quic_tls_ctx_free(p->quic_tls);
	free(p);
}

void dv_pool_fetch_start(dv_pool_t *p, dv_fetch_t *f)
{
	struct ev_loop *loop = p->loop;
	const dv_config_t *cfg = p->cfg;
	dv_job_t *j = calloc(1, sizeof(*j));
	f->pool_job = j;
	if (!j) {
		p->report->fail(f, DV_EDE_OTHER, "out of memory");
		return;
	}
	j->pool = p;
	j->fetch = f;
	j->ede = 0xffff;
	memcpy(j->qwire, f->qwire, f->qlen);
	j->qlen = f->qlen;
	ev_timer_init(&j->deadline, deadline_cb, cfg->query_timeout_ms / 1000.0,
		      0.);
	j->deadline.data = j;
	ev_timer_start(loop, &j->deadline);
	ev_timer_init(&j->hedge, hedge_cb, cfg->hedge_delay_ms / 1000.0, 0.);
	j->hedge.data = j;
	dv_server_t *local = group_next(j, false);
	if (local && p->n_fallback && cfg->hedge_delay_ms &&
	    local->health.state == DV_HEALTH_DEGRADED) {
		/* slow or flaky: no point waiting for the hedge delay */
		DV_STAT_INC(p->stats, fallback_degraded);
		start_fallback(j);
	} else if (!local || (p->n_fallback && cfg->hedge_delay_ms == 0)) {
		if (p->n_fallback) {
			start_fallback(j);
		}
		if (!attempts_active(j)) {
			p->report->fail(f, DV_EDE_NETWORK_ERROR,
					"no upstream could answer");
			return;
		}
	} else if (p->n_fallback) {
		ev_timer_start(loop, &j->hedge);
	}
}

/* Stop the timers and attempts of `j`, and free it. */
static void job_free(dv_job_t *j)
{
	dv_pool_t *p = j->pool;
	ev_timer_stop(p->loop, &j->deadline);
	ev_timer_stop(p->loop, &j->hedge);
	for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++)
		if (j->att[i].job)
			attempt_detach(&j->att[i]);
	free(j);
}

void dv_pool_fetch_cancel(dv_pool_t *p, dv_fetch_t *f)
{
	(void)p;
	dv_job_t *j = f->pool_job;
	f->pool_job = NULL;
	if (j)
		job_free(j);
}

static void core_fetch_start(void *pool, dv_fetch_t *f)
{
	dv_pool_fetch_start(pool, f);
}

static void core_fetch_cancel(void *pool, dv_fetch_t *f)
{
	dv_pool_fetch_cancel(pool, f);
}

const struct dv_core_pool_ops dv_pool_core_ops = {
	.fetch_start = core_fetch_start,
	.fetch_cancel = core_fetch_cancel,
};

unsigned dv_pool_n_servers(const dv_pool_t *p)
{
	return p->n_local + p->n_fallback;
}

void dv_pool_stats_add(const dv_pool_t *p, unsigned i,
		       dv_upstream_stats_t *u)
{
	const dv_server_t *s = &p->servers[i];
	u->url = s->url.text;
	u->fallback = s->fallback;
	dv_stats_sum_upstream(&u->st, &s->st);
	unsigned state = __atomic_load_n(&s->pub_state, __ATOMIC_RELAXED);
	if (state >= DV_HEALTH_STATE_COUNT)
		state = DV_HEALTH_UP;
	u->n_state[state]++;
	if (state > (unsigned)u->state)
		u->state = (dv_health_state_t)state;
	uint64_t ewma = __atomic_load_n(&s->pub_ewma_us, __ATOMIC_RELAXED);
	if (ewma) {
		u->ewma_us += ewma;
		u->ewma_n++;
	}
	uint32_t p95 = __atomic_load_n(&s->pub_p95_ms, __ATOMIC_RELAXED);
	if (p95 > u->p95_ms)
		u->p95_ms = p95;
	u->samples += __atomic_load_n(&s->pub_samples, __ATOMIC_RELAXED);
}

void dv_pool_stats_finish(dv_upstream_stats_t *u)
{
	if (u->ewma_n)
		u->ewma_us /= u->ewma_n;
	u->ewma_n = 0;
}

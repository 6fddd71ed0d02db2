/*
 * DNS over QUIC (RFC 9250): the quic:// listener, on ngtcp2.
 *
 * Each worker has its own SO_REUSEPORT UDP socket and its own connections.
 * The kernel spreads new connections (long-header packets) by address
 * hash; every connection ID this worker issues starts with the worker's
 * index, and a classic BPF program on the socket group sends short-header
 * packets to the socket of the worker named by that byte, so a client that
 * changes address (NAT rebinding, a phone moving networks) still reaches
 * the worker that owns its connection.
 *
 * One query per client-initiated bidirectional stream: a 2-byte length, a
 * message with id 0, FIN; the answer goes back on the same stream with
 * FIN.  Anything else is DOQ_PROTOCOL_ERROR for the connection (RFC 9250
 * §4.3.3).  A stream the client resets cancels its query (the answer, when
 * it comes, is dropped).  Stream credit (doq.max-streams) is given back as
 * streams close, so one connection carries any number of queries.
 *
 * Address validation: tokens are keyed with a secret every worker shares.
 * doq.retry says when an Initial without a valid token gets a stateless
 * Retry; a completed handshake gets a NEW_TOKEN for next time.  0-RTT is
 * offered only with doq.early-data, and then only QUERY messages may use
 * it.
 *
 * Half-open connections (handshake in progress) are bounded per worker
 * and per client address, and evictable: see "the half-open bound".
 *
 * Lifetime: a stream lives until ngtcp2 closes it and its query (if any)
 * has been answered; a connection until ngtcp2 is done with it (closed,
 * drained, idle) and no query of it is still in the core.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "src/core/core.h"
#include "src/proto/doq_frame.h"
#include "src/core/errors.h"
#include "src/core/hs_limit.h"
#include "src/core/log.h"
#include "src/tls/quic_tls.h"
#include "src/daemon/transport.h"
#include "src/core/wire.h"
#include "src/daemon/worker.h"
#include "transports/sock.h"

#define SCID_LEN 18          /* byte 0: worker index; the rest random */
#define BATCH 32             /* datagrams per recvmmsg / sendmmsg */
#define RX_SIZE 2048         /* we advertise max_udp_payload_size = this */
#define TX_SIZE NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE
#define MAX_PKTS_PER_WRITE 64 /* then yield to other connections */
#define UNDER_LOAD_HANDSHAKES 32 /* doq.retry under-load: per worker */
#define HO_LOG_INTERVAL_MS 10000 /* evictions/refusals: one line per this */
#define RETRY_TOKEN_LIFETIME (10 * NGTCP2_SECONDS)
#define MSG_MAX DV_DOQ_MSG_MAX

typedef struct doq_listener doq_listener_t;
typedef struct doq_conn doq_conn_t;
typedef struct doq_stream doq_stream_t;
typedef struct ho_addr ho_addr_t;

struct doq_stream {
	doq_conn_t *c;
	int64_t id;
	dv_doq_frame_t in; /* the query as received */
	size_t credited;   /* of in.len, given back as connection credit */
	uint8_t *out; /* 2-byte length + answer, kept until acknowledged */
	size_t out_len, out_sent;
	bool submitted; /* the query went to the core */
	bool answered;  /* the reply hook ran */
	bool closed;    /* ngtcp2 is done with the stream */
	bool early;     /* data arrived in 0-RTT */
	uint64_t start_ms;
	doq_stream_t *tx_next, *tx_prev;  /* streams with output to write */
	doq_stream_t *rd_next, *rd_prev;  /* streams with an unfinished query */
	doq_stream_t *all_next, *all_prev; /* every stream of the connection */
	bool in_tx, in_rd;
};

typedef struct cid_entry {
	struct cid_entry *next;
	doq_conn_t *c;
	uint8_t len;
	uint8_t data[NGTCP2_MAX_CIDLEN];
} cid_entry_t;

typedef enum { QC_OPEN, QC_CLOSING, QC_DRAINING, QC_DEAD } qc_state_t;

struct doq_conn {
	doq_listener_t *l;
	ngtcp2_conn *qc;
	dv_quic_tls_t *tls;
	ngtcp2_crypto_conn_ref ref;
	qc_state_t state;
	bool handshake_done;
	/* while half-open (handshake in progress, state QC_OPEN): its
	 * client address, and its place in the listener's and the
	 * address's lists, oldest first */
	ho_addr_t *ho;
	doq_conn_t *ho_next, *ho_prev;
	doq_conn_t *ha_next, *ha_prev;
	ev_timer timer;
	struct sockaddr_storage local, peer;
	socklen_t local_len, peer_len;
	unsigned pending; /* queries in the core */
	doq_stream_t *tx_head, *tx_tail;
	doq_stream_t *rd_head, *rd_tail;
	doq_stream_t *streams;
	bool in_callback; /* inside ngtcp2: writing must wait */
	unsigned tx_pkts;  /* datagrams sent */
	bool buried;       /* on the listener's graveyard */
	bool closing;      /* counted in the listener's n_closing */
	bool ended;        /* conn_end() ran: not counted in n_conns */
	double close_after; /* s: the closing or draining period (3 PTO) */
	unsigned n_cids;
	cid_entry_t *cid_list[16];
	ngtcp2_connection_close_error ccerr;
	bool have_ccerr;
	uint8_t *close_pkt; /* CONNECTION_CLOSE, resent while closing */
	size_t close_len;
	unsigned close_rx; /* packets received while closing */
	doq_conn_t *next, *prev;
};

struct doq_listener {
	dv_worker_t *w;
	const dv_config_t *cfg;
	int fd;
	ev_io rio;
	bool wildcard; /* bound to 0.0.0.0 / ::: local address per packet */
	struct sockaddr_storage local;
	socklen_t local_len;
	bool draining;
	dv_quic_tls_ctx_t *tls;
	const uint8_t *secret;
	size_t secret_len;
	uint64_t hash_k0, hash_k1;
	cid_entry_t **buckets;
	unsigned mask;
	unsigned n_conns, n_handshaking;
	unsigned n_closing; /* of n_conns: closing or draining (no new work) */
	/* half-open connections (n_handshaking of them; see "the half-open
	 * bound") */
	unsigned hs_max, hs_per_addr;
	ho_addr_t **ho_buckets;
	unsigned ho_mask;
	ho_addr_t **ho_level; /* [n]: the addresses holding n, n >= 1 */
	unsigned ho_top;      /* no address holds more than this */
	doq_conn_t *ho_head, *ho_tail;
	uint64_t ho_log_at; /* ms: the next log line, no earlier */
	unsigned ho_log_evicted, ho_log_refused;
	/* failed connections logged (debug): this second, and left out */
	uint64_t fail_log_second;
	unsigned fail_log_n, fail_log_dropped;
	doq_conn_t *conns, *conns_tail; /* most recently active first */
	/* connections done with, freed at the end of the current callback
	 * (never inside ngtcp2's or our own call chains) */
	doq_conn_t *graveyard;
	bool in_batch; /* flush_tx at the end of the current callback */
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

static void conn_write(doq_conn_t *c);
static void conn_maybe_free(doq_conn_t *c);
static void stream_maybe_free(doq_stream_t *s);

#define STATS(c) (&(c)->l->w->stats)

/* ---- clocks ---- */

/* tokens carry wall-clock time (they outlive a connection) */
static ngtcp2_tstamp wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

/* ---- the connection ID table (per listener, keyed hash) ---- */

/* Keyed (peers choose connection IDs and addresses). */
static unsigned keyed_hash(const doq_listener_t *l, const uint8_t *d,
			   size_t len)
{
	uint64_t h = l->hash_k0;
	for (size_t i = 0; i < len; i++) {
		h ^= d[i];
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	h ^= l->hash_k1;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 32);
}

static unsigned cid_hash(const doq_listener_t *l, const uint8_t *d,
			 size_t len)
{
	return keyed_hash(l, d, len) & l->mask;
}

static doq_conn_t *cid_find(doq_listener_t *l, const uint8_t *d, size_t len)
{
	for (cid_entry_t *e = l->buckets[cid_hash(l, d, len)]; e; e = e->next)
		if (e->len == len && memcmp(e->data, d, len) == 0)
			return e->c;
	return NULL;
}

static int cid_add(doq_conn_t *c, const uint8_t *d, size_t len)
{
	doq_listener_t *l = c->l;
	if (len > NGTCP2_MAX_CIDLEN ||
	    c->n_cids == sizeof(c->cid_list) / sizeof(c->cid_list[0]) ||
	    cid_find(l, d, len))
		return -1;
	cid_entry_t *e = malloc(sizeof(*e));
	if (!e)
		return -1;
	e->c = c;
	e->len = (uint8_t)len;
	memcpy(e->data, d, len);
	unsigned b = cid_hash(l, d, len);
	e->next = l->buckets[b];
	l->buckets[b] = e;
	c->cid_list[c->n_cids++] = e;
	return 0;
}

static void cid_remove(doq_conn_t *c, const uint8_t *d, size_t len)
{
	doq_listener_t *l = c->l;
	for (cid_entry_t **p = &l->buckets[cid_hash(l, d, len)]; *p;
	     p = &(*p)->next) {
		cid_entry_t *e = *p;
		if (e->c != c || e->len != len || memcmp(e->data, d, len))
			continue;
		*p = e->next;
		for (unsigned i = 0; i < c->n_cids; i++) {
			if (c->cid_list[i] == e) {
				c->cid_list[i] = c->cid_list[--c->n_cids];
				break;
			}
		}
		free(e);
		return;
	}
}

static void cid_remove_all(doq_conn_t *c)
{
	while (c->n_cids) {
		cid_entry_t *e = c->cid_list[c->n_cids - 1];
		cid_remove(c, e->data, e->len);
	}
}

/* ---- the half-open bound ---- */

/*
 * A connection is half-open from the Initial that creates it until its
 * handshake completes (or it starts closing).  Each costs ~93 KB (ngtcp2's
 * packet number spaces and buffers, the GnuTLS session) and a client that
 * answers Retry but never finishes can open them as fast as it can send
 * Initials, so per worker there are at most hs_max (doq.max-handshakes,
 * never more than doq.max-connections), and at most hs_per_addr from one
 * client address (doq.max-handshakes-per-address; IPv6 by /64, since one
 * host easily holds a whole /64).
 *
 * A new connection that finds the table (or the connection table) full
 * makes room: it evicts the oldest half-open connection of the address
 * holding the most (the oldest of all when every address holds one).  A
 * flood from a few addresses thus evicts itself, and a legitimate client,
 * whose handshake takes one round trip, is rarely the oldest.  An address
 * already at its own cap is refused instead: its own oldest would be the
 * victim anyway, and a refusal costs no TLS work.
 *
 * To find "the address holding the most" in O(1), each address with
 * half-open connections is on the list of its count, ho_level[n].
 */
struct ho_addr {
	ho_addr_t *next;             /* hash chain */
	ho_addr_t *lv_next, *lv_prev; /* on ho_level[n] */
	uint8_t key[9];              /* 4 + IPv4 address, or 6 + a /64 */
	unsigned n;                  /* its half-open connections */
	doq_conn_t *head, *tail;     /* ... oldest first */
};

static void ho_key(const struct sockaddr *sa, uint8_t key[9])
{
	memset(key, 0, 9);
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = 4;
			memcpy(key + 1, a->s6_addr + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
		}
		return;
	}
	key[0] = 4;
	memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
}

static const char *ho_key_text(const uint8_t key[9], char *buf, size_t cap)
{
	if (key[0] == 4) {
		inet_ntop(AF_INET, key + 1, buf, (socklen_t)cap);
		return buf;
	}
	uint8_t a[16] = {0};
	memcpy(a, key + 1, 8);
	inet_ntop(AF_INET6, a, buf, (socklen_t)cap);
	size_t n = strlen(buf);
	snprintf(buf + n, cap - n, "/64");
	return buf;
}

static ho_addr_t *ho_find(const doq_listener_t *l, const uint8_t key[9])
{
	for (ho_addr_t *a = l->ho_buckets[keyed_hash(l, key, 9) & l->ho_mask];
	     a; a = a->next)
		if (memcmp(a->key, key, 9) == 0)
			return a;
	return NULL;
}

static void ho_level_unlink(doq_listener_t *l, ho_addr_t *a)
{
	if (a->lv_prev)
		a->lv_prev->lv_next = a->lv_next;
	else
		l->ho_level[a->n] = a->lv_next;
	if (a->lv_next)
		a->lv_next->lv_prev = a->lv_prev;
	a->lv_next = a->lv_prev = NULL;
}

static void ho_level_link(doq_listener_t *l, ho_addr_t *a)
{
	a->lv_prev = NULL;
	a->lv_next = l->ho_level[a->n];
	if (a->lv_next)
		a->lv_next->lv_prev = a;
	l->ho_level[a->n] = a;
	if (a->n > l->ho_top)
		l->ho_top = a->n;
}

static void ho_gauge(doq_listener_t *l)
{
	dv_stats_t *st = &l->w->stats;
	DV_STAT_SET(st, doq_half_open, l->n_handshaking);
	if (l->n_handshaking > st->doq_half_open_peak)
		DV_STAT_SET(st, doq_half_open_peak, l->n_handshaking);
}

/* `c` (new, QC_OPEN) is half-open, from `key`.  0 or -ENOMEM. */
static int ho_add(doq_conn_t *c, const uint8_t key[9])
{
	doq_listener_t *l = c->l;
	ho_addr_t *a = ho_find(l, key);
	if (a) {
		dv_require(a->n < l->hs_per_addr); /* the caller checked */
		ho_level_unlink(l, a);
	} else {
		a = calloc(1, sizeof(*a));
		if (!a)
			return -ENOMEM;
		memcpy(a->key, key, 9);
		unsigned b = keyed_hash(l, key, 9) & l->ho_mask;
		a->next = l->ho_buckets[b];
		l->ho_buckets[b] = a;
	}
	a->n++;
	ho_level_link(l, a);
	c->ho = a;
	c->ha_next = NULL;
	c->ha_prev = a->tail;
	if (a->tail)
		a->tail->ha_next = c;
	else
		a->head = c;
	a->tail = c;
	c->ho_next = NULL;
	c->ho_prev = l->ho_tail;
	if (l->ho_tail)
		l->ho_tail->ho_next = c;
	else
		l->ho_head = c;
	l->ho_tail = c;
	l->n_handshaking++;
	ho_gauge(l);
	return 0;
}

/* `c` is no longer half-open (handshake done, closing, or gone). */
/* The handshake of `c` is over (completed, `resumed` or not, or the
 * connection ended): it leaves the half-open table and the worker's
 * handshake admission. */
static void ho_remove(doq_conn_t *c, bool resumed)
{
	doq_listener_t *l = c->l;
	ho_addr_t *a = c->ho;
	if (!a)
		return;
	c->ho = NULL;
	if (c->ha_prev)
		c->ha_prev->ha_next = c->ha_next;
	else
		a->head = c->ha_next;
	if (c->ha_next)
		c->ha_next->ha_prev = c->ha_prev;
	else
		a->tail = c->ha_prev;
	if (c->ho_prev)
		c->ho_prev->ho_next = c->ho_next;
	else
		l->ho_head = c->ho_next;
	if (c->ho_next)
		c->ho_next->ho_prev = c->ho_prev;
	else
		l->ho_tail = c->ho_prev;
	c->ha_next = c->ha_prev = c->ho_next = c->ho_prev = NULL;
	ho_level_unlink(l, a);
	if (--a->n) {
		ho_level_link(l, a);
	} else {
		for (ho_addr_t **p = &l->ho_buckets[keyed_hash(l, a->key, 9) &
						    l->ho_mask];
		     *p; p = &(*p)->next) {
			if (*p == a) {
				*p = a->next;
				break;
			}
		}
		free(a);
	}
	while (l->ho_top && !l->ho_level[l->ho_top])
		l->ho_top--;
	l->n_handshaking--;
	ho_gauge(l);
	dv_hs_limit_end(l->w->hs_limit, (struct sockaddr *)&c->peer, resumed,
			dv_now_ms());
}

/* The half-open connection to evict: the oldest of the address holding
 * the most, or the oldest of all when each address holds one.  NULL when
 * there is none. */
static doq_conn_t *ho_victim(const doq_listener_t *l)
{
	if (l->ho_top >= 2)
		return l->ho_level[l->ho_top]->head;
	return l->ho_head;
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
	if (!l->in_batch)
		flush_tx(l);
}

/* ---- streams ---- */

static void tx_link(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (s->in_tx)
		return;
	s->in_tx = true;
	s->tx_next = NULL;
	s->tx_prev = c->tx_tail;
	if (c->tx_tail)
		c->tx_tail->tx_next = s;
	else
		c->tx_head = s;
	c->tx_tail = s;
}

static void tx_unlink(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (!s->in_tx)
		return;
	s->in_tx = false;
	if (s->tx_prev)
		s->tx_prev->tx_next = s->tx_next;
	else
		c->tx_head = s->tx_next;
	if (s->tx_next)
		s->tx_next->tx_prev = s->tx_prev;
	else
		c->tx_tail = s->tx_prev;
}

static void rd_unlink(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (!s->in_rd)
		return;
	s->in_rd = false;
	if (s->rd_prev)
		s->rd_prev->rd_next = s->rd_next;
	else
		c->rd_head = s->rd_next;
	if (s->rd_next)
		s->rd_next->rd_prev = s->rd_prev;
	else
		c->rd_tail = s->rd_prev;
}

static doq_stream_t *stream_new(doq_conn_t *c, int64_t id)
{
	doq_stream_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->c = c;
	s->id = id;
	s->start_ms = dv_worker_now_ms(c->l->w);
	/* unfinished queries, oldest first, for the read timeout */
	s->in_rd = true;
	s->rd_prev = c->rd_tail;
	if (c->rd_tail)
		c->rd_tail->rd_next = s;
	else
		c->rd_head = s;
	c->rd_tail = s;
	if (ngtcp2_conn_set_stream_user_data(c->qc, id, s) != 0) {
		rd_unlink(s);
		free(s);
		return NULL;
	}
	s->all_next = c->streams;
	if (c->streams)
		c->streams->all_prev = s;
	c->streams = s;
	return s;
}

/* Bytes received on `s` are buffered until its query is copied out or the
 * stream ends; only then does the connection's flow-control credit grow
 * again, so initial_max_data bounds what one connection can make us hold. */
static void stream_credit(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	if (c->qc && s->in.len > s->credited)
		ngtcp2_conn_extend_max_offset(c->qc, s->in.len - s->credited);
	s->credited = s->in.len;
}

static void stream_free(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	stream_credit(s);
	tx_unlink(s);
	rd_unlink(s);
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else
		c->streams = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	dv_doq_frame_free(&s->in);
	free(s->out);
	free(s);
}

static void stream_maybe_free(doq_stream_t *s)
{
	if (s->closed && !(s->submitted && !s->answered))
		stream_free(s);
}

/* ---- closing ---- */

/* Close the connection with an application (DoQ) error code. */
static void conn_set_app_error(doq_conn_t *c, uint64_t code,
			       const char *reason)
{
	if (c->have_ccerr)
		return;
	c->have_ccerr = true;
	ngtcp2_connection_close_error_set_application_error(
		&c->ccerr, code, (const uint8_t *)reason,
		reason ? strlen(reason) : 0);
}

static void conn_timer_update(doq_conn_t *c);

/*
 * Free ngtcp2's state and the TLS session (~90 KB, nearly all of a
 * connection) while the struct, its connection IDs and c->close_pkt stay.
 * Closing and draining need nothing else, and a peer that makes
 * handshakes fail (a wrong ALPN, say) at a thousand a second would
 * otherwise hold all of it for three PTOs each, uncounted.
 */
static void conn_release(doq_conn_t *c)
{
	if (!c->qc)
		return;
	ho_remove(c, false);
	/* streams still waiting for an answer stay until it comes */
	while (c->tx_head)
		tx_unlink(c->tx_head);
	ngtcp2_conn_del(c->qc); /* closes every stream: stream_close cb not
				   called here; conn_maybe_free frees them */
	c->qc = NULL;
	dv_quic_tls_free(c->tls);
	c->tls = NULL;
}

/* The connection takes no more work: closing (we sent CONNECTION_CLOSE)
 * or draining (the peer did).  Only the CONNECTION_CLOSE is kept. */
static void conn_set_ending(doq_conn_t *c, qc_state_t state)
{
	c->state = state;
	if (c->qc)
		c->close_after = 3.0 * (double)ngtcp2_conn_get_pto(c->qc) /
				 (double)NGTCP2_SECONDS;
	conn_release(c);
	if (!c->closing) {
		c->closing = true;
		c->l->n_closing++;
	}
}

/* Stop using the connection for anything but answering its remaining
 * packets with the CONNECTION_CLOSE, for three PTOs (RFC 9000 §10.2). */
static void conn_close(doq_conn_t *c)
{
	if (c->state != QC_OPEN)
		return;
	doq_listener_t *l = c->l;
	if (!c->have_ccerr)
		conn_set_app_error(c, DV_DOQ_NO_ERROR, NULL);
	if (ngtcp2_conn_is_in_closing_period(c->qc) ||
	    ngtcp2_conn_is_in_draining_period(c->qc)) {
		conn_set_ending(c, QC_DRAINING);
		conn_timer_update(c);
		return;
	}
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	uint8_t *buf = tx_slot(l);
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
		c->qc, &ps.path, &pi, buf, TX_SIZE, &c->ccerr, dv_doq_now());
	conn_set_ending(c, QC_CLOSING);
	if (n > 0) {
		c->close_pkt = malloc((size_t)n);
		if (c->close_pkt) {
			memcpy(c->close_pkt, buf, (size_t)n);
			c->close_len = (size_t)n;
		}
		tx_commit(l, (size_t)n, (struct sockaddr *)&c->peer,
			  c->peer_len, (struct sockaddr *)&c->local);
	} else {
		c->state = QC_DEAD;
	}
	conn_timer_update(c);
	conn_maybe_free(c);
}

#define FAIL_LOG_PER_SECOND 10

/*
 * One debug line for a connection that failed (a handshake, a protocol
 * error): at most FAIL_LOG_PER_SECOND a second per listener, so a flood of
 * bad clients cannot flood the log; the next line says how many were left
 * out.
 */
static void conn_log_failure(doq_conn_t *c, const char *what, const char *why)
{
	doq_listener_t *l = c->l;
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
	dv_addr_format((const struct sockaddr *)&c->peer, peer, sizeof(peer));
	if (l->fail_log_dropped)
		dv_log_debug("quic: worker %u: %u more failed connections were "
			     "not logged",
			     l->w->index, l->fail_log_dropped);
	dv_log_debug("quic: worker %u: connection from %s %s: %s",
		     l->w->index, peer, what, why);
	l->fail_log_dropped = 0;
}

/* Close for a library error (ngtcp2's own transport error code). */
static void conn_close_liberr(doq_conn_t *c, int rv)
{
	if (!c->have_ccerr) {
		c->have_ccerr = true;
		if (rv == NGTCP2_ERR_CRYPTO) {
			uint8_t alert = ngtcp2_conn_get_tls_alert(c->qc);
			char why[128];
			snprintf(why, sizeof(why), "TLS alert %u (%s)", alert,
				 dv_quic_tls_alert_name(alert));
			conn_log_failure(c, c->handshake_done
						    ? "failed"
						    : "failed its handshake",
					 why);
			ngtcp2_connection_close_error_set_transport_error_tls_alert(
				&c->ccerr, alert, NULL, 0);
		} else {
			conn_log_failure(c, "closed on a QUIC error",
					 ngtcp2_strerror(rv));
			ngtcp2_connection_close_error_set_transport_error_liberr(
				&c->ccerr, rv, NULL, 0);
		}
	}
	DV_STAT_INC(STATS(c), doq_closed_error);
	conn_close(c);
}

static void conn_protocol_error(doq_conn_t *c, const char *why)
{
	if (!c->have_ccerr) {
		DV_STAT_INC(STATS(c), doq_protocol_errors);
		conn_log_failure(c, "closed with DOQ_PROTOCOL_ERROR", why);
	}
	conn_set_app_error(c, DV_DOQ_PROTOCOL_ERROR, why);
}

static void conn_unlink(doq_conn_t *c)
{
	doq_listener_t *l = c->l;
	if (c->prev)
		c->prev->next = c->next;
	else if (l->conns == c)
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (l->conns_tail == c)
		l->conns_tail = c->prev;
	c->next = c->prev = NULL;
}

static void conn_link_head(doq_conn_t *c)
{
	doq_listener_t *l = c->l;
	c->prev = NULL;
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	else
		l->conns_tail = c;
	l->conns = c;
}

/* A packet arrived: the connection becomes the most recently active. */
static void conn_touch(doq_conn_t *c)
{
	if (c->l->conns != c) {
		conn_unlink(c);
		conn_link_head(c);
	}
}

/*
 * At doq.max-connections: the least recently active established
 * connection with no query in flight makes room for a new client, closed
 * with DOQ_EXCESSIVE_LOAD (RFC 9250 4.3).  False when every connection is
 * busy (then the new one is refused).
 */
static bool evict_idle(doq_listener_t *l)
{
	unsigned scanned = 0;
	for (doq_conn_t *c = l->conns_tail; c && scanned < 64;
	     c = c->prev, scanned++) {
		if (c->state != QC_OPEN || !c->handshake_done || c->pending)
			continue;
		conn_set_app_error(c, DV_DOQ_EXCESSIVE_LOAD,
				   "too many connections");
		DV_STAT_INC(&l->w->stats, doq_evicted);
		conn_close(c);
		return true;
	}
	return false;
}

/*
 * End a half-open connection at once: one CONNECTION_CLOSE with transport
 * error `code`, then its state is freed (at the end of the current
 * callback), without a closing period: a half-open connection being
 * evicted or refused most likely has nobody at the other end, and
 * evictions at the rate of a flood must not pile up closing connections.
 */
static void conn_abort(doq_conn_t *c, uint64_t code, const char *reason)
{
	doq_listener_t *l = c->l;
	ngtcp2_connection_close_error ccerr;
	ngtcp2_connection_close_error_set_transport_error(
		&ccerr, code, (const uint8_t *)reason, strlen(reason));
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	uint8_t *buf = tx_slot(l);
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
		c->qc, &ps.path, &pi, buf, TX_SIZE, &ccerr, dv_doq_now());
	if (n > 0)
		tx_commit(l, (size_t)n, (struct sockaddr *)&c->peer,
			  c->peer_len, (struct sockaddr *)&c->local);
	c->state = QC_DEAD;
	conn_maybe_free(c);
}

/* A line now and then while half-open connections are evicted or
 * refused (a flood would otherwise log thousands a second). */
static void ho_log(doq_listener_t *l)
{
	uint64_t now = dv_worker_now_ms(l->w);
	if (now < l->ho_log_at)
		return;
	l->ho_log_at = now + HO_LOG_INTERVAL_MS;
	char who[INET6_ADDRSTRLEN + 8] = "none";
	unsigned most = 0;
	if (l->ho_top) {
		ho_addr_t *a = l->ho_level[l->ho_top];
		ho_key_text(a->key, who, sizeof(who));
		most = a->n;
	}
	dv_log_warn("quic: worker %u: %u handshakes in progress "
		    "(doq.max-handshakes %u); %u half-open connections "
		    "evicted, %u refused at doq.max-handshakes-per-address "
		    "%u, since the last such line; most from %s (%u)",
		    l->w->index, l->n_handshaking, l->hs_max,
		    l->ho_log_evicted, l->ho_log_refused, l->hs_per_addr, who,
		    most);
	l->ho_log_evicted = l->ho_log_refused = 0;
}

/* Make room for a new connection by ending a half-open one (see "the
 * half-open bound").  False when there is none. */
static bool evict_half_open(doq_listener_t *l)
{
	doq_conn_t *c = ho_victim(l);
	if (!c)
		return false;
	DV_STAT_INC(&l->w->stats, doq_handshakes_evicted);
	l->ho_log_evicted++;
	ho_log(l);
	conn_abort(c, NGTCP2_CONNECTION_REFUSED, "too many handshakes");
	return true;
}

/* The connection is over for QUIC: forget its IDs and ngtcp2 state; the
 * struct stays while queries of it are in the core. */
static void conn_end(doq_conn_t *c)
{
	doq_listener_t *l = c->l;
	if (c->ended)
		return;
	c->ended = true;
	c->state = QC_DEAD;
	ev_timer_stop(l->w->loop, &c->timer);
	cid_remove_all(c);
	conn_release(c);
	free(c->close_pkt);
	c->close_pkt = NULL;
	l->n_conns--;
	if (c->closing) {
		c->closing = false;
		l->n_closing--;
	}
}

static void conn_maybe_free(doq_conn_t *c)
{
	doq_listener_t *l = c->l;
	if (c->state != QC_DEAD)
		return;
	conn_end(c);
	/* streams without a pending query are freed now; the rest when the
	 * core answers (the reply hook sees the connection is gone) */
	for (doq_stream_t *s = c->streams, *next; s; s = next) {
		next = s->all_next;
		s->closed = true;
		if (c->pending == 0)
			stream_free(s);
		else
			stream_maybe_free(s);
	}
	if (c->pending == 0 && !c->buried) {
		conn_unlink(c);
		c->buried = true;
		c->next = l->graveyard;
		l->graveyard = c;
	}
}

static void reap(doq_listener_t *l)
{
	while (l->graveyard) {
		doq_conn_t *c = l->graveyard;
		l->graveyard = c->next;
		free(c);
	}
}

/* ---- timers ---- */

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

static void conn_timer_update(doq_conn_t *c)
{
	struct ev_loop *loop = c->l->w->loop;
	ngtcp2_tstamp now = dv_doq_now();
	double after;
	if (c->state == QC_CLOSING || c->state == QC_DRAINING) {
		after = c->close_after;
	} else {
		if (!c->qc)
			return;
		ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->qc);
		after = exp <= now ? 0.0 :
				     (double)(exp - now) / (double)NGTCP2_SECONDS;
		if (c->rd_head) {
			/* the oldest unfinished query's read deadline */
			uint64_t dl = c->rd_head->start_ms +
				      c->l->cfg->tcp_read_timeout_ms;
			uint64_t ms = dv_worker_now_ms(c->l->w);
			double d = dl <= ms ? 0.0 : (double)(dl - ms) / 1000.0;
			if (d < after)
				after = d;
		}
	}
	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, after, 0.0);
	ev_timer_start(loop, &c->timer);
}

/* Streams that started a query and did not finish it in time. */
static void reap_slow_streams(doq_conn_t *c)
{
	uint64_t now = dv_worker_now_ms(c->l->w);
	while (c->rd_head &&
	       c->rd_head->start_ms + c->l->cfg->tcp_read_timeout_ms <= now) {
		doq_stream_t *s = c->rd_head;
		rd_unlink(s);
		DV_STAT_INC(STATS(c), doq_stream_timeouts);
		/* the client never finished its query: stop both
		 * directions; its credit comes back when the stream closes */
		ngtcp2_conn_shutdown_stream(c->qc, s->id,
					    DV_DOQ_REQUEST_CANCELLED);
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	doq_conn_t *c = t->data;
	doq_listener_t *l = c->l;
	l->in_batch = true;
	if (c->state == QC_CLOSING || c->state == QC_DRAINING) {
		c->state = QC_DEAD;
		conn_maybe_free(c);
		goto out;
	}
	reap_slow_streams(c);
	int rv = ngtcp2_conn_handle_expiry(c->qc, dv_doq_now());
	if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
		/* silence on the other side: end without a word (and without
		 * a closing period) */
		if (rv == NGTCP2_ERR_IDLE_CLOSE) {
			DV_STAT_INC(&l->w->stats, doq_idle_closed);
		} else {
			DV_STAT_INC(&l->w->stats, doq_handshake_timeouts);
			conn_log_failure(c, "dropped", "handshake timeout");
		}
		c->state = QC_DEAD;
		conn_maybe_free(c);
		goto out;
	}
	if (rv != 0) {
		conn_close_liberr(c, rv);
		goto out;
	}
	conn_write(c);
out:
	l->in_batch = false;
	flush_tx(l);
	reap(l);
}

/* ---- writing ---- */

static void conn_write(doq_conn_t *c)
{
	doq_listener_t *l = c->l;
	if (c->state != QC_OPEN)
		return;
	if (c->have_ccerr) {
		conn_close(c);
		return;
	}
	ngtcp2_tstamp ts = dv_doq_now();
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	size_t max = ngtcp2_conn_get_max_tx_udp_payload_size(c->qc);
	if (max > TX_SIZE)
		max = TX_SIZE;
	for (unsigned pkts = 0; pkts < MAX_PKTS_PER_WRITE;) {
		doq_stream_t *s = c->tx_head;
		ngtcp2_vec v;
		size_t nv = 0;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		int64_t sid = -1;
		if (s) {
			sid = s->id;
			v.base = s->out + s->out_sent;
			v.len = s->out_len - s->out_sent;
			nv = 1;
			flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize ndata = -1;
		uint8_t *buf = tx_slot(l);
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(
			c->qc, &ps.path, &pi, buf, max, &ndata, flags, sid,
			nv ? &v : NULL, nv, ts);
		if (n < 0) {
			switch (n) {
			case NGTCP2_ERR_WRITE_MORE:
				if (!s) {
					conn_close_liberr(c, (int)n);
					return;
				}
				s->out_sent += (size_t)ndata;
				if (s->out_sent == s->out_len)
					tx_unlink(s);
				continue;
			case NGTCP2_ERR_STREAM_DATA_BLOCKED:
			case NGTCP2_ERR_STREAM_SHUT_WR:
			case NGTCP2_ERR_STREAM_NOT_FOUND:
				/* flow control (extend_max_stream_data
				 * relinks it) or the stream is gone */
				tx_unlink(s);
				continue;
			default:
				conn_close_liberr(c, (int)n);
				return;
			}
		}
		if (s && ndata >= 0) {
			s->out_sent += (size_t)ndata;
			if (s->out_sent == s->out_len)
				tx_unlink(s);
		}
		if (n == 0)
			break; /* nothing more to send now */
		tx_commit(l, (size_t)n, (struct sockaddr *)ps.path.remote.addr,
			  ps.path.remote.addrlen,
			  (struct sockaddr *)ps.path.local.addr);
		pkts++;
		c->tx_pkts++;
	}
	/* pacing starts once the handshake is done: before that ngtcp2 still
	 * assumes a 333 ms RTT and would hold the first answers back */
	if (ngtcp2_conn_get_handshake_completed(c->qc))
		ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
	conn_timer_update(c);
}

/* ---- queries ---- */

static void doq_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	doq_stream_t *s = q->conn;
	doq_conn_t *c = s->c;
	doq_listener_t *l = c->l;
	s->answered = true;
	c->pending--;
	if (c->state != QC_OPEN)
		s->closed = true;
	if (c->state != QC_OPEN || s->closed) {
		/* cancelled by the client, or the connection is gone */
		stream_maybe_free(s);
		conn_maybe_free(c);
		if (!l->in_batch)
			reap(l);
		return;
	}
	s->out = malloc(2 + len);
	if (!s->out) {
		ngtcp2_conn_shutdown_stream(c->qc, s->id, DV_DOQ_INTERNAL_ERROR);
	} else {
		dv_put16(s->out, (uint16_t)len);
		memcpy(s->out + 2, wire, len);
		s->out_len = 2 + len;
		tx_link(s);
	}
	if (c->in_callback)
		return; /* conn_read writes once ngtcp2 returns */
	bool batch = l->in_batch;
	l->in_batch = true;
	conn_write(c);
	if (l->draining && c->pending == 0)
		conn_close(c); /* its last answer is out: DOQ_NO_ERROR */
	l->in_batch = batch;
	if (!batch) {
		flush_tx(l);
		reap(l);
	}
}

/* A complete query on stream `s`: check it and hand it to the core. */
static int stream_query(doq_stream_t *s)
{
	doq_conn_t *c = s->c;
	const uint8_t *msg = dv_doq_frame_msg(&s->in);
	size_t len = dv_doq_frame_msg_len(&s->in);
	const char *why;
	rd_unlink(s);
	if (dv_doq_check_query(msg, len, s->early, &why) != 0) {
		conn_protocol_error(c, why);
		return -1;
	}
	dv_query_t *q = dv_query_new(c->l->w, msg, len);
	if (!q) {
		ngtcp2_conn_shutdown_stream(c->qc, s->id, DV_DOQ_INTERNAL_ERROR);
		return 0;
	}
	stream_credit(s);
	dv_doq_frame_release(&s->in);
	q->reply = doq_reply;
	q->conn = s;
	q->conn_tag = (uint64_t)s->id;
	q->transport = DV_SCHEME_QUIC;
	q->pad_block = DV_PAD_BLOCK;
	memcpy(&q->peer, &c->peer, c->peer_len);
	q->peer_len = c->peer_len;
	DV_STAT_INC(STATS(c), doq_streams);
	s->submitted = true;
	c->pending++;
	if (dv_core_submit(q) < 0) {
		/* not DNS (too short / a response): no answer will come */
		s->submitted = false;
		c->pending--;
		conn_protocol_error(c, "not a DNS query");
		return -1;
	}
	return 0;
}

/* ---- ngtcp2 callbacks ---- */

static int recv_stream_data_cb(ngtcp2_conn *qc, uint32_t flags,
			       int64_t stream_id, uint64_t offset,
			       const uint8_t *data, size_t datalen,
			       void *user_data, void *stream_user_data)
{
	(void)offset;
	doq_conn_t *c = user_data;
	doq_stream_t *s = stream_user_data;
	if (!ngtcp2_is_bidi_stream(stream_id) ||
	    ngtcp2_conn_is_local_stream(qc, stream_id)) {
		conn_protocol_error(c, "query on a non-client bidi stream");
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (!s) {
		s = stream_new(c, stream_id);
		if (!s) {
			conn_set_app_error(c, DV_DOQ_INTERNAL_ERROR, NULL);
			return NGTCP2_ERR_CALLBACK_FAILURE;
		}
	}
	if (flags & NGTCP2_STREAM_DATA_FLAG_EARLY)
		s->early = true;
	const char *why = NULL;
	switch (dv_doq_frame_feed(&s->in, data, datalen,
				  flags & NGTCP2_STREAM_DATA_FLAG_FIN, &why)) {
	case DV_DOQ_MORE:
	case DV_DOQ_DONE:
		return 0;
	case DV_DOQ_COMPLETE:
		/* answered as soon as it is whole (some clients FIN late) */
		return stream_query(s) < 0 ? NGTCP2_ERR_CALLBACK_FAILURE : 0;
	case DV_DOQ_EPROTO:
		conn_protocol_error(c, why);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	default:
		conn_set_app_error(c, DV_DOQ_INTERNAL_ERROR, NULL);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
}

static int acked_stream_data_offset_cb(ngtcp2_conn *qc, int64_t stream_id,
				       uint64_t offset, uint64_t datalen,
				       void *user_data, void *stream_user_data)
{
	(void)qc;
	(void)stream_id;
	(void)offset;
	(void)datalen;
	(void)user_data;
	(void)stream_user_data;
	return 0; /* answers are freed with their stream */
}

static int stream_close_cb(ngtcp2_conn *qc, uint32_t flags,
			   int64_t stream_id, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)flags;
	(void)app_error_code;
	doq_conn_t *c = user_data;
	doq_stream_t *s = stream_user_data;
	if (ngtcp2_is_bidi_stream(stream_id) &&
	    !ngtcp2_conn_is_local_stream(qc, stream_id))
		ngtcp2_conn_extend_max_streams_bidi(qc, 1); /* credit back */
	if (!s)
		return 0;
	if (s->submitted && !s->answered)
		DV_STAT_INC(STATS(c), doq_cancelled);
	s->closed = true;
	tx_unlink(s);
	rd_unlink(s);
	stream_maybe_free(s);
	return 0;
}

static int stream_reset_cb(ngtcp2_conn *qc, int64_t stream_id,
			   uint64_t final_size, uint64_t app_error_code,
			   void *user_data, void *stream_user_data)
{
	(void)final_size;
	(void)app_error_code;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	/* the client cancelled: no answer goes back (the stream closes
	 * once our side is shut too) */
	if (s) {
		rd_unlink(s);
		tx_unlink(s);
	}
	ngtcp2_conn_shutdown_stream_write(qc, stream_id,
					  DV_DOQ_REQUEST_CANCELLED);
	return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *qc, int64_t stream_id,
				  uint64_t app_error_code, void *user_data,
				  void *stream_user_data)
{
	(void)app_error_code;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	if (s)
		tx_unlink(s);
	ngtcp2_conn_shutdown_stream_read(qc, stream_id,
					 DV_DOQ_REQUEST_CANCELLED);
	return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *qc, int64_t stream_id,
				     uint64_t max_data, void *user_data,
				     void *stream_user_data)
{
	(void)qc;
	(void)stream_id;
	(void)max_data;
	(void)user_data;
	doq_stream_t *s = stream_user_data;
	if (s && s->out && s->out_sent < s->out_len && !s->closed)
		tx_link(s);
	return 0;
}

static int handshake_completed_cb(ngtcp2_conn *qc, void *user_data)
{
	doq_conn_t *c = user_data;
	doq_listener_t *l = c->l;
	c->handshake_done = true;
	bool resumed = dv_quic_tls_resumed(c->tls);
	ho_remove(c, resumed);
	DV_STAT_INC(&l->w->stats, doq_handshakes);
	if (resumed)
		DV_STAT_INC(&l->w->stats, doq_resumed);
	if (dv_quic_tls_early_data_accepted(c->tls))
		DV_STAT_INC(&l->w->stats, doq_early_data);
	(void)dv_quic_tls_send_ticket(c->tls);
	/* a token for the client's next connection: it skips Retry */
	uint8_t tok[NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN];
	ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
		tok, l->secret, l->secret_len, (struct sockaddr *)&c->peer,
		c->peer_len, wall_ns());
	if (n > 0)
		(void)ngtcp2_conn_submit_new_token(qc, tok, (size_t)n);
	return 0;
}

static void rand_cb(uint8_t *dest, size_t destlen,
		    const ngtcp2_rand_ctx *rand_ctx)
{
	(void)rand_ctx;
	while (destlen) {
		ssize_t n = getrandom(dest, destlen, 0);
		if (n <= 0)
			continue;
		dest += n;
		destlen -= (size_t)n;
	}
}

/* A new connection ID of ours: byte 0 names this worker (the socket
 * group's BPF program routes on it), the rest is random. */
static int make_cid(doq_listener_t *l, ngtcp2_cid *cid)
{
	cid->datalen = SCID_LEN;
	cid->data[0] = (uint8_t)l->w->index;
	if (getrandom(cid->data + 1, SCID_LEN - 1, 0) != SCID_LEN - 1)
		return -1;
	return 0;
}

static int get_new_connection_id_cb(ngtcp2_conn *qc, ngtcp2_cid *cid,
				    uint8_t *token, size_t cidlen,
				    void *user_data)
{
	(void)qc;
	(void)cidlen; /* always SCID_LEN: ngtcp2 asks for our own length */
	doq_conn_t *c = user_data;
	doq_listener_t *l = c->l;
	for (int tries = 0; tries < 4; tries++) {
		if (make_cid(l, cid) != 0)
			return NGTCP2_ERR_CALLBACK_FAILURE;
		if (cid_add(c, cid->data, cid->datalen) == 0)
			break;
		if (tries == 3)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    token, l->secret, l->secret_len, cid) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int remove_connection_id_cb(ngtcp2_conn *qc, const ngtcp2_cid *cid,
				   void *user_data)
{
	(void)qc;
	cid_remove(user_data, cid->data, cid->datalen);
	return 0;
}

static int path_validation_cb(ngtcp2_conn *qc, uint32_t flags,
			      const ngtcp2_path *path,
			      ngtcp2_path_validation_result res,
			      void *user_data)
{
	(void)qc;
	(void)flags;
	doq_conn_t *c = user_data;
	if (res != NGTCP2_PATH_VALIDATION_RESULT_SUCCESS)
		return 0;
	/* the client moved: answer it where it is now */
	memcpy(&c->peer, path->remote.addr, path->remote.addrlen);
	c->peer_len = path->remote.addrlen;
	DV_STAT_INC(STATS(c), doq_migrations);
	return 0;
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref)
{
	return ((doq_conn_t *)ref->user_data)->qc;
}

static const ngtcp2_callbacks server_callbacks = {
	.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
	.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	.handshake_completed = handshake_completed_cb,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = recv_stream_data_cb,
	.acked_stream_data_offset = acked_stream_data_offset_cb,
	.stream_close = stream_close_cb,
	.rand = rand_cb,
	.get_new_connection_id = get_new_connection_id_cb,
	.remove_connection_id = remove_connection_id_cb,
	.update_key = ngtcp2_crypto_update_key_cb,
	.path_validation = path_validation_cb,
	.stream_reset = stream_reset_cb,
	.extend_max_stream_data = extend_max_stream_data_cb,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.stream_stop_sending = stream_stop_sending_cb,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- accepting ---- */

static void send_retry(doq_listener_t *l, const ngtcp2_pkt_hd *hd,
		       const struct sockaddr *peer, socklen_t peer_len,
		       const struct sockaddr *local, size_t rx_len)
{
	ngtcp2_cid scid;
	if (make_cid(l, &scid) != 0)
		return;
	uint8_t tok[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
	ngtcp2_ssize tn = ngtcp2_crypto_generate_retry_token(
		tok, l->secret, l->secret_len, hd->version, peer, peer_len,
		&scid, &hd->dcid, wall_ns());
	if (tn < 0)
		return;
	/* never more than three times what the client sent (RFC 9000 §8) */
	size_t cap = rx_len * 3 < TX_SIZE ? rx_len * 3 : TX_SIZE;
	uint8_t *buf = tx_slot(l);
	ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, cap, hd->version,
						   &hd->scid, &scid, &hd->dcid,
						   tok, (size_t)tn);
	if (n <= 0)
		return;
	tx_commit(l, (size_t)n, peer, peer_len, local);
	DV_STAT_INC(&l->w->stats, doq_retries);
}

static void send_refuse(doq_listener_t *l, const ngtcp2_pkt_hd *hd,
			uint64_t code, const struct sockaddr *peer,
			socklen_t peer_len, const struct sockaddr *local)
{
	uint8_t *buf = tx_slot(l);
	ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
		buf, TX_SIZE, hd->version, &hd->scid, &hd->dcid, code, NULL, 0);
	if (n > 0)
		tx_commit(l, (size_t)n, peer, peer_len, local);
}

static void send_version_negotiation(doq_listener_t *l,
				     const ngtcp2_version_cid *vc,
				     const struct sockaddr *peer,
				     socklen_t peer_len,
				     const struct sockaddr *local)
{
	uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
	uint8_t unused;
	rand_cb(&unused, 1, NULL);
	uint8_t *buf = tx_slot(l);
	ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
		buf, TX_SIZE, unused, vc->scid, vc->scidlen, vc->dcid,
		vc->dcidlen, versions, 1);
	if (n > 0)
		tx_commit(l, (size_t)n, peer, peer_len, local);
}

/* `a`: the new client's address entry (NULL: no handshake from it).  Also
 * while the worker's per-address handshake caps are on: then only
 * addresses that proved they are real (a Retry round trip) are charged,
 * so nobody can spend another address's share with spoofed Initials. */
static bool under_load(const doq_listener_t *l, const ho_addr_t *a)
{
	return l->n_handshaking >= UNDER_LOAD_HANDSHAKES ||
	       l->n_handshaking >= l->hs_max ||
	       (a && a->n >= l->hs_per_addr) ||
	       dv_hs_limit_pressure(l->w->hs_limit, dv_now_ms()) ||
	       (uint64_t)(l->n_conns - l->n_closing) * 4 >=
		       (uint64_t)l->cfg->doq_max_connections * 3;
}

static doq_conn_t *conn_new(doq_listener_t *l, const ngtcp2_pkt_hd *hd,
			    const ngtcp2_cid *odcid, const uint8_t key[9],
			    const struct sockaddr *peer, socklen_t peer_len,
			    const struct sockaddr *local, socklen_t local_len)
{
	const dv_config_t *cfg = l->cfg;
	doq_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->l = l;
	memcpy(&c->peer, peer, peer_len);
	c->peer_len = peer_len;
	memcpy(&c->local, local, local_len);
	c->local_len = local_len;
	c->ref.get_conn = get_conn_cb;
	c->ref.user_data = c;
	ev_timer_init(&c->timer, timer_cb, 0.0, 0.0);
	c->timer.data = c;

	ngtcp2_cid scid;
	if (make_cid(l, &scid) != 0)
		goto fail;
	ngtcp2_settings settings;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = dv_doq_now();
	settings.token = hd->token;
	settings.max_tx_udp_payload_size = TX_SIZE;
	settings.handshake_timeout =
		(uint64_t)cfg->tls_handshake_timeout_ms * NGTCP2_MILLISECONDS;

	ngtcp2_transport_params params;
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_bidi = cfg->doq_max_streams;
	params.initial_max_streams_uni = 0;
	params.initial_max_stream_data_bidi_remote = MSG_MAX;
	params.initial_max_stream_data_bidi_local = 0;
	params.initial_max_stream_data_uni = 0;
	params.initial_max_data = (uint64_t)cfg->doq_max_streams * 4096 + MSG_MAX;
	params.max_idle_timeout =
		(uint64_t)cfg->doq_idle_timeout_ms * NGTCP2_MILLISECONDS;
	params.max_udp_payload_size = RX_SIZE;
	params.active_connection_id_limit = 4;
	params.stateless_reset_token_present = 1;
	if (ngtcp2_crypto_generate_stateless_reset_token(
		    params.stateless_reset_token, l->secret, l->secret_len,
		    &scid) != 0)
		goto fail;
	if (odcid) {
		params.original_dcid = *odcid;
		params.retry_scid = hd->dcid;
		params.retry_scid_present = 1;
	} else {
		params.original_dcid = hd->dcid;
	}
	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)&c->local,
			  .addrlen = c->local_len},
		.remote = {.addr = (ngtcp2_sockaddr *)&c->peer,
			   .addrlen = c->peer_len},
	};
	if (ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, &path,
				   hd->version, &server_callbacks, &settings,
				   &params, NULL, c) != 0)
		goto fail;
	c->tls = dv_quic_tls_server_new(l->tls, &c->ref);
	if (!c->tls) {
		ngtcp2_conn_del(c->qc);
		goto fail;
	}
	ngtcp2_conn_set_tls_native_handle(c->qc, dv_quic_tls_native(c->tls));
	/* our first ID and the one the client chose both reach us */
	if (cid_add(c, scid.data, scid.datalen) != 0 ||
	    cid_add(c, hd->dcid.data, hd->dcid.datalen) != 0 ||
	    ho_add(c, key) != 0) {
		cid_remove_all(c);
		dv_quic_tls_free(c->tls);
		ngtcp2_conn_del(c->qc);
		goto fail;
	}
	c->state = QC_OPEN;
	l->n_conns++;
	conn_link_head(c);
	DV_STAT_INC(&l->w->stats, doq_connections);
	return c;
fail:
	free(c);
	return NULL;
}

/* The token of an Initial: 1 valid (Retry: *odcid set), 0 none, -1 bad. */
static int check_token(doq_listener_t *l, const ngtcp2_pkt_hd *hd,
		       const struct sockaddr *peer, socklen_t peer_len,
		       ngtcp2_cid *odcid, bool *is_retry)
{
	*is_retry = false;
	if (hd->token.len == 0)
		return 0;
	ngtcp2_tstamp now = wall_ns();
	switch (hd->token.base[0]) {
	case NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY:
		*is_retry = true;
		return ngtcp2_crypto_verify_retry_token(
			       odcid, hd->token.base, hd->token.len,
			       l->secret, l->secret_len, hd->version, peer,
			       peer_len, &hd->dcid, RETRY_TOKEN_LIFETIME,
			       now) == 0 ?
			       1 :
			       -1;
	case NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR:
		return ngtcp2_crypto_verify_regular_token(
			       hd->token.base, hd->token.len, l->secret,
			       l->secret_len, peer, peer_len,
			       (uint64_t)l->cfg->doq_token_lifetime_s *
				       NGTCP2_SECONDS,
			       now) == 0 ?
			       1 :
			       -1;
	default:
		return -1;
	}
}

static void conn_read(doq_conn_t *c, const uint8_t *data, size_t len,
		      const struct sockaddr *peer, socklen_t peer_len,
		      const struct sockaddr *local, socklen_t local_len,
		      const ngtcp2_pkt_info *pi)
{
	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)local,
			  .addrlen = local_len},
		.remote = {.addr = (ngtcp2_sockaddr *)peer,
			   .addrlen = peer_len},
	};
	c->in_callback = true;
	int rv = ngtcp2_conn_read_pkt(c->qc, &path, pi, data, len, dv_doq_now());
	c->in_callback = false;
	if (rv != 0) {
		switch (rv) {
		case NGTCP2_ERR_DRAINING:
			conn_set_ending(c, QC_DRAINING);
			conn_timer_update(c);
			return;
		case NGTCP2_ERR_DROP_CONN:
			c->state = QC_DEAD;
			conn_maybe_free(c);
			return;
		case NGTCP2_ERR_CALLBACK_FAILURE:
			if (c->have_ccerr) {
				conn_close(c);
				return;
			}
			/* fall through */
		default:
			conn_close_liberr(c, rv);
			return;
		}
	}
	conn_write(c);
}

static void handle_packet(doq_listener_t *l, uint8_t *data, size_t len,
			  const struct sockaddr *peer, socklen_t peer_len,
			  const struct sockaddr *local, socklen_t local_len)
{
	dv_worker_t *w = l->w;
	ngtcp2_version_cid vc;
	int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SCID_LEN);
	if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
		if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
			send_version_negotiation(l, &vc, peer, peer_len, local);
		return;
	}
	if (rv != 0) {
		DV_STAT_INC(&w->stats, doq_bad_packets);
		return;
	}
	ngtcp2_pkt_info pi = {0};
	doq_conn_t *c = cid_find(l, vc.dcid, vc.dcidlen);
	if (c) {
		if (c->state == QC_CLOSING) {
			/* answer with the close again, less and less often */
			c->close_rx++;
			if (c->close_pkt &&
			    (c->close_rx & (c->close_rx - 1)) == 0) {
				uint8_t *buf = tx_slot(l);
				memcpy(buf, c->close_pkt, c->close_len);
				tx_commit(l, c->close_len, peer, peer_len,
					  local);
			}
			return;
		}
		if (c->state != QC_OPEN)
			return;
		conn_touch(c);
		conn_read(c, data, len, peer, peer_len, local, local_len, &pi);
		return;
	}
	if (!(data[0] & 0x80)) {
		/* a short header for a connection we do not have (gone, or
		 * owned elsewhere): drop it; the peer's idle timer ends it */
		DV_STAT_INC(&w->stats, doq_bad_packets);
		return;
	}
	ngtcp2_pkt_hd hd;
	if (ngtcp2_accept(&hd, data, len) != 0) {
		DV_STAT_INC(&w->stats, doq_bad_packets);
		return;
	}
	if (l->draining) {
		DV_STAT_INC(&w->stats, doq_refused);
		send_refuse(l, &hd, NGTCP2_CONNECTION_REFUSED, peer, peer_len,
			    local);
		return;
	}
	ngtcp2_cid odcid;
	bool is_retry;
	int tok = check_token(l, &hd, peer, peer_len, &odcid, &is_retry);
	if (tok < 0) {
		DV_STAT_INC(&w->stats, doq_token_bad);
		if (is_retry) {
			/* a Retry token must be good (RFC 9000 §8.1.2) */
			send_refuse(l, &hd, NGTCP2_INVALID_TOKEN, peer,
				    peer_len, local);
			return;
		}
		tok = 0; /* an old NEW_TOKEN: as if there were none */
		hd.token.base = NULL;
		hd.token.len = 0;
	} else if (tok > 0) {
		DV_STAT_INC(&w->stats, doq_token_ok);
	}
	uint8_t key[9];
	ho_key(peer, key);
	ho_addr_t *a = ho_find(l, key);
	if (tok == 0 &&
	    (l->cfg->doq_retry == DV_DOQ_RETRY_ALWAYS ||
	     (l->cfg->doq_retry == DV_DOQ_RETRY_UNDER_LOAD &&
	      under_load(l, a)))) {
		send_retry(l, &hd, peer, peer_len, local, len);
		return;
	}
	/* past the retry policy: from here on a full table makes room */
	if (a && a->n >= l->hs_per_addr) {
		DV_STAT_INC(&w->stats, doq_refused_address);
		l->ho_log_refused++;
		ho_log(l);
		send_refuse(l, &hd, NGTCP2_CONNECTION_REFUSED, peer, peer_len,
			    local);
		return;
	}
	a = NULL; /* an eviction may free it */
	if (l->n_handshaking >= l->hs_max)
		(void)evict_half_open(l);
	/* closing connections do not count: they take no new work */
	if (l->n_conns - l->n_closing >= l->cfg->doq_max_connections &&
	    !evict_half_open(l) && !evict_idle(l)) {
		DV_STAT_INC(&w->stats, doq_refused);
		send_refuse(l, &hd, NGTCP2_CONNECTION_REFUSED, peer, peer_len,
			    local);
		return;
	}
	/* the worker's handshake admission; in progress until ho_remove()
	 * (the handshake completed or the connection ended) */
	if (dv_hs_limit_admit(w->hs_limit, peer, dv_now_ms()) < 0) {
		DV_STAT_INC(&w->stats, doq_rate_limited);
		DV_STAT_INC(&w->stats, doq_refused);
		send_refuse(l, &hd, NGTCP2_CONNECTION_REFUSED, peer, peer_len,
			    local);
		return;
	}
	c = conn_new(l, &hd, tok > 0 && is_retry ? &odcid : NULL, key, peer,
		     peer_len, local, local_len);
	if (!c) {
		dv_hs_limit_end(w->hs_limit, peer, false, dv_now_ms());
		return;
	}
	conn_read(c, data, len, peer, peer_len, local, local_len, &pi);
	if (c->state == QC_OPEN && c->tx_pkts == 0) {
		/* a good Initial always gets an answer: this one did not
		 * decrypt; keep no state for it */
		DV_STAT_INC(&w->stats, doq_bad_packets);
		c->state = QC_DEAD;
		conn_maybe_free(c);
	}
}

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
	l->in_batch = true;
	for (int rounds = 0; rounds < 8; rounds++) {
		for (unsigned i = 0; i < BATCH; i++) {
			l->rx[i].msg_hdr.msg_namelen = sizeof(l->rx_addr[i]);
			l->rx[i].msg_hdr.msg_controllen = sizeof(l->rx_ctrl[i]);
		}
		int n = recvmmsg(l->fd, l->rx, BATCH, 0, NULL);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &l->rx[i].msg_hdr;
			if ((h->msg_flags & MSG_TRUNC) || l->rx[i].msg_len == 0) {
				DV_STAT_INC(&l->w->stats, doq_bad_packets);
				continue;
			}
			struct sockaddr_storage local;
			socklen_t local_len = rx_local(l, h, &local);
			handle_packet(l, l->rx_buf[i], l->rx[i].msg_len,
				      (struct sockaddr *)&l->rx_addr[i],
				      h->msg_namelen, (struct sockaddr *)&local,
				      local_len);
		}
		flush_tx(l);
		if (n < BATCH)
			break;
	}
	l->in_batch = false;
	flush_tx(l);
	reap(l);
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

static int doq_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	if (!w->shared->tls_doq)
		return -EINVAL;
	doq_listener_t *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	unsigned nb = 64;
	while (nb < w->cfg->doq_max_connections * 4 && nb < (1u << 20))
		nb <<= 1;
	l->buckets = calloc(nb, sizeof(*l->buckets));
	if (!l->buckets) {
		free(l);
		return -ENOMEM;
	}
	l->mask = nb - 1;
	const dv_config_t *cfg = w->cfg;
	l->hs_max = cfg->doq_max_handshakes < cfg->doq_max_connections
			    ? cfg->doq_max_handshakes
			    : cfg->doq_max_connections;
	l->hs_per_addr = cfg->doq_max_handshakes_per_address < l->hs_max
				 ? cfg->doq_max_handshakes_per_address
				 : l->hs_max;
	nb = 64;
	while (nb < l->hs_max * 2 && nb < (1u << 20))
		nb <<= 1;
	l->ho_buckets = calloc(nb, sizeof(*l->ho_buckets));
	l->ho_mask = nb - 1;
	l->ho_level = calloc(l->hs_per_addr + 1, sizeof(*l->ho_level));
	int fd = l->ho_buckets && l->ho_level ? dv_sock_listen(url, SOCK_DGRAM, 0)
					      : -ENOMEM;
	if (fd < 0) {
		free(l->ho_level);
		free(l->ho_buckets);
		free(l->buckets);
		free(l);
		return fd;
	}
	l->w = w;
	l->cfg = w->cfg;
	l->fd = fd;
	l->tls = w->shared->tls_doq;
	l->secret = w->shared->quic_secret;
	l->secret_len = sizeof(w->shared->quic_secret);
	uint64_t k[2];
	if (getrandom(k, sizeof(k), 0) == (ssize_t)sizeof(k)) {
		l->hash_k0 = k[0];
		l->hash_k1 = k[1];
	}
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
	l->draining = true;
	l->in_batch = true;
	for (doq_conn_t *c = l->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == QC_OPEN && c->pending == 0)
			conn_close(c);
	}
	l->in_batch = false;
	flush_tx(l);
	reap(l);
}

static void doq_close(dv_worker_t *w, void *state)
{
	doq_listener_t *l = state;
	ev_io_stop(w->loop, &l->rio);
	while (l->conns) {
		doq_conn_t *c = l->conns;
		c->state = QC_DEAD;
		c->pending = 0; /* the loop has ended: no answer will come */
		conn_maybe_free(c);
	}
	reap(l);
	close(l->fd);
	free(l->ho_level);
	free(l->ho_buckets);
	free(l->buckets);
	free(l);
}

static const dv_transport_t doq = {
	.name = "doq",
	.schemes = 1u << DV_SCHEME_QUIC,
	.listen = doq_listen,
	.stop = doq_stop,
	.close = doq_close,
};
DV_TRANSPORT_REGISTER(doq)

/*
 * DNS-over-QUIC server engine: what a datagram meets before it reaches a
 * connection.  The connection-ID table, the half-open bound, address
 * validation (Retry and NEW_TOKEN tokens, keyed with the secret every
 * worker shares), refusals and version negotiation; and, at the end, the
 * SNI a connection's ClientHello carried.  See doq_server.h.
 *
 * Every connection ID the server issues starts with cfg.worker; the
 * caller's socket group steers short-header packets on that byte, so a
 * client that changes address still reaches the server that owns its
 * connection.
 */
#include "src/proto/doq_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/proto/doq_server_int.h"

#define TX_SIZE DV_DOQ_SERVER_TX_MAX
#define UNDER_LOAD_HANDSHAKES 32 /* doq.retry under-load */
#define HO_LOG_INTERVAL_MS 10000 /* evictions/refusals: one line per this */
#define RETRY_TOKEN_LIFETIME (10 * NGTCP2_SECONDS)

/* ---- the connection ID table (keyed hash) ---- */

/* Keyed (peers choose connection IDs and addresses). */
static unsigned keyed_hash(const dv_doq_server_t *srv, const uint8_t *d,
			   size_t len)
{
	uint64_t h = srv->hash_k0;
	for (size_t i = 0; i < len; i++) {
		h ^= d[i];
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	h ^= srv->hash_k1;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 32);
}

static unsigned cid_hash(const dv_doq_server_t *srv, const uint8_t *d,
			 size_t len)
{
	return keyed_hash(srv, d, len) & srv->mask;
}

static doq_conn_t *cid_find(dv_doq_server_t *srv, const uint8_t *d,
			    size_t len)
{
	for (cid_entry_t *e = srv->buckets[cid_hash(srv, d, len)]; e;
	     e = e->next)
		if (e->len == len && memcmp(e->data, d, len) == 0)
			return e->c;
	return NULL;
}

int dv_doq_cid_add(doq_conn_t *c, const uint8_t *d, size_t len)
{
	dv_doq_server_t *srv = c->srv;
	if (len > NGTCP2_MAX_CIDLEN ||
	    c->n_cids == sizeof(c->cid_list) / sizeof(c->cid_list[0]) ||
	    cid_find(srv, d, len))
		return -EEXIST;
	cid_entry_t *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->c = c;
	e->len = (uint8_t)len;
	memcpy(e->data, d, len);
	unsigned b = cid_hash(srv, d, len);
	e->next = srv->buckets[b];
	srv->buckets[b] = e;
	c->cid_list[c->n_cids++] = e;
	return 0;
}

void dv_doq_cid_remove(doq_conn_t *c, const uint8_t *d, size_t len)
{
	dv_doq_server_t *srv = c->srv;
	for (cid_entry_t **p = &srv->buckets[cid_hash(srv, d, len)]; *p;
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

void dv_doq_cid_remove_all(doq_conn_t *c)
{
	while (c->n_cids) {
		cid_entry_t *e = c->cid_list[c->n_cids - 1];
		dv_doq_cid_remove(c, e->data, e->len);
	}
}

/* ---- the half-open bound ---- */

/*
 * A connection is half-open from the Initial that creates it until its
 * handshake completes (or it starts closing).  Each costs ~93 KB (ngtcp2's
 * packet number spaces and buffers, the GnuTLS session) and a client that
 * answers Retry but never finishes can open them as fast as it can send
 * Initials, so per server there are at most hs_max (doq.max-handshakes,
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

static ho_addr_t *ho_find(const dv_doq_server_t *srv, const uint8_t key[9])
{
	for (ho_addr_t *a =
		     srv->ho_buckets[keyed_hash(srv, key, 9) & srv->ho_mask];
	     a; a = a->next)
		if (memcmp(a->key, key, 9) == 0)
			return a;
	return NULL;
}

static void ho_level_unlink(dv_doq_server_t *srv, ho_addr_t *a)
{
	if (a->lv_prev)
		a->lv_prev->lv_next = a->lv_next;
	else
		srv->ho_level[a->n] = a->lv_next;
	if (a->lv_next)
		a->lv_next->lv_prev = a->lv_prev;
	a->lv_next = a->lv_prev = NULL;
}

static void ho_level_link(dv_doq_server_t *srv, ho_addr_t *a)
{
	a->lv_prev = NULL;
	a->lv_next = srv->ho_level[a->n];
	if (a->lv_next)
		a->lv_next->lv_prev = a;
	srv->ho_level[a->n] = a;
	if (a->n > srv->ho_top)
		srv->ho_top = a->n;
}

static void ho_gauge(dv_doq_server_t *srv)
{
	dv_stats_t *st = srv->st;
	DV_STAT_SET(st, doq_half_open, srv->n_handshaking);
	if (srv->n_handshaking > st->doq_half_open_peak)
		DV_STAT_SET(st, doq_half_open_peak, srv->n_handshaking);
}

/* `c` (new, QC_OPEN) is half-open, from `key`.  0 or -ENOMEM. */
int dv_doq_ho_add(doq_conn_t *c, const uint8_t key[9])
{
	dv_doq_server_t *srv = c->srv;
	ho_addr_t *a = ho_find(srv, key);
	if (a) {
		dv_require(a->n < srv->hs_per_addr); /* the caller checked */
		ho_level_unlink(srv, a);
	} else {
		a = calloc(1, sizeof(*a));
		if (!a)
			return -ENOMEM;
		memcpy(a->key, key, 9);
		unsigned b = keyed_hash(srv, key, 9) & srv->ho_mask;
		a->next = srv->ho_buckets[b];
		srv->ho_buckets[b] = a;
	}
	a->n++;
	ho_level_link(srv, a);
	c->ho = a;
	c->ha_next = NULL;
	c->ha_prev = a->tail;
	if (a->tail)
		a->tail->ha_next = c;
	else
		a->head = c;
	a->tail = c;
	c->ho_next = NULL;
	c->ho_prev = srv->ho_tail;
	if (srv->ho_tail)
		srv->ho_tail->ho_next = c;
	else
		srv->ho_head = c;
	srv->ho_tail = c;
	srv->n_handshaking++;
	ho_gauge(srv);
	return 0;
}

/* The handshake of `c` is over (completed, `resumed` or not, or the
 * connection ended): it leaves the half-open table and the worker's
 * handshake admission. */
void dv_doq_ho_remove(doq_conn_t *c, bool resumed)
{
	dv_doq_server_t *srv = c->srv;
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
		srv->ho_head = c->ho_next;
	if (c->ho_next)
		c->ho_next->ho_prev = c->ho_prev;
	else
		srv->ho_tail = c->ho_prev;
	c->ha_next = c->ha_prev = c->ho_next = c->ho_prev = NULL;
	ho_level_unlink(srv, a);
	if (--a->n) {
		ho_level_link(srv, a);
	} else {
		for (ho_addr_t **p = &srv->ho_buckets[keyed_hash(srv, a->key,
								 9) &
						      srv->ho_mask];
		     *p; p = &(*p)->next) {
			if (*p == a) {
				*p = a->next;
				break;
			}
		}
		free(a);
	}
	while (srv->ho_top && !srv->ho_level[srv->ho_top])
		srv->ho_top--;
	srv->n_handshaking--;
	ho_gauge(srv);
	if (srv->cfg.hs_limit)
		dv_hs_limit_end(srv->cfg.hs_limit,
				(struct sockaddr *)&c->peer, resumed, MS(srv));
}

/* The half-open connection to evict: the oldest of the address holding
 * the most, or the oldest of all when each address holds one.  NULL when
 * there is none. */
static doq_conn_t *ho_victim(const dv_doq_server_t *srv)
{
	if (srv->ho_top >= 2)
		return srv->ho_level[srv->ho_top]->head;
	return srv->ho_head;
}

/* A line now and then while half-open connections are evicted or
 * refused (a flood would otherwise log thousands a second). */
static void ho_log(dv_doq_server_t *srv)
{
	uint64_t now = MS(srv);
	if (now < srv->ho_log_at)
		return;
	srv->ho_log_at = now + HO_LOG_INTERVAL_MS;
	char who[INET6_ADDRSTRLEN + 8] = "none";
	unsigned most = 0;
	if (srv->ho_top) {
		ho_addr_t *a = srv->ho_level[srv->ho_top];
		ho_key_text(a->key, who, sizeof(who));
		most = a->n;
	}
	dv_log_warn("quic: worker %u: %u handshakes in progress "
		    "(doq.max-handshakes %u); %u half-open connections "
		    "evicted, %u refused at doq.max-handshakes-per-address "
		    "%u, since the last such line; most from %s (%u)",
		    srv->cfg.worker, srv->n_handshaking, srv->hs_max,
		    srv->ho_log_evicted, srv->ho_log_refused, srv->hs_per_addr,
		    who, most);
	srv->ho_log_evicted = srv->ho_log_refused = 0;
}

/* Make room for a new connection by ending a half-open one (see "the
 * half-open bound").  False when there is none. */
static bool evict_half_open(dv_doq_server_t *srv)
{
	doq_conn_t *c = ho_victim(srv);
	if (!c)
		return false;
	DV_STAT_INC(srv->st, doq_handshakes_evicted);
	srv->ho_log_evicted++;
	ho_log(srv);
	dv_doq_sconn_abort(c, NGTCP2_CONNECTION_REFUSED, "too many handshakes");
	return true;
}

/*
 * At doq.max-connections: the least recently active established
 * connection with no query in flight makes room for a new client, closed
 * with DOQ_EXCESSIVE_LOAD (RFC 9250 4.3).  False when every connection is
 * busy (then the new one is refused).
 */
static bool evict_idle(dv_doq_server_t *srv)
{
	unsigned scanned = 0;
	for (doq_conn_t *c = srv->conns_tail; c && scanned < 64;
	     c = c->prev, scanned++) {
		if (c->state != QC_OPEN || !c->handshake_done || c->pending)
			continue;
		dv_doq_sconn_app_error(c, DV_DOQ_EXCESSIVE_LOAD,
				       "too many connections");
		DV_STAT_INC(srv->st, doq_evicted);
		dv_doq_sconn_close(c);
		return true;
	}
	return false;
}

/* ---- accepting ---- */

static void tx_path(dv_doq_server_t *srv, ngtcp2_ssize n,
		 const dv_quic_path_t *path)
{
	if (n > 0)
		srv->cb.tx_send(srv->app, (size_t)n,
				(const struct sockaddr *)&path->remote,
				path->remote_len,
				(const struct sockaddr *)&path->local);
}

static void send_retry(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
		       const dv_quic_path_t *path, size_t rx_len)
{
	ngtcp2_cid scid;
	dv_quic_cid_new(&scid, DV_DOQ_SERVER_CID_LEN, (int)srv->cfg.worker);
	uint8_t tok[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
	ngtcp2_ssize tn = ngtcp2_crypto_generate_retry_token(
		tok, srv->cfg.secret, srv->cfg.secret_len, hd->version,
		(const struct sockaddr *)&path->remote, path->remote_len,
		&scid, &hd->dcid, srv->wall);
	if (tn < 0)
		return;
	/* never more than three times what the client sent (RFC 9000 §8) */
	size_t cap = rx_len * 3 < TX_SIZE ? rx_len * 3 : TX_SIZE;
	uint8_t *buf = srv->cb.tx_buf(srv->app);
	ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, cap, hd->version,
						   &hd->scid, &scid, &hd->dcid,
						   tok, (size_t)tn);
	if (n <= 0)
		return;
	tx_path(srv, n, path);
	DV_STAT_INC(srv->st, doq_retries);
}

static void send_refuse(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
			uint64_t code, const dv_quic_path_t *path)
{
	uint8_t *buf = srv->cb.tx_buf(srv->app);
	tx_path(srv,
	     ngtcp2_crypto_write_connection_close(buf, TX_SIZE, hd->version,
						  &hd->scid, &hd->dcid, code,
						  NULL, 0),
	     path);
}

static void send_version_negotiation(dv_doq_server_t *srv,
				     const ngtcp2_version_cid *vc,
				     const dv_quic_path_t *path)
{
	uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
	uint8_t unused;
	dv_quic_rand(&unused, 1);
	uint8_t *buf = srv->cb.tx_buf(srv->app);
	tx_path(srv,
	     ngtcp2_pkt_write_version_negotiation(
		     buf, TX_SIZE, unused, vc->scid, vc->scidlen, vc->dcid,
		     vc->dcidlen, versions, 1),
	     path);
}

/* `a`: the new client's address entry (NULL: no handshake from it).  Also
 * while the worker's per-address handshake caps are on: then only
 * addresses that proved they are real (a Retry round trip) are charged,
 * so nobody can spend another address's share with spoofed Initials. */
static bool under_load(const dv_doq_server_t *srv, const ho_addr_t *a)
{
	return srv->n_handshaking >= UNDER_LOAD_HANDSHAKES ||
	       srv->n_handshaking >= srv->hs_max ||
	       (a && a->n >= srv->hs_per_addr) ||
	       (srv->cfg.hs_limit &&
		dv_hs_limit_pressure(srv->cfg.hs_limit, MS(srv))) ||
	       (uint64_t)(srv->n_conns - srv->n_closing) * 4 >=
		       (uint64_t)srv->cfg.max_connections * 3;
}

/* A token checked with one secret: 1 valid (Retry: *odcid set), -1 bad. */
static int check_token_with(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
			    const dv_quic_path_t *path, ngtcp2_cid *odcid,
			    const uint8_t *secret, size_t secret_len)
{
	const struct sockaddr *peer = (const struct sockaddr *)&path->remote;
	switch (hd->token.base[0]) {
	case NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY:
		return ngtcp2_crypto_verify_retry_token(
			       odcid, hd->token.base, hd->token.len, secret,
			       secret_len, hd->version, peer, path->remote_len,
			       &hd->dcid, RETRY_TOKEN_LIFETIME, srv->wall) == 0 ?
			       1 :
			       -1;
	case NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR:
		return ngtcp2_crypto_verify_regular_token(
			       hd->token.base, hd->token.len, secret,
			       secret_len, peer, path->remote_len,
			       srv->cfg.token_lifetime_s * NGTCP2_SECONDS,
			       srv->wall) == 0 ?
			       1 :
			       -1;
	default:
		return -1;
	}
}

/* The token of an Initial: 1 valid (Retry: *odcid set), 0 none, -1 bad.
 * A token made with the previous secret of the key file (another replica
 * or this one before the file changed) is still good. */
static int check_token(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
		       const dv_quic_path_t *path, ngtcp2_cid *odcid,
		       bool *is_retry)
{
	if (hd->token.len == 0) {
		*is_retry = false;
		return 0;
	}
	*is_retry = hd->token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY;
	int ok = check_token_with(srv, hd, path, odcid, srv->cfg.secret,
				  srv->cfg.secret_len);
	if (ok < 0 && srv->key_has_prev)
		ok = check_token_with(srv, hd, path, odcid, srv->key_prev,
				      sizeof(srv->key_prev));
	return ok;
}

/* The secrets of cfg.keyfile, when it changed since the last look (an
 * atomic load per datagram; a copy under its lock after a change). */
static void keys_sync(dv_doq_server_t *srv)
{
	dv_keyfile_t *kf = srv->cfg.keyfile;
	if (!kf || dv_keyfile_generation(kf) == srv->key_gen)
		return;
	dv_keyfile_keys_t cur, prev;
	srv->key_gen = dv_keyfile_get(kf, &cur, &prev, &srv->key_has_prev);
	memcpy(srv->key_cur, cur.quic_token, sizeof(srv->key_cur));
	memcpy(srv->key_prev, prev.quic_token, sizeof(srv->key_prev));
	memset(&cur, 0, sizeof(cur));
	memset(&prev, 0, sizeof(prev));
}

/* A packet for a connection we have. */
static void conn_packet(doq_conn_t *c, const dv_quic_path_t *path,
			const uint8_t *data, size_t len)
{
	dv_doq_server_t *srv = c->srv;
	if (c->state == QC_CLOSING) {
		/* answer with the close again, less and less often */
		c->close_rx++;
		if (c->close_pkt && (c->close_rx & (c->close_rx - 1)) == 0) {
			uint8_t *buf = srv->cb.tx_buf(srv->app);
			memcpy(buf, c->close_pkt, c->close_len);
			tx_path(srv, (ngtcp2_ssize)c->close_len, path);
		}
		return;
	}
	if (c->state != QC_OPEN)
		return;
	dv_doq_sconn_touch(c);
	dv_doq_sconn_read(c, path, data, len);
}

/* An Initial that is not for a connection we have. */
static void accept_initial(dv_doq_server_t *srv, const dv_quic_path_t *path,
			   const uint8_t *data, size_t len)
{
	const struct sockaddr *peer = (const struct sockaddr *)&path->remote;
	ngtcp2_pkt_hd hd;
	if (ngtcp2_accept(&hd, data, len) != 0) {
		DV_STAT_INC(srv->st, doq_bad_packets);
		return;
	}
	if (srv->draining) {
		DV_STAT_INC(srv->st, doq_refused);
		send_refuse(srv, &hd, NGTCP2_CONNECTION_REFUSED, path);
		return;
	}
	ngtcp2_cid odcid;
	bool is_retry;
	int tok = check_token(srv, &hd, path, &odcid, &is_retry);
	if (tok < 0) {
		DV_STAT_INC(srv->st, doq_token_bad);
		if (is_retry) {
			/* a Retry token must be good (RFC 9000 §8.1.2) */
			send_refuse(srv, &hd, NGTCP2_INVALID_TOKEN, path);
			return;
		}
		tok = 0; /* an old NEW_TOKEN: as if there were none */
		hd.token.base = NULL;
		hd.token.len = 0;
	} else if (tok > 0) {
		DV_STAT_INC(srv->st, doq_token_ok);
	}
	uint8_t key[9];
	ho_key(peer, key);
	ho_addr_t *a = ho_find(srv, key);
	if (tok == 0 && (srv->cfg.retry == DV_DOQ_SERVER_RETRY_ALWAYS ||
			 (srv->cfg.retry == DV_DOQ_SERVER_RETRY_UNDER_LOAD &&
			  under_load(srv, a)))) {
		send_retry(srv, &hd, path, len);
		return;
	}
	/* past the retry policy: from here on a full table makes room */
	if (a && a->n >= srv->hs_per_addr) {
		DV_STAT_INC(srv->st, doq_refused_address);
		srv->ho_log_refused++;
		ho_log(srv);
		send_refuse(srv, &hd, NGTCP2_CONNECTION_REFUSED, path);
		return;
	}
	a = NULL; /* an eviction may free it */
	if (srv->n_handshaking >= srv->hs_max)
		(void)evict_half_open(srv);
	/* closing connections do not count: they take no new work */
	if (srv->n_conns - srv->n_closing >= srv->cfg.max_connections &&
	    !evict_half_open(srv) && !evict_idle(srv)) {
		DV_STAT_INC(srv->st, doq_refused);
		send_refuse(srv, &hd, NGTCP2_CONNECTION_REFUSED, path);
		return;
	}
	/* the worker's handshake admission; in progress until
	 * dv_doq_ho_remove() (the handshake completed or the connection
	 * ended) */
	if (srv->cfg.hs_limit &&
	    dv_hs_limit_admit(srv->cfg.hs_limit, peer, MS(srv)) < 0) {
		DV_STAT_INC(srv->st, doq_rate_limited);
		DV_STAT_INC(srv->st, doq_refused);
		send_refuse(srv, &hd, NGTCP2_CONNECTION_REFUSED, path);
		return;
	}
	doq_conn_t *c = dv_doq_sconn_new(
		srv, &hd, tok > 0 && is_retry ? &odcid : NULL, key, path);
	if (!c) {
		if (srv->cfg.hs_limit)
			dv_hs_limit_end(srv->cfg.hs_limit, peer, false,
					MS(srv));
		return;
	}
	dv_doq_sconn_read(c, path, data, len);
	if (c->state == QC_OPEN && c->tx_pkts == 0) {
		/* a good Initial always gets an answer: this one did not
		 * decrypt; keep no state for it */
		DV_STAT_INC(srv->st, doq_bad_packets);
		c->state = QC_DEAD;
		dv_doq_sconn_maybe_free(c);
	}
}

void dv_doq_server_read(dv_doq_server_t *srv, const dv_quic_path_t *path,
			const uint8_t *data, size_t len, uint64_t now,
			uint64_t wall)
{
	srv->wall = wall;
	keys_sync(srv);
	dv_doq_server_enter(srv, now);
	ngtcp2_version_cid vc;
	int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len,
					       DV_DOQ_SERVER_CID_LEN);
	if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
		if (len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
			send_version_negotiation(srv, &vc, path);
	} else if (rv != 0) {
		DV_STAT_INC(srv->st, doq_bad_packets);
	} else {
		doq_conn_t *c = cid_find(srv, vc.dcid, vc.dcidlen);
		if (c)
			conn_packet(c, path, data, len);
		else if (!(data[0] & 0x80))
			/* a short header for a connection we do not have
			 * (gone, or owned elsewhere): drop it; the peer's
			 * idle timer ends it */
			DV_STAT_INC(srv->st, doq_bad_packets);
		else
			accept_initial(srv, path, data, len);
	}
	dv_doq_server_leave(srv);
}

dv_doq_server_t *dv_doq_server_new(const dv_doq_server_config_t *cfg,
				   const dv_doq_server_callbacks_t *cb,
				   void *app)
{
	dv_doq_server_t *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->cfg = *cfg;
	if (cfg->secret_len > sizeof(srv->key_cur)) {
		free(srv);
		return NULL;
	}
	if (cfg->secret_len)
		memcpy(srv->key_cur, cfg->secret, cfg->secret_len);
	srv->cfg.secret = srv->key_cur;
	if (cfg->keyfile) {
		srv->cfg.secret_len = sizeof(srv->key_cur);
		keys_sync(srv);
	}
	srv->cb = *cb;
	srv->app = app;
	srv->st = cfg->stats;
	unsigned nb = 64;
	while (nb < cfg->max_connections * 4 && nb < (1u << 20))
		nb <<= 1;
	srv->buckets = calloc(nb, sizeof(*srv->buckets));
	srv->mask = nb - 1;
	srv->hs_max = cfg->max_handshakes < cfg->max_connections
			      ? cfg->max_handshakes
			      : cfg->max_connections;
	srv->hs_per_addr = cfg->max_handshakes_per_address < srv->hs_max
				   ? cfg->max_handshakes_per_address
				   : srv->hs_max;
	nb = 64;
	while (nb < srv->hs_max * 2 && nb < (1u << 20))
		nb <<= 1;
	srv->ho_buckets = calloc(nb, sizeof(*srv->ho_buckets));
	srv->ho_mask = nb - 1;
	srv->ho_level = calloc(srv->hs_per_addr + 1, sizeof(*srv->ho_level));
	srv->pages = dv_pages_new(DV_DOQ_PAGES_WARM);
	srv->mem = dv_quic_mem_init(&srv->mem_store, srv->pages);
	if (!srv->buckets || !srv->ho_buckets || !srv->ho_level ||
	    !srv->pages) {
		dv_doq_server_free(srv);
		return NULL;
	}
	uint64_t k[2];
	dv_quic_rand((uint8_t *)k, sizeof(k));
	srv->hash_k0 = k[0];
	srv->hash_k1 = k[1];
	return srv;
}

/* ---- what the ClientHello said ---- */

const struct sockaddr *dv_doq_sconn_peer(const doq_conn_t *c, socklen_t *len)
{
	*len = c->peer_len;
	return (const struct sockaddr *)&c->peer;
}

const char *dv_doq_sconn_sni(doq_conn_t *c)
{
	/* the TLS session goes when the connection ends; its queries stay */
	if (!c->sni[0] && c->q.tls) {
		const char *sni = dv_quic_tls_sni(c->q.tls);
		if (sni)
			snprintf(c->sni, sizeof(c->sni), "%s", sni);
	}
	return c->sni[0] ? c->sni : NULL;
}

const char *dv_doq_sconn_cert_id(doq_conn_t *c)
{
	return c->q.tls ? dv_quic_tls_cert_id(c->q.tls) : NULL;
}

const char *dv_doq_sconn_sni_refused(doq_conn_t *c)
{
	return c->q.tls ? dv_quic_tls_sni_refused(c->q.tls) : NULL;
}

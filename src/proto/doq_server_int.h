#pragma once
/*
 * The DoQ server engine's own structures, shared by its two files:
 * doq_server.c (connections, streams, ngtcp2's callbacks) and
 * doq_server_accept.c (the connection-ID table, the half-open bound, and
 * what happens to a datagram before it has a connection).  Not for use
 * outside them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/proto/doq_server.h"
#include "src/proto/quic.h"
#include "src/tls/sni.h"

typedef struct dv_doq_sconn doq_conn_t;
typedef struct dv_doq_sstream doq_stream_t;
typedef struct ho_addr ho_addr_t;

struct dv_doq_sstream {
	doq_conn_t *c;
	dv_doq_frame_t in; /* the query as received */
	size_t credited;   /* of in.len, given back as connection credit */
	/* 2-byte length + answer, kept until the stream is freed */
	dv_quic_out_t out;
	bool submitted; /* the query went up */
	bool answered;  /* ... and its answer came back */
	bool closed;    /* ngtcp2 is done with the stream */
	bool early;     /* data arrived in 0-RTT */
	uint64_t start; /* ns: its first bytes */
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

struct dv_doq_sconn {
	dv_doq_server_t *srv;
	dv_quic_conn_t q; /* q.conn NULL once released */
	qc_state_t state;
	bool handshake_done;
	/* while half-open (handshake in progress, state QC_OPEN): its
	 * client address, and its place in the server's and the address's
	 * lists, oldest first */
	ho_addr_t *ho;
	doq_conn_t *ho_next, *ho_prev;
	doq_conn_t *ha_next, *ha_prev;
	struct sockaddr_storage local, peer;
	socklen_t local_len, peer_len;
	unsigned pending; /* queries up, not answered */
	doq_stream_t *tx_head, *tx_tail;
	doq_stream_t *rd_head, *rd_tail;
	doq_stream_t *streams;
	bool in_callback; /* inside ngtcp2: writing must wait */
	bool mute;        /* max_unfinished exceeded: silent until idle */
	uint64_t credit;  /* streams the client may open in total so far */
	unsigned tx_pkts;  /* datagrams sent */
	bool buried;       /* on the server's graveyard */
	bool closing;      /* counted in the server's n_closing */
	bool ended;        /* conn_end() ran: not counted in n_conns */
	uint64_t close_after; /* ns: the closing or draining period (3 PTO) */
	unsigned n_cids;
	cid_entry_t *cid_list[16];
	/* the client's SNI host name ("": none yet), copied from the TLS
	 * session on first use (dv_doq_sconn_sni), since queries may
	 * outlive the session */
	char sni[DV_SNI_MAX + 1];
	ngtcp2_connection_close_error ccerr;
	bool have_ccerr;
	uint8_t *close_pkt; /* CONNECTION_CLOSE, resent while closing */
	size_t close_len;
	unsigned close_rx; /* packets received while closing */
	doq_conn_t *next, *prev;
	_Alignas(16) unsigned char user[]; /* the caller's conn_user_size */
};

/* freed ngtcp2 blocks a worker keeps resident for the next ones (see
 * src/core/pages.h): a stream's acknowledged-range skip list is an 8 KiB
 * block, allocated and freed for every query */
#define DV_DOQ_PAGES_WARM (2u << 20)

struct dv_doq_server {
	dv_doq_server_config_t cfg;
	dv_doq_server_callbacks_t cb;
	void *app;
	dv_stats_t *st;
	uint64_t now, wall; /* of the call going on */
	unsigned depth;     /* calls going on (answers come from inside) */
	bool draining;
	uint64_t hash_k0, hash_k1;
	/* the token and stateless-reset secret (cfg.secret points at
	 * key_cur) and, after a change of cfg.keyfile, the previous one */
	uint8_t key_cur[DV_KEYFILE_QUIC_TOKEN], key_prev[DV_KEYFILE_QUIC_TOKEN];
	bool key_has_prev;
	uint64_t key_gen; /* cfg.keyfile's generation of the copies */
	cid_entry_t **buckets;
	unsigned mask;
	unsigned n_conns, n_handshaking;
	unsigned n_closing; /* of n_conns: closing or draining (no new work) */
	/* half-open connections (n_handshaking of them; see "the half-open
	 * bound" in doq_server_accept.c) */
	unsigned hs_max, hs_per_addr;
	ho_addr_t **ho_buckets;
	unsigned ho_mask;
	ho_addr_t **ho_level; /* [n]: the addresses holding n, n >= 1 */
	unsigned ho_top;      /* no address holds more than this */
	doq_conn_t *ho_head, *ho_tail;
	uint64_t ho_log_at; /* ms: the next log line, no earlier */
	unsigned ho_log_evicted, ho_log_refused;
	doq_conn_t *conns, *conns_tail; /* most recently active first */
	/* connections done with, freed when the outermost call returns
	 * (never inside ngtcp2's or our own call chains) */
	doq_conn_t *graveyard;
	/* ngtcp2 allocates through these (dv_quic_mem_init); `mem` is NULL
	 * for its own malloc */
	dv_pages_t *pages;
	ngtcp2_mem mem_store;
	const ngtcp2_mem *mem;
};

#define MS(srv) ((srv)->now / 1000000u)

/* doq_server.c */
/* Every entry point: `now` for the call; connections done with are freed
 * when the outermost call leaves. */
void dv_doq_server_enter(dv_doq_server_t *srv, uint64_t now);
void dv_doq_server_leave(dv_doq_server_t *srv);
doq_conn_t *dv_doq_sconn_new(dv_doq_server_t *srv, const ngtcp2_pkt_hd *hd,
			     const ngtcp2_cid *odcid, const uint8_t key[9],
			     const dv_quic_path_t *path);
void dv_doq_sconn_read(doq_conn_t *c, const dv_quic_path_t *path,
		       const uint8_t *data, size_t len);
void dv_doq_sconn_close(doq_conn_t *c);
void dv_doq_sconn_abort(doq_conn_t *c, uint64_t code, const char *reason);
void dv_doq_sconn_maybe_free(doq_conn_t *c);
void dv_doq_sconn_link_head(doq_conn_t *c);
void dv_doq_sconn_touch(doq_conn_t *c);
void dv_doq_sconn_app_error(doq_conn_t *c, uint64_t code, const char *reason);

/* doq_server_limits.c */
/* Whether a new stream `id` of `c` goes past cfg.max_unfinished (then
 * `c` is muted). */
bool dv_doq_sconn_over_limit(doq_conn_t *c, int64_t id);
/* A client stream closed: its credit back, within cfg.max_streams_total. */
void dv_doq_sconn_credit_back(doq_conn_t *c);

/* doq_server_accept.c */
int dv_doq_cid_add(doq_conn_t *c, const uint8_t *d, size_t len);
void dv_doq_cid_remove(doq_conn_t *c, const uint8_t *d, size_t len);
void dv_doq_cid_remove_all(doq_conn_t *c);
int dv_doq_ho_add(doq_conn_t *c, const uint8_t key[9]);
void dv_doq_ho_remove(doq_conn_t *c, bool resumed);

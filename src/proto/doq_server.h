#pragma once
/*
 * DNS-over-QUIC server engine (RFC 9250), on ngtcp2 and the QUIC TLS seam:
 * every connection of one listener (a worker's socket), with its
 * handshake, streams, DoQ framing, idle and closing periods, address
 * validation tokens, stateless resets and the half-open bound.
 *
 * Like the client engine (doq_client.h) it owns no socket, no event loop
 * and no clock.  The caller feeds it datagrams with their path and the
 * time (dv_doq_server_read); datagrams come out through the tx_buf /
 * tx_send callbacks; each connection asks for its timer through on_timer
 * and the caller runs dv_doq_server_expire when it fires.  Complete DNS
 * queries go up through on_query with a stream handle, and their answers
 * come back through dv_doq_server_answer, at any later time: a stream
 * whose query is out stays (and its connection with it) until the answer
 * comes, even when the client reset it or the connection ended meanwhile.
 *
 * Times: `now` is CLOCK_MONOTONIC in nanoseconds (dv_doq_now()); tokens
 * outlive the process and are shared by replicas, so they carry `wall`
 * (CLOCK_REALTIME, nanoseconds).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "src/core/hs_limit.h"
#include "src/core/stats.h"
#include "src/proto/doq_frame.h"
#include "src/proto/quic.h"
#include "src/tls/keyfile.h"

typedef struct dv_doq_server dv_doq_server_t;
typedef struct dv_doq_sconn dv_doq_sconn_t;     /* one connection */
typedef struct dv_doq_sstream dv_doq_sstream_t; /* one query's stream */

/* The largest datagram the engine writes (tx_buf's size) */
#define DV_DOQ_SERVER_TX_MAX 1452
/* The largest datagram it takes: its max_udp_payload_size */
#define DV_DOQ_SERVER_RX_MAX 2048
/* Length of the connection IDs it issues; byte 0 is cid_prefix */
#define DV_DOQ_SERVER_CID_LEN 18

/* When an Initial without a valid token gets a Retry (doq.retry) */
typedef enum {
	DV_DOQ_SERVER_RETRY_ALWAYS,
	DV_DOQ_SERVER_RETRY_UNDER_LOAD,
	DV_DOQ_SERVER_RETRY_NEVER,
} dv_doq_server_retry_t;

typedef struct {
	dv_quic_tls_ctx_t *tls;  /* server context, ALPN "doq" */
	/* keys tokens and stateless resets: the same in every worker (and
	 * replica), so each can validate the others'; not copied */
	const uint8_t *secret;
	size_t secret_len;
	/* optional (tls.ticket-key-file): the secret comes from its keys
	 * instead, follows it when it changes, and tokens made with the
	 * previous secret still validate until the next change; must
	 * outlive the server */
	dv_keyfile_t *keyfile;
	unsigned worker;         /* first byte of every connection ID (the
				    socket group steers on it), and logs */
	unsigned max_connections;      /* doq.max-connections */
	unsigned max_handshakes;       /* doq.max-handshakes */
	unsigned max_handshakes_per_address;
	unsigned max_streams;          /* doq.max-streams */
	uint64_t idle_timeout_ms;      /* doq.idle-timeout */
	uint64_t handshake_timeout_ms; /* tls.handshake-timeout */
	uint64_t read_timeout_ms;      /* a started query must be whole by */
	uint64_t token_lifetime_s;     /* NEW_TOKEN tokens */
	dv_doq_server_retry_t retry;
	/* Limits some servers impose (Knot DNS 3.4's knotd: 10 and 1,024),
	 * for test servers that stand in for them; 0 = off, and the daemon
	 * leaves them off.  max_unfinished: a new stream whose id is that
	 * many streams or more past the oldest unfinished one (its answer
	 * not yet acknowledged) silences the connection: the stream is not
	 * taken and nothing more is sent or answered on it until it idles
	 * out, as knotd drops such a connection without a CONNECTION_CLOSE.
	 * max_streams_total: the stream credit (MAX_STREAMS) never grows
	 * past this many streams in the connection's life. */
	unsigned max_unfinished;
	uint64_t max_streams_total;
	dv_hs_limit_t *hs_limit; /* the worker's handshake admission */
	dv_stats_t *stats;       /* the doq_* counters */
	size_t conn_user_size;   /* bytes of dv_doq_sconn_user() */
} dv_doq_server_config_t;

typedef struct {
	/* a buffer of DV_DOQ_SERVER_TX_MAX bytes for the next datagram */
	uint8_t *(*tx_buf)(void *app);
	/* send the `len` bytes written to the last tx_buf to `peer`, from
	 * `local` */
	void (*tx_send)(void *app, size_t len, const struct sockaddr *peer,
			socklen_t peer_len, const struct sockaddr *local);
	/*
	 * A whole query (checked as RFC 9250 asks) on stream `s` of `c`.
	 * Return 0 when it was taken: dv_doq_server_answer(s, ...) then
	 * comes exactly once, maybe from inside this call; -ENOMEM to reset
	 * the stream with DOQ_INTERNAL_ERROR; another negative error when
	 * it is not a DNS query (the connection ends with
	 * DOQ_PROTOCOL_ERROR).  `msg` is only valid during the call.
	 */
	int (*on_query)(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
			int64_t stream_id, const uint8_t *msg, size_t len);
	/* run dv_doq_server_expire(c) at `at` (ns) */
	void (*on_timer)(void *app, dv_doq_sconn_t *c, uint64_t at);
	/* `c` is over: its timer must stop; it is freed later */
	void (*on_conn_end)(void *app, dv_doq_sconn_t *c);
	/* optional: `c` completed its handshake (`resumed`: with a
	 * session ticket), for a debug log line that the caller
	 * rate-limits */
	void (*on_handshake)(void *app, dv_doq_sconn_t *c, bool resumed);
	/* `c` failed (`what`: "failed its handshake", "closed with
	 * DOQ_PROTOCOL_ERROR"...; `why`: the reason), for a debug log line
	 * that the caller rate-limits */
	void (*on_failure)(void *app, dv_doq_sconn_t *c, const char *what,
			   const char *why);
} dv_doq_server_callbacks_t;

/*
 * A server for one listener.  `cfg` and `cb` are copied (the secret and
 * the contexts they point to are not); `app` goes to the callbacks.  NULL
 * on -ENOMEM.
 */
dv_doq_server_t *dv_doq_server_new(const dv_doq_server_config_t *cfg,
				   const dv_doq_server_callbacks_t *cb,
				   void *app);
/* A configuration reload: connections made from now on take `cfg`'s
 * max_connections, max_streams, idle, handshake and read timeouts, token
 * lifetime and retry (the established keep theirs); the rest of `cfg`
 * (the handshake caps among it) is ignored.  The server's thread. */
void dv_doq_server_set_limits(dv_doq_server_t *srv,
			      const dv_doq_server_config_t *cfg);
/* Ends every connection at once, answered or not (the caller's loop is
 * over: no answer will come).  NULL is a no-op. */
void dv_doq_server_free(dv_doq_server_t *srv);

/* A datagram received on `path` (remote: the client) at `now`. */
void dv_doq_server_read(dv_doq_server_t *srv, const dv_quic_path_t *path,
			const uint8_t *pkt, size_t len, uint64_t now,
			uint64_t wall);
/* `c`'s timer fired (see on_timer). */
void dv_doq_server_expire(dv_doq_server_t *srv, dv_doq_sconn_t *c,
			  uint64_t now);
/* The answer to the query of `s` (DNS message, no length prefix); dropped
 * when the client cancelled it or the connection is gone. */
void dv_doq_server_answer(dv_doq_sstream_t *s, const uint8_t *wire,
			  size_t len, uint64_t now);
/* Drain: refuse new connections, close each established one with
 * DOQ_NO_ERROR as soon as its queries are answered. */
void dv_doq_server_drain(dv_doq_server_t *srv, uint64_t now);
/* Connections not yet closing: a closing one has sent its
 * CONNECTION_CLOSE and only waits out its closing period. */
unsigned dv_doq_server_open_conns(const dv_doq_server_t *srv);

/* The server a stream's query came from, and its `app`. */
dv_doq_server_t *dv_doq_server_of(const dv_doq_sstream_t *s);
void *dv_doq_server_app(const dv_doq_server_t *srv);
/* The caller's conn_user_size bytes of `c` (zeroed at the start). */
void *dv_doq_sconn_user(dv_doq_sconn_t *c);
/* The client's address, as of now (it may migrate). */
const struct sockaddr *dv_doq_sconn_peer(const dv_doq_sconn_t *c,
					 socklen_t *len);
/* The SNI host name the client sent, NULL when it sent none or one that is
 * not a host name (src/tls/sni.h).  Valid from the first on_query (0-RTT
 * too) or on_handshake on, as long as `c` is: its queries' q->sni. */
const char *dv_doq_sconn_sni(dv_doq_sconn_t *c);
/* The client ID of the client's verified certificate (tls.client-ca), or
 * NULL: none, or the handshake is not complete yet.  Valid while `c`'s
 * TLS session is, so for the submit of a query (q->cert_id). */
const char *dv_doq_sconn_cert_id(dv_doq_sconn_t *c);
/* While `c` fails its handshake (on_failure): the name its client sent
 * when the TLS library refused it (dv_quic_tls_sni_refused), else NULL. */
const char *dv_doq_sconn_sni_refused(dv_doq_sconn_t *c);

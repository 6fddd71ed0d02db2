#pragma once
/*
 * The QUIC glue both ends of DoQ share (doq_client.c, doq_server.c): one
 * connection's ngtcp2 state and TLS session, the ngtcp2 callbacks that are
 * the same on both ends, random bytes and connection IDs, paths, settings
 * and transport parameters, closing errors, and the loop that writes the
 * queued streams into a datagram.  No sockets and no clock: every function
 * that needs the time is given it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "src/core/pages.h"
#include "src/tls/quic_tls.h"

/* One network path: addresses plus the caller's handle (its socket). */
typedef struct {
	struct sockaddr_storage local, remote;
	socklen_t local_len, remote_len;
	void *ctx;
} dv_quic_path_t;

/*
 * What a connection owner embeds: ngtcp2's connection, the TLS session,
 * and the reference through which the crypto helper finds the connection
 * (dv_quic_conn_init points it at `conn`).
 */
typedef struct {
	ngtcp2_crypto_conn_ref ref;
	ngtcp2_conn *conn;
	dv_quic_tls_t *tls;
} dv_quic_conn_t;

/* `owner` is what ref.user_data names (the engine's connection). */
void dv_quic_conn_init(dv_quic_conn_t *q, void *owner);
/* Hand the TLS session `tls` (may be NULL: -ENOMEM) to the connection. */
int dv_quic_conn_set_tls(dv_quic_conn_t *q, dv_quic_tls_t *tls);
/* Once the handshake is complete (and the server's ticket sent): detach
 * the TLS session from ngtcp2 and shed it (dv_quic_tls_shed()); CRYPTO
 * data that arrives later closes the connection with unexpected_message.
 * Not from inside ngtcp2's calls. */
void dv_quic_conn_shed_tls(dv_quic_conn_t *q);
/* Free ngtcp2's state and the TLS session; the struct stays. */
void dv_quic_conn_release(dv_quic_conn_t *q);

/*
 * ngtcp2's allocator on the page runs `pages` (src/core/pages.h): its
 * pools and skip-list blocks, of which an idle connection writes only the
 * first page or so, then cost only the pages written.  Fills `m` and
 * returns it, or NULL (ngtcp2's malloc) when `pages` is NULL or built
 * with DV_NOPOOL (so that ASan sees every block).
 */
const ngtcp2_mem *dv_quic_mem_init(ngtcp2_mem *m, dv_pages_t *pages);

/* `len` random bytes (getrandom, retried: it does not fail otherwise). */
void dv_quic_rand(uint8_t *dest, size_t len);
/* ngtcp2's rand callback on dv_quic_rand. */
void dv_quic_rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *rctx);
/* A random connection ID of `len` bytes; when `prefix` >= 0 its first
 * byte is `prefix` (the server's worker steering byte). */
void dv_quic_cid_new(ngtcp2_cid *cid, size_t len, int prefix);

void dv_quic_path_to_ngtcp2(ngtcp2_path *np, const dv_quic_path_t *p);

/* The callbacks both ends take from ngtcp2's crypto helper, plus rand;
 * the rest of `cb` is zeroed for the caller to fill. */
void dv_quic_callbacks_init(ngtcp2_callbacks *cb);
/* ngtcp2's defaults with `now` as the initial timestamp and the
 * handshake timeout (ns). */
void dv_quic_settings_init(ngtcp2_settings *s, uint64_t now,
			   uint64_t handshake_timeout);
/* ngtcp2's defaults for a DoQ end: no unidirectional streams, at most
 * four connection IDs from the peer, `idle_timeout` (ns). */
void dv_quic_params_init(ngtcp2_transport_params *p, uint64_t idle_timeout);

/*
 * The CONNECTION_CLOSE error for ngtcp2 error `rv`: the TLS alert for a
 * failed handshake (returned, else 0), or ngtcp2's own transport error.
 */
uint8_t dv_quic_liberr(ngtcp2_conn *conn, int rv,
		       ngtcp2_connection_close_error *ce);

/*
 * Write the CONNECTION_CLOSE for `ce` into `buf`; the path it goes on is
 * left in `ps`.  Returns its length, or <= 0 when there is none.
 */
ngtcp2_ssize dv_quic_write_close(ngtcp2_conn *conn, ngtcp2_path_storage *ps,
				 uint8_t *buf, size_t cap,
				 const ngtcp2_connection_close_error *ce,
				 uint64_t now);

/* Pacing (the next packet's send time) follows the clock once the
 * handshake is done; before the first RTT sample ngtcp2 would assume
 * 333 ms and hold the first answers (or queries) back. */
void dv_quic_update_tx_time(ngtcp2_conn *conn, uint64_t now);

/* One stream's bytes to send: `sent` of `len` are written. */
typedef struct {
	int64_t id;
	const uint8_t *data;
	size_t len, sent;
	bool fin; /* FIN with the last byte */
} dv_quic_out_t;

/* The owner's queue of streams with bytes to send. */
typedef struct {
	/* the stream after `s` on the queue (NULL: the first one) */
	dv_quic_out_t *(*next)(void *arg, dv_quic_out_t *s);
	/* all of `s` (with its FIN) has been written */
	void (*done)(void *arg, dv_quic_out_t *s);
	/* `s` takes no more now: flow control, or `gone` (shut or unknown) */
	void (*blocked)(void *arg, dv_quic_out_t *s, bool gone);
} dv_quic_sendq_t;

/*
 * The next datagram of `conn` into `buf`, its queued streams' bytes
 * coalesced with whatever ngtcp2 has to send.  Returns its length (the
 * path is in `ps`), 0 when there is nothing to send now, or a negative
 * ngtcp2 error for the connection.
 */
ngtcp2_ssize dv_quic_write(ngtcp2_conn *conn, ngtcp2_path_storage *ps,
			   uint8_t *buf, size_t cap, uint64_t now,
			   const dv_quic_sendq_t *q, void *arg);

#pragma once
/*
 * DNS-over-QUIC client engine (RFC 9250), on ngtcp2 and the QUIC TLS seam.
 *
 * Like ngtcp2 itself, the engine owns no socket and no event loop: the
 * caller feeds it datagrams (dv_doq_client_read), asks it for datagrams to
 * send (dv_doq_client_write, until it returns 0), and calls
 * dv_doq_client_expire when dv_doq_client_expiry() has passed.  Times are
 * CLOCK_MONOTONIC nanoseconds (dv_doq_now()).  So the same engine serves
 * the dnsveil-doq tool (a poll loop) and a libev upstream.
 *
 * One query per client-initiated bidirectional stream: a 2-byte length and
 * the DNS message, then FIN.  Queries are queued and only put on a stream
 * while the server's stream credit allows (ngtcp2_conn_get_streams_bidi_
 * left), so any number can be submitted; the caller bounds how many are
 * in flight.  Every submitted query ends in exactly one on_end callback.
 *
 * A server may stop granting streams (knotd never raises its first 1,024):
 * when every stream has ended, the credit is used up and two probe
 * timeouts pass without a MAX_STREAMS, the connection is spent: the
 * queries still waiting end with DV_DOQ_END_NO_CREDIT (the server never
 * saw them: send them on another connection) and submit refuses more.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "src/proto/doq_frame.h"
#include "src/proto/quic.h"

typedef struct dv_doq_client dv_doq_client_t;

/* QUIC transport error name ("NO_ERROR", "CRYPTO_ERROR(0x178)"...) into
 * buf; returns buf */
const char *dv_doq_transport_error_name(uint64_t code, char *buf,
					size_t cap);
/* The name of TLS alert `alert` ("bad_certificate"...) as the client
 * reports a failed handshake; "alert" for one it does not name */
const char *dv_doq_alert_name(uint8_t alert);

/* How a query ended (on_end).  X(name, text) */
#define DV_DOQ_ENDS(X)                                                       \
	X(FIN, "fin")                   /* server finished the stream */      \
	X(RESET, "stream_reset")        /* server reset it (app_code) */      \
	X(TIMEOUT, "timeout")           /* no end before the deadline */      \
	X(CONN_CLOSED, "connection_closed") /* the connection ended first */ \
	X(NO_CREDIT, "no_credit")       /* never got a stream: the server \
					   stopped granting them */

typedef enum {
#define DV_DOQ_END_ENUM(name, text) DV_DOQ_END_##name,
	DV_DOQ_ENDS(DV_DOQ_END_ENUM)
#undef DV_DOQ_END_ENUM
} dv_doq_end_t;
const char *dv_doq_end_name(dv_doq_end_t end);

/* What the stream carried back, reported with on_end */
typedef struct {
	dv_doq_end_t how;
	bool cancelled;          /* we reset it first (reset_after); `how`
				    is then the server's reaction */
	uint64_t app_code;       /* RESET: the server's application error */
	unsigned messages;       /* complete length-prefixed messages seen */
	size_t trailing;         /* bytes after the last complete message */
} dv_doq_result_t;

typedef struct {
	/* a complete DNS message arrived on the query's stream, which was
	 * opened at `sent_at` */
	void (*on_message)(void *app, void *query, int64_t stream_id,
			   const uint8_t *msg, size_t len, uint64_t sent_at,
			   uint64_t now);
	/* the query is over (exactly once per submitted query); `stream_id`
	 * is -1 when it never got a stream */
	void (*on_end)(void *app, void *query, int64_t stream_id,
		       const dv_doq_result_t *res, uint64_t now);
	/* the handshake completed (optional) */
	void (*on_handshake)(void *app, uint64_t now);
} dv_doq_callbacks_t;

/* One network path: addresses plus the caller's handle (its socket). */
typedef dv_quic_path_t dv_doq_path_t;

typedef struct {
	dv_quic_tls_ctx_t *tls;      /* client context (ALPN "doq") */
	const char *name;            /* SNI and verified name; NULL: none */
	const uint8_t *session;      /* dv_doq_client_session_save() blob */
	size_t session_len;
	bool early;                  /* send queries as 0-RTT if possible */
	const uint8_t *token;        /* NEW_TOKEN token to present */
	size_t token_len;
	uint64_t query_timeout;      /* ns, from the stream's opening */
	uint64_t handshake_timeout;  /* ns */
	uint64_t idle_timeout;       /* ns, our max_idle_timeout */
	/* At most this many streams from the oldest unanswered one to the
	 * newest (a server such as knotd drops a connection that goes
	 * past its limit); 0: only the server's stream credit bounds them.
	 * With a window, answers are acknowledged at once (max_ack_delay
	 * 0): knotd counts a stream until the ACK of its answer arrives */
	unsigned max_window;
	/* The server is taken for gone when this many probe timeouts (PTO)
	 * in a row get no acknowledgement while queries are on streams:
	 * the connection ends (DV_ECLOSED, close info `silent`) rather than
	 * waiting for the idle timeout; 0: never */
	unsigned silent_ptos;
	bool debug;                  /* ngtcp2's log on stderr */
} dv_doq_config_t;

/* Submission flags for one stream */
#define DV_DOQ_RAW 0x1u    /* send the bytes as they are (no length) */
#define DV_DOQ_NO_FIN 0x2u /* never FIN the stream */

typedef struct {
	uint64_t handshake_ns;       /* start to handshake completed */
	bool handshake_done;
	bool resumed;
	bool early_attempted;        /* 0-RTT keys installed, --early */
	unsigned early_queries;      /* streams opened before the handshake */
	bool early_accepted;
	bool early_rejected;         /* ... and resent after the handshake */
	bool retry_received;
	bool new_token_received;
	uint64_t streams_opened;
	bool credit_waits;           /* ran out of stream credit at least once */
	uint64_t max_streams_seen;   /* highest MAX_STREAMS (bidi) */
	bool migrated;
	bool path_validated;         /* the new path answered PATH_CHALLENGE */
	bool path_failed;            /* ... or did not */
	bool window_waits;           /* held back by max_window at least once */
} dv_doq_stats_t;

/* How loaded the connection is now (dv_doq_client_load) */
typedef struct {
	unsigned pending;  /* submitted, waiting for a stream */
	unsigned active;   /* on a stream, not ended */
	uint64_t window;   /* streams from the oldest active one to the
			      newest (0: none active) */
	uint64_t opened;   /* streams opened in the connection's life */
	uint64_t credit;   /* streams the server allows in total so far */
	bool grown;        /* the server has raised its credit (MAX_STREAMS) */
	uint64_t waiting;  /* ns the oldest pending query has waited */
	uint64_t pto;      /* ns, the connection's probe timeout now */
	bool spent;        /* the credit stopped: no new query is taken */
} dv_doq_load_t;

/* How the connection ended */
typedef struct {
	bool closed;
	bool by_peer;          /* the server sent CONNECTION_CLOSE */
	bool idle;             /* idle timeout */
	bool application;      /* app error code (DoQ) vs transport */
	uint64_t code;
	char reason[128];
	char local_error[160]; /* our side's failure, if any */
	bool silent;           /* silent_ptos probe timeouts unacknowledged */
	uint8_t tls_alert;     /* the alert our TLS raised (handshake
				  failed here, e.g. 42 bad_certificate); 0:
				  none */
} dv_doq_close_t;


/*
 * A connection to `path->remote` from `path->local`.  Takes nothing from
 * `cfg` but copies; `app` is passed to the callbacks.  NULL with a message
 * in `err`.
 */
dv_doq_client_t *dv_doq_client_new(const dv_doq_config_t *cfg,
				   const dv_doq_callbacks_t *cb, void *app,
				   const dv_doq_path_t *path, uint64_t now,
				   char *err, size_t err_len);
/* Frees everything; queries not yet ended are NOT reported (end them
 * first with dv_doq_client_close).  NULL is a no-op. */
void dv_doq_client_free(dv_doq_client_t *c);

/*
 * Queue `len` bytes for a new stream: with flags 0 they must be one DNS
 * message and are framed with the 2-byte length; DV_DOQ_RAW sends them
 * as given.  `reset_after` (ns, 0: never) resets the stream with
 * DOQ_REQUEST_CANCELLED (RESET_STREAM + STOP_SENDING) that long after its
 * bytes were sent; the query then ends with the server's reaction (its
 * RESET_STREAM, FIN, or the deadline) and res->cancelled set.  `query` is the
 * caller's handle for the callbacks; its deadline runs from `now`.
 * Returns 0, -ENOMEM, -EINVAL (too long) or DV_ECLOSED.
 */
int dv_doq_client_submit(dv_doq_client_t *c, const uint8_t *data,
			 size_t len, unsigned flags, uint64_t reset_after,
			 void *query, uint64_t now);

/* A received datagram on `path`.  Returns 0, or DV_ECLOSED when the
 * connection is over (see dv_doq_client_close_info). */
int dv_doq_client_read(dv_doq_client_t *c, const dv_doq_path_t *path,
		       const uint8_t *pkt, size_t len, uint64_t now);
/*
 * The next datagram to send, into `buf`: returns its length (send it on
 * `*path_ctx`), 0 when there is nothing to send now, or DV_ECLOSED.
 */
int dv_doq_client_write(dv_doq_client_t *c, uint8_t *buf, size_t cap,
			void **path_ctx, uint64_t now);
/* When dv_doq_client_expire must run next (UINT64_MAX: never). */
uint64_t dv_doq_client_expiry(dv_doq_client_t *c);
/* Timers: retransmission, idle, query deadlines.  0 or DV_ECLOSED. */
int dv_doq_client_expire(dv_doq_client_t *c, uint64_t now);

/*
 * Close with application error `app_code` (DOQ_NO_ERROR normally): ends
 * the remaining queries with CONN_CLOSED and writes the CONNECTION_CLOSE
 * datagram into `buf`.  Returns its length (send it on `*path_ctx`), 0 if
 * the connection was already over.
 */
int dv_doq_client_close(dv_doq_client_t *c, uint64_t app_code, uint8_t *buf,
			size_t cap, void **path_ctx, uint64_t now);

/* Move to `path` (a new local socket) at once (connection migration).
 * 0, DV_ENOTIMPL when the server forbids it, or -EINVAL. */
int dv_doq_client_migrate(dv_doq_client_t *c, const dv_doq_path_t *path,
			  uint64_t now);

bool dv_doq_client_handshake_done(const dv_doq_client_t *c);
bool dv_doq_client_is_closed(const dv_doq_client_t *c);
/* Queries submitted and not ended yet */
unsigned dv_doq_client_outstanding(const dv_doq_client_t *c);
void dv_doq_client_stats(const dv_doq_client_t *c, dv_doq_stats_t *st);
/* Its load now (the time is that of the caller's latest call). */
void dv_doq_client_load(dv_doq_client_t *c, dv_doq_load_t *ld);
void dv_doq_client_close_info(const dv_doq_client_t *c, dv_doq_close_t *ci);

/* Whether the server sent a session ticket (something to save). */
bool dv_doq_client_has_ticket(dv_doq_client_t *c);

/* The last NEW_TOKEN token received (len 0: none). */
const uint8_t *dv_doq_client_token(const dv_doq_client_t *c, size_t *len);

/*
 * The session to resume with next time (TLS session ticket plus the
 * server's transport parameters that 0-RTT needs), as one blob for
 * dv_doq_config_t.session.  Returns its length, 0 when the server sent no
 * ticket, or DV_ESPACE.
 */
#define DV_DOQ_SESSION_MAX 4400
int dv_doq_client_session_save(dv_doq_client_t *c, uint8_t *buf,
			       size_t cap);

/* ---- pure helpers (no connection), exposed for the tool and tests ---- */

/* The saved-session blob: TLS session and the transport parameters that
 * 0-RTT is allowed to assume (RFC 9000 §7.4.1). */
typedef struct {
	uint64_t max_streams_bidi, max_streams_uni;
	uint64_t max_stream_data_bidi_local, max_stream_data_bidi_remote;
	uint64_t max_stream_data_uni, max_data;
	uint64_t active_connection_id_limit, max_datagram_frame_size;
} dv_doq_early_params_t;
int dv_doq_session_encode(uint8_t *buf, size_t cap, const uint8_t *tls,
			  size_t tls_len, const dv_doq_early_params_t *p);
/* Returns 0 and points `*tls` into `buf`, or DV_EMALFORMED. */
int dv_doq_session_decode(const uint8_t *buf, size_t len,
			  const uint8_t **tls, size_t *tls_len,
			  dv_doq_early_params_t *p);

/*
 * Build a query for `name` (text, trailing dot optional) and `qtype`:
 * id `id`, RD set, an OPT (UDP 1232) and, when `pad` is true, an EDNS
 * Padding option making the message a multiple of 128 bytes (RFC 8467).
 * Returns the length, DV_EMALFORMED for a bad name, or DV_ESPACE.
 */
int dv_doq_build_query(uint8_t *buf, size_t cap, const char *name,
		       uint16_t qtype, uint16_t id, bool pad);
/* Frame `msg` with its 2-byte length into `buf`.  Returns the length or
 * DV_ESPACE (also for messages over 65535 bytes). */
int dv_doq_frame_write(uint8_t *buf, size_t cap, const uint8_t *msg,
		       size_t len);
/* Total length of the EDNS Padding options in a response's OPT:
 * >= 0, or -1 when it carried none (or no OPT). */
int dv_doq_padding_len(const uint8_t *msg, size_t len);

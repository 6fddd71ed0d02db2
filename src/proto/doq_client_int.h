#pragma once
/*
 * The DoQ client engine's own structures (doq_client.c): a query's
 * stream, the lists it moves between, and the connection.  Not for use
 * outside the engine.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/wire.h"
#include "src/proto/doq_client.h"
#include "src/proto/quic.h"

#define RX_MAX (2 * (2 + DV_DNS_MAX_MSG)) /* keep at most two messages */

typedef enum { L_NONE, L_PENDING, L_ACTIVE, L_ENDED } list_id_t;

typedef struct stream stream_t;
typedef struct {
	stream_t *head, *tail;
	unsigned n;
} list_t;

struct stream {
	stream_t *prev, *next;   /* on one of the lists */
	stream_t *sprev, *snext; /* on sendq */
	list_id_t list;
	bool on_sendq;
	dv_quic_out_t out; /* the query's bytes, the stream's id */
	void *query;
	bool fin_sent;
	bool early;
	uint64_t deadline, reset_after, reset_at, opened;
	uint64_t submitted; /* when it was queued */
	uint64_t seq;       /* its place among the streams opened */
	uint8_t *rx;
	size_t rx_len, rx_cap;
	dv_doq_result_t res;
};

typedef enum { C_HANDSHAKE, C_OPEN, C_CLOSING, C_CLOSED } conn_state_t;

struct dv_doq_client {
	dv_quic_conn_t q;
	dv_doq_callbacks_t cb;
	void *app;
	conn_state_t state;
	bool early_tp_set;
	bool early_key;
	bool want_close_pkt;                /* a local error to send */
	ngtcp2_connection_close_error lerr; /* ... this one */
	uint64_t start, timeout;
	unsigned max_window, silent_ptos;
	uint64_t credit0; /* the credit before any MAX_STREAMS: grown if more */
	uint64_t last_end; /* when the last active stream ended */
	bool spent;        /* credit used up and not raised: see the header */
	dv_doq_path_t path, path2; /* the first path, a migrated one */
	list_t pending, active, ended;
	stream_t *sq_head, *sq_tail;
	unsigned n_reset;          /* active streams with a reset_at */
	uint64_t now; /* the time of the caller's latest call: what ngtcp2's
		       * callbacks run at (the engine reads no clock) */
	dv_doq_stats_t st;
	dv_doq_close_t ci;
	uint8_t *token;
	size_t token_len;
	bool debug;
};

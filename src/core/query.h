#pragma once
/*
 * The query object: one DNS message from a client, as every transport hands
 * it to the core.  The transport fills the "who asked" fields and the reply
 * hook; the core parses, decides and answers through the hook exactly once.
 *
 * Memory: objects come from their core's free list (core.h:
 * dv_core_query_new; plain malloc/free with DV_NOPOOL so ASan sees each
 * one); messages up to DV_QUERY_INLINE bytes live inside the object,
 * larger ones get their own allocation.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "src/core/ident.h"
#include "src/core/scheme.h"
#include "src/core/wire.h"

#define DV_QUERY_INLINE 512
#define DV_PAD_BLOCK 468 /* RFC 8467 recommended response block */

typedef struct dv_core dv_core_t;

/* What the policy decided for a query, for the logs. */
#define DV_VERDICTS(X)                                                       \
	X(NONE, "")    /* no policy */                                     \
	X(PASS, "pass")                                                      \
	X(ALLOWED, "allowed")                                                \
	X(BLOCKED, "blocked")                                                \
	X(REFUSED, "refused")                                                \
	X(LOCAL, "local") /* answered from the group's records */      \
	X(LIMITED, "rate-limited")
#define DV_VERDICT_ENUM(name, text) DV_VERDICT_##name,
typedef enum { DV_VERDICTS(DV_VERDICT_ENUM) DV_VERDICT_COUNT } dv_verdict_t;
#undef DV_VERDICT_ENUM
typedef struct dv_query dv_query_t;

/*
 * Called exactly once per accepted query, on the worker's thread, with the
 * final answer.  `wire` is valid only during the call: the transport copies
 * or sends it.  After the hook returns the core frees the query, so the
 * hook must not keep `q`.
 */
typedef void (*dv_reply_fn)(dv_query_t *q, const uint8_t *wire, size_t len);

struct dv_query {
	dv_core_t *core; /* its core (set when the object is made) */
	/* filled by the transport */
	dv_reply_fn reply;
	void *conn;        /* the transport's connection or listener */
	uint64_t conn_tag; /* the transport's own (stream id, ...) */
	dv_scheme_t transport;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	const char *sni;      /* TLS SNI, NULL if none */
	const char *path;     /* DoH path, NULL if none */
	/* DoH: the client ID of the request path ("/dns-query/{id}"),
	 * NULL if none; valid only until dv_core_submit() returns (the
	 * policy stage reads it within the submit) */
	const char *client_id;
	/* the client ID of the connection's verified TLS client certificate
	 * (tls.client-ca), NULL if none; it wins over client_id and the
	 * SNI's.  Valid only until dv_core_submit() returns, like client_id */
	const char *cert_id;
	/* 1 + the index in the config's `listen` list of the listener the
	 * query came in on; 0 when the transport does not say (DoQ) */
	uint8_t listener;
	/* where the policy may remember who asked for the connection's next
	 * queries (0: not worked out yet), when everything the identity is
	 * made of (peer, SNI, listener) is the connection's own; NULL: every
	 * query is worked out afresh (UDP, DoH) */
	uint16_t *ident_memo;
	bool udp;             /* answer size limited by the client's EDNS */
	/* DoH: the core fills answer_ttl for every answer (for the others
	 * only where it comes free: cache hits, upstream answers) */
	bool want_ttl;
	unsigned pad_block;   /* pad answers to padded queries (encrypted) */

	/* filled by the core */
	uint64_t start_us; /* when the core took it (the metrics' latency) */
	uint64_t start_ms;
	uint8_t source;    /* dv_src_t: where its answer comes from */
	uint64_t deadline_ms;
	size_t answer_limit;
	dv_wire_query_t view;
	dv_query_t *next; /* waiters of one upstream fetch */
	/* the answer's freshness for the reply hook (RFC 8484 5.1 max-age):
	 * the smallest TTL it carries (a negative answer: its SOA's
	 * lifetime, no longer than any record), 0 for an rcode other than
	 * NOERROR/NXDOMAIN, a truncated answer or one without records */
	uint32_t answer_ttl;

	/* for the logs, when the core has a log hook (dv_core_set_log) */
	bool log_ident;       /* the hook wants q->ident: the policy fills it
			       * even when its memo spares it the work */
	uint8_t verdict;      /* dv_verdict_t, set by the policy */
	bool stale;           /* answered stale (RFC 8767) */
	const char *group;    /* the client's group (the policy's), NULL */
	const char *list;     /* the list that blocked or allowed it, NULL */
	const char *upstream; /* the upstream server that answered, NULL */
	/* the upstream set of the client's group (the policy's; 0: the
	 * top-level upstreams): which pool the core asks, and part of the
	 * cache key */
	uint8_t upstream_set;

	uint16_t len;
	uint8_t *wire;
	uint8_t inline_buf[DV_QUERY_INLINE];
	/* the client ID (DoH path, TLS SNI) for the logs, "" if none; set
	 * only when log_ident (not cleared with the rest of the object) */
	char ident[DV_IDENT_MAX + 1];
};

/* Give the object back to its core (NULL is a no-op).  Objects are made
 * by dv_core_query_new() (core.h), or by the worker's dv_query_new(). */
void dv_query_free(dv_query_t *q);

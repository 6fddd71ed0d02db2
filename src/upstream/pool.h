#pragma once
/*
 * The upstream pool of one worker: the local resolver group and the fallback
 * group, each a list of servers; per server a few persistent connections
 * carrying many queries at once (tcp:// and tls://: RFC 7766 pipelining,
 * answers matched out of order by id and question; https://: HTTP/2
 * streams; quic://: DoQ streams) and, for udp:// servers, a UDP socket per
 * query (conn_udp.c) whose truncated answers are retried over TCP.  Each protocol is a
 * connection module behind an ops table (uconn.h), found by its URL scheme
 * in the registry (registry.h).
 *
 * A worker has one pool per upstream set (config.h dv_upstream_set_t: the
 * top-level upstream: and fallback:, or a group's own).
 *
 * A fetch is one upstream question (after coalescing).  It is sent to the
 * local group first; when the local group has failed, or has not answered
 * within the hedge delay, the same question also goes to the fallback group;
 * the first good answer wins, and when every path has failed or the query
 * deadline passes, the core answers SERVFAIL with an EDE.
 *
 * Within a group the server is chosen by health and latency (health.h):
 * UP before DEGRADED, then the lowest EWMA of answer latency, with a few
 * percent of fetches sent to another server of the group to keep
 * measuring it (pool.explore-pct).  A DOWN server gets no fetch, only
 * probes; a local server that is DEGRADED sends its fetches to the
 * fallback group at once.
 *
 * Ids: each connection has a table of slots (its in-flight limit); a query's
 * id is the slot index in the low bits and random bits above, so clients'
 * ids never collide and a late answer is recognised by (id, question).  On
 * udp://, where each slot has its own socket, all 16 bits are random and an
 * answer is recognised by (socket, id, question).
 */
#include <stdbool.h>
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/health.h"
#include "src/core/stats.h"
#include "src/core/wire.h"

struct ev_loop;
struct dv_core_pool_ops;
typedef struct dv_pool dv_pool_t;
typedef struct dv_fetch dv_fetch_t;

/*
 * How the pool reports the end of a fetch to the fetch's owner (the
 * core: dv_core_fetch_answer and dv_core_fetch_fail), exactly once per
 * fetch and never for its own health probes: the first good answer, or
 * the failure with the EDE to report.  The owner frees the fetch (and
 * cancels it, dv_pool_fetch_cancel) before these return.
 */
typedef struct dv_pool_report {
	void (*answer)(dv_fetch_t *f, const uint8_t *wire, size_t len,
		       const dv_wire_resp_t *r);
	void (*fail)(dv_fetch_t *f, uint16_t ede, const char *text);
} dv_pool_report_t;

/* A query the pool sent to an upstream, or an answer it received from
 * one (for dnstap's RESOLVER_QUERY and RESOLVER_RESPONSE). */
typedef struct dv_pool_msg {
	const dv_url_t *server; /* its scheme and address */
	const uint8_t *query;   /* as sent (the id is the connection's) */
	size_t query_len;
	const uint8_t *answer; /* NULL for a query */
	size_t answer_len;
	uint64_t rtt_us; /* an answer's: since its query was sent */
} dv_pool_msg_t;

/* What the pool uses of the worker it belongs to (kept by the pool): its
 * loop, its counters, its index for the logs, and optionally (NULL: none)
 * where every query to an upstream and every answer read from one are
 * shown (never the health probes'). */
typedef struct dv_pool_env {
	struct ev_loop *loop;
	dv_stats_t *stats;
	unsigned index;
	void (*observe)(void *arg, const dv_pool_msg_t *m);
	void *observe_arg;
	/* the upstream set the pool serves (dv_config_upstream_set: its
	 * local and fallback URLs, kept, and its name, kept, for the stats);
	 * set.upstream NULL: the config's top-level upstream: and
	 * fallback: */
	dv_upstream_set_t set;
} dv_pool_env_t;

/* Create the pool of a worker (`env`, copied) for one upstream set (the
 * env's), with the rest of its settings from the config (connections
 * are opened lazily, except the local group's, which are warmed on
 * start), reporting through `report` (kept).  NULL on allocation failure
 * or when a client TLS context cannot be made (logged). */
dv_pool_t *dv_pool_create(const dv_pool_env_t *env, const dv_config_t *cfg,
			  const dv_pool_report_t *report);
void dv_pool_start(dv_pool_t *p);
void dv_pool_free(dv_pool_t *p); /* closes everything; NULL is a no-op */

/* Start resolving `f` (qwire, key filled).  The pool answers through
 * its report (dv_pool_report_t), possibly before this returns. */
void dv_pool_fetch_start(dv_pool_t *p, dv_fetch_t *f);
/* Stop every timer and attempt of `f` (the fetch is being freed). */
void dv_pool_fetch_cancel(dv_pool_t *p, dv_fetch_t *f);

/* Fetches started on `p` and not yet freed: a pool replaced by a reload
 * is freed when this is 0 (its fetches answered or cancelled; a fetch is
 * cancelled through the pool that started it, whatever pool the core
 * holds by then). */
unsigned dv_pool_jobs(const dv_pool_t *p);
/* A reload whose upstream, fallback, tls.ca and pool settings are those
 * `p` was built from: `p` now reads `cfg` (the same values) and keeps its
 * connections.  Worker thread. */
void dv_pool_set_config(dv_pool_t *p, const dv_config_t *cfg);

/* The two above, as the core calls them (core.h); `pool` a dv_pool_t. */
extern const struct dv_core_pool_ops dv_pool_core_ops;

/* Servers of the pool: local first, then fallback (the same for every
 * worker, in config order). */
unsigned dv_pool_n_servers(const dv_pool_t *p);
/* Add what this worker knows of server `i` into `u` (counters summed,
 * the state counted; url and group set; EWMA and p95 as in stats.h, with
 * `u->ewma_us` a running sum until dv_pool_stats_finish()).  Reads the
 * worker's values with relaxed atomic loads: any thread may call it. */
void dv_pool_stats_add(const dv_pool_t *p, unsigned i,
		       dv_upstream_stats_t *u);
/* Turn the sums of dv_pool_stats_add() into the merged view. */
void dv_pool_stats_finish(dv_upstream_stats_t *u);

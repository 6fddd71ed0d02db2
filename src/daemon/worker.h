#pragma once
/*
 * A worker: one thread, one libev loop, its own listening sockets
 * (SO_REUSEPORT), its own upstream connections, its own query core
 * (src/core/core.h: query pool, coalescing table) and counters.  The
 * only thing workers share is the cache.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "src/core/cache.h"
#include "src/config/config.h"
#include "src/core/core.h"
#include "src/core/query.h"
#include "src/core/stats.h"
#include "src/daemon/transport.h"

struct ev_loop;
typedef struct dv_pool dv_pool_t;
typedef struct dv_hs_limit dv_hs_limit_t;

typedef struct dv_tls_ctx dv_tls_ctx_t;
typedef struct dv_policy dv_policy_t;
typedef struct dv_policy_worker dv_policy_worker_t;
typedef struct dv_quic_tls_ctx dv_quic_tls_ctx_t;
typedef struct dv_keyfile dv_keyfile_t;
typedef struct dv_qlog dv_qlog_t;
typedef struct dv_dnstap dv_dnstap_t;

/* What all workers share, made by main. */
typedef struct {
	dv_cache_t *cache;     /* may be NULL */
	/* groups, clients and lists, read-only; NULL: no policy */
	const dv_policy_t *policy;
	dv_tls_ctx_t *tls_dot; /* ALPN "dot"; NULL without tls:// listeners */
	dv_tls_ctx_t *tls_doh; /* ALPN "h2", "http/1.1"; NULL without https:// */
	dv_quic_tls_ctx_t *tls_doq; /* ALPN "doq"; NULL without quic:// */
	/* keys QUIC address-validation tokens and stateless resets; the same
	 * in every worker, so any worker can check what another issued */
	uint8_t quic_secret[32];
	/* tls.ticket-key-file: ticket keys and the QUIC secret from a file
	 * every replica shares (src/tls/keyfile.h); NULL: off */
	dv_keyfile_t *keyfile;
	unsigned n_workers;
	/* the query log and dnstap; NULL: off */
	dv_qlog_t *qlog;
	dv_dnstap_t *dnstap;
} dv_shared_t;

typedef struct dv_listener {
	const dv_transport_t *transport;
	void *state;
	struct dv_listener *next;
	/* its URL's index in the worker's cfg->listen */
	unsigned index;
	/* removed by a reload: stopped at this dv_now_ms(), closed once its
	 * connections are gone (worker_reload.c) */
	uint64_t retired_ms;
} dv_listener_t;

struct dv_worker {
	unsigned index;
	struct ev_loop *loop;
	pthread_t thread;
	bool running;
	const dv_config_t *cfg;
	const dv_shared_t *shared;
	/* its upstream pools, one per upstream set of the config (0: the
	 * top-level upstream: and fallback:; upstream.h) */
	dv_pool_t *pools[DV_MAX_UPSTREAM_SETS];
	unsigned n_pools;
	dv_stats_t stats;
	/* this worker's use of shared->policy (its counters); NULL when
	 * there is none */
	dv_policy_worker_t *policy;
	dv_listener_t *listeners;
	/* admission of new TLS and QUIC handshakes, all listeners of this
	 * worker together (src/core/hs_limit.h) */
	dv_hs_limit_t *hs_limit;

	/* answer bytes buffered by the stream connections (their output
	 * buffers), against limits.worker-max-output */
	uint64_t stream_out_bytes;
	/* over that budget: reached the limit and not yet back under half
	 * (transports/stream_budget.c) */
	bool stream_out_over;

	/* dv_now_ms() when the loop last turned (a 1 s timer stamps it);
	 * read by the admin listener's /healthz */
	uint64_t heartbeat_ms;

	/* the loop waits DV_WORKER_COLLECT_S before it polls again, and
	 * the datagrams read since dg_since (loop time) that decide it
	 * (dv_worker_datagrams) */
	bool collecting;
	unsigned dg_count;
	double dg_since;

	/* commands from the main thread (drain, stop) */
	void *async; /* ev_async, opaque here */
	int command;
	bool ended; /* its loop has ended (set by the worker thread) */

	/* configuration reloads (worker_reload.c): the next config, handed
	 * over by the main thread with a reference (cfgref.h); the reference
	 * the worker holds on cfg (NULL: the start config, which its owner
	 * keeps); what a reload retired (listeners, pools) until it is done;
	 * pool_lock: w->pools and w->cfg as other threads read them (admin),
	 * taken by the worker only to replace them or free a pool, never on
	 * the query path */
	const dv_config_t *pending_cfg;
	const dv_config_t *cfg_ref;
	/* the worker this one hands a config to once it has applied it:
	 * workers apply a reload one after the other in index order, so
	 * the sockets of a new listener join their SO_REUSEPORT group in
	 * worker order, as at start (DoQ steers packets by that order);
	 * set by main before the workers start */
	dv_worker_t *reload_next;
	/* the last config this worker applied (or dropped while draining):
	 * compared by the main thread, never read through */
	const dv_config_t *applied_cfg;
	void *reload;
	pthread_mutex_t pool_lock;

	/* the query core: its timers are libev on `loop` (ev_timers.h), its
	 * pools `pools`, its counters `stats`, its cache shared->cache; it
	 * holds the queries in flight (core.inflight) and the draining
	 * flag */
	dv_core_t core;
};

/* Create worker `index` with its loop, pool and listeners.  Returns NULL
 * and a message in `err` when a listener cannot be opened. */
dv_worker_t *dv_worker_new(unsigned index, const dv_config_t *cfg,
			   const dv_shared_t *shared, char *err,
			   size_t err_len);
int dv_worker_start(dv_worker_t *w);
/* Ask the worker to stop accepting and finish what it has (async-safe from
 * the main thread), then to end its loop. */
void dv_worker_drain(dv_worker_t *w);
void dv_worker_stop(dv_worker_t *w);
void dv_worker_join(dv_worker_t *w);
/* The worker's thread has left its loop (or never ran): a join will not
 * wait.  Any thread. */
bool dv_worker_ended(const dv_worker_t *w);
void dv_worker_free(dv_worker_t *w);

/*
 * Take a query object from worker `w`'s core holding a copy of `wire`
 * (dv_core_query_new), for the transports.  Returns NULL when the message
 * is over 65535 bytes or memory is short.
 */
dv_query_t *dv_query_new(dv_worker_t *w, const uint8_t *wire, size_t len);

/*
 * A UDP listener read `n` datagrams.  A worker that reads more than
 * limits.udp-collect-rate datagrams a second (measured over 10 ms
 * windows) is busy: from then on the loop sleeps DV_WORKER_COLLECT_S
 * before each poll (libev's io collect interval), so that each wake-up
 * finds more of them and each datagram costs a smaller share of the
 * wake-up and of the epoll_wait, recvmmsg and sendmmsg around it.  It
 * stops under 80% of that rate, where the timer's own wake-up would cost
 * about what it saves, and at each heartbeat (every second): a worker
 * under lighter load never sleeps before polling and adds no latency.
 */
#define DV_WORKER_COLLECT_S 50e-6
void dv_worker_datagrams(dv_worker_t *w, unsigned n);

/* What a listener opened for `url` writes in its queries' q->listener:
 * 1 + the index of `url` in the worker's config `listen` list (what the
 * policy's `clients: - listener:` entries match), 0 if it is not one. */
uint8_t dv_worker_listener(const dv_worker_t *w, const dv_url_t *url);

/*
 * Configuration reload (reload.h): hand `cfg` (a cfgref.h copy, checked,
 * every listener it adds bindable) to worker `w`, which applies it on its
 * own loop (worker_reload.c) and then hands it to w->reload_next.  Takes a
 * reference of its own.  Any thread.  A config not applied yet is
 * replaced by the newer one.
 */
void dv_worker_reconfigure(dv_worker_t *w, const dv_config_t *cfg);
/* The handshake admission settings of `cfg` (limits.tls-handshakes-per-ip,
 * tls-handshake-burst, handshake-pressure, handshake-exempt, and the DoH
 * trusted proxies) into the worker's limiter, its buckets kept: on its
 * own loop. */
void dv_worker_hs_limit_apply(dv_worker_t *w, const dv_config_t *cfg);
/* Other threads reading w->pools or w->cfg (the admin listener's /metrics
 * and /readyz): between these, a reload does not replace or free them. */
void dv_worker_pool_lock(dv_worker_t *w);
void dv_worker_pool_unlock(dv_worker_t *w);

/* Current loop time in ms (monotonic-ish; libev's cached "now"). */
uint64_t dv_worker_now_ms(dv_worker_t *w);

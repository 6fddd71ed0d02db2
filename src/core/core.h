#pragma once
/*
 * The query core: one object per worker that takes client queries, runs
 * each through the stages of the pipeline (core.c: identity, policy,
 * cache, coalescing, upstream) and delivers exactly one answer per
 * accepted query.  It owns the query free list, the coalescing table of
 * fetches in flight and the scratch buffer answers are built in; it
 * shares nothing with other workers' cores but the cache.
 *
 * The core does no I/O: it reads time and arms timers through the
 * runtime it is given (timer.h), reaches the upstream pools (one per
 * upstream set, chosen by the query's group) through a table of two
 * calls (dv_core_pool_ops_t) and answers through each
 * query's reply hook.  It knows neither the worker nor the config: the
 * worker embeds it, fills a dv_core_conf_t from the config and plugs in
 * its loop's timers and its pool.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/cache.h"
#include "src/core/metrics.h"
/* not used here: the header has always brought the clocks to the files
 * that include it (transports/stream.c); to go once those include it */
#include "src/core/clock.h"
#include "src/core/query.h"
#include "src/core/stats.h"
#include "src/core/timer.h"
#include "src/core/wire.h"

typedef struct dv_core dv_core_t;
typedef struct dv_fetch dv_fetch_t;

/* upstream sets a core can reach (q->upstream_set, one pool each) */
#define DV_CORE_MAX_SETS 64

/* room for a normalized question: header, name, type and class, OPT */
#define DV_FETCH_QWIRE_MAX (DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11)

/*
 * One upstream question of the core (after coalescing): the queries
 * waiting for it, and the question the pool is asked.
 */
struct dv_fetch {
	dv_core_t *core;
	dv_fetch_t *hnext; /* coalescing table chain */
	uint64_t hash;
	dv_query_t *waiters, *waiters_tail;
	unsigned n_waiters;
	uint8_t key[DV_WIRE_KEY_MAX];
	uint16_t key_len;
	/* the normalized upstream query */
	uint8_t qwire[DV_FETCH_QWIRE_MAX];
	uint16_t qlen;
	/* the pool's state of this fetch (set by its fetch_start, cleared by
	 * its fetch_cancel) */
	void *pool_job;
	/* the server that answered (its URL as written), for the logs: set
	 * by the pool before dv_core_fetch_answer(); NULL: not said */
	const char *upstream;
	/* the RFC 8767 client response timer (core.c), and whether it has
	 * fired (later waiters get the stale answer at once) */
	dv_timer_t stale;
	bool stale_fired;
	/* an internal name (the policy's local_only): the pool asks only
	 * its local group, never the fallback */
	bool local_only;
	/* the upstream set asked (the first waiter's q->upstream_set, also
	 * the last byte of `key` when not 0): the pool of that index */
	uint8_t upstream_set;
};

/*
 * The upstream pool as the core sees it: a table the worker gives it with
 * the pool (dv_core_set_pool), so that the core calls no pool function by
 * name and a test can put a fake pool in its place.
 */
typedef struct dv_core_pool_ops {
	/* Start resolving `f` (qwire and key filled).  The pool answers
	 * through dv_core_fetch_answer() or dv_core_fetch_fail(), possibly
	 * before this returns. */
	void (*fetch_start)(void *pool, dv_fetch_t *f);
	/* Stop every timer and attempt of `f`: the fetch is being freed. */
	void (*fetch_cancel)(void *pool, dv_fetch_t *f);
} dv_core_pool_ops_t;

/*
 * The policy as the core sees it (dv_core_set_policy): one call, made in
 * the policy stage for each parsed query, before the cache.  The core
 * includes nothing of src/policy/; the worker plugs the policy in, as it
 * does the pool, and a test can plug in its own.
 */
typedef struct dv_core_policy_ops {
	/* Decide for `q` (parsed: q->view, the question is valid).  Returns
	 * 0 to let the query go on to the cache and the upstreams, or the
	 * length of the whole answer it wrote into `buf` (`cap` bytes,
	 * padded to `pad_block` when not 0, within q->answer_limit), which
	 * the core sends as it is.  Sets what the logs read of its
	 * decision (q->verdict, q->group, q->list; q->ident when
	 * q->log_ident).  DV_ELIMIT: drop the query unanswered (a UDP
	 * query over a rate limit with rate-limit-action: drop).
	 * Must not allocate or keep `q`. */
	int (*decide)(void *policy, dv_query_t *q, uint8_t *buf,
		      size_t cap, unsigned pad_block);
	/* Optional: whether the upstream question of `q` (asked when the
	 * cache could not answer it) is an internal name, which only the
	 * local upstreams may be asked (dv_fetch_t.local_only).  Must not
	 * allocate or keep `q`. */
	bool (*local_only)(void *policy, const dv_query_t *q);
} dv_core_policy_ops_t;

/*
 * The logs as the core sees them (dv_core_set_log): one call per answer,
 * where the query log and dnstap take what they want.  NULL ops (the
 * default) cost one predictable branch per answer.
 */
typedef struct dv_core_log_ops {
	/* `q` is answered with `wire` (`len` bytes) at `now_us` (the core's
	 * clock, as q->start_us), just before its reply hook.  Must neither
	 * block nor keep `q` or `wire`. */
	void (*answered)(void *log, const dv_query_t *q, const uint8_t *wire,
			 size_t len, uint64_t now_us);
} dv_core_log_ops_t;

/*
 * What the core takes from the configuration (the worker copies it from
 * dv_config_t; the config does not change while a worker runs).
 */
typedef struct dv_core_conf {
	unsigned max_inflight;     /* limits.max-inflight: queries per core */
	unsigned query_timeout_ms; /* the whole query's deadline */
	/* serve-stale (RFC 8767): the window (0 = off) and the client
	 * response timer (0 = stale only when the upstreams fail) */
	unsigned stale_max_age_s;
	unsigned stale_answer_timeout_ms;
	unsigned servfail_ttl_s; /* failures remembered; 0 = not */
	unsigned prefetch_hits;  /* 0 = no prefetch */
	unsigned prefetch_window_pct;
	/* seeds the coalescing table's hash, so that a client cannot aim
	 * many questions at one chain (random in the daemon) */
	uint64_t hash_seed;
} dv_core_conf_t;

struct dv_core {
	dv_core_conf_t conf;
	/* the clock and timers (src/core/timer.h); ops NULL: no timers */
	dv_timers_t timers;
	dv_cache_t *cache; /* shared by all cores; may be NULL */
	/* the upstream pools, one per upstream set, and how to reach them
	 * (dv_core_set_pool, dv_core_set_pools) */
	void *pools[DV_CORE_MAX_SETS];
	unsigned n_pools;
	const dv_core_pool_ops_t *pool_ops;
	/* the policy (dv_core_set_policy); ops NULL: every query passes */
	void *policy;
	const dv_core_policy_ops_t *policy_ops;
	/* the query log and dnstap (dv_core_set_log); ops NULL: none */
	void *log;
	const dv_core_log_ops_t *log_ops;
	dv_stats_t *stats; /* the owner's counters */
	/* by transport, rcode and source, histograms (src/core/metrics.h);
	 * written here, read by the admin listener's thread */
	dv_metrics_t metrics;

	/* query objects */
	dv_query_t *free_queries;
	unsigned n_free_queries;
	unsigned inflight; /* accepted and not yet answered */

	/* upstream fetches in flight, by cache key (coalescing) */
	dv_fetch_t **fetches;
	unsigned fetch_mask;
	unsigned n_fetches;

	/* finishing what it has (SIGTERM): failures are not remembered */
	bool draining;

	/* the answer being built; big enough for any DNS message */
	uint8_t scratch[DV_DNS_MAX_MSG + 1];
};

/*
 * Set up `c` (embedded in its owner, zeroed or not) with a copy of
 * `conf`, the runtime `timers` (copied), the shared `cache` (may be NULL)
 * and the owner's counters `stats` (kept).  The pool comes next, through
 * dv_core_set_pool(), before the first query.  Returns 0, or -ENOMEM
 * (then dv_core_deinit() still cleans up).
 */
int dv_core_init(dv_core_t *c, const dv_core_conf_t *conf,
		 const dv_timers_t *timers, dv_cache_t *cache,
		 dv_stats_t *stats);
/* The upstream pool `pool`, reached through `ops` (both kept): the
 * only upstream set, 0. */
void dv_core_set_pool(dv_core_t *c, void *pool,
		      const dv_core_pool_ops_t *ops);
/* The pools of upstream sets 0 .. n-1 (n <= DV_CORE_MAX_SETS; the array
 * copied, the pools and `ops` kept): a fetch whose query the policy put
 * in set i goes to pools[i], its answers cached under a key of their
 * own.  Before the first query. */
void dv_core_set_pools(dv_core_t *c, void *const *pools, unsigned n,
		       const dv_core_pool_ops_t *ops);
/* The policy `policy`, reached through `ops` (both kept; NULL ops: no
 * policy).  Before the first query. */
void dv_core_set_policy(dv_core_t *c, void *policy,
			const dv_core_policy_ops_t *ops);
/* The logs `log`, reached through `ops` (both kept; NULL ops: none).
 * Before the first query. */
void dv_core_set_log(dv_core_t *c, void *log, const dv_core_log_ops_t *ops);
/* Fail every fetch in flight with `ede`/`text` (shutdown): every query
 * still waiting gets its one reply (stale, or SERVFAIL). */
void dv_core_fail_all(dv_core_t *c, uint16_t ede, const char *text);
/* Release what `c` holds (no fetch may be in flight: dv_core_fail_all()
 * first; no query may be out).  Safe on a zeroed core. */
void dv_core_deinit(dv_core_t *c);

/*
 * Take a query object from `c`'s pool holding a copy of `wire` (counted
 * in flight until freed).  Returns NULL when the message is over 65535
 * bytes or memory is short.
 */
dv_query_t *dv_core_query_new(dv_core_t *c, const uint8_t *wire,
			      size_t len);

/*
 * Hand a query to its core (which takes ownership).  Returns:
 *  0            the query has been or will be answered through q->reply;
 *  DV_ESHORT,
 *  DV_ENOTQUERY the message was dropped without an answer (counted) and
 *               `q` is already freed.  Only these two drop.
 */
int dv_core_submit(dv_query_t *q);

/* Upstream results for a fetch (called by the pool through the report
 * the worker gave it, exactly once each fetch): the first good answer, or
 * the failure with the EDE to report.  The fetch is freed before these
 * return. */
void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r);
void dv_core_fetch_fail(dv_fetch_t *f, uint16_t ede, const char *text);

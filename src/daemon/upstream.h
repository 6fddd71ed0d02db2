#pragma once
/*
 * The worker's upstream pools (src/upstream/pool.h), one per upstream set
 * of the config (index 0 the top-level upstream: and fallback:, then one
 * per distinct groups.NAME.upstream), made from the worker: its loop, its
 * counters and its index (worker_pool.c).
 */
#include "src/config/config.h"
#include "src/core/stats.h"
#include "src/upstream/pool.h"

typedef struct dv_worker dv_worker_t;

/*
 * Make every pool of worker `w` from `cfg` (w->pools[0 ..
 * dv_config_upstream_sets(cfg) - 1], w->n_pools), reporting through
 * `report` (kept), and hand them to the worker's core.  The one place the
 * pools are built, so that a reload can build them again.  0, or -ENOMEM
 * (the pools made so far stay, for dv_worker_pools_free).
 */
int dv_worker_pools_new(dv_worker_t *w, const dv_config_t *cfg,
			const dv_pool_report_t *report);
/* dv_pool_start() of each pool (on the worker's thread). */
void dv_worker_pools_start(dv_worker_t *w);
/* Free every pool of `w` (none: no-op). */
void dv_worker_pools_free(dv_worker_t *w);

/* Upstream servers of all sets of `w` (set 0's first, then each set's,
 * local before fallback; the same in every worker). */
unsigned dv_worker_n_upstreams(const dv_worker_t *w);
/* dv_pool_stats_add() of server `i` (as above) of `w` into `u`. */
void dv_worker_upstream_stats_add(const dv_worker_t *w, unsigned i,
				  dv_upstream_stats_t *u);

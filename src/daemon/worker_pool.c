/*
 * The seam between a worker and its upstream pool: the pool (a lower
 * layer, src/upstream/) knows nothing of the worker, only the loop, the
 * counters and the index it is given here.
 */
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"

dv_pool_t *dv_pool_new(dv_worker_t *w, const dv_config_t *cfg,
		       const dv_pool_report_t *report)
{
	dv_pool_env_t env = {
		.loop = w->loop,
		.stats = &w->stats,
		.index = w->index,
	};
	return dv_pool_create(&env, cfg, report);
}

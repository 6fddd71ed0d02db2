/*
 * The seam between a worker and its upstream pools: the pool (a lower
 * layer, src/upstream/) knows nothing of the worker, only the loop, the
 * counters, the index and the upstream set it is given here.
 */
#include <errno.h>

#include "src/daemon/dnstap.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"

_Static_assert(DV_MAX_UPSTREAM_SETS <= DV_CORE_MAX_SETS, "the core reaches "
							 "every upstream set");

/* The pool's queries and answers, to dnstap (dnstap.resolver). */
static void observe(void *arg, const dv_pool_msg_t *m)
{
	dv_worker_t *w = arg;
	dv_dnstap_resolver(w->shared->dnstap, w->index, m, &w->stats);
}

int dv_worker_pools_new(dv_worker_t *w, const dv_config_t *cfg,
			const dv_pool_report_t *report)
{
	dv_pool_env_t env = {
		.loop = w->loop,
		.stats = &w->stats,
		.index = w->index,
	};
	if (w->shared && w->shared->dnstap && cfg->dnstap_resolver) {
		env.observe = observe;
		env.observe_arg = w;
	}
	unsigned n = dv_config_upstream_sets(cfg);
	for (unsigned s = 0; s < n; s++) {
		dv_config_upstream_set(cfg, s, &env.set);
		w->pools[s] = dv_pool_create(&env, cfg, report);
		if (!w->pools[s])
			return -ENOMEM;
		w->n_pools = s + 1;
	}
	dv_core_set_pools(&w->core, (void *const *)w->pools, w->n_pools,
			  &dv_pool_core_ops);
	return 0;
}

void dv_worker_pools_start(dv_worker_t *w)
{
	for (unsigned s = 0; s < w->n_pools; s++)
		dv_pool_start(w->pools[s]);
}

void dv_worker_pools_free(dv_worker_t *w)
{
	for (unsigned s = 0; s < w->n_pools; s++) {
		dv_pool_free(w->pools[s]);
		w->pools[s] = NULL;
	}
	w->n_pools = 0;
}

unsigned dv_worker_n_upstreams(const dv_worker_t *w)
{
	unsigned n = 0;
	for (unsigned s = 0; s < w->n_pools; s++)
		n += dv_pool_n_servers(w->pools[s]);
	return n;
}

void dv_worker_upstream_stats_add(const dv_worker_t *w, unsigned i,
				  dv_upstream_stats_t *u)
{
	for (unsigned s = 0; s < w->n_pools; s++) {
		unsigned n = dv_pool_n_servers(w->pools[s]);
		if (i < n) {
			dv_pool_stats_add(w->pools[s], i, u);
			return;
		}
		i -= n;
	}
}

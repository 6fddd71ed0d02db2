/*
 * The seam between a worker and its upstream pool: the pool (a lower
 * layer, src/upstream/) knows nothing of the worker, only the loop, the
 * counters and the index it is given here.
 */
#include "src/daemon/dnstap.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"

/* The pool's queries and answers, to dnstap (dnstap.resolver). */
static void observe(void *arg, const dv_pool_msg_t *m)
{
	dv_worker_t *w = arg;
	dv_dnstap_resolver(w->shared->dnstap, w->index, m, &w->stats);
}

dv_pool_t *dv_pool_new(dv_worker_t *w, const dv_config_t *cfg,
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
	return dv_pool_create(&env, cfg, report);
}

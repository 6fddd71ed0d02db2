/*
 * A worker applies a reloaded configuration on its own loop: the main
 * thread checked it whole (reload.c) and handed it over through the
 * worker's ev_async, so nothing here takes a lock on the query path.
 *
 *   - the upstream pool: when upstream:, fallback:, tls.ca or the pool and
 *     health settings changed, a new pool is built from the new config
 *     (dv_pool_new, the one place pools are made) and new fetches go to
 *     it; the old pool keeps its fetches in flight until each is answered
 *     or cancelled (a fetch always ends through the pool that started it,
 *     pool.h) and is freed when it has none.  Otherwise the pool stays,
 *     with its connections, and reads the new config.
 *   - listeners: one whose URL is in both configs stays as it is (its
 *     socket, its connections, the datagrams queued in it) and takes the
 *     new config's values (the transport's update op); one that is gone
 *     stops accepting (the transport's stop: what a drain does) and is
 *     closed once its connections have finished, or, without connections
 *     to count (udp://), once every query it took has had time to be
 *     answered (limits.query-timeout-ms); a new one is opened here.
 *   - the core's settings (limits.max-inflight, the query deadline,
 *     serve-stale, cached failures, prefetch): from the next query on;
 *     the handshake admission (its buckets kept): from the next
 *     handshake on.
 * The old config is dropped once nothing of the worker reads it: the
 * pools it built hold it until they are freed.  Then the worker hands the
 * config to the next one (w->reload_next): the sockets of a new listener
 * join their SO_REUSEPORT group in worker order, which DoQ's steering of
 * packets by connection ID relies on (transports/doq.c).
 */
#include "src/daemon/worker_reload.h"

#include <ev.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/clock.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/cfgref.h"
#include "src/daemon/upstream.h"

typedef struct old_pool {
	dv_pool_t *pools[DV_MAX_UPSTREAM_SETS];
	unsigned n_pools;
	const dv_config_t *cfg; /* held; NULL: the start config */
	struct old_pool *next;
} old_pool_t;

typedef struct {
	dv_listener_t *retired;
	old_pool_t *pools;
	ev_timer reap; /* while anything above is left */
} reload_t;

/* the core's answer and failure calls, as worker.c gives its first pool */
static const dv_pool_report_t core_report = {
	.answer = dv_core_fetch_answer,
	.fail = dv_core_fetch_fail,
};

/* workers apply a reload one after the other (worker.h reload_next), but
 * one may apply the next reload while another still opens listeners of
 * the previous: one at a time */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

#define FIELDS_DIFFER(a, b, from, to)                                          \
	(memcmp((const char *)(a) + offsetof(dv_config_t, from),               \
		(const char *)(b) + offsetof(dv_config_t, from),               \
		offsetof(dv_config_t, to) - offsetof(dv_config_t, from)) != 0)

/* What a pool is built from: its servers, its client TLS trust, its
 * connection and health settings. */
static bool pool_differs(const dv_config_t *a, const dv_config_t *b)
{
	return FIELDS_DIFFER(a, b, upstream, tls_cert) ||
	       strcmp(a->tls_ca, b->tls_ca) != 0 ||
	       FIELDS_DIFFER(a, b, upstream_connections, cache_size_bytes);
}

static reload_t *state(dv_worker_t *w)
{
	if (!w->reload)
		w->reload = calloc(1, sizeof(reload_t));
	return w->reload;
}

static void reap_cb(struct ev_loop *loop, ev_timer *t, int revents);

static void reap_arm(dv_worker_t *w, reload_t *r)
{
	if (ev_is_active(&r->reap))
		return;
	ev_timer_init(&r->reap, reap_cb, 0.1, 0.1);
	r->reap.data = w;
	ev_timer_start(w->loop, &r->reap);
}

static void old_pool_free(dv_worker_t *w, old_pool_t *o)
{
	/* the admin thread may still read a pool it took before the swap */
	pthread_mutex_lock(&w->pool_lock);
	for (unsigned i = 0; i < o->n_pools; i++)
		dv_pool_free(o->pools[i]);
	pthread_mutex_unlock(&w->pool_lock);
	dv_cfgref_drop(o->cfg);
	free(o);
}

/* Whether a retired listener is done: no connection left, and for one
 * without connections (udp://), the deadline of its last query past. */
static bool listener_done(dv_worker_t *w, dv_listener_t *l, uint64_t now)
{
	if (l->transport->open_conns)
		return l->transport->open_conns(w, l->state) == 0;
	return now >= l->retired_ms + w->cfg->query_timeout_ms + 500;
}

static void reap_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_worker_t *w = t->data;
	reload_t *r = w->reload;
	uint64_t now = dv_now_ms();
	(void)revents;
	for (dv_listener_t **pl = &r->retired; *pl;) {
		dv_listener_t *l = *pl;
		if (!listener_done(w, l, now)) {
			pl = &l->next;
			continue;
		}
		*pl = l->next;
		l->transport->close(w, l->state);
		free(l);
	}
	for (old_pool_t **po = &r->pools; *po;) {
		old_pool_t *o = *po;
		unsigned jobs = 0;
		for (unsigned i = 0; i < o->n_pools; i++)
			jobs += dv_pool_jobs(o->pools[i]);
		if (jobs) {
			po = &o->next;
			continue;
		}
		*po = o->next;
		dv_log_debug("worker %u: the replaced upstream pool has no "
			     "query left: closed",
			     w->index);
		old_pool_free(w, o);
	}
	if (!r->retired && !r->pools)
		ev_timer_stop(loop, t);
}

static void pools_set_config(dv_worker_t *w, const dv_config_t *cfg)
{
	for (unsigned i = 0; i < w->n_pools; i++)
		dv_pool_set_config(w->pools[i], cfg);
}

/* New fetches go to pools built from `next` (every set: the numbering is
 * the same, reload.c refuses a config that changes the groups' sets); the
 * old ones finish what they have.  When the new pools cannot be made, the
 * old ones stay. */
static void pools_apply(dv_worker_t *w, reload_t *r, const dv_config_t *old,
			const dv_config_t *next)
{
	if (!pool_differs(old, next)) {
		pools_set_config(w, next);
		return;
	}
	old_pool_t *o = calloc(1, sizeof(*o));
	if (o) {
		memcpy(o->pools, w->pools, sizeof(o->pools));
		o->n_pools = w->n_pools;
		memset(w->pools, 0, sizeof(w->pools));
		w->n_pools = 0;
		pthread_mutex_lock(&w->pool_lock);
		int ret = dv_worker_pools_new(w, next, &core_report);
		pthread_mutex_unlock(&w->pool_lock);
		if (ret == 0) {
			dv_worker_pools_start(w);
			o->cfg = w->cfg_ref; /* the old config: these read it */
			w->cfg_ref = NULL;
			o->next = r->pools;
			r->pools = o;
			reap_arm(w, r);
			return;
		}
		/* back to the pools in service */
		pthread_mutex_lock(&w->pool_lock);
		dv_worker_pools_free(w);
		memcpy(w->pools, o->pools, sizeof(w->pools));
		w->n_pools = o->n_pools;
		dv_core_set_pools(&w->core, (void *const *)w->pools, w->n_pools,
				  &dv_pool_core_ops);
		pthread_mutex_unlock(&w->pool_lock);
		free(o);
	}
	dv_log_error("worker %u: reload: cannot build the new upstream "
		     "pools (out of memory, or a client TLS context): "
		     "the upstreams stay as they were",
		     w->index);
	pools_set_config(w, next);
}

static int find_url(const dv_config_t *cfg, const dv_url_t *u)
{
	for (unsigned i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].scheme == u->scheme &&
		    strcmp(cfg->listen[i].text, u->text) == 0)
			return (int)i;
	return -1;
}

/* Listeners whose URL is gone stop; the others learn their new index. */
static void listeners_retire(dv_worker_t *w, reload_t *r,
			     const dv_config_t *old, const dv_config_t *next)
{
	uint64_t now = dv_now_ms();
	for (dv_listener_t **pl = &w->listeners; *pl;) {
		dv_listener_t *l = *pl;
		int k = find_url(next, &old->listen[l->index]);
		if (k >= 0) {
			l->index = (unsigned)k;
			pl = &l->next;
			continue;
		}
		*pl = l->next;
		if (w->index == 0)
			dv_log_info("reload: %s (%s) stops accepting; its "
				    "connections finish",
				    old->listen[l->index].text,
				    l->transport->name);
		if (l->transport->stop)
			l->transport->stop(w, l->state);
		l->retired_ms = now;
		l->next = r->retired;
		r->retired = l;
		reap_arm(w, r);
	}
}

/* After w->cfg is the new config: the kept listeners take its values,
 * the new URLs are opened. */
static void listeners_open(dv_worker_t *w, const dv_config_t *old)
{
	const dv_config_t *cfg = w->cfg;
	for (dv_listener_t *l = w->listeners; l; l = l->next)
		if (l->transport->update)
			l->transport->update(w, l->state,
					     &cfg->listen[l->index]);
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		const dv_url_t *url = &cfg->listen[i];
		if (find_url(old, url) >= 0)
			continue;
		const dv_transport_t *t;
		for (unsigned n = 0; (t = dv_transport_find(url->scheme, n));
		     n++) {
			dv_listener_t *l = calloc(1, sizeof(*l));
			int ret = -ENOMEM;
			if (l) {
				pthread_mutex_lock(&open_lock);
				ret = t->listen(w, url, &l->state);
				pthread_mutex_unlock(&open_lock);
			}
			if (ret < 0) {
				free(l);
				dv_log_error("worker %u: reload: listener %s "
					     "(%s): %s; the others serve",
					     w->index, url->text, t->name,
					     dv_strerror(ret));
				continue;
			}
			l->transport = t;
			l->index = i;
			l->next = w->listeners;
			w->listeners = l;
			if (w->index == 0)
				dv_log_info("reload: listening on %s (%s)",
					    url->text, t->name);
		}
	}
}

static void core_apply(dv_worker_t *w, const dv_config_t *cfg)
{
	dv_core_conf_t *c = &w->core.conf;
	c->max_inflight = cfg->max_inflight;
	c->query_timeout_ms = cfg->query_timeout_ms;
	c->stale_max_age_s = cfg->cache_stale_max_age_s;
	c->stale_answer_timeout_ms = cfg->cache_stale_answer_timeout_ms;
	c->servfail_ttl_s = cfg->cache_servfail_ttl_s;
	c->prefetch_hits = cfg->cache_prefetch_hits;
	c->prefetch_window_pct = cfg->cache_prefetch_window_pct;
	dv_worker_hs_limit_apply(w, cfg);
}

void dv_worker_reload_apply(dv_worker_t *w)
{
	const dv_config_t *next =
		__atomic_exchange_n(&w->pending_cfg, NULL, __ATOMIC_ACQ_REL);
	if (!next)
		return;
	reload_t *r = state(w);
	if (w->core.draining || !r) {
		if (!r)
			dv_log_error("worker %u: reload: out of memory, the "
				     "configuration stays",
				     w->index);
		if (w->reload_next)
			dv_worker_reconfigure(w->reload_next, next);
		__atomic_store_n(&w->applied_cfg, next, __ATOMIC_RELEASE);
		dv_cfgref_drop(next);
		return;
	}
	const dv_config_t *old = w->cfg;
	pools_apply(w, r, old, next);
	listeners_retire(w, r, old, next);
	const dv_config_t *old_ref = w->cfg_ref;
	pthread_mutex_lock(&w->pool_lock); /* the admin thread reads w->cfg */
	w->cfg = next;
	w->cfg_ref = next;
	pthread_mutex_unlock(&w->pool_lock);
	listeners_open(w, old);
	core_apply(w, next);
	/* the next worker binds its sockets of new listeners after ours */
	if (w->reload_next)
		dv_worker_reconfigure(w->reload_next, next);
	__atomic_store_n(&w->applied_cfg, next, __ATOMIC_RELEASE);
	/* nothing of the worker reads the old config now, but a pool
	 * replaced above (which took its reference) */
	dv_cfgref_drop(old_ref);
}

unsigned dv_worker_retired_conns(dv_worker_t *w)
{
	reload_t *r = w->reload;
	unsigned n = 0;
	for (dv_listener_t *l = r ? r->retired : NULL; l; l = l->next)
		if (l->transport->open_conns)
			n += l->transport->open_conns(w, l->state);
	return n;
}

void dv_worker_retired_close(dv_worker_t *w)
{
	reload_t *r = w->reload;
	while (r && r->retired) {
		dv_listener_t *l = r->retired;
		r->retired = l->next;
		l->transport->close(w, l->state);
		free(l);
	}
}

void dv_worker_reload_free(dv_worker_t *w)
{
	reload_t *r = w->reload;
	if (r) {
		dv_worker_retired_close(w);
		if (w->loop)
			ev_timer_stop(w->loop, &r->reap);
		while (r->pools) {
			old_pool_t *o = r->pools;
			r->pools = o->next;
			old_pool_free(w, o);
		}
		free(r);
		w->reload = NULL;
	}
	dv_cfgref_drop(
		__atomic_exchange_n(&w->pending_cfg, NULL, __ATOMIC_ACQ_REL));
}

void dv_worker_reconfigure(dv_worker_t *w, const dv_config_t *cfg)
{
	dv_cfgref_hold(cfg);
	dv_cfgref_drop(
		__atomic_exchange_n(&w->pending_cfg, cfg, __ATOMIC_ACQ_REL));
	dv_worker_wake(w);
}

void dv_worker_pool_lock(dv_worker_t *w)
{
	pthread_mutex_lock(&w->pool_lock);
}

void dv_worker_pool_unlock(dv_worker_t *w)
{
	pthread_mutex_unlock(&w->pool_lock);
}

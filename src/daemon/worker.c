/*
 * Workers: a thread, a libev loop and everything that loop serves.
 * The main thread talks to a worker only through an ev_async and one
 * command word.
 */
#include "src/daemon/worker.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "src/core/clock.h"
#include "src/core/core.h"
#include "src/daemon/dnstap.h"
#include "src/daemon/ev_timers.h"
#include "src/core/errors.h"
#include "src/core/hs_limit.h"
#include "src/core/log.h"
#include "src/policy/policy.h"
#include "src/tls/tls.h"
#include "src/daemon/querylog.h"
#include "src/daemon/upstream.h"
#include "src/daemon/cfgref.h"
#include "src/daemon/worker_reload.h"

enum { CMD_NONE, CMD_DRAIN, CMD_STOP };

typedef struct {
	ev_async async;
	ev_timer heartbeat;
	ev_timer drain_timer;
	uint64_t drain_deadline_ms;
	/* a loop turn for the policy's list snapshots (policy.h) */
	ev_check turn_begin;
	ev_prepare turn_end;
} worker_ctl_t;

static void turn_begin_cb(struct ev_loop *loop, ev_check *c, int revents)
{
	(void)loop;
	(void)revents;
	dv_policy_worker_enter(((dv_worker_t *)c->data)->policy);
}

static void turn_end_cb(struct ev_loop *loop, ev_prepare *c, int revents)
{
	(void)loop;
	(void)revents;
	dv_policy_worker_leave(((dv_worker_t *)c->data)->policy);
}

dv_query_t *dv_query_new(dv_worker_t *w, const uint8_t *wire, size_t len)
{
	return dv_core_query_new(&w->core, wire, len);
}

uint8_t dv_worker_listener(const dv_worker_t *w, const dv_url_t *url)
{
	const dv_config_t *cfg = w->cfg;
	for (unsigned i = 0; i < cfg->n_listen && i < 255; i++)
		if (url == &cfg->listen[i])
			return (uint8_t)(i + 1);
	return 0;
}

uint64_t dv_worker_now_ms(dv_worker_t *w)
{
	(void)w;
	return dv_now_ms();
}

/*
 * The handshake limiter: limits.tls-handshakes-per-ip and
 * limits.tls-handshake-burst are for all workers together, and
 * SO_REUSEPORT spreads one address's connections over the workers by
 * port, so each worker gets its share (rounded up).  The pressure is per
 * worker.  doh.trusted-proxies are exempt as well as
 * limits.handshake-exempt: a proxy is many clients behind one address.
 */
_Static_assert(DV_MAX_HANDSHAKE_EXEMPT + DV_DOH_MAX_TRUSTED_PROXIES <=
		       DV_HS_MAX_EXEMPT,
	       "the limiter keeps every exempt prefix");

/* Where the core's answers go for the logs: the query log and dnstap,
 * each with this worker's own ring or queue. */
static void log_answered(void *arg, const dv_query_t *q, const uint8_t *wire,
			 size_t len, uint64_t now_us)
{
	dv_worker_t *w = arg;
	const dv_shared_t *sh = w->shared;
	if (sh->qlog)
		dv_qlog_answered(sh->qlog, w->index, q, wire, len, now_us,
				 &w->stats);
	if (sh->dnstap)
		dv_dnstap_answered(sh->dnstap, w->index, q, wire, len,
				   now_us, &w->stats);
}

static const dv_core_log_ops_t core_log_ops = {.answered = log_answered};

/* Where the pool's fetches end: the core. */
static const dv_pool_report_t core_report = {
	.answer = dv_core_fetch_answer,
	.fail = dv_core_fetch_fail,
};

/* The worker's core: what it takes from the config, the loop's timers,
 * the shared cache, the worker's counters.  0 or -ENOMEM. */
static int core_init(dv_worker_t *w)
{
	const dv_config_t *cfg = w->cfg;
	dv_core_conf_t conf = {
		.max_inflight = cfg->max_inflight,
		.query_timeout_ms = cfg->query_timeout_ms,
		.stale_max_age_s = cfg->cache_stale_max_age_s,
		.stale_answer_timeout_ms = cfg->cache_stale_answer_timeout_ms,
		.servfail_ttl_s = cfg->cache_servfail_ttl_s,
		.prefetch_hits = cfg->cache_prefetch_hits,
		.prefetch_window_pct = cfg->cache_prefetch_window_pct,
	};
	if (getrandom(&conf.hash_seed, sizeof(conf.hash_seed), 0) !=
	    sizeof(conf.hash_seed))
		conf.hash_seed = dv_now_ms() ^ (uint64_t)(uintptr_t)w;
	dv_timers_t timers = {.ops = &dv_ev_timer_ops, .ctx = w->loop};
	return dv_core_init(&w->core, &conf, &timers, w->shared->cache,
			    &w->stats);
}

/* The worker's share of the handshake admission settings of `cfg` (the
 * exempt prefixes into `exempt`, which `conf` points to). */
static void hs_limit_conf(const dv_worker_t *w, const dv_config_t *cfg,
			  dv_hs_limit_conf_t *conf, dv_netmask_t *exempt)
{
	unsigned n = w->shared->n_workers ? w->shared->n_workers : 1;
	unsigned n_exempt = 0;
	for (unsigned i = 0; i < cfg->n_handshake_exempt; i++)
		exempt[n_exempt++] = cfg->handshake_exempt[i];
	for (unsigned i = 0; i < cfg->n_doh_trusted_proxies; i++)
		exempt[n_exempt++] = cfg->doh_trusted_proxies[i];
	*conf = (dv_hs_limit_conf_t){
		.rate = (cfg->tls_handshakes_per_ip + n - 1) / n,
		.burst = (cfg->tls_handshake_burst + n - 1) / n,
		.pressure = cfg->handshake_pressure,
		.exempt = exempt,
		.n_exempt = n_exempt,
	};
}

#define HS_EXEMPT_MAX (DV_MAX_HANDSHAKE_EXEMPT + DV_DOH_MAX_TRUSTED_PROXIES)

static dv_hs_limit_t *hs_limit_new(dv_worker_t *w)
{
	dv_netmask_t exempt[HS_EXEMPT_MAX];
	dv_hs_limit_conf_t conf;
	hs_limit_conf(w, w->cfg, &conf, exempt);
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = dv_now_ms() ^ (uint64_t)(uintptr_t)w;
	return dv_hs_limit_new(&conf, seed, &w->stats);
}

void dv_worker_hs_limit_apply(dv_worker_t *w, const dv_config_t *cfg)
{
	dv_netmask_t exempt[HS_EXEMPT_MAX];
	dv_hs_limit_conf_t conf;
	hs_limit_conf(w, cfg, &conf, exempt);
	dv_hs_limit_reconf(w->hs_limit, &conf);
}

static void stop_listeners(dv_worker_t *w)
{
	for (dv_listener_t *l = w->listeners; l; l = l->next)
		if (l->transport->stop)
			l->transport->stop(w, l->state);
}

static void set_collecting(dv_worker_t *w, bool on)
{
	if (w->collecting == on)
		return;
	w->collecting = on;
	ev_set_io_collect_interval(w->loop, on ? DV_WORKER_COLLECT_S : 0.);
	if (on)
		DV_STAT_INC(&w->stats, udp_collecting);
}

void dv_worker_datagrams(dv_worker_t *w, unsigned n)
{
	double now = ev_now(w->loop);
	w->dg_count += n;
	if (now - w->dg_since < 0.01)
		return;
	double rate = w->dg_count / (now - w->dg_since);
	double on = w->cfg->udp_collect_rate;
	set_collecting(w, on > 0 && rate >= (w->collecting ? 0.8 * on : on));
	w->dg_count = 0;
	w->dg_since = now;
}

/* The loop turns: say so to /healthz.  And stop collecting: the next
 * wake-up that finds datagrams piled up starts it again. */
static void heartbeat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dv_worker_t *w = t->data;
	__atomic_store_n(&w->heartbeat_ms, dv_now_ms(), __ATOMIC_RELAXED);
	set_collecting(w, false);
}

/* Client connections of the stopped listeners not closed yet. */
static unsigned open_conns(dv_worker_t *w)
{
	unsigned n = 0;
	for (dv_listener_t *l = w->listeners; l; l = l->next)
		if (l->transport->open_conns)
			n += l->transport->open_conns(w, l->state);
	return n + dv_worker_retired_conns(w);
}

/* What a drain cut short: counted, and said once per worker. */
static void count_cut(dv_worker_t *w, const char *why)
{
	unsigned q = w->core.inflight, c = open_conns(w);
	DV_STAT_ADD(&w->stats, drain_cut_queries, q);
	DV_STAT_ADD(&w->stats, drain_cut_connections, c);
	if (q || c)
		dv_log_warn("worker %u: %s with %u queries in flight (answered "
			    "SERVFAIL now) and %u client connections open "
			    "(closed now)",
			    w->index, why, q, c);
}

/* The drain is over when every query is answered and every client
 * connection has said goodbye (TLS close_notify, HTTP/2 GOAWAY, DoQ
 * CONNECTION_CLOSE), or at drain.timeout-ms. */
static void drain_check_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	dv_worker_t *w = t->data;
	worker_ctl_t *ctl = w->async;
	(void)revents;
	if (w->core.inflight == 0 && open_conns(w) == 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (dv_now_ms() >= ctl->drain_deadline_ms) {
		count_cut(w, "drain.timeout-ms ran out");
		ev_break(loop, EVBREAK_ALL);
	}
}

static void async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	dv_worker_t *w = a->data;
	worker_ctl_t *ctl = w->async;
	int cmd = __atomic_exchange_n(&w->command, CMD_NONE, __ATOMIC_ACQ_REL);
	(void)revents;
	if (cmd != CMD_STOP)
		dv_worker_reload_apply(w);
	if (cmd == CMD_STOP) {
		count_cut(w, "stopped at once");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (cmd == CMD_DRAIN && !w->core.draining) {
		w->core.draining = true;
		ctl->drain_deadline_ms = dv_now_ms() + w->cfg->drain_timeout_ms;
		stop_listeners(w);
		ev_timer_init(&ctl->drain_timer, drain_check_cb, 0., 0.02);
		ctl->drain_timer.data = w;
		ev_timer_again(loop, &ctl->drain_timer);
	}
}

dv_worker_t *dv_worker_new(unsigned index, const dv_config_t *cfg,
			   const dv_shared_t *shared, char *err,
			   size_t err_len)
{
	dv_worker_t *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	w->index = index;
	w->cfg = cfg;
	w->shared = shared;
	pthread_mutex_init(&w->pool_lock, NULL);
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	worker_ctl_t *ctl = calloc(1, sizeof(*ctl));
	w->async = ctl;
	int core_ret = core_init(w);
	w->hs_limit = hs_limit_new(w);
	if (!w->loop || !ctl || core_ret < 0 || !w->hs_limit) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	ev_async_init(&ctl->async, async_cb);
	ctl->async.data = w;
	ev_async_start(w->loop, &ctl->async);
	ev_timer_init(&ctl->heartbeat, heartbeat_cb, 1., 1.);
	ctl->heartbeat.data = w;
	ev_timer_start(w->loop, &ctl->heartbeat);

	if (shared->policy) {
		w->policy = dv_policy_worker_new(shared->policy);
		if (!w->policy) {
			snprintf(err, err_len, "out of memory");
			goto fail;
		}
		dv_core_set_policy(&w->core, w->policy, &dv_policy_core_ops);
		/* the turn begins before any other watcher of the loop's
		 * wake-up runs and ends after every other prepare */
		ev_check_init(&ctl->turn_begin, turn_begin_cb);
		ev_set_priority(&ctl->turn_begin, EV_MAXPRI);
		ctl->turn_begin.data = w;
		ev_check_start(w->loop, &ctl->turn_begin);
		ev_prepare_init(&ctl->turn_end, turn_end_cb);
		ev_set_priority(&ctl->turn_end, EV_MINPRI);
		ctl->turn_end.data = w;
		ev_prepare_start(w->loop, &ctl->turn_end);
	}
	if (shared->qlog || shared->dnstap)
		dv_core_set_log(&w->core, w, &core_log_ops);
	if (dv_worker_pools_new(w, cfg, &core_report) < 0) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		const dv_url_t *url = &cfg->listen[i];
		const dv_transport_t *t;
		for (unsigned n = 0; (t = dv_transport_find(url->scheme, n));
		     n++) {
			dv_listener_t *l = calloc(1, sizeof(*l));
			if (!l) {
				snprintf(err, err_len, "out of memory");
				goto fail;
			}
			int ret = t->listen(w, url, &l->state);
			if (ret < 0) {
				free(l);
				snprintf(err, err_len, "listener %s (%s): %s",
					 url->text, t->name, dv_strerror(ret));
				goto fail;
			}
			l->transport = t;
			l->index = i;
			l->next = w->listeners;
			w->listeners = l;
		}
	}
	return w;
fail:
	dv_worker_free(w);
	return NULL;
}

/*
 * Answer whatever is still waiting (a drain that was cut short, or a stop):
 * every accepted query gets its one reply, as far as its socket still
 * takes it; then close the listeners and their connections.  On the
 * worker's thread once its loop has ended (so that its sockets close, and
 * what they count is counted, before main writes the final counters), or
 * by dv_worker_free if it never ran.
 */
static void close_listeners(dv_worker_t *w)
{
	dv_core_fail_all(&w->core, DV_EDE_OTHER, "dnsveil is shutting down");
	dv_listener_t *l = w->listeners;
	while (l) {
		dv_listener_t *next = l->next;
		l->transport->close(w, l->state);
		free(l);
		l = next;
	}
	w->listeners = NULL;
	dv_worker_retired_close(w);
}

static void *worker_main(void *arg)
{
	dv_worker_t *w = arg;
	__atomic_store_n(&w->heartbeat_ms, dv_now_ms(), __ATOMIC_RELAXED);
	dv_worker_pools_start(w);
	/* runs until a stop or drain command breaks it (the async watcher
	 * keeps the loop alive) */
	ev_run(w->loop, 0);
	close_listeners(w);
	if (w->shared->tls_dot || w->shared->tls_doh)
		dv_tls_thread_exit();
	__atomic_store_n(&w->ended, true, __ATOMIC_RELEASE);
	return NULL;
}

int dv_worker_start(dv_worker_t *w)
{
	int ret = pthread_create(&w->thread, NULL, worker_main, w);
	if (ret)
		return -ret;
	w->running = true;
	return 0;
}

void dv_worker_drain(dv_worker_t *w)
{
	worker_ctl_t *ctl = w->async;
	int expected = CMD_NONE;
	__atomic_compare_exchange_n(&w->command, &expected, CMD_DRAIN, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	ev_async_send(w->loop, &ctl->async);
}

void dv_worker_stop(dv_worker_t *w)
{
	worker_ctl_t *ctl = w->async;
	__atomic_store_n(&w->command, CMD_STOP, __ATOMIC_RELEASE);
	ev_async_send(w->loop, &ctl->async);
}

bool dv_worker_ended(const dv_worker_t *w)
{
	return !w->running || __atomic_load_n(&w->ended, __ATOMIC_ACQUIRE);
}

void dv_worker_join(dv_worker_t *w)
{
	if (w->running)
		pthread_join(w->thread, NULL);
	w->running = false;
}

void dv_worker_free(dv_worker_t *w)
{
	if (!w)
		return;
	close_listeners(w); /* if it never ran */
	dv_worker_reload_free(w); /* the pools a reload replaced */
	dv_worker_pools_free(w);
	dv_hs_limit_free(w->hs_limit); /* after the listeners that use it */
	worker_ctl_t *ctl = w->async;
	if (ctl && w->loop) {
		ev_async_stop(w->loop, &ctl->async);
		ev_timer_stop(w->loop, &ctl->heartbeat);
		ev_timer_stop(w->loop, &ctl->drain_timer);
		ev_check_stop(w->loop, &ctl->turn_begin);
		ev_prepare_stop(w->loop, &ctl->turn_end);
	}
	free(ctl);
	dv_core_deinit(&w->core);
	dv_policy_worker_free(w->policy);
	if (w->loop)
		ev_loop_destroy(w->loop);
	dv_cfgref_drop(w->cfg_ref);
	pthread_mutex_destroy(&w->pool_lock);
	free(w);
}

void dv_worker_wake(dv_worker_t *w)
{
	worker_ctl_t *ctl = w->async;
	ev_async_send(w->loop, &ctl->async);
}

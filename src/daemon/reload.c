/*
 * Configuration reload: check everything first, then apply the live
 * parts, and say which parts wait for a restart (reload.h).
 */
#include "src/daemon/reload.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/reload_net.h"
#include "src/policy/policy.h"
#include "src/tls/cert_names.h"
#include "src/tls/quic_tls.h"
#include "src/tls/tls.h"

static bool wants_tls(const dv_config_t *cfg)
{
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		dv_scheme_t s = cfg->listen[i].scheme;
		if (s == DV_SCHEME_TLS || s == DV_SCHEME_HTTPS ||
		    s == DV_SCHEME_QUIC)
			return true;
	}
	return false;
}

/*
 * The certificate and key as the listeners will load them, parsed by both
 * libraries without touching the contexts in service: a file that does not
 * parse or a key that is not the certificate's refuses the whole reload.
 */
static int check_certs(const dv_reload_t *r, const dv_config_t *next, char *err,
		       size_t err_len)
{
	if (!wants_tls(next))
		return 0;
	char why[900];
	/* the listeners read the running tls.client-ca again with their
	 * certificate (a new path or mode waits for a restart) */
	const char *ca = r->running->tls_client_ca;
	dv_quic_tls_ctx_t *q = dv_quic_tls_server_ctx_new(
		next->tls_cert, next->tls_key, "doq", false, why, sizeof(why));
	if (!q)
		goto fail;
	int ret = dv_quic_tls_server_client_ca(q, ca, false, why, sizeof(why));
	dv_quic_tls_ctx_free(q);
	if (ret)
		goto fail;
	if (r->tls_ready) {
		dv_tls_ctx_t *t = dv_tls_server_new(
			next->tls_cert, next->tls_key, NULL, why, sizeof(why));
		if (!t)
			goto fail;
		ret = dv_tls_server_client_ca(t, ca, false, why, sizeof(why));
		dv_tls_ctx_free(t);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	snprintf(err, err_len,
		 "%s: tls.cert, tls.key: TLS reload refused, keeping the old "
		 "certificate: %s",
		 next->source[0] ? next->source : "command line", why);
	return DV_ECONFIG;
}

/* New pair for new connections of every TLS listener.  A file changed
 * between the check and now: that context keeps its pair (error). */
static int apply_certs(const dv_reload_t *r, const dv_config_t *next,
		       const char *why_now, char *err, size_t err_len)
{
	dv_shared_t *sh = r->shared;
	dv_tls_ctx_t *ctxs[] = { sh->tls_dot, sh->tls_doh };
	char why[900];
	int ret = 0;
	for (size_t i = 0; i < sizeof(ctxs) / sizeof(ctxs[0]); i++)
		if (ctxs[i] && !ret)
			ret = dv_tls_server_reload(ctxs[i], next->tls_cert,
						   next->tls_key, why,
						   sizeof(why));
	if (!ret && sh->tls_doq)
		ret = dv_quic_tls_server_reload(sh->tls_doq, next->tls_cert,
						next->tls_key, why,
						sizeof(why));
	if (ret) {
		snprintf(err, err_len,
			 "tls.cert, tls.key: TLS reload refused, keeping the "
			 "old certificate: %s",
			 why);
		return DV_ECONFIG;
	}
	if (sh->tls_dot || sh->tls_doh || sh->tls_doq)
		dv_log_info("%s: TLS certificate %s reloaded for %s%s%s",
			    why_now, next->tls_cert, sh->tls_dot ? "DoT " : "",
			    sh->tls_doh ? "DoH " : "",
			    sh->tls_doq ? "DoQ" : "");
	return 0;
}

/* Sections that only a restart applies, as [from, to) field ranges of
 * dv_config_t: compared whole (both configs start from a zeroed struct).
 * listen, upstream/fallback, tls.ca, limits,
 * doq (but early data), doh, proxy-protocol.from, the pool and health
 * settings and cache (but its size and shards) are live: worker_reload.c,
 * transports' update op. */
#define RANGE(a, b) offsetof(dv_config_t, a), offsetof(dv_config_t, b)
static const struct {
	const char *name;
	size_t from, to;
} restart_only[] = {
	{ "workers", RANGE(workers, log_level) },
	{ "log.queries/log.query-*/dnstap", RANGE(log_queries, listen) },
	{ "tls.ticket-rotation-s/tls.ticket-key-file/tls.client-ca/"
	  "tls.client-cert",
	  RANGE(tls_ticket_rotation_s, tcp_max_connections) },
	{ "doq.early-data", RANGE(doq_early_data, doq_token_lifetime_s) },
	{ "admin", RANGE(admin_listen, drain_delay_ms) },
	{ "user/group", RANGE(user, upstream_connections) },
	{ "cache.size/cache.shards", RANGE(cache_size_bytes, cache_min_ttl) },
	/* lists:, groups:, clients:, internal:, policy.*, ddr.* (up to
	 * `source`) reload live: policy_prepare(); groups.NAME.upstream and
	 * .fallback: check_group_sets() */
};
#undef RANGE

/* Whether the groups' own resolvers (groups.NAME.upstream/fallback, and
 * so the upstream sets and each worker's pools) differ: they take effect
 * on restart, whatever else of the groups a reload applies. */
static bool group_upstreams_changed(const dv_config_t *cur,
				    const dv_config_t *next)
{
	if (dv_config_upstream_sets(cur) != dv_config_upstream_sets(next))
		return true;
	for (unsigned s = 1; s < dv_config_upstream_sets(cur); s++) {
		dv_upstream_set_t a, b;
		dv_config_upstream_set(cur, s, &a);
		dv_config_upstream_set(next, s, &b);
		if (a.n_upstream != b.n_upstream ||
		    a.n_fallback != b.n_fallback ||
		    memcmp(a.upstream, b.upstream,
			   a.n_upstream * sizeof(*a.upstream)) != 0 ||
		    memcmp(a.fallback, b.fallback,
			   a.n_fallback * sizeof(*a.fallback)) != 0)
			return true;
	}
	/* a group moved to another set (or named one) */
	unsigned n = cur->n_groups < next->n_groups ? cur->n_groups
						    : next->n_groups;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(cur->groups[i].name, next->groups[i].name) == 0 &&
		    cur->groups[i].upstream_set != next->groups[i].upstream_set)
			return true;
	return false;
}

/* The groups' upstream sets are numbered once, at start: the pools of a
 * reload are built with the running numbering, so a change to them is
 * refused whole rather than applied in part. */
static int check_group_sets(dv_reload_t *r, const dv_config_t *next,
			    char *err, size_t err_len)
{
	if (!group_upstreams_changed(dv_reload_current(r), next))
		return 0;
	snprintf(err, err_len,
		 "%s: groups.*.upstream/fallback: a group's upstream set "
		 "changed, which takes a restart",
		 next->source[0] ? next->source : "command line");
	return DV_ECONFIG;
}

static void say_restart(const dv_config_t *cur, const dv_config_t *next)
{
	char names[512] = "";
	size_t len = 0;
	for (size_t i = 0; i < sizeof(restart_only) / sizeof(restart_only[0]);
	     i++) {
		const char *a = (const char *)cur + restart_only[i].from;
		const char *b = (const char *)next + restart_only[i].from;
		if (memcmp(a, b, restart_only[i].to - restart_only[i].from) ==
		    0)
			continue;
		int n = snprintf(names + len, sizeof(names) - len, "%s%s",
				 len ? ", " : "", restart_only[i].name);
		if (n > 0 && (size_t)n < sizeof(names) - len)
			len += (size_t)n;
	}
	if (len)
		dv_log_warn("SIGHUP: changed in the file but not applied, "
			    "takes effect on restart: %s",
			    names);
}

/*
 * The whole policy of `next` (groups, clients, lists, records, internal
 * names, DDR checked against next's certificate), built off the query
 * path without touching the one in use: *out for policy_commit() or
 * dv_policy_reload_discard().  0 or DV_ECONFIG with `err`.
 */
static int policy_prepare(dv_reload_t *r, const dv_config_t *next,
			  dv_policy_state_t **out, char *err, size_t err_len)
{
	*out = NULL;
	if (!r->policy)
		return 0;
	dv_cert_names_t names = { 0 };
	char why[900];
	if (next->tls_cert[0] &&
	    dv_tls_cert_names(next->tls_cert, &names, why, sizeof(why)) != 0)
		memset(&names, 0, sizeof(names));
	if (dv_policy_reload_prepare(r->policy, next, &names, out, why,
				     sizeof(why)) != 0) {
		snprintf(err, err_len, "%s: %s: policy reload refused",
			 next->source[0] ? next->source : "command line", why);
		return DV_ECONFIG;
	}
	return 0;
}

/* Swap the prepared policy in and keep its part of the config (the
 * workers' next loop turns read it). */
static void policy_commit(dv_reload_t *r, const dv_config_t *next,
			  dv_policy_state_t *st)
{
	if (!st)
		return;
	dv_policy_reload_commit(r->policy, st);
	if (next == r->running)
		return;
	size_t from = offsetof(dv_config_t, lists);
	size_t to = offsetof(dv_config_t, source);
	memcpy((char *)r->running + from, (const char *)next + from, to - from);
}

int dv_reload_apply(dv_reload_t *r, const dv_config_t *next, char *err,
		    size_t err_len)
{
	dv_config_t *cur = r->running;
	int ret = check_group_sets(r, next, err, err_len);
	if (!ret)
		ret = dv_reload_net_check(r, next, err, err_len);
	if (!ret)
		ret = check_certs(r, next, err, err_len);
	dv_policy_state_t *pol = NULL;
	if (!ret)
		ret = policy_prepare(r, next, &pol, err, err_len);
	if (!ret) {
		ret = apply_certs(r, next, "SIGHUP", err, err_len);
		if (ret && pol)
			dv_policy_reload_discard(r->policy, pol);
	}
	if (ret) {
		dv_reload_refused(r, err);
		return ret;
	}
	say_restart(dv_reload_current(r), next);
	policy_commit(r, next, pol);
	/* the live parts, into the running configuration */
	dv_log_level = next->log_level;
	dv_log_format = (dv_log_format_t)next->log_format;
	if (r->shared->cache) {
		dv_cache_set_ttl_caps(r->shared->cache, next->cache_min_ttl,
				      next->cache_max_ttl,
				      next->cache_negative_max_ttl);
		cur->cache_min_ttl = next->cache_min_ttl;
		cur->cache_max_ttl = next->cache_max_ttl;
		cur->cache_negative_max_ttl = next->cache_negative_max_ttl;
	}
	cur->log_level = next->log_level;
	cur->log_format = next->log_format;
	memcpy(cur->tls_cert, next->tls_cert, sizeof(cur->tls_cert));
	memcpy(cur->tls_key, next->tls_key, sizeof(cur->tls_key));
	__atomic_store_n(&cur->drain_delay_ms, next->drain_delay_ms,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&cur->drain_timeout_ms, next->drain_timeout_ms,
			 __ATOMIC_RELAXED);
	/* listeners, upstreams, limits, doh, doq, cache: to the workers */
	dv_reload_net_apply(r, next);
	if (r->policy && next->n_lists) {
		dv_log_info("SIGHUP: fetching and reading every list again");
		dv_policy_refresh_now(r->policy);
	}
	dv_reload_stats_t *st = r->stats;
	__atomic_add_fetch(&st->successes, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&st->last_success_s, (uint64_t)time(NULL),
			 __ATOMIC_RELAXED);
	static const char *const level[] = { "error", "warn", "info", "debug" };
	dv_log_info("SIGHUP: configuration checked and reloaded: %s "
		    "(log-level %s)",
		    next->source[0] ? next->source : "(command line)",
		    level[next->log_level & 3]);
	dv_admin_reload_done(st, true, NULL);
	return 0;
}

void dv_reload_refused(dv_reload_t *r, const char *err)
{
	dv_log_error("SIGHUP: configuration refused, the running one stays "
		     "in force: %s",
		     err);
	__atomic_add_fetch(&r->stats->failures, 1, __ATOMIC_RELAXED);
	dv_admin_reload_done(r->stats, false, err);
}

void dv_reload_certs(dv_reload_t *r)
{
	char err[1024];
	dv_policy_state_t *pol = NULL;
	int ret = check_certs(r, r->running, err, sizeof(err));
	/* DDR follows the new certificate (its IP SANs, its first name) */
	if (!ret)
		ret = policy_prepare(r, r->running, &pol, err, sizeof(err));
	if (!ret) {
		ret = apply_certs(r, r->running,
				  "tls.cert/tls.key changed on disk", err,
				  sizeof(err));
		if (ret && pol)
			dv_policy_reload_discard(r->policy, pol);
	}
	if (!ret)
		policy_commit(r, r->running, pol);
	if (ret) {
		dv_log_error("tls.cert/tls.key changed on disk: refused, the "
			     "certificate in service stays (the next change "
			     "tries again): %s",
			     err);
		__atomic_add_fetch(&r->stats->failures, 1, __ATOMIC_RELAXED);
		dv_admin_reload_done(r->stats, false, err);
		return;
	}
	__atomic_add_fetch(&r->stats->successes, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->stats->last_success_s, (uint64_t)time(NULL),
			 __ATOMIC_RELAXED);
	dv_admin_reload_done(r->stats, true, NULL);
}

void dv_reload_started(dv_reload_t *r)
{
	__atomic_store_n(&r->stats->last_success_s, (uint64_t)time(NULL),
			 __ATOMIC_RELAXED);
}

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
	dv_quic_tls_ctx_t *q = dv_quic_tls_server_ctx_new(
		next->tls_cert, next->tls_key, "doq", false, why, sizeof(why));
	if (!q)
		goto fail;
	dv_quic_tls_ctx_free(q);
	if (r->tls_ready) {
		dv_tls_ctx_t *t = dv_tls_server_new(
			next->tls_cert, next->tls_key, NULL, why, sizeof(why));
		if (!t)
			goto fail;
		dv_tls_ctx_free(t);
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
 * dv_config_t: compared whole (both configs start from a zeroed struct). */
#define RANGE(a, b) offsetof(dv_config_t, a), offsetof(dv_config_t, b)
static const struct {
	const char *name;
	size_t from, to;
} restart_only[] = {
	{ "workers", RANGE(workers, log_level) },
	{ "log.queries/log.query-*/dnstap", RANGE(log_queries, listen) },
	{ "listen", RANGE(listen, upstream) },
	{ "upstream/fallback", RANGE(upstream, tls_cert) },
	{ "tls.ca/tls.ticket-rotation-s", RANGE(tls_ca, tcp_max_connections) },
	{ "limits", RANGE(tcp_max_connections, doq_max_connections) },
	{ "doq", RANGE(doq_max_connections, doh_paths) },
	{ "doh", RANGE(doh_paths, admin_listen) },
	{ "admin", RANGE(admin_listen, drain_delay_ms) },
	{ "user/group", RANGE(user, upstream_connections) },
	{ "upstream pool and health settings",
	  RANGE(upstream_connections, cache_size_bytes) },
	{ "cache.size/cache.shards", RANGE(cache_size_bytes, cache_min_ttl) },
	{ "cache (stale, servfail, prefetch)",
	  RANGE(cache_stale_max_age_s, lists) },
	/* lists:, groups:, clients:, internal:, policy.*, ddr.* (up to
	 * `source`) reload live: policy_prepare() */
};
#undef RANGE

/*
 * The keys of groups: that only a restart applies, named like
 * "groups.NAME.KEY", or NULL.  Everything the policy state holds
 * reloads live; a group's upstream: (its own resolver set, made into
 * the workers' pools at start) is the one key meant to wait for a
 * restart: compare it here, group by group, when it exists.
 */
static const char *groups_restart_only(const dv_config_t *cur,
				       const dv_config_t *next, char *buf,
				       size_t len)
{
	(void)cur;
	(void)next;
	(void)buf;
	(void)len;
	return NULL;
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
	char key[DV_POLICY_NAME_MAX + 32];
	const char *g = groups_restart_only(cur, next, key, sizeof(key));
	if (g)
		snprintf(names + len, sizeof(names) - len, "%s%s",
			 len ? ", " : "", g);
	len = strlen(names);
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
	dv_policy_state_t *pol = NULL;
	int ret = check_certs(r, next, err, err_len);
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
	say_restart(cur, next);
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

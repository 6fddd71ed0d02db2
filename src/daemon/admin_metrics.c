/*
 * /metrics: the workers' counters summed (relaxed loads, no lock on the
 * query path) and written as Prometheus text exposition format 0.0.4.
 *
 * Names start with dnsveil_, counters end in _total, times are seconds and
 * sizes bytes.  Labels are bounded: the transports of the configured
 * listeners, a fixed set of rcodes, sources, limits and states, and the
 * configured upstream servers; never a client or a name.  Each flat
 * counter of stats.h (the SIGUSR1 line) is dnsveil_<name>_total, except
 * those that appear under labels in a family of their own (queries,
 * answers, connections, handshakes, limit drops) and the two gauges.
 * README "Admin listener and metrics" lists every family.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/metrics.h"
#include "src/core/stats.h"
#include "src/daemon/admin.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"
#include "src/policy/policy.h"
#include "src/upstream/pool.h"

static void head(FILE *f, const char *name, const char *type,
		 const char *help)
{
	fprintf(f, "# HELP dnsveil_%s ", name);
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fprintf(f, "\n# TYPE dnsveil_%s %s\n", name, type);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* Flat counters that appear in families of their own below. */
static bool flat_skipped(const char *name)
{
	static const char *const skip[] = {
		"queries", "answers", "tcp_connections", "doq_connections",
		"tls_handshakes", "tls_resumed", "tls_failed",
		"doq_handshakes", "doq_resumed", "overload", "tcp_refused",
		"tls_rate_limited", "doq_rate_limited", "doq_refused",
		"doq_refused_address", "doq_half_open", "doq_half_open_peak",
		"tcp_output_bytes",
	};
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (strcmp(name, skip[i]) == 0)
			return true;
	return false;
}

static void flat_counters(FILE *f, const dv_stats_t *st)
{
#define FLAT(name, help)                                                     \
	if (!flat_skipped(#name)) {                                          \
		head(f, #name "_total", "counter", help);                    \
		fprintf(f, "dnsveil_" #name "_total %" PRIu64 "\n", st->name); \
	}
	DV_STATS(FLAT)
#undef FLAT
	head(f, "doq_half_open", "gauge", "QUIC handshakes in progress now");
	fprintf(f, "dnsveil_doq_half_open %" PRIu64 "\n", st->doq_half_open);
	head(f, "doq_half_open_peak", "gauge",
	     "most QUIC handshakes in progress at once (per worker, summed)");
	fprintf(f, "dnsveil_doq_half_open_peak %" PRIu64 "\n",
		st->doq_half_open_peak);
	head(f, "tcp_output_bytes", "gauge",
	     "answer bytes buffered by client TCP/TLS/DoH connections now "
	     "(per worker, summed; limits.worker-max-output)");
	fprintf(f, "dnsveil_tcp_output_bytes %" PRIu64 "\n",
		st->tcp_output_bytes);
}

/* Which transports carry queries: those of the configured listeners
 * ("dns" is udp and tcp). */
static void transports_of(const dv_config_t *cfg, bool *on)
{
	memset(on, 0, DV_SCHEME_COUNT * sizeof(*on));
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		dv_scheme_t s = cfg->listen[i].scheme;
		if (s == DV_SCHEME_DNS) {
			on[DV_SCHEME_UDP] = on[DV_SCHEME_TCP] = true;
		} else if (s < DV_SCHEME_COUNT) {
			on[s] = true;
		}
	}
}

/* The buckets of a latency histogram (microseconds in, seconds out). */
static void lat_rows(FILE *f, const char *name, const char *labels,
		     const dv_lat_hist_t *h)
{
	uint64_t cum = 0;
	for (unsigned i = 0; i < DV_LAT_NBOUNDS; i++) {
		cum += h->bucket[i];
		fprintf(f, "dnsveil_%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name,
			labels, dv_lat_bounds_us[i] / 1e6, cum);
	}
	cum += h->bucket[DV_LAT_NBOUNDS];
	fprintf(f, "dnsveil_%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name,
		labels, cum);
	/* the labels end in ',' when there are any */
	size_t n = strlen(labels);
	fprintf(f, "dnsveil_%s_sum%s%.*s%s %.6f\n", name, n ? "{" : "",
		n ? (int)n - 1 : 0, labels, n ? "}" : "", h->sum / 1e6);
	fprintf(f, "dnsveil_%s_count%s%.*s%s %" PRIu64 "\n", name,
		n ? "{" : "", n ? (int)n - 1 : 0, labels, n ? "}" : "", cum);
}

static void query_families(FILE *f, const dv_metrics_t *m,
			   const dv_stats_t *st, const bool *on)
{
	head(f, "queries_total", "counter",
	     "queries accepted from clients, by transport");
	for (unsigned t = 0; t < DV_SCHEME_COUNT; t++)
		if (on[t])
			fprintf(f,
				"dnsveil_queries_total{transport=\"%s\"} "
				"%" PRIu64 "\n",
				dv_scheme_name((dv_scheme_t)t), m->queries[t]);
	head(f, "answers_total", "counter",
	     "answers sent to clients, by transport and rcode");
	for (unsigned t = 0; t < DV_SCHEME_COUNT; t++)
		for (unsigned r = 0; on[t] && r < DV_RC_COUNT; r++)
			fprintf(f,
				"dnsveil_answers_total{transport=\"%s\","
				"rcode=\"%s\"} %" PRIu64 "\n",
				dv_scheme_name((dv_scheme_t)t), dv_rc_names[r],
				m->answers[t][r]);
	head(f, "answer_latency_seconds", "histogram",
	     "time from a query's arrival to its answer, by transport and "
	     "where the answer came from (cache: without waiting; upstream: "
	     "after waiting for an upstream fetch; local: refused or "
	     "malformed, answered at once)");
	for (unsigned t = 0; t < DV_SCHEME_COUNT; t++)
		for (unsigned s = 0; on[t] && s < DV_SRC_COUNT; s++) {
			char labels[64];
			snprintf(labels, sizeof(labels),
				 "transport=\"%s\",source=\"%s\",",
				 dv_scheme_name((dv_scheme_t)t),
				 dv_src_names[s]);
			lat_rows(f, "answer_latency_seconds", labels,
				 &m->latency[t][s]);
		}
	head(f, "edns_udp_size_bytes", "histogram",
	     "UDP payload size clients asked for in their EDNS OPT record");
	uint64_t cum = 0;
	for (unsigned i = 0; i < DV_EDNS_NBOUNDS; i++) {
		cum += m->edns_size.bucket[i];
		fprintf(f,
			"dnsveil_edns_udp_size_bytes_bucket{le=\"%" PRIu32
			"\"} %" PRIu64 "\n",
			dv_edns_bounds[i], cum);
	}
	cum += m->edns_size.bucket[DV_EDNS_NBOUNDS];
	fprintf(f,
		"dnsveil_edns_udp_size_bytes_bucket{le=\"+Inf\"} %" PRIu64
		"\ndnsveil_edns_udp_size_bytes_sum %" PRIu64
		"\ndnsveil_edns_udp_size_bytes_count %" PRIu64 "\n",
		cum, m->edns_size.sum, cum);
	head(f, "queries_without_edns_total", "counter",
	     "queries without an EDNS OPT record");
	fprintf(f, "dnsveil_queries_without_edns_total %" PRIu64 "\n",
		m->no_edns);

	head(f, "connections_accepted_total", "counter",
	     "client connections accepted, by transport");
	for (unsigned t = 0; t < DV_SCHEME_COUNT; t++)
		if (on[t] && t != DV_SCHEME_UDP)
			fprintf(f,
				"dnsveil_connections_accepted_total{transport="
				"\"%s\"} %" PRIu64 "\n",
				dv_scheme_name((dv_scheme_t)t),
				t == DV_SCHEME_QUIC ? st->doq_connections
						    : m->conn_accepted[t]);
	head(f, "connections_open", "gauge",
	     "client connections open now, by transport");
	for (unsigned t = 0; t < DV_SCHEME_COUNT; t++) {
		if (!on[t] || t == DV_SCHEME_UDP)
			continue;
		uint64_t acc = t == DV_SCHEME_QUIC ? st->doq_connections
						   : m->conn_accepted[t];
		uint64_t closed = m->conn_closed[t];
		fprintf(f,
			"dnsveil_connections_open{transport=\"%s\"} %" PRIu64
			"\n",
			dv_scheme_name((dv_scheme_t)t),
			acc > closed ? acc - closed : 0);
	}
}

static void handshakes_and_limits(FILE *f, const dv_stats_t *st)
{
	head(f, "handshakes_total", "counter",
	     "TLS (DoT, DoH) and QUIC (DoQ) handshakes: completed in full, "
	     "completed by resuming a session, failed or timed out");
	const struct {
		const char *proto, *result;
		uint64_t v;
	} hs[] = {
		{"tls", "full", st->tls_handshakes - st->tls_resumed},
		{"tls", "resumed", st->tls_resumed},
		{"tls", "failed", st->tls_failed},
		{"quic", "full", st->doq_handshakes - st->doq_resumed},
		{"quic", "resumed", st->doq_resumed},
		{"quic", "failed", st->doq_handshake_timeouts},
	};
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		fprintf(f,
			"dnsveil_handshakes_total{protocol=\"%s\",result=\"%s\"}"
			" %" PRIu64 "\n",
			hs[i].proto, hs[i].result, hs[i].v);
	head(f, "limit_drops_total", "counter",
	     "queries or connections refused by a limit, by the limit");
	const struct {
		const char *limit;
		uint64_t v;
	} lim[] = {
		{"max-inflight", st->overload},
		{"tcp-max-connections", st->tcp_refused},
		{"tls-handshakes-per-ip", st->tls_rate_limited},
		{"doq-handshakes-per-ip", st->doq_rate_limited},
		{"doq-max-connections", st->doq_refused},
		{"doq-max-handshakes-per-address", st->doq_refused_address},
	};
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		fprintf(f, "dnsveil_limit_drops_total{limit=\"%s\"} %" PRIu64 "\n",
			lim[i].limit, lim[i].v);
}

static void server_label(FILE *f, const dv_upstream_stats_t *u)
{
	fputs("upstream=\"", f);
	label_value(f, u->url);
	fprintf(f, "\",group=\"%s\"", u->fallback ? "fallback" : "local");
	if (u->set) { /* a group's own upstream set */
		fputs(",set=\"", f);
		label_value(f, u->set);
		fputc('"', f);
	}
}

static void server_families(FILE *f, const dv_upstream_stats_t *ups,
			    unsigned n)
{
	head(f, "server_state", "gauge",
	     "1 for the worst health state any worker holds of the upstream "
	     "server (down > degraded > up), 0 for the others");
	for (unsigned i = 0; i < n; i++)
		for (int s = 0; s < DV_HEALTH_STATE_COUNT; s++) {
			fputs("dnsveil_server_state{", f);
			server_label(f, &ups[i]);
			fprintf(f, ",state=\"%s\"} %d\n",
				dv_health_state_name((dv_health_state_t)s),
				(int)ups[i].state == s);
		}
	head(f, "server_workers", "gauge",
	     "workers that hold the upstream server in each health state");
	for (unsigned i = 0; i < n; i++)
		for (int s = 0; s < DV_HEALTH_STATE_COUNT; s++) {
			fputs("dnsveil_server_workers{", f);
			server_label(f, &ups[i]);
			fprintf(f, ",state=\"%s\"} %u\n",
				dv_health_state_name((dv_health_state_t)s),
				ups[i].n_state[s]);
		}
#define SERVER_COUNTER(name, help)                                           \
	head(f, "server_" #name "_total", "counter", help);                  \
	for (unsigned i = 0; i < n; i++) {                                   \
		fputs("dnsveil_server_" #name "_total{", f);                 \
		server_label(f, &ups[i]);                                    \
		fprintf(f, "} %" PRIu64 "\n", ups[i].st.name);               \
	}
	DV_USTATS(SERVER_COUNTER)
#undef SERVER_COUNTER
	head(f, "server_latency_seconds", "histogram",
	     "time from an attempt's query to the upstream server's answer "
	     "(measured in milliseconds)");
	for (unsigned i = 0; i < n; i++) {
		char *labels = NULL;
		size_t len = 0;
		FILE *lf = open_memstream(&labels, &len);
		if (!lf)
			continue;
		server_label(lf, &ups[i]);
		fputc(',', lf);
		fclose(lf);
		lat_rows(f, "server_latency_seconds", labels, &ups[i].latency);
		free(labels);
	}
	head(f, "server_latency_ewma_seconds", "gauge",
	     "moving average of the upstream server's answer latency (mean "
	     "over the workers with samples)");
	for (unsigned i = 0; i < n; i++) {
		fputs("dnsveil_server_latency_ewma_seconds{", f);
		server_label(f, &ups[i]);
		fprintf(f, "} %.6f\n", ups[i].ewma_us / 1e6);
	}
	head(f, "server_latency_p95_seconds", "gauge",
	     "p95 of the upstream server's last answer latencies (the largest "
	     "of the workers')");
	for (unsigned i = 0; i < n; i++) {
		fputs("dnsveil_server_latency_p95_seconds{", f);
		server_label(f, &ups[i]);
		fprintf(f, "} %.3f\n", ups[i].p95_ms / 1e3);
	}
	head(f, "server_latency_samples", "gauge",
	     "latency samples the EWMA and p95 rest on (summed over the "
	     "workers)");
	for (unsigned i = 0; i < n; i++) {
		fputs("dnsveil_server_latency_samples{", f);
		server_label(f, &ups[i]);
		fprintf(f, "} %" PRIu64 "\n", ups[i].samples);
	}
}

/*
 * The policy's families: per group and per list (names from the config).
 * The heads are written without a policy too, so that the families
 * exposed do not depend on the config (README lists them all).
 */
static void policy_families(FILE *f, const dv_admin_view_t *v)
{
	dv_policy_sums_t *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	if (v->policy) {
		dv_policy_worker_t *pw[256] = { NULL };
		unsigned n = v->n_workers < 256 ? v->n_workers : 256;
		for (unsigned k = 0; k < n; k++)
			pw[k] = v->workers[k]->policy;
		dv_policy_sum(v->policy, pw, n, s);
	}
	head(f, "policy_refused_unknown_id_total", "counter",
	     "queries refused for a client ID no clients: entry names "
	     "(policy.clients-only)");
	fprintf(f, "dnsveil_policy_refused_unknown_id_total %" PRIu64 "\n",
		s->refused_unknown_id);
#define GROUP_FAMILY(field, help)                                            \
	head(f, "policy_group_" #field "_total", "counter", help);            \
	for (unsigned g = 0; g < s->n_groups; g++) {                          \
		fputs("dnsveil_policy_group_" #field "_total{group=\"", f);    \
		label_value(f, s->groups[g].name);                            \
		fprintf(f, "\"} %" PRIu64 "\n", s->groups[g].field);          \
	}
	GROUP_FAMILY(queries, "queries of the group's clients")
	GROUP_FAMILY(blocked, "queries of the group blocked by a list")
	GROUP_FAMILY(allowed, "queries of the group an allow rule let pass")
	GROUP_FAMILY(refused, "queries of the group refused by its "
			      "allow-from or deny-from")
	GROUP_FAMILY(rate_limited, "queries of the group over its "
				   "rate-limit-qps (truncated, dropped or "
				   "refused)")
	GROUP_FAMILY(local, "queries of the group answered from its local "
			    "records")
#undef GROUP_FAMILY
#define LIST_FAMILY(fam, field, type, help)                                  \
	head(f, "policy_list_" fam, type, help);                             \
	for (unsigned l = 0; l < s->n_lists; l++) {                          \
		fputs("dnsveil_policy_list_" fam "{list=\"", f);             \
		label_value(f, s->lists[l].name);                            \
		fprintf(f, "\"} %" PRIu64 "\n", s->lists[l].field);          \
	}
	LIST_FAMILY("queries_total", queries, "counter",
		    "queries of the groups that use the list")
	LIST_FAMILY("blocked_total", blocked, "counter",
		    "queries the list blocked")
	LIST_FAMILY("allowed_total", allowed, "counter",
		    "queries a rule of the list let pass")
	LIST_FAMILY("entries", entries, "gauge",
		    "rules in the copy of the list in use")
	LIST_FAMILY("bad_lines", bad_lines, "gauge",
		    "lines of the copy in use nothing could be made of "
		    "(skipped)")
	LIST_FAMILY("loads_total", loads, "counter",
		    "copies of the list parsed (at start and by refreshes)")
	LIST_FAMILY("unchanged_total", unchanged, "counter",
		    "refreshes that found the list unchanged (HTTP 304, or "
		    "the same file size and time): no parse, no swap")
	LIST_FAMILY("refresh_failures_total", failures, "counter",
		    "fetches or reads of the list that failed or were too "
		    "big (the last good copy stayed)")
	LIST_FAMILY("last_refresh_timestamp_seconds", last_ok_s, "gauge",
		    "when the list was last fetched or read successfully "
		    "(seconds since the epoch)")
#undef LIST_FAMILY
	free(s);
}

/* SIGHUP and POST /reload (main.c writes the counts). */
static void reload_families(FILE *f, dv_reload_stats_t *r)
{
	if (!r)
		return;
	head(f, "reload_successes_total", "counter",
	     "configuration reloads applied (SIGHUP, POST /reload)");
	fprintf(f, "dnsveil_reload_successes_total %" PRIu64 "\n",
		__atomic_load_n(&r->successes, __ATOMIC_RELAXED));
	head(f, "reload_failures_total", "counter",
	     "configuration reloads refused: the running one stayed");
	fprintf(f, "dnsveil_reload_failures_total %" PRIu64 "\n",
		__atomic_load_n(&r->failures, __ATOMIC_RELAXED));
	head(f, "reload_last_success_timestamp_seconds", "gauge",
	     "when the configuration was last loaded, at start or by a "
	     "reload (seconds since the epoch)");
	fprintf(f, "dnsveil_reload_last_success_timestamp_seconds %" PRIu64
		   "\n",
		__atomic_load_n(&r->last_success_s, __ATOMIC_RELAXED));
}

void dv_admin_metrics(FILE *f, const dv_admin_view_t *v,
		      const dv_admin_stats_t *ast)
{
	dv_stats_t st;
	memset(&st, 0, sizeof(st));
	dv_metrics_t *m = calloc(1, sizeof(*m));
	/* the pools stay while the page is written (the servers' URLs are
	 * theirs); a reload replaces them meanwhile only after */
	for (unsigned k = 0; k < v->n_workers; k++)
		dv_worker_pool_lock(v->workers[k]);
	unsigned n_up = v->n_workers ? dv_worker_n_upstreams(v->workers[0]) : 0;
	dv_upstream_stats_t *ups = calloc(n_up ? n_up : 1, sizeof(*ups));
	if (!m || !ups)
		goto out;
	for (unsigned k = 0; k < v->n_workers; k++) {
		dv_stats_sum(&st, &v->workers[k]->stats);
		dv_metrics_sum(m, &v->workers[k]->core.metrics);
	}
	for (unsigned i = 0; i < n_up; i++) {
		for (unsigned k = 0; k < v->n_workers; k++)
			dv_worker_upstream_stats_add(v->workers[k], i, &ups[i]);
		dv_pool_stats_finish(&ups[i]);
	}
	/* the listeners the workers serve now (a reload may add or remove
	 * some; during one, the workers' union) */
	bool on[DV_SCHEME_COUNT];
	transports_of(v->n_workers ? v->workers[0]->cfg : v->cfg, on);
	for (unsigned k = 1; k < v->n_workers; k++) {
		bool w_on[DV_SCHEME_COUNT];
		transports_of(v->workers[k]->cfg, w_on);
		for (unsigned t = 0; t < DV_SCHEME_COUNT; t++)
			on[t] = on[t] || w_on[t];
	}

	head(f, "build_info", "gauge", "dnsveil's version (always 1)");
	fprintf(f, "dnsveil_build_info{version=\"%s\"} 1\n", DV_VERSION);
	head(f, "workers", "gauge", "worker threads");
	fprintf(f, "dnsveil_workers %u\n", v->n_workers);
	query_families(f, m, &st, on);
	handshakes_and_limits(f, &st);
	flat_counters(f, &st);
	if (v->cache) {
		dv_cache_stats_t cs;
		dv_cache_stats(v->cache, &cs);
		head(f, "cache_entries", "gauge", "answers held by the cache");
		fprintf(f, "dnsveil_cache_entries %" PRIu64 "\n",
			(uint64_t)cs.entries);
		head(f, "cache_bytes", "gauge",
		     "bytes the cache's entries take");
		fprintf(f, "dnsveil_cache_bytes %" PRIu64 "\n",
			(uint64_t)cs.bytes);
		head(f, "cache_evictions_total", "counter",
		     "cache entries evicted to make room");
		fprintf(f, "dnsveil_cache_evictions_total %" PRIu64 "\n",
			(uint64_t)cs.evictions);
		head(f, "cache_expired_total", "counter",
		     "cache entries removed after their lifetime (and stale "
		     "window) ended");
		fprintf(f, "dnsveil_cache_expired_total %" PRIu64 "\n",
			(uint64_t)cs.expired);
	}
	server_families(f, ups, n_up);
	policy_families(f, v);

	static const char *const paths[] = {"/metrics", "/healthz", "/readyz",
					    "other", "/reload"};
	head(f, "admin_requests_total", "counter",
	     "requests to the admin listener, by path");
	for (int i = 0; i < (v->reload ? 5 : 4); i++)
		fprintf(f,
			"dnsveil_admin_requests_total{path=\"%s\"} %" PRIu64
			"\n",
			paths[i], ast->requests[i]);
	head(f, "admin_refused_total", "counter",
	     "admin connections refused (403): address outside admin.allow");
	fprintf(f, "dnsveil_admin_refused_total %" PRIu64 "\n", ast->refused);
	head(f, "admin_bad_requests_total", "counter",
	     "admin connections closed on a malformed or oversized request "
	     "or on admin.timeout-ms");
	fprintf(f, "dnsveil_admin_bad_requests_total %" PRIu64 "\n", ast->bad);
	reload_families(f, v->reload);
out:
	for (unsigned k = 0; k < v->n_workers; k++)
		dv_worker_pool_unlock(v->workers[k]);
	free(m);
	free(ups);
}

/*
 * dnsveil: command line, config, workers, signals.
 *
 * Signals are blocked in every thread and taken synchronously by the main
 * thread (sigwaitinfo): SIGTERM/SIGINT drain and exit 0 (the lameduck
 * drain, src/daemon/stop.h), SIGUSR1 writes the counters as one
 * `dnsveil-stats {JSON}` line to stderr, SIGHUP (or POST /reload) reloads
 * the config file (src/daemon/reload.h).  With admin: listeners, a
 * thread of its own serves /metrics, /healthz, /readyz and /reload
 * (src/daemon/admin.h); SIGTERM makes /readyz fail before the drain.
 * Under a service manager, READY/RELOADING/STOPPING go to $NOTIFY_SOCKET
 * (src/daemon/sd_notify.h).
 * Once every socket is bound and before any thread starts, user:/group:
 * and the capabilities are dropped (src/daemon/privileges.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/core/cache.h"
#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/policy/policy.h"
#include "src/tls/cert_names.h"
#include "src/tls/quic_tls.h"
#include "src/core/stats.h"
#include "src/tls/keyfile.h"
#include "src/tls/tls.h"
#include "src/daemon/admin.h"
#include "src/daemon/certwatch.h"
#include "src/daemon/sd_notify.h"
#include "src/daemon/dnstap.h"
#include "src/daemon/querylog.h"
#include "src/daemon/privileges.h"
#include "src/daemon/reload.h"
#include "src/daemon/reload_net.h"
#include "src/daemon/stop.h"
#include "src/daemon/transport.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"
#include "src/upstream/registry.h"

static void implemented(bool *listen, bool *upstream)
{
	for (int s = 0; s < DV_SCHEME_COUNT; s++) {
		listen[s] = dv_transport_find((dv_scheme_t)s, 0) != NULL;
		upstream[s] = dv_upstream_scheme_known((dv_scheme_t)s);
	}
}

/* Config file, then flags, then the final checks.  On an error, `err`
 * says `FILE:LINE: KEY: reason` (or what is wrong with a flag). */
static int load_config(int argc, char **argv, const dv_cli_t *cli,
		       dv_config_t *cfg, char *err, size_t err_len)
{
	dv_config_defaults(cfg);
	if (cli->config_path &&
	    dv_config_load(cfg, cli->config_path, err, err_len) != 0)
		return DV_ECONFIG;
	if (dv_cli_apply(argc, argv, cfg, err, err_len) != 0)
		return DV_ECONFIG;
	bool l[DV_SCHEME_COUNT], u[DV_SCHEME_COUNT];
	implemented(l, u);
	if (dv_config_validate(cfg, l, u, err, err_len) != 0)
		return DV_ECONFIG;
	return 0;
}

static void warn_check(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "dnsveil: warning: %s\n", msg);
}

static void warn_log(void *arg, const char *msg)
{
	(void)arg;
	dv_log_warn("%s", msg);
}

static void print_stats(dv_worker_t **workers, unsigned n, dv_cache_t *cache,
			const dv_policy_t *policy)
{
	dv_stats_t sum;
	memset(&sum, 0, sizeof(sum));
	for (unsigned i = 0; i < n; i++)
		dv_stats_sum(&sum, &workers[i]->stats);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return;
	fputs("dnsveil-stats ", f);
	dv_stats_json(f, &sum);
	if (cache) {
		dv_cache_stats_t cs;
		dv_cache_stats(cache, &cs);
		fseek(f, -1, SEEK_CUR); /* reopen the JSON object */
		fprintf(f,
			",\"cache_entries\":%llu,\"cache_bytes\":%llu,"
			"\"cache_evictions\":%llu,\"cache_expired\":%llu}",
			(unsigned long long)cs.entries,
			(unsigned long long)cs.bytes,
			(unsigned long long)cs.evictions,
			(unsigned long long)cs.expired);
	}
	/* per upstream server, merged over the workers */
	unsigned n_up = n ? dv_worker_n_upstreams(workers[0]) : 0;
	dv_upstream_stats_t *ups = calloc(n_up ? n_up : 1, sizeof(*ups));
	if (ups) {
		for (unsigned i = 0; i < n_up; i++) {
			for (unsigned k = 0; k < n; k++)
				dv_worker_upstream_stats_add(workers[k], i,
							     &ups[i]);
			dv_pool_stats_finish(&ups[i]);
		}
		fseek(f, -1, SEEK_CUR); /* reopen the JSON object */
		fputc(',', f);
		dv_upstream_stats_json(f, ups, n_up);
		fputc('}', f);
		free(ups);
	}
	dv_policy_worker_t **pw = policy ? calloc(n ? n : 1, sizeof(*pw))
					 : NULL;
	if (pw) {
		for (unsigned i = 0; i < n; i++)
			pw[i] = workers[i]->policy;
		fseek(f, -1, SEEK_CUR); /* reopen the JSON object */
		dv_policy_stats_json(f, policy, pw, n);
		fputc('}', f);
		free(pw);
	}
	fputc('\n', f);
	fclose(f);
	fwrite(buf, 1, len, stderr);
	free(buf);
}

typedef struct {
	dv_worker_t **workers;
	unsigned n;
	dv_cache_t *cache;
	const dv_policy_t *policy;
} stats_args_t;

static void stats_cb(void *arg)
{
	stats_args_t *a = arg;
	print_stats(a->workers, a->n, a->cache, a->policy);
}

/* SIGTERM/SIGINT: the lameduck drain (src/daemon/stop.h). */
static void drain(dv_worker_t **workers, unsigned started,
		  const dv_config_t *cfg, const sigset_t *sigs,
		  stats_args_t *stats_args, int sig)
{
	dv_stop_t stop = {
		.workers = workers,
		.n_workers = started,
		.cfg = cfg,
		.sigs = sigs,
		.stats = stats_cb,
		.stats_arg = stats_args,
	};
	dv_stop_drain(&stop, sig);
}

/* user:, group: and capabilities (src/daemon/privileges.h): looked up
 * before anything is opened, dropped once every listener is bound.  0 or
 * DV_ECONFIG with `err`. */
static int resolve_privileges(const dv_config_t *cfg, dv_privileges_t *p,
			      char *err, size_t err_len)
{
	return dv_privileges_resolve(cfg, true, p, err, err_len);
}

/* Hand `path` to user:/group: when root owns it (dnsveil made it, or
 * it was there): threads that start after the drop write there. */
static void give_to_user(const dv_privileges_t *p, const char *key,
			 const char *path, bool want_dir)
{
	struct stat st;
	if (!p->change || !path[0] || stat(path, &st) != 0 ||
	    (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) ||
	    st.st_uid != 0 || p->uid == 0)
		return;
	if (chown(path, p->uid, p->gid) != 0)
		dv_log_warn("%s %s: cannot hand it to user: (%s); it may not "
			    "be writable after privileges are dropped",
			    key, path, strerror(errno));
}

/*
 * Files that threads started after the drop write: the lists' copies on
 * disk (the refresher replaces them by rename(), which needs only their
 * directory, policy.cache-dir) and dnstap.file (libfstrm's I/O thread
 * opens it).  The query log's file is opened before the drop.
 */
static int drop_privileges(const dv_config_t *cfg, const dv_privileges_t *p,
			   char *err, size_t err_len)
{
	give_to_user(p, "policy.cache-dir", cfg->policy_cache_dir, true);
	give_to_user(p, "dnstap.file", cfg->dnstap_file, false);
	return dv_privileges_drop(p, err, err_len);
}

/* --check-config: user: and group: exist. */
static int check_privileges(const dv_config_t *cfg, char *err, size_t err_len)
{
	dv_privileges_t p;
	return dv_privileges_resolve(cfg, false, &p, err, err_len);
}

static bool has_listener(const dv_config_t *cfg, dv_scheme_t scheme)
{
	for (unsigned i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].scheme == scheme)
			return true;
	return false;
}

/* tls:// and https:// upstreams need the TLS library; each worker's pool
 * builds its own client context (src/upstream/conn_stream.c). */
static bool has_tls_upstream(const dv_config_t *cfg)
{
	for (unsigned s = 0; s < dv_config_upstream_sets(cfg); s++) {
		dv_upstream_set_t set;
		dv_config_upstream_set(cfg, s, &set);
		for (unsigned i = 0; i < set.n_upstream; i++)
			if (dv_upstream_scheme_tls(set.upstream[i].scheme))
				return true;
		for (unsigned i = 0; i < set.n_fallback; i++)
			if (dv_upstream_scheme_tls(set.fallback[i].scheme))
				return true;
	}
	return false;
}

/* tls.client-ca: every TLS listener asks for client certificates (mTLS);
 * a CA file that does not load is a config error, at start and in
 * --check-config. */
static int tls_client_ca(const dv_config_t *cfg, dv_shared_t *shared, char *err,
			 size_t err_len)
{
	bool require = cfg->tls_client_cert == DV_CLIENT_CERT_REQUIRE;
	if (!cfg->tls_client_ca[0])
		return 0;
	if ((shared->tls_dot &&
	     dv_tls_server_client_ca(shared->tls_dot, cfg->tls_client_ca,
				     require, err, err_len) != 0) ||
	    (shared->tls_doh &&
	     dv_tls_server_client_ca(shared->tls_doh, cfg->tls_client_ca,
				     require, err, err_len) != 0) ||
	    (shared->tls_doq &&
	     dv_quic_tls_server_client_ca(shared->tls_doq, cfg->tls_client_ca,
					  require, err, err_len) != 0))
		return DV_ECONFIG;
	return 0;
}

/* The TLS and QUIC server contexts the listeners need, with the process-
 * wide ticket keys (*tls_ready: dv_tls_init ran).  On an error, `err`
 * names the file and what is wrong with it. */
static int tls_open(const dv_config_t *cfg, dv_shared_t *shared,
		    bool *tls_ready, char *err, size_t err_len)
{
	static const char *const dot_alpn[] = {"dot", NULL};
	static const char *const doh_alpn[] = {"h2", "http/1.1", NULL};
	bool dot = has_listener(cfg, DV_SCHEME_TLS);
	bool doh = has_listener(cfg, DV_SCHEME_HTTPS);
	/* tls.ticket-key-file: a file that does not load is a config error,
	 * at start and in --check-config */
	if (cfg->tls_ticket_key_file[0] &&
	    !(shared->keyfile = dv_keyfile_new(cfg->tls_ticket_key_file, err,
					       err_len)))
		return DV_ECONFIG;
	if (dot || doh || has_tls_upstream(cfg)) {
		if (dv_tls_init(cfg->tls_ticket_rotation_s) != 0) {
			snprintf(err, err_len, "cannot initialise TLS");
			return DV_ECONFIG;
		}
		*tls_ready = true;
		if (shared->keyfile)
			dv_tls_ticket_keyfile(shared->keyfile);
		if (dot && !(shared->tls_dot = dv_tls_server_new(
				     cfg->tls_cert, cfg->tls_key, dot_alpn, err,
				     err_len)))
			return DV_ECONFIG;
		if (doh && !(shared->tls_doh = dv_tls_server_new(
				     cfg->tls_cert, cfg->tls_key, doh_alpn, err,
				     err_len)))
			return DV_ECONFIG;
	}
	if (has_listener(cfg, DV_SCHEME_QUIC)) {
		if (getrandom(shared->quic_secret, sizeof(shared->quic_secret),
			      0) != (ssize_t)sizeof(shared->quic_secret)) {
			snprintf(err, err_len,
				 "cannot read random bytes for QUIC");
			return DV_ECONFIG;
		}
		if (!(shared->tls_doq = dv_quic_tls_server_ctx_new(
			      cfg->tls_cert, cfg->tls_key, "doq",
			      cfg->doq_early_data != 0, err, err_len)))
			return DV_ECONFIG;
		if (shared->keyfile)
			dv_quic_tls_ctx_keyfile(shared->tls_doq,
						shared->keyfile);
	}
	return tls_client_ca(cfg, shared, err, err_len);
}

static void tls_close(dv_shared_t *shared, bool tls_ready)
{
	if (tls_ready) {
		dv_tls_ctx_free(shared->tls_dot);
		dv_tls_ctx_free(shared->tls_doh);
		dv_tls_ticket_keyfile(NULL);
		dv_tls_cleanup();
	}
	dv_quic_tls_ctx_free(shared->tls_doq);
	shared->tls_dot = shared->tls_doh = NULL;
	shared->tls_doq = NULL;
	dv_keyfile_free(shared->keyfile);
	shared->keyfile = NULL;
}

/*
 * Every client TCP/TLS connection is a file descriptor.  Take the hard
 * limit (the soft one is often 1024), and say at start when the configured
 * connection limits cannot fit in it: accepting then pauses when it runs
 * out (transports/stream.c) instead of failing silently.
 */
static void raise_nofile(const dv_config_t *cfg, unsigned workers)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	unsigned streams = 0;
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		dv_scheme_t s = cfg->listen[i].scheme;
		if (s != DV_SCHEME_UDP && s != DV_SCHEME_QUIC)
			streams++;
	}
	/* a UDP front (udp://, loopback tcp://) holds a socket per query in
	 * flight, up to its id table (pool.udp-max-inflight rounded up to a
	 * power of two) */
	unsigned udp = 0;
	for (unsigned s = 0; s < dv_config_upstream_sets(cfg); s++) {
		dv_upstream_set_t set;
		dv_config_upstream_set(cfg, s, &set);
		for (unsigned i = 0; i < set.n_upstream; i++)
			udp += dv_url_has_udp_front(cfg, &set.upstream[i]);
		for (unsigned i = 0; i < set.n_fallback; i++)
			udp += set.fallback[i].scheme == DV_SCHEME_UDP;
	}
	uint64_t udp_slots = 1;
	while (udp_slots < cfg->udp_max_inflight && udp_slots < 65536)
		udp_slots <<= 1;
	/* listeners, upstream connections, the loop's own descriptors */
	uint64_t need = (uint64_t)workers * streams * cfg->tcp_max_connections +
			(uint64_t)workers * udp * udp_slots +
			(uint64_t)workers * (2 * cfg->n_listen + 64) + 64;
	if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
		dv_log_warn("open-files limit %llu is below the %llu that %u "
			    "workers x (%u TCP/TLS listeners x "
			    "limits.tcp-max-connections %u + %u UDP "
			    "upstreams x pool.udp-max-inflight %u) need: new "
			    "connections and UDP queries will wait or fail "
			    "when it runs out (raise LimitNOFILE / ulimit -n)",
			    (unsigned long long)rl.rlim_cur,
			    (unsigned long long)need, workers, streams,
			    cfg->tcp_max_connections, udp,
			    cfg->udp_max_inflight);
}

/* Tells the service manager (systemd Type=notify) what dnsveil is doing;
 * nothing without $NOTIFY_SOCKET.  A failure is logged, never fatal: the
 * manager then times the start or reload out on its own. */
static void notify(const char *state)
{
	int ret = strcmp(state, "RELOADING=1") == 0 ? dv_sd_notify_reloading()
						   : dv_sd_notify(state);
	if (ret)
		dv_log_warn("sd_notify %s: %s", state, dv_strerror(ret));
}

static unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* DDR's view of tls.cert: the names it checks its answers against
 * (src/policy/ddr.h).  A file that does not load is tls_open's to
 * report. */
static void ddr_cert_names(const dv_config_t *cfg)
{
	dv_cert_names_t names = { 0 };
	char err[256];
	if (cfg->tls_cert[0] &&
	    dv_tls_cert_names(cfg->tls_cert, &names, err, sizeof(err)) != 0)
		memset(&names, 0, sizeof(names));
	dv_policy_set_cert_names(&names);
}

int main(int argc, char **argv)
{
	dv_cli_t cli;
	char err[1024];
	if (dv_cli_parse(argc, argv, &cli, err, sizeof(err)) != 0) {
		fprintf(stderr, "dnsveil: %s\n(see dnsveil --help)\n", err);
		return 2;
	}
	if (cli.help) {
		dv_cli_usage(stdout);
		return 0;
	}
	if (cli.help_config) {
		dv_config_print_schema(stdout);
		return 0;
	}
	if (cli.version) {
		printf("dnsveil %s\n", DV_VERSION);
		return 0;
	}
	static dv_config_t cfg;
	if (load_config(argc, argv, &cli, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "dnsveil: %s\n", err);
		return 1;
	}
	if (cli.check_config) {
		dv_config_warnings(&cfg, warn_check, NULL);
		/* the certificate and key as the listeners will load them: a
		 * file that does not parse or a key that does not match fails
		 * here, not at start-up */
		dv_shared_t probe = {.n_workers = 1};
		bool ready = false;
		int ret = tls_open(&cfg, &probe, &ready, err, sizeof(err));
		tls_close(&probe, ready);
		if (ret != 0) {
			fprintf(stderr, "dnsveil: %s\n", err);
			return 1;
		}
		if (check_privileges(&cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "dnsveil: %s\n", err);
			return 1;
		}
		/* the lists as the daemon will load them: bad lines counted
		 * (URL lists from their copies on disk: a check fetches
		 * nothing) */
		dv_policy_t *pol = NULL;
		dv_log_level = cfg.log_level;
		dv_policy_no_fetch = true;
		dv_log_format = (dv_log_format_t)cfg.log_format;
		ddr_cert_names(&cfg);
		if (dv_policy_new(&cfg, 0, &pol, err, sizeof(err)) != 0) {
			fprintf(stderr, "dnsveil: %s\n", err);
			return 1;
		}
		if (pol)
			dv_policy_log_lists(pol);
		dv_policy_free(pol);
		printf("dnsveil: configuration OK (%s)\n",
		       cli.config_path ? cli.config_path : "command line");
		return 0;
	}
	dv_log_level = cfg.log_level;
	dv_log_format = (dv_log_format_t)cfg.log_format;
	dv_config_warnings(&cfg, warn_log, NULL);
	dv_privileges_t privs;
	if (resolve_privileges(&cfg, &privs, err, sizeof(err)) != 0) {
		dv_log_error("%s", err);
		return 1;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	/* from the certificate watcher (certwatch.h) */
	int cert_sig = SIGRTMIN + 2;
	sigaddset(&sigs, cert_sig);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	dv_cache_t *cache = NULL;
	if (cfg.cache_size_bytes) {
		dv_cache_opts_t co = {
			.size_bytes = cfg.cache_size_bytes,
			.shards = cfg.cache_shards,
			.min_ttl = cfg.cache_min_ttl,
			.max_ttl = cfg.cache_max_ttl,
			.negative_max_ttl = cfg.cache_negative_max_ttl,
		};
		cache = dv_cache_new(&co);
		if (!cache) {
			dv_log_error("cannot allocate the cache");
			return 1;
		}
	}

	unsigned n = cfg.workers ? cfg.workers : cpu_count();
	raise_nofile(&cfg, n);
	dv_policy_t *policy = NULL;
	dv_shared_t shared = {.cache = cache, .n_workers = n};
	dv_worker_t **workers = calloc(n, sizeof(*workers));
	int rc = 1;
	unsigned started = 0;
	bool tls_ready = false;
	dv_admin_t *admin = NULL;
	dv_certwatch_t *certwatch = NULL;
	static dv_reload_stats_t reload_stats;
	if (!workers)
		goto out;
	uint64_t policy_seed;
	if (getrandom(&policy_seed, sizeof(policy_seed), 0) !=
	    sizeof(policy_seed))
		policy_seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	ddr_cert_names(&cfg);
	if (dv_policy_new(&cfg, policy_seed, &policy, err, sizeof(err)) != 0) {
		dv_log_error("%s", err);
		goto out;
	}
	if (policy)
		dv_policy_log_lists(policy);
	shared.policy = policy;
	if (dv_qlog_new(&cfg, n, &shared.qlog, err, sizeof(err)) != 0 ||
	    dv_dnstap_new(&cfg, n, &shared.dnstap, err, sizeof(err)) != 0) {
		dv_log_error("%s", err);
		goto out;
	}
	if (tls_open(&cfg, &shared, &tls_ready, err, sizeof(err)) != 0) {
		dv_log_error("%s", err);
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		workers[i] = dv_worker_new(i, &cfg, &shared, err, sizeof(err));
		if (!workers[i]) {
			dv_log_error("%s", err);
			goto out;
		}
		if (i)
			workers[i - 1]->reload_next = workers[i];
	}
	if (cfg.n_admin_listen) {
		dv_admin_view_t view = {
			.cfg = &cfg,
			.workers = workers,
			.n_workers = n,
			.cache = cache,
			.policy = policy,
			.reload = &reload_stats,
		};
		admin = dv_admin_new(&view, err, sizeof(err));
		if (!admin) {
			dv_log_error("%s", err);
			goto out;
		}
	}
	/* every socket and file is open: no thread runs yet (capabilities
	 * are per thread) */
	if (drop_privileges(&cfg, &privs, err, sizeof(err)) != 0) {
		dv_log_error("%s", err);
		goto out;
	}
	if (shared.qlog && dv_qlog_start(shared.qlog) != 0) {
		dv_log_error("cannot start the query log's writer");
		goto out;
	}
	if (dv_dnstap_start(shared.dnstap) != 0) {
		dv_log_error("dnstap: cannot start libfstrm's I/O thread");
		goto out;
	}
	/* after the privileges drop: the file must stay readable to the
	 * user dnsveil runs as, or a change is logged and ignored */
	if (shared.keyfile && dv_keyfile_start(shared.keyfile) != 0) {
		dv_log_error("cannot start the tls.ticket-key-file watcher");
		goto out;
	}
	if (admin) {
		int ret = dv_admin_start(admin);
		if (ret) {
			dv_log_error("cannot start the admin listener: %s",
				     dv_strerror(ret));
			goto out;
		}
	}
	for (; started < n; started++) {
		int ret = dv_worker_start(workers[started]);
		if (ret) {
			dv_log_error("cannot start worker: %s",
				     dv_strerror(ret));
			goto out;
		}
	}
	for (unsigned i = 0; i < cfg.n_listen; i++)
		dv_log_info("listening on %s", cfg.listen[i].text);
	for (unsigned i = 0; i < cfg.n_upstream; i++)
		dv_log_info("upstream %s", cfg.upstream[i].text);
	for (unsigned i = 0; i < cfg.n_fallback; i++)
		dv_log_info("fallback %s", cfg.fallback[i].text);
	for (unsigned s = 1; s < dv_config_upstream_sets(&cfg); s++) {
		dv_upstream_set_t set;
		dv_config_upstream_set(&cfg, s, &set);
		for (unsigned i = 0; i < set.n_upstream; i++)
			dv_log_info("upstream %s (set %s)",
				    set.upstream[i].text, set.name);
		for (unsigned i = 0; i < set.n_fallback; i++)
			dv_log_info("fallback %s (set %s)",
				    set.fallback[i].text, set.name);
	}
	for (unsigned i = 0; i < cfg.n_admin_listen; i++)
		dv_log_info("admin listener on %s", cfg.admin_listen[i].text);
	if (policy) {
		int ret = dv_policy_start_refresh(policy);
		if (ret)
			dv_log_error("cannot start the list refresher: %s; "
				     "lists stay as loaded",
				     dv_strerror(ret));
	}
	dv_admin_set_started(admin);
	dv_log_info("dnsveil %s ready, %u workers", DV_VERSION, n);
	notify("READY=1");

	stats_args_t stats_args = {workers, n, cache, policy};
	dv_reload_t reload = {
		.running = &cfg,
		.shared = &shared,
		.policy = policy,
		.stats = &reload_stats,
		.tls_ready = tls_ready,
		.workers = workers,
		.n_workers = n,
		.tls_init = &tls_ready,
	};
	dv_reload_started(&reload);
	if (shared.tls_dot || shared.tls_doh || shared.tls_doq) {
		certwatch = dv_certwatch_new(cfg.tls_cert, cfg.tls_key,
					     cert_sig, err, sizeof(err));
		if (!certwatch)
			dv_log_warn("certificate files are not watched (%s): "
				    "renewals need SIGHUP",
				    err);
	}
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&sigs, &si);
		if (sig < 0)
			continue;
		if (sig == SIGUSR1) {
			print_stats(workers, n, cache, policy);
			continue;
		}
		if (sig == cert_sig) {
			dv_reload_certs(&reload);
			continue;
		}
		if (sig == SIGHUP) {
			static dv_config_t next;
			notify("RELOADING=1");
			/* after logrotate, whatever the config says */
			dv_qlog_reopen(shared.qlog);
			if (load_config(argc, argv, &cli, &next, err,
					sizeof(err)) != 0)
				dv_reload_refused(&reload, err);
			else
				dv_reload_apply(&reload, &next, err,
						sizeof(err));
			notify("READY=1");
			continue;
		}
		notify("STOPPING=1");
		dv_admin_set_draining(admin);
		drain(workers, started, &cfg, &sigs, &stats_args, sig);
		break;
	}
	/* the workers hold their own references */
	dv_reload_net_free(&reload);
	print_stats(workers, n, cache, policy);
	rc = 0;
out:
	dv_certwatch_free(certwatch);
	for (unsigned i = 0; i < started; i++) {
		dv_worker_stop(workers[i]);
		dv_worker_join(workers[i]);
	}
	dv_admin_free(admin); /* before the workers it reads */
	for (unsigned i = 0; workers && i < n; i++)
		dv_worker_free(workers[i]);
	free(workers);
	/* after the workers that write to them */
	dv_qlog_free(shared.qlog);
	dv_dnstap_free(shared.dnstap);
	tls_close(&shared, tls_ready);
	dv_policy_free(policy);
	dv_cache_free(cache);
	if (rc == 0)
		dv_log_info("stopped");
	return rc;
}

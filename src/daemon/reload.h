#pragma once
/*
 * Configuration reload (SIGHUP, POST /reload on the admin listener).
 *
 * main.c reads the file again and runs every check of a start-up on it
 * (dv_config_validate); this file then checks what the file names (the
 * certificate and key of the TLS, DoH and DoQ listeners: parsed, and the
 * key matched to the certificate, with wolfSSL and with GnuTLS) and only
 * when everything passes applies what can change live:
 *   - log-level, log.format;
 *   - the certificate and key of every TLS listener (DoT, DoH, DoQ): new
 *     connections get the new pair, established ones keep theirs; the
 *     client CA file (tls.client-ca) is read again with them (a new
 *     tls.client-ca path or tls.client-cert mode takes a restart);
 *   - drain.delay-ms, drain.timeout-ms (read when SIGTERM comes);
 *   - the whole policy (lists, groups, clients, records, internal names,
 *     policy.*, ddr.*), built off the query path and swapped in at once
 *     (src/policy/policy_reload.c); DDR also after a certificate reload;
 *   - the lists' contents (fetched and read again, as before);
 *   - listen, upstream, fallback, tls.ca, the pool, limits, doh, doq and
 *     cache settings: checked by reload_net.c (new listeners bindable,
 *     their TLS contexts made), then handed to every worker, which applies
 *     them on its own loop (worker_reload.c).
 * Any other section that differs from the running configuration is named
 * in one warning line as taking effect on restart.  A refusal logs
 * `SIGHUP: configuration refused ...: FILE:LINE: KEY: reason`, changes
 * nothing and is counted (dnsveil_reload_failures_total).
 */
#include <stddef.h>

#include "src/config/config.h"
#include "src/daemon/admin.h"
#include "src/daemon/worker.h"

typedef struct {
	/* what the workers read: the live parts above are written into it */
	dv_config_t *running;
	dv_shared_t *shared;
	dv_policy_t *policy; /* NULL: none */
	dv_reload_stats_t *stats;
	bool tls_ready; /* dv_tls_init ran (wolfSSL can parse the files) */
	/* the workers a reload hands the new config to (reload_net.c);
	 * main's tls_ready, set when a reload adds the first DoT or DoH
	 * listener (so that main frees that context at exit) */
	dv_worker_t **workers;
	unsigned n_workers;
	bool *tls_init;
	/* the config the workers were last given (cfgref.h; NULL: the
	 * start config, `running`) */
	const dv_config_t *live;
} dv_reload_t;

/* Check what `next` (loaded and validated) names and apply it as above.
 * Main thread.  0, or DV_ECONFIG with `err` (then nothing changed). */
int dv_reload_apply(dv_reload_t *r, const dv_config_t *next, char *err,
		    size_t err_len);
/* Count and log a refused reload (`err`: why). */
void dv_reload_refused(dv_reload_t *r, const char *err);
/* The certificate watcher saw tls.cert or tls.key change on disk
 * (certwatch.h): check the pair the running configuration names and load
 * it for new connections, counted as a reload.  Main thread. */
void dv_reload_certs(dv_reload_t *r);
/* The configuration was loaded at start: dnsveil_reload_last_success_... */
void dv_reload_started(dv_reload_t *r);

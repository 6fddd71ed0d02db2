#pragma once
/*
 * The admin listener: plain HTTP/1.1 on its own thread and libev loop,
 * off the query path, serving
 *   /metrics  Prometheus text exposition 0.0.4 (admin_metrics.c)
 *   /healthz  200 while every worker's loop turns, else 503
 *   /readyz   200 when the listeners are bound, an upstream is usable
 *             and dnsveil is not draining, else 503 with the reason
 *   /reload   POST: the same reload as SIGHUP (the main thread does it);
 *             200 once it is done, 500 with the reason when the new
 *             configuration was refused and the running one stays
 * to the addresses of admin.allow (default: loopback).  Every connection
 * is bounded: admin.max-connections at once, DV_ADMIN_HEAD_MAX bytes of
 * request head, admin.timeout-ms for the whole exchange; one request per
 * connection (the answer says "Connection: close").
 *
 * It reads the workers' counters with relaxed loads, as the SIGUSR1 stats
 * line does: no lock is taken on the query path.  (The shared cache's
 * entry and byte counts come from dv_cache_stats(), which takes each
 * shard's lock for a moment, once per scrape.)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/config/config.h"
#include "src/core/cache.h"

typedef struct dv_worker dv_worker_t;
typedef struct dv_admin dv_admin_t;
typedef struct dv_policy dv_policy_t;

/* A worker whose heartbeat is older than this fails /healthz. */
#define DV_ADMIN_STALL_MS 5000

/*
 * Configuration reloads (SIGHUP, POST /reload): the main thread writes
 * them, the admin thread reads them (atomics).  `done` counts the reloads
 * finished, bumped after the rest: POST /reload waits for it to move.
 */
typedef struct {
	uint64_t successes, failures;
	uint64_t last_success_s; /* seconds since the epoch; 0: none yet */
	uint64_t done;
	bool last_ok;
	char last_error[512]; /* the refusal's FILE:LINE: KEY: reason */
} dv_reload_stats_t;

/* What /metrics and the probes read. */
typedef struct {
	const dv_config_t *cfg;
	dv_worker_t *const *workers;
	unsigned n_workers;
	dv_cache_t *cache; /* may be NULL */
	const dv_policy_t *policy; /* NULL: no policy */
	dv_reload_stats_t *reload; /* NULL: /reload is 404 */
} dv_admin_view_t;

/* The admin listener's own counters (its thread writes them). */
typedef struct {
	/* /metrics, /healthz, /readyz, anything else, /reload */
	uint64_t requests[5];
	uint64_t refused;     /* connections from outside admin.allow */
	uint64_t bad;         /* 400, 431 and timed-out connections */
} dv_admin_stats_t;

/*
 * Bind the listeners of cfg->admin_listen (the view is kept; the workers
 * must outlive the admin listener).  NULL with a message in `err` when an
 * address cannot be bound.
 */
dv_admin_t *dv_admin_new(const dv_admin_view_t *view, char *err,
			 size_t err_len);
/* Start its thread.  0 or -errno. */
int dv_admin_start(dv_admin_t *a);
/* The listeners are bound and the workers run (/readyz may say ready). */
void dv_admin_set_started(dv_admin_t *a);
/* dnsveil is draining: /readyz fails from now on. */
void dv_admin_set_draining(dv_admin_t *a);
/* The reload's outcome for POST /reload: call after the stats in
 * dv_reload_stats_t are written (main thread). */
void dv_admin_reload_done(dv_reload_stats_t *r, bool ok, const char *err);
/* Stop the thread, close everything (NULL is a no-op). */
void dv_admin_free(dv_admin_t *a);

/* Write the Prometheus exposition of `v` (and of the admin listener's own
 * counters `st`) to `f`. */
void dv_admin_metrics(FILE *f, const dv_admin_view_t *v,
		      const dv_admin_stats_t *st);
/*
 * /healthz and /readyz: true when healthy (ready); otherwise false with a
 * short reason in `why`.
 */
bool dv_admin_healthy(const dv_admin_view_t *v, uint64_t now_ms, char *why,
		      size_t why_len);
bool dv_admin_ready(const dv_admin_view_t *v, bool started, bool draining,
		    char *why, size_t why_len);

#pragma once
/*
 * The policy: who asks (a client ID from the DoH path or the TLS SNI, the
 * client address, the listener), which group that client is in, and what
 * the group's block and allow lists say about the name asked (README
 * "Policy").
 *
 * Design note.  The core knows nothing of this folder: the worker gives
 * its core dv_policy_core_ops and its own dv_policy_worker_t, and the core
 * calls the one `decide` hook in its policy stage, before the cache (so a
 * blocked answer is made per client and never stored in the shared
 * cache).  What the config says (groups, clients, lists, records,
 * internal names, DDR) is one state, built by the main thread at start
 * and by a reload, and then only read by every worker: a reload builds a
 * whole new state off the query path and swaps it in at once
 * (policy_reload.c); each worker has its own counters and debug-line
 * budget, so the hot path takes no lock and allocates nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/config/config.h"
#include "src/core/certnames.h"
#include "src/core/core.h"

typedef struct dv_policy dv_policy_t;
typedef struct dv_policy_worker dv_policy_worker_t;
typedef struct pstate dv_policy_state_t;

/*
 * Build the policy of `cfg` (lists read from their files now), its hashes
 * keyed by `seed`.  A config without policy (no lists, groups, clients,
 * internal names or DDR) gets an empty one, which a reload can fill: every
 * query passes at the cost of a few tests.  Returns 0, or -ENOMEM /
 * -errno with "lists.NAME.source: 'FILE': reason" in `err`.  Bad lines
 * are counted (dv_policy_log_lists), never an error.
 */
int dv_policy_new(const dv_config_t *cfg, uint64_t seed, dv_policy_t **out,
		  char *err, size_t err_len);
void dv_policy_free(dv_policy_t *p);

/* Whether the state in use does anything (lists, groups, clients,
 * internal names or DDR). */
bool dv_policy_active(const dv_policy_t *p);

/*
 * A reload (SIGHUP, POST /reload, a new certificate), main thread:
 * _prepare builds the whole policy of `cfg` with DDR checked against
 * `cert` -- lists of the same name, source and format keep their state,
 * and their rules too when every list is the same; new URL lists are
 * fetched now -- without touching the one in use, and holds the list
 * refresher off until _commit (swap it in: the workers' next loop turns
 * use it, the old state is freed once none can hold it; this waits for
 * the workers' turns) or _discard.  _prepare returns 0, or a negative
 * error with "KEY: reason" in `err` (nothing changed, nothing held).
 */
int dv_policy_reload_prepare(dv_policy_t *p, const dv_config_t *cfg,
			     const dv_cert_names_t *cert,
			     dv_policy_state_t **out, char *err,
			     size_t err_len);
void dv_policy_reload_commit(dv_policy_t *p, dv_policy_state_t *next);
void dv_policy_reload_discard(dv_policy_t *p, dv_policy_state_t *next);

/* The names of tls.cert, which DDR checks what it advertises against
 * (ddr.h); main reads them through src/tls and sets them before
 * dv_policy_new (a copy is kept).  Not set: no certificate. */
void dv_policy_set_cert_names(const dv_cert_names_t *names);

/* Set by --check-config before dv_policy_new: URL lists are not fetched,
 * only their copies in policy.cache-dir read (none: empty, a warning). */
extern bool dv_policy_no_fetch;

/* One info line per list: rules, exceptions, bad and skipped lines, and
 * the names held, the memory and the time the load took. */
void dv_policy_log_lists(const dv_policy_t *p);

/*
 * Start the thread that refreshes the lists with a refresh-s (after the
 * workers exist; dv_policy_free stops it).  0 or -errno.
 */
int dv_policy_start_refresh(dv_policy_t *p);

/* Have the refresher fetch or check every list now, those without a
 * refresh-s too (SIGHUP); it returns at once. */
void dv_policy_refresh_now(dv_policy_t *p);

/* A worker's use of `p` (kept): its counters.  NULL: out of memory. */
dv_policy_worker_t *dv_policy_worker_new(const dv_policy_t *p);
void dv_policy_worker_free(dv_policy_worker_t *w);

/*
 * A worker's loop turn: call _enter when the loop wakes, before any query
 * of the turn, and _leave before it sleeps.  Between the two the worker
 * holds one snapshot of the lists; a refresh frees the old one only when
 * every worker has left the turn that held it (refresh.c).
 */
void dv_policy_worker_enter(dv_policy_worker_t *w);
void dv_policy_worker_leave(dv_policy_worker_t *w);

/* The core's hook (core.h); its `policy` is a dv_policy_worker_t. */
extern const dv_core_policy_ops_t dv_policy_core_ops;

/* The counters summed over the workers, for /metrics. */
typedef struct {
	char name[DV_POLICY_NAME_MAX];
	uint64_t queries, blocked, allowed, local;
	uint64_t refused, rate_limited; /* allow-from/deny-from, limits */
} dv_policy_group_sum_t;

typedef struct {
	char name[DV_POLICY_NAME_MAX];
	uint64_t queries, blocked, allowed; /* queries: of groups using it */
	uint64_t entries, exceptions, bad_lines, skipped; /* copy in use */
	uint64_t loads, unchanged, failures; /* copies parsed, 304s, fails */
	uint64_t last_ok_s; /* last good fetch or read, epoch seconds */
} dv_policy_list_sum_t;

typedef struct {
	uint64_t refused_unknown_id;
	unsigned n_groups, n_lists;
	dv_policy_group_sum_t groups[DV_POLICY_MAX_GROUPS];
	dv_policy_list_sum_t lists[DV_POLICY_MAX_LISTS];
} dv_policy_sums_t;

/* Sum `n` workers' counters (NULL ones skipped) and the lists' state
 * into `out`.  Takes the refresher's lock briefly. */
void dv_policy_sum(const dv_policy_t *p, dv_policy_worker_t *const *w,
		   unsigned n, dv_policy_sums_t *out);

/*
 * Write the policy counters summed over `n` workers as JSON members to go
 * inside the stats object: ,"policy":{"refused_unknown_id":N,"groups":
 * {NAME:{"queries":N,"blocked":N,"allowed":N,"local":N,"refused":N,
 * "rate_limited":N}...},"lists":{NAME:{...,
 * "rules":N,"bad_lines":N,"skipped":N}...}} (starting with the comma).
 */
void dv_policy_stats_json(FILE *f, const dv_policy_t *p,
			  dv_policy_worker_t *const *w, unsigned n);


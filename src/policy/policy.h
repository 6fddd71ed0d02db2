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
 * cache).  The dv_policy_t (groups, clients, the lists' suffix set) is
 * built once at start by the main thread and then only read, by every
 * worker; each worker has its own counters and debug-line budget, so the
 * hot path takes no lock and allocates nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/config/config.h"
#include "src/core/core.h"

typedef struct dv_policy dv_policy_t;
typedef struct dv_policy_worker dv_policy_worker_t;

/*
 * Build the policy of `cfg` (lists read from their files now), its hashes
 * keyed by `seed`.  *out is NULL when the config has no policy (no lists,
 * groups or clients): every query passes at no cost.  Returns 0, or
 * -ENOMEM / -errno with "lists.NAME.source: 'FILE': reason" in `err`.
 * Bad lines are counted (dv_policy_log_lists), never an error.
 */
int dv_policy_new(const dv_config_t *cfg, uint64_t seed, dv_policy_t **out,
		  char *err, size_t err_len);
void dv_policy_free(dv_policy_t *p);

/* One info line per list: rules, exceptions, bad and skipped lines, and
 * the names held, the memory and the time the load took. */
void dv_policy_log_lists(const dv_policy_t *p);

/* A worker's use of `p` (kept): its counters.  NULL: out of memory. */
dv_policy_worker_t *dv_policy_worker_new(const dv_policy_t *p);
void dv_policy_worker_free(dv_policy_worker_t *w);

/* The core's hook (core.h); its `policy` is a dv_policy_worker_t. */
extern const dv_core_policy_ops_t dv_policy_core_ops;

/*
 * Write the policy counters summed over `n` workers as JSON members to go
 * inside the stats object: ,"policy":{"refused_unknown_id":N,"groups":
 * {NAME:{"queries":N,"blocked":N,"allowed":N}...},"lists":{NAME:{...,
 * "rules":N,"bad_lines":N,"skipped":N}...}} (starting with the comma).
 */
void dv_policy_stats_json(FILE *f, const dv_policy_t *p,
			  dv_policy_worker_t *const *w, unsigned n);

/* The per-group counters of dv_policy_group_counts(). */
typedef struct {
	uint64_t queries, blocked, allowed, local;
} dv_policy_group_counts_t;

/* Groups of `p` (0 for NULL), and the name of group `g`. */
unsigned dv_policy_n_groups(const dv_policy_t *p);
const char *dv_policy_group_name(const dv_policy_t *p, unsigned g);
/* Group `g`'s counters summed over `n` workers (NULL entries skipped);
 * relaxed loads: any thread may call it. */
void dv_policy_group_counts(const dv_policy_t *p, unsigned g,
			    dv_policy_worker_t *const *w, unsigned n,
			    dv_policy_group_counts_t *out);

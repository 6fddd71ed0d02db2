#pragma once
/*
 * Private to src/policy/: the compiled policy the files of the folder
 * share (policy.c builds and decides, answer.c writes answers).
 */
#include "src/config/config.h"
#include "src/core/netmask.h"
#include "src/core/query.h"
#include "src/policy/ddr.h"
#include "src/policy/lists.h"
#include "src/policy/ratelimit.h"
#include "src/policy/policy.h"
#include "src/policy/records.h"
#include "src/policy/rpz.h"
#include "src/policy/suffix.h"

typedef struct {
	char name[DV_POLICY_NAME_MAX];
	uint32_t block, allow; /* list masks */
	uint32_t lists; /* block | allow: the lists that count */
	uint8_t action; /* dv_action_t */
	uint8_t n_v4, n_v6;
	uint8_t v4[DV_POLICY_MAX_ACTION][4];
	uint8_t v6[DV_POLICY_MAX_ACTION][16];
	uint32_t ttl;
	/* access control: deny wins; no allow_from: every address */
	dv_netmask_t allow_from[DV_POLICY_CLIENT_CIDRS];
	dv_netmask_t deny_from[DV_POLICY_CLIENT_CIDRS];
	uint8_t n_allow_from, n_deny_from;
	/* rate limit (ratelimit.h); qps 0: none */
	uint8_t rate_action; /* dv_rate_action_t */
	uint8_t rate_v4, rate_v6; /* prefix lengths of a bucket's key */
	uint32_t rate_qps, rate_burst;
	/* its upstream set (q->upstream_set; 0: the top-level one) */
	uint8_t upstream_set;
	uint8_t slot; /* of its counters (dv_policy_t.group_slot) */
} group_t;

typedef struct {
	char id[DV_POLICY_NAME_MAX]; /* pattern; "" = any */
	dv_netmask_t cidr[DV_POLICY_CLIENT_CIDRS];
	unsigned n_cidr;
	uint8_t listener; /* q->listener to match; 0 = any */
	unsigned group;
} client_t;

/*
 * A list.  The name and the config part never change; the rest belongs to
 * the refresher (refresh.c), which writes it under rt->lock, and the
 * stats readers take the lock too.
 */
typedef struct {
	char name[DV_POLICY_NAME_MAX];
	char source[512];
	unsigned format; /* dv_list_format_t */
	bool url;
	unsigned refresh_s;
	uint64_t max_bytes;
	unsigned timeout_ms;
	dv_list_stats_t st; /* of the copy in use */
	uint64_t loads; /* copies parsed (at start and by refreshes) */
	uint64_t unchanged; /* refreshes that found nothing new (304) */
	uint64_t failures; /* refreshes or start fetches that failed */
	uint64_t last_ok_s; /* the last good fetch or read, epoch seconds */
	/* the refresher's own: what the copy in use came from */
	int64_t size, mtime_ns; /* a file's */
	char etag[256], last_modified[64]; /* a URL's validators */
	uint64_t due_ms;
	unsigned slot; /* of its counters (dv_policy_t.list_slot) */
} list_t;

/* What a refresh replaces at once: every list's rules in one set, and
 * each RPZ list's triggers in a zone of its own. */
typedef struct {
	dv_suffix_set_t *set;
	dv_rpz_t *rpz[DV_POLICY_MAX_LISTS]; /* NULL: not an RPZ list */
} snap_t;

typedef struct policy_rt policy_rt_t; /* refresh.c: thread, workers */

/*
 * Everything the config says about the policy, built off the query path
 * (at start, and by a reload: policy_reload.c) and then only read.  A
 * reload builds a whole new state and swaps p->cur; a list refresh swaps
 * only the state's snapshot.  Either way workers hold what they loaded
 * for one loop turn, and the old one is freed once every worker has left
 * the turn that could hold it (refresh.c).
 */
typedef struct pstate {
	/* the snapshot in use: loaded by workers once per loop turn
	 * (dv_policy_worker_enter), replaced by the refresher */
	snap_t *snap;
	bool own_snap; /* false: moved to the state that replaced this one */
	uint64_t gen; /* 1 at start, +1 a reload */
	/* +1 when the groups' rate limits change: the workers' buckets
	 * start again (ratelimit.h) */
	uint64_t rate_epoch;
	uint32_t rpz_mask; /* the lists of format rpz */
	char cache_dir[256];
	char ca[512]; /* policy.ca */
	group_t groups[DV_POLICY_MAX_GROUPS];
	unsigned n_groups;
	unsigned default_group;
	client_t clients[DV_POLICY_MAX_CLIENTS];
	unsigned n_clients;
	bool any_id_client; /* some entry matches by ID */
	char server_names[DV_POLICY_MAX_SERVER_NAMES][256];
	unsigned n_server_names;
	bool clients_only;
	bool rate_limits; /* some group has a rate-limit-qps */
	list_t lists[DV_POLICY_MAX_LISTS];
	unsigned n_lists;
	uint64_t load_ms;
	/* groups' local records (NULL: none) */
	dv_records_t *records;
	/* internal names: bit INTERNAL_* of the suffix set `internal`
	 * (NULL: none); `internal_mask` the bits that count */
	dv_suffix_set_t *internal;
	uint32_t internal_mask;
	/* DDR's answers (ddr.h; NULL: resolver.arpa is passed on) */
	dv_ddr_t *ddr;
} pstate_t;

/* Counter slots: a group's or a list's counters live in the workers at
 * the slot of its name, so that they survive a reload that keeps the
 * name; a slot of a name the new state dropped is zeroed.  The current
 * state and the next one never use more than twice the maximum. */
#define GROUP_SLOTS (2 * DV_POLICY_MAX_GROUPS)
#define LIST_SLOTS (2 * DV_POLICY_MAX_LISTS)

struct dv_policy {
	/* the state in use, loaded by workers once per loop turn, replaced
	 * by dv_policy_reload_commit() */
	pstate_t *cur;
	policy_rt_t *rt;
	uint64_t seed;
	char group_slot[GROUP_SLOTS][DV_POLICY_NAME_MAX]; /* "": free */
	char list_slot[LIST_SLOTS][DV_POLICY_NAME_MAX];
};

/* The sources of internal names (bits of dv_policy_t.internal). */
enum { INTERNAL_CONFIG, INTERNAL_SPECIAL_USE, INTERNAL_RECORDS };

/* Counters of a group, of a list. */
enum {
	GC_QUERIES,
	GC_BLOCKED,
	GC_ALLOWED,
	GC_LOCAL,
	GC_REFUSED, /* by allow-from / deny-from */
	GC_RATE_LIMITED,
	GC_N
};

/* Buckets of a worker's rate-limit table (ratelimit.h), about 1.5 MiB,
 * made only when some group has a rate limit. */
#define RATE_TABLE_ENTRIES 65536
enum { LC_BLOCKED, LC_ALLOWED, LC_N };

struct dv_policy_worker {
	const dv_policy_t *p;
	/* the state and snapshot this loop turn reads (NULL between
	 * turns), and the turn counter the refresher and a reload watch:
	 * odd while in a turn */
	const pstate_t *st;
	const snap_t *snap;
	uint64_t turn;
	uint64_t gen, rate_epoch; /* of the last state this worker read */
	uint64_t group_ctr[GROUP_SLOTS][GC_N];
	uint64_t list_ctr[LIST_SLOTS][LC_N];
	uint64_t refused_unknown_id;
	dv_ratelimit_t *rl; /* NULL: no group has a rate limit */
	/* the decision debug lines: at most LOG_PER_SECOND a second */
	uint64_t log_second;
	unsigned log_n, log_dropped;
	/* a local answer before dv_wire_answer() makes it the client's */
	uint8_t tmp[DV_DNS_MAX_MSG];
};

/* refresh.c: the refresher's runtime (its lock, the workers' table). */
int dv_policy_rt_new(dv_policy_t *p);
/*
 * refresh.c: the lists of `cfg` into `st`, and their rules into st->snap.
 * A list `prev` has with the same name, source and format keeps its
 * state (validators, counters, the copy on disk); a new URL list is
 * fetched now.  With `prev` whose lists are the same as cfg's, its
 * snapshot moves to `st` (nothing parsed again).  0 or a negative error
 * with "lists.NAME.source: 'FILE': reason" in `err`.
 */
int dv_policy_lists_load(dv_policy_t *p, pstate_t *st, pstate_t *prev,
			 const dv_config_t *cfg, char *err, size_t err_len);
/* refresh.c: free a snapshot (NULL: nothing). */
void dv_policy_snap_free(snap_t *s);
/* refresh.c: wait until no worker can hold a state or snapshot loaded
 * before now.  false when the refresher is told to stop first. */
bool dv_policy_synchronize(dv_policy_t *p);
/* refresh.c: zero every worker's counters of the slots marked true (no
 * state in use counts there any more). */
void dv_policy_zero_slots(dv_policy_t *p, const bool *groups,
			  const bool *lists);
/* refresh.c: the refresher's work lock: held while it checks and swaps
 * the lists, and by a reload from its build to its swap. */
void dv_policy_work_lock(dv_policy_t *p);
void dv_policy_work_unlock(dv_policy_t *p);
/* refresh.c: the lock of the state pointer for readers off the workers
 * (the sums for /metrics); a reload swaps p->cur under it. */
void dv_policy_state_lock(const dv_policy_t *p);
void dv_policy_state_unlock(const dv_policy_t *p);
/* policy.c: build a whole state from `cfg` (`prev`: the one in use, or
 * NULL at start; `cert`: DDR's names).  0 or a negative error with
 * FILE-less "KEY: reason" in `err`. */
int dv_policy_state_build(dv_policy_t *p, pstate_t *prev,
			  const dv_config_t *cfg, const dv_cert_names_t *cert,
			  pstate_t **out, char *err, size_t err_len);
void dv_policy_state_free(pstate_t *st);
/* policy.c: give the groups and lists of `st` counter slots, the names
 * `prev` has keeping theirs (prev NULL: at start). */
void dv_policy_slots_assign(dv_policy_t *p, pstate_t *st, const pstate_t *prev);
/* refresh.c: register and unregister a worker with the refresher; free
 * the runtime part (the thread stopped, the snapshots). */
int dv_policy_rt_register(const dv_policy_t *p, dv_policy_worker_t *w);
void dv_policy_rt_unregister(const dv_policy_t *p, dv_policy_worker_t *w);
void dv_policy_rt_free(dv_policy_t *p);
/* refresh.c: copy a list of the state in use, its refresh state under
 * the lock. */
void dv_policy_list_read(const dv_policy_t *p, unsigned i, list_t *out);

/*
 * The answer to `q` blocked for group `g` by list `list` (its rule for
 * the suffix at text offset `suffix_off` of the question name), per the
 * group's action, with EDE 15 naming the list when the client sent EDNS.
 * Returns the length written into `buf`, or a negative error.
 */
int dv_policy_blocked_answer(uint8_t *buf, size_t cap, const dv_query_t *q,
			     const group_t *g, unsigned suffix_off,
			     const char *list, unsigned pad_block);

/* Build p->internal from the config's internal:, the special-use names
 * and the records' names, as policy.internal-* say (internal.c).  0 or
 * -ENOMEM. */
int dv_policy_internal_build(pstate_t *p, const dv_config_t *cfg,
			     uint64_t seed);
/* Whether `name` (text as dv_suffix_query_name() writes it) is internal. */
bool dv_policy_internal(const pstate_t *p, const char *name, size_t len);

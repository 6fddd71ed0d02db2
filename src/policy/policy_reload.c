/*
 * A reload of the policy (policy.h): the whole state built anew off the
 * query path, swapped in at once, the old one freed when no worker can
 * hold it any more.
 *
 * Design note.  This is the list refresher's scheme one level up
 * (refresh.c): a list refresh swaps a state's snapshot of rules, a
 * reload swaps the state (groups, clients, lists, records, internal
 * names, DDR).  Both build under the refresher's work lock, so only one
 * of them builds at a time, and both wait for the workers' loop turns
 * before freeing.  A state keeps the snapshot of the one before it when
 * the lists are the same (nothing parsed again: a reload that changes a
 * group does not read a 1,000,000-name list again).
 *
 * The counters of a group or a list follow its name across a reload
 * (slots, policy_int.h); a name the new state drops has its counters
 * zeroed once no worker counts there.  A connection's memo of its group
 * holds the state's generation, so it is worked out again after a
 * reload.  The rate limiters' buckets start again when the groups'
 * limits change (a bucket's key holds the group's index).
 */
#include <string.h>

#include "src/core/log.h"
#include "src/policy/policy_int.h"

int dv_policy_reload_prepare(dv_policy_t *p, const dv_config_t *cfg,
			     const dv_cert_names_t *cert,
			     dv_policy_state_t **out, char *err, size_t err_len)
{
	*out = NULL;
	dv_policy_work_lock(p);
	pstate_t *st = NULL;
	int ret =
		dv_policy_state_build(p, p->cur, cfg, cert, &st, err, err_len);
	if (ret < 0) {
		dv_policy_work_unlock(p);
		return ret;
	}
	*out = st;
	return 0;
}

void dv_policy_reload_discard(dv_policy_t *p, dv_policy_state_t *st)
{
	if (!st)
		return;
	if (st->own_snap && st->snap == p->cur->snap) {
		/* it stays the state in use's */
		st->own_snap = false;
		p->cur->own_snap = true;
	}
	dv_policy_state_free(st);
	dv_policy_work_unlock(p);
}

void dv_policy_reload_commit(dv_policy_t *p, dv_policy_state_t *st)
{
	pstate_t *old = p->cur;
	dv_policy_slots_assign(p, st, old);
	dv_policy_state_lock(p);
	__atomic_store_n(&p->cur, st, __ATOMIC_SEQ_CST);
	dv_policy_state_unlock(p);
	bool snap_kept = st->snap == old->snap;
	/* the workers' next turns read `st`; the old state goes when every
	 * worker has left the turn that could have held it */
	if (dv_policy_synchronize(p)) {
		bool gz[GROUP_SLOTS] = { false }, lz[LIST_SLOTS] = { false };
		for (unsigned i = 0; i < old->n_groups; i++)
			gz[old->groups[i].slot] = true;
		for (unsigned i = 0; i < old->n_lists; i++)
			lz[old->lists[i].slot] = true;
		for (unsigned i = 0; i < st->n_groups; i++)
			gz[st->groups[i].slot] = false;
		for (unsigned i = 0; i < st->n_lists; i++)
			lz[st->lists[i].slot] = false;
		dv_policy_zero_slots(p, gz, lz);
		dv_policy_state_free(old);
	}
	/* else the process is stopping: the old state is left to the exit */
	dv_policy_work_unlock(p);
	dv_log_info("policy: reloaded (generation %llu): %u groups, %u "
		    "clients entries, %u lists (%s), %zu local records",
		    (unsigned long long)st->gen, st->n_groups, st->n_clients,
		    st->n_lists, snap_kept ? "rules kept" : "rules read again",
		    dv_records_count(st->records));
	dv_ddr_log(st->ddr);
	int ret = dv_policy_start_refresh(p);
	if (ret)
		dv_log_error("cannot start the list refresher: %s; lists stay "
			     "as loaded",
			     strerror(-ret));
}

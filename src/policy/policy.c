/*
 * The policy: built from the config at start, then the decision the core
 * asks for each query (policy.h).
 *
 * A decision: the client ID (the DoH path's, or the first label of the
 * TLS SNI before one of policy.server-names); with policy.clients-only an
 * ID no clients: id pattern matches is refused; the group of the first
 * clients: entry whose keys all match (else "default") -- these two
 * worked out once per connection where the transport keeps a memo
 * (q->ident_memo); and, when the group has lists, the most specific suffix of the name asked that one of
 * them has a rule for.  There an allow rule (a rule of an allow: list, or
 * an adblock exception of a block: list) wins over a block rule; a name
 * without a rule of its own follows its parent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/core/log.h"
#include "src/policy/hash.h"
#include "src/policy/policy_int.h"

#define LOG_PER_SECOND 100
#define MEMO_REFUSED 0xff /* q->ident_memo low byte: an unknown client ID */

/* Only the owning worker writes its counters; the main thread reads them
 * for the stats line (as src/core/stats.h's). */
#define CTR_INC(x) __atomic_store_n(&(x), (x) + 1, __ATOMIC_RELAXED)
#define CTR_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- building ---- */

static void build_group(group_t *g, const dv_cfg_group_t *cg)
{
	snprintf(g->name, sizeof(g->name), "%s", cg->name);
	g->block = cg->block_mask;
	g->allow = cg->allow_mask;
	g->lists = g->block | g->allow;
	g->ttl = cg->blocked_ttl;
	g->action = cg->n_action ? cg->action[0].kind : DV_ACTION_NXDOMAIN;
	for (unsigned i = 0; i < cg->n_action; i++) {
		const dv_cfg_action_t *a = &cg->action[i];
		if (a->kind != DV_ACTION_ADDRESSES)
			continue;
		if (a->family == AF_INET)
			memcpy(g->v4[g->n_v4++], a->addr, 4);
		else
			memcpy(g->v6[g->n_v6++], a->addr, 16);
	}
	memcpy(g->allow_from, cg->allow_from, sizeof(g->allow_from));
	memcpy(g->deny_from, cg->deny_from, sizeof(g->deny_from));
	g->n_allow_from = (uint8_t)cg->n_allow_from;
	g->n_deny_from = (uint8_t)cg->n_deny_from;
	g->rate_qps = cg->rate_limit_qps;
	g->rate_burst = cg->rate_limit_burst ? cg->rate_limit_burst
					     : cg->rate_limit_qps;
	g->rate_action = (uint8_t)cg->rate_limit_action;
	g->rate_v4 = (uint8_t)cg->rate_limit_v4;
	g->rate_v6 = (uint8_t)cg->rate_limit_v6;
	g->upstream_set = (uint8_t)cg->upstream_set;
}

static dv_cert_names_t cert_names;

void dv_policy_set_cert_names(const dv_cert_names_t *names)
{
	cert_names = *names;
}

/* Whether the groups of `a` and `b` limit rates alike (a bucket's key
 * holds the group's index, so the order counts too). */
static bool same_rate_limits(const pstate_t *a, const pstate_t *b)
{
	if (a->n_groups != b->n_groups)
		return false;
	for (unsigned i = 0; i < a->n_groups; i++) {
		const group_t *x = &a->groups[i], *y = &b->groups[i];
		if (strcmp(x->name, y->name) != 0 ||
		    x->rate_qps != y->rate_qps ||
		    x->rate_burst != y->rate_burst ||
		    x->rate_action != y->rate_action ||
		    x->rate_v4 != y->rate_v4 || x->rate_v6 != y->rate_v6)
			return false;
	}
	return true;
}

int dv_policy_state_build(dv_policy_t *p, pstate_t *prev,
			  const dv_config_t *cfg, const dv_cert_names_t *cert,
			  pstate_t **out, char *err, size_t err_len)
{
	*out = NULL;
	uint64_t t0 = mono_ms();
	pstate_t *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, err_len, "policy: out of memory");
		return -ENOMEM;
	}
	st->gen = prev ? prev->gen + 1 : 1;
	int ret = dv_policy_lists_load(p, st, prev, cfg, err, err_len);
	if (ret == 0)
		ret = dv_ddr_new(cfg, cert, &st->ddr, err, err_len);
	if (ret == 0 && ((cfg->n_records &&
			  !(st->records = dv_records_new(cfg, p->seed))) ||
			 dv_policy_internal_build(st, cfg, p->seed) != 0)) {
		snprintf(err, err_len, "policy: out of memory");
		ret = -ENOMEM;
	}
	if (ret < 0) {
		if (prev && st->snap && st->snap == prev->snap) {
			prev->own_snap = true; /* it stays prev's */
			st->own_snap = false;
		}
		dv_policy_state_free(st);
		return ret;
	}
	for (unsigned i = 0; i < cfg->n_groups; i++) {
		build_group(&st->groups[i], &cfg->groups[i]);
		if (strcmp(cfg->groups[i].name, "default") == 0)
			st->default_group = i;
		st->rate_limits |= st->groups[i].rate_qps != 0;
	}
	st->n_groups = cfg->n_groups;
	for (unsigned i = 0; i < cfg->n_clients; i++) {
		const dv_cfg_client_t *cc = &cfg->clients[i];
		client_t *c = &st->clients[i];
		snprintf(c->id, sizeof(c->id), "%s", cc->id);
		st->any_id_client |= cc->id[0] != '\0';
		memcpy(c->cidr, cc->cidr, sizeof(c->cidr));
		c->n_cidr = cc->n_cidr;
		for (unsigned k = 0; cc->listener[0] && k < cfg->n_listen; k++)
			if (strcmp(cfg->listen[k].text, cc->listener) == 0) {
				c->listener = (uint8_t)(k + 1);
				break;
			}
		c->group = cc->group_index;
	}
	st->n_clients = cfg->n_clients;
	memcpy(st->server_names, cfg->server_names, sizeof(st->server_names));
	st->n_server_names = cfg->n_server_names;
	st->clients_only = cfg->clients_only != 0;
	st->rate_epoch = !prev			      ? 1
			 : same_rate_limits(prev, st) ? prev->rate_epoch
						      : prev->rate_epoch + 1;
	st->load_ms = mono_ms() - t0;
	*out = st;
	return 0;
}

void dv_policy_state_free(pstate_t *st)
{
	if (!st)
		return;
	if (st->own_snap)
		dv_policy_snap_free(st->snap);
	dv_ddr_free(st->ddr);
	dv_suffix_free(st->internal);
	dv_records_free(st->records);
	free(st);
}

/* The slot of `name` among `slots` (n of them) when `prev` uses it
 * (taken[]), else one neither `prev` nor `st` uses (given[]: st's). */
static unsigned slot_for(char (*slots)[DV_POLICY_NAME_MAX], unsigned n,
			 const char *name, const bool *taken, bool *given)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		if (taken[i] && strcmp(slots[i], name) == 0) {
			k = i;
			goto found;
		}
	for (unsigned i = 0; i < n; i++)
		if (!taken[i] && !given[i]) {
			k = i;
			goto found;
		}
	/* cannot happen: the two states use at most n */
found:
	given[k] = true;
	if (strcmp(slots[k], name) != 0)
		snprintf(slots[k], DV_POLICY_NAME_MAX, "%s", name);
	return k;
}

void dv_policy_slots_assign(dv_policy_t *p, pstate_t *st, const pstate_t *prev)
{
	bool gtaken[GROUP_SLOTS] = { false }, ltaken[LIST_SLOTS] = { false };
	bool ggiven[GROUP_SLOTS] = { false }, lgiven[LIST_SLOTS] = { false };
	for (unsigned i = 0; prev && i < prev->n_groups; i++)
		gtaken[prev->groups[i].slot] = true;
	for (unsigned i = 0; prev && i < prev->n_lists; i++)
		ltaken[prev->lists[i].slot] = true;
	for (unsigned i = 0; i < st->n_groups; i++)
		st->groups[i].slot =
			(uint8_t)slot_for(p->group_slot, GROUP_SLOTS,
					  st->groups[i].name, gtaken, ggiven);
	for (unsigned i = 0; i < st->n_lists; i++)
		st->lists[i].slot = slot_for(p->list_slot, LIST_SLOTS,
					     st->lists[i].name, ltaken, lgiven);
}

int dv_policy_new(const dv_config_t *cfg, uint64_t seed, dv_policy_t **out,
		  char *err, size_t err_len)
{
	*out = NULL;
	dv_policy_t *p = calloc(1, sizeof(*p));
	if (!p || dv_policy_rt_new(p) != 0) {
		free(p);
		snprintf(err, err_len, "policy: out of memory");
		return -ENOMEM;
	}
	p->seed = seed;
	int ret = dv_policy_state_build(p, NULL, cfg, &cert_names, &p->cur, err,
					err_len);
	if (ret < 0) {
		dv_policy_free(p);
		return ret;
	}
	dv_policy_slots_assign(p, p->cur, NULL);
	*out = p;
	return 0;
}

void dv_policy_free(dv_policy_t *p)
{
	if (!p)
		return;
	dv_policy_rt_free(p);
	dv_policy_state_free(p->cur);
	free(p);
}

bool dv_policy_active(const dv_policy_t *p)
{
	const pstate_t *st = p->cur;
	return st->n_lists || st->n_groups || st->n_clients || st->internal ||
	       st->ddr;
}

void dv_policy_log_lists(const dv_policy_t *p)
{
	const pstate_t *st = p->cur;
	if (!dv_policy_active(p))
		return;
	for (unsigned i = 0; i < st->n_lists; i++) {
		list_t l;
		dv_policy_list_read(p, i, &l);
		dv_log_info("policy: list %s (%s): %" PRIu64 " rules (%" PRIu64
			    " exceptions), %" PRIu64 " bad lines, %" PRIu64
			    " skipped, of %" PRIu64 " lines",
			    l.name, l.source, l.st.rules, l.st.exceptions,
			    l.st.bad, l.st.skipped, l.st.lines);
	}
	/* main thread, between a build and the next reload: st stays */
	dv_log_info(
		"policy: %zu names in %zu KiB, loaded in %" PRIu64
		" ms; %u groups, %u clients entries; %zu local records "
		"(%zu names); internal names%s%s%s",
		dv_suffix_count(st->snap->set),
		dv_suffix_bytes(st->snap->set) / 1024, st->load_ms,
		st->n_groups, st->n_clients, dv_records_count(st->records),
		dv_records_nodes(st->records),
		st->internal_mask & 1u << INTERNAL_CONFIG ? " internal:" : "",
		st->internal_mask & 1u << INTERNAL_SPECIAL_USE ? " special-use"
							       : "",
		st->internal_mask & 1u << INTERNAL_RECORDS ? " records" : "");
	dv_ddr_log(st->ddr);
}

dv_policy_worker_t *dv_policy_worker_new(const dv_policy_t *p)
{
	dv_policy_worker_t *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->p = p;
	w->gen = p->cur->gen;
	w->rate_epoch = p->cur->rate_epoch;
	if (p->cur->rate_limits &&
	    !(w->rl = dv_ratelimit_new(RATE_TABLE_ENTRIES))) {
		free(w);
		return NULL;
	}
	if (dv_policy_rt_register(p, w) < 0) {
		dv_ratelimit_free(w->rl);
		free(w);
		return NULL;
	}
	return w;
}

void dv_policy_worker_free(dv_policy_worker_t *w)
{
	if (!w)
		return;
	dv_policy_worker_leave(w);
	dv_policy_rt_unregister(w->p, w);
	dv_ratelimit_free(w->rl);
	free(w);
}

/* ---- deciding ---- */

typedef enum {
	D_PASS,
	D_ALLOW,
	D_BLOCK,
	D_REFUSE,
	D_LOCAL,
	D_LIMITED
} decision_t;
static const char *const decision_names[] = { "pass",	 "allowed",
					      "blocked", "refused",
					      "local",	 "rate-limited" };

/* The query's client ID into `buf`, or NULL.  A verified client
 * certificate's ID wins: it is proven, where a path or an SNI is only
 * claimed. */
static const char *client_id(const pstate_t *p, const dv_query_t *q, char *buf)
{
	if (q->cert_id)
		return q->cert_id;
	if (q->client_id)
		return q->client_id;
	if (!q->sni)
		return NULL;
	for (unsigned i = 0; i < p->n_server_names; i++)
		if (dv_ident_from_sni(q->sni, p->server_names[i], buf))
			return buf;
	return NULL;
}

static bool id_known(const pstate_t *p, const char *id)
{
	for (unsigned i = 0; i < p->n_clients; i++)
		if (p->clients[i].id[0] && dv_ident_glob(p->clients[i].id, id))
			return true;
	return false;
}

static unsigned group_of(const pstate_t *p, const dv_query_t *q, const char *id)
{
	const struct sockaddr *sa = (const struct sockaddr *)&q->peer;
	for (unsigned i = 0; i < p->n_clients; i++) {
		const client_t *c = &p->clients[i];
		if (c->id[0] && !(id && dv_ident_glob(c->id, id)))
			continue;
		if (c->n_cidr && !dv_netmask_match_any(c->cidr, c->n_cidr, sa))
			continue;
		if (c->listener && c->listener != q->listener)
			continue;
		return c->group;
	}
	return p->default_group;
}

static unsigned lowest_bit(uint32_t m)
{
	return (unsigned)__builtin_ctz(m);
}

/* The debug line of one decision, within the worker's budget. */
static void log_decision(dv_policy_worker_t *w, const dv_query_t *q,
			 const char *id, const group_t *g, decision_t d,
			 const char *name, int list)
{
	uint64_t second = q->start_ms / 1000;
	if (second != w->log_second) {
		w->log_second = second;
		w->log_n = 0;
	}
	if (w->log_n >= LOG_PER_SECOND) {
		w->log_dropped++;
		return;
	}
	w->log_n++;
	if (w->log_dropped) {
		dv_log_debug("policy: %u more decisions were not logged",
			     w->log_dropped);
		w->log_dropped = 0;
	}
	char addr[INET6_ADDRSTRLEN] = "?";
	const struct sockaddr *sa = (const struct sockaddr *)&q->peer;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, addr,
			  sizeof(addr));
	dv_log_debug("policy: client %s id %s group %s: %s %s%s%s", addr,
		     id ? id : "-", g ? g->name : "-", decision_names[d],
		     name[0] ? name : ".", list >= 0 ? " list " : "",
		     list >= 0 ? w->st->lists[list].name : "");
}

/* The group's access control: deny-from wins, then a non-empty
 * allow-from must hold the client's address. */
static bool acl_refuses(const group_t *g, const dv_query_t *q)
{
	const struct sockaddr *sa = (const struct sockaddr *)&q->peer;
	if (g->n_deny_from &&
	    dv_netmask_match_any(g->deny_from, g->n_deny_from, sa))
		return true;
	return g->n_allow_from &&
	       !dv_netmask_match_any(g->allow_from, g->n_allow_from, sa);
}

/*
 * The hash of the bucket `q` takes in group `gi`: its client ID when it
 * has one, else its address cut to the group's prefix.  UDP and the
 * stream transports have buckets of their own, so that a client told to
 * ask again over TCP (TC) is not refused there for its UDP queries.
 */
static uint64_t rate_key(uint64_t seed, const group_t *g, unsigned gi,
			 const dv_query_t *q, const char *id)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;
	h = DV_HASH_STEP(h, gi);
	h = DV_HASH_STEP(h, q->udp ? 'u' : 's');
	if (id) {
		h = DV_HASH_STEP(h, 'i');
		for (const char *c = id; *c; c++)
			h = DV_HASH_STEP(h, *c);
		return dv_hash_fmix(h);
	}
	const struct sockaddr *sa = (const struct sockaddr *)&q->peer;
	const uint8_t *a;
	unsigned bits, len;
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0,	0,
					      0, 0, 0, 0, 0xff, 0xff };
	if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		bits = g->rate_v6;
		len = 16;
		if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
			/* an IPv4 client: its /24, not all of IPv4 */
			a += 12;
			bits = g->rate_v4;
			len = 4;
		}
	} else if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)
			    ->sin_addr.s_addr;
		bits = g->rate_v4;
		len = 4;
	} else {
		return dv_hash_fmix(h); /* no address: one bucket */
	}
	h = DV_HASH_STEP(h, len);
	for (unsigned i = 0; i < len; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8
				: bits > 8 * i	    ? bits - 8 * i
						    : 0;
		uint8_t mask = (uint8_t)(0xff00u >> keep);
		h = DV_HASH_STEP(h, a[i] & mask);
	}
	return dv_hash_fmix(h);
}

/*
 * Over the group's rate limit: over UDP an empty answer with TC (or
 * DV_ELIMIT: no answer, with rate-limit-action: drop), over a stream
 * REFUSED with EDE 18 "rate limited".
 */
static int rate_limited_answer(const group_t *g, const dv_query_t *q,
			       uint8_t *buf, size_t cap, unsigned pad_block)
{
	if (!q->udp)
		return dv_wire_error(buf, cap, q->wire, &q->view,
				     DV_RCODE_REFUSED, DV_EDE_PROHIBITED,
				     "rate limited", pad_block);
	if (g->rate_action == DV_RATE_DROP)
		return DV_ELIMIT;
	int len = dv_wire_error(buf, cap, q->wire, &q->view, DV_RCODE_NOERROR,
				0xffff, NULL, pad_block);
	if (len >= 4)
		buf[2] |= DV_FLAG_TC >> 8;
	return len;
}

/*
 * The group's RPZ lists, in list order: the first whose triggers match
 * `name` decides with its own action (rpz.h); in an allow: list, or with
 * rpz-passthru, the name is allowed.  *matched false: none matched.
 */
static int rpz_decide(dv_policy_worker_t *w, dv_query_t *q,
		      const char *id, unsigned gi, const char *name, size_t n,
		      uint8_t *buf, size_t cap, unsigned pad_block,
		      bool *matched)
{
	const pstate_t *p = w->st;
	const group_t *g = &p->groups[gi];
	bool logging = dv_log_level >= DV_LOG_DEBUG;
	for (uint32_t m = g->lists & p->rpz_mask; m; m &= m - 1) {
		unsigned li = lowest_bit(m), off = 0;
		const dv_rpz_t *z = w->snap->rpz[li];
		const dv_rpz_action_t *a =
			z ? dv_rpz_lookup(z, name, n, &off) : NULL;
		if (!a)
			continue;
		*matched = true;
		q->list = w->p->list_slot[p->lists[li].slot];
		if (a->kind == DV_RPZ_PASSTHRU || (g->allow & (1u << li))) {
			q->verdict = DV_VERDICT_ALLOWED;
			CTR_INC(w->group_ctr[g->slot][GC_ALLOWED]);
			CTR_INC(w->list_ctr[p->lists[li].slot][LC_ALLOWED]);
			if (logging)
				log_decision(w, q, id, g, D_ALLOW, name,
					     (int)li);
			return 0;
		}
		q->verdict = DV_VERDICT_BLOCKED;
		CTR_INC(w->group_ctr[g->slot][GC_BLOCKED]);
		CTR_INC(w->list_ctr[p->lists[li].slot][LC_BLOCKED]);
		if (logging)
			log_decision(w, q, id, g, D_BLOCK, name, (int)li);
		if (a->kind == DV_RPZ_DATA && a->local) {
			/* local data beyond addresses: answered as local
			 * records are (a CNAME followed in the zone) */
			const dv_records_t *t = dv_rpz_local(z);
			dv_records_hit_t rh = dv_records_lookup(t, 0, name, n);
			int len = rh.node < 0
					  ? 0
					  : dv_records_answer(t, 0, rh, q, buf,
							      cap, w->tmp,
							      sizeof(w->tmp),
							      pad_block);
			if (len > 0)
				return len;
		}
		group_t rg = *g; /* the zone's action and TTL */
		rg.ttl = a->ttl;
		rg.action = a->kind == DV_RPZ_NXDOMAIN ? DV_ACTION_NXDOMAIN
			    : a->kind == DV_RPZ_NODATA ? DV_ACTION_NODATA
						       : DV_ACTION_ADDRESSES;
		const uint8_t *v4, *v6;
		dv_rpz_addrs(z, a, &v4, &v6);
		rg.n_v4 = a->n_v4;
		rg.n_v6 = a->n_v6;
		if (a->n_v4)
			memcpy(rg.v4, v4, (size_t)a->n_v4 * 4);
		if (a->n_v6)
			memcpy(rg.v6, v6, (size_t)a->n_v6 * 16);
		int len = dv_policy_blocked_answer(buf, cap, q, &rg, off,
						   p->lists[li].name, pad_block);
		if (len < 0) /* cannot happen with the core's buffer */
			return dv_wire_error(buf, cap, q->wire, &q->view,
					     DV_RCODE_REFUSED,
					     DV_EDE_PROHIBITED, "blocked",
					     pad_block);
		return len;
	}
	return 0;
}

static int decide(void *policy, dv_query_t *q, uint8_t *buf, size_t cap,
		  unsigned pad_block)
{
	dv_policy_worker_t *w = policy;
	if (!w->st) /* a query outside the loop's turn */
		dv_policy_worker_enter(w);
	const pstate_t *p = w->st;
	if (p->ddr) { /* the same for every client */
		int len = dv_ddr_answer(p->ddr, q, buf, cap, pad_block);
		if (len > 0) {
			q->verdict = DV_VERDICT_LOCAL;
			return len;
		}
	}
	if (p->n_groups == 0) /* internal names only, DDR */
		return 0;
	char idbuf[DV_IDENT_MAX + 1], name[DV_SUFFIX_NAME_MAX + 2];
	bool logging = dv_log_level >= DV_LOG_DEBUG;
	/* a memo: the state's generation (low byte) and the group + 1 or
	 * MEMO_REFUSED; one of another state is worked out again */
	uint16_t memo = q->ident_memo ? *q->ident_memo : 0;
	if (memo &&
	    (memo >> 8 != (p->gen & 0xff) ||
	     ((memo & 0xff) != MEMO_REFUSED && (memo & 0xff) > p->n_groups)))
		memo = 0;
	bool memo_was_set = memo != 0;
	const char *id = !memo || logging || q->log_ident
				 ? client_id(p, q, idbuf)
				 : NULL;
	/* the query log's client ID (the core copied a DoH path's) */
	if (id && q->log_ident && id != q->client_id && id != q->cert_id)
		snprintf(q->ident, sizeof(q->ident), "%s", id);
	int n = dv_suffix_query_name(q->wire + DV_DNS_HDR, q->view.qname_len,
				     name);
	if (n < 0)
		return 0; /* the parse took it: cannot happen */
	name[n] = '\0';

	/* who asks: worked out once per connection where the transport
	 * keeps a memo (a stream's peer, SNI and listener do not change) */
	if (!memo) {
		memo = p->clients_only && id && !id_known(p, id)
			       ? MEMO_REFUSED
			       : (uint16_t)(group_of(p, q, id) + 1);
		memo |= (uint16_t)((p->gen & 0xff) << 8);
		if (q->ident_memo)
			*q->ident_memo = memo;
	}
	if ((memo & 0xff) == MEMO_REFUSED) {
		q->verdict = DV_VERDICT_REFUSED;
		CTR_INC(w->refused_unknown_id);
		if (logging)
			log_decision(w, q, id, NULL, D_REFUSE, name, -1);
		return dv_wire_error(buf, cap, q->wire, &q->view,
				     DV_RCODE_REFUSED, DV_EDE_PROHIBITED,
				     "unknown client ID", pad_block);
	}
	unsigned gi = (memo & 0xffu) - 1u;
	const group_t *g = &p->groups[gi];
	uint64_t *gctr = w->group_ctr[g->slot];
	/* the names a query keeps until its log line: the slots', which
	 * outlive any state (a reload may free this one meanwhile) */
	q->group = w->p->group_slot[g->slot];
	q->upstream_set = g->upstream_set;
	q->verdict = DV_VERDICT_PASS;
	CTR_INC(gctr[GC_QUERIES]);
	if ((g->n_allow_from || g->n_deny_from) && acl_refuses(g, q)) {
		q->verdict = DV_VERDICT_REFUSED;
		CTR_INC(gctr[GC_REFUSED]);
		if (logging)
			log_decision(w, q, id, g, D_REFUSE, name, -1);
		return dv_wire_error(buf, cap, q->wire, &q->view,
				     DV_RCODE_REFUSED, DV_EDE_PROHIBITED,
				     "access denied", pad_block);
	}
	if (g->rate_qps && w->rl) {
		/* the memo may have spared the ID's work */
		const char *rid = id || !memo_was_set ? id
						      : client_id(p, q, idbuf);
		uint64_t key = rate_key(w->p->seed, g, gi, q, rid);
		if (!dv_ratelimit_take(w->rl, key, g->rate_qps, g->rate_burst,
				       q->start_ms)) {
			q->verdict = DV_VERDICT_LIMITED;
			CTR_INC(gctr[GC_RATE_LIMITED]);
			if (logging)
				log_decision(w, q, rid, g, D_LIMITED, name, -1);
			return rate_limited_answer(g, q, buf, cap, pad_block);
		}
	}
	/* the group's own records come before its lists */
	if (dv_records_group_has(p->records, gi)) {
		dv_records_hit_t rh =
			dv_records_lookup(p->records, gi, name, (size_t)n);
		int len = rh.node < 0 ? 0
				      : dv_records_answer(p->records, gi, rh, q,
							  buf, cap, w->tmp,
							  sizeof(w->tmp),
							  pad_block);
		if (len > 0) {
			q->verdict = DV_VERDICT_LOCAL;
			CTR_INC(gctr[GC_LOCAL]);
			if (logging)
				log_decision(w, q, id, g, D_LOCAL, name, -1);
			return len;
		}
	}
	dv_suffix_hit_t hit;
	bool found = g->lists && dv_suffix_lookup(w->snap->set, name,
						  (size_t)n, g->lists, &hit);
	uint32_t allow = found ? ((hit.block | hit.except) & g->allow) |
					 (hit.except & g->block)
			       : 0;
	/* RPZ lists after the allow rules, before the other block lists */
	if (!allow && (g->lists & p->rpz_mask)) {
		bool matched = false;
		int len = rpz_decide(w, q, id, gi, name, (size_t)n, buf, cap,
				     pad_block, &matched);
		if (matched)
			return len;
	}
	if (!found) {
		if (logging)
			log_decision(w, q, id, g, D_PASS, name, -1);
		return 0;
	}
	if (allow) {
		unsigned li = lowest_bit(allow);
		q->verdict = DV_VERDICT_ALLOWED;
		q->list = w->p->list_slot[p->lists[li].slot];
		CTR_INC(gctr[GC_ALLOWED]);
		CTR_INC(w->list_ctr[p->lists[li].slot][LC_ALLOWED]);
		if (logging)
			log_decision(w, q, id, g, D_ALLOW, name, (int)li);
		return 0;
	}
	unsigned li = lowest_bit(hit.block & g->block);
	q->verdict = DV_VERDICT_BLOCKED;
	q->list = w->p->list_slot[p->lists[li].slot];
	CTR_INC(gctr[GC_BLOCKED]);
	CTR_INC(w->list_ctr[p->lists[li].slot][LC_BLOCKED]);
	if (logging)
		log_decision(w, q, id, g, D_BLOCK, name, (int)li);
	int len = dv_policy_blocked_answer(buf, cap, q, g, hit.offset,
					   p->lists[li].name, pad_block);
	if (len < 0) /* cannot happen with the core's buffer: refuse */
		return dv_wire_error(buf, cap, q->wire, &q->view,
				     DV_RCODE_REFUSED, DV_EDE_PROHIBITED,
				     "blocked", pad_block);
	return len;
}

static bool local_only(void *policy, const dv_query_t *q)
{
	dv_policy_worker_t *w = policy;
	if (!w->st)
		dv_policy_worker_enter(w);
	const pstate_t *p = w->st;
	if (!p->internal)
		return false;
	char name[DV_SUFFIX_NAME_MAX + 2];
	int n = dv_suffix_query_name(q->wire + DV_DNS_HDR, q->view.qname_len,
				     name);
	return n > 0 && dv_policy_internal(p, name, (size_t)n);
}

const dv_core_policy_ops_t dv_policy_core_ops = {
	.decide = decide,
	.local_only = local_only,
};

/* ---- counters ---- */

void dv_policy_sum(const dv_policy_t *pol, dv_policy_worker_t *const *w,
		   unsigned n, dv_policy_sums_t *out)
{
	memset(out, 0, sizeof(*out));
	/* the state in use stays while the lock is held (a reload swaps
	 * it under the lock, and frees the old one later) */
	dv_policy_state_lock(pol);
	const pstate_t *p = pol->cur;
	out->n_groups = p->n_groups;
	out->n_lists = p->n_lists;
	for (unsigned k = 0; k < n; k++) {
		if (!w[k])
			continue;
		out->refused_unknown_id += CTR_GET(w[k]->refused_unknown_id);
		for (unsigned g = 0; g < p->n_groups; g++) {
			dv_policy_group_sum_t *s = &out->groups[g];
			const uint64_t *c = w[k]->group_ctr[p->groups[g].slot];
			s->queries += CTR_GET(c[GC_QUERIES]);
			s->blocked += CTR_GET(c[GC_BLOCKED]);
			s->allowed += CTR_GET(c[GC_ALLOWED]);
			s->local += CTR_GET(c[GC_LOCAL]);
			s->refused += CTR_GET(c[GC_REFUSED]);
			s->rate_limited += CTR_GET(c[GC_RATE_LIMITED]);
		}
		for (unsigned l = 0; l < p->n_lists; l++) {
			dv_policy_list_sum_t *s = &out->lists[l];
			const uint64_t *c = w[k]->list_ctr[p->lists[l].slot];
			s->blocked += CTR_GET(c[LC_BLOCKED]);
			s->allowed += CTR_GET(c[LC_ALLOWED]);
		}
	}
	for (unsigned g = 0; g < p->n_groups; g++)
		memcpy(out->groups[g].name, p->groups[g].name,
		       sizeof(out->groups[g].name));
	for (unsigned l = 0; l < p->n_lists; l++) {
		dv_policy_list_sum_t *s = &out->lists[l];
		const list_t *li = &p->lists[l];
		memcpy(s->name, li->name, sizeof(s->name));
		/* a list's queries: those of the groups that use it */
		for (unsigned g = 0; g < p->n_groups; g++)
			if (p->groups[g].lists & (1u << l))
				s->queries += out->groups[g].queries;
		s->entries = li->st.rules;
		s->exceptions = li->st.exceptions;
		s->bad_lines = li->st.bad;
		s->skipped = li->st.skipped;
		s->loads = li->loads;
		s->unchanged = li->unchanged;
		s->failures = li->failures;
		s->last_ok_s = li->last_ok_s;
	}
	dv_policy_state_unlock(pol);
}

void dv_policy_stats_json(FILE *f, const dv_policy_t *p,
			  dv_policy_worker_t *const *w, unsigned n)
{
	dv_policy_sums_t *s = malloc(sizeof(*s));
	if (!s)
		return;
	dv_policy_sum(p, w, n, s);
	fprintf(f,
		",\"policy\":{\"refused_unknown_id\":%" PRIu64 ",\"groups\":{",
		s->refused_unknown_id);
	for (unsigned g = 0; g < s->n_groups; g++)
		fprintf(f,
			"%s\"%s\":{\"queries\":%" PRIu64 ",\"blocked\":%" PRIu64
			",\"allowed\":%" PRIu64 ",\"local\":%" PRIu64
			",\"refused\":%" PRIu64 ",\"rate_limited\":%" PRIu64 "}",
			g ? "," : "", s->groups[g].name, s->groups[g].queries,
			s->groups[g].blocked, s->groups[g].allowed,
			s->groups[g].local, s->groups[g].refused,
			s->groups[g].rate_limited);
	fputs("},\"lists\":{", f);
	for (unsigned l = 0; l < s->n_lists; l++) {
		const dv_policy_list_sum_t *li = &s->lists[l];
		fprintf(f,
			"%s\"%s\":{\"queries\":%" PRIu64 ",\"blocked\":%" PRIu64
			",\"allowed\":%" PRIu64 ",\"rules\":%" PRIu64
			",\"exceptions\":%" PRIu64 ",\"bad_lines\":%" PRIu64
			",\"skipped\":%" PRIu64 ",\"loads\":%" PRIu64
			",\"unchanged\":%" PRIu64 ",\"refresh_failures\":%" PRIu64
			"}",
			l ? "," : "", li->name, li->queries, li->blocked,
			li->allowed, li->entries, li->exceptions, li->bad_lines,
			li->skipped, li->loads, li->unchanged, li->failures);
	}
	fputs("}}", f);
	free(s);
}


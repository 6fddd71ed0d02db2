/*
 * Local records: the table (records.h for its design), its lookup and
 * the answers it makes.
 */
#include "src/policy/records.h"
#include "src/policy/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/policy/suffix.h"

typedef struct {
	uint16_t type;
	uint16_t rdlen;
	uint32_t ttl;
	uint32_t rdata_off; /* in the table's rdata */
} rec_t;

typedef struct {
	uint64_t hash;
	uint32_t name_off; /* in the table's names */
	uint16_t name_len;
	uint8_t group;
	uint32_t first, n; /* its records: recs[first .. first + n) */
	int32_t wild; /* the node "*.NAME" of the same group, or -1 */
	uint32_t min_ttl; /* the smallest TTL of its records */
} node_t;

struct dv_records {
	uint64_t seed;
	uint32_t *slots; /* node index + 1; 0 = empty */
	uint32_t mask;
	node_t *nodes;
	uint32_t n_nodes, cap_nodes;
	rec_t *recs;
	uint32_t n_recs;
	char *names;
	size_t names_len, names_cap;
	uint8_t *rdata;
	uint32_t groups; /* groups with records */
};


#define HASH_FINISH(h, g) dv_hash_fmix((h) + 0x9e3779b97f4a7c15ULL * ((g) + 1))

static uint64_t name_hash(uint64_t seed, unsigned group, const char *name,
			  size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;
	for (size_t i = len; i-- > 0;)
		h = DV_HASH_STEP(h, name[i]);
	return HASH_FINISH(h, group);
}

static int find(const dv_records_t *t, uint64_t hash, unsigned group,
		const char *name, size_t len)
{
	for (uint32_t i = (uint32_t)hash & t->mask;; i = (i + 1) & t->mask) {
		uint32_t s = t->slots[i];
		if (!s)
			return -1;
		const node_t *nd = &t->nodes[s - 1];
		if (nd->hash == hash && nd->group == group &&
		    nd->name_len == len &&
		    memcmp(t->names + nd->name_off, name, len) == 0)
			return (int)(s - 1);
	}
}

/* The node (group, name), added (without records) when missing; -1 on
 * ENOMEM. */
static int node_get(dv_records_t *t, unsigned group, const char *name,
		    size_t len)
{
	uint64_t hash = name_hash(t->seed, group, name, len);
	int i = find(t, hash, group, name, len);
	if (i >= 0)
		return i;
	if (t->n_nodes == t->cap_nodes) {
		/* the slots were sized for every node there can be */
		return -1;
	}
	if (t->names_len + len > t->names_cap)
		return -1;
	node_t *nd = &t->nodes[t->n_nodes];
	memset(nd, 0, sizeof(*nd));
	nd->hash = hash;
	nd->name_off = (uint32_t)t->names_len;
	nd->name_len = (uint16_t)len;
	nd->group = (uint8_t)group;
	nd->wild = -1;
	nd->min_ttl = UINT32_MAX;
	memcpy(t->names + t->names_len, name, len);
	t->names_len += len;
	uint32_t s = (uint32_t)hash & t->mask;
	while (t->slots[s])
		s = (s + 1) & t->mask;
	t->slots[s] = ++t->n_nodes;
	return (int)(t->n_nodes - 1);
}

int dv_records_owner_text(const dv_cfg_record_t *r, char *out)
{
	int len = dv_suffix_query_name(r->owner, r->owner_len, out);
	/* the query-name text has no '*' (it stands for itself there):
	 * the wildcard label is put back */
	if (len > 0 && r->owner[0] == 1 && r->owner[1] == '*')
		out[0] = '*';
	return len;
}

static int owner_text(const dv_cfg_record_t *r, char *out)
{
	return dv_records_owner_text(r, out);
}

dv_records_t *dv_records_new(const dv_config_t *cfg, uint64_t seed)
{
	return dv_records_build(cfg->records, cfg->n_records, cfg->record_data,
				cfg->record_data_len, seed);
}

dv_records_t *dv_records_build(const dv_cfg_record_t *records, unsigned n,
			       const uint8_t *data, uint32_t data_len,
			       uint64_t seed)
{
	dv_records_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->seed = seed;
	/* each owner and each of its ancestors (at most 127 labels, but
	 * the name texts bound them better: one node per dot) */
	size_t text = 0, max_nodes = 0;
	char buf[DV_SUFFIX_NAME_MAX + 2];
	for (unsigned i = 0; i < n; i++) {
		const dv_cfg_record_t *r = &records[i];
		int len = dv_suffix_query_name(r->owner, r->owner_len, buf);
		if (len < 0)
			len = 0;
		text += (size_t)len * ((size_t)len + 1) / 2 + 1;
		max_nodes += 1;
		for (int k = 0; k < len; k++)
			max_nodes += buf[k] == '.';
	}
	t->cap_nodes = (uint32_t)max_nodes;
	uint32_t slots = 16;
	while (slots < 2 * max_nodes)
		slots <<= 1;
	t->mask = slots - 1;
	t->slots = calloc(slots, sizeof(*t->slots));
	t->nodes = calloc(max_nodes ? max_nodes : 1, sizeof(*t->nodes));
	t->recs = calloc(n ? n : 1, sizeof(*t->recs));
	t->names_cap = text;
	t->names = malloc(text ? text : 1);
	t->rdata = malloc(data_len ? data_len : 1);
	int *owner = calloc(n ? n : 1, sizeof(*owner));
	if (!t->slots || !t->nodes || !t->recs || !t->names || !t->rdata ||
	    !owner)
		goto fail;
	if (data_len)
		memcpy(t->rdata, data, data_len);

	/* nodes: owners, then their ancestors as empty non-terminals */
	for (unsigned i = 0; i < n; i++) {
		const dv_cfg_record_t *r = &records[i];
		int len = owner_text(r, buf);
		if (len < 0)
			goto fail;
		owner[i] = node_get(t, r->group, buf, (size_t)len);
		if (owner[i] < 0)
			goto fail;
		t->nodes[owner[i]].n++;
		t->groups |= 1u << r->group;
		for (int k = 0; k < len; k++)
			if (buf[k] == '.' &&
			    node_get(t, r->group, buf + k + 1,
				     (size_t)(len - k - 1)) < 0)
				goto fail;
	}
	/* records grouped by node, in config order */
	uint32_t at = 0;
	for (uint32_t i = 0; i < t->n_nodes; i++) {
		t->nodes[i].first = at;
		at += t->nodes[i].n;
		t->nodes[i].n = 0;
	}
	for (unsigned i = 0; i < n; i++) {
		const dv_cfg_record_t *r = &records[i];
		node_t *nd = &t->nodes[owner[i]];
		rec_t *rc = &t->recs[nd->first + nd->n++];
		rc->type = r->type;
		rc->rdlen = r->rdlen;
		rc->ttl = r->ttl;
		rc->rdata_off = r->rdata_off;
		if (r->ttl < nd->min_ttl)
			nd->min_ttl = r->ttl;
	}
	t->n_recs = n;
	/* each wildcard known to its parent */
	for (uint32_t i = 0; i < t->n_nodes; i++) {
		node_t *nd = &t->nodes[i];
		const char *nm = t->names + nd->name_off;
		if (nd->name_len < 2 || nm[0] != '*' || nm[1] != '.')
			continue;
		int parent = find(t,
				  name_hash(seed, nd->group, nm + 2,
					    nd->name_len - 2u),
				  nd->group, nm + 2, nd->name_len - 2u);
		if (parent >= 0)
			t->nodes[parent].wild = (int32_t)i;
	}
	free(owner);
	return t;
fail:
	free(owner);
	dv_records_free(t);
	return NULL;
}

void dv_records_free(dv_records_t *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t->nodes);
	free(t->recs);
	free(t->names);
	free(t->rdata);
	free(t);
}

bool dv_records_group_has(const dv_records_t *t, unsigned group)
{
	return t && group < 32 && (t->groups >> group & 1u);
}

size_t dv_records_nodes(const dv_records_t *t)
{
	return t ? t->n_nodes : 0;
}

size_t dv_records_count(const dv_records_t *t)
{
	return t ? t->n_recs : 0;
}

dv_records_hit_t dv_records_lookup(const dv_records_t *t, unsigned group,
				   const char *name, size_t len)
{
	dv_records_hit_t hit = { .node = -1, .wildcard = false };
	if (!dv_records_group_has(t, group) || len == 0 ||
	    len > DV_SUFFIX_NAME_MAX)
		return hit;
	/* the hash of every suffix that starts a label, longest last */
	uint64_t hs[DV_SUFFIX_MAX_LABELS + 1];
	uint16_t off[DV_SUFFIX_MAX_LABELS + 1];
	unsigned k = 0;
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	for (size_t i = len; i-- > 0;) {
		h = DV_HASH_STEP(h, name[i]);
		if ((i == 0 || name[i - 1] == '.') &&
		    k < DV_SUFFIX_MAX_LABELS + 1) {
			hs[k] = HASH_FINISH(h, group);
			off[k] = (uint16_t)i;
			k++;
		}
	}
	if (k == 0 || off[k - 1] != 0)
		return hit;
	int nd = find(t, hs[k - 1], group, name, len);
	if (nd >= 0) {
		if (t->nodes[nd].n)
			hit.node = nd;
		return hit;
	}
	/* the closest encloser, and its wildcard child */
	for (unsigned j = k - 1; j-- > 0;) {
		int ce = find(t, hs[j], group, name + off[j], len - off[j]);
		if (ce < 0)
			continue;
		int w = t->nodes[ce].wild;
		if (w >= 0 && t->nodes[w].n) {
			hit.node = w;
			hit.wildcard = true;
		}
		return hit;
	}
	return hit;
}

/* ---- answers ---- */

typedef struct {
	uint8_t *p;
	size_t pos, cap;
	bool full;
} out_t;

static void put_rr(out_t *o, uint16_t owner_ptr, uint16_t type, uint32_t ttl,
		   const uint8_t *rdata, uint16_t rdlen)
{
	if (o->full || o->pos + 12u + rdlen > o->cap) {
		o->full = true;
		return;
	}
	uint8_t *p = o->p + o->pos;
	dv_put16(p, (uint16_t)(0xc000 | owner_ptr));
	dv_put16(p + 2, type);
	dv_put16(p + 4, 1); /* IN */
	dv_put32(p + 6, ttl);
	dv_put16(p + 10, rdlen);
	memcpy(p + 12, rdata, rdlen);
	o->pos += 12u + rdlen;
}

/* The text of the wire name at `wire` (`len` bytes at most, no
 * compression: RDATA as records.c keeps it) into `out`; -1 if bad. */
static int rdata_name(const uint8_t *wire, size_t len, char *out)
{
	size_t n = 0;
	while (n < len && wire[n])
		n += 1u + wire[n];
	if (n >= len || n + 1 > DV_DNS_MAX_NAME)
		return -1;
	return dv_suffix_query_name(wire, n + 1, out);
}

int dv_records_answer(const dv_records_t *t, unsigned group,
		      dv_records_hit_t hit, const dv_query_t *q, uint8_t *buf,
		      size_t cap, uint8_t *tmp, size_t tmp_cap,
		      unsigned pad_block)
{
	const dv_wire_query_t *v = &q->view;
	size_t qend = v->question_end;
	if (hit.node < 0 || qend <= DV_DNS_HDR || qend + 64 > tmp_cap)
		return DV_ESPACE;
	out_t o = { .p = tmp, .pos = qend, .cap = tmp_cap - 11 };
	memcpy(tmp + DV_DNS_HDR, q->wire + DV_DNS_HDR, qend - DV_DNS_HDR);
	uint16_t an = 0, ns = 0, owner = DV_DNS_HDR;
	const node_t *nd = &t->nodes[hit.node];
	bool tc = false;
	for (unsigned hop = 0;; hop++) {
		unsigned found = 0;
		const rec_t *cname = NULL;
		for (uint32_t i = 0; i < nd->n; i++) {
			const rec_t *r = &t->recs[nd->first + i];
			if (r->type == v->qtype || v->qtype == DV_TYPE_ANY) {
				put_rr(&o, owner, r->type, r->ttl,
				       t->rdata + r->rdata_off, r->rdlen);
				found++;
			} else if (r->type == DV_TYPE_CNAME) {
				cname = r;
			}
		}
		an = (uint16_t)(an + found);
		if (found || !cname) {
			if (!found) { /* NODATA: the name's SOA */
				uint8_t soa[2 + 20];
				uint32_t ttl = nd->min_ttl;
				soa[0] = soa[1] = 0;
				dv_put32(soa + 2, 1);
				dv_put32(soa + 6, 3600);
				dv_put32(soa + 10, 600);
				dv_put32(soa + 14, 86400);
				dv_put32(soa + 18, ttl);
				put_rr(&o, owner, DV_TYPE_SOA, ttl, soa,
				       sizeof(soa));
				ns = 1;
			}
			break;
		}
		/* the CNAME, then its target's records when they are
		 * local */
		size_t at = o.pos;
		put_rr(&o, owner, DV_TYPE_CNAME, cname->ttl,
		       t->rdata + cname->rdata_off, cname->rdlen);
		an++;
		if (o.full || hop + 1 >= DV_RECORDS_MAX_CHASE)
			break;
		char name[DV_SUFFIX_NAME_MAX + 2];
		int len = rdata_name(t->rdata + cname->rdata_off, cname->rdlen,
				     name);
		if (len <= 0)
			break;
		dv_records_hit_t next =
			dv_records_lookup(t, group, name, (size_t)len);
		if (next.node < 0)
			break;
		nd = &t->nodes[next.node];
		owner = (uint16_t)(at + 12); /* the CNAME's RDATA */
	}
	if (o.full) {
		/* more than a message holds: the records that fit, TC */
		tc = true;
		ns = 0;
	}
	dv_put16(tmp, v->id);
	dv_put16(tmp + 2,
		 (uint16_t)(DV_FLAG_QR | (v->flags & 0x7800) | DV_FLAG_AA |
			    DV_FLAG_RA | (tc ? DV_FLAG_TC : 0)));
	dv_put16(tmp + 4, 1);
	dv_put16(tmp + 6, an);
	dv_put16(tmp + 8, ns);
	dv_put16(tmp + 10, 0);

	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(tmp, o.pos, &r);
	if (ret < 0 && ret != DV_ELIMIT)
		return ret;
	return dv_wire_answer(buf, cap, tmp, o.pos, &r, q->wire, v, 0,
			      q->answer_limit, 0xffff, NULL, pad_block);
}

/*
 * Response policy zones (see rpz.h).
 */
#include "src/policy/rpz.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/policy/records.h"
#include "src/policy/suffix.h"

enum { EXACT, WILD }; /* the two list bits of the trigger set */

struct dv_rpz {
	dv_suffix_set_t *set;
	dv_rpz_action_t *act; /* 2 per entry: exact, wildcard */
	size_t act_cap; /* entries the array has room for */
	uint8_t (*v4)[4];
	uint8_t (*v6)[16];
	uint32_t n4, n6, cap4, cap6;
	size_t triggers;
	uint64_t seed;
	/* local data as local records of group 0 (records.h): made from
	 * lrec/ldata at the end of the parse, which are then freed */
	dv_records_t *local;
	dv_cfg_record_t *lrec;
	unsigned n_lrec, cap_lrec;
	uint8_t *ldata;
	uint32_t ldata_len, ldata_cap;
	size_t apex_labels; /* of the SOA's owner */
};

dv_rpz_t *dv_rpz_new(uint64_t seed)
{
	dv_rpz_t *z = calloc(1, sizeof(*z));
	if (!z || !(z->set = dv_suffix_new(seed))) {
		free(z);
		return NULL;
	}
	z->seed = seed;
	return z;
}

void dv_rpz_free(dv_rpz_t *z)
{
	if (!z)
		return;
	dv_suffix_free(z->set);
	dv_records_free(z->local);
	free(z->lrec);
	free(z->ldata);
	free(z->act);
	free(z->v4);
	free(z->v6);
	free(z);
}

size_t dv_rpz_count(const dv_rpz_t *z)
{
	return z->triggers;
}

/* The action slot of `name` (added to the set if new). NULL: no memory. */
static dv_rpz_action_t *slot_of(dv_rpz_t *z, const char *name, size_t len,
				bool wild)
{
	if (dv_suffix_add(z->set, name, len, wild ? WILD : EXACT, false) < 0)
		return NULL;
	int64_t i = dv_suffix_index(z->set, name, len);
	if (i < 0)
		return NULL;
	if ((size_t)i >= z->act_cap) {
		size_t cap = z->act_cap ? z->act_cap * 2 : 256;
		while (cap <= (size_t)i)
			cap *= 2;
		dv_rpz_action_t *a = realloc(z->act, cap * 2 * sizeof(*a));
		if (!a)
			return NULL;
		memset(a + z->act_cap * 2, 0,
		       (cap - z->act_cap) * 2 * sizeof(*a));
		z->act = a;
		z->act_cap = cap;
	}
	return &z->act[(size_t)i * 2 + wild];
}

/* Append an address of `len` (4 or 16) bytes to `a`'s, keeping them
 * contiguous.  0, -ENOSPC (more than a blocked answer holds) or -ENOMEM. */
static int add_addr(dv_rpz_t *z, dv_rpz_action_t *a, const uint8_t *addr,
		    size_t len)
{
	bool six = len == 16;
	uint8_t *n = six ? &a->n_v6 : &a->n_v4;
	uint32_t *first = six ? &a->v6 : &a->v4;
	uint32_t *count = six ? &z->n6 : &z->n4,
		 *cap = six ? &z->cap6 : &z->cap4;
	void **arr = six ? (void **)&z->v6 : (void **)&z->v4;
	if (*n >= DV_POLICY_MAX_ACTION)
		return -ENOSPC;
	/* the name's addresses must stay together: move them to the end
	 * when another name's came in between */
	bool at_end = *n == 0 || *first + *n == *count;
	if (*count + *n + 1 > *cap) {
		uint32_t c = *cap ? *cap * 2 : 64;
		while (c < *count + *n + 1)
			c *= 2;
		void *p = realloc(*arr, (size_t)c * len);
		if (!p)
			return -ENOMEM;
		*arr = p;
		*cap = c;
	}
	uint8_t *base = *arr;
	if (!at_end) {
		memmove(base + (size_t)*count * len,
			base + (size_t)*first * len, (size_t)*n * len);
		*first = *count;
		*count += *n;
	}
	if (*n == 0)
		*first = *count;
	memcpy(base + (size_t)*count * len, addr, len);
	(*count)++;
	(*n)++;
	return 0;
}

/* `owner` (text, absolute) below `apex` (text, absolute): the trigger's
 * text into `out`, its length; 0 at the apex; -1 outside it. */
static int trigger_of(const char *owner, const char *apex, char *out,
		      size_t cap)
{
	size_t ol = strlen(owner), al = strlen(apex);
	if (strcasecmp(owner, apex) == 0)
		return 0;
	if (strcmp(apex, ".") == 0)
		al = 0; /* a zone at the root: every name is a trigger */
	else if (ol <= al + 1 || owner[ol - al - 1] != '.' ||
		 strcasecmp(owner + ol - al, apex) != 0)
		return -1;
	size_t n = ol - al - (al ? 1 : 0);
	if (n >= cap)
		return -1;
	memcpy(out, owner, n);
	out[n] = '\0';
	return (int)n;
}

static bool ends_with_label(const char *name, size_t len, const char *label)
{
	size_t l = strlen(label);
	return len >= l && strncasecmp(name + len - l, label, l) == 0 &&
	       (len == l || name[len - l - 1] == '.');
}

/* The types of local data: those of local records (records.h). */
static bool local_type(ldns_rr_type t)
{
	return t == LDNS_RR_TYPE_A || t == LDNS_RR_TYPE_AAAA ||
	       t == LDNS_RR_TYPE_CNAME || t == LDNS_RR_TYPE_TXT ||
	       t == LDNS_RR_TYPE_SRV || t == LDNS_RR_TYPE_PTR ||
	       t == LDNS_RR_TYPE_MX || t == LDNS_RR_TYPE_HTTPS ||
	       t == LDNS_RR_TYPE_SVCB;
}

/*
 * Keep `rr` as local data of its trigger: owner the trigger's name (the
 * owner without the apex's labels, lowercased), RDATA in wire form.  0,
 * 1 when it cannot be kept (too long: counted bad), or -ENOMEM.
 */
static int add_local(dv_rpz_t *z, ldns_rr *rr)
{
	const ldns_rdf *ow = ldns_rr_owner(rr);
	const uint8_t *o = ldns_rdf_data(ow);
	size_t olen = ldns_rdf_size(ow), labels = ldns_dname_label_count(ow);
	if (labels <= z->apex_labels)
		return 1;
	size_t keep = 0; /* bytes of the trigger's labels */
	for (size_t i = 0; i < labels - z->apex_labels; i++) {
		if (keep >= olen || !o[keep])
			return 1;
		keep += 1u + o[keep];
	}
	ldns_buffer *buf = ldns_buffer_new(512);
	if (!buf)
		return -ENOMEM;
	int ret = 1;
	if (ldns_rr_rdata2buffer_wire(buf, rr) != LDNS_STATUS_OK ||
	    keep + 1 > sizeof(z->lrec->owner))
		goto out;
	size_t rdlen = ldns_buffer_position(buf);
	if (rdlen > 0xffff || rdlen > UINT32_MAX - z->ldata_len)
		goto out;
	ret = -ENOMEM;
	if (z->n_lrec == z->cap_lrec) {
		unsigned cap = z->cap_lrec ? z->cap_lrec * 2 : 16;
		dv_cfg_record_t *r = realloc(z->lrec, cap * sizeof(*r));
		if (!r)
			goto out;
		z->lrec = r;
		z->cap_lrec = cap;
	}
	if (z->ldata_len + rdlen > z->ldata_cap) {
		uint32_t cap = z->ldata_cap ? z->ldata_cap : 1024;
		while (cap < z->ldata_len + rdlen)
			cap *= 2;
		uint8_t *d = realloc(z->ldata, cap);
		if (!d)
			goto out;
		z->ldata = d;
		z->ldata_cap = cap;
	}
	dv_cfg_record_t *r = &z->lrec[z->n_lrec++];
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < keep; i++)
		r->owner[i] = (uint8_t)(o[i] >= 'A' && o[i] <= 'Z' ? o[i] + 32
								   : o[i]);
	r->owner[keep] = 0;
	r->owner_len = (uint16_t)(keep + 1);
	r->type = (uint16_t)ldns_rr_get_type(rr);
	r->rclass = LDNS_RR_CLASS_IN;
	r->ttl = ldns_rr_ttl(rr);
	r->rdlen = (uint16_t)rdlen;
	r->rdata_off = z->ldata_len;
	memcpy(z->ldata + z->ldata_len, ldns_buffer_begin(buf), rdlen);
	z->ldata_len += (uint32_t)rdlen;
	ret = 0;
out:
	ldns_buffer_free(buf);
	return ret;
}

/* One record: its trigger and action.  Counts into `st`. */
static int add_rr(dv_rpz_t *z, ldns_rr *rr, char **apex, dv_list_stats_t *st)
{
	ldns_rr_type t = ldns_rr_get_type(rr);
	char *owner = ldns_rdf2str(ldns_rr_owner(rr));
	int ret = 0;
	if (!owner)
		return -ENOMEM;
	if (t == LDNS_RR_TYPE_SOA) {
		if (!*apex) {
			*apex = owner;
			z->apex_labels =
				ldns_dname_label_count(ldns_rr_owner(rr));
		} else {
			free(owner); /* the closing SOA of a transfer */
		}
		return 0;
	}
	char trig[DV_SUFFIX_NAME_MAX + 4];
	int n = *apex ? trigger_of(owner, *apex, trig, sizeof(trig)) : -1;
	free(owner);
	if (n == 0)
		return 0; /* NS and the like at the apex */
	if (n < 0) {
		st->bad++;
		return 0;
	}
	size_t len = (size_t)n;
	if (ends_with_label(trig, len, "rpz-ip") ||
	    ends_with_label(trig, len, "rpz-nsdname") ||
	    ends_with_label(trig, len, "rpz-nsip") ||
	    ends_with_label(trig, len, "rpz-client-ip")) {
		st->skipped++;
		return 0;
	}
	char *name = trig;
	bool wild = len > 2 && trig[0] == '*' && trig[1] == '.';
	if (wild) {
		name += 2;
		len -= 2;
	}
	len = dv_suffix_normalize(name, len);
	if (!len) {
		st->bad++;
		return 0;
	}
	dv_rpz_kind_t kind = DV_RPZ_NONE;
	const uint8_t *addr = NULL;
	size_t alen = 0;
	bool other = false; /* local data that is not an address */
	if (t == LDNS_RR_TYPE_CNAME && ldns_rr_rd_count(rr) == 1) {
		char *target = ldns_rdf2str(ldns_rr_rdf(rr, 0));
		if (!target)
			return -ENOMEM;
		if (strcmp(target, ".") == 0)
			kind = DV_RPZ_NXDOMAIN;
		else if (strcmp(target, "*.") == 0)
			kind = DV_RPZ_NODATA;
		else if (strcasecmp(target, "rpz-passthru.") == 0)
			kind = DV_RPZ_PASSTHRU;
		else if (!ends_with_label(target, strlen(target),
					  "rpz-drop.") &&
			 !ends_with_label(target, strlen(target),
					  "rpz-tcp-only.") &&
			 !(target[0] == '*' && target[1] == '.'))
			kind = DV_RPZ_DATA; /* a rewrite to that name */
		free(target);
		other = kind == DV_RPZ_DATA;
	} else if ((t == LDNS_RR_TYPE_A || t == LDNS_RR_TYPE_AAAA) &&
		   ldns_rr_rd_count(rr) == 1) {
		const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
		alen = ldns_rdf_size(rd);
		addr = ldns_rdf_data(rd);
		if (alen == (t == LDNS_RR_TYPE_A ? 4u : 16u))
			kind = DV_RPZ_DATA;
	} else if (local_type(t) && ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN) {
		kind = DV_RPZ_DATA;
		other = true;
	}
	if (kind == DV_RPZ_NONE) {
		/* rpz-drop., rpz-tcp-only., types local records do not
		 * serve (NS, DNAME, CAA, ...) */
		st->skipped++;
		return 0;
	}
	dv_rpz_action_t *a = slot_of(z, name, len, wild);
	if (!a)
		return -ENOMEM;
	if (kind == DV_RPZ_DATA &&
	    (a->kind == DV_RPZ_NONE || a->kind == DV_RPZ_DATA)) {
		/* every record of local data goes to the local records (a
		 * CNAME's target may be an address trigger); the addresses
		 * also to the trigger's own list, which answers when it has
		 * nothing else */
		ret = add_local(z, rr);
		if (ret > 0) {
			st->bad++;
			return 0;
		}
		if (ret < 0)
			return ret;
	}
	if (a->kind != DV_RPZ_NONE &&
	    (a->kind != DV_RPZ_DATA || kind != DV_RPZ_DATA)) {
		st->bad++; /* a second action for one trigger */
		return 0;
	}
	if (a->kind == DV_RPZ_NONE) {
		z->triggers++;
		st->rules++;
		a->ttl = ldns_rr_ttl(rr);
	}
	a->kind = (uint8_t)kind;
	if (kind != DV_RPZ_DATA)
		return 0;
	if (other) {
		a->local = 1;
		return 0;
	}
	ret = add_addr(z, a, addr, alen);
	if (ret == -ENOSPC) {
		st->skipped++;
		ret = 0;
	}
	return ret;
}

int dv_rpz_parse(dv_rpz_t *z, FILE *f, dv_list_stats_t *st)
{
	uint32_t ttl = 3600;
	ldns_rdf *origin = NULL, *prev = NULL;
	char *apex = NULL;
	int line = 1, ret = 0;
	while (ret == 0 && !feof(f)) {
		long before = ftell(f);
		int line_before = line;
		ldns_rr *rr = NULL;
		ldns_status s = ldns_rr_new_frm_fp_l(&rr, f, &ttl, &origin,
						     &prev, &line);
		st->lines += line > line_before ? (uint64_t)(line - line_before)
						: 1;
		switch (s) {
		case LDNS_STATUS_OK:
			ret = add_rr(z, rr, &apex, st);
			break;
		case LDNS_STATUS_SYNTAX_EMPTY:
		case LDNS_STATUS_SYNTAX_TTL:
		case LDNS_STATUS_SYNTAX_ORIGIN:
			break;
		case LDNS_STATUS_SYNTAX_INCLUDE:
			st->skipped++; /* no $INCLUDE: one file a list */
			break;
		case LDNS_STATUS_MEM_ERR:
			ret = -ENOMEM;
			break;
		default:
			st->bad++;
			break;
		}
		ldns_rr_free(rr);
		if (ftell(f) == before && !feof(f))
			break; /* no progress: nothing more to read */
	}
	if (ret == 0 && ferror(f))
		ret = -EIO;
	ldns_rdf_deep_free(origin);
	ldns_rdf_deep_free(prev);
	free(apex);
	dv_suffix_seal(z->set);
	if (ret == 0 && z->n_lrec &&
	    !(z->local = dv_records_build(z->lrec, z->n_lrec, z->ldata,
					  z->ldata_len, z->seed)))
		ret = -ENOMEM;
	free(z->lrec);
	free(z->ldata);
	z->lrec = NULL;
	z->ldata = NULL;
	z->n_lrec = z->cap_lrec = 0;
	z->ldata_len = z->ldata_cap = 0;
	return ret;
}

int dv_rpz_parse_file(dv_rpz_t *z, const char *path, dv_list_stats_t *st)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int ret = dv_rpz_parse(z, f, st);
	fclose(f);
	return ret;
}

const dv_rpz_action_t *dv_rpz_lookup(const dv_rpz_t *z, const char *name,
				     size_t len, unsigned *off)
{
	if (z->triggers == 0 || len == 0)
		return NULL;
	int64_t i = dv_suffix_index(z->set, name, len);
	if (i >= 0 && z->act[i * 2].kind != DV_RPZ_NONE) {
		*off = 0;
		return &z->act[i * 2];
	}
	/* a wildcard covers the names below its base: look from the parent */
	const char *dot = memchr(name, '.', len);
	if (!dot)
		return NULL;
	size_t p = (size_t)(dot - name) + 1;
	dv_suffix_hit_t hit;
	if (!dv_suffix_lookup(z->set, name + p, len - p, 1u << WILD, &hit))
		return NULL;
	const dv_rpz_action_t *a = &z->act[(size_t)hit.entry * 2 + 1];
	if (a->kind == DV_RPZ_NONE)
		return NULL; /* its only record could not be kept */
	*off = (unsigned)(p + hit.offset);
	return a;
}

const dv_records_t *dv_rpz_local(const dv_rpz_t *z)
{
	return z->local;
}

void dv_rpz_addrs(const dv_rpz_t *z, const dv_rpz_action_t *a,
		  const uint8_t **v4, const uint8_t **v6)
{
	*v4 = a->n_v4 ? z->v4[a->v4] : NULL;
	*v6 = a->n_v6 ? z->v6[a->v6] : NULL;
}

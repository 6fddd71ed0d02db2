/*
 * Internal names: the names whose queries only the local upstreams may
 * be asked (README "Policy", "Internal names"), and the special-use
 * names that are internal by default.
 *
 * They are one suffix set (suffix.h), a name's "list" the source that
 * makes it internal (INTERNAL_*), looked up only for the queries the
 * cache could not answer, when the core makes their upstream question.
 */
#include <stdio.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/policy/policy_int.h"

/*
 * Special-use names a public resolver has no answer for, or none that
 * is ours (RFC 6761, RFC 6762, RFC 8375, RFC 9462, ICANN's .internal),
 * and the reverse zones of the addresses that are not public: private
 * (RFC 1918), shared (RFC 6598), link-local, unique local (RFC 4193) and
 * documentation (RFC 5737, RFC 3849, RFC 9637).  resolver.arpa is here
 * for ddr.mode off (otherwise ddr.c answers it before any upstream).
 */
static const char *const special_use[] = {
	"local",
	"home.arpa",
	"internal",
	"resolver.arpa",
	"10.in-addr.arpa",
	"168.192.in-addr.arpa",
	"254.169.in-addr.arpa",
	"2.0.192.in-addr.arpa",
	"100.51.198.in-addr.arpa",
	"113.0.203.in-addr.arpa",
	"c.f.ip6.arpa",
	"d.f.ip6.arpa", /* fc00::/7 */
	"8.e.f.ip6.arpa",
	"9.e.f.ip6.arpa",
	"a.e.f.ip6.arpa",
	"b.e.f.ip6.arpa", /* fe80::/10 */
	"8.b.d.0.1.0.0.2.ip6.arpa", /* 2001:db8::/32 */
	"0.f.f.f.3.ip6.arpa", /* 3fff::/20 */
};

static int add(dv_suffix_set_t *s, const char *name, unsigned bit)
{
	return dv_suffix_add(s, name, strlen(name), bit, false);
}

int dv_policy_internal_build(pstate_t *p, const dv_config_t *cfg, uint64_t seed)
{
	char buf[64];
	int ret = 0;

	p->internal_mask = 0;
	/* nothing to keep them from: no upstream set has a fallback (a
	 * group's own upstreams are that set's local ones) */
	bool fallback = false;
	for (unsigned s = 0; s < dv_config_upstream_sets(cfg); s++) {
		dv_upstream_set_t set;
		dv_config_upstream_set(cfg, s, &set);
		fallback |= set.n_fallback != 0;
	}
	if (!fallback)
		return 0;
	if (cfg->n_internal)
		p->internal_mask |= 1u << INTERNAL_CONFIG;
	if (cfg->internal_special_use)
		p->internal_mask |= 1u << INTERNAL_SPECIAL_USE;
	if (cfg->internal_records && cfg->n_records)
		p->internal_mask |= 1u << INTERNAL_RECORDS;
	if (!p->internal_mask)
		return 0;
	p->internal = dv_suffix_new(seed ^ 0x696e7465726e616cULL);
	if (!p->internal)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->n_internal && !ret; i++)
		ret = add(p->internal, cfg->internal[i], INTERNAL_CONFIG);
	for (size_t i = 0;
	     i < sizeof(special_use) / sizeof(*special_use) && !ret; i++)
		ret = add(p->internal, special_use[i], INTERNAL_SPECIAL_USE);
	/* 172.16.0.0/12 and 100.64.0.0/10: a zone per /16 */
	for (unsigned b = 16; b < 32 && !ret; b++) {
		snprintf(buf, sizeof(buf), "%u.172.in-addr.arpa", b);
		ret = add(p->internal, buf, INTERNAL_SPECIAL_USE);
	}
	for (unsigned b = 64; b < 128 && !ret; b++) {
		snprintf(buf, sizeof(buf), "%u.100.in-addr.arpa", b);
		ret = add(p->internal, buf, INTERNAL_SPECIAL_USE);
	}
	/* each record's owner (a wildcard's: its parent) */
	for (unsigned i = 0; i < cfg->n_records && !ret; i++) {
		const dv_cfg_record_t *r = &cfg->records[i];
		char name[DV_SUFFIX_NAME_MAX + 2];
		int n = dv_records_owner_text(r, name);
		const char *s = name;
		if (n >= 2 && name[0] == '*' && name[1] == '.') {
			s += 2;
			n -= 2;
		}
		if (n > 0)
			ret = dv_suffix_add(p->internal, s, (size_t)n,
					    INTERNAL_RECORDS, false);
	}
	if (ret == 0)
		dv_suffix_seal(p->internal);
	return ret;
}

bool dv_policy_internal(const pstate_t *p, const char *name, size_t len)
{
	dv_suffix_hit_t hit;
	return p->internal &&
	       dv_suffix_lookup(p->internal, name, len, p->internal_mask, &hit);
}

/*
 * Configuration: the keys of the policy's tables (README "Policy").
 *
 * lists:, groups: and clients: hold entries that are mappings themselves
 * (lists.NAME.source, groups.NAME.block, clients[].id), so their keys are
 * declared here, against the entry's struct, and the loader
 * (load_policy.c) sets them through dv_cfg_item_set() with the entry as
 * the base.  Names (a group's lists, a client's group) are resolved once
 * the whole file is read, so the file may name a list before declaring it.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "src/config/schema.h"
#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/core/log.h"

/* list and group names: what a YAML key can hold and a log can show */
static int parse_name(const char *text, void *elem, char *why,
		      size_t why_len)
{
	size_t n = strlen(text);
	if (n == 0 || n >= DV_POLICY_NAME_MAX) {
		dv_cfg_errf(why, why_len, "a name has 1..%d characters",
			    DV_POLICY_NAME_MAX - 1);
		return DV_ECONFIG;
	}
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_')) {
			dv_cfg_errf(why, why_len,
				    "a name has letters, digits, '-' and '_' "
				    "only");
			return DV_ECONFIG;
		}
	}
	memcpy(elem, text, n + 1);
	return 0;
}

int dv_cfg_check_name(const char *text, char *why, size_t why_len)
{
	char buf[DV_POLICY_NAME_MAX];
	return parse_name(text, buf, why, why_len);
}

static const char *const action_words[] = {
	[DV_ACTION_NXDOMAIN] = "nxdomain",
	[DV_ACTION_NODATA] = "nodata",
	[DV_ACTION_REFUSED] = "refused",
	[DV_ACTION_NULL] = "null",
};

/* One item of `action:`: a keyword, or an IPv4 or IPv6 address. */
static int parse_action(const char *text, void *elem, char *why,
			size_t why_len)
{
	dv_cfg_action_t *a = elem;
	for (unsigned i = 0; i < sizeof(action_words) / sizeof(*action_words);
	     i++) {
		if (strcmp(text, action_words[i]) == 0) {
			a->kind = (uint8_t)i;
			return 0;
		}
	}
	a->kind = DV_ACTION_ADDRESSES;
	if (inet_pton(AF_INET, text, a->addr) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a->addr) == 1) {
		a->family = AF_INET6;
		return 0;
	}
	dv_cfg_errf(why, why_len,
		    "expected nxdomain, nodata, refused, null or IP "
		    "addresses");
	return DV_ECONFIG;
}

/* clients[].id: a client ID, or a pattern of one with '*' and '?' */
static int check_id_pattern(const char *text, char *why, size_t why_len)
{
	size_t n = strlen(text);
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '*' ||
		      c == '?')) {
			dv_cfg_errf(why, why_len,
				    "a client ID (letters, digits, '-') or a "
				    "pattern of one with '*' and '?'");
			return DV_ECONFIG;
		}
	}
	if (n == 0 || n > DV_IDENT_MAX) {
		dv_cfg_errf(why, why_len, "1..%d characters", DV_IDENT_MAX);
		return DV_ECONFIG;
	}
	return 0;
}

/* lists.NAME.source: a file, or an http(s):// URL with a host */
static int check_source(const char *text, char *why, size_t why_len)
{
	const char *host = strncmp(text, "http://", 7) == 0    ? text + 7
			   : strncmp(text, "https://", 8) == 0 ? text + 8
							       : NULL;
	if (host && (host[0] == '\0' || host[0] == '/')) {
		dv_cfg_errf(why, why_len, "a URL needs a host");
		return DV_ECONFIG;
	}
	for (const char *c = text; host && *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			dv_cfg_errf(why, why_len,
				    "a URL has no spaces or control "
				    "characters");
			return DV_ECONFIG;
		}
	}
	if (!host && strstr(text, "://")) {
		dv_cfg_errf(why, why_len,
			    "a file path, or an http:// or https:// URL");
		return DV_ECONFIG;
	}
	if (text[0] == '\0') {
		dv_cfg_errf(why, why_len, "a file path or URL is needed");
		return DV_ECONFIG;
	}
	return 0;
}

static int check_group_name(const char *text, char *why, size_t why_len)
{
	return dv_cfg_check_name(text, why, why_len);
}

static const dv_cfg_list_kind_t list_names = {
	.type_name = "names", .one = "a list name", .many = "list names",
	.unique = true, .parse = parse_name,
};
static const dv_cfg_list_kind_t actions = {
	.type_name = "action", .one = "an action or an address",
	.many = "addresses", .null_is_word = true, .parse = parse_action,
};
static const dv_cfg_list_kind_t netmasks = {
	.type_name = "prefixes", .one = "an IP address or prefix",
	.many = "prefixes", .unique = true, .parse = dv_cfg_parse_netmask,
};

/* groups.NAME.records: loaded line by line by load_policy.c (records.c
 * parses each); the kind only names it for --help-config */
static int parse_record_never(const char *text, void *elem, char *why,
			      size_t why_len)
{
	(void)text;
	(void)elem;
	dv_cfg_errf(why, why_len, "records are loaded by load_policy.c");
	return DV_ECONFIG;
}

/* groups.NAME.upstream, .fallback: the grammar of the top-level
 * upstream: (dv_url_parse) */
static int parse_upstream_url(const char *text, void *elem, char *why,
			      size_t why_len)
{
	return dv_url_parse(text, DV_URL_UPSTREAM, elem, why, why_len);
}

static const dv_cfg_list_kind_t upstream_urls = {
	.type_name = "urls", .one = "a URL", .many = "URLs",
	.parse = parse_upstream_url,
};

static const dv_cfg_list_kind_t record_lines = {
	.type_name = "records", .one = "a zone-file line", .many = "records",
	.parse = parse_record_never,
};

static const char *const list_formats[] = {
	[DV_LIST_HOSTS] = "hosts",
	[DV_LIST_DOMAINS] = "domains",
	[DV_LIST_ADBLOCK] = "adblock",
	[DV_LIST_RPZ] = "rpz",
	NULL,
};

static const char *const rate_actions[] = {
	[DV_RATE_TRUNCATE] = "truncate",
	[DV_RATE_DROP] = "drop",
	NULL,
};

/* Type-checked offsets into an entry struct, as FIELD() in schema.c. */
#define SUB_MEMBER(T, f) (((T *)0)->f)
#define SUB_FIELD(T, f, ctype)                                               \
	(offsetof(T, f) + 0 * sizeof(&SUB_MEMBER(T, f) == (ctype *)0))
#define SUB_ARRAY(T, f, ctype)                                               \
	(offsetof(T, f) + 0 * sizeof(&SUB_MEMBER(T, f)[0] == (ctype *)0))
#define SUB_ITEM(S, sec, k, t, off)                                          \
	.section = sec, .sub = S, .key = k, .type = t, .offset = off

#define L_STR(k, f, chk, dc)                                                 \
	{ SUB_ITEM(DV_CFG_SUB_LIST, "lists.NAME", k, DV_CFG_STRING,             \
		   SUB_ARRAY(dv_cfg_list_t, f, char)),                          \
	  .aux = sizeof(SUB_MEMBER(dv_cfg_list_t, f)),                       \
	  .max = sizeof(SUB_MEMBER(dv_cfg_list_t, f)) - 1, .def = "",          \
	  .check = chk, .doc = dc }

const dv_cfg_item_t dv_cfg_policy_schema[] = {
	L_STR("source", source, check_source,
	      "the list's file, or an http:// or https:// URL (fetched with "
	      "conditional requests; the last good copy kept under "
	      "policy.cache-dir)"),
	{ SUB_ITEM(DV_CFG_SUB_LIST, "lists.NAME", "format", DV_CFG_ENUM,
		   SUB_FIELD(dv_cfg_list_t, format, unsigned)),
	  .names = list_formats, .def = "domains",
	  .doc = "hosts (\"0.0.0.0 name...\"), domains (a name a line), "
		 "adblock (\"||name^\", \"@@||name^\" exceptions; a rule "
		 "covers the name and its subdomains) or rpz (a response "
		 "policy zone: QNAME triggers, exact or \"*.name\")" },
	{ SUB_ITEM(DV_CFG_SUB_LIST, "lists.NAME", "refresh-s", DV_CFG_UINT,
		   SUB_FIELD(dv_cfg_list_t, refresh_s, unsigned)),
	  .min = 0, .max = 604800, .def = "86400",
	  .doc = "how often a URL is fetched again (a conditional request) "
		 "or a file is checked for a new size or modification time "
		 "and read again; 0: at start and on SIGHUP only" },
	{ SUB_ITEM(DV_CFG_SUB_LIST, "lists.NAME", "max-bytes", DV_CFG_SIZE,
		   SUB_FIELD(dv_cfg_list_t, max_bytes, uint64_t)),
	  .min = 1024, .max = 1024ULL * 1024 * 1024, .def = "64M",
	  .doc = "the largest body a URL may send (K, M, G); a larger one "
		 "is cut off and the last good copy stays" },
	{ SUB_ITEM(DV_CFG_SUB_LIST, "lists.NAME", "timeout-ms", DV_CFG_UINT,
		   SUB_FIELD(dv_cfg_list_t, timeout_ms, unsigned)),
	  .min = 100, .max = 600000, .def = "30000",
	  .doc = "the longest a URL's fetch may take, connection included; "
		 "a slower one fails and the last good copy stays" },

	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "block", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, block, dv_cfg_name_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_block, unsigned),
	  .elem_size = sizeof(dv_cfg_name_t), .list = &list_names,
	  .max = DV_POLICY_GROUP_LISTS,
	  .doc = "lists whose names (and their subdomains) the group's "
		 "clients do not get" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "allow", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, allow, dv_cfg_name_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_allow, unsigned),
	  .elem_size = sizeof(dv_cfg_name_t), .list = &list_names,
	  .max = DV_POLICY_GROUP_LISTS,
	  .doc = "lists whose names are never blocked for the group (a "
		 "more specific block rule still blocks a subdomain)" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "action", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, action, dv_cfg_action_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_action, unsigned),
	  .elem_size = sizeof(dv_cfg_action_t), .list = &actions,
	  .max = DV_POLICY_MAX_ACTION,
	  .doc = "what a blocked query gets: nxdomain (empty: the default), "
		 "nodata, refused, null (0.0.0.0 / ::) or IP addresses; EDE "
		 "15 names the list" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "blocked-ttl", DV_CFG_UINT,
		   SUB_FIELD(dv_cfg_group_t, blocked_ttl, unsigned)),
	  .min = 0, .max = 86400, .def = "300",
	  .doc = "TTL of blocked answers (records, and the SOA of "
		 "NXDOMAIN/NODATA)" },

	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "allow-from", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, allow_from, dv_netmask_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_allow_from, unsigned),
	  .elem_size = sizeof(dv_netmask_t), .list = &netmasks,
	  .max = DV_POLICY_CLIENT_CIDRS,
	  .doc = "client addresses or prefixes the group serves (empty: "
		 "all); any other gets REFUSED with EDE 18 (Prohibited)" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "deny-from", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, deny_from, dv_netmask_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_deny_from, unsigned),
	  .elem_size = sizeof(dv_netmask_t), .list = &netmasks,
	  .max = DV_POLICY_CLIENT_CIDRS,
	  .doc = "client addresses or prefixes refused (REFUSED, EDE 18), "
		 "even inside allow-from: a deny wins" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "rate-limit-qps",
		   DV_CFG_UINT, SUB_FIELD(dv_cfg_group_t, rate_limit_qps,
					  unsigned)),
	  .min = 0, .max = 1000000, .def = "0",
	  .doc = "queries a second per client ID, or per address prefix "
		 "when there is none (token buckets per worker); 0: no "
		 "limit" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "rate-limit-burst",
		   DV_CFG_UINT, SUB_FIELD(dv_cfg_group_t, rate_limit_burst,
					  unsigned)),
	  .min = 0, .max = 1000000, .def = "0",
	  .doc = "queries a client may send at once above the rate (the "
		 "bucket's size); 0: the rate-limit-qps" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "rate-limit-action",
		   DV_CFG_ENUM, SUB_FIELD(dv_cfg_group_t, rate_limit_action,
					  unsigned)),
	  .names = rate_actions, .def = "truncate",
	  .doc = "what a UDP query over the limit gets: truncate (an empty "
		 "answer with TC, so a real client asks again over TCP) or "
		 "drop; TCP, DoT, DoH and DoQ get REFUSED with EDE 18" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "rate-limit-ipv4-prefix",
		   DV_CFG_UINT, SUB_FIELD(dv_cfg_group_t, rate_limit_v4,
					  unsigned)),
	  .min = 8, .max = 32, .def = "24",
	  .doc = "the IPv4 prefix that shares a bucket when the client has "
		 "no ID" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "rate-limit-ipv6-prefix",
		   DV_CFG_UINT, SUB_FIELD(dv_cfg_group_t, rate_limit_v6,
					  unsigned)),
	  .min = 16, .max = 128, .def = "56",
	  .doc = "the IPv6 prefix that shares a bucket when the client has "
		 "no ID" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "upstream", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, upstream, dv_url_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_upstream, unsigned),
	  .elem_size = sizeof(dv_url_t), .list = &upstream_urls,
	  .max = DV_POLICY_GROUP_UPSTREAMS,
	  .doc = "the group's own resolvers (URLs as for upstream:), asked "
		 "instead of the top-level upstream: and fallback:; its "
		 "answers are cached apart; groups with identical lists "
		 "share one set" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "fallback", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_group_t, fallback, dv_url_t)),
	  .aux = SUB_FIELD(dv_cfg_group_t, n_fallback, unsigned),
	  .elem_size = sizeof(dv_url_t), .list = &upstream_urls,
	  .max = DV_POLICY_GROUP_UPSTREAMS,
	  .doc = "the fallback of the group's upstream: (as for fallback:); "
		 "empty: none, the top-level fallback: is never asked for "
		 "a group with its own upstream:" },
	{ SUB_ITEM(DV_CFG_SUB_GROUP, "groups.NAME", "records", DV_CFG_LIST, 0),
	  .list = &record_lines, .max = DV_POLICY_MAX_RECORDS,
	  .doc = "zone-file lines (\"host.corp.example. 300 IN A "
		 "192.0.2.10\"; A, AAAA, CNAME, TXT, SRV, PTR, MX, HTTPS, "
		 "SVCB; \"*.NAME\" wildcards) the group's clients get "
		 "answered locally, authoritatively" },

	{ SUB_ITEM(DV_CFG_SUB_CLIENT, "clients[]", "id", DV_CFG_STRING,
		   SUB_ARRAY(dv_cfg_client_t, id, char)),
	  .aux = sizeof(SUB_MEMBER(dv_cfg_client_t, id)),
	  .max = DV_IDENT_MAX, .def = "", .check = check_id_pattern,
	  .doc = "client ID from the DoH path or the TLS SNI, exact or a "
		 "pattern (\"kid-*\")" },
	{ SUB_ITEM(DV_CFG_SUB_CLIENT, "clients[]", "cidr", DV_CFG_LIST,
		   SUB_ARRAY(dv_cfg_client_t, cidr, dv_netmask_t)),
	  .aux = SUB_FIELD(dv_cfg_client_t, n_cidr, unsigned),
	  .elem_size = sizeof(dv_netmask_t), .list = &netmasks,
	  .max = DV_POLICY_CLIENT_CIDRS,
	  .doc = "client addresses or prefixes (after doh.trusted-proxies)" },
	{ SUB_ITEM(DV_CFG_SUB_CLIENT, "clients[]", "listener", DV_CFG_STRING,
		   SUB_ARRAY(dv_cfg_client_t, listener, char)),
	  .aux = sizeof(SUB_MEMBER(dv_cfg_client_t, listener)),
	  .max = sizeof(SUB_MEMBER(dv_cfg_client_t, listener)) - 1, .def = "",
	  .doc = "a listen URL exactly as given there (not DoQ yet)" },
	{ SUB_ITEM(DV_CFG_SUB_CLIENT, "clients[]", "group", DV_CFG_STRING,
		   SUB_ARRAY(dv_cfg_client_t, group, char)),
	  .aux = sizeof(SUB_MEMBER(dv_cfg_client_t, group)),
	  .max = DV_POLICY_NAME_MAX - 1, .def = "", .check = check_group_name,
	  .doc = "the group of the clients this entry matches (all its keys "
		 "must match; the first entry that does wins, else the "
		 "group default)" },
	{ .key = NULL },
};

#define POLICY_LEN (sizeof(dv_cfg_policy_schema) / sizeof(*dv_cfg_policy_schema) - 1)

const dv_cfg_item_t *dv_cfg_sub_find(dv_cfg_sub_t sub, const char *key)
{
	for (size_t i = 0; i < POLICY_LEN; i++)
		if (dv_cfg_policy_schema[i].sub == sub &&
		    strcmp(dv_cfg_policy_schema[i].key, key) == 0)
			return &dv_cfg_policy_schema[i];
	return NULL;
}

void dv_cfg_sub_defaults(dv_cfg_sub_t sub, void *elem)
{
	char why[128];
	for (size_t i = 0; i < POLICY_LEN; i++) {
		const dv_cfg_item_t *it = &dv_cfg_policy_schema[i];
		/* "" is the zeroed entry's value already (and no valid
		 * source or group name) */
		if (it->sub != sub || !it->def || !it->def[0])
			continue;
		/* the defaults are the schema's own: never refused */
		dv_require(dv_cfg_item_set(it, (dv_config_t *)elem, it->def,
					   why, sizeof(why)) == 0);
	}
}

static int find_list(const dv_config_t *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->n_lists; i++)
		if (strcmp(cfg->lists[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int find_group(const dv_config_t *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->n_groups; i++)
		if (strcmp(cfg->groups[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* The names of one of a group's `block`/`allow` as a mask of lists. */
static int resolve_lists(const dv_config_t *cfg, const dv_cfg_group_t *g,
			 const dv_cfg_name_t *names, unsigned n,
			 const char *key, unsigned line, uint32_t *mask,
			 char *err, size_t err_len)
{
	*mask = 0;
	for (unsigned i = 0; i < n; i++) {
		int li = find_list(cfg, names[i]);
		if (li < 0) {
			dv_cfg_errf(err, err_len,
				    "%s:%u: groups.%s.%s: unknown list '%s' (not "
				    "under lists:)",
				    cfg->source, line ? line : g->line, g->name,
				    key, names[i]);
			return DV_ECONFIG;
		}
		*mask |= 1u << li;
	}
	return 0;
}

static bool same_urls(const dv_url_t *a, unsigned na, const dv_url_t *b,
		      unsigned nb)
{
	if (na != nb)
		return false;
	for (unsigned i = 0; i < na; i++)
		if (strcmp(a[i].text, b[i].text) != 0)
			return false;
	return true;
}

/* Number the groups' upstream sets: 0 without upstream:, else the set
 * of the first group with the same upstream: and fallback: lists, or a
 * new one. */
static int resolve_upstream_sets(dv_config_t *cfg, char *err, size_t err_len)
{
	cfg->n_upstream_sets = 1;
	for (unsigned i = 0; i < cfg->n_groups; i++) {
		dv_cfg_group_t *g = &cfg->groups[i];
		g->upstream_set = 0;
		if (g->n_upstream == 0) {
			if (g->n_fallback == 0)
				continue;
			dv_cfg_errf(err, err_len,
				    "%s:%u: groups.%s.fallback: needs "
				    "groups.%s.upstream (a group without one "
				    "uses the top-level upstream: and "
				    "fallback:)",
				    cfg->source,
				    g->fallback_line ? g->fallback_line
						     : g->line,
				    g->name, g->name);
			return DV_ECONFIG;
		}
		for (unsigned k = 0; k < i && !g->upstream_set; k++) {
			const dv_cfg_group_t *o = &cfg->groups[k];
			if (o->upstream_set &&
			    same_urls(g->upstream, g->n_upstream, o->upstream,
				      o->n_upstream) &&
			    same_urls(g->fallback, g->n_fallback, o->fallback,
				      o->n_fallback))
				g->upstream_set = o->upstream_set;
		}
		if (!g->upstream_set)
			g->upstream_set = cfg->n_upstream_sets++;
	}
	return 0;
}

unsigned dv_config_upstream_sets(const dv_config_t *cfg)
{
	return cfg->n_upstream_sets ? cfg->n_upstream_sets : 1;
}

void dv_config_upstream_set(const dv_config_t *cfg, unsigned set,
			    dv_upstream_set_t *out)
{
	*out = (dv_upstream_set_t){
		.upstream = cfg->upstream, .n_upstream = cfg->n_upstream,
		.fallback = cfg->fallback, .n_fallback = cfg->n_fallback,
	};
	for (unsigned i = 0; set && i < cfg->n_groups; i++) {
		const dv_cfg_group_t *g = &cfg->groups[i];
		if (g->upstream_set != set)
			continue;
		*out = (dv_upstream_set_t){
			.upstream = g->upstream, .n_upstream = g->n_upstream,
			.fallback = g->fallback, .n_fallback = g->n_fallback,
			.name = g->name,
		};
		return;
	}
}

int dv_cfg_policy_resolve(dv_config_t *cfg, char *err, size_t err_len)
{
	if (cfg->n_groups == 0 && cfg->n_clients == 0 && cfg->n_lists == 0)
		return 0;
	if (find_group(cfg, "default") < 0) {
		if (cfg->n_groups >= DV_POLICY_MAX_GROUPS) {
			dv_cfg_errf(err, err_len,
				    "%s: groups: no room for the group "
				    "default (at most %d groups)",
				    cfg->source, DV_POLICY_MAX_GROUPS);
			return DV_ECONFIG;
		}
		dv_cfg_group_t *g = &cfg->groups[cfg->n_groups++];
		memset(g, 0, sizeof(*g));
		dv_cfg_sub_defaults(DV_CFG_SUB_GROUP, g);
		snprintf(g->name, sizeof(g->name), "default");
	}
	for (unsigned i = 0; i < cfg->n_groups; i++) {
		dv_cfg_group_t *g = &cfg->groups[i];
		if (resolve_lists(cfg, g, g->block, g->n_block, "block",
				  g->block_line, &g->block_mask, err, err_len) ||
		    resolve_lists(cfg, g, g->allow, g->n_allow, "allow",
				  g->allow_line, &g->allow_mask, err, err_len))
			return DV_ECONFIG;
		/* a keyword stands alone; addresses may be many */
		for (unsigned k = 0; k < g->n_action; k++) {
			if (g->action[k].kind != DV_ACTION_ADDRESSES &&
			    g->n_action > 1) {
				dv_cfg_errf(err, err_len,
					    "%s:%u: groups.%s.action: '%s' "
					    "cannot be mixed with other "
					    "actions",
					    cfg->source,
					    g->action_line ? g->action_line
							   : g->line,
					    g->name,
					    action_words[g->action[k].kind]);
				return DV_ECONFIG;
			}
		}
	}
	for (unsigned i = 0; i < cfg->n_clients; i++) {
		dv_cfg_client_t *c = &cfg->clients[i];
		int gi = find_group(cfg, c->group);
		if (gi < 0) {
			dv_cfg_errf(err, err_len,
				    "%s:%u: clients.group: unknown group '%s' "
				    "(not under groups:)",
				    cfg->source, c->line, c->group);
			return DV_ECONFIG;
		}
		c->group_index = (unsigned)gi;
	}
	return resolve_upstream_sets(cfg, err, err_len);
}

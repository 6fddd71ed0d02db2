/*
 * The YAML loader, the policy's tables (README "Policy"):
 *
 *   lists:   { NAME: { source: FILE, format: hosts, ... }, ... }
 *   groups:  { NAME: { block: [LIST...], action: null, ... }, ... }
 *   clients: [ { id: "kid-*", group: NAME }, { cidr: PREFIX, ... }, ... ]
 *
 * (internal: is a plain key of the schema.)  A group's records: are
 * parsed line by line here (records.c), into the config's record table.
 *
 * An entry's keys are the schema's (schema_policy.c), set into the entry
 * through dv_load_value().  Keys of the design that this release
 * does not implement yet are refused by name, so that a config written
 * for them fails loudly instead of silently doing less.
 */
#include <stdio.h>
#include <string.h>

#include "src/config/load.h"
#include "src/core/errors.h"

enum { SEEN_LISTS = 1, SEEN_GROUPS = 2, SEEN_CLIENTS = 4 };

static const struct {
	const char *key;
	unsigned bit;
} tables[] = {
	{ "lists", SEEN_LISTS },
	{ "groups", SEEN_GROUPS },
	{ "clients", SEEN_CLIENTS },
};

/* keys of the design (issue 13) that come in later releases */
static const char *const later_group_keys[] = { NULL };

bool dv_load_policy_key(const char *k)
{
	for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++)
		if (strcmp(k, tables[i].key) == 0)
			return true;
	return false;
}

/* Where a group's keys whose values are checked after the load were. */
static void group_line(dv_cfg_group_t *g, const char *k, unsigned line)
{
	if (strcmp(k, "block") == 0)
		g->block_line = line;
	else if (strcmp(k, "allow") == 0)
		g->allow_line = line;
	else if (strcmp(k, "action") == 0)
		g->action_line = line;
	else if (strcmp(k, "fallback") == 0)
		g->fallback_line = line;
}

/* groups.NAME.records: a list of zone-file lines (or one), each parsed
 * now so that a bad one is an error at its own line. */
static int load_records(loader_t *l, const yaml_event_t *val, dv_cfg_group_t *g,
			const char *name)
{
	dv_config_t *cfg = l->cfg;
	unsigned gi = (unsigned)(g - cfg->groups);
	char why[256];
	yaml_event_t ev;
	const char *text;
	int ret;

	if (val->type == YAML_SCALAR_EVENT) {
		if (dv_load_is_null(val))
			return 0;
		ret = dv_load_text(l, val, name, &text);
		if (ret == 0 &&
		    dv_cfg_record_parse(cfg, gi,
					(unsigned)val->start_mark.line + 1,
					text, why, sizeof(why)) != 0)
			ret = dv_load_fail(l, val, name, "%s", why);
		return ret;
	}
	if (val->type != YAML_SEQUENCE_START_EVENT)
		return dv_load_fail(l, val, name,
				    "expected a list of zone-file lines, got "
				    "%s",
				    dv_load_kind(val));
	for (;;) {
		ret = dv_load_next(l, &ev);
		if (ret != 0)
			return ret;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return 0;
		}
		if (ev.type != YAML_SCALAR_EVENT)
			ret = dv_load_fail(l, &ev, name,
					   "expected a zone-file line, got %s",
					   dv_load_kind(&ev));
		else
			ret = dv_load_text(l, &ev, name, &text);
		if (ret == 0 &&
		    dv_cfg_record_parse(cfg, gi,
					(unsigned)ev.start_mark.line + 1, text,
					why, sizeof(why)) != 0)
			ret = dv_load_fail(l, &ev, name, "%s", why);
		yaml_event_delete(&ev);
		if (ret != 0)
			return ret;
	}
}

/* One entry's mapping (MAPPING_START consumed), into `elem`; `prefix`
 * names its keys in messages ("lists.ads"). */
static int load_entry(loader_t *l, dv_cfg_sub_t sub, void *elem,
		      const char *prefix)
{
	yaml_event_t key, val;
	char name[200];
	unsigned seen = 0;
	int ret;

	for (;;) {
		ret = dv_load_next(l, &key);
		if (ret != 0)
			return ret;
		if (key.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&key);
			return 0;
		}
		if (key.type != YAML_SCALAR_EVENT) {
			ret = dv_load_fail(l, &key, prefix,
					   "keys must be plain strings, got %s",
					   dv_load_kind(&key));
			yaml_event_delete(&key);
			return ret;
		}
		const char *k = (const char *)key.data.scalar.value;
		snprintf(name, sizeof(name), "%s.%.64s", prefix, k);
		ret = dv_load_next(l, &val);
		if (ret != 0) {
			yaml_event_delete(&key);
			return ret;
		}
		const dv_cfg_item_t *it = dv_cfg_sub_find(sub, k);
		unsigned bit = it ? 1u << (it - dv_cfg_policy_schema) % 32 : 0;
		bool later = false;
		for (unsigned i = 0;
		     sub == DV_CFG_SUB_GROUP && later_group_keys[i]; i++)
			later |= strcmp(k, later_group_keys[i]) == 0;
		if (later)
			ret = dv_load_fail(l, &key, name,
					   "not supported yet by this release "
					   "of dnsveil");
		else if (!it)
			ret = dv_load_fail(l, &key, name, "unknown key");
		else if (seen & bit)
			ret = dv_load_fail(l, &key, name, "duplicate key");
		else if (sub == DV_CFG_SUB_GROUP && strcmp(k, "records") == 0)
			ret = load_records(l, &val, elem, name);
		else
			ret = dv_load_value(l, it, elem, name, &val);
		if (ret == 0 && sub == DV_CFG_SUB_GROUP)
			group_line(elem, k, (unsigned)key.start_mark.line + 1);
		seen |= bit;
		yaml_event_delete(&val);
		yaml_event_delete(&key);
		if (ret != 0)
			return ret;
	}
}

/* lists: and groups:: a mapping of NAME: entry. */
static int load_named(loader_t *l, const yaml_event_t *val, const char *key)
{
	dv_config_t *cfg = l->cfg;
	bool lists = strcmp(key, "lists") == 0;
	dv_cfg_sub_t sub = lists ? DV_CFG_SUB_LIST : DV_CFG_SUB_GROUP;
	unsigned *n = lists ? &cfg->n_lists : &cfg->n_groups;
	unsigned max = lists ? DV_POLICY_MAX_LISTS : DV_POLICY_MAX_GROUPS;
	yaml_event_t nm, ent;
	char prefix[100], why[128];
	int ret;

	*n = 0;
	if (!lists) {
		cfg->n_records = 0;
		cfg->record_data_len = 0;
	}
	if (val->type == YAML_SCALAR_EVENT && dv_load_is_null(val))
		return 0;
	if (val->type != YAML_MAPPING_START_EVENT)
		return dv_load_fail(l, val, key,
				    "expected a mapping of names, got %s",
				    dv_load_kind(val));
	for (;;) {
		ret = dv_load_next(l, &nm);
		if (ret != 0)
			return ret;
		if (nm.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&nm);
			return 0;
		}
		const char *name = nm.type == YAML_SCALAR_EVENT
					   ? (const char *)nm.data.scalar.value
					   : "";
		snprintf(prefix, sizeof(prefix), "%s.%.64s", key, name);
		ret = dv_load_next(l, &ent);
		if (ret != 0) {
			yaml_event_delete(&nm);
			return ret;
		}
		void *elem = lists ? (void *)&cfg->lists[*n]
				   : (void *)&cfg->groups[*n];
		char *elem_name = lists ? cfg->lists[*n].name
					: cfg->groups[*n].name;
		if (nm.type != YAML_SCALAR_EVENT) {
			ret = dv_load_fail(l, &nm, key,
					   "names must be plain strings, got "
					   "%s",
					   dv_load_kind(&nm));
		} else if (dv_cfg_check_name(name, why, sizeof(why)) != 0) {
			ret = dv_load_fail(l, &nm, prefix, "%s", why);
		} else if (*n >= max) {
			ret = dv_load_fail(l, &nm, prefix,
					   "too many %s (at most %u)", key,
					   max);
		} else {
			ret = 0;
			for (unsigned i = 0; i < *n && !ret; i++) {
				const char *other = lists ? cfg->lists[i].name
							  : cfg->groups[i].name;
				if (strcmp(other, name) == 0)
					ret = dv_load_fail(l, &nm, prefix,
							   "duplicate name");
			}
		}
		if (ret == 0) {
			memset(elem, 0,
			       lists ? sizeof(dv_cfg_list_t)
				     : sizeof(dv_cfg_group_t));
			dv_cfg_sub_defaults(sub, elem);
			snprintf(elem_name, DV_POLICY_NAME_MAX, "%s", name);
			if (!lists)
				cfg->groups[*n].line =
					(unsigned)nm.start_mark.line + 1;
			if (ent.type == YAML_MAPPING_START_EVENT)
				ret = load_entry(l, sub, elem, prefix);
			else if (!(lists || (ent.type == YAML_SCALAR_EVENT &&
					     dv_load_is_null(&ent))))
				ret = dv_load_fail(l, &ent, prefix,
						   "expected a mapping of "
						   "keys, got %s",
						   dv_load_kind(&ent));
			else if (lists)
				ret = dv_load_fail(l, &ent, prefix,
						   "expected a mapping with "
						   "source: and format:");
		}
		if (ret == 0 && lists && cfg->lists[*n].source[0] == '\0')
			ret = dv_load_fail(l, &nm, prefix,
					   "source: is missing");
		if (ret == 0)
			(*n)++;
		yaml_event_delete(&ent);
		yaml_event_delete(&nm);
		if (ret != 0)
			return ret;
	}
}

/* clients:: a list of entries, in order. */
static int load_clients(loader_t *l, const yaml_event_t *val)
{
	dv_config_t *cfg = l->cfg;
	yaml_event_t ent;
	int ret;

	cfg->n_clients = 0;
	if (val->type == YAML_SCALAR_EVENT && dv_load_is_null(val))
		return 0;
	if (val->type != YAML_SEQUENCE_START_EVENT)
		return dv_load_fail(l, val, "clients",
				    "expected a list of mappings, got %s",
				    dv_load_kind(val));
	for (;;) {
		ret = dv_load_next(l, &ent);
		if (ret != 0)
			return ret;
		if (ent.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ent);
			return 0;
		}
		dv_cfg_client_t *c = &cfg->clients[cfg->n_clients];
		if (ent.type != YAML_MAPPING_START_EVENT) {
			ret = dv_load_fail(l, &ent, "clients",
					   "expected a mapping ({id: ..., "
					   "group: ...}), got %s",
					   dv_load_kind(&ent));
		} else if (cfg->n_clients >= DV_POLICY_MAX_CLIENTS) {
			ret = dv_load_fail(l, &ent, "clients",
					   "too many entries (at most %d)",
					   DV_POLICY_MAX_CLIENTS);
		} else {
			memset(c, 0, sizeof(*c));
			dv_cfg_sub_defaults(DV_CFG_SUB_CLIENT, c);
			c->line = (unsigned)ent.start_mark.line + 1;
			ret = load_entry(l, DV_CFG_SUB_CLIENT, c, "clients");
			if (ret == 0 && c->group[0] == '\0')
				ret = dv_load_fail(l, &ent, "clients",
						   "group: is missing");
			if (ret == 0)
				cfg->n_clients++;
		}
		yaml_event_delete(&ent);
		if (ret != 0)
			return ret;
	}
}

int dv_load_policy(loader_t *l, const yaml_event_t *key,
		   const yaml_event_t *val)
{
	const char *k = (const char *)key->data.scalar.value;
	unsigned bit = 0;
	for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++)
		if (strcmp(k, tables[i].key) == 0)
			bit = tables[i].bit;
	if (l->policy_seen & bit)
		return dv_load_fail(l, key, k, "duplicate key");
	l->policy_seen |= bit;
	if (bit == SEEN_CLIENTS)
		return load_clients(l, val);
	return load_named(l, val, k);
}

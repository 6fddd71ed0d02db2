/*
 * Configuration: one schema item, set from text, cleared, named and printed.
 *
 * The table itself is in schema.c (and schema_policy.c); this file is what
 * every table shares: the typed parsing of a value against an item's range,
 * the lookup by section and key, and the --help-config listing.
 */
#include "src/config/schema.h"
#include "src/core/errors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_levels[] = {
	[DV_LOG_ERROR] = "error",
	[DV_LOG_WARN] = "warn",
	[DV_LOG_INFO] = "info",
	[DV_LOG_DEBUG] = "debug",
};

static const char *const type_names[] = {
	[DV_CFG_UINT] = "uint",
	[DV_CFG_SIZE] = "size",
	[DV_CFG_STRING] = "string",
	[DV_CFG_LOGLEVEL] = "enum",
	[DV_CFG_ENUM] = "enum",
	[DV_CFG_LIST] = "list", /* shown as the list kind's own type_name */
};

const dv_cfg_item_t *dv_cfg_find_in(const dv_cfg_item_t *items, size_t n,
				    const char *section, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		const dv_cfg_item_t *it = &items[i];

		if ((section == NULL) != (it->section == NULL))
			continue;
		if (section != NULL && strcmp(section, it->section) != 0)
			continue;
		if (strcmp(key, it->key) == 0)
			return it;
	}
	return NULL;
}

void dv_cfg_item_name(const dv_cfg_item_t *it, char *buf, size_t len)
{
	if (it->section != NULL)
		snprintf(buf, len, "%s.%s", it->section, it->key);
	else
		snprintf(buf, len, "%s", it->key);
}

void *dv_cfg_item_ptr(const dv_cfg_item_t *it, dv_config_t *cfg)
{
	return (char *)cfg + it->offset;
}

/* "64M" for exact multiples, else plain bytes. */
static void format_size(uint64_t v, char *buf, size_t len)
{
	if (v != 0 && v % GIB == 0)
		snprintf(buf, len, "%" PRIu64 "G", v / GIB);
	else if (v != 0 && v % MIB == 0)
		snprintf(buf, len, "%" PRIu64 "M", v / MIB);
	else if (v != 0 && v % KIB == 0)
		snprintf(buf, len, "%" PRIu64 "K", v / KIB);
	else
		snprintf(buf, len, "%" PRIu64, v);
}

/* Decimal digits only: no sign, no spaces, no hex. */
static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			v = UINT64_MAX; /* saturate: out of any range */
		else
			v = v * 10 + d;
	}
	*out = v;
	return true;
}

static void format_range(const dv_cfg_item_t *it, char *buf, size_t len)
{
	char lo[24], hi[24];

	switch (it->type) {
	case DV_CFG_UINT:
		snprintf(buf, len, "%" PRIu64 "..%" PRIu64, it->min, it->max);
		break;
	case DV_CFG_SIZE:
		format_size(it->min, lo, sizeof(lo));
		format_size(it->max, hi, sizeof(hi));
		snprintf(buf, len, "%s..%s", lo, hi);
		break;
	case DV_CFG_STRING:
		snprintf(buf, len, "max %" PRIu64 " bytes", it->max);
		break;
	case DV_CFG_LOGLEVEL:
		snprintf(buf, len, "error|warn|info|debug");
		break;
	case DV_CFG_ENUM: {
		size_t off = 0;
		buf[0] = '\0';
		for (unsigned i = 0; it->names[i] && off < len; i++)
			off += (size_t)snprintf(buf + off, len - off, "%s%s",
						i ? "|" : "", it->names[i]);
		break;
	}
	case DV_CFG_LIST:
		snprintf(buf, len, "max %" PRIu64 " %s", it->max,
			 it->list->many);
		break;
	}
}

int dv_cfg_item_set(const dv_cfg_item_t *it, dv_config_t *cfg,
		    const char *val, char *why, size_t why_len)
{
	void *field = dv_cfg_item_ptr(it, cfg);
	char range[64];
	uint64_t v;

	switch (it->type) {
	case DV_CFG_UINT:
		if (!parse_u64(val, strlen(val), &v)) {
			dv_cfg_errf(why, why_len, "not an unsigned integer");
			return DV_ECONFIG;
		}
		if (v < it->min || v > it->max)
			goto out_of_range;
		*(unsigned *)field = (unsigned)v;
		return 0;
	case DV_CFG_SIZE: {
		size_t n = strlen(val);
		unsigned shift = 0;

		if (n > 0) {
			switch (val[n - 1]) {
			case 'K': case 'k': shift = 10; break;
			case 'M': case 'm': shift = 20; break;
			case 'G': case 'g': shift = 30; break;
			default: break;
			}
		}
		if (!parse_u64(val, shift != 0 ? n - 1 : n, &v)) {
			dv_cfg_errf(why, why_len,
				    "not a size (a number with an optional K, "
				    "M or G suffix)");
			return DV_ECONFIG;
		}
		if (v > (UINT64_MAX >> shift))
			goto out_of_range;
		v <<= shift;
		if (v < it->min || v > it->max)
			goto out_of_range;
		*(uint64_t *)field = v;
		return 0;
	}
	case DV_CFG_STRING:
		if (strlen(val) > it->max) {
			dv_cfg_errf(why, why_len,
				    "too long (at most %" PRIu64 " bytes)",
				    it->max);
			return DV_ECONFIG;
		}
		if (it->check != NULL && it->check(val, why, why_len) != 0)
			return DV_ECONFIG;
		memcpy(field, val, strlen(val) + 1);
		return 0;
	case DV_CFG_LOGLEVEL:
		for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]);
		     i++) {
			if (strcmp(val, log_levels[i]) == 0) {
				*(dv_log_level_t *)field = (dv_log_level_t)i;
				return 0;
			}
		}
		dv_cfg_errf(why, why_len,
			    "expected error, warn, info or debug");
		return DV_ECONFIG;
	case DV_CFG_ENUM: {
		char names[128];
		size_t off = 0;
		for (unsigned i = 0; it->names[i]; i++) {
			if (strcmp(val, it->names[i]) == 0) {
				*(unsigned *)field = i;
				return 0;
			}
			if (off < sizeof(names))
				off += (size_t)snprintf(names + off,
							sizeof(names) - off,
							"%s%s", i ? ", " : "",
							it->names[i]);
		}
		dv_cfg_errf(why, why_len, "expected one of %s", names);
		return DV_ECONFIG;
	}
	case DV_CFG_LIST: {
		unsigned *count = (unsigned *)((char *)cfg + it->aux);
		unsigned char *list = field;
		_Alignas(max_align_t) unsigned char elem[LIST_ELEM_MAX];

		memset(elem, 0, it->elem_size);
		if (it->list->parse(val, elem, why, why_len) != 0)
			return DV_ECONFIG;
		for (unsigned i = 0; it->list->unique && i < *count; i++) {
			if (memcmp(list + i * it->elem_size, elem,
				   it->elem_size) == 0)
				return 0; /* said twice: once is enough */
		}
		if (*count >= it->max) {
			dv_cfg_errf(why, why_len,
				    "too many %s (at most %" PRIu64 ")",
				    it->list->many, it->max);
			return DV_ECONFIG;
		}
		memcpy(list + (size_t)*count * it->elem_size, elem,
		       it->elem_size);
		(*count)++;
		return 0;
	}
	}
	dv_cfg_errf(why, why_len, "unknown type");
	return DV_ECONFIG;

out_of_range:
	format_range(it, range, sizeof(range));
	dv_cfg_errf(why, why_len, "out of range %s", range);
	return DV_ECONFIG;
}

/* The array too: equal configs are equal bytes. */
void dv_cfg_item_clear(const dv_cfg_item_t *it, dv_config_t *cfg)
{
	if (it->type == DV_CFG_LIST) {
		*(unsigned *)((char *)cfg + it->aux) = 0;
		memset(dv_cfg_item_ptr(it, cfg), 0, it->elem_size * it->max);
	}
}

static const char *item_type_name(const dv_cfg_item_t *it)
{
	return it->type == DV_CFG_LIST ? it->list->type_name
				       : type_names[it->type];
}

void dv_cfg_print_items(FILE *out, const dv_cfg_item_t *items, size_t n_items)
{
	int w_name = 0, w_type = 0, w_range = 0, w_def = 0;
	char name[64], range[64], brange[68], def[32];

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n_items; i++) {
			const dv_cfg_item_t *it = &items[i];
			int n;

			dv_cfg_item_name(it, name, sizeof(name));
			format_range(it, range, sizeof(range));
			snprintf(brange, sizeof(brange), "[%s]", range);
			if (it->type == DV_CFG_LIST)
				snprintf(def, sizeof(def), "[]");
			else if (it->type == DV_CFG_STRING)
				snprintf(def, sizeof(def), "\"%s\"", it->def);
			else
				snprintf(def, sizeof(def), "%s", it->def);
			if (pass == 1) {
				fprintf(out, "%-*s  %-*s  %-*s  %-*s  %s\n",
					w_name, name, w_type,
					item_type_name(it), w_range, brange,
					w_def, def, it->doc);
				continue;
			}
			n = (int)strlen(name);
			w_name = n > w_name ? n : w_name;
			n = (int)strlen(item_type_name(it));
			w_type = n > w_type ? n : w_type;
			n = (int)strlen(brange);
			w_range = n > w_range ? n : w_range;
			n = (int)strlen(def);
			w_def = n > w_def ? n : w_def;
		}
	}
}

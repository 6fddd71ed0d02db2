#pragma once
/*
 * Private to src/config/: the YAML loader's state and the steps that
 * load.c (the schema's keys) and load_policy.c (the policy's tables)
 * share.  Every error is "FILE:LINE: KEY: reason" at the event it is
 * about.
 */
#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

#include "src/config/schema.h"

typedef struct {
	yaml_parser_t parser;
	const char *path;
	const unsigned char *buf;
	size_t len;
	dv_config_t *cfg;
	char *err;
	size_t err_len;
	bool seen[DV_CFG_SCHEMA_MAX]; /* by index in dv_cfg_schema[] */
	const char *sections_seen[DV_CFG_SCHEMA_MAX];
	size_t n_sections_seen;
	unsigned policy_seen; /* bits: lists, groups, clients (load_policy.c) */
} loader_t;

/* "a list", "a mapping", ... for messages. */
const char *dv_load_kind(const yaml_event_t *ev);
/* A plain "", "~" or "null". */
bool dv_load_is_null(const yaml_event_t *ev);
/* The next event; a libyaml error becomes "FILE:LINE: syntax error". */
int dv_load_next(loader_t *l, yaml_event_t *ev);
/* "FILE:LINE: NAME: reason" at `ev`; returns DV_ECONFIG. */
int dv_load_fail(loader_t *l, const yaml_event_t *ev, const char *name,
		 const char *fmt, ...) DV_PRINTF(4, 5);
/* The scalar's text, refusing embedded NULs. */
int dv_load_text(loader_t *l, const yaml_event_t *ev, const char *name,
		 const char **text);
/* The value of the key `it` into `base` (the config, or a policy table
 * entry); `ev` is its first event (owned by the caller); `name` names it
 * in messages (NULL: the schema's "section.key"). */
int dv_load_value(loader_t *l, const dv_cfg_item_t *it, void *base,
		  const char *name, const yaml_event_t *ev);

/* Whether the top-level key `k` is one of the policy's tables. */
bool dv_load_policy_key(const char *k);
/* Load the top-level policy key `key` whose value starts with `val`. */
int dv_load_policy(loader_t *l, const yaml_event_t *key,
		   const yaml_event_t *val);

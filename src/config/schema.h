#pragma once
/*
 * Private to src/config/: the schema's item types and the helpers that the
 * folder's files share.  Nothing outside src/config/ includes this header;
 * the rest of the tree sees only config.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/config/config.h"

/* The largest list element (dv_cfg_item_set() parses into a buffer this
 * big). */
#define LIST_ELEM_MAX sizeof(dv_url_t)

#define KIB UINT64_C(1024)
#define MIB (KIB * KIB)
#define GIB (KIB * MIB)

#define DV_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* vsnprintf into `err`; nothing if `err` is NULL or `err_len` 0. */
void dv_cfg_errf(char *err, size_t err_len, const char *fmt, ...)
	DV_PRINTF(3, 4);

/* A dv_cfg_list_kind_t parse for IP prefixes (dv_netmask_t). */
int dv_cfg_parse_netmask(const char *text, void *elem, char *why,
			 size_t why_len);
/* A policy list or group name: letters, digits, '-', '_'; 1..63. */
int dv_cfg_check_name(const char *text, char *why, size_t why_len);

/* Copy a NUL-terminated string into a fixed field; false if it does not fit. */
bool dv_cfg_copy_str(char *dst, size_t dst_len, const char *src);

/* ------------------------------------------------------------------ */
/* The schema's items                                                  */

typedef enum {
	DV_CFG_UINT,     /* unsigned */
	DV_CFG_SIZE,     /* uint64_t bytes, K/M/G suffixes */
	DV_CFG_STRING,   /* char[size] */
	DV_CFG_LOGLEVEL, /* dv_log_level_t */
	DV_CFG_ENUM,     /* unsigned: index into the item's names */
	DV_CFG_LIST,     /* elem[N] + unsigned count; items as its list kind
			    says */
} dv_cfg_type_t;

/*
 * What the items of a DV_CFG_LIST key are.  The list lives in dv_config_t
 * as an array, whose length is the most items the key takes, and an
 * unsigned count.  A value (a YAML list or scalar, or each repeated flag)
 * replaces the whole list, item by item; the first bad item is the error.
 */
typedef struct {
	const char *type_name; /* --help-config: "urls" */
	const char *one;       /* "a URL": "expected a URL, got a list" */
	const char *many;      /* "URLs": "too many URLs (at most 32)" */
	bool unique;           /* an item equal to one before it is dropped */
	/* a plain `null` is the word "null" (an item), not "no value":
	 * groups.NAME.action: null */
	bool null_is_word;
	/* Parse `text` into `elem`, a zeroed element of the array (equal
	 * items must come out byte for byte equal).  0, or DV_ECONFIG with
	 * the reason (not naming the key or the value) in `why`. */
	int (*parse)(const char *text, void *elem, char *why, size_t why_len);
} dv_cfg_list_kind_t;

/*
 * Where an item's field lives: dv_config_t itself, or one element of the
 * policy's tables (an entry of lists:, groups: or clients:), whose items
 * are set through dv_cfg_item_set() with the element as its base.
 */
typedef enum {
	DV_CFG_SUB_NONE,   /* dv_config_t */
	DV_CFG_SUB_LIST,   /* dv_cfg_list_t: lists.NAME.KEY */
	DV_CFG_SUB_GROUP,  /* dv_cfg_group_t: groups.NAME.KEY */
	DV_CFG_SUB_CLIENT, /* dv_cfg_client_t: clients[].KEY */
} dv_cfg_sub_t;

/* One key of the schema.  "STRING", "LIST" etc. below are DV_CFG_*. */
typedef struct {
	const char *section; /* NULL: top level */
	dv_cfg_sub_t sub;    /* the struct `offset` is in */
	const char *key;
	dv_cfg_type_t type;
	size_t offset; /* of the field in dv_config_t */
	size_t aux;    /* STRING: field size; LIST: offset of the count */
	size_t elem_size;        /* LIST: of one array element */
	const dv_cfg_list_kind_t *list; /* LIST */
	const char *const *names; /* ENUM: the values, NULL-terminated */
	uint64_t min, max;  /* UINT, SIZE; STRING: longest; LIST: most items
			       (the array's length) */
	const char *def;    /* parsed like a value from the file */
	const char *doc;
	/* STRING, optional: 0 if `text` is a good value, else DV_ECONFIG
	 * with the reason in `why` */
	int (*check)(const char *text, char *why, size_t why_len);
} dv_cfg_item_t;

/*
 * The most entries the schema may have.  The loader keeps a flag per entry
 * in arrays of this length, so it must be a compile-time bound; config.c
 * asserts beside the table that the table fits.
 */
#define DV_CFG_SCHEMA_MAX 128

/* Every key, in --help-config order (config.c). */
extern const dv_cfg_item_t dv_cfg_schema[];

/* The keys of the policy's table entries (schema_policy.c), ended by an
 * entry with a NULL key; printed by --help-config after the rest. */
extern const dv_cfg_item_t dv_cfg_policy_schema[];

/* The key `key` of a `sub` table entry, or NULL. */
const dv_cfg_item_t *dv_cfg_sub_find(dv_cfg_sub_t sub, const char *key);

/* Fill a new `sub` table entry `elem` (zeroed) with its keys' defaults. */
void dv_cfg_sub_defaults(dv_cfg_sub_t sub, void *elem);

/* Checks across the policy's keys once the file is read: every list a
 * group names and every group a client names exists (their masks and
 * indices are filled in); a group "default" exists (added when the file
 * has none but has other policy keys).  0 or DV_ECONFIG with
 * "FILE: KEY: reason" in `err`. */
int dv_cfg_policy_resolve(dv_config_t *cfg, char *err, size_t err_len);

/*
 * Parse one line of groups.NAME.records (zone-file syntax: an absolute
 * owner, optional TTL and class IN, a type records.c serves, its data)
 * and append it to cfg->records for group `group`, found at `line`.
 * 0, or DV_ECONFIG / -ENOMEM with the reason (quoting the line, not
 * naming the key) in `why`.
 */
int dv_cfg_record_parse(dv_config_t *cfg, unsigned group, unsigned line,
			const char *text, char *why, size_t why_len);

/* The entry for `section`.`key` (section NULL: top level), or NULL. */
const dv_cfg_item_t *dv_cfg_find_in(const dv_cfg_item_t *items, size_t n,
				    const char *section, const char *key);
/* The entry for `section`.`key` (section NULL: top level), or NULL. */
const dv_cfg_item_t *dv_cfg_schema_find(const char *section,
					const char *key);

/* The schema's own copy of a section name (it outlives any YAML event),
 * or NULL if `name` is no section. */
const char *dv_cfg_find_section(const char *name);

/* "section.key" or "key", for messages. */
void dv_cfg_item_name(const dv_cfg_item_t *it, char *buf, size_t len);

/* The field of `cfg` that `it` fills (for a policy table key: `cfg` is
 * the table entry, cast). */
void *dv_cfg_item_ptr(const dv_cfg_item_t *it, dv_config_t *cfg);

/* Print one table of items for --help-config (schema.c). */
void dv_cfg_print_items(FILE *out, const dv_cfg_item_t *items, size_t n);

/*
 * Set one value from its text (a YAML scalar or a flag's argument).  For
 * DV_CFG_LIST, appends one item (or drops it as a duplicate); the caller
 * clears the list when it starts a new one.  Returns 0 or DV_ECONFIG with
 * the reason (not naming the key or the value) in `why`.
 */
int dv_cfg_item_set(const dv_cfg_item_t *it, dv_config_t *cfg,
		    const char *val, char *why, size_t why_len);

/* Empty a list (no-op for other types). */
void dv_cfg_item_clear(const dv_cfg_item_t *it, dv_config_t *cfg);

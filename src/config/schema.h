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

#define DV_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* vsnprintf into `err`; nothing if `err` is NULL or `err_len` 0. */
void dv_cfg_errf(char *err, size_t err_len, const char *fmt, ...)
	DV_PRINTF(3, 4);

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
	/* Parse `text` into `elem`, a zeroed element of the array (equal
	 * items must come out byte for byte equal).  0, or DV_ECONFIG with
	 * the reason (not naming the key or the value) in `why`. */
	int (*parse)(const char *text, void *elem, char *why, size_t why_len);
} dv_cfg_list_kind_t;

/* One key of the schema.  "STRING", "LIST" etc. below are DV_CFG_*. */
typedef struct {
	const char *section; /* NULL: top level */
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

/* The entry for `section`.`key` (section NULL: top level), or NULL. */
const dv_cfg_item_t *dv_cfg_schema_find(const char *section,
					const char *key);

/* The schema's own copy of a section name (it outlives any YAML event),
 * or NULL if `name` is no section. */
const char *dv_cfg_find_section(const char *name);

/* "section.key" or "key", for messages. */
void dv_cfg_item_name(const dv_cfg_item_t *it, char *buf, size_t len);

/* The field of `cfg` that `it` fills. */
void *dv_cfg_item_ptr(const dv_cfg_item_t *it, dv_config_t *cfg);

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

#pragma once
/*
 * Local records (split horizon): every group's `records:` as one table,
 * looked up by (group, name) and answered authoritatively (README
 * "Policy", "Local records").
 *
 * Design note.  One open-addressing table of nodes keyed by the group
 * and the owner's text (as dv_suffix_query_name() writes a query name),
 * hashed from the last character to the first so that one pass over a
 * query name gives the hash of each of its suffixes.  A node is a name
 * with records, or an empty non-terminal (an ancestor of one, RFC 4592
 * 2.2.2), and knows its wildcard child ("*.NAME").  A name without a node
 * of its own is answered from the wildcard child of its closest encloser
 * (the longest suffix that has a node), when that has one.  Records of a
 * node are contiguous, in config order; RDATA is kept in wire form,
 * uncompressed.  Built once at start by the main thread, then read by
 * every worker; a lookup and its answer allocate nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/query.h"

typedef struct dv_records dv_records_t;

#define DV_RECORDS_MAX_CHASE 8 /* CNAMEs followed within local data */

/* The table of cfg->records, hashes keyed by `seed`.  NULL: out of memory
 * (an empty table when there are no records). */
dv_records_t *dv_records_new(const dv_config_t *cfg, uint64_t seed);
/* The same for `n` records whose RDATA is in `data` (`data_len` bytes,
 * at each record's rdata_off): RPZ local data (rpz.h) uses it. */
dv_records_t *dv_records_build(const dv_cfg_record_t *records, unsigned n,
			       const uint8_t *data, uint32_t data_len,
			       uint64_t seed);
void dv_records_free(dv_records_t *t);

/* Whether group `group` has any records (cheap: one mask test). */
bool dv_records_group_has(const dv_records_t *t, unsigned group);

/* What a lookup found: node -1 when the name has no local answer (no
 * node, an empty non-terminal, or a closest encloser without a wildcard
 * child). */
typedef struct {
	int node;
	bool wildcard; /* answered from "*.CLOSEST-ENCLOSER" */
} dv_records_hit_t;

/* Look up `name` (`len` bytes of text as dv_suffix_query_name() writes
 * it) for `group`. */
dv_records_hit_t dv_records_lookup(const dv_records_t *t, unsigned group,
				   const char *name, size_t len);

/*
 * The authoritative answer (AA) to `q` from node `hit` of `group`: the
 * records of the question's type; else the name's CNAME, followed
 * through the group's local data (at most DV_RECORDS_MAX_CHASE); else
 * NODATA with a SOA owned by the name (TTL and MINIMUM: the smallest TTL
 * of its records).  A CNAME whose target has no local records is
 * answered alone: the client asks for the target again.  Written through
 * dv_wire_answer() (id, RD, CD, OPT, padding, TC as for any answer),
 * `tmp` (`tmp_cap` bytes) the plain answer on the way.  Returns the
 * length in `buf`, or DV_ESPACE.
 */
int dv_records_answer(const dv_records_t *t, unsigned group,
		      dv_records_hit_t hit, const dv_query_t *q, uint8_t *buf,
		      size_t cap, uint8_t *tmp, size_t tmp_cap,
		      unsigned pad_block);

/* The owner of `r` as text (dv_suffix_query_name()'s, `out` as large),
 * a wildcard's first label "*"; the length, or -1. */
int dv_records_owner_text(const dv_cfg_record_t *r, char *out);

/* Nodes (names with records and empty non-terminals), records, bytes. */
size_t dv_records_nodes(const dv_records_t *t);
size_t dv_records_count(const dv_records_t *t);

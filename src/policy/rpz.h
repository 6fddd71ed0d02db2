#pragma once
/*
 * Response policy zones (format: rpz): a zone file whose QNAME triggers
 * say what a name gets.  A trigger is an owner name below the zone's apex
 * (the SOA's owner): "ads.example.com.rpz.example." triggers on
 * ads.example.com exactly, "*.ads.example.com.rpz.example." on every name
 * below it (not on itself).  Actions:
 *
 *   CNAME .               NXDOMAIN
 *   CNAME *.              NODATA
 *   CNAME rpz-passthru.   let the name through (an allow rule)
 *   A / AAAA records      local data: these addresses for A / AAAA, and
 *                         NODATA for other types
 *   CNAME NAME., TXT, MX, local data of every type local records have
 *   SRV, PTR, HTTPS, SVCB (records.h): answered as local records are --
 *                         the records of the question's type, else the
 *                         CNAME (a rewrite), followed when its target is
 *                         the zone's own local data, else NODATA
 *
 * Other triggers (rpz-ip, rpz-nsdname, rpz-nsip, rpz-client-ip), other
 * actions (rpz-drop., rpz-tcp-only., a CNAME to a wildcard) and local
 * data of other types (NS, DNAME, CAA, ...) are counted as skipped; a
 * record that does not parse, lies outside the apex or comes before the
 * SOA is counted as bad.
 * An exact trigger wins over a wildcard, and a more specific wildcard over
 * a less specific one.
 *
 * Design note.  The triggers sit in a suffix set of their own (list bit 0:
 * an exact trigger, bit 1: a wildcard), and the actions in an array by the
 * set's entry index, two per name.  Local data beyond addresses is one
 * table of local records (records.h, group 0) owned by the trigger names,
 * built at the end of the parse; a wildcard trigger's records are owned
 * by "*.NAME" and synthesized for the name asked, as records.c does.  A lookup is one probe for the exact
 * name and one suffix walk for the wildcards, allocation-free.  Parsing
 * uses ldns (ldns_rr_new_frm_fp_l), one record at a time, so a bad record
 * costs that record only.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/config/config.h"
#include "src/policy/lists.h"
#include "src/policy/records.h"

typedef struct dv_rpz dv_rpz_t;

typedef enum {
	DV_RPZ_NONE,
	DV_RPZ_NXDOMAIN,
	DV_RPZ_NODATA,
	DV_RPZ_PASSTHRU,
	DV_RPZ_DATA,
} dv_rpz_kind_t;

/* What a trigger does; the addresses of DV_RPZ_DATA are in the zone's
 * arrays (dv_rpz_addrs). */
typedef struct {
	uint8_t kind; /* dv_rpz_kind_t */
	uint8_t n_v4, n_v6;
	uint8_t local; /* DATA with records beyond addresses: dv_rpz_local */
	uint32_t ttl;
	uint32_t v4, v6; /* index of the first address */
} dv_rpz_action_t;

/* An empty zone keyed by `seed`.  NULL: out of memory. */
dv_rpz_t *dv_rpz_new(uint64_t seed);
void dv_rpz_free(dv_rpz_t *z);

/*
 * Parse the zone file `f` into `z`, counting in `st` (rules: triggers
 * added).  Returns 0, -ENOMEM, or -EIO when `f` cannot be read.
 */
int dv_rpz_parse(dv_rpz_t *z, FILE *f, dv_list_stats_t *st);
/* The same for the file `path`: -errno when it cannot be opened. */
int dv_rpz_parse_file(dv_rpz_t *z, const char *path, dv_list_stats_t *st);

/*
 * The action for `name` (text as dv_suffix_query_name() writes it, `len`
 * bytes), or NULL; *off: where the trigger's name starts in `name` (the
 * name itself for an exact trigger, the wildcard's base otherwise).
 */
const dv_rpz_action_t *dv_rpz_lookup(const dv_rpz_t *z, const char *name,
				     size_t len, unsigned *off);

/* The addresses of `a`: 4-byte IPv4 ones and 16-byte IPv6 ones. */
void dv_rpz_addrs(const dv_rpz_t *z, const dv_rpz_action_t *a,
		  const uint8_t **v4, const uint8_t **v6);

/* The zone's local data as local records of group 0 (NULL: none), for
 * the DV_RPZ_DATA actions with `local` set. */
const dv_records_t *dv_rpz_local(const dv_rpz_t *z);

/* Triggers held. */
size_t dv_rpz_count(const dv_rpz_t *z);

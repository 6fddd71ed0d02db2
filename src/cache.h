#pragma once
/*
 * The answer cache, shared by all workers.  Sharded: a key hashes (with a
 * per-process random seed) to one shard, each shard has its own lock, hash
 * table, LRU list and byte budget (size / shards).  A hit copies the stored
 * answer straight into the caller's buffer while holding only that shard's
 * lock and never allocates.  No I/O; time comes from the caller.
 *
 * What is stored: NOERROR and NXDOMAIN answers without TC, with the OPT
 * record cut out (each client gets its own OPT when served), every TTL
 * clamped to [min_ttl, max_ttl] (negative answers: the SOA TTL and the
 * lifetime are min(SOA TTL, SOA MINIMUM, negative_max_ttl), RFC 2308).  The
 * entry's lifetime is the smallest TTL; served TTLs count down with age.
 * Negative answers without a SOA are not cached.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/wire.h"

typedef struct dv_cache dv_cache_t;

typedef struct {
	uint64_t size_bytes;  /* total budget, keys + answers + overhead */
	unsigned shards;      /* rounded up to a power of two, >= 1 */
	uint32_t min_ttl;
	uint32_t max_ttl;
	uint32_t negative_max_ttl;
} dv_cache_opts_t;

typedef struct {
	uint64_t hits, misses, expired, stores, evictions, entries, bytes;
} dv_cache_stats_t;

/* Returns NULL on allocation failure. */
dv_cache_t *dv_cache_new(const dv_cache_opts_t *opts);
void dv_cache_free(dv_cache_t *c); /* NULL is a no-op */

/*
 * Store `wire` (an upstream response for the question in `key`, already
 * parsed into `r`) at time `now_s` (monotonic seconds).  Replaces an entry
 * with the same key.  Evicts least-recently-used entries of the shard to
 * make room.  Returns 0; DV_ELIMIT when the answer is not cacheable (rcode,
 * TC, zero TTL, too many records, larger than a shard); -ENOMEM.
 */
int dv_cache_store(dv_cache_t *c, const uint8_t *key, size_t key_len,
		   const uint8_t *wire, size_t len, const dv_wire_resp_t *r,
		   uint32_t now_s);

/*
 * Look up `key` at time `now_s`.  On a hit, writes the client's answer into
 * `dst` with dv_wire_answer() (client id and question case, TTLs lowered by
 * the entry's age, the client's OPT, truncation to `limit`, padding to
 * `pad_block`) and returns its length.  Returns DV_ENOTFOUND on a miss or
 * an expired entry (which is removed), DV_ESPACE if `cap` is too small.
 */
int dv_cache_lookup(dv_cache_t *c, const uint8_t *key, size_t key_len,
		    uint32_t now_s, uint8_t *dst, size_t cap,
		    const uint8_t *q_wire, const dv_wire_query_t *q,
		    size_t limit, unsigned pad_block);

/* Sum of all shards' counters (takes each shard lock briefly). */
void dv_cache_stats(dv_cache_t *c, dv_cache_stats_t *out);

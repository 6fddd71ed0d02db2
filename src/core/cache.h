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
 *
 * Resilience (RFC 8767 serve-stale, SERVFAIL caching, prefetch): the
 * policy comes with each call (dv_cache_policy_t), the cache keeps none.
 * An expired answer stays (until evicted) while it is inside the caller's
 * stale window and can be served with dv_cache_lookup_stale(); a failed
 * key is remembered for a few seconds with dv_cache_store_servfail(); a
 * popular entry near its end is handed out once for a refresh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/wire.h"

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

/* Per-call policy for dv_cache_lookup_ex(); all zero: no serve-stale
 * window (expired entries are removed) and no prefetch. */
typedef struct {
	uint32_t stale_max_age;       /* s past expiry an answer is kept */
	uint32_t prefetch_hits;       /* hits before a prefetch; 0 = never */
	uint32_t prefetch_window_pct; /* last pct of the lifetime, >= 1 s */
} dv_cache_policy_t;

/* TTL of every record in a stale answer (RFC 8767 4). */
#define DV_CACHE_STALE_TTL 30

/* What a lookup served (`*out_flags`). */
enum {
	DV_CACHE_PREFETCH = 1u << 0, /* fresh hit; caller should refresh it */
	DV_CACHE_STALE = 1u << 1,    /* served an expired answer, EDE 3 */
	DV_CACHE_SERVFAIL = 1u << 2, /* served a remembered SERVFAIL */
	DV_CACHE_HAS_STALE = 1u << 3, /* miss, but a stale answer is kept */
};

/* Returns NULL on allocation failure. */
dv_cache_t *dv_cache_new(const dv_cache_opts_t *opts);
void dv_cache_free(dv_cache_t *c); /* NULL is a no-op */
/* New TTL caps (as in dv_cache_opts_t) for the answers stored from now on;
 * what is stored keeps its lifetime.  Any thread (a configuration reload):
 * the workers read the caps with relaxed loads, no lock. */
void dv_cache_set_ttl_caps(dv_cache_t *c, uint32_t min_ttl, uint32_t max_ttl,
			   uint32_t negative_max_ttl);

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
 * Clamp the TTLs of `msg` (`len` bytes), an answer built for a client from
 * an upstream response (dv_wire_answer()), in place the way
 * dv_cache_store() clamps what it keeps: so the answer a client gets on a
 * miss tells it what later hits will (and the DoH max-age agrees on
 * both).  Only NOERROR and NXDOMAIN answers are touched.  Returns 0 with
 * the answer's smallest TTL after clamping in `*out_ttl` (may be NULL; 0
 * when it has no record), DV_ELIMIT (other rcode or opcode, or more
 * records than DV_WIRE_MAX_TTLS: left as they are), DV_EMALFORMED,
 * -EINVAL.
 */
int dv_cache_clamp_answer(const dv_cache_t *c, uint8_t *msg, size_t len,
			  uint32_t *out_ttl);

/*
 * Look up `key` at time `now_s`.  On a hit, writes the client's answer into
 * `dst` with dv_wire_answer() (client id and question case, TTLs lowered by
 * the entry's age, the client's OPT, truncation to `limit`, padding to
 * `pad_block`) and returns its length.  Returns DV_ENOTFOUND on a miss or
 * an expired entry (which is removed), DV_ESPACE if `cap` is too small.
 * A remembered SERVFAIL (dv_cache_store_servfail) is served as one.
 */
int dv_cache_lookup(dv_cache_t *c, const uint8_t *key, size_t key_len,
		    uint32_t now_s, uint8_t *dst, size_t cap,
		    const uint8_t *q_wire, const dv_wire_query_t *q,
		    size_t limit, unsigned pad_block);

/*
 * dv_cache_lookup() with a policy (NULL = all zero), `*out_flags` (may be
 * NULL) saying what was served and `*out_ttl` (may be NULL) the smallest
 * TTL of the answer written (what DoH gives as max-age: the entry's
 * lifetime less its age; stale: DV_CACHE_STALE_TTL, or a negative
 * answer's lifetime when shorter; 0 for a SERVFAIL, a truncated answer
 * or no answer):
 *  - a fresh entry as above; DV_CACHE_PREFETCH when it has had at least
 *    prefetch_hits hits and is in the last prefetch_window_pct of its
 *    lifetime (at least its last second, never in its first): it is
 *    marked, so each stored answer is handed out for prefetch once;
 *  - while a SERVFAIL stored with dv_cache_store_servfail() is remembered:
 *    the stale answer when one is inside the window (DV_CACHE_STALE),
 *    else a SERVFAIL with the stored EDE (DV_CACHE_SERVFAIL);
 *  - otherwise an expired entry is a miss, kept while inside the stale
 *    window (DV_CACHE_HAS_STALE: dv_cache_lookup_stale() can serve it)
 *    and removed after.
 * Returns the length, DV_ENOTFOUND, DV_ESPACE, -EINVAL.
 */
int dv_cache_lookup_ex(dv_cache_t *c, const uint8_t *key, size_t key_len,
		       uint32_t now_s, const dv_cache_policy_t *pol,
		       uint8_t *dst, size_t cap, const uint8_t *q_wire,
		       const dv_wire_query_t *q, size_t limit,
		       unsigned pad_block, unsigned *out_flags,
		       uint32_t *out_ttl);

/*
 * Serve-stale (RFC 8767): the answer for `key` if it expired less than
 * `stale_max_age` seconds ago, with every TTL DV_CACHE_STALE_TTL and EDE 3
 * "stale answer" (when the client sent EDNS); `*out_flags` (may be NULL)
 * gets DV_CACHE_STALE, `*out_ttl` (may be NULL) as dv_cache_lookup_ex()
 * gives it.  An entry that is fresh again (refreshed by another worker)
 * is served as by dv_cache_lookup() with no flag.  Does not remove
 * anything.  Returns the length, DV_ENOTFOUND, DV_ESPACE, -EINVAL.
 */
int dv_cache_lookup_stale(dv_cache_t *c, const uint8_t *key, size_t key_len,
			  uint32_t now_s, uint32_t stale_max_age,
			  uint8_t *dst, size_t cap, const uint8_t *q_wire,
			  const dv_wire_query_t *q, size_t limit,
			  unsigned pad_block, unsigned *out_flags,
			  uint32_t *out_ttl);

/*
 * Remember that the upstreams failed for `key` (SERVFAIL or no answer) for
 * `ttl_s` seconds from `now_s`, reporting EDE `ede` (0xffff: none).  An
 * entry already there (a stale answer) keeps its answer and gets the mark;
 * otherwise a small answerless entry is added.  The next dv_cache_store()
 * for the key clears it.  Returns 0, DV_ELIMIT (ttl 0), -ENOMEM, -EINVAL.
 */
int dv_cache_store_servfail(dv_cache_t *c, const uint8_t *key,
			    size_t key_len, uint16_t ede, uint32_t ttl_s,
			    uint32_t now_s);

/* Sum of all shards' counters (takes each shard lock briefly). */
void dv_cache_stats(dv_cache_t *c, dv_cache_stats_t *out);

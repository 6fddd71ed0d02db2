#pragma once
/*
 * Query-rate limits: token buckets (README "Policy", rate-limit-qps) kept
 * in a fixed-size table that one worker owns.
 *
 * Design note.  Each worker has its own table and gives every bucket the
 * group's full rate and burst: no lock and no shared cache line on the hot
 * path.  A client whose queries all reach one worker (a TCP, TLS or QUIC
 * connection is one worker's) is held to exactly its limit; one whose UDP
 * datagrams the kernel spreads over N workers (SO_REUSEPORT hashes the
 * source port too) can get up to N times the rate and the burst, never
 * less than one worker's.  Splitting the rate (qps / N per worker) would
 * bound it from above instead, but then hold a single connection to 1/N
 * of its limit; a limit meant never to hurt real clients errs the other
 * way.
 *
 * The table is set-associative: a key's 64-bit hash picks a set of
 * DV_RATELIMIT_WAYS buckets; a key not in its set takes a free bucket or
 * the one used least recently (LRU within the set).  An evicted client
 * comes back with a full bucket, so the table's size bounds the memory and
 * how many throttled clients are remembered at once, never correctness of
 * an unthrottled one.  Keys are compared by their hash alone (seeded per
 * process): two clients share a bucket only on a 64-bit collision.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_RATELIMIT_WAYS 8
#define DV_RATELIMIT_MAX_QPS 1000000

typedef struct dv_ratelimit dv_ratelimit_t;

/* A table of at least `entries` buckets (rounded up to a power of two,
 * at least one set).  NULL: out of memory. */
dv_ratelimit_t *dv_ratelimit_new(unsigned entries);
void dv_ratelimit_free(dv_ratelimit_t *rl);

/*
 * Take one query from the bucket of the key hashed to `hash`, refilled at
 * `qps` tokens a second up to `burst` (both 1..DV_RATELIMIT_MAX_QPS), at
 * time `now_ms` (the core's clock; never going back).  A key seen first
 * starts with a full bucket.  Returns true when the query is within the
 * limit.  Allocates nothing.
 */
bool dv_ratelimit_take(dv_ratelimit_t *rl, uint64_t hash, uint32_t qps,
		       uint32_t burst, uint64_t now_ms);

/* Buckets in the table, and how many a new key took from another. */
unsigned dv_ratelimit_size(const dv_ratelimit_t *rl);
uint64_t dv_ratelimit_evictions(const dv_ratelimit_t *rl);

/*
 * Token buckets in a set-associative table (ratelimit.h).  Tokens are
 * counted in thousandths, so a rate of `qps` adds exactly `qps` of them
 * per millisecond and no rounding is lost between queries.
 */
#include <stdlib.h>

#include "src/policy/ratelimit.h"

#define MILLI 1000u

typedef struct {
	uint64_t tag; /* the key's hash | 1; 0: free */
	uint64_t last_ms; /* last refill, and the LRU order */
	uint64_t tokens; /* thousandths of a query */
} bucket_t;

struct dv_ratelimit {
	uint64_t evictions;
	unsigned set_mask; /* sets - 1 */
	bucket_t b[];
};

dv_ratelimit_t *dv_ratelimit_new(unsigned entries)
{
	unsigned sets = 1;
	while (sets * DV_RATELIMIT_WAYS < entries && sets < (1u << 24))
		sets <<= 1;
	dv_ratelimit_t *rl =
		calloc(1, sizeof(*rl) + (size_t)sets * DV_RATELIMIT_WAYS *
						sizeof(bucket_t));
	if (!rl)
		return NULL;
	rl->set_mask = sets - 1;
	return rl;
}

void dv_ratelimit_free(dv_ratelimit_t *rl)
{
	free(rl);
}

bool dv_ratelimit_take(dv_ratelimit_t *rl, uint64_t hash, uint32_t qps,
		       uint32_t burst, uint64_t now_ms)
{
	uint64_t tag = hash | 1, full = (uint64_t)burst * MILLI;
	/* the set from the high bits: the tag's low bit is forced */
	bucket_t *set = &rl->b[(size_t)((hash >> 32) & rl->set_mask) *
			       DV_RATELIMIT_WAYS];
	bucket_t *b = NULL, *victim = &set[0];
	for (unsigned i = 0; i < DV_RATELIMIT_WAYS; i++) {
		if (set[i].tag == tag) {
			b = &set[i];
			break;
		}
		if (set[i].tag == 0 ||
		    (victim->tag != 0 && set[i].last_ms < victim->last_ms))
			victim = &set[i];
	}
	if (!b) {
		if (victim->tag != 0)
			rl->evictions++;
		b = victim;
		b->tag = tag;
		b->tokens = full;
	} else if (now_ms > b->last_ms) {
		/* elapsed is capped where the bucket is full anyway, so the
		 * product cannot overflow */
		uint64_t dt = now_ms - b->last_ms;
		uint64_t add = dt >= full ? full : dt * qps;
		b->tokens = b->tokens + add > full ? full : b->tokens + add;
	}
	b->last_ms = now_ms;
	if (b->tokens < MILLI)
		return false;
	b->tokens -= MILLI;
	return true;
}

unsigned dv_ratelimit_size(const dv_ratelimit_t *rl)
{
	return (rl->set_mask + 1) * DV_RATELIMIT_WAYS;
}

uint64_t dv_ratelimit_evictions(const dv_ratelimit_t *rl)
{
	return rl->evictions;
}

/*
 * Upstream server health: latency estimator and state machine (see
 * health.h).  No I/O, no clock: callers pass latencies.
 */
#include "src/core/health.h"

#include <string.h>

static const char *const state_names[] = {
#define DV_HEALTH_NAME(e, s) [e] = s,
	DV_HEALTH_STATES(DV_HEALTH_NAME)
#undef DV_HEALTH_NAME
};

const char *dv_health_state_name(dv_health_state_t s)
{
	if ((unsigned)s >= DV_HEALTH_STATE_COUNT)
		return "?";
	return state_names[s];
}

void dv_health_init(dv_health_t *h)
{
	memset(h, 0, sizeof(*h));
	h->state = DV_HEALTH_UP;
}

#define P95_TOP_MAX 9 /* n - ceil(0.95 n) + 1 for n <= 160 */

uint32_t dv_health_p95(const uint32_t *v, unsigned n)
{
	if (n == 0)
		return 0;
	/* keep the k largest values (descending); the answer is the k-th.
	 * k is small: a linear pass with an insertion into k slots beats a
	 * sort of the whole ring */
	unsigned rank = (95 * n + 99) / 100; /* ceil(0.95 n), 1-based */
	unsigned k = n - rank + 1;
	uint32_t top[P95_TOP_MAX];
	unsigned have = 0;
	if (k > P95_TOP_MAX)
		k = P95_TOP_MAX;
	for (unsigned i = 0; i < n; i++) {
		uint32_t x = v[i];
		if (have == k && x <= top[k - 1])
			continue;
		unsigned j = have < k ? have++ : k - 1;
		while (j > 0 && top[j - 1] < x) {
			top[j] = top[j - 1];
			j--;
		}
		top[j] = x;
	}
	return top[k - 1];
}

static unsigned popcount16(uint16_t x)
{
	return (unsigned)__builtin_popcount(x);
}

/* UP or DEGRADED from the window and the latency; DOWN is left alone. */
static dv_health_state_t recompute(dv_health_t *h,
				   const dv_health_conf_t *conf)
{
	h->slow = conf->slow_p95_ms && h->n >= DV_HEALTH_MIN_SAMPLES &&
		  h->p95_ms > conf->slow_p95_ms;
	if (h->state == DV_HEALTH_DOWN)
		return h->state;
	bool flaky = conf->degraded_failures &&
		     popcount16(h->window) >= conf->degraded_failures;
	h->state = (flaky || h->slow) ? DV_HEALTH_DEGRADED : DV_HEALTH_UP;
	return h->state;
}

dv_health_state_t dv_health_answer(dv_health_t *h, uint32_t latency_ms,
				   const dv_health_conf_t *conf)
{
	uint64_t us = (uint64_t)latency_ms * 1000;
	if (h->ewma_us == 0) {
		h->ewma_us = us ? us : 1; /* 0 means "no sample yet" */
	} else {
		int64_t d = ((int64_t)us - (int64_t)h->ewma_us) / 8;
		h->ewma_us = (uint64_t)((int64_t)h->ewma_us + d);
		if (h->ewma_us == 0)
			h->ewma_us = 1;
	}
	h->ring[h->head] = latency_ms;
	h->head = (h->head + 1) % DV_HEALTH_SAMPLES;
	if (h->n < DV_HEALTH_SAMPLES)
		h->n++;
	h->p95_ms = dv_health_p95(h->ring, h->n);
	h->consecutive = 0;
	h->window = (uint16_t)(h->window << 1);
	return recompute(h, conf);
}

dv_health_state_t dv_health_failure(dv_health_t *h,
				    const dv_health_conf_t *conf)
{
	h->consecutive++;
	h->window = (uint16_t)((h->window << 1) | 1);
	if (conf->down_after && h->consecutive >= conf->down_after)
		h->state = DV_HEALTH_DOWN;
	return recompute(h, conf);
}

dv_health_state_t dv_health_down(dv_health_t *h)
{
	h->state = DV_HEALTH_DOWN;
	return h->state;
}

dv_health_state_t dv_health_up(dv_health_t *h, const dv_health_conf_t *conf)
{
	h->consecutive = 0;
	h->window = 0;
	h->state = DV_HEALTH_UP;
	return recompute(h, conf);
}

/* Ranking key: lower is better. */
static int better(const dv_health_t *a, unsigned ia, const dv_health_t *b,
		  unsigned ib)
{
	if (a->state != b->state)
		return a->state < b->state;
	if (a->ewma_us != b->ewma_us)
		return a->ewma_us < b->ewma_us;
	return ia < ib;
}

int dv_health_pick(const dv_health_t *const *h, unsigned n, uint32_t skip,
		   bool explore, unsigned rot)
{
	int best = -1;
	unsigned candidates = 0;
	if (n > 32)
		n = 32;
	for (unsigned i = 0; i < n; i++) {
		if ((skip >> i) & 1 || h[i]->state == DV_HEALTH_DOWN)
			continue;
		candidates++;
		if (best < 0 || better(h[i], i, h[best], (unsigned)best))
			best = (int)i;
	}
	if (!explore || candidates < 2)
		return best;
	unsigned want = rot % (candidates - 1);
	for (unsigned i = 0; i < n; i++) {
		if ((skip >> i) & 1 || h[i]->state == DV_HEALTH_DOWN ||
		    (int)i == best)
			continue;
		if (want-- == 0)
			return (int)i;
	}
	return best; /* not reached */
}

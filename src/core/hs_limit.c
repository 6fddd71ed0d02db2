/*
 * Handshake admission: pressure detection and per-address token buckets.
 * See hs_limit.h for the policy; this file is only the bookkeeping.
 *
 * Tokens are counted in thousandths of a full handshake, so a rate of r
 * handshakes per second refills r tokens per millisecond and the
 * arithmetic stays in integers.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/hs_limit.h"

#define TOKEN 1000u /* one full handshake */
#define REFUND (TOKEN - TOKEN / DV_HS_RESUMED_SHARE)
#define WAYS 8u

typedef struct {
	uint64_t key;    /* IPv4 address or IPv6 /64, in the low bits */
	uint64_t stamp;  /* ms of the last refill; also the LRU age */
	uint32_t tokens; /* thousandths of a full handshake */
	uint8_t family;  /* AF_INET, AF_INET6; 0 = free */
} slot_t;

struct dv_hs_limit {
	unsigned rate, burst, pressure;
	unsigned in_progress;
	uint64_t pressure_until; /* ms; the caps stay on until then */
	uint64_t seed;
	unsigned set_mask; /* number of sets - 1 */
	dv_stats_t *st;
	unsigned n_exempt;
	dv_netmask_t exempt[DV_HS_MAX_EXEMPT];
	slot_t *slots;
};

dv_hs_limit_t *dv_hs_limit_new(const dv_hs_limit_conf_t *conf, uint64_t seed,
			       dv_stats_t *st)
{
	unsigned want = conf->slots ? conf->slots : DV_HS_DEFAULT_SLOTS;
	unsigned n = WAYS;
	while (n < want && n < (1u << 24))
		n <<= 1;
	dv_hs_limit_t *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->slots = calloc(n, sizeof(*h->slots));
	if (!h->slots) {
		free(h);
		return NULL;
	}
	h->set_mask = n / WAYS - 1;
	h->seed = seed;
	h->st = st;
	dv_hs_limit_reconf(h, conf);
	return h;
}

void dv_hs_limit_reconf(dv_hs_limit_t *h, const dv_hs_limit_conf_t *conf)
{
	h->rate = conf->rate;
	h->burst = conf->burst ? conf->burst : 1;
	if (h->burst > UINT32_MAX / TOKEN)
		h->burst = UINT32_MAX / TOKEN;
	h->pressure = conf->pressure;
	h->n_exempt = conf->n_exempt < DV_HS_MAX_EXEMPT ? conf->n_exempt :
							  DV_HS_MAX_EXEMPT;
	if (h->n_exempt)
		memcpy(h->exempt, conf->exempt,
		       h->n_exempt * sizeof(h->exempt[0]));
}

void dv_hs_limit_free(dv_hs_limit_t *h)
{
	if (!h)
		return;
	free(h->slots);
	free(h);
}

/* The bucket key of an address: IPv4 /32 or IPv6 /64.  False for anything
 * else (such a peer is never charged). */
static bool addr_key(const struct sockaddr *sa, uint64_t *key,
		     uint8_t *family)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		const uint8_t *p = (const uint8_t *)&s4->sin_addr;
		*key = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 |
		       (uint64_t)p[2] << 8 | p[3];
		*family = AF_INET;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		const uint8_t *p = s6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			*key = (uint64_t)p[12] << 24 | (uint64_t)p[13] << 16 |
			       (uint64_t)p[14] << 8 | p[15];
			*family = AF_INET;
			return true;
		}
		uint64_t k = 0;
		for (int i = 0; i < 8; i++)
			k = k << 8 | p[i];
		*key = k;
		*family = AF_INET6;
		return true;
	}
	return false;
}

static unsigned set_of(const dv_hs_limit_t *h, uint64_t key, uint8_t family)
{
	/* splitmix64's finalizer over the seeded key */
	uint64_t x = key ^ h->seed ^ ((uint64_t)family << 56);
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (unsigned)x & h->set_mask;
}

static slot_t *slot_find(const dv_hs_limit_t *h, uint64_t key,
			 uint8_t family)
{
	slot_t *set = &h->slots[(size_t)set_of(h, key, family) * WAYS];
	for (unsigned i = 0; i < WAYS; i++)
		if (set[i].family == family && set[i].key == key)
			return &set[i];
	return NULL;
}

/* The address's bucket, made (full) when it has none: it takes a free
 * entry of its set or the one charged longest ago. */
static slot_t *slot_get(dv_hs_limit_t *h, uint64_t key, uint8_t family,
			uint64_t now)
{
	slot_t *set = &h->slots[(size_t)set_of(h, key, family) * WAYS];
	slot_t *victim = &set[0];
	for (unsigned i = 0; i < WAYS; i++) {
		slot_t *s = &set[i];
		if (s->family == family && s->key == key)
			return s;
		if (victim->family && (!s->family || s->stamp < victim->stamp))
			victim = s;
	}
	victim->key = key;
	victim->family = family;
	victim->stamp = now;
	victim->tokens = h->burst * TOKEN;
	return victim;
}

static void refill(const dv_hs_limit_t *h, slot_t *s, uint64_t now)
{
	uint64_t full = (uint64_t)h->burst * TOKEN;
	if (now <= s->stamp)
		return; /* a clock that stands still (or a caller's older now) */
	uint64_t t = s->tokens + (now - s->stamp) * h->rate;
	s->tokens = (uint32_t)(t < full ? t : full);
	s->stamp = now;
}

static bool exempt(const dv_hs_limit_t *h, const struct sockaddr *sa)
{
	return h->n_exempt && dv_netmask_match_any(h->exempt, h->n_exempt, sa);
}

bool dv_hs_limit_pressure(const dv_hs_limit_t *h, uint64_t now_ms)
{
	return h->pressure == 0 || h->in_progress >= h->pressure ||
	       now_ms < h->pressure_until;
}

/* Under pressure now?  Starts or extends the hold, counting each start. */
static bool pressure_update(dv_hs_limit_t *h, uint64_t now)
{
	if (h->pressure == 0)
		return true;
	if (h->in_progress >= h->pressure) {
		if (now >= h->pressure_until && h->st)
			DV_STAT_INC(h->st, hs_pressure);
		h->pressure_until = now + DV_HS_PRESSURE_HOLD_MS;
		return true;
	}
	return now < h->pressure_until;
}

int dv_hs_limit_admit(dv_hs_limit_t *h, const struct sockaddr *peer,
		      uint64_t now_ms)
{
	uint64_t key;
	uint8_t family;
	bool capped = pressure_update(h, now_ms);
	if (capped && h->rate && addr_key(peer, &key, &family) &&
	    !exempt(h, peer)) {
		slot_t *s = slot_get(h, key, family, now_ms);
		refill(h, s, now_ms);
		if (s->tokens < TOKEN) {
			/* still refusing someone: still under pressure (else a
			 * flood that is refused would let the hold run out,
			 * and come back in uncapped until it fills the
			 * worker again) */
			if (h->pressure)
				h->pressure_until = now_ms +
						    DV_HS_PRESSURE_HOLD_MS;
			return DV_ELIMIT;
		}
		s->tokens -= TOKEN;
	}
	h->in_progress++;
	return 0;
}

void dv_hs_limit_end(dv_hs_limit_t *h, const struct sockaddr *peer,
		     bool resumed, uint64_t now_ms)
{
	if (h->in_progress)
		h->in_progress--;
	if (!resumed || !h->rate)
		return;
	uint64_t key;
	uint8_t family;
	if (!addr_key(peer, &key, &family))
		return;
	/* only an address that has a bucket was charged (or may have been:
	 * one admitted before the pressure began gets a refund it did not
	 * pay for, which the bucket's depth bounds) */
	slot_t *s = slot_find(h, key, family);
	if (!s)
		return;
	refill(h, s, now_ms);
	uint64_t t = (uint64_t)s->tokens + REFUND;
	uint64_t full = (uint64_t)h->burst * TOKEN;
	s->tokens = (uint32_t)(t < full ? t : full);
}

unsigned dv_hs_limit_in_progress(const dv_hs_limit_t *h)
{
	return h->in_progress;
}

int64_t dv_hs_limit_tokens(const dv_hs_limit_t *h, const struct sockaddr *peer)
{
	uint64_t key;
	uint8_t family;
	if (!addr_key(peer, &key, &family))
		return -1;
	const slot_t *s = slot_find(h, key, family);
	return s ? (int64_t)s->tokens : -1;
}

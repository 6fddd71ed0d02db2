/*
 * The hash the policy's name tables share (suffix.c, records.c): FNV-1a
 * steps over a name's bytes from the last to the first, so that one pass
 * gives the hash of every suffix, each finished by fmix64 (MurmurHash3's
 * finalizer) before it picks a slot.
 */
#ifndef DV_POLICY_HASH_H
#define DV_POLICY_HASH_H

#include <stdint.h>

#define DV_HASH_STEP(h, c) (((h) ^ (uint8_t)(c)) * 0x100000001b3ULL)

static inline uint64_t dv_hash_fmix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

#endif

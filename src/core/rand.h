#pragma once
/*
 * A fast random generator for values an off-path attacker must not guess
 * (the DNS ids of upstream queries): ChaCha20 (RFC 8439) keystream in
 * Bernstein's fast-key-erasure construction.  Each refill runs the block
 * function under the current key, takes the first 32 bytes of the output as
 * the next key and hands out the rest, wiping each byte as it goes, so the
 * state never holds anything that would reveal earlier output.
 *
 * One generator per worker (no lock), seeded once from the kernel by its
 * owner (getrandom): the core does no I/O.  Glibc's arc4random (2.36) is a
 * getrandom system call per call, too slow for one per query.
 */
#include <stdbool.h>
#include <stdint.h>

#define DV_RAND_SEED 32
/* bytes made per refill: 8 ChaCha20 blocks, 32 of them the next key */
#define DV_RAND_BUF 512

typedef struct {
	uint8_t key[DV_RAND_SEED];
	uint8_t buf[DV_RAND_BUF];
	unsigned pos; /* next unused byte of buf */
	bool seeded;
} dv_rand_t;

/* Key `r` from `seed` (DV_RAND_SEED bytes from the kernel). */
void dv_rand_seed(dv_rand_t *r, const uint8_t *seed);
/* Random bits; `r` must be seeded (aborts otherwise: ids from an unseeded
 * generator would be predictable). */
uint32_t dv_rand_u32(dv_rand_t *r);
uint16_t dv_rand_u16(dv_rand_t *r);

/* The ChaCha20 block function of RFC 8439 (2.3): 64 bytes of keystream for
 * a 32-byte key, a block counter and a 12-byte nonce. */
void dv_chacha20_block(const uint8_t *key, uint32_t counter,
		       const uint8_t *nonce, uint8_t *out);

/*
 * ChaCha20 fast-key-erasure generator (rand.h).
 */
#include "src/core/rand.h"

#include <string.h>

#include "src/core/log.h"

static uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void store32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#define ROTL(v, n) ((v) << (n) | (v) >> (32 - (n)))
#define QR(a, b, c, d)                                                       \
	do {                                                                 \
		a += b;                                                      \
		d ^= a;                                                      \
		d = ROTL(d, 16);                                             \
		c += d;                                                      \
		b ^= c;                                                      \
		b = ROTL(b, 12);                                             \
		a += b;                                                      \
		d ^= a;                                                      \
		d = ROTL(d, 8);                                              \
		c += d;                                                      \
		b ^= c;                                                      \
		b = ROTL(b, 7);                                              \
	} while (0)

void dv_chacha20_block(const uint8_t *key, uint32_t counter,
		       const uint8_t *nonce, uint8_t *out)
{
	uint32_t in[16], x[16];
	in[0] = 0x61707865; /* "expand 32-byte k" */
	in[1] = 0x3320646e;
	in[2] = 0x79622d32;
	in[3] = 0x6b206574;
	for (int i = 0; i < 8; i++)
		in[4 + i] = load32(key + 4 * i);
	in[12] = counter;
	for (int i = 0; i < 3; i++)
		in[13 + i] = load32(nonce + 4 * i);
	memcpy(x, in, sizeof(x));
	for (int i = 0; i < 10; i++) {
		QR(x[0], x[4], x[8], x[12]);
		QR(x[1], x[5], x[9], x[13]);
		QR(x[2], x[6], x[10], x[14]);
		QR(x[3], x[7], x[11], x[15]);
		QR(x[0], x[5], x[10], x[15]);
		QR(x[1], x[6], x[11], x[12]);
		QR(x[2], x[7], x[8], x[13]);
		QR(x[3], x[4], x[9], x[14]);
	}
	for (int i = 0; i < 16; i++)
		store32(out + 4 * i, x[i] + in[i]);
}

/* New output under the current key; the first bytes become the next key
 * and are wiped from the buffer. */
static void refill(dv_rand_t *r)
{
	static const uint8_t nonce[12];
	for (unsigned b = 0; b < DV_RAND_BUF / 64; b++)
		dv_chacha20_block(r->key, b, nonce, r->buf + 64 * b);
	memcpy(r->key, r->buf, DV_RAND_SEED);
	memset(r->buf, 0, DV_RAND_SEED);
	r->pos = DV_RAND_SEED;
}

void dv_rand_seed(dv_rand_t *r, const uint8_t *seed)
{
	memcpy(r->key, seed, DV_RAND_SEED);
	r->seeded = true;
	refill(r);
}

static void take(dv_rand_t *r, uint8_t *out, unsigned n)
{
	dv_require(r->seeded);
	if (r->pos + n > DV_RAND_BUF)
		refill(r);
	memcpy(out, r->buf + r->pos, n);
	memset(r->buf + r->pos, 0, n);
	r->pos += n;
}

uint32_t dv_rand_u32(dv_rand_t *r)
{
	uint8_t b[4];
	take(r, b, sizeof(b));
	return load32(b);
}

uint16_t dv_rand_u16(dv_rand_t *r)
{
	uint8_t b[2];
	take(r, b, sizeof(b));
	return (uint16_t)(b[0] | b[1] << 8);
}

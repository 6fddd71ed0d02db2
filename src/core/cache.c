/*
 * The answer cache.  Design notes:
 *
 * - Shards.  The key's 64-bit hash picks a shard with its top bits and a
 *   bucket inside the shard with its low bits.  Each shard is a mutex, a
 *   chained hash table, an LRU list and a byte budget (size / shards), and
 *   sits on its own cache lines so that workers hitting different shards do
 *   not share lines.
 *
 * - Hash.  SipHash-1-3 with a 128-bit key from getrandom() per cache.  Keys
 *   are names clients choose, so an unkeyed (or weakly keyed) hash would let
 *   a client put every name in one chain.  Keyed multiply-xorshift hashes
 *   have seed-independent collisions; SipHash does not, and on the short
 *   keys here (a name plus 5 bytes) it costs a few tens of nanoseconds.
 *
 * - Entries.  One malloc per entry: the header, then the TTL offsets
 *   (uint16_t[n_ttl], the flexible array member so it stays aligned), the
 *   key bytes, then the stored answer.  The accounted size is the whole
 *   allocation.  The hash table (one pointer per bucket, load <= 1) is not
 *   counted: it is small beside the entries and would make `bytes` stop
 *   meaning "what the entries hold".
 *
 * - Stored answer.  The upstream's OPT is cut out (each client gets its own
 *   when served) and the copy is parsed again, so the offsets kept are
 *   those of the stored bytes, and TTLs are clamped in place.  The parsed
 *   response fields are kept beside the offsets so that a hit can hand
 *   dv_wire_answer() a complete dv_wire_resp_t without parsing again.
 *
 * - Hits never allocate.  The answer is written into the caller's buffer
 *   under the shard lock; entries that die (expired, evicted, replaced) are
 *   unlinked under the lock and freed after it is released.
 *
 * - Time.  now_s is monotonic seconds from the caller.  Workers read their
 *   clocks separately, so a lookup may come with a `now` slightly older than
 *   the store's: ages are computed as a signed 32-bit difference and a
 *   negative age counts as 0 (this also survives the 2^32 wrap).  TTLs are
 *   kept below 2^31 (RFC 2181 8) so the difference is always meaningful.
 */
#include "src/core/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "src/core/errors.h"

#define CACHE_LINE 64
#define MAX_SHARD_BITS 12              /* at most 4096 shards */
#define INITIAL_BUCKETS 64             /* per shard, power of two */
#define MAX_BUCKETS (1u << 24)         /* per shard */
#define TTL_MAX_VALID 0x7fffffffu      /* RFC 2181 8: larger means 0 */

/*
 * The parts of a dv_wire_resp_t other than ttl_off[]: everything before it
 * and everything after it.  Kept as bytes so that whatever the parser
 * fills in (now or later) is handed back to dv_wire_answer() unchanged.
 */
#define RESP_OFFS_AT offsetof(dv_wire_resp_t, ttl_off)
#define RESP_OFFS_END                                                        \
	(RESP_OFFS_AT + sizeof(((dv_wire_resp_t *)0)->ttl_off))
#define RESP_HEAD_LEN RESP_OFFS_AT
#define RESP_TAIL_LEN (sizeof(dv_wire_resp_t) - RESP_OFFS_END)

struct lru_node {
	struct lru_node *prev, *next;
};

enum {
	ENTRY_PREFETCHED = 1u << 0, /* a prefetch was handed out for it */
	ENTRY_SERVFAIL = 1u << 1,   /* the upstreams failed for this key */
};

struct entry {
	struct entry *hnext;           /* hash chain */
	struct lru_node lru;           /* most recent at the list head */
	uint64_t hash;
	uint32_t size;                 /* whole allocation, accounted */
	uint32_t stored_at;            /* now_s at store */
	uint32_t lifetime;             /* seconds, >= 1 */
	uint32_t used_at;              /* now_s of the last move to the head */
	uint16_t key_len;
	uint16_t len;                  /* stored answer length */
	uint16_t n_ttl;
	uint32_t hits;                 /* fresh hits since the store */
	uint32_t sf_until;             /* ENTRY_SERVFAIL: remembered until */
	uint16_t sf_ede;               /* ENTRY_SERVFAIL: EDE to report */
	uint8_t eflags;                /* ENTRY_* */
	uint8_t resp_head[RESP_HEAD_LEN];
	uint8_t resp_tail[RESP_TAIL_LEN];
	uint16_t ttl_off[];            /* then key, then answer */
};

static inline uint8_t *entry_key(struct entry *e)
{
	return (uint8_t *)(e->ttl_off + e->n_ttl);
}

static inline uint8_t *entry_data(struct entry *e)
{
	return entry_key(e) + e->key_len;
}

/*
 * Laid out by who writes what: every lookup writes the first line (lock
 * and its counter), reads the second, and only stores, expiries and LRU
 * moves write the third.  Counters are under the lock.
 */
struct shard {
	_Alignas(CACHE_LINE) pthread_mutex_t lock;
	uint64_t hits, misses;

	_Alignas(CACHE_LINE) struct entry **buckets;
	uint32_t n_buckets;            /* power of two */
	uint64_t budget;

	_Alignas(CACHE_LINE) struct lru_node lru; /* lru.next: most recent */
	uint64_t expired, stores, evictions, entries, bytes;
};

struct dv_cache {
	uint64_t sip_k0, sip_k1;
	unsigned shard_bits;
	unsigned n_shards;
	uint32_t min_ttl, max_ttl, negative_max_ttl;
	struct shard *shards;
};

/* ---- SipHash-1-3 (Aumasson & Bernstein), 64-bit output ---- */

static inline uint64_t rotl64(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#define SIPROUND                                                             \
	do {                                                                 \
		v0 += v1;                                                    \
		v1 = rotl64(v1, 13);                                         \
		v1 ^= v0;                                                    \
		v0 = rotl64(v0, 32);                                         \
		v2 += v3;                                                    \
		v3 = rotl64(v3, 16);                                         \
		v3 ^= v2;                                                    \
		v0 += v3;                                                    \
		v3 = rotl64(v3, 21);                                         \
		v3 ^= v0;                                                    \
		v2 += v1;                                                    \
		v1 = rotl64(v1, 17);                                         \
		v1 ^= v2;                                                    \
		v2 = rotl64(v2, 32);                                         \
	} while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *in,
			  size_t len)
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	const uint8_t *end = in + (len & ~(size_t)7);
	uint64_t m;

	for (; in != end; in += 8) {
		m = get_le64(in);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	m = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		m |= (uint64_t)in[i] << (8 * i);
	v3 ^= m;
	SIPROUND;
	v0 ^= m;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

#undef SIPROUND

/* ---- shard internals (all under the shard lock) ---- */

static inline struct shard *shard_of(dv_cache_t *c, uint64_t h)
{
	/* top bits; (h >> 32) >> 32 is 0 when there is a single shard */
	return &c->shards[(h >> 32) >> (32 - c->shard_bits)];
}

static inline uint32_t bucket_of(const struct shard *s, uint64_t h)
{
	return (uint32_t)h & (s->n_buckets - 1);
}

static inline struct entry *lru_entry(struct lru_node *n)
{
	return (struct entry *)(void *)((uint8_t *)n -
					offsetof(struct entry, lru));
}

static inline void lru_unlink(struct lru_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
}

static inline void lru_push_head(struct shard *s, struct lru_node *n)
{
	n->prev = &s->lru;
	n->next = s->lru.next;
	s->lru.next->prev = n;
	s->lru.next = n;
}

static struct entry **chain_find(struct shard *s, uint64_t h,
				 const uint8_t *key, size_t key_len)
{
	struct entry **pp = &s->buckets[bucket_of(s, h)];

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		struct entry *e = *pp;
		if (e->hash == h && e->key_len == key_len &&
		    memcmp(entry_key(e), key, key_len) == 0)
			return pp;
	}
	return pp;
}

/* Unlink `e` from the table and the LRU, found through its chain slot. */
static void shard_unlink(struct shard *s, struct entry **pp)
{
	struct entry *e = *pp;

	*pp = e->hnext;
	lru_unlink(&e->lru);
	s->entries--;
	s->bytes -= e->size;
}

/* Unlink `e` when the slot pointing to it is not at hand (LRU eviction). */
static void shard_unlink_entry(struct shard *s, struct entry *e)
{
	struct entry **pp = &s->buckets[bucket_of(s, e->hash)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	shard_unlink(s, pp);
}

/*
 * Double the table when the load passes 1.  Allocates under the lock, but
 * only on the store path; when it fails the table keeps its size and the
 * chains grow a little, which is not an error.
 */
static void shard_maybe_grow(struct shard *s)
{
	if (s->entries <= s->n_buckets || s->n_buckets >= MAX_BUCKETS)
		return;
	uint32_t n = s->n_buckets * 2;
	struct entry **nb = calloc(n, sizeof(*nb));
	if (nb == NULL)
		return;
	for (uint32_t i = 0; i < s->n_buckets; i++) {
		struct entry *e = s->buckets[i];
		while (e != NULL) {
			struct entry *next = e->hnext;
			uint32_t b = (uint32_t)e->hash & (n - 1);
			e->hnext = nb[b];
			nb[b] = e;
			e = next;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->n_buckets = n;
}

static void free_chain(struct entry *e)
{
	while (e != NULL) {
		struct entry *next = e->hnext;
		free(e);
		e = next;
	}
}

/* ---- lifecycle ---- */

static void seed_keys(dv_cache_t *c)
{
	uint64_t k[2];

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
		/*
		 * Only without getrandom() (kernels before 3.17): a seed
		 * that differs per process and per run, not secret.
		 */
		struct timespec ts[2];
		clock_gettime(CLOCK_REALTIME, &ts[0]);
		clock_gettime(CLOCK_MONOTONIC, &ts[1]);
		k[0] = siphash13((uint64_t)(uintptr_t)c, (uint64_t)getpid(),
				 (const uint8_t *)ts, sizeof(ts));
		k[1] = siphash13(k[0], (uint64_t)(uintptr_t)&k,
				 (const uint8_t *)ts, sizeof(ts));
	}
	c->sip_k0 = k[0];
	c->sip_k1 = k[1];
}

void dv_cache_set_ttl_caps(dv_cache_t *c, uint32_t min_ttl, uint32_t max_ttl,
			   uint32_t negative_max_ttl)
{
	uint32_t max = max_ttl < TTL_MAX_VALID ? max_ttl : TTL_MAX_VALID;
	/* an inverted range is a config error; the upper bound wins */
	uint32_t min = min_ttl < max ? min_ttl : max;
	__atomic_store_n(&c->max_ttl, max, __ATOMIC_RELAXED);
	__atomic_store_n(&c->min_ttl, min, __ATOMIC_RELAXED);
	__atomic_store_n(&c->negative_max_ttl, negative_max_ttl,
			 __ATOMIC_RELAXED);
}

dv_cache_t *dv_cache_new(const dv_cache_opts_t *opts)
{
	dv_cache_t *c;
	unsigned bits = 0, i;

	if (opts == NULL) {
		errno = EINVAL;
		return NULL;
	}
	while (bits < MAX_SHARD_BITS && (1u << bits) < opts->shards)
		bits++;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto fail_cache;
	c->shard_bits = bits;
	c->n_shards = 1u << bits;
	c->max_ttl = opts->max_ttl < TTL_MAX_VALID ? opts->max_ttl
						   : TTL_MAX_VALID;
	/* an inverted range is a config error; the upper bound wins */
	c->min_ttl = opts->min_ttl < c->max_ttl ? opts->min_ttl : c->max_ttl;
	c->negative_max_ttl = opts->negative_max_ttl;
	seed_keys(c);

	c->shards = aligned_alloc(CACHE_LINE,
				  c->n_shards * sizeof(struct shard));
	if (c->shards == NULL)
		goto fail_shards;
	memset(c->shards, 0, c->n_shards * sizeof(struct shard));

	for (i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];
		s->buckets = calloc(INITIAL_BUCKETS, sizeof(*s->buckets));
		if (s->buckets == NULL)
			goto fail_shard;
		if (pthread_mutex_init(&s->lock, NULL) != 0) {
			free(s->buckets);
			goto fail_shard;
		}
		s->n_buckets = INITIAL_BUCKETS;
		s->lru.next = s->lru.prev = &s->lru;
		s->budget = opts->size_bytes / c->n_shards;
	}
	return c;

fail_shard:
	while (i-- > 0) {
		pthread_mutex_destroy(&c->shards[i].lock);
		free(c->shards[i].buckets);
	}
	free(c->shards);
fail_shards:
	free(c);
fail_cache:
	errno = ENOMEM;
	return NULL;
}

void dv_cache_free(dv_cache_t *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];
		for (uint32_t b = 0; b < s->n_buckets; b++)
			free_chain(s->buckets[b]);
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c->shards);
	free(c);
}

/* ---- store ---- */

static inline uint32_t clamp_ttl(uint32_t t, uint32_t lo, uint32_t hi)
{
	if (t > TTL_MAX_VALID)
		t = 0;
	if (t < lo)
		t = lo;
	if (t > hi)
		t = hi;
	return t;
}

/*
 * Clamp every TTL of the message `data` (parsed into `r`, all of its TTLs
 * in r->ttl_off) in place the way the cache keeps it, and return the
 * smallest: the answer's lifetime (UINT32_MAX when it has no record).
 * Positive answers: each TTL to [min_ttl, max_ttl].  Negative answers
 * (RFC 2308 5) live min(SOA TTL, SOA MINIMUM), which the parser gives as
 * neg_ttl, capped by negative_max_ttl and no longer than any record in it
 * (a CNAME before an NXDOMAIN); min_ttl does not raise that
 * (negative_max_ttl is the knob for negatives), and every TTL, the SOA's
 * in particular, is lowered to it so that no client is told to keep any
 * part of the answer longer than the cache does.
 */
static uint32_t clamp_ttls(const dv_cache_t *c, uint8_t *data,
			   const dv_wire_resp_t *r)
{
	uint32_t lifetime = UINT32_MAX;
	/* a reload may change them (dv_cache_set_ttl_caps) */
	uint32_t min_ttl = __atomic_load_n(&c->min_ttl, __ATOMIC_RELAXED);
	uint32_t max_ttl = __atomic_load_n(&c->max_ttl, __ATOMIC_RELAXED);
	uint32_t neg_max =
		__atomic_load_n(&c->negative_max_ttl, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < r->n_ttl; i++) {
		uint8_t *p = data + r->ttl_off[i];
		uint32_t t = clamp_ttl(dv_get32(p), min_ttl, max_ttl);
		dv_put32(p, t);
		if (t < lifetime)
			lifetime = t;
	}
	if (!r->negative || r->neg_ttl == UINT32_MAX)
		return lifetime;
	uint32_t neg = r->neg_ttl > TTL_MAX_VALID ? 0 : r->neg_ttl;
	if (neg > neg_max)
		neg = neg_max;
	if (neg < lifetime)
		lifetime = neg;
	for (unsigned i = 0; i < r->n_ttl; i++) {
		uint8_t *p = data + r->ttl_off[i];
		if (dv_get32(p) > lifetime)
			dv_put32(p, lifetime);
	}
	return lifetime;
}

int dv_cache_clamp_answer(const dv_cache_t *c, uint8_t *msg, size_t len,
			  uint32_t *out_ttl)
{
	dv_wire_resp_t r;
	int ret;

	if (c == NULL || msg == NULL)
		return -EINVAL;
	ret = dv_wire_parse_response(msg, len, &r);
	if (ret == DV_ELIMIT)
		return ret; /* too many records to reach every TTL */
	if (ret != 0)
		return DV_EMALFORMED;
	if (DV_OPCODE(r.flags) != 0 ||
	    (DV_RCODE(r.flags) != DV_RCODE_NOERROR &&
	     DV_RCODE(r.flags) != DV_RCODE_NXDOMAIN))
		return DV_ELIMIT;
	uint32_t lifetime = clamp_ttls(c, msg, &r);
	if (out_ttl != NULL)
		*out_ttl = lifetime == UINT32_MAX ? 0 : lifetime;
	return 0;
}

/*
 * Is the upstream's OPT something we can cut out and forget?  It must be
 * the last record (records after it could hold compression pointers into
 * the bytes behind it, and upstreams always put it last anyway), have the
 * root owner name, and carry no extended rcode bits (then the real rcode is
 * not the header's, e.g. BADVERS).
 */
static bool opt_cuttable(const uint8_t *wire, size_t len,
			 const dv_wire_resp_t *r)
{
	size_t start = r->opt_start, end = r->opt_end;

	if (end != len || start <= DV_DNS_HDR || start < r->question_end ||
	    end < start || end - start < 11 || dv_get16(wire + 10) == 0)
		return false;
	if (wire[start] != 0 || dv_get16(wire + start + 1) != DV_TYPE_OPT)
		return false;
	return wire[start + 5] == 0; /* TTL's top byte: extended rcode */
}

/*
 * Build the entry for `wire` outside any lock: copy without the OPT, parse
 * the copy, clamp its TTLs and decide its lifetime.  Returns the entry in
 * `*out`, or DV_ELIMIT / -ENOMEM.
 */
static int entry_build(dv_cache_t *c, const uint8_t *key, size_t key_len,
		       const uint8_t *wire, size_t len,
		       const dv_wire_resp_t *r, uint32_t now_s, uint64_t budget,
		       struct entry **out)
{
	dv_wire_resp_t sr; /* the stored copy, parsed */
	size_t stored_len = len, size;
	uint32_t lifetime;
	struct entry *e;
	uint8_t *data;
	int ret;

	if (r->qdcount != 1 || (r->flags & DV_FLAG_TC) ||
	    DV_OPCODE(r->flags) != 0 ||
	    (DV_RCODE(r->flags) != DV_RCODE_NOERROR &&
	     DV_RCODE(r->flags) != DV_RCODE_NXDOMAIN))
		return DV_ELIMIT;
	if (r->n_ttl > DV_WIRE_MAX_TTLS)
		return DV_ELIMIT;
	if (r->has_opt) {
		if (!opt_cuttable(wire, len, r))
			return DV_ELIMIT;
		stored_len = r->opt_start;
	}

	size = sizeof(*e) + r->n_ttl * sizeof(uint16_t) + key_len + stored_len;
	if (size > budget)
		return DV_ELIMIT;
	e = malloc(size);
	if (e == NULL)
		return -ENOMEM;
	e->size = (uint32_t)size;
	e->key_len = (uint16_t)key_len;
	e->len = (uint16_t)stored_len;
	e->n_ttl = r->n_ttl;
	memcpy(entry_key(e), key, key_len);
	data = entry_data(e);
	memcpy(data, wire, stored_len);
	if (r->has_opt)
		dv_put16(data + 10, (uint16_t)(dv_get16(wire + 10) - 1));

	/*
	 * Parse what we store rather than trusting `r`: the offsets must be
	 * those of these bytes, and a response that does not parse the same
	 * way twice (or whose `r` does not describe it) is not cached.  A
	 * response with too many records for ttl_off[] (DV_ELIMIT) cannot be
	 * aged, so it is not cached either.
	 */
	ret = dv_wire_parse_response(data, stored_len, &sr);
	if (ret != 0) {
		ret = DV_ELIMIT;
		goto fail_entry;
	}
	ret = DV_ELIMIT;
	if (sr.has_opt || sr.n_ttl != r->n_ttl || sr.qdcount != 1 ||
	    (sr.flags & DV_FLAG_TC) || DV_OPCODE(sr.flags) != 0 ||
	    (DV_RCODE(sr.flags) != DV_RCODE_NOERROR &&
	     DV_RCODE(sr.flags) != DV_RCODE_NXDOMAIN))
		goto fail_entry;

	/* a negative answer without a SOA is not cached (RFC 2308 5) */
	if (sr.negative && sr.neg_ttl == UINT32_MAX)
		goto fail_entry;
	lifetime = clamp_ttls(c, data, &sr);
	if (lifetime == 0 || lifetime == UINT32_MAX)
		goto fail_entry;

	/* what is stored now, for whoever reads the fields on a hit */
	sr.min_ttl = lifetime;
	if (sr.negative)
		sr.neg_ttl = lifetime;
	e->stored_at = now_s;
	e->used_at = now_s;
	e->lifetime = lifetime;
	e->hits = 0;
	e->sf_until = 0;
	e->sf_ede = 0xffff;
	e->eflags = 0;
	memcpy(e->ttl_off, sr.ttl_off, sr.n_ttl * sizeof(uint16_t));
	memcpy(e->resp_head, &sr, RESP_HEAD_LEN);
	memcpy(e->resp_tail, (const uint8_t *)&sr + RESP_OFFS_END,
	       RESP_TAIL_LEN);
	*out = e;
	return 0;

fail_entry:
	free(e);
	return ret;
}

/*
 * Link `e` (hash `h`) into `s`, replacing an entry with the same key and
 * evicting from the LRU tail to make room.  Entries to free are chained on
 * `*dead`.  Under the lock.
 */
static void shard_insert(struct shard *s, struct entry *e, uint64_t h,
			 struct entry **dead)
{
	struct entry **pp = chain_find(s, h, entry_key(e), e->key_len);

	if (*pp != NULL) {
		struct entry *old = *pp;
		shard_unlink(s, pp);
		old->hnext = *dead;
		*dead = old;
	}
	while (s->bytes + e->size > s->budget) {
		struct entry *victim = lru_entry(s->lru.prev);
		shard_unlink_entry(s, victim);
		victim->hnext = *dead;
		*dead = victim;
		s->evictions++;
	}
	pp = &s->buckets[bucket_of(s, h)];
	e->hnext = *pp;
	*pp = e;
	lru_push_head(s, &e->lru);
	s->entries++;
	s->bytes += e->size;
	shard_maybe_grow(s);
}

int dv_cache_store(dv_cache_t *c, const uint8_t *key, size_t key_len,
		   const uint8_t *wire, size_t len, const dv_wire_resp_t *r,
		   uint32_t now_s)
{
	struct entry *e = NULL, *dead = NULL;
	struct shard *s;
	int ret;

	if (c == NULL || key == NULL || wire == NULL || r == NULL ||
	    key_len == 0 || key_len > DV_WIRE_KEY_MAX)
		return -EINVAL;
	if (len < DV_DNS_HDR || len > DV_DNS_MAX_MSG)
		return DV_ELIMIT;

	uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
	s = shard_of(c, h);
	ret = entry_build(c, key, key_len, wire, len, r, now_s, s->budget, &e);
	if (ret != 0)
		return ret;
	e->hash = h;

	pthread_mutex_lock(&s->lock);
	shard_insert(s, e, h, &dead);
	s->stores++;
	pthread_mutex_unlock(&s->lock);

	free_chain(dead);
	return 0;
}

int dv_cache_store_servfail(dv_cache_t *c, const uint8_t *key,
			    size_t key_len, uint16_t ede, uint32_t ttl_s,
			    uint32_t now_s)
{
	struct entry *e, *dead = NULL, **pp;
	struct shard *s;
	size_t size;

	if (c == NULL || key == NULL || key_len == 0 ||
	    key_len > DV_WIRE_KEY_MAX)
		return -EINVAL;
	if (ttl_s == 0 || ttl_s > TTL_MAX_VALID)
		return DV_ELIMIT;

	uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
	s = shard_of(c, h);

	/* an entry already there (a stale answer) only gets the mark */
	pthread_mutex_lock(&s->lock);
	pp = chain_find(s, h, key, key_len);
	if (*pp != NULL) {
		e = *pp;
		e->eflags |= ENTRY_SERVFAIL;
		e->sf_until = now_s + ttl_s;
		e->sf_ede = ede;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	size = sizeof(*e) + key_len;
	if (size > s->budget)
		return DV_ELIMIT;
	e = calloc(1, size);
	if (e == NULL)
		return -ENOMEM;
	e->hash = h;
	e->size = (uint32_t)size;
	e->key_len = (uint16_t)key_len;
	e->stored_at = now_s;
	e->used_at = now_s;
	e->lifetime = ttl_s;
	e->sf_until = now_s + ttl_s;
	e->sf_ede = ede;
	e->eflags = ENTRY_SERVFAIL;
	memcpy(entry_key(e), key, key_len);

	/* a store may have come in meanwhile: the fresher answer wins */
	pthread_mutex_lock(&s->lock);
	pp = chain_find(s, h, key, key_len);
	if (*pp != NULL) {
		(*pp)->eflags |= ENTRY_SERVFAIL;
		(*pp)->sf_until = now_s + ttl_s;
		(*pp)->sf_ede = ede;
		dead = e;
		dead->hnext = NULL;
	} else {
		shard_insert(s, e, h, &dead);
	}
	pthread_mutex_unlock(&s->lock);
	free_chain(dead);
	return 0;
}

/* ---- lookup ---- */

static inline uint32_t entry_age(const struct entry *e, uint32_t now_s)
{
	int32_t age = (int32_t)(now_s - e->stored_at);
	return age < 0 ? 0 : (uint32_t)age; /* another worker's clock */
}

/* Is `e` an answer that may still be served stale at `age`? */
static inline bool entry_stale_ok(const struct entry *e, uint32_t age,
				  uint32_t stale_max_age)
{
	return e->len != 0 && stale_max_age != 0 &&
	       (uint64_t)age < (uint64_t)e->lifetime + stale_max_age;
}

static inline bool entry_servfail_active(const struct entry *e,
					 uint32_t now_s)
{
	return (e->eflags & ENTRY_SERVFAIL) &&
	       (int32_t)(e->sf_until - now_s) > 0;
}

/*
 * Write `e`'s answer for the client into `dst`, and its smallest TTL
 * into `*ttl` (0 when truncated).  Fresh (stale == false): TTLs lowered
 * by `age` (< e->lifetime).  Stale: every TTL DV_CACHE_STALE_TTL (a
 * negative answer's freshness no longer than its lifetime, under its SOA
 * MINIMUM) and EDE 3 (RFC 8767 4, RFC 8914 4.4; the EDE appears when the
 * client sent EDNS).  Under the lock, no allocation.
 */
static int entry_answer(const struct entry *e, uint32_t age, bool stale,
			uint8_t *dst, size_t cap, const uint8_t *q_wire,
			const dv_wire_query_t *q, size_t limit,
			unsigned pad_block, uint32_t *ttl)
{
	dv_wire_resp_t resp; /* only the used part of ttl_off[] is filled */
	int ret;

	memcpy(&resp, e->resp_head, RESP_HEAD_LEN);
	memcpy((uint8_t *)&resp + RESP_OFFS_END, e->resp_tail, RESP_TAIL_LEN);
	memcpy(resp.ttl_off, e->ttl_off, e->n_ttl * sizeof(uint16_t));
	*ttl = e->lifetime - age;
	if (stale)
		*ttl = resp.negative && e->lifetime < DV_CACHE_STALE_TTL
			       ? e->lifetime
			       : DV_CACHE_STALE_TTL;
	if (!stale) {
		ret = dv_wire_answer(dst, cap, entry_data((struct entry *)e),
				     e->len, &resp, q_wire, q, age, limit,
				     0xffff, NULL, pad_block);
		if (ret > 0 && (dv_get16(dst + 2) & DV_FLAG_TC))
			*ttl = 0;
		return ret;
	}
	ret = dv_wire_answer(dst, cap, entry_data((struct entry *)e), e->len,
			     &resp, q_wire, q, 0, limit, DV_EDE_STALE,
			     "stale answer", pad_block);
	/*
	 * The stored copy has no OPT, so the records sit at the same offsets
	 * in `dst`; a truncated answer (TC, which a stored one never has)
	 * has no records left to rewrite.
	 */
	if (ret > 0 && !(dv_get16(dst + 2) & DV_FLAG_TC)) {
		for (unsigned i = 0; i < e->n_ttl; i++)
			if ((size_t)e->ttl_off[i] + 4 <= (size_t)ret)
				dv_put32(dst + e->ttl_off[i],
					 DV_CACHE_STALE_TTL);
	} else {
		*ttl = 0;
	}
	return ret;
}

int dv_cache_lookup_ex(dv_cache_t *c, const uint8_t *key, size_t key_len,
		       uint32_t now_s, const dv_cache_policy_t *pol,
		       uint8_t *dst, size_t cap, const uint8_t *q_wire,
		       const dv_wire_query_t *q, size_t limit,
		       unsigned pad_block, unsigned *out_flags,
		       uint32_t *out_ttl)
{
	static const dv_cache_policy_t no_policy;
	struct entry *e, **pp;
	struct shard *s;
	uint32_t age, ttl = 0;
	unsigned flags = 0;
	int ret;

	if (out_flags != NULL)
		*out_flags = 0;
	if (out_ttl != NULL)
		*out_ttl = 0;
	if (c == NULL || key == NULL || dst == NULL || q_wire == NULL ||
	    q == NULL || key_len == 0 || key_len > DV_WIRE_KEY_MAX)
		return -EINVAL;
	if (pol == NULL)
		pol = &no_policy;

	uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
	s = shard_of(c, h);

	pthread_mutex_lock(&s->lock);
	pp = chain_find(s, h, key, key_len);
	e = *pp;
	if (e == NULL) {
		s->misses++;
		pthread_mutex_unlock(&s->lock);
		return DV_ENOTFOUND;
	}
	age = entry_age(e, now_s);
	if (e->len == 0 || age >= e->lifetime) {
		bool stale_ok = entry_stale_ok(e, age, pol->stale_max_age);

		if (entry_servfail_active(e, now_s)) {
			/* the upstreams failed a moment ago: a stale answer
			 * if there is one, else the remembered SERVFAIL */
			s->hits++;
			if (stale_ok) {
				ret = entry_answer(e, age, true, dst, cap,
						   q_wire, q, limit, pad_block,
						   &ttl);
				flags = DV_CACHE_STALE;
			} else {
				ret = dv_wire_error(dst, cap, q_wire, q,
						    DV_RCODE_SERVFAIL,
						    e->sf_ede,
						    "upstream failure (cached)",
						    pad_block);
				flags = DV_CACHE_SERVFAIL;
			}
			pthread_mutex_unlock(&s->lock);
			if (out_flags != NULL)
				*out_flags = flags;
			if (out_ttl != NULL)
				*out_ttl = ttl;
			return ret;
		}
		s->misses++;
		if (stale_ok) {
			/* kept for serve-stale until the window closes */
			pthread_mutex_unlock(&s->lock);
			if (out_flags != NULL)
				*out_flags = DV_CACHE_HAS_STALE;
			return DV_ENOTFOUND;
		}
		shard_unlink(s, pp);
		s->expired++;
		pthread_mutex_unlock(&s->lock);
		free(e);
		return DV_ENOTFOUND;
	}

	/*
	 * LRU at one-second granularity: an entry moves to the head at most
	 * once per second.  The move writes the entry, its two neighbours and
	 * the list head, which on a busy cache are lines last written by
	 * other cores; doing it on every hit halved the two-thread hit rate
	 * in measurements, and finer order than a second buys nothing when
	 * lifetimes are counted in seconds.
	 */
	if ((int32_t)(now_s - e->used_at) > 0) {
		e->used_at = now_s;
		if (s->lru.next != &e->lru) {
			lru_unlink(&e->lru);
			lru_push_head(s, &e->lru);
		}
	}
	s->hits++;
	if (e->hits != UINT32_MAX)
		e->hits++;

	/*
	 * Prefetch: a popular entry in the last window-pct of its life (at
	 * least its last second, never in its first) is handed out once for
	 * a refresh, so its clients never see it expire.
	 */
	if (pol->prefetch_hits != 0 && !(e->eflags & ENTRY_PREFETCHED) &&
	    e->hits >= pol->prefetch_hits && age >= 1) {
		uint64_t window =
			(uint64_t)e->lifetime * pol->prefetch_window_pct / 100;
		if (window == 0)
			window = 1;
		if (e->lifetime - age <= window) {
			e->eflags |= ENTRY_PREFETCHED;
			flags |= DV_CACHE_PREFETCH;
		}
	}
	ret = entry_answer(e, age, false, dst, cap, q_wire, q, limit,
			   pad_block, &ttl);
	pthread_mutex_unlock(&s->lock);
	if (out_flags != NULL)
		*out_flags = flags;
	if (out_ttl != NULL)
		*out_ttl = ttl;
	return ret;
}

int dv_cache_lookup(dv_cache_t *c, const uint8_t *key, size_t key_len,
		    uint32_t now_s, uint8_t *dst, size_t cap,
		    const uint8_t *q_wire, const dv_wire_query_t *q,
		    size_t limit, unsigned pad_block)
{
	return dv_cache_lookup_ex(c, key, key_len, now_s, NULL, dst, cap,
				  q_wire, q, limit, pad_block, NULL, NULL);
}

int dv_cache_lookup_stale(dv_cache_t *c, const uint8_t *key, size_t key_len,
			  uint32_t now_s, uint32_t stale_max_age,
			  uint8_t *dst, size_t cap, const uint8_t *q_wire,
			  const dv_wire_query_t *q, size_t limit,
			  unsigned pad_block, unsigned *out_flags,
			  uint32_t *out_ttl)
{
	struct entry *e;
	struct shard *s;
	uint32_t age, ttl = 0;
	int ret = DV_ENOTFOUND;

	if (out_flags != NULL)
		*out_flags = 0;
	if (c == NULL || key == NULL || dst == NULL || q_wire == NULL ||
	    q == NULL || key_len == 0 || key_len > DV_WIRE_KEY_MAX)
		return -EINVAL;

	uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
	s = shard_of(c, h);

	pthread_mutex_lock(&s->lock);
	e = *chain_find(s, h, key, key_len);
	if (e != NULL && e->len != 0) {
		age = entry_age(e, now_s);
		if (age < e->lifetime) {
			/* refreshed meanwhile (another worker): fresh */
			s->hits++;
			ret = entry_answer(e, age, false, dst, cap, q_wire, q,
					   limit, pad_block, &ttl);
		} else if (entry_stale_ok(e, age, stale_max_age)) {
			s->hits++;
			ret = entry_answer(e, age, true, dst, cap, q_wire, q,
					   limit, pad_block, &ttl);
			if (out_flags != NULL && ret > 0)
				*out_flags = DV_CACHE_STALE;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (out_ttl != NULL)
		*out_ttl = ret > 0 ? ttl : 0;
	return ret;
}

void dv_cache_stats(dv_cache_t *c, dv_cache_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		out->hits += s->hits;
		out->misses += s->misses;
		out->expired += s->expired;
		out->stores += s->stores;
		out->evictions += s->evictions;
		out->entries += s->entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->lock);
	}
}

/*
 * The answer cache: arbitrary bytes as upstream answers, stored under the
 * key of the client query that asked for them and served back at several
 * ages, size limits (512, 1232, 65535) and with and without EDNS/padding.
 *
 * src/core/cache.c is included to reach the shard internals: after every store
 * the hash chains, the LRU list and the byte accounting are walked, and a
 * model (written from cache.h's contract) says whether each answer may be
 * stored, how long it lives and which TTLs a client is served at each age.
 * Because this file then defines every public symbol of cache.c, the linker
 * never pulls cache.o out of the dv_core archive.
 *
 * Input: byte 0 bits 0-2 pick the clock base (around the 2^31 and 2^32
 * wraps too) and bits 3-7 scale byte 1, an extra age to serve at (besides
 * 0, 1, each lifetime - 1 and each lifetime); then up to MAX_ANSWERS
 * records of
 *   [flags] [length: 2 bytes, big endian] [answer bytes]
 * (the last record may be cut short).  flags: bit 0 client EDNS, 1 DO,
 * 2 CD, 3 padding option, 4 RD, 5..6 letter-case pattern of the client's
 * QNAME, 7 which of the two caches.
 *
 * The caches are created once (static) with small budgets so that eviction
 * runs; every entry an input stored is expired before the input ends, so
 * each input starts from empty caches and a crash replays alone.
 */
#include "src/core/cache.c"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's own walks over every slot and entry are not worth
 * coverage feedback, and instrumenting them costs most of the run time. */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			__builtin_trap();                                    \
	} while (0)

#define MAX_ANSWERS 8
#define PAD 468

static const dv_cache_opts_t cache_opts[2] = {
	/* the daemon's default TTL range, a tiny budget */
	{.size_bytes = 6000, .shards = 1, .min_ttl = 0, .max_ttl = 86400,
	 .negative_max_ttl = 300},
	/* a high cache.min-ttl: TTLs raised past 65535 (two shards) */
	{.size_bytes = 3000, .shards = 2, .min_ttl = 70000, .max_ttl = 86400,
	 .negative_max_ttl = 3600},
};
static dv_cache_t *caches[2];

/* ---- the model ---- */

typedef struct {
	/* the answer as given */
	const uint8_t *wire;
	size_t len;
	dv_wire_resp_t r;
	/* the client query it answers */
	uint8_t q_wire[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11 + 4];
	size_t q_len;
	dv_wire_query_t q;
	/* the same question without EDNS (DO clear) or with the padding
	 * option toggled (DO set): the same key */
	uint8_t q2_wire[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11 + 4];
	size_t q2_len;
	dv_wire_query_t q2;
	uint8_t key[DV_WIRE_KEY_MAX];
	size_t key_len;
	unsigned cache;
	/* what the cache should hold */
	bool stored;        /* the store returned 0 */
	bool alive;         /* stored, not replaced, not expired */
	size_t stored_len;  /* without the OPT */
	uint32_t lifetime;
	uint32_t ttl[DV_WIRE_MAX_TTLS]; /* clamped, as stored */
	uint16_t ttl_off[DV_WIRE_MAX_TTLS];
	bool negative;
	uint8_t copy[DV_DNS_MAX_MSG]; /* the bytes stored */
	uint64_t evictions_at_store;
} answer_t;

static answer_t answers[MAX_ANSWERS];

static uint32_t clamp(uint32_t t, uint32_t lo, uint32_t hi)
{
	if (t > 0x7fffffffu) /* RFC 2181 8 */
		t = 0;
	if (t < lo)
		t = lo;
	if (t > hi)
		t = hi;
	return t;
}

/* The cache's own view of its options (min <= max, max < 2^31). */
static void effective(unsigned k, uint32_t *lo, uint32_t *hi, uint32_t *neg)
{
	*hi = caches[k]->max_ttl;
	*lo = caches[k]->min_ttl;
	*neg = caches[k]->negative_max_ttl;
}

/* cache.h: what may be stored and for how long.  Returns false when the
 * answer is not cacheable (DV_ELIMIT expected). */
static bool model_store(answer_t *a, int parse_ret)
{
	const dv_wire_resp_t *r = &a->r;
	const uint8_t *w = a->wire;
	uint32_t lo, hi, negmax;

	effective(a->cache, &lo, &hi, &negmax);
	if (parse_ret != 0) /* too many records to age */
		return false;
	if (r->qdcount != 1 || (r->flags & DV_FLAG_TC) ||
	    DV_OPCODE(r->flags) != 0)
		return false;
	if (DV_RCODE(r->flags) != DV_RCODE_NOERROR &&
	    DV_RCODE(r->flags) != DV_RCODE_NXDOMAIN)
		return false;
	a->stored_len = a->len;
	if (r->has_opt) {
		/* cut out only when last, root-owned, no extended rcode */
		if (r->opt_end != a->len || r->opt_start <= DV_DNS_HDR ||
		    r->opt_start < r->question_end ||
		    r->opt_end - r->opt_start < 11 || dv_get16(w + 10) == 0 ||
		    w[r->opt_start] != 0 ||
		    dv_get16(w + r->opt_start + 1) != DV_TYPE_OPT ||
		    w[r->opt_start + 5] != 0)
			return false;
		a->stored_len = r->opt_start;
	}
	/*
	 * What is stored is the answer without its OPT, and only if that
	 * parses the same way: a name whose expansion runs on into the OPT
	 * (a pointer to just before it) no longer does.
	 */
	memcpy(a->copy, w, a->stored_len);
	if (r->has_opt)
		dv_put16(a->copy + 10, (uint16_t)(dv_get16(w + 10) - 1));
	static dv_wire_resp_t sr;
	if (dv_wire_parse_response(a->copy, a->stored_len, &sr) != 0)
		return false;
	if (sr.has_opt || sr.n_ttl != r->n_ttl || sr.qdcount != 1 ||
	    (sr.flags & DV_FLAG_TC) || DV_OPCODE(sr.flags) != 0 ||
	    (DV_RCODE(sr.flags) != DV_RCODE_NOERROR &&
	     DV_RCODE(sr.flags) != DV_RCODE_NXDOMAIN))
		return false;
	memcpy(a->ttl_off, sr.ttl_off, sr.n_ttl * sizeof(uint16_t));

	/* TTLs clamped in place, in record order */
	uint32_t life = UINT32_MAX;
	for (unsigned i = 0; i < sr.n_ttl; i++) {
		uint8_t *p = a->copy + sr.ttl_off[i];
		a->ttl[i] = clamp(dv_get32(p), lo, hi);
		dv_put32(p, a->ttl[i]);
		if (a->ttl[i] < life)
			life = a->ttl[i];
	}
	a->negative = sr.negative;
	if (sr.negative) {
		if (sr.neg_ttl == UINT32_MAX)
			return false;
		uint32_t neg = sr.neg_ttl > 0x7fffffffu ? 0 : sr.neg_ttl;
		if (neg > negmax)
			neg = negmax;
		if (neg < life)
			life = neg;
		for (unsigned i = 0; i < sr.n_ttl; i++)
			if (a->ttl[i] > life) {
				a->ttl[i] = life;
				dv_put32(a->copy + sr.ttl_off[i], life);
			}
	}
	if (life == 0 || life == UINT32_MAX)
		return false;
	a->lifetime = life;
	return true;
}

/* ---- client queries ---- */

/* A query for the answer's question, its QNAME in a letter case of
 * `flags`; EDNS, DO, CD, padding and RD from `flags`. */
static size_t build_query(uint8_t *q, const uint8_t *resp, size_t qend,
			  uint16_t id, unsigned flags, bool edns, bool pad)
{
	uint16_t hf = (uint16_t)(((flags & 16) ? DV_FLAG_RD : 0) |
				 ((flags & 4) ? DV_FLAG_CD : 0));
	dv_put16(q, id);
	dv_put16(q + 2, hf);
	dv_put16(q + 4, 1);
	dv_put16(q + 6, 0);
	dv_put16(q + 8, 0);
	dv_put16(q + 10, edns ? 1 : 0);
	size_t pos = DV_DNS_HDR;
	for (size_t i = DV_DNS_HDR; i < qend; i++) {
		uint8_t c = resp[i];
		unsigned pattern = (flags >> 5) & 3;
		bool flip = pattern == 1 || (pattern == 2 && (i & 1)) ||
			    (pattern == 3 && (i % 3 == 0));
		if (i < qend - 4 && flip && ((c >= 'a' && c <= 'z') ||
					    (c >= 'A' && c <= 'Z')))
			c ^= 0x20;
		q[pos++] = c;
	}
	if (edns) {
		q[pos++] = 0;
		dv_put16(q + pos, DV_TYPE_OPT);
		dv_put16(q + pos + 2, 1232);
		dv_put32(q + pos + 4, (flags & 2) ? 0x8000u : 0);
		dv_put16(q + pos + 8, pad ? 4 : 0);
		pos += 10;
		if (pad) {
			dv_put16(q + pos, DV_EDNS_PADDING);
			dv_put16(q + pos + 2, 0);
			pos += 4;
		}
	}
	return pos;
}

/* ---- structural checks (cache.c internals) ---- */

NO_COVERAGE static void check_shard(struct shard *s)
{
	uint64_t n = 0, bytes = 0;
	for (struct lru_node *p = s->lru.next; p != &s->lru; p = p->next) {
		CHECK(p->next->prev == p && p->prev->next == p);
		struct entry *e = lru_entry(p);
		/* findable through its chain */
		struct entry **pp = chain_find(s, e->hash, entry_key(e),
					       e->key_len);
		CHECK(*pp == e);
		CHECK(e->lifetime >= 1 && e->lifetime <= 0x7fffffffu);
		CHECK(e->size == sizeof(*e) + e->n_ttl * sizeof(uint16_t) +
					 e->key_len + e->len);
		n++;
		bytes += e->size;
		CHECK(n <= s->entries);
	}
	CHECK(n == s->entries && bytes == s->bytes);
	CHECK(s->bytes <= s->budget);
	/* and every chained entry is on the LRU list */
	uint64_t chained = 0;
	for (uint32_t b = 0; b < s->n_buckets; b++)
		for (struct entry *e = s->buckets[b]; e; e = e->hnext) {
			CHECK(bucket_of(s, e->hash) == b);
			chained++;
		}
	CHECK(chained == n);
}

NO_COVERAGE static void check_cache(dv_cache_t *c)
{
	for (unsigned i = 0; i < c->n_shards; i++)
		check_shard(&c->shards[i]);
}

static struct shard *shard_for(dv_cache_t *c, const uint8_t *key,
			       size_t key_len, uint64_t *h)
{
	*h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
	return shard_of(c, *h);
}

/* ---- serving ---- */

static size_t opt_len(size_t pos, unsigned pad)
{
	if (!pad)
		return 11;
	size_t t = pos + 11 + 4;
	return 15 + (pad - t % pad) % pad;
}

/* A hit: the answer the model expects for client query (qw, q). */
static void check_hit(const answer_t *a, const uint8_t *qw,
		      const dv_wire_query_t *q, const uint8_t *out, int n,
		      size_t limit, unsigned pad, uint32_t age)
{
	static dv_wire_resp_t ro;
	CHECK(n >= DV_DNS_HDR);
	CHECK(dv_wire_parse_response(out, (size_t)n, &ro) == 0);
	CHECK(dv_get16(out) == q->id);
	uint16_t qend = a->r.question_end;
	CHECK(ro.question_end == qend);
	/* the client's question, letter case included */
	CHECK(memcmp(out + DV_DNS_HDR, qw + DV_DNS_HDR, qend - DV_DNS_HDR) ==
	      0);

	size_t full = a->stored_len +
		      (q->has_opt ? opt_len(a->stored_len, pad) : 0);
	bool trunc = full > limit;
	/* AD only for a client that set AD or DO (RFC 6840 5.8) */
	bool ad_ok = q->edns_do || (q->flags & DV_FLAG_AD);
	uint16_t want_flags =
		(uint16_t)((a->r.flags & ~(DV_FLAG_RD | DV_FLAG_CD)) |
			   (q->flags & (DV_FLAG_RD | DV_FLAG_CD)) | DV_FLAG_QR |
			   (trunc ? DV_FLAG_TC : 0));
	if (!ad_ok)
		want_flags &= (uint16_t)~DV_FLAG_AD;
	CHECK(ro.flags == want_flags);
	CHECK(ro.has_opt == q->has_opt);
	if (q->has_opt) {
		CHECK(ro.opt_end == (size_t)n);
		CHECK(((out[ro.opt_start + 7] & 0x80) != 0) == q->edns_do);
		CHECK(ro.ede_code == 0xffff);
		CHECK(out[ro.opt_start + 5] == 0); /* no extended rcode */
		if (pad)
			CHECK(n % pad == 0);
	}
	if (trunc) {
		/* header, question, OPT: over the limit only when those are */
		size_t min = qend + (q->has_opt ? opt_len(qend, pad) : 0);
		CHECK((size_t)n == min);
		CHECK(ro.ancount == 0 && ro.nscount == 0);
		CHECK(ro.arcount == (q->has_opt ? 1 : 0));
		if (!pad)
			CHECK((size_t)n <= limit);
		return;
	}
	CHECK((size_t)n == full && (size_t)n <= limit);
	/* the stored records, TTLs counting down with age */
	CHECK(ro.ancount == a->r.ancount && ro.nscount == a->r.nscount);
	CHECK(ro.arcount == a->r.arcount - (a->r.has_opt ? 1 : 0) +
				    (q->has_opt ? 1 : 0));
	CHECK(ro.n_ttl == a->r.n_ttl);
	size_t t = 0;
	for (size_t i = qend; i < a->stored_len; i++) {
		if (t < a->r.n_ttl && i == a->ttl_off[t]) {
			CHECK(ro.ttl_off[t] == i);
			uint32_t want = a->ttl[t] > age ? a->ttl[t] - age : 0;
			CHECK(dv_get32(out + i) == want);
			CHECK(want <= caches[a->cache]->max_ttl);
			if (a->negative)
				CHECK(want <= a->lifetime);
			i += 3;
			t++;
			continue;
		}
		CHECK(out[i] == a->copy[i]);
	}
	CHECK(t == a->r.n_ttl);
	CHECK(memcmp(out + 4, a->wire + 4, 6) == 0); /* QD, AN, NS counts */
}

/* Look answer `a` up at `now` (age `age` from its store) with every client
 * variant and limit; the model says whether it must hit. */
static void serve(answer_t *a, uint32_t store_now, uint32_t now)
{
	static uint8_t out[DV_DNS_MAX_MSG + 1];
	dv_cache_t *c = caches[a->cache];
	int32_t sage = (int32_t)(now - store_now);
	uint32_t age = sage < 0 ? 0 : (uint32_t)sage;
	uint64_t h;
	struct shard *s = shard_for(c, a->key, a->key_len, &h);
	bool present = *chain_find(s, h, a->key, a->key_len) != NULL;

	/* only eviction takes an entry before its time */
	if (a->alive && !present && age < a->lifetime)
		CHECK(s->evictions > a->evictions_at_store);
	static const size_t limits[] = {512, 1232, 65535};
	for (unsigned v = 0; v < 2; v++) {
		const uint8_t *qw = v ? a->q2_wire : a->q_wire;
		const dv_wire_query_t *q = v ? &a->q2 : &a->q;
		for (unsigned l = 0; l < 3; l++) {
			for (unsigned p = 0; p < 2; p++) {
				unsigned pad = p ? PAD : 0;
				if (pad && !q->edns_padding)
					continue;
				int n = dv_cache_lookup(
					c, a->key, a->key_len, now, out,
					sizeof(out), qw, q, limits[l], pad);
				bool exp = a->alive && present &&
					   age < a->lifetime;
				if (!a->alive) {
					/* replaced or never stored: someone
					 * else's entry or nothing */
					CHECK(n > 0 || n == DV_ENOTFOUND);
					continue;
				}
				if (!exp) {
					CHECK(n == DV_ENOTFOUND);
					a->alive = present = false;
					continue;
				}
				CHECK(n > 0);
				check_hit(a, qw, q, out, n, limits[l], pad,
					  age);
			}
		}
	}
	/* an expired entry is gone */
	if (a->alive && age >= a->lifetime)
		a->alive = false;
	check_cache(c);
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return a < b ? -1 : a > b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!caches[0]) {
		for (unsigned k = 0; k < 2; k++) {
			caches[k] = dv_cache_new(&cache_opts[k]);
			CHECK(caches[k]);
			/* a fixed SipHash key: the same shards and buckets in
			 * every run, so a crash replays exactly */
			caches[k]->sip_k0 = 0x0706050403020100ULL;
			caches[k]->sip_k1 = 0x0f0e0d0c0b0a0908ULL;
		}
	}
	if (size < 2 || size > 4 * DV_DNS_MAX_MSG)
		return 0;
	static const uint32_t bases[] = {1000,        0x7ffffff0u,
					 0xfffffff0u, 0,
					 0x80000005u, 0xffffffffu,
					 123456789u,  0x7fffffffu};
	uint32_t now = bases[data[0] & 7];
	uint32_t extra_age = data[1] * (1u + ((data[0] >> 3) & 31) * 50);
	size_t off = 2;
	unsigned n_ans = 0;

	/* ---- store ---- */
	while (off < size && n_ans < MAX_ANSWERS) {
		unsigned flags = data[off++];
		size_t len = size - off;
		if (len >= 2) {
			size_t want = dv_get16(data + off);
			off += 2;
			len = size - off;
			if (want < len)
				len = want;
		} else {
			off = size;
			len = 0;
		}
		answer_t *a = &answers[n_ans];
		a->wire = data + off;
		a->len = len;
		off += len;

		int ret = dv_wire_parse_response(a->wire, a->len, &a->r);
		if (ret != 0 && ret != DV_ELIMIT)
			continue; /* the core stores only what parses */
		bool edns = flags & 1, pad = edns && (flags & 8);
		if (flags & 2)
			edns = true;
		uint16_t id = (uint16_t)(0x5a5a ^ (n_ans * 0x1111u));
		a->q_len = build_query(a->q_wire, a->wire, a->r.question_end,
				       id, flags, edns, pad);
		CHECK(dv_wire_parse_query(a->q_wire, a->q_len, &a->q) == 0);
		bool edns2 = (flags & 2) ? true : false;
		bool pad2 = (flags & 2) ? !pad : false;
		a->q2_len = build_query(a->q2_wire, a->wire, a->r.question_end,
					(uint16_t)~id, flags ^ 0x60, edns2,
					pad2);
		CHECK(dv_wire_parse_query(a->q2_wire, a->q2_len, &a->q2) == 0);
		a->key_len = dv_wire_key(a->key, a->q_wire, &a->q);
		uint8_t key2[DV_WIRE_KEY_MAX];
		CHECK(dv_wire_key(key2, a->q2_wire, &a->q2) == a->key_len);
		CHECK(memcmp(key2, a->key, a->key_len) == 0);
		a->cache = flags >> 7;
		dv_cache_t *c = caches[a->cache];

		uint64_t h;
		struct shard *s = shard_for(c, a->key, a->key_len, &h);
		bool cacheable = model_store(a, ret);
		size_t esize = sizeof(struct entry) +
			       a->r.n_ttl * sizeof(uint16_t) + a->key_len +
			       a->stored_len;
		if (esize > s->budget)
			cacheable = false;
		int sret = dv_cache_store(c, a->key, a->key_len, a->wire,
					  a->len, &a->r, now);
		CHECK(sret == 0 || sret == DV_ELIMIT);
		CHECK((sret == 0) == cacheable);
		a->stored = sret == 0;
		a->evictions_at_store = s->evictions;
		if (a->stored) {
			/* it replaces any earlier answer under its key */
			for (unsigned j = 0; j < n_ans; j++)
				if (answers[j].cache == a->cache &&
				    answers[j].key_len == a->key_len &&
				    !memcmp(answers[j].key, a->key,
					    a->key_len))
					answers[j].alive = false;
			CHECK(s->lru.next != &s->lru &&
			      lru_entry(s->lru.next)->hash == h);
		}
		a->alive = a->stored;
		check_cache(c);
		n_ans++;
	}

	/* ---- serve at increasing ages ---- */
	uint32_t ages[8];
	unsigned n_ages = 0;
	ages[n_ages++] = 0;
	ages[n_ages++] = 1;
	ages[n_ages++] = extra_age;
	for (unsigned i = 0; i < n_ans && n_ages < 8; i++)
		if (answers[i].stored) {
			ages[n_ages++] = answers[i].lifetime - 1;
			if (n_ages < 8)
				ages[n_ages++] = answers[i].lifetime;
		}
	qsort(ages, n_ages, sizeof(ages[0]), cmp_u32);
	/* a worker whose clock is a second behind the one that stored */
	for (unsigned i = 0; i < n_ans; i++)
		serve(&answers[i], now, now - 1);
	for (unsigned k = 0; k < n_ages; k++)
		for (unsigned i = 0; i < n_ans; i++)
			serve(&answers[i], now, now + ages[k]);

	/* ---- expire everything: the next input starts empty ---- */
	for (unsigned i = 0; i < n_ans; i++) {
		answers[i].alive = false;
		serve(&answers[i], now, now + 0x7fffffffu);
	}
	for (unsigned k = 0; k < 2; k++) {
		dv_cache_stats_t st;
		dv_cache_stats(caches[k], &st);
		CHECK(st.entries == 0 && st.bytes == 0);
	}
	return 0;
}

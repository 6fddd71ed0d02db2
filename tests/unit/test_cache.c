/*
 * Unit tests for the answer cache.  Queries and upstream answers are built
 * with ldns, run through the real wire parser (dv_wire_parse_query,
 * dv_wire_key, dv_wire_parse_response) as the query path does, and what
 * the cache serves is read back with ldns.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "src/core/cache.h"
#include "src/core/errors.h"
#include "src/core/wire.h"

/* ---- building messages ---- */

enum { Q_EDNS = 1, Q_DO = 2, Q_CD = 4, Q_AD = 8 };

typedef struct {
	uint8_t wire[512];
	size_t len;
	dv_wire_query_t q;
	uint8_t key[DV_WIRE_KEY_MAX];
	size_t key_len;
} tq_t;

static void make_query(tq_t *t, const char *name, ldns_rr_type type,
		       uint16_t id, unsigned flags)
{
	ldns_pkt *p = NULL;
	uint8_t *w = NULL;
	size_t n = 0;

	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_cd(p, (flags & Q_CD) != 0);
	ldns_pkt_set_ad(p, (flags & Q_AD) != 0);
	if (flags & Q_EDNS) {
		ldns_pkt_set_edns_udp_size(p, 4096);
		ldns_pkt_set_edns_do(p, (flags & Q_DO) != 0);
	}
	assert_int_equal(ldns_pkt2wire(&w, p, &n), LDNS_STATUS_OK);
	assert_true(n <= sizeof(t->wire));
	memcpy(t->wire, w, n);
	t->len = n;
	free(w);
	ldns_pkt_free(p);
	assert_int_equal(dv_wire_parse_query(t->wire, t->len, &t->q), 0);
	assert_int_equal(t->q.has_opt, (flags & Q_EDNS) != 0);
	t->key_len = dv_wire_key(t->key, t->wire, &t->q);
}

enum { A_TC = 1, A_EDNS = 2, A_AA = 4, A_AD = 8 };

#define ANS_MAX 16384
typedef struct {
	uint8_t wire[ANS_MAX];
	size_t len;
	dv_wire_resp_t r;
	int parse_ret;
} ta_t;

/*
 * An upstream answer to `qname`/`qtype`.  `rrs` is a NULL-terminated list
 * of "an:", "ns:" or "ar:" prefixed records in presentation format.
 */
static void make_answer(ta_t *a, const char *qname, ldns_rr_type qtype,
			uint8_t rcode, unsigned flags, const char *const *rrs)
{
	ldns_pkt *p = ldns_pkt_new();
	ldns_rr *rr = NULL;
	uint8_t *w = NULL;
	size_t n = 0;
	char qstr[300];

	assert_non_null(p);
	ldns_pkt_set_id(p, 0x4242);
	ldns_pkt_set_qr(p, true);
	ldns_pkt_set_rd(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_aa(p, (flags & A_AA) != 0);
	ldns_pkt_set_tc(p, (flags & A_TC) != 0);
	ldns_pkt_set_ad(p, (flags & A_AD) != 0);
	ldns_pkt_set_rcode(p, rcode);
	snprintf(qstr, sizeof(qstr), "%s IN %s", qname,
		 qtype == LDNS_RR_TYPE_AAAA  ? "AAAA"
		 : qtype == LDNS_RR_TYPE_TXT ? "TXT"
					     : "A");
	assert_int_equal(ldns_rr_new_question_frm_str(&rr, qstr, NULL, NULL),
			 LDNS_STATUS_OK);
	ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, rr);
	for (; rrs != NULL && *rrs != NULL; rrs++) {
		const char *s = *rrs;
		ldns_pkt_section sec = strncmp(s, "an:", 3) == 0
					       ? LDNS_SECTION_ANSWER
				       : strncmp(s, "ns:", 3) == 0
					       ? LDNS_SECTION_AUTHORITY
					       : LDNS_SECTION_ADDITIONAL;
		rr = NULL;
		assert_int_equal(ldns_rr_new_frm_str(&rr, s + 3, 0, NULL, NULL),
				 LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, sec, rr);
	}
	if (flags & A_EDNS) {
		ldns_pkt_set_edns_udp_size(p, 4096);
		ldns_pkt_set_edns_do(p, true);
	}
	assert_int_equal(ldns_pkt2wire(&w, p, &n), LDNS_STATUS_OK);
	assert_true(n <= sizeof(a->wire));
	memcpy(a->wire, w, n);
	a->len = n;
	free(w);
	ldns_pkt_free(p);
	a->parse_ret = dv_wire_parse_response(a->wire, a->len, &a->r);
}

static ta_t *answer_a(const char *qname, const char *addr, uint32_t ttl)
{
	ta_t *a = malloc(sizeof(*a));
	char rr[300];
	const char *rrs[] = {rr, NULL};

	assert_non_null(a);
	snprintf(rr, sizeof(rr), "an:%s %u IN A %s", qname, ttl, addr);
	make_answer(a, qname, LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, 0, rrs);
	assert_int_equal(a->parse_ret, 0);
	return a;
}

static int store(dv_cache_t *c, const tq_t *q, const ta_t *a, uint32_t now)
{
	return dv_cache_store(c, q->key, q->key_len, a->wire, a->len, &a->r,
			      now);
}

static uint8_t out[DV_DNS_MAX_MSG];

static int lookup(dv_cache_t *c, const tq_t *q, uint32_t now)
{
	return dv_cache_lookup(c, q->key, q->key_len, now, out, sizeof(out),
			       q->wire, &q->q, sizeof(out), 0);
}

/* the smallest TTL the last lookup_pol()/lookup_stale() reported */
static uint32_t last_ttl;

static int lookup_pol(dv_cache_t *c, const tq_t *q, uint32_t now,
		      const dv_cache_policy_t *pol, unsigned *flags)
{
	last_ttl = 12345;
	return dv_cache_lookup_ex(c, q->key, q->key_len, now, pol, out,
				  sizeof(out), q->wire, &q->q, sizeof(out), 0,
				  flags, &last_ttl);
}

static int lookup_stale(dv_cache_t *c, const tq_t *q, uint32_t now,
			uint32_t max_age, unsigned *flags)
{
	last_ttl = 12345;
	return dv_cache_lookup_stale(c, q->key, q->key_len, now, max_age, out,
				     sizeof(out), q->wire, &q->q, sizeof(out),
				     0, flags, &last_ttl);
}

/* What the client got, as ldns reads it; the caller frees it. */
static ldns_pkt *served(int len)
{
	ldns_pkt *p = NULL;

	assert_true(len >= DV_DNS_HDR);
	assert_int_equal(ldns_wire2pkt(&p, out, (size_t)len), LDNS_STATUS_OK);
	return p;
}

static uint32_t section_ttl(ldns_pkt *p, ldns_pkt_section sec, size_t i)
{
	ldns_rr_list *l = ldns_pkt_get_section_clone(p, sec);
	uint32_t ttl;

	assert_non_null(l);
	assert_true(i < ldns_rr_list_rr_count(l));
	ttl = ldns_rr_ttl(ldns_rr_list_rr(l, i));
	ldns_rr_list_deep_free(l);
	return ttl;
}

static uint32_t first_a(ldns_pkt *p)
{
	ldns_rr_list *an = ldns_pkt_answer(p);
	ldns_rr *rr;
	uint8_t *d;

	assert_true(ldns_rr_list_rr_count(an) >= 1);
	rr = ldns_rr_list_rr(an, 0);
	assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_A);
	d = ldns_rdf_data(ldns_rr_rdf(rr, 0));
	return dv_get32(d);
}

static dv_cache_opts_t default_opts(void)
{
	dv_cache_opts_t o = {
		.size_bytes = 1 << 20,
		.shards = 4,
		.min_ttl = 0,
		.max_ttl = 86400,
		.negative_max_ttl = 3600,
	};
	return o;
}

static dv_cache_t *new_cache(uint64_t size, unsigned shards, uint32_t min,
			     uint32_t max, uint32_t neg_max)
{
	dv_cache_opts_t o = {size, shards, min, max, neg_max};
	dv_cache_t *c = dv_cache_new(&o);

	assert_non_null(c);
	return c;
}

static dv_cache_stats_t stats(dv_cache_t *c)
{
	dv_cache_stats_t s;

	dv_cache_stats(c, &s);
	return s;
}

/* ---- tests ---- */

static void test_new_free(void **state)
{
	dv_cache_opts_t o = default_opts();

	(void)state;
	dv_cache_free(NULL);
	for (unsigned shards = 0; shards <= 9; shards++) {
		o.shards = shards;
		dv_cache_t *c = dv_cache_new(&o);
		assert_non_null(c);
		dv_cache_stats_t s = stats(c);
		assert_int_equal(s.entries, 0);
		assert_int_equal(s.bytes, 0);
		dv_cache_free(c);
	}
	assert_null(dv_cache_new(NULL));
}

static void test_miss_store_hit(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q;
	ta_t *a = answer_a("www.example.test.", "192.0.2.1", 300);

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(lookup(c, &q, 100), DV_ENOTFOUND);
	assert_int_equal(store(c, &q, a, 100), 0);
	int n = lookup(c, &q, 100);
	assert_true(n > 0);
	/* no EDNS on either side: the served answer is the stored one */
	assert_int_equal((size_t)n, a->len);

	ldns_pkt *p = served(n);
	assert_true(ldns_pkt_qr(p));
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	assert_int_equal(first_a(p), 0xc0000201);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 300);
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);

	/* other names and types miss */
	tq_t q2;
	make_query(&q2, "www.example.test.", LDNS_RR_TYPE_AAAA, 1, 0);
	assert_int_equal(lookup(c, &q2, 100), DV_ENOTFOUND);
	make_query(&q2, "ww.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(lookup(c, &q2, 100), DV_ENOTFOUND);

	free(a);
	dv_cache_free(c);
}

static void test_client_id_and_case(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q1, q2;
	ta_t *a = answer_a("www.example.test.", "192.0.2.7", 300);

	(void)state;
	make_query(&q1, "www.example.test.", LDNS_RR_TYPE_A, 0x1111, 0);
	make_query(&q2, "WwW.ExAmple.TEST.", LDNS_RR_TYPE_A, 0xbeef, 0);
	assert_int_equal(q1.key_len, q2.key_len);
	assert_memory_equal(q1.key, q2.key, q1.key_len);

	assert_int_equal(store(c, &q1, a, 10), 0);
	int n = lookup(c, &q2, 11);
	assert_true(n > 0);
	assert_int_equal(dv_get16(out), 0xbeef);
	/* the question bytes are exactly the client's, letter case included */
	assert_memory_equal(out + DV_DNS_HDR, q2.wire + DV_DNS_HDR,
			    q2.q.question_end - DV_DNS_HDR);
	assert_memory_equal(out + DV_DNS_HDR, "\3WwW\7ExAmple\4TEST", 18);

	ldns_pkt *p = served(n);
	assert_int_equal(ldns_pkt_id(p), 0xbeef);
	assert_int_equal(first_a(p), 0xc0000207);
	ldns_pkt_free(p);

	/* and the first client still gets its own id and case */
	n = lookup(c, &q1, 12);
	assert_true(n > 0);
	assert_int_equal(dv_get16(out), 0x1111);
	assert_memory_equal(out + DV_DNS_HDR, "\3www\7example\4test", 18);

	free(a);
	dv_cache_free(c);
}

static void test_ttl_countdown_and_expiry(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q;
	ta_t *a = answer_a("www.example.test.", "192.0.2.1", 300);
	ldns_pkt *p;
	int n;

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(store(c, &q, a, 100), 0);

	n = lookup(c, &q, 160);
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 240);
	ldns_pkt_free(p);

	/* the stored copy is not aged by a hit */
	n = lookup(c, &q, 100);
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 300);
	ldns_pkt_free(p);

	/* a worker whose clock is a tick behind the storer's: age 0 */
	n = lookup(c, &q, 99);
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 300);
	ldns_pkt_free(p);

	n = lookup(c, &q, 399);
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 1);
	ldns_pkt_free(p);

	/* exactly the lifetime: gone, and removed */
	assert_int_equal(lookup(c, &q, 400), DV_ENOTFOUND);
	dv_cache_stats_t s = stats(c);
	assert_int_equal(s.expired, 1);
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(lookup(c, &q, 400), DV_ENOTFOUND);
	assert_int_equal(stats(c).expired, 1);

	/* across the 2^32 wrap of the caller's clock */
	assert_int_equal(store(c, &q, a, UINT32_MAX - 9), 0);
	n = lookup(c, &q, 20); /* 30 s later */
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 270);
	ldns_pkt_free(p);
	assert_int_equal(lookup(c, &q, 290), DV_ENOTFOUND);

	free(a);
	dv_cache_free(c);
}

static void test_lifetime_smallest_ttl(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	tq_t q;
	ta_t *a = malloc(sizeof(*a));
	const char *rrs[] = {
		"an:www.example.test. 300 IN CNAME web.example.test.",
		"an:web.example.test. 50 IN A 192.0.2.9",
		"ns:example.test. 7200 IN NS ns.example.test.",
		"ar:ns.example.test. 7200 IN A 192.0.2.53",
		NULL,
	};

	(void)state;
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, 0, rrs);
	assert_int_equal(a->parse_ret, 0);
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(store(c, &q, a, 0), 0);
	int n = lookup(c, &q, 49);
	assert_true(n > 0);
	ldns_pkt *p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 251);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 1), 1);
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 7151);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ADDITIONAL, 0), 7151);
	ldns_pkt_free(p);
	assert_int_equal(lookup(c, &q, 50), DV_ENOTFOUND);

	free(a);
	dv_cache_free(c);
}

static void test_ttl_clamps(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 2, 60, 3600, 900);
	tq_t q;
	ta_t *a;
	ldns_pkt *p;

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);

	/* raised to min_ttl, and lives that long */
	a = answer_a("www.example.test.", "192.0.2.1", 5);
	assert_int_equal(store(c, &q, a, 1000), 0);
	p = served(lookup(c, &q, 1000));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 60);
	ldns_pkt_free(p);
	assert_true(lookup(c, &q, 1059) > 0);
	assert_int_equal(lookup(c, &q, 1060), DV_ENOTFOUND);
	free(a);

	/* a zero TTL too */
	a = answer_a("www.example.test.", "192.0.2.1", 0);
	assert_int_equal(store(c, &q, a, 1000), 0);
	assert_true(lookup(c, &q, 1059) > 0);
	free(a);

	/* lowered to max_ttl */
	a = answer_a("www.example.test.", "192.0.2.1", 604800);
	assert_int_equal(store(c, &q, a, 1000), 0);
	p = served(lookup(c, &q, 1000));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 3600);
	ldns_pkt_free(p);
	assert_true(lookup(c, &q, 4599) > 0);
	assert_int_equal(lookup(c, &q, 4600), DV_ENOTFOUND);

	/* RFC 2181 8: a TTL with the top bit set means 0, not 2^31 + x */
	dv_put32(a->wire + a->r.ttl_off[0], 0x80000100);
	assert_int_equal(store(c, &q, a, 1000), 0);
	p = served(lookup(c, &q, 1000));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 60);
	ldns_pkt_free(p);
	free(a);
	dv_cache_free(c);

	/* without a floor, a zero TTL is not cached */
	c = new_cache(1 << 20, 2, 0, 3600, 900);
	a = answer_a("www.example.test.", "192.0.2.1", 0);
	assert_int_equal(store(c, &q, a, 1000), DV_ELIMIT);
	assert_int_equal(stats(c).entries, 0);
	assert_int_equal(stats(c).stores, 0);
	free(a);
	dv_cache_free(c);
}

/* NXDOMAIN for nx.example.test with a SOA (TTL, MINIMUM) */
static ta_t *answer_nx(uint8_t rcode, uint32_t soa_ttl, uint32_t minimum)
{
	ta_t *a = malloc(sizeof(*a));
	char soa[300];
	const char *rrs[] = {soa, NULL};

	assert_non_null(a);
	snprintf(soa, sizeof(soa),
		 "ns:example.test. %u IN SOA ns.example.test. "
		 "hostmaster.example.test. 1 7200 3600 1209600 %u",
		 soa_ttl, minimum);
	make_answer(a, "nx.example.test.", LDNS_RR_TYPE_A, rcode, A_AA, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_true(a->r.negative);
	return a;
}

static void test_negative_soa(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q;
	ta_t *a;
	ldns_pkt *p;
	int n;

	(void)state;
	make_query(&q, "nx.example.test.", LDNS_RR_TYPE_A, 7, 0);

	/* min(SOA TTL 900, MINIMUM 300) = 300 */
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 900, 300);
	assert_int_equal(store(c, &q, a, 0), 0);
	n = lookup(c, &q, 100);
	p = served(n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	assert_true(ldns_pkt_aa(p));
	assert_int_equal(ldns_pkt_nscount(p), 1);
	/* the SOA's TTL tells the client the same lifetime */
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 200);
	ldns_pkt_free(p);
	assert_true(lookup(c, &q, 299) > 0);
	assert_int_equal(lookup(c, &q, 300), DV_ENOTFOUND);
	free(a);

	/* min(SOA TTL 120, MINIMUM 300) = 120 */
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 120, 300);
	assert_int_equal(store(c, &q, a, 0), 0);
	assert_true(lookup(c, &q, 119) > 0);
	assert_int_equal(lookup(c, &q, 120), DV_ENOTFOUND);
	free(a);

	/* NODATA (NOERROR, empty answer) is negative too */
	a = answer_nx(LDNS_RCODE_NOERROR, 900, 600);
	assert_int_equal(store(c, &q, a, 0), 0);
	p = served(lookup(c, &q, 0));
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 600);
	ldns_pkt_free(p);
	assert_true(lookup(c, &q, 599) > 0);
	assert_int_equal(lookup(c, &q, 600), DV_ENOTFOUND);
	free(a);

	/* SOA MINIMUM 0: nothing to cache */
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 900, 0);
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);
	free(a);
	dv_cache_free(c);

	/* capped by negative_max_ttl, even with min_ttl above it */
	c = new_cache(1 << 20, 4, 120, 86400, 60);
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 900, 300);
	assert_int_equal(store(c, &q, a, 0), 0);
	p = served(lookup(c, &q, 10));
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 50);
	ldns_pkt_free(p);
	assert_true(lookup(c, &q, 59) > 0);
	assert_int_equal(lookup(c, &q, 60), DV_ENOTFOUND);
	free(a);
	dv_cache_free(c);
}

/*
 * The answer a client gets on a miss (built from the upstream response,
 * then dv_cache_clamp_answer()) is byte for byte the one the first hit
 * gives: the TTLs, and so a DoH max-age, agree (RFC 8484 5.1).
 */
static void check_first_equals_hit(dv_cache_t *c, const tq_t *q,
				   const ta_t *a)
{
	static uint8_t first[ANS_MAX];
	int n = dv_wire_answer(first, sizeof(first), a->wire, a->len, &a->r,
			       q->wire, &q->q, 0, sizeof(out), 0xffff, NULL,
			       0);
	assert_true(n > 0);
	uint32_t ttl = 0;
	assert_int_equal(dv_cache_clamp_answer(c, first, (size_t)n, &ttl), 0);
	assert_int_equal(store(c, q, a, 50), 0);
	assert_int_equal(lookup_pol(c, q, 50, NULL, NULL), n);
	assert_memory_equal(first, out, (size_t)n);
	/* the smallest TTL: the same on the miss and on the hit */
	assert_int_equal(ttl, last_ttl);
	assert_true(ttl > 0);
}

static void test_clamp_answer(void **state)
{
	/* min-ttl 30, max-ttl 300, negative-max-ttl 3600 */
	dv_cache_t *c = new_cache(1 << 20, 4, 30, 300, 3600);
	tq_t q, qa;
	ta_t *a;
	ldns_pkt *p;

	(void)state;
	make_query(&q, "nx.example.test.", LDNS_RR_TYPE_A, 7, Q_EDNS);
	make_query(&qa, "www.example.test.", LDNS_RR_TYPE_A, 8, 0);

	/* NXDOMAIN, SOA TTL and MINIMUM 10800: max-ttl caps it too */
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 10800, 10800);
	check_first_equals_hit(c, &q, a);
	p = served(lookup(c, &q, 50));
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 300);
	ldns_pkt_free(p);
	free(a);
	/* NODATA with a SOA under the caps: as sent (min-ttl does not
	 * raise a negative answer) */
	a = answer_nx(LDNS_RCODE_NOERROR, 900, 20);
	check_first_equals_hit(c, &q, a);
	p = served(lookup(c, &q, 50));
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 20);
	ldns_pkt_free(p);
	free(a);
	/* positive over max-ttl: 300; under min-ttl: 30 */
	a = answer_a("www.example.test.", "192.0.2.1", 86400);
	check_first_equals_hit(c, &qa, a);
	p = served(lookup(c, &qa, 50));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 300);
	ldns_pkt_free(p);
	free(a);
	a = answer_a("www.example.test.", "192.0.2.1", 5);
	check_first_equals_hit(c, &qa, a);
	p = served(lookup(c, &qa, 50));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 30);
	ldns_pkt_free(p);
	free(a);
	/* a TTL with the top bit set is 0 (RFC 2181 8), then min-ttl */
	a = answer_a("www.example.test.", "192.0.2.1", 0x80000001u);
	check_first_equals_hit(c, &qa, a);
	free(a);

	/* other rcodes are left alone */
	static uint8_t msg[ANS_MAX];
	static const char *const sf_rrs[] = {
		"an:www.example.test. 86400 IN A 192.0.2.1", NULL};
	a = malloc(sizeof(*a));
	assert_non_null(a);
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A,
		    LDNS_RCODE_SERVFAIL, 0, sf_rrs);
	assert_int_equal(a->parse_ret, 0);
	memcpy(msg, a->wire, a->len);
	assert_int_equal(dv_cache_clamp_answer(c, msg, a->len, NULL), DV_ELIMIT);
	assert_memory_equal(msg, a->wire, a->len);
	/* and what does not parse */
	assert_int_equal(dv_cache_clamp_answer(c, msg, 11, NULL), DV_EMALFORMED);
	assert_int_equal(dv_cache_clamp_answer(NULL, msg, a->len, NULL), -EINVAL);
	free(a);
	dv_cache_free(c);

	/* the defaults: max-ttl 86400, negative-max-ttl 3600 */
	c = new_cache(1 << 20, 1, 0, 86400, 3600);
	a = answer_nx(LDNS_RCODE_NXDOMAIN, 10800, 10800);
	check_first_equals_hit(c, &q, a);
	p = served(lookup(c, &q, 50));
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0), 3600);
	ldns_pkt_free(p);
	free(a);
	/* a 86400 answer is not touched */
	a = answer_a("www.example.test.", "192.0.2.1", 86400);
	memcpy(msg, a->wire, a->len);
	assert_int_equal(dv_cache_clamp_answer(c, msg, a->len, NULL), 0);
	assert_memory_equal(msg, a->wire, a->len);
	free(a);
	dv_cache_free(c);
}

static void test_negative_without_soa(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q;
	ta_t *a = malloc(sizeof(*a));
	const char *ns_only[] = {
		"ns:example.test. 300 IN NS ns.example.test.", NULL};

	(void)state;
	make_query(&q, "nx.example.test.", LDNS_RR_TYPE_A, 7, 0);
	make_answer(a, "nx.example.test.", LDNS_RR_TYPE_A,
		    LDNS_RCODE_NXDOMAIN, 0, NULL);
	assert_int_equal(a->parse_ret, 0);
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);

	make_answer(a, "nx.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR,
		    0, ns_only);
	assert_int_equal(a->parse_ret, 0);
	assert_true(a->r.negative);
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);

	assert_int_equal(lookup(c, &q, 0), DV_ENOTFOUND);
	dv_cache_stats_t s = stats(c);
	assert_int_equal(s.stores, 0);
	assert_int_equal(s.entries, 0);
	free(a);
	dv_cache_free(c);
}

static void test_uncacheable(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	tq_t q;
	ta_t *a = malloc(sizeof(*a));
	const char *rrs[] = {"an:www.example.test. 300 IN A 192.0.2.1", NULL};
	const uint8_t bad_rcodes[] = {LDNS_RCODE_SERVFAIL, LDNS_RCODE_REFUSED,
				      LDNS_RCODE_FORMERR, LDNS_RCODE_NOTIMPL};

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	for (size_t i = 0; i < sizeof(bad_rcodes); i++) {
		make_answer(a, "www.example.test.", LDNS_RR_TYPE_A,
			    bad_rcodes[i], 0, rrs);
		assert_int_equal(a->parse_ret, 0);
		assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);
	}

	/* TC */
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, A_TC, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);

	/* an extended rcode in the upstream's OPT (BADVERS = 16) */
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, A_EDNS, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_true(a->r.has_opt);
	a->wire[a->r.opt_start + 5] = 1;
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);

	/* a response that does not parse */
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, 0, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_int_equal(store(c, &q, a, 0), 0);
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, a->wire,
					a->len - 1, &a->r, 0),
			 DV_ELIMIT);
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, a->wire, 5,
					&a->r, 0),
			 DV_ELIMIT);
	assert_int_equal(stats(c).stores, 1);
	assert_int_equal(stats(c).entries, 1);

	/* bad arguments */
	assert_int_equal(dv_cache_store(c, q.key, 0, a->wire, a->len, &a->r, 0),
			 -EINVAL);
	assert_int_equal(dv_cache_store(c, q.key, DV_WIRE_KEY_MAX + 1, a->wire,
					a->len, &a->r, 0),
			 -EINVAL);

	free(a);
	dv_cache_free(c);
}

/* More records than ttl_off[] holds: the answer can't be aged. */
static void test_too_many_records(void **state)
{
	dv_cache_t *c = new_cache(1 << 24, 1, 0, 86400, 3600);
	tq_t q;
	ta_t *a = malloc(sizeof(*a));
	const char **rrs = calloc(DV_WIRE_MAX_TTLS + 2, sizeof(*rrs));
	char (*txt)[64] = calloc(DV_WIRE_MAX_TTLS + 1, sizeof(*txt));

	(void)state;
	for (int i = 0; i <= DV_WIRE_MAX_TTLS; i++) {
		snprintf(txt[i], sizeof(txt[i]),
			 "an:www.example.test. 300 IN TXT \"%d\"", i);
		rrs[i] = txt[i];
	}
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_TXT, 1, 0);
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_TXT, 0, 0, rrs);
	assert_int_equal(a->parse_ret, DV_ELIMIT);
	assert_int_equal(store(c, &q, a, 0), DV_ELIMIT);
	/* exactly DV_WIRE_MAX_TTLS is fine */
	rrs[DV_WIRE_MAX_TTLS] = NULL;
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_TXT, 0, 0, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_int_equal(store(c, &q, a, 0), 0);
	int n = lookup(c, &q, 10);
	ldns_pkt *p = served(n);
	assert_int_equal(ldns_pkt_ancount(p), DV_WIRE_MAX_TTLS);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER,
				     DV_WIRE_MAX_TTLS - 1),
			 290);
	ldns_pkt_free(p);

	free(txt);
	free(rrs);
	free(a);
	dv_cache_free(c);
}

static void test_do_cd_distinct_keys(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	const unsigned variants[] = {0, Q_EDNS, Q_EDNS | Q_DO, Q_CD,
				     Q_EDNS | Q_DO | Q_CD};
	enum { NV = sizeof(variants) / sizeof(variants[0]) };
	tq_t q[NV];
	char addr[32];

	(void)state;
	for (unsigned i = 0; i < NV; i++)
		make_query(&q[i], "www.example.test.", LDNS_RR_TYPE_A,
			   (uint16_t)i, variants[i]);
	/* EDNS without DO is the same question as no EDNS */
	assert_int_equal(q[0].key_len, q[1].key_len);
	assert_memory_equal(q[0].key, q[1].key, q[0].key_len);

	for (unsigned i = 1; i < NV; i++) {
		snprintf(addr, sizeof(addr), "192.0.2.%u", 10 + i);
		ta_t *a = answer_a("www.example.test.", addr, 300);
		assert_int_equal(store(c, &q[i], a, 0), 0);
		free(a);
	}
	assert_int_equal(stats(c).entries, NV - 1);
	for (unsigned i = 1; i < NV; i++) {
		int n = lookup(c, &q[i], 1);
		ldns_pkt *p = served(n);
		assert_int_equal(first_a(p), 0xc0000200 + 10 + i);
		assert_int_equal(ldns_pkt_cd(p), (variants[i] & Q_CD) != 0);
		ldns_pkt_free(p);
	}
	dv_cache_free(c);
}

/*
 * RFC 6840 5.7/5.8: a client that asked AD (without DO) and one that asked
 * neither share one entry (the key has no AD bit); the validated answer
 * keeps its AD for the first, and the second never sees it, whichever of
 * them stored it.
 */
static void test_ad_one_entry(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	tq_t plain, ad, ad_edns, do_q;
	ta_t *a = malloc(sizeof(*a));
	const char *rrs[] = {"an:www.example.test. 300 IN A 192.0.2.1", NULL};
	int n;

	(void)state;
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, A_AD | A_EDNS,
		    rrs);
	assert_int_equal(a->parse_ret, 0);
	make_query(&plain, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	make_query(&ad, "www.example.test.", LDNS_RR_TYPE_A, 2, Q_AD);
	make_query(&ad_edns, "www.example.test.", LDNS_RR_TYPE_A, 3,
		   Q_AD | Q_EDNS);
	make_query(&do_q, "www.example.test.", LDNS_RR_TYPE_A, 4,
		   Q_EDNS | Q_DO);
	assert_int_equal(plain.key_len, ad.key_len);
	assert_memory_equal(plain.key, ad.key, ad.key_len);
	assert_memory_equal(plain.key, ad_edns.key, ad.key_len);

	for (unsigned round = 0; round < 2; round++) {
		/* stored for the AD client, then for the plain one */
		assert_int_equal(store(c, round ? &plain : &ad, a, 0), 0);
		n = lookup(c, &ad, 1);
		assert_true(n > 0);
		assert_true(dv_get16(out + 2) & DV_FLAG_AD);
		n = lookup(c, &ad_edns, 1);
		assert_true(n > 0);
		assert_true(dv_get16(out + 2) & DV_FLAG_AD);
		n = lookup(c, &plain, 1);
		assert_true(n > 0);
		assert_false(dv_get16(out + 2) & DV_FLAG_AD);
		ldns_pkt *p = served(n);
		assert_int_equal(first_a(p), 0xc0000201);
		ldns_pkt_free(p);
	}
	/* DO keeps its own entry, with AD */
	assert_int_equal(lookup(c, &do_q, 1), DV_ENOTFOUND);
	assert_int_equal(store(c, &do_q, a, 0), 0);
	n = lookup(c, &do_q, 1);
	assert_true(n > 0);
	assert_true(dv_get16(out + 2) & DV_FLAG_AD);
	free(a);
	dv_cache_free(c);
}

static void test_opt_cut_client_edns(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	tq_t plain, edns, edns_do;
	ta_t *a = malloc(sizeof(*a));
	const char *rrs[] = {"an:www.example.test. 300 IN A 192.0.2.1", NULL};
	ldns_pkt *p;
	int n;

	(void)state;
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, 0, A_EDNS, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_true(a->r.has_opt);
	assert_int_equal(a->r.opt_end, a->len);
	size_t opt_len = (size_t)(a->r.opt_end - a->r.opt_start);

	make_query(&plain, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	make_query(&edns, "www.example.test.", LDNS_RR_TYPE_A, 2, Q_EDNS);
	make_query(&edns_do, "www.example.test.", LDNS_RR_TYPE_A, 3,
		   Q_EDNS | Q_DO);
	assert_int_equal(store(c, &plain, a, 0), 0);

	/* no EDNS from the client: no OPT, ARCOUNT 0 */
	n = lookup(c, &plain, 0);
	assert_int_equal((size_t)n, a->len - opt_len);
	assert_int_equal(dv_get16(out + 10), 0);
	p = served(n);
	assert_false(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_arcount(p), 0);
	assert_int_equal(first_a(p), 0xc0000201);
	ldns_pkt_free(p);

	/* EDNS from the client: exactly one OPT, ours (1232, DO clear) */
	n = lookup(c, &edns, 0);
	assert_int_equal(dv_get16(out + 10), 1);
	p = served(n);
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), DV_EDNS_DEFAULT_UDP);
	assert_false(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);

	/* a DO client has its own entry, and its DO is reflected */
	assert_int_equal(lookup(c, &edns_do, 0), DV_ENOTFOUND);
	assert_int_equal(store(c, &edns_do, a, 0), 0);
	p = served(lookup(c, &edns_do, 0));
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);

	/* padding (RFC 8467) to the client's block */
	n = dv_cache_lookup(c, edns.key, edns.key_len, 0, out, sizeof(out),
			    edns.wire, &edns.q, sizeof(out), 128);
	assert_true(n > 0);
	assert_int_equal(n % 128, 0);
	free(a);
	dv_cache_free(c);
}

/* An OPT that is not the last record is refused (see opt_cuttable()). */
static void test_opt_not_last(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	tq_t q;
	uint8_t w[128];
	size_t n = 0;
	dv_wire_resp_t r;
	static const uint8_t qsec[] = "\3www\7example\4test\0\0\1\0\1";
	static const uint8_t opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0};
	static const uint8_t a_rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c,
				       0, 4, 192, 0, 2, 1};

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	dv_put16(w, 0x4242);
	dv_put16(w + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	dv_put16(w + 4, 1);
	dv_put16(w + 6, 0);
	dv_put16(w + 8, 0);
	dv_put16(w + 10, 2);
	n = DV_DNS_HDR;
	memcpy(w + n, qsec, sizeof(qsec) - 1);
	n += sizeof(qsec) - 1;
	memcpy(w + n, opt, sizeof(opt));
	n += sizeof(opt);
	memcpy(w + n, a_rr, sizeof(a_rr));
	n += sizeof(a_rr);
	assert_int_equal(dv_wire_parse_response(w, n, &r), 0);
	assert_true(r.has_opt);
	assert_true(r.opt_end < n);
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &r, 0),
			 DV_ELIMIT);

	/* the same with the OPT last is cached */
	dv_put16(w + 6, 1);
	dv_put16(w + 10, 1);
	n = DV_DNS_HDR + sizeof(qsec) - 1;
	memcpy(w + n, a_rr, sizeof(a_rr));
	n += sizeof(a_rr);
	memcpy(w + n, opt, sizeof(opt));
	n += sizeof(opt);
	assert_int_equal(dv_wire_parse_response(w, n, &r), 0);
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &r, 0), 0);
	int len = lookup(c, &q, 0);
	assert_int_equal(len, (int)(n - sizeof(opt)));
	ldns_pkt *p = served(len);
	assert_int_equal(first_a(p), 0xc0000201);
	ldns_pkt_free(p);

	/* `r` that lies about the OPT: the re-parse catches it */
	dv_wire_resp_t bad = r;
	bad.has_opt = false;
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &bad, 0),
			 DV_ELIMIT);
	bad = r;
	bad.opt_start = 0;
	bad.question_end = 0;
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &bad, 0),
			 DV_ELIMIT);
	bad = r;
	bad.opt_start = (uint16_t)(bad.opt_start - 16); /* over the A */
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &bad, 0),
			 DV_ELIMIT);
	bad = r;
	bad.n_ttl = 0;
	assert_int_equal(dv_cache_store(c, q.key, q.key_len, w, n, &bad, 0),
			 DV_ELIMIT);
	assert_int_equal(stats(c).stores, 1);
	dv_cache_free(c);
}

static void test_truncation(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	tq_t plain, edns;
	ta_t *a = malloc(sizeof(*a));
	const char *rrs[41];
	char txt[40][100];
	ldns_pkt *p;
	int n;

	(void)state;
	for (int i = 0; i < 40; i++) {
		snprintf(txt[i], sizeof(txt[i]),
			 "an:big.example.test. 300 IN TXT "
			 "\"record %02d with some padding text\"",
			 i);
		rrs[i] = txt[i];
	}
	rrs[40] = NULL;
	make_answer(a, "big.example.test.", LDNS_RR_TYPE_TXT, 0, A_EDNS, rrs);
	assert_int_equal(a->parse_ret, 0);
	assert_true(a->len > 1232);
	make_query(&plain, "big.example.test.", LDNS_RR_TYPE_TXT, 1, 0);
	make_query(&edns, "big.example.test.", LDNS_RR_TYPE_TXT, 2, Q_EDNS);
	assert_int_equal(store(c, &plain, a, 0), 0);

	n = dv_cache_lookup(c, plain.key, plain.key_len, 0, out, sizeof(out),
			    plain.wire, &plain.q, dv_wire_udp_limit(&plain.q),
			    0);
	assert_true(n > 0 && n <= 512);
	p = served(n);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);

	n = dv_cache_lookup(c, edns.key, edns.key_len, 0, out, sizeof(out),
			    edns.wire, &edns.q, dv_wire_udp_limit(&edns.q), 0);
	assert_true(n > 0 && n <= 1232);
	p = served(n);
	assert_true(ldns_pkt_tc(p));
	assert_true(ldns_pkt_edns(p));
	ldns_pkt_free(p);

	/* over a stream (no limit) the whole answer */
	n = lookup(c, &edns, 0);
	p = served(n);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 40);
	ldns_pkt_free(p);

	/* and a buffer too small for an answer that may not be truncated
	 * is an error, not an overrun */
	n = dv_cache_lookup(c, plain.key, plain.key_len, 0, out, 100,
			    plain.wire, &plain.q, sizeof(out), 0);
	assert_int_equal(n, DV_ESPACE);

	free(a);
	dv_cache_free(c);
}

static void name_n(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "n%04u.example.test.", i);
}

static void test_lru_eviction(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 1, 0, 86400, 3600);
	char name[64];
	tq_t q[6];
	ta_t *a[6];

	(void)state;
	for (unsigned i = 0; i < 6; i++) {
		name_n(name, sizeof(name), i);
		make_query(&q[i], name, LDNS_RR_TYPE_A, 1, 0);
		a[i] = answer_a(name, "192.0.2.1", 300);
	}
	/* every entry has the same size: measure one */
	assert_int_equal(store(c, &q[0], a[0], 0), 0);
	uint64_t one = stats(c).bytes;
	assert_true(one > a[0]->len + q[0].key_len);
	dv_cache_free(c);

	/* room for three */
	c = new_cache(3 * one + one / 2, 1, 0, 86400, 3600);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(store(c, &q[i], a[i], 0), 0);
	assert_int_equal(stats(c).bytes, 3 * one);
	assert_true(lookup(c, &q[0], 1) > 0); /* 0 is now the most recent */
	assert_int_equal(store(c, &q[3], a[3], 1), 0);
	dv_cache_stats_t s = stats(c);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(s.entries, 3);
	assert_int_equal(s.bytes, 3 * one);
	assert_int_equal(lookup(c, &q[1], 2), DV_ENOTFOUND); /* the oldest */
	assert_true(lookup(c, &q[0], 2) > 0);
	assert_true(lookup(c, &q[2], 2) > 0);
	assert_true(lookup(c, &q[3], 2) > 0);
	/* LRU order now 3, 2, 0 (oldest): two more evict 0 then 2 */
	assert_true(lookup(c, &q[3], 3) > 0);
	assert_int_equal(store(c, &q[4], a[4], 3), 0);
	assert_int_equal(lookup(c, &q[0], 3), DV_ENOTFOUND);
	assert_int_equal(store(c, &q[5], a[5], 3), 0);
	assert_int_equal(lookup(c, &q[2], 3), DV_ENOTFOUND);
	assert_true(lookup(c, &q[3], 3) > 0);
	assert_true(lookup(c, &q[4], 3) > 0);
	assert_true(lookup(c, &q[5], 3) > 0);
	s = stats(c);
	assert_int_equal(s.evictions, 3);
	assert_int_equal(s.bytes, 3 * one);

	/* replacing a key frees the old entry, no eviction */
	ta_t *b = answer_a("n0004.example.test.", "192.0.2.99", 600);
	assert_int_equal(store(c, &q[4], b, 4), 0);
	s = stats(c);
	assert_int_equal(s.entries, 3);
	assert_int_equal(s.evictions, 3);
	assert_int_equal(s.bytes, 3 * one);
	ldns_pkt *p = served(lookup(c, &q[4], 4));
	assert_int_equal(first_a(p), 0xc0000263);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 600);
	ldns_pkt_free(p);
	free(b);

	/* all expire: the accounting goes back to zero */
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(lookup(c, &q[i], 100000), DV_ENOTFOUND);
	s = stats(c);
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(s.expired, 3);

	/* an entry larger than the shard's budget */
	dv_cache_free(c);
	c = new_cache(one - 1, 1, 0, 86400, 3600);
	assert_int_equal(store(c, &q[0], a[0], 0), DV_ELIMIT);
	assert_int_equal(stats(c).entries, 0);
	dv_cache_free(c);
	c = new_cache(one, 1, 0, 86400, 3600);
	assert_int_equal(store(c, &q[0], a[0], 0), 0);
	assert_int_equal(store(c, &q[1], a[1], 0), 0);
	assert_int_equal(stats(c).entries, 1);
	assert_int_equal(stats(c).evictions, 1);

	for (unsigned i = 0; i < 6; i++)
		free(a[i]);
	dv_cache_free(c);
}

/* Many keys in one shard: the table grows, everything stays reachable. */
static void test_many_keys(void **state)
{
	enum { N = 2000 };
	dv_cache_t *c = new_cache(64 << 20, 2, 0, 86400, 3600);
	char name[64];
	tq_t *q = malloc(N * sizeof(*q));

	(void)state;
	ta_t *a = answer_a("x.example.test.", "192.0.2.1", 300);
	for (unsigned i = 0; i < N; i++) {
		name_n(name, sizeof(name), i);
		make_query(&q[i], name, LDNS_RR_TYPE_A, 1, 0);
		/* the cache does not check the question against the key */
		assert_int_equal(store(c, &q[i], a, 0), 0);
	}
	assert_int_equal(stats(c).entries, N);
	for (unsigned i = 0; i < N; i++)
		assert_true(lookup(c, &q[i], 1) > 0);
	dv_cache_stats_t s = stats(c);
	assert_int_equal(s.hits, N);
	assert_int_equal(s.misses, 0);
	free(a);
	free(q);
	dv_cache_free(c); /* LeakSanitizer checks the rest */
}

static void test_stats(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 8, 0, 86400, 3600);
	tq_t q1, q2;
	ta_t *a1 = answer_a("a.example.test.", "192.0.2.1", 100);
	ta_t *a2 = answer_a("b.example.test.", "192.0.2.2", 100);

	(void)state;
	make_query(&q1, "a.example.test.", LDNS_RR_TYPE_A, 1, 0);
	make_query(&q2, "b.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(lookup(c, &q1, 0), DV_ENOTFOUND);
	assert_int_equal(store(c, &q1, a1, 0), 0);
	assert_int_equal(store(c, &q2, a2, 0), 0);
	assert_int_equal(store(c, &q2, a2, 0), 0);
	assert_true(lookup(c, &q1, 1) > 0);
	assert_true(lookup(c, &q1, 2) > 0);
	assert_true(lookup(c, &q2, 3) > 0);
	assert_int_equal(lookup(c, &q2, 100), DV_ENOTFOUND);

	dv_cache_stats_t s = stats(c);
	assert_int_equal(s.hits, 3);
	assert_int_equal(s.misses, 2); /* an expired entry is a miss too */
	assert_int_equal(s.expired, 1);
	assert_int_equal(s.stores, 3);
	assert_int_equal(s.evictions, 0);
	assert_int_equal(s.entries, 1);
	assert_true(s.bytes > a1->len);

	free(a1);
	free(a2);
	dv_cache_free(c);
}

/* ---- threads ---- */

enum { MT_THREADS = 4, MT_OPS = 20000, MT_KEYS = 64 };

struct mt_shared {
	dv_cache_t *c;
	tq_t q[MT_KEYS];
	ta_t *a[MT_KEYS];
};

struct mt_thread {
	pthread_t tid;
	struct mt_shared *sh;
	unsigned seed;
	uint64_t lookups, hits, stores, refused, bad;
};

static void *mt_run(void *arg)
{
	struct mt_thread *t = arg;
	struct mt_shared *sh = t->sh;
	uint8_t buf[1024];
	uint32_t x = t->seed;

	for (unsigned i = 0; i < MT_OPS; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		unsigned k = x % MT_KEYS;
		uint32_t now = i / 500; /* TTLs of 1-8 s: entries expire */
		const tq_t *q = &sh->q[k];

		if ((x >> 8) % 16 == 0) {
			const ta_t *a = sh->a[k];
			int ret = dv_cache_store(sh->c, q->key, q->key_len,
						 a->wire, a->len, &a->r, now);
			if (ret == 0)
				t->stores++;
			else if (ret == DV_ELIMIT)
				t->refused++;
			else
				t->bad++;
			continue;
		}
		t->lookups++;
		int n = dv_cache_lookup(sh->c, q->key, q->key_len, now, buf,
					sizeof(buf), q->wire, &q->q,
					sizeof(buf), 0);
		if (n == DV_ENOTFOUND)
			continue;
		t->hits++;
		/* the right answer: our id and question, its address */
		if (n != (int)sh->a[k]->len || dv_get16(buf) != q->q.id ||
		    memcmp(buf + DV_DNS_HDR, q->wire + DV_DNS_HDR,
			   q->q.question_end - DV_DNS_HDR) != 0 ||
		    dv_get32(buf + n - 4) != 0xc0000200u + k)
			t->bad++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct mt_shared *sh = calloc(1, sizeof(*sh));
	struct mt_thread th[MT_THREADS];
	char name[64], addr[32];
	uint64_t lookups = 0, hits = 0, stores = 0;

	(void)state;
	for (unsigned k = 0; k < MT_KEYS; k++) {
		name_n(name, sizeof(name), k);
		snprintf(addr, sizeof(addr), "192.0.2.%u", k);
		make_query(&sh->q[k], name, LDNS_RR_TYPE_A, (uint16_t)k, 0);
		sh->a[k] = answer_a(name, addr, 1 + k % 8);
	}
	/* the budget holds about half the keys: evictions happen too */
	uint64_t one;
	{
		dv_cache_t *probe = new_cache(1 << 20, 1, 0, 86400, 3600);
		assert_int_equal(store(probe, &sh->q[0], sh->a[0], 0), 0);
		one = stats(probe).bytes;
		dv_cache_free(probe);
	}
	sh->c = new_cache(MT_KEYS / 2 * one, 4, 0, 86400, 3600);

	for (unsigned i = 0; i < MT_THREADS; i++) {
		th[i] = (struct mt_thread){.sh = sh, .seed = 2463534242u + i};
		assert_int_equal(pthread_create(&th[i].tid, NULL, mt_run,
						&th[i]),
				 0);
	}
	for (unsigned i = 0; i < MT_THREADS; i++) {
		assert_int_equal(pthread_join(th[i].tid, NULL), 0);
		assert_int_equal(th[i].bad, 0);
		assert_int_equal(th[i].refused, 0);
		lookups += th[i].lookups;
		hits += th[i].hits;
		stores += th[i].stores;
	}

	dv_cache_stats_t s = stats(sh->c);
	assert_int_equal(s.hits, hits);
	assert_int_equal(s.hits + s.misses, lookups);
	assert_int_equal(s.stores, stores);
	assert_true(hits > 0 && s.evictions > 0 && s.expired > 0);
	assert_true(s.entries <= MT_KEYS);
	assert_true(s.bytes <= MT_KEYS / 2 * one);
	assert_int_equal(s.bytes, s.entries * one);

	/* everything expires: entries and bytes agree with what was there */
	for (unsigned k = 0; k < MT_KEYS; k++)
		assert_int_equal(lookup(sh->c, &sh->q[k], 1000000),
				 DV_ENOTFOUND);
	s = stats(sh->c);
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.bytes, 0);

	for (unsigned k = 0; k < MT_KEYS; k++)
		free(sh->a[k]);
	dv_cache_free(sh->c);
	free(sh);
}

/* ---- serve-stale, SERVFAIL entries, prefetch ---- */

/* The first EDE info code in the served answer (ldns), -1 if none. */
static int served_ede(ldns_pkt *p)
{
	ldns_edns_option_list *l = ldns_pkt_edns_get_option_list(p);

	if (l == NULL)
		return -1;
	for (size_t i = 0; i < ldns_edns_option_list_get_count(l); i++) {
		ldns_edns_option *o = ldns_edns_option_list_get_option(l, i);
		if (ldns_edns_get_code(o) == LDNS_EDNS_EDE &&
		    ldns_edns_get_size(o) >= 2)
			return dv_get16(ldns_edns_get_data(o));
	}
	return -1;
}

static void test_stale_window(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	dv_cache_policy_t pol = {.stale_max_age = 100};
	const char *rrs[] = {"an:www.example.test. 60 IN A 192.0.2.1",
			     "ns:example.test. 300 IN NS ns.example.test.",
			     NULL};
	ta_t *a = malloc(sizeof(*a));
	tq_t q, qe;
	unsigned fl;
	ldns_pkt *p;
	int n;

	(void)state;
	assert_non_null(a);
	make_answer(a, "www.example.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR,
		    0, rrs);
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	make_query(&qe, "www.example.test.", LDNS_RR_TYPE_A, 2, Q_EDNS);
	assert_int_equal(store(c, &q, a, 100), 0);

	/* fresh: lookup_stale serves it as a normal hit, no flag */
	n = lookup_stale(c, &qe, 130, 100, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, 0);
	assert_int_equal(last_ttl, 30); /* the smallest TTL, aged */
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 30);
	assert_int_equal(served_ede(p), -1);
	ldns_pkt_free(p);

	/* expired: a miss that keeps the entry, flagged for serve-stale */
	assert_int_equal(lookup_pol(c, &q, 160, &pol, &fl), DV_ENOTFOUND);
	assert_int_equal(fl, DV_CACHE_HAS_STALE);
	assert_int_equal(stats(c).entries, 1);

	/* stale: every TTL 30, EDE 3 with EDNS, no OPT without */
	n = lookup_stale(c, &qe, 200, 100, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, DV_CACHE_STALE);
	assert_int_equal(last_ttl, DV_CACHE_STALE_TTL);
	p = served(n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_id(p), 2);
	assert_int_equal(first_a(p), 0xc0000201);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0),
			 DV_CACHE_STALE_TTL);
	assert_int_equal(section_ttl(p, LDNS_SECTION_AUTHORITY, 0),
			 DV_CACHE_STALE_TTL);
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(served_ede(p), DV_EDE_STALE);
	ldns_pkt_free(p);
	n = lookup_stale(c, &q, 200, 100, &fl);
	assert_true(n > 0);
	p = served(n);
	assert_false(ldns_pkt_edns(p));
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 30);
	ldns_pkt_free(p);

	/* the window is counted from the expiry: 160 + 100 */
	assert_true(lookup_stale(c, &q, 259, 100, &fl) > 0);
	assert_int_equal(lookup_stale(c, &q, 260, 100, &fl), DV_ENOTFOUND);
	assert_int_equal(fl, 0);
	assert_int_equal(last_ttl, 0);
	assert_int_equal(lookup_stale(c, &q, 200, 0, &fl), DV_ENOTFOUND);
	/* past the window a lookup removes it */
	assert_int_equal(stats(c).entries, 1);
	assert_int_equal(lookup_pol(c, &q, 260, &pol, &fl), DV_ENOTFOUND);
	assert_int_equal(fl, 0);
	assert_int_equal(stats(c).entries, 0);
	assert_int_equal(stats(c).expired, 1);

	/* without a policy (dv_cache_lookup) expiry removes at once */
	assert_int_equal(store(c, &q, a, 100), 0);
	assert_int_equal(lookup(c, &q, 160), DV_ENOTFOUND);
	assert_int_equal(stats(c).entries, 0);
	assert_int_equal(lookup_stale(c, &q, 161, 100, NULL), DV_ENOTFOUND);

	free(a);
	dv_cache_free(c);
}

static void test_servfail_entries(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	dv_cache_policy_t pol = {.stale_max_age = 1000};
	ta_t *a = answer_a("www.example.test.", "192.0.2.1", 60);
	tq_t q, qe, other;
	unsigned fl;
	ldns_pkt *p;
	int n;

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	make_query(&qe, "www.example.test.", LDNS_RR_TYPE_A, 7, Q_EDNS);
	make_query(&other, "other.example.test.", LDNS_RR_TYPE_A, 3, Q_EDNS);
	assert_int_equal(dv_cache_store_servfail(c, other.key, other.key_len,
						 DV_EDE_NETWORK_ERROR, 0, 10),
			 DV_ELIMIT);

	/* no answer known: SERVFAIL from the cache with the EDE, for ttl */
	assert_int_equal(dv_cache_store_servfail(c, other.key, other.key_len,
						 DV_EDE_NETWORK_ERROR, 5, 10),
			 0);
	n = lookup_pol(c, &other, 12, &pol, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, DV_CACHE_SERVFAIL);
	assert_int_equal(last_ttl, 0); /* no HTTP freshness for a failure */
	p = served(n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_int_equal(ldns_pkt_id(p), 3);
	assert_int_equal(served_ede(p), DV_EDE_NETWORK_ERROR);
	ldns_pkt_free(p);
	assert_int_equal(lookup_stale(c, &other, 12, 1000, &fl), DV_ENOTFOUND);
	/* over: a miss, and the entry is gone */
	assert_int_equal(lookup_pol(c, &other, 15, &pol, &fl), DV_ENOTFOUND);
	assert_int_equal(fl, 0);
	assert_int_equal(stats(c).entries, 0);

	/* a stale answer wins over the remembered failure */
	assert_int_equal(store(c, &q, a, 100), 0);
	assert_int_equal(dv_cache_store_servfail(c, q.key, q.key_len,
						 DV_EDE_NO_REACHABLE_AUTHORITY,
						 5, 170),
			 0);
	assert_int_equal(stats(c).entries, 1);
	n = lookup_pol(c, &qe, 171, &pol, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, DV_CACHE_STALE);
	p = served(n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 30);
	assert_int_equal(served_ede(p), DV_EDE_STALE);
	ldns_pkt_free(p);
	/* without a stale window: the SERVFAIL */
	n = lookup_pol(c, &qe, 171, NULL, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, DV_CACHE_SERVFAIL);
	p = served(n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_int_equal(served_ede(p), DV_EDE_NO_REACHABLE_AUTHORITY);
	ldns_pkt_free(p);
	/* after the failure ttl: a miss (the fetch goes upstream again) */
	assert_int_equal(lookup_pol(c, &q, 175, &pol, &fl), DV_ENOTFOUND);
	assert_int_equal(fl, DV_CACHE_HAS_STALE);

	/* a store replaces the mark */
	assert_int_equal(dv_cache_store_servfail(c, q.key, q.key_len, 0xffff,
						 60, 180),
			 0);
	assert_int_equal(store(c, &q, a, 181), 0);
	n = lookup_pol(c, &q, 182, &pol, &fl);
	assert_true(n > 0);
	assert_int_equal(fl, 0);
	assert_int_equal(last_ttl, 59);
	p = served(n);
	assert_int_equal(section_ttl(p, LDNS_SECTION_ANSWER, 0), 59);
	ldns_pkt_free(p);

	free(a);
	dv_cache_free(c);
}

static void test_prefetch_mark(void **state)
{
	dv_cache_t *c = new_cache(1 << 20, 4, 0, 86400, 3600);
	dv_cache_policy_t pol = {.stale_max_age = 0, .prefetch_hits = 3,
				 .prefetch_window_pct = 10};
	ta_t *a = answer_a("www.example.test.", "192.0.2.1", 100);
	ta_t *s4 = answer_a("www.example.test.", "192.0.2.1", 4);
	tq_t q;
	unsigned fl;

	(void)state;
	make_query(&q, "www.example.test.", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(store(c, &q, a, 1000), 0);
	/* hits outside the window (last 10 s of 100) never prefetch */
	for (uint32_t t = 1000; t < 1090; t += 10) {
		assert_true(lookup_pol(c, &q, t, &pol, &fl) > 0);
		assert_int_equal(fl, 0);
	}
	/* inside the window, enough hits: handed out once */
	assert_true(lookup_pol(c, &q, 1091, &pol, &fl) > 0);
	assert_int_equal(fl, DV_CACHE_PREFETCH);
	assert_true(lookup_pol(c, &q, 1092, &pol, &fl) > 0);
	assert_int_equal(fl, 0);
	assert_true(lookup_pol(c, &q, 1099, &pol, &fl) > 0);
	assert_int_equal(fl, 0);
	/* the refreshed answer is a new entry: counted again */
	assert_int_equal(store(c, &q, a, 1095), 0);
	assert_true(lookup_pol(c, &q, 1190, &pol, &fl) > 0);
	assert_int_equal(fl, 0); /* one hit only */
	assert_true(lookup_pol(c, &q, 1191, &pol, &fl) > 0);
	assert_true(lookup_pol(c, &q, 1192, &pol, &fl) > 0);
	assert_int_equal(fl, DV_CACHE_PREFETCH);

	/* short lifetimes: the window is at least the last second, never
	 * the first */
	assert_int_equal(store(c, &q, s4, 2000), 0);
	for (uint32_t t = 2000; t < 2003; t++)
		for (unsigned i = 0; i < 5; i++) {
			assert_true(lookup_pol(c, &q, t, &pol, &fl) > 0);
			assert_int_equal(fl, 0);
		}
	assert_true(lookup_pol(c, &q, 2003, &pol, &fl) > 0);
	assert_int_equal(fl, DV_CACHE_PREFETCH);
	/* no policy, no prefetch */
	assert_int_equal(store(c, &q, s4, 3000), 0);
	for (unsigned i = 0; i < 5; i++)
		assert_true(lookup_pol(c, &q, 3003, NULL, &fl) > 0);
	assert_int_equal(fl, 0);

	free(a);
	free(s4);
	dv_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_free),
		cmocka_unit_test(test_miss_store_hit),
		cmocka_unit_test(test_client_id_and_case),
		cmocka_unit_test(test_ttl_countdown_and_expiry),
		cmocka_unit_test(test_lifetime_smallest_ttl),
		cmocka_unit_test(test_ttl_clamps),
		cmocka_unit_test(test_negative_soa),
		cmocka_unit_test(test_negative_without_soa),
		cmocka_unit_test(test_uncacheable),
		cmocka_unit_test(test_too_many_records),
		cmocka_unit_test(test_do_cd_distinct_keys),
		cmocka_unit_test(test_ad_one_entry),
		cmocka_unit_test(test_clamp_answer),
		cmocka_unit_test(test_opt_cut_client_edns),
		cmocka_unit_test(test_opt_not_last),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_stale_window),
		cmocka_unit_test(test_servfail_entries),
		cmocka_unit_test(test_prefetch_mark),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

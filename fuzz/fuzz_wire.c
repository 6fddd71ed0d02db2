/*
 * DNS wire view: arbitrary bytes as a query (parse, key, error answers,
 * normalized upstream query, an answer built for it), as an upstream
 * response (parse, question match, the client answer with and without
 * truncation and padding), and as a bag of names (dv_wire_name at every
 * offset).  Besides memory errors it checks what the writers promise:
 * what they produce parses again with our own parser, sizes stay within
 * limits, padding lands on the block.  A broken promise aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

/* The client question the input is answered to when read as a response. */
static const uint8_t question[] = {
	0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'W', 'w', 'W', 7, 'e', 'X',
	'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};

/* An upstream answer to www.example.test/A (two A records, OPT last), the
 * answer given when the input is read as a client query. */
static const uint8_t upstream_answer[] = {
	0, 2, 0x81, 0xa0, /* QR RD RA AD */ 0, 1, 0, 2, 0, 0, 0, 1,
	3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e',
	's', 't', 0, 0, 1, 0, 1,
	0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1,
	0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 2,
	0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0};

/* Every name in the input, wherever it starts. */
static void names(const uint8_t *data, size_t size)
{
	uint8_t out[DV_DNS_MAX_NAME];
	for (size_t i = 0; i < size; i++) {
		size_t off = i, out_len = 0;
		if (dv_wire_name(data, size, &off, out, &out_len) != 0)
			continue;
		CHECK(off > i && off <= size);
		CHECK(out_len >= 1 && out_len <= DV_DNS_MAX_NAME);
		CHECK(out[out_len - 1] == 0);
		/* the same walk without an output buffer */
		size_t off2 = i;
		CHECK(dv_wire_name(data, size, &off2, NULL, NULL) == 0);
		CHECK(off2 == off);
		/* lowercased (length octets are < 64, never letters) */
		for (size_t k = 0; k < out_len; k++)
			CHECK(!(out[k] >= 'A' && out[k] <= 'Z'));
	}
}

/* An answer we wrote: a response our parser accepts, its OPT last. */
static void check_answer(const uint8_t *a, int n, size_t limit,
			 bool want_opt, unsigned pad_block)
{
	CHECK(n >= DV_DNS_HDR);
	static dv_wire_resp_t r;
	int ret = dv_wire_parse_response(a, (size_t)n, &r);
	CHECK(ret == 0 || ret == DV_ELIMIT);
	CHECK(r.has_opt == want_opt);
	if (r.has_opt)
		CHECK(r.opt_end == (size_t)n);
	if (pad_block && want_opt)
		CHECK(n % pad_block == 0);
	/* longer than the limit only when even header + question + OPT is */
	if ((size_t)n > limit)
		CHECK(dv_get16(a + 2) & DV_FLAG_TC);
	if (dv_get16(a + 2) & DV_FLAG_TC && (size_t)n > limit)
		CHECK(dv_get16(a + 6) == 0 && dv_get16(a + 8) == 0);
}

static void as_query(const uint8_t *data, size_t size, uint8_t *out,
		     size_t cap)
{
	dv_wire_query_t q;
	int ret = dv_wire_parse_query(data, size, &q);
	if (ret == DV_ESHORT || ret == DV_ENOTQUERY)
		return;
	CHECK(q.question_end == 0 ||
	      (q.question_end > DV_DNS_HDR && q.question_end <= size));

	static const uint8_t rcodes[] = {DV_RCODE_FORMERR, DV_RCODE_BADVERS};
	for (unsigned k = 0; k < 2; k++) {
		unsigned pad = k ? 468 : 0;
		int n = dv_wire_error(out, cap, data, &q, rcodes[k],
				      k ? DV_EDE_OTHER : 0xffff, "x", pad);
		CHECK(n >= DV_DNS_HDR);
		CHECK(dv_get16(out) == q.id);
		if (q.question_end) {
			check_answer(out, n, DV_DNS_MAX_MSG, q.has_opt, pad);
			CHECK(memcmp(out + DV_DNS_HDR, data + DV_DNS_HDR,
				     q.question_end - DV_DNS_HDR) == 0);
		}
	}
	if (ret != 0)
		return;

	uint8_t key[DV_WIRE_KEY_MAX];
	size_t klen = dv_wire_key(key, data, &q);
	CHECK(klen == (size_t)q.qname_len + 5 && klen <= DV_WIRE_KEY_MAX);

	uint8_t up[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11];
	int n = dv_wire_upstream_query(up, sizeof(up), 0x4242, data, &q);
	CHECK(n == q.question_end + 11);
	dv_wire_query_t uq;
	CHECK(dv_wire_parse_query(up, (size_t)n, &uq) == 0);
	CHECK(uq.has_opt && uq.edns_do == q.edns_do && uq.qtype == q.qtype);
	/* AD always asked upstream; given only to a client that takes it
	 * (RFC 6840 5.7, 5.8) */
	CHECK(uq.flags & DV_FLAG_AD);
	bool ad_ok = q.edns_do || (q.flags & DV_FLAG_AD);
	uint8_t ukey[DV_WIRE_KEY_MAX];
	CHECK(dv_wire_key(ukey, up, &uq) == klen);
	CHECK(memcmp(ukey, key, klen) == 0);

	/* this query answered from a fixed upstream answer */
	dv_wire_resp_t r;
	CHECK(dv_wire_parse_response(upstream_answer, sizeof(upstream_answer),
				     &r) == 0);
	size_t limit = dv_wire_udp_limit(&q);
	CHECK(limit >= 512 && limit <= DV_EDNS_DEFAULT_UDP);
	n = dv_wire_answer(out, cap, upstream_answer, sizeof(upstream_answer),
			   &r, data, &q, 100, limit, 0xffff, NULL, 0);
	if (n > 0) {
		check_answer(out, n, limit, q.has_opt, 0);
		CHECK(dv_get16(out) == q.id);
		CHECK(ad_ok || !(dv_get16(out + 2) & DV_FLAG_AD));
	}
}

static void as_response(const uint8_t *data, size_t size, uint8_t *out,
			size_t cap)
{
	dv_wire_query_t cq;
	CHECK(dv_wire_parse_query(question, sizeof(question), &cq) == 0);
	cq.has_opt = size & 1;
	cq.edns_do = size & 2;
	cq.edns_udp_size = 1232;
	static dv_wire_resp_t r;
	int ret = dv_wire_parse_response(data, size, &r);
	/* The writers may assume the caller matched the question (the client
	 * name is copied over the upstream's): check their output only then. */
	bool match = dv_wire_question_matches(data, size, question,
					      sizeof(question));
	if (ret != 0 && ret != DV_ELIMIT)
		return;
	CHECK(r.n_ttl <= DV_WIRE_MAX_TTLS);
	for (unsigned i = 0; i < r.n_ttl; i++)
		CHECK(r.ttl_off[i] >= DV_DNS_HDR && r.ttl_off[i] + 6u <= size);
	if (r.has_opt)
		CHECK(r.opt_start < r.opt_end && r.opt_end <= size);

	int n = dv_wire_answer(out, cap, data, size, &r, question, &cq, 30,
			       512, 0xffff, NULL, 0);
	if (n > 0 && match)
		check_answer(out, n, 512, cq.has_opt, 0);
	n = dv_wire_answer(out, cap, data, size, &r, question, &cq, 0, 65535,
			   DV_EDE_STALE, "stale", 468);
	if (n > 0 && match)
		check_answer(out, n, 65535, cq.has_opt, 468);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[DV_DNS_MAX_MSG + 1];
	if (size > DV_DNS_MAX_MSG)
		return 0;
	as_query(data, size, out, sizeof(out));
	as_response(data, size, out, sizeof(out));
	names(data, size);
	return 0;
}

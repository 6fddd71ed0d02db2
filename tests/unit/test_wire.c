/*
 * Unit tests for the DNS wire view (src/core/wire.c).  Ordinary messages are
 * built with ldns and everything dnsveil writes is read back with ldns;
 * the hostile cases (pointer loops, lying counts, broken OPTs) are written
 * by hand, byte by byte, because no sane library produces them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "src/core/errors.h"
#include "src/core/wire.h"

/* ---- hand-written messages ---- */

#define BUF_MAX 8192
typedef struct {
	uint8_t b[BUF_MAX];
	size_t n;
} buf_t;

static void b_raw(buf_t *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void b_u8(buf_t *b, uint8_t v)
{
	b_raw(b, &v, 1);
}

static void b_u16(buf_t *b, uint16_t v)
{
	uint8_t p[2];
	dv_put16(p, v);
	b_raw(b, p, 2);
}

static void b_u32(buf_t *b, uint32_t v)
{
	uint8_t p[4];
	dv_put32(p, v);
	b_raw(b, p, 4);
}

static void b_hdr(buf_t *b, uint16_t id, uint16_t flags, uint16_t qd,
		  uint16_t an, uint16_t ns, uint16_t ar)
{
	b->n = 0;
	b_u16(b, id);
	b_u16(b, flags);
	b_u16(b, qd);
	b_u16(b, an);
	b_u16(b, ns);
	b_u16(b, ar);
}

/* A dotted name ("www.example.com", "" or "." for the root), uncompressed. */
static void b_name(buf_t *b, const char *name)
{
	const char *p = name;
	while (*p && strcmp(p, ".") != 0) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		assert_true(l > 0 && l < 64);
		b_u8(b, (uint8_t)l);
		b_raw(b, p, l);
		p += l;
		if (*p == '.')
			p++;
	}
	b_u8(b, 0);
}

static void b_ptr(buf_t *b, uint16_t target)
{
	b_u16(b, (uint16_t)(0xc000 | target));
}

static void b_question(buf_t *b, const char *name, uint16_t type)
{
	b_name(b, name);
	b_u16(b, type);
	b_u16(b, DV_CLASS_IN);
}

/* The fixed part of a record after its owner name. */
static void b_rr_fixed(buf_t *b, uint16_t type, uint16_t class, uint32_t ttl,
		       uint16_t rdlen)
{
	b_u16(b, type);
	b_u16(b, class);
	b_u32(b, ttl);
	b_u16(b, rdlen);
}

/* An OPT RR (root owner) with `rdlen` bytes of options to follow. */
static void b_opt(buf_t *b, uint16_t udp, uint8_t version, bool do_bit,
		  uint16_t rdlen)
{
	b_u8(b, 0);
	b_rr_fixed(b, DV_TYPE_OPT, udp,
		   ((uint32_t)version << 16) | (do_bit ? 0x8000u : 0), rdlen);
}

/* ---- messages built with ldns ---- */

typedef struct {
	uint8_t w[BUF_MAX];
	size_t len;
	dv_wire_query_t q;
	dv_wire_resp_t r;
	int ret;
} msg_t;

static void to_wire(msg_t *m, ldns_pkt *p)
{
	uint8_t *w = NULL;
	size_t n = 0;
	assert_int_equal(ldns_pkt2wire(&w, p, &n), LDNS_STATUS_OK);
	assert_true(n <= sizeof(m->w));
	memcpy(m->w, w, n);
	m->len = n;
	free(w);
	ldns_pkt_free(p);
}

enum {
	O_EDNS = 1,
	O_DO = 2,
	O_CD = 4,
	O_NORD = 8,
	O_PAD = 16,
	O_KEEPALIVE = 32,
	O_COOKIE = 64,
	O_EDE = 128,
	O_AD = 256,
};

static void add_edns(ldns_pkt *p, unsigned o, uint16_t udp, uint8_t version)
{
	ldns_pkt_set_edns_udp_size(p, udp);
	ldns_pkt_set_edns_version(p, version);
	ldns_pkt_set_edns_do(p, (o & O_DO) != 0);
	if (!(o & (O_PAD | O_KEEPALIVE | O_COOKIE | O_EDE)))
		return;
	ldns_edns_option_list *l = ldns_edns_option_list_new();
	assert_non_null(l);
	if (o & O_COOKIE) {
		static const uint8_t cookie[8] = {1, 2, 3, 4, 5, 6, 7, 8};
		ldns_edns_option_list_push(
			l, ldns_edns_new_from_data(LDNS_EDNS_COOKIE, 8, cookie));
	}
	if (o & O_KEEPALIVE)
		ldns_edns_option_list_push(
			l, ldns_edns_new_from_data(LDNS_EDNS_KEEPALIVE, 0, NULL));
	if (o & O_EDE) {
		static const uint8_t ede[] = {0, 22, 'n', 'o', 'p', 'e'};
		ldns_edns_option_list_push(
			l, ldns_edns_new_from_data(LDNS_EDNS_EDE, sizeof(ede),
						   ede));
		static const uint8_t ede2[] = {0, 3};
		ldns_edns_option_list_push(
			l, ldns_edns_new_from_data(LDNS_EDNS_EDE, sizeof(ede2),
						   ede2));
	}
	if (o & O_PAD) {
		static const uint8_t zeros[16];
		ldns_edns_option_list_push(
			l, ldns_edns_new_from_data(LDNS_EDNS_PADDING,
						   sizeof(zeros), zeros));
	}
	ldns_pkt_set_edns_option_list(p, l);
}

/* A query; parses it and asserts that the parse succeeded. */
static void mkq_v(msg_t *m, const char *name, ldns_rr_type type, uint16_t id,
		  unsigned o, uint16_t udp, uint8_t version)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(
				 &p, name, type, LDNS_RR_CLASS_IN,
				 (o & O_NORD) ? 0 : LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_cd(p, (o & O_CD) != 0);
	ldns_pkt_set_ad(p, (o & O_AD) != 0);
	if (o & O_EDNS)
		add_edns(p, o, udp, version);
	to_wire(m, p);
	m->ret = dv_wire_parse_query(m->w, m->len, &m->q);
	assert_int_equal(m->ret, 0);
}

static void mkq(msg_t *m, const char *name, ldns_rr_type type, uint16_t id,
		unsigned o)
{
	mkq_v(m, name, type, id, o, 4096, 0);
}

/*
 * An upstream response.  `rrs` is NULL-terminated, each record prefixed
 * with its section, "an:", "ns:" or "ar:", in presentation format.  The
 * OPT (if O_EDNS) is written last by ldns.
 */
static void mkr(msg_t *m, const char *qname, ldns_rr_type qtype, uint16_t id,
		uint8_t rcode, unsigned o, const char *const *rrs)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, qname, qtype,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_qr(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_ad(p, true);
	ldns_pkt_set_cd(p, (o & O_CD) != 0);
	ldns_pkt_set_rcode(p, rcode);
	for (; rrs && *rrs; rrs++) {
		const char *s = *rrs;
		ldns_pkt_section sec = strncmp(s, "an:", 3) == 0
					       ? LDNS_SECTION_ANSWER
				       : strncmp(s, "ns:", 3) == 0
					       ? LDNS_SECTION_AUTHORITY
					       : LDNS_SECTION_ADDITIONAL;
		ldns_rr *rr = NULL;
		assert_int_equal(ldns_rr_new_frm_str(&rr, s + 3, 0, NULL, NULL),
				 LDNS_STATUS_OK);
		assert_true(ldns_pkt_push_rr(p, sec, rr));
	}
	if (o & O_EDNS)
		add_edns(p, o, 1232, 0);
	to_wire(m, p);
	m->ret = dv_wire_parse_response(m->w, m->len, &m->r);
}

static ldns_pkt *ldns_parse(const uint8_t *w, size_t len)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, w, len), LDNS_STATUS_OK);
	assert_non_null(p);
	return p;
}

static char *owner_str(const ldns_rr *rr)
{
	char *s = ldns_rdf2str(ldns_rr_owner(rr));
	assert_non_null(s);
	return s;
}

/* The option `code` of a parsed packet's EDNS (NULL if absent). */
static ldns_edns_option *find_option(ldns_pkt *p, uint16_t code)
{
	ldns_edns_option_list *l = ldns_pkt_edns_get_option_list(p);
	if (!l)
		return NULL;
	for (size_t i = 0; i < ldns_edns_option_list_get_count(l); i++) {
		ldns_edns_option *o = ldns_edns_option_list_get_option(l, i);
		if (ldns_edns_get_code(o) == code)
			return o;
	}
	return NULL;
}

/* The number of OPT RRs actually present on the wire (by our own parse). */
static unsigned count_opts(const uint8_t *w, size_t len)
{
	size_t off = DV_DNS_HDR;
	unsigned n = 0;
	unsigned total = (unsigned)dv_get16(w + 6) + dv_get16(w + 8) +
			 dv_get16(w + 10);
	assert_int_equal(dv_get16(w + 4), 1);
	assert_int_equal(dv_wire_name(w, len, &off, NULL, NULL), 0);
	off += 4;
	for (unsigned i = 0; i < total; i++) {
		assert_int_equal(dv_wire_name(w, len, &off, NULL, NULL), 0);
		assert_true(off + 10 <= len);
		if (dv_get16(w + off) == DV_TYPE_OPT)
			n++;
		off += 10 + (size_t)dv_get16(w + off + 8);
	}
	assert_int_equal(off, len);
	return n;
}

/* ================= dv_wire_parse_query ================= */

static void test_query_short(void **state)
{
	uint8_t w[DV_DNS_HDR] = {0x12, 0x34, 0x01, 0x00, 0, 1};
	dv_wire_query_t q;
	assert_int_equal(dv_wire_parse_query(w, 0, &q), DV_ESHORT);
	assert_int_equal(dv_wire_parse_query(w, 1, &q), DV_ESHORT);
	assert_int_equal(dv_wire_parse_query(w, 11, &q), DV_ESHORT);
	/* a bare header with QDCOUNT 1 is past the header check */
	assert_int_equal(dv_wire_parse_query(w, 12, &q), DV_EMALFORMED);
	assert_int_equal(q.id, 0x1234);
	assert_int_equal(q.question_end, 0);
}

static void test_query_qr(void **state)
{
	msg_t m;
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 7, 0);
	m.w[2] |= 0x80;
	assert_int_equal(dv_wire_parse_query(m.w, m.len, &m.q), DV_ENOTQUERY);
	assert_int_equal(m.q.id, 7);
}

static void test_query_qdcount(void **state)
{
	buf_t b;
	dv_wire_query_t q;

	b_hdr(&b, 0xabcd, DV_FLAG_RD, 0, 0, 0, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EQDCOUNT);
	assert_int_equal(q.id, 0xabcd);
	assert_int_equal(q.flags, DV_FLAG_RD);
	assert_int_equal(q.qdcount, 0);
	assert_int_equal(q.question_end, 0);

	b_hdr(&b, 0xabcd, DV_FLAG_RD, 2, 0, 0, 0);
	b_question(&b, "a.example", DV_TYPE_A);
	b_question(&b, "b.example", DV_TYPE_A);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EQDCOUNT);
	assert_int_equal(q.qdcount, 2);
	assert_int_equal(q.question_end, 0);
}

static void test_query_ok(void **state)
{
	msg_t m;
	mkq(&m, "www.Example.com", LDNS_RR_TYPE_AAAA, 0x5a5a, 0);
	assert_int_equal(m.q.id, 0x5a5a);
	assert_int_equal(m.q.flags, DV_FLAG_RD);
	assert_int_equal(m.q.qdcount, 1);
	assert_int_equal(m.q.qname_len, 17);
	assert_int_equal(m.q.qtype, DV_TYPE_AAAA);
	assert_int_equal(m.q.qclass, DV_CLASS_IN);
	assert_int_equal(m.q.question_end, m.len);
	assert_false(m.q.has_opt);
	assert_false(m.q.edns_do);

	/* the root name */
	buf_t b;
	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_question(&b, ".", DV_TYPE_NS);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &m.q), 0);
	assert_int_equal(m.q.qname_len, 1);
	assert_int_equal(m.q.qtype, DV_TYPE_NS);
}

static void test_query_truncated(void **state)
{
	msg_t m;
	dv_wire_query_t q;
	mkq(&m, "www.example.com", LDNS_RR_TYPE_A, 1, 0);
	for (size_t n = DV_DNS_HDR; n < m.len; n++) {
		assert_int_equal(dv_wire_parse_query(m.w, n, &q),
				 DV_EMALFORMED);
		assert_int_equal(q.question_end, 0);
	}
	/* with EDNS: cutting the OPT anywhere is malformed too, but the
	 * question stays readable */
	mkq(&m, "www.example.com", LDNS_RR_TYPE_A, 1, O_EDNS | O_COOKIE);
	size_t qend = m.q.question_end;
	for (size_t n = qend; n < m.len; n++) {
		assert_int_equal(dv_wire_parse_query(m.w, n, &q),
				 DV_EMALFORMED);
		assert_int_equal(q.question_end, qend);
	}
}

static void test_query_label_types(void **state)
{
	buf_t b;
	dv_wire_query_t q;
	static const uint8_t types[] = {0x40, 0x80, 0x41, 0xbf};
	for (size_t i = 0; i < sizeof(types); i++) {
		b_hdr(&b, 1, 0, 1, 0, 0, 0);
		b_u8(&b, types[i]);
		for (unsigned j = 0; j < (types[i] & 0x3f); j++)
			b_u8(&b, 'a');
		b_u8(&b, 0);
		b_u16(&b, 1);
		b_u16(&b, 1);
		assert_int_equal(dv_wire_parse_query(b.b, b.n, &q),
				 DV_EMALFORMED);
	}
	/* a 63-octet label is fine */
	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_u8(&b, 63);
	for (unsigned j = 0; j < 63; j++)
		b_u8(&b, 'a');
	b_u8(&b, 0);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), 0);
	assert_int_equal(q.qname_len, 65);
}

/* A name of exactly `wire_len` octets (incl. the root label). */
static void b_long_name(buf_t *b, size_t wire_len)
{
	size_t left = wire_len - 1;
	while (left) {
		size_t l = left - 1 > 63 ? 63 : left - 1;
		if (left - (l + 1) == 1)
			l--; /* never leave a one-octet gap */
		b_u8(b, (uint8_t)l);
		for (size_t i = 0; i < l; i++)
			b_u8(b, (uint8_t)('a' + i % 26));
		left -= l + 1;
	}
	b_u8(b, 0);
}

static void test_query_name_length(void **state)
{
	buf_t b;
	dv_wire_query_t q;

	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_long_name(&b, 255);
	assert_int_equal(b.n, DV_DNS_HDR + 255);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), 0);
	assert_int_equal(q.qname_len, 255);

	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_long_name(&b, 256);
	assert_int_equal(b.n, DV_DNS_HDR + 256);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
}

static void test_query_trailing(void **state)
{
	msg_t m;
	dv_wire_query_t q;
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1, 0);
	m.w[m.len] = 0;
	assert_int_equal(dv_wire_parse_query(m.w, m.len + 1, &q),
			 DV_EMALFORMED);
	/* the question is still readable for the FORMERR */
	assert_int_equal(q.question_end, m.len);

	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS);
	memset(m.w + m.len, 0xff, 5);
	assert_int_equal(dv_wire_parse_query(m.w, m.len + 5, &q),
			 DV_EMALFORMED);
	assert_int_not_equal(q.question_end, 0);
}

static void test_query_compressed_qname(void **state)
{
	buf_t b;
	dv_wire_query_t q;

	/* the whole qname a pointer (to the header) */
	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_ptr(&b, 0);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);

	/* "www" then a pointer back to itself */
	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_u8(&b, 3);
	b_raw(&b, "www", 3);
	b_ptr(&b, 12);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
}

static void test_query_records_checked(void **state)
{
	/* a query may carry records (e.g. prerequisites); they must parse */
	buf_t b;
	dv_wire_query_t q;

	b_hdr(&b, 1, 0, 1, 1, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 60, 4);
	b_u32(&b, 0xc0000201);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), 0);

	/* ANCOUNT larger than what is there */
	b.b[7] = 2;
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	/* RDATA cut short */
	b.b[7] = 1;
	assert_int_equal(dv_wire_parse_query(b.b, b.n - 1, &q),
			 DV_EMALFORMED);
	/* a forward pointer in the record's owner */
	size_t own = 12 + 13 + 4;
	b.b[own + 1] = (uint8_t)(own + 2);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
}

static void test_query_edns(void **state)
{
	msg_t m;

	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS, 4096, 0);
	assert_true(m.q.has_opt);
	assert_int_equal(m.q.edns_udp_size, 4096);
	assert_int_equal(m.q.edns_version, 0);
	assert_false(m.q.edns_do);
	assert_false(m.q.edns_padding);
	assert_false(m.q.edns_keepalive);
	assert_int_equal(m.q.opt_rdata_len, 0);
	assert_int_equal(m.q.opt_rdata_off, m.len);
	assert_int_equal(m.q.arcount, 1);

	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS | O_DO, 1400, 0);
	assert_true(m.q.edns_do);
	assert_int_equal(m.q.edns_udp_size, 1400);

	/* a version we do not speak still parses (the caller says BADVERS) */
	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS, 1232, 1);
	assert_int_equal(m.q.edns_version, 1);

	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS | O_PAD);
	assert_true(m.q.edns_padding);
	assert_false(m.q.edns_keepalive);
	assert_int_equal(m.q.opt_rdata_len, 4 + 16);

	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS | O_KEEPALIVE);
	assert_false(m.q.edns_padding);
	assert_true(m.q.edns_keepalive);

	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1,
	    O_EDNS | O_DO | O_COOKIE | O_KEEPALIVE | O_PAD);
	assert_true(m.q.edns_padding);
	assert_true(m.q.edns_keepalive);
	assert_true(m.q.edns_do);
	assert_int_equal(m.q.opt_rdata_len, 12 + 4 + 20);
	assert_int_equal(m.q.opt_rdata_off + m.q.opt_rdata_len, m.len);
	assert_int_equal(dv_get16(m.w + m.q.opt_rdata_off), LDNS_EDNS_COOKIE);

	/* the OPT need not be the only additional record */
	buf_t b;
	b_hdr(&b, 1, 0, 1, 0, 0, 2);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 60, 4);
	b_u32(&b, 0x7f000001);
	b_opt(&b, 512, 0, true, 4);
	b_u16(&b, DV_EDNS_TCP_KEEPALIVE);
	b_u16(&b, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &m.q), 0);
	assert_true(m.q.has_opt);
	assert_true(m.q.edns_do);
	assert_true(m.q.edns_keepalive);
	assert_int_equal(m.q.edns_udp_size, 512);
}

static void test_query_two_opts(void **state)
{
	buf_t b;
	dv_wire_query_t q;
	b_hdr(&b, 1, 0, 1, 0, 0, 2);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 0);
	b_opt(&b, 1232, 0, false, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	assert_int_not_equal(q.question_end, 0);
	/* a single one is fine */
	b.b[11] = 1;
	assert_int_equal(dv_wire_parse_query(b.b, b.n - 11, &q), 0);
	assert_true(q.has_opt);
}

static void test_query_opt_owner(void **state)
{
	buf_t b;
	dv_wire_query_t q;
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_name(&b, "example.com");
	b_rr_fixed(&b, DV_TYPE_OPT, 1232, 0, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);

	/* a pointer to the question name is not the root either */
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_OPT, 1232, 0, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
}

static void test_query_opt_options(void **state)
{
	buf_t b;
	dv_wire_query_t q;

	/* option length runs past the RDATA */
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, true, 6);
	b_u16(&b, DV_EDNS_PADDING);
	b_u16(&b, 3);
	b_u16(&b, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	assert_false(q.has_opt); /* never echo a broken OPT */
	assert_int_not_equal(q.question_end, 0);

	/* half an option header */
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 7);
	b_u16(&b, DV_EDNS_TCP_KEEPALIVE);
	b_u16(&b, 0);
	b_u16(&b, 10);
	b_u8(&b, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	assert_false(q.has_opt);

	/* RDLENGTH runs past the message */
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 8);
	b_u16(&b, DV_EDNS_PADDING);
	b_u16(&b, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);

	/* an option whose length exactly fills the RDATA is fine */
	b_hdr(&b, 1, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 8);
	b_u16(&b, DV_EDNS_PADDING);
	b_u16(&b, 4);
	b_u32(&b, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), 0);
	assert_true(q.edns_padding);
}

static void test_udp_limit(void **state)
{
	dv_wire_query_t q;
	memset(&q, 0, sizeof(q));
	assert_int_equal(dv_wire_udp_limit(&q), 512);
	q.edns_udp_size = 4096; /* ignored without an OPT */
	assert_int_equal(dv_wire_udp_limit(&q), 512);
	q.has_opt = true;
	static const struct {
		uint16_t in, out;
	} cases[] = {{0, 512},	   {1, 512},	 {511, 512},
		     {512, 512},   {513, 513},	 {1232, 1232},
		     {1233, 1232}, {4096, 1232}, {65535, 1232}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		q.edns_udp_size = cases[i].in;
		assert_int_equal(dv_wire_udp_limit(&q), cases[i].out);
	}

	msg_t m;
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 1, 0);
	assert_int_equal(dv_wire_udp_limit(&m.q), 512);
	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS, 100, 0);
	assert_int_equal(dv_wire_udp_limit(&m.q), 512);
	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS, 4096, 0);
	assert_int_equal(dv_wire_udp_limit(&m.q), 1232);
	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 1, O_EDNS, 1000, 0);
	assert_int_equal(dv_wire_udp_limit(&m.q), 1000);
}

/* ================= dv_wire_name ================= */

static void test_name_plain(void **state)
{
	buf_t b;
	uint8_t out[DV_DNS_MAX_NAME];
	size_t off = 12, out_len = 0;
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_name(&b, "WWW.Example.CoM");
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(off, b.n);
	assert_int_equal(out_len, 17);
	assert_memory_equal(out, "\3www\7example\3com", 17);

	/* without an output buffer */
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL), 0);
	assert_int_equal(off, b.n);

	/* missing the root label */
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n - 1, &off, NULL, NULL),
			 DV_EMALFORMED);
	/* a label running off the end */
	off = 12;
	assert_int_equal(dv_wire_name(b.b, 14, &off, NULL, NULL),
			 DV_EMALFORMED);
	/* offset at the end */
	off = b.n;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);

	/* 0x40 / 0x80 label types */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_u8(&b, 0x41);
	b_u8(&b, 'a');
	b_u8(&b, 0);
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);
	b.b[12] = 0x81;
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);
}

static void test_name_pointers(void **state)
{
	buf_t b;
	uint8_t out[DV_DNS_MAX_NAME];
	size_t off, out_len;

	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_name(&b, "Example.COM"); /* at 12 */
	size_t p1 = b.n;
	b_u8(&b, 3);
	b_raw(&b, "WwW", 3);
	b_ptr(&b, 12); /* www.example.com */
	size_t p2 = b.n;
	b_u8(&b, 1);
	b_raw(&b, "X", 1);
	b_ptr(&b, (uint16_t)p1); /* x.www.example.com: pointer to a name
				    that itself ends in a pointer */
	size_t p3 = b.n;
	b_ptr(&b, (uint16_t)p2); /* only a pointer */
	size_t end = b.n;

	off = p1;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(off, p2); /* past the in-place bytes only */
	assert_int_equal(out_len, 17);
	assert_memory_equal(out, "\3www\7example\3com", 17);

	off = p2;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(off, p3);
	assert_int_equal(out_len, 19);
	assert_memory_equal(out, "\1x\3www\7example\3com", 19);

	off = p3;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(off, end);
	assert_int_equal(out_len, 19);
	assert_memory_equal(out, "\1x\3www\7example\3com", 19);

	/* a pointer missing its second byte */
	off = p3;
	assert_int_equal(dv_wire_name(b.b, p3 + 1, &off, NULL, NULL),
			 DV_EMALFORMED);
}

static void test_name_bad_pointers(void **state)
{
	buf_t b;
	size_t off;

	/* forward pointer */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_ptr(&b, 14);
	b_name(&b, "example.com");
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);

	/* pointer to itself */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_name(&b, "example.com");
	size_t p = b.n;
	b_ptr(&b, (uint16_t)p);
	off = p;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);

	/* pointer into the header */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_ptr(&b, 4);
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);

	/* loop: a label, then a pointer back to that label */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_u8(&b, 1);
	b_u8(&b, 'a');
	b_ptr(&b, 12);
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);
	uint8_t out[DV_DNS_MAX_NAME];
	size_t out_len = 0;
	off = 14;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len),
			 DV_EMALFORMED);

	/* loop between two names: name A at 12 = "b" -> ptr to 16, name B at
	 * 16 = "a" -> ptr to 12; B's pointer is backwards, A's forward */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_u8(&b, 1);
	b_u8(&b, 'b');
	b_ptr(&b, 16);
	b_u8(&b, 1);
	b_u8(&b, 'a');
	b_ptr(&b, 12);
	off = 12;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);
	off = 16;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, NULL, NULL),
			 DV_EMALFORMED);

	/* chain of pointers to pointers, each backwards, ends at a root */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_u8(&b, 0);
	for (unsigned i = 0; i < 100; i++)
		b_ptr(&b, (uint16_t)(b.n - (i ? 2 : 1)));
	off = b.n - 2;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(out_len, 1);
	assert_int_equal(off, b.n);
}

static void test_name_expanded_length(void **state)
{
	buf_t b;
	uint8_t out[DV_DNS_MAX_NAME];
	size_t off, out_len;

	/* suffix of 250 octets at 12, then a 4-octet label + pointer: 255 */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_long_name(&b, 250);
	size_t p = b.n;
	b_u8(&b, 4);
	b_raw(&b, "ABCD", 4);
	b_ptr(&b, 12);
	off = p;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len), 0);
	assert_int_equal(out_len, 255);
	assert_memory_equal(out, "\4abcd", 5);
	assert_memory_equal(out + 5, b.b + 12, 250);

	/* one octet more: 256 */
	b_hdr(&b, 0, 0, 0, 0, 0, 0);
	b_long_name(&b, 250);
	p = b.n;
	b_u8(&b, 5);
	b_raw(&b, "ABCDE", 5);
	b_ptr(&b, 12);
	off = p;
	assert_int_equal(dv_wire_name(b.b, b.n, &off, out, &out_len),
			 DV_EMALFORMED);
}

/* ================= dv_wire_parse_response ================= */

static void test_resp_ttls(void **state)
{
	msg_t m;
	const char *rrs[] = {
		"an:www.example.com. 300 IN CNAME web.example.com.",
		"an:web.example.com. 200 IN A 192.0.2.1",
		"ns:example.com. 100 IN NS ns1.example.com.",
		"ar:ns1.example.com. 50 IN A 192.0.2.53",
		NULL};
	mkr(&m, "www.example.com", LDNS_RR_TYPE_A, 0x4242, 0, O_EDNS | O_DO,
	    rrs);
	assert_int_equal(m.ret, 0);
	assert_int_equal(m.r.id, 0x4242);
	assert_int_equal(m.r.ancount, 2);
	assert_int_equal(m.r.nscount, 1);
	assert_int_equal(m.r.arcount, 2);
	assert_int_equal(m.r.qtype, DV_TYPE_A);
	assert_int_equal(m.r.qclass, DV_CLASS_IN);
	assert_int_equal(m.r.question_end, 12 + 17 + 4);
	assert_int_equal(m.r.n_ttl, 4);
	static const uint32_t want[] = {300, 200, 100, 50};
	static const uint16_t want_type[] = {DV_TYPE_CNAME, DV_TYPE_A,
					     DV_TYPE_NS, DV_TYPE_A};
	for (unsigned i = 0; i < 4; i++) {
		uint16_t o = m.r.ttl_off[i];
		assert_true(o + 6u <= m.len);
		assert_int_equal(dv_get32(m.w + o), want[i]);
		assert_int_equal(dv_get16(m.w + o - 4), want_type[i]);
		assert_int_equal(dv_get16(m.w + o - 2), DV_CLASS_IN);
	}
	assert_int_equal(m.r.min_ttl, 50);
	assert_false(m.r.negative);
	assert_int_equal(m.r.neg_ttl, UINT32_MAX);
	assert_true(m.r.has_opt);
	assert_int_equal(m.r.opt_end, m.len);
	assert_int_equal(m.r.opt_end - m.r.opt_start, 11);
	assert_int_equal(m.w[m.r.opt_start], 0);
	assert_int_equal(dv_get16(m.w + m.r.opt_start + 1), DV_TYPE_OPT);
	assert_int_equal(m.r.ede_code, 0xffff);

	/* no records at all */
	mkr(&m, "example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_SERVFAIL, 0,
	    NULL);
	assert_int_equal(m.ret, 0);
	assert_int_equal(m.r.n_ttl, 0);
	assert_int_equal(m.r.min_ttl, UINT32_MAX);
	assert_false(m.r.negative); /* SERVFAIL is not a negative answer */
	assert_false(m.r.has_opt);
}

static void test_resp_negative(void **state)
{
	msg_t m;
	/* SOA TTL 3600, MINIMUM 300: 300 */
	const char *nx1[] = {"ns:example.com. 3600 IN SOA ns.example.com. "
			     "host.example.com. 1 7200 3600 1209600 300",
			     NULL};
	mkr(&m, "nope.example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_NXDOMAIN,
	    O_EDNS, nx1);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.negative);
	assert_int_equal(m.r.neg_ttl, 300);
	assert_int_equal(m.r.min_ttl, 3600);
	assert_int_equal(m.r.n_ttl, 1);

	/* SOA TTL 60, MINIMUM 300: 60 */
	const char *nx2[] = {"ns:example.com. 60 IN SOA ns.example.com. "
			     "host.example.com. 1 7200 3600 1209600 300",
			     NULL};
	mkr(&m, "nope.example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_NXDOMAIN, 0,
	    nx2);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.negative);
	assert_int_equal(m.r.neg_ttl, 60);

	/* SOA at the root (both names one octet: RDLENGTH 22) */
	const char *nx3[] = {"ns:. 900 IN SOA . . 1 2 3 4 86400", NULL};
	mkr(&m, "nope", LDNS_RR_TYPE_A, 1, LDNS_RCODE_NXDOMAIN, 0, nx3);
	assert_int_equal(m.ret, 0);
	assert_int_equal(m.r.neg_ttl, 900);

	/* NODATA: NOERROR, no answer, SOA */
	const char *nodata[] = {"ns:example.com. 3600 IN SOA ns.example.com. "
				"host.example.com. 1 7200 3600 1209600 120",
				NULL};
	mkr(&m, "www.example.com", LDNS_RR_TYPE_AAAA, 1, 0, 0, nodata);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.negative);
	assert_int_equal(m.r.neg_ttl, 120);

	/* NXDOMAIN without SOA */
	mkr(&m, "nope.example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_NXDOMAIN, 0,
	    NULL);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.negative);
	assert_int_equal(m.r.neg_ttl, UINT32_MAX);

	/* NXDOMAIN at the end of a CNAME chain */
	const char *chain[] = {
		"an:www.example.com. 300 IN CNAME gone.example.net.",
		"ns:example.net. 600 IN SOA ns.example.net. h.example.net. "
		"1 2 3 4 30",
		NULL};
	mkr(&m, "www.example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_NXDOMAIN, 0,
	    chain);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.negative);
	assert_int_equal(m.r.neg_ttl, 30);
	assert_int_equal(m.r.min_ttl, 300);

	/* an SOA in the answer section is an answer, not a negative TTL */
	const char *soa_ans[] = {"an:example.com. 3600 IN SOA ns.example.com. "
				 "host.example.com. 1 7200 3600 1209600 5",
				 NULL};
	mkr(&m, "example.com", LDNS_RR_TYPE_SOA, 1, 0, 0, soa_ans);
	assert_int_equal(m.ret, 0);
	assert_false(m.r.negative);
	assert_int_equal(m.r.neg_ttl, UINT32_MAX);
}

static void test_resp_ede(void **state)
{
	msg_t m;
	mkr(&m, "example.com", LDNS_RR_TYPE_A, 1, LDNS_RCODE_SERVFAIL,
	    O_EDNS | O_EDE | O_PAD, NULL);
	assert_int_equal(m.ret, 0);
	assert_true(m.r.has_opt);
	assert_int_equal(m.r.ede_code, 22); /* the first EDE */
	assert_int_equal(m.r.opt_end, m.len);

	/* an EDE too short to hold a code is ignored */
	buf_t b;
	b_hdr(&b, 1, DV_FLAG_QR | DV_RCODE_SERVFAIL, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 5 + 6);
	b_u16(&b, DV_EDNS_EDE);
	b_u16(&b, 1);
	b_u8(&b, 7);
	b_u16(&b, DV_EDNS_EDE);
	b_u16(&b, 2);
	b_u16(&b, 18);
	dv_wire_resp_t r;
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), 0);
	assert_int_equal(r.ede_code, 18);

	/* a broken option in the response's OPT */
	b.b[b.n - 6 - 5 + 3] = 9; /* first EDE's length past the RDATA */
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);
}

static void test_resp_limit(void **state)
{
	static msg_t m;
	static const char *rrs[DV_WIRE_MAX_TTLS + 3];
	static char text[DV_WIRE_MAX_TTLS + 2][64];
	size_t n = 0;
	for (; n < DV_WIRE_MAX_TTLS + 1; n++) {
		snprintf(text[n], sizeof(text[n]),
			 "an:many.example. %zu IN A 10.0.%zu.%zu", 1000 + n,
			 n / 256, n % 256);
		rrs[n] = text[n];
	}
	rrs[n] = NULL;
	mkr(&m, "many.example", LDNS_RR_TYPE_A, 1, 0, O_EDNS, rrs);
	assert_int_equal(m.ret, DV_ELIMIT);
	assert_int_equal(m.r.ancount, DV_WIRE_MAX_TTLS + 1);
	assert_int_equal(m.r.n_ttl, DV_WIRE_MAX_TTLS);
	assert_int_equal(m.r.min_ttl, 1000);
	assert_true(m.r.has_opt);
	assert_int_equal(m.r.opt_end, m.len);
	assert_int_not_equal(m.r.question_end, 0);

	/* exactly DV_WIRE_MAX_TTLS records (+ OPT, which has no TTL) */
	rrs[DV_WIRE_MAX_TTLS] = NULL;
	mkr(&m, "many.example", LDNS_RR_TYPE_A, 1, 0, O_EDNS, rrs);
	assert_int_equal(m.ret, 0);
	assert_int_equal(m.r.n_ttl, DV_WIRE_MAX_TTLS);
	for (unsigned i = 0; i < DV_WIRE_MAX_TTLS; i++)
		assert_int_equal(dv_get32(m.w + m.r.ttl_off[i]), 1000 + i);
}

static void test_resp_malformed(void **state)
{
	msg_t m;
	dv_wire_resp_t r;
	const char *rrs[] = {"an:www.example.com. 300 IN A 192.0.2.1",
			     "an:www.example.com. 300 IN A 192.0.2.2", NULL};
	mkr(&m, "www.example.com", LDNS_RR_TYPE_A, 1, 0, O_EDNS, rrs);
	assert_int_equal(m.ret, 0);

	assert_int_equal(dv_wire_parse_response(m.w, 11, &r), DV_ESHORT);
	/* every truncation */
	for (size_t n = DV_DNS_HDR; n < m.len; n++)
		assert_int_equal(dv_wire_parse_response(m.w, n, &r),
				 DV_EMALFORMED);
	/* trailing garbage */
	m.w[m.len] = 0;
	assert_int_equal(dv_wire_parse_response(m.w, m.len + 1, &r),
			 DV_EMALFORMED);
	/* ANCOUNT larger than what is there */
	m.w[7] = 3;
	assert_int_equal(dv_wire_parse_response(m.w, m.len, &r),
			 DV_EMALFORMED);
	m.w[7] = 2;
	/* not a response */
	m.w[2] &= 0x7f;
	assert_int_equal(dv_wire_parse_response(m.w, m.len, &r),
			 DV_EMALFORMED);
	m.w[2] |= 0x80;
	/* QDCOUNT 0 */
	m.w[5] = 0;
	assert_int_equal(dv_wire_parse_response(m.w, m.len, &r),
			 DV_EMALFORMED);
	m.w[5] = 1;
	assert_int_equal(dv_wire_parse_response(m.w, m.len, &r), 0);

	buf_t b;
	/* compressed question name */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 0, 0, 0);
	b_u8(&b, 1);
	b_u8(&b, 'a');
	b_ptr(&b, 12);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);

	/* OPT in the answer section */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 1, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 0);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);
	/* ... and in the authority section */
	b.b[7] = 0;
	b.b[9] = 1;
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);
	/* where it belongs */
	b.b[9] = 0;
	b.b[11] = 1;
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), 0);
	assert_true(r.has_opt);

	/* two OPTs */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 0, 0, 2);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, false, 0);
	b_opt(&b, 1232, 0, false, 0);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);

	/* OPT with a non-root owner */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_OPT, 1232, 0, 0);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);

	/* RDATA longer than the message */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 1, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 60, 4);
	b_u16(&b, 0xc000);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);

	/* a pointer loop in an owner name */
	b_hdr(&b, 1, DV_FLAG_QR, 1, 1, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	size_t own = b.n;
	b_u8(&b, 1);
	b_u8(&b, 'x');
	b_ptr(&b, (uint16_t)own);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 60, 4);
	b_u32(&b, 0);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), DV_EMALFORMED);

	/* over 65535 bytes */
	uint8_t *big = calloc(1, DV_DNS_MAX_MSG + 1);
	assert_non_null(big);
	memcpy(big, m.w, m.len);
	assert_int_equal(dv_wire_parse_response(big, DV_DNS_MAX_MSG + 1, &r),
			 DV_EMALFORMED);
	free(big);
}

/*
 * RFC 2181 section 8 (which wire.c cites): "Implementations should treat
 * TTL values received with the most significant bit set as if the entire
 * value received was zero."
 */
static void test_resp_ttl_msb(void **state)
{
	buf_t b;
	dv_wire_resp_t r;
	b_hdr(&b, 1, DV_FLAG_QR, 1, 2, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 3600, 4);
	b_u32(&b, 0xc0000201);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 0x80000e10, 4);
	b_u32(&b, 0xc0000202);
	assert_int_equal(dv_wire_parse_response(b.b, b.n, &r), 0);
	assert_int_equal(r.n_ttl, 2);
	assert_int_equal(r.min_ttl, 0);
}

/* ================= dv_wire_question_matches ================= */

static void test_question_matches(void **state)
{
	msg_t q, r;
	mkq(&q, "WWW.Example.Com", LDNS_RR_TYPE_A, 1, O_EDNS);
	mkr(&r, "www.example.com", LDNS_RR_TYPE_A, 2, 0, 0, NULL);
	assert_true(dv_wire_question_matches(r.w, r.len, q.w, q.len));

	mkr(&r, "www.example.org", LDNS_RR_TYPE_A, 2, 0, 0, NULL);
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	mkr(&r, "www.example.co", LDNS_RR_TYPE_A, 2, 0, 0, NULL);
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	mkr(&r, "www.example.com", LDNS_RR_TYPE_AAAA, 2, 0, 0, NULL);
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	/* same name bytes, different label structure */
	mkq(&q, "ab.c", LDNS_RR_TYPE_A, 1, 0);
	mkr(&r, "a.bc", LDNS_RR_TYPE_A, 2, 0, 0, NULL);
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));

	mkq(&q, "www.example.com", LDNS_RR_TYPE_A, 1, 0);
	mkr(&r, "www.example.com", LDNS_RR_TYPE_A, 2, 0, 0, NULL);
	assert_true(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	/* class mismatch */
	r.w[r.len - 1] = 3; /* CH */
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	r.w[r.len - 1] = 1;
	/* QDCOUNT 0 */
	r.w[5] = 0;
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, q.len));
	r.w[5] = 1;
	/* too short */
	assert_false(dv_wire_question_matches(r.w, r.len - 1, q.w, q.len));
	assert_false(dv_wire_question_matches(r.w, 11, q.w, q.len));
	assert_false(dv_wire_question_matches(r.w, r.len, q.w, 11));
	assert_true(dv_wire_question_matches(r.w, r.len, q.w, q.len));
}

/* ================= dv_wire_answer ================= */

typedef struct {
	msg_t q, r;
	uint8_t out[BUF_MAX];
} ans_t;

static const char *const chain_rrs[] = {
	"an:www.example.com. 300 IN CNAME web.example.com.",
	"an:web.example.com. 60 IN A 192.0.2.1",
	"ns:example.com. 100 IN NS ns1.example.com.",
	"ar:ns1.example.com. 50 IN A 192.0.2.53",
	NULL};

static void test_answer_basic(void **state)
{
	static ans_t a;
	mkq(&a.q, "WwW.ExAmple.COM", LDNS_RR_TYPE_A, 0x1234,
	    O_EDNS | O_DO | O_CD);
	/* upstream: different id, RD off, CD off, its own OPT (no DO) */
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 0x9999, 0, O_EDNS,
	    chain_rrs);
	a.r.w[2] &= (uint8_t) ~(DV_FLAG_RD >> 8);
	assert_int_equal(a.r.ret, 0);
	assert_true(a.r.r.has_opt);
	assert_true(dv_wire_question_matches(a.r.w, a.r.len, a.q.w, a.q.len));

	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_true(n > 0);
	/* upstream OPT out, client OPT in: same size */
	assert_int_equal((size_t)n, a.r.len);
	assert_int_equal(dv_get16(a.out), 0x1234);
	uint16_t flags = dv_get16(a.out + 2);
	assert_true(flags & DV_FLAG_QR);
	assert_true(flags & DV_FLAG_RD);
	assert_true(flags & DV_FLAG_CD);
	assert_true(flags & DV_FLAG_RA);
	assert_true(flags & DV_FLAG_AD);
	assert_false(flags & DV_FLAG_TC);
	assert_int_equal(dv_get16(a.out + 10), 2);
	assert_int_equal(count_opts(a.out, (size_t)n), 1);
	/* the client's letter case */
	assert_memory_equal(a.out + 12, a.q.w + 12, a.q.q.qname_len);

	ldns_pkt *p = ldns_parse(a.out, (size_t)n);
	assert_int_equal(ldns_pkt_id(p), 0x1234);
	assert_true(ldns_pkt_cd(p));
	assert_true(ldns_pkt_rd(p));
	assert_int_equal(ldns_pkt_get_rcode(p), 0);
	assert_int_equal(ldns_pkt_ancount(p), 2);
	assert_int_equal(ldns_pkt_nscount(p), 1);
	assert_int_equal(ldns_pkt_arcount(p), 1); /* without the OPT */
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
	assert_int_equal(ldns_pkt_edns_version(p), 0);
	char *qn = owner_str(ldns_rr_list_rr(ldns_pkt_question(p), 0));
	assert_string_equal(qn, "WwW.ExAmple.COM.");
	free(qn);
	assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0)),
			 300);
	ldns_pkt_free(p);

	/* client without DO: DO clear in the reflected OPT */
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 0x1235, O_EDNS | O_NORD);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_true(n > 0);
	flags = dv_get16(a.out + 2);
	assert_false(flags & DV_FLAG_RD);
	assert_false(flags & DV_FLAG_CD);
	p = ldns_parse(a.out, (size_t)n);
	assert_true(ldns_pkt_edns(p));
	assert_false(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);

	/* client without EDNS: no OPT at all */
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 0x1236, 0);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_int_equal((size_t)n, a.r.len - 11);
	assert_int_equal(dv_get16(a.out + 10), 1);
	assert_int_equal(count_opts(a.out, (size_t)n), 0);
	p = ldns_parse(a.out, (size_t)n);
	assert_false(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_ancount(p), 2);
	assert_int_equal(ldns_pkt_arcount(p), 1);
	ldns_pkt_free(p);

	/* upstream without OPT, client with EDNS: one OPT added */
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 0x1237, O_EDNS | O_DO);
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 0x9999,
	    LDNS_RCODE_NXDOMAIN, 0, NULL);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_int_equal((size_t)n, a.r.len + 11);
	assert_int_equal(dv_get16(a.out + 10), 1);
	p = ldns_parse(a.out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);
}

/*
 * RFC 6840 5.8: the upstream's AD reaches a client that set AD (with or
 * without EDNS) or DO, and no other.
 */
static void test_answer_ad(void **state)
{
	static ans_t a;
	static const struct {
		unsigned o;
		bool ad;
	} cases[] = {
		{0, false},
		{O_EDNS, false},
		{O_CD, false},
		{O_EDNS | O_CD | O_NORD, false},
		{O_AD, true},
		{O_EDNS | O_AD, true},
		{O_AD | O_CD, true},
		{O_EDNS | O_DO, true},
		{O_EDNS | O_DO | O_AD, true},
		{O_EDNS | O_DO | O_CD, true},
	};
	(void)state;
	/* mkr() sets AD, as a validating resolver does */
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 9, 0, O_EDNS, chain_rrs);
	assert_int_equal(a.r.ret, 0);
	assert_true(a.r.r.flags & DV_FLAG_AD);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 3, cases[i].o);
		/* fresh and aged (from the cache) alike, and truncated */
		for (unsigned k = 0; k < 3; k++) {
			int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w,
					       a.r.len, &a.r.r, a.q.w, &a.q.q,
					       k == 1 ? 10 : 0,
					       k == 2 ? 40 : 65535, 0xffff,
					       NULL, 0);
			assert_true(n > 0);
			uint16_t flags = dv_get16(a.out + 2);
			assert_int_equal((flags & DV_FLAG_AD) != 0,
					 cases[i].ad);
			assert_int_equal((flags & DV_FLAG_TC) != 0, k == 2);
		}
	}
	/* and never added where the upstream did not set it */
	a.r.w[3] &= (uint8_t)~DV_FLAG_AD;
	assert_int_equal(dv_wire_parse_response(a.r.w, a.r.len, &a.r.r), 0);
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 3, O_EDNS | O_DO | O_AD);
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_true(n > 0);
	assert_false(dv_get16(a.out + 2) & DV_FLAG_AD);
}

static void test_answer_aging(void **state)
{
	static ans_t a;
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 7, O_EDNS);
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 8, 0, O_EDNS, chain_rrs);
	assert_int_equal(a.r.ret, 0);
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 55, 65535, 0xffff, NULL, 0);
	assert_true(n > 0);
	ldns_pkt *p = ldns_parse(a.out, (size_t)n);
	ldns_rr_list *an = ldns_pkt_answer(p);
	assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(an, 0)), 245);
	assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(an, 1)), 5);
	assert_int_equal(
		ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), 45);
	assert_int_equal(
		ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_additional(p), 0)), 0);
	ldns_pkt_free(p);
	/* the source is untouched (it may be a cache entry) */
	assert_int_equal(dv_get32(a.r.w + a.r.r.ttl_off[1]), 60);

	/* an age beyond every TTL: all zero, never wrapped */
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 100000, 65535, 0xffff, NULL, 0);
	assert_true(n > 0);
	for (unsigned i = 0; i < a.r.r.n_ttl; i++)
		assert_int_equal(dv_get32(a.out + a.r.r.ttl_off[i]), 0);

	/* an age equal to a TTL: 0 */
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 60, 65535, 0xffff, NULL, 0);
	assert_int_equal(dv_get32(a.out + a.r.r.ttl_off[1]), 0);
	assert_int_equal(dv_get32(a.out + a.r.r.ttl_off[0]), 240);
}

/* RFC 2181 8 again, on the way out: a TTL with the top bit set is 0. */
static void test_answer_aging_ttl_msb(void **state)
{
	static ans_t a;
	buf_t b;
	b_hdr(&b, 1, DV_FLAG_QR, 1, 1, 0, 0);
	b_question(&b, "example.com", DV_TYPE_A);
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 0x80000e10, 4);
	b_u32(&b, 0xc0000201);
	memcpy(a.r.w, b.b, b.n);
	a.r.len = b.n;
	assert_int_equal(dv_wire_parse_response(a.r.w, a.r.len, &a.r.r), 0);
	mkq(&a.q, "example.com", LDNS_RR_TYPE_A, 1, 0);
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 10, 65535, 0xffff, NULL, 0);
	assert_int_equal(n, (int)b.n);
	assert_int_equal(dv_get32(a.out + a.r.r.ttl_off[0]), 0);
}

/*
 * A compression pointer may target any earlier octet, including one inside
 * a TTL field, which dv_wire_answer() rewrites when it ages the answer: the
 * bytes the pointer reads change under it.  Here record 2's owner points at
 * the low octet of record 1's TTL (256 -> octet 0x00: the root name); aged
 * by 1 that octet becomes 0xff, a pointer with a forward target, and the
 * answer no longer parses.  (Found by fuzz/fuzz_wire.c.)  Either the parser
 * refuses such a response, or the answer keeps its names.
 */
static void test_answer_aging_pointer_into_ttl(void **state)
{
	static ans_t a;
	buf_t b;
	b_hdr(&b, 1, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA, 1, 2, 0, 0);
	b_question(&b, "www.example.com", DV_TYPE_A);
	size_t r1 = b.n;
	b_ptr(&b, 12);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 256, 4);
	b_u32(&b, 0xc0000201);
	size_t ttl_low = r1 + 2 + 4 + 3;
	b_ptr(&b, (uint16_t)ttl_low);
	b_rr_fixed(&b, DV_TYPE_A, DV_CLASS_IN, 300, 4);
	b_u32(&b, 0xc0000202);
	memcpy(a.r.w, b.b, b.n);
	a.r.len = b.n;

	int ret = dv_wire_parse_response(a.r.w, a.r.len, &a.r.r);
	if (ret == DV_EMALFORMED)
		return; /* refused: fine */
	assert_int_equal(ret, 0);
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 1, 0);
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 1, 65535, 0xffff, NULL, 0);
	assert_int_equal(n, (int)a.r.len);
	dv_wire_resp_t r;
	assert_int_equal(dv_wire_parse_response(a.out, (size_t)n, &r), 0);
	uint8_t before[DV_DNS_MAX_NAME], after[DV_DNS_MAX_NAME];
	size_t off = r1 + 16, lb = 0, la = 0;
	assert_int_equal(dv_wire_name(a.r.w, a.r.len, &off, before, &lb), 0);
	off = r1 + 16;
	assert_int_equal(dv_wire_name(a.out, (size_t)n, &off, after, &la), 0);
	assert_int_equal(la, lb);
	assert_memory_equal(after, before, la);
}

static void test_answer_truncation(void **state)
{
	static ans_t a;
	static const char *rrs[41];
	static char text[40][80];
	for (unsigned i = 0; i < 40; i++) {
		snprintf(text[i], sizeof(text[i]),
			 "an:big.example. 300 IN TXT \"%040u\"", i);
		rrs[i] = text[i];
	}
	rrs[40] = NULL;
	mkq(&a.q, "BIG.example", LDNS_RR_TYPE_TXT, 0x7777, O_EDNS | O_DO);
	mkr(&a.r, "big.example", LDNS_RR_TYPE_TXT, 1, 0, O_EDNS, rrs);
	assert_int_equal(a.r.ret, 0);
	assert_true(a.r.len > 1232);

	/* fits in 65535 */
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	assert_int_equal((size_t)n, a.r.len);

	/* not in 1232: header + question + OPT, TC */
	size_t limit = dv_wire_udp_limit(&a.q.q);
	assert_int_equal(limit, 1232);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, limit, 0xffff, NULL, 0);
	assert_true(n > 0);
	assert_int_equal((size_t)n, a.q.q.question_end + 11u);
	uint16_t flags = dv_get16(a.out + 2);
	assert_true(flags & DV_FLAG_TC);
	assert_true(flags & DV_FLAG_QR);
	assert_int_equal(dv_get16(a.out + 4), 1);
	assert_int_equal(dv_get16(a.out + 6), 0);
	assert_int_equal(dv_get16(a.out + 8), 0);
	assert_int_equal(dv_get16(a.out + 10), 1);
	assert_memory_equal(a.out + 12, a.q.w + 12,
			    a.q.q.question_end - 12u);
	ldns_pkt *p = ldns_parse(a.out, (size_t)n);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_id(p), 0x7777);
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);

	/* client without EDNS: 512, header + question only */
	mkq(&a.q, "big.example", LDNS_RR_TYPE_TXT, 0x7778, 0);
	limit = dv_wire_udp_limit(&a.q.q);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, limit, 0xffff, NULL, 0);
	assert_int_equal((size_t)n, a.q.q.question_end);
	assert_int_equal(dv_get16(a.out + 10), 0);
	p = ldns_parse(a.out, (size_t)n);
	assert_true(ldns_pkt_tc(p));
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);

	/* exactly at the limit: not truncated */
	mkq(&a.q, "big.example", LDNS_RR_TYPE_TXT, 0x7779, O_EDNS);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, a.r.len, 0xffff, NULL, 0);
	assert_int_equal((size_t)n, a.r.len);
	assert_false(dv_get16(a.out + 2) & DV_FLAG_TC);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, a.r.len - 1, 0xffff, NULL, 0);
	assert_true(dv_get16(a.out + 2) & DV_FLAG_TC);

	/* truncated, with EDE and padding kept */
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 1232, DV_EDE_STALE, "stale", 468);
	assert_int_equal(n, 468);
	p = ldns_parse(a.out, (size_t)n);
	assert_true(ldns_pkt_tc(p));
	assert_non_null(find_option(p, LDNS_EDNS_EDE));
	assert_non_null(find_option(p, LDNS_EDNS_PADDING));
	ldns_pkt_free(p);

	/* no room */
	assert_int_equal(dv_wire_answer(a.out, 100, a.r.w, a.r.len, &a.r.r,
					a.q.w, &a.q.q, 0, 65535, 0xffff, NULL,
					0),
			 DV_ESPACE);
}

static void test_answer_ede(void **state)
{
	static ans_t a;
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 1, O_EDNS);
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 2, 0, O_EDNS, chain_rrs);
	const char *text = "served stale";
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 0, 65535, DV_EDE_STALE, text, 0);
	assert_int_equal((size_t)n, a.r.len + 6 + strlen(text));
	ldns_pkt *p = ldns_parse(a.out, (size_t)n);
	ldns_edns_option *o = find_option(p, LDNS_EDNS_EDE);
	assert_non_null(o);
	assert_int_equal(ldns_edns_get_size(o), 2 + strlen(text));
	const uint8_t *d = ldns_edns_get_data(o);
	assert_int_equal(dv_get16(d), DV_EDE_STALE);
	assert_memory_equal(d + 2, text, strlen(text));
	ldns_pkt_free(p);
	/* and our own parser reads it back */
	dv_wire_resp_t r;
	a.out[2] |= 0x80;
	assert_int_equal(dv_wire_parse_response(a.out, (size_t)n, &r), 0);
	assert_int_equal(r.ede_code, DV_EDE_STALE);

	/* EDE without text */
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, DV_EDE_PROHIBITED, NULL, 0);
	assert_int_equal((size_t)n, a.r.len + 6);
	p = ldns_parse(a.out, (size_t)n);
	o = find_option(p, LDNS_EDNS_EDE);
	assert_non_null(o);
	assert_int_equal(ldns_edns_get_size(o), 2);
	assert_int_equal(dv_get16(ldns_edns_get_data(o)), DV_EDE_PROHIBITED);
	ldns_pkt_free(p);

	/* the upstream's EDE is not passed through when none is given */
	mkr(&a.r, "www.example.com", LDNS_RR_TYPE_A, 2, 0, O_EDNS | O_EDE,
	    chain_rrs);
	assert_int_equal(a.r.r.ede_code, 22);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 0);
	p = ldns_parse(a.out, (size_t)n);
	assert_null(find_option(p, LDNS_EDNS_EDE));
	ldns_pkt_free(p);

	/* no EDNS from the client: no place for an EDE */
	mkq(&a.q, "www.example.com", LDNS_RR_TYPE_A, 1, 0);
	n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			   a.q.w, &a.q.q, 0, 65535, DV_EDE_STALE, text, 0);
	assert_int_equal(count_opts(a.out, (size_t)n), 0);
}

static void test_answer_padding(void **state)
{
	static ans_t a;
	static const char *rrs[30];
	static char text[29][100];
	rrs[0] = NULL;
	for (unsigned k = 0; k < 29; k++) {
		mkq(&a.q, "pad.example", LDNS_RR_TYPE_TXT, 3,
		    O_EDNS | O_PAD | (k & 1 ? O_DO : 0));
		mkr(&a.r, "pad.example", LDNS_RR_TYPE_TXT, 4, 0,
		    k & 2 ? O_EDNS : 0, rrs);
		assert_int_equal(a.r.ret, 0);
		for (unsigned e = 0; e < 2; e++) {
			int n = dv_wire_answer(
				a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
				a.q.w, &a.q.q, 0, 65535,
				e ? DV_EDE_STALE : 0xffff, e ? "stale" : NULL,
				468);
			assert_true(n > 0);
			assert_int_equal(n % 468, 0);
			ldns_pkt *p = ldns_parse(a.out, (size_t)n);
			assert_non_null(find_option(p, LDNS_EDNS_PADDING));
			assert_int_equal(ldns_pkt_edns_do(p), (k & 1) != 0);
			assert_int_equal(ldns_pkt_ancount(p), k);
			ldns_pkt_free(p);
			assert_int_equal(count_opts(a.out, (size_t)n), 1);
		}
		/* grow the answer by one TXT of 1..60 octets */
		snprintf(text[k], sizeof(text[k]),
			 "an:pad.example. 60 IN TXT \"%.*s\"", (int)(k * 7 % 60 + 1),
			 "0123456789012345678901234567890123456789012345678901234567890");
		rrs[k] = text[k];
		rrs[k + 1] = NULL;
	}

	/* a block of 128 (the query block size) works too */
	int n = dv_wire_answer(a.out, sizeof(a.out), a.r.w, a.r.len, &a.r.r,
			       a.q.w, &a.q.q, 0, 65535, 0xffff, NULL, 128);
	assert_int_equal(n % 128, 0);
	ldns_pkt_free(ldns_parse(a.out, (size_t)n));
}

/* ================= dv_wire_error ================= */

static void test_error_formerr(void **state)
{
	msg_t m;
	uint8_t out[1024];
	dv_wire_query_t q;

	/* readable question (trailing garbage after it) */
	mkq(&m, "Www.Example.com", LDNS_RR_TYPE_A, 0x4321, O_CD);
	m.w[m.len] = 0x55;
	assert_int_equal(dv_wire_parse_query(m.w, m.len + 1, &q),
			 DV_EMALFORMED);
	int n = dv_wire_error(out, sizeof(out), m.w, &q, DV_RCODE_FORMERR,
			      0xffff, NULL, 0);
	assert_int_equal((size_t)n, m.len);
	assert_int_equal(dv_get16(out), 0x4321);
	uint16_t flags = dv_get16(out + 2);
	assert_true(flags & DV_FLAG_QR);
	assert_true(flags & DV_FLAG_RD);
	assert_true(flags & DV_FLAG_CD);
	assert_int_equal(DV_RCODE(flags), DV_RCODE_FORMERR);
	assert_int_equal(dv_get16(out + 4), 1);
	assert_memory_equal(out + 12, m.w + 12, m.len - 12);
	ldns_pkt *p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);

	/* no readable question: QDCOUNT 2 */
	buf_t b;
	b_hdr(&b, 0x1111, DV_FLAG_RD, 2, 0, 0, 0);
	b_question(&b, "a.example", DV_TYPE_A);
	b_question(&b, "b.example", DV_TYPE_A);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EQDCOUNT);
	n = dv_wire_error(out, sizeof(out), b.b, &q, DV_RCODE_FORMERR, 0xffff,
			  NULL, 0);
	assert_int_equal(n, DV_DNS_HDR);
	assert_int_equal(dv_get16(out), 0x1111);
	assert_int_equal(dv_get16(out + 4), 0);
	assert_int_equal(DV_RCODE(dv_get16(out + 2)), DV_RCODE_FORMERR);
	p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
	assert_int_equal(ldns_pkt_qdcount(p), 0);
	ldns_pkt_free(p);

	/* no readable question: truncated */
	mkq(&m, "www.example.com", LDNS_RR_TYPE_A, 0x2222, 0);
	assert_int_equal(dv_wire_parse_query(m.w, m.len - 2, &q),
			 DV_EMALFORMED);
	n = dv_wire_error(out, sizeof(out), m.w, &q, DV_RCODE_FORMERR, 0xffff,
			  NULL, 0);
	assert_int_equal(n, DV_DNS_HDR);
	assert_int_equal(dv_get16(out + 4), 0);

	/* two OPTs: the OPT comes back, with the EDE */
	b_hdr(&b, 0x3333, 0, 1, 0, 0, 2);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, true, 0);
	b_opt(&b, 1232, 0, true, 0);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	n = dv_wire_error(out, sizeof(out), b.b, &q, DV_RCODE_FORMERR,
			  DV_EDE_OTHER, "two OPT", 0);
	assert_true(n > 0);
	p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	ldns_edns_option *o = find_option(p, LDNS_EDNS_EDE);
	assert_non_null(o);
	assert_int_equal(ldns_edns_get_size(o), 2 + 7);
	ldns_pkt_free(p);

	/* a broken OPT is not echoed */
	b_hdr(&b, 0x4444, 0, 1, 0, 0, 1);
	b_question(&b, "example.com", DV_TYPE_A);
	b_opt(&b, 1232, 0, true, 4);
	b_u16(&b, DV_EDNS_PADDING);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &q), DV_EMALFORMED);
	n = dv_wire_error(out, sizeof(out), b.b, &q, DV_RCODE_FORMERR,
			  DV_EDE_OTHER, NULL, 468);
	assert_int_equal((size_t)n, q.question_end);
	assert_int_equal(dv_get16(out + 10), 0);

	/* no room */
	mkq(&m, "www.example.com", LDNS_RR_TYPE_A, 0x2222, O_EDNS);
	assert_int_equal(dv_wire_error(out, 11, m.w, &m.q, DV_RCODE_FORMERR,
				       0xffff, NULL, 0),
			 DV_ESPACE);
	assert_int_equal(dv_wire_error(out, 20, m.w, &m.q, DV_RCODE_FORMERR,
				       0xffff, NULL, 0),
			 DV_ESPACE);
	assert_int_equal(dv_wire_error(out, m.q.question_end + 10u, m.w,
				       &m.q, DV_RCODE_FORMERR, 0xffff, NULL,
				       0),
			 DV_ESPACE);
}

static void test_error_notimp(void **state)
{
	ldns_pkt *p = NULL;
	msg_t m;
	uint8_t out[1024];
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, "example.com",
						    LDNS_RR_TYPE_A,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, 0x0bad);
	ldns_pkt_set_opcode(p, LDNS_PACKET_STATUS);
	ldns_pkt_set_edns_udp_size(p, 1232);
	to_wire(&m, p);
	assert_int_equal(dv_wire_parse_query(m.w, m.len, &m.q), 0);
	assert_int_equal(DV_OPCODE(m.q.flags), LDNS_PACKET_STATUS);

	int n = dv_wire_error(out, sizeof(out), m.w, &m.q, DV_RCODE_NOTIMP,
			      0xffff, NULL, 0);
	assert_int_equal((size_t)n, m.len);
	assert_int_equal(DV_OPCODE(dv_get16(out + 2)), LDNS_PACKET_STATUS);
	p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
	assert_int_equal(ldns_pkt_get_opcode(p), LDNS_PACKET_STATUS);
	assert_int_equal(ldns_pkt_id(p), 0x0bad);
	assert_true(ldns_pkt_qr(p));
	assert_true(ldns_pkt_rd(p));
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_edns_extended_rcode(p), 0);
	ldns_pkt_free(p);

	/* REFUSED with padding */
	mkq(&m, "example.com", LDNS_RR_TYPE_ANY, 9, O_EDNS | O_PAD);
	n = dv_wire_error(out, sizeof(out), m.w, &m.q, DV_RCODE_REFUSED,
			  DV_EDE_PROHIBITED, "no", 468);
	assert_int_equal(n, 468);
	p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
	assert_non_null(find_option(p, LDNS_EDNS_PADDING));
	assert_non_null(find_option(p, LDNS_EDNS_EDE));
	ldns_pkt_free(p);
}

static void test_error_badvers(void **state)
{
	msg_t m;
	uint8_t out[1024];
	mkq_v(&m, "example.com", LDNS_RR_TYPE_A, 0x0101, O_EDNS | O_DO, 4096,
	      1);
	assert_int_equal(m.q.edns_version, 1);
	int n = dv_wire_error(out, sizeof(out), m.w, &m.q, DV_RCODE_BADVERS,
			      0xffff, NULL, 0);
	assert_int_equal((size_t)n, m.q.question_end + 11u);
	assert_int_equal(DV_RCODE(dv_get16(out + 2)), 0);
	assert_int_equal(dv_get16(out + 10), 1);
	const uint8_t *opt = out + n - 11;
	assert_int_equal(opt[0], 0);
	assert_int_equal(dv_get16(opt + 1), DV_TYPE_OPT);
	assert_int_equal(dv_get16(opt + 3), 1232);
	assert_int_equal(opt[5], 1); /* extended rcode: 16 >> 4 */
	assert_int_equal(opt[6], 0); /* our version */
	assert_int_equal(opt[7], 0x80);
	assert_int_equal(dv_get16(opt + 9), 0);
	ldns_pkt *p = ldns_parse(out, (size_t)n);
	assert_int_equal(ldns_pkt_edns_extended_rcode(p), 1);
	assert_int_equal(ldns_pkt_edns_version(p), 0);
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);
}

/* ================= dv_wire_upstream_query ================= */

static void test_upstream_query(void **state)
{
	msg_t m;
	uint8_t out[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11];

	mkq(&m, "WWW.Example.COM", LDNS_RR_TYPE_AAAA, 0x1111,
	    O_EDNS | O_DO | O_CD | O_NORD | O_PAD | O_COOKIE);
	int n = dv_wire_upstream_query(out, sizeof(out), 0xbeef, m.w, &m.q);
	assert_int_equal((size_t)n, m.q.question_end + 11u);
	assert_int_equal(dv_get16(out), 0xbeef);
	/* AD always asked (RFC 6840 5.7) */
	assert_int_equal(dv_get16(out + 2), DV_FLAG_RD | DV_FLAG_AD | DV_FLAG_CD);
	assert_memory_equal(out + 12, "\3www\7example\3com\0\0\x1c\0\1", 21);
	assert_int_equal(dv_get16(out + 4), 1);
	assert_int_equal(dv_get16(out + 6), 0);
	assert_int_equal(dv_get16(out + 8), 0);
	assert_int_equal(dv_get16(out + 10), 1);
	ldns_pkt *p = ldns_parse(out, (size_t)n);
	assert_false(ldns_pkt_qr(p));
	assert_true(ldns_pkt_rd(p));
	assert_true(ldns_pkt_cd(p));
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
	assert_null(find_option(p, LDNS_EDNS_COOKIE));
	assert_null(find_option(p, LDNS_EDNS_PADDING));
	char *qn = owner_str(ldns_rr_list_rr(ldns_pkt_question(p), 0));
	assert_string_equal(qn, "www.example.com.");
	free(qn);
	ldns_pkt_free(p);
	/* and it is a query our own parser accepts */
	dv_wire_query_t q2;
	assert_int_equal(dv_wire_parse_query(out, (size_t)n, &q2), 0);
	assert_true(q2.has_opt);

	/* no EDNS from the client: still an OPT, DO clear, CD clear, AD
	 * asked (whoever asks for the answer later may take it) */
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 0x2222, 0);
	n = dv_wire_upstream_query(out, sizeof(out), 7, m.w, &m.q);
	assert_int_equal((size_t)n, m.q.question_end + 11u);
	assert_int_equal(dv_get16(out + 2), DV_FLAG_RD | DV_FLAG_AD);
	p = ldns_parse(out, (size_t)n);
	assert_true(ldns_pkt_edns(p));
	assert_false(ldns_pkt_edns_do(p));
	assert_false(ldns_pkt_cd(p));
	assert_true(ldns_pkt_ad(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
	ldns_pkt_free(p);

	/* AD alone (RFC 6840 5.7): forwarded, without DO; with CD too */
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 0x2223, O_AD);
	n = dv_wire_upstream_query(out, sizeof(out), 7, m.w, &m.q);
	assert_int_equal(dv_get16(out + 2), DV_FLAG_RD | DV_FLAG_AD);
	p = ldns_parse(out, (size_t)n);
	assert_true(ldns_pkt_ad(p));
	assert_false(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);
	mkq(&m, "example.com", LDNS_RR_TYPE_A, 0x2224, O_EDNS | O_AD | O_CD);
	n = dv_wire_upstream_query(out, sizeof(out), 7, m.w, &m.q);
	assert_int_equal(dv_get16(out + 2),
			 DV_FLAG_RD | DV_FLAG_AD | DV_FLAG_CD);

	/* the longest name fits the fetch buffer exactly */
	buf_t b;
	b_hdr(&b, 1, 0, 1, 0, 0, 0);
	b_long_name(&b, 255);
	b_u16(&b, 1);
	b_u16(&b, 1);
	assert_int_equal(dv_wire_parse_query(b.b, b.n, &m.q), 0);
	n = dv_wire_upstream_query(out, sizeof(out), 7, b.b, &m.q);
	assert_int_equal((size_t)n, sizeof(out));
	assert_int_equal(dv_wire_upstream_query(out, sizeof(out) - 1, 7, b.b,
						&m.q),
			 DV_ESPACE);
}

/* ================= dv_wire_key ================= */

static void test_key(void **state)
{
	msg_t a, b;
	uint8_t ka[DV_WIRE_KEY_MAX], kb[DV_WIRE_KEY_MAX];
	size_t la, lb;

	mkq(&a, "WWW.Example.com", LDNS_RR_TYPE_A, 1, 0);
	mkq(&b, "www.example.COM", LDNS_RR_TYPE_A, 2, O_EDNS);
	la = dv_wire_key(ka, a.w, &a.q);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_int_equal(la, a.q.qname_len + 5u);
	assert_int_equal(la, lb);
	assert_memory_equal(ka, kb, la);
	assert_memory_equal(ka, "\3www\7example\3com\0\0\1\0\1\0", la);

	/* DO distinguishes */
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_EDNS | O_DO);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_int_equal(la, lb);
	assert_memory_not_equal(ka, kb, la);
	/* CD distinguishes */
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_CD);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_memory_not_equal(ka, kb, la);
	/* DO+CD differs from DO and from CD */
	uint8_t kdo[DV_WIRE_KEY_MAX], kcd[DV_WIRE_KEY_MAX];
	memcpy(kcd, kb, lb);
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_EDNS | O_DO);
	dv_wire_key(kdo, b.w, &b.q);
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_EDNS | O_DO | O_CD);
	dv_wire_key(kb, b.w, &b.q);
	assert_memory_not_equal(kb, kdo, la);
	assert_memory_not_equal(kb, kcd, la);
	assert_memory_not_equal(kdo, kcd, la);
	/* AD does not: the answers differ only in the AD bit, which
	 * dv_wire_answer() sets per client (test_answer_ad) */
	uint8_t kad[DV_WIRE_KEY_MAX];
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_AD);
	dv_wire_key(kad, b.w, &b.q);
	assert_memory_equal(kad, ka, la);
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_AD | O_CD);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_memory_equal(kb, kcd, la);
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, O_EDNS | O_DO | O_AD);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_memory_equal(kb, kdo, la);
	/* the query sent upstream has the client's key (a shared fetch) */
	static const unsigned upq[] = {0, O_EDNS, O_AD, O_CD | O_AD,
				       O_EDNS | O_DO, O_EDNS | O_DO | O_AD,
				       O_EDNS | O_DO | O_CD};
	for (size_t i = 0; i < sizeof(upq) / sizeof(upq[0]); i++) {
		uint8_t up[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11];
		dv_wire_query_t uq;
		mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 2, upq[i]);
		lb = dv_wire_key(kb, b.w, &b.q);
		int n = dv_wire_upstream_query(up, sizeof(up), 5, b.w, &b.q);
		assert_true(n > 0);
		assert_int_equal(dv_wire_parse_query(up, (size_t)n, &uq), 0);
		assert_int_equal(dv_wire_key(kad, up, &uq), lb);
		assert_memory_equal(kad, kb, lb);
	}
	/* type distinguishes; RD and id do not */
	mkq(&b, "www.example.com", LDNS_RR_TYPE_AAAA, 1, 0);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_memory_not_equal(ka, kb, la);
	mkq(&b, "www.example.com", LDNS_RR_TYPE_A, 99, O_NORD);
	lb = dv_wire_key(kb, b.w, &b.q);
	assert_memory_equal(ka, kb, la);

	/* the longest name */
	buf_t m;
	b_hdr(&m, 1, 0, 1, 0, 0, 0);
	b_long_name(&m, 255);
	b_u16(&m, 1);
	b_u16(&m, 1);
	assert_int_equal(dv_wire_parse_query(m.b, m.n, &a.q), 0);
	/* one byte of room left: the core's upstream set (core.c) */
	assert_int_equal(dv_wire_key(ka, m.b, &a.q), DV_WIRE_KEY_MAX - 1);
}

static void test_name_from_text(void **state)
{
	(void)state;
	uint8_t w[DV_DNS_MAX_NAME + 8];
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), "."), 1);
	assert_int_equal(w[0], 0);
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), ""), 1);
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), "Example.test"),
			 14);
	assert_memory_equal(w, "\007Example\004test\000", 14);
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), "a_b-c.test."),
			 12);
	assert_memory_equal(w, "\005a_b-c\004test\000", 12);
	/* empty labels, bad characters, long labels and names */
	const char *bad[] = {"a..b", ".a", "a b", "a\\.b", "*.test", "..", "a.."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dv_wire_name_from_text(w, sizeof(w), bad[i]),
				 DV_EMALFORMED);
	char label[70];
	memset(label, 'x', 64);
	label[64] = '\0';
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), label),
			 DV_EMALFORMED);
	label[63] = '\0';
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), label), 65);
	char name[300];
	size_t n = 0;
	for (int k = 0; k < 5; k++) { /* 5 x 50 labels + dots: 255 > 253 */
		memset(name + n, 'y', 50);
		n += 50;
		name[n++] = '.';
	}
	name[n] = '\0';
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), name),
			 DV_EMALFORMED);
	name[n - 52] = '\0'; /* 4 labels: 205 octets */
	assert_int_equal(dv_wire_name_from_text(w, sizeof(w), name), 205);
	/* the buffer too small */
	assert_int_equal(dv_wire_name_from_text(w, 5, "example.test"),
			 DV_ESPACE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_short),
		cmocka_unit_test(test_query_qr),
		cmocka_unit_test(test_query_qdcount),
		cmocka_unit_test(test_query_ok),
		cmocka_unit_test(test_query_truncated),
		cmocka_unit_test(test_query_label_types),
		cmocka_unit_test(test_query_name_length),
		cmocka_unit_test(test_query_trailing),
		cmocka_unit_test(test_query_compressed_qname),
		cmocka_unit_test(test_query_records_checked),
		cmocka_unit_test(test_query_edns),
		cmocka_unit_test(test_query_two_opts),
		cmocka_unit_test(test_query_opt_owner),
		cmocka_unit_test(test_query_opt_options),
		cmocka_unit_test(test_udp_limit),
		cmocka_unit_test(test_name_plain),
		cmocka_unit_test(test_name_pointers),
		cmocka_unit_test(test_name_bad_pointers),
		cmocka_unit_test(test_name_expanded_length),
		cmocka_unit_test(test_resp_ttls),
		cmocka_unit_test(test_resp_negative),
		cmocka_unit_test(test_resp_ede),
		cmocka_unit_test(test_resp_limit),
		cmocka_unit_test(test_resp_malformed),
		cmocka_unit_test(test_resp_ttl_msb),
		cmocka_unit_test(test_question_matches),
		cmocka_unit_test(test_answer_basic),
		cmocka_unit_test(test_answer_ad),
		cmocka_unit_test(test_answer_aging),
		cmocka_unit_test(test_answer_aging_ttl_msb),
		cmocka_unit_test(test_answer_aging_pointer_into_ttl),
		cmocka_unit_test(test_answer_truncation),
		cmocka_unit_test(test_answer_ede),
		cmocka_unit_test(test_answer_padding),
		cmocka_unit_test(test_error_formerr),
		cmocka_unit_test(test_error_notimp),
		cmocka_unit_test(test_error_badvers),
		cmocka_unit_test(test_upstream_query),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_name_from_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

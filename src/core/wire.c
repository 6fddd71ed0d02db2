/*
 * DNS wire view.  Every read is checked against the message length; the
 * cursor functions return DV_EMALFORMED as soon as anything does not fit,
 * and nothing here allocates.
 *
 * Compression pointers must point strictly backwards from the pointer
 * itself; together with the 255-octet limit on the expanded name this makes
 * loops impossible (every trip around a loop adds label octets).
 */
#include "src/core/wire.h"

#include <string.h>

#include "src/core/errors.h"

static inline uint8_t lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Do bytes [from, to) overlap one of the (increasing) TTL fields recorded
 * so far? */
static bool in_ttl(size_t from, size_t to, const uint16_t *ttl_off,
		   unsigned n)
{
	unsigned lo = 0, hi = n;
	while (lo < hi) { /* first TTL that ends after `from` */
		unsigned mid = (lo + hi) / 2;
		if ((size_t)ttl_off[mid] + 4 <= from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && (size_t)ttl_off[lo] < to;
}

/*
 * Walk a (possibly compressed) name at *off: labels, total length and
 * pointer direction checked; `out` gets it uncompressed and lowercased when
 * given.  No byte of the name (length or label) may lie in one of the
 * `n_ttl` TTL fields given: TTLs are rewritten when answers age, which
 * would change the name such bytes spell.
 */
static int name_walk(const uint8_t *wire, size_t len, size_t *off,
		     uint8_t *out, size_t *out_len, const uint16_t *ttl_off,
		     unsigned n_ttl)
{
	size_t pos = *off;
	size_t total = 0;     /* expanded length, incl. the root label */
	size_t end = 0;       /* where the in-place name ends (after a jump) */
	unsigned jumps = 0;

	for (;;) {
		if (pos >= len)
			return DV_EMALFORMED;
		uint8_t l = wire[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return DV_EMALFORMED;
			size_t target = ((size_t)(l & 0x3f) << 8) | wire[pos + 1];
			if (target >= pos || target < DV_DNS_HDR || ++jumps > 127)
				return DV_EMALFORMED;
			if (end == 0)
				end = pos + 2;
			pos = target;
			continue;
		}
		if (l & 0xc0) /* 0x40 / 0x80: extended label types, obsolete */
			return DV_EMALFORMED;
		if (pos + 1 + l > len)
			return DV_EMALFORMED;
		if (in_ttl(pos, pos + 1 + (size_t)l, ttl_off, n_ttl))
			return DV_EMALFORMED;
		total += 1 + (size_t)l;
		if (total > DV_DNS_MAX_NAME)
			return DV_EMALFORMED;
		if (out) {
			out[total - 1 - l] = l;
			for (size_t i = 0; i < l; i++)
				out[total - l + i] = lower(wire[pos + 1 + i]);
		}
		pos += 1 + (size_t)l;
		if (l == 0)
			break;
	}
	*off = end ? end : pos;
	if (out_len)
		*out_len = total;
	return 0;
}

int dv_wire_name(const uint8_t *wire, size_t len, size_t *off, uint8_t *out,
		 size_t *out_len)
{
	return name_walk(wire, len, off, out, out_len, NULL, 0);
}

static int name_checked(const uint8_t *wire, size_t len, size_t *off,
			const uint16_t *ttl_off, unsigned n_ttl)
{
	return name_walk(wire, len, off, NULL, NULL, ttl_off, n_ttl);
}

/* The names inside RDATA that may be compressed (RFC 1035 types, RFC 3597
 * section 4): checked against TTL pointers too. */
static int rdata_names(const uint8_t *wire, size_t len, uint16_t type,
		       size_t rd, size_t rdlen, const uint16_t *ttl_off,
		       unsigned n_ttl)
{
	size_t off = rd, end = rd + rdlen;
	int names;
	switch (type) {
	case DV_TYPE_NS:
	case DV_TYPE_CNAME:
	case 12: /* PTR */
	case 39: /* DNAME */
		names = 1;
		break;
	case 15: /* MX */
		off += 2;
		names = 1;
		break;
	case DV_TYPE_SOA:
		names = 2;
		break;
	default:
		return 0;
	}
	for (int i = 0; i < names; i++) {
		if (off >= end)
			return DV_EMALFORMED;
		if (name_checked(wire, end, &off, ttl_off, n_ttl))
			return DV_EMALFORMED;
	}
	return 0;
}

bool dv_wire_name_eq(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

/* The question name of a query or answer: no compression allowed (there is
 * nothing before it to point to).  Returns its wire length, or 0. */
static size_t plain_name(const uint8_t *wire, size_t len, size_t off)
{
	size_t pos = off;
	for (;;) {
		if (pos >= len)
			return 0;
		uint8_t l = wire[pos];
		if (l & 0xc0)
			return 0;
		if (pos + 1 + l > len || pos + 1 + l - off > DV_DNS_MAX_NAME)
			return 0;
		pos += 1 + (size_t)l;
		if (l == 0)
			return pos - off;
	}
}

/* One resource record: name, fixed part, RDATA in bounds. */
typedef struct {
	size_t start, ttl_off, rdata_off;
	uint16_t type, class, rdlen;
	uint32_t ttl;
} rr_t;

static int rr_next(const uint8_t *wire, size_t len, size_t *off, rr_t *rr)
{
	rr->start = *off;
	int ret = dv_wire_name(wire, len, off, NULL, NULL);
	if (ret)
		return ret;
	if (*off + 10 > len)
		return DV_EMALFORMED;
	const uint8_t *p = wire + *off;
	rr->type = dv_get16(p);
	rr->class = dv_get16(p + 2);
	rr->ttl_off = *off + 4;
	rr->ttl = dv_get32(p + 4);
	rr->rdlen = dv_get16(p + 8);
	rr->rdata_off = *off + 10;
	if (rr->rdata_off + rr->rdlen > len)
		return DV_EMALFORMED;
	*off = rr->rdata_off + rr->rdlen;
	return 0;
}

/* Walk EDNS options of an OPT RDATA; fills the query's option flags. */
static int opt_options(const uint8_t *rd, size_t rdlen, dv_wire_query_t *q,
		       uint16_t *ede)
{
	size_t pos = 0;
	while (pos < rdlen) {
		if (pos + 4 > rdlen)
			return DV_EMALFORMED;
		uint16_t code = dv_get16(rd + pos);
		uint16_t olen = dv_get16(rd + pos + 2);
		if (pos + 4 + olen > rdlen)
			return DV_EMALFORMED;
		if (q && code == DV_EDNS_PADDING)
			q->edns_padding = true;
		if (q && code == DV_EDNS_TCP_KEEPALIVE)
			q->edns_keepalive = true;
		if (ede && code == DV_EDNS_EDE && olen >= 2 && *ede == 0xffff)
			*ede = dv_get16(rd + pos + 4);
		pos += 4 + (size_t)olen;
	}
	return 0;
}

int dv_wire_parse_query(const uint8_t *wire, size_t len, dv_wire_query_t *q)
{
	memset(q, 0, sizeof(*q));
	if (len < DV_DNS_HDR)
		return DV_ESHORT;
	q->id = dv_get16(wire);
	q->flags = dv_get16(wire + 2);
	q->qdcount = dv_get16(wire + 4);
	q->ancount = dv_get16(wire + 6);
	q->nscount = dv_get16(wire + 8);
	q->arcount = dv_get16(wire + 10);
	if (q->flags & DV_FLAG_QR)
		return DV_ENOTQUERY;
	if (q->qdcount != 1)
		return DV_EQDCOUNT;

	size_t nlen = plain_name(wire, len, DV_DNS_HDR);
	if (nlen == 0 || DV_DNS_HDR + nlen + 4 > len)
		return DV_EMALFORMED;
	q->qname_len = (uint16_t)nlen;
	q->qtype = dv_get16(wire + DV_DNS_HDR + nlen);
	q->qclass = dv_get16(wire + DV_DNS_HDR + nlen + 2);
	q->question_end = (uint16_t)(DV_DNS_HDR + nlen + 4);

	size_t off = q->question_end;
	unsigned n = (unsigned)q->ancount + q->nscount;
	rr_t rr;
	for (unsigned i = 0; i < n; i++)
		if (rr_next(wire, len, &off, &rr))
			return DV_EMALFORMED;
	for (unsigned i = 0; i < q->arcount; i++) {
		if (rr_next(wire, len, &off, &rr))
			return DV_EMALFORMED;
		if (rr.type != DV_TYPE_OPT)
			continue;
		/* RFC 6891 6.1.1: one OPT, owner is the root */
		if (q->has_opt || wire[rr.start] != 0)
			return DV_EMALFORMED;
		q->has_opt = true;
		q->edns_udp_size = rr.class;
		q->edns_version = (uint8_t)(rr.ttl >> 16);
		q->edns_do = (rr.ttl & 0x8000) != 0;
		q->opt_rdata_off = (uint16_t)rr.rdata_off;
		q->opt_rdata_len = rr.rdlen;
		if (opt_options(wire + rr.rdata_off, rr.rdlen, q, NULL)) {
			q->has_opt = false; /* don't echo a broken OPT */
			return DV_EMALFORMED;
		}
	}
	if (off != len)
		return DV_EMALFORMED; /* trailing bytes */
	return 0;
}

uint16_t dv_wire_udp_limit(const dv_wire_query_t *q)
{
	if (!q->has_opt)
		return 512;
	if (q->edns_udp_size < 512)
		return 512;
	if (q->edns_udp_size > DV_EDNS_DEFAULT_UDP)
		return DV_EDNS_DEFAULT_UDP;
	return q->edns_udp_size;
}

int dv_wire_parse_response(const uint8_t *wire, size_t len,
			   dv_wire_resp_t *r)
{
	r->n_ttl = 0;
	r->min_ttl = UINT32_MAX;
	r->neg_ttl = UINT32_MAX;
	r->negative = false;
	r->has_opt = false;
	r->opt_start = r->opt_end = 0;
	r->ede_code = 0xffff;
	r->question_end = 0;
	if (len < DV_DNS_HDR)
		return DV_ESHORT;
	if (len > DV_DNS_MAX_MSG)
		return DV_EMALFORMED;
	r->id = dv_get16(wire);
	r->flags = dv_get16(wire + 2);
	r->qdcount = dv_get16(wire + 4);
	r->ancount = dv_get16(wire + 6);
	r->nscount = dv_get16(wire + 8);
	r->arcount = dv_get16(wire + 10);
	if (!(r->flags & DV_FLAG_QR))
		return DV_EMALFORMED;
	if (r->qdcount != 1)
		return DV_EMALFORMED;
	size_t nlen = plain_name(wire, len, DV_DNS_HDR);
	if (nlen == 0 || DV_DNS_HDR + nlen + 4 > len)
		return DV_EMALFORMED;
	r->qtype = dv_get16(wire + DV_DNS_HDR + nlen);
	r->qclass = dv_get16(wire + DV_DNS_HDR + nlen + 2);
	r->question_end = (uint16_t)(DV_DNS_HDR + nlen + 4);

	uint8_t rcode = DV_RCODE(r->flags);
	r->negative = rcode == DV_RCODE_NXDOMAIN ||
		      (rcode == DV_RCODE_NOERROR && r->ancount == 0);

	bool over = false;
	size_t off = r->question_end;
	unsigned total = (unsigned)r->ancount + r->nscount + r->arcount;
	for (unsigned i = 0; i < total; i++) {
		rr_t rr;
		size_t start = off;
		if (name_checked(wire, len, &start, r->ttl_off, r->n_ttl))
			return DV_EMALFORMED;
		if (rr_next(wire, len, &off, &rr))
			return DV_EMALFORMED;
		bool additional = i >= (unsigned)r->ancount + r->nscount;
		if (rr.type == DV_TYPE_OPT) {
			if (!additional || r->has_opt || wire[rr.start] != 0)
				return DV_EMALFORMED;
			r->has_opt = true;
			r->opt_start = (uint16_t)rr.start;
			r->opt_end = (uint16_t)off;
			if (opt_options(wire + rr.rdata_off, rr.rdlen, NULL,
					&r->ede_code))
				return DV_EMALFORMED;
			continue;
		}
		if (r->n_ttl < DV_WIRE_MAX_TTLS)
			r->ttl_off[r->n_ttl++] = (uint16_t)rr.ttl_off;
		else
			over = true;
		/* after the TTL is recorded: RDATA may not point into it either */
		if (rdata_names(wire, len, rr.type, rr.rdata_off, rr.rdlen,
				r->ttl_off, r->n_ttl))
			return DV_EMALFORMED;
		/* RFC 2181 8: a TTL with the top bit set is treated as 0 */
		uint32_t ttl = rr.ttl > 0x7fffffff ? 0 : rr.ttl;
		if (ttl < r->min_ttl)
			r->min_ttl = ttl;
		bool authority = i >= r->ancount && !additional;
		if (authority && rr.type == DV_TYPE_SOA && rr.rdlen >= 22) {
			uint32_t minimum =
				dv_get32(wire + rr.rdata_off + rr.rdlen - 4);
			uint32_t neg = ttl < minimum ? ttl : minimum;
			if (neg < r->neg_ttl)
				r->neg_ttl = neg;
		}
	}
	if (off != len)
		return DV_EMALFORMED;
	return over ? DV_ELIMIT : 0;
}

bool dv_wire_question_matches(const uint8_t *r_wire, size_t r_len,
			      const uint8_t *q_wire, size_t q_len)
{
	if (r_len < DV_DNS_HDR || q_len < DV_DNS_HDR)
		return false;
	if (dv_get16(r_wire + 4) != 1)
		return false;
	size_t rn = plain_name(r_wire, r_len, DV_DNS_HDR);
	size_t qn = plain_name(q_wire, q_len, DV_DNS_HDR);
	if (rn == 0 || rn != qn || DV_DNS_HDR + rn + 4 > r_len ||
	    DV_DNS_HDR + qn + 4 > q_len)
		return false;
	if (!dv_wire_name_eq(r_wire + DV_DNS_HDR, q_wire + DV_DNS_HDR, rn))
		return false;
	return memcmp(r_wire + DV_DNS_HDR + rn, q_wire + DV_DNS_HDR + qn, 4) ==
	       0;
}

size_t dv_wire_cut_truncated(uint8_t *msg, size_t len)
{
	if (len < DV_DNS_HDR || dv_get16(msg + 4) != 1)
		return 0;
	size_t n = plain_name(msg, len, DV_DNS_HDR);
	if (n == 0 || DV_DNS_HDR + n + 4 > len)
		return 0;
	dv_put16(msg + 2, dv_get16(msg + 2) | DV_FLAG_TC);
	memset(msg + 6, 0, 6); /* no answer, authority or additional RRs */
	return DV_DNS_HDR + n + 4;
}

/* Size of the OPT we append for a client. */
static size_t opt_size(const char *ede_text, uint16_t ede_code)
{
	size_t n = 11;
	if (ede_code != 0xffff)
		n += 4 + 2 + (ede_text ? strlen(ede_text) : 0);
	return n;
}

/*
 * Append an OPT at dst[pos].  `total_before` is the message length before
 * the OPT; padding (RFC 8467) brings the final length to a multiple of
 * pad_block.  Returns the new length or DV_ESPACE.
 */
static int put_opt(uint8_t *dst, size_t cap, size_t pos, bool do_bit,
		   uint8_t ext_rcode, uint16_t ede_code, const char *ede_text,
		   unsigned pad_block)
{
	size_t base = opt_size(ede_text, ede_code);
	size_t pad = 0;
	bool padded = false;
	if (pad_block) {
		size_t t = pos + base + 4;
		pad = (pad_block - t % pad_block) % pad_block;
		padded = true;
	}
	size_t need = base + (padded ? 4 + pad : 0);
	if (pos + need > cap)
		return DV_ESPACE;
	uint8_t *p = dst + pos;
	p[0] = 0;
	dv_put16(p + 1, DV_TYPE_OPT);
	dv_put16(p + 3, DV_EDNS_DEFAULT_UDP);
	p[5] = ext_rcode;
	p[6] = 0; /* version */
	p[7] = do_bit ? 0x80 : 0;
	p[8] = 0;
	size_t rdlen = need - 11;
	dv_put16(p + 9, (uint16_t)rdlen);
	p += 11;
	if (ede_code != 0xffff) {
		size_t tl = ede_text ? strlen(ede_text) : 0;
		dv_put16(p, DV_EDNS_EDE);
		dv_put16(p + 2, (uint16_t)(2 + tl));
		dv_put16(p + 4, ede_code);
		if (tl)
			memcpy(p + 6, ede_text, tl);
		p += 6 + tl;
	}
	if (padded) {
		dv_put16(p, DV_EDNS_PADDING);
		dv_put16(p + 2, (uint16_t)pad);
		memset(p + 4, 0, pad);
	}
	return (int)(pos + need);
}

/* Does the client take the AD bit (RFC 6840 5.7, 5.8)? */
static bool wants_ad(const dv_wire_query_t *q)
{
	return q->edns_do || (q->flags & DV_FLAG_AD);
}

int dv_wire_answer(uint8_t *dst, size_t cap, const uint8_t *src, size_t len,
		   const dv_wire_resp_t *r, const uint8_t *q_wire,
		   const dv_wire_query_t *q, uint32_t age, size_t limit,
		   uint16_t ede_code, const char *ede_text, unsigned pad_block)
{
	size_t cut = 0;
	if (r->has_opt) {
		/* Records after the OPT could point into moved bytes. */
		if (r->opt_end != len)
			return DV_EMALFORMED;
		cut = (size_t)(r->opt_end - r->opt_start);
	}
	size_t body = len - cut;
	if (body > cap || r->question_end < DV_DNS_HDR ||
	    r->question_end > body)
		return DV_ESPACE;
	memcpy(dst, src, body);
	dv_put16(dst, q->id);
	uint16_t flags = (uint16_t)((r->flags & ~(DV_FLAG_RD | DV_FLAG_CD)) |
				    (q->flags & (DV_FLAG_RD | DV_FLAG_CD)) |
				    DV_FLAG_QR);
	/*
	 * RFC 6840 5.8: AD only for a client that asked for it with AD or
	 * DO.  The upstream is always asked with AD, and one cache entry
	 * serves both kinds of client (see dv_wire_key()).
	 */
	if (!wants_ad(q))
		flags &= (uint16_t)~DV_FLAG_AD;
	dv_put16(dst + 2, flags);
	if (r->has_opt)
		dv_put16(dst + 10, (uint16_t)(r->arcount - 1));
	/* the client's letter case in the question */
	if (q->qname_len && (size_t)DV_DNS_HDR + q->qname_len + 4 ==
				    r->question_end)
		memcpy(dst + DV_DNS_HDR, q_wire + DV_DNS_HDR, q->qname_len);
	if (age) {
		for (unsigned i = 0; i < r->n_ttl; i++) {
			size_t o = r->ttl_off[i];
			if (r->has_opt && o >= r->opt_end)
				o -= cut;
			if (o + 4 > body)
				continue;
			uint32_t ttl = dv_get32(dst + o);
			if (ttl > 0x7fffffff) /* RFC 2181 8 */
				ttl = 0;
			dv_put32(dst + o, ttl > age ? ttl - age : 0);
		}
	}
	size_t pos = body;
	if (q->has_opt) {
		int ret = put_opt(dst, cap, pos, q->edns_do, 0, ede_code,
				  ede_text, pad_block);
		if (ret < 0)
			return ret;
		dv_put16(dst + 10, (uint16_t)(dv_get16(dst + 10) + 1));
		pos = (size_t)ret;
	}
	if (pos <= limit)
		return (int)pos;

	/* Truncate: header + question (+ OPT), TC set (RFC 2181 9). */
	pos = r->question_end;
	dv_put16(dst + 2, flags | DV_FLAG_TC);
	dv_put16(dst + 6, 0);
	dv_put16(dst + 8, 0);
	dv_put16(dst + 10, 0);
	if (q->has_opt) {
		int ret = put_opt(dst, cap, pos, q->edns_do, 0, ede_code,
				  ede_text, pad_block);
		if (ret < 0)
			return ret;
		dv_put16(dst + 10, 1);
		pos = (size_t)ret;
	}
	return (int)pos;
}

int dv_wire_error(uint8_t *dst, size_t cap, const uint8_t *q_wire,
		  const dv_wire_query_t *q, uint8_t rcode, uint16_t ede_code,
		  const char *ede_text, unsigned pad_block)
{
	if (cap < DV_DNS_HDR)
		return DV_ESPACE;
	dv_put16(dst, q->id);
	uint16_t flags = (uint16_t)(DV_FLAG_QR | (q->flags & 0x7800) |
				    (q->flags & (DV_FLAG_RD | DV_FLAG_CD)) |
				    DV_FLAG_RA | (rcode & 0xf));
	dv_put16(dst + 2, flags);
	size_t pos = DV_DNS_HDR;
	bool echo = q->qdcount == 1 && q->question_end > DV_DNS_HDR;
	dv_put16(dst + 4, echo ? 1 : 0);
	dv_put16(dst + 6, 0);
	dv_put16(dst + 8, 0);
	dv_put16(dst + 10, 0);
	if (echo) {
		size_t qlen = (size_t)q->question_end - DV_DNS_HDR;
		if (pos + qlen > cap)
			return DV_ESPACE;
		memcpy(dst + pos, q_wire + DV_DNS_HDR, qlen);
		pos += qlen;
	}
	if (q->has_opt) {
		int ret = put_opt(dst, cap, pos, q->edns_do,
				  (uint8_t)(rcode >> 4), ede_code, ede_text,
				  pad_block);
		if (ret < 0)
			return ret;
		dv_put16(dst + 10, 1);
		pos = (size_t)ret;
	}
	return (int)pos;
}

int dv_wire_upstream_query(uint8_t *dst, size_t cap, uint16_t id,
			   const uint8_t *q_wire, const dv_wire_query_t *q)
{
	size_t need = (size_t)q->question_end + 11;
	if (need > cap || q->question_end <= DV_DNS_HDR)
		return DV_ESPACE;
	/*
	 * AD always (RFC 6840 5.7: we understand it): the fetch and the cache
	 * entry are shared by the clients that asked AD and those that did
	 * not, and dv_wire_answer() clears the bit for those that did not,
	 * so the cache is not split by a bit only the header carries.
	 */
	dv_put16(dst, id);
	dv_put16(dst + 2, (uint16_t)(DV_FLAG_RD | DV_FLAG_AD |
				     (q->flags & DV_FLAG_CD)));
	dv_put16(dst + 4, 1);
	dv_put16(dst + 6, 0);
	dv_put16(dst + 8, 0);
	dv_put16(dst + 10, 1);
	for (size_t i = DV_DNS_HDR; i < (size_t)DV_DNS_HDR + q->qname_len; i++)
		dst[i] = lower(q_wire[i]);
	memcpy(dst + DV_DNS_HDR + q->qname_len,
	       q_wire + DV_DNS_HDR + q->qname_len, 4);
	int ret = put_opt(dst, cap, q->question_end, q->edns_do, 0, 0xffff,
			  NULL, 0);
	return ret;
}

size_t dv_wire_key(uint8_t *key, const uint8_t *q_wire,
		   const dv_wire_query_t *q)
{
	size_t n = q->qname_len;
	for (size_t i = 0; i < n; i++)
		key[i] = lower(q_wire[DV_DNS_HDR + i]);
	dv_put16(key + n, q->qtype);
	dv_put16(key + n + 2, q->qclass);
	/*
	 * Not AD: the answers to AD and to no AD differ only in the header's
	 * AD bit, which dv_wire_answer() sets per client (RFC 6840 5.8).
	 */
	key[n + 4] = (uint8_t)((q->edns_do ? 2 : 0) |
			       ((q->flags & DV_FLAG_CD) ? 1 : 0));
	return n + 5;
}

int dv_wire_add_keepalive(uint8_t *msg, size_t len, size_t cap,
			  uint16_t timeout_100ms, unsigned pad_block)
{
	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(msg, len, &r);
	if (ret != 0 && ret != DV_ELIMIT)
		return DV_EMALFORMED;
	if (!r.has_opt || r.opt_end != len)
		return DV_EMALFORMED;
	size_t rd = (size_t)r.opt_start + 11;
	size_t end = len;
	/* drop a trailing padding option: it is recomputed below */
	size_t pos = rd, last = SIZE_MAX;
	while (pos + 4 <= end) {
		last = pos;
		pos += 4 + (size_t)dv_get16(msg + pos + 2);
	}
	if (last != SIZE_MAX && dv_get16(msg + last) == DV_EDNS_PADDING)
		end = last;
	size_t pad = 0;
	if (pad_block) {
		size_t t = end + 6 + 4;
		pad = 4 + (pad_block - t % pad_block) % pad_block;
	}
	if (end + 6 + pad > cap)
		return DV_ESPACE;
	dv_put16(msg + end, DV_EDNS_TCP_KEEPALIVE);
	dv_put16(msg + end + 2, 2);
	dv_put16(msg + end + 4, timeout_100ms);
	end += 6;
	if (pad_block) {
		dv_put16(msg + end, DV_EDNS_PADDING);
		dv_put16(msg + end + 2, (uint16_t)(pad - 4));
		memset(msg + end + 4, 0, pad - 4);
		end += pad;
	}
	dv_put16(msg + r.opt_start + 9, (uint16_t)(end - rd));
	return (int)end;
}

int dv_wire_name_from_text(uint8_t *dst, size_t cap, const char *text)
{
	size_t pos = 0;
	const char *p = text;
	if (strcmp(text, ".") == 0)
		p = ""; /* the root: one zero octet */
	while (*p != '\0') {
		size_t l = strcspn(p, ".");
		if (l == 0 || l > 63)
			return DV_EMALFORMED;
		for (size_t i = 0; i < l; i++) {
			char c = p[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return DV_EMALFORMED;
		}
		if (pos + 1 + l + 1 > DV_DNS_MAX_NAME)
			return DV_EMALFORMED;
		if (pos + 1 + l + 1 > cap)
			return DV_ESPACE;
		dst[pos++] = (uint8_t)l;
		memcpy(dst + pos, p, l);
		pos += l;
		p += l;
		if (*p == '.')
			p++;
	}
	if (pos + 1 > cap)
		return DV_ESPACE;
	dst[pos++] = 0;
	return (int)pos;
}

#pragma once
/*
 * DNS wire view: the hot-path parser and writers.  Allocation-free and
 * defensive: every read is bounds-checked, compression pointers must point
 * backwards (so loops are impossible) and names are limited to 255 octets
 * and labels to 63.  No I/O.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_DNS_HDR 12
#define DV_DNS_MAX_NAME 255
#define DV_DNS_MAX_MSG 65535

/* RR types and classes used by the code */
#define DV_TYPE_A 1
#define DV_TYPE_NS 2
#define DV_TYPE_CNAME 5
#define DV_TYPE_SOA 6
#define DV_TYPE_TXT 16
#define DV_TYPE_AAAA 28
#define DV_TYPE_OPT 41
#define DV_TYPE_IXFR 251
#define DV_TYPE_AXFR 252
#define DV_TYPE_ANY 255
#define DV_CLASS_IN 1

/* rcodes */
#define DV_RCODE_NOERROR 0
#define DV_RCODE_FORMERR 1
#define DV_RCODE_SERVFAIL 2
#define DV_RCODE_NXDOMAIN 3
#define DV_RCODE_NOTIMP 4
#define DV_RCODE_REFUSED 5
#define DV_RCODE_BADVERS 16 /* extended: needs OPT */

/* header flag bits (host order of bytes 2..3) */
#define DV_FLAG_QR 0x8000
#define DV_FLAG_AA 0x0400
#define DV_FLAG_TC 0x0200
#define DV_FLAG_RD 0x0100
#define DV_FLAG_RA 0x0080
#define DV_FLAG_AD 0x0020
#define DV_FLAG_CD 0x0010
#define DV_OPCODE(flags) (((flags) >> 11) & 0xf)
#define DV_RCODE(flags) ((flags)&0xf)

/* EDNS option codes */
#define DV_EDNS_TCP_KEEPALIVE 11
#define DV_EDNS_PADDING 12
#define DV_EDNS_EDE 15

/* Extended DNS Error info codes (RFC 8914) */
#define DV_EDE_OTHER 0
#define DV_EDE_STALE 3
#define DV_EDE_PROHIBITED 18
#define DV_EDE_NOT_READY 14
#define DV_EDE_NO_REACHABLE_AUTHORITY 22
#define DV_EDE_NETWORK_ERROR 23

#define DV_EDNS_DEFAULT_UDP 1232 /* DNS flag day 2020 */

static inline uint16_t dv_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t dv_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}
static inline void dv_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void dv_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Parsed view of a query.  Offsets index the caller's buffer. */
typedef struct {
	uint16_t id;
	uint16_t flags;
	uint16_t qdcount, ancount, nscount, arcount;

	/* question (valid when qdcount == 1 and parse returned 0) */
	uint16_t qname_len; /* wire length incl. root label, starts at 12 */
	uint16_t qtype, qclass;
	uint16_t question_end; /* offset just after QTYPE/QCLASS */

	/* EDNS (RFC 6891) */
	bool has_opt;
	uint8_t edns_version;
	bool edns_do;
	uint16_t edns_udp_size;   /* as sent; see dv_wire_udp_limit() */
	uint16_t opt_rdata_off;   /* offset of OPT RDATA */
	uint16_t opt_rdata_len;
	bool edns_padding;        /* query carried a Padding option */
	bool edns_keepalive;      /* query carried edns-tcp-keepalive */
} dv_wire_query_t;

/*
 * Parse a query.  Returns:
 *  0             all of it parsed; `q` filled.
 *  DV_ESHORT     fewer than 12 bytes: drop, there is nothing to answer.
 *  DV_ENOTQUERY  QR bit set: drop (never answer responses).
 *  DV_EQDCOUNT   QDCOUNT != 1 (header fields of `q` valid): FORMERR.
 *  DV_EMALFORMED anything else broken (header fields valid, question valid
 *                if question_end != 0): FORMERR.
 * Opcode is not judged here (the caller answers NOTIMP).  Records in the
 * answer/authority sections of a query are skipped but checked; one OPT in
 * the additional section is read, two are malformed (RFC 6891 6.1.1).
 */
int dv_wire_parse_query(const uint8_t *wire, size_t len, dv_wire_query_t *q);

/*
 * Skip a (possibly compressed) name at `*off`, advancing `*off` past its
 * in-place bytes.  Validates labels, total length and pointer direction.
 * If `out` is given, writes the uncompressed name lowercased (<= 255 bytes)
 * and its length to `*out_len`.  Returns 0 or DV_EMALFORMED.
 */
int dv_wire_name(const uint8_t *wire, size_t len, size_t *off, uint8_t *out,
		 size_t *out_len);

/* Case-insensitive compare of two uncompressed wire names of equal length. */
bool dv_wire_name_eq(const uint8_t *a, const uint8_t *b, size_t len);

/* Maximum answer size for a UDP client: EDNS size clamped to [512, 1232];
 * 512 without EDNS. */
uint16_t dv_wire_udp_limit(const dv_wire_query_t *q);

/*
 * Facts about an upstream response that the cache and the answer path need.
 * ttl_off lists the offset of every TTL field outside OPT; rr positions are
 * recorded so an OPT can be cut out.
 */
#define DV_WIRE_MAX_TTLS 256
typedef struct {
	uint16_t id;
	uint16_t flags;
	uint16_t qdcount, ancount, nscount, arcount;
	uint16_t question_end;
	uint16_t qtype, qclass;
	uint16_t n_ttl;
	uint16_t ttl_off[DV_WIRE_MAX_TTLS];
	uint32_t min_ttl;     /* min TTL over answer+authority+additional
				 (not OPT); UINT32_MAX if none */
	bool negative;        /* NXDOMAIN, or NOERROR with no answer */
	uint32_t neg_ttl;     /* RFC 2308: min(SOA TTL, SOA MINIMUM) of the
				 authority SOA; UINT32_MAX when no SOA */
	bool has_opt;
	uint16_t opt_start, opt_end; /* byte range of the OPT RR */
	uint16_t ede_code;    /* first EDE in the OPT, 0xffff if none */
} dv_wire_resp_t;

/*
 * Parse and check a whole response.  Returns 0, DV_ESHORT, DV_EMALFORMED,
 * or DV_ELIMIT when it has more than DV_WIRE_MAX_TTLS records (still a
 * valid answer, just not one the cache can age: fields other than ttl_off
 * are valid then).
 */
int dv_wire_parse_response(const uint8_t *wire, size_t len,
			   dv_wire_resp_t *r);

/* A response of which only the first `len` bytes arrived (a datagram
 * larger than the buffer read into): cut to its header and its one
 * question, with TC set and no records, as a server that had to truncate
 * would send it.  The new length, or 0 when not even the question is
 * whole. */
size_t dv_wire_cut_truncated(uint8_t *msg, size_t len);

/*
 * Does the response's question equal the query's?  Compares the QNAME
 * case-insensitively, QTYPE and QCLASS.  `q_wire` must hold the query's
 * question at offset 12 (its own parse already done).
 */
bool dv_wire_question_matches(const uint8_t *r_wire, size_t r_len,
			      const uint8_t *q_wire, size_t q_len);

/*
 * Build the answer a client receives from an upstream (or cached) response
 * `src` (whose OPT, if any, is at [opt_start, opt_end) per `r`; it is cut
 * out) for the client query `q_wire`/`q`:
 *  - id and the question bytes (letter case) come from the client query;
 *  - RD and CD are the client's; the other flags and the rcode are src's,
 *    except AD, which is cleared unless the client set AD or DO (RFC 6840
 *    5.8);
 *  - when the client sent EDNS, an OPT is appended: UDP size 1232, DO as the
 *    client's, an EDE option if `ede_code` != 0xffff (with `ede_text`), and
 *    padding to a multiple of `pad_block` when `pad_block` != 0 (RFC 8467);
 *  - when `age` != 0 every TTL in r->ttl_off is lowered by `age` (never
 *    below 0);
 *  - when the result is longer than `limit`, it is truncated to the header,
 *    question and OPT, with TC set.
 * Writes into `dst` (capacity `cap`), returns the length, or DV_ESPACE.
 */
int dv_wire_answer(uint8_t *dst, size_t cap, const uint8_t *src, size_t len,
		   const dv_wire_resp_t *r, const uint8_t *q_wire,
		   const dv_wire_query_t *q, uint32_t age, size_t limit,
		   uint16_t ede_code, const char *ede_text, unsigned pad_block);

/*
 * Build an error answer with `rcode` to the client query (FORMERR, NOTIMP,
 * SERVFAIL, REFUSED, BADVERS...).  The header is echoed (id, opcode, RD,
 * CD), the question is echoed when `q->question_end` != 0, and an OPT is
 * added when the query had one (carrying the extended rcode bits, an EDE
 * when `ede_code` != 0xffff, padding as above).  Returns the length or
 * DV_ESPACE.
 */
int dv_wire_error(uint8_t *dst, size_t cap, const uint8_t *q_wire,
		  const dv_wire_query_t *q, uint8_t rcode, uint16_t ede_code,
		  const char *ede_text, unsigned pad_block);

/*
 * Write the normalized query dnsveil sends upstream: the given id, RD=1,
 * AD=1 (RFC 6840 5.7, whatever the client set: dv_wire_answer() gives AD
 * only to clients that asked), the client's CD, its question with the
 * name lowercased, and an OPT with UDP size 1232 and the client's DO bit.
 * The result depends only on what dv_wire_key() keeps.  Returns the
 * length or DV_ESPACE.
 */
int dv_wire_upstream_query(uint8_t *dst, size_t cap, uint16_t id,
			   const uint8_t *q_wire, const dv_wire_query_t *q);

/*
 * Write the presentation-format name `text` ("example.com", "example.com."
 * or "." for the root) as wire labels into `dst`.  Letters, digits, '-'
 * and '_' only, no escapes; labels of 1..63 octets, the name at most 255.
 * Returns the length, or DV_EMALFORMED (with no reason) / DV_ESPACE.
 */
int dv_wire_name_from_text(uint8_t *dst, size_t cap, const char *text);

/*
 * Cache key of a query: lowercased QNAME, QTYPE, QCLASS, and the DO and CD
 * bits; not AD (the answers differ only in the AD bit, which
 * dv_wire_answer() sets per client).  Writes at most DV_WIRE_KEY_MAX
 * bytes, returns the length.
 */
/* (one byte more than dv_wire_key() writes: the core appends the
 * query's upstream set when it is not 0, core.c) */
#define DV_WIRE_KEY_MAX (DV_DNS_MAX_NAME + 6)
size_t dv_wire_key(uint8_t *key, const uint8_t *q_wire,
		   const dv_wire_query_t *q);

/*
 * Add an EDNS TCP keepalive option (RFC 7828) carrying `timeout_100ms` to
 * the OPT record that ends the answer `msg` (length `len`, buffer `cap`),
 * keeping padding (RFC 8467) last and the length a multiple of `pad_block`
 * when it is not 0.  Returns the new length, DV_EMALFORMED when the message
 * does not end with an OPT, or DV_ESPACE.
 */
int dv_wire_add_keepalive(uint8_t *msg, size_t len, size_t cap,
			  uint16_t timeout_100ms, unsigned pad_block);

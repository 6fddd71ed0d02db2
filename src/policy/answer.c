/*
 * The answers of blocked queries: the group's action as a response the
 * core sends as it is.
 *
 * The response is first written plainly (header, the question, the
 * records, for NXDOMAIN and NODATA an SOA whose TTL and MINIMUM are the
 * group's blocked-ttl so that the client caches the negative answer that
 * long, RFC 2308) and then handed to dv_wire_answer(), which gives it the
 * client's id, RD and CD, its OPT with the EDE, padding and truncation
 * exactly as for an upstream answer.
 */
#include <string.h>

#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/policy/policy_int.h"

#define DV_EDE_BLOCKED 15 /* RFC 8914 4.16 */
#define ANSWER_TMP 1024 /* question + 8 AAAA + an SOA */

/* One record owned by the name at `ptr` (a compression pointer). */
static size_t put_rr(uint8_t *p, uint16_t ptr, uint16_t type, uint16_t qclass,
		     uint32_t ttl, const uint8_t *rdata, uint16_t rdlen)
{
	dv_put16(p, (uint16_t)(0xc000 | ptr));
	dv_put16(p + 2, type);
	dv_put16(p + 4, qclass);
	dv_put32(p + 6, ttl);
	dv_put16(p + 10, rdlen);
	memcpy(p + 12, rdata, rdlen);
	return 12u + rdlen;
}

int dv_policy_blocked_answer(uint8_t *buf, size_t cap, const dv_query_t *q,
			     const group_t *g, unsigned suffix_off,
			     const char *list, unsigned pad_block)
{
	const dv_wire_query_t *v = &q->view;
	uint8_t tmp[ANSWER_TMP];
	size_t qend = v->question_end;
	if (qend > ANSWER_TMP - 8 * 28 - 64 || qend <= DV_DNS_HDR)
		return DV_ESPACE;
	uint8_t rcode = DV_RCODE_NOERROR;
	uint16_t an = 0, ns = 0;
	memcpy(tmp + DV_DNS_HDR, q->wire + DV_DNS_HDR, qend - DV_DNS_HDR);
	size_t pos = qend;

	static const uint8_t zero[16];
	if (g->action == DV_ACTION_NULL || g->action == DV_ACTION_ADDRESSES) {
		bool null = g->action == DV_ACTION_NULL;
		if (v->qtype == DV_TYPE_A) {
			unsigned n = null ? 1 : g->n_v4;
			for (unsigned i = 0; i < n; i++, an++)
				pos += put_rr(tmp + pos, DV_DNS_HDR, DV_TYPE_A,
					      v->qclass, g->ttl,
					      null ? zero : g->v4[i], 4);
		} else if (v->qtype == DV_TYPE_AAAA) {
			unsigned n = null ? 1 : g->n_v6;
			for (unsigned i = 0; i < n; i++, an++)
				pos += put_rr(tmp + pos, DV_DNS_HDR,
					      DV_TYPE_AAAA, v->qclass, g->ttl,
					      null ? zero : g->v6[i], 16);
		}
	} else if (g->action == DV_ACTION_NXDOMAIN) {
		rcode = DV_RCODE_NXDOMAIN;
	} else if (g->action == DV_ACTION_REFUSED) {
		rcode = DV_RCODE_REFUSED;
	}
	if (an == 0 && rcode != DV_RCODE_REFUSED) {
		/* the SOA of the blocked name (the rule's suffix): root MNAME
		 * and RNAME, the TTL as MINIMUM */
		uint8_t soa[2 + 20];
		soa[0] = soa[1] = 0;
		dv_put32(soa + 2, 1); /* serial */
		dv_put32(soa + 6, 3600); /* refresh */
		dv_put32(soa + 10, 600); /* retry */
		dv_put32(soa + 14, 86400); /* expire */
		dv_put32(soa + 18, g->ttl); /* minimum */
		pos += put_rr(tmp + pos, (uint16_t)(DV_DNS_HDR + suffix_off),
			      DV_TYPE_SOA, v->qclass, g->ttl, soa, sizeof(soa));
		ns = 1;
	}
	dv_put16(tmp, v->id);
	dv_put16(tmp + 2, (uint16_t)(DV_FLAG_QR | (v->flags & 0x7800) |
				     DV_FLAG_RA | rcode));
	dv_put16(tmp + 4, 1);
	dv_put16(tmp + 6, an);
	dv_put16(tmp + 8, ns);
	dv_put16(tmp + 10, 0);

	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(tmp, pos, &r);
	if (ret < 0)
		return ret;
	char text[DV_POLICY_NAME_MAX + 32];
	size_t tl = strlen(list);
	memcpy(text, "blocked by list ", 16);
	memcpy(text + 16, list, tl + 1);
	return dv_wire_answer(buf, cap, tmp, pos, &r, q->wire, v, 0,
			      q->answer_limit, DV_EDE_BLOCKED, text, pad_block);
}

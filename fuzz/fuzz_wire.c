/*
 * DNS wire view: arbitrary bytes as a query (parse, key, error answers,
 * normalized upstream query) and as an upstream response (parse, question
 * match, the client answer with and without truncation and padding).
 */
#include <stdint.h>
#include <string.h>

#include "src/errors.h"
#include "src/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[DV_DNS_MAX_MSG + 1];
	if (size > DV_DNS_MAX_MSG)
		return 0;
	dv_wire_query_t q;
	int ret = dv_wire_parse_query(data, size, &q);
	if (ret != DV_ESHORT && ret != DV_ENOTQUERY) {
		(void)dv_wire_error(out, sizeof(out), data, &q,
				    DV_RCODE_FORMERR, DV_EDE_OTHER, "x", 468);
	}
	if (ret == 0) {
		uint8_t key[DV_WIRE_KEY_MAX];
		(void)dv_wire_key(key, data, &q);
		(void)dv_wire_upstream_query(out, sizeof(out), 1, data, &q);
	}

	/* the same bytes as an answer to a fixed question */
	static const uint8_t question[] = {
		0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 7, 'e',
		'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0,
		1};
	dv_wire_query_t cq;
	if (dv_wire_parse_query(question, sizeof(question), &cq) != 0)
		return 0;
	cq.has_opt = size & 1;
	cq.edns_udp_size = 1232;
	dv_wire_resp_t r;
	ret = dv_wire_parse_response(data, size, &r);
	(void)dv_wire_question_matches(data, size, question, sizeof(question));
	if (ret == 0 || ret == DV_ELIMIT) {
		(void)dv_wire_answer(out, sizeof(out), data, size, &r, question,
				     &cq, 30, 512, 0xffff, NULL, 0);
		(void)dv_wire_answer(out, sizeof(out), data, size, &r, question,
				     &cq, 0, 65535, DV_EDE_STALE, "stale", 468);
	}
	return 0;
}

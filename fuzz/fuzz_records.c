/*
 * Fuzz target: local records.  The input is record lines, an empty line,
 * then a DNS query message:
 *
 *   LINE\n LINE\n ... \n\n QUERY-WIRE
 *
 * Each line is parsed as a groups.NAME.records line (dv_cfg_record_parse,
 * ldns's zone-file syntax) for group (line number % 2); the record table
 * is built from those that parse; the query (when the wire view takes
 * it) is looked up for both groups and, when a record answers it, the
 * answer is rendered under the limits of UDP without EDNS, with EDNS and
 * TCP.
 *
 * Checks besides memory errors and leaks: every parsed record's owner is
 * found again as itself (not as a wildcard) in its group; a lookup's node
 * comes with its group; every answer parses as a response to the query
 * (same id and question), has AA, fits the limit, and is NOERROR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/config/config.h"
#include "src/config/schema.h"
#include "src/core/errors.h"
#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/policy/records.h"
#include "src/policy/suffix.h"

#define CHECK(c)                                                             \
	do {                                                                 \
		if (!(c)) {                                                  \
			fprintf(stderr, "check failed: %s\n", #c);          \
			abort();                                             \
		}                                                            \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dv_config_t cfg;
static dv_query_t q;
static uint8_t out[DV_DNS_MAX_MSG], tmp[DV_DNS_MAX_MSG];

static void answer(const dv_records_t *t, unsigned g, dv_records_hit_t hit,
		   size_t limit)
{
	q.answer_limit = limit;
	int n = dv_records_answer(t, g, hit, &q, out, sizeof(out), tmp,
				  sizeof(tmp), 0);
	if (n < 0)
		return;
	CHECK((size_t)n <= limit);
	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(out, (size_t)n, &r);
	CHECK(ret == 0 || ret == DV_ELIMIT);
	CHECK(dv_get16(out) == q.view.id);
	CHECK(r.flags & DV_FLAG_AA);
	CHECK(DV_RCODE(r.flags) == DV_RCODE_NOERROR);
	CHECK(dv_wire_question_matches(out, (size_t)n, q.wire, q.len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = NULL;
	for (size_t i = 0; i + 1 < size; i++)
		if (data[i] == '\n' && data[i + 1] == '\n') {
			sep = data + i;
			break;
		}
	size_t text_len = sep ? (size_t)(sep - data) : size;
	memset(&cfg, 0, sizeof(cfg));
	cfg.n_groups = 2;
	char line[1024], why[256];
	unsigned ln = 0;
	for (size_t i = 0; i < text_len;) {
		size_t e = i;
		while (e < text_len && data[e] != '\n')
			e++;
		size_t n = e - i < sizeof(line) - 1 ? e - i : sizeof(line) - 1;
		memcpy(line, data + i, n);
		line[n] = '\0';
		if (strlen(line) == n)
			(void)dv_cfg_record_parse(&cfg, ln % 2, ln + 1, line,
						  why, sizeof(why));
		ln++;
		i = e + 1;
	}
	dv_records_t *t = dv_records_new(&cfg, 42);
	CHECK(t);
	CHECK(dv_records_count(t) == cfg.n_records);
	char name[DV_SUFFIX_NAME_MAX + 2];
	for (unsigned i = 0; i < cfg.n_records; i++) {
		const dv_cfg_record_t *r = &cfg.records[i];
		int n = dv_records_owner_text(r, name);
		CHECK(n >= 0);
		if (n == 0)
			continue; /* the root: never looked up */
		dv_records_hit_t hit =
			dv_records_lookup(t, r->group, name, (size_t)n);
		CHECK(hit.node >= 0 && !hit.wildcard);
	}
	if (sep) {
		const uint8_t *msg = sep + 2;
		size_t len = size - (size_t)(msg - data);
		memset(&q, 0, sizeof(q));
		if (len <= DV_QUERY_INLINE &&
		    (memcpy(q.inline_buf, msg, len), q.wire = q.inline_buf,
		     q.len = (uint16_t)len,
		     dv_wire_parse_query(q.wire, q.len, &q.view) == 0)) {
			int n = dv_suffix_query_name(q.wire + DV_DNS_HDR,
						     q.view.qname_len, name);
			for (unsigned g = 0; n > 0 && g < 2; g++) {
				dv_records_hit_t hit = dv_records_lookup(
					t, g, name, (size_t)n);
				if (hit.node < 0)
					continue;
				answer(t, g, hit, 512);
				answer(t, g, hit, 1232);
				answer(t, g, hit, DV_DNS_MAX_MSG);
			}
		}
	}
	dv_records_free(t);
	return 0;
}

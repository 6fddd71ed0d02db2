/*
 * Fuzz target: the RPZ parser (src/policy/rpz.c, through ldns).  The input
 * is a zone file.  After the parse every owner name the input spells on a
 * line of its own is looked up, as itself and as a subdomain, and so is
 * every line's text.
 *
 * Checks besides memory errors: the counts add up (a trigger is a rule,
 * rules <= lines); a lookup's offset is inside the name and on a label
 * boundary; an action found is one of the kinds, with addresses only for
 * local data and never more than a blocked answer holds.  Local data
 * beyond addresses (TXT, MX, a CNAME rewrite, ...) is found in the zone's
 * local records, and its answer to a query for the name (A, TXT, MX and
 * ANY) parses as a response to that query, with AA and NOERROR, within
 * the limits of UDP without EDNS, with EDNS and TCP.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/policy/records.h"
#include "src/policy/rpz.h"
#include "src/policy/suffix.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "check failed: %s\n", #c);             \
			abort();                                               \
		}                                                              \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dv_query_t q;
static uint8_t out[DV_DNS_MAX_MSG], tmp[DV_DNS_MAX_MSG];

/* A query for `name` (text, `n` bytes) and `type` into q; false when the
 * name does not make one. */
static bool make_query(const char *name, size_t n, uint16_t type)
{
	uint8_t *w = q.inline_buf;
	size_t len = DV_DNS_HDR;
	memset(&q, 0, sizeof(q));
	memset(w, 0, DV_DNS_HDR);
	w[0] = 0x12;
	w[1] = 0x34;
	w[2] = 0x01; /* RD */
	w[5] = 1; /* one question */
	for (size_t i = 0; i < n;) {
		size_t e = i;
		while (e < n && name[e] != '.')
			e++;
		if (e == i || e - i > 63 || len + 1 + (e - i) + 5 > 255 + 12)
			return false;
		w[len++] = (uint8_t)(e - i);
		memcpy(w + len, name + i, e - i);
		len += e - i;
		i = e + 1;
	}
	w[len++] = 0;
	w[len++] = (uint8_t)(type >> 8);
	w[len++] = (uint8_t)type;
	w[len++] = 0;
	w[len++] = 1; /* IN */
	if (len > DV_QUERY_INLINE)
		return false;
	q.wire = w;
	q.len = (uint16_t)len;
	return dv_wire_parse_query(q.wire, q.len, &q.view) == 0;
}

static void check_local(const dv_rpz_t *z, const char *name, size_t n)
{
	const dv_records_t *t = dv_rpz_local(z);
	CHECK(t);
	dv_records_hit_t hit = dv_records_lookup(t, 0, name, n);
	if (hit.node < 0)
		return; /* below a wildcard trigger whose data is elsewhere */
	static const uint16_t types[] = { 1, 16, 15, 255 };
	static const size_t limits[] = { 512, 1232, DV_DNS_MAX_MSG };
	for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
		if (!make_query(name, n, types[i]))
			return;
		for (size_t k = 0; k < sizeof(limits) / sizeof(*limits); k++) {
			q.answer_limit = limits[k];
			int len = dv_records_answer(t, 0, hit, &q, out,
						    sizeof(out), tmp,
						    sizeof(tmp), 0);
			if (len < 0)
				continue;
			CHECK((size_t)len <= limits[k]);
			dv_wire_resp_t r;
			int ret = dv_wire_parse_response(out, (size_t)len, &r);
			CHECK(ret == 0 || ret == DV_ELIMIT);
			CHECK(dv_get16(out) == q.view.id);
			CHECK(r.flags & DV_FLAG_AA);
			CHECK(DV_RCODE(r.flags) == DV_RCODE_NOERROR);
			CHECK(dv_wire_question_matches(out, (size_t)len, q.wire,
						       q.len));
		}
	}
}

static void check_lookup(const dv_rpz_t *z, const char *name, size_t n)
{
	unsigned off = 0;
	const dv_rpz_action_t *a = dv_rpz_lookup(z, name, n, &off);
	if (!a)
		return;
	CHECK(off < n);
	CHECK(off == 0 || name[off - 1] == '.');
	CHECK(a->kind > DV_RPZ_NONE && a->kind <= DV_RPZ_DATA);
	CHECK(a->n_v4 <= DV_POLICY_MAX_ACTION &&
	      a->n_v6 <= DV_POLICY_MAX_ACTION);
	if (a->kind != DV_RPZ_DATA)
		CHECK(a->n_v4 == 0 && a->n_v6 == 0 && !a->local);
	else
		CHECK(a->n_v4 + a->n_v6 > 0 || a->local);
	if (a->local)
		check_local(z, name, n);
	const uint8_t *v4, *v6;
	dv_rpz_addrs(z, a, &v4, &v6);
	volatile uint8_t sink = 0;
	for (unsigned i = 0; i < a->n_v4 * 4u; i++)
		sink ^= v4[i];
	for (unsigned i = 0; i < a->n_v6 * 16u; i++)
		sink ^= v6[i];
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 65536)
		return 0;
	FILE *f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	dv_rpz_t *z = dv_rpz_new(42);
	dv_list_stats_t st = { 0 };
	if (z && dv_rpz_parse(z, f, &st) == 0) {
		CHECK(st.rules == dv_rpz_count(z));
		CHECK(st.rules + st.bad + st.skipped <= st.lines + 1);
		/* every line's first token, lowercased and without the
		 * trailing dot, as a query name and below "x." */
		const char *text = (const char *)data;
		for (size_t pos = 0; pos < size;) {
			const char *nl = memchr(text + pos, '\n', size - pos);
			size_t n = nl ? (size_t)(nl - text - pos) : size - pos;
			char name[DV_SUFFIX_NAME_MAX + 3];
			size_t t = 0;
			while (t < n && t < DV_SUFFIX_NAME_MAX &&
			       text[pos + t] != ' ' && text[pos + t] != '\t')
				t++;
			memcpy(name + 2, text + pos, t);
			size_t k = dv_suffix_normalize(name + 2, t);
			if (k) {
				check_lookup(z, name + 2, k);
				if (k + 2 <= DV_SUFFIX_NAME_MAX) {
					name[0] = 'x';
					name[1] = '.';
					check_lookup(z, name, k + 2);
				}
			}
			if (n <= DV_SUFFIX_NAME_MAX)
				check_lookup(z, text + pos, n);
			pos += n + 1;
		}
	}
	dv_rpz_free(z);
	fclose(f);
	return 0;
}

/*
 * Fuzz target: the RPZ parser (src/policy/rpz.c, through ldns).  The input
 * is a zone file.  After the parse every owner name the input spells on a
 * line of its own is looked up, as itself and as a subdomain, and so is
 * every line's text.
 *
 * Checks besides memory errors: the counts add up (a trigger is a rule,
 * rules <= lines); a lookup's offset is inside the name and on a label
 * boundary; an action found is one of the kinds, with addresses only for
 * local data and never more than a blocked answer holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		CHECK(a->n_v4 == 0 && a->n_v6 == 0);
	else
		CHECK(a->n_v4 + a->n_v6 > 0);
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

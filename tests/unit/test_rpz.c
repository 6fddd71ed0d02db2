/*
 * Unit tests for src/policy/rpz.c: response policy zones parsed from
 * zone text (fmemopen), their counters, and lookups: exact triggers,
 * wildcards (not their base; the most specific wins; an exact trigger
 * beats a wildcard), actions and local-data addresses (kept together when
 * another name's come in between, at most a blocked answer's worth).
 * Documentation addresses only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/policy/rpz.h"

static const char ZONE[] =
	"$TTL 60\n"
	"$ORIGIN rpz.test.\n"
	"@ IN SOA localhost. root.localhost. 1 3600 600 86400 60\n"
	"  IN NS localhost.\n"
	"h1.example.test CNAME .\n"
	"h2.example.test CNAME *.\n"
	"*.wild.example.test CNAME .\n"
	"*.deep.wild.example.test CNAME *.\n"
	"ok.wild.example.test CNAME rpz-passthru.\n"
	"wild.example.test 30 A 192.0.2.1\n"
	"h4.example.test 120 A 192.0.2.44\n"
	"h5.example.test 120 A 192.0.2.55\n"
	"h4.example.test 120 AAAA 2001:db8::44\n"
	"h4.example.test 120 A 192.0.2.45\n"
	"32.1.2.0.192.rpz-ip CNAME .\n"
	"ns.example.test.rpz-nsdname CNAME .\n"
	"h6.example.test CNAME rpz-drop.\n"
	"h7.example.test TXT \"text\"\n"
	"h8.example.test CNAME www.example.test.\n"
	"h1.example.test A 192.0.2.9\n" /* a second action: bad */
	"outside.example. CNAME .\n" /* outside the apex: bad */
	"this is not a record\n"; /* bad */

static dv_rpz_t *parse(const char *text, dv_list_stats_t *st)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	dv_rpz_t *z = dv_rpz_new(7);
	assert_non_null(z);
	memset(st, 0, sizeof(*st));
	assert_int_equal(dv_rpz_parse(z, f, st), 0);
	fclose(f);
	return z;
}

static const dv_rpz_action_t *look(const dv_rpz_t *z, const char *name,
				   unsigned *off)
{
	return dv_rpz_lookup(z, name, strlen(name), off);
}

static void test_counts(void **state)
{
	(void)state;
	dv_list_stats_t st;
	dv_rpz_t *z = parse(ZONE, &st);
	/* h1 h2 *.wild *.deep.wild ok.wild wild h4 h5, and the local data
	 * of h7 (TXT) and h8 (a CNAME to a name: a rewrite) */
	assert_int_equal(st.rules, 10);
	assert_int_equal(dv_rpz_count(z), 10);
	/* rpz-ip, rpz-nsdname, rpz-drop */
	assert_int_equal(st.skipped, 3);
	assert_int_equal(st.bad, 3);
	dv_rpz_free(z);
}

static void test_triggers(void **state)
{
	(void)state;
	dv_list_stats_t st;
	dv_rpz_t *z = parse(ZONE, &st);
	unsigned off = 99;
	const dv_rpz_action_t *a = look(z, "h1.example.test", &off);
	assert_non_null(a);
	assert_int_equal(a->kind, DV_RPZ_NXDOMAIN);
	assert_int_equal(a->ttl, 60);
	assert_int_equal(off, 0);
	assert_null(look(z, "www.h1.example.test", &off)); /* exact only */
	assert_null(look(z, "example.test", &off));
	a = look(z, "h2.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_NODATA);

	/* a wildcard: below its base, at any depth; not the base itself,
	 * whose own (exact) trigger stands */
	a = look(z, "x.wild.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_NXDOMAIN);
	assert_int_equal(off, 2);
	a = look(z, "a.b.wild.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_NXDOMAIN);
	assert_int_equal(off, 4);
	a = look(z, "wild.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_DATA);
	assert_int_equal(a->ttl, 30);
	/* the more specific wildcard wins; an exact trigger beats both */
	a = look(z, "x.deep.wild.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_NODATA);
	assert_int_equal(off, 2);
	a = look(z, "deep.wild.example.test", &off); /* *.wild's */
	assert_int_equal(a->kind, DV_RPZ_NXDOMAIN);
	assert_int_equal(off, 5);
	a = look(z, "ok.wild.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_PASSTHRU);
	assert_int_equal(off, 0);
	/* skipped kinds trigger nothing */
	assert_null(look(z, "h6.example.test", &off));
	/* local data beyond addresses: the zone's local records */
	a = look(z, "h7.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_DATA);
	assert_true(a->local);
	a = look(z, "h8.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_DATA);
	assert_true(a->local);
	const dv_records_t *t = dv_rpz_local(z);
	assert_non_null(t);
	assert_true(dv_records_lookup(t, 0, "h7.example.test", 15).node >= 0);
	assert_true(dv_records_lookup(t, 0, "h8.example.test", 15).node >= 0);
	assert_true(dv_records_lookup(t, 0, "h4.example.test", 15).node >= 0);
	assert_true(dv_records_lookup(t, 0, "h9.example.test", 15).node < 0);
	assert_null(look(z, "outside.example", &off));
	dv_rpz_free(z);
}

static void test_local_data(void **state)
{
	(void)state;
	dv_list_stats_t st;
	dv_rpz_t *z = parse(ZONE, &st);
	unsigned off;
	const uint8_t *v4, *v6;
	const dv_rpz_action_t *a = look(z, "h4.example.test", &off);
	assert_int_equal(a->kind, DV_RPZ_DATA);
	assert_int_equal(a->ttl, 120);
	assert_int_equal(a->n_v4, 2);
	assert_int_equal(a->n_v6, 1);
	dv_rpz_addrs(z, a, &v4, &v6);
	/* 192.0.2.55 (h5) came between h4's two: they stay together */
	static const uint8_t want4[] = { 192, 0, 2, 44, 192, 0, 2, 45 };
	static const uint8_t want6[] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x44
	};
	assert_memory_equal(v4, want4, 8);
	assert_memory_equal(v6, want6, 16);
	a = look(z, "h5.example.test", &off);
	dv_rpz_addrs(z, a, &v4, &v6);
	assert_int_equal(a->n_v4, 1);
	assert_null(v6);
	static const uint8_t h5[] = { 192, 0, 2, 55 };
	assert_memory_equal(v4, h5, 4);
	dv_rpz_free(z);
}

static void test_address_cap_and_no_soa(void **state)
{
	(void)state;
	char zone[4096];
	size_t n =
		(size_t)snprintf(zone, sizeof(zone),
				 "a.rpz.test. 60 IN CNAME .\n" /* no SOA yet */
				 "rpz.test. 60 IN SOA a. b. 1 2 3 4 5\n");
	for (int i = 0; i < 10; i++)
		n += (size_t)snprintf(zone + n, sizeof(zone) - n,
				      "many.rpz.test. 60 IN A 192.0.2.%d\n",
				      i + 1);
	dv_list_stats_t st;
	dv_rpz_t *z = parse(zone, &st);
	assert_int_equal(st.bad, 1);
	assert_int_equal(st.rules, 1);
	assert_int_equal(st.skipped, 2); /* addresses over the cap */
	unsigned off;
	const dv_rpz_action_t *a = look(z, "many", &off);
	assert_non_null(a);
	assert_int_equal(a->n_v4, 8);
	assert_null(look(z, "a", &off));
	dv_rpz_free(z);

	/* an empty zone, and one of garbage: nothing triggers */
	z = parse("", &st);
	assert_int_equal(dv_rpz_count(z), 0);
	assert_null(look(z, "x.example", &off));
	dv_rpz_free(z);
	z = parse("\x01\x02 ( ( (\n$ORIGIN\n$TTL x\n", &st);
	assert_int_equal(dv_rpz_count(z), 0);
	assert_true(st.bad >= 1);
	dv_rpz_free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_triggers),
		cmocka_unit_test(test_local_data),
		cmocka_unit_test(test_address_cap_and_no_soa),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

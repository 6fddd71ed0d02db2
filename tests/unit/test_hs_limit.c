/*
 * Unit tests for src/core/hs_limit.c, on a fake clock (milliseconds passed in):
 * no cap without pressure, the pressure threshold and its hold, bucket
 * burst and refill, IPv6 /64 grouping, exemptions, the refund of resumed
 * handshakes, the bounded table.  Documentation and loopback addresses
 * only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/core/hs_limit.h"

#define T0 1000000 /* a fake clock's start, far from 0 */

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(40000);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(40000);
	}
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static dv_hs_limit_t *limiter(unsigned rate, unsigned burst,
			      unsigned pressure, dv_stats_t *st)
{
	dv_hs_limit_conf_t conf = {
		.rate = rate, .burst = burst, .pressure = pressure,
	};
	dv_hs_limit_t *h = dv_hs_limit_new(&conf, 0x1234, st);
	assert_non_null(h);
	return h;
}

/* Admit `n` handshakes from `a` at `now`; how many were let in.  They
 * stay in progress. */
static unsigned admit_n(dv_hs_limit_t *h, const struct sockaddr_storage *a,
			unsigned n, uint64_t now)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++)
		if (dv_hs_limit_admit(h, SA(*a), now) == 0)
			ok++;
	return ok;
}

static void end_n(dv_hs_limit_t *h, const struct sockaddr_storage *a,
		  unsigned n, bool resumed, uint64_t now)
{
	for (unsigned i = 0; i < n; i++)
		dv_hs_limit_end(h, SA(*a), resumed, now);
}

/* Put the limiter under pressure: `pressure` handshakes in progress from
 * an address of their own (which is charged too; it has a full bucket). */
static void make_pressure(dv_hs_limit_t *h, unsigned pressure, uint64_t now)
{
	struct sockaddr_storage other = addr("198.51.100.200");
	assert_int_equal(admit_n(h, &other, pressure, now), pressure);
}

static void test_no_cap_without_pressure(void **state)
{
	(void)state;
	dv_stats_t st = {0};
	dv_hs_limit_t *h = limiter(10, 5, 100, &st);
	struct sockaddr_storage a = addr("192.0.2.1");
	uint64_t now = T0;

	/* 5,000 handshakes from one address, never more than 99 at once:
	 * no cap, no bucket made */
	for (unsigned round = 0; round < 50; round++) {
		assert_int_equal(admit_n(h, &a, 99, now), 99);
		assert_int_equal(dv_hs_limit_in_progress(h), 99);
		assert_false(dv_hs_limit_pressure(h, now));
		end_n(h, &a, 99, false, now);
		now += 10;
	}
	assert_int_equal(dv_hs_limit_in_progress(h), 0);
	assert_int_equal(dv_hs_limit_tokens(h, SA(a)), -1);
	assert_int_equal(st.hs_pressure, 0);
	dv_hs_limit_free(h);
}

static void test_pressure_threshold_and_hold(void **state)
{
	(void)state;
	dv_stats_t st = {0};
	dv_hs_limit_t *h = limiter(10, 5, 4, &st);
	struct sockaddr_storage a = addr("192.0.2.1");
	uint64_t now = T0;

	/* the first 4 go in uncharged; the 5th finds 4 in progress */
	assert_int_equal(admit_n(h, &a, 4, now), 4);
	assert_int_equal(dv_hs_limit_tokens(h, SA(a)), -1);
	assert_true(dv_hs_limit_pressure(h, now));
	assert_int_equal(admit_n(h, &a, 1, now), 1);
	assert_int_equal(st.hs_pressure, 1);
	assert_int_equal(dv_hs_limit_tokens(h, SA(a)), 4000);

	/* all done: the caps stay on for the hold ... */
	end_n(h, &a, 5, false, now);
	assert_int_equal(dv_hs_limit_in_progress(h), 0);
	now += DV_HS_PRESSURE_HOLD_MS - 1;
	assert_true(dv_hs_limit_pressure(h, now));
	assert_int_equal(admit_n(h, &a, 1, now), 1);
	end_n(h, &a, 1, false, now);
	/* ... and are off after it; a new episode is counted again */
	now += 1;
	assert_false(dv_hs_limit_pressure(h, now));
	int64_t before = dv_hs_limit_tokens(h, SA(a));
	assert_int_equal(admit_n(h, &a, 4, now), 4);
	assert_int_equal(dv_hs_limit_tokens(h, SA(a)), before); /* uncharged */
	assert_int_equal(admit_n(h, &a, 1, now), 1);
	assert_int_equal(st.hs_pressure, 2);
	end_n(h, &a, 5, false, now);

	/* a refusal keeps the caps on: a flood that goes on being refused
	 * does not get back in uncapped when the hold runs out */
	struct sockaddr_storage f = addr("192.0.2.66");
	make_pressure(h, 4, now);
	assert_int_equal(admit_n(h, &f, 10, now), 5);
	struct sockaddr_storage other = addr("198.51.100.200");
	end_n(h, &other, 4, false, now);
	end_n(h, &f, 5, false, now);
	assert_int_equal(dv_hs_limit_in_progress(h), 0);
	for (unsigned i = 0; i < 5; i++) {
		now += DV_HS_PRESSURE_HOLD_MS / 2;
		assert_true(dv_hs_limit_pressure(h, now));
		/* refill 10/s: the flooder gets 5 per 500 ms, no more */
		assert_int_equal(admit_n(h, &f, 20, now), 5);
		end_n(h, &f, 5, false, now);
	}
	now += DV_HS_PRESSURE_HOLD_MS;
	assert_false(dv_hs_limit_pressure(h, now));

	/* pressure 0: always on */
	dv_hs_limit_free(h);
	h = limiter(10, 5, 0, &st);
	assert_true(dv_hs_limit_pressure(h, now));
	assert_int_equal(admit_n(h, &a, 10, now), 5);
	dv_hs_limit_free(h);
}

static void test_burst_and_refill(void **state)
{
	(void)state;
	dv_hs_limit_t *h = limiter(100, 50, 10, NULL);
	struct sockaddr_storage a = addr("192.0.2.1");
	struct sockaddr_storage b = addr("192.0.2.2");
	uint64_t now = T0;

	make_pressure(h, 10, now);
	/* the burst, then refused */
	assert_int_equal(admit_n(h, &a, 80, now), 50);
	assert_int_equal(admit_n(h, &a, 10, now), 0);
	/* another address has its own bucket */
	assert_int_equal(admit_n(h, &b, 80, now), 50);
	/* 100 per second: one every 10 ms */
	now += 9;
	assert_int_equal(admit_n(h, &a, 5, now), 0);
	now += 1;
	assert_int_equal(admit_n(h, &a, 5, now), 1);
	now += 250;
	assert_int_equal(admit_n(h, &a, 100, now), 25);
	/* a long pause refills to the burst, not beyond */
	now += 60000;
	make_pressure(h, 10, now);
	assert_int_equal(admit_n(h, &a, 100, now), 50);
	/* over 10 s of steady retries: 50 + 100/s, never more */
	unsigned ok = 0;
	for (unsigned ms = 0; ms < 10000; ms += 5)
		ok += admit_n(h, &a, 3, now + ms);
	assert_in_range(ok, 995, 1000);

	/* rate 0: no per-address cap even under pressure */
	dv_hs_limit_free(h);
	h = limiter(0, 1, 0, NULL);
	assert_int_equal(admit_n(h, &a, 1000, now), 1000);
	dv_hs_limit_free(h);
}

static void test_ipv6_prefix_and_mapped(void **state)
{
	(void)state;
	dv_hs_limit_t *h = limiter(1, 10, 0, NULL);
	struct sockaddr_storage a1 = addr("2001:db8:0:1::1");
	struct sockaddr_storage a2 = addr("2001:db8:0:1:ffff:ffff:ffff:fffe");
	struct sockaddr_storage b = addr("2001:db8:0:2::1");
	struct sockaddr_storage v4 = addr("192.0.2.7");
	struct sockaddr_storage mapped = addr("::ffff:192.0.2.7");
	struct sockaddr_storage v4b = addr("192.0.2.8");
	uint64_t now = T0;

	/* one /64: one bucket */
	assert_int_equal(admit_n(h, &a1, 6, now), 6);
	assert_int_equal(admit_n(h, &a2, 6, now), 4);
	assert_int_equal(dv_hs_limit_tokens(h, SA(a1)),
			 dv_hs_limit_tokens(h, SA(a2)));
	/* the next /64 is another subscriber */
	assert_int_equal(admit_n(h, &b, 20, now), 10);
	/* IPv4: /32, and a mapped address is the IPv4 one */
	assert_int_equal(admit_n(h, &v4, 6, now), 6);
	assert_int_equal(admit_n(h, &mapped, 6, now), 4);
	assert_int_equal(admit_n(h, &v4b, 20, now), 10);
	dv_hs_limit_free(h);
}

static void test_exempt(void **state)
{
	(void)state;
	dv_netmask_t ex[2];
	char why[128];
	assert_int_equal(dv_netmask_parse("203.0.113.0/24", &ex[0], why,
					  sizeof(why)),
			 0);
	assert_int_equal(dv_netmask_parse("2001:db8:aa::/48", &ex[1], why,
					  sizeof(why)),
			 0);
	dv_hs_limit_conf_t conf = {
		.rate = 1, .burst = 2, .pressure = 0, .exempt = ex,
		.n_exempt = 2,
	};
	dv_hs_limit_t *h = dv_hs_limit_new(&conf, 99, NULL);
	assert_non_null(h);
	struct sockaddr_storage nat = addr("203.0.113.9");
	struct sockaddr_storage lb6 = addr("2001:db8:aa:5::1");
	struct sockaddr_storage mapped = addr("::ffff:203.0.113.10");
	struct sockaddr_storage other = addr("192.0.2.1");
	uint64_t now = T0;

	assert_int_equal(admit_n(h, &nat, 5000, now), 5000);
	assert_int_equal(admit_n(h, &lb6, 5000, now), 5000);
	assert_int_equal(admit_n(h, &mapped, 100, now), 100);
	assert_int_equal(dv_hs_limit_tokens(h, SA(nat)), -1);
	assert_int_equal(admit_n(h, &other, 5, now), 2);
	/* exempt handshakes still count as in progress */
	assert_int_equal(dv_hs_limit_in_progress(h), 10102);
	dv_hs_limit_free(h);
}

static void test_resumed_refund(void **state)
{
	(void)state;
	dv_hs_limit_t *h = limiter(1, 100, 0, NULL);
	struct sockaddr_storage a = addr("192.0.2.1");
	struct sockaddr_storage b = addr("192.0.2.2");
	uint64_t now = T0;

	/* full handshakes: 100 */
	assert_int_equal(admit_n(h, &b, 1000, now), 100);
	end_n(h, &b, 100, false, now);
	assert_int_equal(admit_n(h, &b, 1, now), 0);

	/* resumed ones: charged in full at admission, 3/4 given back when
	 * they complete resumed, so 4x as many pass */
	unsigned ok = 0;
	for (unsigned i = 0; i < 1000; i++) {
		if (dv_hs_limit_admit(h, SA(a), now) == 0) {
			ok++;
			dv_hs_limit_end(h, SA(a), true, now);
		}
	}
	assert_in_range(ok, 397, 400);
	assert_int_equal(dv_hs_limit_in_progress(h), 0);

	/* the refund never takes a bucket beyond its depth */
	now += 1000000;
	assert_int_equal(admit_n(h, &a, 1, now), 1);
	end_n(h, &a, 1, true, now);
	end_n(h, &a, 50, true, now); /* more ends than admits: no harm */
	assert_int_equal(dv_hs_limit_tokens(h, SA(a)), 100000);
	assert_int_equal(dv_hs_limit_in_progress(h), 0);
	/* a resumption from an address with no bucket changes nothing */
	struct sockaddr_storage c = addr("192.0.2.3");
	dv_hs_limit_end(h, SA(c), true, now);
	assert_int_equal(dv_hs_limit_tokens(h, SA(c)), -1);
	dv_hs_limit_free(h);
}

static void test_table_bounded(void **state)
{
	(void)state;
	dv_hs_limit_conf_t conf = {.rate = 1, .burst = 3, .pressure = 0,
				   .slots = 64};
	dv_hs_limit_t *h = dv_hs_limit_new(&conf, 7, NULL);
	assert_non_null(h);
	struct sockaddr_storage flood = addr("198.51.100.1");
	uint64_t now = T0;

	/* the flooder spends its bucket and keeps knocking */
	unsigned flood_ok = admit_n(h, &flood, 10, now);
	assert_int_equal(flood_ok, 3);
	/* 100,000 other addresses pass through a 64-entry table in 100 s:
	 * each gets its own fresh bucket, the table keeps at most 64 */
	unsigned present = 0;
	for (uint32_t i = 0; i < 100000; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		sin.sin_addr.s_addr = htonl(0x0a000000u + i);
		now++;
		assert_int_equal(dv_hs_limit_admit(h, (void *)&sin, now), 0);
		dv_hs_limit_end(h, (void *)&sin, false, now);
		/* the flooder knocks between every few newcomers (fewer than
		 * a set's ways), as a flood does: its entry is never the
		 * least recently charged of its set, so the churn does not
		 * give it a fresh bucket */
		if (i % 4 == 0) {
			flood_ok += admit_n(h, &flood, 1, now);
			assert_int_not_equal(dv_hs_limit_tokens(h, SA(flood)),
					     -1);
		}
	}
	/* the burst and 1 per second of the 100 s */
	assert_in_range(flood_ok, 100, 104);
	for (uint32_t i = 0; i < 100000; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		sin.sin_addr.s_addr = htonl(0x0a000000u + i);
		if (dv_hs_limit_tokens(h, (void *)&sin) >= 0)
			present++;
	}
	assert_in_range(present, 1, 64);
	dv_hs_limit_free(h);
	dv_hs_limit_free(NULL);
}

/* A flooder that keeps knocking in a busy table is never evicted. */
static void test_flooder_keeps_its_bucket(void **state)
{
	(void)state;
	dv_hs_limit_conf_t conf = {.rate = 10, .burst = 5, .pressure = 0,
				   .slots = 8}; /* one set */
	dv_hs_limit_t *h = dv_hs_limit_new(&conf, 7, NULL);
	assert_non_null(h);
	struct sockaddr_storage flood = addr("198.51.100.1");
	uint64_t now = T0;
	unsigned ok = admit_n(h, &flood, 100, now);
	for (uint32_t i = 0; i < 1000; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		sin.sin_addr.s_addr = htonl(0x0a000000u + i);
		now += 1;
		(void)dv_hs_limit_admit(h, (void *)&sin, now);
		ok += admit_n(h, &flood, 1, now);
	}
	/* 1 s: the burst and 10 more at most */
	assert_in_range(ok, 14, 15);
	dv_hs_limit_free(h);
}

/* A reload's new settings: the buckets stay, a lower burst caps them at
 * their next refill, rate 0 lifts the cap, a new exempt prefix is never
 * charged, pressure follows the new threshold. */
static void test_reconf(void **state)
{
	(void)state;
	dv_hs_limit_t *h = limiter(100, 50, 0, NULL);
	struct sockaddr_storage a = addr("192.0.2.1");
	uint64_t now = T0;

	assert_int_equal(admit_n(h, &a, 20, now), 20); /* 30 left */
	dv_hs_limit_conf_t c = { .rate = 100, .burst = 5, .pressure = 0 };
	dv_hs_limit_reconf(h, &c);
	now += 10; /* one refill: capped at the new burst */
	assert_int_equal(admit_n(h, &a, 100, now), 5);
	assert_int_equal(admit_n(h, &a, 1, now), 0);
	/* rate 0: no per-address cap */
	c.rate = 0;
	dv_hs_limit_reconf(h, &c);
	assert_int_equal(admit_n(h, &a, 1000, now), 1000);
	/* back to a cap, with 192.0.2.0/24 exempt */
	dv_netmask_t ex;
	char why[128];
	assert_int_equal(dv_netmask_parse("192.0.2.0/24", &ex, why,
					  sizeof(why)),
			 0);
	c.rate = 1;
	c.burst = 1;
	c.exempt = &ex;
	c.n_exempt = 1;
	dv_hs_limit_reconf(h, &c);
	assert_int_equal(admit_n(h, &a, 100, now + 1000), 100);
	struct sockaddr_storage b = addr("198.51.100.7");
	assert_int_equal(admit_n(h, &b, 100, now + 1000), 1);
	/* a pressure threshold: below it nothing is capped */
	c.pressure = 100000;
	dv_hs_limit_reconf(h, &c);
	assert_int_equal(admit_n(h, &b, 100, now + 2000000), 100);
	dv_hs_limit_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_cap_without_pressure),
		cmocka_unit_test(test_pressure_threshold_and_hold),
		cmocka_unit_test(test_burst_and_refill),
		cmocka_unit_test(test_ipv6_prefix_and_mapped),
		cmocka_unit_test(test_exempt),
		cmocka_unit_test(test_resumed_refund),
		cmocka_unit_test(test_table_bounded),
		cmocka_unit_test(test_flooder_keeps_its_bucket),
		cmocka_unit_test(test_reconf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

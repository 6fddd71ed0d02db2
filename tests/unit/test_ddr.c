/*
 * Unit tests for src/policy/ddr.c: the SVCB RDATA byte for byte, which
 * names are DDR's (case, label boundaries, class), where auto answers and
 * where it gives NODATA, the certificate's wildcard name, and ddr.mode on
 * without a server name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/policy/ddr.h"

static dv_config_t cfg;
static dv_cert_names_t cert;
static dv_query_t q;
static uint8_t out[4096];

static void setup_cfg(unsigned mode, const char *server)
{
	static const char *const urls[] = {
		"dns://127.0.0.1:53",
		"tls://127.0.0.1:853",
		"https://127.0.0.1:443/dns-query",
		"dns://127.0.0.2:53",
		"dns://0.0.0.0:5353",
	};
	char err[256];
	dv_config_defaults(&cfg);
	cfg.ddr_mode = mode;
	snprintf(cfg.ddr_server_name, sizeof(cfg.ddr_server_name), "%s",
		 server);
	for (unsigned i = 0; i < sizeof(urls) / sizeof(*urls); i++)
		assert_int_equal(dv_url_parse(urls[i], DV_URL_LISTEN,
					      &cfg.listen[cfg.n_listen++], err,
					      sizeof(err)),
				 0);
	memset(&cert, 0, sizeof(cert));
	cert.loaded = true;
	snprintf(cert.dns[cert.n_dns++], sizeof(cert.dns[0]), "*.dns.test");
	snprintf(cert.dns[cert.n_dns++], sizeof(cert.dns[0]), "dns.test");
	cert.ip[0].family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", cert.ip[0].addr);
	cert.n_ip = 1;
}

/* Answer `name` `qtype` (class `qclass`) from listener `listener`: the
 * answer's length, its ANCOUNT and NSCOUNT. */
static int ask(const dv_ddr_t *d, const char *name, uint16_t qtype,
	       uint16_t qclass, uint8_t listener, unsigned *an, unsigned *ns)
{
	memset(&q, 0, sizeof(q));
	q.wire = q.inline_buf;
	memset(q.wire, 0, DV_DNS_HDR);
	dv_put16(q.wire, 0x4242);
	dv_put16(q.wire + 4, 1);
	int n = dv_wire_name_from_text(q.wire + DV_DNS_HDR, 300, name);
	assert_true(n > 0);
	size_t pos = DV_DNS_HDR + (size_t)n;
	dv_put16(q.wire + pos, qtype);
	dv_put16(q.wire + pos + 2, qclass);
	q.len = (uint16_t)(pos + 4);
	assert_int_equal(dv_wire_parse_query(q.wire, q.len, &q.view), 0);
	q.answer_limit = 1232;
	q.listener = listener;
	int len = dv_ddr_answer(d, &q, out, sizeof(out), 0);
	if (len > 0) {
		assert_int_equal(dv_get16(out), 0x4242);
		assert_true(dv_get16(out + 2) & DV_FLAG_AA);
		assert_int_equal(dv_get16(out + 2) & 0xf, DV_RCODE_NOERROR);
		*an = dv_get16(out + 6);
		*ns = dv_get16(out + 8);
	}
	return len;
}

static void test_rdata(void **state)
{
	(void)state;
	char err[256];
	dv_ddr_t *d;
	unsigned an = 0, ns = 0;
	setup_cfg(DV_DDR_AUTO, "");
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_non_null(d);
	int len = ask(d, "_DNS.Resolver.arpa", 64, 1, 1, &an, &ns);
	assert_true(len > 0);
	assert_int_equal(an, 2);
	assert_int_equal(ns, 0);
	/* the first record after the question: DoT on its default port */
	static const uint8_t dot[] = {
		0xc0, 0x0c, 0,	 64,  0,   1,	0,   0,	  1,
		44,   0,    28,	 0,   1, /* prio */
		3,    'd',  'n', 's', 4,   't', 'e', 's', 't',
		0,    0,    1,	 0,   4,   3,	'd', 'o', 't', /* alpn=dot */
		0,    4,    0,	 4,   127, 0,	0,   1, /* ipv4hint */
	};
	size_t qend = q.view.question_end;
	assert_memory_equal(out + qend, dot, sizeof(dot));
	/* the second: DoH, alpn h2,http/1.1, dohpath */
	static const uint8_t doh[] = {
		0xc0, 0x0c, 0,	 64,  0,   1,	0,   0,	  1,   44,  0,	 56,
		0,    2,    3,	 'd', 'n', 's', 4,   't', 'e', 's', 't', 0,
		0,    1,    0,	 12,  2,   'h', '2', 8,	  'h', 't', 't', 'p',
		'/',  '1',  '.', '1', 0,   4,	0,   4,	  127, 0,   0,	 1,
		0,    7,    0,	 16,  '/', 'd', 'n', 's', '-', 'q', 'u', 'e',
		'r',  'y',  '{', '?', 'd', 'n', 's', '}',
	};
	assert_memory_equal(out + qend + sizeof(dot), doh, sizeof(doh));
	assert_int_equal(len, (int)(qend + sizeof(dot) + sizeof(doh)));

	/* not covered (127.0.0.2), a wildcard, no listener: NODATA */
	for (uint8_t l = 0; l < 6; l++) {
		if (l == 1 || l == 2 || l == 3)
			continue;
		assert_true(ask(d, "_dns.resolver.arpa", 64, 1, l, &an, &ns) >
			    0);
		assert_int_equal(an, 0);
		assert_int_equal(ns, 1);
	}
	/* by name: everywhere; other types NODATA */
	assert_true(ask(d, "_dns.dns.test", 64, 1, 4, &an, &ns) > 0);
	assert_int_equal(an, 2);
	assert_true(ask(d, "_dns.dns.test", 1, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 0);
	assert_int_equal(ns, 1);
	assert_true(ask(d, "a.b.resolver.arpa", 16, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 0);
	assert_true(ask(d, "resolver.arpa", 6, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 0);
	/* not DDR's */
	assert_int_equal(ask(d, "xresolver.arpa", 64, 1, 1, &an, &ns), 0);
	assert_int_equal(ask(d, "a.xresolver.arpa", 64, 1, 1, &an, &ns), 0);
	assert_int_equal(ask(d, "_dns.resolver.arpa", 64, 3, 1, &an, &ns), 0);
	assert_int_equal(ask(d, "_dns.other.test", 64, 1, 1, &an, &ns), 0);
	assert_int_equal(ask(d, "www.example.test", 1, 1, 1, &an, &ns), 0);
	dv_ddr_free(d);
}

static void test_names(void **state)
{
	(void)state;
	char err[256];
	dv_ddr_t *d;
	unsigned an = 0, ns = 0;
	/* *.dns.test covers one label more, not two */
	setup_cfg(DV_DDR_AUTO, "Kid-1.dns.test");
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_true(ask(d, "_dns.resolver.arpa", 64, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 2);
	assert_true(ask(d, "_dns.kid-1.dns.test", 64, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 2);
	dv_ddr_free(d);
	setup_cfg(DV_DDR_AUTO, "a.b.dns.test");
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_true(ask(d, "_dns.resolver.arpa", 64, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 0); /* off: NODATA, the name not answered */
	assert_int_equal(ask(d, "_dns.a.b.dns.test", 64, 1, 1, &an, &ns), 0);
	dv_ddr_free(d);
	/* on: answered everywhere, the certificate unchecked */
	setup_cfg(DV_DDR_ON, "a.b.dns.test");
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_true(ask(d, "_dns.resolver.arpa", 64, 1, 5, &an, &ns) > 0);
	assert_int_equal(an, 2);
	dv_ddr_free(d);
	/* on with no name to give: an error; auto: off */
	setup_cfg(DV_DDR_ON, "");
	cert.n_dns = 1; /* only *.dns.test */
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)),
			 DV_ECONFIG);
	assert_null(d);
	assert_non_null(strstr(err, "ddr.mode: on"));
	cfg.ddr_mode = DV_DDR_AUTO;
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_true(ask(d, "_dns.resolver.arpa", 64, 1, 1, &an, &ns) > 0);
	assert_int_equal(an, 0);
	dv_ddr_free(d);
	/* off, or nothing encrypted to designate: no DDR */
	setup_cfg(DV_DDR_OFF, "");
	assert_false(dv_ddr_wanted(&cfg));
	assert_int_equal(dv_ddr_new(&cfg, &cert, &d, err, sizeof(err)), 0);
	assert_null(d);
	setup_cfg(DV_DDR_ON, "");
	cfg.n_listen = 1;
	assert_false(dv_ddr_wanted(&cfg));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rdata),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

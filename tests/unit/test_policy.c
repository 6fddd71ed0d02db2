/*
 * Unit tests for src/policy/ and src/core/ident.c: client IDs (DoH path,
 * TLS SNI, glob patterns), the suffix set, the list parsers of every
 * format and their counters, and whole decisions through the policy's
 * core hook on hand-made queries (groups by ID, address and listener;
 * allow beating block; subdomains; each action and its EDE); local
 * records (the table, wildcards and their closest encloser, answers by
 * type, CNAMEs, NODATA, groups kept apart), internal names, and a
 * group's allow-from / deny-from and rate limit (TC or a drop over UDP,
 * REFUSED over a stream; by client ID or by prefix) on the query's clock.
 * Documentation addresses only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/policy/lists.h"
#include "src/policy/policy.h"
#include "src/policy/records.h"
#include "src/policy/suffix.h"

/* ---- client IDs ---- */

static void test_ident(void **state)
{
	char id[DV_IDENT_MAX + 1];
	assert_true(dv_ident_label_ok("kid-1", 5));
	assert_false(dv_ident_label_ok("-kid", 4));
	assert_false(dv_ident_label_ok("kid-", 4));
	assert_false(dv_ident_label_ok("a_b", 3));
	assert_false(dv_ident_label_ok("", 0));
	char long_label[70];
	memset(long_label, 'a', sizeof(long_label));
	assert_true(dv_ident_label_ok(long_label, 63));
	assert_false(dv_ident_label_ok(long_label, 64));

	const char *p = "/dns-query/Kid-1";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/dns-query", id), 5);
	assert_string_equal(id, "kid-1");
	p = "/dns-query";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/dns-query", id), 0);
	p = "/dns-query/";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/dns-query", id), 0);
	p = "/dns-query/a/b";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/dns-query", id), 0);
	p = "/dns-queryx/a";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/dns-query", id), 0);
	p = "/laptop";
	assert_int_equal(dv_ident_from_path(p, strlen(p), "/", id), 6);

	assert_int_equal(dv_ident_from_sni("kid-1.dns.test", "dns.test", id), 5);
	assert_string_equal(id, "kid-1");
	assert_int_equal(dv_ident_from_sni("KID-2.DNS.Test.", "dns.test", id),
			 5);
	assert_string_equal(id, "kid-2");
	assert_int_equal(dv_ident_from_sni("dns.test", "dns.test", id), 0);
	assert_int_equal(dv_ident_from_sni("a.b.dns.test", "dns.test", id), 0);
	assert_int_equal(dv_ident_from_sni("a_b.dns.test", "dns.test", id), 0);
	assert_int_equal(dv_ident_from_sni("kid.xdns.test", "dns.test", id),
			 0);
	assert_int_equal(dv_ident_from_sni("kid.other.test", "dns.test", id),
			 0);

	/* a client certificate's DNS name or CN: its first label */
	p = "Kid-7.clients.example";
	assert_int_equal(dv_ident_from_cert_name(p, strlen(p), id), 5);
	assert_string_equal(id, "kid-7");
	assert_int_equal(dv_ident_from_cert_name("kid-8", 5, id), 5);
	assert_string_equal(id, "kid-8");
	assert_int_equal(dv_ident_from_cert_name("kid-9.", 6, id), 5);
	assert_int_equal(dv_ident_from_cert_name("kid-10x", 6, id), 6);
	assert_string_equal(id, "kid-10");
	assert_int_equal(dv_ident_from_cert_name("*.clients.example", 17, id),
			 0);
	assert_int_equal(dv_ident_from_cert_name(".x", 2, id), 0);
	assert_int_equal(dv_ident_from_cert_name("", 0, id), 0);
	assert_int_equal(dv_ident_from_cert_name("Jane Doe", 8, id), 0);
	assert_int_equal(dv_ident_from_cert_name("a\0b", 3, id), 0);

	assert_true(dv_ident_glob("kid-*", "kid-1"));
	assert_true(dv_ident_glob("kid-*", "kid-"));
	assert_false(dv_ident_glob("kid-*", "kid"));
	assert_true(dv_ident_glob("*-laptop", "ann-laptop"));
	assert_true(dv_ident_glob("k?d-*-x", "kid-a-b-x"));
	assert_true(dv_ident_glob("*", "anything"));
	assert_true(dv_ident_glob("KID-1", "kid-1"));
	assert_false(dv_ident_glob("kid-1", "kid-10"));
	assert_false(dv_ident_glob("a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/* ---- the suffix set ---- */

static void add(dv_suffix_set_t *s, const char *name, unsigned list,
		bool except)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "%s", name);
	size_t n = dv_suffix_normalize(buf, strlen(buf));
	assert_true(n > 0);
	assert_int_equal(dv_suffix_add(s, buf, n, list, except), 0);
}

static bool look(const dv_suffix_set_t *s, const char *name, uint32_t lists,
		 dv_suffix_hit_t *hit)
{
	return dv_suffix_lookup(s, name, strlen(name), lists, hit);
}

static void test_suffix_set(void **state)
{
	dv_suffix_set_t *s = dv_suffix_new(42);
	dv_suffix_hit_t hit;
	add(s, "Example.COM.", 0, false);
	add(s, "ok.example.com", 1, true);
	add(s, "ok.example.com", 2, false);
	add(s, "deep.ok.example.com", 0, false);
	assert_int_equal(dv_suffix_count(s), 3);

	assert_true(look(s, "example.com", 1, &hit));
	assert_int_equal(hit.block, 1);
	assert_int_equal(hit.offset, 0);
	assert_true(look(s, "a.b.example.com", 1, &hit));
	assert_int_equal(hit.offset, 4);
	assert_false(look(s, "example.org", 1, &hit));
	assert_false(look(s, "xexample.com", 1, &hit));
	assert_false(look(s, "com", 1, &hit));
	/* the most specific suffix with a rule of the lists asked */
	assert_true(look(s, "x.ok.example.com", 7, &hit));
	assert_int_equal(hit.block, 4);
	assert_int_equal(hit.except, 2);
	assert_int_equal(hit.offset, 2);
	assert_true(look(s, "x.ok.example.com", 1, &hit));
	assert_int_equal(hit.offset, 5); /* only list 0 asked: example.com */
	assert_true(look(s, "deep.ok.example.com", 1, &hit));
	assert_int_equal(hit.offset, 0);
	assert_false(look(s, "example.com", 8, &hit));

	/* growth keeps every name */
	char name[64];
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "b%u.blocked.test", i);
		add(s, name, 3, false);
	}
	dv_suffix_seal(s);
	assert_int_equal(dv_suffix_count(s), 100003);
	for (unsigned i = 0; i < 100000; i += 997) {
		snprintf(name, sizeof(name), "www.b%u.blocked.test", i);
		assert_true(look(s, name, 8, &hit));
		assert_int_equal(hit.offset, 4);
	}
	assert_false(look(s, "blocked.test", 8, &hit));
	assert_false(look(s, "b100000.blocked.test", 8, &hit));
	dv_suffix_free(s);
}

static void test_normalize_and_query_name(void **state)
{
	char b[300];
	strcpy(b, "A-b_c.Example.");
	assert_int_equal(dv_suffix_normalize(b, strlen(b)), 13);
	assert_memory_equal(b, "a-b_c.example", 13);
	const char *bad[] = {"", ".", "a..b", ".a", "a b", "*.a", "a/b", "é.a"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		strcpy(b, bad[i]);
		assert_int_equal(dv_suffix_normalize(b, strlen(b)), 0);
	}
	memset(b, 'a', 64);
	assert_int_equal(dv_suffix_normalize(b, 64), 0); /* a 64-byte label */

	/* wire to text keeps offsets; odd bytes never match */
	const uint8_t w[] = {3, 'W', 'w', 'W', 3, 'a', '.', 'b', 2, 'i', 'o', 0};
	char t[DV_SUFFIX_NAME_MAX + 2];
	int n = dv_suffix_query_name(w, sizeof(w), t);
	assert_int_equal(n, 10);
	assert_memory_equal(t, "www.a\x01" "b.io", 10);
	const uint8_t root[] = {0};
	assert_int_equal(dv_suffix_query_name(root, 1, t), 0);
	const uint8_t cut[] = {3, 'a', 'b'};
	assert_int_equal(dv_suffix_query_name(cut, sizeof(cut), t), -1);
}

/* ---- list parsers ---- */

typedef struct {
	char names[16][64];
	bool except[16];
	unsigned n;
} got_t;

static int collect(void *ctx, const char *name, size_t len, bool except)
{
	got_t *g = ctx;
	assert_true(g->n < 16);
	snprintf(g->names[g->n], sizeof(g->names[0]), "%.*s", (int)len, name);
	g->except[g->n++] = except;
	return 0;
}

static void test_lists(void **state)
{
	got_t g = {0};
	dv_list_stats_t st = {0};
	const char *hosts = "# comment\n"
			    "127.0.0.1 localhost\n"
			    "0.0.0.0 Ads.example tracker.example # two\r\n"
			    ":: v6.example\n"
			    "0.0.0.0\n"
			    "not-an-ip bad.example\n"
			    "0.0.0.0 ok.example bad..name\n"
			    "\n";
	assert_int_equal(dv_list_parse_buffer(DV_LIST_HOSTS, hosts,
					       strlen(hosts), collect, &g, &st),
			 0);
	assert_int_equal(g.n, 4);
	assert_string_equal(g.names[0], "ads.example");
	assert_string_equal(g.names[1], "tracker.example");
	assert_string_equal(g.names[2], "v6.example");
	assert_string_equal(g.names[3], "ok.example");
	assert_int_equal(st.lines, 8);
	assert_int_equal(st.rules, 4);
	assert_int_equal(st.bad, 3);
	assert_int_equal(st.skipped, 1);

	memset(&g, 0, sizeof(g));
	memset(&st, 0, sizeof(st));
	const char *domains = "a.example\n! comment\n# comment\n"
			      "  b.example.  # trailing\n"
			      "two names.example\nbad_-.exa mple\n*.c.example\n";
	assert_int_equal(dv_list_parse_buffer(DV_LIST_DOMAINS, domains,
					       strlen(domains), collect, &g,
					       &st),
			 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.names[1], "b.example");
	assert_int_equal(st.bad, 3);

	memset(&g, 0, sizeof(g));
	memset(&st, 0, sizeof(st));
	const char *ab = "[Adblock Plus 2.0]\n"
			 "! Title: test\n"
			 "||ads.example^\n"
			 "@@||ok.ads.example^\n"
			 "||pipe.example^|\n"
			 "||opt.example^$third-party\n"
			 "example.org##.banner\n"
			 "/banner/*\n"
			 "||wild*.example^\n"
			 "||bad..example^\n"
			 "||noend.example\n";
	assert_int_equal(dv_list_parse_buffer(DV_LIST_ADBLOCK, ab, strlen(ab),
					       collect, &g, &st),
			 0);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.names[0], "ads.example");
	assert_false(g.except[0]);
	assert_string_equal(g.names[1], "ok.ads.example");
	assert_true(g.except[1]);
	assert_string_equal(g.names[2], "pipe.example");
	assert_int_equal(st.rules, 3);
	assert_int_equal(st.exceptions, 1);
	assert_int_equal(st.skipped, 5);
	assert_int_equal(st.bad, 1);

	/* a line over 4 KiB is bad, the next one still read */
	memset(&g, 0, sizeof(g));
	memset(&st, 0, sizeof(st));
	char *big = malloc(5000 + 20);
	memset(big, 'a', 5000);
	strcpy(big + 5000, "\nz.example\n");
	assert_int_equal(dv_list_parse_buffer(DV_LIST_DOMAINS, big,
					       strlen(big), collect, &g, &st),
			 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(st.bad, 1);
	free(big);
}

/* ---- decisions through the core's hook ---- */

static char dir[64];

static void write_file(const char *name, const char *text, char *path)
{
	snprintf(path, 512, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static dv_config_t *policy_config(void)
{
	dv_config_t *cfg = calloc(1, sizeof(*cfg));
	char path[512], err[512];
	assert_non_null(cfg);
	dv_config_defaults(cfg);
	strcpy(dir, "/tmp/dv_policy_XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("ads.txt", "0.0.0.0 ads.example\n0.0.0.0 bad..line\n", path);
	char yaml[4096];
	int n = snprintf(yaml, sizeof(yaml),
		 "listen: [\"udp://127.0.0.1:5353\", \"tcp://127.0.0.1:5353\"]\n"
		 "upstream: [\"udp://127.0.0.1:53\"]\n"
		 "policy: { server-names: [dns.test], clients-only: true }\n"
		 "lists:\n"
		 "  ads: { source: %s, format: hosts }\n", path);
	write_file("ab.txt", "||track.example^\n@@||ok.track.example^\n", path);
	n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
		      "  ab: { source: %s, format: adblock }\n", path);
	write_file("allow.txt", "good.ads.example\n", path);
	n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
		      "  ok: { source: %s }\n", path);
	snprintf(yaml + n, sizeof(yaml) - (size_t)n,
		 "groups:\n"
		 "  default: { block: [ads, ab], allow: [ok] }\n"
		 "  kids: { block: [ads], action: null, blocked-ttl: 60 }\n"
		 "  addr: { block: [ads], action: [192.0.2.7, \"2001:db8::7\"] }\n"
		 "  refuse: { block: [ads], action: refused }\n"
		 "  nodata: { block: [ads], action: nodata }\n"
		 "clients:\n"
		 "  - { id: \"kid-*\", group: kids }\n"
		 "  - { id: \"known\", group: default }\n"
		 "  - { cidr: 198.51.100.0/24, group: addr }\n"
		 "  - { listener: \"tcp://127.0.0.1:5353\", group: refuse }\n"
		 "  - { cidr: \"2001:db8::/32\", group: nodata }\n");
	write_file("c.yaml", yaml, path);
	if (dv_config_load(cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	return cfg;
}

typedef struct {
	uint8_t rcode;
	uint16_t an, ns;
	uint16_t ede; /* 0xffff: none */
	char ede_text[80];
	uint8_t rdata[16];
	uint32_t ttl;
	bool tc, dropped;
} ans_t;

/* Run one query through the hook; false when it passes. */
static uint16_t *memo; /* the connection's, for ask() */
static bool ask_udp;    /* the query came over UDP */
static uint64_t ask_ms; /* the core's clock when it came */

static bool ask(dv_policy_worker_t *pw, const char *qname, uint16_t qtype,
		const char *peer, const char *sni, const char *client_id,
		uint8_t listener, ans_t *a)
{
	static dv_query_t q;
	uint8_t buf[1024];
	memset(&q, 0, sizeof(q));
	q.wire = q.inline_buf;
	size_t pos = DV_DNS_HDR;
	memset(q.wire, 0, DV_DNS_HDR);
	dv_put16(q.wire, 0x1234);
	dv_put16(q.wire + 2, DV_FLAG_RD);
	dv_put16(q.wire + 4, 1);
	dv_put16(q.wire + 10, 1);
	int n = dv_wire_name_from_text(q.wire + pos, 300, qname);
	assert_true(n > 0);
	pos += (size_t)n;
	dv_put16(q.wire + pos, qtype);
	dv_put16(q.wire + pos + 2, DV_CLASS_IN);
	pos += 4;
	/* OPT: the client speaks EDNS */
	const uint8_t opt[] = {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0};
	memcpy(q.wire + pos, opt, sizeof(opt));
	pos += sizeof(opt);
	q.len = (uint16_t)pos;
	assert_int_equal(dv_wire_parse_query(q.wire, q.len, &q.view), 0);
	q.answer_limit = 1232;
	q.sni = sni;
	q.client_id = client_id;
	q.listener = listener;
	q.ident_memo = memo;
	q.udp = ask_udp;
	q.start_ms = ask_ms;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&q.peer;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&q.peer;
	if (inet_pton(AF_INET, peer, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		q.peer_len = sizeof(*in4);
	} else {
		assert_int_equal(inet_pton(AF_INET6, peer, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		q.peer_len = sizeof(*in6);
	}
	int len = dv_policy_core_ops.decide(pw, &q, buf, sizeof(buf), 0);
	if (len == 0)
		return false;
	memset(a, 0, sizeof(*a));
	if (len == DV_ELIMIT) { /* no answer at all */
		a->dropped = true;
		return true;
	}
	assert_true(len > 0);
	dv_wire_resp_t r;
	assert_int_equal(dv_wire_parse_response(buf, (size_t)len, &r), 0);
	assert_true(dv_wire_question_matches(buf, (size_t)len, q.wire, q.len));
	assert_int_equal(dv_get16(buf), 0x1234);
	memset(a, 0, sizeof(*a));
	a->rcode = DV_RCODE(r.flags);
	a->an = r.ancount;
	a->ns = r.nscount;
	a->ede = r.ede_code;
	a->tc = (r.flags & DV_FLAG_TC) != 0;
	if (r.ancount) {
		size_t p = r.question_end + 2;
		uint16_t rdlen = dv_get16(buf + p + 8);
		a->ttl = dv_get32(buf + p + 4);
		memcpy(a->rdata, buf + p + 10,
		       rdlen < sizeof(a->rdata) ? rdlen : sizeof(a->rdata));
	} else if (r.nscount) {
		a->ttl = dv_get32(buf + r.question_end + 6);
	}
	if (r.has_opt && r.ede_code != 0xffff) {
		/* OPT RDATA: the EDE option is the first one */
		size_t o = r.opt_start + 11;
		uint16_t olen = dv_get16(buf + o + 2);
		snprintf(a->ede_text, sizeof(a->ede_text), "%.*s",
			 (int)(olen - 2), (const char *)buf + o + 6);
	}
	return true;
}

static void test_decisions(void **state)
{
	dv_config_t *cfg = policy_config();
	dv_policy_t *p = NULL;
	char err[512];
	assert_int_equal(dv_policy_new(cfg, 7, &p, err, sizeof(err)), 0);
	assert_non_null(p);
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	ans_t a;
	const char *lo = "127.0.0.1";

	/* default group: NXDOMAIN with the SOA of the rule and EDE 15 */
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, NULL, NULL, 1, &a));
	assert_int_equal(a.rcode, DV_RCODE_NXDOMAIN);
	assert_int_equal(a.ns, 1);
	assert_int_equal(a.ttl, 300);
	assert_int_equal(a.ede, 15);
	assert_string_equal(a.ede_text, "blocked by list ads");
	/* subdomains follow; an allow list beats the block list; an
	 * exception beats its own list's rule; other names pass */
	assert_true(ask(w, "a.b.ads.example", DV_TYPE_A, lo, NULL, NULL, 1, &a));
	assert_false(ask(w, "good.ads.example", DV_TYPE_A, lo, NULL, NULL, 1,
			 &a));
	assert_false(ask(w, "x.good.ads.example", DV_TYPE_A, lo, NULL, NULL,
			 1, &a));
	assert_true(ask(w, "track.example", DV_TYPE_A, lo, NULL, NULL, 1, &a));
	assert_string_equal(a.ede_text, "blocked by list ab");
	assert_false(ask(w, "ok.track.example", DV_TYPE_A, lo, NULL, NULL, 1,
			 &a));
	assert_false(ask(w, "example", DV_TYPE_A, lo, NULL, NULL, 1, &a));
	assert_false(ask(w, "ads.example.org", DV_TYPE_A, lo, NULL, NULL, 1,
			 &a));
	/* kids by SNI and by DoH path: the null address */
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, "kid-1.dns.test",
			NULL, 1, &a));
	assert_int_equal(a.rcode, 0);
	assert_int_equal(a.an, 1);
	assert_int_equal(a.ttl, 60);
	assert_memory_equal(a.rdata, "\0\0\0\0", 4);
	assert_true(ask(w, "ads.example", DV_TYPE_AAAA, lo, NULL, "kid-2", 1,
			&a));
	assert_int_equal(a.an, 1);
	/* kids do not block track.example (not their list) */
	assert_false(ask(w, "track.example", DV_TYPE_A, lo, NULL, "kid-2", 1,
			 &a));
	/* other types get NODATA */
	assert_true(ask(w, "ads.example", DV_TYPE_TXT, lo, NULL, "kid-2", 1,
			&a));
	assert_int_equal(a.rcode, 0);
	assert_int_equal(a.an, 0);
	assert_int_equal(a.ns, 1);
	/* unknown IDs refused (clients-only), EDE 18; a bare server name or
	 * another name is no ID */
	assert_true(ask(w, "other.example", DV_TYPE_A, lo, "stranger.dns.test",
			NULL, 1, &a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);
	assert_int_equal(a.ede, 18);
	assert_false(ask(w, "other.example", DV_TYPE_A, lo, "dns.test", NULL,
			 1, &a));
	assert_false(ask(w, "other.example", DV_TYPE_A, lo, "known.dns.test",
			 NULL, 1, &a));
	/* by address: the given addresses */
	assert_true(ask(w, "ads.example", DV_TYPE_A, "198.51.100.9", NULL,
			NULL, 1, &a));
	assert_int_equal(a.an, 1);
	assert_memory_equal(a.rdata, "\xc0\x00\x02\x07", 4);
	assert_true(ask(w, "ads.example", DV_TYPE_AAAA, "198.51.100.9", NULL,
			NULL, 1, &a));
	assert_int_equal(a.an, 1);
	assert_int_equal(a.rdata[15], 7);
	/* by listener: refused with EDE 15 */
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, NULL, NULL, 2, &a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);
	assert_int_equal(a.ede, 15);
	/* nodata by IPv6 prefix */
	assert_true(ask(w, "ads.example", DV_TYPE_A, "2001:db8::1", NULL,
			NULL, 1, &a));
	assert_int_equal(a.rcode, 0);
	assert_int_equal(a.an, 0);
	assert_int_equal(a.ns, 1);

	/* a connection's memo: worked out once, then kept (the SNI of a
	 * connection does not change; this shows the memo is what decides) */
	uint16_t conn_memo = 0;
	memo = &conn_memo;
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, "kid-1.dns.test", NULL,
			1, &a));
	assert_int_equal(a.an, 1); /* kids: null */
	assert_int_not_equal(conn_memo, 0);
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, "dns.test", NULL, 1,
			&a));
	assert_int_equal(a.an, 1); /* still the kids' answer */
	conn_memo = 0;
	assert_true(ask(w, "ads.example", DV_TYPE_A, lo, "stranger.dns.test",
			NULL, 1, &a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);
	assert_true(ask(w, "other.example", DV_TYPE_A, lo, "dns.test", NULL, 1,
			&a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED); /* remembered */
	memo = NULL;

	/* the counters */
	char *json = NULL;
	size_t jlen = 0;
	FILE *f = open_memstream(&json, &jlen);
	dv_policy_stats_json(f, p, &w, 1);
	fclose(f);
	assert_non_null(strstr(json, "\"refused_unknown_id\":3"));
	assert_non_null(strstr(json, "\"default\":{\"queries\":10,"
				     "\"blocked\":3,\"allowed\":3,"
				     "\"local\":0,\"refused\":0,"
				     "\"rate_limited\":0}"));
	assert_non_null(strstr(json, "\"ads\":{\"queries\":"));
	assert_non_null(strstr(json, "\"bad_lines\":1"));
	free(json);
	dv_policy_worker_free(w);
	dv_policy_free(p);
	free(cfg);
	const char *files[] = {"ads.txt", "ab.txt", "allow.txt", "c.yaml"};
	char path[512];
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* ---- local records, internal names ---- */

static const char records_yaml[] =
	"listen: [\"udp://127.0.0.1:5353\"]\n"
	"upstream: [\"udp://127.0.0.1:53\"]\n"
	"fallback: [\"udp://127.0.0.1:54\"]\n"
	"internal: [Corp.Example.]\n"
	"policy: { server-names: [dns.test] }\n"
	"groups:\n"
	"  default:\n"
	"    records:\n"
	"      - \"intranet.corp.example. 300 IN A 192.0.2.10\"\n"
	"      - \"Intranet.Corp.Example. 60 IN TXT hi\"\n"
	"      - \"intranet.corp.example. 300 IN A 192.0.2.10\"\n"
	"      - \"alias.corp.example. 30 IN CNAME intranet.corp.example.\"\n"
	"      - \"loop.corp.example. 30 IN CNAME loop.corp.example.\"\n"
	"      - \"*.lab.corp.example. 20 IN A 192.0.2.30\"\n"
	"      - \"host.sub.lab.corp.example. 20 IN A 192.0.2.31\"\n"
	"      - \"printer.home.test. IN AAAA 2001:db8::5\"\n"
	"  kids:\n"
	"    records: \"intranet.corp.example. 300 IN A 192.0.2.20\"\n"
	"  other:\n"
	"    records: [\"a.b. IN CNAME c.d.\", \"a.b. IN CNAME c.d.\"]\n"
	"clients:\n"
	"  - { id: \"kid-*\", group: kids }\n";

static const dv_records_t *test_records;

static dv_records_hit_t rlook(unsigned g, const char *name)
{
	return dv_records_lookup(test_records, g, name, strlen(name));
}

static bool internal_name(dv_policy_worker_t *w, const char *qname)
{
	static dv_query_t q;
	memset(&q, 0, sizeof(q));
	q.wire = q.inline_buf;
	memset(q.wire, 0, DV_DNS_HDR);
	dv_put16(q.wire + 4, 1);
	int n = dv_wire_name_from_text(q.wire + DV_DNS_HDR, 300, qname);
	assert_true(n > 0);
	dv_put16(q.wire + DV_DNS_HDR + n, DV_TYPE_A);
	dv_put16(q.wire + DV_DNS_HDR + n + 2, DV_CLASS_IN);
	q.len = (uint16_t)(DV_DNS_HDR + n + 4);
	assert_int_equal(dv_wire_parse_query(q.wire, q.len, &q.view), 0);
	return dv_policy_core_ops.local_only(w, &q);
}

static void test_local_records(void **state)
{
	dv_config_t *cfg = calloc(1, sizeof(*cfg));
	char err[512];
	assert_non_null(cfg);
	dv_config_defaults(cfg);
	if (dv_config_load_buffer(cfg, "r.yaml", records_yaml,
				  strlen(records_yaml), err,
				  sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	/* a duplicate is dropped: in a group, not across groups */
	assert_int_equal(cfg->n_records, 9);
	assert_int_equal(cfg->records[1].line, 10);
	assert_int_equal(cfg->records[2].line, 12);
	assert_int_equal(cfg->records[6].ttl, DV_RECORD_DEFAULT_TTL);
	dv_policy_t *p = NULL;
	assert_int_equal(dv_policy_new(cfg, 11, &p, err, sizeof(err)), 0);
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	/* the table, through a second one built from the same config */
	dv_records_t *t = dv_records_new(cfg, 3);
	assert_non_null(t);
	test_records = t;
	assert_true(dv_records_group_has(t, 0));
	dv_records_hit_t h = rlook(0, "intranet.corp.example");
	assert_true(h.node >= 0 && !h.wildcard);
	/* case was folded at load: both lines are one node */
	assert_int_equal(rlook(1, "intranet.corp.example").node >= 0, 1);
	assert_true(rlook(0, "intranet.corp.example").node !=
		    rlook(1, "intranet.corp.example").node);
	/* empty non-terminals and unknown names have no answer */
	assert_int_equal(rlook(0, "corp.example").node, -1);
	assert_int_equal(rlook(0, "lab.corp.example").node, -1);
	assert_int_equal(rlook(0, "sub.lab.corp.example").node, -1);
	assert_int_equal(rlook(0, "nope.corp.example").node, -1);
	assert_int_equal(rlook(0, "example").node, -1);
	/* wildcards: any depth below their closest encloser, not below a
	 * name that exists (RFC 4592 3.3.1) */
	h = rlook(0, "a.lab.corp.example");
	assert_true(h.node >= 0 && h.wildcard);
	h = rlook(0, "x.y.lab.corp.example");
	assert_true(h.node >= 0 && h.wildcard);
	h = rlook(0, "host.sub.lab.corp.example");
	assert_true(h.node >= 0 && !h.wildcard);
	assert_int_equal(rlook(0, "other.sub.lab.corp.example").node, -1);
	/* no bleed: kids has no wildcard */
	assert_int_equal(rlook(1, "a.lab.corp.example").node, -1);
	assert_int_equal(dv_records_count(t), 9);
	dv_records_free(t);

	/* answers through the hook */
	ans_t a;
	const char *lo = "127.0.0.1";
	memo = NULL;
	assert_true(ask(w, "intranet.corp.example", DV_TYPE_A, lo, NULL, NULL,
			0, &a));
	assert_int_equal(a.rcode, DV_RCODE_NOERROR);
	assert_int_equal(a.an, 1);
	assert_int_equal(a.ttl, 300);
	assert_memory_equal(a.rdata, ((uint8_t[]){ 192, 0, 2, 10 }), 4);
	assert_int_equal(a.ede, 0xffff);
	assert_true(ask(w, "INTRANET.corp.example", DV_TYPE_TXT, lo, NULL, NULL,
			0, &a));
	assert_int_equal(a.an, 1);
	assert_memory_equal(a.rdata, "\x02hi", 3);
	/* NODATA: the SOA's TTL is the name's smallest */
	assert_true(ask(w, "intranet.corp.example", 15 /* MX */, lo, NULL, NULL,
			0, &a));
	assert_int_equal(a.rcode, DV_RCODE_NOERROR);
	assert_int_equal(a.an, 0);
	assert_int_equal(a.ns, 1);
	assert_int_equal(a.ttl, 60);
	/* a CNAME and its target; a loop ends at the chase limit */
	assert_true(
		ask(w, "alias.corp.example", DV_TYPE_A, lo, NULL, NULL, 0, &a));
	assert_int_equal(a.an, 2);
	assert_int_equal(a.ttl, 30);
	assert_true(
		ask(w, "loop.corp.example", DV_TYPE_A, lo, NULL, NULL, 0, &a));
	assert_int_equal(a.an, DV_RECORDS_MAX_CHASE);
	assert_true(
		ask(w, "q.lab.corp.example", DV_TYPE_A, lo, NULL, NULL, 0, &a));
	assert_memory_equal(a.rdata, ((uint8_t[]){ 192, 0, 2, 30 }), 4);
	assert_false(
		ask(w, "lab.corp.example", DV_TYPE_A, lo, NULL, NULL, 0, &a));
	/* the kids group: its own record */
	assert_true(ask(w, "intranet.corp.example", DV_TYPE_A, lo,
			"kid-1.dns.test", NULL, 0, &a));
	assert_memory_equal(a.rdata, ((uint8_t[]){ 192, 0, 2, 20 }), 4);
	assert_false(ask(w, "a.lab.corp.example", DV_TYPE_A, lo,
			 "kid-1.dns.test", NULL, 0, &a));

	/* internal names: internal:, the records' names, special-use */
	assert_true(internal_name(w, "x.corp.example"));
	assert_true(internal_name(w, "CORP.example"));
	assert_true(internal_name(w, "printer.home.test"));
	assert_true(internal_name(w, "a.b.home.arpa"));
	assert_true(internal_name(w, "nas.local"));
	assert_true(internal_name(w, "5.1.20.172.in-addr.arpa"));
	assert_true(internal_name(w, "1.1.100.100.in-addr.arpa"));
	assert_true(internal_name(w, "2.0.192.in-addr.arpa"));
	assert_false(internal_name(w, "1.15.172.in-addr.arpa"));
	assert_false(internal_name(w, "1.1.1.1.in-addr.arpa"));
	assert_false(internal_name(w, "home.test"));
	assert_false(internal_name(w, "example.com"));
	assert_false(internal_name(w, "corp.example.com"));
	dv_policy_worker_free(w);
	dv_policy_free(p);

	/* without a fallback there is nothing to keep them from; with
	 * internal-special-use off only the configured names are */
	cfg->internal_special_use = 0;
	assert_int_equal(dv_policy_new(cfg, 11, &p, err, sizeof(err)), 0);
	w = dv_policy_worker_new(p);
	assert_true(internal_name(w, "x.corp.example"));
	assert_false(internal_name(w, "nas.local"));
	dv_policy_worker_free(w);
	dv_policy_free(p);
	cfg->n_fallback = 0;
	assert_int_equal(dv_policy_new(cfg, 11, &p, err, sizeof(err)), 0);
	w = dv_policy_worker_new(p);
	assert_false(internal_name(w, "x.corp.example"));
	dv_policy_worker_free(w);
	dv_policy_free(p);
	free(cfg);
}

static void test_access_and_rate_limits(void **state)
{
	(void)state;
	dv_config_t *cfg = calloc(1, sizeof(*cfg));
	char path[512], err[512];
	assert_non_null(cfg);
	dv_config_defaults(cfg);
	strcpy(dir, "/tmp/dv_policy_XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("acl.yaml",
		   "listen: [\"udp://127.0.0.1:5353\"]\n"
		   "upstream: [\"udp://127.0.0.1:53\"]\n"
		   "policy: { server-names: [dns.test] }\n"
		   "groups:\n"
		   "  default: { deny-from: [192.0.2.66], rate-limit-qps: 2,\n"
		   "             rate-limit-burst: 3 }\n"
		   "  lan: { allow-from: [198.51.100.0/25],\n"
		   "         deny-from: [198.51.100.7] }\n"
		   "  kids: { rate-limit-qps: 1, rate-limit-action: drop }\n"
		   "clients:\n"
		   "  - { id: \"kid-*\", group: kids }\n"
		   "  - { cidr: 198.51.100.0/24, group: lan }\n",
		   path);
	if (dv_config_load(cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	unlink(path);
	rmdir(dir);
	dv_policy_t *p = NULL;
	assert_int_equal(dv_policy_new(cfg, 3, &p, err, sizeof(err)), 0);
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	ans_t a;
	memo = NULL;
	ask_udp = false;
	ask_ms = 50000;

	/* deny-from: REFUSED with EDE 18; its neighbour passes */
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.66", NULL, NULL,
			1, &a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);
	assert_int_equal(a.ede, DV_EDE_PROHIBITED);
	assert_string_equal(a.ede_text, "access denied");
	assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.65", NULL,
			 NULL, 1, &a));
	/* allow-from admits its prefix only, and a deny inside it wins */
	assert_false(ask(w, "h1.example", DV_TYPE_A, "198.51.100.1", NULL,
			 NULL, 1, &a));
	assert_true(ask(w, "h1.example", DV_TYPE_A, "198.51.100.200", NULL,
			NULL, 1, &a));
	assert_int_equal(a.ede, DV_EDE_PROHIBITED);
	assert_true(ask(w, "h1.example", DV_TYPE_A, "198.51.100.7", NULL,
			NULL, 1, &a));
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);

	/* default: 2 qps, burst 3, per /24.  Over UDP the burst passes,
	 * then an empty answer with TC, for the whole prefix */
	ask_udp = true;
	ask_ms += 10000;
	for (int i = 0; i < 3; i++)
		assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL,
				 NULL, 1, &a));
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, NULL,
			1, &a));
	assert_true(a.tc);
	assert_int_equal(a.rcode, DV_RCODE_NOERROR);
	assert_int_equal(a.an, 0);
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.99", NULL, NULL,
			1, &a));
	assert_true(a.tc);
	assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.3.1", NULL, NULL,
			 1, &a));
	/* the same client over a stream has a bucket of its own, and
	 * gets REFUSED with EDE 18 past it */
	ask_udp = false;
	for (int i = 0; i < 3; i++)
		assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL,
				 NULL, 1, &a));
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, NULL,
			1, &a));
	assert_false(a.tc);
	assert_int_equal(a.rcode, DV_RCODE_REFUSED);
	assert_int_equal(a.ede, DV_EDE_PROHIBITED);
	assert_string_equal(a.ede_text, "rate limited");
	/* half a second later: one more query at 2 qps */
	ask_udp = true;
	ask_ms += 499;
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, NULL,
			1, &a));
	ask_ms += 1;
	assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, NULL,
			 1, &a));
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, NULL,
			1, &a));

	/* an IPv4-mapped peer (a DoH proxy's forwarded client) is its
	 * IPv4 /24, not one /56 bucket for every IPv4 client */
	assert_true(ask(w, "h1.example", DV_TYPE_A, "::ffff:192.0.2.77", NULL,
			NULL, 1, &a));
	assert_true(a.tc);
	assert_false(ask(w, "h1.example", DV_TYPE_A, "::ffff:192.0.4.1", NULL,
			 NULL, 1, &a));

	/* kids: 1 qps by client ID (whatever the address), dropped */
	assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL,
			 "kid-1", 1, &a));
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL, "kid-1",
			1, &a));
	assert_true(a.dropped);
	assert_true(ask(w, "h1.example", DV_TYPE_A, "192.0.2.200",
			"kid-1.dns.test", NULL, 1, &a));
	assert_true(a.dropped);
	assert_false(ask(w, "h1.example", DV_TYPE_A, "192.0.2.1", NULL,
			 "kid-2", 1, &a));

	dv_policy_sums_t *s = malloc(sizeof(*s));
	dv_policy_worker_t *ws[] = { w };
	dv_policy_sum(p, ws, 1, s);
	const dv_policy_group_sum_t *def = NULL, *lan = NULL, *kids = NULL;
	for (unsigned g = 0; g < s->n_groups; g++) {
		if (strcmp(s->groups[g].name, "default") == 0)
			def = &s->groups[g];
		else if (strcmp(s->groups[g].name, "lan") == 0)
			lan = &s->groups[g];
		else if (strcmp(s->groups[g].name, "kids") == 0)
			kids = &s->groups[g];
	}
	assert_non_null(def);
	assert_non_null(lan);
	assert_non_null(kids);
	assert_int_equal(def->refused, 1);
	assert_int_equal(lan->refused, 2);
	assert_int_equal(def->rate_limited, 6);
	assert_int_equal(kids->rate_limited, 2);
	assert_int_equal(lan->rate_limited, 0);
	free(s);
	ask_udp = false;
	dv_policy_worker_free(w);
	dv_policy_free(p);
	free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ident),
		cmocka_unit_test(test_suffix_set),
		cmocka_unit_test(test_normalize_and_query_name),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_local_records),
		cmocka_unit_test(test_access_and_rate_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

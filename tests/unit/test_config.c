/*
 * Unit tests for src/config/: schema defaults, the YAML loader and its
 * FILE:LINE messages, sizes, URLs, validation and the command line.
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

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static dv_config_t *cfg_new(void)
{
	dv_config_t *cfg = malloc(sizeof(*cfg));

	assert_non_null(cfg);
	dv_config_defaults(cfg);
	return cfg;
}

/* Write `text` to a fresh file under /tmp; `path` gets its name. */
static void write_tmp(const char *text, char *path, size_t len)
{
	int fd;
	size_t n = strlen(text);

	snprintf(path, len, "/tmp/dv_test_config_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
}

/* Load `text` from a temp file; its name is left in `path`. */
static int load_text(dv_config_t *cfg, const char *text, char *path,
		     size_t path_len, char *err, size_t err_len)
{
	int ret;

	write_tmp(text, path, path_len);
	err[0] = '\0';
	ret = dv_config_load(cfg, path, err, err_len);
	unlink(path);
	return ret;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (hay == NULL || strstr(hay, needle) == NULL) {
		print_error("expected '%s' in '%s'\n", needle,
			    hay != NULL ? hay : "(null)");
		fail();
	}
}

static void assert_prefix(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, strlen(prefix)) != 0) {
		print_error("expected '%s' to start with '%s'\n", s, prefix);
		fail();
	}
}

static void assert_addr(const dv_url_t *u, const char *want)
{
	char buf[64];

	dv_addr_format((const struct sockaddr *)&u->addr, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void assert_netmask(const dv_netmask_t *m, const char *want)
{
	char buf[DV_NETMASK_TEXT_MAX];

	dv_netmask_format(m, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

/* The repository root: $DV_SOURCE_DIR, else derived from this file. */
static void source_path(const char *rel, char *out, size_t len)
{
	const char *dir = getenv("DV_SOURCE_DIR");
	const char *self = __FILE__;
	const char *tail = "tests/unit/test_config.c";
	size_t n = strlen(self), t = strlen(tail);

	if (dir != NULL && dir[0] != '\0') {
		snprintf(out, len, "%s/%s", dir, rel);
		return;
	}
	assert_true(n >= t && strcmp(self + n - t, tail) == 0);
	snprintf(out, len, "%.*s%s", (int)(n - t), self, rel);
}

/* ------------------------------------------------------------------ */
/* defaults and schema                                                 */

static void test_defaults(void **state)
{
	dv_config_t *cfg = cfg_new();

	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->log_level, DV_LOG_INFO);
	assert_int_equal(cfg->n_listen, 0);
	assert_int_equal(cfg->n_upstream, 0);
	assert_int_equal(cfg->n_fallback, 0);
	assert_string_equal(cfg->tls_cert, "");
	assert_string_equal(cfg->tls_key, "");
	assert_string_equal(cfg->tls_ca, "");
	assert_int_equal(cfg->tcp_max_connections, 10000);
	assert_int_equal(cfg->tcp_max_inflight, 128);
	assert_int_equal(cfg->tcp_idle_timeout_ms, 10000);
	assert_int_equal(cfg->tcp_max_output_bytes, 262144);
	assert_int_equal(cfg->max_inflight, 10000);
	assert_int_equal(cfg->n_doh_paths, 0);
	assert_int_equal(cfg->n_doh_trusted_proxies, 0);
	assert_int_equal(cfg->doh_max_streams, 100);
	assert_int_equal(cfg->doh_max_header_bytes, 8192);
	assert_int_equal(cfg->upstream_connections, 2);
	assert_int_equal(cfg->upstream_max_inflight, 1024);
	assert_int_equal(cfg->upstream_timeout_ms, 1500);
	assert_int_equal(cfg->hedge_delay_ms, 200);
	assert_int_equal(cfg->query_timeout_ms, 3000);
	assert_int_equal(cfg->reconnect_min_ms, 50);
	assert_int_equal(cfg->reconnect_max_ms, 5000);
	assert_true(cfg->cache_size_bytes == 64ULL * 1024 * 1024);
	assert_int_equal(cfg->cache_shards, 64);
	assert_int_equal(cfg->cache_min_ttl, 0);
	assert_int_equal(cfg->cache_max_ttl, 86400);
	assert_int_equal(cfg->cache_negative_max_ttl, 3600);
	assert_int_equal(cfg->cache_stale_max_age_s, 86400);
	assert_int_equal(cfg->cache_stale_answer_timeout_ms, 1800);
	assert_int_equal(cfg->cache_servfail_ttl_s, 5);
	assert_int_equal(cfg->cache_prefetch_hits, 10);
	assert_int_equal(cfg->cache_prefetch_window_pct, 10);
	assert_string_equal(cfg->source, "");
	assert_int_equal(cfg->cli_set, 0);
	free(cfg);
}

static char *capture(void (*fn)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f);
	fclose(f);
	assert_non_null(buf);
	return buf;
}

/* The line of `text` that starts with `key` followed by a space. */
static const char *line_of(const char *text, const char *key, char *out,
			   size_t len)
{
	size_t k = strlen(key);

	for (const char *p = text; *p != '\0';) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);

		if (n > k && strncmp(p, key, k) == 0 && p[k] == ' ') {
			snprintf(out, len, "%.*s", (int)n, p);
			return out;
		}
		p += n + (eol != NULL);
	}
	print_error("no line for '%s' in:\n%s\n", key, text);
	fail();
	return NULL;
}

static void test_print_schema(void **state)
{
	char *out = capture(dv_config_print_schema);
	char line[512];

	line_of(out, "limits.tcp-max-connections", line, sizeof(line));
	assert_contains(line, " uint ");
	assert_contains(line, "[1..1000000");
	assert_contains(line, " 10000 ");
	line_of(out, "cache.size", line, sizeof(line));
	assert_contains(line, " size ");
	assert_contains(line, "[0..64G");
	assert_contains(line, " 64M ");
	line_of(out, "tls.cert", line, sizeof(line));
	assert_contains(line, " string ");
	assert_contains(line, "\"\"");
	line_of(out, "log-level", line, sizeof(line));
	assert_contains(line, "error|warn|info|debug");
	assert_contains(line, " info ");
	line_of(out, "workers", line, sizeof(line));
	assert_contains(line, "[0..256");
	assert_contains(line, "one per CPU");
	line_of(out, "listen", line, sizeof(line));
	line_of(out, "upstream", line, sizeof(line));
	line_of(out, "fallback", line, sizeof(line));
	line_of(out, "pool.reconnect-max-ms", line, sizeof(line));
	assert_contains(line, "[1..600000");
	line_of(out, "cache.negative-max-ttl", line, sizeof(line));
	line_of(out, "cache.stale-max-age-s", line, sizeof(line));
	assert_contains(line, "[0..604800]");
	assert_contains(line, " 86400 ");
	line_of(out, "cache.stale-answer-timeout-ms", line, sizeof(line));
	assert_contains(line, "[0..30000]");
	assert_contains(line, " 1800 ");
	line_of(out, "cache.servfail-ttl-s", line, sizeof(line));
	assert_contains(line, "[0..300]");
	line_of(out, "cache.prefetch-hits", line, sizeof(line));
	line_of(out, "cache.prefetch-window-pct", line, sizeof(line));
	assert_contains(line, "[1..50]");
	line_of(out, "doh.paths", line, sizeof(line));
	assert_contains(line, " paths ");
	assert_contains(line, "[max 16 paths]");
	assert_contains(line, " [] ");
	line_of(out, "doh.trusted-proxies", line, sizeof(line));
	assert_contains(line, " prefixes ");
	assert_contains(line, "[max 32 prefixes]");
	assert_contains(line, " [] ");
	line_of(out, "doh.max-streams", line, sizeof(line));
	assert_contains(line, " uint ");
	assert_contains(line, "[1..1000]");
	assert_contains(line, " 100 ");
	line_of(out, "doh.max-header-bytes", line, sizeof(line));
	assert_contains(line, "[1024..65536]");
	assert_contains(line, " 8192 ");
	line_of(out, "doq.max-handshakes", line, sizeof(line));
	assert_contains(line, "[1..1000000]");
	assert_contains(line, " 256 ");
	line_of(out, "doq.max-handshakes-per-address", line, sizeof(line));
	assert_contains(line, "[1..65536]");
	assert_contains(line, " 16 ");
	free(out);
}

/* ------------------------------------------------------------------ */
/* loading                                                             */

static const char good_yaml[] =
	"# a full config, every key off its default\n"
	"workers: 4\n"
	"log-level: debug\n"
	"listen:\n"
	"  - dns://127.0.0.1:5353\n"
	"  - \"https://[::1]:8443/dns-query\"\n"
	"  - tls://0.0.0.0:853\n"
	"upstream: [ \"tcp://127.0.0.1:5335\", 'udp://[::1]:5335' ]\n"
	"fallback:\n"
	"  - tls://1.1.1.1:853#cloudflare-dns.com\n"
	"  - https://8.8.8.8:443/dns-query#dns.google\n"
	"  - quic://94.140.14.14:853#dns.adguard.com\n"
	"tls: { cert: /etc/dnsveil/cert.pem, key: \"/etc/dnsveil/key.pem\" }\n"
	"limits:\n"
	"  tcp-max-connections: 1000000\n"
	"  tcp-max-inflight: 1\n"
	"  tcp-idle-timeout-ms: 100\n"
	"  tcp-max-output-bytes: 4096\n"
	"  max-inflight: 5\n"
	"doh:\n"
	"  paths: [ /dns-query/kids, \"/dns-query/guests\", /dns-query/kids ]\n"
	"  trusted-proxies:\n"
	"    - 127.0.0.1\n"
	"    - \"192.0.2.77/24\"\n"
	"    - 2001:db8::/32\n"
	"    - 192.0.2.0/24\n"
	"    - ::1\n"
	"  max-streams: 1000\n"
	"  max-header-bytes: 65536\n"
	"pool:\n"
	"  connections: 64\n"
	"  max-inflight: 65535\n"
	"  timeout-ms: 10\n"
	"  hedge-delay-ms: 0\n"
	"  query-timeout-ms: 60000\n"
	"  reconnect-min-ms: 1\n"
	"  reconnect-max-ms: 600000\n"
	"cache:\n"
	"  size: 1G\n"
	"  shards: 4096\n"
	"  min-ttl: 5\n"
	"  max-ttl: \"604800\"\n"
	"  negative-max-ttl: 0\n"
	"  stale-max-age-s: 604800\n"
	"  stale-answer-timeout-ms: 0\n"
	"  servfail-ttl-s: 300\n"
	"  prefetch-hits: 0\n"
	"  prefetch-window-pct: 50\n";

static void test_load_good(void **state)
{
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];

	assert_int_equal(load_text(cfg, good_yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_string_equal(cfg->source, path);
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->log_level, DV_LOG_DEBUG);

	assert_int_equal(cfg->n_listen, 3);
	assert_int_equal(cfg->listen[0].scheme, DV_SCHEME_DNS);
	assert_addr(&cfg->listen[0], "127.0.0.1:5353");
	assert_int_equal(cfg->listen[1].scheme, DV_SCHEME_HTTPS);
	assert_addr(&cfg->listen[1], "[::1]:8443");
	assert_string_equal(cfg->listen[1].path, "/dns-query");
	assert_int_equal(cfg->listen[2].scheme, DV_SCHEME_TLS);

	assert_int_equal(cfg->n_upstream, 2);
	assert_int_equal(cfg->upstream[0].scheme, DV_SCHEME_TCP);
	assert_int_equal(cfg->upstream[1].scheme, DV_SCHEME_UDP);
	assert_addr(&cfg->upstream[1], "[::1]:5335");

	assert_int_equal(cfg->n_fallback, 3);
	assert_string_equal(cfg->fallback[0].name, "cloudflare-dns.com");
	assert_string_equal(cfg->fallback[1].name, "dns.google");
	assert_string_equal(cfg->fallback[1].path, "/dns-query");
	assert_int_equal(cfg->fallback[2].scheme, DV_SCHEME_QUIC);
	assert_string_equal(cfg->fallback[2].text,
			    "quic://94.140.14.14:853#dns.adguard.com");

	assert_string_equal(cfg->tls_cert, "/etc/dnsveil/cert.pem");
	assert_string_equal(cfg->tls_key, "/etc/dnsveil/key.pem");
	assert_string_equal(cfg->tls_ca, "");

	assert_int_equal(cfg->tcp_max_connections, 1000000);
	assert_int_equal(cfg->tcp_max_inflight, 1);
	assert_int_equal(cfg->tcp_idle_timeout_ms, 100);
	assert_int_equal(cfg->tcp_max_output_bytes, 4096);
	assert_int_equal(cfg->max_inflight, 5);
	/* duplicates are dropped */
	assert_int_equal(cfg->n_doh_paths, 2);
	assert_string_equal(cfg->doh_paths[0], "/dns-query/kids");
	assert_string_equal(cfg->doh_paths[1], "/dns-query/guests");
	assert_int_equal(cfg->n_doh_trusted_proxies, 4);
	assert_netmask(&cfg->doh_trusted_proxies[0], "127.0.0.1/32");
	assert_netmask(&cfg->doh_trusted_proxies[1], "192.0.2.0/24");
	assert_netmask(&cfg->doh_trusted_proxies[2], "2001:db8::/32");
	assert_netmask(&cfg->doh_trusted_proxies[3], "::1/128");
	assert_int_equal(cfg->doh_max_streams, 1000);
	assert_int_equal(cfg->doh_max_header_bytes, 65536);
	assert_int_equal(cfg->upstream_connections, 64);
	assert_int_equal(cfg->upstream_max_inflight, 65535);
	assert_int_equal(cfg->upstream_timeout_ms, 10);
	assert_int_equal(cfg->hedge_delay_ms, 0);
	assert_int_equal(cfg->query_timeout_ms, 60000);
	assert_int_equal(cfg->reconnect_min_ms, 1);
	assert_int_equal(cfg->reconnect_max_ms, 600000);
	assert_true(cfg->cache_size_bytes == 1024ULL * 1024 * 1024);
	assert_int_equal(cfg->cache_shards, 4096);
	assert_int_equal(cfg->cache_min_ttl, 5);
	assert_int_equal(cfg->cache_max_ttl, 604800);
	assert_int_equal(cfg->cache_negative_max_ttl, 0);
	assert_int_equal(cfg->cache_stale_max_age_s, 604800);
	assert_int_equal(cfg->cache_stale_answer_timeout_ms, 0);
	assert_int_equal(cfg->cache_servfail_ttl_s, 300);
	assert_int_equal(cfg->cache_prefetch_hits, 0);
	assert_int_equal(cfg->cache_prefetch_window_pct, 50);
	free(cfg);
}

/* Files with nothing to say keep every default. */
static void test_load_empty(void **state)
{
	static const char *const texts[] = {
		"", "---\n", "# only a comment\n", "tls:\n", "~\n",
		"limits: {}\n", "fallback:\n", "fallback: []\n",
		"doh:\n  paths: []\n  trusted-proxies: ~\n",
	};
	dv_config_t *def = cfg_new(), *cfg = cfg_new();
	char path[64], err[512];

	for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
		dv_config_defaults(cfg);
		if (load_text(cfg, texts[i], path, sizeof(path), err,
			      sizeof(err)) != 0) {
			print_error("'%s': %s\n", texts[i], err);
			fail();
		}
		strcpy(def->source, path);
		assert_memory_equal(cfg, def, sizeof(*cfg));
	}
	free(def);
	free(cfg);
}

/* A later file's list replaces the earlier one; absent keys keep theirs. */
static void test_load_lists_replace(void **state)
{
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];

	assert_int_equal(load_text(cfg, good_yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(load_text(cfg,
				   "listen: udp://127.0.0.2:53\n"
				   "fallback: ~\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->n_listen, 1);
	assert_int_equal(cfg->listen[0].scheme, DV_SCHEME_UDP);
	assert_addr(&cfg->listen[0], "127.0.0.2:53");
	assert_int_equal(cfg->n_upstream, 2);
	assert_int_equal(cfg->n_fallback, 0);
	assert_int_equal(cfg->workers, 4);
	free(cfg);
}

/* A failed load changes nothing, not even the values before the error. */
static void test_load_error_keeps_cfg(void **state)
{
	dv_config_t *cfg = cfg_new(), *before = cfg_new();
	char path[64], err[512];

	assert_int_equal(load_text(cfg, good_yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	memcpy(before, cfg, sizeof(*cfg));
	assert_int_equal(load_text(cfg,
				   "workers: 7\n"
				   "listen: [ udp://127.0.0.1:1 ]\n"
				   "cache:\n"
				   "  size: 1K\n"
				   "  shards: 0\n",
				   path, sizeof(path), err, sizeof(err)),
			 DV_ECONFIG);
	assert_memory_equal(cfg, before, sizeof(*cfg));
	free(cfg);
	free(before);
}

typedef struct {
	const char *yaml;
	unsigned line;
	const char *key;    /* "" for syntax errors */
	const char *reason; /* substring of what follows "KEY: " */
} load_case_t;

static const load_case_t load_errors[] = {
	/* the policy's tables */
	{ "lists:\n  ads: { source: /x, format: regex }\n", 2, "lists.ads.format",
	  "expected one of hosts, domains, adblock" },
	{ "lists:\n  ads: { source: \"https:///l.txt\" }\n", 2,
	  "lists.ads.source", "a URL needs a host" },
	{ "lists:\n  ads: { source: \"ftp://x/l.txt\" }\n", 2,
	  "lists.ads.source", "a file path, or an http:// or https:// URL" },
	{ "lists:\n  ads: { source: /x, max-bytes: 10 }\n", 2,
	  "lists.ads.max-bytes", "" },
	{ "lists:\n  ads: { format: hosts }\n", 2, "lists.ads",
	  "source: is missing" },
	{ "lists:\n  ads: { source: /a }\n  ads: { source: /b }\n", 3,
	  "lists.ads", "duplicate name" },
	{ "lists:\n  a.b: { source: /a }\n", 2, "lists.a.b",
	  "letters, digits" },
	{ "lists:\n  ads: { source: /a, color: red }\n", 2,
	  "lists.ads.color", "unknown key" },
	{ "groups:\n  kids:\n    block: [nope]\n", 3, "groups.kids.block",
	  "unknown list 'nope'" },
	{ "groups:\n  kids:\n    action: [null, 192.0.2.1]\n", 3,
	  "groups.kids.action", "cannot be mixed" },
	{ "groups:\n  kids:\n    action: blackhole\n", 3,
	  "groups.kids.action", "expected nxdomain, nodata, refused, null" },
	{ "groups:\n  kids:\n    records: [\"x 300 IN A 192.0.2.1\"]\n", 3,
	  "groups.kids.records", "the owner name must be absolute" },
	{ "groups:\n  kids:\n    records:\n      - \"x. 1 IN A 192.0.2.1\"\n"
	  "      - \"x. 1 IN NS y.\"\n", 5,
	  "groups.kids.records", "type NS is not served locally" },
	/* refused before its RDATA is read: ldns's CERT reader leaks the
	 * algorithm it refuses (0) */
	{ "groups:\n  kids:\n    records: [\"x. IN CERT 0 0 0 AAAA\"]\n", 3,
	  "groups.kids.records", "type CERT is not served locally" },
	{ "groups:\n  kids:\n    records: [\"x. 30 CH TXT hi\"]\n", 3,
	  "groups.kids.records", "only class IN" },
	{ "groups:\n  kids:\n    records: [\"x. IN A 192.0.2\"]\n", 3,
	  "groups.kids.records", "could not parse" },
	{ "groups:\n  kids:\n    records:\n      - \"x. 1 IN A 192.0.2.1\"\n"
	  "      - \"X. 1 IN CNAME y.\"\n", 5,
	  "groups.kids.records", "a name with a CNAME has no other records "
	  "(line 4)" },
	{ "groups:\n  kids:\n    records:\n      - \"x. 1 IN CNAME z.\"\n"
	  "      - \"x. 1 IN CNAME y.\"\n", 5,
	  "groups.kids.records", "a name with a CNAME" },
	{ "groups:\n  kids:\n    records: { a: 1 }\n", 3,
	  "groups.kids.records", "expected a list of zone-file lines" },
	{ "groups:\n  kids:\n    blocked-ttl: 100000\n", 3,
	  "groups.kids.blocked-ttl", "out of range" },
	{ "groups:\n  kids:\n    upstream: [\"ftp://192.0.2.1:53\"]\n", 3,
	  "groups.kids.upstream", "unknown scheme 'ftp'" },
	{ "groups:\n  kids:\n    upstream: [\"tls://192.0.2.1:853\"]\n", 3,
	  "groups.kids.upstream", "#NAME" },
	{ "groups:\n  kids:\n    upstream: [tcp://192.0.2.1:53, "
	  "tcp://192.0.2.2:53, tcp://192.0.2.3:53, tcp://192.0.2.4:53, "
	  "tcp://192.0.2.5:53, tcp://192.0.2.6:53, tcp://192.0.2.7:53, "
	  "tcp://192.0.2.8:53, tcp://192.0.2.9:53]\n", 3,
	  "groups.kids.upstream", "too many URLs" },
	{ "groups:\n  kids:\n    block: []\n    fallback: "
	  "[\"tcp://192.0.2.1:53\"]\n", 4,
	  "groups.kids.fallback", "needs groups.kids.upstream" },
	{ "internal: [\".\"]\n", 1, "internal", "the root cannot be internal" },
	{ "internal: [\"a..b\"]\n", 1, "internal", "not a DNS name" },
	{ "pool:\n  refused-is-final: maybe\n", 2, "pool.refused-is-final",
	  "" },
	{ "clients:\n  - { id: \"kid_1\", group: default }\n", 2,
	  "clients.id", "a client ID" },
	{ "clients:\n  - { cidr: 10.0.0.0/33, group: default }\n", 2,
	  "clients.cidr", "prefix" },
	{ "clients:\n  - { id: kid-1 }\n", 2, "clients", "group: is missing" },
	{ "clients:\n  - { id: kid-1, group: nope }\n", 2, "clients.group",
	  "unknown group 'nope'" },
	{ "clients: { id: kid-1 }\n", 1, "clients",
	  "expected a list of mappings" },
	{ "policy:\n  server-names: [\"a..b\"]\n", 2, "policy.server-names",
	  "not a DNS name" },
	/* unknown keys */
	{ "workers: 2\nlog-level: debug\nbogus: 1\n", 3, "bogus",
	  "unknown key" },
	{ "limits:\n  tcp-max-inflight: 5\n  foo: 1\n", 3, "limits.foo",
	  "unknown key" },
	{ "cache:\n  size: 1M\n\n  tcp-max-inflight: 5\n", 4,
	  "cache.tcp-max-inflight", "unknown key" },
	{ "upstreams:\n  - tcp://127.0.0.1:53\n", 1, "upstreams",
	  "unknown key" },
	{ "Workers: 1\n", 1, "Workers", "unknown key" },
	/* wrong types */
	{ "workers: [1, 2]\n", 1, "workers", "expected a scalar, got a list" },
	{ "\nlog-level:\n  a: b\n", 3, "log-level",
	  "expected a scalar, got a mapping" },
	{ "tls:\n  cert: [x]\n", 2, "tls.cert",
	  "expected a string, got a list" },
	{ "listen:\n  a: b\n", 2, "listen",
	  "expected a list of URLs, got a mapping" },
	{ "listen:\n  - dns://127.0.0.1:53\n  - [a]\n", 3, "listen",
	  "expected a URL, got a list" },
	{ "limits: 5\n", 1, "limits", "expected a mapping of keys, got a scalar" },
	{ "pool:\n  - a\n", 2, "pool", "expected a mapping of keys, got a list" },
	{ "- a\n- b\n", 1, "(top level)",
	  "expected a mapping of keys, got a list" },
	{ "? [a]\n: 1\n", 1, "(top level)",
	  "keys must be plain strings, got a list" },
	{ "workers: &w 1\nlimits:\n  max-inflight: *w\n", 3,
	  "limits.max-inflight", "aliases are not supported" },
	{ "workers: 1\n---\nworkers: 2\n", 2, "(top level)",
	  "only one YAML document is allowed" },
	/* numbers */
	{ "pool:\n  connections: 65\n", 2, "pool.connections",
	  "'65': out of range 1..64" },
	{ "limits:\n  tcp-max-inflight: 0\n", 2, "limits.tcp-max-inflight",
	  "'0': out of range 1..65535" },
	{ "workers: 257\n", 1, "workers", "'257': out of range 0..256" },
	{ "cache:\n  stale-max-age-s: 604801\n", 2, "cache.stale-max-age-s",
	  "'604801': out of range 0..604800" },
	{ "cache:\n  stale-answer-timeout-ms: 30001\n", 2,
	  "cache.stale-answer-timeout-ms", "out of range 0..30000" },
	{ "cache:\n  servfail-ttl-s: 301\n", 2, "cache.servfail-ttl-s",
	  "out of range 0..300" },
	{ "cache:\n  prefetch-window-pct: 0\n", 2,
	  "cache.prefetch-window-pct", "out of range 1..50" },
	{ "cache:\n  prefetch-window-pct: 51\n", 2,
	  "cache.prefetch-window-pct", "out of range 1..50" },
	{ "workers: 99999999999999999999999\n", 1, "workers",
	  "out of range 0..256" },
	{ "workers: abc\n", 1, "workers", "'abc': not an unsigned integer" },
	{ "workers: -1\n", 1, "workers", "'-1': not an unsigned integer" },
	{ "workers: 0x10\n", 1, "workers", "not an unsigned integer" },
	{ "workers: 1.5\n", 1, "workers", "not an unsigned integer" },
	{ "workers:\n", 1, "workers", "missing value" },
	{ "cache:\n  min-ttl: 86401\n", 2, "cache.min-ttl",
	  "out of range 0..86400" },
	{ "cache:\n  max-ttl: 604801\n", 2, "cache.max-ttl",
	  "out of range 0..604800" },
	{ "limits:\n  tcp-max-output-bytes: 4095\n", 2,
	  "limits.tcp-max-output-bytes", "out of range 4096..67108864" },
	{ "pool:\n  reconnect-max-ms: 600001\n", 2, "pool.reconnect-max-ms",
	  "out of range 1..600000" },
	{ "cache:\n  size: 64MB\n", 2, "cache.size",
	  "'64MB': not a size (a number with an optional K, M or G suffix)" },
	{ "cache:\n  size: 65G\n", 2, "cache.size", "out of range 0..64G" },
	/* enums and strings */
	{ "log-level: verbose\n", 1, "log-level",
	  "'verbose': expected error, warn, info or debug" },
	{ "log-level: INFO\n", 1, "log-level", "expected error, warn" },
	{ "tls:\n  key: \"a\\0b\"\n", 2, "tls.key", "contains a NUL character" },
	{ "pool:\n  probe-name: \"bad name.\"\n", 2, "pool.probe-name",
	  "not a DNS name" },
	{ "pool:\n  probe-name: a..b\n", 2, "pool.probe-name",
	  "not a DNS name" },
	{ "pool:\n  slow-p95-ms: 60001\n", 2, "pool.slow-p95-ms",
	  "out of range 0..60000" },
	{ "pool:\n  degraded-failures: 17\n", 2, "pool.degraded-failures",
	  "out of range 0..16" },
	{ "workers: 1\n\"workers\\0x\": 2\n", 2, "workers",
	  "key contains a NUL character" },
	/* URLs: the line is the item's */
	{ "listen:\n  - dns://127.0.0.1:53\n  - ftp://x\n", 3, "listen",
	  "'ftp://x': unknown scheme 'ftp'" },
	{ "upstream:\n\n  - tls://1.1.1.1:853\n", 3, "upstream",
	  "tls:// upstream needs #NAME" },
	{ "fallback: [ \"http://1.2.3.4:80/x\" ]\n", 1, "fallback",
	  "scheme 'http' can only be used by listeners" },
	{ "listen: dns://127.0.0.1\n", 1, "listen", "port missing" },
	{ "listen: [ \"dns://localhost:53\" ]\n", 1, "listen",
	  "invalid address 'localhost'" },
	/* doh: lists and limits */
	{ "doh:\n  trusted-proxies:\n    - 127.0.0.1\n    - 300.1.2.3\n", 4,
	  "doh.trusted-proxies", "'300.1.2.3': not an IP address or prefix" },
	{ "doh:\n  trusted-proxies: [ \"192.0.2.0/33\" ]\n", 2,
	  "doh.trusted-proxies", "'192.0.2.0/33': prefix length must be 0..32" },
	{ "doh:\n  trusted-proxies: [ \"2001:db8::/129\" ]\n", 2,
	  "doh.trusted-proxies",
	  "'2001:db8::/129': prefix length must be 0..128" },
	{ "doh:\n  trusted-proxies: 192.0.2.0/\n", 2, "doh.trusted-proxies",
	  "'192.0.2.0/': not an IP address or prefix" },
	{ "doh:\n  trusted-proxies: [ localhost ]\n", 2, "doh.trusted-proxies",
	  "'localhost': not an IP address or prefix" },
	{ "doh:\n  trusted-proxies: [ \"\" ]\n", 2, "doh.trusted-proxies",
	  "'': not an IP address or prefix" },
	{ "doh:\n  trusted-proxies:\n    a: b\n", 3, "doh.trusted-proxies",
	  "expected a list of prefixes, got a mapping" },
	{ "doh:\n  trusted-proxies:\n    - [ 192.0.2.1 ]\n", 3,
	  "doh.trusted-proxies", "expected an IP address or prefix, got a list" },
	{ "doh:\n  paths: [ dns-query/kids ]\n", 2, "doh.paths",
	  "'dns-query/kids': must start with '/'" },
	{ "doh:\n  paths:\n    - /dns-query/kids\n    - \"/q?x=1\"\n", 4,
	  "doh.paths", "'/q?x=1': must not contain '?' or '#'" },
	{ "doh:\n  paths: [ \"/q#x\" ]\n", 2, "doh.paths",
	  "'/q#x': must not contain '?' or '#'" },
	{ "doh:\n  paths: [ \"/a b\" ]\n", 2, "doh.paths",
	  "'/a b': must not contain spaces or control characters" },
	{ "doh:\n  paths: [ \"/a\\tb\" ]\n", 2, "doh.paths",
	  "must not contain spaces or control characters" },
	{ "doh:\n  paths: [ \"\" ]\n", 2, "doh.paths",
	  "'': must start with '/'" },
	{ "doh:\n  paths: { a: b }\n", 2, "doh.paths",
	  "expected a list of paths, got a mapping" },
	{ "doh:\n  paths: [ [ /x ] ]\n", 2, "doh.paths",
	  "expected a path, got a list" },
	{ "doh:\n  paths: [ /x ]\n  paths: [ /y ]\n", 3, "doh.paths",
	  "duplicate key" },
	{ "doh:\n  max-streams: 0\n", 2, "doh.max-streams",
	  "'0': out of range 1..1000" },
	{ "doh:\n  max-streams: 1001\n", 2, "doh.max-streams",
	  "'1001': out of range 1..1000" },
	{ "doh:\n  max-header-bytes: 1023\n", 2, "doh.max-header-bytes",
	  "'1023': out of range 1024..65536" },
	{ "doh:\n  max-header-bytes: 65537\n", 2, "doh.max-header-bytes",
	  "'65537': out of range 1024..65536" },
	{ "doh:\n  max-header-bytes: 8K\n", 2, "doh.max-header-bytes",
	  "'8K': not an unsigned integer" },
	{ "doh:\n  paths: /x\n  bogus: 1\n", 3, "doh.bogus", "unknown key" },
	/* duplicates */
	{ "workers: 1\nworkers: 2\n", 2, "workers", "duplicate key" },
	{ "cache:\n  size: 1M\n  shards: 2\n  size: 2M\n", 4, "cache.size",
	  "duplicate key" },
	{ "cache:\n  shards: 2\nlimits: {}\ncache:\n  size: 1M\n", 4, "cache",
	  "duplicate key" },
	{ "listen: [ \"dns://127.0.0.1:53\" ]\nlisten: []\n", 2, "listen",
	  "duplicate key" },
	/* syntax errors: libyaml's problem text */
	{ "workers: 1\nlog-level: info\n- x\n", 3, "",
	  "syntax error: did not find expected key" },
	{ "workers: 1\nworkers 2\nlog-level: info\n", 2, "",
	  "syntax error: could not find expected ':' (while scanning a simple "
	  "key)" },
	{ "workers: 1\nlimits: { tcp-max-inflight: 1,\n\n", 4, "",
	  "syntax error: did not find expected node content (while parsing a "
	  "flow node)" },
	{ "workers: 1\nlog-level: \"a\\qb\"\n", 2, "",
	  "syntax error: found unknown escape character" },
	{ "limits:\n\ttcp-max-inflight: 5\n", 2, "",
	  "syntax error: found character that cannot start any token" },
	{ "listen: [ \"dns://127.0.0.1:53\"\nworkers: 1\n", 2, "",
	  "syntax error: did not find expected ',' or ']'" },
	{ "workers: 1\nlog-level: \"info\n", 3, "",
	  "syntax error: found unexpected end of stream" },
	{ "workers: 1\n\nlog-level: \xff\n", 3, "",
	  "syntax error: invalid leading UTF-8 octet" },
	{ "workers: 1\nlog-level: *nope\n", 2, "log-level",
	  "aliases are not supported" },
};

static void test_load_errors(void **state)
{
	dv_config_t *cfg = cfg_new();
	char path[64], err[512], want[128];

	for (size_t i = 0; i < ARRAY_LEN(load_errors); i++) {
		const load_case_t *c = &load_errors[i];
		int ret;

		dv_config_defaults(cfg);
		ret = load_text(cfg, c->yaml, path, sizeof(path), err,
				sizeof(err));
		if (c->key[0] != '\0')
			snprintf(want, sizeof(want), "%s:%u: %s: ", path,
				 c->line, c->key);
		else
			snprintf(want, sizeof(want), "%s:%u: ", path, c->line);
		if (ret != DV_ECONFIG || strncmp(err, want, strlen(want)) != 0 ||
		    strstr(err + strlen(want), c->reason) == NULL) {
			print_error("case %zu:\n%s\nwant %d '%s...%s'\n"
				    "got  %d '%s'\n",
				    i, c->yaml, DV_ECONFIG, want, c->reason,
				    ret, err);
			fail();
		}
	}
	free(cfg);
}

static void test_load_too_long_string(void **state)
{
	dv_config_t *cfg = cfg_new();
	char yaml[1024], path[64], err[1024];

	snprintf(yaml, sizeof(yaml), "workers: 1\ntls:\n  cert: /%0600d\n", 0);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, ":3: tls.cert: '/000");
	assert_contains(err, "': too long (at most 511 bytes)");

	/* 511 bytes fit */
	snprintf(yaml, sizeof(yaml), "tls:\n  ca: /%0510d\n", 0);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(strlen(cfg->tls_ca), 511);
	free(cfg);
}

static void test_load_too_many_urls(void **state)
{
	dv_config_t *cfg = cfg_new();
	char yaml[4096], path[64], err[512];
	size_t n;

	n = (size_t)snprintf(yaml, sizeof(yaml), "upstream:\n");
	for (int i = 0; i < DV_MAX_URLS + 1; i++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n,
				      "  - udp://127.0.0.1:%d\n", 1000 + i);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, ":34: upstream: 'udp://127.0.0.1:1032': too many "
			     "URLs (at most 32)");
	free(cfg);
}

/* doh.paths and doh.trusted-proxies: bounds, duplicates, replacement. */
/* admin.listen: http://ADDRESS:PORT with no path (or "/"); the rest of
 * the admin section's defaults. */
static void test_load_admin(void **state)
{
	(void)state;
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];

	assert_int_equal(cfg->n_admin_listen, 0); /* off by default */
	assert_int_equal(cfg->n_admin_allow, 0);  /* loopback only */
	assert_int_equal(cfg->admin_max_connections, 16);
	assert_int_equal(cfg->admin_timeout_ms, 5000);
	assert_int_equal(
		load_text(cfg,
			  "admin:\n  listen: [\"http://127.0.0.1:9153\", "
			  "\"http://[::1]:9153/\"]\n  allow: [192.0.2.0/24]\n",
			  path, sizeof(path), err, sizeof(err)),
		0);
	assert_int_equal(cfg->n_admin_listen, 2);
	assert_int_equal(cfg->admin_listen[0].scheme, DV_SCHEME_HTTP);
	assert_string_equal(cfg->admin_listen[0].path, "/");
	assert_addr(&cfg->admin_listen[0], "127.0.0.1:9153");
	assert_addr(&cfg->admin_listen[1], "[::1]:9153");
	assert_int_equal(cfg->n_admin_allow, 1);

	static const struct {
		const char *url, *why;
	} bad[] = {
		{"https://127.0.0.1:9153", "plain HTTP"},
		{"udp://127.0.0.1:9153", "plain HTTP"},
		{"http://127.0.0.1:9153/metrics", "takes no path"},
		{"http://localhost:9153", "localhost"},
		{"http://127.0.0.1", "port"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char yaml[256];
		snprintf(yaml, sizeof(yaml), "admin:\n  listen: \"%s\"\n",
			 bad[i].url);
		assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
					   sizeof(err)),
				 DV_ECONFIG);
		assert_contains(err, "admin.listen");
		assert_contains(err, bad[i].why);
	}
	free(cfg);
}

/* drain.delay-ms, drain.timeout-ms, user:, group: (the names are looked
 * up at start, src/daemon/privileges.c; here only their form). */
static void test_load_drain_user(void **state)
{
	(void)state;
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];

	assert_int_equal(cfg->drain_delay_ms, 5000);
	assert_int_equal(cfg->drain_timeout_ms, 10000);
	assert_string_equal(cfg->user, "");
	assert_string_equal(cfg->group, "");
	assert_int_equal(load_text(cfg,
				   "drain: {delay-ms: 0, timeout-ms: 100}\n"
				   "user: _dnsveil\ngroup: \"65534\"\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->drain_delay_ms, 0);
	assert_int_equal(cfg->drain_timeout_ms, 100);
	assert_string_equal(cfg->user, "_dnsveil");
	assert_string_equal(cfg->group, "65534");

	static const struct {
		const char *yaml, *why;
	} bad[] = {
		{"drain: {timeout-ms: 99}\n",
		 "drain.timeout-ms: '99': out of range"},
		{"drain: {delay-ms: 600001}\n", "drain.delay-ms: '600001'"},
		{"user: \"-rf\"\n", "user: '-rf': not a user or group name"},
		{"user: \"a b\"\n", "user: 'a b': not a user or group name"},
		{"group: \"x/y\"\n", "group: 'x/y': not a user or group"},
		{"user: \"12345678901\"\n", "not a user or group number"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(load_text(cfg, bad[i].yaml, path, sizeof(path),
					   err, sizeof(err)),
				 DV_ECONFIG);
		assert_contains(err, bad[i].why);
	}
	free(cfg);
}

static void test_load_doh_lists(void **state)
{
	dv_config_t *cfg = cfg_new();
	char yaml[8192], path[64], err[512];
	size_t n;

	/* 16 distinct paths, each said twice, fit */
	n = (size_t)snprintf(yaml, sizeof(yaml), "doh:\n  paths:\n");
	for (int i = 0; i < 2 * DV_DOH_MAX_PATHS; i++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n,
				      "    - /dns-query/g%d\n",
				      i % DV_DOH_MAX_PATHS);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(cfg->n_doh_paths, DV_DOH_MAX_PATHS);
	assert_string_equal(cfg->doh_paths[15], "/dns-query/g15");
	/* a 17th is one too many, on its own line */
	snprintf(yaml + n, sizeof(yaml) - n, "    - /dns-query/g16\n");
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, ":35: doh.paths: '/dns-query/g16': too many "
			     "paths (at most 16)");
	assert_int_equal(cfg->n_doh_paths, DV_DOH_MAX_PATHS); /* kept */

	/* 255 bytes fit, 256 do not */
	snprintf(yaml, sizeof(yaml), "doh:\n  paths: /%0254d\n", 0);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(cfg->n_doh_paths, 1);
	assert_int_equal(strlen(cfg->doh_paths[0]), 255);
	snprintf(yaml, sizeof(yaml), "doh:\n  paths: [ /%0255d ]\n", 0);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, ":2: doh.paths: '/000");
	assert_contains(err, "': too long (at most 255 bytes)");

	/* 32 prefixes fit (duplicates, also written differently, dropped),
	 * a 33rd does not */
	n = (size_t)snprintf(yaml, sizeof(yaml), "doh:\n  trusted-proxies:\n");
	for (int i = 0; i < DV_DOH_MAX_TRUSTED_PROXIES; i++)
		n += (size_t)snprintf(yaml + n, sizeof(yaml) - n,
				      "    - 2001:db8:%x::/48\n    - "
				      "2001:db8:%x::1/48\n",
				      i, i);
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(cfg->n_doh_trusted_proxies, DV_DOH_MAX_TRUSTED_PROXIES);
	assert_netmask(&cfg->doh_trusted_proxies[31], "2001:db8:1f::/48");
	snprintf(yaml + n, sizeof(yaml) - n, "    - 192.0.2.1\n");
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, ":67: doh.trusted-proxies: '192.0.2.1': too many "
			     "prefixes (at most 32)");

	/* one scalar is a list of one; a later file's list replaces the
	 * earlier one; null empties it; absent keys keep theirs */
	assert_int_equal(load_text(cfg,
				   "doh:\n"
				   "  paths: /dns-query/kids\n"
				   "  trusted-proxies: 198.51.100.0/24\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->n_doh_paths, 1);
	assert_string_equal(cfg->doh_paths[0], "/dns-query/kids");
	assert_int_equal(cfg->n_doh_trusted_proxies, 1);
	assert_netmask(&cfg->doh_trusted_proxies[0], "198.51.100.0/24");
	assert_int_equal(load_text(cfg, "doh:\n  paths: ~\n", path,
				   sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->n_doh_paths, 0);
	assert_int_equal(cfg->n_doh_trusted_proxies, 1);

	/* a list emptied again is the same bytes as one never filled */
	dv_config_t *def = cfg_new();
	assert_int_equal(load_text(cfg, "doh:\n  trusted-proxies: []\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	strcpy(def->source, cfg->source);
	assert_memory_equal(cfg, def, sizeof(*cfg));
	free(def);
	free(cfg);
}

static void test_load_missing_file(void **state)
{
	dv_config_t *cfg = cfg_new();
	char err[512];

	assert_int_equal(dv_config_load(cfg, "/nonexistent/dnsveil.yaml", err,
					sizeof(err)),
			 -ENOENT);
	assert_string_equal(err,
			    "/nonexistent/dnsveil.yaml: No such file or directory");
	assert_int_equal(dv_config_load(cfg, "/tmp", err, sizeof(err)),
			 -EISDIR);
	assert_string_equal(err, "/tmp: Is a directory");
	/* no room for a message is fine too */
	assert_int_equal(dv_config_load(cfg, "/nonexistent", NULL, 0),
			 -ENOENT);
	free(cfg);
}

static void test_load_buffer(void **state)
{
	static const char text[] = "workers: 3\ncache:\n  shards: 0\n";
	dv_config_t *cfg = cfg_new();
	char err[256];

	assert_int_equal(dv_config_load_buffer(cfg, "mem", text, 11, err,
					       sizeof(err)),
			 0);
	assert_int_equal(cfg->workers, 3);
	assert_string_equal(cfg->source, "mem");
	assert_int_equal(dv_config_load_buffer(cfg, "mem", text,
					       sizeof(text) - 1, err,
					       sizeof(err)),
			 DV_ECONFIG);
	assert_string_equal(err,
			    "mem:3: cache.shards: '0': out of range 1..4096");
	/* a short err buffer truncates, never overflows */
	assert_int_equal(dv_config_load_buffer(cfg, "mem", text,
					       sizeof(text) - 1, err, 8),
			 DV_ECONFIG);
	assert_string_equal(err, "mem:3: ");
	free(cfg);
}

/* ------------------------------------------------------------------ */
/* sizes                                                               */

static void test_sizes(void **state)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} good[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "4096", 4096 },
		{ "64K", 64ULL << 10 },
		{ "64k", 64ULL << 10 },
		{ "64M", 64ULL << 20 },
		{ "2G", 2ULL << 30 },
		{ "64G", 64ULL << 30 },
		{ "\"512M\"", 512ULL << 20 },
		{ "68719476736", 64ULL << 30 },
	};
	static const char *const bad[] = {
		"64MB", "M", "1T", "-1", "64 M", "0x10", "1.5G", "65G",
		"68719476737", "99999999999999999999G", "17179869184G",
	};
	dv_config_t *cfg = cfg_new();
	char yaml[128], path[64], err[512];

	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		snprintf(yaml, sizeof(yaml), "cache:\n  size: %s\n",
			 good[i].text);
		if (load_text(cfg, yaml, path, sizeof(path), err,
			      sizeof(err)) != 0) {
			print_error("'%s': %s\n", good[i].text, err);
			fail();
		}
		assert_true(cfg->cache_size_bytes == good[i].bytes);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		snprintf(yaml, sizeof(yaml), "cache:\n  size: %s\n", bad[i]);
		if (load_text(cfg, yaml, path, sizeof(path), err,
			      sizeof(err)) != DV_ECONFIG) {
			print_error("'%s' was accepted\n", bad[i]);
			fail();
		}
		assert_contains(err, ":2: cache.size: '");
	}
	free(cfg);
}

/* ------------------------------------------------------------------ */
/* URLs                                                                */

typedef struct {
	const char *text;
	dv_url_role_t role;
	dv_scheme_t scheme;
	int family;
	const char *addr;
	const char *path;
	const char *name;
} url_case_t;

static const url_case_t url_good[] = {
	{ "udp://127.0.0.1:53", DV_URL_LISTEN, DV_SCHEME_UDP, AF_INET,
	  "127.0.0.1:53", "", "" },
	{ "tcp://[::1]:5335", DV_URL_UPSTREAM, DV_SCHEME_TCP, AF_INET6,
	  "[::1]:5335", "", "" },
	{ "dns://0.0.0.0:53", DV_URL_LISTEN, DV_SCHEME_DNS, AF_INET,
	  "0.0.0.0:53", "", "" },
	{ "tls://127.0.0.1:853", DV_URL_LISTEN, DV_SCHEME_TLS, AF_INET,
	  "127.0.0.1:853", "", "" },
	{ "https://127.0.0.1:8443/dns-query", DV_URL_LISTEN, DV_SCHEME_HTTPS,
	  AF_INET, "127.0.0.1:8443", "/dns-query", "" },
	{ "http://[::]:80/q", DV_URL_LISTEN, DV_SCHEME_HTTP, AF_INET6,
	  "[::]:80", "/q", "" },
	{ "quic://[2001:db8::1]:853", DV_URL_LISTEN, DV_SCHEME_QUIC, AF_INET6,
	  "[2001:db8::1]:853", "", "" },
	{ "udp://9.9.9.9:65535", DV_URL_UPSTREAM, DV_SCHEME_UDP, AF_INET,
	  "9.9.9.9:65535", "", "" },
	{ "tls://1.1.1.1:853#cloudflare-dns.com", DV_URL_UPSTREAM,
	  DV_SCHEME_TLS, AF_INET, "1.1.1.1:853", "", "cloudflare-dns.com" },
	{ "https://8.8.8.8:443/dns-query#dns.google", DV_URL_UPSTREAM,
	  DV_SCHEME_HTTPS, AF_INET, "8.8.8.8:443", "/dns-query",
	  "dns.google" },
	{ "https://[2606:4700:4700::1111]:443/dns-query#cloudflare-dns.com",
	  DV_URL_UPSTREAM, DV_SCHEME_HTTPS, AF_INET6,
	  "[2606:4700:4700::1111]:443", "/dns-query", "cloudflare-dns.com" },
	{ "quic://94.140.14.14:853#dns.adguard.com", DV_URL_UPSTREAM,
	  DV_SCHEME_QUIC, AF_INET, "94.140.14.14:853", "", "dns.adguard.com" },
	{ "TCP://127.0.0.1:1", DV_URL_UPSTREAM, DV_SCHEME_TCP, AF_INET,
	  "127.0.0.1:1", "", "" },
};

typedef struct {
	const char *text;
	dv_url_role_t role;
	const char *err;
} url_bad_t;

static const url_bad_t url_bad[] = {
	{ "", DV_URL_LISTEN, "empty URL" },
	{ "127.0.0.1:53", DV_URL_LISTEN, "missing scheme" },
	{ "ftp://1.2.3.4:21", DV_URL_LISTEN, "unknown scheme 'ftp'" },
	{ "://1.2.3.4:21", DV_URL_LISTEN, "unknown scheme ''" },
	{ "dns://1.2.3.4:53", DV_URL_UPSTREAM,
	  "scheme 'dns' can only be used by listeners" },
	{ "http://1.2.3.4:80/x", DV_URL_UPSTREAM,
	  "scheme 'http' can only be used by listeners" },
	{ "udp://localhost:53", DV_URL_UPSTREAM,
	  "invalid address 'localhost' (IP literals only, no host names)" },
	{ "udp://1.2.3:53", DV_URL_LISTEN, "invalid address '1.2.3'" },
	{ "udp://[1.2.3.4]:53", DV_URL_LISTEN, "invalid address '1.2.3.4'" },
	{ "udp://[fe80::1%eth0]:53", DV_URL_LISTEN, "invalid address" },
	{ "udp://1.2.3.4", DV_URL_LISTEN, "port missing" },
	{ "udp://1.2.3.4:", DV_URL_LISTEN, "port missing" },
	{ "udp://[::1]", DV_URL_LISTEN, "port missing" },
	{ "udp://[::1]53", DV_URL_LISTEN, "port missing" },
	{ "udp://1.2.3.4:0", DV_URL_LISTEN, "invalid port '0'" },
	{ "udp://1.2.3.4:65536", DV_URL_LISTEN, "invalid port '65536'" },
	{ "udp://1.2.3.4:5x", DV_URL_LISTEN, "invalid port '5x'" },
	{ "udp://1.2.3.4:-53", DV_URL_LISTEN, "invalid port '-53'" },
	{ "udp://:53", DV_URL_LISTEN, "address missing" },
	{ "udp://[]:53", DV_URL_LISTEN, "address missing" },
	{ "udp://::1:53", DV_URL_LISTEN,
	  "IPv6 address must be in brackets, e.g. [::1]:53" },
	{ "udp://[::1:53", DV_URL_LISTEN, "missing ']' after IPv6 address" },
	{ "https://127.0.0.1:443", DV_URL_LISTEN,
	  "https:// needs a path, e.g. https://127.0.0.1:443/dns-query" },
	{ "http://[::1]:80", DV_URL_LISTEN,
	  "http:// needs a path, e.g. http://[::1]:80/dns-query" },
	{ "https://8.8.8.8:443#dns.google", DV_URL_UPSTREAM,
	  "https:// needs a path" },
	{ "tcp://127.0.0.1:53/x", DV_URL_UPSTREAM, "tcp:// takes no path" },
	{ "quic://127.0.0.1:853/", DV_URL_LISTEN, "quic:// takes no path" },
	{ "https://1.2.3.4:443/a b", DV_URL_LISTEN, "invalid character in path" },
	{ "https://1.2.3.4:443/q?dns=x", DV_URL_LISTEN,
	  "invalid character in path" },
	{ "tls://1.1.1.1:853", DV_URL_UPSTREAM,
	  "tls:// upstream needs #NAME, the name its certificate must match "
	  "(e.g. tls://1.1.1.1:853#cloudflare-dns.com)" },
	{ "quic://1.1.1.1:853#", DV_URL_UPSTREAM, "quic:// upstream needs #NAME" },
	{ "https://1.1.1.1:443/dns-query", DV_URL_UPSTREAM,
	  "https:// upstream needs #NAME" },
	{ "tls://127.0.0.1:853#x", DV_URL_LISTEN,
	  "#NAME is only for tls://, https:// and quic:// upstreams" },
	{ "tcp://1.1.1.1:53#x", DV_URL_UPSTREAM,
	  "#NAME is only for tls://, https:// and quic:// upstreams" },
	{ "udp://1.1.1.1:53#", DV_URL_UPSTREAM, "#NAME is only for" },
	{ "tls://1.1.1.1:853#bad name!", DV_URL_UPSTREAM,
	  "invalid #NAME 'bad name!'" },
	{ "tls://1.1.1.1:853#a#b", DV_URL_UPSTREAM, "invalid #NAME 'a#b'" },
	{ "udp://user@1.2.3.4:53", DV_URL_LISTEN, "invalid address" },
	{ " udp://1.2.3.4:53", DV_URL_LISTEN, "unknown scheme ' udp'" },
	{ "udp://1.2.3.4:53 ", DV_URL_LISTEN, "invalid port '53 '" },
};

/* ?proxy-protocol: a flag of tcp/tls/http/https listeners, cut from the
 * path; anywhere else an error. */
static void test_url_proxy_protocol(void **state)
{
	static const char *const good[] = {
		"tcp://127.0.0.1:53?proxy-protocol",
		"tls://[::1]:853?proxy-protocol",
		"https://127.0.0.1:443/dns-query?proxy-protocol",
		"http://127.0.0.1:80/dns-query?proxy-protocol",
	};
	static const char *const bad[] = {
		"udp://127.0.0.1:53?proxy-protocol",
		"dns://127.0.0.1:53?proxy-protocol",
		"quic://127.0.0.1:853?proxy-protocol",
	};
	char err[256];
	dv_url_t u;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		memset(&u, 0xa5, sizeof(u));
		assert_int_equal(dv_url_parse(good[i], DV_URL_LISTEN, &u, err,
					      sizeof(err)),
				 0);
		assert_true(u.proxy_protocol);
		assert_null(strchr(u.path, '?'));
	}
	assert_int_equal(dv_url_parse("tls://127.0.0.1:853", DV_URL_LISTEN,
				      &u, err, sizeof(err)),
			 0);
	assert_false(u.proxy_protocol);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(dv_url_parse(bad[i], DV_URL_LISTEN, &u, err,
					      sizeof(err)),
				 DV_ECONFIG);
		assert_non_null(strstr(err, "?proxy-protocol is only for"));
	}
	assert_int_equal(dv_url_parse("tcp://127.0.0.1:53?proxy-protocol",
				      DV_URL_UPSTREAM, &u, err, sizeof(err)),
			 DV_ECONFIG);
}

static void test_url_good(void **state)
{
	char err[256];
	dv_url_t u;

	for (size_t i = 0; i < ARRAY_LEN(url_good); i++) {
		const url_case_t *c = &url_good[i];

		memset(&u, 0xa5, sizeof(u));
		if (dv_url_parse(c->text, c->role, &u, err, sizeof(err)) != 0) {
			print_error("'%s': %s\n", c->text, err);
			fail();
		}
		assert_int_equal(u.scheme, c->scheme);
		assert_int_equal(u.addr.ss_family, c->family);
		assert_int_equal(u.addr_len,
				 c->family == AF_INET
					 ? sizeof(struct sockaddr_in)
					 : sizeof(struct sockaddr_in6));
		assert_addr(&u, c->addr);
		assert_string_equal(u.path, c->path);
		assert_string_equal(u.name, c->name);
		assert_string_equal(u.text, c->text);
	}
}

static void test_url_port_byte_order(void **state)
{
	char err[256];
	dv_url_t u;

	assert_int_equal(dv_url_parse("udp://10.0.0.1:5353", DV_URL_LISTEN,
				      &u, err, sizeof(err)),
			 0);
	const struct sockaddr_in *in = (const struct sockaddr_in *)&u.addr;
	const uint8_t *port = (const uint8_t *)&in->sin_port;
	const uint8_t *addr = (const uint8_t *)&in->sin_addr;
	assert_int_equal(port[0], 5353 >> 8);
	assert_int_equal(port[1], 5353 & 0xff);
	assert_int_equal(addr[0], 10);
	assert_int_equal(addr[3], 1);
}

static void test_url_bad(void **state)
{
	char err[256];
	dv_url_t u, orig;

	memset(&orig, 0x5a, sizeof(orig));
	for (size_t i = 0; i < ARRAY_LEN(url_bad); i++) {
		const url_bad_t *c = &url_bad[i];

		err[0] = '\0';
		u = orig;
		if (dv_url_parse(c->text, c->role, &u, err, sizeof(err)) !=
			    DV_ECONFIG ||
		    strstr(err, c->err) == NULL) {
			print_error("'%s': want '%s', got '%s'\n", c->text,
				    c->err, err);
			fail();
		}
		/* the output is untouched on error */
		assert_memory_equal(&u, &orig, sizeof(u));
	}
}

static void test_url_lengths(void **state)
{
	char text[1024], err[256];
	dv_url_t u;
	int n;

	memset(text, 'a', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	assert_int_equal(dv_url_parse(text, DV_URL_LISTEN, &u, err, sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, "URL too long (at most 511 characters)");

	/* path: 255 characters fit, 256 do not */
	n = snprintf(text, sizeof(text), "https://1.2.3.4:443/");
	memset(text + n, 'p', 254);
	text[n + 254] = '\0';
	assert_int_equal(dv_url_parse(text, DV_URL_LISTEN, &u, err, sizeof(err)),
			 0);
	assert_int_equal(strlen(u.path), 255);
	strcat(text, "p");
	assert_int_equal(dv_url_parse(text, DV_URL_LISTEN, &u, err, sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, "path too long");

	/* name: 253 characters at most */
	n = snprintf(text, sizeof(text), "tls://1.2.3.4:853#");
	memset(text + n, 'n', 253);
	text[n + 253] = '\0';
	assert_int_equal(
		dv_url_parse(text, DV_URL_UPSTREAM, &u, err, sizeof(err)), 0);
	strcat(text, "n");
	assert_int_equal(
		dv_url_parse(text, DV_URL_UPSTREAM, &u, err, sizeof(err)),
		DV_ECONFIG);
	assert_contains(err, "invalid #NAME");
}

static void test_addr_format_and_scheme_names(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	char buf[64];

	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(853);
	in6->sin6_addr.s6_addr[15] = 1;
	dv_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_string_equal(buf, "[::1]:853");
	dv_addr_format((struct sockaddr *)&ss, buf, 4);
	assert_string_equal(buf, "[::");
	ss.ss_family = AF_UNIX;
	dv_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
	assert_contains(buf, "family");

	assert_string_equal(dv_scheme_name(DV_SCHEME_UDP), "udp");
	assert_string_equal(dv_scheme_name(DV_SCHEME_TCP), "tcp");
	assert_string_equal(dv_scheme_name(DV_SCHEME_DNS), "dns");
	assert_string_equal(dv_scheme_name(DV_SCHEME_TLS), "tls");
	assert_string_equal(dv_scheme_name(DV_SCHEME_HTTPS), "https");
	assert_string_equal(dv_scheme_name(DV_SCHEME_HTTP), "http");
	assert_string_equal(dv_scheme_name(DV_SCHEME_QUIC), "quic");
	assert_string_equal(dv_scheme_name(DV_SCHEME_COUNT), "?");
	assert_string_equal(dv_scheme_name((dv_scheme_t)-1), "?");
}

/* ------------------------------------------------------------------ */
/* validation                                                          */

static const bool all_impl[DV_SCHEME_COUNT] = {
	true, true, true, true, true, true, true,
};

static void add_url(dv_url_t *list, unsigned *n, const char *text,
		    dv_url_role_t role)
{
	char err[256];

	if (dv_url_parse(text, role, &list[*n], err, sizeof(err)) != 0) {
		print_error("'%s': %s\n", text, err);
		fail();
	}
	(*n)++;
}

static dv_config_t *cfg_minimal(void)
{
	dv_config_t *cfg = cfg_new();

	add_url(cfg->listen, &cfg->n_listen, "dns://127.0.0.1:53",
		DV_URL_LISTEN);
	add_url(cfg->upstream, &cfg->n_upstream, "tcp://127.0.0.1:5335",
		DV_URL_UPSTREAM);
	return cfg;
}

static void assert_invalid(const dv_config_t *cfg, const bool *li,
			   const bool *ui, const char *want)
{
	char err[512] = "";
	int ret = dv_config_validate(cfg, li, ui, err, sizeof(err));

	if (ret != DV_ECONFIG || strcmp(err, want) != 0) {
		print_error("want '%s'\ngot %d '%s'\n", want, ret, err);
		fail();
	}
}

static void test_validate_lists(void **state)
{
	dv_config_t *cfg = cfg_new();
	bool li[DV_SCHEME_COUNT], ui[DV_SCHEME_COUNT];
	char err[512];

	assert_invalid(cfg, all_impl, all_impl,
		       "command line: --listen: no listener (set listen: in the "
		       "config file or give --listen)");
	strcpy(cfg->source, "/etc/dnsveil.yaml");
	add_url(cfg->listen, &cfg->n_listen, "dns://127.0.0.1:53",
		DV_URL_LISTEN);
	assert_invalid(cfg, all_impl, all_impl,
		       "/etc/dnsveil.yaml: upstream: no upstream (set "
		       "upstream: in the config file or give --upstream)");
	add_url(cfg->upstream, &cfg->n_upstream, "tcp://127.0.0.1:5335",
		DV_URL_UPSTREAM);
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);
	assert_int_equal(dv_config_validate(cfg, NULL, NULL, err, sizeof(err)),
			 0);

	/* schemes this build does not serve yet */
	memcpy(li, all_impl, sizeof(li));
	memcpy(ui, all_impl, sizeof(ui));
	li[DV_SCHEME_TLS] = false;
	ui[DV_SCHEME_QUIC] = false;
	add_url(cfg->listen, &cfg->n_listen, "tls://127.0.0.1:853",
		DV_URL_LISTEN);
	assert_invalid(cfg, li, ui,
		       "/etc/dnsveil.yaml: listen: listener "
		       "'tls://127.0.0.1:853': scheme 'tls' is not "
		       "implemented yet");
	cfg->cli_set |= DV_CLI_SET_LISTEN;
	assert_invalid(cfg, li, ui,
		       "command line: --listen: listener "
		       "'tls://127.0.0.1:853': scheme 'tls' is not "
		       "implemented yet");
	cfg->n_listen = 1;
	add_url(cfg->fallback, &cfg->n_fallback,
		"quic://94.140.14.14:853#dns.adguard.com", DV_URL_UPSTREAM);
	assert_invalid(cfg, li, ui,
		       "/etc/dnsveil.yaml: fallback: fallback "
		       "'quic://94.140.14.14:853#dns.adguard.com': scheme "
		       "'quic' is not implemented yet");
	add_url(cfg->upstream, &cfg->n_upstream, "quic://10.0.0.1:853#r.lan",
		DV_URL_UPSTREAM);
	cfg->cli_set |= DV_CLI_SET_UPSTREAM;
	assert_invalid(cfg, li, ui,
		       "command line: --upstream: upstream "
		       "'quic://10.0.0.1:853#r.lan': scheme 'quic' is not "
		       "implemented yet");
	free(cfg);
}

static void test_validate_duplicate_listeners(void **state)
{
	static const struct {
		const char *a, *b;
		bool conflict;
	} cases[] = {
		{ "dns://127.0.0.1:53", "udp://127.0.0.1:53", true },
		{ "dns://127.0.0.1:53", "tcp://127.0.0.1:53", true },
		{ "tls://127.0.0.1:853", "tcp://127.0.0.1:853", true },
		{ "quic://127.0.0.1:853", "udp://127.0.0.1:853", true },
		{ "tls://127.0.0.1:853", "quic://127.0.0.1:853", false },
		{ "udp://127.0.0.1:53", "tcp://127.0.0.1:53", false },
		{ "dns://127.0.0.1:53", "dns://127.0.0.2:53", false },
		{ "dns://127.0.0.1:53", "dns://[::1]:53", false },
		{ "https://[::1]:443/a", "https://[::1]:443/b", true },
	};
	char err[512];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		dv_config_t *cfg = cfg_minimal();
		int ret;

		cfg->n_listen = 0;
		add_url(cfg->listen, &cfg->n_listen, cases[i].a, DV_URL_LISTEN);
		add_url(cfg->listen, &cfg->n_listen, cases[i].b, DV_URL_LISTEN);
		strcpy(cfg->tls_cert, "/dev/null");
		strcpy(cfg->tls_key, "/dev/null");
		ret = dv_config_validate(cfg, all_impl, all_impl, err,
					 sizeof(err));
		if (ret != (cases[i].conflict ? DV_ECONFIG : 0)) {
			print_error("'%s' + '%s': %d '%s'\n", cases[i].a,
				    cases[i].b, ret, err);
			fail();
		}
		if (cases[i].conflict)
			assert_contains(err, "binds the same address as");
		free(cfg);
	}
}

static void test_validate_tls_files(void **state)
{
	dv_config_t *cfg = cfg_minimal();
	char cert[64], key[64], err[512];

	write_tmp("cert\n", cert, sizeof(cert));
	write_tmp("key\n", key, sizeof(key));

	/* a dns:// listener needs no certificate */
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);

	add_url(cfg->listen, &cfg->n_listen, "https://127.0.0.1:443/dns-query",
		DV_URL_LISTEN);
	assert_invalid(cfg, all_impl, all_impl,
		       "command line: --tls-cert: not set, but listener "
		       "'https://127.0.0.1:443/dns-query' needs it");
	strcpy(cfg->source, "dnsveil.yaml");
	assert_invalid(cfg, all_impl, all_impl,
		       "dnsveil.yaml: tls.cert: not set, but listener "
		       "'https://127.0.0.1:443/dns-query' needs it");
	strcpy(cfg->tls_cert, "/nonexistent/cert.pem");
	assert_invalid(cfg, all_impl, all_impl,
		       "dnsveil.yaml: tls.cert: '/nonexistent/cert.pem': No "
		       "such file or directory");
	cfg->cli_set |= DV_CLI_SET_TLS_CERT;
	assert_invalid(cfg, all_impl, all_impl,
		       "command line: --tls-cert: '/nonexistent/cert.pem': No "
		       "such file or directory");
	strcpy(cfg->tls_cert, cert);
	assert_invalid(cfg, all_impl, all_impl,
		       "dnsveil.yaml: tls.key: not set, but listener "
		       "'https://127.0.0.1:443/dns-query' needs it");
	strcpy(cfg->tls_key, key);
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);

	/* quic:// listener alone needs them too */
	cfg->n_listen = 0;
	add_url(cfg->listen, &cfg->n_listen, "quic://[::1]:853",
		DV_URL_LISTEN);
	cfg->tls_key[0] = '\0';
	assert_contains(
		(dv_config_validate(cfg, all_impl, all_impl, err, sizeof(err)),
		 err),
		"tls.key: not set, but listener 'quic://[::1]:853' needs it");
	strcpy(cfg->tls_key, key);

	/* tls.ca, when set, must be readable */
	strcpy(cfg->tls_ca, "/nonexistent/ca.pem");
	assert_invalid(cfg, all_impl, all_impl,
		       "dnsveil.yaml: tls.ca: '/nonexistent/ca.pem': No such "
		       "file or directory");
	cfg->cli_set |= DV_CLI_SET_TLS_CA;
	assert_invalid(cfg, all_impl, all_impl,
		       "command line: --ca: '/nonexistent/ca.pem': No such "
		       "file or directory");

	unlink(cert);
	unlink(key);
	free(cfg);
}

static void test_validate_ranges(void **state)
{
	dv_config_t *cfg = cfg_minimal();
	char err[512];

	strcpy(cfg->source, "x.yaml");
	cfg->reconnect_min_ms = 6000;
	assert_invalid(cfg, all_impl, all_impl,
		       "x.yaml: pool.reconnect-min-ms: 6000 is greater than "
		       "pool.reconnect-max-ms (5000)");
	cfg->reconnect_min_ms = 5000;
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);
	cfg->cache_min_ttl = 600;
	cfg->cache_max_ttl = 60;
	assert_invalid(cfg, all_impl, all_impl,
		       "x.yaml: cache.min-ttl: 600 is greater than "
		       "cache.max-ttl (60)");
	free(cfg);
}

/* ------------------------------------------------------------------ */
/* command line                                                        */

/* ARGV("--a", "b") expands to `argc, argv` for dv_cli_parse/_apply. */
#define ARGV(...)                                                            \
	(int)(sizeof((char *[]){ "dnsveil", __VA_ARGS__ }) / sizeof(char *)), \
		(char *[]){ "dnsveil", __VA_ARGS__, NULL }

static void test_cli_parse_records(void **state)
{
	dv_cli_t cli;
	char err[256];

	assert_int_equal(dv_cli_parse(1, (char *[]){ "dnsveil", NULL }, &cli, err,
			       sizeof(err)),
			 0);
	assert_null(cli.config_path);
	assert_false(cli.check_config || cli.version || cli.help ||
		     cli.help_config);

	assert_int_equal(dv_cli_parse(ARGV("-c", "x.yaml", "--check-config"), &cli,
			       err, sizeof(err)),
			 0);
	assert_string_equal(cli.config_path, "x.yaml");
	assert_true(cli.check_config);
	assert_false(cli.version || cli.help);

	assert_int_equal(dv_cli_parse(ARGV("--listen", "udp://127.0.0.1:53",
				    "--config=y.yaml", "--version",
				    "--workers", "abc"),
			       &cli, err, sizeof(err)),
			 0);
	assert_string_equal(cli.config_path, "y.yaml");
	assert_true(cli.version);
	assert_false(cli.check_config);

	assert_int_equal(dv_cli_parse(ARGV("-h"), &cli, err, sizeof(err)), 0);
	assert_true(cli.help);
	assert_int_equal(dv_cli_parse(ARGV("--help"), &cli, err, sizeof(err)), 0);
	assert_true(cli.help);
	assert_int_equal(dv_cli_parse(ARGV("--help-config"), &cli, err, sizeof(err)),
			 0);
	assert_true(cli.help_config);
	assert_int_equal(dv_cli_parse(ARGV("--config", "a b.yaml", "--check-config"),
			       &cli, err, sizeof(err)),
			 0);
	assert_string_equal(cli.config_path, "a b.yaml");
}

static void test_cli_parse_errors(void **state)
{
	static const struct {
		char *argv[6];
		const char *err;
	} cases[] = {
		{ { "dnsveil", "--foo" }, "unknown option '--foo'" },
		{ { "dnsveil", "--foo=bar" }, "unknown option '--foo'" },
		{ { "dnsveil", "-x" }, "unknown option '-x'" },
		{ { "dnsveil", "--listen-x", "a" },
		  "unknown option '--listen-x'" },
		{ { "dnsveil", "--workers" }, "--workers: missing argument" },
		{ { "dnsveil", "-c" }, "-c: missing argument" },
		{ { "dnsveil", "--listen", "--upstream", "tcp://1.2.3.4:53" },
		  "--listen: missing argument" },
		{ { "dnsveil", "--listen=" }, "--listen: empty argument" },
		{ { "dnsveil", "--tls-key", "" }, "--tls-key: empty argument" },
		{ { "dnsveil", "stray" }, "unexpected argument 'stray'" },
		{ { "dnsveil", "--check-config", "--", "x" },
		  "unexpected argument '--'" },
		{ { "dnsveil", "-" }, "unexpected argument '-'" },
		{ { "dnsveil", "--version=1" }, "--version: takes no argument" },
		{ { "dnsveil", "-c", "a", "--config", "b" },
		  "-c/--config: given more than once" },
	};
	dv_cli_t cli;
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char **argv = (char **)cases[i].argv;
		int argc = 0;

		while (argc < 6 && argv[argc] != NULL)
			argc++;
		err[0] = '\0';
		if (dv_cli_parse(argc, argv, &cli, err, sizeof(err)) !=
			    DV_ECONFIG ||
		    strcmp(err, cases[i].err) != 0) {
			print_error("case %zu: want '%s', got '%s'\n", i,
				    cases[i].err, err);
			fail();
		}
	}
}

static dv_config_t *cfg_from_file(void)
{
	dv_config_t *cfg = cfg_new();
	char err[512];
	static const char text[] =
		"workers: 2\n"
		"listen: [ \"dns://127.0.0.1:53\", \"tls://127.0.0.1:853\" ]\n"
		"upstream: [ \"tcp://127.0.0.1:5335\" ]\n"
		"fallback: [ \"tcp://1.1.1.1:53\", \"tcp://9.9.9.9:53\" ]\n"
		"tls: { cert: file.pem, key: file.key }\n";

	assert_int_equal(dv_config_load_buffer(cfg, "file.yaml", text,
					       strlen(text), err, sizeof(err)),
			 0);
	return cfg;
}

static void test_cli_apply_listen(void **state)
{
	dv_config_t *cfg = cfg_from_file();
	char *argv[] = { "dnsveil",
			 "-c",
			 "file.yaml",
			 "--listen",
			 "udp://127.0.0.1:5300",
			 "--check-config",
			 "--workers=4",
			 "--listen=tcp://[::1]:5300",
			 "--tls-cert",
			 "cli.pem",
			 NULL };
	char *copy[ARRAY_LEN(argv)];
	char text[ARRAY_LEN(argv)][64];
	int argc = (int)ARRAY_LEN(argv) - 1;
	dv_cli_t cli;
	char err[256];

	for (int i = 0; i < argc; i++) {
		copy[i] = argv[i];
		snprintf(text[i], sizeof(text[i]), "%s", argv[i]);
	}
	assert_int_equal(dv_cli_parse(argc, argv, &cli, err, sizeof(err)), 0);
	assert_int_equal(dv_cli_apply(argc, argv, cfg, err, sizeof(err)), 0);
	/* argv is read, never changed */
	for (int i = 0; i < argc; i++) {
		assert_ptr_equal(argv[i], copy[i]);
		assert_string_equal(argv[i], text[i]);
	}
	assert_null(argv[argc]);

	assert_int_equal(cfg->n_listen, 2);
	assert_int_equal(cfg->listen[0].scheme, DV_SCHEME_UDP);
	assert_addr(&cfg->listen[0], "127.0.0.1:5300");
	assert_int_equal(cfg->listen[1].scheme, DV_SCHEME_TCP);
	assert_addr(&cfg->listen[1], "[::1]:5300");
	assert_int_equal(cfg->n_upstream, 1);
	assert_int_equal(cfg->n_fallback, 2);
	assert_int_equal(cfg->workers, 4);
	assert_string_equal(cfg->tls_cert, "cli.pem");
	assert_string_equal(cfg->tls_key, "file.key");
	assert_int_equal(cfg->cli_set, DV_CLI_SET_LISTEN | DV_CLI_SET_WORKERS |
					       DV_CLI_SET_TLS_CERT);
	assert_string_equal(cfg->source, "file.yaml");
	free(cfg);
}

static void test_cli_apply_upstreams(void **state)
{
	dv_config_t *cfg = cfg_from_file();
	char err[256];
	char **argv;
	int argc;

	argv = (char *[]){ "dnsveil",
			   "--fallback",
			   "tls://1.1.1.1:853#cloudflare-dns.com",
			   "--upstream=udp://[::1]:5335",
			   "--fallback",
			   "https://8.8.8.8:443/dns-query#dns.google",
			   "--fallback=quic://94.140.14.14:853#dns.adguard.com",
			   "--tls-key",
			   "k.pem",
			   "--ca",
			   "/etc/ssl/certs/ca-certificates.crt",
			   NULL };
	argc = 11;
	assert_int_equal(dv_cli_apply(argc, argv, cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->n_listen, 2);
	assert_int_equal(cfg->n_upstream, 1);
	assert_int_equal(cfg->upstream[0].scheme, DV_SCHEME_UDP);
	assert_addr(&cfg->upstream[0], "[::1]:5335");
	assert_int_equal(cfg->n_fallback, 3);
	assert_string_equal(cfg->fallback[0].name, "cloudflare-dns.com");
	assert_string_equal(cfg->fallback[1].path, "/dns-query");
	assert_int_equal(cfg->fallback[2].scheme, DV_SCHEME_QUIC);
	assert_string_equal(cfg->tls_key, "k.pem");
	assert_string_equal(cfg->tls_ca, "/etc/ssl/certs/ca-certificates.crt");
	assert_int_equal(cfg->workers, 2);
	assert_int_equal(cfg->cli_set, DV_CLI_SET_UPSTREAM |
					       DV_CLI_SET_FALLBACK |
					       DV_CLI_SET_TLS_KEY |
					       DV_CLI_SET_TLS_CA);

	/* applying nothing changes nothing */
	dv_config_t *before = malloc(sizeof(*before));
	assert_non_null(before);
	memcpy(before, cfg, sizeof(*cfg));
	assert_int_equal(dv_cli_apply(1, (char *[]){ "dnsveil", NULL }, cfg,
				      err, sizeof(err)),
			 0);
	assert_int_equal(dv_cli_apply(ARGV("-c", "x", "--version", "-h"), cfg,
				      err, sizeof(err)),
			 0);
	assert_memory_equal(cfg, before, sizeof(*cfg));
	free(before);
	free(cfg);
}

static void test_cli_apply_errors(void **state)
{
	static const struct {
		char *argv[4];
		const char *err;
	} cases[] = {
		{ { "dnsveil", "--listen", "ftp://x" },
		  "--listen 'ftp://x': unknown scheme 'ftp'" },
		{ { "dnsveil", "--upstream", "dns://127.0.0.1:53" },
		  "--upstream 'dns://127.0.0.1:53': scheme 'dns' can only be "
		  "used by listeners" },
		{ { "dnsveil", "--fallback=tls://1.1.1.1:853" },
		  "--fallback 'tls://1.1.1.1:853': tls:// upstream needs " },
		{ { "dnsveil", "--workers", "300" },
		  "--workers '300': out of range 0..256" },
		{ { "dnsveil", "--workers=abc" },
		  "--workers 'abc': not an unsigned integer" },
		{ { "dnsveil", "--workers" }, "--workers: missing argument" },
		{ { "dnsveil", "--foo" }, "unknown option '--foo'" },
	};
	dv_config_t *cfg = cfg_from_file();
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char **argv = (char **)cases[i].argv;
		int argc = 0;

		while (argc < 4 && argv[argc] != NULL)
			argc++;
		err[0] = '\0';
		if (dv_cli_apply(argc, argv, cfg, err, sizeof(err)) !=
			    DV_ECONFIG ||
		    strncmp(err, cases[i].err, strlen(cases[i].err)) != 0) {
			print_error("case %zu: want '%s', got '%s'\n", i,
				    cases[i].err, err);
			fail();
		}
	}

	/* too long a path */
	char longarg[700];
	memset(longarg, 'x', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = '\0';
	assert_int_equal(dv_cli_apply(ARGV("--tls-cert", longarg), cfg, err,
				      sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, "': too long (at most 511 bytes)");

	/* 33 listeners */
	char *many[2 + 2 * (DV_MAX_URLS + 1)];
	int argc = 0;
	many[argc++] = "dnsveil";
	for (int i = 0; i <= DV_MAX_URLS; i++) {
		many[argc++] = "--listen";
		many[argc++] = "udp://127.0.0.1:53";
	}
	many[argc] = NULL;
	assert_int_equal(dv_cli_apply(argc, many, cfg, err, sizeof(err)),
			 DV_ECONFIG);
	assert_string_equal(err, "--listen 'udp://127.0.0.1:53': too many URLs "
				 "(at most 32)");
	free(cfg);
}

static void test_cli_usage(void **state)
{
	static const char *const flags[] = {
		"-c, --config FILE", "--listen URL", "--upstream URL",
		"--fallback URL", "--tls-cert FILE", "--tls-key FILE",
		"--ca FILE", "--workers N", "--admin URL", "--user NAME",
		"--group NAME", "--check-config", "--help-config",
		"--version", "-h, --help",
	};
	char *out = capture(dv_cli_usage);

	assert_prefix(out,
		      "dnsveil [-c FILE] [--listen URL]... [--upstream URL]... "
		      "[--fallback URL]...\n"
		      "        [--tls-cert FILE] [--tls-key FILE] [--ca FILE] "
		      "[--workers N]\n"
		      "        [--admin URL]... [--user NAME [--group NAME]]\n"
		      "        [--check-config] [--version] [--help]\n");
	for (size_t i = 0; i < ARRAY_LEN(flags); i++)
		assert_contains(out, flags[i]);
	assert_contains(out, "Flags override the config file.");
	assert_contains(out, "(0..256)");
	assert_contains(out, "https://ADDR:PORT/PATH ");
	assert_contains(out, "http://ADDR:PORT/PATH");
	assert_contains(out, "tls://ADDR:PORT#NAME");
	assert_contains(out, "https://ADDR:PORT/PATH#NAME");
	assert_contains(out, "quic://ADDR:PORT#NAME");
	assert_contains(out, "dns://");
	assert_contains(out, "[::1]:PORT");
	free(out);
}

/* groups.NAME.upstream: groups with identical upstream: and fallback:
 * lists share a set, numbered in file order after set 0 (the top-level
 * lists); a group without upstream: is in set 0. */
static void test_upstream_sets(void **state)
{
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];
	dv_upstream_set_t set;

	dv_config_defaults(cfg);
	assert_int_equal(dv_config_upstream_sets(cfg), 1);
	assert_int_equal(
		load_text(cfg,
			  "listen: [\"udp://127.0.0.1:5300\"]\n"
			  "upstream: [\"tcp://127.0.0.1:5335\"]\n"
			  "fallback: [\"tcp://192.0.2.53:53\"]\n"
			  "groups:\n"
			  "  a: { upstream: [\"tcp://127.0.0.1:5336\"] }\n"
			  "  plain: { block: [] }\n"
			  "  b: { upstream: [\"tcp://127.0.0.1:5336\"] }\n"
			  "  c:\n"
			  "    upstream: [\"tcp://127.0.0.1:5336\"]\n"
			  "    fallback: [\"tcp://192.0.2.54:53\"]\n"
			  "  d: { upstream: [\"tcp://127.0.0.1:5336\", "
			  "\"udp://127.0.0.1:5337\"] }\n",
			  path, sizeof(path), err, sizeof(err)),
		0);
	assert_int_equal(cfg->n_groups, 6); /* and default, added */
	assert_int_equal(cfg->groups[0].upstream_set, 1);
	assert_int_equal(cfg->groups[1].upstream_set, 0);
	assert_int_equal(cfg->groups[2].upstream_set, 1);
	assert_int_equal(cfg->groups[3].upstream_set, 2);
	assert_int_equal(cfg->groups[4].upstream_set, 3);
	assert_string_equal(cfg->groups[5].name, "default");
	assert_int_equal(cfg->groups[5].upstream_set, 0);
	assert_int_equal(dv_config_upstream_sets(cfg), 4);

	dv_config_upstream_set(cfg, 0, &set);
	assert_null(set.name);
	assert_ptr_equal(set.upstream, cfg->upstream);
	assert_int_equal(set.n_fallback, 1);
	dv_config_upstream_set(cfg, 1, &set);
	assert_string_equal(set.name, "a");
	assert_int_equal(set.n_upstream, 1);
	assert_int_equal(set.n_fallback, 0); /* not the top-level one */
	dv_config_upstream_set(cfg, 2, &set);
	assert_string_equal(set.name, "c");
	assert_int_equal(set.n_fallback, 1);
	assert_addr(&set.fallback[0], "192.0.2.54:53");
	dv_config_upstream_set(cfg, 3, &set);
	assert_string_equal(set.name, "d");
	assert_int_equal(set.n_upstream, 2);
	assert_int_equal(set.upstream[1].scheme, DV_SCHEME_UDP);
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);
	/* a scheme this build does not serve, as for upstream: */
	bool no_udp[DV_SCHEME_COUNT];
	memcpy(no_udp, all_impl, sizeof(no_udp));
	no_udp[DV_SCHEME_UDP] = false;
	assert_int_equal(dv_config_validate(cfg, all_impl, no_udp, err,
					    sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, "groups.d.upstream: upstream "
			     "'udp://127.0.0.1:5337': scheme 'udp' is not "
			     "implemented yet");
	free(cfg);
}

/* ------------------------------------------------------------------ */
/* conf/dnsveil.yaml                                                   */

/* The commented policy example loads, with every table in place. */
static void test_policy_example(void **state)
{
	dv_config_t *cfg = cfg_new();
	char path[1024], err[512];

	dv_config_defaults(cfg);
	source_path("conf/policy-example.yaml", path, sizeof(path));
	if (dv_config_load(cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	assert_int_equal(cfg->n_lists, 3);
	assert_string_equal(cfg->lists[1].name, "adult");
	assert_int_equal(cfg->lists[1].format, DV_LIST_ADBLOCK);
	assert_int_equal(cfg->lists[2].format, DV_LIST_DOMAINS);
	assert_int_equal(cfg->n_groups, 4);
	const dv_cfg_group_t *def = &cfg->groups[0], *kids = &cfg->groups[1];
	assert_string_equal(def->name, "default");
	assert_int_equal(def->block_mask, 1u);
	assert_int_equal(def->allow_mask, 4u);
	assert_int_equal(def->blocked_ttl, 300);
	assert_int_equal(kids->block_mask, 3u);
	/* a plain YAML null is the word: the null action */
	assert_int_equal(kids->n_action, 1);
	assert_int_equal(kids->action[0].kind, DV_ACTION_NULL);
	assert_int_equal(cfg->groups[2].n_action, 2);
	assert_int_equal(cfg->groups[2].action[1].kind, DV_ACTION_ADDRESSES);
	assert_int_equal(cfg->groups[2].action[1].family, AF_INET6);
	assert_int_equal(cfg->groups[3].action[0].kind, DV_ACTION_REFUSED);
	assert_int_equal(cfg->n_clients, 4);
	assert_string_equal(cfg->clients[0].id, "kid-*");
	assert_int_equal(cfg->clients[0].group_index, 1);
	assert_int_equal(cfg->clients[2].n_cidr, 2);
	assert_int_equal(cfg->clients[2].group_index, 2);
	assert_string_equal(cfg->clients[3].listener, "dns://127.0.0.1:53");
	assert_int_equal(cfg->n_server_names, 1);
	assert_string_equal(cfg->server_names[0], "dns.test");
	assert_int_equal(cfg->n_internal, 1);
	assert_string_equal(cfg->internal[0], "corp.example");
	/* the kids group's own resolver: upstream set 1 */
	assert_int_equal(kids->n_upstream, 1);
	assert_addr(&kids->upstream[0], "127.0.0.1:5336");
	assert_int_equal(kids->n_fallback, 0);
	assert_int_equal(kids->upstream_set, 1);
	assert_int_equal(def->upstream_set, 0);
	assert_int_equal(dv_config_upstream_sets(cfg), 2);
	assert_int_equal(cfg->n_records, 8);
	assert_int_equal(cfg->records[7].group, 1);
	assert_int_equal(cfg->records[7].type, 1);
	assert_int_equal(cfg->records[2].type, 5); /* CNAME */
	/* wire form, lowercased: 8intranet4corp7example0 */
	assert_int_equal(cfg->records[0].owner_len, 23);
	assert_memory_equal(cfg->records[0].owner, "\x08" "intranet" "\x04" "corp", 14);
	assert_int_equal(cfg->records[0].rdlen, 4);
	assert_memory_equal(cfg->record_data + cfg->records[0].rdata_off,
			    ((uint8_t[]){ 192, 0, 2, 10 }), 4);

	/* "~" stays YAML's null: no action, the default */
	dv_config_defaults(cfg);
	assert_int_equal(load_text(cfg, "groups:\n  kids: { action: ~ }\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->groups[0].n_action, 0);

	/* groups without a default get one, empty */
	dv_config_defaults(cfg);
	const char *yaml = "groups:\n  kids: { action: nodata }\n";
	assert_int_equal(load_text(cfg, yaml, path, sizeof(path), err,
				   sizeof(err)),
			 0);
	assert_int_equal(cfg->n_groups, 2);
	assert_string_equal(cfg->groups[1].name, "default");
	assert_int_equal(cfg->groups[1].n_action, 0);
	assert_int_equal(cfg->groups[0].action[0].kind, DV_ACTION_NODATA);
	free(cfg);
}

/* log: and dnstap: (README "Logs"): defaults, values, log.level as
 * log-level's other name, and what is refused. */
static void test_load_logs(void **state)
{
	(void)state;
	dv_config_t *cfg = cfg_new();
	char path[64], err[512];

	assert_int_equal(cfg->log_format, DV_LOG_TEXT);
	assert_int_equal(cfg->log_queries, 0); /* off */
	assert_int_equal(cfg->log_query_sample, 1);
	assert_string_equal(cfg->log_query_file, "");
	assert_int_equal(cfg->log_query_buffer, 4096);
	assert_string_equal(cfg->dnstap_socket, "");
	assert_string_equal(cfg->dnstap_file, "");
	assert_int_equal(cfg->dnstap_buffer, 8192);
	assert_int_equal(cfg->dnstap_resolver, 0);
	assert_int_equal(
		load_text(cfg,
			  "listen: [\"dns://127.0.0.1:53\"]\n"
			  "upstream: [\"tcp://127.0.0.1:5335\"]\n"
			  "log:\n  level: debug\n  format: json\n"
			  "  queries: errors\n  query-sample: 100\n"
			  "  query-file: /var/log/q.log\n  query-buffer: 64\n"
			  "dnstap:\n  socket: /run/dnstap.sock\n  buffer: 512\n"
			  "  resolver: true\n",
			  path, sizeof(path), err, sizeof(err)),
		0);
	assert_int_equal(cfg->log_level, DV_LOG_DEBUG);
	assert_int_equal(cfg->log_format, DV_LOG_JSON);
	assert_int_equal(cfg->log_queries, 2); /* errors */
	assert_int_equal(cfg->log_query_sample, 100);
	assert_string_equal(cfg->log_query_file, "/var/log/q.log");
	assert_int_equal(cfg->log_query_buffer, 64);
	assert_string_equal(cfg->dnstap_socket, "/run/dnstap.sock");
	assert_int_equal(cfg->dnstap_buffer, 512);
	assert_int_equal(cfg->dnstap_resolver, 1);
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);
	/* log-level still works, and the later of the two wins */
	assert_int_equal(load_text(cfg, "log-level: warn\n", path, sizeof(path),
				   err, sizeof(err)),
			 0);
	assert_int_equal(cfg->log_level, DV_LOG_WARN);
	assert_int_equal(load_text(cfg, "log-level: warn\nlog:\n  level: error\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(cfg->log_level, DV_LOG_ERROR);

	static const struct {
		const char *yaml, *key;
	} bad[] = {
		{"log:\n  format: xml\n", "log.format"},
		{"log:\n  queries: some\n", "log.queries"},
		{"log:\n  query-sample: 0\n", "log.query-sample"},
		{"log:\n  query-buffer: 8\n", "log.query-buffer"},
		{"dnstap:\n  buffer: 20000\n", "dnstap.buffer"},
		{"log:\n  level: loud\n", "log.level"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(load_text(cfg, bad[i].yaml, path, sizeof(path),
					   err, sizeof(err)),
				 DV_ECONFIG);
		assert_contains(err, bad[i].key);
	}
	/* one dnstap output */
	dv_config_t *two = cfg_new();
	assert_int_equal(load_text(two,
				   "listen: [\"dns://127.0.0.1:53\"]\n"
				   "upstream: [\"tcp://127.0.0.1:5335\"]\n"
				   "dnstap:\n  socket: /run/a.sock\n"
				   "  file: /tmp/b.fstrm\n",
				   path, sizeof(path), err, sizeof(err)),
			 0);
	assert_int_equal(dv_config_validate(two, all_impl, all_impl, err,
					    sizeof(err)),
			 DV_ECONFIG);
	assert_contains(err, "dnstap.file: dnstap.socket is set too");
	free(two);
	free(cfg);
}

static void test_default_conf_file(void **state)
{
	dv_config_t *cfg = cfg_new(), *def = cfg_new();
	char path[1024], err[512], key[128];
	char *schema, *conf;
	size_t len = 0;
	FILE *f;

	source_path("conf/dnsveil.yaml", path, sizeof(path));
	if (dv_config_load(cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	assert_int_equal(cfg->n_listen, 1);
	assert_int_equal(cfg->listen[0].scheme, DV_SCHEME_DNS);
	assert_addr(&cfg->listen[0], "127.0.0.1:53");
	assert_int_equal(cfg->n_upstream, 1);
	assert_int_equal(cfg->upstream[0].scheme, DV_SCHEME_TCP);
	assert_addr(&cfg->upstream[0], "127.0.0.1:5335");
	assert_int_equal(cfg->n_fallback, 2);
	assert_int_equal(cfg->fallback[0].scheme, DV_SCHEME_TLS);
	assert_addr(&cfg->fallback[0], "1.1.1.1:853");
	assert_string_equal(cfg->fallback[0].name, "cloudflare-dns.com");
	assert_int_equal(cfg->fallback[1].scheme, DV_SCHEME_TLS);
	assert_addr(&cfg->fallback[1], "8.8.8.8:853");
	assert_string_equal(cfg->fallback[1].name, "dns.google");
	assert_string_equal(cfg->tls_cert, "certs/dev-cert.pem");
	assert_string_equal(cfg->tls_key, "certs/dev-key.pem");
	assert_int_equal(dv_config_validate(cfg, all_impl, all_impl, err,
					    sizeof(err)),
			 0);

	/* Every other value is the schema default ... */
	memcpy(def->listen, cfg->listen, sizeof(cfg->listen));
	def->n_listen = cfg->n_listen;
	memcpy(def->upstream, cfg->upstream, sizeof(cfg->upstream));
	def->n_upstream = cfg->n_upstream;
	memcpy(def->fallback, cfg->fallback, sizeof(cfg->fallback));
	def->n_fallback = cfg->n_fallback;
	strcpy(def->tls_cert, cfg->tls_cert);
	strcpy(def->tls_key, cfg->tls_key);
	strcpy(def->source, cfg->source);
	assert_memory_equal(cfg, def, sizeof(*cfg));

	/* ... and every schema key is written out in the file. */
	f = fopen(path, "r");
	assert_non_null(f);
	conf = calloc(1, 65536);
	assert_non_null(conf);
	conf[0] = '\n';
	len = fread(conf + 1, 1, 65534, f);
	fclose(f);
	assert_true(len > 0);
	/* the keys of the policy's tables are shown in its example */
	char *example = calloc(1, 65536);
	assert_non_null(example);
	source_path("conf/policy-example.yaml", path, sizeof(path));
	f = fopen(path, "r");
	assert_non_null(f);
	assert_true(fread(example, 1, 65535, f) > 0);
	fclose(f);
	schema = capture(dv_config_print_schema);
	for (const char *p = schema; *p != '\0';) {
		size_t n = strcspn(p, " ");
		const char *dot = memchr(p, '.', n);

		const char *last = p + n;
		while (last > p && last[-1] != '.')
			last--;
		if (memmem(p, n, "NAME.", 5) || memmem(p, n, "[].", 3))
			/* a policy table's key: in the example file */
			snprintf(key, sizeof(key), " %.*s:",
				 (int)(n - (size_t)(last - p)), last);
		else if (dot != NULL)
			snprintf(key, sizeof(key), "\n  %.*s:",
				 (int)(n - (size_t)(dot + 1 - p)), dot + 1);
		else
			snprintf(key, sizeof(key), "\n%.*s:", (int)n, p);
		assert_contains(key[0] == ' ' ? example : conf, key);
		p = strchr(p, '\n');
		if (p == NULL)
			break;
		p++;
	}
	free(schema);
	free(conf);
	free(example);
	free(cfg);
	free(def);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_print_schema),
		cmocka_unit_test(test_load_good),
		cmocka_unit_test(test_load_empty),
		cmocka_unit_test(test_load_lists_replace),
		cmocka_unit_test(test_load_error_keeps_cfg),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_load_too_long_string),
		cmocka_unit_test(test_load_too_many_urls),
		cmocka_unit_test(test_load_doh_lists),
		cmocka_unit_test(test_load_admin),
		cmocka_unit_test(test_load_logs),
		cmocka_unit_test(test_load_drain_user),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_buffer),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_url_good),
		cmocka_unit_test(test_url_proxy_protocol),
		cmocka_unit_test(test_url_port_byte_order),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_url_lengths),
		cmocka_unit_test(test_addr_format_and_scheme_names),
		cmocka_unit_test(test_validate_lists),
		cmocka_unit_test(test_validate_duplicate_listeners),
		cmocka_unit_test(test_validate_tls_files),
		cmocka_unit_test(test_validate_ranges),
		cmocka_unit_test(test_cli_parse_records),
		cmocka_unit_test(test_cli_parse_errors),
		cmocka_unit_test(test_cli_apply_listen),
		cmocka_unit_test(test_cli_apply_upstreams),
		cmocka_unit_test(test_cli_apply_errors),
		cmocka_unit_test(test_cli_usage),
		cmocka_unit_test(test_default_conf_file),
		cmocka_unit_test(test_policy_example),
		cmocka_unit_test(test_upstream_sets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

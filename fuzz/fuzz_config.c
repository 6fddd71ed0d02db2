/*
 * Configuration: arbitrary bytes as a YAML config file
 * (dv_config_load_buffer) and as a listener/upstream URL (dv_url_parse).
 *
 * Besides memory errors it checks what the loader promises: a failed load
 * leaves the config byte for byte as it was and says "NAME:" first; a
 * successful one holds only values inside the schema's ranges, URLs the URL
 * parser accepts again, NUL-terminated strings, and loading the same bytes
 * once more gives the same config.  A URL that parses reparses from its
 * own text to the same address, and its formatted address reparses too.
 * dv_config_validate() runs on every config that loads (it only looks at
 * files with access()).  A broken promise aborts.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			__builtin_trap();                                    \
	} while (0)

#define NAME "fuzz.yaml"
#define MAX_INPUT (64 * 1024) /* a config file is a few KiB */

/* A string field is NUL-terminated inside its array. */
#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void check_url(const dv_url_t *u, dv_url_role_t role)
{
	CHECK((unsigned)u->scheme < DV_SCHEME_COUNT);
	CHECK(TERMINATED(u->text) && TERMINATED(u->path) &&
	      TERMINATED(u->name));
	CHECK(u->text[0] != '\0');
	if (u->addr.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&u->addr;
		CHECK(u->addr_len == sizeof(*in));
		CHECK(in->sin_port != 0);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)&u->addr;
		CHECK(u->addr.ss_family == AF_INET6);
		CHECK(u->addr_len == sizeof(*in6));
		CHECK(in6->sin6_port != 0);
	}
	/* a path only where the scheme takes one, and then it starts at '/' */
	bool has_path = u->scheme == DV_SCHEME_HTTPS ||
			u->scheme == DV_SCHEME_HTTP;
	CHECK(has_path == (u->path[0] != '\0'));
	if (has_path)
		CHECK(u->path[0] == '/');
	/* a certificate name only for upstreams that check one */
	bool has_name = role == DV_URL_UPSTREAM &&
			(u->scheme == DV_SCHEME_TLS ||
			 u->scheme == DV_SCHEME_HTTPS ||
			 u->scheme == DV_SCHEME_QUIC);
	CHECK(has_name == (u->name[0] != '\0'));

	/* its own text parses again to the same URL */
	static dv_url_t again;
	char err[256];
	CHECK(dv_url_parse(u->text, role, &again, err, sizeof(err)) == 0);
	CHECK(again.scheme == u->scheme && again.addr_len == u->addr_len);
	CHECK(memcmp(&again.addr, &u->addr, u->addr_len) == 0);
	CHECK(strcmp(again.path, u->path) == 0);
	CHECK(strcmp(again.name, u->name) == 0);

	/* and so does the canonical form built from the formatted address */
	char addr[128], text[1024];
	dv_addr_format((const struct sockaddr *)&u->addr, addr, sizeof(addr));
	snprintf(text, sizeof(text), "%s://%s%s%s%s", dv_scheme_name(u->scheme),
		 addr, u->path, u->name[0] ? "#" : "", u->name);
	if (strlen(text) < sizeof(u->text)) {
		CHECK(dv_url_parse(text, role, &again, err, sizeof(err)) == 0);
		CHECK(again.addr_len == u->addr_len);
		CHECK(memcmp(&again.addr, &u->addr, u->addr_len) == 0);
	}
}

static void check_urls(const dv_url_t *list, unsigned n, dv_url_role_t role)
{
	CHECK(n <= DV_MAX_URLS);
	for (unsigned i = 0; i < n; i++)
		check_url(&list[i], role);
}

/* (v) - (lo) wraps for v < lo: one unsigned comparison, no "always true"
 * warning for a lower bound of 0 */
#define IN_RANGE(v, lo, hi) CHECK((v) - (lo) <= (hi) - (lo))

/* Every value inside the schema's range (config.c's table). */
static void check_config(const dv_config_t *c)
{
	IN_RANGE(c->workers, 0u, 256u);
	IN_RANGE((unsigned)c->log_level, (unsigned)DV_LOG_ERROR,
		 (unsigned)DV_LOG_DEBUG);
	check_urls(c->listen, c->n_listen, DV_URL_LISTEN);
	check_urls(c->upstream, c->n_upstream, DV_URL_UPSTREAM);
	check_urls(c->fallback, c->n_fallback, DV_URL_UPSTREAM);
	CHECK(TERMINATED(c->tls_cert) && TERMINATED(c->tls_key) &&
	      TERMINATED(c->tls_ca) && TERMINATED(c->source));
	CHECK(strcmp(c->source, NAME) == 0);
	IN_RANGE(c->tls_ticket_rotation_s, 60u, 604800u);
	IN_RANGE(c->tcp_max_connections, 1u, 1000000u);
	IN_RANGE(c->tcp_max_inflight, 1u, 65535u);
	IN_RANGE(c->tcp_idle_timeout_ms, 100u, 3600000u);
	IN_RANGE(c->tcp_max_output_bytes, 4096u, 67108864u);
	IN_RANGE(c->max_inflight, 1u, 1000000u);
	IN_RANGE(c->tcp_read_timeout_ms, 100u, 600000u);
	IN_RANGE(c->tls_handshake_timeout_ms, 100u, 600000u);
	IN_RANGE(c->tls_handshakes_per_ip, 0u, 1000000u);
	IN_RANGE(c->tls_handshake_burst, 1u, 1000000u);
	IN_RANGE(c->handshake_pressure, 0u, 1000000u);
	IN_RANGE(c->n_handshake_exempt, 0u, (unsigned)DV_MAX_HANDSHAKE_EXEMPT);
	IN_RANGE(c->upstream_connections, 1u, 64u);
	IN_RANGE(c->upstream_max_inflight, 1u, 65535u);
	IN_RANGE(c->upstream_timeout_ms, 10u, 60000u);
	IN_RANGE(c->hedge_delay_ms, 0u, 60000u);
	IN_RANGE(c->query_timeout_ms, 100u, 60000u);
	IN_RANGE(c->reconnect_min_ms, 1u, 60000u);
	IN_RANGE(c->reconnect_max_ms, 1u, 600000u);
	IN_RANGE(c->cache_size_bytes, (uint64_t)0, (uint64_t)64 << 30);
	IN_RANGE(c->cache_shards, 1u, 4096u);
	IN_RANGE(c->cache_min_ttl, 0u, 86400u);
	IN_RANGE(c->cache_max_ttl, 0u, 604800u);
	IN_RANGE(c->cache_negative_max_ttl, 0u, 86400u);
	/* groups.NAME.upstream/.fallback: URLs as the top-level ones; a
	 * group's set 0 without upstream:, else one of the numbered sets,
	 * shared exactly by the groups with the same two lists */
	unsigned sets = dv_config_upstream_sets(c);
	IN_RANGE(sets, 1u, (unsigned)DV_MAX_UPSTREAM_SETS);
	for (unsigned i = 0; i < c->n_groups; i++) {
		const dv_cfg_group_t *g = &c->groups[i];
		IN_RANGE(g->n_upstream, 0u,
			 (unsigned)DV_POLICY_GROUP_UPSTREAMS);
		IN_RANGE(g->n_fallback, 0u,
			 (unsigned)DV_POLICY_GROUP_UPSTREAMS);
		check_urls(g->upstream, g->n_upstream, DV_URL_UPSTREAM);
		check_urls(g->fallback, g->n_fallback, DV_URL_UPSTREAM);
		CHECK(g->upstream_set < sets);
		CHECK((g->upstream_set == 0) == (g->n_upstream == 0));
		CHECK(g->n_upstream || !g->n_fallback);
		dv_upstream_set_t s;
		dv_config_upstream_set(c, g->upstream_set, &s);
		if (g->upstream_set) {
			CHECK(s.n_upstream == g->n_upstream &&
			      s.n_fallback == g->n_fallback);
			for (unsigned k = 0; k < s.n_upstream; k++)
				CHECK(strcmp(s.upstream[k].text,
					     g->upstream[k].text) == 0);
			for (unsigned k = 0; k < s.n_fallback; k++)
				CHECK(strcmp(s.fallback[k].text,
					     g->fallback[k].text) == 0);
		}
	}
}

/* A message names the file (or says what failed) and is terminated. */
static void check_error(const char *err, size_t len)
{
	CHECK(memchr(err, '\0', len) != NULL);
	CHECK(err[0] != '\0');
	CHECK(strncmp(err, NAME ":", strlen(NAME ":")) == 0);
}

static void as_config(const uint8_t *data, size_t size)
{
	/* ~100 KiB each: static, not on the stack */
	static dv_config_t defaults, cfg, again;
	static bool init;
	char err[1024];

	if (!init) {
		dv_config_defaults(&defaults);
		init = true;
	}
	memcpy(&cfg, &defaults, sizeof(cfg));
	memset(err, 0, sizeof(err));
	int ret = dv_config_load_buffer(&cfg, NAME, data, size, err,
					sizeof(err));
	if (ret != 0) {
		CHECK(ret == DV_ECONFIG || ret == -ENOMEM);
		check_error(err, sizeof(err));
		CHECK(memcmp(&cfg, &defaults, sizeof(cfg)) == 0);
		return;
	}
	check_config(&cfg);

	/* the same bytes over the result change nothing */
	memcpy(&again, &cfg, sizeof(again));
	CHECK(dv_config_load_buffer(&again, NAME, data, size, err,
				    sizeof(err)) == 0);
	CHECK(memcmp(&again, &cfg, sizeof(cfg)) == 0);

	/* the final checks, with every scheme implemented and with none */
	bool all[DV_SCHEME_COUNT], none[DV_SCHEME_COUNT];
	for (unsigned i = 0; i < DV_SCHEME_COUNT; i++) {
		all[i] = true;
		none[i] = false;
	}
	memset(err, 0, sizeof(err));
	ret = dv_config_validate(&cfg, all, all, err, sizeof(err));
	CHECK(ret == 0 || ret == DV_ECONFIG);
	if (ret != 0)
		CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
	ret = dv_config_validate(&cfg, none, none, err, sizeof(err));
	CHECK(ret == DV_ECONFIG);
}

static void as_url(const uint8_t *data, size_t size)
{
	char text[1024];
	if (size >= sizeof(text))
		return;
	memcpy(text, data, size);
	text[size] = '\0';

	static const dv_url_role_t roles[] = {DV_URL_LISTEN, DV_URL_UPSTREAM};
	for (unsigned k = 0; k < 2; k++) {
		static dv_url_t url;
		char err[256];
		memset(err, 0, sizeof(err));
		int ret = dv_url_parse(text, roles[k], &url, err, sizeof(err));
		if (ret != 0) {
			CHECK(ret == DV_ECONFIG);
			CHECK(err[0] != '\0');
			CHECK(memchr(err, '\0', sizeof(err)) != NULL);
			continue;
		}
		CHECK(strcmp(url.text, text) == 0);
		check_url(&url, roles[k]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dv_log_level = DV_LOG_ERROR;
	if (size > MAX_INPUT)
		return 0;
	as_config(data, size);
	as_url(data, size);
	return 0;
}

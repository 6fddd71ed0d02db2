/*
 * Fuzz target: the policy's parsers.  The first byte picks what the rest
 * of the input is:
 *
 *   0, 1, 2  a list file of format hosts, domains, adblock: parsed into a
 *            suffix set (the rules of line i go to list i % 4); then every
 *            rule is looked up again, as a name and as a subdomain of
 *            itself, and every line of the input is looked up as a query
 *            name;
 *   3        client IDs: "PATTERN\nID\nSERVER" — the glob match, the ID of
 *            a DoH path "/dns-query/ID" and of the SNI "ID" for SERVER;
 *   4        the rest as a wire name: dv_suffix_query_name();
 *   5        DDR: the next byte picks ddr.mode (auto, on), the listener
 *            the query came in on, a 512-byte UDP limit and padding; the
 *            rest is a DNS query answered by dv_ddr_answer().
 *   6        rate limits: two bytes of rate and burst (1..256), then
 *            steps of two bytes, a key (0..7) and the milliseconds that
 *            passed (0..255), each taking one query from the key's token
 *            bucket in a table of one set.
 *
 * Checks besides memory errors: every added rule is found again with its
 * list and at offset 0 (as itself) or after "x." (as a subdomain); the
 * text of a query name keeps its length and offsets; an extracted ID is a
 * valid lowercase label; a pattern equal to its ID matches it; a DDR
 * answer parses as a response with the query's id and question, NOERROR,
 * within the size limit; no key's
 * bucket lets through more than its burst plus the rate times the time
 * since its first query, and a key's first query always passes.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/policy/ddr.h"
#include "src/policy/lists.h"
#include "src/policy/ratelimit.h"
#include "src/policy/suffix.h"

#define CHECK(c)                                                             \
	do {                                                                 \
		if (!(c)) {                                                  \
			fprintf(stderr, "check failed: %s\n", #c);          \
			abort();                                             \
		}                                                            \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
	dv_suffix_set_t *set;
	unsigned line;
	char names[64][DV_SUFFIX_NAME_MAX + 1];
	unsigned list[64];
	bool except[64];
	unsigned n;
} ctx_t;

static int add(void *vctx, const char *name, size_t len, bool except)
{
	ctx_t *c = vctx;
	unsigned list = c->n % 4;
	CHECK(len > 0 && len <= DV_SUFFIX_NAME_MAX);
	if (dv_suffix_add(c->set, name, len, list, except) != 0)
		return -1;
	if (c->n < 64) {
		memcpy(c->names[c->n], name, len);
		c->names[c->n][len] = '\0';
		c->list[c->n] = list;
		c->except[c->n] = except;
	}
	c->n++;
	return 0;
}

static void lists(unsigned fmt, const char *text, size_t len)
{
	static ctx_t c;
	memset(&c, 0, sizeof(c));
	c.set = dv_suffix_new(len);
	CHECK(c.set);
	dv_list_stats_t st = {0};
	if (dv_list_parse_buffer(fmt, text, len, add, &c, &st) != 0)
		goto out;
	CHECK(st.rules == c.n && st.exceptions <= st.rules);
	CHECK(dv_suffix_count(c.set) <= c.n);
	dv_suffix_seal(c.set);
	for (unsigned i = 0; i < c.n && i < 64; i++) {
		dv_suffix_hit_t hit;
		uint32_t bit = 1u << c.list[i];
		size_t n = strlen(c.names[i]);
		CHECK(dv_suffix_lookup(c.set, c.names[i], n, bit, &hit));
		CHECK(hit.offset == 0);
		CHECK((c.except[i] ? hit.except : hit.block) & bit);
		char sub[DV_SUFFIX_NAME_MAX + 3];
		if (n + 2 <= DV_SUFFIX_NAME_MAX) {
			snprintf(sub, sizeof(sub), "x.%s", c.names[i]);
			CHECK(dv_suffix_lookup(c.set, sub, n + 2, bit, &hit));
			CHECK(hit.offset <= 2);
		}
	}
	/* every line as a query name: only what the set holds is found */
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - text - pos) : len - pos;
		dv_suffix_hit_t hit;
		if (n <= DV_SUFFIX_NAME_MAX &&
		    dv_suffix_lookup(c.set, text + pos, n, 0xf, &hit))
			CHECK(hit.offset < n && (hit.block | hit.except));
		pos += n + 1;
	}
out:
	dv_suffix_free(c.set);
}

static void idents(const char *text, size_t len)
{
	char buf[1024], id[DV_IDENT_MAX + 1], path[1100];
	if (len >= sizeof(buf))
		return;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (strlen(buf) != len)
		return;
	char *pat = buf, *cand = strchr(pat, '\n'), *server = NULL;
	if (!cand)
		return;
	*cand++ = '\0';
	server = strchr(cand, '\n');
	if (server)
		*server++ = '\0';
	(void)dv_ident_glob(pat, cand);
	if (strcmp(pat, cand) == 0)
		CHECK(dv_ident_glob(pat, cand));
	snprintf(path, sizeof(path), "/dns-query/%s", cand);
	size_t n = dv_ident_from_path(path, strlen(path), "/dns-query", id);
	if (n) {
		CHECK(n == strlen(id) && dv_ident_label_ok(id, n));
		for (size_t i = 0; i < n; i++)
			CHECK(!(id[i] >= 'A' && id[i] <= 'Z'));
		CHECK(dv_ident_glob(cand, id));
	}
	if (server) {
		n = dv_ident_from_sni(cand, server, id);
		if (n)
			CHECK(n == strlen(id) && dv_ident_label_ok(id, n));
	}
	/* a client certificate's name (mTLS): the bytes as they come */
	n = dv_ident_from_cert_name(cand, strlen(cand), id);
	if (n)
		CHECK(n == strlen(id) && dv_ident_label_ok(id, n) &&
		      strncasecmp(cand, id, n) == 0);
}

static void wire_name(const uint8_t *w, size_t len)
{
	char out[DV_SUFFIX_NAME_MAX + 2];
	int n = dv_suffix_query_name(w, len, out);
	if (n <= 0)
		return;
	/* a label starting at text offset i starts at wire offset i */
	size_t pos = 0;
	while (w[pos]) {
		CHECK(pos == 0 || out[pos - 1] == '.');
		pos += 1u + w[pos];
	}
	CHECK((size_t)n == pos - 1);
}

/* A DDR of mode `mode` for listeners of every kind, some covered by the
 * certificate (127.0.0.1, ::1), some not, one a wildcard; built once. */
static const dv_ddr_t *ddr_of(unsigned mode)
{
	static dv_ddr_t *d[2];
	static const char *const urls[] = {
		"dns://127.0.0.1:53",	 "tls://127.0.0.1:853",
		"https://[::1]:443/dns-query", "quic://0.0.0.0:8853",
		"dns://127.0.0.2:53",	 "https://127.0.0.1:8443/q",
	};
	if (d[mode])
		return d[mode];
	static dv_config_t cfg;
	static dv_cert_names_t cert;
	char err[256];
	dv_config_defaults(&cfg);
	cfg.ddr_mode = mode ? DV_DDR_ON : DV_DDR_AUTO;
	for (unsigned i = 0; i < sizeof(urls) / sizeof(*urls); i++)
		CHECK(dv_url_parse(urls[i], DV_URL_LISTEN,
				   &cfg.listen[cfg.n_listen++], err,
				   sizeof(err)) == 0);
	cert.loaded = true;
	snprintf(cert.dns[cert.n_dns++], sizeof(cert.dns[0]), "*.dns.test");
	snprintf(cert.dns[cert.n_dns++], sizeof(cert.dns[0]), "dns.test");
	cert.ip[0].family = AF_INET;
	memcpy(cert.ip[0].addr, "\x7f\0\0\1", 4);
	cert.ip[1].family = AF_INET6;
	cert.ip[1].addr[15] = 1;
	cert.n_ip = 2;
	CHECK(dv_ddr_new(&cfg, &cert, &d[mode], err, sizeof(err)) == 0);
	CHECK(d[mode]);
	return d[mode];
}

static void ddr(const uint8_t *w, size_t len)
{
	static dv_query_t q;
	static uint8_t wire[DV_DNS_MAX_MSG], out[DV_DNS_MAX_MSG];
	if (len < 1 || len - 1 > sizeof(wire))
		return;
	const dv_ddr_t *d = ddr_of(w[0] & 1);
	memset(&q, 0, sizeof(q));
	memcpy(wire, w + 1, len - 1);
	q.wire = wire;
	q.len = (uint16_t)(len - 1);
	if (dv_wire_parse_query(wire, len - 1, &q.view) != 0 ||
	    !q.view.question_end)
		return;
	q.listener = (uint8_t)((w[0] >> 1) % 8);
	q.answer_limit = w[0] & 0x40 ? 512 : DV_DNS_MAX_MSG;
	int n = dv_ddr_answer(d, &q, out, sizeof(out), w[0] & 0x80 ? 468 : 0);
	if (n <= 0)
		return;
	CHECK((size_t)n <= q.answer_limit);
	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(out, (size_t)n, &r);
	CHECK(ret == 0 || ret == DV_ELIMIT);
	CHECK(dv_get16(out) == q.view.id);
	CHECK((dv_get16(out + 2) & 0xf) == DV_RCODE_NOERROR);
	CHECK(memcmp(out + DV_DNS_HDR, wire + DV_DNS_HDR,
		     q.view.question_end - DV_DNS_HDR) == 0);
}

static void rate_limits(const uint8_t *d, size_t n)
{
	if (n < 2)
		return;
	uint32_t qps = (uint32_t)d[0] + 1, burst = (uint32_t)d[1] + 1;
	/* eight keys in eight ways: none is ever evicted */
	dv_ratelimit_t *rl = dv_ratelimit_new(DV_RATELIMIT_WAYS);
	CHECK(rl);
	uint64_t now = 1000, first[8] = { 0 }, passed[8] = { 0 };
	for (size_t i = 2; i + 1 < n; i += 2) {
		unsigned k = d[i] % 8;
		now += d[i + 1];
		if (!first[k])
			first[k] = now;
		bool ok = dv_ratelimit_take(rl, 0x9e3779b97f4a7c15ULL * (k + 1),
					    qps, burst, now);
		CHECK(ok || passed[k] > 0);
		passed[k] += ok;
		CHECK(passed[k] <= burst + (now - first[k]) * qps / 1000);
	}
	CHECK(dv_ratelimit_evictions(rl) == 0);
	dv_ratelimit_free(rl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	switch (data[0] % 7) {
	case 0:
		lists(DV_LIST_HOSTS, text, size - 1);
		break;
	case 1:
		lists(DV_LIST_DOMAINS, text, size - 1);
		break;
	case 2:
		lists(DV_LIST_ADBLOCK, text, size - 1);
		break;
	case 3:
		idents(text, size - 1);
		break;
	case 4:
		wire_name(data + 1, size - 1);
		break;
	case 5:
		ddr(data + 1, size - 1);
		break;
	case 6:
		rate_limits(data + 1, size - 1);
		break;
	}
	return 0;
}

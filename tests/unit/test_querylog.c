/*
 * Unit tests for src/daemon/querylog_fmt.c: the query log's entry, filled
 * from a query object as the core hands it over, and its text and JSON
 * lines: names in presentation form with their escapes, a FORMERR without
 * a question, IPv6 clients, identity and policy fields, and a line that is
 * valid JSON whatever the name holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "src/core/metrics.h"
#include "src/core/wire.h"
#include "src/daemon/querylog.h"

/* A query object for `wire` from 192.0.2.10:5300 over `t`, parsed. */
static void query(dv_query_t *q, const uint8_t *wire, size_t len, dv_scheme_t t)
{
	memset(q, 0, sizeof(*q));
	q->wire = q->inline_buf;
	memcpy(q->wire, wire, len);
	q->len = (uint16_t)len;
	q->transport = t;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&q->peer;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(5300);
	inet_pton(AF_INET, "192.0.2.10", &s4->sin_addr);
	q->start_us = 1000;
	(void)dv_wire_parse_query(q->wire, q->len, &q->view);
}

/* header (id 0x1234, RD), one question */
static size_t make(uint8_t *buf, const uint8_t *name, size_t name_len,
		   uint16_t qtype)
{
	static const uint8_t hdr[12] = { 0x12, 0x34, 0x01, 0x00, 0, 1,
					 0,    0,    0,	   0,	 0, 0 };
	memcpy(buf, hdr, 12);
	memcpy(buf + 12, name, name_len);
	buf[12 + name_len] = (uint8_t)(qtype >> 8);
	buf[13 + name_len] = (uint8_t)qtype;
	buf[14 + name_len] = 0;
	buf[15 + name_len] = 1;
	return 16 + name_len;
}

static void test_text_and_json(void **state)
{
	(void)state;
	static const uint8_t name[] = "\x02h1\x07"
				      "example\x04test";
	uint8_t wire[64], answer[64];
	size_t len = make(wire, name, sizeof(name), 28);
	memcpy(answer, wire, len);
	answer[2] |= 0x80;
	answer[3] = 0x80; /* RA, NOERROR */
	dv_query_t q;
	query(&q, wire, len, DV_SCHEME_TLS);
	q.source = DV_SRC_UPSTREAM;
	q.verdict = DV_VERDICT_PASS;
	q.group = "kids";
	q.upstream = "tcp://127.0.0.1:5335";
	snprintf(q.ident, sizeof(q.ident), "kid-1");
	dv_qlog_entry_t e;
	dv_qlog_entry_fill(&e, &q, answer, len, 1000 + 2500);
	assert_int_equal(e.latency_us, 2500);
	char line[DV_QLOG_LINE_MAX];
	size_t n = dv_qlog_format(&e, false, line, sizeof(line));
	assert_int_equal(n, strlen(line));
	const char *text = strstr(line, " query ");
	assert_non_null(text);
	assert_string_equal(text, " query tls 192.0.2.10#5300 h1.example.test. "
				  "AAAA "
				  "NOERROR upstream 2.500ms id=kid-1 "
				  "group=kids "
				  "policy=pass "
				  "upstream=tcp://127.0.0.1:5335\n");
	n = dv_qlog_format(&e, true, line, sizeof(line));
	assert_int_equal(n, strlen(line));
	const char *json = strstr(line, "\"msg\"");
	assert_non_null(json);
	assert_string_equal(json, "\"msg\":\"query\",\"transport\":\"tls\","
				  "\"client\":\"192.0.2.10\",\"port\":5300,"
				  "\"id\":\"kid-1\",\"group\":\"kids\","
				  "\"name\":\"h1.example.test.\",\"type\":"
				  "\"AAAA\","
				  "\"rcode\":\"NOERROR\",\"source\":"
				  "\"upstream\","
				  "\"upstream\":\"tcp://127.0.0.1:5335\","
				  "\"latency_ms\":2.500,\"policy\":\"pass\","
				  "\"list\":null}"
				  "\n");
	assert_memory_equal(line, "{\"ts\":\"", 7);
}

static void test_odd_names_and_sources(void **state)
{
	(void)state;
	/* "q\"u\\o.t\x01\xff" . example; a dot inside a label */
	static const uint8_t name[] = "\x09q\"u\\o.t\x01\xff\x07"
				      "example";
	uint8_t wire[64];
	size_t len = make(wire, name, sizeof(name), 65);
	dv_query_t q;
	query(&q, wire, len, DV_SCHEME_UDP);
	q.verdict = DV_VERDICT_BLOCKED;
	q.stale = true; /* the policy's word wins */
	q.list = "ads";
	dv_qlog_entry_t e;
	dv_qlog_entry_fill(&e, &q, wire, len, 1000);
	char line[DV_QLOG_LINE_MAX];
	dv_qlog_format(&e, false, line, sizeof(line));
	assert_non_null(strstr(line, " q\\\"u\\\\o\\.t\\001\\255.example. "
				     "HTTPS "
				     "NOERROR policy 0.000ms id=- group=- "
				     "policy=blocked/ads upstream=-\n"));
	dv_qlog_format(&e, true, line, sizeof(line));
	assert_non_null(strstr(line, "\"name\":\"q\\\\\\\"u\\\\\\\\o\\\\.t"
				     "\\\\001\\\\255.example.\""));
	assert_non_null(strstr(line, "\"id\":null,\"group\":null"));
	assert_non_null(strstr(line, "\"policy\":\"blocked\",\"list\":"
				     "\"ads\"}"));
	q.verdict = DV_VERDICT_NONE;
	q.list = NULL;
	dv_qlog_entry_fill(&e, &q, wire, len, 1000);
	dv_qlog_format(&e, true, line, sizeof(line));
	assert_non_null(strstr(line, "\"source\":\"stale\""));
	assert_non_null(strstr(line, "\"policy\":null,\"list\":null}"));
}

static void test_formerr_and_ipv6(void **state)
{
	(void)state;
	/* two questions: no question is known */
	static const uint8_t name[] = "\x01"
				      "a";
	uint8_t wire[64];
	size_t len = make(wire, name, sizeof(name), 1);
	wire[5] = 2;
	dv_query_t q;
	query(&q, wire, len, DV_SCHEME_QUIC);
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&q.peer;
	memset(s6, 0, sizeof(*s6));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(853);
	inet_pton(AF_INET6, "2001:db8::7", &s6->sin6_addr);
	uint8_t answer[12];
	memcpy(answer, wire, 12);
	answer[3] = 1; /* FORMERR */
	dv_qlog_entry_t e;
	dv_qlog_entry_fill(&e, &q, answer, sizeof(answer), 1000);
	char line[DV_QLOG_LINE_MAX];
	dv_qlog_format(&e, false, line, sizeof(line));
	assert_non_null(strstr(line, " query quic 2001:db8::7#853 - - FORMERR "
				     "local "));
	dv_qlog_format(&e, true, line, sizeof(line));
	assert_non_null(strstr(line, "\"client\":\"2001:db8::7\",\"port\":"
				     "853"));
	assert_non_null(strstr(line, "\"name\":null,\"type\":null"));
	/* a name longer than its message: cut, still a line */
	memset(&q.view, 0, sizeof(q.view));
	q.view.qname_len = 200;
	dv_qlog_entry_fill(&e, &q, answer, sizeof(answer), 1000);
	assert_int_equal(e.qname_len, 0);
}

/* Every byte value in every place of a name makes a line whose name field
 * is closed and whose length fits. */
static void test_any_bytes(void **state)
{
	(void)state;
	dv_qlog_entry_t e;
	memset(&e, 0, sizeof(e));
	char line[DV_QLOG_LINE_MAX];
	for (unsigned b = 0; b < 256; b++) {
		e.qname_len = 255;
		for (size_t i = 0; i < 255; i++)
			e.qname[i] = (uint8_t)(i % 64 == 0 ? 63 : b);
		memset(e.ident, 'x', sizeof(e.ident) - 1);
		memset(e.group, '"', sizeof(e.group) - 1);
		memset(e.upstream, '\\', sizeof(e.upstream) - 1);
		e.transport = 0xff;
		e.source = 0xff;
		e.verdict = 0xff;
		size_t n = dv_qlog_format(&e, true, line, sizeof(line));
		assert_true(n < sizeof(line));
		assert_int_equal(line[n - 1], '\n');
		assert_int_equal(line[n - 2], '}');
		n = dv_qlog_format(&e, false, line, sizeof(line));
		assert_int_equal(line[n - 1], '\n');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_and_json),
		cmocka_unit_test(test_odd_names_and_sources),
		cmocka_unit_test(test_formerr_and_ipv6),
		cmocka_unit_test(test_any_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The query log's lines (src/daemon/querylog_fmt.c) from peer-controlled
 * bytes: the first 4 bytes of the input choose the transport, source,
 * verdict and stale flag, the next 64 the client ID / group / upstream
 * strings (any bytes), the rest is the client's DNS message (parsed by the
 * core's wire view as in the daemon) and is answered as it is.  Every line
 * must fit its buffer and end in a newline; a JSON line must hold no raw
 * control character, close its object, and have every string closed
 * (quotes outside escapes pair up).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "src/core/wire.h"
#include "src/daemon/querylog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const char *line, size_t n)
{
	if (n < 3 || line[0] != '{' || line[n - 1] != '\n' ||
	    line[n - 2] != '}')
		abort();
	int quotes = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20)
			abort();
		if (c == '\\') {
			i++; /* the escaped character */
			continue;
		}
		if (c == '"')
			quotes++;
	}
	if (quotes % 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4 + 64 || size - 68 > DV_QUERY_INLINE)
		return 0;
	dv_query_t *q = calloc(1, sizeof(*q));
	if (!q)
		return 0;
	q->transport = data[0];
	q->source = data[1];
	q->verdict = data[2];
	q->stale = data[3] & 1;
	char strs[3][32];
	memcpy(strs[0], data + 4, 31);
	memcpy(strs[1], data + 4 + 21, 31);
	memcpy(strs[2], data + 4 + 33, 31);
	for (int i = 0; i < 3; i++)
		strs[i][31] = '\0';
	memcpy(q->ident, strs[0], sizeof(strs[0]));
	q->group = (data[3] & 2) ? strs[1] : NULL;
	q->upstream = (data[3] & 4) ? strs[2] : NULL;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&q->peer;
	s6->sin6_family = (data[3] & 8) ? AF_INET6 : AF_INET;
	memcpy(&s6->sin6_addr, data + 40, 16);
	q->wire = q->inline_buf;
	q->len = (uint16_t)(size - 68);
	memcpy(q->wire, data + 68, q->len);
	(void)dv_wire_parse_query(q->wire, q->len, &q->view);
	dv_qlog_entry_t e;
	dv_qlog_entry_fill(&e, q, q->wire, q->len, data[0] * 1000u);
	char line[DV_QLOG_LINE_MAX];
	size_t n = dv_qlog_format(&e, true, line, sizeof(line));
	if (n >= sizeof(line))
		abort();
	check_json(line, n);
	n = dv_qlog_format(&e, false, line, sizeof(line));
	if (n >= sizeof(line) || n == 0 || line[n - 1] != '\n')
		abort();
	free(q);
	return 0;
}

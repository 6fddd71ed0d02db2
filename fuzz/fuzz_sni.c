/*
 * SNI: bytes as the extension_data of a ClientHello's server_name
 * extension (what the DoQ listener parses before GnuTLS does), and as a
 * name for the host-name check every TLS listener applies.  Besides
 * memory errors it checks the parser against a model walked here:
 *  - a list is accepted exactly when its 16-bit length covers the rest,
 *    it is not empty, every entry's length stays inside it, and it holds
 *    at most one host_name entry, which is not empty;
 *  - the name returned is that entry's bytes, inside the input;
 *  - a name the check accepts has 1..253 bytes of letters, digits, '-'
 *    and '.', no empty label, no label over 63, no hyphen at a label's
 *    edge, and a last label that is not all digits.
 *
 * Input: the extension_data (the whole input is also checked as a name).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/tls/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static bool digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool ldh(uint8_t c)
{
	return digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-';
}

/* The host-name rule, written the other way round: label by label. */
static bool model_host(const uint8_t *p, size_t n)
{
	if (n == 0 || n > DV_SNI_MAX)
		return false;
	size_t i = 0;
	bool last_numeric = false;
	for (;;) {
		size_t start = i;
		bool numeric = true;
		while (i < n && p[i] != '.') {
			if (!ldh(p[i]))
				return false;
			numeric = numeric && digit(p[i]);
			i++;
		}
		size_t len = i - start;
		if (len == 0 || len > 63 || p[start] == '-' || p[i - 1] == '-')
			return false;
		last_numeric = numeric;
		if (i == n)
			break;
		i++; /* the dot; a name ending in one fails on the empty label */
	}
	return !last_numeric;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	CHECK(dv_sni_host_name((const char *)data, size) ==
	      model_host(data, size));

	const char *name = (const char *)data;
	size_t len = 1;
	int r = dv_sni_parse(data, size, &name, &len);

	bool ok = size > 2 && (size_t)(data[0] << 8 | data[1]) == size - 2;
	const uint8_t *host = NULL;
	size_t host_len = 0;
	for (size_t off = 2; ok && off < size;) {
		if (size - off < 3) {
			ok = false;
			break;
		}
		size_t n = (size_t)(data[off + 1] << 8 | data[off + 2]);
		if (n > size - off - 3) {
			ok = false;
			break;
		}
		if (data[off] == 0) {
			if (n == 0 || host)
				ok = false;
			host = data + off + 3;
			host_len = n;
		}
		off += 3 + n;
	}
	if (!ok) {
		CHECK(r == DV_EMALFORMED);
		CHECK(name == NULL && len == 0);
		return 0;
	}
	CHECK(r == 0);
	CHECK((const uint8_t *)name == host && len == host_len);
	if (name) {
		CHECK((const uint8_t *)name >= data &&
		      (const uint8_t *)name + len <= data + size);
		CHECK(dv_sni_host_name(name, len) ==
		      model_host((const uint8_t *)name, len));
	}
	return 0;
}

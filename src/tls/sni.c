/*
 * The SNI a TLS listener records: the host-name check and the
 * ServerNameList parser.  See sni.h.
 */
#include "src/tls/sni.h"

#include "src/core/errors.h"

#define NAME_TYPE_HOST_NAME 0 /* RFC 6066 NameType host_name */
#define LABEL_MAX 63

static bool is_alnum(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9');
}

bool dv_sni_host_name(const char *name, size_t len)
{
	if (!name || len == 0 || len > DV_SNI_MAX)
		return false;
	const unsigned char *p = (const unsigned char *)name;
	size_t start = 0; /* of the current label */
	bool all_digits = true;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || p[i] == '.') {
			size_t n = i - start;
			/* an empty label: a leading, doubled or trailing dot */
			if (n == 0 || n > LABEL_MAX || p[start] == '-' ||
			    p[i - 1] == '-')
				return false;
			if (i == len)
				break;
			start = i + 1;
			all_digits = true;
			continue;
		}
		if (p[i] != '-' && !is_alnum(p[i]))
			return false;
		if (p[i] < '0' || p[i] > '9')
			all_digits = false;
	}
	/* RFC 1123 §2.1: the highest-level label of a host name is never
	 * numeric, which is what tells a host name from an IPv4 literal */
	return !all_digits;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int dv_sni_parse(const uint8_t *ext, size_t ext_len, const char **name,
		 size_t *len)
{
	*name = NULL;
	*len = 0;
	if (ext_len < 2 || get16(ext) != ext_len - 2 || ext_len == 2)
		return DV_EMALFORMED;
	const uint8_t *host = NULL;
	size_t host_len = 0;
	size_t off = 2;
	while (off < ext_len) {
		/* every entry: a NameType byte and a 16-bit length */
		if (ext_len - off < 3)
			return DV_EMALFORMED;
		uint8_t type = ext[off];
		size_t n = get16(ext + off + 1);
		off += 3;
		if (n > ext_len - off)
			return DV_EMALFORMED;
		if (type == NAME_TYPE_HOST_NAME) {
			if (n == 0 || host)
				return DV_EMALFORMED;
			host = ext + off;
			host_len = n;
		}
		off += n;
	}
	*name = (const char *)host;
	*len = host_len;
	return 0;
}

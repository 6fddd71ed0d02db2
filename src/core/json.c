#include "src/core/json.h"

#include <stdint.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at `s` (at most `len` bytes), or
 * 0 when it is not one (overlong forms, surrogates and code points past
 * U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

size_t dv_json_escape(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len;) {
		char esc[8];
		size_t n = 0, take = 1;
		unsigned char c = u[i];
		if (c == '"' || c == '\\') {
			esc[n++] = '\\';
			esc[n++] = (char)c;
		} else if (c == '\n') {
			memcpy(esc, "\\n", n = 2);
		} else if (c == '\t') {
			memcpy(esc, "\\t", n = 2);
		} else if (c == '\r') {
			memcpy(esc, "\\r", n = 2);
		} else if (c < 0x20 || c == 0x7f ||
			   (c >= 0x80 && !(take = utf8_len(u + i, len - i)))) {
			/* a control character or a byte that is not UTF-8 */
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
			take = 1;
		} else {
			n = take;
			memcpy(esc, u + i, n);
		}
		if (o + n > cap - 1)
			break;
		memcpy(out + o, esc, n);
		o += n;
		i += take;
	}
	out[o] = '\0';
	return o;
}

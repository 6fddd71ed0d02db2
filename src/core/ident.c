/*
 * Client identities: the label check, the ID in a DoH path, a TLS SNI or
 * a client certificate's name, and the glob patterns the policy's
 * `clients` entries match IDs with.
 */
#include "src/core/ident.h"

#include <string.h>

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

bool dv_ident_label_ok(const char *s, size_t n)
{
	if (n == 0 || n > DV_IDENT_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ldh(s[i]))
			return false;
	return true;
}

static size_t copy_id(const char *s, size_t n, char *out)
{
	if (!dv_ident_label_ok(s, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		out[i] = lower(s[i]);
	out[n] = '\0';
	return n;
}

size_t dv_ident_from_path(const char *path, size_t plen, const char *served,
			  char *out)
{
	size_t slen = strlen(served);
	/* "/" serves "/{id}" */
	if (slen > 0 && served[slen - 1] == '/')
		slen--;
	if (plen <= slen + 1 || memcmp(path, served, slen) != 0 ||
	    path[slen] != '/')
		return 0;
	return copy_id(path + slen + 1, plen - slen - 1, out);
}

size_t dv_ident_from_sni(const char *sni, const char *server, char *out)
{
	size_t n = strlen(sni), slen = strlen(server);
	if (n > 0 && sni[n - 1] == '.')
		n--;
	if (slen == 0 || n <= slen + 1)
		return 0;
	size_t idlen = n - slen - 1;
	if (sni[idlen] != '.')
		return 0;
	for (size_t i = 0; i < slen; i++)
		if (lower(sni[idlen + 1 + i]) != lower(server[i]))
			return 0;
	return copy_id(sni, idlen, out);
}

size_t dv_ident_from_cert_name(const char *name, size_t len, char *out)
{
	size_t n = 0;
	while (n < len && name[n] != '.')
		n++;
	return copy_id(name, n, out);
}

bool dv_ident_glob(const char *pattern, const char *id)
{
	/* the classic two-pointer match: remember the last '*' and retry
	 * from one character further on a mismatch */
	const char *p = pattern, *s = id, *star = NULL, *mark = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			mark = s;
		} else if (*p == '?' || (*p && lower(*p) == lower(*s))) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++mark;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/*
 * Block and allow lists: the line parsers (lists.h).
 */
#include "src/policy/lists.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/policy/suffix.h"

#define LINE_MAX_BYTES 4096

static bool space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Cut `line` at the first '#' that starts a comment (at the start or
 * after a space) and trim both ends; returns the new start, *len set. */
static char *trim(char *line, size_t *len, bool hash_comments)
{
	size_t n = *len;
	for (size_t i = 0; hash_comments && i < n; i++)
		if (line[i] == '#' && (i == 0 || space(line[i - 1])))
			n = i;
	while (n > 0 && space(line[n - 1]))
		n--;
	size_t b = 0;
	while (b < n && space(line[b]))
		b++;
	*len = n - b;
	return line + b;
}

/* The next whitespace-separated token of [*p, end), or NULL. */
static char *token(char **p, char *end, size_t *len)
{
	char *s = *p;
	while (s < end && space(*s))
		s++;
	if (s == end)
		return NULL;
	char *e = s;
	while (e < end && !space(*e))
		e++;
	*len = (size_t)(e - s);
	*p = e;
	return s;
}

/* hosts files map these to loopback addresses for the host's own sake */
static bool hosts_own_name(const char *n, size_t len)
{
	static const char *const own[] = {
		"localhost",
		"localhost.localdomain",
		"local",
		"broadcasthost",
		"ip6-localhost",
		"ip6-loopback",
		"ip6-localnet",
		"ip6-mcastprefix",
		"ip6-allnodes",
		"ip6-allrouters",
		"ip6-allhosts",
		"0.0.0.0",
		NULL,
	};
	for (unsigned i = 0; own[i]; i++)
		if (strlen(own[i]) == len && memcmp(own[i], n, len) == 0)
			return true;
	return false;
}

static int parse_hosts(char *line, size_t len, dv_list_add_fn add, void *ctx,
		       dv_list_stats_t *st)
{
	char *p = line, *end = line + len, addr[INET6_ADDRSTRLEN + 1];
	uint8_t bin[16];
	size_t n = 0;
	char *a = token(&p, end, &n);
	if (!a || n >= sizeof(addr))
		goto bad;
	memcpy(addr, a, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, bin) != 1 &&
	    inet_pton(AF_INET6, addr, bin) != 1)
		goto bad;
	unsigned names = 0, bad = 0;
	char *name;
	while ((name = token(&p, end, &n))) {
		names++;
		if (hosts_own_name(name, n)) {
			st->skipped++;
			continue;
		}
		size_t nl = dv_suffix_normalize(name, n);
		if (!nl) {
			bad++;
			continue;
		}
		int ret = add(ctx, name, nl, false);
		if (ret)
			return ret;
		st->rules++;
	}
	if (names == 0 || bad)
		st->bad++;
	return 0;
bad:
	st->bad++;
	return 0;
}

static int parse_domains(char *line, size_t len, dv_list_add_fn add, void *ctx,
			 dv_list_stats_t *st)
{
	char *p = line, *end = line + len;
	size_t n = 0, extra;
	char *name = token(&p, end, &n);
	if (!name || token(&p, end, &extra)) {
		st->bad++;
		return 0;
	}
	size_t nl = dv_suffix_normalize(name, n);
	if (!nl) {
		st->bad++;
		return 0;
	}
	int ret = add(ctx, name, nl, false);
	if (ret == 0)
		st->rules++;
	return ret;
}

static int parse_adblock(char *line, size_t len, dv_list_add_fn add, void *ctx,
			 dv_list_stats_t *st)
{
	bool except = false;
	if (line[0] == '[') /* "[Adblock Plus 2.0]" */
		return 0;
	if (len >= 2 && line[0] == '@' && line[1] == '@') {
		except = true;
		line += 2;
		len -= 2;
	}
	/* "||name^", optionally "||name^|"; anything else is another kind
	 * of rule (a path, a cosmetic filter, options) this does not do */
	if (len < 4 || line[0] != '|' || line[1] != '|') {
		st->skipped++;
		return 0;
	}
	char *name = line + 2;
	size_t n = 0;
	while (n < len - 2 && name[n] != '^')
		n++;
	size_t rest = len - 2 - n;
	if (rest == 0 || !(rest == 1 || (rest == 2 && name[n + 1] == '|'))) {
		st->skipped++; /* no '^', or options / more after it */
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (name[i] == '*' || name[i] == '/' || name[i] == ':') {
			st->skipped++; /* wildcards, paths, ports */
			return 0;
		}
	}
	size_t nl = dv_suffix_normalize(name, n);
	if (!nl) {
		st->bad++;
		return 0;
	}
	int ret = add(ctx, name, nl, except);
	if (ret == 0) {
		st->rules++;
		st->exceptions += except;
	}
	return ret;
}

int dv_list_parse_line(unsigned fmt, char *line, size_t len, dv_list_add_fn add,
		       void *ctx, dv_list_stats_t *st)
{
	st->lines++;
	/* adblock's '#' starts cosmetic rules ("example.com##.ad"), not
	 * comments, except at the start of the line */
	line = trim(line, &len, fmt != DV_LIST_ADBLOCK);
	if (len == 0 || line[0] == '#' || line[0] == '!')
		return 0;
	switch (fmt) {
	case DV_LIST_HOSTS:
		return parse_hosts(line, len, add, ctx, st);
	case DV_LIST_DOMAINS:
		return parse_domains(line, len, add, ctx, st);
	case DV_LIST_ADBLOCK:
		return parse_adblock(line, len, add, ctx, st);
	default:
		st->bad++;
		return 0;
	}
}

int dv_list_parse_buffer(unsigned fmt, const char *buf, size_t len,
			 dv_list_add_fn add, void *ctx, dv_list_stats_t *st)
{
	char line[LINE_MAX_BYTES];
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		if (n >= sizeof(line)) {
			st->lines++;
			st->bad++;
		} else {
			memcpy(line, buf + pos, n);
			int ret =
				dv_list_parse_line(fmt, line, n, add, ctx, st);
			if (ret)
				return ret;
		}
		pos += n + 1;
	}
	return 0;
}

int dv_list_parse_file(unsigned fmt, const char *path, dv_list_add_fn add,
		       void *ctx, dv_list_stats_t *st)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret = 0;
	while (ret == 0 && (n = getline(&line, &cap, f)) >= 0) {
		size_t len = (size_t)n;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (len >= LINE_MAX_BYTES) {
			st->lines++;
			st->bad++;
			continue;
		}
		ret = dv_list_parse_line(fmt, line, len, add, ctx, st);
	}
	if (ret == 0 && ferror(f))
		ret = -EIO;
	free(line);
	fclose(f);
	return ret;
}

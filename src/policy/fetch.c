/*
 * One conditional fetch of a list's URL (fetch.h).
 */
#include "src/policy/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct {
	FILE *f;
	uint64_t bytes, max;
	bool too_big;
	const bool *stop;
	dv_fetch_validators_t got;
} xfer_t;

int dv_fetch_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void dv_fetch_global_cleanup(void)
{
	curl_global_cleanup();
}

/* curl's progress callback: non-zero aborts the transfer */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	const xfer_t *x = arg;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return x->stop && __atomic_load_n(x->stop, __ATOMIC_RELAXED);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	xfer_t *x = arg;
	size_t len = size * n;
	if (x->bytes + len > x->max) {
		x->too_big = true;
		return 0; /* curl aborts with CURLE_WRITE_ERROR */
	}
	x->bytes += len;
	return fwrite(data, 1, len, x->f);
}

/* A header's value into `out` when the line is "`name`: value". */
static void header_value(const char *line, size_t len, const char *name,
			 char *out, size_t cap)
{
	size_t nl = strlen(name);
	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 ||
	    line[nl] != ':')
		return;
	const char *v = line + nl + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
			   end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t n = (size_t)(end - v);
	if (n == 0 || n >= cap)
		return; /* absurdly long: not used */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < ' ')
			return;
	memcpy(out, v, n);
	out[n] = '\0';
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	xfer_t *x = arg;
	size_t len = size * n;
	/* a redirect's headers come first: keep the last response's */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		memset(&x->got, 0, sizeof(x->got));
	header_value(data, len, "etag", x->got.etag, sizeof(x->got.etag));
	header_value(data, len, "last-modified", x->got.last_modified,
		     sizeof(x->got.last_modified));
	return len;
}

int dv_fetch(const char *url, const char *path, const char *ca,
	     uint64_t max_bytes, unsigned timeout_ms, const bool *stop,
	     dv_fetch_validators_t *v, char *why, size_t why_len)
{
	int ret = -EIO;
	char line[320];
	struct curl_slist *hdrs = NULL;
	xfer_t x = { .max = max_bytes, .stop = stop };
	snprintf(why, why_len, "out of memory");
	CURL *c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	x.f = fopen(path, "w");
	if (!x.f) {
		ret = -errno;
		snprintf(why, why_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (v->etag[0]) {
		snprintf(line, sizeof(line), "If-None-Match: %s", v->etag);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (v->last_modified[0]) {
		snprintf(line, sizeof(line), "If-Modified-Since: %s",
			 v->last_modified);
		hdrs = curl_slist_append(hdrs, line);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (ca && ca[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "dnsveil/" DV_VERSION);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* gzip if offered */
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (x.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		ret = -EFBIG;
		snprintf(why, why_len, "the body is over %llu bytes",
			 (unsigned long long)max_bytes);
	} else if (rc == CURLE_ABORTED_BY_CALLBACK) {
		ret = -ECANCELED;
		snprintf(why, why_len, "dnsveil is stopping");
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		ret = -ETIMEDOUT;
		snprintf(why, why_len, "%s", curl_easy_strerror(rc));
	} else if (rc != CURLE_OK) {
		snprintf(why, why_len, "%s", curl_easy_strerror(rc));
	} else if (status == 304) {
		ret = DV_FETCH_SAME;
	} else if (status != 200) {
		snprintf(why, why_len, "HTTP status %ld", status);
	} else if (fflush(x.f) != 0 || ferror(x.f)) {
		ret = -errno;
		snprintf(why, why_len, "%s: %s", path, strerror(errno));
	} else {
		*v = x.got;
		ret = DV_FETCH_NEW;
	}
out:
	if (x.f && fclose(x.f) != 0 && ret == DV_FETCH_NEW) {
		ret = -EIO;
		snprintf(why, why_len, "%s: cannot write", path);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}

#pragma once
/*
 * One conditional HTTP(S) fetch of a list, with libcurl: the body goes to
 * a file, at most `max_bytes` of it, within `timeout_ms`.  Only this file
 * of dnsveil includes curl.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	DV_FETCH_NEW = 0, /* 200: the body is in the file, validators set */
	DV_FETCH_SAME = 1, /* 304: nothing written, nothing to parse */
} dv_fetch_result_t;

typedef struct {
	char etag[256]; /* ETag, as sent */
	char last_modified[64]; /* Last-Modified, as sent */
} dv_fetch_validators_t;

/* Once, before any thread runs (curl_global_init). 0 or -EIO. */
int dv_fetch_global_init(void);
void dv_fetch_global_cleanup(void);

/*
 * GET `url` with If-None-Match / If-Modified-Since from `v` (where set),
 * writing the body to `path` (created or truncated) and, on a 200, the
 * response's validators into `v`.  Returns DV_FETCH_NEW, DV_FETCH_SAME,
 * -EFBIG (the body is over `max_bytes`: aborted), -ETIMEDOUT, -ECANCELED
 * (*stop became true: dnsveil is stopping), or -EIO with the reason (an
 * HTTP status, curl's message) in `why`.  On an error `path` may hold
 * part of a body: the caller removes it.  `stop` may be NULL; `ca`, a
 * CA bundle for https://, may be NULL or "" (the system store).
 */
int dv_fetch(const char *url, const char *path, const char *ca,
	     uint64_t max_bytes, unsigned timeout_ms, const bool *stop,
	     dv_fetch_validators_t *v, char *why, size_t why_len);

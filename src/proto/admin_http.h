#pragma once
/*
 * The admin listener's HTTP/1.1 request head parser (RFC 9112 2-3): the
 * method, the path of the request target (the query string cut off) and
 * where the head ends.  Header fields are read past but not kept: /metrics,
 * /healthz and /readyz take no parameters, and the answer always closes
 * the connection.  No allocation, no I/O; the caller bounds the bytes it
 * hands in (admin.c: a head over DV_ADMIN_HEAD_MAX is 431).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_ADMIN_HEAD_MAX 4096 /* request line + header fields */
#define DV_ADMIN_PATH_MAX 64   /* longer paths are no path we serve */

typedef enum {
	DV_ADMIN_GET,
	DV_ADMIN_HEAD,
	DV_ADMIN_POST, /* /reload */
	DV_ADMIN_OTHER,
} dv_admin_method_t;

typedef struct {
	dv_admin_method_t method;
	char path[DV_ADMIN_PATH_MAX]; /* NUL-terminated; "" if too long */
	bool path_too_long;
} dv_admin_req_t;

/*
 * Parse the request head at the start of `buf` (`len` bytes read so far).
 * Returns the head's length (> 0, its blank line included) with `req`
 * filled; 0 when the head is not complete yet and nothing seen so far is
 * wrong; DV_EMALFORMED when the bytes cannot be an HTTP/1.x request (a bad
 * request line, a control character, a field line without ':').
 */
int dv_admin_http_parse(const uint8_t *buf, size_t len, dv_admin_req_t *req);

#pragma once
/* JSON string escaping for the logs (RFC 8259 section 7). */
#include <stddef.h>

/*
 * Append `s` (`len` bytes, any bytes) to `out` as the inside of a JSON
 * string: '"' and '\\' escaped, control characters as \n, \t, \r or
 * \u00XX, bytes that are not valid UTF-8 as \u00XX of the byte (so the
 * line stays valid UTF-8 whatever a peer sent).  Writes at most `cap` - 1
 * bytes and a NUL, never cutting an escape in two; returns the bytes
 * written (without the NUL).  `cap` 0 writes nothing.
 */
size_t dv_json_escape(char *out, size_t cap, const char *s, size_t len);

#pragma once
/*
 * Client identities carried by the transports: a client ID is one DNS
 * label (letters, digits and '-', not at either end; 1..63 octets), taken
 * from the DoH path ("/dns-query/{id}") or from the TLS SNI
 * ("{id}.{server name}").  IDs compare case-insensitively, so they are
 * kept lowercased.  No allocation, no I/O.
 */
#include <stdbool.h>
#include <stddef.h>

#define DV_IDENT_MAX 63 /* a client ID: one label */

/* Whether the `n` bytes at `s` are one LDH label of 1..63 octets. */
bool dv_ident_label_ok(const char *s, size_t n);

/*
 * The client ID of the DoH request path `path` (`plen` bytes, the query
 * string excluded) served under `served` (a path a listener serves, e.g.
 * "/dns-query"): the path must be `served` + "/" + one label.  Writes the
 * label lowercased and NUL-terminated into `out` (DV_IDENT_MAX + 1 bytes)
 * and returns its length, or 0 when the path is not that shape.
 */
size_t dv_ident_from_path(const char *path, size_t plen, const char *served,
			  char *out);

/*
 * The client ID of the TLS SNI `sni` for the server name `server`
 * ("dns.example", no trailing dot): the SNI must be one label, '.', and
 * `server` (letter case ignored; a trailing dot on the SNI is ignored).
 * Writes it like dv_ident_from_path() and returns its length, or 0: a bare
 * server name, another name, or a first label that is no valid ID.
 */
size_t dv_ident_from_sni(const char *sni, const char *server, char *out);

/*
 * The client ID a verified TLS client certificate names (mTLS): `name` is
 * its first DNS subjectAltName or, when it has none, its subject CN (`len`
 * bytes, not NUL-terminated); the ID is its first label ("kid-7" of
 * "kid-7.clients.example", or of a CN "kid-7").  Writes it like
 * dv_ident_from_path() and returns its length, or 0 when that label is no
 * valid ID (a wildcard "*", an empty name, a byte that is not LDH).
 */
size_t dv_ident_from_cert_name(const char *name, size_t len, char *out);

/*
 * Whether the client ID `id` matches `pattern`: letters (case ignored),
 * digits and '-' match themselves, '?' one character and '*' any run of
 * characters ("kid-*", "*-laptop", "*").  No backtracking blow-up: at most
 * strlen(id) * strlen(pattern) steps.
 */
bool dv_ident_glob(const char *pattern, const char *id);

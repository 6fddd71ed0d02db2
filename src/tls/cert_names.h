#pragma once
/*
 * The names of a certificate file's leaf (its subjectAltName DNS names and
 * IP addresses), for DDR (README "Policy", "DDR"); and the client ID a
 * client certificate names (mTLS, tls.client-ca).
 */
#include <stddef.h>
#include <stdint.h>

#include "src/core/certnames.h"

/*
 * Read the first certificate of the PEM file `path` into `out` (names
 * beyond DV_CERT_MAX_* are left out).  Returns 0, or a negative error with
 * a message in `err`.
 */
int dv_tls_cert_names(const char *path, dv_cert_names_t *out, char *err,
		      size_t err_len);

/*
 * The client ID of a verified client certificate (DER, `der_len` bytes):
 * the first label of its first subjectAltName DNS name or, when it has
 * none, of its subject CN (src/core/ident.h dv_ident_from_cert_name()).
 * Writes it lowercased and NUL-terminated into `out` (DV_IDENT_MAX + 1
 * bytes) and returns its length, or 0: no such name, or not a valid ID.
 * Both TLS stacks call it, so DoT, DoH and DoQ read a certificate alike.
 */
size_t dv_tls_cert_der_id(const uint8_t *der, size_t der_len, char *out);

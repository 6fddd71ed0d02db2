#pragma once
/*
 * The names of a certificate file's leaf (its subjectAltName DNS names and
 * IP addresses), for DDR (README "Policy", "DDR").
 */
#include <stddef.h>

#include "src/core/certnames.h"

/*
 * Read the first certificate of the PEM file `path` into `out` (names
 * beyond DV_CERT_MAX_* are left out).  Returns 0, or a negative error with
 * a message in `err`.
 */
int dv_tls_cert_names(const char *path, dv_cert_names_t *out, char *err,
		      size_t err_len);

#pragma once
/*
 * Which upstream URL schemes have a connection module (registry.c), for
 * the config's checks and main's set-up.
 */
#include <stdbool.h>

#include "src/core/scheme.h"

/* Whether `scheme` can be an upstream (a module handles it). */
bool dv_upstream_scheme_known(dv_scheme_t scheme);
/* Whether its module needs the TLS library (dv_tls_init). */
bool dv_upstream_scheme_tls(dv_scheme_t scheme);

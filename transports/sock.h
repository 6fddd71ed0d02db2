#pragma once
/* Socket helpers shared by the transports. */
#include <stdbool.h>

#include "src/config/config.h"

/*
 * Create a non-blocking socket of `type` (SOCK_DGRAM/SOCK_STREAM) bound to
 * `url`'s address with SO_REUSEADDR and SO_REUSEPORT (every worker binds
 * its own; the kernel spreads clients), IPV6_V6ONLY for IPv6, and listening
 * when it is a stream socket.  Returns the fd or a negative errno, or
 * DV_EINUSE when the first socket of this process for that address finds
 * it held by another process (which SO_REUSEPORT would otherwise share).
 */
int dv_sock_listen(const dv_url_t *url, int type, int backlog);

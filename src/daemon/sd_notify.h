#pragma once
/*
 * Service-manager readiness notification: the sd_notify(3) datagram
 * protocol spoken directly, without libsystemd.
 *
 * systemd (Type=notify) passes the path of a Unix datagram socket in
 * $NOTIFY_SOCKET ("/path" or "@abstract"); the service sends it
 * newline-separated VAR=VALUE assignments, one datagram per message.
 * dnsveil sends READY=1 once every listener is bound, RELOADING=1 with
 * MONOTONIC_USEC (systemd >= 253 wants both) on SIGHUP followed by
 * READY=1 when the reload is done, and STOPPING=1 when the drain starts.
 * Without $NOTIFY_SOCKET every call does nothing, so the same binary runs
 * under systemd, in a container or in a shell.
 *
 * Why not libsystemd: the protocol is a stable, documented interface of a
 * few lines; linking libsystemd would pull it (and its dependencies) into
 * every container image where no systemd runs.
 */
#include <stddef.h>

/* Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET.  Returns 0 when sent
 * or when $NOTIFY_SOCKET is unset, -EINVAL for an address that is not a
 * Unix socket path, or the negative errno of socket()/sendto(). */
int dv_sd_notify(const char *state);

/* RELOADING=1 with MONOTONIC_USEC=<CLOCK_MONOTONIC in microseconds>, the
 * form systemd >= 253 needs to match a reload with its READY=1.  Returns
 * as dv_sd_notify(). */
int dv_sd_notify_reloading(void);

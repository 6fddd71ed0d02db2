#pragma once
/*
 * Dropping privileges once every listener is bound (user:, group:).
 *
 * dnsveil needs a privilege only to bind ports below 1024 (root, or
 * CAP_NET_BIND_SERVICE).  Everything opened before the drop stays open
 * (listening sockets, the TLS and QUIC contexts with their certificates
 * and keys, the admin listener, the lists loaded at start); what is opened
 * later is opened as the new user: the certificate and key a SIGHUP
 * re-reads, so they must be readable by it.
 *
 * Started as root with user: set, dnsveil clears its capability bounding
 * set, takes the user's uid and the group's gid (group:, else the user's
 * primary group) with no supplementary groups, and ends with no
 * capability at all.  Started as any user (root without user:, or a user
 * given CAP_NET_BIND_SERVICE by systemd's AmbientCapabilities= or
 * setpriv), it keeps its uid and drops every capability (the bounding set
 * too where CAP_SETPCAP allows).  Either way no_new_privs is set: nothing
 * dnsveil could exec would gain a privilege.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "src/config/config.h"

typedef struct {
	bool change; /* user: set: become uid/gid */
	uid_t uid;
	gid_t gid;
	char name[64]; /* for the log: user:group */
} dv_privileges_t;

/*
 * Look up user: and group: (names or numbers) into `p`.  DV_ECONFIG with a
 * message in `err` when one is unknown, or, with `can_switch`, when
 * dnsveil is not root and they name another user or group than its own
 * (only root can become someone else).  --check-config passes false: it
 * may be run by someone else than the service.
 */
int dv_privileges_resolve(const dv_config_t *cfg, bool can_switch,
			  dv_privileges_t *p, char *err, size_t err_len);

/*
 * Drop as above.  Call on the main thread before any other thread starts
 * (capabilities are per thread; the threads started later inherit the
 * empty sets).  0, or DV_ECONFIG with the step that failed in `err`.
 */
int dv_privileges_drop(const dv_privileges_t *p, char *err, size_t err_len);

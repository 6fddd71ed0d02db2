/*
 * Dropping privileges (src/daemon/privileges.h), with the raw capset(2)
 * and prctl(2) calls rather than libcap: the whole job is "no capability
 * left", which needs no capability names or text forms.
 */
#include "src/daemon/privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/core/log.h"

/* A number: all digits (the config's check limits its length). */
static bool numeric(const char *s, unsigned long *v)
{
	char *end;
	if (!*s)
		return false;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return !*end && !errno;
}

static int lookup_user(const char *name, uid_t *uid, gid_t *gid, char *err,
		       size_t err_len)
{
	unsigned long v;
	struct passwd *pw = getpwnam(name);
	if (!pw && numeric(name, &v))
		pw = getpwuid((uid_t)v);
	if (pw) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
		return 0;
	}
	if (numeric(name, &v)) {
		/* a number with no passwd entry (a container's arbitrary
		 * uid): its group must be given */
		*uid = (uid_t)v;
		*gid = (gid_t)-1;
		return 0;
	}
	snprintf(err, err_len, "user: %s: no such user", name);
	return DV_ECONFIG;
}

static int lookup_group(const char *name, gid_t *gid, char *err, size_t err_len)
{
	unsigned long v;
	struct group *gr = getgrnam(name);
	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (numeric(name, &v)) {
		*gid = (gid_t)v;
		return 0;
	}
	snprintf(err, err_len, "group: %s: no such group", name);
	return DV_ECONFIG;
}

int dv_privileges_resolve(const dv_config_t *cfg, bool can_switch,
			  dv_privileges_t *p, char *err, size_t err_len)
{
	memset(p, 0, sizeof(*p));
	if (!cfg->user[0]) {
		if (cfg->group[0]) {
			snprintf(err, err_len,
				 "group: %s: needs user: (the user to run as)",
				 cfg->group);
			return DV_ECONFIG;
		}
		return 0;
	}
	int ret = lookup_user(cfg->user, &p->uid, &p->gid, err, err_len);
	if (ret == 0 && cfg->group[0])
		ret = lookup_group(cfg->group, &p->gid, err, err_len);
	if (ret)
		return ret;
	if (p->gid == (gid_t)-1) {
		snprintf(err, err_len,
			 "user: %s: not in the user database: set group: too",
			 cfg->user);
		return DV_ECONFIG;
	}
	p->change = true;
	snprintf(p->name, sizeof(p->name), "%.30s:%.30s", cfg->user,
		 cfg->group[0] ? cfg->group : "(its group)");
	if (!can_switch || geteuid() == 0)
		return 0;
	if (p->uid != geteuid() || p->uid != getuid()) {
		snprintf(err, err_len,
			 "user: %s: dnsveil runs as uid %u, not root, and "
			 "cannot become uid %u (start it as root, or leave "
			 "user: out)",
			 cfg->user, (unsigned)geteuid(), (unsigned)p->uid);
		return DV_ECONFIG;
	}
	if (p->gid != getegid() || p->gid != getgid()) {
		snprintf(err, err_len,
			 "group: dnsveil runs as gid %u, not root, and cannot "
			 "become gid %u (start it as root, or leave group: "
			 "out)",
			 (unsigned)getegid(), (unsigned)p->gid);
		return DV_ECONFIG;
	}
	return 0;
}

static int fail(char *err, size_t err_len, const char *what)
{
	snprintf(err, err_len, "cannot drop privileges: %s: %s", what,
		 strerror(errno));
	return DV_ECONFIG;
}

/* Empty effective, permitted and inheritable sets of this thread. */
static int caps_clear(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

/* The bounding set, as far as CAP_SETPCAP allows: true when emptied. */
static bool bounding_clear(void)
{
	bool all = true;
	for (int cap = 0; cap < 64; cap++) {
		int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (in < 0)
			break; /* past the kernel's last capability */
		if (in == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
			all = false;
	}
	return all;
}

int dv_privileges_drop(const dv_privileges_t *p, char *err, size_t err_len)
{
	bool root = geteuid() == 0;
	/* while CAP_SETPCAP is still there */
	bool bounding = bounding_clear();
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL)
		return fail(err, err_len, "clearing the ambient set");
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
		return fail(err, err_len, "PR_SET_KEEPCAPS");
	if (p->change && root) {
		if (setgroups(0, NULL) != 0)
			return fail(err, err_len, "setgroups");
		if (setresgid(p->gid, p->gid, p->gid) != 0)
			return fail(err, err_len, "setresgid");
		if (setresuid(p->uid, p->uid, p->uid) != 0)
			return fail(err, err_len, "setresuid");
		/* for root the way back must be closed */
		if (p->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
			snprintf(err, err_len,
				 "cannot drop privileges: "
				 "uid 0 could be taken back");
			return DV_ECONFIG;
		}
	}
	if (caps_clear() != 0)
		return fail(err, err_len, "capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return fail(err, err_len, "PR_SET_NO_NEW_PRIVS");
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the threads with ptrace, which a process made
	 * undumpable by its setuid() would refuse */
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
	if (p->change && root)
		dv_log_info("running as %s (uid %u, gid %u), no capabilities",
			    p->name, (unsigned)p->uid, (unsigned)p->gid);
	else if (geteuid() == 0)
		dv_log_warn("running as root (uid 0) without capabilities: "
			    "set user: to run as an unprivileged user");
	else
		dv_log_info("running as uid %u, no capabilities%s",
			    (unsigned)geteuid(),
			    bounding ? ""
				     : " (bounding set kept: no CAP_SETPCAP)");
	return 0;
}

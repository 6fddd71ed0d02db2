/*
 * user: and group: looked up (src/daemon/privileges.c): names, numbers,
 * numbers with no passwd entry, the errors.  The drop itself changes the
 * test process for good; tests/integration/test_privileges.py checks it on
 * the real binary through /proc/PID/status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/daemon/privileges.h"

static int resolve(const char *user, const char *group, dv_privileges_t *p,
		   char *err, size_t err_len)
{
	static dv_config_t cfg;
	dv_config_defaults(&cfg);
	snprintf(cfg.user, sizeof(cfg.user), "%s", user);
	snprintf(cfg.group, sizeof(cfg.group), "%s", group);
	err[0] = '\0';
	return dv_privileges_resolve(&cfg, false, p, err, err_len);
}

static void test_names_and_numbers(void **state)
{
	(void)state;
	dv_privileges_t p;
	char err[256];

	assert_int_equal(resolve("", "", &p, err, sizeof(err)), 0);
	assert_false(p.change);

	/* Debian's nobody:nogroup */
	assert_int_equal(resolve("nobody", "", &p, err, sizeof(err)), 0);
	assert_true(p.change);
	assert_int_equal(p.uid, 65534);
	assert_int_equal(p.gid, 65534);
	assert_string_equal(p.name, "nobody:(its group)");
	assert_int_equal(resolve("nobody", "root", &p, err, sizeof(err)), 0);
	assert_int_equal(p.gid, 0);
	assert_int_equal(resolve("65534", "nogroup", &p, err, sizeof(err)), 0);
	assert_int_equal(p.uid, 65534);
	assert_int_equal(p.gid, 65534);

	/* a number with no passwd entry (a container's arbitrary uid) needs
	 * its group */
	assert_int_equal(resolve("4242", "4343", &p, err, sizeof(err)), 0);
	assert_int_equal(p.uid, 4242);
	assert_int_equal(p.gid, 4343);
	assert_int_equal(resolve("4242", "", &p, err, sizeof(err)), DV_ECONFIG);
	assert_string_equal(err, "user: 4242: not in the user database: set "
				 "group: too");
}

static void test_refusals(void **state)
{
	(void)state;
	dv_privileges_t p;
	char err[256];

	assert_int_equal(resolve("no-such-user-dv", "", &p, err, sizeof(err)),
			 DV_ECONFIG);
	assert_string_equal(err, "user: no-such-user-dv: no such user");
	assert_int_equal(resolve("nobody", "no-such-group-dv", &p, err,
				 sizeof(err)),
			 DV_ECONFIG);
	assert_string_equal(err, "group: no-such-group-dv: no such group");
	assert_int_equal(resolve("", "nogroup", &p, err, sizeof(err)),
			 DV_ECONFIG);
	assert_string_equal(err, "group: nogroup: needs user: (the user to run "
				 "as)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_numbers),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

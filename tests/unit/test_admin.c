/*
 * Unit tests for the admin listener's probes (src/daemon/admin.c):
 * /healthz from the workers' heartbeats, and the /readyz answers that do
 * not need an upstream pool (starting, draining).  The upstream part of
 * /readyz and the HTTP side are tested end to end in
 * tests/integration/test_admin.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/daemon/admin.h"
#include "src/daemon/worker.h"

static void test_healthz_heartbeats(void **state)
{
	(void)state;
	dv_worker_t w[2];
	memset(w, 0, sizeof(w));
	dv_worker_t *ws[2] = {&w[0], &w[1]};
	dv_config_t *cfg = NULL;
	dv_admin_view_t v = {.cfg = cfg, .workers = ws, .n_workers = 2};
	char why[160];

	/* not started yet: no heartbeat, nothing to hold against it */
	assert_true(dv_admin_healthy(&v, 100000, why, sizeof(why)));

	w[0].heartbeat_ms = 99000;
	w[1].heartbeat_ms = 100000 - DV_ADMIN_STALL_MS;
	assert_true(dv_admin_healthy(&v, 100000, why, sizeof(why)));

	/* worker 1's loop has not turned for 5.001 s */
	w[1].heartbeat_ms = 100000 - DV_ADMIN_STALL_MS - 1;
	assert_false(dv_admin_healthy(&v, 100000, why, sizeof(why)));
	assert_string_equal(why,
			    "worker 1: its loop has not turned for 5001 ms");

	/* a heartbeat stamped after `now` was read is no stall */
	w[1].heartbeat_ms = 100001;
	assert_true(dv_admin_healthy(&v, 100000, why, sizeof(why)));
}

static void test_readyz_starting_and_draining(void **state)
{
	(void)state;
	dv_admin_view_t v = {.n_workers = 0};
	char why[160];
	assert_false(dv_admin_ready(&v, false, false, why, sizeof(why)));
	assert_string_equal(why, "starting");
	/* draining wins over everything else */
	assert_false(dv_admin_ready(&v, true, true, why, sizeof(why)));
	assert_string_equal(why, "draining");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz_heartbeats),
		cmocka_unit_test(test_readyz_starting_and_draining),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

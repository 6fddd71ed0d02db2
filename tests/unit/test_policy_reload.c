/*
 * Unit tests for src/policy/policy_reload.c (included, to reach the
 * policy's internals): a reload swaps the whole state; a worker inside a
 * loop turn keeps the state it loaded, readable (ASan would see a use
 * after free), and the commit waits for it; the next turn reads the new
 * one.  Lists that stay the same keep their rules (the snapshot moves,
 * nothing is parsed again); a discarded build leaves everything as it
 * was; counters follow the names of groups; buckets start again when
 * rate limits change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "src/policy/policy_reload.c"

static char dir[64], list_path[512];

static void write_file(const char *name, const char *text, char *path)
{
	snprintf(path, 512, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A config with the list l and `groups` (YAML under groups:). */
static void load(dv_config_t *cfg, const char *groups)
{
	char path[512], yaml[2048], err[512];
	dv_config_defaults(cfg);
	snprintf(yaml, sizeof(yaml),
		 "listen: [\"udp://127.0.0.1:5353\"]\n"
		 "upstream: [\"udp://127.0.0.1:53\"]\n"
		 "lists:\n  l: { source: %s }\n"
		 "groups:\n%s",
		 list_path, groups);
	write_file("c.yaml", yaml, path);
	if (dv_config_load(cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/dv_polreload_XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("l.txt", "a.example\n", list_path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
	dv_policy_t *p;
	dv_policy_state_t *next;
	bool done;
} job_t;

static void *commit_thread(void *arg)
{
	job_t *j = arg;
	dv_policy_reload_commit(j->p, j->next);
	__atomic_store_n(&j->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

static const dv_cert_names_t no_cert;

static void test_commit_waits_for_a_turn(void **state)
{
	(void)state;
	static dv_config_t a, b;
	char err[512];
	load(&a, "  default: { block: [l] }\n");
	load(&b, "  default: { block: [l] }\n  lab: { block: [l], "
		 "rate-limit-qps: 5 }\n");
	dv_policy_t *p = NULL;
	assert_int_equal(dv_policy_new(&a, 7, &p, err, sizeof(err)), 0);
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	assert_non_null(w);
	assert_null(w->rl);
	dv_policy_worker_enter(w);
	const pstate_t *old = w->st;
	const snap_t *old_snap = w->snap;
	assert_int_equal(old->gen, 1);
	w->group_ctr[old->groups[0].slot][GC_QUERIES] = 41;

	job_t j = { .p = p };
	assert_int_equal(dv_policy_reload_prepare(p, &b, &no_cert, &j.next, err,
						  sizeof(err)),
			 0);
	/* the same lists: their rules move over, nothing parsed again */
	assert_ptr_equal(j.next->snap, old_snap);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, commit_thread, &j), 0);
	for (int i = 0;
	     i < 5000 && __atomic_load_n(&p->cur, __ATOMIC_SEQ_CST) == old;
	     i++) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	assert_ptr_not_equal(__atomic_load_n(&p->cur, __ATOMIC_SEQ_CST), old);
	/* the old state stays while this worker's turn goes on */
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	assert_false(__atomic_load_n(&j.done, __ATOMIC_SEQ_CST));
	assert_int_equal(w->st->n_groups, 1);
	assert_string_equal(w->st->groups[0].name, "default");
	dv_policy_worker_leave(w);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(j.done);

	/* the next turn: the new state, a rate limiter, default's
	 * counters kept at its slot */
	dv_policy_worker_enter(w);
	assert_int_equal(w->st->gen, 2);
	assert_int_equal(w->st->n_groups, 2);
	assert_ptr_equal(w->snap, old_snap);
	assert_non_null(w->rl);
	assert_int_equal(w->group_ctr[w->st->groups[0].slot][GC_QUERIES], 41);
	dv_policy_worker_leave(w);
	dv_policy_worker_free(w);
	dv_policy_free(p);
}

static void test_discard_and_dropped_names(void **state)
{
	(void)state;
	static dv_config_t a, b, c;
	char err[512];
	load(&a, "  default: { block: [l] }\n  kids: { block: [l] }\n");
	load(&b, "  default: { block: [l] }\n");
	load(&c, "  default: { block: [l] }\n  kids: { block: [l] }\n");
	dv_policy_t *p = NULL;
	assert_int_equal(dv_policy_new(&a, 7, &p, err, sizeof(err)), 0);
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	assert_non_null(w);
	pstate_t *first = p->cur;
	unsigned kids = first->groups[1].slot;
	w->group_ctr[kids][GC_BLOCKED] = 9;

	/* built, then discarded: the state in use keeps its rules */
	dv_policy_state_t *next = NULL;
	assert_int_equal(dv_policy_reload_prepare(p, &b, &no_cert, &next, err,
						  sizeof(err)),
			 0);
	assert_false(first->own_snap);
	dv_policy_reload_discard(p, next);
	assert_ptr_equal(p->cur, first);
	assert_true(first->own_snap);

	/* kids dropped: its counters are zeroed; back later from zero */
	assert_int_equal(dv_policy_reload_prepare(p, &b, &no_cert, &next, err,
						  sizeof(err)),
			 0);
	dv_policy_reload_commit(p, next);
	assert_int_equal(w->group_ctr[kids][GC_BLOCKED], 0);
	assert_int_equal(dv_policy_reload_prepare(p, &c, &no_cert, &next, err,
						  sizeof(err)),
			 0);
	dv_policy_reload_commit(p, next);
	assert_int_equal(p->cur->n_groups, 2);
	assert_int_equal(w->group_ctr[p->cur->groups[1].slot][GC_BLOCKED], 0);

	/* a list that cannot be read: refused, nothing changes */
	static dv_config_t bad;
	load(&bad, "  default: { block: [l] }\n");
	snprintf(bad.lists[0].source, sizeof(bad.lists[0].source), "%s/none",
		 dir);
	pstate_t *cur = p->cur;
	assert_int_not_equal(dv_policy_reload_prepare(p, &bad, &no_cert, &next,
						      err, sizeof(err)),
			     0);
	assert_null(next);
	assert_non_null(strstr(err, "lists.l.source"));
	assert_ptr_equal(p->cur, cur);
	assert_true(cur->own_snap);

	/* the same lists but a DDR that cannot be built (ddr.mode on
	 * without a server name): refused after the rules moved over, and
	 * they move back */
	static dv_config_t ddr;
	load(&ddr, "  default: { block: [l] }\n");
	ddr.ddr_mode = DV_DDR_ON;
	ddr.listen[0].scheme = DV_SCHEME_TLS;
	const snap_t *snap = cur->snap;
	int ret = dv_policy_reload_prepare(p, &ddr, &no_cert, &next, err,
					   sizeof(err));
	assert_int_not_equal(ret, 0);
	assert_null(next);
	assert_non_null(strstr(err, "ddr.mode"));
	assert_ptr_equal(p->cur, cur);
	assert_ptr_equal(cur->snap, snap);
	assert_true(cur->own_snap);
	dv_policy_worker_free(w);
	dv_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit_waits_for_a_turn),
		cmocka_unit_test(test_discard_and_dropped_names),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

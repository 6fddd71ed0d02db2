/*
 * Unit tests for src/policy/refresh.c (included, to reach its statics):
 * a file list read again when it changes, the snapshot swap and its
 * quiescent-state reclamation.  A worker inside a loop turn keeps the
 * snapshot it loaded, readable (ASan would see a use after free), and
 * the refresh waits for it; a worker between turns does not hold a
 * refresh up; an unchanged file costs no parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>

#include "src/policy/refresh.c"

/* One refresher pass with every list due. */
static void refresh_now(dv_policy_t *p)
{
	for (unsigned i = 0; i < p->cur->n_lists; i++)
		p->cur->lists[i].due_ms = 0;
	refresh_due(p, p->cur, mono_ms(), false);
}

static char dir[64];

static void write_file(const char *name, const char *text, char *path)
{
	snprintf(path, 512, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static dv_policy_t *policy(void)
{
	static dv_config_t cfg;
	char path[512], yaml[1024], err[512];
	dv_config_defaults(&cfg);
	strcpy(dir, "/tmp/dv_refresh_XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("l.txt", "a.example\n", path);
	snprintf(yaml, sizeof(yaml),
		 "listen: [\"udp://127.0.0.1:5353\"]\n"
		 "upstream: [\"udp://127.0.0.1:53\"]\n"
		 "lists:\n  l: { source: %s, refresh-s: 1 }\n"
		 "groups:\n  default: { block: [l] }\n",
		 path);
	write_file("c.yaml", yaml, path);
	if (dv_config_load(&cfg, path, err, sizeof(err)) != 0) {
		print_error("%s\n", err);
		fail();
	}
	dv_policy_t *p = NULL;
	assert_int_equal(dv_policy_new(&cfg, 7, &p, err, sizeof(err)), 0);
	assert_non_null(p);
	return p;
}

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static bool holds(const snap_t *s, const char *name)
{
	dv_suffix_hit_t hit;
	return dv_suffix_lookup(s->set, name, strlen(name), 1, &hit);
}

/* A new copy of the list, with a modification time of its own. */
static void change_list(const char *text)
{
	char path[512];
	write_file("l.txt", text, path);
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

typedef struct {
	dv_policy_t *p;
	bool done;
} job_t;

static void *refresh_thread(void *arg)
{
	job_t *j = arg;
	refresh_now(j->p);
	__atomic_store_n(&j->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_swap_waits_for_a_turn(void **state)
{
	(void)state;
	dv_policy_t *p = policy();
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	assert_non_null(w);
	dv_policy_worker_enter(w);
	const snap_t *old = w->snap;
	assert_ptr_equal(old, p->cur->snap);
	assert_true(holds(old, "a.example"));

	change_list("b.example\n");
	job_t j = { .p = p };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, refresh_thread, &j), 0);
	/* the new snapshot is swapped in ... */
	for (int i = 0; i < 5000 &&
			__atomic_load_n(&p->cur->snap, __ATOMIC_SEQ_CST) == old;
	     i++) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	const snap_t *cur = __atomic_load_n(&p->cur->snap, __ATOMIC_SEQ_CST);
	assert_ptr_not_equal(cur, old);
	assert_true(holds(cur, "b.example"));
	/* ... but the old one stays while this worker's turn goes on */
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	assert_false(__atomic_load_n(&j.done, __ATOMIC_SEQ_CST));
	assert_true(holds(w->snap, "a.example"));
	assert_false(holds(w->snap, "b.example"));
	dv_policy_worker_leave(w);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(j.done);
	/* the next turn reads the new one */
	dv_policy_worker_enter(w);
	assert_true(holds(w->snap, "b.example"));
	assert_false(holds(w->snap, "a.example"));
	list_t l;
	dv_policy_list_read(p, 0, &l);
	assert_int_equal(l.loads, 2);
	assert_int_equal(l.st.rules, 1);
	dv_policy_worker_free(w);
	dv_policy_free(p);
	cleanup();
}

static void test_idle_worker_and_unchanged_file(void **state)
{
	(void)state;
	dv_policy_t *p = policy();
	dv_policy_worker_t *w = dv_policy_worker_new(p);
	dv_policy_worker_enter(w);
	dv_policy_worker_leave(w); /* between turns: holds nothing */
	assert_null(w->snap);

	/* the same file: no parse, no swap */
	snap_t *before = p->cur->snap;
	refresh_now(p);
	list_t l;
	dv_policy_list_read(p, 0, &l);
	assert_int_equal(l.unchanged, 1);
	assert_int_equal(l.loads, 1);
	assert_ptr_equal(p->cur->snap, before);

	/* a new copy: swapped without waiting for the idle worker */
	change_list("c.example\nnot a name\n");
	refresh_now(p);
	assert_ptr_not_equal(p->cur->snap, before);
	assert_true(holds(p->cur->snap, "c.example"));
	dv_policy_list_read(p, 0, &l);
	assert_int_equal(l.loads, 2);
	assert_int_equal(l.st.bad, 1);

	/* a vanished file: a failure, the copy in use stays */
	char path[512];
	snprintf(path, sizeof(path), "%s/l.txt", dir);
	assert_int_equal(unlink(path), 0);
	snap_t *cur = p->cur->snap;
	refresh_now(p);
	dv_policy_list_read(p, 0, &l);
	assert_int_equal(l.failures, 1);
	assert_ptr_equal(p->cur->snap, cur);
	dv_policy_worker_free(w);
	dv_policy_free(p);
	cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swap_waits_for_a_turn),
		cmocka_unit_test(test_idle_worker_and_unchanged_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The certificate watcher's thread (certwatch.h).  Every signal stays
 * blocked here, as in every thread but main's sigwaitinfo.
 */
#include "src/daemon/certwatch.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "src/core/log.h"

struct dv_certwatch {
	int ino; /* inotify */
	int stop; /* eventfd: the thread ends when it is readable */
	int sig;
	pthread_t thread;
};

static void *watch_main(void *arg)
{
	dv_certwatch_t *w = arg;
	struct pollfd fds[2] = { { .fd = w->ino, .events = POLLIN },
				 { .fd = w->stop, .events = POLLIN } };
	bool pending = false;
	for (;;) {
		int n = poll(fds, 2, pending ? DV_CERTWATCH_SETTLE_MS : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (fds[1].revents & POLLIN))
			break;
		if (n == 0) { /* quiet for the settle time: reload */
			pending = false;
			kill(getpid(), w->sig);
			continue;
		}
		/* what changed does not matter: the directory holds the pair
		 * (or the symlink the pair goes through) */
		char buf[4096] __attribute__((aligned(8)));
		while (read(w->ino, buf, sizeof(buf)) > 0)
			;
		pending = true;
	}
	return NULL;
}

static int watch_dir(int ino, const char *path)
{
	char copy[512];
	snprintf(copy, sizeof(copy), "%s", path);
	const char *dir = dirname(copy);
	if (inotify_add_watch(ino, dir,
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
				      IN_DELETE | IN_MOVED_FROM) < 0)
		return -errno;
	return 0;
}

dv_certwatch_t *dv_certwatch_new(const char *cert, const char *key, int sig,
				 char *err, size_t err_len)
{
	dv_certwatch_t *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	w->sig = sig;
	w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	w->stop = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->ino < 0 || w->stop < 0) {
		snprintf(err, err_len, "inotify: %s", strerror(errno));
		goto fail;
	}
	const char *paths[] = { cert, key };
	for (int i = 0; i < 2; i++) {
		int ret = watch_dir(w->ino, paths[i]);
		if (ret) {
			snprintf(err, err_len,
				 "inotify on the directory of %s: %s", paths[i],
				 strerror(-ret));
			goto fail;
		}
	}
	int ret = pthread_create(&w->thread, NULL, watch_main, w);
	if (ret) {
		snprintf(err, err_len, "cannot start its thread: %s",
			 strerror(ret));
		goto fail;
	}
	return w;
fail:
	if (w->ino >= 0)
		close(w->ino);
	if (w->stop >= 0)
		close(w->stop);
	free(w);
	return NULL;
}

void dv_certwatch_free(dv_certwatch_t *w)
{
	if (!w)
		return;
	uint64_t one = 1;
	if (write(w->stop, &one, sizeof(one)) != sizeof(one))
		dv_log_warn("certificate watcher: cannot stop its thread");
	else
		pthread_join(w->thread, NULL);
	close(w->ino);
	close(w->stop);
	free(w);
}

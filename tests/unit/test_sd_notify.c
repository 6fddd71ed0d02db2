/*
 * Unit tests for the sd_notify datagrams (src/daemon/sd_notify.c): the
 * addresses $NOTIFY_SOCKET may hold (a path, an abstract name, unset, or
 * something else), and what arrives on a socket bound there.  dnsveil's
 * messages at start, reload and stop are tested end to end in
 * tests/integration/test_service.py.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "src/daemon/sd_notify.h"

/* A datagram socket bound to `name` ("/path" or "@abstract"). */
static int bind_manager(const char *name)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	memcpy(sun.sun_path, name, len);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				     len + (name[0] == '/'));
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, alen), 0);
	return fd;
}

static void recv_text(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = '\0';
}

static void test_unset_is_a_no_op(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(dv_sd_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(dv_sd_notify("READY=1"), 0);
}

static void test_path_socket(void **state)
{
	(void)state;
	char dir[] = "/tmp/dv-sd-notify-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = bind_manager(path);
	setenv("NOTIFY_SOCKET", path, 1);
	char buf[128];

	assert_int_equal(dv_sd_notify("READY=1"), 0);
	recv_text(fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1");

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long before = (unsigned long long)ts.tv_sec * 1000000ULL +
				    (unsigned long long)ts.tv_nsec / 1000ULL;
	assert_int_equal(dv_sd_notify_reloading(), 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long after = (unsigned long long)ts.tv_sec * 1000000ULL +
				   (unsigned long long)ts.tv_nsec / 1000ULL;
	recv_text(fd, buf, sizeof(buf));
	unsigned long long usec = 0;
	assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec),
			 1);
	assert_true(before <= usec && usec <= after);

	close(fd);
	unlink(path);
	rmdir(dir);
	/* nobody bound there any more: the error, not a crash */
	assert_int_equal(dv_sd_notify("STOPPING=1"), -ENOENT);
	unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@dv-sd-notify-unit-%d", (int)getpid());
	int fd = bind_manager(name);
	setenv("NOTIFY_SOCKET", name, 1);
	char buf[64];
	assert_int_equal(dv_sd_notify("STOPPING=1"), 0);
	recv_text(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STOPPING=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_bad_addresses(void **state)
{
	(void)state;
	/* relative, or another address family's notation */
	setenv("NOTIFY_SOCKET", "notify.sock", 1);
	assert_int_equal(dv_sd_notify("READY=1"), -EINVAL);
	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	assert_int_equal(dv_sd_notify("READY=1"), -EINVAL);
	/* longer than sun_path (108 bytes with its NUL) */
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longp, 1);
	assert_int_equal(dv_sd_notify("READY=1"), -EINVAL);
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unset_is_a_no_op),
		cmocka_unit_test(test_path_socket),
		cmocka_unit_test(test_abstract_socket),
		cmocka_unit_test(test_bad_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "transports/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/daemon/transport.h"

/*
 * SO_REUSEPORT lets every worker bind the same address, but also lets a
 * second dnsveil (or anything else running as the same user) join the
 * group without an error and silently take part of the traffic: QUIC
 * packets of established connections then land in the wrong process.  So
 * the first socket this process binds for an address is preceded by a
 * probe without SO_REUSEPORT, which fails when anybody else holds it.
 * Listeners are opened at start-up, so a small table and a lock do.
 */
#define MAX_BOUND 256

static struct {
	int type;
	socklen_t len;
	struct sockaddr_storage addr;
} bound[MAX_BOUND];
static unsigned n_bound;
static pthread_mutex_t bound_lock = PTHREAD_MUTEX_INITIALIZER;

/* True the first time this process binds (url, type). */
static bool first_bind(const dv_url_t *url, int type)
{
	bool first = true;
	pthread_mutex_lock(&bound_lock);
	for (unsigned i = 0; i < n_bound; i++)
		if (bound[i].type == type && bound[i].len == url->addr_len &&
		    memcmp(&bound[i].addr, &url->addr, url->addr_len) == 0) {
			first = false;
			break;
		}
	if (first && n_bound < MAX_BOUND) {
		bound[n_bound].type = type;
		bound[n_bound].len = url->addr_len;
		memcpy(&bound[n_bound].addr, &url->addr, url->addr_len);
		n_bound++;
	}
	pthread_mutex_unlock(&bound_lock);
	return first;
}

/* 0 when nobody else holds the address, DV_EINUSE when somebody does. */
static int probe_free(const dv_url_t *url, int type)
{
	int ret = dv_transport_bind_probe(url, type);
	return ret == -EADDRINUSE ? DV_EINUSE : ret;
}

int dv_sock_listen(const dv_url_t *url, int type, int backlog)
{
	if (first_bind(url, type)) {
		int free_ret = probe_free(url, type);
		if (free_ret < 0)
			return free_ret;
	}

	int fd = socket(url->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	if (fd < 0)
		return -errno;
	int one = 1;
	int ret;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (type == SOCK_DGRAM) {
		/* room for bursts: the kernel default (~208 KiB) overflows
		 * under a few thousand queries in flight; as root the cap
		 * (net.core.rmem_max) does not apply */
		int size = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
			       sizeof(size)) < 0)
			(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size,
					 sizeof(size));
	}
	if (url->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&url->addr, url->addr_len) < 0)
		goto fail;
	if (type == SOCK_STREAM && listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	ret = -errno;
	close(fd);
	return ret;
}

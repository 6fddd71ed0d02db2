#include "src/daemon/transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/log.h"

#define DV_MAX_TRANSPORTS 16

static const dv_transport_t *registry[DV_MAX_TRANSPORTS];
static unsigned n_registered;

void dv_transport_register(const dv_transport_t *t)
{
	dv_require(n_registered < DV_MAX_TRANSPORTS);
	registry[n_registered++] = t;
}

const dv_transport_t *dv_transport_find(dv_scheme_t scheme, unsigned n)
{
	for (unsigned i = 0; i < n_registered; i++) {
		if (!(registry[i]->schemes & (1u << scheme)))
			continue;
		if (n-- == 0)
			return registry[i];
	}
	return NULL;
}

int dv_transport_bind_probe(const dv_url_t *url, int type)
{
	int fd = socket(url->addr.ss_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, ret = 0;
	if (type == SOCK_STREAM)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				 sizeof(one));
	if (url->addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				 sizeof(one));
	if (bind(fd, (const struct sockaddr *)&url->addr, url->addr_len) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

#include "src/daemon/transport.h"

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

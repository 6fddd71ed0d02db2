#include "src/core/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int dv_ring_init(dv_ring_t *r, unsigned n, size_t slot_size)
{
	memset(r, 0, sizeof(*r));
	if (n == 0 || n > (1u << 24) || slot_size == 0)
		return -EINVAL;
	uint32_t cap = 1;
	while (cap < n)
		cap <<= 1;
	r->slots = calloc(cap, slot_size);
	if (!r->slots)
		return -ENOMEM;
	r->mask = cap - 1;
	r->slot_size = slot_size;
	return 0;
}

void dv_ring_deinit(dv_ring_t *r)
{
	free(r->slots);
	r->slots = NULL;
}

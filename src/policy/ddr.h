#pragma once
/*
 * DDR, Discovery of Designated Resolvers (RFC 9462): the SVCB answers of
 * _dns.resolver.arpa (and of _dns.{ddr.server-name}) made from the
 * configured tls://, https:// and quic:// listeners (README "Policy",
 * "DDR").
 *
 * Built once at start from the config and the certificate's names, then
 * only read: an answer is the prebuilt records behind the client's
 * question, no allocation.
 */
#include <stddef.h>
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/certnames.h"
#include "src/core/query.h"

typedef struct dv_ddr dv_ddr_t;

/* Whether `cfg` makes dnsveil answer resolver.arpa itself: ddr.mode not
 * off and a tls://, https:// or quic:// listener to designate. */
bool dv_ddr_wanted(const dv_config_t *cfg);

/*
 * Build the answers of `cfg` checked against `cert` (not loaded: no
 * certificate).  *out is NULL when !dv_ddr_wanted(cfg).  Returns 0, or
 * -ENOMEM / DV_ECONFIG with "ddr.mode: on: reason" in `err` (on cannot
 * advertise without a server name).
 */
int dv_ddr_new(const dv_config_t *cfg, const dv_cert_names_t *cert,
	       dv_ddr_t **out, char *err, size_t err_len);
void dv_ddr_free(dv_ddr_t *d);

/* Info lines: what is advertised, where it is answered and why not
 * elsewhere. */
void dv_ddr_log(const dv_ddr_t *d);

/*
 * The answer to `q` when its name is DDR's (resolver.arpa and below,
 * _dns.{server name}), written into `buf`; 0 for any other name, or a
 * negative error.
 */
int dv_ddr_answer(const dv_ddr_t *d, const dv_query_t *q, uint8_t *buf,
		  size_t cap, unsigned pad_block);

/*
 * The upstream protocols: one line per URL scheme, naming the connection
 * module that handles it (uconn.h).  A new protocol (DoH3, ODoH) is a new
 * conn_*.c with its ops table, and a line here.  The order is the order
 * in which the pool makes what the protocols share (pool_init): the TLS
 * client context before the QUIC one.
 */
#include "src/upstream/registry.h"

#include "src/upstream/uconn.h"

static const dv_uproto_t protos[] = {
	/* UDP first, TCP for truncated answers and lost datagrams */
	{DV_SCHEME_UDP, &dv_uconn_tcp_ops, &dv_uconn_udp_ops, false},
	{DV_SCHEME_TCP, &dv_uconn_tcp_ops, NULL, false},
	{DV_SCHEME_TLS, &dv_uconn_tls_ops, NULL, true},
	{DV_SCHEME_HTTPS, &dv_uconn_h2_ops, NULL, true},
	{DV_SCHEME_QUIC, &dv_uconn_quic_ops, NULL, false},
};

const dv_uproto_t *dv_uproto_at(unsigned i)
{
	return i < sizeof(protos) / sizeof(protos[0]) ? &protos[i] : NULL;
}

const dv_uproto_t *dv_uproto_find(dv_scheme_t scheme)
{
	const dv_uproto_t *pr;
	for (unsigned i = 0; (pr = dv_uproto_at(i)); i++)
		if (pr->scheme == scheme)
			return pr;
	return NULL;
}

bool dv_upstream_scheme_known(dv_scheme_t scheme)
{
	return dv_uproto_find(scheme) != NULL;
}

bool dv_upstream_scheme_tls(dv_scheme_t scheme)
{
	const dv_uproto_t *pr = dv_uproto_find(scheme);
	return pr && pr->tls;
}

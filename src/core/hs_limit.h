#pragma once
/*
 * Handshake admission for the encrypted listeners (DoT, DoH over TLS, DoQ),
 * one per worker.  No I/O: the caller passes the time in milliseconds.
 *
 * Many clients behind one address (a NAT, a carrier-grade NAT, an office)
 * are not an attack, so nothing is capped while the worker keeps up.  The
 * worker is "under pressure" while `pressure` handshakes or more are in
 * progress on it (admitted and neither completed nor failed), and until
 * DV_HS_PRESSURE_HOLD_MS after it last was or after the last refusal: a
 * flood that is refused stops filling the worker, and without the hold
 * the caps would switch off at once and let it in again.  Handshakes in
 * progress are also what a new client waits behind, so the threshold
 * bounds the delay a flood adds to everyone else's handshakes.
 *
 * Under pressure each client address (IPv4 /32, IPv6 /64: one subscriber's
 * network) has a token bucket of `burst` handshakes refilled at `rate` per
 * second.  A handshake is charged as a full one when it is admitted, and
 * (DV_HS_RESUMED_SHARE - 1) / DV_HS_RESUMED_SHARE of that is given back
 * when it completes as a resumption: full handshakes are what costs CPU,
 * so they are the ones the bucket holds back.  A handshake that fails or
 * never completes keeps its full charge.
 *
 * The buckets live in a fixed table (set-associative, 8 ways; a new
 * address takes the set's least recently charged entry), so memory is
 * bounded whatever the number of addresses.  An evicted bucket starts
 * full again if its address comes back; only addresses that keep being
 * charged keep their entries.  Exempt prefixes (load balancers, NAT
 * gateways the operator trusts) are never charged nor refused, but their
 * handshakes count toward the pressure like any other.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "src/core/netmask.h"
#include "src/core/stats.h"

#define DV_HS_PRESSURE_HOLD_MS 1000
/* a resumed handshake costs 1/DV_HS_RESUMED_SHARE of a full one */
#define DV_HS_RESUMED_SHARE 4
#define DV_HS_MAX_EXEMPT 64
#define DV_HS_DEFAULT_SLOTS 4096

typedef struct {
	/* per address: full handshakes per second put back into its bucket;
	 * 0 = no per-address cap at all */
	unsigned rate;
	/* per address: the bucket's depth in full handshakes (at least 1) */
	unsigned burst;
	/* handshakes in progress at which the caps start; 0 = always on */
	unsigned pressure;
	/* bucket table entries, rounded up to a power of two (at least 8);
	 * 0 = DV_HS_DEFAULT_SLOTS */
	unsigned slots;
	/* never capped; copied (at most DV_HS_MAX_EXEMPT are kept) */
	const dv_netmask_t *exempt;
	unsigned n_exempt;
} dv_hs_limit_conf_t;

typedef struct dv_hs_limit dv_hs_limit_t;

/*
 * A limiter for one worker.  `seed` keys the table's hash (pick it at
 * random, so nobody can aim addresses at one set).  `st` (may be NULL)
 * receives the hs_pressure counter.  NULL when memory is short.
 */
dv_hs_limit_t *dv_hs_limit_new(const dv_hs_limit_conf_t *conf, uint64_t seed,
			       dv_stats_t *st);
void dv_hs_limit_free(dv_hs_limit_t *h); /* NULL is a no-op */

/*
 * New rate, burst, pressure and exempt prefixes (a reload); `slots` is
 * not read: the table stays, with its buckets.  A lower burst caps a
 * bucket at its next refill; handshakes in progress stay counted.
 */
void dv_hs_limit_reconf(dv_hs_limit_t *h, const dv_hs_limit_conf_t *conf);

/*
 * A new handshake from `peer` (AF_INET or AF_INET6; an IPv4-mapped IPv6
 * address counts as the IPv4 one) at `now_ms`.  Returns 0 when it may go
 * ahead: it is then in progress until dv_hs_limit_end() is called for it,
 * exactly once.  Returns DV_ELIMIT when the address has used its share
 * under pressure: nothing is counted in progress, the caller refuses the
 * connection and counts the refusal.
 */
int dv_hs_limit_admit(dv_hs_limit_t *h, const struct sockaddr *peer,
		      uint64_t now_ms);

/*
 * An admitted handshake is over: completed, failed, timed out or its
 * connection closed.  `resumed` when it completed as a resumption (or with
 * 0-RTT): part of its charge goes back to the address's bucket.
 */
void dv_hs_limit_end(dv_hs_limit_t *h, const struct sockaddr *peer,
		     bool resumed, uint64_t now_ms);

/* Whether the caps are on at `now_ms` (the DoQ listener also asks for
 * address validation then, so that only validated addresses are charged). */
bool dv_hs_limit_pressure(const dv_hs_limit_t *h, uint64_t now_ms);

/* Handshakes admitted and not ended. */
unsigned dv_hs_limit_in_progress(const dv_hs_limit_t *h);

/* The bucket of the address of `peer`, in thousandths of a full handshake
 * as of its last charge; -1 when it has none (a fresh one would be full).
 * For tests and debugging. */
int64_t dv_hs_limit_tokens(const dv_hs_limit_t *h, const struct sockaddr *peer);

#pragma once
/*
 * Per-worker counters.  Only the owning worker writes its counters (plain
 * relaxed stores, no lock prefix); any thread may read them for the stats
 * line or the metrics endpoint.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "src/core/health.h"
#include "src/core/metrics.h"

/* X(name, help) */
#define DV_STATS(X)                                                          \
	X(queries, "queries accepted from clients")                          \
	X(answers, "answers sent to clients")                                \
	X(dropped_short, "datagrams/messages shorter than a header, dropped") \
	X(dropped_response, "messages with QR set, dropped")                 \
	X(dropped_send, "answers that could not be sent (UDP send error)")   \
	X(formerr, "FORMERR answers to malformed queries")                   \
	X(notimp, "NOTIMP answers (opcode not QUERY)")                       \
	X(badvers, "BADVERS answers (EDNS version not 0)")                   \
	X(servfail, "SERVFAIL answers made by dnsveil")                      \
	X(refused, "REFUSED answers")                                        \
	X(overload, "queries refused because max-inflight was reached")      \
	X(truncated, "UDP answers sent with TC")                             \
	X(udp_collecting,                                                    \
	  "times a worker reading over limits.udp-collect-rate datagrams a " \
	  "second began waiting 50 us before each poll, to read more per "   \
	  "wake-up")                                                         \
	X(cache_hits, "answers served from the cache")                       \
	X(cache_misses, "queries the cache could not answer")                \
	X(coalesced, "queries that joined an identical one in flight")       \
	X(stale_served, "expired answers served stale (RFC 8767, EDE 3)")    \
	X(servfail_cached, "SERVFAIL answers served from the cache")         \
	X(prefetches, "background refreshes of popular answers started")     \
	X(upstream_queries, "queries sent to local upstreams")               \
	X(upstream_answers, "good answers from upstreams")                   \
	X(upstream_failures, "failed upstream attempts")                     \
	X(upstream_timeouts, "upstream attempts that timed out")             \
	X(upstream_tc_retries, "UDP upstream answers with TC retried on TCP") \
	X(upstream_retries,                                                   \
	  "upstream queries sent again after their connection died")         \
	X(upstream_connects, "upstream connections opened")                  \
	X(upstream_dropped,                                                  \
	  "upstream answers dropped: id unknown or another question")        \
	X(upstream_udp_sockets,                                              \
	  "UDP sockets opened for upstream queries (each on a new port)")    \
	X(upstream_udp_retired,                                              \
	  "upstream UDP sockets closed early: a datagram came on them that " \
	  "was not the awaited answer")                                      \
	X(fallback_queries, "queries sent to fallback upstreams")            \
	X(hedged, "queries that reached the hedge delay")                    \
	X(fallback_degraded,                                                 \
	  "queries also sent to the fallback at once: local was degraded")   \
	X(explored, "queries sent to a server other than its group's best")  \
	X(deadline_expired, "queries that hit the query timeout")            \
	X(internal_kept,                                                     \
	  "internal-name queries kept from the fallback group")             \
	X(upstream_refused_final,                                            \
	  "REFUSED answers of local upstreams passed on as final")          \
	X(tcp_connections, "client TCP connections accepted")                \
	X(tcp_refused, "client TCP connections refused (limit)")             \
	X(tcp_idle_closed, "client TCP connections closed idle")             \
	X(tcp_errors, "client TCP connections closed on error/bad framing")  \
	X(tcp_write_timeouts,                                                \
	  "client TCP connections closed: unsent output did not move")       \
	X(tcp_output_over_budget,                                            \
	  "times the stream connections' buffered output reached "           \
	  "limits.worker-max-output")                                        \
	X(tcp_output_paused,                                                 \
	  "times a stream connection stopped taking input because its "      \
	  "worker's buffered output was over limits.worker-max-output")      \
	X(tcp_output_bytes,                                                  \
	  "gauge: answer bytes buffered by client stream connections now")   \
	X(tcp_evicted,                                                       \
	  "idle client TCP connections closed to make room for new ones")    \
	X(tcp_accept_paused,                                                 \
	  "times accepting paused: no file descriptor (EMFILE/ENFILE)")      \
	X(proxy_header_errors,                                               \
	  "?proxy-protocol connections closed: PROXY header bad, truncated, "  \
	  "too long or late")                                                \
	X(proxy_refused,                                                     \
	  "?proxy-protocol connections refused: peer not in "                 \
	  "proxy-protocol.from")                                             \
	X(tls_handshakes, "TLS handshakes completed")                        \
	X(tls_resumed, "TLS handshakes that resumed a session")              \
	X(tls_failed, "TLS handshakes that failed or timed out")             \
	X(tls_rate_limited,                                                  \
	  "TLS connections refused by the per-address handshake cap")        \
	X(hs_pressure,                                                       \
	  "times a worker came under handshake pressure (per-address caps on)") \
	X(doq_connections, "QUIC connections accepted (DoQ)")                \
	X(doq_handshakes, "QUIC handshakes completed")                       \
	X(doq_resumed, "QUIC handshakes that resumed a TLS session")         \
	X(doq_early_data, "QUIC connections whose 0-RTT data was accepted")  \
	X(doq_retries, "stateless Retry packets sent")                       \
	X(doq_token_ok, "Initials with a valid Retry or NEW_TOKEN token")    \
	X(doq_token_bad, "Initials with an invalid or expired token")        \
	X(doq_refused, "QUIC connections refused (limit or draining)")       \
	X(doq_rate_limited,                                                  \
	  "QUIC connections refused by the per-address handshake cap")       \
	X(doq_refused_address,                                               \
	  "QUIC connections refused: max-handshakes-per-address reached")    \
	X(doq_evicted, "idle QUIC connections closed to make room (EXCESSIVE_LOAD)") \
	X(doq_handshakes_evicted,                                            \
	  "half-open QUIC connections closed to make room for a new one")    \
	X(doq_handshake_timeouts,                                            \
	  "QUIC handshakes not done within tls-handshake-timeout-ms")        \
	X(doq_half_open, "gauge: QUIC handshakes in progress now")           \
	X(doq_half_open_peak,                                                \
	  "gauge: most QUIC handshakes in progress at once (per worker, summed)") \
	X(doq_streams, "DoQ streams that carried a query")                   \
	X(doq_cancelled, "DoQ queries whose stream the client reset")        \
	X(doq_protocol_errors, "DoQ connections closed with PROTOCOL_ERROR") \
	X(doq_stream_timeouts, "DoQ streams reset for not finishing a query") \
	X(doq_bad_packets, "UDP datagrams that were not QUIC for us")        \
	X(doq_idle_closed, "QUIC connections closed idle")                   \
	X(doq_closed_error, "QUIC connections closed on a transport error")  \
	X(doq_migrations, "QUIC connections that moved to a new path")      \
	X(querylog_entries, "answers queued for the query log")             \
	X(querylog_dropped,                                                  \
	  "query-log entries dropped: the worker's ring was full (a slow "  \
	  "or stalled log file)")                                            \
	X(dnstap_frames, "dnstap frames queued for the collector")          \
	X(dnstap_dropped,                                                    \
	  "dnstap frames dropped: the worker's queue was full (a slow or "  \
	  "absent collector)")                                             \
	X(drain_cut_queries,                                                 \
	  "queries still in flight when drain.timeout-ms ran out or a second " \
	  "SIGTERM came (answered SERVFAIL as dnsveil stopped)")             \
	X(drain_cut_connections,                                             \
	  "client connections still open when the drain was cut short")     \
	X(drain_udp_unanswered,                                              \
	  "UDP queries that came after the listener stopped reading (drain), " \
	  "left unanswered")

typedef struct {
#define DV_STATS_FIELD(name, help) uint64_t name;
	DV_STATS(DV_STATS_FIELD)
#undef DV_STATS_FIELD
} dv_stats_t;

#define DV_STAT_ADD(st, name, n)                                             \
	__atomic_store_n(&(st)->name, (st)->name + (n), __ATOMIC_RELAXED)
#define DV_STAT_INC(st, name) DV_STAT_ADD(st, name, 1)
/* For the few gauges among the counters (their help says "gauge"). */
#define DV_STAT_SET(st, name, v)                                             \
	__atomic_store_n(&(st)->name, (uint64_t)(v), __ATOMIC_RELAXED)

/* Per upstream server, per worker: X(name, help) */
#define DV_USTATS(X)                                                         \
	X(queries, "client queries sent to the server")                      \
	X(answers, "answers received (any rcode, late ones too)")            \
	X(won, "answers that answered the query (first good answer)")        \
	X(late, "answers that came after the query was answered elsewhere")  \
	X(dropped, "answers dropped: id unknown or another question")        \
	X(errors, "answers with an rcode other than NOERROR or NXDOMAIN")    \
	X(failures, "attempts ended by a lost or refused connection")        \
	X(timeouts, "attempts that timed out")                               \
	X(probes, "health probes sent while the server was down")            \
	X(probe_answers, "health probes answered")                           \
	X(connects, "connections opened")                                    \
	X(connect_failures, "connections that could not be opened")         \
	X(idle_closed, "connections closed after pool.idle-timeout-ms idle")  \
	X(went_down, "times the server was marked down")                     \
	X(went_degraded, "times the server was marked degraded")

typedef struct {
#define DV_USTATS_FIELD(name, help) uint64_t name;
	DV_USTATS(DV_USTATS_FIELD)
#undef DV_USTATS_FIELD
} dv_ustats_t;

/*
 * One upstream server as all workers see it together: counters summed,
 * `state` the worst state any worker holds (down > degraded > up) with
 * the number of workers in each, the EWMA the mean over the workers that
 * have samples, the p95 the largest of the workers'.
 */
typedef struct {
	const char *url;
	bool fallback;
	const char *set; /* the group's upstream set's name; NULL: set 0 */
	dv_ustats_t st;
	dv_health_state_t state;
	unsigned n_state[DV_HEALTH_STATE_COUNT]; /* workers in each state */
	uint64_t ewma_us; /* 0 = no sample */
	unsigned ewma_n;  /* workers with samples (while summing) */
	uint32_t p95_ms;
	uint64_t samples;
	dv_lat_hist_t latency; /* answers' latency (measured in ms) */
} dv_upstream_stats_t;

/* out += in, reading `in` with relaxed atomic loads. */
void dv_stats_sum_upstream(dv_ustats_t *out, const dv_ustats_t *in);
/* Write `"upstreams":[{...},...]` (no leading comma). */
void dv_upstream_stats_json(FILE *f, const dv_upstream_stats_t *u,
			    unsigned n);

/* out += in, reading `in` with relaxed atomic loads. */
void dv_stats_sum(dv_stats_t *out, const dv_stats_t *in);
/* Write the counters as one JSON object (no newline). */
void dv_stats_json(FILE *f, const dv_stats_t *st);

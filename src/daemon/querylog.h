#pragma once
/*
 * The query log (log.queries): one line per answer chosen (all, or those
 * other than NOERROR and NXDOMAIN, 1 in log.query-sample of them), in the
 * format of the other logs (log.format), to stderr or log.query-file.
 *
 * Never on the query path's clock: each worker copies what a line needs
 * into its own bounded ring (src/core/ring.h) and one writer thread
 * formats and writes the lines.  When a worker's ring is full (the file
 * is slow, or a pipe nobody reads) the entry is dropped and counted
 * (querylog_dropped); the worker never waits.
 */
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/query.h"
#include "src/core/stats.h"

typedef enum { DV_QLOG_OFF, DV_QLOG_ALL, DV_QLOG_ERRORS } dv_qlog_mode_t;

typedef struct dv_qlog dv_qlog_t;

/*
 * The query log of `cfg` for `n_workers` workers: opens log.query-file
 * (appending; a FIFO must have its reader) and makes the rings.  Returns
 * 0 with *out NULL when log.queries is off; -errno with a message in
 * `err` when the file cannot be opened.
 */
int dv_qlog_new(const dv_config_t *cfg, unsigned n_workers, dv_qlog_t **out,
		char *err, size_t err_len);
/* Start the writer thread.  0 or -errno. */
int dv_qlog_start(dv_qlog_t *l);
/*
 * Worker `worker` (its thread only): log the answer `wire` (`len` bytes)
 * to `q`, given at `now_us` (the core's clock), if the mode and the
 * sampling choose it; counts into `st`.
 */
void dv_qlog_answered(dv_qlog_t *l, unsigned worker, const dv_query_t *q,
		      const uint8_t *wire, size_t len, uint64_t now_us,
		      dv_stats_t *st);
/* Ask the writer to open log.query-file again (SIGHUP: after logrotate
 * moved it away), before its next write; a file that cannot be opened is
 * logged and the old one kept.  Async-signal-safe; NULL or stderr: no-op. */
void dv_qlog_reopen(dv_qlog_t *l);
/* Write what the rings hold, stop the writer and close the file (the
 * workers must have stopped).  NULL is a no-op. */
void dv_qlog_free(dv_qlog_t *l);

/* ---- the line (querylog_fmt.c), for the writer and the unit tests ---- */

/* One answer as a worker hands it to the writer. */
typedef struct {
	uint64_t wall_us; /* when answered, µs since the epoch */
	uint32_t latency_us; /* since the core took the query */
	uint16_t qtype;
	uint16_t port;
	uint8_t rcode; /* the header's */
	uint8_t transport; /* dv_scheme_t */
	uint8_t source; /* dv_src_t */
	uint8_t verdict; /* dv_verdict_t */
	uint8_t stale;
	uint8_t family; /* AF_INET, AF_INET6, 0: not known */
	uint8_t addr[16];
	uint8_t qname_len; /* wire form */
	uint8_t qname[255];
	char ident[DV_IDENT_MAX + 1]; /* "" none */
	char group[DV_POLICY_NAME_MAX]; /* "" none */
	char list[DV_POLICY_NAME_MAX]; /* "" none */
	char upstream[96]; /* "" none */
} dv_qlog_entry_t;

/* Fill `e` from an answer (what dv_qlog_answered copies). */
void dv_qlog_entry_fill(dv_qlog_entry_t *e, const dv_query_t *q,
			const uint8_t *wire, size_t len, uint64_t now_us);
/* The line of `e` in `json` or text form, with its newline, into `out`
 * (`cap` bytes, at least DV_QLOG_LINE_MAX); returns its length. */
#define DV_QLOG_LINE_MAX 4096
size_t dv_qlog_format(const dv_qlog_entry_t *e, bool json, char *out,
		      size_t cap);

#pragma once
/* Logging to stderr, one line per event (text, or one JSON object per line:
 * log.format), and the two kinds of assertion. */
#include <stdbool.h>
#include <stdlib.h>

typedef enum {
	DV_LOG_ERROR,
	DV_LOG_WARN,
	DV_LOG_INFO,
	DV_LOG_DEBUG
} dv_log_level_t;

extern dv_log_level_t dv_log_level;

/* log.format: "text" (TIME LEVEL: MESSAGE) or "json" ({"ts": TIME,
 * "level": LEVEL, "msg": MESSAGE}, in that order); set once at start. */
typedef enum { DV_LOG_TEXT, DV_LOG_JSON } dv_log_format_t;
extern dv_log_format_t dv_log_format;

/* The wall-clock time as the logs write it (2026-12-05T12:00:00.123Z)
 * into `buf` (`cap` >= 25 bytes); returns its length. */
size_t dv_log_time(char *buf, size_t cap);

void dv_log(dv_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define dv_log_error(...) dv_log(DV_LOG_ERROR, __VA_ARGS__)
#define dv_log_warn(...) dv_log(DV_LOG_WARN, __VA_ARGS__)
#define dv_log_info(...)                                                     \
	do {                                                                 \
		if (dv_log_level >= DV_LOG_INFO)                             \
			dv_log(DV_LOG_INFO, __VA_ARGS__);                    \
	} while (0)
#define dv_log_debug(...)                                                    \
	do {                                                                 \
		if (dv_log_level >= DV_LOG_DEBUG)                            \
			dv_log(DV_LOG_DEBUG, __VA_ARGS__);                   \
	} while (0)

/* A true invariant: if it does not hold, the process state is unknown. */
#define dv_require(cond)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			dv_log(DV_LOG_ERROR, "%s:%d: requirement failed: %s", \
			       __FILE__, __LINE__, #cond);                   \
			abort();                                             \
		}                                                            \
	} while (0)

/* Something a peer could cause: log it and let the caller return an error.
 * Usage: if (dv_fails(cond)) return DV_EMALFORMED; */
#define dv_fails(cond)                                                       \
	((cond) ? false                                                      \
		: (dv_log(DV_LOG_WARN, "%s:%d: check failed: %s", __FILE__, \
			  __LINE__, #cond),                                  \
		   true))

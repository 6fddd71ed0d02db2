#include "src/core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "src/core/json.h"

dv_log_level_t dv_log_level = DV_LOG_INFO;
dv_log_format_t dv_log_format = DV_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

size_t dv_log_time(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void dv_log(dv_log_level_t level, const char *fmt, ...)
{
	if (level > dv_log_level)
		return;
	char msg[1024], line[sizeof(msg) * 6 + 96], ts[40];
	dv_log_time(ts, sizeof(ts));
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m
							 : sizeof(msg) - 1;
	int n;
	if (dv_log_format == DV_LOG_JSON) {
		/* one object per line, the keys always in this order */
		n = snprintf(line, sizeof(line),
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
			     level_names[level]);
		n += (int)dv_json_escape(line + n, sizeof(line) - (size_t)n - 3,
					 msg, mlen);
		line[n++] = '"';
		line[n++] = '}';
	} else {
		n = snprintf(line, sizeof(line), "%s %s: %.*s", ts,
			     level_names[level], (int)mlen, msg);
		if ((size_t)n > sizeof(line) - 2)
			n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* one write per line so lines from workers never interleave */
	fwrite(line, 1, (size_t)n, stderr);
}

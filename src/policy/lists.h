#pragma once
/*
 * Block and allow lists: the line formats operators already have, parsed
 * into rules ("this name and its subdomains", or an exception for them).
 *
 *   hosts    "0.0.0.0 ads.example tracker.example  # comment": an address,
 *            then names; localhost and its kin are left out (skipped)
 *   domains  "ads.example": one name a line; "#" and "!" comments
 *   adblock  "||ads.example^" a rule, "@@||ok.example^" an exception,
 *            "!" and "#" comments, "[Adblock Plus 2.0]" headers; every
 *            other rule kind (paths, cosmetic "##", "$" options, regular
 *            expressions) is skipped and counted
 *
 * A line that none of this makes sense of is bad: counted and skipped,
 * never fatal.  No allocation per line beyond the file reader's buffer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/config/config.h"

typedef struct {
	uint64_t lines; /* read */
	uint64_t rules; /* names added (a hosts line may add several) */
	uint64_t exceptions; /* of those, adblock exceptions */
	uint64_t bad; /* lines nothing could be made of */
	uint64_t skipped; /* rule kinds or names left out on purpose */
} dv_list_stats_t;

/* Takes one rule: `name` (`len` bytes, normalized: dv_suffix_normalize),
 * an exception when `except`.  0, or an error that stops the parse. */
typedef int (*dv_list_add_fn)(void *ctx, const char *name, size_t len,
			      bool except);

/*
 * Parse one line (`len` bytes at `line`, no line break, changed in place)
 * of format `fmt` (dv_list_format_t), counting it in `st` and handing its
 * rules to `add`.  Returns 0 or the first error `add` returned.
 */
int dv_list_parse_line(unsigned fmt, char *line, size_t len, dv_list_add_fn add,
		       void *ctx, dv_list_stats_t *st);

/* The same for every line of `buf` (`len` bytes; "\n" or "\r\n" line
 * ends; lines longer than 4 KiB are bad).  Does not change `buf`. */
int dv_list_parse_buffer(unsigned fmt, const char *buf, size_t len,
			 dv_list_add_fn add, void *ctx, dv_list_stats_t *st);

/* The same for the file `path`.  Returns 0, -errno when it cannot be
 * read, or the first error `add` returned. */
int dv_list_parse_file(unsigned fmt, const char *path, dv_list_add_fn add,
		       void *ctx, dv_list_stats_t *st);

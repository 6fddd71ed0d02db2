#pragma once
/*
 * The suffix set: every name of every block and allow list, with the lists
 * that name it, looked up by each suffix of a query name.
 *
 * Design note.  One open-addressing table of entry indices (4 bytes a
 * slot, at most half full), a dense array of entries (the name's hash,
 * where its text is, and two masks of lists: those with a plain rule for
 * the name and those with an exception for it) and one arena of name
 * texts.  1,000,000 names of ~20 characters cost 8 MiB of slots, 16 MiB
 * of entries and ~21 MiB of text.  The hash of a name is computed from its
 * last character to its first, so one pass over a query name from the
 * right gives the hash of every suffix ("com", "example.com",
 * "ads.example.com"): a lookup costs one hash pass and one probe per
 * label (at most 127), and allocates nothing.  Built once by one thread,
 * then shared read-only by all workers.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_SUFFIX_NAME_MAX 253 /* text form, no trailing dot */
#define DV_SUFFIX_MAX_LABELS 127

typedef struct dv_suffix_set dv_suffix_set_t;

/* What a lookup found: the most specific suffix with a rule that counts. */
typedef struct {
	uint32_t block; /* lists with a plain rule for the suffix */
	uint32_t except; /* lists with an exception ("@@||name^") for it */
	uint16_t offset; /* where the suffix starts in the looked-up name */
	uint32_t entry; /* the suffix's index (dv_suffix_index) */
} dv_suffix_hit_t;

/* An empty set whose hashes are keyed by `seed`.  NULL: out of memory. */
dv_suffix_set_t *dv_suffix_new(uint64_t seed);
void dv_suffix_free(dv_suffix_set_t *s);

/*
 * Add the rule "`name` is in list `list` (0..31)", an exception when
 * `except`.  `name` (`len` bytes) must be a valid name as
 * dv_suffix_normalize() leaves it.  Adding a name again adds the list to
 * its masks.  0 or -ENOMEM.
 */
int dv_suffix_add(dv_suffix_set_t *s, const char *name, size_t len,
		  unsigned list, bool except);

/* The index (0..count-1, in the order names were first added) of
 * `name`, or -1 when the set does not hold it. */
int64_t dv_suffix_index(const dv_suffix_set_t *s, const char *name,
			size_t len);

/* Trim the arrays to what they hold (after the last add). */
void dv_suffix_seal(dv_suffix_set_t *s);

/*
 * Look up each suffix of `name` (`len` bytes, lowercased text without the
 * trailing dot, as dv_suffix_query_name() writes it), the most specific
 * first, and return true with the first whose masks meet `lists` in *hit.
 */
bool dv_suffix_lookup(const dv_suffix_set_t *s, const char *name, size_t len,
		      uint32_t lists, dv_suffix_hit_t *hit);

/* Names held, and the bytes the set takes. */
size_t dv_suffix_count(const dv_suffix_set_t *s);
size_t dv_suffix_bytes(const dv_suffix_set_t *s);

/*
 * A list's name, lowercased in place: letters, digits, '-' and '_', labels
 * of 1..63 separated by single dots, a trailing dot dropped, at most 253
 * characters.  Returns the new length, or 0 when `name` is no such name.
 */
size_t dv_suffix_normalize(char *name, size_t len);

/*
 * The question name of a query (wire labels at `wire`, `wlen` bytes with
 * the root label) as text into `out` (DV_SUFFIX_NAME_MAX + 2 bytes):
 * lowercased, without the trailing dot, and with every byte no list name
 * can hold (a '.' inside a label, binary) replaced by 0x01, so that the
 * text keeps the wire's offsets (a label starting at text offset i starts
 * at wire offset i) and never matches what it does not spell.  Returns
 * the text length (0 for the root), or -1 if the name is not well formed.
 */
int dv_suffix_query_name(const uint8_t *wire, size_t wlen, char *out);

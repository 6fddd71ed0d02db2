/*
 * The suffix set (see suffix.h for its design).
 */
#include "src/policy/suffix.h"
#include "src/policy/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	uint32_t hash; /* the top bits of the name's hash */
	uint32_t off; /* of its length byte in the arena */
	uint32_t block;
	uint32_t except;
} entry_t;

struct dv_suffix_set {
	uint64_t seed;
	uint32_t *slots; /* entry index + 1; 0 = empty */
	uint32_t mask; /* slots - 1 */
	entry_t *entries;
	uint32_t n, cap;
	char *names; /* a length byte, then the text, per name */
	size_t names_len, names_cap;
};

/* FNV-1a over the bytes from the last to the first, keyed by the seed;
 * finished by dv_hash_fmix() for each suffix that is looked up. */

static uint64_t name_hash(uint64_t seed, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;
	for (size_t i = len; i-- > 0;)
		h = DV_HASH_STEP(h, name[i]);
	return dv_hash_fmix(h);
}

dv_suffix_set_t *dv_suffix_new(uint64_t seed)
{
	dv_suffix_set_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->seed = seed;
	s->mask = 1023;
	s->slots = calloc(s->mask + 1, sizeof(*s->slots));
	if (!s->slots) {
		free(s);
		return NULL;
	}
	return s;
}

void dv_suffix_free(dv_suffix_set_t *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s->entries);
	free(s->names);
	free(s);
}

static bool entry_is(const dv_suffix_set_t *s, const entry_t *e, uint32_t h32,
		     const char *name, size_t len)
{
	const char *t = s->names + e->off;
	return e->hash == h32 && (uint8_t)t[0] == len &&
	       memcmp(t + 1, name, len) == 0;
}

/* The slot of `name`: its entry's, or the empty one it would take. */
static uint32_t *find_slot(const dv_suffix_set_t *s, uint64_t h,
			   const char *name, size_t len)
{
	uint32_t h32 = (uint32_t)(h >> 32);
	for (uint32_t i = (uint32_t)h & s->mask;; i = (i + 1) & s->mask) {
		uint32_t *slot = &s->slots[i];
		if (*slot == 0 ||
		    entry_is(s, &s->entries[*slot - 1], h32, name, len))
			return slot;
	}
}

static int grow_slots(dv_suffix_set_t *s)
{
	uint32_t size = (s->mask + 1) * 2;
	uint32_t *slots = calloc(size, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	free(s->slots);
	s->slots = slots;
	s->mask = size - 1;
	/* re-insert by the stored hashes' top bits: the low bits that pick
	 * the slot are recomputed from the text */
	for (uint32_t k = 0; k < s->n; k++) {
		const char *t = s->names + s->entries[k].off;
		uint64_t h = name_hash(s->seed, t + 1, (uint8_t)t[0]);
		uint32_t i = (uint32_t)h & s->mask;
		while (s->slots[i])
			i = (i + 1) & s->mask;
		s->slots[i] = k + 1;
	}
	return 0;
}

int dv_suffix_add(dv_suffix_set_t *s, const char *name, size_t len,
		  unsigned list, bool except)
{
	if (len == 0 || len > DV_SUFFIX_NAME_MAX || list >= 32)
		return -EINVAL;
	uint64_t h = name_hash(s->seed, name, len);
	uint32_t *slot = find_slot(s, h, name, len);
	if (!*slot) {
		if ((uint64_t)(s->n + 1) * 2 > (uint64_t)s->mask + 1) {
			if (s->n >= UINT32_MAX / 4 || grow_slots(s) < 0)
				return -ENOMEM;
			slot = find_slot(s, h, name, len);
		}
		if (s->n == s->cap) {
			uint32_t cap = s->cap ? s->cap * 2 : 1024;
			entry_t *e = realloc(s->entries, cap * sizeof(*e));
			if (!e)
				return -ENOMEM;
			s->entries = e;
			s->cap = cap;
		}
		if (s->names_len + len + 1 > s->names_cap) {
			size_t cap = s->names_cap ? s->names_cap * 2 : 16384;
			while (cap < s->names_len + len + 1)
				cap *= 2;
			if (cap > UINT32_MAX)
				return -ENOMEM;
			char *n = realloc(s->names, cap);
			if (!n)
				return -ENOMEM;
			s->names = n;
			s->names_cap = cap;
		}
		entry_t *e = &s->entries[s->n];
		e->hash = (uint32_t)(h >> 32);
		e->off = (uint32_t)s->names_len;
		e->block = e->except = 0;
		s->names[s->names_len] = (char)len;
		memcpy(s->names + s->names_len + 1, name, len);
		s->names_len += len + 1;
		*slot = ++s->n;
	}
	entry_t *e = &s->entries[*slot - 1];
	if (except)
		e->except |= 1u << list;
	else
		e->block |= 1u << list;
	return 0;
}

int64_t dv_suffix_index(const dv_suffix_set_t *s, const char *name,
			size_t len)
{
	if (len == 0 || len > DV_SUFFIX_NAME_MAX)
		return -1;
	uint32_t *slot = find_slot(s, name_hash(s->seed, name, len), name, len);
	return *slot ? (int64_t)*slot - 1 : -1;
}

void dv_suffix_seal(dv_suffix_set_t *s)
{
	if (s->n && s->n < s->cap) {
		entry_t *e = realloc(s->entries, s->n * sizeof(*e));
		if (e) {
			s->entries = e;
			s->cap = s->n;
		}
	}
	if (s->names_len && s->names_len < s->names_cap) {
		char *n = realloc(s->names, s->names_len);
		if (n) {
			s->names = n;
			s->names_cap = s->names_len;
		}
	}
}

bool dv_suffix_lookup(const dv_suffix_set_t *s, const char *name, size_t len,
		      uint32_t lists, dv_suffix_hit_t *hit)
{
	uint64_t hashes[DV_SUFFIX_MAX_LABELS + 1];
	uint16_t offs[DV_SUFFIX_MAX_LABELS + 1];
	unsigned n = 0;
	if (s->n == 0 || len == 0 || len > DV_SUFFIX_NAME_MAX + 1)
		return false;
	/* every suffix's hash, the shortest first */
	uint64_t h = 0xcbf29ce484222325ULL ^ s->seed;
	for (size_t i = len; i-- > 0;) {
		h = DV_HASH_STEP(h, name[i]);
		if ((i == 0 || name[i - 1] == '.') &&
		    n < DV_SUFFIX_MAX_LABELS + 1) {
			hashes[n] = dv_hash_fmix(h);
			offs[n++] = (uint16_t)i;
		}
	}
	/* the most specific first */
	while (n-- > 0) {
		uint32_t *slot =
			find_slot(s, hashes[n], name + offs[n], len - offs[n]);
		if (!*slot)
			continue;
		const entry_t *e = &s->entries[*slot - 1];
		if ((e->block | e->except) & lists) {
			hit->block = e->block;
			hit->except = e->except;
			hit->offset = offs[n];
			hit->entry = *slot - 1;
			return true;
		}
	}
	return false;
}

size_t dv_suffix_count(const dv_suffix_set_t *s)
{
	return s->n;
}

size_t dv_suffix_bytes(const dv_suffix_set_t *s)
{
	return sizeof(*s) + ((size_t)s->mask + 1) * sizeof(*s->slots) +
	       (size_t)s->cap * sizeof(*s->entries) + s->names_cap;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '_';
}

size_t dv_suffix_normalize(char *name, size_t len)
{
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DV_SUFFIX_NAME_MAX)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			name[i] = c = (char)(c + 32);
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!name_char(c) || ++label > 63)
			return 0;
	}
	return label ? len : 0;
}

int dv_suffix_query_name(const uint8_t *wire, size_t wlen, char *out)
{
	size_t pos = 0, o = 0;
	while (pos < wlen) {
		uint8_t l = wire[pos];
		if (l == 0)
			return o ? (int)o - 1 : 0;
		if (l > 63 || pos + 1 + l >= wlen ||
		    o + l + 1 > DV_SUFFIX_NAME_MAX + 1)
			return -1;
		for (size_t i = 0; i < l; i++) {
			char c = (char)wire[pos + 1 + i];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c + 32);
			out[o++] = name_char(c) ? c : 0x01;
		}
		out[o++] = '.';
		pos += 1 + l;
	}
	return -1;
}

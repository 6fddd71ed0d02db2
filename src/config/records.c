/*
 * Configuration: one line of a group's `records:` (README "Policy",
 * "Local records"), in zone-file syntax, parsed with ldns at load so that
 * a bad line is a config error naming its line, and kept in wire form
 * (the owner lowercased, the RDATA uncompressed) for the policy to build
 * its record table from without parsing anything again.
 */
#include <errno.h>
#include <string.h>

#include <ldns/ldns.h>

#include "src/config/schema.h"
#include "src/core/errors.h"

/* the types a local record may have (README "Local records") */
static const uint16_t record_types[] = {
	LDNS_RR_TYPE_A,	  LDNS_RR_TYPE_AAAA,  LDNS_RR_TYPE_CNAME,
	LDNS_RR_TYPE_TXT, LDNS_RR_TYPE_SRV,   LDNS_RR_TYPE_PTR,
	LDNS_RR_TYPE_MX,  LDNS_RR_TYPE_HTTPS, LDNS_RR_TYPE_SVCB,
};

static bool type_ok(uint16_t t)
{
	for (size_t i = 0; i < sizeof(record_types) / sizeof(*record_types);
	     i++)
		if (record_types[i] == t)
			return true;
	return false;
}

/* The owner of `text` (its first word) ends with '.': names in records
 * are absolute, there is no $ORIGIN to complete them with. */
static bool owner_absolute(const char *text)
{
	while (*text == ' ' || *text == '\t')
		text++;
	const char *end = text;
	while (*end && *end != ' ' && *end != '\t')
		end++;
	return end > text && end[-1] == '.';
}

static void type_refused(char *why, size_t why_len, const char *text,
			 uint16_t type)
{
	char *tn = ldns_rr_type2str(type);
	dv_cfg_errf(why, why_len,
		    "'%.80s': type %s is not served locally (A, AAAA, CNAME, "
		    "TXT, SRV, PTR, MX, HTTPS, SVCB)",
		    text, tn ? tn : "?");
	free(tn);
}

/* The type named on the line `text` (owner [TTL] [class] TYPE RDATA, TTL
 * and class in either order), or 0 when the word there is not a type
 * ldns knows.  It is checked before ldns reads the RDATA: the RDATA of a
 * type never served locally is not worth parsing, and ldns 1.8's readers
 * of some of them (CERT's algorithm) leak what they built when the value
 * is refused. */
static uint16_t line_type(const char *text)
{
	const char *p = text;
	for (int word = 0; word < 4; word++) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *end = p;
		while (*end && *end != ' ' && *end != '\t')
			end++;
		if (end == p)
			return 0;
		char w[32];
		size_t n = (size_t)(end - p);
		if (word > 0 && n < sizeof(w)) {
			memcpy(w, p, n);
			w[n] = '\0';
			bool ttl = w[0] >= '0' && w[0] <= '9';
			if (!ttl && ldns_get_rr_class_by_name(w) == 0)
				return (uint16_t)ldns_get_rr_type_by_name(w);
		}
		p = end;
	}
	return 0;
}

/* Wire names of `len` bytes equal, ASCII case folded. */
static bool same_name(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t x = a[i], y = b[i];
		x = (uint8_t)(x >= 'A' && x <= 'Z' ? x + 32 : x);
		y = (uint8_t)(y >= 'A' && y <= 'Z' ? y + 32 : y);
		if (x != y)
			return false;
	}
	return true;
}

int dv_cfg_record_parse(dv_config_t *cfg, unsigned group, unsigned line,
			const char *text, char *why, size_t why_len)
{
	ldns_rr *rr = NULL;
	ldns_buffer *buf = NULL;
	int ret = DV_ECONFIG;

	if (cfg->n_records >= DV_POLICY_MAX_RECORDS) {
		dv_cfg_errf(why, why_len, "too many records (at most %d)",
			    DV_POLICY_MAX_RECORDS);
		return DV_ECONFIG;
	}
	if (!owner_absolute(text)) {
		dv_cfg_errf(why, why_len,
			    "'%.80s': the owner name must be absolute (end "
			    "with '.')",
			    text);
		return DV_ECONFIG;
	}
	uint16_t named = line_type(text);
	if (named != 0 && !type_ok(named)) {
		type_refused(why, why_len, text, named);
		return DV_ECONFIG;
	}
	ldns_status st = ldns_rr_new_frm_str(&rr, text, DV_RECORD_DEFAULT_TTL,
					     NULL, NULL);
	if (st != LDNS_STATUS_OK) {
		dv_cfg_errf(why, why_len, "'%.80s': %s", text,
			    ldns_get_errorstr_by_id(st));
		return DV_ECONFIG;
	}
	uint16_t type = (uint16_t)ldns_rr_get_type(rr);
	if (!type_ok(type)) {
		type_refused(why, why_len, text, type);
		goto out;
	}
	if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN) {
		dv_cfg_errf(why, why_len, "'%.80s': only class IN", text);
		goto out;
	}
	const ldns_rdf *owner = ldns_rr_owner(rr);
	size_t olen = ldns_rdf_size(owner);
	dv_cfg_record_t *r = &cfg->records[cfg->n_records];
	if (olen == 0 || olen > sizeof(r->owner)) {
		dv_cfg_errf(why, why_len, "'%.80s': bad owner name", text);
		goto out;
	}
	/* a wildcard is "*" as the whole first label (RFC 4592) */
	const uint8_t *o = ldns_rdf_data(owner);
	for (size_t i = 0; i < olen && o[i]; i += 1u + o[i])
		if (memchr(o + i + 1, '*', o[i]) && (i != 0 || o[i] != 1)) {
			dv_cfg_errf(why, why_len,
				    "'%.80s': '*' only as the whole first "
				    "label of a wildcard",
				    text);
			goto out;
		}
	buf = ldns_buffer_new(512);
	if (!buf) {
		dv_cfg_errf(why, why_len, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	if (ldns_rr_rdata2buffer_wire(buf, rr) != LDNS_STATUS_OK) {
		dv_cfg_errf(why, why_len, "'%.80s': bad data", text);
		goto out;
	}
	size_t rdlen = ldns_buffer_position(buf);
	if (rdlen > 0xffff ||
	    rdlen > DV_POLICY_RECORD_BYTES - cfg->record_data_len) {
		dv_cfg_errf(why, why_len,
			    "records take more than %d bytes of data",
			    DV_POLICY_RECORD_BYTES);
		goto out;
	}
	/* against the group's records so far: a duplicate is dropped (an
	 * RRset holds a record once, RFC 2181 5); a CNAME stands alone at
	 * its name (RFC 1034 3.6.2) */
	const uint8_t *rd = ldns_buffer_begin(buf);
	for (unsigned i = 0; i < cfg->n_records; i++) {
		const dv_cfg_record_t *o2 = &cfg->records[i];
		if (o2->group != group || o2->owner_len != olen ||
		    !same_name(o2->owner, o, olen))
			continue;
		if (o2->type == type && o2->rdlen == rdlen &&
		    memcmp(cfg->record_data + o2->rdata_off, rd, rdlen) == 0) {
			ret = 0;
			goto out;
		}
		if (o2->type == LDNS_RR_TYPE_CNAME ||
		    type == LDNS_RR_TYPE_CNAME) {
			dv_cfg_errf(why, why_len,
				    "'%.80s': a name with a CNAME has no other "
				    "records (line %u)",
				    text, o2->line);
			goto out;
		}
	}
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < olen; i++)
		r->owner[i] = (uint8_t)(o[i] >= 'A' && o[i] <= 'Z' ? o[i] + 32
								   : o[i]);
	r->owner_len = (uint16_t)olen;
	r->type = type;
	r->rclass = LDNS_RR_CLASS_IN;
	r->ttl = ldns_rr_ttl(rr);
	r->rdlen = (uint16_t)rdlen;
	r->rdata_off = cfg->record_data_len;
	memcpy(cfg->record_data + cfg->record_data_len, ldns_buffer_begin(buf),
	       rdlen);
	cfg->record_data_len += (uint32_t)rdlen;
	r->group = (uint8_t)group;
	r->line = line;
	cfg->n_records++;
	ret = 0;
out:
	ldns_buffer_free(buf);
	ldns_rr_free(rr);
	return ret;
}

/*
 * The DoQ client's pure helpers (no connection): names, the saved-session
 * blob, building queries and reading their answers' padding.  Exposed for
 * the dnsveil-doq tool and the tests.  See doq_client.h.
 */
#include "src/proto/doq_client.h"

#include <stdio.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/wire.h"

#define SESSION_MAGIC "DVDOQ1"
#define SESSION_MAGIC_LEN 6
#define N_EARLY_PARAMS 8

/* ---- names ---- */

const char *dv_doq_end_name(dv_doq_end_t end)
{
	static const char *const names[] = {
#define DV_DOQ_END_TEXT(name, text) [DV_DOQ_END_##name] = text,
		DV_DOQ_ENDS(DV_DOQ_END_TEXT)
#undef DV_DOQ_END_TEXT
	};
	if ((unsigned)end >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[end];
}

/* TLS alerts (RFC 8446 §6) a QUIC handshake commonly ends with */
const char *dv_doq_alert_name(uint8_t a)
{
	switch (a) {
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 80: return "internal_error";
	case 109: return "missing_extension";
	case 112: return "unrecognized_name";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "alert";
	}
}

const char *dv_doq_transport_error_name(uint64_t code, char *buf, size_t cap)
{
	static const char *const names[] = {
		"NO_ERROR",
		"INTERNAL_ERROR",
		"CONNECTION_REFUSED",
		"FLOW_CONTROL_ERROR",
		"STREAM_LIMIT_ERROR",
		"STREAM_STATE_ERROR",
		"FINAL_SIZE_ERROR",
		"FRAME_ENCODING_ERROR",
		"TRANSPORT_PARAMETER_ERROR",
		"CONNECTION_ID_LIMIT_ERROR",
		"PROTOCOL_VIOLATION",
		"INVALID_TOKEN",
		"APPLICATION_ERROR",
		"CRYPTO_BUFFER_EXCEEDED",
		"KEY_UPDATE_ERROR",
		"AEAD_LIMIT_REACHED",
		"NO_VIABLE_PATH",
	};
	if (code < sizeof(names) / sizeof(names[0]))
		snprintf(buf, cap, "%s", names[code]);
	else if (code >= 0x100 && code <= 0x1ff)
		snprintf(buf, cap, "CRYPTO_ERROR(0x%x %s)", (unsigned)code,
			 dv_doq_alert_name((uint8_t)(code - 0x100)));
	else
		snprintf(buf, cap, "0x%llx", (unsigned long long)code);
	return buf;
}

/* ---- the saved session ---- */

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int dv_doq_session_encode(uint8_t *buf, size_t cap, const uint8_t *tls,
			  size_t tls_len, const dv_doq_early_params_t *p)
{
	size_t need = SESSION_MAGIC_LEN + 2 + tls_len + 8 * N_EARLY_PARAMS;
	if (tls_len > 0xffff || need > cap)
		return DV_ESPACE;
	uint8_t *w = buf;
	memcpy(w, SESSION_MAGIC, SESSION_MAGIC_LEN);
	w += SESSION_MAGIC_LEN;
	dv_put16(w, (uint16_t)tls_len);
	w += 2;
	memcpy(w, tls, tls_len);
	w += tls_len;
	const uint64_t v[N_EARLY_PARAMS] = {
		p->max_streams_bidi,
		p->max_streams_uni,
		p->max_stream_data_bidi_local,
		p->max_stream_data_bidi_remote,
		p->max_stream_data_uni,
		p->max_data,
		p->active_connection_id_limit,
		p->max_datagram_frame_size,
	};
	for (unsigned i = 0; i < N_EARLY_PARAMS; i++, w += 8)
		put64(w, v[i]);
	return (int)need;
}

int dv_doq_session_decode(const uint8_t *buf, size_t len,
			  const uint8_t **tls, size_t *tls_len,
			  dv_doq_early_params_t *p)
{
	if (len < SESSION_MAGIC_LEN + 2 ||
	    memcmp(buf, SESSION_MAGIC, SESSION_MAGIC_LEN) != 0)
		return DV_EMALFORMED;
	size_t n = dv_get16(buf + SESSION_MAGIC_LEN);
	if (n == 0 || len != SESSION_MAGIC_LEN + 2 + n + 8 * N_EARLY_PARAMS)
		return DV_EMALFORMED;
	*tls = buf + SESSION_MAGIC_LEN + 2;
	*tls_len = n;
	const uint8_t *r = *tls + n;
	uint64_t v[N_EARLY_PARAMS];
	for (unsigned i = 0; i < N_EARLY_PARAMS; i++, r += 8)
		v[i] = get64(r);
	p->max_streams_bidi = v[0];
	p->max_streams_uni = v[1];
	p->max_stream_data_bidi_local = v[2];
	p->max_stream_data_bidi_remote = v[3];
	p->max_stream_data_uni = v[4];
	p->max_data = v[5];
	p->active_connection_id_limit = v[6];
	p->max_datagram_frame_size = v[7];
	return 0;
}

/* Text name to uncompressed wire form; returns its length or
 * DV_EMALFORMED.  Accepts "." (the root), a trailing dot, and the
 * \DDD and \X escapes of presentation format. */
static int name_to_wire(uint8_t *out, const char *name)
{
	if (strcmp(name, ".") == 0) {
		out[0] = 0;
		return 1;
	}
	size_t o = 0;
	const char *p = name;
	if (!*p)
		return DV_EMALFORMED;
	while (*p) {
		size_t lab = o++, l = 0;
		for (; *p && *p != '.'; p++) {
			unsigned ch = (unsigned char)*p;
			if (*p == '\\') {
				if (p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
				    p[2] <= '9' && p[3] >= '0' && p[3] <= '9') {
					ch = (unsigned)(p[1] - '0') * 100 +
					     (unsigned)(p[2] - '0') * 10 +
					     (unsigned)(p[3] - '0');
					p += 3;
				} else if (p[1]) {
					ch = (unsigned char)*++p;
				} else {
					return DV_EMALFORMED;
				}
				if (ch > 255)
					return DV_EMALFORMED;
			}
			/* 63 per label; 255 in all with the root label */
			if (l == 63 || o + 1 >= DV_DNS_MAX_NAME)
				return DV_EMALFORMED;
			out[o++] = (uint8_t)ch;
			l++;
		}
		if (l == 0)
			return DV_EMALFORMED; /* "a..b", ".a" */
		out[lab] = (uint8_t)l;
		if (*p == '.')
			p++;
	}
	out[o++] = 0;
	return (int)o;
}

#define PAD_BLOCK 128

int dv_doq_build_query(uint8_t *buf, size_t cap, const char *name,
		       uint16_t qtype, uint16_t id, bool pad)
{
	uint8_t qname[DV_DNS_MAX_NAME + 1];
	int nl = name_to_wire(qname, name);
	if (nl < 0)
		return nl;
	size_t len = DV_DNS_HDR + (size_t)nl + 4 + 11;
	size_t padlen = 0;
	if (pad) {
		size_t with_opt = len + 4; /* option code and length */
		padlen = (PAD_BLOCK - with_opt % PAD_BLOCK) % PAD_BLOCK;
		len = with_opt + padlen;
	}
	if (len > cap)
		return DV_ESPACE;
	memset(buf, 0, len);
	dv_put16(buf, id);
	dv_put16(buf + 2, DV_FLAG_RD);
	dv_put16(buf + 4, 1);  /* QDCOUNT */
	dv_put16(buf + 10, 1); /* ARCOUNT: the OPT */
	size_t o = DV_DNS_HDR;
	memcpy(buf + o, qname, (size_t)nl);
	o += (size_t)nl;
	dv_put16(buf + o, qtype);
	dv_put16(buf + o + 2, DV_CLASS_IN);
	o += 4;
	buf[o++] = 0; /* root owner */
	dv_put16(buf + o, DV_TYPE_OPT);
	dv_put16(buf + o + 2, DV_EDNS_DEFAULT_UDP);
	o += 8; /* class, then TTL: ext-rcode 0, version 0, flags 0 */
	dv_put16(buf + o, (uint16_t)(pad ? 4 + padlen : 0));
	o += 2;
	if (pad) {
		dv_put16(buf + o, DV_EDNS_PADDING);
		dv_put16(buf + o + 2, (uint16_t)padlen);
		o += 4 + padlen; /* zeros */
	}
	return (int)o;
}

int dv_doq_frame_write(uint8_t *buf, size_t cap, const uint8_t *msg,
		       size_t len)
{
	if (len > 0xffff || len + 2 > cap)
		return DV_ESPACE;
	dv_put16(buf, (uint16_t)len);
	memcpy(buf + 2, msg, len);
	return (int)(len + 2);
}

int dv_doq_padding_len(const uint8_t *msg, size_t len)
{
	dv_wire_resp_t r;
	int rv = dv_wire_parse_response(msg, len, &r);
	if ((rv != 0 && rv != DV_ELIMIT) || !r.has_opt)
		return -1;
	/* OPT: root owner (1), type, class, TTL, RDLENGTH, RDATA */
	size_t off = (size_t)r.opt_start + 11, end = r.opt_end;
	int total = -1;
	while (off + 4 <= end) {
		uint16_t code = dv_get16(msg + off);
		uint16_t olen = dv_get16(msg + off + 2);
		if (off + 4 + olen > end)
			return -1;
		if (code == DV_EDNS_PADDING)
			total = (total < 0 ? 0 : total) + olen;
		off += 4 + (size_t)olen;
	}
	return total;
}

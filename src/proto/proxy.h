#pragma once
/*
 * The PROXY protocol, version 2 (the binary form of haproxy's
 * doc/proxy-protocol.txt): the header a load balancer sends first on a TCP
 * connection to name the client it accepted.  No I/O: the stream code
 * peeks at the socket, asks how many bytes the header takes, and parses
 * exactly those, so the bytes after it (a TLS ClientHello, a DNS message,
 * an HTTP request) stay in the socket for the next layer.
 *
 * Only version 2 is read.  Version 1 (the text form) is refused like any
 * other garbage: every load balancer that speaks v1 speaks v2, and v2 has
 * a fixed-size prefix that says how long the header is.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DV_PROXY_V2_PREFIX 16
/* address block + TLVs we accept; haproxy sends 12 or 36 bytes of
 * addresses and a few TLVs (ALPN, authority, SSL, unique ID) */
#define DV_PROXY_V2_MAX_BODY 512
#define DV_PROXY_V2_MAX (DV_PROXY_V2_PREFIX + DV_PROXY_V2_MAX_BODY)

typedef struct {
	/* LOCAL command (a health check of the proxy's own), or an address
	 * family dnsveil does not use (AF_UNSPEC, AF_UNIX): keep the
	 * socket's own addresses */
	bool local;
	struct sockaddr_storage src; /* the client, port included */
	socklen_t src_len;
	struct sockaddr_storage dst; /* the address the client asked for */
	socklen_t dst_len;
} dv_proxy_hdr_t;

/* `buf` starts with the 12-byte v2 signature (never the start of a DNS
 * query: as one its QDCOUNT would be 2641). */
bool dv_proxy_v2_is_signature(const uint8_t *buf, size_t len);

/*
 * How many bytes the header starting at `buf` takes: DV_PROXY_V2_PREFIX
 * while fewer than that are known, then the whole header's length (at most
 * DV_PROXY_V2_MAX).  DV_EMALFORMED as soon as the bytes cannot start a
 * v2 header (so garbage is refused on its first byte), DV_ELIMIT when the
 * header says it is longer than DV_PROXY_V2_MAX.
 */
int dv_proxy_v2_need(const uint8_t *buf, size_t len);

/*
 * Parse the whole header in buf[0..len) (len as dv_proxy_v2_need said)
 * into `out`.  Returns 0, or DV_EMALFORMED (bad version or command, an
 * address block longer than the header, a TLV running past its end).
 */
int dv_proxy_v2_parse(const uint8_t *buf, size_t len, dv_proxy_hdr_t *out);

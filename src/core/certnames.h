#pragma once
/*
 * The names a TLS certificate covers (its leaf's subjectAltName), as the
 * TLS seam reads them (src/tls/cert_names.h) for the layers that check
 * what they advertise against them (DDR, src/policy/ddr.c) without a TLS
 * library of their own.
 */
#include <stdbool.h>
#include <stdint.h>

#define DV_CERT_MAX_IPS 32
#define DV_CERT_MAX_DNS 32

typedef struct {
	bool loaded; /* a certificate was read */
	unsigned n_ip;
	struct {
		uint8_t family; /* AF_INET or AF_INET6 */
		uint8_t addr[16];
	} ip[DV_CERT_MAX_IPS];
	unsigned n_dns;
	char dns[DV_CERT_MAX_DNS][256]; /* lowercased, "*.x" kept as is */
} dv_cert_names_t;

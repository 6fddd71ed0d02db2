#pragma once
/*
 * One error space for the whole project: 0 is success, negative errno values
 * (-ENOMEM, -EINVAL, ...) keep their meaning, and dnsveil's own codes sit
 * below DV_ERR_BASE.  EAGAIN is never an error in this code base: it is a
 * state, handled where it happens.
 */
#include <errno.h>

#define DV_ERR_BASE (-10000)

/* X(name, offset below DV_ERR_BASE, text) */
#define DV_ERRORS(X)                                                         \
	X(DV_ESHORT, 1, "message shorter than a DNS header")                 \
	X(DV_EMALFORMED, 2, "malformed DNS message")                         \
	X(DV_EQDCOUNT, 3, "QDCOUNT is not 1")                                \
	X(DV_ENOTQUERY, 4, "message is a response, not a query")             \
	X(DV_ELIMIT, 5, "configured limit reached")                          \
	X(DV_ESPACE, 6, "output buffer too small")                           \
	X(DV_EMISMATCH, 7, "answer does not match the question")             \
	X(DV_ENOTIMPL, 8, "not implemented yet")                             \
	X(DV_ECONFIG, 9, "invalid configuration")                            \
	X(DV_ETIMEOUT, 10, "timed out")                                      \
	X(DV_EUPSTREAM, 11, "no upstream could answer")                      \
	X(DV_ECLOSED, 12, "connection closed")                               \
	X(DV_ENOTFOUND, 13, "not found")                                     \
	/* I/O states of the TLS seam (src/tls/tls.h): not failures */      \
	X(DV_TLS_WANT_READ, 14, "waiting to read (TLS)")                     \
	X(DV_TLS_WANT_WRITE, 15, "waiting to write (TLS)")                   \
	X(DV_TLS_EOF, 16, "connection closed by the peer (close_notify or EOF)")  \
	X(DV_EINUSE, 17, "address in use by another process")

enum {
#define DV_ERR_ENUM(name, off, text) name = DV_ERR_BASE - (off),
	DV_ERRORS(DV_ERR_ENUM)
#undef DV_ERR_ENUM
};

/* Text for any code this project returns (own codes and negative errno). */
const char *dv_strerror(int err);

/*
 * dnstap messages (dnstap.h), encoded with protobuf-c from the schema in
 * dnstap.proto and handed to libfstrm's I/O thread.
 */
#include "src/daemon/dnstap.h"

#include <errno.h>
#include <fstrm.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dnstap.pb-c.h"
#include "src/core/log.h"

#define CONTENT_TYPE "protobuf:dnstap.Dnstap"

struct dv_dnstap {
	struct fstrm_writer *writer; /* until dv_dnstap_start() */
	unsigned queue_size;
	struct fstrm_iothr *iothr;
	unsigned n_queues;
	struct fstrm_iothr_queue **queues;
	char identity[256];
	size_t identity_len;
};

static unsigned pow2_at_least(unsigned n)
{
	unsigned p = FSTRM_IOTHR_INPUT_QUEUE_SIZE_MIN;
	while (p < n && p < FSTRM_IOTHR_INPUT_QUEUE_SIZE_MAX)
		p <<= 1;
	return p;
}

static struct fstrm_writer *writer_new(const dv_config_t *cfg)
{
	struct fstrm_writer_options *wopt = fstrm_writer_options_init();
	struct fstrm_writer *w = NULL;
	fstrm_writer_options_add_content_type(wopt, CONTENT_TYPE,
					      strlen(CONTENT_TYPE));
	if (cfg->dnstap_socket[0]) {
		struct fstrm_unix_writer_options *uopt =
			fstrm_unix_writer_options_init();
		fstrm_unix_writer_options_set_socket_path(uopt,
							  cfg->dnstap_socket);
		w = fstrm_unix_writer_init(uopt, wopt);
		fstrm_unix_writer_options_destroy(&uopt);
	} else {
		struct fstrm_file_options *fopt = fstrm_file_options_init();
		fstrm_file_options_set_file_path(fopt, cfg->dnstap_file);
		w = fstrm_file_writer_init(fopt, wopt);
		fstrm_file_options_destroy(&fopt);
	}
	fstrm_writer_options_destroy(&wopt);
	return w;
}

int dv_dnstap_new(const dv_config_t *cfg, unsigned n_workers, dv_dnstap_t **out,
		  char *err, size_t err_len)
{
	*out = NULL;
	if (!cfg->dnstap_socket[0] && !cfg->dnstap_file[0])
		return 0;
	/* a file must be writable now: libfstrm would only retry */
	if (cfg->dnstap_file[0]) {
		FILE *f = fopen(cfg->dnstap_file, "a");
		if (!f) {
			int e = errno;
			snprintf(err, err_len, "dnstap.file: '%s': %s",
				 cfg->dnstap_file, strerror(e));
			return -e;
		}
		fclose(f);
	}
	dv_dnstap_t *d = calloc(1, sizeof(*d));
	if (!d)
		goto fail_nomem;
	d->queues = calloc(n_workers, sizeof(*d->queues));
	if (!d->queues)
		goto fail_nomem;
	d->n_queues = n_workers;
	if (gethostname(d->identity, sizeof(d->identity) - 1) != 0)
		d->identity[0] = '\0';
	d->identity_len = strlen(d->identity);

	d->writer = writer_new(cfg);
	if (!d->writer) {
		snprintf(err, err_len, "dnstap: cannot make the %s writer",
			 cfg->dnstap_socket[0] ? "socket" : "file");
		free(d->queues);
		free(d);
		return -EINVAL;
	}
	d->queue_size = pow2_at_least(cfg->dnstap_buffer);
	*out = d;
	return 0;
fail_nomem:
	if (d)
		free(d->queues);
	free(d);
	snprintf(err, err_len, "dnstap: out of memory");
	return -ENOMEM;
}

static Dnstap__SocketProtocol protocol_of(dv_scheme_t s)
{
	switch (s) {
	case DV_SCHEME_TCP:
		return DNSTAP__SOCKET_PROTOCOL__TCP;
	case DV_SCHEME_TLS:
		return DNSTAP__SOCKET_PROTOCOL__DOT;
	case DV_SCHEME_HTTPS:
	case DV_SCHEME_HTTP:
		return DNSTAP__SOCKET_PROTOCOL__DOH;
	case DV_SCHEME_QUIC:
		return DNSTAP__SOCKET_PROTOCOL__DOQ;
	default:
		return DNSTAP__SOCKET_PROTOCOL__UDP;
	}
}

/*
 * The most a frame of ours packs to, with `wire_bytes` of DNS messages in
 * it: each field's tag and length take at most 1 + 10 bytes; the fixed
 * fields (type, family, protocol, an address of 16, a port, four times)
 * and the nested message's header are well within FIXED_MAX.  Packing into
 * a buffer this big skips protobuf-c's get_packed_size() walk, which cost
 * as much as the packing (callgrind: ~1,700 instructions an answer).
 */
#define FIXED_MAX 256
static size_t frame_max(const dv_dnstap_t *d, size_t wire_bytes)
{
	return FIXED_MAX + d->identity_len + strlen(DV_VERSION) + 8 +
	       wire_bytes;
}

/* Encode `frame` (with `wire_bytes` of DNS messages) into a new buffer and
 * queue it on worker `worker`'s queue (which then owns the buffer); a full
 * queue drops it. */
static void submit(dv_dnstap_t *d, unsigned worker, const Dnstap__Dnstap *frame,
		   size_t wire_bytes, dv_stats_t *st)
{
	uint8_t *buf = malloc(frame_max(d, wire_bytes));
	if (!buf) {
		DV_STAT_INC(st, dnstap_dropped);
		return;
	}
	size_t n = dnstap__dnstap__pack(frame, buf);
	dv_require(n <= frame_max(d, wire_bytes));
	if (fstrm_iothr_submit(d->iothr, d->queues[worker], buf, n,
			       fstrm_free_wrapper, NULL) != fstrm_res_success) {
		free(buf);
		DV_STAT_INC(st, dnstap_dropped);
		return;
	}
	DV_STAT_INC(st, dnstap_frames);
}

/* `sa`'s family into `m`, and its address and port as the query's
 * (`response` false) or the response's side. */
static void set_address(Dnstap__Message *m, const struct sockaddr *sa,
			bool response)
{
	const void *addr;
	size_t alen;
	uint16_t port;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		m->socket_family = DNSTAP__SOCKET_FAMILY__INET;
		addr = &s4->sin_addr;
		alen = 4;
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		m->socket_family = DNSTAP__SOCKET_FAMILY__INET6;
		addr = &s6->sin6_addr;
		alen = 16;
		port = ntohs(s6->sin6_port);
	} else {
		return;
	}
	m->has_socket_family = true;
	ProtobufCBinaryData *a = response ? &m->response_address
					  : &m->query_address;
	a->data = (uint8_t *)addr;
	a->len = alen;
	if (response) {
		m->has_response_address = m->has_response_port = true;
		m->response_port = port;
	} else {
		m->has_query_address = m->has_query_port = true;
		m->query_port = port;
	}
}

/* Wall-clock nanoseconds, `ago_ns` ago. */
static uint64_t wall_ns(uint64_t ago_ns)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	return ns > ago_ns ? ns - ago_ns : ns;
}

static void set_query_time(Dnstap__Message *m, uint64_t ns)
{
	m->has_query_time_sec = m->has_query_time_nsec = true;
	m->query_time_sec = ns / 1000000000u;
	m->query_time_nsec = (uint32_t)(ns % 1000000000u);
}

static void set_response_time(Dnstap__Message *m, uint64_t ns)
{
	m->has_response_time_sec = m->has_response_time_nsec = true;
	m->response_time_sec = ns / 1000000000u;
	m->response_time_nsec = (uint32_t)(ns % 1000000000u);
}

/* A frame around `m` with dnsveil's identity and version. */
static Dnstap__Dnstap frame_of(const dv_dnstap_t *d, Dnstap__Message *m)
{
	Dnstap__Dnstap frame = DNSTAP__DNSTAP__INIT;
	frame.type = DNSTAP__DNSTAP__TYPE__MESSAGE;
	frame.message = m;
	frame.has_identity = d->identity_len > 0;
	frame.identity.data = (uint8_t *)d->identity;
	frame.identity.len = d->identity_len;
	frame.has_version = true;
	frame.version.data = (uint8_t *)"dnsveil " DV_VERSION;
	frame.version.len = strlen("dnsveil " DV_VERSION);
	return frame;
}

void dv_dnstap_answered(dv_dnstap_t *d, unsigned worker, const dv_query_t *q,
			const uint8_t *wire, size_t len, uint64_t now_us,
			dv_stats_t *st)
{
	/* the query's wall-clock time: now, less what the core took */
	uint64_t took_ns = now_us > q->start_us ? (now_us - q->start_us) * 1000
						: 0;
	uint64_t now_ns = wall_ns(0);
	uint64_t q_ns = now_ns > took_ns ? now_ns - took_ns : now_ns;

	Dnstap__Message m = DNSTAP__MESSAGE__INIT;
	m.has_socket_protocol = true;
	m.socket_protocol = protocol_of(q->transport);
	set_address(&m, (const struct sockaddr *)&q->peer, false);
	set_query_time(&m, q_ns);
	Dnstap__Dnstap frame = frame_of(d, &m);

	/* the query as the client sent it */
	m.type = DNSTAP__MESSAGE__TYPE__CLIENT_QUERY;
	m.has_query_message = true;
	m.query_message.data = q->wire;
	m.query_message.len = q->len;
	submit(d, worker, &frame, q->len, st);

	/* the answer as the client gets it */
	m.type = DNSTAP__MESSAGE__TYPE__CLIENT_RESPONSE;
	m.has_query_message = false;
	m.has_response_message = true;
	m.response_message.data = (uint8_t *)wire;
	m.response_message.len = len;
	set_response_time(&m, now_ns);
	submit(d, worker, &frame, len, st);
}

void dv_dnstap_resolver(dv_dnstap_t *d, unsigned worker,
			const dv_pool_msg_t *pm, dv_stats_t *st)
{
	Dnstap__Message m = DNSTAP__MESSAGE__INIT;
	m.has_socket_protocol = true;
	m.socket_protocol = protocol_of(pm->server->scheme);
	/* the upstream is the responder */
	set_address(&m, (const struct sockaddr *)&pm->server->addr, true);
	Dnstap__Dnstap frame = frame_of(d, &m);
	if (!pm->answer) {
		m.type = DNSTAP__MESSAGE__TYPE__RESOLVER_QUERY;
		set_query_time(&m, wall_ns(0));
		m.has_query_message = true;
		m.query_message.data = (uint8_t *)pm->query;
		m.query_message.len = pm->query_len;
		submit(d, worker, &frame, pm->query_len, st);
		return;
	}
	uint64_t now_ns = wall_ns(0);
	m.type = DNSTAP__MESSAGE__TYPE__RESOLVER_RESPONSE;
	set_query_time(&m, now_ns > pm->rtt_us * 1000 ? now_ns - pm->rtt_us * 1000
						      : now_ns);
	set_response_time(&m, now_ns);
	m.has_response_message = true;
	m.response_message.data = (uint8_t *)pm->answer;
	m.response_message.len = pm->answer_len;
	submit(d, worker, &frame, pm->answer_len, st);
}

int dv_dnstap_start(dv_dnstap_t *d)
{
	if (!d)
		return 0;
	struct fstrm_iothr_options *iopt = fstrm_iothr_options_init();
	fstrm_iothr_options_set_num_input_queues(iopt, d->n_queues);
	fstrm_iothr_options_set_input_queue_size(iopt, d->queue_size);
	fstrm_iothr_options_set_queue_model(iopt, FSTRM_IOTHR_QUEUE_MODEL_SPSC);
	/* a collector that comes late is found within a second */
	fstrm_iothr_options_set_reopen_interval(iopt, 1);
	d->iothr = fstrm_iothr_init(iopt, &d->writer); /* takes the writer */
	fstrm_iothr_options_destroy(&iopt);
	if (!d->iothr)
		return -ENOMEM;
	for (unsigned i = 0; i < d->n_queues; i++)
		d->queues[i] = fstrm_iothr_get_input_queue_idx(d->iothr, i);
	return 0;
}

void dv_dnstap_free(dv_dnstap_t *d)
{
	if (!d)
		return;
	/* stops the I/O thread after it has written what is queued */
	if (d->iothr)
		fstrm_iothr_destroy(&d->iothr);
	if (d->writer)
		fstrm_writer_destroy(&d->writer);
	free(d->queues);
	free(d);
}

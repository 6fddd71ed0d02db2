/*
 * dv_config_validate() checks what the schema's per-key ranges cannot
 * express: rules across keys (a listener that needs tls.cert, two listeners
 * on one socket, a minimum above its maximum), schemes this build does not
 * implement, and files that must be readable.
 */
#include "src/config/schema.h"
#include "src/core/errors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/core/netmask.h"

/* Listener schemes that need tls.cert and tls.key. */
static bool scheme_needs_cert(dv_scheme_t s)
{
	return s == DV_SCHEME_TLS || s == DV_SCHEME_HTTPS || s == DV_SCHEME_QUIC;
}

/* Which sockets a listener binds: two listeners conflict when they bind
 * the same address and port with a common socket type. */
#define SOCK_UDP 1u
#define SOCK_TCP 2u

static unsigned listener_sockets(dv_scheme_t s)
{
	switch (s) {
	case DV_SCHEME_UDP:
	case DV_SCHEME_QUIC:
		return SOCK_UDP;
	case DV_SCHEME_DNS:
		return SOCK_UDP | SOCK_TCP;
	default:
		return SOCK_TCP;
	}
}

static bool same_addr(const dv_url_t *a, const dv_url_t *b)
{
	return a->addr_len == b->addr_len &&
	       memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* The file name or "command line", and the key or flag, for one value. */
static const char *src_of(const dv_config_t *cfg, unsigned cli_bit)
{
	if ((cfg->cli_set & cli_bit) != 0 || cfg->source[0] == '\0')
		return "command line";
	return cfg->source;
}

static const char *key_of(const dv_config_t *cfg, unsigned cli_bit,
			  const char *key, const char *flag)
{
	if ((cfg->cli_set & cli_bit) != 0 || cfg->source[0] == '\0')
		return flag;
	return key;
}

static int check_list(const dv_config_t *cfg, const dv_url_t *list,
		      unsigned n, unsigned bit, const char *key,
		      const char *flag, const char *what, const bool *impl,
		      char *err, size_t err_len)
{
	for (unsigned i = 0; i < n; i++) {
		if ((unsigned)list[i].scheme >= DV_SCHEME_COUNT) {
			dv_cfg_errf(err, err_len, "%s: %s: %s '%s': bad scheme",
				    src_of(cfg, bit),
				    key_of(cfg, bit, key, flag), what,
				    list[i].text);
			return DV_ECONFIG;
		}
		if (impl != NULL && !impl[list[i].scheme]) {
			dv_cfg_errf(err, err_len,
				    "%s: %s: %s '%s': scheme '%s' is not "
				    "implemented yet",
				    src_of(cfg, bit),
				    key_of(cfg, bit, key, flag), what,
				    list[i].text,
				    dv_scheme_name(list[i].scheme));
			return DV_ECONFIG;
		}
	}
	return 0;
}

static int check_file(const dv_config_t *cfg, const char *path,
		      unsigned bit, const char *key, const char *flag,
		      const char *needed_by, char *err, size_t err_len)
{
	if (path[0] == '\0') {
		dv_cfg_errf(err, err_len,
			    "%s: %s: not set, but listener '%s' needs it",
			    src_of(cfg, bit), key_of(cfg, bit, key, flag),
			    needed_by);
		return DV_ECONFIG;
	}
	if (access(path, R_OK) != 0) {
		dv_cfg_errf(err, err_len, "%s: %s: '%s': %s", src_of(cfg, bit),
			    key_of(cfg, bit, key, flag), path, strerror(errno));
		return DV_ECONFIG;
	}
	return 0;
}

/* The policy's files are readable (a URL is fetched when the policy is
 * built), its listeners are listeners (the command line may have
 * replaced the file's). */
static int check_policy(const dv_config_t *cfg, char *err, size_t err_len)
{
	for (unsigned i = 0; i < cfg->n_lists; i++) {
		const dv_cfg_list_t *l = &cfg->lists[i];
		bool url = strncmp(l->source, "http://", 7) == 0 ||
			   strncmp(l->source, "https://", 8) == 0;
		if (!url && access(l->source, R_OK) != 0) {
			dv_cfg_errf(err, err_len,
				    "%s: lists.%s.source: '%s': %s",
				    cfg->source, l->name, l->source,
				    strerror(errno));
			return DV_ECONFIG;
		}
	}
	for (unsigned i = 0; i < cfg->n_clients; i++) {
		const dv_cfg_client_t *c = &cfg->clients[i];
		bool found = c->listener[0] == '\0';
		for (unsigned k = 0; !found && k < cfg->n_listen; k++)
			found = strcmp(cfg->listen[k].text, c->listener) == 0;
		if (!found) {
			dv_cfg_errf(err, err_len,
				    "%s:%u: clients.listener: '%s' is not one "
				    "of the listen URLs",
				    cfg->source, c->line, c->listener);
			return DV_ECONFIG;
		}
	}
	return 0;
}

int dv_config_validate(const dv_config_t *cfg, const bool *listen_implemented,
		       const bool *upstream_implemented, char *err,
		       size_t err_len)
{
	const char *file = cfg->source[0] != '\0' ? cfg->source : "command line";
	const char *cert_user = NULL;
	int ret;

	if (cfg->n_listen == 0) {
		dv_cfg_errf(err, err_len,
			    "%s: %s: no listener (set listen: in the config "
			    "file or give --listen)",
			    file,
			    key_of(cfg, DV_CLI_SET_LISTEN, "listen",
				   "--listen"));
		return DV_ECONFIG;
	}
	if (cfg->n_upstream == 0) {
		dv_cfg_errf(err, err_len,
			    "%s: %s: no upstream (set upstream: in the config "
			    "file or give --upstream)",
			    file,
			    key_of(cfg, DV_CLI_SET_UPSTREAM, "upstream",
				   "--upstream"));
		return DV_ECONFIG;
	}
	ret = check_list(cfg, cfg->listen, cfg->n_listen, DV_CLI_SET_LISTEN,
			 "listen", "--listen", "listener", listen_implemented,
			 err, err_len);
	if (ret != 0)
		return ret;
	ret = check_list(cfg, cfg->upstream, cfg->n_upstream,
			 DV_CLI_SET_UPSTREAM, "upstream", "--upstream",
			 "upstream", upstream_implemented, err, err_len);
	if (ret != 0)
		return ret;
	ret = check_list(cfg, cfg->fallback, cfg->n_fallback,
			 DV_CLI_SET_FALLBACK, "fallback", "--fallback",
			 "fallback", upstream_implemented, err, err_len);
	if (ret != 0)
		return ret;
	/* groups.NAME.upstream and .fallback: as the top-level ones */
	for (unsigned i = 0; i < cfg->n_groups; i++) {
		const dv_cfg_group_t *g = &cfg->groups[i];
		char up[DV_POLICY_NAME_MAX + 20], fb[DV_POLICY_NAME_MAX + 20];
		snprintf(up, sizeof(up), "groups.%s.upstream", g->name);
		snprintf(fb, sizeof(fb), "groups.%s.fallback", g->name);
		ret = check_list(cfg, g->upstream, g->n_upstream, 0, up, up,
				 "upstream", upstream_implemented, err,
				 err_len);
		if (ret == 0)
			ret = check_list(cfg, g->fallback, g->n_fallback, 0,
					 fb, fb, "fallback",
					 upstream_implemented, err, err_len);
		if (ret != 0)
			return ret;
	}

	for (unsigned i = 0; i < cfg->n_listen; i++) {
		const dv_url_t *a = &cfg->listen[i];

		if (cert_user == NULL && scheme_needs_cert(a->scheme))
			cert_user = a->text;
		for (unsigned j = 0; j < i; j++) {
			const dv_url_t *b = &cfg->listen[j];

			if (same_addr(a, b) && (listener_sockets(a->scheme) &
						listener_sockets(b->scheme))) {
				dv_cfg_errf(err, err_len,
					    "%s: %s: listener '%s' binds the "
					    "same address as '%s'",
					    src_of(cfg, DV_CLI_SET_LISTEN),
					    key_of(cfg, DV_CLI_SET_LISTEN,
						   "listen", "--listen"),
					    a->text, b->text);
				return DV_ECONFIG;
			}
		}
	}
	if (cert_user != NULL) {
		ret = check_file(cfg, cfg->tls_cert, DV_CLI_SET_TLS_CERT,
				 "tls.cert", "--tls-cert", cert_user, err,
				 err_len);
		if (ret != 0)
			return ret;
		ret = check_file(cfg, cfg->tls_key, DV_CLI_SET_TLS_KEY,
				 "tls.key", "--tls-key", cert_user, err,
				 err_len);
		if (ret != 0)
			return ret;
	}
	if (cfg->tls_ca[0] != '\0' && access(cfg->tls_ca, R_OK) != 0) {
		dv_cfg_errf(err, err_len, "%s: %s: '%s': %s",
			    src_of(cfg, DV_CLI_SET_TLS_CA),
			    key_of(cfg, DV_CLI_SET_TLS_CA, "tls.ca", "--ca"),
			    cfg->tls_ca, strerror(errno));
		return DV_ECONFIG;
	}

	if (cfg->tls_client_ca[0] != '\0' &&
	    access(cfg->tls_client_ca, R_OK) != 0) {
		dv_cfg_errf(err, err_len, "%s: tls.client-ca: '%s': %s",
			    file, cfg->tls_client_ca, strerror(errno));
		return DV_ECONFIG;
	}

	if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
		dv_cfg_errf(err, err_len,
			    "%s: pool.reconnect-min-ms: %u is greater than "
			    "pool.reconnect-max-ms (%u)",
			    file, cfg->reconnect_min_ms, cfg->reconnect_max_ms);
		return DV_ECONFIG;
	}
	ret = check_policy(cfg, err, err_len);
	if (ret != 0)
		return ret;
	if (cfg->dnstap_socket[0] != '\0' && cfg->dnstap_file[0] != '\0') {
		dv_cfg_errf(err, err_len,
			    "%s: dnstap.file: dnstap.socket is set too; "
			    "dnstap goes to one of the two",
			    file);
		return DV_ECONFIG;
	}
	for (unsigned i = 0; i < cfg->n_listen; i++) {
		/* such a listener would close every connection */
		if (cfg->listen[i].proxy_protocol && cfg->n_proxy_from == 0) {
			dv_cfg_errf(err, err_len,
				    "%s: proxy-protocol.from: empty, so '%s' "
				    "would refuse every connection: name the "
				    "load balancers",
				    file, cfg->listen[i].text);
			return DV_ECONFIG;
		}
	}
	if (cfg->cache_min_ttl > cfg->cache_max_ttl) {
		dv_cfg_errf(err, err_len,
			    "%s: cache.min-ttl: %u is greater than "
			    "cache.max-ttl (%u)",
			    file, cfg->cache_min_ttl, cfg->cache_max_ttl);
		return DV_ECONFIG;
	}
	return 0;
}

bool dv_url_is_local(const dv_url_t *url)
{
	static const char *const local[] = {
		"127.0.0.0/8",	  "10.0.0.0/8", "172.16.0.0/12",
		"192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
		"::1/128",	  "fc00::/7",	"fe80::/10",
	};
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
		dv_netmask_t m;
		char why[64];
		if (dv_netmask_parse(local[i], &m, why, sizeof(why)) == 0 &&
		    dv_netmask_match(&m, (const struct sockaddr *)&url->addr))
			return true;
	}
	return false;
}

bool dv_url_is_loopback(const dv_url_t *url)
{
	const struct sockaddr_storage *a = &url->addr;
	if (a->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >>
			24) == 127;
	if (a->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
			&((const struct sockaddr_in6 *)a)->sin6_addr);
	return false;
}

bool dv_url_has_udp_front(const dv_config_t *cfg, const dv_url_t *url)
{
	return url->scheme == DV_SCHEME_UDP ||
	       (url->scheme == DV_SCHEME_TCP && cfg->loopback_udp &&
		dv_url_is_loopback(url));
}

/* udp:// and tcp:// carry DNS in the clear: an answer from across networks
 * can be forged by anyone on the path, and off the path by guessing ports
 * and ids, and what is forged lands in the shared cache. */
static unsigned warn_plain(const dv_url_t *list, unsigned n, const char *what,
			   void (*warn)(void *arg, const char *msg), void *arg)
{
	unsigned count = 0;
	for (unsigned i = 0; i < n; i++) {
		const dv_url_t *u = &list[i];
		if ((u->scheme != DV_SCHEME_UDP && u->scheme != DV_SCHEME_TCP) ||
		    dv_url_is_local(u))
			continue;
		char msg[768];
		snprintf(msg, sizeof(msg),
			 "%s '%s' is outside loopback and private networks: "
			 "its answers are not authenticated and can be "
			 "spoofed off-path into the cache; use tls://, "
			 "https:// or quic:// for a resolver across networks",
			 what, u->text);
		warn(arg, msg);
		count++;
	}
	return count;
}

unsigned dv_config_warnings(const dv_config_t *cfg,
			    void (*warn)(void *arg, const char *msg),
			    void *arg)
{
	unsigned n = warn_plain(cfg->upstream, cfg->n_upstream, "upstream",
				warn, arg) +
		     warn_plain(cfg->fallback, cfg->n_fallback, "fallback",
				warn, arg);
	for (unsigned i = 0; i < cfg->n_groups; i++) {
		const dv_cfg_group_t *g = &cfg->groups[i];
		char up[DV_POLICY_NAME_MAX + 20], fb[DV_POLICY_NAME_MAX + 20];
		snprintf(up, sizeof(up), "groups.%s.upstream", g->name);
		snprintf(fb, sizeof(fb), "groups.%s.fallback", g->name);
		n += warn_plain(g->upstream, g->n_upstream, up, warn, arg) +
		     warn_plain(g->fallback, g->n_fallback, fb, warn, arg);
	}
	return n;
}

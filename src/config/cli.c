/*
 * The daemon's command line: dv_cli_parse() reads the flags, dv_cli_apply()
 * sets config values through the schema entries the flags name, and
 * dv_cli_usage() prints --help.
 */
#include "src/config/schema.h"
#include "src/core/errors.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef enum {
	OPT_CONFIG,
	OPT_SET, /* sets a schema key */
	OPT_CHECK_CONFIG,
	OPT_HELP_CONFIG,
	OPT_VERSION,
	OPT_HELP,
} opt_kind_t;

typedef struct {
	const char *lng;   /* "--listen" */
	const char *shrt;  /* "-c" or NULL */
	opt_kind_t kind;
	const char *section, *key; /* OPT_SET: the schema entry */
	unsigned cli_bit;          /* OPT_SET: recorded in cfg->cli_set */
	const char *arg;           /* NULL: takes no argument */
	const char *help;
} opt_t;

static const opt_t options[] = {
	{ "--config", "-c", OPT_CONFIG, NULL, NULL, 0, "FILE",
	  "read the YAML config FILE (without it: built-in defaults)" },
	{ "--listen", NULL, OPT_SET, NULL, "listen", DV_CLI_SET_LISTEN, "URL",
	  "serve clients on URL; repeat for more listeners" },
	{ "--upstream", NULL, OPT_SET, NULL, "upstream", DV_CLI_SET_UPSTREAM,
	  "URL", "forward queries to the resolver at URL; repeatable" },
	{ "--fallback", NULL, OPT_SET, NULL, "fallback", DV_CLI_SET_FALLBACK,
	  "URL",
	  "backup resolver for slow or dead upstreams; repeatable" },
	{ "--tls-cert", NULL, OPT_SET, "tls", "cert", DV_CLI_SET_TLS_CERT,
	  "FILE", "PEM certificate chain for tls, https and quic listeners" },
	{ "--tls-key", NULL, OPT_SET, "tls", "key", DV_CLI_SET_TLS_KEY, "FILE",
	  "PEM private key of that certificate" },
	{ "--ca", NULL, OPT_SET, "tls", "ca", DV_CLI_SET_TLS_CA, "FILE",
	  "CA bundle for upstream certificates (default: system)" },
	{ "--workers", NULL, OPT_SET, NULL, "workers", DV_CLI_SET_WORKERS, "N",
	  "worker threads; 0 = one per CPU" },
	{ "--admin", NULL, OPT_SET, "admin", "listen", DV_CLI_SET_ADMIN,
	  "URL",
	  "serve /metrics, /healthz and /readyz on URL "
	  "(http://127.0.0.1:9153); repeatable" },
	{ "--user", NULL, OPT_SET, NULL, "user", DV_CLI_SET_USER, "NAME",
	  "once every listener is bound, run as user NAME (name or number) "
	  "with no capability left" },
	{ "--group", NULL, OPT_SET, NULL, "group", DV_CLI_SET_GROUP, "NAME",
	  "with --user: run as group NAME (default: the user's own)" },
	{ "--check-config", NULL, OPT_CHECK_CONFIG, NULL, NULL, 0, NULL,
	  "load and validate the configuration, then exit" },
	{ "--help-config", NULL, OPT_HELP_CONFIG, NULL, NULL, 0, NULL,
	  "print every config key, its range and default, and exit" },
	{ "--version", NULL, OPT_VERSION, NULL, NULL, 0, NULL,
	  "print the version and exit" },
	{ "--help", "-h", OPT_HELP, NULL, NULL, 0, NULL,
	  "print this help and exit" },
};

#define OPTIONS_LEN (sizeof(options) / sizeof(options[0]))

/*
 * Read the option at argv[*i] and its argument, advancing *i past both.
 * Accepts "--flag VALUE", "--flag=VALUE", "-c FILE".  An argument that looks
 * like a flag ("-x...") counts as missing: no URL or sane path starts with
 * '-', and "--listen --upstream x" is far likelier a forgotten value.
 */
static int cli_next(int argc, char **argv, int *i, const opt_t **opt,
		    const char **val, char *err, size_t err_len)
{
	const char *a = argv[*i];
	const char *eq = NULL;
	size_t n;

	if (a[0] != '-' || a[1] == '\0' || strcmp(a, "--") == 0) {
		dv_cfg_errf(err, err_len, "unexpected argument '%s'", a);
		return DV_ECONFIG;
	}
	if (a[1] == '-')
		eq = strchr(a, '=');
	n = eq != NULL ? (size_t)(eq - a) : strlen(a);
	*opt = NULL;
	for (size_t k = 0; k < OPTIONS_LEN; k++) {
		const opt_t *o = &options[k];

		if ((strlen(o->lng) == n && strncmp(a, o->lng, n) == 0) ||
		    (o->shrt != NULL && eq == NULL && strcmp(a, o->shrt) == 0)) {
			*opt = o;
			break;
		}
	}
	if (*opt == NULL) {
		dv_cfg_errf(err, err_len, "unknown option '%.*s'", (int)n, a);
		return DV_ECONFIG;
	}
	(*i)++;
	*val = NULL;
	if ((*opt)->arg == NULL) {
		if (eq != NULL) {
			dv_cfg_errf(err, err_len, "%s: takes no argument",
				    (*opt)->lng);
			return DV_ECONFIG;
		}
		return 0;
	}
	if (eq != NULL) {
		*val = eq + 1;
	} else if (*i < argc && !(argv[*i][0] == '-' && argv[*i][1] != '\0')) {
		*val = argv[(*i)++];
	} else {
		dv_cfg_errf(err, err_len, "%s: missing argument", a);
		return DV_ECONFIG;
	}
	if ((*val)[0] == '\0') {
		dv_cfg_errf(err, err_len, "%s: empty argument", (*opt)->lng);
		return DV_ECONFIG;
	}
	return 0;
}

int dv_cli_parse(int argc, char **argv, dv_cli_t *cli, char *err,
		 size_t err_len)
{
	const opt_t *opt;
	const char *val;
	int ret;

	memset(cli, 0, sizeof(*cli));
	for (int i = 1; i < argc;) {
		ret = cli_next(argc, argv, &i, &opt, &val, err, err_len);
		if (ret != 0)
			return ret;
		switch (opt->kind) {
		case OPT_CONFIG:
			if (cli->config_path != NULL) {
				dv_cfg_errf(err, err_len,
					    "-c/--config: given more than "
					    "once");
				return DV_ECONFIG;
			}
			cli->config_path = val;
			break;
		case OPT_CHECK_CONFIG:
			cli->check_config = true;
			break;
		case OPT_HELP_CONFIG:
			cli->help_config = true;
			break;
		case OPT_VERSION:
			cli->version = true;
			break;
		case OPT_HELP:
			cli->help = true;
			break;
		case OPT_SET:
			break; /* values are checked by dv_cli_apply() */
		}
	}
	return 0;
}

int dv_cli_apply(int argc, char **argv, dv_config_t *cfg, char *err,
		 size_t err_len)
{
	unsigned applied = 0; /* cli bits seen in this argv */
	const opt_t *opt;
	const dv_cfg_item_t *it;
	const char *val;
	char why[384];
	int ret;

	for (int i = 1; i < argc;) {
		ret = cli_next(argc, argv, &i, &opt, &val, err, err_len);
		if (ret != 0)
			return ret;
		if (opt->kind != OPT_SET)
			continue;
		it = dv_cfg_schema_find(opt->section, opt->key);
		if (it == NULL) { /* the tables disagree: a bug, not input */
			dv_cfg_errf(err, err_len, "%s: no config key '%s'",
				    opt->lng, opt->key);
			return DV_ECONFIG;
		}
		/* The first --listen replaces the file's listeners. */
		if ((applied & opt->cli_bit) == 0)
			dv_cfg_item_clear(it, cfg);
		applied |= opt->cli_bit;
		if (dv_cfg_item_set(it, cfg, val, why, sizeof(why)) != 0) {
			dv_cfg_errf(err, err_len, "%s '%.200s': %s", opt->lng,
				    val, why);
			return DV_ECONFIG;
		}
		cfg->cli_set |= opt->cli_bit;
	}
	return 0;
}

void dv_cli_usage(FILE *out)
{
	const dv_cfg_item_t *workers = dv_cfg_schema_find(NULL, "workers");
	char flag[48];

	fputs("dnsveil [-c FILE] [--listen URL]... [--upstream URL]... "
	      "[--fallback URL]...\n"
	      "        [--tls-cert FILE] [--tls-key FILE] [--ca FILE] "
	      "[--workers N]\n"
	      "        [--admin URL]... [--user NAME [--group NAME]]\n"
	      "        [--check-config] [--version] [--help]\n"
	      "\n"
	      "Encrypted DNS frontend: serves DNS over HTTPS, TLS, QUIC and "
	      "plain DNS,\n"
	      "answers from one cache and forwards the rest to a pool of "
	      "upstream resolvers.\n"
	      "\n"
	      "Options:\n",
	      out);
	for (size_t k = 0; k < OPTIONS_LEN; k++) {
		const opt_t *o = &options[k];

		snprintf(flag, sizeof(flag), "%s%s%s%s%s",
			 o->shrt ? o->shrt : "", o->shrt ? ", " : "", o->lng,
			 o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(out, "  %-20s %s", flag, o->help);
		if (o->kind == OPT_SET && workers != NULL &&
		    strcmp(o->key, "workers") == 0)
			fprintf(out, " (%" PRIu64 "..%" PRIu64 ")", workers->min,
				workers->max);
		fputc('\n', out);
	}
	fputs("  Every flag that takes a value also accepts --flag=VALUE.\n"
	      "\n"
	      "Flags override the config file. The first --listen replaces "
	      "all listeners\n"
	      "from the file, likewise --upstream and --fallback.\n"
	      "\n"
	      "URLs (addresses are IP literals, never host names; IPv6 as "
	      "[::1]:PORT):\n"
	      "  listener:  udp://ADDR:PORT   tcp://ADDR:PORT   dns://ADDR:PORT "
	      "(udp + tcp)\n"
	      "             tls://ADDR:PORT   https://ADDR:PORT/PATH   "
	      "http://ADDR:PORT/PATH\n"
	      "             quic://ADDR:PORT\n"
	      "  upstream:  udp://ADDR:PORT   tcp://ADDR:PORT   "
	      "tls://ADDR:PORT#NAME\n"
	      "             https://ADDR:PORT/PATH#NAME   quic://ADDR:PORT#NAME\n"
	      "  NAME is the name the upstream's certificate must match (and "
	      "the SNI; for\n"
	      "  https:// also the :authority). https:// upstreams speak "
	      "HTTP/2 (POST, RFC 8484).\n"
	      "\n"
	      "Example:\n"
	      "  dnsveil --listen dns://127.0.0.1:53 --listen "
	      "https://[::1]:8443/dns-query \\\n"
	      "          --tls-cert cert.pem --tls-key key.pem \\\n"
	      "          --upstream tcp://127.0.0.1:5335 \\\n"
	      "          --fallback tls://1.1.1.1:853#cloudflare-dns.com \\\n"
	      "          --fallback https://9.9.9.9:443/dns-query#dns.quad9.net\n",
	      out);
}

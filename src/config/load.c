/*
 * The YAML loader: dv_config_load() and dv_config_load_buffer().
 *
 * Design note.  The loader walks libyaml's event stream rather than a
 * document tree or libcyaml, because every event carries its own mark: each
 * message can say FILE:LINE of the very key or value that is wrong.  The
 * first error ends the load, and a failed load leaves the caller's config
 * untouched (the file is parsed into a copy), which SIGHUP reload relies on.
 */
#include "src/config/load.h"
#include "src/config/schema.h"
#include "src/core/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A config file is a few KiB; anything bigger is the wrong file. */
#define CONFIG_FILE_MAX (1024 * 1024)


static unsigned mark_line(const yaml_mark_t *m)
{
	return (unsigned)m->line + 1;
}

const char *dv_load_kind(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_ALIAS_EVENT:
		return "an alias";
	case YAML_SCALAR_EVENT:
		return "a scalar";
	default:
		return "nothing";
	}
}

/* A plain "", "~" or "null": YAML's way of writing "no value". */
bool dv_load_is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Pull the next event; a libyaml error becomes "FILE:LINE: syntax error". */
int dv_load_next(loader_t *l, yaml_event_t *ev)
{
	yaml_parser_t *p = &l->parser;
	unsigned line, cline;

	if (yaml_parser_parse(p, ev))
		return 0;
	if (p->error == YAML_MEMORY_ERROR) {
		dv_cfg_errf(l->err, l->err_len, "%s: out of memory", l->path);
		return -ENOMEM;
	}
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		line = 1;
		for (size_t i = 0; i < p->problem_offset && i < l->len; i++)
			line += l->buf[i] == '\n';
	} else {
		line = mark_line(&p->problem_mark);
	}
	if (p->context == NULL) {
		dv_cfg_errf(l->err, l->err_len, "%s:%u: syntax error: %s",
			    l->path, line, p->problem ? p->problem : "unknown");
		return DV_ECONFIG;
	}
	/*
	 * libyaml notices a key without ':' only on a later line; the key's
	 * own line is the context mark.  For an unclosed bracket or quote,
	 * say where it was opened.
	 */
	cline = mark_line(&p->context_mark);
	if (strcmp(p->context, "while scanning a simple key") == 0)
		line = cline;
	if (cline < line)
		dv_cfg_errf(l->err, l->err_len,
			    "%s:%u: syntax error: %s (%s started on line %u)",
			    l->path, line, p->problem ? p->problem : "unknown",
			    p->context, cline);
	else
		dv_cfg_errf(l->err, l->err_len, "%s:%u: syntax error: %s (%s)",
			    l->path, line, p->problem ? p->problem : "unknown",
			    p->context);
	return DV_ECONFIG;
}

/* Error at an event: "FILE:LINE: NAME: reason". */
int dv_load_fail(loader_t *l, const yaml_event_t *ev, const char *name,
		   const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	dv_cfg_errf(l->err, l->err_len, "%s:%u: %s: %s", l->path,
		    mark_line(&ev->start_mark), name, why);
	return DV_ECONFIG;
}

/* The scalar's text, refusing embedded NULs that would cut it short. */
int dv_load_text(loader_t *l, const yaml_event_t *ev, const char *name,
		       const char **text)
{
	const char *v = (const char *)ev->data.scalar.value;

	if (strlen(v) != ev->data.scalar.length)
		return dv_load_fail(l, ev, name, "contains a NUL character");
	*text = v;
	return 0;
}

/* One scalar value for `it`: "FILE:LINE: KEY: 'VALUE': reason" on error. */
static int load_scalar(loader_t *l, const dv_cfg_item_t *it, void *base,
		       const char *name, const yaml_event_t *ev)
{
	char why[384];
	const char *v = NULL;
	int ret;

	ret = dv_load_text(l, ev, name, &v);
	if (ret != 0)
		return ret;
	if (dv_cfg_item_set(it, base, v, why, sizeof(why)) != 0)
		return dv_load_fail(l, ev, name, "'%.200s': %s", v, why);
	return 0;
}

int dv_load_value(loader_t *l, const dv_cfg_item_t *it, void *base,
		  const char *item_name, const yaml_event_t *ev)
{
	yaml_event_t item;
	char name[160];
	int ret;

	if (item_name)
		snprintf(name, sizeof(name), "%s", item_name);
	else
		dv_cfg_item_name(it, name, sizeof(name));
	if (ev->type == YAML_ALIAS_EVENT)
		return dv_load_fail(l, ev, name, "aliases are not supported");

	if (it->type != DV_CFG_LIST) {
		if (ev->type != YAML_SCALAR_EVENT)
			return dv_load_fail(l, ev, name, "expected a %s, got %s",
				       it->type == DV_CFG_STRING ? "string"
							    : "scalar",
				       dv_load_kind(ev));
		if (dv_load_is_null(ev)) {
			if (it->type != DV_CFG_STRING)
				return dv_load_fail(l, ev, name, "missing value");
			((char *)dv_cfg_item_ptr(it, base))[0] = '\0';
			return 0;
		}
		return load_scalar(l, it, base, name, ev);
	}

	/* A list replaces whatever the list held. */
	dv_cfg_item_clear(it, base);
	if (ev->type == YAML_SCALAR_EVENT) { /* one item, or null = none */
		if (dv_load_is_null(ev) &&
		    !(it->list->null_is_word &&
		      strcmp((const char *)ev->data.scalar.value, "null") == 0))
			return 0;
		return load_scalar(l, it, base, name, ev);
	}
	if (ev->type != YAML_SEQUENCE_START_EVENT)
		return dv_load_fail(l, ev, name, "expected a list of %s, got %s",
			       it->list->many, dv_load_kind(ev));
	for (;;) {
		ret = dv_load_next(l, &item);
		if (ret != 0)
			return ret;
		if (item.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&item);
			return 0;
		}
		if (item.type != YAML_SCALAR_EVENT)
			ret = dv_load_fail(l, &item, name, "expected %s, got %s",
				      it->list->one, dv_load_kind(&item));
		else
			ret = load_scalar(l, it, base, name, &item);
		yaml_event_delete(&item);
		if (ret != 0)
			return ret;
	}
}

static int load_mapping(loader_t *l, const char *section);

/* "limits:" and the like: `val` must open a mapping (or be null). */
static int load_section(loader_t *l, const yaml_event_t *key,
			const yaml_event_t *val, const char *section)
{
	for (size_t i = 0; i < l->n_sections_seen; i++) {
		if (l->sections_seen[i] == section)
			return dv_load_fail(l, key, section, "duplicate key");
	}
	l->sections_seen[l->n_sections_seen++] = section;
	if (val->type == YAML_MAPPING_START_EVENT)
		return load_mapping(l, section);
	if (val->type == YAML_SCALAR_EVENT && dv_load_is_null(val))
		return 0; /* "tls:" with nothing under it */
	return dv_load_fail(l, val, section, "expected a mapping of keys, got %s",
		       dv_load_kind(val));
}

/*
 * A mapping whose MAPPING_START has been consumed: the top level
 * (section == NULL) or one section.  Reads up to its MAPPING_END.
 */
static int load_mapping(loader_t *l, const char *section)
{
	yaml_event_t key, val;
	const dv_cfg_item_t *it;
	const char *k, *sec;
	char name[160];
	int ret;

	for (;;) {
		ret = dv_load_next(l, &key);
		if (ret != 0)
			return ret;
		if (key.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&key);
			return 0;
		}
		if (key.type != YAML_SCALAR_EVENT) {
			ret = dv_load_fail(l, &key, section ? section : "(top level)",
				      "keys must be plain strings, got %s",
				      dv_load_kind(&key));
			goto done_key;
		}
		k = (const char *)key.data.scalar.value;
		snprintf(name, sizeof(name), "%s%s%.100s", section ? section : "",
			 section ? "." : "", k);
		if (strlen(k) != key.data.scalar.length) {
			ret = dv_load_fail(l, &key, name,
				      "key contains a NUL character");
			goto done_key;
		}

		ret = dv_load_next(l, &val);
		if (ret != 0)
			goto done_key;
		it = dv_cfg_schema_find(section, k);
		sec = section == NULL ? dv_cfg_find_section(k) : NULL;
		if (it != NULL && l->seen[it - dv_cfg_schema]) {
			ret = dv_load_fail(l, &key, name, "duplicate key");
		} else if (it != NULL) {
			l->seen[it - dv_cfg_schema] = true;
			ret = dv_load_value(l, it, l->cfg, NULL, &val);
		} else if (sec != NULL) {
			ret = load_section(l, &key, &val, sec);
		} else if (section == NULL && dv_load_policy_key(k)) {
			ret = dv_load_policy(l, &key, &val);
		} else {
			ret = dv_load_fail(l, &key, name, "unknown key");
		}
		yaml_event_delete(&val);
done_key:
		yaml_event_delete(&key);
		if (ret != 0)
			return ret;
	}
}

/* The whole stream: at most one document, whose root is a mapping. */
static int load_stream(loader_t *l)
{
	yaml_event_t ev;
	int ret;

	ret = dv_load_next(l, &ev); /* STREAM_START */
	if (ret != 0)
		return ret;
	yaml_event_delete(&ev);

	ret = dv_load_next(l, &ev);
	if (ret != 0)
		return ret;
	if (ev.type == YAML_STREAM_END_EVENT) { /* empty file: all defaults */
		yaml_event_delete(&ev);
		return 0;
	}
	yaml_event_delete(&ev); /* DOCUMENT_START */

	ret = dv_load_next(l, &ev);
	if (ret != 0)
		return ret;
	if (ev.type == YAML_MAPPING_START_EVENT)
		ret = load_mapping(l, NULL);
	else if (!(ev.type == YAML_SCALAR_EVENT && dv_load_is_null(&ev)))
		ret = dv_load_fail(l, &ev, "(top level)",
			      "expected a mapping of keys, got %s",
			      dv_load_kind(&ev));
	yaml_event_delete(&ev);
	if (ret != 0)
		return ret;

	ret = dv_load_next(l, &ev); /* DOCUMENT_END */
	if (ret != 0)
		return ret;
	yaml_event_delete(&ev);

	ret = dv_load_next(l, &ev);
	if (ret != 0)
		return ret;
	if (ev.type != YAML_STREAM_END_EVENT)
		ret = dv_load_fail(l, &ev, "(top level)",
			      "only one YAML document is allowed");
	yaml_event_delete(&ev);
	return ret;
}

int dv_config_load_buffer(dv_config_t *cfg, const char *name,
			  const void *data, size_t len, char *err,
			  size_t err_len)
{
	loader_t *l;
	dv_config_t *tmp;
	int ret;

	if (strlen(name) >= sizeof(cfg->source)) {
		dv_cfg_errf(err, err_len, "%.64s...: file name too long", name);
		return DV_ECONFIG;
	}
	/* Both are big (~100 KiB of URLs): keep them off the stack. */
	tmp = malloc(sizeof(*tmp));
	if (tmp == NULL) {
		ret = -ENOMEM;
		goto fail_tmp;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		ret = -ENOMEM;
		goto fail_loader;
	}
	if (!yaml_parser_initialize(&l->parser)) {
		ret = -ENOMEM;
		goto fail_parser;
	}
	memcpy(tmp, cfg, sizeof(*tmp));
	dv_cfg_copy_str(tmp->source, sizeof(tmp->source), name);
	l->path = name;
	l->buf = data;
	l->len = len;
	l->cfg = tmp;
	l->err = err;
	l->err_len = err_len;
	yaml_parser_set_input_string(&l->parser, data, len);

	ret = load_stream(l);
	if (ret == 0)
		ret = dv_cfg_policy_resolve(tmp, err, err_len);
	if (ret == 0)
		memcpy(cfg, tmp, sizeof(*cfg));

	yaml_parser_delete(&l->parser);
	free(l);
	free(tmp);
	return ret;

fail_parser:
	free(l);
fail_loader:
	free(tmp);
fail_tmp:
	dv_cfg_errf(err, err_len, "%s: %s", name, dv_strerror(ret));
	return ret;
}

/* Read a whole (small) file into a malloc'd buffer. */
static int read_file(const char *path, unsigned char **out, size_t *out_len,
		     char *err, size_t err_len)
{
	unsigned char *buf;
	size_t len = 0;
	FILE *f;
	int ret;

	f = fopen(path, "rb");
	if (f == NULL) {
		ret = -errno;
		goto fail_open;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		ret = -ENOMEM;
		goto fail_alloc;
	}
	len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f)) {
		ret = errno != 0 ? -errno : -EIO;
		goto fail_read;
	}
	if (len > CONFIG_FILE_MAX) {
		dv_cfg_errf(err, err_len,
			    "%s: larger than %d bytes, not a config file", path,
			    CONFIG_FILE_MAX);
		ret = DV_ECONFIG;
		goto fail_read_msg;
	}
	fclose(f);
	*out = buf;
	*out_len = len;
	return 0;

fail_read:
	dv_cfg_errf(err, err_len, "%s: %s", path, dv_strerror(ret));
fail_read_msg:
	free(buf);
	fclose(f);
	return ret;
fail_alloc:
	fclose(f);
fail_open:
	dv_cfg_errf(err, err_len, "%s: %s", path, dv_strerror(ret));
	return ret;
}

int dv_config_load(dv_config_t *cfg, const char *path, char *err,
		   size_t err_len)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int ret;

	ret = read_file(path, &buf, &len, err, err_len);
	if (ret != 0)
		return ret;
	ret = dv_config_load_buffer(cfg, path, buf, len, err, err_len);
	free(buf);
	return ret;
}

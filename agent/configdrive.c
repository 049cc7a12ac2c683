/* NoCloud config drive contents (see configdrive.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <nettle/aes.h>
#include <nettle/base64.h>
#include <nettle/cfb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "agent/configdrive.h"
#include "common/json-util.h"
#include "common/parse.h"

/* ---- checks ---- */

/* A string field (field names it in messages): absent or null gives NULL (0); else 1 with *ret
 * pointing into obj. Text as common/json-util checks it (at most max bytes, UTF-8, no NUL or
 * control character; tab and line ends only where multiline). */
static int get_string(const json_t *obj, const char *key, const char *field, size_t max,
		      bool multiline, const char **ret, char **ret_error)
{
	struct ju_ctx c = {0};
	const json_t *v = json_object_get(obj, key);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	int r = json_is_string(v)
		    ? ju_check_text(&c, field, json_string_value(v), json_string_length(v), max,
				    multiline ? JU_TEXT_MULTILINE : 0)
		    : ju_fail(&c, "%s: expected string, got %s", field, ju_type_name(v));
	if (r < 0)
		return ju_finish(&c, r, ret_error);
	*ret = json_string_value(v);
	return 1;
}

static int get_bool(const json_t *obj, const char *key, bool dflt, bool *ret, char **ret_error)
{
	struct ju_ctx c = {0};
	int r = ju_get_bool(&c, obj, NULL, key, dflt, ret);
	return ju_finish(&c, MIN(r, 0), ret_error);
}

/* A login name useradd accepts without --badname: [a-z_][a-z0-9_-]{0,31}. */
static bool account_is_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 32 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* An authorized_keys line: "<type> <base64> [comment]", printable ASCII. */
static bool pubkey_is_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	const char *sp = memchr(s, ' ', len);
	if (!sp || sp == s)
		return false;
	size_t tl = (size_t)(sp - s);
	if (!(strneq(s, "ssh-", 4) || strneq(s, "ecdsa-", 6) || strneq(s, "sk-", 3)) || tl > 64)
		return false;
	const char *b = sp + 1, *end = s + len;
	size_t bl = 0;
	while (b + bl < end && b[bl] != ' ') {
		char c = b[bl];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || c == '='))
			return false;
		bl++;
	}
	return bl >= 16;
}

/* An absolute path without "." or ".." segments, empty segments or a trailing '/'. */
static bool deploy_path_is_valid(const char *p)
{
	if (p[0] != '/' || p[1] == 0)
		return false;
	for (const char *s = p + 1;;) {
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		if (!*e)
			return true;
		s = e + 1;
	}
}

static bool ip_family(const char *s, int *ret_af)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1) {
		*ret_af = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, buf) == 1) {
		*ret_af = AF_INET6;
		return true;
	}
	return false;
}

static int dup_or_enomem(const char *s, char **ret)
{
	*ret = s ? strdup(s) : NULL;
	return s && !*ret ? -ENOMEM : 0;
}

bool configdrive_requested(const json_t *args)
{
	static const char *const keys[] = {"password", "public_key", "deploys", "login_account"};
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		const json_t *v = json_object_get(args, keys[i]);
		if (v && !json_is_null(v))
			return true;
	}
	return json_is_true(json_object_get(args, "reset_password"));
}

static int parse_keys(const json_t *args, struct configdrive *cd, char **ret_error)
{
	const char *s;
	int r = get_string(args, "public_key", "public_key", CONFIGDRIVE_KEY_MAX * 4, true, &s,
			   ret_error);
	if (r <= 0)
		return r;
	size_t n = 0;
	for (const char *p = s; *p;) {
		const char *e = strchrnul(p, '\n');
		size_t len = (size_t)(e - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > 0) {
			if (++n > CONFIGDRIVE_KEYS_MAX)
				return error_set(ret_error, -EINVAL,
						 "public_key: more than %d keys",
						 CONFIGDRIVE_KEYS_MAX);
			if (len > CONFIGDRIVE_KEY_MAX || !pubkey_is_valid(p, len))
				return error_set(
				    ret_error, -EINVAL,
				    "public_key: line %zu is not an OpenSSH public key", n);
			char *k = strndup(p, len);
			if (!k || strv_push(&cd->public_keys, k) < 0)
				return -ENOMEM;
		}
		p = *e ? e + 1 : e;
	}
	return 0;
}

static int parse_files(const json_t *args, struct configdrive *cd, char **ret_error)
{
	const json_t *a = json_object_get(args, "deploys");
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return error_set(ret_error, -EINVAL, "deploys: expected an array");
	if (json_array_size(a) > CONFIGDRIVE_FILES_MAX)
		return error_set(ret_error, -EINVAL, "deploys: more than %d files",
				 CONFIGDRIVE_FILES_MAX);
	cd->files = calloc(json_array_size(a) + 1, sizeof(*cd->files));
	if (!cd->files)
		return -ENOMEM;
	size_t total = 0, i;
	const json_t *v;
	json_array_foreach (a, i, v) {
		char field[64];
		if (!json_is_object(v))
			return error_set(ret_error, -EINVAL, "deploys[%zu]: expected an object", i);
		struct configdrive_file *f = &cd->files[cd->n_files];
		const char *path, *action;
		snprintf(field, sizeof(field), "deploys[%zu].path", i);
		int r = get_string(v, "path", field, CONFIGDRIVE_PATH_MAX, false, &path, ret_error);
		if (r < 0)
			return r;
		if (!path || !deploy_path_is_valid(path))
			return error_set(
			    ret_error, -EINVAL,
			    "%s: must be an absolute path without \".\" or \"..\" segments, "
			    "empty segments or a trailing '/'",
			    field);
		snprintf(field, sizeof(field), "deploys[%zu].action", i);
		r = get_string(v, "action", field, 32, false, &action, ret_error);
		if (r < 0)
			return r;
		const json_t *c = json_object_get(v, "content");
		if (c && !json_is_null(c) && !json_is_string(c))
			return error_set(ret_error, -EINVAL,
					 "deploys[%zu].content: expected a string", i);
		size_t len = json_is_string(c) ? json_string_length(c) : 0;
		if (len > CONFIGDRIVE_CONTENT_MAX - total)
			return error_set(ret_error, -EINVAL,
					 "deploys: contents longer than %d bytes together",
					 CONFIGDRIVE_CONTENT_MAX);
		total += len;
		f->path = strdup(path);
		f->content = malloc(len + 1);
		if (!f->path || !f->content)
			return -ENOMEM;
		if (len)
			memcpy(f->content, json_string_value(c), len);
		f->content[len] = 0;
		f->len = len;
		f->append = action && streq(action, "append");
		cd->n_files++;
	}
	return 0;
}

static int nic_cmp(const void *a, const void *b)
{
	const struct configdrive_nic *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

static int parse_nic(const json_t *v, size_t i, struct configdrive_nic *n, char **ret_error)
{
	char field[64];
	const char *s;
	if (!json_is_object(v))
		return error_set(ret_error, -EINVAL, "desc.nics[%zu]: expected an object", i);
	const json_t *idx = json_object_get(v, "index");
	n->index =
	    json_is_integer(idx) && json_integer_value(idx) >= 0 && json_integer_value(idx) <= 255
		? (int)json_integer_value(idx)
		: (int)i;
	snprintf(field, sizeof(field), "desc.nics[%zu].mac", i);
	int r = get_string(v, "mac", field, 17, false, &s, ret_error);
	if (r < 0)
		return r;
	if (!s || !mac_is_valid(s))
		return error_set(ret_error, -EINVAL, "%s: missing or not a MAC address", field);
	for (size_t k = 0; k < 17; k++)
		n->mac[k] = (char)((s[k] >= 'A' && s[k] <= 'F') ? s[k] - 'A' + 'a' : s[k]);
	int af = 0, gaf = 0;
	snprintf(field, sizeof(field), "desc.nics[%zu].ip", i);
	if ((r = get_string(v, "ip", field, 64, false, &s, ret_error)) < 0)
		return r;
	if (s && *s && !ip_family(s, &af))
		return error_set(ret_error, -EINVAL, "%s: not an IP address", field);
	const json_t *m = json_object_get(v, "masklen");
	if (s && *s && json_is_integer(m)) {
		json_int_t ml = json_integer_value(m);
		if (ml < 1 || ml > (af == AF_INET ? 32 : 128))
			return error_set(ret_error, -EINVAL, "desc.nics[%zu].masklen: out of range",
					 i);
		n->masklen = (int)ml;
		if ((r = dup_or_enomem(s, &n->ip)) < 0)
			return r;
	}
	snprintf(field, sizeof(field), "desc.nics[%zu].gateway", i);
	if ((r = get_string(v, "gateway", field, 64, false, &s, ret_error)) < 0)
		return r;
	if (s && *s) {
		if (!ip_family(s, &gaf))
			return error_set(ret_error, -EINVAL, "%s: not an IP address", field);
		if (n->ip && gaf == af && (r = dup_or_enomem(s, &n->gateway)) < 0)
			return r;
	}
	/* Cloudpods sends dns as "a,b" */
	snprintf(field, sizeof(field), "desc.nics[%zu].dns", i);
	if ((r = get_string(v, "dns", field, 256, false, &s, ret_error)) < 0)
		return r;
	for (const char *p = s; p && *p;) {
		const char *e = strchrnul(p, ',');
		char buf[64];
		size_t len = (size_t)(e - p);
		int daf;
		if (len >= sizeof(buf))
			return error_set(ret_error, -EINVAL, "%s: not a list of IP addresses",
					 field);
		memcpy(buf, p, len);
		buf[len] = 0;
		if (len && !ip_family(buf, &daf))
			return error_set(ret_error, -EINVAL, "%s: not a list of IP addresses",
					 field);
		if (len && strv_length(n->dns) < CONFIGDRIVE_DNS_MAX &&
		    strv_extend(&n->dns, buf) < 0)
			return -ENOMEM;
		p = *e ? e + 1 : e;
	}
	snprintf(field, sizeof(field), "desc.nics[%zu].domain", i);
	if ((r = get_string(v, "domain", field, HOSTNAME_MAX, false, &s, ret_error)) < 0)
		return r;
	if (s && *s) {
		if (!hostname_is_valid(s))
			return error_set(ret_error, -EINVAL, "%s: not a domain name", field);
		if ((r = dup_or_enomem(s, &n->domain)) < 0)
			return r;
	}
	const json_t *mtu = json_object_get(v, "mtu");
	if (json_is_integer(mtu)) {
		if (json_integer_value(mtu) < 0 || json_integer_value(mtu) > 65535)
			return error_set(ret_error, -EINVAL, "desc.nics[%zu].mtu: out of range", i);
		n->mtu = (int)json_integer_value(mtu);
	}
	n->is_default = json_is_true(json_object_get(v, "is_default"));
	return 0;
}

static int parse_nics(const json_t *desc, struct configdrive *cd, char **ret_error)
{
	const json_t *a = json_object_get(desc, "nics");
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return error_set(ret_error, -EINVAL, "desc.nics: expected an array");
	if (json_array_size(a) > 64)
		return error_set(ret_error, -EINVAL, "desc.nics: too many");
	cd->nics = calloc(json_array_size(a) + 1, sizeof(*cd->nics));
	if (!cd->nics)
		return -ENOMEM;
	size_t i;
	const json_t *v;
	json_array_foreach (a, i, v) {
		int r = parse_nic(v, i, &cd->nics[cd->n_nics], ret_error);
		cd->n_nics++;
		if (r < 0)
			return r;
	}
	qsort(cd->nics, cd->n_nics, sizeof(*cd->nics), nic_cmp);
	return 0;
}

int configdrive_parse(const json_t *args, const json_t *desc, struct configdrive **ret,
		      char **ret_error)
{
	_cleanup_configdrive_ struct configdrive *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return -ENOMEM;
	if (!json_is_object(args))
		return error_set(ret_error, -EINVAL, "body: expected an object");
	if (desc && !json_is_object(desc))
		return error_set(ret_error, -EINVAL, "desc: expected an object");
	int r = get_bool(args, "reset_password", false, &cd->reset_password, ret_error);
	if (r >= 0)
		r = get_bool(args, "enable_cloud_init", false, &cd->enable_cloud_init, ret_error);
	if (r < 0)
		return r;
	const char *s;
	/* The message never quotes the value: it is a password. */
	if ((r = get_string(args, "password", "password", CONFIGDRIVE_PASSWORD_MAX, false, &s,
			    ret_error)) < 0)
		return r;
	if (s && *s && !(cd->password = strdup(s)))
		return -ENOMEM;
	if ((r = get_string(args, "login_account", "login_account", 32, false, &s, ret_error)) < 0)
		return r;
	if (s && *s && !account_is_valid(s))
		return error_set(ret_error, -EINVAL,
				 "login_account: not a valid user name ([a-z_][a-z0-9_-]*, "
				 "at most 32)");
	if ((r = dup_or_enomem(s && *s ? s : "root", &cd->account)) < 0)
		return r;
	if ((r = get_string(args, "keypair_name", "keypair_name", 256, false, &s, ret_error)) < 0)
		return r;
	if ((r = parse_keys(args, cd, ret_error)) < 0 || (r = parse_files(args, cd, ret_error)) < 0)
		return r;
	if (desc) {
		if ((r = get_string(desc, "hostname", "desc.hostname", HOSTNAME_MAX, false, &s,
				    ret_error)) < 0)
			return r;
		if (s && *s && !hostname_is_valid(s))
			return error_set(ret_error, -EINVAL,
					 "desc.hostname: not a valid host name");
		if (!(s && *s)) { /* Cloudpods falls back to the name where it is a host name */
			const json_t *name = json_object_get(desc, "name");
			s = json_is_string(name) && hostname_is_valid(json_string_value(name))
				? json_string_value(name)
				: NULL;
		}
		if ((r = dup_or_enomem(s, &cd->hostname)) < 0)
			return r;
		const json_t *os = json_object_get(desc, "os_name");
		if (json_is_string(os) && json_string_length(os) <= 32) {
			/* "Linux", "Windows": a word of letters */
			const char *o = json_string_value(os);
			bool word = *o;
			for (const char *p = o; *p; p++)
				word =
				    word && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'));
			if (word && (r = dup_or_enomem(o, &cd->os)) < 0)
				return r;
		}
		if ((r = parse_nics(desc, cd, ret_error)) < 0)
			return r;
	}
	*ret = TAKE_PTR(cd);
	return 0;
}

struct configdrive *configdrive_free(struct configdrive *cd)
{
	if (!cd)
		return NULL;
	free(cd->hostname);
	free(cd->account);
	erase_and_free(cd->password);
	strv_free(cd->public_keys);
	for (size_t i = 0; i < cd->n_files; i++) {
		free(cd->files[i].path);
		free(cd->files[i].content);
	}
	free(cd->files);
	for (size_t i = 0; i < cd->n_nics; i++) {
		free(cd->nics[i].ip);
		free(cd->nics[i].gateway);
		strv_free(cd->nics[i].dns);
		free(cd->nics[i].domain);
	}
	free(cd->nics);
	free(cd->os);
	free(cd);
	return NULL;
}

void configdrive_docs_done(struct configdrive_docs *docs)
{
	free(docs->meta_data);
	free(docs->user_data);
	free(docs->network_config);
	*docs = (struct configdrive_docs){};
}

/* ---- YAML through libyaml's emitter ---- */

struct emit {
	yaml_emitter_t e;
	char *buf;
	size_t len, cap;
	int r; /* first error */
	bool inited;
};

static int emit_write(void *data, unsigned char *buffer, size_t size)
{
	struct emit *em = data;
	int r = buf_append(&em->buf, &em->len, &em->cap, SIZE_MAX - 1, buffer, size);
	if (r < 0) {
		em->r = r;
		return 0;
	}
	return 1;
}

static void emit_event(struct emit *em, yaml_event_t *ev, int ok)
{
	if (em->r < 0) {
		if (ok)
			yaml_event_delete(ev);
		return;
	}
	if (!ok || !yaml_emitter_emit(&em->e, ev))
		em->r = em->r < 0 ? em->r : -EINVAL;
}

/* Errors are kept in em->r and reported by emit_end(). */
static void emit_begin(struct emit *em, const char *header)
{
	*em = (struct emit){};
	if (!yaml_emitter_initialize(&em->e)) {
		em->r = -ENOMEM;
		return;
	}
	em->inited = true;
	yaml_emitter_set_output(&em->e, emit_write, em);
	yaml_emitter_set_unicode(&em->e, 1);
	yaml_emitter_set_width(&em->e, -1);
	if (header && emit_write(em, (unsigned char *)header, strlen(header)) == 0)
		return;
	yaml_event_t ev;
	emit_event(em, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
	emit_event(em, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
	emit_event(
	    em, &ev,
	    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static int emit_end(struct emit *em, char **ret)
{
	yaml_event_t ev;
	emit_event(em, &ev, yaml_mapping_end_event_initialize(&ev));
	emit_event(em, &ev, yaml_document_end_event_initialize(&ev, 1));
	emit_event(em, &ev, yaml_stream_end_event_initialize(&ev));
	if (em->r >= 0 && !yaml_emitter_flush(&em->e))
		em->r = -EINVAL;
	if (em->inited)
		yaml_emitter_delete(&em->e);
	if (em->r < 0) {
		free(em->buf);
		return em->r;
	}
	*ret = em->buf;
	return 0;
}

/* Keys, booleans and numbers are plain; every value from a request is double-quoted, escaped
 * by the emitter. */
static void scalar(struct emit *em, const char *s, bool quote)
{
	yaml_event_t ev;
	emit_event(em, &ev,
		   yaml_scalar_event_initialize(
		       &ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), !quote, quote,
		       quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE));
}

static void plain(struct emit *em, const char *s)
{
	scalar(em, s, false);
}

static void quoted(struct emit *em, const char *s)
{
	scalar(em, s, true);
}

static void kv(struct emit *em, const char *key, const char *value)
{
	plain(em, key);
	quoted(em, value);
}

static void kplain(struct emit *em, const char *key, const char *value)
{
	plain(em, key);
	plain(em, value);
}

enum collection { COLL_MAP, COLL_SEQ };

/* flow: inline ({a: 1}, [a, b]) rather than one entry a line. */
static void collection_start(struct emit *em, enum collection kind, bool flow)
{
	yaml_event_t ev;
	int ok = kind == COLL_SEQ
		     ? yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							    flow ? YAML_FLOW_SEQUENCE_STYLE
								 : YAML_BLOCK_SEQUENCE_STYLE)
		     : yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							   flow ? YAML_FLOW_MAPPING_STYLE
								: YAML_BLOCK_MAPPING_STYLE);
	emit_event(em, &ev, ok);
}

static void collection_end(struct emit *em, enum collection kind)
{
	yaml_event_t ev;
	emit_event(em, &ev,
		   kind == COLL_SEQ ? yaml_sequence_end_event_initialize(&ev)
				    : yaml_mapping_end_event_initialize(&ev));
}

static char *base64(const void *data, size_t len)
{
	char *out = malloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
	if (!out)
		return NULL;
	base64_encode_raw(out, len, data);
	out[BASE64_ENCODE_RAW_LENGTH(len)] = 0;
	return out;
}

/* instance ids and hashes: what cloud-init and crypt(3) write, nothing else. */
static bool token_is_safe(const char *s, const char *extra)
{
	if (!s || !*s || strlen(s) > 256)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return false;
	}
	return true;
}

static int render_meta(const struct configdrive *cd, const char *instance_id, char **ret)
{
	struct emit em;
	emit_begin(&em, NULL);
	kv(&em, "instance-id", instance_id);
	if (cd->hostname)
		kv(&em, "local-hostname", cd->hostname);
	return emit_end(&em, ret);
}

static int render_user(const struct configdrive *cd, const char *password_hash, bool redeploy,
		       char **ret)
{
	struct emit em;
	emit_begin(&em, "#cloud-config\n");
	if (cd->hostname)
		kv(&em, "hostname", cd->hostname);
	/* Root's keys as given: not prefixed with Debian's "please log in as ..." command. */
	kplain(&em, "disable_root", "false");
	if (password_hash)
		kplain(&em, "ssh_pwauth", "true");
	/* A deploy on a guest that ran before keeps its host keys (known_hosts stays valid). */
	if (redeploy)
		kplain(&em, "ssh_deletekeys", "false");
	if (password_hash || cd->public_keys) {
		plain(&em, "users");
		collection_start(&em, COLL_SEQ, false);
		collection_start(&em, COLL_MAP, false);
		kv(&em, "name", cd->account);
		/* cloud-init locks the password of every listed user unless told not to. */
		kplain(&em, "lock_passwd", "false");
		if (!streq(cd->account, "root")) {
			kv(&em, "shell", "/bin/bash");
			kv(&em, "sudo", "ALL=(ALL) NOPASSWD:ALL");
		}
		if (password_hash)
			kv(&em, "hashed_passwd", password_hash);
		if (cd->public_keys) {
			plain(&em, "ssh_authorized_keys");
			collection_start(&em, COLL_SEQ, false);
			STRV_FOREACH (k, cd->public_keys)
				quoted(&em, *k);
			collection_end(&em, COLL_SEQ);
		}
		collection_end(&em, COLL_MAP);
		collection_end(&em, COLL_SEQ);
	}
	if (cd->n_files) {
		plain(&em, "write_files");
		collection_start(&em, COLL_SEQ, false);
		for (size_t i = 0; i < cd->n_files; i++) {
			const struct configdrive_file *f = &cd->files[i];
			_cleanup_free_ char *b64 = base64(f->content, f->len);
			if (!b64) {
				em.r = -ENOMEM;
				break;
			}
			collection_start(&em, COLL_MAP, false);
			kv(&em, "path", f->path);
			kv(&em, "encoding", "b64");
			kv(&em, "content", b64);
			if (f->append)
				kplain(&em, "append", "true");
			collection_end(&em, COLL_MAP);
		}
		collection_end(&em, COLL_SEQ);
	}
	return emit_end(&em, ret);
}

/* Version 2 network config: a static address for every NIC with ip and masklen (matched by
 * MAC), DHCP for the others; the default route on the is_default NIC, else the first with a
 * gateway. NULL when no NIC has an address. */
static int render_network(const struct configdrive *cd, char **ret)
{
	bool any = false;
	const struct configdrive_nic *gw = NULL;
	for (size_t i = 0; i < cd->n_nics; i++) {
		const struct configdrive_nic *n = &cd->nics[i];
		any = any || n->ip;
		if (n->gateway && (!gw || (n->is_default && !gw->is_default)))
			gw = n;
	}
	if (!any) {
		*ret = NULL;
		return 0;
	}
	struct emit em;
	emit_begin(&em, NULL);
	kplain(&em, "version", "2");
	plain(&em, "ethernets");
	collection_start(&em, COLL_MAP, false);
	for (size_t i = 0; i < cd->n_nics; i++) {
		const struct configdrive_nic *n = &cd->nics[i];
		char name[32], num[16], addr[96];
		snprintf(name, sizeof(name), "eth%zu", i);
		plain(&em, name);
		collection_start(&em, COLL_MAP, false);
		plain(&em, "match");
		collection_start(&em, COLL_MAP, true);
		kv(&em, "macaddress", n->mac);
		collection_end(&em, COLL_MAP);
		kv(&em, "set-name", name);
		if (!n->ip)
			kplain(&em, "dhcp4", "true");
		else {
			plain(&em, "addresses");
			collection_start(&em, COLL_SEQ, true);
			snprintf(addr, sizeof(addr), "%s/%d", n->ip, n->masklen);
			quoted(&em, addr);
			collection_end(&em, COLL_SEQ);
			if (n == gw)
				kv(&em, strchr(n->ip, ':') ? "gateway6" : "gateway4", n->gateway);
		}
		if (n->mtu > 0) {
			snprintf(num, sizeof(num), "%d", n->mtu);
			kplain(&em, "mtu", num);
		}
		if (n->dns || n->domain) {
			plain(&em, "nameservers");
			collection_start(&em, COLL_MAP, false);
			if (n->dns) {
				plain(&em, "addresses");
				collection_start(&em, COLL_SEQ, true);
				STRV_FOREACH (d, n->dns)
					quoted(&em, *d);
				collection_end(&em, COLL_SEQ);
			}
			if (n->domain) {
				plain(&em, "search");
				collection_start(&em, COLL_SEQ, true);
				quoted(&em, n->domain);
				collection_end(&em, COLL_SEQ);
			}
			collection_end(&em, COLL_MAP);
		}
		collection_end(&em, COLL_MAP);
	}
	collection_end(&em, COLL_MAP);
	return emit_end(&em, ret);
}

int configdrive_render(const struct configdrive *cd, const char *instance_id,
		       const char *password_hash, bool redeploy, struct configdrive_docs *ret)
{
	if (!token_is_safe(instance_id, "-_.") ||
	    (password_hash && !token_is_safe(password_hash, "$./")))
		return -EINVAL;
	struct configdrive_docs docs = {};
	int r = render_meta(cd, instance_id, &docs.meta_data);
	if (r >= 0)
		r = render_user(cd, password_hash, redeploy, &docs.user_data);
	if (r >= 0)
		r = render_network(cd, &docs.network_config);
	if (r < 0) {
		configdrive_docs_done(&docs);
		return r;
	}
	*ret = docs;
	return 0;
}

int configdrive_login_key(const char *guest_id, const char *password, const uint8_t iv[16],
			  char **ret)
{
	uint8_t key[32];
	size_t kl = strlen(guest_id), pl = strlen(password);
	memset(key, '$', sizeof(key));
	memcpy(key, guest_id, MIN(kl, sizeof(key)));
	_cleanup_free_ uint8_t *buf = malloc(16 + pl + 1);
	if (!buf)
		return -ENOMEM;
	struct aes256_ctx ctx;
	aes256_set_encrypt_key(&ctx, key);
	uint8_t ivc[16];
	memcpy(ivc, iv, 16);
	memcpy(buf, iv, 16);
	cfb8_encrypt(&ctx, (nettle_cipher_func *)aes256_encrypt, AES_BLOCK_SIZE, ivc, pl, buf + 16,
		     (const uint8_t *)password);
	char *out = base64(buf, 16 + pl);
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(key, sizeof(key));
	explicit_bzero(buf, 16 + pl);
	if (!out)
		return -ENOMEM;
	*ret = out;
	return 0;
}

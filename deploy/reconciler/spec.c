#include <ctype.h>
#include <stdarg.h>
#include <yaml.h>

#include "common/fs.h"
#include "common/macros.h"
#include "common/parse.h"
#include "deploy/reconciler/spec.h"

#define OCR_MAX_SPEC_BYTES (1024 * 1024)

/* Ports are Cloudpods' defaults; each is also the NodePort, all inside 30000-32767. */
static const struct ocr_component_info components[_OCR_COMPONENT_MAX] = {
    [OCR_KEYSTONE] = {"keystone", "keystone", 30500, false, true, true, NULL},
    [OCR_REGION] = {"region", "regionServer", 30888, false, true, false, NULL},
    [OCR_SCHEDULER] = {"scheduler", "scheduler", 30887, false, true, false, NULL},
    [OCR_GLANCE] = {"glance", "glance", 30292, true, true, false, "100Gi"},
    [OCR_WEBCONSOLE] = {"webconsole", "webconsole", 30899, false, false, false, NULL},
    [OCR_HOSTAGENT] = {"hostagent", "hostagent", 8885, false, false, false, NULL},
};

const struct ocr_component_info *ocr_component_info(enum ocr_component_id id)
{
	return id >= 0 && id < _OCR_COMPONENT_MAX ? &components[id] : NULL;
}

int ocr_component_from_key(const char *key)
{
	for (int i = 0; i < _OCR_COMPONENT_MAX; i++)
		if (streq(components[i].key, key))
			return i;
	return -1;
}

struct ocr_cluster *ocr_cluster_free(struct ocr_cluster *c)
{
	if (!c)
		return NULL;
	free(c->name);
	free(c->namespace);
	free(c->uid);
	free(c->mysql_host);
	free(c->mysql_username);
	free(c->mysql_password);
	free(c->region);
	free(c->image_repository);
	free(c->version);
	for (int i = 0; i < _OCR_COMPONENT_MAX; i++) {
		free(c->components[i].image);
		free(c->components[i].storage_size);
		free(c->components[i].storage_class_name);
	}
	free(c);
	return NULL;
}

char *ocr_component_image(const struct ocr_cluster *c, enum ocr_component_id id)
{
	if (c->components[id].image)
		return strdup(c->components[id].image);
	char *s = NULL;
	if (asprintf_safe(&s, "%s/%s:%s", c->image_repository, components[id].name, c->version) < 0)
		return NULL;
	return s;
}

bool ocr_quantity_valid(const char *s)
{
	static const char *const suffixes[] = {"",  "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
					       "k", "M",  "G",	"T",  "P",  "E"};
	if (!s || !isdigit((unsigned char)*s) || strlen(s) > 32)
		return false;
	const char *p = s;
	bool nonzero = false;
	while (isdigit((unsigned char)*p))
		nonzero |= *p++ != '0';
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			nonzero |= *p++ != '0';
	}
	if (!nonzero)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
		if (streq(p, suffixes[i]))
			return true;
	return false;
}

struct parser {
	const char *path;
	yaml_document_t doc;
	char **ret_error;
};

static int fail_at(struct parser *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
    _printf_(4, 5);
static int fail_at(struct parser *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
	if (p->ret_error) {
		va_list ap;
		va_start(ap, fmt);
		_cleanup_free_ char *msg = NULL;
		if (vasprintf(&msg, fmt, ap) < 0)
			msg = NULL;
		va_end(ap);
		char *s = NULL;
		if (msg && asprintf_safe(&s, "%s:%zu: %s: %s", p->path,
					 n ? n->start_mark.line + 1 : (size_t)1, key, msg) < 0)
			s = NULL;
		free(*p->ret_error);
		*p->ret_error = s;
	}
	return -EINVAL;
}

static yaml_node_t *node(struct parser *p, int id)
{
	return yaml_document_get_node(&p->doc, id);
}

static const char *node_type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "a scalar";
	}
}

static bool scalar_quoted(const yaml_node_t *n)
{
	return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	       n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

/* A mapping whose keys are distinct strings (the API server refuses duplicates as well; the
 * last one silently winning would hide a typo). */
static int expect_mapping(struct parser *p, const yaml_node_t *n, const char *key)
{
	if (n->type != YAML_MAPPING_NODE)
		return fail_at(p, n, key, "expected a mapping, got %s", node_type_name(n));
	for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top;
	     a++) {
		const yaml_node_t *ka = node(p, a->key);
		if (ka->type != YAML_SCALAR_NODE)
			return fail_at(p, ka, key, "keys must be strings, got %s",
				       node_type_name(ka));
		for (yaml_node_pair_t *b = n->data.mapping.pairs.start; b < a; b++)
			if (streq((const char *)node(p, b->key)->data.scalar.value,
				  (const char *)ka->data.scalar.value)) {
				char k[128];
				snprintf(k, sizeof(k), "%s%s%s",
					 streq(key, "(document)") ? "" : key,
					 streq(key, "(document)") ? "" : ".",
					 (const char *)ka->data.scalar.value);
				return fail_at(p, ka, k, "duplicate key");
			}
	}
	return 0;
}

/* A string value: any scalar but an unquoted null, no control characters, at most max bytes;
 * word: no whitespace either (names, images, hosts). */
static int get_string(struct parser *p, const yaml_node_t *n, const char *key, size_t max,
		      bool word, char **slot)
{
	if (n->type != YAML_SCALAR_NODE)
		return fail_at(p, n, key, "expected a string, got %s", node_type_name(n));
	const char *v = (const char *)n->data.scalar.value;
	if (!scalar_quoted(n) && (streq(v, "~") || streq(v, "null")))
		return fail_at(p, n, key, "expected a string, got null");
	if (*v == 0)
		return fail_at(p, n, key, "must not be empty");
	/* An embedded NUL would silently cut the value short. */
	if (strlen(v) != n->data.scalar.length)
		return fail_at(p, n, key, "NUL character not allowed");
	if (strlen(v) > max)
		return fail_at(p, n, key, "too long (%zu bytes, max %zu)", strlen(v), max);
	/* The value is never quoted in the message: it may be a password. */
	for (const char *c = v; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || (word && *c == ' '))
			return fail_at(p, n, key, "%s not allowed (at byte %zu)",
				       *c == ' ' ? "whitespace" : "control character",
				       (size_t)(c - v));
	char *s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*slot);
	*slot = s;
	return 0;
}

static int get_int(struct parser *p, const yaml_node_t *n, const char *key, int min, int max,
		   int *slot)
{
	if (n->type != YAML_SCALAR_NODE || scalar_quoted(n))
		return fail_at(p, n, key, "expected an integer, got %s",
			       n->type == YAML_SCALAR_NODE ? "a string" : node_type_name(n));
	const char *v = (const char *)n->data.scalar.value;
	int64_t i;
	int r = parse_int64(v, INT64_MIN, INT64_MAX, &i);
	if (r == -EINVAL)
		return fail_at(p, n, key, "expected an integer, got '%s'", v);
	if (r < 0 || i < min)
		return fail_at(p, n, key, "must be >= %d", min);
	if (i > max)
		return fail_at(p, n, key, "must be <= %d", max);
	*slot = (int)i;
	return 0;
}

static int get_bool(struct parser *p, const yaml_node_t *n, const char *key, bool *slot)
{
	const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
	if (!v)
		return fail_at(p, n, key, "expected true or false, got %s", node_type_name(n));
	if (scalar_quoted(n) || !(streq(v, "true") || streq(v, "false")))
		return fail_at(p, n, key, "expected true or false, got '%s'", v);
	*slot = streq(v, "true");
	return 0;
}

/* DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both ends. */
static bool dns_label_valid(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-'))
			return false;
	return true;
}

static int keypath(char *buf, size_t size, const char *prefix, const char *k)
{
	int n = snprintf(buf, size, "%s.%s", prefix, k);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Called on each pair of a mapping: k is the key's text, key its path for messages. */
typedef int (*pair_fn)(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn,
		       const char *k, const char *key, void *data);

/* Checks that m is a mapping (name names it in messages) and calls fn on each of its pairs
 * until one refuses. The key path is name.k, or just k when !nested (the document's own keys,
 * and metadata, whose messages name their keys in full). */
static int parse_mapping(struct parser *p, const yaml_node_t *m, const char *name, bool nested,
			 pair_fn fn, void *data)
{
	int r = expect_mapping(p, m, name);
	if (r < 0)
		return r;
	for (yaml_node_pair_t *a = m->data.mapping.pairs.start; a < m->data.mapping.pairs.top;
	     a++) {
		const yaml_node_t *kn = node(p, a->key), *vn = node(p, a->value);
		const char *k = (const char *)kn->data.scalar.value; /* a string: checked above */
		char key[128];
		if (nested && keypath(key, sizeof(key), name, k) < 0)
			return fail_at(p, kn, name, "key too long");
		if ((r = fn(p, kn, vn, k, nested ? key : k, data)) < 0)
			return r;
	}
	return 0;
}

static int storage_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn,
			const char *k, const char *key, void *data)
{
	struct ocr_component *c = data;
	int r;
	if (streq(k, "size")) {
		r = get_string(p, vn, key, 32, true, &c->storage_size);
		if (r >= 0 && !ocr_quantity_valid(c->storage_size))
			r = fail_at(p, vn, key,
				    "invalid size '%s' (a positive quantity such as 10Gi)",
				    c->storage_size);
	} else if (streq(k, "storageClassName")) {
		r = get_string(p, vn, key, 253, true, &c->storage_class_name);
	} else
		r = fail_at(p, kn, key, "unknown key");
	return r;
}

struct component_ctx {
	enum ocr_component_id id;
	struct ocr_component *c;
};

static int component_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn,
			  const char *k, const char *key, void *data)
{
	const struct component_ctx *x = data;
	struct ocr_component *c = x->c;
	if (streq(k, "image"))
		return get_string(p, vn, key, 512, true, &c->image);
	if (streq(k, "disable"))
		return get_bool(p, vn, key, &c->disable);
	if (streq(k, "replicas") && x->id != OCR_HOSTAGENT)
		return get_int(p, vn, key, 0, 100, &c->replicas);
	if (streq(k, "storage") && components[x->id].storage)
		return parse_mapping(p, vn, key, true, storage_pair, c);
	return fail_at(p, kn, key, "unknown key");
}

static int mysql_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn, const char *k,
		      const char *key, void *data)
{
	struct ocr_cluster *c = data;
	if (streq(k, "host"))
		return get_string(p, vn, key, 253, true, &c->mysql_host);
	if (streq(k, "port"))
		return get_int(p, vn, key, 1, 65535, &c->mysql_port);
	if (streq(k, "username"))
		return get_string(p, vn, key, 64, true, &c->mysql_username);
	if (streq(k, "password"))
		return get_string(p, vn, key, 256, false, &c->mysql_password);
	return fail_at(p, kn, key, "unknown key");
}

static int parse_mysql(struct parser *p, const yaml_node_t *m, struct ocr_cluster *c)
{
	int r = parse_mapping(p, m, "spec.mysql", true, mysql_pair, c);
	if (r < 0)
		return r;
	if (!c->mysql_host)
		return fail_at(p, m, "spec.mysql.host", "required");
	if (!c->mysql_username)
		return fail_at(p, m, "spec.mysql.username", "required");
	if (!c->mysql_password)
		return fail_at(p, m, "spec.mysql.password", "required");
	return 0;
}

static int spec_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn, const char *k,
		     const char *key, void *data)
{
	struct ocr_cluster *c = data;
	int id = ocr_component_from_key(k);
	if (id >= 0) {
		struct component_ctx x = {id, &c->components[id]};
		return parse_mapping(p, vn, key, true, component_pair, &x);
	}
	if (streq(k, "mysql"))
		return parse_mysql(p, vn, c);
	if (streq(k, "region"))
		return get_string(p, vn, key, 128, true, &c->region);
	if (streq(k, "imageRepository"))
		return get_string(p, vn, key, 256, true, &c->image_repository);
	if (streq(k, "version"))
		return get_string(p, vn, key, 128, true, &c->version);
	return fail_at(p, kn, key, "unknown key");
}

static int parse_spec(struct parser *p, const yaml_node_t *m, struct ocr_cluster *c)
{
	int r = parse_mapping(p, m, "spec", true, spec_pair, c);
	if (r < 0)
		return r;
	/* A parsed spec.mysql has its host (required there). */
	if (!c->mysql_host)
		return fail_at(p, m, "spec.mysql", "required");
	if (!c->image_repository)
		return fail_at(p, m, "spec.imageRepository", "required");
	if (!c->version)
		return fail_at(p, m, "spec.version", "required");
	for (const char *s = c->version; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return fail_at(p, m, "spec.version", "invalid image tag '%s'", c->version);
	if (!c->region && !(c->region = strdup("region0")))
		return -ENOMEM;
	return 0;
}

/* Other metadata (labels, resourceVersion, ... from kubectl get -o yaml) is ignored. */
static int metadata_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn,
			 const char *k, const char *key, void *data)
{
	struct ocr_cluster *c = data;
	int r = 0;
	if (streq(k, "name")) {
		r = get_string(p, vn, "metadata.name", 63, true, &c->name);
		/* <name>-<component>-db must stay a valid 63-byte name. */
		if (r >= 0 && !dns_label_valid(c->name, 40))
			r = fail_at(p, vn, "metadata.name",
				    "'%s' is not a DNS label of at most 40 characters", c->name);
	} else if (streq(k, "namespace")) {
		r = get_string(p, vn, "metadata.namespace", 63, true, &c->namespace);
		if (r >= 0 && !dns_label_valid(c->namespace, 63))
			r = fail_at(p, vn, "metadata.namespace", "'%s' is not a DNS label",
				    c->namespace);
	} else if (streq(k, "uid"))
		r = get_string(p, vn, "metadata.uid", 128, true, &c->uid);
	return r;
}

static int parse_metadata(struct parser *p, const yaml_node_t *m, struct ocr_cluster *c)
{
	int r = parse_mapping(p, m, "metadata", false, metadata_pair, c);
	if (r < 0)
		return r;
	if (!c->name)
		return fail_at(p, m, "metadata.name", "required");
	if (!c->namespace)
		return fail_at(p, m, "metadata.namespace", "required");
	if (!c->uid)
		return fail_at(p, m, "metadata.uid", "required (the ownerReference needs it)");
	return 0;
}

static int root_pair(struct parser *p, const yaml_node_t *kn, const yaml_node_t *vn, const char *k,
		     const char *key, void *data)
{
	struct ocr_cluster *c = data;
	_cleanup_free_ char *s = NULL;
	int r;
	if (streq(k, "apiVersion")) {
		r = get_string(p, vn, key, 64, true, &s);
		if (r >= 0 && !streq(s, "onecloud.yunion.io/v1alpha1"))
			r = fail_at(p, vn, key, "expected onecloud.yunion.io/v1alpha1, got '%s'",
				    s);
	} else if (streq(k, "kind")) {
		r = get_string(p, vn, key, 64, true, &s);
		if (r >= 0 && !streq(s, "OnecloudCluster"))
			r = fail_at(p, vn, key, "expected OnecloudCluster, got '%s'", s);
	} else if (streq(k, "metadata"))
		r = parse_metadata(p, vn, c);
	else if (streq(k, "spec"))
		r = parse_spec(p, vn, c);
	else if (streq(k, "status"))
		r = 0;
	else
		r = fail_at(p, kn, key, "unknown key");
	return r;
}

static int parse_root(struct parser *p, const yaml_node_t *root, struct ocr_cluster *c)
{
	if (!root)
		return fail_at(p, NULL, "apiVersion", "empty file");
	int r = parse_mapping(p, root, "(document)", false, root_pair, c);
	if (r < 0)
		return r;
	/* A parsed metadata has its name, a parsed spec its version (both required there). */
	if (!c->name)
		return fail_at(p, root, "metadata", "required");
	if (!c->version)
		return fail_at(p, root, "spec", "required");
	return 0;
}

int ocr_cluster_load(const char *path, struct ocr_cluster **ret, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = read_file(path, OCR_MAX_SPEC_BYTES, &text, &len);
	if (r < 0) {
		if (ret_error) {
			free(*ret_error);
			if (asprintf_safe(ret_error, "%s: cannot read: %s", path, strerror(-r)) < 0)
				*ret_error = NULL;
		}
		return r;
	}
	_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mysql_port = 3306;
	for (int i = 0; i < _OCR_COMPONENT_MAX; i++)
		c->components[i].replicas = 1;

	struct parser p = {.path = path, .ret_error = ret_error};
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		yaml_mark_t mark = parser.problem_mark;
		if (ret_error) {
			free(*ret_error);
			if (asprintf_safe(ret_error, "%s:%zu: YAML syntax error: %s", path,
					  mark.line + 1, parser.problem ? parser.problem : "?") < 0)
				*ret_error = NULL;
		}
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	r = parse_root(&p, yaml_document_get_root_node(&p.doc), c);
	yaml_document_delete(&p.doc);
	yaml_parser_delete(&parser);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

/* ocreconciler: spec parsing (valid and each kind of invalid input with its message), rendering
 * against golden files (the .golden files of tests/data/reconciler, the --dry-run format), labels
 * and ownerReferences on every object, drift comparison, API paths. OCR_UPDATE_GOLDEN=1 rewrites
 * the golden files from the current rendering (by hand only). */
#include "common/fs.h"
#include "common/http-client.h"
#include "deploy/reconciler/kube.h"
#include "deploy/reconciler/reconcile.h"
#include "deploy/reconciler/render.h"
#include "deploy/reconciler/spec.h"
#include "tests/unit/fake-http.h"
#include "tests/unit/test-common.h"

#define UID "6f1c2a9e-3b7d-4c1e-9a55-0d2f8e4b7c01"

static struct ocr_cluster *load_fixture(const char *name)
{
	_cleanup_free_ char *rel = strjoin("reconciler/", name);
	_cleanup_free_ char *path = test_data(rel);
	_cleanup_free_ char *err = NULL;
	struct ocr_cluster *c = NULL;
	int r = ocr_cluster_load(path, &c, &err);
	if (r < 0)
		fail_msg("%s: %s", path, err ? err : strerror(-r));
	return c;
}

static json_t *render_fixture(const char *name)
{
	_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = load_fixture(name);
	json_t *objs = NULL;
	assert_int_equal(ocr_render(c, &objs), 0);
	return objs;
}

static void test_parse_full(void **state)
{
	_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = load_fixture("full.yaml");
	assert_string_equal(c->name, "default");
	assert_string_equal(c->namespace, "onecloud");
	assert_string_equal(c->uid, UID);
	assert_string_equal(c->mysql_host, "mysql.onecloud.svc");
	assert_int_equal(c->mysql_port, 3306);
	assert_string_equal(c->mysql_username, "root");
	assert_string_equal(c->mysql_password, "s3cret-pw");
	assert_string_equal(c->region, "region0");
	assert_string_equal(c->image_repository, "registry.example.com/yunion");
	assert_string_equal(c->version, "v3.10.0");
	assert_int_equal(c->components[OCR_KEYSTONE].replicas, 1);
	assert_int_equal(c->components[OCR_REGION].replicas, 2);
	assert_int_equal(c->components[OCR_SCHEDULER].replicas, 1); /* default */
	assert_false(c->components[OCR_SCHEDULER].disable);
	assert_string_equal(c->components[OCR_GLANCE].storage_size, "20Gi");
	assert_string_equal(c->components[OCR_GLANCE].storage_class_name, "local-path");
	assert_string_equal(c->components[OCR_WEBCONSOLE].image,
			    "registry.example.com/custom/webconsole:v3.10.0-fix1");
	_cleanup_free_ char *img = ocr_component_image(c, OCR_SCHEDULER);
	assert_string_equal(img, "registry.example.com/yunion/scheduler:v3.10.0");
	_cleanup_free_ char *pinned = ocr_component_image(c, OCR_WEBCONSOLE);
	assert_string_equal(pinned, "registry.example.com/custom/webconsole:v3.10.0-fix1");

	_cleanup_(ocr_cluster_freep) struct ocr_cluster *d = load_fixture("disabled.yaml");
	assert_true(d->components[OCR_GLANCE].disable);
	assert_true(d->components[OCR_WEBCONSOLE].disable);
	assert_true(d->components[OCR_HOSTAGENT].disable);
	assert_false(d->components[OCR_KEYSTONE].disable);
}

static const char minimal_head[] = "apiVersion: onecloud.yunion.io/v1alpha1\n"	     /* 1 */
				   "kind: OnecloudCluster\n"			     /* 2 */
				   "metadata:\n"				     /* 3 */
				   "  name: c1\n"				     /* 4 */
				   "  namespace: ns1\n"				     /* 5 */
				   "  uid: u-1\n"				     /* 6 */
				   "spec:\n"					     /* 7 */
				   "  mysql: {host: db, username: u, password: p}\n" /* 8 */
				   "  imageRepository: repo\n"			     /* 9 */
				   "  version: v1\n";				     /* 10 */

static void test_parse_minimal_defaults(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p = test_write(dir, "cluster.yaml", minimal_head);
	_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(ocr_cluster_load(p, &c, &err), 0);
	assert_string_equal(c->region, "region0");
	assert_int_equal(c->mysql_port, 3306);
	for (int i = 0; i < _OCR_COMPONENT_MAX; i++) {
		assert_int_equal(c->components[i].replicas, 1);
		assert_false(c->components[i].disable);
	}
	json_auto_t *objs = NULL;
	assert_int_equal(ocr_render(c, &objs), 0);
	/* glance's default claim size. */
	size_t i;
	json_t *o;
	bool pvc = false;
	json_array_foreach (objs, i, o)
		if (streq(json_string_value(json_object_get(o, "kind")), "PersistentVolumeClaim")) {
			assert_string_equal(
			    json_string_value(json_object_get(
				json_object_get(
				    json_object_get(json_object_get(o, "spec"), "resources"),
				    "requests"),
				"storage")),
			    "100Gi");
			assert_null(
			    json_object_get(json_object_get(o, "spec"), "storageClassName"));
			pvc = true;
		}
	assert_true(pvc);
	rm_rf(dir);
}

/* Each invalid input: the text after the minimal head (or a whole file when it starts with
 * "apiVersion" or "!") and the exact message after "PATH:". */
static const struct {
	const char *text;
	const char *message;
} invalid[] = {
    {"  foo: {}\n", "11: spec.foo: unknown key"},
    {"  version: v2\n", "11: spec.version: duplicate key"},
    {"  glance:\n    replicas: 1\n    replicas: 2\n", "13: spec.glance.replicas: duplicate key"},
    {"  glance:\n    [a]: 1\n", "12: spec.glance: keys must be strings, got a list"},
    {"  glance:\n    size: 1Gi\n", "12: spec.glance.size: unknown key"},
    {"  keystone:\n    storage: {size: 1Gi}\n", "12: spec.keystone.storage: unknown key"},
    {"  hostagent:\n    replicas: 2\n", "12: spec.hostagent.replicas: unknown key"},
    {"  glance:\n    replicas: -1\n", "12: spec.glance.replicas: must be >= 0"},
    {"  glance:\n    replicas: 101\n", "12: spec.glance.replicas: must be <= 100"},
    {"  glance:\n    replicas: two\n", "12: spec.glance.replicas: expected an integer, got 'two'"},
    {"  glance:\n    replicas: \"2\"\n",
     "12: spec.glance.replicas: expected an integer, got a string"},
    {"  glance:\n    replicas: [2]\n", "12: spec.glance.replicas: expected an integer, got a list"},
    {"  webconsole:\n    disable: yes\n",
     "12: spec.webconsole.disable: expected true or false, got 'yes'"},
    {"  webconsole: true\n", "11: spec.webconsole: expected a mapping, got a scalar"},
    {"  webconsole:\n    image: {name: x}\n",
     "12: spec.webconsole.image: expected a string, got a mapping"},
    {"  glance:\n    storage:\n      size: 10XB\n",
     "13: spec.glance.storage.size: invalid size '10XB' (a positive quantity such as 10Gi)"},
    {"  glance:\n    storage:\n      size: 0Gi\n",
     "13: spec.glance.storage.size: invalid size '0Gi' (a positive quantity such as 10Gi)"},
    {"  glance:\n    storage:\n      size: -5Gi\n",
     "13: spec.glance.storage.size: invalid size '-5Gi' (a positive quantity such as 10Gi)"},
    {"  glance:\n    storage:\n      class: x\n", "13: spec.glance.storage.class: unknown key"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u, password: p}\n  version: v1\n",
     "5: spec.imageRepository: required"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u, password: p}\n  imageRepository: r\n",
     "5: spec.version: required"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u, password: p}\n  imageRepository: r\n  version: \n",
     "7: spec.version: must not be empty"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u}\n  imageRepository: r\n  version: v1\n",
     "5: spec.mysql.password: required"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, port: 70000, username: u, password: p}\n",
     "5: spec.mysql.port: must be <= 65535"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1}\nspec: {}\n",
     "3: metadata.uid: required (the ownerReference needs it)"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: Bad_Name, namespace: ns1, uid: u}\n",
     "3: metadata.name: 'Bad_Name' is not a DNS label of at most 40 characters"},
    {"apiVersion: v1\nkind: OnecloudCluster\n",
     "1: apiVersion: expected onecloud.yunion.io/v1alpha1, got 'v1'"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: Cluster\n",
     "2: kind: expected OnecloudCluster, got 'Cluster'"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\n",
     "1: spec: required"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\nspex: {}\n",
     "3: spex: unknown key"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: [OnecloudCluster\n",
     "3: YAML syntax error: did not find expected ',' or ']'"},
    /* A bad password is named, never quoted: the message goes to the log. */
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u, password: \"S3cr3t\\tPass\"}\n"
     "  imageRepository: r\n  version: v1\n",
     "5: spec.mysql.password: control character not allowed (at byte 6)"},
    {"apiVersion: onecloud.yunion.io/v1alpha1\nkind: OnecloudCluster\n"
     "metadata: {name: c1, namespace: ns1, uid: u}\nspec:\n"
     "  mysql: {host: db, username: u, password: p}\n"
     "  imageRepository: r\n  version: \"v1\\0;rm\"\n",
     "7: spec.version: NUL character not allowed"},
};

static void test_parse_invalid(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
		bool whole = strneq(invalid[i].text, "apiVersion", 10);
		_cleanup_free_ char *text =
		    whole ? strdup(invalid[i].text) : strjoin(minimal_head, invalid[i].text);
		_cleanup_free_ char *p = test_write(dir, "cluster.yaml", text);
		_cleanup_free_ char *want = strjoin(p, ":", invalid[i].message);
		struct ocr_cluster *c = NULL;
		_cleanup_free_ char *err = NULL;
		int r = ocr_cluster_load(p, &c, &err);
		if (r != -EINVAL || !err || !streq(err, want))
			fail_msg("case %zu: r=%d\n got:  %s\n want: %s", i, r, strempty(err), want);
		assert_null(c);
	}
	/* A file that is not there. */
	_cleanup_free_ char *missing = strjoin(dir, "/none.yaml");
	struct ocr_cluster *c = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(ocr_cluster_load(missing, &c, &err), -ENOENT);
	assert_non_null(strstr(err, "none.yaml: cannot read"));
	rm_rf(dir);
}

static void test_quantity(void **state)
{
	assert_true(ocr_quantity_valid("10Gi"));
	assert_true(ocr_quantity_valid("1.5Ti"));
	assert_true(ocr_quantity_valid("500M"));
	assert_true(ocr_quantity_valid("1073741824"));
	assert_false(ocr_quantity_valid("0"));
	assert_false(ocr_quantity_valid("Gi"));
	assert_false(ocr_quantity_valid("1.Gi"));
	assert_false(ocr_quantity_valid("10 Gi"));
	assert_false(ocr_quantity_valid("10gi"));
	assert_false(ocr_quantity_valid("1e3"));
}

static int write_objects(FILE *f, void *objs)
{
	return ocr_dump_objects(objs, f);
}

static char *dump(json_t *objs)
{
	return test_memstream(write_objects, objs);
}

static void check_golden(const char *fixture, const char *golden)
{
	json_auto_t *objs = render_fixture(fixture);
	_cleanup_free_ char *got = dump(objs);
	_cleanup_free_ char *rel = strjoin("reconciler/", golden);
	_cleanup_free_ char *path = test_data(rel);
	if (getenv("OCR_UPDATE_GOLDEN"))
		assert_int_equal(write_file_atomic(path, got, strlen(got), 0644), 0);
	_cleanup_free_ char *want = NULL;
	assert_int_equal(read_file(path, 4 * 1024 * 1024, &want, NULL), 0);
	if (!streq(got, want)) {
		_cleanup_free_ char *dir = test_tmpdir();
		_cleanup_free_ char *out = test_write(dir, golden, got);
		fail_msg("%s differs from %s: diff -u %s %s", fixture, path, path, out);
	}
}

static void test_golden_full(void **state)
{
	check_golden("full.yaml", "full.golden");
}

static void test_golden_disabled(void **state)
{
	check_golden("disabled.yaml", "disabled.golden");
}

static void test_golden_bump(void **state)
{
	check_golden("bump.yaml", "bump.golden");
}

static const char *str_at(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);
	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

/* Every object: the four labels of the brief with the right values and one controller
 * ownerReference to the cluster. */
static void check_labels_owner(const json_t *objs, const char *version)
{
	size_t i;
	const json_t *o;
	json_array_foreach (objs, i, o) {
		const json_t *meta = json_object_get(o, "metadata");
		const json_t *l = json_object_get(meta, "labels");
		const char *name = str_at(meta, "name", NULL);
		const char *component = json_string_value(json_object_get(l, OCR_LABEL_NAME));
		assert_non_null(component);
		bool known = false;
		for (int id = 0; id < _OCR_COMPONENT_MAX; id++)
			known |= streq(ocr_component_info(id)->name, component);
		assert_true(known);
		/* Object names are <cluster>-<component>[-db]. */
		_cleanup_free_ char *prefix = strjoin("default-", component);
		assert_true(strneq(name, prefix, strlen(prefix)));
		assert_string_equal(str_at(l, "app.kubernetes.io/part-of", NULL), "onecloud");
		assert_string_equal(str_at(l, OCR_LABEL_MANAGED, NULL), "ocreconciler");
		assert_string_equal(str_at(l, "app.kubernetes.io/version", NULL), version);
		assert_string_equal(str_at(meta, "namespace", NULL), "onecloud");
		const json_t *refs = json_object_get(meta, "ownerReferences");
		assert_int_equal(json_array_size(refs), 1);
		const json_t *ref = json_array_get(refs, 0);
		assert_string_equal(str_at(ref, "apiVersion", NULL), "onecloud.yunion.io/v1alpha1");
		assert_string_equal(str_at(ref, "kind", NULL), "OnecloudCluster");
		assert_string_equal(str_at(ref, "name", NULL), "default");
		assert_string_equal(str_at(ref, "uid", NULL), UID);
		assert_true(json_is_true(json_object_get(ref, "controller")));
		/* apiVersion and kind agree with the kind table (the API paths). */
		const struct ocr_kind *k = ocr_kind_find(str_at(o, "kind", NULL));
		assert_non_null(k);
		assert_string_equal(str_at(o, "apiVersion", NULL), k->api_version);
	}
}

static int count_kind(const json_t *objs, const char *kind, const char *component)
{
	size_t i;
	const json_t *o;
	int n = 0;
	json_array_foreach (objs, i, o) {
		const json_t *l = json_object_get(json_object_get(o, "metadata"), "labels");
		if (streq(str_at(o, "kind", NULL), kind) &&
		    (!component || streq(str_at(l, OCR_LABEL_NAME, NULL), component)))
			n++;
	}
	return n;
}

static void test_labels_owner(void **state)
{
	json_auto_t *full = render_fixture("full.yaml");
	assert_int_equal(json_array_size(full), 23);
	check_labels_owner(full, "v3.10.0");
	assert_int_equal(count_kind(full, "Secret", NULL), 4);
	assert_int_equal(count_kind(full, "ConfigMap", NULL), 6);
	assert_int_equal(count_kind(full, "PersistentVolumeClaim", "glance"), 1);
	assert_int_equal(count_kind(full, "PersistentVolumeClaim", NULL), 1);
	assert_int_equal(count_kind(full, "Service", NULL), 5);
	assert_int_equal(count_kind(full, "Deployment", NULL), 5);
	assert_int_equal(count_kind(full, "CronJob", "keystone"), 1);
	assert_int_equal(count_kind(full, "CronJob", NULL), 1);
	assert_int_equal(count_kind(full, "DaemonSet", "hostagent"), 1);
	/* The password is in the Secret only. */
	_cleanup_free_ char *text = dump(full);
	assert_null(strstr(text, "s3cret-pw"));
	assert_non_null(strstr(text, "czNjcmV0LXB3")); /* base64 of s3cret-pw */

	json_auto_t *dis = render_fixture("disabled.yaml");
	assert_int_equal(json_array_size(dis), 13);
	check_labels_owner(dis, "v3.10.0");
	for (size_t k = 0; k < ocr_n_kinds; k++) {
		assert_int_equal(count_kind(dis, ocr_kinds[k].kind, "glance"), 0);
		assert_int_equal(count_kind(dis, ocr_kinds[k].kind, "webconsole"), 0);
		assert_int_equal(count_kind(dis, ocr_kinds[k].kind, "hostagent"), 0);
	}
	assert_int_equal(count_kind(dis, "Deployment", NULL), 3);
}

static const json_t *find(const json_t *objs, const char *kind, const char *name)
{
	size_t i;
	const json_t *o;
	json_array_foreach (objs, i, o)
		if (streq(str_at(o, "kind", NULL), kind) &&
		    streq(str_at(o, "metadata", "name"), name))
			return o;
	return NULL;
}

static const char *first_image(const json_t *o)
{
	const json_t *spec = json_object_get(o, "spec");
	const json_t *pod = json_object_get(json_object_get(spec, "template"), "spec");
	return str_at(json_array_get(json_object_get(pod, "containers"), 0), "image", NULL);
}

static void test_version_bump(void **state)
{
	json_auto_t *a = render_fixture("full.yaml");
	json_auto_t *b = render_fixture("bump.yaml");
	assert_int_equal(json_array_size(a), json_array_size(b));
	check_labels_owner(b, "v3.11.0");
	static const char *const rolled[] = {"keystone", "region", "scheduler", "glance"};
	for (size_t i = 0; i < ELEMENTSOF(rolled); i++) {
		_cleanup_free_ char *name = strjoin("default-", rolled[i]);
		_cleanup_free_ char *want =
		    strjoin("registry.example.com/yunion/", rolled[i], ":v3.11.0");
		const json_t *d = find(b, "Deployment", name);
		assert_non_null(d);
		assert_string_equal(first_image(d), want);
		/* A rolled Deployment differs from the old one (drift: re-applied). */
		assert_false(ocr_subset(d, find(a, "Deployment", name)));
	}
	/* Pinned images do not follow the version. */
	assert_string_equal(first_image(find(b, "Deployment", "default-webconsole")),
			    "registry.example.com/custom/webconsole:v3.10.0-fix1");
	/* The selector has no version in it: Deployments' selectors are immutable. */
	const json_t *sel = json_object_get(
	    json_object_get(json_object_get(find(b, "Deployment", "default-keystone"), "spec"),
			    "selector"),
	    "matchLabels");
	assert_null(json_object_get(sel, "app.kubernetes.io/version"));
}

static void test_subset(void **state)
{
	json_auto_t *want =
	    json_loads("{\"a\": 1, \"b\": {\"c\": [1, {\"d\": \"x\"}]}, \"e\": true}", 0, NULL);
	json_auto_t *same_plus = json_loads(
	    "{\"a\": 1.0, \"b\": {\"c\": [1, {\"d\": \"x\", \"z\": 0}], \"y\": 2}, \"e\": true, "
	    "\"status\": {}}",
	    0, NULL);
	json_auto_t *changed =
	    json_loads("{\"a\": 5, \"b\": {\"c\": [1, {\"d\": \"x\"}]}, \"e\": true}", 0, NULL);
	json_auto_t *longer =
	    json_loads("{\"a\": 1, \"b\": {\"c\": [1, {\"d\": \"x\"}, 3]}, \"e\": true}", 0, NULL);
	json_auto_t *missing =
	    json_loads("{\"a\": 1, \"b\": {\"c\": [1, {\"d\": \"x\"}]}}", 0, NULL);
	json_auto_t *typed =
	    json_loads("{\"a\": \"1\", \"b\": {\"c\": [1, {\"d\": \"x\"}]}, \"e\": true}", 0, NULL);
	assert_true(ocr_subset(want, want));
	assert_true(ocr_subset(want, same_plus));
	assert_false(ocr_subset(want, changed));
	assert_false(ocr_subset(want, longer));
	assert_false(ocr_subset(want, missing));
	assert_false(ocr_subset(want, typed));
	assert_false(ocr_subset(want, NULL));
}

static void test_paths_base64(void **state)
{
	static const struct {
		const char *kind, *name, *path;
	} cases[] = {
	    {"ConfigMap", "x", "/api/v1/namespaces/ns/configmaps/x"},
	    {"Secret", "x", "/api/v1/namespaces/ns/secrets/x"},
	    {"PersistentVolumeClaim", "x", "/api/v1/namespaces/ns/persistentvolumeclaims/x"},
	    {"Service", NULL, "/api/v1/namespaces/ns/services"},
	    {"Deployment", "x", "/apis/apps/v1/namespaces/ns/deployments/x"},
	    {"DaemonSet", "x", "/apis/apps/v1/namespaces/ns/daemonsets/x"},
	    {"CronJob", "x", "/apis/batch/v1/namespaces/ns/cronjobs/x"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *p = ocr_kube_path(cases[i].kind, "ns", cases[i].name);
		assert_string_equal(p, cases[i].path);
	}
	assert_null(ocr_kube_path("Pod", "ns", "x"));
	static const char *const b64[][2] = {
	    {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < ELEMENTSOF(b64); i++) {
		_cleanup_free_ char *e = ocr_base64(b64[i][0], strlen(b64[i][0]));
		assert_string_equal(e, b64[i][1]);
	}
}

/* common/http-client: content_type NULL keeps application/json (the agent's requests); set, it
 * replaces it (the apply patches). */
static void test_http_content_type(void **state)
{
	static const char *const types[] = {NULL, "application/apply-patch+yaml"};
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		struct fake_http s = {.replies = {{200, NULL, strdup("{}")}}, .n_replies = 1};
		fake_http_start(&s);
		_cleanup_free_ char *url = NULL;
		assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/x", s.port), 0);
		struct http_request req = {.method = "PATCH",
					   .url = url,
					   .body = "{}",
					   .body_len = 2,
					   .content_type = types[i]};
		struct http_response resp;
		assert_int_equal(http_request_run(&req, &resp), 0);
		assert_int_equal(resp.status, 200);
		http_response_done(&resp);
		_cleanup_free_ char *head = strdup(s.seen[0].head);
		fake_http_stop(&s);
		_cleanup_free_ char *want =
		    strjoin("\r\nContent-Type: ", types[i] ? types[i] : "application/json", "\r\n");
		if (!strstr(head, want))
			fail_msg("no '%s' in:\n%s", want + 2, head);
		/* Exactly one Content-Type. */
		assert_null(strstr(strstr(head, "Content-Type:") + 1, "Content-Type:"));
	}
}

TEST_MAIN(cmocka_unit_test(test_parse_full), cmocka_unit_test(test_parse_minimal_defaults),
	  cmocka_unit_test(test_parse_invalid), cmocka_unit_test(test_quantity),
	  cmocka_unit_test(test_golden_full), cmocka_unit_test(test_golden_disabled),
	  cmocka_unit_test(test_golden_bump), cmocka_unit_test(test_labels_owner),
	  cmocka_unit_test(test_version_bump), cmocka_unit_test(test_subset),
	  cmocka_unit_test(test_paths_base64), cmocka_unit_test(test_http_content_type))

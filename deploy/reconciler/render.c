#include "common/macros.h"
#include "deploy/reconciler/render.h"

const struct ocr_kind ocr_kinds[] = {
    {"Secret", "v1", "secrets"},
    {"ConfigMap", "v1", "configmaps"},
    {"PersistentVolumeClaim", "v1", "persistentvolumeclaims"},
    {"Service", "v1", "services"},
    {"Deployment", "apps/v1", "deployments"},
    {"DaemonSet", "apps/v1", "daemonsets"},
    {"CronJob", "batch/v1", "cronjobs"},
};
const size_t ocr_n_kinds = ELEMENTSOF(ocr_kinds);

const struct ocr_kind *ocr_kind_find(const char *kind)
{
	for (size_t i = 0; i < ocr_n_kinds; i++)
		if (streq(ocr_kinds[i].kind, kind))
			return &ocr_kinds[i];
	return NULL;
}

char *ocr_base64(const char *s, size_t len)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *u = (const unsigned char *)s;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)u[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)u[i + 1] << 8;
		if (i + 2 < len)
			v |= u[i + 2];
		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? tbl[v & 63] : '=';
	}
	*o = 0;
	return out;
}

/* Rendering context of one component. */
struct rc {
	const struct ocr_cluster *c;
	enum ocr_component_id id;
	const struct ocr_component_info *info;
	char name[96];	     /* <cluster>-<component>: every object's name */
	char db_secret[100]; /* <cluster>-<component>-db */
	char config[64];     /* <component>.conf */
	char *image;
};

static json_t *labels(const struct rc *r)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", OCR_LABEL_NAME, r->info->name,
			 OCR_LABEL_INSTANCE, r->c->name, "app.kubernetes.io/part-of", "onecloud",
			 OCR_LABEL_MANAGED, OCR_FIELD_MANAGER, "app.kubernetes.io/version",
			 r->c->version);
}

/* Pod labels: the object labels plus the pod's role, so a CronJob's pods never match the
 * Service selector. */
static json_t *pod_labels(const struct rc *r, const char *role)
{
	json_t *l = labels(r);
	if (l && json_object_set_new(l, "app.kubernetes.io/component", json_string(role)) < 0)
		l = (json_decref(l), NULL);
	return l;
}

/* Selectors are immutable on Deployments and DaemonSets: no version in them. */
static json_t *selector(const struct rc *r, const char *role)
{
	return json_pack("{s:s, s:s, s:s}", OCR_LABEL_NAME, r->info->name, OCR_LABEL_INSTANCE,
			 r->c->name, "app.kubernetes.io/component", role);
}

static json_t *object(const struct rc *r, const char *kind, const char *name)
{
	const struct ocr_kind *k = ocr_kind_find(kind);
	if (!k)
		return NULL;
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}}",
			 "apiVersion", k->api_version, "kind", kind, "metadata", "name", name,
			 "namespace", r->c->namespace, "labels", labels(r), "ownerReferences",
			 "apiVersion", "onecloud.yunion.io/v1alpha1", "kind", "OnecloudCluster",
			 "name", r->c->name, "uid", r->c->uid, "controller", 1,
			 "blockOwnerDeletion", 1);
}

static int append(json_t *array, json_t *obj)
{
	if (!obj)
		return -ENOMEM;
	return json_array_append_new(array, obj) < 0 ? -ENOMEM : 0;
}

static int set(json_t *obj, const char *key, json_t *value)
{
	if (!value)
		return -ENOMEM;
	return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
}

static int render_secret(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "Secret", r->db_secret);
	_cleanup_free_ char *b64 = ocr_base64(r->c->mysql_password, strlen(r->c->mysql_password));
	if (!o || !b64)
		return -ENOMEM;
	int k = set(o, "type", json_string("Opaque"));
	if (k >= 0)
		k = set(o, "data", json_pack("{s:s}", "password", b64));
	return k < 0 ? k : append(array, json_incref(o));
}

/* The component's configuration file. The MySQL password is not in it: the container gets it
 * as $MYSQL_PASSWORD from the component's Secret (sql_password_env names the variable). */
static char *config_text(const struct rc *r)
{
	char *s = NULL;
	_cleanup_free_ char *db = NULL, *ks = NULL;
	if (r->info->database &&
	    asprintf_safe(&db,
			  "sql_host: %s\nsql_port: %d\nsql_user: %s\nsql_database: %s\n"
			  "sql_password_env: MYSQL_PASSWORD\n",
			  r->c->mysql_host, r->c->mysql_port, r->c->mysql_username,
			  r->info->name) < 0)
		return NULL;
	const struct ocr_component_info *k = ocr_component_info(OCR_KEYSTONE);
	if (asprintf_safe(&ks, "auth_url: http://%s-keystone.%s.svc:%d/v3\n", r->c->name,
			  r->c->namespace, k->port) < 0)
		return NULL;
	if (asprintf_safe(&s, "region: %s\naddress: 0.0.0.0\nport: %d\n%s%s", r->c->region,
			  r->info->port, ks, strempty(db)) < 0)
		return NULL;
	return s;
}

static int render_configmap(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "ConfigMap", r->name);
	_cleanup_free_ char *text = config_text(r);
	if (!o || !text)
		return -ENOMEM;
	int k = set(o, "data", json_pack("{s:s}", r->config, text));
	return k < 0 ? k : append(array, json_incref(o));
}

static int render_pvc(const struct rc *r, json_t *array)
{
	const struct ocr_component *comp = &r->c->components[r->id];
	json_auto_t *o = object(r, "PersistentVolumeClaim", r->name);
	json_t *spec = json_pack("{s:[s], s:{s:{s:s}}}", "accessModes", "ReadWriteOnce",
				 "resources", "requests", "storage",
				 comp->storage_size ? comp->storage_size : r->info->default_size);
	int k = set(o, "spec", spec);
	if (k >= 0 && comp->storage_class_name)
		k = set(spec, "storageClassName", json_string(comp->storage_class_name));
	return k < 0 ? k : append(array, json_incref(o));
}

static int render_service(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "Service", r->name);
	int k = set(o, "spec",
		    json_pack("{s:s, s:o, s:[{s:s, s:s, s:i, s:i, s:i}]}", "type", "NodePort",
			      "selector", selector(r, "server"), "ports", "name", "api", "protocol",
			      "TCP", "port", r->info->port, "targetPort", r->info->port, "nodePort",
			      r->info->port));
	return k < 0 ? k : append(array, json_incref(o));
}

/* The container every pod of the component runs (Deployment and CronJob). */
static json_t *container(const struct rc *r, const char *name, json_t *args)
{
	_cleanup_free_ char *cmd = strjoin("/opt/yunion/bin/", r->info->name);
	_cleanup_free_ char *conf = strjoin("/etc/yunion/", r->config);
	if (!cmd || !conf || !args)
		return json_decref(args), NULL;
	json_t *c =
	    json_pack("{s:s, s:s, s:s, s:[s], s:o, s:[{s:s, s:s, s:b}]}", "name", name, "image",
		      r->image, "imagePullPolicy", "IfNotPresent", "command", cmd, "args", args,
		      "volumeMounts", "name", "config", "mountPath", "/etc/yunion", "readOnly", 1);
	if (!c)
		return NULL;
	json_array_insert_new(args, 0, json_string("--config"));
	json_array_insert_new(args, 1, json_string(conf));
	if (r->info->database &&
	    set(c, "env",
		json_pack("[{s:s, s:{s:{s:s, s:s}}}]", "name", "MYSQL_PASSWORD", "valueFrom",
			  "secretKeyRef", "name", r->db_secret, "key", "password")) < 0)
		return json_decref(c), NULL;
	if (r->info->storage &&
	    json_array_append_new(json_object_get(c, "volumeMounts"),
				  json_pack("{s:s, s:s}", "name", "data", "mountPath",
					    "/opt/cloud/workspace/data")) < 0)
		return json_decref(c), NULL;
	return c;
}

static json_t *volumes(const struct rc *r)
{
	json_t *v = json_pack("[{s:s, s:{s:s}}]", "name", "config", "configMap", "name", r->name);
	if (v && r->info->storage &&
	    json_array_append_new(v, json_pack("{s:s, s:{s:s}}", "name", "data",
					       "persistentVolumeClaim", "claimName", r->name)) < 0)
		v = (json_decref(v), NULL);
	return v;
}

static int render_deployment(const struct rc *r, json_t *array)
{
	const struct ocr_component *comp = &r->c->components[r->id];
	json_auto_t *o = object(r, "Deployment", r->name);
	json_t *c = container(r, r->info->name, json_array());
	int k = c ? 0 : -ENOMEM;
	if (k >= 0)
		k = set(c, "ports",
			json_pack("[{s:s, s:i, s:s}]", "name", "api", "containerPort",
				  r->info->port, "protocol", "TCP"));
	if (k >= 0)
		k = set(c, "readinessProbe",
			json_pack("{s:{s:i}, s:i, s:i}", "tcpSocket", "port", r->info->port,
				  "periodSeconds", 5, "failureThreshold", 3));
	if (k >= 0)
		k = set(c, "livenessProbe",
			json_pack("{s:{s:i}, s:i, s:i, s:i}", "tcpSocket", "port", r->info->port,
				  "initialDelaySeconds", 30, "periodSeconds", 10,
				  "failureThreshold", 6));
	if (k < 0) {
		json_decref(c);
		return k;
	}
	/* A ReadWriteOnce volume cannot follow a rolling update onto another node. */
	k = set(o, "spec",
		json_pack("{s:i, s:{s:o}, s:{s:s}, s:{s:{s:o}, s:{s:[o], s:o}}}", "replicas",
			  comp->replicas, "selector", "matchLabels", selector(r, "server"),
			  "strategy", "type", r->info->storage ? "Recreate" : "RollingUpdate",
			  "template", "metadata", "labels", pod_labels(r, "server"), "spec",
			  "containers", c, "volumes", volumes(r)));
	return k < 0 ? k : append(array, json_incref(o));
}

/* keystone: hourly flush of expired tokens, one run at a time. */
static int render_cronjob(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "CronJob", r->name);
	json_t *c = container(r, "token-flush", json_pack("[s]", "--flush-expired-tokens"));
	int k = set(o, "spec",
		    json_pack("{s:s, s:s, s:i, s:i, s:{s:{s:i, s:{s:{s:o}, s:{s:s, s:[o], "
			      "s:o}}}}}",
			      "schedule", "17 * * * *", "concurrencyPolicy", "Forbid",
			      "successfulJobsHistoryLimit", 1, "failedJobsHistoryLimit", 3,
			      "jobTemplate", "spec", "backoffLimit", 2, "template", "metadata",
			      "labels", pod_labels(r, "token-flush"), "spec", "restartPolicy",
			      "OnFailure", "containers", c, "volumes", volumes(r)));
	return k < 0 ? k : append(array, json_incref(o));
}

/* The agent's host.conf: the standalone defaults of deploy/k8s/hostagent-daemonset.yaml plus
 * the cluster's region. */
static int render_hostagent_config(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "ConfigMap", r->name);
	_cleanup_free_ char *text = NULL;
	if (!o || asprintf_safe(&text,
				"port: 8885\nlibvirt_uri: qemu:///system\n"
				"servers_path: /opt/cloud/workspace/servers\n"
				"state_dir: /var/lib/hostagent\nenforce_placement: true\n"
				"cgroup_root: /sys/fs/cgroup\nhost_cgroup_partition: /machine\n"
				"shutdown_timeout: 20\nqemu_user: hostagent-qemu\nregion: %s\n",
				r->c->region) < 0)
		return -ENOMEM;
	int k = set(o, "data", json_pack("{s:s}", "host.conf", text));
	return k < 0 ? k : append(array, json_incref(o));
}

static json_t *host_volume(const char *name, const char *path, const char *type)
{
	return json_pack("{s:s, s:{s:s, s:s}}", "name", name, "hostPath", "path", path, "type",
			 type);
}

static json_t *mount(const char *name, const char *path, bool ro)
{
	json_t *m = json_pack("{s:s, s:s}", "name", name, "mountPath", path);
	if (m && ro && json_object_set_new(m, "readOnly", json_true()) < 0)
		m = (json_decref(m), NULL);
	return m;
}

static json_t *http_probe(const char *path, int period, int failures)
{
	return json_pack("{s:{s:s, s:i}, s:i, s:i}", "httpGet", "path", path, "port", 8885,
			 "periodSeconds", period, "failureThreshold", failures);
}

/* The settings of deploy/k8s/hostagent-daemonset.yaml (why each is there: ARCHITECTURE.md "VMs
 * survive the agent's container restart"), with the image from the spec. */
static int render_daemonset(const struct rc *r, json_t *array)
{
	json_auto_t *o = object(r, "DaemonSet", r->name);
	json_t *agent_mounts =
	    json_pack("[o, o, o, o, o, o, o, o, o, o, o, o]", mount("config", "/etc/yunion", true),
		      mount("run-libvirt", "/run/libvirt", false),
		      mount("var-lib-libvirt", "/var/lib/libvirt", false),
		      mount("etc-libvirt-qemu", "/etc/libvirt/qemu", false),
		      mount("var-log-libvirt", "/var/log/libvirt", false),
		      mount("workspace", "/opt/cloud/workspace", false),
		      mount("state", "/var/lib/hostagent", false),
		      mount("run-hostagent", "/run/hostagent", false),
		      mount("modules", "/lib/modules", true), mount("dbus", "/run/dbus", false),
		      mount("cgroup", "/sys/fs/cgroup", false), mount("dev", "/dev", false));
	json_t *libvirt_mounts =
	    json_pack("[o, o, o, o, o, o, o, o, o]", mount("run-libvirt", "/run/libvirt", false),
		      mount("var-lib-libvirt", "/var/lib/libvirt", false),
		      mount("etc-libvirt-qemu", "/etc/libvirt/qemu", false),
		      mount("var-log-libvirt", "/var/log/libvirt", false),
		      mount("workspace", "/opt/cloud/workspace", false),
		      mount("modules", "/lib/modules", true), mount("dbus", "/run/dbus", false),
		      mount("cgroup", "/sys/fs/cgroup", false), mount("dev", "/dev", false));
	json_t *vols = json_pack(
	    "[{s:s, s:{s:s}}, o, o, o, o, o, o, o, o, o, o, o]", "name", "config", "configMap",
	    "name", r->name, host_volume("run-libvirt", "/run/libvirt", "DirectoryOrCreate"),
	    host_volume("var-lib-libvirt", "/var/lib/libvirt", "DirectoryOrCreate"),
	    host_volume("etc-libvirt-qemu", "/etc/libvirt/qemu", "DirectoryOrCreate"),
	    host_volume("var-log-libvirt", "/var/log/libvirt", "DirectoryOrCreate"),
	    host_volume("workspace", "/opt/cloud/workspace", "DirectoryOrCreate"),
	    host_volume("state", "/var/lib/hostagent", "DirectoryOrCreate"),
	    host_volume("run-hostagent", "/run/hostagent", "DirectoryOrCreate"),
	    host_volume("modules", "/lib/modules", "DirectoryOrCreate"),
	    host_volume("dbus", "/run/dbus", "DirectoryOrCreate"),
	    host_volume("cgroup", "/sys/fs/cgroup", "Directory"),
	    host_volume("dev", "/dev", "Directory"));
	json_t *agent = json_pack(
	    "{s:s, s:s, s:s, s:[s], s:[s], s:[{s:s, s:s}, {s:s, s:s}], "
	    "s:[{s:s, s:i, s:i, s:s}], s:{s:b}, s:o, s:o, s:o, s:o}",
	    "name", "agent", "image", r->image, "imagePullPolicy", "IfNotPresent", "command",
	    "/usr/local/bin/entry-agent.sh", "args", "--config=/etc/yunion/host.conf", "env",
	    "name", "HOSTAGENT_ENFORCE_PLACEMENT", "value", "true", "name", "HOSTAGENT_CGROUP_ROOT",
	    "value", "/sys/fs/cgroup", "ports", "name", "api", "containerPort", 8885, "hostPort",
	    8885, "protocol", "TCP", "securityContext", "privileged", 1, "startupProbe",
	    http_probe("/ping", 2, 90), "readinessProbe", http_probe("/readyz", 5, 2),
	    "livenessProbe", http_probe("/healthz", 10, 6), "volumeMounts", agent_mounts);
	if (agent &&
	    set(json_object_get(agent, "livenessProbe"), "timeoutSeconds", json_integer(5)) < 0)
		agent = (json_decref(agent), NULL);
	json_t *libvirt = json_pack(
	    "{s:s, s:s, s:s, s:[s], s:{s:b}, s:{s:{s:[s, s, s, s]}, s:i, s:i, s:i}, s:o}", "name",
	    "libvirt", "image", r->image, "imagePullPolicy", "IfNotPresent", "command",
	    "/usr/local/bin/entry-libvirt.sh", "securityContext", "privileged", 1, "livenessProbe",
	    "exec", "command", "/usr/bin/virsh", "-c", "qemu:///system", "version", "periodSeconds",
	    30, "timeoutSeconds", 10, "failureThreshold", 4, "volumeMounts", libvirt_mounts);
	int k = set(
	    o, "spec",
	    json_pack("{s:{s:o}, s:{s:s, s:{s:i}}, s:{s:{s:o}, s:{s:b, s:b, s:b, s:s, s:i, s:s, "
		      "s:{s:s}, s:[{s:s}], s:[o, o], s:o}}}",
		      "selector", "matchLabels", selector(r, "agent"), "updateStrategy", "type",
		      "RollingUpdate", "rollingUpdate", "maxUnavailable", 1, "template", "metadata",
		      "labels", pod_labels(r, "agent"), "spec", "hostPID", 1, "hostNetwork", 1,
		      "hostIPC", 1, "dnsPolicy", "ClusterFirstWithHostNet",
		      "terminationGracePeriodSeconds", 45, "priorityClassName",
		      "system-node-critical", "nodeSelector", "onecloud.yunion.io/host", "enable",
		      "tolerations", "operator", "Exists", "containers", agent, libvirt, "volumes",
		      vols));
	return k < 0 ? k : append(array, json_incref(o));
}

int ocr_render_component(const struct ocr_cluster *c, enum ocr_component_id id, json_t *array)
{
	const struct ocr_component_info *info = ocr_component_info(id);
	if (!info || !array)
		return -EINVAL;
	if (c->components[id].disable)
		return 0;
	struct rc r = {.c = c, .id = id, .info = info};
	snprintf(r.name, sizeof(r.name), "%s-%s", c->name, info->name);
	snprintf(r.db_secret, sizeof(r.db_secret), "%s-db", r.name);
	snprintf(r.config, sizeof(r.config), "%s.conf", info->name);
	_cleanup_free_ char *image = ocr_component_image(c, id);
	if (!image)
		return -ENOMEM;
	r.image = image;
	if (id == OCR_HOSTAGENT) {
		int k = render_hostagent_config(&r, array);
		return k < 0 ? k : render_daemonset(&r, array);
	}
	int k = 0;
	if (info->database)
		k = render_secret(&r, array);
	if (k >= 0)
		k = render_configmap(&r, array);
	if (k >= 0 && info->storage)
		k = render_pvc(&r, array);
	if (k >= 0)
		k = render_service(&r, array);
	if (k >= 0)
		k = render_deployment(&r, array);
	if (k >= 0 && info->cronjob)
		k = render_cronjob(&r, array);
	return k;
}

int ocr_render(const struct ocr_cluster *c, json_t **ret)
{
	json_auto_t *a = json_array();
	if (!a)
		return -ENOMEM;
	for (int i = 0; i < _OCR_COMPONENT_MAX; i++) {
		int k = ocr_render_component(c, i, a);
		if (k < 0)
			return k;
	}
	*ret = json_incref(a);
	return 0;
}

int ocr_dump_objects(const json_t *array, FILE *f)
{
	size_t i;
	const json_t *o;
	json_array_foreach (array, i, o) {
		_cleanup_free_ char *s = json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(2));
		if (!s)
			return -ENOMEM;
		if (fprintf(f, "---\n%s\n", s) < 0)
			return -EIO;
	}
	return 0;
}

#include "common/log.h"
#include "common/macros.h"
#include "deploy/reconciler/reconcile.h"
#include "deploy/reconciler/render.h"

bool ocr_subset(const json_t *desired, const json_t *live)
{
	if (!desired || !live)
		return desired == live;
	if (json_is_number(desired) && json_is_number(live))
		return json_number_value(desired) == json_number_value(live);
	if (json_typeof(desired) != json_typeof(live))
		return false;
	if (json_is_object(desired)) {
		const char *key;
		const json_t *v;
		json_object_foreach ((json_t *)desired, key, v)
			if (!ocr_subset(v, json_object_get(live, key)))
				return false;
		return true;
	}
	if (json_is_array(desired)) {
		if (json_array_size(desired) != json_array_size(live))
			return false;
		for (size_t i = 0; i < json_array_size(desired); i++)
			if (!ocr_subset(json_array_get(desired, i), json_array_get(live, i)))
				return false;
		return true;
	}
	return json_equal((json_t *)desired, (json_t *)live);
}

static const char *obj_name(const json_t *o)
{
	return json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
}

static void report(FILE *out, const char *kind, const char *ns, const char *name, const char *what)
{
	fprintf(out, "%s %s/%s: %s\n", kind, ns, name, what);
	fflush(out);
}

static int fail_object(const char *kind, const char *ns, const char *name, const char *op, int r,
		       const struct ocr_kube_reply *rep)
{
	if (r < 0)
		log_error_errno(r, "%s %s/%s: %s failed: %m", kind, ns, name, op);
	else
		log_error("%s %s/%s: %s failed: HTTP %ld: %s", kind, ns, name, op, rep->status,
			  strempty(rep->message));
	return 1;
}

static int reconcile_object(const struct ocr_kube *k, const json_t *obj, FILE *out,
			    struct ocr_stats *st)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	const char *ns =
	    json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
	const char *name = obj_name(obj);
	_cleanup_free_ char *path = ocr_kube_path(kind, ns, name);
	if (!path)
		return log_oom(), 1;
	struct ocr_kube_reply rep = {};
	int r = ocr_kube_get(k, path, &rep);
	if (r < 0 || (rep.status != 200 && rep.status != 404)) {
		fail_object(kind, ns, name, "get", r, &rep);
		ocr_kube_reply_done(&rep);
		st->failed++;
		return 1;
	}
	bool exists = rep.status == 200;
	if (exists && ocr_subset(obj, rep.body)) {
		ocr_kube_reply_done(&rep);
		report(out, kind, ns, name, "unchanged");
		st->unchanged++;
		return 0;
	}
	ocr_kube_reply_done(&rep);
	r = ocr_kube_apply(k, path, obj, &rep);
	if (r < 0 || rep.status < 200 || rep.status > 299) {
		fail_object(kind, ns, name, "apply", r, &rep);
		ocr_kube_reply_done(&rep);
		st->failed++;
		return 1;
	}
	ocr_kube_reply_done(&rep);
	report(out, kind, ns, name, exists ? "updated (drift)" : "created");
	if (exists)
		st->updated++;
	else
		st->created++;
	return 0;
}

/* A disabled component: every object of every kind it may have had, found by its labels. */
static int remove_component(const struct ocr_kube *k, const struct ocr_cluster *c,
			    const char *component, FILE *out, struct ocr_stats *st)
{
	/* The instance term keeps another cluster's objects in the same namespace out. */
	_cleanup_free_ char *sel =
	    strjoin(OCR_LABEL_NAME "=", component, "," OCR_LABEL_MANAGED "=" OCR_FIELD_MANAGER,
		    "," OCR_LABEL_INSTANCE "=", c->name);
	if (!sel)
		return log_oom(), 1;
	int failed = 0;
	for (size_t i = 0; i < ocr_n_kinds; i++) {
		const char *kind = ocr_kinds[i].kind;
		_cleanup_free_ char *coll = ocr_kube_path(kind, c->namespace, NULL);
		if (!coll)
			return log_oom(), failed + 1;
		struct ocr_kube_reply rep = {};
		int r = ocr_kube_list(k, coll, sel, &rep);
		if (r < 0 || rep.status != 200) {
			fail_object(kind, c->namespace, component, "list", r, &rep);
			ocr_kube_reply_done(&rep);
			st->failed++;
			failed++;
			continue;
		}
		size_t j;
		json_t *item;
		json_array_foreach (json_object_get(rep.body, "items"), j, item) {
			const char *name = obj_name(item);
			if (!name)
				continue;
			_cleanup_free_ char *path = ocr_kube_path(kind, c->namespace, name);
			struct ocr_kube_reply d = {};
			r = path ? ocr_kube_delete(k, path, &d) : -ENOMEM;
			/* Gone meanwhile is what was wanted. */
			if (r < 0 || (d.status >= 300 && d.status != 404)) {
				fail_object(kind, c->namespace, name, "delete", r, &d);
				st->failed++;
				failed++;
			} else {
				report(out, kind, c->namespace, name, "deleted");
				st->deleted++;
			}
			ocr_kube_reply_done(&d);
		}
		ocr_kube_reply_done(&rep);
	}
	return failed;
}

int ocr_reconcile(const struct ocr_kube *k, const struct ocr_cluster *c, FILE *out,
		  struct ocr_stats *stats)
{
	struct ocr_stats st = {};
	int failed = 0;
	for (int id = 0; id < _OCR_COMPONENT_MAX; id++) {
		const struct ocr_component_info *info = ocr_component_info(id);
		if (c->components[id].disable) {
			failed += remove_component(k, c, info->name, out, &st);
			continue;
		}
		json_auto_t *objs = json_array();
		int r = objs ? ocr_render_component(c, id, objs) : -ENOMEM;
		if (r < 0) {
			log_error_errno(r, "Failed to render %s: %m", info->name);
			failed++;
			st.failed++;
			continue;
		}
		size_t i;
		json_t *o;
		json_array_foreach (objs, i, o)
			failed += reconcile_object(k, o, out, &st);
	}
	if (stats)
		*stats = st;
	return failed;
}

#include <pthread.h>

#include "agent/metrics.h"
#include "agent/modules.h"
#include "agent/readiness.h"
#include "agent/tasks.h"
#include "common/config.h"
#include "common/log.h"
#include "kmod/modload.h"

struct agent_modules {
	const struct config *cfg;
	struct tasks *tasks;
	struct metrics *metrics; /* NULL: no collector */
	struct readiness *readiness;
	pthread_mutex_t lock; /* report is read by the metrics collector on another thread */
	struct modload_report *report;
	bool running;
};

struct run {
	struct agent_modules *m;
	struct modload_report *report;
	int error;
	op_done_fn cb;
	void *userdata;
};

int agent_modules_request(const struct config *cfg, const char *cpuinfo_path,
			  struct modload_request **ret, size_t *ret_n)
{
	struct modload_request *req = calloc(cfg->n_kernel_modules + 1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_kernel_modules; i++) {
		const struct config_module *c = &cfg->kernel_modules[i];
		const char *name = c->name;
		if (streq(name, CONFIG_MODULE_KVM_VENDOR)) {
			int r = modload_kvm_module(cpuinfo_path, &name);
			if (r < 0) {
				log_debug_errno(
				    r, "No vendor KVM module for this CPU, %s left out: %m",
				    c->name);
				continue;
			}
		}
		req[n++] = (struct modload_request){name, c->params, c->required};
	}
	*ret = req;
	*ret_n = n;
	return 0;
}

static void run_work(void *userdata)
{
	struct run *r = userdata;
	const struct config *cfg = r->m->cfg;
	struct modload_opts o = {
	    .modules_dir = cfg->modules_dir,
	    .modprobe_fallback = cfg->modprobe_fallback,
	    .host_pid = cfg->modules_host_pid,
	};
	_cleanup_(modload_freep) struct modload *ml = NULL;
	_cleanup_free_ struct modload_request *req = NULL;
	size_t n;
	r->error = agent_modules_request(cfg, NULL, &req, &n);
	if (r->error >= 0)
		r->error = modload_new(&o, &ml);
	if (r->error >= 0)
		r->error = modload_ensure(ml, req, n, &r->report);
}

static void log_report(const struct modload_report *rep)
{
	for (size_t i = 0; i < rep->n_results; i++) {
		const struct modload_result *x = &rep->results[i];
		char err[64] = "";
		if (x->status == MODLOAD_FAILED)
			snprintf(err, sizeof(err), "%s", strerror(x->error));
		bool bad = x->status == MODLOAD_MISSING || x->status == MODLOAD_FAILED;
		log_kv(bad ? (x->required ? LOG_ERR : LOG_WARNING) : LOG_INFO, "Kernel module",
		       "module", x->name, "status", modload_status_to_string(x->status), "required",
		       x->required ? "yes" : "no", "error", err, NULL);
	}
}

/* [{"name", "resolved", "status", "required", "params", "error", "failed_dep",
 *   "inserted": [...]}, ...] */
static int results_json(const struct modload_report *r, json_t **ret)
{
	json_t *arr = json_array();

	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_results; i++) {
		const struct modload_result *res = &r->results[i];
		json_t *ins = json_array();
		json_t *o = json_pack("{s:s, s:s?, s:s, s:b, s:s?, s:s?, s:s?, s:o}", "name",
				      res->name, "resolved", res->resolved, "status",
				      modload_status_to_string(res->status), "required",
				      res->required, "params", res->params, "error",
				      res->status == MODLOAD_FAILED ? strerror(res->error) : NULL,
				      "failed_dep", res->failed_dep, "inserted", ins);
		STRV_FOREACH (s, res->inserted)
			if (!ins || json_array_append_new(ins, json_string(*s)) < 0)
				o = (json_decref(o), NULL);
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return -ENOMEM;
		}
	}
	*ret = arr;
	return 0;
}

static json_t *report_json(struct agent_modules *m)
{
	json_t *list = NULL;
	if (m->report && results_json(m->report, &list) < 0)
		list = NULL;
	return json_pack("{s:o,s:b}", "modules", list ? list : json_null(), "ok",
			 m->report && modload_report_ok(m->report));
}

static void run_done(void *userdata)
{
	struct run *r = userdata;
	struct agent_modules *m = r->m;
	m->running = false;
	if (r->error < 0)
		log_error_errno(r->error, "Cannot check kernel modules: %m");
	else {
		log_report(r->report);
		pthread_mutex_lock(&m->lock);
		modload_report_free(m->report);
		m->report = TAKE_PTR(r->report);
		pthread_mutex_unlock(&m->lock);
	}
	if (r->cb) {
		struct op_reply reply = {0};
		if (r->error < 0)
			(void)op_reply_fail(&reply, r->error == -ENOMEM ? -ENOMEM : -EIO,
					    "cannot check modules: %s", strerror(-r->error));
		else
			op_reply_ok(&reply, report_json(m));
		r->cb(&reply, r->userdata);
		op_reply_clear(&reply);
	}
	modload_report_free(r->report);
	free(r);
}

static int submit(struct agent_modules *m, op_done_fn cb, void *userdata)
{
	struct run *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	/* -ECANCELED stays when the pool drops the job at shutdown without running it. */
	*r = (struct run){.m = m, .cb = cb, .userdata = userdata, .error = -ECANCELED};
	/* Keyed: two ensures never run at once. */
	int k = tasks_submit(m->tasks, TASKS_INTERNAL_KEY("kernel-modules"), run_work, run_done, r);
	if (k < 0) {
		r->error = k;
		run_done(r);
		return 0;
	}
	m->running = true;
	return 0;
}

static void collect(FILE *f, void *userdata)
{
	struct agent_modules *m = userdata;
	metrics_write_family(f, "hostagent_kernel_module", "gauge",
			     "Kernel modules the node needs, by status (1 for the current one).");
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; m->report && i < m->report->n_results; i++) {
		const struct modload_result *x = &m->report->results[i];
		char labels[256];
		snprintf(labels, sizeof(labels), "module=\"%s\",status=\"%s\",required=\"%s\"",
			 x->name, modload_status_to_string(x->status), x->required ? "yes" : "no");
		metrics_write_sample(f, "hostagent_kernel_module", labels, 1);
	}
	pthread_mutex_unlock(&m->lock);
}

static void reasons(void *userdata, json_t *out);

int agent_modules_new(const struct config *cfg, struct tasks *tasks, struct metrics *metrics,
		      struct readiness *readiness, struct agent_modules **ret)
{
	struct agent_modules *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = cfg;
	m->tasks = tasks;
	m->metrics = metrics;
	m->readiness = readiness;
	pthread_mutex_init(&m->lock, NULL);
	int r = readiness_add(readiness, reasons, m);
	if (r < 0) {
		agent_modules_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

struct agent_modules *agent_modules_free(struct agent_modules *m)
{
	if (!m)
		return NULL;
	readiness_remove(m->readiness, m);
	modload_report_free(m->report);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

int agent_modules_start(struct agent_modules *m)
{
	if (m->metrics) {
		int r = metrics_add_collector(m->metrics, collect, m);
		if (r < 0)
			return r;
	}
	return submit(m, NULL, NULL);
}

int agent_modules_ensure(struct agent_modules *m, op_done_fn cb, void *userdata)
{
	return submit(m, cb, userdata);
}

json_t *agent_modules_json(struct agent_modules *m)
{
	pthread_mutex_lock(&m->lock);
	json_t *j = report_json(m);
	pthread_mutex_unlock(&m->lock);
	return j;
}

/* Readiness: modules not checked yet, or required ones missing. */
static void reasons(void *userdata, json_t *out)
{
	struct agent_modules *m = userdata;
	json_t *reasons = out;
	if (!m->report) {
		json_array_append_new(reasons, json_string("kernel modules: not checked yet"));
		return;
	}
	_cleanup_strv_free_ char **l = NULL;
	if (modload_report_reasons(m->report, &l) < 0)
		return;
	STRV_FOREACH (s, l)
		json_array_append_new(reasons, json_string(*s));
}

#include <pthread.h>
#include <stdio.h>

#include "agent/guests.h"
#include "agent/metrics.h"
#include "placement/placement.h"
#include "agent/qemu-placement.h"
#include "agent/readiness.h"
#include "agent/tasks.h"
#include "common/config.h"
#include "common/log.h"

#define PLACEMENT_KEY TASKS_INTERNAL_KEY("placement")

struct qemu_placement {
	bool enforce;
	struct tasks *tasks;
	struct guests *guests;
	struct metrics *metrics; /* NULL: no collector */
	struct readiness *readiness;
	struct placement *pl; /* NULL when no cgroup hierarchy was found */
	pthread_mutex_t lock; /* guards the figures below (read by the metrics collector) */
	unsigned violations;
	char *reason;
	unsigned long moved, checks, errors;
};

struct job {
	struct qemu_placement *p;
	char *sid;
	int pid; /* 0: forget sid */
	int r;
	struct placement_report rep;
	unsigned violations;
	char *reason;
};

static void job_work(void *userdata)
{
	struct job *j = userdata;
	if (j->pid > 0)
		j->r = placement_check_pid(j->p->pl, j->pid, j->sid, j->p->enforce, &j->rep);
	else
		placement_forget(j->p->pl, j->sid);
	j->violations = placement_violations(j->p->pl);
	if (placement_violation_reason(j->p->pl, &j->reason) < 0)
		j->reason = NULL;
}

static void job_done(void *userdata)
{
	struct job *j = userdata;
	struct qemu_placement *p = j->p;
	char pid[16];
	if (j->r == -ECANCELED) {
		free(j->sid);
		free(j);
		return;
	}
	snprintf(pid, sizeof(pid), "%d", j->pid);
	if (j->pid > 0 && j->r < 0 && j->r != -ESRCH)
		log_warning_errno(j->r,
				  "Cannot check the cgroup placement of guest %s (pid %d): %m",
				  j->sid, j->pid);
	else if (j->pid > 0 && j->r >= 0 && j->rep.n_misplaced > 0) {
		char moved[16], left[16];
		snprintf(moved, sizeof(moved), "%u", j->rep.n_moved);
		snprintf(left, sizeof(left), "%u", j->rep.n_left);
		log_kv(j->rep.n_left ? LOG_ERR : LOG_NOTICE,
		       j->rep.n_left ? "QEMU left inside the container's cgroup"
				     : "Moved QEMU out of the container's cgroup",
		       "sid", j->sid, "pid", pid, "moved", moved, "left", left, "target",
		       strempty(j->rep.target), "systemd", j->rep.systemd_used ? "yes" : "no",
		       "violation", strempty(j->rep.violation), NULL);
	} else if (j->pid > 0 && j->r >= 0)
		log_kv(LOG_DEBUG, "QEMU placement verified", "sid", j->sid, "pid", pid, NULL);
	pthread_mutex_lock(&p->lock);
	p->violations = j->violations;
	free(p->reason);
	p->reason = TAKE_PTR(j->reason);
	if (j->pid > 0) {
		p->checks++;
		if (j->r >= 0)
			p->moved += j->rep.n_moved;
		if (j->r < 0 && j->r != -ESRCH)
			p->errors++;
	}
	pthread_mutex_unlock(&p->lock);
	placement_report_done(&j->rep);
	free(j->reason);
	free(j->sid);
	free(j);
}

static void submit(struct qemu_placement *p, const char *sid, int pid)
{
	if (!p->pl)
		return;
	struct job *j = calloc(1, sizeof(*j));
	if (!j || !(j->sid = strdup(sid))) {
		free(j);
		log_oom();
		return;
	}
	j->p = p;
	j->pid = pid;
	j->r = -ECANCELED; /* stays when the pool drops the job at shutdown */
	if (tasks_submit(p->tasks, PLACEMENT_KEY, job_work, job_done, j) < 0) {
		free(j->sid);
		free(j);
	}
}

static void on_running(const char *sid, int qemu_pid, void *ud)
{
	submit(ud, sid, qemu_pid);
}

static void on_state(const char *sid, const char *status, void *ud)
{
	if (!status || streq(status, "ready") || streq(status, "crashed"))
		submit(ud, sid, 0);
}

static void collect(FILE *f, void *userdata)
{
	struct qemu_placement *p = userdata;
	pthread_mutex_lock(&p->lock);
	unsigned v = p->violations;
	unsigned long moved = p->moved, checks = p->checks, errors = p->errors;
	pthread_mutex_unlock(&p->lock);
	metrics_write_family(
	    f, "hostagent_placement_violations", "gauge",
	    "QEMU processes with threads left inside the agent's container cgroup.");
	metrics_write_sample(f, "hostagent_placement_violations", NULL, v);
	metrics_write_family(f, "hostagent_placement_moves_total", "counter",
			     "QEMU (thread, hierarchy) pairs moved into the host partition.");
	metrics_write_sample(f, "hostagent_placement_moves_total", NULL, (double)moved);
	metrics_write_family(f, "hostagent_placement_checks_total", "counter",
			     "QEMU placement checks run.");
	metrics_write_sample(f, "hostagent_placement_checks_total", NULL, (double)checks);
	metrics_write_family(f, "hostagent_placement_errors_total", "counter",
			     "QEMU placement checks that could not run.");
	metrics_write_sample(f, "hostagent_placement_errors_total", NULL, (double)errors);
}

int qemu_placement_new(const struct config *cfg, struct tasks *tasks, struct guests *guests,
		       struct metrics *metrics, struct readiness *readiness,
		       struct qemu_placement **ret)
{
	struct qemu_placement *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->enforce = cfg->enforce_placement;
	p->tasks = tasks;
	p->guests = guests;
	p->metrics = metrics;
	p->readiness = readiness;
	pthread_mutex_init(&p->lock, NULL);
	struct placement_opts o = {
	    .cgroup_root = cfg->cgroup_root,
	    .host_partition = cfg->host_cgroup_partition,
	};
	int r = placement_new(&o, &p->pl);
	if (r < 0)
		log_warning_errno(r,
				  "No usable cgroup hierarchy under %s, QEMU placement is not "
				  "checked: %m",
				  cfg->cgroup_root);
	else {
		char *desc = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&desc, &len);
		if (f) {
			placement_describe(p->pl, f);
			fclose(f);
			while (len > 0 && desc[len - 1] == '\n')
				desc[--len] = 0;
			log_info("QEMU placement: %s", desc);
			free(desc);
		}
	}
	*ret = p;
	return 0;
}

struct qemu_placement *qemu_placement_free(struct qemu_placement *p)
{
	if (!p)
		return NULL;
	readiness_remove(p->readiness, p);
	placement_free(p->pl);
	free(p->reason);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return NULL;
}

/* Readiness: QEMUs left in the agent's container cgroup. */
static void reasons(void *userdata, json_t *out)
{
	struct qemu_placement *p = userdata;
	json_t *reasons = out;
	pthread_mutex_lock(&p->lock);
	if (p->violations > 0)
		json_array_append_new(
		    reasons,
		    json_sprintf("placement: %u QEMU process(es) inside the agent's container "
				 "cgroup%s%s",
				 p->violations, p->reason ? ": " : "", strempty(p->reason)));
	pthread_mutex_unlock(&p->lock);
}

int qemu_placement_start(struct qemu_placement *p)
{
	int r = guests_add_hooks(p->guests, on_running, on_state, p);
	if (r < 0)
		return r;
	r = readiness_add(p->readiness, reasons, p);
	if (r < 0)
		return r;
	if (p->metrics)
		return metrics_add_collector(p->metrics, collect, p);
	return 0;
}

/* The guest DHCP: one supervised dnsmasq per bridge (see agent/dhcp.h).
 *
 * Every change of a guest's NICs marks the table dirty; a deferred pass (coalescing a whole
 * startup listing into one) renders each bridge's files, writes the ones that changed (temp
 * file + rename: a reader never sees half a file; no fsync, as the files are derived from the
 * descriptors and rewritten at every start), and reloads that bridge's dnsmasq: SIGHUP from
 * dnsmasq 2.91, a restart before (2.90 aborts when it rereads a changed hosts file on SIGHUP),
 * and a restart whenever the set of subnets changes (they are command-line ranges). A dnsmasq
 * that exits on its own is restarted with a backoff (1 s doubling to 30 s; reset after a minute
 * of running), watched through its pidfd. */
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>

#include "agent/dhcp.h"
#include "agent/readiness.h"
#include "agent/metrics.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/spawn.h"

#define BACKOFF_MAX_SEC	 30
#define STABLE_AFTER_SEC 60

struct inst {
	struct dhcp *d;
	char *bridge, *dir;
	pid_t pid; /* 0: not running */
	int pidfd;
	sd_event_source *exit_src, *retry_src;
	char *hosts, *opts;    /* as written */
	char **want_subnets;   /* of the rendered files */
	char **run_subnets;    /* the running dnsmasq's ranges */
	size_t n_hosts;	       /* host entries written */
	bool wanted;	       /* some guest NIC needs it */
	bool stopping;	       /* SIGTERM sent by us */
	bool restart;	       /* start again once it exited */
	bool bridge_missing;   /* the last start found no such interface */
	unsigned failures;     /* exits and failed starts in a row */
	uint64_t started_usec; /* CLOCK_MONOTONIC */
};

struct dhcp {
	sd_event *event;
	char *state_dir, *dnsmasq;
	bool enable;
	struct metrics *metrics;
	struct readiness *readiness;
	int version; /* 2090 for 2.90; <= 0 unknown */
	bool available;
	char *unavailable_why;
	struct dhcp_guest *guests; /* sorted by sid */
	size_t n_guests;
	struct inst **insts;
	size_t n_insts;
	sd_event_source *defer;
	uint64_t restarts; /* unexpected exits restarted */
	uint64_t reloads;  /* configuration changes applied */
};

void dhcp_guests_free(struct dhcp_guest *g, size_t n)
{
	for (size_t i = 0; g && i < n; i++) {
		free(g[i].sid);
		dhcp_hosts_free(g[i].hosts, g[i].n);
	}
	free(g);
}

static uint64_t loop_now(struct dhcp *d)
{
	uint64_t t = 0;
	sd_event_now(d->event, CLOCK_MONOTONIC, &t);
	return t;
}

static int send_signal(struct inst *in, int sig)
{
	if (in->pid <= 0)
		return 0;
#ifdef SYS_pidfd_send_signal
	if (in->pidfd >= 0 && syscall(SYS_pidfd_send_signal, in->pidfd, sig, NULL, 0) == 0)
		return 0;
#endif
	return kill(in->pid, sig) < 0 ? negative_errno() : 0;
}

/* ---- files ---- */

/* Temp file + rename in the same directory; no fsync (see the top of the file). */
static int write_replace(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *path = NULL, *tmp = NULL;
	if (asprintf_safe(&path, "%s/%s", dir, name) < 0 ||
	    asprintf_safe(&tmp, "%s/.%s.tmp", dir, name) < 0)
		return -ENOMEM;
	_cleanup_close_ int fd =
	    open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return negative_errno();
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? negative_errno() : -EIO;
			unlink(tmp);
			return r;
		}
		off += (size_t)n;
	}
	if (close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0) {
		int r = negative_errno();
		unlink(tmp);
		return r;
	}
	return 0;
}

/* ---- instances ---- */

static void inst_free(struct inst *in)
{
	if (!in)
		return;
	sd_event_source_disable_unref(in->exit_src);
	sd_event_source_disable_unref(in->retry_src);
	safe_close(in->pidfd);
	free(in->bridge);
	free(in->dir);
	free(in->hosts);
	free(in->opts);
	strv_free(in->want_subnets);
	strv_free(in->run_subnets);
	free(in);
}

static struct inst *inst_find(struct dhcp *d, const char *bridge)
{
	for (size_t i = 0; i < d->n_insts; i++)
		if (streq(d->insts[i]->bridge, bridge))
			return d->insts[i];
	return NULL;
}

static void inst_drop(struct dhcp *d, struct inst *in)
{
	for (size_t i = 0; i < d->n_insts; i++)
		if (d->insts[i] == in) {
			memmove(&d->insts[i], &d->insts[i + 1],
				sizeof(*d->insts) * (d->n_insts - i - 1));
			d->n_insts--;
			break;
		}
	inst_free(in);
}

static struct inst *inst_get(struct dhcp *d, const char *bridge)
{
	struct inst *in = inst_find(d, bridge);
	if (in)
		return in;
	in = calloc(1, sizeof(*in));
	struct inst **v = realloc(d->insts, sizeof(*v) * (d->n_insts + 1));
	if (!in || !v) {
		free(in);
		if (v)
			d->insts = v;
		return NULL;
	}
	d->insts = v;
	in->d = d;
	in->pidfd = -1;
	in->bridge = strdup(bridge);
	if (!in->bridge || asprintf_safe(&in->dir, "%s/dhcp/%s", d->state_dir, bridge) < 0) {
		inst_free(in);
		return NULL;
	}
	d->insts[d->n_insts++] = in;
	return in;
}

static int inst_launch(struct inst *in);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct inst *in = userdata;
	in->retry_src = sd_event_source_disable_unref(in->retry_src);
	if (in->wanted && in->pid <= 0)
		(void)inst_launch(in);
	return 0;
}

static void inst_retry_later(struct inst *in)
{
	uint64_t delay = backoff_usec(in->failures, USEC_PER_SEC, BACKOFF_MAX_SEC * USEC_PER_SEC);
	in->retry_src = sd_event_source_disable_unref(in->retry_src);
	if (sd_event_add_time_relative(in->d->event, &in->retry_src, CLOCK_MONOTONIC, delay, 0,
				       on_retry, in) < 0)
		log_oom();
}

static int on_exit_event(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct inst *in = userdata;
	struct dhcp *d = in->d;
	int status = 0;
	pid_t pid = in->pid;
	if (waitpid(pid, &status, WNOHANG) == 0)
		return 0; /* not yet */
	in->exit_src = sd_event_source_disable_unref(in->exit_src);
	in->pidfd = safe_close(in->pidfd);
	in->pid = 0;
	char how[32];
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exit %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	if (in->stopping) {
		in->stopping = false;
		log_kv(LOG_DEBUG, "Guest DHCP stopped", "bridge", in->bridge, "status", how, NULL);
		if (!in->wanted) {
			inst_drop(d, in);
			return 0;
		}
		if (in->restart) {
			in->restart = false;
			(void)inst_launch(in);
		}
		return 0;
	}
	if (!in->wanted) {
		inst_drop(d, in);
		return 0;
	}
	/* Died on its own: restarted with a backoff, counted. */
	if (loop_now(d) - in->started_usec >= STABLE_AFTER_SEC * USEC_PER_SEC)
		in->failures = 0;
	in->failures++;
	d->restarts++;
	char n[16], p[16];
	snprintf(n, sizeof(n), "%u", in->failures);
	snprintf(p, sizeof(p), "%d", (int)pid);
	log_kv(LOG_WARNING, "Guest DHCP (dnsmasq) exited; restarting", "bridge", in->bridge, "pid",
	       p, "status", how, "failures", n, NULL);
	inst_retry_later(in);
	return 0;
}

static int child_setup(void *userdata)
{
	/* Dies with the agent: a new agent starts its own (infinite leases bridge the gap). */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		return -errno;
	return 0;
}

static int inst_launch(struct inst *in)
{
	struct dhcp *d = in->d;
	if (!d->available || in->pid > 0)
		return 0;
	if (if_nametoindex(in->bridge) == 0) {
		if (!in->bridge_missing)
			log_kv(LOG_WARNING, "Guest DHCP waits for its bridge, which does not exist",
			       "bridge", in->bridge, NULL);
		in->bridge_missing = true;
		in->failures = MIN(in->failures + 1, 6u);
		inst_retry_later(in);
		return -ENODEV;
	}
	in->bridge_missing = false;
	_cleanup_strv_free_ char **argv = NULL;
	int r = dhcp_conf_argv(d->dnsmasq, in->bridge, in->dir, in->want_subnets, &argv);
	if (r < 0)
		return log_error_errno(r, "Failed to build the dnsmasq command of %s: %m",
				       in->bridge);
	struct spawn_opts o = {.child_setup = child_setup};
	pid_t pid;
	int pidfd;
	r = spawn_start(argv, &o, &pid, &pidfd);
	if (r < 0) {
		log_kv(LOG_ERR, "Guest DHCP (dnsmasq) did not start", "bridge", in->bridge, "error",
		       strerror(-r), NULL);
		in->failures++;
		inst_retry_later(in);
		return r;
	}
	in->pid = pid;
	in->pidfd = pidfd;
	in->started_usec = loop_now(d);
	r = sd_event_add_io(d->event, &in->exit_src, pidfd, EPOLLIN, on_exit_event, in);
	if (r < 0) {
		(void)send_signal(in, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		in->pid = 0;
		in->pidfd = safe_close(in->pidfd);
		return log_error_errno(r, "Failed to watch dnsmasq of %s: %m", in->bridge);
	}
	strv_free(in->run_subnets);
	in->run_subnets = strv_copy(in->want_subnets);
	char p[16], n[24];
	snprintf(p, sizeof(p), "%d", (int)pid);
	snprintf(n, sizeof(n), "%zu", in->n_hosts);
	log_kv(LOG_INFO, "Guest DHCP started", "bridge", in->bridge, "pid", p, "hosts", n, NULL);
	return 0;
}

static void inst_stop(struct inst *in, bool restart)
{
	in->restart = restart;
	if (in->pid <= 0 || in->stopping)
		return;
	in->stopping = true;
	(void)send_signal(in, SIGTERM);
}

static bool strv_equal(char *const *a, char *const *b)
{
	size_t n = strv_length(a);
	if (n != strv_length(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!streq(a[i], b[i]))
			return false;
	return true;
}

/* ---- the reconciliation pass ---- */

static int cmp_host_ptr(const void *a, const void *b)
{
	const struct dhcp_host *x = *(const struct dhcp_host *const *)a,
			       *y = *(const struct dhcp_host *const *)b;
	int c = strcmp(x->sid, y->sid);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

static void apply_bridge(struct dhcp *d, struct inst *in)
{
	size_t total = 0;
	for (size_t i = 0; i < d->n_guests; i++)
		total += d->guests[i].n;
	_cleanup_free_ const struct dhcp_host **v = calloc(total + 1, sizeof(*v));
	if (!v) {
		log_oom();
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < d->n_guests; i++)
		for (size_t k = 0; k < d->guests[i].n; k++)
			if (streq(d->guests[i].hosts[k].bridge, in->bridge))
				v[n++] = &d->guests[i].hosts[k];
	qsort(v, n, sizeof(*v), cmp_host_ptr);
	struct dhcp_conf c = {0};
	if (dhcp_conf_render(v, n, &c) < 0) {
		log_oom();
		return;
	}
	if (c.skipped > 0) {
		char k[24];
		snprintf(k, sizeof(k), "%zu", c.skipped);
		log_kv(LOG_WARNING,
		       "Guest NICs left out of the DHCP: their MAC or IP is another NIC's on the "
		       "bridge",
		       "bridge", in->bridge, "nics", k, NULL);
	}
	bool changed = !streq_ptr(in->hosts, c.hosts) || !streq_ptr(in->opts, c.opts);
	if (changed) {
		int r = mkdir_p(in->dir, 0755);
		if (r >= 0)
			r = write_replace(in->dir, "opts", c.opts);
		if (r >= 0)
			r = write_replace(in->dir, "hosts", c.hosts);
		if (r < 0) {
			log_kv(LOG_ERR, "Failed to write the guest DHCP's files", "dir", in->dir,
			       "error", strerror(-r), NULL);
			dhcp_conf_done(&c);
			return;
		}
		free(in->hosts);
		free(in->opts);
		in->hosts = TAKE_PTR(c.hosts);
		in->opts = TAKE_PTR(c.opts);
		in->n_hosts = n - c.skipped;
	}
	bool ranges_changed = !strv_equal(in->want_subnets, c.subnets);
	strv_free(in->want_subnets);
	in->want_subnets = TAKE_PTR(c.subnets);
	dhcp_conf_done(&c);

	if (in->pid <= 0) {
		if (!in->retry_src)
			(void)inst_launch(in);
		return;
	}
	if (in->stopping) {
		in->restart = true; /* starts with the new files once the old one is gone */
		return;
	}
	if (!changed && strv_equal(in->run_subnets, in->want_subnets))
		return;
	d->reloads++;
	if (!ranges_changed && strv_equal(in->run_subnets, in->want_subnets) &&
	    d->version >= DHCP_DNSMASQ_SIGHUP_SAFE) {
		log_kv(LOG_DEBUG, "Guest DHCP reloaded (SIGHUP)", "bridge", in->bridge, NULL);
		(void)send_signal(in, SIGHUP);
		return;
	}
	log_kv(LOG_INFO, "Guest DHCP restarted with new host entries", "bridge", in->bridge, NULL);
	inst_stop(in, true);
}

static int on_defer(sd_event_source *s, void *userdata)
{
	struct dhcp *d = userdata;
	d->defer = sd_event_source_disable_unref(d->defer);
	/* Bridges some NIC needs. */
	for (size_t i = 0; i < d->n_insts; i++)
		d->insts[i]->wanted = false;
	for (size_t i = 0; i < d->n_guests; i++)
		for (size_t k = 0; k < d->guests[i].n; k++) {
			struct inst *in = inst_get(d, d->guests[i].hosts[k].bridge);
			if (!in) {
				log_oom();
				continue;
			}
			in->wanted = true;
		}
	for (size_t i = 0; i < d->n_insts;) {
		struct inst *in = d->insts[i];
		if (in->wanted) {
			apply_bridge(d, in);
			i++;
			continue;
		}
		/* No entries left: the files say so too (a later instance starts from them). */
		if (!isempty(in->hosts) || !isempty(in->opts)) {
			if (write_replace(in->dir, "hosts", "") < 0 ||
			    write_replace(in->dir, "opts", "") < 0)
				log_kv(LOG_WARNING, "Failed to empty the guest DHCP's files", "dir",
				       in->dir, NULL);
			free(in->hosts);
			free(in->opts);
			in->hosts = in->opts = NULL;
			in->n_hosts = 0;
		}
		if (in->pid > 0) {
			log_kv(LOG_INFO, "Guest DHCP stopped: no guest NIC with an address left",
			       "bridge", in->bridge, NULL);
			inst_stop(in, false);
			i++;
			continue;
		}
		inst_drop(d, in);
	}
	return 0;
}

static void schedule(struct dhcp *d)
{
	if (!d->enable || d->defer)
		return;
	if (sd_event_add_defer(d->event, &d->defer, on_defer, d) < 0) {
		log_oom();
		return;
	}
	sd_event_source_set_enabled(d->defer, SD_EVENT_ONESHOT);
}

/* ---- the guest table ---- */

static int cmp_guest(const void *a, const void *b)
{
	return strcmp(((const struct dhcp_guest *)a)->sid, ((const struct dhcp_guest *)b)->sid);
}

static ssize_t guest_index(struct dhcp *d, const char *sid)
{
	for (size_t i = 0; i < d->n_guests; i++)
		if (streq(d->guests[i].sid, sid))
			return (ssize_t)i;
	return -1;
}

void dhcp_guest_remove(struct dhcp *d, const char *sid)
{
	if (!d || !d->enable || !sid)
		return;
	ssize_t i = guest_index(d, sid);
	if (i < 0)
		return;
	free(d->guests[i].sid);
	dhcp_hosts_free(d->guests[i].hosts, d->guests[i].n);
	memmove(&d->guests[i], &d->guests[i + 1], sizeof(*d->guests) * (d->n_guests - i - 1));
	d->n_guests--;
	schedule(d);
}

int dhcp_guest_set(struct dhcp *d, const char *sid, struct dhcp_host *hosts, size_t n)
{
	if (!d || !d->enable) {
		dhcp_hosts_free(hosts, n);
		return 0;
	}
	if (n == 0) {
		dhcp_hosts_free(hosts, n);
		dhcp_guest_remove(d, sid);
		return 0;
	}
	ssize_t i = guest_index(d, sid);
	if (i >= 0) {
		dhcp_hosts_free(d->guests[i].hosts, d->guests[i].n);
		d->guests[i].hosts = hosts;
		d->guests[i].n = n;
		schedule(d);
		return 0;
	}
	struct dhcp_guest *v = realloc(d->guests, sizeof(*v) * (d->n_guests + 1));
	char *s = strdup(sid);
	if (!v || !s) {
		if (v)
			d->guests = v;
		free(s);
		dhcp_hosts_free(hosts, n);
		return log_oom();
	}
	d->guests = v;
	d->guests[d->n_guests++] = (struct dhcp_guest){s, hosts, n};
	qsort(d->guests, d->n_guests, sizeof(*d->guests), cmp_guest);
	schedule(d);
	return 0;
}

void dhcp_guests_replace(struct dhcp *d, struct dhcp_guest *guests, size_t n)
{
	if (!d || !d->enable) {
		dhcp_guests_free(guests, n);
		return;
	}
	dhcp_guests_free(d->guests, d->n_guests);
	/* Guests without a lease are not kept. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (guests[i].n == 0) {
			free(guests[i].sid);
			dhcp_hosts_free(guests[i].hosts, 0);
			continue;
		}
		guests[k++] = guests[i];
	}
	d->guests = guests;
	d->n_guests = k;
	if (k > 0)
		qsort(d->guests, d->n_guests, sizeof(*d->guests), cmp_guest);
	schedule(d);
}

/* ---- readiness, metrics ---- */

/* Readiness: a wanted dnsmasq that does not run. */
static void reasons(void *userdata, json_t *out)
{
	struct dhcp *d = userdata;
	json_t *reasons = out;
	if (!d->enable)
		return;
	for (size_t i = 0; i < d->n_insts; i++) {
		struct inst *in = d->insts[i];
		if (!in->wanted || in->pid > 0 || in->bridge_missing)
			continue;
		if (!d->available)
			json_array_append_new(
			    reasons, json_sprintf("dhcp: cannot serve bridge %s: %s", in->bridge,
						  strempty(d->unavailable_why)));
		else if (!in->stopping)
			json_array_append_new(reasons,
					      json_sprintf("dhcp: dnsmasq for bridge %s is not "
							   "running (restarting, %u failures)",
							   in->bridge, in->failures));
	}
}

static void collect(FILE *f, void *userdata)
{
	struct dhcp *d = userdata;
	unsigned running = 0, down = 0;
	size_t hosts = 0;
	for (size_t i = 0; i < d->n_insts; i++) {
		struct inst *in = d->insts[i];
		if (!in->wanted)
			continue;
		if (in->pid > 0)
			running++;
		else
			down++;
		hosts += in->n_hosts;
	}
	metrics_write_family(f, "hostagent_dhcp_instances", "gauge",
			     "Guest DHCP servers (one dnsmasq per bridge) by state.");
	metrics_write_sample(f, "hostagent_dhcp_instances", "state=\"running\"", running);
	metrics_write_sample(f, "hostagent_dhcp_instances", "state=\"down\"", down);
	metrics_write_family(f, "hostagent_dhcp_hosts", "gauge",
			     "Guest NICs the DHCP servers answer (host entries).");
	metrics_write_sample(f, "hostagent_dhcp_hosts", NULL, (double)hosts);
	metrics_write_family(f, "hostagent_dhcp_restarts_total", "counter",
			     "Guest DHCP servers restarted after they exited on their own.");
	metrics_write_sample(f, "hostagent_dhcp_restarts_total", NULL, (double)d->restarts);
	metrics_write_family(f, "hostagent_dhcp_reloads_total", "counter",
			     "Host entry changes applied to a running DHCP server.");
	metrics_write_sample(f, "hostagent_dhcp_reloads_total", NULL, (double)d->reloads);
}

/* ---- lifecycle ---- */

int dhcp_new(const struct dhcp_config *cfg, struct dhcp **ret)
{
	struct dhcp *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->event = sd_event_ref(cfg->event);
	d->enable = cfg->enable;
	d->metrics = cfg->metrics;
	d->readiness = cfg->readiness;
	d->state_dir = strdup(cfg->state_dir);
	d->dnsmasq = strdup(cfg->dnsmasq ? cfg->dnsmasq : "dnsmasq");
	if (!d->state_dir || !d->dnsmasq) {
		dhcp_free(d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

struct dhcp *dhcp_free(struct dhcp *d)
{
	if (!d)
		return NULL;
	readiness_remove(d->readiness, d);
	for (size_t i = 0; i < d->n_insts; i++) {
		struct inst *in = d->insts[i];
		if (in->pid <= 0)
			continue;
		(void)send_signal(in, SIGTERM);
		struct pollfd p = {.fd = in->pidfd, .events = POLLIN};
		if (in->pidfd < 0 || poll(&p, 1, 1000) <= 0)
			(void)send_signal(in, SIGKILL);
		(void)waitpid(in->pid, NULL, 0);
		in->pid = 0;
	}
	for (size_t i = 0; i < d->n_insts; i++)
		inst_free(d->insts[i]);
	free(d->insts);
	dhcp_guests_free(d->guests, d->n_guests);
	sd_event_source_disable_unref(d->defer);
	sd_event_unref(d->event);
	free(d->state_dir);
	free(d->dnsmasq);
	free(d->unavailable_why);
	free(d);
	return NULL;
}

/* A dnsmasq of an earlier agent (killed before it could stop it) still serves dir: stopped, so
 * that this agent's instance is the only one. Recognized by its pid file and command line. */
static void stop_stale(const char *dir)
{
	_cleanup_free_ char *pidp = NULL, *txt = NULL, *cmdp = NULL, *cmd = NULL, *want = NULL;
	size_t len = 0;
	if (asprintf_safe(&pidp, "%s/pid", dir) < 0 || read_file(pidp, 64, &txt, NULL) < 0)
		return;
	char *end = NULL;
	long pid = strtol(txt, &end, 10);
	if (pid <= 1 || pid > INT32_MAX || (end && *end && *end != '\n'))
		return;
	if (asprintf_safe(&cmdp, "/proc/%ld/cmdline", pid) < 0 ||
	    read_file(cmdp, 64 * 1024, &cmd, &len) < 0 ||
	    asprintf_safe(&want, "--dhcp-hostsfile=%s/hosts", dir) < 0)
		return;
	bool ours = false;
	for (size_t o = 0; o < len; o += strlen(cmd + o) + 1)
		if (streq(cmd + o, want))
			ours = true;
	if (!ours)
		return;
	int fd = spawn_pidfd_open((pid_t)pid);
	log_kv(LOG_INFO, "Stopping the guest DHCP an earlier agent left running", "dir", dir, NULL);
	(void)kill((pid_t)pid, SIGTERM);
	if (fd >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) <= 0)
			(void)kill((pid_t)pid, SIGKILL);
		close(fd);
	}
}

int dhcp_start(struct dhcp *d)
{
	if (!d->enable) {
		log_info("Guest DHCP disabled (dhcp: false)");
		return 0;
	}
	char version_arg[] = "--version";
	char *argv[] = {d->dnsmasq, version_arg, NULL};
	struct spawn_opts o = {.capture = true, .capture_max = 4096, .timeout_ms = 5000};
	struct spawn_result res = {0};
	int r = spawn_run(argv, &o, &res);
	if (r < 0 || res.exit_status != 0) {
		if (asprintf_safe(&d->unavailable_why, "%s does not run (%s)", d->dnsmasq,
				  r < 0 ? strerror(-r) : "exit status non-zero") < 0)
			d->unavailable_why = NULL;
		log_kv(LOG_WARNING, "Guest DHCP unavailable: dnsmasq does not run", "dnsmasq",
		       d->dnsmasq, NULL);
	} else {
		d->available = true;
		d->version = dhcp_dnsmasq_version(res.out);
		char v[16];
		snprintf(v, sizeof(v), "%d.%d", d->version / 1000, d->version % 1000);
		log_kv(LOG_INFO, "Guest DHCP with dnsmasq", "version",
		       d->version > 0 ? v : "unknown", "reload",
		       d->version >= DHCP_DNSMASQ_SIGHUP_SAFE ? "SIGHUP" : "restart", NULL);
	}
	spawn_result_done(&res);
	if (d->metrics && (r = metrics_add_collector(d->metrics, collect, d)) < 0)
		return log_error_errno(r, "Failed to register the DHCP metrics: %m");
	r = readiness_add(d->readiness, reasons, d);
	if (r < 0)
		return r;
	_cleanup_free_ char *base = NULL;
	if (asprintf_safe(&base, "%s/dhcp", d->state_dir) < 0)
		return -ENOMEM;
	DIR *dir = opendir(base);
	struct dirent *de;
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		if (asprintf_safe(&sub, "%s/%s", base, de->d_name) >= 0)
			stop_stale(sub);
	}
	if (dir)
		closedir(dir);
	return 0;
}

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "agent/api.h"
#include "agent/claims.h"
#include "agent/dhcp.h"
#include "agent/diskops.h"
#include "agent/domxml.h"
#include "agent/auth.h"
#include "agent/region.h"
#include "agent/readiness.h"
#include "agent/report.h"
#include "agent/guests.h"
#include "agent/modules.h"
#include "agent/qemu-placement.h"
#include "agent/virt.h"
#include "agent/metrics.h"
#include "agent/tasks.h"
#include "agent/storage.h"
#include "agent/hostnet.h"
#include "agent/imagecache.h"
#include "agent/deploy.h"
#include "common/event-util.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/path.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct agent *a = userdata;
	log_info("Received %s, stopping", strsignal((int)si->ssi_signo));
	agent_stop(a, 0);
	return 0;
}

/* SIGHUP reloads what can change under a running agent (the TLS pair); it never stops it. */
static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct agent *a = userdata;
	log_info("Received SIGHUP, reloading the TLS certificate");
	(void)api_reload(a->api);
	return 0;
}

/* An upgrade from an image whose QEMU ran as root: the disks it made are root:root 0600 and
 * its config drives root 0600, which QEMU's user cannot open on the guest's next start. The
 * disks claimed by stored descriptors (below the disk roots, opened beneath them without
 * symlinks) that are exactly that, a single link and outside the image caches, and each
 * workspace's config drive, are given to QEMU as the agent makes them now. Cached images
 * (0644) and any other file stay as they are. */
static void adopt_disk(const char *path, const char *owner, void *userdata)
{
	struct agent *a = userdata;
	for (char **root = a->cfg.local_image_path; root && *root; root++) {
		_cleanup_free_ char *cache = strjoin(*root, "/image_cache/");
		if (!cache || strneq(path, cache, strlen(cache)))
			return;
	}
	_cleanup_close_ int fd = path_open_beneath(a->cfg.local_image_path, path,
						   O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 ||
	    st.st_gid != 0 || (st.st_mode & 07777) != 0600 || st.st_nlink != 1)
		return;
	int r = fs_give_to_qemu(fd);
	if (r < 0)
		log_warning_errno(r, "Cannot give disk %s of guest %s to QEMU's user: %m", path,
				  owner);
	else
		log_notice(
		    "Disk of a guest made when QEMU ran as root given to QEMU's user path=%s "
		    "sid=%s",
		    path, owner);
}

static void adopt_guest_files(struct agent *a)
{
	if (!fs_qemu_owner(NULL, NULL))
		return;
	claims_foreach(a->claims, adopt_disk, a);
	_cleanup_(closedirp) DIR *dir = opendir(a->cfg.servers_path);
	struct dirent *de;
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_close_ int ws =
		    openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		_cleanup_close_ int iso =
		    ws < 0 ? -1
			   : openat(ws, DEPLOY_ISO_NAME,
				    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st;
		if (iso < 0 || fstat(iso, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 ||
		    st.st_gid != 0 || (st.st_mode & 07777) != 0600)
			continue;
		int r = fs_share_with_qemu(iso, 0640);
		if (r >= 0)
			r = fs_share_with_qemu(ws, 0710);
		if (r < 0)
			log_warning_errno(
			    r, "Cannot give the config drive of guest %s to QEMU's group: %m",
			    de->d_name);
		else
			log_notice("Config drive made when QEMU ran as root shared with QEMU's "
				   "group sid=%s",
				   de->d_name);
	}
}

static int on_drain(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct agent *a = userdata;
	size_t busy = a->tasks ? tasks_running(a->tasks) + tasks_queued(a->tasks) : 0;
	busy += guests_busy(a->guests);		     /* stops waiting for a power-off */
	busy += report_busy(a->report);		     /* offline post to the region */
	busy += region_pending_callbacks(a->region); /* outcomes of finished tasks */
	if (busy == 0 || usec >= a->drain_deadline) {
		if (busy > 0)
			log_warning("Stopping with %zu operations unfinished after %d s", busy,
				    a->cfg.shutdown_timeout);
		sd_event_exit(a->event, a->exit_code);
		return 0;
	}
	(void)event_source_arm(s, usec + 100 * USEC_PER_MSEC);
	return 0;
}

/* Readiness: a KVM host whose /dev/kvm cannot be used. */
static void kvm_reasons(void *userdata, json_t *reasons)
{
	struct agent *a = userdata;
	if (domxml_virt_is_kvm(a->cfg.virt_type) && access("/dev/kvm", R_OK | W_OK) < 0)
		json_array_append_new(reasons, json_string("kvm: /dev/kvm is not usable"));
}

static json_t *not_ready(void *ud)
{
	return agent_not_ready_reasons(ud);
}

int agent_new(struct config *cfg, struct agent **ret)
{
	_cleanup_(agent_freep) struct agent *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	int r = sd_event_new(&a->event);
	if (r < 0)
		return r;
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
		return negative_errno();
	r = sd_event_add_signal(a->event, &a->sigterm, SIGTERM, on_signal, a);
	if (r < 0)
		return r;
	r = sd_event_add_signal(a->event, &a->sigint, SIGINT, on_signal, a);
	if (r < 0)
		return r;
	r = sd_event_add_signal(a->event, &a->sighup, SIGHUP, on_sighup, a);
	if (r < 0)
		return r;
	r = tasks_new(a->event, (unsigned)a->cfg.task_workers, 1024, &a->tasks);
	if (r < 0)
		return r;
	r = claims_new(&a->claims);
	if (r < 0)
		return r;
	r = storages_new(&a->cfg, &a->storages);
	if (r < 0)
		return r;
	_cleanup_free_ char *nerr = NULL;
	r = hostnets_new(a->cfg.networks, &a->hostnets, &nerr);
	if (r < 0)
		return nerr ? log_error_errno(r, "%s", nerr) : r;
	/* QEMU's user (qemu_user): the files the agent makes for a guest are given to it. */
	r = fs_qemu_owner_set(a->cfg.qemu_user);
	if (r < 0)
		return log_error_errno(r, "qemu_user %s: %s (expected a user name or UID:GID)",
				       a->cfg.qemu_user,
				       r == -ESRCH ? "no such user" : strerror(-r));
	uid_t quid;
	gid_t qgid;
	if (fs_qemu_owner(&quid, &qgid)) {
		log_info(
		    "QEMU runs as uid=%u gid=%u: guest disks and config drives are given to it",
		    (unsigned)quid, (unsigned)qgid);
		/* A disk root QEMU cannot reach fails every guest start with EACCES: say so now. */
		for (char **root = a->cfg.local_image_path; root && *root; root++) {
			_cleanup_free_ char *blocker = NULL;
			if (fs_qemu_can_traverse(*root, &blocker) == 0)
				log_warning("QEMU (uid %u) cannot reach disk root %s: %s is not "
					    "searchable by it",
					    (unsigned)quid, *root, blocker);
		}
		_cleanup_free_ char *blocker = NULL;
		if (fs_qemu_can_traverse(a->cfg.servers_path, &blocker) == 0)
			log_warning("QEMU (uid %u) cannot reach the config drives in %s: %s is not "
				    "searchable by it",
				    (unsigned)quid, a->cfg.servers_path, blocker);
	}
	/* A KVM host without /dev/kvm would define guests that can never start. */
	_cleanup_free_ char *verr = NULL;
	r = domxml_virt_check(a->cfg.virt_type, "/dev/kvm", &verr);
	if (r < 0)
		return log_error_errno(r, "%s", verr ? verr : "virt_type: refused");
	if (!domxml_virt_is_kvm(a->cfg.virt_type))
		log_info("Guests run under QEMU's TCG emulator (virt_type=qemu), not KVM");
	r = readiness_new(&a->readiness);
	if (r < 0)
		return r;
	r = readiness_add(a->readiness, kvm_reasons, a);
	if (r < 0)
		return r;
	r = metrics_new(&a->metrics);
	if (r < 0)
		return r;
	metrics_gauge_set(a->metrics, "hostagent_virt_type",
			  "libvirt domain type the agent defines guests with (config virt_type; "
			  "always 1).",
			  domxml_virt_is_kvm(a->cfg.virt_type) ? "type=\"kvm\"" : "type=\"qemu\"",
			  1);
	struct dhcp_config dc = {.event = a->event,
				 .state_dir = a->cfg.state_dir,
				 .dnsmasq = a->cfg.dhcp_dnsmasq,
				 .enable = a->cfg.dhcp,
				 .metrics = a->metrics,
				 .readiness = a->readiness};
	r = dhcp_new(&dc, &a->dhcp);
	if (r < 0)
		return r;
	r = virt_new(a->event, a->cfg.libvirt_uri, &a->virt);
	if (r < 0)
		return r;
	r = agent_modules_new(&a->cfg, a->tasks, a->metrics, a->readiness, &a->modules);
	if (r < 0)
		return r;
	r = region_new(a->event, &a->cfg, &a->region);
	if (r < 0)
		return r;
	struct guests_deps gd = {.event = a->event,
				 .cfg = &a->cfg,
				 .tasks = a->tasks,
				 .virt = a->virt,
				 .claims = a->claims,
				 .dhcp = a->dhcp,
				 .metrics = a->metrics,
				 .hostnets = a->hostnets,
				 .region = a->region,
				 .readiness = a->readiness};
	r = guests_new(&gd, &a->guests);
	if (r < 0)
		return r;
	r = diskops_new(&a->cfg, a->tasks, a->virt, a->storages, a->claims, &a->diskops);
	if (r < 0)
		return r;
	r = qemu_placement_new(&a->cfg, a->tasks, a->guests, a->metrics, a->readiness,
			       &a->qemu_placement);
	if (r < 0)
		return r;
	/* SUBSYSTEMS-NEW: create further subsystems here (metrics, region, auth, api). */
	/* Before guests_start: the first table build reports every guest. */
	struct report_deps rd = {.event = a->event,
				 .cfg = &a->cfg,
				 .virt = a->virt,
				 .region = a->region,
				 .storages = a->storages,
				 .hostnets = a->hostnets,
				 .metrics = a->metrics,
				 .guests = a->guests,
				 .tasks = a->tasks,
				 .modules = a->modules,
				 .readiness = a->readiness};
	r = report_new(&rd, &a->report);
	if (r < 0)
		return r;
	r = imagecache_new(a->event, &a->cfg, a->storages, a->region, &a->imagecache);
	if (r < 0)
		return r;
	r = auth_new(&a->cfg, a->region, &a->auth);
	if (r < 0)
		return r;
	a->api_deps = (struct api_deps){.event = a->event,
					.cfg = &a->cfg,
					.tasks = a->tasks,
					.metrics = a->metrics,
					.virt = a->virt,
					.region = a->region,
					.report = a->report,
					.guests = a->guests,
					.auth = a->auth,
					.diskops = a->diskops,
					.imagecache = a->imagecache,
					.modules = a->modules,
					.not_ready = not_ready,
					.not_ready_ud = a};
	r = api_new(&a->api_deps, &a->api);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(a);
	return 0;
}

struct agent *agent_free(struct agent *a)
{
	if (!a)
		return NULL;
	/* SUBSYSTEMS-FREE: free subsystems here, in reverse order of creation. */
	a->api = api_free(a->api);
	a->auth = auth_free(a->auth);
	/* Before the region: a fetch may hold a region request. */
	a->imagecache = imagecache_free(a->imagecache);
	/* Before the region (its HTTP handles) and the workers (their completions). */
	a->report = report_free(a->report);
	/* The calls the api left behind may still finish (in tasks_free below): no host id now. */
	a->api_deps.report = NULL;
	/* Workers finish before the guest table and the region: their completions use both (a
	 * started guest's metadata is pushed to the region). */
	a->tasks = tasks_free(a->tasks);
	a->qemu_placement = qemu_placement_free(a->qemu_placement);
	a->diskops = diskops_free(a->diskops);
	/* Stops still waiting are answered here; their task outcomes go to the region, which
	 * drops what it has not sent when it is freed next. */
	a->guests = guests_free(a->guests);
	a->region = region_free(a->region);
	a->api_deps.region = NULL;
	a->dhcp = dhcp_free(a->dhcp);
	a->modules = agent_modules_free(a->modules);
	a->virt = virt_free(a->virt);
	a->metrics = metrics_free(a->metrics);
	a->storages = storages_free(a->storages);
	a->claims = claims_free(a->claims);
	a->hostnets = hostnets_free(a->hostnets);
	sd_event_source_unref(a->drain_timer);
	sd_event_source_unref(a->sigterm);
	sd_event_source_unref(a->sigint);
	sd_event_source_unref(a->sighup);
	sd_event_unref(a->event);
	a->readiness = readiness_free(a->readiness);
	config_done(&a->cfg);
	free(a);
	return NULL;
}

/* The host networks completed from the host's links (bridge MAC, address) and the access
 * address the region gets; a missing bridge or an address not on it stops the agent. */
static int agent_networks_start(struct agent *a)
{
	struct hostnet_links links = {0};
	int r = hostnet_links_read(&links);
	if (r < 0)
		return log_error_errno(r, "Failed to read the host's network links: %m");
	_cleanup_free_ char *err = NULL;
	r = hostnets_complete(a->hostnets, &links, a->cfg.listen_address,
			      !config_standalone(&a->cfg), &err);
	hostnet_links_done(&links);
	if (r < 0)
		return err ? log_error_errno(r, "%s", err)
			   : log_error_errno(r, "Failed to complete the host networks: %m");
	for (size_t i = 0; i < hostnets_count(a->hostnets); i++) {
		const struct hostnet *hn = hostnets_get(a->hostnets, i);
		_cleanup_free_ char *ipm = NULL;
		if (asprintf(&ipm, "%s/%d", hn->ip, hn->masklen) < 0)
			return -ENOMEM;
		log_kv(LOG_INFO, "Host network", "interface", hn->ifname, "bridge", hn->bridge,
		       "ip", ipm, "mac", hn->mac, NULL);
	}
	const char *ip = hostnets_access_ip(a->hostnets);
	if (ip) {
		r = storages_set_names(a->storages, ip);
		if (r < 0)
			return r;
	}
	return 0;
}

int agent_start(struct agent *a)
{
	int r = agent_networks_start(a);
	if (r < 0)
		return r;
	r = agent_modules_start(a->modules);
	if (r < 0)
		return r;
	r = qemu_placement_start(a->qemu_placement);
	if (r < 0)
		return r;
	r = dhcp_start(a->dhcp); /* before the guest listing that fills it */
	if (r < 0)
		return r;
	r = guests_start(a->guests);
	if (r < 0)
		return r;
	adopt_guest_files(a); /* after guests_start: the claims are loaded */
	/* SUBSYSTEMS-START: start subsystems here, in order; return on failure. */
	r = region_start(a->region); /* keystone unreachable is not fatal: retried */
	if (r < 0)
		return r;
	r = report_start(a->report); /* region unreachable is not fatal: retried */
	if (r < 0)
		return r;
	r = auth_start(a->auth);
	if (r < 0)
		return r;
	r = api_start(a->api);
	if (r < 0)
		return r;
	return r;
}

void agent_stop(struct agent *a, int code)
{
	if (a->stopping)
		return;
	a->stopping = true;
	a->exit_code = code;
	if (a->tasks)
		tasks_shutdown(a->tasks);
	guests_stop(a->guests);
	/* SUBSYSTEMS-STOP: tell subsystems to stop taking work here. */
	api_stop_accepting(a->api);
	report_stop(a->report); /* offline to the region, within the drain */
	/* Drain: in-flight operations get shutdown_timeout seconds; guests keep running. */
	uint64_t now;
	sd_event_now(a->event, CLOCK_MONOTONIC, &now);
	a->drain_deadline = now + (uint64_t)a->cfg.shutdown_timeout * 1000000ULL;
	if (sd_event_add_time_relative(a->event, &a->drain_timer, CLOCK_MONOTONIC, 0, 0, on_drain,
				       a) < 0)
		sd_event_exit(a->event, code);
}

json_t *agent_not_ready_reasons(struct agent *a)
{
	return readiness_reasons(a->readiness);
}

int agent_run(struct agent *a)
{
	int r = sd_event_loop(a->event);
	return r < 0 ? r : a->exit_code;
}

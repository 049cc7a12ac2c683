/* The host's systemd over sd-bus: moving a QEMU into a transient scope in machine.slice. The
 * pod mounts the host's /run/dbus/system_bus_socket, and the agent runs with hostPID, so the
 * pids it passes are the host's. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "placement/placement-internal.h"
#include "common/log.h"
#include "common/macros.h"

#define SD_DEST	 "org.freedesktop.systemd1"
#define SD_PATH	 "/org/freedesktop/systemd1"
#define SD_IFACE "org.freedesktop.systemd1.Manager"

int placement_systemd_open(const char *address, unsigned timeout_ms, sd_bus **ret)
{
	_cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	char *version = NULL;
	int r;

	if (address) {
		r = sd_bus_new(&bus);
		if (r < 0)
			return r;
		r = sd_bus_set_address(bus, address);
		if (r >= 0)
			r = sd_bus_set_bus_client(bus, 1);
		if (r >= 0)
			r = sd_bus_start(bus);
	} else
		r = sd_bus_open_system(&bus);
	if (r < 0)
		return r;
	/* A hung bus must not stall a VM start for sd-bus' default 25 s. */
	r = sd_bus_set_method_call_timeout(bus, (uint64_t)timeout_ms * 1000u);
	if (r < 0)
		return r;

	r = sd_bus_get_property_string(bus, SD_DEST, SD_PATH, SD_IFACE, "Version", &error,
				       &version);
	if (r < 0) {
		log_debug("placement: systemd does not answer on the bus: %s",
			  strempty(error.message));
		sd_bus_error_free(&error);
		return -ENOTCONN;
	}
	log_debug("placement: host systemd version=%s", version);
	free(version);
	*ret = TAKE_PTR(bus);
	return 0;
}

struct job_wait {
	const char *job;
	bool done;
	int result;
};

static int job_removed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct job_wait *w = userdata;
	const char *path, *unit, *result;
	uint32_t id;
	int r;

	r = sd_bus_message_read(m, "uoss", &id, &path, &unit, &result);
	if (r < 0 || !w->job || !streq(path, w->job))
		return 0;
	w->done = true;
	w->result = streq(result, "done") ? 0 : -EIO;
	log_debug("placement: job=%s unit=%s result=%s", path, unit, result);
	return 0;
}

static int attach(sd_bus *bus, const char *unit, pid_t pid)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r;

	r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_IFACE, "AttachProcessesToUnit", &error,
			       &reply, "ssau", unit, "", 1, (uint32_t)pid);
	if (r < 0) {
		log_debug("placement: AttachProcessesToUnit unit=%s pid=%d: %s", unit, (int)pid,
			  strempty(error.message));
		r = sd_bus_error_get_errno(&error) ?: r;
		sd_bus_error_free(&error);
		return -abs(r);
	}
	return 0;
}

int placement_systemd_move(sd_bus *bus, const char *unit, const char *slice, pid_t pid,
			   unsigned timeout_ms)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	_cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	struct job_wait w = {0};
	_cleanup_free_ char *job = NULL;
	const char *path;
	uint64_t deadline;
	int r;

	/* Match before the call: the job may finish before the reply is read. */
	r = sd_bus_match_signal(bus, &slot, SD_DEST, SD_PATH, SD_IFACE, "JobRemoved", job_removed,
				&w);
	if (r < 0)
		return r;
	/* Harmless when already subscribed; older systemd sends job signals only to
	 * subscribers. */
	(void)sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_IFACE, "Subscribe", NULL, NULL, "");

	r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_IFACE,
					   "StartTransientUnit");
	if (r < 0)
		return r;
	r = sd_bus_message_append(m, "ss", unit, "fail");
	if (r < 0)
		return r;
	/* Delegate=yes: systemd refuses AttachProcessesToUnit on a non-delegated unit, and a
	 * second QEMU process of the same VM (or a re-placement) is attached to this scope. */
	r = sd_bus_message_append(m, "a(sv)", 5, "Slice", "s", slice, "Description", "s",
				  "QEMU placed by hostagent", "CollectMode", "s",
				  "inactive-or-failed", "Delegate", "b", 1, "PIDs", "au", 1,
				  (uint32_t)pid);
	if (r < 0)
		return r;
	r = sd_bus_message_append(m, "a(sa(sv))", 0);
	if (r < 0)
		return r;

	r = sd_bus_call(bus, m, (uint64_t)timeout_ms * 1000u, &error, &reply);
	if (r < 0) {
		bool exists = sd_bus_error_has_name(&error, "org.freedesktop.systemd1.UnitExists");

		log_debug("placement: StartTransientUnit unit=%s pid=%d: %s", unit, (int)pid,
			  strempty(error.message));
		r = sd_bus_error_get_errno(&error) ?: r;
		sd_bus_error_free(&error);
		if (exists)
			return attach(bus, unit, pid);
		return -abs(r);
	}
	r = sd_bus_message_read(reply, "o", &path);
	if (r < 0)
		return r;
	job = strdup(path);
	if (!job)
		return -ENOMEM;
	w.job = job;

	deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000u;
	while (!w.done) {
		uint64_t now = now_usec(CLOCK_MONOTONIC);

		r = sd_bus_process(bus, NULL);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		if (now >= deadline)
			return -ETIMEDOUT;
		r = sd_bus_wait(bus, deadline - now);
		if (r < 0)
			return r;
	}
	return w.result;
}

int placement_systemd_unit_name(const char *vm_name, char **ret)
{
	static const char hex[] = "0123456789abcdef";
	const char *prefix = "hostagent-qemu-";
	size_t n = strlen(vm_name);
	char *s, *t;

	if (n == 0 || n > 56) /* unit names are at most 255 bytes, escaping takes up to 4 */
		return -EINVAL;
	s = malloc(strlen(prefix) + 4 * n + sizeof(".scope"));
	if (!s)
		return -ENOMEM;
	t = stpcpy(s, prefix);
	for (const char *c = vm_name; *c; c++) {
		unsigned char u = (unsigned char)*c;

		if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
		    u == '_' || u == ':' || (u == '.' && c != vm_name)) {
			*t++ = (char)u;
		} else {
			*t++ = '\\';
			*t++ = 'x';
			*t++ = hex[u >> 4];
			*t++ = hex[u & 15];
		}
	}
	strcpy(t, ".scope");
	*ret = s;
	return 0;
}

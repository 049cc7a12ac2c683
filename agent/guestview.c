/* The guest view: a sorted array of entries, looked up by binary search. Loop thread only. */
#include <assert.h>
#include <time.h>

#include "agent/guestview.h"
#include "common/macros.h"

struct guestview {
	struct guest_info *list; /* sorted by sid */
	size_t n, alloc;
	bool valid;
	uint64_t seq, removed_seq;
};

void guest_info_clear(struct guest_info *x)
{
	free(x->sid);
	free(x->name);
	free(x->uuid);
	*x = (struct guest_info){};
}

void guest_info_array_free(struct guest_info *l, size_t n)
{
	for (size_t i = 0; l && i < n; i++)
		guest_info_clear(&l[i]);
	free(l);
}

const char *guest_state_status(int state, const char **ret_power)
{
	const char *power = "off", *status = "unknown";
	switch (state) {
	case GUEST_STATE_RUNNING:
	case GUEST_STATE_BLOCKED:
		status = "running";
		power = "on";
		break;
	case GUEST_STATE_PAUSED:
	case GUEST_STATE_PMSUSPENDED:
		status = "suspend";
		power = "on";
		break;
	case GUEST_STATE_SHUTDOWN:
		status = "stopping";
		power = "on";
		break;
	case GUEST_STATE_SHUTOFF:
		status = "ready";
		break;
	case GUEST_STATE_CRASHED:
		status = "crashed";
		break;
	default:
		break;
	}
	if (ret_power)
		*ret_power = power;
	return status;
}

const char *guest_status_cloudpods(const char *status, const char **ret_reason)
{
	const char *reason = NULL, *out = "unknown";
	if (streq_ptr(status, "running") || streq_ptr(status, "ready") ||
	    streq_ptr(status, "suspend"))
		out = status;
	else if (streq_ptr(status, "stopping"))
		out = "running"; /* QEMU still runs until the guest has shut down */
	else if (streq_ptr(status, "crashed")) {
		out = "ready";
		reason = "crashed";
	}
	if (ret_reason)
		*ret_reason = reason;
	return out;
}

int guestview_new(struct guestview **ret)
{
	struct guestview *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*ret = v;
	return 0;
}

struct guestview *guestview_free(struct guestview *v)
{
	if (!v)
		return NULL;
	guest_info_array_free(v->list, v->n);
	free(v);
	return NULL;
}

bool guestview_valid(const struct guestview *v)
{
	return v && v->valid;
}

void guestview_invalidate(struct guestview *v)
{
	v->valid = false;
	v->seq++;
}

uint64_t guestview_seq(const struct guestview *v)
{
	return v->seq;
}

uint64_t guestview_removed_seq(const struct guestview *v)
{
	return v->removed_seq;
}

/* Index of sid, or of where it would go (*ret_found false). */
static size_t find(const struct guestview *v, const char *sid, bool *ret_found)
{
	static_assert(offsetof(struct guest_info, sid) == 0, "sorted by the first member");
	return keyed_find(v->list, v->n, sizeof(*v->list), sid, ret_found);
}

const struct guest_info *guestview_get(const struct guestview *v, const char *sid)
{
	bool found;
	size_t i = find(v, sid, &found);
	return found ? &v->list[i] : NULL;
}

size_t guestview_size(const struct guestview *v)
{
	return v->n;
}

const struct guest_info *guestview_at(const struct guestview *v, size_t i)
{
	return i < v->n ? &v->list[i] : NULL;
}

/* The entry of sid, added (state NO_DOMAIN) when missing; NULL on OOM. */
static struct guest_info *ensure(struct guestview *v, const char *sid)
{
	bool found;
	size_t i = find(v, sid, &found);
	if (found)
		return &v->list[i];
	struct guest_info *x = keyed_insert(&v->list, &v->n, &v->alloc, sizeof(*v->list), i, sid);
	if (x)
		x->state = GUEST_STATE_NO_DOMAIN;
	return x;
}

int guestview_set_state(struct guestview *v, const char *sid, int state, int reason, int qemu_pid,
			bool *ret_changed)
{
	bool is_new = !guestview_get(v, sid);
	struct guest_info *x = ensure(v, sid);
	if (!x)
		return -ENOMEM;
	const char *before = is_new ? NULL : guest_state_status(x->state, NULL);
	bool changed = is_new || x->state != state || x->reason != reason ||
		       (qemu_pid >= 0 && x->qemu_pid != qemu_pid);
	if (changed) {
		x->state = state;
		x->reason = reason;
		if (qemu_pid >= 0)
			x->qemu_pid = qemu_pid;
		x->changed_usec = now_usec(CLOCK_REALTIME);
		x->seq = ++v->seq;
	}
	if (ret_changed)
		*ret_changed = !streq_ptr(before, guest_state_status(state, NULL));
	return 0;
}

static int replace_str(char **p, const char *s)
{
	if (!s || streq_ptr(*p, s))
		return 0;
	char *d = strdup(s);
	if (!d)
		return -ENOMEM;
	free(*p);
	*p = d;
	return 1;
}

int guestview_set_desc(struct guestview *v, const char *sid, const char *name, const char *uuid,
		       int managed)
{
	struct guest_info *x = ensure(v, sid);
	if (!x)
		return -ENOMEM;
	int a = replace_str(&x->name, name), b = replace_str(&x->uuid, uuid);
	if (a < 0 || b < 0)
		return -ENOMEM;
	bool changed = a || b;
	if (managed >= 0 && x->managed != (managed > 0)) {
		x->managed = managed > 0;
		changed = true;
	}
	if (changed)
		x->seq = ++v->seq;
	return 0;
}

void guestview_set_runtime(struct guestview *v, const char *sid, int vnc_port, int block_jobs)
{
	bool found;
	size_t i = find(v, sid, &found);
	if (!found)
		return;
	if (vnc_port >= 0)
		v->list[i].vnc_port = vnc_port;
	if (block_jobs >= 0)
		v->list[i].block_jobs = block_jobs;
}

void guestview_set_transient(struct guestview *v, const char *sid, bool transient)
{
	bool found;
	size_t i = find(v, sid, &found);
	if (found)
		v->list[i].transient = transient;
}

bool guestview_remove(struct guestview *v, const char *sid)
{
	bool found;
	size_t i = find(v, sid, &found);
	if (!found)
		return false;
	guest_info_clear(&v->list[i]);
	memmove(&v->list[i], &v->list[i + 1], sizeof(*v->list) * (v->n - i - 1));
	v->n--;
	v->removed_seq = ++v->seq;
	return true;
}

static int cmp_sid(const void *a, const void *b)
{
	return strcmp(((const struct guest_info *)a)->sid, ((const struct guest_info *)b)->sid);
}

int guestview_replace(struct guestview *v, struct guest_info *l, size_t n)
{
	if (n > 0)
		qsort(l, n, sizeof(*l), cmp_sid);
	guest_info_array_free(v->list, v->n);
	v->list = l;
	v->n = v->alloc = n;
	v->seq++;
	v->removed_seq = v->seq;
	uint64_t now = now_usec(CLOCK_REALTIME);
	for (size_t i = 0; i < n; i++) {
		v->list[i].seq = v->seq;
		if (!v->list[i].changed_usec)
			v->list[i].changed_usec = now;
	}
	v->valid = true;
	return 0;
}

int guestview_merge(struct guestview *v, struct guest_info *l, size_t n, uint64_t seq)
{
	if (v->removed_seq > seq) {
		guest_info_array_free(l, n);
		return -ESTALE;
	}
	if (n > 0)
		qsort(l, n, sizeof(*l), cmp_sid);
	size_t listed = n;
	for (size_t i = 0; i < v->n; i++) {
		const struct guest_info *x = &v->list[i];
		if (x->seq <= seq)
			continue;
		struct guest_info key = {.sid = x->sid};
		struct guest_info *e =
		    listed ? bsearch(&key, l, listed, sizeof(*l), cmp_sid) : NULL;
		if (e) {
			/* libvirt was listed before this change reached the view. */
			bool off = x->state == GUEST_STATE_SHUTOFF ||
				   x->state == GUEST_STATE_CRASHED ||
				   x->state == GUEST_STATE_NO_DOMAIN;
			e->state = x->state;
			e->reason = x->reason;
			/* Not every event carries the pid: the listing's stays unless the guest
			 * stopped, or started, since. */
			if (off)
				e->qemu_pid = 0;
			else if (e->qemu_pid <= 0)
				e->qemu_pid = x->qemu_pid;
			e->changed_usec = x->changed_usec;
			continue;
		}
		/* Appeared after the listing (defined or created meanwhile). */
		struct guest_info *m = realloc(l, sizeof(*l) * (n + 1));
		if (!m) {
			guest_info_array_free(l, n);
			return -ENOMEM;
		}
		l = m;
		l[n] = *x;
		l[n].sid = strdup(x->sid);
		l[n].name = x->name ? strdup(x->name) : NULL;
		l[n].uuid = x->uuid ? strdup(x->uuid) : NULL;
		if (!l[n].sid || (x->name && !l[n].name) || (x->uuid && !l[n].uuid)) {
			guest_info_clear(&l[n]);
			guest_info_array_free(l, n);
			return -ENOMEM;
		}
		n++;
	}
	return guestview_replace(v, l, n);
}

int guestview_put(struct guestview *v, struct guest_info *x)
{
	struct guest_info *e = ensure(v, x->sid);
	if (!e)
		return -ENOMEM;
	guest_info_clear(e);
	*e = *x;
	*x = (struct guest_info){};
	e->changed_usec = now_usec(CLOCK_REALTIME);
	e->seq = ++v->seq;
	return 0;
}

bool guest_info_differs(const struct guest_info *a, const struct guest_info *b, char *buf,
			size_t size)
{
	if (b->state == GUEST_STATE_PAUSED && b->reason == GUEST_REASON_PAUSED_STARTING_UP)
		return false;
	if (a->state != b->state) {
		snprintf(buf, size, "state: %s -> %s",
			 a->state == GUEST_STATE_NO_DOMAIN ? "no domain"
							   : guest_state_status(a->state, NULL),
			 b->state == GUEST_STATE_NO_DOMAIN ? "no domain"
							   : guest_state_status(b->state, NULL));
		if (streq(guest_state_status(a->state, NULL), guest_state_status(b->state, NULL)))
			snprintf(buf, size, "state: %d -> %d", a->state, b->state);
		return true;
	}
	if (a->qemu_pid != b->qemu_pid) {
		snprintf(buf, size, "qemu_pid: %d -> %d", a->qemu_pid, b->qemu_pid);
		return true;
	}
	if (a->managed != b->managed) {
		snprintf(buf, size, "managed: %s -> %s", a->managed ? "yes" : "no",
			 b->managed ? "yes" : "no");
		return true;
	}
	return false;
}

json_t *guestview_status_json(const struct guest_info *x)
{
	const char *power, *reason;
	const char *status = guest_state_status(x->state, &power);
	/* The region maps anything but its own states to unknown (SetStatusFromHost). */
	json_t *body = json_pack("{s:s,s:s,s:i}", "status", guest_status_cloudpods(status, &reason),
				 "power_states", power, "block_jobs_count", x->block_jobs);
	if (!body)
		return NULL;
	if (reason)
		json_object_set_new(body, "reason", json_string(reason));
	if (streq(power, "on") && x->qemu_pid > 0)
		json_object_set_new(body, "qemu_pid", json_integer(x->qemu_pid));
	return body;
}

json_t *guestview_list_entry_json(const struct guest_info *x)
{
	if (x->state == GUEST_STATE_NO_DOMAIN)
		return json_pack("{s:s,s:s,s:s,s:b,s:s}", "id", x->sid, "status", "unknown",
				 "power_states", "off", "managed", 1, "details",
				 "workspace without a libvirt domain");
	const char *power, *status = guest_state_status(x->state, &power);
	json_t *e = json_pack("{s:s,s:s,s:s,s:b}", "id", x->sid, "status", status, "power_states",
			      power, "managed", x->managed);
	if (!e)
		return NULL;
	if (x->managed && x->name) {
		json_object_set_new(e, "name", json_string(x->name));
		json_object_set_new(e, "uuid", json_string(x->uuid ? x->uuid : ""));
	} else
		json_object_set_new(e, "workspace", json_string("missing or unreadable"));
	if (streq(power, "on") && x->qemu_pid > 0)
		json_object_set_new(e, "qemu_pid", json_integer(x->qemu_pid));
	return e;
}

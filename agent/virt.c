/* libvirt boundary. Two threads of our own: libvirt's default event loop (keepalives, close
 * callbacks, domain events) and a connector that (re)opens the connection with backoff.
 * Everything that must reach the agent is posted to the hand-off (agent/handoff.h) that the agent's
 * loop drains. */
#include <pthread.h>
#include <time.h>

#include <fcntl.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <unistd.h>

#include "agent/domxml.h"
#include "agent/handoff.h"
#include "agent/virt.h"
#include "common/log.h"
#include "common/macros.h"

/* The connector: reconnect after 250 ms, doubling to 5 s; probe a quiet connection every 2 s. */
#define RECONNECT_MIN_USEC (250 * USEC_PER_MSEC)
#define RECONNECT_MAX_USEC (5 * USEC_PER_SEC)
#define PROBE_USEC	   (2 * USEC_PER_SEC)

struct virt_msg {
	struct handoff_item item;
	bool is_conn;
	bool is_agent; /* an agent lifecycle event: connected tells the channel state */
	bool connected;
	char *name;
	int event, detail;
};

struct virt {
	char *uri;
	struct handoff *inbox; /* from libvirt's threads to the loop */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	virConnectPtr conn;
	int lifecycle_cb, agent_cb;
	bool want_reconnect;
	bool quit;
	bool started;
	unsigned reconnects;
	unsigned connects;
	pthread_t connector, eventloop;
	virt_event_fn on_event;
	virt_conn_fn on_conn;
	virt_agent_fn on_agent;
	void *userdata;
};

static pthread_once_t event_impl_once = PTHREAD_ONCE_INIT;
static int event_impl_result;

static void register_event_impl(void)
{
	event_impl_result = virEventRegisterDefaultImpl();
}

/* libvirt reports errors through this; lower layers log at debug only, callers decide. */
static void error_func(void *userdata, virErrorPtr err)
{
	if (err && err->message)
		log_debug("libvirt: %s (code=%d domain=%d)", err->message, err->code, err->domain);
}

static void push(struct virt *v, struct virt_msg *m)
{
	handoff_post(v->inbox, &m->item);
}

static void push_conn(struct virt *v, bool connected)
{
	struct virt_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->is_conn = true;
	m->connected = connected;
	push(v, m);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct virt *v = opaque;
	struct virt_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return 0;
	m->name = strdup(virDomainGetName(dom));
	m->event = event;
	m->detail = detail;
	push(v, m);
	return 0;
}

static void on_agent_lifecycle(virConnectPtr conn, virDomainPtr dom, int state, int reason,
			       void *opaque)
{
	struct virt *v = opaque;
	struct virt_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->is_agent = true;
	m->connected = state == VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED;
	m->name = strdup(virDomainGetName(dom));
	push(v, m);
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	struct virt *v = opaque;
	log_debug("libvirt connection closed, reason=%d", reason);
	pthread_mutex_lock(&v->lock);
	v->want_reconnect = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

static void *eventloop_thread(void *arg)
{
	(void)pthread_setname_np(pthread_self(), "virt-events");
	struct virt *v = arg;
	for (;;) {
		pthread_mutex_lock(&v->lock);
		bool quit = v->quit;
		pthread_mutex_unlock(&v->lock);
		if (quit)
			break;
		if (virEventRunDefaultImpl() < 0)
			log_debug("virEventRunDefaultImpl failed: %s", virGetLastErrorMessage());
	}
	return NULL;
}

/* Deregisters the event callbacks cb and acb (those >= 0) and, when registered, the close
 * callback of connection c, and closes it. */
static void conn_release(virConnectPtr c, int cb, int acb, bool close_cb)
{
	if (cb >= 0)
		virConnectDomainEventDeregisterAny(c, cb);
	if (acb >= 0)
		virConnectDomainEventDeregisterAny(c, acb);
	if (close_cb)
		virConnectUnregisterCloseCallback(c, on_close);
	virConnectClose(c);
}

/* Takes the connection out under the lock and releases it without: libvirt calls the close
 * callback (which takes v->lock) while holding its own lock, which unregistering needs too. */
static void drop_conn_unlocking(struct virt *v)
{
	virConnectPtr c = v->conn;
	int cb = v->lifecycle_cb, acb = v->agent_cb;
	v->conn = NULL;
	v->lifecycle_cb = v->agent_cb = -1;
	if (!c)
		return;
	pthread_mutex_unlock(&v->lock);
	conn_release(c, cb, acb, true);
	pthread_mutex_lock(&v->lock);
}

static void *connector_thread(void *arg)
{
	(void)pthread_setname_np(pthread_self(), "virt-connect");
	struct virt *v = arg;
	unsigned failures = 0; /* connection attempts failed in a row */
	pthread_mutex_lock(&v->lock);
	while (!v->quit) {
		if (v->conn && !v->want_reconnect) {
			/* Wait for a close callback or a report of a lost connection; probe now and
			 * then, because not every transport reports its death. */
			struct timespec ts = timespec_after(CLOCK_MONOTONIC, PROBE_USEC);
			pthread_cond_timedwait(&v->cond, &v->lock, &ts);
			if (v->quit)
				break;
			if (v->conn && !v->want_reconnect) {
				virConnectPtr c = v->conn;
				virConnectRef(c);
				pthread_mutex_unlock(&v->lock);
				int alive = virConnectIsAlive(c);
				virConnectClose(c);
				pthread_mutex_lock(&v->lock);
				if (alive != 1)
					v->want_reconnect = true;
			}
			continue;
		}
		if (v->conn) {
			drop_conn_unlocking(v);
			pthread_mutex_unlock(&v->lock);
			push_conn(v, false);
			pthread_mutex_lock(&v->lock);
		}
		v->want_reconnect = false;
		pthread_mutex_unlock(&v->lock);

		virConnectPtr c = virConnectOpen(v->uri);
		int cb = -1, acb = -1;
		if (c) {
			virConnectSetKeepAlive(c, 5, 3);
			cb = virConnectDomainEventRegisterAny(
			    c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
			    VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), v, NULL);
			/* Agent channel events: optional (the view never depends on them). */
			if (cb >= 0)
				acb = virConnectDomainEventRegisterAny(
				    c, NULL, VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
				    VIR_DOMAIN_EVENT_CALLBACK(on_agent_lifecycle), v, NULL);
			if (cb < 0 || virConnectRegisterCloseCallback(c, on_close, v, NULL) < 0) {
				conn_release(c, cb, acb, false);
				c = NULL;
			}
		}
		pthread_mutex_lock(&v->lock);
		if (c) {
			if (v->quit) {
				pthread_mutex_unlock(&v->lock);
				conn_release(c, cb, acb, true);
				pthread_mutex_lock(&v->lock);
				break;
			}
			v->conn = c;
			v->lifecycle_cb = cb;
			v->agent_cb = acb;
			if (v->connects++ > 0)
				v->reconnects++;
			failures = 0;
			pthread_mutex_unlock(&v->lock);
			push_conn(v, true);
			pthread_mutex_lock(&v->lock);
			continue;
		}
		log_debug("Cannot connect to %s: %s", v->uri, virGetLastErrorMessage());
		struct timespec ts =
		    timespec_after(CLOCK_MONOTONIC, backoff_usec(++failures, RECONNECT_MIN_USEC,
								 RECONNECT_MAX_USEC));
		pthread_cond_timedwait(&v->cond, &v->lock, &ts);
	}
	drop_conn_unlocking(v);
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

static void msg_free(struct virt_msg *m)
{
	free(m->name);
	free(m);
}

static void discard_msg(struct handoff_item *item, void *userdata)
{
	msg_free(container_of(item, struct virt_msg, item));
}

static void deliver_msg(struct handoff_item *item, void *userdata)
{
	struct virt *v = userdata;
	struct virt_msg *m = container_of(item, struct virt_msg, item);
	if (m->is_conn) {
		if (m->connected)
			log_info("Connected to libvirt at %s", v->uri);
		else
			log_warning("Lost the connection to libvirt at %s, reconnecting", v->uri);
		if (v->on_conn)
			v->on_conn(m->connected, v->userdata);
	} else if (m->is_agent) {
		if (v->on_agent && m->name)
			v->on_agent(m->name, m->connected, v->userdata);
	} else if (v->on_event && m->name)
		v->on_event(m->name, m->event, m->detail, v->userdata);
	msg_free(m);
}

int virt_new(sd_event *event, const char *uri, struct virt **ret)
{
	pthread_once(&event_impl_once, register_event_impl);
	if (event_impl_result < 0)
		return -EIO;
	virSetErrorFunc(NULL, error_func);
	struct virt *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->lifecycle_cb = v->agent_cb = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca,
				  CLOCK_MONOTONIC); /* waits: a clock step does not stretch them */
	pthread_cond_init(&v->cond, &ca);
	pthread_condattr_destroy(&ca);
	v->uri = strdup(uri);
	int r = -ENOMEM;
	if (!v->uri)
		goto fail;
	r = handoff_new(event, deliver_msg, v, &v->inbox);
	if (r < 0)
		goto fail;
	*ret = v;
	return 0;
fail:
	virt_free(v);
	return r;
}

void virt_set_agent_handler(struct virt *v, virt_agent_fn fn)
{
	v->on_agent = fn;
}

static void wake_timeout(int timer, void *opaque)
{
	virEventRemoveTimeout(timer);
}

int virt_start(struct virt *v, virt_event_fn on_event, virt_conn_fn on_conn, void *userdata)
{
	v->on_event = on_event;
	v->on_conn = on_conn;
	v->userdata = userdata;
	int r = -pthread_create(&v->eventloop, NULL, eventloop_thread, v);
	if (r < 0)
		return r;
	r = -pthread_create(&v->connector, NULL, connector_thread, v);
	if (r < 0) {
		pthread_mutex_lock(&v->lock);
		v->quit = true;
		pthread_mutex_unlock(&v->lock);
		virEventAddTimeout(0, wake_timeout, NULL, NULL); /* wake the event thread */
		pthread_join(v->eventloop, NULL);
		return r;
	}
	v->started = true;
	return 0;
}

struct virt *virt_free(struct virt *v)
{
	if (!v)
		return NULL;
	if (v->started) {
		pthread_mutex_lock(&v->lock);
		v->quit = true;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		pthread_join(v->connector, NULL);
		/* A one-shot timer makes virEventRunDefaultImpl() return so the thread sees quit.
		 */
		virEventAddTimeout(0, wake_timeout, NULL, NULL);
		pthread_join(v->eventloop, NULL);
	}
	/* Events nobody will handle any more: the agent is going away. */
	v->inbox = handoff_free(v->inbox, discard_msg);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->lock);
	free(v->uri);
	free(v);
	return NULL;
}

virConnectPtr virt_conn_ref(struct virt *v)
{
	if (!v)
		return NULL;
	pthread_mutex_lock(&v->lock);
	virConnectPtr c = v->want_reconnect ? NULL : v->conn;
	if (c)
		virConnectRef(c);
	pthread_mutex_unlock(&v->lock);
	return c;
}

unsigned virt_reconnects(struct virt *v)
{
	pthread_mutex_lock(&v->lock);
	unsigned n = v->reconnects;
	pthread_mutex_unlock(&v->lock);
	return n;
}

void virt_connection_lost(struct virt *v)
{
	pthread_mutex_lock(&v->lock);
	v->want_reconnect = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

int virt_block_resize(virConnectPtr conn, const char *name, const char *path,
		      unsigned long long bytes, char **ret_error)
{
	if (!conn)
		return -ESRCH;
	virDomainPtr dom = virDomainLookupByName(conn, name);
	if (!dom)
		return -ESRCH;
	int r = 0;
	if (virDomainIsActive(dom) != 1)
		r = -ESRCH;
	else if (virDomainBlockResize(dom, path, bytes, VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0) {
		const char *m = virGetLastErrorMessage();
		if (ret_error)
			*ret_error = strdup(m ? m : "unknown libvirt error");
		r = -EIO;
	}
	virDomainFree(dom);
	return r;
}

static void version_string(unsigned long v, char *buf, size_t size)
{
	snprintf(buf, size, "%lu.%lu.%lu", v / 1000000, (v / 1000) % 1000, v % 1000);
}

int virt_node_facts(struct virt *v, struct virt_node_facts *ret)
{
	virConnectPtr conn = virt_conn_ref(v);
	if (!conn)
		return -ENOTCONN;
	struct virt_node_facts f = {.numa_nodes = 0};
	virNodeInfo ni;
	if (virNodeGetInfo(conn, &ni) == 0)
		f.numa_nodes = (int)ni.nodes;
	unsigned long lv = 0;
	if (virConnectGetLibVersion(conn, &lv) == 0)
		version_string(lv, f.libvirt_version, sizeof(f.libvirt_version));
	unsigned long hv = 0;
	if (virConnectGetVersion(conn, &hv) == 0 && hv > 0)
		version_string(hv, f.qemu_version, sizeof(f.qemu_version));
	char *uri = virConnectGetURI(conn);
	if (uri)
		snprintf(f.uri, sizeof(f.uri), "%s", uri);
	free(uri);
	virConnectClose(conn);
	*ret = f;
	return 0;
}

bool virt_domain_is_ours(virDomainPtr dom)
{
	char *md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, DOMXML_NS_URI, 0);
	if (!md) {
		virResetLastError();
		return false;
	}
	free(md);
	return true;
}

/* ---- guest states ---- */

_Static_assert((int)GUEST_STATE_NOSTATE == (int)VIR_DOMAIN_NOSTATE &&
		   (int)GUEST_STATE_RUNNING == (int)VIR_DOMAIN_RUNNING &&
		   (int)GUEST_STATE_BLOCKED == (int)VIR_DOMAIN_BLOCKED &&
		   (int)GUEST_STATE_PAUSED == (int)VIR_DOMAIN_PAUSED &&
		   (int)GUEST_STATE_SHUTDOWN == (int)VIR_DOMAIN_SHUTDOWN &&
		   (int)GUEST_STATE_SHUTOFF == (int)VIR_DOMAIN_SHUTOFF &&
		   (int)GUEST_STATE_CRASHED == (int)VIR_DOMAIN_CRASHED &&
		   (int)GUEST_STATE_PMSUSPENDED == (int)VIR_DOMAIN_PMSUSPENDED,
	       "enum guest_state follows virDomainState");
_Static_assert(GUEST_REASON_PAUSED_STARTING_UP == (int)VIR_DOMAIN_PAUSED_STARTING_UP,
	       "GUEST_REASON_PAUSED_STARTING_UP follows libvirt");

bool virt_event_undefined(int event)
{
	return event == VIR_DOMAIN_EVENT_UNDEFINED;
}

bool virt_event_defined(int event)
{
	return event == VIR_DOMAIN_EVENT_DEFINED;
}

bool virt_event_started(int event)
{
	return event == VIR_DOMAIN_EVENT_STARTED;
}

int virt_event_state(int event, int detail, int *ret_state, int *ret_reason)
{
	int state, reason = 0;
	switch (event) {
	case VIR_DOMAIN_EVENT_STARTED:
		state = VIR_DOMAIN_RUNNING;
		switch (detail) {
		case VIR_DOMAIN_EVENT_STARTED_BOOTED:
			reason = VIR_DOMAIN_RUNNING_BOOTED;
			break;
		case VIR_DOMAIN_EVENT_STARTED_MIGRATED:
			reason = VIR_DOMAIN_RUNNING_MIGRATED;
			break;
		case VIR_DOMAIN_EVENT_STARTED_RESTORED:
			reason = VIR_DOMAIN_RUNNING_RESTORED;
			break;
		case VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT:
			reason = VIR_DOMAIN_RUNNING_FROM_SNAPSHOT;
			break;
		case VIR_DOMAIN_EVENT_STARTED_WAKEUP:
			reason = VIR_DOMAIN_RUNNING_WAKEUP;
			break;
		}
		break;
	case VIR_DOMAIN_EVENT_RESUMED:
		state = VIR_DOMAIN_RUNNING;
		reason = detail == VIR_DOMAIN_EVENT_RESUMED_MIGRATED ? VIR_DOMAIN_RUNNING_MIGRATED
			 : detail == VIR_DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT
			     ? VIR_DOMAIN_RUNNING_FROM_SNAPSHOT
			     : VIR_DOMAIN_RUNNING_UNPAUSED;
		break;
	case VIR_DOMAIN_EVENT_SUSPENDED:
		state = VIR_DOMAIN_PAUSED;
		reason =
		    detail == VIR_DOMAIN_EVENT_SUSPENDED_IOERROR    ? VIR_DOMAIN_PAUSED_IOERROR
		    : detail == VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG ? VIR_DOMAIN_PAUSED_WATCHDOG
		    : detail == VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED ? VIR_DOMAIN_PAUSED_MIGRATION
								    : VIR_DOMAIN_PAUSED_USER;
		break;
	case VIR_DOMAIN_EVENT_PMSUSPENDED:
		state = VIR_DOMAIN_PMSUSPENDED;
		break;
	case VIR_DOMAIN_EVENT_SHUTDOWN:
		state = VIR_DOMAIN_SHUTDOWN;
		break;
	case VIR_DOMAIN_EVENT_STOPPED:
		state = VIR_DOMAIN_SHUTOFF;
		switch (detail) {
		case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
			reason = VIR_DOMAIN_SHUTOFF_SHUTDOWN;
			break;
		case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
			reason = VIR_DOMAIN_SHUTOFF_DESTROYED;
			break;
		case VIR_DOMAIN_EVENT_STOPPED_FAILED:
		case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
			reason = VIR_DOMAIN_SHUTOFF_CRASHED;
			break;
		case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
			reason = VIR_DOMAIN_SHUTOFF_MIGRATED;
			break;
		case VIR_DOMAIN_EVENT_STOPPED_SAVED:
			reason = VIR_DOMAIN_SHUTOFF_SAVED;
			break;
		case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
			reason = VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT;
			break;
		}
		break;
	case VIR_DOMAIN_EVENT_CRASHED:
		state = VIR_DOMAIN_CRASHED;
		reason = VIR_DOMAIN_CRASHED_PANICKED;
		break;
	default:
		return -ENODATA;
	}
	*ret_state = state;
	*ret_reason = reason;
	return 0;
}

int virt_qemu_pid(const char *name)
{
	char p[512], txt[32];
	if (snprintf(p, sizeof(p), "/run/libvirt/qemu/%s.pid", name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, txt, sizeof(txt) - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	txt[n] = 0;
	char *end;
	long pid = strtol(txt, &end, 10);
	if (pid <= 0 || pid > INT32_MAX || (*end && *end != '\n'))
		return -EINVAL;
	return (int)pid;
}

/* The live XML of dom, parsed; NULL on failure. */
static xmlDocPtr live_xml(virDomainPtr dom)
{
	char *xml = virDomainGetXMLDesc(dom, 0);
	if (!xml)
		return NULL;
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	free(xml);
	return doc;
}

static int xml_vnc_port(xmlDocPtr doc)
{
	int port = -ENOENT;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	if (!ctx)
		return -ENOMEM;
	xmlXPathObjectPtr o = xmlXPathEvalExpression(
	    (const xmlChar *)"string(/domain/devices/graphics[@type='vnc']/@port)", ctx);
	if (o && o->type == XPATH_STRING && o->stringval && *o->stringval) {
		char *end;
		long p = strtol((const char *)o->stringval, &end, 10);
		if (*end == 0 && p > 0 && p < 65536)
			port = (int)p;
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	return port;
}

/* The guest agent channel's state in the live XML: 1 connected, 2 disconnected, 0 unknown. */
static int xml_agent_channel(xmlDocPtr doc)
{
	int st = 0;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	if (!ctx)
		return 0;
	xmlXPathObjectPtr o = xmlXPathEvalExpression(
	    (const xmlChar *)"string(/domain/devices/channel/target[@type='virtio' and "
			     "@name='org.qemu.guest_agent.0']/@state)",
	    ctx);
	if (o && o->type == XPATH_STRING && o->stringval) {
		if (streq((const char *)o->stringval, "connected"))
			st = 1;
		else if (streq((const char *)o->stringval, "disconnected"))
			st = 2;
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	return st;
}

static int xml_block_jobs(virDomainPtr dom, xmlDocPtr doc)
{
	int n = 0;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr o =
	    ctx ? xmlXPathEvalExpression((const xmlChar *)"/domain/devices/disk/target/@dev", ctx)
		: NULL;
	for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
		xmlChar *dev = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
		virDomainBlockJobInfo info;
		if (dev && virDomainGetBlockJobInfo(dom, (const char *)dev, &info, 0) == 1)
			n++;
		xmlFree(dev);
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	return n;
}

int virt_domain_vnc_port(virDomainPtr dom)
{
	xmlDocPtr doc = live_xml(dom);
	if (!doc)
		return -ENOENT;
	int port = xml_vnc_port(doc);
	xmlFreeDoc(doc);
	return port;
}

int virt_domain_block_jobs(virDomainPtr dom)
{
	if (virDomainIsActive(dom) != 1)
		return 0;
	xmlDocPtr doc = live_xml(dom);
	if (!doc)
		return 0;
	int n = xml_block_jobs(dom, doc);
	xmlFreeDoc(doc);
	return n;
}

int virt_list_domains(struct virt *v, virConnectPtr conn, struct guest_info **ret, size_t *ret_n)
{
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(conn, &doms, 0);
	if (n < 0) {
		if (virConnectIsAlive(conn) != 1)
			virt_connection_lost(v);
		return -EIO;
	}
	struct guest_info *l = calloc((size_t)n + 1, sizeof(*l));
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);
		int state = 0, reason = 0;
		if (l && name && virDomainGetState(doms[i], &state, &reason, 0) == 0 &&
		    (l[k].sid = strdup(name))) {
			struct guest_info *x = &l[k++];
			x->state = state;
			x->reason = reason;
			x->transient = virDomainIsPersistent(doms[i]) == 0;
			bool active = state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED &&
				      state != VIR_DOMAIN_NOSTATE;
			int pid = active ? virt_qemu_pid(name) : -1;
			x->qemu_pid = pid > 0 ? pid : 0;
			xmlDocPtr doc = active ? live_xml(doms[i]) : NULL;
			if (doc) {
				int port = xml_vnc_port(doc);
				x->vnc_port = port > 0 ? port : 0;
				x->block_jobs = xml_block_jobs(doms[i], doc);
				x->agent_channel = xml_agent_channel(doc);
				xmlFreeDoc(doc);
			}
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	if (!l)
		return -ENOMEM;
	*ret = l;
	*ret_n = k;
	return 0;
}

/* ---- the guest agent ---- */

static char *last_message(void)
{
	const char *m = virGetLastErrorMessage();
	return strdup(m ? m : "unknown libvirt error");
}

/* Our running domain called name, its agent's response timeout set to timeout_s (at least 1 s),
 * or NULL with r and the message set. The timeout bounds libvirt's guest-sync before a command
 * (QEMU_AGENT_WAIT_TIME otherwise) and calls with no timeout of their own
 * (virDomainSetUserPassword). */
static virDomainPtr agent_domain(virConnectPtr conn, const char *name, int timeout_s, int *ret_r,
				 char **ret_error)
{
	virDomainPtr dom = conn ? virDomainLookupByName(conn, name) : NULL;
	if (!dom) {
		virErrorPtr e = virGetLastError();
		*ret_r = !conn || (e && e->code == VIR_ERR_NO_DOMAIN) ? -ESRCH : -EIO;
		if (ret_error && *ret_r == -EIO)
			*ret_error = last_message();
		return NULL;
	}
	int r = 0;
	int state = 0, reason = 0;
	if (!virt_domain_is_ours(dom))
		r = -EPERM;
	else if (virDomainGetState(dom, &state, &reason, 0) < 0) {
		r = -EIO;
		if (ret_error)
			*ret_error = last_message();
	} else if (state != VIR_DOMAIN_RUNNING)
		r = -EHOSTDOWN;
	if (r < 0) {
		virDomainFree(dom);
		*ret_r = r;
		return NULL;
	}
	if (virDomainAgentSetResponseTimeout(dom, MAX(timeout_s, 1), 0) < 0)
		virResetLastError();
	return dom;
}

/* libvirt's error of a failed agent call as negative errno (message in *ret_error). */
static int agent_error(char **ret_error)
{
	virErrorPtr e = virGetLastError();
	const char *m = e && e->message ? e->message : "unknown libvirt error";
	int r = -EIO;
	if (e && e->code == VIR_ERR_AGENT_UNRESPONSIVE)
		/* libvirt says "not connected" when no agent opened the channel, and "not
		 * responding"/"not available" when the command or its guest-sync timed out. */
		r = strstr(m, "not connected") ? -ENOTCONN : -ETIMEDOUT;
	else if (e && e->code == VIR_ERR_OPERATION_TIMEOUT)
		r = -ETIMEDOUT;
	else if (e && e->code == VIR_ERR_OPERATION_INVALID && strstr(m, "not running"))
		r = -EHOSTDOWN;
	else if (e && e->code == VIR_ERR_NO_DOMAIN)
		r = -ESRCH;
	if (ret_error)
		*ret_error = strdup(m);
	return r;
}

int virt_agent_command(virConnectPtr conn, const char *name, const char *cmd, int timeout_s,
		       char **ret_reply, char **ret_error)
{
	int r;
	virDomainPtr dom = agent_domain(conn, name, timeout_s, &r, ret_error);
	if (!dom)
		return r;
	char *out = virDomainQemuAgentCommand(dom, cmd, MAX(timeout_s, 1), 0);
	if (!out)
		r = agent_error(ret_error);
	else {
		*ret_reply = out;
		r = 0;
	}
	virDomainFree(dom);
	return r;
}

int virt_agent_set_password(virConnectPtr conn, const char *name, const char *user,
			    const char *password, bool crypted, int timeout_s, char **ret_error)
{
	int r;
	virDomainPtr dom = agent_domain(conn, name, timeout_s, &r, ret_error);
	if (!dom)
		return r;
	r = virDomainSetUserPassword(dom, user, password,
				     crypted ? VIR_DOMAIN_PASSWORD_ENCRYPTED : 0) < 0
		? agent_error(ret_error)
		: 0;
	virDomainFree(dom);
	return r;
}

/* ---- errors and domain calls of the guest operations (worker threads) ---- */

bool virt_last_error_no_domain(void)
{
	virErrorPtr e = virGetLastError();
	return e && e->code == VIR_ERR_NO_DOMAIN;
}

const char *virt_last_error_message(void)
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown libvirt error";
}

int virt_last_error(void)
{
	virErrorPtr e = virGetLastError();
	if (!e)
		return -EIO;
	switch (e->code) {
	case VIR_ERR_NO_DOMAIN:
		return -ENOENT;
	case VIR_ERR_OPERATION_INVALID:
		return -EBUSY;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_INVALID_CONN:
	case VIR_ERR_RPC:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

int virt_define_domain(virConnectPtr conn, const char *xml, char **ret_error)
{
	virDomainPtr dom = virDomainDefineXML(conn, xml);
	if (!dom) {
		int r = virt_last_error();
		if (ret_error)
			*ret_error = strdup(virt_last_error_message());
		return r;
	}
	virDomainFree(dom);
	return 0;
}

int virt_domain_start(virDomainPtr dom, const char *sid)
{
	for (int attempt = 1;; attempt++) {
		if (virDomainCreate(dom) == 0)
			return 0;
		const char *msg = virt_last_error_message();
		if (attempt >= 3 || !strstr(msg, "Failed to find an available port"))
			return -EIO;
		log_kv(LOG_WARNING, "VNC port taken while QEMU started, starting again", "sid", sid,
		       NULL);
	}
}

char *virt_hypervisor_version(virDomainPtr dom)
{
	unsigned long v = 0;
	char *s = NULL;
	if (virConnectGetVersion(virDomainGetConnect(dom), &v) < 0 || v == 0)
		return NULL;
	if (asprintf_safe(&s, "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000) < 0)
		return NULL;
	return s;
}

static int virt_result(int r)
{
	return r < 0 ? virt_last_error() : 0;
}

virDomainPtr virt_domain_lookup(virConnectPtr conn, const char *name)
{
	return virDomainLookupByName(conn, name);
}

int virt_domain_get_state(virDomainPtr dom, int *ret_state, int *ret_reason)
{
	return virt_result(virDomainGetState(dom, ret_state, ret_reason, 0));
}

int virt_domain_resume(virDomainPtr dom)
{
	return virt_result(virDomainResume(dom));
}

int virt_domain_suspend(virDomainPtr dom)
{
	return virt_result(virDomainSuspend(dom));
}

int virt_domain_reset(virDomainPtr dom)
{
	return virt_result(virDomainReset(dom, 0));
}

int virt_domain_destroy(virDomainPtr dom)
{
	return virt_result(virDomainDestroy(dom));
}

int virt_domain_power_button(virDomainPtr dom)
{
	if (virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0)
		return 0;
	/* A driver that refuses the ACPI flag (libvirt's test driver: "unsupported flags") gets
	 * its own default way of asking the guest to shut down. */
	virErrorPtr e = virGetLastError();
	if (!e || (e->code != VIR_ERR_INVALID_ARG && e->code != VIR_ERR_NO_SUPPORT))
		return virt_last_error();
	return virt_result(virDomainShutdown(dom));
}

bool virt_domain_is_active(virDomainPtr dom)
{
	return virDomainIsActive(dom) == 1;
}

int virt_domain_undefine(virDomainPtr dom)
{
	unsigned flags = VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
			 VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
			 VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
	if (virDomainUndefineFlags(dom, flags) < 0 && virDomainUndefine(dom) < 0)
		return virt_last_error();
	return 0;
}

int virt_domain_redefine(virDomainPtr dom, const char *xml, char **ret_error)
{
	return virt_define_domain(virDomainGetConnect(dom), xml, ret_error);
}

int virt_domain_monitor(virDomainPtr dom, const char *cmd, bool hmp, char **ret_out)
{
	return virt_result(virDomainQemuMonitorCommand(
	    dom, cmd, ret_out, hmp ? VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP : 0));
}

bool virt_conn_alive(virConnectPtr conn)
{
	return virConnectIsAlive(conn) == 1;
}

virConnectPtr virt_conn_unref(virConnectPtr conn)
{
	if (conn)
		virConnectClose(conn);
	return NULL;
}

struct virt_stats {
	virDomainStatsRecordPtr *recs;
	int n;
};

int virt_all_domain_stats(virConnectPtr conn, struct virt_stats **ret)
{
	struct virt_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->n = virConnectGetAllDomainStats(conn,
					   VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
					       VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK,
					   &s->recs, VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
	if (s->n < 0) {
		int r = virt_last_error();
		free(s);
		return r;
	}
	*ret = s;
	return s->n;
}

struct virt_stats *virt_stats_free(struct virt_stats *s)
{
	if (!s)
		return NULL;
	virDomainStatsRecordListFree(s->recs);
	free(s);
	return NULL;
}

const char *virt_stats_name(const struct virt_stats *s, int i)
{
	return virDomainGetName(s->recs[i]->dom);
}

bool virt_stats_uint(const struct virt_stats *s, int i, const char *key, unsigned *ret)
{
	return virTypedParamsGetUInt(s->recs[i]->params, s->recs[i]->nparams, key, ret) > 0;
}

bool virt_stats_ullong(const struct virt_stats *s, int i, const char *key, unsigned long long *ret)
{
	return virTypedParamsGetULLong(s->recs[i]->params, s->recs[i]->nparams, key, ret) > 0;
}

bool virt_stats_string(const struct virt_stats *s, int i, const char *key, const char **ret)
{
	return virTypedParamsGetString(s->recs[i]->params, s->recs[i]->nparams, key, ret) > 0;
}

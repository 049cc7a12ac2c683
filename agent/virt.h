/* The libvirt boundary, the only caller of libvirt besides main's virInitialize()
 * (tests/check-layout.sh): one connection, kept alive (reconnect with backoff), libvirt's event
 * loop on its own thread, domain lifecycle events forwarded to the agent's loop, and thin typed
 * calls whose libvirt errors become negative errno plus libvirt's message.
 * Implemented in agent/virt.c. */
#pragma once

#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "agent/guestview.h"
#include "common/macros.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose)
DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree)

struct virt;

/* A lifecycle event as libvirt reported it, delivered on the agent's loop thread. */
typedef void (*virt_event_fn)(const char *domain_name, int event, int detail, void *userdata);
/* Connection state changes (connected true/false), on the agent's loop thread. */
typedef void (*virt_conn_fn)(bool connected, void *userdata);

/* The guest agent channel of a domain connected (true) or disconnected, on the loop thread. */
typedef void (*virt_agent_fn)(const char *domain_name, bool connected, void *userdata);

int virt_new(sd_event *event, const char *uri, struct virt **ret);
/* Before virt_start(): agent lifecycle events go to fn (same userdata). */
void virt_set_agent_handler(struct virt *v, virt_agent_fn fn);
struct virt *virt_free(struct virt *v);
/* Connects in the background and keeps reconnecting with backoff while disconnected. */
int virt_start(struct virt *v, virt_event_fn on_event, virt_conn_fn on_conn, void *userdata);
/* A new reference to the connection (virConnectClose() it), NULL while disconnected.
 * Safe from any thread. */
virConnectPtr virt_conn_ref(struct virt *v);
/* Drops a reference virt_conn_ref() gave (NULL-safe); returns NULL. */
virConnectPtr virt_conn_unref(virConnectPtr conn);
unsigned virt_reconnects(struct virt *v);
/* Called by users that saw a call fail with a connection error: schedules a reconnect. */
void virt_connection_lost(struct virt *v);

/* What the region wants to know about the hypervisor node, read over the current connection. */
struct virt_node_facts {
	int numa_nodes;		  /* virNodeInfo.nodes */
	char libvirt_version[32]; /* "9.0.0" */
	char qemu_version[32];	  /* the hypervisor's version, "7.2.0"; empty when unknown */
	char uri[256];		  /* the connection's URI */
};
/* -ENOTCONN while disconnected. Blocking: worker threads only. */
int virt_node_facts(struct virt *v, struct virt_node_facts *ret);

/* True when the domain carries the agent's own metadata element (agent/domxml.h
 * DOMXML_NS_URI), i.e. hostagent defined it. A domain without it is someone else's: the agent
 * never stops, redefines, deletes or sends monitor commands to it (security review M4). */
bool virt_domain_is_ours(virDomainPtr dom);

/* Grows the disk at path of the running domain called name to bytes, through QEMU
 * (virDomainBlockResize). -ESRCH when no such domain runs (resize it offline instead), -EIO with
 * libvirt's message in *ret_error (optional) otherwise. Blocking: worker threads only. */
int virt_block_resize(virConnectPtr conn, const char *name, const char *path,
		      unsigned long long bytes, char **ret_error);

/* The state and reason a lifecycle event leaves the domain in: 0, or -ENODATA when the event
 * says nothing about the state (DEFINED, UNDEFINED). */
int virt_event_state(int event, int detail, int *ret_state, int *ret_reason);
/* True for VIR_DOMAIN_EVENT_UNDEFINED / _DEFINED. */
bool virt_event_undefined(int event);
bool virt_event_defined(int event);
bool virt_event_started(int event);

/* The QEMU pid of a running domain called name, from libvirt's pid file
 * (/run/libvirt/qemu/<name>.pid); negative errno otherwise. Reads a file only. */
int virt_qemu_pid(const char *name);
/* The VNC port of a running domain (> 0), or -ENOENT. Blocking: worker threads only. */
int virt_domain_vnc_port(virDomainPtr dom);
/* Block jobs (stream, mirror, commit) running on the disks of an active domain. Blocking. */
int virt_domain_block_jobs(virDomainPtr dom);
/* Every domain libvirt has, as view entries (sid = domain name, state, reason, qemu_pid,
 * vnc_port, block_jobs; no descriptor facts). Blocking: worker threads only. -EIO with the
 * connection checked (virt_connection_lost) on failure. */
int virt_list_domains(struct virt *v, virConnectPtr conn, struct guest_info **ret, size_t *ret_n);

/* ---- the guest agent (libvirt's agent API) ----
 * Only for domains of ours (virt_domain_is_ours), running. Errors: -ESRCH no such domain,
 * -EPERM not ours, -EHOSTDOWN not running, -ENOTCONN the guest's agent is not connected (no
 * qemu-guest-agent runs in the guest), -ETIMEDOUT it did not answer within timeout_s, -EIO
 * other libvirt errors; *ret_error (optional) gets libvirt's message. Blocking: worker threads
 * only; each call waits at most about twice timeout_s: libvirt's guest-sync before the
 * command (when it is out of sync with the agent) and the command itself, each bounded by it
 * (the domain's agent response timeout is set to timeout_s). */
int virt_agent_command(virConnectPtr conn, const char *name, const char *cmd, int timeout_s,
		       char **ret_reply, char **ret_error);
/* Sets the password of user in the guest (virDomainSetUserPassword; crypted: password is a
 * crypt(3) hash). The password is neither logged nor kept. */
int virt_agent_set_password(virConnectPtr conn, const char *name, const char *user,
			    const char *password, bool crypted, int timeout_s, char **ret_error);

/* ---- errors and domain calls of the guest operations ----
 * libvirt's last error of this thread: whether it says no such domain; its message (never
 * NULL; valid until the thread's next libvirt call); as a negative errno (-ENOENT no domain,
 * -EBUSY invalid state, -ENOTCONN dead connection, -EIO otherwise). */
bool virt_last_error_no_domain(void);
const char *virt_last_error_message(void);
int virt_last_error(void);
/* Defines (or redefines) a persistent domain from xml: 0, or the mapped error with libvirt's
 * message in *ret_error (optional). Blocking: worker threads only. */
int virt_define_domain(virConnectPtr conn, const char *xml, char **ret_error);
/* Starts dom. A VNC autoport can be lost between libvirt's check and QEMU's bind (another
 * process on the node network, or a second libvirtd, took it): libvirt then releases the port
 * and a second attempt gets the next free one (logged for sid). Other failures are not
 * retried: -EIO, libvirt's message in virt_last_error_message(). Blocking. */
int virt_domain_start(virDomainPtr dom, const char *sid);
/* libvirt's hypervisor version (QEMU's for the qemu driver) as "x.y.z"; NULL when unknown.
 * Blocking. */
char *virt_hypervisor_version(virDomainPtr dom);

/* Thin calls on one domain (blocking: worker threads only). Each returns 0 or the mapped
 * error (virt_last_error()); libvirt's message stays in virt_last_error_message(). The states
 * are enum guest_state's (agent/guestview.h, libvirt's numbering). */
#define VIRT_SHUTOFF_DESTROYED VIR_DOMAIN_SHUTOFF_DESTROYED /* reason of a forced stop */
/* The domain called name (virDomainFreep it); NULL with the error set. */
virDomainPtr virt_domain_lookup(virConnectPtr conn, const char *name);
int virt_domain_get_state(virDomainPtr dom, int *ret_state, int *ret_reason);
int virt_domain_resume(virDomainPtr dom);
int virt_domain_suspend(virDomainPtr dom);
int virt_domain_reset(virDomainPtr dom);
int virt_domain_destroy(virDomainPtr dom);
/* The ACPI power button (a graceful stop the guest OS may ignore). */
int virt_domain_power_button(virDomainPtr dom);
bool virt_domain_is_active(virDomainPtr dom);
/* Undefines with its NVRAM, managed save, snapshot and checkpoint metadata (plain undefine
 * when the driver refuses the flags). */
int virt_domain_undefine(virDomainPtr dom);
/* virt_define_domain() on dom's connection. */
int virt_domain_redefine(virDomainPtr dom, const char *xml, char **ret_error);
/* A QEMU monitor command (HMP text when hmp, else QMP JSON); *ret_out the reply (free it). */
int virt_domain_monitor(virDomainPtr dom, const char *cmd, bool hmp, char **ret_out);
/* True while conn is alive (virConnectIsAlive() == 1). */
bool virt_conn_alive(virConnectPtr conn);

/* ---- bulk statistics of the active domains (GET /metrics) ----
 * CPU time, balloon, interfaces and block devices of every active domain: the count of
 * records, or a negative errno (virt_last_error()). Blocking: worker threads only. The
 * accessors read record i: its domain's name, and a typed field by libvirt's key (false when
 * the record has no such field). */
struct virt_stats;
int virt_all_domain_stats(virConnectPtr conn, struct virt_stats **ret);
struct virt_stats *virt_stats_free(struct virt_stats *s);
const char *virt_stats_name(const struct virt_stats *s, int i);
bool virt_stats_uint(const struct virt_stats *s, int i, const char *key, unsigned *ret);
bool virt_stats_ullong(const struct virt_stats *s, int i, const char *key, unsigned long long *ret);
bool virt_stats_string(const struct virt_stats *s, int i, const char *key, const char **ret);

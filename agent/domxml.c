#include <arpa/inet.h>
#include <inttypes.h>
#include <libxml/xmlwriter.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent/domxml.h"
#include "common/macros.h"
#include "common/path.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlTextWriterPtr, xmlFreeTextWriter)
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlBufferPtr, xmlBufferFree)

/* The writer with a sticky error: after the first failure every call is a no-op. */
struct wr {
	xmlTextWriterPtr w;
	int r;
};

static void check(struct wr *w, int rc)
{
	if (rc < 0 && w->r == 0)
		w->r = -ENOMEM;
}

static void start(struct wr *w, const char *name)
{
	if (w->r == 0)
		check(w, xmlTextWriterStartElement(w->w, BAD_CAST name));
}

static void start_ns(struct wr *w, const char *name, const char *uri)
{
	if (w->r == 0)
		check(w, xmlTextWriterStartElementNS(w->w, BAD_CAST DOMXML_NS_PREFIX, BAD_CAST name,
						     BAD_CAST uri));
}

static void end(struct wr *w)
{
	if (w->r == 0)
		check(w, xmlTextWriterEndElement(w->w));
}

static void attr(struct wr *w, const char *name, const char *value)
{
	if (w->r == 0)
		check(w, xmlTextWriterWriteAttribute(w->w, BAD_CAST name, BAD_CAST value));
}

/* attrf and textf format numbers only ("%d", PRId64): 64 bytes hold any of them. Strings from a
 * descriptor go through attr()/text() whole. */
_printf_(3, 4) static void attrf(struct wr *w, const char *name, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	attr(w, name, buf);
}

static void text(struct wr *w, const char *s)
{
	if (w->r == 0)
		check(w, xmlTextWriterWriteString(w->w, BAD_CAST s));
}

_printf_(2, 3) static void textf(struct wr *w, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	text(w, buf);
}

/* <name>text</name> */
static void elem(struct wr *w, const char *name, const char *s)
{
	start(w, name);
	text(w, s);
	end(w);
}

/* <name a="v"/> */
static void empty1(struct wr *w, const char *name, const char *a, const char *v)
{
	start(w, name);
	if (a)
		attr(w, a, v);
	end(w);
}

/* Boot order per device: devices with an explicit boot_index come first (ranked by it); then,
 * when none has one, the boot_order letters (c: disks, d: CD-ROMs, n: NICs, each by index);
 * when some have one, NICs follow them if boot_order contains 'n'. 0: not a boot device. */
struct boot {
	int *disk, *cdrom, *nic;
};

static int boot_compute(const struct guest_desc *d, struct boot *b)
{
	b->disk = calloc(d->n_disks + 1, sizeof(int));
	b->cdrom = calloc(d->n_cdroms + 1, sizeof(int));
	b->nic = calloc(d->n_nics + 1, sizeof(int));
	if (!b->disk || !b->cdrom || !b->nic)
		return -ENOMEM;
	int order = 0;
	bool explicit = false;
	for (int bi = 0; bi <= GUEST_BOOT_INDEX_MAX; bi++) {
		for (size_t i = 0; i < d->n_disks; i++)
			if (d->disks[i].boot_index == bi) {
				b->disk[i] = ++order;
				explicit = true;
			}
		for (size_t i = 0; i < d->n_cdroms; i++)
			if (d->cdroms[i].boot_index == bi) {
				b->cdrom[i] = ++order;
				explicit = true;
			}
	}
	for (const char *p = d->boot_order; *p; p++) {
		if (*p == 'c' && !explicit)
			for (size_t i = 0; i < d->n_disks; i++)
				b->disk[i] = ++order;
		else if (*p == 'd' && !explicit)
			for (size_t i = 0; i < d->n_cdroms; i++)
				b->cdrom[i] = ++order;
		else if (*p == 'n')
			for (size_t i = 0; i < d->n_nics; i++)
				b->nic[i] = ++order;
	}
	return 0;
}

static void boot_free(struct boot *b)
{
	free(b->disk);
	free(b->cdrom);
	free(b->nic);
}

static void boot_elem(struct wr *w, int order)
{
	if (order > 0) {
		start(w, "boot");
		attrf(w, "order", "%d", order);
		end(w);
	}
}

static void write_metadata(struct wr *w, const struct guest_desc *d, const char *sid)
{
	start(w, "metadata");
	start_ns(w, "guest", DOMXML_NS_URI);
	start_ns(w, "sid", NULL);
	text(w, sid);
	end(w);
	start_ns(w, "uuid", NULL);
	text(w, d->uuid);
	end(w);
	start_ns(w, "name", NULL);
	text(w, d->name);
	end(w);
	for (size_t i = 0; i < d->n_metadata; i++) {
		start_ns(w, "meta", NULL);
		attr(w, "key", d->metadata[i].key);
		text(w, d->metadata[i].value);
		end(w);
	}
	end(w);
	end(w);
}

static void write_os(struct wr *w, const struct guest_desc *d, const char *sid,
		     const struct domxml_opts *o)
{
	start(w, "os");
	start(w, "type");
	attr(w, "arch", "x86_64");
	attr(w, "machine", d->machine);
	text(w, "hvm");
	end(w);
	if (d->bios == GUEST_BIOS_UEFI) {
		start(w, "loader");
		attr(w, "readonly", "yes");
		attr(w, "type", "pflash");
		text(w, o->ovmf_code);
		end(w);
		if (o->ovmf_vars || o->nvram_dir) {
			start(w, "nvram");
			if (o->ovmf_vars)
				attr(w, "template", o->ovmf_vars);
			if (o->nvram_dir) {
				_cleanup_free_ char *p =
				    strjoin(o->nvram_dir, "/", sid, "_VARS.fd");
				if (!p)
					w->r = -ENOMEM;
				else
					text(w, p);
			}
			end(w);
		}
	}
	end(w);
}

static void write_cdrom(struct wr *w, const char *path, const char *dev, bool q35, int boot)
{
	start(w, "disk");
	attr(w, "type", "file");
	attr(w, "device", "cdrom");
	start(w, "driver");
	attr(w, "name", "qemu");
	attr(w, "type", "raw");
	end(w);
	if (path)
		empty1(w, "source", "file", path);
	start(w, "target");
	attr(w, "dev", dev);
	attr(w, "bus", q35 ? "sata" : "ide");
	end(w);
	empty1(w, "readonly", NULL, NULL);
	boot_elem(w, boot);
	end(w);
}

static void write_disks(struct wr *w, const struct guest_desc *d, const struct domxml_opts *o,
			const char *drive_dev, const struct boot *b)
{
	bool scsi = false;
	for (size_t i = 0; i < d->n_disks; i++) {
		const struct guest_disk *k = &d->disks[i];
		scsi = scsi || k->bus == DISK_BUS_SCSI;
		start(w, "disk");
		attr(w, "type", "file");
		attr(w, "device", "disk");
		start(w, "driver");
		attr(w, "name", "qemu");
		attr(w, "type", disk_format_to_string(k->format));
		attr(w, "cache", k->cache_mode);
		end(w);
		empty1(w, "source", "file", k->path);
		start(w, "target");
		attr(w, "dev", k->dev);
		attr(w, "bus", disk_bus_to_string(k->bus));
		end(w);
		start(w, "serial");
		text(w, k->disk_id);
		end(w);
		boot_elem(w, b->disk[i]);
		end(w);
	}
	bool q35 = streq(d->machine, "q35") || strneq(d->machine, "pc-q35", 6);
	for (size_t i = 0; i < d->n_cdroms; i++)
		write_cdrom(w, d->cdroms[i].path, d->cdroms[i].dev, q35, b->cdrom[i]);
	/* The config drive: never a boot device. */
	if (o->config_drive)
		write_cdrom(w, o->config_drive, drive_dev, q35, 0);
	if (scsi) {
		start(w, "controller");
		attr(w, "type", "scsi");
		attr(w, "index", "0");
		attr(w, "model", "virtio-scsi");
		end(w);
	}
}

static void write_nics(struct wr *w, const struct guest_desc *d, const struct domxml_opts *o,
		       const struct boot *b)
{
	for (size_t i = 0; i < d->n_nics; i++) {
		const struct guest_nic *n = &d->nics[i];
		bool ovs = strv_contains(o->ovs_bridges, n->bridge);
		start(w, "interface");
		attr(w, "type", "bridge");
		empty1(w, "mac", "address", n->mac);
		empty1(w, "source", "bridge", n->bridge);
		if (ovs) {
			empty1(w, "virtualport", "type", "openvswitch");
			if (n->vlan > 1) {
				start(w, "vlan");
				start(w, "tag");
				attrf(w, "id", "%d", n->vlan);
				end(w);
				end(w);
			}
		}
		if (n->ifname)
			empty1(w, "target", "dev", n->ifname);
		empty1(w, "model", "type", n->driver);
		if (n->bw_mbps > 0 && !o->no_bandwidth) {
			/* libvirt's unit is kB/s (1000 bytes, tc's "kbps"): 1 Mbit/s = 125 kB/s. */
			start(w, "bandwidth");
			start(w, "inbound");
			attrf(w, "average", "%" PRId64, n->bw_mbps * 125);
			end(w);
			start(w, "outbound");
			attrf(w, "average", "%" PRId64, n->bw_mbps * 125);
			end(w);
			end(w);
		}
		if (n->mtu > 0) {
			start(w, "mtu");
			attrf(w, "size", "%d", n->mtu);
			end(w);
		}
		boot_elem(w, b->nic[i]);
		end(w);
	}
}

static void write_devices(struct wr *w, const struct guest_desc *d, const struct domxml_opts *o,
			  const char *drive_dev, const struct boot *b)
{
	const char *listen = o->vnc_listen ? o->vnc_listen : "127.0.0.1";
	start(w, "devices");
	if (o->emulator)
		elem(w, "emulator", o->emulator);
	write_disks(w, d, o, drive_dev, b);
	write_nics(w, d, o, b);

	start(w, "serial");
	attr(w, "type", "pty");
	empty1(w, "target", "port", "0");
	end(w);
	start(w, "console");
	attr(w, "type", "pty");
	start(w, "target");
	attr(w, "type", "serial");
	attr(w, "port", "0");
	end(w);
	end(w);

	/* libvirt picks the socket path of the guest agent channel. */
	start(w, "channel");
	attr(w, "type", "unix");
	start(w, "target");
	attr(w, "type", "virtio");
	attr(w, "name", "org.qemu.guest_agent.0");
	end(w);
	end(w);

	start(w, "input");
	attr(w, "type", "tablet");
	attr(w, "bus", "usb");
	end(w);

	start(w, "graphics");
	attr(w, "type", d->vdi == GUEST_VDI_SPICE ? "spice" : "vnc");
	attr(w, "autoport", "yes");
	if (o->console_password)
		attr(w, "passwd", o->console_password);
	start(w, "listen");
	attr(w, "type", "address");
	attr(w, "address", listen);
	end(w);
	end(w);

	start(w, "video");
	empty1(w, "model", "type", d->vga);
	end(w);

	empty1(w, "memballoon", "model", "virtio");
	end(w);
}

static bool machine_q35(const struct guest_desc *d)
{
	return streq(d->machine, "q35") || strneq(d->machine, "pc-q35", 6);
}

/* The config drive's unit: the first one no disk or CD-ROM of the desc uses (IDE hdc, hdd, hda,
 * hdb on i440fx; SATA sda.. on q35). */
static int config_drive_dev(const struct guest_desc *d, char dev[8])
{
	static const int ide[] = {2, 3, 0, 1};
	bool q35 = machine_q35(d);
	for (int k = 0; k < (q35 ? GUEST_DISK_INDEX_MAX + 1 : 4); k++) {
		snprintf(dev, 8, "%s%c", q35 ? "sd" : "hd", 'a' + (q35 ? k : ide[k]));
		bool used = false;
		for (size_t i = 0; i < d->n_disks; i++)
			used = used || streq(d->disks[i].dev, dev);
		for (size_t i = 0; i < d->n_cdroms; i++)
			used = used || streq(d->cdroms[i].dev, dev);
		if (!used)
			return 0;
	}
	return -ENOSPC;
}

int domxml_render(const struct guest_desc *d, const char *sid, const struct domxml_opts *o,
		  char **ret_xml, char **ret_error)
{
	unsigned char addr[sizeof(struct in6_addr)];
	if (!d || !o || !id_is_valid(sid, GUEST_ID_MAX))
		return -EINVAL;
	if (o->vnc_listen && inet_pton(AF_INET, o->vnc_listen, addr) != 1 &&
	    inet_pton(AF_INET6, o->vnc_listen, addr) != 1)
		return -EINVAL;
	if (d->bios == GUEST_BIOS_UEFI && !o->ovmf_code)
		return error_set(ret_error, -EOPNOTSUPP,
				 "bios: UEFI requested but no OVMF firmware is installed");
	for (size_t i = 0; i < d->n_nics; i++)
		if (d->nics[i].vlan > 1 && !strv_contains(o->ovs_bridges, d->nics[i].bridge))
			return error_set(
			    ret_error, -EOPNOTSUPP,
			    "nics[%zu].vlan: VLAN %d cannot be tagged on %s, a Linux "
			    "bridge (tagged networks need Open vSwitch, which this host "
			    "does not use yet)",
			    i, d->nics[i].vlan, d->nics[i].bridge);

	char drive_dev[8] = "";
	if (o->config_drive) {
		if (o->config_drive[0] != '/' || strpbrk(o->config_drive, "\n\r"))
			return -EINVAL;
		if (config_drive_dev(d, drive_dev) < 0)
			return error_set(ret_error, -EOPNOTSUPP,
					 "cdroms: no free %s unit left for the config drive",
					 machine_q35(d) ? "SATA" : "IDE");
	}

	_cleanup_(boot_free) struct boot b = {};
	int r = boot_compute(d, &b);
	if (r < 0)
		return r;

	_cleanup_(xmlBufferFreep) xmlBufferPtr buf = xmlBufferCreate();
	if (!buf)
		return -ENOMEM;
	_cleanup_(xmlFreeTextWriterp) xmlTextWriterPtr xw = xmlNewTextWriterMemory(buf, 0);
	if (!xw)
		return -ENOMEM;
	struct wr w = {.w = xw};
	check(&w, xmlTextWriterSetIndent(xw, 1));
	check(&w, xmlTextWriterSetIndentString(xw, BAD_CAST "  "));

	start(&w, "domain");
	attr(&w, "type", o->kvm ? "kvm" : "qemu");
	elem(&w, "name", sid);
	elem(&w, "uuid", d->uuid);
	elem(&w, "title", d->name);
	write_metadata(&w, d, sid);
	start(&w, "memory");
	attr(&w, "unit", "MiB");
	textf(&w, "%" PRId64, d->mem_mb);
	end(&w);
	start(&w, "currentMemory");
	attr(&w, "unit", "MiB");
	textf(&w, "%" PRId64, d->mem_mb);
	end(&w);
	start(&w, "vcpu");
	attr(&w, "placement", "static");
	textf(&w, "%d", d->cpu);
	end(&w);
	write_os(&w, d, sid, o);
	start(&w, "features");
	empty1(&w, "acpi", NULL, NULL);
	empty1(&w, "apic", NULL, NULL);
	end(&w);
	start(&w, "cpu");
	if (o->kvm && o->cpu_mode)
		attr(&w, "mode", o->cpu_mode);
	start(&w, "topology");
	attrf(&w, "sockets", "%d", d->cpu_sockets);
	attr(&w, "dies", "1");
	attrf(&w, "cores", "%d", d->cpu / d->cpu_sockets);
	attr(&w, "threads", "1");
	end(&w);
	end(&w);
	empty1(&w, "clock", "offset", "utc");
	elem(&w, "on_poweroff", "destroy");
	elem(&w, "on_reboot", "restart");
	elem(&w, "on_crash", "destroy");
	write_devices(&w, d, o, drive_dev, &b);
	end(&w);
	if (w.r == 0)
		check(&w, xmlTextWriterEndDocument(xw));
	if (w.r < 0)
		return w.r;
	xmlFreeTextWriter(TAKE_PTR(xw)); /* flushes into buf */

	char *s = strdup((const char *)xmlBufferContent(buf));
	if (!s)
		return -ENOMEM;
	*ret_xml = s;
	return 0;
}

bool domxml_kvm_available(void)
{
	return access("/dev/kvm", R_OK | W_OK) == 0;
}

bool domxml_sfq_available(void)
{
	if (access("/sys/module/sch_sfq", F_OK) == 0)
		return true;
	struct utsname u;
	if (uname(&u) < 0)
		return false;
	_cleanup_free_ char *dir = NULL, *builtin = NULL;
	if (asprintf(&dir, "/lib/modules/%s/kernel/net/sched", u.release) < 0 ||
	    asprintf(&builtin, "/lib/modules/%s/modules.builtin", u.release) < 0)
		return false;
	static const char *const files[] = {"sch_sfq.ko", "sch_sfq.ko.xz", "sch_sfq.ko.zst",
					    "sch_sfq.ko.gz"};
	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		_cleanup_free_ char *f = NULL;
		if (asprintf(&f, "%s/%s", dir, files[i]) >= 0 && access(f, F_OK) == 0)
			return true;
	}
	_cleanup_fclose_ FILE *fp = fopen(builtin, "re");
	char line[256];
	while (fp && fgets(line, sizeof(line), fp))
		if (strstr(line, "/sch_sfq.ko"))
			return true;
	return false;
}

bool domxml_virt_is_kvm(const char *virt_type)
{
	return streq_ptr(virt_type, "kvm");
}

int domxml_virt_check(const char *virt_type, const char *kvm_dev, char **ret_error)
{
	if (streq_ptr(virt_type, "qemu"))
		return 0;
	if (!streq_ptr(virt_type, "kvm")) {
		error_set(ret_error, -EOPNOTSUPP, "virt_type: must be kvm or qemu, not %s",
			  virt_type ? virt_type : "(unset)");
		return -EINVAL;
	}
	if (access(kvm_dev, R_OK | W_OK) == 0)
		return 0;
	int e = errno;
	error_set(ret_error, -EOPNOTSUPP,
		  "virt_type is kvm but %s cannot be opened (%s): load the kvm modules, or set "
		  "virt_type: qemu to run guests under TCG (much slower)",
		  kvm_dev, strerror(e));
	return -ENODEV;
}

int domxml_find_ovmf(const char **ret_code, const char **ret_vars)
{
	static const char *const pairs[][2] = {
	    {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	    {"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	    {"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
	    {"/usr/share/edk2/x64/OVMF_CODE.fd", "/usr/share/edk2/x64/OVMF_VARS.fd"},
	};
	for (size_t i = 0; i < ELEMENTSOF(pairs); i++)
		if (access(pairs[i][0], R_OK) == 0 && access(pairs[i][1], R_OK) == 0) {
			*ret_code = pairs[i][0];
			*ret_vars = pairs[i][1];
			return 0;
		}
	return -ENOENT;
}

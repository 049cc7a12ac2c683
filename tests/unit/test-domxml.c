/* Golden-file tests: tests/data/desc/NAME.json -> tests/data/domxml/NAME.xml, compared exactly.
 * "@ROOT@" in both stands for the temporary disk root of the run.
 * Regenerate with HOSTAGENT_UPDATE_GOLDEN=DIR (writes DIR/NAME.xml; "1" means the source tree's
 * tests/data/domxml). Every rendering is also checked with virt-xml-validate when installed. */
#include <fcntl.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "agent/desc.h"
#include "agent/domxml.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

extern char **environ;

/* The fixture is a struct test_roots: its dir is "@ROOT@". */

/* Replaces every occurrence of from with to. */
static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t nf = strlen(from), nt = strlen(to), count = 0;
	for (const char *p = strstr(s, from); p; p = strstr(p + nf, from))
		count++;
	char *out = malloc(strlen(s) + count * nt + 1);
	assert_non_null(out);
	char *o = out;
	for (;;) {
		const char *p = strstr(s, from);
		if (!p)
			break;
		memcpy(o, s, (size_t)(p - s));
		o += p - s;
		memcpy(o, to, nt);
		o += nt;
		s = p + nf;
	}
	strcpy(o, s);
	return out;
}

static const struct domxml_opts opts = {
    .kvm = true,
    .cpu_mode = "host-passthrough",
    .vnc_listen = "0.0.0.0",
    .ovmf_code = "/usr/share/OVMF/OVMF_CODE_4M.fd",
    .ovmf_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd",
    .nvram_dir = "/var/lib/libvirt/qemu/nvram",
    .ovs_bridges = (char *const[]){"ovsbr0", NULL},
};

static struct guest_desc *load_desc(struct test_roots *f, const char *name)
{
	_cleanup_free_ char *rel = strjoin("desc/", name, ".json");
	_cleanup_free_ char *path = test_data(rel);
	_cleanup_free_ char *text = NULL;
	assert_int_equal(read_file(path, 1 << 20, &text, NULL), 0);
	_cleanup_free_ char *real = replace_all(text, "@ROOT@", f->dir);
	json_error_t jerr;
	json_auto_t *j = json_loads(real, 0, &jerr);
	if (!j)
		fail_msg("%s: %s", path, jerr.text);
	struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	int r = guest_desc_parse(j, f->roots, &d, &err);
	if (r < 0)
		fail_msg("%s: %s", path, strempty(err));
	return d;
}

static void validate(struct test_roots *f, const char *name, const char *xml)
{
	const char *tool = "/usr/bin/virt-xml-validate";
	if (access(tool, X_OK) < 0) {
		print_message("# virt-xml-validate not installed, schema check skipped\n");
		return;
	}
	_cleanup_free_ char *file = strjoin(f->dir, "/", name, ".xml");
	assert_int_equal(write_file_atomic(file, xml, strlen(xml), 0644), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	_cleanup_free_ char *log = strjoin(f->dir, "/", name, ".validate.log");
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC,
					 0644);
	posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
	char *argv[] = {(char *)tool, file, "domain", NULL};
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, tool, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		_cleanup_free_ char *out = NULL;
		(void)read_file(log, 1 << 16, &out, NULL);
		fail_msg("%s does not validate against the libvirt domain schema:\n%s\n%s", name,
			 strempty(out), xml);
	}
}

static void quiet(void *userdata, virErrorPtr err)
{
}

/* libvirt's own parser, through the in-process QEMU driver (qemu:///embed, no daemon): the domain
 * must define. One embedded driver per process, so one root for the whole run. Skipped where
 * that driver cannot start (no QEMU installed). */
static virConnectPtr embed_conn;
static char *embed_root;
static bool embed_tried;

static void embed_cleanup(void)
{
	if (embed_conn)
		virConnectClose(embed_conn);
	if (embed_root)
		rm_rf(embed_root);
	free(embed_root);
}

static void libvirt_define(const char *name, const char *xml)
{
	if (!embed_tried) {
		embed_tried = true;
		virSetErrorFunc(NULL, quiet);
		embed_root = test_tmpdir();
		atexit(embed_cleanup);
		/* QEMU as root, as the agent's own libvirt runs it: the default user (libvirt-qemu)
		 * cannot enter the 0700 root, its capability probe dies, and libvirt probes again
		 * on every define (minutes for this test). */
		_cleanup_free_ char *etc = strjoin(embed_root, "/etc");
		_cleanup_free_ char *conf = strjoin(embed_root, "/etc/qemu.conf");
		assert_non_null(etc);
		assert_non_null(conf);
		assert_int_equal(mkdir(etc, 0700), 0);
		static const char qemu_conf[] = "user = \"root\"\ngroup = \"root\"\n";
		assert_int_equal(write_file_atomic(conf, qemu_conf, strlen(qemu_conf), 0600), 0);
		/* The embedded driver needs an event implementation registered (never run here). */
		if (virEventRegisterDefaultImpl() == 0) {
			_cleanup_free_ char *uri = strjoin("qemu:///embed?root=", embed_root);
			embed_conn = virConnectOpen(uri);
		}
		if (!embed_conn)
			print_message("# qemu:///embed unavailable (%s), libvirt define check "
				      "skipped\n",
				      strempty(virGetLastErrorMessage()));
	}
	if (!embed_conn)
		return;
	virDomainPtr dom = virDomainDefineXML(embed_conn, xml);
	if (!dom)
		fail_msg("%s: libvirt refuses the domain: %s", name, virGetLastErrorMessage());
	assert_int_equal(virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_NVRAM), 0);
	virDomainFree(dom);
}

/* Renders tests/data/desc/<desc>.json with o and compares with tests/data/domxml/<name>.xml. */
static void golden_with(void **state, const char *desc, const char *name,
			const struct domxml_opts *o)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, desc);
	_cleanup_free_ char *xml = NULL, *err = NULL;
	int r = domxml_render(d, d->uuid, o, &xml, &err);
	if (r < 0)
		fail_msg("%s: render failed: %d %s", name, r, strempty(err));
	validate(f, name, xml);
	libvirt_define(name, xml);
	_cleanup_free_ char *got = replace_all(xml, f->dir, "@ROOT@");

	const char *update = getenv("HOSTAGENT_UPDATE_GOLDEN");
	if (!isempty(update)) {
		_cleanup_free_ char *dir = NULL;
		if (streq(update, "1")) {
			const char *src = getenv("top_srcdir");
			assert_non_null(src);
			dir = strjoin(src, "/tests/data/domxml");
		} else
			dir = strdup(update);
		_cleanup_free_ char *out = strjoin(dir, "/", name, ".xml");
		assert_int_equal(write_file_atomic(out, got, strlen(got), 0644), 0);
		print_message("# wrote %s\n", out);
		return;
	}
	_cleanup_free_ char *rel = strjoin("domxml/", name, ".xml");
	_cleanup_free_ char *path = test_data(rel);
	_cleanup_free_ char *expect = NULL;
	assert_int_equal(read_file(path, 1 << 20, &expect, NULL), 0);
	if (!streq(expect, got)) {
		print_message("# got:\n%s", got);
		fail_msg("%s differs from the rendering (HOSTAGENT_UPDATE_GOLDEN=1 regenerates)",
			 path);
	}
}

static void golden(void **state, const char *name)
{
	golden_with(state, name, name, &opts);
}

static void test_minimal(void **state)
{
	golden(state, "minimal");
}

static void test_qcow2_backing(void **state)
{
	golden(state, "qcow2-backing");
}

static void test_two_nics(void **state)
{
	golden(state, "two-nics");
}

static void test_uefi(void **state)
{
	golden(state, "uefi");
}

static void test_hostile(void **state)
{
	golden(state, "hostile");

	/* The hostile strings come back unchanged through a real XML parser. */
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, "hostile");
	_cleanup_free_ char *xml = NULL;
	assert_int_equal(domxml_render(d, "sid-1", &opts, &xml, NULL), 0);
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "x.xml", NULL, XML_PARSE_NONET);
	assert_non_null(doc);
	xmlNodePtr root = xmlDocGetRootElement(doc);
	int titles = 0, metas = 0;
	for (xmlNodePtr n = root->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (xmlStrEqual(n->name, BAD_CAST "title")) {
			xmlChar *t = xmlNodeGetContent(n);
			assert_string_equal((char *)t, d->name);
			xmlFree(t);
			titles++;
		}
		/* Injection attempts stay text: the only top-level children are ours. */
		assert_false(xmlStrEqual(n->name, BAD_CAST "inject"));
		if (!xmlStrEqual(n->name, BAD_CAST "metadata"))
			continue;
		xmlNodePtr g = xmlFirstElementChild(n);
		assert_non_null(g);
		assert_null(xmlNextElementSibling(g));
		for (xmlNodePtr m = xmlFirstElementChild(g); m; m = xmlNextElementSibling(m)) {
			if (!xmlStrEqual(m->name, BAD_CAST "meta"))
				continue;
			xmlChar *k = xmlGetProp(m, BAD_CAST "key");
			xmlChar *v = xmlNodeGetContent(m);
			bool found = false;
			for (size_t i = 0; i < d->n_metadata; i++)
				if (streq(d->metadata[i].key, (char *)k)) {
					/* \r survives: the writer emits it as &#13;. */
					assert_string_equal((char *)v, d->metadata[i].value);
					found = true;
				}
			assert_true(found);
			xmlFree(k);
			xmlFree(v);
			metas++;
		}
	}
	assert_int_equal(titles, 1);
	assert_int_equal(metas, (int)d->n_metadata);
	xmlFreeDoc(doc);
}

/* virt_type: qemu (TCG): the same guests as KVM ones, without a host CPU model. */
static void test_qemu(void **state)
{
	struct domxml_opts o = opts;
	o.kvm = false;
	golden_with(state, "qcow2-backing", "qcow2-backing-qemu", &o);
	golden_with(state, "uefi", "uefi-qemu", &o);
}

/* The config drive (agent/deploy.h): one more read-only CD-ROM, never a boot device, on the first
 * unit no disk or CD-ROM of the desc uses (hdc on i440fx; after the desc's cdrom on q35). */
static void test_config_drive(void **state)
{
	struct domxml_opts o = opts;
	o.config_drive = "/opt/cloud/workspace/servers/s1/config-drive.iso";
	golden_with(state, "minimal", "minimal-config-drive", &o);
	golden_with(state, "two-nics", "two-nics-config-drive", &o);
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, "minimal");
	_cleanup_free_ char *xml = NULL, *err = NULL;
	o.config_drive = "relative.iso";
	assert_int_equal(domxml_render(d, "s1", &o, &xml, &err), -EINVAL);
}

static void test_virt_check(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *err = NULL, *dev = strjoin(f->dir, "/kvm"),
			    *missing = strjoin(f->dir, "/no-kvm");
	assert_int_equal(write_file_atomic(dev, "", 0, 0600), 0);

	assert_true(domxml_virt_is_kvm("kvm"));
	assert_false(domxml_virt_is_kvm("qemu"));
	assert_false(domxml_virt_is_kvm(NULL));
	assert_int_equal(domxml_virt_check("kvm", dev, &err), 0);
	assert_null(err);
	/* TCG needs no /dev/kvm. */
	assert_int_equal(domxml_virt_check("qemu", missing, &err), 0);
	assert_null(err);
	assert_int_equal(domxml_virt_check("kvm", missing, &err), -ENODEV);
	_cleanup_free_ char *want = NULL;
	assert_int_equal(
	    asprintf_safe(&want,
			  "virt_type is kvm but %s cannot be opened (No such file or "
			  "directory): load the kvm modules, or set virt_type: qemu to "
			  "run guests under TCG (much slower)",
			  missing),
	    0);
	assert_string_equal(err, want);
	free(err);
	err = NULL;
	assert_int_equal(domxml_virt_check("xen", dev, &err), -EINVAL);
	assert_string_equal(err, "virt_type: must be kvm or qemu, not xen");
}

static void test_refusals(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, "uefi");
	_cleanup_free_ char *xml = NULL, *err = NULL;
	struct domxml_opts o = opts;

	assert_int_equal(domxml_render(d, "../etc", &o, &xml, &err), -EINVAL);
	assert_int_equal(domxml_render(d, "", &o, &xml, &err), -EINVAL);
	o.vnc_listen = "0.0.0.0\"/><x";
	assert_int_equal(domxml_render(d, "s1", &o, &xml, &err), -EINVAL);
	o = opts;
	o.ovmf_code = NULL;
	assert_int_equal(domxml_render(d, "s1", &o, &xml, &err), -EOPNOTSUPP);
	assert_string_equal(err, "bios: UEFI requested but no OVMF firmware is installed");
	free(err);
	err = NULL;

	guest_desc_free(d);
	d = load_desc(f, "two-nics");
	o = opts;
	o.ovs_bridges = NULL;
	assert_int_equal(domxml_render(d, "s1", &o, &xml, &err), -EOPNOTSUPP);
	assert_string_equal(err, "nics[1].vlan: VLAN 42 cannot be tagged on ovsbr0, a Linux bridge "
				 "(tagged networks need Open vSwitch, which this host does not use "
				 "yet)");
	assert_null(xml);

	/* Without KVM: TCG domain, no host-passthrough CPU. */
	o = opts;
	o.kvm = false;
	assert_int_equal(domxml_render(d, "s1", &o, &xml, NULL), 0);
	assert_non_null(strstr(xml, "<domain type=\"qemu\">"));
	assert_null(strstr(xml, "host-passthrough"));
}

/* A kernel without sfq: the NIC limits are left out (libvirt could not start the domain with
 * them), everything else of the NIC stays. */
static void test_no_bandwidth(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, "two-nics");
	_cleanup_free_ char *xml = NULL, *shaped = NULL;
	struct domxml_opts o = opts;
	assert_int_equal(domxml_render(d, "s1", &o, &shaped, NULL), 0);
	assert_non_null(strstr(shaped, "<bandwidth>"));
	o.no_bandwidth = true;
	assert_int_equal(domxml_render(d, "s1", &o, &xml, NULL), 0);
	assert_null(strstr(xml, "<bandwidth>"));
	assert_non_null(strstr(xml, "<interface type=\"bridge\">"));
	validate(f, "no-bandwidth", xml);
}

/* H1: the console password reaches <graphics passwd=...>; without one there is no attribute. */
static void test_console_password(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = load_desc(f, "minimal");
	_cleanup_free_ char *xml = NULL, *plain = NULL;
	struct domxml_opts o = opts;
	o.console_password = "Ab3dEf7h";
	assert_int_equal(domxml_render(d, "s1", &o, &xml, NULL), 0);
	assert_non_null(strstr(xml, "autoport=\"yes\" passwd=\"Ab3dEf7h\""));
	validate(f, "console-password", xml);
	libvirt_define("console-password", xml);
	assert_int_equal(domxml_render(d, "s1", &opts, &plain, NULL), 0);
	assert_null(strstr(plain, "passwd="));
}

TEST_MAIN_EACH(test_roots_setup, test_roots_teardown, cmocka_unit_test(test_minimal),
	       cmocka_unit_test(test_console_password), cmocka_unit_test(test_qcow2_backing),
	       cmocka_unit_test(test_two_nics), cmocka_unit_test(test_no_bandwidth),
	       cmocka_unit_test(test_uefi), cmocka_unit_test(test_hostile),
	       cmocka_unit_test(test_qemu), cmocka_unit_test(test_config_drive),
	       cmocka_unit_test(test_virt_check), cmocka_unit_test(test_refusals))

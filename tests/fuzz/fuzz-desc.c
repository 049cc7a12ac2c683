/* libFuzzer target: guest descriptors as the API receives them. Any input must either be
 * refused with a message or parse into a model that renders to domain XML and to the guest
 * DHCP's dnsmasq files (one line per host, no line break or NUL inside); nothing may crash,
 * leak or read out of bounds. Built and run by tests/fuzz/run.sh. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/desc.h"
#include "agent/dhcp-conf.h"
#include "agent/domxml.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static char root[] = "/tmp/hostagent-fuzz-desc-root";
	static int made;
	if (!made) {
		mkdir(root, 0700);
		made = 1;
	}
	char *const roots[] = {root, NULL};
	json_error_t e;
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		return 0;
	struct guest_desc *d = NULL;
	char *err = NULL;
	if (guest_desc_parse(j, roots, &d, &err) == 0) {
		struct domxml_opts o = {.kvm = true, .vnc_listen = "127.0.0.1"};
		char *xml = NULL, *xerr = NULL;
		if (domxml_render(d, "fuzz-guest", &o, &xml, &xerr) == 0 && !strstr(xml, "<domain"))
			abort();
		free(xml);
		free(xerr);
		struct dhcp_host *h = NULL;
		size_t n = 0;
		if (dhcp_hosts_from_desc("fuzz-guest", d, &h, &n) == 0 && n > 0) {
			const struct dhcp_host *v[GUEST_NICS_MAX];
			struct dhcp_conf c = {0};
			for (size_t i = 0; i < n; i++)
				v[i] = &h[i];
			if (dhcp_conf_render(v, n, &c) == 0) {
				size_t lines = 0;
				for (const char *p = c.hosts; *p; p++)
					lines += *p == '\n';
				if (lines + c.skipped != n || strchr(c.hosts, '\r') ||
				    strchr(c.opts, '\r'))
					abort(); /* a value broke out of its line */
				dhcp_conf_done(&c);
			}
			dhcp_hosts_free(h, n);
		}
		json_t *back = guest_desc_to_json(d);
		json_decref(back);
		guest_desc_free(d);
	} else if (!err)
		abort(); /* every refusal names the field */
	free(err);
	json_decref(j);
	return 0;
}

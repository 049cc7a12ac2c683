/* Baseline for tests/bench/vm-create.sh: defines and starts domains from XML files straight
 * through the libvirt API, printing one "name milliseconds" line per domain (define + start
 * until libvirt reports running). */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/fs.h"
#include "common/macros.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s URI FILE.xml...\n", argv[0]);
		return 2;
	}
	virConnectPtr conn = virConnectOpen(argv[1]);
	if (!conn)
		return 1;
	int rc = 0;
	for (int i = 2; i < argc; i++) {
		_cleanup_free_ char *xml = NULL;
		if (read_file(argv[i], 1024 * 1024, &xml, NULL) < 0) {
			rc = 1;
			continue;
		}
		double t0 = now_ms();
		virDomainPtr d = virDomainDefineXML(conn, xml);
		if (!d || virDomainCreate(d) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], virGetLastErrorMessage());
			rc = 1;
		} else {
			int state = 0;
			virDomainGetState(d, &state, NULL, 0);
			printf("%s %.1f\n", virDomainGetName(d), now_ms() - t0);
		}
		if (d)
			virDomainFree(d);
	}
	virConnectClose(conn);
	return rc;
}

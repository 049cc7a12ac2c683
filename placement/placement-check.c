/* placement-check: checks (and with --fix moves) the threads of one QEMU pid, printing the
 * layout and a key=value report. For tests/integration/placement.sh and for debugging a node:
 *   placement-check [--cgroup-root=DIR] [--proc-root=DIR] [--partition=CG]
 *                   [--container-cgroup=CG] [--systemd=auto|no|yes] [--fix] PID NAME
 * Exit status: 0 placed (or fixed), 1 violations left, 2 usage or check error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "placement/placement.h"
#include "common/macros.h"
#include "common/parse.h"

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"cgroup-root", required_argument, NULL, 'c'},
	    {"proc-root", required_argument, NULL, 'p'},
	    {"partition", required_argument, NULL, 'P'},
	    {"container-cgroup", required_argument, NULL, 'C'},
	    {"systemd", required_argument, NULL, 's'},
	    {"fix", no_argument, NULL, 'f'},
	    {},
	};
	struct placement_opts o = {0};
	_cleanup_placement_ struct placement *p = NULL;
	struct placement_report rep = {0};
	_cleanup_free_ char *reason = NULL;
	bool fix = false;
	int c, r, pid;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
		switch (c) {
		case 'c':
			o.cgroup_root = optarg;
			break;
		case 'p':
			o.proc_root = optarg;
			break;
		case 'P':
			o.host_partition = optarg;
			break;
		case 'C':
			o.container_cgroup = optarg;
			break;
		case 's':
			if (streq(optarg, "no"))
				o.systemd = PLACEMENT_SYSTEMD_NO;
			else if (streq(optarg, "yes"))
				o.systemd = PLACEMENT_SYSTEMD_YES;
			else if (streq(optarg, "auto"))
				o.systemd = PLACEMENT_SYSTEMD_AUTO;
			else
				return 2;
			break;
		case 'f':
			fix = true;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2 || parse_int(argv[optind], 1, 1 << 30, &pid) < 0) {
		fprintf(stderr, "usage: placement-check [options] PID NAME\n");
		return 2;
	}
	r = placement_new(&o, &p);
	if (r < 0) {
		fprintf(stderr, "placement-check: %s\n", strerror(-r));
		return 2;
	}
	placement_describe(p, stdout);
	r = placement_check_pid(p, pid, argv[optind + 1], fix, &rep);
	if (r < 0) {
		fprintf(stderr, "placement-check: pid %d: %s\n", pid, strerror(-r));
		return 2;
	}
	printf("threads=%u misplaced=%u moved=%u left=%u systemd=%s target=%s violation=%s%s%s\n",
	       rep.n_threads, rep.n_misplaced, rep.n_moved, rep.n_left,
	       rep.systemd_used ? "yes" : "no", strempty(rep.target), strempty(rep.violation),
	       rep.error ? " error=" : "", rep.error ? strerror(-rep.error) : "");
	if (placement_violation_reason(p, &reason) >= 0)
		printf("reason=%s\n", reason);
	placement_report_done(&rep);
	return placement_violations(p) > 0 ? 1 : 0;
}

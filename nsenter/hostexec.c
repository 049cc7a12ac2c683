/* hostexec: runs one command in the namespaces of a host process (PID 1 by default).
 * Exit status: the command's; 128+n when it died of signal n; 124 on timeout; 126 when it
 * cannot be executed; 127 when it does not exist on the host; 125 when hostexec itself fails
 * (bad usage, missing target, no permission, unsupported namespace). */
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "common/macros.h"
#include "common/parse.h"
#include "nsenter/ns.h"

#define EXIT_TIMEOUT	124
#define EXIT_FAILURE_US 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND	127

/* The usage text: on stdout for --help (returns 0), else on stderr (returns the status of bad
 * usage). */
static int usage(bool help)
{
	fprintf(help ? stdout : stderr,
		"Usage: hostexec [--target PID] [--ns mnt,uts,ipc,net,pid,cgroup] [--timeout S]\n"
		"                [--cwd DIR] -- COMMAND [ARG...]\n"
		"Runs COMMAND in the namespaces of PID (default 1) with a clean environment\n"
		"(PATH=" NS_HOST_PATH ").\n");
	return help ? 0 : EXIT_FAILURE_US;
}

static int fail(const char *what, int r)
{
	fprintf(stderr, "hostexec: %s: %s\n", what, strerror(-r));
	return EXIT_FAILURE_US;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"target", required_argument, NULL, 't'},  {"ns", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 'T'}, {"cwd", required_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	struct ns_exec_opts o = {.target = 1, .namespaces = NS_ALL, .inherit_stdin = true};
	struct spawn_result res = {0};
	enum ns_step step;
	char what[256];
	int c, r, v;

	while ((c = getopt_long(argc, argv, "+t:n:T:w:h", options, NULL)) >= 0) {
		switch (c) {
		case 't':
			if (parse_int(optarg, 1, INT32_MAX, &v) < 0) {
				fprintf(stderr, "hostexec: invalid --target '%s'\n", optarg);
				return EXIT_FAILURE_US;
			}
			o.target = v;
			break;
		case 'n':
			if (ns_parse_list(optarg, &o.namespaces) < 0) {
				fprintf(stderr,
					"hostexec: invalid --ns '%s' (known: "
					"mnt,uts,ipc,net,pid,cgroup)\n",
					optarg);
				return EXIT_FAILURE_US;
			}
			break;
		case 'T':
			if (parse_int(optarg, 0, INT32_MAX / 1000, &v) < 0) {
				fprintf(stderr, "hostexec: invalid --timeout '%s' (seconds)\n",
					optarg);
				return EXIT_FAILURE_US;
			}
			o.timeout_ms = v * 1000;
			break;
		case 'w':
			o.cwd = optarg;
			break;
		case 'h':
			return usage(true);
		default:
			return usage(false);
		}
	}
	if (optind >= argc)
		return usage(false);
	char **cmd = argv + optind;

	/* Signals to hostexec reach the command through the child's own handling of the
	 * terminal; ignoring SIGPIPE keeps hostexec alive to report the status. */
	signal(SIGPIPE, SIG_IGN);
	r = ns_exec_full(&o, cmd, &res, &step);
	if (r < 0) {
		switch (step) {
		case NS_STEP_TARGET:
			if (r == -ESRCH)
				fprintf(stderr, "hostexec: target process %d does not exist\n",
					(int)o.target);
			else if (r == -EPERM)
				fprintf(
				    stderr,
				    "hostexec: no permission to enter the namespaces of process %d "
				    "(needs root / CAP_SYS_ADMIN and CAP_SYS_PTRACE)\n",
				    (int)o.target);
			else if (r == -EOPNOTSUPP)
				fprintf(stderr,
					"hostexec: a requested namespace is not supported by this "
					"kernel\n");
			else
				return fail("cannot open the target's namespaces", r);
			return EXIT_FAILURE_US;
		case NS_STEP_SETNS:
			snprintf(what, sizeof(what), "cannot enter the namespaces of process %d",
				 (int)o.target);
			return fail(what, r);
		case NS_STEP_CWD:
			snprintf(what, sizeof(what), "cannot change directory to %s", o.cwd);
			return fail(what, r);
		case NS_STEP_FORK:
			return fail("cannot fork into the PID namespace", r);
		default:
			fprintf(stderr, "hostexec: %s: %s\n", cmd[0],
				r == -ENOENT ? "command not found" : strerror(-r));
			return r == -ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN;
		}
	}
	if (res.timed_out) {
		fprintf(stderr, "hostexec: %s timed out after %d s\n", cmd[0], o.timeout_ms / 1000);
		return EXIT_TIMEOUT;
	}
	return res.exit_status;
}

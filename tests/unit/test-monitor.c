/* agent/monitor.c: the monitor allow-list, table-driven (security review L9). */
#include "agent/monitor.h"
#include "test-common.h"

static const struct {
	const char *cmd;
	bool qmp;
	int want;	       /* 0, -EPERM or -EINVAL */
	const char *forwarded; /* what QEMU gets when allowed */
} cases[] = {
    /* HMP: info and the control words, one line. */
    {"info status", false, 0, "info status"},
    {"info vnc", false, 0, "info vnc"},
    {"system_reset", false, 0, "system_reset"},
    {"system_powerdown", false, 0, "system_powerdown"},
    {"stop", false, 0, "stop"},
    {"cont", false, 0, "cont"},
    {"system_reset now", false, -EPERM, NULL},
    {"info status; quit", false, -EPERM, NULL},
    {"info status\nquit", false, -EPERM, NULL},
    {"info status\rquit", false, -EPERM, NULL},
    {"quit", false, -EPERM, NULL},
    {"migrate tcp:1.2.3.4:4444", false, -EPERM, NULL},
    {"drive_add 0 file=/etc/shadow", false, -EPERM, NULL},
    {"", false, -EINVAL, NULL},
    /* QMP: query-* and control, strictly parsed and re-serialised. */
    {"{\"execute\":\"query-status\"}", true, 0, "{\"execute\":\"query-status\"}"},
    {"{ \"execute\" : \"query-vnc\" , \"id\" : 7 }", true, 0,
     "{\"execute\":\"query-vnc\",\"id\":7}"},
    {"{\"execute\":\"system_reset\",\"arguments\":{}}", true, 0,
     "{\"execute\":\"system_reset\",\"arguments\":{}}"},
    {"{\"execute\":\"quit\"}", true, -EPERM, NULL},
    {"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"quit\"}}", true,
     -EPERM, NULL},
    /* Duplicate keys: the last would win in a lax parser, the first in another. */
    {"{\"execute\":\"human-monitor-command\",\"execute\":\"query-status\"}", true, -EINVAL, NULL},
    {"{\"execute\":\"query-status\",\"execute\":\"quit\"}", true, -EINVAL, NULL},
    /* Keys besides execute/arguments/id. */
    {"{\"exec-oob\":\"migrate\",\"execute\":\"query-status\"}", true, -EPERM, NULL},
    {"{\"execute\":\"query-status\",\"control\":{}}", true, -EPERM, NULL},
    {"{\"execute\":\"query-status\",\"arguments\":[]}", true, -EINVAL, NULL},
    {"{\"execute\":7}", true, -EINVAL, NULL},
    {"[\"query-status\"]", true, -EINVAL, NULL},
    {"{\"execute\":\"query-status\"} {\"execute\":\"quit\"}", true, -EINVAL, NULL},
    {"not json", true, -EINVAL, NULL},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *fwd = NULL;
		int r = monitor_filter(cases[i].cmd, cases[i].qmp, &fwd);
		if (r != cases[i].want)
			fail_msg("case %zu %s '%s': got %d, want %d", i,
				 cases[i].qmp ? "QMP" : "HMP", cases[i].cmd, r, cases[i].want);
		if (r == 0) {
			assert_non_null(fwd);
			if (!streq(fwd, cases[i].forwarded))
				fail_msg("case %zu: forwarded '%s', want '%s'", i, fwd,
					 cases[i].forwarded);
		} else
			assert_null(fwd);
		free(fwd);
	}
}

TEST_MAIN(cmocka_unit_test(test_table))

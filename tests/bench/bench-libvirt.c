/* Baseline for tests/bench/vm-create.sh and tests/bench/boot-storm.sh: defines and starts domains
 * from XML files straight through the libvirt API, printing one "name milliseconds" line per
 * domain (define + start until libvirt reports running). With --parallel, one thread per file,
 * all released at once on one shared connection (a boot storm), and a last line
 * "total milliseconds" from the release to the last domain running. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fs.h"
#include "common/macros.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

struct job {
	virConnectPtr conn;
	const char *file;
	char *xml;
	pthread_barrier_t *barrier;
	double t0, ms;
	char name[128];
	int rc;
};

static void *run_one(void *userdata)
{
	struct job *j = userdata;
	if (j->barrier)
		pthread_barrier_wait(j->barrier);
	double t0 = j->barrier ? j->t0 : now_ms();
	virDomainPtr d = virDomainDefineXML(j->conn, j->xml);
	if (!d || virDomainCreate(d) < 0) {
		fprintf(stderr, "%s: %s\n", j->file, virGetLastErrorMessage());
		j->rc = 1;
	} else {
		int state = 0;
		virDomainGetState(d, &state, NULL, 0);
		j->ms = now_ms() - t0;
		snprintf(j->name, sizeof(j->name), "%s", virDomainGetName(d));
	}
	if (d)
		virDomainFree(d);
	return NULL;
}

int main(int argc, char **argv)
{
	bool parallel = argc > 1 && strcmp(argv[1], "--parallel") == 0;
	int first = parallel ? 3 : 2;
	if (argc < first + 1) {
		fprintf(stderr, "usage: %s [--parallel] URI FILE.xml...\n", argv[0]);
		return 2;
	}
	virConnectPtr conn = virConnectOpen(argv[first - 1]);
	if (!conn)
		return 1;
	int n = argc - first, rc = 0;
	struct job *jobs = calloc((size_t)n, sizeof(*jobs));
	pthread_t *threads = calloc((size_t)n, sizeof(*threads));
	pthread_barrier_t barrier;
	if (!jobs || !threads)
		return 1;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct job){.conn = conn, .file = argv[first + i]};
		if (read_file(jobs[i].file, 1024 * 1024, &jobs[i].xml, NULL) < 0) {
			fprintf(stderr, "%s: cannot read\n", jobs[i].file);
			return 1;
		}
	}
	if (parallel) {
		/* n workers and this thread: the clock starts when everyone is released. */
		pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
		for (int i = 0; i < n; i++) {
			jobs[i].barrier = &barrier;
			pthread_create(&threads[i], NULL, run_one, &jobs[i]);
		}
		double t0 = now_ms();
		for (int i = 0; i < n; i++)
			jobs[i].t0 = t0;
		pthread_barrier_wait(&barrier);
		for (int i = 0; i < n; i++)
			pthread_join(threads[i], NULL);
		double total = now_ms() - t0;
		for (int i = 0; i < n; i++) {
			if (!jobs[i].rc)
				printf("%s %.1f\n", jobs[i].name, jobs[i].ms);
			rc |= jobs[i].rc;
		}
		printf("total %.1f\n", total);
		pthread_barrier_destroy(&barrier);
	} else {
		for (int i = 0; i < n; i++) {
			run_one(&jobs[i]);
			if (!jobs[i].rc)
				printf("%s %.1f\n", jobs[i].name, jobs[i].ms);
			rc |= jobs[i].rc;
		}
	}
	for (int i = 0; i < n; i++)
		free(jobs[i].xml);
	free(jobs);
	free(threads);
	virConnectClose(conn);
	return rc;
}

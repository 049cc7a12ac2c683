/* ocreconciler: OnecloudCluster spec -> Kubernetes objects (deploy/reconciler/README.md). */
#include <getopt.h>
#include <signal.h>
#include <time.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/parse.h"
#include "deploy/reconciler/kube.h"
#include "deploy/reconciler/reconcile.h"
#include "deploy/reconciler/render.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = 1;
}

static void help(const char *argv0)
{
	printf("Usage: %s -f CLUSTER.yaml [--dry-run]\n"
	       "       %s -f CLUSTER.yaml [--server URL] [--token-file F] [--ca-file F]\n"
	       "          [--insecure] [--once | --interval SECONDS] [--log-level LEVEL]\n\n"
	       "Renders the Kubernetes objects of an OnecloudCluster and applies them with\n"
	       "server-side apply. Without --server: in-cluster defaults\n"
	       "(https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, " SA_DIR "/token\n"
	       "and ca.crt). Without --interval, one pass (--once). Exit status: 0 done,\n"
	       "1 an object failed or the spec is invalid, 2 usage.\n",
	       argv0, argv0);
}

struct args {
	const char *file;
	bool dry_run, once;
	int interval;
	struct ocr_kube kube;
};

static int set_str(char **slot, const char *v)
{
	free(*slot);
	*slot = strdup(v);
	return *slot ? 0 : -ENOMEM;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	enum {
		ARG_DRY_RUN = 0x100,
		ARG_SERVER,
		ARG_TOKEN,
		ARG_CA,
		ARG_INSECURE,
		ARG_ONCE,
		ARG_INTERVAL,
		ARG_LOG_LEVEL,
		ARG_VERSION
	};
	static const struct option opts[] = {
	    {"file", required_argument, NULL, 'f'},
	    {"dry-run", no_argument, NULL, ARG_DRY_RUN},
	    {"server", required_argument, NULL, ARG_SERVER},
	    {"token-file", required_argument, NULL, ARG_TOKEN},
	    {"ca-file", required_argument, NULL, ARG_CA},
	    {"insecure", no_argument, NULL, ARG_INSECURE},
	    {"once", no_argument, NULL, ARG_ONCE},
	    {"interval", required_argument, NULL, ARG_INTERVAL},
	    {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
	    {"version", no_argument, NULL, ARG_VERSION},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	bool token_set = false, ca_set = false;
	int c, r = 0;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'f':
			a->file = optarg;
			break;
		case ARG_DRY_RUN:
			a->dry_run = true;
			break;
		case ARG_SERVER:
			r = set_str(&a->kube.server, optarg);
			break;
		case ARG_TOKEN:
			token_set = true;
			r = set_str(&a->kube.token_file, optarg);
			break;
		case ARG_CA:
			ca_set = true;
			r = set_str(&a->kube.ca_file, optarg);
			break;
		case ARG_INSECURE:
			a->kube.insecure = true;
			break;
		case ARG_ONCE:
			a->once = true;
			break;
		case ARG_INTERVAL:
			if (parse_int(optarg, 1, 86400, &a->interval) < 0) {
				fprintf(stderr,
					"ocreconciler: --interval: expected 1..86400 seconds, "
					"got '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case ARG_LOG_LEVEL: {
			int l = log_level_from_string(optarg);
			if (l < 0) {
				fprintf(stderr, "ocreconciler: --log-level: unknown level '%s'\n",
					optarg);
				return -EINVAL;
			}
			log_set_max_level(l);
			break;
		}
		case ARG_VERSION:
			printf("ocreconciler %s\n", PACKAGE_VERSION);
			exit(0);
		case 'h':
			help(argv[0]);
			exit(0);
		default:
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, "ocreconciler: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!a->file) {
		fprintf(stderr, "ocreconciler: -f CLUSTER.yaml is required\n");
		return -EINVAL;
	}
	if (a->once && a->interval) {
		fprintf(stderr, "ocreconciler: --once and --interval exclude each other\n");
		return -EINVAL;
	}
	if (a->dry_run)
		return 0;
	if (!a->kube.server) {
		const char *h = getenv("KUBERNETES_SERVICE_HOST");
		const char *p = getenv("KUBERNETES_SERVICE_PORT");
		if (isempty(h) || isempty(p)) {
			fprintf(stderr, "ocreconciler: no --server and not in a cluster "
					"(KUBERNETES_SERVICE_HOST/PORT unset)\n");
			return -EINVAL;
		}
		bool v6 = strchr(h, ':');
		a->kube.server = strjoin("https://", v6 ? "[" : "", h, v6 ? "]" : "", ":", p);
		if (!a->kube.server ||
		    (!token_set && set_str(&a->kube.token_file, SA_DIR "/token") < 0) ||
		    (!ca_set && set_str(&a->kube.ca_file, SA_DIR "/ca.crt") < 0))
			return -ENOMEM;
	}
	a->kube.server[strlen_trim_slashes(a->kube.server)] = 0;
	if (!strneq(a->kube.server, "https://", 8) && !strneq(a->kube.server, "http://", 7)) {
		fprintf(stderr, "ocreconciler: --server must be an http(s) URL, got '%s'\n",
			a->kube.server);
		return -EINVAL;
	}
	return 0;
}

static int load(const char *file, struct ocr_cluster **ret)
{
	_cleanup_free_ char *err = NULL;
	int r = ocr_cluster_load(file, ret, &err);
	if (r < 0)
		log_error("Invalid cluster spec, nothing applied: %s", err ? err : strerror(-r));
	return r;
}

static int pass(struct args *a)
{
	_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = NULL;
	int r = load(a->file, &c);
	if (r < 0)
		return r;
	r = ocr_kube_load_token(&a->kube);
	if (r < 0)
		return log_error_errno(r, "Cannot read token file %s: %m", a->kube.token_file);
	struct ocr_stats st;
	int failed = ocr_reconcile(&a->kube, c, stdout, &st);
	printf("summary: created=%u updated=%u unchanged=%u deleted=%u failed=%u\n", st.created,
	       st.updated, st.unchanged, st.deleted, st.failed);
	fflush(stdout);
	return failed > 0 ? -EIO : 0;
}

int main(int argc, char **argv)
{
	struct args a = {};
	log_open();
	int r = parse_args(argc, argv, &a);
	if (r < 0) {
		ocr_kube_done(&a.kube);
		return 2;
	}
	if (a.dry_run) {
		/* Contacts nothing: renders and prints. */
		_cleanup_(ocr_cluster_freep) struct ocr_cluster *c = NULL;
		json_auto_t *objs = NULL;
		ocr_kube_done(&a.kube);
		if (load(a.file, &c) < 0)
			return 1;
		r = ocr_render(c, &objs);
		if (r >= 0)
			r = ocr_dump_objects(objs, stdout);
		if (r < 0) {
			log_error_errno(r, "Cannot render %s: %m", a.file);
			return 1;
		}
		return 0;
	}
	if (!a.interval) {
		r = pass(&a);
		ocr_kube_done(&a.kube);
		return r < 0 ? 1 : 0;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	while (!stop_requested) {
		(void)pass(&a);
		struct timespec ts = {.tv_sec = a.interval};
		/* A signal cuts the wait short. */
		while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	log_info("Stopping");
	ocr_kube_done(&a.kube);
	return 0;
}

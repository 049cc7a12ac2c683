/* hostctl: the local admin client. Talks HTTP to the agent over its admin unix socket (trusted:
 * no token), through common/http-client, and prints replies readably. Exit codes: 0 success, 1 the
 * agent answered with an error, 2 usage error, 3 the agent could not be reached. */
#include <getopt.h>
#include <jansson.h>

#include "agent/desc.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/macros.h"
#include "common/path.h"

#define REPLY_MAX (64 * 1024 * 1024)

static void print_reply(const char *text, long code, bool raw)
{
	json_error_t e;
	json_t *j = raw ? NULL : json_loads(text, 0, &e);
	if (!j) {
		fputs(text, code < 400 ? stdout : stderr);
		if (*text && text[strlen(text) - 1] != '\n')
			fputc('\n', code < 400 ? stdout : stderr);
		return;
	}
	json_t *reasons = json_object_get(j, "reasons");
	if (code >= 400 && json_is_array(reasons)) {
		size_t i;
		json_t *v;
		printf("not ready:\n");
		json_array_foreach (reasons, i, v)
			printf("  - %s\n", strempty(json_string_value(v)));
	} else if (code >= 400) {
		json_t *err = j;
		const char *details = json_string_value(json_object_get(err, "details"));
		const char *cls = json_string_value(json_object_get(err, "class"));
		if (details)
			fprintf(stderr, "hostctl: %s (%ld %s)\n", details, code, strempty(cls));
		else
			json_dumpf(j, stderr, JSON_INDENT(2));
		if (!details)
			fputc('\n', stderr);
	} else {
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		fputc('\n', stdout);
	}
	json_decref(j);
}

/* Returns the process exit code. timeout in seconds, 0: none. */
static int request(const char *sock, const char *method, const char *path, const char *body,
		   long timeout, bool raw)
{
	_cleanup_free_ char *url = strjoin("http://localhost", path);
	if (!url) {
		fprintf(stderr, "hostctl: out of memory\n");
		return 3;
	}
	struct http_request req = {
	    .method = method,
	    .url = url,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .timeout_ms = timeout > 0 ? timeout * 1000 : -1,
	    .max_response = REPLY_MAX,
	    .unix_socket = sock,
	};
	struct http_response resp = {0};
	int r = http_request_run(&req, &resp);
	if (r < 0) {
		fprintf(stderr, "hostctl: cannot reach the agent at %s: %s\n", sock,
			r == -EFBIG ? "reply too large" : strerror(-r));
		return 3;
	}
	print_reply(resp.body, resp.status, raw);
	int ret = resp.status >= 200 && resp.status < 300 ? 0 : 1;
	http_response_done(&resp);
	return ret;
}

/* The usage text: on stdout for --help (returns 0), else on stderr (returns 2, bad usage). */
static int usage(bool help)
{
	fputs("Usage: hostctl [--socket PATH] COMMAND\n"
	      "  vm list                       guests on this host with status\n"
	      "  vm show SID                   status and console (port, address, password)\n"
	      "  vm status SID                 status of one guest\n"
	      "  vm create SID FILE.json       create from a descriptor ({\"desc\": ...} or the "
	      "desc)\n"
	      "  vm start|reboot|suspend|resume SID\n"
	      "  vm stop SID [--force] [--timeout S]\n"
	      "  vm delete SID\n"
	      "  vm monitor SID CMD [--qmp]    QEMU monitor passthrough\n"
	      "  vm ping-agent SID             does the guest agent answer (--timeout S)\n"
	      "  vm agent-info SID             the guest OS as its agent reports it\n"
	      "  vm agent-network SID          the guest's interfaces and addresses\n"
	      "  vm agent-command SID JSON     a read-only guest agent command\n"
	      "  vm set-password SID USER      a user's password in the guest, read from stdin\n"
	      "  status                        readiness, with the reasons when not ready\n"
	      "  modules                       kernel modules: last check\n"
	      "  modules ensure                check and load the kernel modules again\n"
	      "  host                          host information (re-read)\n"
	      "  metrics                       Prometheus metrics\n"
	      "  version                       agent version\n"
	      "Options: --socket PATH (default " CONFIG_DEFAULT_ADMIN_SOCKET
	      ", or $HOSTCTL_SOCKET),\n"
	      "         --timeout S (stop: guest shutdown timeout; otherwise request timeout)\n",
	      help ? stdout : stderr);
	return help ? 0 : 2;
}

static char *dump(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s;
}

static int vm_command(const char *sock, int argc, char **argv, bool force, long timeout, bool qmp)
{
	char path[256];
	if (argc < 1)
		return usage(false);
	const char *verb = argv[0];
	if (streq(verb, "list") && argc == 1)
		return request(sock, "GET", "/servers", NULL, timeout, false);
	if (argc < 2)
		return usage(false);
	const char *sid = argv[1];
	/* The agent validates ids too; checking here gives a clear message before any I/O. */
	if (!id_is_valid(sid, GUEST_ID_MAX)) {
		fprintf(stderr, "hostctl: invalid guest id '%s'\n", sid);
		return 2;
	}
	if (streq(verb, "status") && argc == 2) {
		snprintf(path, sizeof(path), "/servers/%s/status", sid);
		return request(sock, "GET", path, NULL, timeout, false);
	}
	/* show: the status, then the console (port, address, password: admin socket only). */
	if (streq(verb, "show") && argc == 2) {
		snprintf(path, sizeof(path), "/servers/%s/status", sid);
		int r = request(sock, "GET", path, NULL, timeout, false);
		if (r != 0)
			return r;
		snprintf(path, sizeof(path), "/servers/%s/console", sid);
		return request(sock, "GET", path, NULL, timeout, false);
	}
	if (streq(verb, "delete") && argc == 2) {
		snprintf(path, sizeof(path), "/servers/%s", sid);
		return request(sock, "DELETE", path, NULL, timeout, false);
	}
	if (streq(verb, "create") && argc == 3) {
		_cleanup_free_ char *text = NULL;
		json_error_t e;
		int r = read_file(argv[2], GUEST_DESC_MAX, &text, NULL);
		if (r < 0) {
			fprintf(stderr, "hostctl: cannot read %s: %s\n", argv[2], strerror(-r));
			return 2;
		}
		json_t *j = json_loads(text, 0, &e);
		if (!j || !json_is_object(j)) {
			fprintf(stderr, "hostctl: %s:%d:%d: %s\n", argv[2], e.line, e.column,
				j ? "not a JSON object" : e.text);
			json_decref(j);
			return 2;
		}
		if (!json_object_get(j, "desc"))
			j = json_pack("{s:o}", "desc", j);
		_cleanup_free_ char *body = dump(j);
		snprintf(path, sizeof(path), "/servers/%s/create", sid);
		return request(sock, "POST", path, body ? body : "{}", 0, false);
	}
	if (streq(verb, "stop") && argc == 2) {
		_cleanup_free_ char *body =
		    dump(json_pack("{s:I,s:b}", "timeout", (json_int_t)(timeout > 0 ? timeout : 30),
				   "is_force", force));
		snprintf(path, sizeof(path), "/servers/%s/stop", sid);
		return request(sock, "POST", path, body ? body : "{}", 0, false);
	}
	if (streq(verb, "monitor") && argc == 3) {
		_cleanup_free_ char *body =
		    dump(json_pack("{s:s,s:b}", "cmd", argv[2], "qmp", qmp));
		snprintf(path, sizeof(path), "/servers/%s/monitor", sid);
		return request(sock, "POST", path, body ? body : "{}", timeout, false);
	}
	/* The guest agent (qga-*): answered synchronously on the admin socket. The request timeout
	 * leaves room for the agent's. */
	if (streq(verb, "ping-agent") && argc == 2) {
		_cleanup_free_ char *body =
		    dump(json_pack("{s:b,s:I}", "async", 0, "timeout", (json_int_t)timeout));
		snprintf(path, sizeof(path), "/servers/%s/qga-guest-ping", sid);
		return request(sock, "POST", path, body ? body : "{}", timeout ? timeout + 5 : 0,
			       false);
	}
	if ((streq(verb, "agent-info") || streq(verb, "agent-network")) && argc == 2) {
		snprintf(path, sizeof(path), "/servers/%s/%s", sid,
			 streq(verb, "agent-info") ? "qga-get-os-info" : "qga-get-network");
		return request(sock, "POST", path, "{}", timeout, false);
	}
	if (streq(verb, "agent-command") && argc == 3) {
		_cleanup_free_ char *body = dump(json_pack("{s:s}", "command", argv[2]));
		snprintf(path, sizeof(path), "/servers/%s/qga-command", sid);
		return request(sock, "POST", path, body ? body : "{}", timeout, false);
	}
	if (streq(verb, "set-password") && argc == 3) {
		/* Never on the command line (ps, shell history): one line on stdin. */
		char *line = NULL;
		size_t cap = 0;
		ssize_t n = getline(&line, &cap, stdin);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = 0;
		if (n <= 0) {
			erase_and_free(line);
			fprintf(stderr, "hostctl: no password on stdin\n");
			return 2;
		}
		json_t *j = json_pack("{s:s,s:s}", "username", argv[2], "password", line);
		line = erase_and_free(line);
		char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		snprintf(path, sizeof(path), "/servers/%s/qga-set-password", sid);
		int r = request(sock, "POST", path, body ? body : "{}", timeout, false);
		erase_and_free(body);
		return r;
	}
	static const char *const simple[] = {"start", "reboot", "suspend", "resume"};
	for (size_t i = 0; i < ELEMENTSOF(simple); i++)
		if (streq(verb, simple[i]) && argc == 2) {
			snprintf(path, sizeof(path), "/servers/%s/%s", sid, verb);
			return request(sock, "POST", path, "{}", timeout, false);
		}
	return usage(false);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},  {"force", no_argument, NULL, 'f'},
	    {"timeout", required_argument, NULL, 't'}, {"qmp", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},	       {},
	};
	const char *sock = getenv("HOSTCTL_SOCKET");
	bool force = false, qmp = false;
	long timeout = 0;
	int c, ret;
	if (isempty(sock))
		sock = CONFIG_DEFAULT_ADMIN_SOCKET;
	/* GNU getopt permutes: options may follow the command words. */
	while ((c = getopt_long(argc, argv, "s:ft:qh", opts, NULL)) >= 0)
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'q':
			qmp = true;
			break;
		case 't': {
			char *end;
			errno = 0;
			timeout = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || timeout <= 0 || timeout > 86400) {
				fprintf(stderr, "hostctl: invalid --timeout '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'h':
			return usage(true);
		default:
			return usage(false);
		}
	int n = argc - optind;
	char **args = argv + optind;
	if (n < 1)
		return usage(false);
	if (streq(args[0], "vm"))
		ret = vm_command(sock, n - 1, args + 1, force, timeout, qmp);
	else if (streq(args[0], "status") && n == 1)
		ret = request(sock, "GET", "/readyz", NULL, timeout, false);
	else if (streq(args[0], "modules") && n == 1)
		ret = request(sock, "GET", "/modules", NULL, timeout, false);
	else if (streq(args[0], "modules") && n == 2 && streq(args[1], "ensure"))
		ret = request(sock, "POST", "/modules/ensure", "{}", timeout, false);
	else if (streq(args[0], "host") && n == 1)
		ret = request(sock, "POST", "/hosts/local/sync", "{}", timeout, false);
	else if (streq(args[0], "metrics") && n == 1)
		ret = request(sock, "GET", "/metrics", NULL, timeout, true);
	else if (streq(args[0], "version") && n == 1)
		ret = request(sock, "GET", "/version", NULL, timeout, false);
	else
		ret = usage(false);
	return ret;
}

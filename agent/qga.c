/* The guest agent's pure parts: allow-list, request bodies, replies, and the table of which
 * guests' agents answer (loop thread). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/qga.h"
#include "common/json-util.h"
#include "common/macros.h"

static const char *const op_names[_QGA_OP_MAX] = {
    [QGA_OP_PING] = "qga-guest-ping",	      [QGA_OP_SET_PASSWORD] = "qga-set-password",
    [QGA_OP_COMMAND] = "qga-command",	      [QGA_OP_GET_NETWORK] = "qga-get-network",
    [QGA_OP_GET_OS_INFO] = "qga-get-os-info", [QGA_OP_GUEST_INFO] = "qga-guest-info-task",
    [QGA_OP_SET_NETWORK] = "qga-set-network",
};

DEFINE_STRING_TABLE_TO(qga_op, enum qga_op, op_names, "?")

/* Commands that only read the guest's state. Not here, on purpose: guest-exec (runs
 * programs), guest-file-* (opens, reads and writes any file as root), guest-set-* (time,
 * vcpus, memory blocks, user passwords: the latter has its own route), guest-fsfreeze-freeze
 * and -thaw, guest-fstrim, guest-shutdown, guest-suspend-*, guest-ssh-add/remove-authorized-keys,
 * guest-exec-status (reads another exec's output). */
static const char *const allowed[] = {
    "guest-ping",
    "guest-info",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-time",
    "guest-get-timezone",
    "guest-get-users",
    "guest-get-vcpus",
    "guest-get-fsinfo",
    "guest-get-disks",
    "guest-get-memory-blocks",
    "guest-get-memory-block-info",
    "guest-get-cpustats",
    "guest-get-diskstats",
    "guest-network-get-interfaces",
    "guest-fsfreeze-status",
};

bool qga_command_allowed(const char *name)
{
	if (!name)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
		if (streq(allowed[i], name))
			return true;
	return false;
}

int qga_parse_timeout(json_t *body, int def, int *ret, char *err, size_t size)
{
	json_t *t = json_object_get(body, "timeout");
	if (!t || json_is_null(t)) {
		*ret = def;
		return 0;
	}
	if (!json_is_integer(t) || json_integer_value(t) < 0) {
		snprintf(err, size, "timeout: expected a number of seconds (0..%d)",
			 QGA_TIMEOUT_MAX);
		return -EINVAL;
	}
	json_int_t v = json_integer_value(t);
	*ret = v == 0 ? def : (int)MIN(v, (json_int_t)QGA_TIMEOUT_MAX);
	return 0;
}

int qga_parse_command(json_t *body, char **ret_cmd, char **ret_name, int *ret_timeout, char *err,
		      size_t size)
{
	json_t *c = json_object_get(body, "command");
	json_auto_t *parsed = NULL;
	if (json_is_string(c)) {
		if (json_string_length(c) == 0 || json_string_length(c) > QGA_COMMAND_MAX) {
			snprintf(err, size, "command: empty or longer than %d bytes",
				 QGA_COMMAND_MAX);
			return -EINVAL;
		}
		json_error_t e;
		parsed = json_loadb(json_string_value(c), json_string_length(c),
				    JSON_REJECT_DUPLICATES, &e);
		if (!parsed) {
			snprintf(err, size, "command: not JSON (column %d)", e.column);
			return -EINVAL;
		}
		c = parsed;
	} else if (!json_is_object(c)) {
		snprintf(err, size,
			 "command: missing; expected the agent command as JSON text, "
			 "{\"execute\": NAME, \"arguments\": {...}}");
		return -EINVAL;
	}
	if (!json_is_object(c)) {
		snprintf(err, size, "command: expected a JSON object");
		return -EINVAL;
	}
	const char *key;
	json_t *v;
	json_object_foreach (c, key, v)
		if (!streq(key, "execute") && !streq(key, "arguments")) {
			snprintf(err, size,
				 "command: unexpected key %s (only execute and arguments)",
				 ju_quote(key).s);
			return -EINVAL;
		}
	json_t *ex = json_object_get(c, "execute"), *args = json_object_get(c, "arguments");
	if (!json_is_string(ex) || json_string_length(ex) == 0) {
		snprintf(err, size, "command: execute: missing or not a string");
		return -EINVAL;
	}
	if (args && !json_is_object(args)) {
		snprintf(err, size, "command: arguments: expected an object");
		return -EINVAL;
	}
	const char *name = json_string_value(ex);
	if (!qga_command_allowed(name)) {
		snprintf(err, size,
			 "guest agent command %s is not allowed: qga-command forwards read-only "
			 "commands only (guest-ping, guest-info, guest-get-*, "
			 "guest-network-get-interfaces, guest-fsfreeze-status)",
			 ju_quote(name).s);
		return -EPERM;
	}
	int r = qga_parse_timeout(body, QGA_TIMEOUT_DEFAULT, ret_timeout, err, size);
	if (r < 0)
		return r;
	json_auto_t *out = args ? json_pack("{s:s,s:O}", "execute", name, "arguments", args)
				: json_pack("{s:s}", "execute", name);
	char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	if (!text)
		return -ENOMEM;
	char *n = strdup(name);
	if (!n) {
		free(text);
		return -ENOMEM;
	}
	*ret_name = n;
	*ret_cmd = text;
	return 0;
}

int qga_parse_set_password(json_t *body, const char **ret_user, const char **ret_password,
			   bool *ret_crypted, char *err, size_t size)
{
	json_t *u = json_object_get(body, "username"), *p = json_object_get(body, "password"),
	       *c = json_object_get(body, "crypted");
	if (!json_is_string(u) || json_string_length(u) == 0) {
		snprintf(err, size, "username: missing or not a string");
		return -EINVAL;
	}
	const char *user = json_string_value(u);
	if (json_string_length(u) > QGA_USERNAME_MAX || strlen(user) != json_string_length(u)) {
		snprintf(err, size, "username: longer than %d bytes or contains NUL",
			 QGA_USERNAME_MAX);
		return -EINVAL;
	}
	/* A user name as useradd takes it: no path, shell or field separators. */
	for (const char *s = user; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.' ||
		      (*s == '$' && !s[1])) ||
		    (s == user && *s == '-')) {
			snprintf(err, size,
				 "username: only letters, digits, '_', '-', '.' allowed");
			return -EINVAL;
		}
	if (!json_is_string(p) || json_string_length(p) == 0) {
		snprintf(err, size, "password: missing or not a string");
		return -EINVAL;
	}
	const char *pw = json_string_value(p);
	if (json_string_length(p) > QGA_PASSWORD_MAX || strlen(pw) != json_string_length(p)) {
		snprintf(err, size, "password: longer than %d bytes or contains NUL",
			 QGA_PASSWORD_MAX);
		return -EINVAL;
	}
	if (c && !json_is_boolean(c)) {
		snprintf(err, size, "crypted: expected a boolean");
		return -EINVAL;
	}
	*ret_user = user;
	*ret_password = pw;
	*ret_crypted = json_is_true(c);
	return 0;
}

char *qga_command_text(const char *name)
{
	json_auto_t *j = json_pack("{s:s}", "execute", name);
	return j ? json_dumps(j, JSON_COMPACT) : NULL;
}

int qga_parse_reply(const char *text, json_t **ret, char *err, size_t size)
{
	json_error_t e;
	json_auto_t *j = text ? json_loads(text, JSON_DECODE_ANY, &e) : NULL;
	if (!json_is_object(j)) {
		snprintf(err, size, "the guest agent's reply is not a JSON object");
		return -EBADMSG;
	}
	json_t *r = json_object_get(j, "return");
	if (r) {
		*ret = json_incref(r);
		return 0;
	}
	json_t *error = json_object_get(j, "error");
	if (json_is_object(error)) {
		const char *cls = json_string_value(json_object_get(error, "class"));
		const char *desc = json_string_value(json_object_get(error, "desc"));
		snprintf(err, size, "%s%s%s", strempty(cls), cls && desc ? ": " : "",
			 desc  ? desc
			 : cls ? ""
			       : "the guest agent reported an error");
		return -EREMOTEIO;
	}
	if (json_object_size(j) == 0) {
		*ret = json_null();
		return 0;
	}
	snprintf(err, size, "the guest agent's reply has neither return nor error");
	return -EBADMSG;
}

json_t *qga_os_info(json_t *ret)
{
	static const char *const keys[] = {"id",      "kernel-release", "kernel-version",
					   "machine", "name",		"pretty-name",
					   "version", "version-id"};
	json_t *o = json_object();
	for (size_t i = 0; o && i < ELEMENTSOF(keys); i++) {
		const char *v = json_string_value(json_object_get(ret, keys[i]));
		if (json_object_set_new(o, keys[i], json_string(v ? v : "")) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* ---- the tracker: a small array sorted by sid ---- */

struct qga_entry {
	char *sid;
	enum qga_channel channel;
	enum qga_answer answer;
	uint64_t probed_usec;
};

struct qga_tracker {
	struct qga_entry *e;
	size_t n, alloc;
};

int qga_tracker_new(struct qga_tracker **ret)
{
	struct qga_tracker *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	*ret = t;
	return 0;
}

struct qga_tracker *qga_tracker_free(struct qga_tracker *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].sid);
	free(t->e);
	free(t);
	return NULL;
}

static size_t find(const struct qga_tracker *t, const char *sid, bool *found)
{
	static_assert(offsetof(struct qga_entry, sid) == 0, "sorted by the first member");
	return keyed_find(t->e, t->n, sizeof(*t->e), sid, found);
}

static struct qga_entry *ensure(struct qga_tracker *t, const char *sid)
{
	bool found;
	size_t i = find(t, sid, &found);
	if (found)
		return &t->e[i];
	return keyed_insert(&t->e, &t->n, &t->alloc, sizeof(*t->e), i, sid);
}

int qga_tracker_channel(struct qga_tracker *t, const char *sid, enum qga_channel ch)
{
	struct qga_entry *e = ensure(t, sid);
	if (!e)
		return -ENOMEM;
	if (e->channel != ch) {
		e->channel = ch;
		e->answer = ch == QGA_CHANNEL_DISCONNECTED ? QGA_ANSWER_NO : QGA_ANSWER_UNKNOWN;
		e->probed_usec = 0;
	}
	return 0;
}

int qga_tracker_answered(struct qga_tracker *t, const char *sid, bool answered, uint64_t now_usec)
{
	struct qga_entry *e = ensure(t, sid);
	if (!e)
		return -ENOMEM;
	e->answer = answered ? QGA_ANSWER_YES : QGA_ANSWER_NO;
	e->probed_usec = now_usec;
	/* An answer proves the channel is up (its event may still be on its way). */
	if (answered)
		e->channel = QGA_CHANNEL_CONNECTED;
	return 0;
}

void qga_tracker_remove(struct qga_tracker *t, const char *sid)
{
	bool found;
	size_t i = find(t, sid, &found);
	if (!found)
		return;
	free(t->e[i].sid);
	memmove(&t->e[i], &t->e[i + 1], sizeof(*t->e) * (t->n - i - 1));
	t->n--;
}

enum qga_answer qga_tracker_answer(const struct qga_tracker *t, const char *sid)
{
	bool found;
	size_t i = find(t, sid, &found);
	return found ? t->e[i].answer : QGA_ANSWER_UNKNOWN;
}

static bool answering(const struct qga_entry *e)
{
	return e->answer == QGA_ANSWER_YES && e->channel != QGA_CHANNEL_DISCONNECTED;
}

json_t *qga_tracker_running(const struct qga_tracker *t)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < t->n; i++)
		if (answering(&t->e[i]) && json_array_append_new(a, json_string(t->e[i].sid)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

size_t qga_tracker_count_answering(const struct qga_tracker *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++)
		n += answering(&t->e[i]);
	return n;
}

/* The next not answering entry to probe among those of class fresh (channel up, never probed
 * since) or not, least recently probed first; NULL when none is left. */
static const struct qga_entry *next_other(const struct qga_tracker *t, char **picked, bool fresh)
{
	const struct qga_entry *best = NULL;
	for (size_t i = 0; i < t->n; i++) {
		const struct qga_entry *e = &t->e[i];
		bool is_fresh =
		    e->channel == QGA_CHANNEL_CONNECTED && e->answer == QGA_ANSWER_UNKNOWN;
		if (answering(e) || e->channel == QGA_CHANNEL_DISCONNECTED || is_fresh != fresh ||
		    strv_contains(picked, e->sid))
			continue;
		if (!best || e->probed_usec < best->probed_usec)
			best = e;
	}
	return best;
}

char **qga_tracker_pick(const struct qga_tracker *t, size_t max_fresh, size_t max_other)
{
	char **l = calloc(1, sizeof(char *));
	if (!l)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (answering(&t->e[i]) && strv_extend(&l, t->e[i].sid) < 0)
			return strv_free(l);
	for (int fresh = 1; fresh >= 0; fresh--)
		for (size_t k = 0; k < (fresh ? max_fresh : max_other); k++) {
			const struct qga_entry *e = next_other(t, l, fresh);
			if (!e)
				break;
			if (strv_extend(&l, e->sid) < 0)
				return strv_free(l);
		}
	return l;
}

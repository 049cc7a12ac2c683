/* API token validation: the cache, Keystone's answers (fixtures captured from a real
 * Keystone), the standalone token file, and region-mode validation against a scripted
 * Keystone (caching, coalescing, no caching of refusals). */
#include <sys/stat.h>

#include "agent/auth.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"
#include "tests/unit/test-region-server.h"

#define S 1000000ULL

/* At now_usec, the tokens of hits are cached and those of misses are not ("t1 t2": a list). */
static void expect_cached(struct auth_cache *c, uint64_t now_usec, const char *hits,
			  const char *misses)
{
	for (int hit = 1; hit >= 0; hit--) {
		_cleanup_free_ char *list = strdup(hit ? hits : misses);
		char *save = NULL;
		assert_non_null(list);
		for (char *t = strtok_r(list, " ", &save); t; t = strtok_r(NULL, " ", &save))
			if (auth_cache_get(c, t, now_usec) != hit)
				fail_msg("token %s: %s at %" PRIu64 " s", t,
					 hit ? "not cached" : "cached", now_usec / S);
	}
}

static void test_cache_basic(void **state)
{
	struct auth_cache *c = NULL;
	assert_int_equal(auth_cache_new(4, &c), 0);
	assert_false(auth_cache_get(c, "a", 100 * S));
	assert_int_equal(auth_cache_put(c, "a", 160 * S, 100 * S), 0);
	assert_true(auth_cache_get(c, "a", 159 * S));
	assert_false(auth_cache_get(c, "ab", 110 * S));
	assert_false(auth_cache_get(c, "", 110 * S));
	/* Expired: dropped on lookup. */
	assert_false(auth_cache_get(c, "a", 160 * S));
	assert_int_equal(auth_cache_size(c), 0);
	/* Already expired: not stored. */
	assert_int_equal(auth_cache_put(c, "b", 100 * S, 100 * S), 0);
	assert_int_equal(auth_cache_size(c), 0);
	/* Refresh keeps one entry. */
	assert_int_equal(auth_cache_put(c, "b", 150 * S, 100 * S), 0);
	assert_int_equal(auth_cache_put(c, "b", 170 * S, 120 * S), 0);
	assert_int_equal(auth_cache_size(c), 1);
	assert_true(auth_cache_get(c, "b", 165 * S));
	auth_cache_free(c);
	assert_null(auth_cache_free(NULL));
	assert_int_equal(auth_cache_new(0, &c), -EINVAL);
}

static void test_cache_cap(void **state)
{
	struct auth_cache *c = NULL;
	assert_int_equal(auth_cache_new(3, &c), 0);
	assert_int_equal(auth_cache_put(c, "t1", 200 * S, 0), 0);
	assert_int_equal(auth_cache_put(c, "t2", 150 * S, 0), 0);
	assert_int_equal(auth_cache_put(c, "t3", 300 * S, 0), 0);
	/* Full: the one expiring soonest (t2) goes. */
	assert_int_equal(auth_cache_put(c, "t4", 250 * S, 10 * S), 0);
	assert_int_equal(auth_cache_size(c), 3);
	expect_cached(c, 20 * S, "t1 t3 t4", "t2");
	/* Full with expired entries: those go first, the live ones stay. */
	assert_int_equal(auth_cache_put(c, "t5", 400 * S, 210 * S), 0);
	expect_cached(c, 220 * S, "t3 t4 t5", "t1");
	auth_cache_free(c);
}

static void test_cache_until(void **state)
{
	/* token_cache_seconds bounds it... */
	assert_true(auth_cache_until(100 * S, 60, 1000 * S) == 160 * S);
	/* ...and so does the token's own expiry. */
	assert_true(auth_cache_until(100 * S, 60, 130 * S) == 130 * S);
	assert_true(auth_cache_until(100 * S, 0, 1000 * S) == 0);
	assert_true(auth_cache_until(100 * S, 60, 90 * S) == 0);
}

static void test_token_checks(void **state)
{
	assert_true(auth_token_equal("abc", "abc"));
	assert_false(auth_token_equal("abd", "abc"));
	assert_false(auth_token_equal("ab", "abc"));
	assert_false(auth_token_equal("abcd", "abc"));
	assert_false(auth_token_equal("", "abc"));
	assert_true(auth_token_wellformed("gAAAAABrBxdn7H3r9id9c5B79E6h_h3DL-x"));
	assert_false(auth_token_wellformed(""));
	assert_false(auth_token_wellformed(NULL));
	assert_false(auth_token_wellformed("a b"));
	assert_false(auth_token_wellformed("a\r\nX-Injected: 1"));
	assert_false(auth_token_wellformed("caf\xc3\xa9"));
	char *big = malloc(9000);
	memset(big, 'a', 8999);
	big[8999] = 0;
	assert_false(auth_token_wellformed(big));
	free(big);
}

static char *fixture_text(const char *name)
{
	_cleanup_free_ char *p = test_data(name);
	char *text;
	size_t len;
	assert_int_equal(read_file(p, 1 << 20, &text, &len), 0);
	return text;
}

static void test_check_validation(void **state)
{
	_cleanup_free_ char *admin = fixture_text("keystone/validate-admin.json");
	_cleanup_free_ char *member = fixture_text("keystone/validate-member.json");
	_cleanup_free_ char *nf = fixture_text("keystone/validate-404.json");
	char *admin_role[] = {"admin", NULL};
	const struct auth_policy p = {
	    .roles = admin_role, .own_project = "system", .own_domain = "Default"};
	const struct auth_policy *roles = &p;
	uint64_t exp = 0;
	assert_int_equal(auth_check_validation(200, admin, strlen(admin), roles, &exp), 0);
	uint64_t want;
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:16.000000Z", &want), 0);
	assert_true(exp == want);
	assert_int_equal(auth_check_validation(200, member, strlen(member), roles, &exp), -EPERM);
	assert_int_equal(auth_check_validation(404, nf, strlen(nf), roles, &exp), -EACCES);
	/* 401: keystone refused the agent's own token; the caller is not judged. */
	assert_int_equal(auth_check_validation(401, "{}", 2, roles, &exp), -EIO);
	assert_int_equal(auth_check_validation(403, "{}", 2, roles, &exp), -EIO);
	assert_int_equal(auth_check_validation(500, "", 0, roles, &exp), -EIO);
	assert_int_equal(auth_check_validation(200, "{\"token\":", 9, roles, &exp), -EBADMSG);
	assert_int_equal(auth_check_validation(200, "{}", 2, roles, &exp), -EBADMSG);
}

static json_t *token_body(const char *project, const char *domain, const char *role)
{
	json_t *t = json_pack("{s:{s:[{s:s}]}}", "token", "roles", "name", role);
	if (project)
		json_object_set_new(json_object_get(t, "token"), "project",
				    json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", "id-of-project",
					      "name", project, "domain", "id", "d1", "name",
					      domain));
	return t;
}

/* The region forwards its users' tokens: any valid token passes by default; api_roles and
 * api_projects restrict, and a role counts only in the token's own project scope (security
 * review H3: a tenant project's "admin" is nobody here). */
static void test_policy(void **state)
{
	json_auto_t *tenant_admin = token_body("tenant-x", "Default", "admin");
	json_auto_t *system_admin = token_body("system", "Default", "admin");
	json_auto_t *system_member = token_body("system", "Default", "member");
	json_auto_t *other_domain = token_body("system", "Evil", "admin");
	json_auto_t *unscoped = json_pack("{s:{s:s}}", "token", "expires_at", "x");
	json_auto_t *sys_scope = json_pack("{s:{s:{s:b},s:[{s:s}]}}", "token", "system", "all", 1,
					   "roles", "name", "admin");
	struct config cfg;
	assert_int_equal(config_init(&cfg), 0);
	/* Defaults: no role and no project required. */
	assert_null(cfg.api_roles);
	assert_null(cfg.api_projects);
	struct auth_policy any = {.roles = cfg.api_roles,
				  .projects = cfg.api_projects,
				  .own_project = "system",
				  .own_domain = "Default"};
	assert_int_equal(auth_token_allowed(tenant_admin, &any), 0);
	assert_int_equal(auth_token_allowed(system_member, &any), 0);
	assert_int_equal(auth_token_allowed(unscoped, &any), 0);
	config_done(&cfg);

	char *admin[] = {"admin", NULL};
	struct auth_policy roles = {
	    .roles = admin, .own_project = "system", .own_domain = "Default"};
	assert_int_equal(auth_token_allowed(system_admin, &roles), 0);
	assert_int_equal(auth_token_allowed(tenant_admin, &roles), -EPERM);
	assert_int_equal(auth_token_allowed(other_domain, &roles), -EPERM);
	assert_int_equal(auth_token_allowed(system_member, &roles), -EPERM);
	assert_int_equal(auth_token_allowed(unscoped, &roles), -EPERM);
	assert_int_equal(auth_token_allowed(sys_scope, &roles), 0);

	char *tenant[] = {"tenant-x", NULL}, *by_domain[] = {"Evil/system", NULL},
	     *by_id[] = {"id-of-project", NULL};
	struct auth_policy projects = {.projects = tenant, .own_domain = "Default"};
	assert_int_equal(auth_token_allowed(tenant_admin, &projects), 0);
	assert_int_equal(auth_token_allowed(system_admin, &projects), -EPERM);
	assert_int_equal(auth_token_allowed(unscoped, &projects), -EPERM);
	projects.projects = by_domain;
	assert_int_equal(auth_token_allowed(other_domain, &projects), 0);
	assert_int_equal(auth_token_allowed(system_admin, &projects), -EPERM);
	projects.projects = by_id;
	assert_int_equal(auth_token_allowed(system_member, &projects), 0);
	/* Both: the role must be held in a listed project. */
	struct auth_policy both = {.roles = admin, .projects = tenant, .own_domain = "Default"};
	assert_int_equal(auth_token_allowed(tenant_admin, &both), 0);
	assert_int_equal(auth_token_allowed(system_admin, &both), -EPERM);
	json_auto_t *tenant_member = token_body("tenant-x", "Default", "member");
	assert_int_equal(auth_token_allowed(tenant_member, &both), -EPERM);
}

struct result {
	int calls;
	int last;
};

static void on_done(int r, void *userdata)
{
	struct result *res = userdata;
	res->calls++;
	res->last = r;
}

static void test_standalone(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	struct agent a = {0};
	assert_int_equal(config_init(&a.cfg), 0);
	a.cfg.api_token_file = strjoin(dir, "/state/sub/api-token");
	struct auth *au = NULL;
	assert_int_equal(auth_new(&a.cfg, a.region, &au), 0);
	assert_int_equal(auth_start(au), 0);
	struct stat st;
	assert_int_equal(stat(a.cfg.api_token_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	_cleanup_free_ char *sub = strjoin(dir, "/state/sub");
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	char *text;
	size_t len;
	assert_int_equal(read_file(a.cfg.api_token_file, 4096, &text, &len), 0);
	assert_int_equal(len, 65);
	text[64] = 0;
	for (size_t i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", text[i]));

	/* Standalone: every answer is known at once and returned; nothing calls back. */
	struct result res = {0};
	assert_int_equal(auth_validate(au, text, on_done, &res), 0);
	assert_int_equal(auth_validate(au, NULL, on_done, &res), -EACCES);
	assert_int_equal(auth_validate(au, "", on_done, &res), -EACCES);
	text[10] ^= 1;
	assert_int_equal(auth_validate(au, text, on_done, &res), -EACCES);
	text[10] ^= 1;
	text[63] = 0;
	assert_int_equal(auth_validate(au, text, on_done, &res), -EACCES);
	assert_int_equal(res.calls, 0);
	auth_free(au);

	/* A restart reads the same token back. */
	_cleanup_free_ char *again = NULL;
	assert_int_equal(auth_new(&a.cfg, a.region, &au), 0);
	assert_int_equal(auth_start(au), 0);
	assert_int_equal(read_file(a.cfg.api_token_file, 4096, &again, &len), 0);
	assert_int_equal(len, 65);
	assert_true(strneq(again, text, 63));
	free(text);
	again[64] = 0;
	assert_int_equal(auth_validate(au, again, on_done, &res), 0);
	assert_int_equal(res.calls, 0);
	auth_free(au);

	/* A damaged file is refused, not silently replaced. */
	assert_int_equal(write_file_atomic(a.cfg.api_token_file, "short\n", 6, 0600), 0);
	assert_int_equal(auth_new(&a.cfg, a.region, &au), 0);
	assert_int_equal(auth_start(au), -EBADMSG);
	auth_free(au);
	assert_int_equal(rm_rf(dir), 0);
	config_done(&a.cfg);
}

/* A captured validation answer, its lifetime moved around the present. */
static char *fresh_token(const char *name, long expires_in)
{
	json_auto_t *j = load_fixture(name);
	json_t *tok = json_object_get(j, "token");
	char buf[64];
	time_t now = time(NULL);
	struct tm tm;
	time_t issued = now - 60, expires = now + expires_in;
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000000Z", gmtime_r(&issued, &tm));
	json_object_set_new(tok, "issued_at", json_string(buf));
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000000Z", gmtime_r(&expires, &tm));
	json_object_set_new(tok, "expires_at", json_string(buf));
	char *text = json_dumps(j, 0);
	assert_non_null(text);
	return text;
}

static void test_region_mode(void **state)
{
	struct fixture f = {0};
	fixture_init(&f);
	_cleanup_free_ char *admin = fresh_token("keystone/validate-admin.json", 3600);
	_cleanup_free_ char *member = fresh_token("keystone/validate-member.json", 3600);
	/* Answers in order: session, admin token (twice asked at once, one request), member
	 * token, member token again (refusals are not cached), an unknown token, 401. */
	f.s.replies[0] =
	    (struct fake_http_reply){201, "X-Subject-Token: svc\r\n", auth_body(f.s.port)};
	f.s.replies[1] = (struct fake_http_reply){200, NULL, strdup(admin)};
	f.s.replies[2] = (struct fake_http_reply){200, NULL, strdup(member)};
	f.s.replies[3] = (struct fake_http_reply){200, NULL, strdup(member)};
	f.s.replies[4] = (struct fake_http_reply){404, NULL, strdup("{}")};
	f.s.replies[5] = (struct fake_http_reply){500, NULL, strdup("{}")};
	f.s.n_replies = 6;
	f.a.cfg.token_cache_seconds = 3600;
	assert_int_equal(strv_extend(&f.a.cfg.api_roles, "admin"), 0);
	assert_int_equal(region_new(f.a.event, &f.a.cfg, &f.a.region), 0);
	f.r = f.a.region;
	struct auth *au = NULL;
	assert_int_equal(auth_new(&f.a.cfg, f.a.region, &au), 0);
	f.a.auth = au;

	/* Before the session exists nothing can be verified. */
	struct result r0 = {0};
	assert_int_equal(auth_validate(au, "tok-admin", on_done, &r0), -ENOTCONN);
	assert_int_equal(r0.calls, 0);

	assert_int_equal(region_start(f.r), 0);
	assert_int_equal(auth_start(au), 0);
	run_until(&f, 1, 5);
	assert_string_equal(region_token(f.r), "svc");

	struct result r1 = {0}, r2 = {0};
	assert_int_equal(auth_validate(au, "tok-admin", on_done, &r1), AUTH_PENDING);
	assert_int_equal(auth_validate(au, "tok-admin", on_done, &r2), AUTH_PENDING);
	assert_int_equal(r1.calls + r2.calls, 0);
	run_until(&f, 2, 5);
	assert_int_equal(r1.calls, 1);
	assert_int_equal(r1.last, 0);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.last, 0);
	assert_int_equal(fake_http_seen(&f.s), 2);
	assert_string_equal(f.s.seen[1].method, "GET");
	assert_string_equal(f.s.seen[1].path, "/v3/auth/tokens?nocatalog");
	assert_string_equal(f.s.seen[1].token, "svc");

	/* Cached: answered at once, no request. */
	struct result r3 = {0};
	assert_int_equal(auth_validate(au, "tok-admin", on_done, &r3), 0);
	assert_int_equal(r3.calls, 0);

	struct result r4 = {0};
	assert_int_equal(auth_validate(au, "tok-member", on_done, &r4), AUTH_PENDING);
	run_until(&f, 3, 5);
	assert_int_equal(r4.last, -EPERM);
	assert_int_equal(auth_validate(au, "tok-member", on_done, &r4), AUTH_PENDING);
	run_until(&f, 4, 5);
	assert_int_equal(r4.calls, 2);
	assert_int_equal(r4.last, -EPERM);

	struct result r5 = {0};
	assert_int_equal(auth_validate(au, "tok-unknown", on_done, &r5), AUTH_PENDING);
	run_until(&f, 5, 5);
	assert_int_equal(r5.last, -EACCES);
	/* Refused now without asking: malformed, or refused a moment ago. */
	assert_int_equal(auth_validate(au, "bad token", on_done, &r5), -EACCES);
	assert_int_equal(auth_validate(au, "tok-unknown", on_done, &r5), -EACCES);
	assert_int_equal(r5.calls, 1);

	struct result r6 = {0};
	assert_int_equal(auth_validate(au, "tok-5xx", on_done, &r6), AUTH_PENDING);
	run_until(&f, 6, 5);
	assert_int_equal(r6.last, -EIO);
	assert_int_equal(fake_http_seen(&f.s), 6);

	/* A validation in flight when the agent goes away: its waiter hears it was cancelled
	 * (once), so it can free what it holds. */
	struct result r7 = {0};
	assert_int_equal(auth_validate(au, "tok-late", on_done, &r7), AUTH_PENDING);
	f.a.auth = auth_free(au);
	fixture_done(&f);
	assert_int_equal(r7.calls, 1);
	assert_int_equal(r7.last, -ECANCELED);
}

TEST_MAIN(cmocka_unit_test(test_cache_basic), cmocka_unit_test(test_cache_cap),
	  cmocka_unit_test(test_cache_until), cmocka_unit_test(test_token_checks),
	  cmocka_unit_test(test_check_validation), cmocka_unit_test(test_policy),
	  cmocka_unit_test(test_standalone), cmocka_unit_test(test_region_mode))

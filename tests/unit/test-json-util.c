#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/json-util.h"
#include "tests/unit/test-common.h"

static json_t *load(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

static void expect_error(struct ju_ctx *c, int r, const char *want)
{
	_cleanup_free_ char *err = NULL;
	assert_int_equal(ju_finish(c, r, &err), -EINVAL);
	assert_non_null(err);
	assert_string_equal(err, want);
}

static void test_strings(void **state)
{
	json_auto_t *j =
	    load("{\"a\": \"x\", \"n\": 5, \"e\": \"\", \"z\": null, \"c\": \"a\\u0001\","
		 " \"m\": \"l1\\nl2\", \"f\": \"\\uffff\"}");
	struct ju_ctx c = {};
	const char *s;
	assert_int_equal(ju_get_string(&c, j, NULL, "a", true, 8, 0, &s), 1);
	assert_string_equal(s, "x");
	assert_int_equal(ju_get_string(&c, j, NULL, "z", false, 8, 0, &s), 0);
	assert_null(s);
	assert_int_equal(ju_get_string(&c, j, "p", "absent", false, 8, 0, &s), 0);
	assert_int_equal(ju_get_string(&c, j, NULL, "e", false, 8, 0, &s), 1);
	assert_string_equal(s, "");
	assert_int_equal(ju_get_string(&c, j, NULL, "m", false, 8, JU_TEXT_MULTILINE, &s), 1);
	assert_null(c.error);

	expect_error(&c, ju_get_string(&c, j, "disks[1]", "n", false, 8, 0, &s),
		     "disks[1].n: expected string, got integer");
	expect_error(&c, ju_get_string(&c, j, NULL, "e", true, 8, 0, &s), "e: missing");
	expect_error(&c, ju_get_string(&c, j, NULL, "z", true, 8, 0, &s), "z: missing");
	expect_error(&c, ju_get_string(&c, j, NULL, "a", false, 0, 0, &s),
		     "a: too long (1 bytes, max 0)");
	expect_error(&c, ju_get_string(&c, j, NULL, "c", false, 8, 0, &s),
		     "c: control character not allowed");
	expect_error(&c, ju_get_string(&c, j, NULL, "m", false, 8, 0, &s),
		     "m: control character not allowed");
	expect_error(&c, ju_get_string(&c, j, NULL, "f", false, 8, 0, &s),
		     "f: non-character U+FFFF not allowed");
	expect_error(&c, ju_check_text(&c, "t", "a\0b", 3, 8, 0), "t: NUL character not allowed");
	expect_error(&c, ju_check_text(&c, "t", "\xc3(", 2, 8, 0), "t: invalid UTF-8");

	/* The first refusal wins. */
	assert_int_equal(ju_fail(&c, "first"), -EINVAL);
	assert_int_equal(ju_fail(&c, "second"), -EINVAL);
	expect_error(&c, -EINVAL, "first");
}

static void test_ints_bools(void **state)
{
	json_auto_t *j = load("{\"n\": 5, \"neg\": -1, \"zero\": 0, \"r\": 1.5, \"t\": true, "
			      "\"s\": \"5\"}");
	struct ju_ctx c = {};
	int64_t n;
	bool b;
	assert_int_equal(ju_get_int(&c, j, NULL, "n", true, 1, 10, 0, &n), 1);
	assert_int_equal(n, 5);
	assert_int_equal(ju_get_int(&c, j, NULL, "absent", false, 1, 10, 7, &n), 0);
	assert_int_equal(n, 7);
	assert_int_equal(ju_get_int(&c, j, NULL, "neg", false, -1, 10, 0, &n), 1);
	assert_int_equal(n, -1);
	assert_int_equal(ju_get_bool(&c, j, NULL, "t", false, &b), 1);
	assert_true(b);
	assert_int_equal(ju_get_bool(&c, j, NULL, "absent", true, &b), 0);
	assert_true(b);
	assert_null(c.error);

	expect_error(&c, ju_get_int(&c, j, NULL, "absent", true, 1, 10, 0, &n), "absent: missing");
	expect_error(&c, ju_get_int(&c, j, NULL, "zero", false, 1, 10, 0, &n),
		     "zero: must be a positive integer");
	expect_error(&c, ju_get_int(&c, j, NULL, "neg", false, 0, 10, 0, &n),
		     "neg: must not be negative");
	expect_error(&c, ju_get_int(&c, j, "x", "n", false, 0, 4, 0, &n),
		     "x.n: out of range (5, allowed 0..4)");
	expect_error(&c, ju_get_int(&c, j, NULL, "r", false, 0, 4, 0, &n),
		     "r: expected integer, got real");
	expect_error(&c, ju_get_int(&c, j, NULL, "s", false, 0, 4, 0, &n),
		     "s: expected integer, got string");
	expect_error(&c, ju_get_bool(&c, j, NULL, "n", false, &b),
		     "n: expected boolean, got integer");
}

static void test_enums_arrays(void **state)
{
	static const char *const names[] = {"qcow2", "raw"};
	json_auto_t *j = load("{\"f\": \"RAW\", \"bad\": \"vm\\\"dk\", \"e\": \"\", \"a\": [1, 2], "
			      "\"o\": {}}");
	struct ju_ctx c = {};
	int e;
	json_t *a;
	assert_int_equal(ju_get_enum(&c, j, NULL, "f", names, ELEMENTSOF(names), 0, &e), 1);
	assert_int_equal(e, 1);
	assert_int_equal(ju_get_enum(&c, j, NULL, "e", names, ELEMENTSOF(names), 1, &e), 0);
	assert_int_equal(e, 1);
	assert_int_equal(ju_get_array(&c, j, NULL, "a", 2, &a), 1);
	assert_int_equal(json_array_size(a), 2);
	assert_int_equal(ju_get_array(&c, j, NULL, "absent", 2, &a), 0);
	assert_null(a);
	assert_null(c.error);

	expect_error(&c, ju_get_enum(&c, j, "d", "bad", names, ELEMENTSOF(names), 0, &e),
		     "d.bad: unsupported value \"vm\\\"dk\"");
	expect_error(&c, ju_get_array(&c, j, NULL, "a", 1, &a), "a: too many entries (2, max 1)");
	expect_error(&c, ju_get_array(&c, j, NULL, "o", 1, &a), "o: expected array, got object");
	expect_error(&c, ju_check_object(&c, NULL, "v"), "v: expected object, got nothing");
	assert_string_equal(ju_quote("a\"b\\c\n").s, "\"a\\\"b\\\\c\\x0a\"");
	char longv[200];
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = 0;
	assert_non_null(strstr(ju_quote(longv).s, "...\""));
	assert_string_equal(ju_field(NULL, "k").s, "k");
	assert_string_equal(ju_field("p", NULL).s, "p");
}

struct pair {
	int64_t key;
	char *name;
};

struct pairs {
	struct pair *items;
	size_t n;
};

static int parse_pair(struct ju_ctx *c, const json_t *v, const char *name, size_t i, void *items,
		      void *userdata)
{
	struct pairs *p = userdata;
	p->items = items;
	p->n = i + 1;
	struct pair *e = &p->items[i];
	const char *s;
	int r = ju_get_int(c, v, name, "key", true, 0, 100, 0, &e->key);
	if (r < 0 || (r = ju_get_string(c, v, name, "name", true, 16, 0, &s)) < 0)
		return r;
	return ju_dup_string(c, s, &e->name);
}

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	return (x->key > y->key) - (x->key < y->key);
}

static void pairs_done(struct pairs *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i].name);
	free(p->items);
	*p = (struct pairs){};
}

static void test_list(void **state)
{
	struct ju_ctx c = {};
	struct pairs p = {};
	json_auto_t *ok = load("{\"l\": [{\"key\": 3, \"name\": \"c\"}, {\"key\": 1, \"name\": "
			       "\"a\"}]}");
	assert_int_equal(ju_get_list(&c, ok, "l", 4, sizeof(struct pair), cmp_pair, parse_pair, &p),
			 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.items[0].name, "a");
	assert_string_equal(p.items[1].name, "c");
	pairs_done(&p);

	assert_int_equal(
	    ju_get_list(&c, ok, "absent", 4, sizeof(struct pair), NULL, parse_pair, &p), 0);
	assert_null(p.items);

	/* A refusal in the second entry: the first stays with the caller, who frees it. */
	json_auto_t *bad = load("{\"l\": [{\"key\": 3, \"name\": \"c\"}, {\"key\": \"1\"}]}");
	expect_error(&c, ju_get_list(&c, bad, "l", 4, sizeof(struct pair), NULL, parse_pair, &p),
		     "l[1].key: expected integer, got string");
	assert_int_equal(p.n, 2);
	pairs_done(&p);

	/* A first entry that is no object: the array is freed by the list parser. */
	json_auto_t *notobj = load("{\"l\": [7]}");
	expect_error(&c, ju_get_list(&c, notobj, "l", 4, sizeof(struct pair), NULL, parse_pair, &p),
		     "l[0]: expected object, got integer");
	assert_null(p.items);
	expect_error(&c, ju_get_list(&c, ok, "l", 1, sizeof(struct pair), NULL, parse_pair, &p),
		     "l: too many entries (2, max 1)");
}

TEST_MAIN(cmocka_unit_test(test_strings), cmocka_unit_test(test_ints_bools),
	  cmocka_unit_test(test_enums_arrays), cmocka_unit_test(test_list))

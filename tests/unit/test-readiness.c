/* agent/readiness.c: reasons from every registered subsystem, in order; removal by owner. */
#include "agent/readiness.h"
#include "test-common.h"

static void say(void *userdata, json_t *reasons)
{
	const char *what = userdata;
	if (what[0])
		json_array_append_new(reasons, json_string(what));
}

static void test_reasons(void **state)
{
	struct readiness *r;
	assert_int_equal(readiness_new(&r), 0);
	assert_null(readiness_reasons(r)); /* nobody registered: ready */
	char a[] = "a: not yet", b[] = "", c[] = "c: broken";
	assert_int_equal(readiness_add(r, say, a), 0);
	assert_int_equal(readiness_add(r, say, b), 0); /* registered, but ready */
	assert_int_equal(readiness_add(r, say, c), 0);
	json_t *j = readiness_reasons(r);
	assert_int_equal(json_array_size(j), 2);
	assert_string_equal(json_string_value(json_array_get(j, 0)), "a: not yet");
	assert_string_equal(json_string_value(json_array_get(j, 1)), "c: broken");
	json_decref(j);
	readiness_remove(r, a);
	readiness_remove(r, c);
	assert_null(readiness_reasons(r));
	/* The last one went: adding appends after what is left. */
	assert_int_equal(readiness_add(r, say, c), 0);
	j = readiness_reasons(r);
	assert_int_equal(json_array_size(j), 1);
	json_decref(j);
	/* Without a registry (a unit test's subsystem) nothing is registered. */
	assert_int_equal(readiness_add(NULL, say, a), 0);
	readiness_remove(NULL, a);
	assert_null(readiness_reasons(NULL));
	readiness_free(r);
}

TEST_MAIN(cmocka_unit_test(test_reasons))

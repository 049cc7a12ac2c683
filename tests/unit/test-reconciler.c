#include "tests/unit/test-common.h"
static void test_dummy(void **state) {}
TEST_MAIN(cmocka_unit_test(test_dummy))

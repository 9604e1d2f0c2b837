/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "bk-test.h"

#include "bk-cleanup.h"
#include "bk-version.h"

static void test_version_grammar(void **state)
{
	static const char *const good[] = {
		"0",	    "1.0",	   "1.10.0", "2024.5.1",	  "1.2.3.4.5.6.7.8",
		"1.0-rc.1", "1.0-alpha-2", "3-0",    "999999999999999999"
	};
	static const char *const bad[] = { "",
					   "1.",
					   ".1",
					   "1..2",
					   "01.2",
					   "1.02",
					   "2024.05.1",
					   "v1.0",
					   "1.0-",
					   "1.0-rc..1",
					   "1.0-rc.",
					   "1.0+b",
					   "1_0",
					   "1.0 ",
					   "1.2.3.4.5.6.7.8.9",
					   "1.0-r_c",
					   "1234567890123456789" };

	for (size_t i = 0; i < BK_ELEMENTSOF(good); i++)
		assert_true(bk_version_is_valid(good[i]));
	for (size_t i = 0; i < BK_ELEMENTSOF(bad); i++) {
		if (bk_version_is_valid(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
	}
	assert_false(bk_version_is_valid(NULL));

	/* Length limit: 64 bytes. */
	char longv[80];
	memset(longv, '1', sizeof(longv));
	strcpy(longv, "1.0-");
	memset(longv + 4, 'a', 60);
	longv[64] = '\0';
	assert_true(bk_version_is_valid(longv));
	longv[64] = 'a';
	longv[65] = '\0';
	assert_false(bk_version_is_valid(longv));
}

static void expect_order(const char *lo, const char *hi)
{
	if (bk_version_compare(lo, hi) >= 0 || bk_version_compare(hi, lo) <= 0)
		fail_msg("expected '%s' < '%s'", lo ? lo : "(null)", hi ? hi : "(null)");
}

static void test_version_numeric_order(void **state)
{
	expect_order("1.9.2", "1.10.0");
	expect_order("1.9", "1.10");
	expect_order("1.2.3", "1.2.4");
	expect_order("1", "2");
	expect_order("1.2", "1.2.1");
	expect_order("9", "10");
	expect_order("99999999999999999", "100000000000000000");
	assert_int_equal(bk_version_compare("1.2", "1.2.0"), 0);
	assert_int_equal(bk_version_compare("1.2.0.0", "1.2"), 0);
	assert_int_equal(bk_version_compare("1.10.0", "1.10.0"), 0);
}

static void test_version_prerelease_order(void **state)
{
	/* SemVer's example chain, then our extras. */
	static const char *const chain[] = { "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
					     "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
					     "1.0.0-rc.1",  "1.0.0",	     "1.0.1-0",
					     "1.0.1-rc.2",  "1.0.1-rc.10",   "1.0.1" };

	for (size_t i = 0; i + 1 < BK_ELEMENTSOF(chain); i++)
		for (size_t j = i + 1; j < BK_ELEMENTSOF(chain); j++)
			expect_order(chain[i], chain[j]);
	assert_int_equal(bk_version_compare("2.0-rc.1", "2.0.0-rc.1"), 0);
	expect_order("2.0-rc", "2.0");
	expect_order("1.9", "2.0-rc.1");
}

static void test_version_invalid_sorts_lowest(void **state)
{
	expect_order("garbage", "0");
	expect_order("", "0-a");
	expect_order(NULL, "garbage");
	expect_order("abc", "abd");
	assert_int_equal(bk_version_compare(NULL, NULL), 0);
	assert_int_equal(bk_version_compare("x", "x"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_grammar),
		cmocka_unit_test(test_version_numeric_order),
		cmocka_unit_test(test_version_prerelease_order),
		cmocka_unit_test(test_version_invalid_sorts_lowest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

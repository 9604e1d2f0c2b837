/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pure parts of bk-fetch: which strings are URLs, the Content-Range a server answers with
 * (the range plan is checked against it: first, last and the total size), and the origin rule
 * for redirects. The transfers themselves are tested against nginx (tests/integ/stage-url.sh).
 */
#include <errno.h>

#include "bk-test.h"

#include "bk-fetch.h"

static void test_is_url(void **state)
{
	assert_true(bk_fetch_is_url("http://h/x.bbi"));
	assert_true(bk_fetch_is_url("HTTPS://h/x.bbi"));
	assert_false(bk_fetch_is_url("ftp://h/x.bbi"));
	assert_false(bk_fetch_is_url("/srv/http://x.bbi"));
	assert_false(bk_fetch_is_url("x.bbi"));
	assert_false(bk_fetch_is_url("http:/x"));
	assert_false(bk_fetch_is_url(NULL));
}

static void expect_range(const char *v, int want, uint64_t first, uint64_t last, uint64_t total)
{
	uint64_t f = 7, l = 7, t = 7;

	assert_int_equal(bk_fetch_parse_content_range(v, &f, &l, &t), want);
	if (want == 0) {
		assert_int_equal(f, first);
		assert_int_equal(l, last);
		assert_int_equal(t, total);
	} else {
		/* Nothing written on failure. */
		assert_int_equal(f, 7);
		assert_int_equal(l, 7);
		assert_int_equal(t, 7);
	}
}

static void test_content_range(void **state)
{
	expect_range("bytes 0-127/4096", 0, 0, 127, 4096);
	expect_range(" bytes 1048576-2097151/5000000\r\n", 0, 1048576, 2097151, 5000000);
	expect_range("bytes 4095-4095/4096", 0, 4095, 4095, 4096);
	expect_range("bytes 0-18446744073709551614/18446744073709551615", 0, 0,
		     UINT64_C(18446744073709551614), UINT64_C(18446744073709551615));
	/* The last byte at or past the size, last before first, unknown sizes, junk. */
	expect_range("bytes 0-4096/4096", -EINVAL, 0, 0, 0);
	expect_range("bytes 10-9/4096", -EINVAL, 0, 0, 0);
	expect_range("bytes 0-127/*", -EINVAL, 0, 0, 0);
	expect_range("bytes */4096", -EINVAL, 0, 0, 0);
	expect_range("bytes 0-127/4096 x", -EINVAL, 0, 0, 0);
	expect_range("bytes=0-127/4096", -EINVAL, 0, 0, 0);
	expect_range("items 0-127/4096", -EINVAL, 0, 0, 0);
	expect_range("bytes -1-127/4096", -EINVAL, 0, 0, 0);
	expect_range("bytes 0-127/99999999999999999999", -EINVAL, 0, 0, 0);
	expect_range("", -EINVAL, 0, 0, 0);
}

static void test_same_origin(void **state)
{
	assert_true(bk_fetch_same_origin("http://h:8080/a.bbi", "http://h:8080/b/c.bbi"));
	assert_true(bk_fetch_same_origin("http://H/a", "http://h:80/b"));
	assert_true(bk_fetch_same_origin("https://h/a", "https://h:443/b"));
	assert_false(bk_fetch_same_origin("http://h/a", "https://h/a"));
	assert_false(bk_fetch_same_origin("http://h/a", "http://h:81/a"));
	assert_false(bk_fetch_same_origin("http://127.0.0.1/a", "http://localhost/a"));
	assert_false(bk_fetch_same_origin("http://h/a", "http://h.evil/a"));
	assert_false(bk_fetch_same_origin("http://h/a", "not a url"));
}

static void test_new_refuses(void **state)
{
	struct bk_fetch_config c = { .connect_timeout_sec = 1, .low_speed_timeout_sec = 1 };
	struct bk_fetch *f = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_fetch_new("file:///etc/passwd", &c, &f, &err), -EINVAL);
	assert_null(f);
	assert_string_equal(err.msg, "'file:///etc/passwd' is not an http:// or https:// URL");
	assert_int_equal(bk_fetch_new("http://127.0.0.1:1/x.bbi", &c, &f, &err), 0);
	assert_int_equal(bk_fetch_get_size(f), 0);
	f = bk_fetch_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_url),
		cmocka_unit_test(test_content_range),
		cmocka_unit_test(test_same_origin),
		cmocka_unit_test(test_new_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

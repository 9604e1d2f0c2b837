/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"

#include "bk-sha256.h"

static const char abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char empty_hex[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void test_sha256_known_vectors(void **state)
{
	uint8_t d[BK_SHA256_LEN];
	char hex[BK_SHA256_HEX_LEN + 1];

	assert_int_equal(bk_sha256_buf("abc", 3, d), 0);
	bk_sha256_to_hex(d, hex);
	assert_string_equal(hex, abc_hex);
	assert_int_equal(bk_sha256_buf("", 0, d), 0);
	bk_sha256_to_hex(d, hex);
	assert_string_equal(hex, empty_hex);
}

static void test_sha256_streaming_equals_oneshot(void **state)
{
	struct bk_sha256 h;
	uint8_t a[BK_SHA256_LEN], b[BK_SHA256_LEN];
	char buf[1000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char) (i * 7);
	assert_int_equal(bk_sha256_init(&h), 0);
	for (size_t i = 0; i < sizeof(buf); i += 100)
		assert_int_equal(bk_sha256_update(&h, buf + i, 100), 0);
	assert_int_equal(bk_sha256_final(&h, a), 0);
	assert_null(h.ctx);
	assert_int_equal(bk_sha256_buf(buf, sizeof(buf), b), 0);
	assert_memory_equal(a, b, sizeof(a));
	bk_sha256_release(&h); /* twice is fine */
}

static void test_sha256_hex_roundtrip(void **state)
{
	uint8_t d[BK_SHA256_LEN], e[BK_SHA256_LEN];
	char hex[BK_SHA256_HEX_LEN + 1];

	assert_int_equal(bk_sha256_from_hex(abc_hex, d), 0);
	bk_sha256_to_hex(d, hex);
	assert_string_equal(hex, abc_hex);
	assert_int_equal(
		bk_sha256_from_hex(
			"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", e),
		0);
	assert_memory_equal(d, e, sizeof(d));
	assert_int_equal(bk_sha256_from_hex("ba78", d), -EINVAL);
	assert_int_equal(
		bk_sha256_from_hex(
			"zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d),
		-EINVAL);
	assert_int_equal(bk_sha256_from_hex(NULL, d), -EINVAL);
}

static void test_sha256_fd_range(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_err err = { 0 };
	uint8_t d[BK_SHA256_LEN], e[BK_SHA256_LEN];
	size_t len = 3 * BK_SHA256_CHUNK + 123;
	char *buf = malloc(len);
	int fd;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char) (i ^ (i >> 9));
	fd = openat(dir->dfd, "blob", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t) len);

	/* A range that spans chunk boundaries, at an unaligned offset. */
	assert_int_equal(bk_sha256_fd_range(fd, 4097, len - 5000, d, &err), 0);
	assert_int_equal(bk_sha256_buf(buf + 4097, len - 5000, e), 0);
	assert_memory_equal(d, e, sizeof(d));

	/* The whole file, and an empty range. */
	assert_int_equal(bk_sha256_fd_range(fd, 0, len, d, &err), 0);
	assert_int_equal(bk_sha256_buf(buf, len, e), 0);
	assert_memory_equal(d, e, sizeof(d));
	assert_int_equal(bk_sha256_fd_range(fd, len, 0, d, &err), 0);

	/* Past the end: truncated. */
	assert_int_equal(bk_sha256_fd_range(fd, 10, len, d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "truncated"));
	bk_err_clear(&err);
	assert_int_equal(bk_sha256_fd_range(fd, UINT64_MAX - 5, 10, d, &err), -EOVERFLOW);
	bk_err_clear(&err);
	assert_int_equal(bk_sha256_fd_range(-1, 0, 10, d, &err), -EBADF);
	close(fd);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_known_vectors),
		cmocka_unit_test(test_sha256_streaming_equals_oneshot),
		cmocka_unit_test(test_sha256_hex_roundtrip),
		cmocka_unit_test_setup_teardown(test_sha256_fd_range, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

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

/* A file of len pseudo-random bytes in dir; returns its fd and the bytes in *ret_buf. */
static int make_blob(struct bk_test_dir *dir, const char *name, size_t len, char **ret_buf)
{
	char *buf = malloc(len);
	int fd;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char) ((i * 2654435761u) >> 13);
	fd = openat(dir->dfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t) len);
	*ret_buf = buf;
	return fd;
}

static void test_sha256_fd_jobs_parallel(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_sha256_job jobs[7];
	struct bk_err err = { 0 };
	size_t len = 5 * BK_SHA256_CHUNK + 777;
	uint8_t e[BK_SHA256_LEN];
	char *buf;
	int fd = make_blob(dir, "blob", len, &buf);

	assert_true(bk_sha256_threads() >= 1);
	assert_true(bk_sha256_threads() <= BK_SHA256_MAX_THREADS);

	/* Ranges of every shape: empty, tiny, chunk-crossing, the whole file. */
	const uint64_t ranges[7][2] = { { 0, 0 },
					{ 1, 1 },
					{ 4096, 3 * BK_SHA256_CHUNK + 5 },
					{ 100, BK_SHA256_CHUNK },
					{ 0, 5 * BK_SHA256_CHUNK + 777 },
					{ 5 * BK_SHA256_CHUNK, 777 },
					{ 12345, 54321 } };
	for (unsigned threads = 0; threads <= 3; threads++) {
		for (size_t i = 0; i < 7; i++) {
			memset(&jobs[i], 0xaa, sizeof(jobs[i]));
			jobs[i].offset = ranges[i][0];
			jobs[i].size = ranges[i][1];
		}
		assert_int_equal(bk_sha256_fd_jobs(fd, jobs, 7, threads, &err), 0);
		for (size_t i = 0; i < 7; i++) {
			assert_int_equal(jobs[i].r, 0);
			assert_int_equal(bk_sha256_buf(buf + ranges[i][0], ranges[i][1], e), 0);
			assert_memory_equal(jobs[i].digest, e, BK_SHA256_LEN);
		}
	}

	/* One job: the read-ahead ring path (2 threads) and the sequential one (1 thread). */
	for (unsigned threads = 1; threads <= 2; threads++) {
		jobs[0].offset = 3;
		jobs[0].size = len - 3;
		assert_int_equal(bk_sha256_fd_jobs(fd, jobs, 1, threads, &err), 0);
		assert_int_equal(bk_sha256_buf(buf + 3, len - 3, e), 0);
		assert_memory_equal(jobs[0].digest, e, BK_SHA256_LEN);
	}

	/* A failing job: the others still complete; the first failure is returned. */
	jobs[0] = (struct bk_sha256_job){ .offset = 0, .size = 10 };
	jobs[1] = (struct bk_sha256_job){ .offset = len - 10, .size = 11 };
	jobs[2] = (struct bk_sha256_job){ .offset = 20, .size = 10 };
	assert_int_equal(bk_sha256_fd_jobs(fd, jobs, 3, 2, &err), -ENOEXEC);
	assert_int_equal(jobs[0].r, 0);
	assert_int_equal(jobs[1].r, -ENOEXEC);
	assert_int_equal(jobs[2].r, 0);
	assert_non_null(strstr(err.msg, "truncated"));
	assert_non_null(strstr(jobs[1].err.msg, "file ends after 10"));

	/* A single truncated job through the ring. */
	bk_err_clear(&err);
	jobs[0] = (struct bk_sha256_job){ .offset = BK_SHA256_CHUNK, .size = len };
	assert_int_equal(bk_sha256_fd_jobs(fd, jobs, 1, 2, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "truncated"));

	/* Read errors are reported too. */
	bk_err_clear(&err);
	jobs[0] = (struct bk_sha256_job){ .offset = 0, .size = 10 };
	jobs[1] = (struct bk_sha256_job){ .offset = 0, .size = 10 };
	assert_int_equal(bk_sha256_fd_jobs(-1, jobs, 2, 2, &err), -EBADF);
	assert_non_null(strstr(err.msg, "read error at offset 0"));
	bk_err_clear(&err);
	assert_int_equal(bk_sha256_fd_jobs(-1, jobs, 1, 2, &err), -EBADF);
	assert_non_null(strstr(err.msg, "read error at offset 0"));
	close(fd);
	free(buf);
}

static void test_sha256_fd_copy(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_err err = { 0 };
	size_t len = 6 * BK_SHA256_CHUNK + 4097;
	uint8_t d[BK_SHA256_LEN], e[BK_SHA256_LEN];
	char *buf, *back = malloc(len);
	int fd = make_blob(dir, "in", len, &buf);
	int out = openat(dir->dfd, "out", O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	assert_true(out >= 0);
	assert_non_null(back);
	/* Copy all but the first 9 bytes to offset 4096 of the output. */
	assert_int_equal(bk_sha256_fd_copy(fd, 9, len - 9, out, 4096, 0, d, &err), 0);
	assert_int_equal(bk_sha256_buf(buf + 9, len - 9, e), 0);
	assert_memory_equal(d, e, BK_SHA256_LEN);
	assert_int_equal(pread(out, back, len, 4096), (ssize_t) (len - 9));
	assert_memory_equal(back, buf + 9, len - 9);
	/* Neither file position moved. */
	assert_int_equal(lseek(out, 0, SEEK_CUR), 0);

	/* Truncated input. */
	assert_int_equal(bk_sha256_fd_copy(fd, 10, len, out, 0, 0, d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "truncated"));
	/* Unwritable output. */
	bk_err_clear(&err);
	int ro = openat(dir->dfd, "out", O_RDONLY | O_CLOEXEC);
	assert_int_equal(bk_sha256_fd_copy(fd, 0, 100, ro, 0, 0, d, &err), -EBADF);
	assert_non_null(strstr(err.msg, "write error at output offset 0"));
	close(ro);
	close(out);
	close(fd);
	free(buf);
	free(back);
}

static void test_sha256_fd_copy_sparse(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_err err = { 0 };
	size_t len = 8 * BK_SHA256_CHUNK;
	uint8_t d[BK_SHA256_LEN], e[BK_SHA256_LEN];
	char *buf = calloc(1, len), *back = malloc(len);
	int in = openat(dir->dfd, "in", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	int out = openat(dir->dfd, "out", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	struct stat st;

	/* Data only in the second chunk; the rest zeros. */
	memset(buf + BK_SHA256_CHUNK + 10, 0x5a, 1000);
	assert_int_equal(write(in, buf, len), (ssize_t) len);
	assert_int_equal(bk_sha256_fd_copy(in, 0, len, out, 0, BK_SHA256_COPY_SPARSE, d, &err), 0);
	assert_int_equal(ftruncate(out, (off_t) len), 0);
	assert_int_equal(bk_sha256_buf(buf, len, e), 0);
	assert_memory_equal(d, e, BK_SHA256_LEN);
	assert_int_equal(pread(out, back, len, 0), (ssize_t) len);
	assert_memory_equal(back, buf, len);
	/* Only the chunk with data was written. */
	assert_int_equal(fstat(out, &st), 0);
	assert_true((uint64_t) st.st_blocks * 512 <= 2 * BK_SHA256_CHUNK);
	close(in);
	close(out);
	free(buf);
	free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_known_vectors),
		cmocka_unit_test(test_sha256_streaming_equals_oneshot),
		cmocka_unit_test(test_sha256_hex_roundtrip),
		cmocka_unit_test_setup_teardown(test_sha256_fd_range, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_sha256_fd_jobs_parallel, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_sha256_fd_copy, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_sha256_fd_copy_sparse, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

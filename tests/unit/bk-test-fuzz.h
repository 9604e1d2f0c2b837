/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replay of a libFuzzer target's inputs in make check (test-fuzz-<target>.c): the file
 * includes the target's source (tests/fuzz/fuzz-<target>.c), then this header, and its main()
 * returns bk_test_fuzz_run("<target>"). Every seed in tests/fuzz/corpus/<target> (at least 5)
 * and every finding kept from `make fuzz` in tests/fuzz/regress/<target> goes through
 * LLVMFuzzerTestOneInput(), so a crash found once stays fixed (with ASan in the sanitizer
 * build). Runs from the repository root.
 */
#pragma once

#include <dirent.h>
#include <errno.h>

#include "bk-test.h"

/* An input is at most this long; longer files are read up to it (the targets cap it too). */
#define BK_TEST_FUZZ_MAX_INPUT (1024 * 1024 + 1)

static const char *bk_test_fuzz_target;

/*
 * Every file in tests/fuzz/<kind>/<target> through the target (LLVMFuzzerTestOneInput(), from
 * the target's source included before this header); returns how many.
 */
static inline size_t bk_test_fuzz_replay(const char *kind)
{
	char path[256];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "tests/fuzz/%s/%s", kind, bk_test_fuzz_target);
	d = opendir(path);
	if (!d)
		fail_msg("cannot open '%s': %s", path, strerror(errno));
	while ((de = readdir(d))) {
		char file[512];
		uint8_t *buf;
		ssize_t len;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
		fd = open(file, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		buf = malloc(BK_TEST_FUZZ_MAX_INPUT);
		assert_non_null(buf);
		len = read(fd, buf, BK_TEST_FUZZ_MAX_INPUT);
		assert_true(len >= 0);
		close(fd);
		assert_int_equal(LLVMFuzzerTestOneInput(buf, (size_t) len), 0);
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

static void test_fuzz_corpus(void **state)
{
	size_t n = bk_test_fuzz_replay("corpus");

	(void) state;
	print_message("# replayed %zu seed inputs\n", n);
	assert_true(n >= 5);
}

static void test_fuzz_regressions(void **state)
{
	(void) state;
	print_message("# replayed %zu kept findings\n", bk_test_fuzz_replay("regress"));
}

/* main() of a replay test: the seeds and the kept findings of target. */
static inline int bk_test_fuzz_run(const char *target)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fuzz_corpus),
		cmocka_unit_test(test_fuzz_regressions),
	};

	bk_test_fuzz_target = target;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

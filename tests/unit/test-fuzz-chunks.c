/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays the chunk-list fuzzer's seed corpus (tests/fuzz/corpus/chunks) and every finding kept
 * from `make fuzz` (tests/fuzz/regress/chunks) through the fuzz target itself, so a crash
 * found once stays fixed (with ASan in the sanitizer build). Runs from the repository root.
 */
#include <dirent.h>
#include <errno.h>

#include "bk-test.h"

#include "../fuzz/fuzz-chunks.c"

static const char *const dirs[] = { "tests/fuzz/corpus/chunks", "tests/fuzz/regress/chunks" };

static size_t replay_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

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
		buf = malloc(1024 * 1024 + 1);
		assert_non_null(buf);
		len = read(fd, buf, 1024 * 1024 + 1);
		assert_true(len >= 0);
		close(fd);
		assert_int_equal(LLVMFuzzerTestOneInput(buf, (size_t) len), 0);
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

static void test_fuzz_chunks_corpus(void **state)
{
	size_t n = replay_dir(dirs[0]);

	print_message("# replayed %zu seed inputs\n", n);
	assert_true(n >= 5);
}

static void test_fuzz_chunks_regressions(void **state)
{
	print_message("# replayed %zu kept findings\n", replay_dir(dirs[1]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fuzz_chunks_corpus),
		cmocka_unit_test(test_fuzz_chunks_regressions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-fs.h"

static int setup(void **state)
{
	wrap_reset();
	return bk_test_dir_setup(state);
}

static int teardown(void **state)
{
	wrap_reset();
	return bk_test_dir_teardown(state);
}

static void test_filename_is_valid_rejects_paths(void **state)
{
	char longname[NAME_MAX + 2];

	assert_true(bk_filename_is_valid("rootfs"));
	assert_true(bk_filename_is_valid("a.b-c_d"));
	assert_true(bk_filename_is_valid("..."));
	assert_false(bk_filename_is_valid(NULL));
	assert_false(bk_filename_is_valid(""));
	assert_false(bk_filename_is_valid("."));
	assert_false(bk_filename_is_valid(".."));
	assert_false(bk_filename_is_valid("a/b"));
	assert_false(bk_filename_is_valid("/etc"));
	assert_false(bk_filename_is_valid("x\n"));
	assert_false(bk_filename_is_valid(".#tmp"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(bk_filename_is_valid(longname));
	longname[NAME_MAX] = '\0';
	assert_true(bk_filename_is_valid(longname));
}

static void test_parse_numbers(void **state)
{
	uint64_t v = 7;
	bool b = false;

	assert_int_equal(bk_parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(bk_parse_u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	v = 7;
	assert_int_equal(bk_parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(bk_parse_u64("-1", &v), -EINVAL);
	assert_int_equal(bk_parse_u64(" 1", &v), -EINVAL);
	assert_int_equal(bk_parse_u64("", &v), -EINVAL);
	assert_int_equal(bk_parse_u64("12a", &v), -EINVAL);
	assert_int_equal(v, 7); /* untouched on failure */

	assert_int_equal(bk_parse_size("64M", &v), 0);
	assert_true(v == 64ull << 20);
	assert_int_equal(bk_parse_size("2GiB", &v), 0);
	assert_true(v == 2ull << 30);
	assert_int_equal(bk_parse_size("4096", &v), 0);
	assert_true(v == 4096);
	assert_int_equal(bk_parse_size("1X", &v), -EINVAL);
	assert_int_equal(bk_parse_size("99999999999T", &v), -ERANGE);

	assert_int_equal(bk_parse_bool("yes", &b), 0);
	assert_true(b);
	assert_int_equal(bk_parse_bool("Off", &b), 0);
	assert_false(b);
	assert_int_equal(bk_parse_bool("maybe", &b), -EINVAL);
}

static void test_write_atomic_creates_and_replaces(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	struct stat st;
	char buf[64];

	assert_int_equal(bk_write_atomic_at(d->dfd, "state", "one", 3, 0600, 0, &err), 0);
	assert_int_equal(bk_test_read(d->dfd, "state", buf, sizeof(buf)), 3);
	assert_string_equal(buf, "one");
	assert_int_equal(fstatat(d->dfd, "state", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_int_equal(bk_write_atomic_at(d->dfd, "state", "second", 6, 0644, 0, &err), 0);
	assert_int_equal(bk_test_read(d->dfd, "state", buf, sizeof(buf)), 6);
	assert_string_equal(buf, "second");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_false(bk_err_is_set(&err));
}

static void test_write_atomic_noreplace(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char buf[64];

	bk_test_write(d->dfd, "state", "old");
	assert_int_equal(
		bk_write_atomic_at(d->dfd, "state", "new", 3, 0644, BK_WRITE_NOREPLACE, &err),
		-EEXIST);
	assert_non_null(strstr(err.msg, "'state'"));
	bk_test_read(d->dfd, "state", buf, sizeof(buf));
	assert_string_equal(buf, "old");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

static void test_write_atomic_invalid_name(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };

	assert_int_equal(bk_write_atomic_at(d->dfd, "../escape", "x", 1, 0644, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid file name"));
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

/* The old file is intact, no temp is left, the code and the message name the file. */
static void assert_failed_cleanly(struct bk_test_dir *d, int r, int expected,
				  const struct bk_err *err, const char *step)
{
	char buf[64];

	assert_int_equal(r, expected);
	assert_int_equal(err->code, expected);
	assert_non_null(strstr(err->msg, "'state'"));
	assert_non_null(strstr(err->msg, step));
	assert_int_equal(bk_test_read(d->dfd, "state", buf, sizeof(buf)), 3);
	assert_string_equal(buf, "old");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

static void test_write_atomic_fsync_eio(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "state", "old");
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	r = bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err);
	assert_failed_cleanly(d, r, -EIO, &err, "cannot sync");
	assert_non_null(strstr(err.msg, "Input/output error"));
}

static void test_write_atomic_write_enospc(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "state", "old");
	wrap_write_armed = 1;
	will_return(__wrap_write, ENOSPC);
	r = bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err);
	assert_failed_cleanly(d, r, -ENOSPC, &err, "cannot write");
	assert_non_null(strstr(err.msg, "No space left"));
}

static void test_write_atomic_short_write_then_enospc(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "state", "old");
	wrap_write_armed = 2;
	will_return(__wrap_write, -4); /* 4 bytes get through */
	will_return(__wrap_write, ENOSPC);
	r = bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err);
	assert_failed_cleanly(d, r, -ENOSPC, &err, "cannot write");
}

static void test_write_atomic_short_writes_complete(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char buf[64];

	wrap_write_armed = 3;
	will_return(__wrap_write, -1);
	will_return(__wrap_write, -2);
	will_return(__wrap_write, -3);
	assert_int_equal(bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err), 0);
	assert_int_equal(bk_test_read(d->dfd, "state", buf, sizeof(buf)), 11);
	assert_string_equal(buf, "new content");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

static void test_write_atomic_rename_fails(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "state", "old");
	wrap_renameat_armed = 1;
	will_return(__wrap_renameat, EXDEV);
	r = bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err);
	assert_failed_cleanly(d, r, -EXDEV, &err, "cannot rename");
}

static void test_write_atomic_rename_noreplace_fails(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "other", "x");
	bk_test_write(d->dfd, "state", "old");
	wrap_renameat2_armed = 1;
	will_return(__wrap_renameat2, EIO);
	r = bk_write_atomic_at(d->dfd, "fresh", "new", 3, 0644, BK_WRITE_NOREPLACE, &err);
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(err.msg, "'fresh'"));
	assert_int_equal(faccessat(d->dfd, "fresh", F_OK, 0), -1);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

static void test_write_atomic_close_eio(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int r;

	bk_test_write(d->dfd, "state", "old");
	wrap_close_armed = 1;
	will_return(__wrap_close, EIO);
	r = bk_write_atomic_at(d->dfd, "state", "new content", 11, 0644, 0, &err);
	assert_failed_cleanly(d, r, -EIO, &err, "cannot close");
}

static void test_write_atomic_dir_fsync_fails_after_rename(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char buf[64];

	/* The file fsync passes, the directory fsync fails: new content, error reported. */
	bk_test_write(d->dfd, "state", "old");
	wrap_fsync_armed = 1;
	wrap_fsync_skip = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_write_atomic_at(d->dfd, "state", "new", 3, 0644, 0, &err), -EIO);
	assert_non_null(strstr(err.msg, "directory of 'state'"));
	bk_test_read(d->dfd, "state", buf, sizeof(buf));
	assert_string_equal(buf, "new");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
}

static void test_read_file_limits(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char *buf = NULL;
	size_t len = 0;

	bk_test_write(d->dfd, "f", "0123456789");
	assert_int_equal(bk_read_file_at(d->dfd, "f", 10, &buf, &len, &err), 0);
	assert_int_equal(len, 10);
	assert_string_equal(buf, "0123456789");
	free(buf);
	buf = NULL;

	assert_int_equal(bk_read_file_at(d->dfd, "f", 9, &buf, &len, &err), -EFBIG);
	assert_null(buf);
	assert_non_null(strstr(err.msg, "'f'"));

	bk_err_clear(&err);
	assert_int_equal(mkdirat(d->dfd, "dir", 0755), 0);
	assert_int_equal(bk_read_file_at(d->dfd, "dir", 100, &buf, NULL, &err), -EBADFD);
	bk_err_clear(&err);
	assert_int_equal(bk_read_file_at(d->dfd, "missing", 100, &buf, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "'missing'"));
}

static void test_mkdir_p_and_open_beneath(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int fd = -1, fd2;

	assert_int_equal(bk_mkdir_p_at(d->dfd, "var/lib/bootbank", 0755, &fd, &err), 0);
	assert_true(fd >= 0);
	bk_test_write(fd, "x", "1");
	close(fd);
	/* Again: existing directories are fine. */
	assert_int_equal(bk_mkdir_p_at(d->dfd, "var/lib/bootbank", 0755, &fd, &err), 0);
	close(fd);

	assert_int_equal(bk_mkdir_p_at(d->dfd, "var/../etc", 0755, &fd, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'..'"));

	fd2 = bk_open_beneath(d->dfd, "var/lib/bootbank/x", O_RDONLY | O_CLOEXEC, 0, true);
	assert_true(fd2 >= 0);
	close(fd2);
	assert_int_equal(
		bk_open_beneath(d->dfd, "var/../../etc/passwd", O_RDONLY | O_CLOEXEC, 0, false),
		-EXDEV);
	assert_int_equal(symlinkat("/etc", d->dfd, "link"), 0);
	assert_true(bk_open_beneath(d->dfd, "link/passwd", O_RDONLY | O_CLOEXEC, 0, false) < 0);
	assert_true(bk_open_beneath(d->dfd, "link/passwd", O_RDONLY | O_CLOEXEC, 0, true) < 0);
	assert_int_equal(bk_open_beneath(d->dfd, "/etc/passwd", O_RDONLY | O_CLOEXEC, 0, false),
			 -EINVAL);
}

static void test_remove_stale_temps(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };

	bk_test_write(d->dfd, ".#state.1234", "x");
	bk_test_write(d->dfd, ".partial.rootfs", "x");
	bk_test_write(d->dfd, "state", "keep");
	assert_int_equal(bk_remove_stale_temps_at(d->dfd, &err), 2);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".partial."), 0);
	assert_int_equal(faccessat(d->dfd, "state", F_OK, 0), 0);
	assert_int_equal(bk_remove_stale_temps_at(d->dfd, &err), 0);
}

static void test_remove_temps_of_one_file(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };

	bk_test_write(d->dfd, ".#grubenv.1a2b3c4d", "x");
	bk_test_write(d->dfd, ".#grubenv.99", "x");
	bk_test_write(d->dfd, ".#grubenv-other.1", "keep");
	bk_test_write(d->dfd, ".#bootstate.json.1", "keep");
	bk_test_write(d->dfd, ".partial.rootfs", "keep");
	bk_test_write(d->dfd, "grubenv", "keep");
	assert_int_equal(bk_remove_temps_of_at(d->dfd, "grubenv", &err), 2);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#grubenv."), 0);
	assert_int_equal(faccessat(d->dfd, ".#grubenv-other.1", F_OK, 0), 0);
	assert_int_equal(faccessat(d->dfd, ".#bootstate.json.1", F_OK, 0), 0);
	assert_int_equal(faccessat(d->dfd, ".partial.rootfs", F_OK, 0), 0);
	assert_int_equal(faccessat(d->dfd, "grubenv", F_OK, 0), 0);
	assert_int_equal(bk_remove_temps_of_at(d->dfd, "grubenv", &err), 0);
	assert_int_equal(bk_remove_temps_of_at(d->dfd, "../x", &err), -EINVAL);
}

/* mkdirat + open, asserted. */
static int mkdir_open(int dfd, const char *name)
{
	int fd;

	assert_int_equal(mkdirat(dfd, name, 0755), 0);
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/*
 * Temp files at every depth go, down to max_depth (issue 16: banks/.#B.json.XXXX was never
 * removed); other files, directories with a temp-like name, what a symlink points to and what
 * lies deeper than max_depth stay.
 */
static void test_remove_temps_tree(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_test_dir other;
	struct bk_err err = { 0 };
	int banks, deeper, d3, odd;

	bk_test_dir_open(&other);
	bk_test_write(other.dfd, ".#victim.1", "not ours");

	bk_test_write(d->dfd, ".#bootstate.json.1", "x");
	banks = mkdir_open(d->dfd, "banks");
	bk_test_write(banks, ".#B.json.6576a181", "x");
	bk_test_write(banks, "A.json", "keep");
	bk_test_write(banks, ".hidden", "keep");
	assert_int_equal(symlinkat("A.json", banks, ".#link.1"), 0);
	assert_int_equal(symlinkat(other.path, banks, "elsewhere"), 0);
	deeper = mkdir_open(banks, "deeper");
	bk_test_write(deeper, ".partial.rootfs", "x");
	odd = mkdir_open(deeper, ".#dir");
	bk_test_write(odd, ".#inside.1", "x");
	d3 = mkdir_open(odd, "d4");
	bk_test_write(d3, ".#too-deep.1", "keep: below max_depth");

	/* .: 1, banks: 2 (a file and a symlink), deeper: 1, deeper/.#dir: 1 */
	assert_int_equal(bk_remove_temps_tree_at(d->dfd, 3, &err), 5);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_int_equal(bk_test_count_prefix(banks, ".#"), 0);
	assert_int_equal(bk_test_count_prefix(deeper, ".partial."), 0);
	assert_int_equal(bk_test_count_prefix(odd, ".#inside"), 0);
	assert_int_equal(faccessat(deeper, ".#dir", F_OK, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(faccessat(d3, ".#too-deep.1", F_OK, 0), 0);
	assert_int_equal(faccessat(banks, "A.json", F_OK, 0), 0);
	assert_int_equal(faccessat(banks, ".hidden", F_OK, 0), 0);
	assert_int_equal(faccessat(other.dfd, ".#victim.1", F_OK, 0), 0);
	assert_int_equal(bk_remove_temps_tree_at(d->dfd, 3, &err), 0);
	/* max_depth 0 is the top directory alone, as bk_remove_stale_temps_at(). */
	bk_test_write(banks, ".#B.json.2", "x");
	bk_test_write(d->dfd, ".#top.1", "x");
	assert_int_equal(bk_remove_temps_tree_at(d->dfd, 0, &err), 1);
	assert_int_equal(bk_test_count_prefix(banks, ".#"), 1);
	assert_int_equal(bk_remove_temps_tree_at(d->dfd, 8, &err), 2);

	close(d3);
	close(odd);
	close(deeper);
	close(banks);
	bk_test_dir_close(&other);
}

/* What the child in test_remove_temps_tree_stays_on_its_mount() found: 0 ok, 77 skip. */
static int tree_mount_child(const char *top, const char *other)
{
	char path[256];
	struct bk_err err = { 0 };
	int dfd, fd, n;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 77;
	/* Opened after unshare(): an fd of the old namespace would not see our mounts. */
	dfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || mkdirat(dfd, "tmpfs", 0755) < 0 || mkdirat(dfd, "bind", 0755) < 0)
		return 1;
	(void) snprintf(path, sizeof(path), "%s/tmpfs", top);
	if (mount("bk-unit", path, "tmpfs", 0, NULL) < 0)
		return 77;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 2;
	bk_test_write(fd, ".#on-tmpfs.1", "not ours");
	/* A bind mount of a directory of the same filesystem: same device, another mount. */
	(void) snprintf(path, sizeof(path), "%s/bind", top);
	if (mount(other, path, NULL, MS_BIND, NULL) < 0)
		return 77;
	bk_test_write(dfd, ".#top.1", "x");
	n = bk_remove_temps_tree_at(dfd, 4, &err);
	if (n != 1) {
		fprintf(stderr, "# removed %d: %s\n", n, err.msg);
		return 3;
	}
	if (faccessat(fd, ".#on-tmpfs.1", F_OK, 0) < 0 || faccessat(dfd, ".#top.1", F_OK, 0) == 0)
		return 4;
	return 0;
}

/* Another mount below the tree (a tmpfs, a bind mount of the same filesystem) is not entered. */
static void test_remove_temps_tree_stays_on_its_mount(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_test_dir other;
	int status;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	bk_test_dir_open(&other);
	bk_test_write(other.dfd, ".#victim.1", "not ours");
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(tree_mount_child(d->path, other.path));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		bk_test_dir_close(&other);
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(faccessat(other.dfd, ".#victim.1", F_OK, 0), 0);
	bk_test_dir_close(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filename_is_valid_rejects_paths),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test_setup_teardown(test_write_atomic_creates_and_replaces, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_noreplace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_invalid_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_fsync_eio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_write_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_short_write_then_enospc, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_short_writes_complete, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_rename_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_rename_noreplace_fails, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_close_eio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_dir_fsync_fails_after_rename,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_file_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_p_and_open_beneath, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_stale_temps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_temps_of_one_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_temps_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_temps_tree_stays_on_its_mount, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

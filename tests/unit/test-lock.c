/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "bk-test.h"

#include "bk-lock.h"

/* A child holds the lock until killed; returns its pid once the lock is taken. */
static pid_t hold_in_child(int dfd)
{
	int p[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = -1;

		if (bk_lock_acquire(dfd, "test", false, &fd, NULL) < 0)
			_exit(1);
		(void) write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

static void test_lock_busy_then_free(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char expect[64];
	int fd = -1;
	pid_t pid = hold_in_child(d->dfd);

	assert_int_equal(bk_lock_acquire(d->dfd, "/run/bootbank", false, &fd, &err), -EBUSY);
	assert_int_equal(fd, -1);
	snprintf(expect, sizeof(expect), "(pid %d)", (int) pid);
	assert_non_null(strstr(err.msg, "busy"));
	assert_non_null(strstr(err.msg, expect));
	assert_non_null(strstr(err.msg, "'/run/bootbank/lock'"));

	/* The holder dies: the lock is free again. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	bk_err_clear(&err);
	assert_int_equal(bk_lock_acquire(d->dfd, "/run/bootbank", false, &fd, &err), 0);
	assert_true(fd >= 0);
	assert_int_equal(bk_lock_release(fd), -EBADF);
}

static void test_lock_wait_blocks_until_released(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	int fd = -1;
	pid_t pid = hold_in_child(d->dfd), killer;

	killer = fork();
	if (killer == 0) {
		usleep(200 * 1000);
		kill(pid, SIGKILL);
		_exit(0);
	}
	assert_int_equal(bk_lock_acquire(d->dfd, "x", true, &fd, &err), 0);
	waitpid(pid, NULL, 0);
	waitpid(killer, NULL, 0);
	bk_lock_release(fd);
}

static void test_lock_missing_dir(void **state)
{
	struct bk_err err = { 0 };
	int fd = -1;
	int dfd = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(bk_lock_acquire(dfd, "/proc/self", false, &fd, &err) < 0);
	assert_non_null(strstr(err.msg, "'/proc/self/lock'"));
	close(dfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lock_busy_then_free, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_lock_wait_blocks_until_released,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test(test_lock_missing_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

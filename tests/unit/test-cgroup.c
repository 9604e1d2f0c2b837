/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bk-cgroup without a cgroup2 mount: the files a cgroup has (cgroup.procs, cgroup.events,
 * cgroup.freeze) are plain files in a test directory, the processes real children.
 */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-cgroup.h"

static pid_t victim = -1;

static int setup(void **state)
{
	struct bk_test_dir *d;

	wrap_reset();
	bk_test_dir_setup(state);
	d = *state;
	bk_test_write(d->dfd, "cgroup.events", "populated 1\nfrozen 0\n");
	bk_test_write(d->dfd, "cgroup.freeze", "0\n");
	return 0;
}

static int teardown(void **state)
{
	wrap_reset();
	if (victim > 0) {
		(void) kill(victim, SIGKILL);
		(void) waitpid(victim, NULL, 0);
		victim = -1;
	}
	return bk_test_dir_teardown(state);
}

static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	return pid;
}

/* The race of issue 16 item 5: the process is reaped between pidfd_open() and the open. */
static void reap_victim(const char *path)
{
	assert_int_equal(kill(victim, SIGKILL), 0);
	assert_int_equal(waitpid(victim, NULL, 0), victim);
	victim = -1;
}

static struct bk_cgroup *open_test_cgroup(struct bk_test_dir *d)
{
	struct bk_cgroup *cg = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_cgroup_open("/tmp", d->path + strlen("/tmp/"), &cg, &err), 0);
	return cg;
}

static void write_procs(struct bk_test_dir *d, pid_t a, pid_t b)
{
	char buf[64];

	if (b > 0)
		(void) snprintf(buf, sizeof(buf), "%d\n%d\n", (int) a, (int) b);
	else
		(void) snprintf(buf, sizeof(buf), "%d\n", (int) a);
	bk_test_write(d->dfd, "cgroup.procs", buf);
}

static void test_cgroup_mntns_vanished_process_eacces(void **state)
{
	struct bk_test_dir *d = *state;
	_cleanup_(bk_cgroup_freep) struct bk_cgroup *cg = open_test_cgroup(d);
	struct bk_err err = { 0 };
	struct stat st, self;
	int nsfd = -EBADF;
	pid_t pid = 0;

	victim = spawn_sleeper();
	write_procs(d, victim, getpid());
	/* The kernel answers EACCES for /proc/PID/ns/mnt of a task it has just reaped. */
	wrap_open64_match = "/ns/mnt";
	wrap_open64_before = reap_victim;
	wrap_open64_armed = 1;
	will_return(__wrap_open64, EACCES);
	assert_int_equal(bk_cgroup_open_mntns(cg, &nsfd, &pid, &err), 0);
	assert_string_equal(err.msg, "");
	assert_int_equal(pid, getpid());
	assert_int_equal(fstat(nsfd, &st), 0);
	assert_int_equal(stat("/proc/self/ns/mnt", &self), 0);
	assert_true(st.st_ino == self.st_ino && st.st_dev == self.st_dev);
	close(nsfd);
}

static void test_cgroup_mntns_only_vanished_process(void **state)
{
	struct bk_test_dir *d = *state;
	_cleanup_(bk_cgroup_freep) struct bk_cgroup *cg = open_test_cgroup(d);
	struct bk_err err = { 0 };
	int nsfd = -EBADF;
	char want[256];

	victim = spawn_sleeper();
	write_procs(d, victim, 0);
	wrap_open64_match = "/ns/mnt";
	wrap_open64_before = reap_victim;
	wrap_open64_armed = 1;
	will_return(__wrap_open64, EACCES);
	assert_int_equal(bk_cgroup_open_mntns(cg, &nsfd, NULL, &err), -ESRCH);
	(void) snprintf(want, sizeof(want), "cgroup '%s' has no process", d->path + 5);
	assert_string_equal(err.msg, want);
	assert_int_equal(nsfd, -EBADF);
}

/* A live process whose namespace cannot be opened is still an error, not "exited". */
static void test_cgroup_mntns_live_process_eacces(void **state)
{
	struct bk_test_dir *d = *state;
	_cleanup_(bk_cgroup_freep) struct bk_cgroup *cg = open_test_cgroup(d);
	struct bk_err err = { 0 };
	int nsfd = -EBADF;
	char want[256];

	victim = spawn_sleeper();
	write_procs(d, victim, getpid());
	wrap_open64_match = "/ns/mnt";
	wrap_open64_armed = 1;
	will_return(__wrap_open64, EACCES);
	assert_int_equal(bk_cgroup_open_mntns(cg, &nsfd, NULL, &err), -EACCES);
	(void) snprintf(want, sizeof(want),
			"cannot open the mount namespace of pid %d: Permission denied",
			(int) victim);
	assert_string_equal(err.msg, want);
	assert_int_equal(nsfd, -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cgroup_mntns_vanished_process_eacces, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_mntns_only_vanished_process, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_mntns_live_process_eacces, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

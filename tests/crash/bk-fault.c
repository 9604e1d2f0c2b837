/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault injection by LD_PRELOAD for the switch-over (tests/integ/switch-faults.sh): makes one
 * step of one workload's switch fail, as the kernel could, without killing anything.
 *
 *   BK_FAULT_FREEZE=CG   the first write of "1" to CG's cgroup.freeze fails with EIO
 *   BK_FAULT_THAW=CG     the first write of "0" to CG's cgroup.freeze fails with EIO
 *                        (CG: the cgroup's path ends with "/CG"; the cgroup stays as it was)
 *   BK_FAULT_SWAP=NS     move_mount() fails with EIO in a process whose mount namespace is NS
 *                        (the text of the /proc/self/ns/mnt link, "mnt:[4026532...]"): the
 *                        view helper, after its setns() into the workload's namespace
 *
 * Each fault fires once per process (a forked view helper inherits the state of its parent).
 * The variables and LD_PRELOAD are removed from the environment at load time, so programs
 * started later (hooks, mount) run normally.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fault_freeze[256], fault_thaw[256], fault_swap[64];
static int fired_freeze, fired_thaw, fired_swap;

__attribute__((constructor)) static void init(void)
{
	const char *f = getenv("BK_FAULT_FREEZE"), *t = getenv("BK_FAULT_THAW");
	const char *s = getenv("BK_FAULT_SWAP");

	if (f)
		snprintf(fault_freeze, sizeof(fault_freeze), "/%s/cgroup.freeze", f);
	if (t)
		snprintf(fault_thaw, sizeof(fault_thaw), "/%s/cgroup.freeze", t);
	if (s)
		snprintf(fault_swap, sizeof(fault_swap), "%s", s);
	unsetenv("BK_FAULT_FREEZE");
	unsetenv("BK_FAULT_THAW");
	unsetenv("BK_FAULT_SWAP");
	unsetenv("LD_PRELOAD");
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Whether this write to fd is the one to fail. */
static int fail_freeze_write(int fd, const void *buf, size_t len)
{
	char link[64], path[4096];
	const char *want;
	int *fired;
	ssize_t n;

	if (len < 1 || (!fault_freeze[0] && !fault_thaw[0]))
		return 0;
	if (((const char *) buf)[0] == '1') {
		want = fault_freeze;
		fired = &fired_freeze;
	} else if (((const char *) buf)[0] == '0') {
		want = fault_thaw;
		fired = &fired_thaw;
	} else
		return 0;
	if (!want[0] || *fired)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	if (!ends_with(path, want))
		return 0;
	*fired = 1;
	return 1;
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buf, size_t len)
{
	if (fail_freeze_write(fd, buf, len)) {
		errno = EIO;
		return -1;
	}
	return REAL(write)(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (fail_freeze_write(fd, buf, len)) {
		errno = EIO;
		return -1;
	}
	return REAL(pwrite)(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	if (fail_freeze_write(fd, buf, len)) {
		errno = EIO;
		return -1;
	}
	return REAL(pwrite64)(fd, buf, len, off);
}

int move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
	char ns[64];
	ssize_t n;

	if (fault_swap[0] && !fired_swap) {
		n = readlink("/proc/self/ns/mnt", ns, sizeof(ns) - 1);
		if (n > 0) {
			ns[n] = '\0';
			if (strcmp(ns, fault_swap) == 0) {
				fired_swap = 1;
				errno = EIO;
				return -1;
			}
		}
	}
	return REAL(move_mount)(from_dfd, from, to_dfd, to, flags);
}

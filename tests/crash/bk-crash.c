/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash injection by LD_PRELOAD: counts the mutating system calls a process makes and kills it
 * (_exit, as SIGKILL would: no cleanup, no atexit) right BEFORE the Nth one.
 *
 *   BK_CRASH_AT=N          die before the Nth mutating call (unset: only count)
 *   BK_CRASH_COUNT=FILE    at a normal exit, write the number of mutating calls made to FILE
 *   BK_CRASH_EXIT=CODE     exit code of the simulated crash (default 137, as SIGKILL)
 *   BK_CRASH_MODE=MODE     who dies at the Nth call (issue 16: helpers crash too):
 *                            self     the process making the call (default);
 *                            helpers  the helpers only: the process making the call when it is
 *                                     a forked child (the stage child), else every descendant
 *                                     of the started process (view helpers, watchdog), which
 *                                     itself goes on;
 *                            tree     the started process and every descendant (a kill of the
 *                                     whole unit: cgroup kill, OOM), the setsid'ed watchdog too
 *   BK_CRASH_TRACE=FILE    append "N PID DESCENDANTS" for every mutating call (which calls have
 *                          helpers alive, for choosing the points of the helpers/tree modes)
 *
 * Only the process started with these variables is affected: they are removed from the
 * environment at load time, so children (mkfs, hooks) run normally.
 * Mutating calls: write, pwrite, writev, pwritev, fsync, fdatasync, syncfs, rename, renameat,
 * renameat2, unlink, unlinkat, rmdir, ftruncate, truncate, mkdir, mkdirat, symlink, symlinkat,
 * link, linkat, fchmod, mount, umount2, ioctl (loop and filesystem ioctls change state too).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned long crash_at; /* 0: never */
static unsigned long count;
static int crash_exit = 137;
static char count_file[4096];
static char trace_file[4096];
static int active;
static enum { MODE_SELF, MODE_HELPERS, MODE_TREE } mode;
static pid_t top; /* the started process */

static void write_count(void)
{
	char buf[32];
	int fd, n;
	ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");

	if (!count_file[0])
		return;
	fd = open(count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	n = snprintf(buf, sizeof(buf), "%lu\n", count);
	if (real_write(fd, buf, (size_t) n) < 0)
		n = 0;
	close(fd);
}

__attribute__((constructor)) static void init(void)
{
	const char *at = getenv("BK_CRASH_AT");
	const char *cf = getenv("BK_CRASH_COUNT");
	const char *ce = getenv("BK_CRASH_EXIT");
	const char *cm = getenv("BK_CRASH_MODE");
	const char *ct = getenv("BK_CRASH_TRACE");

	if (!at && !cf && !ct)
		return;
	active = 1;
	top = getpid();
	if (cm && strcmp(cm, "helpers") == 0)
		mode = MODE_HELPERS;
	else if (cm && strcmp(cm, "tree") == 0)
		mode = MODE_TREE;
	if (ct)
		snprintf(trace_file, sizeof(trace_file), "%s", ct);
	if (at)
		crash_at = strtoul(at, NULL, 10);
	if (ce)
		crash_exit = atoi(ce);
	if (cf)
		snprintf(count_file, sizeof(count_file), "%s", cf);
	unsetenv("BK_CRASH_AT");
	unsetenv("BK_CRASH_COUNT");
	unsetenv("BK_CRASH_EXIT");
	unsetenv("BK_CRASH_MODE");
	unsetenv("BK_CRASH_TRACE");
	unsetenv("LD_PRELOAD");
	atexit(write_count);
}

/* The parent of pid (0 when unknown), from /proc/PID/stat. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return 0;
	return (pid_t) ppid;
}

/* Every live descendant of root (up to max): /proc scanned until no new one is found. */
static size_t descendants(pid_t root, pid_t *out, size_t max)
{
	size_t n = 0, before;

	do {
		DIR *d = opendir("/proc");
		struct dirent *de;

		before = n;
		if (!d)
			return n;
		while ((de = readdir(d)) && n < max) {
			pid_t pid = (pid_t) atoi(de->d_name), pp;
			int known = pid <= 0 || pid == root;

			for (size_t i = 0; i < n && !known; i++)
				known = out[i] == pid;
			if (known)
				continue;
			pp = parent_of(pid);
			if (pp == 0)
				continue;
			known = pp == root;
			for (size_t i = 0; i < n && !known; i++)
				known = out[i] == pp;
			if (known)
				out[n++] = pid;
		}
		closedir(d);
	} while (n != before && n < max);
	return n;
}

static void kill_descendants(pid_t root)
{
	pid_t pids[256];
	size_t n = descendants(root, pids, 256);

	for (size_t i = 0; i < n; i++)
		if (pids[i] != getpid())
			kill(pids[i], SIGKILL);
}

static void trace(void)
{
	pid_t pids[256];
	char buf[96];
	int fd, len;
	size_t n = descendants(top, pids, 256);
	ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");

	fd = open(trace_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	len = snprintf(buf, sizeof(buf), "%lu %d %zu\n", count, (int) getpid(), n);
	if (real_write(fd, buf, (size_t) len) < 0)
		len = 0;
	close(fd);
}

static void step(void)
{
	if (!active)
		return;
	count++;
	if (trace_file[0])
		trace();
	if (!crash_at || count != crash_at)
		return;
	switch (mode) {
	case MODE_HELPERS:
		if (getpid() != top)
			_exit(crash_exit); /* a forked helper: it dies, its parent goes on */
		kill_descendants(top);
		return;
	case MODE_TREE:
		kill_descendants(top);
		if (getpid() != top)
			kill(top, SIGKILL);
		_exit(crash_exit);
	case MODE_SELF:
	default:
		_exit(crash_exit);
	}
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buf, size_t len)
{
	/* stdout/stderr are not state: do not count them. */
	if (fd > 2)
		step();
	return REAL(write)(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	step();
	return REAL(pwrite)(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	step();
	return REAL(pwrite64)(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	if (fd > 2)
		step();
	return REAL(writev)(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	step();
	return REAL(pwritev)(fd, iov, n, off);
}

int fsync(int fd)
{
	step();
	return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
	step();
	return REAL(fdatasync)(fd);
}

int syncfs(int fd)
{
	step();
	return REAL(syncfs)(fd);
}

int rename(const char *a, const char *b)
{
	step();
	return REAL(rename)(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
	step();
	return REAL(renameat)(da, a, db, b);
}

int renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
	step();
	return REAL(renameat2)(da, a, db, b, flags);
}

int unlink(const char *p)
{
	step();
	return REAL(unlink)(p);
}

int unlinkat(int d, const char *p, int flags)
{
	step();
	return REAL(unlinkat)(d, p, flags);
}

int rmdir(const char *p)
{
	step();
	return REAL(rmdir)(p);
}

int ftruncate(int fd, off_t len)
{
	step();
	return REAL(ftruncate)(fd, len);
}

int ftruncate64(int fd, off_t len)
{
	step();
	return REAL(ftruncate64)(fd, len);
}

int truncate(const char *p, off_t len)
{
	step();
	return REAL(truncate)(p, len);
}

int mkdir(const char *p, mode_t m)
{
	step();
	return REAL(mkdir)(p, m);
}

int mkdirat(int d, const char *p, mode_t m)
{
	step();
	return REAL(mkdirat)(d, p, m);
}

int symlink(const char *t, const char *p)
{
	step();
	return REAL(symlink)(t, p);
}

int symlinkat(const char *t, int d, const char *p)
{
	step();
	return REAL(symlinkat)(t, d, p);
}

int link(const char *a, const char *b)
{
	step();
	return REAL(link)(a, b);
}

int linkat(int da, const char *a, int db, const char *b, int flags)
{
	step();
	return REAL(linkat)(da, a, db, b, flags);
}

int fchmod(int fd, mode_t m)
{
	step();
	return REAL(fchmod)(fd, m);
}

int mount(const char *src, const char *tgt, const char *type, unsigned long flags, const void *data)
{
	step();
	return REAL(mount)(src, tgt, type, flags, data);
}

int umount2(const char *tgt, int flags)
{
	step();
	return REAL(umount2)(tgt, flags);
}

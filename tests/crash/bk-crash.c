/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash injection by LD_PRELOAD: counts the mutating system calls a process makes and kills it
 * (_exit, as SIGKILL would: no cleanup, no atexit) right BEFORE the Nth one.
 *
 *   BK_CRASH_AT=N          die before the Nth mutating call (unset: only count)
 *   BK_CRASH_COUNT=FILE    at a normal exit, write the number of mutating calls made to FILE
 *   BK_CRASH_EXIT=CODE     exit code of the simulated crash (default 137, as SIGKILL)
 *
 * Only the process started with these variables is affected: they are removed from the
 * environment at load time, so children (mkfs, hooks) run normally.
 * Mutating calls: write, pwrite, writev, pwritev, fsync, fdatasync, syncfs, rename, renameat,
 * renameat2, unlink, unlinkat, rmdir, ftruncate, truncate, mkdir, mkdirat, symlink, symlinkat,
 * link, linkat, fchmod, mount, umount2, ioctl (loop and filesystem ioctls change state too).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
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
static int active;

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

	if (!at && !cf)
		return;
	active = 1;
	if (at)
		crash_at = strtoul(at, NULL, 10);
	if (ce)
		crash_exit = atoi(ce);
	if (cf)
		snprintf(count_file, sizeof(count_file), "%s", cf);
	unsetenv("BK_CRASH_AT");
	unsetenv("BK_CRASH_COUNT");
	unsetenv("BK_CRASH_EXIT");
	unsetenv("LD_PRELOAD");
	atexit(write_count);
}

static void step(void)
{
	if (!active)
		return;
	count++;
	if (crash_at && count == crash_at)
		_exit(crash_exit);
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

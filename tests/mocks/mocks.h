/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault-injection wrappers (-Wl,--wrap=SYM). Each passes through to __real_SYM unless a test
 * arms it: set wrap_SYM_skip to the number of calls to let through first, wrap_SYM_armed to
 * the number of calls to fail, and queue the errno (or, for write, the byte cap of a short
 * write as a negative number) with will_return(__wrap_SYM, value) once per armed call.
 * open64 counts only paths containing wrap_open64_match (all when NULL) and runs
 * wrap_open64_before(path), when set, before it fails an armed call.
 * wrap_reset() disarms everything.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

extern int wrap_fsync_armed, wrap_fsync_skip;
/* Every call to fsync, failed or passed through (wrap_reset() zeroes it). */
extern unsigned wrap_fsync_calls;
extern int wrap_write_armed, wrap_write_skip;
extern int wrap_renameat_armed, wrap_renameat_skip;
extern int wrap_renameat2_armed, wrap_renameat2_skip;
extern int wrap_close_armed, wrap_close_skip;
extern int wrap_open64_armed, wrap_open64_skip;
extern const char *wrap_open64_match;
extern void (*wrap_open64_before)(const char *path);
extern int wrap_unlinkat_armed, wrap_unlinkat_skip;
extern int wrap_read_armed, wrap_read_skip;
extern int wrap_pwrite64_armed, wrap_pwrite64_skip, wrap_pwrite64_errno;

/* pwrite64: every call is shown to wrap_pwrite64_observe when set (issue 15: what is written). */
extern void (*wrap_pwrite64_observe)(int fd, const void *buf, size_t len, off_t offset);

/* pread64: every call is shown to wrap_pread64_observe when set (no fault injection). */
extern void (*wrap_pread64_observe)(int fd, const void *buf, size_t len, off_t offset);

void wrap_reset(void);

int __real_fsync(int fd);
int __wrap_fsync(int fd);
ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
int __real_renameat(int olddfd, const char *oldname, int newdfd, const char *newname);
int __wrap_renameat(int olddfd, const char *oldname, int newdfd, const char *newname);
int __real_renameat2(int olddfd, const char *oldname, int newdfd, const char *newname,
		     unsigned flags);
int __wrap_renameat2(int olddfd, const char *oldname, int newdfd, const char *newname,
		     unsigned flags);
int __real_close(int fd);
int __wrap_close(int fd);
ssize_t __real_pwrite64(int fd, const void *buf, size_t len, off_t offset);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t offset);
ssize_t __real_pread64(int fd, void *buf, size_t len, off_t offset);
ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t offset);
int __real_open64(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);
int __real_unlinkat(int dfd, const char *name, int flags);
int __wrap_unlinkat(int dfd, const char *name, int flags);
ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __real___read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __wrap___read_chk(int fd, void *buf, size_t len, size_t buflen);

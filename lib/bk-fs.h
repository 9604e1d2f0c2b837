/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libc-only file helpers: name validation, number parsing, full reads and writes, fd-relative
 * directory creation and lookups, and the atomic replace that is the only way bootbank writes
 * state, configuration or pointers.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bk-err.h"

/* Prefixes of in-progress objects; the next run recognises and removes them. */
#define BK_TMP_PREFIX	  ".#"
#define BK_PARTIAL_PREFIX ".partial."

/*
 * A single path component: non-empty, no '/', not "." or "..", at most NAME_MAX bytes, no
 * control characters, and not starting with BK_TMP_PREFIX (reserved for temp files).
 */
bool bk_filename_is_valid(const char *name);

/*
 * Parse a decimal unsigned 64-bit number, the whole string, no sign, no whitespace.
 * Returns 0, -EINVAL (not a number) or -ERANGE (overflow). *ret written only on success.
 */
int bk_parse_u64(const char *s, uint64_t *ret);

/*
 * Parse a size: a number with an optional binary suffix K, M, G, T (KiB...; "KiB" and "k"
 * are accepted too). Returns 0, -EINVAL or -ERANGE.
 */
int bk_parse_size(const char *s, uint64_t *ret);

/*
 * Parse a boolean: 1/0, yes/no, true/false, on/off. Returns 0 or -EINVAL.
 */
int bk_parse_bool(const char *s, bool *ret);

/*
 * Write all of buf, looping on short writes and EINTR. Returns 0 or -errno; a write that
 * returns 0 gives -EIO.
 */
int bk_write_full(int fd, const void *buf, size_t len);

/*
 * read until len bytes or end of file, looping on short reads and EINTR (a pipe, say).
 * Returns the number of bytes read (less than len only at end of file) or -errno.
 */
ssize_t bk_read_full(int fd, void *buf, size_t len);

/*
 * pread until len bytes or end of file. Returns the number of bytes read (less than len only
 * at end of file) or -errno.
 */
ssize_t bk_pread_full(int fd, void *buf, size_t len, uint64_t offset);

/*
 * size bytes (at least 1) aligned to the page size, for the buffers bulk reads copy into:
 * the kernel copies out of the page cache into a page-aligned buffer about 4x faster than into
 * malloc's 16-byte aligned one (issue 15: 0.41 s against 0.08 s of system time for 1 GiB in
 * 1 MiB preads). Release with free(). NULL when out of memory.
 */
void *bk_alloc_pages(size_t size);

/*
 * Open (dfd, relpath) without leaving dfd: openat2() with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS (and RESOLVE_NO_SYMLINKS when nofollow), falling back to a walk with
 * O_NOFOLLOW per component on kernels without openat2. flags must include O_CLOEXEC.
 * Returns an fd or -errno (-EXDEV when the path would escape dfd).
 */
int bk_open_beneath(int dfd, const char *relpath, int flags, mode_t mode, bool nofollow);

/*
 * Create every component of relpath beneath dfd (each a valid filename, 0755 by default)
 * and return an O_RDONLY|O_DIRECTORY fd of the last one in *ret_fd. Existing directories are
 * fine; a non-directory in the way is -ENOTDIR. Does not fsync.
 */
int bk_mkdir_p_at(int dfd, const char *relpath, mode_t mode, int *ret_fd, struct bk_err *err);

/*
 * Read the regular file (dfd, name) whole, at most max bytes (more: -EFBIG), into a new
 * NUL-terminated buffer. *ret_len (optional) gets the length without the NUL.
 */
int bk_read_file_at(int dfd, const char *name, size_t max, char **ret_buf, size_t *ret_len,
		    struct bk_err *err);

enum bk_write_flags {
	BK_WRITE_NOREPLACE = 1 << 0, /* fail with -EEXIST when name exists (renameat2 NOREPLACE) */
};

/*
 * Atomically replace (or create) (dfd, name) with buf:
 *   temp ".#<name>.<random>" created O_EXCL|O_NOFOLLOW, written in full, fchmod'ed to mode,
 *   fsync'ed and closed (checked), renamed over name, then dfd is fsync'ed.
 * On any failure the temp file is removed, name is untouched and the first error is returned
 * (-errno) with a message naming the file and the step. name must be a valid filename.
 * Blocks on fsync.
 */
int bk_write_atomic_at(int dfd, const char *name, const void *buf, size_t len, mode_t mode,
		       unsigned flags, struct bk_err *err);

/* fsync a directory fd (must not be O_PATH). Returns 0 or -errno. */
int bk_fsync_dir(int dfd);

/*
 * Remove the leftovers of interrupted writes in dfd: regular files whose names start with
 * BK_TMP_PREFIX or BK_PARTIAL_PREFIX. Returns the number removed or -errno. fsyncs dfd when
 * anything was removed.
 */
int bk_remove_stale_temps_at(int dfd, struct bk_err *err);

/*
 * bk_remove_stale_temps_at() in dfd and in every directory below it, down to max_depth levels
 * (0: dfd alone), for recovery (issue 16: atomic writes use subdirectories of the state
 * directory, banks/, revisions/, workloads/, depot/, and any added later). Symbolic links are
 * never followed (a symlink with a temp name is removed itself) and other mounts are never
 * entered (a directory whose mount ID, or device, differs from its parent's: a bind mount from
 * the same filesystem counts as another mount). Directories deeper than max_depth are left
 * alone; a directory that vanishes meanwhile is skipped. Returns the number of files removed or
 * -errno (the message names the directory, relative to dfd); each directory something was
 * removed from is fsync'ed.
 */
int bk_remove_temps_tree_at(int dfd, unsigned max_depth, struct bk_err *err);
/* How deep recovery looks below the state and run directories (they nest two levels today). */
#define BK_TEMPS_TREE_MAX_DEPTH 8

/*
 * Remove the temp files bk_write_atomic_at() leaves for (dfd, name) when it is killed
 * (".#<name>.*"), and nothing else. Returns the number removed or -errno; fsyncs dfd when
 * anything was removed.
 */
int bk_remove_temps_of_at(int dfd, const char *name, struct bk_err *err);

/* Fill buf with a random lowercase hex string of len characters plus NUL (getrandom). */
int bk_random_hex(char *buf, size_t len);

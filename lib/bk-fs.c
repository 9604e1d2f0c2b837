/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-log.h"

bool bk_filename_is_valid(const char *name)
{
	size_t len;

	if (!name || name[0] == '\0')
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	len = strlen(name);
	if (len > NAME_MAX)
		return false;
	if (strncmp(name, BK_TMP_PREFIX, strlen(BK_TMP_PREFIX)) == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || (unsigned char) name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

int bk_parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!s || *s == '\0')
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		d = (unsigned) (*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

int bk_parse_size(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} suffixes[] = {
		{ "", 0 },     { "K", 10 }, { "k", 10 },   { "KiB", 10 }, { "M", 20 },
		{ "MiB", 20 }, { "G", 30 }, { "GiB", 30 }, { "T", 40 },	  { "TiB", 40 },
	};
	char digits[32];
	size_t n;
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	n = strspn(s, "0123456789");
	if (n == 0 || n >= sizeof(digits))
		return n == 0 ? -EINVAL : -ERANGE;
	memcpy(digits, s, n);
	digits[n] = '\0';
	r = bk_parse_u64(digits, &v);
	if (r < 0)
		return r;

	for (size_t i = 0; i < BK_ELEMENTSOF(suffixes); i++) {
		if (strcmp(s + n, suffixes[i].suffix) != 0)
			continue;
		if (suffixes[i].shift && v > (UINT64_MAX >> suffixes[i].shift))
			return -ERANGE;
		*ret = v << suffixes[i].shift;
		return 0;
	}
	return -EINVAL;
}

int bk_parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < BK_ELEMENTSOF(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int bk_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t) n;
	}
	return 0;
}

ssize_t bk_read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *) buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

ssize_t bk_pread_full(int fd, void *buf, size_t len, uint64_t offset)
{
	char *p = buf;
	size_t done = 0;

	if (offset > (uint64_t) INT64_MAX || len > (size_t) SSIZE_MAX)
		return -EOVERFLOW;
	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t) (offset + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t) n;
	}
	return (ssize_t) done;
}

void *bk_alloc_pages(size_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = NULL;

	if (posix_memalign(&p, page > 0 ? (size_t) page : 4096, size > 0 ? size : 1) != 0)
		return NULL;
	return p;
}

static int open_beneath_walk(int dfd, const char *relpath, int flags, mode_t mode)
{
	_cleanup_free_ char *copy = strdup(relpath);
	_cleanup_close_ int cur = -EBADF;
	char *save = NULL;
	char *comp, *next;

	if (!copy)
		return -ENOMEM;

	cur = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;

	comp = strtok_r(copy, "/", &save);
	while (comp) {
		int fd;

		next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, ".") == 0) {
			comp = next;
			continue;
		}
		if (strcmp(comp, "..") == 0)
			return -EXDEV;
		if (next)
			fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		else
			fd = openat(cur, comp, flags | O_NOFOLLOW, mode);
		if (fd < 0)
			return errno == ELOOP ? -EXDEV : -errno;
		closep(&cur);
		cur = fd;
		comp = next;
	}
	return TAKE_FD(cur);
}

int bk_open_beneath(int dfd, const char *relpath, int flags, mode_t mode, bool nofollow)
{
	struct open_how how = {
		.flags = (uint64_t) flags,
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
			   (nofollow ? RESOLVE_NO_SYMLINKS : 0),
	};
	long fd;

	if (!relpath || relpath[0] == '\0' || relpath[0] == '/')
		return -EINVAL;

	fd = syscall(SYS_openat2, dfd, relpath, &how, sizeof(how));
	if (fd >= 0)
		return (int) fd;
	if (errno != ENOSYS)
		return -errno;
	return open_beneath_walk(dfd, relpath, flags, mode);
}

int bk_mkdir_p_at(int dfd, const char *relpath, mode_t mode, int *ret_fd, struct bk_err *err)
{
	_cleanup_free_ char *copy = strdup(relpath);
	_cleanup_close_ int cur = -EBADF;
	char *save = NULL;

	if (!copy)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (mode == 0)
		mode = 0755;

	cur = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return bk_err_set(err, -errno, "cannot duplicate directory fd: %m");

	for (char *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		int fd;

		if (!bk_filename_is_valid(comp))
			return bk_err_set(err, -EINVAL, "invalid path component '%s' in '%s'", comp,
					  relpath);
		if (mkdirat(cur, comp, mode) < 0 && errno != EEXIST)
			return bk_err_set(err, -errno, "cannot create directory '%s': %m", relpath);
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return bk_err_set(err, errno == ELOOP ? -ENOTDIR : -errno,
					  "cannot open directory '%s': %m", relpath);
		closep(&cur);
		cur = fd;
	}
	*ret_fd = TAKE_FD(cur);
	return 0;
}

int bk_read_file_at(int dfd, const char *name, size_t max, char **ret_buf, size_t *ret_len,
		    struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t len = 0, cap;
	int r;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", name);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", name);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -EBADFD, "'%s' is not a regular file", name);
	if ((uint64_t) st.st_size > max)
		return bk_err_set(err, -EFBIG, "'%s' is larger than %zu bytes", name, max);

	cap = (size_t) st.st_size + 1;
	buf = malloc(cap);
	if (!buf)
		return bk_err_set(err, -ENOMEM, "out of memory reading '%s'", name);

	/* The file may grow after fstat (procfs, a writer): read until EOF within max. */
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *nbuf;
			char probe;

			if (len >= max) {
				/* Full: only end of file is acceptable now. */
				n = read(fd, &probe, 1);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return bk_err_set(err, -errno, "cannot read '%s': %m",
							  name);
				if (n == 0)
					break;
				return bk_err_set(err, -EFBIG, "'%s' is larger than %zu bytes",
						  name, max);
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			nbuf = realloc(buf, cap);
			if (!nbuf)
				return bk_err_set(err, -ENOMEM, "out of memory reading '%s'", name);
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			return bk_err_set(err, r, "cannot read '%s': %m", name);
		}
		if (n == 0)
			break;
		len += (size_t) n;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret_buf = TAKE_PTR(buf);
	return 0;
}

int bk_random_hex(char *buf, size_t len)
{
	unsigned char raw[64];
	size_t need = (len + 1) / 2;

	if (need > sizeof(raw))
		return -EINVAL;
	for (size_t got = 0; got < need;) {
		ssize_t n = getrandom(raw + got, need - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t) n;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = "0123456789abcdef"[(raw[i / 2] >> ((i % 2) * 4)) & 0xf];
	buf[len] = '\0';
	return 0;
}

int bk_fsync_dir(int dfd)
{
	if (fsync(dfd) < 0)
		return -errno;
	return 0;
}

int bk_write_atomic_at(int dfd, const char *name, const void *buf, size_t len, mode_t mode,
		       unsigned flags, struct bk_err *err)
{
	char tmp[NAME_MAX + 1];
	char rnd[9];
	int fd = -EBADF;
	int r;

	if (!bk_filename_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid file name '%s'", name ? name : "(null)");
	if (strlen(name) + strlen(BK_TMP_PREFIX) + 1 + sizeof(rnd) - 1 > NAME_MAX)
		return bk_err_set(err, -ENAMETOOLONG, "file name '%s' too long", name);

	for (unsigned attempt = 0;; attempt++) {
		r = bk_random_hex(rnd, sizeof(rnd) - 1);
		if (r < 0)
			return bk_err_set(err, r, "cannot make a temporary name for '%s': %m",
					  name);
		(void) snprintf(tmp, sizeof(tmp), "%s%s.%s", BK_TMP_PREFIX, name, rnd);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0)
			break;
		if (errno != EEXIST || attempt >= 16)
			return bk_err_set(err, -errno, "cannot create temporary file for '%s': %m",
					  name);
	}
	BK_DBG(FS, "writing '%s' (%zu bytes) via '%s'", name, len, tmp);

	r = bk_write_full(fd, buf, len);
	if (r < 0) {
		bk_err_set(err, r, "cannot write '%s': %m", name);
		goto fail;
	}
	if (fchmod(fd, mode) < 0) {
		r = bk_err_set(err, -errno, "cannot set mode of '%s': %m", name);
		goto fail;
	}
	if (fsync(fd) < 0) {
		r = bk_err_set(err, -errno, "cannot sync '%s': %m", name);
		goto fail;
	}
	r = close(TAKE_FD(fd));
	if (r < 0 && errno != EINTR) {
		r = bk_err_set(err, -errno, "cannot close '%s': %m", name);
		goto fail;
	}

	if (flags & BK_WRITE_NOREPLACE)
		r = renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE);
	else
		r = renameat(dfd, tmp, dfd, name);
	if (r < 0) {
		r = bk_err_set(err, -errno, "cannot rename temporary file over '%s': %m", name);
		goto fail;
	}

	r = bk_fsync_dir(dfd);
	if (r < 0)
		/* The new content is in place; only its durability is in doubt. */
		return bk_err_set(err, r, "cannot sync directory of '%s': %m", name);
	return 0;

fail:
	if (fd >= 0)
		(void) close(fd);
	(void) unlinkat(dfd, tmp, 0);
	errno = -r;
	return r;
}

/* Remove the regular files (and symlinks) of dfd whose names start with one of prefixes. */
static int remove_prefixed(int dfd, const char *const *prefixes, size_t n_prefixes,
			   struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	DIR *d;
	struct dirent *de;
	int n = 0;
	int r = 0;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open directory: %m");
	d = fdopendir(fd);
	if (!d)
		return bk_err_set(err, -errno, "cannot read directory: %m");
	TAKE_FD(fd);

	errno = 0;
	while ((de = readdir(d))) {
		struct stat st;
		bool match = false;

		for (size_t i = 0; i < n_prefixes && !match; i++)
			match = strncmp(de->d_name, prefixes[i], strlen(prefixes[i])) == 0;
		if (!match)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			r = bk_err_set(err, -errno, "cannot remove stale '%s': %m", de->d_name);
			break;
		}
		BK_DBG(FS, "removed stale '%s'", de->d_name);
		n++;
	}
	if (r == 0 && n > 0) {
		r = bk_fsync_dir(dirfd(d));
		if (r < 0)
			bk_err_set(err, r, "cannot sync directory: %m");
	}
	(void) closedir(d);
	return r < 0 ? r : n;
}

int bk_remove_stale_temps_at(int dfd, struct bk_err *err)
{
	static const char *const prefixes[] = { BK_TMP_PREFIX, BK_PARTIAL_PREFIX };

	return remove_prefixed(dfd, prefixes, BK_ELEMENTSOF(prefixes), err);
}

/* The mount ID of fd (STATX_MNT_ID, Linux >= 5.8), else 0; *ret_dev gets its device. */
static uint64_t mount_id_of(int fd, dev_t *ret_dev)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_MNT_ID, &stx) < 0) {
		*ret_dev = 0;
		return 0;
	}
	*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return (stx.stx_mask & STATX_MNT_ID) ? stx.stx_mnt_id : 0;
}

/* Is the directory open at fd on the same mount as its parent (mount ID and device)? */
static bool same_mount(int parent_fd, int fd)
{
	dev_t pdev, dev;
	uint64_t pid = mount_id_of(parent_fd, &pdev), id = mount_id_of(fd, &dev);

	return pdev == dev && pid == id;
}

static int remove_temps_tree(int dfd, const char *rel, unsigned depth, unsigned max_depth,
			     struct bk_err *err)
{
	static const char *const prefixes[] = { BK_TMP_PREFIX, BK_PARTIAL_PREFIX };
	_cleanup_close_ int fd = -EBADF;
	struct dirent *de;
	DIR *d;
	int n, r = 0;

	n = remove_prefixed(dfd, prefixes, BK_ELEMENTSOF(prefixes), err);
	if (n < 0)
		return bk_err_prefix(err, "in '%s'", rel);
	if (depth >= max_depth)
		return n;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open directory '%s': %m", rel);
	d = fdopendir(fd);
	if (!d)
		return bk_err_set(err, -errno, "cannot read directory '%s': %m", rel);
	TAKE_FD(fd);

	while ((de = readdir(d))) {
		char sub[PATH_MAX];
		int cfd;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		/* O_NOFOLLOW: a symlink is never entered (ELOOP, or ENOTDIR for a file). */
		cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
				continue;
			r = bk_err_set(err, -errno, "cannot open directory '%s/%s': %m", rel,
				       de->d_name);
			break;
		}
		if (!same_mount(dirfd(d), cfd)) {
			BK_DBG(FS, "not entering '%s/%s': another mount", rel, de->d_name);
			(void) close(cfd);
			continue;
		}
		(void) snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
		r = remove_temps_tree(cfd, sub, depth + 1, max_depth, err);
		(void) close(cfd);
		if (r < 0)
			break;
		n += r;
	}
	(void) closedir(d);
	return r < 0 ? r : n;
}

int bk_remove_temps_tree_at(int dfd, unsigned max_depth, struct bk_err *err)
{
	return remove_temps_tree(dfd, ".", 0, max_depth, err);
}

int bk_remove_temps_of_at(int dfd, const char *name, struct bk_err *err)
{
	char prefix[NAME_MAX + 1];
	const char *const prefixes[] = { prefix };

	if (!bk_filename_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid file name '%s'", name ? name : "(null)");
	(void) snprintf(prefix, sizeof(prefix), "%s%s.", BK_TMP_PREFIX, name);
	return remove_prefixed(dfd, prefixes, BK_ELEMENTSOF(prefixes), err);
}

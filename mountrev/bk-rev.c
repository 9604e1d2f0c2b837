/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libmount.h>

#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-mount.h"
#include "bk-rev.h"
#include "bk-sha256.h"
#include "bk-switch.h"

BK_DEFINE_CLEANUP(DIR *, closedir)
BK_DEFINE_CLEANUP(struct libmnt_table *, mnt_unref_table)
BK_DEFINE_CLEANUP(struct libmnt_iter *, mnt_free_iter)

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

#define JSON_SUFFIX ".json"

void bk_rev_release(struct bk_rev *r)
{
	free(r->id);
	free(r->image);
	free(r->version);
	free(r->payload);
	free(r->fstype);
	free(r->digest);
	free(r->parent);
	free(r->source);
	free(r->bank);
	*r = (struct bk_rev){ 0 };
}

struct bk_rev *bk_revs_free(struct bk_rev *revs, size_t n)
{
	for (size_t i = 0; revs && i < n; i++)
		bk_rev_release(&revs[i]);
	free(revs);
	return NULL;
}

static bool is_hex64(const char *s)
{
	if (!s || strlen(s) != BK_SHA256_HEX_LEN)
		return false;
	for (; *s; s++)
		if (!strchr("0123456789abcdef", *s))
			return false;
	return true;
}

int bk_rev_validate(const struct bk_rev *r, struct bk_err *err)
{
	if (!bk_rev_id_is_valid(r->id))
		return bk_err_set(
			err, -EINVAL,
			"invalid revision id '%s' (letters, digits and _.+- only, at most "
			"%d, starting with a letter or digit)",
			r->id ? r->id : "", BK_REV_ID_MAX);
	if (!r->fstype || (strcmp(r->fstype, "squashfs") != 0 && strcmp(r->fstype, "erofs") != 0))
		return bk_err_set(err, -EINVAL,
				  "revision '%s': file system type '%s' is not squashfs or erofs",
				  r->id, r->fstype ? r->fstype : "");
	if (!is_hex64(r->digest))
		return bk_err_set(err, -EINVAL,
				  "revision '%s': digest is not 64 lowercase hex digits", r->id);
	if (!r->source || r->source[0] != '/')
		return bk_err_set(err, -EINVAL, "revision '%s': source must be an absolute path",
				  r->id);
	if (r->parent && !bk_rev_id_is_valid(r->parent))
		return bk_err_set(err, -EINVAL, "revision '%s': invalid parent '%s'", r->id,
				  r->parent);
	if (r->bank && strcmp(r->bank, "A") != 0 && strcmp(r->bank, "B") != 0)
		return bk_err_set(err, -EINVAL, "revision '%s': bank '%s' is not A or B", r->id,
				  r->bank);
	if (r->offset % 512 != 0)
		return bk_err_set(err, -EINVAL, "revision '%s': offset %llu is not 512-aligned",
				  r->id, (unsigned long long) r->offset);
	return 0;
}

struct json_object *bk_rev_to_json(const struct bk_rev *r)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (bk_json_add_string(o, "id", r->id) < 0 ||
	    bk_json_add_string(o, "image", r->image ? r->image : "") < 0 ||
	    bk_json_add_string(o, "version", r->version ? r->version : "") < 0 ||
	    bk_json_add_string(o, "payload", r->payload ? r->payload : "") < 0 ||
	    bk_json_add_string(o, "fstype", r->fstype) < 0 ||
	    bk_json_add_string(o, "digest", r->digest) < 0 ||
	    (r->parent && bk_json_add_string(o, "parent", r->parent) < 0) ||
	    bk_json_add_string(o, "source", r->source) < 0 ||
	    (r->bank && bk_json_add_string(o, "bank", r->bank) < 0) ||
	    bk_json_add_u64(o, "offset", r->offset) < 0 ||
	    bk_json_add_u64(o, "size", r->size) < 0 ||
	    bk_json_add_u64(o, "created", r->created) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int bk_rev_save(int revs_dfd, const struct bk_rev *r, bool create, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	char fname[BK_REV_ID_MAX + sizeof(JSON_SUFFIX) + 1];
	int rr;

	rr = bk_rev_validate(r, err);
	if (rr < 0)
		return rr;
	(void) snprintf(fname, sizeof(fname), "%s" JSON_SUFFIX, r->id);
	o = bk_rev_to_json(r);
	if (!o)
		return bk_err_set(err, -ENOMEM, "out of memory");
	rr = bk_json_write_atomic_at(revs_dfd, fname, o, 0644, create ? BK_WRITE_NOREPLACE : 0,
				     err);
	if (rr == -EEXIST) {
		bk_err_clear(err);
		return bk_err_set(err, -EEXIST, "revision '%s' already exists", r->id);
	}
	return rr;
}

static int load_file(int dfd, const char *fname, const char *id, struct bk_rev *ret,
		     struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_rev rev = { 0 };
	int r;

	r = bk_json_read_at(dfd, fname, BK_REV_META_MAX, &o, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return bk_err_set(err, -ENOENT, "no revision '%s'", id);
	}
	if (r < 0)
		return r == -EINVAL || r == -EBADMSG ? bk_err_recode(err, -ENOEXEC) : r;
	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "'%s' is not a JSON object", fname);
	r = bk_json_dup_string(o, "id", true, &rev.id, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "image", false, &rev.image, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "version", false, &rev.version, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "payload", false, &rev.payload, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "fstype", true, &rev.fstype, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "digest", true, &rev.digest, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "parent", false, &rev.parent, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "source", true, &rev.source, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "bank", false, &rev.bank, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "offset", false, UINT64_MAX, &rev.offset, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "size", false, UINT64_MAX, &rev.size, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "created", false, UINT64_MAX, &rev.created, err);
	if (r >= 0)
		r = bk_rev_validate(&rev, err);
	if (r >= 0 && strcmp(rev.id, id) != 0)
		r = bk_err_set(err, -EINVAL, "it names revision '%s'", rev.id);
	if (r < 0) {
		bk_rev_release(&rev);
		(void) bk_err_prefix(err, "'%s'", fname);
		return bk_err_recode(err, r == -ENOMEM ? -ENOMEM : -ENOEXEC);
	}
	*ret = rev;
	return 0;
}

int bk_rev_load(int revs_dfd, const char *id, struct bk_rev *ret, struct bk_err *err)
{
	char fname[BK_REV_ID_MAX + sizeof(JSON_SUFFIX) + 1];

	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id ? id : "");
	(void) snprintf(fname, sizeof(fname), "%s" JSON_SUFFIX, id);
	return load_file(revs_dfd, fname, id, ret, err);
}

static int cmp_rev(const void *a, const void *b)
{
	const struct bk_rev *x = a, *y = b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

int bk_rev_list(int revs_dfd, struct bk_rev **ret, size_t *ret_n, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct bk_rev *revs = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd, r;

	fd = openat(revs_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open the revision directory: %m");
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return bk_err_set(err, -errno, "cannot open the revision directory: %m");
	}
	while ((de = readdir(d))) {
		char id[BK_REV_ID_MAX + 1];
		size_t l = strlen(de->d_name), sl = strlen(JSON_SUFFIX);

		if (l <= sl || strcmp(de->d_name + l - sl, JSON_SUFFIX) != 0 ||
		    l - sl > BK_REV_ID_MAX)
			continue;
		memcpy(id, de->d_name, l - sl);
		id[l - sl] = '\0';
		if (!bk_rev_id_is_valid(id))
			continue;
		if (n == cap) {
			struct bk_rev *nr;

			if (cap >= BK_REVISIONS_MAX) {
				bk_revs_free(revs, n);
				return bk_err_set(err, -E2BIG, "more than %d revisions",
						  BK_REVISIONS_MAX);
			}
			cap = cap ? cap * 2 : 16;
			nr = realloc(revs, cap * sizeof(*revs));
			if (!nr) {
				bk_revs_free(revs, n);
				return bk_err_set(err, -ENOMEM, "out of memory");
			}
			revs = nr;
		}
		r = load_file(dirfd(d), de->d_name, id, &revs[n], err);
		if (r < 0) {
			bk_revs_free(revs, n);
			return r;
		}
		n++;
	}
	if (n > 0)
		qsort(revs, n, sizeof(*revs), cmp_rev);
	*ret = revs;
	*ret_n = n;
	return 0;
}

int bk_rev_remove_meta(int revs_dfd, const char *id, struct bk_err *err)
{
	char fname[BK_REV_ID_MAX + sizeof(JSON_SUFFIX) + 1];
	int r;

	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id ? id : "");
	(void) snprintf(fname, sizeof(fname), "%s" JSON_SUFFIX, id);
	if (unlinkat(revs_dfd, fname, 0) < 0) {
		if (errno == ENOENT)
			return bk_err_set(err, -ENOENT, "no revision '%s'", id);
		return bk_err_set(err, -errno, "cannot remove '%s': %m", fname);
	}
	r = bk_fsync_dir(revs_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the revision directory: %s", strerror(-r));
	return 0;
}

int bk_rev_hash_fd(int fd, struct bk_rev *r, struct bk_err *err)
{
	uint8_t d[BK_SHA256_LEN];
	char hex[BK_SHA256_HEX_LEN + 1];
	struct stat st;
	int rr;

	if (r->size == 0) {
		if (fstat(fd, &st) < 0)
			return bk_err_set(err, -errno,
					  "cannot stat the payload of revision '%s': %m", r->id);
		if ((uint64_t) st.st_size <= r->offset)
			return bk_err_set(err, -ENOEXEC,
					  "payload of revision '%s' is empty past offset %llu",
					  r->id, (unsigned long long) r->offset);
		r->size = (uint64_t) st.st_size - r->offset;
	}
	rr = bk_sha256_fd_range(fd, r->offset, r->size, d, err);
	if (rr < 0)
		return bk_err_prefix(err, "revision '%s'", r->id);
	bk_sha256_to_hex(d, hex);
	if (!r->digest) {
		r->digest = strdup(hex);
		return r->digest ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
	}
	if (strcmp(hex, r->digest) != 0)
		return bk_err_set(err, -EUCLEAN,
				  "payload of revision '%s' does not match its digest", r->id);
	return 0;
}

bool bk_rev_is_mounted(int run_dfd, const char *id)
{
	char path[sizeof(BK_REV_DIR) + BK_REV_ID_MAX + 2];
	struct statx stx;

	if (!bk_rev_id_is_valid(id))
		return false;
	(void) snprintf(path, sizeof(path), BK_REV_DIR "/%s", id);
	if (statx(run_dfd, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int bk_rev_mount_fd(int run_dfd, const char *run_path, const struct bk_rev *r, int fd,
		    struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *target = NULL;
	int rr;

	rr = bk_rev_validate(r, err);
	if (rr < 0)
		return rr;
	if (bk_rev_is_mounted(run_dfd, r->id))
		return bk_err_set(err, -EBUSY, "revision '%s' is already mounted", r->id);
	rr = bk_mkdir_p_at(run_dfd, BK_REV_DIR, 0755, &dfd, err);
	if (rr < 0)
		return rr;
	if (mkdirat(dfd, r->id, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, -errno, "cannot create '%s/" BK_REV_DIR "/%s': %m", run_path,
				  r->id);
	if (asprintf(&target, "%s/" BK_REV_DIR "/%s", run_path, r->id) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	rr = bk_mount_loop_fd(fd, r->offset, r->size, r->fstype, target, err);
	if (rr < 0) {
		(void) unlinkat(dfd, r->id, AT_REMOVEDIR);
		return bk_err_prefix(err, "cannot mount revision '%s'", r->id);
	}
	BK_DBG(REV, "revision '%s' mounted at '%s'", r->id, target);
	return 0;
}

int bk_rev_umount(int run_dfd, const char *run_path, const char *id, struct bk_err *err)
{
	_cleanup_free_ char *target = NULL;
	_cleanup_close_ int dfd = -EBADF;
	int r;

	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id ? id : "");
	if (asprintf(&target, "%s/" BK_REV_DIR "/%s", run_path, id) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (bk_rev_is_mounted(run_dfd, id)) {
		r = bk_umount(target, 0, err);
		if (r < 0)
			return bk_err_prefix(err, "cannot unmount revision '%s'", id);
	}
	dfd = openat(run_dfd, BK_REV_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0 && unlinkat(dfd, id, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return bk_err_set(err, -errno, "cannot remove '%s': %m", target);
	return 0;
}

int bk_rev_in_use(const char *run_path, const char *id, dev_t dev, char **ret_where,
		  struct bk_err *err)
{
	_cleanup_(closedirp) DIR *proc = NULL;
	_cleanup_free_ char *own = NULL;
	_cleanup_free_ ino_t *seen = NULL;
	size_t n_seen = 0, cap = 0;
	struct dirent *de;

	if (asprintf(&own, "%s/" BK_REV_DIR "/%s", run_path, id) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	proc = opendir("/proc");
	if (!proc)
		return bk_err_set(err, -errno, "cannot open '/proc': %m");
	while ((de = readdir(proc))) {
		_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
		_cleanup_(mnt_free_iterp) struct libmnt_iter *it = NULL;
		char path[64];
		struct libmnt_fs *fs;
		struct stat st;
		uint64_t pid;
		bool dup = false;

		if (bk_parse_u64(de->d_name, &pid) < 0)
			continue;
		(void) snprintf(path, sizeof(path), "/proc/%llu/ns/mnt", (unsigned long long) pid);
		if (stat(path, &st) < 0)
			continue; /* gone, or a kernel thread */
		for (size_t i = 0; i < n_seen && !dup; i++)
			dup = seen[i] == st.st_ino;
		if (dup)
			continue;
		if (n_seen == cap) {
			ino_t *ns;

			cap = cap ? cap * 2 : 64;
			ns = realloc(seen, cap * sizeof(*seen));
			if (!ns)
				return bk_err_set(err, -ENOMEM, "out of memory");
			seen = ns;
		}
		seen[n_seen++] = st.st_ino;

		(void) snprintf(path, sizeof(path), "/proc/%llu/mountinfo",
				(unsigned long long) pid);
		tb = mnt_new_table_from_file(path);
		if (!tb)
			continue; /* exited meanwhile */
		it = mnt_new_iter(MNT_ITER_FORWARD);
		if (!it)
			return bk_err_set(err, -ENOMEM, "out of memory");
		while (mnt_table_next_fs(tb, it, &fs) == 0) {
			const char *target = mnt_fs_get_target(fs);

			if (mnt_fs_get_devno(fs) != dev || !target)
				continue;
			/* The revision's own mount, and its copies in namespaces made after it. */
			if (strcmp(target, own) == 0)
				continue;
			BK_DBG(REV, "revision '%s' is used by pid %s at '%s'", id, de->d_name,
			       target);
			if (ret_where &&
			    asprintf(ret_where, "pid %s at '%s'", de->d_name, target) < 0)
				*ret_where = NULL;
			return 1;
		}
	}
	return 0;
}

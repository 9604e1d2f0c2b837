/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk-chunks.h"
#include "bk-depot.h"
#include "bk-fetch.h"
#include "bk-fs.h"
#include "bk-log.h"
#include "bk-sha256.h"
#include "bk-version.h"

int bk_depot_file_name(const char *name, const char *version, char **ret)
{
	char *s = NULL;

	if (!name || !version || !bk_version_is_valid(version) || !bk_filename_is_valid(name) ||
	    strlen(name) > BK_MANIFEST_NAME_MAX)
		return -EINVAL;
	if (asprintf(&s, "%s_%s" BK_DEPOT_SUFFIX, name, version) < 0)
		return -ENOMEM;
	if (!bk_filename_is_valid(s)) {
		free(s);
		return -EINVAL;
	}
	*ret = s;
	return 0;
}

int bk_depot_import(int depot_dfd, int fd, const struct bk_keyring *keyring, unsigned cms_flags,
		    bool force, char **ret_file, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_free_ char *file = NULL;
	_cleanup_close_ int out = -EBADF;
	const struct bk_manifest *m;
	char tmp[NAME_MAX + 1], rnd[17];
	int r;

	r = bk_bundle_open_verified(fd, keyring, cms_flags, &b, err);
	if (r < 0)
		return r;
	m = bk_bundle_get_manifest(b);
	r = bk_depot_file_name(m->name, m->version, &file);
	if (r < 0)
		return bk_err_set(err, r, "image name '%s' cannot be stored in the depot", m->name);
	if (!force && faccessat(depot_dfd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return bk_err_set(err, -EEXIST,
				  "image '%s' %s is already in the depot (as '%s'; --force "
				  "replaces it)",
				  m->name, m->version, file);

	r = bk_remove_stale_temps_at(depot_dfd, err);
	if (r < 0)
		return r;
	r = bk_random_hex(rnd, 16);
	if (r < 0)
		return bk_err_set(err, r, "cannot make a temp name: %m");
	(void) snprintf(tmp, sizeof(tmp), BK_TMP_PREFIX "%s.%s", file, rnd);
	out = openat(depot_dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		return bk_err_set(err, -errno, "cannot create '%s' in the depot: %m", tmp);

	r = bk_bundle_copy_to(b, out, err);
	if (r < 0)
		goto fail;
	if (fsync(out) < 0) {
		r = bk_err_set(err, -errno, "cannot sync '%s': %m", tmp);
		goto fail;
	}
	if (close(TAKE_FD(out)) < 0) {
		r = bk_err_set(err, -errno, "cannot close '%s': %m", tmp);
		goto fail;
	}
	if (renameat2(depot_dfd, tmp, depot_dfd, file, force ? 0 : RENAME_NOREPLACE) < 0) {
		r = -errno;
		if (r == -EEXIST)
			(void) bk_err_set(err, r, "image '%s' %s is already in the depot", m->name,
					  m->version);
		else
			(void) bk_err_set(err, r, "cannot rename '%s' to '%s': %m", tmp, file);
		goto fail;
	}
	r = bk_fsync_dir(depot_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the depot directory: %m");
	BK_DBG(BUNDLE, "imported '%s' into the depot", file);
	if (ret_file)
		*ret_file = TAKE_PTR(file);
	return 0;

fail:
	(void) unlinkat(depot_dfd, tmp, 0);
	return r;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct bk_depot_entry *x = a, *y = b;
	int r;

	if (!x->manifest || !y->manifest) {
		if (x->manifest != y->manifest)
			return x->manifest ? -1 : 1;
		return strcmp(x->file, y->file);
	}
	r = strcmp(x->manifest->name, y->manifest->name);
	if (r == 0)
		r = bk_version_compare(x->manifest->version, y->manifest->version);
	if (r == 0)
		r = strcmp(x->file, y->file);
	return r;
}

static int read_entry(int depot_dfd, const char *name, struct bk_depot_entry *e)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_close_ int fd = -EBADF;
	const char *bytes;
	struct bk_err err = { 0 };
	size_t len;
	int r;

	fd = openat(depot_dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		r = bk_err_set(&err, -errno, "cannot open: %m");
	else
		r = bk_bundle_open_fd(fd, &b, &err);
	if (r >= 0)
		r = bk_bundle_load_manifest(b, &err);
	if (r >= 0) {
		e->size = bk_bundle_get_size(b);
		bytes = bk_bundle_get_manifest_bytes(b, &len);
		r = bk_manifest_parse(bytes, len, 0, &e->manifest, &err);
	}
	if (r >= 0) {
		r = bk_sha256_buf(bytes, len, e->manifest_sha256);
		if (r < 0) {
			e->manifest = bk_manifest_free(e->manifest);
			(void) bk_err_set(&err, r, "cannot hash the manifest");
		}
	}
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		e->error = strdup(err.msg);
		if (!e->error)
			return -ENOMEM;
	}
	return 0;
}

int bk_depot_list(int depot_dfd, struct bk_depot_entry **ret, size_t *ret_n, struct bk_err *err)
{
	struct bk_depot_entry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	fd = openat(depot_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open the depot: %m");
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void) close(fd);
		return bk_err_set(err, r, "cannot read the depot: %m");
	}
	while ((errno = 0, de = readdir(d))) {
		size_t len = strlen(de->d_name);
		struct stat st;

		if (len <= strlen(BK_DEPOT_SUFFIX) || de->d_name[0] == '.' ||
		    strcmp(de->d_name + len - strlen(BK_DEPOT_SUFFIX), BK_DEPOT_SUFFIX) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			struct bk_depot_entry *nv;

			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].file = strdup(de->d_name);
		if (!v[n].file) {
			r = -ENOMEM;
			break;
		}
		n++;
		r = read_entry(dirfd(d), de->d_name, &v[n - 1]);
		if (r < 0)
			break;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(d);
	if (r < 0) {
		bk_depot_entries_free(v, n);
		return bk_err_set(err, r, "cannot list the depot: %m");
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_entry);
	*ret = v;
	*ret_n = n;
	return 0;
}

void bk_depot_entries_free(struct bk_depot_entry *entries, size_t n)
{
	for (size_t i = 0; entries && i < n; i++) {
		free(entries[i].file);
		free(entries[i].error);
		bk_manifest_free(entries[i].manifest);
	}
	free(entries);
}

int bk_depot_remove(int depot_dfd, const char *name, const char *version, struct bk_err *err)
{
	_cleanup_free_ char *file = NULL;
	struct stat st;
	int r;

	r = bk_depot_file_name(name, version, &file);
	if (r < 0)
		return bk_err_set(err, r, "'%s' '%s' is not a valid image name and version", name,
				  version);
	if (fstatat(depot_dfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return bk_err_set(err, -ENOENT, "no image '%s' version '%s' in the depot", name,
				  version);
	if (unlinkat(depot_dfd, file, 0) < 0)
		return bk_err_set(err, -errno, "cannot remove '%s' from the depot: %m", file);
	r = bk_fsync_dir(depot_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the depot directory: %m");
	return 0;
}

/* Every chunk of payload p: fetched, checked against its list, then written at its offset. */
static int fetch_payload(struct bk_bundle *b, struct bk_fetch *f, const struct bk_payload *p,
			 int out, uint8_t *buf, struct bk_err *err)
{
	_cleanup_(bk_chunks_freep) struct bk_chunks *list = NULL;
	int r;

	r = bk_bundle_load_chunks(b, p, &list, err);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < list->n_chunks; i++) {
		uint64_t off;
		size_t len;

		(void) bk_chunks_range(list, i, &off, &len);
		r = bk_fetch_range(f, p->offset + off, buf, len, err);
		if (r < 0)
			return r;
		r = bk_chunks_check(list, i, buf, len, err);
		if (r < 0)
			return bk_err_prefix(err, "payload '%s'", p->name);
		for (size_t done = 0; done < len;) {
			ssize_t n = pwrite(out, buf + done, len - done,
					   (off_t) (p->offset + off + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return bk_err_set(err, n < 0 ? -errno : -EIO,
						  "cannot write payload '%s': %m", p->name);
			done += (size_t) n;
		}
	}
	return 0;
}

int bk_depot_import_url(int depot_dfd, struct bk_fetch *f, const struct bk_keyring *keyring,
			unsigned cms_flags, bool force, char **ret_file, struct bk_err *err)
{
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_free_ char *file = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int out = -EBADF;
	const struct bk_manifest *m;
	char tmp[NAME_MAX + 1], rnd[17];
	int r;

	r = bk_remove_stale_temps_at(depot_dfd, err);
	if (r < 0)
		return r;
	r = bk_random_hex(rnd, 16);
	if (r < 0)
		return bk_err_set(err, r, "cannot make a temp name: %m");
	(void) snprintf(tmp, sizeof(tmp), BK_TMP_PREFIX "url.%s", rnd);
	out = openat(depot_dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		return bk_err_set(err, -errno, "cannot create '%s' in the depot: %m", tmp);

	r = bk_fetch_bundle_head_into(f, out, err);
	if (r >= 0)
		r = bk_bundle_open_fd(out, &b, err);
	if (r >= 0)
		r = bk_bundle_verify_signature(b, keyring, cms_flags, err);
	if (r >= 0)
		r = bk_bundle_load_manifest(b, err);
	if (r >= 0 && !bk_bundle_is_chunked(b))
		r = bk_err_set(err, -ENOEXEC,
			       "format version 1: importing from a URL needs format 2 (chunk "
			       "lists verified before any byte is written)");
	if (r >= 0)
		r = bk_fetch_chunk_table(f, out, bk_bundle_get_manifest(b), err);
	if (r >= 0)
		r = bk_bundle_check_padding(b, bk_bundle_get_manifest(b), err);
	if (r < 0)
		goto fail;
	m = bk_bundle_get_manifest(b);
	r = bk_depot_file_name(m->name, m->version, &file);
	if (r < 0) {
		(void) bk_err_set(err, r, "image name '%s' cannot be stored in the depot", m->name);
		goto fail;
	}
	if (!force && faccessat(depot_dfd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		r = bk_err_set(err, -EEXIST,
			       "image '%s' %s is already in the depot (as '%s'; --force replaces "
			       "it)",
			       m->name, m->version, file);
		goto fail;
	}
	buf = bk_alloc_pages(BK_CHUNK_SIZE);
	if (!buf) {
		r = bk_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < m->n_payloads; i++) {
		r = fetch_payload(b, f, &m->payloads[i], out, buf, err);
		if (r < 0)
			goto fail;
	}
	if (fsync(out) < 0) {
		r = bk_err_set(err, -errno, "cannot sync '%s': %m", tmp);
		goto fail;
	}
	if (renameat2(depot_dfd, tmp, depot_dfd, file, force ? 0 : RENAME_NOREPLACE) < 0) {
		r = bk_err_set(err, -errno, "cannot rename '%s' to '%s': %m", tmp, file);
		goto fail;
	}
	r = bk_fsync_dir(depot_dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the depot directory: %m");
	if (ret_file)
		*ret_file = TAKE_PTR(file);
	return 0;

fail:
	(void) unlinkat(depot_dfd, tmp, 0);
	return r;
}

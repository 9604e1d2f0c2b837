/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-cgroup.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-workload.h"

BK_DEFINE_CLEANUP(DIR *, closedir)

#define JSON_SUFFIX ".json"

bool bk_workload_name_is_valid(const char *name)
{
	size_t l;

	if (!name)
		return false;
	l = strlen(name);
	if (l == 0 || l > BK_WORKLOAD_NAME_MAX)
		return false;
	if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", name[0]))
		return false;
	for (const char *p = name; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-",
			    *p))
			return false;
	return true;
}

int bk_view_path_normalize(const char *view, char **ret, struct bk_err *err)
{
	_cleanup_free_ char *copy = NULL, *out = NULL;
	char *save = NULL, *c;
	size_t n = 0;

	if (!view || view[0] != '/')
		return bk_err_set(err, -EINVAL, "invalid view '%s': not an absolute path",
				  view ? view : "");
	if (strlen(view) > BK_WORKLOAD_VIEW_MAX)
		return bk_err_set(err, -EINVAL, "invalid view '%.64s...': too long", view);
	copy = strdup(view);
	out = malloc(strlen(view) + 2);
	if (!copy || !out)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		size_t l = strlen(c);

		if (!bk_filename_is_valid(c))
			return bk_err_set(err, -EINVAL, "invalid view '%s': bad component '%s'",
					  view, c);
		out[n++] = '/';
		memcpy(out + n, c, l);
		n += l;
	}
	out[n] = '\0';
	if (n == 0)
		return bk_err_set(err, -EINVAL, "invalid view '%s': cannot be the root directory",
				  view);
	if (ret)
		*ret = TAKE_PTR(out);
	return 0;
}

void bk_workload_release(struct bk_workload *w)
{
	free(w->name);
	free(w->cgroup);
	free(w->unit);
	free(w->view);
	*w = (struct bk_workload){ 0 };
}

struct bk_workload *bk_workloads_free(struct bk_workload *w, size_t n)
{
	for (size_t i = 0; w && i < n; i++)
		bk_workload_release(&w[i]);
	free(w);
	return NULL;
}

int bk_workload_validate(const struct bk_workload *w, struct bk_err *err)
{
	_cleanup_free_ char *norm = NULL;
	int r;

	if (!bk_workload_name_is_valid(w->name))
		return bk_err_set(err, -EINVAL,
				  "invalid workload name '%s' (letters, digits and _.@- only, at "
				  "most %d, starting with a letter or digit)",
				  w->name ? w->name : "", BK_WORKLOAD_NAME_MAX);
	if (!!w->cgroup == !!w->unit)
		return bk_err_set(err, -EINVAL,
				  "workload '%s' needs exactly one of cgroup and unit", w->name);
	if (w->cgroup) {
		r = bk_cgroup_path_normalize(w->cgroup, &norm, err);
		if (r < 0)
			return bk_err_prefix(err, "workload '%s'", w->name);
		if (strcmp(norm, w->cgroup) != 0)
			return bk_err_set(err, -EINVAL,
					  "workload '%s': cgroup '%s' is not normalised", w->name,
					  w->cgroup);
		free(norm);
		norm = NULL;
	}
	if (w->unit && (!bk_filename_is_valid(w->unit) || strlen(w->unit) > 255))
		return bk_err_set(err, -EINVAL, "workload '%s': invalid unit name '%s'", w->name,
				  w->unit);
	r = bk_view_path_normalize(w->view, &norm, err);
	if (r < 0)
		return bk_err_prefix(err, "workload '%s'", w->name);
	if (strcmp(norm, w->view) != 0)
		return bk_err_set(err, -EINVAL, "workload '%s': view '%s' is not normalised",
				  w->name, w->view);
	return 0;
}

struct json_object *bk_workload_to_json(const struct bk_workload *w)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (bk_json_add_string(o, "name", w->name) < 0 ||
	    (w->cgroup && bk_json_add_string(o, "cgroup", w->cgroup) < 0) ||
	    (w->unit && bk_json_add_string(o, "unit", w->unit) < 0) ||
	    bk_json_add_string(o, "view", w->view) < 0 ||
	    bk_json_add_bool(o, "no_fsr", w->no_fsr) < 0 ||
	    bk_json_add_u64(o, "added", w->added) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static int file_name(const char *name, char *buf, size_t len, struct bk_err *err)
{
	if (!bk_workload_name_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid workload name '%s'", name ? name : "");
	(void) snprintf(buf, len, "%s" JSON_SUFFIX, name);
	return 0;
}

int bk_workload_save(int dfd, const struct bk_workload *w, bool create, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	char fname[BK_WORKLOAD_NAME_MAX + sizeof(JSON_SUFFIX) + 1];
	int r;

	r = bk_workload_validate(w, err);
	if (r < 0)
		return r;
	(void) file_name(w->name, fname, sizeof(fname), err);
	o = bk_workload_to_json(w);
	if (!o)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_json_write_atomic_at(dfd, fname, o, 0644, create ? BK_WRITE_NOREPLACE : 0, err);
	if (r == -EEXIST) {
		bk_err_clear(err);
		return bk_err_set(err, -EEXIST, "workload '%s' already exists", w->name);
	}
	return r;
}

static int load_file(int dfd, const char *fname, const char *name, struct bk_workload *ret,
		     struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct bk_workload w = { 0 };
	int r;

	r = bk_json_read_at(dfd, fname, BK_WORKLOAD_MAX_SIZE, &o, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return bk_err_set(err, -ENOENT, "no workload '%s'", name);
	}
	if (r < 0)
		return r == -EINVAL || r == -EBADMSG ? bk_err_recode(err, -ENOEXEC) : r;
	if (!json_object_is_type(o, json_type_object))
		return bk_err_set(err, -ENOEXEC, "'%s' is not a JSON object", fname);
	r = bk_json_dup_string(o, "name", true, &w.name, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "cgroup", false, &w.cgroup, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "unit", false, &w.unit, err);
	if (r >= 0)
		r = bk_json_dup_string(o, "view", true, &w.view, err);
	if (r >= 0)
		r = bk_json_get_bool(o, "no_fsr", false, &w.no_fsr, err);
	if (r >= 0)
		r = bk_json_get_u64(o, "added", false, UINT64_MAX, &w.added, err);
	if (r >= 0)
		r = bk_workload_validate(&w, err);
	if (r >= 0 && strcmp(w.name, name) != 0)
		r = bk_err_set(err, -EINVAL, "it names workload '%s'", w.name);
	if (r < 0) {
		bk_workload_release(&w);
		(void) bk_err_prefix(err, "'%s'", fname);
		return bk_err_recode(err, r == -ENOMEM ? -ENOMEM : -ENOEXEC);
	}
	*ret = w;
	return 0;
}

int bk_workload_load(int dfd, const char *name, struct bk_workload *ret, struct bk_err *err)
{
	char fname[BK_WORKLOAD_NAME_MAX + sizeof(JSON_SUFFIX) + 1];
	int r;

	r = file_name(name, fname, sizeof(fname), err);
	if (r < 0)
		return r;
	return load_file(dfd, fname, name, ret, err);
}

int bk_workload_remove(int dfd, const char *name, struct bk_err *err)
{
	char fname[BK_WORKLOAD_NAME_MAX + sizeof(JSON_SUFFIX) + 1];
	int r;

	r = file_name(name, fname, sizeof(fname), err);
	if (r < 0)
		return r;
	if (unlinkat(dfd, fname, 0) < 0) {
		if (errno == ENOENT)
			return bk_err_set(err, -ENOENT, "no workload '%s'", name);
		return bk_err_set(err, -errno, "cannot remove '%s': %m", fname);
	}
	r = bk_fsync_dir(dfd);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the workload directory: %s", strerror(-r));
	return 0;
}

static int cmp_workload(const void *a, const void *b)
{
	return strcmp(((const struct bk_workload *) a)->name,
		      ((const struct bk_workload *) b)->name);
}

int bk_workload_list(int dfd, struct bk_workload **ret, size_t *ret_n, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct bk_workload *ws = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd, r;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open the workload directory: %m");
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return bk_err_set(err, -errno, "cannot open the workload directory: %m");
	}
	while ((de = readdir(d))) {
		char name[BK_WORKLOAD_NAME_MAX + 1];
		size_t l = strlen(de->d_name);

		if (l <= strlen(JSON_SUFFIX) || strcmp(de->d_name + l - 5, JSON_SUFFIX) != 0 ||
		    l - strlen(JSON_SUFFIX) > BK_WORKLOAD_NAME_MAX)
			continue;
		memcpy(name, de->d_name, l - 5);
		name[l - 5] = '\0';
		if (!bk_workload_name_is_valid(name))
			continue; /* temp files (".#...") and strangers */
		if (n == cap) {
			struct bk_workload *nws;

			if (cap >= BK_WORKLOADS_MAX) {
				bk_workloads_free(ws, n);
				return bk_err_set(err, -E2BIG, "more than %d workloads",
						  BK_WORKLOADS_MAX);
			}
			cap = cap ? cap * 2 : 16;
			nws = realloc(ws, cap * sizeof(*ws));
			if (!nws) {
				bk_workloads_free(ws, n);
				return bk_err_set(err, -ENOMEM, "out of memory");
			}
			ws = nws;
		}
		r = load_file(dirfd(d), de->d_name, name, &ws[n], err);
		if (r < 0) {
			bk_workloads_free(ws, n);
			return r;
		}
		n++;
	}
	if (n > 0)
		qsort(ws, n, sizeof(*ws), cmp_workload);
	*ret = ws;
	*ret_n = n;
	return 0;
}

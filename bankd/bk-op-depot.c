/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The depot operations: verified bundles waiting to be staged (bankd/bk-op-depot.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bk-cms.h"
#include "bk-depot.h"
#include "bk-fetch.h"
#include "bk-json.h"
#include "bk-op-depot.h"
#include "bk-op.h"

/* The depot directory beneath the root (system.conf [depot] path). */
static int open_depot(struct bk_op_ctx *ctx, bool create, int *ret_fd, struct bk_err *err)
{
	const char *rel = ctx->config.depot + strspn(ctx->config.depot, "/");

	return bk_op_open_dir(ctx, rel, create, ret_fd, err);
}

int bk_op_depot_import(struct bk_op_ctx *ctx, const struct bk_op_depot_import_opts *o,
		       char **ret_file, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	unsigned flags;
	int r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = open_depot(ctx, true, &dfd, err);
	if (r < 0)
		return r;
	flags = o->no_check_time || !ctx->config.check_time ? BK_CMS_NO_CHECK_TIME : 0;
	if (o->url) {
		_cleanup_(bk_fetch_freep) struct bk_fetch *f = NULL;

		r = bk_op_fetch_new(ctx, o->url, &f, err);
		if (r >= 0)
			r = bk_depot_import_url(dfd, f, o->keyring, flags, o->force, ret_file, err);
		/* bk_fetch_range()'s messages name the URL already. */
		return r;
	}
	r = bk_depot_import(dfd, o->fd, o->keyring, flags, o->force, ret_file, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", o->path);
	return 0;
}

int bk_op_depot_list(struct bk_op_ctx *ctx, struct bk_depot_entry **ret, size_t *ret_n,
		     struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	*ret = NULL;
	*ret_n = 0;
	r = open_depot(ctx, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0; /* no depot yet: empty */
	}
	if (r < 0)
		return r;
	return bk_depot_list(dfd, ret, ret_n, err);
}

struct json_object *bk_op_depot_list_to_json(const struct bk_depot_entry *v, size_t n)
{
	_cleanup_(json_object_putp) struct json_object *arr = json_object_new_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct bk_manifest *m = v[i].manifest;
		struct json_object *o, *from;

		if (!m)
			continue;
		o = json_object_new_object();
		if (!o || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			return NULL;
		}
		from = json_object_new_array();
		if (bk_json_add_string(o, "name", m->name) < 0 ||
		    bk_json_add_string(o, "version", m->version) < 0 ||
		    bk_json_add_string(o, "build", m->build) < 0 ||
		    bk_json_add_string(o, "compatible", m->compatible) < 0 ||
		    bk_json_add_u64(o, "security_epoch", m->security_epoch) < 0 ||
		    bk_json_add(o, "live_patch_from", from) < 0 ||
		    bk_json_add_string(o, "file", v[i].file) < 0 ||
		    bk_json_add_u64(o, "size", v[i].size) < 0)
			return NULL;
		for (size_t j = 0; j < m->n_live_patch_from; j++)
			if (json_object_array_add(
				    from, json_object_new_string(m->live_patch_from[j])) < 0)
				return NULL;
	}
	return TAKE_PTR(arr);
}

int bk_op_depot_remove(struct bk_op_ctx *ctx, const char *name, const char *version,
		       struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = open_depot(ctx, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return bk_err_set(err, -ENOENT, "no image '%s' version '%s' in the depot", name,
				  version);
	}
	if (r < 0)
		return r;
	return bk_depot_remove(dfd, name, version, err);
}

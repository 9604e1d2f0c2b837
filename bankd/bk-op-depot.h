/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The depot operations (docs/bundle-format.md, "Depot"): import, list, remove. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

#include "bk-cms.h"
#include "bk-depot.h"
#include "bk-op.h"

struct bk_op_depot_import_opts {
	int fd;		  /* the bundle, open (the caller keeps it) */
	const char *url;  /* or an http(s) URL (fd ignored): bk_depot_import_url() */
	const char *path; /* for messages */
	const struct bk_keyring *keyring; /* trusted signers */
	bool force;			  /* replace a bundle of the same name and version */
	bool no_check_time;
};

/*
 * Lock, verify o->fd completely and copy it into the depot atomically (bk_depot_import()).
 * *ret_file: the depot file name (caller frees). Returns 0 or -errno with err.
 */
int bk_op_depot_import(struct bk_op_ctx *ctx, const struct bk_op_depot_import_opts *o,
		       char **ret_file, struct bk_err *err);

/*
 * The depot's bundles (bk_depot_list(); none when there is no depot directory yet). Entries
 * that cannot be read carry their error and no manifest. Reads only, no lock.
 */
int bk_op_depot_list(struct bk_op_ctx *ctx, struct bk_depot_entry **ret, size_t *ret_n,
		     struct bk_err *err);

/* The readable entries as what `depot list --json` prints. NULL on ENOMEM. */
struct json_object *bk_op_depot_list_to_json(const struct bk_depot_entry *v, size_t n);

/* Lock, then remove a bundle; -ENOENT (err) when the depot has no such bundle. */
int bk_op_depot_remove(struct bk_op_ctx *ctx, const char *name, const char *version,
		       struct bk_err *err);

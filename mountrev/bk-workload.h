/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The workload registry: one JSON document per workload, STATE/workloads/NAME.json (STATE is
 * ROOT/var/lib/bootbank), each written by atomic replace. A workload is a cgroup v2 (given as
 * a path relative to the cgroup2 root, or as a systemd unit resolved when it is used) and the
 * mount namespace of its processes; its view is the absolute path inside that namespace where
 * it sees the revision in service. no_fsr marks a workload that cannot be suspended (fast
 * suspend/resume is not possible): it blocks the live path. Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-err.h"

#define BK_WORKLOADS_DIR     "workloads"
#define BK_WORKLOAD_NAME_MAX 64
#define BK_WORKLOAD_VIEW_MAX 1024
#define BK_WORKLOADS_MAX     4096
#define BK_WORKLOAD_MAX_SIZE (8 * 1024)

struct bk_workload {
	char *name;
	char *cgroup; /* normalised cgroup path (exactly one of cgroup and unit is set) */
	char *unit;   /* systemd unit */
	char *view;   /* normalised absolute path inside the workload's mount namespace */
	bool no_fsr;
	uint64_t added; /* CLOCK_REALTIME seconds */
};

/* [A-Za-z0-9][A-Za-z0-9_.@-]*, at most BK_WORKLOAD_NAME_MAX bytes. */
bool bk_workload_name_is_valid(const char *name);

/*
 * An absolute path whose every component is a valid file name (no ".", "..", empty
 * components are squeezed), not "/" itself, at most BK_WORKLOAD_VIEW_MAX bytes.
 * *ret (optional) gets the normalised form. Returns 0 or -EINVAL ("invalid view 'x': ...").
 */
int bk_view_path_normalize(const char *view, char **ret, struct bk_err *err);

/* Free the strings of an embedded workload. */
void bk_workload_release(struct bk_workload *w);

/* Release and free an array of n workloads; returns NULL. */
struct bk_workload *bk_workloads_free(struct bk_workload *w, size_t n);

/*
 * Check every field: valid name, exactly one of cgroup/unit (cgroup normalised), valid view.
 * Returns 0 or -EINVAL with a message naming the field and the value.
 */
int bk_workload_validate(const struct bk_workload *w, struct bk_err *err);

/*
 * Write (dfd, NAME.json) atomically (fsync, rename, directory fsync). With create=true an
 * existing workload of that name is -EEXIST ("workload 'x' already exists").
 */
int bk_workload_save(int dfd, const struct bk_workload *w, bool create, struct bk_err *err);

/* Read one workload; -ENOENT ("no workload 'x'"), -ENOEXEC for a malformed file. */
int bk_workload_load(int dfd, const char *name, struct bk_workload *ret, struct bk_err *err);

/* Remove (dfd, NAME.json) and fsync dfd; -ENOENT ("no workload 'x'"). */
int bk_workload_remove(int dfd, const char *name, struct bk_err *err);

/*
 * Every workload in dfd, sorted by name (leftover temp files are ignored; a malformed file is
 * an error naming it). *ret is NULL when there are none.
 */
int bk_workload_list(int dfd, struct bk_workload **ret, size_t *ret_n, struct bk_err *err);

/* A JSON object of w (new reference) or NULL on ENOMEM. */
struct json_object *bk_workload_to_json(const struct bk_workload *w);

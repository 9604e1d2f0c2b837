/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The revision and workload operations (docs/livepatch.md): rev add, switch, gc, restore;
 * workload add, remove. Each takes the lock (and recovers); the lists are reads that the front
 * ends make with mountrev/ directly.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-livepatch.h"
#include "bk-op.h"
#include "bk-rev.h"
#include "bk-switch.h"
#include "bk-workload.h"

/*
 * Record revision rev (id, fstype, source set; offset, size, image, version, payload, parent,
 * digest optional), hash the payload in rev->source and mount it read-only at RUN/rev/ID.
 * rev is completed (digest, size) on success. Refused in partial maintenance mode.
 */
int bk_op_rev_add(struct bk_op_ctx *ctx, struct bk_rev *rev, char **ret_mount_path,
		  struct bk_err *err);

/*
 * Switch the current pointer and every workload's view to revision id (hooks as a live patch
 * runs them). *ret_rep: the switch-over report, also after a failure once the switch ran.
 */
int bk_op_rev_switch(struct bk_op_ctx *ctx, const char *id, bool no_beneath,
		     struct bk_lp_report **ret_rep, struct bk_err *err);

/*
 * Remove revisions beyond the keep newest, never the current or previous one nor one in use.
 * *ret: {"removed": [ID...], "kept": [{"id", "reason", "where"}...], "order": [{"id",
 * "removed", "reason", "where"}...]} ("order" in the order they were looked at).
 */
int bk_op_rev_gc(struct bk_op_ctx *ctx, uint64_t keep, struct json_object **ret,
		 struct bk_err *err);

/*
 * After a reboot: mount the booted bank's revisions (and its image's live payload) and the
 * revisions of other files again, and restore the current pointer. *ret: {"mounted": [{"id",
 * "bank", "base"}...], "current": ID or null}. A revision that cannot come back is a warning
 * (obs.message), not a failure.
 */
int bk_op_rev_restore(struct bk_op_ctx *ctx, struct json_object **ret, struct bk_err *err);

/* Register workload w (validated by the caller: bk_workload_validate()). */
int bk_op_workload_add(struct bk_op_ctx *ctx, const struct bk_workload *w, struct bk_err *err);

/* Forget workload name. */
int bk_op_workload_remove(struct bk_op_ctx *ctx, const char *name, struct bk_err *err);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The live-patch operations (docs/livepatch.md) and what the revision and workload operations
 * share with them: the paths beneath the root, the banks mounted in the host's mount
 * namespace for revisions, the recovery of an interrupted live patch.
 */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

#include "bk-cms.h"
#include "bk-livepatch.h"
#include "bk-op.h"
#include "bk-select.h"

struct bk_manifest;

struct bk_op_live {
	struct bk_livepatch_ctx lp;
	int state_dfd;
	int run_dfd;
	char *root_real; /* realpath of the root */
	char *run_path;
	char *hooks_dir;
};

/*
 * Open ROOT/var/lib/bootbank and ROOT/run/bootbank (created) and fill lp from the
 * configuration ([livepatch] hook-timeout-sec, freeze-timeout-ms).
 */
int bk_op_live_open(struct bk_op_ctx *ctx, struct bk_op_live *live, struct bk_err *err);
void bk_op_live_close(struct bk_op_live *live);

/*
 * Finish or revert an interrupted live patch (bk_livepatch_recover() with this root's paths and
 * configuration, the boot choice settled as livepatch apply/rollback do), when the maintenance
 * flag is set; remove temp pointer symlinks in any case. Creates nothing when there is nothing
 * to do. The lock must be held. Returns 1 when it recovered (what, optional: one line saying
 * what), 0 nothing to do, <0 error (the flag stays). For bk_op_recover_after_lock().
 */
int bk_op_live_recover(struct bk_op_ctx *ctx, char *what, size_t len, struct bk_err *err);

/*
 * The revision id a live patch of the image m gets without --id: "<name>-<version>" with every
 * character a revision id may not hold replaced by '_' (livepatch apply, and the pre-check
 * that asks the scan hooks about it). 0 or -ENOMEM.
 */
int bk_op_live_default_id(const struct bk_manifest *m, char **ret);

/* A switch-over report as a new JSON object (--json of rev switch, livepatch). 0 or -ENOMEM. */
int bk_op_live_report_json(const struct bk_lp_report *rep, struct json_object **ret);

/*
 * Mount bank in the host's mount namespace, read-only, at ROOT/run/bootbank/bank/<X> (or reuse
 * that mount when it is the bank's), where revisions are copied out of it; it stays mounted
 * while a revision from it is (bk_op_live_bank_release()). The process must not have entered
 * the private namespace of bk_op_mount_part(). *ret_dfd: its root; *ret_path (optional): the
 * mount point. Needs root.
 */
int bk_op_live_bank_open(struct bk_op_ctx *ctx, struct bk_op_live *live, enum bk_bank_id bank,
			 int *ret_dfd, char **ret_path, struct bk_err *err);

/* Unmount ROOT/run/bootbank/bank/<X> when no mounted revision comes from it (0: nothing to do). */
int bk_op_live_bank_release(struct bk_op_ctx *ctx, struct bk_op_live *live, enum bk_bank_id bank,
			    struct bk_err *err);

/*
 * Bank about to be staged again (remediate's reboot path, livepatch apply): revisions copied
 * out of it that are not in service (a rolled-back live patch, the previous revision) are
 * stale from here on: unmounted and forgotten, and the bank's own mount goes, so the stage
 * finds the bank unused. -EBUSY naming the revision when it holds the one in service or one
 * a mount namespace still uses. *ret_n (optional): how many were released. Lock held.
 */
int bk_op_live_release_stale(struct bk_op_ctx *ctx, enum bk_bank_id bank, int *ret_n,
			     struct bk_err *err);

struct bk_op_livepatch_opts {
	int fd;				  /* the bundle, open (the caller keeps it) */
	const char *path;		  /* for messages */
	const struct bk_keyring *keyring; /* trusted signers */
	bool no_check_time;
	const char *id;	 /* the revision id; NULL: "<name>-<version>" */
	bool no_beneath; /* no MOVE_MOUNT_BENEATH view swap */
	/*
	 * NULL: a task of its own. Else the task of a caller (remediate) that began it: the live
	 * patch's steps and events join it, and res->steps stays NULL (they are in task->steps).
	 */
	struct bk_op_task *task;
};

/* What a live patch or its rollback did; also filled (task, steps, rep) when it failed. */
struct bk_op_livepatch_result {
	char task[17];		   /* the task id */
	struct json_object *steps; /* the task log, every step as an event object */
	struct bk_lp_report *rep;  /* the switch-over, when it ran */
	char *id;		   /* the revision in service after success */
	char bank[2];		   /* apply: the bank staged and activated */
};

void bk_op_livepatch_result_release(struct bk_op_livepatch_result *res);

/*
 * {"task", "ok", "exit_code", "error", "steps", "switch"}: what `livepatch apply|rollback
 * --json` prints; exit_code and err are the front end's. NULL on ENOMEM.
 */
struct json_object *bk_op_livepatch_result_to_json(const struct bk_op_livepatch_result *res,
						   int exit_code, const struct bk_err *err);

/*
 * Live-patch the running workloads with o->fd (docs/livepatch.md, "Apply"): lock, pre-check,
 * partial maintenance mode, stage and activate the alternate bank (in a child process),
 * mount the revision from the bank, scan hooks, switch-over, apply hooks. Every step is an
 * event and an observer step. -EINVAL for a bad id or no configuration (nothing done).
 */
int bk_op_livepatch_apply(struct bk_op_ctx *ctx, const struct bk_op_livepatch_opts *o,
			  struct bk_op_livepatch_result *res, struct bk_err *err);

/* Switch every workload back to the previous revision and restore the boot choice. */
int bk_op_livepatch_rollback(struct bk_op_ctx *ctx, bool no_beneath,
			     struct bk_op_livepatch_result *res, struct bk_err *err);

/*
 * {"workloads", "maintenance", "current", "previous"}: what `livepatch status --json` prints.
 * Reads only (creates the state and run directories).
 */
int bk_op_livepatch_status(struct bk_op_ctx *ctx, struct json_object **ret, struct bk_err *err);

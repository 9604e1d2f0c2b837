/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl internals of the live-patch verbs (rev, workload): the paths and the recovery. */
#pragma once

#include "bankctl.h"
#include "bk-livepatch.h"
#include "bk-select.h"

struct bankctl_live {
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
int bankctl_live_open(struct bankctl *ctx, struct bankctl_live *live, struct bk_err *err);
void bankctl_live_close(struct bankctl_live *live);

/*
 * Finish or revert an interrupted live patch (bk_livepatch_recover() with this root's paths and
 * configuration, the boot choice settled as livepatch apply/rollback do), when the maintenance
 * flag is set; remove temp pointer symlinks in any case. Creates nothing when there is nothing
 * to do. The lock must be held. Returns 1 when it recovered (what, optional: one line saying
 * what), 0 nothing to do, <0 error (the flag stays). For bankctl_recover_after_lock().
 */
int bankctl_live_recover(struct bankctl *ctx, char *what, size_t len, struct bk_err *err);

/*
 * Take the lock: bankctl_lock() finishes or reverts an interrupted live patch first
 * (bankctl_recover_after_lock()). Every live-patch verb that changes something calls this.
 */
int bankctl_live_lock_and_recover(struct bankctl *ctx, struct bankctl_live *live,
				  struct bk_err *err);

/* Print a switch-over report: text (frozen time per workload, hook output) or --json. */
int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep);

/* The report as a new JSON object. Returns 0 or -ENOMEM. */
int bankctl_live_report_json(const struct bk_lp_report *rep, struct json_object **ret);

/*
 * Mount bank in the host's mount namespace, read-only, at ROOT/run/bootbank/bank/<X> (or reuse
 * that mount when it is the bank's), where revisions are copied out of it; it stays mounted
 * while a revision from it is (bankctl_live_bank_release()). The process must not have entered
 * bankctl's private namespace (bankctl_mount_part()). *ret_dfd: its root; *ret_path
 * (optional): the mount point. Needs root.
 */
int bankctl_live_bank_open(struct bankctl *ctx, struct bankctl_live *live, enum bk_bank_id bank,
			   int *ret_dfd, char **ret_path, struct bk_err *err);

/* Unmount ROOT/run/bootbank/bank/<X> when no mounted revision comes from it (0: nothing to do). */
int bankctl_live_bank_release(struct bankctl *ctx, struct bankctl_live *live, enum bk_bank_id bank,
			      struct bk_err *err);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl internals of the live-patch verbs (rev, workload): the paths and the recovery. */
#pragma once

#include "bankctl.h"
#include "bk-livepatch.h"

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
 * configuration; logs what it did). The lock must be held. For bankctl_recover_after_lock().
 */
int bankctl_live_recover(struct bankctl *ctx, struct bk_err *err);

/*
 * Take the lock, then finish or revert an interrupted live patch (logs what it did).
 * Every live-patch verb that changes something calls this first.
 */
int bankctl_live_lock_and_recover(struct bankctl *ctx, struct bankctl_live *live,
				  struct bk_err *err);

/* Print a switch-over report: text (frozen time per workload, hook output) or --json. */
int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep);

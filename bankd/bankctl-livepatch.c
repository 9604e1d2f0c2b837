/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared by the live-patch verbs: paths beneath the root and recovery of a crashed switch. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bankctl-livepatch.h"
#include "bk-fs.h"
#include "bk-log.h"

int bankctl_live_open(struct bankctl *ctx, struct bankctl_live *live, struct bk_err *err)
{
	char *real;
	int r;

	*live = (struct bankctl_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
	real = realpath(ctx->root, NULL);
	if (!real)
		return bk_err_set(err, -errno, "cannot resolve root '%s': %m", ctx->root);
	live->root_real = real;
	if (asprintf(&live->run_path, "%s%s" BANKCTL_RUN_DIR, real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0 ||
	    asprintf(&live->hooks_dir, "%s%s" BANKCTL_ETC_DIR "/livepatch.d", real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0) {
		live->run_path = live->hooks_dir = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, true, &live->state_dfd, err);
	if (r < 0)
		return r;
	r = bankctl_open_dir(ctx, BANKCTL_RUN_DIR, true, &live->run_dfd, err);
	if (r < 0)
		return r;
	live->lp = (struct bk_livepatch_ctx){
		.state_dfd = live->state_dfd,
		.run_dfd = live->run_dfd,
		.run_path = live->run_path,
		.hooks_dir = live->hooks_dir,
		.hook_timeout_ms = ctx->config.hook_timeout_sec * 1000,
		.freeze_timeout_ms = ctx->config.freeze_timeout_ms,
	};
	return 0;
}

void bankctl_live_close(struct bankctl_live *live)
{
	closep(&live->state_dfd);
	closep(&live->run_dfd);
	free(live->root_real);
	free(live->run_path);
	free(live->hooks_dir);
	*live = (struct bankctl_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
}

int bankctl_live_lock_and_recover(struct bankctl *ctx, struct bankctl_live *live,
				  struct bk_err *err)
{
	_cleanup_free_ char *target = NULL;
	int r;

	r = bankctl_lock(ctx, err);
	if (r < 0)
		return r;
	r = bk_livepatch_recover(&live->lp, &target, err);
	if (r < 0)
		return r;
	if (r > 0)
		bk_log(LOG_NOTICE, "recovered an interrupted live patch%s%s%s",
		       target ? ": on '" : "", target ? target : "", target ? "'" : "");
	return 0;
}

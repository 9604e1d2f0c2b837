/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl workload: the workloads a live patch switches over (add, list, remove). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-op-live.h"
#include "bk-op-rev.h"
#include "bk-op.h"
#include "bk-workload.h"

BK_DEFINE_CLEANUP(DIR *, closedir)

int bankctl_workload_add(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "cgroup", required_argument, NULL, 'c' },
		{ "unit", required_argument, NULL, 'u' },
		{ "view", required_argument, NULL, 'v' },
		{ "no-fsr", no_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cgroup = NULL, *unit = NULL, *view = NULL;
	struct bk_workload w = { 0 };
	struct bk_err err = { 0 };
	int c, r, ret = BK_EXIT_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cgroup = optarg;
			break;
		case 'u':
			unit = optarg;
			break;
		case 'v':
			view = optarg;
			break;
		case 'N':
			w.no_fsr = true;
			break;
		default:
			if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
				return BK_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return bankctl_usage(ctx->verb, "expected one workload NAME");
	if (!!cgroup == !!unit)
		return bankctl_usage(ctx->verb, "give exactly one of --cgroup and --unit");
	if (!view)
		return bankctl_usage(ctx->verb, "missing --view");
	if (!bk_workload_name_is_valid(argv[optind]))
		return bankctl_usage(ctx->verb, "invalid workload name '%s'", argv[optind]);

	w.name = strdup(argv[optind]);
	w.unit = unit ? strdup(unit) : NULL;
	w.added = (uint64_t) time(NULL);
	if (!w.name || (unit && !w.unit)) {
		ret = bankctl_fail(-ENOMEM, NULL);
		goto out;
	}
	r = bk_view_path_normalize(view, &w.view, &err);
	if (r < 0) {
		ret = bankctl_usage(ctx->verb, "%s", err.msg);
		goto out;
	}
	if (cgroup) {
		r = bk_cgroup_path_normalize(cgroup, &w.cgroup, &err);
		if (r < 0) {
			ret = bankctl_usage(ctx->verb, "%s", err.msg);
			goto out;
		}
	}
	r = bk_workload_validate(&w, &err);
	if (r < 0) {
		ret = bankctl_usage(ctx->verb, "%s", err.msg);
		goto out;
	}

	r = bk_op_workload_add(&ctx->op, &w, &err);
	if (r < 0) {
		ret = bankctl_fail(r, &err);
		goto out;
	}
	if (!ctx->json)
		printf("workload '%s' added: %s '%s', view '%s'%s\n", w.name,
		       w.cgroup ? "cgroup" : "unit", w.cgroup ? w.cgroup : w.unit, w.view,
		       w.no_fsr ? ", cannot be suspended (blocks live patches)" : "");
out:
	bk_workload_release(&w);
	return ret;
}

/* Which mounted revision has device dev; NULL when none. */
static char *rev_of_dev(int run_dfd, dev_t dev)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int fd;

	fd = openat(run_dfd, BK_REV_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return NULL;
	}
	while ((de = readdir(d))) {
		dev_t rdev;

		if (!bk_rev_id_is_valid(de->d_name))
			continue;
		if (bk_rev_dev(run_dfd, de->d_name, &rdev, NULL) == 0 && rdev == dev)
			return strdup(de->d_name);
	}
	return NULL;
}

int bankctl_workload_list(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	struct bk_lp_workload *lws = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;
	int c, r, ret = BK_EXIT_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_live_open(&ctx->op, &live, &err);
	if (r >= 0)
		r = bk_lp_workloads_open(live.state_dfd, &lws, &n, &err);
	if (r < 0) {
		ret = bankctl_fail(r, &err);
		goto out;
	}
	arr = json_object_new_array();
	if (!arr) {
		ret = bankctl_fail(-ENOMEM, NULL);
		goto out;
	}
	if (!ctx->json && n == 0)
		printf("no workloads\n");
	else if (!ctx->json)
		printf("%-20s %-8s %-10s %-16s %-32s %s\n", "NAME", "RUNNING", "FROZEN", "REVISION",
		       "CGROUP", "VIEW");
	for (size_t i = 0; i < n; i++) {
		const struct bk_lp_workload *lw = &lws[i];
		_cleanup_free_ char *rev = NULL;
		struct json_object *o;
		bool frozen = false, is_mount = false;
		dev_t dev;

		if (lw->cg)
			(void) bk_cgroup_get_state(lw->cg, &frozen, NULL, NULL);
		if (lw->running && bk_view_stat(lw->pid, lw->w.view, &dev, &is_mount, NULL) == 0 &&
		    is_mount)
			rev = rev_of_dev(live.run_dfd, dev);
		if (!ctx->json) {
			printf("%-20s %-8s %-10s %-16s %-32s %s%s\n", lw->w.name,
			       lw->running ? "yes" : "no", frozen ? "frozen" : "-", rev ? rev : "-",
			       lw->cgroup ? lw->cgroup : "-", lw->w.view,
			       lw->w.no_fsr ? " (no-fsr)" : "");
			continue;
		}
		o = bk_workload_to_json(&lw->w);
		if (!o || json_object_array_add(arr, o) < 0 ||
		    bk_json_add_bool(o, "running", lw->running) < 0 ||
		    bk_json_add_bool(o, "frozen", frozen) < 0 ||
		    (lw->cgroup && bk_json_add_string(o, "cgroup_path", lw->cgroup) < 0) ||
		    (lw->running && bk_json_add_u64(o, "pid", (uint64_t) lw->pid) < 0) ||
		    (rev && bk_json_add_string(o, "revision", rev) < 0)) {
			ret = bankctl_fail(-ENOMEM, NULL);
			goto out;
		}
	}
	if (ctx->json)
		puts(bk_json_to_string(arr, true));
out:
	bk_lp_workloads_free(lws, n);
	bk_op_live_close(&live);
	return ret;
}

int bankctl_workload_remove(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct bk_err err = { 0 };
	int c, r, ret = BK_EXIT_OK;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	if (argc - optind != 1)
		return bankctl_usage(ctx->verb, "expected one workload NAME");
	if (!bk_workload_name_is_valid(argv[optind]))
		return bankctl_usage(ctx->verb, "invalid workload name '%s'", argv[optind]);

	r = bk_op_workload_remove(&ctx->op, argv[optind], &err);
	if (r < 0)
		ret = bankctl_fail(r, &err);
	else if (!ctx->json)
		printf("workload '%s' removed\n", argv[optind]);
	return ret;
}

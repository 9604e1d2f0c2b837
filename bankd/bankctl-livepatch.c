/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl livepatch apply|rollback|status: the front end of the live-patch operations
 * (bankd/bk-op-live.h): the task log as it happens, the switch-over report, --json. Also the
 * report of `rev switch` (bankctl_live_print_report()).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-live.h"
#include "bk-op.h"
#include "bk-rev.h"
#include "bk-switch.h"

static void print_hooks(const char *phase, const struct bk_hook_run *run)
{
	if (!run)
		return;
	for (size_t i = 0; i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		_cleanup_free_ char *copy = strdup(h->out);
		char *line, *save = NULL;

		if (!copy)
			continue;
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			printf("  %s hook '%s': %s\n", phase, h->name, line);
	}
}

int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep)
{
	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = NULL;

		if (bk_op_live_report_json(rep, &o) < 0)
			return -ENOMEM;
		puts(bk_json_to_string(o, true));
		return 0;
	}
	print_hooks("scan", rep->scan);
	if (!rep->rolled_back)
		printf("switched from '%s' to '%s' in %.3f ms\n", rep->from ? rep->from : "(none)",
		       rep->to, (double) rep->total_ns / 1e6);
	for (size_t i = 0; i < rep->n_items; i++) {
		const struct bk_lp_report_item *it = &rep->items[i];

		if (!it->running)
			printf("  %-24s not running\n", it->name);
		else if (it->skipped)
			printf("  %-24s already on '%s'\n", it->name, rep->to);
		else if (it->restarted)
			printf("  %-24s not frozen, restarted by hook (%s)%s\n", it->name,
			       it->mode == BK_VIEW_BENEATH ? "beneath" :
			       it->mode == BK_VIEW_STACKED ? "stacked" :
							     "attached",
			       rep->rolled_back && !it->switched ? ", switched back" : "");
		else if (it->frozen_ns)
			printf("  %-24s frozen %.3f ms (%s)%s\n", it->name,
			       (double) it->frozen_ns / 1e6,
			       it->mode == BK_VIEW_BENEATH ? "beneath" :
			       it->mode == BK_VIEW_STACKED ? "stacked" :
							     "attached",
			       rep->rolled_back && it->rollback_frozen_ns ? ", switched back" : "");
	}
	print_hooks("apply", rep->apply);
	print_hooks("revert", rep->revert);
	return 0;
}

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

static void on_task(void *userdata, const char *operation, const char *task_id, const char *subject)
{
	if (strcmp(operation, "livepatch") == 0)
		printf("live patch '%s' (task %s)\n", subject, task_id);
	else
		printf("live patch rollback to '%s' (task %s)\n", subject, task_id);
}

/* Text: the task log as it happens; --json: one document at the end. */
static void observe(struct bankctl *ctx)
{
	if (ctx->json)
		return;
	bankctl_print_steps(ctx);
	ctx->op.obs.task = on_task;
}

static int finish(struct bankctl *ctx, const struct bk_op_livepatch_result *res, int r,
		  const struct bk_err *err)
{
	int ret = r < 0 ? bankctl_fail(r, err) : BK_EXIT_OK;
	_cleanup_(json_object_putp) struct json_object *o = NULL;

	if (!ctx->json)
		return ret;
	o = bk_op_livepatch_result_to_json(res, ret, err);
	if (bankctl_print_json(o) < 0 && ret == BK_EXIT_OK)
		ret = bankctl_fail(-ENOMEM, NULL);
	return ret;
}

int bankctl_livepatch_apply(struct bankctl *ctx, int argc, char **argv)
{
	enum { OPT_KEYRING = 0x100, OPT_NO_CHECK_TIME, OPT_ID, OPT_NO_BENEATH };
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "keyring", required_argument, NULL, OPT_KEYRING },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ "id", required_argument, NULL, OPT_ID },
		{ "no-beneath", no_argument, NULL, OPT_NO_BENEATH },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	struct bk_op_livepatch_result res = { 0 };
	struct bk_op_livepatch_opts o = { 0 };
	const char *keyring_arg = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct bk_err err = { 0 };
	int c, r, ret;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_KEYRING:
			keyring_arg = optarg;
			break;
		case OPT_NO_CHECK_TIME:
			o.no_check_time = true;
			break;
		case OPT_ID:
			o.id = optarg;
			break;
		case OPT_NO_BENEATH:
			o.no_beneath = true;
			break;
		default:
			if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
				return BK_EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return bankctl_usage(ctx->verb, "expected one IMAGE.bbi");
	if (o.id && !bk_rev_id_is_valid(o.id))
		return bankctl_usage(ctx->verb, "invalid revision id '%s'", o.id);
	if (!ctx->op.configured)
		return bankctl_usage(ctx->verb, "nothing is configured: no '%s'",
				     ctx->op.config_path);
	o.path = argv[optind];

	r = bk_op_keyring_load(&ctx->op, keyring_arg, &keyring, &err);
	if (r < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		return r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	}
	o.keyring = keyring;
	observe(ctx);
	r = bankctl_open_bundle(o.path, &fd, &err);
	if (r >= 0) {
		o.fd = fd;
		r = bk_op_livepatch_apply(&ctx->op, &o, &res, &err);
	}
	if (r >= 0 && !ctx->json)
		printf("live patch '%s' is in service; bank %s boots it next\n", res.id, res.bank);
	ret = finish(ctx, &res, r, &err);
	bk_op_livepatch_result_release(&res);
	return ret;
}

int bankctl_livepatch_rollback(struct bankctl *ctx, int argc, char **argv)
{
	enum { OPT_NO_BENEATH = 0x100 };
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "no-beneath", no_argument, NULL, OPT_NO_BENEATH },
		{ NULL, 0, NULL, 0 },
	};
	struct bk_op_livepatch_result res = { 0 };
	struct bk_err err = { 0 };
	bool no_beneath = false;
	int c, r, ret;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_NO_BENEATH)
			no_beneath = true;
		else if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);
	observe(ctx);
	r = bk_op_livepatch_rollback(&ctx->op, no_beneath, &res, &err);
	if (r >= 0 && !ctx->json)
		printf("'%s' is in service again\n", res.id);
	ret = finish(ctx, &res, r, &err);
	bk_op_livepatch_result_release(&res);
	return ret;
}

/* --- status ----------------------------------------------------------------------------- */

static void fmt_time(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t) t;
	struct tm tm;

	if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		(void) snprintf(buf, len, "-");
}

/* A string member for text: "-" when it is missing or empty. */
static const char *text_of(struct json_object *o, const char *key)
{
	const char *s = NULL;

	(void) bk_json_get_string(o, key, false, &s, NULL);
	return s && s[0] ? s : "-";
}

/* A revision of `livepatch status --json`'s document, as a line. */
static void rev_text(const char *label, struct json_object *rev)
{
	const char *bank = NULL;
	bool mounted = false;

	if (!rev) {
		printf("  %-18s none\n", label);
		return;
	}
	(void) bk_json_get_bool(rev, "mounted", false, &mounted, NULL);
	if (!json_object_object_get_ex(rev, "created", NULL)) {
		printf("  %-18s %s (no metadata)\n", label, text_of(rev, "id"));
		return;
	}
	(void) bk_json_get_string(rev, "bank", false, &bank, NULL);
	printf("  %-18s %s: %s %s%s%s, %s\n", label, text_of(rev, "id"), text_of(rev, "image"),
	       text_of(rev, "version"), bank ? " from bank " : "", bank ? bank : "",
	       mounted ? "mounted" : "not mounted");
}

int bankctl_livepatch_status(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct json_object *m = NULL, *wl = NULL;
	struct bk_err err = { 0 };
	char when[40];
	size_t n_wl;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_livepatch_status(&ctx->op, &o, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json)
		return bankctl_print_json(o) < 0 ? bankctl_fail(-ENOMEM, NULL) : BK_EXIT_OK;

	(void) json_object_object_get_ex(o, "maintenance", &m);
	if (m) {
		uint64_t started = 0;

		(void) bk_json_get_u64(m, "started", false, UINT64_MAX, &started, NULL);
		fmt_time(started, when, sizeof(when));
		printf("live patch: in progress (partial maintenance mode since %s)\n"
		       "  %-18s %s, phase %s\n",
		       when, "operation", text_of(m, "reason"), text_of(m, "phase"));
	} else
		printf("live patch: idle (no partial maintenance mode)\n");
	rev_text("current revision", json_object_object_get(o, "current"));
	rev_text("previous revision", json_object_object_get(o, "previous"));
	(void) json_object_object_get_ex(o, "workloads", &wl);
	n_wl = wl ? json_object_array_length(wl) : 0;
	if (n_wl == 0)
		printf("  %-18s none\n", "workloads");
	for (size_t i = 0; i < n_wl; i++) {
		struct json_object *w = json_object_array_get_idx(wl, i);
		const char *cgroup = NULL, *unit = NULL;
		bool no_fsr = false;

		(void) bk_json_get_string(w, "cgroup", false, &cgroup, NULL);
		(void) bk_json_get_string(w, "unit", false, &unit, NULL);
		(void) bk_json_get_bool(w, "no_fsr", false, &no_fsr, NULL);
		printf("  %-18s %s: view %s, %s %s%s\n", i == 0 ? "workloads" : "",
		       text_of(w, "name"), text_of(w, "view"), cgroup ? "cgroup" : "unit",
		       cgroup ? cgroup :
		       unit   ? unit :
				"-",
		       no_fsr ? " (--no-fsr: cannot be suspended)" : "");
	}
	return BK_EXIT_OK;
}

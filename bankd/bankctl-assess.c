/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl assess: the boot assessment (bankd/bk-op-assess.h, docs/systemd.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-op-assess.h"

enum { OPT_TIMEOUT = 0x100, OPT_NO_REBOOT, OPT_IS_TRIAL, OPT_FAIL_REASON };

static void print_checks(const char *kind, const struct bk_hook_run *run)
{
	for (size_t i = 0; run && i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];

		if (h->timed_out)
			printf("  %s %s: timed out\n", kind, h->name);
		else if (h->status < 0)
			printf("  %s %s: killed by signal %d\n", kind, h->name, h->signal);
		else
			printf("  %s %s: %s\n", kind, h->name, h->status == 0 ? "ok" : "FAILED");
	}
}

/* The loader falls back only after a reboot: systemctl where systemd runs, else reboot. */
static int reboot_now(void)
{
	static char systemctl[] = "systemctl", reboot[] = "reboot";
	static char *const argv_systemctl[] = { systemctl, reboot, NULL };
	static char *const argv_reboot[] = { reboot, NULL };

	(void) fflush(NULL);
	if (access("/bin/systemctl", X_OK) == 0)
		execv("/bin/systemctl", argv_systemctl);
	if (access("/sbin/reboot", X_OK) == 0)
		execv("/sbin/reboot", argv_reboot);
	fprintf(stderr, "bankctl: cannot reboot: %m\n");
	return BK_EXIT_FAILURE;
}

int bankctl_assess(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
		{ "is-trial", no_argument, NULL, OPT_IS_TRIAL },
		{ "fail-reason", required_argument, NULL, OPT_FAIL_REASON },
		{ NULL, 0, NULL, 0 },
	};
	struct bk_op_assess_options o = { 0 };
	struct bk_op_assess_result res;
	struct bk_err err = { 0 };
	bool no_reboot = false, is_trial = false, trial, reboot;
	int c, r, ret;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_TIMEOUT) {
			char *end;
			unsigned long long v;

			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || v == 0 || v > 86400)
				return bankctl_usage(ctx->verb,
						     "--timeout: expected 1 to 86400 seconds");
			o.timeout_ms = v * 1000;
			continue;
		}
		if (c == OPT_IS_TRIAL) {
			is_trial = true;
			continue;
		}
		if (c == OPT_FAIL_REASON) {
			struct bk_boot_data probe;

			bk_boot_data_init(&probe);
			if (bk_boot_data_set_bad_reason(&probe, BK_BANK_A, optarg, &err) < 0)
				return bankctl_usage(ctx->verb, "--fail-reason: %s", err.msg);
			o.fail_reason = optarg;
			continue;
		}
		if (c == OPT_NO_REBOOT) {
			no_reboot = true;
			continue;
		}
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	if (is_trial) {
		/* For ExecCondition=: 0 on a trial boot, 1 otherwise (the unit is skipped). */
		r = bk_op_assess_is_trial(&ctx->op, &trial, &err);
		if (r < 0)
			return bankctl_fail(r, &err);
		return trial ? BK_EXIT_OK : BK_EXIT_FAILURE;
	}

	r = bk_op_assess(&ctx->op, &o, &res, &err);
	if (r < 0) {
		bk_op_assess_result_release(&res);
		return bankctl_fail(r, &err);
	}
	/* Only the host itself reboots: a sandbox (--root DIR) reports what it would do. */
	reboot = res.reboot && !no_reboot && bk_op_root_is_host(&ctx->op);
	ret = res.reason[0] ? BK_EXIT_FAILURE : BK_EXIT_OK;
	if (ctx->json) {
		r = bankctl_print_json(bk_op_assess_result_to_json(&res));
		if (r < 0)
			ret = bankctl_fail(r, NULL);
	} else {
		printf("bank %s (%s%s): %s\n", bk_bank_id_to_string(res.bank),
		       bk_bank_state_to_string(res.state), res.trial ? ", trial boot" : "",
		       res.action == BK_ASSESS_MARKED_GOOD ? "marked good" :
		       res.action == BK_ASSESS_MARKED_BAD  ? "marked bad" :
		       res.reason[0]			   ? "required check failed (not a trial "
							     "boot: reported only)" :
							     "healthy (not a trial boot: nothing "
							     "to confirm)");
		print_checks("required", res.required);
		print_checks("wanted", res.wanted);
		if (res.reason[0])
			printf("  reason: %s\n", res.reason);
		if (res.n_wanted_failed)
			printf("  %zu wanted check(s) failed\n", res.n_wanted_failed);
		if (res.action == BK_ASSESS_MARKED_BAD)
			printf("  %s\n",
			       res.reboot ? (reboot ? "rebooting into the other bank" :
						      "reboot to fall back to the other bank") :
					    "no other bank can boot: not rebooting");
	}
	bk_op_assess_result_release(&res);
	if (reboot)
		return reboot_now();
	return ret;
}

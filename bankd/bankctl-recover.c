/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl recover: the front end of bk_op_recover() (docs/crash-safety.md, "Recovery"): what a
 * killed operation left, finished or cleaned, as one line or --json.
 */
#include <errno.h>
#include <stdio.h>

#include "bankctl.h"
#include "bk-json.h"
#include "bk-op-recover.h"
#include "bk-op.h"

int bankctl_recover(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	const struct bk_op_recovery *rec = NULL;
	struct bk_err err = { 0 };
	char what[1024];
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_recover(&ctx->op, &rec, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = bk_op_recovery_to_json(rec);

		r = bankctl_print_json(o);
		if (r < 0)
			return bankctl_fail(r, NULL);
	} else if (!bk_op_recovery_did_something(rec)) {
		printf("nothing to recover\n");
	} else {
		bk_op_recovery_describe(rec, what, sizeof(what));
		printf("recovered: %s\n", what);
	}
	if (rec->interrupted && !rec->cleaned && !rec->resumable)
		return bankctl_fail(rec->bank_err.code ? rec->bank_err.code : -EIO, &rec->bank_err);
	if (rec->live_err.code < 0)
		return bankctl_fail(rec->live_err.code, &rec->live_err);
	return BK_EXIT_OK;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl verbs over the boot state: activate, explain-next-boot, boot --simulate, mark-good,
 * mark-bad, rollback, roll-forward: the front end of bankd/bk-op-boot.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bankctl.h"
#include "bk-boot.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-boot.h"
#include "bk-op.h"

/* The --json answer of a mutating verb: what it did and the boot state after it. */
static int print_result_json(const struct bk_op_boot_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = bk_op_boot_result_to_json(res);

	return bankctl_print_json(o);
}

/* Options of the verbs: the common ones, then each verb's own. */
#define OPT_TRIES	 0x100
#define OPT_REASON	 0x101
#define OPT_SIMULATE	 0x102
#define OPT_ROLLBACK_KEY 0x103

static int parse_common_only(struct bankctl *ctx, const struct bankctl_verb *verb, int argc,
			     char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, verb) <= 0)
			return -1;
	return 0;
}

/* ---- activate -------------------------------------------------------------------------- */

int bankctl_activate(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "tries", required_argument, NULL, OPT_TRIES },
						  { NULL, 0, NULL, 0 } };
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };
	enum bk_bank_id bank = _BK_BANK_INVALID;
	uint64_t tries = 0;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_TRIES) {
			if (bk_parse_u64(optarg, &tries) < 0 || tries < 1 || tries > BK_TRIES_MAX)
				return bankctl_usage(
					ctx->verb,
					"--tries must be a number from 1 to %u, not '%s'",
					BK_TRIES_MAX, optarg);
			continue;
		}
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc) {
		bank = bk_bank_id_from_string(argv[optind]);
		if (bank < 0 || strlen(argv[optind]) != 1)
			return bankctl_usage(ctx->verb, "unknown bank '%s' (expected A or B)",
					     argv[optind]);
		optind++;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_activate(&ctx->op, bank, tries, &res, &err);
	if (r == -EINVAL && bank == _BK_BANK_INVALID)
		return bankctl_usage(ctx->verb, "%s", err.msg);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json) {
		r = print_result_json(&res);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	printf("bank %s activated: generation %" PRIu64 ", %" PRIu64 " %s to boot and be marked "
	       "good\n",
	       bk_bank_id_to_string(res.bank), res.d.state.bank[res.bank].generation, res.tries,
	       res.tries == 1 ? "try" : "tries");
	bankctl_print_next(&res.d.state);
	return BK_EXIT_OK;
}

/* ---- mark-good, mark-bad --------------------------------------------------------------- */

static int mark(struct bankctl *ctx, int argc, char **argv, bool good)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "reason", required_argument, NULL, OPT_REASON },
						  { NULL, 0, NULL, 0 } };
	const struct bankctl_verb *verb = ctx->verb;
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };
	const char *word = "booted", *reason = NULL;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_REASON && !good) {
			struct bk_boot_data probe;

			bk_boot_data_init(&probe);
			if (bk_boot_data_set_bad_reason(&probe, BK_BANK_A, optarg, &err) < 0)
				return bankctl_usage(verb, "--reason: %s", err.msg);
			reason = optarg;
			continue;
		}
		if (c == OPT_REASON)
			c = '?';
		if (bankctl_common_option(ctx, c, verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		word = argv[optind++];
	if (optind < argc)
		return bankctl_usage(verb, "unexpected argument '%s'", argv[optind]);
	if (bk_bank_id_from_string(word) < 0 && strcmp(word, "booted") != 0 &&
	    strcmp(word, "other") != 0)
		return bankctl_usage(verb, "unknown bank '%s' (expected booted, other, A or B)",
				     word);

	r = bk_op_mark(&ctx->op, good, word, reason, &res, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json) {
		r = print_result_json(&res);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	if (good) {
		printf("bank %s marked good\n", bk_bank_id_to_string(res.bank));
		if (res.d.state.floor != res.old_floor)
			printf("  security floor raised from %" PRIu64 " to %" PRIu64 "\n",
			       res.old_floor, res.d.state.floor);
		else
			printf("  security floor stays %" PRIu64 "\n", res.d.state.floor);
	} else {
		printf("bank %s marked bad: %s\n", bk_bank_id_to_string(res.bank),
		       res.d.bad_reason[res.bank]);
	}
	bankctl_print_next(&res.d.state);
	return BK_EXIT_OK;
}

int bankctl_mark_good(struct bankctl *ctx, int argc, char **argv)
{
	return mark(ctx, argc, argv, true);
}

int bankctl_mark_bad(struct bankctl *ctx, int argc, char **argv)
{
	return mark(ctx, argc, argv, false);
}

/* ---- rollback, roll-forward ------------------------------------------------------------ */

static int roll(struct bankctl *ctx, int argc, char **argv, bool back)
{
	const struct bankctl_verb *verb = ctx->verb;
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };
	int r;

	if (parse_common_only(ctx, verb, argc, argv) < 0)
		return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_roll(&ctx->op, back, &res, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json) {
		r = print_result_json(&res);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	if (back)
		printf("rolled back: bank %s boots from now on (reason rollback); "
		       "'bankctl roll-forward' returns to bank %s\n",
		       bk_bank_id_to_string(res.bank),
		       bk_bank_id_to_string(bk_bank_other(res.bank)));
	else
		printf("rolled forward: the rollback to bank %s is over\n",
		       bk_bank_id_to_string(res.from));
	bankctl_print_next(&res.d.state);
	return BK_EXIT_OK;
}

int bankctl_rollback(struct bankctl *ctx, int argc, char **argv)
{
	return roll(ctx, argc, argv, true);
}

int bankctl_roll_forward(struct bankctl *ctx, int argc, char **argv)
{
	return roll(ctx, argc, argv, false);
}

/* ---- explain-next-boot ----------------------------------------------------------------- */

/* "bank B tries 3 -> 2 (trying); bank A marked bad; pin cleared" or "nothing". */
static void describe_changes(const struct bk_bootstate *s, const struct bk_boot_decision *d,
			     char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d->marked_bad[i])
			bk_op_listf(buf, len, &pos, "bank %s marked bad (no tries left)",
				    bk_bank_id_to_string((enum bk_bank_id) i));
	if (d->pin_cleared)
		bk_op_listf(buf, len, &pos, "pin on bank %s cleared (not eligible)",
			    bk_bank_id_to_string(s->pin));
	if (d->key_applied)
		bk_op_listf(buf, len, &pos, "pin set to bank %s", bk_bank_id_to_string(d->bank));
	if (d->try_taken)
		bk_op_listf(buf, len, &pos,
			    "bank %s takes a try: %" PRIu64 " -> %" PRIu64 " left, now trying",
			    bk_bank_id_to_string(d->bank), s->bank[d->bank].tries_left,
			    d->next.bank[d->bank].tries_left);
	if (pos == 0)
		snprintf(buf, len, "nothing");
}

int bankctl_explain_next_boot(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_boot_explain x;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char changes[512];
	int r;

	if (parse_common_only(ctx, ctx->verb, argc, argv) < 0)
		return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_explain(&ctx->op, &d, &x, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = bk_op_explain_to_json(&d, &x);

		r = bankctl_print_json(o);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}

	printf("next boot: %s\n", x.summary);
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_explain *e = &x.bank[i];

		printf("  bank %s  %s%s%s\n", bk_bank_id_to_string((enum bk_bank_id) i), e->text,
		       e->intended ? "  [newest]" : "", e->pinned ? "  [pinned]" : "");
	}
	printf("  security floor %" PRIu64 ", ", d.state.floor);
	if (d.state.pin == _BK_BANK_INVALID)
		printf("no rollback pin\n");
	else
		printf("rollback pin on bank %s\n", bk_bank_id_to_string(d.state.pin));
	describe_changes(&d.state, &x.next, changes, sizeof(changes));
	printf("  the loader saves before booting: %s\n", changes);
	if (x.with_key.key_applied)
		printf("  with the rollback key: bank %s boots (rollback, kept until "
		       "'bankctl roll-forward')\n",
		       bk_bank_id_to_string(x.with_key.bank));
	else
		printf("  with the rollback key: ignored (the other bank is not eligible)\n");
	return BK_EXIT_OK;
}

/* ---- boot --simulate ------------------------------------------------------------------- */

int bankctl_boot(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "simulate", no_argument, NULL, OPT_SIMULATE },
		{ "rollback-key", no_argument, NULL, OPT_ROLLBACK_KEY },
		{ NULL, 0, NULL, 0 },
	};
	struct bk_op_simulate_result res;
	const struct bk_boot_decision *dec = &res.dec;
	struct bk_err err = { 0 };
	bool simulate = false, key = false;
	char changes[512];
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_SIMULATE)
			simulate = true;
		else if (c == OPT_ROLLBACK_KEY)
			key = true;
		else if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);
	if (!simulate)
		return bankctl_usage(ctx->verb, "only a simulated boot exists: add --simulate");

	r = bk_op_boot_simulate(&ctx->op, key, &res, &err);
	if (r == -EPERM)
		return bankctl_usage(ctx->verb, "%s", err.msg);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = bk_op_decision_json(dec);

		if (bankctl_print_json(o) < 0)
			return bankctl_fail(-ENOMEM, NULL);
	} else if (dec->reason == BK_REASON_NONE) {
		printf("nothing booted: both banks are empty\n");
	} else {
		printf("booted bank %s (reason %s)\n", bk_bank_id_to_string(dec->bank),
		       bk_boot_reason_to_string(dec->reason));
		printf("  kernel command line: bootbank.bank=%s bootbank.reason=%s\n",
		       bk_bank_id_to_string(dec->bank), bk_boot_reason_to_string(dec->reason));
		describe_changes(&res.before, dec, changes, sizeof(changes));
		printf("  saved before booting: %s\n", changes);
		if (dec->key_pressed && !dec->key_applied)
			printf("  rollback key ignored: bank %s is not eligible\n",
			       bk_bank_id_to_string(bk_bank_other(dec->bank)));
		if (dec->reason == BK_REASON_EMERGENCY)
			printf("  emergency: no bank is eligible; bank %s boots as it is\n",
			       bk_bank_id_to_string(dec->bank));
	}
	if (dec->reason == BK_REASON_NONE) {
		(void) bk_err_set(&err, -ENOENT, "nothing to boot: both banks are empty");
		return bankctl_fail(err.code, &err);
	}
	return BK_EXIT_OK;
}

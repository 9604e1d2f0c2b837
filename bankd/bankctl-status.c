/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl status: what is configured, the banks and the boot state (bankd/bk-op-status.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bankctl.h"
#include "bk-boot.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-op-status.h"
#include "bk-op.h"
#include "bk-select.h"

static void format_time(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t) t;
	struct tm tm;

	if (t == 0 || !localtime_r(&tt, &tm) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
		snprintf(buf, len, "at an unknown time");
}

static void print_state_text(struct bk_op_status *v)
{
	char when[64];

	if (v->maint_r > 0) {
		format_time(v->maint.started, when, sizeof(when));
		printf("  maintenance    partial maintenance mode since %s: %s (%s, phase %s)\n",
		       when, v->maint.reason ? v->maint.reason : "", v->maint.operation,
		       bk_maint_phase_to_string(v->maint.phase));
	} else if (v->maint_r < 0) {
		printf("  maintenance    partial maintenance mode: %s\n", v->maint_err.msg);
	} else {
		printf("  maintenance    off\n");
	}
	if (v->event_r > 0) {
		const char *msg = v->last_error.message ? v->last_error.message : "";

		format_time(v->last_error.time_ms / 1000u, when, sizeof(when));
		/* One line: the first of the message (a failing check's output follows it). */
		printf("  last error     %s, %s: %.*s\n", when,
		       v->last_error.operation ? v->last_error.operation : "?",
		       (int) strcspn(msg, "\n"), msg);
	} else {
		printf("  last error     none\n");
	}
}

static void print_bank(struct bankctl *ctx, struct bk_op_status *v, enum bk_bank_id id,
		       const struct bk_boot_decision *next)
{
	const struct bk_bank_boot *b = &v->data.state.bank[id];
	struct json_object *content = NULL;
	char tries[32] = "", notes[256] = "", line[160];
	size_t pos = 0;

	if (b->state == BK_BANK_STAGED || b->state == BK_BANK_TRYING)
		snprintf(tries, sizeof(tries), "%" PRIu64 " %s left", b->tries_left,
			 b->tries_left == 1 ? "try" : "tries");
	if (v->booted_r == 0 && v->booted.bank == id)
		bk_op_listf(notes, sizeof(notes), &pos, "booted");
	if (next->bank == id)
		bk_op_listf(notes, sizeof(notes), &pos, "boots next");
	if (v->data.state.pin == id)
		bk_op_listf(notes, sizeof(notes), &pos, "rollback pin");
	if (b->state != BK_BANK_EMPTY && b->epoch < v->data.state.floor)
		bk_op_listf(notes, sizeof(notes), &pos, "below the security floor");

	snprintf(line, sizeof(line),
		 "  bank %s   %-7s generation %-3" PRIu64 " epoch %-3" PRIu64 " %s",
		 bk_bank_id_to_string(id), bk_bank_state_to_string(b->state), b->generation,
		 b->epoch, tries);
	/* Columns pad with blanks: none at the end of the line. */
	for (size_t n = strlen(line); n > 0 && line[n - 1] == ' '; n--)
		line[n - 1] = '\0';
	if (pos > 0)
		printf("%-58s (%s)\n", line, notes);
	else
		printf("%s\n", line);
	if (b->state == BK_BANK_BAD)
		printf("           why bad   %s\n",
		       v->data.bad_reason[id][0] ? v->data.bad_reason[id] : "(not recorded)");
	content = v->content[id];
	if (content) {
		printf("           content   %s\n",
		       bankctl_bank_content_text(content, line, sizeof(line)));
	} else if (b->state != BK_BANK_EMPTY) {
		printf("           content   no content record yet\n");
	}
}

static void print_boot_text(struct bankctl *ctx, struct bk_op_status *v)
{
	struct bk_boot_decision next;
	char when[64];

	printf("  boot state     %s, '%s'\n", bk_boot_name(v->boot), bk_boot_location(v->boot));
	if (bk_select_decide(&v->data.state, false, &next, NULL) < 0)
		return;

	printf("\n");
	for (int i = 0; i < _BK_BANK_MAX; i++)
		print_bank(ctx, v, (enum bk_bank_id) i, &next);
	printf("\n");

	if (v->booted_r == 0)
		printf("  booted         bank %s (%s; from %s)\n",
		       bk_bank_id_to_string(v->booted.bank),
		       v->booted.reason >= 0 ? bk_boot_reason_to_string(v->booted.reason) :
					       "reason not given",
		       bk_op_booted_source_to_string(&ctx->op, v->booted_source));
	else if (v->booted_r > 0)
		printf("  booted         unknown (no boot record, no bootbank.bank= from a loader)\n");
	else
		printf("  booted         unknown: %s\n", v->booted_err.msg);
	if (v->data_where[0])
		printf("  data           %s\n",
		       strcmp(v->data_where, "ram") == 0 ?
			       "RAM: no data partition, /etc changes and /var "
			       "are lost at shutdown" :
			       v->data_where);
	if (v->has_assess)
		printf("  assessment     %s%s%s; %" PRIu64 " wanted check(s) failed%s%s\n",
		       v->assess_action, v->assess_reason[0] ? ": " : "", v->assess_reason,
		       v->assess_wanted_failed, v->assess_wanted[0] ? ": " : "", v->assess_wanted);

	if (next.reason == BK_REASON_NONE)
		printf("  next boot      nothing: both banks are empty\n");
	else
		printf("  next boot      bank %s (%s%s)\n", bk_bank_id_to_string(next.bank),
		       bk_boot_reason_to_string(next.reason),
		       next.try_taken ? ", takes a try" : "");
	printf("  security floor %" PRIu64 "\n", v->data.state.floor);
	if (v->data.state.pin == _BK_BANK_INVALID)
		printf("  rollback       none\n");
	else
		printf("  rollback       to bank %s ('bankctl roll-forward' undoes it)\n",
		       bk_bank_id_to_string(v->data.state.pin));
	if (v->data.has_last) {
		format_time(v->data.last.time, when, sizeof(when));
		printf("  last boot      bank %s (%s), %s\n",
		       bk_bank_id_to_string(v->data.last.bank),
		       bk_boot_reason_to_string(v->data.last.reason), when);
	}
}

static void print_text(struct bankctl *ctx, struct bk_op_status *v)
{
	if (!ctx->op.configured) {
		printf("bootbank: nothing is configured under '%s'\n"
		       "  no configuration at '%s'\n"
		       "  start with 'bankctl disk init TARGET' or write that file "
		       "(see docs/configuration.md)\n",
		       ctx->op.root, ctx->op.config_path);
		return;
	}
	printf("bootbank on '%s'\n", ctx->op.root);
	printf("  configuration  %s\n", ctx->op.config_path);
	printf("  compatible     %s\n",
	       ctx->op.config.compatible ? ctx->op.config.compatible : "(any)");
	printf("  bootloader     %s\n", ctx->op.config.bootloader);
	printf("  keyring        %s\n", ctx->op.config.keyring);
	printf("  depot          %s\n", ctx->op.config.depot);
	if (v->load_r < 0)
		printf("  boot state     unreadable (see the error below)\n");
	else
		print_boot_text(ctx, v);
	print_state_text(v);
}

int bankctl_status(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct bk_op_status v = { 0 };
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	bk_op_status_load(&ctx->op, &v);
	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o =
			bk_op_status_to_json(&ctx->op, &v);

		r = bankctl_print_json(o);
		if (r < 0) {
			bk_op_status_release(&v);
			return bankctl_fail(r, NULL);
		}
	} else
		print_text(ctx, &v);
	bk_op_status_release(&v);

	/* A boot state that cannot be read is an error, after showing everything else. */
	if (ctx->op.configured && v.load_r < 0)
		return bankctl_fail(v.load_r, &v.load_err);
	return BK_EXIT_OK;
}

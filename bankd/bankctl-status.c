/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl status: what is configured, the banks and the boot state. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>

#include "bankctl.h"
#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-select.h"

static const struct bankctl_verb verb = { "status", NULL, "status [--json]", "" };

/* What status learned about the boot state; each part may be missing. */
struct boot_view {
	struct bk_boot *boot;
	struct bk_boot_data data;
	int load_r; /* <0: the boot state could not be read (load_err says why) */
	struct bk_err load_err;
	int booted_r; /* 0: booted known, 1: unknown, <0: booted_err */
	struct bk_booted booted;
	enum bankctl_booted_source booted_source;
	struct bk_err booted_err;
	int maint_r; /* 1: partial maintenance mode (maint), 0: off, <0: maint_err */
	struct bk_maint maint;
	struct bk_err maint_err;
	int event_r; /* 1: the last failed event (last_error), 0: none */
	struct bk_event last_error;
};

/*
 * The content record of a bank (name, version, build, manifest digest: bank.json in the bank
 * partition, written by `bankctl stage`). Returns 0 and a new object in *ret, or 1 when there
 * is no content record.
 */
static int bank_content_record(struct bankctl *ctx, enum bk_bank_id bank, struct json_object **ret)
{
	return bankctl_bank_content(ctx, bank, ret);
}

static void format_time(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t) t;
	struct tm tm;

	if (t == 0 || !localtime_r(&tt, &tm) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
		snprintf(buf, len, "at an unknown time");
}

static void view_load(struct bankctl *ctx, struct boot_view *v)
{
	v->load_r = bankctl_boot_load(ctx, &v->boot, &v->data, &v->load_err);
	v->booted_r = bankctl_booted(ctx, &v->booted, &v->booted_source, &v->booted_err);
}

/* The maintenance flag and the last failed operation (read-only, no lock). */
static void view_load_state(struct bankctl *ctx, struct boot_view *v)
{
	_cleanup_close_ int dfd = -EBADF;

	dfd = bk_open_beneath(ctx->root_fd, BANKCTL_STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			      0, false);
	if (dfd < 0)
		return;
	v->maint_r = bk_maint_get(dfd, &v->maint, &v->maint_err);
	v->event_r = bk_events_last_failure(dfd, &v->last_error, NULL);
}

static void view_release(struct boot_view *v)
{
	v->boot = bk_boot_free(v->boot);
	if (v->maint_r > 0)
		bk_maint_release(&v->maint);
	if (v->event_r > 0)
		bk_event_release(&v->last_error);
}

static int add_state_json(struct json_object *o, struct boot_view *v)
{
	struct json_object *m;

	if (v->maint_r > 0) {
		m = json_object_new_object();
		if (bk_json_add(o, "maintenance", m) < 0 ||
		    bk_json_add_string(m, "operation", v->maint.operation) < 0 ||
		    bankctl_json_add_nullable(m, "reason", v->maint.reason) < 0 ||
		    bk_json_add_string(m, "phase", bk_maint_phase_to_string(v->maint.phase)) < 0 ||
		    bk_json_add_u64(m, "started", v->maint.started) < 0 ||
		    bankctl_json_add_nullable(m, "from", v->maint.from) < 0 ||
		    bankctl_json_add_nullable(m, "to", v->maint.to) < 0 ||
		    bankctl_json_add_nullable(m, "bank", v->maint.bank) < 0 ||
		    bk_json_add_u64(m, "pid", v->maint.pid) < 0)
			return -ENOMEM;
	} else if (v->maint_r < 0) {
		m = json_object_new_object();
		if (bk_json_add(o, "maintenance", m) < 0 ||
		    bk_json_add_string(m, "error", v->maint_err.msg) < 0)
			return -ENOMEM;
	} else if (json_object_object_add(o, "maintenance", NULL) < 0) {
		return -ENOMEM;
	}
	if (v->event_r > 0)
		return bk_json_add(o, "last_error", bk_event_to_json(&v->last_error));
	return json_object_object_add(o, "last_error", NULL) < 0 ? -ENOMEM : 0;
}

static void print_state_text(struct boot_view *v)
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
		format_time(v->last_error.time_ms / 1000u, when, sizeof(when));
		printf("  last error     %s, %s: %s\n", when,
		       v->last_error.operation ? v->last_error.operation : "?",
		       v->last_error.message ? v->last_error.message : "");
	} else {
		printf("  last error     none\n");
	}
}

static int add_boot_json(struct bankctl *ctx, struct json_object *o, struct boot_view *v)
{
	struct json_object *boot, *banks = NULL, *booted;

	if (v->load_r < 0) {
		boot = json_object_new_object();
		if (bk_json_add(o, "boot", boot) < 0 ||
		    bk_json_add_string(boot, "backend", ctx->config.bootloader) < 0 ||
		    bk_json_add_string(boot, "error", v->load_err.msg) < 0)
			return -ENOMEM;
		return 0;
	}
	boot = bankctl_bootstate_json(&v->data);
	if (bk_json_add(o, "boot", boot) < 0 ||
	    bk_json_add_string(boot, "backend", bk_boot_name(v->boot)) < 0 ||
	    bk_json_add_string(boot, "location", bk_boot_location(v->boot)) < 0 ||
	    json_object_object_add(boot, "error", NULL) < 0)
		return -ENOMEM;

	if (!json_object_object_get_ex(boot, "banks", &banks) || !banks)
		return -ENOMEM;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		struct json_object *b = NULL, *content = NULL;

		if (!json_object_object_get_ex(banks, bk_bank_id_to_string((enum bk_bank_id) i),
					       &b) ||
		    !b)
			return -ENOMEM;
		if (bank_content_record(ctx, (enum bk_bank_id) i, &content) != 0)
			content = NULL;
		if (json_object_object_add(b, "content", content) < 0)
			return -ENOMEM;
	}

	if (v->booted_r == 0) {
		booted = json_object_new_object();
		if (bk_json_add(boot, "booted", booted) < 0 ||
		    bk_json_add_string(booted, "bank", bk_bank_id_to_string(v->booted.bank)) < 0 ||
		    bankctl_json_add_nullable(booted, "reason",
					      bk_boot_reason_to_string(v->booted.reason)) < 0 ||
		    bk_json_add_string(booted, "source",
				       bankctl_booted_source_to_string(ctx, v->booted_source)) < 0)
			return -ENOMEM;
	} else if (json_object_object_add(boot, "booted", NULL) < 0) {
		return -ENOMEM;
	}
	if (bankctl_json_add_nullable(boot, "booted_error",
				      v->booted_r < 0 ? v->booted_err.msg : NULL) < 0)
		return -ENOMEM;
	return 0;
}

static int print_json(struct bankctl *ctx, struct boot_view *v)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *cfg;

	if (!o)
		return -ENOMEM;
	if (bk_json_add_string(o, "root", ctx->root) < 0 ||
	    bk_json_add_string(o, "config", ctx->config_path) < 0 ||
	    bk_json_add_bool(o, "configured", ctx->configured) < 0)
		return -ENOMEM;
	if (ctx->configured) {
		cfg = json_object_new_object();
		if (bk_json_add(o, "system", cfg) < 0 ||
		    bankctl_json_add_nullable(cfg, "compatible", ctx->config.compatible) < 0 ||
		    bk_json_add_string(cfg, "bootloader", ctx->config.bootloader) < 0 ||
		    bk_json_add_string(cfg, "keyring", ctx->config.keyring) < 0 ||
		    bk_json_add_string(cfg, "depot", ctx->config.depot) < 0)
			return -ENOMEM;
		if (add_boot_json(ctx, o, v) < 0 || add_state_json(o, v) < 0)
			return -ENOMEM;
	} else if (json_object_object_add(o, "boot", NULL) < 0) {
		return -ENOMEM;
	}
	puts(bk_json_to_string(o, true));
	return 0;
}

static void print_bank(struct bankctl *ctx, struct boot_view *v, enum bk_bank_id id,
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
		bankctl_listf(notes, sizeof(notes), &pos, "booted");
	if (next->bank == id)
		bankctl_listf(notes, sizeof(notes), &pos, "boots next");
	if (v->data.state.pin == id)
		bankctl_listf(notes, sizeof(notes), &pos, "rollback pin");
	if (b->state != BK_BANK_EMPTY && b->epoch < v->data.state.floor)
		bankctl_listf(notes, sizeof(notes), &pos, "below the security floor");

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
	if (bank_content_record(ctx, id, &content) == 0) {
		printf("           content   %s\n",
		       bankctl_bank_content_text(content, line, sizeof(line)));
		json_object_put(content);
	} else if (b->state != BK_BANK_EMPTY) {
		printf("           content   no content record yet\n");
	}
}

static void print_boot_text(struct bankctl *ctx, struct boot_view *v)
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
		       bankctl_booted_source_to_string(ctx, v->booted_source));
	else if (v->booted_r > 0)
		printf("  booted         unknown (no boot record, no bootbank.bank= from a loader)\n");
	else
		printf("  booted         unknown: %s\n", v->booted_err.msg);

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

static void print_text(struct bankctl *ctx, struct boot_view *v)
{
	if (!ctx->configured) {
		printf("bootbank: nothing is configured under '%s'\n"
		       "  no configuration at '%s'\n"
		       "  start with 'bankctl disk init TARGET' or write that file "
		       "(see docs/configuration.md)\n",
		       ctx->root, ctx->config_path);
		return;
	}
	printf("bootbank on '%s'\n", ctx->root);
	printf("  configuration  %s\n", ctx->config_path);
	printf("  compatible     %s\n", ctx->config.compatible ? ctx->config.compatible : "(any)");
	printf("  bootloader     %s\n", ctx->config.bootloader);
	printf("  keyring        %s\n", ctx->config.keyring);
	printf("  depot          %s\n", ctx->config.depot);
	if (v->load_r < 0)
		printf("  boot state     unreadable (see the error below)\n");
	else
		print_boot_text(ctx, v);
	print_state_text(v);
}

int bankctl_status(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct boot_view v = { 0 };
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, &verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(&verb, "unexpected argument '%s'", argv[optind]);

	/* Unconfigured: nothing to read (and status must not create anything). */
	if (ctx->configured) {
		view_load(ctx, &v);
		view_load_state(ctx, &v);
	}

	if (ctx->json) {
		r = print_json(ctx, &v);
		if (r < 0) {
			view_release(&v);
			return bankctl_fail(r, NULL);
		}
	} else
		print_text(ctx, &v);
	view_release(&v);

	/* A boot state that cannot be read is an error, after showing everything else. */
	if (ctx->configured && v.load_r < 0)
		return bankctl_fail(v.load_r, &v.load_err);
	return BK_EXIT_OK;
}

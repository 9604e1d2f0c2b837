/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl, the command-line front end over the operations layer (bankd/bk-op*.h): a verb
 * parses its options, calls an operation and renders what it reports (text, progress bar,
 * JSON), and returns an exit code (enum bk_exit). The verb files (bankctl-<verb>.c) include
 * this header and the operations' headers, never each other's.
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include <json-c/json.h>

#include "bk-err.h"
#include "bk-op.h"

struct bankctl_verb;

struct bankctl {
	struct bk_op_ctx op; /* root, configuration, lock, observer */
	bool json;
	const struct bankctl_verb *verb; /* the verb or sub-command being run (usage, help) */
	char **argv;			 /* its arguments (argv[0] is its name) */
};

/*
 * One entry of bankctl's table (bankctl.c): a verb, a group of sub-commands or a sub-command.
 * The same table drives the dispatch, every --help, the suggestions for a mistyped verb or
 * option, the man page's synopsis and the bash completion (bankctl __table, see
 * scripts/gen-cli.sh), so they cannot drift.
 */
struct bankctl_verb {
	const char *name;
	int (*run)(struct bankctl *ctx, int argc, char **argv); /* NULL for a group */
	const char *usage; /* one line: "status [--json]" (a group's is made from its subs) */
	const char *help;  /* one line: what it does */
	/*
	 * Its own options besides the common ones (--json, --wait, --help), separated by spaces:
	 * "--force", "--tries=N", "-o|--output=OUT.bbi". The argument's name tells the completion
	 * what to offer: a name ending in .bbi, .pem, .json or one of FILE, PATH, DIR, TARGET
	 * completes file names.
	 */
	const char *options;
	/*
	 * What each operand is, by position, for the completion: bbi, json, file, dir, bank
	 * (booted|other|A|B), ab (A|B), rev, workload, depot, verb, or - (nothing to offer).
	 */
	const char *operands;
	const struct bankctl_verb *subs; /* a group's sub-commands, ended by { NULL } */
};

/* The options every verb accepts after its name too. */
#define BANKCTL_COMMON_LONGOPTS                                                 \
	{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, \
	{                                                                       \
		"wait", no_argument, NULL, 'w'                                  \
	}

/*
 * Handle a common option (returns 1), or report an unknown one (returns -1 after printing a
 * usage error). 0: not a common option.
 */
int bankctl_common_option(struct bankctl *ctx, int c, const struct bankctl_verb *verb);

/* Print "usage: bankctl VERB-USAGE" to stderr and return BK_EXIT_USAGE. */
int bankctl_usage(const struct bankctl_verb *verb, const char *fmt, ...) _printf_(2, 3);

/* Log err (or strerror(r)) as one line and map r to the exit code. */
int bankctl_fail(int r, const struct bk_err *err);

/*
 * Print every task step of the operations called from now on as a task log line on stdout
 * ("  HH:MM:SS.mmm  STEP  RESULT  N ms  MESSAGE"), with detail lines under them.
 */
void bankctl_print_steps(struct bankctl *ctx);

/*
 * Open a bundle given by path for an operation, read-only, without blocking
 * (bk_bundle_open_path(): anything but a regular file is refused, exit 6). Call it before
 * the operation takes the lock. Returns 0 or -errno with err.
 */
int bankctl_open_bundle(const char *path, int *ret_fd, struct bk_err *err);

/* "  next boot: bank B (primary)" (or "nothing") for the verbs that change the boot state. */
void bankctl_print_next(const struct bk_bootstate *s);

/* Print a JSON document (pretty) on stdout; -ENOMEM for NULL. */
int bankctl_print_json(struct json_object *o);

/* "name 1.0 (build x), manifest 0123..., staged ..." for a bank's content record. */
const char *bankctl_bank_content_text(struct json_object *content, char *buf, size_t len);

int bankctl_status(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_build(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_sign(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_verify(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_info(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_mount(struct bankctl *ctx, int argc, char **argv);
int bankctl_image_umount(struct bankctl *ctx, int argc, char **argv);
int bankctl_depot_import(struct bankctl *ctx, int argc, char **argv);
int bankctl_depot_list(struct bankctl *ctx, int argc, char **argv);
int bankctl_depot_remove(struct bankctl *ctx, int argc, char **argv);
int bankctl_disk_init(struct bankctl *ctx, int argc, char **argv);
int bankctl_disk_probe(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev_list(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev_add(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev_switch(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev_gc(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev_restore(struct bankctl *ctx, int argc, char **argv);
int bankctl_workload_add(struct bankctl *ctx, int argc, char **argv);
int bankctl_workload_list(struct bankctl *ctx, int argc, char **argv);
int bankctl_workload_remove(struct bankctl *ctx, int argc, char **argv);
int bankctl_livepatch_apply(struct bankctl *ctx, int argc, char **argv);
int bankctl_livepatch_rollback(struct bankctl *ctx, int argc, char **argv);
int bankctl_livepatch_status(struct bankctl *ctx, int argc, char **argv);
int bankctl_stage(struct bankctl *ctx, int argc, char **argv);
int bankctl_recover(struct bankctl *ctx, int argc, char **argv);
int bankctl_events(struct bankctl *ctx, int argc, char **argv);
int bankctl_activate(struct bankctl *ctx, int argc, char **argv);
int bankctl_explain_next_boot(struct bankctl *ctx, int argc, char **argv);
int bankctl_boot(struct bankctl *ctx, int argc, char **argv);
int bankctl_assess(struct bankctl *ctx, int argc, char **argv);
int bankctl_mark_good(struct bankctl *ctx, int argc, char **argv);
int bankctl_mark_bad(struct bankctl *ctx, int argc, char **argv);
int bankctl_rollback(struct bankctl *ctx, int argc, char **argv);
int bankctl_roll_forward(struct bankctl *ctx, int argc, char **argv);
int bankctl_desired_set(struct bankctl *ctx, int argc, char **argv);
int bankctl_desired_show(struct bankctl *ctx, int argc, char **argv);
int bankctl_desired_clear(struct bankctl *ctx, int argc, char **argv);
int bankctl_scan(struct bankctl *ctx, int argc, char **argv);
int bankctl_precheck(struct bankctl *ctx, int argc, char **argv);
int bankctl_remediate(struct bankctl *ctx, int argc, char **argv);

struct bk_lp_report;
/* A switch-over report (livepatch, rev switch): text (frozen time per workload, hooks) or JSON. */
int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep);

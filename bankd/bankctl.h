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

struct bankctl {
	struct bk_op_ctx op; /* root, configuration, lock, observer */
	bool json;
};

struct bankctl_verb {
	const char *name;
	int (*run)(struct bankctl *ctx, int argc, char **argv);
	const char *usage; /* one line: "status [--json]" */
	const char *help;  /* one line: what it does */
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

/* Open a bundle given by path for an operation (read-only). Returns 0 or -errno with err. */
int bankctl_open_bundle(const char *path, int *ret_fd, struct bk_err *err);

/* "  next boot: bank B (primary)" (or "nothing") for the verbs that change the boot state. */
void bankctl_print_next(const struct bk_bootstate *s);

/* Print a JSON document (pretty) on stdout; -ENOMEM for NULL. */
int bankctl_print_json(struct json_object *o);

/* "name 1.0 (build x), manifest 0123..., staged ..." for a bank's content record. */
const char *bankctl_bank_content_text(struct json_object *content, char *buf, size_t len);

int bankctl_status(struct bankctl *ctx, int argc, char **argv);
int bankctl_image(struct bankctl *ctx, int argc, char **argv);
int bankctl_depot(struct bankctl *ctx, int argc, char **argv);
int bankctl_disk(struct bankctl *ctx, int argc, char **argv);
int bankctl_rev(struct bankctl *ctx, int argc, char **argv);
int bankctl_workload(struct bankctl *ctx, int argc, char **argv);
int bankctl_livepatch(struct bankctl *ctx, int argc, char **argv);
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

struct bk_lp_report;
/* A switch-over report (livepatch, rev switch): text (frozen time per workload, hooks) or JSON. */
int bankctl_live_print_report(struct bankctl *ctx, const struct bk_lp_report *rep);

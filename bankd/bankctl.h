/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl internals shared by the verb files (bankctl-<verb>.c). A verb is a function that
 * parses its own options and returns an exit code (enum bk_exit).
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include "bk-config.h"
#include "bk-err.h"

/* Paths beneath the root (--root DIR, default "/"). */
#define BANKCTL_ETC_DIR	  "etc/bootbank"
#define BANKCTL_STATE_DIR "var/lib/bootbank"
#define BANKCTL_RUN_DIR	  "run/bootbank"

struct bankctl {
	const char *root;  /* as given, "/" by default */
	int root_fd;	   /* O_RDONLY|O_DIRECTORY of root */
	char *config_path; /* shown in messages */
	bool configured;   /* system.conf was found */
	struct bk_config config;
	bool json;
	bool wait; /* wait for the lock instead of failing with "busy" */
	int lock_fd;
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

/* Open (create with create=true) a directory beneath the root, e.g. BANKCTL_STATE_DIR. */
int bankctl_open_dir(struct bankctl *ctx, const char *relpath, bool create, int *ret_fd,
		     struct bk_err *err);

/* Take the mutation lock (run/bootbank/lock); honours --wait. */
int bankctl_lock(struct bankctl *ctx, struct bk_err *err);

/* "DIR/relpath" for messages (static buffer, overwritten by the next call). */
const char *bankctl_path(struct bankctl *ctx, const char *relpath);

int bankctl_status(struct bankctl *ctx, int argc, char **argv);

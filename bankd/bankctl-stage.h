/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stage verb's steps for its other caller, `livepatch apply` (one code path): stage a
 * verified bundle into the alternate bank and activate it, with a pause between the checks
 * and the first write (the live patch enters partial maintenance mode there). Mounts the
 * banks in bankctl's private mount namespace: a live patch runs it in a child process.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bankctl.h"
#include "bk-bank.h"
#include "bk-cms.h"

struct bankctl_stage_opts {
	int fd;		  /* the bundle, open */
	const char *path; /* for messages */
	bool activate;
	bool allow_downgrade;
	bool ignore_compatible;
	bool no_check_time;
	bool quiet; /* no progress bar */
	/*
	 * Optional: called once every check passed, right before the first write (the staging
	 * marker), with the bank to write and the boot state; a failure stops the stage with
	 * nothing written.
	 */
	int (*before_write)(void *userdata, enum bk_bank_id bank, const struct bk_boot_data *d,
			    struct bk_err *err);
	void *userdata;
};

struct bankctl_stage_result {
	enum bk_bank_id bank;
	const char *why;	       /* why that bank (static) */
	struct bk_bank_record *record; /* what was written (caller frees) */
	uint64_t bytes;
	double seconds;
	bool activated;
	struct bk_boot_data d; /* the boot state after */
};

/*
 * Lock (and recover), refuse in partial maintenance mode, verify, check the policy and the
 * space, then write the bank and mark it staged (and activated with o->activate), as `bankctl
 * stage` does (docs/banks.md, "Stage"). Returns 0 or -errno with err.
 */
int bankctl_stage_run(struct bankctl *ctx, const struct bankctl_stage_opts *o,
		      const struct bk_keyring *keyring, struct bankctl_stage_result *res,
		      struct bk_err *err);

/*
 * The bank a stage would write (the alternate of the booted bank, ...), with why. Reads the
 * boot state. Returns 0 or -errno.
 */
int bankctl_stage_target(struct bankctl *ctx, enum bk_bank_id *ret, const char **ret_why,
			 struct bk_err *err);

/* The directory of the banks' content record copies, beneath the state directory. */
#define BANKCTL_BANKS_CACHE_DIR "banks"

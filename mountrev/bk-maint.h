/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Partial maintenance mode: a persistent host flag (STATE/maintenance.json, STATE being
 * ROOT/var/lib/bootbank) set for the whole of a live patch. While it is set, stage, activate,
 * rollback and workload registration refuse with -EBUSY (exit code 3, "busy"). The flag also
 * is the live patch's journal: it names the revisions and the phase, so the next run after a
 * crash knows whether to finish or to revert (see docs/livepatch.md). Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bk-err.h"

#define BK_MAINT_FILE	  "maintenance.json"
#define BK_MAINT_MAX_SIZE (16 * 1024)

enum bk_maint_phase {
	BK_MAINT_PHASE_STAGING,	  /* livepatch apply: writing and activating the alternate bank */
	BK_MAINT_PHASE_PREPARING, /* pre-checks and scan hooks; nothing switched yet */
	BK_MAINT_PHASE_SWITCHING, /* pointer and views are moving: a crash reverts to `from` */
	BK_MAINT_PHASE_COMMITTED, /* every view is on `to`: a crash finishes to `to` */
	_BK_MAINT_PHASE_MAX,
	_BK_MAINT_PHASE_INVALID = -EINVAL,
};

const char *bk_maint_phase_to_string(enum bk_maint_phase p);
enum bk_maint_phase bk_maint_phase_from_string(const char *s);

struct bk_maint {
	char *operation; /* "livepatch" */
	char *reason;	 /* one line for people: "live patch from 'r1' to 'r2'" */
	char *from;	 /* revision in service before (may be NULL: nothing was current) */
	char *to;	 /* revision being switched to */
	enum bk_maint_phase phase;
	uint64_t started; /* CLOCK_REALTIME seconds */
	uint64_t pid;	  /* of the process that set it */
	char *boot_id;	  /* /proc/sys/kernel/random/boot_id when it was set (NULL: unknown) */
	/*
	 * The bank a live patch staged and activated (livepatch apply), or whose activation a
	 * live-patch rollback undoes; NULL when none. Opaque here: the caller's settle callback
	 * (bk-livepatch.h) acts on it. generation: what the activation gave the bank (0: not yet
	 * known); generation_before: the bank's generation before the live patch staged it.
	 */
	char *bank;
	uint64_t bank_generation;
	uint64_t bank_generation_before;
};

/* This boot's id (36 characters + NUL) into buf; 0 or -errno. */
int bk_maint_boot_id(char buf[37]);

/* Free the strings of m (embedded struct); m may be reused after bk_maint_init-style zeroing. */
void bk_maint_release(struct bk_maint *m);

/*
 * Write the flag (atomic replace of STATE/maintenance.json, fsync'ed, directory fsync'ed).
 * Overwrites an existing flag (used to move it to the next phase). Returns 0 or -errno.
 */
int bk_maint_set(int state_dfd, const struct bk_maint *m, struct bk_err *err);

/*
 * Read the flag: 1 and *ret filled (caller releases) when set, 0 when not set (*ret untouched),
 * <0 on error (-ENOEXEC for a malformed file, naming it).
 */
int bk_maint_get(int state_dfd, struct bk_maint *ret, struct bk_err *err);

/* Remove the flag (unlink + fsync of the directory). 0 also when it was not set. */
int bk_maint_clear(int state_dfd, struct bk_err *err);

/* True when the flag file exists (a malformed one counts as set). */
bool bk_maint_is_set(int state_dfd);

/*
 * For verbs that must not run in partial maintenance mode: 0 when not set, else -EBUSY with
 * "busy: partial maintenance mode since <UTC time> (<reason>)"; what names the refused verb.
 */
int bk_maint_check(int state_dfd, const char *what, struct bk_err *err);

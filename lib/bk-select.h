/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot selection model (design §4), pure: no I/O. One implementation, used by
 * `bankctl explain-next-boot`, by the sandbox boot (`bankctl boot --simulate`), by the
 * mutating verbs (activate, mark-good, mark-bad, rollback, roll-forward) and by the tests that
 * check the real loader scripts (GRUB, U-Boot) against it. The rule is written in
 * docs/banks.md; this header is its contract.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bk-err.h"

enum bk_bank_id {
	BK_BANK_A,
	BK_BANK_B,
	_BK_BANK_MAX,
	_BK_BANK_INVALID = -EINVAL,
};

enum bk_bank_state {
	BK_BANK_EMPTY,   /* no complete image (never staged, or being written) */
	BK_BANK_STAGED,  /* complete and verified, activated or not, never booted */
	BK_BANK_TRYING,  /* booted at least once, not yet confirmed */
	BK_BANK_GOOD,    /* confirmed by mark-good */
	BK_BANK_BAD,     /* marked bad (tries exhausted, mark-bad, failed assessment) */
	_BK_BANK_STATE_MAX,
	_BK_BANK_STATE_INVALID = -EINVAL,
};

enum bk_boot_reason {
	BK_REASON_NONE,      /* nothing bootable at all */
	BK_REASON_PRIMARY,   /* the intended bank: highest generation among non-empty banks */
	BK_REASON_FALLBACK,  /* the intended bank is not eligible; the next eligible one */
	BK_REASON_ROLLBACK,  /* the operator's rollback (pin) is in force */
	BK_REASON_EMERGENCY, /* no eligible bank: the newest non-empty bank, as is */
	_BK_REASON_MAX,
	_BK_REASON_INVALID = -EINVAL,
};

/* The boot state the loader reads and writes, per bank. */
struct bk_bank_boot {
	enum bk_bank_state state;
	uint64_t generation; /* activate gives the highest; 0 = never activated */
	uint64_t tries_left; /* meaningful for staged/trying */
	uint64_t epoch;      /* security epoch of the image in the bank */
};

struct bk_bootstate {
	struct bk_bank_boot bank[_BK_BANK_MAX];
	uint64_t floor;          /* anti-rollback floor: banks with epoch < floor are ineligible */
	enum bk_bank_id pin;     /* operator rollback target, or _BK_BANK_INVALID for none */
};

const char *bk_bank_id_to_string(enum bk_bank_id id);          /* "A", "B" */
enum bk_bank_id bk_bank_id_from_string(const char *s);         /* "A"/"a"/"B"/"b" */
const char *bk_bank_state_to_string(enum bk_bank_state s);     /* "empty", ... */
enum bk_bank_state bk_bank_state_from_string(const char *s);
const char *bk_boot_reason_to_string(enum bk_boot_reason r);   /* "primary", ... */
enum bk_boot_reason bk_boot_reason_from_string(const char *s);

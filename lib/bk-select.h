/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot selection model (design §4), pure: no I/O. One implementation, used by
 * `bankctl explain-next-boot`, by the sandbox boot (`bankctl boot --simulate`), by the
 * mutating verbs (activate, mark-good, mark-bad, rollback, roll-forward) and by the tests that
 * check the real loader scripts (GRUB, U-Boot) against it. The rule is written in
 * docs/banks.md; this header is its contract.
 *
 * Every function here is pure: it reads its inputs, writes its outputs (only on success) and
 * never allocates, prints or touches a file, so a small C tool can drive the same decision a
 * loader script makes (bk_bootstate_parse() a state, bk_select_decide(), compare).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"

enum bk_bank_id {
	BK_BANK_A,
	BK_BANK_B,
	_BK_BANK_MAX,
	_BK_BANK_INVALID = -EINVAL,
};

enum bk_bank_state {
	BK_BANK_EMPTY,	/* no complete image (never staged, or being written) */
	BK_BANK_STAGED, /* complete and verified, activated or not, never booted */
	BK_BANK_TRYING, /* booted at least once, not yet confirmed */
	BK_BANK_GOOD,	/* confirmed by mark-good */
	BK_BANK_BAD,	/* marked bad (tries exhausted, mark-bad, failed assessment) */
	_BK_BANK_STATE_MAX,
	_BK_BANK_STATE_INVALID = -EINVAL,
};

enum bk_boot_reason {
	BK_REASON_NONE,	     /* nothing bootable at all */
	BK_REASON_PRIMARY,   /* the intended bank: highest generation among non-empty banks */
	BK_REASON_FALLBACK,  /* the intended bank is not eligible; the next eligible one */
	BK_REASON_ROLLBACK,  /* the operator's rollback (pin) is in force */
	BK_REASON_EMERGENCY, /* no eligible bank: the newest non-empty bank, as is */
	_BK_REASON_MAX,
	_BK_REASON_INVALID = -EINVAL,
};

/* Limits every backend enforces when it loads a boot state (bk_bootstate_check()). */
#define BK_TRIES_MAX	  100u /* tries an activated bank may get (system.conf [boot] tries) */
#define BK_GENERATION_MAX 0xffffffffu /* generations and epochs fit 32 bits in every loader */
#define BK_EPOCH_MAX	  0xffffffffu

/* The boot state the loader reads and writes, per bank. */
struct bk_bank_boot {
	enum bk_bank_state state;
	uint64_t generation; /* activate gives the highest; 0 = never activated */
	uint64_t tries_left; /* meaningful for staged/trying */
	uint64_t epoch;	     /* security epoch of the image in the bank */
};

struct bk_bootstate {
	struct bk_bank_boot bank[_BK_BANK_MAX];
	uint64_t floor;	     /* anti-rollback floor: banks with epoch < floor are ineligible */
	enum bk_bank_id pin; /* operator rollback target, or _BK_BANK_INVALID for none */
};

const char *bk_bank_id_to_string(enum bk_bank_id id);	     /* "A", "B"; NULL when invalid */
enum bk_bank_id bk_bank_id_from_string(const char *s);	     /* "A"/"a"/"B"/"b" */
const char *bk_bank_state_to_string(enum bk_bank_state s);   /* "empty", ...; NULL when invalid */
enum bk_bank_state bk_bank_state_from_string(const char *s); /* exact lowercase names */
const char *bk_boot_reason_to_string(enum bk_boot_reason r); /* "none", "primary", ... */
enum bk_boot_reason bk_boot_reason_from_string(const char *s);

/* The other bank (A <-> B); _BK_BANK_INVALID for an invalid id. */
enum bk_bank_id bk_bank_other(enum bk_bank_id id);

/* The initial boot state: both banks empty, generation 0, floor 0, no pin. */
void bk_bootstate_init(struct bk_bootstate *s);

/*
 * Check that s is a boot state the model can reason about: every state and the pin in range,
 * tries_left <= BK_TRIES_MAX, generation, epoch and floor within their limits. Returns 0 or
 * -EINVAL with a message naming the field ("bank B: tries_left 300 is above 100"). Backends
 * call it on everything they load; every other function here refuses an invalid state with
 * -EINVAL too.
 */
int bk_bootstate_check(const struct bk_bootstate *s, struct bk_err *err);

/* Whether a and b hold the same boot state: each bank's four fields, the floor and the pin. */
bool bk_bootstate_equal(const struct bk_bootstate *a, const struct bk_bootstate *b);

/*
 * Why a bank is not eligible (rule 1): a set of flags, 0 when the bank is eligible. More than
 * one can apply ("bad" and "epoch below floor").
 */
enum bk_ineligible_flags {
	BK_INELIGIBLE_EMPTY = 1 << 0,	      /* state empty */
	BK_INELIGIBLE_BAD = 1 << 1,	      /* state bad */
	BK_INELIGIBLE_NOT_ACTIVATED = 1 << 2, /* staged with no tries: never activated */
	BK_INELIGIBLE_NO_TRIES = 1 << 3,      /* trying with no tries left (rule 2 marks it bad) */
	BK_INELIGIBLE_BELOW_FLOOR = 1 << 4,   /* epoch below the anti-rollback floor */
};

/* The flags of enum bk_ineligible_flags that apply to bank; 0 = eligible. */
unsigned bk_bank_ineligible(const struct bk_bootstate *s, enum bk_bank_id bank);

/*
 * Rule 1: epoch >= floor, and state good, or staged/trying with tries_left > 0. False for an
 * invalid bank id.
 */
bool bk_bank_is_eligible(const struct bk_bootstate *s, enum bk_bank_id bank);

/* What the loader does at one boot (rules 2-8). */
struct bk_boot_decision {
	enum bk_bank_id bank;	    /* the bank that boots; _BK_BANK_INVALID with BK_REASON_NONE */
	enum bk_boot_reason reason; /* goes on the kernel command line as bootbank.reason= */
	enum bk_bank_id intended;   /* rule 3: newest non-empty bank, _BK_BANK_INVALID if none */
	bool marked_bad[_BK_BANK_MAX]; /* rule 2: trying with no tries left, now bad */
	bool pin_cleared;	  /* rule 4: the pin named an ineligible bank and was dropped */
	bool key_pressed;	  /* the rollback key was pressed ... */
	bool key_applied;	  /* ... and the other bank was eligible: pin set to it (rule 8) */
	bool try_taken;		  /* rule 7: one try taken from the booted bank */
	bool changed;		  /* next differs from the input: save it before booting */
	struct bk_bootstate next; /* the boot state to save */
};

/*
 * Decide the next boot from s, as the loader does (rules 2-8), with or without the operator's
 * rollback key. s is not modified; *ret gets the decision and the new boot state to save.
 * Returns 0, or -EINVAL (message) when s fails bk_bootstate_check().
 */
int bk_select_decide(const struct bk_bootstate *s, bool rollback_key, struct bk_boot_decision *ret,
		     struct bk_err *err);

/* Per-bank explanation for `bankctl explain-next-boot`. */
struct bk_bank_explain {
	bool eligible;
	unsigned ineligible; /* enum bk_ineligible_flags */
	bool intended;	     /* rule 3 */
	bool pinned;	     /* the pin names this bank */
	char text[192];	     /* "eligible: good, generation 2, epoch 1" / "not eligible: bad" */
};

struct bk_boot_explain {
	struct bk_bank_explain bank[_BK_BANK_MAX];
	struct bk_boot_decision next;	  /* the next boot without the rollback key */
	struct bk_boot_decision with_key; /* the next boot with the rollback key pressed */
	char summary[256]; /* "bank B boots with reason primary (takes a try: 3 -> 2)" */
};

/*
 * Explain the next boot from s: each bank's eligibility and why, the decision without and with
 * the rollback key, and a one-line summary. s is not modified. Returns 0 or -EINVAL (message)
 * when s fails bk_bootstate_check().
 */
int bk_select_explain(const struct bk_bootstate *s, struct bk_boot_explain *ret,
		      struct bk_err *err);

/*
 * Transitions made by bankctl (docs/banks.md "Transitions made by bankctl"). Each reads s,
 * writes the new boot state to *ret only on success (ret may be s itself) and returns 0, or
 * fails with a message naming the bank:
 *   -EINVAL       invalid state or bank id, or the bank is not in a state that allows it
 *                 ("bank B is not staged (it is good)", "tries must be 1 to 100")
 *   -ENOENT       there is no bank to go to (rollback: the other bank is not eligible;
 *                 roll-forward: no pin, or no other eligible bank to go back to)
 *   -EKEYREVOKED  activate: the bank's epoch is below the anti-rollback floor
 */

/*
 * activate: the bank must be staged (never booted) and its epoch not below the floor; it gets
 * generation = max(generations) + 1 and tries_left = tries (1..BK_TRIES_MAX); the pin is
 * cleared.
 */
int bk_select_activate(const struct bk_bootstate *s, enum bk_bank_id bank, uint64_t tries,
		       struct bk_bootstate *ret, struct bk_err *err);

/*
 * mark-good: the bank must have been booted (trying, good, or bad: an operator may confirm a
 * bank an emergency boot proved working); state good, tries_left 0; then
 * floor = max(floor, min(epoch of every eligible bank)) (unchanged when none is eligible).
 * -EINVAL for an empty or a staged (never booted) bank.
 */
int bk_select_mark_good(const struct bk_bootstate *s, enum bk_bank_id bank,
			struct bk_bootstate *ret, struct bk_err *err);

/* mark-bad: any non-empty bank; state bad, tries_left 0. -EINVAL for an empty bank. */
int bk_select_mark_bad(const struct bk_bootstate *s, enum bk_bank_id bank, struct bk_bootstate *ret,
		       struct bk_err *err);

/*
 * rollback: X is the bank that would boot now (rules 2-5, without taking a try), Y the other;
 * Y must be eligible (-ENOENT otherwise); pin = Y. *ret_bank (optional) gets Y.
 */
int bk_select_rollback(const struct bk_bootstate *s, struct bk_bootstate *ret,
		       enum bk_bank_id *ret_bank, struct bk_err *err);

/*
 * roll-forward: a pin must be set, and the bank that would boot without it (rules 2, 3, 5)
 * must exist and differ from the pinned bank (-ENOENT otherwise); the pin is cleared.
 * *ret_bank (optional) gets the bank that boots next.
 */
int bk_select_roll_forward(const struct bk_bootstate *s, struct bk_bootstate *ret,
			   enum bk_bank_id *ret_bank, struct bk_err *err);

/*
 * stage, first step (before any byte of the bank is written): the bank becomes empty,
 * generation 0, tries 0, epoch 0; a pin naming it is cleared. The caller (the stage verb)
 * refuses the booted bank; the model does not know which bank is booted.
 */
int bk_select_stage_begin(const struct bk_bootstate *s, enum bk_bank_id bank,
			  struct bk_bootstate *ret, struct bk_err *err);

/*
 * stage, last step (content written and verified): the bank must be empty (stage_begin); it
 * becomes staged with the image's epoch, generation 0 and tries_left 0 (not eligible until
 * activated). The anti-rollback policy (refusing images below the floor unless forced) is the
 * stage verb's; activate refuses a bank below the floor.
 */
int bk_select_stage_done(const struct bk_bootstate *s, enum bk_bank_id bank, uint64_t epoch,
			 struct bk_bootstate *ret, struct bk_err *err);

/*
 * The compact text form of a boot state, for loader tests and debugging:
 *   "A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none"
 * that is BANK=STATE:GENERATION:TRIES_LEFT:EPOCH for each bank, then floor and pin (A, B or
 * none). bk_bootstate_format() writes it into buf (NUL-terminated) and returns 0, or -ENOBUFS
 * when len is too small (BK_BOOTSTATE_TEXT_MAX always suffices).
 */
#define BK_BOOTSTATE_TEXT_MAX 160
int bk_bootstate_format(const struct bk_bootstate *s, char *buf, size_t len);

/*
 * Parse the compact text form (tokens separated by blanks, any order; every token required
 * once). Returns 0, or -EINVAL with a message naming the token; the result passes
 * bk_bootstate_check().
 */
int bk_bootstate_parse(const char *text, struct bk_bootstate *ret, struct bk_err *err);

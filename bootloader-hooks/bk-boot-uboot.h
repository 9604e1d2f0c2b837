/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `uboot` boot state backend's mapping between U-Boot environment variables and the boot
 * state (bk-select.h). The backend itself is reached through bk-boot.h like every other; the
 * mapping is exported for tools and tests that need the variables without a store
 * (tests/tools/uboot-env.c writes them into the U-Boot script cross-check).
 *
 * The variables (docs/uboot.md), the same names the GRUB backend uses:
 *   bootbank_A_state bootbank_A_gen bootbank_A_tries bootbank_A_epoch
 *   bootbank_B_state bootbank_B_gen bootbank_B_tries bootbank_B_epoch
 *   bootbank_floor   always written
 *   bootbank_pin     A or B; absent: no pin (U-Boot cannot hold an empty value)
 *   bootbank_A_bad_reason, bootbank_B_bad_reason
 *                    why the bank was marked bad; only while it is bad
 *   bootbank_last    the last boot: "BANK REASON TIME" ("A primary 1763800000")
 * States are the names of bk_bank_state_to_string(); numbers are canonical decimals (no sign,
 * no leading zero). Absent state variables read as an empty bank, 0 and no pin: a U-Boot
 * default environment is two empty banks.
 */
#pragma once

#include <stddef.h>

#include "bk-boot.h"
#include "bk-err.h"

/* Where the backend finds libubootenv's configuration beneath the root (fw_printenv's default). */
#define BK_BOOT_UBOOT_CONFIG "etc/fw_env.config"

/*
 * Optional beneath the root: the board's default environment ("NAME=VALUE" lines, the file
 * `fw_setenv --defenv` takes). A save into a never-written (blank) environment starts from it;
 * without it such a save is refused, because U-Boot would then find a valid environment that
 * lacks its bootcmd.
 */
#define BK_BOOT_UBOOT_DEFAULT_ENV "etc/bootbank/uboot-default.env"

#define BK_BOOT_UBOOT_N_VARS 15 /* every variable the backend owns */

/* The names of every variable the backend owns, in the order it writes them. */
extern const char *const bk_boot_uboot_vars[BK_BOOT_UBOOT_N_VARS];

/* One variable: absent means deleted from the environment (value is then ""). */
struct bk_boot_uboot_var {
	const char *name;
	char value[BK_BOOT_BAD_REASON_MAX + 1];
	bool absent;
};

/*
 * The variables that hold d, one per name of bk_boot_uboot_vars, in that order (ret must have
 * room for BK_BOOT_UBOOT_N_VARS). d must pass the checks of bk_boot_save() (-EINVAL
 * otherwise). Returns 0.
 */
int bk_boot_uboot_encode(const struct bk_boot_data *d, struct bk_boot_uboot_var *ret,
			 struct bk_err *err);

/*
 * Read a boot state from variables: get(name, userdata) returns the value of a variable as a
 * new string (NULL when absent; the caller frees it). Returns 0, -ENOMEM, or -ENOEXEC with a
 * message naming the variable ("bootbank_B_tries: '03' is not a canonical decimal"). The
 * result has still to pass bk_bootstate_check() (ranges). *ret (initialised by the caller
 * with bk_boot_data_init()) is written only on success.
 */
int bk_boot_uboot_decode(char *(*get)(const char *name, void *userdata), void *userdata,
			 struct bk_boot_data *ret, struct bk_err *err);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `grub` boot state backend's mapping between a grubenv (bk-grubenv.h) and the boot state
 * (bk-select.h). The backend itself is reached through bk-boot.h like every other; these two
 * functions are exported for tools and tests that write or read many grubenv blocks without
 * a store (tests/tools/bk-model.c).
 *
 * The variables (docs/grub.md), always written first and in this order, so that everything
 * GRUB's save_env changes lies in the block's first 512-byte sector (docs/crash-safety.md):
 *   bootbank_A_state bootbank_A_gen bootbank_A_tries bootbank_A_epoch
 *   bootbank_B_state bootbank_B_gen bootbank_B_tries bootbank_B_epoch
 *   bootbank_floor bootbank_pin
 * States are the names of bk_bank_state_to_string(); numbers are canonical decimals (no sign,
 * no leading zero); the pin is "A", "B" or "" (none). Absent variables read as empty bank,
 * 0 and no pin (a fresh `grub-editenv create` file is two empty banks).
 */
#pragma once

#include "bk-err.h"
#include "bk-grubenv.h"
#include "bk-select.h"

/* Where the store lives beneath the root: the boot partition is mounted on /boot. */
#define BK_BOOT_GRUB_DIR  "boot/bootbank"
#define BK_BOOT_GRUB_FILE "grubenv"

/*
 * Read the boot state from e. Returns 0, or -ENOEXEC with a message naming the variable
 * ("bootbank_B_tries: '03' is not a canonical decimal"). The result still has to pass
 * bk_bootstate_check() (ranges). *ret is written only on success.
 */
int bk_boot_grub_decode(const struct bk_grubenv *e, struct bk_bootstate *ret, struct bk_err *err);

/*
 * A new grubenv holding s (which must pass bk_bootstate_check(), -EINVAL otherwise): the boot
 * state variables first, in the order above, then every other variable of old (may be NULL) in
 * its order, unchanged. Returns 0 and the new object in *ret, -EINVAL or -ENOMEM.
 */
int bk_boot_grub_encode(const struct bk_grubenv *old, const struct bk_bootstate *s,
			struct bk_grubenv **ret, struct bk_err *err);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inside of a boot state backend: its operations table and the handle it works on.
 * Included by bk-boot.c (the registry) and each bk-boot-<loader>.c, never by callers.
 *
 * To add a loader: write bk-boot-<loader>.c with one `const struct bk_boot_ops
 * bk_boot_<loader>_ops`, declare it below and add one line to the registry in bk-boot.c.
 * The contract each operation keeps is written next to it; docs/banks.md ("Backends") says
 * the same for people.
 */
#pragma once

#include <limits.h>

#include "bk-boot.h"

struct bk_boot_ops {
	const char *name;  /* the `[system] bootloader` value of system.conf */
	unsigned features; /* enum bk_boot_features */
	size_t priv_size;  /* zeroed bytes allocated for the backend in b->priv (may be 0) */
	/*
	 * Optional. Locate the store (resolve devices, paths from b->env.config, ...) and fill
	 * b->location. Read-only: must not create or write anything (status runs it).
	 * Returns 0 or -errno with a message.
	 */
	int (*open)(struct bk_boot *b, struct bk_err *err);
	/* Optional. Release what open acquired (b->priv itself is freed by the caller). */
	void (*close)(struct bk_boot *b);
	/*
	 * Read the store into *ret (which the caller initialised with bk_boot_data_init()).
	 * Absent store: leave *ret as it is and return 0. Anything unparsable or out of range:
	 * -ENOEXEC with a message saying what (the caller prefixes the location and runs
	 * bk_bootstate_check() on the result). Never repairs or rewrites the store.
	 */
	int (*load)(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err);
	/*
	 * Replace the store with *data in one atomic step that is durable when it returns (temp
	 * file + fsync + rename + fsync of the directory, or the loader's redundant copy). On
	 * failure the previous store must still load. *data has been checked by the caller.
	 */
	int (*save)(struct bk_boot *b, const struct bk_boot_data *data, struct bk_err *err);
};

struct bk_boot {
	const struct bk_boot_ops *ops;
	struct bk_boot_env env;
	char location[PATH_MAX + 64]; /* "DIR/var/lib/bootbank/bootstate.json" */
	void *priv;
};

/* The backends; each is one line in the registry of bk-boot.c. */
extern const struct bk_boot_ops bk_boot_file_ops;
extern const struct bk_boot_ops bk_boot_grub_ops;
extern const struct bk_boot_ops bk_boot_uboot_ops;
extern const struct bk_boot_ops bk_boot_sdboot_ops;
extern const struct bk_boot_ops bk_boot_custom_ops;

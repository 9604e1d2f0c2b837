/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot state store: where the boot state (lib/bk-select.h) lives between boots. Each
 * bootloader keeps it in its own store (a JSON file for the sandbox `file` backend, a grubenv
 * for GRUB, the U-Boot environment, ...); a backend is one operations table
 * (bk-boot-backend.h) and one line in the registry (bk-boot.c). Callers only see this
 * interface and name a backend by the `[system] bootloader` value of system.conf, so adding a
 * loader never touches them. See docs/banks.md, "Backends".
 *
 * Also here: the record of the booted bank (the loader's answer, from the kernel command line
 * `bootbank.bank=A bootbank.reason=primary` or, in a sandbox, `ROOT/run/bootbank/booted.json`
 * written by `bankctl boot --simulate`).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-config.h"
#include "bk-err.h"
#include "bk-select.h"

#define BK_BOOT_BAD_REASON_MAX 200 /* bytes of a bank's bad_reason text, without the NUL */

/* One boot: which bank, why, when. */
struct bk_booted {
	enum bk_bank_id bank;
	enum bk_boot_reason reason; /* _BK_REASON_INVALID: not told (kernel command line) */
	uint64_t time;		    /* seconds since the Unix epoch; 0: unknown */
};

/* Everything a store holds. Backends without room for the extras leave them empty. */
struct bk_boot_data {
	struct bk_bootstate state;
	/*
	 * Why a bank was marked bad, one printable line; "" when none or not kept. Only kept
	 * while the bank is bad: saving a bank in another state drops its reason.
	 */
	char bad_reason[_BK_BANK_MAX][BK_BOOT_BAD_REASON_MAX + 1];
	bool has_last;	       /* the store recorded the last boot ... */
	struct bk_booted last; /* ... which bank the loader booted, why and when */
};

/* What a backend's store can keep besides struct bk_bootstate. */
enum bk_boot_features {
	BK_BOOT_KEEPS_BAD_REASON = 1 << 0,
	BK_BOOT_KEEPS_LAST_BOOT = 1 << 1,
};

/* Where a backend looks for its store: everything beneath the root, like every bankctl path. */
struct bk_boot_env {
	int root_fd;			/* O_DIRECTORY fd of the root (--root DIR, or "/") */
	const char *root;		/* the root's path, for messages */
	const struct bk_config *config; /* system.conf (devices, custom-backend, ...) */
};

struct bk_boot;

/* Both banks empty, floor 0, no pin, no bad reasons, no last boot. */
void bk_boot_data_init(struct bk_boot_data *d);

/*
 * Set bank's bad_reason to text (NULL or "" clears it). text must be one printable line
 * (no control characters) of at most BK_BOOT_BAD_REASON_MAX bytes. Returns 0 or -EINVAL
 * (message); d is unchanged on failure.
 */
int bk_boot_data_set_bad_reason(struct bk_boot_data *d, enum bk_bank_id bank, const char *text,
				struct bk_err *err);

/* True when a backend of that name is in the registry. */
bool bk_boot_backend_exists(const char *name);

/* The name of the i-th backend of the registry, NULL past the end (for listings). */
const char *bk_boot_backend_name(size_t i);

/*
 * Find backend name in the registry and let it locate its store (read-only: nothing is
 * created or written). env is copied; root_fd and config must outlive the handle. *ret is a
 * new handle for bk_boot_load() / bk_boot_save(), freed with bk_boot_free().
 * Returns 0; -EOPNOTSUPP when no backend has that name ("boot state backend 'x' is not
 * available (available: file)"); -ENOMEM; or the backend's error.
 */
int bk_boot_open(const char *name, const struct bk_boot_env *env, struct bk_boot **ret,
		 struct bk_err *err);

/* Free a handle (NULL allowed); returns NULL. */
struct bk_boot *bk_boot_free(struct bk_boot *b);

BK_DEFINE_CLEANUP(struct bk_boot *, bk_boot_free)

const char *bk_boot_name(const struct bk_boot *b);     /* "file" */
const char *bk_boot_location(const struct bk_boot *b); /* the store, for messages */
unsigned bk_boot_features(const struct bk_boot *b);    /* enum bk_boot_features */

/*
 * Read the store. A store that does not exist yet means both banks empty (bk_boot_data_init()),
 * never an error. Returns 0; -ENOEXEC when the store exists but is corrupt or not a boot
 * state ("corrupt boot state '<location>': <what>"; the store is left as it is, never reset);
 * other -errno for I/O. *ret is written only on success and always passes
 * bk_bootstate_check(). Does not block on locks; does not need root for a sandbox.
 */
int bk_boot_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err);

/*
 * Replace the store with data in one atomic, durable step (fsync'ed before it returns; a
 * loader that does not replay journals sees it). data must pass bk_bootstate_check() and carry
 * valid bad_reason texts (-EINVAL otherwise, nothing written). On failure the old store is
 * intact and -errno is returned with a message naming the store. Extras the backend does not
 * keep are dropped silently. The caller holds the bootbank lock.
 */
int bk_boot_save(struct bk_boot *b, const struct bk_boot_data *data, struct bk_err *err);

/*
 * Parse the booted bank from a kernel command line: the last `bootbank.bank=A|B` and
 * `bootbank.reason=...` words (time is 0). Returns 0 when bootbank.bank= is present, 1 when
 * it is absent (*ret untouched), -EINVAL for a value that is not a bank or a reason.
 */
int bk_booted_parse_cmdline(const char *cmdline, struct bk_booted *ret, struct bk_err *err);

#define BK_BOOTED_FILE "booted.json"

/*
 * Read (dfd, BK_BOOTED_FILE): {"bank": "A", "reason": "primary", "time": N}. Returns 0,
 * -ENOENT when it does not exist, -ENOEXEC when it is corrupt (message names the file).
 */
int bk_booted_read_at(int dfd, const char *path, struct bk_booted *ret, struct bk_err *err);

/* Atomically write (dfd, BK_BOOTED_FILE) (fsync'ed). path is for messages. */
int bk_booted_write_at(int dfd, const char *path, const struct bk_booted *b, struct bk_err *err);
